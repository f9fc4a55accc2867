//! The RFC 5802 primitives over either hash.

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use super::ScramMechanism;

pub(super) const CLIENT_KEY: &[u8] = b"Client Key";
pub(super) const SERVER_KEY: &[u8] = b"Server Key";

pub(super) fn hash(mechanism: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

pub(super) fn hmac(mechanism: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => hmac_with::<Hmac<Sha256>>(key, data),
        ScramMechanism::Sha512 => hmac_with::<Hmac<Sha512>>(key, data),
    }
}

/// `Hi(str, salt, i)`: PBKDF2 with HMAC as the PRF and one output block.
pub(super) fn hi(
    mechanism: ScramMechanism,
    password: &[u8],
    salt: &[u8],
    iterations: u32,
) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => hi_with::<Hmac<Sha256>>(password, salt, iterations),
        ScramMechanism::Sha512 => hi_with::<Hmac<Sha512>>(password, salt, iterations),
    }
}

pub(super) fn xor(a: &[u8], b: &[u8]) -> Vec<u8> {
    a.iter().zip(b).map(|(x, y)| x ^ y).collect()
}

/// Constant time in the contents; a length difference returns false at once, and lengths are not secret.
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

fn keyed<M: Mac + KeyInit>(key: &[u8]) -> M {
    // HMAC takes keys of any length (longer ones are hashed), so this cannot fail.
    <M as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

fn hmac_with<M: Mac + KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = keyed::<M>(key);
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hi_with<M: Mac + KeyInit + Clone>(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    // Keyed once and cloned per round: the key schedule is the expensive half of an HMAC.
    let prf = keyed::<M>(password);
    let mut mac = prf.clone();
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut u = mac.finalize().into_bytes();
    let mut out = u.clone();
    for _ in 1..iterations {
        let mut mac = prf.clone();
        mac.update(&u);
        u = mac.finalize().into_bytes();
        out.iter_mut().zip(u.iter()).for_each(|(o, x)| *o ^= x);
    }
    out.to_vec()
}
