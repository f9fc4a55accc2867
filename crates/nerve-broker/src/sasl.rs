//! SASL authentication of a connection: SaslHandshake picks a mechanism, SaslAuthenticate carries its
//! messages (KIP-152). PLAIN checks the password against the user's stored SCRAM credential, so Nerve keeps
//! one set of credentials and no plain passwords; SCRAM-SHA-256 and SCRAM-SHA-512 run RFC 5802.
//!
//! SaslHandshake v0 is answered too, for clients from before KIP-152: after it the mechanism's messages
//! travel as bare length-prefixed tokens instead of SaslAuthenticate requests (librdkafka before 2.x
//! checks that v0 is offered before it authenticates at all, even though it then uses v1).
//!
//! Re-authentication (KIP-368): an authenticated client may run the exchange again on its connection; it
//! must authenticate as the same principal with the same mechanism. With `connections_max_reauth_ms` set,
//! each successful exchange tells the client how long its session lasts, and the connection closes when a
//! request other than the SASL ones arrives after that.
//!
//! The exchange runs in the connection's own task, between requests (see `connection.rs`), so its state
//! needs no locking and no other request can run half-authenticated.

use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
    SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use nerve_auth::scram::{ScramCredential, ScramMechanism, ScramServer};
use nerve_auth::Principal;
use nerve_wire::frame::RequestFrame;

use crate::api::{decode, respond, supported_versions};
use crate::broker::Broker;
use crate::error::RequestError;
use crate::session::Session;

/// Every mechanism Nerve can offer; `sasl_enabled_mechanisms` chooses among them.
pub const MECHANISMS: &[&str] = &["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN", "OAUTHBEARER"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mechanism {
    Plain,
    Scram(ScramMechanism),
    OAuthBearer,
}

impl Mechanism {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "PLAIN" => return Some(Mechanism::Plain),
            "OAUTHBEARER" => return Some(Mechanism::OAuthBearer),
            _ => {}
        }
        ScramMechanism::from_name(name).map(Mechanism::Scram)
    }

    fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
            Mechanism::OAuthBearer => "OAUTHBEARER",
        }
    }
}

enum State {
    /// Waiting for SaslHandshake (first authentication or a re-authentication).
    Start,
    /// SaslHandshake chose a mechanism; its first message comes next.
    Handshaken(Mechanism),
    /// SCRAM's client-first was answered; client-final comes next.
    ScramFinal(Box<ScramServer>, ScramMechanism),
}

/// Who the connection authenticated as, and until when.
struct Authenticated {
    principal: Principal,
    mechanism: Mechanism,
    expires: Option<Instant>,
}

/// One connection's SASL state.
pub(crate) struct Authenticator {
    state: State,
    authenticated: Option<Authenticated>,
    /// SaslHandshake v0 chose the mechanism: its messages come as raw tokens.
    raw_tokens: bool,
}

/// What the connection does after an answer.
pub(crate) enum Next {
    /// Keep serving.
    Continue,
    /// The client failed to authenticate: answer after the failed-authentication delay, then close.
    CloseAfter(Duration),
    /// The client broke the exchange's rules: answer, then close.
    Close,
}

impl Authenticator {
    pub(crate) fn new() -> Self {
        Authenticator {
            state: State::Start,
            authenticated: None,
            raw_tokens: false,
        }
    }

    /// The connection may send requests other than the SASL ones: it authenticated and its session has
    /// not ended.
    pub(crate) fn is_authenticated(&self, now: Instant) -> bool {
        self.authenticated
            .as_ref()
            .is_some_and(|a| a.expires.is_none_or(|at| now < at))
    }

