//! What the benchmark drives: a [`Target`] is one kind of server (Nerve or any Kafka-compatible broker
//! today; NATS JetStream, Redis Streams and RabbitMQ later), reached through its usual client library.
//!
//! The workload (`crate::workload`) knows nothing about protocols: it asks a target to prepare a
//! destination, opens [`Producer`]s and [`Consumer`]s on it, and moves opaque payloads. Everything
//! protocol-specific lives in one module per target implementing these three traits:
//!
//! - [`Target`]: describes itself, checks that it is reachable, creates (and removes) the destination,
//!   opens producers and consumers, and tells the resident memory of its server process when it knows it.
//! - [`Producer`]: pipelined sends. [`Producer::send`] hands one record to the client library with its
//!   [`Ticket`]; when the server acknowledged the record (with the guarantee asked for in
//!   [`Destination::acks`]) or refused it, the target hands the ticket back to the producer's [`AckSink`].
//!   A send must never wait for its own acknowledgement, only for room in the client's queue (that wait is
//!   the target's backpressure). Clients that report deliveries by callback (librdkafka) call the sink from
//!   their callback, with no per-record future or channel; clients that answer each send with a future put
//!   it in a [`PendingAcks`].
//! - [`Consumer`]: hands every record it receives to a sink, as fast as the client delivers them. The
//!   workload splits the destination's partitions between consumers by index (see
//!   [`Target::consumer`]), so that together they see each record exactly once.
//!
//! A peer without partitions (a Redis stream, a RabbitMQ queue) maps `partitions` onto what it has (several
//! streams or queues, or one and says so in [`TargetInfo::notes`]); a peer without a notion of acks=0 treats
//! it as its weakest acknowledgement. Unreachable targets return [`TargetError::Unreachable`] from
//! [`Target::connect`], which `compare` reports instead of skipping the target silently. A durability the
//! server cannot give is [`TargetError::Unavailable`] from [`Target::prepare`]: reported as such, never run
//! with a weaker setting under the stronger name.

pub(crate) mod jetstream;
pub(crate) mod kafka;
pub(crate) mod rabbitmq;
pub(crate) mod redis;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::JoinHandle;

/// How durable an acknowledged record must be on the server, for targets that can choose per destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Durability {
    /// Whatever the server does by default.
    Default,
    /// On disk (fsync'd) before the acknowledgement.
    Durable,
    /// Acknowledged from memory; the server syncs when it likes.
    NotDurable,
}

/// The acknowledgement a producer waits for, in Kafka's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub(crate) enum Acks {
    /// No acknowledgement: a send counts as acknowledged once the client wrote it.
    None,
    /// The leader (or the only server) has it.
    Leader,
    /// Every in-sync replica has it; with one server, the same as `Leader` plus idempotence where offered.
    All,
}

impl std::str::FromStr for Acks {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "all" | "-1" => Ok(Acks::All),
            _ => Err(format!("acks must be 0, 1 or all, not {s:?}")),
        }
    }
}

impl std::fmt::Display for Acks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        })
    }
}

/// Where records go and how they are sent: everything a target needs to prepare and to configure its
/// clients. Targets ignore what does not apply to them and say so in [`TargetInfo::notes`].
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Destination {
    /// Topic, stream or queue name; unique per run, so that runs never read each other's records.
    pub(crate) name: String,
    pub(crate) partitions: u32,
    pub(crate) durability: Durability,
    pub(crate) acks: Acks,
    /// Client-side batching: the most bytes per batch, and how long to wait to fill one.
    pub(crate) batch_bytes: Option<u64>,
    pub(crate) linger_ms: Option<u64>,
    /// Compression codec by its Kafka name (`none`, `gzip`, `snappy`, `lz4`, `zstd`).
    pub(crate) compression: String,
    /// Extra destination settings by the target's own names (`key=value`), passed through untouched.
    pub(crate) extra_config: Vec<(String, String)>,
}

