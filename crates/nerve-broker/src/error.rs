//! The one place storage errors become Kafka error codes.

use kafka_protocol::error::ResponseError;
use nerve_storage::StorageError;

/// The Kafka error a client is told for a storage error.
pub(crate) fn storage_error_code(error: &StorageError) -> ResponseError {
    match error {
        StorageError::UnknownTopicOrPartition(_) => ResponseError::UnknownTopicOrPartition,
        StorageError::TopicAlreadyExists(_) | StorageError::PartitionAlreadyExists(_) => {
            ResponseError::TopicAlreadyExists
        }
        StorageError::InvalidTopic { .. } => ResponseError::InvalidTopicException,
        StorageError::InvalidConfig { .. } => ResponseError::InvalidConfig,
        StorageError::CorruptBatch(_) => ResponseError::CorruptMessage,
        StorageError::InvalidRecord { .. } => ResponseError::InvalidRecord,
        StorageError::MessageTooLarge { .. } => ResponseError::MessageTooLarge,
        StorageError::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        StorageError::InvalidProducerEpoch { .. } => ResponseError::InvalidProducerEpoch,
        StorageError::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        StorageError::DiskFull { .. }
        | StorageError::Corruption { .. }
        | StorageError::PartitionOffline { .. }
        | StorageError::Io { .. }
        | StorageError::Locked { .. } => ResponseError::KafkaStorageError,
        // Only while shutting down: a retriable answer sends the client to refresh metadata and retry.
        StorageError::Closed => ResponseError::NotLeaderOrFollower,
    }
}

/// Why a request could not be answered at all; the connection is closed after it.
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(transparent)]
    Frame(#[from] nerve_wire::FrameError),
    #[error("cannot decode {api:?} v{version} request: {reason}")]
    Decode {
        api: kafka_protocol::messages::ApiKey,
        version: i16,
        reason: String,
    },
    #[error("{api:?} v{version} is not supported (supported: v{min}-v{max})")]
    UnsupportedVersion {
        api: kafka_protocol::messages::ApiKey,
        version: i16,
        min: i16,
        max: i16,
    },
    #[error("API {0:?} is not implemented")]
    UnsupportedApi(kafka_protocol::messages::ApiKey),
}

impl RequestError {
    /// The Kafka error the refusal stands for (the client is not told: its connection is closed).
    pub(crate) fn error_code(&self) -> ResponseError {
        match self {
            RequestError::Decode { .. } => ResponseError::InvalidRequest,
            RequestError::UnsupportedVersion { .. } | RequestError::UnsupportedApi(_) => {
                ResponseError::UnsupportedVersion
            }
            RequestError::Frame(_) => ResponseError::UnknownServerError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nerve_storage::TopicPartition;

    #[test]
    fn client_visible_storage_errors_keep_their_kafka_meaning() {
        let tp = TopicPartition::new("t", 0);
        assert_eq!(
            storage_error_code(&StorageError::OffsetOutOfRange {
                tp: tp.clone(),
                offset: 9,
                log_start: 0,
                log_end: 3
            }),
            ResponseError::OffsetOutOfRange
        );
        assert_eq!(
            storage_error_code(&StorageError::UnknownTopicOrPartition(tp)),
            ResponseError::UnknownTopicOrPartition
        );
        assert_eq!(
            storage_error_code(&StorageError::InvalidRecord {
                batch_index: 0,
                record_index: 2,
                reason: "null key".into()
            }),
            ResponseError::InvalidRecord
        );
        assert!(storage_error_code(&StorageError::Closed).is_retriable());
    }
}
