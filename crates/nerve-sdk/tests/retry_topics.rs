//! Retry topics against a real broker: a failing record moves through `<topic>.retry.<n>` while its
//! partition goes on, is handled again no earlier than it is due, ends in the original topic's dead-letter
//! topic when every stage failed (or at once on a permanent failure), and a shutdown while it waits leaves
//! it to the group's next member.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{cluster, eventually, nerve, receive, unique, Cluster, Record, PATIENCE};
use nerve_sdk::retry_topic::{self, retry_topic, RetryTopics};
use nerve_sdk::{
    dlq, envelope, ConsumerBuilder, ConsumerRuntime, Event, EventContext, Handler, HandlerError,
    JsonCodec, Publisher, RetryPolicy,
};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Job {
    key: String,
    seq: u32,
    fate: Fate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Fate {
    Succeed,
    /// Fails transiently in every attempt of the stages before this one, then succeeds.
    SucceedInStage(u32),
    /// Fails transiently in every attempt of the stages before this one, then permanently.
    PoisonedInStage(u32),
    FailTransientlyForever,
}

impl Event for Job {
    const NAME: &'static str = "test.Job";
    const VERSION: u32 = 1;

    fn key(&self) -> Option<String> {
        Some(self.key.clone())
    }
}

fn job(key: &str, seq: u32, fate: Fate) -> Job {
    Job {
        key: key.to_string(),
        seq,
        fate,
    }
}

/// One call of the handler.
#[derive(Debug, Clone)]
struct Attempt {
    seq: u32,
    stage: u32,
    attempt: u32,
    topic: String,
    original_topic: String,
    /// The handler's wall clock when it was called, milliseconds since the Unix epoch.
    at_millis: u64,
    succeeded: bool,
}

/// Does what each job's fate says; logs every call in the order they happened, and reports successes.
#[derive(Clone)]
struct Worker {
    log: Arc<Mutex<Vec<Attempt>>>,
    done: mpsc::UnboundedSender<(EventContext, Job)>,
}

#[async_trait::async_trait]
impl Handler<Job> for Worker {
    async fn handle(&self, ctx: &EventContext, job: Job) -> Result<(), HandlerError> {
        let at_millis = now_millis();
        let result = match job.fate {
            Fate::Succeed => Ok(()),
            Fate::SucceedInStage(stage) | Fate::PoisonedInStage(stage)
                if ctx.retry_stage < stage =>
            {
                Err(HandlerError::transient(format!(
                    "down in stage {}",
                    ctx.retry_stage
                )))
            }
            Fate::SucceedInStage(_) => Ok(()),
            Fate::PoisonedInStage(stage) => Err(HandlerError::permanent(format!(
                "poisoned in stage {stage}"
            ))),
            Fate::FailTransientlyForever => Err(HandlerError::transient("still down")),
        };
        // Logged before the success is reported: the log's order is the order things happened in.
        self.log.lock().expect("not poisoned").push(Attempt {
            seq: job.seq,
            stage: ctx.retry_stage,
            attempt: ctx.attempt,
            topic: ctx.topic.clone(),
            original_topic: ctx.original_topic.clone(),
            at_millis,
            succeeded: result.is_ok(),
        });
        if result.is_ok() {
            let _ = self.done.send((ctx.clone(), job));
        }
        result
    }

    fn name(&self) -> String {
        "worker".to_string()
    }
}

type Done = mpsc::UnboundedReceiver<(EventContext, Job)>;

fn worker() -> (Worker, Arc<Mutex<Vec<Attempt>>>, Done) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (done, rx) = mpsc::unbounded_channel();
    (
        Worker {
            log: Arc::clone(&log),
            done,
        },
        log,
        rx,
    )
}

fn now_millis() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    u64::try_from(since.as_millis()).expect("millis fit")
}

fn in_place(max_attempts: u32) -> RetryPolicy {
    RetryPolicy {
        max_attempts,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
        multiplier: 2.0,
    }
}

