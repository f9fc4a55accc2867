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
    pub registry_port: u16,
    /// The HTTP server's port: /metrics, /healthz, /readyz, /v1/.
    pub http_port: u16,
    pub data_dir: PathBuf,
}

impl Nerve {
    /// Starts a broker on a fresh port with `data_dir` and waits until it accepts connections.
    pub fn start(data_dir: &Path) -> Nerve {
        Nerve::spawn(
            data_dir,
            None,
            &[],
            "info,nerve_broker=debug",
            &Stdio::inherit,
        )
    }

    /// Starts `nerve serve` with its Kafka API on `port` (a free one when `None`), its schema registry and
    /// its HTTP server on free ports, and waits until all three accept connections. A port picked free can
    /// be taken by another process before nerve binds it; then nerve exits, and this tries other ports.
    fn spawn(
        data_dir: &Path,
        port: Option<u16>,
        extra_args: &[String],
        log: &str,
        stderr: &dyn Fn() -> Stdio,
    ) -> Nerve {
        Nerve::spawn_with(data_dir, port, &|_| extra_args.to_vec(), log, stderr)
    }

    /// Starts `nerve serve` on a free port with more flags made for that port (`extra_args(kafka_port)`):
    /// e.g. a `--config` file whose `listeners` name the port with another security protocol.
    pub fn start_with(data_dir: &Path, extra_args: &dyn Fn(u16) -> Vec<String>) -> Nerve {
        Nerve::spawn_with(data_dir, None, extra_args, "info", &Stdio::inherit)
    }

