//! Confluent's JSON Schema compatibility rules: the writer schema (Confluent's "original") is compared
//! with the reader schema (the "update") keyword by keyword, each difference gets one of Confluent's
//! difference types, and the types Confluent deems incompatible are the problems.
//!
//! Like Confluent (whose loader turns a schema into typed nodes first), a schema is seen as one
//! [`Shape`]: empty, false, one typed schema (object, array, string, number, boolean, null), an enum, a
//! const, a combination (`allOf`/`anyOf`/`oneOf`, also made up for a `type` array or for a schema that
//! has several of these at once), or a `not`. `$ref`s are followed, into the document or into the
//! references the schema was parsed with.
//!
//! Hostile schemas are bounded: comparisons of the same pair of subschemas are memoized (so `oneOf`
//! cross products do not explode), a pair met again while being compared is a cycle and counts as
//! compatible (as in Confluent), and past a depth or an amount of work the comparison stops and reports
//! that it could not finish, which counts as incompatible.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::mem;

use jsonschema::Draft;
use serde_json::{Map, Value};

use super::JsonSchema;

/// Nested comparisons deeper than this are not made: it bounds the stack whatever `$ref`s do.
const MAX_DEPTH: usize = 64;
/// Comparisons (and differences copied out of the memo) beyond this are not made.
const MAX_WORK: usize = 200_000;
/// A chain of `$ref`s to `$ref`s longer than this is taken for a cycle.
const MAX_REF_HOPS: usize = 32;

macro_rules! difference_types {
    ($($name:ident: $compatible:literal,)*) => {
        /// Confluent's difference types (those this comparison produces), each with whether Confluent
        /// counts it compatible.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        enum Type {
            $($name,)*
        }

        impl Type {
            fn name(self) -> &'static str {
                match self {
                    $(Type::$name => stringify!($name),)*
                }
            }

            fn compatible(self) -> bool {
                match self {
                    $(Type::$name => $compatible,)*
                }
            }
        }
    };
}

difference_types! {
    SCHEMA_ADDED: false,
    SCHEMA_REMOVED: true,
    TYPE_EXTENDED: true,
    TYPE_NARROWED: false,
    TYPE_CHANGED: false,

    MAX_LENGTH_ADDED: false,
    MAX_LENGTH_REMOVED: true,
    MAX_LENGTH_INCREASED: true,
    MAX_LENGTH_DECREASED: false,
    MIN_LENGTH_ADDED: false,
    MIN_LENGTH_REMOVED: true,
    MIN_LENGTH_INCREASED: false,
    MIN_LENGTH_DECREASED: true,
    PATTERN_ADDED: false,
    PATTERN_REMOVED: true,
    PATTERN_CHANGED: false,

    MAXIMUM_ADDED: false,
    MAXIMUM_REMOVED: true,
    MAXIMUM_INCREASED: true,
    MAXIMUM_DECREASED: false,
    MINIMUM_ADDED: false,
    MINIMUM_REMOVED: true,
    MINIMUM_INCREASED: false,
    MINIMUM_DECREASED: true,
    EXCLUSIVE_MAXIMUM_ADDED: false,
    EXCLUSIVE_MAXIMUM_REMOVED: true,
    EXCLUSIVE_MAXIMUM_INCREASED: true,
    EXCLUSIVE_MAXIMUM_DECREASED: false,
    EXCLUSIVE_MINIMUM_ADDED: false,
    EXCLUSIVE_MINIMUM_REMOVED: true,
    EXCLUSIVE_MINIMUM_INCREASED: false,
    EXCLUSIVE_MINIMUM_DECREASED: true,
    MULTIPLE_OF_ADDED: false,
    MULTIPLE_OF_REMOVED: true,
    MULTIPLE_OF_EXPANDED: false,
    MULTIPLE_OF_REDUCED: true,
    MULTIPLE_OF_CHANGED: false,

    REQUIRED_ATTRIBUTE_ADDED: false,
    REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED: true,
    REQUIRED_ATTRIBUTE_REMOVED: true,
    MAX_PROPERTIES_ADDED: false,
    MAX_PROPERTIES_REMOVED: true,
    MAX_PROPERTIES_INCREASED: true,
    MAX_PROPERTIES_DECREASED: false,
    MIN_PROPERTIES_ADDED: false,
    MIN_PROPERTIES_REMOVED: true,
    MIN_PROPERTIES_INCREASED: false,
    MIN_PROPERTIES_DECREASED: true,
    ADDITIONAL_PROPERTIES_ADDED: true,
    ADDITIONAL_PROPERTIES_REMOVED: false,
    ADDITIONAL_PROPERTIES_EXTENDED: true,
    ADDITIONAL_PROPERTIES_NARROWED: false,
    DEPENDENCY_ARRAY_ADDED: false,
    DEPENDENCY_ARRAY_REMOVED: true,
    DEPENDENCY_ARRAY_EXTENDED: false,
    DEPENDENCY_ARRAY_NARROWED: true,
    DEPENDENCY_ARRAY_CHANGED: false,
    DEPENDENCY_SCHEMA_ADDED: false,
    DEPENDENCY_SCHEMA_REMOVED: true,
    PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL: false,
    PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL: true,
    REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL: false,
    REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL: true,
    OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL: true,
    PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL: true,
    PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL: true,
    PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL: false,
    PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL: true,
    PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL: false,
    PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL: true,
    PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL: false,

    MAX_ITEMS_ADDED: false,
    MAX_ITEMS_REMOVED: true,
    MAX_ITEMS_INCREASED: true,
    MAX_ITEMS_DECREASED: false,
    MIN_ITEMS_ADDED: false,
    MIN_ITEMS_REMOVED: true,
    MIN_ITEMS_INCREASED: false,
    MIN_ITEMS_DECREASED: true,
    // Confluent counts no change of `maxContains`/`minContains` compatible.
    MAX_CONTAINS_ADDED: false,
    MAX_CONTAINS_REMOVED: false,
    MAX_CONTAINS_INCREASED: false,
    MAX_CONTAINS_DECREASED: false,
    MIN_CONTAINS_ADDED: false,
    MIN_CONTAINS_REMOVED: false,
    MIN_CONTAINS_INCREASED: false,
    MIN_CONTAINS_DECREASED: false,
    UNIQUE_ITEMS_ADDED: false,
    UNIQUE_ITEMS_REMOVED: true,
    ADDITIONAL_ITEMS_ADDED: true,
    ADDITIONAL_ITEMS_REMOVED: false,
    ADDITIONAL_ITEMS_EXTENDED: true,
    ADDITIONAL_ITEMS_NARROWED: false,
    ITEM_ADDED_TO_OPEN_CONTENT_MODEL: false,
    ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL: true,
    ITEM_ADDED_TO_CLOSED_CONTENT_MODEL: true,
    ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL: true,
    ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL: true,
    ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL: false,
    ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL: true,
    ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL: false,
    ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL: true,
    ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL: false,

    ENUM_ARRAY_EXTENDED: true,
    ENUM_ARRAY_NARROWED: false,
    ENUM_ARRAY_CHANGED: false,

    COMBINED_TYPE_EXTENDED: true,
    COMBINED_TYPE_CHANGED: false,
    PRODUCT_TYPE_EXTENDED: false,
    PRODUCT_TYPE_NARROWED: true,
    SUM_TYPE_EXTENDED: true,
    SUM_TYPE_NARROWED: false,
    COMBINED_TYPE_SUBSCHEMAS_CHANGED: false,
    NOT_TYPE_EXTENDED: false,
    NOT_TYPE_NARROWED: true,
}

