//! What every schema type shares: the type names, references, and the [`ParsedSchema`] trait through which
//! the registry parses, compares and checks schemas without knowing their type.

use std::any::Any;
use std::fmt::Debug;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// The schema types the registry knows, named as the Confluent API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum SchemaType {
    #[default]
    Avro,
    Json,
    Protobuf,
}

impl SchemaType {
    pub const ALL: [SchemaType; 3] = [SchemaType::Avro, SchemaType::Json, SchemaType::Protobuf];

    pub fn name(self) -> &'static str {
        match self {
            SchemaType::Avro => "AVRO",
            SchemaType::Json => "JSON",
            SchemaType::Protobuf => "PROTOBUF",
        }
    }

    /// Parses a type name as the API accepts it (case-insensitive).
    pub fn from_name(name: &str) -> Option<SchemaType> {
        SchemaType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

/// A reference from one schema to another registered one, as the API carries it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SchemaReference {
    /// How the referencing schema names it: an Avro full type name, a JSON Schema `$ref` URL, a Protobuf
    /// import path.
    pub name: String,
    pub subject: String,
    pub version: i32,
}

/// A referenced schema's text, resolved by the registry and handed to a parser. A parser receives every
/// dependency of a schema, direct and transitive, each after the ones it depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The reference's `name` (see [`SchemaReference::name`]).
    pub name: String,
    pub schema_type: SchemaType,
    pub schema: String,
}

/// A schema that does not parse, or refers to something it was not given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidSchema(pub String);

/// A parsed schema of any type.
pub trait ParsedSchema: Send + Sync + Debug {
    fn schema_type(&self) -> SchemaType;

    /// The text the registry stores and compares: the same schema written with other whitespace (or, for
    /// Avro, other attribute order within an object) gives the same text, so registering it again finds the
    /// existing id. Confluent calls this the canonical string.
    fn canonical(&self) -> String;

    /// The text `normalize=true` stores and compares: `canonical` with equivalent spellings made one (for
    /// example Protobuf options or JSON keys sorted, Avro names fully qualified).
    fn normalized(&self) -> String;

    /// Why a consumer reading with `self` cannot read data written with `writer`; empty when it can.
    /// `writer` has the same type (the registry never compares across types). Each problem is one line
    /// that names the place (a field, a path, a message) and what is wrong, in the spirit of Confluent's
    /// `verbose=true` messages.
    fn read_problems(&self, writer: &dyn ParsedSchema) -> Vec<String>;

    /// Checks that `payload` is a valid encoding under this schema: the bytes after the wire format's magic
    /// byte and 4-byte schema id (for Protobuf, starting with the message indexes). The error says what
    /// failed to decode.
    fn validate_payload(&self, payload: &[u8]) -> Result<(), String>;

    /// The schema in another format, as `GET /schemas/ids/{id}?format=...` asks: for Protobuf
    /// `serialized` (a base64 `FileDescriptorProto`); `None` when the format is unknown for this type.
    fn formatted(&self, format: &str) -> Option<String> {
        let _ = format;
        None
    }

    fn as_any(&self) -> &dyn Any;
}

/// Parses `text` as a schema of `schema_type` with its dependencies (see [`Dependency`]).
pub fn parse(
    schema_type: SchemaType,
    text: &str,
    dependencies: &[Dependency],
) -> Result<Arc<dyn ParsedSchema>, InvalidSchema> {
    match schema_type {
        SchemaType::Avro => crate::avro::parse(text, dependencies),
        SchemaType::Json => crate::json::parse(text, dependencies),
        SchemaType::Protobuf => crate::protobuf::parse(text, dependencies),
    }
}
