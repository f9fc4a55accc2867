//! The broker's Kafka semantics, checked request by request over a real socket with kafka-protocol as the
//! client codec. Each test runs its own broker on a free port with its own data directory.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

mod common;
use common::*;

fn batch(records: &[(Option<&str>, &str)], timestamp: i64) -> Bytes {
    let timestamp = recent(timestamp);
    let mut builder = nerve_wire::BatchBuilder::new(timestamp);
    for (key, value) in records {
        builder.push(
            timestamp,
            key.map(str::as_bytes),
            Some(value.as_bytes()),
            Vec::new(),
        );
    }
    Bytes::from(builder.build().unwrap())
}

/// A test's small timestamps (1000, 5000, ...) moved to the last hour, keeping their order and gaps.
fn recent(timestamp: i64) -> i64 {
    static BASE: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| now_ms() - 3_600_000) + timestamp
}

#[tokio::test]
async fn api_versions_lists_exactly_the_implemented_ranges() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    for version in [0, 3, 4] {
        let response = client.call(version, &ApiVersionsRequest::default()).await;
        assert_eq!(response.error_code, 0);
        let advertised: Vec<(i16, i16, i16)> = response
            .api_keys
            .iter()
            .map(|k| (k.api_key, k.min_version, k.max_version))
            .collect();
        let implemented: Vec<(i16, i16, i16)> = nerve_broker::SUPPORTED_APIS
            .iter()
            .map(|&(key, min, max)| (key as i16, min, max))
            .collect();
        assert_eq!(advertised, implemented);
        for &(key, min, max) in nerve_broker::SUPPORTED_APIS {
            let codec = key.valid_versions();
            assert!(codec.min <= min && max <= codec.max, "{key:?}");
        }
    }
}

#[tokio::test]
async fn metadata_auto_creates_valid_topics_and_refuses_invalid_names() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("fresh"))),
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("bad name!"))),
        ]));
    let response = client.call(12, &request).await;
    assert_eq!(response.brokers.len(), 1);
    assert_eq!(response.brokers[0].host.as_str(), "nerve.test");
    assert_eq!(response.brokers[0].port, 19092);
    assert_eq!(response.controller_id, BrokerId(0));
    let fresh = &response.topics[0];
    assert_eq!(fresh.error_code, 0);
    assert_eq!(fresh.partitions.len(), 1);
    assert_eq!(fresh.partitions[0].leader_id, BrokerId(0));
    assert!(!fresh.topic_id.is_nil());
    assert_eq!(
        response.topics[1].error_code,
        ResponseError::InvalidTopicException.code()
    );

    // Not allowed to create: unknown, and nothing is created.
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(name("absent")))]));
    let response = client.call(12, &request).await;
    assert_eq!(
        response.topics[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );

    // All topics: only the one created, besides the internal `__consumer_offsets`.
    let all = client
        .call(1, &MetadataRequest::default().with_topics(None))
        .await;
    let names: Vec<_> = all
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().0.to_string())
        .collect();
    assert_eq!(
        names,
        vec!["__consumer_offsets".to_string(), "fresh".to_string()]
    );
}

#[tokio::test]
async fn create_topics_validates_and_validate_only_creates_nothing() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    let topic = |n: &str, partitions: i32| {
        create_topics_request::CreatableTopic::default()
            .with_name(name(n))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)
    };
    let dry_run = CreateTopicsRequest::default()
        .with_validate_only(true)
        .with_topics(vec![topic("dry", 3)]);
    let response = client.call(7, &dry_run).await;
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(response.topics[0].num_partitions, 3);

    let request = CreateTopicsRequest::default().with_topics(vec![
        topic("defaulted", -1),
        topic("bad/name", 1),
        topic("zero", 0),
        topic("badconfig", 1).with_configs(vec![
            create_topics_request::CreatableTopicConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_value(Some(StrBytes::from_static_str("soon"))),
        ]),
    ]);
    let response = client.call(7, &request).await;
    let codes: Vec<i16> = response.topics.iter().map(|t| t.error_code).collect();
    assert_eq!(
        codes,
        vec![
            0,
            ResponseError::InvalidTopicException.code(),
            ResponseError::InvalidPartitions.code(),
            ResponseError::InvalidConfig.code()
        ]
    );
    assert_eq!(response.topics[0].num_partitions, 1);
    let configs = response.topics[0].configs.as_ref().unwrap();
    assert!(configs.iter().any(|c| c.name.as_str() == "retention.ms"));

    let again = client
        .call(
            7,
            &CreateTopicsRequest::default().with_topics(vec![topic("defaulted", 1)]),
        )
        .await;
    assert_eq!(
        again.topics[0].error_code,
        ResponseError::TopicAlreadyExists.code()
    );

    let all = client
        .call(12, &MetadataRequest::default().with_topics(None))
        .await;
    let names: Vec<_> = all
        .topics
        .iter()
        .map(|t| t.name.as_ref().unwrap().0.to_string())
        .collect();
    // Besides the internal topic the broker creates for committed offsets.
    assert_eq!(
        names,
        vec!["__consumer_offsets".to_string(), "defaulted".to_string()]
    );
}

fn topic_id_of(metadata: &MetadataResponse, topic: &str) -> uuid::Uuid {
    metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
        .unwrap_or_else(|| panic!("{topic} is not in {metadata:?}"))
        .topic_id
}

