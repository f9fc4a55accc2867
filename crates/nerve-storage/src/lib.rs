//! Nerve's storage: the seams the broker stands on, and the embedded engine behind them.
//!
//! - [`LogStore`]: partitioned append-only logs of Kafka RecordBatch v2 bytes: append, read, offsets,
//!   lookups by time, retention by deleting records, truncation.
//! - [`MetaStore`]: topics and their configs, producer id blocks; room for groups and credentials.
//! - [`local`]: the default engine: segment files with sparse indexes, group commit, crash recovery,
//!   retention and compaction. Its on-disk format is documented in `docs/storage-format.md`.
//!
//! Neither trait mentions files: a PostgreSQL or object-storage engine implements the same ones.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub mod config;
pub mod error;
pub mod local;
pub mod replay;

pub use config::{CleanupPolicy, FsyncPolicy, LocalConfig, TopicConfig, TOPIC_CONFIGS};
pub use error::{Result, StorageError};
pub use local::{LocalLogStore, LocalMetaStore};
pub use replay::replay;

/// A position in a partition's log: the offset of one record.
pub type Offset = i64;
/// Milliseconds since the Unix epoch, as Kafka timestamps are.
pub type TimestampMs = i64;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    pub topic: Arc<str>,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> Self {
        TopicPartition {
            topic: Arc::from(topic),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset given to the first record appended.
    pub base_offset: Offset,
    /// Offset of the last record appended.
    pub last_offset: Offset,
    /// The broker's timestamp for `LogAppendTime` topics, `None` for `CreateTime`.
    pub log_append_time: Option<TimestampMs>,
    /// The partition's log start offset after the append.
    pub log_start_offset: Offset,
    /// True when every batch was a retry of one already stored by an idempotent producer: nothing was written
    /// and the offsets are those of the original append.
    pub duplicate: bool,
}

/// The bounds of a partition's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// The first offset that can be read.
    pub log_start: Offset,
    /// One past the last offset that readers may see: the end of what is durable under the partition's
    /// fsync policy.
    pub high_watermark: Offset,
    /// One past the last offset appended.
    pub log_end: Offset,
}

/// Stored batches read from a partition.
#[derive(Debug, Clone)]
pub struct ReadResult {
    /// Whole batches exactly as stored, back to back. The first may begin before the requested offset
    /// (clients skip the records they did not ask for, as with Kafka).
    pub data: Bytes,
    pub offsets: PartitionOffsets,
}

/// A record found by [`LogStore::offset_for_timestamp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampLookup {
    pub offset: Offset,
    pub timestamp: TimestampMs,
}

/// Partitioned append-only logs of Kafka record batches.
#[async_trait]
pub trait LogStore: Send + Sync + 'static {
    /// Creates an empty partition log.
    async fn create_partition(&self, tp: &TopicPartition, config: Arc<TopicConfig>) -> Result<()>;

    /// Removes a partition log and its data.
    async fn delete_partition(&self, tp: &TopicPartition) -> Result<()>;

    /// Replaces the configuration of every partition of `topic` this store holds.
    async fn set_topic_config(&self, topic: &str, config: Arc<TopicConfig>) -> Result<()>;

    /// The partitions this store holds.
    fn partitions(&self) -> Vec<TopicPartition>;

    /// Appends a record set (one or more v2 batches, as a produce request carries them). The batches are
    /// validated, given offsets and stored byte for byte; the future resolves once they are durable under
    /// the partition's fsync policy. Idempotent producers' batches are checked against the sequences
    /// already stored: an exact retry of one of the last five is answered with its original offsets.
    async fn append(&self, tp: &TopicPartition, records: Bytes) -> Result<AppendInfo>;

    /// Reads whole batches from `offset` up to about `max_bytes`; at least one batch is returned when there
    /// is one, however large (KIP-74). Only data below the high watermark is returned.
    async fn read(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<ReadResult>;

    /// The partition's log start, high watermark and log end.
    fn offsets(&self, tp: &TopicPartition) -> Result<PartitionOffsets>;

    /// A receiver that changes whenever the high watermark moves, for long-polling readers.
    fn watch_high_watermark(
        &self,
        tp: &TopicPartition,
    ) -> Result<tokio::sync::watch::Receiver<Offset>>;

    /// The first record, in log order, whose timestamp is at least `timestamp`; `None` when there is none.
    async fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        timestamp: TimestampMs,
    ) -> Result<Option<TimestampLookup>>;

    /// The record with the largest timestamp (the earliest such when several share it).
    async fn max_timestamp(&self, tp: &TopicPartition) -> Result<Option<TimestampLookup>>;

    /// Makes `offset` the new log start: records before it are no longer readable and whole segments
    /// below it are deleted. Returns the new log start offset.
    async fn delete_records_before(&self, tp: &TopicPartition, offset: Offset) -> Result<Offset>;

    /// Removes every batch that holds an offset at or above `offset`; the log end becomes the base offset of
    /// the first removed batch (or `offset`, when it falls between batches).
    async fn truncate_to(&self, tp: &TopicPartition, offset: Offset) -> Result<Offset>;

    /// Bytes stored for the partition.
    fn size_bytes(&self, tp: &TopicPartition) -> Result<u64>;

    /// Makes everything appended so far durable and stops background work; later calls fail with
    /// [`StorageError::Closed`].
    async fn close(&self) -> Result<()>;
}

