//! Confluent's Protobuf compatibility rules: the differences between a writer ("original") and a reader
//! ("update") schema, each of a type Confluent names and classifies as compatible or not.
//!
//! This follows Confluent's `SchemaDiff`, `MessageSchemaDiff`, `OneOfDiff`, `EnumSchemaDiff` and
//! `FieldSchemaDiff`, working on compiled descriptors instead of parsed text. Messages and enums are matched
//! by name within their scope, fields by number. Moving a message (including away from index 0) is
//! compatible there, because the message indexes in a payload are read against the writer's own schema.
//! Map entry types are compared as the `map<K, V>` fields that declare them. Differences are listed in a
//! fixed order (names and numbers sorted), where Confluent's order follows hash maps.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;

use prost_reflect::{
    EnumDescriptor, FieldDescriptor, FileDescriptor, Kind as FieldKind, MessageDescriptor, Syntax,
};
use prost_types::field_descriptor_proto::Label as ProtoLabel;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DifferenceType {
    PackageChanged,
    MessageAdded,
    MessageRemoved,
    MessageMoved,
    EnumAdded,
    EnumRemoved,
    EnumConstAdded,
    EnumConstChanged,
    EnumConstRemoved,
    FieldAdded,
    FieldRemoved,
    FieldNameChanged,
    FieldKindChanged,
    FieldScalarKindChanged,
    FieldNamedTypeChanged,
    FieldNumericLabelChanged,
    FieldStringOrBytesLabelChanged,
    RequiredFieldAdded,
    RequiredFieldRemoved,
    OneofAdded,
    OneofRemoved,
    OneofFieldAdded,
    OneofFieldRemoved,
    MultipleFieldsMovedToOneof,
    FieldMovedToExistingOneof,
}

impl DifferenceType {
    fn name(self) -> &'static str {
        use DifferenceType::*;
        match self {
            PackageChanged => "PACKAGE_CHANGED",
            MessageAdded => "MESSAGE_ADDED",
            MessageRemoved => "MESSAGE_REMOVED",
            MessageMoved => "MESSAGE_MOVED",
            EnumAdded => "ENUM_ADDED",
            EnumRemoved => "ENUM_REMOVED",
            EnumConstAdded => "ENUM_CONST_ADDED",
            EnumConstChanged => "ENUM_CONST_CHANGED",
            EnumConstRemoved => "ENUM_CONST_REMOVED",
            FieldAdded => "FIELD_ADDED",
            FieldRemoved => "FIELD_REMOVED",
            FieldNameChanged => "FIELD_NAME_CHANGED",
            FieldKindChanged => "FIELD_KIND_CHANGED",
            FieldScalarKindChanged => "FIELD_SCALAR_KIND_CHANGED",
            FieldNamedTypeChanged => "FIELD_NAMED_TYPE_CHANGED",
            FieldNumericLabelChanged => "FIELD_NUMERIC_LABEL_CHANGED",
            FieldStringOrBytesLabelChanged => "FIELD_STRING_OR_BYTES_LABEL_CHANGED",
            RequiredFieldAdded => "REQUIRED_FIELD_ADDED",
            RequiredFieldRemoved => "REQUIRED_FIELD_REMOVED",
            OneofAdded => "ONEOF_ADDED",
            OneofRemoved => "ONEOF_REMOVED",
            OneofFieldAdded => "ONEOF_FIELD_ADDED",
            OneofFieldRemoved => "ONEOF_FIELD_REMOVED",
            MultipleFieldsMovedToOneof => "MULTIPLE_FIELDS_MOVED_TO_ONEOF",
            FieldMovedToExistingOneof => "FIELD_MOVED_TO_EXISTING_ONEOF",
        }
    }

    /// Confluent's `SchemaDiff.COMPATIBLE_CHANGES`; a package change has been incompatible since
    /// schema-registry#3004.
    pub(super) fn compatible(self) -> bool {
        use DifferenceType::*;
        matches!(
            self,
            MessageAdded
                | MessageMoved
                | EnumAdded
                | EnumRemoved
                | EnumConstAdded
                | EnumConstChanged
                | EnumConstRemoved
                | FieldAdded
                | FieldRemoved
                | FieldNameChanged
                | FieldStringOrBytesLabelChanged
                | OneofAdded
                | OneofRemoved
                | OneofFieldAdded
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Difference {
    pub(super) kind: DifferenceType,
    /// Confluent's path: `#/` then message names, oneof names and field or enum value numbers.
    pub(super) path: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.path)
    }
}

