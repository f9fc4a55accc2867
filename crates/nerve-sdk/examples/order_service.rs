//! An order service with a transactional outbox: each order is an `orders` row and an `OrderPlaced`
//! outbox row written in one PostgreSQL transaction, and a relay task publishes the outbox to the
//! `orders` topic. The order and its event are stored together or not at all; the event reaches Kafka at
//! least once even if the service dies right after the commit.
//!
//! ```console
//! $ NERVE_BOOTSTRAP=127.0.0.1:9092 NERVE_POSTGRES="host=127.0.0.1 user=postgres" \
//!     cargo run -p nerve-sdk --example order_service -- 3
//! ```
//!
//! The argument is how many orders to place (default 3). The example waits until the relay has published
//! every one, then stops the relay and exits.

use std::time::{Duration, Instant};

use nerve_sdk::tokio_postgres::{self, Client, NoTls};
use nerve_sdk::{ClientConfig, Event, JsonCodec, Outbox, OutboxRelay};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A customer placed an order.
#[derive(Debug, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: Uuid,
    customer_id: String,
    total_cents: i64,
}

impl Event for OrderPlaced {
    const NAME: &'static str = "shop.OrderPlaced";
    const VERSION: u32 = 1;

    fn key(&self) -> Option<String> {
        Some(self.order_id.to_string())
    }
}

/// A PostgreSQL connection, driven by a task of its own.
async fn connect(conninfo: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(conninfo, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("postgres connection ended: {e}");
        }
    });
    Ok(client)
}

/// Places an order: the `orders` row and its `OrderPlaced` event, in one transaction.
async fn place_order(
    client: &mut Client,
    outbox: &Outbox<JsonCodec>,
    customer_id: &str,
    total_cents: i64,
) -> Result<(Uuid, Uuid), Box<dyn std::error::Error>> {
    let order_id = Uuid::now_v7();
    let tx = client.transaction().await?;
    tx.execute(
        "INSERT INTO orders (id, customer_id, total_cents) VALUES ($1, $2, $3)",
        &[&order_id, &customer_id, &total_cents],
    )
    .await?;
    let event = OrderPlaced {
        order_id,
        customer_id: customer_id.to_string(),
        total_cents,
    };
    let event_id = outbox.enqueue(&tx, "orders", &event).await?;
    tx.commit().await?; // the order and its event, or neither
    Ok((order_id, event_id))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,librdkafka=warn".into()),
        )
        .init();
    let bootstrap =
        std::env::var("NERVE_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_string());
    let conninfo = std::env::var("NERVE_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres".to_string());
    let count: u32 = match std::env::args().nth(1) {
        Some(n) => n.parse().map_err(|_| format!("not a count: {n}"))?,
        None => 3,
    };

    let mut client = connect(&conninfo).await?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS orders (
                 id          uuid        PRIMARY KEY,
                 customer_id text        NOT NULL,
                 total_cents bigint      NOT NULL,
                 placed_at   timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let outbox = Outbox::new(JsonCodec);
    outbox.ensure_schema(&client).await?;

    // The relay runs on a connection of its own (a batch is a transaction) until told to stop.
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &bootstrap);
    let relay = OutboxRelay::new(&config)?;
    let mut relay_client = connect(&conninfo).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay_task = tokio::spawn(async move {
        relay
            .run(&mut relay_client, async {
                let _ = stopped.await;
            })
            .await
    });

    let mut placed = Vec::new();
    for i in 0..count {
        let customer = format!("c-{}", i % 2 + 1);
        let total_cents = 1000 + i64::from(i) * 250;
        let (order_id, event_id) =
            place_order(&mut client, &outbox, &customer, total_cents).await?;
        println!("placed order {order_id} for {customer} ({total_cents} cents): event {event_id} in the outbox");
        placed.push(event_id);
    }

    // Wait until the relay has published them all (it marks a row sent once the broker stored it).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let unsent: i64 = client
            .query_one(
                "SELECT count(*) FROM nerve_outbox WHERE id = ANY($1) AND sent_at IS NULL",
                &[&placed],
            )
            .await?
            .get(0);
        if unsent == 0 {
            break;
        }
        if Instant::now() > deadline {
            return Err(
                format!("{unsent} events still unsent after 30 s: is the broker up?").into(),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("the relay published {} events to orders", placed.len());

    let _ = stop.send(());
    relay_task.await??;
    Ok(())
}
