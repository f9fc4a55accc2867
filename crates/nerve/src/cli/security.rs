//! How the client commands reach a secured listener: the client properties of `--command-config FILE` (or
//! `NERVE_COMMAND_CONFIG`) and of `-X key=value`, with librdkafka's names, as Kafka's tools and kcat take
//! them.
//!
//! The rdkafka-based commands hand every property to librdkafka unchanged (so any librdkafka setting works);
//! `nerve user` and `nerve acl` use [`Security`], the part of them that Nerve's own admin client
//! (`kafka_client`) understands. Later settings win: the file first, then each `-X` in order.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Protocol {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    pub(crate) fn uses_tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    pub(crate) fn uses_sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }

    /// Case-insensitive, as librdkafka reads it.
    fn parse(text: &str) -> Result<Protocol> {
        Ok(match text.to_ascii_lowercase().as_str() {
            "plaintext" => Protocol::Plaintext,
            "ssl" => Protocol::Ssl,
            "sasl_plaintext" => Protocol::SaslPlaintext,
            "sasl_ssl" => Protocol::SaslSsl,
            _ => bail!(
                "security.protocol={text}: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
            ),
        })
    }
}

/// The SASL mechanisms the admin client speaks (`sasl.mechanism`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mechanism {
    Plain,
    Scram(nerve_auth::ScramMechanism),
}

impl Mechanism {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Scram(m) => m.name(),
        }
    }

    /// Exact names, as SASL has them (librdkafka is case-sensitive here too).
    fn parse(text: &str) -> Result<Mechanism> {
        if text == "PLAIN" {
            return Ok(Mechanism::Plain);
        }
        nerve_auth::ScramMechanism::from_name(text)
            .map(Mechanism::Scram)
            .ok_or_else(|| {
                anyhow!("sasl.mechanism={text}: expected SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN")
            })
    }
}

/// The client properties in effect, in the order they were given (a key given twice keeps its last value
/// when librdkafka reads them, and here too).
#[derive(Debug, Clone, Default)]
pub(crate) struct Properties(Vec<(String, String)>);

impl Properties {
    /// `--command-config FILE` (if any), then the `-X` pairs.
    pub(crate) fn load(file: Option<&Path>, overrides: &[(String, String)]) -> Result<Properties> {
        let mut properties = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read the client config file {}", path.display())
                })?;
                parse_properties(&text)
                    .with_context(|| format!("invalid client config file {}", path.display()))?
            }
            None => Vec::new(),
        };
        properties.extend(overrides.iter().cloned());
        Ok(Properties(properties))
    }

    /// The last value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// What librdkafka is given: every property, except that Java's `sasl.jaas.config` (which librdkafka
    /// does not know) becomes `sasl.username` and `sasl.password`, so that a Kafka tool's config file works
    /// as it is.
    pub(crate) fn for_librdkafka(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::with_capacity(self.0.len());
        for (key, value) in &self.0 {
            match key.as_str() {
                "sasl.jaas.config" => {
                    let (username, password) = parse_jaas(value)?;
                    if self.get("sasl.username").is_none() {
                        out.push(("sasl.username".to_string(), username));
                    }
                    if self.get("sasl.password").is_none() {
                        out.push(("sasl.password".to_string(), password));
                    }
                }
                java if JAVA_ONLY.iter().any(|(k, _)| *k == java) => {
                    bail!("{}", java_only(java))
                }
                _ => out.push((key.clone(), value.clone())),
            }
        }
        Ok(out)
    }

    /// The settings Nerve's own admin client uses; refuses settings it cannot honour rather than ignoring
    /// them (a certificate check quietly skipped is worse than an error).
    pub(crate) fn security(&self) -> Result<Security> {
        let mut security = Security::default();
        let properties = self.for_librdkafka()?;
        let last = |key: &str| {
            properties
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        if let Some(protocol) = last("security.protocol") {
            security.protocol = Protocol::parse(protocol)?;
        }
        // librdkafka's name is `sasl.mechanisms`, Kafka's `sasl.mechanism`; librdkafka takes both.
        let mechanism = properties
            .iter()
            .rev()
            .find(|(k, _)| k == "sasl.mechanism" || k == "sasl.mechanisms")
            .map(|(_, v)| v.as_str());
        if let Some(mechanism) = mechanism {
            security.mechanism = Mechanism::parse(mechanism)?;
        }
        security.username = last("sasl.username").map(str::to_string);
        security.password = last("sasl.password").map(str::to_string);
        security.ca_location = last("ssl.ca.location").map(PathBuf::from);
        security.certificate_location = last("ssl.certificate.location").map(PathBuf::from);
        security.key_location = last("ssl.key.location").map(PathBuf::from);
        if let Some(algorithm) = last("ssl.endpoint.identification.algorithm") {
            security.verify_hostname = match algorithm.to_ascii_lowercase().as_str() {
                "https" => true,
                "none" | "" => false,
                _ => bail!(
                    "ssl.endpoint.identification.algorithm={algorithm}: expected https or none"
                ),
            };
        }
        if let Some(value) = last("ssl.key.password") {
            if !value.is_empty() {
                bail!(
                    "ssl.key.password: `nerve user` and `nerve acl` read unencrypted PEM keys only; \
                     decrypt the key (openssl pkey -in KEY -out PLAIN_KEY)"
                );
            }
        }
        if security.certificate_location.is_some() != security.key_location.is_some() {
            bail!("a client certificate needs both ssl.certificate.location and ssl.key.location");
        }
        if security.protocol.uses_sasl()
            && (security.username.is_none() || security.password.is_none())
        {
            bail!(
                "security.protocol={} needs sasl.username and sasl.password",
                security.protocol_name()
            );
        }
        Ok(security)
    }
}

