//! `nerve schema` run as the built binary against the schema registry of a `nerve serve` of its own, as a
//! user runs it: flags and files in, stdout, stderr and the exit status out.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Nerve;

/// What a command printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Panics with everything the command said unless it succeeded; returns its stdout.
    fn ok(self) -> String {
        assert_eq!(
            self.code,
            Some(0),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        self.stdout
    }

    /// Panics unless the command failed with exit status 1 and one line on stderr containing `expected`.
    fn fails_with(self, expected: &str) -> Run {
        assert_eq!(
            self.code,
            Some(1),
            "stdout: {}\nstderr: {}",
            self.stdout,
            self.stderr
        );
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "one line on stderr: {}",
            self.stderr
        );
        assert!(self.stderr.starts_with("nerve: "), "{}", self.stderr);
        assert!(
            self.stderr.contains(expected),
            "stderr {:?} lacks {expected:?}",
            self.stderr
        );
        self
    }
}

/// Runs `nerve ARGS` with `NERVE_REGISTRY_URL=registry` and `stdin`.
fn nerve(registry: &str, args: &[&str], stdin: &[u8]) -> Run {
    let ran = common::run_nerve(args, &[("NERVE_REGISTRY_URL", registry)], stdin);
    Run {
        code: ran.code,
        stdout: String::from_utf8(ran.stdout).expect("stdout is UTF-8"),
        stderr: ran.stderr,
    }
}

/// A running `nerve serve`, its registry URL, and a directory for schema files.
struct Registry {
    _nerve: Nerve,
    url: String,
    dir: tempfile::TempDir,
}

impl Registry {
    fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let nerve = Nerve::start(&dir.path().join("data"));
        Registry {
            url: nerve.registry_url(),
            _nerve: nerve,
            dir,
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        nerve(&self.url, args, b"")
    }

    /// Writes a schema file named `name` and returns its path.
    fn file(&self, name: &str, text: &str) -> String {
        let path: PathBuf = self.dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path_text(&path)
    }
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("UTF-8 path").to_string()
}

const ORDER_V1: &str = r#"{"type": "record", "name": "Order", "namespace": "acme",
  "fields": [{"name": "id", "type": "long"}]}"#;
/// V1 plus a field with a default: backward compatible.
const ORDER_V2: &str = r#"{"type": "record", "name": "Order", "namespace": "acme",
  "fields": [{"name": "id", "type": "long"}, {"name": "note", "type": "string", "default": ""}]}"#;
/// V2 plus a field without a default: a reader of it cannot read V2's records.
const ORDER_QTY: &str = r#"{"type": "record", "name": "Order", "namespace": "acme",
  "fields": [{"name": "id", "type": "long"}, {"name": "note", "type": "string", "default": ""},
             {"name": "quantity", "type": "int"}]}"#;

/// The `name: value` lines before the schema in `get`'s output.
fn field<'a>(output: &'a str, name: &str) -> &'a str {
    output
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {output}"))
}

