"""confluent-kafka (librdkafka 2.16, from its PyPI wheel) against `nerve serve`.

Consumers here are assigned partitions directly (no group membership, no commits): consumer groups arrive
with the group coordinator (issue 4). librdkafka insists on a `group.id` even then; it is only a label.
"""

import time

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_CREATE_TIME,
    TIMESTAMP_LOG_APPEND_TIME,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import (
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    ConfigSource,
    NewPartitions,
    NewTopic,
    OffsetSpec,
    ResourceType,
)

from nerve_compat import PATIENCE_S, wait_for

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


# ---------------------------------------------------------------------------------------------- helpers


def admin_client(bootstrap):
    return AdminClient({"bootstrap.servers": bootstrap})


def create_topic(bootstrap, topic, partitions=1, config=None):
    # Keep the client referenced until its future resolves: a collected handle cancels its requests.
    admin = admin_client(bootstrap)
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, replication_factor=1, config=config or {})],
        operation_timeout=30,
        request_timeout=PATIENCE_S,
    )
    futures[topic].result(timeout=PATIENCE_S)


def create_topic_with(bootstrap, new_topic):
    admin = admin_client(bootstrap)
    admin.create_topics([new_topic], request_timeout=PATIENCE_S)[new_topic.topic].result(timeout=PATIENCE_S)


def topic_names(bootstrap):
    """Every topic the broker lists (a Metadata request for all topics, which never auto-creates)."""
    return set(admin_client(bootstrap).list_topics(timeout=PATIENCE_S).topics)


def producer(bootstrap, **extra):
    config = {
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "message.timeout.ms": PATIENCE_S * 1000,
    }
    config.update(extra)
    return Producer(config)


def produce(prod, topic, records):
    """Produces `records` (dicts of Producer.produce arguments) and returns their delivery reports in order:
    (partition, offset) per record. Fails the test on any delivery error."""
    reports = [None] * len(records)

    def on_delivery(index):
        def report(err, msg):
            reports[index] = (err, msg.partition(), msg.offset())

        return report

    for index, record in enumerate(records):
        while True:
            try:
                prod.produce(topic, on_delivery=on_delivery(index), **record)
                break
            except BufferError:
                prod.poll(0.1)
    remaining = prod.flush(PATIENCE_S)
    assert remaining == 0, f"{remaining} records never delivered"
    errors = [(i, r[0]) for i, r in enumerate(reports) if r[0] is not None]
    assert not errors, f"delivery errors: {errors[:5]}"
    return [(partition, offset) for _err, partition, offset in reports]


def produce_reports(prod, topic, records):
    """Like produce(), but returns every delivery report as (error code or None, offset) without failing."""
    reports = [None] * len(records)

    def on_delivery(index):
        def report(err, msg):
            reports[index] = (err.code() if err else None, msg.offset())

        return report

    for index, record in enumerate(records):
        prod.produce(topic, on_delivery=on_delivery(index), **record)
    assert prod.flush(PATIENCE_S) == 0
    return reports


def consumer(bootstrap, **extra):
    config = {
        "bootstrap.servers": bootstrap,
        "group.id": "compat-assign-only",  # required by the client; no group API is used
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        # Verify every fetched batch's CRC: the broker rewrites base offsets (and, for LogAppendTime, the
        # timestamps) and must leave a valid CRC behind.
        "check.crcs": True,
    }
    config.update(extra)
    return Consumer(config)


def read(bootstrap, assignment, count, **extra):
    """Assigns `assignment` (TopicPartitions with start offsets) and returns `count` messages."""
    c = consumer(bootstrap, **extra)
    try:
        c.assign(assignment)
        messages = []
        deadline = time.monotonic() + PATIENCE_S
        while len(messages) < count:
            if time.monotonic() > deadline:
                pytest.fail(f"only {len(messages)} of {count} records arrived")
            msg = c.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                pytest.fail(f"consumer error: {msg.error()}")
            messages.append(msg)
        return messages
    finally:
        c.close()


def watermarks(bootstrap, topic, partition):
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=PATIENCE_S)
    finally:
        c.close()


def as_record(msg):
    return {
        "partition": msg.partition(),
        "offset": msg.offset(),
        "key": msg.key(),
        "value": msg.value(),
        "headers": msg.headers() or [],
        "timestamp": msg.timestamp(),
    }


