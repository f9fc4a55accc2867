//! Avro schemas: parsing (with named types from references), canonical forms, the Avro specification's
//! schema resolution rules as compatibility, and payload validation.
//!
//! The schema JSON is read into a small model of our own ([`Ty`], [`Named`]) rather than kept as
//! apache-avro's `Schema`: the model keeps names exactly as the specification resolves them (apache-avro
//! folds some logical types into variants that forget the underlying fixed's name), it lets the canonical
//! texts be written from the original JSON (apache-avro drops properties it does not know), and it lets the
//! payload check bound its recursion and allocation on hostile input. apache-avro still parses every schema
//! as a second opinion, so anything it rejects is rejected here too.

use std::any::Any;
use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::schema::{Dependency, InvalidSchema, ParsedSchema, SchemaType};

const PRIMITIVES: [&str; 8] = [
    "null", "boolean", "int", "long", "float", "double", "bytes", "string",
];

/// Nesting deeper than this in a payload is refused: recursive schemas would otherwise let a payload of a
/// few megabytes overflow the stack.
const MAX_PAYLOAD_DEPTH: usize = 256;

/// Array and map items decoded per payload at most: items of an empty type (null, an empty record) take no
/// bytes, so a block count alone could otherwise keep the check busy for ever.
const MAX_PAYLOAD_ITEMS: u64 = 1 << 24;

pub(crate) fn parse(
    text: &str,
    dependencies: &[Dependency],
) -> Result<Arc<dyn ParsedSchema>, InvalidSchema> {
    let invalid = |reason: String| InvalidSchema(reason);
    let mut builder = Builder::default();
    let mut dependency_texts = Vec::with_capacity(dependencies.len());
    for dependency in dependencies {
        if dependency.schema_type != SchemaType::Avro {
            return Err(invalid(format!(
                "the reference '{}' is a {} schema, not an Avro one",
                dependency.name,
                dependency.schema_type.name()
            )));
        }
        let json: Value = serde_json::from_str(&dependency.schema).map_err(|e| {
            invalid(format!(
                "the reference '{}' is not JSON: {e}",
                dependency.name
            ))
        })?;
        builder.origin_is_dependency = true;
        builder
            .ty(&json, "", "")
            .map_err(|e| invalid(format!("in the reference '{}': {e}", dependency.name)))?;
        dependency_texts.push(json);
    }
    let json: Value = serde_json::from_str(text).map_err(|e| invalid(format!("not JSON: {e}")))?;
    builder.origin_is_dependency = false;
    let root = builder.ty(&json, "", "").map_err(invalid)?;
    builder.check_defaults().map_err(invalid)?;
    second_opinion(&json, &dependency_texts).map_err(invalid)?;

    let canonical = Writer::new(&builder, Mode::Canonical).write(&json);
    let normalized = Writer::new(&builder, Mode::Normalized).write(&json);
    let resolved = Writer::new(&builder, Mode::Resolved).write(&json);
    Ok(Arc::new(AvroSchema {
        root,
        names: builder.names,
        canonical,
        normalized,
        resolved,
    }))
}

/// Parses the schema with apache-avro too. Dependencies and the schema become the fields of one wrapper
/// record, in order, because apache-avro resolves names only within one parse and `parse_str_with_list`
/// ignores the order dependencies come in.
fn second_opinion(json: &Value, dependencies: &[Value]) -> Result<(), String> {
    let fields: Vec<Value> = dependencies
        .iter()
        .chain(std::iter::once(json))
        .enumerate()
        .map(|(i, schema)| serde_json::json!({"name": format!("f{i}"), "type": schema}))
        .collect();
    let wrapper = serde_json::json!({
        "type": "record",
        "name": "nerve_registry_reference_wrapper",
        "fields": fields,
    });
    // Our own checks run first and reject the names apache-avro would panic on; this is a last guard
    // against a panic on outside data taking the registry down.
    match catch_unwind(AssertUnwindSafe(|| apache_avro::Schema::parse(&wrapper))) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the Avro parser failed on this schema".into()),
    }
}

/// A type as schema resolution sees it: logical types are their underlying types, named types are looked up
/// by full name.
#[derive(Debug, Clone)]
enum Ty {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Array(Box<Ty>),
    Map(Box<Ty>),
    Union(Vec<Ty>),
    Named(String),
}

#[derive(Debug, Clone)]
struct Named {
    full_name: String,
    /// Fully qualified.
    aliases: Vec<String>,
    kind: NamedKind,
}

#[derive(Debug, Clone)]
enum NamedKind {
    Record(Vec<Field>),
    Enum {
        symbols: Vec<String>,
        default: Option<String>,
    },
    Fixed(usize),
}

#[derive(Debug, Clone)]
struct Field {
    name: String,
    aliases: Vec<String>,
    ty: Ty,
    default: Option<Value>,
}

/// Where a dependency's named type is defined, so `format=resolved` can inline it.
#[derive(Debug, Clone)]
struct Definition {
    json: Value,
    namespace: String,
}

#[derive(Default)]
struct Builder {
    names: HashMap<String, Named>,
    dependency_definitions: HashMap<String, Definition>,
    origin_is_dependency: bool,
    /// Checked once every name is known: a default may hold a record that is defined later on.
    pending_defaults: Vec<(String, String, Ty, Value)>,
}

fn valid_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn valid_full_name(s: &str) -> bool {
    s.split('.').all(valid_identifier)
}

