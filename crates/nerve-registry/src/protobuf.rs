//! Protobuf schemas: parsing `.proto` text and serialized descriptors (imports from references), canonical
//! forms, Protobuf's wire compatibility rules, and payload validation (message indexes, then the message).

mod diff;
mod print;

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use prost::Message as _;
use prost_reflect::{DynamicMessage, FileDescriptor, MessageDescriptor};
use prost_types::FileDescriptorProto;
use protox::file::{ChainFileResolver, File, FileResolver, GoogleFileResolver};

use crate::schema::{Dependency, InvalidSchema, ParsedSchema, SchemaType};

/// The name the schema being parsed gets among its imports; Confluent's clients call it `default` too.
const MAIN_FILE: &str = "default.proto";

pub(crate) fn parse(
    text: &str,
    dependencies: &[Dependency],
) -> Result<Arc<dyn ParsedSchema>, InvalidSchema> {
    ProtobufSchema::parse(text, dependencies).map(|s| Arc::new(s) as Arc<dyn ParsedSchema>)
}

/// A compiled Protobuf file with everything it imports.
#[derive(Debug)]
pub(crate) struct ProtobufSchema {
    /// The main file; it keeps the pool of everything it imports alive.
    file: FileDescriptor,
    /// The compiled file without source info: what `format=serialized` returns and what is printed.
    proto: FileDescriptorProto,
    canonical: String,
    normalized: String,
}

impl ProtobufSchema {
    fn parse(text: &str, dependencies: &[Dependency]) -> Result<Self, InvalidSchema> {
        let main_name = main_file_name(dependencies);
        let mut files = HashMap::new();
        for dep in dependencies {
            let file = open(&dep.name, &dep.schema)
                .map_err(|e| InvalidSchema(format!("reference '{}': {e}", dep.name)))?;
            files.insert(dep.name.clone(), file);
        }
        files.insert(main_name.clone(), open(&main_name, text)?);

        let mut resolver = ChainFileResolver::new();
        // Given references come first: a client that sends a well-known file as a reference means that file.
        resolver.add(MemoryResolver { files });
        resolver.add(GoogleFileResolver::new());
        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true);
        compiler
            .open_file(&main_name)
            .map_err(|e| InvalidSchema(describe(&e)))?;
        let pool = compiler.descriptor_pool();
        let file = pool
            .get_file_by_name(&main_name)
            .ok_or_else(|| InvalidSchema("the compiled schema is missing".into()))?;
        let mut proto = file.file_descriptor_proto().clone();
        proto.source_code_info = None;
        let canonical = print::print(&proto, print::Style::Canonical);
        let normalized = print::print(&proto, print::Style::Normalized);
        Ok(ProtobufSchema {
            file,
            proto,
            canonical,
            normalized,
        })
    }

    /// The message that `indexes` names: indexes into the file's top-level messages, then nested ones.
    fn message_at(&self, indexes: &[usize]) -> Result<MessageDescriptor, String> {
        let Some((&first, rest)) = indexes.split_first() else {
            return Err("no message index".into());
        };
        let mut message = self.file.messages().nth(first).ok_or_else(|| {
            format!(
                "message index {first} out of range: the schema has {} top-level message(s)",
                self.file.messages().len()
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
}

/// `default.proto`, unless a reference already has that name.
fn main_file_name(dependencies: &[Dependency]) -> String {
    let mut name = MAIN_FILE.to_owned();
    let mut n = 0;
    while dependencies.iter().any(|d| d.name == name) {
        n += 1;
        name = format!("default{n}.proto");
    }
    name
}

/// Confluent accepts both `.proto` text and a base64 serialized `FileDescriptorProto`; base64 never contains
/// the braces and semicolons every non-empty `.proto` file has, so text with only base64 characters is taken
/// as a descriptor.
fn open(name: &str, text: &str) -> Result<File, InvalidSchema> {
    let trimmed = text.trim();
    let looks_base64 = !trimmed.is_empty()
        && trimmed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='));
    if looks_base64 {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(trimmed)
            .map_err(|e| {
                InvalidSchema(format!("not a .proto file nor a base64 descriptor: {e}"))
            })?;
        let mut proto = FileDescriptorProto::decode(bytes.as_slice())
            .map_err(|e| InvalidSchema(format!("not a serialized FileDescriptorProto: {e}")))?;
        // Imports name files by the reference's name, whatever name the client compiled it under.
        proto.name = Some(name.to_owned());
        return Ok(File::from_file_descriptor_proto(proto));
    }
    File::from_source(name, text).map_err(|e| InvalidSchema(describe(&e)))
}

/// protox's message, with the file it is about when that is not the schema itself.
fn describe(error: &protox::Error) -> String {
    let message = error.to_string();
    match error.file() {
        Some(file) if file != MAIN_FILE && !message.contains(file) => format!("{file}: {message}"),
        _ => message,
    }
}

struct MemoryResolver {
    files: HashMap<String, File>,
}

impl FileResolver for MemoryResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        self.files
            .get(name)
            .cloned()
            .ok_or_else(|| protox::Error::file_not_found(name))
    }
}

impl ParsedSchema for ProtobufSchema {
    fn schema_type(&self) -> SchemaType {
        SchemaType::Protobuf
    }

    fn canonical(&self) -> String {
        self.canonical.clone()
    }

    fn normalized(&self) -> String {
        self.normalized.clone()
    }

    fn read_problems(&self, writer: &dyn ParsedSchema) -> Vec<String> {
        let Some(writer) = writer.as_any().downcast_ref::<ProtobufSchema>() else {
            return vec![format!(
                "the writer schema is {}, not PROTOBUF",
                writer.schema_type().name()
            )];
        };
        diff::compare(&writer.file, &self.file)
            .into_iter()
            .filter(|d| !d.kind.compatible())
            .map(|d| d.to_string())
            .collect()
    }

    fn validate_payload(&self, payload: &[u8]) -> Result<(), String> {
        let (indexes, rest) = read_message_indexes(payload)?;
        let message = self.message_at(&indexes)?;
        DynamicMessage::decode(message.clone(), rest)
            .map(|_| ())
            .map_err(|e| format!("not a valid {} message: {e}", message.full_name()))
    }

    fn formatted(&self, format: &str) -> Option<String> {
        (format == "serialized")
            .then(|| base64::engine::general_purpose::STANDARD.encode(self.proto.encode_to_vec()))
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Reads Confluent's message indexes: a zigzag varint count, then that many zigzag varint indexes; a count of
/// 0 means `[0]`, the first message.
fn read_message_indexes(payload: &[u8]) -> Result<(Vec<usize>, &[u8]), String> {
    let mut rest = payload;
    let count = read_zigzag(&mut rest).map_err(|e| format!("message index count: {e}"))?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    // Each index takes at least one byte, so a count beyond what is left cannot be honest.
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

fn read_zigzag(buf: &mut &[u8]) -> Result<i64, String> {
    let raw = prost::encoding::decode_varint(buf).map_err(|e| e.to_string())?;
    // Zigzag: the low bit is the sign.
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}
