//! The classic group protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup): one state machine per group.
//!
//! ```text
//!            join                 all members joined             leader's SyncGroup
//!  Empty ───────────► PreparingRebalance ───────────► CompletingRebalance ───────────► Stable
//!    ▲                   ▲     │  (or the rebalance timeout:            │                  │
//!    │                   │     │   members that did not rejoin leave)  │                  │
//!    └── last member ────┼─────┘                                       │                  │
//!        gone            └──── a member joins, leaves, changes its protocols or expires ◄─┴──────────────┘
//! ```
//!
//! Decisions, as Kafka's classic coordinator makes them:
//! - A membership change (join, leave, session expiry, changed protocols, the leader rejoining) starts
//!   exactly one rebalance; further changes while it is preparing join the same one.
//! - A rebalance completes as soon as every known member has rejoined (and no member id handed out by
//!   `MEMBER_ID_REQUIRED` is still expected), or at the rebalance timeout (the largest of the members'),
//!   when members that did not rejoin are removed. A group that was empty first waits
//!   `group_initial_rebalance_delay_ms`, so that consumers starting together land in one generation.
//! - The protocol is one every member supports, chosen by votes (each member votes for its first choice
//!   among those); ties go to the leader's preference.
//! - Every member has one session timer: a task that sleeps until the member's deadline and evicts it if
//!   nothing was heard from it meanwhile (heartbeat, join, sync, commit), never a polling loop. A member
//!   whose JoinGroup or SyncGroup is waiting is alive.
//! - Static members (`group.instance.id`) that rejoin with an empty member id replace their old
//!   identity: in a stable group with unchanged protocols they keep their assignment and no rebalance
//!   happens (unless the member led the group, whose rejoin rebalances as in Kafka before KIP-814).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::member::Member;
use super::offsets::Committed;
use super::GroupSettings;
use nerve_storage::{LogStore, TopicPartition};

/// The life cycle states of a group, named as DescribeGroups and ListGroups report them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    pub(crate) fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// One group: its members and generation, and its committed offsets.
#[derive(Debug)]
pub(crate) struct Group {
    pub(crate) id: String,
    pub(crate) state: GroupState,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol: Option<String>,
    pub(crate) leader: Option<String>,
    /// In join order: without a leader, the first member leads.
    pub(crate) members: Vec<Member>,
    /// Member ids handed out with `MEMBER_ID_REQUIRED` whose owners have not joined with them yet.
    pub(crate) pending: HashSet<String>,
    /// Counts rebalances, so that the timer of an earlier one does nothing.
    rebalance_epoch: u64,
    /// An initial rebalance does not complete before this.
    join_not_before: Option<Instant>,
    pub(crate) offsets: HashMap<TopicPartition, Committed>,
    /// When the group last became empty (ms since the epoch); `None` while it has members. Offsets of an
    /// empty group expire `offsets_retention_minutes` after this (KIP-211).
    pub(crate) empty_since_ms: Option<i64>,
}

impl Group {
    pub(crate) fn new(id: &str) -> Group {
        Group {
            id: id.to_string(),
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: Vec::new(),
            pending: HashSet::new(),
            rebalance_epoch: 0,
            join_not_before: None,
            offsets: HashMap::new(),
            empty_since_ms: Some(super::offsets::now_ms()),
        }
    }

