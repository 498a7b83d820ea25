use super::*;

fn policy(yaml: &str) -> EgressPolicy {
    EgressPolicy::new(&AllowList::from_yaml(yaml).unwrap().egress)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

const RULES: &str = "egress:
  mode: transparent
  allow:
    - {host: db.internal, port: 5432}
    - {host: \"*.example.com\", port: 443}
    - {cidr: 10.0.0.0/8, port: 5432}
    - {cidr: 203.0.113.0/24, port: 443}
    - {cidr: 127.0.0.5, port: 443}
";

#[test]
fn names_match_host_rules_with_their_port() {
    let p = policy(RULES);
    assert_eq!(p.check_name("db.internal", 5432), Ok(()));
    assert_eq!(p.check_name("DB.Internal.", 5432), Ok(()));
    assert_eq!(p.check_name("api.example.com", 443), Ok(()));
    assert_eq!(p.check_name("a.b.example.com", 443), Ok(()));
    for (name, port) in [
        ("db.internal", 5433),
        ("example.com", 443),
        ("api.example.com", 80),
        ("badexample.com", 443),
        ("x.db.internal", 5432),
    ] {
        let err = p.check_name(name, port).unwrap_err();
        assert_eq!(
            err,
            Refusal::NameNotListed {
                name: name.into(),
                port
            }
        );
        assert_eq!(
            err.to_string(),
            format!("no egress rule allows {name}:{port}")
        );
        assert_eq!(err.status(), Status::NotAllowed);
    }
}

#[test]
fn address_requests_need_a_cidr_rule_with_the_port() {
    let p = policy(RULES);
    assert_eq!(p.check_addr(ip("10.9.8.7"), 5432), Ok(()));
    assert_eq!(p.check_addr(ip("::ffff:10.9.8.7"), 5432), Ok(()));
    assert_eq!(p.check_addr(ip("127.0.0.5"), 443), Ok(()));
    // Public or private, an address outside every cidr is refused, as is the wrong port.
    for (addr, port) in [("8.8.8.8", 443), ("10.9.8.7", 443), ("127.0.0.6", 443)] {
        let err = p.check_addr(ip(addr), port).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("no egress cidr rule allows {addr}:{port}")
        );
        assert_eq!(err.status(), Status::NotAllowed);
    }
    assert_eq!(
        p.check_addr(ip("fd00::1"), 443).unwrap_err().to_string(),
        "no egress cidr rule allows [fd00::1]:443"
    );
}

#[test]
fn address_requests_are_refused_in_named_mode() {
    let p = policy("egress:\n  - {cidr: 10.0.0.0/8, port: 443}\n");
    let err = p.check_addr(ip("10.0.0.1"), 443).unwrap_err();
    assert!(matches!(err, Refusal::AddrNeedsTransparent { .. }));
    assert!(err.to_string().contains("mode: transparent"), "{err}");
}

#[test]
fn resolved_addresses_public_pass_special_need_a_cidr() {
    let p = policy(RULES);
    // Public addresses of an allowed name are allowed; duplicates and mapped forms collapse.
    assert_eq!(
        p.filter_resolved(
            "api.example.com",
            443,
            &[
                ip("93.184.216.34"),
                ip("::ffff:93.184.216.34"),
                ip("2606:2800::1")
            ]
        ),
        Ok(vec![ip("93.184.216.34"), ip("2606:2800::1")])
    );
    // A loopback address is dropped unless a cidr rule with the port lists it.
    assert_eq!(
        p.filter_resolved("api.example.com", 443, &[ip("127.0.0.1"), ip("1.2.3.4")]),
        Ok(vec![ip("1.2.3.4")])
    );
    assert_eq!(
        p.filter_resolved("api.example.com", 443, &[ip("127.0.0.5")]),
        Ok(vec![ip("127.0.0.5")])
    );
    assert_eq!(
        p.filter_resolved("db.internal", 5432, &[ip("10.1.1.1")]),
        Ok(vec![ip("10.1.1.1")])
    );
    // Documentation range, listed for 443: allowed there.
    assert_eq!(
        p.filter_resolved("api.example.com", 443, &[ip("203.0.113.4")]),
        Ok(vec![ip("203.0.113.4")])
    );
    let err = p
        .filter_resolved(
            "api.example.com",
            443,
            &[ip("169.254.169.254"), ip("10.0.0.1")],
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "api.example.com resolved to 169.254.169.254, a link-local address, which only a cidr \
         rule for port 443 may allow"
    );
    assert_eq!(err.status(), Status::ResolveFailed);
    // 10/8 is listed, but for 5432, not 443.
    assert!(matches!(
        p.filter_resolved("api.example.com", 443, &[ip("10.0.0.1")]),
        Err(Refusal::SpecialAddr { .. })
    ));
    // The name is checked first.
    assert!(matches!(
        p.filter_resolved("evil.test", 443, &[ip("1.2.3.4")]),
        Err(Refusal::NameNotListed { .. })
    ));
    assert!(matches!(
        p.filter_resolved("api.example.com", 443, &[]),
        Err(Refusal::Unresolved { .. })
    ));
}

#[test]
fn ingress_policy_lists_ports() {
    let list =
        AllowList::from_yaml("ingress:\n  - {port: 8080}\n  - {port: 22, host_port: 2222}\n")
            .unwrap();
    let p = IngressPolicy::new(&list.ingress);
    assert_eq!(p.check(8080), Ok(()));
    assert_eq!(p.check(22), Ok(()));
    let err = p.check(8081).unwrap_err();
    assert_eq!(
        err.to_string(),
        "enclave port 8081 is not in the ingress allow-list"
    );
    assert_eq!(err.status(), Status::NotAllowed);
    assert!(IngressPolicy::default().check(1).is_err());
}

#[test]
fn allow_list_file_uses_the_spec_syntax_and_rules() {
    let list = AllowList::from_yaml(RULES).unwrap();
    assert_eq!(list.egress.mode, EgressMode::Transparent);
    assert_eq!(list.egress.allow.len(), 5);
    assert_eq!(AllowList::from_yaml("").unwrap(), AllowList::default());
    assert_eq!(
        AllowList::from_yaml("egress:\n  - {host: a.b, port: 1}\n")
            .unwrap()
            .egress
            .mode,
        EgressMode::Named
    );
    let cases = [
        ("from: oci:x\n", "unknown field `from`"),
        (
            "egress:\n  - {host: a.b, cidr: 10.0.0.0/8, port: 1}\n",
            "exactly one",
        ),
        ("egress:\n  - {host: a.b, port: 0}\n", "port 0"),
        ("egress:\n  - {host: 10.0.0.1, port: 1}\n", "use `cidr`"),
        ("egress:\n  - {cidr: 10.0.0.1/8, port: 1}\n", "host bits"),
        (
            "egress:\n  allow: []\n  mod: named\n",
            "unknown field `mod`",
        ),
        ("ingress:\n  - {port: 80}\n  - {port: 80}\n", "twice"),
        ("ingress: 3\n", "invalid allow-list"),
    ];
    for (yaml, want) in cases {
        let err = AllowList::from_yaml(yaml).unwrap_err().to_string();
        assert!(err.contains(want), "{yaml:?}: {err}");
        assert!(err.starts_with("invalid allow-list"), "{err}");
    }
}

#[test]
fn allow_list_file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("allow.yaml");
    let err = AllowList::load(&path).unwrap_err().to_string();
    assert!(
        err.starts_with("cannot read allow-list ") && err.contains("allow.yaml"),
        "{err}"
    );
    std::fs::write(&path, "egress:\n  - {host: a.b, port: 1, prot: tcp}\n").unwrap();
    let err = AllowList::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("allow.yaml: invalid allow-list") && err.contains("line 2"),
        "{err}"
    );
    std::fs::write(&path, "egress:\n  - {host: a.b, port: 1}\n").unwrap();
    assert_eq!(AllowList::load(&path).unwrap().egress.allow.len(), 1);
}

