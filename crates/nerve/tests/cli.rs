//! The command-line client (`nerve topic`, `nerve produce`, `nerve consume`) run as the built binary against
//! a `nerve serve` of its own, as a user runs it: flags in, stdin in, stdout, stderr and the exit status out.

mod common;

use std::net::TcpListener;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{nerve, Nerve, PATIENCE};

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970");
    i64::try_from(since_epoch.as_millis()).expect("fits")
}

#[test]
fn topics_are_created_listed_described_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Nerve::start(dir.path());
    let b = &broker.bootstrap();

    let created = nerve(b, &["topic", "create", "orders", "--partitions", "3"], b"").ok();
    assert_eq!(created.stdout_text(), "created topic orders\n");
    nerve(b, &["topic", "create", "audit"], b"").ok();
    nerve(b, &["topic", "create", "orders"], b"").fails_with("topic orders already exists");
    assert_eq!(
        nerve(b, &["topic", "list"], b"").ok().stdout_text(),
        "audit\norders\n"
    );

    nerve(b, &["produce", "orders", "--partition", "1"], b"one\ntwo\n").ok();
    let described = nerve(b, &["topic", "describe", "orders"], b"")
        .ok()
        .stdout_text();
    let table: Vec<Vec<&str>> = described
        .lines()
        .skip(1)
        .take(4)
        .map(|line| line.split_whitespace().collect())
        .collect();
    assert_eq!(described.lines().next(), Some("topic orders: 3 partitions"));
    assert_eq!(
        table,
        vec![
            vec!["PARTITION", "LEADER", "REPLICAS", "ISR", "LOW", "HIGH"],
            vec!["0", "0", "0", "0", "0", "0"],
            vec!["1", "0", "0", "0", "0", "2"],
            vec!["2", "0", "0", "0", "0", "0"],
        ]
    );
    assert!(
        described.contains("configs (* set on this topic):\n"),
        "{described}"
    );
    assert!(
        described.contains("\n  retention.ms=604800000\n"),
        "{described}"
    );

    assert_eq!(
        nerve(b, &["topic", "delete", "orders"], b"")
            .ok()
            .stdout_text(),
        "deleted topic orders\n"
    );
    assert_eq!(
        nerve(b, &["topic", "list"], b"").ok().stdout_text(),
        "audit\n"
    );
}

#[test]
fn altered_configs_show_in_describe_and_the_others_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Nerve::start(dir.path());
    let b = &broker.bootstrap();
    let set_on_topic = |b: &str| -> Vec<String> {
        nerve(b, &["topic", "describe", "t"], b"")
            .ok()
            .stdout_text()
            .lines()
            .filter(|line| line.starts_with('*'))
            .map(str::to_string)
            .collect()
    };
    nerve(
        b,
        &["topic", "create", "t", "--config", "retention.ms=86400000"],
        b"",
    )
    .ok();
    assert_eq!(set_on_topic(b), vec!["* retention.ms=86400000"]);

    let altered = nerve(
        b,
        &[
            "topic",
            "alter",
            "t",
            "--config",
            "cleanup.policy=compact",
            "--config",
            "segment.bytes=1048576",
        ],
        b"",
    )
    .ok();
    assert_eq!(
        altered.stdout_text(),
        "altered topic t: set cleanup.policy=compact, set segment.bytes=1048576\n"
    );
    assert_eq!(
        set_on_topic(b),
        vec![
            "* cleanup.policy=compact",
            "* retention.ms=86400000",
            "* segment.bytes=1048576"
        ]
    );

    nerve(
        b,
        &["topic", "alter", "t", "--delete-config", "cleanup.policy"],
        b"",
    )
    .ok();
    assert_eq!(
        set_on_topic(b),
        vec!["* retention.ms=86400000", "* segment.bytes=1048576"]
    );

    // A refused value changes nothing, and the error names it.
    nerve(
        b,
        &[
            "topic",
            "alter",
            "t",
            "--config",
            "segment.bytes=2097152",
            "--config",
            "retention.ms=soon",
        ],
        b"",
    )
    .fails_with("invalid config retention.ms=soon");
    assert_eq!(
        set_on_topic(b),
        vec!["* retention.ms=86400000", "* segment.bytes=1048576"]
    );
}

