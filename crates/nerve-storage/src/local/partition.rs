//! One partition's log: its segments, offsets, producer state, and the append, read and lookup paths.
//!
//! Invariants, held under `state`'s lock:
//! - `segments` is never empty, sorted by base offset; the last one is the active segment, the only one
//!   written to. Every other segment is closed and its indexes are on disk.
//! - `log_start <= hw.offset <= log end` (the active segment's `next_offset`).
//! - Readers see only batches below `hw`. With `fsync=always`, `hw` moves only after an `fdatasync` that
//!   covered the bytes, so no reader ever sees a record that a crash could take back.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use nerve_wire::batch::BatchHeader;
use nerve_wire::records;
use parking_lot::Mutex;
use tokio::sync::watch;

use super::fsutil;
use super::producer::ProducerStates;
use super::segment::{self, file_name, Segment, LOG_SUFFIX, SNAPSHOT_SUFFIX};
use crate::config::{FsyncPolicy, TopicConfig};
use crate::error::{Result, StorageError};
use crate::{PartitionOffsets, ReadResult, TimestampLookup, TopicPartition};

const LOG_START_FILE: &str = "log-start-offset";

/// A point in the log: an offset and where it falls in the files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub(crate) offset: i64,
    pub(crate) segment_base: i64,
    pub(crate) byte: u64,
}

pub(crate) struct PartitionState {
    pub(crate) config: Arc<TopicConfig>,
    pub(crate) segments: Vec<Segment>,
    pub(crate) log_start: i64,
    pub(crate) hw: Position,
    pub(crate) producers: ProducerStates,
    /// Bumped by truncation and deletion, so that a sync that started before one does not move `hw` onto
    /// bytes that are gone.
    pub(crate) generation: u64,
    /// Offset below which compaction has already run.
    pub(crate) cleaned_up_to: i64,
}

impl PartitionState {
    pub(crate) fn active(&self) -> &Segment {
        self.segments
            .last()
            .expect("a partition always has an active segment")
    }

    pub(crate) fn active_mut(&mut self) -> &mut Segment {
        self.segments
            .last_mut()
            .expect("a partition always has an active segment")
    }

    pub(crate) fn log_end(&self) -> i64 {
        self.active().next_offset
    }

    pub(crate) fn end_position(&self) -> Position {
        let active = self.active();
        Position {
            offset: active.next_offset,
            segment_base: active.base_offset,
            byte: active.size,
        }
    }

    /// The byte where readable data ends in `segment`.
    fn visible_end(&self, segment: &Segment) -> u64 {
        use std::cmp::Ordering::*;
        match segment.base_offset.cmp(&self.hw.segment_base) {
            Less => segment.size,
            Equal => self.hw.byte.min(segment.size),
            Greater => 0,
        }
    }

