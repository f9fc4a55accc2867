//! RabbitMQ, through `lapin` on tokio over plain AMQP 0-9-1: one queue per partition (`<name>.<p>`),
//! published to through the default exchange.
//!
//! - durable: quorum queues (`x-queue-type: quorum`, necessarily `durable: true`) and persistent messages
//!   (delivery mode 2). A quorum queue confirms a message once its Raft log has it fsync'd (on one node, this
//!   one), which is what "on disk before the acknowledgement" means for the other targets. A classic durable
//!   queue would also confirm persistent messages only once written, but quorum queues are RabbitMQ's own
//!   answer for data safety, so they are the fair comparison.
//! - not durable (and default): classic transient queues (`durable: false`) and transient messages (delivery
//!   mode 1): confirmed from memory.
//!
//! Producers have a channel each in confirm mode (`confirm_select`); a publish returns at once with its
//! confirm future, so many confirms are outstanding. Consumers use `basic_consume` with `no_ack`: the server
//! does no per-message ack work, as with the other peers' consumers here.
//!
//! lapin does not expose the server properties of `connection.start`, so the version comes from a separate
//! handshake that reads that frame and hangs up ([`server_version`]).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::SelectAll;
use futures::FutureExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::protocol::{connection, AMQPClass};
use lapin::publisher_confirm::Confirmation;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{
    partitions_of, AckSink, Acks, Consumer, Destination, Durability, Partitioner, PendingAcks,
    Producer, Record, Sink, Target, TargetError, TargetInfo, Ticket,
};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a confirm may take; generous, since a lost record is a finding, not noise.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct RabbitMqTarget {
    url: String,
    server_pid: Option<u32>,
}

impl RabbitMqTarget {
    pub(crate) fn new(url: String, server_pid: Option<u32>) -> RabbitMqTarget {
        RabbitMqTarget { url, server_pid }
    }

    async fn connection(&self) -> Result<Connection, TargetError> {
        let properties = ConnectionProperties::default()
            .with_connection_name("nerve-bench".into())
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio::current());
        tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&self.url, properties))
            .await
            .map_err(|_| {
                TargetError::Unreachable(format!(
                    "{}: no connection in {CONNECT_TIMEOUT:?}",
                    self.url
                ))
            })?
            .map_err(|e| TargetError::Unreachable(format!("{}: {e}", self.url)))
    }

    async fn channel(&self) -> Result<(Connection, Channel), TargetError> {
        let connection = self.connection().await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| server_error("opening a channel", e))?;
        Ok((connection, channel))
    }
}

fn server_error(what: &str, e: impl std::fmt::Display) -> TargetError {
    TargetError::Server(format!("{what}: {e}"))
}

fn queue_name(destination: &Destination, partition: u32) -> String {
    format!("{}.{partition}", destination.name)
}

fn durable(destination: &Destination) -> bool {
    destination.durability == Durability::Durable
}

/// The server's `version` from its `connection.start` server properties: lapin reads and drops them, so a
/// second connection sends the protocol header, reads that one frame and hangs up.
async fn server_version(host: &str, port: u16) -> Result<Option<String>, String> {
    let exchange = async {
        let mut socket = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        socket
            .write_all(b"AMQP\x00\x00\x09\x01")
            .await
            .map_err(|e| e.to_string())?;
        // A frame: type (1 = method), channel (2), payload size (4), payload, end byte.
        let mut header = [0u8; 7];
        socket
            .read_exact(&mut header)
            .await
            .map_err(|e| e.to_string())?;
        let size = u32::from_be_bytes([header[3], header[4], header[5], header[6]]) as usize;
        if header[0] != 1 || size > 1 << 20 {
            return Err("not an AMQP 0-9-1 server".to_string());
        }
        let mut payload = vec![0u8; size];
        socket
            .read_exact(&mut payload)
            .await
            .map_err(|e| e.to_string())?;
        Ok(payload)
    };
    let payload = tokio::time::timeout(CONNECT_TIMEOUT, exchange)
        .await
        .map_err(|_| format!("no connection.start in {CONNECT_TIMEOUT:?}"))??;
    Ok(version_of_start(&payload))
}

