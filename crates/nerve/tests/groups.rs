//! Consumer groups with a real client (librdkafka through rdkafka): `subscribe` spreads a topic's
//! partitions over the members, membership changes move them, a member that dies without leaving loses
//! them after its session timeout, and committed offsets survive a broker restart. Waits are bounded by
//! [`PATIENCE`]; nothing asserts on timing.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{create_topic, produce, record, restartable_port, Nerve, PATIENCE};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};

const PARTITIONS: i32 = 6;

/// A consumer in `group` with the shortest session the broker allows (6 s), so that a dead member is noticed
/// soon.
fn member(bootstrap: &str, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .create()
        .expect("consumer")
}

fn assignment(consumer: &BaseConsumer) -> BTreeSet<i32> {
    consumer
        .assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Polls every member until each holds at least one partition, no partition is held twice, and together
/// they hold `0..PARTITIONS` plus `elsewhere` (partitions held by members outside this process), then
/// returns their assignments. `ready` can demand more of the assignments before they count as settled.
fn settle(
    members: &[&BaseConsumer],
    elsewhere: &BTreeSet<i32>,
    ready: impl Fn(&[BTreeSet<i32>]) -> bool,
) -> Vec<BTreeSet<i32>> {
    let started = Instant::now();
    loop {
        for member in members {
            // Records are not what these tests look at; polling drives the group protocol.
            let _ = member.poll(Timeout::After(Duration::from_millis(50)));
        }
        let assignments: Vec<BTreeSet<i32>> = members.iter().map(|m| assignment(m)).collect();
        let total: usize = assignments.iter().map(BTreeSet::len).sum::<usize>() + elsewhere.len();
        let union: BTreeSet<i32> = assignments
            .iter()
            .flatten()
            .chain(elsewhere)
            .copied()
            .collect();
        let settled = assignments.iter().all(|a| !a.is_empty())
            && total == union.len()
            && union == (0..PARTITIONS).collect()
            && ready(&assignments);
        if settled {
            return assignments;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the group never settled: {assignments:?} here, {elsewhere:?} elsewhere"
        );
    }
}

#[test]
fn three_members_on_six_partitions_get_every_partition_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "spread", PARTITIONS);
    let members: Vec<BaseConsumer> = (0..3)
        .map(|_| member(&nerve.bootstrap(), "spreaders"))
        .collect();
    for m in &members {
        m.subscribe(&["spread"]).expect("subscribe");
    }
    let refs: Vec<&BaseConsumer> = members.iter().collect();
    let assignments = settle(&refs, &BTreeSet::new(), |_| true);
    assert!(
        assignments.iter().all(|a| a.len() == 2),
        "the range assignor splits 6 partitions 2-2-2: {assignments:?}"
    );
}

#[test]
fn a_new_member_triggers_a_rebalance_that_moves_partitions_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "growing", PARTITIONS);
    let first = member(&nerve.bootstrap(), "growers");
    let second = member(&nerve.bootstrap(), "growers");
    first.subscribe(&["growing"]).unwrap();
    second.subscribe(&["growing"]).unwrap();
    let before = settle(&[&first, &second], &BTreeSet::new(), |_| true);
    assert_eq!(before.iter().map(BTreeSet::len).sum::<usize>(), 6);

    let third = member(&nerve.bootstrap(), "growers");
    third.subscribe(&["growing"]).unwrap();
    let after = settle(&[&first, &second, &third], &BTreeSet::new(), |_| true);
    assert!(!after[2].is_empty(), "the newcomer got partitions");
    assert!(
        after[0].len() < before[0].len() || after[1].len() < before[1].len(),
        "partitions moved from the earlier members: {before:?} -> {after:?}"
    );
}

#[test]
fn cooperative_sticky_members_keep_their_partitions_when_a_member_joins() {
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "sticky", PARTITIONS);
    let cooperative = || {
        ClientConfig::new()
            .set("bootstrap.servers", nerve.bootstrap())
            .set("group.id", "stickers")
            .set("enable.auto.commit", "false")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "500")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .create::<BaseConsumer>()
            .expect("consumer")
    };
    let first = cooperative();
    let second = cooperative();
    first.subscribe(&["sticky"]).unwrap();
    second.subscribe(&["sticky"]).unwrap();
    let before = settle(&[&first, &second], &BTreeSet::new(), |_| true);

    let third = cooperative();
    third.subscribe(&["sticky"]).unwrap();
    let after = settle(&[&first, &second, &third], &BTreeSet::new(), |_| true);
    for (member, (held, holds)) in before.iter().zip(&after).enumerate() {
        assert!(
            holds.is_subset(held),
            "member {member} only gave partitions up: {before:?} -> {after:?}"
        );
    }
}

