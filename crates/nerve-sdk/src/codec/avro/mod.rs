//! Avro in the registry's wire format; see [`AvroRegistryCodec`].
//!
//! apache-avro is not written for hostile input, so a datum is walked first ([`bounds`]) and decoded only
//! if its lengths, counts and nesting are within what its bytes can honestly hold.

mod bounds;

use std::any::TypeId;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, Once, PoisonError};

use apache_avro::schema::{Name, ResolvedSchema};
use apache_avro::Schema;
use async_trait::async_trait;

use super::{framed, split_framed, value_subject, Codec, CodecError};
use crate::registry::RegistryClient;
use crate::Event;

/// The most apache-avro allocates for one length read from a payload (a string, bytes, or the items of an
/// array or map block). Its default, 512 MiB, lets a few garbage bytes claiming a long string reserve half
/// a gigabyte; no honest record value comes near this. apache-avro keeps the limit process-wide and takes
/// the first one set, so a process that set another before the first codec was made keeps its own.
pub const AVRO_MAX_ALLOCATION_BYTES: usize = 64 * 1024 * 1024;

/// Avro binary in the registry wire format, with the event type's [`Event::avro_schema`] registered as an
/// `AVRO` schema under `<topic>-value` (see the [codec docs](super)).
///
/// The value after the header is one Avro binary datum, without the object container file's header:
/// readers need the writer's schema, which the id names. Decoding reads with the writer's schema and then
/// resolves to the event type's own schema, when it has one (Avro's schema resolution: fields the reader
/// lacks are skipped, fields the writer lacks take the reader's defaults), so producers and consumers
/// upgrade independently as long as the registry's compatibility checks pass. The event's serde shape must
/// match the schema: `Option<T>` is a union with `null`, integers are `int` or `long`.
///
/// Parsed schemas are cached per event type and per writer id: parsing is much slower than decoding one
/// record. Clones share the caches.
#[derive(Debug, Clone)]
pub struct AvroRegistryCodec {
    registry: RegistryClient,
    /// Each event type's own schema; `None` for types without one.
    own: Arc<Mutex<HashMap<TypeId, Option<Arc<OwnSchema>>>>>,
    /// Writers' schemas by registry id.
    writers: Arc<Mutex<HashMap<u32, Arc<Writer>>>>,
}

#[derive(Debug)]
struct Writer {
    schema: Schema,
    /// The named types the schema defines, for the bounds walk; apache-avro rebuilds this per datum.
    names: HashMap<Name, Schema>,
}

#[derive(Debug)]
struct OwnSchema {
    text: String,
    parsed: Schema,
}

impl AvroRegistryCodec {
    pub fn new(registry: RegistryClient) -> AvroRegistryCodec {
        static LIMIT: Once = Once::new();
        LIMIT.call_once(|| {
            let limit = apache_avro::util::max_allocation_bytes(AVRO_MAX_ALLOCATION_BYTES);
            if limit != AVRO_MAX_ALLOCATION_BYTES {
                tracing::debug!(
                    limit,
                    "apache-avro's allocation limit was set before this codec: keeping it"
                );
            }
        });
        AvroRegistryCodec {
            registry,
            own: Arc::default(),
            writers: Arc::default(),
        }
    }

    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// `E`'s own schema, parsed once.
    fn own_schema<E: Event>(&self) -> Result<Option<Arc<OwnSchema>>, CodecError> {
        let key = TypeId::of::<E>();
        if let Some(own) = lock(&self.own).get(&key) {
            return Ok(own.clone());
        }
        let own = match E::avro_schema() {
            None => None,
            Some(text) => {
                let parsed = parse(&text).map_err(|reason| CodecError::InvalidEventSchema {
                    event_type: E::NAME,
                    schema_type: "AVRO",
                    reason,
                })?;
                Some(Arc::new(OwnSchema { text, parsed }))
            }
        };
        lock(&self.own).insert(key, own.clone());
        Ok(own)
    }

    /// The schema registered with `id`, which must be an Avro one, parsed once.
    async fn writer_schema(&self, id: u32) -> Result<Arc<Writer>, CodecError> {
        if let Some(writer) = lock(&self.writers).get(&id) {
            return Ok(Arc::clone(writer));
        }
        let registered = self.registry.schema(id).await?;
        if registered.schema_type != "AVRO" {
            return Err(CodecError::WrongSchemaType {
                id,
                schema_type: registered.schema_type,
                expected: "AVRO",
            });
        }
        let invalid = |reason: String| CodecError::InvalidWriterSchema {
            id,
            schema_type: "AVRO",
            reason,
        };
        let schema = parse(&registered.schema).map_err(invalid)?;
        let names = ResolvedSchema::try_from(&schema)
            .map_err(|e| invalid(e.to_string()))?
            .get_names()
            .iter()
            .map(|(name, named)| (name.clone(), (*named).clone()))
            .collect();
        let writer = Arc::new(Writer { schema, names });
        lock(&self.writers).insert(id, Arc::clone(&writer));
        Ok(writer)
    }
}