#[tokio::test]
async fn a_deleted_and_recreated_topic_is_a_new_empty_topic_with_a_new_id() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "phoenix", 1, &[]).await;
    let produced = client
        .call(
            9,
            &produce_request("phoenix", -1, batch(&[(None, "old")], 1000)),
        )
        .await;
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    // Every topic: the internal `__consumer_offsets` is listed too, as Kafka lists it.
    let first_id = topic_id_of(
        &client
            .call(12, &MetadataRequest::default().with_topics(None))
            .await,
        "phoenix",
    );

    let deleted = client
        .call(
            6,
            &DeleteTopicsRequest::default()
                .with_topics(vec![delete_topics_request::DeleteTopicState::default()
                    .with_name(Some(name("phoenix")))]),
        )
        .await;
    assert_eq!(deleted.responses[0].error_code, 0);
    assert_eq!(deleted.responses[0].topic_id, first_id);
    let missing = client
        .call(
            4,
            &DeleteTopicsRequest::default().with_topic_names(vec![name("phoenix")]),
        )
        .await;
    assert_eq!(
        missing.responses[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );

    create_topic(&mut client, "phoenix", 1, &[]).await;
    let metadata = client
        .call(12, &MetadataRequest::default().with_topics(None))
        .await;
    assert_ne!(topic_id_of(&metadata, "phoenix"), first_id);
    let fetched = client.call(12, &fetch_request("phoenix", 0, 0)).await;
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!(partition.high_watermark, 0);
    assert!(partition.records.as_ref().is_none_or(|r| r.is_empty()));
}

#[tokio::test]
async fn compacted_topic_rejects_a_null_key_naming_the_record() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(
        &mut client,
        "compacted",
        1,
        &[("cleanup.policy", "compact")],
    )
    .await;
    let records = batch(&[(Some("a"), "1"), (None, "2")], 1000);
    let response = client
        .call(9, &produce_request("compacted", 1, records))
        .await;
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, ResponseError::InvalidRecord.code());
    assert_eq!(partition.base_offset, -1);
    assert_eq!(partition.record_errors.len(), 1);
    assert_eq!(partition.record_errors[0].batch_index, 1);

    let ok = client
        .call(
            9,
            &produce_request("compacted", 1, batch(&[(Some("a"), "1")], 1000)),
        )
        .await;
    assert_eq!(ok.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(ok.responses[0].partition_responses[0].base_offset, 0);
}

#[tokio::test]
async fn produce_carries_one_batch_per_partition_and_unknown_topics_are_refused() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "single", 1, &[]).await;
    let mut two = BytesMut::new();
    two.put_slice(&batch(&[(None, "a")], 1000));
    two.put_slice(&batch(&[(None, "b")], 1000));
    let response = client
        .call(9, &produce_request("single", 1, two.freeze()))
        .await;
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidRecord.code()
    );
    let response = client
        .call(
            3,
            &produce_request("nowhere", 1, batch(&[(None, "a")], 1000)),
        )
        .await;
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[tokio::test]
async fn an_idempotent_retry_is_acknowledged_with_the_original_offset() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "idem", 1, &[]).await;
    let init = client
        .call(
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(-1),
        )
        .await;
    assert_eq!(init.error_code, 0);
    assert_eq!(init.producer_epoch, 0);
    let mut builder = nerve_wire::BatchBuilder::new(recent(1000));
    builder.producer_id = *init.producer_id;
    builder.producer_epoch = 0;
    builder.base_sequence = 0;
    builder.push(recent(1000), Some(b"k"), Some(b"v"), Vec::new());
    let records = Bytes::from(builder.build().unwrap());
    // Something else first, so the original offset is not 0.
    client
        .call(9, &produce_request("idem", -1, batch(&[(None, "x")], 1000)))
        .await;
    let first = client
        .call(9, &produce_request("idem", -1, records.clone()))
        .await;
    let retry = client.call(9, &produce_request("idem", -1, records)).await;
    let (first, retry) = (
        &first.responses[0].partition_responses[0],
        &retry.responses[0].partition_responses[0],
    );
    assert_eq!((first.error_code, first.base_offset), (0, 1));
    assert_eq!((retry.error_code, retry.base_offset), (0, 1));
    let watermark = client.call(12, &fetch_request("idem", 0, 0)).await;
    assert_eq!(watermark.responses[0].partitions[0].high_watermark, 2);
}

#[tokio::test]
async fn init_producer_id_hands_out_fresh_ids_and_checks_transaction_timeouts() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    let idempotent = InitProducerIdRequest::default().with_transactional_id(None);
    let a = client.call(0, &idempotent).await;
    let b = client.call(5, &idempotent).await;
    assert_eq!((a.error_code, b.error_code), (0, 0));
    assert_ne!(a.producer_id, b.producer_id);
    let too_long = client
        .call(
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_static_str("tx"))))
                .with_transaction_timeout_ms(3_600_000),
        )
        .await;
    assert_eq!(
        too_long.error_code,
        ResponseError::InvalidTransactionTimeout.code()
    );
}

#[tokio::test]
async fn fetch_outside_the_log_is_offset_out_of_range_and_by_id_works_from_v13() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "ranged", 1, &[]).await;
    client
        .call(
            9,
            &produce_request("ranged", -1, batch(&[(None, "a"), (None, "b")], 1000)),
        )
        .await;
    let past_end = client.call(11, &fetch_request("ranged", 3, 0)).await;
    assert_eq!(
        past_end.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code()
    );
    let at_end = client.call(11, &fetch_request("ranged", 2, 0)).await;
    assert_eq!(at_end.responses[0].partitions[0].error_code, 0);
    assert_eq!(at_end.responses[0].partitions[0].high_watermark, 2);

    let id = topic_id_of(
        &client
            .call(12, &MetadataRequest::default().with_topics(None))
            .await,
        "ranged",
    );
    let mut by_id = fetch_request("", 0, 0);
    by_id.topics[0].topic_id = id;
    let response = client.call(16, &by_id).await;
    let partition = &response.responses[0].partitions[0];
    assert_eq!(response.responses[0].topic_id, id);
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.last_stable_offset, 2);
    assert_eq!(partition.log_start_offset, 0);
    assert!(partition.records.as_ref().is_some_and(|r| !r.is_empty()));

    let mut unknown = fetch_request("", 0, 0);
    unknown.topics[0].topic_id = uuid::Uuid::new_v4();
    let response = client.call(13, &unknown).await;
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        ResponseError::UnknownTopicId.code()
    );
}

