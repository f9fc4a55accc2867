//! The codecs of Kafka's `compression.type`, framed exactly as Kafka clients frame them.
//!
//! Decompression is always bounded: output is produced in small chunks and abandoned as soon as it would
//! exceed the caller's limit, so a tiny "zip bomb" cannot make the broker allocate gigabytes.

use std::io::{self, Read, Write};

use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};

use crate::WireError;

/// snappy-java's stream header: magic, then version and compatible version (i32 BE each).
const XERIAL_MAGIC: [u8; 8] = [0x82, b'S', b'N', b'A', b'P', b'P', b'Y', 0];
const XERIAL_HEADER_LEN: usize = XERIAL_MAGIC.len() + 8;
const XERIAL_VERSION: i32 = 1;
/// snappy-java's default block size, which the Java client uses.
const XERIAL_BLOCK_LEN: usize = 32 * 1024;

/// Output is pulled from streaming decoders this many bytes at a time.
const READ_CHUNK: usize = 16 * 1024;

/// A record batch compression codec; the discriminant is its id in the batch attributes (bits 0-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    /// All codecs, in id order.
    pub const ALL: [Compression; 5] = [Self::None, Self::Gzip, Self::Snappy, Self::Lz4, Self::Zstd];

    /// The codec with the given attributes id.
    pub fn from_id(id: u8) -> Result<Self, WireError> {
        Self::ALL
            .get(usize::from(id))
            .copied()
            .ok_or(WireError::UnknownCompression(id))
    }

    /// The codec's id in the batch attributes.
    pub fn id(self) -> u8 {
        self as u8
    }

    /// The codec's name as Kafka's `compression.type` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }

    /// The codec with the given `compression.type` name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }

    /// Compresses `data` as a Kafka producer would.
    pub fn compress(self, data: &[u8]) -> Result<Vec<u8>, WireError> {
        let failed = |reason: String| WireError::Compress {
            codec: self.name(),
            reason,
        };
        match self {
            Self::None => Ok(data.to_vec()),
            Self::Gzip => {
                // Level 6 is what Kafka's gzip uses unless `compression.gzip.level` says otherwise.
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(data).map_err(|e| failed(e.to_string()))?;
                encoder.finish().map_err(|e| failed(e.to_string()))
            }
            Self::Snappy => xerial_compress(data).map_err(|e| failed(e.to_string())),
            Self::Lz4 => {
                // Kafka's own lz4 stream reader only accepts independent blocks; 64 KiB blocks and no content
                // checksum match what the Java client writes.
                let info = FrameInfo::new()
                    .block_size(BlockSize::Max64KB)
                    .block_mode(BlockMode::Independent);
                let mut encoder = FrameEncoder::with_frame_info(info, Vec::new());
                encoder.write_all(data).map_err(|e| failed(e.to_string()))?;
                encoder.finish().map_err(|e| failed(e.to_string()))
            }
            Self::Zstd => zstd::bulk::compress(data, zstd::DEFAULT_COMPRESSION_LEVEL)
                .map_err(|e| failed(e.to_string())),
        }
    }

    /// Decompresses `data`, failing with [`WireError::DecompressedTooLarge`] as soon as the output would
    /// exceed `max_len` bytes. Sizes claimed inside the data are never trusted for allocation beyond that.
    pub fn decompress(self, data: &[u8], max_len: usize) -> Result<Vec<u8>, WireError> {
        match self {
            Self::None if data.len() > max_len => {
                Err(WireError::DecompressedTooLarge { limit: max_len })
            }
            Self::None => Ok(data.to_vec()),
            // Java's GZIPInputStream reads concatenated gzip members, so a client may send them.
            Self::Gzip => read_bounded(self, flate2::bufread::MultiGzDecoder::new(data), max_len),
            Self::Snappy => snappy_decompress(data, max_len),
            Self::Lz4 => read_bounded(self, FrameDecoder::new(data), max_len),
            // The streaming decoder sizes its buffers by the frame's window, which zstd itself caps (128 MiB
            // by default, the same limit Kafka's zstd-jni applies), never by the claimed content size.
            Self::Zstd => {
                let decoder = zstd::stream::read::Decoder::with_buffer(data)
                    .map_err(|e| corrupt(self, e.to_string()))?;
                read_bounded(self, decoder, max_len)
            }
        }
    }
}

fn corrupt(codec: Compression, reason: String) -> WireError {
    WireError::Decompress {
        codec: codec.name(),
        reason,
    }
}

