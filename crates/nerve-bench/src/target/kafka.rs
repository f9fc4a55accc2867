//! The Kafka-protocol target, through librdkafka (`rdkafka`): Nerve, or any Kafka-compatible broker by
//! address. The two flavours differ only in how durability is asked for per topic: Nerve has the topic
//! config `fsync` (`always` / `never`); Apache Kafka has `flush.messages` (1 syncs every append) and does not
//! sync by default.
//!
//! Consumers are assigned partitions directly (no group): a group's join and rebalance would add seconds of
//! start-up that have nothing to do with the broker's speed, and the workload splits partitions itself.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::{FutureExt, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer as _, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{
    BaseRecord, DeliveryResult, Producer as _, ProducerContext, ThreadedProducer,
};
use rdkafka::{Offset, TopicPartitionList};

use super::{
    AckSink, Acks, Consumer, Destination, Durability, Producer, Record, Sink, Target, TargetError,
    TargetInfo, Ticket, MAX_PER_POLL,
};

/// How long the broker may take to answer the first metadata request before it counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a created topic may take to have a leader for every partition.
const PREPARE_TIMEOUT: Duration = Duration::from_secs(30);
/// librdkafka gives up on a record after this long; generous, since a lost record is a finding, not noise.
const MESSAGE_TIMEOUT_MS: &str = "30000";

/// Which broker speaks the protocol, for the settings that are not part of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flavor {
    Nerve,
    Kafka,
}

pub(crate) struct KafkaTarget {
    bootstrap: String,
    flavor: Flavor,
    server_pid: Option<u32>,
    server_version: Option<String>,
}

impl KafkaTarget {
    pub(crate) fn new(
        bootstrap: String,
        flavor: Flavor,
        server_pid: Option<u32>,
        server_version: Option<String>,
    ) -> KafkaTarget {
        KafkaTarget {
            bootstrap,
            flavor,
            server_pid,
            server_version,
        }
    }

    fn base_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "nerve-bench")
            .set(
                "socket.connection.setup.timeout.ms",
                CONNECT_TIMEOUT.as_millis().to_string(),
            )
            .set("log.connection.close", "false")
            .set_log_level(RDKafkaLogLevel::Error);
        config
    }

    fn topic_configs(&self, destination: &Destination) -> Vec<(String, String)> {
        let mut configs = Vec::new();
        let durable = match (self.flavor, destination.durability) {
            (_, Durability::Default) => None,
            (Flavor::Nerve, Durability::Durable) => Some(("fsync", "always")),
            (Flavor::Nerve, Durability::NotDurable) => Some(("fsync", "never")),
            (Flavor::Kafka, Durability::Durable) => Some(("flush.messages", "1")),
            // Kafka's default: acknowledged from the page cache.
            (Flavor::Kafka, Durability::NotDurable) => None,
        };
        if let Some((k, v)) = durable {
            configs.push((k.to_string(), v.to_string()));
        }
        configs.extend(destination.extra_config.iter().cloned());
        configs
    }

    fn producer_settings(destination: &Destination) -> Vec<(&'static str, String)> {
        let mut settings = vec![
            ("acks", destination.acks.to_string()),
            // Idempotence is what a durable Kafka producer uses, and it needs acks=all.
            (
                "enable.idempotence",
                (destination.acks == Acks::All).to_string(),
            ),
            ("compression.type", destination.compression.clone()),
            ("message.timeout.ms", MESSAGE_TIMEOUT_MS.to_string()),
        ];
        if let Some(bytes) = destination.batch_bytes {
            settings.push(("batch.size", bytes.to_string()));
        }
        if let Some(ms) = destination.linger_ms {
            settings.push(("linger.ms", ms.to_string()));
        }
        settings
    }

    fn flavor_name(&self) -> &'static str {
        match self.flavor {
            Flavor::Nerve => "nerve",
            Flavor::Kafka => "kafka",
        }
    }
}

fn unreachable_or_server(e: KafkaError) -> TargetError {
    match e.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::Resolve,
        ) => TargetError::Unreachable(e.to_string()),
        _ => TargetError::Server(e.to_string()),
    }
}

