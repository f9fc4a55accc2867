//! The transactional outbox: events written to a PostgreSQL table in the same transaction as the business
//! data they announce, and relayed to Kafka from there, so that a service never loses an event it
//! committed, nor publishes one whose transaction rolled back.
//!
//! - [`Outbox::enqueue`] writes the event (topic, key, encoded payload, envelope headers) as a row of the
//!   caller's transaction. The row's id is the event id (UUID v7), which is also the record's
//!   `nerve-event-id` header.
//! - [`OutboxRelay`] reads unsent rows in id order, publishes them with the idempotent producer, waits
//!   until the broker stored every one, and then marks them sent, in one database transaction.
//!
//! What it promises: every committed row reaches its topic **at least once**, and a key's rows reach it
//! in id order (the first copy of each; a copy sent again follows). A relay that dies after publishing a
//! batch and before marking it sent publishes the batch again, so consumers deduplicate by event id
//! ([`crate::dedup`]) for exactly one effect.
//!
//! Order: ids are time-ordered and given at `enqueue`, so a key's events keep their order as long as the
//! transactions that enqueue them for one key do not overlap (lock the aggregate's row before enqueueing,
//! as an update of it does anyway). Relays take a PostgreSQL advisory lock per batch: several relays can
//! run for availability, one works at a time, and batches never overtake each other. (`SKIP LOCKED` would
//! let a second relay publish a key's later rows while the first still holds its earlier ones.)
//!
//! The table (`nerve_outbox` unless configured):
//!
//! ```sql
//! CREATE TABLE nerve_outbox (
//!     id         uuid        PRIMARY KEY,  -- the event id
//!     topic      text        NOT NULL,
//!     key        bytea,
//!     payload    bytea       NOT NULL,
//!     headers    jsonb       NOT NULL,     -- [["nerve-event-id", "..."], ...]
//!     created_at timestamptz NOT NULL DEFAULT now(),
//!     sent_at    timestamptz               -- NULL until the broker stored it
//! );
//! CREATE INDEX nerve_outbox_unsent ON nerve_outbox (id) WHERE sent_at IS NULL;
//! ```

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use tokio_postgres::{Client, GenericClient, Transaction};
use tracing::Instrument;
use uuid::Uuid;

use crate::codec::{Codec, CodecError};
use crate::envelope::{Envelope, PublishContext};
use crate::metrics::SdkMetrics;
use crate::sql::{InvalidTableName, TableName};
use crate::{trace_context, Event};

const DEFAULT_TABLE: &str = "nerve_outbox";

/// The first key of the relays' advisory lock (the second is the table name's hash): "nerv".
const LOCK_CLASS: i32 = 0x6e65_7276;

