//! SASL SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677) as Kafka implements them.
//!
//! [`ScramServer`] runs the broker's side of one exchange, [`ScramClient`] the CLI's. Both take the peer's
//! messages as untrusted bytes. [`ScramCredential`] is what Nerve stores per user and mechanism: a salt, an
//! iteration count and two derived keys, never the password.
//!
//! Kafka's dialect: no channel binding (`n,,`, or `y,,` from a client that could bind but sees no
//! `-PLUS` mechanism), usernames escaped as in RFC 5802, and extra `key=value` attributes in client-first
//! (`tokenauth=true` for delegation tokens, which Nerve does not have).

mod client;
mod crypto;
mod message;
mod server;
#[cfg(test)]
mod tests;

use std::fmt;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};

pub use client::ScramClient;
pub use server::{ScramOutcome, ScramServer};

/// The hash a SCRAM exchange is built on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// Kafka's lower bound on iterations (`ScramMechanism.minIterations`).
    pub const MIN_ITERATIONS: u32 = 4096;
    /// Kafka's upper bound for AlterUserScramCredentials.
    pub const MAX_ITERATIONS: u32 = 16384;
    pub const ALL: [Self; 2] = [Self::Sha256, Self::Sha512];

    /// The SASL mechanism name, as SaslHandshake carries it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    /// Exact match: SASL mechanism names are case-sensitive on Kafka's side too.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }

    /// The mechanism code of DescribeUserScramCredentials and AlterUserScramCredentials (0 is UNKNOWN).
    pub fn kafka_code(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    pub fn from_kafka_code(code: i8) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.kafka_code() == code)
    }

    /// Length in bytes of the hash, and so of every key and proof.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// RFC 5802's `SaltedPassword := Hi(password, salt, iterations)`: what an AlterUserScramCredentials
    /// upsertion carries (with the salt), so that the password itself never crosses the wire.
    pub fn salted_password(
        self,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<Vec<u8>, ScramError> {
        Self::check_iterations(iterations)?;
        if salt.is_empty() {
            return Err(ScramError::InvalidCredential("empty salt".into()));
        }
        Ok(crypto::hi(self, password, salt, iterations))
    }

    fn check_iterations(iterations: u32) -> Result<(), ScramError> {
        if (Self::MIN_ITERATIONS..=Self::MAX_ITERATIONS).contains(&iterations) {
            Ok(())
        } else {
            Err(ScramError::IterationsOutOfRange(iterations))
        }
    }
}

impl fmt::Display for ScramMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a server keeps per user and mechanism (RFC 5802 section 3).
///
/// Knowing it lets a server check a proof but not impersonate the user elsewhere: the client key is only
/// recoverable from a live exchange.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
    pub iterations: u32,
}

impl ScramCredential {
    /// Salt length of [`generate`](Self::generate), as Kafka's `ScramFormatter.secureRandomBytes` uses.
    pub const SALT_LEN: usize = 32;

