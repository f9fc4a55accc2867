"""Consumer groups with confluent-kafka (librdkafka 2.16) and kafka-python 3.x against `nerve serve`:
`subscribe` spreads partitions over the members (also in a group mixing both libraries), commits come back
with their metadata, and the admin clients list, describe and delete groups.

Each test uses a group and topics of its own. Nothing asserts on timing; waits are bounded.
"""

import time
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaConsumer, OffsetAndMetadata
from kafka import TopicPartition as KTopicPartition
from kafka.admin import KafkaAdminClient

from nerve_compat import PATIENCE_S, wait_for


def create_topic(bootstrap, topic, partitions):
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1)], request_timeout=PATIENCE_S
    )
    for future in futures.values():
        future.result(timeout=PATIENCE_S)


def produce(bootstrap, topic, partitions, per_partition):
    """Writes `per_partition` records to each partition; values are "<partition>-<i>"."""
    p = Producer({"bootstrap.servers": bootstrap})
    for partition in range(partitions):
        for i in range(per_partition):
            p.produce(topic, value=f"{partition}-{i}".encode(), partition=partition)
    assert p.flush(PATIENCE_S) == 0


def ck_member(bootstrap, group, **extra):
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 500,
        "partition.assignment.strategy": "range",
    }
    config.update(extra)
    return Consumer(config)


def kp_member(bootstrap, group):
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        request_timeout_ms=PATIENCE_S * 1000,
    )


def ck_assignment(c):
    return {tp.partition for tp in c.assignment()}


def kp_assignment(c):
    return {tp.partition for tp in c.assignment()}


def test_confluent_kafka_members_split_partitions_and_commit_with_metadata(bootstrap):
    topic = f"ck-groups-{uuid.uuid4().hex[:8]}"
    group = f"ck-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 4)
    produce(bootstrap, topic, 4, 5)
    members = [ck_member(bootstrap, group) for _ in range(2)]
    for m in members:
        m.subscribe([topic])
    seen = {}

    def settled():
        for m in members:
            msg = m.poll(0.05)
            if msg is not None and msg.error() is None:
                seen.setdefault((msg.partition(), msg.offset()), msg.value())
        a, b = (ck_assignment(m) for m in members)
        return a and b and not (a & b) and (a | b) == {0, 1, 2, 3} and len(seen) == 20

    wait_for(settled, "two members splitting 4 partitions and reading all 20 records")
    assert sorted(seen.values()) == sorted(f"{p}-{i}".encode() for p in range(4) for i in range(5))

    # Each member commits what it holds; the metadata comes back.
    for m in members:
        offsets = [TopicPartition(topic, p, 5, metadata=f"done {p}") for p in sorted(ck_assignment(m))]
        m.commit(offsets=offsets, asynchronous=False)
    committed = members[0].committed([TopicPartition(topic, p) for p in range(4)], timeout=PATIENCE_S)
    assert [(tp.partition, tp.offset, tp.metadata) for tp in committed] == [
        (p, 5, f"done {p}") for p in range(4)
    ]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    listed = admin.list_consumer_groups(request_timeout=PATIENCE_S).result(timeout=PATIENCE_S)
    assert group in {g.group_id for g in listed.valid}
    described = admin.describe_consumer_groups([group], request_timeout=PATIENCE_S)[group].result(
        timeout=PATIENCE_S
    )
    assert described.state.name == "STABLE"
    assert sorted(p.partition for m in described.members for p in m.assignment.topic_partitions) == [0, 1, 2, 3]
    for m in members:
        m.close()
    # Without members the group can be deleted, offsets and all.
    wait_for(
        lambda: admin.describe_consumer_groups([group])[group].result(timeout=PATIENCE_S).state.name == "EMPTY",
        "the group to empty",
    )
    admin.delete_consumer_groups([group], request_timeout=PATIENCE_S)[group].result(timeout=PATIENCE_S)
    assert group not in {g.group_id for g in admin.list_consumer_groups().result(timeout=PATIENCE_S).valid}


def test_kafka_python_member_resumes_from_the_committed_offset(bootstrap):
    topic = f"kp-groups-{uuid.uuid4().hex[:8]}"
    group = f"kp-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 1)
    produce(bootstrap, topic, 1, 10)
    first = kp_member(bootstrap, group)
    first.subscribe([topic])
    records = []
    deadline = time.monotonic() + PATIENCE_S
    while len(records) < 10 and time.monotonic() < deadline:
        for batch in first.poll(timeout_ms=200).values():
            records.extend(batch)
    assert [r.offset for r in records] == list(range(10))
    tp = KTopicPartition(topic, 0)
    first.commit({tp: OffsetAndMetadata(6, "six", -1)})
    assert first.committed(tp) == 6
    first.close()

    second = kp_member(bootstrap, group)
    second.subscribe([topic])
    resumed = []
    deadline = time.monotonic() + PATIENCE_S
    while not resumed and time.monotonic() < deadline:
        for batch in second.poll(timeout_ms=200).values():
            resumed.extend(batch)
    assert resumed and resumed[0].offset == 6
    second.close()

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=PATIENCE_S * 1000)
    offsets = admin.list_group_offsets({group: None})[group]
    assert offsets[tp].offset == 6
    assert offsets[tp].metadata == "six"
    admin.close()


def test_a_group_mixing_both_libraries_shares_the_partitions(bootstrap):
    topic = f"mixed-{uuid.uuid4().hex[:8]}"
    group = f"mixed-{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic, 4)
    ck = ck_member(bootstrap, group)
    kp = kp_member(bootstrap, group)
    ck.subscribe([topic])
    kp.subscribe([topic])

    def settled():
        ck.poll(0.05)
        kp.poll(timeout_ms=50)
        a, b = ck_assignment(ck), kp_assignment(kp)
        return a and b and not (a & b) and (a | b) == {0, 1, 2, 3}

    wait_for(settled, "a librdkafka and a kafka-python member splitting 4 partitions")

    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=PATIENCE_S * 1000)
    listed = {g["group_id"]: g for g in admin.list_groups()}
    assert listed[group]["protocol_type"] == "consumer"
    described = admin.describe_groups([group])[group]
    assert described["group_state"] == "Stable"
    assert described["protocol_data"] == "range"
    assigned = sorted(
        p
        for m in described["members"]
        for a in m["member_assignment"]["assigned_partitions"]
        for p in a["partitions"]
    )
    assert assigned == [0, 1, 2, 3]
    assert {m["client_id"].split("-")[0] for m in described["members"]} == {"rdkafka", "kafka"}
    ck.close()
    kp.close()
    # Without members or offsets the group is forgotten.
    wait_for(
        lambda: group not in {g["group_id"] for g in admin.list_groups()},
        "the group to go after both members left",
    )
    admin.close()
