//! Retention and compaction of closed segments.
//!
//! Retention deletes whole segments from the front of the log. Compaction rewrites closed segments keeping
//! only the latest record of each key; a kept record keeps its offset, and a rewritten batch keeps its base
//! offset and offset span, so offsets never change and consumers' positions stay valid.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use nerve_wire::batch::BatchHeader;
use nerve_wire::records::{self, BatchBuilder};

use super::fsutil;
use super::partition::{log_file, now_ms, write_log_start, Partition};
use super::segment::{self, Segment};
use crate::error::{Result, StorageError};

/// Kafka's `producer.id.expiration.ms` default: a producer idle this long loses its dedup state.
const PRODUCER_EXPIRATION_MS: i64 = 86_400_000;

/// What one compaction pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CompactionStats {
    pub segments_rewritten: usize,
    pub records_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
}

impl Partition {
    /// Deletes segments past `retention.ms` or beyond `retention.bytes`, oldest first, and returns how many.
    /// Only segments whose records are all below the high watermark are deleted.
    pub(crate) fn enforce_retention(&self, now: i64) -> Result<usize> {
        let mut state = self.state.lock();
        state.producers.expire(now - PRODUCER_EXPIRATION_MS);
        let config = state.config.clone();
        if !config.cleanup_policy.delete {
            return Ok(0);
        }
        let mut total: u64 = state.segments.iter().map(|s| s.size).sum();
        let mut count = 0;
        for segment in &state.segments {
            let by_time = config
                .retention_ms
                .is_some_and(|ms| segment.max_timestamp >= 0 && now - segment.max_timestamp > ms);
            let by_size = config
                .retention_bytes
                .is_some_and(|limit| total - segment.size >= limit);
            let visible = segment.next_offset <= state.hw.offset;
            if segment.size == 0 || !visible || !(by_time || by_size) {
                break;
            }
            total -= segment.size;
            count += 1;
        }
        if count == 0 {
            return Ok(0);
        }
        if count == state.segments.len() {
            // The active segment expired too: start an empty one at the log end so the end offset stays.
            self.roll(&mut state, now)?;
        }
        let removed: Vec<Segment> = state.segments.drain(..count).collect();
        let new_start = state.segments[0].base_offset.max(state.log_start);
        if new_start != state.log_start {
            write_log_start(&self.dir, new_start)?;
            state.log_start = new_start;
        }
        for segment in &removed {
            Segment::delete_files(&self.dir, segment.base_offset)?;
        }
        tracing::info!(partition = %self.tp, segments = count, log_start = new_start, "retention deleted segments");
        Ok(count)
    }

    /// Share of the closed segments' bytes not compacted yet.
    pub(crate) fn dirty_ratio(&self) -> f64 {
        let state = self.state.lock();
        let closed = &state.segments[..state.segments.len() - 1];
        let total: u64 = closed.iter().map(|s| s.size).sum();
        if total == 0 {
            return 0.0;
        }
        let dirty: u64 = closed
            .iter()
            .filter(|s| s.next_offset > state.cleaned_up_to)
            .map(|s| s.size)
            .sum();
        dirty as f64 / total as f64
    }

    /// Compacts the closed segments: keeps the latest record per key, drops tombstones older than
    /// `delete.retention.ms`. The active segment is never touched.
    pub(crate) fn compact(&self, max_decompressed: usize) -> Result<CompactionStats> {
        let now = now_ms();
        let (closed, config) = {
            let state = self.state.lock();
            let config = state.config.clone();
            if !config.cleanup_policy.compact {
                return Ok(CompactionStats::default());
            }
            let lag_cutoff = now - config.min_compaction_lag_ms;
            let closed: Vec<(i64, Arc<fs::File>, std::path::PathBuf, u64)> = state.segments
                [..state.segments.len() - 1]
                .iter()
                .take_while(|s| s.next_offset <= state.hw.offset && s.max_timestamp <= lag_cutoff)
                .map(|s| (s.base_offset, s.file.clone(), s.path.clone(), s.size))
                .collect();
            (closed, config)
        };
        let mut stats = CompactionStats::default();
        if closed.is_empty() {
            return Ok(stats);
        }

        // Pass 1: the offset of the latest record of every key in the range.
        let mut latest: HashMap<Bytes, i64> = HashMap::new();
        for (_, file, path, size) in &closed {
            for_each_batch(file, path, *size, max_decompressed, |header, _, records| {
                if !header.is_control() {
                    for r in records {
                        if let Some(key) = &r.key {
                            // Copied, so the map does not pin whole decompressed batches in memory.
                            latest.insert(Bytes::copy_from_slice(key), r.offset(header));
                        }
                    }
                }
                Ok(())
            })?;
        }

        // Pass 2: rewrite each segment with only what survives.
        let tombstone_cutoff = now - config.delete_retention_ms;
        for (base, file, path, size) in &closed {
            let mut out: Vec<u8> = Vec::with_capacity(*size as usize);
            let mut removed = 0u64;
            for_each_batch(
                file,
                path,
                *size,
                max_decompressed,
                |header, bytes, batch_records| {
                    if header.is_control() {
                        out.extend_from_slice(bytes);
                        return Ok(());
                    }
                    let keep: Vec<_> = batch_records
                        .iter()
                        .filter(|r| match &r.key {
                            None => true,
                            Some(key) => {
                                let newest = latest.get(key.as_ref()) == Some(&r.offset(header));
                                let expired_tombstone =
                                    r.value.is_none() && r.timestamp(header) < tombstone_cutoff;
                                newest && !expired_tombstone
                            }
                        })
                        .cloned()
                        .collect();
                    removed += (batch_records.len() - keep.len()) as u64;
                    if keep.len() == batch_records.len() {
                        out.extend_from_slice(bytes);
                    } else if !keep.is_empty() {
                        out.extend_from_slice(&rebuild(header, keep)?);
                    }
                    Ok(())
                },
            )?;
            if removed == 0 {
                continue;
            }
            let replaced = self.swap_in(*base, file, &out)?;
            if replaced {
                stats.segments_rewritten += 1;
                stats.records_removed += removed;
                stats.bytes_before += size;
                stats.bytes_after += out.len() as u64;
            }
        }
        let mut state = self.state.lock();
        if let Some((base, _, _, _)) = closed.last() {
            if let Some(s) = state.segments.iter().find(|s| s.base_offset == *base) {
                state.cleaned_up_to = state.cleaned_up_to.max(s.next_offset);
            }
        }
        if stats.segments_rewritten > 0 {
            tracing::info!(partition = %self.tp, ?stats, "compacted");
        }
        Ok(stats)
    }

