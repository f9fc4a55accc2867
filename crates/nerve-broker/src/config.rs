//! The broker's settings: one typed struct, its defaults in [`BrokerConfig::default`].

use std::collections::BTreeMap;
use std::net::SocketAddr;

use nerve_storage::TopicConfig;

use crate::listener::{self, Listener, ListenerError, SecurityProtocol};
use serde::{Deserialize, Serialize};

/// Settings of the Kafka-wire server. Field docs name the Kafka setting each one mirrors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// `node.id`: this broker's id; a single node is also the controller.
    pub node_id: i32,
    /// `listeners`: the address the Kafka listener binds.
    pub listen: SocketAddr,
    /// `advertised.listeners`: the `host:port` clients are told to connect to in Metadata responses.
    /// Clients reconnect to this address after bootstrap, so it must be reachable by them.
    pub advertised_listener: String,
    /// `auto.create.topics.enable`: Metadata requests that allow it create unknown topics.
    pub auto_create_topics_enable: bool,
    /// `num.partitions`: partitions of auto-created topics and of CreateTopics with `num_partitions = -1`.
    pub num_partitions: i32,
    /// `socket.request.max.bytes`: the largest request frame accepted; a larger one closes the connection.
    pub socket_request_max_bytes: usize,
    /// Topic config defaults for this broker (Kafka names, e.g. `retention.ms`), applied under each topic's
    /// own overrides.
    pub topic_defaults: BTreeMap<String, String>,
    /// `transaction.max.timeout.ms`: the largest `transaction.timeout.ms` InitProducerId accepts.
    pub transaction_max_timeout_ms: i32,
    /// Requests of one connection decoded and in progress at once; answers still go out in request order.
    pub max_in_flight_per_connection: usize,
    /// `cluster.id`: the id Metadata and DescribeCluster report. Unset, the id stored with the metadata is
    /// used, and a new one is generated and stored at the first start. Set, it must match the stored one (as
    /// Kafka refuses a `cluster.id` that differs from its `meta.properties`): a broker pointed at another
    /// cluster's data is a mistake to stop at, not to serve.
    pub cluster_id: Option<String>,
    /// `group.min.session.timeout.ms`: the shortest session timeout a group member may ask for.
    pub group_min_session_timeout_ms: u32,
    /// `group.max.session.timeout.ms`: the longest session timeout a group member may ask for.
    pub group_max_session_timeout_ms: u32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits for more
    /// members, so that consumers starting together share one generation.
    pub group_initial_rebalance_delay_ms: u32,
    /// `offsets.topic.num.partitions`: partitions of `__consumer_offsets` when it is created (an existing
    /// topic keeps its count). Kafka's default is 50, for spreading coordinators over brokers; one node
    /// coordinates every group, so one partition (one log, one fsync for all commits) serves better.
    pub offsets_topic_num_partitions: i32,
    /// `offset.metadata.max.bytes`: the longest metadata string an offset commit may carry.
    pub offset_metadata_max_bytes: usize,
    /// `offsets.retention.minutes`: committed offsets of a group without members are deleted this long
    /// after it became empty (or, for simple commits, after each commit).
    pub offsets_retention_minutes: u32,
    /// `offsets.retention.check.interval.ms`: how often expired offsets are looked for.
    pub offsets_retention_check_interval_ms: u64,
    /// `listeners`: `NAME://HOST:PORT` entries, comma-separated, each listener speaking the security protocol
    /// its name says (`PLAINTEXT`, `SSL`, `SASL_PLAINTEXT`, `SASL_SSL`) or that
    /// `listener_security_protocol_map` gives it. Empty: one PLAINTEXT listener on `listen`, advertised as
    /// `advertised_listener`.
    pub listeners: String,
    /// `advertised.listeners`: `NAME://HOST:PORT` per listener name; a listener not named here advertises its
    /// own address (127.0.0.1 for a wildcard one).
    pub advertised_listeners: String,
    /// `listener.security.protocol.map`: protocols of listeners with names of their own (`INTERNAL`).
    pub listener_security_protocol_map: BTreeMap<String, SecurityProtocol>,
    /// `sasl.enabled.mechanisms`: what SASL listeners offer. PLAIN is off by default: it sends the password
    /// itself, which only TLS protects.
    pub sasl_enabled_mechanisms: Vec<String>,
    /// `connections.max.reauth.ms`: a SASL session lasts this long; the client must re-authenticate
    /// (KIP-368) before it ends or its connection is closed. 0: sessions last as long as the connection.
    pub connections_max_reauth_ms: u64,
    /// `connection.failed.authentication.delay.ms`: how long a failed authentication's answer is held back,
    /// which slows password guessing.
    pub connection_failed_authentication_delay_ms: u64,
    /// How long a new connection has to finish its TLS handshake and, on a SASL listener, its
    /// authentication before it is closed (a client that connects and sends nothing holds no slot for
    /// long).
    pub authentication_timeout_ms: u64,
    /// `connections.max.idle.ms`: a connection with no request for this long is closed.
    pub connections_max_idle_ms: u64,
    /// `max.connections`: connections open at once over all listeners; one more is closed at once.
    pub max_connections: usize,
    /// `max.connections.per.ip`: connections open at once from one address.
    pub max_connections_per_ip: usize,
    /// `authorizer.class.name` set: every request is checked against the ACLs (CreateAcls, DescribeAcls,
    /// DeleteAcls manage them). Off, every client may do everything and the ACL APIs answer
    /// SECURITY_DISABLED.
    pub authorizer_enabled: bool,
    /// `super.users`: principals (`User:admin`) allowed everything, whatever the ACLs say.
    pub super_users: Vec<String>,
    /// `allow.everyone.if.no.acl.found`: a resource no ACL names is open to everyone. Off by default: with
    /// an authorizer, what is not allowed is denied.
    pub allow_everyone_if_no_acl_found: bool,
    /// The JSON Web Key Set (a file, as `sasl.oauthbearer.jwks.endpoint.url` with `file://`) whose keys sign
    /// OAUTHBEARER tokens; needed when OAUTHBEARER is enabled. Read at start.
    pub sasl_oauthbearer_jwks_file: Option<std::path::PathBuf>,
    /// `sasl.oauthbearer.expected.issuer`: a token's `iss` must be this, when set.
    pub sasl_oauthbearer_expected_issuer: Option<String>,
    /// `sasl.oauthbearer.expected.audience`: a token's `aud` must contain this, when set.
    pub sasl_oauthbearer_expected_audience: Option<String>,
    /// `sasl.oauthbearer.sub.claim.name`: the claim naming the principal.
    pub sasl_oauthbearer_sub_claim_name: String,
    /// `sasl.oauthbearer.clock.skew.seconds`: clock difference tolerated for `exp`, `nbf` and `iat`.
    pub sasl_oauthbearer_clock_skew_seconds: i64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            node_id: 0,
            listen: SocketAddr::from(([0, 0, 0, 0], 9092)),
            advertised_listener: "127.0.0.1:9092".to_string(),
            auto_create_topics_enable: true,
            num_partitions: 1,
            socket_request_max_bytes: nerve_wire::frame::DEFAULT_MAX_FRAME_BYTES,
            topic_defaults: BTreeMap::new(),
            transaction_max_timeout_ms: 900_000,
            max_in_flight_per_connection: 16,
            cluster_id: None,
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 3_000,
            offsets_topic_num_partitions: 1,
            offset_metadata_max_bytes: 4096,
            offsets_retention_minutes: 10_080,
            offsets_retention_check_interval_ms: 600_000,
            listeners: String::new(),
            advertised_listeners: String::new(),
            listener_security_protocol_map: BTreeMap::new(),
            sasl_enabled_mechanisms: vec!["SCRAM-SHA-256".into(), "SCRAM-SHA-512".into()],
            connections_max_reauth_ms: 0,
            connection_failed_authentication_delay_ms: 100,
            authentication_timeout_ms: 10_000,
            connections_max_idle_ms: 600_000,
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            authorizer_enabled: false,
            super_users: Vec::new(),
            allow_everyone_if_no_acl_found: false,
            sasl_oauthbearer_jwks_file: None,
            sasl_oauthbearer_expected_issuer: None,
            sasl_oauthbearer_expected_audience: None,
            sasl_oauthbearer_sub_claim_name: "sub".to_string(),
            sasl_oauthbearer_clock_skew_seconds: 30,
        }
    }
}

