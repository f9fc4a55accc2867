//! CreateTopics, DeleteTopics and CreatePartitions.
//!
//! CreateTopics checks everything before creating anything: the name, the partition count (`-1` means
//! `num.partitions`), the replication factor (one node: `-1` or `1`), manual assignments (only to this
//! node) and the configs (Kafka names, validated by the storage's `TopicConfig`). `validate_only` stops
//! there. Every creation gets a new topic id, so a deleted and re-created topic is a different topic.
//!
//! CreatePartitions only grows a topic (`INVALID_PARTITIONS` otherwise, as Kafka); the new partitions run with
//! the topic's config. Every topic of the request gets a result, `validate_only` included.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{
    CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse,
};
use kafka_protocol::protocol::StrBytes;
use nerve_storage::{StorageError, TOPIC_CONFIGS};
use nerve_wire::frame::RequestFrame;

use super::{count_error, decode, message, respond, topic_name};
use crate::broker::{Broker, PartitionsError};
use crate::error::{storage_error_code, RequestError};
use crate::session::Session;
use nerve_auth::{Operation, ResourceType};

/// Kafka's `ConfigSource` values as CreateTopics v5+ reports them.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

pub(crate) async fn create_topics(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: CreateTopicsRequest = decode(&request)?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for topic in &body.topics {
        *seen.entry(topic.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(body.topics.len());
    for topic in body.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default()
            .with_name(topic.name.clone())
            .with_error_message(None);
        let result = if seen.get(&name).copied().unwrap_or(0) > 1 {
            // Kafka refuses every copy of a name given twice in one request.
            fail(
                result,
                ResponseError::InvalidRequest,
                "the topic is named more than once in the request",
            )
        } else if !may_create(broker, session, &name) {
            let error = ResponseError::TopicAuthorizationFailed;
            fail(result, error, error.to_string())
        } else if crate::group::is_internal_topic(&name) {
            // The broker creates its internal topics itself (at start); a client may not.
            let error = if broker.meta.topic(&name).is_some() {
                ResponseError::TopicAlreadyExists
            } else {
                ResponseError::InvalidRequest
            };
            fail(
                result,
                error,
                format!("creation of internal topic {name} is prohibited"),
            )
        } else {
            create_one(broker, topic, body.validate_only, result).await
        };
        results.push(result);
    }
    let response = CreateTopicsResponse::default()
        .with_throttle_time_ms(0)
        .with_topics(results);
    for topic in &response.topics {
        count_error(broker, &request, topic.error_code);
    }
    respond(&request, &response)
}

async fn create_one(
    broker: &Broker,
    topic: CreatableTopic,
    validate_only: bool,
    result: CreatableTopicResult,
) -> CreatableTopicResult {
    let name = topic.name.0.to_string();
    let partitions = if !topic.assignments.is_empty() {
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return fail(
                result,
                ResponseError::InvalidRequest,
                "give either assignments or num_partitions and replication_factor",
            );
        }
        let node = broker.config.node_id;
        let mut indexes: Vec<i32> = topic
            .assignments
            .iter()
            .map(|a| a.partition_index)
            .collect();
        indexes.sort_unstable();
        let contiguous = indexes
            .iter()
            .enumerate()
            .all(|(i, &p)| i32::try_from(i) == Ok(p));
        let on_this_node = topic
            .assignments
            .iter()
            .all(|a| a.broker_ids.len() == 1 && *a.broker_ids[0] == node);
        if !contiguous || !on_this_node {
            return fail(
                result,
                ResponseError::InvalidReplicaAssignment,
                format!("partitions must be numbered from 0 and assigned to node {node} alone"),
            );
        }
        i32::try_from(indexes.len()).unwrap_or(i32::MAX)
    } else {
        if !matches!(topic.replication_factor, -1 | 1) {
            return fail(
                result,
                ResponseError::InvalidReplicationFactor,
                format!(
                    "replication factor {} is larger than the 1 available broker",
                    topic.replication_factor
                ),
            );
        }
        match topic.num_partitions {
            -1 => broker.config.num_partitions,
            n if n >= 1 => n,
            n => {
                return fail(
                    result,
                    ResponseError::InvalidPartitions,
                    format!("number of partitions must be at least 1, not {n}"),
                )
            }
        }
    };
    let mut configs = BTreeMap::new();
    for config in topic.configs {
        // A null value leaves the default in place, as with Kafka.
        if let Some(value) = config.value {
            configs.insert(config.name.to_string(), value.to_string());
        }
    }
    match broker
        .create_topic(&name, partitions, configs.clone(), validate_only)
        .await
    {
        Ok(meta) => result
            .with_topic_id(meta.id)
            .with_num_partitions(partitions)
            .with_replication_factor(1)
            .with_configs(Some(effective_configs(broker, &configs))),
        Err(e) => {
            let code = storage_error_code(&e);
            if code == ResponseError::KafkaStorageError {
                tracing::error!(topic = %name, error = %e, "creating a topic failed");
            }
            fail(result, code, e)
        }
    }
}

