//! Append throughput of the local engine, measured against the disk's own sequential-write limit.
//!
//! Run with `cargo bench -p nerve-storage --bench append`. Four cases: 1 and 16 partitions, each under
//! `fsync=always` and `fsync=never`. Every case appends the same uncompressed v2 batch (100 records of 1 KiB,
//! built once; the store assigns offsets) from a pipeline like a Kafka producer's: each partition has
//! `NERVE_BENCH_WINDOW` appends in flight (one tokio task per slot, each sending its next append as soon as
//! the previous one is acknowledged).
//!
//! The limit is the same number of bytes written with plain sequential 1 MiB `write` calls to one new file
//! and made durable with one `fdatasync`, in the same directory. The machine is shared and noisy, so limits
//! and cases alternate (limit, case, limit, case, ..., limit) for `NERVE_BENCH_ROUNDS` rounds, each round is
//! compared with the mean of the limit runs just before and after it, and the median round is reported. A
//! "16 files" limit (the same bytes round-robin over 16 files, then `fdatasync` of each) is measured beside
//! every limit run, for information: it is what the 16-partition cases compete with.
//!
//! A case counts until its bytes are durable: the appends' acknowledgements, then `LogStore::close` (which
//! syncs what `fsync=never` left in the page cache, as the limit ends with its `fdatasync`), then an
//! `fdatasync` by the benchmark of every segment file, which costs nothing when close did its job and keeps
//! the comparison honest when it did not. The acknowledgement-only rate is printed too.
//!
//! Environment:
//! - `NERVE_BENCH_MB`: MiB per case (default 512 for `never`, 256 for `always`).
//! - `NERVE_BENCH_DIR`: where the data goes (default: `CARGO_TARGET_TMPDIR`, under the target directory; not
//!   /tmp, which may be tmpfs).
//! - `NERVE_BENCH_JSON`: where the figures are written (default `target/nerve-bench/storage-append.json`).
//! - `NERVE_BENCH_WINDOW`: appends in flight per partition (default 16).
//! - `NERVE_BENCH_FLUSH_THREADS`: `LocalConfig::flush_threads` (default: `LocalConfig::default()`'s).
//! - `NERVE_BENCH_ROUNDS`: rounds per case (default 3).
//! - `NERVE_BENCH_CASES`: comma-separated cases to run (e.g. `always-16,never-16`); default all four.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use nerve_storage::{LocalConfig, LocalLogStore, LogStore, TopicConfig, TopicPartition};
use nerve_wire::records::BatchBuilder;
use serde_json::{json, Value};

const RECORD_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 100;
const LIMIT_BUFFER: usize = 1 << 20;
const MIB: f64 = 1024.0 * 1024.0;
const TOPIC: &str = "bench";
/// The targets, as shares of the sequential-write limit.
const TARGET_ALWAYS_16: f64 = 0.60;
const TARGET_NEVER: f64 = 0.90;

#[derive(Clone, Copy)]
struct Case {
    partitions: usize,
    fsync: &'static str,
}

impl Case {
    fn name(&self) -> String {
        format!("{}-{}", self.fsync, self.partitions)
    }

    fn target(&self) -> Option<f64> {
        match (self.fsync, self.partitions) {
            ("never", _) => Some(TARGET_NEVER),
            ("always", 16) => Some(TARGET_ALWAYS_16),
            _ => None,
        }
    }
}

struct Settings {
    root: PathBuf,
    json_path: PathBuf,
    mib_override: Option<u64>,
    window: usize,
    flush_threads: usize,
    rounds: usize,
    only: Option<Vec<String>>,
}

fn env_parse<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(v) => Some(v),
        Err(_) => panic!("{name}={value:?} is not a valid value"),
    }
}

