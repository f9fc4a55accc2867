//! Protobuf schemas through the registry's public API: Confluent's compatibility verdicts at every level,
//! parsing (text, base64 descriptors, references, well-known types), canonical text, payload validation.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use nerve_registry::compatibility::check;
use nerve_registry::{parse, CompatibilityLevel, Dependency, ParsedSchema, SchemaType};
use prost::Message as _;

fn proto(text: &str) -> Arc<dyn ParsedSchema> {
    parse(SchemaType::Protobuf, text, &[])
        .unwrap_or_else(|e| panic!("schema should parse: {e}\n{text}"))
}

fn problems(level: CompatibilityLevel, old: &[&str], new: &str) -> Vec<String> {
    check(
        level,
        proto(new).as_ref(),
        &common::history(SchemaType::Protobuf, old),
    )
}

use common::Verdicts;

/// The verdicts for one earlier version: transitive levels agree with the plain ones.
const fn single(backward: bool, forward: bool) -> Verdicts {
    [
        backward,
        backward,
        forward,
        forward,
        backward && forward,
        backward && forward,
        true,
    ]
}
const ALL_OK: Verdicts = single(true, true);
const NONE_OK: Verdicts = single(false, false);

struct Case {
    name: &'static str,
    old: &'static [&'static str],
    new: &'static str,
    verdicts: Verdicts,
}

const USER_V1: &str = r#"
syntax = "proto3";
package acme;
message UserViewedProduct {
  string user_id = 1;
  int32 product_id = 2;
}
"#;

