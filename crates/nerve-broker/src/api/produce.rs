//! Produce: append each partition's record batch and acknowledge it.
//!
//! - `acks=0` requests get no response at all; `acks=1` and `acks=-1` are the same here (one replica):
//!   the answer waits until the append is durable under the partition's fsync policy.
//! - From v3 on, Kafka takes exactly one batch per partition per request.
//! - A retry of one of an idempotent producer's last five batches is acknowledged with the original base
//!   offset and no error (the storage recognizes it).
//! - A record rejected by the storage (e.g. a null key on a compacted topic) fails its partition with
//!   `INVALID_RECORD`, naming the record in `record_errors`.
//! - Internal topics (`__consumer_offsets`) are written by the coordinator only: `INVALID_TOPIC_EXCEPTION`.
//! - On topics with schema validation on (see [`crate::validation`]), a batch with a record whose key or
//!   value does not carry a registered schema it decodes with fails with `INVALID_RECORD`, each such
//!   record named in `record_errors`; nothing of the batch is stored.
//! - Metrics: every partition's error code is counted (with `acks=0` too, though nothing is answered); a
//!   stored batch counts its bytes and records (from its header) for the topic, a retried duplicate does
//!   not; every successful append's time to durable is observed under the topic's fsync policy.

use std::time::Instant;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse};
use nerve_storage::{StorageError, TopicPartition};
use nerve_wire::frame::RequestFrame;

use super::{decode, message, respond};
use crate::broker::Broker;
use crate::error::{storage_error_code, RequestError};

/// Produce v13 names topics by id only.
const FIRST_VERSION_WITH_TOPIC_IDS: i16 = 13;

pub(crate) async fn handle(
    broker: &Broker,
    request: RequestFrame,
    session: &crate::session::Session,
) -> Result<Option<Bytes>, RequestError> {
    let body: ProduceRequest = decode(&request)?;
    let by_id = request.api_version() >= FIRST_VERSION_WITH_TOPIC_IDS;
    let acks = body.acks;

    let mut topics = Vec::with_capacity(body.topic_data.len());
    for topic in body.topic_data {
        let name = if by_id {
            broker.topic_by_id(topic.topic_id).map(|t| t.name)
        } else {
            Some(topic.name.0.to_string())
        };
        // Kafka checks WRITE on the topic by name, so a denied client learns nothing of whether it exists.
        let authorized = name.as_ref().is_none_or(|name| {
            broker.authorize(
                session,
                nerve_auth::Operation::Write,
                nerve_auth::ResourceType::Topic,
                name,
            )
        });
        let appends = topic.partition_data.into_iter().map(|partition| {
            let name = name.clone();
            async move {
                // Kafka answers a failed partition with base offset -1: clients hand it to delivery
                // reports, and a rejected record must not appear to have an offset.
                let response = PartitionProduceResponse::default()
                    .with_index(partition.index)
                    .with_base_offset(-1);
                let Some(name) = name else {
                    return response.with_error_code(ResponseError::UnknownTopicId.code());
                };
                if !authorized {
                    return response
                        .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                }
                if !(-1..=1).contains(&acks) {
                    return response.with_error_code(ResponseError::InvalidRequiredAcks.code());
                }
                if crate::group::is_internal_topic(&name) {
                    // Kafka: clients never append to internal topics; only the coordinators do.
                    return response
                        .with_error_code(ResponseError::InvalidTopicException.code())
                        .with_error_message(message(format!(
                            "cannot append to internal topic {name}"
                        )));
                }
                let tp = TopicPartition::new(&name, partition.index);
                append(broker, &tp, partition.records, response).await
            }
        });
        let partitions = join_all(appends).await;
        for partition in &partitions {
            broker
                .metrics
                .count_error(ApiKey::Produce, partition.error_code);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(if by_id {
                    Default::default()
                } else {
                    topic.name
                })
                .with_topic_id(topic.topic_id)
                .with_partition_responses(partitions),
        );
    }
    if acks == 0 {
        return Ok(None);
    }
    let response = ProduceResponse::default()
        .with_responses(topics)
        .with_throttle_time_ms(0);
    respond(&request, &response).map(Some)
}

async fn append(
    broker: &Broker,
    tp: &TopicPartition,
    records: Option<Bytes>,
    response: PartitionProduceResponse,
) -> PartitionProduceResponse {
    let records = match records {
        Some(records) if is_single_batch(&records) => records,
        _ => {
            return response
                .with_error_code(ResponseError::InvalidRecord.code())
                .with_error_message(message(
                    "a produce request must carry exactly one record batch per partition",
                ))
        }
    };
    if let Some(validation) = broker.validations.of(&tp.topic) {
        if let Err(rejected) = broker.validations.check(&tp.topic, validation, &records) {
            tracing::debug!(partition = %tp, first = %rejected[0].reason, "records refused by schema validation");
            let record_errors = rejected
                .iter()
                .map(|r| {
                    BatchIndexAndErrorMessage::default()
                        .with_batch_index(i32::try_from(r.record_index).unwrap_or(i32::MAX))
                        .with_batch_index_error_message(message(&r.reason))
                })
                .collect();
            return response
                .with_error_code(ResponseError::InvalidRecord.code())
                .with_error_message(message(format!(
                    "schema validation failed: {}",
                    rejected[0].reason
                )))
                .with_record_errors(record_errors);
        }
    }
    let bytes = records.len() as u64;
    let records_in_batch = nerve_wire::batch::BatchHeader::parse(&records)
        .map_or(0, |header| u64::try_from(header.record_count).unwrap_or(0));
    let started = Instant::now();
    let appended = broker.log.append(tp, records).await;
    if let Ok(info) = &appended {
        broker
            .metrics
            .observe_durable(broker.fsync_policy(&tp.topic), started.elapsed());
        if !info.duplicate {
            broker.metrics.count_in(&tp.topic, bytes, records_in_batch);
        }
    }
    match appended {
        Ok(info) => response
            .with_base_offset(info.base_offset)
            .with_log_append_time_ms(info.log_append_time.unwrap_or(-1))
            .with_log_start_offset(info.log_start_offset),
        Err(e) => {
            let code = storage_error_code(&e);
            if matches!(code, ResponseError::KafkaStorageError) {
                tracing::error!(partition = %tp, error = %e, "append failed");
            } else {
                tracing::debug!(partition = %tp, error = %e, "append refused");
            }
            let record_errors = match &e {
                StorageError::InvalidRecord {
                    record_index,
                    reason,
                    ..
                } => vec![BatchIndexAndErrorMessage::default()
                    .with_batch_index(i32::try_from(*record_index).unwrap_or(i32::MAX))
                    .with_batch_index_error_message(message(reason))],
                _ => Vec::new(),
            };
            response
                .with_error_code(code.code())
                .with_error_message(message(&e))
                .with_record_errors(record_errors)
        }
    }
}

/// True when `records` is exactly one batch by its length field (the storage checks the rest).
fn is_single_batch(records: &[u8]) -> bool {
    match nerve_wire::batch::peek_total_len(records) {
        Some(Ok(len)) => len == records.len(),
        _ => false,
    }
}
