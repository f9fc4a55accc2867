//! One client connection: frames in, responses out, strictly in request order.
//!
//! Requests are decoded as they arrive and each runs as its own task, so a long-polling Fetch does not hold
//! up the Produce behind it; their answers are still written in the order the requests came (clients
//! pipeline several and match answers by order). At most `max_in_flight_per_connection` requests run at once;
//! past that the connection stops reading, which pushes back on the client through TCP.
//!
//! Running requests concurrently must not reorder their effects, which Kafka (processing one request per
//! connection at a time) never does: a producer pipelines several Produce requests to one partition and
//! relies on them being appended in order. So requests that change state (Produce, CreateTopics,
//! DeleteTopics, CreatePartitions, AlterConfigs, IncrementalAlterConfigs, DeleteRecords, InitProducerId, and
//! the group requests JoinGroup, SyncGroup, LeaveGroup, OffsetCommit, OffsetDelete, DeleteGroups) run
//! one after another in request order, and every request starts only
//! after the state-changing requests before it have finished (a Metadata after a CreateTopics sees the
//! topic). Read-only requests never wait for each other or hold anything up.
//!
//! A protocol error (a frame over the limit, a malformed header, an unknown API or version, a body that does
//! not decode) closes this connection after a log line; other connections never notice.
//!
//! Each request is handled inside a `request` span (API, version, correlation id, client id, peer), and is
//! counted in the broker's metrics once its answer is written (or, for a request refused as a whole, once
//! the refusal is known).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ApiKey;
use nerve_auth::Principal;
use nerve_tls::ServerTls;
use nerve_wire::frame::{parse_request, FrameDecoder, RequestFrame};
use nerve_wire::FrameError;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};
use tracing::Instrument;

use crate::api;
use crate::broker::Broker;
use crate::error::RequestError;
use crate::listener::Listener;
use crate::sasl::{Authenticator, Next};
use crate::session::Session;

/// Why a connection ended other than by the client closing it.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error(transparent)]
    Request(#[from] RequestError),
    #[error("request handler failed: {0}")]
    Handler(#[from] tokio::task::JoinError),
    #[error("TLS handshake failed: {0}")]
    Tls(std::io::Error),
    #[error("{0:?} request before SASL authentication (or after the session ended)")]
    Unauthenticated(ApiKey),
    #[error("no TLS handshake and authentication within {0:?}")]
    AuthenticationTimeout(std::time::Duration),
}

type Answer = Result<Option<Bytes>, RequestError>;

/// A request's handler task, with what its metrics need once it is answered.
struct InFlight {
    handler: JoinHandle<Answer>,
    accounting: Accounting,
}

#[derive(Clone, Copy)]
struct Accounting {
    api: i16,
    version: i16,
    read_at: Instant,
}

impl Accounting {
    fn done(self, broker: &Broker, refused: Option<ResponseError>) {
        broker
            .metrics
            .request_done(self.api, self.version, self.read_at.elapsed(), refused);
    }
}

impl Future for InFlight {
    type Output = (Accounting, Result<Answer, JoinError>);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let accounting = self.accounting;
        Pin::new(&mut self.handler)
            .poll(cx)
            .map(|answer| (accounting, answer))
    }
}

/// An open connection, counted in the `connections` gauge and against the connection limits until this is
/// dropped: however the connection's task ends, even when it is dropped unfinished at shutdown.
pub(crate) struct OpenConnection {
    gauge: Gauge,
    counts: Arc<ConnectionCounts>,
    ip: std::net::IpAddr,
}

/// Open connections in all and per client address, for `max_connections` and `max_connections_per_ip`.
#[derive(Default)]
pub(crate) struct ConnectionCounts {
    counts: parking_lot::Mutex<(usize, std::collections::HashMap<std::net::IpAddr, usize>)>,
}

