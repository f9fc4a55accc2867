//! `nerve dlq`: the dead letters the SDK's consumers left in `<topic>.dlq` (see `nerve_sdk::dlq` for the
//! headers), listed, shown whole, and replayed to the topic they came from once the handler is fixed.
//!
//! Reading assigns the dead-letter topic's partitions (no consumer group), up to the end each had when
//! the command started. Replay publishes the original key, value and headers (without the `nerve-dlq-*`
//! ones) to the original topic with an idempotent producer, keyed as before so the record joins its key's
//! order again, and adds `nerve-dlq-replayed-from` naming the dead letter, so a replay can be traced and a
//! second replay of the same letter recognized.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use nerve_sdk::dlq;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use super::timestamp::format_rfc3339;
use super::{
    find_topic, print_table, records, row, ClientArgs, ClientLog, TopicPartitions, REQUEST_TIMEOUT,
};

/// The header a replayed record carries: `<dead-letter topic>/<partition>@<offset>`.
pub(crate) const REPLAYED_FROM: &str = "nerve-dlq-replayed-from";

#[derive(Args, Debug)]
#[command(
    after_help = "TOPIC is the original topic (orders) or its dead-letter topic (orders.dlq).

Examples:
  nerve dlq list orders
  nerve dlq show orders --partition 0 --offset 3
  nerve dlq replay orders --partition 0 --offset 3
  nerve dlq replay orders --all"
)]
pub(crate) struct DlqArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: DlqCommand,
}

#[derive(Subcommand, Debug)]
enum DlqCommand {
    /// One line per dead letter: where it is, where it came from, attempts, handler, when, why.
    List {
        topic: String,
        /// Only this partition of the dead-letter topic.
        #[arg(long, short = 'p')]
        partition: Option<i32>,
    },
    /// One dead letter whole: why it died, its headers, key and value.
    Show {
        topic: String,
        /// The dead letter's partition in the dead-letter topic.
        #[arg(long, short = 'p', default_value_t = 0)]
        partition: i32,
        /// The dead letter's offset in the dead-letter topic.
        #[arg(long, short = 'o')]
        offset: i64,
    },
    /// Publishes dead letters again to the topic they came from.
    Replay {
        topic: String,
        /// The partition of the dead-letter topic the offsets are in.
        #[arg(long, short = 'p', default_value_t = 0)]
        partition: i32,
        /// A dead letter to replay (repeatable).
        #[arg(
            long = "offset",
            short = 'o',
            required_unless_present = "all",
            conflicts_with = "all"
        )]
        offsets: Vec<i64>,
        /// Every dead letter of the topic (all partitions).
        #[arg(long)]
        all: bool,
        /// Publish to this topic instead of the original one.
        #[arg(long, value_name = "TOPIC")]
        to: Option<String>,
    },
}

