//! The consumer runtime against a real broker: retries, dead letters, per-key order under concurrency,
//! commits that never pass an unfinished record, and the envelope from producer to handler.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{cluster, eventually, receive, unique, PATIENCE};
use nerve_sdk::envelope::{self, Envelope, PublishContext};
use nerve_sdk::{
    dlq, ConsumerBuilder, Event, EventContext, Handler, HandlerError, JsonCodec, Publisher,
    RetryPolicy,
};
use rand::Rng;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Step {
    entity: String,
    seq: u32,
    /// What the test handler is to do with it.
    #[serde(default)]
    fate: Fate,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Fate {
    #[default]
    Succeed,
    /// Fail transiently this many times, then succeed.
    FailTransiently(u32),
    FailPermanently,
    FailTransientlyForever,
    /// Never return.
    Block,
}

impl Event for Step {
    const NAME: &'static str = "test.Step";
    const VERSION: u32 = 2;

    fn key(&self) -> Option<String> {
        Some(self.entity.clone())
    }
}

fn step(entity: &str, seq: u32, fate: Fate) -> Step {
    Step {
        entity: entity.to_string(),
        seq,
        fate,
    }
}

/// Handled events (after success), with their context.
type Seen = mpsc::UnboundedSender<(EventContext, Step)>;

/// Does what each event's fate says; reports successes.
struct Fated {
    seen: Seen,
    calls: Arc<AtomicU32>,
}

#[async_trait::async_trait]
impl Handler<Step> for Fated {
    async fn handle(&self, ctx: &EventContext, event: Step) -> Result<(), HandlerError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match event.fate {
            Fate::FailTransiently(times) if ctx.attempt <= times => {
                return Err(HandlerError::transient(format!("attempt {}", ctx.attempt)))
            }
            Fate::FailPermanently => return Err(HandlerError::permanent("poisoned")),
            Fate::FailTransientlyForever => return Err(HandlerError::transient("still down")),
            Fate::Block => futures::future::pending::<()>().await,
            _ => {}
        }
        let _ = self.seen.send((ctx.clone(), event));
        Ok(())
    }

    fn name(&self) -> String {
        "fated".to_string()
    }
}

fn fast_retries(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        multiplier: 2.0,
    }
}

