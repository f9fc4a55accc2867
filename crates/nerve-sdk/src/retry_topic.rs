//! Retry topics: delayed retries that do not hold up the partition, the pattern of Uber's, Confluent's and
//! Spring Kafka's non-blocking retries.
//!
//! With [`RetryTopics`] configured ([`crate::ConsumerBuilder::retry_topics`]), a record whose handler still
//! fails transiently after the in-place attempts of the [`crate::RetryPolicy`] is not dead-lettered: it is
//! published to the next stage's retry topic, and the partition moves on. Stage `n` (1-based) of topic
//! `orders` is `orders.retry.<n>` ([`retry_topic`]); the runtime consumes the retry topics in the same group
//! and hands each record to the handler of its event type once it is due, `delay(n)` after it was
//! forwarded. A stage runs the in-place attempts again; after the last stage the record goes to the
//! dead-letter topic of the original topic (`orders.dlq`), its dead-letter headers naming the original
//! topic, partition and offset and the handler's attempts across all stages, so that `nerve dlq replay`
//! puts it back on `orders`. A permanent failure goes to the dead-letter topic at once, from any stage.
//!
//! A forwarded record is the original record — key, value and headers — with these headers added (UTF-8
//! text; times in milliseconds since the Unix epoch). The `nerve-retry-*` headers a record already carries
//! (from an earlier stage) are replaced, not repeated, and a dead letter leaves them out.
//!
//! | Header                            | Value                                                          |
//! |-----------------------------------|----------------------------------------------------------------|
//! | `nerve-retry-attempt`             | the stage the record is in: `n` in `<topic>.retry.<n>`         |
//! | `nerve-retry-not-before`          | when it is due: when it was forwarded plus the stage's delay   |
//! | `nerve-retry-original-topic`      | the topic the record was first published to                    |
//! | `nerve-retry-original-partition`  | its partition there                                            |
//! | `nerve-retry-original-offset`     | its offset there                                               |
//! | `nerve-retry-original-timestamp`  | its timestamp there (absent if it had none)                    |
//! | `nerve-retry-total-attempts`      | how often the handler ran, in all stages before this one       |
//! | `nerve-retry-error`               | why the last attempt failed                                    |
//!
//! What it costs: a record moved to a retry topic no longer holds back the later records of its key. They
//! are handled while it waits, so a key's records may be handled out of order — the point of non-blocking
//! retries, and the reason a service that needs strict per-key order keeps to in-place retries. Due times
//! are wall-clock times: the clocks of the instances of a service should agree (NTP) to within a small
//! fraction of the shortest delay.

use std::time::{Duration, SystemTime};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

use crate::envelope::millis_since_epoch;

pub const ATTEMPT: &str = "nerve-retry-attempt";
pub const NOT_BEFORE: &str = "nerve-retry-not-before";
pub const ORIGINAL_TOPIC: &str = "nerve-retry-original-topic";
pub const ORIGINAL_PARTITION: &str = "nerve-retry-original-partition";
pub const ORIGINAL_OFFSET: &str = "nerve-retry-original-offset";
pub const ORIGINAL_TIMESTAMP: &str = "nerve-retry-original-timestamp";
pub const TOTAL_ATTEMPTS: &str = "nerve-retry-total-attempts";
pub const ERROR: &str = "nerve-retry-error";

/// What every retry header starts with.
pub(crate) const HEADER_PREFIX: &str = "nerve-retry-";

/// The retry topic of stage `stage` (1-based) of `topic`: `<topic>.retry.<stage>`.
pub fn retry_topic(topic: &str, stage: u32) -> String {
    format!("{topic}.retry.{stage}")
}

/// The stages of delayed retries: one retry topic per delay, in order.
///
/// ```
/// use std::time::Duration;
/// use nerve_sdk::retry_topic::RetryTopics;
///
/// // orders.retry.1 five seconds after the in-place attempts failed, then orders.retry.2 a minute later,
/// // then orders.dlq.
/// let stages = RetryTopics::new([Duration::from_secs(5), Duration::from_secs(60)]);
/// assert_eq!(stages.stages(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryTopics {
    delays: Vec<Duration>,
}

