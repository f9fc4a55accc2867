//! Security end to end with librdkafka (the `rdkafka` crate): SASL_SSL with SCRAM-SHA-512, mutual TLS,
//! ACLs deciding what each user may do, a wrong password, a plaintext client on a TLS port, and a flood of
//! unauthenticated connections that does not stop an authenticated client from being served.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use nerve_auth::testing::TokenIssuer;
use nerve_auth::{Operation, PatternType, Permission, ResourceType};
use nerve_storage::{LocalMetaStore, MetaStore, StoredAcl};
use nerve_tls::testing::TestPki;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

/// A secured Nerve: PLAINTEXT (for nobody: no ACL names `User:ANONYMOUS`), SASL_SSL and SSL listeners,
/// the authorizer on with `admin` as super user, users `admin`, `alice` and `bob`, and ACLs: alice may
/// read and write topics and groups starting with `secure-`; the client certificate `CN=carol,O=Acme`
/// may write `mtls-topic`.
struct Secured {
    nerve: Nerve,
    pki: TestPki,
    /// The server certificate and key the broker reads (copies of the PKI's, so a test can renew them).
    live_cert: PathBuf,
    live_key: PathBuf,
    log: PathBuf,
    sasl_ssl: u16,
    ssl: u16,
    carol: (PathBuf, PathBuf),
    _dir: tempfile::TempDir,
}

fn secured(extra_kafka_settings: &str) -> Secured {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    let pki = TestPki::generate(&pki_dir);
    let carol = pki.client("carol", "/O=Acme/CN=carol");
    bootstrap_users_and_acls(&data);
    let (plaintext, sasl_ssl, ssl) = (any_free_port(), any_free_port(), any_free_port());
    let live_cert = dir.path().join("live-server.pem");
    let live_key = dir.path().join("live-server.key");
    std::fs::copy(&pki.server_cert, &live_cert).unwrap();
    std::fs::copy(&pki.server_key, &live_key).unwrap();
    let log = dir.path().join("nerve.log");
    let config = dir.path().join("nerve.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
listeners = "PLAINTEXT://127.0.0.1:{plaintext},SASL_SSL://127.0.0.1:{sasl_ssl},SSL://127.0.0.1:{ssl}"
authorizer_enabled = true
super_users = ["User:admin"]
{extra_kafka_settings}

[tls]
cert_file = "{cert}"
key_file = "{key}"
ca_file = "{ca}"
client_auth = "requested"
"#,
            cert = live_cert.display(),
            key = live_key.display(),
            ca = pki.ca_cert.display(),
        ),
    )
    .unwrap();
    let nerve = Nerve::start_on_logging_to(
        &data,
        plaintext,
        &["--config".into(), config.display().to_string()],
        &log,
    );
    wait_for_port(sasl_ssl);
    wait_for_port(ssl);
    Secured {
        nerve,
        pki,
        live_cert,
        live_key,
        log,
        sasl_ssl,
        ssl,
        carol,
        _dir: dir,
    }
}

fn wait_for_port(port: u16) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(started.elapsed() < PATIENCE, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What `nerve user create --data-dir` and an admin's ACLs would have stored, written before the start.
fn bootstrap_users_and_acls(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let meta = LocalMetaStore::open(data).unwrap();
        for user in ["admin", "alice", "bob"] {
            store_scram_user(&meta, user, &format!("{user}-secret")).await;
        }
        let allow = |resource_type: ResourceType,
                     name: &str,
                     pattern: PatternType,
                     principal: &str,
                     operation: Operation| StoredAcl {
            resource_type: resource_type.code(),
            resource_name: name.into(),
            pattern_type: pattern.code(),
            principal: principal.into(),
            host: "*".into(),
            operation: operation.code(),
            permission: Permission::Allow.code(),
        };
        meta.set_acls(vec![
            allow(
                ResourceType::Topic,
                "secure-",
                PatternType::Prefixed,
                "User:alice",
                Operation::Write,
            ),
            allow(
                ResourceType::Topic,
                "secure-",
                PatternType::Prefixed,
                "User:alice",
                Operation::Read,
            ),
            allow(
                ResourceType::Group,
                "secure-",
                PatternType::Prefixed,
                "User:alice",
                Operation::Read,
            ),
            allow(
                ResourceType::Topic,
                "mtls-topic",
                PatternType::Literal,
                "User:CN=carol,O=Acme",
                Operation::Write,
            ),
        ])
        .await
        .unwrap();
    });
}

impl Secured {
    fn sasl(&self, user: &str, password: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", format!("127.0.0.1:{}", self.sasl_ssl))
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", "SCRAM-SHA-512")
            .set("sasl.username", user)
            .set("sasl.password", password)
            .set("ssl.ca.location", self.pki.ca_cert.display().to_string())
            .set("message.timeout.ms", "10000")
            .set("socket.timeout.ms", "10000");
        config
    }

