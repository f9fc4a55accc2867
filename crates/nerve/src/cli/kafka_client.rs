//! A small blocking Kafka client for the admin APIs rdkafka does not expose: the SCRAM-credential APIs
//! (`nerve user`) and the ACL APIs (`nerve acl`). One connection to one broker, one request at a time.
//!
//! The connection is set up as Kafka's own clients do it: TCP (bounded by `--connect-timeout`), TLS with
//! rustls on SSL and SASL_SSL listeners, ApiVersions to learn which versions the broker speaks, then on SASL
//! listeners SaslHandshake v1 and SaslAuthenticate (KIP-152) with SCRAM-SHA-256/512 or PLAIN. Each request
//! is then sent at the highest version both sides speak. Requests and responses are kafka-protocol's
//! messages; this module owns only the framing.
//!
//! The broker's answers are untrusted bytes: a frame larger than [`MAX_RESPONSE_BYTES`], a correlation id
//! that is not the request's, a body that does not decode or has bytes left over is an error naming the
//! broker, never a panic or an unbounded allocation. Every read and write has a deadline.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, RequestHeader, ResponseHeader, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message, Request, StrBytes};
use nerve_auth::ScramClient;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConnection, DigitallySignedStruct, RootCertStore};

use super::security::{Mechanism, Security};
use super::REQUEST_TIMEOUT;

/// The largest response frame accepted. Admin answers are small; a size beyond this is a broken or hostile
/// peer (or a TLS listener spoken to in plain text), not something to allocate for.
pub(crate) const MAX_RESPONSE_BYTES: usize = 100 * 1024 * 1024;

const CLIENT_ID: &str = "nerve-cli";

/// Where the system's CA bundle usually is, when `ssl.ca.location` is not given (as OpenSSL, and so
/// librdkafka, would find it): Debian and Ubuntu, Fedora and RHEL, Alpine and macOS, openSUSE.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// A plain or TLS byte stream to the broker.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

impl Stream {
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref(),
        }
    }
}

/// Request/response framing over any byte stream: a 4-byte big-endian size, then a header and a body.
pub(crate) struct Connection<S> {
    stream: S,
    /// The broker as the user named it, for error messages.
    broker: String,
    next_correlation_id: i32,
}

impl<S: Read + Write> Connection<S> {
    pub(crate) fn new(stream: S, broker: impl Into<String>) -> Self {
        Connection {
            stream,
            broker: broker.into(),
            next_correlation_id: 1,
        }
    }

    /// Sends `request` at `version` and reads its response.
    pub(crate) fn call_at<R: Request>(&mut self, version: i16, request: &R) -> Result<R::Response> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let frame = encode_request(correlation_id, version, request)?;
        let name = api_name(R::KEY);
        self.stream
            .write_all(&frame)
            .and_then(|()| self.stream.flush())
            .map_err(|e| self.io_error(e, &format!("sending {name}")))?;
        let frame = self
            .read_frame()
            .map_err(|e| e.context(format!("no valid answer to {name}")))?;
        decode_response::<R>(frame, correlation_id, version).map_err(|e| {
            anyhow!(
                "the broker at {} sent a {name} answer that does not decode: {e:#}",
                self.broker
            )
        })
    }

    /// One response frame: its size checked before anything is allocated for it.
    fn read_frame(&mut self) -> Result<Bytes> {
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .map_err(|e| self.io_error(e, "reading an answer"))?;
        let size = i32::from_be_bytes(size);
        // Four bytes at least: every response header starts with the correlation id.
        let size = usize::try_from(size)
            .ok()
            .filter(|size| (4..=MAX_RESPONSE_BYTES).contains(size))
            .ok_or_else(|| {
                anyhow!(
                    "the broker at {} sent a frame of {size} bytes (expected 4 to {MAX_RESPONSE_BYTES}); \
                     is it a Kafka listener, and does it speak the security.protocol given?",
                    self.broker
                )
            })?;
        let mut frame = vec![0u8; size];
        self.stream
            .read_exact(&mut frame)
            .map_err(|e| self.io_error(e, "reading an answer"))?;
        Ok(Bytes::from(frame))
    }

    fn io_error(&self, error: std::io::Error, doing: &str) -> anyhow::Error {
        match error.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => anyhow!(
                "the broker at {} did not answer in time ({doing})",
                self.broker
            ),
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => {
                anyhow!(
                    "the broker at {} closed the connection ({doing}); does it speak the \
                 security.protocol given?",
                    self.broker
                )
            }
            _ => anyhow!("{doing} from the broker at {}: {error}", self.broker),
        }
    }
}

