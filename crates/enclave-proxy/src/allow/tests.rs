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
        "api.example.com resolved to 169.254.169.254, a cloud metadata service address \
         (169.254.169.254/32), which needs allow_special: true on the rule or a cidr rule for \
         port 443 inside 169.254.169.254/32"
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
        (
            "egress:\n  - {cidr: 127.0.0.0/8, port: 1, allow_special: true}\n",
            "allow_special has no effect",
        ),
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

/// One sample address of every special range (and of the embedded and mapped forms).
const SPECIAL_SAMPLES: [&str; 27] = [
    "0.0.0.1",
    "10.1.2.3",
    "100.64.0.1",
    "127.0.0.1",
    "169.254.1.1",
    "169.254.169.254",
    "169.254.170.2",
    "172.16.0.1",
    "192.0.0.8",
    "192.0.2.1",
    "192.88.99.1",
    "192.168.1.1",
    "198.18.0.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::",
    "::1",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "fec0::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:169.254.169.254",
    "64:ff9b::a9fe:a9fe",
    "2002:7f00::1",
];

fn transparent(rules: &[&str]) -> EgressPolicy {
    let mut yaml = "egress:\n  mode: transparent\n  allow:\n".to_owned();
    for r in rules {
        yaml.push_str(&format!("    - {r}\n"));
    }
    policy(&yaml)
}

#[test]
fn broad_cidr_rules_do_not_reach_special_ranges() {
    let broad = transparent(&["{cidr: 0.0.0.0/0, port: 80}", "{cidr: \"::/0\", port: 80}"]);
    let special = transparent(&[
        "{cidr: 0.0.0.0/0, port: 80, allow_special: true}",
        "{cidr: \"::/0\", port: 80, allow_special: true}",
    ]);
    for sample in SPECIAL_SAMPLES {
        let addr = ip(sample);
        let (range, entry) = special_prefix(addr).expect(sample);
        let err = broad.check_addr(addr, 80).unwrap_err();
        assert_eq!(
            err,
            Refusal::SpecialAddrNotReached {
                addr: addr.to_canonical(),
                port: 80,
                range,
                entry
            },
            "{sample}"
        );
        assert_eq!(err.status(), Status::NotAllowed);
        assert!(
            err.to_string().contains("allow_special: true"),
            "{sample}: {err}"
        );
        assert_eq!(special.check_addr(addr, 80), Ok(()), "{sample}");
        // Not for another port, allow_special or not.
        assert!(special.check_addr(addr, 81).is_err(), "{sample}");

        // A rule that lies inside the range reaches it: the range's own entry, or the address.
        let own = transparent(&[&format!("{{cidr: \"{entry}\", port: 80}}")]);
        assert_eq!(own.check_addr(addr, 80), Ok(()), "{sample} by {entry}");
        let host_len = if addr.to_canonical().is_ipv4() {
            32
        } else {
            128
        };
        let one = transparent(&[&format!(
            "{{cidr: \"{}/{host_len}\", port: 80}}",
            addr.to_canonical()
        )]);
        assert_eq!(one.check_addr(addr, 80), Ok(()), "{sample} by itself");
    }
    // Public addresses: the broad rule is enough.
    for public in [
        "8.8.8.8",
        "2606:4700::1111",
        "64:ff9b::808:808",
        "::ffff:1.1.1.1",
    ] {
        assert_eq!(broad.check_addr(ip(public), 80), Ok(()), "{public}");
    }
}

#[test]
fn the_metadata_service_needs_its_own_rule() {
    let link_local = transparent(&[
        "{cidr: 169.254.0.0/16, port: 80}",
        "{cidr: \"fc00::/7\", port: 80}",
    ]);
    assert_eq!(link_local.check_addr(ip("169.254.1.1"), 80), Ok(()));
    assert_eq!(link_local.check_addr(ip("fd00:1::1"), 80), Ok(()));
    for imds in ["169.254.169.254", "fd00:ec2::254", "::ffff:169.254.169.254"] {
        assert!(
            matches!(
                link_local.check_addr(ip(imds), 80),
                Err(Refusal::SpecialAddrNotReached {
                    range: SpecialRange::CloudMetadata,
                    ..
                })
            ),
            "{imds}"
        );
    }
    let imds = transparent(&["{cidr: 169.254.169.254/32, port: 80}"]);
    assert_eq!(imds.check_addr(ip("169.254.169.254"), 80), Ok(()));
    assert!(imds.check_addr(ip("169.254.169.253"), 80).is_err());
    // A wider rule in one range does not reach into another: 10.0.0.0/7 is not inside 10/8.
    let wide = transparent(&["{cidr: 10.0.0.0/7, port: 80}"]);
    assert_eq!(wide.check_addr(ip("11.1.1.1"), 80), Ok(()));
    assert!(wide.check_addr(ip("10.1.1.1"), 80).is_err());
}

#[test]
fn names_reach_special_addresses_only_through_allow_special_or_a_reaching_cidr() {
    let plain = transparent(&["{host: svc.test, port: 80}", "{cidr: 0.0.0.0/0, port: 80}"]);
    let by_name = transparent(&["{host: \"*.test\", port: 80, allow_special: true}"]);
    let by_cidr = transparent(&[
        "{host: svc.test, port: 80}",
        "{cidr: 0.0.0.0/0, port: 80, allow_special: true}",
        "{cidr: \"::/0\", port: 80, allow_special: true}",
    ]);
    for sample in SPECIAL_SAMPLES {
        let addrs = [ip(sample)];
        // The broad cidr rule without allow_special does not open special ranges to names.
        assert!(
            matches!(
                plain.filter_resolved("svc.test", 80, &addrs),
                Err(Refusal::SpecialAddr { .. })
            ),
            "{sample}"
        );
        let want = Ok(vec![ip(sample).to_canonical()]);
        assert_eq!(
            by_name.filter_resolved("svc.test", 80, &addrs),
            want,
            "{sample}"
        );
        assert_eq!(
            by_cidr.filter_resolved("svc.test", 80, &addrs),
            want,
            "{sample}"
        );
        // allow_special on the rule of another port, or another name, does not count.
        assert!(by_name.filter_resolved("svc.test", 81, &addrs).is_err());
        assert!(by_name.filter_resolved("svc.other", 80, &addrs).is_err());
    }
    // Mixed answers keep the public addresses.
    assert_eq!(
        plain.filter_resolved("svc.test", 80, &[ip("127.0.0.1"), ip("8.8.4.4")]),
        Ok(vec![ip("8.8.4.4")])
    );
}

#[test]
fn each_rule_has_a_label_and_requests_fall_under_the_first_that_holds_them() {
    let p = policy(&format!("{RULES}    - {{host: db.internal, port: 5432}}\n"));
    assert_eq!(
        p.rule_labels(),
        [
            "host db.internal:5432",
            "host *.example.com:443",
            "cidr 10.0.0.0/8:5432",
            "cidr 203.0.113.0/24:443",
            "cidr 127.0.0.5/32:443",
        ]
    );
    assert_eq!(
        p.name_rule("api.example.com", 443),
        Some("host *.example.com:443")
    );
    assert_eq!(p.name_rule("api.example.com", 80), None);
    assert_eq!(
        p.addr_rule(ip("10.1.2.3"), 5432),
        Some("cidr 10.0.0.0/8:5432")
    );
    assert_eq!(
        p.addr_rule(ip("::ffff:203.0.113.9"), 443),
        Some("cidr 203.0.113.0/24:443")
    );
    assert_eq!(p.addr_rule(ip("10.1.2.3"), 443), None);
}
