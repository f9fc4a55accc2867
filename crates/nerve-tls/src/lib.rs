//! TLS for Nerve's listeners (the Kafka listeners with SSL or SASL_SSL, and the HTTP ports).
//!
//! - [`TlsSettings`]: the server certificate chain and key from PEM files, and whether clients present
//!   certificates (mTLS) checked against a CA bundle.
//! - [`ServerTls`]: the loaded configuration, replaced whole by [`ServerTls::reload`] (Nerve calls it on
//!   SIGHUP) so certificates can be renewed without a restart; a reload that fails keeps the old one.
//! - [`peer_principal`]: the client certificate's subject as Kafka names it.
//!
//! rustls speaks TLS 1.2 and 1.3 only, which is what a broker should accept today.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use serde::{Deserialize, Serialize};

mod subject;

pub use subject::{subject_rfc2253, SubjectError};
pub use tokio_rustls::server::TlsStream;
pub use tokio_rustls::TlsAcceptor;

/// Whether clients present certificates: Kafka's `ssl.client.auth`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// No client certificates are asked for.
    #[default]
    None,
    /// A certificate is asked for and checked if given; a client without one still connects.
    Requested,
    /// Every client must present a certificate signed by the CA bundle.
    Required,
}

/// Where the TLS material is: `[tls]` in Nerve's config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsSettings {
    /// The server's certificate chain (PEM), leaf first: Kafka's `ssl.keystore.location`.
    pub cert_file: PathBuf,
    /// The server's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// The CAs that sign client certificates (PEM): Kafka's `ssl.truststore.location`. Needed unless
    /// `client_auth` is `none`.
    pub ca_file: Option<PathBuf>,
    /// `ssl.client.auth`: `none`, `requested` or `required`.
    pub client_auth: ClientAuth,
}

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("{path}: {reason}")]
    Pem { path: PathBuf, reason: String },
    #[error("client_auth = {0:?} needs ca_file, the CAs that sign client certificates")]
    MissingCa(ClientAuth),
    #[error("the CA bundle cannot verify client certificates: {0}")]
    Verifier(String),
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// A TLS server configuration that can be replaced while connections use the old one.
pub struct ServerTls {
    settings: TlsSettings,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Loads the files `settings` names.
    pub fn load(settings: TlsSettings) -> Result<Self, TlsError> {
        let config = build(&settings)?;
        Ok(ServerTls {
            settings,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again (renewed certificates); on error the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = build(&self.settings)?;
        *self.current.write() = Arc::new(config);
        Ok(())
    }

    /// An acceptor with the configuration in use now.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().clone())
    }

    /// What the configuration was loaded from.
    pub fn settings(&self) -> &TlsSettings {
        &self.settings
    }
}

/// The principal of a client that presented a certificate: `User:` and the subject in RFC 2253 form, as
/// Kafka's default principal builder names it. `None` without a client certificate.
pub fn peer_principal(connection: &ServerConnection) -> Option<Result<String, SubjectError>> {
    let leaf = connection.peer_certificates()?.first()?;
    Some(subject_rfc2253(leaf.as_ref()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn build(settings: &TlsSettings) -> Result<ServerConfig, TlsError> {
    let certs = read_certs(&settings.cert_file)?;
    let key = read_key(&settings.key_file)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let ca = settings
                .ca_file
                .as_deref()
                .ok_or(TlsError::MissingCa(auth))?;
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Verifier(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if auth == ClientAuth::Requested {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier
                .build()
                .map_err(|e| TlsError::Verifier(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    Ok(builder.with_single_cert(certs, key)?)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::NoKey {
            path: path.to_path_buf(),
        },
        other => TlsError::Pem {
            path: path.to_path_buf(),
            reason: other.to_string(),
        },
    })
}

#[cfg(feature = "testing")]
pub mod testing;
