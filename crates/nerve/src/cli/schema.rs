//! `nerve schema`: register, show, list, check and delete schemas, and show or set compatibility levels
//! and modes, through the schema registry's REST API (Confluent's, so these commands work against a
//! Confluent or Redpanda registry too).
//!
//! The registry is plain HTTP; the client is `ureq` without TLS. Every answer that is not a success is
//! reported as the registry's own `{"error_code": N, "message": "..."}` (`nerve: MESSAGE (error code N)`),
//! and a registry that cannot be reached as one line naming its URL.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use clap::{Args, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{print_table, row};

/// Confluent's content type, which every registry accepts.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  nerve schema register orders-value --file order.avsc
  nerve schema get orders-value
  nerve schema list
  nerve schema check orders-value --file order-v2.avsc
  nerve schema config orders-value --set FULL
  nerve schema delete orders-value")]
pub(crate) struct SchemaArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    #[command(subcommand)]
    command: SchemaCommand,
}

/// Where the schema registry is, shared by every schema command.
#[derive(Args, Clone, Debug)]
struct RegistryArgs {
    /// The schema registry's base URL (any Confluent-compatible registry works), http:// or https://.
    #[arg(
        long,
        env = "NERVE_REGISTRY_URL",
        default_value = "http://127.0.0.1:8081",
        value_name = "URL",
        global = true
    )]
    registry_url: String,
    /// HTTP basic credentials for a registry that asks for them, as Confluent's `basic.auth.user.info`.
    #[arg(
        long,
        env = "NERVE_REGISTRY_AUTH",
        value_name = "USER:PASSWORD",
        global = true
    )]
    registry_auth: Option<String>,
    /// The CA certificates (PEM) that sign an https registry's certificate [default: the public roots].
    #[arg(long, env = "NERVE_REGISTRY_CA", value_name = "FILE", global = true)]
    registry_ca: Option<PathBuf>,
}

/// How `get` and `list` print.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum Output {
    /// Aligned text for people.
    Human,
    /// One JSON document, for scripts.
    Json,
}

/// A schema's type as the registry names it.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum SchemaKind {
    Avro,
    Json,
    Protobuf,
}

impl SchemaKind {
    fn name(self) -> &'static str {
        match self {
            SchemaKind::Avro => "AVRO",
            SchemaKind::Json => "JSON",
            SchemaKind::Protobuf => "PROTOBUF",
        }
    }

    /// The type a file's extension says: `.avsc` Avro, `.json` JSON Schema, `.proto` Protobuf, else Avro.
    fn from_path(path: &Path) -> SchemaKind {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") => SchemaKind::Json,
            Some("proto") => SchemaKind::Protobuf,
            _ => SchemaKind::Avro,
        }
    }
}

/// Compatibility levels, as `config --set` takes them (any case).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "SCREAMING_SNAKE_CASE")]
enum Level {
    None,
    Backward,
    BackwardTransitive,
    Forward,
    ForwardTransitive,
    Full,
    FullTransitive,
}

/// Registry modes, as `mode --set` takes them (any case).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
#[value(rename_all = "UPPERCASE")]
enum ModeName {
    /// Schemas can be registered and deleted.
    Readwrite,
    /// No changes.
    Readonly,
    /// Schemas are registered with given ids and versions (migrations).
    Import,
}

/// The schema to register or check and how to send it.
#[derive(Args, Debug)]
struct SchemaInput {
    /// The schema file, or `-` for stdin.
    #[arg(long, short = 'f', value_name = "PATH|-")]
    file: PathBuf,
    /// The schema's type [default: from the file's extension: .avsc avro, .json json, .proto protobuf;
    /// else avro].
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    kind: Option<SchemaKind>,
    /// A schema this one refers to: the name it uses for it (Avro full name, JSON Schema `$ref`, Protobuf
    /// import path), and the subject and version it is registered under (`latest` is looked up);
    /// repeatable.
    #[arg(long = "reference", value_name = "NAME=SUBJECT:VERSION", value_parser = parse_reference)]
    references: Vec<ReferenceArg>,
    /// Normalize the schema before comparing or storing it, so that equivalent texts get the same id.
    #[arg(long)]
    normalize: bool,
}

/// A `--reference` as given.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ReferenceArg {
    name: String,
    subject: String,
    /// `None` for `latest`.
    version: Option<i32>,
}

/// `--version N|latest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VersionArg {
    Latest,
    Number(i32),
}

impl VersionArg {
    fn path(self) -> String {
        match self {
            VersionArg::Latest => "latest".to_string(),
            VersionArg::Number(n) => n.to_string(),
        }
    }
}

