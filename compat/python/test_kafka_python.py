"""kafka-python 3.x (pure Python, its own protocol codecs and compression) against `nerve serve`.

kafka-python negotiates request versions from the broker's ApiVersions answer; tests that pin `api_version`
to an older Kafka make it use older request versions (Produce v3, Fetch v5, Metadata v4 for 0.11), which
Nerve must still answer. Consumers are assigned partitions with no `group_id`: groups arrive with issue 4.
"""

import time
import uuid

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic
from kafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError

from nerve_compat import PATIENCE_S, wait_for

# None: negotiate from ApiVersions (the client's default). The tuples pin an older broker version.
API_VERSIONS = [None, (2, 8), (1, 1), (0, 11)]
API_VERSION_IDS = ["negotiated", "kafka-2.8", "kafka-1.1", "kafka-0.11"]
CODECS = [None, "gzip", "snappy", "lz4", "zstd"]


def producer(bootstrap, **extra):
    config = {"bootstrap_servers": bootstrap, "request_timeout_ms": PATIENCE_S * 1000}
    config.update(extra)
    return KafkaProducer(**config)


def consumer(bootstrap, **extra):
    config = {
        "bootstrap_servers": bootstrap,
        "group_id": None,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "request_timeout_ms": PATIENCE_S * 1000,
    }
    config.update(extra)
    return KafkaConsumer(**config)


def admin(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=PATIENCE_S * 1000)


def send_all(prod, topic, records):
    """Sends (partition, key, value, headers, timestamp_ms) tuples; returns RecordMetadata per record."""
    futures = [
        prod.send(topic, partition=p, key=k, value=v, headers=h, timestamp_ms=ts) for p, k, v, h, ts in records
    ]
    prod.flush(timeout=PATIENCE_S)
    return [f.get(timeout=PATIENCE_S) for f in futures]


def read(bootstrap, partitions, count, start=None, **extra):
    """Assigns `partitions` (TopicPartitions), seeks to `start` (offset per partition, default beginning)
    and returns `count` ConsumerRecords."""
    c = consumer(bootstrap, **extra)
    try:
        c.assign(partitions)
        if start is None:
            c.seek_to_beginning(*partitions)
        else:
            for tp, offset in start.items():
                c.seek(tp, offset)
        got = []
        deadline = time.monotonic() + PATIENCE_S
        while len(got) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"only {len(got)} of {count} records arrived")
            for records in c.poll(timeout_ms=500).values():
                got.extend(records)
        return got
    finally:
        c.close()


def sample_records(n, partitions, base_ts):
    return [
        (
            i % partitions,
            f"key-{i}".encode(),
            (f"value-{i}-" + "y" * (i % 200)).encode(),
            [("trace", f"t{i}".encode()), ("kind", b"compat")],
            base_ts + i,
        )
        for i in range(n)
    ]


def create_topic(bootstrap, topic, partitions=1):
    client = admin(bootstrap)
    try:
        client.create_topics([NewTopic(topic, partitions, 1)], timeout_ms=PATIENCE_S * 1000)
    finally:
        client.close()


