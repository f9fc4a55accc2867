//! Security on the wire: SASL authentication (SCRAM, PLAIN, re-authentication), the SCRAM credential
//! and ACL APIs, and the authorizer's answers to the data and group APIs, with Kafka's error codes.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use kafka_protocol::messages::*;
use nerve_auth::scram::{ScramClient, ScramCredential, ScramMechanism};
use nerve_auth::{Operation, PatternType, Permission, ResourceType};
use nerve_broker::BrokerConfig;
use nerve_storage::{LocalMetaStore, MetaStore, StoredScramCredential};
use nerve_wire::records::BatchBuilder;

const SASL_AUTHENTICATION_FAILED: i16 = 58;
const ILLEGAL_SASL_STATE: i16 = 34;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const SECURITY_DISABLED: i16 = 54;
const RESOURCE_NOT_FOUND: i16 = 91;
const DUPLICATE_RESOURCE: i16 = 92;
const UNACCEPTABLE_CREDENTIAL: i16 = 93;

/// Stores `user`'s credentials for both SCRAM mechanisms, as `nerve user create --data-dir` does before
/// the broker starts.
async fn add_user(dir: &std::path::Path, user: &str, password: &str) {
    let meta = LocalMetaStore::open(dir).unwrap();
    for mechanism in ScramMechanism::ALL {
        let c = ScramCredential::generate(mechanism, password.as_bytes(), 4096).unwrap();
        let stored = StoredScramCredential {
            salt: c.salt,
            stored_key: c.stored_key,
            server_key: c.server_key,
            iterations: c.iterations,
        };
        meta.set_scram_credential(user, mechanism.name(), Some(stored))
            .await
            .unwrap();
    }
}

/// A broker with a SASL_PLAINTEXT listener (first) and a PLAINTEXT one, the authorizer on, `admin` a
/// super user, and users `admin`, `alice` and `bob`.
async fn secured(configure: impl FnOnce(&mut BrokerConfig)) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    for (user, password) in [
        ("admin", "admin-secret"),
        ("alice", "alice-secret"),
        ("bob", "bob-secret"),
    ] {
        add_user(dir.path(), user, password).await;
    }
    start_in(dir, |config, _| {
        config.listeners = "SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0".into();
        config.authorizer_enabled = true;
        config.super_users = vec!["User:admin".into()];
        config.sasl_enabled_mechanisms = vec![
            "SCRAM-SHA-256".into(),
            "SCRAM-SHA-512".into(),
            "PLAIN".into(),
        ];
        config.connection_failed_authentication_delay_ms = 10;
        configure(config);
    })
    .await
}

fn sasl_addr(broker: &TestBroker) -> std::net::SocketAddr {
    broker.addrs[0].1
}

fn plaintext_addr(broker: &TestBroker) -> std::net::SocketAddr {
    broker.addrs[1].1
}

/// Runs SaslHandshake v1 and the SaslAuthenticate exchange; the error code of the step that failed.
async fn login(
    client: &mut Client,
    mechanism: &str,
    user: &str,
    password: &str,
) -> Result<SaslAuthenticateResponse, i16> {
    let handshake = client
        .call(
            1,
            &SaslHandshakeRequest::default().with_mechanism(s(mechanism)),
        )
        .await;
    if handshake.error_code != 0 {
        return Err(handshake.error_code);
    }
    let authenticate =
        |bytes: Vec<u8>| SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(bytes));
    if mechanism == "PLAIN" {
        let message = format!("\0{user}\0{password}").into_bytes();
        let answer = client.call(2, &authenticate(message)).await;
        return if answer.error_code == 0 {
            Ok(answer)
        } else {
            Err(answer.error_code)
        };
    }
    let mechanism = ScramMechanism::from_name(mechanism).unwrap();
    let mut scram = ScramClient::new(mechanism, user, password);
    let first = client.call(2, &authenticate(scram.client_first())).await;
    if first.error_code != 0 {
        return Err(first.error_code);
    }
    let final_message = scram.handle_server_first(&first.auth_bytes).unwrap();
    let last = client.call(2, &authenticate(final_message)).await;
    if last.error_code != 0 {
        return Err(last.error_code);
    }
    scram
        .handle_server_final(&last.auth_bytes)
        .expect("the server proves it knows the credential");
    Ok(last)
}

