//! The security commands (`nerve user`, `nerve acl`) and the client settings of every Kafka command
//! (`--command-config`, `-X`), run as the built binary against a `nerve serve` of its own.

mod common;

use std::path::Path;

use common::{nerve, run_nerve, Nerve, Run};

const ADMIN_PASSWORD: &str = "admin-secret";

/// A broker started with the `[kafka]` section `kafka(port)` in its config file.
fn start_configured(data_dir: &Path, config_dir: &Path, kafka: &dyn Fn(u16) -> String) -> Nerve {
    let config = config_dir.join("nerve.toml");
    Nerve::start_with(data_dir, &|port| {
        std::fs::write(&config, format!("[kafka]\n{}", kafka(port))).expect("config written");
        vec!["--config".into(), config.display().to_string()]
    })
}

/// A broker whose one listener is SASL_PLAINTEXT with SCRAM and PLAIN.
fn start_sasl(data_dir: &Path, config_dir: &Path) -> Nerve {
    start_configured(data_dir, config_dir, &|port| {
        format!(
            "listeners = \"SASL_PLAINTEXT://127.0.0.1:{port}\"\n\
             sasl_enabled_mechanisms = [\"SCRAM-SHA-256\", \"SCRAM-SHA-512\", \"PLAIN\"]\n\
             connection_failed_authentication_delay_ms = 0\n"
        )
    })
}

/// `-X` flags for SASL_PLAINTEXT as `user` with `mechanism`.
fn sasl_flags(mechanism: &str, user: &str, password: &str) -> Vec<String> {
    [
        "security.protocol=SASL_PLAINTEXT".to_string(),
        format!("sasl.mechanism={mechanism}"),
        format!("sasl.username={user}"),
        format!("sasl.password={password}"),
    ]
    .into_iter()
    .flat_map(|setting| ["-X".to_string(), setting])
    .collect()
}

fn with<'a>(args: &[&'a str], more: &'a [String]) -> Vec<&'a str> {
    args.iter()
        .copied()
        .chain(more.iter().map(String::as_str))
        .collect()
}

/// `nerve user create NAME --data-dir DIR` with the password on stdin.
fn create_offline(dir: &Path, name: &str, password: &str) -> Run {
    run_nerve(
        &[
            "user",
            "create",
            name,
            "--password-stdin",
            "--data-dir",
            dir.to_str().unwrap(),
        ],
        &[],
        format!("{password}\n").as_bytes(),
    )
}

#[test]
fn the_first_user_is_created_offline_and_then_authenticates_over_sasl() {
    let dir = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let run = create_offline(&data, "admin", ADMIN_PASSWORD).ok();
    assert!(
        run.stdout_text()
            .contains("SCRAM-SHA-512 credential of user admin"),
        "{}",
        run.stdout_text()
    );
    let broker = start_sasl(&data, config.path());
    let bootstrap = broker.bootstrap();

    // While the broker runs, the data directory is its alone.
    create_offline(&data, "late", "pw").fails_with(&format!(
        "a broker is running on {}; create the user through it with --bootstrap",
        data.display()
    ));

    // librdkafka's commands authenticate with the offline user: -X flags...
    let scram = sasl_flags("SCRAM-SHA-512", "admin", ADMIN_PASSWORD);
    nerve(
        &bootstrap,
        &with(&["topic", "create", "orders"], &scram),
        b"",
    )
    .ok();
    // ... or a Kafka tool's properties file, PLAIN checked against the SCRAM credential.
    let properties = config.path().join("admin.properties");
    std::fs::write(
        &properties,
        format!(
            "# as kafka-topics.sh --command-config reads it\nsecurity.protocol=SASL_PLAINTEXT\n\
             sasl.mechanism=PLAIN\n\
             sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required \\\n  \
             username=\"admin\" password=\"{ADMIN_PASSWORD}\";\n"
        ),
    )
    .unwrap();
    let listed = nerve(
        &bootstrap,
        &[
            "topic",
            "list",
            "--command-config",
            properties.to_str().unwrap(),
        ],
        b"",
    )
    .ok();
    assert!(listed.stdout_text().lines().any(|l| l == "orders"));
    // The same through the environment.
    run_nerve(
        &["produce", "orders"],
        &[
            ("NERVE_BOOTSTRAP", bootstrap.as_str()),
            ("NERVE_COMMAND_CONFIG", properties.to_str().unwrap()),
        ],
        b"one\ntwo\n",
    )
    .ok();

    // A wrong password is refused, by librdkafka and by Nerve's own admin client alike.
    let wrong = sasl_flags("SCRAM-SHA-256", "admin", "wrong");
    let refused = nerve(&bootstrap, &with(&["topic", "list"], &wrong), b"");
    assert_eq!(refused.code, Some(1), "{}", refused.stderr);
    assert!(
        refused.stderr.to_lowercase().contains("auth"),
        "{}",
        refused.stderr
    );
    nerve(&bootstrap, &with(&["user", "list"], &wrong), b"")
        .fails_with("authentication as admin with SCRAM-SHA-256 failed");
    let plain = sasl_flags("PLAIN", "admin", "wrong");
    nerve(&bootstrap, &with(&["acl", "list"], &plain), b"")
        .fails_with("authentication as admin with PLAIN failed");
    // Without SASL the listener answers nothing but ApiVersions: a clear error, not a hang.
    nerve(&bootstrap, &["user", "list"], b"").fails_with("closed the connection");
    // TLS spoken to a plain-text listener.
    nerve(
        &bootstrap,
        &[
            "user",
            "list",
            "-X",
            "security.protocol=SASL_SSL",
            "-X",
            "sasl.username=a",
            "-X",
            "sasl.password=b",
        ],
        b"",
    )
    .fails_with("TLS handshake");
    broker.stop();

    // Stopped, the directory can be written again.
    create_offline(&data, "late", "pw").ok();
}