#[test]
fn an_avro_schema_is_registered_from_a_file_evolved_and_shown_by_version_and_id() {
    let r = Registry::start();
    let v1 = r.file("order.avsc", ORDER_V1);
    let v2 = r.file("order-v2.avsc", ORDER_V2);

    assert_eq!(
        r.run(&["schema", "register", "orders-value", "--file", &v1])
            .ok(),
        "registered orders-value: id 1, version 1\n"
    );
    assert_eq!(
        r.run(&["schema", "register", "orders-value", "--file", &v1])
            .ok(),
        "orders-value already has this schema: id 1, version 1\n"
    );
    assert_eq!(
        r.run(&["schema", "register", "orders-value", "-f", &v2])
            .ok(),
        "registered orders-value: id 2, version 2\n"
    );

    let latest = r.run(&["schema", "get", "orders-value"]).ok();
    assert_eq!(field(&latest, "subject"), "orders-value");
    assert_eq!(field(&latest, "version"), "2");
    assert_eq!(field(&latest, "id"), "2");
    assert_eq!(field(&latest, "type"), "AVRO");
    assert_eq!(field(&latest, "references"), "-");
    // Pretty-printed, keys in the schema's own order.
    assert!(
        latest.contains("{\n  \"type\": \"record\",\n  \"name\": \"Order\","),
        "{latest}"
    );
    assert!(latest.contains("      \"name\": \"note\",\n"), "{latest}");

    let first = r
        .run(&["schema", "get", "orders-value", "--version", "1"])
        .ok();
    assert_eq!(field(&first, "id"), "1");
    assert!(!first.contains("note"), "{first}");

    let by_id = r.run(&["schema", "get", "--id", "2"]).ok();
    assert_eq!(field(&by_id, "subjects"), "orders-value version 2");
    assert!(by_id.contains("\"note\""), "{by_id}");

    let schema_only = r
        .run(&["schema", "get", "orders-value", "--schema-only"])
        .ok();
    let parsed: serde_json::Value = serde_json::from_str(&schema_only).expect("the schema alone");
    assert_eq!(parsed["fields"][1]["name"], "note");

    let json: serde_json::Value = serde_json::from_str(
        &r.run(&["schema", "get", "orders-value", "--output", "json"])
            .ok(),
    )
    .expect("JSON output");
    assert_eq!(json["version"], 2);
    assert_eq!(json["id"], 2);
    assert_eq!(json["schemaType"], "AVRO");
    assert_eq!(json["references"], serde_json::json!([]));

    r.run(&["schema", "get", "orders-value", "--version", "3"])
        .fails_with("Version 3 not found. (error code 40402)");
    r.run(&["schema", "get", "--id", "99"])
        .fails_with("(error code 40403)");
    r.run(&["schema", "get", "payments-value"])
        .fails_with("Subject 'payments-value' not found. (error code 40401)");
}

#[test]
fn check_says_compatible_or_incompatible_naming_the_field_and_register_refuses_with_409() {
    let r = Registry::start();
    let v1 = r.file("order.avsc", ORDER_V1);
    let v2 = r.file("order-v2.avsc", ORDER_V2);
    let qty = r.file("order-qty.avsc", ORDER_QTY);

    // Nothing registered yet: anything is compatible.
    assert_eq!(
        r.run(&["schema", "check", "orders-value", "--file", &v1])
            .ok(),
        "compatible\n"
    );
    r.run(&["schema", "register", "orders-value", "--file", &v1])
        .ok();
    assert_eq!(
        r.run(&["schema", "check", "orders-value", "--file", &v2])
            .ok(),
        "compatible\n"
    );
    r.run(&["schema", "register", "orders-value", "--file", &v2])
        .ok();

    let incompatible = r.run(&["schema", "check", "orders-value", "--file", &qty]);
    assert_eq!(incompatible.code, Some(1), "{}", incompatible.stderr);
    assert!(
        incompatible.stdout.starts_with("incompatible\n"),
        "{}",
        incompatible.stdout
    );
    assert!(
        incompatible.stdout.contains("'quantity'"),
        "{}",
        incompatible.stdout
    );
    assert_eq!(incompatible.stderr, "");
    // Against one given version, too.
    let against_latest = r.run(&[
        "schema",
        "check",
        "orders-value",
        "--file",
        &qty,
        "--version",
        "latest",
    ]);
    assert_eq!(against_latest.code, Some(1));

    let refused = r
        .run(&["schema", "register", "orders-value", "--file", &qty])
        .fails_with("(error code 409)");
    assert!(refused.stderr.contains("quantity"), "{}", refused.stderr);
    assert_eq!(refused.stdout, "");

    // With compatibility off, the same schema is fine.
    r.run(&["schema", "config", "orders-value", "--set", "none"])
        .ok();
    assert_eq!(
        r.run(&["schema", "check", "orders-value", "--file", &qty])
            .ok(),
        "compatible\n"
    );
}

