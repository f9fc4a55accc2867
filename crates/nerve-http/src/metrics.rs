//! `/metrics`: the broker's own metrics, figures read from the observe view when scraped, process figures,
//! build info and the schema registry's request metrics, in one registry under the `nerve_` prefix.
//!
//! The observe view's lag in seconds needs async reads (the timestamp of the oldest unconsumed record), but
//! prometheus-client encodes synchronously. So a scrape first gathers a [`Snapshot`] asynchronously, stores
//! it where the registered [`SnapshotCollector`] reads it, then encodes; scrapes are serialized so that
//! each encodes the snapshot it gathered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use nerve_broker::Broker;
use nerve_storage::TopicPartition;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::HttpState;

const PROMETHEUS_TEXT: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A consumer group's possible states, each a series of `nerve_consumer_group_state`.
const GROUP_STATES: [&str; 5] = [
    "Empty",
    "PreparingRebalance",
    "CompletingRebalance",
    "Stable",
    "Dead",
];

/// The metrics state shared by every scrape.
#[derive(Default)]
pub(crate) struct Metrics {
    /// Built at the first scrape after the broker exists (the broker's metrics live in the broker); the
    /// lock serializes scrapes.
    registry: tokio::sync::Mutex<Option<Registry>>,
    snapshot: Arc<Mutex<Snapshot>>,
    registry_requests: RegistryRequests,
}

impl Metrics {
    fn build_registry(&self, broker: &Broker) -> Registry {
        let mut registry = Registry::with_prefix("nerve");
        broker.metrics().register(&mut registry);
        self.registry_requests.register(&mut registry);
        registry.register(
            "build",
            "Nerve's version",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );
        registry.register_collector(Box::new(SnapshotCollector(self.snapshot.clone())));
        registry.register_collector(Box::new(ProcessCollector));
        registry
    }
}

pub(crate) async fn scrape(State(state): State<HttpState>, headers: HeaderMap) -> Response {
    let Some(broker) = state.readiness().broker() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "the broker is starting: its logs are being recovered\n",
        )
            .into_response();
    };
    let openmetrics = headers.get_all(header::ACCEPT).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.contains("application/openmetrics-text"))
    });
    let metrics = state.metrics();
    let mut registry = metrics.registry.lock().await;
    let registry = registry.get_or_insert_with(|| metrics.build_registry(broker));
    let snapshot = Snapshot::gather(broker).await;
    *metrics
        .snapshot
        .lock()
        .unwrap_or_else(PoisonError::into_inner) = snapshot;
    let mut body = String::new();
    let (encoded, content_type) = if openmetrics {
        (
            prometheus_client::encoding::text::encode(&mut body, registry),
            OPENMETRICS_TEXT,
        )
    } else {
        (
            prometheus_client::encoding::prometheus_text::encode(&mut body, registry),
            PROMETHEUS_TEXT,
        )
    };
    match encoded {
        Ok(()) => ([(header::CONTENT_TYPE, content_type)], body).into_response(),
        Err(_) => {
            tracing::error!("cannot encode the metrics");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot encode the metrics\n",
            )
                .into_response()
        }
    }
}

/// The figures read from the broker's observe view at scrape time.
#[derive(Debug, Default)]
struct Snapshot {
    topics: i64,
    partitions: i64,
    logs: Vec<LogFigures>,
    groups: Vec<GroupFigures>,
}

#[derive(Debug)]
struct LogFigures {
    labels: PartitionLabels,
    size_bytes: Option<u64>,
    log_start_offset: i64,
    log_end_offset: i64,
    high_watermark: i64,
}

#[derive(Debug)]
struct GroupFigures {
    group: String,
    state: String,
    members: i64,
    offsets: Vec<OffsetFigures>,
}

