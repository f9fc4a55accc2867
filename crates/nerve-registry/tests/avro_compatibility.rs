//! Avro through the registry's public API: compatibility verdicts at every level, parse errors, canonical
//! texts, references and payload validation.

mod common;

use std::sync::Arc;

use apache_avro::types::Value as AvroValue;
use nerve_registry::compatibility::{check, Earlier};
use nerve_registry::{parse, CompatibilityLevel, Dependency, ParsedSchema, SchemaType};

fn avro(text: &str) -> Arc<dyn ParsedSchema> {
    match parse(SchemaType::Avro, text, &[]) {
        Ok(schema) => schema,
        Err(e) => panic!("schema should parse: {e}"),
    }
}

/// A record `test.User` with the given fields (JSON objects, comma-separated).
fn user(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"User","namespace":"test","fields":[{fields}]}}"#)
}

const ID: &str = r#"{"name":"id","type":"int"}"#;

// Verdicts in the order of `CompatibilityLevel::ALL`: BACKWARD, BACKWARD_TRANSITIVE, FORWARD,
// FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE, NONE; `true` means compatible.
const ALL_OK: [bool; 7] = [true, true, true, true, true, true, true];
const BACKWARD_ONLY: [bool; 7] = [true, true, false, false, false, false, true];
const FORWARD_ONLY: [bool; 7] = [false, false, true, true, false, false, true];
const NONE_ONLY: [bool; 7] = [false, false, false, false, false, false, true];

struct Case {
    name: &'static str,
    old: Vec<String>,
    new: String,
    verdicts: [bool; 7],
}

fn case(name: &'static str, old: &[&str], new: &str, verdicts: [bool; 7]) -> Case {
    Case {
        name,
        old: old.iter().map(|s| s.to_string()).collect(),
        new: new.to_owned(),
        verdicts,
    }
}

