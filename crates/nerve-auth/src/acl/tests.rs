use super::*;
use Operation as Op;
use PatternType as Pt;
use Permission as Pm;
use ResourceType as Rt;

fn acl(
    rt: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    host: &str,
    op: Operation,
    perm: Permission,
) -> AclBinding {
    AclBinding {
        resource_type: rt,
        resource_name: name.into(),
        pattern_type: pattern,
        principal: principal.into(),
        host: host.into(),
        operation: op,
        permission: perm,
    }
}

fn allow(
    rt: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    op: Operation,
) -> AclBinding {
    acl(rt, name, pattern, principal, "*", op, Pm::Allow)
}

fn deny(
    rt: ResourceType,
    name: &str,
    pattern: PatternType,
    principal: &str,
    op: Operation,
) -> AclBinding {
    acl(rt, name, pattern, principal, "*", op, Pm::Deny)
}

struct Case {
    what: &'static str,
    acls: Vec<AclBinding>,
    principal: &'static str,
    host: &'static str,
    op: Operation,
    rt: ResourceType,
    name: &'static str,
    allowed: bool,
}

fn case(
    what: &'static str,
    acls: Vec<AclBinding>,
    (principal, host): (&'static str, &'static str),
    (op, rt, name): (Operation, ResourceType, &'static str),
    allowed: bool,
) -> Case {
    Case {
        what,
        acls,
        principal,
        host,
        op,
        rt,
        name,
        allowed,
    }
}

/// Says whether an error is the expected one.
type Check = fn(&AclError) -> bool;

const ALICE: (&str, &str) = ("User:alice", "10.0.0.1");
const BOB: (&str, &str) = ("User:bob", "10.0.0.2");

#[test]
fn authorize_follows_kafka_rules() {
    let alice_reads = |name: &str| allow(Rt::Topic, name, Pt::Literal, "User:alice", Op::Read);
    let alice_may = |op| allow(Rt::Topic, "t", Pt::Literal, "User:alice", op);
    let alice_not = |op| deny(Rt::Topic, "t", Pt::Literal, "User:alice", op);
    let read_t = (Op::Read, Rt::Topic, "t");
    #[rustfmt::skip]
    let cases = vec![
        case("super user needs no ACL", vec![deny(Rt::Topic, "t", Pt::Literal, "User:admin", Op::All)],
            ("User:admin", "h"), (Op::Write, Rt::Topic, "t"), true),
        case("no ACLs at all, default deny", vec![], ALICE, read_t, false),
        case("literal allow", vec![alice_reads("t")], ALICE, read_t, true),
        case("literal allow is for that name only", vec![alice_reads("t")], ALICE, (Op::Read, Rt::Topic, "t2"), false),
        case("literal allow is for that principal only", vec![alice_reads("t")], BOB, read_t, false),
        case("literal allow is for that operation only", vec![alice_reads("t")], ALICE, (Op::Write, Rt::Topic, "t"), false),
        case("principal of another type does not match",
            vec![allow(Rt::Topic, "t", Pt::Literal, "Group:alice", Op::Read)], ALICE, read_t, false),
        case("wildcard resource", vec![alice_reads("*")], ALICE, (Op::Read, Rt::Topic, "anything"), true),
        case("prefixed allow", vec![allow(Rt::Topic, "orders-", Pt::Prefixed, "User:alice", Op::Read)],
            ALICE, (Op::Read, Rt::Topic, "orders-eu"), true),
        case("prefixed allow covers the prefix itself",
            vec![allow(Rt::Topic, "orders-", Pt::Prefixed, "User:alice", Op::Read)],
            ALICE, (Op::Read, Rt::Topic, "orders-"), true),
        case("prefixed allow needs the whole prefix",
            vec![allow(Rt::Topic, "orders-", Pt::Prefixed, "User:alice", Op::Read)],
            ALICE, (Op::Read, Rt::Topic, "order"), false),
        case("a literal name is not a prefix", vec![alice_reads("orders")], ALICE, (Op::Read, Rt::Topic, "orders-eu"), false),
        case("a literal with * inside is no pattern", vec![alice_reads("o*")], ALICE, (Op::Read, Rt::Topic, "orders"), false),
        case("deny wins over allow", vec![alice_may(Op::Read), alice_not(Op::Read)], ALICE, read_t, false),
        case("prefixed deny wins over literal allow",
            vec![alice_reads("secret-x"), deny(Rt::Topic, "secret-", Pt::Prefixed, "User:alice", Op::Read)],
            ALICE, (Op::Read, Rt::Topic, "secret-x"), false),
        case("wildcard deny for everyone wins over literal allow",
            vec![alice_may(Op::Write), deny(Rt::Topic, "*", Pt::Literal, "User:*", Op::Write)],
            ALICE, (Op::Write, Rt::Topic, "t"), false),
        case("deny of another principal does not apply",
            vec![alice_may(Op::Read), deny(Rt::Topic, "t", Pt::Literal, "User:bob", Op::Read)], ALICE, read_t, true),
        case("deny ALL denies every operation", vec![alice_may(Op::Describe), alice_not(Op::All)],
            ALICE, (Op::Describe, Rt::Topic, "t"), false),
        case("deny READ does not deny DESCRIBE", vec![alice_may(Op::Describe), alice_not(Op::Read)],
            ALICE, (Op::Describe, Rt::Topic, "t"), true),
        case("deny READ does not deny DESCRIBE implied by WRITE", vec![alice_may(Op::Write), alice_not(Op::Read)],
            ALICE, (Op::Describe, Rt::Topic, "t"), true),
        case("User:* matches everyone", vec![allow(Rt::Group, "g", Pt::Literal, "User:*", Op::Read)],
            BOB, (Op::Read, Rt::Group, "g"), true),
        case("User:* matches principals of other types", vec![allow(Rt::Group, "g", Pt::Literal, "User:*", Op::Read)],
            ("Service:etl", "h"), (Op::Read, Rt::Group, "g"), true),
        case("host must match", vec![acl(Rt::Topic, "t", Pt::Literal, "User:alice", "10.0.0.9", Op::Read, Pm::Allow)],
            ALICE, read_t, false),
        case("exact host", vec![acl(Rt::Topic, "t", Pt::Literal, "User:alice", "10.0.0.1", Op::Read, Pm::Allow)],
            ALICE, read_t, true),
        case("deny from another host does not apply",
            vec![alice_may(Op::Read), acl(Rt::Topic, "t", Pt::Literal, "User:alice", "10.0.0.9", Op::Read, Pm::Deny)],
            ALICE, read_t, true),
        case("READ implies DESCRIBE", vec![alice_may(Op::Read)], ALICE, (Op::Describe, Rt::Topic, "t"), true),
        case("WRITE implies DESCRIBE", vec![alice_may(Op::Write)], ALICE, (Op::Describe, Rt::Topic, "t"), true),
        case("DELETE implies DESCRIBE", vec![alice_may(Op::Delete)], ALICE, (Op::Describe, Rt::Topic, "t"), true),
        case("ALTER implies DESCRIBE", vec![alice_may(Op::Alter)], ALICE, (Op::Describe, Rt::Topic, "t"), true),
        case("CREATE does not imply DESCRIBE", vec![alice_may(Op::Create)], ALICE, (Op::Describe, Rt::Topic, "t"), false),
        case("DESCRIBE does not imply READ", vec![alice_may(Op::Describe)], ALICE, read_t, false),
        case("ALTER_CONFIGS implies DESCRIBE_CONFIGS", vec![alice_may(Op::AlterConfigs)],
            ALICE, (Op::DescribeConfigs, Rt::Topic, "t"), true),
        case("DESCRIBE_CONFIGS does not imply ALTER_CONFIGS", vec![alice_may(Op::DescribeConfigs)],
            ALICE, (Op::AlterConfigs, Rt::Topic, "t"), false),
        case("ALTER does not imply DESCRIBE_CONFIGS", vec![alice_may(Op::Alter)],
            ALICE, (Op::DescribeConfigs, Rt::Topic, "t"), false),
        case("ALL allows everything", vec![allow(Rt::Cluster, "kafka-cluster", Pt::Literal, "User:alice", Op::All)],
            ALICE, (Op::ClusterAction, Rt::Cluster, "kafka-cluster"), true),
        case("ACLs on another resource type do not count",
            vec![allow(Rt::Group, "t", Pt::Literal, "User:alice", Op::Read)], ALICE, read_t, false),
        case("ACLs on another topic do not count", vec![alice_reads("other")], ALICE, read_t, false),
        case("ANY is not a requestable operation", vec![alice_may(Op::All)], ALICE, (Op::Any, Rt::Topic, "t"), false),
        case("prefixes of several lengths",
            vec![deny(Rt::Topic, "a", Pt::Prefixed, "User:bob", Op::Read),
                 allow(Rt::Topic, "ab", Pt::Prefixed, "User:alice", Op::Read),
                 allow(Rt::Topic, "abcdef", Pt::Prefixed, "User:bob", Op::Read)],
            ALICE, (Op::Read, Rt::Topic, "abc"), true),
        case("a name is not cut inside a multibyte character",
            vec![allow(Rt::Topic, "é", Pt::Prefixed, "User:alice", Op::Read),
                 allow(Rt::Topic, "x", Pt::Prefixed, "User:alice", Op::Read)],
            ALICE, (Op::Read, Rt::Topic, "éa"), true),
    ];
    for c in cases {
        let authorizer = Authorizer::new([Principal::user("admin")], false);
        authorizer.set_acls(c.acls.clone());
        let principal: Principal = c.principal.parse().unwrap();
        let got = authorizer.authorize(&principal, c.host, c.op, c.rt, c.name);
        assert_eq!(got, c.allowed, "{}", c.what);
    }
}

#[test]
fn allow_everyone_if_no_acl_found_applies_only_to_resources_without_acls() {
    let acls = vec![allow(
        Rt::Topic,
        "guarded",
        Pt::Literal,
        "User:alice",
        Op::Read,
    )];
    let bob = Principal::user("bob");
    for allow_everyone in [true, false] {
        let authorizer = Authorizer::new([], allow_everyone);
        assert_eq!(
            authorizer.authorize(&bob, "h", Op::Read, Rt::Topic, "t"),
            allow_everyone
        );
        authorizer.set_acls(acls.clone());
        assert_eq!(
            authorizer.authorize(&bob, "h", Op::Read, Rt::Topic, "open"),
            allow_everyone
        );
        assert_eq!(
            authorizer.authorize(&bob, "h", Op::Read, Rt::Group, "g"),
            allow_everyone
        );
        // An ACL for someone else, for another operation, still makes the resource guarded.
        assert!(!authorizer.authorize(&bob, "h", Op::Write, Rt::Topic, "guarded"));
    }
    // A deny-only resource is guarded too.
    let authorizer = Authorizer::new([], true);
    authorizer.set_acls(vec![deny(
        Rt::Topic,
        "t",
        Pt::Literal,
        "User:alice",
        Op::Write,
    )]);
    assert!(!authorizer.authorize(&bob, "h", Op::Read, Rt::Topic, "t"));
}

#[test]
fn super_users_and_acl_replacement() {
    let authorizer = Authorizer::new(["User:admin".parse().unwrap()], false);
    assert!(authorizer.is_super_user(&Principal::user("admin")));
    assert!(!authorizer.is_super_user(&Principal::user("alice")));
    assert!(!authorizer.is_super_user(&Principal {
        kind: "Group".into(),
        name: "admin".into()
    }));

    let first = vec![allow(Rt::Topic, "t", Pt::Literal, "User:alice", Op::Read)];
    authorizer.set_acls(first.clone());
    assert_eq!(authorizer.acls(), first);
    assert!(authorizer.authorize(&Principal::user("alice"), "h", Op::Read, Rt::Topic, "t"));
    authorizer.set_acls(vec![]);
    assert!(authorizer.acls().is_empty());
    assert!(!authorizer.authorize(&Principal::user("alice"), "h", Op::Read, Rt::Topic, "t"));
}

#[test]
fn authorizer_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authorizer>();
}