@pytest.mark.parametrize("api_version", API_VERSIONS, ids=API_VERSION_IDS)
def test_producer_and_assigned_consumer_round_trip_at_each_protocol_generation(bootstrap, new_topic, api_version):
    topic = new_topic()
    create_topic(bootstrap, topic, partitions=2)
    base_ts = int(time.time() * 1000) - 60_000
    records = sample_records(50, 2, base_ts)

    prod = producer(bootstrap, api_version=api_version, linger_ms=20)
    try:
        metas = send_all(prod, topic, records)
    finally:
        prod.close()
    for p in range(2):
        assert [m.offset for m in metas if m.partition == p] == list(range(25))

    got = read(
        bootstrap,
        [TopicPartition(topic, 0), TopicPartition(topic, 1)],
        50,
        api_version=api_version,
    )
    got = sorted(((r.partition, r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in got))
    expected = sorted(
        (m.partition, m.offset, k, v, h, ts) for m, (_p, k, v, h, ts) in zip(metas, records)
    )
    assert got == expected


@pytest.mark.parametrize("codec", CODECS, ids=["none", "gzip", "snappy", "lz4", "zstd"])
def test_idempotent_producer_round_trips_each_codec(bootstrap, new_topic, codec):
    topic = new_topic()
    base_ts = int(time.time() * 1000) - 60_000
    records = [(0, k, v, h, ts) for _p, k, v, h, ts in sample_records(200, 1, base_ts)]

    prod = producer(bootstrap, compression_type=codec, enable_idempotence=True, linger_ms=20)
    try:
        metas = send_all(prod, topic, records)
    finally:
        prod.close()
    assert [m.offset for m in metas] == list(range(200))

    got = read(bootstrap, [TopicPartition(topic, 0)], 200)
    assert [(r.offset, r.key, r.value, list(r.headers), r.timestamp) for r in got] == [
        (i, k, v, h, ts) for i, (_p, k, v, h, ts) in enumerate(records)
    ]


def test_producer_auto_creates_unknown_topic(bootstrap, new_topic):
    topic = new_topic()
    prod = producer(bootstrap)
    try:
        meta = prod.send(topic, value=b"hello").get(timeout=PATIENCE_S)
    finally:
        prod.close()
    assert (meta.partition, meta.offset) == (0, 0)
    client = admin(bootstrap)
    try:
        assert topic in client.list_topics()
    finally:
        client.close()


def test_consumer_seek_reads_from_that_offset(bootstrap, new_topic):
    topic = new_topic()
    prod = producer(bootstrap)
    try:
        send_all(prod, topic, [(0, None, f"{i}".encode(), [], None) for i in range(10)])
    finally:
        prod.close()

    tp = TopicPartition(topic, 0)
    got = read(bootstrap, [tp], 4, start={tp: 6})
    assert [(r.offset, r.value) for r in got] == [(6, b"6"), (7, b"7"), (8, b"8"), (9, b"9")]


def test_consumer_with_small_fetch_limits_still_reads_a_large_record(bootstrap, new_topic):
    """KIP-74: the first batch comes back whole even when larger than the fetch limits."""
    topic = new_topic()
    big = bytes(range(256)) * 2000
    prod = producer(bootstrap, max_request_size=2_000_000)
    try:
        send_all(prod, topic, [(0, None, big, [], None), (0, None, b"small", [], None)])
    finally:
        prod.close()

    got = read(bootstrap, [TopicPartition(topic, 0)], 2, fetch_max_bytes=1024, max_partition_fetch_bytes=1024)
    assert [r.value for r in got] == [big, b"small"]


def test_consumer_at_log_end_receives_records_produced_later(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic)
    tp = TopicPartition(topic, 0)
    c = consumer(bootstrap)
    prod = producer(bootstrap)
    try:
        c.assign([tp])
        c.seek_to_end(tp)
        assert c.position(tp, timeout_ms=PATIENCE_S * 1000) == 0
        c.poll(timeout_ms=500)
        send_all(prod, topic, [(0, None, b"late-1", [], None), (0, None, b"late-2", [], None)])

        got = []

        def arrived():
            for records in c.poll(timeout_ms=500).values():
                got.extend((r.offset, r.value) for r in records)
            return len(got) >= 2

        wait_for(arrived, "records produced after the consumer reached the log end", interval_s=0)
        assert got == [(0, b"late-1"), (1, b"late-2")]
    finally:
        prod.close()
        c.close()


def test_beginning_and_end_offsets_report_log_bounds(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic, partitions=2)
    prod = producer(bootstrap)
    try:
        send_all(prod, topic, [(1, None, b"x", [], None) for _ in range(6)])
    finally:
        prod.close()

    tp0, tp1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
    c = consumer(bootstrap)
    try:
        assert c.beginning_offsets([tp0, tp1]) == {tp0: 0, tp1: 0}
        assert c.end_offsets([tp0, tp1]) == {tp0: 0, tp1: 6}
    finally:
        c.close()


def test_offsets_for_times_returns_first_offset_at_or_after_timestamp(bootstrap, new_topic):
    topic = new_topic()
    base_ts = int(time.time() * 1000) - 3_600_000
    prod = producer(bootstrap)
    try:
        for batch in range(2):
            send_all(prod, topic, [(0, None, b"v", [], base_ts + (batch * 5 + i) * 1000) for i in range(5)])
    finally:
        prod.close()

    tp = TopicPartition(topic, 0)
    c = consumer(bootstrap)
    try:
        found = c.offsets_for_times({tp: base_ts + 6_500})[tp]
        assert (found.offset, found.timestamp) == (7, base_ts + 7_000)
        found = c.offsets_for_times({tp: base_ts})[tp]
        assert (found.offset, found.timestamp) == (0, base_ts)
        # Past every record: Kafka answers -1, which kafka-python reports as None.
        assert c.offsets_for_times({tp: base_ts + 9_001})[tp] is None
    finally:
        c.close()


def test_admin_creates_lists_and_deletes_topics(bootstrap, new_topic):
    topic = new_topic()
    client = admin(bootstrap)
    try:
        client.create_topics([NewTopic(topic, 3, 1)], timeout_ms=PATIENCE_S * 1000)
        assert topic in client.list_topics()
        [described] = client.describe_topics([topic])
        assert described["error_code"] == 0
        assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2]
        assert all(p["leader_id"] == 0 for p in described["partitions"])

        with pytest.raises(TopicAlreadyExistsError):
            client.create_topics([NewTopic(topic, 3, 1)], timeout_ms=PATIENCE_S * 1000, raise_errors=True)

        client.delete_topics([topic], timeout_ms=PATIENCE_S * 1000)
        assert topic not in client.list_topics()

        with pytest.raises(UnknownTopicOrPartitionError):
            client.delete_topics([topic], timeout_ms=PATIENCE_S * 1000, raise_errors=True)
    finally:
        client.close()


