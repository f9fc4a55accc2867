//! `nerve produce`: one record per line of stdin.
//!
//! Records are sent as they are read (so an interactive session sees each line go out) and the command
//! waits for every delivery report before it exits, so its exit status says whether everything was
//! written. Lines are split at `\n` only and sent byte for byte, so a value may hold any bytes but a newline.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::{find_topic, parse_key_value, records, ClientArgs, ClientLog};

/// How long librdkafka keeps retrying one record before reporting it failed: long enough to ride out a
/// broker restart, short enough that a dead broker ends the command.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args, Debug)]
#[command(
    after_help = "Without --key-separator each line is a value with no key. With it, a line is split at \
the first separator into key and value; a line without the separator is a value with no key (as kcat -K does). \
The topic must exist. A summary goes to stderr: records and first/last offset per partition. The exit status \
is non-zero if any record was not delivered.

Examples:
  echo 'hello' | nerve produce orders
  printf 'user-1:signed up\\nuser-2:paid\\n' | nerve produce orders --key-separator :
  nerve produce orders --header source=cli --header trace=abc --compression zstd < events.txt"
)]
pub(crate) struct ProduceArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The topic to write to.
    topic: String,
    /// Split each line into key and value at the first SEP.
    #[arg(long, short = 'K', value_name = "SEP",
          value_parser = clap::builder::NonEmptyStringValueParser::new())]
    key_separator: Option<String>,
    /// A header added to every record; repeatable.
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE", value_parser = parse_key_value)]
    headers: Vec<(String, String)>,
    /// Write every record to this partition [default: by key hash; records without a key are spread].
    #[arg(long, short = 'p', value_parser = clap::value_parser!(i32).range(0..))]
    partition: Option<i32>,
    /// Compress batches with this codec.
    #[arg(long, value_enum, default_value_t = Compression::None)]
    compression: Compression,
    /// Acknowledgement to wait for: all in-sync replicas (all), the leader (1), or none (0). Anything but
    /// `all` turns idempotence off, which needs acks=all.
    #[arg(long, value_enum, default_value_t = Acks::All)]
    acks: Acks,
    /// Turn off idempotence (on by default: a retried batch is never written twice).
    #[arg(long)]
    no_idempotence: bool,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Acks {
    All,
    #[value(name = "1")]
    Leader,
    #[value(name = "0")]
    None,
}

/// What the delivery reports said, per partition.
#[derive(Default)]
struct Summary {
    partitions: BTreeMap<i32, Delivered>,
    failed: u64,
    first_error: Option<String>,
}

struct Delivered {
    records: u64,
    first_offset: i64,
    last_offset: i64,
}

/// The producer's context: librdkafka's logs as for every CLI client, plus the delivery reports.
#[derive(Default)]
struct Deliveries {
    log: ClientLog,
    summary: Mutex<Summary>,
}

impl ClientContext for Deliveries {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.log.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.log.error(error, reason);
    }
}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        let mut summary = self
            .summary
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match result {
            Ok(message) => {
                let offset = message.offset();
                summary
                    .partitions
                    .entry(message.partition())
                    .and_modify(|d| {
                        d.records += 1;
                        d.first_offset = d.first_offset.min(offset);
                        d.last_offset = d.last_offset.max(offset);
                    })
                    .or_insert(Delivered {
                        records: 1,
                        first_offset: offset,
                        last_offset: offset,
                    });
            }
            Err((error, _)) => {
                summary.failed += 1;
                summary.first_error.get_or_insert_with(|| error.to_string());
            }
        }
    }
}

