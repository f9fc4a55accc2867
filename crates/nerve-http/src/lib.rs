//! Nerve's operational HTTP surface, served by `nerve serve` beside the Kafka listener and the schema
//! registry (see `docs/observability.md`): `/metrics`, `/healthz`, `/readyz` and the JSON admin endpoints
//! under `/v1/`.
//!
//! The server starts before the broker exists, so that `/healthz` and `/readyz` answer while the logs are
//! recovered; [`Readiness`] is told as each part comes up, and the endpoints that need the broker answer
//! 503 until then.
//!
//! Both HTTP ports (this server and the schema registry) are served by [`serve_router`] on an
//! [`HttpListener`], plain or TLS, and may require the broker's users ([`auth`]).

mod admin;
pub mod auth;
pub mod listener;
mod metrics;
mod readiness;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

pub use auth::{AuthMode, Authenticator, HttpAuth, TokenStore};
pub use listener::{HttpListener, Peer};
pub use metrics::with_registry_metrics;
pub use readiness::Readiness;

/// What the HTTP server shares with `nerve serve`: readiness, the broker once built, and the metrics
/// gathered outside the broker (the schema registry's requests).
#[derive(Clone, Default)]
pub struct HttpState {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    readiness: Readiness,
    metrics: metrics::Metrics,
}

impl HttpState {
    pub fn new() -> Self {
        Self::default()
    }

    /// The handle `nerve serve` marks each part ready through.
    pub fn readiness(&self) -> &Readiness {
        &self.inner.readiness
    }

    fn metrics(&self) -> &metrics::Metrics {
        &self.inner.metrics
    }
}

/// Why the HTTP server could not run.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot bind the HTTP server to {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP server stopped: {0}")]
    Serve(std::io::Error),
}

/// Every route: `/metrics`, `/healthz`, `/readyz` and `/v1/...`; anything else is a JSON 404.
pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::scrape))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(admin::routes())
        .fallback(admin::not_found)
        .method_not_allowed_fallback(admin::method_not_allowed)
        .with_state(state)
}

/// Binds `addr`; separate from [`serve`] so that the caller learns the bound port (and a bind error)
/// before anything else starts.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, HttpError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind { addr, source })
}

/// Serves [`router`] on `listener` until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    let listener = HttpListener::plain(listener).map_err(HttpError::Serve)?;
    serve_router(listener, router(state), shutdown).await
}

/// [`router`] behind `auth` when given (see [`HttpAuth::tokens_only`]): `/healthz` and `/readyz` stay open for probes, and
/// `POST /v1/tokens` issues bearer tokens (see [`auth::token_routes`]).
pub fn secured_router(state: HttpState, auth: Option<HttpAuth>) -> Router {
    match auth {
        None => router(state),
        Some(auth) => {
            let auth = auth.with_open_paths(&["/healthz", "/readyz", "/v1/tokens"]);
            let app = router(state).merge(auth::token_routes(auth.clone()));
            if auth.protects_routes() {
                auth::require_authentication(app, auth)
            } else {
                app
            }
        }
    }
}

/// Serves `app` on `listener` (plain or TLS) until `shutdown` resolves, then finishes the requests in
/// flight. Handlers and middleware find the client's address as `ConnectInfo<Peer>`.
pub async fn serve_router(
    listener: HttpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    axum::serve(listener, app.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(HttpError::Serve)
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(axum::extract::State(state): axum::extract::State<HttpState>) -> Response {
    let missing = state.readiness().missing();
    if missing.is_empty() {
        return "ready".into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("not ready: waiting for {}", missing.join(", ")),
    )
        .into_response()
}
