//! Codecs: how an event's payload becomes a record value and back.
//!
//! - [`JsonCodec`]: plain JSON, no registry.
//! - [`JsonRegistryCodec`]: JSON in the schema registry's wire format — magic byte `0`, the schema id as
//!   4 bytes big-endian, then the JSON — with the event type's [`Event::json_schema`] registered under
//!   `<topic>-value` (the TopicNameStrategy). Confluent's JSON Schema deserializers read these records.

use async_trait::async_trait;

use crate::registry::{RegistryClient, RegistryError};
use crate::Event;

/// The registry wire format's first byte.
pub const MAGIC_BYTE: u8 = 0;

/// Why a payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot serialize {event_type}: {source}")]
    Serialize {
        event_type: &'static str,
        source: serde_json::Error,
    },
    #[error("the payload is not a valid {event_type}: {source}")]
    Deserialize {
        event_type: &'static str,
        source: serde_json::Error,
    },
    #[error("the payload is not in the schema registry's wire format: {0}")]
    NotFramed(&'static str),
    #[error("the payload was written with schema {id}, a {schema_type} schema, not JSON")]
    WrongSchemaType { id: u32, schema_type: String },
    #[error("{0} has no JSON Schema (Event::json_schema) to register")]
    NoSchema(&'static str),
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl CodecError {
    /// Whether trying again may succeed (the registry was unreachable), as opposed to a payload or an
    /// event type that will never do.
    pub fn is_transient(&self) -> bool {
        match self {
            CodecError::Registry(e) => e.is_transient(),
            _ => false,
        }
    }
}

/// Turns events into record values and back. `topic` is where the record goes or came from (registry
/// subjects derive from it).
#[async_trait]
pub trait Codec: Send + Sync + 'static {
    async fn encode<E: Event>(&self, topic: &str, event: &E) -> Result<Vec<u8>, CodecError>;
    async fn decode<E: Event>(&self, topic: &str, payload: &[u8]) -> Result<E, CodecError>;
}

/// Plain JSON, no registry.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonCodec;

#[async_trait]
impl Codec for JsonCodec {
    async fn encode<E: Event>(&self, _topic: &str, event: &E) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(event).map_err(|source| CodecError::Serialize {
            event_type: E::NAME,
            source,
        })
    }

    async fn decode<E: Event>(&self, _topic: &str, payload: &[u8]) -> Result<E, CodecError> {
        serde_json::from_slice(payload).map_err(|source| CodecError::Deserialize {
            event_type: E::NAME,
            source,
        })
    }
}

/// JSON in the registry wire format; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct JsonRegistryCodec {
    registry: RegistryClient,
}

impl JsonRegistryCodec {
    pub fn new(registry: RegistryClient) -> JsonRegistryCodec {
        JsonRegistryCodec { registry }
    }

    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }
}

#[async_trait]
impl Codec for JsonRegistryCodec {
    async fn encode<E: Event>(&self, topic: &str, event: &E) -> Result<Vec<u8>, CodecError> {
        let schema = E::json_schema().ok_or(CodecError::NoSchema(E::NAME))?;
        let id = self
            .registry
            .register(&format!("{topic}-value"), "JSON", &schema.to_string())
            .await?;
        let mut value = Vec::with_capacity(64);
        value.push(MAGIC_BYTE);
        value.extend_from_slice(&id.to_be_bytes());
        serde_json::to_writer(&mut value, event).map_err(|source| CodecError::Serialize {
            event_type: E::NAME,
            source,
        })?;
        Ok(value)
    }

    async fn decode<E: Event>(&self, _topic: &str, payload: &[u8]) -> Result<E, CodecError> {
        let (id, json) = split_framed(payload)?;
        // The id must name a JSON schema: a record written by an Avro or Protobuf serializer would only
        // fail later, and less clearly. Validation against the schema is the type's own serde shape.
        let schema = self.registry.schema(id).await?;
        if schema.schema_type != "JSON" {
            return Err(CodecError::WrongSchemaType {
                id,
                schema_type: schema.schema_type,
            });
        }
        serde_json::from_slice(json).map_err(|source| CodecError::Deserialize {
            event_type: E::NAME,
            source,
        })
    }
}

/// The schema id and the rest of a registry-framed value.
pub fn split_framed(payload: &[u8]) -> Result<(u32, &[u8]), CodecError> {
    match payload {
        [MAGIC_BYTE, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [MAGIC_BYTE, ..] => Err(CodecError::NotFramed("shorter than its 5-byte header")),
        _ => Err(CodecError::NotFramed(
            "the first byte is not the magic byte 0",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_is_checked() {
        assert_eq!(
            split_framed(&[0, 0, 0, 1, 2, b'{', b'}']).expect("framed"),
            (258, &b"{}"[..])
        );
        assert!(matches!(split_framed(b"{}"), Err(CodecError::NotFramed(_))));
        assert!(matches!(
            split_framed(&[0, 0, 1]),
            Err(CodecError::NotFramed(_))
        ));
    }
}
