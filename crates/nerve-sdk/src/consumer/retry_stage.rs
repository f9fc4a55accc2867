//! The runtime's side of retry topics ([`crate::retry_topic`]): which topics are retry stages, where a
//! record came from, the wait until a retried record is due, the move to the next stage, and the retry
//! topics' creation at start.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::{mpsc, watch};

use super::partition::{pause, Outcome, Shared};
use super::ConsumerError;
use crate::envelope::header_text;
use crate::retry_topic::{self, Forward, Origin, RetryTopics};

/// How long start waits for the cluster's metadata and for the retry topics' creation.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The retry stages of the subscribed topics.
#[derive(Debug, Clone, Default)]
pub(crate) struct Routes {
    stages: Option<RetryTopics>,
    /// Retry topic → (original topic, stage).
    retry: HashMap<String, (String, u32)>,
}

impl Routes {
    pub(crate) fn new(topics: &[String], stages: Option<RetryTopics>) -> Routes {
        let Some(stages) = stages.filter(|s| s.stages() > 0) else {
            return Routes::default();
        };
        let mut retry = HashMap::new();
        for topic in topics {
            for stage in 1..=stages.stages() {
                retry.insert(
                    retry_topic::retry_topic(topic, stage),
                    (topic.clone(), stage),
                );
            }
        }
        Routes {
            stages: Some(stages),
            retry,
        }
    }

    /// The retry topics to subscribe to, in a stable order.
    pub(crate) fn retry_topics(&self) -> Vec<String> {
        let mut topics: Vec<String> = self.retry.keys().cloned().collect();
        topics.sort();
        topics
    }

    pub(crate) fn is_retry_topic(&self, topic: &str) -> bool {
        self.retry.contains_key(topic)
    }

    /// The stage after `provenance`'s and its delay, if there is one.
    fn next(&self, provenance: &Provenance) -> Option<(u32, Duration)> {
        let stage = provenance.stage.checked_add(1)?;
        let delay = self.stages.as_ref()?.delay(stage)?;
        Some((stage, delay))
    }
}

/// Where a record stands: the stage it is in, where it was first published, and the handler's attempts
/// before this stage.
#[derive(Debug, Clone)]
pub(crate) struct Provenance {
    /// 0 for the subscribed topic itself.
    pub(crate) stage: u32,
    pub(crate) origin: Origin,
    pub(crate) prior_attempts: u32,
}

impl Provenance {
    pub(crate) fn of(routes: &Routes, record: &OwnedMessage) -> Provenance {
        let Some((original, stage)) = routes.retry.get(record.topic()) else {
            return Provenance {
                stage: 0,
                origin: Origin::of(record),
                prior_attempts: 0,
            };
        };
        let partition = number(record, retry_topic::ORIGINAL_PARTITION);
        let offset = number(record, retry_topic::ORIGINAL_OFFSET);
        let origin = match (partition, offset) {
            (Some(partition), Some(offset)) => Origin {
                topic: original.clone(),
                partition,
                offset,
                timestamp: number(record, retry_topic::ORIGINAL_TIMESTAMP),
            },
            // Not forwarded by this runtime (written by hand, or by something else): the retry topic's
            // own coordinates are all there is to name it by, under the topic it is retried for.
            _ => {
                tracing::warn!(
                    topic = record.topic(),
                    partition = record.partition(),
                    offset = record.offset(),
                    "a record in a retry topic without valid original-partition/offset headers"
                );
                Origin {
                    topic: original.clone(),
                    ..Origin::of(record)
                }
            }
        };
        Provenance {
            stage: *stage,
            origin,
            prior_attempts: number(record, retry_topic::TOTAL_ATTEMPTS).unwrap_or(0),
        }
    }
}

/// The header `name` of `record` as a number; `None` if it is missing or not one.
fn number<T: std::str::FromStr>(record: &OwnedMessage, name: &'static str) -> Option<T> {
    let headers = record.headers()?;
    header_text(headers, name).ok()??.parse().ok()
}

/// When `record` is due: its `nerve-retry-not-before`, or now if it has none that parses.
fn not_before(record: &OwnedMessage) -> SystemTime {
    match number::<u64>(record, retry_topic::NOT_BEFORE) {
        Some(millis) => UNIX_EPOCH + Duration::from_millis(millis),
        None => {
            tracing::warn!(
                topic = record.topic(),
                partition = record.partition(),
                offset = record.offset(),
                "a record in a retry topic without a valid not-before header: due now"
            );
            SystemTime::UNIX_EPOCH
        }
    }
}