#[test]
fn a_missing_topic_is_one_clear_error_for_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Nerve::start(dir.path());
    let b = &broker.bootstrap();
    let missing = "topic ghost does not exist";
    nerve(b, &["topic", "describe", "ghost"], b"").fails_with(missing);
    nerve(b, &["topic", "delete", "ghost"], b"").fails_with(missing);
    nerve(
        b,
        &["topic", "alter", "ghost", "--config", "retention.ms=1"],
        b"",
    )
    .fails_with(missing);
    nerve(b, &["produce", "ghost"], b"a record\n").fails_with(missing);
    nerve(b, &["consume", "ghost", "--exit-at-end"], b"").fails_with(missing);
    // Producing did not auto-create it behind the user's back.
    assert_eq!(nerve(b, &["topic", "list"], b"").ok().stdout_text(), "");
}

#[test]
fn invalid_configs_are_named_from_the_brokers_answer() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Nerve::start(dir.path());
    let b = &broker.bootstrap();
    nerve(
        b,
        &[
            "topic",
            "create",
            "t",
            "--config",
            "retention.ms=86400000",
            "--config",
            "retention.ms.typo=5",
        ],
        b"",
    )
    .fails_with("invalid config retention.ms.typo=5");
    nerve(
        b,
        &[
            "topic",
            "create",
            "t",
            "--config",
            "cleanup.policy=sometimes",
        ],
        b"",
    )
    .fails_with("invalid config cleanup.policy=sometimes");
    // Refused as a whole: nothing was created.
    assert_eq!(nerve(b, &["topic", "list"], b"").ok().stdout_text(), "");
}

