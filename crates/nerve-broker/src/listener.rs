//! Listeners as Kafka names them: each binds an address and speaks one security protocol
//! (`listeners = "SASL_SSL://0.0.0.0:9093,PLAINTEXT://127.0.0.1:9092"`), and tells clients an address of
//! its own to reconnect to (`advertised.listeners`, by listener name).

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How a listener's connections are secured: Kafka's `security.protocol` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecurityProtocol {
    #[serde(rename = "PLAINTEXT")]
    Plaintext,
    #[serde(rename = "SSL")]
    Ssl,
    #[serde(rename = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[serde(rename = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// Connections start with a TLS handshake.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Clients must authenticate with SASL before any request but ApiVersions and the SASL ones.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SecurityProtocol {
    type Err = ListenerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SecurityProtocol::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| ListenerError::Protocol(s.to_string()))
    }
}

/// Why a listener setting cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListenerError {
    #[error("{0:?} is not NAME://HOST:PORT")]
    Syntax(String),
    #[error("{0:?} is not a security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)")]
    Protocol(String),
    #[error(
        "listener name {0:?} is neither a security protocol nor in listener_security_protocol_map"
    )]
    UnmappedName(String),
    #[error("listener {0} appears twice")]
    Duplicate(String),
    #[error("{0:?} does not resolve to an address to bind")]
    Address(String),
    #[error("advertised listener {0} names no listener")]
    UnknownAdvertised(String),
    #[error("no listener is configured")]
    Empty,
}

/// One `NAME://HOST:PORT` entry of `listeners` or `advertised.listeners`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub name: String,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// Parses a comma-separated list (Kafka's format); an empty string is an empty list.
    pub fn parse_list(text: &str) -> Result<Vec<Endpoint>, ListenerError> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Endpoint::parse)
            .collect()
    }

    fn parse(text: &str) -> Result<Endpoint, ListenerError> {
        let bad = || ListenerError::Syntax(text.to_string());
        let (name, address) = text.split_once("://").ok_or_else(bad)?;
        let (host, port) = address.rsplit_once(':').ok_or_else(bad)?;
        let port = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if name.is_empty() {
            return Err(bad());
        }
        Ok(Endpoint {
            name: name.to_ascii_uppercase(),
            host: host.to_string(),
            port,
        })
    }
}

/// A listener ready to bind: where, with which protocol, and what Metadata tells its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    pub name: String,
    pub protocol: SecurityProtocol,
    pub listen: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: u16,
}

impl Listener {
    /// `NAME://host:port` as advertised.
    pub fn advertised(&self) -> String {
        format!("{}://{}", self.name, self.advertised_address())
    }

    /// `host:port` as advertised.
    pub fn advertised_address(&self) -> String {
        if self.advertised_host.contains(':') {
            format!("[{}]:{}", self.advertised_host, self.advertised_port)
        } else {
            format!("{}:{}", self.advertised_host, self.advertised_port)
        }
    }
}

/// Resolves `listeners`, `advertised.listeners` and `listener.security.protocol.map` into listeners. A
/// listener not advertised by name advertises its own address (127.0.0.1 for a wildcard address).
pub fn resolve(
    listeners: &str,
    advertised: &str,
    protocol_map: &BTreeMap<String, SecurityProtocol>,
) -> Result<Vec<Listener>, ListenerError> {
    let endpoints = Endpoint::parse_list(listeners)?;
    if endpoints.is_empty() {
        return Err(ListenerError::Empty);
    }
    let advertised = Endpoint::parse_list(advertised)?;
    for a in &advertised {
        if !endpoints.iter().any(|e| e.name == a.name) {
            return Err(ListenerError::UnknownAdvertised(a.name.clone()));
        }
    }
    let mut out: Vec<Listener> = Vec::with_capacity(endpoints.len());
    for endpoint in endpoints {
        if out.iter().any(|l| l.name == endpoint.name) {
            return Err(ListenerError::Duplicate(endpoint.name));
        }
        let protocol = match protocol_map
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&endpoint.name))
        {
            Some((_, protocol)) => *protocol,
            None => endpoint
                .name
                .parse()
                .map_err(|_| ListenerError::UnmappedName(endpoint.name.clone()))?,
        };
        let host_port = if endpoint.host.contains(':') {
            format!("[{}]:{}", endpoint.host, endpoint.port)
        } else {
            let host = if endpoint.host.is_empty() {
                "0.0.0.0"
            } else {
                &endpoint.host
            };
            format!("{host}:{}", endpoint.port)
        };
        let listen = host_port
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| ListenerError::Address(host_port.clone()))?;
        let (advertised_host, advertised_port) =
            match advertised.iter().find(|a| a.name == endpoint.name) {
                Some(a) => (a.host.clone(), a.port),
                None if listen.ip().is_unspecified() => ("127.0.0.1".to_string(), listen.port()),
                None => (listen.ip().to_string(), listen.port()),
            };
        out.push(Listener {
            name: endpoint.name,
            protocol,
            listen,
            advertised_host,
            advertised_port,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_style_listener_lists_resolve_with_their_protocols_and_advertised_addresses() {
        let listeners = resolve(
            "SASL_SSL://0.0.0.0:9093,PLAINTEXT://127.0.0.1:9092, INTERNAL://[::1]:9094",
            "SASL_SSL://kafka.example:443",
            &BTreeMap::from([("INTERNAL".to_string(), SecurityProtocol::Ssl)]),
        )
        .unwrap();
        let summary: Vec<_> = listeners
            .iter()
            .map(|l| {
                (
                    l.name.as_str(),
                    l.protocol,
                    l.listen.to_string(),
                    l.advertised(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "SASL_SSL",
                    SecurityProtocol::SaslSsl,
                    "0.0.0.0:9093".into(),
                    "SASL_SSL://kafka.example:443".into()
                ),
                (
                    "PLAINTEXT",
                    SecurityProtocol::Plaintext,
                    "127.0.0.1:9092".into(),
                    "PLAINTEXT://127.0.0.1:9092".into()
                ),
                (
                    "INTERNAL",
                    SecurityProtocol::Ssl,
                    "[::1]:9094".into(),
                    "INTERNAL://[::1]:9094".into()
                ),
            ]
        );
        assert!(listeners.iter().all(|l| l.protocol.uses_tls()
            || !l.protocol.uses_sasl()
            || l.protocol == SecurityProtocol::SaslPlaintext));
    }

    #[test]
    fn bad_listener_settings_are_refused_with_a_reason() {
        let none = BTreeMap::new();
        for (listeners, advertised, expected) in [
            ("", "", ListenerError::Empty),
            (
                "PLAINTEXT:9092",
                "",
                ListenerError::Syntax("PLAINTEXT:9092".into()),
            ),
            (
                "PLAINTEXT://host:port",
                "",
                ListenerError::Syntax("PLAINTEXT://host:port".into()),
            ),
            (
                "EXTERNAL://:9092",
                "",
                ListenerError::UnmappedName("EXTERNAL".into()),
            ),
            (
                "SSL://:1,SSL://:2",
                "",
                ListenerError::Duplicate("SSL".into()),
            ),
            (
                "SSL://:1",
                "PLAINTEXT://a:1",
                ListenerError::UnknownAdvertised("PLAINTEXT".into()),
            ),
        ] {
            assert_eq!(
                resolve(listeners, advertised, &none).unwrap_err(),
                expected,
                "{listeners}"
            );
        }
        assert!("TLS".parse::<SecurityProtocol>().is_err());
        assert_eq!(
            "sasl_ssl".parse::<SecurityProtocol>().unwrap(),
            SecurityProtocol::SaslSsl
        );
    }
}