fn valid_namespace(s: &str) -> bool {
    s.is_empty() || valid_full_name(s)
}

/// The full name `name` stands for inside `namespace`, as the specification resolves it.
fn qualify(name: &str, namespace: &str) -> String {
    if name.contains('.') || namespace.is_empty() {
        name.to_owned()
    } else {
        format!("{namespace}.{name}")
    }
}

fn namespace_of(full_name: &str) -> &str {
    full_name.rsplit_once('.').map_or("", |(ns, _)| ns)
}

fn short_name(full_name: &str) -> &str {
    full_name
        .rsplit_once('.')
        .map_or(full_name, |(_, name)| name)
}

fn primitive(name: &str) -> Option<Ty> {
    Some(match name {
        "null" => Ty::Null,
        "boolean" => Ty::Boolean,
        "int" => Ty::Int,
        "long" => Ty::Long,
        "float" => Ty::Float,
        "double" => Ty::Double,
        "bytes" => Ty::Bytes,
        "string" => Ty::String,
        _ => return None,
    })
}

/// The full name and namespace a named type's definition gives it.
fn definition_name(
    object: &Map<String, Value>,
    enclosing: &str,
) -> Result<(String, String), String> {
    let name = match object.get("name") {
        Some(Value::String(name)) => name,
        Some(other) => return Err(format!("the name {other} is not a string")),
        None => return Err("a named type has no name".into()),
    };
    let full_name = if name.contains('.') {
        name.clone()
    } else {
        let namespace = match object.get("namespace") {
            Some(Value::String(ns)) => ns.as_str(),
            Some(Value::Null) | None => enclosing,
            Some(other) => return Err(format!("the namespace {other} is not a string")),
        };
        if !valid_namespace(namespace) {
            return Err(format!("invalid namespace '{namespace}'"));
        }
        qualify(name, namespace)
    };
    if !valid_full_name(&full_name) {
        return Err(format!("invalid name '{full_name}'"));
    }
    if PRIMITIVES.contains(&short_name(&full_name)) {
        return Err(format!(
            "a named type may not be called '{full_name}', a primitive type's name"
        ));
    }
    let namespace = namespace_of(&full_name).to_owned();
    Ok((full_name, namespace))
}

/// A named type's aliases, fully qualified (an alias without a dot is in the type's namespace).
fn type_aliases(object: &Map<String, Value>, namespace: &str) -> Result<Vec<String>, String> {
    string_list(object, "aliases")?
        .into_iter()
        .map(|alias| {
            let alias = qualify(&alias, namespace);
            if valid_full_name(&alias) {
                Ok(alias)
            } else {
                Err(format!("invalid alias '{alias}'"))
            }
        })
        .collect()
}

fn string_list(object: &Map<String, Value>, key: &str) -> Result<Vec<String>, String> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("'{key}' holds {other}, not a string")),
            })
            .collect(),
        Some(other) => Err(format!("'{key}' is {other}, not an array of strings")),
    }
}

impl Builder {
    /// Reads the schema `json` found at `path`, inside `namespace`.
    fn ty(&mut self, json: &Value, namespace: &str, path: &str) -> Result<Ty, String> {
        match json {
            Value::String(name) => self.reference(name, namespace, path),
            Value::Array(branches) => {
                let mut seen = HashSet::new();
                let mut types = Vec::with_capacity(branches.len());
                for (i, branch) in branches.iter().enumerate() {
                    let branch_path = format!("{path}/{i}");
                    let ty = self.ty(branch, namespace, &branch_path)?;
                    let key = match &ty {
                        Ty::Union(_) => {
                            return Err(format!(
                                "a union may not hold a union directly (at '{branch_path}')"
                            ))
                        }
                        Ty::Named(name) => name.clone(),
                        other => kind_name(other).to_owned(),
                    };
                    if !seen.insert(key.clone()) {
                        return Err(format!(
                            "the union at '{}' holds '{key}' twice",
                            display_path(path)
                        ));
                    }
                    types.push(ty);
                }
                Ok(Ty::Union(types))
            }
            Value::Object(object) => self.complex(object, namespace, path),
            other => Err(format!(
                "{other} at '{}' is not a schema (a type name, an object or a union array)",
                display_path(path)
            )),
        }
    }

    fn reference(&self, name: &str, namespace: &str, path: &str) -> Result<Ty, String> {
        if let Some(ty) = primitive(name) {
            return Ok(ty);
        }
        let full_name = qualify(name, namespace);
        if self.names.contains_key(&full_name) {
            Ok(Ty::Named(full_name))
        } else {
            Err(format!(
                "unknown type '{full_name}' at '{}' (not a primitive type, nor a named type defined before \
                 or in a reference)",
                display_path(path)
            ))
        }
    }

    fn complex(
        &mut self,
        object: &Map<String, Value>,
        namespace: &str,
        path: &str,
    ) -> Result<Ty, String> {
        let kind = match object.get("type") {
            Some(Value::String(kind)) => kind.as_str(),
            Some(other) => {
                return Err(format!(
                    "the type {other} at '{}' is not a string",
                    display_path(path)
                ))
            }
            None => return Err(format!("no type at '{}'", display_path(path))),
        };
        match kind {
            "record" | "error" | "enum" | "fixed" => self.named(kind, object, namespace, path),
            "array" => {
                let items = object
                    .get("items")
                    .ok_or_else(|| format!("the array at '{}' has no items", display_path(path)))?;
                Ok(Ty::Array(Box::new(self.ty(
                    items,
                    namespace,
                    &format!("{path}/items"),
                )?)))
            }
            "map" => {
                let values = object
                    .get("values")
                    .ok_or_else(|| format!("the map at '{}' has no values", display_path(path)))?;
                Ok(Ty::Map(Box::new(self.ty(
                    values,
                    namespace,
                    &format!("{path}/values"),
                )?)))
            }
            other => self.reference(other, namespace, path),
        }
    }

