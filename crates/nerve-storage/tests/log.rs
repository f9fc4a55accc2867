//! The append and read promises of the local log engine.

mod common;

use bytes::Bytes;
use common::*;
use nerve_storage::{LogStore, StorageError, TopicPartition};
use nerve_wire::records::BatchBuilder;
use nerve_wire::{Compression, TimestampType};

fn tp() -> TopicPartition {
    TopicPartition::new("events", 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appended_batches_read_back_byte_identical_across_segment_rolls_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[("segment.bytes", "1024"), ("index.interval.bytes", "256")]);
    let store = fresh(dir.path(), &tp(), &cfg).await;
    let codecs = Compression::ALL;
    let mut sent = Vec::new();
    let mut next = 0;
    for i in 0..60u64 {
        let b = batch(
            i,
            1 + (i as usize % 9),
            T0 + i as i64 * 10,
            codecs[i as usize % 5],
        );
        let info = store.append(&tp(), b.clone()).await.unwrap();
        assert_eq!(info.base_offset, next, "offsets are consecutive");
        next = info.last_offset + 1;
        sent.push(b);
    }
    let files = std::fs::read_dir(dir.path().join("topics/events-0"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "log")
        })
        .count();
    assert!(
        files > 5,
        "the test must cross segment rolls, found {files} segments"
    );

    let check = |stored: Vec<u8>| {
        let stored = batches(&stored);
        assert_eq!(stored.len(), sent.len());
        let mut expected_base = 0;
        for ((header, bytes), original) in stored.iter().zip(&sent) {
            assert!(
                same_batch_content(original, bytes),
                "batch at {} differs from what was sent",
                header.base_offset
            );
            assert_eq!(header.base_offset, expected_base);
            expected_base = header.last_offset() + 1;
        }
    };
    check(read_all(&store, &tp(), 0).await);
    store.close().await.unwrap();

    let store = open(dir.path(), &["events"], &cfg);
    check(read_all(&store, &tp(), 0).await);
    let offsets = store.offsets(&tp()).unwrap();
    assert_eq!(
        (offsets.log_start, offsets.high_watermark, offsets.log_end),
        (0, next, next)
    );
    // Appends go on after the reopen at the next offset.
    let info = store
        .append(&tp(), batch(99, 3, T0, Compression::None))
        .await
        .unwrap();
    assert_eq!(info.base_offset, next);
}

#[tokio::test]
async fn a_read_starts_at_the_batch_holding_the_offset_and_respects_max_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[("index.interval.bytes", "100")]);
    let store = fresh(dir.path(), &tp(), &cfg).await;
    for i in 0..20 {
        store
            .append(&tp(), batch(i, 5, T0, Compression::None))
            .await
            .unwrap();
    }
    // Offset 12 is inside the third batch (10..=14).
    let result = store.read(&tp(), 12, 1).await.unwrap();
    let got = batches(&result.data);
    assert_eq!(
        got.len(),
        1,
        "max_bytes smaller than a batch still returns one whole batch (KIP-74)"
    );
    assert_eq!(got[0].0.base_offset, 10);

    let one = got[0].1.len();
    let result = store.read(&tp(), 12, one * 3).await.unwrap();
    let got = batches(&result.data);
    assert_eq!(got.len(), 3, "as many whole batches as fit in max_bytes");
    assert_eq!(
        got.iter().map(|b| b.0.base_offset).collect::<Vec<_>>(),
        vec![10, 15, 20]
    );

    let end = store.read(&tp(), 100, 1 << 20).await.unwrap();
    assert!(end.data.is_empty(), "a read at the log end returns nothing");
    assert_eq!(end.offsets.high_watermark, 100);
    assert!(matches!(
        store.read(&tp(), 101, 1 << 20).await,
        Err(StorageError::OffsetOutOfRange {
            offset: 101,
            log_end: 100,
            ..
        })
    ));
}

#[tokio::test]
async fn a_batch_larger_than_max_bytes_is_returned_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path(), &tp(), &config(&[])).await;
    let mut b = BatchBuilder::new(T0);
    b.push(T0, Some(b"k"), Some(&vec![7u8; 300_000]), Vec::new());
    let big = Bytes::from(b.build().unwrap());
    store.append(&tp(), big.clone()).await.unwrap();
    let result = store.read(&tp(), 0, 1000).await.unwrap();
    assert!(same_batch_content(&big, &result.data));
}

