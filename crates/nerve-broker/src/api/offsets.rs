//! OffsetCommit, OffsetFetch and OffsetDelete: a group's committed offsets.
//!
//! - OffsetCommit checks each partition first (an unknown topic or partition is
//!   `UNKNOWN_TOPIC_OR_PARTITION`, metadata over `offset_metadata_max_bytes` is
//!   `OFFSET_METADATA_TOO_LARGE`), then the committer against the group (see `Coordinator::commit`); the
//!   partitions that pass are stored together, durable before the answer. A null metadata is stored as "".
//! - OffsetFetch answers -1 (and metadata "") for a partition without a committed offset, including for
//!   unknown groups; a null topic list (v2+) asks for every committed offset of the group. v8+ asks for
//!   several groups at once.
//! - OffsetDelete removes offsets of topics the group is not subscribed to (all of them when it has no
//!   members); a topic a member subscribes to is `GROUP_SUBSCRIBED_TO_TOPIC`.

use std::collections::{BTreeMap, HashSet};

use bytes::{Buf, Bytes};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use nerve_storage::TopicPartition;
use nerve_wire::frame::RequestFrame;

use super::{count_error, decode, respond, topic_name};
use crate::broker::Broker;
use crate::error::RequestError;
use crate::group::offsets::{Committed, OffsetToCommit};
use crate::group::GroupState;
use crate::session::Session;
use nerve_auth::{Operation, ResourceType};

/// A partition's row: index, committed offset, leader epoch, metadata, error code.
type FetchedRow = (i32, i64, i32, String, i16);

/// A topic's partitions with, for each, an error found before asking the group, or its place among the
/// offsets to commit.
type CheckedTopic = (String, Vec<(i32, Result<usize, ResponseError>)>);

/// Whether `tp` exists.
fn partition_exists(broker: &Broker, tp: &TopicPartition) -> bool {
    broker
        .meta
        .topic(&tp.topic)
        .is_some_and(|t| (0..t.partitions).contains(&tp.partition))
}

pub(crate) async fn offset_commit(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: OffsetCommitRequest = decode(&request)?;
    let group_allowed = broker.authorize(
        session,
        Operation::Read,
        ResourceType::Group,
        body.group_id.0.as_str(),
    );
    let max_metadata = broker.groups.settings.offset_metadata_max_bytes;
    // Per partition: an error found before the group is asked, or the offset to commit.
    let mut checked: Vec<CheckedTopic> = Vec::new();
    let mut to_commit = Vec::new();
    for topic in &body.topics {
        let name = topic.name.0.to_string();
        let topic_allowed =
            group_allowed && broker.authorize(session, Operation::Read, ResourceType::Topic, &name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let tp = TopicPartition::new(&name, p.partition_index);
            let metadata = p
                .committed_metadata
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default();
            let outcome = if !group_allowed {
                Err(ResponseError::GroupAuthorizationFailed)
            } else if !topic_allowed {
                Err(ResponseError::TopicAuthorizationFailed)
            } else if !partition_exists(broker, &tp) {
                Err(ResponseError::UnknownTopicOrPartition)
            } else if metadata.len() > max_metadata {
                Err(ResponseError::OffsetMetadataTooLarge)
            } else {
                to_commit.push(OffsetToCommit {
                    tp,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata,
                });
                Ok(to_commit.len() - 1)
            };
            partitions.push((p.partition_index, outcome));
        }
        checked.push((name, partitions));
    }
    let group_error = if !group_allowed {
        None
    } else {
        broker
            .groups
            .commit(
                body.group_id.0.as_str(),
                body.generation_id_or_member_epoch,
                body.member_id.as_str(),
                body.group_instance_id.as_ref().map(|i| i.as_str()),
                to_commit,
            )
            .await
            .err()
    };
    let topics = checked
        .into_iter()
        .map(|(name, partitions)| {
            OffsetCommitResponseTopic::default()
                .with_name(topic_name(&name))
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, outcome)| {
                            let error = match outcome {
                                Err(e) => Some(e),
                                Ok(_) => group_error,
                            };
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(error.map_or(0, |e| e.code()))
                        })
                        .collect(),
                )
        })
        .collect();
    let response = OffsetCommitResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(topics);
    for partition in response.topics.iter().flat_map(|t| &t.partitions) {
        count_error(broker, &request, partition.error_code);
    }
    respond(&request, &response)
}

/// What OffsetFetch reports for a partition: the committed offset, or -1.
fn fetched(committed: Option<&Committed>) -> (i64, i32, String) {
    match committed {
        Some(c) => (c.offset, c.leader_epoch, c.metadata.clone()),
        None => (-1, -1, String::new()),
    }
}

