//! The transactional outbox against a real broker and PostgreSQL: what a committed transaction enqueued
//! reaches its topic at least once and in order per key, whatever happens to the relay; what a
//! rolled-back one enqueued never does; and a consumer deduplicating by event id applies each event once.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::pg::{self, Schema};
use common::{cluster, eventually, unique, Cluster, Record, PATIENCE};
use nerve_sdk::dedup::PgDedup;
use nerve_sdk::envelope::{self, Envelope};
use nerve_sdk::tokio_postgres::Client;
use nerve_sdk::{
    ConsumerBuilder, Event, EventContext, Handler, HandlerError, JsonCodec, Outbox, OutboxRelay,
};
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use uuid::Uuid;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Shipped {
    order: String,
    seq: u32,
}

impl Event for Shipped {
    const NAME: &'static str = "test.Shipped";

    fn key(&self) -> Option<String> {
        Some(self.order.clone())
    }
}

fn shipped(order: &str, seq: u32) -> Shipped {
    Shipped {
        order: order.to_string(),
        seq,
    }
}

const PARTITIONS: i32 = 2;

/// A topic, a schema, the outbox and its relay.
struct Setup {
    cluster: Cluster,
    topic: String,
    schema: Schema,
    outbox: Outbox<JsonCodec>,
    relay: OutboxRelay,
}

async fn setup(batch_size: usize) -> Setup {
    let cluster = cluster();
    let topic = unique("shipments");
    cluster.create_topic(&topic, PARTITIONS).await;
    let schema = Schema::create().await;
    let table = schema.table("nerve_outbox");
    let outbox = Outbox::new(JsonCodec)
        .with_table(&table)
        .expect("a valid table name");
    let relay = OutboxRelay::new(&cluster.config())
        .expect("relay")
        .with_table(&table)
        .expect("a valid table name")
        .batch_size(batch_size)
        .poll_interval(Duration::from_millis(20));
    let client = pg::connect().await;
    outbox.ensure_schema(&client).await.expect("outbox table");
    relay.ensure_schema(&client).await.expect("idempotent");
    client
        .batch_execute(&format!(
            "CREATE TABLE {} (order_id text PRIMARY KEY, shipments int NOT NULL)",
            schema.table("orders")
        ))
        .await
        .expect("business table");
    Setup {
        cluster,
        topic,
        schema,
        outbox,
        relay,
    }
}

impl Setup {
    /// In one transaction: counts the shipments of each event's order (business data) and enqueues the
    /// events; commits or rolls back. Returns the event ids.
    async fn ship(&self, client: &mut Client, events: &[Shipped], commit: bool) -> Vec<Uuid> {
        let tx = client.transaction().await.expect("begin");
        let mut ids = Vec::new();
        for event in events {
            // Updating the order first locks its row: transactions for one order serialize, so their
            // events' ids are in commit order.
            tx.execute(
                &format!(
                    "INSERT INTO {} (order_id, shipments) VALUES ($1, 1)
                     ON CONFLICT (order_id) DO UPDATE SET shipments = orders.shipments + 1",
                    self.schema.table("orders")
                ),
                &[&event.order],
            )
            .await
            .expect("business write");
            ids.push(
                self.outbox
                    .enqueue(&tx, &self.topic, event)
                    .await
                    .expect("enqueued"),
            );
        }
        if commit {
            tx.commit().await.expect("commit");
        } else {
            tx.rollback().await.expect("rollback");
        }
        ids
    }

    async fn unsent(&self, client: &Client) -> i64 {
        client
            .query_one(
                &format!(
                    "SELECT count(*) FROM {} WHERE sent_at IS NULL",
                    self.schema.table("nerve_outbox")
                ),
                &[],
            )
            .await
            .expect("counted")
            .get(0)
    }

    /// Every record of the topic, partition by partition.
    fn read_topic(&self) -> Vec<Record> {
        (0..PARTITIONS)
            .flat_map(|p| self.cluster.read_partition(&self.topic, p))
            .collect()
    }
}

fn event_id(record: &Record) -> Uuid {
    Uuid::parse_str(record.header(envelope::EVENT_ID).expect("an event id")).expect("a uuid")
}