fn parse_version(text: &str) -> Result<VersionArg, String> {
    if text.eq_ignore_ascii_case("latest") {
        return Ok(VersionArg::Latest);
    }
    match text.parse::<i32>() {
        Ok(n) if n >= 1 => Ok(VersionArg::Number(n)),
        _ => Err(format!(
            "expected a version number from 1 or `latest`, got `{text}`"
        )),
    }
}

fn parse_reference(text: &str) -> Result<ReferenceArg, String> {
    let bad = || format!("expected NAME=SUBJECT:VERSION, got `{text}`");
    let (name, rest) = text.split_once('=').ok_or_else(bad)?;
    let (subject, version) = rest.rsplit_once(':').ok_or_else(bad)?;
    if name.is_empty() || subject.is_empty() {
        return Err(bad());
    }
    let version = match parse_version(version)? {
        VersionArg::Latest => None,
        VersionArg::Number(n) => Some(n),
    };
    Ok(ReferenceArg {
        name: name.to_string(),
        subject: subject.to_string(),
        version,
    })
}

#[derive(Subcommand, Debug)]
enum SchemaCommand {
    /// Register a schema under a subject (a new version, unless the subject already has it).
    #[command(after_help = "Examples:
  nerve schema register orders-value --file order.avsc
  nerve schema register orders-value --file - --type json < order.schema.json
  nerve schema register orders-value --file order.proto --reference common/money.proto=money-value:1")]
    Register {
        /// The subject, e.g. `TOPIC-value` for a topic's record values.
        subject: String,
        #[command(flatten)]
        input: SchemaInput,
    },
    /// Show one version of a subject, or a schema by its id: version, id, type, references and the schema.
    #[command(after_help = "Examples:
  nerve schema get orders-value
  nerve schema get orders-value --version 2 --schema-only > order-v2.avsc
  nerve schema get --id 7
  nerve schema get orders-value --output json")]
    Get {
        /// The subject [required unless --id].
        #[arg(required_unless_present = "id")]
        subject: Option<String>,
        /// The version: a number from 1, or `latest`.
        #[arg(long, value_name = "N|latest", value_parser = parse_version,
              default_value = "latest", conflicts_with = "id")]
        version: VersionArg,
        /// A schema id instead of a subject version.
        #[arg(long, value_name = "ID", conflicts_with = "subject")]
        id: Option<i32>,
        /// Print the schema text alone.
        #[arg(long, conflicts_with = "output")]
        schema_only: bool,
        /// Also find soft-deleted versions.
        #[arg(long, conflicts_with = "id")]
        deleted: bool,
        #[arg(long, value_enum, default_value = "human")]
        output: Output,
    },
    /// List subjects with their latest version, id and type; or, given a subject, its versions.
    #[command(after_help = "Examples:
  nerve schema list
  nerve schema list --prefix orders
  nerve schema list orders-value --deleted
  nerve schema list --output json")]
    List {
        /// List this subject's versions instead.
        subject: Option<String>,
        /// Only subjects whose name starts with this.
        #[arg(long, value_name = "PREFIX", conflicts_with = "subject")]
        prefix: Option<String>,
        /// Include soft-deleted subjects and versions (marked `deleted`).
        #[arg(long)]
        deleted: bool,
        #[arg(long, value_enum, default_value = "human")]
        output: Output,
    },
    /// Check whether a schema could be registered under a subject: prints `compatible` (exit 0), or
    /// `incompatible` and why (exit 1).
    #[command(
        after_help = "Without --version the schema is checked against the versions the subject's \
compatibility level looks at (the latest one, or all of them for a transitive level); with --version \
against that one only. A subject with no versions is compatible with anything.

Examples:
  nerve schema check orders-value --file order-v2.avsc
  nerve schema check orders-value --file order-v2.avsc --version 1"
    )]
    Check {
        /// The subject.
        subject: String,
        #[command(flatten)]
        input: SchemaInput,
        /// The version to check against: a number from 1, or `latest`.
        #[arg(long, value_name = "N|latest", value_parser = parse_version)]
        version: Option<VersionArg>,
    },
    /// Delete a subject (every version) or one version: soft (hidden, its id kept), or `--permanent`
    /// after a soft delete.
    #[command(after_help = "Examples:
  nerve schema delete orders-value
  nerve schema delete orders-value --permanent
  nerve schema delete orders-value --version 2")]
    Delete {
        /// The subject.
        subject: String,
        /// Delete this version only: a number from 1, or `latest`.
        #[arg(long, value_name = "N|latest", value_parser = parse_version)]
        version: Option<VersionArg>,
        /// Remove what was soft deleted for good (ids and versions can then be reused).
        #[arg(long)]
        permanent: bool,
    },
    /// Show or set the compatibility level, registry-wide or of one subject.
    #[command(
        after_help = "Levels: NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, \
FULL_TRANSITIVE (any case). A subject without a level of its own uses the registry's.