#[test]
fn client_settings_that_cannot_work_are_refused_before_connecting() {
    // Nothing listens here: every refusal below comes before a connection is tried.
    let bootstrap = "127.0.0.1:1";
    let missing = nerve(
        bootstrap,
        &[
            "topic",
            "list",
            "--command-config",
            "/nonexistent/client.properties",
        ],
        b"",
    );
    let missing = missing.fails_with("/nonexistent/client.properties");
    assert!(missing.stdout.is_empty());
    nerve(
        bootstrap,
        &["user", "list", "-X", "security.protocol=TLS"],
        b"",
    )
    .fails_with("expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL");
    nerve(
        bootstrap,
        &["acl", "list", "-X", "security.protocol=SASL_SSL"],
        b"",
    )
    .fails_with("needs sasl.username and sasl.password");
    nerve(
        bootstrap,
        &[
            "topic",
            "list",
            "-X",
            "ssl.truststore.location=/etc/kafka/trust.jks",
        ],
        b"",
    )
    .fails_with("ssl.ca.location");
    nerve(bootstrap, &["user", "list", "-X", "no-equals-sign"], b"")
        .code
        .filter(|code| *code != 0)
        .expect("a bad -X is refused");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.properties");
    std::fs::write(&bad, "security.protocol=SASL_SSL\njust words\n").unwrap();
    nerve(
        bootstrap,
        &["group", "list", "--command-config", bad.to_str().unwrap()],
        b"",
    )
    .fails_with("line 2");
    // Unreachable: named, within the timeout.
    nerve(bootstrap, &["user", "list", "--connect-timeout", "2"], b"")
        .fails_with("cannot reach the broker at 127.0.0.1:1");
}

#[test]
fn offline_user_creation_checks_its_input() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    create_offline(dir.path(), "alice", "").fails_with("the password is empty");
    run_nerve(&["user", "create", "alice", "--data-dir", data], &[], b"")
        .code
        .filter(|code| *code != 0)
        .expect("a password is required");
    let low = run_nerve(
        &[
            "user",
            "create",
            "alice",
            "--password",
            "pw",
            "--iterations",
            "100",
            "--data-dir",
            data,
        ],
        &[],
        b"",
    );
    assert_ne!(low.code, Some(0), "{}", low.stderr);
    assert!(low.stderr.contains("4096"), "{}", low.stderr);
    let run = run_nerve(
        &[
            "user",
            "create",
            "alice",
            "--password",
            "pw",
            "--mechanism",
            "scram-sha-256",
            "--iterations",
            "4096",
            "--data-dir",
            data,
        ],
        &[],
        b"",
    )
    .ok();
    assert!(
        run.stdout_text()
            .contains("set the SCRAM-SHA-256 credential of user alice (4096 iterations)"),
        "{}",
        run.stdout_text()
    );
    let stored = std::fs::read_to_string(dir.path().join("meta/cluster.json")).unwrap();
    assert!(stored.contains("alice") && stored.contains("SCRAM-SHA-256"));
    assert!(!stored.contains("\"pw\""), "the password is never stored");
}