#[tokio::test]
async fn bad_batches_are_refused_with_typed_errors_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path(), &tp(), &config(&[("max.message.bytes", "2000")])).await;
    let good = batch(1, 3, T0, Compression::None);

    let mut crc = good.to_vec();
    let last = crc.len() - 1;
    crc[last] ^= 0xff;
    let mut length_lies = good.to_vec();
    length_lies[8..12].copy_from_slice(&((good.len() as i32) + 100).to_be_bytes());
    let mut magic0 = good.to_vec();
    magic0[16] = 0;
    let mut magic1 = good.to_vec();
    magic1[16] = 1;
    let mut empty = BatchBuilder::new(T0);
    empty.last_offset_delta = Some(0);
    let empty = empty.build().unwrap();
    let too_big = {
        let mut b = BatchBuilder::new(T0);
        b.push(T0, Some(b"k"), Some(&[1u8; 3000]), Vec::new());
        b.build().unwrap()
    };
    type Expect = fn(&StorageError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("wrong CRC", crc, |e| {
            matches!(
                e,
                StorageError::CorruptBatch(nerve_wire::WireError::CrcMismatch { .. })
            )
        }),
        ("length that lies", length_lies, |e| {
            matches!(
                e,
                StorageError::CorruptBatch(nerve_wire::WireError::Truncated { .. })
            )
        }),
        ("magic 0", magic0, |e| {
            matches!(
                e,
                StorageError::CorruptBatch(nerve_wire::WireError::UnsupportedMagic(0))
            )
        }),
        ("magic 1", magic1, |e| {
            matches!(
                e,
                StorageError::CorruptBatch(nerve_wire::WireError::UnsupportedMagic(1))
            )
        }),
        ("zero records", empty, |e| {
            matches!(
                e,
                StorageError::CorruptBatch(nerve_wire::WireError::NoRecords)
            )
        }),
        ("over max.message.bytes", too_big, |e| {
            matches!(e, StorageError::MessageTooLarge { max: 2000, .. })
        }),
        ("garbage", vec![0xde; 7], |e| {
            matches!(e, StorageError::CorruptBatch(_))
        }),
        ("nothing", vec![], |e| {
            matches!(e, StorageError::CorruptBatch(_))
        }),
    ];
    for (name, bytes, expected) in cases {
        let err = store
            .append(&tp(), Bytes::from(bytes))
            .await
            .expect_err(name);
        assert!(expected(&err), "{name}: unexpected error {err:?}");
    }
    assert_eq!(
        store.offsets(&tp()).unwrap().log_end,
        0,
        "refused batches stored nothing"
    );
    let info = store.append(&tp(), good.clone()).await.unwrap();
    assert_eq!(
        info.base_offset, 0,
        "the partition goes on accepting good batches"
    );
}

#[tokio::test]
async fn compacted_topics_refuse_records_without_a_key_naming_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path(), &tp(), &config(&[("cleanup.policy", "compact")])).await;
    let mut b = BatchBuilder::new(T0);
    b.push(T0, Some(b"a"), Some(b"1"), Vec::new());
    b.push(T0, None, Some(b"2"), Vec::new());
    let err = store
        .append(&tp(), Bytes::from(b.build().unwrap()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::InvalidRecord {
                batch_index: 0,
                record_index: 1,
                ..
            }
        ),
        "{err:?}"
    );
    store
        .append(&tp(), keyed(&[("a", Some("1"), T0)]))
        .await
        .unwrap();
}

fn idempotent(pid: i64, epoch: i16, seq: i32, count: usize) -> Bytes {
    let mut b = BatchBuilder::new(T0);
    b.producer_id = pid;
    b.producer_epoch = epoch;
    b.base_sequence = seq;
    for i in 0..count {
        b.push(
            T0,
            Some(b"k"),
            Some(format!("{seq}-{i}").as_bytes()),
            Vec::new(),
        );
    }
    Bytes::from(b.build().unwrap())
}

