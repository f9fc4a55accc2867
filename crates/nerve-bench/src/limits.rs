//! The machine's own limits, measured in the same run as the targets so that their figures can be read as
//! shares of what the disk and the loopback network can do at that moment (the machine is shared and its
//! speed drifts). The method follows `crates/nerve-storage/benches/append.rs`: sequential 1 MiB writes to a
//! new file and one `fdatasync`, after a prefault and a `sync` that keep others' dirty pages and the VM's
//! first-touch cost out of the timing.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::workload::pseudo_random;

const CHUNK: usize = 1 << 20;
const SMALL_WRITE: usize = 4096;

#[derive(Clone, Debug, Serialize)]
pub(crate) struct Limits {
    /// Sequential writes + one `fdatasync`, 10^6 bytes per second.
    pub(crate) disk_write_mb_per_s: f64,
    pub(crate) disk_write_bytes: u64,
    /// 4 KiB appended, then `fdatasync`, one after another.
    pub(crate) sync_writes: SyncWrites,
    /// One TCP connection over 127.0.0.1, a sender and a receiver thread, 10^6 bytes per second.
    pub(crate) loopback_mb_per_s: f64,
    pub(crate) loopback_bytes: u64,
    /// Where the disk figures were taken.
    pub(crate) dir: String,
}

#[derive(Clone, Debug, Serialize)]
pub(crate) struct SyncWrites {
    pub(crate) ops: u64,
    pub(crate) ops_per_s: f64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

/// Measures all three limits: `mib` MiB for the sequential write, four times that over loopback, and small
/// synchronous writes for up to `sync_time`.
pub(crate) fn measure(dir: &Path, mib: u64, sync_time: Duration) -> Result<Limits> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("nerve-bench-limits-")
        .tempdir_in(dir)
        .with_context(|| format!("creating a scratch directory in {}", dir.display()))?;
    let buffer = pseudo_random(CHUNK, 0x2545_f491_4f6c_dd1d);
    let bytes = mib << 20;
    let write_s = sequential_write(scratch.path(), bytes, &buffer)?;
    let sync_writes = small_sync_writes(scratch.path(), sync_time)?;
    let loopback_bytes = bytes * 4;
    let loopback_s = loopback(loopback_bytes, &buffer)?;
    Ok(Limits {
        disk_write_mb_per_s: bytes as f64 / 1e6 / write_s,
        disk_write_bytes: bytes,
        sync_writes,
        loopback_mb_per_s: loopback_bytes as f64 / 1e6 / loopback_s,
        loopback_bytes,
        dir: dir.display().to_string(),
    })
}

/// Seconds to write `bytes` sequentially to a new file and make them durable with one `fdatasync`.
fn sequential_write(dir: &Path, bytes: u64, buffer: &[u8]) -> Result<f64> {
    prefault(dir, bytes, buffer)?;
    settle();
    let path = dir.join("sequential.bin");
    let mut file = File::create(&path).context("creating the sequential-write file")?;
    let start = Instant::now();
    write_n(&mut file, bytes, buffer)?;
    file.sync_data().context("fdatasync")?;
    let seconds = start.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(seconds)
}

fn write_n(file: &mut File, bytes: u64, buffer: &[u8]) -> Result<()> {
    let mut written = 0u64;
    while written < bytes {
        let len = (bytes - written).min(buffer.len() as u64) as usize;
        file.write_all(&buffer[..len]).context("writing")?;
        written += len as u64;
    }
    Ok(())
}

/// This VM hands freed memory back to its host, and the first touch of such memory is several times
/// slower; writing the same amount unsynced and deleting it leaves recently freed, host-backed memory for
/// the page cache of the timed write. Not timed.
fn prefault(dir: &Path, bytes: u64, buffer: &[u8]) -> Result<()> {
    let path = dir.join("prefault.bin");
    let mut file = File::create(&path).context("creating the prefault file")?;
    write_n(&mut file, bytes, buffer)?;
    drop(file);
    std::fs::remove_file(&path)?;
    Ok(())
}

/// Flushes whatever others left dirty, so that the measurement does not pay for it. Not timed.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

/// 4 KiB appends each followed by `fdatasync`, for up to `time` (and at least 20 of them): a log's
/// `fsync=always` floor when nothing is batched.
fn small_sync_writes(dir: &Path, time: Duration) -> Result<SyncWrites> {
    settle();
    let mut file = File::create(dir.join("sync.bin")).context("creating the sync-write file")?;
    let block = pseudo_random(SMALL_WRITE, 7);
    let mut latency = crate::workload::histogram();
    let start = Instant::now();
    let mut ops = 0u64;
    while ops < 20 || start.elapsed() < time {
        let t = Instant::now();
        file.write_all(&block).context("writing")?;
        file.sync_data().context("fdatasync")?;
        latency.saturating_record(t.elapsed().as_nanos() as u64);
        ops += 1;
    }
    let seconds = start.elapsed().as_secs_f64();
    let ms = |ns: u64| ns as f64 / 1e6;
    Ok(SyncWrites {
        ops,
        ops_per_s: ops as f64 / seconds,
        p50_ms: ms(latency.value_at_quantile(0.5)),
        p99_ms: ms(latency.value_at_quantile(0.99)),
        max_ms: ms(latency.max()),
    })
}

