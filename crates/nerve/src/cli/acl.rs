//! `nerve acl`: add, list and remove Kafka ACLs with CreateAcls, DescribeAcls and DeleteAcls, as
//! `kafka-acls.sh` does.
//!
//! `add` and `remove` read the same flags the same way, so that `remove` with `add`'s flags removes exactly
//! what `add` added: a resource name is LITERAL unless `--prefixed`. `list` without `--prefixed` shows
//! both kinds for a name.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use kafka_protocol::protocol::StrBytes;
use nerve_auth::acl::CLUSTER_NAME;
use nerve_auth::{
    AclBinding, AclBindingFilter, Operation, PatternType, Permission, Principal, ResourceType,
};

use super::kafka_client;
use super::{print_table, row, ClientArgs};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  nerve acl add --allow --principal User:alice --operation read --operation describe --topic orders
  nerve acl add --allow --principal User:alice --operation read --group billing- --prefixed
  nerve acl list --principal User:alice
  nerve acl remove --allow --principal User:alice --operation read --topic orders")]
pub(crate) struct AclArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[command(subcommand)]
    command: AclCommand,
}

/// Which resource: one of the five kinds.
#[derive(Args, Debug, Clone, Default)]
#[group(id = "resource", multiple = false)]
struct ResourceArgs {
    /// A topic (`*` for every topic).
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
    /// A consumer group (`*` for every group).
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// The cluster itself (the resource of admin operations such as CREATE, ALTER, DESCRIBE_CONFIGS).
    #[arg(long)]
    cluster: bool,
    /// A transactional id (`*` for every one).
    #[arg(long, value_name = "ID")]
    transactional_id: Option<String>,
    /// A schema registry subject (`*` for every subject): Nerve's SUBJECT resource type, checked by the
    /// registry's REST API (see docs/security.md).
    #[arg(long, value_name = "SUBJECT")]
    subject: Option<String>,
}

impl ResourceArgs {
    /// The resource type and name given, if any.
    fn resource(&self) -> Option<(ResourceType, String)> {
        if let Some(topic) = &self.topic {
            Some((ResourceType::Topic, topic.clone()))
        } else if let Some(group) = &self.group {
            Some((ResourceType::Group, group.clone()))
        } else if let Some(id) = &self.transactional_id {
            Some((ResourceType::TransactionalId, id.clone()))
        } else if let Some(subject) = &self.subject {
            Some((ResourceType::Subject, subject.clone()))
        } else if self.cluster {
            Some((ResourceType::Cluster, CLUSTER_NAME.to_string()))
        } else {
            None
        }
    }
}

/// Allow or deny.
#[derive(Args, Debug, Clone, Default)]
#[group(id = "permission", multiple = false)]
struct PermissionArgs {
    /// ALLOW: grant the operations (list and remove: ALLOW bindings only).
    #[arg(long)]
    allow: bool,
    /// DENY: refuse the operations, whatever any ALLOW says (list and remove: DENY bindings only).
    #[arg(long)]
    deny: bool,
}

impl PermissionArgs {
    fn permission(&self) -> Option<Permission> {
        match (self.allow, self.deny) {
            (true, _) => Some(Permission::Allow),
            (_, true) => Some(Permission::Deny),
            _ => None,
        }
    }
}

/// The flags that select bindings, shared by `add`, `list` and `remove`.
#[derive(Args, Debug, Clone)]
struct BindingArgs {
    #[command(flatten)]
    permission: PermissionArgs,
    /// Whose binding: User:NAME (User:* for everyone).
    #[arg(long, value_name = "User:NAME", value_parser = parse_principal)]
    principal: Option<String>,
    /// The client host the binding applies to, as an IP address (* for any host).
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// An operation: ALL, READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, CLUSTER_ACTION, DESCRIBE_CONFIGS,
    /// ALTER_CONFIGS, IDEMPOTENT_WRITE (any case, `-` or `_`); repeatable.
    #[arg(long, value_name = "OP", value_parser = parse_operation)]
    operation: Vec<Operation>,
    #[command(flatten)]
    resource: ResourceArgs,
    /// The name is a prefix: the binding covers every resource whose name starts with it (PREFIXED rather
    /// than LITERAL; list and remove: PREFIXED bindings only).
    #[arg(long)]
    prefixed: bool,
}