fn fail(
    result: CreatableTopicResult,
    error: ResponseError,
    why: impl std::fmt::Display,
) -> CreatableTopicResult {
    result
        .with_error_code(error.code())
        .with_error_message(message(why))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_configs(None)
}

/// Every topic config with its value and where the value comes from.
fn effective_configs(
    broker: &Broker,
    overrides: &BTreeMap<String, String>,
) -> Vec<CreatableTopicConfigs> {
    TOPIC_CONFIGS
        .iter()
        .map(|def| {
            let (value, source) = if let Some(v) = overrides.get(def.name) {
                (v.clone(), SOURCE_TOPIC)
            } else if let Some(v) = broker.config.topic_defaults.get(def.name) {
                (v.clone(), SOURCE_STATIC_BROKER)
            } else {
                (def.default.to_string(), SOURCE_DEFAULT)
            };
            CreatableTopicConfigs::default()
                .with_name(StrBytes::from_static_str(def.name))
                .with_value(Some(StrBytes::from_string(value)))
                .with_read_only(false)
                .with_config_source(source)
                .with_is_sensitive(false)
        })
        .collect()
}

pub(crate) async fn delete_topics(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: DeleteTopicsRequest = decode(&request)?;
    // v6 names topics by name or id; older versions by name only.
    let targets: Vec<(Option<String>, uuid::Uuid)> = if request.api_version() >= 6 {
        body.topics
            .into_iter()
            .map(|t| (t.name.map(|n| n.0.to_string()), t.topic_id))
            .collect()
    } else {
        body.topic_names
            .into_iter()
            .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil()))
            .collect()
    };
    let mut results = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let result = DeletableTopicResult::default().with_error_message(None);
        // A non-nil id decides, as in Metadata; the name is null then.
        let name = match name {
            Some(name) if id.is_nil() => name,
            _ => match broker.topic_by_id(id) {
                Some(meta) => meta.name,
                None => {
                    results.push(
                        result
                            .with_topic_id(id)
                            .with_error_code(ResponseError::UnknownTopicId.code()),
                    );
                    continue;
                }
            },
        };
        let result = result.with_name(Some(topic_name(&name)));
        if !broker.authorize(session, Operation::Delete, ResourceType::Topic, &name) {
            results.push(
                result
                    .with_topic_id(id)
                    .with_error_code(ResponseError::TopicAuthorizationFailed.code()),
            );
            continue;
        }
        if crate::group::is_internal_topic(&name) {
            // Kafka refuses to delete an internal topic: the coordinators' state lives in it.
            results.push(
                result
                    .with_topic_id(id)
                    .with_error_code(ResponseError::InvalidRequest.code())
                    .with_error_message(message(format!(
                        "internal topic {name} cannot be deleted"
                    ))),
            );
            continue;
        }
        let result = match broker.delete_topic(&name).await {
            Ok(meta) => result.with_topic_id(meta.id),
            Err(e) => {
                let code = match e {
                    StorageError::InvalidTopic { .. } => ResponseError::UnknownTopicOrPartition,
                    ref other => storage_error_code(other),
                };
                result
                    .with_topic_id(id)
                    .with_error_code(code.code())
                    .with_error_message(message(&e))
            }
        };
        results.push(result);
    }
    let response = DeleteTopicsResponse::default()
        .with_throttle_time_ms(0)
        .with_responses(results);
    for topic in &response.responses {
        count_error(broker, &request, topic.error_code);
    }
    respond(&request, &response)
}