def sample_records(n, partitions, base_ts):
    """Record i: partition i % partitions, a key, a payload that grows, two headers, timestamp base_ts + i."""
    return [
        {
            "partition": i % partitions,
            "key": f"key-{i}".encode(),
            "value": (f"value-{i}-" + "x" * (i % 300)).encode(),
            "headers": [("trace", f"t{i}".encode()), ("kind", b"compat")],
            "timestamp": base_ts + i,
        }
        for i in range(n)
    ]


# ---------------------------------------------------------------------------------------------- admin


def test_admin_create_topics_creates_topic_with_requested_partitions(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic, partitions=3)

    metadata = admin_client(bootstrap).list_topics(timeout=PATIENCE_S)
    assert topic in metadata.topics
    described = metadata.topics[topic]
    assert described.error is None
    assert sorted(described.partitions) == [0, 1, 2]
    for partition in described.partitions.values():
        assert partition.error is None
        assert partition.leader == 0
        assert partition.replicas == [0]
        assert partition.isrs == [0]
    assert list(metadata.brokers) == [0]
    assert metadata.controller_id == 0


def test_admin_create_topics_validate_only_creates_nothing(bootstrap, new_topic):
    topic = new_topic()
    admin = admin_client(bootstrap)
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=2, replication_factor=1)],
        validate_only=True,
        request_timeout=PATIENCE_S,
    )
    futures[topic].result(timeout=PATIENCE_S)

    assert topic not in topic_names(bootstrap)


def test_admin_create_topics_rejects_existing_topic_with_topic_already_exists(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic)

    with pytest.raises(KafkaException) as raised:
        create_topic(bootstrap, topic)
    assert raised.value.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS


def test_admin_create_topics_rejects_invalid_name_and_creates_nothing(bootstrap):
    topic = "compat invalid name!"
    with pytest.raises(KafkaException) as raised:
        create_topic(bootstrap, topic)
    assert raised.value.args[0].code() == KafkaError.TOPIC_EXCEPTION  # INVALID_TOPIC_EXCEPTION (17)
    assert topic not in topic_names(bootstrap)


def test_admin_create_topics_applies_topic_configs(bootstrap, new_topic):
    """Configs given at creation are accepted by Kafka name; an unknown config name is refused."""
    topic = new_topic()
    create_topic(bootstrap, topic, config={"retention.ms": "3600000", "cleanup.policy": "delete"})
    assert topic in topic_names(bootstrap)

    bad = new_topic("-bad")
    with pytest.raises(KafkaException) as raised:
        create_topic(bootstrap, bad, config={"no.such.config": "1"})
    assert raised.value.args[0].code() == KafkaError.INVALID_CONFIG
    assert bad not in topic_names(bootstrap)


def test_admin_create_topics_rejects_impossible_partitions_and_replication(bootstrap, new_topic):
    """One broker: replication factor 3 is INVALID_REPLICATION_FACTOR; zero partitions INVALID_PARTITIONS."""
    too_many_replicas, no_partitions = new_topic("-rf3"), new_topic("-p0")
    with pytest.raises(KafkaException) as raised:
        create_topic_with(bootstrap, NewTopic(too_many_replicas, num_partitions=1, replication_factor=3))
    assert raised.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR
    with pytest.raises(KafkaException) as raised:
        create_topic_with(bootstrap, NewTopic(no_partitions, num_partitions=0, replication_factor=1))
    assert raised.value.args[0].code() == KafkaError.INVALID_PARTITIONS
    names = topic_names(bootstrap)
    assert too_many_replicas not in names and no_partitions not in names


def test_metadata_for_invalid_topic_name_reports_invalid_topic_and_creates_nothing(bootstrap):
    """A producer's Metadata request asks to auto-create; an invalid name gets INVALID_TOPIC_EXCEPTION."""
    topic = "compat invalid name?"
    metadata = producer(bootstrap).list_topics(topic, timeout=PATIENCE_S)
    assert metadata.topics[topic].error.code() == KafkaError.TOPIC_EXCEPTION  # INVALID_TOPIC_EXCEPTION (17)
    assert topic not in topic_names(bootstrap)


def test_consumer_metadata_does_not_auto_create_topics(bootstrap, new_topic):
    """A consumer's Metadata request says allow_auto_topic_creation=false; the broker must not create."""
    topic = new_topic()
    c = consumer(bootstrap)
    try:
        metadata = c.list_topics(topic, timeout=PATIENCE_S)
        assert metadata.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    finally:
        c.close()
    assert topic not in topic_names(bootstrap)


