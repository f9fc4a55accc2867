//! Publishes `UserViewedProduct` events to `product-views`, keyed by user id, so that one user's views stay
//! in order on one partition.
//!
//! ```console
//! $ NERVE_BOOTSTRAP=127.0.0.1:9092 cargo run -p nerve-sdk --example user_viewed_product -- 10
//! ```
//!
//! The argument is how many views to publish (default 10). Users are `u-1` to `u-3`, products `p-1` to
//! `p-10`; the `recommendations` example knows products `p-1` to `p-9` only, so every view of `p-10` ends
//! in its dead-letter topic.

use std::time::{SystemTime, UNIX_EPOCH};

use nerve_sdk::{ClientConfig, Event, JsonCodec, Publisher};
use serde::{Deserialize, Serialize};

/// A user looked at a product page. (A real service shares its event types in a crate of their own; the
/// examples copy them.)
#[derive(Debug, Serialize, Deserialize)]
struct UserViewedProduct {
    user_id: String,
    product_id: String,
    /// Milliseconds since the Unix epoch.
    viewed_at: u64,
}

impl Event for UserViewedProduct {
    const NAME: &'static str = "shop.UserViewedProduct";
    const VERSION: u32 = 1;

    fn key(&self) -> Option<String> {
        Some(self.user_id.clone())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap =
        std::env::var("NERVE_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_string());
    let count: u32 = match std::env::args().nth(1) {
        Some(n) => n.parse().map_err(|_| format!("not a count: {n}"))?,
        None => 10,
    };

    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &bootstrap);
    let views = Publisher::new(&config, "product-views", JsonCodec)?;

    for i in 0..count {
        let view = UserViewedProduct {
            user_id: format!("u-{}", i % 3 + 1),
            product_id: format!("p-{}", i % 10 + 1),
            viewed_at: u64::try_from(SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis())?,
        };
        // Returns once the broker has stored the event (acks=all, idempotent producer).
        let delivery = views.publish(&view).await?;
        println!(
            "published {} viewed {} to {}/{}@{} (event {})",
            view.user_id,
            view.product_id,
            views.topic(),
            delivery.partition,
            delivery.offset,
            delivery.event_id
        );
    }
    Ok(())
}
