//! Broker-side schema validation (Confluent Server's `confluent.key.schema.validation` and
//! `confluent.value.schema.validation` topic configs).
//!
//! The broker does not know schemas: a [`RecordValidator`] (the schema registry) judges each key or value.
//! The broker keeps the set of topics that ask for validation, so that a produce to any other topic
//! costs one lookup in an (often empty) map and nothing else.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use nerve_wire::records::decode_records;
use parking_lot::RwLock;

/// Which part of a record is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordPart {
    Key,
    Value,
}

impl RecordPart {
    pub fn name(self) -> &'static str {
        match self {
            RecordPart::Key => "key",
            RecordPart::Value => "value",
        }
    }
}

/// Judges produced keys and values for topics with schema validation on.
pub trait RecordValidator: Send + Sync {
    /// Checks one non-null key or value produced to `topic`; the error says what is wrong with it.
    fn validate(&self, topic: &str, part: RecordPart, bytes: &[u8]) -> Result<(), String>;
}

/// What a topic asks to have validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Validation {
    pub(crate) key: bool,
    pub(crate) value: bool,
}

/// A record that failed validation: its index in the batch and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejected {
    pub(crate) record_index: usize,
    pub(crate) reason: String,
}

/// At most this many rejected records are reported for one batch.
const MAX_REPORTED: usize = 100;
/// A compressed batch may inflate to at most this while being validated.
const MAX_DECOMPRESSED: usize = 64 << 20;

/// The topics with validation on, and the validator.
#[derive(Default)]
pub(crate) struct Validations {
    topics: RwLock<HashMap<String, Validation>>,
    validator: std::sync::OnceLock<Arc<dyn RecordValidator>>,
}

impl Validations {
    /// Records what `topic`'s configs ask for (nothing: forgets it).
    pub(crate) fn set_topic(&self, topic: &str, validation: Validation) {
        let mut topics = self.topics.write();
        if validation == Validation::default() {
            topics.remove(topic);
        } else {
            topics.insert(topic.to_string(), validation);
        }
    }

    pub(crate) fn set_validator(&self, validator: Arc<dyn RecordValidator>) -> bool {
        self.validator.set(validator).is_ok()
    }

    /// What `topic` asks for, if anything.
    pub(crate) fn of(&self, topic: &str) -> Option<Validation> {
        let topics = self.topics.read();
        if topics.is_empty() {
            return None;
        }
        topics.get(topic).copied()
    }

    /// Checks every record of `batch` as `validation` asks. `Err` lists the rejected records, or says why
    /// the batch could not be read at all (then with record index 0).
    pub(crate) fn check(
        &self,
        topic: &str,
        validation: Validation,
        batch: &Bytes,
    ) -> Result<(), Vec<Rejected>> {
        let Some(validator) = self.validator.get() else {
            return Err(vec![Rejected {
                record_index: 0,
                reason: format!(
                    "topic {topic} has schema validation on, but no schema registry is running"
                ),
            }]);
        };
        let unreadable = |reason: String| {
            vec![Rejected {
                record_index: 0,
                reason,
            }]
        };
        nerve_wire::batch::check_integrity(batch).map_err(|e| unreadable(e.to_string()))?;
        let (_, records) =
            decode_records(batch, MAX_DECOMPRESSED).map_err(|e| unreadable(e.to_string()))?;
        let mut rejected = Vec::new();
        for (index, record) in records.iter().enumerate() {
            let parts = [
                (validation.key, RecordPart::Key, &record.key),
                (validation.value, RecordPart::Value, &record.value),
            ];
            for (on, part, bytes) in parts {
                let Some(bytes) = bytes.as_ref().filter(|_| on) else {
                    continue;
                };
                if let Err(reason) = validator.validate(topic, part, bytes) {
                    rejected.push(Rejected {
                        record_index: index,
                        reason: format!("record {index}: {} {reason}", part.name()),
                    });
                    break;
                }
            }
            if rejected.len() >= MAX_REPORTED {
                break;
            }
        }
        if rejected.is_empty() {
            Ok(())
        } else {
            Err(rejected)
        }
    }
}