Examples:
  nerve schema config
  nerve schema config --set FULL
  nerve schema config orders-value --set BACKWARD_TRANSITIVE
  nerve schema config orders-value --unset"
    )]
    Config {
        /// The subject [default: the registry-wide level].
        subject: Option<String>,
        /// The level to set.
        #[arg(long, value_enum, ignore_case = true, value_name = "LEVEL")]
        set: Option<Level>,
        /// Remove the subject's own level (or the registry-wide one, back to BACKWARD).
        #[arg(long, conflicts_with = "set")]
        unset: bool,
    },
    /// Show or set the mode (READWRITE, READONLY or IMPORT), registry-wide or of one subject.
    #[command(after_help = "Examples:
  nerve schema mode
  nerve schema mode orders-value --set READONLY
  nerve schema mode --set IMPORT --force
  nerve schema mode orders-value --unset")]
    Mode {
        /// The subject [default: the registry-wide mode].
        subject: Option<String>,
        /// The mode to set.
        #[arg(long, value_enum, ignore_case = true, value_name = "MODE")]
        set: Option<ModeName>,
        /// With `--set IMPORT`: switch even though schemas are registered.
        #[arg(long, requires = "set")]
        force: bool,
        /// Remove the subject's own mode, so that it follows the registry's.
        #[arg(long, conflicts_with = "set", requires = "subject")]
        unset: bool,
    },
}

pub(crate) fn run(args: SchemaArgs) -> Result<()> {
    let registry = Registry::new(&args.registry)?;
    match args.command {
        SchemaCommand::Register { subject, input } => register(&registry, &subject, &input),
        SchemaCommand::Get {
            subject,
            version,
            id,
            schema_only,
            deleted,
            output,
        } => match (id, subject) {
            (Some(id), _) => get_by_id(&registry, id, schema_only, output),
            (None, Some(subject)) => {
                get(&registry, &subject, version, deleted, schema_only, output)
            }
            (None, None) => bail!("give a subject or --id"),
        },
        SchemaCommand::List {
            subject: Some(subject),
            deleted,
            output,
            ..
        } => list_versions(&registry, &subject, deleted, output),
        SchemaCommand::List {
            subject: None,
            prefix,
            deleted,
            output,
        } => list_subjects(&registry, prefix.as_deref().unwrap_or(""), deleted, output),
        SchemaCommand::Check {
            subject,
            input,
            version,
        } => check(&registry, &subject, &input, version),
        SchemaCommand::Delete {
            subject,
            version,
            permanent,
        } => delete(&registry, &subject, version, permanent),
        SchemaCommand::Config {
            subject,
            set,
            unset,
        } => config(&registry, subject.as_deref(), set, unset),
        SchemaCommand::Mode {
            subject,
            set,
            force,
            unset,
        } => mode(&registry, subject.as_deref(), set, force, unset),
    }
}

// ---- The registry's answers ------------------------------------------------------------------------

/// A reference as the API carries it.
#[derive(Serialize, Deserialize, Clone, Debug)]
struct Reference {
    name: String,
    subject: String,
    version: i32,
}

/// `GET /subjects/{s}/versions/{v}` and `POST /subjects/{s}`.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct SubjectVersion {
    subject: String,
    version: i32,
    id: i32,
    #[serde(default = "avro")]
    schema_type: String,
    #[serde(default)]
    references: Vec<Reference>,
    schema: String,
}

/// `GET /schemas/ids/{id}`.
#[derive(Deserialize, Debug)]
#[serde(rename_all = "camelCase")]
struct SchemaById {
    #[serde(default = "avro")]
    schema_type: String,
    #[serde(default)]
    references: Vec<Reference>,
    schema: String,
}

/// `GET /schemas/ids/{id}/versions`.
#[derive(Deserialize, Serialize, Debug)]
struct IdVersion {
    subject: String,
    version: i32,
}

#[derive(Deserialize)]
struct Registered {
    id: i32,
}

#[derive(Deserialize)]
struct Compatibility {
    is_compatible: bool,
    #[serde(default)]
    messages: Vec<String>,
}

#[derive(Deserialize)]
struct LevelAnswer {
    #[serde(rename = "compatibilityLevel", alias = "compatibility")]
    level: String,
}

#[derive(Deserialize)]
struct ModeAnswer {
    mode: String,
}

fn avro() -> String {
    "AVRO".to_string()
}

// ---- HTTP ------------------------------------------------------------------------------------------

