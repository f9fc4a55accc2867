//! Loading, reloading and serving TLS with the `openssl`-made test PKI, against a rustls client.

use std::sync::Arc;

use nerve_tls::testing::TestPki;
use nerve_tls::{peer_principal, ClientAuth, ServerTls, TlsError, TlsSettings};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

fn client_config(
    pki: &TestPki,
    identity: Option<(&std::path::Path, &std::path::Path)>,
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pki.ca_cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    }
}

/// Accepts one connection, answers with the client's principal (or "none"), and returns what the
/// client read, or the client's error.
async fn exchange(server: Arc<ServerTls>, client: ClientConfig) -> Result<String, std::io::Error> {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let Ok(mut tls) = server.acceptor().accept(tcp).await else {
            return;
        };
        let principal = match peer_principal(tls.get_ref().1) {
            Some(p) => p.unwrap(),
            None => "none".to_string(),
        };
        let _ = tls.write_all(principal.as_bytes()).await;
        let _ = tls.shutdown().await;
    });
    let tcp = TcpStream::connect(addr).await.unwrap();
    let connector = TlsConnector::from(Arc::new(client));
    let result = async {
        let mut tls = connector
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await?;
        let mut answer = String::new();
        tls.read_to_string(&mut answer).await?;
        Ok(answer)
    }
    .await;
    accept.await.unwrap();
    result
}

#[tokio::test]
async fn a_client_certificate_names_the_principal_by_its_subject() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path());
    let (cert, key) = pki.client("alice", "/O=Acme/OU=eng/CN=alice");
    let server = Arc::new(ServerTls::load(pki.settings(ClientAuth::Required)).unwrap());
    let answer = exchange(server, client_config(&pki, Some((&cert, &key))))
        .await
        .unwrap();
    assert_eq!(answer, "CN=alice,OU=eng,O=Acme");
}

#[tokio::test]
async fn required_client_auth_refuses_a_client_without_a_certificate_and_requested_lets_it_in() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path());
    let required = Arc::new(ServerTls::load(pki.settings(ClientAuth::Required)).unwrap());
    assert!(exchange(required, client_config(&pki, None)).await.is_err());
    let requested = Arc::new(ServerTls::load(pki.settings(ClientAuth::Requested)).unwrap());
    assert_eq!(
        exchange(requested, client_config(&pki, None))
            .await
            .unwrap(),
        "none"
    );
    let none = Arc::new(ServerTls::load(pki.settings(ClientAuth::None)).unwrap());
    assert_eq!(
        exchange(none, client_config(&pki, None)).await.unwrap(),
        "none"
    );
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(&dir.path().join("a").tap_mkdir());
    let other = TestPki::generate(&dir.path().join("b").tap_mkdir());
    let (cert, key) = other.client("mallory", "/CN=mallory");
    let server = Arc::new(ServerTls::load(pki.settings(ClientAuth::Required)).unwrap());
    assert!(exchange(server, client_config(&pki, Some((&cert, &key))))
        .await
        .is_err());
}

#[tokio::test]
async fn reload_serves_the_renewed_certificate_and_a_failed_reload_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let old = TestPki::generate(&dir.path().join("old").tap_mkdir());
    let new = TestPki::generate(&dir.path().join("new").tap_mkdir());
    let live = dir.path().join("live").tap_mkdir();
    let settings = TlsSettings {
        cert_file: live.join("server.pem"),
        key_file: live.join("server.key"),
        ca_file: None,
        client_auth: ClientAuth::None,
    };
    std::fs::copy(&old.server_cert, &settings.cert_file).unwrap();
    std::fs::copy(&old.server_key, &settings.key_file).unwrap();
    let server = Arc::new(ServerTls::load(settings.clone()).unwrap());
    assert!(exchange(server.clone(), client_config(&old, None))
        .await
        .is_ok());
    assert!(exchange(server.clone(), client_config(&new, None))
        .await
        .is_err());

    // A half-written renewal: the reload fails and the old certificate is still served.
    std::fs::write(&settings.key_file, "not a key").unwrap();
    assert!(matches!(server.reload(), Err(TlsError::NoKey { .. })));
    assert!(exchange(server.clone(), client_config(&old, None))
        .await
        .is_ok());

    std::fs::copy(&new.server_cert, &settings.cert_file).unwrap();
    std::fs::copy(&new.server_key, &settings.key_file).unwrap();
    server.reload().unwrap();
    assert!(exchange(server.clone(), client_config(&new, None))
        .await
        .is_ok());
    assert!(exchange(server, client_config(&old, None)).await.is_err());
}

#[test]
fn bad_files_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::generate(dir.path());
    let missing = TlsSettings {
        cert_file: dir.path().join("absent.pem"),
        ..pki.settings(ClientAuth::None)
    };
    assert!(matches!(
        ServerTls::load(missing),
        Err(TlsError::Read { .. })
    ));
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();
    let no_cert = TlsSettings {
        cert_file: garbage.clone(),
        ..pki.settings(ClientAuth::None)
    };
    assert!(matches!(
        ServerTls::load(no_cert),
        Err(TlsError::NoCertificate { .. })
    ));
    let no_key = TlsSettings {
        key_file: garbage,
        ..pki.settings(ClientAuth::None)
    };
    assert!(matches!(
        ServerTls::load(no_key),
        Err(TlsError::NoKey { .. })
    ));
    let no_ca = TlsSettings {
        ca_file: None,
        ..pki.settings(ClientAuth::Required)
    };
    assert!(matches!(
        ServerTls::load(no_ca),
        Err(TlsError::MissingCa(_))
    ));
    let wrong_key = TlsSettings {
        key_file: pki.ca_key.clone(),
        ..pki.settings(ClientAuth::None)
    };
    assert!(
        ServerTls::load(wrong_key).is_err(),
        "a key that is not the certificate's"
    );
}

trait TapMkdir {
    fn tap_mkdir(self) -> Self;
}

impl TapMkdir for std::path::PathBuf {
    fn tap_mkdir(self) -> Self {
        std::fs::create_dir_all(&self).unwrap();
        self
    }
}
