//! The command-line client: `nerve topic`, `nerve produce`, `nerve consume` and `nerve group`, and
//! `nerve schema` for the schema registry (over its REST API, see `schema`), and `nerve status` (over the
//! HTTP admin endpoints).
//!
//! The client side is librdkafka (the `rdkafka` crate), so these commands speak plain Kafka protocol and work
//! against any Kafka cluster as well as against Nerve. librdkafka retries forever and logs every retry; a
//! person at a terminal wants one line saying what is wrong instead. So every command first asks for the
//! cluster's metadata with a short deadline ([`ClientArgs::connect_timeout`]) and names the address when
//! that fails, and librdkafka's own log lines go to `tracing` at debug level (`RUST_LOG=librdkafka=debug`
//! shows them).
//!
//! Every Kafka-speaking command takes the client's security settings with librdkafka's property names, from
//! `--command-config FILE` and `-X key=value` (see `security`). `nerve user` and `nerve acl` need APIs that
//! rdkafka does not expose (SCRAM credentials, ACLs), so they speak the Kafka protocol through a small
//! blocking client of their own (`kafka_client`).

pub(crate) mod acl;
pub(crate) mod consume;
pub(crate) mod dlq;
pub(crate) mod group;
pub(crate) mod kafka_client;
pub(crate) mod produce;
mod record_format;
pub(crate) mod schema;
mod security;
pub(crate) mod status;
mod timestamp;
pub(crate) mod topic;
pub(crate) mod user;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::Args;
use rdkafka::client::Client;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::metadata::Metadata;
use rdkafka::ClientContext;

/// How long an admin request may take once the broker is known to be reachable: creating a topic waits
/// for its partitions, but nothing here should take anywhere near this long.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the broker is, shared by every client command.
#[derive(Args, Clone, Debug)]
pub(crate) struct ClientArgs {
    /// The broker to connect to (any Kafka broker works).
    #[arg(
        long,
        env = "NERVE_BOOTSTRAP",
        default_value = "127.0.0.1:9092",
        value_name = "HOST:PORT",
        global = true
    )]
    pub(crate) bootstrap: String,
    /// Seconds to wait for the broker to answer before giving up.
    #[arg(
        long,
        env = "NERVE_CONNECT_TIMEOUT",
        default_value_t = 5,
        value_name = "SECS",
        value_parser = clap::value_parser!(u64).range(1..),
        global = true
    )]
    pub(crate) connect_timeout: u64,
    /// Client settings for a secured listener, one `key=value` a line (`#` starts a comment), with
    /// librdkafka's names: security.protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL), sasl.mechanism
    /// (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN), sasl.username, sasl.password, ssl.ca.location,
    /// ssl.certificate.location, ssl.key.location, ssl.endpoint.identification.algorithm (https or none).
    /// A Kafka tool's file with sasl.jaas.config works too.
    #[arg(long, env = "NERVE_COMMAND_CONFIG", value_name = "FILE", global = true)]
    pub(crate) command_config: Option<PathBuf>,
    /// One client setting, as in --command-config, overriding the file; repeatable (as kcat's -X).
    #[arg(
        short = 'X',
        value_name = "KEY=VALUE",
        value_parser = parse_key_value,
        global = true
    )]
    pub(crate) client_settings: Vec<(String, String)>,
}

