//! `nerve topic`: create, list, describe, alter and delete topics with the Kafka admin APIs.
//!
//! rdkafka 0.39 reports a refused CreateTopics by its error code alone, without the broker's message, and
//! drops AlterConfigs' per-resource error altogether (it always reports success). So `alter` reads the
//! configs back to learn whether they were applied, and when the broker refuses configs the command asks
//! about each one alone with a `validate_only` CreateTopics, so that it can name the one refused.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Args, Subcommand};
use futures::executor::block_on;
use rdkafka::admin::{
    AdminClient, AdminOptions, AlterConfig, ConfigEntry, ConfigSource, NewTopic, ResourceSpecifier,
    TopicReplication,
};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use super::{find_topic, parse_key_value, ClientArgs, ClientLog, REQUEST_TIMEOUT};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  nerve topic create orders --partitions 3
  nerve topic list
  nerve topic describe orders
  nerve topic alter orders --config retention.ms=3600000
  nerve topic delete orders")]
pub(crate) struct TopicArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: TopicCommand,
}

#[derive(Subcommand, Debug)]
enum TopicCommand {
    /// Create a topic.
    #[command(after_help = "Examples:
  nerve topic create orders
  nerve topic create orders --partitions 3 --config retention.ms=86400000 --config cleanup.policy=compact")]
    Create {
        /// The topic's name.
        name: String,
        /// Number of partitions [default: the broker's num.partitions].
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        partitions: Option<i32>,
        /// A topic config by its Kafka name (retention.ms, cleanup.policy, ...); repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
        configs: Vec<(String, String)>,
    },
    /// List the topics, one name a line (without the broker's own `__consumer_offsets` and `_schemas`).
    #[command(after_help = "Examples:
  nerve topic list
  nerve topic list --bootstrap kafka.internal:9092")]
    List,
    /// Show a topic's partitions (leader, replicas, low and high watermarks) and its configs.
    #[command(
        after_help = "Configs set on the topic are marked with `*`; the others are defaults. A broker \
without DescribeConfigs gets the partitions only, with a note.

Examples:
  nerve topic describe orders"
    )]
    Describe {
        /// The topic's name.
        name: String,
    },
    /// Set or remove topic configs, leaving the others as they are.
    #[command(
        after_help = "The current configs are read with DescribeConfigs and written back with the changes \
by AlterConfigs (rdkafka has no IncrementalAlterConfigs), then read back to check that the broker applied them. \
A change made by someone else in between is lost.

Examples:
  nerve topic alter orders --config retention.ms=3600000
  nerve topic alter orders --delete-config retention.ms"
    )]
    Alter {
        /// The topic's name.
        name: String,
        /// A config to set; repeatable.
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value,
              required_unless_present = "delete")]
        set: Vec<(String, String)>,
        /// A config to return to its default; repeatable.
        #[arg(long = "delete-config", value_name = "KEY")]
        delete: Vec<String>,
    },
    /// Delete a topic and its records.
    #[command(after_help = "Examples:
  nerve topic delete orders")]
    Delete {
        /// The topic's name.
        name: String,
    },
}

/// The admin client, and a consumer for metadata and watermarks: unlike the admin client it can be
/// polled, which is how librdkafka's explanation of a failed connection arrives.
struct Admin {
    client: AdminClient<ClientLog>,
    consumer: BaseConsumer<ClientLog>,
    args: ClientArgs,
}

impl Admin {
    fn connect(args: &ClientArgs) -> Result<Admin> {
        let client: AdminClient<ClientLog> = args
            .client_config()?
            .create_with_context(ClientLog::default())
            .context("cannot create the Kafka admin client")?;
        let consumer: BaseConsumer<ClientLog> = args
            .consumer_config()?
            .create_with_context(ClientLog::default())
            .context("cannot create the Kafka client")?;
        Ok(Admin {
            client,
            consumer,
            args: args.clone(),
        })
    }

