//! A recommendation service: consumes `UserViewedProduct` from `product-views` and publishes a
//! `RecommendationGenerated` to `recommendations` for each view, as a follow-up of the view (same
//! correlation id, the view's event id as causation id).
//!
//! ```console
//! $ NERVE_BOOTSTRAP=127.0.0.1:9092 cargo run -p nerve-sdk --example recommendations
//! ```
//!
//! - Idempotent: the handler is wrapped in [`Idempotent`] with a [`RedbDedup`] file
//!   (`NERVE_DEDUP_PATH`, default `nerve-recommendations.redb` in the temporary directory), so a view
//!   delivered again after a crash or a rebalance publishes no second recommendation.
//! - Retries: the (simulated) similarity model is busy on the first attempt for one view in four: a
//!   transient error, retried with backoff.
//! - Dead letters: a view of a product the catalogue does not know is a permanent error and goes to
//!   `product-views.dlq` at once (`nerve dlq list product-views`).
//! - Ctrl-C stops taking records, lets the running handlers finish and commits what is done.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use nerve_sdk::dedup::{DedupStore, RedbDedup};
use nerve_sdk::{
    ClientConfig, ConsumerBuilder, Event, EventContext, Handler, HandlerError, Idempotent,
    JsonCodec, Publisher, RetryPolicy,
};
use serde::{Deserialize, Serialize};

/// A user looked at a product page (the `user_viewed_product` example publishes these).
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

/// Products recommended to a user because of what they viewed.
#[derive(Debug, Serialize, Deserialize)]
struct RecommendationGenerated {
    user_id: String,
    product_ids: Vec<String>,
    /// The product whose view caused the recommendation.
    because_of: String,
}

impl Event for RecommendationGenerated {
    const NAME: &'static str = "shop.RecommendationGenerated";
    const VERSION: u32 = 1;

    fn key(&self) -> Option<String> {
        Some(self.user_id.clone())
    }
}

/// The products the shop sells, in "similarity" order: a product's neighbours are recommended with it.
const CATALOGUE: [&str; 9] = [
    "p-1", "p-2", "p-3", "p-4", "p-5", "p-6", "p-7", "p-8", "p-9",
];

struct Recommend {
    recommendations: Publisher<JsonCodec>,
}

#[async_trait]
impl Handler<UserViewedProduct> for Recommend {
    async fn handle(
        &self,
        ctx: &EventContext,
        view: UserViewedProduct,
    ) -> Result<(), HandlerError> {
        // Nothing to recommend for a product the shop does not sell, however often we try: permanent.
        let Some(position) = CATALOGUE.iter().position(|p| *p == view.product_id) else {
            return Err(HandlerError::permanent(format!(
                "unknown product {}",
                view.product_id
            )));
        };
        // A busy model comes back: transient, retried with backoff. Simulated for one view in four.
        if ctx.attempt == 1 && ctx.offset % 4 == 3 {
            return Err(HandlerError::transient("the similarity model is busy"));
        }
        let neighbours = [1, 2].map(|d| CATALOGUE[(position + d) % CATALOGUE.len()].to_string());
        let recommendation = RecommendationGenerated {
            user_id: view.user_id,
            product_ids: neighbours.to_vec(),
            because_of: view.product_id,
        };
        // A broker that cannot take the event now may take it later: transient.
        let delivery = self
            .recommendations
            .publish_with(&recommendation, &ctx.follow_up())
            .await
            .map_err(HandlerError::transient)?;
        println!(
            "{}/{}@{} (attempt {}): recommended {:?} to {} because of {}; event {} caused by {}, correlation {}",
            ctx.topic,
            ctx.partition,
            ctx.offset,
            ctx.attempt,
            recommendation.product_ids,
            recommendation.user_id,
            recommendation.because_of,
            delivery.event_id,
            ctx.envelope.event_id,
            ctx.envelope.correlation_id
        );
        Ok(())
    }

    fn name(&self) -> String {
        "recommend".to_string()
    }
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
    let dedup_path = std::env::var_os("NERVE_DEDUP_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("nerve-recommendations.redb"));

    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &bootstrap);
    let recommendations = Publisher::new(&config, "recommendations", JsonCodec)?;

    let store = Arc::new(RedbDedup::open(&dedup_path)?);
    // Dedup records must outlive any redelivery; a week is far more than this service's lag can be.
    let purger = tokio::spawn({
        let store = Arc::clone(&store);
        async move {
            let mut every_hour = tokio::time::interval(Duration::from_secs(3600));
            loop {
                every_hour.tick().await;
                if let Err(e) = store.purge(Duration::from_secs(7 * 24 * 3600)).await {
                    tracing::warn!(error = %e, "dedup purge failed");
                }
            }
        }
    });

    config.set("group.id", "recommender");
    let runtime = ConsumerBuilder::new(&config, JsonCodec)
        .subscribe("product-views")
        .handler(Idempotent::new(
            store,
            "recommender",
            Recommend { recommendations },
        ))
        .retry(RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            multiplier: 2.0,
        })
        .start()?;
    println!(
        "consuming product-views as group recommender (dedup in {}); Ctrl-C to stop",
        dedup_path.display()
    );

    tokio::signal::ctrl_c().await?;
    println!("stopping: finishing the running handlers and committing");
    runtime.shutdown().await?;
    purger.abort();
    println!("stopped");
    Ok(())
}
