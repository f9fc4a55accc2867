//! The broker's metrics (names and meanings in `docs/observability.md`), updated where requests are
//! handled. Scrape-time figures (log sizes, offsets, group lag) are not here: they are read from
//! [`crate::observe`] when `/metrics` is scraped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use nerve_storage::FsyncPolicy;
use parking_lot::RwLock;
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

impl RequestHandles {
    fn observe(&self, elapsed: Duration) -> ApiSlot {
        self.requests.inc();
        self.duration.observe(elapsed.as_secs_f64());
        self.slot
    }
}

/// The API's name as Kafka spells it (`Produce`, `OffsetCommit`), or its number for a key Kafka does not
/// define.
fn api_name(api: i16) -> String {
    match ApiKey::try_from(api) {
        Ok(key) => format!("{key:?}"),
        Err(()) => api.to_string(),
    }
}

/// Kafka's name of an error code (`UNKNOWN_TOPIC_OR_PARTITION`); codes Kafka does not define are
/// `UNKNOWN_SERVER_ERROR`, as Kafka's own clients read them.
fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        None => "NONE".into(),
        Some(ResponseError::Unknown(_)) => "UNKNOWN_SERVER_ERROR".into(),
        // kafka-protocol names its variants after Kafka's constants, in CamelCase.
        Some(error) => screaming_snake_case(&error.to_string()),
    }
}

fn screaming_snake_case(camel: &str) -> String {
    let mut name = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
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
    /// Connections closed at once because `max_connections` or `max_connections_per_ip` was reached.
    pub connections_refused: Counter,
    /// SASL authentications that failed (wrong password, unknown user, malformed exchange).
    pub authentication_failures: Counter,
    /// Requests refused by the authorizer.
    pub authorization_denials: Counter,
    /// Handles of the families' label sets, found by cheap keys: counting a request or a batch then costs a
    /// map lookup and atomic adds, never a label `String`.
    requests_by_key: RwLock<HashMap<(i16, i16), RequestHandles>>,
    errors_by_key: RwLock<HashMap<(ApiSlot, i16), Counter>>,
    topics_by_name: RwLock<HashMap<Arc<str>, TopicHandles>>,
    durable_by_policy: [OnceLock<Histogram>; 3],
    /// Label sets made for requests Nerve does not support. Any client can send those with made-up API keys
    /// and versions, so past [`MAX_UNSUPPORTED_SERIES`] they share the label set `api="other", version="-1"`.
    unsupported_series: AtomicUsize,
}

/// Distinct `(api, version)` label sets of unsupported requests before they are lumped together.
const MAX_UNSUPPORTED_SERIES: usize = 64;

/// Where a request's errors are counted: under its API key, or under `api="other"` when it was lumped.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
enum ApiSlot {
    Key(i16),
    Other,
}

#[derive(Clone)]
struct RequestHandles {
    requests: Counter,
    duration: Histogram,
    slot: ApiSlot,
}

#[derive(Clone)]
struct TopicHandles {
    bytes_in: Counter,
    records_in: Counter,
    bytes_out: Counter,
    records_out: Counter,
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
            connections_refused: Counter::default(),
            authentication_failures: Counter::default(),
            authorization_denials: Counter::default(),
            requests_by_key: RwLock::default(),
            errors_by_key: RwLock::default(),
            topics_by_name: RwLock::default(),
            durable_by_policy: Default::default(),
            unsupported_series: AtomicUsize::new(0),
        }
    }
}

impl BrokerMetrics {
    /// Counts a request with API key `api` (possibly one Kafka does not define) at `version`, `elapsed`
    /// after it was read, and the error it was refused with, if it was refused as a whole.
    pub(crate) fn request_done(
        &self,
        api: i16,
        version: i16,
        elapsed: Duration,
        refused: Option<ResponseError>,
    ) {
        let slot = {
            let handles = self.requests_by_key.read();
            match handles.get(&(api, version)) {
                Some(h) => h.observe(elapsed),
                None => {
                    drop(handles);
                    self.new_request_handles(api, version).observe(elapsed)
                }
            }
        };
        if let Some(error) = refused {
            self.count_error_in(slot, error.code());
        }
    }

    fn new_request_handles(&self, api: i16, version: i16) -> RequestHandles {
        let supported = ApiKey::try_from(api)
            .ok()
            .and_then(crate::api::supported_versions)
            .is_some_and(|(min, max)| (min..=max).contains(&version));
        let (labels, slot) = if supported
            || self.unsupported_series.fetch_add(1, Ordering::Relaxed) < MAX_UNSUPPORTED_SERIES
        {
            let labels = ApiLabels {
                api: api_name(api),
                version,
            };
            (labels, ApiSlot::Key(api))
        } else {
            let labels = ApiLabels {
                api: "other".into(),
                version: -1,
            };
            (labels, ApiSlot::Other)
        };
        let handles = RequestHandles {
            requests: self.requests.get_or_create_owned(&labels),
            duration: self.request_duration.get_or_create_owned(&labels),
            slot,
        };
        if slot == ApiSlot::Other {
            // Not remembered: the map must stay as bounded as the label sets.
            return handles;
        }
        self.requests_by_key
            .write()
            .entry((api, version))
            .or_insert(handles)
            .clone()
    }