fn decode(record: &Record) -> Shipped {
    serde_json::from_slice(record.value.as_deref().expect("a value")).expect("a Shipped")
}

/// Checks the outbox's promise on what the topic holds: every id of `committed` at least once, nothing
/// else, and each order's events first seen in their sequence order. Returns how many copies each id has.
fn assert_delivered(records: &[Record], committed: &[Uuid]) -> HashMap<Uuid, usize> {
    let mut copies: HashMap<Uuid, usize> = HashMap::new();
    let mut first_seen: HashMap<String, Vec<u32>> = HashMap::new();
    for record in records {
        let id = event_id(record);
        let event = decode(record);
        assert_eq!(
            record.key.as_deref(),
            Some(event.order.as_bytes()),
            "keyed by order"
        );
        let n = copies.entry(id).or_default();
        *n += 1;
        if *n == 1 {
            first_seen.entry(event.order).or_default().push(event.seq);
        }
    }
    let committed_set: HashSet<Uuid> = committed.iter().copied().collect();
    let published: HashSet<Uuid> = copies.keys().copied().collect();
    let missing: Vec<_> = committed_set.difference(&published).collect();
    let unexpected: Vec<_> = published.difference(&committed_set).collect();
    assert!(
        missing.is_empty(),
        "committed but never published: {missing:?}"
    );
    assert!(
        unexpected.is_empty(),
        "published but not committed: {unexpected:?}"
    );
    for (order, seqs) in &first_seen {
        let mut sorted = seqs.clone();
        sorted.sort_unstable();
        assert_eq!(*seqs, sorted, "order {order}: first copies out of order");
    }
    copies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn only_committed_rows_are_published_once_each_in_order_per_key() {
    let setup = setup(2).await;
    let mut client = pg::connect().await;
    let mut committed = setup
        .ship(
            &mut client,
            &[shipped("o1", 0), shipped("o1", 1), shipped("o2", 0)],
            true,
        )
        .await;
    let rolled_back = setup
        .ship(&mut client, &[shipped("o1", 2), shipped("o3", 0)], false)
        .await;
    committed.extend(
        setup
            .ship(
                &mut client,
                &[shipped("o1", 2), shipped("o3", 0), shipped("o1", 3)],
                true,
            )
            .await,
    );

    // Batches of two: three of them, then nothing.
    let mut batches = Vec::new();
    loop {
        let relayed = setup.relay.relay_once(&mut client).await.expect("relayed");
        if relayed == 0 {
            break;
        }
        batches.push(relayed);
    }
    assert_eq!(batches, [2, 2, 2]);
    assert_eq!(setup.unsent(&client).await, 0);

    let records = setup.read_topic();
    let copies = assert_delivered(&records, &committed);
    assert!(
        copies.values().all(|n| *n == 1),
        "without a crash, no copies: {copies:?}"
    );
    for id in &rolled_back {
        assert!(!copies.contains_key(id), "rolled back, yet published: {id}");
    }
    let first = records
        .iter()
        .find(|r| event_id(r) == committed[0])
        .expect("published");
    let envelope = Envelope::from_headers(&to_owned_headers(first)).expect("a valid envelope");
    assert_eq!(envelope.event_type, "test.Shipped");
    assert_eq!(envelope.event_version, 1);
    assert_eq!(envelope.correlation_id, committed[0].to_string());
    assert_eq!(envelope.event_id.get_version_num(), 7);
    assert_eq!(decode(first), shipped("o1", 0));

    assert_eq!(
        setup
            .relay
            .purge_sent(&client, Duration::from_secs(3600))
            .await
            .expect("purged"),
        0,
        "sent rows are kept for the retention"
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        setup
            .relay
            .purge_sent(&client, Duration::ZERO)
            .await
            .expect("purged"),
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_relay_works_at_a_time_so_batches_never_overtake_each_other() {
    let setup = setup(2).await;
    let mut client = pg::connect().await;
    let mut committed = Vec::new();
    for seq in 0..4 {
        committed.extend(setup.ship(&mut client, &[shipped("o1", seq)], true).await);
    }
    let mut first_client = pg::connect().await;
    let first = setup
        .relay
        .claim(&mut first_client)
        .await
        .expect("claimed")
        .expect("rows");
    assert_eq!(first.event_ids(), committed[..2]);
    let mut second_client = pg::connect().await;
    assert!(
        setup
            .relay
            .claim(&mut second_client)
            .await
            .expect("asked")
            .is_none(),
        "a second relay does not take the later rows while the first holds the earlier ones"
    );
    assert_eq!(
        first
            .publish()
            .await
            .expect("published")
            .mark_sent()
            .await
            .expect("marked"),
        2
    );
    let second = setup
        .relay
        .claim(&mut second_client)
        .await
        .expect("claimed")
        .expect("rows");
    assert_eq!(second.event_ids(), committed[2..]);
}

fn to_owned_headers(record: &Record) -> rdkafka::message::OwnedHeaders {
    record.headers.iter().fold(
        rdkafka::message::OwnedHeaders::new(),
        |headers, (key, value)| {
            headers.insert(rdkafka::message::Header {
                key,
                value: Some(value),
            })
        },
    )
}

/// Applies each shipment to `applied` (a row per effect) with the dedup row in the same transaction.
struct Ledger {
    client: Arc<Mutex<Client>>,
    dedup: PgDedup,
    applied_table: String,
    applied: Arc<AtomicUsize>,
    skipped: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Handler<Shipped> for Ledger {
    async fn handle(&self, ctx: &EventContext, event: Shipped) -> Result<(), HandlerError> {
        let mut client = self.client.lock().await;
        let tx = client
            .transaction()
            .await
            .map_err(HandlerError::transient)?;
        if !self
            .dedup
            .first_time(&tx, ctx.envelope.event_id)
            .await
            .map_err(HandlerError::transient)?
        {
            self.skipped.fetch_add(1, Ordering::SeqCst);
            return Ok(());
        }
        tx.execute(
            &format!(
                "INSERT INTO {} (event_id, order_id, seq) VALUES ($1, $2, $3)",
                self.applied_table
            ),
            &[&ctx.envelope.event_id, &event.order, &i64::from(event.seq)],
        )
        .await
        .map_err(HandlerError::transient)?;
        tx.commit().await.map_err(HandlerError::transient)?;
        self.applied.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_relay_killed_between_publishing_and_marking_publishes_again_and_dedup_keeps_one_effect()
{
    const ORDERS: u32 = 3;
    const PER_ORDER: u32 = 10;
    let setup = setup(10).await;
    let mut client = pg::connect().await;
    let mut committed = Vec::new();
    for seq in 0..PER_ORDER {
        for order in 0..ORDERS {
            committed.extend(
                setup
                    .ship(&mut client, &[shipped(&format!("o{order}"), seq)], true)
                    .await,
            );
        }
    }

    // The crash: a relay with a connection of its own publishes a batch and dies before marking it.
    let crashed: Vec<Uuid> = {
        let mut relay_client = pg::connect().await;
        let batch = setup
            .relay
            .claim(&mut relay_client)
            .await
            .expect("claimed")
            .expect("rows to publish");
        let published = batch.publish().await.expect("published");
        let ids = published.event_ids();
        drop(published);
        drop(relay_client);
        ids
    };
    assert_eq!(crashed, committed[..10], "the oldest rows first");
    assert_eq!(
        setup.unsent(&client).await,
        i64::from(ORDERS * PER_ORDER),
        "nothing was marked sent"
    );
    assert_eq!(
        setup.read_topic().len(),
        10,
        "yet the batch is on the topic"
    );

    // The relay's next run publishes everything, the crashed batch again.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = setup.relay.clone();
    let running = tokio::spawn(async move {
        let mut client = pg::connect().await;
        relay
            .run(&mut client, async {
                let _ = stopped.await;
            })
            .await
    });
    let started = std::time::Instant::now();
    while setup.unsent(&client).await > 0 {
        assert!(started.elapsed() < PATIENCE, "the relay never caught up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    running.await.expect("joined").expect("ran");

    let records = setup.read_topic();
    let copies = assert_delivered(&records, &committed);
    for id in &committed {
        let expected = if crashed.contains(id) { 2 } else { 1 };
        assert_eq!(copies[id], expected, "copies of {id}");
    }

    // A consumer deduplicating by event id: one effect per committed row.
    let applied_table = setup.schema.table("applied");
    client
        .batch_execute(&format!(
            "CREATE TABLE {applied_table} (event_id uuid NOT NULL, order_id text NOT NULL, seq bigint NOT NULL)"
        ))
        .await
        .expect("effects table");
    let group = unique("ledger");
    let dedup = PgDedup::new(&group)
        .with_table(&setup.schema.table("nerve_dedup"))
        .expect("a valid table name");
    dedup.ensure_schema(&client).await.expect("dedup table");
    let (applied, skipped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let runtime = ConsumerBuilder::new(&setup.cluster.group_config(&group), JsonCodec)
        .subscribe(&setup.topic)
        .handler(Ledger {
            client: Arc::new(Mutex::new(pg::connect().await)),
            dedup,
            applied_table: applied_table.clone(),
            applied: Arc::clone(&applied),
            skipped: Arc::clone(&skipped),
        })
        .start()
        .expect("started");
    eventually("every record is handled", || {
        applied.load(Ordering::SeqCst) + skipped.load(Ordering::SeqCst) == records.len()
    })
    .await;
    runtime.shutdown().await.expect("clean shutdown");
    assert_eq!(skipped.load(Ordering::SeqCst), crashed.len(), "the copies");

    let rows = client
        .query(
            &format!("SELECT event_id, order_id, seq FROM {applied_table}"),
            &[],
        )
        .await
        .expect("effects");
    let mut effects: HashMap<Uuid, usize> = HashMap::new();
    for row in &rows {
        *effects.entry(row.get(0)).or_default() += 1;
    }
    assert_eq!(effects.len(), committed.len());
    assert!(
        committed.iter().all(|id| effects.get(id) == Some(&1)),
        "exactly one effect per committed row: {effects:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn relays_aborted_at_random_moments_lose_no_committed_row() {
    const ORDERS: u32 = 4;
    const PER_ORDER: u32 = 30;
    let setup = Arc::new(setup(7).await);

    // The service: each order's shipments one after the other, some transactions rolled back.
    let writer = {
        let setup = Arc::clone(&setup);
        tokio::spawn(async move {
            let mut client = pg::connect().await;
            let mut committed = Vec::new();
            let mut rolled_back = Vec::new();
            for seq in 0..PER_ORDER {
                for order in 0..ORDERS {
                    let order = format!("o{order}");
                    if seq % 7 == 3 {
                        rolled_back.extend(
                            setup
                                .ship(&mut client, &[shipped(&order, seq)], false)
                                .await,
                        );
                    }
                    committed.extend(setup.ship(&mut client, &[shipped(&order, seq)], true).await);
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (committed, rolled_back)
        })
    };

    // Relays started and aborted mid-way, over and over: an abort drops the relay's connection wherever
    // it is (claiming, publishing, marking), as a killed process would.
    let mut aborts = 0;
    while !writer.is_finished() {
        let relay = setup.relay.clone();
        let task = tokio::spawn(async move {
            let mut client = pg::connect().await;
            relay.run(&mut client, futures::future::pending()).await
        });
        let pause = rand::rng().random_range(5..60);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        task.abort();
        let _ = task.await;
        aborts += 1;
    }
    let (committed, rolled_back) = writer.await.expect("the writer finished");
    assert!(aborts > 3, "only {aborts} aborts");

    // A last relay that is left to finish.
    let mut client = pg::connect().await;
    let started = std::time::Instant::now();
    while setup.unsent(&client).await > 0 {
        assert!(started.elapsed() < PATIENCE, "the relay never caught up");
        setup.relay.relay_once(&mut client).await.expect("relayed");
    }

    let records = setup.read_topic();
    let copies = assert_delivered(&records, &committed);
    assert!(
        rolled_back.iter().all(|id| !copies.contains_key(id)),
        "a rolled-back row was published"
    );
    assert_eq!(committed.len(), (ORDERS * PER_ORDER) as usize);
}
