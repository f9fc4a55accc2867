//! What the compatibility table tests of every schema type share.

#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use nerve_registry::compatibility::{check, Earlier};
use nerve_registry::{parse, CompatibilityLevel, ParsedSchema, SchemaType};

/// Expected verdicts, `true` for compatible, in the order of `CompatibilityLevel::ALL`: BACKWARD,
/// BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE.
pub type Verdicts = [bool; 7];

pub fn parsed(schema_type: SchemaType, text: &str) -> Arc<dyn ParsedSchema> {
    parse(schema_type, text, &[]).unwrap_or_else(|e| panic!("schema should parse: {e}\n{text}"))
}

/// `texts` as a subject's versions 1, 2, ... (oldest first).
pub fn history(schema_type: SchemaType, texts: &[&str]) -> Vec<Earlier> {
    texts
        .iter()
        .zip(1..)
        .map(|(text, version)| Earlier {
            version,
            schema: parsed(schema_type, text),
        })
        .collect()
}

/// Checks `new` against the history `earlier` at every level; one line per level whose verdict is not the
/// expected one, naming the case, the level and the problems found.
pub fn mismatches(
    schema_type: SchemaType,
    name: &str,
    earlier: &[&str],
    new: &str,
    expected: Verdicts,
) -> Vec<String> {
    let earlier = history(schema_type, earlier);
    let new = parsed(schema_type, new);
    CompatibilityLevel::ALL
        .into_iter()
        .zip(expected)
        .filter_map(|(level, compatible)| {
            let problems = check(level, new.as_ref(), &earlier);
            (problems.is_empty() != compatible).then(|| {
                let expected = if compatible {
                    "compatible"
                } else {
                    "incompatible"
                };
                format!(
                    "{name} at {}: expected {expected}, problems: {problems:?}",
                    level.name()
                )
            })
        })
        .collect()
}