    pub(crate) fn member(&self, id: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.id == id)
    }

    fn member_mut(&mut self, id: &str) -> Option<&mut Member> {
        self.members.iter_mut().find(|m| m.id == id)
    }

    /// The member was heard from (e.g. it committed offsets).
    pub(crate) fn touch_member(&mut self, id: &str) {
        if let Some(member) = self.member_mut(id) {
            member.touch();
        }
    }

    pub(crate) fn has_member(&self, id: &str) -> bool {
        self.member(id).is_some()
    }

    /// The member id a static member currently has.
    pub(crate) fn static_member(&self, instance_id: &str) -> Option<&str> {
        self.members
            .iter()
            .find(|m| m.instance_id.as_deref() == Some(instance_id))
            .map(|m| m.id.as_str())
    }

    /// A static member presenting a member id that is not its current one: an older incarnation.
    pub(crate) fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        instance_id
            .and_then(|i| self.static_member(i))
            .is_some_and(|current| current != member_id)
    }

    /// Whether a member of this protocol type supporting these protocols may join.
    fn accepts(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return true;
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|(name, _)| self.members.iter().all(|m| m.supports(name)))
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader.as_deref() == Some(member_id)
    }

    /// Nothing left to remember: no members, none expected, no offsets.
    fn is_forgettable(&self) -> bool {
        self.state == GroupState::Empty
            && self.members.is_empty()
            && self.pending.is_empty()
            && self.offsets.is_empty()
    }

    /// The protocol every member supports that most members prefer; ties go to the leader's (or first
    /// member's) preference.
    fn select_protocol(&self) -> Option<String> {
        let first = self
            .leader
            .as_deref()
            .and_then(|l| self.member(l))
            .or(self.members.first())?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.iter().all(|m| m.supports(name)))
            .collect();
        let mut votes: Vec<usize> = vec![0; candidates.len()];
        for member in &self.members {
            if let Some(vote) = member.vote(&candidates) {
                if let Some(i) = candidates.iter().position(|c| *c == vote) {
                    votes[i] += 1;
                }
            }
        }
        let best = votes.iter().copied().max()?;
        let index = votes.iter().position(|&v| v == best)?;
        Some(candidates[index].to_string())
    }

    /// The JoinGroup answer for a member of the current generation: the leader also gets every member's
    /// metadata for the chosen protocol.
    fn join_result(&self, member_id: &str) -> JoinResult {
        let protocol = self.protocol.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let members = if leader == member_id {
            self.members
                .iter()
                .map(|m| JoinedMember {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    metadata: m.metadata(&protocol).cloned().unwrap_or_default(),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResult {
            error: None,
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader,
            member_id: member_id.to_string(),
            members,
        }
    }
}

/// What a JoinGroup asks.
#[derive(Debug)]
pub(crate) struct JoinRequest {
    pub(crate) group_id: String,
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    pub(crate) session_timeout: Duration,
    pub(crate) rebalance_timeout: Duration,
    pub(crate) protocol_type: String,
    pub(crate) protocols: Vec<(String, Bytes)>,
    /// JoinGroup v4+: a new dynamic member first gets `MEMBER_ID_REQUIRED` and its id (KIP-394).
    pub(crate) require_known_member_id: bool,
}

/// A member as the leader's JoinGroup answer lists it.
#[derive(Debug, Clone)]
pub(crate) struct JoinedMember {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) metadata: Bytes,
}

/// The JoinGroup answer.
#[derive(Debug, Clone)]
pub(crate) struct JoinResult {
    pub(crate) error: Option<ResponseError>,
    pub(crate) generation: i32,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) leader: String,
    pub(crate) member_id: String,
    pub(crate) members: Vec<JoinedMember>,
}

