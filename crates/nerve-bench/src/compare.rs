//! `nerve-bench compare`: starts `nerve serve`, measures the machine's limits, runs the suite against every
//! reachable target (alternating the targets' order from case to case, so that drifting machine speed is
//! spread over all of them), and writes `bench.md`, `bench.json` and `bench.png`.
//!
//! The targets are Nerve (started here) and the peers on this machine: NATS JetStream, Redis Streams and
//! RabbitMQ, at `--nats-url`, `--redis-url` and `--amqp-url`. An unreachable one is reported as
//! "unreachable: <why>"; a case a server cannot run as asked (a durability it lacks) is reported with the
//! reason in place of figures, never run with a weaker setting.

use std::fmt::Write as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use crate::limits::{self, Limits};
use crate::proc_info;
use crate::target::jetstream::JetStreamTarget;
use crate::target::kafka::{Flavor, KafkaTarget};
use crate::target::rabbitmq::RabbitMqTarget;
use crate::target::redis::RedisTarget;
use crate::target::{self, Acks, Destination, Durability, Target, TargetError, TargetInfo};
use crate::workload::{self, Rate, RunReport, Workload};

#[derive(Args)]
#[command(after_help = "Examples:
  cargo build --release -p nerve -p nerve-bench
  target/release/nerve-bench compare --nerve-bin target/release/nerve --out target/nerve-bench
  target/release/nerve-bench compare --nerve-bin target/release/nerve --quick")]
pub(crate) struct CompareArgs {
    /// The `nerve` binary to start.
    #[arg(long, value_name = "PATH")]
    nerve_bin: PathBuf,
    /// A short suite (1 KiB records only, 3 s per case) to check that everything works.
    #[arg(long)]
    quick: bool,
    /// Where bench.md, bench.json, bench.png, the server's log and (while it runs) its data go. On a real
    /// disk: the durable cases and the disk limits are measured there.
    #[arg(long, default_value = "target/nerve-bench")]
    out: PathBuf,
    /// NATS with JetStream.
    #[arg(long, default_value = crate::DEFAULT_NATS_URL)]
    nats_url: String,
    /// The NATS server runs with `jetstream { sync_interval: always }` (nats-server >= 2.10), which the
    /// client protocol does not show: without this flag, JetStream's durable cases are not run.
    #[arg(long)]
    nats_sync_always: bool,
    /// Redis (Streams).
    #[arg(long, default_value = crate::DEFAULT_REDIS_URL)]
    redis_url: String,
    /// RabbitMQ.
    #[arg(long, default_value = crate::DEFAULT_AMQP_URL)]
    amqp_url: String,
}

/// One case of the suite.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) record_bytes: usize,
    pub(crate) partitions: u32,
    pub(crate) durable: bool,
    pub(crate) rate: Rate,
}

/// Records per second of the fixed-rate (latency) cases: low enough that a single-partition durable topic
/// keeps up on a small machine, so that the latency is the broker's and not a queue's.
const LATENCY_RATE: f64 = 1000.0;

fn suite(quick: bool) -> Vec<Case> {
    let sizes: &[usize] = if quick { &[1024] } else { &[1024, 100, 16384] };
    let mut cases = Vec::new();
    for &record_bytes in sizes {
        for partitions in [1, 16] {
            for durable in [true, false] {
                let mut rates = vec![Rate::Max];
                if record_bytes == 1024 {
                    rates.push(Rate::Fixed(LATENCY_RATE));
                }
                for rate in rates {
                    let size = match record_bytes {
                        b if b % 1024 == 0 => format!("{}KiB", b / 1024),
                        b => format!("{b}B"),
                    };
                    let rate_name = match rate {
                        Rate::Max => "max".to_string(),
                        Rate::Fixed(r) => format!("{r}rps"),
                    };
                    cases.push(Case {
                        name: format!(
                            "{size}-p{partitions}-{}-{rate_name}",
                            if durable { "durable" } else { "volatile" }
                        ),
                        record_bytes,
                        partitions,
                        durable,
                        rate,
                    });
                }
            }
        }
    }
    cases
}

/// A target of the suite: reachable with what it said about itself, or why not.
struct Entry {
    name: String,
    target: Box<dyn Target>,
    info: Result<TargetInfo, String>,
}

