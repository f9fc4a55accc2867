//! Committed offsets: kept in memory per group, made durable in the compacted internal topic
//! `__consumer_offsets`, and restored from it when the broker starts.
//!
//! Records use Kafka's own formats, so that tools that read the topic understand them:
//! - key `OffsetCommitKey` v1: `int16 version = 1`, `string group`, `string topic`, `int32 partition`;
//! - value `OffsetCommitValue` v3: `int16 version = 3`, `int64 offset`, `int32 leader_epoch`,
//!   `string metadata`, `int64 commit_timestamp`; a null value (tombstone) deletes the offset.
//!
//! (Strings are `int16` length + UTF-8 bytes; all integers big-endian.) Restoring also reads key version
//! 0 and value versions 0-3, and skips the group metadata records (key version 2) that Kafka writes.
//!
//! A group's records always go to the same partition: Java's `String.hashCode` of the group id, made
//! non-negative, modulo the partition count, as in Kafka. Nerve writes no group metadata records: after a
//! restart a group is known by its offsets only, and its members join again as they would after a
//! coordinator move.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes};
use kafka_protocol::error::ResponseError;
use nerve_storage::{StorageError, TopicPartition};
use nerve_wire::BatchBuilder;

use super::coordinator::{Coordinator, Group, GroupState};
use super::OFFSETS_TOPIC;

/// A committed offset as OffsetFetch reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Committed {
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: String,
    pub(crate) commit_timestamp: i64,
    /// Where the record that set it is in `__consumer_offsets`: of two commits racing, the later record
    /// wins in memory, as it does after a restart.
    pub(crate) log_offset: i64,
}

/// Java's `String.hashCode`, on the UTF-16 code units of `s`.
fn java_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition a group's records go to, as Kafka computes it.
pub(crate) fn partition_for(group_id: &str, partitions: i32) -> i32 {
    // Kafka's Utils.abs: i32::MIN maps to 0.
    let hash = java_hash(group_id);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    let len = i16::try_from(s.len()).expect("strings are checked to fit");
    out.put_i16(len);
    out.put_slice(s.as_bytes());
}

fn get_string(buf: &mut &[u8]) -> Option<String> {
    if buf.remaining() < 2 {
        return None;
    }
    let len = usize::try_from(buf.get_i16()).ok()?;
    if buf.remaining() < len {
        return None;
    }
    let s = String::from_utf8(buf[..len].to_vec()).ok()?;
    buf.advance(len);
    Some(s)
}

/// `OffsetCommitKey` v1.
pub(crate) fn encode_key(group_id: &str, topic: &str, partition: i32) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + group_id.len() + topic.len());
    out.put_i16(1);
    put_string(&mut out, group_id);
    put_string(&mut out, topic);
    out.put_i32(partition);
    out
}

/// `OffsetCommitValue` v3.
pub(crate) fn encode_value(committed: &Committed) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + committed.metadata.len());
    out.put_i16(3);
    out.put_i64(committed.offset);
    out.put_i32(committed.leader_epoch);
    put_string(&mut out, &committed.metadata);
    out.put_i64(committed.commit_timestamp);
    out
}

/// An offset commit key: group, topic, partition. `None` for other record kinds (group metadata).
pub(crate) fn decode_key(mut buf: &[u8]) -> Option<(String, String, i32)> {
    if buf.remaining() < 2 {
        return None;
    }
    match buf.get_i16() {
        0 | 1 => {
            let group = get_string(&mut buf)?;
            let topic = get_string(&mut buf)?;
            (buf.remaining() >= 4).then(|| (group, topic, buf.get_i32()))
        }
        _ => None,
    }
}

/// An offset commit value, versions 0-3.
pub(crate) fn decode_value(mut buf: &[u8], log_offset: i64) -> Option<Committed> {
    if buf.remaining() < 2 {
        return None;
    }
    let version = buf.get_i16();
    if !(0..=3).contains(&version) || buf.remaining() < 8 {
        return None;
    }
    let offset = buf.get_i64();
    let leader_epoch = if version >= 3 {
        if buf.remaining() < 4 {
            return None;
        }
        buf.get_i32()
    } else {
        -1
    };
    let metadata = get_string(&mut buf)?;
    if buf.remaining() < 8 {
        return None;
    }
    let commit_timestamp = buf.get_i64();
    Some(Committed {
        offset,
        leader_epoch,
        metadata,
        commit_timestamp,
        log_offset,
    })
}

