//! The SDK's metrics, in a `prometheus_client` registry the service owns and serves.
//!
//! [`SdkMetrics::register`] adds the families below to the registry; the same `SdkMetrics` (a cheap
//! clone) goes to [`crate::ConsumerBuilder::metrics`] and [`crate::Publisher::with_metrics`]. Labels are
//! bounded by what the service declares: topics, event types and handler names, never event ids or keys.
//!
//! | Metric                                  | Type      | Labels                             |
//! |-----------------------------------------|-----------|------------------------------------|
//! | `nerve_sdk_events_handled_total`        | counter   | topic, event_type, handler         |
//! | `nerve_sdk_events_failed_total`         | counter   | topic, event_type, handler, kind   |
//! | `nerve_sdk_events_retried_total`        | counter   | topic, event_type, handler         |
//! | `nerve_sdk_events_dead_lettered_total`  | counter   | topic, event_type, handler         |
//! | `nerve_sdk_handler_duration_seconds`    | histogram | topic, event_type, handler         |
//! | `nerve_sdk_events_published_total`      | counter   | topic, event_type                  |
//! | `nerve_sdk_publish_errors_total`        | counter   | topic, event_type                  |
//! | `nerve_sdk_consumer_lag`                | gauge     | topic, partition                   |
//! | `nerve_sdk_outbox_relayed_rows_total`   | counter   | table                              |
//! | `nerve_sdk_outbox_batch_failures_total` | counter   | table                              |
//!
//! `kind` is `transient`, `permanent` or `panic`. A failed attempt counts in `failed`; one that is tried
//! again, in place or by moving the record to a retry topic, also in `retried`. The duration histogram has one observation per attempt, failed or not. A
//! dead letter of a record without a valid envelope counts with `event_type="unknown"`, `handler="none"`.
//! The lag is librdkafka's view (`consumer_lag` in its statistics: the end of the partition, its last
//! stable offset under librdkafka's default `read_committed`, minus the group's committed offset),
//! refreshed every `statistics.interval.ms`, for the partitions this consumer owns; a partition on which
//! the group has committed nothing yet has no lag series (librdkafka reports -1).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use rdkafka::message::{Message, OwnedMessage};
use serde::Deserialize;

