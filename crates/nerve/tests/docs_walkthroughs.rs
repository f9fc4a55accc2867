//! The walk-throughs in `docs/` work as written: every ```console block's commands run, in order, against a
//! fresh `nerve serve`, with the files of the page's ```` ```lang file=NAME ```` blocks in the working
//! directory and `nerve` on the PATH.
//!
//! In a console block, `$ COMMAND` runs COMMAND with `sh -c`; the lines after it, up to the next `$`, are
//! lines its stdout must contain, in that order, and `? N` is its exit code (0 when absent).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::Nerve;

#[derive(Debug, Default)]
struct Step {
    command: String,
    expected: Vec<String>,
    exit_code: i32,
}

/// The page's files and the steps of its console blocks.
fn parse(page: &str) -> (Vec<(String, String)>, Vec<Step>) {
    let mut files = Vec::new();
    let mut steps: Vec<Step> = Vec::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        if let Some(name) = info
            .split_whitespace()
            .find_map(|w| w.strip_prefix("file="))
        {
            files.push((name.to_string(), block.join("\n") + "\n"));
        } else if info.trim() == "console" {
            for line in block {
                if let Some(command) = line.strip_prefix("$ ") {
                    steps.push(Step {
                        command: command.to_string(),
                        ..Step::default()
                    });
                } else if let Some(step) = steps.last_mut() {
                    match line.strip_prefix("? ") {
                        Some(code) => step.exit_code = code.trim().parse().expect("an exit code"),
                        None => step.expected.push(line.trim_end().to_string()),
                    }
                }
            }
        }
    }
    (files, steps)
}

fn run_walkthrough(doc: &str) {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs")
            .join(doc),
    )
    .expect("the page exists");
    let (files, steps) = parse(&page);
    assert!(!steps.is_empty(), "{doc} has no console steps");
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(&dir.path().join("data"));
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    for (name, text) in &files {
        std::fs::write(work.join(name), text).unwrap();
    }
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_nerve"))
        .parent()
        .expect("a directory");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for step in steps {
        let output = Command::new("sh")
            .arg("-c")
            .arg(&step.command)
            .current_dir(&work)
            .env("PATH", &path)
            .env("NERVE_BOOTSTRAP", nerve.bootstrap())
            .env("NERVE_REGISTRY_URL", nerve.registry_url())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            output.status.code(),
            Some(step.exit_code),
            "{doc}: `{}` exited otherwise\nstdout:\n{stdout}\nstderr:\n{stderr}",
            step.command
        );
        let mut rest = stdout.lines().map(str::trim_end);
        for expected in &step.expected {
            assert!(
                rest.any(|line| line == expected),
                "{doc}: `{}` did not print (in order) {expected:?}\nstdout:\n{stdout}",
                step.command
            );
        }
    }
}

#[test]
fn the_schema_registry_walkthrough_works_as_written() {
    run_walkthrough("schema-registry.md");
}