    fn spawn_with(
        data_dir: &Path,
        port: Option<u16>,
        extra_args: &dyn Fn(u16) -> Vec<String>,
        log: &str,
        stderr: &dyn Fn() -> Stdio,
    ) -> Nerve {
        const ATTEMPTS: usize = 5;
        for attempt in 1..=ATTEMPTS {
            let kafka_port = port.unwrap_or_else(free_port);
            let extra_args = extra_args(kafka_port);
            let registry_port = free_port();
            let http_port = free_port();
            let child = Command::new(env!("CARGO_BIN_EXE_nerve"))
                .arg("serve")
                .arg("--data-dir")
                .arg(data_dir)
                .arg("--kafka-listen")
                .arg(format!("127.0.0.1:{kafka_port}"))
                .arg("--registry-listen")
                .arg(format!("127.0.0.1:{registry_port}"))
                .arg("--http-listen")
                .arg(format!("127.0.0.1:{http_port}"))
                .args(&extra_args)
                .env("RUST_LOG", log)
                .stdout(Stdio::null())
                .stderr(stderr())
                .spawn()
                .expect("nerve starts");
            let mut nerve = Nerve {
                child: Some(child),
                port: kafka_port,
                registry_port,
                http_port,
                data_dir: data_dir.to_path_buf(),
            };
            match nerve.wait_until_accepting() {
                Ok(()) => return nerve,
                Err(status) if attempt < ATTEMPTS => {
                    eprintln!(
                        "nerve exited before accepting connections ({status}); trying other ports"
                    );
                }
                Err(status) => panic!("nerve exited before accepting connections: {status}"),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// The schema registry's base URL.
    pub fn registry_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.registry_port)
    }

    /// The HTTP server's base URL.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Waits until every port accepts; `Err` with the exit status if nerve exits first.
    fn wait_until_accepting(&mut self) -> Result<(), std::process::ExitStatus> {
        let started = Instant::now();
        loop {
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok()
                && TcpStream::connect(("127.0.0.1", self.registry_port)).is_ok()
                && TcpStream::connect(("127.0.0.1", self.http_port)).is_ok()
            {
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                return Err(status);
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

    /// The process id of `nerve serve`, for signals.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
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

// Helpers for the fault-injection tests (durability.rs, idempotence.rs): brokers restarted on a fixed port,
// killed or stopped without assertions, and logs read back whole.

/// A port for a broker that is restarted on it. Below the kernel's ephemeral range (32768 and up on Linux),
/// so that while the broker is down no client's outgoing connection can take it as its local port, which
/// would keep the broker from binding it again.
pub fn restartable_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::rng();
    loop {
        let port = rng.random_range(20_000..32_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A free port from the kernel's ephemeral range.
pub fn any_free_port() -> u16 {
    free_port()
}

impl Nerve {
    /// Starts a broker on `port` with `data_dir` and more `nerve serve` flags (e.g. `--advertised-listener`),
    /// and waits until it accepts connections.
    pub fn start_on(data_dir: &Path, port: u16, extra_args: &[String]) -> Nerve {
        Nerve::spawn(data_dir, Some(port), extra_args, "info", &Stdio::inherit)
    }

    /// As [`Nerve::start_on`], with the logs (stderr) written to the file `log` for the test to read. A file
    /// rather than a pipe: nothing has to drain it for the broker to keep going.
    pub fn start_on_logging_to(
        data_dir: &Path,
        port: u16,
        extra_args: &[String],
        log: &Path,
    ) -> Nerve {
        let file = std::fs::File::create(log).expect("log file created");
        let stderr = || {
            Stdio::from(
                file.try_clone()
                    .expect("the log file can be handed to another process"),
            )
        };
        Nerve::spawn(data_dir, Some(port), extra_args, "info", &stderr)
    }

    /// SIGKILL: the process ends at once, in the middle of whatever it was doing. Returns once it is gone.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("running");
        child.kill().expect("SIGKILL sent");
        child.wait().expect("nerve reaped");
    }

    /// Sends SIGTERM and returns how the process exited, without judging it. A process that has not exited
    /// within [`PATIENCE`] is killed and the test fails.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.as_ref().expect("running").id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM failed");
        let started = Instant::now();
        loop {
            let child = self.child.as_mut().expect("running");
            if let Some(exit) = child.try_wait().expect("nerve's status") {
                self.child = None;
                return exit;
            }
            // Drop kills the process.
            assert!(
                started.elapsed() < PATIENCE,
                "nerve did not exit after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Creates a topic through the admin API of the broker at `bootstrap`.
pub fn create_topic(bootstrap: &str, name: &str, partitions: i32) {
    create_topic_with_configs(bootstrap, name, partitions, &[]);
}

/// Creates a topic with config overrides (Kafka names) through the admin API of the broker at `bootstrap`.
pub fn create_topic_with_configs(
    bootstrap: &str,
    name: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let mut topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let results = futures::executor::block_on(admin.create_topics(
        [&topic],
        &AdminOptions::new().operation_timeout(Some(PATIENCE)),
    ))
    .expect("create topics answered");
    for result in results {
        result.expect("topic created");
    }
}

/// One record as stored: where it is, its key and its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// Reads partitions `0..partitions` of `topic` from the beginning up to their high watermarks (as they are
/// when this starts), with an assign-only consumer. One vector per partition, in offset order.
pub fn read_all(bootstrap: &str, topic: &str, partitions: i32) -> Vec<Vec<Stored>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "nerve-test-assign-only")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    let mut highs = Vec::new();
    for partition in 0..partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition, PATIENCE)
            .expect("watermarks");
        highs.push(high);
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("offset");
    }
    consumer.assign(&assignment).expect("assign");
    let mut out: Vec<Vec<Stored>> = vec![Vec::new(); highs.len()];
    let next = |out: &Vec<Vec<Stored>>, p: usize| out[p].last().map_or(0, |r| r.offset + 1);
    let started = Instant::now();
    while (0..highs.len()).any(|p| next(&out, p) < highs[p]) {
        assert!(
            started.elapsed() < PATIENCE,
            "reading {topic} stalled: read up to {:?} of high watermarks {highs:?}",
            (0..highs.len()).map(|p| next(&out, p)).collect::<Vec<_>>()
        );
        match consumer.poll(Timeout::After(Duration::from_millis(500))) {
            Some(Ok(message)) => {
                let p = usize::try_from(message.partition()).expect("partition");
                if message.offset() < highs[p] {
                    out[p].push(Stored {
                        partition: message.partition(),
                        offset: message.offset(),
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().map(<[u8]>::to_vec),
                    });
                }
            }
            Some(Err(e)) => panic!("consumer error: {e}"),
            None => {}
        }
    }
    out
}

/// What the delivery reports of a [`recording_producer`] said, by record number (each record is sent with
/// its number as the delivery opaque).
#[derive(Default)]
pub struct Deliveries {
    /// Acknowledged records: number -> (partition, offset) as the acknowledgement reported them.
    pub acked: std::sync::Mutex<std::collections::BTreeMap<u64, (i32, i64)>>,
    /// Records whose delivery failed: number -> the error.
    pub failed: std::sync::Mutex<std::collections::BTreeMap<u64, String>>,
    /// Records reported more than once (librdkafka promises one report per record).
    pub reported_twice: std::sync::Mutex<Vec<u64>>,
}

impl Deliveries {
    pub fn acked_count(&self) -> usize {
        self.acked.lock().unwrap().len()
    }

    /// Waits until more than `count` records are acknowledged.
    pub fn wait_for_more_than(&self, count: usize) {
        let started = Instant::now();
        while self.acked_count() <= count {
            assert!(
                started.elapsed() < PATIENCE,
                "no more than {count} records were ever acknowledged; failures: {:?}",
                self.failed
                    .lock()
                    .unwrap()
                    .iter()
                    .take(5)
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A producer context that keeps every delivery report in [`Deliveries`].
pub struct DeliveryRecorder(pub std::sync::Arc<Deliveries>);

impl rdkafka::ClientContext for DeliveryRecorder {}

impl rdkafka::producer::ProducerContext for DeliveryRecorder {
    type DeliveryOpaque = Box<u64>;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, number: Box<u64>) {
        let number = *number;
        let twice = match result {
            Ok(message) => self
                .0
                .acked
                .lock()
                .unwrap()
                .insert(number, (message.partition(), message.offset()))
                .is_some(),
            Err((e, _)) => self
                .0
                .failed
                .lock()
                .unwrap()
                .insert(number, e.to_string())
                .is_some(),
        };
        if twice {
            self.0.reported_twice.lock().unwrap().push(number);
        }
    }
}

pub type RecordingProducer = rdkafka::producer::ThreadedProducer<DeliveryRecorder>;

/// A producer whose delivery reports land in the returned [`Deliveries`]. Settings: `extra` over these
/// defaults: idempotence on, `acks=all`, and a 60 s delivery timeout, long enough to ride over restarts.
pub fn recording_producer(
    bootstrap: &str,
    extra: &[(&str, &str)],
) -> (RecordingProducer, std::sync::Arc<Deliveries>) {
    let deliveries = std::sync::Arc::new(Deliveries::default());
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "60000")
        // Reconnect to a restarted broker soon rather than after librdkafka's backoff of up to 10 s.
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200");
    for (k, v) in extra {
        config.set(*k, *v);
    }
    let producer = config
        .create_with_context(DeliveryRecorder(deliveries.clone()))
        .expect("producer");
    (producer, deliveries)
}

/// Queues record `number` (payload: the number in decimal) with `key`, to `partition` if given (else the
/// key decides), waiting while the producer's queue is full.
pub fn send_numbered(
    producer: &RecordingProducer,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    number: u64,
) {
    let payload = number.to_string();
    let mut record = rdkafka::producer::BaseRecord::with_opaque_to(topic, Box::new(number))
        .key(key)
        .payload(&payload);
    if let Some(partition) = partition {
        record = record.partition(partition);
    }
    let started = Instant::now();
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                back,
            )) => {
                assert!(
                    started.elapsed() < PATIENCE,
                    "the producer queue stayed full"
                );
                record = back;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => panic!("record {number} not queued: {e}"),
        }
    }
}

/// The record number in a payload written by [`send_numbered`].
pub fn number_of(stored: &Stored) -> u64 {
    let payload = stored.payload.as_deref().expect("a payload");
    std::str::from_utf8(payload)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{stored:?} has a payload that was never sent"))
}

/// An answer of [`http_get`]: status, `Content-Type` and body.
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: String,
}

/// `GET path` on `127.0.0.1:port` over a connection of its own (`Connection: close`, so the answer ends at
/// EOF), with an `Accept` header if given. Plain HTTP/1.1 over a socket: enough for the tests' servers.
pub fn http_get(port: u16, path: &str, accept: Option<&str>) -> std::io::Result<HttpAnswer> {
    use std::io::{Read, Write};
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(PATIENCE))?;
    let accept = accept.map_or(String::new(), |a| format!("Accept: {a}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{accept}Connection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let raw = String::from_utf8(raw).expect("a UTF-8 answer");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let content_type = lines.find_map(|l| {
        let (name, value) = l.split_once(':')?;
        name.eq_ignore_ascii_case("content-type")
            .then(|| value.trim().to_string())
    });
    Ok(HttpAnswer {
        status,
        content_type,
        body: body.to_string(),
    })
}

/// What a `nerve` command printed and how it ended.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Run {
    pub fn stdout_text(&self) -> String {
        String::from_utf8(self.stdout.clone()).expect("stdout is UTF-8")
    }

    /// Panics with everything the command said unless it succeeded.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        );
        self
    }

