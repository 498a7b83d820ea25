//! The allow-lists, as the proxies apply them.
//!
//! The rules come from the measured spec (`ingress:` and `egress:` of `enclave.yaml`), or, for
//! the standalone binary, from an [`AllowList`] file with the same two sections. The enclave side
//! checks them before a connection leaves the enclave; the host checks them again, because the
//! host is what actually reaches the network and must not trust the enclave's forwarders:
//!
//! - a name request must match a `host` rule with its port ([`EgressPolicy::check_name`]);
//! - every address the name resolves to must be public, or else inside a `cidr` rule with the
//!   same port ([`EgressPolicy::filter_resolved`]): a name must not become a way into the host's
//!   loopback, the metadata service or the private network;
//! - an address request (transparent mode) must fall inside a `cidr` rule with its port, private
//!   or not ([`EgressPolicy::check_addr`]).

mod ranges;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use enclave_proto::spec::{
    Cidr, EgressMode, EgressSpec, EnclaveSpec, HostPattern, IngressSpec, SpecError,
};
use serde::{Deserialize, Serialize};

use crate::header::Status;
pub use ranges::{special_range, SpecialRange};

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
    /// The name resolved only to addresses in special ranges that no `cidr` rule lists.
    #[error(
        "{name} resolved to {addr}, {range}, which only a cidr rule for port {port} may allow"
    )]
    SpecialAddr {
        /// The requested name.
        name: String,
        /// The first refused address.
        addr: IpAddr,
        /// Its range.
        range: SpecialRange,
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

/// The egress allow-list, ready for matching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressPolicy {
    mode: EgressMode,
    hosts: Vec<(HostPattern, u16)>,
    cidrs: Vec<(Cidr, u16)>,
}

impl EgressPolicy {
    /// The policy of a spec's `egress:` section.
    pub fn new(spec: &EgressSpec) -> Self {
        let mut hosts = Vec::new();
        let mut cidrs = Vec::new();
        for rule in &spec.allow {
            // Validated specs have exactly one of the two; a rule with both counts for both.
            if let Some(h) = &rule.host {
                hosts.push((h.clone(), rule.port));
            }
            if let Some(c) = rule.cidr {
                cidrs.push((c, rule.port));
            }
        }
        EgressPolicy {
            mode: spec.mode,
            hosts,
            cidrs,
        }
    }

    /// Whether a `host` rule allows `name:port`.
    pub fn check_name(&self, name: &str, port: u16) -> Result<(), Refusal> {
        if self
            .hosts
            .iter()
            .any(|(h, p)| *p == port && h.matches(name))
        {
            Ok(())
        } else {
            Err(Refusal::NameNotListed {
                name: name.to_owned(),
                port,
            })
        }
    }

    /// Whether an address request (transparent mode) for `addr:port` is allowed: only a `cidr`
    /// rule with the port allows it, whether the address is public or not.
    pub fn check_addr(&self, addr: IpAddr, port: u16) -> Result<(), Refusal> {
        if self.mode != EgressMode::Transparent {
            return Err(Refusal::AddrNeedsTransparent { addr, port });
        }
        if self.cidr_allows(addr, port) {
            Ok(())
        } else {
            Err(Refusal::AddrNotListed { addr, port })
        }
    }

    /// The exact (non-wildcard) names of the `host` rules, each once, in spec order: the
    /// names that get a loopback alias in the enclave from the start.
    pub fn exact_names(&self) -> Vec<&str> {
        let mut seen = BTreeSet::new();
        self.hosts
            .iter()
            .filter(|(h, _)| h.wildcard_domain().is_none())
            .map(|(h, _)| h.as_str())
            .filter(|n| seen.insert(*n))
            .collect()
    }

    /// Every port some `host` rule allows for `name` (exact or wildcard match); empty when the
    /// name is not allowed at all.
    pub fn ports_for(&self, name: &str) -> BTreeSet<u16> {
        self.hosts
            .iter()
            .filter(|(h, _)| h.matches(name))
            .map(|(_, p)| *p)
            .collect()
    }

    fn cidr_allows(&self, addr: IpAddr, port: u16) -> bool {
        self.cidrs
            .iter()
            .any(|(c, p)| *p == port && c.contains(addr))
    }

    /// The addresses a name request may connect to, in the resolver's order (IPv4-mapped
    /// addresses as IPv4): the name must be allowed, and each address must be public or inside a
    /// `cidr` rule with the port. Refused when none is left.
    pub fn filter_resolved(
        &self,
        name: &str,
        port: u16,
        addrs: &[IpAddr],
    ) -> Result<Vec<IpAddr>, Refusal> {
        self.check_name(name, port)?;
        let mut allowed = Vec::with_capacity(addrs.len());
        let mut first_refused = None;
        for &addr in addrs {
            let addr = addr.to_canonical();
            match special_range(addr) {
                Some(range) if !self.cidr_allows(addr, port) => {
                    first_refused.get_or_insert((addr, range));
                }
                _ if allowed.contains(&addr) => {}
                _ => allowed.push(addr),
            }
        }
        match (allowed.is_empty(), first_refused) {
            (false, _) => Ok(allowed),
            (true, Some((addr, range))) => Err(Refusal::SpecialAddr {
                name: name.to_owned(),
                addr,
                range,
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

/// Why an allow-list file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum AllowListError {
    /// The file could not be read.
    #[error("cannot read allow-list {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML does not parse or does not match the schema (serde_yaml names the field, line
    /// and column).
    #[error("{}invalid allow-list: {source}", in_file(path.as_deref()))]
    Yaml {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// Why.
        source: serde_yaml::Error,
    },
    /// The rules parse but break a rule of the spec (duplicate ports, host and cidr together).
    #[error("{}invalid allow-list: {message}", in_file(path.as_deref()))]
    Invalid {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// What is wrong.
        message: String,
    },
}

fn in_file(path: Option<&Path>) -> String {
    path.map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

impl AllowList {
    /// Parses and validates an allow-list.
    pub fn from_yaml(text: &str) -> Result<Self, AllowListError> {
        Self::parse(text, None)
    }

    /// Reads, parses and validates an allow-list file.
    pub fn load(path: &Path) -> Result<Self, AllowListError> {
        let text = std::fs::read_to_string(path).map_err(|source| AllowListError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Self, AllowListError> {
        let list: AllowList = if text.trim().is_empty() {
            AllowList::default()
        } else {
            serde_yaml::from_str(text).map_err(|source| AllowListError::Yaml {
                path: path.map(Path::to_owned),
                source,
            })?
        };
        // The spec's own validation, so a rule means the same in both files.
        let as_spec = EnclaveSpec {
            ingress: list.ingress.clone(),
            egress: list.egress.clone(),
            ..EnclaveSpec::default()
        };
        match as_spec.validate() {
            Ok(()) => Ok(list),
            Err(SpecError::Invalid(message)) => Err(AllowListError::Invalid {
                path: path.map(Path::to_owned),
                message,
            }),
            Err(SpecError::Yaml(source)) => Err(AllowListError::Yaml {
                path: path.map(Path::to_owned),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests;