    fn metadata(&self) -> Result<rdkafka::metadata::Metadata> {
        self.args
            .probe(self.consumer.client(), self.consumer.context(), || {
                let _ = self.consumer.poll(Duration::ZERO);
            })
    }

    fn options(&self) -> AdminOptions {
        AdminOptions::new()
            .request_timeout(Some(REQUEST_TIMEOUT))
            .operation_timeout(Some(REQUEST_TIMEOUT))
    }
}

pub(crate) fn run(args: TopicArgs) -> Result<()> {
    let admin = Admin::connect(&args.client)?;
    match args.command {
        TopicCommand::Create {
            name,
            partitions,
            configs,
        } => create(&admin, &name, partitions, &configs),
        TopicCommand::List => list(&admin),
        TopicCommand::Describe { name } => describe(&admin, &name),
        TopicCommand::Alter { name, set, delete } => alter(&admin, &name, &set, &delete),
        TopicCommand::Delete { name } => delete(&admin, &name),
    }
}

fn create(
    admin: &Admin,
    name: &str,
    partitions: Option<i32>,
    configs: &[(String, String)],
) -> Result<()> {
    admin.metadata()?;
    match create_topic(admin, name, partitions, configs, false)? {
        Ok(()) => {
            println!("created topic {name}");
            Ok(())
        }
        Err(RDKafkaErrorCode::TopicAlreadyExists) => bail!("topic {name} already exists"),
        Err(RDKafkaErrorCode::InvalidTopic) => bail!(
            "invalid topic name `{name}`: use up to 249 of a-z A-Z 0-9 . _ -, and not `.` or `..`"
        ),
        Err(code @ (RDKafkaErrorCode::InvalidConfig | RDKafkaErrorCode::PolicyViolation)) => {
            match first_refused(admin, name, configs)? {
                Some(((key, value), single)) => {
                    bail!("invalid config {key}={value}: the broker refused it ({single})")
                }
                None => bail!("cannot create topic {name}: {code}"),
            }
        }
        Err(code) => bail!("cannot create topic {name}: {code}"),
    }
}

/// CreateTopics for one topic; the outer error is a failed request, the inner one the broker's answer.
fn create_topic(
    admin: &Admin,
    name: &str,
    partitions: Option<i32>,
    configs: &[(String, String)],
    validate_only: bool,
) -> Result<Result<(), RDKafkaErrorCode>> {
    // -1 asks for the broker's defaults (CreateTopics v4+), as `kafka-topics.sh` does without flags.
    let mut topic = NewTopic::new(name, partitions.unwrap_or(-1), TopicReplication::Fixed(-1));
    for (key, value) in configs {
        topic = topic.set(key, value);
    }
    let options = admin.options().validate_only(validate_only);
    let results =
        block_on(admin.client.create_topics([&topic], &options)).context("CreateTopics failed")?;
    first_result(
        results
            .into_iter()
            .map(|r| r.map(drop).map_err(|(_, code)| code)),
    )
}

/// The first config the broker refuses on its own, asked one at a time with a `validate_only`
/// CreateTopics of `topic` (which must not exist: the name is checked before the configs), which creates
/// nothing and, unlike rdkafka's AlterConfigs, reports the broker's verdict.
fn first_refused<'a>(
    admin: &Admin,
    topic: &str,
    configs: &'a [(String, String)],
) -> Result<Option<(&'a (String, String), RDKafkaErrorCode)>> {
    for config in configs {
        if let Err(code) = create_topic(admin, topic, None, std::slice::from_ref(config), true)? {
            if matches!(
                code,
                RDKafkaErrorCode::InvalidConfig | RDKafkaErrorCode::PolicyViolation
            ) {
                return Ok(Some((config, code)));
            }
        }
    }
    Ok(None)
}