/// The offsets of one group: for the requested topics and partitions, or (`None`) every committed one of
/// the topics the client may describe. A requested topic it may not describe answers
/// TOPIC_AUTHORIZATION_FAILED for each partition.
fn group_offsets(
    broker: &Broker,
    session: &Session,
    group_id: &str,
    requested: Option<Vec<(String, Vec<i32>)>>,
) -> Vec<(String, Vec<FetchedRow>)> {
    let committed = broker.groups.committed(group_id);
    let visible =
        |topic: &str| broker.is_allowed(session, Operation::Describe, ResourceType::Topic, topic);
    match requested {
        Some(topics) => topics
            .into_iter()
            .map(|(topic, partitions)| {
                let allowed =
                    broker.authorize(session, Operation::Describe, ResourceType::Topic, &topic);
                let rows = partitions
                    .into_iter()
                    .map(|p| {
                        if !allowed {
                            return (
                                p,
                                -1,
                                -1,
                                String::new(),
                                ResponseError::TopicAuthorizationFailed.code(),
                            );
                        }
                        let (offset, epoch, metadata) =
                            fetched(committed.get(&TopicPartition::new(&topic, p)));
                        (p, offset, epoch, metadata, 0)
                    })
                    .collect();
                (topic, rows)
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<String, Vec<FetchedRow>> = BTreeMap::new();
            for (tp, c) in committed.iter().filter(|(tp, _)| visible(&tp.topic)) {
                by_topic.entry(tp.topic.to_string()).or_default().push((
                    tp.partition,
                    c.offset,
                    c.leader_epoch,
                    c.metadata.clone(),
                    0,
                ));
            }
            by_topic
                .into_iter()
                .map(|(topic, mut rows)| {
                    rows.sort_by_key(|r| r.0);
                    (topic, rows)
                })
                .collect()
        }
    }
}

pub(crate) fn offset_fetch(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let group_allowed =
        |group: &str| broker.authorize(session, Operation::Describe, ResourceType::Group, group);
    let body: OffsetFetchRequest = decode(&request)?;
    let version = request.api_version();
    let text = |s: String| StrBytes::from_string(s);
    let response = OffsetFetchResponse::default().with_throttle_time_ms(0);
    let response = if version >= 8 {
        let groups = body
            .groups
            .into_iter()
            .map(|group| {
                if !group_allowed(group.group_id.0.as_str()) {
                    return OffsetFetchResponseGroup::default()
                        .with_group_id(group.group_id)
                        .with_error_code(ResponseError::GroupAuthorizationFailed.code());
                }
                let requested = group.topics.map(|topics| {
                    topics
                        .into_iter()
                        .map(|t| (t.name.0.to_string(), t.partition_indexes))
                        .collect()
                });
                let topics = group_offsets(broker, session, group.group_id.0.as_str(), requested)
                    .into_iter()
                    .map(|(topic, rows)| {
                        OffsetFetchResponseTopics::default()
                            .with_name(topic_name(&topic))
                            .with_partitions(
                                rows.into_iter()
                                    .map(|(p, offset, epoch, metadata, error)| {
                                        OffsetFetchResponsePartitions::default()
                                            .with_error_code(error)
                                            .with_partition_index(p)
                                            .with_committed_offset(offset)
                                            .with_committed_leader_epoch(epoch)
                                            .with_metadata(Some(text(metadata)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id)
                    .with_topics(topics)
            })
            .collect();
        response.with_groups(groups)
    } else if !group_allowed(body.group_id.0.as_str()) {
        response.with_error_code(ResponseError::GroupAuthorizationFailed.code())
    } else {
        let requested = if version < 2 {
            Some(body.topics.unwrap_or_default())
        } else {
            body.topics
        }
        .map(|topics| {
            topics
                .into_iter()
                .map(|t| (t.name.0.to_string(), t.partition_indexes))
                .collect()
        });
        let topics = group_offsets(broker, session, body.group_id.0.as_str(), requested)
            .into_iter()
            .map(|(topic, rows)| {
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&topic))
                    .with_partitions(
                        rows.into_iter()
                            .map(|(p, offset, epoch, metadata, error)| {
                                let partition = OffsetFetchResponsePartition::default()
                                    .with_error_code(error)
                                    .with_partition_index(p)
                                    .with_committed_offset(offset)
                                    .with_metadata(Some(text(metadata)));
                                if version >= 5 {
                                    partition.with_committed_leader_epoch(epoch)
                                } else {
                                    partition
                                }
                            })
                            .collect(),
                    )
            })
            .collect();
        response.with_topics(topics)
    };
    count_error(broker, &request, response.error_code);
    for partition in response.topics.iter().flat_map(|t| &t.partitions) {
        count_error(broker, &request, partition.error_code);
    }
    for group in &response.groups {
        count_error(broker, &request, group.error_code);
        for partition in group.topics.iter().flat_map(|t| &t.partitions) {
            count_error(broker, &request, partition.error_code);
        }
    }
    respond(&request, &response)
}

/// The topics the group's members subscribe to; `None` when that cannot be known (a protocol type other
/// than `consumer`, or metadata that does not decode), which protects every topic.
fn subscribed_topics(
    broker: &Broker,
    group_id: &str,
) -> Result<Option<HashSet<String>>, ResponseError> {
    let groups = broker.groups.groups();
    let group = groups.get(group_id).ok_or(ResponseError::GroupIdNotFound)?;
    if group.state == GroupState::Empty {
        return Ok(Some(HashSet::new()));
    }
    if group.protocol_type.as_deref() != Some("consumer") {
        return Ok(None);
    }
    let mut topics = HashSet::new();
    for member in &group.members {
        let Some(metadata) = group
            .protocol
            .as_deref()
            .and_then(|p| member.metadata(p))
            .or_else(|| member.protocols.first().map(|(_, m)| m))
        else {
            return Ok(None);
        };
        let mut buf: Bytes = metadata.clone();
        if buf.remaining() < 2 {
            return Ok(None);
        }
        // Newer versions than we know extend older ones: read them as the newest we know.
        let version = buf.get_i16().clamp(0, 3);
        match ConsumerProtocolSubscription::decode(&mut buf, version) {
            Ok(subscription) => topics.extend(subscription.topics.iter().map(|t| t.to_string())),
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(topics))
}

pub(crate) async fn offset_delete(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: OffsetDeleteRequest = decode(&request)?;
    let group_id = body.group_id.0.to_string();
    let response = OffsetDeleteResponse::default().with_throttle_time_ms(0);
    if !broker.authorize(session, Operation::Delete, ResourceType::Group, &group_id) {
        let error = ResponseError::GroupAuthorizationFailed.code();
        count_error(broker, &request, error);
        return respond(&request, &response.with_error_code(error));
    }
    let subscribed = match subscribed_topics(broker, &group_id) {
        Ok(s) => s,
        Err(e) => {
            count_error(broker, &request, e.code());
            return respond(&request, &response.with_error_code(e.code()));
        }
    };
    let Some(subscribed) = subscribed else {
        count_error(broker, &request, ResponseError::NonEmptyGroup.code());
        return respond(
            &request,
            &response.with_error_code(ResponseError::NonEmptyGroup.code()),
        );
    };
    let mut to_delete = Vec::new();
    let mut topics = Vec::with_capacity(body.topics.len());
    for topic in &body.topics {
        let name = topic.name.0.to_string();
        let topic_allowed = broker.authorize(session, Operation::Read, ResourceType::Topic, &name);
        let partitions = topic
            .partitions
            .iter()
            .map(|p| {
                let tp = TopicPartition::new(&name, p.partition_index);
                let error = if !topic_allowed {
                    Some(ResponseError::TopicAuthorizationFailed)
                } else if subscribed.contains(&name) {
                    Some(ResponseError::GroupSubscribedToTopic)
                } else if !partition_exists(broker, &tp) {
                    Some(ResponseError::UnknownTopicOrPartition)
                } else {
                    to_delete.push(tp);
                    None
                };
                (p.partition_index, error)
            })
            .collect::<Vec<_>>();
        topics.push((topic.name.clone(), partitions));
    }
    let committed = broker.groups.committed(&group_id);
    to_delete.retain(|tp| committed.contains_key(tp));
    let storage_error = broker
        .groups
        .delete_offsets(&group_id, &to_delete)
        .await
        .err();
    let topics = topics
        .into_iter()
        .map(|(name, partitions)| {
            OffsetDeleteResponseTopic::default()
                .with_name(name)
                .with_partitions(
                    partitions
                        .into_iter()
                        .map(|(index, error)| {
                            OffsetDeleteResponsePartition::default()
                                .with_partition_index(index)
                                .with_error_code(error.or(storage_error).map_or(0, |e| e.code()))
                        })
                        .collect(),
                )
        })
        .collect();
    let response = response.with_topics(topics);
    for partition in response.topics.iter().flat_map(|t| &t.partitions) {
        count_error(broker, &request, partition.error_code);
    }
    respond(&request, &response)
}
