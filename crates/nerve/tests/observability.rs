//! The HTTP server of `nerve serve` (`--http-listen`) against a real broker and real clients: `/metrics`
//! read by a strict Prometheus text parser, consumer group lag in records and seconds, `/readyz`, and the
//! JSON admin endpoints.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{create_topic, http_get, Nerve, PATIENCE};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

/// Series of an exposition: (name, labels) -> value.
type Series = HashMap<(String, BTreeMap<String, String>), f64>;

/// Parses a Prometheus text exposition (0.0.4) strictly: every line is a `# HELP`, a `# TYPE` or a
/// sample of a family whose `# TYPE` came before, with valid names, labels and values; no series twice.
/// Anything else fails the test, naming the line.
fn parse_exposition(text: &str) -> Series {
    assert!(
        text.ends_with('\n'),
        "the exposition ends without a newline"
    );
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helps: HashMap<String, ()> = HashMap::new();
    let mut series = Series::new();
    for (n, line) in text.lines().enumerate() {
        let bad = |why: &str| -> ! { panic!("line {}: {why}: {line:?}", n + 1) };
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or_default();
            if !is_metric_name(name) || helps.insert(name.to_string(), ()).is_some() {
                bad("a bad or repeated HELP");
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest
                .split_once(' ')
                .unwrap_or_else(|| bad("a TYPE without type"));
            if !is_metric_name(name)
                || !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
                || types.insert(name.to_string(), kind.to_string()).is_some()
            {
                bad("a bad or repeated TYPE");
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            bad("neither HELP, TYPE nor a sample");
        }
        let name_end = line
            .find(['{', ' '])
            .unwrap_or_else(|| bad("a sample without value"));
        let name = &line[..name_end];
        if !is_metric_name(name) {
            bad("a bad metric name");
        }
        let family_declared = match types.get(name).map(String::as_str) {
            Some("counter" | "gauge" | "untyped") => true,
            _ => ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .is_some_and(|family| types.get(family).is_some_and(|t| t == "histogram"))
            }),
        };
        if !family_declared {
            bad("a sample of no declared family");
        }
        let mut rest = &line[name_end..];
        let mut labels = BTreeMap::new();
        if let Some(after) = rest.strip_prefix('{') {
            rest = after;
            loop {
                if let Some(after) = rest.strip_prefix('}') {
                    rest = after;
                    break;
                }
                let (key, after) = rest.split_once("=\"").unwrap_or_else(|| bad("a bad label"));
                if !is_label_name(key) {
                    bad("a bad label name");
                }
                let mut value = String::new();
                let mut chars = after.char_indices();
                let end = loop {
                    match chars.next() {
                        Some((i, '"')) => break i,
                        Some((_, '\\')) => match chars.next() {
                            Some((_, '\\')) => value.push('\\'),
                            Some((_, '"')) => value.push('"'),
                            Some((_, 'n')) => value.push('\n'),
                            _ => bad("a bad escape in a label value"),
                        },
                        Some((_, c)) => value.push(c),
                        None => bad("an unterminated label value"),
                    }
                };
                if labels.insert(key.to_string(), value).is_some() {
                    bad("a label twice");
                }
                rest = &after[end + 1..];
                rest = rest.strip_prefix(',').unwrap_or(rest);
            }
        }
        let mut fields = rest
            .strip_prefix(' ')
            .unwrap_or_else(|| bad("no space before the value"))
            .split(' ');
        let value = match fields.next() {
            Some("+Inf") => f64::INFINITY,
            Some("-Inf") => f64::NEG_INFINITY,
            Some("NaN") => f64::NAN,
            Some(v) => v.parse().unwrap_or_else(|_| bad("a bad value")),
            None => bad("no value"),
        };
        if let Some(timestamp) = fields.next() {
            timestamp
                .parse::<i64>()
                .unwrap_or_else(|_| bad("a bad timestamp"));
        }
        if fields.next().is_some() {
            bad("text after the timestamp");
        }
        if series.insert((name.to_string(), labels), value).is_some() {
            bad("a series twice");
        }
    }
    series
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Scrapes `/metrics` in the default format and parses all of it.
fn scrape(nerve: &Nerve) -> Series {
    let answer = http_get(nerve.http_port, "/metrics", None).expect("/metrics answers");
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    parse_exposition(&answer.body)
}

fn value(series: &Series, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    series.get(&(name.to_string(), labels)).copied()
}