/// The disk's own latency floor for durable appends at a given byte rate, open loop: every millisecond the
/// bytes that fell due since the last write are appended and `fdatasync`'d, and each millisecond's bytes
/// count from the moment they fell due to the end of the sync that covered them (a sync that runs long makes
/// the next write bigger and later, as with a log's group commit). No broker can acknowledge a durable record
/// sooner on this disk at this rate.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct PacedSync {
    pub(crate) mb_per_s: f64,
    pub(crate) syncs: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

pub(crate) fn paced_sync_writes(dir: &Path, mb_per_s: f64, time: Duration) -> Result<PacedSync> {
    const TICK_NS: u64 = 1_000_000;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let scratch = tempfile::Builder::new()
        .prefix("nerve-bench-paced-")
        .tempdir_in(dir)
        .with_context(|| format!("creating a scratch directory in {}", dir.display()))?;
    settle();
    let mut file = File::create(scratch.path().join("paced.bin")).context("creating the file")?;
    let bytes_per_ns = mb_per_s.max(0.001) * 1e6 / 1e9;
    let buffer = pseudo_random(CHUNK, 11);
    let mut latency = crate::workload::histogram();
    let start = Instant::now();
    let end = time.as_nanos() as u64;
    // The first tick whose bytes are not written yet.
    let mut next_tick = 0u64;
    let mut syncs = 0u64;
    while next_tick * TICK_NS < end {
        let now = start.elapsed().as_nanos() as u64;
        let due_ticks = (now / TICK_NS).min(end / TICK_NS);
        if due_ticks <= next_tick {
            std::thread::sleep(Duration::from_nanos((next_tick + 1) * TICK_NS - now));
            continue;
        }
        let from = (next_tick as f64 * TICK_NS as f64 * bytes_per_ns) as u64;
        let to = (due_ticks as f64 * TICK_NS as f64 * bytes_per_ns) as u64;
        let mut left = (to - from) as usize;
        while left > 0 {
            let n = left.min(buffer.len());
            file.write_all(&buffer[..n]).context("writing")?;
            left -= n;
        }
        file.sync_data().context("fdatasync")?;
        syncs += 1;
        let done = start.elapsed().as_nanos() as u64;
        for tick in next_tick..due_ticks {
            // A tick's bytes are due at its end.
            latency.saturating_record(done.saturating_sub((tick + 1) * TICK_NS));
        }
        next_tick = due_ticks;
    }
    let ms = |ns: u64| ns as f64 / 1e6;
    Ok(PacedSync {
        mb_per_s,
        syncs,
        p50_ms: ms(latency.value_at_quantile(0.5)),
        p99_ms: ms(latency.value_at_quantile(0.99)),
        max_ms: ms(latency.max()),
    })
}

/// Seconds to move `bytes` over one loopback TCP connection, until the receiver has read them all.
fn loopback(bytes: u64, buffer: &[u8]) -> Result<f64> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
    let addr = listener.local_addr()?;
    let receiver = std::thread::spawn(move || -> std::io::Result<u64> {
        let (mut stream, _) = listener.accept()?;
        let mut buf = vec![0u8; CHUNK];
        let mut total = 0u64;
        loop {
            match stream.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n as u64,
            }
        }
    });
    let mut stream = TcpStream::connect(addr).context("connecting over loopback")?;
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < bytes {
        let len = (bytes - sent).min(buffer.len() as u64) as usize;
        stream.write_all(&buffer[..len])?;
        sent += len as u64;
    }
    stream.shutdown(std::net::Shutdown::Write)?;
    let received = receiver
        .join()
        .map_err(|_| anyhow::anyhow!("the loopback receiver panicked"))??;
    let seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        received == bytes,
        "loopback receiver got {received} of {bytes} bytes"
    );
    Ok(seconds)
}

impl Limits {
    pub(crate) fn print(&self) {
        println!("machine limits (in {}):", self.dir);
        println!(
            "  sequential write + one fdatasync: {:.0} MB/s ({} MiB)",
            self.disk_write_mb_per_s,
            self.disk_write_bytes >> 20
        );
        let s = &self.sync_writes;
        println!(
            "  4 KiB write + fdatasync: {:.0} ops/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} ops)",
            s.ops_per_s, s.p50_ms, s.p99_ms, s.max_ms, s.ops
        );
        println!(
            "  loopback TCP: {:.0} MB/s ({} MiB)",
            self.loopback_mb_per_s,
            self.loopback_bytes >> 20
        );
    }
}
