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

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{FuturesOrdered, StreamExt};
use kafka_protocol::messages::ApiKey;
use nerve_wire::frame::{parse_request, FrameDecoder};
use nerve_wire::FrameError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;

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

type Answer = JoinHandle<Result<Option<Bytes>, RequestError>>;

/// Serves one connection until the client closes it, it breaks the protocol, or the broker shuts down
/// (then the requests already read are answered first).
pub(crate) async fn serve(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
    }
    match run(&broker, stream, peer).await {
        Ok(()) => tracing::debug!(%peer, "connection closed"),
        Err(ConnectionError::Io(e)) => tracing::debug!(%peer, error = %e, "connection lost"),
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
    let mut in_flight: FuturesOrdered<Answer> = FuturesOrdered::new();
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
            Some(answer) = in_flight.next(), if !in_flight.is_empty() => {
                if let Some(response) = answer?? {
                    writer.write_all(&response).await?;
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
) -> Result<Answer, ConnectionError> {
    let request = parse_request(frame)?;
    tracing::trace!(
        api = ?request.api_key,
        version = request.api_version(),
        correlation_id = request.correlation_id(),
        "request"
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
    Ok(tokio::spawn(async move {
        if let Some(mut after) = after {
            // An error means the earlier request's task is gone: it is finished either way.
            let _ = after.wait_for(|finished| *finished).await;
        }
        let answer = api::handle(&broker, request, peer).await;
        if let Some(done) = done {
            let _ = done.send(true);
        }
        answer
    }))
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