fn partition_value(series: &Series, name: &str, topic: &str) -> Option<f64> {
    value(series, name, &[("topic", topic), ("partition", "0")])
}

fn group_value(series: &Series, name: &str, group: &str, topic: &str) -> Option<f64> {
    value(
        series,
        name,
        &[("group", group), ("topic", topic), ("partition", "0")],
    )
}

/// Produces `count` records to partition 0 of `topic`, with `timestamp_ms` if given.
fn produce_n(nerve: &Nerve, topic: &str, count: usize, timestamp_ms: Option<i64>) {
    let producer: FutureProducer = common::producer(nerve, &[]);
    let deliveries: Vec<_> = (0..count)
        .map(|i| {
            let payload = format!("record-{i}");
            let mut record = FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload(&payload);
            if let Some(ts) = timestamp_ms {
                record = record.timestamp(ts);
            }
            producer
                .send_result(record)
                .unwrap_or_else(|(e, _)| panic!("record not queued: {e}"))
        })
        .collect();
    for delivery in deliveries {
        match futures::executor::block_on(delivery) {
            Ok(Ok(_)) => {}
            Ok(Err((e, _))) => panic!("record not delivered: {e}"),
            Err(_) => panic!("delivery never reported"),
        }
    }
}

/// A consumer of `group` that is assigned partitions directly (no membership) and commits by hand.
fn committer(nerve: &Nerve, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", nerve.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer")
}

