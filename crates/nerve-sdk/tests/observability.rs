//! Traces, metrics and logs of the SDK against a real broker: a trace id set by the producer is seen by
//! the consumer and by the events it publishes in turn, the metrics count what happened exactly, and
//! every log line of a handler carries the event's correlation id.
//!
//! The tracing tests install their subscriber as the default of the test's thread and run on a
//! current-thread runtime, so that the handlers (tokio tasks of that runtime) run under it too.

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{cluster, eventually, receive, unique};
use nerve_sdk::envelope::{self, PublishContext, TRACEPARENT};
use nerve_sdk::{
    dlq, trace_context, ConsumerBuilder, Event, EventContext, Handler, HandlerError, JsonCodec,
    Outbox, OutboxRelay, Publisher, RetryPolicy, SdkMetrics,
};
use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt, TraceId, TracerProvider};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Fate {
    #[default]
    Succeed,
    FailTransientlyOnce,
    FailPermanently,
    Panic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order: String,
    #[serde(default)]
    fate: Fate,
}

impl Event for OrderPlaced {
    const NAME: &'static str = "test.OrderPlaced";

    fn key(&self) -> Option<String> {
        Some(self.order.clone())
    }
}

fn order(id: &str, fate: Fate) -> OrderPlaced {
    OrderPlaced {
        order: id.to_string(),
        fate,
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PaymentRequested {
    order: String,
}

impl Event for PaymentRequested {
    const NAME: &'static str = "test.PaymentRequested";

    fn key(&self) -> Option<String> {
        Some(self.order.clone())
    }
}

/// An in-process tracer provider whose finished spans stay in memory, and a subscriber that turns
/// `tracing` spans into its spans.
fn opentelemetry() -> (InMemorySpanExporter, impl tracing::Subscriber + Send + Sync) {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("nerve-sdk-test")));
    (exporter, subscriber)
}

