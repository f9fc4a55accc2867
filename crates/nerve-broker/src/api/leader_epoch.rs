//! OffsetForLeaderEpoch: where a leader epoch ends, which consumers use to validate their position.
//!
//! A single node has one leader epoch, 0, from each partition's creation on (the epoch Metadata reports and
//! every stored batch carries). So for any requested epoch >= 0 the answer is epoch 0 ending at the log end
//! offset, as Kafka answers for the current epoch: a position at or below it is valid, one above it means the
//! log lost its tail and the client resets. A requested epoch of -1 (unknown) gets Kafka's "undefined" answer,
//! epoch -1 at offset -1.
//!
//! `current_leader_epoch` is not fenced: Kafka answers a newer epoch than its own with the retriable
//! `UNKNOWN_LEADER_EPOCH`, expecting to catch up, but this node's epoch never moves, so a client holding
//! such an epoch (from another cluster's history) would retry forever. Answering it is the only answer that
//! ends.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use nerve_storage::TopicPartition;
use nerve_wire::frame::RequestFrame;

use super::{count_error, decode, respond, LEADER_EPOCH};
use crate::broker::Broker;
use crate::error::{storage_error_code, RequestError};

/// Kafka's `UNDEFINED_EPOCH` and `UNDEFINED_EPOCH_OFFSET`.
const UNDEFINED: i32 = -1;
const UNDEFINED_OFFSET: i64 = -1;

pub(crate) fn handle(
    broker: &Broker,
    request: RequestFrame,
    session: &crate::session::Session,
) -> Result<Bytes, RequestError> {
    let body: OffsetForLeaderEpochRequest = decode(&request)?;
    let topics = body
        .topics
        .into_iter()
        .map(|topic| {
            let authorized = broker.authorize(
                session,
                nerve_auth::Operation::Describe,
                nerve_auth::ResourceType::Topic,
                &topic.topic.0,
            );
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let tp = TopicPartition::new(&topic.topic.0, p.partition);
                    let answer = EpochEndOffset::default().with_partition(p.partition);
                    let found = if authorized {
                        end_of_epoch(broker, &tp, p.leader_epoch)
                    } else {
                        Err(ResponseError::TopicAuthorizationFailed)
                    };
                    match found {
                        Ok((epoch, end_offset)) => {
                            answer.with_leader_epoch(epoch).with_end_offset(end_offset)
                        }
                        Err(error) => answer
                            .with_error_code(error.code())
                            .with_leader_epoch(UNDEFINED)
                            .with_end_offset(UNDEFINED_OFFSET),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    let response = OffsetForLeaderEpochResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(topics);
    for partition in response.topics.iter().flat_map(|t| &t.partitions) {
        count_error(broker, &request, partition.error_code);
    }
    respond(&request, &response)
}

/// `(epoch, end offset)` for a requested epoch of `tp`.
fn end_of_epoch(
    broker: &Broker,
    tp: &TopicPartition,
    requested: i32,
) -> Result<(i32, i64), ResponseError> {
    let offsets = broker.log.offsets(tp).map_err(|e| storage_error_code(&e))?;
    if requested < 0 {
        return Ok((UNDEFINED, UNDEFINED_OFFSET));
    }
    Ok((LEADER_EPOCH, offsets.log_end))
}
