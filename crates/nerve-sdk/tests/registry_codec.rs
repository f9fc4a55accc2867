//! The registry codecs (JSON, Avro, Protobuf in the schema registry's wire format), against the broker's
//! registry.

mod common;

use std::time::Duration;

use common::{cluster, eventually, receive, registry, unique, Cluster, PATIENCE};
use nerve_sdk::codec::{split_framed, CodecError};
use nerve_sdk::envelope::{Envelope, PublishContext};
use nerve_sdk::{
    dlq, AvroRegistryCodec, Codec, ConsumerBuilder, Event, EventContext, Handler, HandlerError,
    JsonRegistryCodec, ProtobufRegistryCodec, ProtobufSchema, Publisher, RegistryClient,
    RetryPolicy,
};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PriceChanged {
    sku: String,
    cents: u64,
}

impl Event for PriceChanged {
    const NAME: &'static str = "shop.PriceChanged";

    fn key(&self) -> Option<String> {
        Some(self.sku.clone())
    }

    fn json_schema() -> Option<serde_json::Value> {
        Some(json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "title": "PriceChanged",
            "type": "object",
            "properties": {
                "sku": {"type": "string"},
                "cents": {"type": "integer", "minimum": 0}
            },
            "required": ["sku", "cents"]
        }))
    }
}

/// Sends every event it handles down a channel.
struct Collect<E>(mpsc::UnboundedSender<E>);

#[async_trait::async_trait]
impl<E: Event> Handler<E> for Collect<E> {
    async fn handle(&self, _ctx: &EventContext, event: E) -> Result<(), HandlerError> {
        let _ = self.0.send(event);
        Ok(())
    }
}

/// GETs `url` and reads the answer as JSON.
fn get_json(url: &str) -> serde_json::Value {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    serde_json::from_str(
        &agent
            .get(url)
            .call()
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .body_mut()
            .read_to_string()
            .expect("a body"),
    )
    .expect("JSON")
}

/// The latest version under `subject`: its id, type (`AVRO` when the registry leaves it out) and text.
fn latest(registry_url: &str, subject: &str) -> (u32, String, String) {
    let latest = get_json(&format!(
        "{registry_url}/subjects/{subject}/versions/latest"
    ));
    let id = u32::try_from(latest["id"].as_u64().expect("an id")).expect("a u32 id");
    let schema_type = latest["schemaType"].as_str().unwrap_or("AVRO").to_string();
    let text = latest["schema"].as_str().expect("schema text").to_string();
    (id, schema_type, text)
}

/// Consumes `count` events of type `E` from `topic` with `codec`, as a new group.
async fn consume<E: Event, C: Codec>(
    cluster: &Cluster,
    topic: &str,
    codec: C,
    count: usize,
) -> Vec<E> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runtime = ConsumerBuilder::new(&cluster.group_config(&unique("readers")), codec)
        .subscribe(topic)
        .handler(Collect::<E>(tx))
        .start()
        .expect("started");
    let received = receive(&mut rx, count).await;
    runtime.shutdown().await.expect("clean shutdown");
    received
}