    /// Answers a SaslHandshake or SaslAuthenticate request.
    pub(crate) fn handle(
        &mut self,
        broker: &Broker,
        session: &Session,
        request: &RequestFrame,
    ) -> Result<(Bytes, Next), RequestError> {
        let api = request.api_key;
        let version = request.api_version();
        let (min, max) = supported_versions(api).ok_or(RequestError::UnsupportedApi(api))?;
        if version < min || version > max {
            return Err(RequestError::UnsupportedVersion {
                api,
                version,
                min,
                max,
            });
        }
        if !session.listener.protocol.uses_sasl() {
            // As Kafka answers on a listener without SASL: there is nothing to authenticate.
            let code = ResponseError::IllegalSaslState.code();
            let response = match api {
                ApiKey::SaslHandshake => {
                    let _: SaslHandshakeRequest = decode(request)?;
                    respond(
                        request,
                        &SaslHandshakeResponse::default().with_error_code(code),
                    )?
                }
                _ => {
                    let _: SaslAuthenticateRequest = decode(request)?;
                    respond(
                        request,
                        &SaslAuthenticateResponse::default().with_error_code(code),
                    )?
                }
            };
            return Ok((response, Next::Close));
        }
        match api {
            ApiKey::SaslHandshake => self.handshake(broker, request),
            ApiKey::SaslAuthenticate => self.authenticate(broker, session, request),
            other => Err(RequestError::UnsupportedApi(other)),
        }
    }

    fn handshake(
        &mut self,
        broker: &Broker,
        request: &RequestFrame,
    ) -> Result<(Bytes, Next), RequestError> {
        let body: SaslHandshakeRequest = decode(request)?;
        let enabled = &broker.config.sasl_enabled_mechanisms;
        let mechanisms = enabled
            .iter()
            .map(|m| StrBytes::from_string(m.clone()))
            .collect();
        let answer = |error: Option<ResponseError>| {
            respond(
                request,
                &SaslHandshakeResponse::default()
                    .with_error_code(error.map_or(0, |e| e.code()))
                    .with_mechanisms(mechanisms),
            )
        };
        if !matches!(self.state, State::Start) {
            return Ok((answer(Some(ResponseError::IllegalSaslState))?, Next::Close));
        }
        let requested = body.mechanism.as_str();
        let Some(mechanism) =
            Mechanism::from_name(requested).filter(|m| enabled.iter().any(|e| e == m.name()))
        else {
            tracing::warn!(target: "nerve::audit", mechanism = requested, "authentication refused: mechanism not enabled");
            return Ok((
                answer(Some(ResponseError::UnsupportedSaslMechanism))?,
                Next::Close,
            ));
        };
        self.state = State::Handshaken(mechanism);
        self.raw_tokens = request.api_version() == 0;
        Ok((answer(None)?, Next::Continue))
    }

