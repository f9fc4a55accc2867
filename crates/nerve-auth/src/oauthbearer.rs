//! SASL OAUTHBEARER (RFC 7628, KIP-255) with JSON Web Tokens checked against a JSON Web Key Set.
//!
//! The client's message is `gs2-header \x01 auth=Bearer <token> \x01 [key=value \x01]* \x01`. The token is a
//! JWS compact serialization (RFC 7515) signed with one of the set's keys (RSA: RS256/384/512; EC:
//! ES256/384), whose `exp` has not passed and whose `nbf` and `iat` are not in the future (with a small
//! clock skew), and whose `iss` and `aud` are the configured ones when configured. The principal is
//! `User:` and the `sub` claim (or another configured claim). Signatures are verified with `ring`; nothing
//! here trusts the token's own `alg` beyond picking among the algorithms the key allows.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self, UnparsedPublicKey};
use serde::Deserialize;

/// Why a message or token was refused, or a key set could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    #[error("malformed OAUTHBEARER message: {0}")]
    Malformed(&'static str),
    #[error("malformed token: {0}")]
    MalformedToken(&'static str),
    #[error("unsupported token algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    #[error("no key in the key set verifies the token (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no expiry (exp)")]
    NoExpiry,
    #[error("the token's issuer {0:?} is not the expected one")]
    WrongIssuer(Option<String>),
    #[error("the token's audience is not the expected one")]
    WrongAudience,
    #[error("the token has no {0:?} claim naming the principal")]
    NoPrincipal(String),
    #[error("the authorization id {authzid:?} is not the token's principal {principal:?}")]
    AuthorizationIdMismatch { authzid: String, principal: String },
    #[error("invalid key set: {0}")]
    KeySet(String),
}

/// What the client sent.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientMessage {
    /// The gs2 header's `a=` (authorization id), if any.
    pub authzid: Option<String>,
    pub token: String,
    /// SASL extensions (KIP-342) other than `auth`.
    pub extensions: HashMap<String, String>,
}

impl std::fmt::Debug for ClientMessage {
    // A bearer token is a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMessage")
            .field("authzid", &self.authzid)
            .field("extensions", &self.extensions)
            .finish_non_exhaustive()
    }
}

/// The largest client message accepted: a token of a few KiB is normal, megabytes are not.
pub const MAX_MESSAGE_LEN: usize = 64 * 1024;

/// Parses the client's initial response.
pub fn parse_client_message(msg: &[u8]) -> Result<ClientMessage, OAuthError> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(OAuthError::Malformed("longer than 64 KiB"));
    }
    let text = std::str::from_utf8(msg).map_err(|_| OAuthError::Malformed("not UTF-8"))?;
    let (gs2, rest) = text
        .split_once('\x01')
        .ok_or(OAuthError::Malformed("no \\x01 after the gs2 header"))?;
    let mut gs2_parts = gs2.split(',');
    match gs2_parts.next() {
        Some("n" | "y") => {}
        _ => return Err(OAuthError::Malformed("gs2 header must start with n or y")),
    }
    let authzid = match gs2_parts.next() {
        Some("") | None => None,
        Some(a) => Some(
            a.strip_prefix("a=")
                .ok_or(OAuthError::Malformed("bad authorization id"))?
                .replace("=2C", ",")
                .replace("=3D", "="),
        ),
    };
    let body = rest
        .strip_suffix("\x01\x01")
        .ok_or(OAuthError::Malformed("not terminated by \\x01\\x01"))?;
    let mut token = None;
    let mut extensions = HashMap::new();
    for pair in body.split('\x01') {
        let (key, value) = pair
            .split_once('=')
            .ok_or(OAuthError::Malformed("a key-value pair without '='"))?;
        if key == "auth" {
            let bearer = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or(OAuthError::Malformed("auth is not a Bearer token"))?;
            token = Some(bearer.trim().to_string());
        } else {
            extensions.insert(key.to_string(), value.to_string());
        }
    }
    Ok(ClientMessage {
        authzid,
        token: token.ok_or(OAuthError::Malformed("no auth=Bearer"))?,
        extensions,
    })
}

/// What a valid token says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidToken {
    /// The principal's name (the `sub` claim, or the configured one).
    pub principal_name: String,
    /// When the token expires, milliseconds since the Unix epoch: the session may not outlive it.
    pub expires_at_ms: i64,
}