/// The differences from `original` (the writer) to `update` (the reader).
pub(super) fn compare(original: &FileDescriptor, update: &FileDescriptor) -> Vec<Difference> {
    let mut ctx = Context {
        original_file: original.name().to_owned(),
        update_file: update.name().to_owned(),
        ..Context::default()
    };
    if original.package_name() != update.package_name() {
        ctx.add(DifferenceType::PackageChanged);
    }
    ctx.compare_types(
        original.messages().collect(),
        original.enums().collect(),
        update.messages().collect(),
        update.enums().collect(),
    );
    ctx.diffs
}

#[derive(Default)]
struct Context {
    /// The names of the files being compared, to tell their own types from imported ones.
    original_file: String,
    update_file: String,
    path: Vec<String>,
    /// Original messages being compared further up: a recursive type is compared once.
    in_progress: HashSet<String>,
    diffs: Vec<Difference>,
}

/// A field's label as Confluent's parser sees it: absent for proto3 singular fields and oneof members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Optional,
    Required,
    Repeated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Scalar,
    Map,
    Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScalarKind {
    GeneralNumber,
    SignedNumber,
    StringOrBytes,
    Fixed32,
    Fixed64,
    Float,
    Double,
}

impl Context {
    fn add(&mut self, kind: DifferenceType) {
        self.diffs.push(Difference {
            kind,
            path: format!("#/{}", self.path.join("/")),
        });
    }

    fn at<R>(&mut self, segment: impl ToString, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(segment.to_string());
        let result = f(self);
        self.path.pop();
        result
    }

    fn compare_types(
        &mut self,
        original_messages: Vec<MessageDescriptor>,
        original_enums: Vec<EnumDescriptor>,
        update_messages: Vec<MessageDescriptor>,
        update_enums: Vec<EnumDescriptor>,
    ) {
        let index =
            |messages: &[MessageDescriptor]| -> BTreeMap<String, (usize, MessageDescriptor)> {
                messages
                    .iter()
                    .filter(|m| !m.is_map_entry())
                    .enumerate()
                    .map(|(i, m)| (m.name().to_owned(), (i, m.clone())))
                    .collect()
            };
        let originals = index(&original_messages);
        let updates = index(&update_messages);
        let names: BTreeSet<&String> = originals.keys().chain(updates.keys()).collect();
        for name in names {
            self.at(name, |ctx| match (originals.get(name), updates.get(name)) {
                (Some(_), None) => ctx.add(DifferenceType::MessageRemoved),
                (None, Some(_)) => ctx.add(DifferenceType::MessageAdded),
                (Some((oi, o)), Some((ui, u))) => {
                    ctx.compare_messages(o, u);
                    if oi != ui {
                        ctx.add(DifferenceType::MessageMoved);
                    }
                }
                (None, None) => {}
            });
        }

        let enums = |list: &[EnumDescriptor]| -> BTreeMap<String, EnumDescriptor> {
            list.iter()
                .map(|e| (e.name().to_owned(), e.clone()))
                .collect()
        };
        let originals = enums(&original_enums);
        let updates = enums(&update_enums);
        let names: BTreeSet<&String> = originals.keys().chain(updates.keys()).collect();
        for name in names {
            self.at(name, |ctx| match (originals.get(name), updates.get(name)) {
                (Some(_), None) => ctx.add(DifferenceType::EnumRemoved),
                (None, Some(_)) => ctx.add(DifferenceType::EnumAdded),
                (Some(o), Some(u)) => ctx.compare_enums(o, u),
                (None, None) => {}
            });
        }
    }

