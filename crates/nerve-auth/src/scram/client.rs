//! The client's side of one SCRAM exchange, for Nerve's CLI and tests.

use std::fmt;

use super::message::{escape_username, parse_server_final, parse_server_first, utf8, ServerFinal};
use super::{b64, crypto, random_nonce, ScramError, ScramMechanism};

/// `n,,`: no channel binding, no authzid. Its base64 is the familiar `c=biws`.
const GS2_HEADER: &str = "n,,";

/// One client-side exchange: [`client_first`](Self::client_first),
/// [`handle_server_first`](Self::handle_server_first), [`handle_server_final`](Self::handle_server_final).
pub struct ScramClient {
    mechanism: ScramMechanism,
    username: String,
    password: Vec<u8>,
    nonce: String,
    pub(super) state: State,
}

pub(super) enum State {
    Initial,
    FirstSent { bare: String },
    FinalSent { server_signature: Vec<u8> },
    Done,
}

impl ScramClient {
    pub fn new(
        mechanism: ScramMechanism,
        username: impl Into<String>,
        password: impl AsRef<[u8]>,
    ) -> Self {
        Self::with_nonce(mechanism, username, password, random_nonce())
    }

    /// With a fixed client nonce, for the RFC's test vectors.
    pub(crate) fn with_nonce(
        mechanism: ScramMechanism,
        username: impl Into<String>,
        password: impl AsRef<[u8]>,
        nonce: String,
    ) -> Self {
        Self {
            mechanism,
            username: username.into(),
            password: password.as_ref().to_vec(),
            nonce,
            state: State::Initial,
        }
    }

    /// The first message, `n,,n=<user>,r=<nonce>`. Calling it again starts the exchange over.
    pub fn client_first(&mut self) -> Vec<u8> {
        let bare = format!("n={},r={}", escape_username(&self.username), self.nonce);
        let message = format!("{GS2_HEADER}{bare}");
        self.state = State::FirstSent { bare };
        message.into_bytes()
    }

    /// Checks server-first and returns client-final with the proof.
    pub fn handle_server_first(&mut self, msg: &[u8]) -> Result<Vec<u8>, ScramError> {
        let State::FirstSent { bare } = std::mem::replace(&mut self.state, State::Done) else {
            return Err(ScramError::OutOfOrder);
        };
        let text = utf8(msg)?;
        let first = parse_server_first(text)?;
        // The server must extend our nonce, or this reply belongs to another exchange.
        if first.nonce.len() <= self.nonce.len() || !first.nonce.starts_with(&self.nonce) {
            return Err(ScramError::NonceMismatch);
        }
        // A low count would let a rogue server collect cheaply crackable hashes of the password.
        if first.iterations < ScramMechanism::MIN_ITERATIONS {
            return Err(ScramError::IterationsOutOfRange(first.iterations));
        }
        let mech = self.mechanism;
        let salted = crypto::hi(mech, &self.password, &first.salt, first.iterations);
        let client_key = crypto::hmac(mech, &salted, crypto::CLIENT_KEY);
        let stored_key = crypto::hash(mech, &client_key);
        let without_proof = format!("c={},r={}", b64(GS2_HEADER.as_bytes()), first.nonce);
        let auth_message = format!("{bare},{text},{without_proof}");
        let client_signature = crypto::hmac(mech, &stored_key, auth_message.as_bytes());
        let proof = crypto::xor(&client_key, &client_signature);
        let server_key = crypto::hmac(mech, &salted, crypto::SERVER_KEY);
        let server_signature = crypto::hmac(mech, &server_key, auth_message.as_bytes());
        self.state = State::FinalSent { server_signature };
        Ok(format!("{without_proof},p={}", b64(&proof)).into_bytes())
    }

    /// Checks the server's signature, which proves the server knew the credential too.
    pub fn handle_server_final(&mut self, msg: &[u8]) -> Result<(), ScramError> {
        let State::FinalSent { server_signature } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::OutOfOrder);
        };
        match parse_server_final(utf8(msg)?)? {
            ServerFinal::Error(error) => Err(ScramError::Server(error)),
            ServerFinal::Verifier(v) if crypto::ct_eq(&v, &server_signature) => Ok(()),
            ServerFinal::Verifier(_) => Err(ScramError::InvalidServerSignature),
        }
    }
}

/// The password stays out of logs.
impl fmt::Debug for ScramClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramClient")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}