impl ClientArgs {
    pub(crate) fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout)
    }

    /// The client settings of `--command-config` and `-X`, in force order.
    pub(crate) fn properties(&self) -> Result<security::Properties> {
        security::Properties::load(self.command_config.as_deref(), &self.client_settings)
    }

    /// A connection for the admin APIs rdkafka lacks, set up and authenticated with the client settings.
    pub(crate) fn kafka_client(&self) -> Result<kafka_client::KafkaClient> {
        let security = self.properties()?.security()?;
        kafka_client::KafkaClient::connect(&self.bootstrap, self.connect_timeout(), &security)
    }

    /// The settings every client shares: the connection's, then the user's client settings.
    pub(crate) fn client_config(&self) -> Result<ClientConfig> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("client.id", "nerve-cli")
            .set(
                "socket.connection.setup.timeout.ms",
                (self.connect_timeout * 1000).to_string(),
            )
            // A closed idle connection is routine, not news.
            .set("log.connection.close", "false")
            .set_log_level(RDKafkaLogLevel::Warning);
        for (key, value) in self.properties()?.for_librdkafka()? {
            config.set(key, value);
        }
        Ok(config)
    }

    /// The settings of a consumer that is assigned partitions and never joins a group. librdkafka's
    /// consumer API needs a group id even for assign(); with no subscribe() and no commits it is unused.
    pub(crate) fn consumer_config(&self) -> Result<ClientConfig> {
        let mut config = self.client_config()?;
        config
            .set("group.id", "nerve-cli")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Looking at a topic must not create it.
            .set("allow.auto.create.topics", "false");
        Ok(config)
    }

    /// The cluster's metadata for every topic, or the error a user can act on: the broker is not
    /// reachable at this address. Asking for every topic never auto-creates one. `poll` serves the
    /// client's queued events: rdkafka delivers librdkafka's log lines, which say why a connection
    /// failed, only when the client is polled.
    pub(crate) fn probe<C: ClientContext>(
        &self,
        client: &Client<C>,
        log: &ClientLog,
        poll: impl FnOnce(),
    ) -> Result<Metadata> {
        client
            .fetch_metadata(None, self.connect_timeout())
            .map_err(|e| {
                poll();
                self.unreachable(e, log)
            })
    }

    fn unreachable(&self, error: KafkaError, log: &ClientLog) -> anyhow::Error {
        let why = match log.last_error() {
            Some(reason) => tidy(&reason),
            // The code's own text ("Local: Broker transport failure") without the Rust enum's name.
            None => match error.rdkafka_error_code() {
                Some(code) => code.to_string(),
                None => error.to_string(),
            },
        };
        anyhow!(
            "cannot reach the broker at {} within {} s: {why}",
            self.bootstrap,
            self.connect_timeout
        )
    }
}

/// librdkafka's reason without its thread and broker prefixes and its state suffix:
/// "[thrd:h:1/bootstrap]: h:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after
/// 0ms in state CONNECT)" becomes "Connect to ipv4#127.0.0.1:1 failed: Connection refused".
fn tidy(reason: &str) -> String {
    let mut text = reason;
    if let Some(rest) = text
        .strip_prefix("[thrd:")
        .and_then(|t| t.split_once("]: "))
    {
        text = rest.1;
    }
    if let Some((broker, rest)) = text.split_once(": ") {
        if broker.contains('/') && !broker.contains(' ') {
            text = rest;
        }
    }
    if let Some(at) = text.rfind(" (after ") {
        text = &text[..at];
    }
    text.to_string()
}

/// The client context of every CLI client: librdkafka's logs go to `tracing` at debug level, and the last
/// error it reported is kept to explain a failure (librdkafka's "Connection refused" says more than
/// "timed out").
#[derive(Default)]
pub(crate) struct ClientLog {
    last_error: Mutex<Option<String>>,
}

impl ClientLog {
    pub(crate) fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

impl ClientContext for ClientLog {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        tracing::debug!(target: "librdkafka", ?level, fac, "{log_message}");
        // A failed connection is logged as "FAIL" ("Connect to ipv4#127.0.0.1:9092 failed: Connection
        // refused"), which says more than the metadata request's "transport failure".
        let serious = matches!(
            level,
            RDKafkaLogLevel::Emerg
                | RDKafkaLogLevel::Alert
                | RDKafkaLogLevel::Critical
                | RDKafkaLogLevel::Error
                | RDKafkaLogLevel::Warning
        );
        if fac == "FAIL" && serious {
            self.remember(log_message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", %error, "{reason}");
        self.remember(reason);
    }
}

impl ClientLog {
    fn remember(&self, reason: &str) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(reason.to_string());
    }
}

impl ConsumerContext for ClientLog {}

/// One topic's partitions as the metadata shows them.
pub(crate) struct TopicPartitions {
    pub(crate) name: String,
    pub(crate) partitions: Vec<PartitionMetadata>,
}

pub(crate) struct PartitionMetadata {
    pub(crate) id: i32,
    pub(crate) leader: i32,
    pub(crate) replicas: Vec<i32>,
    pub(crate) isr: Vec<i32>,
}

/// Finds `name` in the metadata, or says that it does not exist.
pub(crate) fn find_topic(metadata: &Metadata, name: &str) -> Result<TopicPartitions> {
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == name && t.error().is_none())
        .ok_or_else(|| {
            anyhow!("topic {name} does not exist (create it with `nerve topic create {name}`)")
        })?;
    let mut partitions: Vec<PartitionMetadata> = topic
        .partitions()
        .iter()
        .map(|p| PartitionMetadata {
            id: p.id(),
            leader: p.leader(),
            replicas: p.replicas().to_vec(),
            isr: p.isr().to_vec(),
        })
        .collect();
    partitions.sort_by_key(|p| p.id);
    Ok(TopicPartitions {
        name: name.to_string(),
        partitions,
    })
}

