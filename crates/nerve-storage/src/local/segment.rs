//! One segment of a partition's log: a file of RecordBatch v2 bytes back to back, named by the offset of its
//! first batch, with its sparse indexes beside it.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use nerve_wire::batch::{self, BatchHeader};
use nerve_wire::{LOG_OVERHEAD, MAGIC_V2};

use super::index::{OffsetIndex, TimeIndex};
use crate::error::{Result, StorageError};

pub(crate) const LOG_SUFFIX: &str = "log";
pub(crate) const INDEX_SUFFIX: &str = "index";
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Producer state as of the segment's base offset, written when the segment is created by a roll.
pub(crate) const SNAPSHOT_SUFFIX: &str = "snapshot";
/// Chunk size for sequential scans of a segment.
const SCAN_CHUNK: usize = 1 << 20;

pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// A batch found by a scan: its header (with the offsets as stored) and where it starts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScannedBatch {
    pub(crate) header: BatchHeader,
    pub(crate) position: u64,
}

/// What a scan of a segment found.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    pub(crate) batches: Vec<ScannedBatch>,
    /// Where the valid batches end.
    pub(crate) valid_end: u64,
    /// The first problem: its position and what is wrong. `None` when the file ends on a batch boundary.
    pub(crate) problem: Option<(u64, String)>,
}

/// How many appended bytes of a segment make `start_writeback` start the kernel's write-back.
const WRITEBACK_CHUNK: u64 = 4 << 20;

#[derive(Debug)]
pub(crate) struct Segment {
    pub(crate) base_offset: i64,
    pub(crate) file: Arc<File>,
    pub(crate) path: PathBuf,
    /// Bytes of valid batches in the file.
    pub(crate) size: u64,
    /// One past the last offset stored here; `base_offset` while empty.
    pub(crate) next_offset: i64,
    pub(crate) index: OffsetIndex,
    pub(crate) time_index: TimeIndex,
    /// Largest batch max timestamp stored here, -1 while empty.
    pub(crate) max_timestamp: i64,
    /// Base offset of the batch that holds `max_timestamp`.
    pub(crate) max_timestamp_batch: i64,
    /// Timestamp that `segment.ms` counts from, as in Kafka: the first batch's max timestamp (-1 when it has
    /// none, and then `created_ms` counts).
    pub(crate) roll_base_timestamp: i64,
    pub(crate) created_ms: i64,
    bytes_since_index: u64,
    /// Start of the bytes whose write-back has not been started yet (see `start_writeback`).
    writeback_from: u64,
    writeback_running: Arc<AtomicBool>,
}

