//! `nerve-bench`: drives a broker with producers and consumers and measures throughput and end-to-end
//! latency (`run`), the machine's own limits (`limits`), and a suite of cases against every reachable target
//! beside those limits (`compare`). See the crate's README for the method.

mod compare;
mod limits;
mod plot;
mod proc_info;
mod target;
mod workload;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use target::jetstream::JetStreamTarget;
use target::kafka::{Flavor, KafkaTarget};
use target::rabbitmq::RabbitMqTarget;
use target::redis::RedisTarget;
use target::{Acks, Destination, Durability, Target};
use workload::{Rate, Workload};

#[derive(Parser)]
#[command(
    name = "nerve-bench",
    version,
    about = "Throughput and latency of Nerve and its peers, beside the machine's limits"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one workload against one target and print its throughput and latency.
    Run(Box<RunArgs>),
    /// Measure the machine: sequential disk write, small synchronous writes, loopback TCP.
    Limits(LimitsArgs),
    /// Start `nerve serve`, measure the limits, run the suite against every reachable target, and write
    /// bench.md, bench.json and bench.png.
    Compare(compare::CompareArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    /// Nerve over the Kafka protocol (durability through Nerve's topic config `fsync`).
    Nerve,
    /// Any Kafka-compatible broker (durability through `flush.messages`).
    Kafka,
    /// NATS JetStream (`--url nats://...`; durable needs the server's `sync_interval: always`).
    Jetstream,
    /// Redis Streams (`--url redis://...`; durable needs the server's `appendfsync always`).
    Redis,
    /// RabbitMQ (`--url amqp://...`; durable: quorum queues and persistent messages).
    Rabbitmq,
}

impl TargetKind {
    /// The address of the service on this machine, for peers given no `--url`.
    fn default_url(self) -> Option<&'static str> {
        match self {
            TargetKind::Nerve | TargetKind::Kafka => None,
            TargetKind::Jetstream => Some(DEFAULT_NATS_URL),
            TargetKind::Redis => Some(DEFAULT_REDIS_URL),
            TargetKind::Rabbitmq => Some(DEFAULT_AMQP_URL),
        }
    }
}

pub(crate) const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
pub(crate) const DEFAULT_REDIS_URL: &str = "redis://127.0.0.1:6379";
pub(crate) const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

#[derive(Args)]
#[command(after_help = "Examples:
  nerve-bench run --target nerve --bootstrap 127.0.0.1:9092 --rate 5000 --duration 10
  nerve-bench run --target kafka --bootstrap 127.0.0.1:9092 --rate max --partitions 16 --producers 2
  nerve-bench run --target jetstream --url nats://127.0.0.1:4222 --rate 1000 --durability not-durable
  nerve-bench run --target redis --url redis://127.0.0.1:6379 --partitions 4
  nerve-bench run --target rabbitmq --url amqp://guest:guest@127.0.0.1:5672/%2f --durability durable")]
struct RunArgs {
    /// The kind of server.
    #[arg(long, value_enum, default_value = "nerve")]
    target: TargetKind,
    /// The Kafka-protocol broker's address (nerve, kafka).
    #[arg(long, default_value = "127.0.0.1:9092", value_name = "HOST:PORT")]
    bootstrap: String,
    /// The peer's URL (jetstream, redis, rabbitmq) [default: the service on this machine's usual port].
    #[arg(long)]
    url: Option<String>,
    /// The NATS server runs with `jetstream { sync_interval: always }` (nats-server >= 2.10), which the
    /// client protocol does not show: without this flag, JetStream's durable runs are refused.
    #[arg(long)]
    nats_sync_always: bool,
    /// The server's process id, for its resident memory [default: the process listening on the bootstrap
    /// port, when it is on this machine and readable].
    #[arg(long)]
    server_pid: Option<u32>,
    #[command(flatten)]
    workload: WorkloadArgs,
    /// Write the full report as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// The workload flags, shared by `run` and the suite's defaults.
#[derive(Args, Clone)]
pub(crate) struct WorkloadArgs {
    #[arg(long, default_value_t = 1)]
    producers: usize,
    #[arg(long, default_value_t = 1)]
    consumers: usize,
    /// Bytes per record value (at least 20: the timestamp and sequence header).
    #[arg(long, default_value_t = 1024)]
    record_size: usize,
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Distinct keys, cycled; 0 sends records without a key.
    #[arg(long, default_value_t = 0)]
    keys: u64,
    /// Producer batch size in bytes [default: the client's].
    #[arg(long)]
    batch_size: Option<u64>,
    /// How long the producer waits to fill a batch [default: the client's].
    #[arg(long)]
    linger_ms: Option<u64>,
    /// Acknowledgement: 0, 1 or all (all also turns on idempotence).
    #[arg(long, default_value = "all")]
    acks: Acks,
    /// Compression codec: none, gzip, snappy, lz4, zstd.
    #[arg(long, default_value = "none")]
    compression: String,
    /// Durability of the topic, through the target's own setting.
    #[arg(long, value_enum, default_value = "default")]
    durability: Durability,
    /// Records per second over all producers (open loop), or `max`.
    #[arg(long, default_value = "max")]
    rate: Rate,
    /// Seconds measured, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of sending before the measurement starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Records sent and not yet acknowledged, per producer.
    #[arg(long, default_value_t = 10_000)]
    max_in_flight: usize,
    /// Seconds the consumers may take after the producers finished to receive everything.
    #[arg(long, default_value_t = 30.0)]
    drain_timeout: f64,
    /// Topic name [default: nerve-bench-<pid>-<time>; it must not exist].
    #[arg(long)]
    topic: Option<String>,
    /// Keep the topic and its records after the run [default: delete it].
    #[arg(long)]
    keep_topic: bool,
    /// Extra topic config by the target's own name, KEY=VALUE; repeatable.
    #[arg(long = "topic-config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    topic_config: Vec<(String, String)>,
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected KEY=VALUE, not {s:?}")),
    }
}

