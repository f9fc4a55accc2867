//! Integrity checks and in-place rewrites of `nerve_wire::batch`.

use nerve_wire::batch::{
    check_integrity, compute_crc, peek_total_len, set_base_offset, set_log_append_time,
    set_partition_leader_epoch, split_and_validate, validate,
};
use nerve_wire::records::{build_batch, decode_records};
use nerve_wire::{BatchBuilder, Compression, TimestampType, WireError};

const T0: i64 = 1_700_000_000_000;

fn sample(values: &[&str]) -> Vec<u8> {
    build_batch(Compression::None, T0, values).unwrap()
}

fn fix_crc(batch: &mut [u8]) {
    let crc = compute_crc(batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

#[test]
fn valid_batch_passes_check_integrity_and_validate() {
    let batch = sample(&["a", "b", "c"]);
    let header = validate(&batch).unwrap();
    assert_eq!(check_integrity(&batch), Ok(header));
    assert_eq!((header.record_count, header.last_offset_delta), (3, 2));
    assert_eq!(header.total_len(), batch.len());
    assert_eq!(peek_total_len(&batch), Some(Ok(batch.len())));
}

#[test]
fn wrong_crc_is_crc_mismatch() {
    let mut batch = sample(&["a"]);
    let last = batch.len() - 1;
    batch[last] ^= 0x01;
    assert!(matches!(
        check_integrity(&batch),
        Err(WireError::CrcMismatch { .. })
    ));
    assert!(matches!(
        validate(&batch),
        Err(WireError::CrcMismatch { .. })
    ));
}

#[test]
fn magic_0_and_1_are_unsupported() {
    for magic in [0u8, 1] {
        let mut batch = sample(&["a"]);
        batch[16] = magic;
        assert_eq!(
            check_integrity(&batch),
            Err(WireError::UnsupportedMagic(magic as i8))
        );
        // Old message sets are shorter than a v2 header; they still get the precise error.
        assert_eq!(
            check_integrity(&batch[..30]),
            Err(WireError::UnsupportedMagic(magic as i8))
        );
    }
}

#[test]
fn length_that_lies_is_length_mismatch() {
    let batch = sample(&["a"]);
    for delta in [-1i32, 1] {
        let mut lying = batch.clone();
        let length = i32::from_be_bytes(lying[8..12].try_into().unwrap()) + delta;
        lying[8..12].copy_from_slice(&length.to_be_bytes());
        assert!(matches!(
            check_integrity(&lying),
            Err(WireError::LengthMismatch { .. })
        ));
    }
    let mut trailing = batch;
    trailing.push(0);
    assert!(matches!(
        check_integrity(&trailing),
        Err(WireError::LengthMismatch { .. })
    ));
}

#[test]
fn length_below_the_header_is_invalid_length() {
    let mut batch = sample(&["a"]);
    batch[8..12].copy_from_slice(&(-1i32).to_be_bytes());
    assert_eq!(check_integrity(&batch), Err(WireError::InvalidLength(-1)));
    assert_eq!(
        peek_total_len(&batch),
        Some(Err(WireError::InvalidLength(-1)))
    );
    assert_eq!(peek_total_len(&batch[..11]), None);
}

#[test]
fn zero_records_is_no_records() {
    let batch = BatchBuilder::new(T0).build().unwrap();
    assert!(check_integrity(&batch).is_ok());
    assert_eq!(validate(&batch), Err(WireError::NoRecords));
}

#[test]
fn record_count_disagreeing_with_offset_span_is_inconsistent() {
    let mut builder = BatchBuilder::new(T0);
    builder.push(T0, None, Some(b"a"), Vec::new());
    builder.last_offset_delta = Some(5);
    let batch = builder.build().unwrap();
    assert!(check_integrity(&batch).is_ok());
    assert_eq!(
        validate(&batch),
        Err(WireError::InconsistentCount {
            record_count: 1,
            last_offset_delta: 5
        })
    );
}

#[test]
fn unknown_compression_is_rejected() {
    let mut batch = sample(&["a"]);
    batch[22] = 5;
    fix_crc(&mut batch);
    assert_eq!(
        check_integrity(&batch),
        Err(WireError::UnknownCompression(5))
    );
}

#[test]
fn split_and_validate_finds_each_of_two_concatenated_batches() {
    let first = sample(&["a", "b"]);
    let second = build_batch(Compression::Zstd, T0, &["c"]).unwrap();
    let both = [first.as_slice(), &second].concat();
    let split = split_and_validate(&both).unwrap();
    assert_eq!(split.len(), 2);
    assert_eq!(split[0].1, 0..first.len());
    assert_eq!(split[1].1, first.len()..both.len());
    assert_eq!((split[0].0.record_count, split[1].0.record_count), (2, 1));
}

#[test]
fn split_and_validate_rejects_a_truncated_trailing_batch() {
    let batch = sample(&["a"]);
    for cut in [5, 40, batch.len() - 1] {
        let set = [batch.as_slice(), &batch[..cut]].concat();
        assert!(
            matches!(split_and_validate(&set), Err(WireError::Truncated { .. })),
            "cut at {cut}"
        );
    }
}

#[test]
fn split_and_validate_rejects_an_empty_record_set() {
    assert_eq!(split_and_validate(&[]), Err(WireError::NoRecords));
}

#[test]
fn set_base_offset_keeps_the_crc_valid() {
    let mut batch = sample(&["a", "b"]);
    set_base_offset(&mut batch, 1_234_567);
    let header = validate(&batch).unwrap();
    assert_eq!(
        (header.base_offset, header.last_offset()),
        (1_234_567, 1_234_568)
    );
}

#[test]
fn set_partition_leader_epoch_keeps_the_crc_valid() {
    let mut batch = sample(&["a"]);
    set_partition_leader_epoch(&mut batch, 17);
    assert_eq!(validate(&batch).unwrap().partition_leader_epoch, 17);
}

#[test]
fn set_log_append_time_recomputes_the_crc_and_switches_the_timestamp_type() {
    let mut batch = build_batch(Compression::Gzip, T0, &["a", "b"]).unwrap();
    set_log_append_time(&mut batch, T0 + 99);
    let header = validate(&batch).unwrap();
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(header.max_timestamp, T0 + 99);
    assert_eq!(header.compression(), Ok(Compression::Gzip));
    let (header, records) = decode_records(&batch, 1 << 20).unwrap();
    assert!(records.iter().all(|r| r.timestamp(&header) == T0 + 99));
}

#[test]
fn last_sequence_wraps_at_i32_max() {
    let mut builder = BatchBuilder::new(T0);
    builder.producer_id = 1;
    builder.producer_epoch = 0;
    builder.base_sequence = i32::MAX;
    builder
        .push(T0, None, None, Vec::new())
        .push(T0, None, None, Vec::new());
    let header = validate(&builder.build().unwrap()).unwrap();
    assert!(header.has_producer_id());
    assert_eq!(header.last_sequence(), 0);
}
