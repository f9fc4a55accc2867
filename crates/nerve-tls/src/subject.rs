//! The subject of an X.509 certificate as RFC 2253 text, the way Kafka names an mTLS client
//! (`User:CN=alice,OU=eng,O=Acme`): Java's `X500Principal.getName()`, which Kafka's default principal
//! builder uses, so ACLs written for Kafka match Nerve's principals as they are.
//!
//! Only the few DER structures on the way to the subject are read, each with its length checked against
//! what is left: the certificate has been verified by rustls already, but its bytes still came from a
//! client.

/// Why a certificate's subject could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed certificate: {0}")]
pub struct SubjectError(&'static str);

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const INTEGER: u8 = 0x02;
const VERSION: u8 = 0xA0;

/// The certificate's subject in RFC 2253 form: the last relative name first, attributes Java knows by a
/// keyword (CN, OU, O, …), others by dotted OID with the value's DER bytes in hex.
pub fn subject_rfc2253(cert_der: &[u8]) -> Result<String, SubjectError> {
    let mut input = cert_der;
    let certificate = expect(&mut input, SEQUENCE, "certificate")?;
    let mut certificate = certificate;
    let mut tbs = expect(&mut certificate, SEQUENCE, "tbsCertificate")?;
    if tbs.first() == Some(&VERSION) {
        read_tlv(&mut tbs)?;
    }
    expect(&mut tbs, INTEGER, "serial number")?;
    expect(&mut tbs, SEQUENCE, "signature algorithm")?;
    expect(&mut tbs, SEQUENCE, "issuer")?;
    expect(&mut tbs, SEQUENCE, "validity")?;
    let mut name = expect(&mut tbs, SEQUENCE, "subject")?;
    let mut rdns = Vec::new();
    while !name.is_empty() {
        let mut set = expect(&mut name, SET, "relative distinguished name")?;
        let mut avas = Vec::new();
        while !set.is_empty() {
            let mut ava = expect(&mut set, SEQUENCE, "attribute")?;
            let oid = expect(&mut ava, OID, "attribute type")?;
            let value_start = ava;
            let (tag, value) = read_tlv(&mut ava)?;
            let encoded = &value_start[..value_start.len() - ava.len()];
            avas.push(attribute(oid, tag, value, encoded)?);
        }
        rdns.push(avas.join("+"));
    }
    rdns.reverse();
    Ok(rdns.join(","))
}

/// Reads one TLV whose tag must be `tag`.
fn expect<'a>(input: &mut &'a [u8], tag: u8, what: &'static str) -> Result<&'a [u8], SubjectError> {
    match read_tlv(input)? {
        (t, content) if t == tag => Ok(content),
        _ => Err(SubjectError(what)),
    }
}

/// Reads one definite-length TLV (single-byte tags: all that certificates' names use).
fn read_tlv<'a>(input: &mut &'a [u8]) -> Result<(u8, &'a [u8]), SubjectError> {
    let truncated = SubjectError("truncated");
    let (&tag, rest) = input.split_first().ok_or(truncated.clone())?;
    let (&first, mut rest) = rest.split_first().ok_or(truncated.clone())?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return Err(SubjectError("bad length"));
        }
        let (bytes, after) = rest.split_at(count);
        rest = after;
        bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b))
    };
    if rest.len() < len {
        return Err(truncated);
    }
    let (content, after) = rest.split_at(len);
    *input = after;
    Ok((tag, content))
}

fn attribute(oid: &[u8], tag: u8, value: &[u8], encoded: &[u8]) -> Result<String, SubjectError> {
    let dotted = dotted_oid(oid)?;
    let keyword = match dotted.as_str() {
        "2.5.4.3" => Some("CN"),
        "2.5.4.6" => Some("C"),
        "2.5.4.7" => Some("L"),
        "2.5.4.8" => Some("ST"),
        "2.5.4.9" => Some("STREET"),
        "2.5.4.10" => Some("O"),
        "2.5.4.11" => Some("OU"),
        "0.9.2342.19200300.100.1.1" => Some("UID"),
        "0.9.2342.19200300.100.1.25" => Some("DC"),
        _ => None,
    };
    let text = keyword.and_then(|_| string_value(tag, value));
    Ok(match (keyword, text) {
        (Some(keyword), Some(text)) => format!("{keyword}={}", escape(&text)),
        // RFC 2253: an attribute without a keyword (or a value that is not a string) is its dotted OID
        // and `#` with the hex of the value's whole encoding.
        _ => {
            let hex: String = encoded.iter().map(|b| format!("{b:02x}")).collect();
            format!("{dotted}=#{hex}")
        }
    })
}

