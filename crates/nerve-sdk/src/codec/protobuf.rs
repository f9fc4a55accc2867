//! Protobuf in the registry's wire format; see [`ProtobufRegistryCodec`].

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use prost::Message as _;
use prost_reflect::{
    DeserializeOptions, DynamicMessage, FileDescriptor, MessageDescriptor, SerializeOptions,
};
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use super::{framed, split_framed, value_subject, Codec, CodecError};
use crate::registry::RegistryClient;
use crate::Event;

/// The name the schema's own file is compiled under; the broker's registry and Confluent's clients name it
/// so too.
const MAIN_FILE: &str = "default.proto";

/// Protobuf in the registry wire format, with the event type's [`Event::protobuf_schema`] registered as a
/// `PROTOBUF` schema under `<topic>-value` (see the [codec docs](super)).
///
/// After the 5-byte header comes the path to the message within its `.proto` file, Confluent's message
/// indexes: a zigzag varint count, then that many zigzag varint indexes (into the file's top-level
/// messages, then into each one's nested messages). The first top-level message, `[0]`, is written as the
/// single byte `0` (a count of 0). The Protobuf message follows.
///
/// Events are not generated Protobuf types but serde types: encoding maps the event's serde shape onto the
/// message with Protobuf's JSON mapping (proto or JSON field names, 64-bit integers as numbers or strings,
/// enums by name), and decoding maps the message back with the proto field names and every field present,
/// defaults included, so a serde struct whose fields are all required reads a message that left some at
/// their defaults. Fields with presence (messages, proto3 `optional`) are left out when unset: their serde
/// fields are `Option`s. A `bytes` field is base64 text in that mapping: the serde field must read and
/// write it so.
///
/// Compiled schemas are cached per event type and per writer id. Clones share the caches.
#[derive(Debug, Clone)]
pub struct ProtobufRegistryCodec {
    registry: RegistryClient,
    own: Arc<Mutex<HashMap<TypeId, Arc<OwnMessage>>>>,
    /// Writers' compiled files by registry id.
    writers: Arc<Mutex<HashMap<u32, FileDescriptor>>>,
}

#[derive(Debug)]
struct OwnMessage {
    proto: &'static str,
    message: MessageDescriptor,
    /// The message's indexes, encoded.
    indexes: Vec<u8>,
}

impl ProtobufRegistryCodec {
    pub fn new(registry: RegistryClient) -> ProtobufRegistryCodec {
        ProtobufRegistryCodec {
            registry,
            own: Arc::default(),
            writers: Arc::default(),
        }
    }

    pub fn registry(&self) -> &RegistryClient {
        &self.registry
    }

    /// `E`'s own message, compiled once.
    fn own_message<E: Event>(&self) -> Result<Arc<OwnMessage>, CodecError> {
        let key = TypeId::of::<E>();
        if let Some(own) = lock(&self.own).get(&key) {
            return Ok(Arc::clone(own));
        }
        let schema = E::protobuf_schema().ok_or(CodecError::NoSchema {
            event_type: E::NAME,
            method: "protobuf_schema",
        })?;
        let invalid = |reason: String| CodecError::InvalidEventSchema {
            event_type: E::NAME,
            schema_type: "PROTOBUF",
            reason,
        };
        let file = compile(schema.proto).map_err(invalid)?;
        let message = file
            .parent_pool()
            .get_message_by_name(schema.message)
            .filter(|m| m.parent_file() == file)
            .ok_or_else(|| {
                invalid(format!(
                    "the file declares no message {} (the full name, package included)",
                    schema.message
                ))
            })?;
        let mut indexes = Vec::new();
        write_message_indexes(&message_indexes(&message), &mut indexes);
        let own = Arc::new(OwnMessage {
            proto: schema.proto,
            message,
            indexes,
        });
        lock(&self.own).insert(key, Arc::clone(&own));
        Ok(own)
    }