#[derive(Subcommand, Debug)]
enum AclCommand {
    /// Add bindings: one per --operation, for the principal, host and resource given.
    #[command(after_help = "Examples:
  nerve acl add --allow --principal User:alice --operation read --operation describe --topic orders
  nerve acl add --allow --principal User:alice --operation read --group '*'
  nerve acl add --allow --principal User:ops --operation describe-configs --cluster
  nerve acl add --deny --principal User:mallory --host 10.0.0.7 --operation all --topic payments. --prefixed")]
    Add(BindingArgs),
    /// List bindings; every flag narrows the list [default: every binding].
    #[command(
        after_help = "Without --prefixed a resource name shows its LITERAL and PREFIXED bindings alike.

Examples:
  nerve acl list
  nerve acl list --principal User:alice
  nerve acl list --topic orders --operation read"
    )]
    List(BindingArgs),
    /// Remove the bindings the flags select, and print them. Read like add's flags: a resource name is
    /// LITERAL unless --prefixed.
    #[command(
        after_help = "At least one flag is needed: removing every binding takes `--principal` per \
user or an explicit filter such as `--topic '*'`.

Examples:
  nerve acl remove --allow --principal User:alice --operation read --topic orders
  nerve acl remove --principal User:alice"
    )]
    Remove(BindingArgs),
}

fn parse_principal(text: &str) -> Result<String, String> {
    text.parse::<Principal>()
        .map(|p| p.to_string())
        .map_err(|e| format!("{e} (expected User:NAME)"))
}