async fn publish_all<E: Event, C: Codec>(publisher: &Publisher<C>, events: &[E]) {
    for result in futures::future::join_all(events.iter().map(|e| publisher.publish(e))).await {
        result.expect("published");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_schema_is_registered_once_and_every_value_carries_its_id() {
    let cluster = cluster();
    let (registry_url, _registry) = registry(&cluster);
    let topic = unique("prices");
    cluster.create_topic(&topic, 1).await;
    let registry = RegistryClient::new(&registry_url).expect("registry client");
    let publisher = Publisher::new(
        &cluster.config(),
        &topic,
        JsonRegistryCodec::new(registry.clone()),
    )
    .expect("publisher");
    let events: Vec<PriceChanged> = (0..5)
        .map(|i| PriceChanged {
            sku: format!("sku-{i}"),
            cents: 100 * i,
        })
        .collect();
    publish_all(&publisher, &events).await;
    assert_eq!(
        registry.requests_sent(),
        1,
        "one registration, then the cache"
    );

    // What the registry holds: one version under <topic>-value, the event's schema.
    let versions = get_json(&format!("{registry_url}/subjects/{topic}-value/versions"));
    assert_eq!(versions, json!([1]));
    let (id, schema_type, text) = latest(&registry_url, &format!("{topic}-value"));
    assert_eq!(schema_type, "JSON");
    let schema: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(Some(schema), PriceChanged::json_schema());

    let records = cluster.read_all(&topic);
    assert_eq!(records.len(), events.len());
    for (record, event) in records.iter().zip(&events) {
        let value = record.value.as_deref().expect("a value");
        assert_eq!(value[0], 0, "the magic byte");
        assert_eq!(&value[1..5], &id.to_be_bytes(), "the schema id, big-endian");
        let (framed_id, json) = split_framed(value).expect("framed");
        assert_eq!(framed_id, id);
        assert_eq!(
            serde_json::from_slice::<PriceChanged>(json).expect("JSON"),
            *event
        );
    }

    // A consumer with its own client decodes them, looking the schema up once.
    let reader = RegistryClient::new(&registry_url).expect("registry client");
    let mut received: Vec<PriceChanged> = consume(
        &cluster,
        &topic,
        JsonRegistryCodec::new(reader.clone()),
        events.len(),
    )
    .await;
    // Different keys: handled concurrently, in any order.
    received.sort_by(|a, b| a.sku.cmp(&b.sku));
    assert_eq!(received, events);
    assert_eq!(
        reader.requests_sent(),
        1,
        "one lookup by id, then the cache"
    );
}

// Avro.

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StockCounted {
    sku: String,
    count: i64,
    note: Option<String>,
}

impl Event for StockCounted {
    const NAME: &'static str = "shop.StockCounted";

    fn key(&self) -> Option<String> {
        Some(self.sku.clone())
    }

    fn avro_schema() -> Option<String> {
        Some(
            json!({
                "type": "record",
                "name": "StockCounted",
                "namespace": "shop",
                "fields": [
                    {"name": "sku", "type": "string"},
                    {"name": "count", "type": "long"},
                    {"name": "note", "type": ["null", "string"], "default": null}
                ]
            })
            .to_string(),
        )
    }
}

fn stock(i: i64) -> StockCounted {
    StockCounted {
        sku: format!("sku-{i}"),
        count: i * 1_000_000_007,
        note: (i % 2 == 0).then(|| format!("shelf {i}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn avro_events_round_trip_as_datums_of_the_registered_schema() {
    let cluster = cluster();
    let (registry_url, _registry) = registry(&cluster);
    let topic = unique("stock");
    cluster.create_topic(&topic, 1).await;
    let registry = RegistryClient::new(&registry_url).expect("registry client");
    let publisher = Publisher::new(
        &cluster.config(),
        &topic,
        AvroRegistryCodec::new(registry.clone()),
    )
    .expect("publisher");
    let events: Vec<StockCounted> = (0..5).map(stock).collect();
    publish_all(&publisher, &events).await;
    assert_eq!(registry.requests_sent(), 1, "one registration");

    let (id, schema_type, text) = latest(&registry_url, &format!("{topic}-value"));
    assert_eq!(schema_type, "AVRO");
    // An independent read of each value: apache-avro alone, with the registry's text.
    let schema = apache_avro::Schema::parse_str(&text).expect("an Avro schema");
    let records = cluster.read_all(&topic);
    assert_eq!(records.len(), events.len());
    for (record, event) in records.iter().zip(&events) {
        let value = record.value.as_deref().expect("a value");
        assert_eq!(value[0], 0, "the magic byte");
        assert_eq!(&value[1..5], &id.to_be_bytes(), "the schema id, big-endian");
        let mut datum = &value[5..];
        let read = apache_avro::from_avro_datum(&schema, &mut datum, None).expect("a datum");
        assert!(datum.is_empty(), "one datum, nothing after it");
        let apache_avro::types::Value::Record(fields) = read else {
            panic!("not a record: {read:?}");
        };
        let note = match &event.note {
            Some(note) => apache_avro::types::Value::Union(
                1,
                Box::new(apache_avro::types::Value::String(note.clone())),
            ),
            None => apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
        };
        assert_eq!(
            fields,
            [
                (
                    "sku".to_string(),
                    apache_avro::types::Value::String(event.sku.clone())
                ),
                (
                    "count".to_string(),
                    apache_avro::types::Value::Long(event.count)
                ),
                ("note".to_string(), note),
            ]
        );
    }

    let reader = RegistryClient::new(&registry_url).expect("registry client");
    let mut received: Vec<StockCounted> = consume(
        &cluster,
        &topic,
        AvroRegistryCodec::new(reader.clone()),
        events.len(),
    )
    .await;
    received.sort_by(|a, b| a.sku.cmp(&b.sku));
    assert_eq!(received, events);
    assert_eq!(
        reader.requests_sent(),
        1,
        "one lookup by id, then the cache"
    );
}

/// Version 1 of an evolving event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PriceSetV1 {
    sku: String,
    cents: i64,
}

/// Version 2 adds a field with a default: a BACKWARD-compatible change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PriceSetV2 {
    sku: String,
    cents: i64,
    currency: String,
}

impl Event for PriceSetV1 {
    const NAME: &'static str = "shop.PriceSet";

    fn key(&self) -> Option<String> {
        Some(self.sku.clone())
    }

    fn avro_schema() -> Option<String> {
        Some(
            json!({
                "type": "record", "name": "PriceSet", "namespace": "shop",
                "fields": [
                    {"name": "sku", "type": "string"},
                    {"name": "cents", "type": "long"}
                ]
            })
            .to_string(),
        )
    }
}

impl Event for PriceSetV2 {
    const NAME: &'static str = "shop.PriceSet";
    const VERSION: u32 = 2;

    fn key(&self) -> Option<String> {
        Some(self.sku.clone())
    }

    fn avro_schema() -> Option<String> {
        Some(
            json!({
                "type": "record", "name": "PriceSet", "namespace": "shop",
                "fields": [
                    {"name": "sku", "type": "string"},
                    {"name": "cents", "type": "long"},
                    {"name": "currency", "type": "string", "default": "EUR"}
                ]
            })
            .to_string(),
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn avro_readers_resolve_older_and_newer_writers_to_their_own_schema() {
    let cluster = cluster();
    let (registry_url, _registry) = registry(&cluster);
    let topic = unique("price-set");
    cluster.create_topic(&topic, 1).await;
    let registry = RegistryClient::new(&registry_url).expect("registry client");
    let codec = AvroRegistryCodec::new(registry);
    let publisher = Publisher::new(&cluster.config(), &topic, codec).expect("publisher");
    let old = PriceSetV1 {
        sku: "a".into(),
        cents: 100,
    };
    let new = PriceSetV2 {
        sku: "b".into(),
        cents: 250,
        currency: "USD".into(),
    };
    publisher.publish(&old).await.expect("V1 published");
    publisher.publish(&new).await.expect("V2 published");
    let versions = get_json(&format!("{registry_url}/subjects/{topic}-value/versions"));
    assert_eq!(versions, json!([1, 2]), "V2 is a new, compatible version");

    let url = registry_url.as_str();
    let new_reader = AvroRegistryCodec::new(RegistryClient::new(url).expect("client"));
    let mut read: Vec<PriceSetV2> = consume(&cluster, &topic, new_reader, 2).await;
    read.sort_by(|a, b| a.sku.cmp(&b.sku));
    assert_eq!(
        read,
        [
            PriceSetV2 {
                sku: "a".into(),
                cents: 100,
                currency: "EUR".into(),
            },
            new.clone(),
        ],
        "the V1 record reads with the default"
    );

    let old_reader = AvroRegistryCodec::new(RegistryClient::new(url).expect("client"));
    let mut read: Vec<PriceSetV1> = consume(&cluster, &topic, old_reader, 2).await;
    read.sort_by(|a, b| a.sku.cmp(&b.sku));
    assert_eq!(
        read,
        [
            old,
            PriceSetV1 {
                sku: "b".into(),
                cents: 250,
            },
        ],
        "the V2 record reads without the field V1 lacks"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_after_a_valid_header_is_a_permanent_decode_error() {
    let cluster = cluster();
    let (registry_url, _registry) = registry(&cluster);
    let topic = unique("garbage");
    let registry = RegistryClient::new(&registry_url).expect("registry client");

    let avro = AvroRegistryCodec::new(registry.clone());
    let good = avro.encode(&topic, &stock(2)).await.expect("encoded");
    let header = &good[..5];
    let mut cut = good.clone();
    cut.truncate(good.len() - 1);
    let mut trailing = good.clone();
    trailing.push(0);
    let huge_string = [
        header,
        &[0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01][..],
    ]
    .concat();
    let negative_length = [header, &[0x03, b'x'][..]].concat();
    let bad_union = [header, &[0x02, b'x', 0x02, 0x08][..]].concat();
    for (what, value) in [
        ("a cut datum", cut),
        ("a byte after the datum", trailing),
        ("a string longer than anything", huge_string),
        ("a negative length", negative_length),
        ("a union branch that does not exist", bad_union),
    ] {
        let error = avro
            .decode::<StockCounted>(&topic, &value)
            .await
            .expect_err(what);
        assert!(
            matches!(error, CodecError::AvroDecode { id, .. } if id.to_be_bytes() == header[1..]),
            "{what}: {error}"
        );
        assert!(!error.is_transient(), "{what}");
        assert!(error.to_string().contains("shop.StockCounted"), "{error}");
    }

    let topic = unique("garbage-proto");
    let protobuf = ProtobufRegistryCodec::new(registry);
    let good = protobuf.encode(&topic, &order(1)).await.expect("encoded");
    let header = &good[..5];
    for (what, value) in [
        (
            "an invalid wire type",
            [header, &[0, 0x0f, 0x01][..]].concat(),
        ),
        (
            "a length past the end",
            [header, &[0, 0x0a, 0x7f, b'x'][..]].concat(),
        ),
        (
            "a message index out of range",
            [header, &[2, 0x04][..]].concat(),
        ),
        ("no message indexes", header.to_vec()),
    ] {
        let error = protobuf
            .decode::<OrderPlaced>(&topic, &value)
            .await
            .expect_err(what);
        assert!(
            matches!(error, CodecError::ProtobufDecode { .. }),
            "{what}: {error}"
        );
        assert!(!error.is_transient(), "{what}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_runtime_dead_letters_an_undecodable_avro_record() {
    let cluster = cluster();
    let (registry_url, _registry) = registry(&cluster);
    let topic = unique("stock-poison");
    cluster.create_topic(&topic, 1).await;
    let registry = RegistryClient::new(&registry_url).expect("registry client");
    let codec = AvroRegistryCodec::new(registry);
    let publisher = Publisher::new(&cluster.config(), &topic, codec.clone()).expect("publisher");
    publisher.publish(&stock(1)).await.expect("published");
    // A valid envelope and header, and a body that is no StockCounted.
    let header = codec.encode(&topic, &stock(1)).await.expect("encoded")[..5].to_vec();
    let poison = [&header[..], &[0x03, 0xff][..]].concat();
    let raw: FutureProducer = cluster.config().create().expect("producer");
    let poisoned = raw
        .send(
            FutureRecord::to(&topic)
                .key("sku-1")
                .payload(&poison)
                .headers(
                    Envelope::new(
                        StockCounted::NAME,
                        StockCounted::VERSION,
                        &PublishContext::default(),
                    )
                    .to_headers(),
                ),
            Timeout::After(PATIENCE),
        )
        .await
        .expect("delivered");
    raw.flush(PATIENCE).expect("flushed");
    publisher.publish(&stock(3)).await.expect("published");

    let (tx, mut rx) = mpsc::unbounded_channel();
    let runtime = ConsumerBuilder::new(&cluster.group_config(&unique("stock-readers")), codec)
        .subscribe(&topic)
        .handler(Collect::<StockCounted>(tx))
        .retry(RetryPolicy::none())
        .start()
        .expect("started");
    let mut handled = receive(&mut rx, 2).await;
    handled.sort_by(|a, b| a.sku.cmp(&b.sku));
    assert_eq!(
        handled,
        [stock(1), stock(3)],
        "the events around the poison"
    );
    let dlq_topic = dlq::dlq_topic(&topic);
    eventually("the poison reaches the dead-letter topic", || {
        !cluster.read_all(&dlq_topic).is_empty()
    })
    .await;
    runtime.shutdown().await.expect("clean shutdown");
    let dead = cluster.read_all(&dlq_topic);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].value.as_deref(), Some(&poison[..]));
    assert_eq!(
        dead[0].header(dlq::ORIGINAL_OFFSET),
        Some(poisoned.offset.to_string().as_str())
    );
    assert_eq!(dead[0].header(dlq::ATTEMPTS), Some("1"), "never retried");
    let error = dead[0].header(dlq::ERROR).expect("an error");
    assert!(error.contains("not a valid shop.StockCounted"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_id_of_another_schema_type_is_refused() {
    let cluster = cluster();
    let (registry_url, _registry) = registry(&cluster);
    let topic = unique("mixed");
    let registry = RegistryClient::new(&registry_url).expect("registry client");
    let json_value = JsonRegistryCodec::new(registry.clone())
        .encode(
            &topic,
            &PriceChanged {
                sku: "a".into(),
                cents: 1,
            },
        )
        .await
        .expect("encoded");
    let (id, _) = split_framed(&json_value).expect("framed");

    let error = AvroRegistryCodec::new(registry.clone())
        .decode::<StockCounted>(&topic, &json_value)
        .await
        .expect_err("a JSON id");
    assert!(
        matches!(&error, CodecError::WrongSchemaType { id: i, schema_type, expected: "AVRO" } if *i == id && schema_type == "JSON"),
        "{error}"
    );
    assert!(!error.is_transient());
    let error = ProtobufRegistryCodec::new(registry)
        .decode::<OrderPlaced>(&topic, &json_value)
        .await
        .expect_err("a JSON id");
    assert!(
        matches!(
            &error,
            CodecError::WrongSchemaType {
                expected: "PROTOBUF",
                ..
            }
        ),
        "{error}"
    );
}

// Protobuf.

const SHOP_PROTO: &str = r#"syntax = "proto3";
package shop;

message OrderPlaced {
  string order_id = 1;
  uint64 total_cents = 2;
  repeated string skus = 3;
  bool express = 4;
  Address ship_to = 5;

  message Address {
    string city = 1;
    int32 zip = 2;
  }
}
"#;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: String,
    total_cents: u64,
    skus: Vec<String>,
    express: bool,
    ship_to: Address,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Address {
    city: String,
    zip: i32,
}

impl Event for OrderPlaced {
    const NAME: &'static str = "shop.OrderPlaced";

    fn key(&self) -> Option<String> {
        Some(self.order_id.clone())
    }

    fn protobuf_schema() -> Option<ProtobufSchema> {
        Some(ProtobufSchema {
            proto: SHOP_PROTO,
            message: "shop.OrderPlaced",
        })
    }
}

fn order(i: u64) -> OrderPlaced {
    OrderPlaced {
        order_id: format!("order-{i}"),
        // Past 2^53: a double would round it, so 64-bit integers must not travel as JSON floats.
        total_cents: (1 << 60) + i,
        // Defaults (an empty list, false) are not on the wire and must come back all the same.
        skus: (0..i).map(|n| format!("sku-{n}")).collect(),
        express: i % 2 == 1,
        ship_to: Address {
            city: format!("city-{i}"),
            zip: i32::try_from(i).expect("small"),
        },
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn protobuf_events_round_trip_as_messages_of_the_registered_schema() {
    let cluster = cluster();
    let (registry_url, _registry) = registry(&cluster);
    let topic = unique("orders");
    cluster.create_topic(&topic, 1).await;
    let registry = RegistryClient::new(&registry_url).expect("registry client");
    let publisher = Publisher::new(
        &cluster.config(),
        &topic,
        ProtobufRegistryCodec::new(registry.clone()),
    )
    .expect("publisher");
    let events: Vec<OrderPlaced> = (0..4).map(order).collect();
    publish_all(&publisher, &events).await;
    assert_eq!(registry.requests_sent(), 1, "one registration");

    let (id, schema_type, text) = latest(&registry_url, &format!("{topic}-value"));
    assert_eq!(schema_type, "PROTOBUF");
    // An independent read: the registry's text compiled by protox from a file, each value decoded by
    // prost-reflect.
    let dir = tempfile::tempdir().expect("a directory");
    std::fs::write(dir.path().join("shop.proto"), &text).expect("written");
    let pool = protox::compile(["shop.proto"], [dir.path()]).expect("compiles");
    let pool = prost_reflect::DescriptorPool::from_file_descriptor_set(pool).expect("a pool");
    let descriptor = pool
        .get_message_by_name("shop.OrderPlaced")
        .expect("the message");
    let records = cluster.read_all(&topic);
    assert_eq!(records.len(), events.len());
    for (record, event) in records.iter().zip(&events) {
        let value = record.value.as_deref().expect("a value");
        assert_eq!(value[0], 0, "the magic byte");
        assert_eq!(&value[1..5], &id.to_be_bytes(), "the schema id, big-endian");
        assert_eq!(value[5], 0, "message indexes [0]: the first message");
        let message = prost_reflect::DynamicMessage::decode(descriptor.clone(), &value[6..])
            .expect("a message");
        let field = |name: &str| message.get_field_by_name(name).expect(name).into_owned();
        use prost_reflect::Value;
        assert_eq!(field("order_id"), Value::String(event.order_id.clone()));
        assert_eq!(field("total_cents"), Value::U64(event.total_cents));
        assert_eq!(
            field("skus"),
            Value::List(event.skus.iter().cloned().map(Value::String).collect())
        );
        assert_eq!(field("express"), Value::Bool(event.express));
        let ship_to = field("ship_to");
        let ship_to = ship_to.as_message().expect("a message");
        assert_eq!(
            ship_to.get_field_by_name("city").expect("city").as_str(),
            Some(event.ship_to.city.as_str())
        );
        assert_eq!(
            ship_to.get_field_by_name("zip").expect("zip").as_i32(),
            Some(event.ship_to.zip)
        );
    }

    let reader = RegistryClient::new(&registry_url).expect("registry client");
    let mut received: Vec<OrderPlaced> = consume(
        &cluster,
        &topic,
        ProtobufRegistryCodec::new(reader.clone()),
        events.len(),
    )
    .await;
    received.sort_by(|a, b| a.order_id.cmp(&b.order_id));
    assert_eq!(received, events);
    assert_eq!(
        reader.requests_sent(),
        1,
        "one lookup by id, then the cache"
    );
}

/// A nested message as the event: the value names it by its path, `[0, 0]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct AddressChanged {
    city: String,
    zip: i32,
}

impl Event for AddressChanged {
    const NAME: &'static str = "shop.AddressChanged";

    fn key(&self) -> Option<String> {
        Some(self.city.clone())
    }

    fn protobuf_schema() -> Option<ProtobufSchema> {
        Some(ProtobufSchema {
            proto: SHOP_PROTO,
            message: "shop.OrderPlaced.Address",
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nested_protobuf_message_is_named_by_its_index_path() {
    let cluster = cluster();
    let (registry_url, _registry) = registry(&cluster);
    let topic = unique("addresses");
    let registry = RegistryClient::new(&registry_url).expect("registry client");
    let codec = ProtobufRegistryCodec::new(registry);
    let event = AddressChanged {
        city: "Lyon".into(),
        zip: 69001,
    };
    let value = codec.encode(&topic, &event).await.expect("encoded");
    assert_eq!(&value[5..8], &[4, 0, 0], "count 2, then indexes 0 and 0");
    let decoded: AddressChanged = codec.decode(&topic, &value).await.expect("decoded");
    assert_eq!(decoded, event);

    // A reader of its own: the file from the registry by id, the message by the indexes alone.
    let reader = ProtobufRegistryCodec::new(RegistryClient::new(&registry_url).expect("client"));
    let decoded: AddressChanged = reader.decode(&topic, &value).await.expect("decoded");
    assert_eq!(decoded, event);
}
