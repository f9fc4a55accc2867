//! `nerve-sdk`: event-driven services on Nerve, or on any Kafka or Redpanda cluster (it is built on
//! librdkafka through `rdkafka`).
//!
//! - [`Event`]: a typed event (name, version, key, serde).
//! - [`envelope`]: event id, occurred-at, correlation and causation ids and trace context, in headers.
//! - [`codec`]: payload encodings: plain JSON, or JSON, Avro or Protobuf in the schema registry's wire
//!   format with the event type's schema registered ([`registry`]).
//! - [`Publisher`]: publishes events keyed for per-entity ordering, idempotently.
//! - [`consumer`]: the runtime that dispatches records to [`Handler`]s, concurrently across keys and in
//!   order per key, retrying ([`retry`]: in place, or later from retry topics, [`retry_topic`]) and
//!   dead-lettering ([`dlq`]) failures, and committing only what is done.
//! - [`dedup`]: idempotent handling by event id: a dedup row written in the handler's own PostgreSQL
//!   transaction ([`dedup::PgDedup`], feature `postgres`), or a [`dedup::DedupStore`] such as the embedded
//!   [`dedup::RedbDedup`] (feature `redb`) behind an [`dedup::Idempotent`] handler.
//! - [`outbox`] (feature `postgres`): the transactional outbox, events written in the same PostgreSQL
//!   transaction as the business data and relayed to Kafka at least once, in order per key.
//! - [`trace_context`]: traces across Kafka through `tracing` and OpenTelemetry. Publishing runs in a
//!   `nerve_sdk.publish` span whose context becomes the record's `traceparent`; each record is handled in a
//!   `nerve_sdk.handle` span, a child of (and linked to) the producer's span; [`EventContext::follow_up`]
//!   continues the trace. The service installs a `tracing_opentelemetry` layer and its exporter; without
//!   one, nothing changes. The spans' fields (`correlation_id`, `event_id`, `topic`, ...) put the
//!   correlation id in every log line written while handling or publishing an event.
//! - [`metrics`]: [`SdkMetrics`], the SDK's prometheus-client families (handled, failed, retried,
//!   dead-lettered and published events, handler durations, consumer lag), registered in the service's
//!   registry and given to [`ConsumerBuilder::metrics`] and [`Publisher::with_metrics`].
//!
//! Features: `postgres` (tokio-postgres) and `redb`, both on by default; `default-features = false`
//! leaves them out.

pub mod codec;
pub mod consumer;
pub mod dedup;
pub mod dlq;
pub mod envelope;
mod event;
pub mod metrics;
#[cfg(feature = "postgres")]
pub mod outbox;
pub mod producer;
pub mod registry;
pub mod retry;
pub mod retry_topic;
#[cfg(feature = "postgres")]
mod sql;
pub mod trace_context;

pub use codec::{
    AvroRegistryCodec, Codec, CodecError, JsonCodec, JsonRegistryCodec, ProtobufRegistryCodec,
};
pub use consumer::{ConsumerBuilder, ConsumerRuntime, EventContext, Handler};
pub use dedup::{DedupStore, Idempotent};
pub use envelope::{Envelope, PublishContext};
pub use event::{Event, ProtobufSchema};
pub use metrics::SdkMetrics;
#[cfg(feature = "postgres")]
pub use outbox::{Outbox, OutboxRelay};
pub use producer::{Delivery, Publisher};
pub use registry::RegistryClient;
pub use retry::{HandlerError, RetryPolicy};
pub use retry_topic::RetryTopics;

/// Re-exported so that services configure clients without naming rdkafka's version themselves.
pub use rdkafka::config::ClientConfig;
/// Re-exported so that services name the PostgreSQL client the outbox and the dedup store take.
#[cfg(feature = "postgres")]
pub use tokio_postgres;
