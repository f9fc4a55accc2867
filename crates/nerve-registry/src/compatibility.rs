//! Compatibility levels, and checking a new schema against a subject's earlier versions under one.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::schema::ParsedSchema;

/// A subject's (or the registry's) compatibility level, named as Confluent names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CompatibilityLevel {
    /// A consumer on the new schema reads data written with the latest earlier one.
    #[default]
    Backward,
    /// A consumer on the new schema reads data written with every earlier one.
    BackwardTransitive,
    /// A consumer on the latest earlier schema reads data written with the new one.
    Forward,
    /// Consumers on every earlier schema read data written with the new one.
    ForwardTransitive,
    /// Backward and forward, against the latest earlier schema.
    Full,
    /// Backward and forward, against every earlier schema.
    FullTransitive,
    None,
}

impl CompatibilityLevel {
    pub const ALL: [CompatibilityLevel; 7] = [
        CompatibilityLevel::Backward,
        CompatibilityLevel::BackwardTransitive,
        CompatibilityLevel::Forward,
        CompatibilityLevel::ForwardTransitive,
        CompatibilityLevel::Full,
        CompatibilityLevel::FullTransitive,
        CompatibilityLevel::None,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CompatibilityLevel::Backward => "BACKWARD",
            CompatibilityLevel::BackwardTransitive => "BACKWARD_TRANSITIVE",
            CompatibilityLevel::Forward => "FORWARD",
            CompatibilityLevel::ForwardTransitive => "FORWARD_TRANSITIVE",
            CompatibilityLevel::Full => "FULL",
            CompatibilityLevel::FullTransitive => "FULL_TRANSITIVE",
            CompatibilityLevel::None => "NONE",
        }
    }

    /// Parses a level name as the API accepts it (case-insensitive, as Confluent does).
    pub fn from_name(name: &str) -> Option<CompatibilityLevel> {
        CompatibilityLevel::ALL
            .into_iter()
            .find(|l| l.name().eq_ignore_ascii_case(name))
    }

    fn transitive(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Backward
                | CompatibilityLevel::BackwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            CompatibilityLevel::Forward
                | CompatibilityLevel::ForwardTransitive
                | CompatibilityLevel::Full
                | CompatibilityLevel::FullTransitive
        )
    }
}

/// An earlier version to check against.
#[derive(Debug, Clone)]
pub struct Earlier {
    pub version: i32,
    pub schema: Arc<dyn ParsedSchema>,
}

/// Why `new` is not compatible with `earlier` (oldest first) under `level`; empty when it is. A
/// non-transitive level looks at the latest earlier version only; earlier versions of another schema type
/// are not compared, as in Confluent's registry.
pub fn check(
    level: CompatibilityLevel,
    new: &dyn ParsedSchema,
    earlier: &[Earlier],
) -> Vec<String> {
    if level == CompatibilityLevel::None {
        return Vec::new();
    }
    let against: &[Earlier] = if level.transitive() {
        earlier
    } else {
        earlier.last().map(std::slice::from_ref).unwrap_or_default()
    };
    let mut problems = Vec::new();
    // Newest first, as Confluent reports them.
    for old in against.iter().rev() {
        if old.schema.schema_type() != new.schema_type() {
            continue;
        }
        let before = problems.len();
        if level.backward() {
            problems.extend(
                new.read_problems(old.schema.as_ref())
                    .into_iter()
                    .map(|p| format!("backward: {p}")),
            );
        }
        if level.forward() {
            problems.extend(
                old.schema
                    .read_problems(new)
                    .into_iter()
                    .map(|p| format!("forward: {p}")),
            );
        }
        if problems.len() > before {
            // As Confluent's verbose answers: which version, its schema, and the level, each an entry.
            problems.push(format!("{{oldSchemaVersion: {}}}", old.version));
            problems.push(format!("{{oldSchema: '{}'}}", old.schema.canonical()));
            problems.push(format!("{{compatibility: '{}'}}", level.name()));
        }
    }
    problems
}
