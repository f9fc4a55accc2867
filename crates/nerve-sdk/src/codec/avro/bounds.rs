//! A walk over an Avro datum before apache-avro decodes it.
//!
//! apache-avro trusts the counts and lengths in the data: it reserves an array or map block's items
//! before reading them, each as large as its `Value` (dozens of bytes), and it recurses once per nesting
//! level, so a few bytes of garbage can reserve gigabytes or, with a recursive schema, overflow the stack —
//! an abort no `catch_unwind` stops. This walk reads the datum as the decoder will, allocating nothing, and
//! refuses what no honest writer produces: counts and lengths beyond the bytes left, nesting deeper than
//! [`MAX_DEPTH`], more than [`MAX_ITEMS`] items.

use std::collections::HashMap;

use apache_avro::schema::{Name, Namespace};
use apache_avro::Schema;

/// Schema nodes nested deeper than this are refused: each is a stack frame of the decoder's.
const MAX_DEPTH: usize = 128;

/// Array and map items per datum at most: items of an empty type (`null`, an empty record) take no bytes,
/// so their count alone could keep the decoder busy for ever.
const MAX_ITEMS: u64 = 1 << 24;

/// How many items a block may claim beyond the bytes left. Only items of an empty type can outnumber the
/// bytes, and nobody sends large arrays of nulls; this much slack lets the odd small one through.
const EMPTY_ITEM_SLACK: u64 = 1024;

/// Checks that `datum` is one datum of `schema`, whose named types are `names`, and nothing more.
pub(super) fn check(
    schema: &Schema,
    names: &HashMap<Name, Schema>,
    datum: &[u8],
) -> Result<(), String> {
    let mut walk = Walk {
        names,
        rest: datum,
        items: 0,
    };
    walk.datum(schema, &None, 0)?;
    if !walk.rest.is_empty() {
        // One datum is the whole value: bytes left over mean it was written with another schema.
        return Err(format!(
            "{} byte(s) left after the datum: not written with this schema",
            walk.rest.len()
        ));
    }
    Ok(())
}

struct Walk<'a> {
    names: &'a HashMap<Name, Schema>,
    rest: &'a [u8],
    items: u64,
}

