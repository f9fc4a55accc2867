//! Broker-side schema validation with a real Kafka client (librdkafka) against `nerve serve`: topics with
//! `confluent.value.schema.validation` / `confluent.key.schema.validation` accept only records in the
//! schema registry's wire format whose schema is registered under the topic's subject and whose payload
//! decodes with it; other topics accept anything.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{create_topic, create_topic_with_configs, Nerve, PATIENCE};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// POSTs a JSON body to the registry and returns the status and body (plain HTTP/1.1, one request per
/// connection: enough for a test, and no client library between the test and the server).
fn post_json(nerve: &Nerve, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", nerve.registry_port)).expect("registry up");
    stream.set_read_timeout(Some(PATIENCE)).expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("request sent");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("answer read");
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

fn register(nerve: &Nerve, subject: &str, schema: &str) -> u32 {
    let body = serde_json::json!({ "schema": schema }).to_string();
    let (status, answer) = post_json(nerve, &format!("/subjects/{subject}/versions"), &body);
    assert_eq!(status, 200, "{answer}");
    let value: serde_json::Value = serde_json::from_str(&answer).expect("JSON");
    u32::try_from(value["id"].as_u64().expect("an id")).expect("fits")
}

const VIEW: &str = r#"{"type":"record","name":"View","fields":[{"name":"user","type":"string"},{"name":"count","type":"int"}]}"#;
const OTHER: &str =
    r#"{"type":"record","name":"Other","fields":[{"name":"flag","type":"boolean"}]}"#;

/// `View{user: "ann", count: 2}` in Avro's binary encoding: zigzag lengths and ints.
const VIEW_PAYLOAD: &[u8] = &[0x06, b'a', b'n', b'n', 0x04];

/// The registry's wire format: magic byte 0, the schema id big-endian, the payload.
fn framed(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

fn producer(nerve: &Nerve) -> FutureProducer {
    // One record per batch and no retries, so that each send is judged on its own.
    common::producer(
        nerve,
        &[
            ("linger.ms", "0"),
            ("batch.num.messages", "1"),
            ("enable.idempotence", "false"),
            ("retries", "0"),
        ],
    )
}

/// Sends one record to partition 0 and returns its offset or the error code.
fn send(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&[u8]>,
    value: Option<&[u8]>,
) -> Result<i64, RDKafkaErrorCode> {
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).partition(0);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(value) = value {
        record = record.payload(value);
    }
    let delivery = producer
        .send_result(record)
        .map_err(|(e, _)| e)
        .expect("queued");
    match futures::executor::block_on(delivery).expect("delivery reported") {
        Ok(delivered) => Ok(delivered.offset),
        Err((KafkaError::MessageProduction(code), _)) => Err(code),
        Err((e, _)) => panic!("unexpected error {e}"),
    }
}

#[test]
fn validated_values_must_carry_a_registered_schema_they_decode_with() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    let topic = "views";
    create_topic_with_configs(
        &nerve.bootstrap(),
        topic,
        1,
        &[("confluent.value.schema.validation", "true")],
    );
    let id = register(&nerve, "views-value", VIEW);
    let other_id = register(&nerve, "elsewhere-value", OTHER);
    let producer = producer(&nerve);

    assert_eq!(
        send(&producer, topic, None, Some(&framed(id, VIEW_PAYLOAD))),
        Ok(0)
    );
    // Tombstones carry no value to judge.
    assert_eq!(send(&producer, topic, Some(b"k"), None), Ok(1));

    let invalid = RDKafkaErrorCode::InvalidRecord;
    // Not in the wire format at all.
    assert_eq!(
        send(&producer, topic, None, Some(b"plain text")),
        Err(invalid)
    );
    // An id nobody registered.
    assert_eq!(
        send(&producer, topic, None, Some(&framed(9999, VIEW_PAYLOAD))),
        Err(invalid)
    );
    // An id registered, but under another subject.
    assert_eq!(
        send(&producer, topic, None, Some(&framed(other_id, &[1]))),
        Err(invalid)
    );
    // The right id, a payload that does not decode (cut short, and with bytes left over).
    assert_eq!(
        send(
            &producer,
            topic,
            None,
            Some(&framed(id, &VIEW_PAYLOAD[..3]))
        ),
        Err(invalid)
    );
    let mut trailing = VIEW_PAYLOAD.to_vec();
    trailing.push(0);
    assert_eq!(
        send(&producer, topic, None, Some(&framed(id, &trailing))),
        Err(invalid)
    );

    // Nothing refused was stored: the next good record follows the two accepted ones.
    assert_eq!(
        send(&producer, topic, None, Some(&framed(id, VIEW_PAYLOAD))),
        Ok(2)
    );
    let stored = common::read_all(&nerve.bootstrap(), topic, 1);
    assert_eq!(stored[0].len(), 3);
}

#[test]
fn validated_keys_are_checked_against_the_key_subject() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    let topic = "keyed";
    create_topic_with_configs(
        &nerve.bootstrap(),
        topic,
        1,
        &[("confluent.key.schema.validation", "true")],
    );
    let key_id = register(&nerve, "keyed-key", r#""string""#);
    let producer = producer(&nerve);
    // "ann" as an Avro string; values are not validated on this topic.
    let key = framed(key_id, &[0x06, b'a', b'n', b'n']);
    assert_eq!(send(&producer, topic, Some(&key), Some(b"anything")), Ok(0));
    assert_eq!(send(&producer, topic, None, Some(b"null keys pass")), Ok(1));
    assert_eq!(
        send(&producer, topic, Some(b"raw key"), Some(b"x")),
        Err(RDKafkaErrorCode::InvalidRecord)
    );
    // The same schema registered for the value subject does not make it a key schema.
    let value_only = register(&nerve, "keyed-value", r#""int""#);
    assert_eq!(
        send(
            &producer,
            topic,
            Some(&framed(value_only, &[0x04])),
            Some(b"x")
        ),
        Err(RDKafkaErrorCode::InvalidRecord)
    );
}

#[test]
fn topics_without_validation_accept_anything_and_validation_follows_config_changes() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "free", 1);
    let producer = producer(&nerve);
    assert_eq!(
        send(&producer, "free", Some(b"k"), Some(b"not framed")),
        Ok(0)
    );

    // Turning validation on with an AlterConfigs applies to the next produce, and survives a restart.
    alter(&nerve, "free", "true");
    assert_eq!(
        send(&producer, "free", None, Some(b"not framed")),
        Err(RDKafkaErrorCode::InvalidRecord)
    );
    drop(producer);
    let port = nerve.port;
    nerve.stop();
    let nerve = Nerve::start_on(dir.path(), port, &[]);
    let producer = self::producer(&nerve);
    assert_eq!(
        send(&producer, "free", None, Some(b"not framed")),
        Err(RDKafkaErrorCode::InvalidRecord)
    );
    alter(&nerve, "free", "false");
    assert_eq!(send(&producer, "free", None, Some(b"not framed")), Ok(1));
}

fn alter(nerve: &Nerve, topic: &str, value: &str) {
    use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::config::ClientConfig;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", nerve.bootstrap())
        .create()
        .expect("admin client");
    let config = AlterConfig::new(ResourceSpecifier::Topic(topic))
        .set("confluent.value.schema.validation", value);
    let results = futures::executor::block_on(admin.alter_configs(
        [&config],
        &AdminOptions::new().operation_timeout(Some(PATIENCE)),
    ))
    .expect("answered");
    for result in results {
        result.expect("altered");
    }
}
