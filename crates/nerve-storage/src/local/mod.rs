//! The local engine: each partition a directory of segment files under `<data-dir>/topics/`, metadata in
//! `<data-dir>/meta/`.

mod append;
mod cleaner;
mod flusher;
mod fsutil;
mod index;
mod meta;
mod partition;
mod producer;
mod segment;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

pub use cleaner::CompactionStats;
pub use meta::LocalMetaStore;

use crate::config::{FsyncPolicy, LocalConfig, TopicConfig};
use crate::error::{Result, StorageError};
use crate::{
    AppendInfo, LogStore, Offset, PartitionOffsets, ReadResult, TimestampLookup, TimestampMs,
    TopicPartition,
};
use flusher::Flusher;
use partition::{now_ms, Partition};

struct Inner {
    topics_dir: PathBuf,
    config: LocalConfig,
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    /// Partitions that could not be opened, with the reason; every operation on them reports it.
    failed: RwLock<HashMap<TopicPartition, String>>,
    flusher: Flusher,
    closed: AtomicBool,
    background: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// [`LogStore`] on local segment files. Cheap to clone; clones share the store.
#[derive(Clone)]
pub struct LocalLogStore {
    inner: Arc<Inner>,
}

impl LocalLogStore {
    /// Opens the logs under `data_dir/topics/`, recovering each partition. `topics` gives each known topic's
    /// configuration; directories of topics not in it are left alone with a warning. A partition that fails
    /// recovery (corruption) does not stop the others: it is reported by [`Self::failed_partitions`] and its
    /// operations fail with that error.
    ///
    /// When called inside a tokio runtime, a background task enforces retention and runs compaction.
    pub fn open(
        data_dir: &Path,
        config: LocalConfig,
        topics: &HashMap<String, Arc<TopicConfig>>,
    ) -> Result<Self> {
        let topics_dir = data_dir.join("topics");
        std::fs::create_dir_all(&topics_dir).map_err(|e| StorageError::io(&topics_dir, e))?;
        let mut partitions = HashMap::new();
        let mut failed = HashMap::new();
        for entry in std::fs::read_dir(&topics_dir).map_err(|e| StorageError::io(&topics_dir, e))? {
            let entry = entry.map_err(|e| StorageError::io(&topics_dir, e))?;
            let name = entry.file_name();
            if name.to_str().is_some_and(|n| n.ends_with(DELETED_SUFFIX)) {
                // A deletion that a crash interrupted after the rename: finish it.
                let _ = std::fs::remove_dir_all(entry.path());
                continue;
            }
            let Some((topic, partition)) = name.to_str().and_then(parse_dir_name) else {
                tracing::warn!(dir = %entry.path().display(), "ignoring a directory that is not a partition");
                continue;
            };
            let tp = TopicPartition::new(topic, partition);
            let Some(topic_config) = topics.get(topic) else {
                tracing::warn!(partition = %tp, "ignoring the log of a topic the metadata does not know");
                continue;
            };
            match Partition::open(entry.path(), tp.clone(), topic_config.clone()) {
                Ok(p) => {
                    partitions.insert(tp, Arc::new(p));
                }
                Err(e) => {
                    tracing::error!(partition = %tp, error = %e, "partition is offline: recovery failed");
                    failed.insert(tp, e.to_string());
                }
            }
        }
        let store = LocalLogStore {
            inner: Arc::new(Inner {
                topics_dir,
                flusher: Flusher::start(config.flush_threads),
                config,
                partitions: RwLock::new(partitions),
                failed: RwLock::new(failed),
                closed: AtomicBool::new(false),
                background: Mutex::new(None),
            }),
        };
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&store.inner);
            let task = handle.spawn(async move { background(weak).await });
            *store.inner.background.lock() = Some(task);
        }
        Ok(store)
    }

    /// Partitions that failed recovery, with the reason.
    pub fn failed_partitions(&self) -> HashMap<TopicPartition, String> {
        self.inner.failed.read().clone()
    }

    fn partition(&self, tp: &TopicPartition) -> Result<Arc<Partition>> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        if let Some(p) = self.inner.partitions.read().get(tp) {
            return Ok(p.clone());
        }
        if let Some(reason) = self.inner.failed.read().get(tp) {
            return Err(StorageError::PartitionOffline {
                tp: tp.clone(),
                reason: reason.clone(),
            });
        }
        Err(StorageError::UnknownTopicOrPartition(tp.clone()))
    }

    /// Enforces retention on every partition now; returns how many segments were deleted.
    pub async fn enforce_retention(&self) -> Result<usize> {
        let partitions: Vec<_> = self.inner.partitions.read().values().cloned().collect();
        let now = now_ms();
        tokio::task::spawn_blocking(move || {
            let mut deleted = 0;
            for p in partitions {
                deleted += p.enforce_retention(now)?;
            }
            Ok(deleted)
        })
        .await
        .map_err(|e| StorageError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?
    }

    /// Compacts one partition now, whatever its dirty ratio.
    pub async fn compact(&self, tp: &TopicPartition) -> Result<CompactionStats> {
        let p = self.partition(tp)?;
        let limit = self.inner.config.max_decompressed_bytes;
        blocking(move || p.compact(limit)).await
    }

    /// Starts a new segment on `tp` now (as `segment.ms` would), so that what was appended can be retained
    /// or compacted.
    pub async fn roll(&self, tp: &TopicPartition) -> Result<()> {
        let p = self.partition(tp)?;
        blocking(move || {
            let mut state = p.state.lock();
            if state.active().size > 0 {
                p.roll(&mut state, now_ms())?;
            }
            Ok(())
        })
        .await
    }
}