    fn authenticate(
        &mut self,
        broker: &Broker,
        session: &Session,
        request: &RequestFrame,
    ) -> Result<(Bytes, Next), RequestError> {
        let body: SaslAuthenticateRequest = decode(request)?;
        if self.raw_tokens {
            // After SaslHandshake v0 the exchange goes on in raw tokens, not in SaslAuthenticate.
            let response = SaslAuthenticateResponse::default()
                .with_error_code(ResponseError::IllegalSaslState.code());
            return Ok((respond(request, &response)?, Next::Close));
        }
        let (response, next) = match self.step(broker, session, &body.auth_bytes) {
            Step::Illegal => (
                SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::IllegalSaslState.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "SaslAuthenticate before SaslHandshake",
                    ))),
                Next::Close,
            ),
            Step::Challenge(bytes) => (
                SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(bytes)),
                Next::Continue,
            ),
            Step::Done(bytes, lifetime_ms) => (
                SaslAuthenticateResponse::default()
                    .with_auth_bytes(Bytes::from(bytes))
                    .with_session_lifetime_ms(lifetime_ms),
                Next::Continue,
            ),
            // Kafka's wording; the reason stays in the broker's log, not in what a guesser is told.
            Step::Failed(delay) => (
                SaslAuthenticateResponse::default()
                    .with_error_code(ResponseError::SaslAuthenticationFailed.code())
                    .with_error_message(Some(StrBytes::from_static_str(
                        "Authentication failed: Invalid username or password",
                    ))),
                Next::CloseAfter(delay),
            ),
        };
        Ok((respond(request, &response)?, next))
    }

    /// After SaslHandshake v0 the client sends the mechanism's messages as bare length-prefixed tokens
    /// (Kafka before KIP-152), and gets the server's the same way.
    pub(crate) fn expects_raw_token(&self) -> bool {
        self.raw_tokens && !matches!(self.state, State::Start)
    }

    /// One raw token of a v0 exchange; the answer is a raw token too. A failure closes the connection
    /// without an answer, as Kafka does for these clients.
    pub(crate) fn raw_token(
        &mut self,
        broker: &Broker,
        session: &Session,
        token: &[u8],
    ) -> (Bytes, Next) {
        let framed = |bytes: Vec<u8>| {
            let mut out = Vec::with_capacity(bytes.len() + 4);
            out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(&bytes);
            Bytes::from(out)
        };
        match self.step(broker, session, token) {
            Step::Challenge(bytes) => (framed(bytes), Next::Continue),
            Step::Done(bytes, _) => {
                self.raw_tokens = false;
                (framed(bytes), Next::Continue)
            }
            Step::Failed(delay) => (Bytes::new(), Next::CloseAfter(delay)),
            Step::Illegal => (Bytes::new(), Next::Close),
        }
    }

    /// Feeds one client message to the mechanism chosen by the handshake.
    fn step(&mut self, broker: &Broker, session: &Session, message: &[u8]) -> Step {
        let state = std::mem::replace(&mut self.state, State::Start);
        let outcome = match state {
            State::Start => return Step::Illegal,
            State::Handshaken(Mechanism::Plain) => plain(broker, message),
            State::Handshaken(Mechanism::OAuthBearer) => oauthbearer(broker, message),
            State::Handshaken(Mechanism::Scram(mechanism)) => {
                let mut server = Box::new(ScramServer::new(mechanism));
                let lookup = |user: &str| {
                    broker
                        .meta
                        .scram_credential(user, mechanism.name())
                        .map(from_stored)
                };
                match server.handle_client_first(message, lookup) {
                    Ok(server_first) => {
                        self.state = State::ScramFinal(server, mechanism);
                        return Step::Challenge(server_first);
                    }
                    Err(e) => Err(Failure {
                        user: None,
                        reason: e.to_string(),
                    }),
                }
            }
            State::ScramFinal(mut server, mechanism) => {
                let user = server.username().map(str::to_string);
                match server.handle_client_final(message) {
                    Ok(outcome) => Ok((
                        Mechanism::Scram(mechanism),
                        Principal::user(outcome.username),
                        outcome.server_final,
                        None,
                    )),
                    Err(e) => Err(Failure {
                        user,
                        reason: e.to_string(),
                    }),
                }
            }
        };
        let (mechanism, principal, final_bytes, token_expiry) = match outcome {
            Ok(done) => done,
            Err(failure) => return self.fail(broker, session, failure),
        };
        if let Some(before) = &self.authenticated {
            if before.principal != principal || before.mechanism != mechanism {
                let failure = Failure {
                    user: Some(principal.name.clone()),
                    reason: format!(
                        "re-authentication must keep principal {} and mechanism {}",
                        before.principal,
                        before.mechanism.name()
                    ),
                };
                return self.fail(broker, session, failure);
            }
        }
        // KIP-368: with re-authentication on, a session lasts connections_max_reauth_ms, and no longer
        // than the token it was opened with.
        let mut lifetime_ms =
            i64::try_from(broker.config.connections_max_reauth_ms).unwrap_or(i64::MAX);
        if lifetime_ms > 0 {
            if let Some(expiry) = token_expiry {
                lifetime_ms = lifetime_ms.min((expiry - now_ms()).max(0));
            }
        }
        let expires = (lifetime_ms > 0)
            .then(|| Instant::now() + Duration::from_millis(lifetime_ms.unsigned_abs()));
        tracing::debug!(principal = %principal, mechanism = mechanism.name(), peer = %session.peer, "authenticated");
        session.set_principal(principal.clone());
        self.authenticated = Some(Authenticated {
            principal,
            mechanism,
            expires,
        });
        Step::Done(final_bytes, lifetime_ms)
    }

    /// Logs an audit line and counts the failure; the answer waits the failed-authentication delay.
    fn fail(&mut self, broker: &Broker, session: &Session, failure: Failure) -> Step {
        tracing::warn!(
            target: "nerve::audit",
            user = failure.user.as_deref().unwrap_or("-"),
            peer = %session.peer,
            listener = %session.listener.name,
            reason = %failure.reason,
            "authentication failed"
        );
        broker.metrics.authentication_failures.inc();
        Step::Failed(Duration::from_millis(
            broker.config.connection_failed_authentication_delay_ms,
        ))
    }
}