/// Why a [`BrokerConfig`] cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("advertised listener {0:?} is not HOST:PORT")]
    AdvertisedListener(String),
    #[error("num_partitions must be at least 1, not {0}")]
    NumPartitions(i32),
    #[error("max_in_flight_per_connection must be at least 1")]
    MaxInFlight,
    #[error("group_min_session_timeout_ms ({min}) exceeds group_max_session_timeout_ms ({max})")]
    SessionTimeouts { min: u32, max: u32 },
    #[error("offsets_retention_check_interval_ms must be at least 1")]
    RetentionCheckInterval,
    #[error("offsets_topic_num_partitions must be at least 1, not {0}")]
    OffsetsTopicPartitions(i32),
    #[error("cannot create or read __consumer_offsets: {0}")]
    OffsetsTopic(nerve_storage::StorageError),
    #[error("invalid topic default: {0}")]
    TopicDefault(#[from] nerve_storage::StorageError),
    #[error("cluster_id {configured:?} differs from {stored:?}, the id stored with this data")]
    ClusterIdMismatch { configured: String, stored: String },
    #[error("cannot read or store the cluster id: {0}")]
    ClusterIdStore(nerve_storage::StorageError),
    #[error(transparent)]
    Listener(#[from] ListenerError),
    #[error("SASL mechanism {0:?} is not one Nerve offers (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN)")]
    SaslMechanism(String),
    #[error("super user {0:?} is not a principal like User:admin")]
    SuperUser(String),
    #[error("OAUTHBEARER: {0}")]
    OAuthBearer(String),
}

impl BrokerConfig {
    /// Checks the settings that could otherwise fail later, at a worse moment.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.advertised_host_port()?;
        if self.num_partitions < 1 {
            return Err(ConfigError::NumPartitions(self.num_partitions));
        }
        if self.max_in_flight_per_connection == 0 {
            return Err(ConfigError::MaxInFlight);
        }
        if self.group_min_session_timeout_ms > self.group_max_session_timeout_ms {
            return Err(ConfigError::SessionTimeouts {
                min: self.group_min_session_timeout_ms,
                max: self.group_max_session_timeout_ms,
            });
        }
        if self.offsets_retention_check_interval_ms == 0 {
            return Err(ConfigError::RetentionCheckInterval);
        }
        if self.offsets_topic_num_partitions < 1 {
            return Err(ConfigError::OffsetsTopicPartitions(
                self.offsets_topic_num_partitions,
            ));
        }
        TopicConfig::validate(&self.topic_defaults)?;
        self.resolved_listeners()?;
        self.super_user_principals()?;
        self.oauthbearer_validator()?;
        for mechanism in &self.sasl_enabled_mechanisms {
            if !crate::sasl::MECHANISMS.contains(&mechanism.as_str()) {
                return Err(ConfigError::SaslMechanism(mechanism.clone()));
            }
        }
        Ok(())
    }

    /// The OAUTHBEARER token validator, when OAUTHBEARER is enabled (it then needs a key set).
    pub fn oauthbearer_validator(
        &self,
    ) -> Result<Option<nerve_auth::oauthbearer::JwtValidator>, ConfigError> {
        if !self
            .sasl_enabled_mechanisms
            .iter()
            .any(|m| m == "OAUTHBEARER")
        {
            return Ok(None);
        }
        let path = self.sasl_oauthbearer_jwks_file.as_ref().ok_or_else(|| {
            ConfigError::OAuthBearer("enabled without sasl_oauthbearer_jwks_file".into())
        })?;
        let json = std::fs::read(path).map_err(|e| {
            ConfigError::OAuthBearer(format!("cannot read {}: {e}", path.display()))
        })?;
        let expect = nerve_auth::oauthbearer::Expectations {
            issuer: self.sasl_oauthbearer_expected_issuer.clone(),
            audience: self.sasl_oauthbearer_expected_audience.clone(),
            principal_claim: Some(self.sasl_oauthbearer_sub_claim_name.clone()),
            clock_skew_seconds: self.sasl_oauthbearer_clock_skew_seconds,
        };
        nerve_auth::oauthbearer::JwtValidator::from_jwks(&json, expect)
            .map(Some)
            .map_err(|e| ConfigError::OAuthBearer(format!("{}: {e}", path.display())))
    }

    /// `super_users` parsed.
    pub fn super_user_principals(&self) -> Result<Vec<nerve_auth::Principal>, ConfigError> {
        self.super_users
            .iter()
            .map(|p| p.parse().map_err(|_| ConfigError::SuperUser(p.clone())))
            .collect()
    }

    /// The listeners to bind, from `listeners` or else `listen` and `advertised_listener`.
    pub fn resolved_listeners(&self) -> Result<Vec<Listener>, ConfigError> {
        if self.listeners.trim().is_empty() {
            let (advertised_host, advertised_port) = self.advertised_host_port()?;
            return Ok(vec![Listener {
                name: SecurityProtocol::Plaintext.name().to_string(),
                protocol: SecurityProtocol::Plaintext,
                listen: self.listen,
                advertised_host,
                advertised_port,
            }]);
        }
        Ok(listener::resolve(
            &self.listeners,
            &self.advertised_listeners,
            &self.listener_security_protocol_map,
        )?)
    }

    /// The advertised listener split into host and port.
    pub fn advertised_host_port(&self) -> Result<(String, u16), ConfigError> {
        let bad = || ConfigError::AdvertisedListener(self.advertised_listener.clone());
        let (host, port) = self.advertised_listener.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(bad());
        }
        Ok((host.to_string(), port))
    }

    /// The overrides a topic's partitions run with: the broker's topic defaults, then the topic's own.
    pub fn effective_topic_overrides(
        &self,
        topic_overrides: &BTreeMap<String, String>,
    ) -> BTreeMap<String, String> {
        let mut merged = self.topic_defaults.clone();
        merged.extend(topic_overrides.iter().map(|(k, v)| (k.clone(), v.clone())));
        merged
    }

    /// The resolved configuration of a topic with these overrides.
    pub fn topic_config(
        &self,
        topic_overrides: &BTreeMap<String, String>,
    ) -> nerve_storage::Result<TopicConfig> {
        TopicConfig::from_overrides(&self.effective_topic_overrides(topic_overrides))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_those_kafka_users_expect() {
        let config = BrokerConfig::default();
        assert_eq!(config.node_id, 0);
        assert_eq!(config.listen.port(), 9092);
        assert!(config.auto_create_topics_enable);
        assert_eq!(config.num_partitions, 1);
        assert_eq!(config.socket_request_max_bytes, 100 * 1024 * 1024);
        assert_eq!(config.transaction_max_timeout_ms, 900_000);
        config.validate().unwrap();
    }

    #[test]
    fn advertised_listener_must_be_host_and_port() {
        let mut config = BrokerConfig {
            advertised_listener: "[::1]:19092".into(),
            ..BrokerConfig::default()
        };
        assert_eq!(
            config.advertised_host_port().unwrap(),
            ("::1".into(), 19092)
        );
        config.advertised_listener = "localhost".into();
        assert!(config.validate().is_err());
        config.advertised_listener = "localhost:http".into();
        assert!(config.validate().is_err());
    }

    #[test]
    fn topic_overrides_win_over_broker_defaults() {
        let config = BrokerConfig {
            topic_defaults: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            ..BrokerConfig::default()
        };
        let resolved = config
            .topic_config(&BTreeMap::from([("retention.ms".into(), "2000".into())]))
            .unwrap();
        assert_eq!(resolved.retention_ms, Some(2000));
        assert_eq!(
            config.topic_config(&BTreeMap::new()).unwrap().retention_ms,
            Some(1000)
        );
    }
}
