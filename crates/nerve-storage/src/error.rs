use std::path::PathBuf;

use nerve_wire::WireError;

use crate::TopicPartition;

/// Everything the storage layer can refuse or fail with. The broker maps each variant to one Kafka error code
/// at its edge (see `nerve-broker`), so variants are split by what a client should be told, not by where in
/// the engine they arose.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("unknown topic or partition {0}")]
    UnknownTopicOrPartition(TopicPartition),
    #[error("topic {0} already exists")]
    TopicAlreadyExists(String),
    #[error("partition {0} already exists")]
    PartitionAlreadyExists(TopicPartition),
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidTopic { name: String, reason: String },
    #[error("invalid value {value:?} for config {name}: {reason}")]
    InvalidConfig {
        name: String,
        value: String,
        reason: String,
    },
    #[error("invalid record batch: {0}")]
    CorruptBatch(#[from] WireError),
    #[error("batch {batch_index}, record {record_index}: {reason}")]
    InvalidRecord {
        batch_index: usize,
        record_index: usize,
        reason: String,
    },
    #[error("batch of {size} bytes is larger than max.message.bytes ({max})")]
    MessageTooLarge { size: usize, max: usize },
    #[error("offset {offset} is out of range [{log_start}, {log_end}] for {tp}")]
    OffsetOutOfRange {
        tp: TopicPartition,
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("producer {producer_id}: epoch {epoch} is older than the current epoch {current}")]
    InvalidProducerEpoch {
        producer_id: i64,
        epoch: i16,
        current: i16,
    },
    #[error("producer {producer_id}: sequence {received} out of order, expected {expected}")]
    OutOfOrderSequence {
        producer_id: i64,
        expected: i32,
        received: i32,
    },
    #[error("disk full while writing {path}")]
    DiskFull { path: PathBuf },
    #[error("{tp} is corrupt: {file} at byte {position}: {reason}")]
    Corruption {
        tp: TopicPartition,
        file: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("{tp} is offline: {reason}")]
    PartitionOffline { tp: TopicPartition, reason: String },
    #[error("the store is closed")]
    Closed,
    /// Another store holds the data directory's lock (`meta/lock`): a running broker, or an offline tool.
    /// Two processes writing one data directory would overwrite each other's metadata.
    #[error("{path} is locked: another process (a running broker?) has this data directory open")]
    Locked { path: PathBuf },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StorageError {
    /// Wraps an I/O error with the file it concerns, turning ENOSPC into [`StorageError::DiskFull`] so that
    /// callers can tell a full disk (retryable once space is freed) from a failing one.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        let path = path.into();
        if source.kind() == std::io::ErrorKind::StorageFull || source.raw_os_error() == Some(28) {
            StorageError::DiskFull { path }
        } else {
            StorageError::Io { path, source }
        }
    }
}

impl StorageError {
    /// A copy of this error for another waiter: when one group write fails, every append in the group gets
    /// the same answer. (`std::io::Error` is not `Clone`, so its kind and message are carried over.)
    pub(crate) fn replicate(&self) -> Self {
        use StorageError::*;
        match self {
            UnknownTopicOrPartition(tp) => UnknownTopicOrPartition(tp.clone()),
            TopicAlreadyExists(t) => TopicAlreadyExists(t.clone()),
            PartitionAlreadyExists(tp) => PartitionAlreadyExists(tp.clone()),
            InvalidTopic { name, reason } => InvalidTopic {
                name: name.clone(),
                reason: reason.clone(),
            },
            InvalidConfig {
                name,
                value,
                reason,
            } => InvalidConfig {
                name: name.clone(),
                value: value.clone(),
                reason: reason.clone(),
            },
            CorruptBatch(e) => CorruptBatch(e.clone()),
            InvalidRecord {
                batch_index,
                record_index,
                reason,
            } => InvalidRecord {
                batch_index: *batch_index,
                record_index: *record_index,
                reason: reason.clone(),
            },
            MessageTooLarge { size, max } => MessageTooLarge {
                size: *size,
                max: *max,
            },
            OffsetOutOfRange {
                tp,
                offset,
                log_start,
                log_end,
            } => OffsetOutOfRange {
                tp: tp.clone(),
                offset: *offset,
                log_start: *log_start,
                log_end: *log_end,
            },
            InvalidProducerEpoch {
                producer_id,
                epoch,
                current,
            } => InvalidProducerEpoch {
                producer_id: *producer_id,
                epoch: *epoch,
                current: *current,
            },
            OutOfOrderSequence {
                producer_id,
                expected,
                received,
            } => OutOfOrderSequence {
                producer_id: *producer_id,
                expected: *expected,
                received: *received,
            },
            DiskFull { path } => DiskFull { path: path.clone() },
            Corruption {
                tp,
                file,
                position,
                reason,
            } => Corruption {
                tp: tp.clone(),
                file: file.clone(),
                position: *position,
                reason: reason.clone(),
            },
            PartitionOffline { tp, reason } => PartitionOffline {
                tp: tp.clone(),
                reason: reason.clone(),
            },
            Closed => Closed,
            Locked { path } => Locked { path: path.clone() },
            Io { path, source } => Io {
                path: path.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;
