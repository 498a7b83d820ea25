//! The allow-lists, as the proxies apply them.
//!
//! The rules come from the measured spec (`ingress:` and `egress:` of `enclave.yaml`), or, for
//! the standalone binary, from an [`AllowList`] file with the same two sections. The enclave side
//! checks them before a connection leaves the enclave; the host checks them again, because the
//! host is what actually reaches the network and must not trust the enclave's forwarders:
//!
//! - a name request must match a `host` rule with its port ([`EgressPolicy::check_name`]);
//! - an address request (transparent mode) must fall inside a `cidr` rule with its port
//!   ([`EgressPolicy::check_addr`]);
//! - an address in a special range ([`SpecialRange`]: loopback, private, link-local, the
//!   metadata service, …) is reached only by a rule that reaches it specially: a `cidr` rule for
//!   the port whose prefix lies inside the address's range, or a matching rule that says
//!   `allow_special: true`. For a name request this applies to every address the name resolves
//!   to ([`EgressPolicy::filter_resolved`]), so neither a broad `cidr` rule nor a name becomes a
//!   way into the host's loopback, the metadata service or the private network.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

pub use enclave_spec::{special_prefix, special_range, SpecialRange};
use enclave_spec::{Cidr, EgressMode, EgressSpec, HostPattern, IngressSpec};
use serde::{Deserialize, Serialize};

use crate::header::Status;

/// Why a connection was refused. The `Display` text says exactly what was refused and why; it is
/// what the proxies log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No `host` rule matches the name with this port.
    #[error("no egress rule allows {name}:{port}")]
    NameNotListed {
        /// The requested name.
        name: String,
        /// The requested port.
        port: u16,
    },
    /// An address request that no `cidr` rule with this port contains.
    #[error("no egress cidr rule allows {}", sockaddr(*addr, *port))]
    AddrNotListed {
        /// The requested address.
        addr: IpAddr,
        /// The requested port.
        port: u16,
    },
    /// An address request in a special range that the `cidr` rules holding it do not reach:
    /// none lies inside the range, none says `allow_special`.
    #[error(
        "{} is {range} ({entry}): a cidr rule for port {port} reaches it only if its prefix lies \
         inside {entry} or it says allow_special: true", sockaddr(*addr, *port)
    )]
    SpecialAddrNotReached {
        /// The requested address.
        addr: IpAddr,
        /// The requested port.
        port: u16,
        /// Its range.
        range: SpecialRange,
        /// The special-range entry it belongs to.
        entry: Cidr,
    },
    /// An address request while the spec's egress mode is `named`, which only reaches names.
    #[error(
        "address request for {} refused: egress mode is `named` (address requests need \
         `mode: transparent`)", sockaddr(*addr, *port)
    )]
    AddrNeedsTransparent {
        /// The requested address.
        addr: IpAddr,
        /// The requested port.
        port: u16,
    },
    /// The name resolved only to addresses in special ranges that no rule reaches.
    #[error(
        "{name} resolved to {addr}, {range} ({entry}), which needs allow_special: true on the \
         rule or a cidr rule for port {port} inside {entry}"
    )]
    SpecialAddr {
        /// The requested name.
        name: String,
        /// The first refused address.
        addr: IpAddr,
        /// Its range.
        range: SpecialRange,
        /// The special-range entry it belongs to.
        entry: Cidr,
        /// The requested port.
        port: u16,
    },
    /// The name did not resolve.
    #[error("{name} did not resolve: {reason}")]
    Unresolved {
        /// The requested name.
        name: String,
        /// The resolver's answer.
        reason: String,
    },
    /// An ingress request for an enclave port not in `ingress:`.
    #[error("enclave port {port} is not in the ingress allow-list")]
    PortNotListed {
        /// The requested enclave port.
        port: u16,
    },
}

fn sockaddr(addr: IpAddr, port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::new(addr, port)
}

impl Refusal {
    /// The status byte that answers the request.
    pub fn status(&self) -> Status {
        match self {
            Refusal::SpecialAddr { .. } | Refusal::Unresolved { .. } => Status::ResolveFailed,
            _ => Status::NotAllowed,
        }
    }
}

/// A `host` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostRule {
    pattern: HostPattern,
    port: u16,
    allow_special: bool,
    /// `host PATTERN:PORT`, its name in the metrics.
    label: String,
}

/// A `cidr` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
struct CidrRule {
    cidr: Cidr,
    port: u16,
    allow_special: bool,
    /// `cidr CIDR:PORT`, its name in the metrics.
    label: String,
}

/// What the `cidr` rules say about an address and port.
enum Reach {
    /// A rule reaches it.
    Yes,
    /// No rule for the port holds it.
    NoRule,
    /// Rules hold it, but it is in a special range none of them reaches.
    NotSpecially(SpecialRange, Cidr),
}