#[test]
fn committed_offsets_survive_a_broker_restart() {
    let dir = tempfile::tempdir().unwrap();
    let port = restartable_port();
    let nerve = Nerve::start_on(dir.path(), port, &[]);
    let bootstrap = nerve.bootstrap();
    create_topic(&bootstrap, "resumable", 1);
    let records: Vec<_> = (0..10).map(record).collect();
    let producer = common::producer(&nerve, &[]);
    produce(&producer, "resumable", &records);
    drop(producer);

    let reader = member(&bootstrap, "resumers");
    reader.subscribe(&["resumable"]).unwrap();
    let started = Instant::now();
    let mut seen = 0;
    while seen < 4 {
        assert!(started.elapsed() < PATIENCE, "only {seen} records arrived");
        if let Some(message) = reader.poll(Timeout::After(Duration::from_millis(100))) {
            let message = message.expect("a record");
            assert_eq!(message.offset(), seen);
            seen += 1;
        }
    }
    // Offset 4 is the next to read; the metadata rides along.
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset("resumable", 0, Offset::Offset(4))
        .unwrap();
    offsets
        .find_partition("resumable", 0)
        .unwrap()
        .set_metadata("after record 3");
    reader.commit(&offsets, CommitMode::Sync).expect("commit");
    reader.close_queue().ok();
    drop(reader);

    nerve.stop();
    let nerve = Nerve::start_on(dir.path(), port, &[]);
    let resumed = member(&nerve.bootstrap(), "resumers");
    let committed = resumed
        .committed_offsets(
            {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition("resumable", 0);
                tpl
            },
            PATIENCE,
        )
        .expect("committed offsets");
    let entry = committed.find_partition("resumable", 0).unwrap();
    assert_eq!(entry.offset(), Offset::Offset(4));
    assert_eq!(entry.metadata(), "after record 3");
    resumed.subscribe(&["resumable"]).unwrap();
    let started = Instant::now();
    let first = loop {
        assert!(
            started.elapsed() < PATIENCE,
            "nothing arrived after the restart"
        );
        if let Some(message) = resumed.poll(Timeout::After(Duration::from_millis(100))) {
            break message.expect("a record").offset();
        }
    };
    assert_eq!(
        first, 4,
        "the new member resumes after the committed offset"
    );
}

#[test]
fn no_record_is_lost_while_members_join_and_leave() {
    const RECORDS: u64 = 3000;
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    let bootstrap = nerve.bootstrap();
    create_topic(&bootstrap, "numbered", PARTITIONS);
    let (producer, deliveries) = common::recording_producer(&bootstrap, &[]);
    for number in 0..RECORDS {
        let partition = i32::try_from(number % 6).unwrap();
        common::send_numbered(&producer, "numbered", Some(partition), "k", number);
    }
    rdkafka::producer::Producer::flush(&producer, PATIENCE).expect("flushed");
    assert_eq!(deliveries.acked_count(), usize::try_from(RECORDS).unwrap());

    // Each member commits after every ten records it processed; a record processed but not committed when
    // its partition moves is processed again by the next owner (at least once), never skipped.
    let processed: Mutex<BTreeSet<u64>> = Mutex::default();
    let mut members: Vec<(BaseConsumer, usize)> = Vec::new();
    let join = |members: &mut Vec<(BaseConsumer, usize)>| {
        let m = member(&bootstrap, "numbered-readers");
        m.subscribe(&["numbered"]).unwrap();
        members.push((m, 0));
    };
    join(&mut members);
    let started = Instant::now();
    let mut step = 0;
    while processed.lock().unwrap().len() < usize::try_from(RECORDS).unwrap() {
        assert!(
            started.elapsed() < PATIENCE * 2,
            "{} of {RECORDS} records processed",
            processed.lock().unwrap().len()
        );
        for (m, since_commit) in &mut members {
            if let Some(Ok(message)) = m.poll(Timeout::After(Duration::from_millis(5))) {
                let number: u64 = std::str::from_utf8(message.payload().unwrap())
                    .unwrap()
                    .parse()
                    .unwrap();
                processed.lock().unwrap().insert(number);
                *since_commit += 1;
                if *since_commit >= 10 {
                    // Fails harmlessly while the member is being rebalanced.
                    let _ = m.commit_consumer_state(CommitMode::Sync);
                    *since_commit = 0;
                }
            }
        }
        // Membership changes at fixed points of progress: two members join, then the first leaves.
        let done = processed.lock().unwrap().len();
        let next = [500, 1200, 1900][..].get(step).copied();
        if next.is_some_and(|at| done >= at) {
            match step {
                0 | 1 => join(&mut members),
                _ => {
                    let (first, _) = members.remove(0);
                    let _ = first.commit_consumer_state(CommitMode::Sync);
                    drop(first);
                }
            }
            step += 1;
        }
    }
    assert_eq!(step, 3, "every membership change happened before the end");
    let processed = processed.into_inner().unwrap();
    assert_eq!(processed, (0..RECORDS).collect::<BTreeSet<u64>>());
}

