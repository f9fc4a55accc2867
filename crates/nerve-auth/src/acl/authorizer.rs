//! The per-request decision, on an index built once per ACL change.

use std::collections::{HashMap, HashSet};
use std::fmt;

use parking_lot::RwLock;

use super::{
    AclBinding, AclBindingFilter, Operation, PatternType, Permission, ResourceType, WILDCARD_HOST,
    WILDCARD_PRINCIPAL, WILDCARD_RESOURCE,
};
use crate::principal::Principal;

/// Decides whether a principal may do an operation on a resource, with Kafka's rules:
///
/// 1. super users may do anything;
/// 2. the ACLs that apply to a resource are those of its type that are LITERAL with its name, LITERAL `*`,
///    or PREFIXED with a prefix of its name;
/// 3. if none apply (to anyone, for anything), the answer is `allow_everyone_if_no_acl_found`;
/// 4. a matching DENY for the operation (or ALL) refuses, whatever allows it;
/// 5. a matching ALLOW for the operation, ALL, or an operation that [implies](Operation::implies) it,
///    permits;
/// 6. nothing else does.
///
/// An ACL matches a principal named in it or `User:*`, and a host named in it or `*`.
pub struct Authorizer {
    super_users: HashSet<Principal>,
    allow_everyone_if_no_acl_found: bool,
    acls: RwLock<Index>,
}

#[derive(Default)]
struct Index {
    bindings: Vec<AclBinding>,
    by_type: HashMap<ResourceType, ResourceAcls>,
}

/// The ACLs of one resource type, so a lookup costs a few hash probes whatever the number of ACLs.
#[derive(Default)]
struct ResourceAcls {
    /// Keyed by exact name, `*` included.
    literal: HashMap<String, Vec<Entry>>,
    prefixed: HashMap<String, Vec<Entry>>,
    /// The distinct lengths of the prefixes, so a name is probed once per length, not once per prefix.
    prefix_lens: Vec<usize>,
}

/// A binding reduced to what the decision reads.
struct Entry {
    /// `None` for `User:*`.
    principal: Option<Principal>,
    /// `None` for `*`.
    host: Option<String>,
    operation: Operation,
    permission: Permission,
}

impl Entry {
    fn applies_to(&self, principal: &Principal, host: &str) -> bool {
        self.principal.as_ref().is_none_or(|p| p == principal)
            && self.host.as_deref().is_none_or(|h| h == host)
    }
}

impl Authorizer {
    pub fn new(
        super_users: impl IntoIterator<Item = Principal>,
        allow_everyone_if_no_acl_found: bool,
    ) -> Self {
        Self {
            super_users: super_users.into_iter().collect(),
            allow_everyone_if_no_acl_found,
            acls: RwLock::new(Index::default()),
        }
    }

    /// Replaces every ACL. Bindings that [`AclBinding::validate`] would refuse are kept (so
    /// [`acls`](Self::acls) returns what was set) but those the decision cannot read (a pattern type other
    /// than LITERAL or PREFIXED, a principal that is not `Type:name`) never apply.
    pub fn set_acls(&self, bindings: Vec<AclBinding>) {
        let index = Index::build(bindings);
        *self.acls.write() = index;
    }

    pub fn acls(&self) -> Vec<AclBinding> {
        self.acls.read().bindings.clone()
    }

    /// The ACLs a DescribeAcls with this filter returns.
    pub fn matching_acls(&self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        self.acls
            .read()
            .bindings
            .iter()
            .filter(|b| filter.matches(b))
            .cloned()
            .collect()
    }

    pub fn is_super_user(&self, principal: &Principal) -> bool {
        self.super_users.contains(principal)
    }

    pub fn allow_everyone_if_no_acl_found(&self) -> bool {
        self.allow_everyone_if_no_acl_found
    }

    /// Whether `principal`, connected from `host`, may do `operation` on the named resource.
    ///
    /// ANY and UNKNOWN are not requests a broker makes: they are refused, even to super users.
    pub fn authorize(
        &self,
        principal: &Principal,
        host: &str,
        operation: Operation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> bool {
        if matches!(operation, Operation::Any | Operation::Unknown)
            || matches!(resource_type, ResourceType::Any | ResourceType::Unknown)
        {
            return false;
        }
        if self.is_super_user(principal) {
            return true;
        }
        let index = self.acls.read();
        let Some(acls) = index.by_type.get(&resource_type) else {
            return self.allow_everyone_if_no_acl_found;
        };
        let mut any_acl = false;
        for entry in acls.applying_to(resource_name) {
            any_acl = true;
            if entry.permission == Permission::Deny
                && (entry.operation == operation || entry.operation == Operation::All)
                && entry.applies_to(principal, host)
            {
                return false;
            }
        }
        if !any_acl {
            return self.allow_everyone_if_no_acl_found;
        }
        let allowed = acls.applying_to(resource_name).any(|entry| {
            entry.permission == Permission::Allow
                && entry.operation.implies(operation)
                && entry.applies_to(principal, host)
        });
        allowed
    }
}

impl Index {
    fn build(bindings: Vec<AclBinding>) -> Self {
        let mut by_type: HashMap<ResourceType, ResourceAcls> = HashMap::new();
        for b in &bindings {
            let principal = if b.principal == WILDCARD_PRINCIPAL {
                None
            } else {
                match b.principal.parse::<Principal>() {
                    Ok(p) => Some(p),
                    Err(_) => continue,
                }
            };
            let entry = Entry {
                principal,
                host: (b.host != WILDCARD_HOST).then(|| b.host.clone()),
                operation: b.operation,
                permission: b.permission,
            };
            let acls = by_type.entry(b.resource_type).or_default();
            let by_name = match b.pattern_type {
                PatternType::Literal => &mut acls.literal,
                PatternType::Prefixed => &mut acls.prefixed,
                _ => continue,
            };
            by_name
                .entry(b.resource_name.clone())
                .or_default()
                .push(entry);
        }
        by_type.retain(|_, acls| !acls.literal.is_empty() || !acls.prefixed.is_empty());
        for acls in by_type.values_mut() {
            acls.prefix_lens = acls.prefixed.keys().map(String::len).collect();
            acls.prefix_lens.sort_unstable();
            acls.prefix_lens.dedup();
        }
        Self { bindings, by_type }
    }
}

impl ResourceAcls {
    fn applying_to<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let literal = self.literal.get(name);
        let wildcard = (name != WILDCARD_RESOURCE)
            .then(|| self.literal.get(WILDCARD_RESOURCE))
            .flatten();
        let prefixed = self
            .prefix_lens
            .iter()
            .take_while(move |&&len| len <= name.len())
            .filter_map(move |&len| name.get(..len).and_then(|prefix| self.prefixed.get(prefix)));
        literal
            .into_iter()
            .chain(wildcard)
            .chain(prefixed)
            .flatten()
    }
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authorizer")
            .field("super_users", &self.super_users)
            .field(
                "allow_everyone_if_no_acl_found",
                &self.allow_everyone_if_no_acl_found,
            )
            .field("acls", &self.acls.read().bindings.len())
            .finish()
    }
}