/// The egress allow-list, ready for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    mode: EgressMode,
    hosts: Vec<HostRule>,
    cidrs: Vec<CidrRule>,
}

impl EgressPolicy {
    /// The policy of a spec's `egress:` section.
    pub fn new(spec: &EgressSpec) -> Self {
        let mut hosts = Vec::new();
        let mut cidrs = Vec::new();
        for rule in &spec.allow {
            // Validated specs have exactly one of the two; a rule with both counts for both.
            if let Some(h) = &rule.host {
                hosts.push(HostRule {
                    pattern: h.clone(),
                    port: rule.port,
                    allow_special: rule.allow_special,
                    label: format!("host {}:{}", h.as_str(), rule.port),
                });
            }
            if let Some(c) = rule.cidr {
                cidrs.push(CidrRule {
                    cidr: c,
                    port: rule.port,
                    allow_special: rule.allow_special,
                    label: format!("cidr {c}:{}", rule.port),
                });
            }
        }
        EgressPolicy {
            mode: spec.mode,
            hosts,
            cidrs,
        }
    }

    /// Every rule's name in the metrics (`host PATTERN:PORT`, `cidr CIDR:PORT`), each once:
    /// the `host` rules, then the `cidr` rules, in spec order.
    pub fn rule_labels(&self) -> Vec<String> {
        let mut seen = BTreeSet::new();
        let all = self.hosts.iter().map(|h| &h.label);
        all.chain(self.cidrs.iter().map(|c| &c.label))
            .filter(|l| seen.insert(l.as_str()))
            .cloned()
            .collect()
    }

    /// The rule a name request falls under: the first `host` rule for the name and port.
    pub fn name_rule(&self, name: &str, port: u16) -> Option<&str> {
        self.hosts
            .iter()
            .find(|h| h.port == port && h.pattern.matches(name))
            .map(|h| h.label.as_str())
    }

    /// The rule an address request falls under: the first `cidr` rule with the port holding it.
    pub fn addr_rule(&self, addr: IpAddr, port: u16) -> Option<&str> {
        let addr = addr.to_canonical();
        self.cidrs
            .iter()
            .find(|r| r.port == port && r.cidr.contains(addr))
            .map(|r| r.label.as_str())
    }

    /// Whether a `host` rule allows `name:port`.
    pub fn check_name(&self, name: &str, port: u16) -> Result<(), Refusal> {
        if self.host_rules(name, port).next().is_some() {
            Ok(())
        } else {
            Err(Refusal::NameNotListed {
                name: name.to_owned(),
                port,
            })
        }
    }

    fn host_rules<'a>(&'a self, name: &'a str, port: u16) -> impl Iterator<Item = &'a HostRule> {
        self.hosts
            .iter()
            .filter(move |h| h.port == port && h.pattern.matches(name))
    }

    /// Whether an address request (transparent mode) for `addr:port` is allowed: a `cidr` rule
    /// with the port must hold it and, for an address in a special range, reach it (lie inside
    /// the range or say `allow_special`). IPv4-mapped addresses are judged as IPv4.
    pub fn check_addr(&self, addr: IpAddr, port: u16) -> Result<(), Refusal> {
        if self.mode != EgressMode::Transparent {
            return Err(Refusal::AddrNeedsTransparent { addr, port });
        }
        let addr = addr.to_canonical();
        match self.cidr_reach(addr, port) {
            Reach::Yes => Ok(()),
            Reach::NoRule => Err(Refusal::AddrNotListed { addr, port }),
            Reach::NotSpecially(range, entry) => Err(Refusal::SpecialAddrNotReached {
                addr,
                port,
                range,
                entry,
            }),
        }
    }

    /// The exact (non-wildcard) names of the `host` rules, each once, in spec order: the
    /// names that get a loopback alias in the enclave from the start.
    pub fn exact_names(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.hosts
            .iter()
            .filter(|h| h.pattern.wildcard_domain().is_none())
            .map(|h| h.pattern.as_str())
            .filter(|n| seen.insert(*n))
            .collect()
    }

    /// Every port some `host` rule allows for `name` (exact or wildcard match); empty when the
    /// name is not allowed at all.
    pub fn ports_for(&self, name: &str) -> BTreeSet<u16> {
        self.hosts
            .iter()
            .filter(|h| h.pattern.matches(name))
            .map(|h| h.port)
            .collect()
    }

    /// Whether the `cidr` rules for `port` reach canonical address `addr`.
    fn cidr_reach(&self, addr: IpAddr, port: u16) -> Reach {
        let mut holding = self
            .cidrs
            .iter()
            .filter(|r| r.port == port && r.cidr.contains(addr))
            .peekable();
        if holding.peek().is_none() {
            return Reach::NoRule;
        }
        let Some((range, entry)) = special_prefix(addr) else {
            return Reach::Yes;
        };
        if holding.any(|r| r.allow_special || entry.covers(&r.cidr)) {
            Reach::Yes
        } else {
            Reach::NotSpecially(range, entry)
        }
    }