#[test]
fn unusable_bindings_never_apply_but_are_kept() {
    let authorizer = Authorizer::new([], false);
    let acls = vec![
        allow(Rt::Topic, "t", Pt::Match, "User:alice", Op::Read),
        allow(Rt::Topic, "t", Pt::Literal, "alice", Op::Read),
    ];
    authorizer.set_acls(acls.clone());
    assert_eq!(authorizer.acls(), acls);
    assert!(!authorizer.authorize(&Principal::user("alice"), "h", Op::Read, Rt::Topic, "t"));
}

fn sample_bindings() -> Vec<AclBinding> {
    vec![
        allow(Rt::Topic, "orders", Pt::Literal, "User:alice", Op::Read),
        allow(Rt::Topic, "*", Pt::Literal, "User:bob", Op::Describe),
        deny(Rt::Topic, "ord", Pt::Prefixed, "User:eve", Op::All),
        allow(
            Rt::Topic,
            "payments-",
            Pt::Prefixed,
            "User:alice",
            Op::Write,
        ),
        allow(Rt::Group, "orders", Pt::Literal, "User:alice", Op::Read),
        acl(
            Rt::Cluster,
            "kafka-cluster",
            Pt::Literal,
            "User:ops",
            "10.0.0.5",
            Op::Alter,
            Pm::Allow,
        ),
    ]
}

