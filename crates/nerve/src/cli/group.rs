//! `nerve group list` and `nerve group describe GROUP`: consumer groups, their members and their lag, as
//! `kafka-consumer-groups --list` and `--describe` show them.
//!
//! Members and assignments come from DescribeGroups (rdkafka's group list); committed offsets from
//! OffsetFetch, asked for every partition of every topic (rdkafka cannot ask for "all of the group's
//! offsets"), so a row is shown for each partition that is assigned or has a committed offset. Log end
//! offsets are the high watermarks; lag is their difference to the committed offset.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::{ClientArgs, ClientLog, REQUEST_TIMEOUT};

#[derive(Args)]
pub(crate) struct GroupArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: GroupCommand,
}

#[derive(Subcommand)]
enum GroupCommand {
    /// List the consumer groups, one a line: name, state and protocol type.
    #[command(after_help = "Examples:
  nerve group list")]
    List,
    /// Show a group's state, members and, per partition, the committed offset, log end offset and lag.
    #[command(
        after_help = "A partition is shown when a member holds it or the group committed an offset \
for it. `-` means none.

Examples:
  nerve group describe orders-service"
    )]
    Describe {
        /// The group's name (its `group.id`).
        group: String,
    },
    /// Set the group's committed offsets for a topic's partitions. Refused while the group has members.
    #[command(
        after_help = "Exactly one of --to-earliest, --to-latest, --to-offset, --to-datetime and --shift-by. Offsets are kept within each partition's log (low to high watermark). --shift-by moves the committed offset (partitions without one are left alone). The new offsets are printed; --dry-run commits nothing.

Examples:
  nerve group reset-offsets billing --topic orders --to-earliest --dry-run
  nerve group reset-offsets billing --topic orders --shift-by -100
  nerve group reset-offsets billing --topic orders --to-datetime 2024-05-01T12:00:00Z"
    )]
    ResetOffsets {
        /// The group's name (its `group.id`).
        group: String,
        /// The topic whose partitions are reset.
        #[arg(long)]
        topic: String,
        #[command(flatten)]
        target: ResetTarget,
        /// Show the new offsets without committing them.
        #[arg(long)]
        dry_run: bool,
    },
}

/// Where `reset-offsets` moves each partition.
#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
struct ResetTarget {
    /// The partition's first offset (its low watermark).
    #[arg(long)]
    to_earliest: bool,
    /// The partition's end (its high watermark): the group skips what is there now.
    #[arg(long)]
    to_latest: bool,
    /// This offset.
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
    /// The first record at or after this time (RFC 3339, or @<ms since the epoch>); the end if none.
    #[arg(long, value_name = "TIME")]
    to_datetime: Option<String>,
    /// The committed offset moved by N (negative: back).
    #[arg(long, value_name = "N", allow_hyphen_values = true)]
    shift_by: Option<i64>,
}

pub(crate) fn run(args: GroupArgs) -> Result<()> {
    let consumer: BaseConsumer<ClientLog> = args
        .client
        .consumer_config()?
        .create_with_context(ClientLog::default())
        .context("cannot create the Kafka client")?;
    let metadata = args
        .client
        .probe(consumer.client(), consumer.context(), || {
            let _ = consumer.poll(std::time::Duration::ZERO);
        })?;
    match args.command {
        GroupCommand::List => list(&consumer),
        GroupCommand::Describe { group } => describe(&args.client, &consumer, &metadata, &group),
        GroupCommand::ResetOffsets {
            group,
            topic,
            target,
            dry_run,
        } => reset_offsets(
            &args.client,
            &consumer,
            &metadata,
            &group,
            &topic,
            &target,
            dry_run,
        ),
    }
}

fn list(consumer: &BaseConsumer<ClientLog>) -> Result<()> {
    let groups = consumer
        .fetch_group_list(None, REQUEST_TIMEOUT)
        .context("ListGroups failed")?;
    let mut rows: Vec<[String; 3]> = groups
        .groups()
        .iter()
        .map(|g| {
            [
                g.name().to_string(),
                g.state().to_string(),
                g.protocol_type().to_string(),
            ]
        })
        .collect();
    rows.sort();
    for row in rows {
        println!("{}", row.join("  ").trim_end());
    }
    Ok(())
}