def test_admin_list_offsets_answers_earliest_latest_max_timestamp_and_by_time(bootstrap, new_topic):
    """ListOffsets with the special timestamps: -2 earliest, -1 latest, -3 the record with the largest
    timestamp (KIP-734), or a time."""
    topic = new_topic()
    base_ts = int(time.time() * 1000) - 3_600_000
    # The largest timestamp is in the middle, at offset 2.
    stamps = [base_ts, base_ts + 10, base_ts + 50, base_ts + 20, base_ts + 30]
    produce(producer(bootstrap), topic, [{"partition": 0, "value": b"v", "timestamp": ts} for ts in stamps])

    admin = admin_client(bootstrap)
    tp = TopicPartition(topic, 0)

    def ask(spec):
        info = admin.list_offsets({tp: spec}, request_timeout=PATIENCE_S)[tp].result(timeout=PATIENCE_S)
        return info.offset, info.timestamp

    assert ask(OffsetSpec.earliest())[0] == 0
    assert ask(OffsetSpec.latest())[0] == 5
    assert ask(OffsetSpec.max_timestamp()) == (2, base_ts + 50)
    assert ask(OffsetSpec.for_timestamp(base_ts + 15)) == (2, base_ts + 50)
    assert ask(OffsetSpec.for_timestamp(base_ts + 51))[0] == -1


def test_admin_delete_topics_removes_topic(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic, partitions=2)
    assert topic in topic_names(bootstrap)

    admin = admin_client(bootstrap)
    futures = admin.delete_topics([topic], operation_timeout=30, request_timeout=PATIENCE_S)
    futures[topic].result(timeout=PATIENCE_S)

    assert topic not in topic_names(bootstrap)


def test_admin_delete_topics_of_unknown_topic_fails_with_unknown_topic(bootstrap, new_topic):
    topic = new_topic()
    admin = admin_client(bootstrap)
    futures = admin.delete_topics([topic], request_timeout=PATIENCE_S)
    with pytest.raises(KafkaException) as raised:
        futures[topic].result(timeout=PATIENCE_S)
    assert raised.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_topic_recreated_after_delete_starts_empty(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic)
    produce(producer(bootstrap), topic, sample_records(5, 1, int(time.time() * 1000)))

    admin = admin_client(bootstrap)
    admin.delete_topics([topic], request_timeout=PATIENCE_S)[topic].result(PATIENCE_S)
    create_topic(bootstrap, topic)

    c = consumer(bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=PATIENCE_S) == (0, 0)
    finally:
        c.close()
    [(partition, offset)] = produce(producer(bootstrap), topic, [{"value": b"after"}])
    assert (partition, offset) == (0, 0)


# ---------------------------------------------------------------------------------------------- produce


def test_producer_auto_creates_unknown_topic_through_metadata(bootstrap, new_topic):
    topic = new_topic()
    reports = produce(producer(bootstrap), topic, [{"key": b"k", "value": b"v"}])

    assert reports == [(0, 0)]
    assert topic in topic_names(bootstrap)


@pytest.mark.parametrize("codec", CODECS)
def test_idempotent_producer_delivers_every_codec_and_assigned_consumer_reads_records_back_intact(
    bootstrap, new_topic, codec
):
    topic = new_topic()
    create_topic(bootstrap, topic, partitions=3)
    base_ts = int(time.time() * 1000) - 60_000
    records = sample_records(300, 3, base_ts)

    # linger so that records travel as multi-record (compressed) batches.
    reports = produce(producer(bootstrap, **{"compression.type": codec, "linger.ms": 20}), topic, records)

    # Delivery reports: each record went to the partition it asked for, offsets dense from 0 in send order.
    for p in range(3):
        offsets = [offset for partition, offset in reports if partition == p]
        assert offsets == list(range(100)), f"partition {p} offsets"
    assert [partition for partition, _ in reports] == [r["partition"] for r in records]

    # Nothing more was stored than was sent (no duplicate batches).
    assert [watermarks(bootstrap, topic, p) for p in range(3)] == [(0, 100)] * 3
    messages = read(bootstrap, [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(3)], 300)
    got = sorted((as_record(m) for m in messages), key=lambda r: (r["partition"], r["offset"]))
    expected = sorted(
        (
            {
                "partition": partition,
                "offset": offset,
                "key": record["key"],
                "value": record["value"],
                "headers": record["headers"],
                "timestamp": (TIMESTAMP_CREATE_TIME, record["timestamp"]),
            }
            for record, (partition, offset) in zip(records, reports)
        ),
        key=lambda r: (r["partition"], r["offset"]),
    )
    assert got == expected