impl Settings {
    fn from_env() -> Settings {
        // Cargo sets CARGO_TARGET_TMPDIR (`<target>/tmp`) when it builds integration tests and benches.
        let target_tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let target_dir = target_tmp.parent().unwrap_or(target_tmp);
        Settings {
            root: std::env::var_os("NERVE_BENCH_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| target_tmp.to_path_buf()),
            json_path: std::env::var_os("NERVE_BENCH_JSON")
                .map(PathBuf::from)
                .unwrap_or_else(|| target_dir.join("nerve-bench").join("storage-append.json")),
            mib_override: env_parse("NERVE_BENCH_MB"),
            window: env_parse("NERVE_BENCH_WINDOW").unwrap_or(16).max(1),
            flush_threads: env_parse("NERVE_BENCH_FLUSH_THREADS")
                .unwrap_or(LocalConfig::default().flush_threads),
            rounds: env_parse("NERVE_BENCH_ROUNDS").unwrap_or(3).max(1),
            only: std::env::var("NERVE_BENCH_CASES")
                .ok()
                .map(|s| s.split(',').map(|c| c.trim().to_string()).collect()),
        }
    }

    /// Bytes a case appends: whole batches, the same number on every partition.
    fn bytes_for(&self, case: &Case, batch_len: usize) -> u64 {
        let mib = self
            .mib_override
            .unwrap_or(if case.fsync == "always" { 256 } else { 512 });
        let batches = (mib << 20).div_ceil(batch_len as u64);
        batches.div_ceil(case.partitions as u64) * case.partitions as u64 * batch_len as u64
    }
}

/// Bytes that neither compress nor look like zeros to a clever virtual disk.
fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn build_batch() -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let mut builder = BatchBuilder::new(now);
    for i in 0..RECORDS_PER_BATCH {
        let value = pseudo_random(RECORD_BYTES, 0x9e37_79b9_7f4a_7c15 ^ i as u64);
        builder.push(now, None, Some(&value), Vec::new());
    }
    Bytes::from(builder.build().expect("the benchmark batch builds"))
}

/// User + system CPU time of this process, from /proc (in USER_HZ ticks of 10 ms).
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

fn cpu_share(before: Option<Duration>, after: Option<Duration>, wall: Duration) -> Option<f64> {
    Some(after?.checked_sub(before?)?.as_secs_f64() / wall.as_secs_f64())
}

/// Dirty page-cache bytes of the whole machine, from /proc/meminfo.
fn dirty_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("Dirty:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The block device's statistics file for the file system holding `dir`.
fn block_stat_path(dir: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(dir).ok()?.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let path = PathBuf::from(format!("/sys/dev/block/{major}:{minor}/stat"));
    path.exists().then_some(path)
}

/// Cache-flush requests the device has completed (field 16 of its stat file, Linux 5.5 and later). Each
/// `fdatasync` that commits anything ends in one; syncs that share a journal commit share it.
fn device_flushes(stat: Option<&Path>) -> Option<u64> {
    std::fs::read_to_string(stat?)
        .ok()?
        .split_whitespace()
        .nth(15)?
        .parse()
        .ok()
}

/// Flushes whatever others left dirty, so that a measurement does not pay for it. Not timed.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

/// Writes `bytes` to a scratch file and deletes it unsynced, which costs no disk I/O. This VM hands freed
/// memory back to its host and the first touch of such memory is several times slower, so every timed run
/// is preceded by this: it leaves as much recently freed, host-backed memory as the run needs for its page
/// cache. Not timed; it removes most, not all, of that noise.
fn prefault(root: &Path, bytes: u64, buffer: &[u8]) {
    let path = root.join(format!("nerve-bench-prefault-{}", std::process::id()));
    let mut file = File::create(&path).expect("creating the prefault file");
    let mut written = 0u64;
    while written < bytes {
        let len = (bytes - written).min(buffer.len() as u64) as usize;
        file.write_all(&buffer[..len])
            .expect("writing the prefault file");
        written += len as u64;
    }
    drop(file);
    std::fs::remove_file(&path).expect("removing the prefault file");
}

/// A fresh directory per measurement; it is deleted (with its page cache) when dropped.
fn fresh_dir(root: &Path) -> tempfile::TempDir {
    std::fs::create_dir_all(root).expect("creating the benchmark root directory");
    tempfile::Builder::new()
        .prefix("nerve-bench-")
        .tempdir_in(root)
        .expect("creating a benchmark directory")
}

#[derive(Clone, Copy)]
struct LimitRun {
    seconds: f64,
    /// The `write` calls alone, before the `fdatasync`s.
    write_seconds: f64,
    cpu: Option<f64>,
}

/// Writes `bytes` with sequential 1 MiB `write` calls round-robin over `files` new files, then `fdatasync`s
/// each one.
fn measure_limit(root: &Path, bytes: u64, files: usize, buffer: &[u8]) -> LimitRun {
    let dir = fresh_dir(root);
    let mut handles: Vec<File> = (0..files)
        .map(|i| {
            File::create(dir.path().join(format!("limit-{i}.bin"))).expect("creating a limit file")
        })
        .collect();
    prefault(root, bytes, buffer);
    settle();
    let cpu_before = cpu_time();
    let start = Instant::now();
    let mut written = 0u64;
    let mut chunk = 0usize;
    while written < bytes {
        let len = (bytes - written).min(buffer.len() as u64) as usize;
        handles[chunk % files]
            .write_all(&buffer[..len])
            .expect("writing a limit file");
        written += len as u64;
        chunk += 1;
    }
    let write_seconds = start.elapsed().as_secs_f64();
    for file in &handles {
        file.sync_data().expect("fdatasync of a limit file");
    }
    let wall = start.elapsed();
    let cpu = cpu_share(cpu_before, cpu_time(), wall);
    drop(handles);
    drop(dir);
    LimitRun {
        seconds: wall.as_secs_f64(),
        write_seconds,
        cpu,
    }
}

/// One 1-file and one 16-file limit run.
#[derive(Clone, Copy)]
struct Limits {
    one: LimitRun,
    sixteen: LimitRun,
}

fn measure_limits(root: &Path, bytes: u64, buffer: &[u8]) -> Limits {
    Limits {
        one: measure_limit(root, bytes, 1, buffer),
        sixteen: measure_limit(root, bytes, 16, buffer),
    }
}

struct CaseRun {
    bytes: u64,
    appends: u64,
    /// Until every append was acknowledged.
    acked: Duration,
    /// Until `close` returned.
    closed: Duration,
    /// Until the benchmark's own `fdatasync` of every segment file returned.
    durable: Duration,
    /// Dirty page-cache bytes on the machine right after `close`: what close left unsynced, plus others' noise.
    dirty_after_close: Option<u64>,
    /// Cache flushes the data device completed while the case ran (machine-wide): about one per group commit.
    flushes: Option<u64>,
    p50: Duration,
    p99: Duration,
    max: Duration,
    cpu: Option<f64>,
}

/// `fdatasync` of every segment file under `dir`.
fn sync_segments(dir: &Path) {
    for entry in std::fs::read_dir(dir).expect("listing a benchmark directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            sync_segments(&path);
        } else if path.extension().is_some_and(|e| e == "log") {
            File::open(&path)
                .and_then(|f| f.sync_data())
                .unwrap_or_else(|e| panic!("fdatasync of {}: {e}", path.display()));
        }
    }
}