/// The rows of a table printed by the CLI, header first, cells split on runs of two or more spaces.
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|line| {
            line.split("  ")
                .map(str::trim)
                .filter(|cell| !cell.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

// The tests below go through the broker's DescribeUserScramCredentials / AlterUserScramCredentials and
// CreateAcls / DescribeAcls / DeleteAcls handlers.

#[test]
fn users_are_created_listed_and_deleted_through_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Nerve::start_with(dir.path(), &|_| Vec::new());
    let bootstrap = broker.bootstrap();
    let empty = nerve(&bootstrap, &["user", "list"], b"").ok();
    assert_eq!(
        table(&empty.stdout_text()),
        vec![vec!["USER", "MECHANISM", "ITERATIONS"]]
    );
    nerve(
        &bootstrap,
        &["user", "create", "alice", "--password-stdin"],
        b"alice-secret\n",
    )
    .ok();
    nerve(
        &bootstrap,
        &[
            "user",
            "create",
            "alice",
            "--password",
            "alice-secret",
            "--mechanism",
            "SCRAM-SHA-256",
            "--iterations",
            "4096",
        ],
        b"",
    )
    .ok();
    nerve(
        &bootstrap,
        &["user", "create", "bob", "--password", "bob-secret"],
        b"",
    )
    .ok();
    let listed = nerve(&bootstrap, &["user", "list"], b"").ok();
    assert_eq!(
        table(&listed.stdout_text()),
        vec![
            vec!["USER", "MECHANISM", "ITERATIONS"],
            vec!["alice", "SCRAM-SHA-256", "4096"],
            vec!["alice", "SCRAM-SHA-512", "8192"],
            vec!["bob", "SCRAM-SHA-512", "8192"],
        ]
    );

    nerve(
        &bootstrap,
        &["user", "delete", "alice", "--mechanism", "SCRAM-SHA-256"],
        b"",
    )
    .ok();
    nerve(
        &bootstrap,
        &["user", "delete", "alice", "--mechanism", "SCRAM-SHA-256"],
        b"",
    )
    .fails_with("user alice has no SCRAM-SHA-256 credential");
    let deleted = nerve(&bootstrap, &["user", "delete", "bob"], b"").ok();
    assert_eq!(
        deleted.stdout_text().trim(),
        "deleted user bob (SCRAM-SHA-512)"
    );
    nerve(&bootstrap, &["user", "delete", "bob"], b"").fails_with("user bob does not exist");
    let listed = nerve(&bootstrap, &["user", "list"], b"").ok();
    assert_eq!(
        table(&listed.stdout_text()),
        vec![
            vec!["USER", "MECHANISM", "ITERATIONS"],
            vec!["alice", "SCRAM-SHA-512", "8192"],
        ]
    );
}

#[test]
fn a_user_created_through_the_broker_authenticates_and_manages_users_over_sasl() {
    let dir = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    create_offline(dir.path(), "admin", ADMIN_PASSWORD).ok();
    let broker = start_sasl(dir.path(), config.path());
    let bootstrap = broker.bootstrap();
    let admin = sasl_flags("SCRAM-SHA-512", "admin", ADMIN_PASSWORD);
    nerve(
        &bootstrap,
        &with(&["user", "create", "carol", "--password-stdin"], &admin),
        b"carol-secret\n",
    )
    .ok();
    let listed = nerve(&bootstrap, &with(&["user", "list"], &admin), b"").ok();
    let rows = table(&listed.stdout_text());
    assert!(rows.contains(&vec![
        "carol".to_string(),
        "SCRAM-SHA-512".to_string(),
        "8192".to_string()
    ]));
    // carol's salted password, sent by the CLI, lets librdkafka authenticate as carol.
    let carol = sasl_flags("SCRAM-SHA-512", "carol", "carol-secret");
    nerve(&bootstrap, &with(&["topic", "list"], &carol), b"").ok();
}

#[test]
fn acls_are_added_listed_and_removed() {
    let dir = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    // Anonymous plain-text clients may manage ACLs here: the API is the point, not who may call it.
    let broker = start_configured(dir.path(), config.path(), &|_| {
        "authorizer_enabled = true\nsuper_users = [\"User:ANONYMOUS\"]\n".to_string()
    });
    let bootstrap = broker.bootstrap();
    let header = vec![
        "PRINCIPAL",
        "PERMISSION",
        "OPERATION",
        "HOST",
        "RESOURCE TYPE",
        "NAME",
        "PATTERN",
    ];
    let none = nerve(&bootstrap, &["acl", "list"], b"").ok();
    assert_eq!(none.stdout_text(), "");

    let added = nerve(
        &bootstrap,
        &[
            "acl",
            "add",
            "--allow",
            "--principal",
            "User:alice",
            "--operation",
            "read",
            "--operation",
            "describe",
            "--topic",
            "orders",
        ],
        b"",
    )
    .ok();
    assert_eq!(
        added.stdout_text().lines().count(),
        2,
        "{}",
        added.stdout_text()
    );
    nerve(
        &bootstrap,
        &[
            "acl",
            "add",
            "--deny",
            "--principal",
            "User:bob",
            "--host",
            "10.0.0.7",
            "--operation",
            "write",
            "--topic",
            "orders",
            "--prefixed",
        ],
        b"",
    )
    .ok();
    nerve(
        &bootstrap,
        &[
            "acl",
            "add",
            "--allow",
            "--principal",
            "User:ops",
            "--operation",
            "describe-configs",
            "--cluster",
        ],
        b"",
    )
    .ok();

    let listed = nerve(&bootstrap, &["acl", "list"], b"").ok();
    assert_eq!(
        table(&listed.stdout_text()),
        vec![
            header.clone(),
            vec![
                "User:alice",
                "ALLOW",
                "DESCRIBE",
                "*",
                "TOPIC",
                "orders",
                "LITERAL"
            ],
            vec![
                "User:alice",
                "ALLOW",
                "READ",
                "*",
                "TOPIC",
                "orders",
                "LITERAL"
            ],
            vec!["User:bob", "DENY", "WRITE", "10.0.0.7", "TOPIC", "orders", "PREFIXED"],
            vec![
                "User:ops",
                "ALLOW",
                "DESCRIBE_CONFIGS",
                "*",
                "CLUSTER",
                "kafka-cluster",
                "LITERAL"
            ],
        ]
    );
    // Filters narrow the list; a name without --prefixed shows both pattern types.
    let alice = nerve(
        &bootstrap,
        &[
            "acl",
            "list",
            "--principal",
            "User:alice",
            "--operation",
            "read",
        ],
        b"",
    )
    .ok();
    assert_eq!(table(&alice.stdout_text()).len(), 2);
    let orders = nerve(&bootstrap, &["acl", "list", "--topic", "orders"], b"").ok();
    assert_eq!(table(&orders.stdout_text()).len(), 4);

    // remove reads add's flags as add does: without --prefixed, bob's PREFIXED binding stays.
    let kept = nerve(
        &bootstrap,
        &[
            "acl",
            "remove",
            "--principal",
            "User:bob",
            "--topic",
            "orders",
        ],
        b"",
    )
    .ok();
    assert_eq!(kept.stdout_text().trim(), "no ACL matched");
    let removed = nerve(
        &bootstrap,
        &[
            "acl",
            "remove",
            "--principal",
            "User:bob",
            "--topic",
            "orders",
            "--prefixed",
        ],
        b"",
    )
    .ok();
    let rows = table(&removed.stdout_text());
    assert_eq!(rows[0], vec!["removed 1 ACL:"]);
    assert_eq!(
        rows[2],
        vec!["User:bob", "DENY", "WRITE", "10.0.0.7", "TOPIC", "orders", "PREFIXED"]
    );
    let removed = nerve(
        &bootstrap,
        &["acl", "remove", "--principal", "User:alice"],
        b"",
    )
    .ok();
    assert!(
        removed.stdout_text().starts_with("removed 2 ACLs:"),
        "{}",
        removed.stdout_text()
    );
    nerve(&bootstrap, &["acl", "remove"], b"").fails_with("say which ACLs to remove");

    let listed = nerve(&bootstrap, &["acl", "list"], b"").ok();
    assert_eq!(
        table(&listed.stdout_text()),
        vec![
            header,
            vec![
                "User:ops",
                "ALLOW",
                "DESCRIBE_CONFIGS",
                "*",
                "CLUSTER",
                "kafka-cluster",
                "LITERAL"
            ],
        ]
    );
}

#[test]
fn acl_commands_say_when_the_broker_has_no_authorizer() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Nerve::start_with(dir.path(), &|_| Vec::new());
    nerve(&broker.bootstrap(), &["acl", "list"], b"").fails_with("authorizer_enabled");
}

