"""kcat (Debian's, librdkafka 2.0) with `-X security.protocol=SASL_SSL` against a secured Nerve."""

import subprocess

from confluent_kafka.admin import AdminClient, NewTopic

from nerve_compat import PATIENCE_S


def kcat(secured, user, password, *args, stdin=""):
    return subprocess.run(
        ["kcat", "-b", secured.sasl_ssl_bootstrap,
         "-X", "security.protocol=SASL_SSL", "-X", "sasl.mechanisms=SCRAM-SHA-512",
         "-X", f"sasl.username={user}", "-X", f"sasl.password={password}",
         "-X", f"ssl.ca.location={secured.pki.ca_cert}", *args],
        input=stdin, capture_output=True, text=True, timeout=PATIENCE_S,
    )


def test_kcat_produces_and_consumes_over_sasl_ssl(secured, new_topic):
    topic = "secure-" + new_topic()
    admin = AdminClient(secured.sasl("admin", "admin-secret"))
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(
        timeout=PATIENCE_S)
    produced = kcat(secured, "alice", "alice-secret", "-P", "-t", topic, stdin="one\ntwo\n")
    assert produced.returncode == 0, produced.stderr
    consumed = kcat(secured, "alice", "alice-secret", "-C", "-t", topic, "-o", "beginning", "-c", "2", "-e")
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.splitlines() == ["one", "two"]


def test_kcat_with_a_wrong_password_is_refused(secured):
    listed = kcat(secured, "alice", "wrong", "-L", "-m", "5")
    assert listed.returncode != 0
    assert "uthentication" in listed.stderr, listed.stderr