/// Runs blocking file work off the async executor's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::Io {
            path: PathBuf::new(),
            source: std::io::Error::other(e),
        })?
}

/// Marks a partition directory being deleted; such directories are removed on open.
const DELETED_SUFFIX: &str = ".deleted";

/// `<topic>-<partition>`; topic names may contain `-`, so the partition is after the last one.
fn parse_dir_name(name: &str) -> Option<(&str, i32)> {
    let (topic, partition) = name.rsplit_once('-')?;
    let partition = partition.parse().ok()?;
    (!topic.is_empty() && partition >= 0).then_some((topic, partition))
}

/// Retention and compaction, on the store's schedule, for as long as the store is alive.
async fn background(inner: std::sync::Weak<Inner>) {
    let Some(config) = inner.upgrade().map(|i| i.config.clone()) else {
        return;
    };
    // The first pass waits one period, as Kafka's log manager does: opening the store stays quick, and
    // whoever opened it (a test, the broker's startup) is not raced by a cleanup it did not ask for.
    let start = tokio::time::Instant::now();
    let mut retention = tokio::time::interval_at(
        start + config.retention_check_interval,
        config.retention_check_interval,
    );
    let mut compaction = tokio::time::interval_at(
        start + config.compaction_check_interval,
        config.compaction_check_interval,
    );
    retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    compaction.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let retention_due = tokio::select! {
            _ = retention.tick() => true,
            _ = compaction.tick() => false,
        };
        let Some(inner) = inner.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let partitions: Vec<_> = inner.partitions.read().values().cloned().collect();
        let limit = inner.config.max_decompressed_bytes;
        drop(inner);
        let _ = tokio::task::spawn_blocking(move || {
            let now = now_ms();
            for p in partitions {
                let result = if retention_due {
                    p.enforce_retention(now).map(|_| ())
                } else {
                    let config = p.state.lock().config.clone();
                    if config.cleanup_policy.compact && p.dirty_ratio() >= config.min_cleanable_dirty_ratio {
                        p.compact(limit).map(|_| ())
                    } else {
                        Ok(())
                    }
                };
                if let Err(e) = result {
                    tracing::warn!(partition = %p.tp, error = %e, retention = retention_due, "background cleanup failed");
                }
            }
        })
        .await;
    }
}

