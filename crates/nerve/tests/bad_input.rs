//! Misbehaving connections are answered with an error or closed, and never disturb other clients.
//! Each test sends its bad input on a raw socket, then checks that a well-behaved rdkafka client is
//! served while that socket is still open or being closed.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{consume, produce, producer, record, Nerve, PATIENCE};
use rdkafka::Offset;

fn raw(nerve: &Nerve) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", nerve.port)).expect("connect");
    stream.set_read_timeout(Some(PATIENCE)).unwrap();
    stream
}

/// A request frame: size, header v1 or v2, body.
fn request(
    api_key: i16,
    version: i16,
    correlation_id: i32,
    flexible: bool,
    body: &[u8],
) -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&3i16.to_be_bytes());
    frame.extend_from_slice(b"raw");
    if flexible {
        frame.push(0); // no tagged fields
    }
    frame.extend_from_slice(body);
    let mut out = (frame.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&frame);
    out
}

/// True once the broker has closed the socket (end of stream or a reset).
fn closed_by_broker(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return false,
            Err(_) => return true,
        }
    }
}

/// A second client produces and consumes as usual.
fn well_behaved_client_is_served(nerve: &Nerve, topic: &str) {
    let records: Vec<_> = (0..3).map(record).collect();
    produce(&producer(nerve, &[]), topic, &records);
    assert_eq!(consume(nerve, topic, Offset::Beginning, 3).len(), 3);
}

#[test]
fn garbage_bytes_close_only_the_offending_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut nerve = Nerve::start(dir.path());
    let mut http = raw(&nerve);
    http.write_all(b"GET / HTTP/1.1\r\nHost: nerve\r\n\r\n")
        .unwrap();
    let mut junk = raw(&nerve);
    junk.write_all(b"\x00\x00\x00\x10GARBAGEGARBAGE!!").unwrap();
    well_behaved_client_is_served(&nerve, "after-garbage");
    assert!(closed_by_broker(&mut http));
    assert!(closed_by_broker(&mut junk));
    assert!(nerve.is_running());
}

#[test]
fn frame_over_the_size_limit_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut nerve = Nerve::start(dir.path());
    let mut stream = raw(&nerve);
    stream
        .write_all(&(200 * 1024 * 1024i32).to_be_bytes())
        .unwrap();
    stream.write_all(&[0u8; 64]).unwrap();
    well_behaved_client_is_served(&nerve, "after-oversized");
    assert!(closed_by_broker(&mut stream));
    assert!(nerve.is_running());
}

#[test]
fn frame_that_lies_about_its_length_does_not_block_others() {
    let dir = tempfile::tempdir().unwrap();
    let mut nerve = Nerve::start(dir.path());
    let mut liars = Vec::new();
    for _ in 0..20 {
        // 90 MiB promised (under the limit), 16 bytes sent: the broker must not reserve the promise.
        let mut stream = raw(&nerve);
        stream
            .write_all(&(90 * 1024 * 1024i32).to_be_bytes())
            .unwrap();
        stream.write_all(&[1u8; 16]).unwrap();
        liars.push(stream);
    }
    well_behaved_client_is_served(&nerve, "after-liar");
    // The broker waits for the rest; when the liar hangs up mid-frame the connection just ends.
    for stream in &liars {
        stream.shutdown(std::net::Shutdown::Write).unwrap();
    }
    for stream in &mut liars {
        assert!(closed_by_broker(stream));
    }
    assert!(nerve.is_running());
}

#[test]
fn api_versions_at_an_unknown_version_answers_unsupported_version_in_v0() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    let mut stream = raw(&nerve);
    // ApiVersions v99: flexible header; body with client software name and version, no tagged fields.
    let body = [&[5u8][..], b"raw1", &[2u8][..], b"1", &[0u8][..]].concat();
    stream
        .write_all(&request(18, 99, 4242, true, &body))
        .unwrap();
    well_behaved_client_is_served(&nerve, "after-unknown-version");

    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut response).unwrap();
    // Response header v0: correlation id only. Body v0: error code, then [api key, min, max].
    assert_eq!(i32::from_be_bytes(response[0..4].try_into().unwrap()), 4242);
    assert_eq!(i16::from_be_bytes(response[4..6].try_into().unwrap()), 35);
    let count = i32::from_be_bytes(response[6..10].try_into().unwrap()) as usize;
    assert_eq!(response.len(), 10 + count * 6);
    let ranges: Vec<(i16, i16, i16)> = response[10..]
        .chunks(6)
        .map(|c| {
            (
                i16::from_be_bytes([c[0], c[1]]),
                i16::from_be_bytes([c[2], c[3]]),
                i16::from_be_bytes([c[4], c[5]]),
            )
        })
        .collect();
    assert!(ranges.contains(&(18, 0, 4)), "{ranges:?}");
    assert!(ranges.iter().any(|&(key, min, _)| key == 0 && min == 3));
}

#[test]
fn unsupported_version_or_unknown_api_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut nerve = Nerve::start(dir.path());
    let mut metadata_v99 = raw(&nerve);
    metadata_v99
        .write_all(&request(3, 99, 1, true, &[0, 0]))
        .unwrap();
    let mut unknown_api = raw(&nerve);
    unknown_api
        .write_all(&request(31_000, 0, 1, false, &[]))
        .unwrap();
    well_behaved_client_is_served(&nerve, "after-unsupported");
    assert!(closed_by_broker(&mut metadata_v99));
    assert!(closed_by_broker(&mut unknown_api));
    assert!(nerve.is_running());
}

#[test]
fn truncated_or_lying_request_bodies_close_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let mut nerve = Nerve::start(dir.path());
    // Metadata v1: a topics array of 5 entries, none of which follow.
    let mut truncated = raw(&nerve);
    truncated
        .write_all(&request(3, 1, 1, false, &5i32.to_be_bytes()))
        .unwrap();
    // Metadata v1: an array that claims two billion entries in a 14-byte request.
    let mut huge_count = raw(&nerve);
    huge_count
        .write_all(&request(3, 1, 2, false, &i32::MAX.to_be_bytes()))
        .unwrap();
    // Produce v9 (flexible): a compact array that claims four billion topics.
    let mut huge_compact = raw(&nerve);
    let produce_body = [
        &[0u8][..],
        &1i16.to_be_bytes(),
        &1000i32.to_be_bytes(),
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
    ]
    .concat();
    huge_compact
        .write_all(&request(0, 9, 3, true, &produce_body))
        .unwrap();
    well_behaved_client_is_served(&nerve, "after-truncated");
    assert!(closed_by_broker(&mut truncated));
    assert!(closed_by_broker(&mut huge_count));
    assert!(closed_by_broker(&mut huge_compact));
    assert!(nerve.is_running());
}
