//! The references in `docs/` stay in step with the code: `serve.md` with `BrokerConfig`, `kafka-apis.md`
//! with `SUPPORTED_APIS`.

use nerve_broker::BrokerConfig;

#[test]
fn configuration_reference_names_every_broker_setting() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/serve.md"))
        .expect("docs/serve.md exists");
    // Other sections (the schema registry's) have settings of the same names, e.g. `listen`.
    let (_, doc) = doc
        .split_once("## Broker settings")
        .expect("docs/serve.md has a broker settings section");
    let defaults = serde_json::to_value(BrokerConfig::default()).expect("serializes");
    let fields = defaults.as_object().expect("a struct");
    for (name, value) in fields {
        let row = doc
            .lines()
            .find(|line| line.starts_with(&format!("| `{name}` |")))
            .unwrap_or_else(|| panic!("docs/serve.md has no row for `{name}`"));
        let shown = match value {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Object(map) if map.is_empty() => "empty".to_string(),
            other => other.to_string(),
        };
        assert!(
            row.contains(&shown),
            "the row for `{name}` does not show its default {shown}: {row}"
        );
    }
}

#[test]
fn api_reference_lists_exactly_the_advertised_versions() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/kafka-apis.md"
    ))
    .expect("docs/kafka-apis.md exists");
    let supported = doc
        .split("## Supported")
        .nth(1)
        .and_then(|rest| rest.split("\n### ").next())
        .expect("a Supported section");
    let rows: Vec<&str> = supported
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| API ") && !l.starts_with("|---"))
        .collect();
    for &(key, min, max) in nerve_broker::SUPPORTED_APIS {
        let expected = format!("| {key:?} | {} | {min}\u{2013}{max} |", key as i16);
        assert!(
            rows.iter().any(|row| row.starts_with(&expected)),
            "docs/kafka-apis.md has no row starting {expected:?}"
        );
    }
    assert_eq!(
        rows.len(),
        nerve_broker::SUPPORTED_APIS.len(),
        "the table lists an API that is not advertised: {rows:#?}"
    );
}