use crate::consumer::Failure;
use crate::envelope::{header_text, EVENT_TYPE};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HandlerLabels {
    topic: String,
    event_type: String,
    handler: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    topic: String,
    event_type: String,
    handler: String,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PublishLabels {
    topic: String,
    event_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabels {
    table: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

/// Handler durations from 1 ms to about 65 s.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

struct Families {
    handled: Family<HandlerLabels, Counter>,
    failed: Family<FailureLabels, Counter>,
    retried: Family<HandlerLabels, Counter>,
    dead_lettered: Family<HandlerLabels, Counter>,
    handler_duration: Family<HandlerLabels, Histogram, fn() -> Histogram>,
    published: Family<PublishLabels, Counter>,
    publish_errors: Family<PublishLabels, Counter>,
    consumer_lag: Family<PartitionLabels, Gauge>,
    outbox_relayed: Family<TableLabels, Counter>,
    outbox_failures: Family<TableLabels, Counter>,
}

/// The SDK's metric families, registered in a service's registry. Cheap to clone: clones share the
/// families.
#[derive(Clone)]
pub struct SdkMetrics {
    families: Arc<Families>,
}

impl std::fmt::Debug for SdkMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SdkMetrics").finish_non_exhaustive()
    }
}

impl SdkMetrics {
    /// Registers the SDK's families in `registry` (names in the [module docs](self)). Register once per
    /// registry: a second registration would make every family appear twice when encoded.
    pub fn register(registry: &mut Registry) -> SdkMetrics {
        let families = Families {
            handled: Family::default(),
            failed: Family::default(),
            retried: Family::default(),
            dead_lettered: Family::default(),
            handler_duration: Family::new_with_constructor(duration_histogram),
            published: Family::default(),
            publish_errors: Family::default(),
            consumer_lag: Family::default(),
            outbox_relayed: Family::default(),
            outbox_failures: Family::default(),
        };
        registry.register(
            "nerve_sdk_events_handled",
            "Events whose handler succeeded",
            families.handled.clone(),
        );
        registry.register(
            "nerve_sdk_events_failed",
            "Handler attempts that failed, by kind (transient, permanent, panic)",
            families.failed.clone(),
        );
        registry.register(
            "nerve_sdk_events_retried",
            "Failed attempts that are tried again, after a backoff or in a retry topic",
            families.retried.clone(),
        );
        registry.register(
            "nerve_sdk_events_dead_lettered",
            "Records stored in their dead-letter topic",
            families.dead_lettered.clone(),
        );
        registry.register_with_unit(
            "nerve_sdk_handler_duration",
            "How long one handler attempt took, failed or not",
            Unit::Seconds,
            families.handler_duration.clone(),
        );
        registry.register(
            "nerve_sdk_events_published",
            "Events the broker stored for the publisher",
            families.published.clone(),
        );
        registry.register(
            "nerve_sdk_publish_errors",
            "Events the publisher could not publish",
            families.publish_errors.clone(),
        );
        registry.register(
            "nerve_sdk_consumer_lag",
            "Records behind the high watermark, per assigned partition, as the consumer last saw it",
            families.consumer_lag.clone(),
        );
        registry.register(
            "nerve_sdk_outbox_relayed_rows",
            "Outbox rows the relay published and marked sent",
            families.outbox_relayed.clone(),
        );
        registry.register(
            "nerve_sdk_outbox_batch_failures",
            "Outbox batches the relay could not publish or mark sent (their rows go out with a later batch)",
            families.outbox_failures.clone(),
        );
        SdkMetrics {
            families: Arc::new(families),
        }
    }

    /// Counts a relayed outbox batch of `rows` rows from `table`.
    #[cfg(feature = "postgres")]
    pub(crate) fn outbox_relayed(&self, table: &str, rows: usize) {
        let labels = TableLabels {
            table: table.to_string(),
        };
        self.families
            .outbox_relayed
            .get_or_create(&labels)
            .inc_by(u64::try_from(rows).unwrap_or(u64::MAX));
    }

    /// Counts an outbox batch from `table` that failed.
    #[cfg(feature = "postgres")]
    pub(crate) fn outbox_failed(&self, table: &str) {
        let labels = TableLabels {
            table: table.to_string(),
        };
        self.families.outbox_failures.get_or_create(&labels).inc();
    }
}

/// The series of one (topic, event type, handler): looked up once, then counting is atomic adds.
struct HandlerSeries {
    handled: Counter,
    /// transient, permanent, panic.
    failed: [Counter; 3],
    retried: Counter,
    dead_lettered: Counter,
    duration: Histogram,
}

impl HandlerSeries {
    fn new(families: &Families, topic: &str, event_type: &str, handler: &str) -> HandlerSeries {
        let labels = HandlerLabels {
            topic: topic.to_string(),
            event_type: event_type.to_string(),
            handler: handler.to_string(),
        };
        let failed = |kind: &'static str| {
            families.failed.get_or_create_owned(&FailureLabels {
                topic: labels.topic.clone(),
                event_type: labels.event_type.clone(),
                handler: labels.handler.clone(),
                kind,
            })
        };
        HandlerSeries {
            failed: [failed("transient"), failed("permanent"), failed("panic")],
            handled: families.handled.get_or_create_owned(&labels),
            retried: families.retried.get_or_create_owned(&labels),
            dead_lettered: families.dead_lettered.get_or_create_owned(&labels),
            duration: families.handler_duration.get_or_create_owned(&labels),
        }
    }
}

/// A consumer runtime's metrics: the families, and the series of its handlers found by topic and event
/// type without building a label set per record (one handler per event type in a runtime).
pub(crate) struct ConsumerMetrics {
    metrics: SdkMetrics,
    series: RwLock<HashMap<String, HashMap<String, Arc<HandlerSeries>>>>,
}

impl ConsumerMetrics {
    pub(crate) fn new(metrics: SdkMetrics) -> ConsumerMetrics {
        ConsumerMetrics {
            metrics,
            series: RwLock::new(HashMap::new()),
        }
    }

    fn series(&self, topic: &str, event_type: &str, handler: &str) -> Arc<HandlerSeries> {
        // The maps only ever grow by whole entries, so a panic while one was held leaves them usable.
        if let Some(found) = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(topic)
            .and_then(|types| types.get(event_type))
        {
            return Arc::clone(found);
        }
        let mut series = self.series.write().unwrap_or_else(PoisonError::into_inner);
        let entry = series
            .entry(topic.to_string())
            .or_default()
            .entry(event_type.to_string())
            .or_insert_with(|| {
                Arc::new(HandlerSeries::new(
                    &self.metrics.families,
                    topic,
                    event_type,
                    handler,
                ))
            });
        Arc::clone(entry)
    }