/// Runs librdkafka's blocking calls off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TargetError> + Send + 'static,
) -> Result<T, TargetError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| TargetError::Server(format!("a client task failed: {e}")))?
}

#[async_trait]
impl Target for KafkaTarget {
    async fn connect(&self, destination: &Destination) -> Result<TargetInfo, TargetError> {
        let consumer: BaseConsumer = self
            .base_config()
            .create()
            .map_err(|e| TargetError::Config(e.to_string()))?;
        let brokers = blocking(move || {
            let metadata = consumer
                .fetch_metadata(None, CONNECT_TIMEOUT)
                .map_err(|e| TargetError::Unreachable(e.to_string()))?;
            Ok(metadata.brokers().len())
        })
        .await?;
        let mut settings: Vec<(String, String)> = Self::producer_settings(destination)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        settings.extend(self.topic_configs(destination));
        let mut notes = Vec::new();
        if brokers != 1 {
            notes.push(format!("{brokers} brokers in the cluster"));
        }
        Ok(TargetInfo {
            name: self.flavor_name().to_string(),
            address: self.bootstrap.clone(),
            server_version: self.server_version.clone(),
            client: format!("librdkafka {}", rdkafka::util::get_rdkafka_version().1),
            settings,
            notes,
        })
    }

    async fn prepare(&self, destination: &Destination) -> Result<(), TargetError> {
        let admin: AdminClient<DefaultClientContext> = self
            .base_config()
            .create()
            .map_err(|e| TargetError::Config(e.to_string()))?;
        let configs = self.topic_configs(destination);
        let mut topic = NewTopic::new(
            &destination.name,
            destination.partitions as i32,
            TopicReplication::Fixed(1),
        );
        for (k, v) in &configs {
            topic = topic.set(k, v);
        }
        let options = AdminOptions::new().operation_timeout(Some(PREPARE_TIMEOUT));
        let results = admin
            .create_topics([&topic], &options)
            .await
            .map_err(unreachable_or_server)?;
        for result in results {
            if let Err((name, code)) = result {
                return Err(match code {
                    RDKafkaErrorCode::InvalidConfig | RDKafkaErrorCode::InvalidRequest => {
                        TargetError::Config(format!("topic {name} with {configs:?}: {code}"))
                    }
                    _ => TargetError::Server(format!("creating topic {name}: {code}")),
                });
            }
        }
        // CreateTopics may answer before every partition has a leader; producing earlier would only
        // measure the client's retries.
        let consumer: BaseConsumer = self
            .base_config()
            .create()
            .map_err(|e| TargetError::Config(e.to_string()))?;
        let name = destination.name.clone();
        let partitions = destination.partitions as usize;
        blocking(move || {
            let deadline = Instant::now() + PREPARE_TIMEOUT;
            loop {
                let ready = consumer
                    .fetch_metadata(Some(&name), CONNECT_TIMEOUT)
                    .ok()
                    .and_then(|m| {
                        m.topics().first().map(|t| {
                            t.error().is_none()
                                && t.partitions().len() == partitions
                                && t.partitions().iter().all(|p| p.leader() >= 0)
                        })
                    })
                    .unwrap_or(false);
                if ready {
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err(TargetError::Server(format!(
                        "topic {name} has no leader for all {partitions} partitions after {PREPARE_TIMEOUT:?}"
                    )));
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
        .await
    }

    async fn producer(
        &self,
        destination: &Destination,
        _index: usize,
        acks: Arc<dyn AckSink>,
    ) -> Result<Box<dyn Producer>, TargetError> {
        let mut config = self.base_config();
        for (k, v) in Self::producer_settings(destination) {
            config.set(k, v);
        }
        let producer: ThreadedProducer<AckContext> = config
            .create_with_context(AckContext { sink: acks })
            .map_err(|e| TargetError::Config(e.to_string()))?;
        Ok(Box::new(KafkaProducer {
            producer: Arc::new(producer),
            topic: destination.name.clone(),
        }))
    }

    async fn consumer(
        &self,
        destination: &Destination,
        index: usize,
        count: usize,
    ) -> Result<Box<dyn Consumer>, TargetError> {
        let consumer: StreamConsumer = self
            .base_config()
            .set("group.id", format!("nerve-bench-{}", destination.name))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .create()
            .map_err(|e| TargetError::Config(e.to_string()))?;
        let mut assignment = TopicPartitionList::new();
        for p in (0..destination.partitions as usize).filter(|p| p % count == index) {
            assignment
                .add_partition_offset(&destination.name, p as i32, Offset::Beginning)
                .map_err(|e| TargetError::Config(e.to_string()))?;
        }
        consumer
            .assign(&assignment)
            .map_err(unreachable_or_server)?;
        Ok(Box::new(KafkaConsumer {
            consumer,
            idle: assignment.count() == 0,
        }))
    }

    async fn cleanup(&self, destination: &Destination) -> Result<(), TargetError> {
        let admin: AdminClient<DefaultClientContext> = self
            .base_config()
            .create()
            .map_err(|e| TargetError::Config(e.to_string()))?;
        let options = AdminOptions::new().operation_timeout(Some(PREPARE_TIMEOUT));
        let results = admin
            .delete_topics(&[destination.name.as_str()], &options)
            .await
            .map_err(unreachable_or_server)?;
        for result in results {
            if let Err((name, code)) = result {
                return Err(TargetError::Server(format!(
                    "deleting topic {name}: {code}"
                )));
            }
        }
        Ok(())
    }

    fn server_pid(&self) -> Option<u32> {
        self.server_pid
    }
}

/// Hands librdkafka's delivery reports straight to the workload's sink, on librdkafka's polling thread:
/// no future, channel or task per record, so that the load generator costs as little as the client allows.
struct AckContext {
    sink: Arc<dyn AckSink>,
}

impl ClientContext for AckContext {}

impl ProducerContext for AckContext {
    type DeliveryOpaque = Box<Ticket>;

    fn delivery(&self, result: &DeliveryResult<'_>, ticket: Box<Ticket>) {
        let outcome = match result {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(TargetError::Server(e.to_string())),
        };
        self.sink.ack(*ticket, outcome);
    }
}

struct KafkaProducer {
    producer: Arc<ThreadedProducer<AckContext>>,
    topic: String,
}

#[async_trait]
impl Producer for KafkaProducer {
    async fn send(&mut self, record: Record<'_>, ticket: Ticket) -> Result<(), TargetError> {
        let mut message =
            BaseRecord::with_opaque_to(&self.topic, Box::new(ticket)).payload(record.payload);
        if let Some(key) = record.key {
            message = message.key(key);
        }
        loop {
            match self.producer.send(message) {
                Ok(()) => return Ok(()),
                // librdkafka's queue is full: this is the target's backpressure, so wait for room.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                    message = returned;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(TargetError::Server(e.to_string())),
            }
        }
    }

    async fn flush(&mut self, timeout: Duration) -> Result<(), TargetError> {
        // rd_kafka_flush returns once every delivery report was served, so the sink has them all.
        let producer = Arc::clone(&self.producer);
        blocking(move || {
            producer
                .flush(timeout)
                .map_err(|e| TargetError::Server(format!("flush: {e}")))
        })
        .await
    }
}

struct KafkaConsumer {
    consumer: StreamConsumer,
    idle: bool,
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn poll(&mut self, max_wait: Duration, sink: Sink<'_>) -> Result<usize, TargetError> {
        if self.idle {
            tokio::time::sleep(max_wait).await;
            return Ok(0);
        }
        let mut stream = self.consumer.stream();
        let first = match tokio::time::timeout(max_wait, stream.next()).await {
            Err(_) => return Ok(0),
            Ok(None) => return Err(TargetError::Server("the consumer stream ended".into())),
            Ok(Some(message)) => message,
        };
        let mut handed = 0;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            let message = message.map_err(|e| TargetError::Server(e.to_string()))?;
            sink(message.payload().unwrap_or_default());
            handed += 1;
            if handed < MAX_PER_POLL {
                next = stream.next().now_or_never().flatten();
            }
        }
        Ok(handed)
    }
}
