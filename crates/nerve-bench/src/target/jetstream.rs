//! NATS JetStream, through `async-nats`: one stream per destination, file storage, with one subject per
//! partition (`<name>.<p>`, the stream listening on `<name>.*`).
//!
//! Producers publish with `jetstream.publish` and keep the PubAck futures outstanding (pipelined, up to
//! [`MAX_ACK_INFLIGHT`] per producer on the client's side as well as the workload's own limit). Consumers are
//! one durable pull consumer per partition (`filter_subject` `<name>.<p>`; `filter_subjects`, to put several
//! subjects under one consumer, needs a 2.10 server), `AckPolicy::None`, deliver all: like a Kafka consumer
//! that never commits, and like the other peers' consumers here, the server does no per-message ack work.
//!
//! Durability is a server setting, not a stream's: `jetstream { sync_interval: always }` (nats-server 2.10 and
//! later) fsyncs every write before the PubAck; otherwise the file store syncs every two minutes (its default
//! `sync_interval`). The client protocol does not tell which one the server runs with, so the operator says
//! so (`--nats-sync-always`); a server older than 2.10 cannot sync always at all, and its durable cases are
//! reported as unavailable rather than run under a name they do not deserve.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
use async_nats::jetstream::context::ContextBuilder;
use async_nats::jetstream::stream::{self, StorageType};
use async_nats::jetstream::Context;
use async_trait::async_trait;
use futures::stream::SelectAll;

use super::{
    partitions_of, Ack, AckSink, Acks, Consumer, Destination, Durability, Partitioner, PendingAcks,
    Producer, Record, Sink, Target, TargetError, TargetInfo, Ticket,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a PubAck may take; generous, since a lost record is a finding, not noise.
const ACK_TIMEOUT: Duration = Duration::from_secs(30);
/// PubAcks outstanding per producer before `publish` waits (the client's backpressure).
const MAX_ACK_INFLIGHT: usize = 10_000;
/// Messages per pull request: large enough that a consumer is not a round trip per few records.
const PULL_BATCH: usize = 1_000;
/// The server version from which `jetstream { sync_interval: always }` exists.
const SYNC_ALWAYS_SINCE: (u32, u32) = (2, 10);

pub(crate) struct JetStreamTarget {
    url: String,
    server_pid: Option<u32>,
    /// The operator's word that the server runs with `sync_interval: always`.
    sync_always: bool,
    /// Learnt at `connect`, for `prepare`'s durability check.
    server_version: Mutex<Option<String>>,
}

impl JetStreamTarget {
    pub(crate) fn new(url: String, server_pid: Option<u32>, sync_always: bool) -> JetStreamTarget {
        JetStreamTarget {
            url,
            server_pid,
            sync_always,
            server_version: Mutex::new(None),
        }
    }

    async fn client(&self) -> Result<async_nats::Client, TargetError> {
        async_nats::ConnectOptions::new()
            .name("nerve-bench")
            .connection_timeout(CONNECT_TIMEOUT)
            .connect(self.url.as_str())
            .await
            .map_err(|e| TargetError::Unreachable(format!("{}: {e}", self.url)))
    }

    async fn context(&self) -> Result<Context, TargetError> {
        Ok(ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .ack_timeout(ACK_TIMEOUT)
            .max_ack_inflight(MAX_ACK_INFLIGHT)
            .backpressure_on_inflight(true)
            .build(self.client().await?))
    }

    fn sync_setting(&self) -> &'static str {
        if self.sync_always {
            "always (a server compare started so, or the operator's word: --nats-sync-always)"
        } else {
            "the server's default: 2m"
        }
    }

    /// Whether the server can give `durability`; `version` is the server's.
    fn check_durability(&self, durability: Durability, version: &str) -> Result<(), TargetError> {
        match durability {
            Durability::Durable if !at_least(version, SYNC_ALWAYS_SINCE) => {
                Err(TargetError::Unavailable(
                    "not available on this server (needs nats-server >= 2.10)".to_string(),
                ))
            }
            Durability::Durable if !self.sync_always => Err(TargetError::Unavailable(
                "not available: the server must run with jetstream { sync_interval: always }, which \
                 the client protocol does not show; pass --nats-sync-always if it does"
                    .to_string(),
            )),
            Durability::NotDurable if self.sync_always => Err(TargetError::Unavailable(
                "not available: the server syncs every write (sync_interval: always)".to_string(),
            )),
            _ => Ok(()),
        }
    }
}