#[tokio::test]
async fn a_waiting_fetch_is_woken_by_an_append() {
    let broker = start().await;
    let mut consumer = Client::connect(&broker).await;
    create_topic(&mut consumer, "wake", 1, &[]).await;
    // Waits for up to ten minutes: only the append can end it in a passing test.
    let fetch_id = consumer.send(12, &fetch_request("wake", 0, 600_000)).await;
    let mut producer = Client::connect(&broker).await;
    producer
        .call(
            9,
            &produce_request("wake", -1, batch(&[(None, "hello")], 1000)),
        )
        .await;
    let response = consumer.recv::<FetchRequest>(12, fetch_id).await;
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0, "{partition:?}");
    assert_eq!(partition.high_watermark, 1);
    assert!(partition.records.as_ref().is_some_and(|r| !r.is_empty()));
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_and_acks_zero_gets_no_answer() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "order", 1, &[]).await;
    // A fetch that waits, then requests that finish at once: answers still come in request order.
    let fetch = client.send(12, &fetch_request("order", 0, 200)).await;
    let silent = client
        .send(
            9,
            &produce_request("order", 0, batch(&[(None, "quiet")], 1000)),
        )
        .await;
    let versions = client.send(3, &ApiVersionsRequest::default()).await;
    let metadata = client
        .send(12, &MetadataRequest::default().with_topics(None))
        .await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(client.recv_raw().await.0);
    }
    assert_eq!(seen, vec![fetch, versions, metadata]);
    assert!(!seen.contains(&silent));
    // The acks=0 record was stored all the same.
    let response = client.call(12, &fetch_request("order", 0, 0)).await;
    assert_eq!(response.responses[0].partitions[0].high_watermark, 1);
}

#[tokio::test]
async fn list_offsets_answers_earliest_latest_max_timestamp_and_by_time() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "times", 1, &[]).await;
    for (i, ts) in [1000i64, 5000, 3000].iter().enumerate() {
        let value = format!("v{i}");
        client
            .call(
                9,
                &produce_request("times", -1, batch(&[(None, &value)], *ts)),
            )
            .await;
    }
    let query = |timestamps: &[i64]| {
        ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                .with_name(name("times"))
                .with_partitions(
                    timestamps
                        .iter()
                        .map(|&t| {
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(t)
                        })
                        .collect(),
                )])
    };
    for version in [1, 7, 10] {
        let response = client
            .call(
                version,
                &query(&[-1, -2, -3, recent(2000), recent(5000), recent(9000)]),
            )
            .await;
        let answers: Vec<(i16, i64)> = response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.offset))
            .collect();
        let expected_max_ts = if version >= 7 { 1 } else { answers[2].1 };
        assert_eq!(
            answers,
            vec![
                (0, 3),
                (0, 0),
                (0, expected_max_ts),
                (0, 1),
                (0, 1),
                (0, -1)
            ],
            "v{version}"
        );
        if version >= 7 {
            assert_eq!(response.topics[0].partitions[2].timestamp, recent(5000));
        }
    }
}

#[tokio::test]
async fn shutdown_lets_in_flight_requests_finish() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "closing", 1, &[]).await;
    let fetch = client.send(12, &fetch_request("closing", 0, 600_000)).await;
    let versions = client.send(3, &ApiVersionsRequest::default()).await;
    // Requests the broker has not read yet are not in flight; give it a moment to read these two. (If it
    // has not, the test fails on a closed connection rather than passing wrongly.)
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    broker.stop.send(true).unwrap();
    assert_eq!(client.recv_raw().await.0, fetch);
    assert_eq!(client.recv_raw().await.0, versions);
    broker.server.await.unwrap().unwrap();
}

// Several worker threads, so that concurrently running handlers could really overtake each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_produce_requests_are_appended_in_request_order() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "sequence", 1, &[]).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        let value = format!("{i}");
        let id = client
            .send(
                9,
                &produce_request("sequence", -1, batch(&[(None, &value)], 1000)),
            )
            .await;
        ids.push(id);
    }
    for (i, id) in ids.into_iter().enumerate() {
        let response = client.recv::<ProduceRequest>(9, id).await;
        let partition = &response.responses[0].partition_responses[0];
        assert_eq!((partition.error_code, partition.base_offset), (0, i as i64));
    }
}

#[tokio::test]
async fn fetch_returns_a_batch_larger_than_the_limits_but_then_stops() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "big", 2, &[]).await;
    let large = "x".repeat(10_000);
    for partition in 0..2 {
        let mut request = produce_request("big", -1, batch(&[(None, &large)], 1000));
        request.topic_data[0].partition_data[0].index = partition;
        let response = client.call(9, &request).await;
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    let mut request = fetch_request("big", 0, 0).with_max_bytes(100);
    let mut second = request.topics[0].partitions[0].clone().with_partition(1);
    second.partition_max_bytes = 100;
    request.topics[0].partitions[0].partition_max_bytes = 100;
    request.topics[0].partitions.push(second);
    let response = client.call(12, &request).await;
    let partitions = &response.responses[0].partitions;
    let sizes: Vec<usize> = partitions
        .iter()
        .map(|p| p.records.as_ref().map_or(0, Bytes::len))
        .collect();
    assert!(sizes[0] > 10_000, "the first batch comes whole: {sizes:?}");
    assert_eq!(sizes[1], 0, "the budget is spent: {sizes:?}");
    assert_eq!(partitions[1].high_watermark, 1);
}