/// The checks a token must pass besides its signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expectations {
    /// `iss` must be this, when set.
    pub issuer: Option<String>,
    /// `aud` (a string or a list) must contain this, when set.
    pub audience: Option<String>,
    /// The claim naming the principal; `sub` when unset.
    pub principal_claim: Option<String>,
    /// Seconds of clock difference tolerated for `exp`, `nbf` and `iat`.
    pub clock_skew_seconds: i64,
}

/// Verifies tokens with a key set.
pub struct JwtValidator {
    keys: Vec<Key>,
    expect: Expectations,
}

struct Key {
    kid: Option<String>,
    kind: KeyKind,
}

enum KeyKind {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (0x04 || x || y) on the curve of `alg`.
    Ec {
        curve: Curve,
        point: Vec<u8>,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Curve {
    P256,
    P384,
}

#[derive(Deserialize)]
struct JwkSet {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kty: String,
    kid: Option<String>,
    #[serde(rename = "use")]
    usage: Option<String>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

fn b64(field: &'static str, text: &str) -> Result<Vec<u8>, OAuthError> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| OAuthError::MalformedToken(field))
}

impl JwtValidator {
    /// Reads a JWKS document (`{"keys": [...]}`); keys for encryption or of other types are skipped, and a
    /// set without a usable key is an error.
    pub fn from_jwks(json: &[u8], expect: Expectations) -> Result<Self, OAuthError> {
        let set: JwkSet =
            serde_json::from_slice(json).map_err(|e| OAuthError::KeySet(e.to_string()))?;
        let mut keys = Vec::new();
        for jwk in set.keys {
            if jwk.usage.as_deref().is_some_and(|u| u != "sig") {
                continue;
            }
            let field = |name: &'static str, value: Option<String>| {
                let value =
                    value.ok_or_else(|| OAuthError::KeySet(format!("a key without {name}")))?;
                URL_SAFE_NO_PAD
                    .decode(value.trim_end_matches('='))
                    .map_err(|_| OAuthError::KeySet(format!("{name} is not base64url")))
            };
            let kind = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
                ("RSA", _) => KeyKind::Rsa {
                    n: field("n", jwk.n)?,
                    e: field("e", jwk.e)?,
                },
                ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                    let curve = if crv == "P-256" {
                        Curve::P256
                    } else {
                        Curve::P384
                    };
                    let mut point = vec![0x04];
                    point.extend(field("x", jwk.x)?);
                    point.extend(field("y", jwk.y)?);
                    KeyKind::Ec { curve, point }
                }
                _ => continue,
            };
            keys.push(Key { kid: jwk.kid, kind });
        }
        if keys.is_empty() {
            return Err(OAuthError::KeySet(
                "no RSA or EC (P-256, P-384) signing key".into(),
            ));
        }
        Ok(JwtValidator { keys, expect })
    }

