//! Helpers shared by the storage integration tests.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use nerve_storage::{LocalConfig, LocalLogStore, LogStore, TopicConfig, TopicPartition};
use nerve_wire::batch::BatchHeader;
use nerve_wire::records::{self, BatchBuilder};
use nerve_wire::Compression;

pub const T0: i64 = 1_700_000_000_000;

/// A topic config from `name=value` pairs over the defaults, with time retention off unless given, since
/// test records carry timestamps from [`T0`], long past the default seven days.
pub fn config(pairs: &[(&str, &str)]) -> Arc<TopicConfig> {
    let mut map = BTreeMap::from([("retention.ms".to_string(), "-1".to_string())]);
    map.extend(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Arc::new(TopicConfig::from_overrides(&map).expect("valid test config"))
}

/// Opens a store whose topics all use `config`.
pub fn open(dir: &Path, topics: &[&str], config: &Arc<TopicConfig>) -> LocalLogStore {
    let map: HashMap<String, Arc<TopicConfig>> = topics
        .iter()
        .map(|t| (t.to_string(), config.clone()))
        .collect();
    LocalLogStore::open(dir, LocalConfig::default(), &map).expect("store opens")
}

/// Creates `tp` in a fresh store.
pub async fn fresh(dir: &Path, tp: &TopicPartition, config: &Arc<TopicConfig>) -> LocalLogStore {
    let store = open(dir, &[&tp.topic], config);
    store
        .create_partition(tp, config.clone())
        .await
        .expect("partition created");
    store
}

/// One batch of `count` records whose values say which batch and record they are, keyed `key-<i % keys>`.
pub fn batch(tag: u64, count: usize, timestamp: i64, compression: Compression) -> Bytes {
    let mut b = BatchBuilder::new(timestamp);
    b.compression = compression;
    for i in 0..count {
        let key = format!("key-{}", i % 7);
        let value = format!("batch-{tag}-record-{i}");
        b.push(
            timestamp + i as i64,
            Some(key.as_bytes()),
            Some(value.as_bytes()),
            Vec::new(),
        );
    }
    Bytes::from(b.build().expect("batch builds"))
}

/// One batch with explicit (key, value, timestamp) records.
pub fn keyed(records: &[(&str, Option<&str>, i64)]) -> Bytes {
    let mut b = BatchBuilder::new(records.first().map(|r| r.2).unwrap_or(T0));
    for (k, v, t) in records {
        b.push(*t, Some(k.as_bytes()), v.map(str::as_bytes), Vec::new());
    }
    Bytes::from(b.build().expect("batch builds"))
}

/// Splits stored bytes into batches and checks each one's integrity.
pub fn batches(data: &[u8]) -> Vec<(BatchHeader, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < data.len() {
        let total = nerve_wire::batch::peek_total_len(&data[at..])
            .expect("a header")
            .expect("a sane length");
        let bytes = data[at..at + total].to_vec();
        let header = nerve_wire::batch::check_integrity(&bytes).expect("stored batch is intact");
        out.push((header, bytes));
        at += total;
    }
    out
}

/// Every (offset, timestamp, key, value) in the stored bytes.
pub fn records_of(data: &[u8]) -> Vec<(i64, i64, Option<Bytes>, Option<Bytes>)> {
    let mut out = Vec::new();
    for (_, bytes) in batches(data) {
        let (header, records) = records::decode_records(&bytes, 64 << 20).expect("records decode");
        for r in records {
            out.push((
                r.offset(&header),
                r.timestamp(&header),
                r.key.clone(),
                r.value.clone(),
            ));
        }
    }
    out
}

/// Reads the whole visible log from `from`.
pub async fn read_all(store: &LocalLogStore, tp: &TopicPartition, from: i64) -> Vec<u8> {
    let mut out = Vec::new();
    let mut offset = from;
    loop {
        let result = store.read(tp, offset, 1 << 20).await.expect("read");
        if result.data.is_empty() {
            return out;
        }
        let parsed = batches(&result.data);
        let last = parsed.last().expect("non-empty").0.last_offset();
        out.extend_from_slice(&result.data);
        offset = last + 1;
    }
}

/// Compares two batches ignoring the base offset and leader epoch, which the store assigns.
pub fn same_batch_content(sent: &[u8], stored: &[u8]) -> bool {
    sent.len() == stored.len() && sent[16..] == stored[16..]
}