/// The environment variable that turns the test binary, re-run by
/// [`a_killed_member_loses_its_partitions_to_the_others_after_its_session_timeout`], into a group member.
const MEMBER_ENV: &str = "NERVE_TEST_GROUP_MEMBER";
const KILLED_MEMBER_TEST: &str =
    "a_killed_member_loses_its_partitions_to_the_others_after_its_session_timeout";

/// The child process that the test starts and SIGKILLs: it joins the group named in `spec` and prints its
/// assignment whenever it changes, until it is killed.
fn run_member(spec: &str) -> ! {
    let mut parts = spec.split(',');
    let (bootstrap, group, topic) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap(),
    );
    let consumer = member(bootstrap, group);
    consumer.subscribe(&[topic]).unwrap();
    let mut last = None;
    loop {
        let _ = consumer.poll(Timeout::After(Duration::from_millis(50)));
        let now = assignment(&consumer);
        if last.as_ref() != Some(&now) {
            let list: Vec<String> = now.iter().map(i32::to_string).collect();
            println!("assigned {}", list.join(","));
            last = Some(now);
        }
    }
}

#[test]
fn a_killed_member_loses_its_partitions_to_the_others_after_its_session_timeout() {
    if let Ok(spec) = std::env::var(MEMBER_ENV) {
        run_member(&spec);
    }
    let dir = tempfile::tempdir().unwrap();
    let nerve = Nerve::start(dir.path());
    create_topic(&nerve.bootstrap(), "survivors", PARTITIONS);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", KILLED_MEMBER_TEST, "--nocapture"])
        .env(MEMBER_ENV, format!("{},dying,survivors", nerve.bootstrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("member process starts");
    let child_assignment: Arc<Mutex<BTreeSet<i32>>> = Arc::default();
    let reader = {
        let stdout = child.stdout.take().unwrap();
        let child_assignment = child_assignment.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(list) = line.strip_prefix("assigned ") {
                    *child_assignment.lock().unwrap() = list
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| p.parse().unwrap())
                        .collect();
                }
            }
        })
    };
    let a = member(&nerve.bootstrap(), "dying");
    let b = member(&nerve.bootstrap(), "dying");
    a.subscribe(&["survivors"]).unwrap();
    b.subscribe(&["survivors"]).unwrap();
    // Three members, the child holding some partitions.
    let started = Instant::now();
    let held_by_child = loop {
        let elsewhere = child_assignment.lock().unwrap().clone();
        if !elsewhere.is_empty() {
            let assignments: Vec<BTreeSet<i32>> = [&a, &b].iter().map(|m| assignment(m)).collect();
            let disjoint_cover = assignments.iter().all(|s| !s.is_empty())
                && assignments.iter().map(BTreeSet::len).sum::<usize>() + elsewhere.len() == 6
                && assignments
                    .iter()
                    .flatten()
                    .chain(&elsewhere)
                    .copied()
                    .collect::<BTreeSet<i32>>()
                    == (0..PARTITIONS).collect();
            if disjoint_cover {
                break elsewhere;
            }
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the three members never settled"
        );
        for m in [&a, &b] {
            let _ = m.poll(Timeout::After(Duration::from_millis(50)));
        }
    };

    // SIGKILL: no LeaveGroup; only the session timeout tells the broker.
    child.kill().expect("SIGKILL");
    child.wait().expect("reaped");
    reader.join().unwrap();
    let after = settle(&[&a, &b], &BTreeSet::new(), |_| true);
    let taken_over: BTreeSet<i32> = after.iter().flatten().copied().collect();
    assert!(
        held_by_child.is_subset(&taken_over),
        "the dead member's partitions {held_by_child:?} went to the others: {after:?}"
    );
}