impl TopicPartitions {
    /// Checks a `--partition` flag against the topic.
    pub(crate) fn check_partition(&self, partition: i32) -> Result<()> {
        if self.partitions.iter().any(|p| p.id == partition) {
            return Ok(());
        }
        Err(anyhow!(
            "topic {} has no partition {partition} (it has {}, numbered from 0)",
            self.name,
            self.partitions.len()
        ))
    }
}

/// Cells of a table row.
pub(crate) fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| (*c).to_string()).collect()
}

/// Prints rows as left-aligned columns two spaces apart, as `kubectl get` and `rpk` do.
pub(crate) fn print_table<R: AsRef<[String]>>(rows: &[R]) {
    let columns = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let mut widths = vec![0; columns];
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row.as_ref()) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in rows {
        let line: Vec<String> = row
            .as_ref()
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
}

/// An HTTP client for Nerve's plain-HTTP endpoints (schema registry, admin): error statuses are answers to
/// read, not failures, and nothing waits forever.
pub(crate) fn http_agent(accept: Option<&str>) -> ureq::Agent {
    agent_config(accept).build().into()
}

/// [`http_agent`] that trusts the CA certificates in the PEM file `ca` for HTTPS (a private CA, as
/// docs/security.md sets up) instead of the public roots.
pub(crate) fn https_agent(accept: Option<&str>, ca: &std::path::Path) -> Result<ureq::Agent> {
    let pem = std::fs::read(ca).with_context(|| format!("cannot read {}", ca.display()))?;
    let mut roots = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(cert) =
            item.with_context(|| format!("{} is not PEM", ca.display()))?
        {
            roots.push(cert);
        }
    }
    if roots.is_empty() {
        bail!("{} holds no PEM certificate", ca.display());
    }
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::Specific(Arc::new(roots)))
        .build();
    Ok(agent_config(accept).tls_config(tls).build().into())
}

fn agent_config(accept: Option<&str>) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    let mut config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(REQUEST_TIMEOUT))
        .user_agent(concat!("nerve/", env!("CARGO_PKG_VERSION")));
    if let Some(accept) = accept {
        config = config.accept(accept);
    }
    config
}

/// "1 record", "2 records".
pub(crate) fn records(n: u64) -> String {
    if n == 1 {
        "1 record".to_string()
    } else {
        format!("{n} records")
    }
}

/// Parses `KEY=VALUE` (split at the first `=`), for `--config` and `--header`.
pub(crate) fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{text}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_reasons_lose_their_prefixes() {
        assert_eq!(
            tidy(
                "[thrd:127.0.0.1:1/bootstrap]: 127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 \
                 failed: Connection refused (after 0ms in state CONNECT)"
            ),
            "Connect to ipv4#127.0.0.1:1 failed: Connection refused"
        );
        assert_eq!(tidy("Broker: Unknown error"), "Broker: Unknown error");
    }

    #[test]
    fn key_value_splits_at_the_first_equals_sign() {
        assert_eq!(
            parse_key_value("a=b=c"),
            Ok(("a".to_string(), "b=c".to_string()))
        );
        assert_eq!(parse_key_value("a="), Ok(("a".to_string(), String::new())));
        assert!(parse_key_value("a").is_err());
        assert!(parse_key_value("=b").is_err());
    }
}
