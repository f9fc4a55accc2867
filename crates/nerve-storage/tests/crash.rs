//! Crash safety: batches acknowledged under `fsync=always` survive the process being killed with SIGKILL at
//! any moment, and no partial batch ever becomes visible.
//!
//! The test re-executes its own binary as a child process that runs only the child half ([`run_child`]): the
//! child opens the store, appends batches from several concurrent tasks and prints one `ACK` line per
//! acknowledged append. The parent kills it at a random moment, opens the same directory itself, checks every
//! batch in the log and every acknowledgement it has ever received, closes the store, and starts the next
//! round on the same directory, so the log grows across rounds (and rolls segments, `segment.bytes` being
//! small).

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nerve_storage::{LogStore, StorageError, TopicConfig, TopicPartition};
use nerve_wire::batch::{check_integrity, peek_total_len};
use nerve_wire::records::{decode_records, BatchBuilder};
use nerve_wire::Compression;
use rand::Rng;

/// The name of the child half, as `--exact` wants it.
const CHILD_TEST: &str = "acknowledged_batches_survive_sigkill_at_random_moments";
/// Set only in the child's environment: the data directory. Without it the child test does nothing.
const CHILD_DIR_ENV: &str = "NERVE_CRASH_CHILD_DIR";
/// The first sequence number the child gives out on every partition.
const CHILD_START_SEQ_ENV: &str = "NERVE_CRASH_START_SEQ";
/// The base of the records' timestamps, fixed by the parent so that both sides derive the same batches.
const CHILD_T0_ENV: &str = "NERVE_CRASH_T0";
const READY_TAG: &str = "NERVE-CRASH-READY";
const ACK_TAG: &str = "NERVE-CRASH-ACK";

const TOPIC: &str = "crash";
const PARTITIONS: i32 = 2;
const TASKS_PER_PARTITION: usize = 2;
const ROUNDS: usize = 30;
/// A child that is never killed stops appending after this long (it always is killed well before).
const CHILD_DEADLINE: Duration = Duration::from_secs(10);
/// How long the parent waits for a child to open the store.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const SIGKILL: i32 = 9;

fn topic_config() -> Arc<TopicConfig> {
    common::config(&[
        ("fsync", "always"),
        ("segment.bytes", "65536"),
        ("retention.ms", "-1"),
    ])
}

fn tp(partition: i32) -> TopicPartition {
    TopicPartition::new(TOPIC, partition)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64
}

/// SplitMix64: a tiny deterministic generator, so that a batch's content follows from its id alone.
struct SplitMix(u64);

