//! Kafka's variable-length integers: protobuf-style base-128 with zigzag sign folding, as in Kafka's
//! `ByteUtils.readVarint` / `readVarlong`.

use crate::WireError;

const MAX_VARINT_BYTES: usize = 5;
const MAX_VARLONG_BYTES: usize = 10;

/// Reads a zigzag varint and advances `buf` past it; `buf` is untouched on error.
pub(crate) fn read_varint(buf: &mut &[u8]) -> Result<i32, WireError> {
    // Bits beyond 32 in the fifth byte are dropped, as Kafka does, so we accept exactly what it accepts.
    let raw = read_unsigned(buf, MAX_VARINT_BYTES)? as u32;
    Ok((raw >> 1) as i32 ^ -((raw & 1) as i32))
}

/// Reads a zigzag varlong and advances `buf` past it; `buf` is untouched on error.
pub(crate) fn read_varlong(buf: &mut &[u8]) -> Result<i64, WireError> {
    let raw = read_unsigned(buf, MAX_VARLONG_BYTES)?;
    Ok((raw >> 1) as i64 ^ -((raw & 1) as i64))
}

pub(crate) fn write_varint(out: &mut Vec<u8>, value: i32) {
    write_unsigned(out, ((value << 1) ^ (value >> 31)) as u32 as u64);
}

pub(crate) fn write_varlong(out: &mut Vec<u8>, value: i64) {
    write_unsigned(out, ((value << 1) ^ (value >> 63)) as u64);
}

fn read_unsigned(buf: &mut &[u8], max_bytes: usize) -> Result<u64, WireError> {
    let mut value = 0u64;
    for (i, &b) in buf.iter().enumerate() {
        if i == max_bytes {
            break;
        }
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            *buf = &buf[i + 1..];
            return Ok(value);
        }
    }
    if buf.len() >= max_bytes {
        Err(WireError::VarintTooLong { max_bytes })
    } else {
        Err(WireError::Truncated {
            needed: buf.len() + 1,
            available: buf.len(),
        })
    }
}

fn write_unsigned(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn varint_bytes(v: i32) -> Vec<u8> {
        let mut out = Vec::new();
        write_varint(&mut out, v);
        out
    }

    fn varlong_bytes(v: i64) -> Vec<u8> {
        let mut out = Vec::new();
        write_varlong(&mut out, v);
        out
    }

    #[test]
    fn varint_matches_kafka_spec_vectors() {
        let cases: &[(i32, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (-65, &[0x81, 0x01]),
            (i32::MAX, &[0xfe, 0xff, 0xff, 0xff, 0x0f]),
            (i32::MIN, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
        ];
        for &(value, bytes) in cases {
            assert_eq!(varint_bytes(value), bytes, "encoding {value}");
            let mut buf = bytes;
            assert_eq!(read_varint(&mut buf).unwrap(), value);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn varlong_matches_kafka_spec_vectors() {
        let max = [0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let min = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (-1, &[0x01]),
            (1, &[0x02]),
            (63, &[0x7e]),
            (-64, &[0x7f]),
            (64, &[0x80, 0x01]),
            (i64::MAX, &max),
            (i64::MIN, &min),
        ];
        for &(value, bytes) in cases {
            assert_eq!(varlong_bytes(value), bytes, "encoding {value}");
            let mut buf = bytes;
            assert_eq!(read_varlong(&mut buf).unwrap(), value);
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn read_leaves_following_bytes() {
        let mut buf: &[u8] = &[0x80, 0x01, 0xaa];
        assert_eq!(read_varint(&mut buf).unwrap(), 64);
        assert_eq!(buf, &[0xaa]);
    }

    #[test]
    fn truncated_encodings_are_rejected_without_consuming() {
        for bytes in [&[][..], &[0x80], &[0xff, 0xff, 0xff, 0xff]] {
            let mut buf = bytes;
            assert!(matches!(
                read_varint(&mut buf),
                Err(WireError::Truncated { .. })
            ));
            assert_eq!(buf, bytes);
            let mut buf = bytes;
            assert!(matches!(
                read_varlong(&mut buf),
                Err(WireError::Truncated { .. })
            ));
        }
        let mut buf: &[u8] = &[0xff; 9];
        assert!(matches!(
            read_varlong(&mut buf),
            Err(WireError::Truncated { .. })
        ));
    }

    #[test]
    fn over_long_encodings_are_rejected() {
        let mut buf: &[u8] = &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00];
        assert_eq!(
            read_varint(&mut buf),
            Err(WireError::VarintTooLong { max_bytes: 5 })
        );
        let mut buf: &[u8] = &[0x80; 11];
        assert_eq!(
            read_varlong(&mut buf),
            Err(WireError::VarintTooLong { max_bytes: 10 })
        );
    }

    proptest! {
        #[test]
        fn varint_round_trips(v: i32) {
            let bytes = varint_bytes(v);
            prop_assert!(bytes.len() <= MAX_VARINT_BYTES);
            let mut buf = &bytes[..];
            prop_assert_eq!(read_varint(&mut buf).unwrap(), v);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn varlong_round_trips(v: i64) {
            let bytes = varlong_bytes(v);
            prop_assert!(bytes.len() <= MAX_VARLONG_BYTES);
            let mut buf = &bytes[..];
            prop_assert_eq!(read_varlong(&mut buf).unwrap(), v);
            prop_assert!(buf.is_empty());
        }

        #[test]
        fn varint_and_varlong_agree_on_i32(v: i32) {
            prop_assert_eq!(varint_bytes(v), varlong_bytes(i64::from(v)));
        }

        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..16)) {
            let mut buf = &bytes[..];
            let _ = read_varint(&mut buf);
            let mut buf = &bytes[..];
            let _ = read_varlong(&mut buf);
        }
    }
}
