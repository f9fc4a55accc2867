//! Acknowledged records survive the broker dying: SIGKILL at random moments, and SIGTERM while appends are
//! in flight. A real idempotent producer (librdkafka) keeps sending across the restarts; afterwards every
//! record it was told is stored must be there, exactly once, where the acknowledgement said.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{
    create_topic, create_topic_with_configs, number_of, read_all, recording_producer,
    restartable_port, send_numbered, Deliveries, Nerve, RecordingProducer, Stored, PATIENCE,
};
use rand::Rng;
use rdkafka::producer::Producer;

const PARTITIONS: i32 = 4;
/// Records are keyed by number modulo this, so each key's records keep a partition.
const KEYS: u64 = 40;

fn key_of(number: u64) -> String {
    format!("key-{}", number % KEYS)
}

/// Sends numbered records 0, 1, 2, ... until `stop`, a few at a time, and returns how many it sent.
fn send_until(producer: &RecordingProducer, topic: &str, stop: &AtomicBool) -> u64 {
    let mut number = 0;
    while !stop.load(Ordering::Acquire) {
        for _ in 0..10 {
            send_numbered(producer, topic, None, &key_of(number), number);
            number += 1;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    number
}

/// Sets the flag when dropped, so that a failing test stops its sender thread (and the scope can end)
/// instead of waiting for it forever.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Checks what the log holds against what was sent and acknowledged: every record is one that was sent (a
/// number below `sent`, with its key), none appears twice, each partition holds its records in the order they
/// were sent, and every acknowledged record is at the partition and offset its acknowledgement named.
fn check_log(stored: &[Vec<Stored>], sent: u64, deliveries: &Deliveries) {
    let failed = deliveries.failed.lock().unwrap();
    assert!(
        failed.is_empty(),
        "{} records were not delivered, e.g. {:?}",
        failed.len(),
        failed.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(
        *deliveries.reported_twice.lock().unwrap(),
        Vec::<u64>::new()
    );

    let mut found: BTreeMap<u64, (i32, i64)> = BTreeMap::new();
    for partition in stored {
        let mut previous: Option<u64> = None;
        for record in partition {
            let number = number_of(record);
            assert!(
                number < sent,
                "{record:?} holds a number that was never sent"
            );
            assert_eq!(
                record.key.as_deref(),
                Some(key_of(number).as_bytes()),
                "{record:?} has the wrong key"
            );
            if let Some(earlier) = found.insert(number, (record.partition, record.offset)) {
                panic!("record {number} is stored twice: at {earlier:?} and at {record:?}");
            }
            if let Some(previous) = previous {
                assert!(
                    number > previous,
                    "partition {} holds {number} after {previous}: out of send order",
                    record.partition
                );
            }
            previous = Some(number);
        }
    }
    let acked = deliveries.acked.lock().unwrap();
    assert!(!acked.is_empty());
    let mut lost = Vec::new();
    for (number, at) in acked.iter() {
        match found.get(number) {
            None => lost.push(*number),
            Some(stored_at) => assert_eq!(
                stored_at, at,
                "record {number} is stored elsewhere than its acknowledgement said"
            ),
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged records are missing, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
}

#[test]
fn acknowledged_records_survive_repeated_sigkill_of_the_broker() {
    const KILLS: usize = 6;
    let topic = "sigkill";
    let dir = tempfile::tempdir().unwrap();
    let port = restartable_port();
    let mut nerve = Nerve::start_on(dir.path(), port, &[]);
    let bootstrap = nerve.bootstrap();
    // Small segments, so that the log rolls (writing producer-state snapshots) between the kills too.
    create_topic_with_configs(&bootstrap, topic, PARTITIONS, &[("segment.bytes", "16384")]);
    let (producer, deliveries) = recording_producer(&bootstrap, &[("linger.ms", "2")]);

    let stop = AtomicBool::new(false);
    let mut rng = rand::rng();
    let (sent, nerve) = std::thread::scope(|scope| {
        let sender = scope.spawn(|| send_until(&producer, topic, &stop));
        let _stop_sender = StopOnDrop(&stop);
        for _ in 0..KILLS {
            // Each incarnation acknowledges something before it dies, so every kill interrupts a producer
            // that is connected and has appends in flight.
            deliveries.wait_for_more_than(deliveries.acked_count() + 20);
            std::thread::sleep(Duration::from_millis(rng.random_range(0..800)));
            nerve.kill();
            nerve = Nerve::start_on(dir.path(), port, &[]);
        }
        deliveries.wait_for_more_than(deliveries.acked_count() + 20);
        stop.store(true, Ordering::Release);
        (sender.join().expect("sender"), nerve)
    });
    producer.flush(PATIENCE).expect("every record delivered");
    assert!(producer.client().fatal_error().is_none());

    // Once more, now that everything is acknowledged: nothing acknowledged may depend on the process living.
    nerve.kill();
    let nerve = Nerve::start_on(dir.path(), port, &[]);
    let stored = read_all(&nerve.bootstrap(), topic, PARTITIONS);
    eprintln!(
        "{topic}: sent {sent}, acknowledged {}, stored {:?}",
        deliveries.acked_count(),
        stored.iter().map(Vec::len).collect::<Vec<_>>()
    );
    check_log(&stored, sent, &deliveries);
    assert_eq!(
        stored.iter().map(Vec::len).sum::<usize>(),
        deliveries.acked_count(),
        "after a successful flush every record is acknowledged, so the log holds exactly those"
    );
}

#[test]
fn a_graceful_shutdown_flushes_in_flight_appends() {
    const STOPS: usize = 3;
    let topic = "sigterm";
    let dir = tempfile::tempdir().unwrap();
    let port = restartable_port();
    let mut nerve = Nerve::start_on(dir.path(), port, &[]);
    let bootstrap = nerve.bootstrap();
    create_topic(&bootstrap, topic, PARTITIONS);
    let (producer, deliveries) = recording_producer(&bootstrap, &[("linger.ms", "2")]);

    let stop = AtomicBool::new(false);
    let (sent, nerve) = std::thread::scope(|scope| {
        let sender = scope.spawn(|| send_until(&producer, topic, &stop));
        let _stop_sender = StopOnDrop(&stop);
        for _ in 0..STOPS {
            deliveries.wait_for_more_than(deliveries.acked_count() + 100);
            let status = nerve.terminate();
            assert!(status.success(), "nerve exited with {status} on SIGTERM");
            nerve = Nerve::start_on(dir.path(), port, &[]);
        }
        deliveries.wait_for_more_than(deliveries.acked_count() + 100);
        stop.store(true, Ordering::Release);
        (sender.join().expect("sender"), nerve)
    });
    producer.flush(PATIENCE).expect("every record delivered");
    assert!(producer.client().fatal_error().is_none());

    let status = nerve.terminate();
    assert!(status.success(), "nerve exited with {status} on SIGTERM");
    let nerve = Nerve::start_on(dir.path(), port, &[]);
    let stored = read_all(&nerve.bootstrap(), topic, PARTITIONS);
    eprintln!(
        "{topic}: sent {sent}, acknowledged {}, stored {:?}",
        deliveries.acked_count(),
        stored.iter().map(Vec::len).collect::<Vec<_>>()
    );
    check_log(&stored, sent, &deliveries);
    assert_eq!(
        stored.iter().map(Vec::len).sum::<usize>(),
        deliveries.acked_count()
    );
}
