//! `nerve consume`: read a topic's records by assigning its partitions directly.
//!
//! No consumer group: nothing is committed and nothing rebalances, so several `nerve consume` runs never
//! disturb each other or a real group. The starting offset of each partition is resolved up front (by
//! ListOffsets for `end`, `beginning` and timestamps) so that the command starts where it was asked to even
//! when the offset is out of range.

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::record_format::{render_json, RecordView, Template};
use super::timestamp::parse_rfc3339;
use super::{find_topic, records, ClientArgs, ClientLog, REQUEST_TIMEOUT};

#[derive(Args, Debug)]
#[command(
    after_help = "--format placeholders: %k key, %v value, %h headers as k1=v1,k2=v2, %p partition, \
%o offset, %t timestamp (ms since the Unix epoch, -1 if none), %% a percent sign; escapes \\n \\t \\r \\\\. \
A missing key or value prints as nothing; bytes are written as they are; each record ends with a newline.

--json prints one object a line: {\"topic\",\"partition\",\"offset\",\"timestamp\",\"key\",\"value\",\"headers\"}, \
headers as [{\"key\",\"value\"}]. Keys and values are strings when they are UTF-8, null when absent, and \
{\"base64\": \"...\"} otherwise.

Without --count, --timeout or --exit-at-end the command follows the topic until interrupted.

Examples:
  nerve consume orders --exit-at-end
  nerve consume orders --from beginning --format '%p:%o %k=%v [%h]' --count 10
  nerve consume orders --from 2024-05-01T12:00:00Z --json --exit-at-end
  nerve consume orders --partition 0 --from 42 --count 1 --format '%v'"
)]
pub(crate) struct ConsumeArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The topic to read.
    topic: String,
    /// Where to start: `beginning`, `end`, an offset, or the first record at or after a time, given as
    /// RFC 3339 (2024-05-01T12:00:00Z) or as `@` and milliseconds since the Unix epoch (@1714564800000).
    #[arg(long, short = 'o', default_value = "beginning", value_parser = StartAt::parse)]
    from: StartAt,
    /// Read only this partition [default: all].
    #[arg(long, short = 'p', value_parser = clap::value_parser!(i32).range(0..))]
    partition: Option<i32>,
    /// Stop after N records.
    #[arg(long, short = 'c', value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    count: Option<u64>,
    /// Stop when no record arrived for SECS seconds.
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// Stop once every partition has been read to its end (like kcat -e).
    #[arg(long, short = 'e')]
    exit_at_end: bool,
    /// Print each record with this template (see below) [default: %v].
    #[arg(long, short = 'f', value_name = "TEMPLATE", value_parser = Template::parse,
          conflicts_with = "json")]
    format: Option<Template>,
    /// Print each record as one line of JSON (see below).
    #[arg(long)]
    json: bool,
}

/// `--from`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StartAt {
    Beginning,
    End,
    Offset(i64),
    /// Milliseconds since the Unix epoch.
    Time(i64),
}

impl StartAt {
    fn parse(text: &str) -> Result<StartAt, String> {
        if text == "beginning" {
            return Ok(StartAt::Beginning);
        }
        if text == "end" {
            return Ok(StartAt::End);
        }
        if let Ok(offset) = text.parse::<u64>() {
            return i64::try_from(offset)
                .map(StartAt::Offset)
                .map_err(|_| format!("offset {text} is out of range"));
        }
        if let Some(millis) = text.strip_prefix('@') {
            return millis
                .parse::<i64>()
                .ok()
                .filter(|&ms| ms >= 0)
                .map(StartAt::Time)
                .ok_or_else(|| {
                    format!("`{text}`: expected @ and milliseconds since the Unix epoch")
                });
        }
        parse_rfc3339(text).map(StartAt::Time).ok_or_else(|| {
            format!(
                "`{text}`: expected beginning, end, an offset, an RFC 3339 time \
                 (2024-05-01T12:00:00Z) or @milliseconds"
            )
        })
    }
}