fn start(
    cluster: &Cluster,
    group: &str,
    topic: &str,
    handler: Worker,
    attempts: u32,
    delays: &[Duration],
) -> ConsumerRuntime {
    ConsumerBuilder::new(&cluster.group_config(group), JsonCodec)
        .subscribe(topic)
        .handler(handler)
        .retry(in_place(attempts))
        .retry_topics(RetryTopics::new(delays.iter().copied()))
        .commit_interval(Duration::from_millis(100))
        .start()
        .expect("started")
}

fn header<'a>(record: &'a Record, name: &str) -> &'a str {
    record
        .header(name)
        .unwrap_or_else(|| panic!("no header {name} on {record:?}"))
}

fn header_millis(record: &Record, name: &str) -> u64 {
    header(record, name).parse().expect("milliseconds")
}

/// Waits until partition 0 of `topic` holds `count` records and returns them.
async fn stored(cluster: &Cluster, topic: &str, count: usize) -> Vec<Record> {
    eventually(&format!("{count} records in {topic}"), || {
        cluster.read_all(topic).len() >= count
    })
    .await;
    cluster.read_all(topic)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_event_moves_through_the_retry_topics_while_its_partition_goes_on() {
    let cluster = cluster();
    let topic = unique("shipments");
    let group = unique("shippers");
    cluster.create_topic(&topic, 1).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    let failing = publisher
        .publish(&job("a", 0, Fate::SucceedInStage(2)))
        .await
        .expect("published");
    publisher
        .publish(&job("b", 1, Fate::Succeed))
        .await
        .expect("published");
    let last = publisher
        .publish(&job("a", 2, Fate::Succeed))
        .await
        .expect("published");

    let (handler, log, mut done) = worker();
    let delays = [Duration::from_secs(1), Duration::from_secs(1)];
    let runtime = start(&cluster, &group, &topic, handler, 2, &delays);
    let handled = receive(&mut done, 3).await;
    let (retry_1, retry_2) = (retry_topic(&topic, 1), retry_topic(&topic, 2));
    eventually("the group commits past everything, on every topic", || {
        cluster.committed(&group, &topic, 0) == Some(last.offset + 1)
            && cluster.committed(&group, &retry_1, 0) == Some(1)
            && cluster.committed(&group, &retry_2, 0) == Some(1)
    })
    .await;
    runtime.shutdown().await.expect("clean shutdown");
    assert!(done.try_recv().is_err(), "nothing was handled twice");

    assert_eq!(
        handled.iter().map(|(_, j)| j.seq).collect::<Vec<_>>(),
        [1, 2, 0],
        "the later events, of another key and of the same key, were handled before the retried one"
    );
    let (ctx, _) = &handled[2];
    assert_eq!(
        (ctx.retry_stage, ctx.attempt, ctx.topic.as_str(), ctx.offset),
        (2, 1, retry_2.as_str(), 0)
    );
    assert_eq!(ctx.original_topic, topic);
    assert_eq!(ctx.envelope.event_id, failing.event_id, "the same event");
    let (ctx, _) = &handled[0];
    assert_eq!(
        (ctx.retry_stage, ctx.topic.as_str()),
        (0, ctx.original_topic.as_str())
    );

    let log = log.lock().expect("not poisoned").clone();
    let calls: Vec<(u32, u32, bool)> = log
        .iter()
        .filter(|a| a.seq == 0)
        .map(|a| (a.stage, a.attempt, a.succeeded))
        .collect();
    assert_eq!(
        calls,
        [
            (0, 1, false),
            (0, 2, false),
            (1, 1, false),
            (1, 2, false),
            (2, 1, true)
        ],
        "the in-place attempts in every stage, then one success"
    );
    assert!(log
        .iter()
        .all(|a| a.original_topic == topic && (a.stage == 0) == (a.topic == topic)));

    let stage_1 = cluster.read_all(&retry_1);
    let stage_2 = cluster.read_all(&retry_2);
    assert_eq!((stage_1.len(), stage_2.len()), (1, 1), "one record each");
    for (record, stage, attempts_before, error) in [
        (&stage_1[0], 1, 2, "down in stage 0"),
        (&stage_2[0], 2, 4, "down in stage 1"),
    ] {
        assert_eq!(header(record, retry_topic::ATTEMPT), stage.to_string());
        assert_eq!(header(record, retry_topic::ORIGINAL_TOPIC), topic);
        assert_eq!(header(record, retry_topic::ORIGINAL_PARTITION), "0");
        assert_eq!(
            header(record, retry_topic::ORIGINAL_OFFSET),
            failing.offset.to_string()
        );
        assert_eq!(
            header(record, retry_topic::TOTAL_ATTEMPTS),
            attempts_before.to_string()
        );
        assert_eq!(header(record, retry_topic::ERROR), error);
        assert_eq!(
            header(record, envelope::EVENT_ID),
            failing.event_id.to_string(),
            "the original headers are kept"
        );
        assert_eq!(
            record
                .headers
                .iter()
                .filter(|(k, _)| k == retry_topic::ATTEMPT)
                .count(),
            1,
            "the retry headers of the earlier stage are replaced, not repeated"
        );
        assert_eq!(record.key.as_deref(), Some(&b"a"[..]), "the original key");
        assert_eq!(
            serde_json::from_slice::<Job>(record.value.as_deref().expect("a value"))
                .expect("the original value"),
            job("a", 0, Fate::SucceedInStage(2))
        );
        // The stage's first attempt came no earlier than the record was due.
        let first = log
            .iter()
            .find(|a| a.seq == 0 && a.stage == stage && a.attempt == 1)
            .expect("the stage's first attempt");
        let not_before = header_millis(record, retry_topic::NOT_BEFORE);
        assert!(
            first.at_millis >= not_before,
            "stage {stage} ran at {} before it was due at {not_before}",
            first.at_millis
        );
    }
    assert!(
        cluster.read_all(&dlq::dlq_topic(&topic)).is_empty(),
        "nothing was dead-lettered"
    );
}

/// The partitions of `topic`, from the cluster's metadata.
fn partitions(cluster: &Cluster, topic: &str) -> usize {
    let admin: AdminClient<DefaultClientContext> = cluster.config().create().expect("admin client");
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), PATIENCE)
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_event_is_not_handled_before_it_is_due() {
    const EVENTS: u32 = 6;
    let cluster = cluster();
    let topic = unique("invoices");
    let group = unique("invoicers");
    cluster.create_topic(&topic, 3).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    for seq in 0..EVENTS {
        publisher
            .publish(&job(&format!("k{seq}"), seq, Fate::SucceedInStage(1)))
            .await
            .expect("published");
    }

    let (handler, log, mut done) = worker();
    let runtime = start(
        &cluster,
        &group,
        &topic,
        handler,
        1,
        &[Duration::from_secs(2)],
    );
    receive(&mut done, EVENTS as usize).await;
    runtime.shutdown().await.expect("clean shutdown");

    let retry_1 = retry_topic(&topic, 1);
    assert_eq!(
        partitions(&cluster, &retry_1),
        3,
        "created with the original topic's partitions"
    );
    let forwarded: Vec<Record> = (0..3)
        .flat_map(|partition| cluster.read_partition(&retry_1, partition))
        .collect();
    assert_eq!(forwarded.len(), EVENTS as usize);
    let log = log.lock().expect("not poisoned").clone();
    for record in &forwarded {
        let value: Job = serde_json::from_slice(record.value.as_deref().expect("a value"))
            .expect("the original value");
        let not_before = header_millis(record, retry_topic::NOT_BEFORE);
        let retried = log
            .iter()
            .find(|a| a.seq == value.seq && a.stage == 1)
            .expect("handled in stage 1");
        assert!(
            retried.at_millis >= not_before,
            "event {} ran at {} before it was due at {not_before}",
            value.seq,
            retried.at_millis
        );
        let failed = log
            .iter()
            .find(|a| a.seq == value.seq && a.stage == 0)
            .expect("failed in stage 0");
        assert!(
            not_before > failed.at_millis,
            "due after the failure that forwarded it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_failing_in_every_stage_is_dead_lettered_for_its_original_topic() {
    let cluster = cluster();
    let topic = unique("refunds");
    let group = unique("refunders");
    cluster.create_topic(&topic, 1).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    let failing = publisher
        .publish(&job("a", 0, Fate::FailTransientlyForever))
        .await
        .expect("published");
    let last = publisher
        .publish(&job("a", 1, Fate::Succeed))
        .await
        .expect("published");

    let (handler, log, mut done) = worker();
    let delays = [Duration::from_millis(500), Duration::from_millis(500)];
    let runtime = start(&cluster, &group, &topic, handler, 2, &delays);
    receive(&mut done, 1).await;
    let dead = stored(&cluster, &dlq::dlq_topic(&topic), 1).await;
    let (retry_1, retry_2) = (retry_topic(&topic, 1), retry_topic(&topic, 2));
    eventually("nothing is left uncommitted", || {
        cluster.committed(&group, &topic, 0) == Some(last.offset + 1)
            && cluster.committed(&group, &retry_1, 0) == Some(1)
            && cluster.committed(&group, &retry_2, 0) == Some(1)
    })
    .await;
    runtime.shutdown().await.expect("clean shutdown");

    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(header(letter, dlq::ORIGINAL_TOPIC), topic);
    assert_eq!(header(letter, dlq::ORIGINAL_PARTITION), "0");
    assert_eq!(
        header(letter, dlq::ORIGINAL_OFFSET),
        failing.offset.to_string()
    );
    assert_eq!(
        header(letter, dlq::ATTEMPTS),
        "6",
        "2 attempts in each of 3 stages"
    );
    assert_eq!(header(letter, dlq::ERROR), "still down");
    assert_eq!(header(letter, dlq::HANDLER), "worker");
    assert_eq!(
        header(letter, envelope::EVENT_ID),
        failing.event_id.to_string()
    );
    assert!(
        letter
            .headers
            .iter()
            .all(|(k, _)| !k.starts_with("nerve-retry-")),
        "a dead letter is the original record: {:?}",
        letter.headers
    );
    let stages: Vec<u32> = log
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|a| a.seq == 0)
        .map(|a| a.stage)
        .collect();
    assert_eq!(stages, [0, 0, 1, 1, 2, 2]);

    // `nerve dlq` replays it to the topic it was first published to, not to a retry topic.
    let (ok, replayed, stderr) = nerve(
        &cluster.bootstrap,
        &["dlq", "replay", &topic, "--offset", "0"],
    );
    assert!(ok, "{stderr}");
    assert_eq!(
        replayed.trim(),
        format!("replayed {}/0@0 to {topic}", dlq::dlq_topic(&topic))
    );
    let back = stored(&cluster, &topic, 3).await;
    let again = &back[2];
    assert_eq!(
        header(again, envelope::EVENT_ID),
        failing.event_id.to_string()
    );
    assert!(again
        .headers
        .iter()
        .all(|(k, _)| !k.starts_with("nerve-retry-")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_permanent_failure_in_a_retry_stage_goes_straight_to_the_dead_letter_topic() {
    let cluster = cluster();
    let topic = unique("claims");
    let group = unique("adjusters");
    cluster.create_topic(&topic, 1).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    let poisoned = publisher
        .publish(&job("a", 0, Fate::PoisonedInStage(1)))
        .await
        .expect("published");
    let last = publisher
        .publish(&job("b", 1, Fate::Succeed))
        .await
        .expect("published");

    let (handler, log, mut done) = worker();
    let delays = [Duration::from_millis(500), Duration::from_millis(500)];
    let runtime = start(&cluster, &group, &topic, handler, 3, &delays);
    receive(&mut done, 1).await;
    let dead = stored(&cluster, &dlq::dlq_topic(&topic), 1).await;
    let retry_1 = retry_topic(&topic, 1);
    eventually("the group commits past the poison on both topics", || {
        cluster.committed(&group, &topic, 0) == Some(last.offset + 1)
            && cluster.committed(&group, &retry_1, 0) == Some(1)
    })
    .await;
    runtime.shutdown().await.expect("clean shutdown");

    let letter = &dead[0];
    assert_eq!(header(letter, dlq::ERROR), "poisoned in stage 1");
    assert_eq!(
        header(letter, dlq::ATTEMPTS),
        "4",
        "3 in place, then 1 in stage 1"
    );
    assert_eq!(header(letter, dlq::ORIGINAL_TOPIC), topic);
    assert_eq!(
        header(letter, dlq::ORIGINAL_OFFSET),
        poisoned.offset.to_string()
    );
    let stages: Vec<(u32, u32)> = log
        .lock()
        .expect("not poisoned")
        .iter()
        .filter(|a| a.seq == 0)
        .map(|a| (a.stage, a.attempt))
        .collect();
    assert_eq!(
        stages,
        [(0, 1), (0, 2), (0, 3), (1, 1)],
        "not retried in place"
    );
    assert!(
        cluster.read_all(&retry_topic(&topic, 2)).is_empty(),
        "never forwarded to the second stage"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shutdown_does_not_wait_for_a_retry_to_fall_due_and_leaves_it_uncommitted() {
    let cluster = cluster();
    let topic = unique("renewals");
    let group = unique("renewers");
    cluster.create_topic(&topic, 1).await;
    let publisher = Publisher::new(&cluster.config(), &topic, JsonCodec).expect("publisher");
    let failing = publisher
        .publish(&job("a", 0, Fate::SucceedInStage(1)))
        .await
        .expect("published");
    let last = publisher
        .publish(&job("b", 1, Fate::Succeed))
        .await
        .expect("published");

    // Long enough that the first member is gone before the retry is due (checked below, not assumed).
    let delays = [Duration::from_secs(10)];
    let (handler, first_log, _first_done) = worker();
    let first = start(&cluster, &group, &topic, handler, 1, &delays);
    let forwarded = stored(&cluster, &retry_topic(&topic, 1), 1).await;
    let not_before = header_millis(&forwarded[0], retry_topic::NOT_BEFORE);
    let retry_1 = retry_topic(&topic, 1);
    // A member commits a partition's position once it has received a record there: the forwarded record
    // has reached the first member, which holds it (position 0) until it is due.
    eventually("the first member holds the retry, uncommitted", || {
        cluster.committed(&group, &topic, 0) == Some(last.offset + 1)
            && cluster.committed(&group, &retry_1, 0) == Some(0)
    })
    .await;
    tokio::time::timeout(PATIENCE, first.shutdown())
        .await
        .expect("the shutdown did not wait for the retry to fall due")
        .expect("clean shutdown");
    let shut_down_at = now_millis();
    assert!(
        shut_down_at < not_before,
        "this machine took longer than the retry's delay to shut the consumer down: the test proves \
         nothing (shut down at {shut_down_at}, due at {not_before})"
    );
    assert!(
        first_log
            .lock()
            .expect("not poisoned")
            .iter()
            .all(|a| a.stage == 0),
        "the first member never ran the retry"
    );
    assert!(
        cluster.committed(&group, &retry_1, 0) == Some(0),
        "the waiting retry was not committed past"
    );

    let (handler, second_log, mut second_done) = worker();
    let second = start(&cluster, &group, &topic, handler, 1, &delays);
    let handled = receive(&mut second_done, 1).await;
    let (ctx, _) = &handled[0];
    assert_eq!(ctx.envelope.event_id, failing.event_id);
    assert_eq!((ctx.retry_stage, ctx.topic.as_str()), (1, retry_1.as_str()));
    eventually("the second member commits past the retry", || {
        cluster.committed(&group, &retry_1, 0) == Some(1)
    })
    .await;
    second.shutdown().await.expect("clean shutdown");
    let second_log = second_log.lock().expect("not poisoned").clone();
    assert_eq!(second_log.len(), 1, "only the retry: {second_log:?}");
    assert!(
        second_log[0].at_millis >= not_before,
        "not before it was due"
    );
}
