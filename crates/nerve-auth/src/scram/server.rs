//! The broker's side of one SCRAM exchange.

use std::fmt;
use std::sync::OnceLock;

use rand::RngCore as _;

use super::message::{parse_client_final, parse_client_first, utf8};
use super::{b64, crypto, random_nonce, ScramCredential, ScramError, ScramMechanism};
use crate::principal::Principal;

/// A successful exchange: who logged in, and the server-final message (`v=...`) to send back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScramOutcome {
    pub username: String,
    pub server_final: Vec<u8>,
}

impl ScramOutcome {
    /// `User:<username>`, the principal SCRAM authenticates.
    pub fn principal(&self) -> Principal {
        Principal::user(self.username.clone())
    }
}

/// One server-side exchange: [`handle_client_first`](Self::handle_client_first), then
/// [`handle_client_final`](Self::handle_client_final). Any error ends it; a later call is
/// [`ScramError::OutOfOrder`].
pub struct ScramServer {
    mechanism: ScramMechanism,
    server_nonce: String,
    username: Option<String>,
    state: State,
}

enum State {
    Initial,
    FirstSent(Box<Pending>),
    Done,
}

struct Pending {
    credential: ScramCredential,
    /// False when the credential is the stand-in for a user that does not exist.
    known_user: bool,
    gs2_header: String,
    /// The client's nonce followed by ours, as server-first sent it.
    nonce: String,
    /// The client's part of it.
    client_nonce: String,
    /// `client-first-message-bare + "," + server-first-message + ","`; client-final completes it.
    auth_message_prefix: String,
}

impl ScramServer {
    pub fn new(mechanism: ScramMechanism) -> Self {
        Self::with_nonce(mechanism, random_nonce())
    }

    /// With a fixed server nonce, for the RFC's test vectors. A fixed nonce makes exchanges replayable.
    pub(crate) fn with_nonce(mechanism: ScramMechanism, server_nonce: String) -> Self {
        Self {
            mechanism,
            server_nonce,
            username: None,
            state: State::Initial,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// The user name the client gave, once client-first has parsed (whether or not the user exists).
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Parses client-first, looks the user up and returns server-first.
    ///
    /// A user that `lookup` does not know gets a server-first all the same, from a stand-in credential
    /// derived from the name, so the answer does not tell who exists; the exchange then fails at
    /// client-final with [`ScramError::UnknownUser`].
    pub fn handle_client_first(
        &mut self,
        msg: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        let result = self.client_first(msg, lookup);
        if result.is_err() {
            self.state = State::Done;
        }
        result
    }

    fn client_first(
        &mut self,
        msg: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        if !matches!(self.state, State::Initial) {
            return Err(ScramError::OutOfOrder);
        }
        let first = parse_client_first(utf8(msg)?)?;
        let (credential, known_user) = match lookup(&first.username) {
            Some(credential) => (credential, true),
            None => (stand_in_credential(self.mechanism, &first.username), false),
        };
        let nonce = format!("{}{}", first.nonce, self.server_nonce);
        let client_nonce = first.nonce.to_owned();
        let server_first = format!(
            "r={nonce},s={},i={}",
            b64(&credential.salt),
            credential.iterations
        );
        let auth_message_prefix = format!("{},{server_first},", first.bare);
        self.username = Some(first.username);
        self.state = State::FirstSent(Box::new(Pending {
            credential,
            known_user,
            gs2_header: first.gs2_header.to_owned(),
            nonce,
            client_nonce,
            auth_message_prefix,
        }));
        Ok(server_first.into_bytes())
    }

    /// Checks client-final's channel binding, nonce and proof; on success returns server-final.
    pub fn handle_client_final(&mut self, msg: &[u8]) -> Result<ScramOutcome, ScramError> {
        // Whatever happens, the exchange is over: a client gets one proof per exchange.
        let State::FirstSent(pending) = std::mem::replace(&mut self.state, State::Done) else {
            return Err(ScramError::OutOfOrder);
        };
        let last = parse_client_final(utf8(msg)?)?;
        if last.channel_binding != pending.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBindingMismatch);
        }
        // librdkafka before 2.6.1 (Debian's and Ubuntu's packages among them) sends its own nonce once
        // more in front of the combined one (librdkafka#4895); Kafka 3.8.1 to 3.9 accept that, and so
        // does Nerve. The server's nonce is in it either way, which is what protects against replay.
        let librdkafka_form = last.nonce.strip_prefix(pending.client_nonce.as_str());
        if last.nonce != pending.nonce && librdkafka_form != Some(pending.nonce.as_str()) {
            return Err(ScramError::NonceMismatch);
        }
        let mech = self.mechanism;
        let auth_message = format!("{}{}", pending.auth_message_prefix, last.without_proof);
        let stored_key = &pending.credential.stored_key;
        let client_signature = crypto::hmac(mech, stored_key, auth_message.as_bytes());
        // Same work for a stand-in credential as for a real one, so timing does not tell them apart.
        let proof_ok = last.proof.len() == client_signature.len() && {
            let client_key = crypto::xor(&last.proof, &client_signature);
            crypto::ct_eq(&crypto::hash(mech, &client_key), stored_key)
        };
        if !pending.known_user {
            return Err(ScramError::UnknownUser);
        }
        if !proof_ok {
            return Err(ScramError::InvalidProof);
        }
        let server_key = &pending.credential.server_key;
        let signature = crypto::hmac(mech, server_key, auth_message.as_bytes());
        Ok(ScramOutcome {
            username: self.username.clone().unwrap_or_default(),
            server_final: format!("v={}", b64(&signature)).into_bytes(),
        })
    }
}

impl fmt::Debug for ScramServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Initial => "initial",
            State::FirstSent(_) => "server-first sent",
            State::Done => "done",
        };
        f.debug_struct("ScramServer")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("state", &state)
            .finish()
    }
}

/// A credential for a user that does not exist: the same salt for the same name on every attempt (a
/// changing salt would give the game away), keyed by a per-process secret so nobody can compute it ahead
/// and compare. Iterations are Kafka's default, which is what most real users have.
fn stand_in_credential(mechanism: ScramMechanism, username: &str) -> ScramCredential {
    static SECRET: OnceLock<[u8; 32]> = OnceLock::new();
    let secret = SECRET.get_or_init(|| {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        secret
    });
    let derive = |purpose: &str, mech| {
        crypto::hmac(
            mech,
            secret,
            format!("{purpose}\0{}\0{username}", mechanism.name()).as_bytes(),
        )
    };
    ScramCredential {
        // SHA-256 whatever the mechanism: 32 bytes, the length of the salts Nerve generates.
        salt: derive("salt", ScramMechanism::Sha256),
        stored_key: derive("stored key", mechanism),
        server_key: derive("server key", mechanism),
        iterations: ScramMechanism::MIN_ITERATIONS,
    }
}