#[tokio::test]
async fn idempotent_producer_retries_are_acknowledged_once_and_the_state_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[("segment.bytes", "600")]);
    let store = fresh(dir.path(), &tp(), &cfg).await;
    let mut offsets = Vec::new();
    for n in 0..8 {
        let info = store
            .append(&tp(), idempotent(42, 0, n * 2, 2))
            .await
            .unwrap();
        assert!(!info.duplicate);
        offsets.push(info.base_offset);
    }
    let retry = store.append(&tp(), idempotent(42, 0, 14, 2)).await.unwrap();
    assert!(retry.duplicate);
    assert_eq!(
        (retry.base_offset, retry.last_offset),
        (offsets[7], offsets[7] + 1)
    );
    assert_eq!(
        store.offsets(&tp()).unwrap().log_end,
        16,
        "the retry stored nothing"
    );

    assert!(matches!(
        store.append(&tp(), idempotent(42, 0, 20, 1)).await,
        Err(StorageError::OutOfOrderSequence {
            expected: 16,
            received: 20,
            ..
        })
    ));
    store.close().await.unwrap();

    // After a restart the last five batches are known again (rebuilt from snapshots and the log).
    let store = open(dir.path(), &["events"], &cfg);
    let retry = store.append(&tp(), idempotent(42, 0, 12, 2)).await.unwrap();
    assert!(retry.duplicate);
    assert_eq!(retry.base_offset, offsets[6]);
    assert!(matches!(
        store.append(&tp(), idempotent(42, 0, 17, 1)).await,
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    store.append(&tp(), idempotent(42, 0, 16, 1)).await.unwrap();
    // A bumped epoch starts again at zero and fences the old one.
    store.append(&tp(), idempotent(42, 1, 0, 1)).await.unwrap();
    assert!(matches!(
        store.append(&tp(), idempotent(42, 0, 17, 1)).await,
        Err(StorageError::InvalidProducerEpoch {
            epoch: 0,
            current: 1,
            ..
        })
    ));
}

#[tokio::test]
async fn log_append_time_topics_stamp_batches_with_the_broker_clock() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(
        dir.path(),
        &tp(),
        &config(&[("message.timestamp.type", "LogAppendTime")]),
    )
    .await;
    let info = store
        .append(&tp(), batch(1, 3, 1000, Compression::Lz4))
        .await
        .unwrap();
    let stamped = info.log_append_time.expect("LogAppendTime reported");
    assert!(stamped > T0);
    let data = store.read(&tp(), 0, 1 << 20).await.unwrap().data;
    let (header, _) = &batches(&data)[0];
    assert_eq!(header.timestamp_type(), TimestampType::LogAppendTime);
    assert_eq!(header.max_timestamp, stamped);
    assert!(records_of(&data).iter().all(|r| r.1 == stamped));
}

#[tokio::test]
async fn deleted_records_are_no_longer_readable_and_the_log_start_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[("segment.bytes", "1000")]);
    let store = fresh(dir.path(), &tp(), &cfg).await;
    for i in 0..30 {
        store
            .append(&tp(), batch(i, 4, T0, Compression::None))
            .await
            .unwrap();
    }
    assert_eq!(store.delete_records_before(&tp(), 50).await.unwrap(), 50);
    assert!(matches!(
        store.read(&tp(), 49, 100).await,
        Err(StorageError::OffsetOutOfRange { log_start: 50, .. })
    ));
    let data = store.read(&tp(), 50, 100).await.unwrap().data;
    assert!(batches(&data)[0].0.last_offset() >= 50);
    let before = store.size_bytes(&tp()).unwrap();
    assert!(
        before < 30 * 200,
        "segments wholly below the log start were deleted"
    );
    assert!(matches!(
        store.delete_records_before(&tp(), 121).await,
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    store.close().await.unwrap();
    let store = open(dir.path(), &["events"], &cfg);
    assert_eq!(store.offsets(&tp()).unwrap().log_start, 50);
}

#[tokio::test]
async fn truncation_removes_whole_batches_from_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[("segment.bytes", "700")]);
    let store = fresh(dir.path(), &tp(), &cfg).await;
    for i in 0..20 {
        store
            .append(&tp(), batch(i, 3, T0 + i as i64, Compression::None))
            .await
            .unwrap();
    }
    // Offset 31 is inside the batch 30..=32: that batch goes too.
    assert_eq!(store.truncate_to(&tp(), 31).await.unwrap(), 30);
    let offsets = store.offsets(&tp()).unwrap();
    assert_eq!((offsets.high_watermark, offsets.log_end), (30, 30));
    let all = read_all(&store, &tp(), 0).await;
    assert_eq!(batches(&all).last().unwrap().0.last_offset(), 29);
    let info = store
        .append(&tp(), batch(100, 2, T0, Compression::None))
        .await
        .unwrap();
    assert_eq!(info.base_offset, 30);
    store.close().await.unwrap();
    let store = open(dir.path(), &["events"], &cfg);
    assert_eq!(store.offsets(&tp()).unwrap().log_end, 32);
    assert_eq!(records_of(&read_all(&store, &tp(), 0).await).len(), 32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_partitions_append_concurrently_and_keep_their_own_order() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&[("segment.bytes", "8192")]);
    let store = open(dir.path(), &["many"], &cfg);
    let partitions: Vec<_> = (0..64).map(|p| TopicPartition::new("many", p)).collect();
    for tp in &partitions {
        store.create_partition(tp, cfg.clone()).await.unwrap();
    }
    let mut tasks = Vec::new();
    for tp in partitions.clone() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20u64 {
                let tag = u64::from(tp.partition as u32) * 1000 + i;
                store
                    .append(&tp, batch(tag, 2, T0, Compression::None))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for tp in &partitions {
        let records = records_of(&read_all(&store, tp, 0).await);
        assert_eq!(records.len(), 40);
        for (i, (offset, _, _, value)) in records.iter().enumerate() {
            assert_eq!(*offset, i as i64);
            let want = format!(
                "batch-{}-record-{}",
                u64::from(tp.partition as u32) * 1000 + i as u64 / 2,
                i % 2
            );
            assert_eq!(value.as_deref(), Some(want.as_bytes()));
        }
    }
}

