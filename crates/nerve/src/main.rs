//! `nerve`: the Nerve binary. `nerve serve` runs the Kafka-wire broker on the local storage engine;
//! `nerve topic`, `nerve produce`, `nerve consume`, `nerve group`, `nerve schema`, `nerve status`, `nerve user` and
//! `nerve acl` are its command-line client (see `cli`).

mod cli;
mod telemetry;

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use nerve_broker::{Broker, BrokerConfig, Server};
use nerve_storage::{
    LocalConfig, LocalLogStore, LocalMetaStore, LogStore, MetaStore, TopicConfig, TopicPartition,
};
use serde::Deserialize;
use telemetry::LogFormat;

#[derive(Parser)]
#[command(
    name = "nerve",
    version,
    about = "Nerve: a Kafka-compatible event streaming platform"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker. Settings come from the config file, overridden by NERVE_* environment variables,
    /// overridden by flags.
    Serve(ServeArgs),
    /// Create, list, describe, alter and delete topics.
    Topic(cli::topic::TopicArgs),
    /// Write lines of stdin to a topic, one record per line.
    Produce(cli::produce::ProduceArgs),
    /// Print a topic's records (no consumer group: partitions are assigned directly).
    Consume(cli::consume::ConsumeArgs),
    /// List, show and replay the dead letters the SDK's consumers left in `<topic>.dlq`.
    Dlq(cli::dlq::DlqArgs),
    /// List consumer groups; describe one with its members and lag.
    Group(cli::group::GroupArgs),
    /// Register, show, list, check and delete schemas in the schema registry; show or set its
    /// compatibility levels and modes.
    Schema(cli::schema::SchemaArgs),
    /// One screen on a running Nerve: topics with size and throughput, groups with state and lag.
    Status(cli::status::StatusArgs),
    /// Create, list and delete SCRAM users (SASL/SCRAM credentials).
    User(cli::user::UserArgs),
    /// Add, list and remove ACLs: who may do what to which topics, groups, transactional ids and the
    /// cluster.
    Acl(cli::acl::AclArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// TOML config file: `data_dir` at the top, broker settings under `[kafka]` (see docs/serve.md).
    #[arg(long, env = "NERVE_CONFIG")]
    config: Option<PathBuf>,
    /// Where topics and metadata are stored [default: ./nerve-data].
    #[arg(long, env = "NERVE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address the Kafka listener binds [default: 0.0.0.0:9092].
    #[arg(long, env = "NERVE_KAFKA_LISTEN", value_name = "HOST:PORT")]
    kafka_listen: Option<String>,
    /// Address clients are told to connect to (Kafka's advertised.listeners) [default: the listen address,
    /// or 127.0.0.1 with the listen port when listening on all interfaces].
    #[arg(long, env = "NERVE_ADVERTISED_LISTENER", value_name = "HOST:PORT")]
    advertised_listener: Option<String>,
    /// Kafka listeners with their security protocols, Kafka's `listeners`, e.g.
    /// `SASL_SSL://0.0.0.0:9093,PLAINTEXT://127.0.0.1:9092` (replaces --kafka-listen; SSL and SASL_SSL need
    /// `[tls]` in the config file; see docs/security.md).
    #[arg(long, env = "NERVE_LISTENERS", value_name = "NAME://HOST:PORT,...")]
    listeners: Option<String>,
    /// What each listener tells clients to connect to, Kafka's `advertised.listeners`
    /// [default: each listener's own address].
    #[arg(
        long,
        env = "NERVE_ADVERTISED_LISTENERS",
        value_name = "NAME://HOST:PORT,..."
    )]
    advertised_listeners: Option<String>,
    /// Address the schema registry (Confluent REST API) binds [default: 0.0.0.0:8081].
    #[arg(long, env = "NERVE_REGISTRY_LISTEN", value_name = "HOST:PORT")]
    registry_listen: Option<String>,
    /// Address the HTTP server binds: /metrics, /healthz, /readyz and the JSON admin API under /v1/
    /// [default: 0.0.0.0:8080].
    #[arg(long, env = "NERVE_HTTP_LISTEN", value_name = "HOST:PORT")]
    http_listen: Option<String>,
    /// How log lines on stderr look: `text` for people, `json` (one object per line, with the fields of the
    /// current span and its parents, e.g. a request's client id) for log collectors.
    #[arg(long, env = "NERVE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Export request spans over OTLP/HTTP (protobuf) to this OpenTelemetry collector, e.g.
    /// `http://127.0.0.1:4318` (`/v1/traces` is added unless the URL has it) [default: no export].
    #[arg(long, env = "NERVE_OTLP_ENDPOINT", value_name = "URL")]
    otlp_endpoint: Option<String>,
}

