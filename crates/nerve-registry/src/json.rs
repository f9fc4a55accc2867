//! JSON Schema (drafts 7 and 2020-12): parsing (with `$ref`s to references), canonical forms, Confluent's JSON
//! Schema compatibility rules, and payload validation.

use std::sync::Arc;

use crate::schema::{Dependency, InvalidSchema, ParsedSchema};

pub(crate) fn parse(
    text: &str,
    dependencies: &[Dependency],
) -> Result<Arc<dyn ParsedSchema>, InvalidSchema> {
    let _ = (text, dependencies);
    Err(InvalidSchema("JSON schemas are not parsed yet".into()))
}
