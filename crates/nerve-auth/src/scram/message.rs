//! Parsing and formatting of the four SCRAM messages (RFC 5802 section 7).
//!
//! Everything here reads untrusted bytes: each failure is a [`ScramError`], never a panic.

use super::{unb64, ScramError};

/// Attribute names that RFC 5802 gives a fixed place; seeing one elsewhere means a confused peer.
const RFC_ATTRIBUTES: &[&str] = &["a", "n", "r", "c", "s", "i", "p", "v", "e"];

pub(super) fn utf8(msg: &[u8]) -> Result<&str, ScramError> {
    std::str::from_utf8(msg).map_err(|_| ScramError::Malformed("not UTF-8".into()))
}

fn malformed(what: &str) -> ScramError {
    ScramError::Malformed(what.to_owned())
}

/// `name=value` pairs separated by ','. Names are one letter in RFC 5802, words in Kafka's extensions.
fn attributes(text: &str) -> Result<Vec<(&str, &str)>, ScramError> {
    text.split(',')
        .map(|part| match part.split_once('=') {
            Some((name, value))
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                Ok((name, value))
            }
            _ => Err(malformed("attribute is not name=value")),
        })
        .collect()
}

/// Takes the next attribute, which must be `name`.
fn expect<'a>(
    attrs: &mut impl Iterator<Item = (&'a str, &'a str)>,
    name: &str,
) -> Result<&'a str, ScramError> {
    match attrs.next() {
        Some((n, value)) if n == name => Ok(value),
        Some(("m", _)) => Err(ScramError::UnsupportedExtension("m".into())),
        _ => Err(ScramError::Malformed(format!("expected attribute {name}="))),
    }
}

/// Trailing extension attributes: mandatory ones (`m`) and the ones Nerve cannot honour are refused, the rest
/// ignored, as RFC 5802 asks of optional extensions.
fn check_extensions<'a>(
    attrs: impl Iterator<Item = (&'a str, &'a str)>,
    refused: &[&str],
) -> Result<(), ScramError> {
    for (name, _) in attrs {
        if name == "m" || refused.contains(&name) {
            return Err(ScramError::UnsupportedExtension(name.to_owned()));
        }
        if RFC_ATTRIBUTES.contains(&name) {
            return Err(ScramError::Malformed(format!(
                "unexpected attribute {name}="
            )));
        }
    }
    Ok(())
}

/// RFC 5802 saslname: ',' and '=' are written `=2C` and `=3D`.
pub(super) fn escape_username(name: &str) -> String {
    name.replace('=', "=3D").replace(',', "=2C")
}

pub(super) fn unescape_username(text: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('=') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at + 1..at + 3);
        match escape {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return Err(malformed("bad '=' escape in user name")),
        }
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    if out.is_empty() {
        return Err(malformed("empty user name"));
    }
    Ok(out)
}

/// RFC 5802 `printable`: %x21-7E except ','.
fn check_nonce(nonce: &str) -> Result<(), ScramError> {
    if nonce.is_empty()
        || !nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
    {
        return Err(malformed("nonce is empty or not printable"));
    }
    Ok(())
}

pub(super) struct ClientFirst<'a> {
    /// `n,,` or `y,,` or `n,a=user,`: what `c=` in client-final must carry.
    pub(super) gs2_header: &'a str,
    pub(super) bare: &'a str,
    pub(super) username: String,
    pub(super) nonce: &'a str,
}

pub(super) fn parse_client_first(text: &str) -> Result<ClientFirst<'_>, ScramError> {
    let (flag, rest) = text
        .split_once(',')
        .ok_or_else(|| malformed("missing gs2 header"))?;
    match flag {
        "n" | "y" => {}
        _ if flag.starts_with("p=") => return Err(ScramError::UnsupportedChannelBinding),
        _ => return Err(malformed("bad channel binding flag")),
    }
    let (authzid, bare) = rest
        .split_once(',')
        .ok_or_else(|| malformed("missing gs2 header"))?;
    let gs2_header = &text[..flag.len() + authzid.len() + 2];
    let authzid = match authzid {
        "" => None,
        _ => {
            let escaped = authzid
                .strip_prefix("a=")
                .ok_or_else(|| malformed("bad authzid"))?;
            Some(unescape_username(escaped)?)
        }
    };

    let attrs = attributes(bare)?;
    let mut attrs = attrs.into_iter();
    let username = unescape_username(expect(&mut attrs, "n")?)?;
    let nonce = expect(&mut attrs, "r")?;
    check_nonce(nonce)?;
    // Kafka clients send tokenauth=true to log in with a delegation token, which Nerve does not issue.
    check_extensions(attrs, &["tokenauth"])?;

    if authzid.is_some_and(|a| a != username) {
        return Err(ScramError::AuthorizationIdMismatch);
    }
    Ok(ClientFirst {
        gs2_header,
        bare,
        username,
        nonce,
    })
}

pub(super) struct ServerFirst<'a> {
    pub(super) nonce: &'a str,
    pub(super) salt: Vec<u8>,
    pub(super) iterations: u32,
}

pub(super) fn parse_server_first(text: &str) -> Result<ServerFirst<'_>, ScramError> {
    if let Some(error) = text.strip_prefix("e=") {
        return Err(ScramError::Server(error.to_owned()));
    }
    let attrs = attributes(text)?;
    let mut attrs = attrs.into_iter();
    let nonce = expect(&mut attrs, "r")?;
    check_nonce(nonce)?;
    let salt = unb64("salt", expect(&mut attrs, "s")?)?;
    if salt.is_empty() {
        return Err(malformed("empty salt"));
    }
    let iterations = expect(&mut attrs, "i")?
        .parse::<u32>()
        .map_err(|_| malformed("iterations is not a number"))?;
    check_extensions(attrs, &[])?;
    Ok(ServerFirst {
        nonce,
        salt,
        iterations,
    })
}

pub(super) struct ClientFinal<'a> {
    pub(super) channel_binding: Vec<u8>,
    pub(super) nonce: &'a str,
    pub(super) proof: Vec<u8>,
    /// `client-final-message-without-proof`, part of the AuthMessage.
    pub(super) without_proof: &'a str,
}

pub(super) fn parse_client_final(text: &str) -> Result<ClientFinal<'_>, ScramError> {
    // The proof is last by definition: it signs everything before it.
    let (without_proof, proof) = text
        .rsplit_once(",p=")
        .ok_or_else(|| malformed("missing proof p="))?;
    let attrs = attributes(without_proof)?;
    let mut attrs = attrs.into_iter();
    let channel_binding = unb64("channel binding", expect(&mut attrs, "c")?)?;
    let nonce = expect(&mut attrs, "r")?;
    check_extensions(attrs, &[])?;
    let proof = unb64("proof", proof)?;
    Ok(ClientFinal {
        channel_binding,
        nonce,
        proof,
        without_proof,
    })
}

pub(super) enum ServerFinal {
    Verifier(Vec<u8>),
    Error(String),
}

pub(super) fn parse_server_final(text: &str) -> Result<ServerFinal, ScramError> {
    let attrs = attributes(text)?;
    match attrs.first() {
        Some(("v", verifier)) => Ok(ServerFinal::Verifier(unb64("verifier", verifier)?)),
        Some(("e", error)) => Ok(ServerFinal::Error((*error).to_owned())),
        _ => Err(malformed("expected v= or e=")),
    }
}
