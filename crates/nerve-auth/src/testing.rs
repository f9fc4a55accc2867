//! An identity provider for tests: an ES256 key, its JSON Web Key Set, and tokens it signs.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};

pub struct TokenIssuer {
    pair: EcdsaKeyPair,
    kid: String,
}

impl TokenIssuer {
    /// A fresh key named `kid`.
    pub fn new(kid: &str) -> TokenIssuer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("a key is generated");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("the generated key loads");
        TokenIssuer {
            pair,
            kid: kid.to_string(),
        }
    }

    /// The public key as one JWK.
    pub fn jwk(&self) -> serde_json::Value {
        let point = self.pair.public_key().as_ref();
        serde_json::json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    /// A JWKS document with this key.
    pub fn jwks(&self) -> String {
        serde_json::json!({ "keys": [self.jwk()] }).to_string()
    }

    /// `claims` signed with `alg` in the header (the signature is ES256 whatever `alg` says).
    pub fn sign(&self, alg: &str, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": alg, "typ": "JWT", "kid": self.kid});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&SystemRandom::new(), signed.as_bytes())
            .expect("signing works");
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    /// A token for `sub` with audience `nerve`, valid for `seconds` from now (negative: expired); and
    /// its expiry in milliseconds since the Unix epoch.
    pub fn token(&self, sub: &str, seconds: i64) -> (String, i64) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let exp = now + seconds;
        let claims = serde_json::json!({"sub": sub, "aud": "nerve", "iat": now, "exp": exp});
        (self.sign("ES256", &claims), exp * 1000)
    }
}