#[test]
fn help_documents_the_security_commands_and_client_settings() {
    for (args, expected) in [
        (
            &["user", "create", "--help"][..],
            &[
                "--password-stdin",
                "--mechanism",
                "--iterations",
                "--data-dir",
                "--command-config",
                "-X",
            ][..],
        ),
        (&["user", "delete", "--help"], &["--mechanism"]),
        (
            &["acl", "add", "--help"],
            &[
                "--allow",
                "--deny",
                "--principal",
                "--host",
                "--operation",
                "--topic",
                "--group",
                "--cluster",
                "--transactional-id",
                "--prefixed",
            ],
        ),
        (
            &["topic", "list", "--help"],
            &[
                "--command-config",
                "NERVE_COMMAND_CONFIG",
                "sasl.mechanism",
                "-X",
            ],
        ),
        (&["consume", "--help"], &["--command-config", "-X"]),
    ] {
        let help = run_nerve(args, &[], b"").ok().stdout_text();
        for flag in expected {
            assert!(help.contains(flag), "{args:?}: {flag} missing from\n{help}");
        }
    }
    for args in [
        &["user", "--help"][..],
        &["user", "create", "--help"],
        &["user", "list", "--help"],
        &["user", "delete", "--help"],
        &["acl", "--help"],
        &["acl", "add", "--help"],
        &["acl", "list", "--help"],
        &["acl", "remove", "--help"],
    ] {
        let help = run_nerve(args, &[], b"").ok().stdout_text();
        assert!(help.contains("Examples:"), "{args:?}");
        assert!(help.contains("NERVE_BOOTSTRAP"), "{args:?}");
    }
}