def test_idempotent_producer_with_five_in_flight_keeps_order_without_duplicates(bootstrap, new_topic):
    topic = new_topic()
    records = [{"partition": 0, "value": f"{i}".encode()} for i in range(5000)]
    prod = producer(bootstrap, **{"max.in.flight.requests.per.connection": 5, "linger.ms": 1, "batch.num.messages": 50})

    reports = produce(prod, topic, records)

    assert [offset for _, offset in reports] == list(range(5000))
    assert watermarks(bootstrap, topic, 0) == (0, 5000)
    messages = read(bootstrap, [TopicPartition(topic, 0, OFFSET_BEGINNING)], 5000)
    assert [(m.offset(), m.value()) for m in messages] == [(i, f"{i}".encode()) for i in range(5000)]


def test_two_idempotent_producers_on_one_partition_each_deliver_everything(bootstrap, new_topic):
    """Sequence numbers are tracked per producer id: a second producer starting at sequence 0 on the same
    partition is not a duplicate of the first."""
    topic = new_topic()
    create_topic(bootstrap, topic)
    first, second = producer(bootstrap), producer(bootstrap)
    for round_ in range(3):
        produce(first, topic, [{"partition": 0, "value": f"first-{round_}-{i}".encode()} for i in range(10)])
        produce(second, topic, [{"partition": 0, "value": f"second-{round_}-{i}".encode()} for i in range(10)])

    messages = read(bootstrap, [TopicPartition(topic, 0, OFFSET_BEGINNING)], 60)
    values = [m.value() for m in messages]
    assert [m.offset() for m in messages] == list(range(60))
    for name in ("first", "second"):
        assert [v for v in values if v.startswith(name.encode())] == [
            f"{name}-{r}-{i}".encode() for r in range(3) for i in range(10)
        ]


def test_null_and_empty_keys_values_and_headers_pass_through_untouched(bootstrap, new_topic):
    topic = new_topic()
    records = [
        {"key": None, "value": None},
        {"key": b"", "value": b""},
        {"key": b"k", "value": None, "headers": [("null-header", None), ("empty-header", b"")]},
        {"key": None, "value": b"\x00\xff binary \x00", "headers": [("dup", b"1"), ("dup", b"2")]},
        {"key": b"\xff\xfe", "value": b"v", "headers": [("binary", b"\x00\xff\x80")]},
    ]
    produce(producer(bootstrap, **{"linger.ms": 20}), topic, records)

    messages = read(bootstrap, [TopicPartition(topic, 0, OFFSET_BEGINNING)], len(records))
    got = [(m.key(), m.value(), m.headers() or []) for m in messages]
    assert got == [
        (None, None, []),
        (b"", b"", []),
        (b"k", None, [("null-header", None), ("empty-header", b"")]),
        (None, b"\x00\xff binary \x00", [("dup", b"1"), ("dup", b"2")]),
        (b"\xff\xfe", b"v", [("binary", b"\x00\xff\x80")]),
    ]


def test_acks_zero_records_are_stored_and_get_no_response(bootstrap, new_topic):
    """An acks=0 Produce gets no response; a broker that answers anyway desynchronizes the client's
    correlation ids. The records must still be stored."""
    topic = new_topic()
    create_topic(bootstrap, topic)
    prod = producer(bootstrap, **{"acks": 0, "enable.idempotence": False, "linger.ms": 5})
    produce(prod, topic, [{"partition": 0, "value": f"{i}".encode()} for i in range(100)])
    # The same connection still works for an acknowledged request afterwards.
    metadata = prod.list_topics(topic, timeout=PATIENCE_S)
    assert metadata.topics[topic].error is None

    messages = read(bootstrap, [TopicPartition(topic, 0, OFFSET_BEGINNING)], 100)
    assert [m.value() for m in messages] == [f"{i}".encode() for i in range(100)]


def test_large_record_round_trips_with_small_consumer_fetch_limits(bootstrap, new_topic):
    """KIP-74: a fetch returns at least one whole batch even when it exceeds the fetch limits, or the
    consumer would stall forever on it."""
    topic = new_topic()
    big = bytes(range(256)) * 3500  # ~900 KB, under the default max.message.bytes
    produce(producer(bootstrap), topic, [{"partition": 0, "value": big}, {"partition": 0, "value": b"small"}])

    messages = read(
        bootstrap,
        [TopicPartition(topic, 0, OFFSET_BEGINNING)],
        2,
        **{"max.partition.fetch.bytes": 1024, "fetch.max.bytes": 1024, "message.max.bytes": 1024},
    )
    assert [m.value() for m in messages] == [big, b"small"]


