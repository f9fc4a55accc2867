//! The dead-letter topic: where a record goes when its handler gave up on it, so that the partition moves
//! on and the record is kept for a human (`nerve dlq list|show|replay`) to look at.
//!
//! A dead letter is the original record — key, value and headers unchanged — in `<topic>.dlq`, with these
//! headers added (UTF-8 text; times in milliseconds since the Unix epoch):
//!
//! | Header                          | Value                                                         |
//! |---------------------------------|---------------------------------------------------------------|
//! | `nerve-dlq-error`               | why the last attempt failed                                   |
//! | `nerve-dlq-attempts`            | how many times the handler ran (0: the record never reached one) |
//! | `nerve-dlq-handler`             | the handler's name, or `none`                                 |
//! | `nerve-dlq-original-topic`      | the topic the record was read from                            |
//! | `nerve-dlq-original-partition`  | its partition                                                 |
//! | `nerve-dlq-original-offset`     | its offset                                                    |
//! | `nerve-dlq-original-timestamp`  | its timestamp (absent if it had none)                         |
//! | `nerve-dlq-failed-at`           | when the consumer gave up                                     |

use std::time::{Duration, SystemTime};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::envelope::millis_since_epoch;

pub const ERROR: &str = "nerve-dlq-error";
pub const ATTEMPTS: &str = "nerve-dlq-attempts";
pub const HANDLER: &str = "nerve-dlq-handler";
pub const ORIGINAL_TOPIC: &str = "nerve-dlq-original-topic";
pub const ORIGINAL_PARTITION: &str = "nerve-dlq-original-partition";
pub const ORIGINAL_OFFSET: &str = "nerve-dlq-original-offset";
pub const ORIGINAL_TIMESTAMP: &str = "nerve-dlq-original-timestamp";
pub const FAILED_AT: &str = "nerve-dlq-failed-at";

/// The dead-letter topic of `topic`.
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}.dlq")
}

/// Why a record is dead.
#[derive(Debug, Clone)]
pub(crate) struct Death {
    pub(crate) error: String,
    pub(crate) attempts: u32,
    pub(crate) handler: String,
}

/// Publishes `record` to its dead-letter topic and returns once the broker has stored it.
pub(crate) async fn send(
    producer: &FutureProducer,
    record: &OwnedMessage,
    death: &Death,
) -> Result<(), KafkaError> {
    let topic = dlq_topic(record.topic());
    let mut headers = match record.headers() {
        Some(original) => {
            let mut copy = OwnedHeaders::new_with_capacity(original.count() + 8);
            for h in original.iter() {
                copy = copy.insert(h);
            }
            copy
        }
        None => OwnedHeaders::new_with_capacity(8),
    };
    let mut added = vec![
        (ERROR, death.error.clone()),
        (ATTEMPTS, death.attempts.to_string()),
        (HANDLER, death.handler.clone()),
        (ORIGINAL_TOPIC, record.topic().to_string()),
        (ORIGINAL_PARTITION, record.partition().to_string()),
        (ORIGINAL_OFFSET, record.offset().to_string()),
    ];
    if let Some(millis) = record.timestamp().to_millis() {
        added.push((ORIGINAL_TIMESTAMP, millis.to_string()));
    }
    added.push((FAILED_AT, millis_since_epoch(SystemTime::now()).to_string()));
    for (key, value) in &added {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let mut dead = FutureRecord::<[u8], [u8]>::to(&topic).headers(headers);
    if let Some(key) = record.key() {
        dead = dead.key(key);
    }
    if let Some(payload) = record.payload() {
        dead = dead.payload(payload);
    }
    producer
        .send(dead, Timeout::After(Duration::from_secs(5)))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}