#[test]
fn every_kind_of_client_command_works_over_sasl_ssl() {
    let dir = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let pki = nerve_tls::testing::TestPki::generate(config.path());
    create_offline(dir.path(), "admin", ADMIN_PASSWORD).ok();
    let config_file = config.path().join("nerve.toml");
    let (cert, key) = (pki.server_cert.clone(), pki.server_key.clone());
    let broker = Nerve::start_with(dir.path(), &|port| {
        std::fs::write(
            &config_file,
            format!(
                "[kafka]\nlisteners = \"SASL_SSL://127.0.0.1:{port}\"\n\
                 super_users = [\"User:admin\"]\nauthorizer_enabled = true\n\
                 [tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n",
                cert.display(),
                key.display()
            ),
        )
        .expect("config written");
        vec!["--config".into(), config_file.display().to_string()]
    });
    let properties = config.path().join("client.properties");
    std::fs::write(
        &properties,
        format!(
            "security.protocol=SASL_SSL\nsasl.mechanism=SCRAM-SHA-512\nsasl.username=admin\n\
             sasl.password={ADMIN_PASSWORD}\nssl.ca.location={}\n",
            pki.ca_cert.display()
        ),
    )
    .unwrap();
    let env = [
        ("NERVE_BOOTSTRAP", broker.bootstrap()),
        ("NERVE_COMMAND_CONFIG", properties.display().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    run_nerve(&["topic", "create", "orders"], &env, b"").ok();
    run_nerve(&["produce", "orders"], &env, b"one\n").ok();
    let consumed = run_nerve(&["consume", "orders", "--exit-at-end"], &env, b"");
    let consumed = consumed.ok();
    assert_eq!(consumed.stdout_text(), "one\n");
    run_nerve(&["group", "list"], &env, b"").ok();
    run_nerve(
        &["user", "create", "dave", "--password", "dave-secret"],
        &env,
        b"",
    )
    .ok();
    let users = run_nerve(&["user", "list"], &env, b"").ok();
    assert!(
        users.stdout_text().contains("dave"),
        "{}",
        users.stdout_text()
    );
    run_nerve(
        &[
            "acl",
            "add",
            "--allow",
            "--principal",
            "User:dave",
            "--operation",
            "read",
            "--topic",
            "orders",
        ],
        &env,
        b"",
    )
    .ok();
    let acls = run_nerve(&["acl", "list", "--principal", "User:dave"], &env, b"").ok();
    assert_eq!(table(&acls.stdout_text()).len(), 2);
    // Without the CA the broker's certificate is not trusted.
    let untrusted = run_nerve(
        &[
            "user",
            "list",
            "-X",
            "ssl.ca.location=/etc/ssl/certs/ca-certificates.crt",
        ],
        &env,
        b"",
    );
    assert_eq!(untrusted.code, Some(1), "{}", untrusted.stderr);
}
