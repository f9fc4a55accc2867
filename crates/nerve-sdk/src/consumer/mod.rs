//! The consumer runtime: subscribes a consumer group to topics, hands each record to the handler of its
//! event type, and commits a partition's offset only past records whose handling is over (handled, or
//! dead-lettered): at-least-once.
//!
//! - Dispatch: by the `nerve-event-type` header. Records of types without a handler are skipped (a topic
//!   may carry types this service does not care about); records without a valid envelope go to the
//!   dead-letter topic.
//! - Ordering: within a partition, records with the same key are handled one after the other in offset
//!   order; records with different keys run concurrently, up to [`ConsumerBuilder::concurrency`] per
//!   partition. Records without a key count as one key.
//! - Failures: see [`crate::retry`] and [`crate::dlq`]. A record is committed past only once it was
//!   handled or its dead letter is stored.
//! - Retry topics ([`crate::retry_topic`], [`ConsumerBuilder::retry_topics`]): a record that still fails
//!   after its in-place retries moves to `<topic>.retry.<n>` and the partition goes on without it. The
//!   runtime subscribes to the retry topics too and holds each retry partition's records until they are
//!   due; a record is committed past once it is stored in the next stage. Records that moved to a retry
//!   topic no longer hold back their key's later records.
//! - Rebalances and [`ConsumerRuntime::shutdown`]: on the partitions given up, the handlers running finish
//!   (retries waiting for their backoff give up), and so do the records waiting below the highest offset
//!   started (one attempt each), so that the commit passes every record done; no later record starts. What
//!   is done is committed while the partition is still this member's, and the rest is left to whoever
//!   consumes the partition next.
//!   Lost partitions (an expired session) are drained without a commit. With the eager protocol a
//!   rebalance revokes every partition; with the cooperative one (`partition.assignment.strategy =
//!   cooperative-sticky`) only those that move, and the kept partitions' tasks run on untouched: see
//!   `poll`'s `rebalance`.
//!
//! The Kafka consumer runs on a thread of its own (librdkafka's rebalance callback blocks while handlers
//! drain); handlers run as tokio tasks on the runtime that called [`ConsumerBuilder::start`].

mod partition;
mod poll;
mod retry_stage;
mod tracker;

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;

use crate::codec::Codec;
use crate::envelope::{Envelope, PublishContext};
use crate::metrics::{ConsumerMetrics, SdkMetrics};
use crate::retry::{HandlerError, RetryPolicy};
use crate::retry_topic::RetryTopics;
use crate::Event;

/// Handles the events of type `E`.
#[async_trait]
pub trait Handler<E: Event>: Send + Sync + 'static {
    async fn handle(&self, ctx: &EventContext, event: E) -> Result<(), HandlerError>;

    /// The name in logs and in dead letters' `nerve-dlq-handler`.
    fn name(&self) -> String {
        std::any::type_name::<Self>().to_string()
    }
}

/// What a handler knows about the record it handles.
#[derive(Debug, Clone)]
pub struct EventContext {
    pub envelope: Envelope,
    /// The topic the record was read from: a retry topic (`orders.retry.2`) in a retry stage.
    pub topic: String,
    /// The record's partition in [`EventContext::topic`].
    pub partition: i32,
    /// The record's offset in [`EventContext::topic`].
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// The record's timestamp, milliseconds since the Unix epoch.
    pub timestamp: Option<i64>,
    /// 1 on the first attempt of the current stage: the in-place retries start again in each retry stage.
    pub attempt: u32,
    /// 0 for a record of a subscribed topic, `n` for one read from its retry topic `<topic>.retry.<n>`.
    pub retry_stage: u32,
    /// The subscribed topic the record was first published to: [`EventContext::topic`] in stage 0.
    pub original_topic: String,
}

impl EventContext {
    /// The context for events published because of this one: same correlation id and trace, this event as
    /// the cause. With OpenTelemetry active the trace context is the current span's (the runtime's
    /// `nerve_sdk.handle` span, or a span of the handler within it), so that follow-up events continue the
    /// trace below the handling; otherwise the record's own `traceparent`.
    pub fn follow_up(&self) -> PublishContext {
        PublishContext {
            correlation_id: Some(self.envelope.correlation_id.clone()),
            causation_id: Some(self.envelope.event_id.to_string()),
            traceparent: crate::trace_context::current()
                .or_else(|| self.envelope.traceparent.clone()),
        }
    }
}

