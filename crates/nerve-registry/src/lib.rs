//! Nerve's schema registry.
//!
//! - [`schema`]: the schema types and the [`ParsedSchema`] trait each type implements ([`avro`], [`json`],
//!   [`protobuf`]).
//! - [`compatibility`]: compatibility levels and checks against earlier versions.

mod avro;
pub mod compatibility;
mod json;
mod protobuf;
pub mod schema;

pub use compatibility::CompatibilityLevel;
pub use schema::{parse, Dependency, InvalidSchema, ParsedSchema, SchemaReference, SchemaType};