async fn logged_in(broker: &TestBroker, user: &str) -> Client {
    let mut client = Client::connect_to(sasl_addr(broker)).await;
    login(
        &mut client,
        "SCRAM-SHA-512",
        user,
        &format!("{user}-secret"),
    )
    .await
    .unwrap_or_else(|code| panic!("{user} logs in: error {code}"));
    client
}

fn acl(
    resource_type: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    operation: Operation,
    permission: Permission,
) -> create_acls_request::AclCreation {
    create_acls_request::AclCreation::default()
        .with_resource_type(resource_type.code())
        .with_resource_name(s(name))
        .with_resource_pattern_type(pattern.code())
        .with_principal(s(principal))
        .with_host(s("*"))
        .with_operation(operation.code())
        .with_permission_type(permission.code())
}

async fn create_acls(admin: &mut Client, acls: Vec<create_acls_request::AclCreation>) {
    let answer = admin
        .call(3, &CreateAclsRequest::default().with_creations(acls))
        .await;
    for result in &answer.results {
        assert_eq!(result.error_code, 0, "{:?}", result.error_message);
    }
}

/// Metadata for every topic (null, not an empty list, which asks for none).
fn all_topics() -> MetadataRequest {
    MetadataRequest::default().with_topics(None)
}

/// A DescribeAcls whose name, principal and host filters are null: any.
fn any_acl() -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
}

fn records(value: &str) -> Bytes {
    let now = now_ms();
    let mut batch = BatchBuilder::new(now);
    batch.push(now, None, Some(value.as_bytes()), Vec::new());
    Bytes::from(batch.build().unwrap())
}