    /// Sets the lag of the partitions in librdkafka's statistics `json` that `owned` says this consumer
    /// owns; others (revoked meanwhile, or librdkafka's internal partition -1) and unknown lags (-1) are
    /// left alone.
    pub(crate) fn record_lag(&self, json: &[u8], owned: impl Fn(&str, i32) -> bool) {
        let stats: Stats = match serde_json::from_slice(json) {
            Ok(stats) => stats,
            Err(e) => {
                tracing::debug!(error = %e, "librdkafka statistics not understood: lag not updated");
                return;
            }
        };
        for (topic, topic_stats) in &stats.topics {
            for partition in topic_stats.partitions.values() {
                if partition.partition < 0 || partition.consumer_lag < 0 {
                    continue;
                }
                if owned(topic, partition.partition) {
                    self.metrics
                        .families
                        .consumer_lag
                        .get_or_create(&PartitionLabels {
                            topic: topic.clone(),
                            partition: partition.partition,
                        })
                        .set(partition.consumer_lag);
                }
            }
        }
    }

    /// Removes the lag series of partitions this consumer no longer owns: another member reports them.
    pub(crate) fn forget_lag<'a>(&self, partitions: impl IntoIterator<Item = (&'a str, i32)>) {
        for (topic, partition) in partitions {
            self.metrics.families.consumer_lag.remove(&PartitionLabels {
                topic: topic.to_string(),
                partition,
            });
        }
    }

    /// Counts the dead letter of `record` once it is stored; `handler` is `none` for a record that never
    /// reached one.
    pub(crate) fn dead_lettered(&self, record: &OwnedMessage, handler: &str) {
        // Rare enough to read the header again rather than carry the envelope here.
        let event_type = record
            .headers()
            .and_then(|headers| header_text(headers, EVENT_TYPE).ok().flatten());
        match event_type {
            Some(event_type) => self
                .series(record.topic(), &event_type, handler)
                .dead_lettered
                .inc(),
            // Not cached: `unknown` is not one handler's event type.
            None => self
                .metrics
                .families
                .dead_lettered
                .get_or_create(&HandlerLabels {
                    topic: record.topic().to_string(),
                    event_type: "unknown".to_string(),
                    handler: handler.to_string(),
                })
                .inc(),
        };
    }

    pub(crate) fn handler(&self, topic: &str, event_type: &str, handler: &str) -> HandlerMetrics {
        HandlerMetrics(Some(self.series(topic, event_type, handler)))
    }
}

/// What the consumer runtime counts about one record's attempts; does nothing when the runtime has no
/// metrics.
pub(crate) struct HandlerMetrics(Option<Arc<HandlerSeries>>);

impl HandlerMetrics {
    pub(crate) fn of(
        metrics: Option<&ConsumerMetrics>,
        topic: &str,
        event_type: &str,
        handler: &str,
    ) -> HandlerMetrics {
        match metrics {
            Some(metrics) => metrics.handler(topic, event_type, handler),
            None => HandlerMetrics(None),
        }
    }

    /// One attempt over: its duration, and its success or the kind of its failure (`Err`: a panic).
    pub(crate) fn attempt<P>(&self, elapsed: Duration, outcome: &Result<Result<(), Failure>, P>) {
        let Some(series) = &self.0 else { return };
        series.duration.observe(elapsed.as_secs_f64());
        match outcome {
            Ok(Ok(())) => series.handled.inc(),
            Ok(Err(Failure::Transient(_))) => series.failed[0].inc(),
            Ok(Err(Failure::Permanent(_))) => series.failed[1].inc(),
            Err(_) => series.failed[2].inc(),
        };
    }

    pub(crate) fn retried(&self) {
        if let Some(series) = &self.0 {
            series.retried.inc();
        }
    }
}

/// A publisher's metrics: its topic's series per event type, found by the event type's static name.
#[derive(Clone)]
pub(crate) struct PublishMetrics {
    metrics: SdkMetrics,
    topic: Arc<str>,
    series: Arc<RwLock<HashMap<&'static str, PublishSeries>>>,
}

#[derive(Clone)]
struct PublishSeries {
    published: Counter,
    errors: Counter,
}