/// What one client message led to.
enum Step {
    /// A message out of order (no handshake before it).
    Illegal,
    /// The mechanism's next challenge.
    Challenge(Vec<u8>),
    /// Authenticated; the mechanism's last message (SCRAM's server-final, empty for PLAIN), and the
    /// session's lifetime in milliseconds (0: unlimited).
    Done(Vec<u8>, i64),
    /// Refused; answer after this delay, then close.
    Failed(Duration),
}

struct Failure {
    user: Option<String>,
    reason: String,
}

/// What a mechanism's last step yields: the mechanism, who authenticated, the last message to send, and
/// when the credential expires (ms since the epoch), for credentials that do.
type MechanismOutcome = (Mechanism, Principal, Vec<u8>, Option<i64>);

/// PLAIN: `authzid NUL user NUL password`, checked against the user's SCRAM credential (the strongest
/// mechanism stored first).
fn plain(broker: &Broker, message: &[u8]) -> Result<MechanismOutcome, Failure> {
    let credentials = nerve_auth::plain::parse_plain(message).map_err(|e| Failure {
        user: None,
        reason: e.to_string(),
    })?;
    let user = credentials.username.clone();
    match check_password(broker, &user, credentials.password.as_bytes()) {
        Ok(()) => Ok((Mechanism::Plain, Principal::user(user), Vec::new(), None)),
        Err(e) => Err(Failure {
            user: Some(user),
            reason: e.to_string(),
        }),
    }
}

/// Why a password was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong password")]
    WrongPassword,
}

/// Checks `password` against `user`'s stored SCRAM credential, SCRAM-SHA-512 first, then SCRAM-SHA-256:
/// what PLAIN and the HTTP ports' basic auth log in with.
pub(crate) fn check_password(
    broker: &Broker,
    user: &str,
    password: &[u8],
) -> Result<(), PasswordError> {
    let verified = [ScramMechanism::Sha512, ScramMechanism::Sha256]
        .into_iter()
        .find_map(|m| {
            broker
                .meta
                .scram_credential(user, m.name())
                .map(|c| from_stored(c).verify_password(m, password))
        });
    match verified {
        Some(true) => Ok(()),
        Some(false) => Err(PasswordError::WrongPassword),
        None => Err(PasswordError::UnknownUser),
    }
}

pub(crate) fn from_stored(stored: nerve_storage::StoredScramCredential) -> ScramCredential {
    ScramCredential {
        salt: stored.salt,
        stored_key: stored.stored_key,
        server_key: stored.server_key,
        iterations: stored.iterations,
    }
}

pub(crate) fn to_stored(credential: ScramCredential) -> nerve_storage::StoredScramCredential {
    nerve_storage::StoredScramCredential {
        salt: credential.salt,
        stored_key: credential.stored_key,
        server_key: credential.server_key,
        iterations: credential.iterations,
    }
}

/// OAUTHBEARER: a JWT signed by a key of `sasl_oauthbearer_jwks_file`, for the principal its `sub` (or the
/// configured claim) names; an authorization id, if given, must be that principal.
fn oauthbearer(broker: &Broker, message: &[u8]) -> Result<MechanismOutcome, Failure> {
    let failure = |user: Option<String>, reason: String| Failure { user, reason };
    let message = nerve_auth::oauthbearer::parse_client_message(message)
        .map_err(|e| failure(None, e.to_string()))?;
    let Some(validator) = &broker.oauthbearer else {
        return Err(failure(
            None,
            "no key set configured for OAUTHBEARER".into(),
        ));
    };
    let token = validator
        .validate(&message.token, now_ms() / 1000)
        .map_err(|e| failure(message.authzid.clone(), e.to_string()))?;
    if let Some(authzid) = message.authzid.filter(|a| *a != token.principal_name) {
        return Err(failure(
            Some(authzid.clone()),
            nerve_auth::oauthbearer::OAuthError::AuthorizationIdMismatch {
                authzid,
                principal: token.principal_name,
            }
            .to_string(),
        ));
    }
    Ok((
        Mechanism::OAuthBearer,
        Principal::user(token.principal_name),
        Vec::new(),
        Some(token.expires_at_ms),
    ))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
