//! The registry's records in `_schemas`, in the layout Confluent's registry uses for its own `_schemas`
//! topic, so that tools which read that topic understand Nerve's too. Keys and values are JSON:
//!
//! - `{"keytype":"SCHEMA","subject":S,"version":V,"magic":1}` → `{"subject","version","id","schemaType",
//!   "references","schema","deleted"}`; a soft delete rewrites the value with `"deleted":true`, a hard
//!   delete is a tombstone (null value).
//! - `{"keytype":"CONFIG","subject":S or null,"magic":0}` → `{"compatibilityLevel":L}`; a tombstone removes it.
//! - `{"keytype":"MODE","subject":S or null,"magic":0}` → `{"mode":M}`; a tombstone removes it.
//! - `{"keytype":"ID","magic":0}` → `{"id":N}`: the highest id ever given. Nerve's own: it keeps ids from
//!   being reused after the schemas that had them were hard deleted and compacted away.
//!
//! The topic is compacted, so the latest record per key is what survives.

use std::sync::Arc;

use bytes::Bytes;
use nerve_storage::{LogStore, TopicPartition};
use nerve_wire::BatchBuilder;
use serde::{Deserialize, Serialize};

use crate::compatibility::CompatibilityLevel;
use crate::error::RegistryError;
use crate::schema::{SchemaReference, SchemaType};

/// The topic the registry keeps its records in (Confluent's `kafkastore.topic` default).
pub const SCHEMAS_TOPIC: &str = "_schemas";

/// A record's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "keytype")]
pub(crate) enum Key {
    #[serde(rename = "SCHEMA")]
    Schema {
        subject: String,
        version: i32,
        magic: i32,
    },
    #[serde(rename = "CONFIG")]
    Config { subject: Option<String>, magic: i32 },
    #[serde(rename = "MODE")]
    Mode { subject: Option<String>, magic: i32 },
    #[serde(rename = "ID")]
    Id { magic: i32 },
}

/// A registry mode, as Confluent names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mode {
    /// Schemas may be registered and deleted.
    #[default]
    Readwrite,
    /// Nothing may change.
    Readonly,
    /// Schemas are registered with the ids and versions given (for migrating from another registry), and
    /// without compatibility checks.
    Import,
}

impl Mode {
    pub fn from_name(name: &str) -> Option<Mode> {
        [Mode::Readwrite, Mode::Readonly, Mode::Import]
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        match self {
            Mode::Readwrite => "READWRITE",
            Mode::Readonly => "READONLY",
            Mode::Import => "IMPORT",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SchemaValue {
    pub(crate) subject: String,
    pub(crate) version: i32,
    pub(crate) id: i32,
    #[serde(rename = "schemaType", default, skip_serializing_if = "is_avro")]
    pub(crate) schema_type: SchemaType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) references: Vec<SchemaReference>,
    pub(crate) schema: String,
    #[serde(default)]
    pub(crate) deleted: bool,
}

pub(crate) fn is_avro(t: &SchemaType) -> bool {
    *t == SchemaType::Avro
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ConfigValue {
    #[serde(rename = "compatibilityLevel")]
    pub(crate) compatibility_level: CompatibilityLevel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ModeValue {
    pub(crate) mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IdValue {
    pub(crate) id: i32,
}

/// One change to write: a key and its new value (`None` deletes).
pub(crate) type Change = (Key, Option<serde_json::Value>);

/// The `_schemas` partition.
#[derive(Clone)]
pub(crate) struct SchemaLog {
    pub(crate) log: Arc<dyn LogStore>,
    pub(crate) tp: TopicPartition,
}

impl SchemaLog {
    /// Appends `changes` as one batch; resolves once they are durable.
    pub(crate) async fn write(&self, changes: &[Change]) -> Result<(), RegistryError> {
        let now = now_ms();
        let mut batch = BatchBuilder::new(now);
        for (key, value) in changes {
            let key = serde_json::to_vec(key).map_err(|e| RegistryError::Store(e.to_string()))?;
            let value = value
                .as_ref()
                .map(serde_json::to_vec)
                .transpose()
                .map_err(|e| RegistryError::Store(e.to_string()))?;
            batch.push(now, Some(&key), value.as_deref(), Vec::new());
        }
        let bytes = batch
            .build()
            .map_err(|e| RegistryError::Store(e.to_string()))?;
        self.log.append(&self.tp, Bytes::from(bytes)).await?;
        Ok(())
    }

    /// Every record from the start, decoded; records whose key is not one of the registry's are skipped
    /// with a warning.
    pub(crate) async fn read_all(
        &self,
    ) -> Result<Vec<(Key, Option<serde_json::Value>)>, RegistryError> {
        let mut out = Vec::new();
        nerve_storage::replay(self.log.as_ref(), &self.tp, |offset, record| {
            let key = record
                .key
                .as_deref()
                .and_then(|k| serde_json::from_slice::<Key>(k).ok());
            let value = record
                .value
                .as_deref()
                .map(serde_json::from_slice::<serde_json::Value>);
            match (key, value) {
                (Some(key), None) => out.push((key, None)),
                (Some(key), Some(Ok(value))) => out.push((key, Some(value))),
                _ => tracing::warn!(
                    offset,
                    "skipping a record of _schemas that is not the registry's"
                ),
            }
        })
        .await?;
        Ok(out)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