/// Why the runtime could not start or ended badly.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("the consumer cannot be created: {0}")]
    Kafka(#[from] KafkaError),
    #[error("the consumer runtime needs a tokio runtime: {0}")]
    NoRuntime(String),
    #[error("nothing to consume: no topic subscribed")]
    NoTopics,
    #[error("the consumer's thread cannot be started: {0}")]
    Thread(std::io::Error),
    #[error("the consumer's thread panicked")]
    Panicked,
    #[error("the retry topics cannot be checked or created: {0}")]
    RetryTopics(KafkaError),
    #[error("retry topic {topic} does not exist and cannot be created: {source}")]
    RetryTopicNotCreated { topic: String, source: KafkaError },
}

/// Configures and starts a [`ConsumerRuntime`].
pub struct ConsumerBuilder<C: Codec> {
    config: ClientConfig,
    codec: Arc<C>,
    topics: Vec<String>,
    handlers: HashMap<&'static str, Arc<dyn Dispatch>>,
    settings: Settings,
    retry_topics: Option<RetryTopics>,
    metrics: Option<SdkMetrics>,
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) retry: RetryPolicy,
    pub(crate) concurrency: usize,
    pub(crate) max_buffered: usize,
    pub(crate) commit_interval: Duration,
    pub(crate) drain_timeout: Duration,
}

impl<C: Codec> ConsumerBuilder<C> {
    /// A runtime with the rdkafka settings of `config`, which needs `bootstrap.servers` and `group.id`.
    /// The runtime commits itself (`enable.auto.commit` and `enable.auto.offset.store` are turned off);
    /// a group without committed offsets starts at the earliest record unless `auto.offset.reset` says
    /// otherwise.
    pub fn new(config: &ClientConfig, codec: C) -> ConsumerBuilder<C> {
        ConsumerBuilder {
            config: config.clone(),
            codec: Arc::new(codec),
            topics: Vec::new(),
            handlers: HashMap::new(),
            retry_topics: None,
            settings: Settings {
                retry: RetryPolicy::default(),
                concurrency: 16,
                max_buffered: 1000,
                commit_interval: Duration::from_secs(1),
                drain_timeout: Duration::from_secs(30),
            },
            metrics: None,
        }
    }

    pub fn subscribe(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Handles the events of type `E` with `handler`; a second handler for the same type replaces the
    /// first.
    pub fn handler<E: Event, H: Handler<E>>(mut self, handler: H) -> Self {
        let name = handler.name();
        self.handlers.insert(
            E::NAME,
            Arc::new(Typed {
                handler,
                name,
                codec: Arc::clone(&self.codec),
                event: PhantomData,
            }),
        );
        self
    }

    /// The in-place retries: the attempts a record gets before it moves to the next retry stage (with
    /// [`ConsumerBuilder::retry_topics`]) or to the dead-letter topic. They run again in each stage.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.settings.retry = policy;
        self
    }

    /// Delayed retries that do not hold up the partition: a record that still fails transiently after
    /// the in-place attempts moves to `<topic>.retry.1`, is handled again once the first delay has passed,
    /// and so on through the stages; after the last one it goes to `<topic>.dlq`. The runtime subscribes to
    /// the retry topics of every subscribed topic, and [`ConsumerBuilder::start`] creates those that do
    /// not exist (with the original topic's partitions and replication factor). A moved record no longer
    /// holds back its key's later records: see [`crate::retry_topic`].
    pub fn retry_topics(mut self, stages: RetryTopics) -> Self {
        self.retry_topics = Some(stages);
        self
    }

    /// How many handlers may run at once per partition (different keys); at least 1.
    pub fn concurrency(mut self, per_partition: usize) -> Self {
        self.settings.concurrency = per_partition.max(1);
        self
    }

