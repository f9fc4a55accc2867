//! Retention and compaction results.

mod common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::*;
use nerve_storage::{LogStore, TopicPartition};
use nerve_wire::records::BatchBuilder;
use nerve_wire::Compression;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn retention_ms_deletes_whole_old_segments_and_moves_the_log_start() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("old", 0);
    let cfg = config(&[("segment.bytes", "1000"), ("retention.ms", "3600000")]);
    let store = fresh(dir.path(), &tp, &cfg).await;
    let now = now_ms();
    // Two hours old, then fresh.
    for i in 0..20 {
        store
            .append(&tp, batch(i, 3, now - 7_200_000, Compression::None))
            .await
            .unwrap();
    }
    let old_end = store.offsets(&tp).unwrap().log_end;
    for i in 20..30 {
        store
            .append(&tp, batch(i, 3, now, Compression::None))
            .await
            .unwrap();
    }
    let deleted = store.enforce_retention().await.unwrap();
    assert!(deleted > 0);
    let offsets = store.offsets(&tp).unwrap();
    assert!(
        offsets.log_start > 0 && offsets.log_start <= old_end,
        "log start {} moved into the old range",
        offsets.log_start
    );
    let records = records_of(&read_all(&store, &tp, offsets.log_start).await);
    assert!(
        records.iter().filter(|r| r.1 >= now).count() == 30,
        "every fresh record is kept"
    );
    assert_eq!(
        records.first().unwrap().0,
        offsets.log_start,
        "reading starts at the new log start"
    );
    assert_eq!(offsets.log_end, 90, "the log end does not move");
}

#[tokio::test]
async fn an_expired_active_segment_is_rolled_and_deleted_keeping_the_end_offset() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("idle", 0);
    let store = fresh(dir.path(), &tp, &config(&[("retention.ms", "1000")])).await;
    store
        .append(&tp, batch(1, 5, now_ms() - 60_000, Compression::None))
        .await
        .unwrap();
    assert_eq!(store.enforce_retention().await.unwrap(), 1);
    let offsets = store.offsets(&tp).unwrap();
    assert_eq!(
        (offsets.log_start, offsets.high_watermark, offsets.log_end),
        (5, 5, 5)
    );
    let info = store
        .append(&tp, batch(2, 1, now_ms(), Compression::None))
        .await
        .unwrap();
    assert_eq!(info.base_offset, 5);
}

#[tokio::test]
async fn retention_bytes_keeps_the_newest_segments_within_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("big", 0);
    let cfg = config(&[("segment.bytes", "2000"), ("retention.bytes", "5000")]);
    let store = fresh(dir.path(), &tp, &cfg).await;
    for i in 0..100 {
        store
            .append(&tp, batch(i, 2, now_ms(), Compression::None))
            .await
            .unwrap();
    }
    let before = store.size_bytes(&tp).unwrap();
    store.enforce_retention().await.unwrap();
    let after = store.size_bytes(&tp).unwrap();
    assert!(
        before > 5000 && (3000..7000).contains(&after),
        "size {before} -> {after}"
    );
    let offsets = store.offsets(&tp).unwrap();
    assert_eq!(offsets.log_end, 200);
    let records = records_of(&read_all(&store, &tp, offsets.log_start).await);
    assert_eq!(
        records.last().unwrap().0,
        199,
        "the newest records are kept"
    );
}

#[tokio::test]
async fn compaction_keeps_the_latest_record_per_key_at_its_original_offset() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("table", 0);
    let cfg = config(&[("cleanup.policy", "compact"), ("segment.bytes", "1500")]);
    let store = fresh(dir.path(), &tp, &cfg).await;
    let codecs = Compression::ALL;
    let now = now_ms();
    // Model of what must survive: key -> (offset, value) of its latest record.
    let mut latest: BTreeMap<String, (i64, Option<String>)> = BTreeMap::new();
    let mut offset = 0;
    for round in 0..30 {
        let mut b = BatchBuilder::new(now);
        b.compression = codecs[round % 5];
        let mut rows = Vec::new();
        for i in 0..4 {
            let key = format!("user-{}", (round * 3 + i) % 10);
            let value = format!("v{round}-{i}");
            b.push(
                now,
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                Vec::new(),
            );
            rows.push((key, Some(value)));
        }
        store
            .append(&tp, Bytes::from(b.build().unwrap()))
            .await
            .unwrap();
        for (key, value) in rows {
            latest.insert(key, (offset, value));
            offset += 1;
        }
    }
    store.roll(&tp).await.unwrap();
    let before = records_of(&read_all(&store, &tp, 0).await);
    let stats = store.compact(&tp).await.unwrap();
    assert!(
        stats.records_removed > 0 && stats.bytes_after < stats.bytes_before,
        "{stats:?}"
    );

    let after = records_of(&read_all(&store, &tp, 0).await);
    let kept: BTreeMap<String, (i64, Option<String>)> = after
        .iter()
        .map(|(o, _, k, v)| {
            let key = String::from_utf8(k.clone().unwrap().to_vec()).unwrap();
            (
                key,
                (
                    *o,
                    v.as_ref().map(|v| String::from_utf8(v.to_vec()).unwrap()),
                ),
            )
        })
        .collect();
    assert_eq!(
        after.len(),
        latest.len(),
        "exactly one record per key survives"
    );
    assert_eq!(
        kept, latest,
        "the survivor is the latest record, at its original offset"
    );
    for (o, _, _, v) in &after {
        let original = before.iter().find(|r| r.0 == *o).unwrap();
        assert_eq!(&original.3, v, "a kept record is unchanged");
    }
    let offsets = store.offsets(&tp).unwrap();
    assert_eq!(
        (offsets.log_start, offsets.log_end),
        (0, 120),
        "offsets never change"
    );

    // Compaction survives a restart, and appends continue after it.
    store.close().await.unwrap();
    let store = open(dir.path(), &["table"], &cfg);
    assert_eq!(records_of(&read_all(&store, &tp, 0).await), after);
    let info = store
        .append(&tp, keyed(&[("user-1", Some("after"), now)]))
        .await
        .unwrap();
    assert_eq!(info.base_offset, 120);
}