fn enum_field(symbols: &str, default: Option<&str>) -> String {
    let default = default.map_or(String::new(), |d| format!(r#","default":"{d}""#));
    format!(
        r#"{{"name":"color","type":{{"type":"enum","name":"Color","symbols":[{symbols}]{default}}}}}"#
    )
}

fn address(fields: &str) -> String {
    format!(
        r#"{{"name":"address","type":{{"type":"record","name":"Address","fields":[{fields}]}}}}"#
    )
}

fn cases() -> Vec<Case> {
    let name_default = r#"{"name":"name","type":"string","default":""}"#;
    let name_plain = r#"{"name":"name","type":"string"}"#;
    let list = |extra: &str| {
        format!(
            r#"{{"type":"record","name":"Node","fields":[{{"name":"value","type":"long"}},
                {{"name":"next","type":["null","Node"],"default":null}}{extra}]}}"#
        )
    };
    vec![
        case(
            "field added with default",
            &[&user(ID)],
            &user(&format!("{ID},{name_default}")),
            ALL_OK,
        ),
        case(
            "field added without default",
            &[&user(ID)],
            &user(&format!("{ID},{name_plain}")),
            FORWARD_ONLY,
        ),
        case(
            "field removed, it had a default",
            &[&user(&format!("{ID},{name_default}"))],
            &user(ID),
            ALL_OK,
        ),
        case(
            "field removed, it had no default",
            &[&user(&format!("{ID},{name_plain}"))],
            &user(ID),
            BACKWARD_ONLY,
        ),
        case(
            "int widened to long",
            &[&user(ID)],
            &user(r#"{"name":"id","type":"long"}"#),
            BACKWARD_ONLY,
        ),
        case(
            "long narrowed to int",
            &[&user(r#"{"name":"id","type":"long"}"#)],
            &user(ID),
            FORWARD_ONLY,
        ),
        case(
            "float widened to double",
            &[&user(r#"{"name":"x","type":"float"}"#)],
            &user(r#"{"name":"x","type":"double"}"#),
            BACKWARD_ONLY,
        ),
        case(
            "string to bytes",
            &[&user(name_plain)],
            &user(r#"{"name":"name","type":"bytes"}"#),
            ALL_OK,
        ),
        case(
            "int to string",
            &[&user(ID)],
            &user(r#"{"name":"id","type":"string"}"#),
            NONE_ONLY,
        ),
        case(
            "enum symbol added",
            &[&user(&enum_field(r#""RED","GREEN""#, None))],
            &user(&enum_field(r#""RED","GREEN","BLUE""#, None)),
            BACKWARD_ONLY,
        ),
        case(
            "enum symbol removed, no enum default",
            &[&user(&enum_field(r#""RED","GREEN","BLUE""#, None))],
            &user(&enum_field(r#""RED","GREEN""#, None)),
            FORWARD_ONLY,
        ),
        case(
            "enum symbol removed, the new enum has a default",
            &[&user(&enum_field(r#""RED","GREEN","BLUE""#, None))],
            &user(&enum_field(r#""RED","GREEN""#, Some("RED"))),
            ALL_OK,
        ),
        case(
            "enum symbol added, the old enum has a default",
            &[&user(&enum_field(r#""RED","GREEN""#, Some("RED")))],
            &user(&enum_field(r#""RED","GREEN","BLUE""#, Some("RED"))),
            ALL_OK,
        ),
        case(
            "union branch added",
            &[&user(r#"{"name":"tag","type":["null","string"]}"#)],
            &user(r#"{"name":"tag","type":["null","string","int"]}"#),
            BACKWARD_ONLY,
        ),
        case(
            "union branch removed",
            &[&user(r#"{"name":"tag","type":["null","string","int"]}"#)],
            &user(r#"{"name":"tag","type":["null","string"]}"#),
            FORWARD_ONLY,
        ),
        case(
            "field made nullable",
            &[&user(name_plain)],
            &user(r#"{"name":"name","type":["null","string"],"default":null}"#),
            BACKWARD_ONLY,
        ),
        case(
            "union branch reordered",
            &[&user(r#"{"name":"tag","type":["null","string"]}"#)],
            &user(r#"{"name":"tag","type":["string","null"]}"#),
            ALL_OK,
        ),
        case(
            "field renamed with an alias",
            &[&user(name_plain)],
            &user(r#"{"name":"full_name","type":"string","aliases":["name"]}"#),
            BACKWARD_ONLY,
        ),
        case(
            "field renamed without an alias",
            &[&user(name_plain)],
            &user(r#"{"name":"full_name","type":"string"}"#),
            NONE_ONLY,
        ),
        case(
            "nested record gains a field without default",
            &[&user(&format!(
                "{ID},{}",
                address(r#"{"name":"city","type":"string"}"#)
            ))],
            &user(&format!(
                "{ID},{}",
                address(r#"{"name":"city","type":"string"},{"name":"zip","type":"string"}"#)
            )),
            FORWARD_ONLY,
        ),
        case(
            "array item type changed",
            &[&user(
                r#"{"name":"tags","type":{"type":"array","items":"int"}}"#,
            )],
            &user(r#"{"name":"tags","type":{"type":"array","items":"string"}}"#),
            NONE_ONLY,
        ),
        case(
            "map value type widened",
            &[&user(
                r#"{"name":"m","type":{"type":"map","values":"int"}}"#,
            )],
            &user(r#"{"name":"m","type":{"type":"map","values":"long"}}"#),
            BACKWARD_ONLY,
        ),
        case(
            "fixed size changed",
            &[&user(
                r#"{"name":"hash","type":{"type":"fixed","name":"Hash","size":16}}"#,
            )],
            &user(r#"{"name":"hash","type":{"type":"fixed","name":"Hash","size":32}}"#),
            NONE_ONLY,
        ),
        case(
            "record renamed without an alias",
            &[r#"{"type":"record","name":"A","fields":[]}"#],
            r#"{"type":"record","name":"B","fields":[]}"#,
            NONE_ONLY,
        ),
        case(
            "record renamed with an alias",
            &[r#"{"type":"record","name":"A","namespace":"n","fields":[]}"#],
            r#"{"type":"record","name":"B","namespace":"n","aliases":["A"],"fields":[]}"#,
            BACKWARD_ONLY,
        ),
        case(
            "record moved to another namespace",
            &[r#"{"type":"record","name":"A","namespace":"x","fields":[]}"#],
            r#"{"type":"record","name":"A","namespace":"y","fields":[]}"#,
            ALL_OK,
        ),
        case(
            "recursive record gains a field with default",
            &[&list("")],
            &list(r#",{"name":"label","type":"string","default":""}"#),
            ALL_OK,
        ),
        case(
            "recursive record gains a field without default",
            &[&list("")],
            &list(r#",{"name":"label","type":"string"}"#),
            FORWARD_ONLY,
        ),
        case(
            "logical type over the same underlying type",
            &[&user(r#"{"name":"at","type":"long"}"#)],
            &user(r#"{"name":"at","type":{"type":"long","logicalType":"timestamp-millis"}}"#),
            ALL_OK,
        ),
        case(
            // v3 drops the default v2 gave `name`: v3 still reads v2 (which always has `name`) but not v1.
            "three versions, only v1 conflicts",
            &[&user(ID), &user(&format!("{ID},{name_default}"))],
            &user(&format!("{ID},{name_plain}")),
            [true, false, true, true, true, false, true],
        ),
    ]
}

#[test]
fn verdicts_at_every_level() {
    let failures: Vec<String> = cases()
        .iter()
        .flat_map(|case| {
            let old: Vec<&str> = case.old.iter().map(String::as_str).collect();
            common::mismatches(SchemaType::Avro, case.name, &old, &case.new, case.verdicts)
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn problem_messages_name_the_field_and_path() {
    let old = avro(&user(ID));
    let new = avro(&user(&format!(
        r#"{ID},{{"name":"session_id","type":"string"}}"#
    )));
    let problems = new.read_problems(old.as_ref());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].starts_with("READER_FIELD_MISSING_DEFAULT_VALUE:")
            && problems[0].contains("'session_id'")
            && problems[0].contains("'/fields/1'"),
        "{}",
        problems[0]
    );

    let earlier = [Earlier {
        version: 3,
        schema: old,
    }];
    let problems = check(CompatibilityLevel::Backward, new.as_ref(), &earlier);
    assert!(problems[0].starts_with("backward: READER_FIELD_MISSING_DEFAULT_VALUE"));
    assert_eq!(
        problems.last().map(String::as_str),
        Some("{compatibility: 'BACKWARD'}")
    );
    assert!(problems.iter().any(|p| p == "{oldSchemaVersion: 3}"));

    let nested_old = avro(&user(&address(r#"{"name":"city","type":"string"}"#)));
    let nested_new = avro(&user(&address(r#"{"name":"city","type":"int"}"#)));
    let problems = nested_new.read_problems(nested_old.as_ref());
    assert!(
        problems.len() == 1 && problems[0].contains("'/fields/0/type/fields/0/type'"),
        "{problems:?}"
    );

    let enum_old = avro(&user(&enum_field(r#""RED","GREEN","BLUE""#, None)));
    let enum_new = avro(&user(&enum_field(r#""RED""#, None)));
    let problems = enum_new.read_problems(enum_old.as_ref());
    assert!(
        problems.len() == 1
            && problems[0].starts_with("MISSING_ENUM_SYMBOLS")
            && problems[0].contains("[GREEN, BLUE]"),
        "{problems:?}"
    );
}

#[test]
fn top_level_unions_and_primitives() {
    let string = avro(r#""string""#);
    let nullable = avro(r#"["null","string"]"#);
    let int = avro(r#"{"type":"int"}"#);
    assert!(nullable.read_problems(string.as_ref()).is_empty());
    assert_eq!(string.read_problems(nullable.as_ref()).len(), 1);
    assert!(avro(r#""long""#).read_problems(int.as_ref()).is_empty());
    assert!(!int.read_problems(avro(r#""long""#).as_ref()).is_empty());
    assert!(avro(r#"["int","string"]"#)
        .read_problems(avro(r#"["string","int"]"#).as_ref())
        .is_empty());
}

#[test]
fn parse_errors_are_invalid_schema() {
    for (what, text) in [
        ("bad JSON", r#"{"type":"record","#),
        ("unknown type name", &user(r#"{"name":"x","type":"strin"}"#)),
        (
            "bad default",
            &user(r#"{"name":"x","type":"int","default":"one"}"#),
        ),
        (
            "int default out of range",
            &user(r#"{"name":"x","type":"int","default":3000000000}"#),
        ),
        (
            "union default matches no branch",
            &user(r#"{"name":"x","type":["null","int"],"default":"a"}"#),
        ),
        (
            "enum default not a symbol",
            &user(&enum_field(r#""A""#, Some("B"))),
        ),
        ("field without type", &user(r#"{"name":"x"}"#)),
        (
            "invalid record name",
            r#"{"type":"record","name":"1x","fields":[]}"#,
        ),
        (
            "invalid alias",
            r#"{"type":"record","name":"x","aliases":["a-b"],"fields":[]}"#,
        ),
        ("duplicate field", &user(&format!("{ID},{ID}"))),
        ("nested union", r#"["null",["int","string"]]"#),
        ("duplicate union branch", r#"["int","int"]"#),
        (
            "type defined twice",
            r#"["null",{"type":"fixed","name":"F","size":1},{"type":"fixed","name":"F","size":1}]"#,
        ),
        ("array without items", r#"{"type":"array"}"#),
        ("not a schema", "42"),
    ] {
        match parse(SchemaType::Avro, text, &[]) {
            Err(e) => assert!(!e.0.is_empty(), "{what}: a reason"),
            Ok(_) => panic!("{what} should not parse: {text}"),
        }
    }
    let e = parse(
        SchemaType::Avro,
        &user(r#"{"name":"x","type":"int","default":"one"}"#),
        &[],
    )
    .err()
    .map(|e| e.0)
    .unwrap_or_default();
    assert!(e.contains("Invalid default for field 'test.User.x'"), "{e}");
}

#[test]
fn canonical_ignores_formatting_only() {
    let compact = r#"{"type":"record","name":"User","namespace":"a","doc":"d","fields":[{"name":"id","type":"int","default":0},{"name":"m","type":{"type":"map","values":"long"},"x-prop":{"b":1,"a":2}}]}"#;
    let reformatted = r#"
    {
        "fields": [
            { "type": "int", "default": 0, "name": "id" },
            { "x-prop": { "a": 2, "b": 1 }, "name": "m", "type": { "values": {"type": "long"}, "type": "map" } }
        ],
        "doc": "d",
        "namespace": "a",
        "type": "record",
        "name": "User"
    }"#;
    let a = avro(compact);
    let b = avro(reformatted);
    assert_eq!(a.canonical(), b.canonical());
    assert_eq!(a.normalized(), b.normalized());
    assert!(a.canonical().contains(r#""doc":"d""#), "{}", a.canonical());
    assert!(
        a.canonical().contains(r#""x-prop":{"a":2,"b":1}"#),
        "{}",
        a.canonical()
    );
    assert!(!a.canonical().contains(' '));

    // Each of these differs from `compact` in one respect, and must not share its text.
    for other in [
        compact.replace(r#""default":0"#, r#""default":1"#),
        compact.replace(r#""doc":"d""#, r#""doc":"e""#),
        compact.replace(r#""long""#, r#""int""#),
        compact.replace(r#""namespace":"a""#, r#""namespace":"b""#),
        compact.replace(r#""a":2"#, r#""a":3"#),
    ] {
        assert_ne!(a.canonical(), avro(&other).canonical(), "{other}");
    }

    assert_eq!(avro(r#"{"type":"string"}"#).canonical(), r#""string""#);
    assert_ne!(
        avro(r#"{"type":"string","logicalType":"uuid"}"#).canonical(),
        avro(r#""string""#).canonical()
    );
}

#[test]
fn normalized_qualifies_names() {
    let dotted =
        avro(r#"{"type":"record","name":"a.B","fields":[{"name":"next","type":["null","a.B"]}]}"#);
    let spaced = avro(
        r#"{"type":"record","name":"B","namespace":"a","fields":[{"name":"next","type":["null","B"]}]}"#,
    );
    assert_eq!(dotted.normalized(), spaced.normalized());
    assert_eq!(
        spaced.normalized(),
        r#"{"type":"record","name":"a.B","fields":[{"name":"next","type":["null","a.B"]}]}"#
    );
    assert_eq!(
        spaced.canonical(),
        r#"{"type":"record","name":"B","namespace":"a","fields":[{"name":"next","type":["null","B"]}]}"#
    );
}

const ADDRESS: &str = r#"{"type":"record","name":"Address","namespace":"com.acme","fields":[{"name":"city","type":"string"}]}"#;
const CUSTOMER: &str = r#"{"type":"record","name":"Customer","namespace":"com.acme","fields":[{"name":"name","type":"string"},{"name":"home","type":"Address"}]}"#;

fn reference(name: &str, schema: &str) -> Dependency {
    Dependency {
        name: name.into(),
        schema_type: SchemaType::Avro,
        schema: schema.into(),
    }
}

#[test]
fn references_resolve_named_types() {
    let order = r#"{"type":"record","name":"Order","namespace":"shop","fields":[{"name":"customer","type":"com.acme.Customer"},{"name":"ship_to","type":"com.acme.Address"}]}"#;
    let dependencies = [
        reference("com.acme.Address", ADDRESS),
        reference("com.acme.Customer", CUSTOMER),
    ];
    let parsed = match parse(SchemaType::Avro, order, &dependencies) {
        Ok(parsed) => parsed,
        Err(e) => panic!("{e}"),
    };
    // The referencing schema's texts name the referenced types instead of inlining them.
    assert!(
        !parsed.canonical().contains("city"),
        "{}",
        parsed.canonical()
    );
    assert!(parsed
        .normalized()
        .contains(r#""type":"com.acme.Customer""#));

    // `format=resolved` inlines each referenced type once, where first used.
    let resolved = parsed.formatted("resolved").unwrap_or_default();
    assert_eq!(
        resolved.matches(r#""name":"city""#).count(),
        1,
        "{resolved}"
    );
    assert!(
        apache_avro::Schema::parse_str(&resolved).is_ok(),
        "{resolved}"
    );

    assert!(parse(SchemaType::Avro, order, &[]).is_err());
    assert!(parse(SchemaType::Avro, order, &dependencies[..1]).is_err());

    // A payload of the referencing schema, encoded with the resolved schema.
    let schema = match apache_avro::Schema::parse_str(&resolved) {
        Ok(schema) => schema,
        Err(e) => panic!("{e}"),
    };
    let address =
        |city: &str| AvroValue::Record(vec![("city".into(), AvroValue::String(city.into()))]);
    let value = AvroValue::Record(vec![
        (
            "customer".into(),
            AvroValue::Record(vec![
                ("name".into(), AvroValue::String("Ann".into())),
                ("home".into(), address("Oslo")),
            ]),
        ),
        ("ship_to".into(), address("Bergen")),
    ]);
    let bytes = match apache_avro::to_avro_datum(&schema, value) {
        Ok(bytes) => bytes,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(parsed.validate_payload(&bytes), Ok(()));
}

#[test]
fn payload_validation() {
    let text = user(
        r#"{"name":"id","type":"int"},{"name":"name","type":"string"},{"name":"tag","type":["null","string"]},
           {"name":"scores","type":{"type":"array","items":"double"}}"#,
    );
    let parsed = avro(&text);
    let schema = match apache_avro::Schema::parse_str(&text) {
        Ok(schema) => schema,
        Err(e) => panic!("{e}"),
    };
    let value = AvroValue::Record(vec![
        ("id".into(), AvroValue::Int(-7)),
        ("name".into(), AvroValue::String("Ann".into())),
        (
            "tag".into(),
            AvroValue::Union(1, Box::new(AvroValue::String("vip".into()))),
        ),
        (
            "scores".into(),
            AvroValue::Array(vec![AvroValue::Double(1.5), AvroValue::Double(2.0)]),
        ),
    ]);
    let bytes = match apache_avro::to_avro_datum(&schema, value) {
        Ok(bytes) => bytes,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(parsed.validate_payload(&bytes), Ok(()));

    for cut in 0..bytes.len() {
        assert!(
            parsed.validate_payload(&bytes[..cut]).is_err(),
            "truncated to {cut} bytes"
        );
    }

    let mut trailing = bytes.clone();
    trailing.push(0);
    let e = parsed.validate_payload(&trailing).err().unwrap_or_default();
    assert!(e.contains("left over"), "{e}");

    // id = 1, name = "x", then union index 5 of a two-branch union.
    let e = parsed
        .validate_payload(&[0x02, 0x02, b'x', 0x0a])
        .err()
        .unwrap_or_default();
    assert!(e.contains("invalid union index 5"), "{e}");

    // A string length beyond the payload is refused without allocating it.
    let e = parsed
        .validate_payload(&[0x02, 0xfe, 0xff, 0xff, 0xff, 0x0f])
        .err()
        .unwrap_or_default();
    assert!(e.contains("the data ends"), "{e}");
}

#[test]
fn deep_payloads_of_recursive_schemas_are_refused() {
    let parsed = avro(
        r#"{"type":"record","name":"Node","fields":[{"name":"next","type":["null","Node"]}]}"#,
    );
    // Each level is union index 1 (zig-zag 0x02), the last one null.
    let mut payload = vec![0x02; 100_000];
    payload.push(0x00);
    let e = parsed.validate_payload(&payload).err().unwrap_or_default();
    assert!(e.contains("deeper than"), "{e}");
    let mut shallow = vec![0x02; 10];
    shallow.push(0x00);
    assert_eq!(parsed.validate_payload(&shallow), Ok(()));
}

#[test]
fn resolved_keeps_namespaces_of_inlined_types() {
    // `a.Color` is defined inside `a.Outer`, so it takes `a` from there; inlined into a schema in namespace
    // `b` it must say so.
    let outer = r#"{"type":"record","name":"Outer","namespace":"a","fields":[{"name":"c","type":{"type":"enum","name":"Color","symbols":["RED"]}}]}"#;
    let main = r#"{"type":"record","name":"Paint","namespace":"b","fields":[{"name":"color","type":"a.Color"}]}"#;
    let parsed = match parse(SchemaType::Avro, main, &[reference("a.Outer", outer)]) {
        Ok(parsed) => parsed,
        Err(e) => panic!("{e}"),
    };
    let resolved = parsed.formatted("resolved").unwrap_or_default();
    let reparsed = avro(&resolved);
    assert!(
        reparsed.normalized().contains(r#""name":"a.Color""#),
        "{resolved}"
    );
    assert!(reparsed.read_problems(parsed.as_ref()).is_empty());
}
