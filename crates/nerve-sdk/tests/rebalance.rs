//! The consumer runtime under librdkafka's cooperative (incremental) rebalance protocol, against a real
//! broker: a member joining takes only some partitions, the first member keeps the others running, what
//! was done on a revoked partition is committed so that its new owner does not redo it, and in the end
//! the group's committed offsets are the end of every partition. (The eager protocol: `runtime.rs`.)
//!
//! The members' rebalances are observed through the runtime's own logs (`partitions assigned`,
//! `partitions revoked: draining`, with the member's `client.id`), ordered against the handled events by
//! one clock that both tick.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{cluster, eventually, unique, PATIENCE};
use nerve_sdk::{
    ClientConfig, ConsumerBuilder, Event, EventContext, Handler, HandlerError, JsonCodec, Publisher,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde::{Deserialize, Serialize};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

const PARTITIONS: i32 = 6;
const KEYS: u32 = 36;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Tick {
    entity: String,
    seq: u32,
}

impl Event for Tick {
    const NAME: &'static str = "test.Tick";
    const VERSION: u32 = 1;

    fn key(&self) -> Option<String> {
        Some(self.entity.clone())
    }
}

/// One handling of one event.
#[derive(Debug, Clone)]
struct Handled {
    member: &'static str,
    partition: i32,
    event: (String, u32),
    /// On the clock shared with [`Rebalances`].
    at: u64,
}

/// One rebalance callback of one member, as the runtime logged it.
#[derive(Debug, Clone)]
struct Rebalanced {
    member: String,
    revoked: bool,
    partitions: BTreeSet<i32>,
    at: u64,
}

/// A handler that takes a little while, so that revocations find handlers running.
struct Recorder {
    member: &'static str,
    clock: Arc<AtomicU64>,
    handled: Arc<Mutex<Vec<Handled>>>,
}

#[async_trait::async_trait]
impl Handler<Tick> for Recorder {
    async fn handle(&self, ctx: &EventContext, event: Tick) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let at = self.clock.fetch_add(1, Ordering::SeqCst);
        self.handled.lock().expect("not poisoned").push(Handled {
            member: self.member,
            partition: ctx.partition,
            event: (event.entity, event.seq),
            at,
        });
        Ok(())
    }
}

/// Collects the runtime's rebalance logs of `topic`.
struct Rebalances {
    topic: String,
    clock: Arc<AtomicU64>,
    seen: Arc<Mutex<Vec<Rebalanced>>>,
}

#[derive(Default)]
struct Fields {
    message: String,
    client_id: String,
    assigned: Option<String>,
    revoked: Option<String>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "client_id" {
            self.client_id = value.to_string();
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        let text = format!("{value:?}");
        match field.name() {
            "message" => self.message = text,
            "client_id" => self.client_id = text.trim_matches('"').to_string(),
            "assigned" => self.assigned = Some(text),
            "revoked" => self.revoked = Some(text),
            _ => {}
        }
    }
}

impl<S: tracing::Subscriber> Layer<S> for Rebalances {
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        if !event.metadata().target().starts_with("nerve_sdk") {
            return;
        }
        let mut fields = Fields::default();
        event.record(&mut fields);
        let (revoked, list) = match (fields.assigned, fields.revoked) {
            (Some(list), None) if fields.message == "partitions assigned" => (false, list),
            (None, Some(list)) if fields.message.starts_with("partitions revoked") => (true, list),
            _ => return,
        };
        // `[("topic", 3), ("topic", 5)]`: the partitions of this test's topic.
        let partitions = list
            .split("), (")
            .filter(|tp| tp.contains(&format!("\"{}\"", self.topic)))
            .filter_map(|tp| {
                let digits: String = tp
                    .rsplit(", ")
                    .next()?
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                digits.parse().ok()
            })
            .collect();
        let at = self.clock.fetch_add(1, Ordering::SeqCst);
        self.seen.lock().expect("not poisoned").push(Rebalanced {
            member: fields.client_id,
            revoked,
            partitions,
            at,
        });
    }
}

