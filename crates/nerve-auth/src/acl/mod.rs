//! Kafka's ACL model (`org.apache.kafka.common.acl` and `resource`) and an [`Authorizer`] that decides as
//! Kafka's `StandardAuthorizer` does.
//!
//! The enums carry Kafka's wire codes (CreateAcls, DescribeAcls, DeleteAcls) and print as Kafka prints
//! them (`TRANSACTIONAL_ID`); they parse from any of `TransactionalId`, `transactional-id` and
//! `TRANSACTIONAL_ID`, which is what a CLI user types.

mod authorizer;
#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use authorizer::Authorizer;

use crate::principal::{ParsePrincipalError, Principal};

/// A resource name or pattern that stands for every name of its type (only with [`PatternType::Literal`]).
pub const WILDCARD_RESOURCE: &str = "*";
/// A principal in an ACL that stands for every principal, of any type.
pub const WILDCARD_PRINCIPAL: &str = "User:*";
/// A host in an ACL that stands for every host.
pub const WILDCARD_HOST: &str = "*";
/// The one name a CLUSTER resource has.
pub const CLUSTER_NAME: &str = "kafka-cluster";

macro_rules! kafka_enum {
    (
        $(#[$meta:meta])*
        $name:ident { $($variant:ident = $code:literal => $text:literal,)+ }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        #[repr(i8)]
        pub enum $name {
            $($variant = $code,)+
        }

        impl $name {
            /// Every value, in code order.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)+];

            /// The wire code.
            pub fn code(self) -> i8 {
                self as i8
            }

            pub fn from_code(code: i8) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)+
                    _ => None,
                }
            }

            /// The name Kafka prints, e.g. in kafka-acls.sh output.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = AclError;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let wanted = spelling_key(s);
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| spelling_key(v.as_str()) == wanted)
                    .ok_or_else(|| AclError::UnknownName { kind: stringify!($name), name: s.to_owned() })
            }
        }
    };
}