/// The size-prefixed frame of one request.
fn encode_request<R: Request>(correlation_id: i32, version: i16, request: &R) -> Result<BytesMut> {
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut body = BytesMut::new();
    header
        .encode(&mut body, R::header_version(version))
        .and_then(|()| request.encode(&mut body, version))
        .map_err(|e| anyhow!("cannot encode {} v{version}: {e}", api_name(R::KEY)))?;
    let mut frame = BytesMut::with_capacity(4 + body.len());
    frame.put_i32(i32::try_from(body.len()).context("request too large")?);
    frame.put_slice(&body);
    Ok(frame)
}

/// Decodes a response frame (without its size): the header at the version this API and version use, the
/// correlation id checked, the body, and nothing left over.
fn decode_response<R: Request>(
    mut frame: Bytes,
    correlation_id: i32,
    version: i16,
) -> Result<R::Response> {
    // ApiVersions answers with header v0 at every version, so that a client that sent a version the broker
    // does not know can still read the answer (KIP-511).
    let header_version = if R::KEY == ApiKey::ApiVersions as i16 {
        0
    } else {
        <R::Response as HeaderVersion>::header_version(version)
    };
    let header = ResponseHeader::decode(&mut frame, header_version)
        .map_err(|e| anyhow!("bad response header: {e}"))?;
    if header.correlation_id != correlation_id {
        bail!(
            "correlation id {} where {correlation_id} was expected",
            header.correlation_id
        );
    }
    let response = <R::Response as Decodable>::decode(&mut frame, version)
        .map_err(|e| anyhow!("bad v{version} body: {e}"))?;
    if frame.has_remaining() {
        bail!(
            "{} bytes left over after the v{version} body",
            frame.remaining()
        );
    }
    Ok(response)
}

/// The API's name as Kafka spells it (`DescribeAcls`), for messages.
pub(crate) fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(api) => format!("{api:?}"),
        Err(()) => format!("API {key}"),
    }
}

/// A broker's error code with its message, for a person: "User alice already exists (DuplicateResource,
/// error code 92)". `None` for 0, success.
pub(crate) fn broker_error(code: i16, message: Option<&StrBytes>) -> Option<String> {
    let error = ResponseError::try_from_code(code)?;
    Some(
        match message.map(|m| m.as_str().trim()).filter(|m| !m.is_empty()) {
            Some(message) => format!("{message} ({error}, error code {code})"),
            None => format!("{error} (error code {code})"),
        },
    )
}

/// A connection to one broker, set up and authenticated, that sends requests at the versions both sides
/// speak.
pub(crate) struct KafkaClient {
    connection: Connection<Stream>,
    /// The broker's supported versions by API key (ApiVersions).
    versions: HashMap<i16, (i16, i16)>,
}