fn finished(exporter: &InMemorySpanExporter, name: &str) -> Vec<SpanData> {
    exporter
        .get_finished_spans()
        .expect("the exporter is running")
        .into_iter()
        .filter(|span| span.name == name)
        .collect()
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

fn span_context(traceparent: &str) -> SpanContext {
    trace_context::parse(traceparent).expect("a valid traceparent")
}

/// What the tracing handler saw.
struct Seen {
    ctx: EventContext,
    /// The trace id of the span the handler ran in.
    trace_id: TraceId,
}

/// Reports what it sees and publishes a follow-up event.
struct Pay {
    seen: mpsc::UnboundedSender<Seen>,
    payments: Publisher<JsonCodec>,
}

#[async_trait::async_trait]
impl Handler<OrderPlaced> for Pay {
    async fn handle(&self, ctx: &EventContext, event: OrderPlaced) -> Result<(), HandlerError> {
        let trace_id = tracing::Span::current()
            .context()
            .span()
            .span_context()
            .trace_id();
        self.payments
            .publish_with(&PaymentRequested { order: event.order }, &ctx.follow_up())
            .await
            .map_err(HandlerError::transient)?;
        let _ = self.seen.send(Seen {
            ctx: ctx.clone(),
            trace_id,
        });
        Ok(())
    }
}

#[tokio::test]
async fn a_trace_id_set_by_the_producer_is_seen_by_the_consumer_and_its_follow_ups() {
    let (exporter, subscriber) = opentelemetry();
    let _default = tracing::subscriber::set_default(subscriber);
    let cluster = cluster();
    let (topic, payments_topic) = (unique("traced"), unique("payments"));
    let group = unique("tracers");
    cluster.create_topic(&topic, 1).await;
    cluster.create_topic(&payments_topic, 1).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");

    let checkout = tracing::info_span!("checkout");
    let checkout_context = checkout.context().span().span_context().clone();
    assert!(checkout_context.is_valid(), "the OpenTelemetry layer is on");
    publisher
        .publish(&order("o-1", Fate::Succeed))
        .instrument(checkout.clone())
        .await
        .expect("published");
    drop(checkout);

    let records = cluster.read_all(&topic);
    let traceparent = records[0]
        .header(TRACEPARENT)
        .expect("a traceparent from the current span")
        .to_string();
    let published = span_context(&traceparent);
    assert_eq!(published.trace_id(), checkout_context.trace_id());
    let publish_span = finished(&exporter, "nerve_sdk.publish")
        .into_iter()
        .find(|s| s.span_context.span_id() == published.span_id())
        .expect("the traceparent names the publish span");
    assert_eq!(publish_span.span_kind, SpanKind::Producer);
    assert_eq!(publish_span.parent_span_id, checkout_context.span_id());
    assert_eq!(
        attribute(&publish_span, "messaging.destination.name"),
        Some(&Value::from(topic.clone()))
    );
    assert_eq!(
        attribute(&publish_span, "messaging.system"),
        Some(&Value::from("kafka"))
    );

    let (seen_tx, mut seen) = mpsc::unbounded_channel();
    let runtime = ConsumerBuilder::new(&cluster.group_config(&group), JsonCodec)
        .subscribe(&topic)
        .handler(Pay {
            seen: seen_tx,
            payments: publisher.to_topic(&payments_topic),
        })
        .start()
        .expect("started");
    let handled = receive(&mut seen, 1).await.remove(0);
    assert_eq!(
        handled.ctx.envelope.traceparent.as_deref(),
        Some(traceparent.as_str())
    );
    assert_eq!(
        handled.trace_id,
        checkout_context.trace_id(),
        "the handler runs in the producer's trace"
    );
    eventually("the handle span ends", || {
        !finished(&exporter, "nerve_sdk.handle").is_empty()
    })
    .await;
    runtime.shutdown().await.expect("clean shutdown");

    let handle_span = finished(&exporter, "nerve_sdk.handle").remove(0);
    assert_eq!(handle_span.span_kind, SpanKind::Consumer);
    assert_eq!(
        handle_span.span_context.trace_id(),
        checkout_context.trace_id()
    );
    assert_eq!(
        handle_span.parent_span_id,
        published.span_id(),
        "a child of the publish span"
    );
    assert!(handle_span.parent_span_is_remote);
    assert!(
        handle_span
            .links
            .iter()
            .any(|link| link.span_context.span_id() == published.span_id()),
        "and linked to it"
    );
    assert_eq!(
        attribute(&handle_span, "messaging.operation.type"),
        Some(&Value::from("process"))
    );
    assert_eq!(
        attribute(&handle_span, "messaging.message.id"),
        Some(&Value::from(handled.ctx.envelope.event_id.to_string()))
    );

    let follow_up = cluster.read_all(&payments_topic);
    let follow_up = span_context(follow_up[0].header(TRACEPARENT).expect("a traceparent"));
    assert_eq!(
        follow_up.trace_id(),
        checkout_context.trace_id(),
        "the follow-up continues the trace"
    );
    let follow_up_span = finished(&exporter, "nerve_sdk.publish")
        .into_iter()
        .find(|s| s.span_context.span_id() == follow_up.span_id())
        .expect("the follow-up's traceparent names its publish span");
    assert_eq!(
        follow_up_span.parent_span_id,
        handle_span.span_context.span_id(),
        "published from within the handle span"
    );
    assert!(
        !follow_up_span.parent_span_is_remote,
        "its parent is the local handle span, not a copy of it"
    );
}

#[tokio::test]
async fn with_opentelemetry_an_explicit_traceparent_is_the_parent_of_the_publish_span() {
    let (exporter, subscriber) = opentelemetry();
    let _default = tracing::subscriber::set_default(subscriber);
    let cluster = cluster();
    let topic = unique("explicitly-traced");
    cluster.create_topic(&topic, 1).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    // Say, from an HTTP request's header, while the current span belongs to another trace.
    let explicit = envelope::new_traceparent();
    publisher
        .publish_with(
            &order("o-1", Fate::Succeed),
            &PublishContext::default().with_traceparent(&explicit),
        )
        .instrument(tracing::info_span!("checkout"))
        .await
        .expect("published");

    let explicit = span_context(&explicit);
    let records = cluster.read_all(&topic);
    let published = span_context(records[0].header(TRACEPARENT).expect("a traceparent"));
    assert_eq!(published.trace_id(), explicit.trace_id());
    let publish_span = finished(&exporter, "nerve_sdk.publish").remove(0);
    assert_eq!(publish_span.span_context.span_id(), published.span_id());
    assert_eq!(publish_span.parent_span_id, explicit.span_id());
}

#[tokio::test]
async fn without_opentelemetry_an_explicit_traceparent_travels_unchanged() {
    // Spans are on (a fmt subscriber), but they have no OpenTelemetry context.
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(std::io::sink)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let cluster = cluster();
    let topic = unique("untraced");
    cluster.create_topic(&topic, 1).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    let explicit = envelope::new_traceparent();
    publisher
        .publish_with(
            &order("o-1", Fate::Succeed),
            &PublishContext::default().with_traceparent(&explicit),
        )
        .instrument(tracing::info_span!("checkout"))
        .await
        .expect("published");
    publisher
        .publish(&order("o-2", Fate::Succeed))
        .instrument(tracing::info_span!("checkout"))
        .await
        .expect("published");
    let records = cluster.read_all(&topic);
    assert_eq!(records[0].header(TRACEPARENT), Some(explicit.as_str()));
    assert_eq!(
        records[1].header(TRACEPARENT),
        None,
        "no trace context, no traceparent"
    );
}

#[tokio::test]
async fn the_outbox_records_the_trace_of_the_enqueueing_span() {
    let (exporter, subscriber) = opentelemetry();
    let _default = tracing::subscriber::set_default(subscriber);
    let cluster = cluster();
    let topic = unique("traced-outbox");
    cluster.create_topic(&topic, 1).await;
    let schema = common::pg::Schema::create().await;
    let table = schema.table("outbox");
    let outbox = Outbox::new(JsonCodec).with_table(&table).expect("a name");
    let relay = OutboxRelay::new(&cluster.config())
        .expect("relay")
        .with_table(&table)
        .expect("a name");
    let mut client = common::pg::connect().await;
    outbox.ensure_schema(&client).await.expect("outbox table");

    let place_order = tracing::info_span!("place-order");
    let trace_id = place_order.context().span().span_context().trace_id();
    async {
        let tx = client.transaction().await.expect("transaction");
        outbox
            .enqueue(&tx, &topic, &order("o-1", Fate::Succeed))
            .await
            .expect("enqueued");
        tx.commit().await.expect("committed");
    }
    .instrument(place_order)
    .await;
    assert_eq!(relay.relay_once(&mut client).await.expect("relayed"), 1);

    let records = cluster.read_all(&topic);
    let relayed = span_context(records[0].header(TRACEPARENT).expect("a traceparent"));
    assert_eq!(relayed.trace_id(), trace_id);
    let enqueue_span = finished(&exporter, "nerve_sdk.enqueue").remove(0);
    assert_eq!(enqueue_span.span_context.span_id(), relayed.span_id());
    assert_eq!(enqueue_span.span_kind, SpanKind::Producer);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_outbox_relay_counts_relayed_rows_and_failed_batches() {
    let cluster = cluster();
    let topic = unique("measured-outbox");
    cluster.create_topic(&topic, 1).await;
    let schema = common::pg::Schema::create().await;
    let table = schema.table("outbox");
    let mut registry = Registry::default();
    let metrics = SdkMetrics::register(&mut registry);
    let outbox = Outbox::new(JsonCodec).with_table(&table).expect("a name");
    let relay = OutboxRelay::new(&cluster.config())
        .expect("relay")
        .with_table(&table)
        .expect("a name")
        .with_metrics(metrics);
    let mut client = common::pg::connect().await;
    outbox.ensure_schema(&client).await.expect("outbox table");

    let tx = client.transaction().await.expect("transaction");
    for n in 0..3 {
        let event = order(&format!("o-{n}"), Fate::Succeed);
        outbox.enqueue(&tx, &topic, &event).await.expect("enqueued");
    }
    tx.commit().await.expect("committed");
    assert_eq!(relay.relay_once(&mut client).await.expect("relayed"), 3);
    assert_eq!(
        relay.relay_once(&mut client).await.expect("nothing left"),
        0
    );
    // A batch that cannot even be claimed: its table is gone.
    client
        .batch_execute(&format!("DROP TABLE {table}"))
        .await
        .expect("dropped");
    assert!(relay.relay_once(&mut client).await.is_err());

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).expect("encoded");
    let labels = format!("{{table=\"{table}\"}}");
    assert_eq!(
        value(
            &text,
            &format!("nerve_sdk_outbox_relayed_rows_total{labels}")
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            &format!("nerve_sdk_outbox_batch_failures_total{labels}")
        ),
        Some(1.0),
        "{text}"
    );
}

/// Does what each order's fate says; reports successes.
struct Fated {
    handled: mpsc::UnboundedSender<String>,
    attempts: Arc<AtomicU32>,
}

#[async_trait::async_trait]
impl Handler<OrderPlaced> for Fated {
    async fn handle(&self, ctx: &EventContext, event: OrderPlaced) -> Result<(), HandlerError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        match event.fate {
            Fate::FailTransientlyOnce if ctx.attempt == 1 => {
                return Err(HandlerError::transient("busy"))
            }
            Fate::FailPermanently => return Err(HandlerError::permanent("no such product")),
            Fate::Panic => panic!("the handler broke"),
            _ => {}
        }
        tracing::info!(order = %event.order, "charging the card");
        let _ = self.handled.send(event.order);
        Ok(())
    }

    fn name(&self) -> String {
        "fated".to_string()
    }
}

