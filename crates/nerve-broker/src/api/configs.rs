//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs.
//!
//! Topics: DescribeConfigs lists **every** config of `TOPIC_CONFIGS` with its value and where it comes from
//! (the topic's override, the broker's `topic_defaults`, or the built-in default), because tools do
//! read-modify-write with the answer. AlterConfigs replaces the whole set of overrides (what is not named
//! returns to its default), as Kafka's legacy API does; IncrementalAlterConfigs sets, deletes, appends to or
//! subtracts from single configs. Either way the new set is validated as a whole, stored with the metadata
//! and applied to the live partitions; `validate_only` stops after the checks.
//!
//! The broker (resource name: its node id) is described with its settings under Kafka's names, all read
//! only: they come from `nerve.toml`, `NERVE_*` variables and flags and change on restart, so altering them
//! is refused with `INVALID_REQUEST`, as Kafka refuses configs it cannot update dynamically.

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use nerve_storage::config::ConfigDef;
use nerve_storage::{StorageError, TOPIC_CONFIGS};
use nerve_wire::frame::RequestFrame;

use super::{count_error, decode, message, respond};
use crate::broker::Broker;
use crate::config::BrokerConfig;
use crate::error::{storage_error_code, RequestError};
use crate::session::Session;
use nerve_auth::{Operation, ResourceType};

/// Kafka's `ConfigResource.Type` codes.
const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;

/// Kafka's `ConfigSource` codes.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;

/// Kafka's `ConfigType` codes (DescribeConfigs v3+).
const TYPE_BOOLEAN: i8 = 1;
const TYPE_STRING: i8 = 2;
const TYPE_INT: i8 = 3;
const TYPE_LONG: i8 = 5;
const TYPE_DOUBLE: i8 = 6;
const TYPE_LIST: i8 = 7;

/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;

/// A refusal for one resource: the Kafka error and a message for the user.
type Refusal = (ResponseError, String);

/// What Kafka says about a topic config beyond its name: its type, and the broker setting that supplies its
/// default (the synonym DescribeConfigs lists). Nerve's own `fsync` settings get `log.`-prefixed names in the
/// same manner. `None` for a name Nerve does not know.
fn topic_config_facts(name: &str) -> Option<(i8, &'static str)> {
    Some(match name {
        "cleanup.policy" => (TYPE_LIST, "log.cleanup.policy"),
        "retention.ms" => (TYPE_LONG, "log.retention.ms"),
        "retention.bytes" => (TYPE_LONG, "log.retention.bytes"),
        "segment.bytes" => (TYPE_INT, "log.segment.bytes"),
        "segment.ms" => (TYPE_LONG, "log.roll.ms"),
        "segment.index.bytes" => (TYPE_INT, "log.index.size.max.bytes"),
        "index.interval.bytes" => (TYPE_INT, "log.index.interval.bytes"),
        "delete.retention.ms" => (TYPE_LONG, "log.cleaner.delete.retention.ms"),
        "min.cleanable.dirty.ratio" => (TYPE_DOUBLE, "log.cleaner.min.cleanable.ratio"),
        "min.compaction.lag.ms" => (TYPE_LONG, "log.cleaner.min.compaction.lag.ms"),
        "max.message.bytes" => (TYPE_INT, "message.max.bytes"),
        "message.timestamp.type" => (TYPE_STRING, "log.message.timestamp.type"),
        "compression.type" => (TYPE_STRING, "compression.type"),
        "fsync" => (TYPE_STRING, "log.fsync"),
        "fsync.interval.ms" => (TYPE_LONG, "log.fsync.interval.ms"),
        // Confluent Server has no broker-wide default for these; the synonym names the topic config.
        "confluent.key.schema.validation" => (TYPE_BOOLEAN, "confluent.key.schema.validation"),
        "confluent.value.schema.validation" => (TYPE_BOOLEAN, "confluent.value.schema.validation"),
        _ => return None,
    })
}

fn topic_config_def(name: &str) -> Option<&'static ConfigDef> {
    TOPIC_CONFIGS.iter().find(|def| def.name == name)
}

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

// ---------------------------------------------------------------------------------------------------------
// DescribeConfigs

