//! `nerve status`: one screen on a running Nerve — the cluster, each topic with its size and throughput, each
//! consumer group with its state and lag — read from the HTTP admin endpoints (`/v1/...`) and two scrapes of
//! `/metrics` an interval apart (throughput is the difference of the record counters).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::{print_table, row};
use clap::Args;
use serde::de::DeserializeOwned;
use serde::Deserialize;

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  nerve status
  nerve status --interval 5 --all
  nerve status --http-url http://nerve.internal:8080")]
pub(crate) struct StatusArgs {
    /// Nerve's HTTP address (metrics, health and admin endpoints).
    #[arg(
        long,
        env = "NERVE_HTTP_URL",
        default_value = "http://127.0.0.1:8080",
        value_name = "URL"
    )]
    http_url: String,
    /// Seconds between the two `/metrics` scrapes that throughput is measured over.
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    interval: f64,
    /// Also show the broker's own topics (`__consumer_offsets`, `_schemas`).
    #[arg(long)]
    all: bool,
}

#[derive(Deserialize)]
struct Cluster {
    cluster_id: String,
    node_id: i32,
    advertised_listener: String,
    topics: usize,
    partitions: usize,
    groups: usize,
}

#[derive(Deserialize)]
struct Topic {
    name: String,
    internal: bool,
    partitions: Vec<Partition>,
}

#[derive(Deserialize)]
struct Partition {
    log_start_offset: Option<i64>,
    high_watermark: Option<i64>,
    size_bytes: Option<u64>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Group {
    group_id: String,
    state: String,
    members: Vec<serde_json::Value>,
    offsets: Vec<Committed>,
}

#[derive(Deserialize)]
struct Committed {
    lag: Option<i64>,
}

/// One metric sample: the metric's name, its labels and its value.
#[derive(Debug, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

struct Http {
    base: String,
    agent: ureq::Agent,
}

impl Http {
    fn new(url: &str) -> Result<Http> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            bail!("--http-url {url}: expected http://HOST:PORT (plain HTTP)");
        }
        let agent = super::http_agent(None);
        Ok(Http { base, agent })
    }

    fn text(&self, path: &str) -> Result<String> {
        let mut response = self
            .agent
            .get(&format!("{}{path}", self.base))
            .call()
            .map_err(|e| anyhow!("cannot reach Nerve's HTTP port at {}: {e}", self.base))?;
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .with_context(|| format!("cannot read {path} from {}", self.base))?;
        if !status.is_success() {
            let body = body.lines().next().unwrap_or_default();
            bail!("{}{path} answered HTTP {status}: {body}", self.base);
        }
        Ok(body)
    }

    fn json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let body = self.text(path)?;
        serde_json::from_str(&body).with_context(|| {
            format!(
                "{}{path} sent an answer this command does not understand",
                self.base
            )
        })
    }
}

