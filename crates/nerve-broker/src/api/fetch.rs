//! Fetch: stored batches, served as they were written.
//!
//! - Long-poll: without `min_bytes` of data the request waits until appends bring enough or `max_wait_ms`
//!   passes. The wait is on the partitions' high-watermark watches, never a polling loop.
//! - `max_bytes` and `partition_max_bytes` bound the answer, except that the first partition with data
//!   always gets at least one whole batch (KIP-74), so a batch larger than the limits cannot stall a consumer.
//! - A fetch offset outside `[log start, log end]` gets `OFFSET_OUT_OF_RANGE`; clients' `auto.offset.reset`
//!   relies on that code.
//! - From v13 topics are named by id. Fetch sessions (KIP-227) are not kept: every answer carries session id
//!   0, which tells the client to send full fetches.
//! - Metrics: the answer's error codes are counted, and per topic the bytes and records (from the batch
//!   headers) it carries. Batches are sent whole, so one starting before the fetch offset counts whole.

use std::time::Duration;

use bytes::Bytes;
use futures::future::select_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use nerve_storage::TopicPartition;
use nerve_wire::frame::RequestFrame;
use tokio::time::Instant;

use super::{decode, respond};
use crate::broker::Broker;
use crate::error::{storage_error_code, RequestError};

/// Fetch v13 names topics by id instead of by name.
const FIRST_VERSION_WITH_TOPIC_IDS: i16 = 13;

/// One requested partition, resolved to a log (or to the error that answers it).
struct Wanted {
    partition: i32,
    target: Result<TopicPartition, ResponseError>,
    offset: i64,
    max_bytes: usize,
}

struct WantedTopic {
    name: TopicName,
    id: uuid::Uuid,
    partitions: Vec<Wanted>,
}

pub(crate) async fn handle(
    broker: &Broker,
    request: RequestFrame,
    session: &crate::session::Session,
) -> Result<Bytes, RequestError> {
    let body: FetchRequest = decode(&request)?;
    if body.session_id != 0 {
        // We never hand out sessions, so any session id is one we do not know.
        broker
            .metrics
            .count_error(ApiKey::Fetch, ResponseError::FetchSessionIdNotFound.code());
        let response = FetchResponse::default()
            .with_throttle_time_ms(0)
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
        return respond(&request, &response);
    }
    let topics = resolve(broker, session, body.topics, request.api_version());
    let max_bytes = usize::try_from(body.max_bytes).unwrap_or(0);
    let min_bytes = usize::try_from(body.min_bytes).unwrap_or(0);
    let deadline =
        Instant::now() + Duration::from_millis(u64::try_from(body.max_wait_ms).unwrap_or(0));

    loop {
        // Subscribe before reading, so an append that lands between the read and the wait still wakes us.
        let mut watches = Vec::new();
        for topic in &topics {
            for wanted in &topic.partitions {
                if let Ok(tp) = &wanted.target {
                    if let Ok(mut watch) = broker.log.watch_high_watermark(tp) {
                        watch.borrow_and_update();
                        watches.push(watch);
                    }
                }
            }
        }
        let (responses, outcome) = read_all(broker, &topics, max_bytes).await;
        let done = outcome.bytes >= min_bytes
            || outcome.errors
            || watches.is_empty()
            || Instant::now() >= deadline
            || broker.is_shutting_down();
        if done {
            count_answer(broker, &topics, &responses);
            let response = FetchResponse::default()
                .with_throttle_time_ms(0)
                .with_session_id(0)
                .with_responses(responses);
            return respond(&request, &response);
        }
        let changed = select_all(watches.iter_mut().map(|w| Box::pin(w.changed())));
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = broker.shutting_down() => {}
        }
    }
}

/// Counts what the answer carries: its error codes, and per topic the bytes and records sent.
fn count_answer(broker: &Broker, topics: &[WantedTopic], responses: &[FetchableTopicResponse]) {
    // `read_all` answers every wanted topic and partition, in order.
    for (topic, response) in topics.iter().zip(responses) {
        for (wanted, partition) in topic.partitions.iter().zip(&response.partitions) {
            broker
                .metrics
                .count_error(ApiKey::Fetch, partition.error_code);
            if let (Ok(tp), Some(records)) = (&wanted.target, &partition.records) {
                if !records.is_empty() {
                    broker.metrics.count_out(
                        &tp.topic,
                        records.len() as u64,
                        count_records(records),
                    );
                }
            }
        }
    }
}

