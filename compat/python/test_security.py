"""confluent-kafka (librdkafka) against a secured Nerve: SASL_SSL with SCRAM-SHA-512, mutual TLS, and ACLs.

Users and ACLs are set up the way docs/security.md does it: `nerve user create --data-dir` before the
first start, `nerve acl add` as the super user `admin` (see the `secured` fixture in compat/conftest.py).
"""

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from nerve_compat import PATIENCE_S, wait_for


def create_topic(secured, name):
    admin = AdminClient(secured.sasl("admin", "admin-secret"))
    futures = admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)])
    futures[name].result(timeout=PATIENCE_S)


def produce(settings, topic, values):
    """Produces `values` and returns the delivery errors (None for each success)."""
    errors = []
    producer = Producer({**settings, "message.timeout.ms": 15000})
    for value in values:
        producer.produce(topic, value=value, on_delivery=lambda err, _msg: errors.append(err))
    producer.flush(PATIENCE_S)
    return errors


def test_a_user_with_acls_produces_and_consumes_over_sasl_ssl(secured, new_topic):
    topic = "secure-" + new_topic()
    create_topic(secured, topic)
    alice = secured.sasl("alice", "alice-secret")
    assert produce(alice, topic, [b"a", b"b", b"c"]) == [None, None, None]
    consumer = Consumer({**alice, "group.id": "secure-py", "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = []

    def poll():
        message = consumer.poll(0.5)
        if message is not None:
            assert message.error() is None, message.error()
            got.append(message.value())
        return len(got) == 3

    wait_for(poll, "alice's three records")
    consumer.commit(asynchronous=False)
    consumer.close()
    assert got == [b"a", b"b", b"c"]


def test_a_user_without_acls_is_refused_and_sees_no_topics(secured, new_topic):
    topic = "secure-" + new_topic()
    create_topic(secured, topic)
    bob = secured.sasl("bob", "bob-secret")
    errors = produce(bob, topic, [b"x"])
    assert errors[0] is not None and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    metadata = AdminClient(bob).list_topics(timeout=PATIENCE_S)
    assert [t for t in metadata.topics if not t.startswith("_")] == []
    consumer = Consumer({**bob, "group.id": "secure-bob", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])

    def refused():
        message = consumer.poll(0.5)
        if message is not None and message.error() is not None:
            return message.error().code()
        return None

    code = wait_for(refused, "an authorization error for bob")
    consumer.close()
    assert code in (KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED)


def test_a_wrong_password_fails_authentication(secured):
    errors = []
    admin = AdminClient({**secured.sasl("alice", "wrong"), "error_cb": errors.append})
    try:
        admin.list_topics(timeout=5)
        raise AssertionError("metadata answered a client with a wrong password")
    except KafkaException:
        pass
    wait_for(lambda: admin.poll(0.2) is not None or errors, "librdkafka's error callback")
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors


def test_a_client_certificate_authenticates_over_ssl(secured, new_topic):
    topic = "mtls-" + new_topic()
    create_topic(secured, topic)
    cert, key = secured.carol
    carol = {
        "bootstrap.servers": secured.ssl_bootstrap,
        "security.protocol": "SSL",
        "ssl.ca.location": str(secured.pki.ca_cert),
        "ssl.certificate.location": str(cert),
        "ssl.key.location": str(key),
    }
    assert produce(carol, topic, [b"signed"]) == [None]
    elsewhere = "secure-" + new_topic()
    create_topic(secured, elsewhere)
    errors = produce(carol, elsewhere, [b"x"])
    assert errors[0] is not None and errors[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_kafka_python_produces_and_consumes_over_sasl_ssl_with_scram(secured, new_topic):
    """kafka-python authenticates in Python (its own SCRAM, its own SaslHandshake/SaslAuthenticate)."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import TopicAuthorizationFailedError

    topic = "secure-" + new_topic()
    create_topic(secured, topic)

    def settings(user, password):
        return dict(
            bootstrap_servers=secured.sasl_ssl_bootstrap,
            security_protocol="SASL_SSL",
            sasl_mechanism="SCRAM-SHA-512",
            sasl_plain_username=user,
            sasl_plain_password=password,
            ssl_cafile=str(secured.pki.ca_cert),
        )

    producer = KafkaProducer(**settings("alice", "alice-secret"))
    for value in (b"one", b"two"):
        producer.send(topic, value).get(timeout=PATIENCE_S)
    producer.close()
    consumer = KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=10000,
                             group_id="secure-kafka-python", **settings("alice", "alice-secret"))
    got = [m.value for m in consumer][:2]
    consumer.close()
    assert got == [b"one", b"two"]

    bob = KafkaProducer(**settings("bob", "bob-secret"), max_block_ms=10000, retries=0)
    try:
        with pytest.raises(TopicAuthorizationFailedError):
            bob.send(topic, b"x").get(timeout=PATIENCE_S)
    finally:
        bob.close()