impl SplitMix {
    fn new(partition: i32, seq: u64) -> Self {
        SplitMix(
            (partition as u64).wrapping_mul(0xA24B_AED4_963E_E407)
                ^ seq.wrapping_mul(0x9FB2_1C65_1E98_DF25),
        )
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What batch number `seq` of `partition` holds: everything follows from the id and `t0`.
#[derive(Debug, PartialEq)]
struct Expected {
    compression: Compression,
    /// (timestamp, key, value) per record.
    records: Vec<(i64, Vec<u8>, Vec<u8>)>,
}

fn expected(t0: i64, partition: i32, seq: u64) -> Expected {
    let mut rng = SplitMix::new(partition, seq);
    // Mostly small batches, some medium, a few large ones (up to ~24 KiB).
    let budget = match rng.below(10) {
        0..=5 => 100 + rng.below(1_900),
        6..=8 => 2_000 + rng.below(6_000),
        _ => 8_000 + rng.below(8_000),
    } as usize;
    let count = 1 + rng.below(24) as usize;
    let compression = match rng.below(8) {
        0 => Compression::Gzip,
        1 => Compression::Snappy,
        2 => Compression::Lz4,
        3 => Compression::Zstd,
        _ => Compression::None,
    };
    let per_record = (budget / count).max(1);
    let base_timestamp = t0 + seq as i64;
    let records = (0..count)
        .map(|i| {
            let key = format!("{partition}:{seq}:{i}").into_bytes();
            let len = per_record / 2 + rng.below(per_record as u64) as usize;
            let mut value =
                format!("partition {partition} batch {seq} record {i} of {count}: ").into_bytes();
            // Runs of one byte (compressible) mixed with random words (not).
            while value.len() < len {
                let word = rng.next();
                if word.is_multiple_of(4) {
                    value.extend(std::iter::repeat_n(
                        word as u8 >> 2,
                        16 + (word >> 58) as usize,
                    ));
                } else {
                    value.extend_from_slice(&word.to_le_bytes());
                }
            }
            (base_timestamp + i as i64, key, value)
        })
        .collect();
    Expected {
        compression,
        records,
    }
}

fn build(expected: &Expected) -> Bytes {
    let mut b = BatchBuilder::new(expected.records[0].0);
    b.compression = expected.compression;
    for (timestamp, key, value) in &expected.records {
        b.push(*timestamp, Some(key), Some(value), Vec::new());
    }
    Bytes::from(b.build().expect("batch builds"))
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("the crash child needs {name}"))
}

/// The child half of `acknowledged_batches_survive_sigkill_at_random_moments`, which runs this binary again
/// (that test alone) with `NERVE_CRASH_CHILD_DIR` set and kills it.
///
/// The child opens the store, creates the partitions unless they exist, and appends from
/// `TASKS_PER_PARTITION` tasks per partition until it is killed, printing `NERVE-CRASH-ACK <partition> <seq>
/// <base offset> <last offset>` after each acknowledged append.
async fn run_child(dir: PathBuf) {
    let start_seq: u64 = required_env(CHILD_START_SEQ_ENV)
        .parse()
        .expect("a start sequence");
    let t0: i64 = required_env(CHILD_T0_ENV)
        .parse()
        .expect("a base timestamp");
    let config = topic_config();
    let store = common::open(&dir, &[TOPIC], &config);
    assert!(
        store.failed_partitions().is_empty(),
        "partitions failed recovery: {:?}",
        store.failed_partitions()
    );
    for p in 0..PARTITIONS {
        match store.create_partition(&tp(p), config.clone()).await {
            Ok(()) | Err(StorageError::PartitionAlreadyExists(_)) => {}
            Err(e) => panic!("creating {}: {e}", tp(p)),
        }
    }
    print_line(&format!("{READY_TAG}\n"));

    let deadline = Instant::now() + CHILD_DEADLINE;
    let mut tasks = Vec::new();
    for p in 0..PARTITIONS {
        let next_seq = Arc::new(AtomicU64::new(start_seq));
        for _ in 0..TASKS_PER_PARTITION {
            let store = store.clone();
            let next_seq = next_seq.clone();
            tasks.push(tokio::spawn(async move {
                let tp = tp(p);
                while Instant::now() < deadline {
                    let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                    let batch = build(&expected(t0, p, seq));
                    let info = store
                        .append(&tp, batch)
                        .await
                        .unwrap_or_else(|e| panic!("append of batch {seq} to {tp}: {e}"));
                    let line = format!(
                        "{ACK_TAG} {p} {seq} {} {}\n",
                        info.base_offset, info.last_offset
                    );
                    if !print_line(&line) {
                        return; // The parent is gone.
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("an appending task panicked");
    }
    store.close().await.expect("the store closes");
}

/// Writes one whole line to stdout and flushes it; false when stdout is gone.
fn print_line(line: &str) -> bool {
    let mut out = std::io::stdout().lock();
    out.write_all(line.as_bytes())
        .and_then(|()| out.flush())
        .is_ok()
}

/// Kills the child when a failing assertion unwinds past it.
struct ChildGuard(Option<Child>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An acknowledged append, as the child reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ack {
    partition: i32,
    seq: u64,
    base_offset: i64,
    last_offset: i64,
}

fn parse_ack(line: &str) -> Option<Ack> {
    let rest = &line[line.find(ACK_TAG)? + ACK_TAG.len()..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let [partition, seq, base, last] = fields[..] else {
        panic!("malformed ACK line {line:?}");
    };
    Some(Ack {
        partition: partition.parse().expect("ACK partition"),
        seq: seq.parse().expect("ACK sequence"),
        base_offset: base.parse().expect("ACK base offset"),
        last_offset: last.parse().expect("ACK last offset"),
    })
}

/// One batch found in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    base_offset: i64,
    last_offset: i64,
    crc: u32,
}

/// What one check of the whole log found.
struct LogView {
    /// Every batch by (partition, seq).
    batches: HashMap<(i32, u64), Stored>,
    log_ends: BTreeMap<i32, i64>,
    segments: usize,
    bytes: u64,
}

/// Opens the store on `dir` and checks every batch of every partition: intact (CRC), complete (every record
/// decodes), at contiguous offsets from 0 to the log end, each (partition, seq) once, and holding exactly the
/// records its id says. Closes the store again.
async fn check_log(dir: &Path, t0: i64, known: &HashMap<(i32, u64), Stored>) -> LogView {
    let store = common::open(dir, &[TOPIC], &topic_config());
    assert!(
        store.failed_partitions().is_empty(),
        "partitions failed recovery: {:?}",
        store.failed_partitions()
    );
    let earlier: HashMap<(i32, i64), (u64, Stored)> = known
        .iter()
        .map(|(&(p, seq), &stored)| ((p, stored.base_offset), (seq, stored)))
        .collect();
    let mut view = LogView {
        batches: HashMap::new(),
        log_ends: BTreeMap::new(),
        segments: 0,
        bytes: 0,
    };
    for tp in store.partitions() {
        assert_eq!(&*tp.topic, TOPIC);
        let p = tp.partition;
        let offsets = store.offsets(&tp).expect("offsets");
        assert_eq!(offsets.log_start, 0, "{tp}: log start moved");
        assert_eq!(
            offsets.high_watermark, offsets.log_end,
            "{tp}: after recovery the whole log is durable and should be visible"
        );
        let mut next = 0i64;
        loop {
            let result = store.read(&tp, next, 256 * 1024).await.expect("read");
            if result.data.is_empty() {
                break;
            }
            let data = &result.data[..];
            let mut at = 0;
            while at < data.len() {
                let total = match peek_total_len(&data[at..]) {
                    Some(Ok(total)) => total,
                    other => panic!("{tp}: no whole batch header at offset {next}: {other:?}"),
                };
                assert!(
                    at + total <= data.len(),
                    "{tp}: a partial batch is visible at offset {next} ({} of {total} bytes)",
                    data.len() - at
                );
                let bytes = &data[at..at + total];
                at += total;
                let header = check_integrity(bytes).unwrap_or_else(|e| {
                    panic!("{tp}: the batch at offset {next} is not intact: {e}")
                });
                assert_eq!(header.base_offset, next, "{tp}: offsets are not contiguous");
                assert_eq!(
                    header.record_count,
                    header.last_offset_delta + 1,
                    "{tp}: batch at {next}"
                );
                let stored = Stored {
                    base_offset: header.base_offset,
                    last_offset: header.last_offset(),
                    crc: header.crc,
                };
                let seq = match earlier.get(&(p, stored.base_offset)) {
                    // Verified record by record in an earlier round: the same bytes (the CRC that
                    // `check_integrity` just recomputed is the one it had then) at the same offsets.
                    Some(&(seq, before)) if before == stored => seq,
                    _ => verify_new_batch(&tp, t0, bytes),
                };
                assert!(
                    view.batches.insert((p, seq), stored).is_none(),
                    "{tp}: batch {seq} is in the log twice (the second time at offset {next})"
                );
                next = stored.last_offset + 1;
            }
        }
        assert_eq!(
            next, offsets.log_end,
            "{tp}: the log could not be read up to its end"
        );
        let at_end = store
            .read(&tp, offsets.log_end, 1 << 20)
            .await
            .expect("read at the log end");
        assert!(
            at_end.data.is_empty(),
            "{tp}: a read at the log end returned data"
        );
        view.log_ends.insert(p, offsets.log_end);
        view.bytes += store.size_bytes(&tp).expect("size");
        let partition_dir = dir.join("topics").join(format!("{TOPIC}-{p}"));
        view.segments += std::fs::read_dir(&partition_dir)
            .expect("the partition directory")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".log"))
            })
            .count();
    }
    store.close().await.expect("the store closes");
    view
}

/// Decodes every record of a batch not seen before, finds which (partition, seq) it is from its first key, and
/// checks that it holds exactly the records that id stands for. Returns the seq.
fn verify_new_batch(tp: &TopicPartition, t0: i64, bytes: &[u8]) -> u64 {
    let (header, records) = decode_records(bytes, 64 << 20)
        .unwrap_or_else(|e| panic!("{tp}: the records of a batch do not decode: {e}"));
    let at = header.base_offset;
    let first_key = records
        .first()
        .and_then(|r| r.key.clone())
        .unwrap_or_else(|| panic!("{tp}: the batch at {at} has no first record with a key"));
    let id = std::str::from_utf8(&first_key).expect("a UTF-8 key");
    let mut parts = id
        .split(':')
        .map(|s| s.parse::<u64>().expect("a numeric key"));
    let (partition, seq) = (parts.next().expect("partition"), parts.next().expect("seq"));
    assert_eq!(
        partition, tp.partition as u64,
        "{tp}: the batch at {at} belongs to another partition"
    );
    let want = expected(t0, tp.partition, seq);
    assert_eq!(
        header.compression().expect("codec"),
        want.compression,
        "{tp}: batch {seq} at {at}"
    );
    let got: Vec<(i64, Vec<u8>, Vec<u8>)> = records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            assert_eq!(
                r.offset(&header),
                at + i as i64,
                "{tp}: record offsets of batch {seq}"
            );
            assert!(
                r.headers.is_empty(),
                "{tp}: batch {seq} at {at} has record headers"
            );
            (
                r.timestamp(&header),
                r.key.as_deref().expect("a key").to_vec(),
                r.value.as_deref().expect("a value").to_vec(),
            )
        })
        .collect();
    assert!(
        got == want.records,
        "{tp}: batch {seq} at offset {at} does not hold the records it was built with"
    );
    seq
}

/// Bytes in the partitions' segment files, before recovery looks at them.
fn log_bytes_on_disk(dir: &Path) -> u64 {
    let Ok(partitions) = std::fs::read_dir(dir.join("topics")) else {
        return 0;
    };
    let mut total = 0;
    for partition in partitions {
        let partition = partition.expect("a directory entry").path();
        for file in std::fs::read_dir(&partition).expect("a partition directory") {
            let file = file.expect("a directory entry").path();
            if file.extension().is_some_and(|e| e == "log") {
                total += file.metadata().expect("segment metadata").len();
            }
        }
    }
    total
}

/// Reads the child's stdout to the end: says when the child is ready and collects whole ACK lines. A last
/// line cut off by the kill (no newline) is ignored.
fn read_child_stdout(stdout: impl Read, ready: mpsc::Sender<()>) -> (Vec<Ack>, String) {
    let mut reader = BufReader::new(stdout);
    let mut acks = Vec::new();
    let mut text = String::new();
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let s = String::from_utf8_lossy(&line).into_owned();
        text.push_str(&s);
        if !s.ends_with('\n') {
            break;
        }
        if s.contains(READY_TAG) {
            let _ = ready.send(());
        }
        if let Some(ack) = parse_ack(&s) {
            acks.push(ack);
        }
    }
    (acks, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_survive_sigkill_at_random_moments() {
    if let Some(dir) = std::env::var_os(CHILD_DIR_ENV) {
        run_child(PathBuf::from(dir)).await;
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let exe = std::env::current_exe().expect("the test binary's path");
    let t0 = now_ms();
    let mut rng = rand::rng();

    let mut acked: HashMap<(i32, u64), Ack> = HashMap::new();
    let mut known: HashMap<(i32, u64), Stored> = HashMap::new();
    let mut next_seq = 0u64;
    let (mut killed_running, mut killed_after_acks, mut exited_early) = (0usize, 0usize, 0usize);
    let mut torn_tails = 0usize;
    let mut checking = Duration::ZERO;
    let mut view = None;

    for round in 0..ROUNDS {
        // Most rounds count the delay from when the child has opened the store, so that the kill lands among
        // appends; the others from the spawn, so that it may land in recovery or partition creation too.
        let from_ready = rng.random_bool(0.75);
        let delay = Duration::from_millis(rng.random_range(20..300));
        let mut child = ChildGuard(Some(
            Command::new(&exe)
                .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
                .env(CHILD_DIR_ENV, dir.path())
                .env(CHILD_START_SEQ_ENV, next_seq.to_string())
                .env(CHILD_T0_ENV, t0.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("the child starts"),
        ));
        let process = child.0.as_mut().expect("the child");
        let stdout = process.stdout.take().expect("the child's stdout");
        let mut stderr = process.stderr.take().expect("the child's stderr");
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout_reader = std::thread::spawn(move || read_child_stdout(stdout, ready_tx));
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        if from_ready {
            // An error here means the child exited (or hung) before opening the store; its status and output
            // are reported below.
            let _ = ready_rx.recv_timeout(READY_TIMEOUT);
        }
        tokio::time::sleep(delay).await;
        let mut process = child.0.take().expect("the child");
        let _ = process.kill();
        let status = process.wait().expect("waiting for the child");
        let (acks, out) = stdout_reader.join().expect("the stdout reader");
        let err = stderr_reader.join().expect("the stderr reader");
        assert!(
            !err.contains("panicked"),
            "round {round}: the child panicked before it was killed\n--- stdout:\n{out}\n--- stderr:\n{err}"
        );
        if status.signal() == Some(SIGKILL) {
            killed_running += 1;
        } else {
            assert!(
                status.success(),
                "round {round}: the child failed ({status})\n--- stdout:\n{out}\n--- stderr:\n{err}"
            );
            exited_early += 1;
        }
        if !acks.is_empty() {
            killed_after_acks += 1;
        }
        for ack in &acks {
            let want = expected(t0, ack.partition, ack.seq);
            assert_eq!(
                ack.last_offset - ack.base_offset + 1,
                want.records.len() as i64,
                "round {round}: {ack:?} does not span the batch's records"
            );
            assert!(
                acked.insert((ack.partition, ack.seq), *ack).is_none(),
                "round {round}: batch {} of partition {} acknowledged twice",
                ack.seq,
                ack.partition
            );
        }

        let on_disk = log_bytes_on_disk(dir.path());
        let check_started = Instant::now();
        let now = check_log(dir.path(), t0, &known).await;
        checking += check_started.elapsed();
        if now.bytes < on_disk {
            // Recovery cut off a batch that the kill interrupted.
            torn_tails += 1;
        }
        for (id, ack) in &acked {
            let stored = now.batches.get(id).unwrap_or_else(|| {
                panic!(
                    "round {round}: acknowledged batch {} of partition {} is lost ({ack:?})",
                    id.1, id.0
                )
            });
            assert_eq!(
                (stored.base_offset, stored.last_offset),
                (ack.base_offset, ack.last_offset),
                "round {round}: acknowledged batch {} of partition {} moved",
                id.1,
                id.0
            );
        }
        for (id, before) in &known {
            assert_eq!(
                now.batches.get(id),
                Some(before),
                "round {round}: batch {} of partition {} was visible after the previous crash but not now",
                id.1,
                id.0
            );
        }
        next_seq = now
            .batches
            .keys()
            .map(|(_, seq)| seq + 1)
            .max()
            .unwrap_or(0)
            .max(next_seq);
        known = now.batches.clone();
        view = Some(now);
    }

    let view = view.expect("at least one round");
    println!(
        "{ROUNDS} rounds in {:.1?}: {} batches acknowledged ({} in the log), killed while running in {killed_running} \
         rounds ({killed_after_acks} after acknowledgements), {exited_early} exited on their own; log ends {:?}, \
         {} segments, {} bytes; recovery cut a torn tail in {torn_tails} rounds; checking took {checking:.1?}",
        started.elapsed(),
        acked.len(),
        view.batches.len(),
        view.log_ends,
        view.segments,
        view.bytes,
    );
    assert!(
        !acked.is_empty(),
        "no append was ever acknowledged: the test checked nothing"
    );
    assert!(
        killed_running * 2 > ROUNDS,
        "the child was killed while running in only {killed_running} of {ROUNDS} rounds"
    );
    assert!(
        view.segments > (PARTITIONS as usize),
        "no segment was ever rolled: the test did not cover rolls"
    );
}