#[derive(Debug)]
struct OffsetFigures {
    labels: GroupPartitionLabels,
    committed_offset: i64,
    lag: Option<i64>,
    /// `None` when there is lag but the oldest unconsumed record could not be read.
    lag_seconds: Option<f64>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PartitionLabels {
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupPartitionLabels {
    group: String,
    topic: String,
    partition: i32,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupLabels {
    group: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GroupStateLabels {
    group: String,
    state: &'static str,
}

impl Snapshot {
    async fn gather(broker: &Broker) -> Snapshot {
        let topics = broker.topic_infos();
        let mut log_starts = HashMap::new();
        let mut logs = Vec::new();
        for topic in &topics {
            for p in &topic.partitions {
                // An offline partition has no figures; its absence is what an alert can look for.
                let (Some(start), Some(end), Some(high)) =
                    (p.log_start_offset, p.log_end_offset, p.high_watermark)
                else {
                    continue;
                };
                log_starts.insert((topic.name.as_str(), p.partition), start);
                logs.push(LogFigures {
                    labels: PartitionLabels {
                        topic: topic.name.clone(),
                        partition: p.partition,
                    },
                    size_bytes: p.size_bytes,
                    log_start_offset: start,
                    log_end_offset: end,
                    high_watermark: high,
                });
            }
        }
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        let mut groups = Vec::new();
        for group in broker.group_infos() {
            let mut offsets = Vec::with_capacity(group.offsets.len());
            for o in &group.offsets {
                let lag_seconds = match o.lag {
                    Some(lag) if lag > 0 => {
                        // Like the lag, the unconsumed records start at the log start if retention
                        // removed the committed offset.
                        let from = log_starts
                            .get(&(o.topic.as_str(), o.partition))
                            .map_or(o.committed_offset, |start| o.committed_offset.max(*start));
                        let tp = TopicPartition::new(&o.topic, o.partition);
                        broker
                            .record_timestamp_at(&tp, from)
                            .await
                            .map(|ts| (now_ms.saturating_sub(ts)).max(0) as f64 / 1000.0)
                    }
                    _ => Some(0.0),
                };
                offsets.push(OffsetFigures {
                    labels: GroupPartitionLabels {
                        group: group.group_id.clone(),
                        topic: o.topic.clone(),
                        partition: o.partition,
                    },
                    committed_offset: o.committed_offset,
                    lag: o.lag,
                    lag_seconds,
                });
            }
            groups.push(GroupFigures {
                members: group.members.len() as i64,
                group: group.group_id,
                state: group.state,
                offsets,
            });
        }
        Snapshot {
            topics: topics.len() as i64,
            partitions: topics.iter().map(|t| t.partitions.len() as i64).sum(),
            logs,
            groups,
        }
    }
}

/// Encodes the latest [`Snapshot`].
#[derive(Debug)]
struct SnapshotCollector(Arc<Mutex<Snapshot>>);

/// Writes one gauge family: a descriptor, then one series per item that has a value. Help texts end with a
/// period, as `Registry::register` writes them.
fn gauge_family<
    'a,
    T: 'a,
    L: EncodeLabelSet + 'a,
    V: prometheus_client::encoding::EncodeGaugeValue,
>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    items: impl IntoIterator<Item = &'a T>,
    series: impl Fn(&'a T) -> Option<(&'a L, V)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in items.into_iter().filter_map(series) {
        ConstGauge::new(value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: impl prometheus_client::encoding::EncodeGaugeValue,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let s = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let e = &mut encoder;
        gauge(e, "topics", "Topics (internal ones included).", s.topics)?;
        gauge(e, "partitions", "Partitions of all topics.", s.partitions)?;
        gauge_family(
            e,
            "log_size_bytes",
            "Bytes of the partition's log on disk.",
            &s.logs,
            |l| {
                l.size_bytes
                    .map(|size| (&l.labels, i64::try_from(size).unwrap_or(i64::MAX)))
            },
        )?;
        gauge_family(
            e,
            "log_start_offset",
            "The first readable offset.",
            &s.logs,
            |l| Some((&l.labels, l.log_start_offset)),
        )?;
        gauge_family(
            e,
            "log_end_offset",
            "One past the last appended offset.",
            &s.logs,
            |l| Some((&l.labels, l.log_end_offset)),
        )?;
        gauge_family(
            e,
            "high_watermark",
            "One past the last offset consumers may read (durable).",
            &s.logs,
            |l| Some((&l.labels, l.high_watermark)),
        )?;
        let offsets = || s.groups.iter().flat_map(|g| &g.offsets);
        gauge_family(
            e,
            "consumer_group_committed_offset",
            "The group's committed offset.",
            offsets(),
            |o| Some((&o.labels, o.committed_offset)),
        )?;
        gauge_family(
            e,
            "consumer_group_lag",
            "Records the group has not consumed: high watermark minus committed offset.",
            offsets(),
            |o| o.lag.map(|lag| (&o.labels, lag)),
        )?;
        gauge_family(
            e,
            "consumer_group_lag_seconds",
            "Age of the oldest record the group has not consumed; 0 without lag.",
            offsets(),
            |o| o.lag_seconds.map(|secs| (&o.labels, secs)),
        )?;
        let members: Vec<(GroupLabels, i64)> = s
            .groups
            .iter()
            .map(|g| {
                (
                    GroupLabels {
                        group: g.group.clone(),
                    },
                    g.members,
                )
            })
            .collect();
        gauge_family(
            e,
            "consumer_group_members",
            "Members of the group.",
            &members,
            |(l, n)| Some((l, *n)),
        )?;
        let states: Vec<(GroupStateLabels, i64)> = s
            .groups
            .iter()
            .flat_map(|g| {
                GROUP_STATES.iter().map(|state| {
                    (
                        GroupStateLabels {
                            group: g.group.clone(),
                            state,
                        },
                        i64::from(g.state == *state),
                    )
                })
            })
            .collect();
        gauge_family(
            e,
            "consumer_group_state",
            "1 for the group's current state, 0 for the others.",
            &states,
            |(l, v)| Some((l, *v)),
        )
    }
}

/// Resident memory and CPU time from `/proc/self/stat`; nothing where there is no such file.
#[derive(Debug)]
struct ProcessCollector;

struct ProcessFigures {
    resident_bytes: i64,
    cpu_seconds: f64,
}

fn process_figures() -> Option<ProcessFigures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name in parentheses may hold spaces and parentheses; the fields after its last `)` are
    // plain, starting at field 3 (`state`).
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let field = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let ticks = rustix::param::clock_ticks_per_second();
    if ticks == 0 {
        return None;
    }
    let cpu_ticks = field(14)?.saturating_add(field(15)?);
    let rss_pages = field(24)?;
    Some(ProcessFigures {
        resident_bytes: i64::try_from(rss_pages.saturating_mul(rustix::param::page_size() as u64))
            .unwrap_or(i64::MAX),
        cpu_seconds: cpu_ticks as f64 / ticks as f64,
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(figures) = process_figures() else {
            return Ok(());
        };
        gauge(
            &mut encoder,
            "process_resident_memory_bytes",
            "Resident memory of the process.",
            figures.resident_bytes,
        )?;
        let cpu = ConstCounter::new(figures.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "CPU time of the process (user + system).",
            None,
            cpu.metric_type(),
        )?)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

/// HTTP latencies from 100 µs to about 100 s.
fn http_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 21))
}

/// The schema registry's request metrics; filled by [`with_registry_metrics`].
#[derive(Clone)]
struct RegistryRequests {
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
}

impl Default for RegistryRequests {
    fn default() -> Self {
        RegistryRequests {
            requests: Family::default(),
            duration: Family::new_with_constructor(http_histogram),
        }
    }
}

impl RegistryRequests {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "schema_registry_requests",
            "Schema registry HTTP requests",
            self.requests.clone(),
        );
        registry.register(
            "schema_registry_request_duration_seconds",
            "Schema registry request durations",
            self.duration.clone(),
        );
    }
}

/// Counts and times every request `router` (the schema registry's) answers, by method, route pattern
/// (`unmatched` for paths no route matches) and status, into `state`'s `/metrics`.
pub fn with_registry_metrics(router: Router, state: &HttpState) -> Router {
    let metrics = state.metrics().registry_requests.clone();
    router.layer(axum::middleware::from_fn_with_state(metrics, track))
}

async fn track(State(metrics): State<RegistryRequests>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    // The pattern, not the path: one series per route however many subjects there are.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_string();
    let method = request.method().as_str().to_string();
    let response = next.run(request).await;
    metrics
        .duration
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
