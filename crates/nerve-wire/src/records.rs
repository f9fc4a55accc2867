//! The records inside a RecordBatch v2: decoding them and building new batches.
//!
//! Record layout (varints are zigzag, see Kafka's `DefaultRecord`):
//! length varint, attributes i8, timestamp delta varlong, offset delta varint, key length varint and key,
//! value length varint and value (length -1 for null), header count varint, then per header a key length
//! varint and key, and a value length varint and value (-1 for null).

use bytes::{Buf, BufMut, Bytes};

use crate::batch::{
    self, BatchHeader, TimestampType, BATCH_HEADER_LEN, CONTROL_BIT, LOG_OVERHEAD, MAGIC_V2,
    TIMESTAMP_TYPE_BIT, TRANSACTIONAL_BIT,
};
use crate::compression::Compression;
use crate::varint::{read_varint, read_varlong, write_varint, write_varlong};
use crate::WireError;

/// The smallest encoded record: seven one-byte fields (length, attributes, timestamp delta, offset delta,
/// key length, value length, header count). Bounds capacity hints taken from the input.
const MIN_RECORD_LEN: usize = 7;
/// The smallest encoded header: key length and value length.
const MIN_HEADER_LEN: usize = 2;

/// A record header. Kafka does not allow a null header key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeader {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

/// One record of a batch, as stored: offset and timestamp are deltas from the batch header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Unused by Kafka so far; 0 when written.
    pub attributes: i8,
    pub timestamp_delta: i64,
    pub offset_delta: i32,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

impl Record {
    /// The record's offset in the partition.
    pub fn offset(&self, header: &BatchHeader) -> i64 {
        header
            .base_offset
            .wrapping_add(i64::from(self.offset_delta))
    }

    /// The record's timestamp; in a `LogAppendTime` batch every record carries the batch's max timestamp.
    pub fn timestamp(&self, header: &BatchHeader) -> i64 {
        match header.timestamp_type() {
            TimestampType::LogAppendTime => header.max_timestamp,
            TimestampType::CreateTime => header.base_timestamp.wrapping_add(self.timestamp_delta),
        }
    }
}

/// Decodes every record of a batch (whose integrity the caller has checked with
/// [`batch::check_integrity`]), decompressing with a limit of `max_decompressed` bytes.
///
/// Fails with [`WireError::InvalidRecord`] for a record whose length prefix lies, a negative length other
/// than -1 for null, bytes left over inside a record, or fewer or more records than the header's count.
pub fn decode_records(
    batch: &[u8],
    max_decompressed: usize,
) -> Result<(BatchHeader, Vec<Record>), WireError> {
    let header = BatchHeader::parse(batch)?;
    if header.magic != MAGIC_V2 {
        return Err(WireError::UnsupportedMagic(header.magic));
    }
    if header.total_len() != batch.len() {
        return Err(WireError::LengthMismatch {
            declared: header.total_len(),
            actual: batch.len(),
        });
    }
    let count = usize::try_from(header.record_count).map_err(|_| WireError::InvalidRecord {
        index: 0,
        reason: format!("negative record count {}", header.record_count),
    })?;
    let area = &batch[BATCH_HEADER_LEN..];
    // Compaction may leave a batch with no records and no (compressed) payload at all.
    if count == 0 && area.is_empty() {
        return Ok((header, Vec::new()));
    }
    let mut data = match header.compression()? {
        Compression::None => Bytes::copy_from_slice(area),
        codec => Bytes::from(codec.decompress(area, max_decompressed)?),
    };
    let invalid = |index, reason| WireError::InvalidRecord { index, reason };
    let mut records = Vec::with_capacity(count.min(data.len() / MIN_RECORD_LEN));
    for index in 0..count {
        if data.is_empty() {
            return Err(invalid(
                index,
                format!("data ends after {index} of {count} records"),
            ));
        }
        records.push(decode_record(&mut data).map_err(|reason| invalid(index, reason))?);
    }
    if !data.is_empty() {
        let reason = format!("{} bytes follow the last of {count} records", data.len());
        return Err(invalid(count, reason));
    }
    Ok((header, records))
}