fn matching(filter: &AclBindingFilter) -> Vec<usize> {
    sample_bindings()
        .iter()
        .enumerate()
        .filter(|(_, b)| filter.matches(b))
        .map(|(i, _)| i)
        .collect()
}

#[test]
fn filters_select_bindings_as_kafka_does() {
    let any = AclBindingFilter::ANY;
    assert_eq!(matching(&any), vec![0, 1, 2, 3, 4, 5]);
    let topics = AclBindingFilter {
        resource_type: Rt::Topic,
        ..any.clone()
    };
    assert_eq!(matching(&topics), vec![0, 1, 2, 3]);
    let named = AclBindingFilter {
        resource_name: Some("orders".into()),
        ..any.clone()
    };
    assert_eq!(
        matching(&named),
        vec![0, 4],
        "ANY pattern type with a name: exact name"
    );
    let literal = AclBindingFilter {
        pattern_type: Pt::Literal,
        ..any.clone()
    };
    assert_eq!(matching(&literal), vec![0, 1, 4, 5]);
    let prefixed = AclBindingFilter {
        pattern_type: Pt::Prefixed,
        ..any.clone()
    };
    assert_eq!(matching(&prefixed), vec![2, 3]);
    let matched = AclBindingFilter {
        resource_type: Rt::Topic,
        resource_name: Some("orders".into()),
        pattern_type: Pt::Match,
        ..any.clone()
    };
    assert_eq!(
        matching(&matched),
        vec![0, 1, 2],
        "MATCH: literal, wildcard and prefixes"
    );
    let matched_payments = AclBindingFilter {
        resource_name: Some("payments-eu".into()),
        ..matched.clone()
    };
    assert_eq!(matching(&matched_payments), vec![1, 3]);
    let match_without_name = AclBindingFilter {
        pattern_type: Pt::Match,
        ..any.clone()
    };
    assert_eq!(matching(&match_without_name), vec![0, 1, 2, 3, 4, 5]);
    let by_principal = AclBindingFilter {
        principal: Some("User:alice".into()),
        ..any.clone()
    };
    assert_eq!(matching(&by_principal), vec![0, 3, 4]);
    let by_host = AclBindingFilter {
        host: Some("10.0.0.5".into()),
        ..any.clone()
    };
    assert_eq!(matching(&by_host), vec![5]);
    let by_op = AclBindingFilter {
        operation: Op::Read,
        ..any.clone()
    };
    assert_eq!(
        matching(&by_op),
        vec![0, 4],
        "a filter's operation is exact: ALL is not READ"
    );
    let denies = AclBindingFilter {
        permission: Pm::Deny,
        ..any.clone()
    };
    assert_eq!(matching(&denies), vec![2]);
    let unknown = AclBindingFilter {
        operation: Op::Unknown,
        ..any.clone()
    };
    assert!(matching(&unknown).is_empty());
    assert!(unknown.validate().is_err());
    assert!(any.validate().is_ok());
    for b in sample_bindings() {
        let exact = AclBindingFilter::from(&b);
        assert_eq!(
            sample_bindings()
                .iter()
                .filter(|x| exact.matches(x))
                .collect::<Vec<_>>(),
            vec![&b]
        );
    }
}

