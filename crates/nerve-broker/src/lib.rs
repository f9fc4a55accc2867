//! Nerve's Kafka-wire broker.
//!
//! - [`Server`]: the listener; one task per connection ([`connection`](crate::connection)), requests
//!   pipelined and answered in order, graceful shutdown.
//! - [`Broker`]: what handlers share: [`BrokerConfig`], the `LogStore` and `MetaStore`, topic lifecycle.
//! - `api/`: one module per API family, each decoding its request, applying it and encoding the answer;
//!   [`SUPPORTED_APIS`] is what ApiVersions advertises.
//!
//! Tests: unit tests here (`cargo nextest run -p nerve-broker`); end-to-end tests with real Kafka clients
//! live in `crates/nerve/tests/`.

mod api;
mod broker;
pub mod config;
mod connection;
mod error;
mod group;
pub mod listener;
pub mod metrics;
pub mod observe;
pub mod sasl;
mod server;
mod session;
pub mod validation;

pub use api::SUPPORTED_APIS;
pub use broker::Broker;
pub use config::{BrokerConfig, ConfigError};
pub use error::RequestError;
pub use listener::{Listener, SecurityProtocol};
pub use server::{Server, ServerError};
pub use validation::{RecordPart, RecordValidator};
