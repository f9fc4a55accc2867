//! The workload: N producers and M consumers on one [`Destination`] of a [`Target`], concurrently, with
//! end-to-end latency taken from a timestamp inside each record.
//!
//! Every payload starts with a header: the time the record was due to be sent (nanoseconds since
//! [`epoch`], a monotonic clock shared by the producers and consumers of this process), the producer's
//! number and its sequence number. The rest is pseudo-random filler, so that compression gets no free ride.
//!
//! At a fixed rate the producers run an open loop: record `k` of the whole run (producer `k % N` sends it)
//! is due at `start + k / rate`, whatever happened to the records before it, and its latency counts from
//! that due time. A producer that falls behind (the client's queue is full, the in-flight limit is
//! reached) sends late, and the delay shows in the latency instead of silently lowering the offered rate
//! (coordinated omission). At `max`, producers send as soon as the in-flight limit and the client let
//! them, and latency counts from the send call.
//!
//! Throughput counts what happened inside the measurement window (after the warm-up, for `duration`):
//! acknowledgements received in it, and records received in it. Latency percentiles cover the records due
//! in it. The correctness check covers every record: each acknowledged record must be received exactly once.

use std::io::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::sync::Semaphore;

use crate::proc_info;
use crate::target::{AckSink, Destination, Record, Target, TargetError, TargetInfo, Ticket};

/// Timestamp (8 bytes), producer number (4), sequence number (8).
pub(crate) const HEADER_BYTES: usize = 20;
/// How long one consumer poll waits before checking whether the run is over.
const POLL_WAIT: Duration = Duration::from_millis(100);
/// How long a producer's flush may take at the end.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(60);

/// The process's shared clock origin; producers and consumers run in this process, so a monotonic clock
/// gives latencies free of wall-clock steps.
pub(crate) fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// The offered load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Rate {
    /// Records per second over all producers, open loop.
    Fixed(f64),
    /// As fast as acknowledgements and the in-flight limit allow.
    Max,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "max" {
            return Ok(Rate::Max);
        }
        match s.parse::<f64>() {
            Ok(r) if r > 0.0 && r.is_finite() => Ok(Rate::Fixed(r)),
            _ => Err(format!(
                "rate must be records per second (> 0) or `max`, not {s:?}"
            )),
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Rate::Fixed(r) => write!(f, "{r}/s"),
            Rate::Max => f.write_str("max"),
        }
    }
}

impl Serialize for Rate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Rate::Fixed(r) => s.serialize_f64(*r),
            Rate::Max => s.serialize_str("max"),
        }
    }
}

/// The client side of a run.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Workload {
    pub(crate) producers: usize,
    pub(crate) consumers: usize,
    pub(crate) record_bytes: usize,
    /// Distinct keys, cycled through; 0 sends no key (the client spreads records as it likes).
    pub(crate) keys: u64,
    pub(crate) rate: Rate,
    pub(crate) warmup: Duration,
    pub(crate) duration: Duration,
    /// Records sent and not yet acknowledged, per producer.
    pub(crate) max_in_flight: usize,
    /// How long consumers may take, after the producers finished, to receive every acknowledged record.
    pub(crate) drain_timeout: Duration,
    /// Leaves the destination and its data in place after the run (for a memory reading).
    pub(crate) keep_destination: bool,
}

/// Percentiles of one latency histogram, in milliseconds.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p90_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) p999_ms: f64,
    pub(crate) max_ms: f64,
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        Some(Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        })
    }
}

/// Records per second and MB/s (10^6 bytes of payload) inside the measurement window.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Throughput {
    pub(crate) records: u64,
    pub(crate) records_per_s: f64,
    pub(crate) mb_per_s: f64,
}

impl Throughput {
    fn new(records: u64, record_bytes: usize, window: Duration) -> Throughput {
        let secs = window.as_secs_f64();
        Throughput {
            records,
            records_per_s: records as f64 / secs,
            mb_per_s: records as f64 * record_bytes as f64 / 1e6 / secs,
        }
    }
}

