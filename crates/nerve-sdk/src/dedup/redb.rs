//! The embedded dedup store: a [`redb`] file, for services without a database of their own.
//!
//! Two tables, written together in one redb transaction:
//! - `nerve_dedup_seen`: `(consumer, event id) → handled at` (ms since the Unix epoch), for lookups;
//! - `nerve_dedup_by_time`: `(handled at, consumer, event id) → ()`, so that a purge reads only what it
//!   drops.
//!
//! redb commits durably (fsync) by default, so a record survives a crash once `record` returned.

use std::path::Path;
use std::sync::Arc;
use std::time::SystemTime;

use ::redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use async_trait::async_trait;
use uuid::Uuid;

use super::{DedupError, DedupStore};
use crate::envelope::millis_since_epoch;

const SEEN: TableDefinition<'_, (&str, u128), u64> = TableDefinition::new("nerve_dedup_seen");
const BY_TIME: TableDefinition<'_, (u64, &str, u128), ()> =
    TableDefinition::new("nerve_dedup_by_time");

/// A [`DedupStore`] in a local redb file. Cheap to clone (one open database shared); redb allows one
/// process at a time to open a file.
#[derive(Clone)]
pub struct RedbDedup {
    db: Arc<Database>,
}

impl std::fmt::Debug for RedbDedup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbDedup").finish_non_exhaustive()
    }
}

impl RedbDedup {
    /// Opens the store at `path`, creating the file if it does not exist.
    pub fn open(path: impl AsRef<Path>) -> Result<RedbDedup, DedupError> {
        let db = Database::create(path).map_err(::redb::Error::from)?;
        let tx = db.begin_write().map_err(::redb::Error::from)?;
        // Both tables exist from here on, so readers never meet a missing table.
        tx.open_table(SEEN).map_err(::redb::Error::from)?;
        tx.open_table(BY_TIME).map_err(::redb::Error::from)?;
        tx.commit().map_err(::redb::Error::from)?;
        Ok(RedbDedup { db: Arc::new(db) })
    }

    /// Runs `work` on tokio's blocking pool: redb's calls wait for the disk.
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Database) -> Result<T, ::redb::Error> + Send + 'static,
    ) -> Result<T, DedupError> {
        let db = Arc::clone(&self.db);
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| DedupError::Blocking(e.to_string()))?
            .map_err(DedupError::from)
    }
}

#[async_trait]
impl DedupStore for RedbDedup {
    async fn contains(&self, consumer: &str, event_id: Uuid) -> Result<bool, DedupError> {
        let consumer = consumer.to_string();
        self.blocking(move |db| {
            let tx = db.begin_read()?;
            let seen = tx.open_table(SEEN)?;
            Ok(seen.get((consumer.as_str(), event_id.as_u128()))?.is_some())
        })
        .await
    }

    async fn record(&self, consumer: &str, event_id: Uuid) -> Result<bool, DedupError> {
        let consumer = consumer.to_string();
        let now = millis_since_epoch(SystemTime::now());
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            let first = {
                let mut seen = tx.open_table(SEEN)?;
                let key = (consumer.as_str(), event_id.as_u128());
                if seen.get(key)?.is_some() {
                    false
                } else {
                    seen.insert(key, now)?;
                    let mut by_time = tx.open_table(BY_TIME)?;
                    by_time.insert((now, consumer.as_str(), event_id.as_u128()), ())?;
                    true
                }
            };
            if first {
                tx.commit()?;
            } else {
                tx.abort()?;
            }
            Ok(first)
        })
        .await
    }

    async fn purge_before(&self, cutoff: SystemTime) -> Result<u64, DedupError> {
        let cutoff = millis_since_epoch(cutoff);
        self.blocking(move |db| {
            let tx = db.begin_write()?;
            let purged = {
                let mut by_time = tx.open_table(BY_TIME)?;
                let mut seen = tx.open_table(SEEN)?;
                let mut old: Vec<(u64, String, u128)> = Vec::new();
                for entry in by_time.range(..(cutoff, "", 0u128))? {
                    let (key, _) = entry?;
                    let (at, consumer, id) = key.value();
                    old.push((at, consumer.to_string(), id));
                }
                for (at, consumer, id) in &old {
                    by_time.remove((*at, consumer.as_str(), *id))?;
                    seen.remove((consumer.as_str(), *id))?;
                }
                old.len() as u64
            };
            tx.commit()?;
            Ok(purged)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_record_survives_reopening_the_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("dedup.redb");
        let id = Uuid::now_v7();
        {
            let store = RedbDedup::open(&path).expect("opened");
            assert!(!store.contains("billing", id).await.expect("read"));
            assert!(store.record("billing", id).await.expect("written"));
            assert!(!store.record("billing", id).await.expect("written"), "once");
        }
        let store = RedbDedup::open(&path).expect("reopened");
        assert!(store.contains("billing", id).await.expect("read"));
        assert!(
            !store.contains("shipping", id).await.expect("read"),
            "records are per consumer"
        );
        assert!(!store
            .contains("billing", Uuid::now_v7())
            .await
            .expect("read"));
    }

    #[tokio::test]
    async fn purge_forgets_what_is_older_than_the_window_and_keeps_the_rest() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = RedbDedup::open(dir.path().join("dedup.redb")).expect("opened");
        let (old_a, old_b, new) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        store.record("billing", old_a).await.expect("written");
        store.record("shipping", old_b).await.expect("written");
        // Millisecond timestamps: a cutoff strictly between the old records and the new one.
        tokio::time::sleep(Duration::from_millis(5)).await;
        let cutoff = SystemTime::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        store.record("billing", new).await.expect("written");

        assert_eq!(store.purge_before(cutoff).await.expect("purged"), 2);
        assert!(!store.contains("billing", old_a).await.expect("read"));
        assert!(!store.contains("shipping", old_b).await.expect("read"));
        assert!(store.contains("billing", new).await.expect("read"));
        assert!(
            store.record("billing", old_a).await.expect("written"),
            "a purged event counts as new again"
        );
        assert_eq!(
            store
                .purge(Duration::from_secs(3600))
                .await
                .expect("purged"),
            0,
            "nothing is an hour old"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(store.purge(Duration::ZERO).await.expect("purged"), 2);
    }
}