impl Segment {
    /// Creates a new, empty segment file. The caller syncs the directory.
    pub(crate) fn create(dir: &Path, base_offset: i64, now_ms: i64) -> Result<Segment> {
        let path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| StorageError::io(&path, e))?;
        Ok(Segment::empty(file, path, base_offset, now_ms))
    }

    /// A segment with no batches, over `file`.
    fn empty(file: File, path: PathBuf, base_offset: i64, now_ms: i64) -> Segment {
        Segment {
            base_offset,
            file: Arc::new(file),
            path,
            size: 0,
            next_offset: base_offset,
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            max_timestamp: -1,
            max_timestamp_batch: base_offset,
            roll_base_timestamp: -1,
            created_ms: now_ms,
            bytes_since_index: 0,
            writeback_from: 0,
            writeback_running: Arc::default(),
        }
    }

    /// Opens an existing segment file without looking at its contents.
    pub(crate) fn open_file(dir: &Path, base_offset: i64) -> Result<(File, PathBuf, u64)> {
        let path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io(&path, e))?;
        let len = file
            .metadata()
            .map_err(|e| StorageError::io(&path, e))?
            .len();
        Ok((file, path, len))
    }

    /// Builds a segment from the batches a scan found, indexing them as appends would have.
    pub(crate) fn from_scan(
        file: File,
        path: PathBuf,
        base_offset: i64,
        batches: &[ScannedBatch],
        valid_end: u64,
        index_interval: u32,
        now_ms: i64,
    ) -> Segment {
        let mut segment = Segment::empty(file, path, base_offset, now_ms);
        for b in batches {
            segment.note_appended(&b.header, b.position, index_interval);
        }
        segment.size = valid_end;
        segment.writeback_from = valid_end;
        segment
    }

    /// Opens a closed segment from its indexes; when they are missing or do not match the log, rebuilds them
    /// with a scan. A closed segment's batches are not CRC-checked here: readers and clients check them.
    pub(crate) fn open_closed(
        dir: &Path,
        base_offset: i64,
        index_interval: u32,
        now_ms: i64,
    ) -> Result<Segment> {
        let (file, path, len) = Self::open_file(dir, base_offset)?;
        if let Some(segment) = Self::from_index_files(dir, &file, &path, base_offset, len)? {
            return Ok(segment);
        }
        tracing::info!(segment = %path.display(), "rebuilding missing or stale indexes");
        let outcome = scan(&file, &path, 0, len, false)?;
        if let Some((position, reason)) = outcome.problem {
            return Err(StorageError::Corruption {
                tp: crate::TopicPartition::new("?", -1),
                file: path,
                position,
                reason,
            });
        }
        let segment = Self::from_scan(
            file,
            path,
            base_offset,
            &outcome.batches,
            outcome.valid_end,
            index_interval,
            now_ms,
        );
        segment.write_indexes(dir)?;
        Ok(segment)
    }

    fn from_index_files(
        dir: &Path,
        file: &File,
        path: &Path,
        base_offset: i64,
        len: u64,
    ) -> Result<Option<Segment>> {
        let read = |suffix: &str| fs::read(dir.join(file_name(base_offset, suffix))).ok();
        let (Some(index_bytes), Some(time_bytes)) = (read(INDEX_SUFFIX), read(TIME_INDEX_SUFFIX))
        else {
            return Ok(None);
        };
        if len == 0 {
            return Ok(None);
        }
        let Some(index) = OffsetIndex::decode(&index_bytes, len) else {
            return Ok(None);
        };
        // Walk the batches after the last index entry to find where the segment ends; this also checks that
        // the entry really points at a batch with the offset it claims.
        let (last_rel, last_pos) = index.last().unwrap_or((0, 0));
        let tail = scan(file, path, u64::from(last_pos), len, false)?;
        let (Some(first), Some(last)) = (tail.batches.first(), tail.batches.last()) else {
            return Ok(None);
        };
        if tail.problem.is_some()
            || tail.valid_end != len
            || first.header.base_offset != base_offset + i64::from(last_rel)
        {
            return Ok(None);
        }
        let next_offset = last.header.last_offset() + 1;
        let Ok(next_relative) = u32::try_from(next_offset - base_offset) else {
            return Ok(None);
        };
        let Some(time_index) = TimeIndex::decode(&time_bytes, next_relative) else {
            return Ok(None);
        };
        let (max_timestamp, max_rel) = time_index.last().unwrap_or((-1, 0));
        Ok(Some(Segment {
            base_offset,
            file: Arc::new(file.try_clone().map_err(|e| StorageError::io(path, e))?),
            path: path.to_path_buf(),
            size: len,
            next_offset,
            index,
            time_index,
            max_timestamp,
            max_timestamp_batch: base_offset + i64::from(max_rel),
            roll_base_timestamp: max_timestamp,
            created_ms: crate::local::partition::now_ms(),
            bytes_since_index: 0,
            writeback_from: 0,
            writeback_running: Arc::default(),
        }))
    }

    /// Writes `bytes` (whole batches whose offsets are already assigned) at the end of the segment. On failure
    /// the file is cut back to where it was, so no partial batch stays behind.
    pub(crate) fn append(
        &mut self,
        parts: &[bytes::Bytes],
        batches: &[BatchHeader],
        index_interval: u32,
    ) -> Result<()> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if let Err(e) = write_all_vectored_at(&self.file, parts, self.size) {
            let _ = self.file.set_len(self.size);
            return Err(StorageError::io(&self.path, e));
        }
        let start = self.size;
        let mut position = start;
        for header in batches {
            self.note_appended(header, position, index_interval);
            position += header.total_len() as u64;
        }
        debug_assert_eq!(position, start + len as u64);
        self.size = position;
        Ok(())
    }

    /// Starts the kernel's write-back of the bytes appended since the last call, once there are at least
    /// `WRITEBACK_CHUNK` of them, on a blocking thread so that the writer goes on writing. For segments
    /// that are not synced after every append: the disk then works while the writer fills the page cache,
    /// instead of all at once when the segment is finally synced, and dirty pages do not pile up.
    pub(crate) fn start_writeback(&mut self) {
        let pending = self.size.saturating_sub(self.writeback_from);
        if pending < WRITEBACK_CHUNK || self.writeback_running.swap(true, Ordering::AcqRel) {
            // One request at a time per segment; a busy one leaves the range to the next call.
            return;
        }
        let (file, running, from) = (
            self.file.clone(),
            self.writeback_running.clone(),
            self.writeback_from,
        );
        self.writeback_from = self.size;
        let request = move || {
            // POSIX_FADV_DONTNEED is how safe Rust reaches `sync_file_range(SYNC_FILE_RANGE_WRITE)` here:
            // Linux answers it by starting write-back of the range's dirty pages without waiting, and it
            // evicts only clean pages, so the freshly written (dirty) bytes stay cached for tail reads.
            // Advice is a hint: an error changes nothing stored, so there is nothing to report.
            let _ = rustix::fs::fadvise(
                &*file,
                from,
                std::num::NonZeroU64::new(pending),
                rustix::fs::Advice::DontNeed,
            );
            running.store(false, Ordering::Release);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(request)),
            Err(_) => request(),
        }
    }

    fn note_appended(&mut self, header: &BatchHeader, position: u64, index_interval: u32) {
        let relative = (header.base_offset - self.base_offset) as u32;
        if position == 0 {
            self.roll_base_timestamp = header.max_timestamp;
        }
        if position == 0 || self.bytes_since_index >= u64::from(index_interval) {
            if position > 0 || self.index.last().is_none() {
                self.index.push(relative, position as u32);
            }
            if header.max_timestamp > self.max_timestamp {
                self.time_index.push(header.max_timestamp, relative);
            }
            self.bytes_since_index = 0;
        }
        self.bytes_since_index += header.total_len() as u64;
        if header.max_timestamp > self.max_timestamp {
            self.max_timestamp = header.max_timestamp;
            self.max_timestamp_batch = header.base_offset;
        }
        self.next_offset = header.last_offset() + 1;
        self.size = self.size.max(position + header.total_len() as u64);
    }

    /// Reads `len` bytes at `position`.
    pub(crate) fn read_at(file: &File, path: &Path, position: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, position)
            .map_err(|e| StorageError::io(path, e))?;
        Ok(buf)
    }

    /// Writes both indexes (with a final time index entry for the segment's largest timestamp) and syncs
    /// them with the log, as a segment is closed.
    pub(crate) fn write_indexes(&self, dir: &Path) -> Result<()> {
        let mut time_index = self.time_index.clone();
        if self.max_timestamp >= 0 {
            time_index.push(
                self.max_timestamp,
                (self.max_timestamp_batch - self.base_offset) as u32,
            );
        }
        for (suffix, bytes) in [
            (INDEX_SUFFIX, self.index.encode()),
            (TIME_INDEX_SUFFIX, time_index.encode()),
        ] {
            let path = dir.join(file_name(self.base_offset, suffix));
            fs::write(&path, &bytes)
                .and_then(|()| File::open(&path)?.sync_all())
                .map_err(|e| StorageError::io(&path, e))?;
        }
        Ok(())
    }

    /// Cuts the segment back to `position` (a batch boundary) whose first offset is `next_offset`.
    pub(crate) fn truncate_to(
        &mut self,
        position: u64,
        next_offset: i64,
        dir: &Path,
    ) -> Result<()> {
        self.file
            .set_len(position)
            .map_err(|e| StorageError::io(&self.path, e))?;
        self.file
            .sync_all()
            .map_err(|e| StorageError::io(&self.path, e))?;
        self.size = position;
        self.writeback_from = self.writeback_from.min(position);
        self.next_offset = next_offset;
        self.index.truncate_to_position(position as u32);
        self.time_index
            .truncate_to_offset((next_offset - self.base_offset) as u32);
        // The largest timestamp may have been cut off; rescanning what is left is the only exact answer.
        let outcome = scan(&self.file, &self.path, 0, position, false)?;
        self.max_timestamp = -1;
        self.max_timestamp_batch = self.base_offset;
        for b in &outcome.batches {
            if b.header.max_timestamp > self.max_timestamp {
                self.max_timestamp = b.header.max_timestamp;
                self.max_timestamp_batch = b.header.base_offset;
            }
        }
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let _ = fs::remove_file(dir.join(file_name(self.base_offset, suffix)));
        }
        Ok(())
    }

    /// Removes the segment's files.
    pub(crate) fn delete_files(dir: &Path, base_offset: i64) -> Result<()> {
        for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX, SNAPSHOT_SUFFIX] {
            let path = dir.join(file_name(base_offset, suffix));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(&path, e)),
            }
        }
        Ok(())
    }
}