impl OpenConnection {
    /// Counts a new connection from `ip`, or refuses it (`None`) when a limit is reached.
    pub(crate) fn admit(broker: &Broker, ip: std::net::IpAddr) -> Option<Self> {
        {
            let mut counts = broker.connection_counts.counts.lock();
            let (total, per_ip) = &mut *counts;
            let from_ip = per_ip.entry(ip).or_insert(0);
            if *total >= broker.config.max_connections
                || *from_ip >= broker.config.max_connections_per_ip
            {
                if *from_ip == 0 {
                    per_ip.remove(&ip);
                }
                broker.metrics.connections_refused.inc();
                return None;
            }
            *from_ip += 1;
            *total += 1;
        }
        broker.metrics.connections_accepted.inc();
        broker.metrics.connections.inc();
        Some(OpenConnection {
            gauge: broker.metrics.connections.clone(),
            counts: broker.connection_counts.clone(),
            ip,
        })
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.gauge.dec();
        let mut counts = self.counts.counts.lock();
        let (total, per_ip) = &mut *counts;
        *total -= 1;
        if let Some(n) = per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// Serves one connection until the client closes it, it breaks the protocol, or the broker shuts down
/// (then the requests already read are answered first). On a TLS listener the TLS handshake comes first; a
/// client certificate names the principal (`User:` and its subject).
pub(crate) async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    listener: Arc<Listener>,
    tls: Option<Arc<ServerTls>>,
    _open: OpenConnection,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    let timeout = broker.authentication_timeout();
    let deadline = tokio::time::Instant::now() + timeout;
    let result = match tls {
        None => {
            let session = Session::new(peer, listener, Principal::anonymous());
            let (reader, writer) = stream.into_split();
            run(&broker, reader, writer, Arc::new(session), deadline).await
        }
        Some(tls) => match tokio::time::timeout_at(deadline, tls.acceptor().accept(stream)).await {
            Err(_) => Err(ConnectionError::AuthenticationTimeout(timeout)),
            Ok(Err(e)) => Err(ConnectionError::Tls(e)),
            Ok(Ok(stream)) => {
                let principal = match nerve_tls::peer_principal(stream.get_ref().1) {
                    Some(Ok(subject)) => Principal::user(subject),
                    Some(Err(e)) => {
                        tracing::warn!(%peer, error = %e, "client certificate subject unreadable; principal is ANONYMOUS");
                        Principal::anonymous()
                    }
                    None => Principal::anonymous(),
                };
                let session = Session::new(peer, listener, principal);
                let (reader, writer) = tokio::io::split(stream);
                run(&broker, reader, writer, Arc::new(session), deadline).await
            }
        },
    };
    match result {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(ConnectionError::Io(e)) => tracing::debug!(%peer, error = %e, "connection lost"),
        // Already logged in the request's span, with the request's details.
        Err(ConnectionError::Request(e)) => {
            tracing::debug!(%peer, error = %e, "closing connection")
        }
        Err(e @ (ConnectionError::Tls(_) | ConnectionError::AuthenticationTimeout(_))) => {
            tracing::info!(target: "nerve::audit", %peer, error = %e, "connection refused");
        }
        Err(e @ ConnectionError::Unauthenticated(_)) => {
            tracing::warn!(target: "nerve::audit", %peer, error = %e, "closing connection");
        }
        Err(e) => tracing::warn!(%peer, error = %e, "closing connection"),
    }
}

async fn run<R, W>(
    broker: &Arc<Broker>,
    mut reader: R,
    mut writer: W,
    session: Arc<Session>,
    auth_deadline: tokio::time::Instant,
) -> Result<(), ConnectionError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let decoder = FrameDecoder::new(broker.config.socket_request_max_bytes);
    let max_in_flight = broker.config.max_in_flight_per_connection;
    let needs_sasl = session.listener.protocol.uses_sasl();
    let idle_timeout = std::time::Duration::from_millis(broker.config.connections_max_idle_ms);
    let mut authenticator = Authenticator::new();
    let mut buf = BytesMut::new();
    let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    // A SaslHandshake or SaslAuthenticate waits here until the requests before it are answered; it then
    // runs in this task, so no request ever runs under a principal that is half-changed.
    let mut pending_sasl: Option<Bytes> = None;
    let mut order = WriteOrder::default();
    let mut reading = true;
    let mut last_request = tokio::time::Instant::now();
    loop {
        while reading && pending_sasl.is_none() && in_flight.len() < max_in_flight {
            let Some(frame) = decoder.decode(&mut buf)? else {
                break;
            };
            last_request = tokio::time::Instant::now();
            if authenticator.expects_raw_token() {
                pending_sasl = Some(frame);
                break;
            }
            match peek_api(&frame) {
                Some(ApiKey::SaslHandshake | ApiKey::SaslAuthenticate) => {
                    pending_sasl = Some(frame)
                }
                Some(api)
                    if needs_sasl
                        && api != ApiKey::ApiVersions
                        && !authenticator.is_authenticated(Instant::now()) =>
                {
                    return Err(ConnectionError::Unauthenticated(api));
                }
                _ => in_flight.push_back(start(broker, &mut order, frame, &session)?),
            }
        }
        if in_flight.is_empty() {
            if let Some(frame) = pending_sasl.take() {
                let (response, next) = if authenticator.expects_raw_token() {
                    authenticator.raw_token(broker, &session, &frame)
                } else {
                    authenticate(broker, &mut authenticator, &session, frame).await?
                };
                match next {
                    Next::Continue => writer.write_all(&response).await?,
                    Next::CloseAfter(delay) => {
                        tokio::time::sleep(delay).await;
                        writer.write_all(&response).await?;
                        writer.shutdown().await?;
                        return Ok(());
                    }
                    Next::Close => {
                        writer.write_all(&response).await?;
                        writer.shutdown().await?;
                        return Ok(());
                    }
                }
                continue;
            }
        }
        if !reading && in_flight.is_empty() {
            writer.shutdown().await?;
            return Ok(());
        }
        let may_read = reading && pending_sasl.is_none() && in_flight.len() < max_in_flight;
        let unauthenticated = needs_sasl && !authenticator.is_authenticated(Instant::now());
        tokio::select! {
            biased;
            Some((accounting, answer)) = in_flight.next(), if !in_flight.is_empty() => {
                match answer {
                    Ok(Ok(Some(response))) => {
                        writer.write_all(&response).await?;
                        accounting.done(broker, None);
                    }
                    Ok(Ok(None)) => accounting.done(broker, None),
                    Ok(Err(e)) => {
                        accounting.done(broker, Some(e.error_code()));
                        return Err(e.into());
                    }
                    Err(e) => {
                        accounting.done(broker, Some(ResponseError::UnknownServerError));
                        return Err(e.into());
                    }
                }
            }
            read = read_some(&mut reader, &mut buf, &decoder), if may_read => {
                if read? == 0 {
                    if let Some(frame) = decoder.decode_eof(&mut buf)? {
                        if !unauthenticated {
                            in_flight.push_back(start(broker, &mut order, frame, &session)?);
                        }
                    }
                    reading = false;
                }
            }
            () = broker.shutting_down(), if reading => reading = false,
            () = tokio::time::sleep_until(auth_deadline), if unauthenticated => {
                return Err(ConnectionError::AuthenticationTimeout(broker.authentication_timeout()));
            }
            () = tokio::time::sleep_until(last_request + idle_timeout), if in_flight.is_empty() && reading => {
                tracing::debug!(peer = %session.peer, "closing idle connection");
                writer.shutdown().await?;
                return Ok(());
            }
        }
    }
}