fn decode_record(data: &mut Bytes) -> Result<Record, String> {
    let len = take_varint(data)?;
    let len = usize::try_from(len).map_err(|_| format!("negative record length {len}"))?;
    let mut body = take_bytes(data, len, "record")?;
    let record = Record {
        attributes: take_i8(&mut body)?,
        timestamp_delta: take_varlong(&mut body)?,
        offset_delta: take_varint(&mut body)?,
        key: take_nullable(&mut body, "key")?,
        value: take_nullable(&mut body, "value")?,
        headers: take_headers(&mut body)?,
    };
    if !body.is_empty() {
        return Err(format!("{} bytes left over after the headers", body.len()));
    }
    Ok(record)
}

fn take_headers(body: &mut Bytes) -> Result<Vec<RecordHeader>, String> {
    let count = take_varint(body)?;
    let count = usize::try_from(count).map_err(|_| format!("negative header count {count}"))?;
    let mut headers = Vec::with_capacity(count.min(body.len() / MIN_HEADER_LEN));
    for _ in 0..count {
        let key_len = take_varint(body)?;
        let key_len = usize::try_from(key_len)
            .map_err(|_| format!("negative header key length {key_len}"))?;
        headers.push(RecordHeader {
            key: take_bytes(body, key_len, "header key")?,
            value: take_nullable(body, "header value")?,
        });
    }
    Ok(headers)
}

fn take_i8(body: &mut Bytes) -> Result<i8, String> {
    if body.is_empty() {
        return Err("record ends before its attributes".into());
    }
    Ok(body.get_i8())
}

fn take_varint(data: &mut Bytes) -> Result<i32, String> {
    let mut rest = &data[..];
    let value = read_varint(&mut rest).map_err(|e| e.to_string())?;
    data.advance(data.len() - rest.len());
    Ok(value)
}

fn take_varlong(data: &mut Bytes) -> Result<i64, String> {
    let mut rest = &data[..];
    let value = read_varlong(&mut rest).map_err(|e| e.to_string())?;
    data.advance(data.len() - rest.len());
    Ok(value)
}

fn take_bytes(data: &mut Bytes, len: usize, what: &str) -> Result<Bytes, String> {
    if len > data.len() {
        return Err(format!(
            "{what} length {len} exceeds the {} bytes left",
            data.len()
        ));
    }
    Ok(data.split_to(len))
}

fn take_nullable(data: &mut Bytes, what: &str) -> Result<Option<Bytes>, String> {
    match take_varint(data)? {
        -1 => Ok(None),
        len => match usize::try_from(len) {
            Ok(len) => take_bytes(data, len, what).map(Some),
            Err(_) => Err(format!("invalid {what} length {len}")),
        },
    }
}

/// Builds a new v2 batch. Used by compaction (which rewrites a batch keeping only some records, keeping each
/// record's offset delta and the original base offset and last offset delta) and by tests and benchmarks.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    pub base_offset: i64,
    pub partition_leader_epoch: i32,
    pub compression: Compression,
    pub timestamp_type: TimestampType,
    pub transactional: bool,
    pub control: bool,
    pub base_timestamp: i64,
    /// For `LogAppendTime` batches the max timestamp to store; for `CreateTime` it is computed from the
    /// records (this value is only used when there are none).
    pub max_timestamp: Option<i64>,
    /// -1 when none.
    pub producer_id: i64,
    /// -1 when none.
    pub producer_epoch: i16,
    /// -1 when none.
    pub base_sequence: i32,
    /// `None`: the last record's offset delta (0 without records). Compaction passes the original batch's
    /// value so that the batch keeps its offset span.
    pub last_offset_delta: Option<i32>,
    pub records: Vec<Record>,
}

impl BatchBuilder {
    /// An empty uncompressed `CreateTime` batch at offset 0 without producer id.
    pub fn new(base_timestamp: i64) -> Self {
        Self {
            base_offset: 0,
            partition_leader_epoch: 0,
            compression: Compression::None,
            timestamp_type: TimestampType::CreateTime,
            transactional: false,
            control: false,
            base_timestamp,
            max_timestamp: None,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            last_offset_delta: None,
            records: Vec::new(),
        }
    }