impl Type {
    /// What the difference means, in Confluent's words, with the reader as the "new" schema.
    fn description(self) -> &'static str {
        use Type::*;
        match self {
            SCHEMA_ADDED => "the reader schema has a subschema the writer schema does not have",
            TYPE_CHANGED | TYPE_NARROWED | COMBINED_TYPE_CHANGED
            | COMBINED_TYPE_SUBSCHEMAS_CHANGED | ENUM_ARRAY_CHANGED => {
                "the type is different between the reader and the writer schema"
            }
            MAX_LENGTH_ADDED | MIN_LENGTH_ADDED | PATTERN_ADDED | MAXIMUM_ADDED
            | MINIMUM_ADDED | EXCLUSIVE_MAXIMUM_ADDED | EXCLUSIVE_MINIMUM_ADDED
            | MULTIPLE_OF_ADDED | REQUIRED_ATTRIBUTE_ADDED | MAX_PROPERTIES_ADDED
            | MIN_PROPERTIES_ADDED | DEPENDENCY_ARRAY_ADDED | DEPENDENCY_SCHEMA_ADDED
            | MAX_ITEMS_ADDED | MIN_ITEMS_ADDED | MAX_CONTAINS_ADDED | MIN_CONTAINS_ADDED
            | UNIQUE_ITEMS_ADDED | ADDITIONAL_ITEMS_REMOVED | ADDITIONAL_PROPERTIES_REMOVED => {
                "the keyword in the reader schema is not present in the writer schema"
            }
            MIN_LENGTH_INCREASED | MINIMUM_INCREASED | EXCLUSIVE_MINIMUM_INCREASED
            | MIN_PROPERTIES_INCREASED | MULTIPLE_OF_EXPANDED | MIN_ITEMS_INCREASED
            | MIN_CONTAINS_INCREASED => {
                "the value in the reader schema is more than its value in the writer schema"
            }
            MAX_LENGTH_DECREASED | MAXIMUM_DECREASED | MAX_ITEMS_DECREASED
            | MAX_CONTAINS_DECREASED | EXCLUSIVE_MAXIMUM_DECREASED | MAX_PROPERTIES_DECREASED => {
                "the value in the reader schema is less than its value in the writer schema"
            }
            PATTERN_CHANGED | MULTIPLE_OF_CHANGED | DEPENDENCY_ARRAY_CHANGED => {
                "the value is different between the reader and the writer schema"
            }
            ADDITIONAL_ITEMS_NARROWED | ENUM_ARRAY_NARROWED | SUM_TYPE_NARROWED
            | ADDITIONAL_PROPERTIES_NARROWED => {
                "an array or combined type has fewer elements in the reader schema than in the writer schema"
            }
            DEPENDENCY_ARRAY_EXTENDED | PRODUCT_TYPE_EXTENDED | NOT_TYPE_EXTENDED => {
                "an array or combined type has more elements in the reader schema than in the writer schema"
            }
            PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL | ITEM_ADDED_TO_OPEN_CONTENT_MODEL => {
                "the writer schema has an open content model and the reader schema has a property or item the writer schema does not have"
            }
            REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL => {
                "the writer schema has a closed content model and the reader schema requires a property the writer schema does not have"
            }
            PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL | ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL => {
                "the reader schema has a closed content model and lacks a property or item the writer schema has"
            }
            PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
            | ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL => {
                "the reader schema lacks a property or item the writer schema has, and its partially open content model does not cover it"
            }
            PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
            | ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL => {
                "the reader schema has a property or item the writer schema lacks, and the writer's partially open content model does not cover it"
            }
            _ => "compatible change",
        }
    }
}

#[derive(Debug, Clone)]
struct Difference {
    ty: Type,
    /// Segments joined with `/`, without the leading `#/`: relative to the pair being compared until
    /// it is rebased onto the enclosing path.
    path: String,
}

/// Why a reader on `reader` cannot read what `writer` wrote, one line per incompatible difference.
pub(super) fn incompatibilities(writer: &JsonSchema, reader: &JsonSchema) -> Vec<String> {
    let mut comparer = Comparer::default();
    let original = Sub::Loc(Loc::root(writer));
    let update = Sub::Loc(Loc::root(reader));
    comparer.compare(&original, &update);

    let mut seen = HashSet::new();
    let mut problems = Vec::new();
    for difference in &comparer.diffs {
        if difference.ty.compatible() {
            continue;
        }
        let line = format!(
            "{}: #/{}: {}",
            difference.ty.name(),
            difference.path,
            difference.ty.description()
        );
        // A combined type's cross product can find one difference on several paths to it.
        if seen.insert(line.clone()) {
            problems.push(line);
        }
    }
    if comparer.exhausted {
        problems.push(format!(
            "the schemas are too large or too deeply nested to compare (more than {MAX_DEPTH} levels or \
             {MAX_WORK} comparisons); they are taken as incompatible"
        ));
    }
    problems
}

/// A subschema and the document its `$ref`s resolve in.
#[derive(Clone, Copy)]
struct Loc<'a> {
    schema: &'a JsonSchema,
    /// The document `#` fragments point into: the schema or one of its references.
    root: &'a Value,
    value: &'a Value,
}

impl<'a> Loc<'a> {
    fn root(schema: &'a JsonSchema) -> Loc<'a> {
        Loc {
            schema,
            root: &schema.root,
            value: &schema.root,
        }
    }

    fn child(self, value: &'a Value) -> Loc<'a> {
        Loc { value, ..self }
    }

    fn map(self) -> Option<&'a Map<String, Value>> {
        self.value.as_object()
    }

    fn get(self, key: &str) -> Option<&'a Value> {
        self.map().and_then(|m| m.get(key))
    }

    /// A subschema under `key`, when it is a schema (an object or a boolean).
    fn subschema(self, key: &str) -> Option<Loc<'a>> {
        self.get(key)
            .filter(|v| v.is_object() || v.is_boolean())
            .map(|v| self.child(v))
    }

    fn number(self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    fn draft(self) -> Draft {
        self.schema.draft
    }

    /// Follows a `$ref` within the document or into a reference. `None` for what we do not resolve
    /// (anchors, URIs that name no reference); the validator did resolve it, so such a `$ref` is only
    /// compared by its text.
    fn resolve(self, reference: &str) -> Option<Loc<'a>> {
        let (base, fragment) = reference.split_once('#').unwrap_or((reference, ""));
        let root = if base.is_empty() {
            self.root
        } else if let Some(document) = self.schema.dependencies.get(base) {
            document
        } else if self.schema.root.get("$id").and_then(Value::as_str) == Some(base) {
            &self.schema.root
        } else {
            return None;
        };
        let value = if fragment.is_empty() {
            root
        } else if fragment.starts_with('/') {
            root.pointer(&percent_decode(fragment)?)?
        } else {
            return None;
        };
        Some(Loc {
            schema: self.schema,
            root,
            value,
        })
    }
}