/// A failed request: the registry's error answer, or no answer at all.
#[derive(Debug)]
enum Failure {
    /// The registry answered with `{"error_code": N, "message": "..."}`.
    Registry { code: i64, message: String },
    /// Anything else: unreachable, not a registry's answer.
    Other(anyhow::Error),
}

impl Failure {
    fn into_error(self) -> anyhow::Error {
        match self {
            Failure::Registry { code, message } => {
                anyhow!("{} (error code {code})", one_line(&message))
            }
            Failure::Other(e) => e,
        }
    }

    /// Whether this is the registry's answer with `code`.
    fn is(&self, expected: i64) -> bool {
        matches!(self, Failure::Registry { code, .. } if *code == expected)
    }
}

type Answer<T> = std::result::Result<T, Failure>;

/// The registry's REST API.
struct Registry {
    base: String,
    agent: ureq::Agent,
    /// `Basic ...`, when credentials were given.
    authorization: Option<String>,
}

impl Registry {
    fn new(args: &RegistryArgs) -> Result<Registry> {
        let url = &args.registry_url;
        let base = url.trim_end_matches('/').to_string();
        let host = base
            .strip_prefix("http://")
            .or_else(|| base.strip_prefix("https://"));
        if host.is_none_or(str::is_empty) {
            bail!("--registry-url {url}: expected http://HOST:PORT or https://HOST:PORT");
        }
        // Error answers carry the registry's message; they are read, not turned into bare statuses.
        let agent = match &args.registry_ca {
            Some(ca) => super::https_agent(Some(CONTENT_TYPE), ca)?,
            None => super::http_agent(Some(CONTENT_TYPE)),
        };
        let authorization = match &args.registry_auth {
            Some(user_info) if !user_info.contains(':') => {
                bail!("--registry-auth: expected USER:PASSWORD")
            }
            Some(user_info) => Some(format!("Basic {}", BASE64.encode(user_info))),
            None => None,
        };
        Ok(Registry {
            base,
            agent,
            authorization,
        })
    }

    /// Adds the credentials, if any.
    fn authorized<B>(&self, request: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.authorization {
            Some(value) => request.header("Authorization", value),
            None => request,
        }
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> String {
        let mut url = format!("{}{path}", self.base);
        for (i, (key, value)) in query.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            url.push_str(key);
            url.push('=');
            url.push_str(&encode(value));
        }
        url
    }

    fn get<T: serde::de::DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Answer<T> {
        let url = self.url(path, query);
        self.answer(self.authorized(self.agent.get(&url)).call())
    }

    fn delete<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Answer<T> {
        let url = self.url(path, query);
        self.answer(self.authorized(self.agent.delete(&url)).call())
    }

    fn post<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Answer<T> {
        let url = self.url(path, query);
        let result = self
            .authorized(self.agent.post(&url))
            .header("Content-Type", CONTENT_TYPE)
            .send(body.to_string());
        self.answer(result)
    }

    fn put<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        body: &Value,
    ) -> Answer<T> {
        let url = self.url(path, query);
        let result = self
            .authorized(self.agent.put(&url))
            .header("Content-Type", CONTENT_TYPE)
            .send(body.to_string());
        self.answer(result)
    }

    /// The answer's JSON on success; the registry's error, or why there is no usable answer.
    fn answer<T: serde::de::DeserializeOwned>(
        &self,
        result: std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Answer<T> {
        let mut response = result.map_err(|e| Failure::Other(self.unreachable(&e)))?;
        let status = response.status();
        let body = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Failure::Other(self.unreachable(&e)))?;
        if status.is_success() {
            return serde_json::from_str(&body).map_err(|e| {
                Failure::Other(anyhow!(
                    "the schema registry at {} sent an answer this command does not understand ({e}): {}",
                    self.base,
                    excerpt(&body)
                ))
            });
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            error_code: i64,
            message: String,
        }
        match serde_json::from_str::<ErrorBody>(&body) {
            Ok(e) => Err(Failure::Registry {
                code: e.error_code,
                message: e.message,
            }),
            Err(_) => Err(Failure::Other(anyhow!(
                "the schema registry at {} answered HTTP {status}: {}",
                self.base,
                excerpt(&body)
            ))),
        }
    }

    fn unreachable(&self, error: &ureq::Error) -> anyhow::Error {
        let why = match error {
            ureq::Error::Io(e) => e.to_string(),
            ureq::Error::Timeout(_) => "no answer in time".to_string(),
            ureq::Error::HostNotFound => "host not found".to_string(),
            ureq::Error::ConnectionFailed => "connection failed".to_string(),
            other => other.to_string(),
        };
        anyhow!("cannot reach the schema registry at {}: {why}", self.base)
    }
}