#[tokio::test]
async fn tombstones_delete_their_key_and_go_themselves_after_delete_retention_ms() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("tomb", 0);
    let cfg = config(&[
        ("cleanup.policy", "compact"),
        ("delete.retention.ms", "60000"),
    ]);
    let store = fresh(dir.path(), &tp, &cfg).await;
    let now = now_ms();
    store
        .append(
            &tp,
            keyed(&[
                ("a", Some("1"), now - 120_000),
                ("b", Some("1"), now - 120_000),
                ("c", Some("1"), now),
            ]),
        )
        .await
        .unwrap();
    // An old tombstone for a (past delete.retention.ms) and a fresh one for c.
    store
        .append(&tp, keyed(&[("a", None, now - 120_000), ("c", None, now)]))
        .await
        .unwrap();
    store
        .append(&tp, keyed(&[("d", Some("1"), now)]))
        .await
        .unwrap();
    store.roll(&tp).await.unwrap();
    store.compact(&tp).await.unwrap();
    let keys: Vec<(i64, String, bool)> = records_of(&read_all(&store, &tp, 0).await)
        .into_iter()
        .map(|(o, _, k, v)| {
            (
                o,
                String::from_utf8(k.unwrap().to_vec()).unwrap(),
                v.is_some(),
            )
        })
        .collect();
    assert_eq!(
        keys,
        vec![
            (1, "b".to_string(), true),
            (4, "c".to_string(), false),
            (5, "d".to_string(), true)
        ],
        "a's value and old tombstone are gone; c's fresh tombstone stays"
    );
}

#[tokio::test]
async fn compaction_never_touches_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let tp = TopicPartition::new("active", 0);
    let store = fresh(dir.path(), &tp, &config(&[("cleanup.policy", "compact")])).await;
    for i in 0..10 {
        store
            .append(&tp, keyed(&[("same", Some(&i.to_string()), now_ms())]))
            .await
            .unwrap();
    }
    let stats = store.compact(&tp).await.unwrap();
    assert_eq!(stats.records_removed, 0);
    assert_eq!(records_of(&read_all(&store, &tp, 0).await).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_compaction_run_in_the_background_on_their_schedule() {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    let dir = tempfile::tempdir().unwrap();
    let expiring = TopicPartition::new("expiring", 0);
    let table = TopicPartition::new("table", 0);
    let expiring_cfg = config(&[("retention.ms", "1000")]);
    let table_cfg = config(&[
        ("cleanup.policy", "compact"),
        ("min.cleanable.dirty.ratio", "0.1"),
    ]);
    let topics = HashMap::from([
        ("expiring".to_string(), expiring_cfg.clone()),
        ("table".to_string(), table_cfg.clone()),
    ]);
    let local = nerve_storage::LocalConfig {
        retention_check_interval: Duration::from_millis(50),
        compaction_check_interval: Duration::from_millis(50),
        ..Default::default()
    };
    let store = nerve_storage::LocalLogStore::open(dir.path(), local, &topics).unwrap();
    store
        .create_partition(&expiring, expiring_cfg)
        .await
        .unwrap();
    store
        .create_partition(&table, Arc::clone(&table_cfg))
        .await
        .unwrap();
    store
        .append(&expiring, batch(1, 3, now_ms() - 60_000, Compression::None))
        .await
        .unwrap();
    for i in 0..5 {
        store
            .append(&table, keyed(&[("k", Some(&i.to_string()), now_ms())]))
            .await
            .unwrap();
    }
    store.roll(&table).await.unwrap();

    // Nothing is called here: the store's own task must do the work.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let expired = store.offsets(&expiring).unwrap().log_start == 3;
        let compacted = records_of(&read_all(&store, &table, 0).await).len() == 1;
        if expired && compacted {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "background cleanup did not run"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