#[test]
fn produced_lines_come_back_with_keys_headers_and_exact_formatting() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Nerve::start(dir.path());
    let b = &broker.bootstrap();
    nerve(b, &["topic", "create", "events", "--partitions", "2"], b"").ok();

    let mut input = b"user-1:signed up\nuser-2:paid: 10 EUR\nno key here\n:empty key\n".to_vec();
    input.extend_from_slice(b"bin:\xff\xfe\n");
    let produced = nerve(
        b,
        &[
            "produce",
            "events",
            "--key-separator",
            ":",
            "--header",
            "source=cli",
            "--header",
            "trace=a=b",
            "--partition",
            "1",
            "--compression",
            "zstd",
        ],
        &input,
    )
    .ok();
    assert_eq!(
        produced.stderr,
        "nerve: 5 records delivered to events\n  partition 1: 5 records, offsets 0 to 4\n"
    );

    let formatted = nerve(
        b,
        &[
            "consume",
            "events",
            "--exit-at-end",
            "--format",
            r"%p/%o\t%k=%v [%h] 100%%",
        ],
        b"",
    )
    .ok();
    let mut expected = b"1/0\tuser-1=signed up [source=cli,trace=a=b] 100%\n\
1/1\tuser-2=paid: 10 EUR [source=cli,trace=a=b] 100%\n\
1/2\t=no key here [source=cli,trace=a=b] 100%\n\
1/3\t=empty key [source=cli,trace=a=b] 100%\n"
        .to_vec();
    expected.extend_from_slice(b"1/4\tbin=\xff\xfe [source=cli,trace=a=b] 100%\n");
    assert_eq!(
        formatted.stdout,
        expected,
        "{}",
        String::from_utf8_lossy(&formatted.stdout)
    );
    assert_eq!(formatted.stderr, "nerve: 5 records consumed from events\n");

    // Timestamps are the producer's clock: read them, then expect them exactly in the JSON.
    let timestamps = nerve(
        b,
        &["consume", "events", "--exit-at-end", "--format", "%t"],
        b"",
    )
    .ok()
    .stdout_text();
    let t: Vec<&str> = timestamps.lines().collect();
    assert_eq!(t.len(), 5);
    let headers = r#"[{"key":"source","value":"cli"},{"key":"trace","value":"a=b"}]"#;
    let expected_json = [
        format!(r#"{{"topic":"events","partition":1,"offset":0,"timestamp":{},"key":"user-1","value":"signed up","headers":{headers}}}"#, t[0]),
        format!(r#"{{"topic":"events","partition":1,"offset":1,"timestamp":{},"key":"user-2","value":"paid: 10 EUR","headers":{headers}}}"#, t[1]),
        format!(r#"{{"topic":"events","partition":1,"offset":2,"timestamp":{},"key":null,"value":"no key here","headers":{headers}}}"#, t[2]),
        format!(r#"{{"topic":"events","partition":1,"offset":3,"timestamp":{},"key":"","value":"empty key","headers":{headers}}}"#, t[3]),
        format!(r#"{{"topic":"events","partition":1,"offset":4,"timestamp":{},"key":"bin","value":{{"base64":"//4="}},"headers":{headers}}}"#, t[4]),
    ]
    .join("\n")
        + "\n";
    let json = nerve(b, &["consume", "events", "--exit-at-end", "--json"], b"").ok();
    assert_eq!(json.stdout_text(), expected_json);

    // --count stops early; --partition 0 holds nothing.
    let first = nerve(b, &["consume", "events", "--count", "1"], b"").ok();
    assert_eq!(first.stdout_text(), "signed up\n");
    let empty = nerve(
        b,
        &["consume", "events", "--partition", "0", "--exit-at-end"],
        b"",
    )
    .ok();
    assert_eq!(empty.stdout_text(), "");
}

#[test]
fn consuming_starts_at_an_offset_or_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Nerve::start(dir.path());
    let b = &broker.bootstrap();
    nerve(b, &["topic", "create", "log"], b"").ok();
    nerve(b, &["produce", "log"], b"a\nb\nc\n").ok();
    // Records produced after `between` carry a later timestamp (the producer's clock, in milliseconds).
    std::thread::sleep(Duration::from_millis(20));
    let between = now_ms();
    std::thread::sleep(Duration::from_millis(20));
    nerve(b, &["produce", "log"], b"d\ne\n").ok();

    let consume = |from: &str| {
        nerve(
            b,
            &[
                "consume",
                "log",
                "--from",
                from,
                "--exit-at-end",
                "--format",
                "%o %v",
            ],
            b"",
        )
        .ok()
        .stdout_text()
    };
    assert_eq!(consume("beginning"), "0 a\n1 b\n2 c\n3 d\n4 e\n");
    assert_eq!(consume("3"), "3 d\n4 e\n");
    assert_eq!(consume("end"), "");
    // Past the end: nothing yet, rather than a jump back to the start.
    assert_eq!(consume("99"), "");
    assert_eq!(consume(&format!("@{between}")), "3 d\n4 e\n");
    assert_eq!(consume("2000-01-01T00:00:00Z"), "0 a\n1 b\n2 c\n3 d\n4 e\n");
    assert_eq!(consume("2999-01-01T01:00:00+01:00"), "");

    // --timeout ends a wait for records that do not come.
    let idle = nerve(
        b,
        &["consume", "log", "--from", "end", "--timeout", "1"],
        b"",
    )
    .ok();
    assert_eq!(idle.stdout_text(), "");
    assert_eq!(idle.stderr, "nerve: 0 records consumed from log\n");

    let bad = nerve(b, &["consume", "log", "--from", "yesterday"], b"");
    assert_eq!(bad.code, Some(2), "clap refuses it: {}", bad.stderr);
    assert!(bad.stderr.contains("RFC 3339"), "{}", bad.stderr);
}

#[test]
fn an_oversized_record_fails_the_command_but_not_the_lines_around_it() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Nerve::start(dir.path());
    let b = &broker.bootstrap();
    nerve(b, &["topic", "create", "t"], b"").ok();
    // Over librdkafka's message.max.bytes (1 MB): refused before it is sent.
    let mut input = b"before\n".to_vec();
    input.extend(std::iter::repeat_n(b'x', 2_000_000));
    input.extend_from_slice(b"\nafter\n");
    let run = nerve(b, &["produce", "t"], &input);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stderr.starts_with(
            "nerve: 2 records delivered to t\n  partition 0: 2 records, offsets 0 to 1\n\
             nerve: 1 of 3 records not delivered: line 2: "
        ),
        "{}",
        run.stderr
    );
    let consumed = nerve(b, &["consume", "t", "--exit-at-end"], b"").ok();
    assert_eq!(consumed.stdout_text(), "before\nafter\n");
}

#[test]
fn an_unreachable_broker_fails_quickly_naming_the_address() {
    // A port nothing listens on: bound, then released.
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let address = format!("127.0.0.1:{port}");
    let commands: [&[&str]; 4] = [
        &["topic", "list"],
        &["topic", "create", "t"],
        &["produce", "t"],
        &["consume", "t"],
    ];
    // In parallel: each waits out the default connect timeout (5 s); librdkafka alone retries forever.
    let runs: Vec<_> = commands
        .into_iter()
        .map(|args| {
            let address = address.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                let run = nerve(&address, args, b"x\n");
                (args, started.elapsed(), run)
            })
        })
        .collect();
    for run in runs {
        let (args, took, run) = run.join().expect("command thread");
        assert!(took < Duration::from_secs(20), "{args:?} took {took:?}");
        run.fails_with(&format!("cannot reach the broker at {address}"));
    }
}

#[test]
fn bad_flags_are_refused_before_connecting() {
    for args in [
        &["produce", "t", "--compression", "brotli"][..],
        &["produce", "t", "--header", "no-equals-sign"],
        &["consume", "t", "--format", "%x"],
        &["consume", "t", "--format", "%v", "--json"],
        &["topic", "create", "t", "--partitions", "0"],
        &["topic", "alter", "t"],
    ] {
        let run = nerve("127.0.0.1:1", args, b"");
        assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("cannot reach"), "{args:?}");
    }
}

