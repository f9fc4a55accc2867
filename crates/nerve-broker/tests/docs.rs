//! The configuration reference in `docs/serve.md` stays in step with `BrokerConfig`.

use nerve_broker::BrokerConfig;

#[test]
fn configuration_reference_names_every_broker_setting() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/serve.md"))
        .expect("docs/serve.md exists");
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