    /// Appends a record with the next consecutive offset delta.
    pub fn push(
        &mut self,
        timestamp: i64,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: Vec<RecordHeader>,
    ) -> &mut Self {
        let offset_delta = self
            .records
            .last()
            .map_or(0, |r| r.offset_delta.saturating_add(1));
        self.records.push(Record {
            attributes: 0,
            timestamp_delta: timestamp.wrapping_sub(self.base_timestamp),
            offset_delta,
            key: key.map(Bytes::copy_from_slice),
            value: value.map(Bytes::copy_from_slice),
            headers,
        });
        self
    }

    /// Encodes the records, compresses them and fills in the header, record count, max timestamp, batch
    /// length and CRC.
    pub fn build(&self) -> Result<Vec<u8>, WireError> {
        let too_large = |what: &str| WireError::InvalidRecord {
            index: self.records.len(),
            reason: format!("{what} exceeds i32::MAX"),
        };
        let mut out = vec![0; BATCH_HEADER_LEN];
        match self.compression {
            Compression::None => self.encode_records(&mut out)?,
            codec => {
                let mut raw = Vec::new();
                self.encode_records(&mut raw)?;
                out.extend_from_slice(&codec.compress(&raw)?);
            }
        }
        let batch_length =
            i32::try_from(out.len() - LOG_OVERHEAD).map_err(|_| too_large("batch length"))?;
        let record_count =
            i32::try_from(self.records.len()).map_err(|_| too_large("record count"))?;

        let mut attributes = i16::from(self.compression.id());
        if self.timestamp_type == TimestampType::LogAppendTime {
            attributes |= TIMESTAMP_TYPE_BIT;
        }
        if self.transactional {
            attributes |= TRANSACTIONAL_BIT;
        }
        if self.control {
            attributes |= CONTROL_BIT;
        }
        let computed_max = self
            .records
            .iter()
            .map(|r| self.base_timestamp.wrapping_add(r.timestamp_delta))
            .max();
        let max_timestamp = match self.timestamp_type {
            TimestampType::LogAppendTime => self.max_timestamp.or(computed_max),
            TimestampType::CreateTime => computed_max.or(self.max_timestamp),
        };
        let last_offset_delta = self
            .last_offset_delta
            .or_else(|| self.records.last().map(|r| r.offset_delta))
            .unwrap_or(0);

        let mut header = &mut out[..BATCH_HEADER_LEN];
        header.put_i64(self.base_offset);
        header.put_i32(batch_length);
        header.put_i32(self.partition_leader_epoch);
        header.put_i8(MAGIC_V2);
        header.put_u32(0); // the CRC, which covers everything after it and so comes last
        header.put_i16(attributes);
        header.put_i32(last_offset_delta);
        header.put_i64(self.base_timestamp);
        header.put_i64(max_timestamp.unwrap_or(self.base_timestamp));
        header.put_i64(self.producer_id);
        header.put_i16(self.producer_epoch);
        header.put_i32(self.base_sequence);
        header.put_i32(record_count);
        batch::write_crc(&mut out);
        Ok(out)
    }

    fn encode_records(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let mut body = Vec::new();
        for (index, record) in self.records.iter().enumerate() {
            encode_record(record, out, &mut body)
                .map_err(|reason| WireError::InvalidRecord { index, reason })?;
        }
        Ok(())
    }
}

/// `body` is scratch space, reused across records, because the length prefix needs the body's size.
fn encode_record(record: &Record, out: &mut Vec<u8>, body: &mut Vec<u8>) -> Result<(), String> {
    body.clear();
    body.push(record.attributes as u8);
    write_varlong(body, record.timestamp_delta);
    write_varint(body, record.offset_delta);
    put_nullable(body, record.key.as_deref(), "key")?;
    put_nullable(body, record.value.as_deref(), "value")?;
    write_varint(body, len_i32(record.headers.len(), "header count")?);
    for header in &record.headers {
        put_nullable(body, Some(&header.key), "header key")?;
        put_nullable(body, header.value.as_deref(), "header value")?;
    }
    write_varint(out, len_i32(body.len(), "record")?);
    out.extend_from_slice(body);
    Ok(())
}

fn put_nullable(out: &mut Vec<u8>, data: Option<&[u8]>, what: &str) -> Result<(), String> {
    match data {
        None => write_varint(out, -1),
        Some(data) => {
            write_varint(out, len_i32(data.len(), what)?);
            out.extend_from_slice(data);
        }
    }
    Ok(())
}

fn len_i32(len: usize, what: &str) -> Result<i32, String> {
    i32::try_from(len).map_err(|_| format!("{what} length {len} exceeds i32::MAX"))
}

