//! The consumer's own thread: polls, routes records to partition tasks, pauses partitions that fall
//! behind, commits, and drains partitions on revocation and shutdown.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, watch};

use super::partition::{self, lock, Shared};
use super::retry_stage;
use super::tracker::Tracker;
use super::ConsumerError;

const POLL: Duration = Duration::from_millis(100);

type Tp = (String, i32);

/// A partition this consumer works on.
struct Assigned {
    records: mpsc::UnboundedSender<OwnedMessage>,
    tracker: Arc<Mutex<Tracker>>,
    stop: watch::Sender<bool>,
    /// Says when the partition task is over.
    finished: std_mpsc::Receiver<()>,
    paused: bool,
}

/// The state the poll loop and the rebalance callback share. Both run on the consumer thread (librdkafka
/// calls back from within `poll`), so the lock is never contended; it is there for `Sync`.
struct State {
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    partitions: Mutex<HashMap<Tp, Assigned>>,
    /// The assignment as the rebalance callbacks announced it: records of other partitions (fetched before
    /// a revocation) are dropped rather than handled and committed for a partition another member owns.
    owned: Mutex<HashSet<Tp>>,
}

impl State {
    fn owned(&self) -> std::sync::MutexGuard<'_, HashSet<Tp>> {
        self.owned.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn partitions(&self) -> std::sync::MutexGuard<'_, HashMap<Tp, Assigned>> {
        self.partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes the lag series of partitions given up: their next owner reports them.
    fn forget_lag(&self, partitions: &[Tp]) {
        if let Some(metrics) = &self.shared.metrics {
            metrics.forget_lag(partitions.iter().map(|(t, p)| (t.as_str(), *p)));
        }
    }

    /// Stops the partitions `which` (all if `None`), waits for their running handlers, and commits what
    /// they finished.
    fn drain(&self, consumer: &BaseConsumer<Context>, which: Option<&[Tp]>) {
        let drained: Vec<(Tp, Assigned)> = {
            let mut partitions = self.partitions();
            let keys: Vec<Tp> = match which {
                Some(which) => which.to_vec(),
                None => partitions.keys().cloned().collect(),
            };
            keys.into_iter()
                .filter_map(|tp| partitions.remove(&tp).map(|a| (tp, a)))
                .collect()
        };
        if drained.is_empty() {
            return;
        }
        for (_, assigned) in &drained {
            let _ = assigned.stop.send(true);
        }
        let deadline = Instant::now() + self.shared.settings.drain_timeout;
        for ((topic, partition), assigned) in &drained {
            let left = deadline.saturating_duration_since(Instant::now());
            if assigned.finished.recv_timeout(left).is_err() {
                tracing::warn!(
                    topic,
                    partition,
                    "handlers still running after the drain timeout: what they finish is not committed"
                );
            }
        }
        let trackers: Vec<(&Tp, &Arc<Mutex<Tracker>>)> =
            drained.iter().map(|(tp, a)| (tp, &a.tracker)).collect();
        commit(consumer, &trackers);
    }
}

pub(super) struct Context {
    state: Arc<State>,
}

impl ClientContext for Context {
    /// librdkafka's statistics, every `statistics.interval.ms`: the consumer lag of each partition.
    fn stats_raw(&self, statistics: &[u8]) {
        if let Some(metrics) = &self.state.shared.metrics {
            let owned = self.state.owned();
            metrics.record_lag(statistics, |topic, partition| {
                owned.iter().any(|(t, p)| t == topic && *p == partition)
            });
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked: Vec<Tp> = tpl
                    .elements()
                    .iter()
                    .map(|e| (e.topic().to_string(), e.partition()))
                    .collect();
                tracing::info!(?revoked, "partitions revoked: draining");
                {
                    let mut owned = self.state.owned();
                    for tp in &revoked {
                        owned.remove(tp);
                    }
                }
                self.state.forget_lag(&revoked);
                self.state.drain(consumer, Some(&revoked));
            }
            // Taken over in post_rebalance, once librdkafka has applied the assignment.
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                // librdkafka unassigns everything after a failed rebalance.
                tracing::warn!(error = %e, "rebalance failed: draining every partition");
                let lost: Vec<Tp> = self.state.owned().drain().collect();
                self.state.forget_lag(&lost);
                self.state.drain(consumer, None);
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned: Vec<Tp> = tpl
                .elements()
                .iter()
                .map(|e| (e.topic().to_string(), e.partition()))
                .collect();
            tracing::info!(?assigned, "partitions assigned");
            self.state.owned().extend(assigned);
        }
    }
}

/// Commits the positions of `trackers` that moved since their last commit.
fn commit(consumer: &BaseConsumer<Context>, trackers: &[(&Tp, &Arc<Mutex<Tracker>>)]) {
    let mut offsets = TopicPartitionList::new();
    let mut positions = Vec::new();
    for ((topic, partition), tracker) in trackers {
        if let Some(position) = lock(tracker).uncommitted() {
            if offsets
                .add_partition_offset(topic, *partition, Offset::Offset(position))
                .is_ok()
            {
                positions.push((*tracker, position));
            }
        }
    }
    if positions.is_empty() {
        return;
    }
    match consumer.commit(&offsets, CommitMode::Sync) {
        Ok(()) => {
            for (tracker, position) in positions {
                lock(tracker).mark_committed(position);
            }
            tracing::debug!(?offsets, "committed");
        }
        // The next commit tries again; after a lost partition there is none, and the next owner redoes
        // the records: at-least-once.
        Err(e) => tracing::warn!(error = %e, "commit failed"),
    }
}

