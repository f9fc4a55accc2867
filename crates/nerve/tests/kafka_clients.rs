//! `nerve serve` driven by a real Kafka client (librdkafka through the `rdkafka` crate).

mod common;

use std::time::Duration;

use common::{consume, produce, producer, record, Nerve, PATIENCE};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureRecord;
use rdkafka::{Offset, TopicPartitionList};

fn create_topic(nerve: &Nerve, name: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", nerve.bootstrap())
        .create()
        .expect("admin client");
    let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    let results = futures::executor::block_on(admin.create_topics(
        [&topic],
        &AdminOptions::new().operation_timeout(Some(PATIENCE)),
    ))
    .expect("create topics answered");
    for result in results {
        result.expect("topic created");
    }
}

#[test]
fn records_round_trip_with_every_compression_codec_keys_and_headers() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
        let topic = format!("codec-{codec}");
        create_topic(&nerve, &topic, 1);
        let producer = producer(&nerve, &[("compression.type", codec), ("linger.ms", "5")]);
        let records: Vec<_> = (0..200).map(record).collect();
        let offsets = produce(&producer, &topic, &records);
        assert_eq!(offsets, (0..200).collect::<Vec<i64>>(), "codec {codec}");

        let received = consume(&nerve, &topic, Offset::Beginning, records.len());
        for (got, (key, payload, headers)) in received.iter().zip(&records) {
            assert_eq!(got.key.as_deref(), Some(key.as_bytes()), "codec {codec}");
            assert_eq!(
                got.payload.as_deref(),
                Some(payload.as_bytes()),
                "codec {codec}"
            );
            let expected: Vec<_> = headers
                .iter()
                .map(|(k, v)| (k.clone(), Some(v.as_bytes().to_vec())))
                .collect();
            assert_eq!(got.headers, expected, "codec {codec}");
        }
        assert_eq!(
            received.iter().map(|r| r.offset).collect::<Vec<_>>(),
            offsets
        );
    }
}

#[test]
fn producing_to_an_unknown_topic_auto_creates_it() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    let producer = producer(&nerve, &[]);
    let offsets = produce(&producer, "auto-created", &[record(1), record(2)]);
    assert_eq!(offsets, vec![0, 1]);
    let consumer = common::consumer(&nerve);
    let metadata = consumer
        .fetch_metadata(Some("auto-created"), PATIENCE)
        .expect("metadata");
    let topic = &metadata.topics()[0];
    assert_eq!(topic.name(), "auto-created");
    assert!(topic.error().is_none());
    assert_eq!(topic.partitions().len(), 1);
    assert_eq!(topic.partitions()[0].leader(), 0);
    assert_eq!(
        consume(&nerve, "auto-created", Offset::Beginning, 2).len(),
        2
    );
}

#[test]
fn offsets_for_times_finds_the_first_record_at_or_after_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve, "by-time", 1);
    let producer = producer(&nerve, &[]);
    // An hour ago: older records could be removed by time retention (seven days) during the test.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 3_600_000;
    for i in 0..10i64 {
        let delivery = producer
            .send_result(
                FutureRecord::to("by-time")
                    .partition(0)
                    .key("k")
                    .payload("v")
                    .timestamp(base + i * 1000),
            )
            .map_err(|(e, _)| e)
            .expect("queued");
        futures::executor::block_on(delivery)
            .expect("reported")
            .expect("delivered");
    }
    let consumer = common::consumer(&nerve);
    let lookup = |timestamp: i64| {
        let mut query = TopicPartitionList::new();
        query
            .add_partition_offset("by-time", 0, Offset::Offset(timestamp))
            .unwrap();
        let answer = consumer
            .offsets_for_times(query, PATIENCE)
            .expect("answered");
        answer.elements()[0].offset()
    };
    assert_eq!(lookup(base), Offset::Offset(0));
    assert_eq!(lookup(base + 3000), Offset::Offset(3));
    assert_eq!(lookup(base + 3500), Offset::Offset(4));
    assert_eq!(lookup(base - 1), Offset::Offset(0));
    // No record that late: Kafka answers -1, which librdkafka reports as the end.
    assert_eq!(lookup(base + 60_000), Offset::End);

    let (low, high) = consumer
        .fetch_watermarks("by-time", 0, PATIENCE)
        .expect("watermarks");
    assert_eq!((low, high), (0, 10));
}

#[test]
fn records_survive_a_graceful_restart() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    let records: Vec<_> = (0..50).map(record).collect();
    produce(&producer(&nerve, &[]), "durable", &records);
    nerve.stop();

    let nerve = Nerve::start(dir.path());
    let received = consume(&nerve, "durable", Offset::Beginning, records.len());
    assert_eq!(received.len(), 50);
    assert_eq!(
        received[49].payload.as_deref(),
        Some(records[49].1.as_bytes())
    );
    // The restarted broker keeps appending after the old records.
    let offsets = produce(&producer(&nerve, &[]), "durable", &[record(50)]);
    assert_eq!(offsets, vec![50]);
}

#[test]
fn acks_zero_records_are_stored_without_any_response() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve, "fire-and-forget", 1);
    let producer = producer(&nerve, &[("acks", "0"), ("enable.idempotence", "false")]);
    let records: Vec<_> = (0..20).map(record).collect();
    produce(&producer, "fire-and-forget", &records);
    let received = consume(&nerve, "fire-and-forget", Offset::Beginning, records.len());
    assert_eq!(received.len(), 20);
    assert_eq!(received[0].key.as_deref(), Some(&b"key-0"[..]));
}

#[test]
fn consumer_waiting_at_the_end_receives_records_produced_later() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve, "long-poll", 1);
    let bootstrap_nerve = &nerve;
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| consume(bootstrap_nerve, "long-poll", Offset::Beginning, 5));
        std::thread::sleep(Duration::from_millis(300));
        let records: Vec<_> = (0..5).map(record).collect();
        produce(&producer(bootstrap_nerve, &[]), "long-poll", &records);
        let received = reader.join().expect("reader");
        assert_eq!(received.len(), 5);
    });
}