#[async_trait]
impl Codec for AvroRegistryCodec {
    async fn encode<E: Event>(&self, topic: &str, event: &E) -> Result<Vec<u8>, CodecError> {
        let own = self.own_schema::<E>()?.ok_or(CodecError::NoSchema {
            event_type: E::NAME,
            method: "avro_schema",
        })?;
        let id = self
            .registry
            .register(&value_subject(topic), "AVRO", &own.text)
            .await?;
        let encode_error = |e: apache_avro::Error| CodecError::AvroEncode {
            event_type: E::NAME,
            reason: e.to_string(),
        };
        // serde gives the value's shape without the schema (an `Option` is a two-branch union, a `u32`
        // an int); resolving makes it the schema's (the union's actual branches, a long) or says why not.
        let value = apache_avro::to_value(event)
            .and_then(|value| value.resolve(&own.parsed))
            .map_err(encode_error)?;
        let datum = apache_avro::to_avro_datum(&own.parsed, value).map_err(encode_error)?;
        let mut value = framed(id, datum.len());
        value.extend_from_slice(&datum);
        Ok(value)
    }

    async fn decode<E: Event>(&self, _topic: &str, payload: &[u8]) -> Result<E, CodecError> {
        let (id, mut datum) = split_framed(payload)?;
        let writer = self.writer_schema(id).await?;
        let reader = self.own_schema::<E>()?;
        let decode_error = |reason: String| CodecError::AvroDecode {
            event_type: E::NAME,
            id,
            reason,
        };
        bounds::check(&writer.schema, &writer.names, datum).map_err(decode_error)?;
        // The walk leaves apache-avro only datums it can read; should it still panic on one, that fails
        // this record, not the consumer.
        let decoded = catch_unwind(AssertUnwindSafe(|| {
            let value = apache_avro::from_avro_datum(
                &writer.schema,
                &mut datum,
                reader.as_ref().map(|r| &r.parsed),
            )
            .map_err(|e| e.to_string())?;
            apache_avro::from_value::<E>(&value).map_err(|e| e.to_string())
        }));
        match decoded {
            Ok(result) => result.map_err(decode_error),
            Err(_) => Err(decode_error("the Avro decoder panicked on it".into())),
        }
    }
}

/// Parses schema JSON, a panic in the parser (it has had some on odd names) included as an error.
fn parse(text: &str) -> Result<Schema, String> {
    match catch_unwind(|| Schema::parse_str(text)) {
        Ok(Ok(schema)) => Ok(schema),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("the Avro schema parser panicked on it".into()),
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each cache update is one insert: whatever panicked while holding the lock left the map whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Schemaless {
        id: String,
    }

    impl Event for Schemaless {
        const NAME: &'static str = "test.Schemaless";

        fn key(&self) -> Option<String> {
            None
        }
    }

    #[derive(Serialize, Deserialize)]
    struct Misdeclared {
        id: String,
    }

    impl Event for Misdeclared {
        const NAME: &'static str = "test.Misdeclared";

        fn key(&self) -> Option<String> {
            None
        }

        fn avro_schema() -> Option<String> {
            Some(r#"{"type": "record", "name": "Misdeclared", "fields": [{"name": "id"}]}"#.into())
        }
    }

    /// A client for a registry that is never asked: these failures come before any request.
    fn codec() -> AvroRegistryCodec {
        AvroRegistryCodec::new(RegistryClient::new("http://127.0.0.1:9").expect("a URL"))
    }

    #[tokio::test]
    async fn a_type_without_a_valid_schema_is_refused_before_registering() {
        let codec = codec();
        let error = codec
            .encode("t", &Schemaless { id: "a".into() })
            .await
            .expect_err("no schema");
        assert!(
            matches!(
                error,
                CodecError::NoSchema {
                    event_type: "test.Schemaless",
                    method: "avro_schema"
                }
            ),
            "{error}"
        );
        let error = codec
            .encode("t", &Misdeclared { id: "a".into() })
            .await
            .expect_err("a field without a type");
        assert!(
            matches!(
                error,
                CodecError::InvalidEventSchema {
                    event_type: "test.Misdeclared",
                    ..
                }
            ),
            "{error}"
        );
        assert!(!error.is_transient());
        assert_eq!(codec.registry().requests_sent(), 0);
    }

    #[test]
    fn the_allocation_limit_is_set_once_for_the_process() {
        let _ = codec();
        assert_eq!(
            apache_avro::util::max_allocation_bytes(usize::MAX),
            AVRO_MAX_ALLOCATION_BYTES
        );
    }
}
