//! Topic configuration under Kafka's names, so that admin tools read and write it unchanged.
//!
//! [`TOPIC_CONFIGS`] is the one table of names, defaults and documentation; `docs/configuration.md` is
//! checked against it by a test, and [`TopicConfig`] is parsed from it.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error::{Result, StorageError};

/// When an append becomes durable before it is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Acknowledge only after `fdatasync`; one sync covers every append that arrived meanwhile (group commit).
    Always,
    /// Acknowledge after the write to the page cache; sync every `fsync.interval.ms`.
    Interval,
    /// Acknowledge after the write to the page cache; leave syncing to the kernel.
    Never,
}

/// What happens to old data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanupPolicy {
    pub delete: bool,
    pub compact: bool,
}

pub use nerve_wire::TimestampType;

/// One topic-level configuration key.
#[derive(Debug)]
pub struct ConfigDef {
    pub name: &'static str,
    pub default: &'static str,
    pub doc: &'static str,
}

/// Every topic config Nerve understands, with its default and meaning.
pub const TOPIC_CONFIGS: &[ConfigDef] = &[
    ConfigDef {
        name: "cleanup.policy",
        default: "delete",
        doc: "`delete` removes whole segments past retention; `compact` keeps the latest record per key; \
              `compact,delete` does both.",
    },
    ConfigDef {
        name: "retention.ms",
        default: "604800000",
        doc: "A closed segment whose newest record is older than this is deleted. -1: keep forever.",
    },
    ConfigDef {
        name: "retention.bytes",
        default: "-1",
        doc: "Oldest segments are deleted while the partition would stay at least this large without them. \
              -1: no size limit.",
    },
    ConfigDef {
        name: "segment.bytes",
        default: "1073741824",
        doc: "A new segment file is started when an append would make the active one larger than this.",
    },
    ConfigDef {
        name: "segment.ms",
        default: "604800000",
        doc: "A new segment file is started when the active one's first record is older than this.",
    },
    ConfigDef {
        name: "segment.index.bytes",
        default: "10485760",
        doc: "Accepted for compatibility with Kafka tools; Nerve's indexes grow as needed.",
    },
    ConfigDef {
        name: "index.interval.bytes",
        default: "4096",
        doc: "Bytes of log between two entries of the sparse offset and time indexes.",
    },
    ConfigDef {
        name: "delete.retention.ms",
        default: "86400000",
        doc: "On compacted topics, how long a tombstone (a record with a null value) is kept after its \
              timestamp before compaction removes it.",
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        default: "0.5",
        doc: "Compaction runs on a partition when at least this share of its closed segments' bytes has not \
              been compacted yet.",
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        default: "0",
        doc: "A record stays uncompacted for at least this long after its timestamp.",
    },
    ConfigDef {
        name: "max.message.bytes",
        default: "1048588",
        doc: "The largest record batch (after compression) that an append accepts.",
    },
    ConfigDef {
        name: "message.timestamp.type",
        default: "CreateTime",
        doc: "`CreateTime` keeps the producer's timestamps; `LogAppendTime` stamps each batch with the \
              broker's clock when it is appended.",
    },
    ConfigDef {
        name: "compression.type",
        default: "producer",
        doc: "Only `producer` is accepted: Nerve stores batches exactly as the producer compressed them.",
    },
    ConfigDef {
        name: "fsync",
        default: "always",
        doc: "Nerve's durability policy: `always` acknowledges an append only after `fdatasync` (group \
              commit), `interval` syncs every `fsync.interval.ms`, `never` leaves it to the kernel.",
    },
    ConfigDef {
        name: "fsync.interval.ms",
        default: "1000",
        doc: "With `fsync=interval`, the longest time an acknowledged append stays unsynced.",
    },
    ConfigDef {
        name: "confluent.key.schema.validation",
        default: "false",
        doc: "When `true`, every produced record's key must be in the schema registry's wire format (magic \
              byte 0, 4-byte schema id) with a schema registered under the subject `<topic>-key`, and must \
              decode with it; otherwise the batch is refused with `INVALID_RECORD`. Null keys pass.",
    },
    ConfigDef {
        name: "confluent.value.schema.validation",
        default: "false",
        doc: "As `confluent.key.schema.validation`, for record values and the subject `<topic>-value`. Null \
              values (tombstones) pass.",
    },
];

