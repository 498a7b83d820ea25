//! An enclave's network on the host: published ports (`run -p`) and the egress proxy.
//!
//! What the enclave accepts and reaches comes from its measured spec (read from the EIF); the
//! operator only chooses where ports are published and how names resolve (`--add-host`). `run`
//! refuses a `-p` for a port the enclave would refuse anyway, so the mistake shows at once
//! rather than as connections reset at the first request.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use enclave_proto::ports;
use enclave_proxy::host::{
    EgressConfig, EgressListen, EnclaveConnector, HostProxies, HostProxyConfig, Publish,
};
use enclave_spec::{EgressSpec, EnclaveSpec, HostPattern};
use serde::{Deserialize, Serialize};

use crate::backend::{ParentPort, VsockRoute};
use crate::error::{EngineError, Result};

/// A host port forwarded to an enclave port: `[HOST_IP:]HOST_PORT:ENCLAVE_PORT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// Host address listened on (127.0.0.1 unless given).
    pub host_ip: IpAddr,
    /// Host TCP port.
    pub host_port: u16,
    /// TCP port inside the enclave.
    pub enclave_port: u16,
}

impl FromStr for PublishedPort {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = |why: &str| {
            format!("invalid port mapping {s:?}: {why} (expected [HOST_IP:]HOST_PORT:ENCLAVE_PORT, e.g. 8443:443 or 0.0.0.0:8080:80)")
        };
        let (head, enclave) = s.rsplit_once(':').ok_or_else(|| bad("no ':'"))?;
        let (ip, host) = match head.rsplit_once(':') {
            Some((ip, host)) => {
                let ip = ip.trim_start_matches('[').trim_end_matches(']');
                (ip.parse().map_err(|_| bad("bad host address"))?, host)
            }
            None => (IpAddr::V4(Ipv4Addr::LOCALHOST), head),
        };
        let port = |p: &str, what| match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad(what)),
            Ok(n) => Ok(n),
        };
        Ok(PublishedPort {
            host_ip: ip,
            host_port: port(host, "bad host port")?,
            enclave_port: port(enclave, "bad enclave port")?,
        })
    }
}

impl fmt::Display for PublishedPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host_ip {
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}->{}/tcp", self.host_port, self.enclave_port),
            ip => write!(f, "{ip}:{}->{}/tcp", self.host_port, self.enclave_port),
        }
    }
}

/// A static name for the egress proxy's resolver: `NAME:IP`, like `docker run --add-host`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddHost {
    /// The name (lower-case).
    pub name: String,
    /// Its address.
    pub ip: IpAddr,
}

impl FromStr for AddHost {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad =
            || format!("invalid --add-host {s:?} (expected NAME:IP, e.g. db.internal:10.0.0.5)");
        let (name, ip) = s.split_once(':').ok_or_else(bad)?;
        let name = name.to_ascii_lowercase();
        if !enclave_spec::valid_host_name(&name) {
            return Err(bad());
        }
        let ip = ip.trim_start_matches('[').trim_end_matches(']');
        Ok(AddHost {
            name,
            ip: ip.parse().map_err(|_| bad())?,
        })
    }
}

/// What the supervisor runs for the enclave's network, recorded in `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkRecord {
    /// Published ports (`-p` and the spec's `ingress[].host_port`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub publish: Vec<PublishedPort>,
    /// The egress allow-list from the measured spec.
    #[serde(default, skip_serializing_if = "EgressSpec::is_empty")]
    pub egress: EgressSpec,
    /// `--add-host` names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_hosts: Vec<AddHost>,
}

impl NetworkRecord {
    /// Nothing to run.
    pub fn is_empty(&self) -> bool {
        self.publish.is_empty() && self.egress.is_empty()
    }

