//! The append path of a partition: validation on the caller's task, then writes gathered into groups.
//!
//! Producers keep several appends in flight per partition. Each append is validated where it arrives (CRC,
//! sizes, keys of compacted topics: CPU work that needs no lock) and queued. Whichever append finds no writer
//! running starts one on a blocking thread; the writer takes everything queued, gives it offsets, and writes
//! it with one `pwrite`, then takes what queued up meanwhile. One large write costs the kernel far less than
//! many small ones, and the file I/O stays off the async executor's threads.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use nerve_wire::batch::{self, BatchHeader};
use nerve_wire::TimestampType;
use tokio::sync::oneshot;

use super::partition::{check_keys, now_ms, Partition, PartitionState};
use super::producer::{ProducerEntry, ProducerStates, SequenceCheck};
use crate::config::{FsyncPolicy, TopicConfig};
use crate::error::{Result, StorageError};
use crate::AppendInfo;

/// What an append is answered with: what was stored, and the config it was stored under (whose fsync policy
/// says what the caller still waits for).
pub(crate) type AppendReply = Result<(AppendInfo, Arc<TopicConfig>)>;

/// How many times an idle writer yields before it stops; see [`Partition::write_queued`].
const WRITER_LINGER_YIELDS: u32 = 32;

/// The leading bytes of a batch that the broker rewrites: base offset (0..8), length (8..12), leader epoch
/// (12..16). The CRC starts at byte 17, after them.
const REWRITTEN: usize = 16;

/// Beyond this a group is written out and a new one started: larger writes gain little and hold back the
/// first append of the group.
const MAX_GROUP_BYTES: usize = 512 << 10;

pub(crate) struct PendingAppend {
    records: Bytes,
    spans: Vec<(BatchHeader, Range<usize>)>,
    reply: oneshot::Sender<AppendReply>,
}

#[derive(Default)]
pub(crate) struct AppendQueue {
    appends: Vec<PendingAppend>,
    /// Whether a writer is running for this partition.
    writing: bool,
}

/// Batches given offsets but not written yet, and the appends waiting on them. A batch is kept as two parts:
/// its first 16 bytes with the offset and leader epoch rewritten, and the rest as the producer sent it, so
/// nothing is copied before the write.
struct Group {
    parts: Vec<Bytes>,
    len: usize,
    headers: Vec<BatchHeader>,
    waiting: Vec<(oneshot::Sender<AppendReply>, AppendInfo)>,
    /// The offset the next staged batch gets.
    next: i64,
}

impl Partition {
    /// Validates a record set and queues it for the writer. Returns where the answer will come, and whether
    /// the caller must start the writer ([`Partition::write_queued`]).
    pub(crate) fn submit(&self, records: Bytes) -> Result<(oneshot::Receiver<AppendReply>, bool)> {
        self.check_online()?;
        let config = self.state.lock().config.clone();
        let spans = batch::split_and_validate(&records)?;
        for (header, _) in &spans {
            if header.total_len() > config.max_message_bytes {
                return Err(StorageError::MessageTooLarge {
                    size: header.total_len(),
                    max: config.max_message_bytes,
                });
            }
        }
        if config.cleanup_policy.compact {
            for (batch_index, (_, range)) in spans.iter().enumerate() {
                check_keys(
                    &records[range.clone()],
                    batch_index,
                    config.max_message_bytes.saturating_mul(64),
                )?;
            }
        }
        let (reply, answer) = oneshot::channel();
        let mut queue = self.appends.lock();
        queue.appends.push(PendingAppend {
            records,
            spans,
            reply,
        });
        let start_writer = !std::mem::replace(&mut queue.writing, true);
        Ok((answer, start_writer))
    }

    /// Writes queued appends until none is left. Runs on a blocking thread, one per partition at a time.
    pub(crate) fn write_queued(&self) {
        let _guard = WriterGuard(self);
        let mut idle = 0;
        loop {
            let group = {
                let mut queue = self.appends.lock();
                if queue.appends.is_empty() {
                    if idle < WRITER_LINGER_YIELDS {
                        // The producers just answered are about to send their next appends: yielding the
                        // CPU to them a few times is cheaper than handing the next group to a new writer.
                        drop(queue);
                        idle += 1;
                        std::thread::yield_now();
                        continue;
                    }
                    queue.writing = false;
                    return;
                }
                idle = 0;
                std::mem::take(&mut queue.appends)
            };
            self.write_group(group);
        }
    }

    fn write_group(&self, appends: Vec<PendingAppend>) {
        let now = now_ms();
        let mut state = self.state.lock();
        // Sequence checks run against a scratch copy of the producers involved, so that a refused batch
        // leaves the real state as it was.
        let mut scratch = ProducerStates::default();
        for a in &appends {
            for (h, _) in &a.spans {
                if let Some(entry) = state.producers.producers.get(&h.producer_id) {
                    scratch.producers.insert(h.producer_id, entry.clone());
                }
            }
        }
        let mut group = Group {
            parts: Vec::new(),
            len: 0,
            headers: Vec::new(),
            waiting: Vec::new(),
            next: state.log_end(),
        };
        let mut appends = appends.into_iter();
        while let Some(append) = appends.next() {
            let fits = group.len + append.records.len() <= MAX_GROUP_BYTES
                && state.active().size + (group.len + append.records.len()) as u64
                    <= state.config.segment_bytes;
            let failed = if group.len == 0 || fits {
                self.check_online().err()
            } else {
                self.write_out(&mut state, &mut group, now).err()
            };
            if let Some(e) = failed {
                // A write that failed (a full disk) would fail again for the rest; and the scratch producer
                // state assumed the failed batches were stored. Answer everyone.
                let _ = append.reply.send(Err(e.replicate()));
                for rest in appends {
                    let _ = rest.reply.send(Err(e.replicate()));
                }
                return;
            }
            match stage(&state, &mut scratch, &mut group, &append, now) {
                Ok(info) => group.waiting.push((append.reply, info)),
                Err(e) => {
                    let _ = append.reply.send(Err(e));
                }
            }
        }
        // A failure has been answered to every waiting append already.
        let _ = self.write_out(&mut state, &mut group, now);
    }