/// A message on one line: its lines (an invalid schema's message quotes the schema) joined by spaces.
fn one_line(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// The start of an unexpected body, on one line.
fn excerpt(body: &str) -> String {
    let line: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.is_empty() {
        return "(empty body)".to_string();
    }
    match line.char_indices().nth(200) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line,
    }
}

/// Percent-encodes a path segment or query value: everything but RFC 3986's unreserved characters.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn subject_path(subject: &str) -> String {
    format!("/subjects/{}", encode(subject))
}

fn flag(on: bool) -> &'static str {
    if on {
        "true"
    } else {
        "false"
    }
}

// ---- Commands --------------------------------------------------------------------------------------

/// The request body for `input`: its text, type and references (`latest` looked up).
fn schema_request(registry: &Registry, input: &SchemaInput) -> Result<Value> {
    let text = if input.file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the schema from stdin")?;
        text
    } else {
        std::fs::read_to_string(&input.file)
            .with_context(|| format!("cannot read {}", input.file.display()))?
    };
    if text.trim().is_empty() {
        bail!("the schema in {} is empty", input.file.display());
    }
    let kind = input.kind.unwrap_or_else(|| {
        if input.file.as_os_str() == "-" {
            SchemaKind::Avro
        } else {
            SchemaKind::from_path(&input.file)
        }
    });
    let mut references = Vec::new();
    for reference in &input.references {
        let version = match reference.version {
            Some(version) => version,
            None => {
                let latest: SubjectVersion = registry
                    .get(
                        &format!("{}/versions/latest", subject_path(&reference.subject)),
                        &[],
                    )
                    .map_err(|e| {
                        e.into_error()
                            .context(format!("reference {}", reference.name))
                    })?;
                latest.version
            }
        };
        references.push(json!({
            "name": reference.name,
            "subject": reference.subject,
            "version": version,
        }));
    }
    Ok(json!({
        "schema": text,
        "schemaType": kind.name(),
        "references": references,
    }))
}

fn register(registry: &Registry, subject: &str, input: &SchemaInput) -> Result<()> {
    let body = schema_request(registry, input)?;
    let normalize = [("normalize", flag(input.normalize))];
    let path = subject_path(subject);
    // Already there? Registering again would answer the same id; saying so is clearer.
    match registry.post::<SubjectVersion>(&path, &normalize, &body) {
        Ok(found) => {
            println!(
                "{subject} already has this schema: id {}, version {}",
                found.id, found.version
            );
            return Ok(());
        }
        // 40401: no such subject yet; 40403: the subject lacks this schema.
        Err(e) if e.is(40401) || e.is(40403) => {}
        Err(e) => return Err(e.into_error()),
    }
    let registered: Registered = registry
        .post(&format!("{path}/versions"), &normalize, &body)
        .map_err(Failure::into_error)?;
    let found: SubjectVersion = registry
        .post(&path, &normalize, &body)
        .map_err(Failure::into_error)
        .context("registered, but cannot look up its version")?;
    println!(
        "registered {subject}: id {}, version {}",
        registered.id, found.version
    );
    Ok(())
}

fn get(
    registry: &Registry,
    subject: &str,
    version: VersionArg,
    deleted: bool,
    schema_only: bool,
    output: Output,
) -> Result<()> {
    let found: SubjectVersion = registry
        .get(
            &format!("{}/versions/{}", subject_path(subject), version.path()),
            &[("deleted", flag(deleted))],
        )
        .map_err(Failure::into_error)?;
    if schema_only {
        println!("{}", pretty(&found.schema_type, &found.schema));
        return Ok(());
    }
    if output == Output::Json {
        return print_json(&json!({
            "subject": found.subject,
            "version": found.version,
            "id": found.id,
            "schemaType": found.schema_type,
            "references": found.references,
            "schema": found.schema,
        }));
    }
    print_fields(&[
        ("subject", found.subject.clone()),
        ("version", found.version.to_string()),
        ("id", found.id.to_string()),
        ("type", found.schema_type.clone()),
        ("references", references_text(&found.references)),
    ]);
    println!();
    println!("{}", pretty(&found.schema_type, &found.schema));
    Ok(())
}