def test_compacted_topic_rejects_a_batch_with_a_keyless_record_with_invalid_record(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic, config={"cleanup.policy": "compact"})
    prod = producer(bootstrap, **{"linger.ms": 50, "enable.idempotence": False, "retries": 0})

    # One batch of three records, the middle one without a key: Kafka rejects the whole batch, naming the
    # culprit in record_errors (librdkafka may report its batch mates as _INVALID_DIFFERENT_RECORD).
    batch = [{"key": b"k0", "value": b"a"}, {"value": b"no key"}, {"key": b"k2", "value": b"c"}]
    codes = [code for code, _ in produce_reports(prod, topic, batch)]
    assert codes[1] == KafkaError.INVALID_RECORD
    assert {codes[0], codes[2]} <= {KafkaError.INVALID_RECORD, KafkaError._INVALID_DIFFERENT_RECORD}
    # Keyed records alone are accepted, starting at offset 0: nothing of the rejected batch was stored.
    assert produce_reports(prod, topic, [{"key": b"k3", "value": b"d"}]) == [(None, 0)]


def test_a_record_rejected_by_the_broker_is_reported_without_an_offset(bootstrap, new_topic):
    """A failed partition in a Produce response carries base_offset -1, as Kafka's does (librdkafka hands
    that base offset to the delivery report): a client must not be told a rejected record has an offset.
    confluent-kafka's Message.offset() is None for a negative offset."""
    topic = new_topic()
    create_topic(bootstrap, topic, config={"cleanup.policy": "compact", "max.message.bytes": "100000"})
    prod = producer(bootstrap, **{"message.max.bytes": 1_000_000, "enable.idempotence": False, "retries": 0})

    [(code, offset)] = produce_reports(prod, topic, [{"value": b"no key"}])
    assert code == KafkaError.INVALID_RECORD
    assert offset is None, f"a record rejected with INVALID_RECORD was reported at offset {offset}"

    [(code, offset)] = produce_reports(prod, topic, [{"key": b"k", "value": bytes(200_000)}])
    assert code == KafkaError.MSG_SIZE_TOO_LARGE
    assert offset is None, f"a record rejected with MESSAGE_TOO_LARGE was reported at offset {offset}"


def test_record_larger_than_max_message_bytes_is_rejected_with_message_too_large(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic, config={"max.message.bytes": "100000"})
    # The client's own limit is raised so that the broker is the one to refuse.
    prod = producer(bootstrap, **{"message.max.bytes": 1_000_000, "enable.idempotence": False, "retries": 0})

    reports = produce_reports(prod, topic, [{"value": bytes(200_000)}])
    assert [code for code, _ in reports] == [KafkaError.MSG_SIZE_TOO_LARGE]
    assert produce_reports(prod, topic, [{"value": bytes(50_000)}]) == [(None, 0)]


