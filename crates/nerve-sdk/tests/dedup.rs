//! Idempotent handling against a real broker and PostgreSQL: a consumer killed after its handlers wrote to
//! the database and before it committed its offsets has its events redelivered, and the dedup row written
//! in the handler's transaction keeps each event to exactly one effect.

mod common;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::pg::{self, Schema};
use common::{cluster, eventually, unique, PATIENCE};
use nerve_sdk::dedup::{DedupStore, PgDedup, RedbDedup};
use nerve_sdk::tokio_postgres::Client;
use nerve_sdk::{
    ClientConfig, ConsumerBuilder, Event, EventContext, Handler, HandlerError, Idempotent,
    JsonCodec, Publisher,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use uuid::Uuid;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Deposit {
    account: String,
    cents: i64,
}

impl Event for Deposit {
    const NAME: &'static str = "test.Deposit";

    fn key(&self) -> Option<String> {
        Some(self.account.clone())
    }
}

/// Applies deposits to `accounts` and logs each application in `applied` (no unique key there: a second
/// effect would show as a second row), with the dedup row in the same transaction.
struct Bank {
    client: Arc<Mutex<Client>>,
    dedup: PgDedup,
    schema: String,
    /// Pause after each deposit, so that a kill finds the consumer mid-way.
    pause: Duration,
    applied: Arc<AtomicUsize>,
    skipped: Arc<AtomicUsize>,
}

impl Bank {
    fn new(client: Client, schema: &str, group: &str, pause: Duration) -> Bank {
        Bank {
            client: Arc::new(Mutex::new(client)),
            dedup: PgDedup::new(group)
                .with_table(&format!("{schema}.nerve_dedup"))
                .expect("a valid table name"),
            schema: schema.to_string(),
            pause,
            applied: Arc::new(AtomicUsize::new(0)),
            skipped: Arc::new(AtomicUsize::new(0)),
        }
    }

    async fn create_tables(&self) {
        let client = self.client.lock().await;
        self.dedup
            .ensure_schema(&*client)
            .await
            .expect("dedup table");
        let s = &self.schema;
        client
            .batch_execute(&format!(
                "CREATE TABLE {s}.accounts (account text PRIMARY KEY, cents bigint NOT NULL);
                 CREATE TABLE {s}.applied (event_id uuid NOT NULL, account text NOT NULL, cents bigint NOT NULL);"
            ))
            .await
            .expect("business tables");
    }
}

#[async_trait::async_trait]
impl Handler<Deposit> for Bank {
    async fn handle(&self, ctx: &EventContext, deposit: Deposit) -> Result<(), HandlerError> {
        let s = &self.schema;
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
                "INSERT INTO {s}.accounts (account, cents) VALUES ($1, $2)
                 ON CONFLICT (account) DO UPDATE SET cents = accounts.cents + excluded.cents"
            ),
            &[&deposit.account, &deposit.cents],
        )
        .await
        .map_err(HandlerError::transient)?;
        tx.execute(
            &format!("INSERT INTO {s}.applied (event_id, account, cents) VALUES ($1, $2, $3)"),
            &[&ctx.envelope.event_id, &deposit.account, &deposit.cents],
        )
        .await
        .map_err(HandlerError::transient)?;
        tx.commit().await.map_err(HandlerError::transient)?;
        self.applied.fetch_add(1, Ordering::SeqCst);
        drop(client);
        tokio::time::sleep(self.pause).await;
        Ok(())
    }
}

async fn count(client: &Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .await
        .expect("counted")
        .get::<_, i64>(0)
}