const CASES: &[Case] = &[
    Case {
        name: "field added",
        old: &[USER_V1],
        new: r#"syntax = "proto3"; package acme;
            message UserViewedProduct { string user_id = 1; int32 product_id = 2; string page = 3; }"#,
        verdicts: ALL_OK,
    },
    Case {
        name: "field removed",
        old: &[USER_V1],
        new: r#"syntax = "proto3"; package acme;
            message UserViewedProduct { string user_id = 1; }"#,
        verdicts: ALL_OK,
    },
    Case {
        name: "field renamed, same number",
        old: &[USER_V1],
        new: r#"syntax = "proto3"; package acme;
            message UserViewedProduct { string user_id = 1; int32 item_id = 2; }"#,
        verdicts: ALL_OK,
    },
    Case {
        name: "field number reused with another type",
        old: &[USER_V1],
        new: r#"syntax = "proto3"; package acme;
            message UserViewedProduct { string user_id = 1; string referrer = 2; }"#,
        verdicts: NONE_OK,
    },
    Case {
        name: "int32 to int64 (same wire group)",
        old: &[USER_V1],
        new: r#"syntax = "proto3"; package acme;
            message UserViewedProduct { string user_id = 1; int64 product_id = 2; }"#,
        verdicts: ALL_OK,
    },
    Case {
        name: "int32 to sint32 (another wire group)",
        old: &[USER_V1],
        new: r#"syntax = "proto3"; package acme;
            message UserViewedProduct { string user_id = 1; sint32 product_id = 2; }"#,
        verdicts: NONE_OK,
    },
    Case {
        name: "int32 to string",
        old: &[USER_V1],
        new: r#"syntax = "proto3"; package acme;
            message UserViewedProduct { string user_id = 1; string product_id = 2; }"#,
        verdicts: NONE_OK,
    },
    Case {
        name: "string to bytes",
        old: &[USER_V1],
        new: r#"syntax = "proto3"; package acme;
            message UserViewedProduct { bytes user_id = 1; int32 product_id = 2; }"#,
        verdicts: ALL_OK,
    },
    Case {
        name: "int32 to an enum",
        old: &[USER_V1],
        new: r#"syntax = "proto3"; package acme;
            enum Product { UNKNOWN = 0; BOOK = 1; }
            message UserViewedProduct { string user_id = 1; Product product_id = 2; }"#,
        verdicts: ALL_OK,
    },
    Case {
        name: "scalar to message",
        old: &[USER_V1],
        new: r#"syntax = "proto3"; package acme;
            message UserViewedProduct { string user_id = 1; Product product_id = 2; }
            message Product { int32 id = 1; }"#,
        // Forward also sees the new top-level message Product as removed.
        verdicts: NONE_OK,
    },
    Case {
        name: "message type of a field changed",
        old: &[r#"syntax = "proto3"; package acme;
            message Order { Address ship_to = 1; }
            message Address { string street = 1; }
            message Location { double lat = 1; double lon = 2; }"#],
        new: r#"syntax = "proto3"; package acme;
            message Order { Location ship_to = 1; }
            message Address { string street = 1; }
            message Location { double lat = 1; double lon = 2; }"#,
        verdicts: NONE_OK,
    },
    Case {
        name: "required field added (proto2)",
        old: &[r#"syntax = "proto2"; message Order { optional string id = 1; }"#],
        new: r#"syntax = "proto2"; message Order { optional string id = 1; required int64 total = 2; }"#,
        verdicts: NONE_OK,
    },
    Case {
        name: "optional field added (proto2)",
        old: &[r#"syntax = "proto2"; message Order { optional string id = 1; }"#],
        new: r#"syntax = "proto2"; message Order { optional string id = 1; optional int64 total = 2; }"#,
        verdicts: ALL_OK,
    },
    Case {
        name: "optional number made repeated (proto2)",
        old: &[r#"syntax = "proto2"; message Order { optional int64 total = 1; }"#],
        new: r#"syntax = "proto2"; message Order { repeated int64 total = 1; }"#,
        verdicts: NONE_OK,
    },
    Case {
        name: "optional string made repeated (proto2)",
        old: &[r#"syntax = "proto2"; message Order { optional string tag = 1; }"#],
        new: r#"syntax = "proto2"; message Order { repeated string tag = 1; }"#,
        verdicts: ALL_OK,
    },
    Case {
        name: "one field moved into a new oneof",
        old: &[r#"syntax = "proto3"; message Pay { string card = 1; int32 amount = 2; }"#],
        new: r#"syntax = "proto3"; message Pay { oneof method { string card = 1; } int32 amount = 2; }"#,
        verdicts: ALL_OK,
    },
    Case {
        name: "two fields moved into a oneof",
        old: &[r#"syntax = "proto3"; message Pay { string card = 1; string iban = 2; }"#],
        new: r#"syntax = "proto3"; message Pay { oneof method { string card = 1; string iban = 2; } }"#,
        verdicts: single(false, true),
    },
    Case {
        name: "oneof field removed",
        old: &[
            r#"syntax = "proto3"; message Pay { oneof method { string card = 1; string iban = 2; } }"#,
        ],
        new: r#"syntax = "proto3"; message Pay { oneof method { string card = 1; } }"#,
        verdicts: single(false, true),
    },
    Case {
        name: "enum value added",
        old: &[r#"syntax = "proto3"; enum Color { RED = 0; } message Car { Color color = 1; }"#],
        new: r#"syntax = "proto3"; enum Color { RED = 0; BLUE = 1; } message Car { Color color = 1; }"#,
        verdicts: ALL_OK,
    },
    Case {
        name: "enum value renamed",
        old: &[r#"syntax = "proto3"; enum Color { RED = 0; } message Car { Color color = 1; }"#],
        new: r#"syntax = "proto3"; enum Color { CRIMSON = 0; } message Car { Color color = 1; }"#,
        verdicts: ALL_OK,
    },
    Case {
        name: "package changed",
        old: &[USER_V1],
        new: r#"syntax = "proto3"; package acme.v2;
            message UserViewedProduct { string user_id = 1; int32 product_id = 2; }"#,
        verdicts: NONE_OK,
    },
    Case {
        name: "top-level message added",
        old: &[USER_V1],
        new: r#"syntax = "proto3"; package acme;
            message UserViewedProduct { string user_id = 1; int32 product_id = 2; }
            message UserLeft { string user_id = 1; }"#,
        // A reader on the old schema has no UserLeft: Confluent reports MESSAGE_REMOVED going forward.
        verdicts: single(true, false),
    },
    Case {
        name: "top-level messages reordered, so index [0] names another message",
        old: &[r#"syntax = "proto3"; message A { string a = 1; } message B { string b = 1; }"#],
        new: r#"syntax = "proto3"; message B { string b = 1; } message A { string a = 1; }"#,
        // Message indexes are read against the writer's schema id, so Confluent finds a move compatible.
        verdicts: ALL_OK,
    },
    Case {
        name: "first message renamed",
        old: &[r#"syntax = "proto3"; message A { string a = 1; }"#],
        new: r#"syntax = "proto3"; message A2 { string a = 1; }"#,
        verdicts: NONE_OK,
    },
    Case {
        name: "nested message field changed type",
        old: &[r#"syntax = "proto3"; message A { message In { int32 x = 1; } In in = 1; }"#],
        new: r#"syntax = "proto3"; message A { message In { double x = 1; } In in = 1; }"#,
        verdicts: NONE_OK,
    },
    Case {
        name: "map value type widened",
        old: &[r#"syntax = "proto3"; message A { map<string, int32> counts = 1; }"#],
        new: r#"syntax = "proto3"; message A { map<string, int64> counts = 1; }"#,
        verdicts: ALL_OK,
    },
    Case {
        name: "map value type changed",
        old: &[r#"syntax = "proto3"; message A { map<string, int32> counts = 1; }"#],
        new: r#"syntax = "proto3"; message A { map<string, string> counts = 1; }"#,
        verdicts: NONE_OK,
    },
    Case {
        name: "three versions: only transitive levels see version 1",
        old: &[
            r#"syntax = "proto3"; message M { int32 a = 1; string b = 2; }"#,
            r#"syntax = "proto3"; message M { int32 a = 1; }"#,
        ],
        new: r#"syntax = "proto3"; message M { int32 a = 1; double b = 2; }"#,
        verdicts: [true, false, true, false, true, false, true],
    },
];

#[test]
fn compatibility_cases_match_confluent_at_every_level() {
    let failures: Vec<String> = CASES
        .iter()
        .flat_map(|case| {
            common::mismatches(
                SchemaType::Protobuf,
                case.name,
                case.old,
                case.new,
                case.verdicts,
            )
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn problems_name_the_difference_and_path() {
    let new = r#"syntax = "proto3"; package acme;
        message UserViewedProduct { string user_id = 1; string product_id = 2; }"#;
    let found = problems(CompatibilityLevel::Backward, &[USER_V1], new);
    assert_eq!(
        found,
        vec![
            "backward: FIELD_SCALAR_KIND_CHANGED: #/UserViewedProduct/2".to_owned(),
            "{oldSchemaVersion: 1}".to_owned(),
            format!("{{oldSchema: '{}'}}", proto(USER_V1).canonical()),
            "{compatibility: 'BACKWARD'}".to_owned(),
        ]
    );

    let two_moved = problems(
        CompatibilityLevel::Full,
        &[r#"syntax = "proto3"; message Pay { string card = 1; string iban = 2; }"#],
        r#"syntax = "proto3"; message Pay { oneof method { string card = 1; string iban = 2; } }"#,
    );
    assert_eq!(
        two_moved[0],
        "backward: MULTIPLE_FIELDS_MOVED_TO_ONEOF: #/Pay/method"
    );

    let required = problems(
        CompatibilityLevel::Forward,
        &[r#"syntax = "proto2"; message Order { optional string id = 1; }"#],
        r#"syntax = "proto2"; message Order { optional string id = 1; required int64 total = 2; }"#,
    );
    assert_eq!(required[0], "forward: REQUIRED_FIELD_REMOVED: #/Order/2");

    let retyped = problems(
        CompatibilityLevel::Backward,
        &[r#"syntax = "proto3"; message A { message In { int32 x = 1; } In in = 1; }"#],
        r#"syntax = "proto3"; message A { message In { double x = 1; } In in = 1; }"#,
    );
    assert_eq!(retyped[0], "backward: FIELD_SCALAR_KIND_CHANGED: #/A/In/1");
}

#[test]
fn another_schema_type_is_one_problem() {
    let avro_like = OtherType;
    let found = proto(USER_V1).read_problems(&avro_like);
    assert_eq!(found.len(), 1, "{found:?}");
}

#[derive(Debug)]
struct OtherType;

impl ParsedSchema for OtherType {
    fn schema_type(&self) -> SchemaType {
        SchemaType::Avro
    }
    fn canonical(&self) -> String {
        String::new()
    }
    fn normalized(&self) -> String {
        String::new()
    }
    fn read_problems(&self, _: &dyn ParsedSchema) -> Vec<String> {
        Vec::new()
    }
    fn validate_payload(&self, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

#[test]
fn invalid_schemas_are_refused() {
    let cases = [
        (
            "syntax error",
            r#"syntax = "proto3"; message A { string a = ; }"#,
        ),
        (
            "unknown type",
            r#"syntax = "proto3"; message A { Missing a = 1; }"#,
        ),
        (
            "missing import",
            r#"syntax = "proto3"; import "customer.proto"; message A { string a = 1; }"#,
        ),
        (
            "duplicate field number",
            r#"syntax = "proto3"; message A { string a = 1; int32 b = 1; }"#,
        ),
        ("not base64 either", "bm90IGEgZGVzY3JpcHRvcg"),
    ];
    for (name, text) in cases {
        let result = parse(SchemaType::Protobuf, text, &[]);
        match result {
            Ok(_) => panic!("{name}: should not parse"),
            Err(e) => assert!(!e.0.is_empty(), "{name}: empty message"),
        }
    }
    let missing = parse(
        SchemaType::Protobuf,
        r#"syntax = "proto3"; import "customer.proto"; message A { string a = 1; }"#,
        &[],
    )
    .err()
    .map(|e| e.0)
    .unwrap_or_default();
    assert!(missing.contains("customer.proto"), "{missing}");
}

const RICH: &str = r#"
// A comment that is not kept.
syntax = "proto3";
package shop.v1;

import "google/protobuf/timestamp.proto";

option java_package = "com.example.shop";
option go_package = "example.com/shop";

message Order {
  reserved 8, 10 to 12, 100 to max;
  reserved "legacy";
  string id = 1;
  repeated Line lines = 2 [deprecated = true];
  map<string, string> labels = 3;
  google.protobuf.Timestamp placed_at = 4;
  optional int32 priority = 5 [json_name = "prio"];
  oneof payment {
    string card = 6;
    Transfer transfer = 7;
  }
  repeated int32 codes = 9 [packed = false];
  Status status = 13;

  message Line {
    string sku = 1;
    int64 quantity = 2;
  }
  message Transfer { string iban = 1; }
  enum Status {
    option allow_alias = true;
    UNKNOWN = 0;
    OPEN = 1;
    STARTED = 1;
    reserved 5 to 7;
  }
}

service Orders {
  rpc Place (Order) returns (Order);
  rpc Watch (stream Order) returns (stream Order) { option deprecated = true; }
}
"#;

#[test]
fn canonical_text_is_deterministic_and_round_trips() {
    let schema = proto(RICH);
    let canonical = schema.canonical();
    for expected in [
        "syntax = \"proto3\";",
        "package shop.v1;",
        "import \"google/protobuf/timestamp.proto\";",
        "option go_package = \"example.com/shop\";",
        "option java_package = \"com.example.shop\";",
        "map<string, string> labels = 3;",
        "repeated .shop.v1.Order.Line lines = 2 [deprecated = true];",
        ".google.protobuf.Timestamp placed_at = 4;",
        "optional int32 priority = 5 [json_name = \"prio\"];",
        "oneof payment {",
        "repeated int32 codes = 9 [packed = false];",
        "reserved 8, 10 to 12, 100 to max;",
        "reserved \"legacy\";",
        "option allow_alias = true;",
        "reserved 5 to 7;",
        "rpc Place (.shop.v1.Order) returns (.shop.v1.Order);",
        "rpc Watch (stream .shop.v1.Order) returns (stream .shop.v1.Order) {",
    ] {
        assert!(
            canonical.contains(expected),
            "missing {expected:?} in\n{canonical}"
        );
    }
    assert!(!canonical.contains("comment"), "{canonical}");
    assert!(!canonical.contains("LabelsEntry"), "{canonical}");

    let again = proto(&canonical);
    assert_eq!(
        again.canonical(),
        canonical,
        "canonical does not round-trip"
    );

    let squeezed: String = RICH
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(proto(&squeezed).canonical(), canonical);

    // Options written in another order, and a proto3 field referred to by a relative name, print the same.
    let reordered = RICH
        .replace(
            "option java_package = \"com.example.shop\";\noption go_package = \"example.com/shop\";",
            "option go_package = \"example.com/shop\";\noption java_package = \"com.example.shop\";",
        )
        .replace("repeated Line lines", "repeated shop.v1.Order.Line lines");
    assert_ne!(reordered, RICH);
    assert_eq!(proto(&reordered).canonical(), canonical);
}

#[test]
fn normalized_text_ignores_field_order() {
    let a = proto(r#"syntax = "proto3"; message M { int32 b = 2; string a = 1; }"#);
    let b = proto(r#"syntax = "proto3"; message M { string a = 1; int32 b = 2; }"#);
    assert_ne!(a.canonical(), b.canonical());
    assert_eq!(a.normalized(), b.normalized());
    assert_eq!(proto(&a.normalized()).normalized(), a.normalized());
}

#[test]
fn proto2_canonical_keeps_labels_and_defaults() {
    let schema = proto(
        r#"syntax = "proto2";
        package p;
        message M {
          required string id = 1;
          optional int32 n = 2 [default = -7];
          optional string s = 3 [default = "a \"q\"\n"];
          optional E e = 4 [default = B];
          repeated double d = 5 [packed = true];
          optional bytes raw = 6 [default = "\001x"];
          extensions 100 to 199;
        }
        enum E { A = 0; B = 1; }
        extend M { optional string note = 100; }"#,
    );
    let canonical = schema.canonical();
    for expected in [
        "syntax = \"proto2\";",
        "required string id = 1;",
        "optional int32 n = 2 [default = -7];",
        "optional string s = 3 [default = \"a \\\"q\\\"\\n\"];",
        "optional .p.E e = 4 [default = B];",
        "repeated double d = 5 [packed = true];",
        "extensions 100 to 199;",
        "extend .p.M {",
        "optional string note = 100;",
    ] {
        assert!(
            canonical.contains(expected),
            "missing {expected:?} in\n{canonical}"
        );
    }
    assert_eq!(proto(&canonical).canonical(), canonical);
}

#[test]
fn base64_descriptor_has_the_same_canonical_text_as_its_source() {
    let source = proto(RICH);
    let serialized = source
        .formatted("serialized")
        .expect("serialized format exists");
    assert!(source.formatted("json").is_none());
    let from_descriptor = proto(&serialized);
    assert_eq!(from_descriptor.canonical(), source.canonical());

    // As a client builds it: relative type names, no json_name, its own file name.
    use prost_types::field_descriptor_proto::{Label, Type};
    use prost_types::{DescriptorProto, FieldDescriptorProto, FileDescriptorProto};
    let field = |name: &str, number: i32, t: Type, type_name: Option<&str>| FieldDescriptorProto {
        name: Some(name.into()),
        number: Some(number),
        label: Some(Label::Optional as i32),
        r#type: Some(t as i32),
        type_name: type_name.map(str::to_owned),
        ..Default::default()
    };
    let file = FileDescriptorProto {
        name: Some("shop/order.proto".into()),
        package: Some("shop".into()),
        syntax: Some("proto3".into()),
        message_type: vec![
            DescriptorProto {
                name: Some("Order".into()),
                field: vec![
                    field("order_id", 1, Type::String, None),
                    field("customer", 2, Type::Message, Some("Customer")),
                ],
                ..Default::default()
            },
            DescriptorProto {
                name: Some("Customer".into()),
                field: vec![field("name", 1, Type::String, None)],
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let encoded = base64::engine::general_purpose::STANDARD.encode(file.encode_to_vec());
    let text = r#"syntax = "proto3";
        package shop;
        message Order { string order_id = 1; Customer customer = 2; }
        message Customer { string name = 1; }"#;
    assert_eq!(proto(&encoded).canonical(), proto(text).canonical());

    let decoded = base64::engine::general_purpose::STANDARD
        .decode(proto(text).formatted("serialized").unwrap_or_default())
        .unwrap_or_default();
    let round = FileDescriptorProto::decode(decoded.as_slice()).unwrap_or_default();
    assert_eq!(round.message_type.len(), 2);
    assert_eq!(round.package(), "shop");
}

#[test]
fn references_and_well_known_types_resolve() {
    let customer_text = r#"syntax = "proto3"; package crm; message Customer { string name = 1; }"#;
    let main = r#"syntax = "proto3";
        package shop;
        import "customer.proto";
        import "google/protobuf/timestamp.proto";
        message Order {
          crm.Customer customer = 1;
          google.protobuf.Timestamp at = 2;
        }"#;
    let dependency = |schema: String| Dependency {
        name: "customer.proto".into(),
        schema_type: SchemaType::Protobuf,
        schema,
    };

    let with_text = parse(
        SchemaType::Protobuf,
        main,
        &[dependency(customer_text.into())],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(with_text
        .canonical()
        .contains(".crm.Customer customer = 1;"));
    assert!(with_text
        .canonical()
        .contains(".google.protobuf.Timestamp at = 2;"));

    // A reference sent as a base64 descriptor, as the Python client sends it.
    let customer_b64 = proto(customer_text)
        .formatted("serialized")
        .unwrap_or_default();
    let with_b64 = parse(SchemaType::Protobuf, main, &[dependency(customer_b64)])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(with_b64.canonical(), with_text.canonical());

    // A changed reference is compared too: the reader's Customer.name became an int.
    let customer_v2 = r#"syntax = "proto3"; package crm; message Customer { int64 name = 1; }"#;
    let newer = parse(
        SchemaType::Protobuf,
        main,
        &[dependency(customer_v2.into())],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let found = newer.read_problems(with_text.as_ref());
    assert!(
        found
            .iter()
            .any(|p| p == "FIELD_SCALAR_KIND_CHANGED: #/Customer/1"),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|p| p == "FIELD_NAMED_TYPE_CHANGED: #/Order/1"),
        "{found:?}"
    );
    assert!(with_b64.read_problems(with_text.as_ref()).is_empty());
}

#[test]
fn payloads_are_checked_against_the_indexed_message() {
    let schema = proto(
        r#"syntax = "proto3";
        message First { string name = 1; int32 id = 2; message Inner { bool ok = 1; } }
        message Second { repeated int64 values = 1; }"#,
    );
    // First { name: "bob", id: 7 }
    let first = [0x0a, 0x03, b'b', b'o', b'b', 0x10, 0x07];
    // Second { values: [1, 2] }, packed.
    let second = [0x0a, 0x02, 0x01, 0x02];
    let framed = |indexes: &[u8], body: &[u8]| [indexes, body].concat();

    assert_eq!(schema.validate_payload(&framed(&[0x00], &first)), Ok(()));
    // Count 1 (zigzag 2), index 0 (zigzag 0): the long spelling of [0].
    assert_eq!(
        schema.validate_payload(&framed(&[0x02, 0x00], &first)),
        Ok(())
    );
    assert_eq!(
        schema.validate_payload(&framed(&[0x02, 0x02], &second)),
        Ok(())
    );
    // [0, 0]: First.Inner { ok: true }
    assert_eq!(
        schema.validate_payload(&framed(&[0x04, 0x00, 0x00], &[0x08, 0x01])),
        Ok(())
    );
    assert_eq!(schema.validate_payload(&[0x00]), Ok(()));

    let bad_index = schema.validate_payload(&framed(&[0x02, 0x0a], &first));
    assert!(
        bad_index
            .as_ref()
            .is_err_and(|e| e.contains("out of range")),
        "{bad_index:?}"
    );
    let bad_nested = schema.validate_payload(&framed(&[0x04, 0x00, 0x04], &first));
    assert!(bad_nested.is_err(), "{bad_nested:?}");
    let negative = schema.validate_payload(&framed(&[0x02, 0x01], &first));
    assert!(negative.is_err(), "{negative:?}");
    let huge_count = schema.validate_payload(&[0xfe, 0xff, 0xff, 0xff, 0x0f]);
    assert!(huge_count.is_err(), "{huge_count:?}");
    assert!(schema.validate_payload(&[]).is_err());

    let garbage = schema.validate_payload(&framed(&[0x00], &[0x0a, 0x09, b'x']));
    assert!(
        garbage.as_ref().is_err_and(|e| e.contains("First")),
        "{garbage:?}"
    );
    // Wire type 7 does not exist.
    assert!(schema.validate_payload(&[0x00, 0x0f]).is_err());
    // A string field must be UTF-8.
    assert!(schema
        .validate_payload(&framed(&[0x00], &[0x0a, 0x02, 0xff, 0xfe]))
        .is_err());
}

/// `orders/order.proto` as confluent-kafka's ProtobufSerializer sends it (`_schema_to_str`: base64 of the
/// file's `serialized_pb`), built with the Python protobuf runtime; the Timestamp import is a well-known
/// file the client skips as a reference.
const PYTHON_ORDER_B64: &str = "ChJvcmRlcnMvb3JkZXIucHJvdG8SBm9yZGVycxofZ29vZ2xlL3Byb3RvYnVmL3RpbWVzdGFtcC5wcm90byKcAQoFT3JkZXISEAoIb3JkZXJfaWQYASABKAkSLQoJcGxhY2VkX2F0GAIgASgLMhouZ29vZ2xlLnByb3RvYnVmLlRpbWVzdGFtcBIlCgR0YWdzGAMgAygLMhcub3JkZXJzLk9yZGVyLlRhZ3NFbnRyeRorCglUYWdzRW50cnkSCwoDa2V5GAEgASgJEg0KBXZhbHVlGAIgASgFOgI4AWIGcHJvdG8z";

#[test]
fn python_client_descriptor_parses_and_its_payload_validates() {
    let schema = proto(PYTHON_ORDER_B64);
    let text = r#"syntax = "proto3";
        package orders;
        import "google/protobuf/timestamp.proto";
        message Order {
          string order_id = 1;
          google.protobuf.Timestamp placed_at = 2;
          map<string, int32> tags = 3;
        }"#;
    assert_eq!(schema.canonical(), proto(text).canonical());
    // Order { order_id: "o-1", placed_at: { seconds: 5 }, tags: { "a": 3 } }, serialized by Python.
    let body = [
        0x0a, 0x03, 0x6f, 0x2d, 0x31, 0x12, 0x02, 0x08, 0x05, 0x1a, 0x05, 0x0a, 0x01, 0x61, 0x10,
        0x03,
    ];
    assert_eq!(
        schema.validate_payload(&[&[0x00][..], &body].concat()),
        Ok(())
    );
}

/// The nested message names of each top-level message, from the schema's serialized descriptor.
fn nested_order(schema: &dyn ParsedSchema) -> Vec<Vec<String>> {
    let serialized = schema.formatted("serialized").expect("serialized form");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(serialized)
        .expect("base64");
    let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).expect("descriptor");
    file.message_type
        .iter()
        .map(|m| m.nested_type.iter().map(|n| n.name().to_string()).collect())
        .collect()
}

#[test]
fn canonical_text_keeps_nested_types_in_declaration_order_so_message_indexes_still_point_right() {
    // `Inner` is declared before the map field whose entry type the compiler adds; the other message
    // has them the other way round. A record's message indexes count nested types in this order.
    let source = r#"
        syntax = "proto3";
        package shop;
        message First { string id = 1; }
        message Second {
          message Inner { string s = 1; }
          map<string, int64> labels = 1;
          Inner inner = 2;
        }
        message Third {
          map<string, int64> labels = 1;
          message Inner { string s = 1; }
          Inner inner = 2;
        }
    "#;
    let parsed = proto(source);
    let expected = vec![
        vec![],
        vec!["Inner".to_string(), "LabelsEntry".to_string()],
        vec!["LabelsEntry".to_string(), "Inner".to_string()],
    ];
    assert_eq!(nested_order(parsed.as_ref()), expected);
    let reparsed = proto(&parsed.canonical());
    assert_eq!(nested_order(reparsed.as_ref()), expected);
    assert_eq!(reparsed.canonical(), parsed.canonical());
    // Indexes [1, 0] (count 2, then 1 and 0, zigzag) name Second.Inner: its payload validates.
    let inner = [0x04, 0x02, 0x00, 0x0a, 0x01, b'x'];
    assert_eq!(reparsed.validate_payload(&inner), Ok(()));
    let normalized = proto(&parsed.normalized());
    assert_eq!(nested_order(normalized.as_ref()), expected);
}
