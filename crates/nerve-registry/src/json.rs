//! JSON Schema (drafts 4, 6, 7, 2019-09 and 2020-12; draft 7 when `$schema` is absent, as Confluent
//! assumes): parsing (with `$ref`s to references), canonical forms, Confluent's JSON Schema compatibility
//! rules (see [`diff`]), and payload validation.

mod diff;

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use jsonschema::{Draft, Registry, Resource, Validator};
use serde_json::Value;

use crate::schema::{Dependency, InvalidSchema, ParsedSchema, SchemaType};

/// How many validation errors a rejected payload reports: enough to fix a document, not so many that a
/// huge bad payload makes a huge error.
const MAX_REPORTED_ERRORS: usize = 5;

pub(crate) fn parse(
    text: &str,
    dependencies: &[Dependency],
) -> Result<Arc<dyn ParsedSchema>, InvalidSchema> {
    Ok(Arc::new(JsonSchema::parse(text, dependencies)?))
}

/// A parsed, compiled JSON Schema with the referenced schemas it was given.
pub(crate) struct JsonSchema {
    root: Value,
    draft: Draft,
    /// Referenced schemas by reference name, so that the compatibility check can follow `$ref`s into
    /// them as the validator does.
    dependencies: BTreeMap<String, Value>,
    canonical: String,
    normalized: String,
    validator: Validator,
}

impl fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonSchema")
            .field("schema", &self.canonical)
            .field("draft", &self.draft)
            .field(
                "dependencies",
                &self.dependencies.keys().collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl JsonSchema {
    fn parse(text: &str, dependencies: &[Dependency]) -> Result<JsonSchema, InvalidSchema> {
        let root = parse_document(text, "schema")?;
        let draft = draft_of(&root)?;

        let mut documents = BTreeMap::new();
        for dependency in dependencies {
            let what = format!("referenced schema '{}'", dependency.name);
            let value = parse_document(&dependency.schema, &what)?;
            documents.insert(dependency.name.clone(), value);
        }

        let mut builder = Registry::new();
        for (name, value) in &documents {
            for uri in registration_uris(name, &root) {
                builder = builder
                    .add(&uri, Resource::from_contents(value.clone()))
                    .map_err(|e| InvalidSchema(format!("invalid reference name '{name}': {e}")))?;
            }
        }
        let registry = builder
            .prepare()
            .map_err(|e| InvalidSchema(format!("invalid referenced schemas: {e}")))?;
        // Offline: a `$ref` to anything not given as a reference must fail here rather than be fetched
        // from the network or the file system.
        let validator = jsonschema::options()
            .with_draft(draft)
            .offline()
            .with_registry(&registry)
            .build(&root)
            .map_err(|e| InvalidSchema(format!("invalid JSON schema: {e}")))?;

        let canonical = root.to_string();
        let normalized = normalize(&root, 0).to_string();
        Ok(JsonSchema {
            root,
            draft,
            dependencies: documents,
            canonical,
            normalized,
            validator,
        })
    }
}

/// Parses one schema document: JSON, and an object or a boolean as every draft from 6 on allows (we
/// accept booleans for older drafts too; their meta-schema check rejects them where it must).
fn parse_document(text: &str, what: &str) -> Result<Value, InvalidSchema> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| InvalidSchema(format!("invalid JSON in {what}: {e}")))?;
    match value {
        Value::Object(_) | Value::Bool(_) => Ok(value),
        _ => Err(InvalidSchema(format!(
            "invalid JSON schema in {what}: a schema is an object or a boolean"
        ))),
    }
}

/// The draft the schema's `$schema` names; Confluent's default, draft 7, without one. An unknown
/// meta-schema is refused: it could only be fetched over the network.
fn draft_of(root: &Value) -> Result<Draft, InvalidSchema> {
    let Some(declared) = root.get("$schema") else {
        return Ok(Draft::Draft7);
    };
    let Some(uri) = declared.as_str() else {
        return Err(InvalidSchema(
            "invalid JSON schema: $schema must be a string".into(),
        ));
    };
    let trimmed = uri.trim_end_matches('#');
    let without_scheme = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"))
        .unwrap_or(trimmed);
    match without_scheme {
        "json-schema.org/draft-04/schema" => Ok(Draft::Draft4),
        "json-schema.org/draft-06/schema" => Ok(Draft::Draft6),
        "json-schema.org/draft-07/schema" => Ok(Draft::Draft7),
        "json-schema.org/draft/2019-09/schema" => Ok(Draft::Draft201909),
        "json-schema.org/draft/2020-12/schema" => Ok(Draft::Draft202012),
        _ => Err(InvalidSchema(format!(
            "invalid JSON schema: unsupported $schema '{uri}'"
        ))),
    }
}

