//! The PostgreSQL dedup store: a row per handled event, written in the handler's own transaction.
//!
//! ```sql
//! CREATE TABLE nerve_dedup (
//!     consumer   text        NOT NULL,
//!     event_id   uuid        NOT NULL,
//!     handled_at timestamptz NOT NULL DEFAULT now(),
//!     PRIMARY KEY (consumer, event_id)
//! );
//! CREATE INDEX nerve_dedup_handled_at ON nerve_dedup (handled_at);
//! ```

use std::time::Duration;

use tokio_postgres::{GenericClient, Transaction};
use uuid::Uuid;

use super::DedupError;
use crate::sql::TableName;

/// Deduplication for handlers whose effects are writes to PostgreSQL: [`PgDedup::first_time`] inserts
/// the event's row in the handler's transaction, so the row and the writes commit together.
///
/// ```no_run
/// # use nerve_sdk::dedup::PgDedup;
/// # async fn handle(client: &mut tokio_postgres::Client, dedup: &PgDedup, ctx: &nerve_sdk::EventContext)
/// #     -> Result<(), Box<dyn std::error::Error>> {
/// let tx = client.transaction().await?;
/// if !dedup.first_time(&tx, ctx.envelope.event_id).await? {
///     return Ok(()); // handled before: the transaction rolls back, nothing changes
/// }
/// tx.execute("UPDATE stock SET reserved = reserved + 1 WHERE sku = $1", &[&"sku-1"]).await?;
/// tx.commit().await?; // the writes and the dedup row, or neither
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct PgDedup {
    table: TableName,
    consumer: String,
}

impl PgDedup {
    /// Dedup for `consumer` (usually the consumer group, or `group/handler`) in table `nerve_dedup`.
    pub fn new(consumer: impl Into<String>) -> PgDedup {
        PgDedup {
            table: TableName::new("nerve_dedup").expect("a valid name"),
            consumer: consumer.into(),
        }
    }

    /// The same in table `table` (`name` or `schema.name`).
    pub fn with_table(mut self, table: &str) -> Result<PgDedup, DedupError> {
        self.table = TableName::new(table)?;
        Ok(self)
    }

    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Creates the table and its index if they do not exist.
    pub async fn ensure_schema<C: GenericClient>(&self, client: &C) -> Result<(), DedupError> {
        let table = self.table.qualified();
        let bare = self.table.bare();
        client
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (
                     consumer   text        NOT NULL,
                     event_id   uuid        NOT NULL,
                     handled_at timestamptz NOT NULL DEFAULT now(),
                     PRIMARY KEY (consumer, event_id)
                 );
                 CREATE INDEX IF NOT EXISTS {bare}_handled_at ON {table} (handled_at);"
            ))
            .await?;
        Ok(())
    }

    /// Records `event_id` as handled in `tx`; `true` if this is its first time, `false` if a committed
    /// transaction recorded it before (then the caller skips the event and lets `tx` roll back).
    ///
    /// If another transaction recorded the event and has not finished yet, this waits for it: a
    /// concurrent delivery of the same event returns `false` once the first commits, or `true` if the
    /// first rolled back.
    pub async fn first_time(
        &self,
        tx: &Transaction<'_>,
        event_id: Uuid,
    ) -> Result<bool, DedupError> {
        let inserted = tx
            .execute(
                &format!(
                    "INSERT INTO {} (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    self.table.qualified()
                ),
                &[&self.consumer, &event_id],
            )
            .await?;
        Ok(inserted == 1)
    }

    /// Whether `event_id` is recorded (committed) for this consumer.
    pub async fn contains<C: GenericClient>(
        &self,
        client: &C,
        event_id: Uuid,
    ) -> Result<bool, DedupError> {
        let row = client
            .query_opt(
                &format!(
                    "SELECT 1 FROM {} WHERE consumer = $1 AND event_id = $2",
                    self.table.qualified()
                ),
                &[&self.consumer, &event_id],
            )
            .await?;
        Ok(row.is_some())
    }

    /// Forgets the events of every consumer in the table handled more than `retention` ago (by the
    /// database's clock); returns how many.
    pub async fn purge<C: GenericClient>(
        &self,
        client: &C,
        retention: Duration,
    ) -> Result<u64, DedupError> {
        let purged = client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE handled_at < now() - make_interval(secs => $1)",
                    self.table.qualified()
                ),
                &[&retention.as_secs_f64()],
            )
            .await?;
        Ok(purged)
    }
}