/// Passes the records of a retry partition from `input` on to the partition task once each is due.
///
/// Only the head waits: a stage's delay is the same for all its records, so they fall due in the order
/// they were forwarded, which is their offset order. The partition task and the consumer's poll loop go
/// on meanwhile; the records held here count as received and not done, so they are never committed past
/// and fill the partition's buffer until the poll loop pauses it. Ends when `stop` turns true (the
/// records still waiting are left to the partition's next owner) or either channel closes.
pub(crate) async fn gate(
    mut input: mpsc::UnboundedReceiver<OwnedMessage>,
    output: mpsc::UnboundedSender<OwnedMessage>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let record = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => return,
            record = input.recv() => match record {
                Some(record) => record,
                None => return,
            },
        };
        let due = not_before(&record);
        // Sleeping on the monotonic clock may end a little before the wall clock reaches `due` (the two
        // drift): check again until it has.
        while let Ok(left) = due.duration_since(SystemTime::now()) {
            if left.is_zero() {
                break;
            }
            tracing::debug!(
                topic = record.topic(),
                partition = record.partition(),
                offset = record.offset(),
                ?left,
                "waiting until the retry is due"
            );
            if !pause(left, &mut stop).await {
                return;
            }
        }
        if output.send(record).is_err() {
            return;
        }
    }
}

