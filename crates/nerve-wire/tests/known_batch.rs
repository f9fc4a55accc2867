//! A batch written by hand from the RecordBatch v2 layout in the Kafka protocol guide, compared byte for byte
//! with what `BatchBuilder` produces.

use bytes::Bytes;
use nerve_wire::batch;
use nerve_wire::records::decode_records;
use nerve_wire::{BatchBuilder, RecordHeader};

const T0: i64 = 1_700_000_000_000;

fn hand_written_batch() -> Vec<u8> {
    let record: &[u8] = &[
        0x1c, // record length: varint 14
        0x00, // attributes
        0x0a, // timestamp delta: varlong 5
        0x00, // offset delta: varint 0
        0x02, b'k', // key length 1, key
        0x02, b'v', // value length 1, value
        0x02, // header count 1
        0x04, b'h', b'k', // header key length 2, key
        0x04, b'h', b'v', // header value length 2, value
    ];
    let after_crc = [
        &0i16.to_be_bytes()[..], // attributes: no compression, CreateTime
        &0i32.to_be_bytes(),     // last offset delta
        &T0.to_be_bytes(),       // base timestamp
        &(T0 + 5).to_be_bytes(), // max timestamp
        &(-1i64).to_be_bytes(),  // producer id
        &(-1i16).to_be_bytes(),  // producer epoch
        &(-1i32).to_be_bytes(),  // base sequence
        &1i32.to_be_bytes(),     // record count
        record,
    ]
    .concat();
    let crc = crc32c::crc32c(&after_crc);
    let batch_length = (4 + 1 + 4 + after_crc.len()) as i32;
    assert_eq!(batch_length, 64);
    [
        &42i64.to_be_bytes()[..], // base offset
        &batch_length.to_be_bytes(),
        &0i32.to_be_bytes(), // partition leader epoch
        &[2],                // magic
        &crc.to_be_bytes(),
        &after_crc,
    ]
    .concat()
}

fn record_header(key: &str, value: &str) -> RecordHeader {
    RecordHeader {
        key: Bytes::copy_from_slice(key.as_bytes()),
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
    }
}

#[test]
fn builder_output_matches_the_hand_written_layout() {
    let mut builder = BatchBuilder::new(T0);
    builder.base_offset = 42;
    builder.push(
        T0 + 5,
        Some(b"k"),
        Some(b"v"),
        vec![record_header("hk", "hv")],
    );
    let built = builder.build().unwrap();
    let expected = hand_written_batch();
    assert_eq!(built, expected);
    assert_eq!(batch::compute_crc(&built), crc32c::crc32c(&expected[21..]));
    assert_eq!(
        batch::validate(&built).unwrap().crc,
        crc32c::crc32c(&expected[21..])
    );
}

#[test]
fn hand_written_batch_decodes() {
    let (header, records) = decode_records(&hand_written_batch(), 1 << 20).unwrap();
    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(record.offset(&header), 42);
    assert_eq!(record.timestamp(&header), T0 + 5);
    assert_eq!(record.key.as_deref(), Some(&b"k"[..]));
    assert_eq!(record.value.as_deref(), Some(&b"v"[..]));
    assert_eq!(record.headers, [record_header("hk", "hv")]);
}