fn list(admin: &Admin) -> Result<()> {
    let metadata = admin.metadata()?;
    // The broker's own topics (the group coordinator's, the schema registry's store) are left out, as
    // `kafka-topics --list --exclude-internal` leaves out internal ones.
    let mut names: Vec<&str> = metadata
        .topics()
        .iter()
        .map(|t| t.name())
        .filter(|name| {
            !matches!(
                *name,
                "__consumer_offsets" | "__transaction_state" | "_schemas"
            )
        })
        .collect();
    names.sort_unstable();
    for name in names {
        println!("{name}");
    }
    Ok(())
}

fn describe(admin: &Admin, name: &str) -> Result<()> {
    let metadata = admin.metadata()?;
    let topic = find_topic(&metadata, name)?;
    println!("topic {name}: {} partitions", topic.partitions.len());
    let mut rows = vec![[
        "PARTITION".to_string(),
        "LEADER".to_string(),
        "REPLICAS".to_string(),
        "ISR".to_string(),
        "LOW".to_string(),
        "HIGH".to_string(),
    ]];
    for partition in &topic.partitions {
        let (low, high) = admin
            .consumer
            .fetch_watermarks(name, partition.id, REQUEST_TIMEOUT)
            .with_context(|| format!("cannot read the offsets of partition {}", partition.id))?;
        rows.push([
            partition.id.to_string(),
            partition.leader.to_string(),
            join(&partition.replicas),
            join(&partition.isr),
            low.to_string(),
            high.to_string(),
        ]);
    }
    super::print_table(&rows);
    match describe_configs(admin, name)? {
        Some(mut entries) => {
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            println!("configs (* set on this topic):");
            for entry in entries {
                let marker = if set_on_topic(&entry) { '*' } else { ' ' };
                let value = match (&entry.value, entry.is_sensitive) {
                    (_, true) => "(sensitive)",
                    (Some(value), false) => value.as_str(),
                    (None, false) => "(none)",
                };
                println!("{marker} {}={value}", entry.name);
            }
        }
        None => println!("configs: not shown, the broker does not support DescribeConfigs"),
    }
    Ok(())
}

fn alter(admin: &Admin, name: &str, set: &[(String, String)], delete: &[String]) -> Result<()> {
    let metadata = admin.metadata()?;
    find_topic(&metadata, name)?;
    let Some(current) = topic_overrides(admin, name)? else {
        bail!(
            "cannot alter topic {name}: the broker does not support DescribeConfigs, which a \
             change of some configs needs in order to keep the others"
        );
    };
    // AlterConfigs replaces the whole set, so start from what is set on the topic now.
    let mut configs = current;
    let mut changes: Vec<String> = Vec::new();
    for key in delete {
        if configs.remove(key).is_some() {
            changes.push(format!("deleted {key}"));
        } else {
            eprintln!("nerve: {key} was not set on topic {name}; nothing to delete");
        }
    }
    for (key, value) in set {
        configs.insert(key.clone(), value.clone());
        changes.push(format!("set {key}={value}"));
    }
    let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
    for (key, value) in &configs {
        alter = alter.set(key, value);
    }
    let answered = match block_on(admin.client.alter_configs([&alter], &admin.options())) {
        Ok(results) => first_result(
            results
                .into_iter()
                .map(|r| r.map(drop).map_err(|(_, code)| code)),
        )?,
        Err(e) => Err(admin_error_code(&e).ok_or_else(|| anyhow!("AlterConfigs failed: {e}"))?),
    };
    match answered {
        Err(code) if unsupported(code) => {
            bail!("cannot alter topic {name}: the broker does not support AlterConfigs")
        }
        Err(code) => refused(admin, name, set, code),
        Ok(()) => {
            // rdkafka 0.39 drops AlterConfigs' per-resource error code (it always reports success), so
            // read the configs back to learn whether the broker applied them.
            let after = topic_overrides(admin, name)?.unwrap_or_default();
            if after != configs {
                return refused(admin, name, set, RDKafkaErrorCode::InvalidConfig);
            }
            println!("altered topic {name}: {}", changes.join(", "));
            Ok(())
        }
    }
}

