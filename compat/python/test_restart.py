"""What survives stopping `nerve serve` with SIGTERM, seen through confluent-kafka. Each test runs its own
broker (not the session's), since it stops and restarts it."""

import shutil
import tempfile
import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewPartitions,
    NewTopic,
    ResourceType,
)

from nerve_compat import PATIENCE_S, Nerve


@pytest.fixture
def own_nerve():
    workdir = Path(tempfile.mkdtemp(prefix="nerve-compat-restart-"))
    broker = Nerve(workdir / "data", workdir / "nerve.log")
    broker.start()
    yield broker
    code = broker.stop()
    assert code == 0, f"nerve exited with {code} after SIGTERM; log:\n{broker.log_tail()}"
    shutil.rmtree(workdir, ignore_errors=True)


def restart(broker):
    code = broker.stop()
    assert code == 0, f"nerve exited with {code} after SIGTERM; log:\n{broker.log_tail()}"
    broker.start(port=broker.port)


def deliver(prod, topic, values):
    """Produces `values` to partition 0 and returns their offsets; fails on any delivery error."""
    reports = []
    for value in values:
        prod.produce(topic, value=value, partition=0, on_delivery=lambda err, msg: reports.append((err, msg.offset())))
    assert prod.flush(PATIENCE_S) == 0
    assert [err for err, _ in reports if err is not None] == []
    return [offset for _, offset in reports]


def read_all(bootstrap, topic, count):
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "compat-assign-only", "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        got = []
        deadline = time.monotonic() + PATIENCE_S
        while len(got) < count and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got.append((msg.offset(), msg.value()))
        return got
    finally:
        c.close()


def test_acknowledged_records_survive_a_restart(own_nerve, new_topic):
    topic = new_topic()
    prod = Producer({"bootstrap.servers": own_nerve.bootstrap, "enable.idempotence": True})
    values = [f"v{i}".encode() for i in range(500)]
    assert deliver(prod, topic, values) == list(range(500))
    del prod

    restart(own_nerve)

    assert read_all(own_nerve.bootstrap, topic, 500) == list(enumerate(values))


def test_idempotent_producer_keeps_producing_across_a_restart(own_nerve, new_topic):
    """The broker rebuilds producer ids and sequences from the log, so a producer that lived through the
    restart continues its sequence without OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID."""
    topic = new_topic()
    fatal = []
    prod = Producer({
        "bootstrap.servers": own_nerve.bootstrap,
        "enable.idempotence": True,
        "message.timeout.ms": PATIENCE_S * 1000,
        # Connection errors while the broker restarts are expected; a fatal idempotence error is not.
        "error_cb": lambda err: fatal.append(err) if err.fatal() else None,
    })
    assert deliver(prod, topic, [f"before-{i}".encode() for i in range(20)]) == list(range(20))

    restart(own_nerve)

    assert deliver(prod, topic, [f"after-{i}".encode() for i in range(20)]) == list(range(20, 40))
    got = read_all(own_nerve.bootstrap, topic, 40)
    assert [v for _, v in got] == [f"before-{i}".encode() for i in range(20)] + [
        f"after-{i}".encode() for i in range(20)
    ]
    assert fatal == []


def test_nerve_stops_cleanly_on_sigterm_while_clients_are_connected(own_nerve, new_topic):
    topic = new_topic()
    prod = Producer({"bootstrap.servers": own_nerve.bootstrap})
    deliver(prod, topic, [b"x"])
    c = Consumer({"bootstrap.servers": own_nerve.bootstrap, "group.id": "compat-assign-only",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 5000})
    try:
        c.assign([TopicPartition(topic, 0, 1)])  # at the log end: the fetch long-polls
        c.poll(1.0)
        code = own_nerve.stop()
        assert code == 0, f"nerve exited with {code}; log:\n{own_nerve.log_tail()}"
    finally:
        c.close()
        del prod
    own_nerve.start()  # so that the fixture's own stop has something to stop


def test_topic_partitions_and_configs_survive_a_restart(own_nerve, new_topic):
    topic = new_topic()
    admin = AdminClient({"bootstrap.servers": own_nerve.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"retention.ms": "3600000"})])[topic].result(PATIENCE_S)
    admin.create_partitions([NewPartitions(topic, 3)])[topic].result(PATIENCE_S)
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[ConfigEntry("segment.ms", "1000000", incremental_operation=AlterConfigOpType.SET)],
    )
    admin.incremental_alter_configs([resource])[resource].result(PATIENCE_S)
    del admin

    restart(own_nerve)

    admin = AdminClient({"bootstrap.servers": own_nerve.bootstrap})
    assert sorted(admin.list_topics(timeout=PATIENCE_S).topics[topic].partitions) == [0, 1, 2]
    described = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([described])[described].result(PATIENCE_S)
    assert (configs["retention.ms"].value, configs["segment.ms"].value) == ("3600000", "1000000")


def test_deleted_records_stay_deleted_after_a_restart(own_nerve, new_topic):
    """DeleteRecords moves the log start offset inside a segment; the new start must be durable."""
    topic = new_topic()
    prod = Producer({"bootstrap.servers": own_nerve.bootstrap})
    deliver(prod, topic, [f"v{i}".encode() for i in range(10)])
    del prod
    admin = AdminClient({"bootstrap.servers": own_nerve.bootstrap})
    [future] = admin.delete_records([TopicPartition(topic, 0, 5)]).values()
    assert future.result(PATIENCE_S).low_watermark == 5
    del admin

    restart(own_nerve)

    c = Consumer({"bootstrap.servers": own_nerve.bootstrap, "group.id": "compat-assign-only"})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=PATIENCE_S) == (5, 10)
    finally:
        c.close()
    assert read_all(own_nerve.bootstrap, topic, 5) == [(i, f"v{i}".encode()) for i in range(5, 10)]
