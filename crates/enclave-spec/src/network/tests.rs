//! Parsing and validating the network sections.

use super::super::EnclaveSpec;
use super::*;

#[test]
fn egress_list_and_map_forms() {
    let list = EnclaveSpec::from_yaml(
        "egress:\n  - {host: DB.internal, port: 5432}\n  - {cidr: 10.0.0.0/8, port: 443}\n",
    )
    .unwrap();
    assert_eq!(list.egress.mode, EgressMode::Named);
    assert_eq!(
        list.egress.allow[0].host.as_ref().unwrap().as_str(),
        "db.internal"
    );
    let map = EnclaveSpec::from_yaml(
        "egress:\n  mode: transparent\n  allow:\n    - {host: \"*.example.com\", port: 443}\n",
    )
    .unwrap();
    assert_eq!(map.egress.mode, EgressMode::Transparent);
    // The canonical form always has both fields, and reads back the same.
    let json = map.to_canonical_json();
    let back: EnclaveSpec = serde_json::from_slice(&json).unwrap();
    assert_eq!(back.egress, map.egress);
}

#[test]
fn egress_errors_name_the_problem() {
    let cases = [
        (
            "egress:\n  - {host: a.b, cidr: 10.0.0.0/8, port: 1}\n",
            "exactly one",
        ),
        ("egress:\n  - {host: a.b}\n", "port"),
        ("egress:\n  - {host: \"a b\", port: 1}\n", "not a host name"),
        ("egress:\n  - {host: 10.0.0.1, port: 1}\n", "use `cidr`"),
        ("egress:\n  - {cidr: 10.0.0.1/8, port: 1}\n", "host bits"),
        (
            "egress:\n  - {cidr: 10.0.0.0/33, port: 1}\n",
            "not an address range",
        ),
        ("egress:\n  mode: sideways\n", "sideways"),
        (
            "egress:\n  allow: []\n  mod: named\n",
            "unknown field `mod`",
        ),
        (
            "egress:\n  - {host: a.b, port: 1, prot: tcp}\n",
            "unknown field `prot`",
        ),
        ("ingress:\n  - {port: 80}\n  - {port: 80}\n", "twice"),
        (
            "ingress:\n  - {port: 80, host_ip: 0.0.0.0}\n",
            "host_ip needs host_port",
        ),
    ];
    for (yaml, want) in cases {
        let err = EnclaveSpec::from_yaml(yaml).unwrap_err().to_string();
        assert!(err.contains(want), "{yaml:?}: {err}");
    }
}

#[test]
fn host_patterns_match_names_and_subdomains() {
    let exact: HostPattern = "db.internal".parse().unwrap();
    assert!(exact.matches("DB.Internal."));
    assert!(!exact.matches("x.db.internal"));
    let wild: HostPattern = "*.example.com".parse().unwrap();
    assert!(wild.matches("api.example.com"));
    assert!(wild.matches("a.b.example.com"));
    assert!(!wild.matches("example.com"));
    assert!(!wild.matches("badexample.com"));
    assert!(!wild.matches(".example.com"));
}

#[test]
fn cidr_contains() {
    let c: Cidr = "10.0.0.0/8".parse().unwrap();
    assert!(c.contains("10.255.0.1".parse().unwrap()));
    assert!(!c.contains("11.0.0.1".parse().unwrap()));
    assert!(c.contains("::ffff:10.1.2.3".parse().unwrap()));
    let one: Cidr = "127.0.0.2".parse().unwrap();
    assert_eq!(one.to_string(), "127.0.0.2/32");
    assert!(!one.contains("127.0.0.3".parse().unwrap()));
    let all: Cidr = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains("8.8.8.8".parse().unwrap()));
    let v6: Cidr = "fd00::/8".parse().unwrap();
    assert!(v6.contains("fd12::1".parse().unwrap()));
    assert!(!v6.contains("10.0.0.1".parse().unwrap()));
}