/// Records in the whole batches of `data`, by their headers.
fn count_records(mut data: &[u8]) -> u64 {
    let mut records = 0;
    while let Ok(header) = nerve_wire::batch::BatchHeader::parse(data) {
        let Some(rest) = data.get(header.total_len()..) else {
            break;
        };
        records += u64::try_from(header.record_count).unwrap_or(0);
        data = rest;
    }
    records
}

fn resolve(
    broker: &Broker,
    session: &crate::session::Session,
    topics: Vec<kafka_protocol::messages::fetch_request::FetchTopic>,
    version: i16,
) -> Vec<WantedTopic> {
    topics
        .into_iter()
        .map(|topic| {
            let name: Result<String, ResponseError> = if version >= FIRST_VERSION_WITH_TOPIC_IDS {
                broker
                    .topic_by_id(topic.topic_id)
                    .map(|t| t.name)
                    .ok_or(ResponseError::UnknownTopicId)
            } else {
                Ok(topic.topic.0.to_string())
            };
            let name = name.and_then(|name| {
                let allowed = broker.authorize(
                    session,
                    nerve_auth::Operation::Read,
                    nerve_auth::ResourceType::Topic,
                    &name,
                );
                if allowed {
                    Ok(name)
                } else {
                    Err(ResponseError::TopicAuthorizationFailed)
                }
            });
            let partitions = topic
                .partitions
                .into_iter()
                .map(|p| Wanted {
                    partition: p.partition,
                    target: name
                        .as_ref()
                        .map(|n| TopicPartition::new(n, p.partition))
                        .map_err(|e| *e),
                    offset: p.fetch_offset,
                    max_bytes: usize::try_from(p.partition_max_bytes).unwrap_or(0),
                })
                .collect();
            WantedTopic {
                name: topic.topic,
                id: topic.topic_id,
                partitions,
            }
        })
        .collect()
}

#[derive(Default)]
struct Outcome {
    bytes: usize,
    errors: bool,
}

async fn read_all(
    broker: &Broker,
    topics: &[WantedTopic],
    max_bytes: usize,
) -> (Vec<FetchableTopicResponse>, Outcome) {
    let mut outcome = Outcome::default();
    let mut remaining = max_bytes;
    let mut responses = Vec::with_capacity(topics.len());
    for topic in topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let data = match &wanted.target {
                Err(code) => Err(*code),
                Ok(tp) => read_partition(broker, tp, wanted, remaining, outcome.bytes > 0).await,
            };
            let partition = match data {
                Ok(partition) => {
                    let len = partition.records.as_ref().map_or(0, Bytes::len);
                    outcome.bytes += len;
                    remaining = remaining.saturating_sub(len);
                    partition
                }
                Err(code) => {
                    outcome.errors = true;
                    PartitionData::default()
                        .with_error_code(code.code())
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                }
            };
            partitions.push(partition.with_partition_index(wanted.partition));
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(topic.name.clone())
                .with_topic_id(topic.id)
                .with_partitions(partitions),
        );
    }
    (responses, outcome)
}

async fn read_partition(
    broker: &Broker,
    tp: &TopicPartition,
    wanted: &Wanted,
    remaining: usize,
    have_data: bool,
) -> Result<PartitionData, ResponseError> {
    let fail = |e: nerve_storage::StorageError| {
        let code = storage_error_code(&e);
        if code == ResponseError::KafkaStorageError {
            tracing::error!(partition = %tp, error = %e, "fetch failed");
        }
        code
    };
    let limit = wanted.max_bytes.min(remaining);
    // Past the request's byte budget only the first partition with data may overshoot (KIP-74).
    let (records, offsets) = if limit == 0 && have_data {
        let offsets = broker.log.offsets(tp).map_err(fail)?;
        if wanted.offset < offsets.log_start || wanted.offset > offsets.log_end {
            return Err(ResponseError::OffsetOutOfRange);
        }
        (Bytes::new(), offsets)
    } else {
        let read = broker
            .log
            .read(tp, wanted.offset, limit.max(1))
            .await
            .map_err(fail)?;
        (read.data, read.offsets)
    };
    Ok(PartitionData::default()
        .with_high_watermark(offsets.high_watermark)
        .with_last_stable_offset(offsets.high_watermark)
        .with_log_start_offset(offsets.log_start)
        .with_records(Some(records)))
}
