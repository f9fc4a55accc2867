//! One task per assigned partition: key lanes, the concurrency limit, and each record's attempts, retries
//! and dead letter.

use std::collections::{HashMap, HashSet, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

use super::retry_stage::{self, Provenance, Routes};
use super::tracker::Tracker;
use super::{Dispatch, EventContext, Failure, Settings};
use crate::dlq::{self, Death};
use crate::envelope::Envelope;
use crate::metrics::{ConsumerMetrics, HandlerMetrics};
use crate::trace_context;

/// What every partition task shares.
pub(crate) struct Shared {
    pub(crate) handlers: HashMap<&'static str, Arc<dyn Dispatch>>,
    pub(crate) settings: Settings,
    /// Publishes dead letters and records moved to retry topics.
    pub(crate) dlq_producer: FutureProducer,
    pub(crate) routes: Routes,
    pub(crate) metrics: Option<ConsumerMetrics>,
}

pub(crate) fn lock(tracker: &Mutex<Tracker>) -> std::sync::MutexGuard<'_, Tracker> {
    // Every tracker method leaves it consistent, so a panic elsewhere while it was held changes nothing.
    tracker.lock().unwrap_or_else(PoisonError::into_inner)
}

type Key = Option<Vec<u8>>;

/// How one record's handling ended.
pub(crate) enum Outcome {
    /// Handled, skipped, moved to a retry topic, or dead-lettered: commit past it.
    Done,
    /// Given up because the partition is being let go: leave it to the next consumer.
    Abandoned,
}

/// Runs the partition until `stop` turns true or `records` closes: takes records, starts them lane by
/// lane, and marks them completed in `tracker`. Then lets it go (see [`Lanes::let_go`]) and returns.
pub(crate) async fn run(
    shared: Arc<Shared>,
    mut records: mpsc::UnboundedReceiver<OwnedMessage>,
    tracker: Arc<Mutex<Tracker>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut lanes = Lanes::new(shared, tracker);
    loop {
        lanes.start(stop.clone(), None);
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            Some(finished) = lanes.running.next(), if !lanes.running.is_empty() => {
                lanes.finished(finished);
            }
            record = records.recv() => match record {
                Some(record) => lanes.push(record),
                None => break,
            },
        }
    }
    lanes.let_go(stop).await;
}

type Running =
    futures::future::BoxFuture<'static, (Key, i64, Result<Outcome, tokio::task::JoinError>)>;

/// A partition's records by key: each key's records wait in offset order while one of them runs.
struct Lanes {
    shared: Arc<Shared>,
    tracker: Arc<Mutex<Tracker>>,
    waiting: HashMap<Key, VecDeque<OwnedMessage>>,
    /// Keys with a record running.
    active: HashSet<Key>,
    /// Keys with records waiting and none running, in the order they became so.
    ready: VecDeque<Key>,
    running: FuturesUnordered<Running>,
    /// The highest offset started so far.
    highest_started: Option<i64>,
}

impl Lanes {
    fn new(shared: Arc<Shared>, tracker: Arc<Mutex<Tracker>>) -> Lanes {
        Lanes {
            shared,
            tracker,
            waiting: HashMap::new(),
            active: HashSet::new(),
            ready: VecDeque::new(),
            running: FuturesUnordered::new(),
            highest_started: None,
        }
    }

    fn push(&mut self, record: OwnedMessage) {
        let key = record.key().map(<[u8]>::to_vec);
        let lane = self.waiting.entry(key.clone()).or_default();
        lane.push_back(record);
        if lane.len() == 1 && !self.active.contains(&key) {
            self.ready.push_back(key);
        }
    }

    /// Starts ready records up to the concurrency limit; with `below`, only records under that offset
    /// (the keys whose next record is past it are dropped from `ready`: their later records are too).
    fn start(&mut self, stop: watch::Receiver<bool>, below: Option<i64>) {
        while self.running.len() < self.shared.settings.concurrency {
            let Some(key) = self.ready.pop_front() else {
                break;
            };
            let Some(lane) = self.waiting.get_mut(&key) else {
                continue;
            };
            if below.is_some_and(|below| lane.front().is_some_and(|r| r.offset() >= below)) {
                continue;
            }
            let Some(record) = lane.pop_front() else {
                continue;
            };
            if lane.is_empty() {
                self.waiting.remove(&key);
            }
            self.active.insert(key.clone());
            let offset = record.offset();
            self.highest_started = self.highest_started.max(Some(offset));
            let task = tokio::spawn(handle(Arc::clone(&self.shared), record, stop.clone()));
            self.running
                .push(task.map(move |result| (key, offset, result)).boxed());
        }
    }

