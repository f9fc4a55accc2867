//! The HTTP ports (schema registry, metrics/health/admin) behind the broker's users, end to end over
//! loopback: HTTPS with the test CA, basic auth against the stored SCRAM credentials, bearer tokens from
//! `POST /v1/tokens`, and the registry's subjects under the broker's ACLs.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::*;
use nerve_auth::{Operation, PatternType, Permission, ResourceType};
use nerve_storage::{LocalMetaStore, MetaStore, StoredAcl};
use nerve_tls::testing::TestPki;

/// A secured Nerve whose registry and HTTP ports both speak HTTPS and require basic auth; users `admin`
/// (super user), `reader` (READ on subject `orders-value`) and `writer` (WRITE and READ on subjects
/// starting with `orders`).
struct Secured {
    nerve: Nerve,
    pki: TestPki,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn secured() -> Secured {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pki_dir = dir.path().join("pki");
    std::fs::create_dir_all(&pki_dir).unwrap();
    let pki = TestPki::generate(&pki_dir);
    bootstrap(&data);
    let config = dir.path().join("nerve.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[kafka]
authorizer_enabled = true
super_users = ["User:admin"]

[tls]
cert_file = "{cert}"
key_file = "{key}"

[registry]
tls = true
authentication = "basic"

[http]
tls = true
authentication = "basic"
"#,
            cert = pki.server_cert.display(),
            key = pki.server_key.display(),
        ),
    )
    .unwrap();
    let log = dir.path().join("nerve.log");
    let nerve = Nerve::start_on_logging_to(
        &data,
        any_free_port(),
        &["--config".into(), config.display().to_string()],
        &log,
    );
    let secured = Secured {
        nerve,
        pki,
        log,
        _dir: dir,
    };
    // The registry answers once the broker is up.
    let started = Instant::now();
    while secured
        .registry("GET", "/subjects", Some(&basic("admin")), None)
        .0
        != 200
    {
        assert!(started.elapsed() < PATIENCE, "the registry never answered");
        std::thread::sleep(Duration::from_millis(100));
    }
    secured
}

fn password(user: &str) -> String {
    format!("{user}-pa:ss-{}", user.len())
}

fn basic(user: &str) -> String {
    let encoded =
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{}", password(user)));
    format!("Basic {encoded}")
}

fn bootstrap(data: &Path) {
    std::fs::create_dir_all(data).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let meta = LocalMetaStore::open(data).unwrap();
        for user in ["admin", "reader", "writer"] {
            store_scram_user(&meta, user, &password(user)).await;
        }
        let allow =
            |name: &str, pattern: PatternType, principal: &str, operation: Operation| StoredAcl {
                resource_type: ResourceType::Subject.code(),
                resource_name: name.into(),
                pattern_type: pattern.code(),
                principal: principal.into(),
                host: "*".into(),
                operation: operation.code(),
                permission: Permission::Allow.code(),
            };
        meta.set_acls(vec![
            allow(
                "orders-value",
                PatternType::Literal,
                "User:reader",
                Operation::Read,
            ),
            allow(
                "orders",
                PatternType::Prefixed,
                "User:writer",
                Operation::Write,
            ),
            allow(
                "orders",
                PatternType::Prefixed,
                "User:writer",
                Operation::Read,
            ),
        ])
        .await
        .unwrap();
    });
}

impl Secured {
    fn registry(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String, String) {
        https(
            &self.pki,
            self.nerve.registry_port,
            method,
            path,
            authorization,
            body,
        )
    }

    fn http(
        &self,
        method: &str,
        path: &str,
        authorization: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String, String) {
        https(
            &self.pki,
            self.nerve.http_port,
            method,
            path,
            authorization,
            body,
        )
    }
}