#[tokio::test]
async fn a_high_watermark_watcher_is_woken_by_an_append() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path(), &tp(), &config(&[])).await;
    let mut rx = store.watch_high_watermark(&tp()).unwrap();
    let writer = store.clone();
    let task = tokio::spawn(async move {
        writer
            .append(&tp(), batch(1, 4, T0, Compression::None))
            .await
    });
    rx.wait_for(|hw| *hw == 4).await.unwrap();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn unknown_partitions_and_a_closed_store_give_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh(dir.path(), &tp(), &config(&[])).await;
    let other = TopicPartition::new("nope", 0);
    assert!(matches!(
        store.read(&other, 0, 10).await,
        Err(StorageError::UnknownTopicOrPartition(_))
    ));
    assert!(matches!(
        store.create_partition(&tp(), config(&[])).await,
        Err(StorageError::PartitionAlreadyExists(_))
    ));
    store.delete_partition(&tp()).await.unwrap();
    assert!(!dir.path().join("topics/events-0").exists());
    assert!(matches!(
        store.offsets(&tp()),
        Err(StorageError::UnknownTopicOrPartition(_))
    ));
    store.create_partition(&tp(), config(&[])).await.unwrap();
    assert_eq!(
        store.offsets(&tp()).unwrap().log_end,
        0,
        "a re-created partition starts empty"
    );
    store.close().await.unwrap();
    assert!(matches!(
        store
            .append(&tp(), batch(1, 1, T0, Compression::None))
            .await,
        Err(StorageError::Closed)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fsync_policy_acknowledges_readable_data_that_survives_a_reopen() {
    for policy in ["always", "interval", "never"] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&[
            ("fsync", policy),
            ("fsync.interval.ms", "20"),
            ("segment.bytes", "2000"),
        ]);
        let store = fresh(dir.path(), &tp(), &cfg).await;
        let mut sent = Vec::new();
        for i in 0..30 {
            let b = batch(i, 4, T0, Compression::Snappy);
            let info = store.append(&tp(), b.clone()).await.unwrap();
            // Acknowledged means readable, whatever the policy.
            assert_eq!(
                store.offsets(&tp()).unwrap().high_watermark,
                info.last_offset + 1,
                "{policy}"
            );
            sent.push(b);
        }
        store.close().await.unwrap();
        let store = open(dir.path(), &["events"], &cfg);
        let stored = batches(&read_all(&store, &tp(), 0).await);
        assert_eq!(stored.len(), 30, "{policy}");
        for ((_, bytes), original) in stored.iter().zip(&sent) {
            assert!(same_batch_content(original, bytes), "{policy}");
        }
    }
}

#[tokio::test]
async fn a_deletion_interrupted_by_a_crash_is_finished_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let leftover = dir.path().join("topics/events-0.0123abcd.deleted");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("00000000000000000000.log"), b"old").unwrap();
    let store = open(dir.path(), &["events"], &config(&[]));
    assert!(!leftover.exists());
    assert!(store.partitions().is_empty());
}