fn version_of_start(payload: &[u8]) -> Option<String> {
    let (_, class) = lapin::protocol::parse_class(payload).ok()?;
    let AMQPClass::Connection(connection::AMQPMethod::Start(start)) = class else {
        return None;
    };
    match start.server_properties.inner().get("version")? {
        AMQPValue::LongString(v) => Some(String::from_utf8_lossy(v.as_bytes()).into_owned()),
        other => Some(format!("{other:?}")),
    }
}

#[async_trait]
impl Target for RabbitMqTarget {
    async fn connect(&self, destination: &Destination) -> Result<TargetInfo, TargetError> {
        let uri: lapin::uri::AMQPUri = self
            .url
            .parse()
            .map_err(|e| TargetError::Config(format!("{}: {e}", self.url)))?;
        let version = server_version(&uri.authority.host, uri.authority.port)
            .await
            .map_err(|e| TargetError::Unreachable(format!("{}: {e}", self.url)))?;
        // The probe does not log in: a real connection checks the credentials and the vhost.
        let connection = self.connection().await?;
        let _ = connection.close(200, "nerve-bench: probe").await;
        let mut notes = Vec::new();
        if destination.acks == Acks::None {
            notes.push("acks=0 ignored: every publish waits for its confirm".to_string());
        }
        if destination.compression != "none" {
            notes.push(format!(
                "compression {} ignored: messages are stored as sent",
                destination.compression
            ));
        }
        if destination.batch_bytes.is_some() || destination.linger_ms.is_some() {
            notes.push("batch size and linger ignored: each publish is sent at once".to_string());
        }
        let (queues, delivery_mode) = if durable(destination) {
            ("quorum (x-queue-type=quorum, durable)", "2 (persistent)")
        } else {
            ("classic, durable=false", "1 (transient)")
        };
        Ok(TargetInfo {
            name: "rabbitmq".to_string(),
            address: format!(
                "amqp://{}:{}/{}",
                uri.authority.host, uri.authority.port, uri.vhost
            ),
            server_version: version,
            client: format!("lapin {LAPIN_VERSION}"),
            settings: vec![
                (
                    "queues".to_string(),
                    format!("{}.<partition>: {queues}", destination.name),
                ),
                ("delivery_mode".to_string(), delivery_mode.to_string()),
                (
                    "publisher confirms".to_string(),
                    "confirm_select, pipelined".to_string(),
                ),
                ("consumer".to_string(), "basic_consume no_ack".to_string()),
            ],
            notes,
        })
    }

    async fn prepare(&self, destination: &Destination) -> Result<(), TargetError> {
        let (connection, channel) = self.channel().await?;
        let mut arguments = FieldTable::default();
        if durable(destination) {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        let options = QueueDeclareOptions {
            durable: durable(destination),
            ..Default::default()
        };
        for p in 0..destination.partitions {
            channel
                .queue_declare(&queue_name(destination, p), options, arguments.clone())
                .await
                .map_err(|e| server_error("declaring a queue", e))?;
        }
        let _ = connection.close(200, "nerve-bench: prepared").await;
        Ok(())
    }

    async fn producer(
        &self,
        destination: &Destination,
        index: usize,
        acks: Arc<dyn AckSink>,
    ) -> Result<Box<dyn Producer>, TargetError> {
        let (connection, channel) = self.channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| server_error("confirm.select", e))?;
        let properties =
            BasicProperties::default().with_delivery_mode(if durable(destination) { 2 } else { 1 });
        Ok(Box::new(RabbitMqProducer {
            pending: PendingAcks::new(acks),
            _connection: connection,
            channel,
            queues: (0..destination.partitions)
                .map(|p| queue_name(destination, p))
                .collect(),
            partitioner: Partitioner::new(destination.partitions, index),
            properties,
        }))
    }