/// A topic's resolved configuration: the defaults of [`TOPIC_CONFIGS`] with the topic's overrides applied.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicConfig {
    pub cleanup_policy: CleanupPolicy,
    /// `None`: keep forever.
    pub retention_ms: Option<i64>,
    /// `None`: no size limit.
    pub retention_bytes: Option<u64>,
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub index_interval_bytes: u32,
    pub delete_retention_ms: i64,
    pub min_cleanable_dirty_ratio: f64,
    pub min_compaction_lag_ms: i64,
    pub max_message_bytes: usize,
    pub timestamp_type: TimestampType,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    /// `confluent.key.schema.validation`: the broker checks keys against the schema registry.
    pub key_schema_validation: bool,
    /// `confluent.value.schema.validation`: the broker checks values against the schema registry.
    pub value_schema_validation: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        let mut config = TopicConfig {
            cleanup_policy: CleanupPolicy {
                delete: true,
                compact: false,
            },
            retention_ms: None,
            retention_bytes: None,
            segment_bytes: 0,
            segment_ms: 0,
            index_interval_bytes: 0,
            delete_retention_ms: 0,
            min_cleanable_dirty_ratio: 0.0,
            min_compaction_lag_ms: 0,
            max_message_bytes: 0,
            timestamp_type: TimestampType::CreateTime,
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::ZERO,
            key_schema_validation: false,
            value_schema_validation: false,
        };
        for def in TOPIC_CONFIGS {
            // The table's defaults are constants checked by a unit test, so this cannot fail at run time.
            let _ = config.set(def.name, def.default);
        }
        config
    }
}

impl TopicConfig {
    /// The defaults with `overrides` applied; the first invalid entry is the error.
    pub fn from_overrides(overrides: &BTreeMap<String, String>) -> Result<Self> {
        let mut config = TopicConfig::default();
        for (name, value) in overrides {
            config.set(name, value)?;
        }
        Ok(config)
    }

    /// Checks that every entry names a known config with a valid value.
    pub fn validate(overrides: &BTreeMap<String, String>) -> Result<()> {
        Self::from_overrides(overrides).map(|_| ())
    }

    /// Applies one config by its Kafka name.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let invalid = |reason: &str| StorageError::InvalidConfig {
            name: name.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        let int = |min: i64| -> Result<i64> {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| invalid("not an integer"))?;
            if v < min {
                return Err(invalid(&format!("must be at least {min}")));
            }
            Ok(v)
        };
        let boolean = || -> Result<bool> {
            match value.trim() {
                v if v.eq_ignore_ascii_case("true") => Ok(true),
                v if v.eq_ignore_ascii_case("false") => Ok(false),
                _ => Err(invalid("expected true or false")),
            }
        };
        match name {
            "cleanup.policy" => {
                let mut policy = CleanupPolicy {
                    delete: false,
                    compact: false,
                };
                for part in value.split(',').map(str::trim) {
                    match part {
                        "delete" => policy.delete = true,
                        "compact" => policy.compact = true,
                        _ => return Err(invalid("expected delete, compact or compact,delete")),
                    }
                }
                self.cleanup_policy = policy;
            }
            "retention.ms" => self.retention_ms = Some(int(-1)?).filter(|v| *v >= 0),
            "retention.bytes" => {
                self.retention_bytes = Some(int(-1)?).filter(|v| *v >= 0).map(|v| v as u64)
            }
            "segment.bytes" => self.segment_bytes = int(14)? as u64,
            "segment.ms" => self.segment_ms = int(1)?,
            "segment.index.bytes" => {
                int(4)?;
            }
            "index.interval.bytes" => {
                self.index_interval_bytes =
                    u32::try_from(int(0)?).map_err(|_| invalid("too large"))?
            }
            "delete.retention.ms" => self.delete_retention_ms = int(0)?,
            "min.cleanable.dirty.ratio" => {
                let v: f64 = value.trim().parse().map_err(|_| invalid("not a number"))?;
                if !(0.0..=1.0).contains(&v) {
                    return Err(invalid("must be between 0 and 1"));
                }
                self.min_cleanable_dirty_ratio = v;
            }
            "min.compaction.lag.ms" => self.min_compaction_lag_ms = int(0)?,
            "max.message.bytes" => {
                self.max_message_bytes =
                    usize::try_from(int(0)?).map_err(|_| invalid("too large"))?
            }
            "message.timestamp.type" => {
                self.timestamp_type = match value {
                    "CreateTime" => TimestampType::CreateTime,
                    "LogAppendTime" => TimestampType::LogAppendTime,
                    _ => return Err(invalid("expected CreateTime or LogAppendTime")),
                }
            }
            "compression.type" => {
                if value != "producer" {
                    return Err(invalid(
                        "only `producer` is supported: batches are stored as the producer compressed them",
                    ));
                }
            }
            "fsync" => {
                self.fsync = match value {
                    "always" => FsyncPolicy::Always,
                    "interval" => FsyncPolicy::Interval,
                    "never" => FsyncPolicy::Never,
                    _ => return Err(invalid("expected always, interval or never")),
                }
            }
            "fsync.interval.ms" => self.fsync_interval = Duration::from_millis(int(1)? as u64),
            "confluent.key.schema.validation" => self.key_schema_validation = boolean()?,
            "confluent.value.schema.validation" => self.value_schema_validation = boolean()?,
            _ => {
                return Err(StorageError::InvalidConfig {
                    name: name.to_string(),
                    value: value.to_string(),
                    reason: "unknown topic config".to_string(),
                })
            }
        }
        Ok(())
    }
}