async fn produce_error(client: &mut Client, topic: &str) -> i16 {
    let answer = client
        .call(9, &produce_request(topic, -1, records("x")))
        .await;
    answer.responses[0].partition_responses[0].error_code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_users_authenticate_with_either_mechanism_and_a_wrong_password_is_refused_and_disconnected(
) {
    let broker = secured(|_| {}).await;
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] {
        let mut client = Client::connect_to(sasl_addr(&broker)).await;
        login(&mut client, mechanism, "alice", "alice-secret")
            .await
            .unwrap_or_else(|code| panic!("{mechanism}: error {code}"));
        // Authenticated, the connection serves requests.
        let metadata = client.call(12, &MetadataRequest::default()).await;
        assert_eq!(metadata.brokers.len(), 1, "{mechanism}");

        let mut wrong = Client::connect_to(sasl_addr(&broker)).await;
        assert_eq!(
            login(&mut wrong, mechanism, "alice", "guess")
                .await
                .unwrap_err(),
            SASL_AUTHENTICATION_FAILED,
            "{mechanism}"
        );
        wrong.expect_closed().await;
        let mut unknown = Client::connect_to(sasl_addr(&broker)).await;
        assert_eq!(
            login(&mut unknown, mechanism, "mallory", "x")
                .await
                .unwrap_err(),
            SASL_AUTHENTICATION_FAILED,
            "{mechanism}"
        );
        unknown.expect_closed().await;
    }
    let failures = broker.broker.metrics().authentication_failures.get();
    assert_eq!(failures, 6, "every failure is counted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sasl_listener_answers_api_versions_but_closes_on_anything_else_before_authentication() {
    let broker = secured(|_| {}).await;
    let mut client = Client::connect_to(sasl_addr(&broker)).await;
    let versions = client.call(3, &ApiVersionsRequest::default()).await;
    assert_eq!(versions.error_code, 0);
    assert!(versions
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::SaslHandshake as i16
            && (k.min_version, k.max_version) == (0, 1)));
    client.send(12, &MetadataRequest::default()).await;
    client.expect_closed().await;

    // SaslAuthenticate before SaslHandshake breaks the exchange's order.
    let mut client = Client::connect_to(sasl_addr(&broker)).await;
    let answer = client
        .call(
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from_static(b"n,,n=a,r=b")),
        )
        .await;
    assert_eq!(answer.error_code, ILLEGAL_SASL_STATE);
    client.expect_closed().await;

    // On a listener without SASL there is nothing to authenticate.
    let mut plain = Client::connect_to(plaintext_addr(&broker)).await;
    let answer = plain
        .call(
            1,
            &SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-256")),
        )
        .await;
    assert_eq!(answer.error_code, ILLEGAL_SASL_STATE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v0_handshake_goes_on_in_raw_tokens_and_back_to_requests_once_authenticated() {
    let broker = secured(|_| {}).await;
    for (password, accepted) in [("alice-secret", true), ("wrong", false)] {
        let mut client = Client::connect_to(sasl_addr(&broker)).await;
        let handshake = client
            .call(
                0,
                &SaslHandshakeRequest::default().with_mechanism(s("SCRAM-SHA-256")),
            )
            .await;
        assert_eq!(handshake.error_code, 0);
        let mut scram = ScramClient::new(ScramMechanism::Sha256, "alice", password);
        client.send_frame(&scram.client_first()).await;
        let server_first = client.recv_frame().await;
        let client_final = scram.handle_server_first(&server_first).unwrap();
        client.send_frame(&client_final).await;
        if !accepted {
            // Kafka answers a failed v0 exchange by closing the connection.
            client.expect_closed().await;
            continue;
        }
        let server_final = client.recv_frame().await;
        scram.handle_server_final(&server_final).unwrap();
        let metadata = client.call(12, &all_topics()).await;
        assert_eq!(metadata.brokers.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauthbearer_session_ends_with_its_token_and_a_bad_token_is_refused() {
    let issuer = nerve_auth::testing::TokenIssuer::new("k1");
    let jwks = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(jwks.path(), issuer.jwks()).unwrap();
    let broker = secured(|config| {
        config.sasl_enabled_mechanisms = vec!["OAUTHBEARER".into()];
        config.sasl_oauthbearer_jwks_file = Some(jwks.path().to_path_buf());
        config.sasl_oauthbearer_expected_audience = Some("nerve".into());
        config.connections_max_reauth_ms = 3_600_000;
    })
    .await;
    let message = |token: &str, authzid: &str| {
        Bytes::from(format!("n,{authzid},\x01auth=Bearer {token}\x01\x01"))
    };
    let login = |bytes: Bytes| async {
        let mut client = Client::connect_to(sasl_addr(&broker)).await;
        let handshake = client
            .call(
                1,
                &SaslHandshakeRequest::default().with_mechanism(s("OAUTHBEARER")),
            )
            .await;
        assert_eq!(handshake.error_code, 0);
        let answer = client
            .call(
                2,
                &SaslAuthenticateRequest::default().with_auth_bytes(bytes),
            )
            .await;
        (client, answer)
    };
    // Re-authentication is on for an hour, the token lives a minute: the session ends with the token.
    let (token, _) = issuer.token("alice", 60);
    let (mut alice, answer) = login(message(&token, "")).await;
    assert_eq!(answer.error_code, 0);
    assert!(
        (50_000..=60_000).contains(&answer.session_lifetime_ms),
        "{}",
        answer.session_lifetime_ms
    );
    let refused = alice
        .call(9, &produce_request("anything", -1, records("x")))
        .await;
    assert_eq!(
        refused.responses[0].partition_responses[0].error_code, TOPIC_AUTHORIZATION_FAILED,
        "User:alice is authenticated, and has no ACL"
    );

    let (expired, _) = issuer.token("alice", -3_600);
    let (forged, _) = nerve_auth::testing::TokenIssuer::new("k1").token("alice", 60);
    for (bytes, why) in [
        (message(&expired, ""), "expired"),
        (message(&forged, ""), "signed by another key"),
        (message(&token, "a=bob"), "for another authorization id"),
        (
            Bytes::from_static(b"n,,\x01auth=Basic x\x01\x01"),
            "not a bearer token",
        ),
    ] {
        let (mut client, answer) = login(bytes).await;
        assert_eq!(answer.error_code, SASL_AUTHENTICATION_FAILED, "{why}");
        client.expect_closed().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mechanism_not_enabled_is_refused_with_the_enabled_list() {
    let broker = secured(|config| {
        config.sasl_enabled_mechanisms = vec!["SCRAM-SHA-512".into()];
    })
    .await;
    for mechanism in ["PLAIN", "GSSAPI", "SCRAM-SHA-256"] {
        let mut client = Client::connect_to(sasl_addr(&broker)).await;
        let answer = client
            .call(
                1,
                &SaslHandshakeRequest::default().with_mechanism(s(mechanism)),
            )
            .await;
        assert_eq!(answer.error_code, UNSUPPORTED_SASL_MECHANISM, "{mechanism}");
        assert_eq!(answer.mechanisms, vec![s("SCRAM-SHA-512")]);
        client.expect_closed().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reauthentication_keeps_the_principal_and_a_session_past_its_lifetime_is_closed() {
    let broker = secured(|config| config.connections_max_reauth_ms = 1_500).await;
    let mut client = Client::connect_to(sasl_addr(&broker)).await;
    let answer = login(&mut client, "SCRAM-SHA-256", "alice", "alice-secret")
        .await
        .unwrap();
    assert_eq!(answer.session_lifetime_ms, 1_500);
    // Re-authenticating as the same user, on the same connection, renews the session.
    login(&mut client, "SCRAM-SHA-256", "alice", "alice-secret")
        .await
        .unwrap();
    client.call(12, &MetadataRequest::default()).await;
    // Becoming someone else is refused.
    assert_eq!(
        login(&mut client, "SCRAM-SHA-256", "bob", "bob-secret")
            .await
            .unwrap_err(),
        SASL_AUTHENTICATION_FAILED
    );
    client.expect_closed().await;

    let mut idle = Client::connect_to(sasl_addr(&broker)).await;
    login(&mut idle, "SCRAM-SHA-512", "alice", "alice-secret")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    idle.send(12, &MetadataRequest::default()).await;
    idle.expect_closed().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_credentials_are_managed_over_the_protocol_and_describing_shows_no_keys() {
    let broker = secured(|_| {}).await;
    let mut admin = logged_in(&broker, "admin").await;
    let mechanism = ScramMechanism::Sha512;
    let salt = ScramCredential::random_salt();
    let salted = mechanism
        .salted_password(b"carol-secret", &salt, 8192)
        .unwrap();
    let upsert = |user: &str, iterations: i32| {
        alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
            .with_name(s(user))
            .with_mechanism(mechanism.kafka_code())
            .with_iterations(iterations)
            .with_salt(Bytes::from(salt.clone()))
            .with_salted_password(Bytes::from(salted.clone()))
    };
    let answer = admin
        .call(
            0,
            &AlterUserScramCredentialsRequest::default()
                .with_upsertions(vec![upsert("carol", 8192), upsert("dave", 100)])
                .with_deletions(vec![
                    alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                        .with_name(s("nobody"))
                        .with_mechanism(1),
                ]),
        )
        .await;
    let codes: Vec<(String, i16)> = answer
        .results
        .iter()
        .map(|r| (r.user.to_string(), r.error_code))
        .collect();
    assert_eq!(
        codes,
        [
            ("nobody".to_string(), RESOURCE_NOT_FOUND),
            ("carol".to_string(), 0),
            ("dave".to_string(), UNACCEPTABLE_CREDENTIAL),
        ]
    );
    // carol logs in with the password only she knows.
    let mut carol = Client::connect_to(sasl_addr(&broker)).await;
    login(&mut carol, "SCRAM-SHA-512", "carol", "carol-secret")
        .await
        .unwrap();

    let described = admin
        .call(
            0,
            &DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
                describe_user_scram_credentials_request::UserName::default().with_name(s("carol")),
                describe_user_scram_credentials_request::UserName::default().with_name(s("erin")),
            ])),
        )
        .await;
    assert_eq!(described.results[0].error_code, 0);
    let info: Vec<(i8, i32)> = described.results[0]
        .credential_infos
        .iter()
        .map(|c| (c.mechanism, c.iterations))
        .collect();
    assert_eq!(info, [(2, 8192)]);
    assert_eq!(described.results[1].error_code, RESOURCE_NOT_FOUND);
    let all = admin
        .call(0, &DescribeUserScramCredentialsRequest::default())
        .await;
    let users: Vec<String> = all.results.iter().map(|r| r.user.to_string()).collect();
    assert_eq!(users, ["admin", "alice", "bob", "carol"]);

    // The same credential twice in one request is refused for the user.
    let twice = admin
        .call(
            0,
            &AlterUserScramCredentialsRequest::default()
                .with_upsertions(vec![upsert("carol", 8192), upsert("carol", 8192)]),
        )
        .await;
    assert_eq!(twice.results[0].error_code, DUPLICATE_RESOURCE);

    // Deleting carol's only credential: she can no longer log in.
    let deleted = admin
        .call(
            0,
            &AlterUserScramCredentialsRequest::default().with_deletions(vec![
                alter_user_scram_credentials_request::ScramCredentialDeletion::default()
                    .with_name(s("carol"))
                    .with_mechanism(2),
            ]),
        )
        .await;
    assert_eq!(deleted.results[0].error_code, 0);
    let mut carol = Client::connect_to(sasl_addr(&broker)).await;
    assert!(login(&mut carol, "SCRAM-SHA-512", "carol", "carol-secret")
        .await
        .is_err());

    // A user without ALTER on the cluster cannot manage credentials, nor list them.
    let mut alice = logged_in(&broker, "alice").await;
    let refused = alice
        .call(
            0,
            &AlterUserScramCredentialsRequest::default()
                .with_upsertions(vec![upsert("alice", 8192)]),
        )
        .await;
    assert_eq!(refused.results[0].error_code, CLUSTER_AUTHORIZATION_FAILED);
    let refused = alice
        .call(0, &DescribeUserScramCredentialsRequest::default())
        .await;
    assert_eq!(refused.error_code, CLUSTER_AUTHORIZATION_FAILED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_decide_produce_fetch_and_metadata_with_prefixes_and_deny_winning() {
    let broker = secured(|_| {}).await;
    let mut admin = logged_in(&broker, "admin").await;
    for topic in ["orders", "orders-eu", "payments"] {
        create_topic(&mut admin, topic, 1, &[]).await;
    }
    use Operation::*;
    use PatternType::*;
    use Permission::*;
    create_acls(
        &mut admin,
        vec![
            // alice: everything under the prefix `orders`, except writing `orders-eu`.
            acl(
                ResourceType::Topic,
                "orders",
                Prefixed,
                "User:alice",
                Write,
                Allow,
            ),
            acl(
                ResourceType::Topic,
                "orders",
                Prefixed,
                "User:alice",
                Read,
                Allow,
            ),
            acl(
                ResourceType::Topic,
                "orders-eu",
                Literal,
                "User:alice",
                Write,
                Deny,
            ),
            acl(
                ResourceType::Group,
                "alice-",
                Prefixed,
                "User:alice",
                Read,
                Allow,
            ),
        ],
    )
    .await;

    let mut alice = logged_in(&broker, "alice").await;
    assert_eq!(produce_error(&mut alice, "orders").await, 0);
    assert_eq!(
        produce_error(&mut alice, "orders-eu").await,
        TOPIC_AUTHORIZATION_FAILED,
        "the literal deny wins over the prefixed allow"
    );
    assert_eq!(
        produce_error(&mut alice, "payments").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    let fetched = alice.call(12, &fetch_request("orders", 0, 0)).await;
    assert_eq!(fetched.responses[0].partitions[0].error_code, 0);
    assert!(fetched.responses[0].partitions[0]
        .records
        .as_ref()
        .is_some_and(|r| !r.is_empty()));
    let fetched = alice.call(12, &fetch_request("payments", 0, 0)).await;
    assert_eq!(
        fetched.responses[0].partitions[0].error_code,
        TOPIC_AUTHORIZATION_FAILED
    );

    // READ implies DESCRIBE: alice sees the `orders` topics and nothing else.
    let metadata = alice.call(12, &all_topics()).await;
    let mut visible: Vec<String> = metadata
        .topics
        .iter()
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    visible.sort();
    assert_eq!(visible, ["orders", "orders-eu"]);
    let named = alice
        .call(
            12,
            &MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("payments"))),
            ])),
        )
        .await;
    assert_eq!(named.topics[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    assert!(
        named.topics[0].partitions.is_empty(),
        "nothing about it leaks"
    );

    // bob has no ACL: he sees no topic and may not produce, fetch or join a group.
    let mut bob = logged_in(&broker, "bob").await;
    let metadata = bob.call(12, &all_topics()).await;
    assert!(metadata.topics.is_empty(), "{:?}", metadata.topics);
    assert_eq!(
        produce_error(&mut bob, "orders").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    let coordinator = bob
        .call(
            3,
            &FindCoordinatorRequest::default().with_key(s("alice-consumers")),
        )
        .await;
    assert_eq!(coordinator.error_code, GROUP_AUTHORIZATION_FAILED);
    let coordinator = alice
        .call(
            3,
            &FindCoordinatorRequest::default().with_key(s("alice-consumers")),
        )
        .await;
    assert_eq!(
        coordinator.error_code, 0,
        "READ on the group implies DESCRIBE"
    );

    // What each may do, as the authorized-operations fields report it.
    let described = alice
        .call(
            12,
            &MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(name("orders-eu")))]))
                .with_include_topic_authorized_operations(true),
        )
        .await;
    let bits = described.topics[0].topic_authorized_operations;
    let allowed: Vec<Operation> = [Read, Write, Describe, Delete]
        .into_iter()
        .filter(|op| bits & (1 << op.code()) != 0)
        .collect();
    assert_eq!(allowed, [Read, Describe], "WRITE is denied on orders-eu");
    let cluster = admin
        .call(
            0,
            &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
        )
        .await;
    assert_eq!(cluster.cluster_authorized_operations.count_ones(), 9);
    let cluster = alice.call(0, &DescribeClusterRequest::default()).await;
    assert_eq!(cluster.error_code, CLUSTER_AUTHORIZATION_FAILED);

    // A client on the PLAINTEXT listener is User:ANONYMOUS, which no ACL names.
    let mut anonymous = Client::connect_to(plaintext_addr(&broker)).await;
    assert_eq!(
        produce_error(&mut anonymous, "orders").await,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert!(broker.broker.metrics().authorization_denials.get() >= 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acls_are_created_described_and_deleted_by_filter_and_survive_a_restart() {
    let broker = secured(|_| {}).await;
    let mut admin = logged_in(&broker, "admin").await;
    use Operation::*;
    use PatternType::*;
    use Permission::*;
    create_acls(
        &mut admin,
        vec![
            acl(
                ResourceType::Topic,
                "orders",
                Literal,
                "User:alice",
                Read,
                Allow,
            ),
            acl(
                ResourceType::Topic,
                "ord",
                Prefixed,
                "User:bob",
                Write,
                Allow,
            ),
            acl(ResourceType::Topic, "*", Literal, "User:*", Describe, Allow),
            acl(ResourceType::Group, "g", Literal, "User:alice", Read, Allow),
        ],
    )
    .await;
    // An invalid binding is refused on its own; the others in the request still go in.
    let answer = admin
        .call(
            3,
            &CreateAclsRequest::default().with_creations(vec![
                acl(
                    ResourceType::Cluster,
                    "other",
                    Literal,
                    "User:x",
                    Alter,
                    Allow,
                ),
                acl(
                    ResourceType::Topic,
                    "t",
                    Literal,
                    "not-a-principal",
                    Read,
                    Allow,
                ),
                acl(ResourceType::Topic, "t", Literal, "User:x", Read, Allow),
            ]),
        )
        .await;
    let codes: Vec<i16> = answer.results.iter().map(|r| r.error_code).collect();
    assert_eq!(codes, [42, 42, 0]);

    // MATCH: the ACLs that apply to topic `orders`.
    let described = admin
        .call(
            3,
            &any_acl()
                .with_resource_type_filter(ResourceType::Topic.code())
                .with_resource_name_filter(Some(s("orders")))
                .with_pattern_type_filter(Match.code())
                .with_operation(Operation::Any.code())
                .with_permission_type(Permission::Any.code()),
        )
        .await;
    assert_eq!(described.error_code, 0);
    let mut applying: Vec<(String, i8)> = described
        .resources
        .iter()
        .map(|r| (r.resource_name.to_string(), r.pattern_type))
        .collect();
    applying.sort();
    assert_eq!(
        applying,
        [
            ("*".to_string(), Literal.code()),
            ("ord".to_string(), Prefixed.code()),
            ("orders".to_string(), Literal.code()),
        ]
    );

    // Delete alice's ACLs, whatever the resource.
    let deleted = admin
        .call(
            3,
            &DeleteAclsRequest::default().with_filters(vec![
                delete_acls_request::DeleteAclsFilter::default()
                    .with_resource_name_filter(None)
                    .with_host_filter(None)
                    .with_resource_type_filter(ResourceType::Any.code())
                    .with_pattern_type_filter(PatternType::Any.code())
                    .with_principal_filter(Some(s("User:alice")))
                    .with_operation(Operation::Any.code())
                    .with_permission_type(Permission::Any.code()),
            ]),
        )
        .await;
    assert_eq!(deleted.filter_results[0].error_code, 0);
    assert_eq!(deleted.filter_results[0].matching_acls.len(), 2);

    let dir = broker.shut_down().await;
    let broker = start_in(dir, |config, _| {
        config.listeners = "SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0".into();
        config.authorizer_enabled = true;
        config.super_users = vec!["User:admin".into()];
    })
    .await;
    let mut admin = logged_in(&broker, "admin").await;
    let all = admin
        .call(
            3,
            &any_acl()
                .with_resource_type_filter(ResourceType::Any.code())
                .with_pattern_type_filter(PatternType::Any.code())
                .with_operation(Operation::Any.code())
                .with_permission_type(Permission::Any.code()),
        )
        .await;
    let principals: Vec<String> = all
        .resources
        .iter()
        .flat_map(|r| r.acls.iter().map(|a| a.principal.to_string()))
        .collect();
    assert_eq!(principals.len(), 3, "{principals:?}");
    assert!(!principals.iter().any(|p| p == "User:alice"));

    // alice may not manage ACLs.
    let mut alice = logged_in(&broker, "alice").await;
    let refused = alice
        .call(
            3,
            &CreateAclsRequest::default().with_creations(vec![acl(
                ResourceType::Topic,
                "orders",
                Literal,
                "User:alice",
                All,
                Allow,
            )]),
        )
        .await;
    assert_eq!(refused.results[0].error_code, CLUSTER_AUTHORIZATION_FAILED);
}

#[tokio::test]
async fn without_an_authorizer_the_acl_apis_answer_security_disabled() {
    let broker = start().await;
    let mut client = Client::connect(&broker).await;
    let described = client
        .call(
            3,
            &any_acl()
                .with_resource_type_filter(1)
                .with_pattern_type_filter(1)
                .with_operation(1)
                .with_permission_type(1),
        )
        .await;
    assert_eq!(described.error_code, SECURITY_DISABLED);
    let created = client
        .call(
            3,
            &CreateAclsRequest::default().with_creations(vec![acl(
                ResourceType::Topic,
                "t",
                PatternType::Literal,
                "User:a",
                Operation::Read,
                Permission::Allow,
            )]),
        )
        .await;
    assert_eq!(created.results[0].error_code, SECURITY_DISABLED);
    // And everything else works for everyone, as before.
    create_topic(&mut client, "open", 1, &[]).await;
    assert_eq!(produce_error(&mut client, "open").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_address_limit_are_closed_while_other_addresses_are_served() {
    let broker = secured(|config| config.max_connections_per_ip = 3).await;
    let addr = plaintext_addr(&broker);
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut client = Client::connect_to(addr).await;
        client.call(3, &ApiVersionsRequest::default()).await;
        held.push(client);
    }
    let mut refused = Client::connect_to(addr).await;
    refused.expect_closed().await;
    // Another loopback address has its own allowance.
    let other = tokio::net::TcpSocket::new_v4().unwrap();
    other.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = other.connect(addr).await.unwrap();
    drop(stream);
    // A closed connection frees its slot.
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut again = Client::connect_to(addr).await;
    again.call(3, &ApiVersionsRequest::default()).await;
    assert!(broker.broker.metrics().connections_refused.get() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_authenticates_is_closed_after_the_authentication_timeout() {
    let broker = secured(|config| config.authentication_timeout_ms = 2_000).await;
    let mut silent = Client::connect_to(sasl_addr(&broker)).await;
    silent.expect_closed().await;
    // Having authenticated, a client is not subject to it.
    let mut alice = logged_in(&broker, "alice").await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    alice.call(12, &MetadataRequest::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
    let broker = secured(|config| config.connections_max_idle_ms = 600).await;
    let mut idle = Client::connect_to(plaintext_addr(&broker)).await;
    idle.call(3, &ApiVersionsRequest::default()).await;
    let mut busy = Client::connect_to(plaintext_addr(&broker)).await;
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        busy.call(3, &ApiVersionsRequest::default()).await;
    }
    idle.expect_closed().await;
}

#[test]
fn stored_keys_never_appear_in_a_credentials_debug_output() {
    let c = ScramCredential::generate(ScramMechanism::Sha256, b"pw", 4096).unwrap();
    let stored = StoredScramCredential {
        salt: c.salt.clone(),
        stored_key: c.stored_key.clone(),
        server_key: c.server_key.clone(),
        iterations: 4096,
    };
    let shown = format!("{c:?} {stored:?}");
    let hex: String = c.stored_key.iter().map(|b| format!("{b:02x}")).collect();
    assert!(
        !shown.contains(&hex) && !shown.contains(&format!("{:?}", c.stored_key)),
        "{shown}"
    );
}