impl JoinResult {
    pub(crate) fn error(error: ResponseError, member_id: &str) -> JoinResult {
        JoinResult {
            error: Some(error),
            generation: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// What a SyncGroup asks.
#[derive(Debug)]
pub(crate) struct SyncRequest {
    pub(crate) group_id: String,
    pub(crate) generation: i32,
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) assignments: Vec<(String, Bytes)>,
}

/// The SyncGroup answer.
#[derive(Debug, Clone)]
pub(crate) struct SyncResult {
    pub(crate) error: Option<ResponseError>,
    pub(crate) protocol_type: Option<String>,
    pub(crate) protocol_name: Option<String>,
    pub(crate) assignment: Bytes,
}

impl SyncResult {
    pub(crate) fn error(error: ResponseError) -> SyncResult {
        SyncResult {
            error: Some(error),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// An answer now, or one to wait for.
enum Reply<T> {
    Now(T),
    Later(oneshot::Receiver<T>),
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone)]
pub(crate) struct GroupDescription {
    pub(crate) state: GroupState,
    pub(crate) protocol_type: String,
    /// The protocol, when the group is stable.
    pub(crate) protocol: String,
    pub(crate) members: Vec<MemberDescription>,
}

#[derive(Debug, Clone)]
pub(crate) struct MemberDescription {
    pub(crate) member_id: String,
    pub(crate) instance_id: Option<String>,
    pub(crate) client_id: String,
    pub(crate) client_host: String,
    /// Empty unless the group is stable.
    pub(crate) metadata: Bytes,
    pub(crate) assignment: Bytes,
}

/// The group coordinator: every group of this node, their members' timers, and the offsets log.
pub(crate) struct Coordinator {
    pub(crate) settings: GroupSettings,
    groups: Mutex<HashMap<String, Group>>,
    incarnations: AtomicU64,
    pub(crate) log: Arc<dyn LogStore>,
    /// Partitions of `__consumer_offsets`, as the topic has them.
    pub(crate) offsets_partitions: i32,
}

impl Coordinator {
    pub(crate) fn new(
        settings: GroupSettings,
        log: Arc<dyn LogStore>,
        offsets_partitions: i32,
    ) -> Coordinator {
        Coordinator {
            settings,
            groups: Mutex::new(HashMap::new()),
            incarnations: AtomicU64::new(0),
            log,
            offsets_partitions,
        }
    }

    /// The groups, locked. Never held across an await.
    pub(crate) fn groups(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        // A panic while holding the lock leaves consistent-enough state: every change is one step.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) async fn join(self: &Arc<Self>, request: JoinRequest) -> JoinResult {
        let member_id = request.member_id.clone();
        let reply = {
            let mut groups = self.groups();
            self.join_locked(&mut groups, request)
        };
        match reply {
            Reply::Now(result) => result,
            Reply::Later(rx) => rx
                .await
                .unwrap_or_else(|_| JoinResult::error(ResponseError::UnknownMemberId, &member_id)),
        }
    }

    fn join_locked(
        self: &Arc<Self>,
        groups: &mut HashMap<String, Group>,
        request: JoinRequest,
    ) -> Reply<JoinResult> {
        let fail = |error| Reply::Now(JoinResult::error(error, &request.member_id));
        if request.group_id.is_empty() {
            return fail(ResponseError::InvalidGroupId);
        }
        let timeout_ms = u64::try_from(request.session_timeout.as_millis()).unwrap_or(u64::MAX);
        if timeout_ms < self.settings.min_session_timeout_ms
            || timeout_ms > self.settings.max_session_timeout_ms
        {
            return fail(ResponseError::InvalidSessionTimeout);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let new_member = request.member_id.is_empty();
        if !new_member && !groups.contains_key(&request.group_id) {
            return fail(ResponseError::UnknownMemberId);
        }
        let group = groups
            .entry(request.group_id.clone())
            .or_insert_with(|| Group::new(&request.group_id));
        if group.state == GroupState::Dead {
            return fail(ResponseError::CoordinatorNotAvailable);
        }
        if !group.accepts(&request.protocol_type, &request.protocols) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if new_member {
            let prefix = request.instance_id.as_deref().unwrap_or(&request.client_id);
            let member_id = format!("{prefix}-{}", uuid::Uuid::new_v4());
            if let Some(instance) = request.instance_id.clone() {
                if let Some(old) = group.static_member(&instance).map(str::to_string) {
                    return self.replace_static_member(group, &old, member_id, request);
                }
                return self.add_member(group, member_id, request);
            }
            if request.require_known_member_id {
                group.pending.insert(member_id.clone());
                self.expire_pending_later(&group.id, &member_id, request.session_timeout);
                return Reply::Now(JoinResult::error(
                    ResponseError::MemberIdRequired,
                    &member_id,
                ));
            }
            return self.add_member(group, member_id, request);
        }
        let member_id = request.member_id.clone();
        if group.pending.remove(&member_id) {
            return self.add_member(group, member_id, request);
        }
        if group.is_fenced(request.instance_id.as_deref(), &member_id) {
            return fail(ResponseError::FencedInstanceId);
        }
        let Some(member) = group.member(&member_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        let unchanged = member.same_protocols(&request.protocols);
        match group.state {
            GroupState::PreparingRebalance => self.rejoin(group, request),
            GroupState::CompletingRebalance if unchanged => {
                Reply::Now(group.join_result(&member_id))
            }
            GroupState::Stable if unchanged && !group.is_leader(&member_id) => {
                Reply::Now(group.join_result(&member_id))
            }
            GroupState::CompletingRebalance | GroupState::Stable => self.rejoin(group, request),
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
        }
    }

    fn add_member(
        self: &Arc<Self>,
        group: &mut Group,
        member_id: String,
        request: JoinRequest,
    ) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if group.members.is_empty() {
            group.protocol_type = Some(request.protocol_type.clone());
        }
        let member = Member {
            id: member_id.clone(),
            instance_id: request.instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout: request.session_timeout,
            rebalance_timeout: request.rebalance_timeout,
            protocols: request.protocols,
            assignment: Bytes::new(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            session_deadline: Instant::now() + request.session_timeout,
            incarnation: self.incarnations.fetch_add(1, Ordering::Relaxed),
        };
        tracing::debug!(group = %group.id, member = %member_id, "member joins");
        self.watch_session(&group.id, &member);
        group.members.push(member);
        self.maybe_prepare_rebalance(group, "a member joined");
        self.try_complete_join(group);
        Reply::Later(rx)
    }

    /// A known member joins again: new protocols or timeouts, and a rebalance if none is in progress.
    fn rejoin(self: &Arc<Self>, group: &mut Group, request: JoinRequest) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        let member = group
            .member_mut(&request.member_id)
            .expect("checked by the caller");
        member.protocols = request.protocols;
        member.session_timeout = request.session_timeout;
        member.rebalance_timeout = request.rebalance_timeout;
        member.client_id = request.client_id;
        if let Some(earlier) = member.awaiting_join.replace(tx) {
            let _ = earlier.send(JoinResult::error(
                ResponseError::RebalanceInProgress,
                &request.member_id,
            ));
        }
        member.touch();
        self.maybe_prepare_rebalance(group, "a member rejoined");
        self.try_complete_join(group);
        Reply::Later(rx)
    }

    /// A static member restarted: it takes over its old identity's place under a new member id.
    fn replace_static_member(
        self: &Arc<Self>,
        group: &mut Group,
        old_id: &str,
        member_id: String,
        request: JoinRequest,
    ) -> Reply<JoinResult> {
        let index = group
            .members
            .iter()
            .position(|m| m.id == old_id)
            .expect("found by the caller");
        let unchanged = group.members[index].same_protocols(&request.protocols);
        let was_leader = group.is_leader(old_id);
        let member = &mut group.members[index];
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(JoinResult::error(ResponseError::FencedInstanceId, old_id));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(SyncResult::error(ResponseError::FencedInstanceId));
        }
        member.id = member_id.clone();
        member.client_id = request.client_id.clone();
        member.client_host = request.client_host.clone();
        member.session_timeout = request.session_timeout;
        member.rebalance_timeout = request.rebalance_timeout;
        member.incarnation = self.incarnations.fetch_add(1, Ordering::Relaxed);
        member.touch();
        tracing::info!(group = %group.id, old = old_id, new = %member_id, "static member rejoined");
        let snapshot = (
            member.id.clone(),
            member.incarnation,
            member.session_deadline,
        );
        self.watch_session_parts(&group.id, snapshot);
        if was_leader {
            group.leader = Some(member_id.clone());
        }
        match group.state {
            GroupState::Stable | GroupState::CompletingRebalance if unchanged && !was_leader => {
                Reply::Now(group.join_result(&member_id))
            }
            _ => {
                let request = JoinRequest {
                    member_id,
                    ..request
                };
                self.rejoin(group, request)
            }
        }
    }

    fn maybe_prepare_rebalance(self: &Arc<Self>, group: &mut Group, reason: &str) {
        if matches!(
            group.state,
            GroupState::Empty | GroupState::Stable | GroupState::CompletingRebalance
        ) {
            self.prepare_rebalance(group, reason);
        }
    }

    fn prepare_rebalance(self: &Arc<Self>, group: &mut Group, reason: &str) {
        if group.state == GroupState::CompletingRebalance {
            for member in &mut group.members {
                member.assignment = Bytes::new();
                if let Some(tx) = member.awaiting_sync.take() {
                    let _ = tx.send(SyncResult::error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let was_empty = group.state == GroupState::Empty;
        group.state = GroupState::PreparingRebalance;
        group.rebalance_epoch += 1;
        let timeout = group
            .members
            .iter()
            .map(|m| m.rebalance_timeout)
            .max()
            .unwrap_or_default();
        let now = Instant::now();
        let delay = Duration::from_millis(self.settings.initial_rebalance_delay_ms).min(timeout);
        group.join_not_before = (was_empty && !delay.is_zero()).then(|| now + delay);
        tracing::info!(
            group = %group.id,
            generation = group.generation,
            members = group.members.len(),
            reason,
            "preparing a rebalance"
        );
        let coordinator = Arc::clone(self);
        let group_id = group.id.clone();
        let epoch = group.rebalance_epoch;
        let not_before = group.join_not_before;
        tokio::spawn(async move {
            if let Some(at) = not_before {
                tokio::time::sleep_until(at).await;
                let mut groups = coordinator.groups();
                if let Some(group) = groups.get_mut(&group_id) {
                    if group.rebalance_epoch == epoch
                        && group.state == GroupState::PreparingRebalance
                    {
                        group.join_not_before = None;
                        coordinator.try_complete_join(group);
                    }
                }
            }
            tokio::time::sleep_until(now + timeout).await;
            let mut groups = coordinator.groups();
            if let Some(group) = groups.get_mut(&group_id) {
                if group.rebalance_epoch == epoch && group.state == GroupState::PreparingRebalance {
                    coordinator.complete_join(group);
                }
            }
            forget_if_unused(&mut groups, &group_id);
        });
    }

    fn try_complete_join(self: &Arc<Self>, group: &mut Group) {
        if group.state != GroupState::PreparingRebalance {
            return;
        }
        if group.join_not_before.is_some_and(|at| Instant::now() < at) {
            return;
        }
        if group.pending.is_empty() && group.members.iter().all(|m| m.awaiting_join.is_some()) {
            self.complete_join(group);
        }
    }

    /// Ends the joining phase: members that did not rejoin leave, the generation advances, and every member
    /// gets its JoinGroup answer.
    fn complete_join(self: &Arc<Self>, group: &mut Group) {
        let (rejoined, gone): (Vec<Member>, Vec<Member>) = std::mem::take(&mut group.members)
            .into_iter()
            .partition(|m| m.awaiting_join.is_some());
        for member in gone {
            tracing::info!(group = %group.id, member = %member.id, "member did not rejoin in time; removed");
            if group.is_leader(&member.id) {
                group.leader = None;
            }
        }
        group.members = rejoined;
        group.join_not_before = None;
        group.generation += 1;
        if group.members.is_empty() {
            group.state = GroupState::Empty;
            group.empty_since_ms = Some(super::offsets::now_ms());
            group.protocol = None;
            group.leader = None;
            tracing::info!(group = %group.id, generation = group.generation, "group is empty");
            return;
        }
        if group.leader.as_deref().is_none_or(|l| !group.has_member(l)) {
            group.leader = Some(group.members[0].id.clone());
        }
        group.protocol = group.select_protocol();
        group.state = GroupState::CompletingRebalance;
        group.empty_since_ms = None;
        tracing::info!(
            group = %group.id,
            generation = group.generation,
            protocol = group.protocol.as_deref().unwrap_or(""),
            members = group.members.len(),
            "rebalance: members joined"
        );
        let results: Vec<(usize, JoinResult)> = group
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| (i, group.join_result(&m.id)))
            .collect();
        for (i, result) in results {
            let member = &mut group.members[i];
            member.touch();
            if let Some(tx) = member.awaiting_join.take() {
                let _ = tx.send(result);
            }
        }
    }

    pub(crate) async fn sync(self: &Arc<Self>, request: SyncRequest) -> SyncResult {
        let reply = {
            let mut groups = self.groups();
            self.sync_locked(&mut groups, request)
        };
        match reply {
            Reply::Now(result) => result,
            Reply::Later(rx) => rx
                .await
                .unwrap_or_else(|_| SyncResult::error(ResponseError::UnknownMemberId)),
        }
    }

    fn sync_locked(
        self: &Arc<Self>,
        groups: &mut HashMap<String, Group>,
        request: SyncRequest,
    ) -> Reply<SyncResult> {
        let fail = |error| Reply::Now(SyncResult::error(error));
        let Some(group) = groups.get_mut(&request.group_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        if group.is_fenced(request.instance_id.as_deref(), &request.member_id) {
            return fail(ResponseError::FencedInstanceId);
        }
        if !group.has_member(&request.member_id) {
            return fail(ResponseError::UnknownMemberId);
        }
        if request.generation != group.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        let type_differs = request
            .protocol_type
            .as_ref()
            .is_some_and(|t| Some(t) != group.protocol_type.as_ref());
        let name_differs = request
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n) != group.protocol.as_ref());
        if type_differs || name_differs {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        let ok = |group: &Group, assignment: Bytes| SyncResult {
            error: None,
            protocol_type: group.protocol_type.clone(),
            protocol_name: group.protocol.clone(),
            assignment,
        };
        match group.state {
            GroupState::Empty | GroupState::Dead => fail(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            GroupState::Stable => {
                let member = group.member_mut(&request.member_id).expect("checked");
                member.touch();
                let assignment = member.assignment.clone();
                Reply::Now(ok(group, assignment))
            }
            GroupState::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                let member = group.member_mut(&request.member_id).expect("checked");
                member.touch();
                member.awaiting_sync = Some(tx);
                if group.is_leader(&request.member_id) {
                    let assignments: HashMap<String, Bytes> =
                        request.assignments.into_iter().collect();
                    for member in &mut group.members {
                        member.assignment =
                            assignments.get(&member.id).cloned().unwrap_or_default();
                    }
                    group.state = GroupState::Stable;
                    tracing::info!(
                        group = %group.id,
                        generation = group.generation,
                        "rebalance: assignment received; group is stable"
                    );
                    let answers: Vec<(usize, SyncResult)> = group
                        .members
                        .iter()
                        .enumerate()
                        .map(|(i, m)| (i, ok(group, m.assignment.clone())))
                        .collect();
                    for (i, answer) in answers {
                        if let Some(tx) = group.members[i].awaiting_sync.take() {
                            let _ = tx.send(answer);
                        }
                    }
                }
                Reply::Later(rx)
            }
        }
    }

    pub(crate) fn heartbeat(
        &self,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Option<ResponseError> {
        let mut groups = self.groups();
        let Some(group) = groups.get_mut(group_id) else {
            return Some(ResponseError::UnknownMemberId);
        };
        if group.is_fenced(instance_id, member_id) {
            return Some(ResponseError::FencedInstanceId);
        }
        if !group.has_member(member_id) {
            return Some(ResponseError::UnknownMemberId);
        }
        if generation != group.generation {
            return Some(ResponseError::IllegalGeneration);
        }
        let state = group.state;
        match state {
            GroupState::Empty | GroupState::Dead => Some(ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                group.member_mut(member_id).expect("checked").touch();
                Some(ResponseError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                group.member_mut(member_id).expect("checked").touch();
                None
            }
        }
    }

    /// Members leaving (LeaveGroup): one answer per member, in order.
    pub(crate) fn leave(
        self: &Arc<Self>,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> Vec<Option<ResponseError>> {
        let mut groups = self.groups();
        let Some(group) = groups.get_mut(group_id) else {
            return vec![Some(ResponseError::UnknownMemberId); leaving.len()];
        };
        let mut answers = Vec::with_capacity(leaving.len());
        for (member_id, instance_id) in leaving {
            let member_id = match (member_id.as_str(), instance_id.as_deref()) {
                ("", Some(instance)) => match group.static_member(instance) {
                    Some(id) => id.to_string(),
                    None => {
                        answers.push(Some(ResponseError::UnknownMemberId));
                        continue;
                    }
                },
                (id, instance) => {
                    if group.is_fenced(instance, id) {
                        answers.push(Some(ResponseError::FencedInstanceId));
                        continue;
                    }
                    id.to_string()
                }
            };
            if group.pending.remove(&member_id) {
                self.try_complete_join(group);
                answers.push(None);
            } else if group.has_member(&member_id) {
                self.remove_member(group, &member_id, "the member left the group");
                answers.push(None);
            } else {
                answers.push(Some(ResponseError::UnknownMemberId));
            }
        }
        forget_if_unused(&mut groups, group_id);
        answers
    }

    fn remove_member(self: &Arc<Self>, group: &mut Group, member_id: &str, reason: &str) {
        let Some(index) = group.members.iter().position(|m| m.id == member_id) else {
            return;
        };
        let mut member = group.members.remove(index);
        tracing::info!(group = %group.id, member = member_id, reason, "member removed");
        if let Some(tx) = member.awaiting_join.take() {
            let _ = tx.send(JoinResult::error(ResponseError::UnknownMemberId, member_id));
        }
        if let Some(tx) = member.awaiting_sync.take() {
            let _ = tx.send(SyncResult::error(ResponseError::UnknownMemberId));
        }
        if group.is_leader(member_id) {
            group.leader = None;
        }
        self.maybe_prepare_rebalance(group, reason);
        self.try_complete_join(group);
    }

    /// Starts the member's session timer: one task per member, sleeping until its deadline.
    fn watch_session(self: &Arc<Self>, group_id: &str, member: &Member) {
        self.watch_session_parts(
            group_id,
            (
                member.id.clone(),
                member.incarnation,
                member.session_deadline,
            ),
        );
    }

    fn watch_session_parts(
        self: &Arc<Self>,
        group_id: &str,
        (member_id, incarnation, deadline): (String, u64, Instant),
    ) {
        let coordinator = Arc::clone(self);
        let group_id = group_id.to_string();
        tokio::spawn(async move {
            let mut deadline = deadline;
            loop {
                tokio::time::sleep_until(deadline).await;
                let mut groups = coordinator.groups();
                let Some(group) = groups.get_mut(&group_id) else {
                    return;
                };
                let Some(member) = group
                    .members
                    .iter_mut()
                    .find(|m| m.id == member_id && m.incarnation == incarnation)
                else {
                    return;
                };
                if member.awaiting_join.is_some() || member.awaiting_sync.is_some() {
                    // Waiting on the coordinator is a sign of life.
                    member.touch();
                }
                if member.session_deadline > Instant::now() {
                    deadline = member.session_deadline;
                    continue;
                }
                coordinator.remove_member(group, &member_id, "session timeout expired");
                forget_if_unused(&mut groups, &group_id);
                return;
            }
        });
    }

    /// Forgets a member id handed out with `MEMBER_ID_REQUIRED` if its owner never joins with it.
    fn expire_pending_later(self: &Arc<Self>, group_id: &str, member_id: &str, after: Duration) {
        let coordinator = Arc::clone(self);
        let group_id = group_id.to_string();
        let member_id = member_id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let mut groups = coordinator.groups();
            if let Some(group) = groups.get_mut(&group_id) {
                if group.pending.remove(&member_id) {
                    tracing::debug!(group = %group_id, member = %member_id, "pending member never joined");
                    coordinator.try_complete_join(group);
                }
            }
            forget_if_unused(&mut groups, &group_id);
        });
    }

    /// Every group: id, protocol type, state.
    pub(crate) fn list(&self) -> Vec<(String, String, GroupState)> {
        let groups = self.groups();
        let mut out: Vec<_> = groups
            .values()
            .map(|g| {
                (
                    g.id.clone(),
                    g.protocol_type.clone().unwrap_or_default(),
                    g.state,
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    pub(crate) fn describe(&self, group_id: &str) -> Option<GroupDescription> {
        let groups = self.groups();
        let group = groups.get(group_id)?;
        let stable = group.state == GroupState::Stable;
        let protocol = if stable {
            group.protocol.clone().unwrap_or_default()
        } else {
            String::new()
        };
        Some(GroupDescription {
            state: group.state,
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            members: group
                .members
                .iter()
                .map(|m| MemberDescription {
                    member_id: m.id.clone(),
                    instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: if stable {
                        m.metadata(&protocol).cloned().unwrap_or_default()
                    } else {
                        Bytes::new()
                    },
                    assignment: if stable {
                        m.assignment.clone()
                    } else {
                        Bytes::new()
                    },
                })
                .collect(),
            protocol,
        })
    }
}

/// Drops a group with nothing left to remember.
pub(crate) fn forget_if_unused(groups: &mut HashMap<String, Group>, group_id: &str) {
    if groups.get(group_id).is_some_and(Group::is_forgettable) {
        groups.remove(group_id);
    }
}