def test_admin_create_topics_validate_only_creates_nothing(bootstrap, new_topic):
    topic = new_topic()
    client = admin(bootstrap)
    try:
        client.create_topics([NewTopic(topic, 1, 1)], timeout_ms=PATIENCE_S * 1000, validate_only=True)
        assert topic not in client.list_topics()
    finally:
        client.close()


def test_admin_create_topics_with_broker_defaults_uses_one_replica(bootstrap, new_topic):
    """Topic names alone: num_partitions and replication_factor -1, the broker's defaults."""
    topic = new_topic()
    client = admin(bootstrap)
    try:
        client.create_topics([topic], timeout_ms=PATIENCE_S * 1000)
        [described] = client.describe_topics([topic])
        assert described["error_code"] == 0
        assert len(described["partitions"]) >= 1
        assert all(p["replica_nodes"] == [0] for p in described["partitions"])
    finally:
        client.close()


def test_recreated_topic_gets_a_new_topic_id(bootstrap, new_topic):
    """DeleteTopics then CreateTopics with the same name is a different topic (KIP-516 topic ids)."""
    topic = new_topic()
    client = admin(bootstrap)
    try:
        client.create_topics([NewTopic(topic, 1, 1)], timeout_ms=PATIENCE_S * 1000)
        [first] = client.describe_topics([topic])
        client.delete_topics([topic], timeout_ms=PATIENCE_S * 1000)
        client.create_topics([NewTopic(topic, 1, 1)], timeout_ms=PATIENCE_S * 1000)
        [second] = client.describe_topics([topic])
    finally:
        client.close()
    zero = "00000000-0000-0000-0000-000000000000"
    assert str(first["topic_id"]) not in (zero, "None")
    assert str(second["topic_id"]) not in (zero, "None")
    assert first["topic_id"] != second["topic_id"]


def test_admin_deletes_a_topic_by_its_id(bootstrap, new_topic):
    """DeleteTopics v6 names topics by id (KIP-516)."""
    topic = new_topic()
    client = admin(bootstrap)
    try:
        client.create_topics([NewTopic(topic, 1, 1)], timeout_ms=PATIENCE_S * 1000)
        [described] = client.describe_topics([topic])
        topic_id = uuid.UUID(str(described["topic_id"]))
        result = client.delete_topics([topic_id], timeout_ms=PATIENCE_S * 1000)
        assert [(t["error_code"], t["name"]) for t in result["topics"]] == [(0, topic)]
        assert topic not in client.list_topics()
    finally:
        client.close()