/// One HTTP/1.1 request over TLS checked against the test CA: (status, head, body).
fn https(
    pki: &TestPki,
    port: u16,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&pki.ca_cert).unwrap();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connection =
        rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    let body = body.unwrap_or("");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(authorization) = authorization {
        request.push_str(&format!("Authorization: {authorization}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    // The server closes without close_notify at times; what was read is the answer.
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {answer:?}"));
    (status, head.to_string(), body.to_string())
}

const SCHEMA: &str = r#"{"schema": "{\"type\": \"string\"}"}"#;

#[test]
fn https_ports_need_credentials_and_never_log_the_password() {
    let nerve = secured();
    for port in [nerve.nerve.registry_port, nerve.nerve.http_port] {
        // Plain HTTP to a TLS port gets no HTTP answer.
        let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
        plain
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        plain
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = plain.read_to_end(&mut answer);
        assert!(
            !answer.starts_with(b"HTTP/"),
            "plain HTTP was answered on a TLS port"
        );
    }

    let (status, head, body) = nerve.registry("GET", "/subjects", None, None);
    assert_eq!(status, 401);
    assert!(
        head.contains(r#"www-authenticate: Basic realm="nerve""#),
        "{head}"
    );
    assert_eq!(body, r#"{"error_code":40101,"message":"Unauthorized"}"#);
    let wrong = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("reader:not-the-password-42")
    );
    assert_eq!(
        nerve.registry("GET", "/subjects", Some(&wrong), None).0,
        401
    );
    assert_eq!(nerve.http("GET", "/metrics", Some(&wrong), None).0, 401);
    assert_eq!(nerve.http("GET", "/metrics", None, None).0, 401);
    assert_eq!(nerve.http("GET", "/v1/cluster", None, None).0, 401);
    assert_eq!(
        nerve
            .http("GET", "/metrics", Some(&basic("reader")), None)
            .0,
        200
    );
    assert_eq!(nerve.http("GET", "/healthz", None, None).0, 200);
    assert_eq!(nerve.http("GET", "/readyz", None, None).0, 200);

    let log = std::fs::read_to_string(&nerve.log).unwrap();
    assert!(log.contains("HTTP authentication failed"), "no audit line");
    for user in ["admin", "reader"] {
        assert!(!log.contains(&password(user)), "a password is in the log");
    }
    assert!(
        !log.contains("not-the-password-42"),
        "a wrong password is in the log"
    );
}

#[test]
fn bearer_tokens_stand_for_the_user_until_they_expire() {
    let nerve = secured();
    let (status, _, body) = nerve.http(
        "POST",
        "/v1/tokens",
        Some(&basic("writer")),
        Some(r#"{"ttl_seconds": 2}"#),
    );
    assert_eq!(status, 200, "{body}");
    let issued: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(issued["principal"], "User:writer");
    assert!(issued["expires_at"].as_i64().unwrap() > 0);
    let bearer = format!("Bearer {}", issued["token"].as_str().unwrap());
    let (status, _, body) = nerve.registry(
        "POST",
        "/subjects/orders-value/versions",
        Some(&bearer),
        Some(SCHEMA),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(nerve.http("GET", "/metrics", Some(&bearer), None).0, 200);
    // A token does not buy another.
    assert_eq!(nerve.http("POST", "/v1/tokens", Some(&bearer), None).0, 401);
    assert_eq!(nerve.http("POST", "/v1/tokens", None, None).0, 401);
    assert_eq!(
        nerve
            .http(
                "POST",
                "/v1/tokens",
                Some(&basic("writer")),
                Some(r#"{"ttl_seconds": 999999}"#)
            )
            .0,
        400
    );
    assert_eq!(
        nerve
            .registry("GET", "/subjects", Some("Bearer garbage"), None)
            .0,
        401
    );
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        nerve.registry("GET", "/subjects", Some(&bearer), None).0,
        401
    );
}

#[test]
fn registry_subjects_follow_the_broker_acls() {
    let nerve = secured();
    let (reader, writer, admin) = (basic("reader"), basic("writer"), basic("admin"));
    let (status, _, body) = nerve.registry(
        "POST",
        "/subjects/orders-value/versions",
        Some(&reader),
        Some(SCHEMA),
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        body,
        r#"{"error_code":40301,"message":"User is denied operation WRITE on subject: orders-value"}"#
    );
    let (status, _, body) = nerve.registry(
        "POST",
        "/subjects/orders-value/versions",
        Some(&writer),
        Some(SCHEMA),
    );
    assert_eq!(status, 200, "{body}");
    let orders_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].clone();
    let (status, _, body) = nerve.registry(
        "POST",
        "/subjects/payments-value/versions",
        Some(&admin),
        Some(r#"{"schema": "{\"type\": \"long\"}"}"#),
    );
    assert_eq!(status, 200, "{body}");
    let payments_id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].clone();

    let (status, _, body) = nerve.registry(
        "GET",
        "/subjects/orders-value/versions/latest",
        Some(&reader),
        None,
    );
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = nerve.registry(
        "GET",
        "/subjects/payments-value/versions",
        Some(&reader),
        None,
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        nerve
            .registry("DELETE", "/subjects/orders-value", Some(&reader), None)
            .0,
        403
    );

    assert_eq!(
        nerve.registry("GET", "/subjects", Some(&reader), None).2,
        r#"["orders-value"]"#
    );
    assert_eq!(
        nerve.registry("GET", "/subjects", Some(&admin), None).2,
        r#"["orders-value","payments-value"]"#
    );
    assert_eq!(
        nerve
            .registry(
                "GET",
                &format!("/schemas/ids/{orders_id}"),
                Some(&reader),
                None
            )
            .0,
        200
    );
    assert_eq!(
        nerve
            .registry(
                "GET",
                &format!("/schemas/ids/{payments_id}"),
                Some(&reader),
                None
            )
            .0,
        403
    );
    // The global config is the cluster's: reading needs DESCRIBE_CONFIGS, changing ALTER_CONFIGS.
    assert_eq!(nerve.registry("GET", "/config", Some(&writer), None).0, 403);
    assert_eq!(
        nerve
            .registry(
                "PUT",
                "/config",
                Some(&writer),
                Some(r#"{"compatibility": "NONE"}"#)
            )
            .0,
        403
    );
    assert_eq!(nerve.registry("GET", "/config", Some(&admin), None).0, 200);
    let log = std::fs::read_to_string(&nerve.log).unwrap();
    assert!(
        log.contains("schema registry authorization denied"),
        "no audit line"
    );
}

#[test]
fn nerve_schema_talks_to_an_https_registry_with_credentials() {
    let nerve = secured();
    let dir = tempfile::tempdir().unwrap();
    let schema = dir.path().join("order.avsc");
    std::fs::write(
        &schema,
        r#"{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"}]}"#,
    )
    .unwrap();
    let url = format!("https://localhost:{}", nerve.nerve.registry_port);
    let ca = nerve.pki.ca_cert.display().to_string();
    let schema = schema.display().to_string();
    let run = |user: Option<&str>, args: &[&str]| {
        let mut all = vec!["schema", "--registry-url", &url, "--registry-ca", &ca];
        let auth = user.map(|u| format!("{u}:{}", password(u)));
        if let Some(auth) = &auth {
            all.extend(["--registry-auth", auth.as_str()]);
        }
        all.extend(args);
        common::run_nerve(&all, &[], b"")
    };
    let registered = run(
        Some("writer"),
        &["register", "orders-value", "--file", &schema],
    );
    assert_eq!(registered.code, Some(0), "{}", registered.stderr);
    assert!(String::from_utf8_lossy(&registered.stdout).contains("registered orders-value"));
    let listed = run(Some("reader"), &["list"]);
    assert_eq!(listed.code, Some(0), "{}", listed.stderr);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("orders-value"));
    // Without credentials, with a user the ACLs do not allow, or without the CA: a clear refusal.
    let anonymous = run(None, &["list"]);
    assert_eq!(anonymous.code, Some(1));
    assert!(
        anonymous.stderr.contains("Unauthorized"),
        "{}",
        anonymous.stderr
    );
    // A new version (an existing one would only be looked up, which READ allows).
    let evolved = dir.path().join("order-v2.avsc");
    std::fs::write(
        &evolved,
        r#"{"type": "record", "name": "Order", "fields": [{"name": "id", "type": "string"},
            {"name": "note", "type": "string", "default": ""}]}"#,
    )
    .unwrap();
    let evolved = evolved.display().to_string();
    let denied = run(
        Some("reader"),
        &["register", "orders-value", "--file", &evolved],
    );
    assert_eq!(denied.code, Some(1));
    assert!(denied.stderr.contains("denied"), "{}", denied.stderr);
    let untrusted = common::run_nerve(&["schema", "--registry-url", &url, "list"], &[], b"");
    assert_eq!(
        untrusted.code,
        Some(1),
        "a certificate from an unknown CA is refused"
    );
}
