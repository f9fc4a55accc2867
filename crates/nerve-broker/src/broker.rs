//! The state every request handler shares: configuration, the stores, and topic lifecycle.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use nerve_storage::{FsyncPolicy, LogStore, MetaStore, StorageError, TopicMeta, TopicPartition};
use tokio::sync::{watch, Mutex};

use crate::config::BrokerConfig;
use crate::group::{Coordinator, GroupSettings, OFFSETS_TOPIC};
use crate::listener::Listener;
use crate::session::Session;
use crate::validation::{RecordValidator, Validation, Validations};
use nerve_auth::{AclBinding, Authorizer, Operation, PatternType, Permission, ResourceType};

/// A single Kafka broker over a [`LogStore`] and a [`MetaStore`].
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) log: Arc<dyn LogStore>,
    pub(crate) meta: Arc<dyn MetaStore>,
    /// The listeners, resolved once from the config.
    pub(crate) listeners: Vec<Arc<Listener>>,
    /// Decides every request when `authorizer_enabled`; `None` allows everything.
    pub(crate) authorizer: Option<Authorizer>,
    /// Checks OAUTHBEARER tokens, when that mechanism is enabled.
    pub(crate) oauthbearer: Option<nerve_auth::oauthbearer::JwtValidator>,
    /// Serializes ACL changes, which rewrite the stored set.
    acl_changes: Mutex<()>,
    /// Open connections, for the connection limits.
    pub(crate) connection_counts: Arc<crate::connection::ConnectionCounts>,
    /// The cluster id, as stored with the metadata (see [`BrokerConfig::cluster_id`]).
    pub(crate) cluster_id: String,
    /// The group coordinator: groups, members, committed offsets.
    pub(crate) groups: Arc<Coordinator>,
    /// The broker's metrics, updated as requests are handled.
    pub(crate) metrics: crate::metrics::BrokerMetrics,
    /// Topics with broker-side schema validation on, and the validator.
    pub(crate) validations: Validations,
    /// Each topic's fsync policy, for the `fsync` label of a produce's durability time: the log store does
    /// not say which policy an append waited for, and parsing the topic's configs per produce would cost
    /// more than the append's bookkeeping.
    fsync_policies: parking_lot::RwLock<HashMap<String, FsyncPolicy>>,
    /// The policy of a topic without an override (from the broker's topic defaults).
    default_fsync: FsyncPolicy,
    /// Serializes topic creation and deletion, whose metadata and partition logs change in two steps.
    topic_changes: Mutex<()>,
    shutdown: watch::Receiver<bool>,
}