fn cooperative(config: &ClientConfig, member: &str) -> ClientConfig {
    let mut config = config.clone();
    config
        .set("client.id", member)
        .set("partition.assignment.strategy", "cooperative-sticky");
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cooperative_join_moves_only_some_partitions_and_nothing_is_lost_or_redone() {
    let clock = Arc::new(AtomicU64::new(0));
    let handled: Arc<Mutex<Vec<Handled>>> = Arc::new(Mutex::new(Vec::new()));
    let rebalances: Arc<Mutex<Vec<Rebalanced>>> = Arc::new(Mutex::new(Vec::new()));
    let cluster = cluster();
    let topic = unique("cooperative");
    let group = unique("cooperators");
    // The consumer threads log from threads of their own: the subscriber is the process's (one test in
    // this file, and nextest runs each test in a process of its own).
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Rebalances {
        topic: topic.clone(),
        clock: Arc::clone(&clock),
        seen: Arc::clone(&rebalances),
    }))
    .expect("the only subscriber");
    cluster.create_topic(&topic, PARTITIONS).await;

    // Events keep flowing until told to stop: rounds of one event per key.
    let publishing = Arc::new(AtomicBool::new(true));
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    let producer = tokio::spawn({
        let publishing = Arc::clone(&publishing);
        async move {
            let mut rounds = 0;
            while publishing.load(Ordering::SeqCst) {
                let sends = (0..KEYS).map(|key| {
                    let event = Tick {
                        entity: format!("entity-{key}"),
                        seq: rounds,
                    };
                    let publisher = publisher.clone();
                    async move { publisher.publish(&event).await }
                });
                for result in futures::future::join_all(sends).await {
                    result.expect("published");
                }
                rounds += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            rounds
        }
    });

    let member = |name: &'static str| {
        ConsumerBuilder::new(&cooperative(&cluster.group_config(&group), name), JsonCodec)
            .subscribe(&topic)
            .handler(Recorder {
                member: name,
                clock: Arc::clone(&clock),
                handled: Arc::clone(&handled),
            })
            .start()
            .expect("started")
    };
    let count = |who: &str, after: u64| {
        handled
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|h| h.member == who && h.at >= after)
            .count()
    };

    let a = member("member-a");
    eventually("member-a handles events of every partition", || {
        let handled = handled.lock().expect("not poisoned");
        handled
            .iter()
            .map(|h| h.partition)
            .collect::<BTreeSet<_>>()
            .len()
            == PARTITIONS as usize
    })
    .await;
    let b_started = clock.fetch_add(1, Ordering::SeqCst);
    let b = member("member-b");
    eventually("member-b handles events", || count("member-b", 0) >= 100).await;
    let b_first = handled
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|h| h.member == "member-b")
        .map(|h| h.at)
        .min()
        .expect("member-b handled events");
    eventually("member-a goes on after member-b's first event", || {
        count("member-a", b_first) >= 100
    })
    .await;

    let a_stopping = clock.fetch_add(1, Ordering::SeqCst);
    a.shutdown().await.expect("clean shutdown");
    let a_stopped = clock.fetch_add(1, Ordering::SeqCst);
    eventually("member-b handles events of every partition alone", || {
        handled
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|h| h.member == "member-b" && h.at > a_stopped)
            .map(|h| h.partition)
            .collect::<BTreeSet<_>>()
            .len()
            == PARTITIONS as usize
    })
    .await;
    publishing.store(false, Ordering::SeqCst);
    let rounds = tokio::time::timeout(PATIENCE, producer)
        .await
        .expect("the publisher stops")
        .expect("the publisher did not panic");
    let published = (rounds * KEYS) as usize;
    eventually("every published event is handled", || {
        let handled = handled.lock().expect("not poisoned");
        handled
            .iter()
            .map(|h| &h.event)
            .collect::<std::collections::HashSet<_>>()
            .len()
            == published
    })
    .await;
    // The last commit of what is handled: at shutdown.
    b.shutdown().await.expect("clean shutdown");

    let handled = handled.lock().expect("not poisoned").clone();
    let rebalances = rebalances.lock().expect("not poisoned").clone();
    let of = |who: &str| -> Vec<Rebalanced> {
        rebalances
            .iter()
            .filter(|r| r.member == who)
            .cloned()
            .collect()
    };
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();

    // Nothing lost, nothing redone: every revocation committed what was done before giving it up.
    let mut times: HashMap<&(String, u32), u32> = HashMap::new();
    for h in &handled {
        *times.entry(&h.event).or_default() += 1;
    }
    assert_eq!(times.len(), published, "every event is handled");
    let redone: Vec<&Handled> = handled.iter().filter(|h| times[&h.event] > 1).collect();
    assert!(
        redone.is_empty(),
        "handled more than once: {redone:?}; rebalances: {rebalances:?}"
    );

    // member-a alone had every partition.
    let a_log = of("member-a");
    let a_before: BTreeSet<i32> = a_log
        .iter()
        .filter(|r| !r.revoked && r.at < b_started)
        .flat_map(|r| r.partitions.iter().copied())
        .collect();
    assert_eq!(a_before, all, "member-a alone: {a_log:?}");

    // While member-b joined, member-a gave up some partitions, never all, and got none back.
    let joined = |r: &&Rebalanced| r.at > b_started && r.at < a_stopping;
    let a_revoked: BTreeSet<i32> = a_log
        .iter()
        .filter(joined)
        .filter(|r| r.revoked)
        .flat_map(|r| r.partitions.iter().copied())
        .collect();
    let a_kept: BTreeSet<i32> = all.difference(&a_revoked).copied().collect();
    assert!(
        !a_revoked.is_empty() && !a_kept.is_empty(),
        "cooperative: member-a gives up some partitions, not all: {a_log:?}"
    );
    assert!(
        a_log
            .iter()
            .filter(joined)
            .all(|r| r.revoked || r.partitions.is_empty()),
        "member-a is assigned nothing back while member-b joins: {a_log:?}"
    );
    // member-b was given exactly those, incrementally.
    let b_log = of("member-b");
    let b_joined: BTreeSet<i32> = b_log
        .iter()
        .filter(joined)
        .inspect(|r| assert!(!r.revoked || r.partitions.is_empty(), "{b_log:?}"))
        .flat_map(|r| r.partitions.iter().copied())
        .collect();
    assert_eq!(
        b_joined, a_revoked,
        "member-b gets what member-a gave up: {a_log:?} {b_log:?}"
    );
    // The kept partitions' work went on across the join: member-a handled events of them both before
    // member-b started and after member-b's first event.
    for partition in &a_kept {
        let on = |h: &&Handled| h.member == "member-a" && h.partition == *partition;
        assert!(
            handled.iter().filter(on).any(|h| h.at < b_started),
            "member-a handled partition {partition} before the join"
        );
        assert!(
            handled.iter().filter(on).any(|h| h.at > b_first),
            "member-a still handled partition {partition} after the join"
        );
    }
    // The group's committed offsets are the end of every partition.
    let probe: BaseConsumer = cluster.config().create().expect("consumer");
    for partition in 0..PARTITIONS {
        let (_, high) = probe
            .fetch_watermarks(&topic, partition, PATIENCE)
            .expect("watermarks");
        assert_eq!(
            cluster.committed(&group, &topic, partition),
            Some(high),
            "partition {partition}'s committed offset is its end"
        );
    }
}
