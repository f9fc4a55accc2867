//! Nerve's schema registry: the Confluent Schema Registry's REST API and rules, with its state in the
//! compacted topic `_schemas` of Nerve's own log.
//!
//! - [`schema`]: the schema types and the [`ParsedSchema`] trait each type implements (Avro, JSON Schema,
//!   Protobuf, in private modules).
//! - [`compatibility`]: compatibility levels and checks against earlier versions.
//! - [`registry`]: subjects, versions, ids, configs and modes; every change durable in `_schemas` first.
//! - [`api`]: the REST API as an axum router.

pub mod api;
mod avro;
pub mod compatibility;
pub mod error;
mod json;
mod protobuf;
pub mod registry;
pub mod schema;
mod store;

pub use compatibility::CompatibilityLevel;
pub use error::RegistryError;
pub use registry::Registry;
pub use schema::{parse, Dependency, InvalidSchema, ParsedSchema, SchemaReference, SchemaType};
pub use store::{Mode, SCHEMAS_TOPIC};
