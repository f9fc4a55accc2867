//! Sparse indexes of a segment, kept in memory and written beside the segment when it is closed.
//!
//! - Offset index (`.index`): entries of (offset relative to the segment's base, byte position of the batch
//!   that starts at that offset), 4 + 4 bytes big-endian, one per `index.interval.bytes` of log.
//! - Time index (`.timeindex`): entries of (largest timestamp so far, relative offset of the batch that
//!   reached it), 8 + 4 bytes big-endian, added when the largest timestamp grows.
//!
//! Both are hints: a lookup lands at or before the wanted batch and the caller scans forward. That is why an
//! index that is missing or does not match its log can be rebuilt from the log alone.

/// Offset index entries: (relative offset, position).
#[derive(Debug, Default, Clone)]
pub(crate) struct OffsetIndex {
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    pub(crate) fn push(&mut self, relative_offset: u32, position: u32) {
        debug_assert!(self
            .entries
            .last()
            .is_none_or(|&(o, p)| o < relative_offset && p < position));
        self.entries.push((relative_offset, position));
    }

    /// Position of the last indexed batch starting at or before `relative_offset`, or 0.
    pub(crate) fn lookup(&self, relative_offset: u32) -> u32 {
        let i = self.entries.partition_point(|&(o, _)| o <= relative_offset);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    /// Drops entries at or past `position` (after a truncation).
    pub(crate) fn truncate_to_position(&mut self, position: u32) {
        let i = self.entries.partition_point(|&(_, p)| p < position);
        self.entries.truncate(i);
    }

    pub(crate) fn last(&self) -> Option<(u32, u32)> {
        self.entries.last().copied()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 8);
        for &(o, p) in &self.entries {
            out.extend_from_slice(&o.to_be_bytes());
            out.extend_from_slice(&p.to_be_bytes());
        }
        out
    }

    /// Parses an index file; `None` when it is malformed (not a whole number of entries, not increasing, or
    /// pointing past `log_size`), so the caller rebuilds it.
    pub(crate) fn decode(bytes: &[u8], log_size: u64) -> Option<Self> {
        if !bytes.len().is_multiple_of(8) {
            return None;
        }
        let mut index = OffsetIndex::default();
        for chunk in bytes.chunks_exact(8) {
            let o = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
            let p = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
            if u64::from(p) >= log_size {
                return None;
            }
            if let Some((lo, lp)) = index.last() {
                if o <= lo || p <= lp {
                    return None;
                }
            }
            index.entries.push((o, p));
        }
        Some(index)
    }
}

/// Time index entries: (largest timestamp so far, relative offset).
#[derive(Debug, Default, Clone)]
pub(crate) struct TimeIndex {
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    pub(crate) fn push(&mut self, timestamp: i64, relative_offset: u32) {
        if self
            .entries
            .last()
            .is_none_or(|&(t, o)| timestamp > t && relative_offset > o)
        {
            self.entries.push((timestamp, relative_offset));
        }
    }

    /// Relative offset of a batch at or before the first record with a timestamp of at least `timestamp`:
    /// the last entry whose timestamp is strictly smaller (every record before it is smaller too).
    pub(crate) fn lookup(&self, timestamp: i64) -> u32 {
        let i = self.entries.partition_point(|&(t, _)| t < timestamp);
        if i == 0 {
            0
        } else {
            self.entries[i - 1].1
        }
    }

    pub(crate) fn truncate_to_offset(&mut self, relative_offset: u32) {
        let i = self.entries.partition_point(|&(_, o)| o < relative_offset);
        self.entries.truncate(i);
    }

    pub(crate) fn last(&self) -> Option<(i64, u32)> {
        self.entries.last().copied()
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.entries.len() * 12);
        for &(t, o) in &self.entries {
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&o.to_be_bytes());
        }
        out
    }

    /// Parses a time index file; `None` when malformed or when an entry points at or past `next_relative`.
    pub(crate) fn decode(bytes: &[u8], next_relative: u32) -> Option<Self> {
        if !bytes.len().is_multiple_of(12) {
            return None;
        }
        let mut index = TimeIndex::default();
        for chunk in bytes.chunks_exact(12) {
            let mut t = [0u8; 8];
            t.copy_from_slice(&chunk[..8]);
            let t = i64::from_be_bytes(t);
            let o = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
            if o >= next_relative {
                return None;
            }
            if let Some((lt, lo)) = index.last() {
                if t <= lt || o < lo {
                    return None;
                }
            }
            index.entries.push((t, o));
        }
        Some(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_lookup_lands_at_or_before_the_target() {
        let mut index = OffsetIndex::default();
        index.push(0, 0);
        index.push(10, 4096);
        index.push(20, 8192);
        assert_eq!(index.lookup(0), 0);
        assert_eq!(index.lookup(9), 0);
        assert_eq!(index.lookup(10), 4096);
        assert_eq!(index.lookup(25), 8192);
        let decoded = OffsetIndex::decode(&index.encode(), 10_000).unwrap();
        assert_eq!(decoded.entries, index.entries);
        assert!(
            OffsetIndex::decode(&index.encode(), 8192).is_none(),
            "entry past the log end"
        );
        assert!(
            OffsetIndex::decode(&index.encode()[..7], 10_000).is_none(),
            "partial entry"
        );
    }

    #[test]
    fn time_lookup_uses_the_last_entry_strictly_below_the_target() {
        let mut index = TimeIndex::default();
        index.push(100, 0);
        index.push(100, 5); // not larger: ignored
        index.push(200, 10);
        assert_eq!(index.lookup(100), 0);
        assert_eq!(index.lookup(150), 0);
        assert_eq!(index.lookup(201), 10);
        let decoded = TimeIndex::decode(&index.encode(), 11).unwrap();
        assert_eq!(decoded.entries, index.entries);
        assert!(TimeIndex::decode(&index.encode(), 10).is_none());
    }
}