    /// Plans the network of an enclave from its measured spec (`None` for an EIF without one)
    /// and the operator's `-p` and `--add-host`. Fails when a `-p` names a port the enclave does
    /// not accept, two mappings take the same host port, or an `--add-host` names a host no
    /// egress rule allows (the mapping would never be used).
    pub fn plan(
        spec: Option<&EnclaveSpec>,
        publish: &[PublishedPort],
        add_hosts: &[AddHost],
    ) -> Result<NetworkRecord> {
        let ingress = spec.map(|s| s.ingress.as_slice()).unwrap_or_default();
        let mut all: Vec<PublishedPort> = ingress
            .iter()
            .filter_map(|i| {
                i.host_port.map(|host_port| PublishedPort {
                    host_ip: i.host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    host_port,
                    enclave_port: i.port,
                })
            })
            .collect();
        for p in publish {
            if !ingress.iter().any(|i| i.port == p.enclave_port) {
                let listed: Vec<String> = ingress.iter().map(|i| i.port.to_string()).collect();
                return Err(EngineError::Invalid(format!(
                    "-p {}:{}: the image does not accept connections on port {} (its measured \
                     ingress list is [{}]); add `ingress: [{{port: {}}}]` to enclave.yaml and \
                     rebuild",
                    p.host_port,
                    p.enclave_port,
                    p.enclave_port,
                    listed.join(", "),
                    p.enclave_port
                )));
            }
            // A -p for a port the spec already publishes replaces the spec's host port.
            all.retain(|q| q.enclave_port != p.enclave_port);
        }
        all.extend_from_slice(publish);
        for (i, p) in all.iter().enumerate() {
            if all[..i]
                .iter()
                .any(|q| q.host_port == p.host_port && q.host_ip == p.host_ip)
            {
                return Err(EngineError::Invalid(format!(
                    "host port {}:{} is published twice",
                    p.host_ip, p.host_port
                )));
            }
        }
        let egress = spec.map(|s| s.egress.clone()).unwrap_or_default();
        check_add_hosts(&egress, add_hosts)?;
        Ok(NetworkRecord {
            publish: all,
            egress,
            add_hosts: add_hosts.to_vec(),
        })
    }
}

/// Each `--add-host` name must be one a measured `host:` rule allows: the host's egress proxy
/// resolves only the names the enclave may ask for.
fn check_add_hosts(egress: &EgressSpec, add_hosts: &[AddHost]) -> Result<()> {
    let hosts: Vec<&HostPattern> = egress
        .allow
        .iter()
        .filter_map(|r| r.host.as_ref())
        .collect();
    for a in add_hosts {
        if !hosts.iter().any(|h| h.matches(&a.name)) {
            let listed: Vec<&str> = hosts.iter().map(|h| h.as_str()).collect();
            return Err(EngineError::Invalid(format!(
                "--add-host {}:{}: the image may not connect to {} (the host names of its \
                 measured egress list are [{}]), so the mapping would never be used; add \
                 `egress: [{{host: {}, port: …}}]` to enclave.yaml and rebuild",
                a.name,
                a.ip,
                a.name,
                listed.join(", "),
                a.name
            )));
        }
    }
    Ok(())
}

/// Starts the host side of an enclave's network: a listener per published port forwarding to
/// the enclave's ingress forwarder, and the egress proxy the enclave's forwarders connect to,
/// both where `route` says. Every listener is bound before this returns, so a port in use
/// fails the start. `None` when the enclave has no network.
pub fn start_host_proxies(net: &NetworkRecord, route: &VsockRoute) -> Result<Option<HostProxies>> {
    let Some(config) = host_proxy_config(net, route) else {
        return Ok(None);
    };
    HostProxies::start(config)
        .map(Some)
        .map_err(|e| EngineError::Invalid(format!("starting the enclave's network: {e}")))
}