    fn mtls(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", format!("127.0.0.1:{}", self.ssl))
            .set("security.protocol", "SSL")
            .set("ssl.ca.location", self.pki.ca_cert.display().to_string())
            .set(
                "ssl.certificate.location",
                self.carol.0.display().to_string(),
            )
            .set("ssl.key.location", self.carol.1.display().to_string())
            .set("message.timeout.ms", "10000");
        config
    }

    fn create_topic_as_admin(&self, topic: &str) {
        let admin: AdminClient<DefaultClientContext> =
            self.sasl("admin", "admin-secret").create().unwrap();
        let created = futures::executor::block_on(admin.create_topics(
            &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(PATIENCE)),
        ))
        .unwrap();
        assert!(created[0].is_ok(), "{created:?}");
    }
}

fn send(config: &ClientConfig, topic: &str, value: &str) -> Result<i64, KafkaError> {
    let producer: FutureProducer = config.create().unwrap();
    futures::executor::block_on(
        producer.send(FutureRecord::<(), _>::to(topic).payload(value), PATIENCE),
    )
    .map(|delivery| delivery.offset)
    .map_err(|(e, _)| e)
}

fn code(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    error.rdkafka_error_code()
}

fn topics_visible(config: &ClientConfig) -> Vec<String> {
    let consumer: BaseConsumer = config.create().unwrap();
    let metadata = consumer
        .fetch_metadata(None, PATIENCE)
        .expect("metadata answers");
    let mut names: Vec<String> = metadata
        .topics()
        .iter()
        .map(|t| t.name().to_string())
        .filter(|n| !n.starts_with('_'))
        .collect();
    names.sort();
    names
}

#[test]
fn a_user_with_acls_produces_and_consumes_over_sasl_ssl_with_scram_sha_512() {
    let secured = secured("");
    secured.create_topic_as_admin("secure-orders");
    secured.create_topic_as_admin("payments");
    let alice = secured.sasl("alice", "alice-secret");
    for i in 0..5 {
        send(&alice, "secure-orders", &format!("order-{i}")).expect("alice may write");
    }
    let mut consumer_config = alice.clone();
    consumer_config
        .set("group.id", "secure-consumers")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false");
    let consumer: BaseConsumer = consumer_config.create().unwrap();
    consumer.subscribe(&["secure-orders"]).unwrap();
    let mut values = Vec::new();
    let started = Instant::now();
    while values.len() < 5 {
        assert!(started.elapsed() < PATIENCE, "consumed only {values:?}");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("alice may read in her group");
            values.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
        }
    }
    assert_eq!(
        values,
        (0..5).map(|i| format!("order-{i}")).collect::<Vec<_>>()
    );
    consumer
        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .expect("alice may commit her group's offsets");
    // Alice sees only what her ACLs let her describe.
    assert_eq!(topics_visible(&alice), ["secure-orders"]);
    let refused = send(&alice, "payments", "x").unwrap_err();
    assert_eq!(
        code(&refused),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
}

#[test]
fn a_user_without_acls_sees_no_topic_and_is_refused_topics_and_groups() {
    let secured = secured("");
    secured.create_topic_as_admin("secure-orders");
    let bob = secured.sasl("bob", "bob-secret");
    assert!(topics_visible(&bob).is_empty());
    let refused = send(&bob, "secure-orders", "x").unwrap_err();
    assert_eq!(
        code(&refused),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );

    let mut consumer_config = bob.clone();
    consumer_config
        .set("group.id", "secure-consumers")
        .set("auto.offset.reset", "earliest");
    let consumer: BaseConsumer = consumer_config.create().unwrap();
    consumer.subscribe(&["secure-orders"]).unwrap();
    let started = Instant::now();
    let error = loop {
        assert!(
            started.elapsed() < PATIENCE,
            "no authorization error reported"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Err(e)) => break e,
            Some(Ok(m)) => panic!("bob read a record: {:?}", m.payload()),
            None => {}
        }
    };
    assert!(
        matches!(
            code(&error),
            Some(
                RDKafkaErrorCode::GroupAuthorizationFailed
                    | RDKafkaErrorCode::TopicAuthorizationFailed
            )
        ),
        "{error:?}"
    );
}

/// Keeps the errors librdkafka reports outside any request (authentication failures among them).
#[derive(Default)]
struct ErrorRecorder(std::sync::Mutex<Vec<(Option<RDKafkaErrorCode>, String)>>);

impl rdkafka::ClientContext for ErrorRecorder {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0
            .lock()
            .unwrap()
            .push((error.rdkafka_error_code(), reason.to_string()));
    }
}