impl RetryTopics {
    /// Stage `n` waits the `n`-th delay. No delays: no stages, as if retry topics were not configured.
    pub fn new(delays: impl IntoIterator<Item = Duration>) -> RetryTopics {
        RetryTopics {
            delays: delays.into_iter().collect(),
        }
    }

    pub fn delays(&self) -> &[Duration] {
        &self.delays
    }

    /// How many stages (retry topics per subscribed topic) there are.
    pub fn stages(&self) -> u32 {
        u32::try_from(self.delays.len()).unwrap_or(u32::MAX)
    }

    /// The delay of stage `stage` (1-based), if there is such a stage.
    pub fn delay(&self, stage: u32) -> Option<Duration> {
        let index = usize::try_from(stage.checked_sub(1)?).ok()?;
        self.delays.get(index).copied()
    }
}

/// Where a record was first published, before any retry topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// Milliseconds since the Unix epoch.
    pub(crate) timestamp: Option<i64>,
}

impl Origin {
    /// The record's own coordinates.
    pub(crate) fn of(record: &OwnedMessage) -> Origin {
        Origin {
            topic: record.topic().to_string(),
            partition: record.partition(),
            offset: record.offset(),
            timestamp: record.timestamp().to_millis(),
        }
    }
}

/// A record's move to a retry stage.
#[derive(Debug, Clone)]
pub(crate) struct Forward {
    pub(crate) stage: u32,
    pub(crate) not_before: SystemTime,
    pub(crate) origin: Origin,
    pub(crate) total_attempts: u32,
    pub(crate) error: String,
}

/// Publishes `record` to the retry topic of `forward`'s stage and returns once the broker has stored it.
pub(crate) async fn send(
    producer: &FutureProducer,
    record: &OwnedMessage,
    forward: &Forward,
) -> Result<(), KafkaError> {
    let topic = retry_topic(&forward.origin.topic, forward.stage);
    let mut headers = original_headers(record, 8);
    let mut added = vec![
        (ATTEMPT, forward.stage.to_string()),
        (
            NOT_BEFORE,
            millis_since_epoch(forward.not_before).to_string(),
        ),
        (ORIGINAL_TOPIC, forward.origin.topic.clone()),
        (ORIGINAL_PARTITION, forward.origin.partition.to_string()),
        (ORIGINAL_OFFSET, forward.origin.offset.to_string()),
    ];
    if let Some(millis) = forward.origin.timestamp {
        added.push((ORIGINAL_TIMESTAMP, millis.to_string()));
    }
    added.push((TOTAL_ATTEMPTS, forward.total_attempts.to_string()));
    added.push((ERROR, forward.error.clone()));
    for (key, value) in &added {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let mut retried = FutureRecord::<[u8], [u8]>::to(&topic).headers(headers);
    if let Some(key) = record.key() {
        retried = retried.key(key);
    }
    if let Some(payload) = record.payload() {
        retried = retried.payload(payload);
    }
    producer
        .send(retried, Timeout::After(Duration::from_secs(5)))
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// The headers of `record` without the retry headers, with room for `extra` more.
pub(crate) fn original_headers(record: &OwnedMessage, extra: usize) -> OwnedHeaders {
    match record.headers() {
        Some(original) => {
            let mut copy = OwnedHeaders::new_with_capacity(original.count() + extra);
            for h in original.iter() {
                if !h.key.starts_with(HEADER_PREFIX) {
                    copy = copy.insert(h);
                }
            }
            copy
        }
        None => OwnedHeaders::new_with_capacity(extra),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_are_numbered_from_one() {
        let stages = RetryTopics::new([Duration::from_secs(5), Duration::from_secs(60)]);
        assert_eq!(stages.stages(), 2);
        assert_eq!(stages.delay(0), None);
        assert_eq!(stages.delay(1), Some(Duration::from_secs(5)));
        assert_eq!(stages.delay(2), Some(Duration::from_secs(60)));
        assert_eq!(stages.delay(3), None);
        assert_eq!(retry_topic("orders", 2), "orders.retry.2");
    }
}
