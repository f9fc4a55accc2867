//! The JSON codec in the schema registry's wire format, against the broker's registry.

mod common;

use std::time::Duration;

use common::{cluster, receive, unique};
use nerve_sdk::codec::split_framed;
use nerve_sdk::{
    ConsumerBuilder, Event, EventContext, Handler, HandlerError, JsonRegistryCodec, Publisher,
    RegistryClient,
};
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

struct Collect(mpsc::UnboundedSender<PriceChanged>);

#[async_trait::async_trait]
impl Handler<PriceChanged> for Collect {
    async fn handle(&self, _ctx: &EventContext, event: PriceChanged) -> Result<(), HandlerError> {
        let _ = self.0.send(event);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_schema_is_registered_once_and_every_value_carries_its_id() {
    let cluster = cluster();
    let Some(registry_url) = cluster.registry_url.clone() else {
        eprintln!("skipped: NERVE_TEST_BOOTSTRAP is set without NERVE_TEST_REGISTRY_URL");
        return;
    };
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
    let sends = events.iter().map(|e| publisher.publish(e));
    for result in futures::future::join_all(sends).await {
        result.expect("published");
    }
    assert_eq!(
        registry.requests_sent(),
        1,
        "one registration, then the cache"
    );

    // What the registry holds: one version under <topic>-value, the event's schema.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let versions: Vec<u32> = serde_json::from_str(
        &agent
            .get(format!("{registry_url}/subjects/{topic}-value/versions"))
            .call()
            .expect("versions")
            .body_mut()
            .read_to_string()
            .expect("a body"),
    )
    .expect("JSON");
    assert_eq!(versions, [1]);
    let latest: serde_json::Value = serde_json::from_str(
        &agent
            .get(format!(
                "{registry_url}/subjects/{topic}-value/versions/latest"
            ))
            .call()
            .expect("latest")
            .body_mut()
            .read_to_string()
            .expect("a body"),
    )
    .expect("JSON");
    assert_eq!(latest["schemaType"], "JSON");
    let id = u32::try_from(latest["id"].as_u64().expect("an id")).expect("a u32 id");
    let schema: serde_json::Value =
        serde_json::from_str(latest["schema"].as_str().expect("schema text")).expect("JSON");
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
    let (tx, mut rx) = mpsc::unbounded_channel();
    let runtime = ConsumerBuilder::new(
        &cluster.group_config(&unique("price-readers")),
        JsonRegistryCodec::new(reader.clone()),
    )
    .subscribe(&topic)
    .handler(Collect(tx))
    .start()
    .expect("started");
    let mut received = receive(&mut rx, events.len()).await;
    runtime.shutdown().await.expect("clean shutdown");
    // Different keys: handled concurrently, in any order.
    received.sort_by(|a, b| a.sku.cmp(&b.sku));
    assert_eq!(received, events);
    assert_eq!(
        reader.requests_sent(),
        1,
        "one lookup by id, then the cache"
    );
}
