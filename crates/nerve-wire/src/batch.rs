//! The Kafka RecordBatch v2 header: parse, validate, and the few in-place rewrites a broker may make.
//!
//! Layout (big-endian), from the start of a batch:
//!
//! | bytes  | field                  | notes                                              |
//! |--------|------------------------|----------------------------------------------------|
//! | 0..8   | base offset            | rewritten by the broker on append                  |
//! | 8..12  | batch length           | bytes that follow this field                       |
//! | 12..16 | partition leader epoch | rewritten by the broker on append                  |
//! | 16     | magic                  | must be 2                                          |
//! | 17..21 | crc                    | CRC-32C of bytes 21..end                           |
//! | 21..23 | attributes             | compression, timestamp type, transactional, control|
//! | 23..27 | last offset delta      |                                                    |
//! | 27..35 | base timestamp         |                                                    |
//! | 35..43 | max timestamp          |                                                    |
//! | 43..51 | producer id            |                                                    |
//! | 51..53 | producer epoch         |                                                    |
//! | 53..57 | base sequence          |                                                    |
//! | 57..61 | record count           |                                                    |
//! | 61..   | records                | possibly compressed as one block                   |
//!
//! Because the CRC starts at the attributes, the broker can rewrite the base offset and the leader epoch
//! without touching it, which is why a log can store a batch exactly as the client sent it.

use crate::compression::Compression;
use crate::WireError;

/// Bytes before the batch length field is counted: base offset (8) and batch length (4).
pub const LOG_OVERHEAD: usize = 12;
/// Size of the whole v2 batch header, up to and including the record count.
pub const BATCH_HEADER_LEN: usize = 61;
/// The only record batch format Nerve stores.
pub const MAGIC_V2: i8 = 2;

const BASE_OFFSET: usize = 0;
const BATCH_LENGTH: usize = 8;
const LEADER_EPOCH: usize = 12;
const MAGIC: usize = 16;
const CRC: usize = 17;
const ATTRIBUTES: usize = 21;
const LAST_OFFSET_DELTA: usize = 23;
const BASE_TIMESTAMP: usize = 27;
const MAX_TIMESTAMP: usize = 35;
const PRODUCER_ID: usize = 43;
const PRODUCER_EPOCH: usize = 51;
const BASE_SEQUENCE: usize = 53;
const RECORD_COUNT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
pub(crate) const TIMESTAMP_TYPE_BIT: i16 = 0x08;
pub(crate) const TRANSACTIONAL_BIT: i16 = 0x10;
pub(crate) const CONTROL_BIT: i16 = 0x20;

/// How a batch's timestamps were assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Set by the producer.
    CreateTime,
    /// Set by the broker when it appended the batch.
    LogAppendTime,
}

/// The decoded fixed-size header of a RecordBatch v2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Bytes after the length field; the whole batch is `LOG_OVERHEAD + batch_length` bytes.
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: i8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Reads the header fields without checking anything but that the bytes are there.
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(WireError::Truncated {
                needed: BATCH_HEADER_LEN,
                available: buf.len(),
            });
        }
        Ok(Self {
            base_offset: read_i64(buf, BASE_OFFSET),
            batch_length: read_i32(buf, BATCH_LENGTH),
            partition_leader_epoch: read_i32(buf, LEADER_EPOCH),
            magic: buf[MAGIC] as i8,
            crc: read_i32(buf, CRC) as u32,
            attributes: read_i16(buf, ATTRIBUTES),
            last_offset_delta: read_i32(buf, LAST_OFFSET_DELTA),
            base_timestamp: read_i64(buf, BASE_TIMESTAMP),
            max_timestamp: read_i64(buf, MAX_TIMESTAMP),
            producer_id: read_i64(buf, PRODUCER_ID),
            producer_epoch: read_i16(buf, PRODUCER_EPOCH),
            base_sequence: read_i32(buf, BASE_SEQUENCE),
            record_count: read_i32(buf, RECORD_COUNT),
        })
    }

    /// Size in bytes of the whole batch, length prefix included.
    pub fn total_len(&self) -> usize {
        LOG_OVERHEAD + self.batch_length.max(0) as usize
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        // Wrapping like Kafka's Java arithmetic: both fields come straight from the client.
        self.base_offset
            .wrapping_add(i64::from(self.last_offset_delta))
    }

    /// Sequence number of the last record, wrapping as Kafka does at `i32::MAX`.
    pub fn last_sequence(&self) -> i32 {
        if self.base_sequence < 0 {
            return self.base_sequence;
        }
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        (last % (i64::from(i32::MAX) + 1)) as i32
    }

    pub fn compression(&self) -> Result<Compression, WireError> {
        Compression::from_id((self.attributes & COMPRESSION_MASK) as u8)
    }

    pub fn timestamp_type(&self) -> TimestampType {
        if self.attributes & TIMESTAMP_TYPE_BIT != 0 {
            TimestampType::LogAppendTime
        } else {
            TimestampType::CreateTime
        }
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }

    /// Whether the batch came from an idempotent or transactional producer.
    pub fn has_producer_id(&self) -> bool {
        self.producer_id >= 0
    }
}