def test_log_append_time_topic_stamps_records_with_broker_time(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    produce(producer(bootstrap), topic, [{"value": b"old", "timestamp": 1_000}])
    after = int(time.time() * 1000)

    [msg] = read(bootstrap, [TopicPartition(topic, 0, OFFSET_BEGINNING)], 1)
    kind, ts = msg.timestamp()
    assert kind == TIMESTAMP_LOG_APPEND_TIME
    assert before <= ts <= after, "the broker's clock, not the producer's timestamp"
    assert msg.value() == b"old"


# ---------------------------------------------------------------------------------------------- consume


def test_assigned_consumer_starts_at_the_given_offset(bootstrap, new_topic):
    topic = new_topic()
    produce(producer(bootstrap), topic, [{"partition": 0, "value": f"{i}".encode()} for i in range(10)])

    messages = read(bootstrap, [TopicPartition(topic, 0, 7)], 3)
    assert [(m.offset(), m.value()) for m in messages] == [(7, b"7"), (8, b"8"), (9, b"9")]


def test_assigned_consumer_at_log_end_receives_records_produced_later(bootstrap, new_topic):
    """Fetch long-polls at the log end and hands over records appended meanwhile."""
    topic = new_topic()
    create_topic(bootstrap, topic)
    c = consumer(bootstrap)
    try:
        # Offset 0 is the log end of the empty topic: the consumer's fetches wait there (a symbolic
        # OFFSET_END would race with the produce below).
        c.assign([TopicPartition(topic, 0, 0)])
        c.poll(1.0)
        produce(producer(bootstrap), topic, [{"value": b"late-1"}, {"value": b"late-2"}])
        got = []
        deadline = time.monotonic() + PATIENCE_S
        while len(got) < 2 and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None:
                assert msg.error() is None, msg.error()
                got.append((msg.offset(), msg.value()))
        assert got == [(0, b"late-1"), (1, b"late-2")]
    finally:
        c.close()


def test_assigned_consumer_past_log_end_resets_by_auto_offset_reset(bootstrap, new_topic):
    """A fetch past the log end gets OFFSET_OUT_OF_RANGE, and librdkafka applies auto.offset.reset."""
    topic = new_topic()
    produce(producer(bootstrap), topic, [{"partition": 0, "value": f"{i}".encode()} for i in range(3)])

    messages = read(bootstrap, [TopicPartition(topic, 0, 1000)], 3, **{"auto.offset.reset": "earliest"})
    assert [m.offset() for m in messages] == [0, 1, 2]


def test_assigned_consumer_past_log_end_reports_error_when_reset_is_error(bootstrap, new_topic):
    topic = new_topic()
    produce(producer(bootstrap), topic, [{"partition": 0, "value": b"only"}])

    c = consumer(bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 1000)])

        def error():
            msg = c.poll(0.5)
            return msg.error() if msg is not None and msg.error() else None

        err = wait_for(error, "an offset reset error")
        assert err.code() == KafkaError._AUTO_OFFSET_RESET
    finally:
        c.close()


def test_fetch_with_unmet_min_bytes_answers_at_max_wait_with_what_it_has(bootstrap, new_topic):
    """Fetch waits for min_bytes or max_wait_ms, whichever comes first: a small record still arrives."""
    topic = new_topic()
    produce(producer(bootstrap), topic, [{"partition": 0, "value": b"small"}])

    messages = read(
        bootstrap,
        [TopicPartition(topic, 0, OFFSET_BEGINNING)],
        1,
        **{"fetch.min.bytes": 10_000_000, "fetch.wait.max.ms": 200},
    )
    assert [m.value() for m in messages] == [b"small"]


def test_topic_with_many_partitions_round_trips_a_record_per_partition(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic, partitions=64)
    reports = produce(
        producer(bootstrap), topic, [{"partition": p, "key": f"{p}".encode(), "value": b"v"} for p in range(64)]
    )
    assert reports == [(p, 0) for p in range(64)]

    messages = read(bootstrap, [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(64)], 64)
    assert sorted((m.partition(), m.offset(), m.key()) for m in messages) == [
        (p, 0, f"{p}".encode()) for p in range(64)
    ]


def test_get_watermark_offsets_reports_log_start_and_end(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic, partitions=2)
    produce(producer(bootstrap), topic, [{"partition": 1, "value": b"x"} for _ in range(4)])

    c = consumer(bootstrap)
    try:
        assert c.get_watermark_offsets(TopicPartition(topic, 0), timeout=PATIENCE_S) == (0, 0)
        assert c.get_watermark_offsets(TopicPartition(topic, 1), timeout=PATIENCE_S) == (0, 4)
    finally:
        c.close()


def test_offsets_for_times_returns_first_offset_at_or_after_timestamp(bootstrap, new_topic):
    topic = new_topic()
    base_ts = int(time.time() * 1000) - 3_600_000
    # Three batches (one per produce+flush) of 5 records each, timestamps 1 s apart.
    prod = producer(bootstrap)
    for batch in range(3):
        produce(
            prod,
            topic,
            [{"partition": 0, "value": b"v", "timestamp": base_ts + (batch * 5 + i) * 1000} for i in range(5)],
        )

    def offset_for(ts):
        c = consumer(bootstrap)
        try:
            [tp] = c.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=PATIENCE_S)
            assert tp.error is None
            return tp.offset
        finally:
            c.close()

    assert offset_for(base_ts - 1) == 0
    assert offset_for(base_ts) == 0
    assert offset_for(base_ts + 7_000) == 7  # inside the second batch
    assert offset_for(base_ts + 7_500) == 8  # between records
    assert offset_for(base_ts + 14_000) == 14
    assert offset_for(base_ts + 14_001) == -1  # past every record: Kafka answers -1 (OFFSET_END)


