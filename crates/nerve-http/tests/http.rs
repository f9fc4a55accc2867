//! The HTTP surface over a real listener, with a broker over a temp dir in the test's own runtime.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use nerve_broker::{Broker, BrokerConfig};
use nerve_http::HttpState;
use nerve_storage::{LocalConfig, LocalLogStore, LocalMetaStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        assert_eq!(self.header("content-type"), Some("application/json"));
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

/// One HTTP/1.1 request over its own connection (`Connection: close`, so the answer ends at EOF).
async fn request(addr: SocketAddr, method: &str, path: &str, accept: Option<&str>) -> Answer {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{accept}Content-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let raw = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> Answer {
    request(addr, "GET", path, None).await
}

/// Serves `state` on a free port until the returned sender is dropped.
async fn start_http(state: HttpState) -> (SocketAddr, watch::Sender<bool>) {
    let listener = nerve_http::bind("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(nerve_http::serve(listener, state, async move {
        let _ = stopped.wait_for(|s| *s).await;
    }));
    (addr, stop)
}

async fn broker(dir: &tempfile::TempDir) -> (Arc<Broker>, watch::Sender<bool>) {
    let config = BrokerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        advertised_listener: "nerve.test:19092".into(),
        topic_defaults: BTreeMap::from([("fsync".into(), "never".into())]),
        ..BrokerConfig::default()
    };
    let meta = LocalMetaStore::open(dir.path()).unwrap();
    let log = LocalLogStore::open(dir.path(), LocalConfig::default(), &Default::default()).unwrap();
    let (stop, stopped) = watch::channel(false);
    let broker = Broker::new(config, Arc::new(log), Arc::new(meta), stopped)
        .await
        .unwrap();
    (broker, stop)
}

#[tokio::test]
async fn readyz_names_what_is_missing_until_every_part_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let state = HttpState::new();
    let (addr, _stop) = start_http(state.clone()).await;

    let answer = get(addr, "/readyz").await;
    assert_eq!(answer.status, 503);
    for part in ["broker", "Kafka listener", "schema registry"] {
        assert!(
            answer.body.contains(part),
            "{part} missing from {:?}",
            answer.body
        );
    }

    let (broker, _broker_stop) = broker(&dir).await;
    state.readiness().set_broker(broker);
    let answer = get(addr, "/readyz").await;
    assert_eq!(answer.status, 503);
    assert!(!answer.body.contains("broker"), "{}", answer.body);
    assert!(answer.body.contains("Kafka listener"), "{}", answer.body);

    state.readiness().set_kafka_listening();
    let answer = get(addr, "/readyz").await;
    assert_eq!(answer.status, 503);
    assert!(
        answer.body.ends_with("waiting for schema registry"),
        "{}",
        answer.body
    );

    state.readiness().set_registry_ready();
    let answer = get(addr, "/readyz").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, "ready"));
    assert!(state.readiness().is_ready());
}

#[tokio::test]
async fn healthz_is_ok_while_metrics_and_admin_are_unavailable_before_the_broker_exists() {
    let (addr, _stop) = start_http(HttpState::new()).await;
    let health = get(addr, "/healthz").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    assert_eq!(get(addr, "/metrics").await.status, 503);
    for path in [
        "/v1/cluster",
        "/v1/topics",
        "/v1/topics/t",
        "/v1/groups",
        "/v1/groups/g",
    ] {
        let answer = get(addr, path).await;
        assert_eq!(answer.status, 503, "{path}");
        assert_eq!(answer.json()["error_code"], 503, "{path}");
    }
}

#[tokio::test]
async fn unknown_paths_and_methods_answer_json_errors() {
    let (addr, _stop) = start_http(HttpState::new()).await;
    let answer = get(addr, "/nope").await;
    assert_eq!(answer.status, 404);
    let body = answer.json();
    assert_eq!(body["error_code"], 404);
    assert!(body["message"].as_str().unwrap().contains("/nope"));
    let answer = request(addr, "POST", "/healthz", None).await;
    assert_eq!(answer.status, 405);
    assert_eq!(answer.json()["error_code"], 405);
}