/// The config file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    kafka: Option<KafkaSection>,
    registry: Option<RegistrySection>,
    http: Option<HttpSection>,
    /// `[tls]`: the certificate and key of SSL and SASL_SSL listeners, and client certificates.
    tls: Option<nerve_tls::TlsSettings>,
}

/// `[http]`: the operational HTTP server (metrics, health, admin).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct HttpSection {
    /// Address the HTTP server binds.
    listen: Option<String>,
    /// Serve HTTPS with the `[tls]` certificate.
    tls: bool,
    /// `none` or `basic` (the broker's SCRAM users, or bearer tokens from `POST /v1/tokens`).
    authentication: nerve_http::AuthMode,
}

/// `[registry]`: the schema registry's settings.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RegistrySection {
    /// Address the registry binds.
    listen: Option<String>,
    /// The largest request body accepted, in bytes.
    max_request_bytes: Option<usize>,
    /// Serve HTTPS with the `[tls]` certificate.
    tls: bool,
    /// `none` or `basic` (the broker's SCRAM users, or bearer tokens from the HTTP port's
    /// `POST /v1/tokens`).
    authentication: nerve_http::AuthMode,
}

/// `[kafka]`: the broker's settings; `advertised_listener` is optional here so that its default can
/// follow the listen address.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct KafkaSection {
    advertised_listener: Option<String>,
    #[serde(flatten)]
    rest: toml::Table,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    // The server logs what it does; a client command speaks only when something is wrong, so that its
    // stdout and stderr are what the command reports.
    let default_filter = match cli.command {
        Command::Serve(_) => "info",
        _ => "warn",
    };
    let (log_format, otlp_endpoint) = match &cli.command {
        Command::Serve(args) => (args.log_format, args.otlp_endpoint.clone()),
        _ => (LogFormat::Text, None),
    };
    let telemetry = telemetry::init(log_format, default_filter, otlp_endpoint.as_deref())?;
    let client_result = match cli.command {
        Command::Serve(args) => {
            let runtime =
                tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
            let served = runtime.block_on(serve(args));
            telemetry.shutdown();
            return served;
        }
        Command::Topic(args) => cli::topic::run(args),
        Command::Produce(args) => cli::produce::run(args),
        Command::Consume(args) => cli::consume::run(args),
        Command::Dlq(args) => cli::dlq::run(args),
        Command::Group(args) => cli::group::run(args),
        Command::Schema(args) => cli::schema::run(args),
        Command::Status(args) => cli::status::run(args),
        Command::User(args) => cli::user::run(args),
        Command::Acl(args) => cli::acl::run(args),
    };
    // One line a user can act on, not a backtrace-like chain over several lines.
    if let Err(e) = client_result {
        eprintln!("nerve: {e:#}");
        std::process::exit(1);
    }
    Ok(())
}

/// The settings after file < env < flag precedence.
struct Settings {
    data_dir: PathBuf,
    broker: BrokerConfig,
    registry_listen: SocketAddr,
    registry_max_body: usize,
    http_listen: SocketAddr,
    tls: Option<nerve_tls::TlsSettings>,
    /// How each HTTP port is served: TLS or not, and its authentication.
    registry_port: HttpPortSettings,
    http_port: HttpPortSettings,
}

