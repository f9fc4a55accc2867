//! Prints a compiled `FileDescriptorProto` as `.proto` text: the canonical form the registry stores.
//!
//! The text comes from the compiled descriptor, not from what the client wrote, so a schema sent as text and
//! the same schema sent as a serialized descriptor print the same. Type names are printed fully qualified
//! (`.pkg.Type`), which always resolves to the same type when the text is parsed again, whatever nested
//! types share a short name. Options are printed in name order because a descriptor does not keep the order
//! they were written in. Custom (extension) options are not kept by the compiled descriptor and are not
//! printed.
//!
//! The normalized form additionally sorts what may be reordered without changing meaning: imports, fields
//! (and oneofs, by their lowest field number) by number, reserved ranges and names, extension ranges. Message
//! and enum value order stays: message indexes and proto3 enum defaults depend on it.

use std::fmt::Write as _;

use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::{
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorProto,
    ServiceDescriptorProto,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Style {
    Canonical,
    Normalized,
}

/// The highest field number; `to max` in reserved and extension ranges.
const MAX_FIELD_NUMBER: i32 = 536_870_911;

pub(super) fn print(file: &FileDescriptorProto, style: Style) -> String {
    let printer = Printer {
        style,
        syntax: Syntax::of(file),
    };
    let mut out = String::new();
    match printer.syntax {
        Syntax::Proto3 => out.push_str("syntax = \"proto3\";\n"),
        Syntax::Proto2 => out.push_str("syntax = \"proto2\";\n"),
    }
    if let Some(package) = file.package.as_deref().filter(|p| !p.is_empty()) {
        let _ = writeln!(out, "package {package};");
    }

    let mut imports: Vec<String> = file
        .dependency
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let i = i32::try_from(i).unwrap_or(i32::MAX);
            let kind = if file.public_dependency.contains(&i) {
                "public "
            } else if file.weak_dependency.contains(&i) {
                "weak "
            } else {
                ""
            };
            format!("import {kind}{};\n", quote(name))
        })
        .collect();
    if style == Style::Normalized {
        imports.sort();
    }
    if !imports.is_empty() {
        out.push('\n');
        imports.iter().for_each(|i| out.push_str(i));
    }

    let options = file_options(file);
    if !options.is_empty() {
        out.push('\n');
        for (name, value) in options {
            let _ = writeln!(out, "option {name} = {value};");
        }
    }

    let package_scope = match file.package.as_deref() {
        Some(p) if !p.is_empty() => format!(".{p}"),
        _ => String::new(),
    };
    for message in &file.message_type {
        out.push('\n');
        printer.message(&mut out, message, &package_scope, 0);
    }
    for e in &file.enum_type {
        out.push('\n');
        printer.enumeration(&mut out, e, 0);
    }
    for service in &file.service {
        out.push('\n');
        printer.service(&mut out, service);
    }
    if !file.extension.is_empty() {
        out.push('\n');
        printer.extensions(&mut out, &file.extension, 0);
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Proto2,
    Proto3,
}

impl Syntax {
    fn of(file: &FileDescriptorProto) -> Syntax {
        match file.syntax() {
            "proto3" => Syntax::Proto3,
            _ => Syntax::Proto2,
        }
    }
}

struct Printer {
    style: Style,
    syntax: Syntax,
}

/// What a message body lists, in order: a field on its own, or a oneof with its fields.
enum Item<'a> {
    Field(&'a FieldDescriptorProto),
    Oneof(i32, Vec<&'a FieldDescriptorProto>),
}

impl Item<'_> {
    fn lowest_number(&self) -> i32 {
        match self {
            Item::Field(f) => f.number(),
            Item::Oneof(_, fields) => fields.iter().map(|f| f.number()).min().unwrap_or(0),
        }
    }
}

impl Printer {
    fn message(&self, out: &mut String, message: &DescriptorProto, scope: &str, depth: usize) {
        let pad = indent(depth);
        let _ = writeln!(out, "{pad}message {} {{", message.name());
        self.message_body(out, message, scope, depth + 1);
        let _ = writeln!(out, "{pad}}}");
    }