fn fated() -> (
    Fated,
    mpsc::UnboundedReceiver<(EventContext, Step)>,
    Arc<AtomicU32>,
) {
    let (seen, rx) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicU32::new(0));
    (
        Fated {
            seen,
            calls: Arc::clone(&calls),
        },
        rx,
        calls,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transient_failure_is_retried_until_it_succeeds_once() {
    let cluster = cluster();
    let topic = unique("retried");
    let group = unique("retriers");
    cluster.create_topic(&topic, 1).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    publisher
        .publish(&step("a", 0, Fate::FailTransiently(2)))
        .await
        .expect("published");
    let after = publisher
        .publish(&step("a", 1, Fate::Succeed))
        .await
        .expect("published");

    let (handler, mut seen, calls) = fated();
    let runtime = ConsumerBuilder::new(&cluster.group_config(&group), JsonCodec)
        .subscribe(&topic)
        .handler(handler)
        .retry(fast_retries(5))
        .commit_interval(Duration::from_millis(100))
        .start()
        .expect("started");
    let handled = receive(&mut seen, 2).await;
    assert_eq!(handled[0].1.seq, 0);
    assert_eq!(
        handled[0].0.attempt, 3,
        "two failures, then the third attempt"
    );
    assert_eq!(
        handled[1].1.seq, 1,
        "the key's next event waited for the retries"
    );
    assert_eq!(handled[1].0.attempt, 1);
    eventually("the group commits past both", || {
        cluster.committed(&group, &topic, 0) == Some(after.offset + 1)
    })
    .await;
    runtime.shutdown().await.expect("clean shutdown");
    assert_eq!(calls.load(Ordering::SeqCst), 4, "3 attempts + 1");
    assert!(seen.try_recv().is_err(), "nothing was handled twice");
    assert!(
        cluster.read_all(&dlq::dlq_topic(&topic)).is_empty(),
        "nothing was dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn poison_events_go_to_the_dead_letter_topic_and_the_partition_moves_on() {
    let cluster = cluster();
    let topic = unique("poisoned");
    let group = unique("poison-eaters");
    cluster.create_topic(&topic, 1).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    // All on one key: the partition and the key's lane both have to move on past each poison.
    let first = publisher
        .publish(&step("k", 0, Fate::Succeed))
        .await
        .expect("published");
    let permanent = publisher
        .publish(&step("k", 1, Fate::FailPermanently))
        .await
        .expect("published");
    // A valid envelope for a `Step`, and a value that is no `Step`.
    let raw: FutureProducer = cluster.config().create().expect("producer");
    let garbage = raw
        .send(
            FutureRecord::to(&topic)
                .key("k")
                .payload("{not json")
                .headers(
                    Envelope::new(Step::NAME, Step::VERSION, &PublishContext::default())
                        .to_headers(),
                ),
            Timeout::After(PATIENCE),
        )
        .await
        .expect("delivered");
    let exhausted = publisher
        .publish(&step("k", 3, Fate::FailTransientlyForever))
        .await
        .expect("published");
    // No envelope at all.
    let bare = raw
        .send(
            FutureRecord::to(&topic).key("k").payload("{}"),
            Timeout::After(PATIENCE),
        )
        .await
        .expect("delivered");
    let last = publisher
        .publish(&step("k", 5, Fate::Succeed))
        .await
        .expect("published");
    raw.flush(PATIENCE).expect("flushed");

    let (handler, mut seen, _) = fated();
    let runtime = ConsumerBuilder::new(&cluster.group_config(&group), JsonCodec)
        .subscribe(&topic)
        .handler(handler)
        .retry(fast_retries(3))
        .commit_interval(Duration::from_millis(100))
        .start()
        .expect("started");
    let handled = receive(&mut seen, 2).await;
    assert_eq!(
        handled.iter().map(|(_, s)| s.seq).collect::<Vec<_>>(),
        [0, 5],
        "the events around the poison were handled"
    );
    eventually("the group commits past the last event", || {
        cluster.committed(&group, &topic, 0) == Some(last.offset + 1)
    })
    .await;
    runtime.shutdown().await.expect("clean shutdown");

    let dead = cluster.read_all(&dlq::dlq_topic(&topic));
    let offsets: Vec<String> = dead
        .iter()
        .map(|r| r.header(dlq::ORIGINAL_OFFSET).unwrap_or("-").to_string())
        .collect();
    let expected = [
        permanent.offset,
        garbage.offset,
        exhausted.offset,
        bare.offset,
    ];
    assert_eq!(
        offsets,
        expected.map(|o| o.to_string()),
        "each poison once, in order"
    );
    let [permanent_dl, garbage_dl, exhausted_dl, bare_dl] = &dead[..] else {
        unreachable!("four checked above");
    };
    for dl in &dead {
        assert_eq!(dl.key.as_deref(), Some(&b"k"[..]), "the original key");
        assert_eq!(dl.header(dlq::ORIGINAL_TOPIC), Some(topic.as_str()));
        assert_eq!(dl.header(dlq::ORIGINAL_PARTITION), Some("0"));
        let timestamp: i64 = dl
            .header(dlq::ORIGINAL_TIMESTAMP)
            .expect("original timestamp")
            .parse()
            .expect("millis");
        let failed_at: i64 = dl
            .header(dlq::FAILED_AT)
            .expect("failed-at")
            .parse()
            .expect("millis");
        assert!(failed_at >= timestamp, "{failed_at} before {timestamp}");
    }
    assert_eq!(permanent_dl.header(dlq::ERROR), Some("poisoned"));
    assert_eq!(permanent_dl.header(dlq::ATTEMPTS), Some("1"));
    assert_eq!(permanent_dl.header(dlq::HANDLER), Some("fated"));
    assert_eq!(
        permanent_dl.header(envelope::EVENT_ID),
        Some(permanent.event_id.to_string().as_str()),
        "the original headers are kept"
    );
    assert_eq!(
        serde_json::from_slice::<Step>(permanent_dl.value.as_deref().expect("a value"))
            .expect("the original value"),
        step("k", 1, Fate::FailPermanently)
    );

    assert_eq!(garbage_dl.value.as_deref(), Some(&b"{not json"[..]));
    assert_eq!(garbage_dl.header(dlq::ATTEMPTS), Some("1"), "never retried");
    let error = garbage_dl.header(dlq::ERROR).expect("an error");
    assert!(error.contains("not a valid test.Step"), "{error}");

    assert_eq!(exhausted_dl.header(dlq::ATTEMPTS), Some("3"));
    assert_eq!(exhausted_dl.header(dlq::ERROR), Some("still down"));

    assert_eq!(bare_dl.header(dlq::ATTEMPTS), Some("0"));
    assert_eq!(bare_dl.header(dlq::HANDLER), Some("none"));
    let error = bare_dl.header(dlq::ERROR).expect("an error");
    assert!(error.contains("envelope"), "{error}");

    assert_eq!(first.offset, 0);
}

/// Records each key's sequence numbers as handled, after a random short sleep, and the most handlers
/// seen running at once.
struct Recorder {
    seen: Arc<Mutex<HashMap<String, Vec<u32>>>>,
    running: Arc<AtomicUsize>,
    most: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Handler<Step> for Recorder {
    async fn handle(&self, _ctx: &EventContext, event: Step) -> Result<(), HandlerError> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let pause = rand::rng().random_range(0..5);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        self.seen
            .lock()
            .expect("not poisoned")
            .entry(event.entity)
            .or_default()
            .push(event.seq);
        self.running.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_key_is_handled_in_order_while_keys_run_concurrently() {
    const KEYS: u32 = 24;
    const PER_KEY: u32 = 15;
    let cluster = cluster();
    let topic = unique("ordered");
    let group = unique("orderers");
    cluster.create_topic(&topic, 3).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    for seq in 0..PER_KEY {
        let sends = (0..KEYS).map(|key| {
            let event = step(&format!("entity-{key}"), seq, Fate::Succeed);
            let publisher = publisher.clone();
            async move { publisher.publish(&event).await }
        });
        // One round of every key at a time: a key's next event is only sent after its previous one is
        // stored, so produce order is the sequence order.
        for result in futures::future::join_all(sends).await {
            result.expect("published");
        }
    }

    let seen = Arc::new(Mutex::new(HashMap::new()));
    let most = Arc::new(AtomicUsize::new(0));
    let runtime = ConsumerBuilder::new(&cluster.group_config(&group), JsonCodec)
        .subscribe(&topic)
        .handler(Recorder {
            seen: Arc::clone(&seen),
            running: Arc::new(AtomicUsize::new(0)),
            most: Arc::clone(&most),
        })
        .concurrency(8)
        .start()
        .expect("started");
    eventually("every event is handled", || {
        let seen = seen.lock().expect("not poisoned");
        seen.values().map(Vec::len).sum::<usize>() == (KEYS * PER_KEY) as usize
    })
    .await;
    runtime.shutdown().await.expect("clean shutdown");

    let seen = seen.lock().expect("not poisoned");
    assert_eq!(seen.len(), KEYS as usize);
    for (key, seqs) in seen.iter() {
        assert_eq!(
            *seqs,
            (0..PER_KEY).collect::<Vec<_>>(),
            "{key}: out of order or duplicated"
        );
    }
    assert!(
        most.load(Ordering::SeqCst) > 1,
        "different keys ran concurrently"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_blocked_event_holds_the_commit_and_the_next_consumer_resumes_from_it() {
    let cluster = cluster();
    let topic = unique("blocked");
    let group = unique("blockers");
    cluster.create_topic(&topic, 1).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    let mut offsets = Vec::new();
    for seq in 0..5 {
        let fate = if seq == 1 { Fate::Block } else { Fate::Succeed };
        // Distinct keys: the events after the blocked one are free to run, and do.
        let delivery = publisher
            .publish(&step(&format!("k{seq}"), seq, fate))
            .await
            .expect("published");
        offsets.push(delivery.offset);
    }

    let (handler, mut seen, _) = fated();
    let first = ConsumerBuilder::new(&cluster.group_config(&group), JsonCodec)
        .subscribe(&topic)
        .handler(handler)
        .commit_interval(Duration::from_millis(50))
        .drain_timeout(Duration::from_millis(500))
        .start()
        .expect("started");
    let handled: HashSet<u32> = receive(&mut seen, 4)
        .await
        .into_iter()
        .map(|(_, s)| s.seq)
        .collect();
    assert_eq!(handled, HashSet::from([0, 2, 3, 4]));
    eventually("the group commits up to the blocked event", || {
        cluster.committed(&group, &topic, 0) == Some(offsets[1])
    })
    .await;
    // Several commit intervals: the position stays.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cluster.committed(&group, &topic, 0), Some(offsets[1]));
    first
        .shutdown()
        .await
        .expect("shutdown despite the blocked handler");
    assert_eq!(
        cluster.committed(&group, &topic, 0),
        Some(offsets[1]),
        "shutdown did not commit past the unfinished event"
    );

    let (handler, mut seen, _) = fated();
    let second = ConsumerBuilder::new(&cluster.group_config(&group), JsonCodec)
        .subscribe(&topic)
        .handler(Release(handler))
        .commit_interval(Duration::from_millis(50))
        .start()
        .expect("started");
    let resumed: Vec<i64> = receive(&mut seen, 4)
        .await
        .into_iter()
        .map(|(ctx, _)| ctx.offset)
        .collect();
    // Distinct keys finish in any order; together they are the unfinished event and what came after it,
    // nothing before.
    let mut sorted = resumed;
    sorted.sort_unstable();
    assert_eq!(sorted, offsets[1..], "resumed from the unfinished event");
    eventually("the second consumer commits everything", || {
        cluster.committed(&group, &topic, 0) == Some(offsets[4] + 1)
    })
    .await;
    second.shutdown().await.expect("clean shutdown");
}

/// [`Fated`] except that nothing blocks.
struct Release(Fated);

#[async_trait::async_trait]
impl Handler<Step> for Release {
    async fn handle(&self, ctx: &EventContext, mut event: Step) -> Result<(), HandlerError> {
        event.fate = Fate::Succeed;
        self.0.handle(ctx, event).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_envelope_travels_from_publisher_to_handler() {
    let cluster = cluster();
    let topic = unique("enveloped");
    let group = unique("openers");
    cluster.create_topic(&topic, 2).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    let traceparent = envelope::new_traceparent();
    let context = PublishContext::default()
        .with_correlation_id("checkout-42")
        .with_causation_id("cart-7")
        .with_traceparent(&traceparent);
    let event = step("order-1", 0, Fate::Succeed);
    let delivery = publisher
        .publish_with(&event, &context)
        .await
        .expect("published");
    let root = publisher
        .publish(&step("order-2", 0, Fate::Succeed))
        .await
        .expect("published");

    let (handler, mut seen, _) = fated();
    let runtime = ConsumerBuilder::new(&cluster.group_config(&group), JsonCodec)
        .subscribe(&topic)
        .handler(handler)
        .start()
        .expect("started");
    let mut handled = receive(&mut seen, 2).await;
    runtime.shutdown().await.expect("clean shutdown");
    handled.sort_by(|a, b| a.1.entity.cmp(&b.1.entity));

    let (ctx, received) = &handled[0];
    assert_eq!(*received, event);
    assert_eq!(ctx.envelope.event_id, delivery.event_id);
    assert_eq!(ctx.envelope.event_id.get_version_num(), 7);
    assert_eq!(ctx.envelope.event_type, "test.Step");
    assert_eq!(ctx.envelope.event_version, 2);
    assert_eq!(ctx.envelope.correlation_id, "checkout-42");
    assert_eq!(ctx.envelope.causation_id.as_deref(), Some("cart-7"));
    assert_eq!(
        ctx.envelope.traceparent.as_deref(),
        Some(traceparent.as_str())
    );
    assert_eq!(ctx.key.as_deref(), Some(&b"order-1"[..]));
    assert_eq!(
        (ctx.partition, ctx.offset),
        (delivery.partition, delivery.offset)
    );
    let age = std::time::SystemTime::now()
        .duration_since(ctx.envelope.occurred_at)
        .expect("occurred in the past");
    assert!(age < PATIENCE, "occurred-at is about now: {age:?} ago");
    let next = ctx.follow_up();
    assert_eq!(next.correlation_id.as_deref(), Some("checkout-42"));
    assert_eq!(next.causation_id, Some(delivery.event_id.to_string()));
    assert_eq!(next.traceparent, Some(traceparent));

    let (ctx, _) = &handled[1];
    assert_eq!(ctx.envelope.event_id, root.event_id);
    assert_eq!(
        ctx.envelope.correlation_id,
        root.event_id.to_string(),
        "a flow's first event is its own correlation"
    );
    assert_eq!(ctx.envelope.causation_id, None);
    assert_eq!(ctx.envelope.traceparent, None);
}

/// Counts how often each (key, seq) was handled, slowly enough that a rebalance finds handlers running.
struct Counter {
    counts: Arc<Mutex<HashMap<(String, u32), u32>>>,
    /// What this member handled.
    mine: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Handler<Step> for Counter {
    async fn handle(&self, _ctx: &EventContext, event: Step) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.mine.fetch_add(1, Ordering::SeqCst);
        *self
            .counts
            .lock()
            .expect("not poisoned")
            .entry((event.entity, event.seq))
            .or_default() += 1;
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebalance_commits_what_was_done_so_the_new_owner_does_not_redo_it() {
    const KEYS: u32 = 8;
    const PER_KEY: u32 = 40;
    let cluster = cluster();
    let topic = unique("rebalanced");
    let group = unique("rebalancers");
    cluster.create_topic(&topic, 4).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    for seq in 0..PER_KEY {
        let sends = (0..KEYS).map(|key| {
            let event = step(&format!("entity-{key}"), seq, Fate::Succeed);
            let publisher = publisher.clone();
            async move { publisher.publish(&event).await }
        });
        for result in futures::future::join_all(sends).await {
            result.expect("published");
        }
    }

    let counts = Arc::new(Mutex::new(HashMap::new()));
    let member = |mine: &Arc<AtomicUsize>| {
        ConsumerBuilder::new(&cluster.group_config(&group), JsonCodec)
            .subscribe(&topic)
            .handler(Counter {
                counts: Arc::clone(&counts),
                mine: Arc::clone(mine),
            })
            .concurrency(1)
            .start()
            .expect("started")
    };
    let (by_first, by_second) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let first = member(&by_first);
    eventually("the first member is under way", || {
        counts.lock().expect("not poisoned").len() >= 20
    })
    .await;
    // Joining revokes the first member's partitions (eager protocol) while its handlers run.
    let second = member(&by_second);
    eventually("every event is handled", || {
        counts.lock().expect("not poisoned").len() == (KEYS * PER_KEY) as usize
    })
    .await;
    first.shutdown().await.expect("clean shutdown");
    second.shutdown().await.expect("clean shutdown");
    let twice: Vec<_> = counts
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(event, n)| (event.clone(), *n))
        .collect();
    assert!(
        twice.is_empty(),
        "handled again after the rebalance: {twice:?}"
    );
}