/// The API key of a frame, if it names a known one (the full parse comes later).
fn peek_api(frame: &[u8]) -> Option<ApiKey> {
    let key = i16::from_be_bytes([*frame.first()?, *frame.get(1)?]);
    ApiKey::try_from(key).ok()
}

/// Runs one SASL request in the connection's task, counted and traced like any other request.
async fn authenticate(
    broker: &Broker,
    authenticator: &mut Authenticator,
    session: &Session,
    frame: Bytes,
) -> Result<(Bytes, Next), ConnectionError> {
    let read_at = Instant::now();
    let request = parse_request(frame)?;
    let accounting = Accounting {
        api: request.api_key as i16,
        version: request.api_version(),
        read_at,
    };
    let answer = request_span(&request, session)
        .in_scope(|| authenticator.handle(broker, session, &request));
    match answer {
        Ok(answer) => {
            accounting.done(broker, None);
            Ok(answer)
        }
        Err(e) => {
            accounting.done(broker, Some(e.error_code()));
            Err(e.into())
        }
    }
}

/// The last state-changing request of a connection: it reports `true` once finished (or drops its sender,
/// which wakes waiters as well, if its task failed).
#[derive(Default)]
struct WriteOrder {
    last_write: Option<watch::Receiver<bool>>,
}