fn get_by_id(registry: &Registry, id: i32, schema_only: bool, output: Output) -> Result<()> {
    let found: SchemaById = registry
        .get(&format!("/schemas/ids/{id}"), &[])
        .map_err(Failure::into_error)?;
    if schema_only {
        println!("{}", pretty(&found.schema_type, &found.schema));
        return Ok(());
    }
    let used_by: Vec<IdVersion> = registry
        .get(&format!("/schemas/ids/{id}/versions"), &[])
        .map_err(Failure::into_error)?;
    if output == Output::Json {
        return print_json(&json!({
            "id": id,
            "schemaType": found.schema_type,
            "references": found.references,
            "schema": found.schema,
            "versions": used_by,
        }));
    }
    let used: Vec<String> = used_by
        .iter()
        .map(|v| format!("{} version {}", v.subject, v.version))
        .collect();
    print_fields(&[
        ("id", id.to_string()),
        ("type", found.schema_type.clone()),
        (
            "subjects",
            if used.is_empty() {
                "-".to_string()
            } else {
                used.join(", ")
            },
        ),
        ("references", references_text(&found.references)),
    ]);
    println!();
    println!("{}", pretty(&found.schema_type, &found.schema));
    Ok(())
}

fn references_text(references: &[Reference]) -> String {
    if references.is_empty() {
        return "-".to_string();
    }
    references
        .iter()
        .map(|r| format!("{} = {} version {}", r.name, r.subject, r.version))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `name: value` lines with the values aligned.
fn print_fields(fields: &[(&str, String)]) {
    let width = fields
        .iter()
        .map(|(name, _)| name.len() + 1)
        .max()
        .unwrap_or(0);
    for (name, value) in fields {
        println!("{:<width$} {value}", format!("{name}:"));
    }
}

fn print_json(value: &Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).context("cannot format the answer as JSON")?;
    println!("{text}");
    Ok(())
}

fn list_subjects(registry: &Registry, prefix: &str, deleted: bool, output: Output) -> Result<()> {
    let names: Vec<String> = registry
        .get(
            "/subjects",
            &[("subjectPrefix", prefix), ("deleted", flag(deleted))],
        )
        .map_err(Failure::into_error)?;
    let live: Vec<String> = if deleted {
        registry
            .get("/subjects", &[("subjectPrefix", prefix)])
            .map_err(Failure::into_error)?
    } else {
        names.clone()
    };
    let mut rows = Vec::new();
    for name in &names {
        let is_deleted = !live.contains(name);
        let latest: SubjectVersion = match registry.get(
            &format!("{}/versions/latest", subject_path(name)),
            &[("deleted", flag(is_deleted))],
        ) {
            Ok(latest) => latest,
            // Deleted between the two requests.
            Err(e) if e.is(40401) || e.is(40402) => continue,
            Err(e) => return Err(e.into_error()),
        };
        rows.push((latest, is_deleted));
    }
    if output == Output::Json {
        let items: Vec<Value> = rows
            .iter()
            .map(|(v, is_deleted)| {
                json!({
                    "subject": v.subject,
                    "version": v.version,
                    "id": v.id,
                    "schemaType": v.schema_type,
                    "deleted": is_deleted,
                })
            })
            .collect();
        return print_json(&Value::Array(items));
    }
    if rows.is_empty() {
        return Ok(());
    }
    let mut table = vec![row(&["SUBJECT", "VERSION", "ID", "TYPE", ""])];
    for (v, is_deleted) in &rows {
        table.push(row(&[
            &v.subject,
            &v.version.to_string(),
            &v.id.to_string(),
            &v.schema_type,
            if *is_deleted { "deleted" } else { "" },
        ]));
    }
    print_table(&table);
    Ok(())
}

fn list_versions(registry: &Registry, subject: &str, deleted: bool, output: Output) -> Result<()> {
    let path = format!("{}/versions", subject_path(subject));
    let versions: Vec<i32> = registry
        .get(&path, &[("deleted", flag(deleted))])
        .map_err(Failure::into_error)?;
    let live: Vec<i32> = if deleted {
        match registry.get(&path, &[]) {
            Ok(live) => live,
            // Every version is soft deleted.
            Err(e) if e.is(40401) => Vec::new(),
            Err(e) => return Err(e.into_error()),
        }
    } else {
        versions.clone()
    };
    let mut rows = Vec::new();
    for version in versions {
        let found: SubjectVersion =
            match registry.get(&format!("{path}/{version}"), &[("deleted", flag(deleted))]) {
                Ok(found) => found,
                Err(e) if e.is(40402) => continue,
                Err(e) => return Err(e.into_error()),
            };
        rows.push((found, !live.contains(&version)));
    }
    if output == Output::Json {
        let items: Vec<Value> = rows
            .iter()
            .map(|(v, is_deleted)| {
                json!({
                    "version": v.version,
                    "id": v.id,
                    "schemaType": v.schema_type,
                    "references": v.references,
                    "deleted": is_deleted,
                })
            })
            .collect();
        return print_json(&Value::Array(items));
    }
    let mut table = vec![row(&["VERSION", "ID", "TYPE", ""])];
    for (v, is_deleted) in &rows {
        table.push(row(&[
            &v.version.to_string(),
            &v.id.to_string(),
            &v.schema_type,
            if *is_deleted { "deleted" } else { "" },
        ]));
    }
    print_table(&table);
    Ok(())
}

