//! The publisher: typed events to a topic, keyed, with their envelope in the headers.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use tracing::Instrument;
use uuid::Uuid;

use crate::codec::{Codec, CodecError};
use crate::envelope::{Envelope, PublishContext};
use crate::metrics::{PublishMetrics, SdkMetrics};
use crate::{trace_context, Event};

/// How long a record may wait in the client's queue when the queue is full before `publish` gives up.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where an event was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub partition: i32,
    pub offset: i64,
    pub event_id: Uuid,
}

/// Why an event was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("cannot encode the event: {0}")]
    Encode(#[from] CodecError),
    #[error("the producer cannot be created: {0}")]
    Config(KafkaError),
    #[error("the event was not delivered: {0}")]
    Kafka(KafkaError),
}

/// Publishes events to one topic. Cheap to clone; [`Publisher::to_topic`] shares the producer (one
/// connection pool, one idempotent producer id) with another topic.
pub struct Publisher<C: Codec> {
    producer: FutureProducer,
    codec: Arc<C>,
    topic: Arc<str>,
    metrics: Option<PublishMetrics>,
}

impl<C: Codec> Clone for Publisher<C> {
    fn clone(&self) -> Self {
        Publisher {
            producer: self.producer.clone(),
            codec: Arc::clone(&self.codec),
            topic: Arc::clone(&self.topic),
            metrics: self.metrics.clone(),
        }
    }
}

impl<C: Codec> std::fmt::Debug for Publisher<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("topic", &self.topic)
            .finish_non_exhaustive()
    }
}

impl<C: Codec> Publisher<C> {
    /// A publisher with the rdkafka settings of `config` (at least `bootstrap.servers`). Unless `config`
    /// says otherwise, the producer is idempotent with `acks=all`: a retried send never stores an event
    /// twice, and an acknowledged one survives a broker's loss.
    pub fn new(
        config: &ClientConfig,
        topic: impl Into<String>,
        codec: C,
    ) -> Result<Publisher<C>, PublishError> {
        let producer = durable_producer(config).map_err(PublishError::Config)?;
        Ok(Publisher {
            producer,
            codec: Arc::new(codec),
            topic: Arc::from(topic.into()),
            metrics: None,
        })
    }

    /// The same producer and codec, publishing to `topic` (with the same metrics, if any).
    pub fn to_topic(&self, topic: impl Into<String>) -> Publisher<C> {
        let topic: Arc<str> = Arc::from(topic.into());
        Publisher {
            metrics: self
                .metrics
                .as_ref()
                .map(|m| m.for_topic(Arc::clone(&topic))),
            topic,
            ..self.clone()
        }
    }

    /// Counts published events and publish errors in `metrics` (see [`crate::metrics`]).
    pub fn with_metrics(mut self, metrics: SdkMetrics) -> Publisher<C> {
        self.metrics = Some(PublishMetrics::new(metrics, Arc::clone(&self.topic)));
        self
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Publishes `event` as the start of a flow (its event id is its correlation id) and returns once the
    /// broker has stored it.
    pub async fn publish<E: Event>(&self, event: &E) -> Result<Delivery, PublishError> {
        self.publish_with(event, &PublishContext::default()).await
    }

    /// Publishes `event` with the correlation id, causation id and trace context of `context`.
    ///
    /// Runs in a `nerve_sdk.publish` span (see [`crate::trace_context`]). With OpenTelemetry active the
    /// record's `traceparent` names that span, a child of the current span or of `context`'s traceparent
    /// when it has one; without, the record carries `context`'s traceparent, if any, unchanged.
    pub async fn publish_with<E: Event>(
        &self,
        event: &E,
        context: &PublishContext,
    ) -> Result<Delivery, PublishError> {
        let mut envelope = Envelope::new(E::NAME, E::VERSION, context);
        let span = tracing::info_span!(
            "nerve_sdk.publish",
            otel.kind = "producer",
            event_type = %E::NAME,
            event_id = %envelope.event_id,
            correlation_id = %envelope.correlation_id,
            topic = %self.topic,
        );
        trace_context::producer_attributes(&span, "send", &self.topic);
        envelope.traceparent = trace_context::for_record(&span, envelope.traceparent.take());
        let sent = self.send(event, &envelope).instrument(span.clone()).await;
        match &sent {
            Ok(delivery) => {
                trace_context::delivered(&span, delivery.partition, delivery.offset);
                if let Some(metrics) = &self.metrics {
                    metrics.published(E::NAME);
                }
            }
            Err(e) => {
                trace_context::failed(&span, e);
                if let Some(metrics) = &self.metrics {
                    metrics.failed(E::NAME);
                }
            }
        }
        sent
    }

    async fn send<E: Event>(
        &self,
        event: &E,
        envelope: &Envelope,
    ) -> Result<Delivery, PublishError> {
        let value = self.codec.encode(&self.topic, event).await?;
        let key = event.key();
        let mut record = FutureRecord::to(&self.topic)
            .payload(&value)
            .headers(envelope.to_headers());
        if let Some(key) = &key {
            record = record.key(key);
        }
        let delivered = self
            .producer
            .send(record, Timeout::After(QUEUE_TIMEOUT))
            .await
            .map_err(|(e, _)| PublishError::Kafka(e))?;
        // The span carries the topic and the event's ids.
        tracing::debug!(
            partition = delivered.partition,
            offset = delivered.offset,
            "published"
        );
        Ok(Delivery {
            partition: delivered.partition,
            offset: delivered.offset,
            event_id: envelope.event_id,
        })
    }

    /// Waits until every record handed to the producer is delivered or failed.
    pub fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        self.producer.flush(timeout).map_err(PublishError::Kafka)
    }
}

/// A producer from `config` with idempotence and `acks=all` unless `config` sets them.
pub(crate) fn durable_producer(config: &ClientConfig) -> Result<FutureProducer, KafkaError> {
    let mut config = config.clone();
    if config.get("enable.idempotence").is_none() {
        config.set("enable.idempotence", "true");
    }
    if config.get("acks").is_none() && config.get("request.required.acks").is_none() {
        config.set("acks", "all");
    }
    config.create()
}