    fn message_body(&self, out: &mut String, message: &DescriptorProto, scope: &str, depth: usize) {
        let pad = indent(depth);
        let full_name = format!("{scope}.{}", message.name());
        for (name, value) in message_options(message) {
            let _ = writeln!(out, "{pad}option {name} = {value};");
        }

        let mut items: Vec<Item<'_>> = Vec::new();
        for field in &message.field {
            match real_oneof(message, field) {
                Some(index) => {
                    let existing = items
                        .iter_mut()
                        .find(|i| matches!(i, Item::Oneof(o, _) if *o == index));
                    match existing {
                        Some(Item::Oneof(_, fields)) => fields.push(field),
                        _ => items.push(Item::Oneof(index, vec![field])),
                    }
                }
                None => items.push(Item::Field(field)),
            }
        }
        // Map and group fields declare their nested type where they stand, and a record's message indexes
        // count nested types in declaration order; so the text must declare nested types in the order
        // the descriptor has them. Sorting fields (normalized form) would move those types: not done for
        // a message that has any.
        let tied = |item: &Item<'_>| -> Option<usize> {
            let fields: Vec<&FieldDescriptorProto> = match item {
                Item::Field(f) => vec![*f],
                Item::Oneof(_, fields) => fields.clone(),
            };
            fields
                .iter()
                .filter_map(|f| {
                    let owned = map_entry_of(message, &full_name, f).or_else(|| {
                        (f.r#type() == Type::Group)
                            .then(|| group_type_of(message, &full_name, f))
                            .flatten()
                    })?;
                    message
                        .nested_type
                        .iter()
                        .position(|n| std::ptr::eq(n, owned))
                })
                .min()
        };
        let any_tied = items.iter().any(|i| tied(i).is_some());
        if self.style == Style::Normalized && !any_tied {
            items.sort_by_key(Item::lowest_number);
        }
        if self.style == Style::Normalized {
            for item in &mut items {
                if let Item::Oneof(_, fields) = item {
                    fields.sort_by_key(|f| f.number());
                }
            }
        }
        let mut printed = 0;
        for (index, nested) in message.nested_type.iter().enumerate() {
            if is_map_entry(nested) || is_group_type(message, &full_name, nested) {
                if let Some(owner) = items.iter().position(|i| tied(i) == Some(index)) {
                    while printed <= owner {
                        self.item(out, message, &full_name, &items[printed], depth);
                        printed += 1;
                    }
                }
                continue;
            }
            self.message(out, nested, &full_name, depth);
        }
        for item in &items[printed.min(items.len())..] {
            self.item(out, message, &full_name, item, depth);
        }

        self.reserved_and_extensions(out, message, depth);
        for e in &message.enum_type {
            self.enumeration(out, e, depth);
        }
    }

    fn item(
        &self,
        out: &mut String,
        message: &DescriptorProto,
        full_name: &str,
        item: &Item<'_>,
        depth: usize,
    ) {
        let pad = indent(depth);
        match item {
            Item::Field(field) => self.field(out, message, full_name, field, false, depth),
            Item::Oneof(index, fields) => {
                let name = usize::try_from(*index)
                    .ok()
                    .and_then(|i| message.oneof_decl.get(i))
                    .map(|o| o.name())
                    .unwrap_or_default();
                let _ = writeln!(out, "{pad}oneof {name} {{");
                for field in fields {
                    self.field(out, message, full_name, field, true, depth + 1);
                }
                let _ = writeln!(out, "{pad}}}");
            }
        }
    }

    fn reserved_and_extensions(&self, out: &mut String, message: &DescriptorProto, depth: usize) {
        let pad = indent(depth);
        let mut ranges: Vec<(i32, i32)> = message
            .reserved_range
            .iter()
            .map(|r| (r.start(), r.end().saturating_sub(1)))
            .collect();
        let mut names: Vec<&str> = message.reserved_name.iter().map(String::as_str).collect();
        if self.style == Style::Normalized {
            ranges.sort_unstable();
            names.sort_unstable();
        }
        if !ranges.is_empty() {
            let _ = writeln!(out, "{pad}reserved {};", ranges_text(&ranges));
        }
        if !names.is_empty() {
            let names: Vec<String> = names.iter().map(|n| self.reserved_name(n)).collect();
            let _ = writeln!(out, "{pad}reserved {};", names.join(", "));
        }
        let mut extension_ranges: Vec<(i32, i32)> = message
            .extension_range
            .iter()
            .map(|r| (r.start(), r.end().saturating_sub(1)))
            .collect();
        if self.style == Style::Normalized {
            extension_ranges.sort_unstable();
        }
        if !extension_ranges.is_empty() {
            let _ = writeln!(out, "{pad}extensions {};", ranges_text(&extension_ranges));
        }
        if !message.extension.is_empty() {
            self.extensions(out, &message.extension, depth);
        }
    }