/// Publishes `record` to the stage after its own, if there is one, retrying until it is stored (or the
/// partition is let go): only then may the partition commit past the record. `None` after the last
/// stage: the record is for the dead-letter topic.
pub(crate) async fn forward(
    shared: &Shared,
    record: &OwnedMessage,
    provenance: &Provenance,
    error: &str,
    attempts: u32,
    mut stop: watch::Receiver<bool>,
) -> Option<Outcome> {
    let (stage, delay) = shared.routes.next(provenance)?;
    let forward = Forward {
        stage,
        not_before: SystemTime::now() + delay,
        origin: provenance.origin.clone(),
        total_attempts: provenance.prior_attempts.saturating_add(attempts),
        error: error.to_string(),
    };
    let topic = retry_topic::retry_topic(&forward.origin.topic, stage);
    tracing::warn!(%error, attempts, %topic, ?delay, "handler failed, retrying later from a retry topic");
    let mut backoff = Duration::from_millis(100);
    loop {
        match retry_topic::send(&shared.dlq_producer, record, &forward).await {
            Ok(()) => return Some(Outcome::Done),
            Err(e) => {
                tracing::warn!(error = %e, %topic, "record not stored in the retry topic, retrying");
                if !pause(backoff, &mut stop).await {
                    return Some(Outcome::Abandoned);
                }
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Creates the retry topics that do not exist yet, each with the partitions and replication factor of its
/// original topic. Blocks for up to a few round trips to the cluster. The retry topics of an original
/// topic that does not exist yet are left to the broker's automatic topic creation.
pub(crate) fn ensure_topics(config: &ClientConfig, routes: &Routes) -> Result<(), ConsumerError> {
    if routes.retry.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = config.create().map_err(ConsumerError::Kafka)?;
    let metadata = admin
        .inner()
        .fetch_metadata(None, ADMIN_TIMEOUT)
        .map_err(ConsumerError::RetryTopics)?;
    let existing: HashSet<&str> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| t.name())
        .collect();
    let shape = |topic: &str| {
        let found = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())?;
        let partitions = i32::try_from(found.partitions().len()).ok()?;
        let replicas = found
            .partitions()
            .first()
            .map_or(1, |p| i32::try_from(p.replicas().len()).unwrap_or(1));
        Some((partitions, replicas.max(1)))
    };
    let mut missing = Vec::new();
    for name in routes.retry_topics() {
        if existing.contains(name.as_str()) {
            continue;
        }
        let Some((original, _)) = routes.retry.get(&name) else {
            continue;
        };
        match shape(original) {
            Some((partitions, replicas)) if partitions > 0 => {
                missing.push((name, partitions, replicas));
            }
            _ => tracing::warn!(
                topic = %name,
                %original,
                "the original topic does not exist yet: its retry topic is left to the broker's automatic creation"
            ),
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|(name, partitions, replicas)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(*replicas))
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    // The admin client answers from a thread of its own, so the future completes without a tokio runtime.
    let results = futures::executor::block_on(admin.create_topics(&new_topics, &options))
        .map_err(ConsumerError::RetryTopics)?;
    for result in results {
        match result {
            Ok(topic) => tracing::info!(%topic, "retry topic created"),
            // Another instance of the service created it first.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(ConsumerError::RetryTopicNotCreated {
                    topic,
                    source: KafkaError::AdminOp(code),
                })
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::Timestamp;

    use super::*;
    use crate::envelope::millis_since_epoch;

    /// A record of `orders.retry.1` due at `not_before` (to the millisecond, as the header has it).
    fn waiting(offset: i64, not_before: Option<SystemTime>) -> (OwnedMessage, SystemTime) {
        let mut headers = OwnedHeaders::new();
        let mut due = UNIX_EPOCH;
        if let Some(at) = not_before {
            let millis = millis_since_epoch(at);
            due = UNIX_EPOCH + Duration::from_millis(millis);
            headers = headers.insert(Header {
                key: retry_topic::NOT_BEFORE,
                value: Some(&millis.to_string()),
            });
        }
        let record = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(b"k".to_vec()),
            "orders.retry.1".to_string(),
            Timestamp::NotAvailable,
            0,
            offset,
            Some(headers),
        );
        (record, due)
    }

    #[tokio::test]
    async fn the_gate_passes_records_on_in_order_once_each_is_due() {
        let (input, input_rx) = mpsc::unbounded_channel();
        let (output, mut output_rx) = mpsc::unbounded_channel();
        let (_stop, stop_rx) = watch::channel(false);
        tokio::spawn(gate(input_rx, output, stop_rx));
        let at = SystemTime::now() + Duration::from_millis(300);
        let (first, due) = waiting(0, Some(at));
        let (second, _) = waiting(1, Some(at));
        // Due at once, but behind the others.
        let (third, _) = waiting(2, None);
        for record in [first, second, third] {
            input.send(record).expect("the gate is running");
        }
        for offset in 0..3 {
            let record = output_rx.recv().await.expect("passed on");
            assert_eq!(record.offset(), offset, "in offset order");
            assert!(SystemTime::now() >= due, "offset {offset} passed on early");
        }
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait_and_keeps_the_record_back() {
        let (input, input_rx) = mpsc::unbounded_channel();
        let (output, mut output_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let gate = tokio::spawn(gate(input_rx, output, stop_rx));
        let (record, _) = waiting(0, Some(SystemTime::now() + Duration::from_secs(3600)));
        input.send(record).expect("the gate is running");
        // Time for the gate to take the record and start waiting (a stop before that ends it too).
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop.send(true).expect("the gate listens");
        tokio::time::timeout(Duration::from_secs(60), gate)
            .await
            .expect("the gate ends without waiting for the record")
            .expect("no panic");
        assert!(output_rx.recv().await.is_none(), "nothing passed on");
    }

    #[test]
    fn each_subscribed_topic_gets_its_own_stages() {
        let topics = ["orders".to_string(), "payments".to_string()];
        let stages = RetryTopics::new([Duration::from_secs(1), Duration::from_secs(2)]);
        let routes = Routes::new(&topics, Some(stages));
        assert_eq!(
            routes.retry_topics(),
            [
                "orders.retry.1",
                "orders.retry.2",
                "payments.retry.1",
                "payments.retry.2"
            ]
        );
        assert!(routes.is_retry_topic("payments.retry.2"));
        assert!(!routes.is_retry_topic("orders"));
        assert!(!routes.is_retry_topic("orders.retry.3"));
        let at = |stage| Provenance {
            stage,
            origin: Origin {
                topic: "orders".to_string(),
                partition: 0,
                offset: 0,
                timestamp: None,
            },
            prior_attempts: 0,
        };
        assert_eq!(routes.next(&at(0)), Some((1, Duration::from_secs(1))));
        assert_eq!(routes.next(&at(1)), Some((2, Duration::from_secs(2))));
        assert_eq!(routes.next(&at(2)), None, "after the last stage: the DLQ");
    }

    #[test]
    fn no_delays_means_no_retry_topics() {
        let routes = Routes::new(&["orders".to_string()], Some(RetryTopics::new([])));
        assert!(routes.retry_topics().is_empty());
        assert!(Routes::new(&["orders".to_string()], None)
            .retry_topics()
            .is_empty());
    }
}
