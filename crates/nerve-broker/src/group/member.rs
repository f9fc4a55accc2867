//! One member of a classic group: who it is, what it supports, what it was assigned, and the answers it is
//! waiting for.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::coordinator::{JoinResult, SyncResult};

/// A member of a group under the classic protocol (JoinGroup / SyncGroup / Heartbeat).
#[derive(Debug)]
pub(crate) struct Member {
    pub(crate) id: String,
    /// `group.instance.id` of a static member (KIP-345).
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    /// The protocols the member supports, in its order of preference, with its metadata for each.
    pub(crate) protocols: Vec<(String, Bytes)>,
    /// What the leader assigned it in the current generation (empty until then).
    pub(crate) assignment: Bytes,
    /// The member's JoinGroup waiting for the rebalance to complete.
    pub(crate) awaiting_join: Option<oneshot::Sender<JoinResult>>,
    /// The member's SyncGroup waiting for the leader's assignment.
    pub(crate) awaiting_sync: Option<oneshot::Sender<SyncResult>>,
    /// When the member is evicted unless it is heard from (heartbeat, join, sync, commit) before.
    pub(crate) session_deadline: Instant,
    /// Distinguishes this member from an earlier one of the same id, so a stale session timer does nothing.
    pub(crate) incarnation: u64,
}

impl Member {
    /// The member's metadata for `protocol`, if it supports it.
    pub(crate) fn metadata(&self, protocol: &str) -> Option<&Bytes> {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata)
    }

    pub(crate) fn supports(&self, protocol: &str) -> bool {
        self.metadata(protocol).is_some()
    }

    /// The member's first choice among `candidates`.
    pub(crate) fn vote<'a>(&'a self, candidates: &[&str]) -> Option<&'a str> {
        self.protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .find(|name| candidates.contains(name))
    }

    /// The member was heard from: its session starts over.
    pub(crate) fn touch(&mut self) {
        self.session_deadline = Instant::now() + self.session_timeout;
    }

    /// Same protocols with the same metadata, in the same order.
    pub(crate) fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }
}