    fn field(
        &self,
        out: &mut String,
        message: &DescriptorProto,
        scope: &str,
        field: &FieldDescriptorProto,
        in_oneof: bool,
        depth: usize,
    ) {
        let pad = indent(depth);
        let map_entry = map_entry_of(message, scope, field);
        let label = if in_oneof || map_entry.is_some() {
            ""
        } else {
            self.label(field)
        };
        let options = field_options(field);
        let options = options_text(&options);
        let number = field.number();
        let name = field.name();

        if let Some(entry) = map_entry {
            let key = entry.field.iter().find(|f| f.number() == 1);
            let value = entry.field.iter().find(|f| f.number() == 2);
            let key = key.map(type_text).unwrap_or_default();
            let value = value.map(type_text).unwrap_or_default();
            let _ = writeln!(out, "{pad}map<{key}, {value}> {name} = {number}{options};");
            return;
        }
        if field.r#type() == Type::Group {
            if let Some(group) = group_type_of(message, scope, field) {
                let _ = writeln!(
                    out,
                    "{pad}{label}group {} = {number}{options} {{",
                    group.name()
                );
                self.message_body(out, group, scope, depth + 1);
                let _ = writeln!(out, "{pad}}}");
                return;
            }
        }
        let _ = writeln!(
            out,
            "{pad}{label}{} {name} = {number}{options};",
            type_text(field)
        );
    }

    fn label(&self, field: &FieldDescriptorProto) -> &'static str {
        match field.label() {
            Label::Repeated => "repeated ",
            Label::Required => "required ",
            Label::Optional => match self.syntax {
                Syntax::Proto2 => "optional ",
                Syntax::Proto3 if field.proto3_optional() => "optional ",
                Syntax::Proto3 => "",
            },
        }
    }

    fn reserved_name(&self, name: &str) -> String {
        quote(name)
    }

    fn enumeration(&self, out: &mut String, e: &EnumDescriptorProto, depth: usize) {
        let pad = indent(depth);
        let inner = indent(depth + 1);
        let _ = writeln!(out, "{pad}enum {} {{", e.name());
        if let Some(options) = &e.options {
            let mut list = Vec::new();
            push_bool(&mut list, "allow_alias", options.allow_alias);
            push_bool(&mut list, "deprecated", options.deprecated);
            for (name, value) in list {
                let _ = writeln!(out, "{inner}option {name} = {value};");
            }
        }
        for value in &e.value {
            let mut list = Vec::new();
            if let Some(options) = &value.options {
                push_bool(&mut list, "deprecated", options.deprecated);
            }
            let _ = writeln!(
                out,
                "{inner}{} = {}{};",
                value.name(),
                value.number(),
                options_text(&list)
            );
        }
        // Enum reserved ranges include their end, unlike message ones.
        let mut ranges: Vec<(i32, i32)> = e
            .reserved_range
            .iter()
            .map(|r| (r.start(), r.end()))
            .collect();
        let mut names: Vec<&str> = e.reserved_name.iter().map(String::as_str).collect();
        if self.style == Style::Normalized {
            ranges.sort_unstable();
            names.sort_unstable();
        }
        if !ranges.is_empty() {
            let _ = writeln!(out, "{inner}reserved {};", ranges_text(&ranges));
        }
        if !names.is_empty() {
            let names: Vec<String> = names.iter().map(|n| self.reserved_name(n)).collect();
            let _ = writeln!(out, "{inner}reserved {};", names.join(", "));
        }
        let _ = writeln!(out, "{pad}}}");
    }

    fn service(&self, out: &mut String, service: &ServiceDescriptorProto) {
        let _ = writeln!(out, "service {} {{", service.name());
        if let Some(options) = &service.options {
            let mut list = Vec::new();
            push_bool(&mut list, "deprecated", options.deprecated);
            for (name, value) in list {
                let _ = writeln!(out, "  option {name} = {value};");
            }
        }
        for method in &service.method {
            let stream = |yes: bool| if yes { "stream " } else { "" };
            let _ = write!(
                out,
                "  rpc {} ({}{}) returns ({}{})",
                method.name(),
                stream(method.client_streaming()),
                method.input_type(),
                stream(method.server_streaming()),
                method.output_type()
            );
            let mut list = Vec::new();
            if let Some(options) = &method.options {
                push_bool(&mut list, "deprecated", options.deprecated);
                if options.idempotency_level.is_some() {
                    list.push((
                        "idempotency_level".to_owned(),
                        options.idempotency_level().as_str_name().to_owned(),
                    ));
                }
            }
            if list.is_empty() {
                out.push_str(";\n");
            } else {
                out.push_str(" {\n");
                for (name, value) in list {
                    let _ = writeln!(out, "    option {name} = {value};");
                }
                out.push_str("  }\n");
            }
        }
        out.push_str("}\n");
    }

    /// `extend` blocks, one per extended message in the order each first appears.
    fn extensions(&self, out: &mut String, fields: &[FieldDescriptorProto], depth: usize) {
        let pad = indent(depth);
        let mut extendees: Vec<&str> = Vec::new();
        for field in fields {
            if !extendees.contains(&field.extendee()) {
                extendees.push(field.extendee());
            }
        }
        for extendee in extendees {
            let _ = writeln!(out, "{pad}extend {extendee} {{");
            let inner = indent(depth + 1);
            for field in fields.iter().filter(|f| f.extendee() == extendee) {
                let options = options_text(&field_options(field));
                let _ = writeln!(
                    out,
                    "{inner}{}{} {} = {}{options};",
                    self.label(field),
                    type_text(field),
                    field.name(),
                    field.number()
                );
            }
            let _ = writeln!(out, "{pad}}}");
        }
    }
}