/// Why the outbox could not do its part.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("postgres: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    #[error("cannot encode the event: {0}")]
    Encode(#[from] CodecError),
    #[error("the producer cannot be created: {0}")]
    Config(KafkaError),
    #[error("outbox row {id} was not delivered: {error}")]
    Delivery { id: Uuid, error: KafkaError },
    #[error("outbox row {id} has headers that are not [[name, value], ...]")]
    BadHeaders { id: Uuid },
    #[error(transparent)]
    TableName(#[from] InvalidTableName),
}

/// Writes events to the outbox table in the caller's transaction. Cheap to clone.
pub struct Outbox<C: Codec> {
    table: TableName,
    codec: Arc<C>,
}

impl<C: Codec> Clone for Outbox<C> {
    fn clone(&self) -> Self {
        Outbox {
            table: self.table.clone(),
            codec: Arc::clone(&self.codec),
        }
    }
}

impl<C: Codec> std::fmt::Debug for Outbox<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl<C: Codec> Outbox<C> {
    /// An outbox in table `nerve_outbox`, encoding payloads with `codec`.
    pub fn new(codec: C) -> Outbox<C> {
        Outbox {
            table: TableName::new(DEFAULT_TABLE).expect("a valid name"),
            codec: Arc::new(codec),
        }
    }

    /// The same in table `table` (`name` or `schema.name`).
    pub fn with_table(mut self, table: &str) -> Result<Outbox<C>, OutboxError> {
        self.table = TableName::new(table)?;
        Ok(self)
    }

    /// Creates the table and its index if they do not exist.
    pub async fn ensure_schema<G: GenericClient>(&self, client: &G) -> Result<(), OutboxError> {
        ensure_schema(client, &self.table).await
    }

    /// Writes `event` for `topic` as the start of a flow (its event id is its correlation id) in `tx`;
    /// returns its event id. It is published once `tx` commits, never if it rolls back.
    pub async fn enqueue<E: Event>(
        &self,
        tx: &Transaction<'_>,
        topic: &str,
        event: &E,
    ) -> Result<Uuid, OutboxError> {
        self.enqueue_with(tx, topic, event, &PublishContext::default())
            .await
    }

    /// Writes `event` with the correlation id, causation id and trace context of `context`.
    ///
    /// Runs in a `nerve_sdk.enqueue` span (kind producer, see [`crate::trace_context`]): with OpenTelemetry
    /// active the row's `traceparent` names that span, a child of the current span or of `context`'s
    /// traceparent when it has one; without, the row carries `context`'s traceparent, if any, unchanged.
    pub async fn enqueue_with<E: Event>(
        &self,
        tx: &Transaction<'_>,
        topic: &str,
        event: &E,
        context: &PublishContext,
    ) -> Result<Uuid, OutboxError> {
        let mut envelope = Envelope::new(E::NAME, E::VERSION, context);
        let span = tracing::info_span!(
            "nerve_sdk.enqueue",
            otel.kind = "producer",
            event_type = %E::NAME,
            event_id = %envelope.event_id,
            correlation_id = %envelope.correlation_id,
            topic,
        );
        trace_context::producer_attributes(&span, "create", topic);
        envelope.traceparent = trace_context::for_record(&span, envelope.traceparent.take());
        let written = self
            .write(tx, topic, event, &envelope)
            .instrument(span.clone())
            .await;
        if let Err(e) = &written {
            trace_context::failed(&span, e);
        }
        written
    }

    async fn write<E: Event>(
        &self,
        tx: &Transaction<'_>,
        topic: &str,
        event: &E,
        envelope: &Envelope,
    ) -> Result<Uuid, OutboxError> {
        let payload = self.codec.encode(topic, event).await?;
        let key = event.key().map(String::into_bytes);
        let headers = serde_json::Value::Array(
            envelope
                .header_pairs()
                .into_iter()
                .map(|(name, value)| serde_json::json!([name, value]))
                .collect(),
        );
        tx.execute(
            &format!(
                "INSERT INTO {} (id, topic, key, payload, headers) VALUES ($1, $2, $3, $4, $5)",
                self.table.qualified()
            ),
            &[&envelope.event_id, &topic, &key, &payload, &headers],
        )
        .await?;
        // The span carries the topic and the event's ids.
        tracing::debug!(table = %self.table, "enqueued in the outbox");
        Ok(envelope.event_id)
    }
}

async fn ensure_schema<G: GenericClient>(client: &G, table: &TableName) -> Result<(), OutboxError> {
    let (name, bare) = (table.qualified(), table.bare());
    client
        .batch_execute(&format!(
            "CREATE TABLE IF NOT EXISTS {name} (
                 id         uuid        PRIMARY KEY,
                 topic      text        NOT NULL,
                 key        bytea,
                 payload    bytea       NOT NULL,
                 headers    jsonb       NOT NULL,
                 created_at timestamptz NOT NULL DEFAULT now(),
                 sent_at    timestamptz
             );
             CREATE INDEX IF NOT EXISTS {bare}_unsent ON {name} (id) WHERE sent_at IS NULL;"
        ))
        .await?;
    Ok(())
}

/// Publishes the outbox's committed rows and marks them sent. Cheap to clone (one producer shared).
#[derive(Clone)]
pub struct OutboxRelay {
    table: TableName,
    producer: FutureProducer,
    batch_size: i64,
    poll_interval: Duration,
    metrics: Option<SdkMetrics>,
}

impl std::fmt::Debug for OutboxRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutboxRelay")
            .field("table", &self.table)
            .field("batch_size", &self.batch_size)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

/// One outbox row on its way to the broker.
#[derive(Debug, Clone)]
struct Row {
    id: Uuid,
    topic: String,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: Vec<(String, String)>,
}

impl OutboxRelay {
    /// A relay for table `nerve_outbox` publishing with the rdkafka settings of `config` (at least
    /// `bootstrap.servers`); the producer is idempotent with `acks=all` unless `config` says otherwise.
    /// Batches of 100 rows; an empty outbox is looked at again every 100 ms.
    pub fn new(config: &ClientConfig) -> Result<OutboxRelay, OutboxError> {
        let producer = crate::producer::durable_producer(config).map_err(OutboxError::Config)?;
        Ok(OutboxRelay {
            table: TableName::new(DEFAULT_TABLE).expect("a valid name"),
            producer,
            batch_size: 100,
            poll_interval: Duration::from_millis(100),
            metrics: None,
        })
    }

