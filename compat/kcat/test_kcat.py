"""kcat (Debian's package: kcat 1.7 on librdkafka 2.0) against `nerve serve`, driven by pytest.

librdkafka 2.0 is older than the clients in compat/python, so these tests also check that Nerve's
ApiVersions answer lets an older client negotiate. Every kcat run has `-m` (metadata timeout) and consumers
`-e` (exit at the end of the log), plus a subprocess timeout, so nothing can hang. Consumers use `-C`
without `-G`: no consumer group (issue 4).
"""

import json
import shutil
import subprocess

import pytest

from nerve_compat import PATIENCE_S

KCAT = shutil.which("kcat")
if KCAT is None:
    pytest.fail("kcat is not installed (apt-get install -y kcat; .ci/run does)", pytrace=False)


def kcat(bootstrap, *args, input=None):
    """Runs kcat and returns its stdout (bytes); fails the test if kcat exits non-zero."""
    result = subprocess.run(
        [KCAT, "-b", bootstrap, "-m", "30", "-q", *args],
        input=input,
        capture_output=True,
        timeout=PATIENCE_S * 2,
    )
    assert result.returncode == 0, f"kcat {' '.join(args)} exited {result.returncode}: {result.stderr.decode()}"
    return result.stdout


def produce(bootstrap, topic, lines, *args):
    kcat(bootstrap, "-P", "-t", topic, *args, input="".join(f"{line}\n" for line in lines).encode())


def consume_json(bootstrap, topic, *args):
    """Reads the whole topic (or what `args` select) with the JSON envelope, one dict per record."""
    out = kcat(bootstrap, "-C", "-t", topic, "-e", "-J", *args)
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def create_topic(bootstrap, topic, partitions):
    """kcat cannot create topics with several partitions; the admin client of confluent-kafka can."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(timeout=PATIENCE_S)


def test_kcat_lists_the_broker_and_topics(nerve, bootstrap, new_topic):
    topic = new_topic()
    produce(bootstrap, topic, ["x"])

    listing = json.loads(kcat(bootstrap, "-L", "-J"))
    assert listing["controllerid"] == 0
    assert listing["brokers"] == [{"id": 0, "name": f"127.0.0.1:{nerve.port}"}]
    [described] = [t for t in listing["topics"] if t["topic"] == topic]
    assert described["partitions"] == [
        {"partition": 0, "leader": 0, "replicas": [{"id": 0}], "isrs": [{"id": 0}]}
    ]
    assert "error" not in described

    text = kcat(bootstrap, "-L", "-t", topic).decode()
    assert "1 brokers:" in text
    assert f'topic "{topic}" with 1 partitions:' in text


def test_kcat_produces_keyed_lines_and_reads_them_back_exactly(bootstrap, new_topic):
    topic = new_topic()
    lines = [f"key-{i}:value {i} with spaces and : colons" for i in range(100)]
    produce(bootstrap, topic, lines, "-K:")

    out = kcat(bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-K:").decode()
    assert out.splitlines() == lines

    records = consume_json(bootstrap, topic, "-o", "beginning")
    assert [(r["partition"], r["offset"], r["key"]) for r in records] == [
        (0, i, f"key-{i}") for i in range(100)
    ]


def test_kcat_format_prints_key_partition_offset_and_headers(bootstrap, new_topic):
    topic = new_topic()
    produce(bootstrap, topic, ["k1:first", "k2:second"], "-K:", "-H", "trace=abc", "-H", "kind=compat")

    out = kcat(bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-f", "%k|%s|%p|%o|%h\n").decode()
    assert out.splitlines() == [
        "k1|first|0|0|trace=abc,kind=compat",
        "k2|second|0|1|trace=abc,kind=compat",
    ]


def test_kcat_null_keys_and_empty_values_round_trip(bootstrap, new_topic):
    topic = new_topic()
    # -Z: an empty key or value is sent as NULL; without it, as an empty string.
    produce(bootstrap, topic, [":null-key", "k:", "plain"], "-K:", "-Z")
    produce(bootstrap, topic, [":empty-key"], "-K:")

    out = kcat(bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-f", "%K|%S|%s\n").decode()
    # %K / %S are the key / value lengths: -1 for NULL.
    assert out.splitlines() == ["-1|8|null-key", "1|-1|", "-1|5|plain", "0|9|empty-key"]


def test_kcat_produces_to_a_chosen_partition_and_consumes_one_partition(bootstrap, new_topic):
    topic = new_topic()
    create_topic(bootstrap, topic, 3)
    for p in range(3):
        produce(bootstrap, topic, [f"p{p}-{i}" for i in range(p + 1)], "-p", str(p))

    for p in range(3):
        records = consume_json(bootstrap, topic, "-p", str(p), "-o", "beginning")
        assert [(r["partition"], r["offset"], r["payload"]) for r in records] == [
            (p, i, f"p{p}-{i}") for i in range(p + 1)
        ]
    everything = consume_json(bootstrap, topic, "-o", "beginning")
    assert len(everything) == 6


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_kcat_compressed_batches_round_trip(bootstrap, new_topic, codec):
    topic = new_topic()
    lines = [f"k{i}:{'compressible ' * (i % 20)}{i}" for i in range(500)]
    produce(bootstrap, topic, lines, "-K:", "-X", f"compression.codec={codec}", "-X", "linger.ms=50")

    out = kcat(bootstrap, "-C", "-t", topic, "-e", "-o", "beginning", "-K:").decode()
    assert out.splitlines() == lines


def test_kcat_idempotent_producer_delivers_in_order(bootstrap, new_topic):
    """librdkafka 2.0's idempotent producer: InitProducerId, then sequenced batches."""
    topic = new_topic()
    lines = [str(i) for i in range(2000)]
    produce(bootstrap, topic, lines, "-X", "enable.idempotence=true", "-X", "linger.ms=5")

    records = consume_json(bootstrap, topic, "-o", "beginning")
    assert [(r["offset"], r["payload"]) for r in records] == list(enumerate(lines))


def test_kcat_consumes_from_absolute_and_relative_offsets_with_a_count(bootstrap, new_topic):
    topic = new_topic()
    produce(bootstrap, topic, [str(i) for i in range(10)])

    def payloads(*args):
        return [(r["offset"], r["payload"]) for r in consume_json(bootstrap, topic, *args)]

    assert payloads("-o", "7") == [(7, "7"), (8, "8"), (9, "9")]
    assert payloads("-o", "-2") == [(8, "8"), (9, "9")]  # two before the end
    assert payloads("-o", "beginning", "-c", "3") == [(0, "0"), (1, "1"), (2, "2")]
    assert payloads("-o", "end") == []


def test_kcat_queries_offsets_by_timestamp(bootstrap, new_topic):
    """ListOffsets by time: the first offset whose timestamp is at or after the target, -1 past the end."""
    topic = new_topic()
    for batch in range(3):
        produce(bootstrap, topic, [f"b{batch}-{i}" for i in range(3)])
    records = consume_json(bootstrap, topic, "-o", "beginning")
    assert len(records) == 9

    def query(ts):
        out = kcat(bootstrap, "-Q", "-t", f"{topic}:0:{ts}").decode()
        # "<topic> [0] offset <n>"
        [line] = [line for line in out.splitlines() if line.startswith(f"{topic} [0]")]
        return int(line.rsplit(" ", 1)[1])

    for record in records:
        expected = min(r["offset"] for r in records if r["ts"] >= record["ts"])
        assert query(record["ts"]) == expected
    assert query(0) == 0
    assert query(max(r["ts"] for r in records) + 1) == -1
