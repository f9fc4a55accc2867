//! Kafka principals: a type and a name, written `Type:name` (`User:alice`).

use std::fmt;
use std::str::FromStr;

/// An authenticated identity, as ACLs and super-user lists name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Principal {
    /// `User` for everything SASL authenticates; Kafka allows other types from custom principal builders.
    pub kind: String,
    pub name: String,
}

impl Principal {
    /// Kafka's type for principals that SASL and TLS authenticate.
    pub const USER_TYPE: &'static str = "User";
    /// The name Kafka gives a client on an unauthenticated listener.
    pub const ANONYMOUS_NAME: &'static str = "ANONYMOUS";

    pub fn user(name: impl Into<String>) -> Self {
        Self {
            kind: Self::USER_TYPE.to_owned(),
            name: name.into(),
        }
    }

    /// `User:ANONYMOUS`, the principal of a client on a PLAINTEXT listener.
    pub fn anonymous() -> Self {
        Self::user(Self::ANONYMOUS_NAME)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind, self.name)
    }
}

/// A principal string that is not `Type:name` with both parts non-empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid principal {0:?}: expected Type:name, e.g. User:alice")]
pub struct ParsePrincipalError(pub String);

impl FromStr for Principal {
    type Err = ParsePrincipalError;

    /// Splits at the first ':' as Kafka's `SecurityUtils.parseKafkaPrincipal` does, so a name may itself
    /// contain ':' (`User:CN=a:b`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once(':') {
            Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(Self {
                kind: kind.to_owned(),
                name: name.to_owned(),
            }),
            _ => Err(ParsePrincipalError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_and_parse_round_trip() {
        for p in [
            Principal::user("alice"),
            Principal::anonymous(),
            Principal::user("CN=a:b"),
        ] {
            assert_eq!(p.to_string().parse::<Principal>().unwrap(), p);
        }
        assert_eq!(Principal::anonymous().to_string(), "User:ANONYMOUS");
    }

    #[test]
    fn name_keeps_everything_after_the_first_colon() {
        let p: Principal = "Group:a:b:c".parse().unwrap();
        assert_eq!(p.kind, "Group");
        assert_eq!(p.name, "a:b:c");
    }

    #[test]
    fn malformed_principals_are_refused() {
        for s in ["", "alice", ":alice", "User:", ":"] {
            assert!(s.parse::<Principal>().is_err(), "{s:?} should not parse");
        }
    }
}
