//! A full disk: real ENOSPC from a small tmpfs (the test mounts one, so it must run as root).
//!
//! An append that runs out of space fails with `StorageError::DiskFull`, leaves no trace in the log (log end
//! unchanged, nothing partial readable, nothing partial left in the files) and does not harm what was
//! acknowledged before; once space is freed the partition takes appends again. The same holds when the space
//! runs out in the middle of a segment roll, at each of the roll's steps in turn.

mod common;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use nerve_storage::{AppendInfo, LocalLogStore, LogStore, StorageError, TopicPartition};
use nerve_wire::records::BatchBuilder;

const PAGE: u64 = 4096;
const TOPIC: &str = "full";
const SEGMENT_BYTES: usize = 64 * 1024;

/// A tmpfs mounted on a directory for the life of the value; unmounted (lazily, so that open files do not
/// stop it) when dropped, also when the test fails.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        let result = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .output();
        match result {
            Ok(output) if output.status.success() => Tmpfs {
                path: path.to_path_buf(),
            },
            Ok(output) => panic!(
                "this test needs root to mount a tmpfs: `mount -t tmpfs -o size={size} tmpfs {}` failed ({}): {}",
                path.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ),
            Err(e) => panic!("this test needs root and the `mount` command to mount a tmpfs: {e}"),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        match Command::new("umount").arg("-l").arg(&self.path).status() {
            Ok(status) if status.success() => {}
            other => eprintln!(
                "unmounting the tmpfs on {} failed: {other:?}",
                self.path.display()
            ),
        }
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_millis() as i64
}

/// An uncompressed batch of about `size` bytes of incompressible values that depend on `tag`.
fn batch_of(tag: u64, size: usize) -> Bytes {
    let now = now_ms();
    let count = size.div_ceil(4096);
    let per_record = size / count;
    let mut state = tag.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut b = BatchBuilder::new(now);
    for i in 0..count {
        let value: Vec<u8> = (0..per_record)
            .map(|_| {
                // xorshift64
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        b.push(
            now,
            Some(format!("{tag}-{i}").as_bytes()),
            Some(&value),
            Vec::new(),
        );
    }
    Bytes::from(b.build().expect("batch builds"))
}

/// Grows `path` by whole pages until the file system is full; returns the file's length.
fn fill_up(path: &Path) -> u64 {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("the filler file opens");
    let page = vec![0xa5u8; PAGE as usize];
    loop {
        match file.write_all(&page) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("writing {}: {e}", path.display()),
        }
    }
    file.metadata().expect("the filler's length").len()
}

/// Fills the file system up with `path`, then gives back exactly `pages` pages.
fn leave_free(path: &Path, pages: u64) {
    let len = fill_up(path);
    assert!(
        len >= pages * PAGE,
        "the filler is too small to free {pages} pages"
    );
    File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len - pages * PAGE))
        .expect("shrinking the filler");
}

/// Checks that the partition holds exactly the acknowledged batches, intact, at their offsets; that nothing
/// is readable at the log end; and that the segment files hold no bytes beyond the batches.
async fn check_intact(
    store: &LocalLogStore,
    tp: &TopicPartition,
    dir: &Path,
    acked: &[(AppendInfo, Bytes)],
    when: &str,
) {
    let end = acked.last().map_or(0, |(info, _)| info.last_offset + 1);
    let offsets = store.offsets(tp).expect("offsets");
    assert_eq!(
        offsets.log_end, end,
        "{when}: the log end is not one past the last acknowledged offset"
    );
    assert_eq!(offsets.high_watermark, end, "{when}: the high watermark");

    // `read_all` and `batches` fail on anything but whole, intact batches.
    let data = common::read_all(store, tp, 0).await;
    let stored = common::batches(&data);
    assert_eq!(
        stored.len(),
        acked.len(),
        "{when}: the log does not hold exactly the acknowledged batches"
    );
    for ((header, bytes), (info, sent)) in stored.iter().zip(acked) {
        assert_eq!(
            (header.base_offset, header.last_offset()),
            (info.base_offset, info.last_offset),
            "{when}: a batch is not at its acknowledged offsets"
        );
        assert!(
            common::same_batch_content(sent, bytes),
            "{when}: the batch at offset {} does not hold what was appended",
            info.base_offset
        );
    }
    let records = common::records_of(&data);
    assert_eq!(records.len() as i64, end, "{when}: every record decodes");

    let at_end = store
        .read(tp, end, 1 << 20)
        .await
        .expect("a read at the log end");
    assert!(
        at_end.data.is_empty(),
        "{when}: a read at the log end returned {} bytes",
        at_end.data.len()
    );

    let on_disk: u64 = log_files(dir)
        .iter()
        .map(|p| p.metadata().expect("segment metadata").len())
        .sum();
    assert_eq!(
        on_disk,
        store.size_bytes(tp).expect("size"),
        "{when}: the segment files hold bytes that are not part of the log (a partial write was left behind)"
    );
}