#[test]
fn every_command_documents_itself_with_examples() {
    for args in [
        &["topic", "--help"][..],
        &["topic", "create", "--help"],
        &["topic", "list", "--help"],
        &["topic", "describe", "--help"],
        &["topic", "alter", "--help"],
        &["topic", "delete", "--help"],
        &["produce", "--help"],
        &["consume", "--help"],
    ] {
        let help = nerve("127.0.0.1:1", args, b"").ok().stdout_text();
        assert!(help.contains("Examples:"), "{args:?}");
        assert!(help.contains("--bootstrap"), "{args:?}");
        assert!(help.contains("NERVE_BOOTSTRAP"), "{args:?}");
    }
    let consume = nerve("127.0.0.1:1", &["consume", "--help"], b"")
        .ok()
        .stdout_text();
    for placeholder in ["%k", "%v", "%h", "%p", "%o", "%t", "base64"] {
        assert!(consume.contains(placeholder), "{placeholder}");
    }
}

#[test]
fn groups_are_listed_and_described_with_their_lag() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let dir = tempfile::tempdir().unwrap();
    let broker = Nerve::start(dir.path());
    let b = &broker.bootstrap();
    nerve(b, &["topic", "create", "orders", "--partitions", "2"], b"").ok();
    nerve(
        b,
        &["produce", "orders", "--partition", "0"],
        b"1\n2\n3\n4\n5\n",
    )
    .ok();
    // A simple commit: offset 2 of partition 0, without joining the group.
    let committer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", b)
        .set("group.id", "billing")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut offsets = rdkafka::TopicPartitionList::new();
    offsets
        .add_partition_offset("orders", 0, rdkafka::Offset::Offset(2))
        .unwrap();
    committer
        .commit(&offsets, CommitMode::Sync)
        .expect("commit");

    assert_eq!(
        nerve(b, &["group", "list"], b"").ok().stdout_text(),
        "billing  Empty\n"
    );
    let described = nerve(b, &["group", "describe", "billing"], b"")
        .ok()
        .stdout_text();
    let lines: Vec<Vec<&str>> = described
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        described.lines().next(),
        Some("group billing: Empty, 0 members, protocol -")
    );
    assert_eq!(
        lines[1..],
        [
            vec![
                "TOPIC",
                "PARTITION",
                "CURRENT-OFFSET",
                "LOG-END-OFFSET",
                "LAG",
                "CONSUMER-ID",
                "HOST",
                "CLIENT-ID"
            ],
            vec!["orders", "0", "2", "5", "3", "-", "-", "-"],
        ]
    );
    nerve(b, &["group", "describe", "nobody"], b"").fails_with("group nobody does not exist");

    // Resetting: a dry run commits nothing; offsets stay within the log.
    let reset = |args: &[&str]| {
        let mut all = vec!["group", "reset-offsets", "billing", "--topic", "orders"];
        all.extend_from_slice(args);
        nerve(b, &all, b"").ok().stdout_text()
    };
    let dry = reset(&["--to-earliest", "--dry-run"]);
    assert!(dry.contains("orders  0  2  0\n"), "{dry}");
    assert!(dry.contains("(dry run: nothing committed)"), "{dry}");
    assert!(reset(&["--shift-by", "2"]).contains("orders  0  2  4\n"));
    assert!(reset(&["--shift-by", "-9"]).contains("orders  0  4  0\n"));
    assert!(reset(&["--to-offset", "99"]).contains("orders  0  0  5\n"));
    let latest = reset(&["--to-latest"]);
    assert!(latest.contains("orders  1  0  0\n"), "{latest}");
    let described = nerve(b, &["group", "describe", "billing"], b"")
        .ok()
        .stdout_text();
    let row: Vec<&str> = described
        .lines()
        .nth(2)
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(row[..5], ["orders", "0", "5", "5", "0"], "{described}");

    // Not while the group has members.
    let member: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", b)
        .set("group.id", "billing")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    member.subscribe(&["orders"]).unwrap();
    let started = Instant::now();
    while member.assignment().unwrap().count() == 0 {
        assert!(
            started.elapsed() < PATIENCE,
            "the member never got partitions"
        );
        let _ = member.poll(Duration::from_millis(100));
    }
    nerve(
        b,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-earliest",
        ],
        b"",
    )
    .fails_with("group billing has 1 live member: stop them");
}
