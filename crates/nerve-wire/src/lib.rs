//! Kafka wire formats for Nerve.
//!
//! - [`batch`]: the RecordBatch v2 header: parse, integrity checks (length, magic, CRC-32C), and the in-place
//!   rewrites a broker makes on append (base offset, leader epoch, log-append time).
//! - [`records`]: the records inside a batch: decode (decompressing as needed) and build new batches, which
//!   compaction needs.
//! - [`compression`]: gzip, snappy, lz4 and zstd exactly as Kafka clients frame them.
//! - [`frame`]: request/response framing with a size limit, request headers, response headers.
//!
//! Nothing here does I/O; the storage engine and the broker build on it.

pub mod batch;
pub mod compression;
pub mod frame;
pub mod records;
mod varint;

pub use batch::{BatchHeader, TimestampType, BATCH_HEADER_LEN, LOG_OVERHEAD, MAGIC_V2};
pub use compression::Compression;
pub use frame::{FrameDecoder, FrameError, RequestFrame};
pub use records::{BatchBuilder, Record, RecordHeader};

/// Why bytes are not a valid Kafka batch or record.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("truncated input: {needed} bytes needed, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("invalid batch length {0}")]
    InvalidLength(i32),
    #[error("batch declares {declared} bytes but {actual} are given")]
    LengthMismatch { declared: usize, actual: usize },
    #[error("unsupported record batch magic {0}: only v2 batches are accepted")]
    UnsupportedMagic(i8),
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("batch holds no records")]
    NoRecords,
    #[error("record count {record_count} does not match last offset delta {last_offset_delta}")]
    InconsistentCount {
        record_count: i32,
        last_offset_delta: i32,
    },
    #[error("unknown compression codec {0}")]
    UnknownCompression(u8),
    #[error("{codec} data is corrupt: {reason}")]
    Decompress { codec: &'static str, reason: String },
    #[error("{codec} compression failed: {reason}")]
    Compress { codec: &'static str, reason: String },
    #[error("decompressed data exceeds the limit of {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("varint is longer than {max_bytes} bytes")]
    VarintTooLong { max_bytes: usize },
    #[error("malformed record {index}: {reason}")]
    InvalidRecord { index: usize, reason: String },
}