    /// The addresses a name request may connect to, in the resolver's order (IPv4-mapped
    /// addresses as IPv4): the name must be allowed, and each address must be public, or the
    /// name's rule must say `allow_special`, or a `cidr` rule with the port must reach it (as for
    /// an address request). Refused when none is left.
    pub fn filter_resolved(
        &self,
        name: &str,
        port: u16,
        addrs: &[IpAddr],
    ) -> Result<Vec<IpAddr>, Refusal> {
        self.check_name(name, port)?;
        let name_reaches_special = self.host_rules(name, port).any(|h| h.allow_special);
        let mut allowed = Vec::with_capacity(addrs.len());
        let mut first_refused = None;
        for &addr in addrs {
            let addr = addr.to_canonical();
            let refused = match special_prefix(addr) {
                Some(_) if name_reaches_special => None,
                Some((range, entry)) => match self.cidr_reach(addr, port) {
                    Reach::Yes => None,
                    Reach::NoRule | Reach::NotSpecially(..) => Some((range, entry)),
                },
                None => None,
            };
            match refused {
                Some((range, entry)) => {
                    first_refused.get_or_insert((addr, range, entry));
                }
                None if allowed.contains(&addr) => {}
                None => allowed.push(addr),
            }
        }
        match (allowed.is_empty(), first_refused) {
            (false, _) => Ok(allowed),
            (true, Some((addr, range, entry))) => Err(Refusal::SpecialAddr {
                name: name.to_owned(),
                addr,
                range,
                entry,
                port,
            }),
            (true, None) => Err(Refusal::Unresolved {
                name: name.to_owned(),
                reason: "no addresses".into(),
            }),
        }
    }
}

/// The ingress allow-list: the enclave ports the host may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngressPolicy {
    ports: BTreeSet<u16>,
}

impl IngressPolicy {
    /// The policy of a spec's `ingress:` section.
    pub fn new(spec: &[IngressSpec]) -> Self {
        IngressPolicy {
            ports: spec.iter().map(|i| i.port).collect(),
        }
    }

    /// Whether the host may reach enclave port `port`.
    pub fn check(&self, port: u16) -> Result<(), Refusal> {
        if self.ports.contains(&port) {
            Ok(())
        } else {
            Err(Refusal::PortNotListed { port })
        }
    }
}

/// Name resolution for egress: static overrides (like `docker run --add-host NAME:IP`) first,
/// then the system resolver. Overridden addresses still go through
/// [`EgressPolicy::filter_resolved`].
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    overrides: Arc<HashMap<String, Vec<IpAddr>>>,
}

impl Resolver {
    /// A resolver with overrides; a name given several times gets all its addresses, in order.
    pub fn new(overrides: impl IntoIterator<Item = (String, IpAddr)>) -> Self {
        let mut map: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (name, addr) in overrides {
            map.entry(normalise(&name)).or_default().push(addr);
        }
        Resolver {
            overrides: Arc::new(map),
        }
    }

    /// The addresses of `name`. Blocks a thread of the runtime's blocking pool for the system
    /// resolver (getaddrinfo has no async form); the caller bounds the wait.
    pub async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, Refusal> {
        if let Some(addrs) = self.overrides.get(&normalise(name)) {
            return Ok(addrs.clone());
        }
        let unresolved = |reason: String| Refusal::Unresolved {
            name: name.to_owned(),
            reason,
        };
        // The port is required by the API and irrelevant here.
        let found = tokio::net::lookup_host((name, 0))
            .await
            .map_err(|e| unresolved(e.to_string()))?;
        let mut addrs: Vec<IpAddr> = Vec::new();
        for a in found {
            if !addrs.contains(&a.ip()) {
                addrs.push(a.ip());
            }
        }
        if addrs.is_empty() {
            return Err(unresolved("no addresses".into()));
        }
        Ok(addrs)
    }
}

fn normalise(name: &str) -> String {
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

/// The standalone binary's allow-list file: the `ingress:` and `egress:` sections of
/// `enclave.yaml`, same syntax, same validation, nothing else.
///
/// ```yaml
/// ingress:
///   - port: 8080
/// egress:
///   mode: transparent
///   allow:
///     - {host: "*.example.com", port: 443}
///     - {cidr: 10.0.0.0/8, port: 5432}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AllowList {
    /// Enclave ports reachable from the host.
    #[serde(default)]
    pub ingress: Vec<IngressSpec>,
    /// Endpoints the enclave may reach.
    #[serde(default)]
    pub egress: EgressSpec,
}

#[cfg(feature = "yaml")]
mod file;
#[cfg(feature = "yaml")]
pub use file::AllowListError;

#[cfg(test)]
mod tests;