    fn finished(
        &mut self,
        (key, offset, result): (Key, i64, Result<Outcome, tokio::task::JoinError>),
    ) {
        if let Ok(Outcome::Done) = result {
            lock(&self.tracker).completed(offset);
        }
        self.active.remove(&key);
        if self.waiting.contains_key(&key) {
            self.ready.push_back(key);
        }
    }

    /// Lets the partition go (revoked, lost, or shutting down): the running handlers finish, and so do the
    /// records waiting below the highest offset started, so that the commit can pass every record that
    /// is done and the next owner redoes none of them. Those get one attempt each (`stop` is set: a
    /// failure does not wait for a retry) and start only during the first half of the drain timeout,
    /// leaving the rest for them to finish. The records above stay pending: the commit stops below them.
    async fn let_go(mut self, stop: watch::Receiver<bool>) {
        let below = self.highest_started;
        let gaps_until = Instant::now() + self.shared.settings.drain_timeout / 2;
        loop {
            if below.is_some() && Instant::now() < gaps_until {
                self.start(stop.clone(), below);
            }
            let Some(finished) = self.running.next().await else {
                break;
            };
            self.finished(finished);
        }
    }
}

/// One record, from its envelope to done: attempts, backoffs, and the next retry stage or the dead letter.
async fn handle(shared: Arc<Shared>, record: OwnedMessage, stop: watch::Receiver<bool>) -> Outcome {
    let provenance = Provenance::of(&shared.routes, &record);
    let envelope = match record.headers().map(Envelope::from_headers) {
        Some(Ok(envelope)) => envelope,
        Some(Err(e)) => {
            let why = format!("not a valid event envelope: {e}");
            return dead_letter(&shared, &record, &provenance, why, 0, "none", stop).await;
        }
        None => {
            let why = "not a valid event envelope: the record has no headers".to_string();
            return dead_letter(&shared, &record, &provenance, why, 0, "none", stop).await;
        }
    };
    let span = tracing::info_span!(
        "nerve_sdk.handle",
        otel.kind = "consumer",
        event_type = %envelope.event_type,
        event_id = %envelope.event_id,
        correlation_id = %envelope.correlation_id,
        topic = record.topic(),
        partition = record.partition(),
        offset = record.offset(),
        retry_stage = provenance.stage,
    );
    trace_context::continue_trace(
        &span,
        &envelope,
        record.topic(),
        record.partition(),
        record.offset(),
    );
    async move {
        let Some(dispatch) = shared.handlers.get(envelope.event_type.as_str()).cloned() else {
            tracing::debug!("no handler for this event type: skipped");
            return Outcome::Done;
        };
        let mut ctx = EventContext {
            envelope,
            topic: record.topic().to_string(),
            partition: record.partition(),
            offset: record.offset(),
            key: record.key().map(<[u8]>::to_vec),
            timestamp: record.timestamp().to_millis(),
            attempt: 0,
            retry_stage: provenance.stage,
            original_topic: provenance.origin.topic.clone(),
        };
        let mut stop = stop;
        let metrics = HandlerMetrics::of(
            shared.metrics.as_ref(),
            &ctx.topic,
            &ctx.envelope.event_type,
            dispatch.name(),
        );
        loop {
            ctx.attempt += 1;
            let started = Instant::now();
            let attempt = AssertUnwindSafe(dispatch.dispatch(&ctx, record.payload()))
                .catch_unwind()
                .await;
            metrics.attempt(started.elapsed(), &attempt);
            let why = match attempt {
                Ok(Ok(())) => {
                    tracing::debug!(attempt = ctx.attempt, "handled");
                    return Outcome::Done;
                }
                Ok(Err(Failure::Permanent(why))) => why,
                Err(panic) => format!("the handler panicked: {}", panic_message(&*panic)),
                Ok(Err(Failure::Transient(why))) => match shared.settings.retry.backoff(ctx.attempt) {
                    Some(delay) => {
                        tracing::warn!(attempt = ctx.attempt, error = %why, ?delay, "handler failed, retrying");
                        metrics.retried();
                        if !pause(delay, &mut stop).await {
                            return Outcome::Abandoned;
                        }
                        continue;
                    }
                    None => {
                        let forwarded = retry_stage::forward(
                            &shared,
                            &record,
                            &provenance,
                            &why,
                            ctx.attempt,
                            stop.clone(),
                        );
                        if let Some(outcome) = forwarded.await {
                            if matches!(outcome, Outcome::Done) {
                                metrics.retried();
                            }
                            return outcome;
                        }
                        why
                    }
                },
            };
            let (attempts, handler) = (ctx.attempt, dispatch.name());
            return dead_letter(&shared, &record, &provenance, why, attempts, handler, stop).await;
        }
    }
    .instrument(span)
    .await
}