async fn run_case(settings: &Settings, case: &Case, batch: &Bytes, buffer: &[u8]) -> CaseRun {
    let dir = fresh_dir(&settings.root);
    let mut overrides = BTreeMap::new();
    overrides.insert("fsync".to_string(), case.fsync.to_string());
    let topic_config =
        Arc::new(TopicConfig::from_overrides(&overrides).expect("a valid topic config"));
    let topics = HashMap::from([(TOPIC.to_string(), topic_config.clone())]);
    let local = LocalConfig {
        flush_threads: settings.flush_threads,
        ..LocalConfig::default()
    };
    let store = LocalLogStore::open(dir.path(), local, &topics).expect("the store opens");
    let tps: Vec<TopicPartition> = (0..case.partitions)
        .map(|p| TopicPartition::new(TOPIC, p as i32))
        .collect();
    for tp in &tps {
        store
            .create_partition(tp, topic_config.clone())
            .await
            .expect("the partition is created");
    }
    let bytes = settings.bytes_for(case, batch.len());
    let appends = bytes / batch.len() as u64;
    let per_partition = appends / case.partitions as u64;

    let always = case.fsync == "always";
    let stat = block_stat_path(dir.path());

    prefault(&settings.root, bytes, buffer);
    settle();
    let cpu_before = cpu_time();
    let flushes_before = device_flushes(stat.as_deref());
    let start = Instant::now();
    let mut producers = tokio::task::JoinSet::new();
    for tp in &tps {
        let remaining = Arc::new(AtomicI64::new(per_partition as i64));
        for _ in 0..settings.window {
            let (store, tp, batch, remaining) =
                (store.clone(), tp.clone(), batch.clone(), remaining.clone());
            producers.spawn(async move {
                let mut latencies = Vec::new();
                while remaining.fetch_sub(1, Ordering::Relaxed) > 0 {
                    let sent = Instant::now();
                    store
                        .append(&tp, batch.clone())
                        .await
                        .unwrap_or_else(|e| panic!("append to {tp} failed: {e}"));
                    latencies.push(sent.elapsed());
                }
                latencies
            });
        }
    }
    let mut latencies = Vec::with_capacity(appends as usize);
    while let Some(done) = producers.join_next().await {
        latencies.extend(done.expect("a producer task panicked"));
    }
    let acked = start.elapsed();

    let expected_end = (per_partition * RECORDS_PER_BATCH as u64) as i64;
    for tp in &tps {
        let offsets = store.offsets(tp).expect("offsets of a partition");
        assert_eq!(offsets.log_end, expected_end, "log end of {tp}");
        if always {
            assert_eq!(
                offsets.high_watermark, expected_end,
                "high watermark of {tp}"
            );
        }
    }
    store.close().await.expect("the store closes");
    let closed = start.elapsed();
    let dirty_after_close = dirty_bytes();
    let topics_dir = dir.path().to_path_buf();
    tokio::task::spawn_blocking(move || sync_segments(&topics_dir))
        .await
        .expect("syncing the segments");
    let durable = start.elapsed();
    let cpu = cpu_share(cpu_before, cpu_time(), durable);
    let flushes = device_flushes(stat.as_deref())
        .zip(flushes_before)
        .map(|(after, before)| after.saturating_sub(before));
    drop(store);
    drop(dir);

    latencies.sort_unstable();
    let quantile = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    CaseRun {
        bytes,
        appends,
        acked,
        closed,
        durable,
        dirty_after_close,
        flushes,
        p50: quantile(0.50),
        p99: quantile(0.99),
        max: quantile(1.0),
        cpu,
    }
}

fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds
}

/// One case run with the limit runs just before and after it.
struct Round {
    run: CaseRun,
    before: Limits,
    after: Limits,
}

impl Round {
    fn mb_per_s(&self) -> f64 {
        mb_per_s(self.run.bytes, self.run.durable.as_secs_f64())
    }

    fn acked_mb_per_s(&self) -> f64 {
        mb_per_s(self.run.bytes, self.run.acked.as_secs_f64())
    }

    fn limit(&self) -> f64 {
        (mb_per_s(self.run.bytes, self.before.one.seconds)
            + mb_per_s(self.run.bytes, self.after.one.seconds))
            / 2.0
    }

    fn limit16(&self) -> f64 {
        (mb_per_s(self.run.bytes, self.before.sixteen.seconds)
            + mb_per_s(self.run.bytes, self.after.sixteen.seconds))
            / 2.0
    }

    fn ratio(&self) -> f64 {
        self.mb_per_s() / self.limit()
    }
}

struct Row {
    case: Case,
    rounds: Vec<Round>,
}

impl Row {
    /// The round with the median ratio (the lower of the two middle ones for an even count).
    fn median(&self) -> &Round {
        let mut order: Vec<&Round> = self.rounds.iter().collect();
        order.sort_by(|a, b| a.ratio().total_cmp(&b.ratio()));
        order[(order.len() - 1) / 2]
    }

    fn verdict(&self) -> Option<&'static str> {
        let ratio = self.median().ratio();
        self.case
            .target()
            .map(|t| if ratio >= t { "MEETS" } else { "BELOW" })
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{:.0}%", v * 100.0))
}

fn print_round_line(case: &Case, index: usize, round: &Round) {
    let bytes = round.run.bytes;
    let limit = |l: &LimitRun| format!("{:.0}", mb_per_s(bytes, l.seconds));
    println!(
        "  {:<10} round {}: {:>5.0} MB/s = {:.0}% of {:.0} (1 file {} / {}; 16 files {} / {}); \
         ack {:.3} s + close {:.3} s + post-close sync {:.3} s; dirty after close {:.0} MiB",
        case.name(),
        index + 1,
        round.mb_per_s(),
        round.ratio() * 100.0,
        round.limit(),
        limit(&round.before.one),
        limit(&round.after.one),
        limit(&round.before.sixteen),
        limit(&round.after.sixteen),
        round.run.acked.as_secs_f64(),
        (round.run.closed - round.run.acked).as_secs_f64(),
        (round.run.durable - round.run.closed).as_secs_f64(),
        round.run.dirty_after_close.unwrap_or(0) as f64 / MIB,
    );
}