#[derive(Serialize)]
struct Row {
    case: Case,
    target: String,
    /// The report, or why there is none: a failure, or (with `unavailable`) a case the server cannot run.
    result: Result<RunReport, String>,
    unavailable: bool,
}

#[derive(Serialize, Default)]
struct Memory {
    idle_bytes: Option<u64>,
    end_of_suite_bytes: Option<u64>,
    thousand_partitions_bytes: Option<u64>,
}

#[derive(Serialize)]
struct TargetSummary {
    name: String,
    reachable: bool,
    info: Option<TargetInfo>,
    unreachable: Option<String>,
    memory: Memory,
}

#[derive(Serialize)]
struct Document {
    quick: bool,
    limits: Limits,
    targets: Vec<TargetSummary>,
    rows: Vec<Row>,
}

/// `nerve serve` as a child process on free ports with its own data directory; killed when dropped.
struct NerveServer {
    child: Child,
    port: u16,
    version: Option<String>,
    _data: tempfile::TempDir,
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl NerveServer {
    fn start(bin: &Path, out: &Path) -> Result<NerveServer> {
        let data = tempfile::Builder::new()
            .prefix("nerve-data-")
            .tempdir_in(out)
            .context("creating the server's data directory")?;
        let port = free_port()?;
        let log = std::fs::File::create(out.join("nerve.log"))?;
        let child = Command::new(bin)
            .arg("serve")
            .arg("--data-dir")
            .arg(data.path())
            .arg("--kafka-listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--registry-listen")
            .arg(format!("127.0.0.1:{}", free_port()?))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let version = Command::new(bin)
            .arg("--version")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .map(|v| v.trim().to_string());
        let mut server = NerveServer {
            child,
            port,
            version,
            _data: data,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("nerve exited before accepting connections ({status}); see its log in nerve.log");
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("nerve did not accept connections within 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, so that the server shuts down as in production; killed if it does not within 30 s.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NerveServer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn destination(case: &Case, target: &str) -> Destination {
    Destination {
        name: crate::unique_topic(&format!("{target}-{}", case.name)),
        partitions: case.partitions,
        durability: if case.durable {
            Durability::Durable
        } else {
            Durability::NotDurable
        },
        acks: Acks::All,
        batch_bytes: None,
        // librdkafka's default linger (5 ms) would be most of a fixed-rate case's latency: those cases are
        // about the broker's.
        linger_ms: matches!(case.rate, Rate::Fixed(_)).then_some(0),
        compression: "none".to_string(),
        extra_config: Vec::new(),
    }
}

fn workload(case: &Case, quick: bool) -> Workload {
    Workload {
        producers: 1,
        consumers: 1,
        record_bytes: case.record_bytes,
        keys: 0,
        rate: case.rate,
        warmup: Duration::from_millis(if quick { 500 } else { 2000 }),
        duration: Duration::from_secs(if quick { 3 } else { 10 }),
        max_in_flight: 10_000,
        drain_timeout: Duration::from_secs(30),
        keep_destination: false,
    }
}

pub(crate) async fn run(args: CompareArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out = args.out.canonicalize()?;
    let nerve = NerveServer::start(&args.nerve_bin, &out)?;
    println!(
        "nerve {} on 127.0.0.1:{} (pid {})",
        nerve.version.as_deref().unwrap_or("(unknown version)"),
        nerve.port,
        nerve.pid()
    );
    // Let start-up allocations settle before the idle reading.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = proc_info::rss_bytes(nerve.pid());

    let limits = {
        let out = out.clone();
        let quick = args.quick;
        tokio::task::spawn_blocking(move || {
            limits::measure(
                &out,
                if quick { 128 } else { 512 },
                Duration::from_secs(if quick { 1 } else { 3 }),
            )
        })
        .await??
    };
    limits.print();

    let local_pid = |url: &str| target::url_port(url).and_then(proc_info::pid_listening_on);
    let targets: Vec<(&str, Box<dyn Target>)> = vec![
        (
            "nerve",
            Box::new(KafkaTarget::new(
                format!("127.0.0.1:{}", nerve.port),
                Flavor::Nerve,
                Some(nerve.pid()),
                nerve.version.clone(),
            )),
        ),
        (
            "jetstream",
            Box::new(JetStreamTarget::new(
                args.nats_url.clone(),
                local_pid(&args.nats_url),
                args.nats_sync_always,
            )),
        ),
        (
            "redis",
            Box::new(RedisTarget::new(
                args.redis_url.clone(),
                local_pid(&args.redis_url),
            )),
        ),
        (
            "rabbitmq",
            Box::new(RabbitMqTarget::new(
                args.amqp_url.clone(),
                local_pid(&args.amqp_url),
            )),
        ),
    ];
    let mut entries: Vec<Entry> = targets
        .into_iter()
        .map(|(name, target)| Entry {
            name: name.to_string(),
            target,
            info: Err("not connected yet".to_string()),
        })
        .collect();
    let cases = suite(args.quick);
    for entry in &mut entries {
        let probe = destination(&cases[0], &entry.name);
        entry.info = entry
            .target
            .connect(&probe)
            .await
            .map_err(|e| e.to_string());
        match &entry.info {
            Ok(info) => println!(
                "target {}: {} at {}, server {}",
                entry.name,
                info.client,
                info.address,
                info.server_version
                    .as_deref()
                    .unwrap_or("(version unknown)")
            ),
            Err(e) => println!("target {}: {e}", entry.name),
        }
    }
    // The peers were running before the suite: this is their memory before it, not a fresh server's.
    let idle: Vec<Option<u64>> = entries
        .iter()
        .map(|e| {
            if e.name == "nerve" {
                idle
            } else {
                e.target.server_pid().and_then(proc_info::rss_bytes)
            }
        })
        .collect();

    let mut rows = Vec::new();
    let reachable: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].info.is_ok())
        .collect();
    for (n, case) in cases.iter().enumerate() {
        for k in 0..reachable.len() {
            let entry = &entries[reachable[(n + k) % reachable.len()]];
            let result = workload::run(
                entry.target.as_ref(),
                &destination(case, &entry.name),
                &workload(case, args.quick),
            )
            .await;
            let unavailable = matches!(
                result.as_ref().map_err(|e| e.downcast_ref::<TargetError>()),
                Err(Some(TargetError::Unavailable(_)))
            );
            match &result {
                Ok(r) => println!(
                    "{:<28} {:<8} {:>8.1} MB/s {:>9.0} rec/s  p50 {:>7.2} ms  p99 {:>7.2} ms  lost {} dup {}",
                    case.name,
                    entry.name,
                    r.produce.mb_per_s,
                    r.produce.records_per_s,
                    r.end_to_end.as_ref().map_or(f64::NAN, |l| l.p50_ms),
                    r.end_to_end.as_ref().map_or(f64::NAN, |l| l.p99_ms),
                    r.check.lost,
                    r.check.duplicates
                ),
                Err(e) if unavailable => {
                    println!("{:<28} {:<8} {}", case.name, entry.name, e.root_cause())
                }
                Err(e) => println!("{:<28} {:<8} failed: {e:#}", case.name, entry.name),
            }
            rows.push(Row {
                case: case.clone(),
                target: entry.name.clone(),
                result: result.map_err(|e| {
                    if unavailable {
                        e.root_cause().to_string()
                    } else {
                        format!("{e:#}")
                    }
                }),
                unavailable,
            });
        }
    }

    let mut summaries = Vec::new();
    for (entry, idle) in entries.iter().zip(idle) {
        let mut memory = Memory::default();
        if let Some(pid) = entry.target.server_pid() {
            memory.idle_bytes = idle;
            memory.end_of_suite_bytes = proc_info::rss_bytes(pid);
            if entry.info.is_ok() {
                memory.thousand_partitions_bytes = thousand_partitions(entry.target.as_ref())
                    .await
                    .map_err(|e| println!("{}: 1,000 partitions: {e:#}", entry.name))
                    .ok()
                    .flatten();
            }
        }
        summaries.push(TargetSummary {
            name: entry.name.clone(),
            reachable: entry.info.is_ok(),
            info: entry.info.as_ref().ok().cloned(),
            unreachable: entry.info.as_ref().err().cloned(),
            memory,
        });
    }
    nerve.stop();

    let document = Document {
        quick: args.quick,
        limits,
        targets: summaries,
        rows,
    };
    crate::write_json(&out.join("bench.json"), &document)?;
    std::fs::write(out.join("bench.md"), markdown(&document))?;
    let bars: Vec<crate::plot::Bar> = document
        .rows
        .iter()
        .filter(|r| r.case.rate == Rate::Max)
        .filter_map(|r| {
            Some(crate::plot::Bar {
                group: r.case.name.trim_end_matches("-max").to_string(),
                series: r.target.clone(),
                value: r.result.as_ref().ok()?.produce.mb_per_s,
            })
        })
        .collect();
    crate::plot::bars(
        &out.join("bench.png"),
        "produce MB/s at max rate (acks=all)",
        &bars,
        &[
            ("disk", document.limits.disk_write_mb_per_s),
            ("loopback", document.limits.loopback_mb_per_s),
        ],
    )?;
    println!(
        "wrote {}, {} and {}",
        out.join("bench.md").display(),
        out.join("bench.json").display(),
        out.join("bench.png").display()
    );
    Ok(())
}

/// Resident memory with 1,000 partitions holding data: 10,000 keyed 1 KiB records over 1,000 keys, which
/// leaves next to no partition empty, kept until the reading.
async fn thousand_partitions(target: &dyn Target) -> Result<Option<u64>> {
    let case = Case {
        name: "memory-1000p".to_string(),
        record_bytes: 1024,
        partitions: 1000,
        durable: false,
        rate: Rate::Fixed(5000.0),
    };
    let destination = destination(&case, "memory");
    let workload = Workload {
        keys: 1000,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(2),
        keep_destination: true,
        ..workload(&case, true)
    };
    let report = workload::run(target, &destination, &workload).await?;
    let rss = target.server_pid().and_then(proc_info::rss_bytes);
    let _ = target.cleanup(&destination).await;
    anyhow::ensure!(
        report.check.acked > 0,
        "no record was acknowledged: {:?}",
        report.check.first_error
    );
    Ok(rss)
}

fn mib(bytes: Option<u64>) -> String {
    bytes.map_or("-".to_string(), |b| {
        format!("{:.1} MiB", b as f64 / 1048576.0)
    })
}

/// What each target's durable and not-durable cases ask of the server, so that like is compared with like.
fn durability_meaning(target: &str) -> (&'static str, &'static str) {
    match target {
        "nerve" => (
            "topic config `fsync=always`: fsync before the ack",
            "topic config `fsync=never`: acked from the page cache",
        ),
        "jetstream" => (
            "server `jetstream { sync_interval: always }` (nats-server >= 2.10): fsync before the PubAck",
            "the server's default `sync_interval` (2 min): acked from the page cache",
        ),
        "redis" => (
            "server `appendonly yes` + `appendfsync always`: AOF fsync before the reply",
            "whatever else the server runs with (here: no AOF, nothing on disk)",
        ),
        "rabbitmq" => (
            "quorum queues + persistent messages: confirmed once the Raft log is fsync'd",
            "classic transient queues + transient messages: confirmed from memory",
        ),
        _ => ("", ""),
    }
}

fn markdown(doc: &Document) -> String {
    let l = &doc.limits;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# nerve-bench compare{}\n",
        if doc.quick { " (quick)" } else { "" }
    );
    let _ = writeln!(md, "## Machine limits, measured in the same run\n");
    let _ = writeln!(
        md,
        "- sequential write + one fdatasync: **{:.0} MB/s** ({} MiB in {})",
        l.disk_write_mb_per_s,
        l.disk_write_bytes >> 20,
        l.dir
    );
    let _ = writeln!(
        md,
        "- 4 KiB write + fdatasync: **{:.0} ops/s**, p50 {:.2} ms, p99 {:.2} ms",
        l.sync_writes.ops_per_s, l.sync_writes.p50_ms, l.sync_writes.p99_ms
    );
    let _ = writeln!(md, "- loopback TCP: **{:.0} MB/s**\n", l.loopback_mb_per_s);
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(
        md,
        "| target | state | client | server | RSS idle (peers: before the suite) | RSS end of suite | RSS 1,000 partitions |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for t in &doc.targets {
        let (state, client, server) = match (&t.info, &t.unreachable) {
            (Some(i), _) => (
                "reachable".to_string(),
                i.client.clone(),
                i.server_version.clone().unwrap_or_default(),
            ),
            (None, why) => (
                format!("unreachable: {}", why.as_deref().unwrap_or("?")),
                String::new(),
                String::new(),
            ),
        };
        let _ = writeln!(
            md,
            "| {} | {state} | {client} | {server} | {} | {} | {} |",
            t.name,
            mib(t.memory.idle_bytes),
            mib(t.memory.end_of_suite_bytes),
            mib(t.memory.thousand_partitions_bytes)
        );
    }
    let _ = writeln!(md, "\n## What durable means per target\n");
    let _ = writeln!(md, "| target | durable | not durable |");
    let _ = writeln!(md, "|---|---|---|");
    for t in &doc.targets {
        let (durable, not_durable) = durability_meaning(&t.name);
        let _ = writeln!(md, "| {} | {durable} | {not_durable} |", t.name);
    }
    for t in &doc.targets {
        let Some(info) = &t.info else { continue };
        let _ = writeln!(
            md,
            "\n{} settings (as probed with the first case): {}",
            t.name,
            info.settings
                .iter()
                .map(|(k, v)| format!("`{k}={v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for note in &info.notes {
            let _ = writeln!(md, "- note: {note}");
        }
    }
    let _ = writeln!(md, "\n## Cases\n");
    let _ = writeln!(
        md,
        "One producer and one consumer, acks=all, no compression, client batching defaults at max rate and linger.ms=0 at a fixed rate. MB/s are 10^6 bytes \
         of record values per second; latency is end to end (due time to consumer receipt). `max` cases send as \
         fast as acknowledgements allow, so their latency includes the client's queue; the fixed-rate cases \
         (open loop) show the broker's latency. disk% = produce MB/s / sequential-write limit; loopback% = \
         produce MB/s / loopback TCP limit.\n"
    );
    let _ = writeln!(
        md,
        "| case | target | durability | produce MB/s | records/s | consume MB/s | p50 ms | p99 ms | p99.9 ms | max ms | disk% | loopback% | lost/dup |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for row in &doc.rows {
        let durability = if row.case.durable {
            "durable"
        } else {
            "not durable"
        };
        match &row.result {
            Ok(r) => {
                let lat = |f: fn(&workload::Latency) -> f64| {
                    r.end_to_end
                        .as_ref()
                        .map_or("-".to_string(), |l| format!("{:.2}", f(l)))
                };
                let _ = writeln!(
                    md,
                    "| {} | {} | {durability} | {:.1} | {:.0} | {:.1} | {} | {} | {} | {} | {:.0}% | {:.1}% | {}/{} |",
                    row.case.name,
                    row.target,
                    r.produce.mb_per_s,
                    r.produce.records_per_s,
                    r.consume.mb_per_s,
                    lat(|l| l.p50_ms),
                    lat(|l| l.p99_ms),
                    lat(|l| l.p999_ms),
                    lat(|l| l.max_ms),
                    r.produce.mb_per_s / l.disk_write_mb_per_s * 100.0,
                    r.produce.mb_per_s / l.loopback_mb_per_s * 100.0,
                    r.check.lost,
                    r.check.duplicates
                );
            }
            Err(e) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | {durability} | {}{} |||||||||",
                    row.case.name,
                    row.target,
                    if row.unavailable { "" } else { "failed: " },
                    e.replace('|', "/")
                );
            }
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_suite_covers_sizes_partitions_and_durability() {
        let full = suite(false);
        // 3 sizes x 2 partition counts x 2 durabilities at max, plus 4 fixed-rate 1 KiB cases.
        assert_eq!(full.len(), 16);
        assert!(full
            .iter()
            .any(|c| c.record_bytes == 100 && c.partitions == 16 && !c.durable));
        assert_eq!(suite(true).len(), 8);
        let mut names: Vec<&str> = full.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), full.len(), "case names are unique");
    }
}
