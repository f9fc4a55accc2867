//! JSON, plain or in the registry's wire format.

use async_trait::async_trait;

use super::{framed, split_framed, value_subject, Codec, CodecError};
use crate::registry::RegistryClient;
use crate::Event;

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

/// JSON in the registry wire format, with the event type's [`Event::json_schema`] registered under
/// `<topic>-value`. Confluent's JSON Schema deserializers read these records.
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
        let schema = E::json_schema().ok_or(CodecError::NoSchema {
            event_type: E::NAME,
            method: "json_schema",
        })?;
        let id = self
            .registry
            .register(&value_subject(topic), "JSON", &schema.to_string())
            .await?;
        let mut value = framed(id, 64);
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
                expected: "JSON",
            });
        }
        serde_json::from_slice(json).map_err(|source| CodecError::Deserialize {
            event_type: E::NAME,
            source,
        })
    }
}
