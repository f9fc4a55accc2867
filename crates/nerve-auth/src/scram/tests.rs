use proptest::prelude::*;

use super::*;

const RFC_CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

/// Says whether an error is the expected one.
type Check = fn(&ScramError) -> bool;

/// Computed once: `Hi` with 4096 rounds is slow in a debug build, and the property tests need it often.
fn rfc_credential() -> ScramCredential {
    static CREDENTIAL: std::sync::LazyLock<ScramCredential> = std::sync::LazyLock::new(|| {
        let salt = unb64("salt", RFC_SALT).unwrap();
        ScramCredential::from_password(ScramMechanism::Sha256, b"pencil", &salt, 4096).unwrap()
    });
    CREDENTIAL.clone()
}

fn rfc_server() -> ScramServer {
    ScramServer::with_nonce(ScramMechanism::Sha256, RFC_SERVER_NONCE.into())
}

/// A server that has answered client-first for `user`, and the combined nonce it chose.
fn server_after_first(mech: ScramMechanism, credential: &ScramCredential) -> (ScramServer, String) {
    let mut server = ScramServer::new(mech);
    let reply = server
        .handle_client_first(b"n,,n=user,r=abc", |_| Some(credential.clone()))
        .unwrap();
    let reply = String::from_utf8(reply).unwrap();
    let nonce = reply
        .split(',')
        .next()
        .unwrap()
        .strip_prefix("r=")
        .unwrap()
        .to_owned();
    (server, nonce)
}

fn client_final_for(nonce: &str) -> String {
    format!("c=biws,r={nonce},p={}", b64(&[0u8; 32]))
}

#[test]
fn rfc7677_example_server_side() {
    let mut server = rfc_server();
    let first = server
        .handle_client_first(RFC_CLIENT_FIRST.as_bytes(), |name| {
            assert_eq!(name, "user");
            Some(rfc_credential())
        })
        .unwrap();
    assert_eq!(String::from_utf8(first).unwrap(), RFC_SERVER_FIRST);
    assert_eq!(server.username(), Some("user"));
    let outcome = server
        .handle_client_final(RFC_CLIENT_FINAL.as_bytes())
        .unwrap();
    assert_eq!(outcome.username, "user");
    assert_eq!(outcome.principal(), crate::Principal::user("user"));
    assert_eq!(
        String::from_utf8(outcome.server_final).unwrap(),
        RFC_SERVER_FINAL
    );
}

#[test]
fn rfc7677_example_client_side() {
    let mut client = ScramClient::with_nonce(
        ScramMechanism::Sha256,
        "user",
        "pencil",
        RFC_CLIENT_NONCE.into(),
    );
    assert_eq!(client.client_first(), RFC_CLIENT_FIRST.as_bytes());
    let last = client
        .handle_server_first(RFC_SERVER_FIRST.as_bytes())
        .unwrap();
    assert_eq!(String::from_utf8(last).unwrap(), RFC_CLIENT_FINAL);
    client
        .handle_server_final(RFC_SERVER_FINAL.as_bytes())
        .unwrap();
}

fn exchange(
    mech: ScramMechanism,
    username: &str,
    password: &str,
    stored: Option<ScramCredential>,
) -> Result<String, ScramError> {
    let mut client = ScramClient::new(mech, username, password);
    let mut server = ScramServer::new(mech);
    let first = server.handle_client_first(&client.client_first(), |name| {
        assert_eq!(name, username);
        stored
    })?;
    let last = client.handle_server_first(&first)?;
    let outcome = server.handle_client_final(&last)?;
    client.handle_server_final(&outcome.server_final)?;
    Ok(outcome.username)
}

#[test]
fn client_and_server_agree_for_both_mechanisms() {
    for mech in ScramMechanism::ALL {
        let credential = ScramCredential::generate(mech, b"s3cret", 4096).unwrap();
        assert_eq!(
            exchange(mech, "alice", "s3cret", Some(credential)).unwrap(),
            "alice"
        );
    }
}

#[test]
fn user_names_with_comma_and_equals_survive_escaping() {
    let mut client = ScramClient::new(ScramMechanism::Sha256, "a,b=c", "pw");
    let first = String::from_utf8(client.client_first()).unwrap();
    assert!(first.starts_with("n,,n=a=2Cb=3Dc,r="), "{first}");
    let credential = ScramCredential::generate(ScramMechanism::Sha256, b"pw", 4096).unwrap();
    let name = exchange(ScramMechanism::Sha256, "a,b=c", "pw", Some(credential)).unwrap();
    assert_eq!(name, "a,b=c");
}

