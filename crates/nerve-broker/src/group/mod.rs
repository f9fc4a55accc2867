//! The group coordinator: consumer groups under the classic protocol and their committed offsets.
//!
//! - [`coordinator`]: the per-group state machine (Empty, PreparingRebalance, CompletingRebalance,
//!   Stable, Dead), members' session timers, rebalances.
//! - [`member`]: one member: identity, protocols, assignment, the answers it waits for.
//! - [`offsets`]: committed offsets, stored in the compacted internal topic `__consumer_offsets` in
//!   Kafka's record formats and restored from it at start.
//!
//! A single node coordinates every group, so FindCoordinator always names node 0.

pub(crate) mod coordinator;
pub(crate) mod member;
pub(crate) mod offsets;

pub(crate) use coordinator::{Coordinator, GroupState};

/// The internal topic holding committed offsets.
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Whether `name` is a topic that a service inside the broker owns, which clients may read but neither
/// create, delete nor produce to: Kafka's internal topics, and the schema registry's store `_schemas`
/// (one writer, so that its ids and versions cannot be forged or lost).
pub(crate) fn is_internal_topic(name: &str) -> bool {
    matches!(name, OFFSETS_TOPIC | "__transaction_state" | "_schemas")
}

/// The coordinator's settings, taken from [`BrokerConfig`](crate::BrokerConfig).
#[derive(Debug, Clone)]
pub(crate) struct GroupSettings {
    pub(crate) min_session_timeout_ms: u64,
    pub(crate) max_session_timeout_ms: u64,
    pub(crate) initial_rebalance_delay_ms: u64,
    pub(crate) offset_metadata_max_bytes: usize,
}