/// `tls` and `authentication` of `[http]` or `[registry]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct HttpPortSettings {
    tls: bool,
    authentication: nerve_http::AuthMode,
}

fn resolve(args: &ServeArgs) -> Result<Settings> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            toml::from_str::<FileConfig>(&text)
                .with_context(|| format!("invalid config file {}", path.display()))?
        }
        None => FileConfig::default(),
    };
    let (file_advertised, mut broker) = match file.kafka {
        Some(section) => {
            let broker: BrokerConfig = toml::Value::Table(section.rest)
                .try_into()
                .context("invalid [kafka] section in the config file")?;
            (section.advertised_listener, broker)
        }
        None => (None, BrokerConfig::default()),
    };
    if let Some(listen) = &args.kafka_listen {
        broker.listen = parse_addr(listen).context("invalid --kafka-listen")?;
    }
    if let Some(listeners) = &args.listeners {
        broker.listeners = listeners.clone();
    }
    if let Some(advertised) = &args.advertised_listeners {
        broker.advertised_listeners = advertised.clone();
    }
    broker.advertised_listener = match args.advertised_listener.clone().or(file_advertised) {
        Some(advertised) => advertised,
        None if broker.listen.ip().is_unspecified() => {
            format!("127.0.0.1:{}", broker.listen.port())
        }
        None => broker.listen.to_string(),
    };
    broker.validate().context("invalid broker settings")?;
    let data_dir = args
        .data_dir
        .clone()
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("./nerve-data"));
    let registry = file.registry.unwrap_or_default();
    let registry_listen = parse_addr(
        args.registry_listen
            .as_deref()
            .or(registry.listen.as_deref())
            .unwrap_or("0.0.0.0:8081"),
    )
    .context("invalid --registry-listen")?;
    let http = file.http.unwrap_or_default();
    let http_listen = parse_addr(
        args.http_listen
            .as_deref()
            .or(http.listen.as_deref())
            .unwrap_or("0.0.0.0:8080"),
    )
    .context("invalid --http-listen")?;
    for (section, tls) in [("[registry]", registry.tls), ("[http]", http.tls)] {
        if tls && file.tls.is_none() {
            bail!(
                "{section} tls = true needs the certificate settings of [tls] in the config file"
            );
        }
    }
    Ok(Settings {
        data_dir,
        broker,
        registry_listen,
        registry_max_body: registry
            .max_request_bytes
            .unwrap_or(nerve_registry::api::DEFAULT_MAX_BODY_BYTES),
        http_listen,
        tls: file.tls,
        registry_port: HttpPortSettings {
            tls: registry.tls,
            authentication: registry.authentication,
        },
        http_port: HttpPortSettings {
            tls: http.tls,
            authentication: http.authentication,
        },
    })
}