#[test]
fn authzid_equal_to_the_user_is_accepted() {
    let mut server = ScramServer::new(ScramMechanism::Sha256);
    let credential = rfc_credential();
    let first = server.handle_client_first(b"n,a=a=2Cb,n=a=2Cb,r=xyz", |name| {
        assert_eq!(name, "a,b");
        Some(credential)
    });
    assert!(first.is_ok());
}

#[test]
fn wrong_password_is_an_invalid_proof() {
    let credential = ScramCredential::generate(ScramMechanism::Sha512, b"right", 4096).unwrap();
    let err = exchange(ScramMechanism::Sha512, "alice", "wrong", Some(credential)).unwrap_err();
    assert_eq!(err, ScramError::InvalidProof);
    assert!(err.is_authentication_failure());
}

#[test]
fn unknown_user_gets_a_plausible_server_first_then_fails() {
    let mech = ScramMechanism::Sha256;
    let mut server = ScramServer::new(mech);
    let mut client = ScramClient::new(mech, "ghost", "pw");
    let first = server
        .handle_client_first(&client.client_first(), |_| None)
        .unwrap();
    let text = String::from_utf8(first.clone()).unwrap();
    let attrs: Vec<&str> = text.split(',').collect();
    assert_eq!(attrs.len(), 3, "{text}");
    assert!(attrs[0].starts_with("r="));
    assert_eq!(
        unb64("salt", attrs[1].strip_prefix("s=").unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(attrs[2], "i=4096");
    assert_eq!(server.username(), Some("ghost"));

    let last = client.handle_server_first(&first).unwrap();
    let err = server.handle_client_final(&last).unwrap_err();
    assert_eq!(err, ScramError::UnknownUser);
    assert!(err.is_authentication_failure());
    // The message a client may be shown is the same as for a wrong password.
    assert_eq!(err.to_string(), ScramError::InvalidProof.to_string());
}

#[test]
fn unknown_user_sees_the_same_salt_every_time() {
    let salt_for = |name: &str| {
        let mut server = ScramServer::new(ScramMechanism::Sha512);
        let msg = format!("n,,n={name},r=abc");
        let reply = server
            .handle_client_first(msg.as_bytes(), |_| None)
            .unwrap();
        String::from_utf8(reply)
            .unwrap()
            .split(',')
            .nth(1)
            .unwrap()
            .to_owned()
    };
    assert_eq!(salt_for("ghost"), salt_for("ghost"));
    assert_ne!(salt_for("ghost"), salt_for("phantom"));
}

#[test]
fn server_nonces_are_fresh_printable_and_long() {
    let credential = rfc_credential();
    let (_, a) = server_after_first(ScramMechanism::Sha256, &credential);
    let (_, b) = server_after_first(ScramMechanism::Sha256, &credential);
    assert_ne!(a, b);
    let server_part = a.strip_prefix("abc").unwrap();
    assert!(server_part.len() >= 24);
    assert!(server_part
        .bytes()
        .all(|c| (0x21..=0x7e).contains(&c) && c != b','));
}

#[test]
fn malformed_client_first_messages_are_errors() {
    use ScramError::*;
    let cases: &[(&[u8], Check)] = &[
        (b"", |e| matches!(e, Malformed(_))),
        (b"\xff\xfe\x00garbage", |e| matches!(e, Malformed(_))),
        (b"n,,n=us\xc3er,r=abc", |e| matches!(e, Malformed(_))),
        (b"n,,", |e| matches!(e, Malformed(_))),
        (b"n,,n=user", |e| matches!(e, Malformed(_))),
        (b"n,,r=abc", |e| matches!(e, Malformed(_))),
        (b"n,,n=,r=abc", |e| matches!(e, Malformed(_))),
        (b"n,,n=user,r=", |e| matches!(e, Malformed(_))),
        (b"n,,n=user,r=ab\x01c", |e| matches!(e, Malformed(_))),
        (b"n,,n=us=41er,r=abc", |e| matches!(e, Malformed(_))),
        (b"n,,n=user=,r=abc", |e| matches!(e, Malformed(_))),
        (b"n,,n=user=2,r=abc", |e| matches!(e, Malformed(_))),
        (b"x,,n=user,r=abc", |e| matches!(e, Malformed(_))),
        (b"n,b=user,n=user,r=abc", |e| matches!(e, Malformed(_))),
        (b"n,,n=user,r=abc,n=other", |e| matches!(e, Malformed(_))),
        (b"n,,n=user,r=abc,junk", |e| matches!(e, Malformed(_))),
        (b"p=tls-unique,,n=user,r=abc", |e| {
            *e == UnsupportedChannelBinding
        }),
        (
            b"n,,m=ext,n=user,r=abc",
            |e| matches!(e, UnsupportedExtension(x) if x == "m"),
        ),
        (
            b"n,,n=user,r=abc,tokenauth=true",
            |e| matches!(e, UnsupportedExtension(x) if x == "tokenauth"),
        ),
        (b"n,a=admin,n=user,r=abc", |e| *e == AuthorizationIdMismatch),
    ];
    for (msg, expected) in cases {
        let mut server = rfc_server();
        let err = server
            .handle_client_first(msg, |_| Some(rfc_credential()))
            .unwrap_err();
        assert!(
            expected(&err),
            "{:?} gave {err:?}",
            String::from_utf8_lossy(msg)
        );
        // The exchange is over after any error.
        assert_eq!(
            server.handle_client_final(RFC_CLIENT_FINAL.as_bytes()),
            Err(OutOfOrder)
        );
    }
}

#[test]
fn unknown_extensions_are_ignored_and_y_flag_accepted() {
    let mut server = rfc_server();
    let msg = "y,,n=user,r=rOprNGfwEbeRWgbNEkqO,foo=bar,x=";
    assert!(server
        .handle_client_first(msg.as_bytes(), |_| Some(rfc_credential()))
        .is_ok());
    // c= must then carry the y,, header.
    let bad = server
        .handle_client_final(RFC_CLIENT_FINAL.as_bytes())
        .unwrap_err();
    assert_eq!(bad, ScramError::ChannelBindingMismatch);
}

#[test]
fn malformed_client_final_messages_are_errors() {
    use ScramError::*;
    let credential = rfc_credential();
    let cases: Vec<(String, Check)> = vec![
        ("garbage".into(), |e| matches!(e, Malformed(_))),
        ("c=biws,r={n}".into(), |e| matches!(e, Malformed(_))),
        ("r={n},p=AAAA".into(), |e| matches!(e, Malformed(_))),
        ("c=biws,p=AAAA".into(), |e| matches!(e, Malformed(_))),
        ("c=biws,r={n},p=not base64!".into(), |e| {
            matches!(e, Malformed(_))
        }),
        ("c=***,r={n},p=AAAA".into(), |e| matches!(e, Malformed(_))),
        ("c=biws,r={n},m=x,p=AAAA".into(), |e| {
            matches!(e, UnsupportedExtension(_))
        }),
        ("c=biws,r={n}X,p=AAAA".into(), |e| *e == NonceMismatch),
        ("c=biws,r=abc,p=AAAA".into(), |e| *e == NonceMismatch),
        ("c=eSws,r={n},p=AAAA".into(), |e| {
            *e == ChannelBindingMismatch
        }),
        ("c=biws,r={n},p=AAAA".into(), |e| *e == InvalidProof),
    ];
    for (template, expected) in cases {
        let (mut server, nonce) = server_after_first(ScramMechanism::Sha256, &credential);
        let msg = template.replace("{n}", &nonce);
        let err = server.handle_client_final(msg.as_bytes()).unwrap_err();
        assert!(expected(&err), "{msg:?} gave {err:?}");
    }
    let (mut server, _) = server_after_first(ScramMechanism::Sha256, &credential);
    let non_utf8 = server
        .handle_client_final(b"c=biws,r=\xff,p=AAAA")
        .unwrap_err();
    assert!(matches!(non_utf8, Malformed(_)));
}

#[test]
fn a_right_length_proof_that_is_wrong_is_an_invalid_proof() {
    let credential = rfc_credential();
    let (mut server, nonce) = server_after_first(ScramMechanism::Sha256, &credential);
    let err = server
        .handle_client_final(client_final_for(&nonce).as_bytes())
        .unwrap_err();
    assert_eq!(err, ScramError::InvalidProof);
}

#[test]
fn tampered_nonce_or_binding_in_a_real_exchange_is_refused() {
    let mech = ScramMechanism::Sha256;
    let credential = ScramCredential::generate(mech, b"pw", 4096).unwrap();
    for tamper in [("c=biws", "c=eSws"), (",r=", ",r=x")] {
        let mut client = ScramClient::new(mech, "user", "pw");
        let mut server = ScramServer::new(mech);
        let first =
            server.handle_client_first(&client.client_first(), |_| Some(credential.clone()));
        let last = String::from_utf8(client.handle_server_first(&first.unwrap()).unwrap()).unwrap();
        let tampered = last.replacen(tamper.0, tamper.1, 1);
        assert_ne!(tampered, last);
        assert!(server.handle_client_final(tampered.as_bytes()).is_err());
    }
}

#[test]
fn calls_out_of_order_are_errors() {
    let mut server = rfc_server();
    assert_eq!(
        server.handle_client_final(RFC_CLIENT_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder)
    );

    let mut server = rfc_server();
    server
        .handle_client_first(RFC_CLIENT_FIRST.as_bytes(), |_| Some(rfc_credential()))
        .unwrap();
    let again = server.handle_client_first(RFC_CLIENT_FIRST.as_bytes(), |_| Some(rfc_credential()));
    assert_eq!(again, Err(ScramError::OutOfOrder));

    let mut server = rfc_server();
    server
        .handle_client_first(RFC_CLIENT_FIRST.as_bytes(), |_| Some(rfc_credential()))
        .unwrap();
    server
        .handle_client_final(RFC_CLIENT_FINAL.as_bytes())
        .unwrap();
    assert_eq!(
        server.handle_client_final(RFC_CLIENT_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder)
    );

    let mut client = ScramClient::new(ScramMechanism::Sha256, "user", "pencil");
    assert_eq!(
        client.handle_server_first(RFC_SERVER_FIRST.as_bytes()),
        Err(ScramError::OutOfOrder)
    );
    assert_eq!(
        client.handle_server_final(RFC_SERVER_FINAL.as_bytes()),
        Err(ScramError::OutOfOrder)
    );
}

#[test]
fn client_refuses_bad_server_first() {
    use ScramError::*;
    let cases: &[(&str, Check)] = &[
        ("r=someoneelse123,s=QSXCR+Q6sek8bf92,i=4096", |e| {
            *e == NonceMismatch
        }),
        ("r=rOprNGfwEbeRWgbNEkqO,s=QSXCR+Q6sek8bf92,i=4096", |e| {
            *e == NonceMismatch
        }),
        ("r=rOprNGfwEbeRWgbNEkqOxyz,s=QSXCR+Q6sek8bf92,i=4095", |e| {
            *e == IterationsOutOfRange(4095)
        }),
        ("r=rOprNGfwEbeRWgbNEkqOxyz,s=QSXCR+Q6sek8bf92,i=-1", |e| {
            matches!(e, Malformed(_))
        }),
        ("r=rOprNGfwEbeRWgbNEkqOxyz,s=!!,i=4096", |e| {
            matches!(e, Malformed(_))
        }),
        ("r=rOprNGfwEbeRWgbNEkqOxyz,s=,i=4096", |e| {
            matches!(e, Malformed(_))
        }),
        ("r=rOprNGfwEbeRWgbNEkqOxyz,i=4096", |e| {
            matches!(e, Malformed(_))
        }),
        (
            "m=x,r=rOprNGfwEbeRWgbNEkqOxyz,s=QSXCR+Q6sek8bf92,i=4096",
            |e| matches!(e, UnsupportedExtension(_)),
        ),
        ("e=unknown-user", |e| *e == Server("unknown-user".into())),
        ("", |e| matches!(e, Malformed(_))),
    ];
    for (msg, expected) in cases {
        let mut client = ScramClient::with_nonce(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            RFC_CLIENT_NONCE.into(),
        );
        client.client_first();
        let err = client.handle_server_first(msg.as_bytes()).unwrap_err();
        assert!(expected(&err), "{msg:?} gave {err:?}");
    }
}

#[test]
fn client_refuses_bad_server_final() {
    use ScramError::*;
    let cases: &[(&[u8], ScramError)] = &[
        (
            b"v=7rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
            InvalidServerSignature,
        ),
        (b"v=AAAA", InvalidServerSignature),
        (b"e=invalid-proof", Server("invalid-proof".into())),
        (b"v=***", Malformed("verifier is not base64".into())),
        (b"x=1", Malformed("expected v= or e=".into())),
        (b"\xff", Malformed("not UTF-8".into())),
    ];
    for (msg, expected) in cases {
        let mut client = ScramClient::with_nonce(
            ScramMechanism::Sha256,
            "user",
            "pencil",
            RFC_CLIENT_NONCE.into(),
        );
        client.client_first();
        client
            .handle_server_first(RFC_SERVER_FIRST.as_bytes())
            .unwrap();
        assert_eq!(client.handle_server_final(msg).unwrap_err(), *expected);
    }
}

#[test]
fn verify_password_accepts_only_the_password() {
    for mech in ScramMechanism::ALL {
        let credential = ScramCredential::generate(mech, b"pencil", 4096).unwrap();
        assert!(credential.verify_password(mech, b"pencil"));
        assert!(!credential.verify_password(mech, b"pencil "));
        assert!(!credential.verify_password(mech, b""));
    }
    let sha256 = rfc_credential();
    assert!(!sha256.verify_password(ScramMechanism::Sha512, b"pencil"));
}

#[test]
fn verify_password_refuses_credentials_no_constructor_makes() {
    let good = rfc_credential();
    let huge = ScramCredential {
        iterations: u32::MAX,
        ..good.clone()
    };
    assert!(!huge.verify_password(ScramMechanism::Sha256, b"pencil"));
    let unsalted = ScramCredential {
        salt: vec![],
        ..good
    };
    assert!(!unsalted.verify_password(ScramMechanism::Sha256, b"pencil"));
}

#[test]
fn salted_password_gives_the_same_credential_as_the_password() {
    let salt = unb64("salt", RFC_SALT).unwrap();
    let salted = crypto::hi(ScramMechanism::Sha256, b"pencil", &salt, 4096);
    let from_salted =
        ScramCredential::from_salted_password(ScramMechanism::Sha256, &salted, &salt, 4096)
            .unwrap();
    assert_eq!(from_salted, rfc_credential());
}

#[test]
fn credentials_refuse_iterations_outside_kafka_bounds_and_empty_inputs() {
    let mech = ScramMechanism::Sha256;
    for i in [0, 4095, 16385, u32::MAX] {
        assert_eq!(
            ScramCredential::from_password(mech, b"pw", b"salt", i),
            Err(ScramError::IterationsOutOfRange(i))
        );
        assert_eq!(
            ScramCredential::from_salted_password(mech, &[1; 32], b"salt", i),
            Err(ScramError::IterationsOutOfRange(i))
        );
    }
    assert!(ScramCredential::from_password(mech, b"pw", b"salt", 16384).is_ok());
    assert!(ScramCredential::from_password(mech, b"pw", b"", 4096).is_err());
    assert!(ScramCredential::from_salted_password(mech, b"", b"salt", 4096).is_err());
}

#[test]
fn credential_debug_shows_no_keys_and_serde_round_trips() {
    let credential = rfc_credential();
    let debug = format!("{credential:?}");
    assert_eq!(
        debug,
        "ScramCredential { iterations: 4096, salt_len: 16, .. }"
    );
    let json = serde_json::to_string(&credential).unwrap();
    assert_eq!(
        serde_json::from_str::<ScramCredential>(&json).unwrap(),
        credential
    );
    let client = ScramClient::new(ScramMechanism::Sha256, "user", "hunter2");
    assert!(!format!("{client:?}").contains("hunter2"));
}

#[test]
fn mechanism_names_and_codes() {
    for mech in ScramMechanism::ALL {
        assert_eq!(ScramMechanism::from_name(mech.name()), Some(mech));
        assert_eq!(
            ScramMechanism::from_kafka_code(mech.kafka_code()),
            Some(mech)
        );
        assert_eq!(mech.to_string(), mech.name());
    }
    assert_eq!(ScramMechanism::Sha256.name(), "SCRAM-SHA-256");
    assert_eq!(ScramMechanism::Sha512.name(), "SCRAM-SHA-512");
    assert_eq!(ScramMechanism::Sha256.kafka_code(), 1);
    assert_eq!(ScramMechanism::Sha512.kafka_code(), 2);
    assert_eq!(ScramMechanism::from_name("scram-sha-256"), None);
    assert_eq!(ScramMechanism::from_name("PLAIN"), None);
    assert_eq!(ScramMechanism::from_kafka_code(0), None);
}

proptest! {
    #[test]
    fn server_never_panics_on_arbitrary_bytes(first in proptest::collection::vec(any::<u8>(), 0..200),
                                              last in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        let _ = server.handle_client_first(&first, |_| Some(rfc_credential()));
        let _ = server.handle_client_final(&last);
        let mut server = rfc_server();
        server.handle_client_first(RFC_CLIENT_FIRST.as_bytes(), |_| Some(rfc_credential())).unwrap();
        let _ = server.handle_client_final(&last);
    }

    #[test]
    fn server_never_panics_on_near_valid_text(first in "[nyp=a-z,]{0,6}n=[a-zA-Z0-9=,]{0,12}(,r=[ -~]{0,12})?(,[a-z]+=[ -~]{0,6}){0,3}",
                                              last in "(c=[a-zA-Z0-9=+/]{0,8})?(,r=[ -~]{0,20})?(,p=[a-zA-Z0-9=+/]{0,50})?") {
        let mut server = ScramServer::new(ScramMechanism::Sha256);
        if server.handle_client_first(first.as_bytes(), |_| None).is_ok() {
            prop_assert!(server.handle_client_final(last.as_bytes()).is_err());
        }
    }

    #[test]
    fn client_never_panics_on_arbitrary_bytes(first in proptest::collection::vec(any::<u8>(), 0..200),
                                              last in proptest::collection::vec(any::<u8>(), 0..200)) {
        let mut client = ScramClient::new(ScramMechanism::Sha512, "user", "pw");
        client.client_first();
        let _ = client.handle_server_first(&first);
        let _ = client.handle_server_final(&last);
        let mut client = ScramClient::with_nonce(ScramMechanism::Sha256, "user", "pencil", RFC_CLIENT_NONCE.into());
        client.state = client::State::FinalSent { server_signature: vec![0; 32] };
        let _ = client.handle_server_final(&last);
    }

    #[test]
    fn any_user_name_round_trips_through_escaping(name in "\\PC{1,20}") {
        let escaped = message::escape_username(&name);
        prop_assert!(!escaped.contains(','));
        prop_assert_eq!(message::unescape_username(&escaped).unwrap(), name);
    }
}

#[test]
fn a_salted_password_sent_by_a_client_makes_the_same_credential_as_the_password() {
    let salt = unb64("salt", RFC_SALT).unwrap();
    let salted = ScramMechanism::Sha256
        .salted_password(b"pencil", &salt, 4096)
        .unwrap();
    let from_salted =
        ScramCredential::from_salted_password(ScramMechanism::Sha256, &salted, &salt, 4096)
            .unwrap();
    assert_eq!(from_salted, rfc_credential());
    assert!(ScramMechanism::Sha256
        .salted_password(b"pencil", &salt, 100)
        .is_err());
    assert!(ScramMechanism::Sha256
        .salted_password(b"pencil", &[], 4096)
        .is_err());
    let (a, b) = (
        ScramCredential::random_salt(),
        ScramCredential::random_salt(),
    );
    assert_eq!(a.len(), ScramCredential::SALT_LEN);
    assert_ne!(a, b);
}

/// librdkafka before 2.6.1 puts its own nonce in front of the combined one in client-final
/// (librdkafka#4895). Its proof signs what it sent, so the exchange succeeds; any other nonce fails.
#[test]
fn the_client_final_nonce_of_old_librdkafka_is_accepted_and_others_are_not() {
    let credential = rfc_credential();
    let salted = crypto::hi(
        ScramMechanism::Sha256,
        b"pencil",
        &unb64("salt", RFC_SALT).unwrap(),
        4096,
    );
    let client_key = crypto::hmac(ScramMechanism::Sha256, &salted, crypto::CLIENT_KEY);
    let combined = format!("{RFC_CLIENT_NONCE}{RFC_SERVER_NONCE}");
    for (nonce, accepted) in [
        (format!("{RFC_CLIENT_NONCE}{combined}"), true),
        (format!("x{combined}"), false),
        (format!("{combined}{RFC_CLIENT_NONCE}"), false),
    ] {
        let mut server = rfc_server();
        server
            .handle_client_first(RFC_CLIENT_FIRST.as_bytes(), |_| Some(credential.clone()))
            .unwrap();
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!(
            "{},{RFC_SERVER_FIRST},{without_proof}",
            &RFC_CLIENT_FIRST[3..]
        );
        let signature = crypto::hmac(
            ScramMechanism::Sha256,
            &credential.stored_key,
            auth_message.as_bytes(),
        );
        let proof = crypto::xor(&client_key, &signature);
        let last = format!("{without_proof},p={}", b64(&proof));
        let outcome = server.handle_client_final(last.as_bytes());
        assert_eq!(outcome.is_ok(), accepted, "{nonce}: {outcome:?}");
    }
}
