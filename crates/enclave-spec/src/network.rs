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
//!     - {cidr: 0.0.0.0/0, port: 80, allow_special: true}   # loopback, metadata, … included
//! ```
//!
//! Both lists are measured (PCR2): the host cannot widen what the enclave accepts or reaches.
//! Matching a connection against these rules is `enclave-proxy`'s business; this module parses
//! and validates them, and defines the special address ranges ([`special`]) a rule reaches only
//! when its prefix lies inside them or it says `allow_special: true`.

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

use super::SpecError;

mod special;

pub use special::{holds_special_beyond, special_prefix, special_range, SpecialRange};

/// An enclave port reachable from the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
///
/// Deserializing checks the rule ([`EgressRule::check`]) while the rule's own mapping is being
/// read, so a bad rule is an error that names the rule's line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
// The schema is written as RawEgressRule reads: unknown fields refused, `allow_special`
// optional, exactly one of `host` and `cidr`.
#[cfg_attr(
    feature = "schema",
    derive(schemars::JsonSchema),
    schemars(
        deny_unknown_fields,
        extend("oneOf" = [{"required": ["host"]}, {"required": ["cidr"]}])
    )
)]
pub struct EgressRule {
    /// A DNS name, or `*.domain` for any name under the domain (not the domain itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<HostPattern>,
    /// An address range.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cidr: Option<Cidr>,
    /// The TCP port.
    pub port: u16,
    /// Whether the rule also reaches the special ranges ([`SpecialRange`]: loopback, private,
    /// link-local, the metadata service, …) it would otherwise not: for a `cidr` rule, those
    /// its prefix does not lie inside; for a `host` rule, any special address the name resolves
    /// to. Left out of the measured spec when false, so specs without it measure as before.
    #[serde(skip_serializing_if = "is_false")]
    #[cfg_attr(feature = "schema", schemars(default))]
    pub allow_special: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// [`EgressRule`] as written, before [`EgressRule::check`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgressRule {
    #[serde(default)]
    host: Option<HostPattern>,
    #[serde(default)]
    cidr: Option<Cidr>,
    port: u16,
    #[serde(default)]
    allow_special: bool,
}

impl<'de> Deserialize<'de> for EgressRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = EgressRule;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an egress rule: `host` or `cidr`, `port`, optionally `allow_special`")
            }
            // The check runs inside the rule's own mapping: the YAML parser then gives the error the
            // mapping's line, where a check after deserializing would get the list's.
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                let raw = RawEgressRule::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let rule = EgressRule {
                    host: raw.host,
                    cidr: raw.cidr,
                    port: raw.port,
                    allow_special: raw.allow_special,
                };
                rule.check().map_err(de::Error::custom)?;
                Ok(rule)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl EgressRule {
    /// What the schema alone cannot say about one rule: a port, exactly one of `host` and
    /// `cidr`, no IPv4-mapped range (it would never match: mapped addresses are matched as IPv4),
    /// and no `allow_special` where it changes nothing.
    pub fn check(&self) -> Result<(), String> {
        let port = self.port;
        if port == 0 {
            return Err("egress: port 0 is not a port".into());
        }
        let cidr = match (&self.host, self.cidr) {
            (Some(_), None) => return Ok(()),
            (None, Some(cidr)) => cidr,
            _ => {
                return Err(format!(
                    "egress rule for port {port}: needs exactly one of `host` or `cidr`"
                ))
            }
        };
        if let IpAddr::V6(net) = cidr.addr() {
            if cidr.prefix() >= 96 && net.to_ipv4_mapped().is_some() {
                return Err(format!(
                    "egress rule {cidr}: an IPv4-mapped range never matches (mapped addresses are \
                     matched as IPv4); write the IPv4 range"
                ));
            }
        }
        if self.allow_special && !holds_special_beyond(&cidr) {
            let why = match special_prefix(cidr.addr()) {
                Some((range, entry)) => {
                    format!("it lies inside {entry} ({range}), which the rule reaches without it")
                }
                None => "it holds no special address".to_owned(),
            };
            return Err(format!(
                "egress rule {cidr} port {port}: allow_special has no effect: {why}"
            ));
        }
        Ok(())
    }
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

    /// Whether `inner` lies inside this range: same family, a prefix at least as long, and its
    /// network inside this one.
    pub fn covers(&self, inner: &Cidr) -> bool {
        self.addr.is_ipv4() == inner.addr.is_ipv4()
            && inner.prefix >= self.prefix
            && self.contains(inner.addr)
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

/// Checks what the schema cannot: ports, one of host/cidr, duplicates, `allow_special`.
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
        // Rules read from YAML or JSON were checked as they were read (naming their line); a
        // spec built in code is checked here.
        r.check().map_err(SpecError::Invalid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