    fn compare_enums(&mut self, original: &EnumDescriptor, update: &EnumDescriptor) {
        // With aliases the last name for a number wins, as in Confluent's map.
        let by_number = |e: &EnumDescriptor| -> BTreeMap<i32, String> {
            e.values()
                .map(|v| (v.number(), v.name().to_owned()))
                .collect()
        };
        let originals = by_number(original);
        let updates = by_number(update);
        let numbers: BTreeSet<i32> = originals.keys().chain(updates.keys()).copied().collect();
        for number in numbers {
            self.at(number, |ctx| {
                match (originals.get(&number), updates.get(&number)) {
                    (Some(_), None) => ctx.add(DifferenceType::EnumConstRemoved),
                    (None, Some(_)) => ctx.add(DifferenceType::EnumConstAdded),
                    (Some(o), Some(u)) if o != u => ctx.add(DifferenceType::EnumConstChanged),
                    _ => {}
                }
            });
        }
    }

    fn compare_messages(&mut self, original: &MessageDescriptor, update: &MessageDescriptor) {
        if self.in_progress.insert(original.full_name().to_owned()) {
            self.compare_fields(original, update);
            self.in_progress.remove(original.full_name());
        }
        self.compare_types(
            original.child_messages().collect(),
            original.child_enums().collect(),
            update.child_messages().collect(),
            update.child_enums().collect(),
        );
    }

    fn compare_fields(&mut self, original: &MessageDescriptor, update: &MessageDescriptor) {
        let mut original_by_number = top_level_fields(original);
        let update_by_number = top_level_fields(update);
        let original_oneofs = oneofs(original);
        let update_oneofs = oneofs(update);
        let original_oneof_of: BTreeMap<u32, &String> = original_oneofs
            .iter()
            .flat_map(|(name, fields)| fields.keys().map(move |n| (*n, name)))
            .collect();
        let update_oneof_of: BTreeMap<u32, &String> = update_oneofs
            .iter()
            .flat_map(|(name, fields)| fields.keys().map(move |n| (*n, name)))
            .collect();
        let mut original_all = original_by_number.clone();
        original_all.extend(original_oneofs.values().flat_map(|f| f.clone()));
        let mut update_all = update_by_number.clone();
        update_all.extend(update_oneofs.values().flat_map(|f| f.clone()));

        // A field that moves into a oneof is not removed; more than one moving into the same oneof is.
        for (name, fields) in &update_oneofs {
            self.at(name, |ctx| {
                let mut moved = 0;
                let mut existing = 0;
                for number in fields.keys() {
                    if original_by_number.remove(number).is_some() {
                        moved += 1;
                    } else if original_oneof_of.contains_key(number) {
                        existing += 1;
                    }
                }
                if moved > 1 {
                    ctx.add(DifferenceType::MultipleFieldsMovedToOneof);
                } else if moved == 1 && existing > 0 {
                    ctx.add(DifferenceType::FieldMovedToExistingOneof);
                }
            });
        }

        let names: BTreeSet<&String> = original_oneofs.keys().chain(update_oneofs.keys()).collect();
        for name in names {
            self.at(name, |ctx| {
                match (original_oneofs.get(name), update_oneofs.get(name)) {
                    (Some(_), None) => ctx.add(DifferenceType::OneofRemoved),
                    (None, Some(_)) => ctx.add(DifferenceType::OneofAdded),
                    (Some(o), Some(u)) => {
                        let numbers: BTreeSet<u32> = o.keys().chain(u.keys()).copied().collect();
                        for number in numbers {
                            ctx.at(number, |ctx| match (o.get(&number), u.get(&number)) {
                                // A field that left the oneof but is still in the message was moved.
                                (Some(_), None) if !update_all.contains_key(&number) => {
                                    ctx.add(DifferenceType::OneofFieldRemoved)
                                }
                                (None, Some(_)) => ctx.add(DifferenceType::OneofFieldAdded),
                                (Some(of), Some(uf)) => ctx.compare_field(of, uf),
                                _ => {}
                            });
                        }
                    }
                    (None, None) => {}
                }
            });
        }

        let numbers: BTreeSet<u32> = original_by_number
            .keys()
            .chain(update_by_number.keys())
            .copied()
            .collect();
        for number in numbers {
            self.at(number, |ctx| {
                match (
                    original_by_number.get(&number),
                    update_by_number.get(&number),
                ) {
                    (Some(o), None) => ctx.add(if label(o) == Some(Label::Required) {
                        DifferenceType::RequiredFieldRemoved
                    } else {
                        DifferenceType::FieldRemoved
                    }),
                    (None, Some(u)) => ctx.add(if label(u) == Some(Label::Required) {
                        DifferenceType::RequiredFieldAdded
                    } else {
                        DifferenceType::FieldAdded
                    }),
                    (Some(o), Some(u)) => ctx.compare_field(o, u),
                    (None, None) => {}
                }
            });
        }

        // Fields whose oneof changed were not compared above.
        for (number, o) in &original_all {
            let Some(u) = update_all.get(number) else {
                continue;
            };
            let (oo, uo) = (original_oneof_of.get(number), update_oneof_of.get(number));
            let compared = match (oo, uo) {
                (None, None) => true,
                (Some(a), Some(b)) => a == b,
                _ => false,
            };
            if !compared {
                self.at(number, |ctx| ctx.compare_field(o, u));
            }
        }
    }