/// Undoes the percent-encoding a URI fragment may carry (JSON pointer escapes stay for `pointer`).
fn percent_decode(fragment: &str) -> Option<String> {
    if !fragment.contains('%') {
        return Some(fragment.to_owned());
    }
    let bytes = fragment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = fragment.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Object,
    Array,
    String,
    Number,
    Integer,
    Boolean,
    Null,
}

impl Kind {
    fn from_name(name: &str) -> Option<Kind> {
        Some(match name {
            "object" => Kind::Object,
            "array" => Kind::Array,
            "string" => Kind::String,
            "number" => Kind::Number,
            "integer" => Kind::Integer,
            "boolean" => Kind::Boolean,
            "null" => Kind::Null,
            _ => return None,
        })
    }

    /// Integer and number are one kind of schema (Confluent's `NumberSchema`), compared by their
    /// bounds and by whether integers are required.
    fn class(self) -> Kind {
        match self {
            Kind::Integer => Kind::Number,
            other => other,
        }
    }
}

/// The keywords that make a schema without `type` one of a type, as Confluent's loader infers it.
const INFERRED: [(Kind, &[&str]); 4] = [
    (
        Kind::Object,
        &[
            "properties",
            "required",
            "additionalProperties",
            "patternProperties",
            "minProperties",
            "maxProperties",
            "dependencies",
            "dependentRequired",
            "dependentSchemas",
            "propertyNames",
        ],
    ),
    (
        Kind::Array,
        &[
            "items",
            "prefixItems",
            "additionalItems",
            "minItems",
            "maxItems",
            "uniqueItems",
            "contains",
            "minContains",
            "maxContains",
        ],
    ),
    (Kind::String, &["minLength", "maxLength", "pattern"]),
    (
        Kind::Number,
        &[
            "minimum",
            "maximum",
            "exclusiveMinimum",
            "exclusiveMaximum",
            "multipleOf",
        ],
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Criterion {
    All,
    Any,
    One,
}

impl Criterion {
    fn keyword(self) -> &'static str {
        match self {
            Criterion::All => "allOf",
            Criterion::Any => "anyOf",
            Criterion::One => "oneOf",
        }
    }
}

/// What a schema is, for comparison (see the module documentation).
#[derive(Clone)]
enum Shape<'a> {
    Empty,
    False,
    /// The type's keywords are read from the schema object.
    Typed(Kind, Loc<'a>),
    Enum(Loc<'a>),
    Const(Loc<'a>),
    Combined(Criterion, Vec<Sub<'a>>),
    /// The negated subschema.
    Not(Loc<'a>),
    /// A `$ref` we do not follow.
    Unresolved(&'a str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Empty,
    False,
    Typed(Kind),
    Enum,
    Const,
    Combined,
    Not,
    Unresolved,
}

impl Shape<'_> {
    fn class(&self) -> Class {
        match self {
            Shape::Empty => Class::Empty,
            Shape::False => Class::False,
            Shape::Typed(kind, _) => Class::Typed(kind.class()),
            Shape::Enum(_) => Class::Enum,
            Shape::Const(_) => Class::Const,
            Shape::Combined(..) => Class::Combined,
            Shape::Not(_) => Class::Not,
            Shape::Unresolved(_) => Class::Unresolved,
        }
    }
}

/// A member of a combination: a subschema in the document (compared memoized, by identity), or a part
/// of one schema made up by splitting it.
#[derive(Clone)]
enum Sub<'a> {
    Loc(Loc<'a>),
    Shape(Shape<'a>),
}

/// The shape of the schema at `loc`, after following `$ref`s.
fn shape_of(mut loc: Loc<'_>) -> Shape<'_> {
    for _ in 0..MAX_REF_HOPS {
        let map = match loc.value {
            Value::Bool(true) => return Shape::Empty,
            Value::Bool(false) => return Shape::False,
            Value::Object(map) => map,
            // Not a schema; the meta-schema check refused it already.
            _ => return Shape::Empty,
        };
        if let Some(Value::String(reference)) = map.get("$ref") {
            // Before 2019-09 a `$ref` makes its siblings ignored; from then on they apply alongside.
            let alone = loc.draft() <= Draft::Draft7 || parts(loc, map, false).is_empty();
            if alone {
                match loc.resolve(reference) {
                    Some(target) => {
                        loc = target;
                        continue;
                    }
                    None => return Shape::Unresolved(reference),
                }
            }
        }
        let mut parts = parts(loc, map, true);
        return match parts.len() {
            0 => Shape::Empty,
            1 => match parts.pop() {
                Some(Sub::Shape(shape)) => shape,
                Some(other) => Shape::Combined(Criterion::All, vec![other]),
                None => Shape::Empty,
            },
            _ => Shape::Combined(Criterion::All, parts),
        };
    }
    Shape::Empty
}

/// The constraints a schema object combines (its type, enum, const, combinators, not, and with
/// `with_ref` a sibling `$ref`); more than one makes the schema their `allOf`, as Confluent sees it.
fn parts<'a>(loc: Loc<'a>, map: &'a Map<String, Value>, with_ref: bool) -> Vec<Sub<'a>> {
    let mut parts = Vec::new();
    let typed = |kind: Kind| Sub::Shape(Shape::Typed(kind, loc));
    match map.get("type") {
        Some(Value::String(name)) => parts.extend(Kind::from_name(name).map(typed)),
        Some(Value::Array(names)) => {
            let mut kinds: Vec<Kind> = Vec::new();
            for kind in names
                .iter()
                .filter_map(Value::as_str)
                .filter_map(Kind::from_name)
            {
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            if kinds.len() == 1 {
                parts.extend(kinds.into_iter().map(typed));
            } else if kinds.len() > 1 {
                let subs = kinds.into_iter().map(typed).collect();
                parts.push(Sub::Shape(Shape::Combined(Criterion::Any, subs)));
            }
        }
        _ => {
            for (kind, keywords) in INFERRED {
                if keywords.iter().any(|k| map.contains_key(*k)) {
                    parts.push(typed(kind));
                }
            }
        }
    }
    if map.get("enum").is_some_and(Value::is_array) {
        parts.push(Sub::Shape(Shape::Enum(loc)));
    }
    if map.contains_key("const") {
        parts.push(Sub::Shape(Shape::Const(loc)));
    }
    for criterion in [Criterion::All, Criterion::Any, Criterion::One] {
        if let Some(Value::Array(members)) = map.get(criterion.keyword()) {
            let subs = members.iter().map(|m| Sub::Loc(loc.child(m))).collect();
            parts.push(Sub::Shape(Shape::Combined(criterion, subs)));
        }
    }
    if let Some(negated) = loc.subschema("not") {
        parts.push(Sub::Shape(Shape::Not(negated)));
    }
    if with_ref {
        if let Some(Value::String(reference)) = map.get("$ref") {
            parts.push(match loc.resolve(reference) {
                Some(target) => Sub::Loc(target),
                None => Sub::Shape(Shape::Unresolved(reference)),
            });
        }
    }
    parts
}

fn resolve_sub<'a>(sub: &Sub<'a>) -> Shape<'a> {
    match sub {
        Sub::Loc(loc) => shape_of(*loc),
        Sub::Shape(shape) => shape.clone(),
    }
}

fn identity(value: &Value) -> usize {
    value as *const Value as usize
}

#[derive(Default)]
struct Comparer {
    path: Vec<String>,
    diffs: Vec<Difference>,
    /// Differences of already compared pairs of subschemas (by identity), relative to the pair.
    memo: HashMap<(usize, usize), Vec<Difference>>,
    in_progress: HashSet<(usize, usize)>,
    depth: usize,
    work: usize,
    exhausted: bool,
}

impl Comparer {
    fn add(&mut self, ty: Type) {
        self.diffs.push(Difference {
            ty,
            path: self.path.join("/"),
        });
    }

    fn add_at(&mut self, keyword: &str, ty: Type) {
        self.at(keyword, |c| c.add(ty));
    }

    fn at<R>(&mut self, segment: impl Into<String>, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(segment.into());
        let result = f(self);
        self.path.pop();
        result
    }

    /// Runs `f` collecting its differences apart (Confluent's subcontext), and returns them.
    fn apart(&mut self, f: impl FnOnce(&mut Self)) -> Vec<Difference> {
        let outer = mem::take(&mut self.diffs);
        f(self);
        mem::replace(&mut self.diffs, outer)
    }

    fn add_rebased(&mut self, relative: &[Difference]) {
        self.work = self.work.saturating_add(relative.len());
        let prefix = self.path.join("/");
        for difference in relative {
            let path = match (prefix.is_empty(), difference.path.is_empty()) {
                (true, _) => difference.path.clone(),
                (false, true) => prefix.clone(),
                (false, false) => format!("{prefix}/{}", difference.path),
            };
            self.diffs.push(Difference {
                ty: difference.ty,
                path,
            });
        }
    }

    fn compare(&mut self, original: &Sub<'_>, update: &Sub<'_>) {
        if self.exhausted {
            return;
        }
        self.work += 1;
        if self.work > MAX_WORK || self.depth >= MAX_DEPTH {
            self.exhausted = true;
            return;
        }
        self.depth += 1;
        match (original, update) {
            (Sub::Loc(o), Sub::Loc(u)) => self.compare_locs(*o, *u),
            _ => {
                let (o, u) = (resolve_sub(original), resolve_sub(update));
                self.compare_shapes(&o, &u);
            }
        }
        self.depth -= 1;
    }

    fn compare_opt(&mut self, original: Option<Loc<'_>>, update: Option<Loc<'_>>) {
        match (original, update) {
            (None, None) => {}
            (None, Some(_)) => self.add(Type::SCHEMA_ADDED),
            (Some(_), None) => self.add(Type::SCHEMA_REMOVED),
            (Some(o), Some(u)) => self.compare(&Sub::Loc(o), &Sub::Loc(u)),
        }
    }

    fn compare_locs(&mut self, original: Loc<'_>, update: Loc<'_>) {
        let key = (identity(original.value), identity(update.value));
        if let Some(known) = self.memo.get(&key).cloned() {
            self.add_rebased(&known);
            return;
        }
        if !self.in_progress.insert(key) {
            return;
        }
        let outer_path = mem::take(&mut self.path);
        let relative = self.apart(|c| {
            let (o, u) = (shape_of(original), shape_of(update));
            c.compare_shapes(&o, &u);
        });
        self.path = outer_path;
        self.in_progress.remove(&key);
        // A result cut short by the limits is not the pair's result.
        if !self.exhausted {
            self.memo.insert(key, relative.clone());
        }
        self.add_rebased(&relative);
    }

    /// Confluent's `SchemaDiff.compare` on two shapes.
    fn compare_shapes(&mut self, original: &Shape<'_>, update: &Shape<'_>) {
        match (original, update) {
            (o, Shape::Combined(criterion, subs)) if !matches!(o, Shape::Combined(..)) => {
                let o = Sub::Shape(o.clone());
                if subs.len() == 1 {
                    let found = self.apart(|c| c.compare(&o, &subs[0]));
                    if compatible(&found) {
                        self.diffs.extend(found);
                        return;
                    }
                } else if matches!(criterion, Criterion::Any | Criterion::One) {
                    for sub in subs {
                        let found = self.apart(|c| c.compare(&o, sub));
                        if compatible(&found) {
                            self.diffs.extend(found);
                            self.add(Type::SUM_TYPE_EXTENDED);
                            return;
                        }
                    }
                }
            }
            (Shape::Combined(_, subs), u) if subs.len() == 1 => {
                let u = Sub::Shape(u.clone());
                let found = self.apart(|c| c.compare(&subs[0], &u));
                if compatible(&found) {
                    self.diffs.extend(found);
                    return;
                }
            }
            _ => {}
        }

        if original.class() != update.class() {
            // Everything may be read by an empty schema, and nothing was written with a false one.
            if !matches!(original, Shape::False) && !matches!(update, Shape::Empty) {
                self.add(Type::TYPE_CHANGED);
            }
            return;
        }
        match (original, update) {
            (Shape::Typed(ok, o), Shape::Typed(uk, u)) => match ok.class() {
                Kind::Object => self.compare_objects(*o, *u),
                Kind::Array => self.compare_arrays(*o, *u),
                Kind::String => self.compare_strings(*o, *u),
                Kind::Number => self.compare_numbers(*ok, *o, *uk, *u),
                Kind::Boolean | Kind::Null | Kind::Integer => {}
            },
            (Shape::Enum(o), Shape::Enum(u)) => self.compare_enums(*o, *u),
            (Shape::Const(o), Shape::Const(u)) if o.get("const") != u.get("const") => {
                self.add_at("const", Type::ENUM_ARRAY_CHANGED);
            }
            (Shape::Combined(oc, os), Shape::Combined(uc, us)) => {
                self.compare_combined(*oc, os, *uc, us)
            }
            (Shape::Not(o), Shape::Not(u)) => {
                let (o, u) = (Sub::Loc(*o), Sub::Loc(*u));
                self.at("not", |c| {
                    // What the reader must not match may only grow: compared the other way round.
                    let found = c.apart(|c| c.compare(&u, &o));
                    c.add(if compatible(&found) {
                        Type::NOT_TYPE_NARROWED
                    } else {
                        Type::NOT_TYPE_EXTENDED
                    });
                });
            }
            (Shape::Unresolved(o), Shape::Unresolved(u)) if o != u => {
                self.add(Type::TYPE_CHANGED);
            }
            _ => {}
        }
    }

    fn compare_combined(
        &mut self,
        original_criterion: Criterion,
        original: &[Sub<'_>],
        update_criterion: Criterion,
        update: &[Sub<'_>],
    ) {
        let change = if original_criterion == update_criterion {
            None
        } else if update_criterion == Criterion::Any
            || (update_criterion == Criterion::One && original.len() == 1)
            || (update_criterion == Criterion::All && original.len() == 1 && update.len() == 1)
        {
            Some(Type::COMBINED_TYPE_EXTENDED)
        } else {
            Some(Type::COMBINED_TYPE_CHANGED)
        };
        if let Some(change) = change {
            self.add(change);
            if change == Type::COMBINED_TYPE_CHANGED {
                return;
            }
        }

        let original = distinct(original);
        let update = distinct(update);
        if self.compare_parts_by_class(original_criterion, &original, &update) {
            return;
        }
        let product = update_criterion == Criterion::All;
        if original.len() < update.len() {
            self.add(if product {
                Type::PRODUCT_TYPE_EXTENDED
            } else {
                Type::SUM_TYPE_EXTENDED
            });
        } else if original.len() > update.len() {
            self.add(if product {
                Type::PRODUCT_TYPE_NARROWED
            } else {
                Type::SUM_TYPE_NARROWED
            });
        }

        let mut edges = Vec::new();
        for (i, o) in original.iter().enumerate() {
            let segment = format!("{}/{i}", original_criterion.keyword());
            self.at(segment, |c| {
                for (j, u) in update.iter().enumerate() {
                    let found = c.apart(|c| c.compare(o, u));
                    if compatible(&found) {
                        edges.push((i, j, found));
                    }
                }
            });
        }
        let matching = maximum_matching(original.len(), update.len(), &edges);
        for &edge in &matching {
            if let Some((_, _, found)) = edges.get(edge) {
                self.diffs.extend(found.iter().cloned());
            }
        }
        if matching.len() < original.len().min(update.len()) {
            self.add(Type::COMBINED_TYPE_SUBSCHEMAS_CHANGED);
        }
    }

    /// Combinations whose members pair up one to one by class (as the parts of one schema split by
    /// [`parts`] do, e.g. a string with an enum) are compared pair by pair. Members of different
    /// classes are never compatible, so the verdict is the matching's, and the problems name the
    /// keyword that changed rather than the combination.
    fn compare_parts_by_class(
        &mut self,
        criterion: Criterion,
        original: &[Sub<'_>],
        update: &[Sub<'_>],
    ) -> bool {
        if original.len() != update.len() {
            return false;
        }
        let classes = |subs: &[Sub<'_>]| -> Vec<Class> {
            subs.iter().map(|s| resolve_sub(s).class()).collect()
        };
        let (o_classes, u_classes) = (classes(original), classes(update));
        let mut pairs = Vec::with_capacity(original.len());
        for (i, class) in o_classes.iter().enumerate() {
            // Classes that compare by more than their class (empty, false, combinations) are left
            // to the matching.
            if matches!(class, Class::Empty | Class::False | Class::Combined)
                || o_classes.iter().filter(|c| *c == class).count() != 1
            {
                return false;
            }
            match u_classes.iter().position(|c| c == class) {
                Some(j) if u_classes.iter().filter(|c| *c == class).count() == 1 => {
                    pairs.push((i, j))
                }
                _ => return false,
            }
        }
        for (i, j) in pairs {
            match &original[i] {
                // A member written in the document: its path, as Confluent names it.
                Sub::Loc(_) => self.at(format!("{}/{i}", criterion.keyword()), |c| {
                    c.compare(&original[i], &update[j])
                }),
                Sub::Shape(_) => self.compare(&original[i], &update[j]),
            }
        }
        true
    }

    fn compare_objects(&mut self, original: Loc<'_>, update: Loc<'_>) {
        let o_props = properties(original);
        let u_props = properties(update);
        let o_required = required(original);
        let u_required = required(update);

        self.at("required", |c| {
            for name in o_props.keys() {
                let Some(u_prop) = u_props.get(name) else {
                    continue;
                };
                match (o_required.contains(name), u_required.contains(name)) {
                    (true, false) => c.add_at(name, Type::REQUIRED_ATTRIBUTE_REMOVED),
                    (false, true) if has_default(*u_prop) => {
                        c.add_at(name, Type::REQUIRED_ATTRIBUTE_WITH_DEFAULT_ADDED)
                    }
                    (false, true) => c.add_at(name, Type::REQUIRED_ATTRIBUTE_ADDED),
                    _ => {}
                }
            }
        });

        self.at("properties", |c| {
            let names: BTreeSet<&str> = o_props.keys().chain(u_props.keys()).copied().collect();
            for name in names {
                c.at(name, |c| match (o_props.get(name), u_props.get(name)) {
                    (Some(o), Some(u)) => c.compare(&Sub::Loc(*o), &Sub::Loc(*u)),
                    (Some(o), None) => c.property_removed(*o, update, name),
                    (None, Some(u)) => c.property_added(original, *u, name, &u_required),
                    (None, None) => {}
                });
            }
        });

        self.at("dependencies", |c| c.compare_dependencies(original, update));

        self.at("additionalProperties", |c| {
            c.compare_additional(
                original.get("additionalProperties"),
                update.get("additionalProperties"),
                original,
                update,
                [
                    Type::ADDITIONAL_PROPERTIES_ADDED,
                    Type::ADDITIONAL_PROPERTIES_REMOVED,
                    Type::ADDITIONAL_PROPERTIES_NARROWED,
                    Type::ADDITIONAL_PROPERTIES_EXTENDED,
                ],
            )
        });

        self.compare_limit(
            original,
            update,
            "maxProperties",
            [
                Type::MAX_PROPERTIES_ADDED,
                Type::MAX_PROPERTIES_REMOVED,
                Type::MAX_PROPERTIES_INCREASED,
                Type::MAX_PROPERTIES_DECREASED,
            ],
        );
        self.compare_limit(
            original,
            update,
            "minProperties",
            [
                Type::MIN_PROPERTIES_ADDED,
                Type::MIN_PROPERTIES_REMOVED,
                Type::MIN_PROPERTIES_INCREASED,
                Type::MIN_PROPERTIES_DECREASED,
            ],
        );
    }

    /// A property the writer has and the reader lacks; only the reader's content model matters.
    fn property_removed(&mut self, original: Loc<'_>, update: Loc<'_>, name: &str) {
        if is_open_object(update) {
            self.add(Type::PROPERTY_REMOVED_FROM_OPEN_CONTENT_MODEL);
        } else if let Some(partial) = partial_object_schema(update, name) {
            let found = self.apart(|c| c.compare(&Sub::Loc(original), &Sub::Loc(partial)));
            let covered = compatible(&found);
            self.diffs.extend(found);
            self.add(if covered {
                Type::PROPERTY_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
            } else {
                Type::PROPERTY_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
            });
        } else if matches!(shape_of(original), Shape::False) {
            self.add(Type::PROPERTY_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL);
        } else {
            self.add(Type::PROPERTY_REMOVED_FROM_CLOSED_CONTENT_MODEL);
        }
    }

    /// A property the reader has and the writer lacks; only the writer's content model matters.
    fn property_added(
        &mut self,
        original_object: Loc<'_>,
        update: Loc<'_>,
        name: &str,
        update_required: &BTreeSet<&str>,
    ) {
        if is_open_object(original_object) {
            self.add(if matches!(shape_of(update), Shape::Empty) {
                Type::PROPERTY_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL
            } else {
                Type::PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL
            });
            return;
        }
        if let Some(partial) = partial_object_schema(original_object, name) {
            let found = self.apart(|c| c.compare(&Sub::Loc(partial), &Sub::Loc(update)));
            let covered = compatible(&found);
            self.diffs.extend(found);
            self.add(if covered {
                Type::PROPERTY_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
            } else {
                Type::PROPERTY_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
            });
        }
        self.add(if !update_required.contains(name) {
            Type::OPTIONAL_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL
        } else if has_default(update) {
            Type::REQUIRED_PROPERTY_WITH_DEFAULT_ADDED_TO_UNOPEN_CONTENT_MODEL
        } else {
            Type::REQUIRED_PROPERTY_ADDED_TO_UNOPEN_CONTENT_MODEL
        });
    }

    fn compare_dependencies(&mut self, original: Loc<'_>, update: Loc<'_>) {
        let (o_arrays, o_schemas) = dependencies(original);
        let (u_arrays, u_schemas) = dependencies(update);

        let names: BTreeSet<&str> = o_arrays.keys().chain(u_arrays.keys()).copied().collect();
        for name in names {
            let ty = match (o_arrays.get(name), u_arrays.get(name)) {
                (_, None) => Some(Type::DEPENDENCY_ARRAY_REMOVED),
                (None, Some(_)) => Some(Type::DEPENDENCY_ARRAY_ADDED),
                (Some(o), Some(u)) if o == u => None,
                (Some(o), Some(u)) if u.is_superset(o) => Some(Type::DEPENDENCY_ARRAY_EXTENDED),
                (Some(o), Some(u)) if o.is_superset(u) => Some(Type::DEPENDENCY_ARRAY_NARROWED),
                (Some(_), Some(_)) => Some(Type::DEPENDENCY_ARRAY_CHANGED),
            };
            if let Some(ty) = ty {
                self.add_at(name, ty);
            }
        }

        let names: BTreeSet<&str> = o_schemas.keys().chain(u_schemas.keys()).copied().collect();
        for name in names {
            self.at(name, |c| match (o_schemas.get(name), u_schemas.get(name)) {
                (_, None) => c.add(Type::DEPENDENCY_SCHEMA_REMOVED),
                (None, Some(_)) => c.add(Type::DEPENDENCY_SCHEMA_ADDED),
                (Some(o), Some(u)) => c.compare(&Sub::Loc(*o), &Sub::Loc(*u)),
            });
        }
    }

    /// `additionalProperties` or `additionalItems` (the keyword's values given): whether more is
    /// permitted, then the schema of what more there may be. `types` are: added (permitted now),
    /// removed, narrowed (a schema now), extended (no schema now).
    fn compare_additional(
        &mut self,
        original: Option<&Value>,
        update: Option<&Value>,
        original_loc: Loc<'_>,
        update_loc: Loc<'_>,
        [added, removed, narrowed, extended]: [Type; 4],
    ) {
        let permits = |v: Option<&Value>| v != Some(&Value::Bool(false));
        fn schema(v: Option<&Value>) -> Option<&Value> {
            v.filter(|v| v.is_object())
        }
        if permits(original) != permits(update) {
            self.add(if permits(update) { added } else { removed });
            return;
        }
        match (schema(original), schema(update)) {
            (None, Some(_)) => self.add(narrowed),
            (Some(_), None) => self.add(extended),
            (Some(o), Some(u)) => self.compare(
                &Sub::Loc(original_loc.child(o)),
                &Sub::Loc(update_loc.child(u)),
            ),
            (None, None) => {}
        }
    }

    fn compare_arrays(&mut self, original: Loc<'_>, update: Loc<'_>) {
        let o = ArrayModel::of(original);
        let u = ArrayModel::of(update);

        self.at("items", |c| c.compare_opt(o.all_items, u.all_items));

        let common = o.tuple.len().min(u.tuple.len());
        for index in 0..o.tuple.len().max(u.tuple.len()) {
            self.at(format!("items/{index}"), |c| {
                match (o.tuple.get(index), u.tuple.get(index)) {
                    (Some(oi), Some(ui)) if index < common => {
                        c.compare(&Sub::Loc(*oi), &Sub::Loc(*ui))
                    }
                    (Some(oi), None) => c.item_removed(*oi, &u),
                    (None, Some(ui)) => c.item_added(&o, *ui),
                    _ => {}
                }
            });
        }

        self.at("additionalItems", |c| {
            c.compare_additional(
                o.additional.map(|l| l.value),
                u.additional.map(|l| l.value),
                original,
                update,
                [
                    Type::ADDITIONAL_ITEMS_ADDED,
                    Type::ADDITIONAL_ITEMS_REMOVED,
                    Type::ADDITIONAL_ITEMS_NARROWED,
                    Type::ADDITIONAL_ITEMS_EXTENDED,
                ],
            )
        });

        self.compare_limit(
            original,
            update,
            "maxItems",
            [
                Type::MAX_ITEMS_ADDED,
                Type::MAX_ITEMS_REMOVED,
                Type::MAX_ITEMS_INCREASED,
                Type::MAX_ITEMS_DECREASED,
            ],
        );
        self.compare_limit(
            original,
            update,
            "minItems",
            [
                Type::MIN_ITEMS_ADDED,
                Type::MIN_ITEMS_REMOVED,
                Type::MIN_ITEMS_INCREASED,
                Type::MIN_ITEMS_DECREASED,
            ],
        );
        let unique = |l: Loc<'_>| l.get("uniqueItems") == Some(&Value::Bool(true));
        match (unique(original), unique(update)) {
            (true, false) => self.add_at("uniqueItems", Type::UNIQUE_ITEMS_REMOVED),
            (false, true) => self.add_at("uniqueItems", Type::UNIQUE_ITEMS_ADDED),
            _ => {}
        }
        self.compare_limit(
            original,
            update,
            "maxContains",
            [
                Type::MAX_CONTAINS_ADDED,
                Type::MAX_CONTAINS_REMOVED,
                Type::MAX_CONTAINS_INCREASED,
                Type::MAX_CONTAINS_DECREASED,
            ],
        );
        self.compare_limit(
            original,
            update,
            "minContains",
            [
                Type::MIN_CONTAINS_ADDED,
                Type::MIN_CONTAINS_REMOVED,
                Type::MIN_CONTAINS_INCREASED,
                Type::MIN_CONTAINS_DECREASED,
            ],
        );
    }

    /// A tuple item the writer has and the reader lacks; only the reader's content model matters.
    fn item_removed(&mut self, original: Loc<'_>, update: &ArrayModel<'_>) {
        if update.is_open() {
            self.add(Type::ITEM_REMOVED_FROM_OPEN_CONTENT_MODEL);
        } else if let Some(partial) = update.partial() {
            let found = self.apart(|c| c.compare(&Sub::Loc(original), &Sub::Loc(partial)));
            let covered = compatible(&found);
            self.diffs.extend(found);
            self.add(if covered {
                Type::ITEM_REMOVED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
            } else {
                Type::ITEM_REMOVED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
            });
        } else if matches!(shape_of(original), Shape::False) {
            self.add(Type::ITEM_WITH_FALSE_REMOVED_FROM_CLOSED_CONTENT_MODEL);
        } else {
            self.add(Type::ITEM_REMOVED_FROM_CLOSED_CONTENT_MODEL);
        }
    }

    /// A tuple item the reader has and the writer lacks; only the writer's content model matters.
    fn item_added(&mut self, original: &ArrayModel<'_>, update: Loc<'_>) {
        if original.is_open() {
            self.add(if matches!(shape_of(update), Shape::Empty) {
                Type::ITEM_WITH_EMPTY_SCHEMA_ADDED_TO_OPEN_CONTENT_MODEL
            } else {
                Type::ITEM_ADDED_TO_OPEN_CONTENT_MODEL
            });
        } else if let Some(partial) = original.partial() {
            let found = self.apart(|c| c.compare(&Sub::Loc(partial), &Sub::Loc(update)));
            let covered = compatible(&found);
            self.diffs.extend(found);
            self.add(if covered {
                Type::ITEM_ADDED_IS_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
            } else {
                Type::ITEM_ADDED_NOT_COVERED_BY_PARTIALLY_OPEN_CONTENT_MODEL
            });
        } else {
            self.add(Type::ITEM_ADDED_TO_CLOSED_CONTENT_MODEL);
        }
    }

    fn compare_strings(&mut self, original: Loc<'_>, update: Loc<'_>) {
        self.compare_limit(
            original,
            update,
            "maxLength",
            [
                Type::MAX_LENGTH_ADDED,
                Type::MAX_LENGTH_REMOVED,
                Type::MAX_LENGTH_INCREASED,
                Type::MAX_LENGTH_DECREASED,
            ],
        );
        self.compare_limit(
            original,
            update,
            "minLength",
            [
                Type::MIN_LENGTH_ADDED,
                Type::MIN_LENGTH_REMOVED,
                Type::MIN_LENGTH_INCREASED,
                Type::MIN_LENGTH_DECREASED,
            ],
        );
        let o_pattern = original.get("pattern").and_then(Value::as_str);
        let u_pattern = update.get("pattern").and_then(Value::as_str);
        match (o_pattern, u_pattern) {
            (None, Some(_)) => self.add_at("pattern", Type::PATTERN_ADDED),
            (Some(_), None) => self.add_at("pattern", Type::PATTERN_REMOVED),
            (Some(o), Some(u)) if o != u => self.add_at("pattern", Type::PATTERN_CHANGED),
            _ => {}
        }
    }

    fn compare_numbers(
        &mut self,
        original_kind: Kind,
        original: Loc<'_>,
        update_kind: Kind,
        update: Loc<'_>,
    ) {
        let limits = [
            (
                "maximum",
                [
                    Type::MAXIMUM_ADDED,
                    Type::MAXIMUM_REMOVED,
                    Type::MAXIMUM_INCREASED,
                    Type::MAXIMUM_DECREASED,
                ],
            ),
            (
                "minimum",
                [
                    Type::MINIMUM_ADDED,
                    Type::MINIMUM_REMOVED,
                    Type::MINIMUM_INCREASED,
                    Type::MINIMUM_DECREASED,
                ],
            ),
            // Draft 4's boolean `exclusiveMaximum`/`exclusiveMinimum` are not numbers, and are not
            // compared.
            (
                "exclusiveMaximum",
                [
                    Type::EXCLUSIVE_MAXIMUM_ADDED,
                    Type::EXCLUSIVE_MAXIMUM_REMOVED,
                    Type::EXCLUSIVE_MAXIMUM_INCREASED,
                    Type::EXCLUSIVE_MAXIMUM_DECREASED,
                ],
            ),
            (
                "exclusiveMinimum",
                [
                    Type::EXCLUSIVE_MINIMUM_ADDED,
                    Type::EXCLUSIVE_MINIMUM_REMOVED,
                    Type::EXCLUSIVE_MINIMUM_INCREASED,
                    Type::EXCLUSIVE_MINIMUM_DECREASED,
                ],
            ),
        ];
        for (keyword, types) in limits {
            self.compare_limit(original, update, keyword, types);
        }

        match (original.number("multipleOf"), update.number("multipleOf")) {
            (None, Some(_)) => self.add_at("multipleOf", Type::MULTIPLE_OF_ADDED),
            (Some(_), None) => self.add_at("multipleOf", Type::MULTIPLE_OF_REMOVED),
            (Some(o), Some(u)) if o != u => {
                // Multiples of `u` are all multiples of `o` when `u` is a multiple of `o`: fewer
                // values are valid ("expanded", Confluent says); the other way round, more.
                let ty = if is_multiple(u, o) {
                    Type::MULTIPLE_OF_EXPANDED
                } else if is_multiple(o, u) {
                    Type::MULTIPLE_OF_REDUCED
                } else {
                    Type::MULTIPLE_OF_CHANGED
                };
                self.add_at("multipleOf", ty);
            }
            _ => {}
        }

        match (original_kind, update_kind) {
            (Kind::Integer, Kind::Number) => self.add(Type::TYPE_EXTENDED),
            (Kind::Number, Kind::Integer) => self.add(Type::TYPE_NARROWED),
            _ => {}
        }
    }

    fn compare_enums(&mut self, original: Loc<'_>, update: Loc<'_>) {
        // Compared as sets of their JSON texts: linear, whatever the enums' sizes.
        let values = |l: Loc<'_>| -> HashSet<String> {
            l.get("enum")
                .and_then(Value::as_array)
                .map(|a| a.iter().map(Value::to_string).collect())
                .unwrap_or_default()
        };
        let (o, u) = (values(original), values(update));
        if o == u {
            return;
        }
        let ty = if u.is_superset(&o) {
            Type::ENUM_ARRAY_EXTENDED
        } else if o.is_superset(&u) {
            Type::ENUM_ARRAY_NARROWED
        } else {
            Type::ENUM_ARRAY_CHANGED
        };
        self.add_at("enum", ty);
    }

    /// A numeric keyword; `types` are: added, removed, increased, decreased.
    fn compare_limit(
        &mut self,
        original: Loc<'_>,
        update: Loc<'_>,
        keyword: &str,
        [added, removed, increased, decreased]: [Type; 4],
    ) {
        let ty = match (original.number(keyword), update.number(keyword)) {
            (None, Some(_)) => added,
            (Some(_), None) => removed,
            (Some(o), Some(u)) if o < u => increased,
            (Some(o), Some(u)) if o > u => decreased,
            _ => return,
        };
        self.add_at(keyword, ty);
    }
}

fn compatible(differences: &[Difference]) -> bool {
    differences.iter().all(|d| d.ty.compatible())
}

fn is_multiple(value: f64, of: f64) -> bool {
    if of == 0.0 || !value.is_finite() || !of.is_finite() {
        return false;
    }
    let quotient = value / of;
    (quotient - quotient.round()).abs() < 1e-9
}

/// Subschemas with equal text collapse into one, as Confluent's sets of subschemas do.
fn distinct<'a, 'b>(subs: &'b [Sub<'a>]) -> Vec<Sub<'a>> {
    let mut out: Vec<Sub<'a>> = Vec::with_capacity(subs.len());
    for sub in subs {
        let duplicate = match sub {
            Sub::Loc(loc) => out
                .iter()
                .any(|s| matches!(s, Sub::Loc(other) if other.value == loc.value)),
            Sub::Shape(Shape::Typed(kind, _)) => out
                .iter()
                .any(|s| matches!(s, Sub::Shape(Shape::Typed(other, _)) if other == kind)),
            Sub::Shape(_) => false,
        };
        if !duplicate {
            out.push(sub.clone());
        }
    }
    out
}

/// The edges (indexes into `edges`) of a maximum matching between `left` and `right` nodes, by
/// breadth-first augmenting paths (no recursion, whatever the sizes).
fn maximum_matching(
    left: usize,
    right: usize,
    edges: &[(usize, usize, Vec<Difference>)],
) -> Vec<usize> {
    let mut adjacent: Vec<Vec<(usize, usize)>> = vec![Vec::new(); left];
    for (index, &(l, r, _)) in edges.iter().enumerate() {
        if let Some(list) = adjacent.get_mut(l) {
            if r < right {
                list.push((r, index));
            }
        }
    }
    // For each right node, the left node and the edge it is matched by.
    let mut matched_right: Vec<Option<(usize, usize)>> = vec![None; right];
    let mut matched_left: Vec<Option<usize>> = vec![None; left];
    for start in 0..left {
        let mut reached_by: Vec<Option<(usize, usize)>> = vec![None; right];
        let mut queue = VecDeque::from([start]);
        let mut free = None;
        'search: while let Some(l) = queue.pop_front() {
            for &(r, edge) in &adjacent[l] {
                if reached_by[r].is_some() {
                    continue;
                }
                reached_by[r] = Some((l, edge));
                match matched_right[r] {
                    None => {
                        free = Some(r);
                        break 'search;
                    }
                    Some((next, _)) => queue.push_back(next),
                }
            }
        }
        let mut r = match free {
            Some(r) => r,
            None => continue,
        };
        // Flip the path back to `start`.
        while let Some((l, edge)) = reached_by[r] {
            let previous = matched_left[l];
            matched_right[r] = Some((l, edge));
            matched_left[l] = Some(r);
            match previous {
                Some(p) => r = p,
                None => break,
            }
        }
    }
    matched_right
        .into_iter()
        .flatten()
        .map(|(_, edge)| edge)
        .collect()
}

fn properties(loc: Loc<'_>) -> BTreeMap<&str, Loc<'_>> {
    loc.get("properties")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| (k.as_str(), loc.child(v))).collect())
        .unwrap_or_default()
}

fn required(loc: Loc<'_>) -> BTreeSet<&str> {
    loc.get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn has_default(loc: Loc<'_>) -> bool {
    loc.get("default").is_some()
}

/// Open: any other property is allowed, with any value.
fn is_open_object(loc: Loc<'_>) -> bool {
    let no_patterns = loc
        .get("patternProperties")
        .and_then(Value::as_object)
        .is_none_or(Map::is_empty);
    no_patterns
        && !matches!(
            loc.get("additionalProperties"),
            Some(Value::Bool(false) | Value::Object(_))
        )
}

/// The schema an object gives a property it does not list: the first `patternProperties` entry whose
/// pattern matches the name, else `additionalProperties` when it is a schema.
fn partial_object_schema<'a>(loc: Loc<'a>, name: &str) -> Option<Loc<'a>> {
    if let Some(patterns) = loc.get("patternProperties").and_then(Value::as_object) {
        for (pattern, schema) in patterns {
            if pattern_matches(pattern, name) {
                return Some(loc.child(schema));
            }
        }
    }
    loc.get("additionalProperties")
        .filter(|v| v.is_object())
        .map(|v| loc.child(v))
}

/// Whether an ECMA 262 `pattern` finds a match in `text`, as JSON Schema's pattern keywords mean it:
/// checked with the validator's own regex engine, so the dialect is the one validation uses.
fn pattern_matches(pattern: &str, text: &str) -> bool {
    let schema = serde_json::json!({ "type": "string", "pattern": pattern });
    jsonschema::draft7::new(&schema)
        .map(|v| v.is_valid(&Value::String(text.to_owned())))
        .unwrap_or(false)
}

type DependencyArrays<'a> = HashMap<&'a str, BTreeSet<&'a str>>;
type DependencySchemas<'a> = HashMap<&'a str, Loc<'a>>;

/// Property dependencies (draft 7's `dependencies` arrays, `dependentRequired`) and schema
/// dependencies (draft 7's `dependencies` schemas, `dependentSchemas`).
fn dependencies(loc: Loc<'_>) -> (DependencyArrays<'_>, DependencySchemas<'_>) {
    let mut arrays = HashMap::new();
    let mut schemas = HashMap::new();
    for keyword in ["dependencies", "dependentRequired", "dependentSchemas"] {
        let Some(map) = loc.get(keyword).and_then(Value::as_object) else {
            continue;
        };
        for (name, value) in map {
            match value {
                Value::Array(names) => {
                    arrays.insert(
                        name.as_str(),
                        names.iter().filter_map(Value::as_str).collect(),
                    );
                }
                Value::Object(_) | Value::Bool(_) => {
                    schemas.insert(name.as_str(), loc.child(value));
                }
                _ => {}
            }
        }
    }
    (arrays, schemas)
}

/// An array schema's items as Confluent sees them: one schema for all items, or a tuple of item
/// schemas followed by the schema (or the ban) of additional items.
struct ArrayModel<'a> {
    all_items: Option<Loc<'a>>,
    tuple: Vec<Loc<'a>>,
    /// `additionalItems` (before 2020-12) or `items` after `prefixItems` (2020-12).
    additional: Option<Loc<'a>>,
}

impl<'a> ArrayModel<'a> {
    fn of(loc: Loc<'a>) -> ArrayModel<'a> {
        let items = loc.get("items");
        if let Some(Value::Array(prefix)) = loc.get("prefixItems") {
            return ArrayModel {
                all_items: None,
                tuple: prefix.iter().map(|v| loc.child(v)).collect(),
                additional: loc.subschema("items"),
            };
        }
        match items {
            Some(Value::Array(tuple)) => ArrayModel {
                all_items: None,
                tuple: tuple.iter().map(|v| loc.child(v)).collect(),
                additional: loc.subschema("additionalItems"),
            },
            _ => ArrayModel {
                all_items: loc.subschema("items"),
                tuple: Vec::new(),
                additional: loc.subschema("additionalItems"),
            },
        }
    }

    fn is_open(&self) -> bool {
        self.additional
            .is_none_or(|l| l.value == &Value::Bool(true))
    }

    fn partial(&self) -> Option<Loc<'a>> {
        self.additional.filter(|l| l.value.is_object())
    }
}
