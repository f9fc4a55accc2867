//! `nerve-sdk`: event-driven services on Nerve, or on any Kafka or Redpanda cluster (it is built on
//! librdkafka through `rdkafka`).
//!
//! - [`Event`]: a typed event (name, version, key, serde).
//! - [`envelope`]: event id, occurred-at, correlation and causation ids and trace context, in headers.
//! - [`codec`]: payload encodings, plain JSON or JSON in the schema registry's wire format
//!   ([`registry`]).
//! - [`Publisher`]: publishes events keyed for per-entity ordering, idempotently.
//! - [`consumer`]: the runtime that dispatches records to [`Handler`]s, concurrently across keys and in
//!   order per key, retrying ([`retry`]) and dead-lettering ([`dlq`]) failures, and committing only what
//!   is done.

pub mod codec;
pub mod consumer;
pub mod dlq;
pub mod envelope;
mod event;
pub mod producer;
pub mod registry;
pub mod retry;

pub use codec::{Codec, JsonCodec, JsonRegistryCodec};
pub use consumer::{ConsumerBuilder, ConsumerRuntime, EventContext, Handler};
pub use envelope::{Envelope, PublishContext};
pub use event::Event;
pub use producer::{Delivery, Publisher};
pub use registry::RegistryClient;
pub use retry::{HandlerError, RetryPolicy};

/// Re-exported so that services configure clients without naming rdkafka's version themselves.
pub use rdkafka::config::ClientConfig;
