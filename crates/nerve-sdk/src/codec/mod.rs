//! Codecs: how an event's payload becomes a record value and back.
//!
//! - [`JsonCodec`]: plain JSON, no registry.
//! - [`JsonRegistryCodec`]: JSON with the event type's [`Event::json_schema`].
//! - [`AvroRegistryCodec`]: Avro binary with the event type's [`Event::avro_schema`]; readers resolve the
//!   writer's schema to their own, so types evolve as Avro's schema resolution allows.
//! - [`ProtobufRegistryCodec`]: Protobuf with the event type's [`Event::protobuf_schema`], the event's serde
//!   shape mapped through Protobuf's JSON mapping.
//!
//! The registry codecs write Confluent's wire format — magic byte `0`, the schema id as 4 bytes big-endian,
//! then the payload (for Protobuf, the message indexes first) — and register the event type's schema under
//! `<topic>-value` (the TopicNameStrategy), so Confluent's deserializers read their records and theirs read
//! Confluent's. A decoding failure is permanent ([`CodecError::is_transient`] is false): the consumer
//! runtime dead-letters the record instead of retrying it. Only an unreachable registry is transient.
//!
//! ```no_run
//! use nerve_sdk::{
//!     AvroRegistryCodec, ClientConfig, Event, ProtobufRegistryCodec, ProtobufSchema, Publisher,
//!     RegistryClient,
//! };
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Serialize, Deserialize)]
//! struct OrderPlaced {
//!     order_id: String,
//!     total_cents: u64,
//! }
//!
//! impl Event for OrderPlaced {
//!     const NAME: &'static str = "shop.OrderPlaced";
//!
//!     fn key(&self) -> Option<String> {
//!         Some(self.order_id.clone())
//!     }
//!
//!     fn avro_schema() -> Option<String> {
//!         Some(
//!             r#"{"type": "record", "name": "OrderPlaced", "namespace": "shop", "fields": [
//!                 {"name": "order_id", "type": "string"},
//!                 {"name": "total_cents", "type": "long"}
//!             ]}"#
//!             .to_string(),
//!         )
//!     }
//!
//!     fn protobuf_schema() -> Option<ProtobufSchema> {
//!         Some(ProtobufSchema {
//!             proto: r#"syntax = "proto3";
//!                 package shop;
//!                 message OrderPlaced { string order_id = 1; uint64 total_cents = 2; }"#,
//!             message: "shop.OrderPlaced",
//!         })
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = ClientConfig::new();
//! config.set("bootstrap.servers", "127.0.0.1:9092");
//! let registry = RegistryClient::new("http://127.0.0.1:8081")?;
//! let order = OrderPlaced { order_id: "o-1".into(), total_cents: 4200 };
//!
//! let avro = Publisher::new(&config, "orders", AvroRegistryCodec::new(registry.clone()))?;
//! avro.publish(&order).await?;
//! let protobuf = Publisher::new(&config, "orders.pb", ProtobufRegistryCodec::new(registry))?;
//! protobuf.publish(&order).await?;
//! # Ok(())
//! # }
//! ```

mod avro;
mod json;
mod protobuf;

use async_trait::async_trait;

use crate::registry::RegistryError;
use crate::Event;

pub use avro::{AvroRegistryCodec, AVRO_MAX_ALLOCATION_BYTES};
pub use json::{JsonCodec, JsonRegistryCodec};
pub use protobuf::ProtobufRegistryCodec;

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
    #[error("the payload was written with schema {id}, a {schema_type} schema, not {expected}")]
    WrongSchemaType {
        id: u32,
        schema_type: String,
        expected: &'static str,
    },
    #[error("{event_type} has no schema to register: Event::{method} returns None")]
    NoSchema {
        event_type: &'static str,
        method: &'static str,
    },
    /// The event type's own schema (from [`Event`]) does not parse or compile.
    #[error("the {schema_type} schema of {event_type} is invalid: {reason}")]
    InvalidEventSchema {
        event_type: &'static str,
        schema_type: &'static str,
        reason: String,
    },
    /// The schema the registry has under the payload's id does not parse or compile here.
    #[error("schema {id} from the registry ({schema_type}) is unusable: {reason}")]
    InvalidWriterSchema {
        id: u32,
        schema_type: &'static str,
        reason: String,
    },
    #[error("cannot encode {event_type} as Avro: {reason}")]
    AvroEncode {
        event_type: &'static str,
        reason: String,
    },
    #[error("the payload is not a valid {event_type} in Avro schema {id}: {reason}")]
    AvroDecode {
        event_type: &'static str,
        id: u32,
        reason: String,
    },
    #[error("cannot encode {event_type} as Protobuf: {reason}")]
    ProtobufEncode {
        event_type: &'static str,
        reason: String,
    },
    #[error("the payload is not a valid {event_type} in Protobuf schema {id}: {reason}")]
    ProtobufDecode {
        event_type: &'static str,
        id: u32,
        reason: String,
    },
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

/// The registry subject of a topic's values (the TopicNameStrategy).
fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

/// A value buffer with the wire format's header for schema `id` written.
fn framed(id: u32, capacity: usize) -> Vec<u8> {
    let mut value = Vec::with_capacity(5 + capacity);
    value.push(MAGIC_BYTE);
    value.extend_from_slice(&id.to_be_bytes());
    value
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

    #[test]
    fn framed_values_split_back() {
        let mut value = framed(7, 2);
        value.extend_from_slice(b"{}");
        assert_eq!(split_framed(&value).expect("framed"), (7, &b"{}"[..]));
    }
}