fn indent(depth: usize) -> String {
    "  ".repeat(depth)
}

/// The field's oneof, unless it is the synthetic one a proto3 `optional` field gets.
fn real_oneof(message: &DescriptorProto, field: &FieldDescriptorProto) -> Option<i32> {
    let index = field.oneof_index?;
    if field.proto3_optional() {
        return None;
    }
    usize::try_from(index)
        .ok()
        .filter(|&i| i < message.oneof_decl.len())?;
    Some(index)
}

fn is_map_entry(message: &DescriptorProto) -> bool {
    message
        .options
        .as_ref()
        .is_some_and(|o| o.map_entry.unwrap_or(false))
}

fn nested_named<'a>(
    message: &'a DescriptorProto,
    scope: &str,
    type_name: &str,
) -> Option<&'a DescriptorProto> {
    let short = type_name.strip_prefix(scope)?.strip_prefix('.')?;
    message.nested_type.iter().find(|n| n.name() == short)
}

fn map_entry_of<'a>(
    message: &'a DescriptorProto,
    scope: &str,
    field: &FieldDescriptorProto,
) -> Option<&'a DescriptorProto> {
    if field.label() != Label::Repeated || field.r#type() != Type::Message {
        return None;
    }
    nested_named(message, scope, field.type_name()).filter(|n| is_map_entry(n))
}

fn group_type_of<'a>(
    message: &'a DescriptorProto,
    scope: &str,
    field: &FieldDescriptorProto,
) -> Option<&'a DescriptorProto> {
    nested_named(message, scope, field.type_name())
}

/// Whether `nested` is the body of one of `message`'s group fields, printed with that field.
fn is_group_type(message: &DescriptorProto, scope: &str, nested: &DescriptorProto) -> bool {
    message.field.iter().any(|f| {
        f.r#type() == Type::Group
            && group_type_of(message, scope, f).is_some_and(|g| std::ptr::eq(g, nested))
    })
}

fn type_text(field: &FieldDescriptorProto) -> String {
    match field.r#type() {
        Type::Message | Type::Enum | Type::Group => field.type_name().to_owned(),
        scalar => scalar_name(scalar).to_owned(),
    }
}

pub(super) fn scalar_name(t: Type) -> &'static str {
    match t {
        Type::Double => "double",
        Type::Float => "float",
        Type::Int64 => "int64",
        Type::Uint64 => "uint64",
        Type::Int32 => "int32",
        Type::Fixed64 => "fixed64",
        Type::Fixed32 => "fixed32",
        Type::Bool => "bool",
        Type::String => "string",
        Type::Group => "group",
        Type::Message => "message",
        Type::Bytes => "bytes",
        Type::Uint32 => "uint32",
        Type::Enum => "enum",
        Type::Sfixed32 => "sfixed32",
        Type::Sfixed64 => "sfixed64",
        Type::Sint32 => "sint32",
        Type::Sint64 => "sint64",
    }
}