#[tokio::test]
async fn topics_can_be_named_by_id_in_metadata_and_produce() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "by-id", 1, &[]).await;
    let id = topic_id_of(
        &client
            .call(12, &MetadataRequest::default().with_topics(None))
            .await,
        "by-id",
    );
    let by_id = MetadataRequest::default().with_topics(Some(vec![
        metadata_request::MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(id),
        metadata_request::MetadataRequestTopic::default()
            .with_name(None)
            .with_topic_id(uuid::Uuid::new_v4()),
    ]));
    let response = client.call(12, &by_id).await;
    assert_eq!(response.topics[0].error_code, 0);
    assert_eq!(
        response.topics[0].name.as_ref().map(|n| n.0.as_str()),
        Some("by-id")
    );
    assert_eq!(
        response.topics[1].error_code,
        ResponseError::UnknownTopicId.code()
    );

    let mut produce = produce_request("", -1, batch(&[(None, "v")], 1000));
    produce.topic_data[0].topic_id = id;
    let response = client.call(13, &produce).await;
    assert_eq!(response.responses[0].topic_id, id);
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    let mut unknown = produce_request("", -1, batch(&[(None, "v")], 1000));
    unknown.topic_data[0].topic_id = uuid::Uuid::new_v4();
    let response = client.call(13, &unknown).await;
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        ResponseError::UnknownTopicId.code()
    );
    let deleted = client
        .call(
            6,
            &DeleteTopicsRequest::default().with_topics(vec![
                delete_topics_request::DeleteTopicState::default()
                    .with_name(None)
                    .with_topic_id(id),
            ]),
        )
        .await;
    assert_eq!(deleted.responses[0].error_code, 0);
    assert_eq!(
        deleted.responses[0].name.as_ref().map(|n| n.0.as_str()),
        Some("by-id")
    );
    assert!(client
        .call(12, &MetadataRequest::default().with_topics(None))
        .await
        .topics
        .iter()
        .all(|t| t.is_internal));
}

// ------------------------------------------------------------------------------------------------------------
// Admin APIs: CreatePartitions, DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DeleteRecords,
// DescribeCluster, OffsetForLeaderEpoch.

const TOPIC: i8 = 2;
const BROKER: i8 = 4;

fn partitions_of(metadata: &MetadataResponse, topic: &str) -> Vec<(i32, i32)> {
    metadata
        .topics
        .iter()
        .find(|t| t.name.as_ref().map(|n| n.0.as_str()) == Some(topic))
        .map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.leader_epoch))
                .collect()
        })
        .unwrap_or_default()
}

async fn metadata(client: &mut Client) -> MetadataResponse {
    client
        .call(12, &MetadataRequest::default().with_topics(None))
        .await
}

fn grow_to(topic: &str, count: i32) -> create_partitions_request::CreatePartitionsTopic {
    create_partitions_request::CreatePartitionsTopic::default()
        .with_name(name(topic))
        .with_count(count)
}

#[tokio::test]
async fn create_partitions_only_grows_and_new_partitions_take_records() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "growing", 1, &[("retention.ms", "123456")]).await;

    let dry_run = CreatePartitionsRequest::default()
        .with_validate_only(true)
        .with_topics(vec![grow_to("growing", 3)]);
    let response = client.call(3, &dry_run).await;
    assert_eq!(
        response.results.len(),
        1,
        "a result per topic, validate_only too"
    );
    assert_eq!(response.results[0].error_code, 0);
    assert_eq!(
        partitions_of(&metadata(&mut client).await, "growing").len(),
        1
    );

    for version in [0, 3] {
        let target = if version == 0 { 2 } else { 3 };
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![grow_to("growing", target)]);
        let response = client.call(version, &request).await;
        assert_eq!(response.results[0].error_code, 0, "v{version}");
        assert_eq!(response.results[0].name, name("growing"));
    }
    assert_eq!(
        partitions_of(&metadata(&mut client).await, "growing"),
        vec![(0, 0), (1, 0), (2, 0)],
        "three partitions, each at leader epoch 0"
    );

    let mut produce = produce_request("growing", -1, batch(&[(None, "new")], 1000));
    produce.topic_data[0].partition_data[0].index = 2;
    let response = client.call(9, &produce).await;
    assert_eq!(response.responses[0].partition_responses[0].error_code, 0);

    // The new partition runs with the topic's config: the override is still in force.
    let configs = describe_topic(&mut client, 4, "growing").await;
    assert_eq!(value_of(&configs, "retention.ms"), "123456");

    let request = CreatePartitionsRequest::default().with_topics(vec![
        grow_to("growing", 3),
        grow_to("growing-not", 5),
        grow_to("twice", 2),
        grow_to("twice", 3),
    ]);
    let response = client.call(3, &request).await;
    let codes: Vec<i16> = response.results.iter().map(|r| r.error_code).collect();
    assert_eq!(
        codes,
        vec![
            ResponseError::InvalidPartitions.code(),
            ResponseError::UnknownTopicOrPartition.code(),
            ResponseError::InvalidRequest.code(),
            ResponseError::InvalidRequest.code(),
        ]
    );
    assert!(response.results[0]
        .error_message
        .as_ref()
        .is_some_and(|m| m.contains('3')));

    // Assignments: one per new partition, to node 0 alone.
    let assigned = |brokers: Vec<i32>| {
        create_partitions_request::CreatePartitionsAssignment::default()
            .with_broker_ids(brokers.into_iter().map(BrokerId).collect())
    };
    let request = CreatePartitionsRequest::default().with_topics(vec![
        grow_to("growing", 4).with_assignments(Some(vec![assigned(vec![1])]))
    ]);
    let response = client.call(3, &request).await;
    assert_eq!(
        response.results[0].error_code,
        ResponseError::InvalidReplicaAssignment.code()
    );
    let request = CreatePartitionsRequest::default().with_topics(vec![
        grow_to("growing", 4).with_assignments(Some(vec![assigned(vec![0])]))
    ]);
    let response = client.call(3, &request).await;
    assert_eq!(response.results[0].error_code, 0);
    assert_eq!(
        partitions_of(&metadata(&mut client).await, "growing").len(),
        4
    );
}

fn describe_request(
    resources: Vec<(i8, &str)>,
    synonyms: bool,
    documentation: bool,
) -> DescribeConfigsRequest {
    DescribeConfigsRequest::default()
        .with_include_synonyms(synonyms)
        .with_include_documentation(documentation)
        .with_resources(
            resources
                .into_iter()
                .map(|(kind, n)| {
                    describe_configs_request::DescribeConfigsResource::default()
                        .with_resource_type(kind)
                        .with_resource_name(StrBytes::from_string(n.to_string()))
                        .with_configuration_keys(None)
                })
                .collect(),
        )
}