    fn compare_field(&mut self, original: &FieldDescriptor, update: &FieldDescriptor) {
        if original.name() != update.name() {
            self.add(DifferenceType::FieldNameChanged);
        }
        self.compare_labels_and_types(
            label(original),
            label(update),
            &TypeRef::of(original),
            &TypeRef::of(update),
        );
    }

    fn compare_labels_and_types(
        &mut self,
        original_label: Option<Label>,
        update_label: Option<Label>,
        original: &TypeRef,
        update: &TypeRef,
    ) {
        let original_kind = original.kind();
        if original_kind != update.kind() {
            self.add(DifferenceType::FieldKindChanged);
            return;
        }
        match (original, update) {
            (TypeRef::Scalar(_) | TypeRef::Enum, TypeRef::Scalar(_) | TypeRef::Enum) => {
                let (ok, uk) = (original.scalar_kind(), update.scalar_kind());
                if ok != uk {
                    self.add(DifferenceType::FieldScalarKindChanged);
                } else if let (Some(ol), Some(ul)) = (original_label, update_label) {
                    if ol != ul {
                        self.add(if ok == Some(ScalarKind::StringOrBytes) {
                            DifferenceType::FieldStringOrBytesLabelChanged
                        } else {
                            DifferenceType::FieldNumericLabelChanged
                        });
                    }
                }
            }
            (TypeRef::Message(o), TypeRef::Message(u)) => self.compare_message_types(o, u),
            (TypeRef::Map(ok, ov), TypeRef::Map(uk, uv)) => {
                self.compare_labels_and_types(None, None, ok, uk);
                self.compare_labels_and_types(None, None, ov, uv);
            }
            _ => {}
        }
    }

    /// Message-typed fields: the type's name within its package must stay; a type from another file is
    /// compared in full (Confluent skips this when both come from the same subject version, which a file
    /// with identical content stands for here).
    fn compare_message_types(&mut self, original: &MessageDescriptor, update: &MessageDescriptor) {
        let local = |m: &MessageDescriptor| -> String {
            let package = m.package_name();
            match m.full_name().strip_prefix(package) {
                Some(rest) if !package.is_empty() => rest.trim_start_matches('.').to_owned(),
                _ => m.full_name().to_owned(),
            }
        };
        let original_local = local(original);
        if original_local != local(update) {
            self.add(DifferenceType::FieldNamedTypeChanged);
            return;
        }
        let (of, uf) = (original.parent_file(), update.parent_file());
        let original_is_local = of.name() == self.original_file;
        let update_is_local = uf.name() == self.update_file;
        let both_local = original_is_local && update_is_local;
        let same_reference = !original_is_local
            && !update_is_local
            && of.name() == uf.name()
            && of.file_descriptor_proto() == uf.file_descriptor_proto();
        if both_local || same_reference {
            return;
        }
        let mut sub = Context {
            original_file: self.original_file.clone(),
            update_file: self.update_file.clone(),
            path: original_local.split('.').map(str::to_owned).collect(),
            in_progress: self.in_progress.clone(),
            diffs: Vec::new(),
        };
        sub.compare_messages(original, update);
        let compatible = sub.diffs.iter().all(|d| d.kind.compatible());
        self.diffs.append(&mut sub.diffs);
        if !compatible {
            self.add(DifferenceType::FieldNamedTypeChanged);
        }
    }
}