impl rdkafka::consumer::ConsumerContext for ErrorRecorder {}

#[test]
fn a_wrong_password_fails_authentication_and_the_broker_keeps_serving() {
    let secured = secured("");
    let consumer: BaseConsumer<ErrorRecorder> = secured
        .sasl("alice", "not-her-password")
        .create_with_context(ErrorRecorder::default())
        .unwrap();
    assert!(consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .is_err());
    // librdkafka hands its error events to the context while the client is polled.
    let started = Instant::now();
    while consumer.context().0.lock().unwrap().is_empty() && started.elapsed() < PATIENCE {
        let _ = consumer.poll(Duration::from_millis(100));
    }
    let errors = consumer.context().0.lock().unwrap().clone();
    assert!(
        errors.iter().any(|(code, reason)| {
            *code == Some(RDKafkaErrorCode::Authentication)
                && reason.contains("Invalid username or password")
        }),
        "{errors:?}"
    );
    // Others are not affected.
    secured.create_topic_as_admin("secure-after");
    send(
        &secured.sasl("alice", "alice-secret"),
        "secure-after",
        "fine",
    )
    .unwrap();
    // The broker's log says who failed, from where, and never with which password.
    let log = std::fs::read_to_string(&secured.log).unwrap();
    assert!(log.contains("authentication failed"), "an audit line");
    for secret in ["not-her-password", "alice-secret", "admin-secret"] {
        assert!(!log.contains(secret), "the log shows {secret}");
    }
}