    /// Index of the segment that holds `offset`: the last one whose base is at or below it.
    fn segment_for(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    pub(crate) fn offsets(&self) -> PartitionOffsets {
        PartitionOffsets {
            log_start: self.log_start,
            high_watermark: self.hw.offset,
            log_end: self.log_end(),
        }
    }
}

/// Where to read: a segment file and a byte range of it, planned under the lock and read without it.
struct ReadPlan {
    file: Arc<File>,
    path: PathBuf,
    start: u64,
    end: u64,
    next_segment_base: Option<i64>,
}

pub(crate) struct Partition {
    pub(crate) tp: TopicPartition,
    pub(crate) dir: PathBuf,
    pub(crate) state: Mutex<PartitionState>,
    hw_tx: watch::Sender<i64>,
    /// Set when the partition can no longer be written safely (a failed sync) or was deleted.
    failed: AtomicBool,
    failure: Mutex<Option<String>>,
    /// Whether the partition is in the flusher's queue.
    pub(crate) queued: AtomicBool,
    /// Appends waiting for the partition's writer; see `append.rs`.
    pub(crate) appends: Mutex<super::append::AppendQueue>,
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Partition {
    pub(crate) fn dir_name(tp: &TopicPartition) -> String {
        format!("{}-{}", tp.topic, tp.partition)
    }

    /// Creates a new, empty partition directory.
    pub(crate) fn create(
        topics_dir: &Path,
        tp: TopicPartition,
        config: Arc<TopicConfig>,
    ) -> Result<Partition> {
        let dir = topics_dir.join(Self::dir_name(&tp));
        if dir.exists() {
            return Err(StorageError::PartitionAlreadyExists(tp));
        }
        fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        let segment = Segment::create(&dir, 0, now_ms())?;
        fsutil::sync_dir(&dir)?;
        fsutil::sync_parent(&dir)?;
        Ok(Self::assemble(
            tp,
            dir,
            config,
            vec![segment],
            0,
            ProducerStates::default(),
        ))
    }

    fn assemble(
        tp: TopicPartition,
        dir: PathBuf,
        config: Arc<TopicConfig>,
        segments: Vec<Segment>,
        log_start: i64,
        producers: ProducerStates,
    ) -> Partition {
        let mut state = PartitionState {
            config,
            segments,
            log_start,
            hw: Position {
                offset: 0,
                segment_base: 0,
                byte: 0,
            },
            producers,
            generation: 0,
            cleaned_up_to: 0,
        };
        state.hw = state.end_position();
        state.log_start = state
            .log_start
            .max(state.segments[0].base_offset)
            .min(state.log_end());
        let (hw_tx, _) = watch::channel(state.hw.offset);
        Partition {
            tp,
            dir,
            state: Mutex::new(state),
            hw_tx,
            failed: AtomicBool::new(false),
            failure: Mutex::new(None),
            queued: AtomicBool::new(false),
            appends: Mutex::new(super::append::AppendQueue::default()),
        }
    }

    /// Opens an existing partition directory, recovering the active segment: a torn tail is cut off with a
    /// warning; a bad batch with intact ones after it is corruption and fails the open.
    pub(crate) fn open(
        dir: PathBuf,
        tp: TopicPartition,
        config: Arc<TopicConfig>,
    ) -> Result<Partition> {
        let mut bases = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| StorageError::io(&dir, e))? {
            let entry = entry.map_err(|e| StorageError::io(&dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".tmp") || name.ends_with(".cleaned") {
                // Leftovers of an interrupted atomic write or compaction: the originals are intact.
                let _ = fs::remove_file(entry.path());
                continue;
            }
            if let Some(base) = name
                .strip_suffix(".log")
                .and_then(|b| b.parse::<i64>().ok())
            {
                bases.push(base);
            }
        }
        bases.sort_unstable();
        let now = now_ms();
        let interval = config.index_interval_bytes;
        let with_tp = |e: StorageError| match e {
            StorageError::Corruption {
                file,
                position,
                reason,
                ..
            } => StorageError::Corruption {
                tp: tp.clone(),
                file,
                position,
                reason,
            },
            other => other,
        };
        let persisted_start = read_log_start(&dir)?;
        if bases.is_empty() {
            let base = persisted_start.unwrap_or(0);
            let segment = Segment::create(&dir, base, now)?;
            fsutil::sync_dir(&dir)?;
            return Ok(Self::assemble(
                tp,
                dir,
                config,
                vec![segment],
                base,
                ProducerStates::default(),
            ));
        }
        let mut segments = Vec::with_capacity(bases.len());
        let (closed, active) = bases.split_at(bases.len() - 1);
        for &base in closed {
            segments.push(Segment::open_closed(&dir, base, interval, now).map_err(with_tp)?);
        }
        let active_base = active[0];
        let (file, path, len) = Segment::open_file(&dir, active_base)?;
        let outcome = segment::scan(&file, &path, 0, len, true)?;
        if let Some((position, reason)) = &outcome.problem {
            if let Some(next) = segment::intact_batch_after(&file, &path, *position, len)? {
                return Err(StorageError::Corruption {
                    tp,
                    file: path,
                    position: *position,
                    reason: format!("{reason}; an intact batch follows at byte {next}"),
                });
            }
            tracing::warn!(
                file = %path.display(),
                position,
                discarded_bytes = len - position,
                %reason,
                "truncating a torn write at the tail of the log"
            );
            file.set_len(*position)
                .map_err(|e| StorageError::io(&path, e))?;
        }
        // What survived the crash is in the page cache or on disk; make sure it is on disk before anyone
        // reads it as committed.
        file.sync_data().map_err(|e| StorageError::io(&path, e))?;
        check_offsets_increase(&outcome.batches, active_base, segments.last()).map_err(
            |(position, reason)| StorageError::Corruption {
                tp: tp.clone(),
                file: path.clone(),
                position,
                reason,
            },
        )?;
        let active_segment = Segment::from_scan(
            file,
            path,
            active_base,
            &outcome.batches,
            outcome.valid_end,
            interval,
            now,
        );
        let mut producers = match fs::read(dir.join(file_name(active_base, SNAPSHOT_SUFFIX))) {
            Ok(bytes) => serde_json::from_slice(&bytes).ok(),
            Err(_) => None,
        };
        if producers.is_none() && !segments.is_empty() {
            // No snapshot: rebuild from every batch header in the log.
            let mut states = ProducerStates::default();
            for s in &segments {
                let scanned = segment::scan(&s.file, &s.path, 0, s.size, false)?;
                for b in &scanned.batches {
                    states.record(&b.header, now);
                }
            }
            producers = Some(states);
        }
        let mut producers = producers.unwrap_or_default();
        for b in &outcome.batches {
            producers.record(&b.header, now);
        }
        segments.push(active_segment);
        let log_start = persisted_start.unwrap_or(0);
        Ok(Self::assemble(
            tp, dir, config, segments, log_start, producers,
        ))
    }

    pub(crate) fn check_online(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            let reason = self.failure.lock().clone().unwrap_or_default();
            return Err(StorageError::PartitionOffline {
                tp: self.tp.clone(),
                reason,
            });
        }
        Ok(())
    }

