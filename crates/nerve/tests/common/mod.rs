//! Starts `nerve serve` as a child process on a free port with its own data directory, and builds rdkafka
//! clients for it. Every test gets its own broker, so tests run in parallel.

#![allow(dead_code, unreachable_pub)]

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

/// Generous bound for anything that should happen "soon": tests never assert on timing, they only refuse
/// to hang forever.
pub const PATIENCE: Duration = Duration::from_secs(60);

pub struct Nerve {
    child: Option<Child>,
    pub port: u16,
    pub data_dir: PathBuf,
}

impl Nerve {
    /// Starts a broker on a fresh port with `data_dir` and waits until it accepts connections.
    pub fn start(data_dir: &Path) -> Nerve {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_nerve"))
            .arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--kafka-listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "info,nerve_broker=debug")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nerve starts");
        let mut nerve = Nerve {
            child: Some(child),
            port,
            data_dir: data_dir.to_path_buf(),
        };
        nerve.wait_until_accepting();
        nerve
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn wait_until_accepting(&mut self) {
        let started = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("nerve exited before accepting connections: {status}");
            }
            assert!(
                started.elapsed() < PATIENCE,
                "nerve never accepted connections"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub fn stop(mut self) {
        let mut child = self.child.take().expect("running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = child.wait().expect("nerve exits");
        assert!(exit.success(), "nerve exited with {exit}");
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Nerve {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

pub fn producer(nerve: &Nerve, extra: &[(&str, &str)]) -> FutureProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", nerve.bootstrap())
        .set("message.timeout.ms", "30000")
        .set("enable.idempotence", "true");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    config.create().expect("producer")
}

/// A consumer that is assigned partitions directly: no group membership, no commits.
pub fn consumer(nerve: &Nerve) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", nerve.bootstrap())
        .set("group.id", "nerve-test-assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer")
}

/// What a test expects to read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp: Option<i64>,
}

/// A record to produce: key, payload, headers.
pub type TestRecord = (String, String, Vec<(String, String)>);

/// Produces records to partition 0, returning their offsets.
pub fn produce(producer: &FutureProducer, topic: &str, records: &[TestRecord]) -> Vec<i64> {
    let mut deliveries = Vec::with_capacity(records.len());
    for (key, payload, headers) in records {
        let mut owned = rdkafka::message::OwnedHeaders::new();
        for (k, v) in headers {
            owned = owned.insert(rdkafka::message::Header {
                key: k,
                value: Some(v),
            });
        }
        let record = FutureRecord::to(topic)
            .partition(0)
            .key(key)
            .payload(payload)
            .headers(owned);
        match producer.send_result(record) {
            Ok(delivery) => deliveries.push(delivery),
            Err((e, _)) => panic!("record not queued: {e}"),
        }
    }
    deliveries
        .into_iter()
        .map(|delivery| match futures::executor::block_on(delivery) {
            Ok(Ok(delivered)) => delivered.offset,
            Ok(Err((e, _))) => panic!("record not delivered: {e}"),
            Err(_) => panic!("delivery never reported"),
        })
        .collect()
}

/// Reads `count` records of partition 0 from `from`.
pub fn consume(nerve: &Nerve, topic: &str, from: Offset, count: usize) -> Vec<Received> {
    let consumer = consumer(nerve);
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, from)
        .expect("offset");
    consumer.assign(&assignment).expect("assign");
    let started = Instant::now();
    let mut out = Vec::new();
    while out.len() < count {
        assert!(
            started.elapsed() < PATIENCE,
            "only {} of {count} records arrived",
            out.len()
        );
        match consumer.poll(Timeout::After(Duration::from_millis(500))) {
            Some(Ok(message)) => out.push(Received {
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().map(<[u8]>::to_vec),
                headers: message
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                            .collect()
                    })
                    .unwrap_or_default(),
                timestamp: message.timestamp().to_millis(),
            }),
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

/// Record `i` of a test data set: a key, a payload and two headers.
pub fn record(i: usize) -> TestRecord {
    (
        format!("key-{i}"),
        format!("value-{i}-{}", "x".repeat(i % 100)),
        vec![
            ("trace".to_string(), format!("t{i}")),
            ("kind".to_string(), "test".to_string()),
        ],
    )
}
