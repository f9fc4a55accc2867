//! A W3C trace context set by a producer reaches consumers untouched, so producer and consumer spans can
//! join one trace (docs/observability.md, "Traces across producers and consumers").

mod common;

use common::{consume, create_topic, produce, producer, Nerve};
use rdkafka::Offset;

#[test]
fn traceparent_and_tracestate_headers_reach_the_consumer_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "traced", 1);
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let tracestate = "nerve=t61rcWkgMzE,other=x";
    // Compressed, so the headers also survive the batch being stored and served compressed.
    let producer = producer(&nerve, &[("compression.type", "zstd")]);
    let records = vec![(
        "order-17".to_string(),
        "{\"event\":\"OrderPlaced\"}".to_string(),
        vec![
            ("traceparent".to_string(), traceparent.to_string()),
            ("tracestate".to_string(), tracestate.to_string()),
        ],
    )];
    produce(&producer, "traced", &records);
    let received = consume(&nerve, "traced", Offset::Beginning, 1);
    assert_eq!(
        received[0].headers,
        vec![
            (
                "traceparent".to_string(),
                Some(traceparent.as_bytes().to_vec())
            ),
            (
                "tracestate".to_string(),
                Some(tracestate.as_bytes().to_vec())
            ),
        ]
    );
}

/// One HTTP request as an OTLP collector receives it.
struct Received {
    request_line: String,
    content_type: Option<String>,
    body: Vec<u8>,
}

/// A minimal OTLP/HTTP collector: answers every request `200` and hands it to the test.
fn collector() -> (u16, std::sync::mpsc::Receiver<Received>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (send, receive) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            // Keep-alive: several requests may come over one connection.
            loop {
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                    break;
                }
                let mut length = 0;
                let mut content_type = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        match name.to_ascii_lowercase().as_str() {
                            "content-length" => length = value.trim().parse().unwrap_or(0),
                            "content-type" => content_type = Some(value.trim().to_string()),
                            _ => {}
                        }
                    }
                }
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    break;
                }
                let _ = reader
                    .get_mut()
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                let _ = send.send(Received {
                    request_line: request_line.trim_end().to_string(),
                    content_type,
                    body,
                });
            }
        }
    });
    (port, receive)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn request_spans_are_exported_over_otlp_when_an_endpoint_is_given() {
    let (port, received) = collector();
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start_on(
        dir.path(),
        common::any_free_port(),
        &[
            "--otlp-endpoint".to_string(),
            format!("http://127.0.0.1:{port}"),
        ],
    );
    create_topic(&nerve.bootstrap(), "spanned", 1);
    // Shutdown flushes the spans still batched.
    nerve.stop();
    let mut bodies = Vec::new();
    // Everything was sent before the process exited; the collector may still be reading the last of it.
    let mut wait = common::PATIENCE;
    while let Ok(request) = received.recv_timeout(wait) {
        wait = std::time::Duration::from_secs(1);
        assert_eq!(request.request_line, "POST /v1/traces HTTP/1.1");
        assert_eq!(
            request.content_type.as_deref(),
            Some("application/x-protobuf")
        );
        bodies.push(request.body);
    }
    let all: Vec<u8> = bodies.concat();
    // Protobuf strings are stored as they are: the service, the span name and its fields are visible.
    for expected in [
        &b"nerve"[..],
        b"request",
        b"CreateTopics",
        b"client_id",
        b"correlation_id",
    ] {
        assert!(
            contains(&all, expected),
            "no {:?} in what the collector received ({} requests)",
            String::from_utf8_lossy(expected),
            bodies.len()
        );
    }
}