    /// The file registered with `id`, which must be a Protobuf one, compiled once.
    async fn writer_file(&self, id: u32) -> Result<FileDescriptor, CodecError> {
        if let Some(file) = lock(&self.writers).get(&id) {
            return Ok(file.clone());
        }
        let registered = self.registry.schema(id).await?;
        if registered.schema_type != "PROTOBUF" {
            return Err(CodecError::WrongSchemaType {
                id,
                schema_type: registered.schema_type,
                expected: "PROTOBUF",
            });
        }
        let file =
            compile(&registered.schema).map_err(|reason| CodecError::InvalidWriterSchema {
                id,
                schema_type: "PROTOBUF",
                reason,
            })?;
        lock(&self.writers).insert(id, file.clone());
        Ok(file)
    }
}

#[async_trait]
impl Codec for ProtobufRegistryCodec {
    async fn encode<E: Event>(&self, topic: &str, event: &E) -> Result<Vec<u8>, CodecError> {
        let own = self.own_message::<E>()?;
        let id = self
            .registry
            .register(&value_subject(topic), "PROTOBUF", own.proto)
            .await?;
        let json = serde_json::to_value(event).map_err(|source| CodecError::Serialize {
            event_type: E::NAME,
            source,
        })?;
        // Unknown fields are refused: a serde field the message lacks would otherwise vanish silently.
        let message = DynamicMessage::deserialize_with_options(
            own.message.clone(),
            json,
            &DeserializeOptions::new().deny_unknown_fields(true),
        )
        .map_err(|e| CodecError::ProtobufEncode {
            event_type: E::NAME,
            reason: e.to_string(),
        })?;
        let mut value = framed(id, own.indexes.len() + message.encoded_len());
        value.extend_from_slice(&own.indexes);
        message
            .encode(&mut value)
            .map_err(|e| CodecError::ProtobufEncode {
                event_type: E::NAME,
                reason: e.to_string(),
            })?;
        Ok(value)
    }

    async fn decode<E: Event>(&self, _topic: &str, payload: &[u8]) -> Result<E, CodecError> {
        let (id, rest) = split_framed(payload)?;
        let file = self.writer_file(id).await?;
        let decode_error = |reason: String| CodecError::ProtobufDecode {
            event_type: E::NAME,
            id,
            reason,
        };
        let (indexes, body) = read_message_indexes(rest).map_err(decode_error)?;
        let descriptor = message_at(&file, &indexes).map_err(decode_error)?;
        let message = DynamicMessage::decode(descriptor, body)
            .map_err(|e| decode_error(format!("not a valid message: {e}")))?;
        let options = SerializeOptions::new()
            .use_proto_field_name(true)
            .skip_default_fields(false)
            .stringify_64_bit_integers(false);
        let json = message
            .serialize_with_options(serde_json::value::Serializer, &options)
            .map_err(|e| decode_error(e.to_string()))?;
        serde_json::from_value(json).map_err(|source| CodecError::Deserialize {
            event_type: E::NAME,
            source,
        })
    }
}

/// Compiles one `.proto` file, which may import Google's well-known types.
fn compile(text: &str) -> Result<FileDescriptor, String> {
    let file = File::from_source(MAIN_FILE, text).map_err(|e| e.to_string())?;
    let mut resolver = ChainFileResolver::new();
    resolver.add(OneFile(file));
    resolver.add(GoogleFileResolver::new());
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler.open_file(MAIN_FILE).map_err(|e| e.to_string())?;
    compiler
        .descriptor_pool()
        .get_file_by_name(MAIN_FILE)
        .ok_or_else(|| "the compiled file is missing".to_string())
}

struct OneFile(File);