    /// Counts relayed rows and failed batches in `metrics` (`nerve_sdk_outbox_*`, by table), for batches
    /// relayed with [`OutboxRelay::relay_once`] or [`OutboxRelay::run`].
    pub fn with_metrics(mut self, metrics: SdkMetrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// The same for table `table` (`name` or `schema.name`).
    pub fn with_table(mut self, table: &str) -> Result<OutboxRelay, OutboxError> {
        self.table = TableName::new(table)?;
        Ok(self)
    }

    /// How many rows one batch (one database transaction) publishes at most; at least 1.
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = i64::try_from(rows.max(1)).unwrap_or(i64::MAX);
        self
    }

    /// How long [`OutboxRelay::run`] waits before looking at an empty outbox again.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Creates the table and its index if they do not exist.
    pub async fn ensure_schema<G: GenericClient>(&self, client: &G) -> Result<(), OutboxError> {
        ensure_schema(client, &self.table).await
    }

    /// Takes the next batch of unsent rows, in id order, locked in a transaction of `client`: `None` when
    /// there is none, or when another relay is working (it holds the outbox's advisory lock).
    ///
    /// Dropping the batch (or the process dying) before [`Published::mark_sent`] leaves its rows unsent,
    /// for the next batch to publish again.
    pub async fn claim<'c>(
        &self,
        client: &'c mut Client,
    ) -> Result<Option<Claimed<'c>>, OutboxError> {
        let tx = client.transaction().await?;
        let locked: bool = tx
            .query_one(
                "SELECT pg_try_advisory_xact_lock($1, hashtext($2))",
                &[&LOCK_CLASS, &self.table.qualified()],
            )
            .await?
            .get(0);
        if !locked {
            tx.rollback().await?;
            return Ok(None);
        }
        let rows = tx
            .query(
                &format!(
                    "SELECT id, topic, key, payload, headers FROM {} WHERE sent_at IS NULL
                     ORDER BY id LIMIT $1 FOR UPDATE",
                    self.table.qualified()
                ),
                &[&self.batch_size],
            )
            .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(None);
        }
        let rows = rows
            .iter()
            .map(|row| {
                let id: Uuid = row.try_get("id")?;
                let headers: serde_json::Value = row.try_get("headers")?;
                Ok(Row {
                    id,
                    topic: row.try_get("topic")?,
                    key: row.try_get("key")?,
                    payload: row.try_get("payload")?,
                    headers: header_pairs(&headers).ok_or(OutboxError::BadHeaders { id })?,
                })
            })
            .collect::<Result<Vec<Row>, OutboxError>>()?;
        Ok(Some(Claimed {
            tx,
            rows,
            table: self.table.clone(),
            producer: self.producer.clone(),
        }))
    }

    /// Publishes one batch and marks it sent; returns how many rows it had (0: nothing to do, or another
    /// relay is working).
    pub async fn relay_once(&self, client: &mut Client) -> Result<usize, OutboxError> {
        let relayed = match self.claim(client).await {
            Ok(Some(batch)) => match batch.publish().await {
                Ok(published) => published.mark_sent().await,
                Err(e) => Err(e),
            },
            Ok(None) => Ok(0),
            Err(e) => Err(e),
        };
        if let Some(metrics) = &self.metrics {
            let table = self.table.to_string();
            match &relayed {
                Ok(0) => {}
                Ok(rows) => metrics.outbox_relayed(&table, *rows),
                Err(_) => metrics.outbox_failed(&table),
            }
        }
        relayed
    }

    /// Relays batches until `shutdown` completes; looks again every poll interval when the outbox is
    /// empty. Errors are logged and retried after a backoff, except that a closed connection ends the
    /// run with its error (the caller reconnects). A batch that `shutdown` interrupts is rolled back, and
    /// goes out again (perhaps a second time) with the next relay.
    pub async fn run(
        &self,
        client: &mut Client,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), OutboxError> {
        tokio::pin!(shutdown);
        let mut backoff = self.poll_interval;
        loop {
            let wait = tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                relayed = self.relay_once(client) => match relayed {
                    Ok(n) => {
                        backoff = self.poll_interval;
                        if i64::try_from(n).unwrap_or(i64::MAX) >= self.batch_size {
                            continue; // more may be waiting
                        }
                        self.poll_interval
                    }
                    Err(e) if client.is_closed() => return Err(e),
                    Err(e) => {
                        tracing::warn!(table = %self.table, error = %e, ?backoff, "outbox batch failed, retrying");
                        backoff = (backoff * 2).clamp(Duration::from_millis(100), Duration::from_secs(10));
                        backoff
                    }
                },
            };
            tokio::select! {
                biased;
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Deletes the rows sent more than `retention` ago (by the database's clock); returns how many.
    pub async fn purge_sent<G: GenericClient>(
        &self,
        client: &G,
        retention: Duration,
    ) -> Result<u64, OutboxError> {
        let purged = client
            .execute(
                &format!(
                    "DELETE FROM {} WHERE sent_at < now() - make_interval(secs => $1)",
                    self.table.qualified()
                ),
                &[&retention.as_secs_f64()],
            )
            .await?;
        Ok(purged)
    }
}

/// `[["name", "value"], ...]` as pairs.
fn header_pairs(json: &serde_json::Value) -> Option<Vec<(String, String)>> {
    json.as_array()?
        .iter()
        .map(|pair| match pair.as_array()?.as_slice() {
            [name, value] => Some((name.as_str()?.to_string(), value.as_str()?.to_string())),
            _ => None,
        })
        .collect()
}

/// A batch of unsent rows, locked in its transaction, not yet published.
pub struct Claimed<'c> {
    tx: Transaction<'c>,
    rows: Vec<Row>,
    table: TableName,
    producer: FutureProducer,
}

impl std::fmt::Debug for Claimed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Claimed")
            .field("table", &self.table)
            .field("rows", &self.rows.len())
            .finish_non_exhaustive()
    }
}