/// Now, in Kafka's milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An offset to commit.
#[derive(Debug, Clone)]
pub(crate) struct OffsetToCommit {
    pub(crate) tp: TopicPartition,
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: String,
}

impl Coordinator {
    fn offsets_partition(&self, group_id: &str) -> TopicPartition {
        TopicPartition::new(
            OFFSETS_TOPIC,
            partition_for(group_id, self.offsets_partitions),
        )
    }

    /// OffsetCommit for a group: checks the committer against the group (Kafka's rules: a simple commit
    /// with generation -1 to a group without members; otherwise a current member of the current
    /// generation, outside CompletingRebalance), then appends the offsets to `__consumer_offsets`, and
    /// once they are durable makes them visible. The error, if any, applies to every offset.
    pub(crate) async fn commit(
        self: &Arc<Self>,
        group_id: &str,
        generation: i32,
        member_id: &str,
        instance_id: Option<&str>,
        offsets: Vec<OffsetToCommit>,
    ) -> Result<(), ResponseError> {
        if group_id.is_empty() {
            return Err(ResponseError::InvalidGroupId);
        }
        {
            let mut groups = self.groups();
            match groups.get_mut(group_id) {
                None if generation < 0 => {
                    groups.insert(group_id.to_string(), Group::new(group_id));
                }
                None => return Err(ResponseError::IllegalGeneration),
                Some(group) => check_committer(group, generation, member_id, instance_id)?,
            }
        }
        if offsets.is_empty() {
            return Ok(());
        }
        let timestamp = now_ms();
        let mut batch = BatchBuilder::new(timestamp);
        for o in &offsets {
            let value = Committed {
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata.clone(),
                commit_timestamp: timestamp,
                log_offset: -1,
            };
            batch.push(
                timestamp,
                Some(&encode_key(group_id, &o.tp.topic, o.tp.partition)),
                Some(&encode_value(&value)),
                Vec::new(),
            );
        }
        let base = self.append(group_id, batch).await?;
        let mut groups = self.groups();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id));
        for (i, o) in offsets.into_iter().enumerate() {
            let log_offset = base + i64::try_from(i).unwrap_or(i64::MAX);
            let committed = Committed {
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata,
                commit_timestamp: timestamp,
                log_offset,
            };
            let newer = group
                .offsets
                .get(&o.tp)
                .is_none_or(|c| c.log_offset < log_offset);
            if newer {
                group.offsets.insert(o.tp, committed);
            }
        }
        Ok(())
    }

    /// Appends records for `group_id` to its `__consumer_offsets` partition; returns the first offset.
    async fn append(&self, group_id: &str, batch: BatchBuilder) -> Result<i64, ResponseError> {
        let tp = self.offsets_partition(group_id);
        let bytes = batch.build().map_err(|e| {
            tracing::error!(error = %e, "cannot build an offsets batch");
            ResponseError::UnknownServerError
        })?;
        match self.log.append(&tp, Bytes::from(bytes)).await {
            Ok(info) => Ok(info.base_offset),
            Err(e) => {
                tracing::error!(partition = %tp, error = %e, "cannot store committed offsets");
                Err(match e {
                    StorageError::MessageTooLarge { .. } => ResponseError::InvalidCommitOffsetSize,
                    // Retriable: the client finds the coordinator again and retries.
                    _ => ResponseError::CoordinatorNotAvailable,
                })
            }
        }
    }

    /// Writes tombstones for these offsets of `group_id`, then forgets them.
    pub(crate) async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: &[TopicPartition],
    ) -> Result<(), ResponseError> {
        if partitions.is_empty() {
            return Ok(());
        }
        let timestamp = now_ms();
        let mut batch = BatchBuilder::new(timestamp);
        for tp in partitions {
            batch.push(
                timestamp,
                Some(&encode_key(group_id, &tp.topic, tp.partition)),
                None,
                Vec::new(),
            );
        }
        let base = self.append(group_id, batch).await?;
        let mut groups = self.groups();
        if let Some(group) = groups.get_mut(group_id) {
            for tp in partitions {
                // A commit that landed after the tombstone stays.
                if group.offsets.get(tp).is_some_and(|c| c.log_offset < base) {
                    group.offsets.remove(tp);
                }
            }
        }
        super::coordinator::forget_if_unused(&mut groups, group_id);
        Ok(())
    }

    /// Deletes every group's committed offsets for `topic` (tombstones, then memory), after the topic was
    /// deleted. Failures are logged: the topic is gone either way.
    pub(crate) async fn forget_topic(&self, topic: &str) {
        let affected: Vec<(String, Vec<TopicPartition>)> = self
            .groups()
            .iter()
            .map(|(id, g)| {
                let partitions: Vec<TopicPartition> = g
                    .offsets
                    .keys()
                    .filter(|tp| &*tp.topic == topic)
                    .cloned()
                    .collect();
                (id.clone(), partitions)
            })
            .filter(|(_, partitions)| !partitions.is_empty())
            .collect();
        for (group_id, partitions) in affected {
            if let Err(e) = self.delete_offsets(&group_id, &partitions).await {
                tracing::warn!(group = %group_id, topic, error = ?e, "cannot delete the offsets of a deleted topic");
            }
        }
    }

    /// Deletes the offsets that expired by `now_ms`: every offset of an empty group that has been empty
    /// for `retention_ms` (its latest commit counting if later), and of a group never managed by the
    /// coordinator (simple commits, or known only from `__consumer_offsets` after a restart) each offset
    /// `retention_ms` after its commit. Groups with members keep theirs.
    pub(crate) async fn expire_offsets(&self, retention_ms: i64, now_ms: i64) {
        let expired: Vec<(String, Vec<TopicPartition>)> = self
            .groups()
            .values()
            .map(|g| (g.id.clone(), expired_offsets(g, retention_ms, now_ms)))
            .filter(|(_, partitions)| !partitions.is_empty())
            .collect();
        for (group_id, partitions) in expired {
            tracing::info!(group = %group_id, offsets = partitions.len(), "committed offsets expired");
            if let Err(e) = self.delete_offsets(&group_id, &partitions).await {
                tracing::warn!(group = %group_id, error = ?e, "cannot delete expired offsets");
            }
        }
    }

    /// The offsets committed by `group_id`.
    pub(crate) fn committed(
        &self,
        group_id: &str,
    ) -> std::collections::HashMap<TopicPartition, Committed> {
        self.groups()
            .get(group_id)
            .map(|g| g.offsets.clone())
            .unwrap_or_default()
    }

    /// Reads `__consumer_offsets` from the beginning and rebuilds every group's committed offsets.
    /// Returns how many offsets were restored.
    pub(crate) async fn restore(&self) -> Result<usize, StorageError> {
        let mut restored: std::collections::HashMap<
            String,
            std::collections::HashMap<TopicPartition, Committed>,
        > = Default::default();
        for partition in 0..self.offsets_partitions {
            let tp = TopicPartition::new(OFFSETS_TOPIC, partition);
            nerve_storage::replay(self.log.as_ref(), &tp, |offset, record| {
                let Some((group, topic, p)) = record.key.as_deref().and_then(decode_key) else {
                    return;
                };
                let key = TopicPartition::new(&topic, p);
                let offsets = restored.entry(group).or_default();
                match record.value.as_deref() {
                    None => {
                        offsets.remove(&key);
                    }
                    Some(value) => {
                        if let Some(committed) = decode_value(value, offset) {
                            offsets.insert(key, committed);
                        }
                    }
                }
            })
            .await?;
        }
        let mut count = 0;
        let mut groups = self.groups();
        for (group_id, offsets) in restored {
            if offsets.is_empty() {
                continue;
            }
            count += offsets.len();
            let group = groups
                .entry(group_id.clone())
                .or_insert_with(|| Group::new(&group_id));
            group.offsets = offsets;
        }
        Ok(count)
    }
}