pub(crate) fn describe(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: DescribeConfigsRequest = decode(&request)?;
    let options = DescribeOptions {
        synonyms: body.include_synonyms,
        documentation: body.include_documentation,
    };
    let results = body
        .resources
        .into_iter()
        .map(|resource| describe_one(broker, session, resource, options))
        .collect();
    let response = DescribeConfigsResponse::default()
        .with_throttle_time_ms(0)
        .with_results(results);
    for result in &response.results {
        count_error(broker, &request, result.error_code);
    }
    respond(&request, &response)
}

#[derive(Clone, Copy)]
struct DescribeOptions {
    synonyms: bool,
    documentation: bool,
}

fn describe_one(
    broker: &Broker,
    session: &Session,
    resource: DescribeConfigsResource,
    options: DescribeOptions,
) -> DescribeConfigsResult {
    let result = DescribeConfigsResult::default()
        .with_resource_type(resource.resource_type)
        .with_resource_name(resource.resource_name.clone())
        .with_error_message(None);
    let name = resource.resource_name.as_str();
    let authorized = authorize(
        broker,
        session,
        resource.resource_type,
        name,
        Operation::DescribeConfigs,
    );
    let entries = authorized.and_then(|()| match resource.resource_type {
        RESOURCE_TOPIC => topic_entries(broker, name, options),
        RESOURCE_BROKER => broker_entries(broker, name, options),
        other => Err(unsupported_resource(other)),
    });
    match entries {
        Ok(entries) => {
            // `configuration_keys` null or empty means all (some clients send an empty list for "all", and
            // Kafka reads it so); otherwise only the named ones, unknown names left out.
            let wanted = resource.configuration_keys.filter(|keys| !keys.is_empty());
            let entries = entries
                .into_iter()
                .filter(|e| wanted.as_ref().is_none_or(|keys| keys.contains(&e.name)))
                .collect();
            result.with_configs(entries)
        }
        Err((error, why)) => result
            .with_error_code(error.code())
            .with_error_message(message(why)),
    }
}

fn unsupported_resource(resource_type: i8) -> Refusal {
    (
        ResponseError::InvalidRequest,
        format!("resource type {resource_type} is not supported; Nerve has topic (2) and broker (4) configs"),
    )
}

/// One config of a topic.
struct TopicEntry {
    def: &'static ConfigDef,
    override_value: Option<String>,
    broker_default: Option<String>,
}

fn topic_entries(
    broker: &Broker,
    topic: &str,
    options: DescribeOptions,
) -> Result<Vec<DescribeConfigsResourceResult>, Refusal> {
    let meta = existing_topic(broker, topic)?;
    Ok(TOPIC_CONFIGS
        .iter()
        .map(|def| {
            describe_topic_entry(
                TopicEntry {
                    def,
                    override_value: meta.configs.get(def.name).cloned(),
                    broker_default: broker.config.topic_defaults.get(def.name).cloned(),
                },
                options,
            )
        })
        .collect())
}

fn existing_topic(broker: &Broker, topic: &str) -> Result<nerve_storage::TopicMeta, Refusal> {
    if let Err(e) = nerve_storage::validate_topic_name(topic) {
        return Err((storage_error_code(&e), e.to_string()));
    }
    broker.meta.topic(topic).ok_or_else(|| {
        (
            ResponseError::UnknownTopicOrPartition,
            format!("unknown topic {topic}"),
        )
    })
}

fn describe_topic_entry(
    entry: TopicEntry,
    options: DescribeOptions,
) -> DescribeConfigsResourceResult {
    let def = entry.def;
    let (config_type, broker_name) =
        topic_config_facts(def.name).unwrap_or((TYPE_STRING, def.name));
    // Synonyms in order of precedence, the one in force first, as Kafka lists them.
    let mut synonyms = Vec::new();
    if let Some(v) = &entry.override_value {
        synonyms.push((def.name, v.clone(), SOURCE_TOPIC));
    }
    if let Some(v) = &entry.broker_default {
        synonyms.push((broker_name, v.clone(), SOURCE_STATIC_BROKER));
    }
    synonyms.push((broker_name, def.default.to_string(), SOURCE_DEFAULT));
    let (_, value, source) = synonyms[0].clone();
    DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_static_str(def.name))
        .with_value(Some(text(value)))
        // Every topic config can be changed with AlterConfigs.
        .with_read_only(false)
        .with_config_source(source)
        .with_is_sensitive(false)
        .with_synonyms(if options.synonyms {
            synonyms
                .into_iter()
                .map(|(name, value, source)| {
                    DescribeConfigsSynonym::default()
                        .with_name(StrBytes::from_static_str(name))
                        .with_value(Some(text(value)))
                        .with_source(source)
                })
                .collect()
        } else {
            Vec::new()
        })
        .with_config_type(config_type)
        .with_documentation(
            options
                .documentation
                .then(|| StrBytes::from_static_str(def.doc)),
        )
}