fn ranges_text(ranges: &[(i32, i32)]) -> String {
    ranges
        .iter()
        .map(|&(start, end)| {
            if end >= MAX_FIELD_NUMBER && start != end {
                format!("{start} to max")
            } else if start >= end {
                start.to_string()
            } else {
                format!("{start} to {end}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

type Options = Vec<(String, String)>;

fn options_text(options: &Options) -> String {
    if options.is_empty() {
        return String::new();
    }
    let list: Vec<String> = options
        .iter()
        .map(|(name, value)| format!("{name} = {value}"))
        .collect();
    format!(" [{}]", list.join(", "))
}

fn push_bool(list: &mut Options, name: &str, value: Option<bool>) {
    if let Some(value) = value {
        list.push((name.to_owned(), value.to_string()));
    }
}

fn push_string(list: &mut Options, name: &str, value: &Option<String>) {
    if let Some(value) = value {
        list.push((name.to_owned(), quote(value)));
    }
}

fn file_options(file: &FileDescriptorProto) -> Options {
    let mut list = Vec::new();
    let Some(o) = &file.options else {
        return list;
    };
    push_bool(&mut list, "cc_enable_arenas", o.cc_enable_arenas);
    push_bool(&mut list, "cc_generic_services", o.cc_generic_services);
    push_string(&mut list, "csharp_namespace", &o.csharp_namespace);
    push_bool(&mut list, "deprecated", o.deprecated);
    push_string(&mut list, "go_package", &o.go_package);
    // Deprecated in descriptor.proto, yet still a valid option that schemas carry.
    #[allow(deprecated)]
    push_bool(
        &mut list,
        "java_generate_equals_and_hash",
        o.java_generate_equals_and_hash,
    );
    push_bool(&mut list, "java_generic_services", o.java_generic_services);
    push_bool(&mut list, "java_multiple_files", o.java_multiple_files);
    push_string(&mut list, "java_outer_classname", &o.java_outer_classname);
    push_string(&mut list, "java_package", &o.java_package);
    push_bool(
        &mut list,
        "java_string_check_utf8",
        o.java_string_check_utf8,
    );
    push_string(&mut list, "objc_class_prefix", &o.objc_class_prefix);
    if o.optimize_for.is_some() {
        list.push((
            "optimize_for".to_owned(),
            o.optimize_for().as_str_name().to_owned(),
        ));
    }
    push_string(&mut list, "php_class_prefix", &o.php_class_prefix);
    push_string(
        &mut list,
        "php_metadata_namespace",
        &o.php_metadata_namespace,
    );
    push_string(&mut list, "php_namespace", &o.php_namespace);
    push_bool(&mut list, "py_generic_services", o.py_generic_services);
    push_string(&mut list, "ruby_package", &o.ruby_package);
    push_string(&mut list, "swift_prefix", &o.swift_prefix);
    list
}

fn message_options(message: &DescriptorProto) -> Options {
    let mut list = Vec::new();
    let Some(o) = &message.options else {
        return list;
    };
    push_bool(&mut list, "deprecated", o.deprecated);
    push_bool(
        &mut list,
        "message_set_wire_format",
        o.message_set_wire_format,
    );
    push_bool(
        &mut list,
        "no_standard_descriptor_accessor",
        o.no_standard_descriptor_accessor,
    );
    list
}

/// The options written in brackets after a field.
fn field_options(field: &FieldDescriptorProto) -> Options {
    let mut list = Vec::new();
    if let Some(o) = &field.options {
        if o.ctype.is_some() {
            list.push(("ctype".to_owned(), o.ctype().as_str_name().to_owned()));
        }
        push_bool(&mut list, "deprecated", o.deprecated);
        if o.jstype.is_some() {
            list.push(("jstype".to_owned(), o.jstype().as_str_name().to_owned()));
        }
        push_bool(&mut list, "lazy", o.lazy);
        push_bool(&mut list, "packed", o.packed);
        push_bool(&mut list, "weak", o.weak);
    }
    {
        let f = field;
        if let Some(default) = &f.default_value {
            let text = match f.r#type() {
                Type::String => quote(default),
                // Descriptors keep a bytes default already C-escaped.
                Type::Bytes => format!("\"{default}\""),
                _ => default.clone(),
            };
            list.push(("default".to_owned(), text));
        }
        // Compilers fill in json_name for every field; only one that differs from the derived name was
        // written by hand.
        if let Some(json_name) = &f.json_name {
            if *json_name != default_json_name(f.name()) {
                list.push(("json_name".to_owned(), quote(json_name)));
            }
        }
    }
    list.sort();
    list
}

/// protoc's derived JSON name: underscores dropped, the letter after each one upper-cased.
fn default_json_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper_next = false;
    for c in name.chars() {
        if c == '_' {
            upper_next = true;
        } else if upper_next {
            out.extend(c.to_uppercase());
            upper_next = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A `.proto` string literal; non-ASCII text stays UTF-8, which `.proto` files allow.
pub(super) fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\{:03o}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
