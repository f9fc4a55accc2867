//! The configuration reference in `docs/` says what the code does.

use nerve_storage::TOPIC_CONFIGS;

#[test]
fn the_config_reference_lists_every_topic_config_with_its_default() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/configuration.md");
    let doc = std::fs::read_to_string(path).expect("docs/configuration.md exists");
    let rows: Vec<&str> = doc.lines().filter(|l| l.starts_with("| `")).collect();
    for def in TOPIC_CONFIGS {
        let row = format!("| `{}` | `{}` |", def.name, def.default);
        assert!(
            rows.iter().any(|r| r.starts_with(&row)),
            "docs/configuration.md lacks the row {row}"
        );
    }
    let documented = rows.iter().filter(|r| r.contains("` | `")).count();
    assert_eq!(
        documented,
        TOPIC_CONFIGS.len(),
        "the reference documents a topic config the code does not have"
    );
}
