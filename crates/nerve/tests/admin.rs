//! `nerve serve` administered by librdkafka's AdminClient (through the `rdkafka` crate): topics, partitions,
//! configs and record deletion, as Kafka tools use them.
//!
//! rdkafka 0.39 has no IncrementalAlterConfigs or DescribeCluster, and its DescribeConfigs and AlterConfigs
//! results drop the per-resource error code (they are always `Ok`); so these tests check what a refusal
//! leaves behind, and the codes themselves are checked request by request in
//! `crates/nerve-broker/tests/protocol.rs`.

mod common;

use std::time::{Duration, Instant};

use common::{consume, produce, producer, record, Nerve, PATIENCE};
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigResource, ConfigSource, NewPartitions, NewTopic,
    ResourceSpecifier, TopicReplication,
};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

fn admin(nerve: &Nerve) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", nerve.bootstrap())
        .create()
        .expect("admin client")
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .operation_timeout(Some(PATIENCE))
        .request_timeout(Some(PATIENCE))
}

fn create_topic(admin: &AdminClient<DefaultClientContext>, name: &str, configs: &[(&str, &str)]) {
    let mut topic = NewTopic::new(name, 1, TopicReplication::Fixed(1));
    for (k, v) in configs {
        topic = topic.set(k, v);
    }
    let results = futures::executor::block_on(admin.create_topics([&topic], &options()))
        .expect("create topics answered");
    for result in results {
        result.expect("topic created");
    }
}

fn describe(
    admin: &AdminClient<DefaultClientContext>,
    resource: ResourceSpecifier<'_>,
) -> ConfigResource {
    let mut results = futures::executor::block_on(admin.describe_configs([&resource], &options()))
        .expect("describe configs answered");
    assert_eq!(results.len(), 1);
    results.remove(0).expect("resource described")
}

fn value(resource: &ConfigResource, name: &str) -> String {
    resource
        .get(name)
        .unwrap_or_else(|| panic!("{name} is not described"))
        .value
        .clone()
        .unwrap_or_default()
}

fn partition_count(nerve: &Nerve, topic: &str) -> usize {
    let metadata = common::consumer(nerve)
        .fetch_metadata(Some(topic), PATIENCE)
        .expect("metadata");
    metadata.topics()[0].partitions().len()
}

/// A producer that is not idempotent: records the broker refuses are then only failed deliveries, not a
/// fatal error of the producer.
fn plain_producer(nerve: &Nerve) -> FutureProducer {
    producer(nerve, &[("enable.idempotence", "false"), ("retries", "0")])
}

/// Produces one record and returns the delivery error, if any.
fn produce_one(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&str>,
    payload: &str,
) -> Option<KafkaError> {
    let mut record = FutureRecord::<str, str>::to(topic)
        .partition(0)
        .payload(payload);
    if let Some(key) = key {
        record = record.key(key);
    }
    match futures::executor::block_on(producer.send(record, PATIENCE)) {
        Ok(_) => None,
        Err((e, _)) => Some(e),
    }
}

#[test]
fn created_partitions_take_records_and_partitions_never_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    let admin = admin(&nerve);
    create_topic(&admin, "growing", &[]);

    let results = futures::executor::block_on(
        admin.create_partitions([&NewPartitions::new("growing", 3)], &options()),
    )
    .expect("create partitions answered");
    assert_eq!(results.len(), 1, "one result per topic");
    results[0].as_ref().expect("partitions added");
    assert_eq!(partition_count(&nerve, "growing"), 3);

    let producer = producer(&nerve, &[]);
    let record = FutureRecord::to("growing")
        .partition(2)
        .key("k")
        .payload("on a new partition");
    let delivered = futures::executor::block_on(producer.send(record, PATIENCE))
        .unwrap_or_else(|(e, _)| panic!("record not delivered: {e}"));
    assert_eq!((delivered.partition, delivered.offset), (2, 0));

    let consumer = common::consumer(&nerve);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("growing", 2, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let message = poll_one(&consumer);
    assert_eq!((message.0, message.1.as_str()), (0, "on a new partition"));

    let results = futures::executor::block_on(
        admin.create_partitions([&NewPartitions::new("growing", 2)], &options()),
    )
    .expect("create partitions answered");
    assert_eq!(
        results[0].as_ref().map_err(|(_, code)| *code).unwrap_err(),
        RDKafkaErrorCode::InvalidPartitions
    );
    assert_eq!(partition_count(&nerve, "growing"), 3);
}