/// Case, '_' and '-' do not count: `DescribeConfigs`, `describe-configs`, `DESCRIBE_CONFIGS` are one name.
fn spelling_key(s: &str) -> String {
    s.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

kafka_enum! {
    /// What kind of thing an ACL protects. `SUBJECT` (code 100) is Nerve's own, a schema registry subject
    /// as Redpanda's registry ACLs name it: Kafka has no such type, and 100 keeps clear of its codes.
    ResourceType {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Topic = 2 => "TOPIC",
        Group = 3 => "GROUP",
        Cluster = 4 => "CLUSTER",
        TransactionalId = 5 => "TRANSACTIONAL_ID",
        DelegationToken = 6 => "DELEGATION_TOKEN",
        User = 7 => "USER",
        Subject = 100 => "SUBJECT",
    }
}

kafka_enum! {
    /// How an ACL's resource name is read. `Any` and `Match` exist only in filters.
    PatternType {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Match = 2 => "MATCH",
        Literal = 3 => "LITERAL",
        Prefixed = 4 => "PREFIXED",
    }
}

kafka_enum! {
    /// What a request does to a resource.
    Operation {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        All = 2 => "ALL",
        Read = 3 => "READ",
        Write = 4 => "WRITE",
        Create = 5 => "CREATE",
        Delete = 6 => "DELETE",
        Alter = 7 => "ALTER",
        Describe = 8 => "DESCRIBE",
        ClusterAction = 9 => "CLUSTER_ACTION",
        DescribeConfigs = 10 => "DESCRIBE_CONFIGS",
        AlterConfigs = 11 => "ALTER_CONFIGS",
        IdempotentWrite = 12 => "IDEMPOTENT_WRITE",
        CreateTokens = 13 => "CREATE_TOKENS",
        DescribeTokens = 14 => "DESCRIBE_TOKENS",
    }
}

kafka_enum! {
    Permission {
        Unknown = 0 => "UNKNOWN",
        Any = 1 => "ANY",
        Deny = 2 => "DENY",
        Allow = 3 => "ALLOW",
    }
}

impl Operation {
    /// Whether an ALLOW for `self` grants `requested`: ALL grants everything, and Kafka lets the right to
    /// read, write, delete or alter a resource include describing it (and altering configs, describing them).
    pub fn implies(self, requested: Operation) -> bool {
        use Operation::*;
        self == All
            || self == requested
            || match requested {
                Describe => matches!(self, Read | Write | Delete | Alter),
                DescribeConfigs => self == AlterConfigs,
                _ => false,
            }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("unknown {kind} {name:?}")]
    UnknownName { kind: &'static str, name: String },
    /// UNKNOWN, ANY or MATCH where a binding needs a definite value.
    #[error("{field} {value} is not allowed here")]
    Indefinite { field: &'static str, value: String },
    #[error(transparent)]
    InvalidPrincipal(#[from] ParsePrincipalError),
    #[error("the host must not be empty (use * for any host)")]
    EmptyHost,
    #[error("the resource name must not be empty")]
    EmptyResourceName,
    #[error("a CLUSTER resource must be the literal name {CLUSTER_NAME}, not {0:?}")]
    InvalidClusterResource(String),
    #[error("the wildcard resource name * is only allowed with the LITERAL pattern type")]
    PrefixedWildcard,
}

fn indefinite(field: &'static str, value: impl fmt::Display) -> AclError {
    AclError::Indefinite {
        field,
        value: value.to_string(),
    }
}

/// One ACL: `principal` is allowed or denied `operation` on the resources named by `resource_name` and
/// `pattern_type`, from `host`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern_type: PatternType,
    /// `Type:name`, or [`WILDCARD_PRINCIPAL`].
    pub principal: String,
    /// A client address as the broker prints it, or [`WILDCARD_HOST`].
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBinding {
    /// The checks CreateAcls makes before storing a binding.
    pub fn validate(&self) -> Result<(), AclError> {
        use ResourceType as R;
        if matches!(self.resource_type, R::Unknown | R::Any) {
            return Err(indefinite("resource type", self.resource_type));
        }
        if !matches!(
            self.pattern_type,
            PatternType::Literal | PatternType::Prefixed
        ) {
            return Err(indefinite("pattern type", self.pattern_type));
        }
        if matches!(self.operation, Operation::Unknown | Operation::Any) {
            return Err(indefinite("operation", self.operation));
        }
        if matches!(self.permission, Permission::Unknown | Permission::Any) {
            return Err(indefinite("permission", self.permission));
        }
        self.principal.parse::<Principal>()?;
        if self.host.is_empty() {
            return Err(AclError::EmptyHost);
        }
        if self.resource_name.is_empty() {
            return Err(AclError::EmptyResourceName);
        }
        if self.resource_type == R::Cluster
            && (self.resource_name != CLUSTER_NAME || self.pattern_type != PatternType::Literal)
        {
            return Err(AclError::InvalidClusterResource(self.resource_name.clone()));
        }
        if self.resource_name == WILDCARD_RESOURCE && self.pattern_type != PatternType::Literal {
            return Err(AclError::PrefixedWildcard);
        }
        Ok(())
    }
}

/// Selects bindings for DescribeAcls and DeleteAcls: `None` names and `Any` enums match anything.
///
/// [`PatternType::Match`] with a name selects the bindings that would apply to a resource of that name:
/// LITERAL with the name itself, LITERAL `*`, and PREFIXED whose prefix starts the name.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclBindingFilter {
    pub resource_type: ResourceType,
    pub resource_name: Option<String>,
    pub pattern_type: PatternType,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Operation,
    pub permission: Permission,
}

impl AclBindingFilter {
    /// Matches every binding.
    pub const ANY: Self = Self {
        resource_type: ResourceType::Any,
        resource_name: None,
        pattern_type: PatternType::Any,
        principal: None,
        host: None,
        operation: Operation::Any,
        permission: Permission::Any,
    };

    /// Ported from Kafka's `ResourcePatternFilter.matches` and `AccessControlEntryFilter.matches`.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_resource(binding) && self.matches_entry(binding)
    }

    fn matches_resource(&self, b: &AclBinding) -> bool {
        if self.resource_type != ResourceType::Any && self.resource_type != b.resource_type {
            return false;
        }
        if !matches!(self.pattern_type, PatternType::Any | PatternType::Match)
            && self.pattern_type != b.pattern_type
        {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern_type != PatternType::Match {
            return *name == b.resource_name;
        }
        match b.pattern_type {
            PatternType::Literal => {
                *name == b.resource_name || b.resource_name == WILDCARD_RESOURCE
            }
            PatternType::Prefixed => name.starts_with(&b.resource_name),
            _ => false,
        }
    }

    fn matches_entry(&self, b: &AclBinding) -> bool {
        self.principal.as_ref().is_none_or(|p| *p == b.principal)
            && self.host.as_ref().is_none_or(|h| *h == b.host)
            && (self.operation == Operation::Any || self.operation == b.operation)
            && (self.permission == Permission::Any || self.permission == b.permission)
    }

    /// DeleteAcls refuses filters with an UNKNOWN value: they would match nothing, which is surely not what
    /// the client meant.
    pub fn validate(&self) -> Result<(), AclError> {
        if self.resource_type == ResourceType::Unknown {
            return Err(indefinite("resource type", self.resource_type));
        }
        if self.pattern_type == PatternType::Unknown {
            return Err(indefinite("pattern type", self.pattern_type));
        }
        if self.operation == Operation::Unknown {
            return Err(indefinite("operation", self.operation));
        }
        if self.permission == Permission::Unknown {
            return Err(indefinite("permission", self.permission));
        }
        Ok(())
    }
}

/// The filter that matches exactly this binding.
impl From<&AclBinding> for AclBindingFilter {
    fn from(b: &AclBinding) -> Self {
        Self {
            resource_type: b.resource_type,
            resource_name: Some(b.resource_name.clone()),
            pattern_type: b.pattern_type,
            principal: Some(b.principal.clone()),
            host: Some(b.host.clone()),
            operation: b.operation,
            permission: b.permission,
        }
    }
}