pub(crate) fn run(args: DlqArgs) -> Result<()> {
    match args.command {
        DlqCommand::List { topic, partition } => {
            let letters = read(&args.client, &dlq_of(&topic), partition)?;
            let mut rows = vec![row(&[
                "PARTITION",
                "OFFSET",
                "ORIGINAL",
                "ATTEMPTS",
                "HANDLER",
                "FAILED AT",
                "ERROR",
            ])];
            for letter in &letters {
                let h = headers(letter);
                let original = format!(
                    "{}/{}@{}",
                    h.get(dlq::ORIGINAL_TOPIC).map_or("?", String::as_str),
                    h.get(dlq::ORIGINAL_PARTITION).map_or("?", String::as_str),
                    h.get(dlq::ORIGINAL_OFFSET).map_or("?", String::as_str),
                );
                let failed_at = h
                    .get(dlq::FAILED_AT)
                    .and_then(|t| t.parse().ok())
                    .map_or_else(|| "?".to_string(), format_rfc3339);
                let error: String = h
                    .get(dlq::ERROR)
                    .map_or("?", String::as_str)
                    .replace('\n', " ");
                let error = if error.chars().count() > 80 {
                    format!("{}…", error.chars().take(79).collect::<String>())
                } else {
                    error
                };
                rows.push(vec![
                    letter.partition().to_string(),
                    letter.offset().to_string(),
                    original,
                    h.get(dlq::ATTEMPTS).cloned().unwrap_or_else(|| "?".into()),
                    h.get(dlq::HANDLER).cloned().unwrap_or_else(|| "?".into()),
                    failed_at,
                    error,
                ]);
            }
            print_table(&rows);
            eprintln!(
                "nerve: {} in {}",
                letters_count(letters.len()),
                dlq_of(&topic)
            );
            Ok(())
        }
        DlqCommand::Show {
            topic,
            partition,
            offset,
        } => {
            let letter = find(&args.client, &dlq_of(&topic), partition, offset)?;
            let h = headers(&letter);
            println!("dead letter {}/{partition}@{offset}", dlq_of(&topic));
            for (name, label) in [
                (dlq::ERROR, "error"),
                (dlq::ATTEMPTS, "attempts"),
                (dlq::HANDLER, "handler"),
                (dlq::ORIGINAL_TOPIC, "original topic"),
                (dlq::ORIGINAL_PARTITION, "original partition"),
                (dlq::ORIGINAL_OFFSET, "original offset"),
            ] {
                println!("{label}: {}", h.get(name).map_or("?", String::as_str));
            }
            for (name, label) in [
                (dlq::ORIGINAL_TIMESTAMP, "original timestamp"),
                (dlq::FAILED_AT, "failed at"),
            ] {
                if let Some(millis) = h.get(name).and_then(|t| t.parse().ok()) {
                    println!("{label}: {}", format_rfc3339(millis));
                }
            }
            println!("headers:");
            for (key, value) in original_headers(&letter) {
                println!(
                    "  {key}={}",
                    String::from_utf8_lossy(&value.unwrap_or_default())
                );
            }
            println!("key: {}", text(letter.key()));
            println!("value: {}", text(letter.payload()));
            Ok(())
        }
        DlqCommand::Replay {
            topic,
            partition,
            offsets,
            all,
            to,
        } => {
            let dlq_topic = dlq_of(&topic);
            let letters = if all {
                read(&args.client, &dlq_topic, None)?
            } else {
                offsets
                    .iter()
                    .map(|&offset| find(&args.client, &dlq_topic, partition, offset))
                    .collect::<Result<Vec<_>>>()?
            };
            replay(&args.client, &dlq_topic, &letters, to.as_deref())
        }
    }
}

/// `orders` and `orders.dlq` both name the dead-letter topic `orders.dlq`.
fn dlq_of(topic: &str) -> String {
    if topic.ends_with(".dlq") {
        topic.to_string()
    } else {
        dlq::dlq_topic(topic)
    }
}

fn letters_count(n: usize) -> String {
    if n == 1 {
        "1 dead letter".to_string()
    } else {
        format!("{n} dead letters")
    }
}