# ------------------------------------------------------------------ admin: partitions, configs, records, cluster

# The topic configs every Kafka-compatible broker describes (tools read-modify-write them by these names).
KAFKA_TOPIC_CONFIGS = {
    "cleanup.policy",
    "compression.type",
    "delete.retention.ms",
    "max.message.bytes",
    "message.timestamp.type",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "retention.bytes",
    "retention.ms",
    "segment.bytes",
    "segment.ms",
}


def describe_topic_configs(bootstrap, topic):
    admin = admin_client(bootstrap)
    resource = ConfigResource(ResourceType.TOPIC, topic)
    return admin.describe_configs([resource], request_timeout=PATIENCE_S)[resource].result(timeout=PATIENCE_S)


def alter_topic_configs(bootstrap, topic, entries, **options):
    """IncrementalAlterConfigs: `entries` maps a name to a value to SET, or to None to DELETE."""
    admin = admin_client(bootstrap)
    resource = ConfigResource(
        ResourceType.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(name, value, incremental_operation=AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET)
            for name, value in entries.items()
        ],
    )
    futures = admin.incremental_alter_configs([resource], request_timeout=PATIENCE_S, **options)
    [future] = futures.values()
    future.result(timeout=PATIENCE_S)


def test_admin_create_partitions_grows_a_topic_and_new_partitions_take_records(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic, partitions=1)
    admin = admin_client(bootstrap)

    admin.create_partitions([NewPartitions(topic, 3)], request_timeout=PATIENCE_S)[topic].result(PATIENCE_S)
    partitions = admin.list_topics(topic, timeout=PATIENCE_S).topics[topic].partitions
    assert sorted(partitions) == [0, 1, 2]
    assert all(p.leader == 0 and p.error is None for p in partitions.values())

    assert produce(producer(bootstrap), topic, [{"partition": 2, "value": b"new"}]) == [(2, 0)]
    [msg] = read(bootstrap, [TopicPartition(topic, 2, OFFSET_BEGINNING)], 1)
    assert msg.value() == b"new"


def test_admin_create_partitions_never_shrinks_and_validate_only_changes_nothing(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic, partitions=3)
    admin = admin_client(bootstrap)

    with pytest.raises(KafkaException) as raised:
        admin.create_partitions([NewPartitions(topic, 2)], request_timeout=PATIENCE_S)[topic].result(PATIENCE_S)
    assert raised.value.args[0].code() == KafkaError.INVALID_PARTITIONS

    futures = admin.create_partitions([NewPartitions(topic, 5)], validate_only=True, request_timeout=PATIENCE_S)
    futures[topic].result(PATIENCE_S)
    assert len(admin.list_topics(topic, timeout=PATIENCE_S).topics[topic].partitions) == 3

    unknown = new_topic("-unknown")
    with pytest.raises(KafkaException) as raised:
        admin.create_partitions([NewPartitions(unknown, 2)], request_timeout=PATIENCE_S)[unknown].result(PATIENCE_S)
    assert raised.value.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_admin_describe_configs_returns_every_topic_config_with_its_source(bootstrap, new_topic):
    """DescribeConfigs answers every config of the topic, not only the ones that were set: a set one as
    DYNAMIC_TOPIC_CONFIG, the rest as defaults. Tools read-modify-write with this answer."""
    topic = new_topic()
    create_topic(bootstrap, topic, config={"retention.ms": "3600000"})

    configs = describe_topic_configs(bootstrap, topic)
    assert KAFKA_TOPIC_CONFIGS <= set(configs), f"missing: {KAFKA_TOPIC_CONFIGS - set(configs)}"
    retention = configs["retention.ms"]
    assert (retention.value, retention.source, retention.is_default) == (
        "3600000",
        ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
        False,
    )
    for name, entry in configs.items():
        if name != "retention.ms":
            assert entry.source == ConfigSource.DEFAULT_CONFIG.value and entry.is_default, name
            assert entry.value is not None, name
        assert not entry.is_read_only and not entry.is_sensitive, name
    assert configs["cleanup.policy"].value == "delete"
    assert configs["max.message.bytes"].value == "1048588"