/// Every record accounted for, over the whole run (warm-up and drain included).
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Check {
    pub(crate) sent: u64,
    pub(crate) acked: u64,
    /// Sends the server or client refused (the first error is in `first_error`).
    pub(crate) send_errors: u64,
    pub(crate) first_error: Option<String>,
    /// Deliveries to consumers, duplicates included.
    pub(crate) consumed: u64,
    /// Distinct records received.
    pub(crate) consumed_unique: u64,
    /// Acknowledged records no consumer received by the end of the drain.
    pub(crate) lost: u64,
    /// Deliveries beyond the first of a record.
    pub(crate) duplicates: u64,
    /// Records received although their send was not acknowledged (allowed: the ack may have been lost).
    pub(crate) received_unacked: u64,
    /// Seconds the consumers needed after the producers finished.
    pub(crate) drain_s: f64,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct RunReport {
    pub(crate) target: TargetInfo,
    pub(crate) destination: Destination,
    pub(crate) workload: Workload,
    pub(crate) produce: Throughput,
    pub(crate) consume: Throughput,
    /// Produce call (or due time) to consumer receipt.
    pub(crate) end_to_end: Option<Latency>,
    /// Produce call (or due time) to acknowledgement.
    pub(crate) ack: Option<Latency>,
    /// How late the open loop's sends were at worst (ms); large values mean the offered rate was not met.
    pub(crate) max_send_lag_ms: f64,
    pub(crate) check: Check,
    /// The server process's resident memory after the run, when its pid is known.
    pub(crate) server_rss_bytes: Option<u64>,
    pub(crate) cpu: CpuUse,
}

/// CPU time spent from the producers' start to the end of the drain: by the server (when its pid is known)
/// and by this process (producers, consumers and their client libraries). Per MB of acknowledged record
/// values it is what each side costs, whichever of them limited the throughput; as cores (CPU seconds per
/// second) it shows which side ran out.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct CpuUse {
    pub(crate) server_cores: Option<f64>,
    pub(crate) server_ms_per_mb: Option<f64>,
    pub(crate) client_cores: Option<f64>,
    pub(crate) client_ms_per_mb: Option<f64>,
}

/// CPU seconds of the server and of this process at one moment.
struct CpuMark {
    at: Instant,
    server: Option<f64>,
    client: Option<f64>,
}

impl CpuMark {
    fn now(server_pid: Option<u32>) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            server: server_pid.and_then(|pid| proc_info::cpu_seconds(Some(pid))),
            client: proc_info::cpu_seconds(None),
        }
    }

    fn since(&self, start: &CpuMark, megabytes: f64) -> CpuUse {
        let wall = self.at.duration_since(start.at).as_secs_f64();
        let used = |a: Option<f64>, b: Option<f64>| Some(b? - a?).filter(|s| *s >= 0.0);
        let server = used(start.server, self.server);
        let client = used(start.client, self.client);
        let per_mb = |s: Option<f64>| s.filter(|_| megabytes > 0.0).map(|s| s * 1e3 / megabytes);
        let cores = |s: Option<f64>| s.filter(|_| wall > 0.0).map(|s| s / wall);
        CpuUse {
            server_cores: cores(server),
            server_ms_per_mb: per_mb(server),
            client_cores: cores(client),
            client_ms_per_mb: per_mb(client),
        }
    }
}

/// One bit per sequence number of one producer.
#[derive(Default, Clone)]
struct Bits(Vec<u64>);

impl Bits {
    /// Sets bit `i`; true if it was already set.
    fn set(&mut self, i: u64) -> bool {
        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        if word >= self.0.len() {
            self.0.resize(word + 1, 0);
        }
        let was = self.0[word] & bit != 0;
        self.0[word] |= bit;
        was
    }

    fn count(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// Merges `other` in; returns how many bits both had.
    fn merge(&mut self, other: &Bits) -> u64 {
        if other.0.len() > self.0.len() {
            self.0.resize(other.0.len(), 0);
        }
        let mut both = 0;
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            both += u64::from((*a & *b).count_ones());
            *a |= *b;
        }
        both
    }

    /// Bits set here and not in `other`.
    fn minus(&self, other: &Bits) -> u64 {
        self.0
            .iter()
            .enumerate()
            .map(|(i, a)| u64::from((a & !other.0.get(i).copied().unwrap_or(0)).count_ones()))
            .sum()
    }
}

/// A histogram of nanoseconds, 1 ns to one hour, three significant digits. Fixed bounds, not auto-resize:
/// `saturating_record` clamps to the current bounds instead of growing them, which would leave an
/// auto-resizing histogram stuck at its initial range of [1, 2].
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid histogram bounds")
}