#[async_trait]
impl LogStore for LocalLogStore {
    async fn create_partition(&self, tp: &TopicPartition, config: Arc<TopicConfig>) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        let mut partitions = self.inner.partitions.write();
        if partitions.contains_key(tp) {
            return Err(StorageError::PartitionAlreadyExists(tp.clone()));
        }
        crate::validate_topic_name(&tp.topic)?;
        let p = Partition::create(&self.inner.topics_dir, tp.clone(), config)?;
        partitions.insert(tp.clone(), Arc::new(p));
        Ok(())
    }

    async fn delete_partition(&self, tp: &TopicPartition) -> Result<()> {
        let removed = self.inner.partitions.write().remove(tp);
        let failed = self.inner.failed.write().remove(tp).is_some();
        if removed.is_none() && !failed {
            return Err(StorageError::UnknownTopicOrPartition(tp.clone()));
        }
        if let Some(p) = &removed {
            p.fail("the partition was deleted".to_string());
        }
        let dir = self.inner.topics_dir.join(Partition::dir_name(tp));
        let tp = tp.clone();
        blocking(move || {
            // Rename first so that a crash midway never leaves a half-deleted log under the live name.
            let doomed = dir.with_file_name(format!(
                "{}.{}{DELETED_SUFFIX}",
                Partition::dir_name(&tp),
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::rename(&dir, &doomed).map_err(|e| StorageError::io(&dir, e))?;
            fsutil::sync_parent(&dir)?;
            std::fs::remove_dir_all(&doomed).map_err(|e| StorageError::io(&doomed, e))
        })
        .await
    }

    async fn set_topic_config(&self, topic: &str, config: Arc<TopicConfig>) -> Result<()> {
        for (tp, p) in self.inner.partitions.read().iter() {
            if &*tp.topic == topic {
                p.state.lock().config = config.clone();
            }
        }
        Ok(())
    }

    fn partitions(&self) -> Vec<TopicPartition> {
        let mut all: Vec<_> = self.inner.partitions.read().keys().cloned().collect();
        all.extend(self.inner.failed.read().keys().cloned());
        all.sort();
        all
    }

    async fn append(&self, tp: &TopicPartition, records: Bytes) -> Result<AppendInfo> {
        let p = self.partition(tp)?;
        let (answer, start_writer) = p.submit(records)?;
        if start_writer {
            let writer = p.clone();
            tokio::task::spawn_blocking(move || writer.write_queued());
        }
        let (info, config) = answer.await.map_err(|_| StorageError::Closed)??;
        if !info.duplicate {
            self.inner
                .flusher
                .enqueue(&p, config.fsync, config.fsync_interval);
        }
        if config.fsync == FsyncPolicy::Always {
            // A retried duplicate waits too: its original may not be durable yet.
            p.wait_durable(info.last_offset + 1).await?;
        }
        Ok(info)
    }

    async fn read(
        &self,
        tp: &TopicPartition,
        offset: Offset,
        max_bytes: usize,
    ) -> Result<ReadResult> {
        let p = self.partition(tp)?;
        blocking(move || p.read(offset, max_bytes)).await
    }

    fn offsets(&self, tp: &TopicPartition) -> Result<PartitionOffsets> {
        Ok(self.partition(tp)?.state.lock().offsets())
    }

    fn watch_high_watermark(
        &self,
        tp: &TopicPartition,
    ) -> Result<tokio::sync::watch::Receiver<Offset>> {
        Ok(self.partition(tp)?.subscribe())
    }

    async fn offset_for_timestamp(
        &self,
        tp: &TopicPartition,
        timestamp: TimestampMs,
    ) -> Result<Option<TimestampLookup>> {
        let p = self.partition(tp)?;
        let limit = self.inner.config.max_decompressed_bytes;
        blocking(move || p.offset_for_timestamp(timestamp, limit)).await
    }

    async fn max_timestamp(&self, tp: &TopicPartition) -> Result<Option<TimestampLookup>> {
        let p = self.partition(tp)?;
        let limit = self.inner.config.max_decompressed_bytes;
        blocking(move || p.max_timestamp(limit)).await
    }

    async fn delete_records_before(&self, tp: &TopicPartition, offset: Offset) -> Result<Offset> {
        let p = self.partition(tp)?;
        blocking(move || p.delete_records_before(offset)).await
    }

    async fn truncate_to(&self, tp: &TopicPartition, offset: Offset) -> Result<Offset> {
        let p = self.partition(tp)?;
        blocking(move || p.truncate_to(offset)).await
    }

    fn size_bytes(&self, tp: &TopicPartition) -> Result<u64> {
        Ok(self.partition(tp)?.size_bytes())
    }

    async fn close(&self) -> Result<()> {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        if let Some(task) = self.inner.background.lock().take() {
            task.abort();
        }
        let partitions: Vec<_> = self.inner.partitions.read().values().cloned().collect();
        let inner = self.inner.clone();
        blocking(move || {
            inner.flusher.shutdown();
            // Syncs of different files overlap in the kernel, so the partitions are synced side by side.
            let workers = inner.config.flush_threads.max(1);
            let chunk = partitions.len().div_ceil(workers).max(1);
            std::thread::scope(|scope| {
                let handles: Vec<_> = partitions
                    .chunks(chunk)
                    .map(|group| {
                        scope.spawn(move || {
                            group.iter().try_for_each(|p| {
                                p.check_online()?;
                                flusher::sync_all(p)
                            })
                        })
                    })
                    .collect();
                handles.into_iter().try_for_each(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(StorageError::Io {
                            path: PathBuf::new(),
                            source: std::io::Error::other("a sync thread panicked"),
                        })
                    })
                })
            })
        })
        .await
    }
}