pub(crate) fn run(args: StatusArgs) -> Result<()> {
    if !(args.interval.is_finite() && args.interval > 0.0 && args.interval <= 3600.0) {
        bail!("--interval must be between 0 and 3600 seconds");
    }
    let http = Http::new(&args.http_url)?;
    let before = parse_metrics(&http.text("/metrics")?);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.interval));
    let cluster: Cluster = http.json("/v1/cluster")?;
    let topics: Vec<Topic> = http.json("/v1/topics")?;
    let groups: Vec<Group> = http.json("/v1/groups")?;
    let after = parse_metrics(&http.text("/metrics")?);
    let seconds = started.elapsed().as_secs_f64();

    println!(
        "cluster {} · node {} at {} · {} topics, {} partitions, {} groups",
        cluster.cluster_id,
        cluster.node_id,
        cluster.advertised_listener,
        cluster.topics,
        cluster.partitions,
        cluster.groups
    );
    println!();
    let rate = |name: &str, topic: &str| -> String {
        let total = |samples: &[Sample]| -> f64 {
            samples
                .iter()
                .filter(|s| {
                    s.name == name && s.labels.get("topic").map(String::as_str) == Some(topic)
                })
                .map(|s| s.value)
                .sum()
        };
        format!(
            "{:.1}",
            ((total(&after) - total(&before)) / seconds).max(0.0)
        )
    };
    let mut rows = vec![row(&[
        "TOPIC",
        "PARTITIONS",
        "RECORDS",
        "SIZE",
        "IN REC/S",
        "OUT REC/S",
    ])];
    for topic in topics.iter().filter(|t| args.all || !t.internal) {
        let offline = topic
            .partitions
            .iter()
            .filter(|p| p.error.is_some())
            .count();
        let records: i64 = topic
            .partitions
            .iter()
            .filter_map(|p| Some(p.high_watermark? - p.log_start_offset?))
            .sum();
        let size: u64 = topic.partitions.iter().filter_map(|p| p.size_bytes).sum();
        let partitions = if offline > 0 {
            format!("{} ({offline} offline)", topic.partitions.len())
        } else {
            topic.partitions.len().to_string()
        };
        rows.push(vec![
            topic.name.clone(),
            partitions,
            records.to_string(),
            human_bytes(size),
            rate("nerve_topic_records_in_total", &topic.name),
            rate("nerve_topic_records_out_total", &topic.name),
        ]);
    }
    print_table(&rows);
    println!();
    if groups.is_empty() {
        println!("no consumer groups");
        return Ok(());
    }
    let mut rows = vec![row(&["GROUP", "STATE", "MEMBERS", "LAG", "LAG SECONDS"])];
    for group in &groups {
        let lag: i64 = group.offsets.iter().filter_map(|o| o.lag).sum();
        let lag_seconds = after
            .iter()
            .filter(|s| {
                s.name == "nerve_consumer_group_lag_seconds"
                    && s.labels.get("group") == Some(&group.group_id)
            })
            .map(|s| s.value)
            .fold(0.0_f64, f64::max);
        rows.push(vec![
            group.group_id.clone(),
            group.state.clone(),
            group.members.len().to_string(),
            lag.to_string(),
            format!("{lag_seconds:.1}"),
        ]);
    }
    print_table(&rows);
    Ok(())
}

/// The samples of a Prometheus text exposition; lines that are not samples are skipped.
fn parse_metrics(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(parse_sample)
        .collect()
}

fn parse_sample(line: &str) -> Option<Sample> {
    let (series, value) = line.rsplit_once(' ')?;
    let value: f64 = value.trim().parse().ok()?;
    let (name, labels) = match series.split_once('{') {
        None => (series.to_string(), BTreeMap::new()),
        Some((name, rest)) => {
            let body = rest.strip_suffix('}')?;
            (name.to_string(), parse_labels(body)?)
        }
    };
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// `a="x",b="y \"q\""` into a map, honouring the exposition format's escapes (`\\`, `\"`, `\n`).
fn parse_labels(body: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    let mut chars = body.chars().peekable();
    loop {
        while chars.peek() == Some(&',') || chars.peek() == Some(&' ') {
            chars.next();
        }
        if chars.peek().is_none() {
            return Some(labels);
        }
        let name: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if chars.next() != Some('"') {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        }
        labels.insert(name.trim().to_string(), value);
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_parse_with_escaped_labels_and_without_labels() {
        let text = "# HELP x y\n# TYPE nerve_topics gauge\nnerve_topics 3\n\
                    nerve_topic_records_in_total{topic=\"a \\\"b\\\"\",x=\"1\"} 42\n";
        let samples = parse_metrics(text);
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].name, "nerve_topics");
        assert_eq!(samples[0].value, 3.0);
        assert_eq!(
            samples[1].labels.get("topic").map(String::as_str),
            Some("a \"b\"")
        );
        assert_eq!(samples[1].labels.get("x").map(String::as_str), Some("1"));
        assert_eq!(samples[1].value, 42.0);
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }
}