impl KafkaClient {
    /// Connects to the first broker of `bootstrap` (`HOST:PORT[,HOST:PORT...]`) that accepts, with the
    /// security settings given; `timeout` bounds the connection, TLS and authentication.
    pub(crate) fn connect(bootstrap: &str, timeout: Duration, security: &Security) -> Result<Self> {
        let brokers: Vec<&str> = bootstrap
            .split(',')
            .map(str::trim)
            .filter(|b| !b.is_empty())
            .collect();
        if brokers.is_empty() {
            bail!("--bootstrap is empty");
        }
        let tls = if security.protocol.uses_tls() {
            Some(Arc::new(tls_config(security)?))
        } else {
            None
        };
        let mut failures = Vec::new();
        for broker in &brokers {
            match KafkaClient::connect_one(broker, timeout, security, tls.clone()) {
                Ok(client) => return Ok(client),
                // Credentials refused by one broker would be refused by all: no point going on.
                Err(Failure::Refused(e)) => return Err(e),
                Err(Failure::Unreachable(e)) => failures.push(format!("{e:#}")),
            }
        }
        bail!("{}", failures.join("; "))
    }

    fn connect_one(
        broker: &str,
        timeout: Duration,
        security: &Security,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<KafkaClient, Failure> {
        let tcp = tcp_connect(broker, timeout).map_err(Failure::Unreachable)?;
        let unreachable = |e: std::io::Error| {
            Failure::Unreachable(anyhow!("cannot set up the connection to {broker}: {e}"))
        };
        tcp.set_read_timeout(Some(timeout)).map_err(unreachable)?;
        tcp.set_write_timeout(Some(timeout)).map_err(unreachable)?;
        tcp.set_nodelay(true).map_err(unreachable)?;
        let stream = match tls {
            Some(config) => Stream::Tls(Box::new(
                tls_handshake(broker, tcp, config, timeout).map_err(Failure::Refused)?,
            )),
            None => Stream::Plain(tcp),
        };
        let mut connection = Connection::new(stream, broker);
        let versions = api_versions(&mut connection).map_err(Failure::Unreachable)?;
        let mut client = KafkaClient {
            connection,
            versions,
        };
        if security.protocol.uses_sasl() {
            client.authenticate(security).map_err(Failure::Refused)?;
        }
        // Connected: from here on, the request's own deadline.
        let tcp = client.connection.stream.tcp();
        tcp.set_read_timeout(Some(REQUEST_TIMEOUT))
            .map_err(unreachable)?;
        tcp.set_write_timeout(Some(REQUEST_TIMEOUT))
            .map_err(unreachable)?;
        Ok(client)
    }

    /// Sends `request` at the highest version both sides speak.
    pub(crate) fn call<R: Request>(&mut self, request: &R) -> Result<R::Response> {
        let version = self.version::<R>()?;
        self.connection.call_at(version, request)
    }

    /// The highest version of `R` both the broker and kafka-protocol speak.
    pub(crate) fn version<R: Request>(&self) -> Result<i16> {
        let name = api_name(R::KEY);
        let broker = &self.connection.broker;
        let Some(&(min, max)) = self.versions.get(&R::KEY) else {
            bail!(
                "the broker at {broker} does not support {name}; it needs a broker with security \
                 (Nerve with SCRAM and ACL support, or Kafka 2.7 or later)"
            );
        };
        let ours = <R as Message>::VERSIONS;
        let (low, high) = (min.max(ours.min), max.min(ours.max));
        if low > high {
            bail!(
                "the broker at {broker} speaks {name} v{min} to v{max}; this nerve speaks v{} to v{}",
                ours.min,
                ours.max
            );
        }
        Ok(high)
    }

    /// SaslHandshake v1, then the mechanism's messages in SaslAuthenticate requests.
    fn authenticate(&mut self, security: &Security) -> Result<()> {
        let broker = self.connection.broker.clone();
        let mechanism = security.mechanism;
        let user = security.username.as_deref().unwrap_or_default();
        let password = security.password.as_deref().unwrap_or_default();
        // v1: the messages then travel in SaslAuthenticate requests rather than as raw frames.
        if self
            .versions
            .get(&(ApiKey::SaslHandshake as i16))
            .map(|v| v.1)
            < Some(1)
        {
            bail!("the broker at {broker} does not speak SaslHandshake v1; is it a SASL listener?");
        }
        let handshake = self.connection.call_at(
            1,
            &SaslHandshakeRequest::default()
                .with_mechanism(StrBytes::from_static_str(mechanism.name())),
        )?;
        if handshake.error_code == ResponseError::UnsupportedSaslMechanism.code() {
            let offered: Vec<&str> = handshake.mechanisms.iter().map(|m| m.as_str()).collect();
            bail!(
                "the broker at {broker} does not offer SASL mechanism {}; it offers {} \
                 (set sasl.mechanism)",
                mechanism.name(),
                if offered.is_empty() {
                    "none".to_string()
                } else {
                    offered.join(", ")
                }
            );
        }
        if let Some(error) = broker_error(handshake.error_code, None) {
            bail!("the broker at {broker} refused SaslHandshake: {error}");
        }
        let version = self.version::<SaslAuthenticateRequest>()?;
        let mut exchange = |message: Vec<u8>| -> Result<Bytes> {
            let response = self.connection.call_at(
                version,
                &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(message)),
            )?;
            match broker_error(response.error_code, response.error_message.as_ref()) {
                Some(error) => bail!(
                    "authentication as {user} with {} failed at {broker}: {error}",
                    mechanism.name()
                ),
                None => Ok(response.auth_bytes),
            }
        };
        match mechanism {
            Mechanism::Plain => {
                exchange(format!("\0{user}\0{password}").into_bytes())?;
            }
            Mechanism::Scram(scram) => {
                let mut client = ScramClient::new(scram, user, password);
                let server_first = exchange(client.client_first())?;
                let client_final = client
                    .handle_server_first(&server_first)
                    .map_err(|e| anyhow!("SCRAM exchange with {broker} failed: {e}"))?;
                let server_final = exchange(client_final)?;
                client.handle_server_final(&server_final).map_err(|e| {
                    anyhow!("{broker} did not prove that it knows the credential: {e}")
                })?;
            }
        }
        Ok(())
    }
}