    /// Panics unless the command failed with exit status 1 and one line on stderr containing `expected`.
    pub fn fails_with(self, expected: &str) -> Run {
        assert_eq!(
            self.code,
            Some(1),
            "stdout: {}\nstderr: {}",
            String::from_utf8_lossy(&self.stdout),
            self.stderr
        );
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "one line on stderr: {}",
            self.stderr
        );
        assert!(
            self.stderr.contains(expected),
            "stderr {:?} lacks {expected:?}",
            self.stderr
        );
        self
    }
}

/// Runs `nerve ARGS` against `bootstrap` with `stdin`.
pub fn nerve(bootstrap: &str, args: &[&str], stdin: &[u8]) -> Run {
    run_nerve(args, &[("NERVE_BOOTSTRAP", bootstrap)], stdin)
}

/// Runs the built `nerve` with `args`, the environment variables `env` and `stdin`, as a user runs it,
/// bounded by [`PATIENCE`] so that a hanging command fails the test.
pub fn run_nerve(args: &[&str], env: &[(&str, &str)], stdin: &[u8]) -> Run {
    use std::io::{Read, Write};
    let mut child = Command::new(env!("CARGO_BIN_EXE_nerve"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nerve runs");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        // A command that exits without reading its stdin closes the pipe; that is not this test's concern.
        let _ = input.write_all(&stdin);
    });
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let stdout = std::thread::spawn(move || {
        let mut buf = Vec::new();
        out.read_to_end(&mut buf).expect("read stdout");
        buf
    });
    let stderr = std::thread::spawn(move || {
        let mut buf = String::new();
        err.read_to_string(&mut buf).expect("read stderr");
        buf
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("status") {
            break status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            panic!("nerve {args:?} did not finish within {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    writer.join().expect("stdin writer");
    Run {
        code: status.code(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

/// Stores `user`'s SCRAM-SHA-512 credential for `password` (4096 iterations) in the metadata store, as
/// `nerve user create --data-dir` does before a broker starts.
pub async fn store_scram_user(meta: &nerve_storage::LocalMetaStore, user: &str, password: &str) {
    use nerve_storage::MetaStore as _;
    let c = nerve_auth::scram::ScramCredential::generate(
        nerve_auth::scram::ScramMechanism::Sha512,
        password.as_bytes(),
        4096,
    )
    .expect("a credential");
    let stored = nerve_storage::StoredScramCredential {
        salt: c.salt,
        stored_key: c.stored_key,
        server_key: c.server_key,
        iterations: c.iterations,
    };
    meta.set_scram_credential(user, "SCRAM-SHA-512", Some(stored))
        .await
        .expect("the credential is stored");
}
