//! What `/readyz` reports: the parts of `nerve serve` that are up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use nerve_broker::Broker;

/// The parts `nerve serve` brings up one after the other. Cheap to clone; every clone sees the same parts.
#[derive(Clone, Default)]
pub struct Readiness {
    parts: Arc<Parts>,
}

#[derive(Default)]
struct Parts {
    broker: OnceLock<Arc<Broker>>,
    kafka_listener: AtomicBool,
    schema_registry: AtomicBool,
}

/// The names `/readyz` gives the parts still missing, in the order they come up.
pub(crate) const BROKER: &str = "broker (logs recovered, committed offsets restored)";
pub(crate) const KAFKA_LISTENER: &str = "Kafka listener";
pub(crate) const SCHEMA_REGISTRY: &str = "schema registry";

impl Readiness {
    /// The broker is built: its logs are recovered and its committed offsets restored. A second broker is
    /// ignored: the endpoints keep describing the first.
    pub fn set_broker(&self, broker: Arc<Broker>) {
        let _ = self.parts.broker.set(broker);
    }

    /// The Kafka listener is bound.
    pub fn set_kafka_listening(&self) {
        self.parts.kafka_listener.store(true, Ordering::Release);
    }

    /// The schema registry is loaded from `_schemas` and its listener bound.
    pub fn set_registry_ready(&self) {
        self.parts.schema_registry.store(true, Ordering::Release);
    }

    /// The broker, once [`Readiness::set_broker`] was called.
    pub fn broker(&self) -> Option<&Arc<Broker>> {
        self.parts.broker.get()
    }

    /// The parts not up yet; empty once ready.
    pub fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.parts.broker.get().is_none() {
            missing.push(BROKER);
        }
        if !self.parts.kafka_listener.load(Ordering::Acquire) {
            missing.push(KAFKA_LISTENER);
        }
        if !self.parts.schema_registry.load(Ordering::Acquire) {
            missing.push(SCHEMA_REGISTRY);
        }
        missing
    }

    pub fn is_ready(&self) -> bool {
        self.missing().is_empty()
    }
}