/// The next record of an assigned consumer: (offset, payload).
fn poll_one(consumer: &BaseConsumer) -> (i64, String) {
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < PATIENCE, "no record arrived");
        match consumer.poll(Timeout::After(Duration::from_millis(500))) {
            Some(Ok(message)) => {
                let payload = message
                    .payload()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                return (message.offset(), payload.unwrap_or_default());
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
}

#[test]
fn describe_configs_returns_every_topic_config_with_defaults_marked_default() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    let admin = admin(&nerve);
    create_topic(&admin, "described", &[("retention.ms", "3600000")]);

    let topic = describe(&admin, ResourceSpecifier::Topic("described"));
    let names: Vec<&str> = topic.entries.iter().map(|e| e.name.as_str()).collect();
    let every: Vec<&str> = nerve_storage::TOPIC_CONFIGS
        .iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, every);
    for entry in &topic.entries {
        assert!(!entry.is_read_only && !entry.is_sensitive, "{entry:?}");
        if entry.name == "retention.ms" {
            assert_eq!(entry.value.as_deref(), Some("3600000"));
            assert_eq!(entry.source, ConfigSource::DynamicTopic);
            assert!(!entry.is_default);
        } else {
            assert_eq!(entry.source, ConfigSource::Default, "{entry:?}");
            assert!(entry.is_default, "{entry:?}");
        }
    }
    assert_eq!(value(&topic, "cleanup.policy"), "delete");

    let broker = describe(&admin, ResourceSpecifier::Broker(0));
    assert_eq!(value(&broker, "auto.create.topics.enable"), "true");
    assert_eq!(value(&broker, "num.partitions"), "1");
    assert_eq!(
        value(&broker, "advertised.listeners"),
        format!("PLAINTEXT://{}", nerve.bootstrap())
    );
    assert!(broker.entries.iter().all(|e| e.is_read_only));

    let absent = describe(&admin, ResourceSpecifier::Topic("absent"));
    assert!(absent.entries.is_empty(), "an unknown topic has no configs");
}

#[test]
fn altered_configs_show_in_describe_take_effect_and_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    let admin = admin(&nerve);
    create_topic(&admin, "altered", &[("segment.ms", "3600000")]);
    let producer = plain_producer(&nerve);
    assert!(produce_one(&producer, "altered", None, "keyless is fine").is_none());
    assert!(produce_one(&producer, "altered", Some("k"), &"x".repeat(2000)).is_none());

    // AlterConfigs replaces the whole set: segment.ms, not named, returns to its default.
    let change = AlterConfig::new(ResourceSpecifier::Topic("altered"))
        .set("cleanup.policy", "compact")
        .set("retention.ms", "86400000")
        .set("max.message.bytes", "1000");
    let results = futures::executor::block_on(admin.alter_configs([&change], &options()))
        .expect("alter configs answered");
    results[0].as_ref().expect("configs altered");

    let check = |admin: &AdminClient<DefaultClientContext>, producer: &FutureProducer| {
        let topic = describe(admin, ResourceSpecifier::Topic("altered"));
        assert_eq!(value(&topic, "cleanup.policy"), "compact");
        assert_eq!(value(&topic, "retention.ms"), "86400000");
        assert_eq!(value(&topic, "max.message.bytes"), "1000");
        assert_eq!(value(&topic, "segment.ms"), "604800000");
        let segment_ms = topic.get("segment.ms").unwrap();
        assert!(segment_ms.is_default && segment_ms.source == ConfigSource::Default);
        assert_eq!(
            topic.get("cleanup.policy").unwrap().source,
            ConfigSource::DynamicTopic
        );

        // In force: a compacted topic refuses a record without a key, and batches over the new limit.
        let keyless = produce_one(producer, "altered", None, "keyless");
        assert!(
            matches!(
                keyless,
                Some(KafkaError::MessageProduction(
                    RDKafkaErrorCode::InvalidRecord
                ))
            ),
            "{keyless:?}"
        );
        let large = produce_one(producer, "altered", Some("k"), &"x".repeat(2000));
        assert!(
            matches!(
                large,
                Some(KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageSizeTooLarge
                ))
            ),
            "{large:?}"
        );
        assert!(produce_one(producer, "altered", Some("k"), "small, keyed").is_none());
    };
    check(&admin, &producer);

    // A refused change (INVALID_CONFIG) changes nothing.
    let bad = AlterConfig::new(ResourceSpecifier::Topic("altered")).set("retention.ms", "soon");
    futures::executor::block_on(admin.alter_configs([&bad], &options()))
        .expect("alter configs answered");
    check(&admin, &producer);

    drop((admin, producer));
    nerve.stop();
    let nerve = Nerve::start(dir.path());
    check(&self::admin(&nerve), &plain_producer(&nerve));
}