/// A topic as the metadata store keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    pub name: String,
    /// Kafka's topic id: new for every creation, so a re-created topic is a different topic.
    pub id: uuid::Uuid,
    pub partitions: i32,
    /// Only the configs set on the topic; the rest are defaults.
    pub configs: BTreeMap<String, String>,
}

/// A user's salted SCRAM credential for one mechanism (RFC 5802): what the server keeps instead of the
/// password. Stored as Kafka stores it, so nothing here can recover the password.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredScramCredential {
    #[serde(with = "hex_bytes")]
    pub salt: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub stored_key: Vec<u8>,
    #[serde(with = "hex_bytes")]
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl std::fmt::Debug for StoredScramCredential {
    // The keys are not the password, but they are as good as one against this server: never logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredScramCredential")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// One Kafka ACL binding with the wire codes of its enums (resource type, pattern type, operation,
/// permission), so that the store needs no knowledge of what they mean.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StoredAcl {
    pub resource_type: i8,
    pub resource_name: String,
    pub pattern_type: i8,
    pub principal: String,
    pub host: String,
    pub operation: i8,
    pub permission: i8,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        s.serialize_str(&hex)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let hex = String::deserialize(d)?;
        if hex.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd number of hex digits"));
        }
        (0..hex.len())
            .step_by(2)
            .map(|i| {
                hex.get(i..i + 2)
                    .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                    .ok_or_else(|| serde::de::Error::custom("not hex"))
            })
            .collect()
    }
}

/// Cluster metadata: topics and their configs, producer ids, SCRAM credentials and ACLs.
#[async_trait]
pub trait MetaStore: Send + Sync + 'static {
    async fn create_topic(&self, topic: TopicMeta) -> Result<()>;
    async fn delete_topic(&self, name: &str) -> Result<TopicMeta>;
    fn topic(&self, name: &str) -> Option<TopicMeta>;
    fn topics(&self) -> Vec<TopicMeta>;
    /// Replaces the topic's config overrides.
    async fn set_topic_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<()>;
    /// Raises the partition count (Kafka never lowers it).
    async fn set_partition_count(&self, name: &str, partitions: i32) -> Result<()>;
    /// Reserves `count` producer ids, never handed out before, even across restarts; returns the first.
    async fn allocate_producer_ids(&self, count: u32) -> Result<i64>;
    /// The cluster id: the one stored, or else `if_absent`, stored now so that every later start (and every
    /// broker sharing this store) reports the same id. Kafka keeps it in `meta.properties` for the same reason:
    /// clients cache it and notice when a "cluster" suddenly becomes another.
    async fn cluster_id(&self, if_absent: &str) -> Result<String>;
    /// The SCRAM credential of `user` for `mechanism` (`SCRAM-SHA-256`, `SCRAM-SHA-512`).
    fn scram_credential(&self, user: &str, mechanism: &str) -> Option<StoredScramCredential>;
    /// Every user with credentials, and their mechanisms with the iterations (never the keys' uses).
    fn scram_users(&self) -> BTreeMap<String, BTreeMap<String, StoredScramCredential>>;
    /// Sets (`Some`) or removes (`None`) a user's credential for one mechanism; returns whether the user
    /// had one for it before.
    async fn set_scram_credential(
        &self,
        user: &str,
        mechanism: &str,
        credential: Option<StoredScramCredential>,
    ) -> Result<bool>;
    /// Every ACL binding.
    fn acls(&self) -> Vec<StoredAcl>;
    /// Replaces the ACL bindings with `acls` (their changes are rare and few; the whole set is written).
    async fn set_acls(&self, acls: Vec<StoredAcl>) -> Result<()>;
}

/// Checks a topic name as Kafka does: 1 to 249 characters of ASCII letters, digits, `.`, `_` and `-`, and
/// neither `.` nor `..`.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let invalid = |reason: &str| StorageError::InvalidTopic {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    if name.is_empty() {
        return Err(invalid("the name is empty"));
    }
    if name == "." || name == ".." {
        return Err(invalid("`.` and `..` are not allowed"));
    }
    if name.len() > 249 {
        return Err(invalid("longer than 249 characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        return Err(invalid(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    Ok(())
}