fn commit(consumer: &BaseConsumer, topic: &str, offset: i64) {
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(offset))
        .unwrap();
    consumer
        .commit(&offsets, CommitMode::Sync)
        .expect("offsets committed");
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn metrics_report_offsets_and_the_lag_of_a_group_that_consumed_part_of_a_topic() {
    const N: usize = 20;
    const M: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "orders", 1);
    produce_n(&nerve, "orders", N, None);

    // A member of the group reads M records and commits what it read.
    let member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", nerve.bootstrap())
        .set("group.id", "billing")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    member.subscribe(&["orders"]).expect("subscribe");
    let started = Instant::now();
    let mut read = 0;
    while read < M {
        assert!(
            started.elapsed() < PATIENCE,
            "only {read} of {M} records read"
        );
        match member.poll(Timeout::After(Duration::from_millis(200))) {
            Some(Ok(message)) => {
                assert_eq!(message.offset(), read as i64);
                read += 1;
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    commit(&member, "orders", M as i64);

    let series = scrape(&nerve);
    let (n, m) = (N as f64, M as f64);
    assert_eq!(
        partition_value(&series, "nerve_log_end_offset", "orders"),
        Some(n)
    );
    assert_eq!(
        partition_value(&series, "nerve_high_watermark", "orders"),
        Some(n)
    );
    assert_eq!(
        partition_value(&series, "nerve_log_start_offset", "orders"),
        Some(0.0)
    );
    assert!(partition_value(&series, "nerve_log_size_bytes", "orders").unwrap() > 0.0);
    assert_eq!(
        group_value(
            &series,
            "nerve_consumer_group_committed_offset",
            "billing",
            "orders"
        ),
        Some(m)
    );
    assert_eq!(
        group_value(&series, "nerve_consumer_group_lag", "billing", "orders"),
        Some(n - m)
    );
    assert_eq!(
        value(
            &series,
            "nerve_consumer_group_members",
            &[("group", "billing")]
        ),
        Some(1.0)
    );
    let states: Vec<(&str, f64)> = [
        "Empty",
        "PreparingRebalance",
        "CompletingRebalance",
        "Stable",
        "Dead",
    ]
    .into_iter()
    .map(|state| {
        let v = value(
            &series,
            "nerve_consumer_group_state",
            &[("group", "billing"), ("state", state)],
        );
        (state, v.expect("a series for every state"))
    })
    .collect();
    assert_eq!(
        states.iter().map(|(_, v)| v).sum::<f64>(),
        1.0,
        "{states:?}"
    );
    assert_eq!(
        value(
            &series,
            "nerve_consumer_group_state",
            &[("group", "billing"), ("state", "Stable")]
        ),
        Some(1.0)
    );
    // `orders` and `__consumer_offsets` at least (the registry's `_schemas` too).
    assert!(value(&series, "nerve_topics", &[]).unwrap() >= 2.0);
    assert!(value(&series, "nerve_process_resident_memory_bytes", &[]).unwrap() > 0.0);
    assert!(value(&series, "nerve_process_cpu_seconds_total", &[]).is_some());
    assert!(series
        .keys()
        .any(|(name, labels)| name == "nerve_build_info" && labels.contains_key("version")));

    let open = http_get(
        nerve.http_port,
        "/metrics",
        Some("application/openmetrics-text; version=1.0.0"),
    )
    .unwrap();
    assert_eq!(
        open.content_type.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert!(open.body.ends_with("# EOF\n"), "{}", open.body);
    drop(member);
}

#[test]
fn topic_records_in_counts_every_produced_record() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "counted", 1);
    produce_n(&nerve, "counted", 17, None);
    let series = scrape(&nerve);
    assert_eq!(
        value(
            &series,
            "nerve_topic_records_in_total",
            &[("topic", "counted")]
        ),
        Some(17.0)
    );
}

#[test]
fn lag_grows_while_a_group_stops_committing_and_is_zero_once_it_commits_everything() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "clicks", 1);
    let an_hour_ago = now_ms() - 3_600_000;
    let consumer = committer(&nerve, "stalled");

    produce_n(&nerve, "clicks", 5, Some(an_hour_ago));
    commit(&consumer, "clicks", 5);
    let series = scrape(&nerve);
    assert_eq!(
        group_value(&series, "nerve_consumer_group_lag", "stalled", "clicks"),
        Some(0.0)
    );
    assert_eq!(
        group_value(
            &series,
            "nerve_consumer_group_lag_seconds",
            "stalled",
            "clicks"
        ),
        Some(0.0)
    );

    // More records arrive (stamped an hour ago, a minute apart) while the group commits nothing.
    let mut lags = Vec::new();
    for round in 0..3 {
        produce_n(
            &nerve,
            "clicks",
            4,
            Some(an_hour_ago + 60_000 * (round + 1)),
        );
        let series = scrape(&nerve);
        let lag = group_value(&series, "nerve_consumer_group_lag", "stalled", "clicks").unwrap();
        let seconds = group_value(
            &series,
            "nerve_consumer_group_lag_seconds",
            "stalled",
            "clicks",
        )
        .unwrap();
        // The oldest unconsumed record is the first of round 0: an hour minus a minute old, at least.
        assert!(seconds >= 3_540.0, "lag in seconds {seconds}");
        lags.push(lag);
    }
    assert_eq!(lags, [4.0, 8.0, 12.0]);

    commit(&consumer, "clicks", 17);
    let series = scrape(&nerve);
    assert_eq!(
        group_value(
            &series,
            "nerve_consumer_group_committed_offset",
            "stalled",
            "clicks"
        ),
        Some(17.0)
    );
    assert_eq!(
        group_value(&series, "nerve_consumer_group_lag", "stalled", "clicks"),
        Some(0.0)
    );
    assert_eq!(
        group_value(
            &series,
            "nerve_consumer_group_lag_seconds",
            "stalled",
            "clicks"
        ),
        Some(0.0)
    );
}

#[test]
fn readyz_is_ready_once_every_listener_accepts_and_healthz_is_ok() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    // The registry's port accepts a moment before `serve` marks it ready.
    let started = Instant::now();
    loop {
        let answer = http_get(nerve.http_port, "/readyz", None).unwrap();
        if answer.status == 200 {
            assert_eq!(answer.body, "ready");
            break;
        }
        assert_eq!(answer.status, 503);
        assert!(answer.body.contains("schema registry"), "{}", answer.body);
        assert!(started.elapsed() < PATIENCE, "never ready: {}", answer.body);
        std::thread::sleep(Duration::from_millis(20));
    }
    let health = http_get(nerve.http_port, "/healthz", None).unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
}