#[tokio::test(flavor = "current_thread")]
async fn resolver_overrides_come_first() {
    let r = Resolver::new([
        ("Db.Internal".to_string(), ip("127.0.0.5")),
        ("db.internal".to_string(), ip("::1")),
        ("localhost".to_string(), ip("192.0.2.1")),
    ]);
    assert_eq!(
        r.resolve("db.internal.").await,
        Ok(vec![ip("127.0.0.5"), ip("::1")])
    );
    // The override replaces the system's answer entirely.
    assert_eq!(r.resolve("localhost").await, Ok(vec![ip("192.0.2.1")]));
    // Without an override, the system resolver answers (localhost is in every /etc/hosts).
    let sys = Resolver::default().resolve("localhost").await.unwrap();
    assert!(
        !sys.is_empty() && sys.iter().all(|a| a.is_loopback()),
        "{sys:?}"
    );
}

#[test]
fn names_and_ports_the_enclave_listens_for() {
    let p = policy(
        "egress:\n  mode: transparent\n  allow:\n    - {host: db.internal, port: 5432}\n    \
         - {host: \"*.example.com\", port: 443}\n    - {host: api.example.com, port: 8443}\n    \
         - {host: db.internal, port: 6432}\n    - {cidr: 10.0.0.0/8, port: 443}\n",
    );
    assert_eq!(p.exact_names(), ["db.internal", "api.example.com"]);
    assert_eq!(p.ports_for("db.internal"), BTreeSet::from([5432, 6432]));
    assert_eq!(p.ports_for("API.example.com."), BTreeSet::from([443, 8443]));
    assert_eq!(p.ports_for("x.example.com"), BTreeSet::from([443]));
    assert!(p.ports_for("example.com").is_empty());
    assert!(p.check_addr(ip("10.1.2.3"), 443).is_ok());
    assert!(p.check_addr(ip("10.1.2.3"), 80).is_err());
    assert!(p.check_addr(ip("11.1.2.3"), 443).is_err());
}