/// The text of a directory string, if the value is one.
fn string_value(tag: u8, value: &[u8]) -> Option<String> {
    match tag {
        // UTF8String, PrintableString, IA5String, NumericString, VisibleString
        0x0C | 0x13 | 0x16 | 0x12 | 0x1A => String::from_utf8(value.to_vec()).ok(),
        // TeletexString: in practice Latin-1.
        0x14 => Some(value.iter().map(|&b| char::from(b)).collect()),
        // BMPString: UTF-16BE.
        0x1E if value.len().is_multiple_of(2) => {
            let units: Vec<u16> = value
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).ok()
        }
        // UniversalString: UTF-32BE.
        0x1C if value.len().is_multiple_of(4) => value
            .chunks_exact(4)
            .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        _ => None,
    }
}

fn dotted_oid(oid: &[u8]) -> Result<String, SubjectError> {
    let bad = || SubjectError("bad object identifier");
    let mut arcs: Vec<u64> = Vec::new();
    let mut current: u64 = 0;
    for (i, &b) in oid.iter().enumerate() {
        current = current
            .checked_mul(128)
            .and_then(|c| c.checked_add(u64::from(b & 0x7f)))
            .ok_or_else(bad)?;
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (current / 40).min(2);
                arcs.push(first);
                arcs.push(current - first * 40);
            } else {
                arcs.push(current);
            }
            current = 0;
        } else if i == oid.len() - 1 {
            return Err(bad());
        }
    }
    if arcs.is_empty() {
        return Err(bad());
    }
    Ok(arcs
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join("."))
}

/// RFC 2253 escaping: the special characters, and a leading `#` or space and a trailing space.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut out = vec![tag];
        if content.len() < 0x80 {
            out.push(content.len() as u8);
        } else {
            out.push(0x82);
            out.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(content);
        out
    }

    fn ava(oid: &[u8], tag: u8, value: &[u8]) -> Vec<u8> {
        tlv(SEQUENCE, &[tlv(OID, oid), tlv(tag, value)].concat())
    }

    fn certificate(rdns: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let name: Vec<u8> = rdns
            .iter()
            .flat_map(|set| tlv(SET, &set.concat()))
            .collect();
        let tbs = [
            tlv(VERSION, &tlv(INTEGER, &[2])),
            tlv(INTEGER, &[1]),
            tlv(SEQUENCE, &[]),
            tlv(SEQUENCE, &[]),
            tlv(SEQUENCE, &[]),
            tlv(SEQUENCE, &name),
        ]
        .concat();
        tlv(
            SEQUENCE,
            &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[])].concat(),
        )
    }

    const C: &[u8] = &[0x55, 0x04, 0x06];
    const O: &[u8] = &[0x55, 0x04, 0x0A];
    const OU: &[u8] = &[0x55, 0x04, 0x0B];
    const CN: &[u8] = &[0x55, 0x04, 0x03];
    const EMAIL: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01];

    #[test]
    fn the_last_relative_name_comes_first_as_java_prints_it() {
        let cert = certificate(&[
            vec![ava(C, 0x13, b"US")],
            vec![ava(O, 0x0C, b"Acme")],
            vec![ava(CN, 0x0C, b"alice")],
        ]);
        assert_eq!(subject_rfc2253(&cert).unwrap(), "CN=alice,O=Acme,C=US");
    }

    #[test]
    fn special_characters_are_escaped_and_multi_valued_names_joined_with_plus() {
        let cert = certificate(&[vec![ava(OU, 0x0C, b"a,b+c"), ava(CN, 0x0C, b"#x ")]]);
        assert_eq!(subject_rfc2253(&cert).unwrap(), r"OU=a\,b\+c+CN=\#x\ ");
    }

    #[test]
    fn attributes_without_a_keyword_are_dotted_oids_with_hex_values() {
        let cert = certificate(&[
            vec![ava(EMAIL, 0x16, b"a@b")],
            vec![ava(CN, 0x1E, &[0, b'z'])],
        ]);
        assert_eq!(
            subject_rfc2253(&cert).unwrap(),
            "CN=z,1.2.840.113549.1.9.1=#1603614062"
        );
    }

    #[test]
    fn truncated_or_garbage_input_is_an_error_not_a_panic() {
        let cert = certificate(&[vec![ava(CN, 0x0C, b"alice")]]);
        for len in 0..cert.len() {
            assert!(
                subject_rfc2253(&cert[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
        for seed in 0u32..2000 {
            let garbage: Vec<u8> = (0..64u32)
                .map(|i| (seed.wrapping_mul(2_654_435_761).wrapping_add(i * 40_503) >> 7) as u8)
                .collect();
            let _ = subject_rfc2253(&garbage);
        }
        assert!(subject_rfc2253(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