    pub fn from_password(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, ScramError> {
        ScramMechanism::check_iterations(iterations)?;
        if salt.is_empty() {
            return Err(ScramError::InvalidCredential("empty salt".into()));
        }
        let salted = crypto::hi(mechanism, password, salt, iterations);
        Self::from_salted_password(mechanism, &salted, salt, iterations)
    }

    /// A credential with a fresh random salt.
    pub fn generate(
        mechanism: ScramMechanism,
        password: &[u8],
        iterations: u32,
    ) -> Result<Self, ScramError> {
        Self::from_password(mechanism, password, &Self::random_salt(), iterations)
    }

    /// [`SALT_LEN`](Self::SALT_LEN) random bytes, a fresh salt for a new credential.
    pub fn random_salt() -> Vec<u8> {
        let mut salt = vec![0u8; Self::SALT_LEN];
        rand::rng().fill_bytes(&mut salt);
        salt
    }

    /// From `Hi(password, salt, iterations)`, which is what AlterUserScramCredentials upserts carry so that
    /// the password never crosses the wire.
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted_password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Result<Self, ScramError> {
        ScramMechanism::check_iterations(iterations)?;
        // Kafka's controller refuses these as UNACCEPTABLE_CREDENTIAL.
        if salt.is_empty() {
            return Err(ScramError::InvalidCredential("empty salt".into()));
        }
        if salted_password.is_empty() {
            return Err(ScramError::InvalidCredential(
                "empty salted password".into(),
            ));
        }
        let client_key = crypto::hmac(mechanism, salted_password, crypto::CLIENT_KEY);
        Ok(Self {
            salt: salt.to_vec(),
            stored_key: crypto::hash(mechanism, &client_key),
            server_key: crypto::hmac(mechanism, salted_password, crypto::SERVER_KEY),
            iterations,
        })
    }

    /// Whether `password` is the one this credential was made from: how SASL/PLAIN and HTTP basic auth check
    /// a password against SCRAM credentials. Costs one `Hi`, so `iterations` HMACs.
    ///
    /// A credential no constructor here would make (empty salt, iterations outside Kafka's bounds, as a
    /// corrupt store could hold) verifies nothing, rather than letting a huge count stall the caller.
    pub fn verify_password(&self, mechanism: ScramMechanism, password: &[u8]) -> bool {
        if self.salt.is_empty() || ScramMechanism::check_iterations(self.iterations).is_err() {
            return false;
        }
        let salted = crypto::hi(mechanism, password, &self.salt, self.iterations);
        let client_key = crypto::hmac(mechanism, &salted, crypto::CLIENT_KEY);
        crypto::ct_eq(&crypto::hash(mechanism, &client_key), &self.stored_key)
    }
}

/// Keys stay out of logs: only the iteration count and salt length show.
impl fmt::Debug for ScramCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredential")
            .field("iterations", &self.iterations)
            .field("salt_len", &self.salt.len())
            .finish_non_exhaustive()
    }
}

/// Why an exchange failed. Every variant ends the exchange.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(String),
    #[error("channel binding is not supported")]
    UnsupportedChannelBinding,
    #[error("unsupported SCRAM extension {0:?}")]
    UnsupportedExtension(String),
    #[error("authorization id differs from the user name")]
    AuthorizationIdMismatch,
    #[error("nonce mismatch")]
    NonceMismatch,
    #[error("channel binding mismatch")]
    ChannelBindingMismatch,
    #[error("authentication failed: invalid credentials")]
    InvalidProof,
    /// Displays exactly as [`InvalidProof`](Self::InvalidProof), so a message sent to the client does not
    /// tell whether the user exists; the variant lets the broker's own log say so.
    #[error("authentication failed: invalid credentials")]
    UnknownUser,
    #[error("invalid server signature")]
    InvalidServerSignature,
    #[error("iterations {0} out of range")]
    IterationsOutOfRange(u32),
    #[error("invalid credential: {0}")]
    InvalidCredential(String),
    #[error("SCRAM message out of order")]
    OutOfOrder,
    /// The server ended the exchange with `e=`.
    #[error("server error: {0}")]
    Server(String),
}

impl ScramError {
    /// Whether the client's credentials were wrong (bad proof or unknown user) rather than the exchange
    /// malformed. The broker answers both with SASL_AUTHENTICATION_FAILED; this tells its log which.
    pub fn is_authentication_failure(&self) -> bool {
        matches!(self, Self::InvalidProof | Self::UnknownUser)
    }
}

fn b64(bytes: &[u8]) -> String {
    BASE64.encode(bytes)
}

fn unb64(what: &str, text: &str) -> Result<Vec<u8>, ScramError> {
    BASE64
        .decode(text)
        .map_err(|_| ScramError::Malformed(format!("{what} is not base64")))
}

/// A fresh nonce: 24 random bytes, base64 (32 printable characters, none of them ',').
fn random_nonce() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    b64(&bytes)
}