#[test]
fn v1_answers_topics_and_groups_as_json_and_404_for_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "ledger", 2);
    produce_n(&nerve, "ledger", 3, None);
    let consumer = committer(&nerve, "auditors");
    commit(&consumer, "ledger", 1);

    let json = |path: &str| -> (u16, serde_json::Value) {
        let answer = http_get(nerve.http_port, path, None).unwrap();
        assert_eq!(
            answer.content_type.as_deref(),
            Some("application/json"),
            "{path}"
        );
        (
            answer.status,
            serde_json::from_str(&answer.body).expect("JSON"),
        )
    };

    let (status, topic) = json("/v1/topics/ledger");
    assert_eq!(status, 200);
    assert_eq!(topic["name"], "ledger");
    assert_eq!(topic["internal"], false);
    assert!(topic["id"].is_string());
    assert!(topic["configs"].is_object());
    assert_eq!(
        topic["partitions"][0],
        serde_json::json!({
            "partition": 0,
            "log_start_offset": 0,
            "high_watermark": 3,
            "log_end_offset": 3,
            "size_bytes": topic["partitions"][0]["size_bytes"],
        })
    );
    assert!(topic["partitions"][0]["size_bytes"].as_u64().unwrap() > 0);
    assert_eq!(topic["partitions"][1]["log_end_offset"], 0);

    let (status, group) = json("/v1/groups/auditors");
    assert_eq!(status, 200);
    assert_eq!(group["group_id"], "auditors");
    assert_eq!(group["state"], "Empty");
    assert_eq!(group["members"], serde_json::json!([]));
    assert_eq!(
        group["offsets"],
        serde_json::json!([{
            "topic": "ledger",
            "partition": 0,
            "committed_offset": 1,
            "high_watermark": 3,
            "lag": 2,
        }])
    );

    let (_, topics) = json("/v1/topics");
    assert!(topics
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["name"] == "ledger"));
    let (_, groups) = json("/v1/groups");
    assert!(groups
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["group_id"] == "auditors"));
    let (_, cluster) = json("/v1/cluster");
    assert_eq!(cluster["advertised_listener"], nerve.bootstrap());
    assert!(cluster["groups"].as_u64().unwrap() >= 1);

    for path in ["/v1/topics/nope", "/v1/groups/nope", "/v1/nope", "/nope"] {
        let (status, error) = json(path);
        assert_eq!(status, 404, "{path}");
        assert_eq!(error["error_code"], 404, "{path}");
        assert!(error["message"].is_string(), "{path}");
    }
}

#[test]
fn the_exposition_parser_refuses_malformed_lines() {
    let good = "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\\\"\"} 3\n# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_sum 0.5\nh_count 1\n";
    assert_eq!(parse_exposition(good).len(), 4);
    for bad in [
        "a 1\n",                                 // no TYPE
        "# TYPE a gauge\na{x=\"1} 1\n",          // unterminated label value
        "# TYPE a gauge\na{1x=\"1\"} 1\n",       // bad label name
        "# TYPE a gauge\na one\n",               // bad value
        "# TYPE a gauge\na 1\na 2\n",            // series twice
        "# TYPE a gauge\na 1\n# EOF\n",          // OpenMetrics only
        "# TYPE a gauge\n# UNIT a bytes\na 1\n", // OpenMetrics only
        "# TYPE a gauge\na 1",                   // no final newline
    ] {
        let parsed = std::panic::catch_unwind(|| parse_exposition(bad));
        assert!(parsed.is_err(), "{bad:?} was accepted");
    }
}

/// Kills the process when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn readyz_is_503_naming_the_broker_while_logs_recover_then_200() {
    // Enough partitions that recovery takes a good fraction of a second (about 1 s in a debug build), far
    // longer than one request to the HTTP server, which binds before recovery starts.
    const PARTITIONS: i32 = 500;
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "wide", PARTITIONS);
    nerve.stop();

    let http_port = common::any_free_port();
    let mut child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_nerve"))
            .arg("serve")
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--kafka-listen")
            .arg(format!("127.0.0.1:{}", common::any_free_port()))
            .arg("--registry-listen")
            .arg(format!("127.0.0.1:{}", common::any_free_port()))
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{http_port}"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("nerve starts"),
    );
    let started = Instant::now();
    let first = loop {
        if let Ok(answer) = http_get(http_port, "/readyz", None) {
            break answer;
        }
        assert!(child.0.try_wait().unwrap().is_none(), "nerve exited");
        assert!(
            started.elapsed() < PATIENCE,
            "the HTTP server never accepted"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(first.status, 503, "{}", first.body);
    assert!(first.body.contains("broker"), "{}", first.body);
    let health = http_get(http_port, "/healthz", None).unwrap();
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));

    loop {
        let answer = http_get(http_port, "/readyz", None).unwrap();
        if answer.status == 200 {
            assert_eq!(answer.body, "ready");
            break;
        }
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert!(started.elapsed() < PATIENCE, "never ready: {}", answer.body);
        std::thread::sleep(Duration::from_millis(20));
    }
    let topic = http_get(http_port, "/v1/topics/wide", None).unwrap();
    assert_eq!(topic.status, 200);
    let topic: serde_json::Value = serde_json::from_str(&topic.body).unwrap();
    assert_eq!(
        topic["partitions"].as_array().unwrap().len(),
        PARTITIONS as usize
    );
}