/// What a target says about itself, printed and written beside its figures.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct TargetInfo {
    /// The target kind (`nerve`, `kafka`, `nats`, ...).
    pub(crate) name: String,
    /// Where it was reached.
    pub(crate) address: String,
    /// The server's version when the protocol tells it.
    pub(crate) server_version: Option<String>,
    /// The client library and its version.
    pub(crate) client: String,
    /// The client and destination settings in effect, by the target's own names.
    pub(crate) settings: Vec<(String, String)>,
    /// Anything that makes these figures not comparable with other targets' (a setting it ignored, ...).
    pub(crate) notes: Vec<String>,
}

/// Why a target could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TargetError {
    /// The server did not answer at all: `compare` reports the target as "unreachable: <why>".
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// A setting the target or server refused.
    #[error("refused setting: {0}")]
    Config(String),
    /// The server answered with an error.
    #[error("{0}")]
    Server(String),
    /// The server cannot run this case as asked (a durability it lacks): the case is reported with this
    /// reason instead of figures.
    #[error("{0}")]
    Unavailable(String),
}

/// Chooses the partition of each record for peers whose clients have no partitioner: a hash of the key (so
/// that one key stays in order on one partition), else round robin.
pub(crate) struct Partitioner {
    partitions: u32,
    next: u32,
}

impl Partitioner {
    /// Producers start their round robin at different partitions, so that several do not move in step.
    pub(crate) fn new(partitions: u32, start: usize) -> Partitioner {
        let partitions = partitions.max(1);
        Partitioner {
            partitions,
            next: (start % partitions as usize) as u32,
        }
    }

    pub(crate) fn pick(&mut self, key: Option<&[u8]>) -> u32 {
        match key {
            Some(key) => {
                // FNV-1a: stable across runs and processes, unlike the standard library's hasher.
                let hash = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
                (hash % u64::from(self.partitions)) as u32
            }
            None => {
                let p = self.next;
                self.next = (self.next + 1) % self.partitions;
                p
            }
        }
    }
}

/// The partitions consumer `index` of `count` reads (see [`Target::consumer`]).
pub(crate) fn partitions_of(destination: &Destination, index: usize, count: usize) -> Vec<u32> {
    (0..destination.partitions)
        .filter(|p| *p as usize % count.max(1) == index)
        .collect()
}

/// The TCP port of a peer's URL (`scheme://[user:pass@]host:port[/...]`), to find its server process.
pub(crate) fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    host_port.rsplit_once(':')?.1.parse().ok()
}

/// Resolves when the server acknowledged one record (or refused it), for clients that answer a send with a
/// future; see [`PendingAcks`].
pub(crate) type Ack = Pin<Box<dyn Future<Output = Result<(), TargetError>> + Send>>;

/// One record's bookkeeping: handed to [`Producer::send`] with the record, and back to the producer's
/// [`AckSink`] with the record's outcome. Holding it holds one of the producer's in-flight slots.
pub(crate) struct Ticket {
    /// When the record was due ([`crate::workload::epoch`] nanoseconds).
    pub(crate) due: u64,
    /// The producer's sequence number of the record.
    pub(crate) seq: u64,
    pub(crate) _slot: OwnedSemaphorePermit,
}

/// Where a producer's acknowledgements go: the workload's accounting. Called from whatever thread the
/// client delivers on (librdkafka's polling thread, a tokio task).
pub(crate) trait AckSink: Send + Sync {
    fn ack(&self, ticket: Ticket, outcome: Result<(), TargetError>);
}

/// The acknowledgement futures of a client that answers each send with one: awaited on a task of their own
/// (so that sending never waits for them) and reported to the sink.
pub(crate) struct PendingAcks {
    queue: Option<mpsc::UnboundedSender<(Ack, Ticket)>>,
    task: Option<JoinHandle<()>>,
}

