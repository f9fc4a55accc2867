//! Kafka's framing: every request and response is a 4-byte big-endian size followed by that many bytes.
//!
//! This module is sans-io: the connection feeds it the bytes it read and gets whole frames back. Two promises
//! matter for a server facing untrusted peers:
//! - a frame larger than the limit (`socket.request.max.bytes`) is refused as soon as its size is read, and
//! - nothing is reserved for a frame's declared size: the buffer only grows as bytes actually arrive (see
//!   [`FrameDecoder::read_hint`]), so a peer that lies about its length costs what it sent, not what it claimed.
//!
//! It also parses the request header (whose version depends on the API and its version) and encodes
//! responses with the right response header version.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};

/// Size of the length prefix of every frame.
pub const SIZE_PREFIX_LEN: usize = 4;
/// Kafka's default `socket.request.max.bytes`: 100 MiB.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 100 * 1024 * 1024;
/// The most a single read asks the buffer to grow by, whatever the frame claims.
const MAX_READ_CHUNK: usize = 64 * 1024;
/// Bytes every request header starts with, whatever its version: api key, api version, correlation id.
const FIXED_HEADER_LEN: usize = 8;

/// Why bytes on a connection are not a valid Kafka frame or request header.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error(
        "frame of {size} bytes is larger than the limit of {max} bytes (socket.request.max.bytes)"
    )]
    TooLarge { size: usize, max: usize },
    #[error("negative frame size {0}")]
    NegativeSize(i32),
    #[error("connection closed in the middle of a frame: {buffered} bytes of {expected} received")]
    Truncated { buffered: usize, expected: usize },
    #[error("request of {0} bytes is too short for a request header")]
    ShortHeader(usize),
    /// The API key is not one Kafka defines; its header version, and so where the body starts, is unknown.
    #[error("unknown API key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("malformed request header for API key {api_key} v{api_version}: {reason}")]
    MalformedHeader {
        api_key: i16,
        api_version: i16,
        reason: String,
    },
    #[error("cannot encode the response to API key {api_key} v{api_version}: {reason}")]
    Encode {
        api_key: i16,
        api_version: i16,
        reason: String,
    },
}

/// Splits a byte stream into frames.
#[derive(Debug)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
}

impl FrameDecoder {
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameDecoder { max_frame_bytes }
    }

    /// Takes the next whole frame (without its size prefix) off the front of `buf`, or `None` when more bytes
    /// are needed. A size over the limit is an error before any of the frame's bytes are buffered.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        let Some(size) = self.declared_size(buf)? else {
            return Ok(None);
        };
        if buf.len() < SIZE_PREFIX_LEN + size {
            return Ok(None);
        }
        buf.advance(SIZE_PREFIX_LEN);
        Ok(Some(buf.split_to(size).freeze()))
    }

    /// Called when the peer closed its side: leftover bytes mean a frame was cut short.
    pub fn decode_eof(&self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if let Some(frame) = self.decode(buf)? {
            return Ok(Some(frame));
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let expected = match self.declared_size(buf)? {
            Some(size) => SIZE_PREFIX_LEN + size,
            None => SIZE_PREFIX_LEN,
        };
        Err(FrameError::Truncated {
            buffered: buf.len(),
            expected,
        })
    }

    /// How many more bytes the buffer should make room for before the next read: what the current frame still
    /// lacks, but never more than a bounded chunk, so memory follows the bytes that arrive.
    pub fn read_hint(&self, buf: &BytesMut) -> usize {
        let missing = match self.declared_size(buf) {
            Ok(Some(size)) => (SIZE_PREFIX_LEN + size).saturating_sub(buf.len()),
            _ => SIZE_PREFIX_LEN.saturating_sub(buf.len()),
        };
        missing.clamp(SIZE_PREFIX_LEN, MAX_READ_CHUNK)
    }

    fn declared_size(&self, buf: &BytesMut) -> Result<Option<usize>, FrameError> {
        let Some(prefix) = buf.get(..SIZE_PREFIX_LEN) else {
            return Ok(None);
        };
        let size = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
        let size = usize::try_from(size).map_err(|_| FrameError::NegativeSize(size))?;
        if size > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                size,
                max: self.max_frame_bytes,
            });
        }
        Ok(Some(size))
    }
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder::new(DEFAULT_MAX_FRAME_BYTES)
    }
}