#[test]
fn allow_special_is_read_and_left_out_of_the_measured_spec_when_false() {
    let spec = EnclaveSpec::from_yaml(
        "egress:\n  mode: transparent\n  allow:\n    - {cidr: 0.0.0.0/0, port: 80, allow_special: true}\n    \
         - {host: db.internal, port: 5432, allow_special: true}\n    - {cidr: 10.0.0.0/8, port: 443}\n",
    )
    .unwrap();
    let flags: Vec<bool> = spec.egress.allow.iter().map(|r| r.allow_special).collect();
    assert_eq!(flags, [true, true, false]);
    let json = String::from_utf8(spec.to_canonical_json()).unwrap();
    assert_eq!(json.matches("allow_special").count(), 2, "{json}");
    let back: EnclaveSpec = serde_json::from_str(&json).unwrap();
    assert_eq!(back.egress, spec.egress);
    // A spec without the field measures as it did before the field existed.
    let plain = EnclaveSpec::from_yaml("egress:\n  - {cidr: 10.0.0.0/8, port: 443}\n").unwrap();
    let json: serde_json::Value = serde_json::from_slice(&plain.to_canonical_json()).unwrap();
    assert_eq!(
        json["egress"]["allow"][0],
        serde_json::json!({"cidr": "10.0.0.0/8", "port": 443})
    );
}

#[test]
fn rule_errors_name_their_line() {
    let cases = [
        (
            "egress:\n  - {host: a.b, port: 1}\n  - {cidr: 10.0.0.0/8, port: 443, allow_special: true}\n",
            "line 3",
            "allow_special has no effect: it lies inside 10.0.0.0/8 (a private (RFC 1918) address)",
        ),
        (
            "egress:\n  - {cidr: 8.8.8.0/24, port: 53, allow_special: true}\n",
            "line 2",
            "8.8.8.0/24 port 53: allow_special has no effect: it holds no special address",
        ),
        (
            "egress:\n  - {cidr: 169.254.169.254/32, port: 80, allow_special: true}\n",
            "line 2",
            "lies inside 169.254.169.254/32 (a cloud metadata service address)",
        ),
        (
            "egress:\n  mode: transparent\n  allow:\n    - {host: a.b, port: 1}\n    - {host: a.b, cidr: 10.0.0.0/8, port: 1}\n",
            "line 5",
            "needs exactly one of `host` or `cidr`",
        ),
        (
            "egress:\n\n  - {host: a.b, port: 0}\n",
            "line 3",
            "port 0 is not a port",
        ),
        (
            "egress:\n  - {cidr: \"::ffff:10.0.0.0/104\", port: 1}\n",
            "line 2",
            "IPv4-mapped range never matches",
        ),
        (
            "egress:\n  - {cidr: 10.0.0.1/8, port: 1}\n",
            "line 2",
            "host bits",
        ),
        (
            "egress:\n  - {host: a.b, port: 1, allow_special: yes please}\n",
            "line 2",
            "allow_special",
        ),
    ];
    for (yaml, line, want) in cases {
        let err = EnclaveSpec::from_yaml(yaml).unwrap_err().to_string();
        assert!(err.contains(want), "{yaml:?}: {err}");
        assert!(err.contains(line), "{yaml:?}: {err}");
    }
}

#[test]
fn allow_special_is_accepted_where_it_changes_something() {
    for rule in [
        "{cidr: 0.0.0.0/0, port: 80, allow_special: true}",
        "{cidr: \"::/0\", port: 80, allow_special: true}",
        "{cidr: 169.254.0.0/16, port: 80, allow_special: true}",
        "{cidr: \"64:ff9b::/96\", port: 80, allow_special: true}",
        "{host: db.internal, port: 5432, allow_special: true}",
        "{host: \"*.internal\", port: 5432, allow_special: true}",
    ] {
        let yaml = format!("egress:\n  - {rule}\n");
        assert!(EnclaveSpec::from_yaml(&yaml).is_ok(), "{rule}");
    }
}

#[test]
fn rules_built_in_code_are_checked_by_validate() {
    let mut spec = EnclaveSpec::default();
    spec.egress.allow.push(EgressRule {
        host: None,
        cidr: Some("127.0.0.0/8".parse().unwrap()),
        port: 80,
        allow_special: true,
    });
    let err = spec.validate().unwrap_err().to_string();
    assert!(err.contains("allow_special has no effect"), "{err}");
    spec.egress.allow[0].allow_special = false;
    assert!(spec.validate().is_ok());
}

#[test]
fn cidr_covers() {
    let c = |s: &str| s.parse::<Cidr>().unwrap();
    assert!(c("10.0.0.0/8").covers(&c("10.1.0.0/16")));
    assert!(c("10.0.0.0/8").covers(&c("10.0.0.0/8")));
    assert!(!c("10.1.0.0/16").covers(&c("10.0.0.0/8")));
    assert!(!c("10.0.0.0/8").covers(&c("11.0.0.0/16")));
    assert!(c("0.0.0.0/0").covers(&c("127.0.0.1/32")));
    assert!(!c("::/0").covers(&c("127.0.0.1/32")));
    assert!(c("fc00::/7").covers(&c("fd00:ec2::254/128")));
}
