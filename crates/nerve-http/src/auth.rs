//! Authentication for both HTTP ports (this server and the schema registry), the same users as the Kafka
//! listeners: HTTP basic auth checked against a user's stored SCRAM credential, and bearer tokens issued
//! by `POST /v1/tokens`.
//!
//! [`require_authentication`] wraps a router in a middleware that answers 401 (with
//! `WWW-Authenticate: Basic realm="nerve"`) unless the request carries valid credentials, and otherwise
//! hands the handlers the client's [`Principal`] and address as request extensions. Who may log in is
//! decided by an [`Authenticator`], which the `nerve` binary implements over the broker, so this crate
//! needs no storage of its own.
//!
//! Tokens are random 256-bit strings; only their SHA-256 is kept, in memory, in a [`TokenStore`] both ports
//! share: tokens die with the process.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use nerve_auth::Principal;
use parking_lot::Mutex;
use rand::RngCore as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::listener::Peer;

/// The challenge a 401 carries.
pub const WWW_AUTHENTICATE: &str = r#"Basic realm="nerve""#;
/// A token's lifetime when `POST /v1/tokens` names none.
pub const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);
/// The longest lifetime a token is issued with.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(86_400);

/// `authentication = "none" | "basic"` of `[http]` and `[registry]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Every request is served, with no principal.
    #[default]
    None,
    /// HTTP basic auth (a SCRAM user's name and password) or a bearer token from `POST /v1/tokens`.
    Basic,
}

/// Why a user's password was refused (an audit line's reason; the client only learns "Unauthorized").
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    #[error("unknown user")]
    UnknownUser,
    #[error("wrong password")]
    WrongPassword,
    /// The users are not loaded yet (the broker is starting).
    #[error("the broker is starting")]
    Starting,
}

/// Checks a user's password; the `nerve` binary implements it over the broker's stored SCRAM credentials.
pub trait Authenticator: Send + Sync {
    /// The principal `user` logs in as if `password` is theirs.
    fn login(&self, user: &str, password: &str) -> Result<Principal, LoginError>;
}

/// A token just issued: the secret (shown once) and when it stops working.
#[derive(Clone, Debug, Serialize)]
pub struct IssuedToken {
    pub token: String,
    pub principal: String,
    /// Milliseconds since the Unix epoch.
    pub expires_at: i64,
}

/// Bearer tokens by the SHA-256 of their secret, with the principal they stand for and their expiry.
#[derive(Default)]
pub struct TokenStore {
    tokens: Mutex<HashMap<[u8; 32], (Principal, i64)>>,
}

impl TokenStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// A new token for `principal`, valid for `ttl`.
    pub fn issue(&self, principal: Principal, ttl: Duration) -> IssuedToken {
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut secret);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        let now = now_ms();
        let expires_at = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, (_, expiry)| *expiry > now);
        tokens.insert(digest(&token), (principal.clone(), expires_at));
        IssuedToken {
            token,
            principal: principal.to_string(),
            expires_at,
        }
    }

    /// The principal `token` stands for, unless it is unknown or expired.
    pub fn verify(&self, token: &str) -> Option<Principal> {
        self.verify_at(token, now_ms())
    }

    fn verify_at(&self, token: &str, now: i64) -> Option<Principal> {
        let key = digest(token);
        let mut tokens = self.tokens.lock();
        match tokens.get(&key) {
            Some((principal, expiry)) if *expiry > now => Some(principal.clone()),
            Some(_) => {
                tokens.remove(&key);
                None
            }
            None => None,
        }
    }

    /// How many tokens are stored (expired ones included until they are next looked at).
    pub fn len(&self) -> usize {
        self.tokens.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What a 401 body looks like on a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorStyle {
    /// `{"error_code": 401, "message": "Unauthorized"}`, the HTTP server's errors.
    Http,
    /// Confluent's `{"error_code": 40101, "message": "Unauthorized"}` with its content type.
    Registry,
}

/// The authentication one port requires.
#[derive(Clone)]
pub struct HttpAuth {
    authenticator: Arc<dyn Authenticator>,
    tokens: Arc<TokenStore>,
    style: ErrorStyle,
    /// Paths served without credentials (probes).
    open_paths: &'static [&'static str],
    /// Whether routes need credentials, or only `POST /v1/tokens` is served with them (an open HTTP
    /// port issuing tokens for the registry's).
    protects_routes: bool,
}