    fn named(
        &mut self,
        kind: &str,
        object: &Map<String, Value>,
        enclosing: &str,
        path: &str,
    ) -> Result<Ty, String> {
        let (full_name, namespace) = definition_name(object, enclosing)
            .map_err(|e| format!("{e} (at '{}')", display_path(path)))?;
        if self.names.contains_key(&full_name) {
            return Err(format!("the type '{full_name}' is defined twice"));
        }
        let aliases = type_aliases(object, &namespace)?;
        let placeholder = Named {
            full_name: full_name.clone(),
            aliases,
            kind: NamedKind::Fixed(0),
        };
        // A record's fields may refer to the record itself, so its name is known before they are read.
        self.names.insert(full_name.clone(), placeholder);
        if self.origin_is_dependency {
            self.dependency_definitions.insert(
                full_name.clone(),
                Definition {
                    json: Value::Object(object.clone()),
                    namespace: enclosing.to_owned(),
                },
            );
        }
        let named_kind = match kind {
            "enum" => self.enumeration(object, &full_name)?,
            "fixed" => match object.get("size") {
                Some(Value::Number(n)) => match n.as_u64().and_then(|n| usize::try_from(n).ok()) {
                    Some(size) => NamedKind::Fixed(size),
                    None => return Err(format!("the fixed '{full_name}' has size {n}")),
                },
                _ => return Err(format!("the fixed '{full_name}' has no integer size")),
            },
            _ => NamedKind::Record(self.fields(object, &full_name, &namespace, path)?),
        };
        if let Some(named) = self.names.get_mut(&full_name) {
            named.kind = named_kind;
        }
        Ok(Ty::Named(full_name))
    }

    fn enumeration(
        &mut self,
        object: &Map<String, Value>,
        full_name: &str,
    ) -> Result<NamedKind, String> {
        if !matches!(object.get("symbols"), Some(Value::Array(_))) {
            return Err(format!("the enum '{full_name}' has no symbols array"));
        }
        let symbols = string_list(object, "symbols")?;
        let mut seen = HashSet::new();
        for symbol in &symbols {
            if !valid_identifier(symbol) {
                return Err(format!(
                    "the enum '{full_name}' has an invalid symbol '{symbol}'"
                ));
            }
            if !seen.insert(symbol.as_str()) {
                return Err(format!(
                    "the enum '{full_name}' has the symbol '{symbol}' twice"
                ));
            }
        }
        let default = match object.get("default") {
            None | Some(Value::Null) => None,
            Some(Value::String(default)) if symbols.contains(default) => Some(default.clone()),
            Some(other) => {
                return Err(format!(
                "the enum '{full_name}' has the default {other}, which is not one of its symbols"
            ))
            }
        };
        Ok(NamedKind::Enum { symbols, default })
    }

    fn fields(
        &mut self,
        object: &Map<String, Value>,
        record: &str,
        namespace: &str,
        path: &str,
    ) -> Result<Vec<Field>, String> {
        let Some(Value::Array(items)) = object.get("fields") else {
            return Err(format!("the record '{record}' has no fields array"));
        };
        let mut fields: Vec<Field> = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let field_path = format!("{path}/fields/{i}");
            let Value::Object(field) = item else {
                return Err(format!(
                    "the field at '{field_path}' of record '{record}' is not an object"
                ));
            };
            let name = match field.get("name") {
                Some(Value::String(name)) if valid_identifier(name) => name.clone(),
                Some(other) => {
                    return Err(format!(
                    "the field at '{field_path}' of record '{record}' has an invalid name {other}"
                ))
                }
                None => {
                    return Err(format!(
                        "the field at '{field_path}' of record '{record}' has no name"
                    ))
                }
            };
            if fields.iter().any(|f| f.name == name) {
                return Err(format!(
                    "the record '{record}' has the field '{name}' twice"
                ));
            }
            let type_json = field
                .get("type")
                .ok_or_else(|| format!("the field '{name}' of record '{record}' has no type"))?;
            let ty = self.ty(type_json, namespace, &format!("{field_path}/type"))?;
            if let Some(order) = field.get("order") {
                if !matches!(order.as_str(), Some("ascending" | "descending" | "ignore")) {
                    return Err(format!(
                        "the field '{name}' of record '{record}' has the invalid order {order}"
                    ));
                }
            }
            let default = field.get("default").cloned();
            if let Some(default) = &default {
                self.pending_defaults.push((
                    format!("{record}.{name}"),
                    field_path.clone(),
                    ty.clone(),
                    default.clone(),
                ));
            }
            fields.push(Field {
                aliases: string_list(field, "aliases")?,
                name,
                ty,
                default,
            });
        }
        Ok(fields)
    }

    fn check_defaults(&self) -> Result<(), String> {
        for (field, path, ty, default) in &self.pending_defaults {
            if !default_matches(&self.names, ty, default) {
                return Err(format!(
                    "Invalid default for field '{field}' at '{path}': {default} is not a valid {}",
                    type_display(&self.names, ty)
                ));
            }
        }
        Ok(())
    }
}