/// Convenience for tests and benchmarks: one batch of `values` (no keys, no headers) at consecutive offsets
/// from 0, all with timestamp `timestamp`, without producer id.
pub fn build_batch<V: AsRef<[u8]>>(
    compression: Compression,
    timestamp: i64,
    values: &[V],
) -> Result<Vec<u8>, WireError> {
    let mut builder = BatchBuilder::new(timestamp);
    builder.compression = compression;
    for value in values {
        builder.push(timestamp, None, Some(value.as_ref()), Vec::new());
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: i64 = 1_700_000_000_000;
    const LIMIT: usize = 1 << 20;

    fn header(key: &str, value: Option<&str>) -> RecordHeader {
        RecordHeader {
            key: Bytes::copy_from_slice(key.as_bytes()),
            value: value.map(|v| Bytes::copy_from_slice(v.as_bytes())),
        }
    }

    fn varied_builder(compression: Compression) -> BatchBuilder {
        let mut builder = BatchBuilder::new(T0);
        builder.base_offset = 1000;
        builder.compression = compression;
        builder
            .push(
                T0,
                Some(b"key"),
                Some(b"value"),
                vec![header("h1", Some("v1")), header("h2", None)],
            )
            .push(T0 + 7, None, Some(b"null key"), Vec::new())
            .push(T0 - 3, Some(b"tombstone"), None, Vec::new())
            .push(T0 + 2, Some(b""), Some(b""), vec![header("", Some(""))]);
        builder
    }

    /// Turns a valid batch into one with the given record count and records area, with a correct CRC.
    fn with_records_area(record_count: i32, area: &[u8]) -> Vec<u8> {
        let mut batch =
            build_batch(Compression::None, T0, &["x"]).unwrap()[..BATCH_HEADER_LEN].to_vec();
        batch.extend_from_slice(area);
        let batch_length = (batch.len() - LOG_OVERHEAD) as i32;
        batch[8..12].copy_from_slice(&batch_length.to_be_bytes());
        batch[57..61].copy_from_slice(&record_count.to_be_bytes());
        batch::write_crc(&mut batch);
        batch
    }

    fn assert_invalid_record(batch: &[u8], expected_index: usize) {
        match decode_records(batch, LIMIT) {
            Err(WireError::InvalidRecord { index, .. }) => assert_eq!(index, expected_index),
            other => panic!("expected InvalidRecord at {expected_index}, got {other:?}"),
        }
    }

    #[test]
    fn built_batches_validate_and_decode_to_the_same_records_for_every_codec() {
        for codec in Compression::ALL {
            let builder = varied_builder(codec);
            let bytes = builder.build().unwrap();
            let header = batch::validate(&bytes).unwrap();
            assert_eq!(header.compression(), Ok(codec));
            assert_eq!(header.record_count, 4);
            assert_eq!(header.last_offset_delta, 3);
            assert_eq!(header.base_timestamp, T0);
            assert_eq!(header.max_timestamp, T0 + 7);
            let (decoded_header, records) = decode_records(&bytes, LIMIT).unwrap();
            assert_eq!(decoded_header, header);
            assert_eq!(records, builder.records, "{codec:?}");
        }
    }

    #[test]
    fn offsets_and_create_timestamps_come_from_the_header_and_deltas() {
        let bytes = varied_builder(Compression::None).build().unwrap();
        let (header, records) = decode_records(&bytes, LIMIT).unwrap();
        let offsets: Vec<_> = records.iter().map(|r| r.offset(&header)).collect();
        let timestamps: Vec<_> = records.iter().map(|r| r.timestamp(&header)).collect();
        assert_eq!(offsets, [1000, 1001, 1002, 1003]);
        assert_eq!(timestamps, [T0, T0 + 7, T0 - 3, T0 + 2]);
    }

    #[test]
    fn log_append_time_gives_every_record_the_max_timestamp() {
        let mut builder = varied_builder(Compression::Lz4);
        builder.timestamp_type = TimestampType::LogAppendTime;
        builder.max_timestamp = Some(T0 + 500);
        let bytes = builder.build().unwrap();
        let (header, records) = decode_records(&bytes, LIMIT).unwrap();
        assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
        assert!(records.iter().all(|r| r.timestamp(&header) == T0 + 500));
    }

    #[test]
    fn builder_sets_attribute_flags_and_producer_fields() {
        let mut builder = varied_builder(Compression::Zstd);
        builder.transactional = true;
        builder.control = true;
        builder.producer_id = 77;
        builder.producer_epoch = 3;
        builder.base_sequence = 10;
        builder.partition_leader_epoch = 9;
        let header = batch::validate(&builder.build().unwrap()).unwrap();
        assert!(header.is_transactional() && header.is_control());
        assert_eq!(header.timestamp_type(), TimestampType::CreateTime);
        assert_eq!(header.attributes, 0x34);
        assert_eq!((header.producer_id, header.producer_epoch), (77, 3));
        assert_eq!((header.base_sequence, header.last_sequence()), (10, 13));
        assert_eq!(header.partition_leader_epoch, 9);
    }

    #[test]
    fn compacted_batch_keeps_its_offset_span() {
        let original = varied_builder(Compression::Gzip);
        let mut compacted = original.clone();
        compacted.records.retain(|r| r.offset_delta == 1);
        compacted.last_offset_delta = Some(3);
        let bytes = compacted.build().unwrap();
        let header = batch::check_integrity(&bytes).unwrap();
        assert_eq!(
            (
                header.record_count,
                header.last_offset(),
                header.max_timestamp
            ),
            (1, 1003, T0 + 7)
        );
        let (header, records) = decode_records(&bytes, LIMIT).unwrap();
        assert_eq!(records, compacted.records);
        assert_eq!(records[0].offset(&header), 1001);
    }

    #[test]
    fn batch_without_records_decodes_to_nothing() {
        for codec in Compression::ALL {
            let mut builder = BatchBuilder::new(T0);
            builder.compression = codec;
            builder.last_offset_delta = Some(4);
            let bytes = builder.build().unwrap();
            let header = batch::check_integrity(&bytes).unwrap();
            assert_eq!((header.record_count, header.max_timestamp), (0, T0));
            assert_eq!(decode_records(&bytes, LIMIT).unwrap().1, Vec::new());
        }
    }

    #[test]
    fn decode_honours_the_decompression_limit() {
        let bytes = build_batch(Compression::Snappy, T0, &[vec![0u8; 100_000]]).unwrap();
        assert_eq!(
            decode_records(&bytes, 50_000),
            Err(WireError::DecompressedTooLarge { limit: 50_000 })
        );
    }

    #[test]
    fn decode_rejects_what_is_not_one_whole_v2_batch() {
        let mut bytes = build_batch(Compression::None, T0, &["a"]).unwrap();
        assert!(matches!(
            decode_records(&bytes[..40], LIMIT),
            Err(WireError::Truncated { .. })
        ));
        assert!(matches!(
            decode_records(&bytes[..bytes.len() - 1], LIMIT),
            Err(WireError::LengthMismatch { .. })
        ));
        bytes[16] = 1;
        assert_eq!(
            decode_records(&bytes, LIMIT),
            Err(WireError::UnsupportedMagic(1))
        );
    }

    #[test]
    fn record_length_beyond_the_data_is_invalid() {
        // Claims 20 bytes; 4 follow.
        assert_invalid_record(&with_records_area(1, &[0x28, 0, 0, 0, 1]), 0);
    }

    #[test]
    fn record_length_shorter_than_the_fields_is_invalid() {
        // The 3-byte body ends inside the key length.
        assert_invalid_record(&with_records_area(1, &[0x06, 0, 0, 0, 0x01, 0x01, 0]), 0);
    }

    #[test]
    fn trailing_bytes_inside_a_record_are_invalid() {
        assert_invalid_record(
            &with_records_area(1, &[0x10, 0, 0, 0, 1, 1, 0, 0xaa, 0xbb]),
            0,
        );
    }

    #[test]
    fn record_count_above_the_records_present_is_invalid() {
        let one = [0x0c, 0, 0, 0, 1, 1, 0];
        assert_invalid_record(&with_records_area(2, &one), 1);
        assert_invalid_record(&with_records_area(i32::MAX, &one), 1);
    }

    #[test]
    fn record_count_below_the_records_present_is_invalid() {
        let two = [0x0c, 0, 0, 0, 1, 1, 0, 0x0c, 0, 0, 2, 1, 1, 0];
        assert_invalid_record(&with_records_area(1, &two), 1);
    }

    #[test]
    fn negative_record_count_is_invalid() {
        assert_invalid_record(&with_records_area(-1, &[]), 0);
    }

    #[test]
    fn negative_lengths_other_than_null_are_invalid() {
        // key length -2
        assert_invalid_record(&with_records_area(1, &[0x0c, 0, 0, 0, 0x03, 1, 0]), 0);
        // value length -2
        assert_invalid_record(&with_records_area(1, &[0x0c, 0, 0, 0, 1, 0x03, 0]), 0);
        // header count -1
        assert_invalid_record(&with_records_area(1, &[0x0c, 0, 0, 0, 1, 1, 0x01]), 0);
        // header key length -1 (a header key cannot be null)
        assert_invalid_record(
            &with_records_area(1, &[0x10, 0, 0, 0, 1, 1, 0x02, 0x01, 0x01]),
            0,
        );
        // record length -1
        assert_invalid_record(&with_records_area(1, &[0x01]), 0);
    }

    #[test]
    fn over_long_varint_in_a_record_is_invalid() {
        let area = [
            0x16, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0,
        ];
        assert_invalid_record(&with_records_area(1, &area), 0);
    }

    #[test]
    fn corrupt_compressed_records_are_a_decompress_error() {
        let mut area = Compression::Gzip
            .compress(&[0x0c, 0, 0, 0, 1, 1, 0])
            .unwrap();
        area.truncate(area.len() - 3);
        let mut bytes = with_records_area(1, &area);
        bytes[22] = Compression::Gzip.id();
        batch::write_crc(&mut bytes);
        assert!(matches!(
            decode_records(&bytes, LIMIT),
            Err(WireError::Decompress { .. })
        ));
    }

    fn any_record_fields() -> impl Strategy<Value = RecordFields> {
        let bytes = || prop::option::of(prop::collection::vec(any::<u8>(), 0..40));
        let headers =
            prop::collection::vec((prop::collection::vec(any::<u8>(), 0..10), bytes()), 0..3);
        (any::<i64>(), bytes(), bytes(), headers)
    }

    type RecordFields = (
        i64,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Vec<(Vec<u8>, Option<Vec<u8>>)>,
    );

    proptest! {
        #[test]
        fn any_records_round_trip(
            codec in prop::sample::select(Compression::ALL.to_vec()),
            fields in prop::collection::vec(any_record_fields(), 1..20),
        ) {
            let mut builder = BatchBuilder::new(T0);
            builder.compression = codec;
            for (timestamp, key, value, headers) in fields {
                let headers = headers
                    .into_iter()
                    .map(|(k, v)| RecordHeader { key: k.into(), value: v.map(Bytes::from) })
                    .collect();
                builder.push(timestamp, key.as_deref(), value.as_deref(), headers);
            }
            let bytes = builder.build().unwrap();
            prop_assert!(batch::validate(&bytes).is_ok());
            let (header, records) = decode_records(&bytes, LIMIT).unwrap();
            prop_assert_eq!(&records, &builder.records);
            let max = records.iter().map(|r| r.timestamp(&header)).max();
            prop_assert_eq!(Some(header.max_timestamp), max);
        }

        #[test]
        fn mutated_record_bytes_never_panic(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
            truncate in any::<prop::sample::Index>(),
            count_delta in -2i32..3,
        ) {
            let bytes = varied_builder(Compression::None).build().unwrap();
            let mut area = bytes[BATCH_HEADER_LEN..].to_vec();
            for (at, value) in edits {
                let i = at.index(area.len());
                area[i] = value;
            }
            area.truncate(area.len() - truncate.index(4));
            let batch = with_records_area(4 + count_delta, &area);
            match decode_records(&batch, LIMIT) {
                Ok((_, records)) => prop_assert_eq!(records.len() as i32, 4 + count_delta),
                Err(e) => prop_assert!(matches!(e, WireError::InvalidRecord { .. }), "{e:?}"),
            }
        }

        #[test]
        fn arbitrary_record_areas_never_panic(
            area in prop::collection::vec(any::<u8>(), 0..200),
            record_count in -1i32..10,
        ) {
            let _ = decode_records(&with_records_area(record_count, &area), LIMIT);
        }
    }
}