/// What [`start_host_proxies`] starts.
fn host_proxy_config(net: &NetworkRecord, route: &VsockRoute) -> Option<HostProxyConfig> {
    if net.is_empty() {
        return None;
    }
    let egress = (!net.egress.is_empty()).then(|| EgressConfig {
        listen: match route.parent_port(ports::egress(route.cid())) {
            ParentPort::Unix(path) => EgressListen::Unix(path),
            ParentPort::Vsock { port, expect_cid } => EgressListen::Vsock {
                port,
                expect_cid: Some(expect_cid),
            },
        },
        policy: net.egress.clone(),
        add_hosts: net
            .add_hosts
            .iter()
            .map(|a| (a.name.clone(), a.ip))
            .collect(),
    });
    Some(HostProxyConfig {
        publish: net
            .publish
            .iter()
            .map(|p| Publish {
                host_ip: p.host_ip,
                host_port: p.host_port,
                enclave_port: p.enclave_port,
            })
            .collect(),
        enclave: EnclaveConnector::from(route.enclave_addr(ports::INGRESS)),
        egress,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[test]
    fn publish_syntax() {
        let p: PublishedPort = "8443:443".parse().unwrap();
        assert_eq!(p.to_string(), "127.0.0.1:8443->443/tcp");
        let p: PublishedPort = "0.0.0.0:80:8080".parse().unwrap();
        assert_eq!(
            (p.host_ip.to_string().as_str(), p.host_port, p.enclave_port),
            ("0.0.0.0", 80, 8080)
        );
        let p: PublishedPort = "[::1]:80:8080".parse().unwrap();
        assert_eq!(p.to_string(), "[::1]:80->8080/tcp");
        for bad in ["80", "x:80", "80:0", "1.2.3:80:80", "70000:80", ""] {
            let err = bad.parse::<PublishedPort>().unwrap_err();
            assert!(
                err.contains("expected [HOST_IP:]HOST_PORT:ENCLAVE_PORT"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn add_host_syntax() {
        let a: AddHost = "DB.internal:10.0.0.5".parse().unwrap();
        assert_eq!(
            (a.name.as_str(), a.ip.to_string().as_str()),
            ("db.internal", "10.0.0.5")
        );
        let a: AddHost = "v6.test:::1".parse().unwrap();
        assert_eq!(a.ip.to_string(), "::1");
        for bad in ["noip", "a b:1.2.3.4", "x:notanip"] {
            assert!(bad.parse::<AddHost>().is_err(), "{bad}");
        }
    }

    #[test]
    fn plan_checks_ports_against_the_measured_ingress() {
        let spec =
            EnclaveSpec::from_yaml("ingress:\n  - {port: 80, host_port: 8080}\n  - {port: 443}\n")
                .unwrap();
        let plan = NetworkRecord::plan(Some(&spec), &[], &[]).unwrap();
        assert_eq!(plan.publish, ["127.0.0.1:8080:80".parse().unwrap()]);
        let p = ["9443:443".parse().unwrap(), "9080:80".parse().unwrap()];
        let plan = NetworkRecord::plan(Some(&spec), &p, &[]).unwrap();
        let shown: Vec<String> = plan.publish.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["127.0.0.1:9443->443/tcp", "127.0.0.1:9080->80/tcp"]);
        let err = NetworkRecord::plan(Some(&spec), &["1:22".parse().unwrap()], &[]).unwrap_err();
        assert!(err.to_string().contains("[80, 443]"), "{err}");
        let err = NetworkRecord::plan(None, &["1:22".parse().unwrap()], &[]).unwrap_err();
        assert!(err.to_string().contains("port 22"), "{err}");
        let twice = ["8080:443".parse().unwrap()];
        let err = NetworkRecord::plan(Some(&spec), &twice, &[]).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn plan_checks_added_hosts_against_the_measured_egress_names() {
        let spec = EnclaveSpec::from_yaml(
            "egress:\n  - {host: db.internal, port: 5432}\n  - {host: \"*.svc.local\", port: 443}\n  \
             - {cidr: 10.0.0.0/8, port: 80}\n",
        )
        .unwrap();
        let add = |s: &str| [s.parse::<AddHost>().unwrap()];
        let plan = NetworkRecord::plan(Some(&spec), &[], &add("DB.internal:10.0.0.5")).unwrap();
        assert_eq!(plan.add_hosts, add("db.internal:10.0.0.5"));
        assert!(NetworkRecord::plan(Some(&spec), &[], &add("a.svc.local:10.1.1.1")).is_ok());
        let err = NetworkRecord::plan(Some(&spec), &[], &add("other:10.0.0.6")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--add-host other:10.0.0.6")
                && msg.contains("[db.internal, *.svc.local]")
                && msg.contains("never be used"),
            "{msg}"
        );
        // An image without egress: no name is ever resolved.
        let err = NetworkRecord::plan(None, &[], &add("db.internal:10.0.0.5")).unwrap_err();
        assert!(err.to_string().contains("[]"), "{err}");
    }

    #[test]
    fn the_proxies_go_where_the_backend_routes_them() {
        use crate::backend::fake::FakeBackend;
        use crate::backend::Backend;
        let spec = EnclaveSpec::from_yaml(
            "ingress:\n  - {port: 80, host_port: 8080}\negress:\n  - {host: db.internal, port: 5432}\n",
        )
        .unwrap();
        let net = NetworkRecord::plan(Some(&spec), &[], &[]).unwrap();
        let sk = Path::new("/sk");

        let emulated = FakeBackend::default().vsock_route(16, sk);
        let config = host_proxy_config(&net, &emulated).unwrap();
        assert_eq!(config.enclave.to_string(), "hybrid:/sk/vsock.sock:5001");
        let egress = config.egress.unwrap().listen;
        let path = format!("/sk/vsock.sock_{}", ports::egress(16));
        assert_eq!(egress, EgressListen::Unix(path.into()));

        let nitro = FakeBackend::over_vsock().vsock_route(16, sk);
        let config = host_proxy_config(&net, &nitro).unwrap();
        assert_eq!(config.enclave.to_string(), "vsock:16:5001");
        let egress = config.egress.unwrap().listen;
        let expected = EgressListen::Vsock {
            port: ports::egress(16),
            expect_cid: Some(16),
        };
        assert_eq!(egress, expected);

        assert!(host_proxy_config(&NetworkRecord::default(), &nitro).is_none());
    }
}