/// Whether `value` is a valid JSON default for `ty`. A union's default may match any branch, as Avro 1.12
/// allows (earlier versions wanted the first).
fn default_matches(names: &HashMap<String, Named>, ty: &Ty, value: &Value) -> bool {
    match ty {
        Ty::Null => value.is_null(),
        Ty::Boolean => value.is_boolean(),
        Ty::Int => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
        Ty::Long => value.is_i64(),
        Ty::Float | Ty::Double => {
            value.is_number() || matches!(value.as_str(), Some("NaN" | "Infinity" | "-Infinity"))
        }
        Ty::Bytes | Ty::String => value.is_string(),
        Ty::Array(items) => value
            .as_array()
            .is_some_and(|values| values.iter().all(|v| default_matches(names, items, v))),
        Ty::Map(values) => value
            .as_object()
            .is_some_and(|entries| entries.values().all(|v| default_matches(names, values, v))),
        Ty::Union(branches) => branches.iter().any(|b| default_matches(names, b, value)),
        Ty::Named(name) => match names.get(name).map(|n| &n.kind) {
            Some(NamedKind::Record(fields)) => value.as_object().is_some_and(|object| {
                fields.iter().all(|f| match object.get(&f.name) {
                    Some(v) => default_matches(names, &f.ty, v),
                    None => f.default.is_some(),
                })
            }),
            Some(NamedKind::Enum { symbols, .. }) => value
                .as_str()
                .is_some_and(|s| symbols.iter().any(|x| x == s)),
            Some(NamedKind::Fixed(_)) => value.is_string(),
            None => false,
        },
    }
}

fn kind_name(ty: &Ty) -> &'static str {
    match ty {
        Ty::Null => "null",
        Ty::Boolean => "boolean",
        Ty::Int => "int",
        Ty::Long => "long",
        Ty::Float => "float",
        Ty::Double => "double",
        Ty::Bytes => "bytes",
        Ty::String => "string",
        Ty::Array(_) => "array",
        Ty::Map(_) => "map",
        Ty::Union(_) => "union",
        Ty::Named(_) => "named",
    }
}

fn type_display(names: &HashMap<String, Named>, ty: &Ty) -> String {
    match ty {
        Ty::Named(name) => match names.get(name).map(|n| &n.kind) {
            Some(NamedKind::Record(_)) => format!("record '{name}'"),
            Some(NamedKind::Enum { .. }) => format!("enum '{name}'"),
            Some(NamedKind::Fixed(size)) => format!("fixed '{name}' (size {size})"),
            None => format!("'{name}'"),
        },
        other => kind_name(other).to_owned(),
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "/"
    } else {
        path
    }
}

#[derive(Debug)]
struct AvroSchema {
    root: Ty,
    names: HashMap<String, Named>,
    canonical: String,
    normalized: String,
    resolved: String,
}

impl ParsedSchema for AvroSchema {
    fn schema_type(&self) -> SchemaType {
        SchemaType::Avro
    }

    fn canonical(&self) -> String {
        self.canonical.clone()
    }

    fn normalized(&self) -> String {
        self.normalized.clone()
    }

    fn read_problems(&self, writer: &dyn ParsedSchema) -> Vec<String> {
        let Some(writer) = writer.as_any().downcast_ref::<AvroSchema>() else {
            return vec![format!(
                "SCHEMA_TYPE_MISMATCH: the reader's schema is AVRO but the writer's schema is {}",
                writer.schema_type().name()
            )];
        };
        let mut checker = Checker {
            reader: self,
            writer,
            in_progress: HashSet::new(),
            done: HashMap::new(),
            depth: 0,
        };
        let mut problems = Vec::new();
        checker.check(&self.root, &writer.root, "", &mut problems);
        let mut seen = HashSet::new();
        problems.retain(|p| seen.insert(p.clone()));
        problems
    }

    fn validate_payload(&self, payload: &[u8]) -> Result<(), String> {
        let mut decoder = Decoder {
            names: &self.names,
            data: payload,
            pos: 0,
            depth: 0,
            items: 0,
        };
        decoder.datum(&self.root, "")?;
        if decoder.pos < payload.len() {
            return Err(format!(
                "{} bytes are left over after the Avro datum, which ends at byte {}",
                payload.len() - decoder.pos,
                decoder.pos
            ));
        }
        Ok(())
    }

