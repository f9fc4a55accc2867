//! `nerve serve --log-format json`: what a log collector reads from stderr.

mod common;
use common::*;

#[test]
fn json_logs_are_one_object_per_line_and_request_lines_carry_the_client_and_correlation_id() {
    let data = tempfile::tempdir().unwrap();
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("stderr.log");
    let nerve = Nerve::start_on_logging_to(
        data.path(),
        any_free_port(),
        &["--log-format".into(), "json".into()],
        &log,
    );
    // CreateTopics logs "created topic" at info while its request is handled.
    create_topic(&nerve.bootstrap(), "logged", 1);
    nerve.stop();

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        lines.iter().all(serde_json::Value::is_object),
        "every line is one JSON object:\n{text}"
    );
    let created = lines
        .iter()
        .find(|line| {
            line["fields"]["message"] == "created topic" && line["fields"]["topic"] == "logged"
        })
        .unwrap_or_else(|| panic!("no \"created topic\" line in:\n{text}"));
    let span = &created["span"];
    assert_eq!(span["name"], "request", "{created}");
    assert_eq!(span["api"], "CreateTopics", "{created}");
    assert!(
        span["client_id"].as_str().is_some_and(|id| !id.is_empty()),
        "{created}"
    );
    assert!(span["correlation_id"].is_number(), "{created}");
    assert!(
        span["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{created}"
    );
    assert_eq!(created["spans"][0]["name"], "request", "{created}");
}