impl Broker {
    /// Builds the broker and brings the log store in line with the metadata: partitions a crash left
    /// uncreated (the metadata is written first) are created now.
    pub async fn new(
        config: BrokerConfig,
        log: Arc<dyn LogStore>,
        meta: Arc<dyn MetaStore>,
        shutdown: watch::Receiver<bool>,
    ) -> Result<Arc<Self>, crate::config::ConfigError> {
        config.validate()?;
        let listeners = config
            .resolved_listeners()?
            .into_iter()
            .map(Arc::new)
            .collect();
        let oauthbearer = config.oauthbearer_validator()?;
        let authorizer = if config.authorizer_enabled {
            let authorizer = Authorizer::new(
                config.super_user_principals()?,
                config.allow_everyone_if_no_acl_found,
            );
            authorizer.set_acls(
                meta.acls()
                    .into_iter()
                    .filter_map(acl_from_stored)
                    .collect(),
            );
            Some(authorizer)
        } else {
            None
        };
        let proposed = config.cluster_id.clone().unwrap_or_else(new_cluster_id);
        let cluster_id = meta
            .cluster_id(&proposed)
            .await
            .map_err(crate::config::ConfigError::ClusterIdStore)?;
        if let Some(configured) = &config.cluster_id {
            if *configured != cluster_id {
                return Err(crate::config::ConfigError::ClusterIdMismatch {
                    configured: configured.clone(),
                    stored: cluster_id,
                });
            }
        }
        let offsets_partitions = meta
            .topic(OFFSETS_TOPIC)
            .map_or(config.offsets_topic_num_partitions, |t| t.partitions);
        let settings = GroupSettings {
            min_session_timeout_ms: u64::from(config.group_min_session_timeout_ms),
            max_session_timeout_ms: u64::from(config.group_max_session_timeout_ms),
            initial_rebalance_delay_ms: u64::from(config.group_initial_rebalance_delay_ms),
            offset_metadata_max_bytes: config.offset_metadata_max_bytes,
        };
        let groups = Arc::new(Coordinator::new(settings, log.clone(), offsets_partitions));
        let default_fsync = config
            .topic_config(&BTreeMap::new())
            .map_or(FsyncPolicy::Always, |c| c.fsync);
        let broker = Broker {
            config,
            log,
            meta,
            groups,
            listeners,
            connection_counts: Default::default(),
            authorizer,
            oauthbearer,
            acl_changes: Mutex::new(()),
            cluster_id,
            validations: Validations::default(),
            fsync_policies: parking_lot::RwLock::default(),
            default_fsync,
            metrics: crate::metrics::BrokerMetrics::default(),
            topic_changes: Mutex::new(()),
            shutdown,
        };
        broker.create_missing_partitions().await;
        for topic in broker.meta.topics() {
            if let Ok(config) = broker.config.topic_config(&topic.configs) {
                broker.note_topic_config(&topic.name, &config);
            }
        }
        broker
            .load_offsets(offsets_partitions)
            .await
            .map_err(crate::config::ConfigError::OffsetsTopic)?;
        let broker = Arc::new(broker);
        tokio::spawn(expire_offsets_periodically(broker.clone()));
        Ok(broker)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// The listeners, as resolved from the config.
    pub fn listeners(&self) -> &[Arc<Listener>] {
        &self.listeners
    }

    /// Whether the session's principal may do `operation` on the resource; a refusal is counted and
    /// logged as an audit line.
    pub(crate) fn authorize(
        &self,
        session: &Session,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        let allowed = self.is_allowed(session, operation, resource_type, name);
        if !allowed {
            self.metrics.authorization_denials.inc();
            tracing::info!(
                target: "nerve::audit",
                principal = %session.principal(),
                peer = %session.peer,
                operation = %operation,
                resource_type = %resource_type,
                resource = name,
                "authorization denied"
            );
        }
        allowed
    }

    /// [`Broker::authorize`] without the audit line: for filtering what a listing shows, where a hidden
    /// resource is the expected outcome, not a refused request.
    pub(crate) fn is_allowed(
        &self,
        session: &Session,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        match &self.authorizer {
            None => true,
            Some(authorizer) => authorizer.authorize(
                &session.principal(),
                &session.peer.ip().to_string(),
                operation,
                resource_type,
                name,
            ),
        }
    }

    /// [`Broker::authorize`] on the cluster resource.
    pub(crate) fn authorize_cluster(&self, session: &Session, operation: Operation) -> bool {
        self.authorize(
            session,
            operation,
            ResourceType::Cluster,
            nerve_auth::acl::CLUSTER_NAME,
        )
    }

    /// Changes the ACLs: `change` edits the current set, which is then stored and handed to the
    /// authorizer. Nothing changes if storing fails.
    pub(crate) async fn change_acls(
        &self,
        change: impl FnOnce(&mut Vec<AclBinding>),
    ) -> Result<(), StorageError> {
        let Some(authorizer) = &self.authorizer else {
            return Ok(());
        };
        let _serialized = self.acl_changes.lock().await;
        let mut acls = authorizer.acls();
        change(&mut acls);
        self.meta
            .set_acls(acls.iter().map(acl_to_stored).collect())
            .await?;
        authorizer.set_acls(acls);
        Ok(())
    }

    pub(crate) fn authentication_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.authentication_timeout_ms)
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Resolves once shutdown begins.
    pub(crate) async fn shutting_down(&self) {
        let mut rx = self.shutdown.clone();
        // An error means the sender is gone, which is a shutdown too.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Creates `__consumer_offsets` (compacted) if it does not exist yet, then restores the committed
    /// offsets from it.
    async fn load_offsets(&self, partitions: i32) -> Result<(), StorageError> {
        self.ensure_compacted_topic(OFFSETS_TOPIC, partitions)
            .await?;
        let restored = self.groups.restore().await?;
        tracing::info!(offsets = restored, "restored committed offsets");
        Ok(())
    }

    /// Creates a compacted topic with `partitions` partitions unless it exists: the store of a service that
    /// keeps its state in the log (committed offsets, the schema registry's `_schemas`).
    pub async fn ensure_compacted_topic(
        &self,
        name: &str,
        partitions: i32,
    ) -> Result<(), StorageError> {
        if self.meta.topic(name).is_some() {
            return Ok(());
        }
        let configs = BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
        match self.create_topic(name, partitions, configs, false).await {
            Ok(_) | Err(StorageError::TopicAlreadyExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sets what judges records produced to topics with `confluent.key.schema.validation` or
    /// `confluent.value.schema.validation` on (the schema registry). Returns false if one was set already.
    pub fn set_record_validator(&self, validator: Arc<dyn RecordValidator>) -> bool {
        self.validations.set_validator(validator)
    }

    /// Keeps what the broker looks up per produce from a topic's config.
    fn note_topic_config(&self, topic: &str, config: &nerve_storage::TopicConfig) {
        self.fsync_policies
            .write()
            .insert(topic.to_string(), config.fsync);
        self.validations.set_topic(
            topic,
            Validation {
                key: config.key_schema_validation,
                value: config.value_schema_validation,
            },
        );
    }

    /// The fsync policy appends to `topic` wait for.
    pub(crate) fn fsync_policy(&self, topic: &str) -> FsyncPolicy {
        self.fsync_policies
            .read()
            .get(topic)
            .copied()
            .unwrap_or(self.default_fsync)
    }

    /// The broker's metrics, to register with a Prometheus registry.
    pub fn metrics(&self) -> &crate::metrics::BrokerMetrics {
        &self.metrics
    }

    /// Checks a user's password against their stored SCRAM credential (as SASL PLAIN does), for the
    /// HTTP ports' basic auth.
    pub fn check_password(
        &self,
        user: &str,
        password: &[u8],
    ) -> Result<(), crate::sasl::PasswordError> {
        crate::sasl::check_password(self, user, password)
    }

    /// The authorizer, when `authorizer_enabled`: for the services beside the broker (the schema
    /// registry) that decide by the same ACLs.
    pub fn authorizer(&self) -> Option<&Authorizer> {
        self.authorizer.as_ref()
    }

    /// The log store, for the services beside the broker that keep their state in topics.
    pub fn log(&self) -> Arc<dyn LogStore> {
        self.log.clone()
    }

    async fn create_missing_partitions(&self) {
        let existing: std::collections::HashSet<TopicPartition> =
            self.log.partitions().into_iter().collect();
        for topic in self.meta.topics() {
            let config = match self.config.topic_config(&topic.configs) {
                Ok(c) => Arc::new(c),
                Err(e) => {
                    tracing::error!(topic = %topic.name, error = %e, "topic has an invalid config");
                    continue;
                }
            };
            for partition in 0..topic.partitions {
                let tp = TopicPartition::new(&topic.name, partition);
                if existing.contains(&tp) {
                    continue;
                }
                match self.log.create_partition(&tp, config.clone()).await {
                    Ok(()) => {
                        tracing::warn!(partition = %tp, "created a partition log the metadata expected")
                    }
                    Err(StorageError::PartitionAlreadyExists(_)) => {}
                    Err(e) => {
                        tracing::error!(partition = %tp, error = %e, "cannot create partition log")
                    }
                }
            }
        }
    }

    /// The topic with this Kafka topic id.
    pub(crate) fn topic_by_id(&self, id: uuid::Uuid) -> Option<TopicMeta> {
        self.meta.topics().into_iter().find(|t| t.id == id)
    }

    /// Creates a topic: checks, then metadata, then its partition logs. `validate_only` stops after the checks.
    pub(crate) async fn create_topic(
        &self,
        name: &str,
        partitions: i32,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<TopicMeta, StorageError> {
        nerve_storage::validate_topic_name(name)?;
        let config = Arc::new(self.config.topic_config(&configs)?);
        let _guard = self.topic_changes.lock().await;
        if self.meta.topic(name).is_some() {
            return Err(StorageError::TopicAlreadyExists(name.to_string()));
        }
        let meta = TopicMeta {
            name: name.to_string(),
            id: uuid::Uuid::new_v4(),
            partitions,
            configs,
        };
        if validate_only {
            return Ok(meta);
        }
        self.meta.create_topic(meta.clone()).await?;
        for partition in 0..partitions {
            let tp = TopicPartition::new(name, partition);
            match self.log.create_partition(&tp, config.clone()).await {
                Ok(()) => {}
                // Left behind by a deletion that did not finish: it belongs to the old topic, not this one.
                Err(StorageError::PartitionAlreadyExists(_)) => {
                    tracing::warn!(partition = %tp, "replacing a stale partition log");
                    self.log.delete_partition(&tp).await?;
                    self.log.create_partition(&tp, config.clone()).await?;
                }
                Err(e) => return Err(e),
            }
        }
        self.note_topic_config(name, &config);
        tracing::info!(topic = name, partitions, id = %meta.id, "created topic");
        Ok(meta)
    }

    /// Grows a topic to `count` partitions: metadata first, then the new partitions' logs, created with the
    /// topic's config (a crash in between is repaired at the next start by `create_missing_partitions`).
    /// `validate_only` stops after the checks. Returns the previous partition count.
    pub(crate) async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        validate_only: bool,
    ) -> Result<i32, PartitionsError> {
        let _guard = self.topic_changes.lock().await;
        let meta = self
            .meta
            .topic(name)
            .ok_or_else(|| PartitionsError::UnknownTopic(name.to_string()))?;
        if count <= meta.partitions {
            return Err(PartitionsError::NotLarger {
                current: meta.partitions,
                requested: count,
            });
        }
        if validate_only {
            return Ok(meta.partitions);
        }
        let config = Arc::new(self.config.topic_config(&meta.configs)?);
        self.meta.set_partition_count(name, count).await?;
        for partition in meta.partitions..count {
            let tp = TopicPartition::new(name, partition);
            match self.log.create_partition(&tp, config.clone()).await {
                Ok(()) => {}
                // Left behind by an earlier topic of this name whose deletion did not finish.
                Err(StorageError::PartitionAlreadyExists(_)) => {
                    tracing::warn!(partition = %tp, "replacing a stale partition log");
                    self.log.delete_partition(&tp).await?;
                    self.log.create_partition(&tp, config.clone()).await?;
                }
                Err(e) => return Err(e.into()),
            }
        }
        tracing::info!(
            topic = name,
            from = meta.partitions,
            to = count,
            "added partitions"
        );
        Ok(meta.partitions)
    }

    /// Changes a topic's config overrides: `change` computes the new set from the current one (under the lock
    /// that serializes topic changes, so concurrent changes do not lose each other's updates); the result is
    /// validated over the broker's topic defaults, stored, then applied to the live partitions.
    /// `validate_only` stops after the checks.
    pub(crate) async fn change_topic_configs<E: From<StorageError>>(
        &self,
        name: &str,
        validate_only: bool,
        change: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, E>,
    ) -> Result<(), E> {
        let _guard = self.topic_changes.lock().await;
        let meta = self
            .meta
            .topic(name)
            .ok_or_else(|| StorageError::UnknownTopicOrPartition(TopicPartition::new(name, -1)))?;
        let overrides = change(&meta.configs)?;
        let config = Arc::new(self.config.topic_config(&overrides)?);
        if validate_only {
            return Ok(());
        }
        self.meta.set_topic_configs(name, overrides).await?;
        // Stored first: the stored overrides are what every start applies, so if applying them live fails the
        // client hears it, and a retry or the next start brings the partitions in line.
        self.note_topic_config(name, &config);
        self.log.set_topic_config(name, config).await?;
        tracing::info!(topic = name, "changed topic configs");
        Ok(())
    }

    /// Deletes a topic: metadata first (so it disappears for clients at once), then its logs.
    pub(crate) async fn delete_topic(&self, name: &str) -> Result<TopicMeta, StorageError> {
        let _guard = self.topic_changes.lock().await;
        let meta = self.meta.delete_topic(name).await?;
        self.validations.set_topic(name, Validation::default());
        self.fsync_policies.write().remove(name);
        self.metrics.forget_topic(name);
        for partition in 0..meta.partitions {
            let tp = TopicPartition::new(name, partition);
            match self.log.delete_partition(&tp).await {
                Ok(()) | Err(StorageError::UnknownTopicOrPartition(_)) => {}
                Err(e) => {
                    tracing::error!(partition = %tp, error = %e, "cannot delete partition log")
                }
            }
        }
        tracing::info!(topic = name, id = %meta.id, "deleted topic");
        // As Kafka: the topic's committed offsets go with it, so a topic re-created under the name does not
        // inherit positions in a log that no longer exists.
        self.groups.forget_topic(name).await;
        Ok(meta)
    }
}

/// Every `offsets_retention_check_interval_ms`, deletes the committed offsets that expired, until
/// shutdown. Keeps only the coordinator and the shutdown signal, not the broker.
async fn expire_offsets_periodically(broker: Arc<Broker>) {
    let interval =
        std::time::Duration::from_millis(broker.config.offsets_retention_check_interval_ms);
    let retention_ms = i64::from(broker.config.offsets_retention_minutes) * 60_000;
    let groups = broker.groups.clone();
    let mut shutdown = broker.shutdown.clone();
    drop(broker);
    let stopped = async move {
        // An error means the sender is gone, which is a shutdown too.
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stopped);
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {
                groups.expire_offsets(retention_ms, crate::group::offsets::now_ms()).await;
            }
            () = &mut stopped => return,
        }
    }
}

/// Why partitions could not be added.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PartitionsError {
    #[error("the topic has {current} partitions; the new count {requested} must be larger")]
    NotLarger { current: i32, requested: i32 },
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A new cluster id in Kafka's form: a random UUID as 22 characters of URL-safe base64 without padding
/// (what `kafka-storage random-uuid` prints), so tools that display or parse it see a familiar shape.
fn new_cluster_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bits = uuid::Uuid::new_v4().as_u128();
    // 128 bits make 21 whole sextets and 2 bits left over, which base64 pads with zeros on the right.
    (0..22)
        .map(|i| {
            let sextet = if i < 21 {
                (bits >> (122 - 6 * i)) & 0x3f
            } else {
                (bits & 0x3) << 4
            };
            char::from(ALPHABET[sextet as usize])
        })
        .collect()
}

fn acl_from_stored(stored: nerve_storage::StoredAcl) -> Option<AclBinding> {
    let binding = AclBinding {
        resource_type: ResourceType::from_code(stored.resource_type)?,
        resource_name: stored.resource_name,
        pattern_type: PatternType::from_code(stored.pattern_type)?,
        principal: stored.principal,
        host: stored.host,
        operation: Operation::from_code(stored.operation)?,
        permission: Permission::from_code(stored.permission)?,
    };
    Some(binding)
}

fn acl_to_stored(binding: &AclBinding) -> nerve_storage::StoredAcl {
    nerve_storage::StoredAcl {
        resource_type: binding.resource_type.code(),
        resource_name: binding.resource_name.clone(),
        pattern_type: binding.pattern_type.code(),
        principal: binding.principal.clone(),
        host: binding.host.clone(),
        operation: binding.operation.code(),
        permission: binding.permission.code(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_cluster_ids_look_like_kafkas() {
        let a = new_cluster_id();
        let b = new_cluster_id();
        assert_eq!(a.len(), 22);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, b);
    }
}