    fn formatted(&self, format: &str) -> Option<String> {
        match format {
            "resolved" => Some(self.resolved.clone()),
            "" | "default" => Some(self.canonical.clone()),
            _ => None,
        }
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

// ---------------------------------------------------------------------------------------------------------
// Schema resolution: can a reader with one schema read data written with another?

struct Checker<'a> {
    reader: &'a AvroSchema,
    writer: &'a AvroSchema,
    /// Named pairs being checked further up: a recursive type is assumed readable where it recurs.
    in_progress: HashSet<(String, String)>,
    /// Named pairs already checked, with their problems, so shared types are not checked again and again
    /// (which could take exponential time).
    done: HashMap<(String, String), Vec<String>>,
    depth: usize,
}

/// Checks nest deeper than this are given up as incompatible rather than risk the stack: only a schema
/// built to attack the registry gets there.
const MAX_CHECK_DEPTH: usize = 512;

fn promotes(reader: &Ty, writer: &Ty) -> bool {
    matches!(
        (reader, writer),
        (Ty::Null, Ty::Null)
            | (Ty::Boolean, Ty::Boolean)
            | (Ty::Int, Ty::Int)
            | (Ty::Long, Ty::Int | Ty::Long)
            | (Ty::Float, Ty::Int | Ty::Long | Ty::Float)
            | (Ty::Double, Ty::Int | Ty::Long | Ty::Float | Ty::Double)
            | (Ty::Bytes | Ty::String, Ty::Bytes | Ty::String)
    )
}

impl Checker<'_> {
    fn check(&mut self, reader: &Ty, writer: &Ty, path: &str, out: &mut Vec<String>) {
        if self.depth >= MAX_CHECK_DEPTH {
            out.push(format!(
                "TOO_DEEP: The schemas nest deeper than {MAX_CHECK_DEPTH} levels at path '{}'",
                display_path(path)
            ));
            return;
        }
        self.depth += 1;
        self.check_inner(reader, writer, path, out);
        self.depth -= 1;
    }

    fn check_inner(&mut self, reader: &Ty, writer: &Ty, path: &str, out: &mut Vec<String>) {
        match (reader, writer) {
            (_, Ty::Union(branches)) => {
                for (i, branch) in branches.iter().enumerate() {
                    let branch_path = format!("{path}/{i}");
                    if let Ty::Union(_) = reader {
                        if !self.readable(reader, branch, &branch_path) {
                            out.push(format!(
                                "MISSING_UNION_BRANCH: The reader's schema has no branch of the union at \
                                 path '{}' that reads the writer's branch {i} ({})",
                                display_path(path),
                                type_display(&self.writer.names, branch)
                            ));
                        }
                    } else {
                        self.check(reader, branch, &branch_path, out);
                    }
                }
            }
            (Ty::Union(branches), _) => {
                if !branches
                    .iter()
                    .enumerate()
                    .any(|(i, branch)| self.readable(branch, writer, &format!("{path}/{i}")))
                {
                    out.push(format!(
                        "MISSING_UNION_BRANCH: The union at path '{}' in the reader's schema has no branch \
                         that reads the writer's type {}",
                        display_path(path),
                        type_display(&self.writer.names, writer)
                    ));
                }
            }
            (Ty::Array(r), Ty::Array(w)) => self.check(r, w, &format!("{path}/items"), out),
            (Ty::Map(r), Ty::Map(w)) => self.check(r, w, &format!("{path}/values"), out),
            (Ty::Named(r), Ty::Named(w)) => self.named(r, w, path, out),
            _ if promotes(reader, writer) => {}
            _ => out.push(self.type_mismatch(reader, writer, path)),
        }
    }

    fn type_mismatch(&self, reader: &Ty, writer: &Ty, path: &str) -> String {
        format!(
            "TYPE_MISMATCH: The type at path '{}' in the reader's schema does not match the writer's \
             schema: reader type {} cannot read writer type {}",
            display_path(path),
            type_display(&self.reader.names, reader),
            type_display(&self.writer.names, writer)
        )
    }

    /// Whether `reader` reads `writer` with no problem, without reporting any.
    fn readable(&mut self, reader: &Ty, writer: &Ty, path: &str) -> bool {
        let mut scratch = Vec::new();
        self.check(reader, writer, path, &mut scratch);
        scratch.is_empty()
    }

    fn named(&mut self, reader_name: &str, writer_name: &str, path: &str, out: &mut Vec<String>) {
        let key = (reader_name.to_owned(), writer_name.to_owned());
        if self.in_progress.contains(&key) {
            return;
        }
        if let Some(problems) = self.done.get(&key) {
            out.extend(problems.iter().cloned());
            return;
        }
        let (Some(reader), Some(writer)) = (
            self.reader.names.get(reader_name),
            self.writer.names.get(writer_name),
        ) else {
            out.push(format!(
                "TYPE_MISMATCH: The type at path '{}' refers to an unknown name",
                display_path(path)
            ));
            return;
        };
        self.in_progress.insert(key.clone());
        let mut problems = Vec::new();
        // The specification matches names unqualified (as Java's checker does), or a reader alias against
        // the writer's full name.
        let names_match = short_name(&reader.full_name) == short_name(&writer.full_name)
            || reader.aliases.iter().any(|a| a == &writer.full_name);
        match (&reader.kind, &writer.kind) {
            (NamedKind::Record(_), NamedKind::Record(_))
            | (NamedKind::Enum { .. }, NamedKind::Enum { .. })
            | (NamedKind::Fixed(_), NamedKind::Fixed(_))
                if !names_match =>
            {
                problems.push(format!(
                    "NAME_MISMATCH: The name of the type at path '{}' in the reader's schema ('{}') does not \
                     match the writer's '{}' and none of its aliases does",
                    display_path(path),
                    reader.full_name,
                    writer.full_name
                ));
            }
            (NamedKind::Record(reader_fields), NamedKind::Record(writer_fields)) => {
                self.record(reader_fields, writer_fields, path, &mut problems);
            }
            (
                NamedKind::Enum {
                    symbols: reader_symbols,
                    default,
                },
                NamedKind::Enum {
                    symbols: writer_symbols,
                    ..
                },
            ) => {
                let missing: Vec<&str> = writer_symbols
                    .iter()
                    .filter(|s| !reader_symbols.contains(s))
                    .map(String::as_str)
                    .collect();
                if !missing.is_empty() && default.is_none() {
                    problems.push(format!(
                        "MISSING_ENUM_SYMBOLS: The enum '{}' at path '{}/symbols' in the reader's schema is \
                         missing the writer's symbols [{}] and has no default",
                        reader.full_name,
                        path,
                        missing.join(", ")
                    ));
                }
            }
            (NamedKind::Fixed(reader_size), NamedKind::Fixed(writer_size)) => {
                if reader_size != writer_size {
                    problems.push(format!(
                        "FIXED_SIZE_MISMATCH: The fixed '{}' at path '{}/size' has size {reader_size} in the \
                         reader's schema but {writer_size} in the writer's",
                        reader.full_name, path
                    ));
                }
            }
            _ => problems.push(self.type_mismatch(
                &Ty::Named(reader_name.to_owned()),
                &Ty::Named(writer_name.to_owned()),
                path,
            )),
        }
        self.in_progress.remove(&key);
        out.extend(problems.iter().cloned());
        self.done.insert(key, problems);
    }