/// Why a broker could not be used: unreachable (try the next one) or refused (stop: the settings are
/// wrong).
enum Failure {
    Unreachable(anyhow::Error),
    Refused(anyhow::Error),
}

/// ApiVersions v0: every Kafka broker answers it before authentication, at every version since 0.10.
fn api_versions<S: Read + Write>(
    connection: &mut Connection<S>,
) -> Result<HashMap<i16, (i16, i16)>> {
    let response = connection.call_at(0, &ApiVersionsRequest::default())?;
    if let Some(error) = broker_error(response.error_code, None) {
        bail!(
            "the broker at {} refused ApiVersions: {error}",
            connection.broker
        );
    }
    Ok(response
        .api_keys
        .iter()
        .map(|api| (api.api_key, (api.min_version, api.max_version)))
        .collect())
}

fn tcp_connect(broker: &str, timeout: Duration) -> Result<TcpStream> {
    let addresses: Vec<SocketAddr> = broker
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve the broker address {broker} (HOST:PORT)"))?
        .collect();
    let mut last = None;
    for address in &addresses {
        match TcpStream::connect_timeout(address, timeout) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) if e.kind() == ErrorKind::TimedOut => bail!(
            "cannot reach the broker at {broker} within {} s",
            timeout.as_secs()
        ),
        Some(e) => bail!("cannot reach the broker at {broker}: {e}"),
        None => bail!("the broker address {broker} resolves to no address"),
    }
}

/// The TLS handshake, run to its end here so that a certificate problem is reported as one.
fn tls_handshake(
    broker: &str,
    mut tcp: TcpStream,
    config: Arc<rustls::ClientConfig>,
    timeout: Duration,
) -> Result<rustls::StreamOwned<ClientConnection, TcpStream>> {
    let host = broker
        .rsplit_once(':')
        .map_or(broker, |(host, _)| host)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = ServerName::try_from(host.to_string())
        .map_err(|e| anyhow!("{host} is not a name TLS can check: {e}"))?;
    let mut connection = ClientConnection::new(config, name)
        .map_err(|e| anyhow!("cannot start TLS with {broker}: {e}"))?;
    while connection.is_handshaking() {
        connection
            .complete_io(&mut tcp)
            .map_err(|e| match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => anyhow!(
                "TLS handshake with {broker} did not finish within {} s; is it an SSL listener?",
                timeout.as_secs()
            ),
                _ => anyhow!("TLS handshake with {broker} failed: {e}"),
            })?;
    }
    Ok(rustls::StreamOwned::new(connection, tcp))
}