    /// Replaces the segment at `base` with `bytes`, if it is still the one compaction read (retention or
    /// truncation may have removed it meanwhile). The new file is synced and renamed over the old one, so a
    /// crash leaves either the old segment or the new one. An emptied segment is deleted unless it is the
    /// first, whose base offset marks where the log starts.
    fn swap_in(&self, base: i64, original: &Arc<fs::File>, bytes: &[u8]) -> Result<bool> {
        let target = log_file(&self.dir, base);
        let cleaned = target.with_extension("log.cleaned");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&cleaned)
            .map_err(|e| StorageError::io(&cleaned, e))?;
        if let Err(e) = file.write_all(bytes).and_then(|()| file.sync_data()) {
            let _ = fs::remove_file(&cleaned);
            return Err(StorageError::io(&cleaned, e));
        }
        drop(file);
        let mut state = self.state.lock();
        let Some(i) = state
            .segments
            .iter()
            .position(|s| s.base_offset == base && Arc::ptr_eq(&s.file, original))
        else {
            let _ = fs::remove_file(&cleaned);
            return Ok(false);
        };
        if i == state.segments.len() - 1 {
            let _ = fs::remove_file(&cleaned);
            return Ok(false);
        }
        if bytes.is_empty() && i > 0 {
            let _ = fs::remove_file(&cleaned);
            state.segments.remove(i);
            Segment::delete_files(&self.dir, base)?;
            fsutil::sync_dir(&self.dir)?;
            return Ok(true);
        }
        fs::rename(&cleaned, &target).map_err(|e| StorageError::io(&target, e))?;
        fsutil::sync_dir(&self.dir)?;
        let interval = state.config.index_interval_bytes;
        let (file, path, len) = Segment::open_file(&self.dir, base)?;
        let outcome = segment::scan(&file, &path, 0, len, false)?;
        let segment = Segment::from_scan(
            file,
            path,
            base,
            &outcome.batches,
            outcome.valid_end,
            interval,
            now_ms(),
        );
        segment.write_indexes(&self.dir)?;
        state.segments[i] = segment;
        Ok(true)
    }
}

/// Calls `f` with every batch of a segment file: its header, its bytes and its decoded records.
fn for_each_batch(
    file: &fs::File,
    path: &std::path::Path,
    size: u64,
    max_decompressed: usize,
    mut f: impl FnMut(&BatchHeader, &[u8], &[nerve_wire::Record]) -> Result<()>,
) -> Result<()> {
    let scanned = segment::scan(file, path, 0, size, false)?;
    for b in scanned.batches {
        let bytes = Segment::read_at(file, path, b.position, b.header.total_len())?;
        let (header, batch_records) = records::decode_records(&bytes, max_decompressed)?;
        f(&header, &bytes, &batch_records)?;
    }
    Ok(())
}

/// A batch with only `keep` of its records: same base offset, offset span, codec and producer fields.
fn rebuild(header: &BatchHeader, keep: Vec<nerve_wire::Record>) -> Result<Vec<u8>> {
    let builder = BatchBuilder {
        base_offset: header.base_offset,
        partition_leader_epoch: header.partition_leader_epoch,
        compression: header.compression()?,
        timestamp_type: header.timestamp_type(),
        transactional: header.is_transactional(),
        control: false,
        base_timestamp: header.base_timestamp,
        max_timestamp: Some(header.max_timestamp),
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        base_sequence: header.base_sequence,
        last_offset_delta: Some(header.last_offset_delta),
        records: keep,
    };
    Ok(builder.build()?)
}