fn print_table(rows: &[Row], settings: &Settings) {
    println!();
    println!(
        "nerve-storage append: {RECORD_BYTES} B records, {RECORDS_PER_BATCH} per batch, {} appends in flight per \
         partition, flush_threads={}, median of {} rounds",
        settings.window, settings.flush_threads, settings.rounds
    );
    println!(
        "MB/s = 10^6 B/s until durable (acks + close + post-close fdatasync); limit = sequential 1 MiB writes + one \
         fdatasync, mean of the runs before / after"
    );
    println!();
    println!(
        "{:<10} {:>5} {:>6} {:>6} {:>6} {:>6} {:>15} {:>6} {:>9} {:>12} {:>6} {:>8} {:>6} {:>10} {:>5}",
        "case",
        "MiB",
        "ack s",
        "sync s",
        "tot s",
        "MB/s",
        "limit MB/s",
        "ratio",
        "rounds",
        "target",
        "vs16f",
        "ack MB/s",
        "flush",
        "p50/p99 ms",
        "cpu"
    );
    for row in rows {
        let m = row.median();
        let target = match (row.case.target(), row.verdict()) {
            (Some(t), Some(v)) => format!(">={:.0}% {v}", t * 100.0),
            _ => "-".to_string(),
        };
        let (lo, hi) = row.rounds.iter().fold((f64::MAX, f64::MIN), |(lo, hi), r| {
            (lo.min(r.ratio()), hi.max(r.ratio()))
        });
        println!(
            "{:<10} {:>5.0} {:>6.3} {:>6.3} {:>6.3} {:>6.0} {:>15} {:>6} {:>9} {:>12} {:>6} {:>8.0} {:>6} {:>10} {:>5}",
            row.case.name(),
            m.run.bytes as f64 / MIB,
            m.run.acked.as_secs_f64(),
            (m.run.durable - m.run.acked).as_secs_f64(),
            m.run.durable.as_secs_f64(),
            m.mb_per_s(),
            format!(
                "{:.0} ({:.0}/{:.0})",
                m.limit(),
                mb_per_s(m.run.bytes, m.before.one.seconds),
                mb_per_s(m.run.bytes, m.after.one.seconds)
            ),
            pct(Some(m.ratio())),
            format!("{:.0}-{:.0}%", lo * 100.0, hi * 100.0),
            target,
            pct(Some(m.mb_per_s() / m.limit16())),
            m.acked_mb_per_s(),
            m.run.flushes.map_or_else(|| "-".to_string(), |c| c.to_string()),
            format!("{:.1}/{:.1}", ms(m.run.p50), ms(m.run.p99)),
            pct(m.run.cpu),
        );
    }
    println!();
    println!(
        "columns: sync s = close + post-close fdatasync; ratio = the median round's MB/s / its limit; rounds = range \
         of the rounds' ratios; vs16f = ratio to the 16-file limit; ack MB/s = bytes / time to the last ack; \
         flush = cache flushes the data disk completed during the case (machine-wide; about one per group-commit fdatasync); p50/p99 = append \
         latency; cpu = process CPU / wall (2 cores = 200%)"
    );
    println!();
    println!("every round:");
    for row in rows {
        for (i, round) in row.rounds.iter().enumerate() {
            print_round_line(&row.case, i, round);
        }
    }
    println!();
    println!("limit runs in order (write calls + fdatasync = total, process CPU):");
    for row in rows {
        let bytes = row.rounds[0].run.bytes;
        let limits =
            std::iter::once(&row.rounds[0].before).chain(row.rounds.iter().map(|r| &r.after));
        for (i, l) in limits.enumerate() {
            let show = |r: &LimitRun| {
                format!(
                    "{:>5.0} MB/s: {:.3}+{:.3}={:.3} s cpu {:>4}",
                    mb_per_s(bytes, r.seconds),
                    r.write_seconds,
                    r.seconds - r.write_seconds,
                    r.seconds,
                    pct(r.cpu)
                )
            };
            println!(
                "  {:<10} limit {}: 1 file {}  |  16 files {}",
                row.case.name(),
                i + 1,
                show(&l.one),
                show(&l.sixteen)
            );
        }
    }
}

fn limit_json(l: &LimitRun, bytes: u64) -> Value {
    json!({
        "seconds": l.seconds,
        "write_seconds": l.write_seconds,
        "mb_per_s": mb_per_s(bytes, l.seconds),
        "cpu": l.cpu,
    })
}

