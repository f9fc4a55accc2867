//! The walk-throughs in `docs/` work as written: every ```console block's commands run, in order, against a
//! fresh `nerve serve`, with the files of the page's ```` ```lang file=NAME ```` blocks in the working
//! directory and `nerve` on the PATH.
//!
//! In a console block, `$ COMMAND` runs COMMAND with `sh -c`; the lines after it, up to the next `$`, are
//! lines its stdout must contain, in that order, and `? N` is its exit code (0 when absent). A command
//! ending in ` &` (`nerve serve` in a page that starts its own broker) runs in the background: the
//! walk-through goes on once it has printed its lines, and it is stopped with SIGTERM at the end.

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

/// Whether the harness starts a broker for the page (its commands find it through `NERVE_BOOTSTRAP` and
/// `NERVE_REGISTRY_URL`) or the page starts its own.
#[derive(PartialEq)]
enum Broker {
    Harness,
    Page,
}

fn run_walkthrough(doc: &str, broker: Broker) {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../docs")
            .join(doc),
    )
    .expect("the page exists");
    let (files, steps) = parse(&page);
    assert!(!steps.is_empty(), "{doc} has no console steps");
    let dir = tempfile::tempdir().unwrap();
    let nerve = (broker == Broker::Harness).then(|| Nerve::start(&dir.path().join("data")));
    let mut background = Background::default();
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
        let mut command = Command::new("sh");
        command
            .current_dir(&work)
            .env("PATH", &path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        if let Some(nerve) = &nerve {
            command
                .env("NERVE_BOOTSTRAP", nerve.bootstrap())
                .env("NERVE_REGISTRY_URL", nerve.registry_url());
        }
        if let Some(daemon) = step.command.strip_suffix(" &") {
            command.arg("-c").arg(format!("exec {daemon}"));
            background.start(doc, command, &step.expected);
            continue;
        }
        let output = command
            .arg("-c")
            .arg(&step.command)
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

/// The page's background processes, stopped (SIGTERM, then waited for) when the walk-through ends.
#[derive(Default)]
struct Background(Vec<std::process::Child>);

impl Background {
    /// Starts `command` and waits until its stdout has shown `expected`, in order.
    fn start(&mut self, doc: &str, mut command: Command, expected: &[String]) {
        use std::io::BufRead;
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the background command starts");
        let stdout = child.stdout.take().expect("piped");
        let (lines_tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Keep reading once the expected lines are in: a closed pipe would make the process's
                // next println (a later start-up line) fail.
                let _ = lines_tx.send(line);
            }
        });
        self.0.push(child);
        for want in expected {
            loop {
                match lines.recv_timeout(common::PATIENCE) {
                    Ok(line) if line.trim_end() == want => break,
                    Ok(_) => {}
                    Err(_) => panic!("{doc}: the background command never printed {want:?}"),
                }
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let _ = child.wait();
        }
    }
}

#[test]
fn the_schema_registry_walkthrough_works_as_written() {
    run_walkthrough("schema-registry.md", Broker::Harness);
}

#[test]
fn the_security_walkthrough_works_as_written() {
    run_walkthrough("security.md", Broker::Page);
}