#[test]
fn authorizer_returns_the_bindings_a_filter_matches() {
    let authorizer = Authorizer::new([], false);
    authorizer.set_acls(sample_bindings());
    let denies = AclBindingFilter {
        permission: Pm::Deny,
        ..AclBindingFilter::ANY
    };
    assert_eq!(
        authorizer.matching_acls(&denies),
        vec![sample_bindings()[2].clone()]
    );
}

#[test]
fn validation_refuses_what_create_acls_refuses() {
    let good = allow(Rt::Topic, "t", Pt::Literal, "User:alice", Op::Read);
    assert_eq!(good.validate(), Ok(()));
    for b in sample_bindings() {
        assert_eq!(b.validate(), Ok(()), "{b:?}");
    }
    let bad: Vec<(AclBinding, Check)> = vec![
        (
            AclBinding {
                resource_type: Rt::Any,
                ..good.clone()
            },
            |e| matches!(e, AclError::Indefinite { .. }),
        ),
        (
            AclBinding {
                resource_type: Rt::Unknown,
                ..good.clone()
            },
            |e| matches!(e, AclError::Indefinite { .. }),
        ),
        (
            AclBinding {
                pattern_type: Pt::Match,
                ..good.clone()
            },
            |e| matches!(e, AclError::Indefinite { .. }),
        ),
        (
            AclBinding {
                pattern_type: Pt::Any,
                ..good.clone()
            },
            |e| matches!(e, AclError::Indefinite { .. }),
        ),
        (
            AclBinding {
                operation: Op::Any,
                ..good.clone()
            },
            |e| matches!(e, AclError::Indefinite { .. }),
        ),
        (
            AclBinding {
                operation: Op::Unknown,
                ..good.clone()
            },
            |e| matches!(e, AclError::Indefinite { .. }),
        ),
        (
            AclBinding {
                permission: Pm::Any,
                ..good.clone()
            },
            |e| matches!(e, AclError::Indefinite { .. }),
        ),
        (
            AclBinding {
                principal: "alice".into(),
                ..good.clone()
            },
            |e| matches!(e, AclError::InvalidPrincipal(_)),
        ),
        (
            AclBinding {
                principal: "User:".into(),
                ..good.clone()
            },
            |e| matches!(e, AclError::InvalidPrincipal(_)),
        ),
        (
            AclBinding {
                host: "".into(),
                ..good.clone()
            },
            |e| *e == AclError::EmptyHost,
        ),
        (
            AclBinding {
                resource_name: "".into(),
                ..good.clone()
            },
            |e| *e == AclError::EmptyResourceName,
        ),
        (
            AclBinding {
                resource_type: Rt::Cluster,
                ..good.clone()
            },
            |e| matches!(e, AclError::InvalidClusterResource(_)),
        ),
        (
            AclBinding {
                resource_type: Rt::Cluster,
                resource_name: "kafka-cluster".into(),
                pattern_type: Pt::Prefixed,
                ..good.clone()
            },
            |e| matches!(e, AclError::InvalidClusterResource(_)),
        ),
        (
            AclBinding {
                resource_name: "*".into(),
                pattern_type: Pt::Prefixed,
                ..good.clone()
            },
            |e| *e == AclError::PrefixedWildcard,
        ),
    ];
    for (binding, expected) in bad {
        let err = binding.validate().unwrap_err();
        assert!(expected(&err), "{binding:?} gave {err:?}");
    }
}

