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
}
