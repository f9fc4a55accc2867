//! JSON Schema through the registry's public API: parsing, canonical forms, references, payload
//! validation, and Confluent's compatibility verdicts at every level.

mod common;

use std::sync::Arc;

use nerve_registry::compatibility::{check, Earlier};
use nerve_registry::{parse, CompatibilityLevel, Dependency, ParsedSchema, SchemaType};

fn json(text: &str) -> Arc<dyn ParsedSchema> {
    match parse(SchemaType::Json, text, &[]) {
        Ok(schema) => schema,
        Err(e) => panic!("{text} does not parse: {e}"),
    }
}

fn history(texts: &[&str]) -> Vec<Earlier> {
    common::history(SchemaType::Json, texts)
}

const OPEN_V1: &str = r#"{"type":"object","properties":{"name":{"type":"string"}}}"#;
const OPEN_V2_OPTIONAL: &str =
    r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}}}"#;
const CLOSED_V1: &str =
    r#"{"type":"object","properties":{"name":{"type":"string"}},"additionalProperties":false}"#;
const CLOSED_V2_OPTIONAL: &str = r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"additionalProperties":false}"#;
const CLOSED_V2_REQUIRED: &str = r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["age"],"additionalProperties":false}"#;
const CLOSED_V2_REQUIRED_DEFAULT: &str = r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","default":0}},"required":["age"],"additionalProperties":false}"#;
const TWO_FIELDS: &str =
    r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}}}"#;
const AGE_REQUIRED: &str = r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["age"]}"#;
const AGE_REQUIRED_DEFAULT: &str = r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer","default":0}},"required":["age"]}"#;
const INTEGER: &str = r#"{"type":"object","properties":{"n":{"type":"integer"}}}"#;
const NUMBER: &str = r#"{"type":"object","properties":{"n":{"type":"number"}}}"#;
const STRING: &str = r#"{"type":"string"}"#;
const STRING_MAX_10: &str = r#"{"type":"string","maxLength":10}"#;
const STRING_MAX_20: &str = r#"{"type":"string","maxLength":20}"#;
const ENUM_AB: &str = r#"{"type":"string","enum":["a","b"]}"#;
const ENUM_ABC: &str = r#"{"type":"string","enum":["a","b","c"]}"#;
const ADDITIONAL_FALSE: &str =
    r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":false}"#;
const ADDITIONAL_TRUE: &str =
    r#"{"type":"object","properties":{"a":{"type":"string"}},"additionalProperties":true}"#;

use common::Verdicts;
const ONLY_BACKWARD: Verdicts = [true, true, false, false, false, false, true];
const ONLY_FORWARD: Verdicts = [false, false, true, true, false, false, true];
const ALL: Verdicts = [true; 7];
const ONLY_NONE: Verdicts = [false, false, false, false, false, false, true];

struct Case {
    name: &'static str,
    earlier: &'static [&'static str],
    new: &'static str,
    expected: Verdicts,
}

