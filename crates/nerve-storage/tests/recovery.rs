//! Recovery on open: torn tails are cut off with a warning, corruption in the middle is reported and never
//! silently dropped, and indexes are rebuilt when missing or stale.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::*;
use nerve_storage::{LocalLogStore, LogStore, StorageError, TopicPartition};
use nerve_wire::Compression;

fn tp() -> TopicPartition {
    TopicPartition::new("rec", 0)
}

/// A writer that keeps what tracing logs, so a test can read the warnings.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Opens the store with tracing captured.
fn open_logged(dir: &Path) -> (LocalLogStore, String) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let store = tracing::subscriber::with_default(subscriber, || open(dir, &["rec"], &config(&[])));
    (store, captured.text())
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir.join("topics/rec-0"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    logs.sort();
    logs
}

/// Appends `n` batches, closes the store and returns the stored bytes of each batch.
async fn write_batches(dir: &Path, n: u64, segment_bytes: &str) -> Vec<Vec<u8>> {
    let store = fresh(dir, &tp(), &config(&[("segment.bytes", segment_bytes)])).await;
    for i in 0..n {
        store
            .append(&tp(), batch(i, 3, T0, Compression::None))
            .await
            .unwrap();
    }
    let stored = batches(&read_all(&store, &tp(), 0).await)
        .into_iter()
        .map(|b| b.1)
        .collect();
    store.close().await.unwrap();
    stored
}

#[tokio::test]
async fn a_partial_batch_at_the_tail_is_truncated_with_a_warning_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let stored = write_batches(dir.path(), 10, "1073741824").await;
    let log = segments(dir.path()).pop().unwrap();
    let clean_len = fs::metadata(&log).unwrap().len();
    // A write torn halfway: the first 40 bytes of another batch.
    let torn = batch(99, 3, T0, Compression::None);
    OpenOptions::new()
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(&torn[..40])
        .unwrap();

    let (store, logs) = open_logged(dir.path());
    assert!(logs.contains("torn write"), "a warning is logged: {logs}");
    assert!(
        logs.contains(&log.display().to_string())
            && logs.contains(&format!("position={clean_len}")),
        "{logs}"
    );
    assert_eq!(
        fs::metadata(&log).unwrap().len(),
        clean_len,
        "the torn bytes are gone from the file"
    );
    let now: Vec<Vec<u8>> = batches(&read_all(&store, &tp(), 0).await)
        .into_iter()
        .map(|b| b.1)
        .collect();
    assert_eq!(now, stored, "every complete batch is intact");
    let info = store
        .append(&tp(), batch(100, 1, T0, Compression::None))
        .await
        .unwrap();
    assert_eq!(
        info.base_offset, 30,
        "appends go on right after the last complete batch"
    );
}

#[tokio::test]
async fn flipped_bytes_in_the_last_batch_truncate_only_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let stored = write_batches(dir.path(), 10, "1073741824").await;
    let log = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&log).unwrap();
    let last_start = bytes.len() - stored[9].len();
    bytes[last_start + 70] ^= 0x55;
    fs::write(&log, &bytes).unwrap();

    let (store, logs) = open_logged(dir.path());
    assert!(
        logs.contains("torn write") && logs.contains(&format!("position={last_start}")),
        "{logs}"
    );
    assert!(store.failed_partitions().is_empty());
    let now: Vec<Vec<u8>> = batches(&read_all(&store, &tp(), 0).await)
        .into_iter()
        .map(|b| b.1)
        .collect();
    assert_eq!(now, stored[..9], "the nine batches before it are intact");
    assert_eq!(store.offsets(&tp()).unwrap().log_end, 27);
}

#[tokio::test]
async fn flipped_bytes_in_the_middle_are_reported_as_corruption_and_nothing_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let stored = write_batches(dir.path(), 10, "1073741824").await;
    let log = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&log).unwrap();
    let fourth: usize = stored[..3].iter().map(Vec::len).sum();
    bytes[fourth + 70] ^= 0x55;
    fs::write(&log, &bytes).unwrap();

    let store = open(dir.path(), &["rec"], &config(&[]));
    let failed = store.failed_partitions();
    let reason = failed
        .get(&tp())
        .expect("the partition is reported as failed");
    assert!(
        reason.contains("corrupt") && reason.contains(&format!("byte {fourth}")),
        "{reason}"
    );
    assert!(matches!(
        store.read(&tp(), 0, 100).await,
        Err(StorageError::PartitionOffline { .. })
    ));
    assert!(matches!(
        store
            .append(&tp(), batch(1, 1, T0, Compression::None))
            .await,
        Err(StorageError::PartitionOffline { .. })
    ));
    assert_eq!(
        fs::read(&log).unwrap(),
        bytes,
        "the log file is left exactly as it was"
    );
}