impl PublishMetrics {
    pub(crate) fn new(metrics: SdkMetrics, topic: Arc<str>) -> PublishMetrics {
        PublishMetrics {
            metrics,
            topic,
            series: Arc::new(RwLock::new(HashMap::new())),
        }
    }

    /// The same families for another topic: a cache of its own.
    pub(crate) fn for_topic(&self, topic: Arc<str>) -> PublishMetrics {
        PublishMetrics::new(self.metrics.clone(), topic)
    }

    fn series(&self, event_type: &'static str) -> PublishSeries {
        if let Some(found) = self
            .series
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(event_type)
        {
            return found.clone();
        }
        let labels = PublishLabels {
            topic: self.topic.to_string(),
            event_type: event_type.to_string(),
        };
        let families = &self.metrics.families;
        self.series
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(event_type)
            .or_insert_with(|| PublishSeries {
                published: families.published.get_or_create_owned(&labels),
                errors: families.publish_errors.get_or_create_owned(&labels),
            })
            .clone()
    }

    pub(crate) fn published(&self, event_type: &'static str) {
        self.series(event_type).published.inc();
    }

    pub(crate) fn failed(&self, event_type: &'static str) {
        self.series(event_type).errors.inc();
    }
}

/// The part of librdkafka's statistics the lag gauge needs.
#[derive(Deserialize)]
struct Stats {
    #[serde(default)]
    topics: HashMap<String, TopicStats>,
}

#[derive(Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: HashMap<String, PartitionStats>,
}

#[derive(Deserialize)]
struct PartitionStats {
    partition: i32,
    consumer_lag: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    fn encoded(registry: &Registry) -> String {
        let mut text = String::new();
        encode(&mut text, registry).expect("encodes");
        text
    }

    #[test]
    fn lag_comes_from_the_owned_partitions_of_the_statistics() {
        let mut registry = Registry::default();
        let metrics = ConsumerMetrics::new(SdkMetrics::register(&mut registry));
        let stats = br#"{"name": "rdkafka#consumer-1", "topics": {
            "orders": {"topic": "orders", "partitions": {
                "0": {"partition": 0, "consumer_lag": 7, "hi_offset": 10},
                "1": {"partition": 1, "consumer_lag": -1},
                "2": {"partition": 2, "consumer_lag": 3},
                "-1": {"partition": -1, "consumer_lag": 5}
            }}}}"#;
        metrics.record_lag(stats, |topic, partition| {
            topic == "orders" && partition != 2
        });
        let text = encoded(&registry);
        assert!(
            text.contains(r#"nerve_sdk_consumer_lag{topic="orders",partition="0"} 7"#),
            "{text}"
        );
        assert_eq!(text.matches("nerve_sdk_consumer_lag{").count(), 1, "{text}");

        metrics.forget_lag([("orders", 0)]);
        assert!(!encoded(&registry).contains("nerve_sdk_consumer_lag{"));
        metrics.record_lag(b"not json", |_, _| true);
    }

    #[test]
    fn attempts_count_by_outcome() {
        let mut registry = Registry::default();
        let metrics = ConsumerMetrics::new(SdkMetrics::register(&mut registry));
        let handler = HandlerMetrics::of(Some(&metrics), "orders", "shop.OrderPlaced", "count");
        let ok: Result<Result<(), Failure>, ()> = Ok(Ok(()));
        let transient: Result<Result<(), Failure>, ()> = Ok(Err(Failure::Transient("x".into())));
        let panicked: Result<Result<(), Failure>, ()> = Err(());
        handler.attempt(Duration::from_millis(2), &transient);
        handler.retried();
        handler.attempt(Duration::from_millis(2), &ok);
        handler.attempt(Duration::from_millis(2), &panicked);
        let text = encoded(&registry);
        let labels = r#"topic="orders",event_type="shop.OrderPlaced",handler="count""#;
        for line in [
            format!("nerve_sdk_events_handled_total{{{labels}}} 1"),
            format!("nerve_sdk_events_retried_total{{{labels}}} 1"),
            format!(r#"nerve_sdk_events_failed_total{{{labels},kind="transient"}} 1"#),
            format!(r#"nerve_sdk_events_failed_total{{{labels},kind="panic"}} 1"#),
            format!(r#"nerve_sdk_events_failed_total{{{labels},kind="permanent"}} 0"#),
            format!("nerve_sdk_handler_duration_seconds_count{{{labels}}} 3"),
        ] {
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
        HandlerMetrics::of(None, "orders", "t", "h").attempt(Duration::ZERO, &ok);
    }
}