/// Bytes that neither compress nor look like zeros.
pub(crate) fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn encode_header(payload: &mut [u8], due_ns: u64, producer: u32, seq: u64) {
    payload[0..8].copy_from_slice(&due_ns.to_le_bytes());
    payload[8..12].copy_from_slice(&producer.to_le_bytes());
    payload[12..20].copy_from_slice(&seq.to_le_bytes());
}

fn decode_header(payload: &[u8]) -> Option<(u64, u32, u64)> {
    if payload.len() < HEADER_BYTES {
        return None;
    }
    let due = u64::from_le_bytes(payload[0..8].try_into().ok()?);
    let producer = u32::from_le_bytes(payload[8..12].try_into().ok()?);
    let seq = u64::from_le_bytes(payload[12..20].try_into().ok()?);
    Some((due, producer, seq))
}

struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// The measurement window and the end of sending, in [`epoch`] nanoseconds.
#[derive(Clone, Copy, Default)]
struct Clock {
    start: u64,
    window_start: u64,
    end: u64,
}

impl Clock {
    fn in_window(&self, t: u64) -> bool {
        t >= self.window_start && t < self.end
    }
}

struct ProducerResult {
    sent: u64,
    max_lag_ns: u64,
    /// What the acknowledgements said, as `ProducerAcks` collected them.
    acks: AckState,
}

struct ConsumerResult {
    received: u64,
    in_window: u64,
    /// Per producer.
    seen: Vec<Bits>,
    duplicates: u64,
    latency: Histogram<u64>,
    foreign: u64,
}

/// Runs `workload` against `target` on `destination` (which must not exist yet) and reports.
pub(crate) async fn run(
    target: &dyn Target,
    destination: &Destination,
    workload: &Workload,
) -> Result<RunReport> {
    if workload.record_bytes < HEADER_BYTES {
        bail!("records must be at least {HEADER_BYTES} bytes (the benchmark's header)");
    }
    if workload.producers == 0 || workload.consumers == 0 {
        bail!("at least one producer and one consumer are needed");
    }
    let info = target.connect(destination).await?;
    target
        .prepare(destination)
        .await
        .with_context(|| format!("preparing {}", destination.name))?;

    let mut consumers = Vec::new();
    for i in 0..workload.consumers {
        consumers.push(
            target
                .consumer(destination, i, workload.consumers)
                .await
                .context("opening a consumer")?,
        );
    }
    let mut producers = Vec::new();
    for i in 0..workload.producers {
        let acks = Arc::new(ProducerAcks::default());
        let producer = target
            .producer(destination, i, acks.clone())
            .await
            .context("opening a producer")?;
        producers.push((producer, acks));
    }

    // A short lead so that every producer task is running when the first record is due.
    let start = now_ns() + 20_000_000;
    let window_start = start + workload.warmup.as_nanos() as u64;
    let clock = Clock {
        start,
        window_start,
        end: window_start + workload.duration.as_nanos() as u64,
    };
    for (_, acks) in &producers {
        acks.lock().clock = clock;
    }

    let stop = Arc::new(AtomicBool::new(false));
    // Whatever way this function returns (an error included), the consumer tasks end with it.
    let _stop_consumers = StopOnDrop(stop.clone());
    let consumed_total = Arc::new(AtomicU64::new(0));
    let mut consumer_tasks = Vec::new();
    for mut consumer in consumers {
        let (stop, consumed_total) = (stop.clone(), consumed_total.clone());
        let producer_count = workload.producers;
        consumer_tasks.push(tokio::spawn(async move {
            let mut result = ConsumerResult {
                received: 0,
                in_window: 0,
                seen: vec![Bits::default(); producer_count],
                duplicates: 0,
                latency: histogram(),
                foreign: 0,
            };
            while !stop.load(Ordering::Acquire) {
                let mut sink = |payload: &[u8]| {
                    let now = now_ns();
                    let Some((due, producer, seq)) = decode_header(payload) else {
                        result.foreign += 1;
                        return;
                    };
                    let Some(seen) = result.seen.get_mut(producer as usize) else {
                        result.foreign += 1;
                        return;
                    };
                    result.received += 1;
                    if seen.set(seq) {
                        result.duplicates += 1;
                    }
                    if clock.in_window(now) {
                        result.in_window += 1;
                    }
                    if clock.in_window(due) {
                        result.latency.saturating_record(now.saturating_sub(due));
                    }
                };
                let n = consumer.poll(POLL_WAIT, &mut sink).await?;
                consumed_total.fetch_add(n as u64, Ordering::Release);
            }
            anyhow::Ok(result)
        }));
    }

    let server_pid = target.server_pid_for(destination);
    let cpu_start = CpuMark::now(server_pid);
    let mut producer_tasks = Vec::new();
    for (index, (producer, acks)) in producers.into_iter().enumerate() {
        let workload = workload.clone();
        producer_tasks.push(tokio::spawn(produce(
            index, producer, acks, workload, clock,
        )));
    }
    let mut results = Vec::new();
    for task in producer_tasks {
        results.push(task.await.context("a producer task panicked")??);
    }
    let produced_at = Instant::now();
    let acked: u64 = results.iter().map(|r| r.acks.acked).sum();
    let drain_deadline = produced_at + workload.drain_timeout;
    while consumed_total.load(Ordering::Acquire) < acked && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain_s = produced_at.elapsed().as_secs_f64();
    let acked_mb = acked as f64 * workload.record_bytes as f64 / 1e6;
    let cpu = CpuMark::now(server_pid).since(&cpu_start, acked_mb);
    stop.store(true, Ordering::Release);
    let mut consumed = Vec::new();
    for task in consumer_tasks {
        consumed.push(task.await.context("a consumer task panicked")??);
    }
    if !workload.keep_destination {
        // Best effort: a suite should not fill the disk, but a leftover topic does not spoil the figures.
        let _ = target.cleanup(destination).await;
    }

    Ok(report(
        info,
        destination,
        workload,
        &results,
        &consumed,
        drain_s,
        server_pid.and_then(proc_info::rss_bytes),
    )
    .with_cpu(cpu))
}

