//! The broker's metrics (names and meanings in `docs/observability.md`), updated where requests are
//! handled. Scrape-time figures (log sizes, offsets, group lag) are not here: they are read from
//! [`crate::observe`] when `/metrics` is scraped.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: String,
    pub version: i16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub api: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FsyncLabels {
    pub fsync: String,
}

/// Request latencies from 50 µs to about 100 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 22))
}

/// The broker's own metrics.
pub struct BrokerMetrics {
    pub requests: Family<ApiLabels, Counter>,
    pub request_duration: Family<ApiLabels, Histogram, fn() -> Histogram>,
    pub request_errors: Family<ErrorLabels, Counter>,
    pub bytes_in: Family<TopicLabels, Counter>,
    pub records_in: Family<TopicLabels, Counter>,
    pub bytes_out: Family<TopicLabels, Counter>,
    pub records_out: Family<TopicLabels, Counter>,
    pub produce_durable: Family<FsyncLabels, Histogram, fn() -> Histogram>,
    pub connections: Gauge,
    pub connections_accepted: Counter,
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            request_errors: Family::default(),
            bytes_in: Family::default(),
            records_in: Family::default(),
            bytes_out: Family::default(),
            records_out: Family::default(),
            produce_durable: Family::new_with_constructor(latency_histogram),
            connections: Gauge::default(),
            connections_accepted: Counter::default(),
        }
    }
}

impl BrokerMetrics {
    /// Adds every metric to `registry` under the `nerve_` prefix (the registry is given the prefix).
    pub fn register(&self, registry: &mut Registry) {
        registry.register("requests", "Kafka requests answered", self.requests.clone());
        registry.register(
            "request_duration_seconds",
            "From a request's last byte read to its answer written",
            self.request_duration.clone(),
        );
        registry.register(
            "request_errors",
            "Error codes answered, per API and code",
            self.request_errors.clone(),
        );
        registry.register(
            "topic_bytes_in",
            "Bytes of record batches appended by producers",
            self.bytes_in.clone(),
        );
        registry.register(
            "topic_records_in",
            "Records appended by producers",
            self.records_in.clone(),
        );
        registry.register(
            "topic_bytes_out",
            "Bytes of record batches sent to consumers by Fetch",
            self.bytes_out.clone(),
        );
        registry.register(
            "topic_records_out",
            "Records sent to consumers by Fetch",
            self.records_out.clone(),
        );
        registry.register(
            "produce_durable_seconds",
            "From a batch's append starting to it being durable under the topic's fsync policy",
            self.produce_durable.clone(),
        );
        registry.register(
            "connections",
            "Open Kafka client connections",
            self.connections.clone(),
        );
        registry.register(
            "connections_accepted",
            "Kafka client connections accepted",
            self.connections_accepted.clone(),
        );
    }
}