/// The metric names an expression refers to (`nerve_...`, up to the first character that cannot be in one).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("nerve_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}

#[test]
fn every_metric_the_dashboard_and_alert_rules_query_is_in_a_live_scrape() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("grafana/nerve.json")).expect("dashboard exists"),
    )
    .expect("the dashboard is valid JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let mut queried: Vec<String> = Vec::new();
    for panel in panels {
        let targets = panel["targets"]
            .as_array()
            .expect("every panel has targets");
        assert!(
            !targets.is_empty(),
            "panel {} queries nothing",
            panel["title"]
        );
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{expr} names no nerve metric");
            queried.extend(names);
        }
    }
    let rules = std::fs::read_to_string(root.join("prometheus/nerve-alerts.yml")).expect("rules");
    queried.extend(
        rules
            .lines()
            .filter(|l| l.trim_start().starts_with("expr:"))
            .flat_map(metric_names),
    );
    queried.sort();
    queried.dedup();

    // Traffic that makes every family have samples: produce, fetch, a group that committed part of the
    // topic, a refused request, a schema registry request.
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "watched", 1);
    produce_n(&nerve, "watched", 10, None);
    let consumer = committer(&nerve, "dashboard-group");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset("watched", 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let started = Instant::now();
    let mut read = 0;
    while read < 10 {
        assert!(started.elapsed() < PATIENCE, "records never arrived");
        if let Some(Ok(_)) = consumer.poll(Timeout::After(Duration::from_millis(200))) {
            read += 1;
        }
    }
    commit(&consumer, "watched", 5);
    let admin: rdkafka::admin::AdminClient<rdkafka::client::DefaultClientContext> =
        ClientConfig::new()
            .set("bootstrap.servers", nerve.bootstrap())
            .create()
            .unwrap();
    let deleted = futures::executor::block_on(admin.delete_topics(
        &["no-such-topic"],
        &rdkafka::admin::AdminOptions::new().operation_timeout(Some(PATIENCE)),
    ))
    .expect("answered");
    assert!(deleted[0].is_err(), "deleting a missing topic fails");
    let registry = http_get(nerve.registry_port, "/subjects", None).expect("registry answers");
    assert_eq!(registry.status, 200);

    let series = scrape(&nerve);
    let present: std::collections::HashSet<&str> =
        series.keys().map(|(name, _)| name.as_str()).collect();
    let missing: Vec<&String> = queried
        .iter()
        .filter(|name| !present.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not in the scrape: {missing:?}\nscraped: {present:?}"
    );
}

#[test]
fn status_shows_topics_with_their_records_and_groups_with_their_lag() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "orders", 1);
    produce_n(&nerve, "orders", 12, None);
    let consumer = committer(&nerve, "billing");
    commit(&consumer, "orders", 4);
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_nerve"))
        .args(["status", "--interval", "0.2", "--http-url"])
        .arg(format!("http://127.0.0.1:{}", nerve.http_port))
        .env_remove("RUST_LOG")
        .output()
        .expect("nerve status runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let cells = |first: &str| -> Vec<String> {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(first))
            .unwrap_or_else(|| panic!("no row for {first} in\n{stdout}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert!(stdout.starts_with("cluster "), "{stdout}");
    // TOPIC PARTITIONS RECORDS SIZE(2 cells) IN OUT
    let orders = cells("orders");
    assert_eq!(&orders[1..3], ["1", "12"], "{stdout}");
    // GROUP STATE MEMBERS LAG LAG-SECONDS
    let billing = cells("billing");
    assert_eq!(&billing[1..4], ["Empty", "0", "8"], "{stdout}");
    // The broker's own topics are left out unless asked for.
    assert!(!stdout.contains("__consumer_offsets"), "{stdout}");
    let unreachable = std::process::Command::new(env!("CARGO_BIN_EXE_nerve"))
        .args(["status", "--http-url", "http://127.0.0.1:1"])
        .output()
        .expect("runs");
    assert_eq!(unreachable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreachable.stderr).contains("cannot reach"));
}
