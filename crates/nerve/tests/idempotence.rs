//! An idempotent producer's retries store nothing twice, and records with one key keep their order.
//!
//! A small TCP proxy sits between the client and the broker (the broker advertises the proxy, so every
//! connection of the client goes through it). It forwards bytes both ways and reads just enough of the Kafka
//! framing to recognise Produce requests and their responses; at chosen moments it cuts the connection after
//! the broker has answered a Produce request and before the answer reaches the client. The broker stored
//! that batch, but the client never heard so and must send it again.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    any_free_port, create_topic, number_of, read_all, recording_producer, send_numbered,
    Deliveries, Nerve, Stored, PATIENCE,
};
use rdkafka::producer::Producer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Kafka's API key of Produce.
const PRODUCE: i16 = 0;

/// Which Produce responses the proxy withholds: every `every`-th one, `max_cuts` times at most.
struct Faults {
    every: u64,
    max_cuts: u64,
    produce_responses: AtomicU64,
    cuts: AtomicU64,
}

impl Faults {
    fn new(every: u64, max_cuts: u64) -> Arc<Faults> {
        Arc::new(Faults {
            every,
            max_cuts,
            produce_responses: AtomicU64::new(0),
            cuts: AtomicU64::new(0),
        })
    }

    /// Called for each Produce response: whether to cut the connection instead of delivering it.
    fn cut_now(&self) -> bool {
        let n = self.produce_responses.fetch_add(1, Ordering::AcqRel) + 1;
        if !n.is_multiple_of(self.every) {
            return false;
        }
        self.cuts
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |cuts| {
                (cuts < self.max_cuts).then_some(cuts + 1)
            })
            .is_ok()
    }

    fn cuts(&self) -> u64 {
        self.cuts.load(Ordering::Acquire)
    }
}