/// The `nerve-dlq-*` headers of a dead letter, by name (the last of a name wins).
fn headers(letter: &OwnedMessage) -> BTreeMap<String, String> {
    letter
        .headers()
        .map(|h| {
            h.iter()
                .filter(|h| h.key.starts_with("nerve-dlq-"))
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The headers the record had before it died.
fn original_headers(letter: &OwnedMessage) -> Vec<(String, Option<Vec<u8>>)> {
    letter
        .headers()
        .map(|h| {
            h.iter()
                .filter(|h| !h.key.starts_with("nerve-dlq-"))
                .map(|h| (h.key.to_string(), h.value.map(<[u8]>::to_vec)))
                .collect()
        })
        .unwrap_or_default()
}

fn text(bytes: Option<&[u8]>) -> String {
    match bytes {
        None => "(none)".to_string(),
        Some(b) => String::from_utf8_lossy(b).into_owned(),
    }
}

/// A consumer for the dead-letter topic, and its partitions; an error if it does not exist.
fn open(client: &ClientArgs, topic: &str) -> Result<(BaseConsumer<ClientLog>, TopicPartitions)> {
    let consumer: BaseConsumer<ClientLog> = client
        .consumer_config()?
        .create_with_context(ClientLog::default())
        .context("cannot create the Kafka consumer")?;
    let metadata = client.probe(consumer.client(), consumer.context(), || {
        let _ = consumer.poll(Duration::ZERO);
    })?;
    let found = find_topic(&metadata, topic)
        .map_err(|_| anyhow!("there is no dead-letter topic {topic}: nothing has died there"))?;
    Ok((consumer, found))
}

/// Every dead letter of `topic` (or of one partition), up to the end the partitions had at the start.
fn read(client: &ClientArgs, topic: &str, only: Option<i32>) -> Result<Vec<OwnedMessage>> {
    let (consumer, found) = open(client, topic)?;
    let partitions: Vec<i32> = match only {
        Some(p) => {
            found.check_partition(p)?;
            vec![p]
        }
        None => found.partitions.iter().map(|p| p.id).collect(),
    };
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for &p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the offsets of {topic}/{p}"))?;
        if high > low {
            assignment.add_partition_offset(topic, p, Offset::Offset(low))?;
            ends.insert(p, high);
        }
    }
    read_assigned(&consumer, topic, &assignment, ends)
}

/// The dead letter at `offset` of `partition`.
fn find(client: &ClientArgs, topic: &str, partition: i32, offset: i64) -> Result<OwnedMessage> {
    let (consumer, found) = open(client, topic)?;
    found.check_partition(partition)?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
        .with_context(|| format!("cannot read the offsets of {topic}/{partition}"))?;
    if !(low..high).contains(&offset) {
        bail!(
            "{topic}/{partition} has no dead letter at offset {offset} (it holds {low} to {})",
            high - 1
        );
    }
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    let letters = read_assigned(
        &consumer,
        topic,
        &assignment,
        BTreeMap::from([(partition, offset + 1)]),
    )?;
    letters
        .into_iter()
        .find(|l| l.offset() == offset)
        .ok_or_else(|| anyhow!("{topic}/{partition} has no dead letter at offset {offset}"))
}

/// Reads the assigned partitions until each reached its end in `ends` (exclusive).
fn read_assigned(
    consumer: &BaseConsumer<ClientLog>,
    topic: &str,
    assignment: &TopicPartitionList,
    mut ends: BTreeMap<i32, i64>,
) -> Result<Vec<OwnedMessage>> {
    if ends.is_empty() {
        return Ok(Vec::new());
    }
    consumer
        .assign(assignment)
        .context("cannot assign the partitions")?;
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    let mut letters = Vec::new();
    while !ends.is_empty() {
        if std::time::Instant::now() > deadline {
            bail!("reading {topic} did not reach its end within {REQUEST_TIMEOUT:?}");
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                let partition = message.partition();
                let next = message.offset() + 1;
                if ends
                    .get(&partition)
                    .is_some_and(|&end| message.offset() < end)
                {
                    letters.push(message.detach());
                }
                if ends.get(&partition).is_some_and(|&end| next >= end) {
                    ends.remove(&partition);
                }
            }
            Some(Err(e)) if super::consume::transient(&e) => {}
            Some(Err(e)) => bail!("cannot read {topic}: {e}"),
            None => {}
        }
    }
    letters.sort_by_key(|l| (l.partition(), l.offset()));
    Ok(letters)
}

fn replay(
    client: &ClientArgs,
    dlq_topic: &str,
    letters: &[OwnedMessage],
    to: Option<&str>,
) -> Result<()> {
    if letters.is_empty() {
        eprintln!("nerve: no dead letter in {dlq_topic}: nothing to replay");
        return Ok(());
    }
    let producer: FutureProducer<ClientLog> = client
        .client_config()?
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create_with_context(ClientLog::default())
        .context("cannot create the Kafka producer")?;
    let mut sent: BTreeMap<String, u64> = BTreeMap::new();
    for letter in letters {
        let h = headers(letter);
        let target = match to {
            Some(t) => t.to_string(),
            None => h.get(dlq::ORIGINAL_TOPIC).cloned().ok_or_else(|| {
                anyhow!(
                    "{dlq_topic}/{}@{} has no {} header: give the topic with --to",
                    letter.partition(),
                    letter.offset(),
                    dlq::ORIGINAL_TOPIC
                )
            })?,
        };
        let replayed_from = format!("{dlq_topic}/{}@{}", letter.partition(), letter.offset());
        let mut replay_headers = OwnedHeaders::new();
        for (key, value) in original_headers(letter) {
            replay_headers = replay_headers.insert(Header {
                key: &key,
                value: value.as_deref(),
            });
        }
        replay_headers = replay_headers.insert(Header {
            key: REPLAYED_FROM,
            value: Some(replayed_from.as_bytes()),
        });
        let mut record = FutureRecord::<[u8], [u8]>::to(&target).headers(replay_headers);
        if let Some(key) = letter.key() {
            record = record.key(key);
        }
        if let Some(value) = letter.payload() {
            record = record.payload(value);
        }
        let delivery = producer
            .send_result(record)
            .map_err(|(e, _)| anyhow!("cannot replay {replayed_from} to {target}: {e}"))?;
        futures::executor::block_on(delivery)
            .map_err(|_| anyhow!("the producer stopped before {replayed_from} was delivered"))?
            .map_err(|(e, _)| anyhow!("cannot replay {replayed_from} to {target}: {e}"))?;
        println!("replayed {replayed_from} to {target}");
        *sent.entry(target).or_default() += 1;
    }
    producer
        .flush(REQUEST_TIMEOUT)
        .context("the replayed records were not all delivered")?;
    for (target, n) in sent {
        eprintln!("nerve: {} replayed to {target}", records(n));
    }
    Ok(())
}