impl Walk<'_> {
    /// Mirrors apache-avro's `decode_internal`, namespaces of named references included.
    fn datum(
        &mut self,
        schema: &Schema,
        namespace: &Namespace,
        depth: usize,
    ) -> Result<(), String> {
        if depth > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        match schema {
            Schema::Null => Ok(()),
            Schema::Boolean => self.skip(1),
            Schema::Int
            | Schema::Long
            | Schema::Date
            | Schema::TimeMillis
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos
            | Schema::Enum(_) => self.varint().map(drop),
            Schema::Float => self.skip(4),
            Schema::Double => self.skip(8),
            Schema::Duration => self.skip(12),
            Schema::Bytes | Schema::String | Schema::BigDecimal | Schema::Uuid => {
                let len = self.length()?;
                self.skip(len)
            }
            Schema::Fixed(fixed) => self.skip(fixed.size),
            Schema::Decimal(decimal) => self.datum(&decimal.inner, namespace, depth + 1),
            Schema::Array(array) => {
                self.blocks(|walk| walk.datum(&array.items, namespace, depth + 1))
            }
            Schema::Map(map) => self.blocks(|walk| {
                let key = walk.length()?;
                walk.skip(key)?;
                walk.datum(&map.types, namespace, depth + 1)
            }),
            Schema::Union(union) => {
                let index = self.varint()?;
                let variant = usize::try_from(index)
                    .ok()
                    .and_then(|i| union.variants().get(i))
                    .ok_or_else(|| {
                        format!(
                            "union branch {index} does not exist (the union has {})",
                            union.variants().len()
                        )
                    })?;
                self.datum(variant, namespace, depth + 1)
            }
            Schema::Record(record) => {
                let name = record.name.fully_qualified_name(namespace);
                for field in &record.fields {
                    self.datum(&field.schema, &name.namespace, depth + 1)?;
                }
                Ok(())
            }
            Schema::Ref { name } => {
                let name = name.fully_qualified_name(namespace);
                let named = self
                    .names
                    .get(&name)
                    .ok_or_else(|| format!("the schema does not define {name}"))?;
                self.datum(named, &name.namespace, depth + 1)
            }
        }
    }

    /// An array's or a map's blocks: a count (negative: its absolute value, then the block's size in
    /// bytes), that many items, until a count of 0.
    fn blocks(
        &mut self,
        mut item: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        loop {
            let count = self.varint()?;
            if count == 0 {
                return Ok(());
            }
            if count < 0 {
                self.varint()?;
            }
            let count = count.unsigned_abs();
            let left = u64::try_from(self.rest.len()).unwrap_or(u64::MAX);
            if count > left.saturating_add(EMPTY_ITEM_SLACK) {
                return Err(format!("a block of {count} items in {left} byte(s) left"));
            }
            self.items += count;
            if self.items > MAX_ITEMS {
                return Err(format!("more than {MAX_ITEMS} array or map items"));
            }
            for _ in 0..count {
                item(self)?;
            }
        }
    }

    /// A zigzag varint, as Avro writes `int` and `long`.
    fn varint(&mut self) -> Result<i64, String> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let (&byte, rest) = self.rest.split_first().ok_or("the datum ends early")?;
            self.rest = rest;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                // The low bit is the sign.
                return Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64));
            }
        }
        Err("a varint longer than 10 bytes".into())
    }

    /// A length of bytes that must all be there.
    fn length(&mut self) -> Result<usize, String> {
        let len = self.varint()?;
        usize::try_from(len).map_err(|_| format!("a negative length {len}"))
    }

    fn skip(&mut self, len: usize) -> Result<(), String> {
        if len > self.rest.len() {
            return Err(format!(
                "{len} byte(s) claimed, {} left: the datum ends early",
                self.rest.len()
            ));
        }
        self.rest = &self.rest[len..];
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use apache_avro::schema::ResolvedSchema;

    use super::*;

    fn names(schema: &Schema) -> HashMap<Name, Schema> {
        ResolvedSchema::try_from(schema)
            .expect("resolves")
            .get_names()
            .iter()
            .map(|(name, schema)| (name.clone(), (*schema).clone()))
            .collect()
    }

    fn parse(text: &str) -> Schema {
        Schema::parse_str(text).expect("a schema")
    }

    #[test]
    fn honest_datums_pass_whole() {
        let schema = parse(
            r#"{"type": "record", "name": "R", "namespace": "n", "fields": [
                {"name": "s", "type": "string"},
                {"name": "l", "type": {"type": "array", "items": "long"}},
                {"name": "m", "type": {"type": "map", "values": "double"}},
                {"name": "u", "type": ["null", "R"]},
                {"name": "f", "type": {"type": "fixed", "name": "F", "size": 3}},
                {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B"]}}
            ]}"#,
        );
        let inner = apache_avro::types::Value::Record(vec![
            ("s".into(), "hello".into()),
            (
                "l".into(),
                apache_avro::types::Value::Array(vec![1i64.into(), (-300i64).into()]),
            ),
            (
                "m".into(),
                apache_avro::types::Value::Map([("k".to_string(), 1.5f64.into())].into()),
            ),
            (
                "u".into(),
                apache_avro::types::Value::Union(0, Box::new(apache_avro::types::Value::Null)),
            ),
            (
                "f".into(),
                apache_avro::types::Value::Fixed(3, vec![1, 2, 3]),
            ),
            ("e".into(), apache_avro::types::Value::Enum(1, "B".into())),
        ]);
        let mut outer = inner.clone();
        if let apache_avro::types::Value::Record(fields) = &mut outer {
            fields[3].1 = apache_avro::types::Value::Union(1, Box::new(inner));
        }
        let datum = apache_avro::to_avro_datum(&schema, outer).expect("encoded");
        let names = names(&schema);
        check(&schema, &names, &datum).expect("an honest datum");
        assert!(
            check(&schema, &names, &datum[..datum.len() - 1]).is_err(),
            "cut"
        );
        let mut longer = datum.clone();
        longer.push(0);
        assert!(check(&schema, &names, &longer).is_err(), "a byte after it");
    }

    #[test]
    fn claims_beyond_the_bytes_are_refused_before_decoding() {
        let array = parse(r#"{"type": "array", "items": "long"}"#);
        let names = names(&array);
        // 2^40 items in two bytes: apache-avro would reserve them (terabytes) before reading one.
        let mut datum = Vec::new();
        let count: u64 = 1 << 40;
        let mut zigzag = count << 1;
        while zigzag >= 0x80 {
            datum.push((zigzag as u8) | 0x80);
            zigzag >>= 7;
        }
        datum.push(zigzag as u8);
        datum.extend_from_slice(&[2, 2]);
        let error = check(&array, &names, &datum).expect_err("too many items");
        assert!(error.contains("items"), "{error}");

        let string = parse(r#""string""#);
        let error = check(&string, &HashMap::new(), &[0xfe, 0xff, 0xff, 0x7f, b'x'])
            .expect_err("a long string");
        assert!(error.contains("ends early"), "{error}");
        assert!(
            check(&string, &HashMap::new(), &[0x03, b'x']).is_err(),
            "negative"
        );
        assert!(
            check(&string, &HashMap::new(), &[0xff; 11]).is_err(),
            "endless varint"
        );
    }

    #[test]
    fn deep_nesting_is_refused_before_it_overflows_the_stack() {
        let list = parse(
            r#"{"type": "record", "name": "Node", "fields": [
                {"name": "next", "type": ["null", "Node"]}
            ]}"#,
        );
        let names = names(&list);
        // Each level is one byte, union branch 1; a megabyte of them would nest a million decoder frames.
        let mut datum = vec![2u8; 1 << 20];
        datum.push(0);
        let error = check(&list, &names, &datum).expect_err("too deep");
        assert!(error.contains("deeper"), "{error}");
        let shallow = [2, 2, 2, 0];
        check(&list, &names, &shallow).expect("three levels");
        let decoded = apache_avro::from_avro_datum(&list, &mut &shallow[..], None);
        assert!(decoded.is_ok(), "apache-avro reads what the walk passes");
    }
}