/// Java-client settings that librdkafka has no equivalent of, with what to use instead.
const JAVA_ONLY: &[(&str, &str)] = &[
    (
        "ssl.truststore.location",
        "ssl.ca.location with the CA certificates as PEM",
    ),
    (
        "ssl.keystore.location",
        "ssl.certificate.location and ssl.key.location as PEM",
    ),
];

fn java_only(key: &str) -> String {
    let instead = JAVA_ONLY
        .iter()
        .find(|(k, _)| *k == key)
        .map_or("librdkafka's settings", |(_, instead)| *instead);
    format!("{key} is a Java client setting (JKS/PKCS#12 stores); use {instead}")
}

/// What the admin client needs to know to connect and authenticate.
#[derive(Clone)]
pub(crate) struct Security {
    pub(crate) protocol: Protocol,
    pub(crate) mechanism: Mechanism,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// PEM CA certificates (a file, or a directory of them); without it, the system's CA bundle.
    pub(crate) ca_location: Option<PathBuf>,
    pub(crate) certificate_location: Option<PathBuf>,
    pub(crate) key_location: Option<PathBuf>,
    /// `ssl.endpoint.identification.algorithm=https` (librdkafka's default): the certificate must name the
    /// host connected to. `none` still checks the chain.
    pub(crate) verify_hostname: bool,
}

impl Default for Mechanism {
    /// librdkafka's default is GSSAPI, which Nerve does not offer; the strongest Nerve offers instead.
    fn default() -> Self {
        Mechanism::Scram(nerve_auth::ScramMechanism::Sha512)
    }
}

impl Default for Security {
    fn default() -> Self {
        Security {
            protocol: Protocol::default(),
            mechanism: Mechanism::default(),
            username: None,
            password: None,
            ca_location: None,
            certificate_location: None,
            key_location: None,
            verify_hostname: true,
        }
    }
}

impl Security {
    pub(crate) fn protocol_name(&self) -> &'static str {
        match self.protocol {
            Protocol::Plaintext => "PLAINTEXT",
            Protocol::Ssl => "SSL",
            Protocol::SaslPlaintext => "SASL_PLAINTEXT",
            Protocol::SaslSsl => "SASL_SSL",
        }
    }
}

/// The password stays out of debug output.
impl std::fmt::Debug for Security {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol)
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("ca_location", &self.ca_location)
            .finish_non_exhaustive()
    }
}