/// A member's partitions from its `consumer` protocol assignment (ConsumerProtocolAssignment: version,
/// then topics with their partitions; all versions start alike).
fn parse_assignment(mut bytes: &[u8]) -> Option<Vec<(String, i32)>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (bytes.get(..n)?, bytes.get(n..)?);
        *bytes = tail;
        Some(head)
    }
    let i16_at = |b: &mut &[u8]| take(b, 2).map(|s| i16::from_be_bytes([s[0], s[1]]));
    let i32_at = |b: &mut &[u8]| take(b, 4).map(|s| i32::from_be_bytes([s[0], s[1], s[2], s[3]]));
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    i16_at(&mut bytes)?;
    let mut out = Vec::new();
    for _ in 0..i32_at(&mut bytes)?.max(0) {
        let len = usize::try_from(i16_at(&mut bytes)?).ok()?;
        let topic = String::from_utf8(take(&mut bytes, len)?.to_vec()).ok()?;
        for _ in 0..i32_at(&mut bytes)?.max(0) {
            out.push((topic.clone(), i32_at(&mut bytes)?));
        }
    }
    Some(out)
}

fn describe(
    client: &ClientArgs,
    consumer: &BaseConsumer<ClientLog>,
    metadata: &rdkafka::metadata::Metadata,
    group: &str,
) -> Result<()> {
    let groups = consumer
        .fetch_group_list(Some(group), REQUEST_TIMEOUT)
        .context("DescribeGroups failed")?;
    let Some(info) = groups
        .groups()
        .iter()
        .find(|g| g.name() == group && g.state() != "Dead")
    else {
        bail!("group {group} does not exist");
    };
    // Who holds what: (topic, partition) -> (member id, host, client id).
    let mut holders: BTreeMap<(String, i32), [String; 3]> = BTreeMap::new();
    for member in info.members() {
        let assigned = member
            .assignment()
            .and_then(parse_assignment)
            .unwrap_or_default();
        for tp in assigned {
            holders.insert(
                tp,
                [
                    member.id().to_string(),
                    member.client_host().to_string(),
                    member.client_id().to_string(),
                ],
            );
        }
    }
    // The group's committed offsets: OffsetFetch as the group, without joining it.
    let reader: BaseConsumer<ClientLog> = client
        .consumer_config()?
        .set("group.id", group)
        .create_with_context(ClientLog::default())
        .context("cannot create the Kafka client")?;
    let mut wanted = TopicPartitionList::new();
    for topic in metadata.topics() {
        if topic.error().is_some() || topic.name().starts_with("__") {
            continue;
        }
        for partition in topic.partitions() {
            wanted.add_partition(topic.name(), partition.id());
        }
    }
    let committed = reader
        .committed_offsets(wanted, REQUEST_TIMEOUT)
        .context("OffsetFetch failed")?;
    let mut rows: BTreeMap<(String, i32), Option<i64>> =
        holders.keys().map(|tp| (tp.clone(), None)).collect();
    for element in committed.elements() {
        if let Offset::Offset(offset) = element.offset() {
            rows.insert(
                (element.topic().to_string(), element.partition()),
                Some(offset),
            );
        }
    }
    println!(
        "group {group}: {}, {} members, protocol {}",
        info.state(),
        info.members().len(),
        if info.protocol().is_empty() {
            "-"
        } else {
            info.protocol()
        }
    );
    let mut table = vec![[
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ]
    .map(String::from)];
    for ((topic, partition), current) in rows {
        let (_, end) = consumer
            .fetch_watermarks(&topic, partition, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the log end of {topic}-{partition}"))?;
        let dash = || "-".to_string();
        let holder = holders.get(&(topic.clone(), partition));
        table.push([
            topic,
            partition.to_string(),
            current.map_or_else(dash, |c| c.to_string()),
            end.to_string(),
            current.map_or_else(dash, |c| (end - c).max(0).to_string()),
            holder.map_or_else(dash, |h| h[0].clone()),
            holder.map_or_else(dash, |h| h[1].clone()),
            holder.map_or_else(dash, |h| h[2].clone()),
        ]);
    }
    let mut widths = [0; 8];
    for row in &table {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(())
}

fn reset_offsets(
    client: &ClientArgs,
    consumer: &BaseConsumer<ClientLog>,
    metadata: &rdkafka::metadata::Metadata,
    group: &str,
    topic: &str,
    target: &ResetTarget,
    dry_run: bool,
) -> Result<()> {
    let partitions = super::find_topic(metadata, topic)?.partitions;
    let groups = consumer
        .fetch_group_list(Some(group), REQUEST_TIMEOUT)
        .context("DescribeGroups failed")?;
    if let Some(info) = groups.groups().iter().find(|g| g.name() == group) {
        if !info.members().is_empty() {
            let n = info.members().len();
            let members = if n == 1 { "member" } else { "members" };
            bail!("group {group} has {n} live {members}: stop them before resetting its offsets");
        }
    }
    let time = match &target.to_datetime {
        Some(text) => Some(super::timestamp::parse_rfc3339(text).with_context(|| {
            format!("invalid --to-datetime {text}: use RFC 3339 (2024-05-01T12:00:00Z) or @<ms>")
        })?),
        None => None,
    };
    let as_group: BaseConsumer<ClientLog> = client
        .consumer_config()?
        .set("group.id", group)
        .create_with_context(ClientLog::default())
        .context("cannot create the Kafka client")?;
    let mut all = TopicPartitionList::new();
    for p in &partitions {
        all.add_partition(topic, p.id);
    }
    let committed = as_group
        .committed_offsets(all, REQUEST_TIMEOUT)
        .context("OffsetFetch failed")?;
    let mut by_time = TopicPartitionList::new();
    if let Some(time) = time {
        for p in &partitions {
            by_time.add_partition_offset(topic, p.id, Offset::Offset(time))?;
        }
        by_time = consumer
            .offsets_for_times(by_time, REQUEST_TIMEOUT)
            .context("ListOffsets by time failed")?;
    }
    let mut new_offsets = TopicPartitionList::new();
    let mut rows = Vec::new();
    for p in &partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, p.id, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the watermarks of {topic}-{}", p.id))?;
        let current = committed
            .find_partition(topic, p.id)
            .and_then(|e| match e.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            });
        let wanted = if target.to_earliest {
            Some(low)
        } else if target.to_latest {
            Some(high)
        } else if let Some(offset) = target.to_offset {
            Some(offset)
        } else if let Some(shift) = target.shift_by {
            current.map(|c| c.saturating_add(shift))
        } else {
            match by_time.find_partition(topic, p.id).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => Some(o),
                _ => Some(high),
            }
        };
        let Some(wanted) = wanted else {
            rows.push((p.id, current, None));
            continue;
        };
        let new = wanted.clamp(low, high);
        new_offsets.add_partition_offset(topic, p.id, Offset::Offset(new))?;
        rows.push((p.id, current, Some(new)));
    }
    if !dry_run && new_offsets.count() > 0 {
        as_group
            .commit(&new_offsets, rdkafka::consumer::CommitMode::Sync)
            .context("OffsetCommit failed")?;
    }
    let dash = || "-".to_string();
    println!("TOPIC  PARTITION  OLD-OFFSET  NEW-OFFSET");
    for (partition, old, new) in rows {
        println!(
            "{topic}  {partition}  {}  {}",
            old.map_or_else(dash, |o| o.to_string()),
            new.map_or_else(dash, |n| n.to_string())
        );
    }
    if dry_run {
        println!("(dry run: nothing committed)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_assignments_are_read_topic_by_topic() {
        let mut bytes = vec![
            0, 1, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 5,
        ];
        bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]); // null user data
        assert_eq!(
            parse_assignment(&bytes),
            Some(vec![("t".to_string(), 3), ("t".to_string(), 5)])
        );
        assert_eq!(parse_assignment(&[]), Some(Vec::new()));
        assert_eq!(parse_assignment(&[0, 1, 0, 0, 0, 9]), None);
    }
}