const CASES: &[Case] = &[
    Case {
        // Confluent: an open writer may have written anything under the new name.
        name: "optional property added to an open content model",
        earlier: &[OPEN_V1],
        new: OPEN_V2_OPTIONAL,
        expected: ONLY_FORWARD,
    },
    Case {
        name: "optional property added to a closed content model",
        earlier: &[CLOSED_V1],
        new: CLOSED_V2_OPTIONAL,
        expected: ONLY_BACKWARD,
    },
    Case {
        name: "required property without default added to a closed content model",
        earlier: &[CLOSED_V1],
        new: CLOSED_V2_REQUIRED,
        expected: ONLY_NONE,
    },
    Case {
        name: "required property with default added to a closed content model",
        earlier: &[CLOSED_V1],
        new: CLOSED_V2_REQUIRED_DEFAULT,
        expected: ONLY_BACKWARD,
    },
    Case {
        name: "existing property made required",
        earlier: &[TWO_FIELDS],
        new: AGE_REQUIRED,
        expected: ONLY_FORWARD,
    },
    Case {
        name: "existing property made required with a default",
        earlier: &[TWO_FIELDS],
        new: AGE_REQUIRED_DEFAULT,
        expected: ALL,
    },
    Case {
        name: "property removed from an open content model",
        earlier: &[OPEN_V2_OPTIONAL],
        new: OPEN_V1,
        expected: ONLY_BACKWARD,
    },
    Case {
        name: "property removed from a closed content model",
        earlier: &[CLOSED_V2_OPTIONAL],
        new: CLOSED_V1,
        expected: ONLY_FORWARD,
    },
    Case {
        name: "type widened from integer to number",
        earlier: &[INTEGER],
        new: NUMBER,
        expected: ONLY_BACKWARD,
    },
    Case {
        name: "type narrowed from number to integer",
        earlier: &[NUMBER],
        new: INTEGER,
        expected: ONLY_FORWARD,
    },
    Case {
        name: "type changed from string to integer",
        earlier: &[r#"{"type":"string"}"#],
        new: r#"{"type":"integer"}"#,
        expected: ONLY_NONE,
    },
    Case {
        name: "null added to a type",
        earlier: &[STRING],
        new: r#"{"type":["string","null"]}"#,
        expected: ONLY_BACKWARD,
    },
    Case {
        name: "maxLength added",
        earlier: &[STRING],
        new: STRING_MAX_10,
        expected: ONLY_FORWARD,
    },
    Case {
        name: "maxLength increased",
        earlier: &[STRING_MAX_10],
        new: STRING_MAX_20,
        expected: ONLY_BACKWARD,
    },
    Case {
        name: "maxLength decreased",
        earlier: &[STRING_MAX_20],
        new: STRING_MAX_10,
        expected: ONLY_FORWARD,
    },
    Case {
        name: "enum value added",
        earlier: &[ENUM_AB],
        new: ENUM_ABC,
        expected: ONLY_BACKWARD,
    },
    Case {
        name: "enum value removed",
        earlier: &[ENUM_ABC],
        new: ENUM_AB,
        expected: ONLY_FORWARD,
    },
    Case {
        name: "additionalProperties false to true",
        earlier: &[ADDITIONAL_FALSE],
        new: ADDITIONAL_TRUE,
        expected: ONLY_BACKWARD,
    },
    Case {
        name: "additionalProperties true to false",
        earlier: &[ADDITIONAL_TRUE],
        new: ADDITIONAL_FALSE,
        expected: ONLY_FORWARD,
    },
    Case {
        name: "same schema reformatted",
        earlier: &[OPEN_V1],
        new: "{ \"properties\": { \"name\": { \"type\": \"string\" } },\n  \"type\": \"object\" }",
        expected: ALL,
    },
    Case {
        name: "oneOf extended with a member",
        earlier: &[r#"{"oneOf":[{"type":"string"},{"type":"integer"}]}"#],
        new: r#"{"oneOf":[{"type":"string"},{"type":"integer"},{"type":"boolean"}]}"#,
        expected: ONLY_BACKWARD,
    },
    Case {
        name: "array items type narrowed",
        earlier: &[r#"{"type":"array","items":{"type":"number"}}"#],
        new: r#"{"type":"array","items":{"type":"integer"}}"#,
        expected: ONLY_FORWARD,
    },
    Case {
        name: "nested object property added to closed model, followed through $ref",
        earlier: &[
            r##"{"type":"object","properties":{"a":{"$ref":"#/definitions/A"}},"definitions":{"A":{"type":"object","properties":{"x":{"type":"string"}},"additionalProperties":false}}}"##,
        ],
        new: r##"{"type":"object","properties":{"a":{"$ref":"#/definitions/A"}},"definitions":{"A":{"type":"object","properties":{"x":{"type":"string"},"y":{"type":"string"}},"required":["y"],"additionalProperties":false}}}"##,
        expected: ONLY_NONE,
    },
    Case {
        // v1 → v3 narrows `n` to integer again, which only the transitive levels compare.
        name: "three versions: only transitive levels see version 1",
        earlier: &[INTEGER, NUMBER],
        new: r#"{"type":"object","properties":{"n":{"type":"number","maximum":100}}}"#,
        // Latest (v2) → v3: maximum added (backward no, forward yes). v1 → v3: type extended plus
        // maximum added (backward no), forward: number→integer narrowed (no).
        expected: [false, false, true, false, false, false, true],
    },
    Case {
        name: "three versions: widening chain is backward transitive but not forward",
        earlier: &[ENUM_AB, ENUM_ABC],
        new: r#"{"type":"string","enum":["a","b","c","d"]}"#,
        expected: ONLY_BACKWARD,
    },
    Case {
        name: "three versions: history has an incompatible step only v1 sees",
        earlier: &[OPEN_V2_OPTIONAL, OPEN_V1],
        new: r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"string"}}}"#,
        // v2 (latest, no age) → v3 (age string): age added to an open model: backward no, forward
        // yes. v1 (age integer) → v3: TYPE_CHANGED both ways.
        expected: [false, false, true, false, false, false, true],
    },
];