#[tokio::test]
async fn a_lying_length_in_the_middle_is_corruption_too() {
    let dir = tempfile::tempdir().unwrap();
    let stored = write_batches(dir.path(), 10, "1073741824").await;
    let log = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&log).unwrap();
    let fifth: usize = stored[..4].iter().map(Vec::len).sum();
    bytes[fifth + 8..fifth + 12].copy_from_slice(&1_000_000i32.to_be_bytes());
    fs::write(&log, &bytes).unwrap();
    let store = open(dir.path(), &["rec"], &config(&[]));
    assert!(store.failed_partitions().contains_key(&tp()));
    assert_eq!(fs::read(&log).unwrap(), bytes);
}

#[tokio::test]
async fn corruption_in_one_partition_leaves_the_others_serving() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[]);
    let store = open(dir.path(), &["rec"], &cfg);
    let healthy = TopicPartition::new("rec", 1);
    for p in [tp(), healthy.clone()] {
        store.create_partition(&p, cfg.clone()).await.unwrap();
        for i in 0..5 {
            store
                .append(&p, batch(i, 2, T0, Compression::None))
                .await
                .unwrap();
        }
    }
    store.close().await.unwrap();
    let log = segments(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&log).unwrap();
    bytes[80] ^= 1;
    fs::write(&log, &bytes).unwrap();
    let store = open(dir.path(), &["rec"], &cfg);
    assert!(store.failed_partitions().contains_key(&tp()));
    assert_eq!(records_of(&read_all(&store, &healthy, 0).await).len(), 10);
    store
        .append(&healthy, batch(9, 1, T0, Compression::None))
        .await
        .unwrap();
}

#[tokio::test]
async fn missing_or_stale_indexes_are_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let stored = write_batches(dir.path(), 40, "1000").await;
    let logs = segments(dir.path());
    assert!(logs.len() > 4);
    // Missing offset index, a time index of a torn length, and an offset index copied from another segment.
    fs::remove_file(logs[0].with_extension("index")).unwrap();
    let ti = logs[1].with_extension("timeindex");
    let mut t = fs::read(&ti).unwrap();
    t.push(0);
    fs::write(&ti, t).unwrap();
    fs::copy(
        logs[3].with_extension("index"),
        logs[2].with_extension("index"),
    )
    .unwrap();

    let store = open(dir.path(), &["rec"], &config(&[]));
    let now: Vec<Vec<u8>> = batches(&read_all(&store, &tp(), 0).await)
        .into_iter()
        .map(|b| b.1)
        .collect();
    assert_eq!(now, stored);
    for i in [0i64, 7, 20, 33, 61, 100, 119] {
        let data = store.read(&tp(), i, 1).await.unwrap().data;
        let first = &batches(&data)[0].0;
        assert!(
            first.base_offset <= i && i <= first.last_offset(),
            "read at {i}"
        );
    }
    assert!(
        logs[0].with_extension("index").exists(),
        "the missing index was written again"
    );
    assert_eq!(
        fs::read(logs[1].with_extension("timeindex")).unwrap().len() % 12,
        0
    );
}

#[tokio::test]
async fn a_closed_segment_that_does_not_parse_is_corruption_not_truncation() {
    let dir = tempfile::tempdir().unwrap();
    write_batches(dir.path(), 40, "1000").await;
    let logs = segments(dir.path());
    fs::remove_file(logs[1].with_extension("index")).unwrap();
    let mut bytes = fs::read(&logs[1]).unwrap();
    bytes[16] = 7; // the first batch's magic
    fs::write(&logs[1], &bytes).unwrap();
    let store = open(dir.path(), &["rec"], &config(&[]));
    assert!(store.failed_partitions().contains_key(&tp()));
    assert_eq!(fs::read(&logs[1]).unwrap(), bytes);
}