/// The store-wide settings of the local engine.
#[derive(Debug, Clone)]
pub struct LocalConfig {
    /// How often retention is enforced on every partition (Kafka's `log.retention.check.interval.ms`).
    pub retention_check_interval: Duration,
    /// How often partitions of compacted topics are checked for compaction work.
    pub compaction_check_interval: Duration,
    /// Threads that run `fdatasync` for group commit; syncs of different files proceed in parallel.
    pub flush_threads: usize,
    /// The largest a batch may grow when compaction decompresses it.
    pub max_decompressed_bytes: usize,
}

impl Default for LocalConfig {
    fn default() -> Self {
        LocalConfig {
            retention_check_interval: Duration::from_secs(300),
            compaction_check_interval: Duration::from_secs(15),
            flush_threads: 4,
            max_decompressed_bytes: 256 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_default_parses() {
        let mut config = TopicConfig::default();
        for def in TOPIC_CONFIGS {
            config
                .set(def.name, def.default)
                .unwrap_or_else(|e| panic!("default of {} does not parse: {e}", def.name));
        }
        assert_eq!(config.segment_bytes, 1 << 30);
        assert_eq!(config.max_message_bytes, 1_048_588);
        assert_eq!(config.fsync, FsyncPolicy::Always);
        assert_eq!(config.retention_ms, Some(604_800_000));
        assert_eq!(config.retention_bytes, None);
    }

    #[test]
    fn invalid_values_and_unknown_names_are_refused() {
        let mut config = TopicConfig::default();
        for (name, value) in [
            ("cleanup.policy", "forever"),
            ("retention.ms", "-2"),
            ("segment.bytes", "1"),
            ("fsync", "sometimes"),
            ("message.timestamp.type", "Now"),
            ("no.such.config", "1"),
            ("min.cleanable.dirty.ratio", "1.5"),
        ] {
            assert!(
                matches!(
                    config.set(name, value),
                    Err(StorageError::InvalidConfig { .. })
                ),
                "{name}={value} was accepted"
            );
        }
        assert_eq!(
            config,
            TopicConfig::default(),
            "a refused value changed nothing"
        );
    }

    #[test]
    fn compact_delete_sets_both_policies() {
        let mut config = TopicConfig::default();
        config.set("cleanup.policy", "compact,delete").unwrap();
        assert!(config.cleanup_policy.compact && config.cleanup_policy.delete);
    }
}