fn read_bounded(
    codec: Compression,
    mut reader: impl Read,
    max_len: usize,
) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    let mut chunk = [0u8; READ_CHUNK];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(codec, e.to_string())),
        };
        if n > max_len - out.len() {
            return Err(WireError::DecompressedTooLarge { limit: max_len });
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

fn xerial_compress(data: &[u8]) -> Result<Vec<u8>, snap::Error> {
    let mut out = Vec::with_capacity(XERIAL_HEADER_LEN + snap::raw::max_compress_len(data.len()));
    out.extend_from_slice(&XERIAL_MAGIC);
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    out.extend_from_slice(&XERIAL_VERSION.to_be_bytes());
    let mut encoder = snap::raw::Encoder::new();
    let mut block = vec![0; snap::raw::max_compress_len(XERIAL_BLOCK_LEN)];
    for input in data.chunks(XERIAL_BLOCK_LEN) {
        let n = encoder.compress(input, &mut block)?;
        // A compressed 32 KiB block is far below i32::MAX.
        out.extend_from_slice(&(n as i32).to_be_bytes());
        out.extend_from_slice(&block[..n]);
    }
    Ok(out)
}

/// Accepts both snappy-java's xerial framing (the Java client) and a single raw block (librdkafka may send
/// that), as librdkafka's own decoder does.
fn snappy_decompress(data: &[u8], max_len: usize) -> Result<Vec<u8>, WireError> {
    let mut out = Vec::new();
    if !data.starts_with(&XERIAL_MAGIC) {
        snappy_raw_into(data, max_len, &mut out)?;
        return Ok(out);
    }
    let mut rest = data;
    while !rest.is_empty() {
        // snappy-java's reader lets a header reappear between blocks (concatenated streams).
        if rest.starts_with(&XERIAL_MAGIC) {
            rest = rest
                .get(XERIAL_HEADER_LEN..)
                .ok_or_else(|| corrupt(Compression::Snappy, "truncated xerial header".into()))?;
            continue;
        }
        let (len, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt(Compression::Snappy, "truncated block length".into()))?;
        let len = i32::from_be_bytes(*len);
        let len = usize::try_from(len)
            .map_err(|_| corrupt(Compression::Snappy, format!("negative block length {len}")))?;
        if len > after.len() {
            let reason = format!("block of {len} bytes but only {} left", after.len());
            return Err(corrupt(Compression::Snappy, reason));
        }
        let (block, after) = after.split_at(len);
        snappy_raw_into(block, max_len, &mut out)?;
        rest = after;
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, whose length must already be within `max_len`.
fn snappy_raw_into(block: &[u8], max_len: usize, out: &mut Vec<u8>) -> Result<(), WireError> {
    let err = |e: snap::Error| corrupt(Compression::Snappy, e.to_string());
    if block.is_empty() {
        return Ok(());
    }
    // A raw block states its decompressed size up front and must be decoded in one go; refusing a claim
    // above the limit is what keeps the allocation bounded.
    let len = snap::raw::decompress_len(block).map_err(err)?;
    if len > max_len - out.len() {
        return Err(WireError::DecompressedTooLarge { limit: max_len });
    }
    let start = out.len();
    out.resize(start + len, 0);
    let n = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(err)?;
    out.truncate(start + n);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MIB: usize = 1024 * 1024;

    fn compressible(len: usize) -> Vec<u8> {
        (0..len).map(|i| b"nerve kafka broker "[i % 19]).collect()
    }

    #[test]
    fn ids_and_names_match_kafka() {
        let expected = [
            (0, "none"),
            (1, "gzip"),
            (2, "snappy"),
            (3, "lz4"),
            (4, "zstd"),
        ];
        for (codec, (id, name)) in Compression::ALL.into_iter().zip(expected) {
            assert_eq!(codec.id(), id);
            assert_eq!(codec.name(), name);
            assert_eq!(Compression::from_id(id), Ok(codec));
            assert_eq!(Compression::from_name(name), Some(codec));
        }
        assert_eq!(Compression::from_name("producer"), None);
        assert_eq!(Compression::from_name("GZIP"), None);
    }

    #[test]
    fn unknown_ids_are_rejected() {
        for id in 5..=7 {
            assert_eq!(
                Compression::from_id(id),
                Err(WireError::UnknownCompression(id))
            );
        }
    }

    #[test]
    fn every_codec_round_trips_multi_block_input() {
        let data = compressible(300 * 1024);
        for codec in Compression::ALL {
            let compressed = codec.compress(&data).unwrap();
            assert_eq!(
                codec.decompress(&compressed, data.len()).unwrap(),
                data,
                "{codec:?}"
            );
        }
    }

    #[test]
    fn every_codec_round_trips_empty_input() {
        for codec in Compression::ALL {
            let compressed = codec.compress(&[]).unwrap();
            assert_eq!(
                codec.decompress(&compressed, 0).unwrap(),
                Vec::<u8>::new(),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn snappy_compress_writes_xerial_framing_in_32k_blocks() {
        let data = compressible(70 * 1024);
        let out = Compression::Snappy.compress(&data).unwrap();
        assert_eq!(&out[..8], &XERIAL_MAGIC);
        assert_eq!(&out[8..16], &[0, 0, 0, 1, 0, 0, 0, 1]);
        let mut rest = &out[16..];
        let mut sizes = Vec::new();
        while !rest.is_empty() {
            let len = i32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let block = &rest[4..4 + len];
            sizes.push(snap::raw::decompress_len(block).unwrap());
            rest = &rest[4 + len..];
        }
        assert_eq!(sizes, [32 * 1024, 32 * 1024, 6 * 1024]);
    }

    #[test]
    fn snappy_decodes_raw_blocks() {
        let data = compressible(100_000);
        let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(
            Compression::Snappy.decompress(&raw, data.len()).unwrap(),
            data
        );
    }

    #[test]
    fn snappy_decodes_concatenated_xerial_streams() {
        let mut stream = Compression::Snappy.compress(b"hello ").unwrap();
        stream.extend(Compression::Snappy.compress(b"world").unwrap());
        assert_eq!(
            Compression::Snappy.decompress(&stream, 100).unwrap(),
            b"hello world"
        );
    }

    #[test]
    fn snappy_rejects_broken_xerial_framing() {
        let good = Compression::Snappy.compress(&compressible(1000)).unwrap();
        for bad in [&good[..10], &good[..18], &good[..good.len() - 1]] {
            assert!(matches!(
                Compression::Snappy.decompress(bad, MIB),
                Err(WireError::Decompress {
                    codec: "snappy",
                    ..
                })
            ));
        }
        let mut negative = good[..16].to_vec();
        negative.extend_from_slice(&(-5i32).to_be_bytes());
        assert!(matches!(
            Compression::Snappy.decompress(&negative, MIB),
            Err(WireError::Decompress { .. })
        ));
    }

    #[test]
    fn lz4_writes_the_frame_format_kafka_reads() {
        let out = Compression::Lz4.compress(&compressible(1000)).unwrap();
        assert_eq!(&out[..4], &0x184D_2204u32.to_le_bytes());
        // FLG: version 01, independent blocks, no checksums, no content size. BD: 64 KiB blocks.
        assert_eq!(out[4], 0x60);
        assert_eq!(out[5], 0x40);
    }

    #[test]
    fn decompress_honours_max_len() {
        let zeros = vec![0u8; 10 * MIB];
        for codec in Compression::ALL {
            let compressed = codec.compress(&zeros).unwrap();
            assert_eq!(
                codec.decompress(&compressed, MIB),
                Err(WireError::DecompressedTooLarge { limit: MIB }),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn decompress_accepts_output_of_exactly_max_len() {
        let data = compressible(50_000);
        for codec in Compression::ALL {
            let compressed = codec.compress(&data).unwrap();
            assert_eq!(codec.decompress(&compressed, data.len()).unwrap(), data);
            assert_eq!(
                codec.decompress(&compressed, data.len() - 1),
                Err(WireError::DecompressedTooLarge {
                    limit: data.len() - 1
                }),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn raw_snappy_claiming_more_than_max_len_is_refused_before_decoding() {
        let raw = snap::raw::Encoder::new()
            .compress_vec(&vec![0u8; MIB])
            .unwrap();
        assert_eq!(
            Compression::Snappy.decompress(&raw, 1000),
            Err(WireError::DecompressedTooLarge { limit: 1000 })
        );
    }

    #[test]
    fn truncated_streams_are_decompress_errors() {
        let data = compressible(10_000);
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let compressed = codec.compress(&data).unwrap();
            let truncated = &compressed[..compressed.len() / 2];
            assert!(
                matches!(
                    codec.decompress(truncated, MIB),
                    Err(WireError::Decompress { .. })
                ),
                "{codec:?}"
            );
        }
    }

    #[test]
    fn garbage_is_a_decompress_error() {
        let garbage = b"this is certainly not compressed data, not at all".repeat(3);
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            match codec.decompress(&garbage, MIB) {
                Err(WireError::Decompress { codec: name, .. }) => assert_eq!(name, codec.name()),
                other => panic!("{codec:?}: {other:?}"),
            }
        }
    }

    fn any_codec() -> impl Strategy<Value = Compression> {
        prop::sample::select(Compression::ALL.to_vec())
    }

    fn payload() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..4096),
            // A small alphabet compresses well and, at this length, spans several codec blocks.
            prop::collection::vec(0u8..4, 0..150_000),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn every_codec_round_trips(codec in any_codec(), data in payload()) {
            let compressed = codec.compress(&data).unwrap();
            prop_assert_eq!(codec.decompress(&compressed, data.len()).unwrap(), data);
        }

        #[test]
        fn corrupted_streams_never_panic(
            codec in any_codec(),
            data in payload(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut compressed = codec.compress(&data).unwrap();
            for (at, byte) in flips {
                let i = at.index(compressed.len().max(1));
                if let Some(b) = compressed.get_mut(i) {
                    *b ^= byte;
                }
            }
            let _ = codec.decompress(&compressed, 1024 * 1024);
        }
    }

    proptest! {
        #[test]
        fn garbage_never_panics(codec in any_codec(), data in prop::collection::vec(any::<u8>(), 0..512)) {
            match codec.decompress(&data, 64 * 1024) {
                Ok(_) | Err(WireError::Decompress { .. } | WireError::DecompressedTooLarge { .. }) => {}
                Err(other) => prop_assert!(false, "unexpected error {other:?}"),
            }
        }


        #[test]
        fn garbage_after_a_valid_xerial_header_never_panics(data in prop::collection::vec(any::<u8>(), 0..512)) {
            let mut stream = Compression::Snappy.compress(&[]).unwrap();
            stream.extend(data);
            let _ = Compression::Snappy.decompress(&stream, 64 * 1024);
        }
    }
}