def test_admin_describes_a_topic_by_its_id(bootstrap, new_topic):
    """Metadata v12+ looks topics up by id (KIP-516)."""
    topic = new_topic()
    client = admin(bootstrap)
    try:
        client.create_topics([NewTopic(topic, 2, 1)], timeout_ms=PATIENCE_S * 1000)
        [by_name] = client.describe_topics([topic])
        [by_id] = client.describe_topics([uuid.UUID(str(by_name["topic_id"]))])
        assert (by_id["error_code"], by_id["name"], len(by_id["partitions"])) == (0, topic, 2)
    finally:
        client.close()



# ------------------------------------------------------------------ admin: partitions, configs, records, cluster


def test_admin_create_partitions_grows_a_topic(bootstrap, new_topic):
    topic = new_topic()
    client = admin(bootstrap)
    try:
        client.create_topics([NewTopic(topic, 1, 1)], timeout_ms=PATIENCE_S * 1000)
        client.create_partitions({topic: 3}, timeout_ms=PATIENCE_S * 1000)
        [described] = client.describe_topics([topic])
        assert sorted(p["partition_index"] for p in described["partitions"]) == [0, 1, 2]
    finally:
        client.close()
    prod = producer(bootstrap)
    try:
        [meta] = send_all(prod, topic, [(2, None, b"new", [], None)])
    finally:
        prod.close()
    assert (meta.partition, meta.offset) == (2, 0)


def test_admin_describe_configs_tells_modified_configs_from_defaults(bootstrap, new_topic):
    """kafka-python's default filter keeps what the broker marks as not default: exactly the configs set."""
    topic = new_topic()
    client = admin(bootstrap)
    try:
        client.create_topics(
            [NewTopic(topic, 1, 1, topic_configs={"retention.ms": "3600000"})], timeout_ms=PATIENCE_S * 1000
        )
        resource = ConfigResource(ConfigResourceType.TOPIC, topic)
        modified = client.describe_configs([resource])["topic"][topic]
        assert {k: (v["value"], v["config_source"]) for k, v in modified.items()} == {
            "retention.ms": ("3600000", "DYNAMIC_TOPIC_CONFIG")
        }
        everything = client.describe_configs([resource], config_filter="all")["topic"][topic]
        assert {"cleanup.policy", "retention.ms", "segment.bytes", "max.message.bytes"} <= set(everything)
        assert everything["cleanup.policy"]["value"] == "delete"
    finally:
        client.close()


def test_admin_alter_configs_changes_a_topic_config(bootstrap, new_topic):
    topic = new_topic()
    client = admin(bootstrap)
    try:
        client.create_topics([NewTopic(topic, 1, 1)], timeout_ms=PATIENCE_S * 1000)
        result = client.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs={"segment.ms": "1000000"})])
        assert result == {"topic": {topic: "OK"}}
        modified = client.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])["topic"][topic]
        assert modified["segment.ms"]["value"] == "1000000"
    finally:
        client.close()


def test_admin_delete_records_moves_the_log_start(bootstrap, new_topic):
    topic = new_topic()
    prod = producer(bootstrap)
    try:
        send_all(prod, topic, [(0, None, f"{i}".encode(), [], None) for i in range(10)])
    finally:
        prod.close()
    tp = TopicPartition(topic, 0)
    client = admin(bootstrap)
    try:
        result = client.delete_records({tp: 5}, timeout_ms=PATIENCE_S * 1000)
        assert result[tp]["low_watermark"] == 5
    finally:
        client.close()
    c = consumer(bootstrap)
    try:
        assert c.beginning_offsets([tp]) == {tp: 5}
    finally:
        c.close()
    assert [(r.offset, r.value) for r in read(bootstrap, [tp], 5)] == [(i, f"{i}".encode()) for i in range(5, 10)]


def test_admin_describe_cluster_names_the_single_broker_as_controller(nerve, bootstrap):
    client = admin(bootstrap)
    try:
        cluster = client.describe_cluster()
    finally:
        client.close()
    assert cluster["cluster_id"]
    assert cluster["controller_id"] == 0
    assert [(b["broker_id"], b["host"], b["port"]) for b in cluster["brokers"]] == [(0, "127.0.0.1", nerve.port)]
