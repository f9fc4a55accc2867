//! SASL PLAIN (RFC 4616): one client message, `authzid NUL authcid NUL passwd`.
//!
//! Parsing only: the broker checks the password with
//! [`ScramCredential::verify_password`](crate::scram::ScramCredential::verify_password), so PLAIN logins use
//! the same stored credentials as SCRAM.

use std::fmt;

/// Far above RFC 4616's 255-byte fields, far below anything that could hurt.
pub const MAX_MESSAGE_LEN: usize = 4096;

#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    pub username: String,
    pub password: String,
}

/// The password stays out of logs.
impl fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("SASL/PLAIN message of {0} bytes is too long")]
    TooLong(usize),
    #[error("malformed SASL/PLAIN message: {0}")]
    Malformed(&'static str),
    #[error("SASL/PLAIN user name not specified")]
    EmptyUsername,
    #[error("SASL/PLAIN password not specified")]
    EmptyPassword,
    #[error("authorization id differs from the user name")]
    AuthorizationIdMismatch,
}

/// Parses a PLAIN message as Kafka's `PlainSaslServer` does: exactly three NUL-separated fields, user name
/// and password non-empty, an authorization id only if it names the user itself.
pub fn parse_plain(msg: &[u8]) -> Result<PlainCredentials, PlainError> {
    if msg.len() > MAX_MESSAGE_LEN {
        return Err(PlainError::TooLong(msg.len()));
    }
    let text = std::str::from_utf8(msg).map_err(|_| PlainError::Malformed("not UTF-8"))?;
    let mut fields = text.split('\0');
    let (Some(authzid), Some(username), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(PlainError::Malformed(
            "expected authzid NUL authcid NUL password",
        ));
    };
    if username.is_empty() {
        return Err(PlainError::EmptyUsername);
    }
    if password.is_empty() {
        return Err(PlainError::EmptyPassword);
    }
    if !authzid.is_empty() && authzid != username {
        return Err(PlainError::AuthorizationIdMismatch);
    }
    Ok(PlainCredentials {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_with_and_without_authzid() {
        for msg in [&b"\0alice\0secret"[..], b"alice\0alice\0secret"] {
            let creds = parse_plain(msg).unwrap();
            assert_eq!(creds.username, "alice");
            assert_eq!(creds.password, "secret");
        }
    }

    #[test]
    fn password_may_hold_any_utf8_but_nul() {
        let creds = parse_plain("\0bob\0pä ss:wörd=,".as_bytes()).unwrap();
        assert_eq!(creds.password, "pä ss:wörd=,");
    }

    #[test]
    fn bad_messages_are_refused() {
        let cases: &[(&[u8], PlainError)] = &[
            (
                b"",
                PlainError::Malformed("expected authzid NUL authcid NUL password"),
            ),
            (
                b"alice",
                PlainError::Malformed("expected authzid NUL authcid NUL password"),
            ),
            (
                b"\0alice",
                PlainError::Malformed("expected authzid NUL authcid NUL password"),
            ),
            (
                b"\0alice\0pw\0",
                PlainError::Malformed("expected authzid NUL authcid NUL password"),
            ),
            (b"\0\0pw", PlainError::EmptyUsername),
            (b"\0alice\0", PlainError::EmptyPassword),
            (b"mallory\0alice\0pw", PlainError::AuthorizationIdMismatch),
            (b"\0al\xffice\0pw", PlainError::Malformed("not UTF-8")),
        ];
        for (msg, expected) in cases {
            assert_eq!(parse_plain(msg).unwrap_err(), *expected, "{msg:?}");
        }
    }

    #[test]
    fn absurdly_long_messages_are_refused_before_parsing() {
        let msg = vec![b'a'; MAX_MESSAGE_LEN + 1];
        assert_eq!(
            parse_plain(&msg).unwrap_err(),
            PlainError::TooLong(MAX_MESSAGE_LEN + 1)
        );
    }

    #[test]
    fn debug_hides_the_password() {
        let creds = parse_plain(b"\0alice\0hunter2").unwrap();
        assert!(!format!("{creds:?}").contains("hunter2"));
    }
}