fn parse_operation(text: &str) -> Result<Operation, String> {
    match text.parse::<Operation>() {
        Ok(Operation::Unknown | Operation::Any) | Err(_) => Err(format!(
            "unknown operation `{text}`; expected one of {}",
            Operation::ALL
                .iter()
                .filter(|o| !matches!(o, Operation::Unknown | Operation::Any))
                .map(|o| o.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Ok(operation) => Ok(operation),
    }
}

/// [`kafka_client::broker_error`], with what to do about SECURITY_DISABLED.
fn broker_error(code: i16, message: Option<&StrBytes>) -> Option<String> {
    let error = kafka_client::broker_error(code, message)?;
    if code == kafka_protocol::error::ResponseError::SecurityDisabled.code() {
        return Some(format!(
            "{error}; the broker checks no ACLs (on Nerve, set authorizer_enabled = true under [kafka])"
        ));
    }
    Some(error)
}

pub(crate) fn run(args: AclArgs) -> Result<()> {
    match args.command {
        AclCommand::Add(binding) => add(&args.client, &binding),
        AclCommand::List(binding) => list(&args.client, &binding),
        AclCommand::Remove(binding) => remove(&args.client, &binding),
    }
}

/// The bindings `add` creates, checked as the broker will check them.
fn bindings(args: &BindingArgs) -> Result<Vec<AclBinding>> {
    let Some(permission) = args.permission.permission() else {
        bail!("say --allow or --deny");
    };
    let Some(principal) = &args.principal else {
        bail!("say whose binding with --principal User:NAME");
    };
    let Some((resource_type, resource_name)) = args.resource.resource() else {
        bail!("say which resource: --topic, --group, --cluster or --transactional-id");
    };
    if args.operation.is_empty() {
        bail!("say which operation with --operation (repeatable)");
    }
    let mut out = Vec::new();
    for operation in &args.operation {
        let binding = AclBinding {
            resource_type,
            resource_name: resource_name.clone(),
            pattern_type: pattern(args, PatternType::Literal),
            principal: principal.clone(),
            host: args.host.clone().unwrap_or_else(|| "*".to_string()),
            operation: *operation,
            permission,
        };
        binding.validate()?;
        if !out.contains(&binding) {
            out.push(binding);
        }
    }
    Ok(out)
}

fn pattern(args: &BindingArgs, unprefixed: PatternType) -> PatternType {
    if args.prefixed {
        PatternType::Prefixed
    } else {
        unprefixed
    }
}

/// The filters `list` (`unprefixed` ANY) or `remove` (LITERAL) sends: one per operation, or one for any.
fn filters(args: &BindingArgs, unprefixed: PatternType) -> Vec<AclBindingFilter> {
    let (resource_type, resource_name) = match args.resource.resource() {
        Some((kind, name)) => (kind, Some(name)),
        // Without a name there is nothing to read literally.
        None => (ResourceType::Any, None),
    };
    let pattern_type = match resource_name {
        Some(_) => pattern(args, unprefixed),
        None => pattern(args, PatternType::Any),
    };
    let operations = if args.operation.is_empty() {
        vec![Operation::Any]
    } else {
        args.operation.clone()
    };
    operations
        .into_iter()
        .map(|operation| AclBindingFilter {
            resource_type,
            resource_name: resource_name.clone(),
            pattern_type,
            principal: args.principal.clone(),
            host: args.host.clone(),
            operation,
            permission: args.permission.permission().unwrap_or(Permission::Any),
        })
        .collect()
}

fn add(client: &ClientArgs, args: &BindingArgs) -> Result<()> {
    let bindings = bindings(args)?;
    let creations = bindings
        .iter()
        .map(|b| {
            AclCreation::default()
                .with_resource_type(b.resource_type.code())
                .with_resource_name(StrBytes::from_string(b.resource_name.clone()))
                .with_resource_pattern_type(b.pattern_type.code())
                .with_principal(StrBytes::from_string(b.principal.clone()))
                .with_host(StrBytes::from_string(b.host.clone()))
                .with_operation(b.operation.code())
                .with_permission_type(b.permission.code())
        })
        .collect();
    let mut kafka = client.kafka_client()?;
    let response = kafka.call(&CreateAclsRequest::default().with_creations(creations))?;
    if response.results.len() != bindings.len() {
        bail!(
            "the broker answered {} of {} ACL creations",
            response.results.len(),
            bindings.len()
        );
    }
    let mut failed = Vec::new();
    for (binding, result) in bindings.iter().zip(&response.results) {
        match broker_error(result.error_code, result.error_message.as_ref()) {
            Some(error) => failed.push(format!("{}: {error}", describe(binding))),
            None => println!("added {}", describe(binding)),
        }
    }
    if !failed.is_empty() {
        bail!("cannot add {}", failed.join("; "));
    }
    Ok(())
}

/// One binding in a line: "ALLOW User:alice READ on TOPIC orders (LITERAL) from *".
fn describe(b: &AclBinding) -> String {
    format!(
        "{} {} {} on {} {} ({}) from {}",
        b.permission,
        b.principal,
        b.operation,
        b.resource_type,
        b.resource_name,
        b.pattern_type,
        b.host
    )
}

fn list(client: &ClientArgs, args: &BindingArgs) -> Result<()> {
    let mut kafka = client.kafka_client()?;
    let mut found = Vec::new();
    for filter in filters(args, PatternType::Any) {
        let request = DescribeAclsRequest::default()
            .with_resource_type_filter(filter.resource_type.code())
            .with_resource_name_filter(filter.resource_name.map(StrBytes::from_string))
            .with_pattern_type_filter(filter.pattern_type.code())
            .with_principal_filter(filter.principal.map(StrBytes::from_string))
            .with_host_filter(filter.host.map(StrBytes::from_string))
            .with_operation(filter.operation.code())
            .with_permission_type(filter.permission.code());
        let response = kafka.call(&request)?;
        if let Some(error) = broker_error(response.error_code, response.error_message.as_ref()) {
            bail!("cannot list the ACLs: {error}");
        }
        for resource in response.resources {
            for acl in resource.acls {
                found.push(Row {
                    principal: acl.principal.to_string(),
                    permission: name_of(
                        Permission::from_code(acl.permission_type),
                        acl.permission_type,
                    ),
                    operation: name_of(Operation::from_code(acl.operation), acl.operation),
                    host: acl.host.to_string(),
                    resource_type: name_of(
                        ResourceType::from_code(resource.resource_type),
                        resource.resource_type,
                    ),
                    name: resource.resource_name.to_string(),
                    pattern: name_of(
                        PatternType::from_code(resource.pattern_type),
                        resource.pattern_type,
                    ),
                });
            }
        }
    }
    print_rows(found);
    Ok(())
}

fn remove(client: &ClientArgs, args: &BindingArgs) -> Result<()> {
    let given = args.permission.permission().is_some()
        || args.principal.is_some()
        || args.host.is_some()
        || !args.operation.is_empty()
        || args.resource.resource().is_some();
    if !given {
        bail!(
            "say which ACLs to remove (--principal, --topic, --group, --cluster, --transactional-id, \
             --operation, --host, --allow or --deny)"
        );
    }
    let filters: Vec<DeleteAclsFilter> = filters(args, PatternType::Literal)
        .into_iter()
        .map(|filter| {
            DeleteAclsFilter::default()
                .with_resource_type_filter(filter.resource_type.code())
                .with_resource_name_filter(filter.resource_name.map(StrBytes::from_string))
                .with_pattern_type_filter(filter.pattern_type.code())
                .with_principal_filter(filter.principal.map(StrBytes::from_string))
                .with_host_filter(filter.host.map(StrBytes::from_string))
                .with_operation(filter.operation.code())
                .with_permission_type(filter.permission.code())
        })
        .collect();
    let mut kafka = client.kafka_client()?;
    let response = kafka.call(&DeleteAclsRequest::default().with_filters(filters))?;
    let mut removed = Vec::new();
    let mut failed = Vec::new();
    for result in response.filter_results {
        if let Some(error) = broker_error(result.error_code, result.error_message.as_ref()) {
            failed.push(error);
            continue;
        }
        for acl in result.matching_acls {
            if let Some(error) = broker_error(acl.error_code, acl.error_message.as_ref()) {
                failed.push(error);
                continue;
            }
            removed.push(Row {
                principal: acl.principal.to_string(),
                permission: name_of(
                    Permission::from_code(acl.permission_type),
                    acl.permission_type,
                ),
                operation: name_of(Operation::from_code(acl.operation), acl.operation),
                host: acl.host.to_string(),
                resource_type: name_of(
                    ResourceType::from_code(acl.resource_type),
                    acl.resource_type,
                ),
                name: acl.resource_name.to_string(),
                pattern: name_of(PatternType::from_code(acl.pattern_type), acl.pattern_type),
            });
        }
    }
    match removed.len() {
        0 => println!("no ACL matched"),
        1 => println!("removed 1 ACL:"),
        n => println!("removed {n} ACLs:"),
    }
    print_rows(removed);
    if !failed.is_empty() {
        bail!("some ACLs were not removed: {}", failed.join("; "));
    }
    Ok(())
}

/// A binding as the broker reported it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Row {
    principal: String,
    permission: String,
    operation: String,
    host: String,
    resource_type: String,
    name: String,
    pattern: String,
}

fn name_of(known: Option<impl std::fmt::Display>, code: i8) -> String {
    known.map_or_else(|| format!("UNKNOWN({code})"), |k| k.to_string())
}

/// The bindings as a table, sorted and without duplicates (filters for several operations may overlap);
/// nothing at all when there are none.
fn print_rows(mut rows: Vec<Row>) {
    if rows.is_empty() {
        return;
    }
    rows.sort();
    rows.dedup();
    let mut table = vec![row(&[
        "PRINCIPAL",
        "PERMISSION",
        "OPERATION",
        "HOST",
        "RESOURCE TYPE",
        "NAME",
        "PATTERN",
    ])];
    table.extend(rows.into_iter().map(|r| {
        vec![
            r.principal,
            r.permission,
            r.operation,
            r.host,
            r.resource_type,
            r.name,
            r.pattern,
        ]
    }));
    print_table(&table);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        command: AclCommand,
    }

    fn parse(args: &[&str]) -> Result<AclCommand, clap::Error> {
        Cli::try_parse_from(["acl"].iter().chain(args)).map(|cli| cli.command)
    }

    fn binding_args(args: &[&str]) -> BindingArgs {
        match parse(args).expect("valid flags") {
            AclCommand::Add(b) | AclCommand::List(b) | AclCommand::Remove(b) => b,
        }
    }

    #[test]
    fn subject_names_a_schema_registry_subject() {
        let bindings = bindings(&binding_args(&[
            "add",
            "--allow",
            "--principal",
            "User:alice",
            "--operation",
            "write",
            "--subject",
            "orders",
            "--prefixed",
        ]))
        .unwrap();
        assert_eq!(bindings.len(), 1);
        assert_eq!(bindings[0].resource_type, ResourceType::Subject);
        assert_eq!(bindings[0].resource_name, "orders");
        assert_eq!(bindings[0].pattern_type, PatternType::Prefixed);
    }

    #[test]
    fn add_makes_one_literal_binding_per_operation_on_any_host() {
        let bindings = bindings(&binding_args(&[
            "add",
            "--allow",
            "--principal",
            "User:alice",
            "--operation",
            "read",
            "--operation",
            "Describe-Configs",
            "--topic",
            "orders",
        ]))
        .unwrap();
        assert_eq!(bindings.len(), 2);
        assert_eq!(bindings[0].operation, Operation::Read);
        assert_eq!(bindings[1].operation, Operation::DescribeConfigs);
        for b in &bindings {
            assert_eq!(b.resource_type, ResourceType::Topic);
            assert_eq!(b.resource_name, "orders");
            assert_eq!(b.pattern_type, PatternType::Literal);
            assert_eq!(b.host, "*");
            assert_eq!(b.permission, Permission::Allow);
        }
        let cluster = bindings_of(&[
            "add",
            "--deny",
            "--principal",
            "User:bob",
            "--operation",
            "alter",
            "--cluster",
        ]);
        assert_eq!(cluster[0].resource_name, CLUSTER_NAME);
    }

    fn bindings_of(args: &[&str]) -> Vec<AclBinding> {
        bindings(&binding_args(args)).unwrap()
    }

    #[test]
    fn add_refuses_what_the_broker_would_refuse_before_connecting() {
        let refused = |args: &[&str]| bindings(&binding_args(args)).unwrap_err().to_string();
        assert!(refused(&[
            "add",
            "--principal",
            "User:a",
            "--operation",
            "read",
            "--topic",
            "t"
        ])
        .contains("--allow"));
        assert!(
            refused(&["add", "--allow", "--operation", "read", "--topic", "t"])
                .contains("--principal")
        );
        assert!(
            refused(&["add", "--allow", "--principal", "User:a", "--topic", "t"])
                .contains("--operation")
        );
        assert!(refused(&[
            "add",
            "--allow",
            "--principal",
            "User:a",
            "--operation",
            "read"
        ])
        .contains("--topic"));
        // A prefixed wildcard means nothing.
        assert!(!refused(&[
            "add",
            "--allow",
            "--principal",
            "User:a",
            "--operation",
            "read",
            "--topic",
            "*",
            "--prefixed"
        ])
        .is_empty());
        // Flags clap refuses.
        assert!(parse(&["add", "--allow", "--deny"]).is_err());
        assert!(parse(&["add", "--topic", "a", "--group", "b"]).is_err());
        assert!(parse(&["add", "--operation", "fly"]).is_err());
        assert!(parse(&["add", "--operation", "any"]).is_err());
        assert!(parse(&["add", "--principal", "alice"]).is_err());
    }

    #[test]
    fn list_shows_both_pattern_types_and_remove_reads_names_literally() {
        let args = binding_args(&["list", "--topic", "orders"]);
        let listed = filters(&args, PatternType::Any);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].pattern_type, PatternType::Any);
        assert_eq!(listed[0].resource_name.as_deref(), Some("orders"));
        assert_eq!(listed[0].operation, Operation::Any);
        assert_eq!(listed[0].permission, Permission::Any);
        let removed = filters(&args, PatternType::Literal);
        assert_eq!(removed[0].pattern_type, PatternType::Literal);
        let prefixed = filters(
            &binding_args(&["remove", "--topic", "orders", "--prefixed"]),
            PatternType::Literal,
        );
        assert_eq!(prefixed[0].pattern_type, PatternType::Prefixed);
        // Without a resource every type and pattern matches.
        let everything = filters(
            &binding_args(&[
                "remove",
                "--principal",
                "User:alice",
                "--operation",
                "read",
                "--operation",
                "write",
            ]),
            PatternType::Literal,
        );
        assert_eq!(everything.len(), 2);
        assert!(everything
            .iter()
            .all(|f| f.resource_type == ResourceType::Any && f.pattern_type == PatternType::Any));
        assert_eq!(everything[0].principal.as_deref(), Some("User:alice"));
    }
}