/// The offsets of `group` that expired by `now_ms` (see [`Coordinator::expire_offsets`]).
fn expired_offsets(group: &Group, retention_ms: i64, now_ms: i64) -> Vec<TopicPartition> {
    if group.state != GroupState::Empty || !group.members.is_empty() {
        return Vec::new();
    }
    let managed = group.protocol_type.is_some();
    group
        .offsets
        .iter()
        .filter(|(_, c)| {
            let since = match group.empty_since_ms {
                Some(empty) if managed => empty.max(c.commit_timestamp),
                _ => c.commit_timestamp,
            };
            now_ms.saturating_sub(since) >= retention_ms
        })
        .map(|(tp, _)| tp.clone())
        .collect()
}

/// Kafka's checks of who may commit to an existing group.
fn check_committer(
    group: &mut Group,
    generation: i32,
    member_id: &str,
    instance_id: Option<&str>,
) -> Result<(), ResponseError> {
    if group.state == GroupState::Dead {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    if group.is_fenced(instance_id, member_id) {
        return Err(ResponseError::FencedInstanceId);
    }
    if generation < 0 && group.state == GroupState::Empty {
        // A simple commit: the group is not managed by the coordinator.
        return Ok(());
    }
    if group.state == GroupState::CompletingRebalance {
        return Err(ResponseError::RebalanceInProgress);
    }
    if !group.has_member(member_id) {
        return Err(ResponseError::UnknownMemberId);
    }
    if generation != group.generation {
        return Err(ResponseError::IllegalGeneration);
    }
    group.touch_member(member_id);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_map_to_partitions_as_kafka_maps_them() {
        // Java: "test".hashCode() == 3556498, so Kafka puts group "test" in partition 48 of 50.
        assert_eq!(java_hash("test"), 3_556_498);
        assert_eq!(partition_for("test", 50), 48);
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("a"), 97);
        assert_eq!(java_hash("ab"), 97 * 31 + 98);
        assert_eq!(partition_for("anything", 1), 0);
        let p = partition_for("console-consumer-1", 50);
        assert!((0..50).contains(&p));
    }

    fn committed_at(timestamp: i64) -> Committed {
        Committed {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: timestamp,
            log_offset: 0,
        }
    }

    #[test]
    fn offsets_of_empty_groups_expire_after_the_retention_and_members_keep_theirs() {
        let day = 86_400_000;
        let old = TopicPartition::new("t", 0);
        let fresh = TopicPartition::new("t", 1);
        // Simple commits: each offset by its own commit time.
        let mut simple = Group::new("simple");
        simple.offsets.insert(old.clone(), committed_at(0));
        simple.offsets.insert(fresh.clone(), committed_at(6 * day));
        assert_eq!(
            expired_offsets(&simple, 7 * day, 7 * day),
            vec![old.clone()]
        );
        // A consumer group that emptied on day 5: nothing expires before day 12, then everything.
        let mut emptied = Group::new("emptied");
        emptied.protocol_type = Some("consumer".into());
        emptied.empty_since_ms = Some(5 * day);
        emptied.offsets.insert(old.clone(), committed_at(0));
        assert!(expired_offsets(&emptied, 7 * day, 11 * day).is_empty());
        assert_eq!(
            expired_offsets(&emptied, 7 * day, 12 * day),
            vec![old.clone()]
        );
        // A group that is rebalancing (not empty) keeps its offsets however old.
        emptied.state = GroupState::PreparingRebalance;
        assert!(expired_offsets(&emptied, 7 * day, 100 * day).is_empty());
    }

    #[test]
    fn offset_records_round_trip_in_kafkas_formats() {
        let key = encode_key("g", "orders", 7);
        assert_eq!(&key[..2], &[0, 1]);
        assert_eq!(decode_key(&key), Some(("g".into(), "orders".into(), 7)));
        let committed = Committed {
            offset: 42,
            leader_epoch: 0,
            metadata: "meta data".into(),
            commit_timestamp: 1_700_000_000_000,
            log_offset: 9,
        };
        let value = encode_value(&committed);
        assert_eq!(&value[..2], &[0, 3]);
        assert_eq!(decode_value(&value, 9), Some(committed));
        // A group metadata key (version 2) is not an offset.
        assert_eq!(decode_key(&[0, 2, 0, 1, b'g']), None);
    }
}