fn report(
    target: TargetInfo,
    destination: &Destination,
    workload: &Workload,
    producers: &[ProducerResult],
    consumers: &[ConsumerResult],
    drain_s: f64,
    server_rss_bytes: Option<u64>,
) -> RunReport {
    let mut seen = vec![Bits::default(); producers.len()];
    let mut duplicates = 0;
    let mut end_to_end = histogram();
    let mut consume_in_window = 0;
    let mut consumed = 0;
    for c in consumers {
        duplicates += c.duplicates;
        consumed += c.received;
        consume_in_window += c.in_window;
        for (all, mine) in seen.iter_mut().zip(&c.seen) {
            duplicates += all.merge(mine);
        }
        end_to_end
            .add(&c.latency)
            .expect("histograms with the same bounds merge");
    }
    let mut ack = histogram();
    let mut lost = 0;
    let mut received_unacked = 0;
    for (p, s) in producers.iter().zip(&seen) {
        ack.add(&p.acks.ack_latency)
            .expect("histograms with the same bounds merge");
        lost += p.acks.acked_bits.minus(s);
        received_unacked += s.minus(&p.acks.acked_bits);
    }
    let first_error = producers.iter().find_map(|p| p.acks.first_error.clone());
    RunReport {
        target,
        destination: destination.clone(),
        workload: workload.clone(),
        produce: Throughput::new(
            producers.iter().map(|p| p.acks.acked_in_window).sum(),
            workload.record_bytes,
            workload.duration,
        ),
        consume: Throughput::new(consume_in_window, workload.record_bytes, workload.duration),
        end_to_end: Latency::of(&end_to_end),
        ack: Latency::of(&ack),
        max_send_lag_ms: producers.iter().map(|p| p.max_lag_ns).max().unwrap_or(0) as f64 / 1e6,
        check: Check {
            sent: producers.iter().map(|p| p.sent).sum(),
            acked: producers.iter().map(|p| p.acks.acked).sum(),
            send_errors: producers.iter().map(|p| p.acks.errors).sum(),
            first_error,
            consumed,
            consumed_unique: seen.iter().map(Bits::count).sum(),
            lost,
            duplicates,
            received_unacked,
            drain_s,
        },
        server_rss_bytes,
        cpu: CpuUse::default(),
    }
}