/// One read-only broker setting under its Kafka name.
struct BrokerEntry {
    name: &'static str,
    value: String,
    is_default: bool,
    config_type: i8,
    doc: &'static str,
}

/// The broker's settings under Kafka's names, then the broker-wide topic defaults under their `log.*` names.
fn broker_settings(config: &BrokerConfig) -> Vec<BrokerEntry> {
    let default = BrokerConfig::default();
    let entry = |name, value: String, default_value: String, config_type, doc| BrokerEntry {
        name,
        is_default: value == default_value,
        value,
        config_type,
        doc,
    };
    let mut entries = vec![
        entry(
            "node.id",
            config.node_id.to_string(),
            default.node_id.to_string(),
            TYPE_INT,
            "This broker's id; a single node is also the controller.",
        ),
        entry(
            "broker.id",
            config.node_id.to_string(),
            default.node_id.to_string(),
            TYPE_INT,
            "The same as node.id.",
        ),
        entry(
            "listeners",
            format!("PLAINTEXT://{}", config.listen),
            format!("PLAINTEXT://{}", default.listen),
            TYPE_STRING,
            "The address the Kafka listener binds.",
        ),
        entry(
            "advertised.listeners",
            format!("PLAINTEXT://{}", config.advertised_listener),
            format!("PLAINTEXT://{}", default.advertised_listener),
            TYPE_STRING,
            "The address clients are told to connect to.",
        ),
        entry(
            "auto.create.topics.enable",
            config.auto_create_topics_enable.to_string(),
            default.auto_create_topics_enable.to_string(),
            TYPE_BOOLEAN,
            "Metadata requests that allow it create unknown topics.",
        ),
        entry(
            "num.partitions",
            config.num_partitions.to_string(),
            default.num_partitions.to_string(),
            TYPE_INT,
            "Partitions of auto-created topics and of CreateTopics with num_partitions -1.",
        ),
        entry(
            "socket.request.max.bytes",
            config.socket_request_max_bytes.to_string(),
            default.socket_request_max_bytes.to_string(),
            TYPE_INT,
            "The largest request accepted; a larger one closes the connection.",
        ),
        entry(
            "transaction.max.timeout.ms",
            config.transaction_max_timeout_ms.to_string(),
            default.transaction_max_timeout_ms.to_string(),
            TYPE_INT,
            "The largest transaction.timeout.ms InitProducerId accepts.",
        ),
    ];
    for def in TOPIC_CONFIGS {
        let Some((config_type, broker_name)) = topic_config_facts(def.name) else {
            continue;
        };
        let set = config.topic_defaults.get(def.name);
        entries.push(BrokerEntry {
            name: broker_name,
            value: set.cloned().unwrap_or_else(|| def.default.to_string()),
            is_default: set.is_none(),
            config_type,
            doc: def.doc,
        });
    }
    entries
}

fn broker_entries(
    broker: &Broker,
    resource_name: &str,
    options: DescribeOptions,
) -> Result<Vec<DescribeConfigsResourceResult>, Refusal> {
    if resource_name.is_empty() {
        // The cluster-wide dynamic defaults: Nerve has none.
        return Ok(Vec::new());
    }
    check_broker_name(broker, resource_name)?;
    Ok(broker_settings(&broker.config)
        .into_iter()
        .map(|e| {
            let source = if e.is_default {
                SOURCE_DEFAULT
            } else {
                SOURCE_STATIC_BROKER
            };
            DescribeConfigsResourceResult::default()
                .with_name(StrBytes::from_static_str(e.name))
                .with_value(Some(text(e.value.clone())))
                // Settings come from the file, the environment and flags: changing them takes a restart.
                .with_read_only(true)
                .with_config_source(source)
                .with_is_sensitive(false)
                .with_synonyms(if options.synonyms {
                    vec![DescribeConfigsSynonym::default()
                        .with_name(StrBytes::from_static_str(e.name))
                        .with_value(Some(text(e.value)))
                        .with_source(source)]
                } else {
                    Vec::new()
                })
                .with_config_type(e.config_type)
                .with_documentation(
                    options
                        .documentation
                        .then(|| StrBytes::from_static_str(e.doc)),
                )
        })
        .collect())
}