def test_admin_incremental_alter_configs_sets_and_deletes_topic_configs(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic, config={"retention.ms": "3600000"})

    alter_topic_configs(bootstrap, topic, {"segment.ms": "1000000", "retention.ms": None})

    configs = describe_topic_configs(bootstrap, topic)
    assert (configs["segment.ms"].value, configs["segment.ms"].source) == (
        "1000000",
        ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
    )
    assert (configs["retention.ms"].value, configs["retention.ms"].source) == (
        "604800000",
        ConfigSource.DEFAULT_CONFIG.value,
    )


def test_admin_alter_configs_rejects_invalid_values_and_validate_only_changes_nothing(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic)

    with pytest.raises(KafkaException) as raised:
        alter_topic_configs(bootstrap, topic, {"retention.ms": "not a number"})
    assert raised.value.args[0].code() == KafkaError.INVALID_CONFIG
    with pytest.raises(KafkaException) as raised:
        alter_topic_configs(bootstrap, topic, {"no.such.config": "1"})
    assert raised.value.args[0].code() == KafkaError.INVALID_CONFIG
    alter_topic_configs(bootstrap, topic, {"retention.ms": "1234567"}, validate_only=True)

    assert describe_topic_configs(bootstrap, topic)["retention.ms"].value == "604800000"


def test_admin_legacy_alter_configs_replaces_the_whole_set(bootstrap, new_topic):
    """AlterConfigs (not incremental) sets exactly the given configs: the others return to defaults."""
    topic = new_topic()
    create_topic(bootstrap, topic, config={"retention.ms": "3600000"})
    admin = admin_client(bootstrap)
    resource = ConfigResource(ResourceType.TOPIC, topic, set_config={"segment.ms": "2000000"})

    with pytest.warns(DeprecationWarning):  # confluent-kafka prefers the incremental API; tools still use this
        futures = admin.alter_configs([resource], request_timeout=PATIENCE_S)
    futures[resource].result(timeout=PATIENCE_S)

    configs = describe_topic_configs(bootstrap, topic)
    assert configs["segment.ms"].value == "2000000"
    assert (configs["retention.ms"].value, configs["retention.ms"].is_default) == ("604800000", True)


def test_altered_max_message_bytes_takes_effect_on_produce(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic)
    prod = producer(bootstrap, **{"enable.idempotence": False, "retries": 0})
    assert produce_reports(prod, topic, [{"value": bytes(50_000)}]) == [(None, 0)]

    alter_topic_configs(bootstrap, topic, {"max.message.bytes": "10000"})

    [(code, _)] = produce_reports(prod, topic, [{"value": bytes(50_000)}])
    assert code == KafkaError.MSG_SIZE_TOO_LARGE


def test_admin_describe_configs_of_the_broker_lists_its_settings(bootstrap):
    admin = admin_client(bootstrap)
    resource = ConfigResource(ResourceType.BROKER, "0")
    configs = admin.describe_configs([resource], request_timeout=PATIENCE_S)[resource].result(timeout=PATIENCE_S)
    assert configs, "no broker configs"
    ids = [configs[name].value for name in ("broker.id", "node.id") if name in configs]
    assert ids and set(ids) == {"0"}
    assert "auto.create.topics.enable" in configs


def test_admin_delete_records_moves_the_log_start_and_consumers_start_there(bootstrap, new_topic):
    topic = new_topic()
    produce(producer(bootstrap), topic, [{"partition": 0, "value": f"{i}".encode()} for i in range(10)])
    admin = admin_client(bootstrap)

    [future] = admin.delete_records([TopicPartition(topic, 0, 5)], request_timeout=PATIENCE_S).values()
    assert future.result(timeout=PATIENCE_S).low_watermark == 5

    assert watermarks(bootstrap, topic, 0) == (5, 10)
    messages = read(bootstrap, [TopicPartition(topic, 0, OFFSET_BEGINNING)], 5)
    assert [(m.offset(), m.value()) for m in messages] == [(i, f"{i}".encode()) for i in range(5, 10)]
    # An offset below the new log start is out of range: the consumer resets to the earliest, offset 5.
    messages = read(bootstrap, [TopicPartition(topic, 0, 2)], 1, **{"auto.offset.reset": "earliest"})
    assert messages[0].offset() == 5


def test_admin_describe_cluster_names_the_single_broker_as_controller(nerve, bootstrap):
    admin = admin_client(bootstrap)
    cluster = admin.describe_cluster(request_timeout=PATIENCE_S).result(timeout=PATIENCE_S)
    assert cluster.cluster_id
    assert cluster.controller.id == 0
    assert [(node.id, node.host, node.port) for node in cluster.nodes] == [(0, "127.0.0.1", nerve.port)]
