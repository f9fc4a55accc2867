"""`/metrics` of `nerve serve` read by the Prometheus project's own Python parsers (prometheus_client): the
whole exposition parses, in the text format and in OpenMetrics, and consumer lag is records produced minus
records committed.
"""

import urllib.request
import uuid

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from nerve_compat import PATIENCE_S, wait_for


def scrape(nerve, accept=None):
    request = urllib.request.Request(f"{nerve.http_url}/metrics")
    if accept:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=PATIENCE_S) as answer:
        return answer.headers.get("Content-Type"), answer.read().decode()


def samples(families):
    """(name, sorted labels) -> value, for every sample of every family."""
    out = {}
    for family in families:
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_lag_is_produced_minus_committed_in_a_scrape_both_parsers_accept(nerve, bootstrap):
    topic = f"metrics-{uuid.uuid4().hex[:8]}"
    group = f"lagging-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)]).values():
        future.result(timeout=PATIENCE_S)
    producer = Producer({"bootstrap.servers": bootstrap})
    for i in range(20):
        producer.produce(topic, value=f"event-{i}".encode(), partition=0)
    assert producer.flush(PATIENCE_S) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    consumer.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
    consumer.close()

    labels = (("group", group), ("partition", "0"), ("topic", topic))

    def lag_seen():
        content_type, text = scrape(nerve)
        assert content_type.startswith("text/plain; version=0.0.4"), content_type
        found = samples(parse_text(text))
        return found if found.get(("nerve_consumer_group_lag", labels)) == 13 else None

    found = wait_for(lag_seen, "a lag of 20 produced - 7 committed = 13")
    assert found[("nerve_consumer_group_committed_offset", labels)] == 7
    assert found[("nerve_log_end_offset", (("partition", "0"), ("topic", topic)))] == 20
    assert found[("nerve_topic_records_in_total", (("topic", topic),))] == 20

    content_type, text = scrape(nerve, accept="application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text"), content_type
    assert text.endswith("# EOF\n")
    open_found = samples(parse_openmetrics(text))
    assert open_found[("nerve_consumer_group_lag", labels)] == 13