fn limits_json(l: &Limits, bytes: u64) -> Value {
    json!({ "one_file": limit_json(&l.one, bytes), "sixteen_files": limit_json(&l.sixteen, bytes) })
}

fn round_json(r: &Round) -> Value {
    let bytes = r.run.bytes;
    json!({
        "mb_per_s": r.mb_per_s(),
        "acked_mb_per_s": r.acked_mb_per_s(),
        "limit_mb_per_s": r.limit(),
        "limit_16_files_mb_per_s": r.limit16(),
        "ratio": r.ratio(),
        "ratio_to_16_files": r.mb_per_s() / r.limit16(),
        "acked_seconds": r.run.acked.as_secs_f64(),
        "closed_seconds": r.run.closed.as_secs_f64(),
        "durable_seconds": r.run.durable.as_secs_f64(),
        "dirty_bytes_after_close": r.run.dirty_after_close,
        "device_flushes": r.run.flushes,
        "latency_ms": { "p50": ms(r.run.p50), "p99": ms(r.run.p99), "max": ms(r.run.max) },
        "cpu": r.run.cpu,
        "limit_before": limits_json(&r.before, bytes),
        "limit_after": limits_json(&r.after, bytes),
    })
}

fn write_json(rows: &[Row], settings: &Settings, batch_len: usize) {
    let cases: Vec<Value> = rows
        .iter()
        .map(|row| {
            let m = row.median();
            json!({
                "case": row.case.name(),
                "partitions": row.case.partitions,
                "fsync": row.case.fsync,
                "bytes": m.run.bytes,
                "appends": m.run.appends,
                "target": row.case.target(),
                "verdict": row.verdict(),
                "median": round_json(m),
                "rounds": row.rounds.iter().map(round_json).collect::<Vec<_>>(),
            })
        })
        .collect();
    let doc = json!({
        "benchmark": "nerve-storage/append",
        "record_bytes": RECORD_BYTES,
        "records_per_batch": RECORDS_PER_BATCH,
        "batch_bytes": batch_len,
        "in_flight_per_partition": settings.window,
        "flush_threads": settings.flush_threads,
        "rounds": settings.rounds,
        "data_dir": settings.root,
        "cases": cases,
    });
    if let Some(parent) = settings.json_path.parent() {
        std::fs::create_dir_all(parent).expect("creating the JSON output directory");
    }
    let text = serde_json::to_string_pretty(&doc).expect("the figures serialize");
    std::fs::write(&settings.json_path, text).expect("writing the JSON figures");
    println!();
    println!("figures written to {}", settings.json_path.display());
}

fn main() {
    // `cargo bench` passes `--bench`; this harness has no options of its own.
    let settings = Settings::from_env();
    let cases: Vec<Case> = [
        Case {
            partitions: 1,
            fsync: "always",
        },
        Case {
            partitions: 16,
            fsync: "always",
        },
        Case {
            partitions: 1,
            fsync: "never",
        },
        Case {
            partitions: 16,
            fsync: "never",
        },
    ]
    .into_iter()
    .filter(|c| {
        settings
            .only
            .as_ref()
            .is_none_or(|only| only.contains(&c.name()))
    })
    .collect();
    let batch = build_batch();
    let buffer = pseudo_random(LIMIT_BUFFER, 0x2545_f491_4f6c_dd1d);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    println!(
        "data under {}; {} CPUs (= tokio worker threads); batch of {} B; {} appends in flight per partition",
        settings.root.display(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        batch.len(),
        settings.window
    );

    let mut rows = Vec::new();
    for case in cases {
        let bytes = settings.bytes_for(&case, batch.len());
        let mut before = measure_limits(&settings.root, bytes, &buffer);
        let mut rounds = Vec::new();
        for i in 0..settings.rounds {
            let run = runtime.block_on(run_case(&settings, &case, &batch, &buffer));
            assert_eq!(run.bytes, bytes);
            let after = measure_limits(&settings.root, bytes, &buffer);
            let round = Round { run, before, after };
            println!(
                "{:<10} round {}: {:.0} MB/s, limit {:.0} MB/s, {:.0}%",
                case.name(),
                i + 1,
                round.mb_per_s(),
                round.limit(),
                round.ratio() * 100.0
            );
            rounds.push(round);
            before = after;
        }
        rows.push(Row { case, rounds });
    }
    print_table(&rows, &settings);
    write_json(&rows, &settings, batch.len());
}