/// rustls with ring, TLS 1.2 and 1.3, the CAs of `ssl.ca.location` (or the system's), and the client
/// certificate if one is given.
fn tls_config(security: &Security) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    for cert in ca_certificates(security.ca_location.as_deref())? {
        roots
            .add(cert)
            .map_err(|e| anyhow!("ssl.ca.location: a CA certificate is unusable: {e}"))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .context("cannot set up TLS")?;
    let builder = if security.verify_hostname {
        builder.with_root_certificates(roots)
    } else {
        let chain = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| anyhow!("cannot check server certificates: {e}"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly(chain)))
    };
    match (&security.certificate_location, &security.key_location) {
        (Some(cert), Some(key)) => {
            let certs = read_certificates(cert, "ssl.certificate.location")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| {
                anyhow!(
                    "ssl.key.location {}: no usable PEM private key: {e}",
                    key.display()
                )
            })?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| anyhow!("the client certificate and key do not match: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// `ssl.ca.location`: a PEM file or a directory of them; without it the system's bundle (`SSL_CERT_FILE`,
/// else the usual places).
fn ca_certificates(location: Option<&Path>) -> Result<Vec<CertificateDer<'static>>> {
    if let Some(location) = location {
        if location.is_dir() {
            let mut certs = Vec::new();
            let entries = std::fs::read_dir(location)
                .with_context(|| format!("cannot read ssl.ca.location {}", location.display()))?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_file() {
                    certs.extend(
                        CertificateDer::pem_file_iter(&path)
                            .into_iter()
                            .flatten()
                            .flatten(),
                    );
                }
            }
            if certs.is_empty() {
                bail!(
                    "ssl.ca.location {} holds no PEM certificate",
                    location.display()
                );
            }
            return Ok(certs);
        }
        return read_certificates(location, "ssl.ca.location");
    }
    let from_env = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
    let bundle = from_env
        .into_iter()
        .chain(SYSTEM_CA_BUNDLES.iter().map(std::path::PathBuf::from))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            anyhow!("no system CA bundle found: set ssl.ca.location to the CA certificates (PEM)")
        })?;
    read_certificates(&bundle, "the system CA bundle")
}

fn read_certificates(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| anyhow!("{setting} {}: {e}", path.display()))?;
    if certs.is_empty() {
        bail!("{setting} {} holds no PEM certificate", path.display());
    }
    Ok(certs)
}

