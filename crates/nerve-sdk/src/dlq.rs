//! The dead-letter topic: where a record goes when its handler gave up on it, so that the partition moves
//! on and the record is kept for a human (`nerve dlq list|show|replay`) to look at.
//!
//! A dead letter is the original record — key, value and headers unchanged — in `<topic>.dlq`, with these
//! headers added (UTF-8 text; times in milliseconds since the Unix epoch). A record that failed in a retry
//! topic ([`crate::retry_topic`]) goes to the dead-letter topic of its original topic, not of the retry
//! topic, without its `nerve-retry-*` headers, and its `nerve-dlq-original-*` headers name where it was
//! first published: a replay puts it back there.
//!
//! | Header                          | Value                                                         |
//! |---------------------------------|---------------------------------------------------------------|
//! | `nerve-dlq-error`               | why the last attempt failed                                   |
//! | `nerve-dlq-attempts`            | how often the handler ran, in all stages (0: never reached one) |
//! | `nerve-dlq-handler`             | the handler's name, or `none`                                 |
//! | `nerve-dlq-original-topic`      | the topic the record was first published to                   |
//! | `nerve-dlq-original-partition`  | its partition there                                           |
//! | `nerve-dlq-original-offset`     | its offset there                                              |
//! | `nerve-dlq-original-timestamp`  | its timestamp there (absent if it had none)                   |
//! | `nerve-dlq-failed-at`           | when the consumer gave up                                     |

use std::time::{Duration, SystemTime};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::envelope::millis_since_epoch;
use crate::retry_topic::{self, Origin};

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
    /// Where the record was first published: the record itself unless it comes from a retry topic.
    pub(crate) origin: Origin,
}

/// Publishes `record` to its dead-letter topic and returns once the broker has stored it.
pub(crate) async fn send(
    producer: &FutureProducer,
    record: &OwnedMessage,
    death: &Death,
) -> Result<(), KafkaError> {
    let topic = dlq_topic(&death.origin.topic);
    // Without the retry headers: a replay to the original topic starts the record afresh.
    let mut headers = retry_topic::original_headers(record, 8);
    let mut added = vec![
        (ERROR, death.error.clone()),
        (ATTEMPTS, death.attempts.to_string()),
        (HANDLER, death.handler.clone()),
        (ORIGINAL_TOPIC, death.origin.topic.clone()),
        (ORIGINAL_PARTITION, death.origin.partition.to_string()),
        (ORIGINAL_OFFSET, death.origin.offset.to_string()),
    ];
    if let Some(millis) = death.origin.timestamp {
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