async fn describe_topic(
    client: &mut Client,
    version: i16,
    topic: &str,
) -> Vec<describe_configs_response::DescribeConfigsResourceResult> {
    let response = client
        .call(
            version,
            &describe_request(vec![(TOPIC, topic)], false, false),
        )
        .await;
    assert_eq!(
        response.results[0].error_code, 0,
        "{:?}",
        response.results[0]
    );
    response.results[0].configs.clone()
}

fn entry<'a>(
    configs: &'a [describe_configs_response::DescribeConfigsResourceResult],
    config: &str,
) -> &'a describe_configs_response::DescribeConfigsResourceResult {
    configs
        .iter()
        .find(|c| c.name.as_str() == config)
        .unwrap_or_else(|| panic!("{config} is not described"))
}

fn value_of(
    configs: &[describe_configs_response::DescribeConfigsResourceResult],
    config: &str,
) -> String {
    entry(configs, config)
        .value
        .as_ref()
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// Kafka's ConfigSource codes.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
const STATIC_BROKER_CONFIG: i8 = 4;
const DEFAULT_CONFIG: i8 = 5;

#[tokio::test]
async fn describe_configs_lists_every_topic_config_with_its_source() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "described", 1, &[("retention.ms", "1000")]).await;

    for version in [1, 2, 3, 4] {
        // include_documentation exists from v3.
        let request = describe_request(
            vec![(TOPIC, "described"), (TOPIC, "absent")],
            true,
            version >= 3,
        );
        let response = client.call(version, &request).await;
        assert_eq!(response.results.len(), 2);
        let described = &response.results[0];
        assert_eq!(described.error_code, 0, "v{version}");
        assert_eq!(described.resource_name.as_str(), "described");
        let names: Vec<&str> = described.configs.iter().map(|c| c.name.as_str()).collect();
        let every: Vec<&str> = nerve_storage::TOPIC_CONFIGS
            .iter()
            .map(|d| d.name)
            .collect();
        assert_eq!(names, every, "v{version}: every config, not only those set");
        for config in &described.configs {
            assert!(!config.read_only && !config.is_sensitive, "{config:?}");
            assert!(config.value.is_some(), "{config:?}");
            let expected_source = match config.name.as_str() {
                "retention.ms" => DYNAMIC_TOPIC_CONFIG,
                // The test broker sets `fsync` in its topic defaults.
                "fsync" => STATIC_BROKER_CONFIG,
                _ => DEFAULT_CONFIG,
            };
            assert_eq!(config.config_source, expected_source, "{config:?}");
            assert_eq!(
                config.synonyms.first().map(|s| s.source),
                Some(expected_source),
                "the synonym in force comes first: {config:?}"
            );
            if version >= 3 {
                assert!(config.documentation.is_some(), "{config:?}");
                assert_ne!(config.config_type, 0, "{config:?}");
            }
        }
        let retention = entry(&described.configs, "retention.ms");
        assert_eq!(retention.value.as_deref(), Some("1000"));
        let synonyms: Vec<(&str, i8)> = retention
            .synonyms
            .iter()
            .map(|s| (s.name.as_str(), s.source))
            .collect();
        assert_eq!(
            synonyms,
            vec![
                ("retention.ms", DYNAMIC_TOPIC_CONFIG),
                ("log.retention.ms", DEFAULT_CONFIG)
            ]
        );
        assert_eq!(
            entry(&described.configs, "cleanup.policy").value.as_deref(),
            Some("delete")
        );
        assert_eq!(
            response.results[1].error_code,
            ResponseError::UnknownTopicOrPartition.code()
        );
        assert!(response.results[1].configs.is_empty());
    }

    // Without synonyms and documentation asked, none come; named keys narrow the answer.
    let mut request = describe_request(vec![(TOPIC, "described")], false, false);
    request.resources[0].configuration_keys = Some(vec![
        StrBytes::from_static_str("cleanup.policy"),
        StrBytes::from_static_str("no.such.config"),
    ]);
    let response = client.call(4, &request).await;
    let configs = &response.results[0].configs;
    assert_eq!(configs.len(), 1);
    assert!(configs[0].synonyms.is_empty() && configs[0].documentation.is_none());
    // An empty list of keys asks for all of them, as null does.
    request.resources[0].configuration_keys = Some(Vec::new());
    let response = client.call(4, &request).await;
    assert_eq!(
        response.results[0].configs.len(),
        nerve_storage::TOPIC_CONFIGS.len()
    );
}

#[tokio::test]
async fn describe_configs_shows_the_broker_settings_read_only() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    let request = describe_request(
        vec![(BROKER, "0"), (BROKER, "7"), (BROKER, "")],
        true,
        false,
    );
    let response = client.call(4, &request).await;
    let node = &response.results[0];
    assert_eq!(node.error_code, 0);
    for (config, value) in [
        ("auto.create.topics.enable", "true"),
        ("num.partitions", "1"),
        ("socket.request.max.bytes", "104857600"),
        ("advertised.listeners", "PLAINTEXT://nerve.test:19092"),
        ("log.retention.ms", "604800000"),
        ("log.fsync", "never"),
    ] {
        let found = entry(&node.configs, config);
        assert_eq!(found.value.as_deref(), Some(value), "{config}");
    }
    assert!(node.configs.iter().all(|c| c.read_only));
    assert_eq!(
        entry(&node.configs, "num.partitions").config_source,
        DEFAULT_CONFIG
    );
    assert_eq!(
        entry(&node.configs, "advertised.listeners").config_source,
        STATIC_BROKER_CONFIG
    );
    assert_eq!(
        response.results[1].error_code,
        ResponseError::InvalidRequest.code(),
        "another node's id"
    );
    assert_eq!(response.results[2].error_code, 0, "cluster defaults: none");
    assert!(response.results[2].configs.is_empty());
}

fn alter_request(topic: &str, configs: &[(&str, Option<&str>)]) -> AlterConfigsRequest {
    AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ])
}

