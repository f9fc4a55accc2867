//! Runs `nerve-bench run` for two seconds against a real `nerve serve`, and against each peer on this
//! machine (NATS JetStream, Redis, RabbitMQ: services of this kind of machine, on CI too), and checks the
//! accounting: every acknowledged record consumed exactly once, with latencies recorded. Never asserts a
//! speed. A peer that is not reachable fails its test: a skipped peer would hide a broken target.
//!
//! The broker binary is another package's, which a test cannot depend on: it is `NERVE_BIN` when set, else
//! `target/debug/nerve` of this workspace. `cargo nextest run --workspace` (scripts/test) builds it before
//! any test runs; with `-p nerve-bench` alone, run `cargo build -p nerve` first.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn nerve_bin() -> PathBuf {
    let path = std::env::var_os("NERVE_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/nerve")
        });
    assert!(
        path.exists(),
        "the nerve binary is not at {}: run `cargo build -p nerve` or set NERVE_BIN",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_nerve(data_dir: &std::path::Path) -> (Server, u16) {
    let port = free_port();
    let child = Command::new(nerve_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .arg("--kafka-listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--registry-listen")
        .arg(format!("127.0.0.1:{}", free_port()))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("nerve starts");
    let mut server = Server(child);
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = server.0.try_wait().unwrap() {
            panic!("nerve exited before accepting connections: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "nerve never accepted connections"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, port)
}

/// Runs `nerve-bench run` with `args` for two seconds at 500 records/s (2 producers, 2 consumers, 4
/// partitions) and returns the JSON report and what it printed.
fn run_bench(args: &[&str]) -> (Value, String) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_nerve-bench"))
        .arg("run")
        .args(args)
        .args([
            "--rate",
            "500",
            "--duration",
            "2",
            "--warmup",
            "0.5",
            "--partitions",
            "4",
            "--producers",
            "2",
            "--consumers",
            "2",
            "--record-size",
            "256",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("nerve-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "nerve-bench run {args:?} failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    (report, stdout)
}

/// Every acknowledged record consumed once, none lost or duplicated, latencies present and ordered, the
/// server's memory read.
fn check_report(report: &Value, stdout: &str) {
    let check = &report["check"];
    let count = |name: &str| {
        check[name]
            .as_u64()
            .unwrap_or_else(|| panic!("check.{name} missing: {report:#}"))
    };
    assert!(count("acked") > 0, "nothing acknowledged:\n{stdout}");
    assert_eq!(count("sent"), count("acked"), "{stdout}");
    assert_eq!(count("consumed"), count("acked"), "{stdout}");
    assert_eq!(count("consumed_unique"), count("acked"), "{stdout}");
    assert_eq!(count("lost"), 0, "{stdout}");
    assert_eq!(count("duplicates"), 0, "{stdout}");
    assert_eq!(count("send_errors"), 0, "{stdout}");
    assert!(report["produce"]["records"].as_u64().unwrap() > 0);
    assert!(report["consume"]["records"].as_u64().unwrap() > 0);

    for which in ["end_to_end", "ack"] {
        let latency = &report[which];
        let ms = |p: &str| {
            latency[p]
                .as_f64()
                .unwrap_or_else(|| panic!("{which}.{p} missing: {report:#}"))
        };
        assert!(latency["count"].as_u64().unwrap() > 0);
        // A round trip through a broker over TCP takes more than 10 us: smaller means a unit is wrong.
        assert!(ms("p50_ms") > 0.01, "{which}: {latency}");
        assert!(ms("p50_ms") <= ms("p90_ms"), "{which}: {latency}");
        assert!(ms("p90_ms") <= ms("p99_ms"), "{which}: {latency}");
        assert!(ms("p99_ms") <= ms("p999_ms"), "{which}: {latency}");
        assert!(ms("p999_ms") <= ms("max_ms"), "{which}: {latency}");
    }
    // The server was found by its port, so its memory was read.
    assert!(
        report["server_rss_bytes"].as_u64().unwrap_or(0) > 0,
        "{report:#}"
    );
    assert!(stdout.contains("end-to-end latency: p50"), "{stdout}");
}

#[test]
fn two_seconds_against_nerve_account_for_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_nerve(&dir.path().join("data"));
    let bootstrap = format!("127.0.0.1:{port}");
    let (report, stdout) = run_bench(&[
        "--target",
        "nerve",
        "--bootstrap",
        &bootstrap,
        "--durability",
        "durable",
    ]);
    check_report(&report, &stdout);
}

/// Fails, naming the service and how this kind of machine starts it, unless something listens on `port`.
fn require_service(name: &str, port: u16, how: &str) {
    if let Err(e) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(5),
    ) {
        panic!(
            "{name} is not reachable on 127.0.0.1:{port} ({e}). It is one of this machine kind's services \
             and this test needs it (it must not be skipped): start it with `{how}`"
        );
    }
}

const NATS: (&str, u16, &str) = (
    "NATS with JetStream",
    4222,
    "start-stop-daemon --start --oknodo --background --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server -l /var/log/nats-server.log",
);
const REDIS: (&str, u16, &str) = (
    "Redis",
    6379,
    "redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save \"\" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log",
);
const RABBITMQ: (&str, u16, &str) = ("RabbitMQ", 5672, "rabbitmq-server -detached");

fn peer(service: (&str, u16, &str), target: &str, durability: &str) -> (Value, String) {
    require_service(service.0, service.1, service.2);
    let (report, stdout) = run_bench(&["--target", target, "--durability", durability]);
    check_report(&report, &stdout);
    assert_eq!(report["target"]["name"], target, "{report:#}");
    assert!(
        report["target"]["server_version"]
            .as_str()
            .is_some_and(|v| v.chars().next().is_some_and(|c| c.is_ascii_digit())),
        "the server's version is reported: {report:#}"
    );
    (report, stdout)
}

/// `nerve-bench run` with `args` for a short while, expected to refuse the case: returns what it said.
fn refused(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_nerve-bench"))
        .arg("run")
        .args(args)
        .args(["--rate", "100", "--duration", "1", "--warmup", "0"])
        .output()
        .expect("nerve-bench runs");
    assert!(!output.status.success(), "{args:?} ran");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn two_seconds_against_jetstream_account_for_every_record() {
    peer(NATS, "jetstream", "not-durable");
    // Durable needs the server's sync_interval: always, which the client cannot see: refused without the
    // operator's word, whatever the server's version.
    let why = refused(&["--target", "jetstream", "--durability", "durable"]);
    assert!(why.contains("not available"), "{why}");
}

#[test]
fn two_seconds_against_redis_account_for_every_record() {
    let (report, _) = peer(REDIS, "redis", "not-durable");
    let settings = report["target"]["settings"].to_string();
    if settings.contains("appendonly no") {
        let why = refused(&["--target", "redis", "--durability", "durable"]);
        assert!(why.contains("not durable: no AOF on this server"), "{why}");
    }
}

#[test]
fn two_seconds_against_rabbitmq_account_for_every_record() {
    peer(RABBITMQ, "rabbitmq", "not-durable");
    let (report, _) = peer(RABBITMQ, "rabbitmq", "durable");
    assert!(
        report["target"]["settings"].to_string().contains("quorum"),
        "{report:#}"
    );
}