fn check_enum<T>(all: &[T], code: fn(T) -> i8, from_code: fn(i8) -> Option<T>)
where
    T: Copy + PartialEq + std::fmt::Debug + std::fmt::Display + FromStr<Err = AclError>,
{
    for (i, &value) in all.iter().enumerate() {
        // Kafka's codes are dense from 0; Nerve's own (SUBJECT, 100) come after a gap.
        assert!(i == 0 || code(all[i - 1]) < code(value), "codes ascend");
        assert_eq!(from_code(code(value)), Some(value));
        let shown = value.to_string();
        assert_eq!(shown, shown.to_uppercase());
        assert_eq!(shown.parse::<T>().unwrap(), value);
        assert_eq!(shown.to_lowercase().parse::<T>().unwrap(), value);
        assert_eq!(
            shown.replace('_', "-").to_lowercase().parse::<T>().unwrap(),
            value
        );
        let camel: String = shown
            .split('_')
            .map(|w| w[..1].to_string() + &w[1..].to_lowercase())
            .collect();
        assert_eq!(camel.parse::<T>().unwrap(), value, "{camel}");
    }
    let last = code(*all.last().unwrap());
    assert_eq!(from_code(last + 1), None);
    assert_eq!(from_code(-1), None);
    assert!("no-such-value".parse::<T>().is_err());
}