impl HttpAuth {
    pub fn new(
        authenticator: Arc<dyn Authenticator>,
        tokens: Arc<TokenStore>,
        style: ErrorStyle,
    ) -> Self {
        HttpAuth {
            authenticator,
            tokens,
            style,
            open_paths: &[],
            protects_routes: true,
        }
    }

    /// Only issues tokens (`POST /v1/tokens`); every other route stays open.
    pub fn tokens_only(mut self) -> Self {
        self.protects_routes = false;
        self
    }

    /// Whether routes need credentials (see [`HttpAuth::tokens_only`]).
    pub fn protects_routes(&self) -> bool {
        self.protects_routes
    }

    /// Serves `paths` without credentials.
    pub fn with_open_paths(mut self, paths: &'static [&'static str]) -> Self {
        self.open_paths = paths;
        self
    }

    /// The principal `headers` authenticate, or why not: `(user, reason)` for the audit line.
    fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, (String, String)> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Err((String::new(), "no credentials".into()));
        };
        let value = value
            .to_str()
            .map_err(|_| (String::new(), "unreadable Authorization header".to_string()))?;
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, password) = decode_basic(rest.trim())
                .ok_or_else(|| (String::new(), "malformed basic credentials".to_string()))?;
            self.authenticator
                .login(&user, &password)
                .map_err(|e| (user, e.to_string()))
        } else if scheme.eq_ignore_ascii_case("bearer") {
            self.tokens
                .verify(rest.trim())
                .ok_or_else(|| (String::new(), "unknown or expired token".to_string()))
        } else {
            Err((String::new(), format!("unsupported scheme {scheme:?}")))
        }
    }

    fn unauthorized(&self) -> Response {
        let mut response = match self.style {
            ErrorStyle::Http => (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({"error_code": 401, "message": "Unauthorized"})),
            )
                .into_response(),
            ErrorStyle::Registry => {
                let body = r#"{"error_code":40101,"message":"Unauthorized"}"#;
                let mut response = (StatusCode::UNAUTHORIZED, body).into_response();
                response.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/vnd.schemaregistry.v1+json"),
                );
                response
            }
        };
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(WWW_AUTHENTICATE),
        );
        response
    }
}

/// `user:password` from the base64 of basic auth; the password may contain ':'.
fn decode_basic(encoded: &str) -> Option<(String, String)> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn peer_of(request: &Request) -> Option<SocketAddr> {
    request
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|ConnectInfo(Peer(addr))| *addr)
}

fn audit_failure(user: &str, peer: Option<SocketAddr>, reason: &str, style: ErrorStyle) {
    let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
    let port = match style {
        ErrorStyle::Http => "http",
        ErrorStyle::Registry => "registry",
    };
    tracing::warn!(target: "nerve::audit", user, peer, reason, port, "HTTP authentication failed");
}

/// Wraps every route of `router` (but `auth`'s open paths) in authentication: a request without valid
/// credentials is answered 401; an authenticated one reaches its handler with the [`Principal`] and the
/// client's `SocketAddr` (when known) as request extensions.
pub fn require_authentication(router: Router, auth: HttpAuth) -> Router {
    router.layer(axum::middleware::from_fn_with_state(auth, authenticate))
}

/// Hands every handler of `router` the client's `SocketAddr` as a request extension, as
/// [`require_authentication`] does, for a port without authentication (ACLs may name hosts).
pub fn with_peer(router: Router) -> Router {
    router.layer(axum::middleware::from_fn(add_peer))
}