#[tokio::test]
async fn alter_configs_replaces_the_whole_set_of_overrides() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(
        &mut client,
        "altered",
        1,
        &[("retention.ms", "1000"), ("segment.ms", "5000")],
    )
    .await;

    let dry_run =
        alter_request("altered", &[("retention.bytes", Some("4096"))]).with_validate_only(true);
    let response = client.call(2, &dry_run).await;
    assert_eq!(response.responses[0].error_code, 0);
    let configs = describe_topic(&mut client, 4, "altered").await;
    assert_eq!(
        value_of(&configs, "retention.ms"),
        "1000",
        "validate_only changes nothing"
    );

    for version in [0, 1, 2] {
        let request = alter_request(
            "altered",
            &[("cleanup.policy", Some("compact")), ("segment.ms", None)],
        );
        let response = client.call(version, &request).await;
        assert_eq!(response.responses[0].error_code, 0, "v{version}");
        assert_eq!(response.responses[0].resource_type, TOPIC);
        assert_eq!(response.responses[0].resource_name.as_str(), "altered");
    }
    let configs = describe_topic(&mut client, 4, "altered").await;
    assert_eq!(value_of(&configs, "cleanup.policy"), "compact");
    assert_eq!(
        entry(&configs, "cleanup.policy").config_source,
        DYNAMIC_TOPIC_CONFIG
    );
    // Not named: back to the default, as with Kafka's AlterConfigs.
    assert_eq!(value_of(&configs, "retention.ms"), "604800000");
    assert_eq!(
        entry(&configs, "retention.ms").config_source,
        DEFAULT_CONFIG
    );
    assert_eq!(entry(&configs, "segment.ms").config_source, DEFAULT_CONFIG);

    // In force at once: a compacted topic refuses a record without a key.
    let response = client
        .call(
            9,
            &produce_request("altered", -1, batch(&[(None, "keyless")], 1000)),
        )
        .await;
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        ResponseError::InvalidRecord.code()
    );

    let bad = client
        .call(
            2,
            &alter_request("altered", &[("retention.ms", Some("soon"))]),
        )
        .await;
    assert_eq!(
        bad.responses[0].error_code,
        ResponseError::InvalidConfig.code()
    );
    assert!(bad.responses[0]
        .error_message
        .as_ref()
        .is_some_and(|m| m.contains("retention.ms")));
    let unknown = client
        .call(
            2,
            &alter_request("altered", &[("no.such.config", Some("1"))]),
        )
        .await;
    assert_eq!(
        unknown.responses[0].error_code,
        ResponseError::InvalidConfig.code()
    );
    let absent = client
        .call(2, &alter_request("absent", &[("retention.ms", Some("1"))]))
        .await;
    assert_eq!(
        absent.responses[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let configs = describe_topic(&mut client, 4, "altered").await;
    assert_eq!(
        value_of(&configs, "cleanup.policy"),
        "compact",
        "refusals change nothing"
    );

    let mut to_broker = alter_request("0", &[("num.partitions", Some("3"))]);
    to_broker.resources[0].resource_type = BROKER;
    let response = client.call(2, &to_broker).await;
    assert_eq!(
        response.responses[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    assert!(response.responses[0].error_message.is_some());
}

/// One IncrementalAlterConfigs change: config name, operation, value.
type Change<'a> = (&'a str, i8, Option<&'a str>);

/// IncrementalAlterConfigs operations.
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn incremental_request(
    kind: i8,
    resource: &str,
    ops: &[Change<'_>],
) -> IncrementalAlterConfigsRequest {
    IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(kind)
            .with_resource_name(StrBytes::from_string(resource.to_string()))
            .with_configs(
                ops.iter()
                    .map(|(k, op, v)| {
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_config_operation(*op)
                            .with_value(v.map(|v| StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            ),
    ])
}

#[tokio::test]
async fn incremental_alter_configs_sets_deletes_appends_and_subtracts() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "stepwise", 1, &[("segment.ms", "5000")]).await;

    let steps: &[(&[Change<'_>], &str, &str)] = &[
        (
            &[("retention.ms", SET, Some("2000"))],
            "retention.ms",
            "2000",
        ),
        (
            &[("cleanup.policy", APPEND, Some("compact"))],
            "cleanup.policy",
            "delete,compact",
        ),
        (
            &[("cleanup.policy", APPEND, Some("compact"))],
            "cleanup.policy",
            "delete,compact",
        ),
        (
            &[("cleanup.policy", SUBTRACT, Some("delete"))],
            "cleanup.policy",
            "compact",
        ),
        (
            &[("retention.ms", DELETE, None)],
            "retention.ms",
            "604800000",
        ),
    ];
    for (i, (ops, config, expected)) in steps.iter().enumerate() {
        let version = (i % 2) as i16;
        let response = client
            .call(version, &incremental_request(TOPIC, "stepwise", ops))
            .await;
        assert_eq!(
            response.responses[0].error_code, 0,
            "step {i}: {:?}",
            response.responses[0]
        );
        let configs = describe_topic(&mut client, 4, "stepwise").await;
        assert_eq!(value_of(&configs, config), *expected, "step {i}");
    }
    let configs = describe_topic(&mut client, 4, "stepwise").await;
    assert_eq!(
        value_of(&configs, "segment.ms"),
        "5000",
        "untouched overrides stay"
    );
    assert_eq!(
        entry(&configs, "retention.ms").config_source,
        DEFAULT_CONFIG
    );

    let dry_run = incremental_request(TOPIC, "stepwise", &[("segment.ms", SET, Some("9000"))])
        .with_validate_only(true);
    assert_eq!(client.call(1, &dry_run).await.responses[0].error_code, 0);
    let configs = describe_topic(&mut client, 4, "stepwise").await;
    assert_eq!(
        value_of(&configs, "segment.ms"),
        "5000",
        "validate_only changes nothing"
    );

    let refused: &[(&[Change<'_>], ResponseError)] = &[
        (
            &[("retention.ms", APPEND, Some("1"))],
            ResponseError::InvalidConfig,
        ),
        (
            &[("retention.ms", SET, Some("-7"))],
            ResponseError::InvalidConfig,
        ),
        (
            &[("no.such.config", SET, Some("1"))],
            ResponseError::InvalidConfig,
        ),
        (
            &[("cleanup.policy", SUBTRACT, Some("compact"))],
            ResponseError::InvalidConfig,
        ),
        (
            &[("retention.ms", SET, None)],
            ResponseError::InvalidRequest,
        ),
        (
            &[("retention.ms", 9, Some("1"))],
            ResponseError::InvalidRequest,
        ),
        (
            &[
                ("retention.ms", SET, Some("1")),
                ("retention.ms", SET, Some("2")),
            ],
            ResponseError::InvalidRequest,
        ),
    ];
    for (ops, error) in refused {
        let response = client
            .call(1, &incremental_request(TOPIC, "stepwise", ops))
            .await;
        assert_eq!(response.responses[0].error_code, error.code(), "{ops:?}");
        assert!(response.responses[0].error_message.is_some(), "{ops:?}");
    }
    let response = client
        .call(
            1,
            &incremental_request(TOPIC, "absent", &[("retention.ms", SET, Some("1"))]),
        )
        .await;
    assert_eq!(
        response.responses[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let response = client
        .call(
            1,
            &incremental_request(BROKER, "0", &[("num.partitions", SET, Some("3"))]),
        )
        .await;
    assert_eq!(
        response.responses[0].error_code,
        ResponseError::InvalidRequest.code()
    );
    let configs = describe_topic(&mut client, 4, "stepwise").await;
    assert_eq!(
        value_of(&configs, "cleanup.policy"),
        "compact",
        "refusals change nothing"
    );
}

async fn earliest_offset(client: &mut Client, topic: &str) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-2),
            ])]);
    let response = client.call(7, &request).await;
    assert_eq!(response.topics[0].partitions[0].error_code, 0);
    response.topics[0].partitions[0].offset
}

#[tokio::test]
async fn a_lowered_retention_ms_removes_old_segments_at_the_next_check() {
    let dir = tempfile::tempdir().unwrap();
    let broker = start_in(dir, |_, local| {
        local.retention_check_interval = std::time::Duration::from_millis(100);
    })
    .await;
    let mut client = Client::connect(&broker).await;
    // Small segments, so that each batch closes one and retention has whole segments to remove.
    create_topic(&mut client, "expiring", 1, &[("segment.bytes", "100")]).await;
    let payload = "x".repeat(200);
    for _ in 0..4 {
        let response = client
            .call(
                9,
                &produce_request("expiring", -1, batch(&[(None, &payload)], 1000)),
            )
            .await;
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    assert_eq!(earliest_offset(&mut client, "expiring").await, 0);

    // The records are an hour old; a minute of retention makes every closed segment expired.
    let response = client
        .call(
            1,
            &incremental_request(TOPIC, "expiring", &[("retention.ms", SET, Some("60000"))]),
        )
        .await;
    assert_eq!(response.responses[0].error_code, 0);
    let started = std::time::Instant::now();
    while earliest_offset(&mut client, "expiring").await == 0 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(30),
            "retention never removed a segment"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

fn delete_records_request(topic: &str, targets: &[(i32, i64)]) -> DeleteRecordsRequest {
    DeleteRecordsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
            .with_name(name(topic))
            .with_partitions(
                targets
                    .iter()
                    .map(|&(partition, offset)| {
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(partition)
                            .with_offset(offset)
                    })
                    .collect(),
            )])
}

#[tokio::test]
async fn delete_records_moves_the_low_watermark() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "trimmed", 2, &[]).await;
    for i in 0..5 {
        let value = format!("v{i}");
        client
            .call(
                9,
                &produce_request("trimmed", -1, batch(&[(None, &value)], 1000)),
            )
            .await;
    }

    let response = client
        .call(
            0,
            &delete_records_request("trimmed", &[(0, 3), (1, 0), (7, 0)]),
        )
        .await;
    let answers: Vec<(i32, i16, i64)> = response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.partition_index, p.error_code, p.low_watermark))
        .collect();
    assert_eq!(
        answers,
        vec![
            (0, 0, 3),
            (1, 0, 0),
            (7, ResponseError::UnknownTopicOrPartition.code(), -1)
        ]
    );
    assert_eq!(earliest_offset(&mut client, "trimmed").await, 3);
    let fetched = client.call(12, &fetch_request("trimmed", 0, 0)).await;
    assert_eq!(
        fetched.responses[0].partitions[0].error_code,
        ResponseError::OffsetOutOfRange.code(),
        "deleted records cannot be read"
    );
    let fetched = client.call(12, &fetch_request("trimmed", 3, 0)).await;
    assert_eq!(fetched.responses[0].partitions[0].log_start_offset, 3);

    for (version, offset, expected) in [
        (1, 2, (0, 3)), // below the log start: nothing changes
        (2, 99, (ResponseError::OffsetOutOfRange.code(), -1)),
        (2, -7, (ResponseError::OffsetOutOfRange.code(), -1)),
        (2, -1, (0, 5)), // -1: up to the high watermark
    ] {
        let response = client
            .call(version, &delete_records_request("trimmed", &[(0, offset)]))
            .await;
        let p = &response.topics[0].partitions[0];
        assert_eq!((p.error_code, p.low_watermark), expected, "offset {offset}");
    }

    create_topic(
        &mut client,
        "compacted",
        1,
        &[("cleanup.policy", "compact")],
    )
    .await;
    let response = client
        .call(2, &delete_records_request("compacted", &[(0, 0)]))
        .await;
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ResponseError::PolicyViolation.code()
    );
    let response = client
        .call(2, &delete_records_request("absent", &[(0, 0)]))
        .await;
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