fn seconds(s: f64, what: &str) -> Result<Duration> {
    Duration::try_from_secs_f64(s).with_context(|| format!("{what} must be a number of seconds"))
}

/// A topic name no earlier run used.
pub(crate) fn unique_topic(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("nerve-bench-{label}-{}-{nanos}", std::process::id())
}

impl WorkloadArgs {
    fn split(&self) -> Result<(Destination, Workload)> {
        anyhow::ensure!(self.partitions > 0, "--partitions must be at least 1");
        let destination = Destination {
            name: self.topic.clone().unwrap_or_else(|| unique_topic("run")),
            partitions: self.partitions,
            durability: self.durability,
            acks: self.acks,
            batch_bytes: self.batch_size,
            linger_ms: self.linger_ms,
            compression: self.compression.clone(),
            extra_config: self.topic_config.clone(),
        };
        let workload = Workload {
            producers: self.producers,
            consumers: self.consumers,
            record_bytes: self.record_size,
            keys: self.keys,
            rate: self.rate,
            warmup: seconds(self.warmup, "--warmup")?,
            duration: seconds(self.duration, "--duration")?,
            max_in_flight: self.max_in_flight,
            drain_timeout: seconds(self.drain_timeout, "--drain-timeout")?,
            keep_destination: self.keep_topic,
        };
        anyhow::ensure!(
            !workload.duration.is_zero(),
            "--duration must be more than 0"
        );
        Ok((destination, workload))
    }
}

#[derive(Args)]
struct LimitsArgs {
    /// Directory on the disk to measure (not a tmpfs such as /tmp on some systems).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
    /// MiB for the sequential write (four times as much goes over loopback).
    #[arg(long, default_value_t = 256)]
    mb: u64,
    /// Seconds of small synchronous writes.
    #[arg(long, default_value_t = 2.0)]
    sync_seconds: f64,
    /// Write the figures as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> Result<()> {
    workload::epoch();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match cli.command {
        Command::Run(args) => runtime.block_on(run(*args)),
        Command::Limits(args) => {
            let limits = limits::measure(
                &args.dir,
                args.mb,
                seconds(args.sync_seconds, "--sync-seconds")?,
            )?;
            limits.print();
            if let Some(path) = args.json {
                write_json(&path, &limits)?;
            }
            Ok(())
        }
        Command::Compare(args) => runtime.block_on(compare::run(args)),
    }
}

async fn run(args: RunArgs) -> Result<()> {
    let (destination, workload) = args.workload.split()?;
    let url = args
        .url
        .clone()
        .or_else(|| args.target.default_url().map(str::to_string));
    let address = url.as_deref().unwrap_or(&args.bootstrap);
    let server_pid = args
        .server_pid
        .or_else(|| proc_info::pid_listening_on(target::url_port(address)?));
    let target: Box<dyn Target> = match (args.target, url) {
        (TargetKind::Nerve | TargetKind::Kafka, _) => {
            let flavor = if args.target == TargetKind::Nerve {
                Flavor::Nerve
            } else {
                Flavor::Kafka
            };
            Box::new(KafkaTarget::new(
                args.bootstrap.clone(),
                flavor,
                server_pid,
                None,
            ))
        }
        (TargetKind::Jetstream, Some(url)) => {
            Box::new(JetStreamTarget::new(url, server_pid, args.nats_sync_always))
        }
        (TargetKind::Redis, Some(url)) => Box::new(RedisTarget::new(url, server_pid)),
        (TargetKind::Rabbitmq, Some(url)) => Box::new(RabbitMqTarget::new(url, server_pid)),
        (_, None) => unreachable!("every peer has a default URL"),
    };
    let report = workload::run(target.as_ref(), &destination, &workload).await?;
    report.print();
    if let Some(path) = args.json {
        write_json(&path, &report)?;
    }
    Ok(())
}

pub(crate) fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
