//! Metadata: brokers, topics and partitions. A single node is the leader of every partition and the
//! controller.
//!
//! Unknown topics are created when the request allows it (always before v4) and
//! `auto.create.topics.enable` is on; the new topic is described in the same response. Invalid names get
//! `INVALID_TOPIC_EXCEPTION` and are not created.

use std::collections::BTreeMap;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use kafka_protocol::protocol::StrBytes;
use nerve_auth::{Operation, ResourceType};
use nerve_storage::{StorageError, TopicMeta};
use nerve_wire::frame::RequestFrame;

use super::{count_error, decode, respond, topic_name};
use crate::broker::Broker;
use crate::error::{storage_error_code, RequestError};

pub(crate) async fn handle(
    broker: &Broker,
    request: RequestFrame,
    session: &crate::session::Session,
) -> Result<Bytes, RequestError> {
    let body: MetadataRequest = decode(&request)?;
    let version = request.api_version();
    // Before v4 the field does not exist and Kafka always auto-created.
    let allow_auto_create = version < 4 || body.allow_auto_topic_creation;
    let topic_operations = version >= 8 && body.include_topic_authorized_operations;
    // v8 to v10 only; later versions left it to DescribeCluster.
    let cluster_operations =
        (8..=10).contains(&version) && body.include_cluster_authorized_operations;
    let requested = match body.topics {
        None => None,
        // v0 has no null: an empty list asks for every topic.
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(topics),
    };
    let describable =
        |name: &str| broker.authorize(session, Operation::Describe, ResourceType::Topic, name);
    let topics = match requested {
        None => {
            let mut all = broker.meta.topics();
            all.sort_by(|a, b| a.name.cmp(&b.name));
            // A client sees only the topics it may describe, as if the others did not exist.
            all.iter()
                .filter(|t| {
                    broker.is_allowed(session, Operation::Describe, ResourceType::Topic, &t.name)
                })
                .map(|t| describe(broker, t))
                .collect()
        }
        Some(requested) => {
            let mut out = Vec::with_capacity(requested.len());
            for topic in requested {
                // From v10 a topic may be named by id (its name then null); a non-nil id decides.
                let entry = match topic.name {
                    _ if !topic.topic_id.is_nil() => match broker.topic_by_id(topic.topic_id) {
                        Some(meta) if describable(&meta.name) => describe(broker, &meta),
                        Some(_) => error_topic(
                            None,
                            topic.topic_id,
                            ResponseError::TopicAuthorizationFailed,
                        ),
                        None => error_topic(None, topic.topic_id, ResponseError::UnknownTopicId),
                    },
                    Some(name) if !describable(name.0.as_str()) => error_topic(
                        Some(name.0.as_str()),
                        uuid::Uuid::nil(),
                        ResponseError::TopicAuthorizationFailed,
                    ),
                    Some(name) => {
                        // Asked only for a topic that does not exist, so that describing an existing
                        // one never logs a refused CREATE.
                        let may_create = || {
                            allow_auto_create
                                && super::admin::may_create(broker, session, name.0.as_str())
                        };
                        by_name(broker, name.0.as_str(), may_create).await
                    }
                    None => error_topic(None, topic.topic_id, ResponseError::InvalidRequest),
                };
                out.push(entry);
            }
            out
        }
    };
    let (host, port) = (
        &session.listener.advertised_host,
        &session.listener.advertised_port,
    );
    let response = MetadataResponse::default()
        .with_throttle_time_ms(0)
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(BrokerId(broker.config.node_id))
            .with_host(StrBytes::from_string(host.clone()))
            .with_port(i32::from(*port))])
        .with_cluster_id(Some(StrBytes::from_string(broker.cluster_id.clone())))
        .with_controller_id(BrokerId(broker.config.node_id))
        .with_topics(topics);
    let mut response = response;
    if topic_operations {
        for topic in response.topics.iter_mut().filter(|t| t.error_code == 0) {
            if let Some(name) = &topic.name {
                topic.topic_authorized_operations = TOPIC_OPERATIONS
                    .into_iter()
                    .filter(|op| broker.is_allowed(session, *op, ResourceType::Topic, name))
                    .fold(0, |bits, op| bits | (1 << op.code()));
            }
        }
    }
    if cluster_operations {
        response.cluster_authorized_operations =
            super::describe_cluster::cluster_operations(broker, session);
    }
    for topic in &response.topics {
        count_error(broker, &request, topic.error_code);
    }
    respond(&request, &response)
}

/// The operations that apply to a topic, as Kafka reports them in `topic_authorized_operations`.
const TOPIC_OPERATIONS: [Operation; 8] = [
    Operation::Read,
    Operation::Write,
    Operation::Create,
    Operation::Delete,
    Operation::Alter,
    Operation::Describe,
    Operation::DescribeConfigs,
    Operation::AlterConfigs,
];

async fn by_name(
    broker: &Broker,
    name: &str,
    allow_auto_create: impl FnOnce() -> bool,
) -> MetadataResponseTopic {
    if let Some(meta) = broker.meta.topic(name) {
        return describe(broker, &meta);
    }
    if let Err(e) = nerve_storage::validate_topic_name(name) {
        return error_topic(Some(name), uuid::Uuid::nil(), storage_error_code(&e));
    }
    if !(broker.config.auto_create_topics_enable && allow_auto_create()) {
        return error_topic(
            Some(name),
            uuid::Uuid::nil(),
            ResponseError::UnknownTopicOrPartition,
        );
    }
    match broker
        .create_topic(name, broker.config.num_partitions, BTreeMap::new(), false)
        .await
    {
        Ok(meta) => describe(broker, &meta),
        // Another request created it meanwhile.
        Err(StorageError::TopicAlreadyExists(_)) => match broker.meta.topic(name) {
            Some(meta) => describe(broker, &meta),
            None => error_topic(
                Some(name),
                uuid::Uuid::nil(),
                ResponseError::LeaderNotAvailable,
            ),
        },
        Err(e) => {
            tracing::warn!(topic = name, error = %e, "auto-creating a topic failed");
            error_topic(Some(name), uuid::Uuid::nil(), storage_error_code(&e))
        }
    }
}

/// A topic as Metadata describes it. Every partition's leader epoch is 0, the epoch stored in every batch and
/// answered by OffsetForLeaderEpoch: a single node never changes leaders, so the epoch never moves. A known
/// epoch is what Kafka always reports; with it clients validate a position (a committed offset, or after a
/// reconnect) against the log end and detect a log that lost its tail (an unclean stop with `fsync=never`)
/// instead of only finding out through `OFFSET_OUT_OF_RANGE`.
fn describe(broker: &Broker, meta: &TopicMeta) -> MetadataResponseTopic {
    let node = BrokerId(broker.config.node_id);
    let partitions = (0..meta.partitions)
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(node)
                .with_leader_epoch(super::LEADER_EPOCH)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&meta.name)))
        .with_topic_id(meta.id)
        .with_is_internal(matches!(
            meta.name.as_str(),
            "__consumer_offsets" | "__transaction_state"
        ))
        .with_partitions(partitions)
}

fn error_topic(name: Option<&str>, id: uuid::Uuid, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(error.code())
        .with_name(name.map(topic_name))
        .with_topic_id(id)
}
