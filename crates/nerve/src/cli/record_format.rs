//! How `nerve consume` prints a record: a `--format` template, or `--json` lines.
//!
//! Template placeholders: `%k` key, `%v` value, `%h` headers as `k1=v1,k2=v2`, `%p` partition, `%o`
//! offset, `%t` timestamp (milliseconds since the Unix epoch, `-1` when the record has none), `%%` a percent
//! sign; escapes `\n`, `\t`, `\r` and `\\`. A missing key or value prints as nothing. Bytes are written
//! as they are, so a template can carry binary values through a pipe. Every record ends with a newline.
//!
//! JSON: one object per line, `{"topic","partition","offset","timestamp","key","value","headers"}` with
//! `headers` an array of `{"key","value"}` (order and duplicates kept, as Kafka allows both). A key or
//! value is a JSON string when its bytes are UTF-8, `null` when absent, and `{"base64": "..."}` otherwise,
//! so that no byte string can be mistaken for another.

use serde::Serialize;

/// One consumed record, borrowed from the client's buffer.
pub(crate) struct RecordView<'a> {
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) timestamp: Option<i64>,
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers: Vec<(&'a str, Option<&'a [u8]>)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(Vec<u8>),
    Key,
    Value,
    Headers,
    Partition,
    Offset,
    Timestamp,
}

/// A parsed `--format` template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Template(Vec<Piece>);

impl Template {
    /// The value alone, what a consumer prints by default.
    pub(crate) fn value() -> Template {
        Template(vec![Piece::Value])
    }

    /// Parses a template, refusing unknown placeholders and escapes so that a typo is not printed
    /// verbatim for every record.
    pub(crate) fn parse(text: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            let piece = match c {
                '%' => match chars.next() {
                    Some('k') => Piece::Key,
                    Some('v') => Piece::Value,
                    Some('h') => Piece::Headers,
                    Some('p') => Piece::Partition,
                    Some('o') => Piece::Offset,
                    Some('t') => Piece::Timestamp,
                    Some('%') => {
                        literal.push(b'%');
                        continue;
                    }
                    other => {
                        return Err(format!(
                            "unknown placeholder `%{}`: use %k %v %h %p %o %t or %%",
                            other.map(String::from).unwrap_or_default()
                        ))
                    }
                },
                '\\' => {
                    let escaped = match chars.next() {
                        Some('n') => b'\n',
                        Some('t') => b'\t',
                        Some('r') => b'\r',
                        Some('\\') => b'\\',
                        other => {
                            return Err(format!(
                                "unknown escape `\\{}`: use \\n \\t \\r or \\\\",
                                other.map(String::from).unwrap_or_default()
                            ))
                        }
                    };
                    literal.push(escaped);
                    continue;
                }
                c => {
                    let mut buf = [0; 4];
                    literal.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    continue;
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
        }
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        Ok(Template(pieces))
    }

    /// Appends the record as this template prints it, newline included.
    pub(crate) fn render(&self, record: &RecordView<'_>, out: &mut Vec<u8>) {
        for piece in &self.0 {
            match piece {
                Piece::Text(text) => out.extend_from_slice(text),
                Piece::Key => out.extend_from_slice(record.key.unwrap_or_default()),
                Piece::Value => out.extend_from_slice(record.value.unwrap_or_default()),
                Piece::Headers => {
                    for (i, (key, value)) in record.headers.iter().enumerate() {
                        if i > 0 {
                            out.push(b',');
                        }
                        out.extend_from_slice(key.as_bytes());
                        out.push(b'=');
                        out.extend_from_slice(value.unwrap_or_default());
                    }
                }
                Piece::Partition => out.extend_from_slice(record.partition.to_string().as_bytes()),
                Piece::Offset => out.extend_from_slice(record.offset.to_string().as_bytes()),
                Piece::Timestamp => {
                    out.extend_from_slice(record.timestamp.unwrap_or(-1).to_string().as_bytes())
                }
            }
        }
        out.push(b'\n');
    }
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    timestamp: Option<i64>,
    key: Option<JsonBytes<'a>>,
    value: Option<JsonBytes<'a>>,
    headers: Vec<JsonHeader<'a>>,
}

#[derive(Serialize)]
struct JsonHeader<'a> {
    key: &'a str,
    value: Option<JsonBytes<'a>>,
}

/// Bytes as JSON: text when they are UTF-8, base64 under a marker key when they are not.
#[derive(Serialize)]
#[serde(untagged)]
enum JsonBytes<'a> {
    Text(&'a str),
    Binary { base64: String },
}

impl<'a> JsonBytes<'a> {
    fn new(bytes: &'a [u8]) -> JsonBytes<'a> {
        match std::str::from_utf8(bytes) {
            Ok(text) => JsonBytes::Text(text),
            Err(_) => JsonBytes::Binary {
                base64: base64(bytes),
            },
        }
    }
}

/// Appends the record as one line of JSON.
pub(crate) fn render_json(record: &RecordView<'_>, out: &mut Vec<u8>) -> serde_json::Result<()> {
    let json = JsonRecord {
        topic: record.topic,
        partition: record.partition,
        offset: record.offset,
        timestamp: record.timestamp,
        key: record.key.map(JsonBytes::new),
        value: record.value.map(JsonBytes::new),
        headers: record
            .headers
            .iter()
            .map(|(key, value)| JsonHeader {
                key,
                value: value.map(JsonBytes::new),
            })
            .collect(),
    };
    serde_json::to_writer(&mut *out, &json)?;
    out.push(b'\n');
    Ok(())
}

/// Standard base64 with padding (RFC 4648 §4), the form every language's decoder reads.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(key: Option<&'a [u8]>, value: Option<&'a [u8]>) -> RecordView<'a> {
        RecordView {
            topic: "t",
            partition: 2,
            offset: 7,
            timestamp: Some(1_700_000_000_000),
            key,
            value,
            headers: vec![("a", Some(b"1")), ("b", None)],
        }
    }

    fn render(template: &str, record: &RecordView<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        Template::parse(template).unwrap().render(record, &mut out);
        out
    }

    #[test]
    fn every_placeholder_and_escape_renders() {
        let r = record(Some(b"k"), Some(b"v"));
        assert_eq!(
            render(r"%p/%o %t %k=%v [%h] 100%%\t\\", &r),
            b"2/7 1700000000000 k=v [a=1,b=] 100%\t\\\n"
        );
        assert_eq!(render("<%k><%v>", &record(None, None)), b"<><>\n");
    }

    #[test]
    fn unknown_placeholders_and_escapes_are_refused() {
        assert!(Template::parse("%x").is_err());
        assert!(Template::parse("trailing %").is_err());
        assert!(Template::parse(r"\q").is_err());
    }

    #[test]
    fn json_marks_bytes_that_are_not_utf8() {
        let mut out = Vec::new();
        render_json(&record(None, Some(&[0xff, 0xfe, b'a'])), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"topic":"t","partition":2,"offset":7,"timestamp":1700000000000,"key":null,"value":{"base64":"//5h"},"headers":[{"key":"a","value":"1"},{"key":"b","value":null}]}"#
                .to_string()
                + "\n"
        );
    }

    #[test]
    fn base64_pads_like_rfc_4648() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(input.as_bytes()), expected);
        }
    }
}