/// Whether version `v` (`major.minor.patch...`) is at least `(major, minor)`.
fn at_least(v: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = v
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

fn server_error(what: &str, e: impl std::fmt::Display) -> TargetError {
    TargetError::Server(format!("{what}: {e}"))
}

fn subject(destination: &Destination, partition: u32) -> String {
    format!("{}.{partition}", destination.name)
}

#[async_trait]
impl Target for JetStreamTarget {
    async fn connect(&self, destination: &Destination) -> Result<TargetInfo, TargetError> {
        let client = self.client().await?;
        let version = client.server_info().version;
        *self
            .server_version
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(version.clone());
        // A server without JetStream answers core NATS only: that is unreachable for this target. The raw
        // request, since async-nats 0.46's account-info type does not parse a 2.9 server's answer.
        let reply =
            tokio::time::timeout(CONNECT_TIMEOUT, client.request("$JS.API.INFO", "".into()))
                .await
                .map_err(|_| {
                    TargetError::Unreachable(format!("{}: JetStream did not answer", self.url))
                })?
                .map_err(|e| TargetError::Unreachable(format!("{}: JetStream: {e}", self.url)))?;
        let reply: serde_json::Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
        if reply.get("type").is_none() || reply.get("error").is_some() {
            return Err(TargetError::Unreachable(format!(
                "{}: JetStream is not enabled: {reply}",
                self.url
            )));
        }
        let mut notes = Vec::new();
        if destination.acks == Acks::None {
            notes.push("acks=0 ignored: every publish waits for its PubAck".to_string());
        }
        if destination.compression != "none" {
            notes.push(format!(
                "compression {} ignored: JetStream stores payloads as sent",
                destination.compression
            ));
        }
        if destination.batch_bytes.is_some() || destination.linger_ms.is_some() {
            notes.push("batch size and linger ignored: each publish is sent at once".to_string());
        }
        Ok(TargetInfo {
            name: "jetstream".to_string(),
            address: self.url.clone(),
            server_version: Some(version),
            client: format!("async-nats {}", ASYNC_NATS_VERSION),
            settings: vec![
                ("storage".to_string(), "file".to_string()),
                ("replicas".to_string(), "1".to_string()),
                (
                    "subjects".to_string(),
                    format!("{}.<partition>", destination.name),
                ),
                (
                    "jetstream.sync_interval".to_string(),
                    self.sync_setting().to_string(),
                ),
                ("max_ack_inflight".to_string(), MAX_ACK_INFLIGHT.to_string()),
                (
                    "consumer".to_string(),
                    format!(
                        "durable pull consumer per partition, ack_policy none, batch {PULL_BATCH}"
                    ),
                ),
            ],
            notes,
        })
    }

    async fn prepare(&self, destination: &Destination) -> Result<(), TargetError> {
        let version = self
            .server_version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default();
        self.check_durability(destination.durability, &version)?;
        let context = self.context().await?;
        context
            .create_stream(stream::Config {
                name: destination.name.clone(),
                subjects: vec![format!("{}.*", destination.name)],
                storage: StorageType::File,
                num_replicas: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| server_error("creating the stream", e))?;
        Ok(())
    }

    async fn producer(
        &self,
        destination: &Destination,
        index: usize,
        acks: Arc<dyn AckSink>,
    ) -> Result<Box<dyn Producer>, TargetError> {
        let context = self.context().await?;
        let subjects = (0..destination.partitions)
            .map(|p| subject(destination, p))
            .collect();
        Ok(Box::new(JetStreamProducer {
            pending: PendingAcks::new(acks),
            context,
            subjects,
            partitioner: Partitioner::new(destination.partitions, index),
        }))
    }

    async fn consumer(
        &self,
        destination: &Destination,
        index: usize,
        count: usize,
    ) -> Result<Box<dyn Consumer>, TargetError> {
        let context = self.context().await?;
        let stream = context
            .get_stream(&destination.name)
            .await
            .map_err(|e| server_error("finding the stream", e))?;
        let mut messages = SelectAll::new();
        for p in partitions_of(destination, index, count) {
            let consumer: async_nats::jetstream::consumer::PullConsumer = stream
                .create_consumer(pull::Config {
                    durable_name: Some(format!("nerve-bench-{p}")),
                    filter_subject: subject(destination, p),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::None,
                    ..Default::default()
                })
                .await
                .map_err(|e| server_error("creating a pull consumer", e))?;
            messages.push(
                consumer
                    .stream()
                    .max_messages_per_batch(PULL_BATCH)
                    .messages()
                    .await
                    .map_err(|e| server_error("pulling", e))?,
            );
        }
        Ok(Box::new(JetStreamConsumer { messages }))
    }

    async fn cleanup(&self, destination: &Destination) -> Result<(), TargetError> {
        self.context()
            .await?
            .delete_stream(&destination.name)
            .await
            .map_err(|e| server_error("deleting the stream", e))?;
        Ok(())
    }

    fn server_pid(&self) -> Option<u32> {
        self.server_pid
    }
}

/// async-nats does not export its version; this is the one Cargo.lock pins (checked by a test).
const ASYNC_NATS_VERSION: &str = "0.46";

struct JetStreamProducer {
    pending: PendingAcks,
    context: Context,
    subjects: Vec<String>,
    partitioner: Partitioner,
}

#[async_trait]
impl Producer for JetStreamProducer {
    async fn send(&mut self, record: Record<'_>, ticket: Ticket) -> Result<(), TargetError> {
        let p = self.partitioner.pick(record.key);
        let ack = self
            .context
            .publish(
                self.subjects[p as usize].clone(),
                record.payload.to_vec().into(),
            )
            .await
            .map_err(|e| server_error("publish", e))?;
        let ack: Ack = Box::pin(async move {
            ack.await
                .map(|_| ())
                .map_err(|e| TargetError::Server(format!("PubAck: {e}")))
        });
        self.pending.push(ack, ticket)
    }

    async fn flush(&mut self, timeout: Duration) -> Result<(), TargetError> {
        tokio::time::timeout(timeout, self.context.client().flush())
            .await
            .map_err(|_| TargetError::Server(format!("flush: not done in {timeout:?}")))?
            .map_err(|e| server_error("flush", e))?;
        self.pending.finish(timeout).await
    }
}

struct JetStreamConsumer {
    messages: SelectAll<pull::Stream>,
}

#[async_trait]
impl Consumer for JetStreamConsumer {
    async fn poll(&mut self, max_wait: Duration, sink: Sink<'_>) -> Result<usize, TargetError> {
        if self.messages.is_empty() {
            tokio::time::sleep(max_wait).await;
            return Ok(0);
        }
        super::poll_stream(
            &mut self.messages,
            max_wait,
            sink,
            |m| &m.payload,
            "the pull streams ended",
            |e| server_error("pull", e),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare() {
        assert!(!at_least("2.9.10", (2, 10)));
        assert!(at_least("2.10.0", (2, 10)));
        assert!(at_least("2.11.3-beta", (2, 10)));
        assert!(at_least("v3.0.0", (2, 10)));
        assert!(!at_least("", (2, 10)));
    }

    #[test]
    fn durable_needs_sync_always_and_a_recent_server() {
        let plain = JetStreamTarget::new("nats://x:4222".into(), None, false);
        let always = JetStreamTarget::new("nats://x:4222".into(), None, true);
        let err = plain
            .check_durability(Durability::Durable, "2.9.10")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "not available on this server (needs nats-server >= 2.10)"
        );
        assert!(always
            .check_durability(Durability::Durable, "2.9.10")
            .is_err());
        assert!(plain
            .check_durability(Durability::Durable, "2.10.1")
            .is_err());
        assert!(always
            .check_durability(Durability::Durable, "2.10.1")
            .is_ok());
        assert!(plain
            .check_durability(Durability::NotDurable, "2.9.10")
            .is_ok());
        assert!(always
            .check_durability(Durability::NotDurable, "2.10.1")
            .is_err());
    }

    #[test]
    fn the_client_version_named_is_the_locked_one() {
        let lock = include_str!("../../../../Cargo.lock");
        let locked = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"async-nats\""))
            .and_then(|p| p.lines().find(|l| l.starts_with("version = ")))
            .expect("async-nats is in Cargo.lock");
        assert!(
            locked.contains(&format!("\"{ASYNC_NATS_VERSION}.")),
            "{locked}"
        );
    }
}
