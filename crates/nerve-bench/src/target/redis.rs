//! Redis Streams, through `redis` (redis-rs) on tokio: one stream key per partition (`<name>:<p>`), each
//! record one entry with a single field `v`.
//!
//! A producer owns a multiplexed connection and a writer task: records queue up while earlier pipelines are
//! out, and each pipeline takes every queued record (up to [`PIPELINE_MAX`] `XADD`s), with up to
//! [`PIPELINES_IN_FLIGHT`] pipelines outstanding on the connection. A record is acknowledged when the reply
//! to its `XADD` (the entry id) arrives.
//!
//! Consumers use a consumer group created at `prepare` (from id 0) and `XREADGROUP ... COUNT BLOCK NOACK`
//! over their partitions' keys, on a connection of their own since `BLOCK` holds it. `NOACK` means no
//! pending-entries list and no `XACK`: the server does no per-message ack work, as with the other peers'
//! consumers here (and a Kafka consumer that never commits).
//!
//! Durability is the server's: `appendonly yes` with `appendfsync always` fsyncs the AOF before replying,
//! `everysec` (the default with AOF) loses up to a second, and without AOF nothing is on disk. The target
//! reads `CONFIG GET append*`: durable cases run only against `appendfsync always`, and are reported as
//! unavailable otherwise.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::FuturesOrdered;
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Value};
use tokio::sync::{mpsc, oneshot};