/// Starts the consumer thread.
pub(super) fn start(
    config: ClientConfig,
    topics: Vec<String>,
    shared: Arc<Shared>,
    runtime: tokio::runtime::Handle,
    stop: Arc<AtomicBool>,
    done: tokio::sync::oneshot::Sender<()>,
) -> Result<std::thread::JoinHandle<()>, ConsumerError> {
    let state = Arc::new(State {
        shared,
        runtime,
        partitions: Mutex::new(HashMap::new()),
        owned: Mutex::new(HashSet::new()),
    });
    let consumer: BaseConsumer<Context> = config.create_with_context(Context {
        state: Arc::clone(&state),
    })?;
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topic_refs)?;
    std::thread::Builder::new()
        .name("nerve-sdk-consumer".to_string())
        .spawn(move || {
            run(&consumer, &state, &stop);
            // Partitions were drained and committed; closing leaves the group so that the next member
            // gets them at once rather than after the session timeout.
            drop(consumer);
            let _ = done.send(());
        })
        .map_err(ConsumerError::Thread)
}

fn run(consumer: &BaseConsumer<Context>, state: &State, stop: &AtomicBool) {
    let settings = state.shared.settings.clone();
    let mut last_commit = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        match consumer.poll(POLL) {
            Some(Ok(message)) => route(consumer, state, message.detach()),
            Some(Err(e)) => tracing::warn!(error = %e, "consumer error"),
            None => {}
        }
        if last_commit.elapsed() >= settings.commit_interval {
            resume_caught_up(consumer, state);
            let partitions = state.partitions();
            let trackers: Vec<(&Tp, &Arc<Mutex<Tracker>>)> =
                partitions.iter().map(|(tp, a)| (tp, &a.tracker)).collect();
            commit(consumer, &trackers);
            last_commit = Instant::now();
        }
    }
    tracing::info!("consumer shutting down: draining");
    state.drain(consumer, None);
    let owned: Vec<Tp> = state.owned().drain().collect();
    state.forget_lag(&owned);
    consumer.unsubscribe();
}

/// Hands `record` to its partition's task, starting the task on the partition's first record.
fn route(consumer: &BaseConsumer<Context>, state: &State, record: OwnedMessage) {
    let tp = (record.topic().to_string(), record.partition());
    if !state.owned().contains(&tp) {
        tracing::debug!(topic = %tp.0, partition = tp.1, offset = record.offset(), "record of a partition no longer owned: dropped");
        return;
    }
    let mut partitions = state.partitions();
    let assigned = partitions.entry(tp.clone()).or_insert_with(|| {
        let (records, mut records_rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = watch::channel(false);
        if state.shared.routes.is_retry_topic(&tp.0) {
            // A retry partition's records reach the partition task only once they are due.
            let (due, due_rx) = mpsc::unbounded_channel();
            state
                .runtime
                .spawn(retry_stage::gate(records_rx, due, stop_rx.clone()));
            records_rx = due_rx;
        }
        let (finished_tx, finished) = std_mpsc::channel();
        let tracker = Arc::new(Mutex::new(Tracker::default()));
        let task = partition::run(
            Arc::clone(&state.shared),
            records_rx,
            Arc::clone(&tracker),
            stop_rx,
        );
        state.runtime.spawn(async move {
            task.await;
            let _ = finished_tx.send(());
        });
        Assigned {
            records,
            tracker,
            stop,
            finished,
            paused: false,
        }
    });
    let pending = {
        let mut tracker = lock(&assigned.tracker);
        if !tracker.received(record.offset()) {
            return;
        }
        tracker.pending()
    };
    if assigned.records.send(record).is_err() {
        // The task is gone only while being drained, and then the record stays pending: not committed.
        return;
    }
    if pending >= state.shared.settings.max_buffered
        && !assigned.paused
        && set_paused(consumer, &tp, true)
    {
        assigned.paused = true;
    }
}

/// Resumes paused partitions that worked off half of what they had.
fn resume_caught_up(consumer: &BaseConsumer<Context>, state: &State) {
    let low = state.shared.settings.max_buffered / 2;
    for (tp, assigned) in state.partitions().iter_mut() {
        if assigned.paused
            && lock(&assigned.tracker).pending() <= low
            && set_paused(consumer, tp, false)
        {
            assigned.paused = false;
        }
    }
}

fn set_paused(consumer: &BaseConsumer<Context>, (topic, partition): &Tp, paused: bool) -> bool {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, *partition);
    let result = if paused {
        consumer.pause(&tpl)
    } else {
        consumer.resume(&tpl)
    };
    match result {
        Ok(()) => {
            tracing::debug!(topic, partition, paused, "flow control");
            true
        }
        Err(e) => {
            tracing::warn!(error = %e, topic, partition, paused, "cannot pause or resume");
            false
        }
    }
}