/// `ssl.endpoint.identification.algorithm=none`: the chain must still lead to a trusted CA; only the name
/// in the certificate is not compared with the host (as librdkafka does with that setting).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // webpki checks the chain first and the name last, so a name error means the chain was good.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{
        ApiVersionsResponse, DescribeAclsRequest, DescribeUserScramCredentialsRequest,
    };
    use std::io::Cursor;

    /// A stream that reads canned bytes and keeps what is written.
    struct Canned {
        input: Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Canned {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Canned {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn connection(input: Vec<u8>) -> Connection<Canned> {
        Connection::new(
            Canned {
                input: Cursor::new(input),
                written: Vec::new(),
            },
            "broker.test:9092",
        )
    }

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut out = (body.len() as i32).to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    /// A valid ApiVersions v0 answer to correlation id 1.
    fn api_versions_answer() -> Vec<u8> {
        let mut body = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(1)
            .encode(&mut body, 0)
            .unwrap();
        ApiVersionsResponse::default()
            .with_api_keys(vec![
                kafka_protocol::messages::api_versions_response::ApiVersion::default()
                    .with_api_key(ApiKey::DescribeAcls as i16)
                    .with_min_version(0)
                    .with_max_version(3),
            ])
            .encode(&mut body, 0)
            .unwrap();
        framed(&body)
    }

    fn error_of<T>(result: Result<T>) -> String {
        match result {
            Ok(_) => panic!("garbage was accepted"),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn a_well_formed_answer_decodes_and_the_request_is_framed() {
        let mut connection = connection(api_versions_answer());
        let versions = api_versions(&mut connection).unwrap();
        assert_eq!(versions.get(&(ApiKey::DescribeAcls as i16)), Some(&(0, 3)));
        let written = &connection.stream.written;
        let size = i32::from_be_bytes(written[..4].try_into().unwrap());
        assert_eq!(size as usize, written.len() - 4);
        // api key 18 (ApiVersions), version 0, correlation id 1.
        assert_eq!(&written[4..12], &[0, 18, 0, 0, 0, 0, 0, 1]);
    }

    #[test]
    fn frames_of_impossible_sizes_are_refused_before_allocating() {
        for size in [
            i32::MIN,
            -1,
            0,
            3,
            (MAX_RESPONSE_BYTES + 1) as i32,
            i32::MAX,
        ] {
            let error = error_of(
                connection(size.to_be_bytes().to_vec()).call_at(0, &ApiVersionsRequest::default()),
            );
            assert!(error.contains("frame of"), "{size}: {error}");
            assert!(error.contains("broker.test:9092"), "{error}");
        }
        // "HTTP" read as a size: a plain-text client speaking to something else.
        let error = error_of(
            connection(b"HTTP/1.1 400 Bad Request\r\n".to_vec())
                .call_at(0, &ApiVersionsRequest::default()),
        );
        assert!(error.contains("frame of"), "{error}");
    }

    #[test]
    fn truncated_frames_and_closed_connections_are_errors() {
        let error = error_of(connection(Vec::new()).call_at(0, &ApiVersionsRequest::default()));
        assert!(error.contains("closed the connection"), "{error}");
        let mut short = framed(&[0, 0, 0, 1, 0, 0]);
        short.truncate(7);
        let error = error_of(connection(short).call_at(0, &ApiVersionsRequest::default()));
        assert!(error.contains("closed the connection"), "{error}");
    }

    #[test]
    fn a_wrong_correlation_id_or_leftover_bytes_are_refused() {
        let mut answer = api_versions_answer();
        answer[7] = 9;
        let error = error_of(connection(answer).call_at(0, &ApiVersionsRequest::default()));
        assert!(error.contains("correlation id 9"), "{error}");
        let mut answer = api_versions_answer();
        answer.push(0);
        let size = (answer.len() - 4) as i32;
        answer[..4].copy_from_slice(&size.to_be_bytes());
        let error = error_of(connection(answer).call_at(0, &ApiVersionsRequest::default()));
        assert!(error.contains("left over"), "{error}");
    }

    #[test]
    fn random_garbage_is_an_error_never_a_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for round in 0..2000 {
            let len = rng.random_range(0..64);
            let mut body: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            // Mostly with the right correlation id, so the body decoders see the garbage.
            if body.len() >= 4 && round % 4 != 0 {
                body[..4].copy_from_slice(&1i32.to_be_bytes());
            }
            let input = framed(&body);
            let _ = connection(input.clone()).call_at(0, &ApiVersionsRequest::default());
            let _ = connection(input.clone()).call_at(3, &DescribeAclsRequest::default());
            let _ = connection(input).call_at(0, &DescribeUserScramCredentialsRequest::default());
        }
    }

    #[test]
    fn broker_errors_name_the_code_and_keep_the_message() {
        assert_eq!(broker_error(0, None), None);
        assert_eq!(
            broker_error(92, None).as_deref(),
            Some("DuplicateResource (error code 92)")
        );
        let message = StrBytes::from_static_str("no such user");
        assert_eq!(
            broker_error(91, Some(&message)).as_deref(),
            Some("no such user (ResourceNotFound, error code 91)")
        );
        assert!(broker_error(-7, None).unwrap().contains("-7"));
        assert_eq!(
            api_name(ApiKey::DescribeUserScramCredentials as i16),
            "DescribeUserScramCredentials"
        );
    }

    /// A TLS server on `ip` with the test PKI's certificate (for localhost and 127.0.0.1) that answers one
    /// ApiVersions request; returns its address.
    fn tls_server(pki: &nerve_tls::testing::TestPki, ip: &str) -> std::net::SocketAddr {
        let certs = CertificateDer::pem_file_iter(&pki.server_cert)
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(&pki.server_key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        let listener = std::net::TcpListener::bind((ip, 0)).unwrap();
        let address = listener.local_addr().unwrap();
        let config = Arc::new(config);
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                let config = config.clone();
                std::thread::spawn(move || {
                    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let connection = rustls::ServerConnection::new(config).unwrap();
                    let mut tls = rustls::StreamOwned::new(connection, tcp);
                    let mut size = [0u8; 4];
                    if tls.read_exact(&mut size).is_err() {
                        return; // the client refused the certificate
                    }
                    let mut request = vec![0u8; i32::from_be_bytes(size) as usize];
                    tls.read_exact(&mut request).unwrap();
                    let _ = tls.write_all(&api_versions_answer());
                    let _ = tls.flush();
                });
            }
        });
        address
    }

    fn tls_settings(ca: &Path, verify_hostname: bool) -> Security {
        Security {
            protocol: super::super::security::Protocol::Ssl,
            ca_location: Some(ca.to_path_buf()),
            verify_hostname,
            ..Security::default()
        }
    }

    #[test]
    fn tls_checks_the_chain_and_the_name_unless_told_to_skip_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let pki = nerve_tls::testing::TestPki::generate(dir.path());
        let timeout = Duration::from_secs(10);
        let good = tls_server(&pki, "127.0.0.1");
        let client = KafkaClient::connect(
            &good.to_string(),
            timeout,
            &tls_settings(&pki.ca_cert, true),
        )
        .unwrap();
        assert_eq!(
            client.versions.get(&(ApiKey::DescribeAcls as i16)),
            Some(&(0, 3))
        );
        KafkaClient::connect(
            &format!("localhost:{}", good.port()),
            timeout,
            &tls_settings(&pki.ca_cert, true),
        )
        .unwrap();
        // The CA directory form of ssl.ca.location.
        let cas = dir.path().join("cas");
        std::fs::create_dir(&cas).unwrap();
        std::fs::copy(&pki.ca_cert, cas.join("ca.pem")).unwrap();
        KafkaClient::connect(&good.to_string(), timeout, &tls_settings(&cas, true)).unwrap();

        // 127.0.0.2 is not in the certificate: refused, unless the name check is off.
        let misnamed = tls_server(&pki, "127.0.0.2");
        let error = error_of(KafkaClient::connect(
            &misnamed.to_string(),
            timeout,
            &tls_settings(&pki.ca_cert, true),
        ));
        assert!(error.contains("TLS handshake"), "{error}");
        assert!(error.contains("not valid for"), "{error}");
        KafkaClient::connect(
            &misnamed.to_string(),
            timeout,
            &tls_settings(&pki.ca_cert, false),
        )
        .unwrap();

        // Another CA: refused even without the name check.
        let other_dir = dir.path().join("other");
        std::fs::create_dir(&other_dir).unwrap();
        let other = nerve_tls::testing::TestPki::generate(&other_dir);
        let error = error_of(KafkaClient::connect(
            &good.to_string(),
            timeout,
            &tls_settings(&other.ca_cert, false),
        ));
        assert!(error.contains("TLS handshake"), "{error}");
    }
}
