//! A client for a Confluent-compatible schema registry (`nerve serve`'s, Confluent's, Redpanda's), with
//! the caches a serializer needs: once a schema is registered or looked up, records never wait on the
//! registry for it again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{json, Value};

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A schema as the registry stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// `AVRO`, `JSON` or `PROTOBUF`.
    pub schema_type: String,
    pub schema: String,
}

/// Why the registry gave no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot reach the schema registry at {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("the schema registry answered HTTP {status} (error {code}): {message}")]
    Refused {
        status: u16,
        code: i64,
        message: String,
    },
    #[error("the schema registry sent an answer this client does not understand: {0}")]
    BadAnswer(String),
    #[error("the schema registry URL {0} is not supported: expected http://HOST:PORT (no TLS)")]
    BadUrl(String),
}

impl RegistryError {
    /// Whether asking again later may succeed: the registry is down or overloaded, rather than refusing
    /// what was asked.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } => true,
            RegistryError::Refused { status, .. } => *status >= 500,
            RegistryError::BadAnswer(_) | RegistryError::BadUrl(_) => false,
        }
    }
}

/// The client; cheap to clone, clones share the caches.
#[derive(Clone)]
pub struct RegistryClient {
    inner: Arc<Inner>,
}

struct Inner {
    base: String,
    agent: ureq::Agent,
    /// (subject, schema type, schema text) → id.
    ids: Mutex<HashMap<(String, String, String), u32>>,
    schemas: Mutex<HashMap<u32, RegisteredSchema>>,
    /// Cache misses go to the registry one at a time, so that concurrent first uses of a schema make one
    /// request, not one each.
    miss: tokio::sync::Mutex<()>,
    requests: AtomicU64,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

impl RegistryClient {
    /// A client for the registry at `url` (`http://HOST:PORT`).
    pub fn new(url: &str) -> Result<RegistryClient, RegistryError> {
        let base = url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            return Err(RegistryError::BadUrl(url.to_string()));
        }
        let agent = ureq::Agent::config_builder()
            // Error answers carry the registry's message: read, not turned into bare statuses.
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .accept(CONTENT_TYPE)
            .build()
            .into();
        Ok(RegistryClient {
            inner: Arc::new(Inner {
                base,
                agent,
                ids: Mutex::default(),
                schemas: Mutex::default(),
                miss: tokio::sync::Mutex::new(()),
                requests: AtomicU64::new(0),
            }),
        })
    }

    /// How many HTTP requests this client (and its clones) has sent: what the caches save.
    pub fn requests_sent(&self) -> u64 {
        self.inner.requests.load(Ordering::Relaxed)
    }

    /// Registers `schema` under `subject` (or finds it registered) and returns its id.
    pub async fn register(
        &self,
        subject: &str,
        schema_type: &str,
        schema: &str,
    ) -> Result<u32, RegistryError> {
        let key = (
            subject.to_string(),
            schema_type.to_string(),
            schema.to_string(),
        );
        if let Some(id) = lock(&self.inner.ids).get(&key) {
            return Ok(*id);
        }
        let _one_at_a_time = self.inner.miss.lock().await;
        if let Some(id) = lock(&self.inner.ids).get(&key) {
            return Ok(*id);
        }
        #[derive(Deserialize)]
        struct Registered {
            id: u32,
        }
        let path = format!("/subjects/{}/versions", encode(subject));
        let body = json!({"schemaType": schema_type, "schema": schema});
        let registered: Registered = self.call("POST", path, Some(body)).await?;
        lock(&self.inner.ids).insert(key, registered.id);
        lock(&self.inner.schemas).insert(
            registered.id,
            RegisteredSchema {
                schema_type: schema_type.to_string(),
                schema: schema.to_string(),
            },
        );
        Ok(registered.id)
    }

    /// The schema with `id`.
    pub async fn schema(&self, id: u32) -> Result<RegisteredSchema, RegistryError> {
        if let Some(schema) = lock(&self.inner.schemas).get(&id) {
            return Ok(schema.clone());
        }
        let _one_at_a_time = self.inner.miss.lock().await;
        if let Some(schema) = lock(&self.inner.schemas).get(&id) {
            return Ok(schema.clone());
        }
        #[derive(Deserialize)]
        struct ById {
            #[serde(rename = "schemaType")]
            schema_type: Option<String>,
            schema: String,
        }
        let found: ById = self.call("GET", format!("/schemas/ids/{id}"), None).await?;
        let schema = RegisteredSchema {
            // The registry leaves the type out for Avro, its default.
            schema_type: found.schema_type.unwrap_or_else(|| "AVRO".to_string()),
            schema: found.schema,
        };
        lock(&self.inner.schemas).insert(id, schema.clone());
        Ok(schema)
    }

    async fn call<T: serde::de::DeserializeOwned + Send + 'static>(
        &self,
        method: &'static str,
        path: String,
        body: Option<Value>,
    ) -> Result<T, RegistryError> {
        let inner = Arc::clone(&self.inner);
        inner.requests.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}{path}", inner.base);
        // ureq blocks; the blocking pool keeps that off the runtime's workers.
        tokio::task::spawn_blocking(move || inner.call_blocking(method, &url, body))
            .await
            .map_err(|e| RegistryError::Unreachable {
                url: self.inner.base.clone(),
                why: format!("the request's task failed: {e}"),
            })?
    }
}

impl Inner {
    fn call_blocking<T: serde::de::DeserializeOwned>(
        &self,
        method: &str,
        url: &str,
        body: Option<Value>,
    ) -> Result<T, RegistryError> {
        let result = match body {
            Some(body) => self
                .agent
                .post(url)
                .header("Content-Type", CONTENT_TYPE)
                .send(body.to_string()),
            None => {
                debug_assert_eq!(method, "GET");
                self.agent.get(url).call()
            }
        };
        let unreachable = |e: ureq::Error| RegistryError::Unreachable {
            url: self.base.clone(),
            why: e.to_string(),
        };
        let mut response = result.map_err(unreachable)?;
        let status = response.status();
        let text = response.body_mut().read_to_string().map_err(unreachable)?;
        if status.is_success() {
            return serde_json::from_str(&text)
                .map_err(|e| RegistryError::BadAnswer(format!("{e}: {}", excerpt(&text))));
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            error_code: i64,
            message: String,
        }
        let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
            Ok(e) => (e.error_code, e.message),
            Err(_) => (i64::from(status.as_u16()), excerpt(&text)),
        };
        tracing::debug!(method, url, %status, code, %message, "the schema registry refused");
        Err(RegistryError::Refused {
            status: status.as_u16(),
            code,
            message,
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The maps stay consistent whatever panicked while holding them: each insert is one call.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Percent-encodes all but RFC 3986's unreserved characters, for a subject in a URL path.
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

fn excerpt(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_encoded_for_paths() {
        assert_eq!(encode("orders.v1-value"), "orders.v1-value");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn only_plain_http_urls_are_accepted() {
        assert!(RegistryClient::new("http://127.0.0.1:8081/").is_ok());
        assert!(matches!(
            RegistryClient::new("https://registry"),
            Err(RegistryError::BadUrl(_))
        ));
    }
}