    async fn consumer(
        &self,
        destination: &Destination,
        index: usize,
        count: usize,
    ) -> Result<Box<dyn Consumer>, TargetError> {
        let (connection, channel) = self.channel().await?;
        let mut deliveries = SelectAll::new();
        for p in partitions_of(destination, index, count) {
            deliveries.push(
                channel
                    .basic_consume(
                        &queue_name(destination, p),
                        &format!("nerve-bench-{p}"),
                        BasicConsumeOptions {
                            no_ack: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| server_error("basic.consume", e))?,
            );
        }
        Ok(Box::new(RabbitMqConsumer {
            _connection: connection,
            _channel: channel,
            deliveries,
        }))
    }

    async fn cleanup(&self, destination: &Destination) -> Result<(), TargetError> {
        let (connection, channel) = self.channel().await?;
        for p in 0..destination.partitions {
            channel
                .queue_delete(&queue_name(destination, p), QueueDeleteOptions::default())
                .await
                .map_err(|e| server_error("deleting a queue", e))?;
        }
        let _ = connection.close(200, "nerve-bench: cleaned up").await;
        Ok(())
    }

    fn server_pid(&self) -> Option<u32> {
        self.server_pid
    }
}

/// lapin does not export its version; this is the one Cargo.lock pins (checked by a test).
const LAPIN_VERSION: &str = "3.7";

struct RabbitMqProducer {
    pending: PendingAcks,
    /// Held so that the connection lives as long as the channel.
    _connection: Connection,
    channel: Channel,
    queues: Vec<String>,
    partitioner: Partitioner,
    properties: BasicProperties,
}

#[async_trait]
impl Producer for RabbitMqProducer {
    async fn send(&mut self, record: Record<'_>, ticket: Ticket) -> Result<(), TargetError> {
        let p = self.partitioner.pick(record.key);
        let confirm = self
            .channel
            .basic_publish(
                "",
                &self.queues[p as usize],
                BasicPublishOptions::default(),
                record.payload,
                self.properties.clone(),
            )
            .await
            .map_err(|e| server_error("basic.publish", e))?;
        self.pending.push(
            Box::pin(
                tokio::time::timeout(CONFIRM_TIMEOUT, confirm).map(|r| match r {
                    Err(_) => Err(TargetError::Server(format!(
                        "no confirm in {CONFIRM_TIMEOUT:?}"
                    ))),
                    Ok(Err(e)) => Err(server_error("confirm", e)),
                    Ok(Ok(Confirmation::Nack(_))) => Err(TargetError::Server(
                        "the server nacked the message".to_string(),
                    )),
                    Ok(Ok(Confirmation::Ack(_) | Confirmation::NotRequested)) => Ok(()),
                }),
            ),
            ticket,
        )
    }

    async fn flush(&mut self, timeout: Duration) -> Result<(), TargetError> {
        tokio::time::timeout(timeout, self.channel.wait_for_confirms())
            .await
            .map_err(|_| TargetError::Server(format!("flush: not done in {timeout:?}")))?
            .map_err(|e| server_error("waiting for confirms", e))?;
        self.pending.finish(timeout).await
    }
}

struct RabbitMqConsumer {
    _connection: Connection,
    _channel: Channel,
    deliveries: SelectAll<lapin::Consumer>,
}

#[async_trait]
impl Consumer for RabbitMqConsumer {
    async fn poll(&mut self, max_wait: Duration, sink: Sink<'_>) -> Result<usize, TargetError> {
        if self.deliveries.is_empty() {
            tokio::time::sleep(max_wait).await;
            return Ok(0);
        }
        super::poll_stream(
            &mut self.deliveries,
            max_wait,
            sink,
            |d| &d.data,
            "the consumers were cancelled",
            |e| server_error("delivery", e),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_version_named_is_the_locked_one() {
        let lock = include_str!("../../../../Cargo.lock");
        let locked = lock
            .split("[[package]]")
            .find(|p| p.contains("name = \"lapin\"\n"))
            .and_then(|p| p.lines().find(|l| l.starts_with("version = ")))
            .expect("lapin is in Cargo.lock");
        assert!(locked.contains(&format!("\"{LAPIN_VERSION}.")), "{locked}");
    }

    #[test]
    fn a_garbled_start_has_no_version() {
        assert_eq!(version_of_start(b"\x00\x0a"), None);
    }
}