/// Reads the total size of the batch that starts at `buf` from its length prefix, without trusting it
/// further than the sign. `None` when fewer than [`LOG_OVERHEAD`] bytes are there.
pub fn peek_total_len(buf: &[u8]) -> Option<Result<usize, WireError>> {
    if buf.len() < LOG_OVERHEAD {
        return None;
    }
    let len = read_i32(buf, BATCH_LENGTH);
    if len < (BATCH_HEADER_LEN - LOG_OVERHEAD) as i32 {
        return Some(Err(WireError::InvalidLength(len)));
    }
    Some(Ok(LOG_OVERHEAD + len as usize))
}

/// The CRC-32C that a batch's `crc` field must hold.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES..])
}

/// Checks that `buf` holds exactly one complete v2 batch that is intact: the length matches the buffer, the
/// magic is 2, the CRC checks and the compression codec is known. This is what a stored batch must pass
/// (compaction may leave a batch whose record count is below its offset span, so that is not checked here).
pub fn check_integrity(buf: &[u8]) -> Result<BatchHeader, WireError> {
    if buf.len() > MAGIC {
        // The magic comes before the CRC check so that an old-format batch gets the precise error.
        let magic = buf[MAGIC] as i8;
        if magic != MAGIC_V2 {
            return Err(WireError::UnsupportedMagic(magic));
        }
    }
    let header = BatchHeader::parse(buf)?;
    let total = match peek_total_len(buf) {
        Some(total) => total?,
        None => unreachable!("parse checked the header length"),
    };
    if total != buf.len() {
        return Err(WireError::LengthMismatch {
            declared: total,
            actual: buf.len(),
        });
    }
    let crc = compute_crc(buf);
    if crc != header.crc {
        return Err(WireError::CrcMismatch {
            stored: header.crc,
            computed: crc,
        });
    }
    header.compression()?;
    Ok(header)
}

/// Checks a batch as a producer sent it: [`check_integrity`], at least one record, and a record count that
/// agrees with the offset span. The records themselves are not decoded (that would mean decompressing); see
/// [`crate::records`] for that.
pub fn validate(buf: &[u8]) -> Result<BatchHeader, WireError> {
    let header = check_integrity(buf)?;
    if header.record_count <= 0 {
        return Err(WireError::NoRecords);
    }
    if header.last_offset_delta != header.record_count - 1 {
        return Err(WireError::InconsistentCount {
            record_count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Splits a buffer that holds consecutive batches (a produce request's record set) and validates each.
/// Any trailing partial batch is an error: Kafka's produce path rejects a record set that does not end on a
/// batch boundary.
pub fn split_and_validate(
    buf: &[u8],
) -> Result<Vec<(BatchHeader, std::ops::Range<usize>)>, WireError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let rest = &buf[pos..];
        let total = match peek_total_len(rest) {
            None => {
                return Err(WireError::Truncated {
                    needed: LOG_OVERHEAD,
                    available: rest.len(),
                })
            }
            Some(len) => len?,
        };
        if total > rest.len() {
            return Err(WireError::Truncated {
                needed: total,
                available: rest.len(),
            });
        }
        let header = validate(&rest[..total])?;
        out.push((header, pos..pos + total));
        pos += total;
    }
    if out.is_empty() {
        return Err(WireError::NoRecords);
    }
    Ok(out)
}

/// Rewrites the base offset in place; the CRC does not cover it.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET..BASE_OFFSET + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Rewrites the partition leader epoch in place; the CRC does not cover it.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[LEADER_EPOCH..LEADER_EPOCH + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Marks the batch as `LogAppendTime` with the broker's clock as its max timestamp, as Kafka does for topics
/// with `message.timestamp.type=LogAppendTime`. These fields are under the CRC, so it is recomputed.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    let attributes = read_i16(batch, ATTRIBUTES) | TIMESTAMP_TYPE_BIT;
    batch[ATTRIBUTES..ATTRIBUTES + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP..MAX_TIMESTAMP + 8].copy_from_slice(&timestamp_ms.to_be_bytes());
    write_crc(batch);
}

/// Stores the CRC of the batch's current contents in its `crc` field.
pub(crate) fn write_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

pub(crate) fn read_i16(buf: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([buf[at], buf[at + 1]])
}

pub(crate) fn read_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

pub(crate) fn read_i64(buf: &[u8], at: usize) -> i64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(b)
}