/// One producer's acknowledgements as they arrive, from the client's delivery thread or task.
#[derive(Default)]
struct ProducerAcks {
    state: Mutex<AckState>,
}

struct AckState {
    clock: Clock,
    acked: u64,
    acked_in_window: u64,
    acked_bits: Bits,
    errors: u64,
    first_error: Option<String>,
    ack_latency: Histogram<u64>,
}

impl Default for AckState {
    fn default() -> Self {
        AckState {
            clock: Clock::default(),
            acked: 0,
            acked_in_window: 0,
            acked_bits: Bits::default(),
            errors: 0,
            first_error: None,
            ack_latency: histogram(),
        }
    }
}

impl ProducerAcks {
    fn lock(&self) -> std::sync::MutexGuard<'_, AckState> {
        // Each update is a few assignments: a panic elsewhere cannot leave the state half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl AckSink for ProducerAcks {
    fn ack(&self, ticket: Ticket, outcome: Result<(), TargetError>) {
        let now = now_ns();
        let mut state = self.lock();
        match outcome {
            Ok(()) => {
                state.acked += 1;
                state.acked_bits.set(ticket.seq);
                if state.clock.in_window(now) {
                    state.acked_in_window += 1;
                }
                if state.clock.in_window(ticket.due) {
                    state
                        .ack_latency
                        .saturating_record(now.saturating_sub(ticket.due));
                }
            }
            Err(e) => {
                state.errors += 1;
                state.first_error.get_or_insert_with(|| e.to_string());
            }
        }
        // The ticket's in-flight slot is released as it drops, after the bookkeeping.
    }
}

/// One producer's send loop. Acknowledgements reach `acks` on the client's own thread or task, so sending
/// never waits for them; the in-flight limit is the semaphore whose permits the tickets hold.
async fn produce(
    index: usize,
    mut producer: Box<dyn crate::target::Producer>,
    acks: Arc<ProducerAcks>,
    workload: Workload,
    clock: Clock,
) -> Result<ProducerResult> {
    // One buffer for every record: the header is rewritten in place and each client copies what it keeps.
    let mut payload = pseudo_random(workload.record_bytes, 0x9e37_79b9_7f4a_7c15 ^ index as u64);
    let mut key = Vec::with_capacity(32);
    let in_flight = Arc::new(Semaphore::new(workload.max_in_flight.max(1)));
    let step_ns = match workload.rate {
        Rate::Fixed(rate) => Some(1e9 / rate),
        Rate::Max => None,
    };
    let mut sent = 0u64;
    let mut max_lag_ns = 0u64;
    let mut send_error = None;
    tokio::time::sleep_until(tokio::time::Instant::from_std(
        epoch() + Duration::from_nanos(clock.start),
    ))
    .await;
    for seq in 0u64.. {
        let global = seq * workload.producers as u64 + index as u64;
        let due = match step_ns {
            Some(step) => {
                let due = clock.start + (global as f64 * step) as u64;
                if due >= clock.end {
                    break;
                }
                let now = now_ns();
                if due > now {
                    tokio::time::sleep_until(tokio::time::Instant::from_std(
                        epoch() + Duration::from_nanos(due),
                    ))
                    .await;
                }
                due
            }
            None => {
                let now = now_ns();
                if now >= clock.end {
                    break;
                }
                now
            }
        };
        let slot = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        encode_header(&mut payload, due, index as u32, seq);
        let key = (workload.keys > 0).then(|| {
            key.clear();
            let _ = write!(key, "key-{}", global % workload.keys);
            key.as_slice()
        });
        let ticket = Ticket {
            due,
            seq,
            _slot: slot,
        };
        if let Err(e) = producer
            .send(
                Record {
                    key,
                    payload: &payload,
                },
                ticket,
            )
            .await
        {
            send_error = Some(e.to_string());
            break;
        }
        max_lag_ns = max_lag_ns.max(now_ns().saturating_sub(due));
        sent += 1;
    }
    let flushed = producer.flush(FLUSH_TIMEOUT).await;
    // The client is done with the sink; what it reported is final.
    drop(producer);
    let mut result = ProducerResult {
        sent,
        max_lag_ns,
        acks: std::mem::take(&mut *acks.lock()),
    };
    if let Some(e) = send_error {
        result.acks.errors += 1;
        result.acks.first_error.get_or_insert(e);
    }
    if let Err(e) = flushed {
        result.acks.first_error.get_or_insert(e.to_string());
    }
    Ok(result)
}

