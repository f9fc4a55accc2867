//! A read-only view of the broker for operators' tools: the metrics exposition, the HTTP admin endpoints and
//! `nerve status`. Plain data, taken when asked; nothing here changes the broker.

use std::collections::BTreeMap;

use nerve_storage::{PartitionOffsets, TopicPartition};
use serde::Serialize;

use crate::broker::Broker;

/// The cluster as one node sees it.
#[derive(Debug, Clone, Serialize)]
pub struct ClusterInfo {
    pub cluster_id: String,
    pub node_id: i32,
    /// `host:port` clients are told to connect to.
    pub advertised_listener: String,
    pub topics: usize,
    pub partitions: usize,
    pub groups: usize,
}

/// A topic with its partitions.
#[derive(Debug, Clone, Serialize)]
pub struct TopicInfo {
    pub name: String,
    pub id: String,
    /// Whether a service inside the broker owns it (`__consumer_offsets`, `_schemas`).
    pub internal: bool,
    /// The configs set on the topic (the rest are defaults).
    pub configs: BTreeMap<String, String>,
    pub partitions: Vec<PartitionInfo>,
}

/// One partition's offsets and size. A partition whose log is offline has no offsets and says why.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionInfo {
    pub partition: i32,
    pub log_start_offset: Option<i64>,
    pub high_watermark: Option<i64>,
    pub log_end_offset: Option<i64>,
    pub size_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A consumer group with its members and committed offsets.
#[derive(Debug, Clone, Serialize)]
pub struct GroupInfo {
    pub group_id: String,
    /// `Empty`, `PreparingRebalance`, `CompletingRebalance`, `Stable` or `Dead`.
    pub state: String,
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub members: Vec<MemberInfo>,
    pub offsets: Vec<CommittedOffset>,
}

#[derive(Debug, Clone, Serialize)]
pub struct MemberInfo {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
}

/// A committed offset with the lag behind its partition's high watermark.
#[derive(Debug, Clone, Serialize)]
pub struct CommittedOffset {
    pub topic: String,
    pub partition: i32,
    pub committed_offset: i64,
    /// The partition's high watermark when the view was taken; `None` for a partition that no longer
    /// exists or is offline.
    pub high_watermark: Option<i64>,
    /// `high_watermark - committed_offset`, at least 0 (a committed offset may point below the log start
    /// after retention, then everything from the log start is unconsumed: the lag counts from the log start).
    pub lag: Option<i64>,
}

impl Broker {
    pub fn cluster_info(&self) -> ClusterInfo {
        let topics = self.meta.topics();
        ClusterInfo {
            cluster_id: self.cluster_id.clone(),
            node_id: self.config.node_id,
            advertised_listener: self.config.advertised_listener.clone(),
            partitions: topics.iter().map(|t| t.partitions.max(0) as usize).sum(),
            topics: topics.len(),
            groups: self.groups.groups().len(),
        }
    }

    /// Every topic (sorted by name) with its partitions' offsets and sizes.
    pub fn topic_infos(&self) -> Vec<TopicInfo> {
        let mut topics = self.meta.topics();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics
            .into_iter()
            .map(|meta| TopicInfo {
                internal: crate::group::is_internal_topic(&meta.name),
                id: meta.id.to_string(),
                partitions: (0..meta.partitions)
                    .map(|p| self.partition_info(&TopicPartition::new(&meta.name, p)))
                    .collect(),
                configs: meta.configs,
                name: meta.name,
            })
            .collect()
    }

    /// One topic, if it exists.
    pub fn topic_info(&self, name: &str) -> Option<TopicInfo> {
        self.topic_infos().into_iter().find(|t| t.name == name)
    }

    fn partition_info(&self, tp: &TopicPartition) -> PartitionInfo {
        let offsets = self.log.offsets(tp);
        let size = self.log.size_bytes(tp).ok();
        match offsets {
            Ok(PartitionOffsets {
                log_start,
                high_watermark,
                log_end,
            }) => PartitionInfo {
                partition: tp.partition,
                log_start_offset: Some(log_start),
                high_watermark: Some(high_watermark),
                log_end_offset: Some(log_end),
                size_bytes: size,
                error: None,
            },
            Err(e) => PartitionInfo {
                partition: tp.partition,
                log_start_offset: None,
                high_watermark: None,
                log_end_offset: None,
                size_bytes: None,
                error: Some(e.to_string()),
            },
        }
    }

    /// Every consumer group (sorted by id) with members, committed offsets and lag.
    pub fn group_infos(&self) -> Vec<GroupInfo> {
        // Copy what is needed under the coordinator's lock, then read offsets without it.
        let snapshot: Vec<GroupInfo> = {
            let groups = self.groups.groups();
            groups
                .values()
                .map(|g| {
                    let mut offsets: Vec<CommittedOffset> = g
                        .offsets
                        .iter()
                        .map(|(tp, c)| CommittedOffset {
                            topic: tp.topic.to_string(),
                            partition: tp.partition,
                            committed_offset: c.offset,
                            high_watermark: None,
                            lag: None,
                        })
                        .collect();
                    offsets.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
                    GroupInfo {
                        group_id: g.id.clone(),
                        state: g.state.name().to_string(),
                        protocol_type: g.protocol_type.clone(),
                        protocol: g.protocol.clone(),
                        generation: g.generation,
                        members: g
                            .members
                            .iter()
                            .map(|m| MemberInfo {
                                member_id: m.id.clone(),
                                group_instance_id: m.instance_id.clone(),
                                client_id: m.client_id.clone(),
                                client_host: m.client_host.clone(),
                            })
                            .collect(),
                        offsets,
                    }
                })
                .collect()
        };
        let mut infos: Vec<GroupInfo> = snapshot
            .into_iter()
            .map(|mut group| {
                for o in &mut group.offsets {
                    let tp = TopicPartition::new(&o.topic, o.partition);
                    if let Ok(offsets) = self.log.offsets(&tp) {
                        o.high_watermark = Some(offsets.high_watermark);
                        let from = o.committed_offset.max(offsets.log_start);
                        o.lag = Some((offsets.high_watermark - from).max(0));
                    }
                }
                group
            })
            .collect();
        infos.sort_by(|a, b| a.group_id.cmp(&b.group_id));
        infos
    }

    /// One group, if it exists.
    pub fn group_info(&self, group_id: &str) -> Option<GroupInfo> {
        self.group_infos()
            .into_iter()
            .find(|g| g.group_id == group_id)
    }

    /// The timestamp of the record at `offset` of `tp` (the first record at or after it), for lag in
    /// seconds: the age of the oldest record a group has not consumed. `None` when there is no such record.
    pub async fn record_timestamp_at(&self, tp: &TopicPartition, offset: i64) -> Option<i64> {
        let read = self.log.read(tp, offset, 1).await.ok()?;
        let mut data = &read.data[..];
        while let Some(Ok(len)) = nerve_wire::batch::peek_total_len(data) {
            if len > data.len() {
                return None;
            }
            let (batch, rest) = data.split_at(len);
            data = rest;
            let header = nerve_wire::BatchHeader::parse(batch).ok()?;
            if header.last_offset() < offset {
                continue;
            }
            let (header, records) = nerve_wire::records::decode_records(batch, 64 << 20).ok()?;
            return records
                .iter()
                .find(|r| r.offset(&header) >= offset)
                .map(|r| r.timestamp(&header));
        }
        None
    }
}
