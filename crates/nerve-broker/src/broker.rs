//! The state every request handler shares: configuration, the stores, and topic lifecycle.

use std::collections::BTreeMap;
use std::sync::Arc;

use nerve_storage::{LogStore, MetaStore, StorageError, TopicMeta, TopicPartition};
use tokio::sync::{watch, Mutex};

use crate::config::BrokerConfig;

/// A single Kafka broker over a [`LogStore`] and a [`MetaStore`].
pub struct Broker {
    pub(crate) config: BrokerConfig,
    pub(crate) log: Arc<dyn LogStore>,
    pub(crate) meta: Arc<dyn MetaStore>,
    /// `(host, port)` from `advertised_listener`, parsed once.
    pub(crate) advertised: (String, u16),
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
        let advertised = config.advertised_host_port()?;
        let broker = Broker {
            config,
            log,
            meta,
            advertised,
            topic_changes: Mutex::new(()),
            shutdown,
        };
        broker.create_missing_partitions().await;
        Ok(Arc::new(broker))
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
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
        tracing::info!(topic = name, partitions, id = %meta.id, "created topic");
        Ok(meta)
    }

    /// Deletes a topic: metadata first (so it disappears for clients at once), then its logs.
    pub(crate) async fn delete_topic(&self, name: &str) -> Result<TopicMeta, StorageError> {
        let _guard = self.topic_changes.lock().await;
        let meta = self.meta.delete_topic(name).await?;
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
        Ok(meta)
    }
}