impl PendingAcks {
    pub(crate) fn new(sink: Arc<dyn AckSink>) -> PendingAcks {
        let (queue, mut rx) = mpsc::unbounded_channel::<(Ack, Ticket)>();
        let task = tokio::spawn(async move {
            let mut pending = FuturesUnordered::new();
            let mut open = true;
            while open || !pending.is_empty() {
                tokio::select! {
                    next = rx.recv(), if open => match next {
                        Some((ack, ticket)) => pending.push(async move { (ack.await, ticket) }),
                        None => open = false,
                    },
                    Some((outcome, ticket)) = pending.next(), if !pending.is_empty() => {
                        sink.ack(ticket, outcome);
                    }
                }
            }
        });
        PendingAcks {
            queue: Some(queue),
            task: Some(task),
        }
    }

    pub(crate) fn push(&self, ack: Ack, ticket: Ticket) -> Result<(), TargetError> {
        self.queue
            .as_ref()
            .and_then(|q| q.send((ack, ticket)).ok())
            .ok_or_else(|| TargetError::Server("send after flush".to_string()))
    }

    /// Waits (up to `timeout`) until every pushed acknowledgement has reached the sink; no push after it.
    pub(crate) async fn finish(&mut self, timeout: Duration) -> Result<(), TargetError> {
        self.queue = None;
        if let Some(task) = self.task.take() {
            tokio::time::timeout(timeout, task)
                .await
                .map_err(|_| {
                    TargetError::Server(format!("acknowledgements still missing after {timeout:?}"))
                })?
                .map_err(|e| {
                    TargetError::Server(format!("the acknowledgement task failed: {e}"))
                })?;
        }
        Ok(())
    }
}

/// A benchmark target: one kind of server at one address. One value serves a whole run: `connect` once,
/// then `prepare`, `producer`/`consumer` for each client, and `cleanup`.
#[async_trait]
pub(crate) trait Target: Send + Sync {
    /// Checks that the server answers and tells what it is. Called first; a target that returns
    /// [`TargetError::Unreachable`] here is reported as such and not used further.
    async fn connect(&self, destination: &Destination) -> Result<TargetInfo, TargetError>;

    /// Creates the destination (topic, stream, queue) with `destination.partitions` partitions and the
    /// requested durability, and returns once producers and consumers can use it.
    async fn prepare(&self, destination: &Destination) -> Result<(), TargetError>;

    /// Opens producer number `index`, which reports its acknowledgements to `acks`. Each producer is used
    /// by one task; targets whose clients are shared internally may still return one client per producer
    /// so that producers do not serialise.
    async fn producer(
        &self,
        destination: &Destination,
        index: usize,
        acks: Arc<dyn AckSink>,
    ) -> Result<Box<dyn Producer>, TargetError>;

    /// Opens consumer number `index` of `count`, reading from the beginning of the destination. Consumer
    /// `index` reads the partitions `p` with `p % count == index`, so that the consumers together read
    /// every record once (a consumer without partitions is simply idle). Returns once the consumer is
    /// subscribed, so that no record produced afterwards is missed.
    async fn consumer(
        &self,
        destination: &Destination,
        index: usize,
        count: usize,
    ) -> Result<Box<dyn Consumer>, TargetError>;

    /// Removes the destination and its data, so that a suite does not fill the disk. Best effort.
    async fn cleanup(&self, destination: &Destination) -> Result<(), TargetError>;

    /// The process id of the server, when known (started by the benchmark, given with `--server-pid`, or
    /// found by its listening port): its resident memory is read from `/proc/<pid>/status`.
    fn server_pid(&self) -> Option<u32>;

    /// The process that serves `destination`: the same as [`Target::server_pid`] unless the target spreads
    /// destinations over several servers. A run's CPU and memory readings are this process's.
    fn server_pid_for(&self, _destination: &Destination) -> Option<u32> {
        self.server_pid()
    }
}