    /// How many records of a partition may wait or run before the partition is paused.
    pub fn max_buffered(mut self, per_partition: usize) -> Self {
        self.settings.max_buffered = per_partition.max(1);
        self
    }

    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.settings.commit_interval = interval;
        self
    }

    /// How long a rebalance or shutdown waits for running handlers before committing what is done.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.settings.drain_timeout = timeout;
        self
    }

    /// Counts handled, failed, retried and dead-lettered events, handler durations and consumer lag in
    /// `metrics` (see [`crate::metrics`]). The lag comes from librdkafka's statistics, every
    /// `statistics.interval.ms` of the config (5 s unless it sets one).
    pub fn metrics(mut self, metrics: SdkMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Subscribes and starts consuming. Must be called within a tokio runtime, which runs the handlers.
    ///
    /// With retry topics, it first asks the cluster which of them exist and creates the others, blocking
    /// the calling thread for those round trips (30 s at most each): an error then means that the cluster
    /// cannot be reached or refuses to create them (create them like the topics themselves, e.g.
    /// `nerve topic create orders.retry.1 --partitions 3`).
    pub fn start(self) -> Result<ConsumerRuntime, ConsumerError> {
        if self.topics.is_empty() {
            return Err(ConsumerError::NoTopics);
        }
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| ConsumerError::NoRuntime(e.to_string()))?;
        let mut config = self.config;
        config
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        if config.get("auto.offset.reset").is_none() {
            config.set("auto.offset.reset", "earliest");
        }
        if self.metrics.is_some() && config.get("statistics.interval.ms").is_none() {
            config.set("statistics.interval.ms", "5000");
        }
        // The dead-letter producer shares the connection settings, not the consumer-only ones.
        let mut producer_config = ClientConfig::new();
        for (key, value) in config.config_map() {
            if !is_consumer_only(key) {
                producer_config.set(key, value);
            }
        }
        let routes = retry_stage::Routes::new(&self.topics, self.retry_topics);
        retry_stage::ensure_topics(&producer_config, &routes)?;
        let mut topics = self.topics;
        topics.extend(routes.retry_topics());
        let mut seen = std::collections::HashSet::new();
        topics.retain(|topic| seen.insert(topic.clone()));
        let dlq_producer = crate::producer::durable_producer(&producer_config)?;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = Arc::new(partition::Shared {
            handlers: self.handlers,
            settings: self.settings,
            dlq_producer,
            routes,
            metrics: self.metrics.map(ConsumerMetrics::new),
        });
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        let thread = poll::start(config, topics, shared, runtime, Arc::clone(&stop), done_tx)?;
        Ok(ConsumerRuntime {
            stop,
            done: Some(done_rx),
            thread: Some(thread),
        })
    }
}

/// Keys that librdkafka rejects (or warns about) on a producer, or that a producer does not need.
fn is_consumer_only(key: &str) -> bool {
    key.starts_with("group.")
        || key.starts_with("enable.auto.")
        || key.starts_with("auto.")
        || key.starts_with("session.")
        || key.starts_with("heartbeat.")
        || key.starts_with("partition.assignment")
        || key.starts_with("max.poll")
        || key.starts_with("fetch.")
        || key.starts_with("isolation.")
        || key == "enable.partition.eof"
        // The consumer's statistics feed its lag gauge; the dead-letter producer's would go unread.
        || key == "statistics.interval.ms"
}

/// A running consumer. Dropping it stops it too, without waiting.
#[derive(Debug)]
pub struct ConsumerRuntime {
    stop: Arc<AtomicBool>,
    done: Option<tokio::sync::oneshot::Receiver<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ConsumerRuntime {
    /// Stops taking records, waits for the running handlers (up to the drain timeout), commits what is
    /// done, and leaves the group.
    pub async fn shutdown(mut self) -> Result<(), ConsumerError> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(done) = self.done.take() {
            // An error only means the thread ended without a word: its join says how.
            let _ = done.await;
        }
        match self.thread.take() {
            Some(thread) => tokio::task::spawn_blocking(move || thread.join())
                .await
                .map_err(|_| ConsumerError::Panicked)?
                .map_err(|_| ConsumerError::Panicked),
            None => Ok(()),
        }
    }
}

impl Drop for ConsumerRuntime {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Why one attempt failed, whatever failed.
#[derive(Debug)]
pub(crate) enum Failure {
    Transient(String),
    Permanent(String),
}

/// A handler with its event type erased: decodes the payload and calls it.
#[async_trait]
pub(crate) trait Dispatch: Send + Sync {
    fn name(&self) -> &str;
    async fn dispatch(&self, ctx: &EventContext, payload: Option<&[u8]>) -> Result<(), Failure>;
}

struct Typed<E, H, C> {
    handler: H,
    name: String,
    codec: Arc<C>,
    event: PhantomData<fn() -> E>,
}

#[async_trait]
impl<E: Event, H: Handler<E>, C: Codec> Dispatch for Typed<E, H, C> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn dispatch(&self, ctx: &EventContext, payload: Option<&[u8]>) -> Result<(), Failure> {
        let Some(payload) = payload else {
            return Err(Failure::Permanent(format!(
                "the record has no value to decode as {}",
                E::NAME
            )));
        };
        let event: E = match self.codec.decode(&ctx.topic, payload).await {
            Ok(event) => event,
            Err(e) if e.is_transient() => return Err(Failure::Transient(e.to_string())),
            Err(e) => return Err(Failure::Permanent(e.to_string())),
        };
        self.handler.handle(ctx, event).await.map_err(|e| match e {
            HandlerError::Transient(why) => Failure::Transient(why),
            HandlerError::Permanent(why) => Failure::Permanent(why),
        })
    }
}