/// Writes `parts` back to back at `position` with as few `pwritev` calls as the kernel allows, so that a
/// group of batches costs one system call rather than one per batch and is never copied into one buffer.
fn write_all_vectored_at(
    file: &File,
    parts: &[bytes::Bytes],
    mut position: u64,
) -> std::io::Result<()> {
    use std::io::IoSlice;
    // Linux takes at most IOV_MAX (1024) buffers per call.
    const MAX_SLICES: usize = 1024;
    for chunk in parts.chunks(MAX_SLICES) {
        let mut slices: Vec<IoSlice<'_>> = chunk.iter().map(|p| IoSlice::new(p)).collect();
        let mut remaining: &mut [IoSlice<'_>] = &mut slices;
        while !remaining.is_empty() {
            let written = rustix::io::pwritev(file, remaining, position)?;
            if written == 0 {
                return Err(std::io::ErrorKind::WriteZero.into());
            }
            position += written as u64;
            IoSlice::advance_slices(&mut remaining, written);
        }
    }
    Ok(())
}

/// Reads batches from `start` up to `end` of a segment file. With `check_crc`, every batch's CRC is verified
/// (recovery of an active segment); otherwise only lengths and magic (rebuilding an index).
pub(crate) fn scan(
    file: &File,
    path: &Path,
    start: u64,
    end: u64,
    check_crc: bool,
) -> Result<ScanOutcome> {
    let mut batches = Vec::new();
    let mut position = start;
    let mut buf: Vec<u8> = Vec::new();
    let mut buf_start = start;
    loop {
        if position == end {
            return Ok(ScanOutcome {
                batches,
                valid_end: position,
                problem: None,
            });
        }
        let remaining = end - position;
        if remaining < nerve_wire::BATCH_HEADER_LEN as u64 {
            return Ok(ScanOutcome {
                batches,
                valid_end: position,
                problem: Some((
                    position,
                    format!("{remaining} trailing bytes are not a whole batch header"),
                )),
            });
        }
        // Keep a window of the file in memory that holds at least the header at `position`.
        let offset_in_buf = (position - buf_start) as usize;
        if offset_in_buf + nerve_wire::BATCH_HEADER_LEN > buf.len() {
            let len = (remaining as usize).min(SCAN_CHUNK.max(nerve_wire::BATCH_HEADER_LEN));
            buf = Segment::read_at(file, path, position, len)?;
            buf_start = position;
        }
        let at = (position - buf_start) as usize;
        let header = match BatchHeader::parse(&buf[at..]) {
            Ok(h) => h,
            Err(e) => {
                return Ok(ScanOutcome {
                    batches,
                    valid_end: position,
                    problem: Some((position, e.to_string())),
                })
            }
        };
        let total = match batch::peek_total_len(&buf[at..]) {
            Some(Ok(total)) => total as u64,
            Some(Err(e)) => {
                return Ok(ScanOutcome {
                    batches,
                    valid_end: position,
                    problem: Some((position, e.to_string())),
                })
            }
            None => unreachable!("a whole header is in the buffer"),
        };
        if header.magic != MAGIC_V2 {
            return Ok(ScanOutcome {
                batches,
                valid_end: position,
                problem: Some((position, format!("magic {} is not 2", header.magic))),
            });
        }
        if total > remaining {
            return Ok(ScanOutcome {
                batches,
                valid_end: position,
                problem: Some((
                    position,
                    format!("batch of {total} bytes runs past the end of the file"),
                )),
            });
        }
        if check_crc {
            if at + total as usize > buf.len() {
                let len = (remaining as usize).min(SCAN_CHUNK.max(total as usize));
                buf = Segment::read_at(file, path, position, len)?;
                buf_start = position;
            }
            let at = (position - buf_start) as usize;
            if let Err(e) = batch::check_integrity(&buf[at..at + total as usize]) {
                return Ok(ScanOutcome {
                    batches,
                    valid_end: position,
                    problem: Some((position, e.to_string())),
                });
            }
        }
        batches.push(ScannedBatch { header, position });
        position += total;
        debug_assert!(total >= LOG_OVERHEAD as u64);
    }
}

/// Whether any intact batch starts after `from` in the file: the difference between a torn tail (nothing
/// intact follows the bad bytes) and corruption in the middle of the log (something does).
pub(crate) fn intact_batch_after(
    file: &File,
    path: &Path,
    from: u64,
    end: u64,
) -> Result<Option<u64>> {
    if end <= from + 1 {
        return Ok(None);
    }
    let rest = Segment::read_at(file, path, from + 1, (end - from - 1) as usize)?;
    let header_len = nerve_wire::BATCH_HEADER_LEN;
    for at in 0..rest.len().saturating_sub(header_len - 1) {
        if rest[at + 16] as i8 != MAGIC_V2 {
            continue;
        }
        let Some(Ok(total)) = batch::peek_total_len(&rest[at..]) else {
            continue;
        };
        if at + total <= rest.len() && batch::check_integrity(&rest[at..at + total]).is_ok() {
            return Ok(Some(from + 1 + at as u64));
        }
    }
    Ok(None)
}