pub(crate) fn run(args: ProduceArgs) -> Result<()> {
    let idempotent = matches!(args.acks, Acks::All) && !args.no_idempotence;
    let producer: BaseProducer<Deliveries> = args
        .client
        .client_config()?
        .set(
            "acks",
            match args.acks {
                Acks::All => "all",
                Acks::Leader => "1",
                Acks::None => "0",
            },
        )
        .set("enable.idempotence", idempotent.to_string())
        .set(
            "compression.type",
            format!("{:?}", args.compression).to_lowercase(),
        )
        .set("linger.ms", "5")
        .set(
            "message.timeout.ms",
            DELIVERY_TIMEOUT.as_millis().to_string(),
        )
        .create_with_context(Deliveries::default())
        .context("cannot create the Kafka producer")?;
    let metadata = args
        .client
        .probe(producer.client(), &producer.context().log, || {
            producer.poll(Duration::ZERO)
        })?;
    let topic = find_topic(&metadata, &args.topic)?;
    if let Some(partition) = args.partition {
        topic.check_partition(partition)?;
    }

    let mut headers = OwnedHeaders::new_with_capacity(args.headers.len());
    for (key, value) in &args.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let separator = args.key_separator.as_deref().map(str::as_bytes);
    let mut stdin = std::io::stdin().lock();
    let mut line = Vec::new();
    let mut sent = 0u64;
    loop {
        line.clear();
        if stdin
            .read_until(b'\n', &mut line)
            .context("cannot read stdin")?
            == 0
        {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let (key, value) = split_key(&line, separator);
        let mut record = BaseRecord::to(&args.topic)
            .payload(value)
            .headers(headers.clone());
        if let Some(key) = key {
            record = record.key(key);
        }
        if let Some(partition) = args.partition {
            record = record.partition(partition);
        }
        sent += 1;
        // A record librdkafka refuses outright (larger than message.max.bytes, say) fails alone, like
        // a failed delivery: the lines after it still go out and the exit status tells.
        if let Err(e) = send(&producer, record) {
            let mut summary = producer
                .context()
                .summary
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            summary.failed += 1;
            summary
                .first_error
                .get_or_insert_with(|| format!("line {sent}: {e}"));
        }
        // Serve delivery reports as they come, so memory stays flat on long inputs.
        producer.poll(Duration::ZERO);
    }
    producer
        .flush(DELIVERY_TIMEOUT + Duration::from_secs(5))
        .context("not every record was delivered in time")?;
    report(&producer.context().summary, &args.topic, sent)
}

/// Queues a record, waiting for room when librdkafka's queue is full.
fn send(
    producer: &BaseProducer<Deliveries>,
    mut record: BaseRecord<'_, [u8], [u8]>,
) -> Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                producer.poll(Duration::from_millis(50));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Splits a line into key and value at the first `separator`; no separator, no key.
fn split_key<'a>(line: &'a [u8], separator: Option<&[u8]>) -> (Option<&'a [u8]>, &'a [u8]) {
    let Some(separator) = separator else {
        return (None, line);
    };
    match line
        .windows(separator.len())
        .position(|window| window == separator)
    {
        Some(at) => (Some(&line[..at]), &line[at + separator.len()..]),
        None => (None, line),
    }
}

fn report(summary: &Mutex<Summary>, topic: &str, sent: u64) -> Result<()> {
    let summary = summary
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let delivered: u64 = summary.partitions.values().map(|d| d.records).sum();
    eprintln!("nerve: {} delivered to {topic}", records(delivered));
    for (partition, d) in &summary.partitions {
        // With acks=0 the broker says nothing, so there are no offsets to report.
        if d.first_offset < 0 {
            eprintln!(
                "  partition {partition}: {} (offsets unknown with acks=0)",
                records(d.records)
            );
        } else {
            eprintln!(
                "  partition {partition}: {}, offsets {} to {}",
                records(d.records),
                d.first_offset,
                d.last_offset
            );
        }
    }
    if summary.failed > 0 || delivered != sent {
        bail!(
            "{} of {} not delivered: {}",
            sent.saturating_sub(delivered),
            records(sent),
            summary
                .first_error
                .as_deref()
                .unwrap_or("no delivery report")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_split_at_the_first_separator_only() {
        assert_eq!(
            split_key(b"k:v:w", Some(b":")),
            (Some(&b"k"[..]), &b"v:w"[..])
        );
        assert_eq!(
            split_key(b"k::v", Some(b"::")),
            (Some(&b"k"[..]), &b"v"[..])
        );
        assert_eq!(split_key(b":v", Some(b":")), (Some(&b""[..]), &b"v"[..]));
        assert_eq!(split_key(b"no key", Some(b":")), (None, &b"no key"[..]));
        assert_eq!(split_key(b"k:v", None), (None, &b"k:v"[..]));
    }
}
