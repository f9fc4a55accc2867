//! Nerve's security, as pure logic: no I/O, no async runtime, no storage.
//!
//! - [`principal`]: who a client is (`User:alice`).
//! - [`scram`]: SASL SCRAM-SHA-256/512 (RFC 5802, RFC 7677) as Kafka speaks it, server and client sides, and the
//!   stored credentials that let Nerve check passwords without keeping them.
//! - [`plain`]: SASL PLAIN (RFC 4616) message parsing.
//! - [`oauthbearer`]: SASL OAUTHBEARER (RFC 7628) with JWTs verified against a JSON Web Key Set.
//! - [`acl`]: Kafka's ACL model and an [`Authorizer`] with Kafka's decision rules.
//!
//! The broker drives the exchanges with bytes from the wire; every parser here treats them as untrusted and
//! answers with a typed error rather than a panic.

pub mod acl;
pub mod oauthbearer;
pub mod plain;
pub mod principal;
pub mod scram;

pub use acl::{
    AclBinding, AclBindingFilter, AclError, Authorizer, Operation, PatternType, Permission,
    ResourceType,
};
pub use plain::{parse_plain, PlainCredentials, PlainError};
pub use principal::{ParsePrincipalError, Principal};
pub use scram::{
    ScramClient, ScramCredential, ScramError, ScramMechanism, ScramOutcome, ScramServer,
};

#[cfg(any(test, feature = "testing"))]
pub mod testing;