    /// Checks `token`'s signature and claims at `now_seconds` (since the Unix epoch).
    pub fn validate(&self, token: &str, now_seconds: i64) -> Result<ValidToken, OAuthError> {
        let mut parts = token.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(OAuthError::MalformedToken("not three dot-separated parts"));
        };
        let header: Header = serde_json::from_slice(&b64("header", header_b64)?)
            .map_err(|_| OAuthError::MalformedToken("header"))?;
        let signature = b64("signature", signature_b64)?;
        let signed = &token.as_bytes()[..header_b64.len() + 1 + claims_b64.len()];
        let candidates: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.kid == header.kid)
            .collect();
        if candidates.is_empty() {
            return Err(OAuthError::UnknownKey(header.kid));
        }
        let outcomes: Vec<Result<(), OAuthError>> = candidates
            .iter()
            .map(|key| verify(key, &header.alg, signed, &signature))
            .collect();
        if !outcomes.iter().any(Result::is_ok) {
            // An algorithm no candidate key allows says more than "bad signature".
            let unsupported = outcomes
                .iter()
                .all(|o| matches!(o, Err(OAuthError::UnsupportedAlgorithm(_))));
            return Err(if unsupported {
                OAuthError::UnsupportedAlgorithm(header.alg)
            } else {
                OAuthError::BadSignature
            });
        }
        let claims: serde_json::Value = serde_json::from_slice(&b64("claims", claims_b64)?)
            .map_err(|_| OAuthError::MalformedToken("claims"))?;
        self.check_claims(&claims, now_seconds)
    }

    fn check_claims(&self, claims: &serde_json::Value, now: i64) -> Result<ValidToken, OAuthError> {
        let skew = self.expect.clock_skew_seconds;
        let number = |name: &str| claims.get(name).and_then(serde_json::Value::as_i64);
        let exp = number("exp").ok_or(OAuthError::NoExpiry)?;
        if now > exp + skew {
            return Err(OAuthError::Expired);
        }
        for name in ["nbf", "iat"] {
            if number(name).is_some_and(|t| t > now + skew) {
                return Err(OAuthError::NotYetValid);
            }
        }
        if let Some(issuer) = &self.expect.issuer {
            let iss = claims.get("iss").and_then(|v| v.as_str());
            if iss != Some(issuer.as_str()) {
                return Err(OAuthError::WrongIssuer(iss.map(str::to_string)));
            }
        }
        if let Some(audience) = &self.expect.audience {
            let matches = match claims.get("aud") {
                Some(serde_json::Value::String(a)) => a == audience,
                Some(serde_json::Value::Array(list)) => {
                    list.iter().any(|a| a.as_str() == Some(audience.as_str()))
                }
                _ => false,
            };
            if !matches {
                return Err(OAuthError::WrongAudience);
            }
        }
        let claim = self.expect.principal_claim.as_deref().unwrap_or("sub");
        let principal_name = claims
            .get(claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OAuthError::NoPrincipal(claim.to_string()))?
            .to_string();
        Ok(ValidToken {
            principal_name,
            expires_at_ms: exp.saturating_mul(1000),
        })
    }
}

