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
use nerve_wire::frame::{parse_request, FrameDecoder};
use nerve_wire::FrameError;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle};
use tracing::Instrument;

use crate::api;
use crate::broker::Broker;
use crate::error::RequestError;

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

/// An open connection, counted in the `connections` gauge until this is dropped: however the connection's
/// task ends, even when it is dropped unfinished at shutdown.
pub(crate) struct OpenConnection(Gauge);

impl OpenConnection {
    pub(crate) fn new(broker: &Broker) -> Self {
        broker.metrics.connections_accepted.inc();
        broker.metrics.connections.inc();
        OpenConnection(broker.metrics.connections.clone())
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Serves one connection until the client closes it, it breaks the protocol, or the broker shuts down
/// (then the requests already read are answered first).
pub(crate) async fn serve(
    broker: Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
    _open: OpenConnection,
) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    match run(&broker, stream, peer).await {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(ConnectionError::Io(e)) => tracing::debug!(%peer, error = %e, "connection lost"),
        // Already logged in the request's span, with the request's details.
        Err(ConnectionError::Request(e)) => {
            tracing::debug!(%peer, error = %e, "closing connection")
        }
        Err(e) => tracing::warn!(%peer, error = %e, "closing connection"),
    }
}

async fn run(
    broker: &Arc<Broker>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Result<(), ConnectionError> {
    let (mut reader, mut writer) = stream.into_split();
    let decoder = FrameDecoder::new(broker.config.socket_request_max_bytes);
    let max_in_flight = broker.config.max_in_flight_per_connection;
    let mut buf = BytesMut::new();
    let mut in_flight: FuturesOrdered<InFlight> = FuturesOrdered::new();
    let mut order = WriteOrder::default();
    let mut reading = true;
    loop {
        while reading && in_flight.len() < max_in_flight {
            let Some(frame) = decoder.decode(&mut buf)? else {
                break;
            };
            in_flight.push_back(start(broker, &mut order, frame, peer)?);
        }
        if !reading && in_flight.is_empty() {
            writer.shutdown().await?;
            return Ok(());
        }
        let may_read = reading && in_flight.len() < max_in_flight;
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
                        in_flight.push_back(start(broker, &mut order, frame, peer)?);
                    }
                    reading = false;
                }
            }
            () = broker.shutting_down(), if reading => reading = false,
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
    )
}

/// Parses the header and starts the request's handler, after the state-changing requests before it.
fn start(
    broker: &Arc<Broker>,
    order: &mut WriteOrder,
    frame: Bytes,
    peer: SocketAddr,
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
    // At info level so that what a handler logs carries the request's client and correlation id; the
    // fields are few and cheap to record.
    let span = tracing::info_span!(
        "request",
        api = ?request.api_key,
        api_version = request.api_version(),
        correlation_id = request.correlation_id(),
        client_id = request.header.client_id.as_ref().map(|id| id.as_str()),
        %peer,
    );
    let after = order.last_write.clone();
    let done = if changes_state(request.api_key) {
        let (done, finished) = watch::channel(false);
        order.last_write = Some(finished);
        Some(done)
    } else {
        None
    };
    let broker = broker.clone();
    let handler = tokio::spawn(
        async move {
            tracing::trace!("request");
            if let Some(mut after) = after {
                // An error means the earlier request's task is gone: it is finished either way.
                let _ = after.wait_for(|finished| *finished).await;
            }
            let answer = api::handle(&broker, request, peer).await;
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

/// Reads what the socket has, growing the buffer by what the current frame still needs (bounded), never by
/// the size a frame claims.
async fn read_some(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
    decoder: &FrameDecoder,
) -> std::io::Result<usize> {
    buf.reserve(decoder.read_hint(buf));
    reader.read_buf(buf).await
}