    /// Takes the partition offline: pending and later appends fail with `reason`.
    pub(crate) fn fail(&self, reason: String) {
        *self.failure.lock() = Some(reason);
        self.failed.store(true, Ordering::Release);
        self.hw_tx.send_modify(|_| {});
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<i64> {
        self.hw_tx.subscribe()
    }

    pub(crate) fn publish_hw(&self, state: &mut PartitionState, hw: Position) {
        if hw.offset >= state.hw.offset {
            state.hw = hw;
            self.hw_tx.send_replace(hw.offset);
        }
    }

    /// Waits until `offset` is below the high watermark, or fails if the partition went offline meanwhile.
    pub(crate) async fn wait_durable(&self, offset: i64) -> Result<()> {
        let mut rx = self.hw_tx.subscribe();
        let failed = &self.failed;
        let _ = rx
            .wait_for(|hw| *hw >= offset || failed.load(Ordering::Acquire))
            .await;
        self.check_online()
    }

    /// Starts a new active segment when the current one is full, too old, or would overflow relative offsets.
    pub(crate) fn maybe_roll(
        &self,
        state: &mut PartitionState,
        incoming: u64,
        last_offset: i64,
        incoming_max_timestamp: i64,
        now: i64,
    ) -> Result<()> {
        let active = state.active();
        let config = &state.config;
        let full = active.size + incoming > config.segment_bytes;
        // Measured on the records' own clock, so that a producer replaying old data does not roll a segment
        // per batch.
        let waited = if active.roll_base_timestamp >= 0 {
            incoming_max_timestamp - active.roll_base_timestamp
        } else {
            now - active.created_ms
        };
        let old = waited > config.segment_ms;
        let overflow = last_offset - active.base_offset > i64::from(u32::MAX - 1);
        if active.size > 0 && (full || old || overflow) {
            self.roll(state, now)?;
        }
        Ok(())
    }

    /// Closes the active segment (indexes written, and under `always` or `interval` its bytes synced) and
    /// opens a new one at the log end, with a producer-state snapshot beside it.
    pub(crate) fn roll(&self, state: &mut PartitionState, now: i64) -> Result<()> {
        let base = state.log_end();
        if state.config.fsync != FsyncPolicy::Never {
            // Only the active segment may end in a torn write, which recovery cuts off; a closed segment with
            // a torn tail would be taken for corruption. So a segment is durable before the next one begins.
            let old = state.active();
            if let Err(e) = old.file.sync_data() {
                self.fail(format!("fdatasync failed: {e}"));
                return Err(StorageError::io(&old.path, e));
            }
        }
        let snapshot = serde_json::to_vec(&state.producers).map_err(|e| StorageError::Io {
            path: self.dir.clone(),
            source: std::io::Error::other(e),
        })?;
        fsutil::write_atomic(&self.dir.join(file_name(base, SNAPSHOT_SUFFIX)), &snapshot)?;
        state.active().write_indexes(&self.dir)?;
        let segment = Segment::create(&self.dir, base, now)?;
        if let Err(e) = fsutil::sync_dir(&self.dir) {
            // An untracked empty segment left behind would look like the active one on the next open.
            let _ = fs::remove_file(&segment.path);
            return Err(e);
        }
        state.segments.push(segment);
        if state.config.fsync != FsyncPolicy::Always {
            // Readers may already see the old segment's tail; carry the visible end over to the new segment.
            let end = state.end_position();
            self.publish_hw(state, end);
        }
        Ok(())
    }

    fn plan_read(&self, state: &PartitionState, offset: i64) -> ReadPlan {
        let i = state.segment_for(offset);
        let segment = &state.segments[i];
        let end = state.visible_end(segment);
        let relative = u32::try_from(offset - segment.base_offset).unwrap_or(u32::MAX);
        let start = u64::from(segment.index.lookup(relative)).min(end);
        ReadPlan {
            file: segment.file.clone(),
            path: segment.path.clone(),
            start,
            end,
            next_segment_base: state.segments.get(i + 1).map(|s| s.base_offset),
        }
    }

    /// Reads whole batches from the one containing `offset`, up to `max_bytes` but at least one batch.
    pub(crate) fn read(&self, offset: i64, max_bytes: usize) -> Result<ReadResult> {
        let mut cursor = offset;
        loop {
            let (plan, offsets) = {
                let state = self.state.lock();
                let offsets = state.offsets();
                if offset < offsets.log_start || offset > offsets.log_end {
                    return Err(StorageError::OffsetOutOfRange {
                        tp: self.tp.clone(),
                        offset,
                        log_start: offsets.log_start,
                        log_end: offsets.log_end,
                    });
                }
                if cursor >= offsets.high_watermark {
                    return Ok(ReadResult {
                        data: Bytes::new(),
                        offsets,
                    });
                }
                (self.plan_read(&state, cursor), offsets)
            };
            let data = read_batches(&plan, offset, max_bytes)?;
            if !data.is_empty() {
                return Ok(ReadResult { data, offsets });
            }
            // Nothing at or after `offset` in this segment (compaction can empty a segment's tail): go on to
            // the next one.
            match plan.next_segment_base {
                Some(next) if next > cursor => cursor = next,
                _ => {
                    return Ok(ReadResult {
                        data: Bytes::new(),
                        offsets,
                    })
                }
            }
        }
    }

    pub(crate) fn offset_for_timestamp(
        &self,
        timestamp: i64,
        max_decompressed: usize,
    ) -> Result<Option<TimestampLookup>> {
        let mut from_segment = 0usize;
        loop {
            let (plan, log_start, hw) = {
                let state = self.state.lock();
                let Some(i) = state.segments[from_segment.min(state.segments.len())..]
                    .iter()
                    .position(|s| s.max_timestamp >= timestamp)
                    .map(|i| i + from_segment)
                else {
                    return Ok(None);
                };
                let segment = &state.segments[i];
                let relative = segment.time_index.lookup(timestamp);
                let start = u64::from(segment.index.lookup(relative));
                let plan = ReadPlan {
                    file: segment.file.clone(),
                    path: segment.path.clone(),
                    start,
                    end: state.visible_end(segment),
                    next_segment_base: None,
                };
                from_segment = i + 1;
                (plan, state.log_start, state.hw.offset)
            };
            if plan.start >= plan.end {
                return Ok(None);
            }
            let scanned = segment::scan(&plan.file, &plan.path, plan.start, plan.end, false)?;
            for b in scanned.batches {
                if b.header.last_offset() < log_start || b.header.max_timestamp < timestamp {
                    continue;
                }
                let bytes =
                    Segment::read_at(&plan.file, &plan.path, b.position, b.header.total_len())?;
                let (header, records) = records::decode_records(&bytes, max_decompressed)?;
                for r in &records {
                    let (o, t) = (r.offset(&header), r.timestamp(&header));
                    if o >= log_start && o < hw && t >= timestamp {
                        return Ok(Some(TimestampLookup {
                            offset: o,
                            timestamp: t,
                        }));
                    }
                }
            }
        }
    }

    pub(crate) fn max_timestamp(&self, max_decompressed: usize) -> Result<Option<TimestampLookup>> {
        let (plans, log_start, hw) = {
            let state = self.state.lock();
            let plans: Vec<ReadPlan> = state
                .segments
                .iter()
                .filter(|s| s.next_offset > state.log_start && s.max_timestamp >= 0)
                .map(|s| ReadPlan {
                    file: s.file.clone(),
                    path: s.path.clone(),
                    start: 0,
                    end: state.visible_end(s),
                    next_segment_base: None,
                })
                .collect();
            (plans, state.log_start, state.hw.offset)
        };
        // Batch headers carry each batch's largest timestamp, so only the batch that straddles the log start
        // (some of its records are gone) and the winning batch are decoded.
        let mut best: Option<(i64, Arc<File>, PathBuf, u64, usize)> = None;
        for plan in plans {
            let scanned = segment::scan(&plan.file, &plan.path, plan.start, plan.end, false)?;
            for b in scanned.batches {
                let header = &b.header;
                if header.last_offset() < log_start || header.base_offset >= hw {
                    continue;
                }
                let max = if header.base_offset >= log_start {
                    header.max_timestamp
                } else {
                    let bytes =
                        Segment::read_at(&plan.file, &plan.path, b.position, header.total_len())?;
                    let (header, records) = records::decode_records(&bytes, max_decompressed)?;
                    match records
                        .iter()
                        .filter(|r| r.offset(&header) >= log_start)
                        .map(|r| r.timestamp(&header))
                        .max()
                    {
                        Some(t) => t,
                        None => continue,
                    }
                };
                if best.as_ref().is_none_or(|(t, ..)| max > *t) {
                    best = Some((
                        max,
                        plan.file.clone(),
                        plan.path.clone(),
                        b.position,
                        header.total_len(),
                    ));
                }
            }
        }
        let Some((max, file, path, pos, len)) = best else {
            return Ok(None);
        };
        let bytes = Segment::read_at(&file, &path, pos, len)?;
        let (header, records) = records::decode_records(&bytes, max_decompressed)?;
        Ok(records
            .iter()
            .map(|r| (r.offset(&header), r.timestamp(&header)))
            .find(|&(o, t)| o >= log_start && t == max)
            .map(|(offset, timestamp)| TimestampLookup { offset, timestamp }))
    }

    pub(crate) fn delete_records_before(&self, offset: i64) -> Result<i64> {
        let mut state = self.state.lock();
        let offset = if offset < 0 { state.hw.offset } else { offset };
        if offset > state.hw.offset {
            return Err(StorageError::OffsetOutOfRange {
                tp: self.tp.clone(),
                offset,
                log_start: state.log_start,
                log_end: state.hw.offset,
            });
        }
        if offset > state.log_start {
            write_log_start(&self.dir, offset)?;
            state.log_start = offset;
            self.drop_segments_below_log_start(&mut state)?;
        }
        Ok(state.log_start)
    }

    /// Deletes closed segments that lie wholly before the log start.
    pub(crate) fn drop_segments_below_log_start(
        &self,
        state: &mut PartitionState,
    ) -> Result<usize> {
        let mut dropped = 0;
        while state.segments.len() > 1 && state.segments[1].base_offset <= state.log_start {
            let segment = state.segments.remove(0);
            Segment::delete_files(&self.dir, segment.base_offset)?;
            dropped += 1;
        }
        Ok(dropped)
    }

    pub(crate) fn truncate_to(&self, offset: i64) -> Result<i64> {
        let mut state = self.state.lock();
        if offset >= state.log_end() {
            return Ok(state.log_end());
        }
        let offset = offset.max(0);
        state.generation += 1;
        while state.segments.len() > 1 && state.active().base_offset >= offset {
            let segment = state.segments.pop().expect("more than one segment");
            Segment::delete_files(&self.dir, segment.base_offset)?;
        }
        let dir = self.dir.clone();
        let active = state.active_mut();
        let scanned = segment::scan(&active.file, &active.path, 0, active.size, false)?;
        let cut = scanned
            .batches
            .iter()
            .find(|b| b.header.last_offset() >= offset);
        let (position, new_end) = match cut {
            Some(b) => (b.position, b.header.base_offset),
            None => (active.size, active.next_offset),
        };
        // Reopening the snapshot-less active segment as writable again: its indexes are rebuilt in memory
        // by truncate_to and rewritten at the next roll.
        active.truncate_to(position, new_end.max(active.base_offset), &dir)?;
        let end = state.end_position();
        if state.hw.offset > end.offset || state.hw.segment_base > end.segment_base {
            state.hw = end;
            self.hw_tx.send_replace(end.offset);
        }
        state.log_start = state.log_start.min(end.offset);
        state.producers.truncate_to(end.offset);
        state.cleaned_up_to = state.cleaned_up_to.min(end.offset);
        Ok(end.offset)
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.state.lock().segments.iter().map(|s| s.size).sum()
    }
}

/// Reads whole batches from `plan` starting with the one that contains `offset`: stops before `max_bytes`
/// would be exceeded, except that the first batch is always returned whole (KIP-74).
fn read_batches(plan: &ReadPlan, offset: i64, max_bytes: usize) -> Result<Bytes> {
    const HEADER: usize = nerve_wire::BATCH_HEADER_LEN;
    // A little more than asked, since the index points up to one interval before the wanted batch.
    let window = (max_bytes as u64).saturating_add(64 * 1024);
    let mut position = plan.start;
    loop {
        if position + HEADER as u64 > plan.end {
            return Ok(Bytes::new());
        }
        let buf = Segment::read_at(
            &plan.file,
            &plan.path,
            position,
            window.min(plan.end - position) as usize,
        )?;
        // Skip the batches before `offset` by their headers alone.
        let mut at = 0usize;
        while at + HEADER <= buf.len() {
            let header = BatchHeader::parse(&buf[at..])?;
            if header.last_offset() >= offset {
                break;
            }
            at += header.total_len();
        }
        if at + HEADER > buf.len() {
            position += at as u64;
            continue;
        }
        let first = BatchHeader::parse(&buf[at..])?.total_len();
        if at + first > buf.len() {
            let whole = Segment::read_at(&plan.file, &plan.path, position + at as u64, first)?;
            return Ok(Bytes::from(whole));
        }
        let start = at;
        let mut end = at + first;
        while end + HEADER <= buf.len() {
            let total = BatchHeader::parse(&buf[end..])?.total_len();
            if end + total > buf.len() || end + total - start > max_bytes {
                break;
            }
            end += total;
        }
        return Ok(Bytes::from(buf).slice(start..end));
    }
}

/// Compacted topics need a key on every record: a record without one could never be compacted away.
pub(crate) fn check_keys(batch: &[u8], batch_index: usize, max_decompressed: usize) -> Result<()> {
    let (header, records) = records::decode_records(batch, max_decompressed)?;
    if header.is_control() {
        return Ok(());
    }
    if let Some(record_index) = records.iter().position(|r| r.key.is_none()) {
        return Err(StorageError::InvalidRecord {
            batch_index,
            record_index,
            reason: "compacted topic partitions do not accept records without a key".to_string(),
        });
    }
    Ok(())
}

/// Batches of the active segment must follow each other and the closed segments in offset order; anything
/// else is a log that was tampered with or corrupted in a way a CRC cannot see.
fn check_offsets_increase(
    batches: &[segment::ScannedBatch],
    base: i64,
    previous: Option<&Segment>,
) -> std::result::Result<(), (u64, String)> {
    let mut expected_min = previous.map(|s| s.next_offset).unwrap_or(base).max(base);
    for b in batches {
        if b.header.base_offset < expected_min || b.header.last_offset_delta < 0 {
            return Err((
                b.position,
                format!(
                    "batch at offset {} where offset {} or later was expected",
                    b.header.base_offset, expected_min
                ),
            ));
        }
        expected_min = b.header.last_offset() + 1;
    }
    Ok(())
}

fn read_log_start(dir: &Path) -> Result<Option<i64>> {
    let path = dir.join(LOG_START_FILE);
    match fs::read_to_string(&path) {
        Ok(s) => Ok(s.trim().parse().ok()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(&path, e)),
    }
}

pub(crate) fn write_log_start(dir: &Path, offset: i64) -> Result<()> {
    fsutil::write_atomic(&dir.join(LOG_START_FILE), offset.to_string().as_bytes())
}

pub(crate) fn log_file(dir: &Path, base: i64) -> PathBuf {
    dir.join(file_name(base, LOG_SUFFIX))
}