async fn add_peer(mut request: Request, next: Next) -> Response {
    if let Some(peer) = peer_of(&request) {
        request.extensions_mut().insert(peer);
    }
    next.run(request).await
}

async fn authenticate(State(auth): State<HttpAuth>, mut request: Request, next: Next) -> Response {
    if auth.open_paths.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let peer = peer_of(&request);
    match auth.authenticate(request.headers()) {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            if let Some(peer) = peer {
                request.extensions_mut().insert(peer);
            }
            next.run(request).await
        }
        Err((user, reason)) => {
            audit_failure(&user, peer, &reason, auth.style);
            auth.unauthorized()
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    ttl_seconds: Option<u64>,
}

/// `POST /v1/tokens`: a bearer token for the user that authenticates the request with basic auth (a
/// token does not buy another). Body, optional: `{"ttl_seconds": N}`, default 3600, at most 86400.
pub fn token_routes(auth: HttpAuth) -> Router {
    Router::new()
        .route("/v1/tokens", post(issue_token))
        .with_state(auth)
}

async fn issue_token(State(auth): State<HttpAuth>, request: Request) -> Response {
    let peer = peer_of(&request);
    let (parts, body) = request.into_parts();
    let is_basic = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"));
    if !is_basic {
        audit_failure(
            "",
            peer,
            "a token is issued for basic auth only",
            auth.style,
        );
        return auth.unauthorized();
    }
    let principal = match auth.authenticate(&parts.headers) {
        Ok(principal) => principal,
        Err((user, reason)) => {
            audit_failure(&user, peer, &reason, auth.style);
            return auth.unauthorized();
        }
    };
    let request = match read_token_request(body).await {
        Ok(request) => request,
        Err(message) => return crate::admin::error(StatusCode::BAD_REQUEST, message),
    };
    let ttl = request
        .ttl_seconds
        .map_or(DEFAULT_TOKEN_TTL, Duration::from_secs);
    if ttl.is_zero() || ttl > MAX_TOKEN_TTL {
        return crate::admin::error(
            StatusCode::BAD_REQUEST,
            format!(
                "ttl_seconds must be between 1 and {}",
                MAX_TOKEN_TTL.as_secs()
            ),
        );
    }
    tracing::info!(target: "nerve::audit", principal = %principal, "HTTP bearer token issued");
    Json(auth.tokens.issue(principal, ttl)).into_response()
}

async fn read_token_request(body: Body) -> Result<TokenRequest, String> {
    let bytes = axum::body::to_bytes(body, 4096)
        .await
        .map_err(|_| "the request body is too large".to_string())?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(TokenRequest::default());
    }
    serde_json::from_slice(&bytes).map_err(|e| format!("invalid JSON body: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_stands_for_its_principal_until_it_expires() {
        let store = TokenStore::new();
        let issued = store.issue(Principal::user("alice"), Duration::from_secs(60));
        assert_eq!(issued.principal, "User:alice");
        assert_eq!(store.verify(&issued.token), Some(Principal::user("alice")));
        assert_eq!(store.verify("garbage"), None);
        assert_eq!(store.verify_at(&issued.token, issued.expires_at), None);
        assert!(store.is_empty(), "an expired token is dropped when seen");
    }

    #[test]
    fn only_the_hash_of_a_token_is_kept() {
        let store = TokenStore::new();
        let issued = store.issue(Principal::user("alice"), Duration::from_secs(60));
        let tokens = store.tokens.lock();
        assert!(tokens.keys().all(|k| k != issued.token.as_bytes()));
        assert!(tokens.contains_key(&digest(&issued.token)));
    }

    #[test]
    fn basic_credentials_keep_colons_in_the_password() {
        let encoded = base64::engine::general_purpose::STANDARD.encode("alice:a:b");
        assert_eq!(decode_basic(&encoded), Some(("alice".into(), "a:b".into())));
        assert_eq!(decode_basic("%%%"), None);
    }
}
