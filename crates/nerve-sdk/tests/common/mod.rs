//! The broker the tests run against: a `nerve serve` child process of its own per test (free ports, a
//! temporary data directory), or the cluster at `NERVE_TEST_BOOTSTRAP` when that is set (its schema
//! registry at `NERVE_TEST_REGISTRY_URL`). Topic and group names are unique per test, so tests run in
//! parallel against one shared cluster too.

#![allow(dead_code, unreachable_pub)]

pub mod pg;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nerve_sdk::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

/// Generous bound for anything that should happen "soon": tests never assert on timing, they only refuse
/// to hang forever.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct Cluster {
    pub bootstrap: String,
    pub registry_url: Option<String>,
    child: Option<Child>,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The `nerve` binary: `NERVE_BIN`, or the workspace's debug build.
pub fn nerve_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("NERVE_BIN") {
        return PathBuf::from(bin);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/nerve")
}

/// Runs the `nerve` CLI against `bootstrap`: whether it succeeded, its stdout and its stderr.
pub fn nerve(bootstrap: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(nerve_bin())
        .args(args)
        .arg("--bootstrap")
        .arg(bootstrap)
        .output()
        .expect("nerve runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The cluster to test against.
pub fn cluster() -> Cluster {
    if let Ok(bootstrap) = std::env::var("NERVE_TEST_BOOTSTRAP") {
        return Cluster {
            bootstrap,
            registry_url: std::env::var("NERVE_TEST_REGISTRY_URL").ok(),
            child: None,
            _dir: None,
        };
    }
    start_nerve()
}

/// A `nerve serve` of the test's own.
fn start_nerve() -> Cluster {
    let bin = nerve_bin();
    assert!(
        bin.is_file(),
        "the nerve binary is missing at {}: build it first (`cargo build -p nerve`), point NERVE_BIN at \
         one, or set NERVE_TEST_BOOTSTRAP (and NERVE_TEST_REGISTRY_URL) to test against a running cluster",
        bin.display()
    );
    // A free port can be taken between asking for it and nerve binding it (by another test's broker, or
    // a client's outgoing connection): a broker that exits at once is started again on other ports.
    for _ in 0..5 {
        if let Some(cluster) = spawn(&bin) {
            return cluster;
        }
    }
    panic!("nerve exited before accepting connections, five times (see its log above)");
}

/// The schema registry for `cluster`'s tests: its own (`NERVE_TEST_REGISTRY_URL` beside
/// `NERVE_TEST_BOOTSTRAP`, or the registry of the `nerve serve` the test started), or else a `nerve serve`
/// started for its registry alone, next to the broker under test (returned, so that it lives as long as the
/// test). A registry is independent of the brokers whose records name its schema ids.
pub fn registry(cluster: &Cluster) -> (String, Option<Cluster>) {
    if let Some(url) = &cluster.registry_url {
        return (url.clone(), None);
    }
    let nerve = start_nerve();
    let url = nerve
        .registry_url
        .clone()
        .expect("a nerve serve started here has a registry");
    (url, Some(nerve))
}

/// Starts `nerve serve` on free ports; `None` if it exited before accepting connections.
fn spawn(bin: &std::path::Path) -> Option<Cluster> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (port, registry_port, http_port) = (free_port(), free_port(), free_port());
    let child = Command::new(bin)
        .arg("serve")
        .arg("--data-dir")
        .arg(dir.path())
        .arg("--kafka-listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--registry-listen")
        .arg(format!("127.0.0.1:{registry_port}"))
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{http_port}"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("{} serve does not start: {e}", bin.display()));
    let mut cluster = Cluster {
        bootstrap: format!("127.0.0.1:{port}"),
        registry_url: Some(format!("http://127.0.0.1:{registry_port}")),
        child: Some(child),
        _dir: Some(dir),
    };
    let started = Instant::now();
    while !(accepts(port) && accepts(registry_port) && accepts(http_port)) {
        if let Some(status) = cluster
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            eprintln!("nerve exited before accepting connections ({status}): trying other ports");
            cluster.child = None;
            return None;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "nerve never accepted connections"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(cluster)
}

fn accepts(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

/// `prefix` made unique, for topics and groups.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

impl Cluster {
    /// Client settings for producers.
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("message.timeout.ms", "30000");
        config
    }

    /// Client settings for a member of `group`, with the shortest session brokers allow so that tests
    /// that end members do not wait long.
    pub fn group_config(&self, group: &str) -> ClientConfig {
        let mut config = self.config();
        config
            .set("group.id", group)
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500");
        config
    }

    /// Creates `topic` and its dead-letter topic.
    pub async fn create_topic(&self, topic: &str, partitions: i32) {
        let admin: AdminClient<DefaultClientContext> =
            self.config().create().expect("admin client");
        let dlq = nerve_sdk::dlq::dlq_topic(topic);
        let topics = [
            NewTopic::new(topic, partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&dlq, 1, TopicReplication::Fixed(1)),
        ];
        let results = admin
            .create_topics(
                &topics,
                &AdminOptions::new().operation_timeout(Some(PATIENCE)),
            )
            .await
            .expect("create topics answered");
        for result in results {
            result.expect("topic created");
        }
    }

    /// The committed offset of `group` on partition `partition` of `topic` (`None`: nothing committed).
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        // Not a member: OffsetFetch only, so asking does not disturb the group.
        let consumer: BaseConsumer = self
            .group_config(group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let committed = consumer
            .committed_offsets(tpl, PATIENCE)
            .expect("committed offsets");
        match committed
            .find_partition(topic, partition)
            .expect("asked for")
            .offset()
        {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        }
    }

    /// Every record of partition 0 of `topic`, up to its high watermark as it is now.
    pub fn read_all(&self, topic: &str) -> Vec<Record> {
        self.read_partition(topic, 0)
    }

    /// Every record of partition `partition` of `topic`, up to its high watermark as it is now.
    pub fn read_partition(&self, topic: &str, partition: i32) -> Vec<Record> {
        let consumer: BaseConsumer = self
            .group_config("nerve-sdk-test-assign-only")
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, PATIENCE)
            .expect("watermarks");
        let high = high - low;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, partition, Offset::Beginning)
            .expect("offset");
        consumer.assign(&tpl).expect("assign");
        let started = Instant::now();
        let mut out = Vec::new();
        while out.len() < usize::try_from(high).expect("a watermark") {
            assert!(
                started.elapsed() < PATIENCE,
                "only {} of {high} records arrived",
                out.len()
            );
            match consumer.poll(Timeout::After(Duration::from_millis(200))) {
                Some(Ok(m)) => out.push(Record {
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    headers: m
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| {
                                    (
                                        h.key.to_string(),
                                        String::from_utf8_lossy(h.value.unwrap_or_default())
                                            .into_owned(),
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                }),
                Some(Err(e)) => panic!("consumer error: {e}"),
                None => {}
            }
        }
        out
    }
}

/// A record as read back.
#[derive(Debug, Clone)]
pub struct Record {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, String)>,
}

impl Record {
    /// The last value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Receives `count` items, failing the test if they take longer than [`PATIENCE`].
pub async fn receive<T>(rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>, count: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while out.len() < count {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(item)) => out.push(item),
            Ok(None) => panic!("the channel closed after {} of {count} items", out.len()),
            Err(_) => panic!("only {} of {count} items arrived", out.len()),
        }
    }
    out
}

/// Waits until `condition` holds, failing the test after [`PATIENCE`].
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(started.elapsed() < PATIENCE, "never happened: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