#[tokio::test]
async fn v1_describes_cluster_topics_and_groups_and_404s_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _broker_stop) = broker(&dir).await;
    broker.ensure_compacted_topic("events", 2).await.unwrap();
    let state = HttpState::new();
    state.readiness().set_broker(broker);
    let (addr, _stop) = start_http(state).await;

    let cluster = get(addr, "/v1/cluster").await.json();
    assert_eq!(cluster["advertised_listener"], "nerve.test:19092");
    assert!(cluster["topics"].as_u64().unwrap() >= 1);

    let topics = get(addr, "/v1/topics").await.json();
    assert!(topics
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "events"));

    let topic = get(addr, "/v1/topics/events").await.json();
    assert_eq!(topic["name"], "events");
    assert_eq!(topic["internal"], false);
    assert_eq!(topic["configs"]["cleanup.policy"], "compact");
    let partitions = topic["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2);
    for (i, p) in partitions.iter().enumerate() {
        assert_eq!(p["partition"], i);
        assert_eq!(p["log_start_offset"], 0);
        assert_eq!(p["high_watermark"], 0);
        assert_eq!(p["log_end_offset"], 0);
        assert!(p["size_bytes"].is_u64());
    }

    assert_eq!(
        get(addr, "/v1/topics/events/partitions").await.json(),
        topic["partitions"]
    );
    assert_eq!(
        get(addr, "/v1/topics/events/partitions/1").await.json(),
        topic["partitions"][1]
    );

    assert_eq!(get(addr, "/v1/groups").await.json(), serde_json::json!([]));

    for (path, what) in [
        ("/v1/topics/nope", "topic nope"),
        ("/v1/topics/nope/partitions", "topic nope"),
        ("/v1/topics/events/partitions/2", "no partition 2"),
        ("/v1/topics/events/partitions/x", "no partition x"),
        ("/v1/groups/nope", "group nope"),
    ] {
        let answer = get(addr, path).await;
        assert_eq!(answer.status, 404, "{path}");
        let body = answer.json();
        assert_eq!(body["error_code"], 404);
        assert!(body["message"].as_str().unwrap().contains(what), "{body}");
    }
}

#[tokio::test]
async fn metrics_are_prometheus_text_by_default_and_openmetrics_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, _broker_stop) = broker(&dir).await;
    broker.ensure_compacted_topic("events", 2).await.unwrap();
    let state = HttpState::new();
    state.readiness().set_broker(broker);
    let (addr, _stop) = start_http(state).await;

    let text = get(addr, "/metrics").await;
    assert_eq!(text.status, 200);
    assert_eq!(
        text.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let body = &text.body;
    for line in [
        "nerve_log_end_offset{topic=\"events\",partition=\"0\"} 0",
        "nerve_high_watermark{topic=\"events\",partition=\"1\"} 0",
        "nerve_log_start_offset{topic=\"events\",partition=\"1\"} 0",
        &format!(
            "nerve_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        "# TYPE nerve_process_cpu_seconds_total counter",
        "# TYPE nerve_consumer_group_lag gauge",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "{line} missing from\n{body}"
        );
    }
    let topics: i64 = sample(body, "nerve_topics").parse().unwrap();
    // `events`, `__consumer_offsets`.
    assert_eq!(topics, 2);
    assert!(
        sample(body, "nerve_process_resident_memory_bytes")
            .parse::<f64>()
            .unwrap()
            > 0.0
    );
    assert!(!body.contains("# EOF") && !body.contains("# UNIT"));

    let open = request(
        addr,
        "GET",
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    )
    .await;
    assert_eq!(
        open.header("content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(open.body.ends_with("# EOF\n"), "{}", open.body);
    assert!(open.body.contains("# TYPE nerve_build info"));
}

/// The value of the series named exactly `name` (no labels).
fn sample<'a>(body: &'a str, name: &str) -> &'a str {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{name} missing from\n{body}"))
}

#[tokio::test]
async fn registry_requests_are_counted_by_route_pattern() {
    use axum::routing::get as route_get;
    let dir = tempfile::tempdir().unwrap();
    let (broker, _broker_stop) = broker(&dir).await;
    let state = HttpState::new();
    state.readiness().set_broker(broker);
    let (addr, _stop) = start_http(state.clone()).await;

    let registry =
        axum::Router::new().route("/subjects/{subject}/versions", route_get(|| async { "[]" }));
    let registry = nerve_http::with_registry_metrics(registry, &state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let registry_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, registry).await });

    for subject in ["a", "b", "c"] {
        assert_eq!(
            get(registry_addr, &format!("/subjects/{subject}/versions"))
                .await
                .status,
            200
        );
    }
    assert_eq!(get(registry_addr, "/elsewhere").await.status, 404);

    let body = get(addr, "/metrics").await.body;
    for line in [
        "nerve_schema_registry_requests_total{method=\"GET\",route=\"/subjects/{subject}/versions\",status=\"200\"} 3",
        "nerve_schema_registry_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
        "nerve_schema_registry_request_duration_seconds_count{method=\"GET\",route=\"/subjects/{subject}/versions\"} 3",
    ] {
        assert!(body.lines().any(|l| l == line), "{line} missing from\n{body}");
    }
}