#[test]
fn sighup_reloads_a_renewed_certificate_for_new_connections() {
    let secured = secured("");
    let dir = tempfile::tempdir().unwrap();
    let renewed = TestPki::generate(dir.path());
    let with_ca = |ca: &Path| {
        let mut config = secured.sasl("admin", "admin-secret");
        config
            .set("ssl.ca.location", ca.display().to_string())
            .set("socket.timeout.ms", "3000");
        config
    };
    let reachable = |config: &ClientConfig| {
        let consumer: BaseConsumer = config.create().unwrap();
        consumer
            .fetch_metadata(None, Duration::from_secs(3))
            .is_ok()
    };
    let hangup = || {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &secured.nerve.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    assert!(reachable(&with_ca(&secured.pki.ca_cert)));
    assert!(!reachable(&with_ca(&renewed.ca_cert)));

    // The renewal lands (a certificate from another CA, to tell them apart), then SIGHUP.
    std::fs::copy(&renewed.server_cert, &secured.live_cert).unwrap();
    std::fs::copy(&renewed.server_key, &secured.live_key).unwrap();
    hangup();
    let started = Instant::now();
    while !reachable(&with_ca(&renewed.ca_cert)) {
        assert!(
            started.elapsed() < PATIENCE,
            "the renewed certificate is never served"
        );
    }
    assert!(!reachable(&with_ca(&secured.pki.ca_cert)));

    // A broken renewal is refused and the running certificate stays.
    std::fs::write(&secured.live_key, "not a key").unwrap();
    hangup();
    let started = Instant::now();
    while !std::fs::read_to_string(&secured.log)
        .unwrap()
        .contains("TLS reload failed")
    {
        assert!(
            started.elapsed() < PATIENCE,
            "the failed reload is never logged"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(reachable(&with_ca(&renewed.ca_cert)));
}

#[test]
fn a_plaintext_client_on_a_tls_port_fails_cleanly() {
    let secured = secured("");
    let mut plaintext = ClientConfig::new();
    plaintext
        .set(
            "bootstrap.servers",
            format!("127.0.0.1:{}", secured.sasl_ssl),
        )
        .set("socket.timeout.ms", "3000");
    let consumer: BaseConsumer = plaintext.create().unwrap();
    assert!(consumer
        .fetch_metadata(None, Duration::from_secs(3))
        .is_err());
    // The TLS port still serves TLS clients.
    secured.create_topic_as_admin("secure-still-served");
}

#[test]
fn a_client_certificate_is_the_principal_its_acls_name() {
    let secured = secured("");
    secured.create_topic_as_admin("mtls-topic");
    secured.create_topic_as_admin("secure-orders");
    let carol = secured.mtls();
    send(&carol, "mtls-topic", "from carol").expect("CN=carol,O=Acme may write mtls-topic");
    let refused = send(&carol, "secure-orders", "x").unwrap_err();
    assert_eq!(
        code(&refused),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    // Without a certificate the SSL client is ANONYMOUS, whom no ACL names.
    let mut anonymous = ClientConfig::new();
    anonymous
        .set("bootstrap.servers", format!("127.0.0.1:{}", secured.ssl))
        .set("security.protocol", "SSL")
        .set("ssl.ca.location", secured.pki.ca_cert.display().to_string())
        .set("message.timeout.ms", "10000");
    let refused = send(&anonymous, "mtls-topic", "x").unwrap_err();
    assert_eq!(
        code(&refused),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
}

#[test]
fn a_flood_of_unauthenticated_connections_does_not_stop_an_authenticated_client() {
    // The flood comes from 127.0.0.2, beyond its per-address allowance; alice connects from 127.0.0.1.
    let secured = secured("max_connections_per_ip = 50\nauthentication_timeout_ms = 3000");
    secured.create_topic_as_admin("secure-flooded");
    let target: SocketAddr = format!("127.0.0.1:{}", secured.sasl_ssl).parse().unwrap();
    let mut flood = Vec::new();
    for _ in 0..300 {
        if let Some(stream) = connect_from("127.0.0.2", target) {
            flood.push(stream);
        }
    }
    assert!(
        flood.len() >= 50,
        "the flood opened {} connections",
        flood.len()
    );
    let alice = secured.sasl("alice", "alice-secret");
    for i in 0..3 {
        send(&alice, "secure-flooded", &format!("still served {i}")).expect("alice is served");
    }
    drop(flood);
}

/// A TCP connection from `source` (a loopback address) that sends nothing.
fn connect_from(source: &str, target: SocketAddr) -> Option<TcpStream> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().ok()?;
        socket.bind(format!("{source}:0").parse().ok()?).ok()?;
        let stream = tokio::time::timeout(Duration::from_secs(2), socket.connect(target))
            .await
            .ok()?
            .ok()?;
        stream.into_std().ok()
    })
}

/// Hands librdkafka a fixed token, as a service's token provider would.
struct TokenSource {
    token: String,
    expires_ms: i64,
}

impl rdkafka::ClientContext for TokenSource {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn generate_oauth_token(
        &self,
        _config: Option<&str>,
    ) -> Result<rdkafka::client::OAuthToken, Box<dyn std::error::Error>> {
        Ok(rdkafka::client::OAuthToken {
            token: self.token.clone(),
            principal_name: "alice".into(),
            lifetime_ms: self.expires_ms,
        })
    }
}

#[test]
fn oauthbearer_tokens_signed_by_the_key_set_authenticate_their_subject() {
    let dir = tempfile::tempdir().unwrap();
    let idp = TokenIssuer::new("test");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, idp.jwks()).unwrap();
    let secured = secured(&format!(
        "sasl_enabled_mechanisms = [\"SCRAM-SHA-512\", \"OAUTHBEARER\"]\n\
         sasl_oauthbearer_jwks_file = \"{}\"\n\
         sasl_oauthbearer_expected_audience = \"nerve\"",
        jwks.display()
    ));
    secured.create_topic_as_admin("secure-oauth");
    let send_with = |token: String, expires_ms: i64, topic: &str| {
        let mut config = ClientConfig::new();
        config
            .set(
                "bootstrap.servers",
                format!("127.0.0.1:{}", secured.sasl_ssl),
            )
            .set("security.protocol", "SASL_SSL")
            .set("sasl.mechanism", "OAUTHBEARER")
            .set("ssl.ca.location", secured.pki.ca_cert.display().to_string())
            .set("message.timeout.ms", "4000");
        let producer: FutureProducer<TokenSource> = config
            .create_with_context(TokenSource { token, expires_ms })
            .unwrap();
        futures::executor::block_on(
            producer.send(FutureRecord::<(), _>::to(topic).payload("paid"), PATIENCE),
        )
        .map(|delivery| delivery.offset)
        .map_err(|(e, _)| e)
    };
    // The token's subject is alice, whose ACLs allow the `secure-` topics and nothing else.
    let (token, expires) = idp.token("alice", 300);
    send_with(token.clone(), expires, "secure-oauth").expect("alice's token is accepted");
    secured.create_topic_as_admin("payments");
    let refused = send_with(token, expires, "payments").unwrap_err();
    assert_eq!(
        code(&refused),
        Some(RDKafkaErrorCode::TopicAuthorizationFailed)
    );

    // An expired token, and one signed by a key outside the set, get nowhere.
    // (librdkafka is told it is still good, as a client with a wrong clock would believe.)
    let (expired, _) = idp.token("alice", -120);
    assert!(send_with(expired, expires, "secure-oauth").is_err());
    let (forged, at) = TokenIssuer::new("test").token("alice", 300);
    assert!(send_with(forged, at, "secure-oauth").is_err());
    let log = std::fs::read_to_string(&secured.log).unwrap();
    assert!(log.contains("the token expired"), "the broker says why");
    assert!(log.contains("signature is invalid"), "the broker says why");
}