    /// Writes the staged group to the active segment (rolling first if it is due) and answers its appends.
    fn write_out(&self, state: &mut PartitionState, group: &mut Group, now: i64) -> Result<()> {
        let config = state.config.clone();
        let written = if group.len == 0 {
            Ok(())
        } else {
            let max_timestamp = group
                .headers
                .iter()
                .map(|h| h.max_timestamp)
                .max()
                .unwrap_or(-1);
            self.maybe_roll(state, group.len as u64, group.next - 1, max_timestamp, now)
                .and_then(|()| {
                    let interval = config.index_interval_bytes;
                    state
                        .active_mut()
                        .append(&group.parts, &group.headers, interval)
                })
        };
        let waiting = std::mem::take(&mut group.waiting);
        if let Err(e) = written {
            for (reply, _) in waiting {
                let _ = reply.send(Err(e.replicate()));
            }
            return Err(e);
        }
        for h in &group.headers {
            state.producers.record(h, now);
        }
        if config.fsync != FsyncPolicy::Always {
            state.active_mut().start_writeback();
            let end = state.end_position();
            self.publish_hw(state, end);
        }
        for (reply, mut info) in waiting {
            info.log_start_offset = state.log_start;
            let _ = reply.send(Ok((info, config.clone())));
        }
        group.parts.clear();
        group.len = 0;
        group.headers.clear();
        group.next = state.log_end();
        Ok(())
    }
}

/// Checks one append's batches against the producers' sequences and stages them into the group with their
/// offsets. On a refusal the group and scratch state are left as they were.
fn stage(
    state: &PartitionState,
    scratch: &mut ProducerStates,
    group: &mut Group,
    append: &PendingAppend,
    now: i64,
) -> Result<AppendInfo> {
    let config = &state.config;
    let (start_parts, start_len, start_next, start_headers) = (
        group.parts.len(),
        group.len,
        group.next,
        group.headers.len(),
    );
    let backup: Vec<(i64, Option<ProducerEntry>)> = append
        .spans
        .iter()
        .map(|(h, _)| {
            (
                h.producer_id,
                scratch.producers.get(&h.producer_id).cloned(),
            )
        })
        .collect();
    let result = (|| {
        for (header, range) in &append.spans {
            if let SequenceCheck::Duplicate {
                base_offset,
                last_offset,
            } = scratch.check(header)?
            {
                if append.spans.len() > 1 {
                    return Err(StorageError::InvalidRecord {
                        batch_index: group.headers.len() - start_headers,
                        record_index: 0,
                        reason: "a retried batch inside a record set of several batches"
                            .to_string(),
                    });
                }
                return Ok(AppendInfo {
                    base_offset,
                    last_offset,
                    log_append_time: None,
                    log_start_offset: state.log_start,
                    duplicate: true,
                });
            }
            let original = append.records.slice(range.clone());
            let stored = if config.timestamp_type == TimestampType::LogAppendTime {
                // The timestamp fields are under the CRC, so this batch is copied and re-checksummed.
                let mut bytes = original.to_vec();
                batch::set_base_offset(&mut bytes, group.next);
                batch::set_partition_leader_epoch(&mut bytes, 0);
                batch::set_log_append_time(&mut bytes, now);
                let stored = BatchHeader::parse(&bytes)?;
                group.parts.push(Bytes::from(bytes));
                stored
            } else {
                let mut head = original[..REWRITTEN].to_vec();
                batch::set_base_offset(&mut head, group.next);
                batch::set_partition_leader_epoch(&mut head, 0);
                let mut stored = *header;
                stored.base_offset = group.next;
                stored.partition_leader_epoch = 0;
                group.parts.push(Bytes::from(head));
                group.parts.push(original.slice(REWRITTEN..));
                stored
            };
            group.len += original.len();
            scratch.record(&stored, now);
            group.next = stored.last_offset() + 1;
            group.headers.push(stored);
        }
        Ok(AppendInfo {
            base_offset: start_next,
            last_offset: group.next - 1,
            log_append_time: (config.timestamp_type == TimestampType::LogAppendTime).then_some(now),
            log_start_offset: state.log_start,
            duplicate: false,
        })
    })();
    if result.is_err() {
        group.parts.truncate(start_parts);
        group.len = start_len;
        group.headers.truncate(start_headers);
        group.next = start_next;
        for (pid, entry) in backup.into_iter().rev() {
            match entry {
                Some(e) => scratch.producers.insert(pid, e),
                None => scratch.producers.remove(&pid),
            };
        }
    }
    result
}

/// If the writer panics, the partition must not be left with a writer that never finishes: the waiting
/// appends are dropped (their callers get an error) and the next append starts a new writer.
struct WriterGuard<'a>(&'a Partition);

impl Drop for WriterGuard<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut queue = self.0.appends.lock();
            queue.appends.clear();
            queue.writing = false;
        }
    }
}