/// A broker resource names this node by its id.
fn check_broker_name(broker: &Broker, resource_name: &str) -> Result<(), Refusal> {
    let node = broker.config.node_id;
    match resource_name.parse::<i32>() {
        Ok(id) if id == node => Ok(()),
        _ => Err((
            ResponseError::InvalidRequest,
            format!("unexpected broker id {resource_name:?}: this is node {node}"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------------------
// AlterConfigs and IncrementalAlterConfigs

/// The resources named more than once in a request: each copy is refused, as Kafka does.
fn duplicates<'a>(resources: impl Iterator<Item = (i8, &'a str)>) -> HashMap<(i8, String), usize> {
    let mut seen = HashMap::new();
    for (kind, name) in resources {
        *seen.entry((kind, name.to_string())).or_default() += 1;
    }
    seen
}

fn is_duplicate(seen: &HashMap<(i8, String), usize>, kind: i8, name: &str) -> bool {
    seen.get(&(kind, name.to_string())).copied().unwrap_or(0) > 1
}

const DUPLICATE_RESOURCE: &str = "the resource is named more than once in the request";

pub(crate) async fn alter(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: AlterConfigsRequest = decode(&request)?;
    let seen = duplicates(
        body.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let mut responses = Vec::with_capacity(body.resources.len());
    for resource in body.resources {
        let name = resource.resource_name.to_string();
        let outcome = if is_duplicate(&seen, resource.resource_type, &name) {
            Err((
                ResponseError::InvalidRequest,
                DUPLICATE_RESOURCE.to_string(),
            ))
        } else if let Err(refused) = authorize(
            broker,
            session,
            resource.resource_type,
            &name,
            Operation::AlterConfigs,
        ) {
            Err(refused)
        } else {
            match resource.resource_type {
                RESOURCE_TOPIC => {
                    // The request is the whole new set; a null value leaves that config at its default.
                    let overrides: BTreeMap<String, String> = resource
                        .configs
                        .into_iter()
                        .filter_map(|c| c.value.map(|v| (c.name.to_string(), v.to_string())))
                        .collect();
                    change_topic(broker, &name, body.validate_only, |_| Ok(overrides)).await
                }
                RESOURCE_BROKER => Err(broker_is_read_only(broker, &name)),
                other => Err(unsupported_resource(other)),
            }
        };
        let response = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name)
            .with_error_message(None);
        responses.push(match outcome {
            Ok(()) => response,
            Err((error, why)) => response
                .with_error_code(error.code())
                .with_error_message(message(why)),
        });
    }
    let response = AlterConfigsResponse::default()
        .with_throttle_time_ms(0)
        .with_responses(responses);
    for resource in &response.responses {
        count_error(broker, &request, resource.error_code);
    }
    respond(&request, &response)
}

pub(crate) async fn alter_incremental(
    broker: &Broker,
    request: RequestFrame,
    session: &Session,
) -> Result<Bytes, RequestError> {
    let body: IncrementalAlterConfigsRequest = decode(&request)?;
    let seen = duplicates(
        body.resources
            .iter()
            .map(|r| (r.resource_type, r.resource_name.as_str())),
    );
    let mut responses = Vec::with_capacity(body.resources.len());
    for resource in body.resources {
        let name = resource.resource_name.to_string();
        let outcome = if is_duplicate(&seen, resource.resource_type, &name) {
            Err((
                ResponseError::InvalidRequest,
                DUPLICATE_RESOURCE.to_string(),
            ))
        } else if let Err(refused) = authorize(
            broker,
            session,
            resource.resource_type,
            &name,
            Operation::AlterConfigs,
        ) {
            Err(refused)
        } else {
            match resource.resource_type {
                RESOURCE_TOPIC => {
                    let ops = resource
                        .configs
                        .into_iter()
                        .map(|c| Op {
                            name: c.name.to_string(),
                            operation: c.config_operation,
                            value: c.value.map(|v| v.to_string()),
                        })
                        .collect();
                    let defaults = &broker.config.topic_defaults;
                    change_topic(broker, &name, body.validate_only, |current| {
                        apply_ops(current, ops, defaults).map_err(ChangeError::Refused)
                    })
                    .await
                }
                RESOURCE_BROKER => Err(broker_is_read_only(broker, &name)),
                other => Err(unsupported_resource(other)),
            }
        };
        let response = incremental_alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name)
            .with_error_message(None);
        responses.push(match outcome {
            Ok(()) => response,
            Err((error, why)) => response
                .with_error_code(error.code())
                .with_error_message(message(why)),
        });
    }
    let response = IncrementalAlterConfigsResponse::default()
        .with_throttle_time_ms(0)
        .with_responses(responses);
    for resource in &response.responses {
        count_error(broker, &request, resource.error_code);
    }
    respond(&request, &response)
}

fn broker_is_read_only(broker: &Broker, resource_name: &str) -> Refusal {
    // An empty name is the cluster-wide default, which is no more changeable than this node's own.
    if !resource_name.is_empty() {
        if let Err(refusal) = check_broker_name(broker, resource_name) {
            return refusal;
        }
    }
    (
        ResponseError::InvalidRequest,
        "broker configs cannot be changed while Nerve runs: set them in nerve.toml, NERVE_* variables or \
         flags and restart"
            .to_string(),
    )
}

/// Why a topic's configs were not changed.
enum ChangeError {
    Refused(Refusal),
    Storage(StorageError),
}

impl From<StorageError> for ChangeError {
    fn from(e: StorageError) -> Self {
        ChangeError::Storage(e)
    }
}

/// Computes, checks, stores and applies a topic's new overrides; the answer for the resource.
async fn change_topic(
    broker: &Broker,
    topic: &str,
    validate_only: bool,
    change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ChangeError>,
) -> Result<(), Refusal> {
    if let Err(e) = nerve_storage::validate_topic_name(topic) {
        return Err((storage_error_code(&e), e.to_string()));
    }
    match broker
        .change_topic_configs(topic, validate_only, change)
        .await
    {
        Ok(()) => Ok(()),
        Err(ChangeError::Refused(refusal)) => Err(refusal),
        Err(ChangeError::Storage(StorageError::UnknownTopicOrPartition(_))) => Err((
            ResponseError::UnknownTopicOrPartition,
            format!("unknown topic {topic}"),
        )),
        Err(ChangeError::Storage(e)) => {
            let code = storage_error_code(&e);
            if code == ResponseError::KafkaStorageError {
                tracing::error!(topic, error = %e, "changing topic configs failed");
            }
            Err((code, e.to_string()))
        }
    }
}

/// One change of IncrementalAlterConfigs.
struct Op {
    name: String,
    operation: i8,
    value: Option<String>,
}

/// The overrides after incremental changes to `current`; `topic_defaults` are the broker's.
fn apply_ops(
    current: &BTreeMap<String, String>,
    ops: Vec<Op>,
    topic_defaults: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, Refusal> {
    let mut names = std::collections::HashSet::new();
    if let Some(op) = ops.iter().find(|op| !names.insert(op.name.as_str())) {
        return Err((
            ResponseError::InvalidRequest,
            format!(
                "config {} is changed more than once in the request",
                op.name
            ),
        ));
    }
    let mut overrides = current.clone();
    for op in ops {
        let Some(def) = topic_config_def(&op.name) else {
            return Err((
                ResponseError::InvalidConfig,
                format!("unknown topic config {}", op.name),
            ));
        };
        let value = match (op.operation, op.value) {
            (OP_DELETE, _) => {
                overrides.remove(def.name);
                continue;
            }
            (OP_SET | OP_APPEND | OP_SUBTRACT, Some(value)) => value,
            (OP_SET | OP_APPEND | OP_SUBTRACT, None) => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!(
                        "config {}: a null value is only allowed with DELETE",
                        def.name
                    ),
                ))
            }
            (other, _) => {
                return Err((
                    ResponseError::InvalidRequest,
                    format!("config {}: unknown operation {other}", def.name),
                ))
            }
        };
        let new_value = if op.operation == OP_SET {
            value
        } else {
            if topic_config_facts(def.name).map(|(t, _)| t) != Some(TYPE_LIST) {
                return Err((
                    ResponseError::InvalidConfig,
                    format!(
                        "config {}: APPEND and SUBTRACT apply only to list configs",
                        def.name
                    ),
                ));
            }
            // The list in force, whether set on the topic, by the broker or by default, is what changes.
            let in_force = overrides
                .get(def.name)
                .or_else(|| topic_defaults.get(def.name))
                .map_or(def.default, String::as_str);
            let mut items = list_items(in_force);
            for item in list_items(&value) {
                if op.operation == OP_APPEND {
                    if !items.contains(&item) {
                        items.push(item);
                    }
                } else {
                    items.retain(|i| *i != item);
                }
            }
            items.join(",")
        };
        overrides.insert(def.name.to_string(), new_value);
    }
    Ok(overrides)
}

