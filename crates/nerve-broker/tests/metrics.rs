//! The broker's metrics after known traffic, read as `/metrics` shows them: the Prometheus text encoding of
//! a registry with the `nerve` prefix.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::*;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::*;

/// The metrics as a scrape shows them.
fn scrape(broker: &TestBroker) -> String {
    let mut registry = Registry::with_prefix("nerve");
    broker.broker.metrics().register(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    text
}

/// The value of the sample `series` (name with labels, as encoded), if the scrape has it.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(series)?.strip_prefix(' ')?;
        Some(value.parse().unwrap())
    })
}

fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no sample {series} in:\n{text}"))
}

/// The sum of every sample of the metric `name` (any labels).
fn total(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| {
            line.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

/// Waits, within a bound, for the scrape to show `series` at `expected`.
async fn until(broker: &TestBroker, series: &str, expected: f64) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let text = scrape(broker);
        if sample(&text, series) == Some(expected) || Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn batch_of_five() -> Bytes {
    let timestamp = now_ms();
    let mut builder = nerve_wire::BatchBuilder::new(timestamp);
    for value in ["1", "2", "3", "4", "5"] {
        builder.push(timestamp, None, Some(value.as_bytes()), Vec::new());
    }
    Bytes::from(builder.build().unwrap())
}

#[tokio::test]
async fn known_traffic_shows_exact_request_topic_error_and_connection_counts() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    create_topic(&mut client, "a", 1, &[]).await;
    let batch = batch_of_five();
    for _ in 0..3 {
        let response = client
            .call(9, &produce_request("a", 1, batch.clone()))
            .await;
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
    let fetched = client.call(12, &fetch_request("a", 0, 0)).await;
    let records = fetched.responses[0].partitions[0].records.clone().unwrap();
    assert_eq!(
        records.len(),
        3 * batch.len(),
        "the fetch returns all three batches"
    );
    let response = client
        .call(9, &produce_request("nowhere", 1, batch.clone()))
        .await;
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let text = scrape(&broker);
    assert_eq!(value(&text, "nerve_connections"), 1.0);
    drop(client);

    let text_after = until(&broker, "nerve_connections", 0.0).await;
    assert_eq!(value(&text_after, "nerve_connections"), 0.0);
    assert_eq!(value(&text, "nerve_connections_accepted_total"), 1.0);

    let produce = r#"{api="Produce",version="9"}"#;
    assert_eq!(value(&text, &format!("nerve_requests_total{produce}")), 4.0);
    assert_eq!(
        value(
            &text,
            r#"nerve_requests_total{api="CreateTopics",version="7"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&text, r#"nerve_requests_total{api="Fetch",version="12"}"#),
        1.0
    );
    assert_eq!(total(&text, "nerve_requests_total"), 6.0);
    assert_eq!(
        value(
            &text,
            &format!("nerve_request_duration_seconds_count{produce}")
        ),
        4.0
    );
    assert_eq!(total(&text, "nerve_request_duration_seconds_count"), 6.0);

    let bytes = (3 * batch.len()) as f64;
    assert_eq!(
        value(&text, r#"nerve_topic_records_in_total{topic="a"}"#),
        15.0
    );
    assert_eq!(
        value(&text, r#"nerve_topic_bytes_in_total{topic="a"}"#),
        bytes
    );
    assert_eq!(
        value(&text, r#"nerve_topic_records_out_total{topic="a"}"#),
        15.0
    );
    assert_eq!(
        value(&text, r#"nerve_topic_bytes_out_total{topic="a"}"#),
        bytes
    );
    assert_eq!(
        sample(&text, r#"nerve_topic_records_in_total{topic="nowhere"}"#),
        None,
        "a topic that does not exist gets no series"
    );
    assert_eq!(
        value(
            &text,
            r#"nerve_produce_durable_seconds_count{fsync="never"}"#
        ),
        3.0,
        "the test broker's topics default to fsync=never"
    );

    assert_eq!(
        value(
            &text,
            r#"nerve_request_errors_total{api="Produce",error="UNKNOWN_TOPIC_OR_PARTITION"}"#
        ),
        1.0
    );
    assert_eq!(total(&text, "nerve_request_errors_total"), 1.0);
}

/// Connects and sends one request frame with a raw header (`api_key`, `version`, header v1, or v2 with
/// `tagged`) and an empty body.
async fn send_raw(
    broker: &TestBroker,
    api_key: i16,
    version: i16,
    tagged: bool,
) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(broker.addr).await.unwrap();
    let client_id = b"raw-test";
    let mut body = BytesMut::new();
    body.put_i16(api_key);
    body.put_i16(version);
    body.put_i32(7);
    body.put_i16(client_id.len() as i16);
    body.put_slice(client_id);
    if tagged {
        body.put_u8(0);
    }
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.put_slice(&body);
    stream.write_all(&frame).await.unwrap();
    stream
}

/// Waits for the broker to close the connection, having answered `answers` frames before.
async fn expect_close(mut stream: tokio::net::TcpStream, answers: usize) {
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut rest))
        .await
        .expect("the broker closes the connection in time");
    let mut frames = 0;
    let mut buf = &rest[..];
    while buf.len() >= 4 {
        let len = i32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        buf = &buf[(4 + len).min(buf.len())..];
        frames += 1;
    }
    assert!(read.is_ok() || answers == 0);
    assert_eq!(frames, answers);
}

#[tokio::test]
async fn refused_requests_are_counted_under_their_api_name_or_number() {
    let broker = start().await;
    // Produce v1: Kafka 4 dropped it, and so does Nerve.
    expect_close(send_raw(&broker, 0, 1, false).await, 0).await;
    // An API key Kafka does not define.
    expect_close(send_raw(&broker, 9999, 0, false).await, 0).await;
    // ApiVersions at a version from the future is answered (KIP-511), with UNSUPPORTED_VERSION.
    let mut stream = send_raw(&broker, ApiKey::ApiVersions as i16, 99, true).await;
    let len = tokio::time::timeout(PATIENCE, stream.read_i32())
        .await
        .unwrap()
        .unwrap();
    let mut answer = vec![0; len as usize];
    stream.read_exact(&mut answer).await.unwrap();
    drop(stream);

    let text = until(&broker, "nerve_connections", 0.0).await;
    assert_eq!(
        value(&text, r#"nerve_requests_total{api="Produce",version="1"}"#),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"nerve_request_errors_total{api="Produce",error="UNSUPPORTED_VERSION"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&text, r#"nerve_requests_total{api="9999",version="0"}"#),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"nerve_request_errors_total{api="9999",error="UNSUPPORTED_VERSION"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"nerve_request_errors_total{api="ApiVersions",error="UNSUPPORTED_VERSION"}"#
        ),
        1.0
    );
    assert_eq!(total(&text, "nerve_request_duration_seconds_count"), 3.0);
    assert_eq!(value(&text, "nerve_connections_accepted_total"), 3.0);
}