/// The URIs a reference is registered under: its name as given (a relative name then resolves against
/// the default base, as a `$ref` in a schema without `$id` does), and, when the main schema has an
/// absolute `$id`, the name resolved against it, since a relative `$ref` there resolves against that id.
fn registration_uris(name: &str, root: &Value) -> Vec<String> {
    let mut uris = vec![name.to_owned()];
    let base = root.get("$id").or_else(|| root.get("id"));
    if let Some(base) = base.and_then(Value::as_str) {
        if let Ok(base) = jsonschema::uri::from_str(base) {
            if let Ok(resolved) = jsonschema::uri::resolve_against(&base.borrow(), name) {
                let resolved = resolved.as_str().to_owned();
                if resolved != name {
                    uris.push(resolved);
                }
            }
        }
    }
    uris
}

/// Deeper than this, `normalize` copies a subtree as it is. serde_json refuses documents nested deeper
/// than 128 anyway; this keeps the recursion bounded whatever the parser allows.
const MAX_NORMALIZE_DEPTH: usize = 256;

/// Spellings that mean the same, made one, so that `normalize=true` finds an equivalent registered
/// schema:
/// - a `type` array of one type is that type; a longer one is sorted and deduplicated (`type` is a set);
/// - `required` is sorted and deduplicated (a set as well);
/// - `enum` is left as it is: its order is visible to code generators.
///
/// Keys are already sorted: serde_json's map is ordered by key here.
fn normalize(value: &Value, depth: usize) -> Value {
    if depth > MAX_NORMALIZE_DEPTH {
        return value.clone();
    }
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::new();
            for (key, child) in map {
                let normalized = match (key.as_str(), child) {
                    ("type", Value::Array(types)) => normalize_type_array(types),
                    ("required", Value::Array(names)) => sorted_set(names),
                    // Data, not schemas: normalizing inside them would change their meaning.
                    ("enum" | "const" | "default" | "examples", _) => child.clone(),
                    _ => normalize(child, depth + 1),
                };
                out.insert(key.clone(), normalized);
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            Value::Array(items.iter().map(|v| normalize(v, depth + 1)).collect())
        }
        _ => value.clone(),
    }
}

fn normalize_type_array(types: &[Value]) -> Value {
    match sorted_set(types) {
        Value::Array(mut set) if set.len() == 1 => set.pop().unwrap_or(Value::Null),
        other => other,
    }
}

/// Sorts and deduplicates an array of strings; any other array is kept as it is.
fn sorted_set(items: &[Value]) -> Value {
    let mut names: Vec<&str> = Vec::with_capacity(items.len());
    for item in items {
        match item.as_str() {
            Some(name) => names.push(name),
            None => return Value::Array(items.to_vec()),
        }
    }
    names.sort_unstable();
    names.dedup();
    Value::Array(
        names
            .into_iter()
            .map(|n| Value::String(n.to_owned()))
            .collect(),
    )
}

impl ParsedSchema for JsonSchema {
    fn schema_type(&self) -> SchemaType {
        SchemaType::Json
    }

    fn canonical(&self) -> String {
        self.canonical.clone()
    }

    fn normalized(&self) -> String {
        self.normalized.clone()
    }

    fn read_problems(&self, writer: &dyn ParsedSchema) -> Vec<String> {
        match writer.as_any().downcast_ref::<JsonSchema>() {
            Some(writer) => diff::incompatibilities(writer, self),
            None => vec![format!(
                "TYPE_CHANGED: #/ the writer schema is {}, not JSON",
                writer.schema_type().name()
            )],
        }
    }

    fn validate_payload(&self, payload: &[u8]) -> Result<(), String> {
        let text =
            std::str::from_utf8(payload).map_err(|e| format!("payload is not UTF-8: {e}"))?;
        let instance: Value =
            serde_json::from_str(text).map_err(|e| format!("payload is not JSON: {e}"))?;
        let mut errors = self.validator.iter_errors(&instance);
        let Some(first) = errors.next() else {
            return Ok(());
        };
        let describe = |e: jsonschema::ValidationError<'_>| {
            let path = e.instance_path().as_str().to_owned();
            let path = if path.is_empty() {
                "/".to_owned()
            } else {
                path
            };
            // Masked: the payload's values stay out of the message (they can be large, or private).
            format!("at {path}: {}", e.masked())
        };
        let mut messages = vec![describe(first)];
        messages.extend(errors.by_ref().take(MAX_REPORTED_ERRORS - 1).map(describe));
        let mut message = format!(
            "payload does not match the JSON schema: {}",
            messages.join("; ")
        );
        if errors.next().is_some() {
            message.push_str("; and more");
        }
        Err(message)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