fn list_items(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .map(str::to_string)
        .collect()
}

/// Kafka checks configs on a topic against the topic's ACLs and a broker's against the cluster's.
fn authorize(
    broker: &Broker,
    session: &Session,
    resource_type: i8,
    name: &str,
    operation: Operation,
) -> Result<(), (ResponseError, String)> {
    let (allowed, error) = match resource_type {
        RESOURCE_TOPIC => (
            broker.authorize(session, operation, ResourceType::Topic, name),
            ResponseError::TopicAuthorizationFailed,
        ),
        RESOURCE_BROKER => (
            broker.authorize_cluster(session, operation),
            ResponseError::ClusterAuthorizationFailed,
        ),
        // Refused later for its type.
        _ => (true, ResponseError::UnknownServerError),
    };
    if allowed {
        Ok(())
    } else {
        Err((error, error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_config_has_a_kafka_type_and_broker_synonym() {
        for def in TOPIC_CONFIGS {
            assert!(
                topic_config_facts(def.name).is_some(),
                "{} has no type or synonym",
                def.name
            );
        }
    }

    #[test]
    fn broker_settings_name_the_kafka_configs_tools_look_for() {
        let entries = broker_settings(&BrokerConfig::default());
        for name in [
            "auto.create.topics.enable",
            "num.partitions",
            "socket.request.max.bytes",
            "advertised.listeners",
            "log.retention.ms",
            "log.cleanup.policy",
        ] {
            let entry = entries.iter().find(|e| e.name == name);
            assert!(entry.is_some_and(|e| e.is_default), "{name}");
        }
    }

    fn op(name: &str, operation: i8, value: Option<&str>) -> Op {
        Op {
            name: name.to_string(),
            operation,
            value: value.map(str::to_string),
        }
    }

    #[test]
    fn append_and_subtract_change_the_list_in_force() {
        let none = BTreeMap::new();
        let broker_compacts =
            BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        // Nothing set: the built-in default `delete` is what APPEND extends.
        let out = apply_ops(
            &none,
            vec![op("cleanup.policy", OP_APPEND, Some("compact"))],
            &none,
        )
        .unwrap();
        assert_eq!(out["cleanup.policy"], "delete,compact");
        // A broker default is in force when the topic sets nothing.
        let out = apply_ops(
            &none,
            vec![op("cleanup.policy", OP_APPEND, Some("delete"))],
            &broker_compacts,
        )
        .unwrap();
        assert_eq!(out["cleanup.policy"], "compact,delete");
        let out = apply_ops(
            &out,
            vec![op("cleanup.policy", OP_SUBTRACT, Some("compact"))],
            &none,
        )
        .unwrap();
        assert_eq!(out["cleanup.policy"], "delete");
    }

    #[test]
    fn set_and_delete_touch_only_the_named_config() {
        let current = BTreeMap::from([
            ("retention.ms".to_string(), "1000".to_string()),
            ("segment.ms".to_string(), "2000".to_string()),
        ]);
        let out = apply_ops(
            &current,
            vec![
                op("retention.ms", OP_DELETE, None),
                op("max.message.bytes", OP_SET, Some("10")),
            ],
            &BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(
            out,
            BTreeMap::from([
                ("segment.ms".to_string(), "2000".to_string()),
                ("max.message.bytes".to_string(), "10".to_string()),
            ])
        );
    }

    #[test]
    fn list_items_ignore_blanks_and_spaces() {
        assert_eq!(list_items(" compact , delete,,"), vec!["compact", "delete"]);
        assert!(list_items("").is_empty());
    }
}