impl FileResolver for OneFile {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == MAIN_FILE {
            Ok(self.0.clone())
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// Where `message` is in its file: its index among the top-level messages, then among each enclosing
/// message's nested ones.
fn message_indexes(message: &MessageDescriptor) -> Vec<usize> {
    let mut indexes = Vec::new();
    let mut current = message.clone();
    loop {
        match current.parent_message() {
            Some(parent) => {
                indexes.push(position(parent.child_messages(), &current));
                current = parent;
            }
            None => {
                indexes.push(position(current.parent_file().messages(), &current));
                break;
            }
        }
    }
    indexes.reverse();
    indexes
}

fn position(
    mut siblings: impl Iterator<Item = MessageDescriptor>,
    message: &MessageDescriptor,
) -> usize {
    // A message is always among its parent's children, so the fallback is never taken.
    siblings.position(|m| m == *message).unwrap_or(0)
}

/// The message `indexes` names in `file`.
fn message_at(file: &FileDescriptor, indexes: &[usize]) -> Result<MessageDescriptor, String> {
    let Some((&first, rest)) = indexes.split_first() else {
        return Err("no message index".into());
    };
    let mut message = file.messages().nth(first).ok_or_else(|| {
        format!(
            "message index {first} out of range: the schema has {} top-level message(s)",
            file.messages().len()
        )
    })?;
    for &index in rest {
        let next = message.child_messages().nth(index).ok_or_else(|| {
            format!(
                "message index {index} out of range: {} has {} nested message(s)",
                message.full_name(),
                message.child_messages().len()
            )
        })?;
        message = next;
    }
    Ok(message)
}

/// Appends Confluent's message indexes for `indexes`: `[0]` as the single byte `0`, anything else as a
/// zigzag varint count and zigzag varint indexes.
fn write_message_indexes(indexes: &[usize], out: &mut Vec<u8>) {
    if indexes == [0] {
        out.push(0);
        return;
    }
    write_zigzag(indexes.len(), out);
    for &index in indexes {
        write_zigzag(index, out);
    }
}

/// Reads Confluent's message indexes from the start of `payload`; returns them and the message bytes
/// after them. A count of 0 means `[0]`.
fn read_message_indexes(payload: &[u8]) -> Result<(Vec<usize>, &[u8]), String> {
    let mut rest = payload;
    let count = read_zigzag(&mut rest).map_err(|e| format!("message index count: {e}"))?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    // Each index takes at least a byte: a count beyond the bytes left is garbage, not a reason to allocate.
    let count = usize::try_from(count)
        .ok()
        .filter(|&c| c <= rest.len())
        .ok_or_else(|| format!("message index count {count} is invalid"))?;
    let mut indexes = Vec::with_capacity(count);
    for i in 0..count {
        let index = read_zigzag(&mut rest).map_err(|e| format!("message index {i}: {e}"))?;
        let index =
            usize::try_from(index).map_err(|_| format!("message index {index} is negative"))?;
        indexes.push(index);
    }
    Ok((indexes, rest))
}

fn write_zigzag(n: usize, out: &mut Vec<u8>) {
    // Indexes are small and non-negative: zigzag of n >= 0 is 2n.
    let n = u64::try_from(n).unwrap_or(u64::MAX >> 1);
    prost::encoding::encode_varint(n << 1, out);
}

fn read_zigzag(buf: &mut &[u8]) -> Result<i64, String> {
    let raw = prost::encoding::decode_varint(buf).map_err(|e| e.to_string())?;
    // The low bit is the sign.
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Each cache update is one insert: whatever panicked while holding the lock left the map whole.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOP: &str = r#"
        syntax = "proto3";
        package shop;
        message Order {
            string id = 1;
            message Line { string sku = 1; }
            message Discount { string code = 1; }
        }
        message Refund { string order_id = 1; }
    "#;

    #[test]
    fn the_first_message_is_the_single_byte_zero() {
        let mut out = Vec::new();
        write_message_indexes(&[0], &mut out);
        assert_eq!(out, [0]);
        let (indexes, rest) = read_message_indexes(&[0, 0x0a]).expect("indexes");
        assert_eq!((indexes, rest), (vec![0], &[0x0a][..]));
    }

    #[test]
    fn nested_indexes_are_a_zigzag_count_then_zigzag_indexes() {
        let mut out = Vec::new();
        write_message_indexes(&[1, 0], &mut out);
        assert_eq!(out, [4, 2, 0], "count 2, then 1 and 0, zigzagged");
        out.push(0x0a);
        let (indexes, rest) = read_message_indexes(&out).expect("indexes");
        assert_eq!((indexes, rest), (vec![1, 0], &[0x0a][..]));

        // Past 63, a zigzagged index takes two varint bytes.
        let mut out = Vec::new();
        write_message_indexes(&[0, 64], &mut out);
        assert_eq!(out, [4, 0, 0x80, 0x01]);
        assert_eq!(read_message_indexes(&out).expect("indexes").0, [0, 64]);
    }

    #[test]
    fn garbage_indexes_are_refused() {
        assert!(read_message_indexes(&[]).is_err(), "no count");
        assert!(read_message_indexes(&[0x80]).is_err(), "a cut varint");
        assert!(
            read_message_indexes(&[200, 1]).is_err(),
            "count beyond the bytes"
        );
        assert!(read_message_indexes(&[2, 1]).is_err(), "a negative index");
        assert!(read_message_indexes(&[1]).is_err(), "a negative count");
    }

    #[test]
    fn messages_are_found_by_their_indexes_and_back() {
        let file = compile(SHOP).expect("compiles");
        for (name, indexes) in [
            ("shop.Order", vec![0]),
            ("shop.Order.Line", vec![0, 0]),
            ("shop.Order.Discount", vec![0, 1]),
            ("shop.Refund", vec![1]),
        ] {
            let message = file
                .parent_pool()
                .get_message_by_name(name)
                .expect("declared");
            assert_eq!(message_indexes(&message), indexes, "{name}");
            assert_eq!(message_at(&file, &indexes).expect("found"), message);
        }
        assert!(message_at(&file, &[2]).is_err());
        assert!(message_at(&file, &[0, 2]).is_err());
        assert!(message_at(&file, &[]).is_err());
    }

    #[test]
    fn well_known_imports_compile_and_bad_text_does_not() {
        let with_import = r#"
            syntax = "proto3";
            import "google/protobuf/timestamp.proto";
            message At { google.protobuf.Timestamp at = 1; }
        "#;
        assert!(compile(with_import).is_ok());
        assert!(compile("message {").is_err());
        assert!(compile(r#"syntax = "proto3"; import "other.proto";"#).is_err());
    }
}

#[cfg(test)]
mod event_schema_tests {
    use serde::{Deserialize, Serialize};

    use super::*;
    use crate::ProtobufSchema;

    #[derive(Serialize, Deserialize)]
    struct Misnamed {
        id: String,
    }

    impl Event for Misnamed {
        const NAME: &'static str = "test.Misnamed";

        fn key(&self) -> Option<String> {
            None
        }

        fn protobuf_schema() -> Option<ProtobufSchema> {
            Some(ProtobufSchema {
                proto: r#"syntax = "proto3"; package test; message Named { string id = 1; }"#,
                // Without its package: not the full name.
                message: "Named",
            })
        }
    }

    #[tokio::test]
    async fn a_message_the_file_does_not_declare_is_refused_before_registering() {
        // A registry that is never asked: the failure comes before any request.
        let codec =
            ProtobufRegistryCodec::new(RegistryClient::new("http://127.0.0.1:9").expect("a URL"));
        let error = codec
            .encode("t", &Misnamed { id: "a".into() })
            .await
            .expect_err("no such message");
        assert!(
            matches!(
                error,
                CodecError::InvalidEventSchema {
                    event_type: "test.Misnamed",
                    ..
                }
            ),
            "{error}"
        );
        assert!(error.to_string().contains("no message Named"), "{error}");
        assert_eq!(codec.registry().requests_sent(), 0);
    }
}