fn fated() -> (Fated, mpsc::UnboundedReceiver<String>, Arc<AtomicU32>) {
    let (handled, rx) = mpsc::unbounded_channel();
    let attempts = Arc::new(AtomicU32::new(0));
    let handler = Fated {
        handled,
        attempts: Arc::clone(&attempts),
    };
    (handler, rx, attempts)
}

fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).expect("encodes");
    text
}

/// The value of the series `name{labels}` in `text`, if it is there.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn metrics_count_what_the_runtime_and_the_publisher_did() {
    let cluster = cluster();
    let topic = unique("measured");
    let group = unique("measurers");
    cluster.create_topic(&topic, 1).await;
    let mut registry = Registry::default();
    let metrics = SdkMetrics::register(&mut registry);
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec)
        .expect("publisher")
        .with_metrics(metrics.clone());
    let fates = [
        Fate::Succeed,
        Fate::FailTransientlyOnce,
        Fate::Succeed,
        Fate::FailPermanently,
        Fate::Panic,
        Fate::Succeed,
    ];
    for (i, fate) in fates.into_iter().enumerate() {
        publisher
            .publish(&order(&format!("o-{i}"), fate))
            .await
            .expect("published");
    }

    let (handler, mut handled, attempts) = fated();
    let mut config = cluster.group_config(&group);
    config.set("statistics.interval.ms", "200");
    let runtime = ConsumerBuilder::new(&config, JsonCodec)
        .subscribe(&topic)
        .handler(handler)
        .retry(RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(20),
            max_backoff: Duration::from_millis(100),
            multiplier: 2.0,
        })
        .commit_interval(Duration::from_millis(100))
        .metrics(metrics)
        .start()
        .expect("started");
    receive(&mut handled, 4).await;

    let labels = format!(r#"topic="{topic}",event_type="test.OrderPlaced""#);
    let handler_labels = format!(r#"{labels},handler="fated""#);
    let lag = format!(r#"nerve_sdk_consumer_lag{{topic="{topic}",partition="0"}}"#);
    eventually("both dead letters are counted", || {
        value(
            &encode(&registry),
            &format!("nerve_sdk_events_dead_lettered_total{{{handler_labels}}}"),
        ) == Some(2.0)
    })
    .await;
    eventually("the lag is down to 0", || {
        value(&encode(&registry), &lag) == Some(0.0)
    })
    .await;

    let text = encode(&registry);
    let expected = [
        (format!("nerve_sdk_events_published_total{{{labels}}}"), 6.0),
        (format!("nerve_sdk_publish_errors_total{{{labels}}}"), 0.0),
        (
            format!("nerve_sdk_events_handled_total{{{handler_labels}}}"),
            4.0,
        ),
        (
            format!(r#"nerve_sdk_events_failed_total{{{handler_labels},kind="transient"}}"#),
            1.0,
        ),
        (
            format!(r#"nerve_sdk_events_failed_total{{{handler_labels},kind="permanent"}}"#),
            1.0,
        ),
        (
            format!(r#"nerve_sdk_events_failed_total{{{handler_labels},kind="panic"}}"#),
            1.0,
        ),
        (
            format!("nerve_sdk_events_retried_total{{{handler_labels}}}"),
            1.0,
        ),
        (
            format!("nerve_sdk_handler_duration_seconds_count{{{handler_labels}}}"),
            f64::from(attempts.load(Ordering::SeqCst)),
        ),
    ];
    for (series, expected) in &expected {
        assert_eq!(value(&text, series), Some(*expected), "{series} in\n{text}");
    }
    assert_eq!(attempts.load(Ordering::SeqCst), 7, "6 events, 1 retry");
    assert_eq!(cluster.read_all(&dlq::dlq_topic(&topic)).len(), 2);

    runtime.shutdown().await.expect("clean shutdown");
    assert_eq!(
        value(&encode(&registry), &lag),
        None,
        "a partition given up has no lag series"
    );
}

/// A `MakeWriter` into a shared buffer.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .expect("not poisoned")
            .extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().expect("not poisoned")).into_owned()
    }
}

#[tokio::test]
async fn every_log_line_of_a_handler_carries_the_correlation_id() {
    let logs = Buffer::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer({
            let logs = logs.clone();
            move || logs.clone()
        })
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);
    let cluster = cluster();
    let topic = unique("logged");
    let group = unique("loggers");
    cluster.create_topic(&topic, 1).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    publisher
        .publish_with(
            &order("o-1", Fate::Succeed),
            &PublishContext::default().with_correlation_id("checkout-77"),
        )
        .await
        .expect("published");

    let (handler, mut handled, _) = fated();
    let runtime = ConsumerBuilder::new(&cluster.group_config(&group), JsonCodec)
        .subscribe(&topic)
        .handler(handler)
        .start()
        .expect("started");
    receive(&mut handled, 1).await;
    runtime.shutdown().await.expect("clean shutdown");

    let text = logs.text();
    for message in ["charging the card", "published"] {
        let line = text
            .lines()
            .find(|line| line.contains(message))
            .unwrap_or_else(|| panic!("no line {message:?} in\n{text}"));
        assert!(
            line.contains("correlation_id=checkout-77"),
            "no correlation id in {line:?}"
        );
    }
}
