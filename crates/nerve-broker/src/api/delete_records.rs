//! DeleteRecords: moves a partition's log start forward, as `kafka-delete-records` and
//! `AdminClient::deleteRecords` do.
//!
//! Each partition's target offset becomes its new low watermark; `-1` means the high watermark (delete
//! everything readable). An offset past the high watermark is `OFFSET_OUT_OF_RANGE`; one at or below the
//! current log start changes nothing and answers the current log start. As in Kafka, a topic whose
//! `cleanup.policy` lacks `delete` (compact only) refuses with `POLICY_VIOLATION`: its records leave by
//! compaction, not by truncating the front of the log.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use nerve_storage::{StorageError, TopicPartition};
use nerve_wire::frame::RequestFrame;

use super::{count_error, decode, respond};
use crate::broker::Broker;
use crate::error::{storage_error_code, RequestError};

/// The target offset that means "the high watermark".
const HIGH_WATERMARK: i64 = -1;

pub(crate) async fn handle(
    broker: &Broker,
    request: RequestFrame,
    session: &crate::session::Session,
) -> Result<Bytes, RequestError> {
    let body: DeleteRecordsRequest = decode(&request)?;
    let mut topics = Vec::with_capacity(body.topics.len());
    for topic in body.topics {
        let name = topic.name.0.to_string();
        let authorized = broker.authorize(
            session,
            nerve_auth::Operation::Delete,
            nerve_auth::ResourceType::Topic,
            &name,
        );
        // The policy is the topic's, so it is looked up once; an unknown topic fails every partition below.
        let deletable = broker
            .meta
            .topic(&name)
            .map(|meta| broker.config.topic_config(&meta.configs));
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            let tp = TopicPartition::new(&name, partition.partition_index);
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(partition.partition_index);
            let outcome = match &deletable {
                _ if !authorized => Err(ResponseError::TopicAuthorizationFailed),
                None => Err(ResponseError::UnknownTopicOrPartition),
                Some(Ok(config)) if !config.cleanup_policy.delete => {
                    Err(ResponseError::PolicyViolation)
                }
                // The stored config was validated when set; a broker default that no longer parses is not
                // the client's fault, and deleting records needs no config value.
                Some(_) => delete_before(broker, &tp, partition.offset).await,
            };
            partitions.push(match outcome {
                Ok(low_watermark) => result.with_low_watermark(low_watermark),
                Err(error) => result.with_low_watermark(-1).with_error_code(error.code()),
            });
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    let response = DeleteRecordsResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(topics);
    for partition in response.topics.iter().flat_map(|t| &t.partitions) {
        count_error(broker, &request, partition.error_code);
    }
    respond(&request, &response)
}

/// Deletes the records of `tp` before `offset`; the new low watermark.
async fn delete_before(
    broker: &Broker,
    tp: &TopicPartition,
    offset: i64,
) -> Result<i64, ResponseError> {
    let fail = |e: StorageError| {
        let code = storage_error_code(&e);
        if code == ResponseError::KafkaStorageError {
            tracing::error!(partition = %tp, error = %e, "deleting records failed");
        }
        code
    };
    let offset = match offset {
        // Resolved here rather than by the engine: the trait's contract is an offset, and the high watermark
        // only grows, so a later one is as good an answer.
        HIGH_WATERMARK => broker.log.offsets(tp).map_err(fail)?.high_watermark,
        o if o < 0 => return Err(ResponseError::OffsetOutOfRange),
        o => o,
    };
    broker
        .log
        .delete_records_before(tp, offset)
        .await
        .map_err(fail)
}
