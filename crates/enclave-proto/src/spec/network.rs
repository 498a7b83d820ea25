//! The network sections of the spec: `ingress` and `egress`.
//!
//! ```yaml
//! ingress:
//!   - port: 8080          # enclave port the host may reach
//!     host_port: 8080     # optional: published by `run` without `-p`
//!     host_ip: 127.0.0.1  # optional, with host_port (default 127.0.0.1)
//! egress:                 # a list (named mode) or {mode, allow}
//!   mode: transparent     # named (default) | transparent
//!   allow:
//!     - {host: db.internal, port: 5432}
//!     - {host: "*.example.com", port: 443}
//!     - {cidr: 10.0.0.0/8, port: 443}
//! ```
//!
//! Both lists are measured (PCR2): the host cannot widen what the enclave accepts or reaches.
//! Matching a connection against these rules is `enclave-proxy`'s business; this module only
//! parses and validates them.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::SpecError;

/// An enclave port reachable from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressSpec {
    /// The TCP port inside the enclave (on 127.0.0.1).
    pub port: u16,
    /// Publish it on this host port when the enclave runs, as `-p HOST_PORT:PORT` would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<u16>,
    /// The host address to publish on (127.0.0.1 unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ip: Option<IpAddr>,
}

/// The egress allow-list and how outbound connections reach the forwarders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct EgressSpec {
    /// How the enclave's programs reach the allowed endpoints.
    pub mode: EgressMode,
    /// The allowed endpoints.
    pub allow: Vec<EgressRule>,
}

impl EgressSpec {
    /// No egress at all (the default).
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.mode == EgressMode::Named
    }
}

/// How outbound connections reach the egress forwarders inside the enclave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EgressMode {
    /// Each named endpoint gets a loopback alias, an /etc/hosts line and a forwarder; programs
    /// connect to the name. CIDR rules are reachable only in transparent mode.
    #[default]
    Named,
    /// Besides the named forwarders, every outbound TCP connection is redirected with netfilter
    /// to a forwarder that sends its original destination to the host.
    Transparent,
}

/// One allowed endpoint: exactly one of `host` or `cidr`, and a port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRule {
    /// A DNS name, or `*.domain` for any name under the domain (not the domain itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<HostPattern>,
    /// An address range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Cidr>,
    /// The TCP port.
    pub port: u16,
}

// `egress:` is either a plain list of rules (named mode) or `{mode, allow}`. A visitor rather
// than `#[serde(untagged)]` so that a typo inside either form still gets serde's precise error.
impl<'de> Deserialize<'de> for EgressSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Full {
            #[serde(default)]
            mode: EgressMode,
            #[serde(default)]
            allow: Vec<EgressRule>,
        }

        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = EgressSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of egress rules or a map with `mode` and `allow`")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                let allow = Vec::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(EgressSpec {
                    mode: EgressMode::Named,
                    allow,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let full = Full::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(EgressSpec {
                    mode: full.mode,
                    allow: full.allow,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A DNS name (`db.internal`) or a wildcard (`*.example.com`), stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPattern(String);

impl HostPattern {
    /// The pattern as written (lower-case), e.g. `*.example.com`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// For `*.domain`, the domain; `None` for an exact name.
    pub fn wildcard_domain(&self) -> Option<&str> {
        self.0.strip_prefix("*.")
    }

    /// Whether `name` (any case, an optional trailing dot) is this name or, for a wildcard, a
    /// name under its domain.
    pub fn matches(&self, name: &str) -> bool {
        let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
        match self.wildcard_domain() {
            Some(domain) => name
                .strip_suffix(domain)
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            None => name == self.0,
        }
    }
}

/// Whether `name` is a valid DNS host name: 1..=253 characters, labels of 1..=63 letters,
/// digits and inner hyphens, separated by dots. IP address literals are refused (use `cidr`).
pub fn valid_host_name(name: &str) -> bool {
    name.len() <= 253
        && !name.is_empty()
        && name.parse::<IpAddr>().is_err()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl FromStr for HostPattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
        let name = lower.strip_prefix("*.").unwrap_or(&lower);
        if !valid_host_name(name) {
            return Err(format!(
                "{s:?} is not a host name (letters, digits, '-' and '.', optionally starting with \
                 \"*.\"; use `cidr` for addresses)"
            ));
        }
        Ok(HostPattern(lower))
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IPv4 or IPv6 address range, `ADDR/PREFIX` (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The network address (host bits zero).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// The prefix length.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` is inside the range. IPv4-mapped IPv6 addresses count as IPv4.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                mask_v4(u32::from(ip), self.prefix) == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                mask_v6(u128::from(ip), self.prefix) == u128::from(net)
            }
            _ => false,
        }
    }
}

fn mask_v4(v: u32, prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        v & (u32::MAX << (32 - u32::from(prefix)))
    }
}

fn mask_v6(v: u128, prefix: u8) -> u128 {
    if prefix == 0 {
        0
    } else {
        v & (u128::MAX << (128 - u32::from(prefix)))
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad =
            || format!("{s:?} is not an address range (expected e.g. 10.0.0.0/8 or fd00::/8)");
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().map_err(|_| bad())?,
                Some(p.parse::<u8>().map_err(|_| bad())?),
            ),
            None => (s.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        let network = match addr {
            IpAddr::V4(a) => IpAddr::V4(mask_v4(u32::from(a), prefix).into()),
            IpAddr::V6(a) => IpAddr::V6(mask_v6(u128::from(a), prefix).into()),
        };
        let cidr = Cidr {
            addr: network,
            prefix,
        };
        if network != addr {
            return Err(format!(
                "{s:?} has host bits set; the range is {cidr} (write that to mean it)"
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

macro_rules! serde_via_str {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(de::Error::custom)
            }
        }
    };
}
serde_via_str!(HostPattern);
serde_via_str!(Cidr);

/// Checks what the schema cannot: ports, one of host/cidr, duplicates.
pub(super) fn validate(ingress: &[IngressSpec], egress: &EgressSpec) -> Result<(), SpecError> {
    let invalid = |m: String| Err(SpecError::Invalid(m));
    let mut ports = BTreeSet::new();
    let mut host_ports = BTreeSet::new();
    for i in ingress {
        if i.port == 0 {
            return invalid("ingress: port 0 is not a port".into());
        }
        if !ports.insert(i.port) {
            return invalid(format!("ingress: port {} is listed twice", i.port));
        }
        match (i.host_port, i.host_ip) {
            (Some(0), _) => return invalid(format!("ingress {}: host_port 0", i.port)),
            (Some(hp), ip) if !host_ports.insert((hp, ip)) => {
                return invalid(format!("ingress: host_port {hp} is published twice"))
            }
            (None, Some(_)) => {
                return invalid(format!(
                    "ingress {}: host_ip needs host_port (the port to publish on)",
                    i.port
                ))
            }
            _ => {}
        }
    }
    for r in &egress.allow {
        if r.port == 0 {
            return invalid("egress: port 0 is not a port".into());
        }
        if r.host.is_some() == r.cidr.is_some() {
            return invalid(format!(
                "egress rule for port {}: needs exactly one of `host` or `cidr`",
                r.port
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
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
}