pub(crate) async fn create_partitions(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: CreatePartitionsRequest = decode(&request)?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for topic in &body.topics {
        *seen.entry(topic.name.0.to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(body.topics.len());
    for topic in body.topics {
        let result = CreatePartitionsTopicResult::default()
            .with_name(topic.name.clone())
            .with_error_message(None);
        let outcome = if seen.get(topic.name.0.as_str()).copied().unwrap_or(0) > 1 {
            // As CreateTopics: every copy of a name given twice is refused.
            Err((
                ResponseError::InvalidRequest,
                "the topic is named more than once in the request".to_string(),
            ))
        } else if !broker.authorize(
            session,
            Operation::Alter,
            ResourceType::Topic,
            &topic.name.0,
        ) {
            let error = ResponseError::TopicAuthorizationFailed;
            Err((error, error.to_string()))
        } else {
            grow(broker, topic, body.validate_only).await
        };
        results.push(match outcome {
            Ok(()) => result,
            Err((error, why)) => result
                .with_error_code(error.code())
                .with_error_message(message(why)),
        });
    }
    let response = CreatePartitionsResponse::default()
        .with_throttle_time_ms(0)
        .with_results(results);
    for topic in &response.results {
        count_error(broker, &request, topic.error_code);
    }
    respond(&request, &response)
}

async fn grow(
    broker: &Broker,
    topic: CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), (ResponseError, String)> {
    let name = topic.name.0.as_str();
    // Null asks for the broker's placement; so does an empty list (which some clients send for "none").
    if let Some(assignments) = topic.assignments.as_ref().filter(|a| !a.is_empty()) {
        // One assignment per new partition, each to this node alone: the only placement one node has. The
        // count of new partitions is checked against the topic under its lock, below.
        let node = broker.config.node_id;
        if !assignments
            .iter()
            .all(|a| a.broker_ids.len() == 1 && *a.broker_ids[0] == node)
        {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                format!("new partitions can only be assigned to node {node} alone"),
            ));
        }
        let current = broker.meta.topic(name).map_or(0, |t| t.partitions);
        let added = i64::from(topic.count) - i64::from(current);
        if added > 0 && usize::try_from(added).ok() != Some(assignments.len()) {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "{} assignments given for {added} new partitions",
                    assignments.len()
                ),
            ));
        }
    }
    match broker
        .create_partitions(name, topic.count, validate_only)
        .await
    {
        Ok(_) => Ok(()),
        Err(e @ PartitionsError::NotLarger { .. }) => {
            Err((ResponseError::InvalidPartitions, e.to_string()))
        }
        Err(e @ PartitionsError::UnknownTopic(_)) => {
            Err((ResponseError::UnknownTopicOrPartition, e.to_string()))
        }
        Err(PartitionsError::Storage(e)) => {
            let code = storage_error_code(&e);
            if code == ResponseError::KafkaStorageError {
                tracing::error!(topic = %name, error = %e, "adding partitions failed");
            }
            Err((code, e.to_string()))
        }
    }
}

/// Kafka: CREATE on the cluster, or on the topic itself (a prefixed ACL lets a team create its topics).
pub(crate) fn may_create(broker: &Broker, session: &Session, topic: &str) -> bool {
    broker.is_allowed(
        session,
        Operation::Create,
        ResourceType::Cluster,
        nerve_auth::acl::CLUSTER_NAME,
    ) || broker.authorize(session, Operation::Create, ResourceType::Topic, topic)
}