/// A request split into its parsed header and its still-encoded body.
#[derive(Debug, Clone)]
pub struct RequestFrame {
    pub api_key: ApiKey,
    pub header: RequestHeader,
    pub body: Bytes,
}

impl RequestFrame {
    pub fn api_version(&self) -> i16 {
        self.header.request_api_version
    }

    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }
}

/// Parses the request header of a frame. The header version follows from the API key and version (v2, the
/// flexible one with tagged fields, for flexible API versions); the body is left for the API's handler.
pub fn parse_request(mut frame: Bytes) -> Result<RequestFrame, FrameError> {
    if frame.len() < FIXED_HEADER_LEN {
        return Err(FrameError::ShortHeader(frame.len()));
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let key = ApiKey::try_from(api_key).map_err(|()| FrameError::UnknownApiKey {
        api_key,
        correlation_id,
    })?;
    // Header v0 (no client id) only ever served ControlledShutdown v0, which Kafka 4 no longer has.
    let header_version = key.request_header_version(api_version).max(1);
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|e| {
        FrameError::MalformedHeader {
            api_key,
            api_version,
            reason: e.to_string(),
        }
    })?;
    Ok(RequestFrame {
        api_key: key,
        header,
        body: frame,
    })
}

/// The response header version for an API version. ApiVersions always answers with header v0, even at
/// flexible versions, so that a client can read the answer before it knows which versions the broker has.
pub fn response_header_version(api_key: ApiKey, api_version: i16) -> i16 {
    if api_key == ApiKey::ApiVersions {
        0
    } else {
        api_key.response_header_version(api_version)
    }
}

/// Encodes a whole response frame: size prefix, response header, body at `api_version`.
pub fn encode_response<M: Encodable>(
    api_key: ApiKey,
    api_version: i16,
    correlation_id: i32,
    body: &M,
) -> Result<Bytes, FrameError> {
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_version = response_header_version(api_key, api_version);
    let size = header
        .compute_size(header_version)
        .and_then(|h| Ok(h + body.compute_size(api_version)?))
        .map_err(|e| encode_error(api_key, api_version, e))?;
    let mut buf = BytesMut::with_capacity(SIZE_PREFIX_LEN + size);
    let declared = i32::try_from(size).map_err(|_| {
        encode_error(
            api_key,
            api_version,
            format!("response of {size} bytes does not fit a frame"),
        )
    })?;
    buf.put_i32(declared);
    header
        .encode(&mut buf, header_version)
        .map_err(|e| encode_error(api_key, api_version, e))?;
    body.encode(&mut buf, api_version)
        .map_err(|e| encode_error(api_key, api_version, e))?;
    Ok(buf.freeze())
}