#[test]
fn list_shows_subjects_with_their_latest_version_id_and_type_and_a_subjects_versions() {
    let r = Registry::start();
    let v1 = r.file("order.avsc", ORDER_V1);
    let v2 = r.file("order-v2.avsc", ORDER_V2);
    let json = r.file("payment.json", r#"{"type": "object"}"#);
    r.run(&["schema", "register", "orders-value", "-f", &v1])
        .ok();
    r.run(&["schema", "register", "orders-value", "-f", &v2])
        .ok();
    r.run(&["schema", "register", "payments-value", "-f", &json])
        .ok();

    let rows = |text: &str| -> Vec<Vec<String>> {
        text.lines()
            .map(|l| l.split_whitespace().map(str::to_string).collect())
            .collect()
    };
    assert_eq!(
        rows(&r.run(&["schema", "list"]).ok()),
        [
            vec!["SUBJECT", "VERSION", "ID", "TYPE"],
            vec!["orders-value", "2", "2", "AVRO"],
            vec!["payments-value", "1", "3", "JSON"],
        ]
    );
    assert_eq!(
        rows(&r.run(&["schema", "list", "--prefix", "pay"]).ok()),
        [
            vec!["SUBJECT", "VERSION", "ID", "TYPE"],
            vec!["payments-value", "1", "3", "JSON"],
        ]
    );
    assert_eq!(r.run(&["schema", "list", "--prefix", "nothing"]).ok(), "");
    assert_eq!(
        rows(&r.run(&["schema", "list", "orders-value"]).ok()),
        [
            vec!["VERSION", "ID", "TYPE"],
            vec!["1", "1", "AVRO"],
            vec!["2", "2", "AVRO"],
        ]
    );
    let json: serde_json::Value =
        serde_json::from_str(&r.run(&["schema", "list", "--output", "json"]).ok())
            .expect("JSON output");
    assert_eq!(json[1]["subject"], "payments-value");
    assert_eq!(json[1]["id"], 3);
    assert_eq!(json[1]["schemaType"], "JSON");
    r.run(&["schema", "list", "payments-key"])
        .fails_with("(error code 40401)");
}

#[test]
fn config_and_mode_are_shown_and_set_registry_wide_and_per_subject() {
    let r = Registry::start();
    let v1 = r.file("order.avsc", ORDER_V1);
    r.run(&["schema", "register", "orders-value", "-f", &v1])
        .ok();

    assert_eq!(r.run(&["schema", "config"]).ok(), "BACKWARD\n");
    assert_eq!(
        r.run(&["schema", "config", "--set", "FULL"]).ok(),
        "registry-wide compatibility set to FULL\n"
    );
    assert_eq!(r.run(&["schema", "config"]).ok(), "FULL\n");
    assert_eq!(
        r.run(&["schema", "config", "orders-value"]).ok(),
        "FULL (the registry's; orders-value has no level of its own)\n"
    );
    assert_eq!(
        r.run(&[
            "schema",
            "config",
            "orders-value",
            "--set",
            "backward_transitive"
        ])
        .ok(),
        "compatibility of orders-value set to BACKWARD_TRANSITIVE\n"
    );
    assert_eq!(
        r.run(&["schema", "config", "orders-value"]).ok(),
        "BACKWARD_TRANSITIVE\n"
    );
    assert_eq!(
        r.run(&["schema", "config", "orders-value", "--unset"]).ok(),
        "compatibility of orders-value unset (was BACKWARD_TRANSITIVE, now FULL)\n"
    );

    assert_eq!(r.run(&["schema", "mode"]).ok(), "READWRITE\n");
    assert_eq!(
        r.run(&["schema", "mode", "orders-value", "--set", "readonly"])
            .ok(),
        "mode of orders-value set to READONLY\n"
    );
    assert_eq!(
        r.run(&["schema", "mode", "orders-value"]).ok(),
        "READONLY\n"
    );
    r.run(&["schema", "delete", "orders-value"])
        .fails_with("(error code 42205)");
    assert_eq!(
        r.run(&["schema", "mode", "orders-value", "--unset"]).ok(),
        "mode of orders-value unset (was READONLY)\n"
    );
    assert_eq!(
        r.run(&["schema", "mode", "orders-value"]).ok(),
        "READWRITE (the registry's; orders-value has no mode of its own)\n"
    );
    // IMPORT over registered schemas needs --force.
    r.run(&["schema", "mode", "--set", "IMPORT"])
        .fails_with("(error code 42205)");
    assert_eq!(
        r.run(&["schema", "mode", "--set", "IMPORT", "--force"])
            .ok(),
        "registry-wide mode set to IMPORT\n"
    );
}

#[test]
fn delete_is_soft_first_then_permanent() {
    let r = Registry::start();
    let v1 = r.file("order.avsc", ORDER_V1);
    let v2 = r.file("order-v2.avsc", ORDER_V2);
    r.run(&["schema", "register", "orders-value", "-f", &v1])
        .ok();
    r.run(&["schema", "register", "orders-value", "-f", &v2])
        .ok();

    r.run(&["schema", "delete", "orders-value", "--permanent"])
        .fails_with("(error code 40405)");
    assert_eq!(
        r.run(&["schema", "delete", "orders-value", "--version", "2"])
            .ok(),
        "deleted orders-value version 2 (soft: --permanent removes it for good)\n"
    );
    assert_eq!(
        field(&r.run(&["schema", "get", "orders-value"]).ok(), "version"),
        "1"
    );
    assert_eq!(
        r.run(&["schema", "delete", "orders-value"]).ok(),
        "deleted orders-value: version 1 (soft: --permanent removes it for good)\n"
    );
    assert_eq!(r.run(&["schema", "list"]).ok(), "");
    let listed = r.run(&["schema", "list", "--deleted"]).ok();
    assert!(listed.contains("orders-value"), "{listed}");
    assert!(listed.contains("deleted"), "{listed}");
    r.run(&["schema", "get", "orders-value"])
        .fails_with("(error code 40401)");

    assert_eq!(
        r.run(&["schema", "delete", "orders-value", "--permanent"])
            .ok(),
        "permanently deleted orders-value: versions 1, 2\n"
    );
    assert_eq!(r.run(&["schema", "list", "--deleted"]).ok(), "");
    r.run(&["schema", "get", "--id", "1"])
        .fails_with("(error code 40403)");
}

#[test]
fn json_schema_and_protobuf_take_their_type_from_the_file_extension() {
    let r = Registry::start();
    let json = r.file(
        "payment.json",
        r#"{"type": "object", "properties": {"amount": {"type": "number"}}}"#,
    );
    let proto = r.file(
        "payment.proto",
        "syntax = \"proto3\";\npackage acme;\nmessage Payment { int64 amount = 1; }\n",
    );
    r.run(&["schema", "register", "payments-json", "--file", &json])
        .ok();
    r.run(&["schema", "register", "payments-proto", "--file", &proto])
        .ok();
    let shown = r.run(&["schema", "get", "payments-json"]).ok();
    assert_eq!(field(&shown, "type"), "JSON");
    assert!(shown.contains("\"amount\": {"), "{shown}");
    let shown = r.run(&["schema", "get", "payments-proto"]).ok();
    assert_eq!(field(&shown, "type"), "PROTOBUF");
    assert!(shown.contains("message Payment {"), "{shown}");

    // From stdin, --type says it; an unknown extension means Avro.
    let stdin = nerve(
        &r.url,
        &[
            "schema",
            "register",
            "refunds-value",
            "--file",
            "-",
            "--type",
            "json",
        ],
        br#"{"type": "string"}"#,
    )
    .ok();
    assert_eq!(stdin, "registered refunds-value: id 3, version 1\n");
    assert_eq!(
        field(&r.run(&["schema", "get", "refunds-value"]).ok(), "type"),
        "JSON"
    );
    let plain = r.file("order.schema", ORDER_V1);
    r.run(&["schema", "register", "orders-value", "--file", &plain])
        .ok();
    assert_eq!(
        field(&r.run(&["schema", "get", "orders-value"]).ok(), "type"),
        "AVRO"
    );
    // A type that does not fit the text is the registry's error.
    r.run(&[
        "schema",
        "register",
        "bad-value",
        "--file",
        &proto,
        "--type",
        "avro",
    ])
    .fails_with("(error code 42201)");
}

#[test]
fn a_reference_is_registered_shown_and_protects_what_it_refers_to() {
    let r = Registry::start();
    let money = r.file(
        "money.proto",
        "syntax = \"proto3\";\npackage acme;\nmessage Money { string currency = 1; int64 units = 2; }\n",
    );
    let order = r.file(
        "order.proto",
        "syntax = \"proto3\";\npackage acme;\nimport \"acme/money.proto\";\n\
         message Order { int64 id = 1; acme.Money total = 2; }\n",
    );
    r.run(&["schema", "register", "money-value", "--file", &money])
        .ok();
    // Without the reference the import cannot be resolved.
    r.run(&["schema", "register", "orders-value", "--file", &order])
        .fails_with("(error code 42201)");
    assert_eq!(
        r.run(&[
            "schema",
            "register",
            "orders-value",
            "--file",
            &order,
            "--reference",
            "acme/money.proto=money-value:1",
        ])
        .ok(),
        "registered orders-value: id 2, version 1\n"
    );
    let shown = r.run(&["schema", "get", "orders-value"]).ok();
    assert_eq!(
        field(&shown, "references"),
        "acme/money.proto = money-value version 1"
    );
    let json: serde_json::Value = serde_json::from_str(
        &r.run(&["schema", "get", "--id", "2", "--output", "json"])
            .ok(),
    )
    .unwrap();
    assert_eq!(
        json["references"],
        serde_json::json!([{"name": "acme/money.proto", "subject": "money-value", "version": 1}])
    );
    // `latest` is looked up: the same schema, so the same version.
    assert_eq!(
        r.run(&[
            "schema",
            "register",
            "orders-value",
            "--file",
            &order,
            "--reference",
            "acme/money.proto=money-value:latest",
        ])
        .ok(),
        "orders-value already has this schema: id 2, version 1\n"
    );
    r.run(&["schema", "delete", "money-value"])
        .fails_with("(error code 42206)");
}

#[test]
fn an_unreachable_registry_is_one_line_naming_its_url() {
    // A port nothing listens on: bound, then released.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    for args in [
        &["schema", "list"][..],
        &["schema", "get", "orders-value"],
        &["schema", "get", "--id", "1"],
        &["schema", "config"],
        &["schema", "mode"],
        &["schema", "delete", "orders-value"],
    ] {
        let started = Instant::now();
        nerve(&url, args, b"").fails_with(&format!("cannot reach the schema registry at {url}"));
        assert!(started.elapsed() < Duration::from_secs(20), "{args:?}");
    }
    // The flag wins over the environment.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("order.avsc");
    std::fs::write(&file, ORDER_V1).unwrap();
    nerve(
        "http://127.0.0.1:1",
        &[
            "schema",
            "register",
            "orders-value",
            "--file",
            &path_text(&file),
            "--registry-url",
            &format!("{url}/"),
        ],
        b"",
    )
    .fails_with(&format!("cannot reach the schema registry at {url}:"));
    nerve("ftp://registry.example", &["schema", "list"], b"")
        .fails_with("expected http://HOST:PORT or https://HOST:PORT");
    nerve(
        &url,
        &["schema", "list", "--registry-auth", "no-colon"],
        b"",
    )
    .fails_with("--registry-auth: expected USER:PASSWORD");
    nerve(
        &url,
        &["schema", "register", "s", "--file", "/no/such.avsc"],
        b"",
    )
    .fails_with("cannot read /no/such.avsc");
}