fn verify(key: &Key, alg: &str, signed: &[u8], signature: &[u8]) -> Result<(), OAuthError> {
    let unsupported = || OAuthError::UnsupportedAlgorithm(alg.to_string());
    match &key.kind {
        KeyKind::Rsa { n, e } => {
            let params = match alg {
                "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
                "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
                "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
                _ => return Err(unsupported()),
            };
            signature::RsaPublicKeyComponents { n, e }
                .verify(params, signed, signature)
                .map_err(|_| OAuthError::BadSignature)
        }
        KeyKind::Ec { curve, point } => {
            let algorithm = match (alg, curve) {
                ("ES256", Curve::P256) => &signature::ECDSA_P256_SHA256_FIXED,
                ("ES384", Curve::P384) => &signature::ECDSA_P384_SHA384_FIXED,
                _ => return Err(unsupported()),
            };
            UnparsedPublicKey::new(algorithm, point)
                .verify(signed, signature)
                .map_err(|_| OAuthError::BadSignature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::TokenIssuer as Issuer;

    const NOW: i64 = 1_800_000_000;

    fn validator(issuers: &[&Issuer], expect: Expectations) -> JwtValidator {
        let jwks = serde_json::json!({"keys": issuers.iter().map(|i| i.jwk()).collect::<Vec<_>>()});
        JwtValidator::from_jwks(jwks.to_string().as_bytes(), expect).unwrap()
    }

    fn claims(sub: &str, exp: i64) -> serde_json::Value {
        serde_json::json!({"sub": sub, "exp": exp, "iat": NOW - 10, "iss": "https://idp.test", "aud": ["nerve"]})
    }

    #[test]
    fn a_token_signed_by_a_key_of_the_set_names_its_subject() {
        let idp = Issuer::new("k1");
        let other = Issuer::new("k2");
        let v = validator(&[&other, &idp], Expectations::default());
        let token = idp.sign("ES256", &claims("alice", NOW + 300));
        assert_eq!(
            v.validate(&token, NOW).unwrap(),
            ValidToken {
                principal_name: "alice".into(),
                expires_at_ms: (NOW + 300) * 1000
            }
        );
    }

    #[test]
    fn forged_expired_early_or_foreign_tokens_are_refused() {
        let idp = Issuer::new("k1");
        let mallory = Issuer::new("k1");
        let v = validator(
            &[&idp],
            Expectations {
                issuer: Some("https://idp.test".into()),
                audience: Some("nerve".into()),
                clock_skew_seconds: 30,
                ..Expectations::default()
            },
        );
        let good = idp.sign("ES256", &claims("alice", NOW + 300));
        assert!(v.validate(&good, NOW).is_ok());
        assert_eq!(
            v.validate(&mallory.sign("ES256", &claims("alice", NOW + 300)), NOW),
            Err(OAuthError::BadSignature)
        );
        assert_eq!(
            v.validate(&idp.sign("ES256", &claims("alice", NOW - 60)), NOW),
            Err(OAuthError::Expired)
        );
        assert!(
            v.validate(&idp.sign("ES256", &claims("alice", NOW - 10)), NOW)
                .is_ok(),
            "within the skew"
        );
        let mut early = claims("alice", NOW + 300);
        early["nbf"] = serde_json::json!(NOW + 600);
        assert_eq!(
            v.validate(&idp.sign("ES256", &early), NOW),
            Err(OAuthError::NotYetValid)
        );
        let mut foreign = claims("alice", NOW + 300);
        foreign["iss"] = serde_json::json!("https://evil.test");
        assert!(matches!(
            v.validate(&idp.sign("ES256", &foreign), NOW),
            Err(OAuthError::WrongIssuer(_))
        ));
        let mut other_audience = claims("alice", NOW + 300);
        other_audience["aud"] = serde_json::json!("billing");
        assert_eq!(
            v.validate(&idp.sign("ES256", &other_audience), NOW),
            Err(OAuthError::WrongAudience)
        );
        let mut no_exp = claims("alice", 0);
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(
            v.validate(&idp.sign("ES256", &no_exp), NOW),
            Err(OAuthError::NoExpiry)
        );
        // `alg: none` and algorithms the key does not allow.
        let unsigned = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(claims("alice", NOW + 300).to_string())
        );
        assert!(v.validate(&unsigned, NOW).is_err());
        assert!(matches!(
            v.validate(&idp.sign("HS256", &claims("alice", NOW + 300)), NOW),
            Err(OAuthError::UnsupportedAlgorithm(_))
        ));
        // A token whose claims were changed after signing.
        let parts: Vec<&str> = good.split('.').collect();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims("admin", NOW + 300).to_string()),
            parts[2]
        );
        assert_eq!(v.validate(&tampered, NOW), Err(OAuthError::BadSignature));
    }

    #[test]
    fn garbage_tokens_and_key_sets_are_errors_not_panics() {
        let idp = Issuer::new("k1");
        let v = validator(&[&idp], Expectations::default());
        for token in [
            "",
            ".",
            "..",
            "a.b.c",
            "a.b.c.d",
            "!!.??.**",
            "eyJ9.eyJ9.AA",
        ] {
            assert!(v.validate(token, NOW).is_err(), "{token:?}");
        }
        for jwks in [
            &b""[..],
            b"{}",
            b"{\"keys\": []}",
            b"{\"keys\": [{\"kty\": \"oct\"}]}",
            b"[1,2",
        ] {
            assert!(JwtValidator::from_jwks(jwks, Expectations::default()).is_err());
        }
    }

    #[test]
    fn client_messages_are_parsed_as_rfc_7628_says() {
        let message =
            parse_client_message(b"n,a=alice,\x01auth=Bearer abc.def.ghi\x01traceId=7\x01\x01")
                .unwrap();
        assert_eq!(message.authzid.as_deref(), Some("alice"));
        assert_eq!(message.token, "abc.def.ghi");
        assert_eq!(
            message.extensions.get("traceId").map(String::as_str),
            Some("7")
        );
        assert!(
            !format!("{message:?}").contains("abc.def"),
            "Debug hides the token"
        );
        let bare = parse_client_message(b"n,,\x01auth=Bearer t\x01\x01").unwrap();
        assert_eq!(bare.authzid, None);
        for bad in [
            &b""[..],
            b"n,,",
            b"p=x,,\x01auth=Bearer t\x01\x01",
            b"n,,\x01auth=Basic t\x01\x01",
            b"n,,\x01auth=Bearer t\x01",
            b"n,,\x01other=1\x01\x01",
            b"n,,\x01novalue\x01\x01",
            b"\xff\xfe",
        ] {
            assert!(parse_client_message(bad).is_err(), "{bad:?}");
        }
    }
}