impl<'c> Claimed<'c> {
    /// The event ids of the batch, in the order they are published.
    pub fn event_ids(&self) -> Vec<Uuid> {
        self.rows.iter().map(|r| r.id).collect()
    }

    /// Hands every row to the producer in id order, then waits until the broker stored each one. On any
    /// failure the batch is dropped: its rows stay unsent and go out again with a later batch (the ones
    /// stored meanwhile then twice).
    pub async fn publish(self) -> Result<Published<'c>, OutboxError> {
        let mut pending: Vec<(Uuid, DeliveryFuture)> = Vec::with_capacity(self.rows.len());
        for row in &self.rows {
            pending.push((row.id, self.send(row).await?));
        }
        for (id, delivery) in pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) => return Err(OutboxError::Delivery { id, error }),
                Err(_canceled) => {
                    return Err(OutboxError::Delivery {
                        id,
                        error: KafkaError::Canceled,
                    })
                }
            }
        }
        tracing::debug!(table = %self.table, rows = self.rows.len(), "outbox batch published");
        Ok(Published { claimed: self })
    }

    /// Enqueues `row` in the producer, waiting while its queue is full: rows enter the queue one after
    /// the other, so the idempotent producer keeps their order per partition.
    async fn send(&self, row: &Row) -> Result<DeliveryFuture, OutboxError> {
        let mut headers = OwnedHeaders::new_with_capacity(row.headers.len());
        for (name, value) in &row.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&row.topic)
            .payload(&row.payload)
            .headers(headers);
        if let Some(key) = &row.key {
            record = record.key(key);
        }
        loop {
            match self.producer.send_result(record) {
                Ok(delivery) => return Ok(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((error, _)) => return Err(OutboxError::Delivery { id: row.id, error }),
            }
        }
    }
}

/// A batch the broker has stored, not yet marked sent.
#[derive(Debug)]
pub struct Published<'c> {
    claimed: Claimed<'c>,
}

impl Published<'_> {
    pub fn event_ids(&self) -> Vec<Uuid> {
        self.claimed.event_ids()
    }

    /// Marks the batch's rows sent and commits; returns how many rows it had.
    pub async fn mark_sent(self) -> Result<usize, OutboxError> {
        let Claimed {
            tx, rows, table, ..
        } = self.claimed;
        let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
        tx.execute(
            &format!(
                "UPDATE {} SET sent_at = now() WHERE id = ANY($1)",
                table.qualified()
            ),
            &[&ids],
        )
        .await?;
        tx.commit().await?;
        Ok(ids.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_back_as_pairs_in_order() {
        let json = serde_json::json!([["nerve-event-id", "x"], ["b", "2"], ["b", "3"]]);
        assert_eq!(
            header_pairs(&json),
            Some(vec![
                ("nerve-event-id".to_string(), "x".to_string()),
                ("b".to_string(), "2".to_string()),
                ("b".to_string(), "3".to_string()),
            ])
        );
        for bad in [
            serde_json::json!({"a": "b"}),
            serde_json::json!([["a"]]),
            serde_json::json!([["a", 1]]),
        ] {
            assert_eq!(header_pairs(&bad), None, "{bad}");
        }
    }
}