/// A broker behind a fault-injecting proxy. Dropping it stops both.
struct Proxied {
    _nerve: Nerve,
    proxy: SocketAddr,
    faults: Arc<Faults>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Proxied {
    fn start(faults: Arc<Faults>) -> Proxied {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(TcpListener::bind("127.0.0.1:0"))
            .expect("proxy binds");
        let proxy = listener.local_addr().expect("proxy address");
        let dir = tempfile::tempdir().unwrap();
        let broker_port = any_free_port();
        let nerve = Nerve::start_on(
            dir.path(),
            broker_port,
            &["--advertised-listener".to_string(), proxy.to_string()],
        );
        let upstream = SocketAddr::from(([127, 0, 0, 1], broker_port));
        runtime.spawn(accept(listener, upstream, faults.clone()));
        Proxied {
            _nerve: nerve,
            proxy,
            faults,
            _runtime: runtime,
            _dir: dir,
        }
    }

    fn bootstrap(&self) -> String {
        self.proxy.to_string()
    }
}

async fn accept(listener: TcpListener, upstream: SocketAddr, faults: Arc<Faults>) {
    while let Ok((client, _)) = listener.accept().await {
        tokio::spawn(relay(client, upstream, faults.clone()));
    }
}

/// Relays one client connection frame by frame until either side closes or a fault cuts it; then both
/// connections are dropped (closed).
async fn relay(client: TcpStream, upstream: SocketAddr, faults: Arc<Faults>) {
    let Ok(broker) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = broker.set_nodelay(true);
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_broker, mut to_broker) = broker.into_split();
    // Correlation ids of the Produce requests forwarded and not answered yet.
    let produce_requests = Mutex::new(HashSet::new());
    let requests = async {
        while let Some(frame) = read_frame(&mut from_client).await {
            // Request header: api_key (i16), api_version (i16), correlation_id (i32).
            if frame.len() >= 12 && i16::from_be_bytes([frame[4], frame[5]]) == PRODUCE {
                let correlation_id = i32::from_be_bytes(frame[8..12].try_into().unwrap());
                produce_requests.lock().unwrap().insert(correlation_id);
            }
            if to_broker.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    let responses = async {
        while let Some(frame) = read_frame(&mut from_broker).await {
            // Response header: correlation_id (i32).
            let correlation_id = i32::from_be_bytes(frame[4..8].try_into().unwrap());
            let is_produce = produce_requests.lock().unwrap().remove(&correlation_id);
            if is_produce && faults.cut_now() {
                return;
            }
            if to_client.write_all(&frame).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = requests => {}
        () = responses => {}
    }
}

/// One whole frame, its 4-byte length prefix included; `None` at the end of the stream.
async fn read_frame(from: &mut tokio::net::tcp::OwnedReadHalf) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    from.read_exact(&mut len).await.ok()?;
    let body_len = usize::try_from(i32::from_be_bytes(len)).ok()?;
    let mut frame = vec![0u8; 4 + body_len];
    frame[..4].copy_from_slice(&len);
    from.read_exact(&mut frame[4..]).await.ok()?;
    (frame.len() >= 8).then_some(frame)
}

const PARTITIONS: i32 = 3;

/// Sends records `0..count` to partition `number % PARTITIONS`, in small bursts so that they travel in many
/// Produce requests, then waits for every delivery report.
fn produce_numbered(
    proxied: &Proxied,
    topic: &str,
    count: u64,
    idempotence: bool,
) -> Arc<Deliveries> {
    let (producer, deliveries) = recording_producer(
        &proxied.bootstrap(),
        &[
            (
                "enable.idempotence",
                if idempotence { "true" } else { "false" },
            ),
            ("linger.ms", "1"),
            ("batch.num.messages", "20"),
        ],
    );
    for number in 0..count {
        let partition = i32::try_from(number % PARTITIONS as u64).unwrap();
        send_numbered(
            &producer,
            topic,
            Some(partition),
            &number.to_string(),
            number,
        );
        if number % 30 == 29 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    producer.flush(PATIENCE).expect("every record delivered");
    assert!(producer.client().fatal_error().is_none());
    eprintln!(
        "{topic}: {} connections cut after {} Produce responses",
        proxied.faults.cuts(),
        proxied.faults.produce_responses.load(Ordering::Acquire)
    );
    deliveries
}

fn numbers(partition: &[Stored]) -> Vec<u64> {
    partition.iter().map(number_of).collect()
}

#[test]
fn idempotent_retries_after_a_dropped_connection_store_no_duplicates() {
    const COUNT: u64 = 3000;
    let topic = "retried";
    let proxied = Proxied::start(Faults::new(4, 20));
    create_topic(&proxied.bootstrap(), topic, PARTITIONS);
    let deliveries = produce_numbered(&proxied, topic, COUNT, true);
    assert!(
        proxied.faults.cuts() >= 5,
        "only {} connections were cut: the test did not exercise retries",
        proxied.faults.cuts()
    );
    assert!(deliveries.failed.lock().unwrap().is_empty());
    assert_eq!(deliveries.acked_count(), COUNT as usize);

    let stored = read_all(&proxied.bootstrap(), topic, PARTITIONS);
    for (partition, records) in stored.iter().enumerate() {
        let expected: Vec<u64> = (0..COUNT)
            .filter(|n| n % PARTITIONS as u64 == partition as u64)
            .collect();
        assert_eq!(
            numbers(records),
            expected,
            "partition {partition} must hold each of its records once, in the order sent"
        );
    }
    // Each acknowledgement, including those of retries answered as duplicates, names where the record is.
    let acked = deliveries.acked.lock().unwrap();
    for record in stored.iter().flatten() {
        assert_eq!(
            acked[&number_of(record)],
            (record.partition, record.offset),
            "record {} was acknowledged at another offset than where it is",
            number_of(record)
        );
    }
}

/// The control experiment: the same faults without idempotence do store records twice, which shows that
/// the proxy cuts connections at moments that force a resend of stored batches.
#[test]
fn without_idempotence_the_same_dropped_connections_store_duplicates() {
    const COUNT: u64 = 3000;
    let topic = "retried-plain";
    let proxied = Proxied::start(Faults::new(4, 20));
    create_topic(&proxied.bootstrap(), topic, PARTITIONS);
    let deliveries = produce_numbered(&proxied, topic, COUNT, false);
    assert!(proxied.faults.cuts() >= 5);
    assert!(deliveries.failed.lock().unwrap().is_empty());

    let stored = read_all(&proxied.bootstrap(), topic, PARTITIONS);
    let mut seen = HashSet::new();
    let duplicates = stored
        .iter()
        .flatten()
        .filter(|record| !seen.insert(number_of(record)))
        .count();
    assert_eq!(seen.len(), COUNT as usize, "every record is stored");
    eprintln!("{topic}: {duplicates} records stored twice");
    assert!(
        duplicates > 0,
        "{} cuts stored no duplicate",
        proxied.faults.cuts()
    );
}

#[test]
fn records_with_the_same_key_keep_their_order_across_partitions() {
    const KEYS: u64 = 120;
    const PER_KEY: u64 = 25;
    const PARTITIONS: i32 = 6;
    let topic = "keyed";
    // Through the proxy, with retries, so that order is kept under resends too.
    let proxied = Proxied::start(Faults::new(5, 10));
    create_topic(&proxied.bootstrap(), topic, PARTITIONS);
    let (producer, deliveries) = recording_producer(
        &proxied.bootstrap(),
        &[("linger.ms", "1"), ("batch.num.messages", "20")],
    );
    // Record number `seq * KEYS + key` is the `seq`-th record of its key; keys interleave.
    for seq in 0..PER_KEY {
        for key in 0..KEYS {
            send_numbered(
                &producer,
                topic,
                None,
                &format!("key-{key}"),
                seq * KEYS + key,
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    producer.flush(PATIENCE).expect("every record delivered");
    assert!(deliveries.failed.lock().unwrap().is_empty());
    assert!(proxied.faults.cuts() > 0, "no connection was cut");

    let stored = read_all(&proxied.bootstrap(), topic, PARTITIONS);
    // key -> (partitions it appears in, its sequence numbers in stored order)
    let mut by_key: BTreeMap<u64, (HashSet<i32>, Vec<u64>)> = BTreeMap::new();
    for record in stored.iter().flatten() {
        let number = number_of(record);
        let key = number % KEYS;
        assert_eq!(
            record.key.as_deref(),
            Some(format!("key-{key}").as_bytes()),
            "{record:?}"
        );
        let entry = by_key.entry(key).or_default();
        entry.0.insert(record.partition);
        entry.1.push(number / KEYS);
    }
    assert_eq!(by_key.len(), KEYS as usize, "every key is stored");
    for (key, (partitions, seqs)) in &by_key {
        assert_eq!(
            partitions.len(),
            1,
            "key-{key} is spread over partitions {partitions:?}"
        );
        assert_eq!(
            *seqs,
            (0..PER_KEY).collect::<Vec<_>>(),
            "key-{key} must hold its records once each, in the order sent"
        );
    }
    let used: HashSet<i32> = by_key
        .values()
        .flat_map(|(p, _)| p.iter().copied())
        .collect();
    assert_eq!(
        used.len(),
        PARTITIONS as usize,
        "the keys spread over all partitions"
    );
}