#[test]
fn deleted_records_move_the_low_watermark_and_consumers_start_there() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    let admin = admin(&nerve);
    create_topic(&admin, "trimmed", &[]);
    let records: Vec<_> = (0..10).map(record).collect();
    // One record per batch, so that the new log start falls between batches.
    let producer = producer(&nerve, &[("linger.ms", "0"), ("batch.num.messages", "1")]);
    assert_eq!(
        produce(&producer, "trimmed", &records),
        (0..10).collect::<Vec<i64>>()
    );

    let mut targets = TopicPartitionList::new();
    targets
        .add_partition_offset("trimmed", 0, Offset::Offset(4))
        .unwrap();
    let result = futures::executor::block_on(admin.delete_records(&targets, &options()))
        .expect("delete records answered");
    let element = result
        .find_partition("trimmed", 0)
        .expect("partition answered");
    element.error().expect("records deleted");
    assert_eq!(element.offset(), Offset::Offset(4), "the new low watermark");

    let consumer = common::consumer(&nerve);
    let (low, high) = consumer
        .fetch_watermarks("trimmed", 0, PATIENCE)
        .expect("watermarks");
    assert_eq!((low, high), (4, 10));
    let received = consume(&nerve, "trimmed", Offset::Beginning, 6);
    assert_eq!(
        received.iter().map(|r| r.offset).collect::<Vec<_>>(),
        (4..10).collect::<Vec<i64>>()
    );

    // Offset::End: everything up to the high watermark.
    let mut everything = TopicPartitionList::new();
    everything
        .add_partition_offset("trimmed", 0, Offset::End)
        .unwrap();
    let result = futures::executor::block_on(admin.delete_records(&everything, &options()))
        .expect("delete records answered");
    assert_eq!(
        result.find_partition("trimmed", 0).unwrap().offset(),
        Offset::Offset(10)
    );
}

#[test]
fn deleted_topics_disappear_and_their_names_can_be_reused() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    let admin = admin(&nerve);
    create_topic(&admin, "doomed", &[("retention.ms", "1000")]);
    let producer = producer(&nerve, &[]);
    produce(&producer, "doomed", &[record(1)]);

    let results = futures::executor::block_on(admin.delete_topics(&["doomed"], &options()))
        .expect("delete topics answered");
    results[0].as_ref().expect("topic deleted");
    let absent = describe(&admin, ResourceSpecifier::Topic("doomed"));
    assert!(absent.entries.is_empty(), "a deleted topic has no configs");

    create_topic(&admin, "doomed", &[]);
    let topic = describe(&admin, ResourceSpecifier::Topic("doomed"));
    assert_eq!(
        value(&topic, "retention.ms"),
        "604800000",
        "the old overrides are gone"
    );
    let (low, high) = common::consumer(&nerve)
        .fetch_watermarks("doomed", 0, PATIENCE)
        .expect("watermarks");
    assert_eq!((low, high), (0, 0), "the old records are gone");
}
