//! Runs `nerve-bench run` for two seconds against a real `nerve serve` and checks the accounting: every
//! acknowledged record consumed exactly once, with latencies recorded. Never asserts a speed.
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

#[test]
fn two_seconds_against_nerve_account_for_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, port) = start_nerve(&dir.path().join("data"));
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_nerve-bench"))
        .args(["run", "--target", "nerve", "--bootstrap"])
        .arg(format!("127.0.0.1:{port}"))
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
            "--durability",
            "durable",
            "--json",
        ])
        .arg(&json)
        .output()
        .expect("nerve-bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "nerve-bench failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
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
    // The broker was found by its port, so its memory was read.
    assert!(
        report["server_rss_bytes"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    assert!(stdout.contains("end-to-end latency: p50"), "{stdout}");
}
