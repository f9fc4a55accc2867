//! The listener: accepts connections until shutdown, then lets them finish and closes the log store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use nerve_tls::ServerTls;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::connection;
use crate::listener::Listener;

/// How long shutdown waits for connections to answer what they already read. A client that stops reading
/// its socket would otherwise hold shutdown forever; past this its connection is dropped.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("closing the log store failed: {0}")]
    Close(#[from] nerve_storage::StorageError),
    #[error("listener {0} uses TLS, but no TLS certificate and key are configured")]
    NoTls(String),
}

type Accepted = (TcpStream, SocketAddr, Arc<Listener>, Option<Arc<ServerTls>>);

/// Accepts connections on one listener and hands them to the server loop.
async fn accept_loop(
    bound: TcpListener,
    listener: Arc<Listener>,
    tls: Option<Arc<ServerTls>>,
    accepted: mpsc::Sender<Accepted>,
) {
    loop {
        match bound.accept().await {
            Ok((stream, peer)) => {
                let item = (stream, peer, listener.clone(), tls.clone());
                if accepted.send(item).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Usually out of file descriptors; pausing lets connections close before we retry.
                tracing::warn!(listener = %listener.name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// The bound Kafka listeners.
pub struct Server {
    listeners: Vec<(Arc<Listener>, TcpListener)>,
    broker: Arc<Broker>,
    tls: Option<Arc<ServerTls>>,
}

impl Server {
    /// Binds the broker's listeners, none of which may need TLS.
    pub async fn bind(broker: Arc<Broker>) -> Result<Server, ServerError> {
        Server::bind_with_tls(broker, None).await
    }

    /// Binds the broker's listeners; SSL and SASL_SSL ones use `tls` (and need it).
    pub async fn bind_with_tls(
        broker: Arc<Broker>,
        tls: Option<Arc<ServerTls>>,
    ) -> Result<Server, ServerError> {
        let mut listeners = Vec::new();
        for listener in broker.listeners() {
            if listener.protocol.uses_tls() && tls.is_none() {
                return Err(ServerError::NoTls(listener.name.clone()));
            }
            let addr = listener.listen;
            let bound = TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::Bind { addr, source })?;
            listeners.push((listener.clone(), bound));
        }
        Ok(Server {
            listeners,
            broker,
            tls,
        })
    }

    /// The address the first listener actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        match self.listeners.first() {
            Some((_, l)) => l.local_addr(),
            None => Err(std::io::Error::other("no listener")),
        }
    }

    /// Each listener's name and the address it bound.
    pub fn local_addrs(&self) -> std::io::Result<Vec<(String, SocketAddr)>> {
        self.listeners
            .iter()
            .map(|(listener, bound)| Ok((listener.name.clone(), bound.local_addr()?)))
            .collect()
    }

    /// Serves until the broker's shutdown signal: then stops accepting, lets every connection answer the
    /// requests it already read, and closes the log store so everything appended is durable.
    pub async fn run(self) -> Result<(), ServerError> {
        let Server {
            listeners,
            broker,
            tls,
        } = self;
        let (accepted_tx, mut accepted) = mpsc::channel(64);
        let mut acceptors = JoinSet::new();
        for (listener, bound) in listeners {
            let tls = listener.protocol.uses_tls().then(|| tls.clone()).flatten();
            acceptors.spawn(accept_loop(bound, listener, tls, accepted_tx.clone()));
        }
        drop(accepted_tx);
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = broker.shutting_down() => break,
                Some((stream, peer, listener, tls)) = accepted.recv() => {
                    let Some(open) = connection::OpenConnection::admit(&broker, peer.ip()) else {
                        tracing::warn!(target: "nerve::audit", %peer, listener = %listener.name, "connection refused: connection limit reached");
                        drop(stream);
                        continue;
                    };
                    tracing::debug!(%peer, listener = %listener.name, "connection accepted");
                    connections.spawn(connection::serve(broker.clone(), stream, peer, listener, tls, open));
                }
                Some(finished) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(e) = finished {
                        tracing::error!(error = %e, "connection task failed");
                    }
                }
            }
        }
        acceptors.shutdown().await;
        tracing::info!(
            connections = connections.len(),
            "shutting down: finishing in-flight requests"
        );
        let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while let Some(finished) = connections.join_next().await {
                if let Err(e) = finished {
                    tracing::error!(error = %e, "connection task failed");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = connections.len(),
                "dropping connections that did not finish within the shutdown grace period"
            );
            connections.shutdown().await;
        }
        broker.log.close().await?;
        tracing::info!("log store closed");
        Ok(())
    }
}