pub(crate) fn run(args: ConsumeArgs) -> Result<()> {
    let consumer: BaseConsumer<ClientLog> = args
        .client
        .consumer_config()?
        .set("enable.partition.eof", args.exit_at_end.to_string())
        // Only reached if the log start moves past us while reading (retention).
        .set("auto.offset.reset", "earliest")
        .create_with_context(ClientLog::default())
        .context("cannot create the Kafka consumer")?;
    let metadata = args
        .client
        .probe(consumer.client(), consumer.context(), || {
            // Only librdkafka's queued log lines can be waiting; no partition is assigned yet.
            let _ = consumer.poll(Duration::ZERO);
        })?;
    let topic = find_topic(&metadata, &args.topic)?;
    let partitions: Vec<i32> = match args.partition {
        Some(partition) => {
            topic.check_partition(partition)?;
            vec![partition]
        }
        None => topic.partitions.iter().map(|p| p.id).collect(),
    };
    let assignment = start_offsets(&consumer, &args.topic, &partitions, args.from)?;
    consumer
        .assign(&assignment)
        .context("cannot assign the partitions")?;

    let output = match (&args.format, args.json) {
        (_, true) => Output::Json,
        (Some(template), false) => Output::Template(template.clone()),
        (None, false) => Output::Template(Template::value()),
    };
    let idle_limit = args.timeout.map(Duration::from_secs);
    let mut stdout = std::io::stdout().lock();
    let mut buf = Vec::new();
    let mut consumed = 0u64;
    let mut last_record = Instant::now();
    let mut at_end: HashSet<i32> = HashSet::new();
    while args.count.is_none_or(|count| consumed < count) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(message)) => {
                last_record = Instant::now();
                at_end.remove(&message.partition());
                let headers = message
                    .headers()
                    .map(|h| h.iter().map(|h| (h.key, h.value)).collect())
                    .unwrap_or_default();
                let record = RecordView {
                    topic: message.topic(),
                    partition: message.partition(),
                    offset: message.offset(),
                    timestamp: message.timestamp().to_millis(),
                    key: message.key(),
                    value: message.payload(),
                    headers,
                };
                buf.clear();
                match &output {
                    Output::Template(template) => template.render(&record, &mut buf),
                    Output::Json => render_json(&record, &mut buf).context("cannot write JSON")?,
                }
                // Flushed per record: a person watching, or a pipe into `head`, sees each one at once.
                match stdout.write_all(&buf).and_then(|()| stdout.flush()) {
                    Ok(()) => {}
                    // The reader went away (`| head`): that is how the user stops us.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(e).context("cannot write to stdout"),
                }
                consumed += 1;
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
                if args.exit_at_end && at_end.len() >= partitions.len() {
                    break;
                }
            }
            Some(Err(e)) if transient(&e) => {
                tracing::debug!(error = %e, "consumer error, retrying");
            }
            Some(Err(e)) => bail!("cannot read topic {}: {e}", args.topic),
            None => {}
        }
        if idle_limit.is_some_and(|limit| last_record.elapsed() >= limit) {
            break;
        }
    }
    eprintln!("nerve: {} consumed from {}", records(consumed), args.topic);
    Ok(())
}

enum Output {
    Template(Template),
    Json,
}

/// Errors librdkafka recovers from by itself (a dropped connection it re-establishes), and one that does
/// not concern this command: librdkafka's consumer needs a group id even for assigned partitions and
/// looks up its coordinator, which a secured broker refuses to a user without rights on that group;
/// nothing here uses the group, and records keep coming.
pub(crate) fn transient(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::GroupAuthorizationFailed
                | RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::OperationTimedOut
                | RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
        )
    )
}

/// The offset each partition starts at. Explicit offsets are held inside the log's current range, so
/// that an offset past the end waits for new records instead of jumping back to the start.
fn start_offsets(
    consumer: &BaseConsumer<ClientLog>,
    topic: &str,
    partitions: &[i32],
    from: StartAt,
) -> Result<TopicPartitionList> {
    let mut list = TopicPartitionList::new();
    match from {
        StartAt::Beginning | StartAt::End => {
            let offset = if from == StartAt::End {
                Offset::End
            } else {
                Offset::Beginning
            };
            for &partition in partitions {
                list.add_partition_offset(topic, partition, offset)?;
            }
        }
        StartAt::Offset(offset) => {
            for &partition in partitions {
                let (low, high) = consumer
                    .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
                    .with_context(|| format!("cannot read the offsets of partition {partition}"))?;
                let start = offset.clamp(low, high.max(low));
                // Past the end is a normal way to wait for new records; before the start means records
                // the user asked for are gone (retention), which deserves a word.
                if offset < low {
                    eprintln!(
                        "nerve: partition {partition} starts at offset {low} now; reading from there"
                    );
                }
                list.add_partition_offset(topic, partition, Offset::Offset(start))?;
            }
        }
        StartAt::Time(millis) => {
            let mut times = TopicPartitionList::new();
            for &partition in partitions {
                times.add_partition_offset(topic, partition, Offset::Offset(millis))?;
            }
            let offsets = consumer
                .offsets_for_times(times, REQUEST_TIMEOUT)
                .context("cannot look up offsets by time")?;
            for element in offsets.elements() {
                element.error().with_context(|| {
                    format!(
                        "cannot look up the offset by time of partition {}",
                        element.partition()
                    )
                })?;
                // No record at or after the time: start at the end, for the records still to come.
                let offset = match element.offset() {
                    Offset::Offset(offset) => Offset::Offset(offset),
                    _ => Offset::End,
                };
                list.add_partition_offset(topic, element.partition(), offset)?;
            }
        }
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_takes_names_offsets_and_times() {
        assert_eq!(StartAt::parse("beginning"), Ok(StartAt::Beginning));
        assert_eq!(StartAt::parse("end"), Ok(StartAt::End));
        assert_eq!(StartAt::parse("42"), Ok(StartAt::Offset(42)));
        assert_eq!(
            StartAt::parse("@1714564800000"),
            Ok(StartAt::Time(1_714_564_800_000))
        );
        assert_eq!(
            StartAt::parse("2024-05-01T12:00:00Z"),
            Ok(StartAt::Time(1_714_564_800_000))
        );
        for bad in ["-1", "@", "@x", "@-5", "tomorrow", "99999999999999999999"] {
            assert!(StartAt::parse(bad).is_err(), "{bad}");
        }
    }
}