/// A field's type as the rules see it.
enum TypeRef {
    Scalar(prost_types::field_descriptor_proto::Type),
    Enum,
    Message(MessageDescriptor),
    Map(Box<TypeRef>, Box<TypeRef>),
}

impl TypeRef {
    fn of(field: &FieldDescriptor) -> TypeRef {
        match field.kind() {
            FieldKind::Message(m) if field.is_map() => TypeRef::Map(
                Box::new(TypeRef::of(&m.map_entry_key_field())),
                Box::new(TypeRef::of(&m.map_entry_value_field())),
            ),
            FieldKind::Message(m) => TypeRef::Message(m),
            FieldKind::Enum(_) => TypeRef::Enum,
            _ => TypeRef::Scalar(field.field_descriptor_proto().r#type()),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            TypeRef::Scalar(_) | TypeRef::Enum => Kind::Scalar,
            TypeRef::Message(_) => Kind::Message,
            TypeRef::Map(..) => Kind::Map,
        }
    }

    /// Confluent's groups of scalar types that read each other's encoding.
    fn scalar_kind(&self) -> Option<ScalarKind> {
        use prost_types::field_descriptor_proto::Type::*;
        match self {
            TypeRef::Enum => Some(ScalarKind::GeneralNumber),
            TypeRef::Scalar(t) => match t {
                Int32 | Int64 | Uint32 | Uint64 | Bool => Some(ScalarKind::GeneralNumber),
                Sint32 | Sint64 => Some(ScalarKind::SignedNumber),
                String | Bytes => Some(ScalarKind::StringOrBytes),
                Fixed32 | Sfixed32 => Some(ScalarKind::Fixed32),
                Fixed64 | Sfixed64 => Some(ScalarKind::Fixed64),
                Float => Some(ScalarKind::Float),
                Double => Some(ScalarKind::Double),
                Group | Message | Enum => None,
            },
            _ => None,
        }
    }
}

fn label(field: &FieldDescriptor) -> Option<Label> {
    if field.is_map() || in_real_oneof(field) {
        return None;
    }
    let proto = field.field_descriptor_proto();
    match proto.label() {
        ProtoLabel::Repeated => Some(Label::Repeated),
        ProtoLabel::Required => Some(Label::Required),
        ProtoLabel::Optional => match field.parent_file().syntax() {
            Syntax::Proto3 if !proto.proto3_optional() => None,
            _ => Some(Label::Optional),
        },
    }
}

fn in_real_oneof(field: &FieldDescriptor) -> bool {
    field.containing_oneof().is_some_and(|o| !o.is_synthetic())
}

fn top_level_fields(message: &MessageDescriptor) -> BTreeMap<u32, FieldDescriptor> {
    message
        .fields()
        .filter(|f| !in_real_oneof(f))
        .map(|f| (f.number(), f))
        .collect()
}

fn oneofs(message: &MessageDescriptor) -> BTreeMap<String, BTreeMap<u32, FieldDescriptor>> {
    message
        .oneofs()
        .filter(|o| !o.is_synthetic())
        .map(|o| {
            (
                o.name().to_owned(),
                o.fields().map(|f| (f.number(), f)).collect(),
            )
        })
        .collect()
}