fn check(
    registry: &Registry,
    subject: &str,
    input: &SchemaInput,
    version: Option<VersionArg>,
) -> Result<()> {
    let body = schema_request(registry, input)?;
    let mut path = format!("/compatibility{}/versions", subject_path(subject));
    if let Some(version) = version {
        path = format!("{path}/{}", version.path());
    }
    let answer: Compatibility = registry
        .post(
            &path,
            &[("verbose", "true"), ("normalize", flag(input.normalize))],
            &body,
        )
        .map_err(Failure::into_error)?;
    if answer.is_compatible {
        println!("compatible");
        return Ok(());
    }
    println!("incompatible");
    for message in &answer.messages {
        println!("  {}", one_line(message));
    }
    // The verdict is the command's answer, already printed; exit 1 tells scripts, without an error line.
    let _ = std::io::stdout().flush();
    std::process::exit(1);
}

fn delete(
    registry: &Registry,
    subject: &str,
    version: Option<VersionArg>,
    permanent: bool,
) -> Result<()> {
    let how = if permanent {
        "permanently deleted"
    } else {
        "deleted"
    };
    let query = [("permanent", flag(permanent))];
    let hint = if permanent {
        ""
    } else {
        " (soft: --permanent removes it for good)"
    };
    match version {
        Some(version) => {
            let deleted: i32 = registry
                .delete(
                    &format!("{}/versions/{}", subject_path(subject), version.path()),
                    &query,
                )
                .map_err(Failure::into_error)?;
            println!("{how} {subject} version {deleted}{hint}");
        }
        None => {
            let deleted: Vec<i32> = registry
                .delete(&subject_path(subject), &query)
                .map_err(Failure::into_error)?;
            let list: Vec<String> = deleted.iter().map(i32::to_string).collect();
            let noun = if deleted.len() == 1 {
                "version"
            } else {
                "versions"
            };
            println!("{how} {subject}: {noun} {}{hint}", list.join(", "));
        }
    }
    Ok(())
}

fn config(
    registry: &Registry,
    subject: Option<&str>,
    set: Option<Level>,
    unset: bool,
) -> Result<()> {
    let path = match subject {
        Some(subject) => format!("/config/{}", encode(subject)),
        None => "/config".to_string(),
    };
    let whose = match subject {
        Some(subject) => format!("compatibility of {subject}"),
        None => "registry-wide compatibility".to_string(),
    };
    if let Some(level) = set {
        let name = level
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        let answer: LevelAnswer = registry
            .put(&path, &[], &json!({ "compatibility": name }))
            .map_err(Failure::into_error)?;
        println!("{whose} set to {}", answer.level);
        return Ok(());
    }
    if unset {
        let answer: LevelAnswer = registry.delete(&path, &[]).map_err(Failure::into_error)?;
        let now: LevelAnswer = registry
            .get(&path, &[("defaultToGlobal", "true")])
            .map_err(Failure::into_error)?;
        println!("{whose} unset (was {}, now {})", answer.level, now.level);
        return Ok(());
    }
    let Some(subject) = subject else {
        let answer: LevelAnswer = registry.get(&path, &[]).map_err(Failure::into_error)?;
        println!("{}", answer.level);
        return Ok(());
    };
    match registry.get::<LevelAnswer>(&path, &[]) {
        Ok(answer) => println!("{}", answer.level),
        // 40408: no level of its own; it follows the registry's.
        Err(e) if e.is(40408) => {
            let global: LevelAnswer = registry.get("/config", &[]).map_err(Failure::into_error)?;
            println!(
                "{} (the registry's; {subject} has no level of its own)",
                global.level
            );
        }
        Err(e) => return Err(e.into_error()),
    }
    Ok(())
}