fn log_files(partition_dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(partition_dir)
        .expect("the partition directory")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_the_append_and_the_partition_recovers_when_space_is_freed() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let mount = Tmpfs::mount(tmp.path(), "512k");
    let data_dir = mount.path.join("data");
    let filler = mount.path.join("filler");
    let roll_filler = mount.path.join("roll-filler");
    let config = common::config(&[
        ("fsync", "always"),
        ("segment.bytes", &SEGMENT_BYTES.to_string()),
        ("retention.ms", "-1"),
    ]);
    let tp = TopicPartition::new(TOPIC, 0);
    let partition_dir = data_dir.join("topics").join(format!("{TOPIC}-0"));
    let store = common::fresh(&data_dir, &tp, &config).await;
    std::fs::write(&filler, vec![0x5a; 256 * 1024]).expect("the filler file");

    // 1. Append until the disk is full.
    let mut acked: Vec<(AppendInfo, Bytes)> = Vec::new();
    let mut tag = 0u64;
    let mut next_batch = || {
        tag += 1;
        batch_of(tag, 16 * 1024)
    };
    let failure = loop {
        assert!(acked.len() < 64, "the 512 KiB tmpfs never filled up");
        let batch = next_batch();
        let before = store.offsets(&tp).expect("offsets");
        match store.append(&tp, batch.clone()).await {
            Ok(info) => {
                assert_eq!(info.base_offset, before.log_end);
                acked.push((info, batch));
            }
            Err(e) => {
                assert_eq!(
                    store.offsets(&tp).expect("offsets"),
                    before,
                    "the failed append moved the log"
                );
                break e;
            }
        }
    };
    assert!(
        matches!(failure, StorageError::DiskFull { .. }),
        "an append to a full disk failed with {failure:?}, not DiskFull"
    );
    assert!(!acked.is_empty(), "not even the first append fit");
    let segments_when_full = log_files(&partition_dir).len();
    check_intact(
        &store,
        &tp,
        &partition_dir,
        &acked,
        "after the disk filled up",
    )
    .await;
    // Retrying while the disk is still full fails the same way and changes nothing.
    let retry = store.append(&tp, next_batch()).await;
    assert!(
        matches!(retry, Err(StorageError::DiskFull { .. })),
        "a retry on the full disk: {retry:?}"
    );
    check_intact(
        &store,
        &tp,
        &partition_dir,
        &acked,
        "after a retry on the full disk",
    )
    .await;
    // A restart while the disk is still full recovers the partition without needing space.
    store
        .close()
        .await
        .expect("the store closes on a full disk");
    drop(store);
    let mut store = common::open(&data_dir, &[TOPIC], &config);
    assert!(
        store.failed_partitions().is_empty(),
        "recovery on a full disk failed: {:?}",
        store.failed_partitions()
    );
    check_intact(
        &store,
        &tp,
        &partition_dir,
        &acked,
        "after a restart on the full disk",
    )
    .await;

    // 2. Free the space: appends succeed again.
    std::fs::remove_file(&filler).expect("removing the filler");
    for _ in 0..3 {
        let batch = next_batch();
        let info = store
            .append(&tp, batch.clone())
            .await
            .expect("an append after space was freed");
        acked.push((info, batch));
    }
    check_intact(&store, &tp, &partition_dir, &acked, "after space was freed").await;

    // 3. Run out of space in a segment roll. The active segment is not empty (the last append went there)
    //    and this batch alone is larger than segment.bytes, so the append must roll first. With no page
    //    free the roll itself fails; with one page more each time it fails one step later, until it
    //    succeeds and the write into the new segment fails, and finally the append goes through.
    let big = batch_of(u64::MAX, SEGMENT_BYTES + 6 * 1024);
    let mut failures: Vec<(u64, PathBuf)> = Vec::new();
    let mut free_pages = 0u64;
    loop {
        assert!(free_pages <= 64, "the large append never succeeded");
        leave_free(&roll_filler, free_pages);
        let before = store.offsets(&tp).expect("offsets");
        match store.append(&tp, big.clone()).await {
            Ok(info) => {
                assert_eq!(info.base_offset, before.log_end);
                acked.push((info, big.clone()));
                break;
            }
            Err(StorageError::DiskFull { path }) => {
                assert_eq!(
                    store.offsets(&tp).expect("offsets"),
                    before,
                    "the failed append moved the log"
                );
                let when = format!(
                    "after a failed append with {free_pages} pages free ({})",
                    path.display()
                );
                check_intact(&store, &tp, &partition_dir, &acked, &when).await;
                // And a restart right after that failure, on the still full disk, finds the same log.
                store.close().await.expect("the store closes");
                store = common::open(&data_dir, &[TOPIC], &config);
                assert!(
                    store.failed_partitions().is_empty(),
                    "{when}: recovery failed: {:?}",
                    store.failed_partitions()
                );
                check_intact(
                    &store,
                    &tp,
                    &partition_dir,
                    &acked,
                    &format!("{when}, then a restart"),
                )
                .await;
                failures.push((free_pages, path));
            }
            Err(e) => {
                panic!("with {free_pages} pages free, the append failed with {e:?}, not DiskFull")
            }
        }
        free_pages += 1;
    }
    let in_roll: Vec<_> = failures
        .iter()
        .filter(|(_, path)| path.extension().is_none_or(|e| e != "log"))
        .collect();
    assert!(
        !in_roll.is_empty(),
        "no failure happened while rolling the segment (every failure was on a segment file): {failures:?}"
    );
    check_intact(
        &store,
        &tp,
        &partition_dir,
        &acked,
        "after the large append",
    )
    .await;

    // 4. Free everything: appends, with more rolls, keep working.
    std::fs::remove_file(&roll_filler).expect("removing the roll filler");
    for _ in 0..4 {
        let batch = next_batch();
        let info = store
            .append(&tp, batch.clone())
            .await
            .expect("an append after all space was freed");
        acked.push((info, batch));
    }
    check_intact(
        &store,
        &tp,
        &partition_dir,
        &acked,
        "after all space was freed",
    )
    .await;
    let segments_before_reopen = log_files(&partition_dir).len();

    // 5. Everything acknowledged survives a restart, and the partition still takes appends.
    store.close().await.expect("the store closes");
    drop(store);
    let store = common::open(&data_dir, &[TOPIC], &config);
    assert!(
        store.failed_partitions().is_empty(),
        "recovery failed: {:?}",
        store.failed_partitions()
    );
    check_intact(&store, &tp, &partition_dir, &acked, "after reopening").await;
    let batch = next_batch();
    let info = store
        .append(&tp, batch.clone())
        .await
        .expect("an append after reopening");
    acked.push((info, batch));
    check_intact(
        &store,
        &tp,
        &partition_dir,
        &acked,
        "after an append after reopening",
    )
    .await;
    store.close().await.expect("the store closes");

    // Consecutive failures on the same file, as ranges of free pages.
    let mut stages: Vec<(u64, u64, String)> = Vec::new();
    for (pages, path) in &failures {
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        match stages.last_mut() {
            Some((_, last, file)) if *file == name => *last = *pages,
            _ => stages.push((*pages, *pages, name)),
        }
    }
    let stages: Vec<String> = stages
        .iter()
        .map(|(first, last, file)| format!("{first}..={last} pages free: {file}"))
        .collect();
    println!(
        "{} batches acknowledged; the disk filled up with {segments_when_full} segments; the large append failed \
         with {stages:?}; {segments_before_reopen} segments before the last reopen",
        acked.len(),
    );
    drop(mount);
}
