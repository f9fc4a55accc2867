//! The listener: accepts connections until shutdown, then lets them finish and closes the log store.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinSet;

use crate::broker::Broker;
use crate::connection;

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
}

/// A bound Kafka listener.
pub struct Server {
    listener: TcpListener,
    broker: Arc<Broker>,
}

impl Server {
    /// Binds the broker's `listen` address.
    pub async fn bind(broker: Arc<Broker>) -> Result<Server, ServerError> {
        let addr = broker.config.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Server { listener, broker })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the broker's shutdown signal: then stops accepting, lets every connection answer the
    /// requests it already read, and closes the log store so everything appended is durable.
    pub async fn run(self) -> Result<(), ServerError> {
        let Server { listener, broker } = self;
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                () = broker.shutting_down() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        tracing::debug!(%peer, "connection accepted");
                        let open = connection::OpenConnection::new(&broker);
                        connections.spawn(connection::serve(broker.clone(), stream, peer, open));
                    }
                    Err(e) => {
                        // Usually out of file descriptors; pausing lets connections close before we retry.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(finished) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(e) = finished {
                        tracing::error!(error = %e, "connection task failed");
                    }
                }
            }
        }
        drop(listener);
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
