//! The local metadata store: one JSON document in `meta/cluster.json`, replaced atomically on every change.
//! Metadata changes are rare (topic admin, producer id blocks), so rewriting the whole document is cheaper
//! to reason about than a log of its own.
//!
//! An open store holds an exclusive `flock` on `meta/lock` until it is dropped, so that two processes (two
//! brokers, or a broker and `nerve user create --data-dir`) never write one data directory: the second open
//! fails with [`StorageError::Locked`]. The lock belongs to the open file, so the kernel releases it when
//! the process ends however it ends, and a lock file left behind locks nothing.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use parking_lot::Mutex;
use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};

use super::fsutil;
use crate::error::{Result, StorageError};
use crate::{
    validate_topic_name, MetaStore, StoredAcl, StoredScramCredential, TopicConfig, TopicMeta,
};

const FILE: &str = "cluster.json";
const LOCK_FILE: &str = "lock";

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Document {
    topics: BTreeMap<String, TopicMeta>,
    /// The first producer id not handed out yet.
    next_producer_id: i64,
    /// Set at the first start; absent in documents written before it existed, which get one then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster_id: Option<String>,
    /// SCRAM credentials by user, then mechanism.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    scram: BTreeMap<String, BTreeMap<String, StoredScramCredential>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    acls: Vec<StoredAcl>,
}

/// [`MetaStore`] on local files.
pub struct LocalMetaStore {
    path: PathBuf,
    doc: Mutex<Document>,
    /// Holds the data directory's lock while the store lives; never read.
    _lock: File,
}

impl LocalMetaStore {
    /// Opens (or creates) the metadata under `data_dir/meta/`, locking the data directory; fails with
    /// [`StorageError::Locked`] while another store (in this process or another) has it open.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let dir = data_dir.join("meta");
        std::fs::create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        let lock = lock(&dir.join(LOCK_FILE))?;
        let path = dir.join(FILE);
        let doc = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| StorageError::Io {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Document::default(),
            Err(e) => return Err(StorageError::io(&path, e)),
        };
        Ok(LocalMetaStore {
            path,
            doc: Mutex::new(doc),
            _lock: lock,
        })
    }

    /// Applies `change` to a copy of the document, persists the copy, and only then makes it current, so a
    /// failed write leaves memory and disk agreeing.
    fn update<T>(&self, change: impl FnOnce(&mut Document) -> Result<T>) -> Result<T> {
        let mut doc = self.doc.lock();
        let mut next = doc.clone();
        let out = change(&mut next)?;
        let bytes = serde_json::to_vec_pretty(&next).map_err(|e| StorageError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(e),
        })?;
        fsutil::write_atomic(&self.path, &bytes)?;
        *doc = next;
        Ok(out)
    }
}

/// Opens `path` (creating it) and takes an exclusive lock on it without waiting.
fn lock(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| StorageError::io(path, e))?;
    match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(file),
        Err(errno) if errno == rustix::io::Errno::WOULDBLOCK => Err(StorageError::Locked {
            path: path.to_path_buf(),
        }),
        Err(errno) => Err(StorageError::io(path, errno.into())),
    }
}

#[async_trait]
impl MetaStore for LocalMetaStore {
    async fn create_topic(&self, topic: TopicMeta) -> Result<()> {
        validate_topic_name(&topic.name)?;
        TopicConfig::validate(&topic.configs)?;
        self.update(|doc| {
            if doc.topics.contains_key(&topic.name) {
                return Err(StorageError::TopicAlreadyExists(topic.name.clone()));
            }
            doc.topics.insert(topic.name.clone(), topic);
            Ok(())
        })
    }

    async fn delete_topic(&self, name: &str) -> Result<TopicMeta> {
        self.update(|doc| {
            doc.topics.remove(name).ok_or_else(|| {
                StorageError::UnknownTopicOrPartition(crate::TopicPartition::new(name, -1))
            })
        })
    }

    fn topic(&self, name: &str) -> Option<TopicMeta> {
        self.doc.lock().topics.get(name).cloned()
    }

    fn topics(&self) -> Vec<TopicMeta> {
        self.doc.lock().topics.values().cloned().collect()
    }

    async fn set_topic_configs(&self, name: &str, configs: BTreeMap<String, String>) -> Result<()> {
        TopicConfig::validate(&configs)?;
        self.update(|doc| match doc.topics.get_mut(name) {
            Some(topic) => {
                topic.configs = configs;
                Ok(())
            }
            None => Err(StorageError::UnknownTopicOrPartition(
                crate::TopicPartition::new(name, -1),
            )),
        })
    }

    async fn set_partition_count(&self, name: &str, partitions: i32) -> Result<()> {
        self.update(|doc| match doc.topics.get_mut(name) {
            Some(topic) if partitions > topic.partitions => {
                topic.partitions = partitions;
                Ok(())
            }
            Some(topic) => Err(StorageError::InvalidConfig {
                name: "partitions".to_string(),
                value: partitions.to_string(),
                reason: format!("the topic already has {} partitions", topic.partitions),
            }),
            None => Err(StorageError::UnknownTopicOrPartition(
                crate::TopicPartition::new(name, -1),
            )),
        })
    }

    async fn cluster_id(&self, if_absent: &str) -> Result<String> {
        let stored = self.doc.lock().cluster_id.clone();
        if let Some(id) = stored {
            return Ok(id);
        }
        self.update(|doc| {
            Ok(doc
                .cluster_id
                .get_or_insert_with(|| if_absent.to_string())
                .clone())
        })
    }

    async fn allocate_producer_ids(&self, count: u32) -> Result<i64> {
        self.update(|doc| {
            let first = doc.next_producer_id;
            doc.next_producer_id += i64::from(count.max(1));
            Ok(first)
        })
    }

    fn scram_credential(&self, user: &str, mechanism: &str) -> Option<StoredScramCredential> {
        self.doc.lock().scram.get(user)?.get(mechanism).cloned()
    }

    fn scram_users(&self) -> BTreeMap<String, BTreeMap<String, StoredScramCredential>> {
        self.doc.lock().scram.clone()
    }

    async fn set_scram_credential(
        &self,
        user: &str,
        mechanism: &str,
        credential: Option<StoredScramCredential>,
    ) -> Result<bool> {
        self.update(|doc| {
            Ok(match credential {
                Some(credential) => doc
                    .scram
                    .entry(user.to_string())
                    .or_default()
                    .insert(mechanism.to_string(), credential)
                    .is_some(),
                None => {
                    let Some(mechanisms) = doc.scram.get_mut(user) else {
                        return Ok(false);
                    };
                    let had = mechanisms.remove(mechanism).is_some();
                    if mechanisms.is_empty() {
                        doc.scram.remove(user);
                    }
                    had
                }
            })
        })
    }

    fn acls(&self) -> Vec<StoredAcl> {
        self.doc.lock().acls.clone()
    }

    async fn set_acls(&self, acls: Vec<StoredAcl>) -> Result<()> {
        self.update(|doc| {
            doc.acls = acls;
            Ok(())
        })
    }
}