    fn record(
        &mut self,
        reader_fields: &[Field],
        writer_fields: &[Field],
        path: &str,
        out: &mut Vec<String>,
    ) {
        for (i, field) in reader_fields.iter().enumerate() {
            let field_path = format!("{path}/fields/{i}");
            let writer_field = writer_fields
                .iter()
                .find(|w| w.name == field.name)
                .or_else(|| {
                    writer_fields
                        .iter()
                        .find(|w| field.aliases.iter().any(|a| a == &w.name))
                });
            match writer_field {
                Some(writer_field) => {
                    self.check(
                        &field.ty,
                        &writer_field.ty,
                        &format!("{field_path}/type"),
                        out,
                    );
                }
                None if field.default.is_none() => out.push(format!(
                    "READER_FIELD_MISSING_DEFAULT_VALUE: The field '{}' at path '{field_path}' in the \
                     reader's schema has no default value and is missing in the writer's schema",
                    field.name
                )),
                None => {}
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Payload validation: one datum in Avro's binary encoding.

struct Decoder<'a> {
    names: &'a HashMap<String, Named>,
    data: &'a [u8],
    pos: usize,
    depth: usize,
    items: u64,
}

impl Decoder<'_> {
    fn datum(&mut self, ty: &Ty, path: &str) -> Result<(), String> {
        self.depth += 1;
        if self.depth > MAX_PAYLOAD_DEPTH {
            return Err(format!(
                "the datum nests deeper than {MAX_PAYLOAD_DEPTH} levels at '{}'",
                display_path(path)
            ));
        }
        let result = self.datum_inner(ty, path);
        self.depth -= 1;
        result
    }

    fn datum_inner(&mut self, ty: &Ty, path: &str) -> Result<(), String> {
        match ty {
            Ty::Null => Ok(()),
            Ty::Boolean => {
                let at = self.pos;
                match self.take(1, "a boolean", path)? {
                    [0 | 1] => Ok(()),
                    other => Err(format!(
                        "invalid boolean byte {other:?} at byte {at} ('{}')",
                        display_path(path)
                    )),
                }
            }
            Ty::Int => {
                let at = self.pos;
                let n = self.long(path)?;
                if i32::try_from(n).is_err() {
                    return Err(format!(
                        "the int at byte {at} ('{}') is out of range: {n}",
                        display_path(path)
                    ));
                }
                Ok(())
            }
            Ty::Long => self.long(path).map(drop),
            Ty::Float => self.take(4, "a float", path).map(drop),
            Ty::Double => self.take(8, "a double", path).map(drop),
            Ty::Bytes => self.length_prefixed("bytes", path).map(drop),
            Ty::String => {
                let at = self.pos;
                let bytes = self.length_prefixed("a string", path)?;
                std::str::from_utf8(bytes).map(drop).map_err(|e| {
                    format!(
                        "the string at byte {at} ('{}') is not UTF-8: {e}",
                        display_path(path)
                    )
                })
            }
            Ty::Array(items) => self.blocks(path, |d, i| d.datum(items, &format!("{path}/{i}"))),
            Ty::Map(values) => self.blocks(path, |d, i| {
                let key_path = format!("{path}/{i}");
                d.datum(&Ty::String, &key_path)?;
                d.datum(values, &key_path)
            }),
            Ty::Union(branches) => {
                let at = self.pos;
                let index = self.long(path)?;
                match usize::try_from(index).ok().and_then(|i| branches.get(i)) {
                    Some(branch) => self.datum(branch, path),
                    None => Err(format!(
                        "invalid union index {index} at byte {at} ('{}'): the union has {} branches",
                        display_path(path),
                        branches.len()
                    )),
                }
            }
            Ty::Named(name) => {
                let names = self.names;
                match names.get(name).map(|n| &n.kind) {
                    Some(NamedKind::Record(fields)) => {
                        for field in fields {
                            self.datum(&field.ty, &format!("{path}/{}", field.name))?;
                        }
                        Ok(())
                    }
                    Some(NamedKind::Enum { symbols, .. }) => {
                        let at = self.pos;
                        let index = self.long(path)?;
                        if usize::try_from(index).is_ok_and(|i| i < symbols.len()) {
                            Ok(())
                        } else {
                            Err(format!(
                                "invalid index {index} of enum '{name}' at byte {at} ('{}'): it has {} symbols",
                                display_path(path),
                                symbols.len()
                            ))
                        }
                    }
                    Some(NamedKind::Fixed(size)) => self.take(*size, name, path).map(drop),
                    None => Err(format!("unknown type '{name}'")),
                }
            }
        }
    }

    fn take(&mut self, n: usize, what: &str, path: &str) -> Result<&[u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "the data ends at byte {} in the middle of {what} at '{}' ({n} bytes needed)",
                    self.data.len(),
                    display_path(path)
                )
            })?;
        let bytes = &self.data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    /// A zig-zag varint, at most 10 bytes as the encoding allows for 64 bits.
    fn long(&mut self, path: &str) -> Result<i64, String> {
        let start = self.pos;
        let mut value: u64 = 0;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.data.get(self.pos) else {
                return Err(format!(
                    "the data ends at byte {} in the middle of a number at '{}'",
                    self.data.len(),
                    display_path(path)
                ));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte & 0x80 == 0 {
                // Zig-zag: the lowest bit is the sign.
                return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
            }
        }
        Err(format!(
            "invalid variable-length number at byte {start} ('{}'): longer than 10 bytes",
            display_path(path)
        ))
    }