#[test]
fn enums_round_trip_through_codes_and_names() {
    check_enum(
        ResourceType::ALL,
        ResourceType::code,
        ResourceType::from_code,
    );
    check_enum(PatternType::ALL, PatternType::code, PatternType::from_code);
    check_enum(Operation::ALL, Operation::code, Operation::from_code);
    check_enum(Permission::ALL, Permission::code, Permission::from_code);
    assert_eq!(Rt::TransactionalId.to_string(), "TRANSACTIONAL_ID");
    assert_eq!(Op::DescribeConfigs.to_string(), "DESCRIBE_CONFIGS");
    assert_eq!(
        "DescribeConfigs".parse::<Operation>(),
        Ok(Op::DescribeConfigs)
    );
    assert_eq!(
        "describe-configs".parse::<Operation>(),
        Ok(Op::DescribeConfigs)
    );
    assert_eq!(
        "DESCRIBE_CONFIGS".parse::<Operation>(),
        Ok(Op::DescribeConfigs)
    );
    assert_eq!(Op::IdempotentWrite.code(), 12);
    assert_eq!(Rt::User.code(), 7);
    assert_eq!(Pt::Prefixed.code(), 4);
    assert_eq!(Pm::Allow.code(), 3);
}

#[test]
fn bindings_serialize_with_kafka_names() {
    let b = allow(
        Rt::TransactionalId,
        "tx",
        Pt::Prefixed,
        "User:alice",
        Op::IdempotentWrite,
    );
    let json = serde_json::to_string(&b).unwrap();
    assert!(json.contains("\"TRANSACTIONAL_ID\""), "{json}");
    assert!(json.contains("\"IDEMPOTENT_WRITE\""), "{json}");
    assert_eq!(serde_json::from_str::<AclBinding>(&json).unwrap(), b);
}

#[test]
fn subject_is_nerves_resource_type_100() {
    assert_eq!(ResourceType::Subject.code(), 100);
    assert_eq!(ResourceType::from_code(100), Some(ResourceType::Subject));
    assert_eq!(ResourceType::from_code(8), None);
    assert_eq!("subject".parse::<ResourceType>(), Ok(ResourceType::Subject));
    assert_eq!(ResourceType::Subject.to_string(), "SUBJECT");
    let binding = AclBinding {
        resource_type: ResourceType::Subject,
        resource_name: "orders-".into(),
        pattern_type: PatternType::Prefixed,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: Operation::Read,
        permission: Permission::Allow,
    };
    binding.validate().unwrap();
    let authorizer = Authorizer::new(std::iter::empty::<Principal>(), false);
    authorizer.set_acls(vec![binding]);
    let alice = Principal::user("alice");
    assert!(authorizer.authorize(
        &alice,
        "1.2.3.4",
        Operation::Read,
        ResourceType::Subject,
        "orders-value"
    ));
    assert!(!authorizer.authorize(
        &alice,
        "1.2.3.4",
        Operation::Write,
        ResourceType::Subject,
        "orders-value"
    ));
    assert!(!authorizer.authorize(
        &alice,
        "1.2.3.4",
        Operation::Read,
        ResourceType::Topic,
        "orders-value"
    ));
}
