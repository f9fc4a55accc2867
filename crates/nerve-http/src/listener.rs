//! [`HttpListener`]: what both HTTP ports (this server and the schema registry) accept connections with,
//! plain TCP or TLS.
//!
//! With TLS, `accept` must not wait on one client's handshake: a client that opens a connection and sends
//! nothing would stop every other client from being served. So a task of its own accepts TCP connections
//! and runs each handshake in a task of its own, with a deadline; finished handshakes reach `accept`
//! through a channel. A failed or timed-out handshake is logged at debug and dropped; it never ends the
//! server. The accepting task ends when the listener is dropped (the server stopped).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::{IncomingStream, Listener};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How long a client has to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes finished but not yet taken by the server.
const ACCEPTED_BACKLOG: usize = 64;

/// A connection's byte stream, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// A bound HTTP port, plain or TLS; give it to [`axum::serve`].
pub struct HttpListener {
    local_addr: SocketAddr,
    incoming: Incoming,
}

enum Incoming {
    Plain(TcpListener),
    Tls(mpsc::Receiver<(Box<dyn Stream>, SocketAddr)>),
}

impl HttpListener {
    /// Serves plain HTTP on `listener`.
    pub fn plain(listener: TcpListener) -> io::Result<Self> {
        Ok(HttpListener {
            local_addr: listener.local_addr()?,
            incoming: Incoming::Plain(listener),
        })
    }

    /// Serves HTTPS on `listener` with the configuration `tls` holds at each handshake (so a reload on
    /// SIGHUP takes effect for new connections). Must be called inside a Tokio runtime.
    pub fn tls(listener: TcpListener, tls: Arc<nerve_tls::ServerTls>) -> io::Result<Self> {
        let local_addr = listener.local_addr()?;
        let (sender, receiver) = mpsc::channel(ACCEPTED_BACKLOG);
        tokio::spawn(accept_tls(listener, tls, sender));
        Ok(HttpListener {
            local_addr,
            incoming: Incoming::Tls(receiver),
        })
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self.incoming, Incoming::Tls(_))
    }
}

async fn accept_tls(
    listener: TcpListener,
    tls: Arc<nerve_tls::ServerTls>,
    accepted: mpsc::Sender<(Box<dyn Stream>, SocketAddr)>,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = accepted.closed() => return,
            result = listener.accept() => match result {
                Ok(connection) => connection,
                Err(e) => {
                    tracing::debug!(error = %e, "HTTPS accept failed");
                    // Out of file descriptors and the like: do not spin.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = tls.acceptor();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let stream: Box<dyn Stream> = Box::new(stream);
                    let _ = accepted.send((stream, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "HTTPS handshake failed"),
                Err(_) => tracing::debug!(%peer, "HTTPS handshake timed out"),
            }
        });
    }
}

impl Listener for HttpListener {
    type Io = Box<dyn Stream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match &mut self.incoming {
            Incoming::Plain(listener) => loop {
                match TcpListener::accept(listener).await {
                    Ok((stream, peer)) => return (Box::new(stream), peer),
                    Err(e) => {
                        tracing::debug!(error = %e, "HTTP accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            },
            Incoming::Tls(receiver) => match receiver.recv().await {
                Some(connection) => connection,
                // The accepting task never ends while the receiver lives; wait for shutdown.
                None => std::future::pending().await,
            },
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// The client's address, for handlers and audit lines: serve with
/// `router.into_make_service_with_connect_info::<Peer>()`.
#[derive(Clone, Copy, Debug)]
pub struct Peer(pub SocketAddr);

impl axum::extract::connect_info::Connected<IncomingStream<'_, HttpListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, HttpListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}