fn parse_addr(text: &str) -> Result<SocketAddr> {
    match text.to_socket_addrs()?.next() {
        Some(addr) => Ok(addr),
        None => bail!("{text} resolves to no address"),
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let Settings {
        data_dir,
        broker: config,
        registry_listen,
        registry_max_body,
        http_listen,
        tls,
        registry_port,
        http_port,
    } = resolve(&args)?;
    let tls = match tls {
        Some(settings) => Some(Arc::new(
            nerve_tls::ServerTls::load(settings).context("invalid [tls] settings")?,
        )),
        None => None,
    };
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
    let data_dir = data_dir.canonicalize().unwrap_or(data_dir);

    let (stop, stopped) = tokio::sync::watch::channel(false);
    // First, so that /healthz and /readyz answer while the logs are recovered.
    let http_state = nerve_http::HttpState::new();
    // Bearer tokens are issued by the HTTP port and accepted by both.
    let tokens = Arc::new(nerve_http::TokenStore::new());
    let authenticator: Arc<dyn nerve_http::Authenticator> =
        Arc::new(BrokerLogin(http_state.clone()));
    let port_auth = |port: HttpPortSettings, style| match port.authentication {
        nerve_http::AuthMode::None => None,
        nerve_http::AuthMode::Basic => Some(nerve_http::HttpAuth::new(
            authenticator.clone(),
            tokens.clone(),
            style,
        )),
    };
    let http_auth = port_auth(http_port, nerve_http::auth::ErrorStyle::Http)
        // Tokens for the registry are issued here even when this port itself is open.
        .or_else(|| {
            port_auth(registry_port, nerve_http::auth::ErrorStyle::Http).map(|a| a.tokens_only())
        });
    let registry_auth = port_auth(registry_port, nerve_http::auth::ErrorStyle::Registry);
    let http = start_http(
        http_listen,
        http_state.clone(),
        http_port.tls.then(|| tls.clone()).flatten(),
        http_auth,
        stop.subscribe(),
    )
    .await?;
    let (meta, log) = {
        let (data_dir, config) = (data_dir.clone(), config.clone());
        // Recovery reads every log from disk: off the runtime's workers, which serve HTTP meanwhile.
        tokio::task::spawn_blocking(move || open_stores(&data_dir, &config))
            .await
            .context("opening the stores failed")??
    };
    let broker = Broker::new(config, log, meta, stopped)
        .await
        .context("invalid broker settings")?;
    http_state.readiness().set_broker(broker.clone());
    let server = Server::bind_with_tls(broker.clone(), tls.clone()).await?;
    http_state.readiness().set_kafka_listening();
    for ((name, bound), listener) in server.local_addrs()?.into_iter().zip(broker.listeners()) {
        let protocol = match listener.protocol {
            nerve_broker::SecurityProtocol::Plaintext => String::new(),
            other => format!(" ({other})"),
        };
        println!(
            "nerve: Kafka API{protocol} on {bound} (advertised as {}), listener {name}",
            listener.advertised_address(),
        );
    }
    println!("nerve: data in {}", data_dir.display());
    if let Some(tls) = tls.clone() {
        tokio::spawn(reload_tls_on_sighup(tls));
    }
    let registry = start_registry(
        &broker,
        RegistryPort {
            listen: registry_listen,
            max_body: registry_max_body,
            tls: registry_port.tls.then(|| tls.clone()).flatten(),
            auth: registry_auth,
        },
        &http_state,
        stop.subscribe(),
    )
    .await?;
    http_state.readiness().set_registry_ready();

    let running = tokio::spawn(server.run());
    wait_for_signal().await?;
    tracing::info!("shutdown requested");
    let _ = stop.send(true);
    running.await.context("the server task failed")??;
    registry
        .await
        .context("the schema registry task failed")??;
    http.await.context("the HTTP server task failed")??;
    println!("nerve: stopped");
    Ok(())
}

/// Serves `/metrics`, `/healthz`, `/readyz` and `/v1/` on `listen` until `stopped` turns true; over TLS
/// with `tls`, behind `auth` when given.
async fn start_http(
    listen: SocketAddr,
    state: nerve_http::HttpState,
    tls: Option<Arc<nerve_tls::ServerTls>>,
    auth: Option<nerve_http::HttpAuth>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<Result<()>>> {
    let listener = http_listener(nerve_http::bind(listen).await?, tls)?;
    println!(
        "nerve: HTTP (metrics, health, admin) on {}",
        url_of(&listener)?
    );
    let app = nerve_http::secured_router(state, auth);
    Ok(tokio::spawn(async move {
        nerve_http::serve_router(listener, app, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .await
        .map_err(anyhow::Error::from)
    }))
}

fn http_listener(
    listener: tokio::net::TcpListener,
    tls: Option<Arc<nerve_tls::ServerTls>>,
) -> Result<nerve_http::HttpListener> {
    Ok(match tls {
        Some(tls) => nerve_http::HttpListener::tls(listener, tls)?,
        None => nerve_http::HttpListener::plain(listener)?,
    })
}

fn url_of(listener: &nerve_http::HttpListener) -> Result<String> {
    use axum::serve::Listener as _;
    let scheme = if listener.is_tls() { "https" } else { "http" };
    Ok(format!("{scheme}://{}", listener.local_addr()?))
}

/// Where and how the schema registry is served.
struct RegistryPort {
    listen: SocketAddr,
    max_body: usize,
    tls: Option<Arc<nerve_tls::ServerTls>>,
    auth: Option<nerve_http::HttpAuth>,
}

/// Opens the schema registry on `_schemas` (created on first start) and serves its REST API until
/// `stopped` turns true.
async fn start_registry(
    broker: &Arc<Broker>,
    port: RegistryPort,
    http: &nerve_http::HttpState,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<Result<()>>> {
    broker
        .ensure_compacted_topic(nerve_registry::SCHEMAS_TOPIC, 1)
        .await
        .context("cannot create the schema registry's topic")?;
    let tp = TopicPartition::new(nerve_registry::SCHEMAS_TOPIC, 0);
    let registry = nerve_registry::Registry::open(broker.log(), tp)
        .await
        .context("cannot load the schema registry from _schemas")?;
    let listen = port.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot bind the schema registry to {listen}"))?;
    let listener = http_listener(listener, port.tls)?;
    println!("nerve: schema registry on {}", url_of(&listener)?);
    broker.set_record_validator(Arc::new(RegistryValidator(registry.clone())));
    // With the authorizer on, the registry's subjects are under the broker's ACLs.
    let access = broker
        .authorizer()
        .is_some()
        .then(|| Arc::new(BrokerAccess(broker.clone())) as Arc<dyn nerve_registry::api::Access>);
    let app = nerve_http::with_registry_metrics(
        nerve_registry::api::router_with_access(registry, port.max_body, access),
        http,
    );
    let app = match port.auth {
        Some(auth) => nerve_http::auth::require_authentication(app, auth),
        None => nerve_http::auth::with_peer(app),
    };
    Ok(tokio::spawn(async move {
        nerve_http::serve_router(listener, app, async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        })
        .await
        .context("the schema registry stopped")
    }))
}

/// The registry's authorization: the broker's ACLs.
struct BrokerAccess(Arc<Broker>);

impl nerve_registry::api::Access for BrokerAccess {
    fn allows(
        &self,
        principal: &nerve_auth::Principal,
        host: &str,
        operation: nerve_auth::Operation,
        resource_type: nerve_auth::ResourceType,
        name: &str,
    ) -> bool {
        self.0.authorizer().is_none_or(|authorizer| {
            authorizer.authorize(principal, host, operation, resource_type, name)
        })
    }
}

/// The HTTP ports' logins: the broker's SCRAM users, once the broker is built.
struct BrokerLogin(nerve_http::HttpState);

impl nerve_http::Authenticator for BrokerLogin {
    fn login(
        &self,
        user: &str,
        password: &str,
    ) -> std::result::Result<nerve_auth::Principal, nerve_http::auth::LoginError> {
        use nerve_broker::sasl::PasswordError;
        use nerve_http::auth::LoginError;
        let Some(broker) = self.0.readiness().broker() else {
            return Err(LoginError::Starting);
        };
        match broker.check_password(user, password.as_bytes()) {
            Ok(()) => Ok(nerve_auth::Principal::user(user)),
            Err(PasswordError::UnknownUser) => Err(LoginError::UnknownUser),
            Err(PasswordError::WrongPassword) => Err(LoginError::WrongPassword),
        }
    }
}

/// Broker-side schema validation by the registry, with Confluent's TopicNameStrategy: a topic's keys are
/// checked against the subject `<topic>-key`, its values against `<topic>-value`.
struct RegistryValidator(Arc<nerve_registry::Registry>);

impl nerve_broker::RecordValidator for RegistryValidator {
    fn validate(
        &self,
        topic: &str,
        part: nerve_broker::RecordPart,
        bytes: &[u8],
    ) -> std::result::Result<(), String> {
        self.0
            .validate_record(&format!("{topic}-{}", part.name()), bytes)
    }
}

fn open_stores(
    data_dir: &Path,
    config: &BrokerConfig,
) -> Result<(Arc<dyn MetaStore>, Arc<dyn LogStore>)> {
    let meta = LocalMetaStore::open(data_dir)
        .with_context(|| format!("cannot open metadata in {}", data_dir.display()))?;
    let mut topics: HashMap<String, Arc<TopicConfig>> = HashMap::new();
    for topic in meta.topics() {
        let topic_config = config
            .topic_config(&topic.configs)
            .with_context(|| format!("topic {} has an invalid config", topic.name))?;
        topics.insert(topic.name, Arc::new(topic_config));
    }
    let log = LocalLogStore::open(data_dir, LocalConfig::default(), &topics)
        .with_context(|| format!("cannot open the logs in {}", data_dir.display()))?;
    for (tp, reason) in log.failed_partitions() {
        tracing::error!(partition = %tp, reason, "partition is offline");
    }
    Ok((Arc::new(meta), Arc::new(log)))
}

/// Reloads the TLS certificate and key on SIGHUP, so renewed certificates take effect without a restart;
/// connections already open keep the one they started with.
async fn reload_tls_on_sighup(tls: Arc<nerve_tls::ServerTls>) {
    #[cfg(unix)]
    {
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        {
            Ok(signal) => signal,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: TLS certificates will not reload");
                return;
            }
        };
        while hangup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate and key reloaded"),
                Err(e) => {
                    tracing::error!(error = %e, "TLS reload failed; the previous certificate stays in use")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = tls;
}

async fn wait_for_signal() -> Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot listen for SIGTERM")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot listen for SIGINT")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(["nerve", "serve"].iter().chain(args)).expect("valid flags");
        match cli.command {
            Command::Serve(args) => args,
            _ => unreachable!("parsed as serve"),
        }
    }

    fn config_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn flags_override_the_config_file() {
        let file = config_file(
            r#"
            data_dir = "/from/file"
            [kafka]
            listen = "127.0.0.1:7000"
            advertised_listener = "kafka.example:7000"
            num_partitions = 3
            auto_create_topics_enable = false
            "#,
        );
        let path = file.path().to_str().unwrap();
        let from_file = resolve(&serve_args(&["--config", path])).unwrap();
        assert_eq!(from_file.data_dir, PathBuf::from("/from/file"));
        assert_eq!(from_file.broker.listen.port(), 7000);
        assert_eq!(from_file.broker.advertised_listener, "kafka.example:7000");
        assert_eq!(from_file.broker.num_partitions, 3);
        assert!(!from_file.broker.auto_create_topics_enable);

        let flagged = resolve(&serve_args(&[
            "--config",
            path,
            "--data-dir",
            "/from/flag",
            "--kafka-listen",
            "127.0.0.1:7001",
            "--advertised-listener",
            "flag.example:7001",
        ]))
        .unwrap();
        assert_eq!(flagged.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(flagged.broker.listen.port(), 7001);
        assert_eq!(flagged.broker.advertised_listener, "flag.example:7001");
        assert_eq!(flagged.broker.num_partitions, 3);
    }

    #[test]
    fn without_settings_it_listens_on_9092_advertised_on_loopback() {
        let settings = resolve(&serve_args(&["--kafka-listen", "0.0.0.0:9092"])).unwrap();
        assert_eq!(settings.broker.listen, "0.0.0.0:9092".parse().unwrap());
        assert_eq!(settings.broker.advertised_listener, "127.0.0.1:9092");
        let specific = resolve(&serve_args(&["--kafka-listen", "127.0.0.2:9999"])).unwrap();
        assert_eq!(specific.broker.advertised_listener, "127.0.0.2:9999");
    }

    #[test]
    fn http_listen_comes_from_the_flag_the_file_or_defaults_to_8080() {
        let default = resolve(&serve_args(&[])).unwrap();
        assert_eq!(default.http_listen, "0.0.0.0:8080".parse().unwrap());
        let file = config_file("[http]\nlisten = \"127.0.0.1:7080\"\n");
        let path = file.path().to_str().unwrap();
        let from_file = resolve(&serve_args(&["--config", path])).unwrap();
        assert_eq!(from_file.http_listen, "127.0.0.1:7080".parse().unwrap());
        let flagged = resolve(&serve_args(&[
            "--config",
            path,
            "--http-listen",
            "127.0.0.1:7081",
        ]))
        .unwrap();
        assert_eq!(flagged.http_listen, "127.0.0.1:7081".parse().unwrap());
        let file = config_file("[http]\nlisten = \"127.0.0.1:7080\"\nport = 1\n");
        assert!(resolve(&serve_args(&["--config", file.path().to_str().unwrap()])).is_err());
    }

    #[test]
    fn http_ports_take_tls_and_authentication_from_their_sections() {
        let default = resolve(&serve_args(&[])).unwrap();
        assert_eq!(default.http_port, HttpPortSettings::default());
        assert_eq!(
            default.registry_port.authentication,
            nerve_http::AuthMode::None
        );
        let file = config_file(
            "[tls]\ncert_file = \"s.pem\"\nkey_file = \"s.key\"\n\
             [http]\ntls = true\nauthentication = \"basic\"\n\
             [registry]\nauthentication = \"basic\"\n",
        );
        let settings = resolve(&serve_args(&["--config", file.path().to_str().unwrap()])).unwrap();
        assert!(settings.http_port.tls && !settings.registry_port.tls);
        assert_eq!(
            settings.http_port.authentication,
            nerve_http::AuthMode::Basic
        );
        assert_eq!(
            settings.registry_port.authentication,
            nerve_http::AuthMode::Basic
        );
        let file = config_file("[registry]\ntls = true\n");
        let error = resolve(&serve_args(&["--config", file.path().to_str().unwrap()]))
            .err()
            .expect("tls without [tls] is refused");
        assert!(format!("{error:#}").contains("[tls]"), "{error:#}");
        let file = config_file("[http]\nauthentication = \"digest\"\n");
        assert!(resolve(&serve_args(&["--config", file.path().to_str().unwrap()])).is_err());
    }

    #[test]
    fn log_format_is_text_unless_json_is_asked_for() {
        assert_eq!(serve_args(&[]).log_format, LogFormat::Text);
        assert_eq!(
            serve_args(&["--log-format", "json"]).log_format,
            LogFormat::Json
        );
        assert!(Cli::try_parse_from(["nerve", "serve", "--log-format", "xml"]).is_err());
    }

    #[test]
    fn config_file_with_an_unknown_setting_is_refused() {
        let file = config_file("[kafka]\nnum_partition = 3\n");
        let args = serve_args(&["--config", file.path().to_str().unwrap()]);
        assert!(resolve(&args).is_err());
        let file = config_file("datadir = \"x\"\n");
        let args = serve_args(&["--config", file.path().to_str().unwrap()]);
        assert!(resolve(&args).is_err());
    }

    #[test]
    fn help_documents_every_serve_flag() {
        let help = {
            use clap::CommandFactory;
            let mut command = Cli::command();
            command
                .find_subcommand_mut("serve")
                .expect("serve exists")
                .render_long_help()
                .to_string()
        };
        for flag in [
            "--data-dir",
            "--kafka-listen",
            "--advertised-listener",
            "--config",
            "--http-listen",
            "NERVE_HTTP_LISTEN",
            "--log-format",
            "NERVE_DATA_DIR",
            "NERVE_KAFKA_LISTEN",
            "NERVE_LOG_FORMAT",
        ] {
            assert!(help.contains(flag), "{flag} missing from --help");
        }
    }
}