#[test]
fn compatibility_table() {
    let failures: Vec<String> = CASES
        .iter()
        .flat_map(|case| {
            common::mismatches(
                SchemaType::Json,
                case.name,
                case.earlier,
                case.new,
                case.expected,
            )
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn transitive_history_only_transitive_levels_fail() {
    // v1 → v2 → v3 each add an enum value... then v3 drops what v1 had: only v1 lacks the overlap.
    let earlier = history(&[
        r#"{"type":"string","enum":["a","b"]}"#,
        r#"{"type":"string","enum":["b","c"]}"#,
    ]);
    let new = json(r#"{"type":"string","enum":["b","c","d"]}"#);
    assert!(check(CompatibilityLevel::Backward, new.as_ref(), &earlier).is_empty());
    let problems = check(
        CompatibilityLevel::BackwardTransitive,
        new.as_ref(),
        &earlier,
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("ENUM_ARRAY_CHANGED: #/enum")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("oldSchemaVersion: 1")),
        "{problems:?}"
    );
    assert!(
        !problems.iter().any(|p| p.contains("oldSchemaVersion: 2")),
        "{problems:?}"
    );
}

#[test]
fn problem_messages_name_type_and_path() {
    let earlier = history(&[r#"{"type":"object","properties":{"session_id":{"type":"string"}}}"#]);
    let new = json(
        r#"{"type":"object","properties":{"session_id":{"type":"string"}},"required":["session_id"]}"#,
    );
    let problems = check(CompatibilityLevel::Backward, new.as_ref(), &earlier);
    assert_eq!(
        problems,
        [
            "backward: REQUIRED_ATTRIBUTE_ADDED: #/required/session_id: the keyword in the reader \
             schema is not present in the writer schema",
            "{oldSchemaVersion: 1}",
            "{oldSchema: '{\"properties\":{\"session_id\":{\"type\":\"string\"}},\"type\":\"object\"}'}",
            "{compatibility: 'BACKWARD'}",
        ]
    );

    let problems = check(
        CompatibilityLevel::Backward,
        json(OPEN_V2_OPTIONAL).as_ref(),
        &history(&[OPEN_V1]),
    );
    assert!(
        problems[0]
            .starts_with("backward: PROPERTY_ADDED_TO_OPEN_CONTENT_MODEL: #/properties/age: "),
        "{problems:?}"
    );

    let problems = check(
        CompatibilityLevel::Backward,
        json(INTEGER).as_ref(),
        &history(&[NUMBER]),
    );
    assert!(
        problems[0].starts_with("backward: TYPE_NARROWED: #/properties/n: "),
        "{problems:?}"
    );
}

#[test]
fn identical_schema_is_fully_transitively_compatible() {
    let earlier = history(&[STRING, STRING]);
    let new = json(STRING);
    assert!(check(CompatibilityLevel::FullTransitive, new.as_ref(), &earlier).is_empty());
}

#[test]
fn recursive_schemas_terminate() {
    let tree = r##"{"$ref":"#/definitions/node","definitions":{"node":{"type":"object","properties":{"value":{"type":"integer"},"children":{"type":"array","items":{"$ref":"#/definitions/node"}}}}}}"##;
    let wider = r##"{"$ref":"#/definitions/node","definitions":{"node":{"type":"object","properties":{"value":{"type":"number"},"children":{"type":"array","items":{"$ref":"#/definitions/node"}}}}}}"##;
    let problems = check(
        CompatibilityLevel::Full,
        json(wider).as_ref(),
        &history(&[tree]),
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("TYPE_NARROWED: #/properties/value")),
        "{problems:?}"
    );
    assert!(check(
        CompatibilityLevel::Full,
        json(tree).as_ref(),
        &history(&[tree])
    )
    .is_empty());
}

#[test]
fn parse_errors_are_invalid_schema() {
    for (text, expected) in [
        ("{\"type\": ", "invalid JSON"),
        ("[1, 2]", "object or a boolean"),
        (r#"{"type": 12}"#, "invalid JSON schema"),
        (r#"{"type": "strng"}"#, "invalid JSON schema"),
        (r#"{"$ref": "missing.json"}"#, "invalid JSON schema"),
        (r##"{"$ref": "#/definitions/nope"}"##, "invalid JSON schema"),
        (
            r#"{"$schema": "https://example.com/my-meta", "type": "string"}"#,
            "unsupported $schema",
        ),
    ] {
        match parse(SchemaType::Json, text, &[]) {
            Ok(_) => panic!("{text} parsed"),
            Err(e) => assert!(e.0.contains(expected), "{text}: {e}"),
        }
    }
}

#[test]
fn drafts_parse() {
    let draft_2020 = r#"{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"array","prefixItems":[{"type":"string"}],"items":false}"#;
    let schema = json(draft_2020);
    assert!(schema.validate_payload(br#"["a"]"#).is_ok());
    assert!(schema.validate_payload(br#"["a", 1]"#).is_err());
    json(r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"string"}"#);
    json(r#"{"$schema":"http://json-schema.org/draft-04/schema#","type":"string"}"#);
    json(r#"{"$schema":"https://json-schema.org/draft/2019-09/schema","type":"string"}"#);
    json("true");
}

#[test]
fn canonical_and_normalized_forms() {
    let a =
        json(r#"{"type":"object","properties":{"b":{"type":"string"},"a":{"type":"integer"}}}"#);
    let b = json(
        "{\n  \"properties\": {\n    \"a\": {\"type\": \"integer\"},\n    \"b\": {\"type\": \"string\"}\n  },\n  \"type\": \"object\"\n}",
    );
    assert_eq!(a.canonical(), b.canonical());
    assert_eq!(
        a.canonical(),
        r#"{"properties":{"a":{"type":"integer"},"b":{"type":"string"}},"type":"object"}"#
    );
    assert_ne!(a.canonical(), json(OPEN_V1).canonical());

    let spelled = json(r#"{"type":["object"],"required":["b","a"],"properties":{"a":{},"b":{}}}"#);
    let plain = json(r#"{"type":"object","required":["a","b"],"properties":{"a":{},"b":{}}}"#);
    assert_ne!(spelled.canonical(), plain.canonical());
    assert_eq!(spelled.normalized(), plain.normalized());
    // Enum order is kept: code generators see it.
    assert_ne!(
        json(ENUM_AB).normalized(),
        json(r#"{"type":"string","enum":["b","a"]}"#).normalized()
    );
}

fn dependency(name: &str, schema: &str) -> Dependency {
    Dependency {
        name: name.into(),
        schema_type: SchemaType::Json,
        schema: schema.into(),
    }
}

#[test]
fn references_resolve_to_dependencies() {
    let customer = r#"{"type":"object","properties":{"id":{"type":"integer"}},"required":["id"]}"#;
    let order = r#"{"type":"object","properties":{"customer":{"$ref":"customer.json"}},"required":["customer"]}"#;
    let schema = parse(
        SchemaType::Json,
        order,
        &[dependency("customer.json", customer)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(schema.validate_payload(br#"{"customer":{"id":1}}"#).is_ok());
    let error = schema.validate_payload(br#"{"customer":{}}"#).unwrap_err();
    assert!(error.contains("/customer"), "{error}");

    let missing = parse(SchemaType::Json, order, &[]).unwrap_err();
    assert!(missing.0.contains("customer.json"), "{missing}");

    // An absolute reference name, and a `$id` the relative `$ref` resolves against.
    let absolute = r#"{"$id":"https://example.com/order.schema.json","type":"object","properties":{"customer":{"$ref":"customer.schema.json"}}}"#;
    let schema = parse(
        SchemaType::Json,
        absolute,
        &[dependency(
            "https://example.com/customer.schema.json",
            customer,
        )],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(schema
        .validate_payload(br#"{"customer":{"id":"x"}}"#)
        .is_err());

    let bad = parse(
        SchemaType::Json,
        order,
        &[dependency("customer.json", "{nope")],
    )
    .unwrap_err();
    assert!(bad.0.contains("customer.json"), "{bad}");
}

#[test]
fn compatibility_follows_references_into_dependencies() {
    let customer_v1 = r#"{"type":"object","properties":{"id":{"type":"integer"}}}"#;
    let customer_v2 = r#"{"type":"object","properties":{"id":{"type":"string"}}}"#;
    let order = r#"{"type":"object","properties":{"customer":{"$ref":"customer.json"}}}"#;
    let v1 = parse(
        SchemaType::Json,
        order,
        &[dependency("customer.json", customer_v1)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let v2 = parse(
        SchemaType::Json,
        order,
        &[dependency("customer.json", customer_v2)],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let problems = check(
        CompatibilityLevel::Backward,
        v2.as_ref(),
        &[Earlier {
            version: 1,
            schema: v1,
        }],
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("TYPE_CHANGED: #/properties/customer/properties/id")),
        "{problems:?}"
    );
}

#[test]
fn payload_validation() {
    let schema = json(
        r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name"]}"#,
    );
    assert!(schema.validate_payload(br#"{"name":"x","age":3}"#).is_ok());

    let error = schema.validate_payload(b"{not json").unwrap_err();
    assert!(error.contains("not JSON"), "{error}");
    let error = schema.validate_payload(&[0xff, 0xfe]).unwrap_err();
    assert!(error.contains("UTF-8"), "{error}");
    let error = schema
        .validate_payload(br#"{"name":"x","age":"three"}"#)
        .unwrap_err();
    assert!(error.contains("/age"), "{error}");
    let error = schema.validate_payload(br#"{"age":3}"#).unwrap_err();
    assert!(error.contains("name"), "{error}");
}

#[test]
fn hostile_schemas_stay_bounded() {
    // Nested oneOfs whose cross products would explode without memoization and limits.
    let mut text = String::from(r#"{"type":"string"}"#);
    for _ in 0..30 {
        text = format!(r#"{{"oneOf":[{text},{text},{{"type":"integer"}},{{"type":"null"}}]}}"#);
        if text.len() > 1_000_000 {
            break;
        }
    }
    if let Ok(schema) = parse(SchemaType::Json, &text, &[]) {
        let _ = check(
            CompatibilityLevel::FullTransitive,
            schema.as_ref(),
            &[Earlier {
                version: 1,
                schema: schema.clone(),
            }],
        );
    }

    // A cycle of bare `$ref`s.
    let cycle = r##"{"definitions":{"a":{"$ref":"#/definitions/b"},"b":{"$ref":"#/definitions/a"}},"properties":{"x":{"$ref":"#/definitions/a"}}}"##;
    if let Ok(schema) = parse(SchemaType::Json, cycle, &[]) {
        let _ = check(
            CompatibilityLevel::Full,
            schema.as_ref(),
            &[Earlier {
                version: 1,
                schema: schema.clone(),
            }],
        );
    }
}

#[test]
fn deeply_nested_schemas_compare_within_the_stack() {
    // As deep as serde_json lets a document be: objects in `properties`, each level two JSON levels.
    let nested = |leaf: &str| {
        let mut text = leaf.to_owned();
        for _ in 0..62 {
            text = format!(r#"{{"properties":{{"p":{text}}}}}"#);
        }
        text
    };
    let old = json(&nested(r#"{"type":"integer"}"#));
    let new = json(&nested(r#"{"type":"string"}"#));
    let problems = check(
        CompatibilityLevel::Backward,
        new.as_ref(),
        &[Earlier {
            version: 1,
            schema: old,
        }],
    );
    assert!(!problems.is_empty());
    let error = new.validate_payload(br#"{"p":{"p":3}}"#);
    assert!(error.is_ok(), "{error:?}");
}

#[test]
fn payload_errors_show_path_and_reason() {
    let schema = json(r#"{"type":"object","properties":{"age":{"type":"integer"}}}"#);
    let error = schema.validate_payload(br#"{"age":"three"}"#).unwrap_err();
    assert!(
        error.contains("at /age:") && error.contains("integer"),
        "{error}"
    );
}