fn encode_error(api_key: ApiKey, api_version: i16, reason: impl std::fmt::Display) -> FrameError {
    FrameError::Encode {
        api_key: api_key as i16,
        api_version,
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{ApiVersionsRequest, MetadataRequest, ProduceRequest};
    use kafka_protocol::protocol::StrBytes;

    fn framed(body: &[u8]) -> BytesMut {
        let mut buf = BytesMut::new();
        buf.put_i32(body.len() as i32);
        buf.put_slice(body);
        buf
    }

    fn request_bytes<M: Encodable>(
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        body: &M,
    ) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("test-client")));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .expect("header encodes");
        body.encode(&mut buf, version).expect("body encodes");
        buf.freeze()
    }

    #[test]
    fn whole_frames_are_split_off_and_partial_ones_wait() {
        let decoder = FrameDecoder::default();
        let mut buf = framed(b"hello");
        buf.put_slice(&framed(b"world")[..6]);
        assert_eq!(
            decoder.decode(&mut buf).unwrap().as_deref(),
            Some(&b"hello"[..])
        );
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        buf.put_slice(b"rld");
        assert_eq!(
            decoder.decode(&mut buf).unwrap().as_deref(),
            Some(&b"world"[..])
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn oversized_frame_is_refused_from_its_size_alone() {
        let decoder = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        buf.put_i32(1025);
        assert_eq!(
            decoder.decode(&mut buf),
            Err(FrameError::TooLarge {
                size: 1025,
                max: 1024
            })
        );
    }

    #[test]
    fn negative_frame_size_is_refused() {
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        buf.put_i32(-5);
        assert_eq!(decoder.decode(&mut buf), Err(FrameError::NegativeSize(-5)));
    }

    #[test]
    fn frame_cut_short_by_eof_is_truncated() {
        let decoder = FrameDecoder::default();
        let mut buf = framed(b"0123456789");
        buf.truncate(8);
        assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        assert_eq!(
            decoder.decode_eof(&mut buf),
            Err(FrameError::Truncated {
                buffered: 8,
                expected: 14
            })
        );
        let mut prefix_only = BytesMut::from(&[0u8, 0][..]);
        assert!(matches!(
            decoder.decode_eof(&mut prefix_only),
            Err(FrameError::Truncated { .. })
        ));
        assert_eq!(decoder.decode_eof(&mut BytesMut::new()), Ok(None));
    }

    #[test]
    fn read_hint_never_follows_a_lying_size() {
        let decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        buf.put_i32(90 * 1024 * 1024);
        assert_eq!(decoder.read_hint(&buf), MAX_READ_CHUNK);
        let mut small = BytesMut::new();
        small.put_i32(10);
        small.put_slice(b"abc");
        assert_eq!(decoder.read_hint(&small), 7);
        assert_eq!(decoder.read_hint(&BytesMut::new()), SIZE_PREFIX_LEN);
    }

    #[test]
    fn flexible_request_header_is_parsed_with_its_tagged_fields() {
        let body = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("nerve-test"))
            .with_client_software_version(StrBytes::from_static_str("1"));
        let bytes = request_bytes(ApiKey::ApiVersions, 3, 42, &body);
        let request = parse_request(bytes).unwrap();
        assert_eq!(request.api_key, ApiKey::ApiVersions);
        assert_eq!(request.api_version(), 3);
        assert_eq!(request.correlation_id(), 42);
        assert_eq!(request.header.client_id.as_deref(), Some("test-client"));
        let decoded = ApiVersionsRequest::decode(&mut request.body.clone(), 3).unwrap();
        assert_eq!(decoded.client_software_name.as_str(), "nerve-test");
    }

    #[test]
    fn non_flexible_request_header_leaves_the_body_intact() {
        let body = MetadataRequest::default();
        let bytes = request_bytes(ApiKey::Metadata, 1, 7, &body);
        let request = parse_request(bytes).unwrap();
        assert_eq!(request.api_key, ApiKey::Metadata);
        let decoded = MetadataRequest::decode(&mut request.body.clone(), 1).unwrap();
        assert_eq!(decoded, body);
        let produce = request_bytes(ApiKey::Produce, 9, 8, &ProduceRequest::default());
        assert_eq!(parse_request(produce).unwrap().correlation_id(), 8);
    }

    #[test]
    fn unknown_api_key_is_reported_with_its_correlation_id() {
        let mut body = BytesMut::new();
        body.put_i16(999);
        body.put_i16(0);
        body.put_i32(5);
        body.put_i16(-1);
        assert_eq!(
            parse_request(body.freeze()).unwrap_err(),
            FrameError::UnknownApiKey {
                api_key: 999,
                correlation_id: 5
            }
        );
    }

    #[test]
    fn truncated_request_header_is_malformed() {
        let mut body = BytesMut::new();
        body.put_i16(ApiKey::Metadata as i16);
        body.put_i16(1);
        body.put_i32(5);
        body.put_i16(20); // a client id of 20 bytes that never come
        assert!(matches!(
            parse_request(body.freeze()),
            Err(FrameError::MalformedHeader { .. })
        ));
        assert_eq!(
            parse_request(Bytes::from_static(b"abc")).unwrap_err(),
            FrameError::ShortHeader(3)
        );
    }

    #[test]
    fn api_versions_response_uses_header_v0_at_flexible_versions() {
        use kafka_protocol::messages::ApiVersionsResponse;
        let response = ApiVersionsResponse::default();
        let bytes = encode_response(ApiKey::ApiVersions, 3, 99, &response).unwrap();
        let size = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        assert_eq!(size, bytes.len() - SIZE_PREFIX_LEN);
        assert_eq!(&bytes[4..8], &99i32.to_be_bytes());
        let mut body = bytes.slice(8..);
        let decoded = ApiVersionsResponse::decode(&mut body, 3).unwrap();
        assert_eq!(decoded, response);
        assert!(body.is_empty());

        // Metadata v9 is flexible: its response header carries an (empty) tagged-field section.
        let metadata = kafka_protocol::messages::MetadataResponse::default();
        let bytes = encode_response(ApiKey::Metadata, 9, 1, &metadata).unwrap();
        assert_eq!(bytes[8], 0);
    }
}