#[tokio::test]
async fn describe_cluster_names_this_node_as_broker_and_controller_with_a_stable_id() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    let metadata_id = metadata(&mut client).await.cluster_id.unwrap().to_string();
    assert_eq!(
        metadata_id.len(),
        22,
        "a generated Kafka-style id: {metadata_id}"
    );
    for version in [0, 1, 2] {
        let response = client
            .call(
                version,
                &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
            )
            .await;
        assert_eq!(response.error_code, 0);
        assert_eq!(response.cluster_id.as_str(), metadata_id);
        assert_eq!(response.controller_id, BrokerId(0));
        assert_eq!(response.brokers.len(), 1);
        assert_eq!(response.brokers[0].broker_id, BrokerId(0));
        assert_eq!(response.brokers[0].host.as_str(), "nerve.test");
        assert_eq!(response.brokers[0].port, 19092);
        assert!(response.cluster_authorized_operations > 0);
    }
    let controllers = client
        .call(1, &DescribeClusterRequest::default().with_endpoint_type(2))
        .await;
    assert_eq!(controllers.error_code, 0);
    assert_eq!(controllers.endpoint_type, 2);
    assert_eq!(controllers.cluster_authorized_operations, i32::MIN);
    let bogus = client
        .call(1, &DescribeClusterRequest::default().with_endpoint_type(9))
        .await;
    assert_eq!(
        bogus.error_code,
        ResponseError::UnsupportedEndpointType.code()
    );

    // The id is stored: a restart reports the same one, and a configured id that differs is refused.
    let dir = broker.shut_down().await;
    let broker = start_in(dir, |_, _| {}).await;
    let mut client = Client::connect(&broker).await;
    let response = client.call(2, &DescribeClusterRequest::default()).await;
    assert_eq!(response.cluster_id.as_str(), metadata_id);
    let dir = broker.shut_down().await;
    match try_start_in(dir, |config, _| config.cluster_id = Some("another".into())).await {
        Err((nerve_broker::ConfigError::ClusterIdMismatch { stored, .. }, _)) => {
            assert_eq!(stored, metadata_id)
        }
        Err((other, _)) => panic!("wrong refusal: {other}"),
        Ok(_) => panic!("a broker started with another cluster's data"),
    }
}

