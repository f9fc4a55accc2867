//! Typed events: what a service publishes and handles.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A domain event: a name and version that travel in the record's headers (so consumers dispatch without
/// decoding the payload), a key that keeps one entity's events in order, and a serde representation.
///
/// ```
/// use nerve_sdk::Event;
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct OrderPlaced {
///     order_id: String,
///     total_cents: u64,
/// }
///
/// impl Event for OrderPlaced {
///     const NAME: &'static str = "shop.OrderPlaced";
///     const VERSION: u32 = 1;
///
///     fn key(&self) -> Option<String> {
///         Some(self.order_id.clone())
///     }
/// }
/// ```
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The event type, unique among the types on a topic: the `nerve-event-type` header and the key the
    /// consumer runtime dispatches on.
    const NAME: &'static str;

    /// The version of this event's shape: the `nerve-event-version` header.
    const VERSION: u32 = 1;

    /// The record key. Kafka keeps records with the same key in one partition, in order, and the consumer
    /// runtime handles them one after the other; `None` leaves the partition to the partitioner.
    fn key(&self) -> Option<String>;

    /// The JSON Schema of the payload, for codecs that register it with a schema registry
    /// ([`crate::codec::JsonRegistryCodec`]). `None` (the default) makes those codecs refuse the type.
    fn json_schema() -> Option<serde_json::Value> {
        None
    }

    /// The Avro schema of the payload (the schema's JSON text), for
    /// [`crate::codec::AvroRegistryCodec`]: registered when publishing, and the reader's schema that
    /// records written with other versions of it are resolved to. `None` (the default) makes the codec
    /// refuse to publish the type, and decode it with the writer's schema alone.
    fn avro_schema() -> Option<String> {
        None
    }

    /// The Protobuf schema of the payload, for [`crate::codec::ProtobufRegistryCodec`]. `None` (the
    /// default) makes the codec refuse to publish the type; decoding needs only the writer's schema.
    fn protobuf_schema() -> Option<ProtobufSchema> {
        None
    }
}

/// An event type's Protobuf schema: a `.proto` file and which of its messages the event is.
///
/// The file is compiled on its own, so it may import only Google's well-known types
/// (`google/protobuf/timestamp.proto` and the like). The event's serde shape is mapped to the message
/// through Protobuf's JSON mapping, with the proto field names (`snake_case`), as a serde struct has them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProtobufSchema {
    /// The `.proto` text, for instance `include_str!("order_placed.proto")`.
    pub proto: &'static str,
    /// The message's full name, package included: `shop.OrderPlaced`, or `shop.Order.Line` for a nested
    /// one.
    pub message: &'static str,
}