use super::{
    partitions_of, Ack, AckSink, Acks, Consumer, Destination, Durability, Partitioner, PendingAcks,
    Producer, Record, Sink, Target, TargetError, TargetInfo, Ticket,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// redis-rs fails a command after 500 ms by default; a long pipeline on a busy server can take longer,
/// and a late reply is a finding, not an error.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// `XADD`s per pipeline at most.
const PIPELINE_MAX: usize = 1_000;
/// Pipelines outstanding per producer connection.
const PIPELINES_IN_FLIGHT: usize = 8;
/// Records queued in a producer before `send` waits (the target's backpressure).
const QUEUE: usize = 10_000;
/// Entries per stream per `XREADGROUP`.
const READ_COUNT: usize = 1_000;
const GROUP: &str = "nerve-bench";
const FIELD: &str = "v";

/// The server's persistence, from `CONFIG GET append*`.
#[derive(Clone, Debug, Default)]
struct Aof {
    /// `appendonly`; `None` when CONFIG is not allowed.
    enabled: Option<bool>,
    fsync: Option<String>,
}

impl Aof {
    fn describe(&self) -> String {
        match (self.enabled, self.fsync.as_deref()) {
            (Some(true), Some(fsync)) => format!("appendonly yes, appendfsync {fsync}"),
            (Some(false), _) => "appendonly no".to_string(),
            _ => "unknown (CONFIG GET refused)".to_string(),
        }
    }

    fn check(&self, durability: Durability) -> Result<(), TargetError> {
        let always = self.enabled == Some(true) && self.fsync.as_deref() == Some("always");
        match durability {
            Durability::Durable if self.enabled == Some(false) => Err(TargetError::Unavailable(
                "not durable: no AOF on this server".to_string(),
            )),
            Durability::Durable if !always => Err(TargetError::Unavailable(format!(
                "not durable: the server's persistence is {} (durable needs appendfsync always)",
                self.describe()
            ))),
            Durability::NotDurable if always => Err(TargetError::Unavailable(
                "not available: the server fsyncs every write (appendfsync always)".to_string(),
            )),
            _ => Ok(()),
        }
    }
}

pub(crate) struct RedisTarget {
    url: String,
    server_pid: Option<u32>,
    aof: Mutex<Aof>,
}

impl RedisTarget {
    pub(crate) fn new(url: String, server_pid: Option<u32>) -> RedisTarget {
        RedisTarget {
            url,
            server_pid,
            aof: Mutex::new(Aof::default()),
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, TargetError> {
        let client = redis::Client::open(self.url.as_str())
            .map_err(|e| TargetError::Config(format!("{}: {e}", self.url)))?;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| TargetError::Unreachable(format!("{}: {e}", self.url)))
    }
}

fn stream_key(destination: &Destination, partition: u32) -> String {
    format!("{}:{partition}", destination.name)
}

fn server_error(what: &str, e: impl std::fmt::Display) -> TargetError {
    TargetError::Server(format!("{what}: {e}"))
}

/// `redis_version` from the text of `INFO server`.
fn redis_version(info: &str) -> Option<String> {
    info.lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .map(|v| v.trim().to_string())
}

#[async_trait]
impl Target for RedisTarget {
    async fn connect(&self, destination: &Destination) -> Result<TargetInfo, TargetError> {
        let mut conn = self.connection().await?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .map_err(|e| TargetError::Unreachable(format!("{}: INFO: {e}", self.url)))?;
        let config: Result<HashMap<String, String>, _> = redis::cmd("CONFIG")
            .arg("GET")
            .arg("append*")
            .query_async(&mut conn)
            .await;
        let aof = match config {
            Ok(config) => Aof {
                enabled: config.get("appendonly").map(|v| v == "yes"),
                fsync: config.get("appendfsync").cloned(),
            },
            Err(_) => Aof::default(),
        };
        let mut notes = Vec::new();
        if destination.acks == Acks::None {
            notes.push("acks=0 ignored: every XADD waits for its reply".to_string());
        }
        if destination.compression != "none" {
            notes.push(format!(
                "compression {} ignored: entries are stored as sent",
                destination.compression
            ));
        }
        if destination.batch_bytes.is_some() || destination.linger_ms.is_some() {
            notes.push(
                "batch size and linger ignored: pipelines take whatever is queued".to_string(),
            );
        }
        if aof.enabled != Some(true) {
            notes.push("the server keeps nothing on disk: not durable in any case".to_string());
        }
        let settings = vec![
            ("persistence".to_string(), aof.describe()),
            (
                "streams".to_string(),
                format!("{}:<partition>", destination.name),
            ),
            (
                "producer".to_string(),
                format!(
                    "multiplexed connection, pipelines of up to {PIPELINE_MAX} XADD, {PIPELINES_IN_FLIGHT} in flight"
                ),
            ),
            (
                "consumer".to_string(),
                format!("XREADGROUP COUNT {READ_COUNT} BLOCK NOACK, no XACK"),
            ),
        ];
        *self.aof.lock().unwrap_or_else(|e| e.into_inner()) = aof;
        Ok(TargetInfo {
            name: "redis".to_string(),
            address: self.url.clone(),
            server_version: redis_version(&info),
            client: format!("redis-rs {REDIS_RS_VERSION}"),
            settings,
            notes,
        })
    }

    async fn prepare(&self, destination: &Destination) -> Result<(), TargetError> {
        self.aof
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .check(destination.durability)?;
        let mut conn = self.connection().await?;
        let mut pipe = redis::pipe();
        for p in 0..destination.partitions {
            pipe.cmd("XGROUP")
                .arg("CREATE")
                .arg(stream_key(destination, p))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .ignore();
        }
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| server_error("creating the streams and their group", e))
    }

    async fn producer(
        &self,
        destination: &Destination,
        index: usize,
        acks: Arc<dyn AckSink>,
    ) -> Result<Box<dyn Producer>, TargetError> {
        let conn = self.connection().await?;
        let (queue, rx) = mpsc::channel(QUEUE);
        let writer = tokio::spawn(write(conn, rx));
        Ok(Box::new(RedisProducer {
            pending: PendingAcks::new(acks),
            keys: (0..destination.partitions)
                .map(|p| stream_key(destination, p))
                .collect(),
            partitioner: Partitioner::new(destination.partitions, index),
            queue: Some(queue),
            writer: Some(writer),
        }))
    }

    async fn consumer(
        &self,
        destination: &Destination,
        index: usize,
        count: usize,
    ) -> Result<Box<dyn Consumer>, TargetError> {
        let keys: Vec<String> = partitions_of(destination, index, count)
            .into_iter()
            .map(|p| stream_key(destination, p))
            .collect();
        let conn = self.connection().await?;
        Ok(Box::new(RedisConsumer {
            conn,
            name: format!("c{index}"),
            keys,
        }))
    }

    async fn cleanup(&self, destination: &Destination) -> Result<(), TargetError> {
        let mut conn = self.connection().await?;
        let keys: Vec<String> = (0..destination.partitions)
            .map(|p| stream_key(destination, p))
            .collect();
        redis::cmd("DEL")
            .arg(&keys)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| server_error("deleting the streams", e))
    }

    fn server_pid(&self) -> Option<u32> {
        self.server_pid
    }
}

