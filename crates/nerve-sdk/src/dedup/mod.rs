//! Idempotent handling: remembering which events a consumer has handled, by event id (the
//! `nerve-event-id` header), so that a redelivered event has no second effect.
//!
//! The consumer runtime delivers at least once: a record handled but not yet committed when its consumer
//! dies (or its partition moves) is delivered again. Two ways to make that harmless:
//!
//! - **In the handler's own database transaction** ([`PgDedup`], feature `postgres`): the handler inserts
//!   the dedup row and makes its writes in one PostgreSQL transaction. Either both commit or neither does,
//!   so a redelivered event finds its row and the handler skips it: exactly one effect, whatever crashes.
//!   Two deliveries running at once (a rebalance) serialize on the row's primary key: the second waits for
//!   the first to commit, then sees the row.
//! - **In a store of its own** ([`DedupStore`], for effects outside a database; [`RedbDedup`], feature
//!   `redb`, keeps it in a local file): [`Idempotent`] wraps a handler, skips events the store has, and
//!   records an event after its handler succeeded. A second effect is then possible only when the process
//!   dies (or the store fails) between the handler's effect and the record.
//!
//! Records are kept for a retention window and then purged ([`DedupStore::purge`],
//! [`PgDedup::purge`]), which the service calls periodically. The window must be longer than any
//! redelivery can be late: the longest a record can stay uncommitted (consumer lag plus downtime), or the
//! topic's retention if the group can be rewound.

#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redb")]
mod redb;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use uuid::Uuid;

use crate::consumer::{EventContext, Handler};
use crate::retry::HandlerError;
use crate::Event;

#[cfg(feature = "postgres")]
pub use self::postgres::PgDedup;
#[cfg(feature = "redb")]
pub use self::redb::RedbDedup;

/// Why a dedup store could not answer.
#[derive(Debug, thiserror::Error)]
pub enum DedupError {
    #[cfg(feature = "postgres")]
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[cfg(feature = "redb")]
    #[error("redb: {0}")]
    Redb(#[from] ::redb::Error),
    #[cfg(feature = "postgres")]
    #[error(transparent)]
    TableName(#[from] crate::sql::InvalidTableName),
    #[error("the store's blocking task failed: {0}")]
    Blocking(String),
}

/// Remembers, per consumer, the event ids it has handled.
///
/// `consumer` names who handled the event: usually the consumer group, or `group/handler` when several
/// handlers of one group each need their own record of an event.
#[async_trait]
pub trait DedupStore: Send + Sync + 'static {
    /// Whether `consumer` has recorded `event_id`.
    async fn contains(&self, consumer: &str, event_id: Uuid) -> Result<bool, DedupError>;

    /// Records `event_id` as handled by `consumer`, now; `true` if it was not recorded before.
    async fn record(&self, consumer: &str, event_id: Uuid) -> Result<bool, DedupError>;

    /// Forgets the records made before `cutoff`; returns how many.
    async fn purge_before(&self, cutoff: SystemTime) -> Result<u64, DedupError>;

    /// Forgets the records older than `retention`; returns how many.
    async fn purge(&self, retention: Duration) -> Result<u64, DedupError> {
        let cutoff = SystemTime::now()
            .checked_sub(retention)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        self.purge_before(cutoff).await
    }
}

/// A handler that skips the events its store has recorded for `consumer` and records each event it
/// handled successfully. Failures are left to the runtime (retries, dead letters); a store that cannot be
/// read or written is a transient failure.
pub struct Idempotent<S, H> {
    store: Arc<S>,
    consumer: String,
    handler: H,
}

impl<S: DedupStore, H> Idempotent<S, H> {
    pub fn new(store: Arc<S>, consumer: impl Into<String>, handler: H) -> Idempotent<S, H> {
        Idempotent {
            store,
            consumer: consumer.into(),
            handler,
        }
    }
}

#[async_trait]
impl<E, S, H> Handler<E> for Idempotent<S, H>
where
    E: Event,
    S: DedupStore,
    H: Handler<E>,
{
    async fn handle(&self, ctx: &EventContext, event: E) -> Result<(), HandlerError> {
        let event_id = ctx.envelope.event_id;
        if self
            .store
            .contains(&self.consumer, event_id)
            .await
            .map_err(HandlerError::transient)?
        {
            tracing::debug!(%event_id, consumer = %self.consumer, "already handled: skipped");
            return Ok(());
        }
        self.handler.handle(ctx, event).await?;
        self.store
            .record(&self.consumer, event_id)
            .await
            .map_err(HandlerError::transient)?;
        Ok(())
    }

    fn name(&self) -> String {
        Handler::<E>::name(&self.handler)
    }
}