/// One record to send: an optional key and the payload (the workload's header, then filler). Borrowed: the
/// workload reuses one buffer, and each client copies what it keeps.
pub(crate) struct Record<'a> {
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) payload: &'a [u8],
}

/// A pipelined producer; see the module documentation.
#[async_trait]
pub(crate) trait Producer: Send {
    /// Hands `record` to the client without waiting for its acknowledgement, which goes to the producer's
    /// [`AckSink`] with `ticket`. Waits for room when the client's queue is full (the target's
    /// backpressure, which the open loop sees as lateness). On an error the ticket is dropped unreported.
    async fn send(&mut self, record: Record<'_>, ticket: Ticket) -> Result<(), TargetError>;

    /// Sends whatever the client still buffers and waits up to `timeout` until every record sent has
    /// reached the sink.
    async fn flush(&mut self, timeout: Duration) -> Result<(), TargetError>;
}

/// Receives a record's payload; returns nothing, so that a consumer can hand over borrowed bytes.
pub(crate) type Sink<'a> = &'a mut (dyn FnMut(&[u8]) + Send);

/// The most records a consumer hands over per poll, so that the caller gets to check its deadline now and
/// then.
pub(crate) const MAX_PER_POLL: usize = 10_000;

/// A consumer's poll over a stream of deliveries (the streams of all its partitions or queues merged): waits
/// up to `max_wait` for the first, then hands it and whatever else is ready (up to [`MAX_PER_POLL`]) to
/// `sink`. `ended` says why a stream that ends is an error; `failed` turns a delivery error into one.
pub(crate) async fn poll_stream<S, T, E>(
    deliveries: &mut S,
    max_wait: Duration,
    sink: Sink<'_>,
    payload: impl Fn(&T) -> &[u8],
    ended: &str,
    failed: impl Fn(E) -> TargetError,
) -> Result<usize, TargetError>
where
    S: futures::Stream<Item = Result<T, E>> + Unpin,
{
    use futures::{FutureExt, StreamExt};
    let first = match tokio::time::timeout(max_wait, deliveries.next()).await {
        Err(_) => return Ok(0),
        Ok(None) => return Err(TargetError::Server(ended.to_string())),
        Ok(Some(delivery)) => delivery,
    };
    let mut handed = 0;
    let mut next = Some(first);
    while let Some(delivery) = next.take() {
        let delivery = delivery.map_err(&failed)?;
        sink(payload(&delivery));
        handed += 1;
        if handed < MAX_PER_POLL {
            next = deliveries.next().now_or_never().flatten();
        }
    }
    Ok(handed)
}

/// A consumer; see the module documentation.
#[async_trait]
pub(crate) trait Consumer: Send {
    /// Waits up to `max_wait` for records and hands every one that has arrived to `sink` (as many as are
    /// ready, so that a fast consumer does not pay a wake-up per record). Returns how many it handed over;
    /// zero means none arrived in time.
    async fn poll(&mut self, max_wait: Duration, sink: Sink<'_>) -> Result<usize, TargetError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_by_key_or_in_turn() {
        let mut p = Partitioner::new(4, 6);
        assert_eq!(
            (0..5).map(|_| p.pick(None)).collect::<Vec<_>>(),
            [2, 3, 0, 1, 2]
        );
        let a = p.pick(Some(b"key-1"));
        assert!(a < 4);
        assert_eq!(Partitioner::new(4, 0).pick(Some(b"key-1")), a);
        assert_eq!(Partitioner::new(1, 3).pick(None), 0);
    }

    #[test]
    fn ports_of_urls() {
        assert_eq!(url_port("nats://127.0.0.1:4222"), Some(4222));
        assert_eq!(url_port("redis://127.0.0.1:6379/0"), Some(6379));
        assert_eq!(
            url_port("amqp://guest:guest@127.0.0.1:5672/%2f"),
            Some(5672)
        );
        assert_eq!(url_port("localhost"), None);
    }
}