/// redis-rs does not export its version; this is the one Cargo.lock pins (checked by a test).
const REDIS_RS_VERSION: &str = "1.8";

type Queued = (String, Vec<u8>, oneshot::Sender<Result<(), TargetError>>);
type Reply = Pin<Box<dyn Future<Output = (redis::RedisResult<Value>, Vec<Queued>)> + Send>>;

/// The producer's writer task: turns queued records into pipelines, keeps several outstanding, and answers
/// each record's acknowledgement in order.
async fn write(conn: MultiplexedConnection, mut queue: mpsc::Receiver<Queued>) {
    let mut in_flight: FuturesOrdered<Reply> = FuturesOrdered::new();
    let mut open = true;
    while open || !in_flight.is_empty() {
        tokio::select! {
            first = queue.recv(), if open && in_flight.len() < PIPELINES_IN_FLIGHT => {
                let Some(first) = first else {
                    open = false;
                    continue;
                };
                let mut batch = vec![first];
                while batch.len() < PIPELINE_MAX {
                    match queue.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let mut pipe = redis::pipe();
                for (key, payload, _) in &batch {
                    pipe.cmd("XADD").arg(key).arg("*").arg(FIELD).arg(payload);
                }
                let mut conn = conn.clone();
                in_flight.push_back(Box::pin(async move {
                    (pipe.query_async::<Value>(&mut conn).await, batch)
                }));
            }
            Some((reply, batch)) = in_flight.next(), if !in_flight.is_empty() => {
                answer(reply, batch);
            }
        }
    }
}

fn answer(reply: redis::RedisResult<Value>, batch: Vec<Queued>) {
    match reply {
        Ok(Value::Array(replies)) if replies.len() == batch.len() => {
            for ((_, _, ack), reply) in batch.into_iter().zip(replies) {
                let outcome = match reply {
                    Value::ServerError(e) => Err(server_error("XADD", format!("{e:?}"))),
                    _ => Ok(()),
                };
                let _ = ack.send(outcome);
            }
        }
        Ok(other) => {
            let e = format!("XADD pipeline: unexpected reply {other:?}");
            for (_, _, ack) in batch {
                let _ = ack.send(Err(TargetError::Server(e.clone())));
            }
        }
        Err(e) => {
            let e = format!("XADD pipeline: {e}");
            for (_, _, ack) in batch {
                let _ = ack.send(Err(TargetError::Server(e.clone())));
            }
        }
    }
}

struct RedisProducer {
    pending: PendingAcks,
    keys: Vec<String>,
    partitioner: Partitioner,
    queue: Option<mpsc::Sender<Queued>>,
    writer: Option<tokio::task::JoinHandle<()>>,
}

#[async_trait]
impl Producer for RedisProducer {
    async fn send(&mut self, record: Record<'_>, ticket: Ticket) -> Result<(), TargetError> {
        let p = self.partitioner.pick(record.key);
        let queue = self
            .queue
            .as_ref()
            .ok_or_else(|| TargetError::Server("send after flush".to_string()))?;
        let (ack, acked) = oneshot::channel();
        queue
            .send((self.keys[p as usize].clone(), record.payload.to_vec(), ack))
            .await
            .map_err(|_| TargetError::Server("the writer task ended".to_string()))?;
        let ack: Ack = Box::pin(async move {
            acked.await.unwrap_or_else(|_| {
                Err(TargetError::Server(
                    "the writer task ended before the reply".to_string(),
                ))
            })
        });
        self.pending.push(ack, ticket)
    }

    async fn flush(&mut self, timeout: Duration) -> Result<(), TargetError> {
        // Closing the queue lets the writer finish once every pipeline has its reply.
        self.queue = None;
        if let Some(writer) = self.writer.take() {
            tokio::time::timeout(timeout, writer)
                .await
                .map_err(|_| TargetError::Server(format!("flush: not done in {timeout:?}")))?
                .map_err(|e| server_error("the writer task", e))?;
        }
        self.pending.finish(timeout).await
    }
}

struct RedisConsumer {
    conn: MultiplexedConnection,
    name: String,
    keys: Vec<String>,
}

#[async_trait]
impl Consumer for RedisConsumer {
    async fn poll(&mut self, max_wait: Duration, sink: Sink<'_>) -> Result<usize, TargetError> {
        if self.keys.is_empty() {
            tokio::time::sleep(max_wait).await;
            return Ok(0);
        }
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(GROUP)
            .arg(&self.name)
            .arg("COUNT")
            .arg(READ_COUNT)
            .arg("BLOCK")
            .arg(max_wait.as_millis().max(1) as u64)
            .arg("NOACK")
            .arg("STREAMS")
            .arg(&self.keys);
        for _ in &self.keys {
            cmd.arg(">");
        }
        let reply: Value = cmd
            .query_async(&mut self.conn)
            .await
            .map_err(|e| server_error("XREADGROUP", e))?;
        let mut handed = 0;
        for_each_payload(&reply, &mut |payload| {
            sink(payload);
            handed += 1;
        })?;
        Ok(handed)
    }
}

/// Walks an `XREADGROUP` reply (RESP2 arrays or RESP3 maps: key, then entries of id and field/value pairs)
/// and hands over each entry's `v`, without copying.
fn for_each_payload(reply: &Value, f: &mut dyn FnMut(&[u8])) -> Result<(), TargetError> {
    let unexpected = || TargetError::Server(format!("XREADGROUP: unexpected reply {reply:?}"));
    let streams: Vec<&Value> = match reply {
        Value::Nil => return Ok(()),
        Value::Array(streams) => streams
            .iter()
            .map(|s| match s {
                Value::Array(pair) if pair.len() == 2 => Ok(&pair[1]),
                _ => Err(unexpected()),
            })
            .collect::<Result<_, _>>()?,
        Value::Map(streams) => streams.iter().map(|(_, entries)| entries).collect(),
        _ => return Err(unexpected()),
    };
    for entries in streams {
        let Value::Array(entries) = entries else {
            return Err(unexpected());
        };
        for entry in entries {
            let Value::Array(id_fields) = entry else {
                return Err(unexpected());
            };
            let Some(Value::Array(fields)) = id_fields.get(1) else {
                return Err(unexpected());
            };
            match fields.as_slice() {
                [_, Value::BulkString(payload)] => f(payload),
                _ => return Err(unexpected()),
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_payloads_from_a_reply() {
        let entry = |id: &str, v: &str| {
            Value::Array(vec![bulk(id), Value::Array(vec![bulk("v"), bulk(v)])])
        };
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("t:0"),
                Value::Array(vec![entry("1-0", "a"), entry("1-1", "b")]),
            ]),
            Value::Array(vec![bulk("t:1"), Value::Array(vec![entry("2-0", "c")])]),
        ]);
        let mut seen = Vec::new();
        for_each_payload(&reply, &mut |p| seen.push(p.to_vec())).unwrap();
        assert_eq!(seen, [b"a".to_vec(), b"b".to_vec(), b"c".to_vec()]);
        for_each_payload(&Value::Nil, &mut |_| panic!("no entries")).unwrap();
        assert!(for_each_payload(&Value::Int(1), &mut |_| {}).is_err());
    }

    #[test]
    fn durable_needs_appendfsync_always() {
        let none = Aof {
            enabled: Some(false),
            fsync: Some("everysec".into()),
        };
        assert_eq!(
            none.check(Durability::Durable).unwrap_err().to_string(),
            "not durable: no AOF on this server"
        );
        assert!(none.check(Durability::NotDurable).is_ok());
        let everysec = Aof {
            enabled: Some(true),
            fsync: Some("everysec".into()),
        };
        assert!(everysec.check(Durability::Durable).is_err());
        let always = Aof {
            enabled: Some(true),
            fsync: Some("always".into()),
        };
        assert!(always.check(Durability::Durable).is_ok());
        assert!(always.check(Durability::NotDurable).is_err());
    }

    #[test]
    fn finds_the_version_in_info() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_git_sha1:00000000\r\n";
        assert_eq!(redis_version(info).as_deref(), Some("7.0.15"));
    }

    #[test]
    fn the_client_version_named_is_the_locked_one() {
        let lock = include_str!("../../../../Cargo.lock");
        let locked = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"redis\"\n"))
            .and_then(|p| p.lines().find(|l| l.starts_with("version = ")))
            .expect("redis is in Cargo.lock");
        assert!(
            locked.contains(&format!("\"{REDIS_RS_VERSION}.")),
            "{locked}"
        );
    }
}