fn mode(
    registry: &Registry,
    subject: Option<&str>,
    set: Option<ModeName>,
    force: bool,
    unset: bool,
) -> Result<()> {
    let path = match subject {
        Some(subject) => format!("/mode/{}", encode(subject)),
        None => "/mode".to_string(),
    };
    let whose = match subject {
        Some(subject) => format!("mode of {subject}"),
        None => "registry-wide mode".to_string(),
    };
    if let Some(mode) = set {
        let name = mode
            .to_possible_value()
            .map(|v| v.get_name().to_string())
            .unwrap_or_default();
        let answer: ModeAnswer = registry
            .put(&path, &[("force", flag(force))], &json!({ "mode": name }))
            .map_err(Failure::into_error)?;
        println!("{whose} set to {}", answer.mode);
        return Ok(());
    }
    if unset {
        let answer: ModeAnswer = registry.delete(&path, &[]).map_err(Failure::into_error)?;
        println!("{whose} unset (was {})", answer.mode);
        return Ok(());
    }
    let Some(subject) = subject else {
        let answer: ModeAnswer = registry.get(&path, &[]).map_err(Failure::into_error)?;
        println!("{}", answer.mode);
        return Ok(());
    };
    match registry.get::<ModeAnswer>(&path, &[]) {
        Ok(answer) => println!("{}", answer.mode),
        // 40409: no mode of its own; it follows the registry's.
        Err(e) if e.is(40409) => {
            let global: ModeAnswer = registry.get("/mode", &[]).map_err(Failure::into_error)?;
            println!(
                "{} (the registry's; {subject} has no mode of its own)",
                global.mode
            );
        }
        Err(e) => return Err(e.into_error()),
    }
    Ok(())
}

// ---- Printing schemas ------------------------------------------------------------------------------

/// Avro and JSON Schema texts re-indented (two spaces), keeping their keys' order and every token as it
/// is; Protobuf, and a text that is not JSON, as stored.
fn pretty(schema_type: &str, text: &str) -> String {
    let is_json =
        schema_type.eq_ignore_ascii_case("AVRO") || schema_type.eq_ignore_ascii_case("JSON");
    if !is_json || serde_json::from_str::<serde::de::IgnoredAny>(text).is_err() {
        return text.trim_end().to_string();
    }
    reindent(text)
}

/// Re-indents valid JSON text token by token, so that object keys stay in their order (serde_json's map
/// would sort them) and numbers stay as written. Empty objects and arrays stay `{}` and `[]`.
fn reindent(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                let mut escaped = false;
                for c in chars.by_ref() {
                    out.push(c);
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == '"' {
                        break;
                    }
                }
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if chars.peek() == Some(&close) {
                    chars.next();
                    out.push(c);
                    out.push(close);
                } else {
                    out.push(c);
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pretty_json_keeps_key_order_and_tokens() {
        let text = r#"{"type":"record","name":"Order","fields":[{"name":"id","type":"long","default":1.50},{"name":"s","type":"string","default":"a, \"b\": {c}"}],"x":{},"y":[ ]}"#;
        let expected = r#"{
  "type": "record",
  "name": "Order",
  "fields": [
    {
      "name": "id",
      "type": "long",
      "default": 1.50
    },
    {
      "name": "s",
      "type": "string",
      "default": "a, \"b\": {c}"
    }
  ],
  "x": {},
  "y": []
}"#;
        assert_eq!(pretty("AVRO", text), expected);
        assert_eq!(pretty("AVRO", "\"string\""), "\"string\"");
        assert_eq!(
            pretty("PROTOBUF", "syntax = \"proto3\";\n"),
            "syntax = \"proto3\";"
        );
        assert_eq!(pretty("JSON", "not json {"), "not json {");
    }

    #[test]
    fn references_split_at_the_first_equals_and_the_last_colon() {
        assert_eq!(
            parse_reference("com/acme/money.proto=money:value:3"),
            Ok(ReferenceArg {
                name: "com/acme/money.proto".to_string(),
                subject: "money:value".to_string(),
                version: Some(3),
            })
        );
        assert_eq!(parse_reference("a=b:latest").map(|r| r.version), Ok(None));
        assert!(parse_reference("a=b").is_err());
        assert!(parse_reference("=b:1").is_err());
        assert!(parse_reference("a=b:0").is_err());
    }

    #[test]
    fn the_type_follows_the_extension() {
        assert_eq!(SchemaKind::from_path(Path::new("o.avsc")), SchemaKind::Avro);
        assert_eq!(SchemaKind::from_path(Path::new("o.JSON")), SchemaKind::Json);
        assert_eq!(
            SchemaKind::from_path(Path::new("a/o.proto")),
            SchemaKind::Protobuf
        );
        assert_eq!(SchemaKind::from_path(Path::new("schema")), SchemaKind::Avro);
    }

    #[test]
    fn registry_messages_are_one_line() {
        assert_eq!(
            one_line("Invalid schema syntax = \"proto3\";\n  message M {}\n\n: not JSON"),
            "Invalid schema syntax = \"proto3\"; message M {} : not JSON"
        );
    }

    #[test]
    fn subjects_are_percent_encoded() {
        assert_eq!(encode("orders-value"), "orders-value");
        assert_eq!(encode("a/b c:é"), "a%2Fb%20c%3A%C3%A9");
    }
}
