//! ListOffsets: offsets by time, and the special targets `-1` (latest), `-2` (earliest), `-3` (the record
//! with the largest timestamp), `-4` (earliest local: all data is local) and `-5` (latest tiered: nothing
//! is tiered, so none).
//!
//! By timestamp the answer is the first offset whose record timestamp is at least the target, and `-1`
//! when there is none, as Kafka answers.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use nerve_storage::{StorageError, TopicPartition};
use nerve_wire::frame::RequestFrame;

use super::{count_error, decode, respond};
use crate::broker::Broker;
use crate::error::{storage_error_code, RequestError};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;

pub(crate) async fn handle(
    broker: &Broker,
    request: RequestFrame,
    session: &crate::session::Session,
) -> Result<Bytes, RequestError> {
    let body: ListOffsetsRequest = decode(&request)?;
    let version = request.api_version();
    let mut topics = Vec::with_capacity(body.topics.len());
    for topic in body.topics {
        let authorized = broker.authorize(
            session,
            nerve_auth::Operation::Describe,
            nerve_auth::ResourceType::Topic,
            &topic.name.0,
        );
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            let tp = TopicPartition::new(&topic.name.0, partition.partition_index);
            let response = ListOffsetsPartitionResponse::default()
                .with_partition_index(partition.partition_index);
            let found = if authorized {
                lookup(broker, &tp, partition.timestamp).await
            } else {
                Err(ResponseError::TopicAuthorizationFailed)
            };
            let response = match found {
                Ok((offset, timestamp)) => response
                    .with_offset(offset)
                    .with_timestamp(timestamp)
                    // The epoch of the batch holding the offset (v4+; older versions have no field, and
                    // the codec refuses a value other than unknown there): 0 for every batch.
                    .with_leader_epoch(if offset >= 0 && version >= 4 {
                        super::LEADER_EPOCH
                    } else {
                        -1
                    }),
                Err(e) => response
                    .with_error_code(e.code())
                    .with_offset(-1)
                    .with_timestamp(-1),
            };
            partitions.push(response);
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    let response = ListOffsetsResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(topics);
    for partition in response.topics.iter().flat_map(|t| &t.partitions) {
        count_error(broker, &request, partition.error_code);
    }
    respond(&request, &response)
}

/// The `(offset, timestamp)` answering `target`; `(-1, -1)` when no record qualifies.
async fn lookup(
    broker: &Broker,
    tp: &TopicPartition,
    target: i64,
) -> Result<(i64, i64), ResponseError> {
    let fail = |e: StorageError| storage_error_code(&e);
    let offsets = broker.log.offsets(tp).map_err(fail)?;
    let found = match target {
        // Read-committed and read-uncommitted agree: the last stable offset is the high watermark.
        LATEST => Some((offsets.high_watermark, -1)),
        EARLIEST | EARLIEST_LOCAL => Some((offsets.log_start, -1)),
        LATEST_TIERED => None,
        MAX_TIMESTAMP => broker
            .log
            .max_timestamp(tp)
            .await
            .map_err(fail)?
            .map(|l| (l.offset, l.timestamp)),
        t if t >= 0 => broker
            .log
            .offset_for_timestamp(tp, t)
            .await
            .map_err(fail)?
            .map(|l| (l.offset, l.timestamp)),
        _ => return Err(ResponseError::InvalidRequest),
    };
    Ok(found.unwrap_or((-1, -1)))
}