/// What the child process reads to know its part.
const CHILD_ENV: &str = "NERVE_SDK_TEST_CHILD";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_killed_before_committing_has_its_events_redelivered_with_one_effect_each() {
    const EVENTS: i64 = 60;
    let cluster = cluster();
    let topic = unique("deposits");
    let group = unique("bank");
    let schema = Schema::create().await;
    cluster.create_topic(&topic, 2).await;
    let bank = Bank::new(pg::connect().await, &schema.name, &group, Duration::ZERO);
    bank.create_tables().await;

    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    let mut expected: HashMap<String, i64> = HashMap::new();
    let mut ids = Vec::new();
    for n in 0..EVENTS {
        let deposit = Deposit {
            account: format!("acct-{}", n % 5),
            cents: 100 + n,
        };
        *expected.entry(deposit.account.clone()).or_default() += deposit.cents;
        ids.push(
            publisher
                .publish(&deposit)
                .await
                .expect("published")
                .event_id,
        );
    }

    // The first consumer, in a process of its own, never commits by itself (a commit interval of an
    // hour) and is killed once part of the deposits are in the database.
    let mut child = Command::new(std::env::current_exe().expect("the test binary"))
        .args([
            "child_bank_until_killed",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(
            CHILD_ENV,
            serde_json::json!({
                "bootstrap": cluster.bootstrap,
                "topic": topic,
                "group": group,
                "schema": schema.name,
            })
            .to_string(),
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("the child consumer starts");
    let observer = pg::connect().await;
    let applied_sql = format!("SELECT count(*) FROM {}.applied", schema.name);
    let started = std::time::Instant::now();
    loop {
        let applied = count(&observer, &applied_sql).await;
        if applied >= EVENTS / 3 {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the child applied only {applied} deposits"
        );
        if let Some(status) = child.try_wait().expect("child status") {
            panic!("the child consumer exited by itself: {status}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.kill().expect("killed");
    child.wait().expect("reaped");
    let applied_by_child = count(&observer, &applied_sql).await;
    for partition in 0..2 {
        assert_eq!(
            cluster.committed(&group, &topic, partition),
            None,
            "the killed consumer committed nothing, so everything it did is delivered again"
        );
    }

    // The same group again: it starts over from the beginning.
    let (applied, skipped) = (Arc::clone(&bank.applied), Arc::clone(&bank.skipped));
    let runtime = ConsumerBuilder::new(&cluster.group_config(&group), JsonCodec)
        .subscribe(&topic)
        .handler(bank)
        .commit_interval(Duration::from_millis(100))
        .start()
        .expect("started");
    eventually("every deposit is delivered again", || {
        applied.load(Ordering::SeqCst) + skipped.load(Ordering::SeqCst) == EVENTS as usize
    })
    .await;
    runtime.shutdown().await.expect("clean shutdown");

    assert!(
        skipped.load(Ordering::SeqCst) as i64 >= applied_by_child,
        "each deposit the killed consumer applied was redelivered and skipped: {} skipped, {applied_by_child} applied before the kill",
        skipped.load(Ordering::SeqCst)
    );
    let rows = observer
        .query(
            &format!(
                "SELECT event_id, count(*) FROM {}.applied GROUP BY event_id",
                schema.name
            ),
            &[],
        )
        .await
        .expect("applied");
    let mut effects: HashMap<Uuid, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for id in &ids {
        assert_eq!(effects.remove(id), Some(1), "event {id}: one effect");
    }
    assert!(effects.is_empty(), "effects of unknown events: {effects:?}");
    let balances: HashMap<String, i64> = observer
        .query(
            &format!("SELECT account, cents FROM {}.accounts", schema.name),
            &[],
        )
        .await
        .expect("accounts")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(balances, expected, "each deposit counted once");
}

/// The killed consumer of the test above; does nothing unless that test started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run as a child process by a_consumer_killed_before_committing_..."]
async fn child_bank_until_killed() {
    let Ok(part) = std::env::var(CHILD_ENV) else {
        return;
    };
    let part: serde_json::Value = serde_json::from_str(&part).expect("the child's part");
    let text = |key: &str| part[key].as_str().expect("a string").to_string();
    let (topic, group, schema) = (text("topic"), text("group"), text("schema"));
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", text("bootstrap"))
        .set("group.id", &group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    let bank = Bank::new(
        pg::connect().await,
        &schema,
        &group,
        Duration::from_millis(20),
    );
    let _runtime = ConsumerBuilder::new(&config, JsonCodec)
        .subscribe(&topic)
        .handler(bank)
        .commit_interval(Duration::from_secs(3600))
        .start()
        .expect("started");
    // Killed long before this.
    tokio::time::sleep(PATIENCE).await;
    std::process::exit(1);
}

/// Counts its calls.
struct Counting {
    calls: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Handler<Deposit> for Counting {
    async fn handle(&self, _ctx: &EventContext, _deposit: Deposit) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idempotent_handler_skips_the_events_its_redb_store_recorded_even_after_reopening_it() {
    let cluster = cluster();
    let topic = unique("idempotent");
    cluster.create_topic(&topic, 1).await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("dedup.redb");
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    let mut ids = Vec::new();
    for n in 0..5 {
        let deposit = Deposit {
            account: format!("a{n}"),
            cents: n,
        };
        ids.push(publisher.publish(&deposit).await.expect("published"));
    }
    let end = ids.last().expect("published").offset + 1;

    // Two groups read the topic from the beginning, one after the other, as one group rewound to replay
    // it would; the service's store is closed and opened again in between.
    for (round, expected_calls) in [(0, 5), (1, 0)] {
        let store = Arc::new(RedbDedup::open(&path).expect("opened"));
        let calls = Arc::new(AtomicUsize::new(0));
        let group = unique("ledger");
        let runtime = ConsumerBuilder::new(&cluster.group_config(&group), JsonCodec)
            .subscribe(&topic)
            .handler(Idempotent::new(
                Arc::clone(&store),
                "ledger",
                Counting {
                    calls: Arc::clone(&calls),
                },
            ))
            .commit_interval(Duration::from_millis(100))
            .start()
            .expect("started");
        eventually("the group commits past every event", || {
            cluster.committed(&group, &topic, 0) == Some(end)
        })
        .await;
        runtime.shutdown().await.expect("clean shutdown");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            expected_calls,
            "round {round}"
        );
        for delivery in &ids {
            assert!(
                store
                    .contains("ledger", delivery.event_id)
                    .await
                    .expect("read"),
                "round {round}: recorded"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pg_dedup_row_commits_or_rolls_back_with_its_transaction_and_is_purged_by_age() {
    let schema = Schema::create().await;
    let dedup = PgDedup::new("billing")
        .with_table(&schema.table("nerve_dedup"))
        .expect("a valid table name");
    let mut client = pg::connect().await;
    dedup.ensure_schema(&client).await.expect("dedup table");
    dedup.ensure_schema(&client).await.expect("twice is fine");
    let id = Uuid::now_v7();

    let tx = client.transaction().await.expect("begin");
    assert!(dedup.first_time(&tx, id).await.expect("inserted"));
    tx.rollback().await.expect("rollback");
    assert!(
        !dedup.contains(&client, id).await.expect("read"),
        "rolled back with the handler's writes"
    );
    let tx = client.transaction().await.expect("begin");
    assert!(dedup.first_time(&tx, id).await.expect("inserted"));
    tx.commit().await.expect("commit");
    assert!(dedup.contains(&client, id).await.expect("read"));
    let tx = client.transaction().await.expect("begin");
    assert!(!dedup.first_time(&tx, id).await.expect("checked"), "once");
    drop(tx);
    let other = PgDedup::new("shipping")
        .with_table(&schema.table("nerve_dedup"))
        .expect("a valid table name");
    assert!(
        !other.contains(&client, id).await.expect("read"),
        "per consumer"
    );

    // Two deliveries of one event at once: the second waits for the first and then sees its row.
    let concurrent = Uuid::now_v7();
    let tx = client.transaction().await.expect("begin");
    assert!(dedup.first_time(&tx, concurrent).await.expect("inserted"));
    let second = {
        let dedup = dedup.clone();
        tokio::spawn(async move {
            let mut client = pg::connect().await;
            let tx = client.transaction().await.expect("begin");
            let first = dedup.first_time(&tx, concurrent).await.expect("checked");
            tx.commit().await.expect("commit");
            first
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!second.is_finished(), "the second delivery waits");
    tx.commit().await.expect("commit");
    assert!(
        !second.await.expect("joined"),
        "the second delivery is a duplicate"
    );

    assert_eq!(
        dedup
            .purge(&client, Duration::from_secs(3600))
            .await
            .expect("purged"),
        0
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(
        dedup.purge(&client, Duration::ZERO).await.expect("purged"),
        2
    );
    assert!(!dedup.contains(&client, id).await.expect("read"));
}