/// Parses Java-properties-style text, as Kafka's tools read `--command-config`: one `key=value` (or
/// `key: value`) a line, surrounding blanks trimmed, `#` and `!` lines are comments, and a line ending in
/// `\` continues on the next. No other escapes: a `\` elsewhere is kept as it is, so Windows-style paths
/// and passwords with backslashes read literally. A line without `=` or `:` is an error, not an empty
/// setting.
pub(crate) fn parse_properties(text: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    let mut lines = text.lines().enumerate();
    while let Some((index, line)) = lines.next() {
        let mut logical = line.trim_start().to_string();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
            continue;
        }
        while ends_with_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some((_, next)) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let separator = logical
            .find(['=', ':'])
            .ok_or_else(|| anyhow!("line {}: expected key=value, got `{}`", index + 1, logical))?;
        let key = logical[..separator].trim();
        if key.is_empty() {
            bail!("line {}: a setting without a key", index + 1);
        }
        let value = logical[separator + 1..].trim();
        out.push((key.to_string(), value.to_string()));
    }
    Ok(out)
}

/// An odd number of trailing backslashes: the last one escapes the line break.
fn ends_with_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// The username and password of a Java `sasl.jaas.config`:
/// `org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="secret";`
fn parse_jaas(config: &str) -> Result<(String, String)> {
    let option = |name: &str| -> Option<String> {
        let mut rest = config;
        while let Some(at) = rest.find(name) {
            let before = rest[..at].chars().next_back();
            let after = &rest[at + name.len()..];
            rest = after;
            if before.is_some_and(|c| !c.is_whitespace()) {
                continue;
            }
            let Some(value) = after.trim_start().strip_prefix('=') else {
                continue;
            };
            let value = value.trim_start();
            if let Some(quoted) = value.strip_prefix('"') {
                let mut text = String::new();
                let mut chars = quoted.chars();
                while let Some(c) = chars.next() {
                    match c {
                        '\\' => text.extend(chars.next()),
                        '"' => return Some(text),
                        c => text.push(c),
                    }
                }
                return None;
            }
            let end = value.find([' ', ';', '\t', '\n']).unwrap_or(value.len());
            return Some(value[..end].to_string());
        }
        None
    };
    match (option("username"), option("password")) {
        (Some(username), Some(password)) => Ok((username, password)),
        _ => bail!(
            "sasl.jaas.config: expected username=\"...\" and password=\"...\" (or use sasl.username and \
             sasl.password)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        parse_properties(text).unwrap()
    }

    fn owned(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn properties_are_key_value_lines_with_comments_and_blanks_ignored() {
        let text = "# Kafka client settings\n\
                    \n\
                    security.protocol=SASL_SSL\n\
                    ! another comment\n\
                    \x20 sasl.mechanism = SCRAM-SHA-512 \n\
                    sasl.username: alice\r\n\
                    sasl.password=p=a:ss#word\n";
        assert_eq!(
            pairs(text),
            owned(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.username", "alice"),
                ("sasl.password", "p=a:ss#word"),
            ])
        );
    }

    #[test]
    fn a_trailing_backslash_continues_the_line_and_others_are_literal() {
        let text =
            "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule \\\n    \
                    required username=\"alice\" \\\n    password=\"x\";\n\
                    ssl.ca.location=C:\\certs\\ca.pem\n\
                    empty=\n";
        assert_eq!(
            pairs(text),
            owned(&[
                (
                    "sasl.jaas.config",
                    "org.apache.kafka.common.security.scram.ScramLoginModule required \
                     username=\"alice\" password=\"x\";"
                ),
                ("ssl.ca.location", "C:\\certs\\ca.pem"),
                ("empty", ""),
            ])
        );
        // An escaped backslash at the end is a backslash, not a continuation.
        assert_eq!(pairs("a=b\\\\\nc=d"), owned(&[("a", "b\\\\"), ("c", "d")]));
        // A continuation on the last line ends the value.
        assert_eq!(pairs("a=b\\"), owned(&[("a", "b")]));
    }

    #[test]
    fn lines_without_a_key_or_separator_are_refused_with_their_number() {
        let error = parse_properties("a=b\nnot a setting\n").unwrap_err();
        assert!(error.to_string().contains("line 2"), "{error}");
        assert!(parse_properties("=value").is_err());
        assert!(parse_properties(" : value").is_err());
    }

    #[test]
    fn flags_override_the_file_and_the_last_setting_wins() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("client.properties");
        std::fs::write(
            &file,
            "security.protocol=SASL_PLAINTEXT\nsasl.mechanisms=PLAIN\nsasl.username=file\n\
             sasl.password=secret\n",
        )
        .unwrap();
        let properties = Properties::load(
            Some(&file),
            &owned(&[
                ("sasl.username", "flag"),
                ("sasl.mechanism", "SCRAM-SHA-256"),
            ]),
        )
        .unwrap();
        let security = properties.security().unwrap();
        assert_eq!(security.protocol, Protocol::SaslPlaintext);
        assert_eq!(
            security.mechanism,
            Mechanism::Scram(nerve_auth::ScramMechanism::Sha256)
        );
        assert_eq!(security.username.as_deref(), Some("flag"));
        assert_eq!(security.password.as_deref(), Some("secret"));
        assert!(security.verify_hostname);
        assert!(!format!("{security:?}").contains("secret"));

        let missing = Properties::load(Some(&dir.path().join("absent")), &[]).unwrap_err();
        assert!(format!("{missing:#}").contains("absent"), "{missing:#}");
    }

    #[test]
    fn settings_the_admin_client_cannot_honour_are_refused() {
        let security = |pairs: &[(&str, &str)]| {
            Properties::load(None, &owned(pairs))
                .unwrap()
                .security()
                .map_err(|e| e.to_string())
        };
        assert!(security(&[("security.protocol", "sasl_ssl")])
            .unwrap_err()
            .contains("sasl.username"));
        assert!(security(&[("security.protocol", "tls")]).is_err());
        assert!(security(&[("sasl.mechanism", "GSSAPI")]).is_err());
        assert!(security(&[("ssl.certificate.location", "c.pem")]).is_err());
        assert!(security(&[("ssl.key.password", "k")]).is_err());
        assert!(security(&[("ssl.truststore.location", "t.jks")])
            .unwrap_err()
            .contains("ssl.ca.location"));
        assert!(security(&[("ssl.endpoint.identification.algorithm", "dns")]).is_err());
        let unchecked = security(&[("ssl.endpoint.identification.algorithm", "none")]).unwrap();
        assert!(!unchecked.verify_hostname);
        // Settings only librdkafka uses pass through untouched.
        assert_eq!(
            security(&[("socket.keepalive.enable", "true")])
                .unwrap()
                .protocol,
            Protocol::Plaintext
        );
    }

    #[test]
    fn a_java_jaas_config_becomes_librdkafkas_username_and_password() {
        let properties = Properties::load(
            None,
            &owned(&[
                ("security.protocol", "SASL_PLAINTEXT"),
                (
                    "sasl.jaas.config",
                    "org.apache.kafka.common.security.scram.ScramLoginModule required \
                     username=\"alice\" password=\"se\\\"cret\";",
                ),
            ]),
        )
        .unwrap();
        let rdkafka = properties.for_librdkafka().unwrap();
        assert!(rdkafka.contains(&("sasl.username".into(), "alice".into())));
        assert!(rdkafka.contains(&("sasl.password".into(), "se\"cret".into())));
        assert!(!rdkafka.iter().any(|(k, _)| k == "sasl.jaas.config"));
        let security = properties.security().unwrap();
        assert_eq!(security.password.as_deref(), Some("se\"cret"));
        assert!(parse_jaas("ScramLoginModule required;").is_err());
        assert_eq!(
            parse_jaas("PlainLoginModule required username=bob password=pw;").unwrap(),
            ("bob".to_string(), "pw".to_string())
        );
    }
}