fn epoch_request(topic: &str, queries: &[(i32, i32, i32)]) -> OffsetForLeaderEpochRequest {
    OffsetForLeaderEpochRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![
            offset_for_leader_epoch_request::OffsetForLeaderTopic::default()
                .with_topic(name(topic))
                .with_partitions(
                    queries
                        .iter()
                        .map(|&(partition, current, requested)| {
                            offset_for_leader_epoch_request::OffsetForLeaderPartition::default()
                                .with_partition(partition)
                                .with_current_leader_epoch(current)
                                .with_leader_epoch(requested)
                        })
                        .collect(),
                ),
        ])
}

#[tokio::test]
async fn offset_for_leader_epoch_ends_epoch_zero_at_the_log_end() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "epochs", 1, &[]).await;
    for i in 0..3 {
        let value = format!("v{i}");
        client
            .call(
                9,
                &produce_request("epochs", -1, batch(&[(None, &value)], 1000)),
            )
            .await;
    }
    for version in [2, 3, 4] {
        let request = epoch_request("epochs", &[(0, 0, 0), (0, -1, 0), (0, 0, -1), (3, 0, 0)]);
        let response = client.call(version, &request).await;
        let answers: Vec<(i16, i32, i64)> = response.topics[0]
            .partitions
            .iter()
            .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
            .collect();
        assert_eq!(
            answers,
            vec![
                (0, 0, 3),
                (0, 0, 3),
                (0, -1, -1),
                (ResponseError::UnknownTopicOrPartition.code(), -1, -1)
            ],
            "v{version}"
        );
    }
    // ListOffsets (v4+) reports the same epoch for the offsets it finds.
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(name("epochs"))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
            ])]);
    let latest = client.call(7, &request).await;
    assert_eq!(
        (
            latest.topics[0].partitions[0].offset,
            latest.topics[0].partitions[0].leader_epoch
        ),
        (3, 0)
    );

    let response = client.call(4, &epoch_request("absent", &[(0, 0, 0)])).await;
    assert_eq!(
        response.topics[0].partitions[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
}

/// Judges values by a rule the test can see: a value is valid when it starts with "ok".
struct StartsWithOk;

impl nerve_broker::RecordValidator for StartsWithOk {
    fn validate(
        &self,
        topic: &str,
        part: nerve_broker::RecordPart,
        bytes: &[u8],
    ) -> Result<(), String> {
        if bytes.starts_with(b"ok") {
            Ok(())
        } else {
            Err(format!("of {topic} is not ok ({})", part.name()))
        }
    }
}

#[tokio::test]
async fn schema_validation_refuses_the_whole_batch_naming_each_bad_record() {
    let broker = start().await;
    assert!(broker
        .broker
        .set_record_validator(std::sync::Arc::new(StartsWithOk)));
    let mut client = Client::connect(&broker).await;
    create_topic(
        &mut client,
        "checked",
        1,
        &[("confluent.value.schema.validation", "true")],
    )
    .await;
    create_topic(&mut client, "unchecked", 1, &[]).await;
    let records = batch(
        &[
            (Some("a"), "ok 1"),
            (Some("b"), "bad"),
            (Some("c"), "ok 2"),
            (Some("d"), "worse"),
        ],
        1000,
    );
    let response = client
        .call(9, &produce_request("checked", 1, records.clone()))
        .await;
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, ResponseError::InvalidRecord.code());
    assert_eq!(partition.base_offset, -1);
    let indexes: Vec<i32> = partition
        .record_errors
        .iter()
        .map(|e| e.batch_index)
        .collect();
    assert_eq!(indexes, [1, 3]);
    let first = partition.record_errors[0]
        .batch_index_error_message
        .as_deref()
        .unwrap_or_default();
    assert_eq!(first, "record 1: value of checked is not ok (value)");
    let message = partition.error_message.as_deref().unwrap_or_default();
    assert!(message.contains("record 1"), "{message}");

    // Nothing of the refused batch was stored; a valid one is, from offset 0; other topics are not judged.
    let ok = client
        .call(
            9,
            &produce_request("checked", 1, batch(&[(Some("a"), "ok")], 1000)),
        )
        .await;
    assert_eq!(ok.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(ok.responses[0].partition_responses[0].base_offset, 0);
    let free = client
        .call(9, &produce_request("unchecked", 1, records))
        .await;
    assert_eq!(free.responses[0].partition_responses[0].error_code, 0);
}