/// The error for an alteration the broker refused, naming the config when a config check can tell which.
fn refused(
    admin: &Admin,
    name: &str,
    set: &[(String, String)],
    code: RDKafkaErrorCode,
) -> Result<()> {
    // A name that is not a topic, so that the check gets as far as the configs.
    match first_refused(admin, "nerve-cli-config-check", set)? {
        Some(((key, value), single)) => {
            bail!("invalid config {key}={value}: the broker refused it ({single})")
        }
        None => bail!("the broker did not apply the change to topic {name} ({code})"),
    }
}

/// The configs set on the topic (not defaults), or `None` when the broker lacks DescribeConfigs.
fn topic_overrides(admin: &Admin, name: &str) -> Result<Option<BTreeMap<String, String>>> {
    Ok(describe_configs(admin, name)?.map(|entries| {
        entries
            .into_iter()
            .filter(set_on_topic)
            .filter_map(|e| e.value.map(|v| (e.name, v)))
            .collect()
    }))
}

fn delete(admin: &Admin, name: &str) -> Result<()> {
    let metadata = admin.metadata()?;
    find_topic(&metadata, name)?;
    let results = block_on(admin.client.delete_topics(&[name], &admin.options()))
        .context("DeleteTopics failed")?;
    match first_result(
        results
            .into_iter()
            .map(|r| r.map(drop).map_err(|(_, code)| code)),
    )? {
        Ok(()) => {
            println!("deleted topic {name}");
            Ok(())
        }
        Err(RDKafkaErrorCode::UnknownTopicOrPartition) => bail!("topic {name} does not exist"),
        Err(code) => bail!("cannot delete topic {name}: {code}"),
    }
}

/// The topic's configs, or `None` when the broker does not implement DescribeConfigs.
fn describe_configs(admin: &Admin, name: &str) -> Result<Option<Vec<ConfigEntry>>> {
    let resource = ResourceSpecifier::Topic(name);
    match block_on(admin.client.describe_configs([&resource], &admin.options())) {
        Ok(results) => match results.into_iter().next() {
            Some(Ok(resource)) => Ok(Some(resource.entries)),
            Some(Err(code)) if unsupported(code) => Ok(None),
            Some(Err(code)) => bail!("cannot describe the configs of topic {name}: {code}"),
            None => bail!("the broker answered DescribeConfigs without topic {name}"),
        },
        Err(e) => match admin_error_code(&e) {
            Some(code) if unsupported(code) => Ok(None),
            _ => bail!("cannot describe the configs of topic {name}: {e}"),
        },
    }
}

/// Whether a config is an override on the topic rather than a default. Brokers that do not report the
/// source (before Kafka 1.1) say so with `is_default` alone.
fn set_on_topic(entry: &ConfigEntry) -> bool {
    match entry.source {
        ConfigSource::DynamicTopic => true,
        ConfigSource::Unknown => !entry.is_default,
        _ => false,
    }
}

/// A broker that lacks an API: librdkafka refuses locally when ApiVersions did not list it
/// (`UnsupportedFeature`), the broker answers `UNSUPPORTED_VERSION` when it knows the API but not the
/// version.
fn unsupported(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::UnsupportedFeature | RDKafkaErrorCode::UnsupportedVersion
    )
}

fn admin_error_code(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    match error {
        KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    }
}

/// The one result of a request about one resource.
fn first_result(
    mut results: impl Iterator<Item = Result<(), RDKafkaErrorCode>>,
) -> Result<Result<(), RDKafkaErrorCode>> {
    results
        .next()
        .ok_or_else(|| anyhow!("the broker's answer named no topic"))
}

fn join(ids: &[i32]) -> String {
    ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}