/// Publishes the dead letter, retrying until it is stored (or the partition is let go): only a stored dead
/// letter lets the partition commit past the record. `attempts` are this stage's; the dead letter counts
/// the earlier stages' too.
async fn dead_letter(
    shared: &Shared,
    record: &OwnedMessage,
    provenance: &Provenance,
    error: String,
    attempts: u32,
    handler: &str,
    mut stop: watch::Receiver<bool>,
) -> Outcome {
    let attempts = provenance.prior_attempts.saturating_add(attempts);
    tracing::error!(%error, attempts, handler, "giving up on the record: to the dead-letter topic");
    let death = Death {
        error,
        attempts,
        handler: handler.to_string(),
        origin: provenance.origin.clone(),
    };
    let mut delay = Duration::from_millis(100);
    loop {
        match dlq::send(&shared.dlq_producer, record, &death).await {
            Ok(()) => {
                if let Some(metrics) = &shared.metrics {
                    metrics.dead_lettered(record, handler);
                }
                return Outcome::Done;
            }
            Err(e) => {
                tracing::warn!(error = %e, topic = %dlq::dlq_topic(&death.origin.topic), "dead letter not stored, retrying");
                if !pause(delay, &mut stop).await {
                    return Outcome::Abandoned;
                }
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Sleeps for `delay`; `false` if the partition is let go first.
pub(crate) async fn pause(delay: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = stop.wait_for(|stop| *stop) => false,
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::PublishContext;
    use crate::retry::RetryPolicy;
    use rdkafka::config::ClientConfig;
    use rdkafka::message::Timestamp;
    use tokio::sync::Notify;

    const EVENT: &str = "test.Gated";

    /// Holds offset 0 until released; notes every offset it handled.
    struct Gated {
        release: Arc<Notify>,
        handled: Arc<Mutex<Vec<i64>>>,
    }

    #[async_trait::async_trait]
    impl Dispatch for Gated {
        fn name(&self) -> &str {
            "gated"
        }

        async fn dispatch(&self, ctx: &EventContext, _: Option<&[u8]>) -> Result<(), Failure> {
            if ctx.offset == 0 {
                self.release.notified().await;
            }
            self.handled
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(ctx.offset);
            Ok(())
        }
    }

    fn record(offset: i64, key: &str) -> OwnedMessage {
        let envelope = Envelope::new(EVENT, 1, &PublishContext::default());
        OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(key.as_bytes().to_vec()),
            "gated".to_string(),
            Timestamp::NotAvailable,
            0,
            offset,
            Some(envelope.to_headers()),
        )
    }

    #[tokio::test]
    async fn letting_go_finishes_the_records_waiting_below_those_done_so_the_commit_passes_them() {
        let (release, handled) = (Arc::new(Notify::new()), Arc::new(Mutex::new(Vec::new())));
        let gated: Arc<dyn Dispatch> = Arc::new(Gated {
            release: Arc::clone(&release),
            handled: Arc::clone(&handled),
        });
        // Never used: no record fails. Creating a producer does not connect.
        let dlq_producer = ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:9")
            .create()
            .expect("a producer");
        let shared = Arc::new(Shared {
            handlers: HashMap::from([(EVENT, gated)]),
            settings: Settings {
                retry: RetryPolicy::default(),
                concurrency: 2,
                max_buffered: 100,
                commit_interval: Duration::from_secs(1),
                drain_timeout: Duration::from_secs(60),
            },
            dlq_producer,
            routes: Routes::new(&["gated".to_string()], None),
            metrics: None,
        });
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let (records, records_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(run(shared, records_rx, Arc::clone(&tracker), stop_rx));
        // Key b: 0 runs until released, 1 waits behind it. Key a: 2 and 3 run and are done.
        for (offset, key) in [(0, "b"), (1, "b"), (2, "a"), (3, "a")] {
            assert!(lock(&tracker).received(offset));
            records.send(record(offset, key)).expect("the task runs");
        }
        let started = Instant::now();
        while handled.lock().unwrap_or_else(PoisonError::into_inner).len() < 2 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "2 and 3 never done"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(lock(&tracker).position(), Some(0));

        stop.send(true).expect("the task runs");
        release.notify_one();
        task.await.expect("the task did not panic");

        let mut handled = handled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        handled.sort_unstable();
        assert_eq!(
            handled,
            [0, 1, 2, 3],
            "1 was waiting below 3, which was done"
        );
        assert_eq!(
            lock(&tracker).position(),
            Some(4),
            "the commit passes every record done: the next owner redoes none"
        );
    }
}