    /// Counts an error code answered to a request of `api`; 0 (no error) counts nothing.
    pub(crate) fn count_error(&self, api: ApiKey, code: i16) {
        if code != 0 {
            self.count_error_in(ApiSlot::Key(api as i16), code);
        }
    }

    fn count_error_in(&self, slot: ApiSlot, code: i16) {
        if let Some(counter) = self.errors_by_key.read().get(&(slot, code)) {
            counter.inc();
            return;
        }
        let labels = ErrorLabels {
            api: match slot {
                ApiSlot::Key(api) => api_name(api),
                ApiSlot::Other => "other".into(),
            },
            error: error_name(code),
        };
        let counter = self.request_errors.get_or_create_owned(&labels);
        self.errors_by_key
            .write()
            .entry((slot, code))
            .or_insert(counter)
            .inc();
    }

    /// Counts a batch appended by a producer.
    pub(crate) fn count_in(&self, topic: &Arc<str>, bytes: u64, records: u64) {
        self.with_topic(topic, |t| {
            t.bytes_in.inc_by(bytes);
            t.records_in.inc_by(records);
        });
    }

    /// Counts batches sent to a consumer.
    pub(crate) fn count_out(&self, topic: &Arc<str>, bytes: u64, records: u64) {
        self.with_topic(topic, |t| {
            t.bytes_out.inc_by(bytes);
            t.records_out.inc_by(records);
        });
    }

    /// Topic series are made only here, after an append or read succeeded, so clients naming topics that
    /// do not exist cannot add series.
    fn with_topic(&self, topic: &Arc<str>, count: impl FnOnce(&TopicHandles)) {
        if let Some(handles) = self.topics_by_name.read().get(&**topic) {
            count(handles);
            return;
        }
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        let handles = TopicHandles {
            bytes_in: self.bytes_in.get_or_create_owned(&labels),
            records_in: self.records_in.get_or_create_owned(&labels),
            bytes_out: self.bytes_out.get_or_create_owned(&labels),
            records_out: self.records_out.get_or_create_owned(&labels),
        };
        count(
            self.topics_by_name
                .write()
                .entry(topic.clone())
                .or_insert(handles),
        );
    }

    /// Drops a deleted topic's series, as Kafka drops a deleted topic's metrics.
    pub(crate) fn forget_topic(&self, topic: &str) {
        self.topics_by_name.write().remove(topic);
        let labels = TopicLabels {
            topic: topic.to_string(),
        };
        self.bytes_in.remove(&labels);
        self.records_in.remove(&labels);
        self.bytes_out.remove(&labels);
        self.records_out.remove(&labels);
    }

    /// Records how long an append took to become durable under `policy`.
    pub(crate) fn observe_durable(&self, policy: FsyncPolicy, elapsed: Duration) {
        let (index, name) = match policy {
            FsyncPolicy::Always => (0, "always"),
            FsyncPolicy::Interval => (1, "interval"),
            FsyncPolicy::Never => (2, "never"),
        };
        self.durable_by_policy[index]
            .get_or_init(|| {
                self.produce_durable.get_or_create_owned(&FsyncLabels {
                    fsync: name.to_string(),
                })
            })
            .observe(elapsed.as_secs_f64());
    }

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
        registry.register(
            "connections_refused",
            "Kafka client connections closed at once: max_connections or max_connections_per_ip reached",
            self.connections_refused.clone(),
        );
        registry.register(
            "authentication_failures",
            "SASL authentications that failed",
            self.authentication_failures.clone(),
        );
        registry.register(
            "authorization_denials",
            "Requests (or parts of them) the authorizer refused",
            self.authorization_denials.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas_constants() {
        assert_eq!(
            error_name(ResponseError::UnknownTopicOrPartition.code()),
            "UNKNOWN_TOPIC_OR_PARTITION"
        );
        assert_eq!(
            error_name(ResponseError::KafkaStorageError.code()),
            "KAFKA_STORAGE_ERROR"
        );
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(9999), "UNKNOWN_SERVER_ERROR");
    }

    #[test]
    fn api_names_are_kafkas_or_the_key_number() {
        assert_eq!(api_name(0), "Produce");
        assert_eq!(
            api_name(ApiKey::OffsetForLeaderEpoch as i16),
            "OffsetForLeaderEpoch"
        );
        assert_eq!(api_name(12345), "12345");
    }

    #[test]
    fn made_up_api_keys_cannot_add_series_without_bound() {
        let metrics = BrokerMetrics::default();
        for key in 0..(MAX_UNSUPPORTED_SERIES as i16 * 2) {
            metrics.request_done(
                1000 + key,
                0,
                Duration::ZERO,
                Some(ResponseError::UnsupportedVersion),
            );
        }
        let other = ApiLabels {
            api: "other".into(),
            version: -1,
        };
        assert_eq!(
            metrics.requests.get(&other).map(|c| c.get()),
            Some(MAX_UNSUPPORTED_SERIES as u64)
        );
        assert!(metrics.requests_by_key.read().len() <= MAX_UNSUPPORTED_SERIES);
        let other_errors = ErrorLabels {
            api: "other".into(),
            error: "UNSUPPORTED_VERSION".into(),
        };
        assert_eq!(
            metrics.request_errors.get(&other_errors).map(|c| c.get()),
            Some(MAX_UNSUPPORTED_SERIES as u64)
        );
    }
}