    fn length_prefixed(&mut self, what: &str, path: &str) -> Result<&[u8], String> {
        let at = self.pos;
        let len = self.long(path)?;
        let len = usize::try_from(len).map_err(|_| {
            format!(
                "negative length {len} of {what} at byte {at} ('{}')",
                display_path(path)
            )
        })?;
        self.take(len, what, path)
    }

    /// Array and map blocks: a count, then that many items; a negative count is followed by the block's
    /// size in bytes; a zero count ends the blocks.
    fn blocks(
        &mut self,
        path: &str,
        mut item: impl FnMut(&mut Self, u64) -> Result<(), String>,
    ) -> Result<(), String> {
        let mut index = 0u64;
        loop {
            let at = self.pos;
            let count = self.long(path)?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                let size = self.long(path)?;
                if size < 0 {
                    return Err(format!(
                        "negative block size {size} at byte {at} ('{}')",
                        display_path(path)
                    ));
                }
            }
            let count = count.unsigned_abs();
            self.items = self.items.saturating_add(count);
            if self.items > MAX_PAYLOAD_ITEMS {
                return Err(format!(
                    "more than {MAX_PAYLOAD_ITEMS} array or map items (block at byte {at}, '{}')",
                    display_path(path)
                ));
            }
            for _ in 0..count {
                item(self, index)?;
                index += 1;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Canonical texts, written from the schema JSON (validated by the builder) in a fixed attribute order.

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// As Java's `Schema.toString()`: names relative to the enclosing namespace, every attribute kept.
    Canonical,
    /// `Canonical` with every name (definitions, references, aliases) fully qualified and no
    /// `namespace` attributes, so the many ways to spell a name become one.
    Normalized,
    /// `Canonical` with the named types of references defined where first used, as `format=resolved`.
    Resolved,
}

struct Writer<'a> {
    builder: &'a Builder,
    mode: Mode,
    out: String,
    defined: HashSet<String>,
}

const RECORD_KEYS: &[&str] = &["type", "name", "namespace", "doc", "fields", "aliases"];
const ENUM_KEYS: &[&str] = &[
    "type",
    "name",
    "namespace",
    "doc",
    "symbols",
    "aliases",
    "default",
];
const FIXED_KEYS: &[&str] = &["type", "name", "namespace", "doc", "size", "aliases"];
const FIELD_KEYS: &[&str] = &["name", "type", "doc", "default", "order", "aliases"];

/// Writes any JSON value compactly with object keys sorted, so the order they came in does not matter.
fn write_sorted(value: &Value, out: &mut String) {
    match value {
        Value::Object(object) => {
            let mut keys: Vec<&String> = object.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(key, out);
                out.push(':');
                if let Some(v) = object.get(key) {
                    write_sorted(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_sorted(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push_str(&Value::from(s).to_string());
}

impl<'a> Writer<'a> {
    fn new(builder: &'a Builder, mode: Mode) -> Self {
        Writer {
            builder,
            mode,
            out: String::new(),
            defined: HashSet::new(),
        }
    }

    fn write(mut self, json: &Value) -> String {
        self.schema(json, "");
        self.out
    }

    fn key(&mut self, first: &mut bool, key: &str) {
        if !*first {
            self.out.push(',');
        }
        *first = false;
        write_str(key, &mut self.out);
        self.out.push(':');
    }

    /// The attributes not in `known`, sorted by name.
    fn properties(&mut self, object: &Map<String, Value>, known: &[&str], first: &mut bool) {
        let mut keys: Vec<&String> = object
            .keys()
            .filter(|k| !known.contains(&k.as_str()))
            .collect();
        keys.sort();
        for key in keys {
            if let Some(value) = object.get(key) {
                self.key(first, key);
                write_sorted(value, &mut self.out);
            }
        }
    }

    fn schema(&mut self, json: &Value, namespace: &str) {
        match json {
            Value::String(name) => self.reference(name, namespace),
            Value::Array(branches) => {
                self.out.push('[');
                for (i, branch) in branches.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.schema(branch, namespace);
                }
                self.out.push(']');
            }
            Value::Object(object) => {
                let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
                match kind {
                    "record" | "error" | "enum" | "fixed" => {
                        self.named(kind, object, namespace, namespace)
                    }
                    "array" | "map" => {
                        let child = if kind == "array" { "items" } else { "values" };
                        let mut first = true;
                        self.out.push('{');
                        self.key(&mut first, "type");
                        write_str(kind, &mut self.out);
                        self.key(&mut first, child);
                        if let Some(items) = object.get(child) {
                            self.schema(items, namespace);
                        }
                        self.properties(object, &["type", child], &mut first);
                        self.out.push('}');
                    }
                    _ if PRIMITIVES.contains(&kind) && object.len() > 1 => {
                        let mut first = true;
                        self.out.push('{');
                        self.key(&mut first, "type");
                        write_str(kind, &mut self.out);
                        self.properties(object, &["type"], &mut first);
                        self.out.push('}');
                    }
                    name => self.reference(name, namespace),
                }
            }
            other => write_sorted(other, &mut self.out),
        }
    }

    fn reference(&mut self, name: &str, namespace: &str) {
        if PRIMITIVES.contains(&name) {
            write_str(name, &mut self.out);
            return;
        }
        let full_name = qualify(name, namespace);
        if self.mode == Mode::Resolved && !self.defined.contains(&full_name) {
            if let Some(definition) = self.builder.dependency_definitions.get(&full_name) {
                let definition = definition.clone();
                if let Value::Object(object) = &definition.json {
                    let kind = object.get("type").and_then(Value::as_str).unwrap_or("");
                    self.named(kind, object, &definition.namespace, namespace);
                    return;
                }
            }
        }
        let written = self.relative(&full_name, namespace);
        write_str(&written, &mut self.out);
    }

    /// How a full name is written inside `namespace`: as Java writes it, short when the namespaces match.
    fn relative(&self, full_name: &str, namespace: &str) -> String {
        if self.mode != Mode::Normalized && namespace_of(full_name) == namespace {
            short_name(full_name).to_owned()
        } else {
            full_name.to_owned()
        }
    }

    /// Writes a named type's definition found inside `enclosing` where the namespace around it is
    /// `written_in` (they differ when a referenced type is inlined).
    fn named(
        &mut self,
        kind: &str,
        object: &Map<String, Value>,
        enclosing: &str,
        written_in: &str,
    ) {
        let Ok((full_name, namespace)) = definition_name(object, enclosing) else {
            return;
        };
        self.defined.insert(full_name.clone());
        let mut first = true;
        self.out.push('{');
        self.key(&mut first, "type");
        write_str(kind, &mut self.out);
        self.key(&mut first, "name");
        if self.mode == Mode::Normalized {
            write_str(&full_name, &mut self.out);
        } else {
            write_str(short_name(&full_name), &mut self.out);
            if namespace != written_in {
                self.key(&mut first, "namespace");
                write_str(&namespace, &mut self.out);
            }
        }
        if let Some(Value::String(doc)) = object.get("doc") {
            self.key(&mut first, "doc");
            write_str(doc, &mut self.out);
        }
        let known = match kind {
            "enum" => {
                self.key(&mut first, "symbols");
                write_sorted(object.get("symbols").unwrap_or(&Value::Null), &mut self.out);
                if let Some(Value::String(default)) = object.get("default") {
                    self.key(&mut first, "default");
                    write_str(default, &mut self.out);
                }
                ENUM_KEYS
            }
            "fixed" => {
                self.key(&mut first, "size");
                write_sorted(object.get("size").unwrap_or(&Value::Null), &mut self.out);
                FIXED_KEYS
            }
            _ => {
                self.key(&mut first, "fields");
                self.out.push('[');
                if let Some(Value::Array(fields)) = object.get("fields") {
                    for (i, field) in fields.iter().enumerate() {
                        if i > 0 {
                            self.out.push(',');
                        }
                        if let Value::Object(field) = field {
                            self.field(field, &namespace);
                        }
                    }
                }
                self.out.push(']');
                RECORD_KEYS
            }
        };
        self.properties(object, known, &mut first);
        if let Some(named) = self.builder.names.get(&full_name) {
            if !named.aliases.is_empty() {
                let aliases: Vec<Value> = named
                    .aliases
                    .iter()
                    .map(|a| Value::from(self.relative(a, &namespace)))
                    .collect();
                self.key(&mut first, "aliases");
                write_sorted(&Value::Array(aliases), &mut self.out);
            }
        }
        self.out.push('}');
    }

    fn field(&mut self, field: &Map<String, Value>, namespace: &str) {
        let mut first = true;
        self.out.push('{');
        self.key(&mut first, "name");
        write_sorted(field.get("name").unwrap_or(&Value::Null), &mut self.out);
        self.key(&mut first, "type");
        if let Some(ty) = field.get("type") {
            self.schema(ty, namespace);
        }
        if let Some(Value::String(doc)) = field.get("doc") {
            self.key(&mut first, "doc");
            write_str(doc, &mut self.out);
        }
        if let Some(default) = field.get("default") {
            self.key(&mut first, "default");
            write_sorted(default, &mut self.out);
        }
        if let Some(order) = field.get("order").and_then(Value::as_str) {
            if order != "ascending" {
                self.key(&mut first, "order");
                write_str(order, &mut self.out);
            }
        }
        self.properties(field, FIELD_KEYS, &mut first);
        if let Some(aliases) = field.get("aliases").filter(|a| !a.is_null()) {
            self.key(&mut first, "aliases");
            write_sorted(aliases, &mut self.out);
        }
        self.out.push('}');
    }
}