/// Requests whose effects must happen in request order.
fn changes_state(api: ApiKey) -> bool {
    matches!(
        api,
        ApiKey::Produce
            | ApiKey::CreateTopics
            | ApiKey::DeleteTopics
            | ApiKey::CreatePartitions
            | ApiKey::AlterConfigs
            | ApiKey::IncrementalAlterConfigs
            | ApiKey::DeleteRecords
            | ApiKey::InitProducerId
            | ApiKey::JoinGroup
            | ApiKey::SyncGroup
            | ApiKey::LeaveGroup
            | ApiKey::OffsetCommit
            | ApiKey::OffsetDelete
            | ApiKey::DeleteGroups
            | ApiKey::CreateAcls
            | ApiKey::DeleteAcls
            | ApiKey::AlterUserScramCredentials
    )
}

/// Parses the header and starts the request's handler, after the state-changing requests before it.
fn start(
    broker: &Arc<Broker>,
    order: &mut WriteOrder,
    frame: Bytes,
    session: &Arc<Session>,
) -> Result<InFlight, ConnectionError> {
    let read_at = Instant::now();
    // Read before parsing so that a request refused for its header is still counted under its API key.
    let raw_key_and_version = (frame.len() >= 4).then(|| {
        (
            i16::from_be_bytes([frame[0], frame[1]]),
            i16::from_be_bytes([frame[2], frame[3]]),
        )
    });
    let request = match parse_request(frame) {
        Ok(request) => request,
        Err(e) => {
            if let Some((api, version)) = raw_key_and_version {
                let refused = match e {
                    FrameError::UnknownApiKey { .. } => ResponseError::UnsupportedVersion,
                    _ => ResponseError::InvalidRequest,
                };
                let accounting = Accounting {
                    api,
                    version,
                    read_at,
                };
                accounting.done(broker, Some(refused));
            }
            return Err(e.into());
        }
    };
    let accounting = Accounting {
        api: request.api_key as i16,
        version: request.api_version(),
        read_at,
    };
    let span = request_span(&request, session);
    let after = order.last_write.clone();
    let done = if changes_state(request.api_key) {
        let (done, finished) = watch::channel(false);
        order.last_write = Some(finished);
        Some(done)
    } else {
        None
    };
    let broker = broker.clone();
    let session = session.clone();
    let handler = tokio::spawn(
        async move {
            tracing::trace!("request");
            if let Some(mut after) = after {
                // An error means the earlier request's task is gone: it is finished either way.
                let _ = after.wait_for(|finished| *finished).await;
            }
            let answer = api::handle(&broker, request, &session).await;
            if let Some(done) = done {
                let _ = done.send(true);
            }
            if let Err(e) = &answer {
                tracing::warn!(error = %e, "request refused, closing the connection");
            }
            answer
        }
        .instrument(span),
    );
    Ok(InFlight {
        handler,
        accounting,
    })
}

/// The span a request is handled in. At info level so that what a handler logs carries the request's
/// client and correlation id; the fields are few and cheap to record.
fn request_span(request: &RequestFrame, session: &Session) -> tracing::Span {
    tracing::info_span!(
        "request",
        api = ?request.api_key,
        api_version = request.api_version(),
        correlation_id = request.correlation_id(),
        client_id = request.header.client_id.as_ref().map(|id| id.as_str()),
        peer = %session.peer,
    )
}

/// Reads what the socket has, growing the buffer by what the current frame still needs (bounded), never by
/// the size a frame claims.
async fn read_some<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    decoder: &FrameDecoder,
) -> std::io::Result<usize> {
    buf.reserve(decoder.read_hint(buf));
    reader.read_buf(buf).await
}