impl RunReport {
    fn with_cpu(self, cpu: CpuUse) -> RunReport {
        RunReport { cpu, ..self }
    }

    /// The human-readable summary `run` prints.
    pub(crate) fn print(&self) {
        let t = &self.target;
        println!(
            "target {} at {} ({}{}), topic {} with {} partitions, durability {:?}, acks {}, compression {}",
            t.name,
            t.address,
            t.client,
            t.server_version
                .as_deref()
                .map(|v| format!(", server {v}"))
                .unwrap_or_default(),
            self.destination.name,
            self.destination.partitions,
            self.destination.durability,
            self.destination.acks,
            self.destination.compression,
        );
        let w = &self.workload;
        println!(
            "{} producers, {} consumers, {} B records, rate {}, warm-up {:?}, measured {:?}",
            w.producers, w.consumers, w.record_bytes, w.rate, w.warmup, w.duration
        );
        for note in &t.notes {
            println!("note: {note}");
        }
        println!(
            "produce: {:>10.0} records/s {:>8.1} MB/s ({} acknowledged in the window)",
            self.produce.records_per_s, self.produce.mb_per_s, self.produce.records
        );
        println!(
            "consume: {:>10.0} records/s {:>8.1} MB/s ({} received in the window)",
            self.consume.records_per_s, self.consume.mb_per_s, self.consume.records
        );
        let show = |name: &str, l: &Option<Latency>| {
            match l {
            Some(l) => println!(
                "{name}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms ({} records)",
                l.p50_ms, l.p90_ms, l.p99_ms, l.p999_ms, l.max_ms, l.count
            ),
            None => println!("{name}: no records"),
        }
        };
        show("end-to-end latency", &self.end_to_end);
        show("ack latency", &self.ack);
        if matches!(w.rate, Rate::Fixed(_)) {
            println!(
                "open loop: the latest send was {:.1} ms behind schedule",
                self.max_send_lag_ms
            );
        }
        let c = &self.check;
        println!(
            "check: sent {}, acknowledged {}, send errors {}, consumed {}, lost {}, duplicates {}, received unacknowledged {}, drain {:.2} s",
            c.sent, c.acked, c.send_errors, c.consumed, c.lost, c.duplicates, c.received_unacked, c.drain_s
        );
        if let Some(e) = &c.first_error {
            println!("first error: {e}");
        }
        if let Some(rss) = self.server_rss_bytes {
            println!("server resident memory: {:.1} MiB", rss as f64 / 1048576.0);
        }
        let cpu = &self.cpu;
        let figure = |cores: Option<f64>, per_mb: Option<f64>| match (cores, per_mb) {
            (Some(c), Some(m)) => format!("{c:.2} cores, {m:.2} ms per MB"),
            (Some(c), None) => format!("{c:.2} cores"),
            _ => "unknown".to_string(),
        };
        println!(
            "cpu: server {}; this process (clients) {}",
            figure(cpu.server_cores, cpu.server_ms_per_mb),
            figure(cpu.client_cores, cpu.client_ms_per_mb)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let mut payload = vec![0u8; 64];
        encode_header(&mut payload, 123_456_789, 7, 42);
        assert_eq!(decode_header(&payload), Some((123_456_789, 7, 42)));
        assert_eq!(decode_header(&payload[..10]), None);
    }

    #[test]
    fn bits_count_overlaps_and_differences() {
        let mut a = Bits::default();
        let mut b = Bits::default();
        for i in [0, 1, 64, 200] {
            assert!(!a.set(i));
        }
        assert!(a.set(64));
        for i in [1, 200, 300] {
            b.set(i);
        }
        assert_eq!(a.minus(&b), 2);
        assert_eq!(b.minus(&a), 1);
        assert_eq!(a.merge(&b), 2);
        assert_eq!(a.count(), 5);
    }

    #[test]
    fn rates_parse() {
        assert_eq!("max".parse::<Rate>(), Ok(Rate::Max));
        assert_eq!("2500".parse::<Rate>(), Ok(Rate::Fixed(2500.0)));
        assert!("0".parse::<Rate>().is_err());
        assert!("fast".parse::<Rate>().is_err());
    }
}