#[test]
fn bad_flags_are_refused_before_connecting() {
    for args in [
        &["schema", "register", "s"][..],
        &["schema", "register", "s", "-f", "x", "--type", "xml"],
        &[
            "schema",
            "register",
            "s",
            "-f",
            "x",
            "--reference",
            "no-version=s",
        ],
        &["schema", "register", "s", "-f", "x", "--reference", "n=s:0"],
        &["schema", "get"],
        &["schema", "get", "s", "--id", "1"],
        &["schema", "get", "s", "--version", "0"],
        &["schema", "get", "--id", "1", "--deleted"],
        &["schema", "config", "--set", "SOMETIMES"],
        &["schema", "config", "--set", "FULL", "--unset"],
        &["schema", "mode", "--set", "WRITEONLY"],
        &["schema", "mode", "--force"],
    ] {
        let run = nerve("http://127.0.0.1:1", args, b"");
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("cannot reach"), "{args:?}");
    }
}

#[test]
fn every_schema_command_documents_itself_with_examples() {
    let top = nerve("http://127.0.0.1:1", &["--help"], b"").ok();
    assert!(top.contains("schema"), "{top}");
    for command in [
        "register", "get", "list", "check", "delete", "config", "mode",
    ] {
        let help = nerve("http://127.0.0.1:1", &["schema", command, "--help"], b"").ok();
        assert!(help.contains("Examples:"), "{command}");
        assert!(help.contains("--registry-url"), "{command}");
        assert!(help.contains("NERVE_REGISTRY_URL"), "{command}");
    }
}
