//! The consumer's own thread: polls, routes records to partition tasks, pauses partitions that fall
//! behind, commits, and drains partitions on revocation and shutdown.
//!
//! Rebalances: `Context::rebalance` serves librdkafka's rebalance callback for both protocols. Eager
//! (`range`, `roundrobin`): every rebalance revokes everything, and the whole new assignment follows.
//! Cooperative (`cooperative-sticky`): only the partitions that move are revoked or assigned
//! (`incremental_unassign` / `incremental_assign`), and the kept ones run on untouched. Either way a
//! revoked partition is drained and its done work committed *before* it is unassigned, while this member
//! still owns it; a partition task starts on the first record of an owned partition, so an assignment
//! creates nothing for the partitions already running.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::types::RDKafkaRespErr;
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
    /// The consumer's `client.id`, in the rebalance logs: which member of the group gave up or took what.
    client_id: String,
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

    /// Stops owning `partitions`: their records still queued are dropped, their tasks drained, and what
    /// they finished committed if `commit` (not for lost partitions). Other partitions are not touched.
    fn give_up(&self, consumer: &BaseConsumer<Context>, partitions: &[Tp], commit: bool) {
        {
            let mut owned = self.owned();
            for tp in partitions {
                owned.remove(tp);
            }
        }
        self.forget_lag(partitions);
        self.drain(consumer, Some(partitions), commit);
    }

    /// Stops the partitions `which` (all if `None`), waits for their tasks to let them go (running handlers,
    /// and the records waiting below the highest one started: see `partition::Lanes::let_go`) up to the
    /// drain timeout, and commits what they finished if `commit`.
    fn drain(&self, consumer: &BaseConsumer<Context>, which: Option<&[Tp]>, commit: bool) {
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
        if !commit {
            tracing::info!(
                partitions = ?drained.iter().map(|(tp, _)| tp).collect::<Vec<_>>(),
                "partitions given up without a commit: what their handlers finished is left to the next owner"
            );
            return;
        }
        let trackers: Vec<(&Tp, &Arc<Mutex<Tracker>>)> =
            drained.iter().map(|(tp, a)| (tp, &a.tracker)).collect();
        self::commit(consumer, &trackers);
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
    /// Takes over librdkafka's rebalance callback (rdkafka's default would do the same assignment calls,
    /// but ignores their errors and cannot tell lost partitions from revoked ones). Both protocols:
    ///
    /// - Eager (`range`, `roundrobin`): a revocation lists every partition, an assignment the whole new
    ///   set; `assign` / `unassign`.
    /// - Cooperative (`cooperative-sticky`): a revocation or an assignment lists only the partitions that
    ///   change hands; `incremental_assign` / `incremental_unassign`. The partitions kept are not touched:
    ///   their tasks keep running, their handlers are not waited for, their positions are not reset.
    ///
    /// Revoked partitions are drained (no new records, running handlers finish, what is done is committed)
    /// before they are given up. Lost partitions (the session expired: another member may already own
    /// them) are drained without a commit, which could overwrite the new owner's.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let partitions = elements(tpl);
        let client_id = self.state.client_id.as_str();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                match assigned {
                    Ok(()) => {
                        tracing::info!(client_id, cooperative, assigned = ?partitions, "partitions assigned");
                        self.state.owned().extend(partitions);
                    }
                    Err(e) => {
                        tracing::warn!(client_id, error = %e, cooperative, assigned = ?partitions, "assignment refused");
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let lost = consumer.assignment_lost();
                tracing::info!(client_id, cooperative, lost, revoked = ?partitions, "partitions revoked: draining");
                self.state.give_up(consumer, &partitions, !lost);
                let unassigned = if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                };
                if let Err(e) = unassigned {
                    tracing::warn!(client_id, error = %e, cooperative, "unassignment refused");
                }
            }
            // librdkafka calls back with the two codes above only; anything else gives up what it names
            // (everything with the eager protocol), as rdkafka's default does, without committing.
            other => {
                tracing::warn!(client_id, error = ?other, cooperative, partitions = ?partitions, "rebalance failed: draining");
                let unassigned = if cooperative {
                    self.state.give_up(consumer, &partitions, false);
                    consumer.incremental_unassign(tpl)
                } else {
                    let everything: Vec<Tp> = self.state.owned().iter().cloned().collect();
                    self.state.give_up(consumer, &everything, false);
                    consumer.unassign()
                };
                if let Err(e) = unassigned {
                    tracing::warn!(client_id, error = %e, cooperative, "unassignment refused");
                }
            }
        }
    }
}

fn elements(tpl: &TopicPartitionList) -> Vec<Tp> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_string(), e.partition()))
        .collect()
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
        client_id: config.get("client.id").unwrap_or("rdkafka").to_string(),
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
    state.drain(consumer, None, true);
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
