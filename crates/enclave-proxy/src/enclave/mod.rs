//! The enclave side: what runs inside the enclave (started by enclave-init after it switched into
//! the app rootfs) so that the host can reach the spec's `ingress` ports and the enclave's
//! programs can reach its `egress` endpoints, and nothing else.
//!
//! - Ingress: a vsock listener (port 5001) taking [`Request::Ingress`](crate::header::Request)
//!   for listed ports and relaying to `127.0.0.1:port`, at most
//!   [`EnclaveLimits::ingress_max_connections`] at once.
//! - Named egress: every exact `host:` rule's name gets a loopback alias `127.0.0.N` (N from 2,
//!   in spec order), an /etc/hosts line and a TCP listener per allowed port on the alias; each
//!   connection goes to the host egress proxy (vsock `parent:2^30+CID`) as an `EgressName`
//!   request. The aliases need no address configuration: `lo`'s 127.0.0.1/8 already makes the
//!   whole /8 local.
//! - DNS on 127.0.0.1:53 (/etc/resolv.conf points there): allowed names resolve to their alias;
//!   names under a wildcard rule get the next alias and forwarders when first asked for, and
//!   give them back when unused for a while (`aliases.rs`; REFUSED while all are held); other
//!   names are NXDOMAIN.
//! - Transparent mode: a netfilter redirect of every outgoing IPv4 TCP connection not to
//!   127.0.0.0/24 to a forwarder on 127.0.0.1:15001, which reads the original destination,
//!   checks it against the `cidr:` rules (special ranges included, see [`crate::allow`]) and
//!   sends it to the host as `EgressAddr`. The redirect is an nf_tables chain (`nft.rs`) or,
//!   on kernels without nf_tables, an iptables nat rule (`xtables.rs`), as the config says.
//! - Egress connections of every forwarder together: at most
//!   [`EnclaveLimits::egress_max_connections`] at once; one more is reset.
//!
//! Everything runs on one current-thread tokio runtime in one background thread.

mod aliases;
mod conn;
pub mod dns;
mod dns_server;
mod egress;
mod ingress;
mod limits;
mod nft;
mod route;
mod rules;
mod xtables;
mod xtables_layout;
mod xtables_unsafe;

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use enclave_spec::{EgressMode, EgressSpec, IngressSpec};
use tokio::net::{UdpSocket, UnixListener};
use tokio::sync::oneshot;
use tracing::{info, warn};

pub use limits::EnclaveLimits;
pub use nft::{NftError, Step as NftStep};
pub use route::RouteError;
pub use xtables::XtError;

pub use enclave_proto::init::Netfilter;

use crate::stream::{BufferPool, ProxyListener};
use aliases::AliasTable;

use crate::allow::{EgressPolicy, IngressPolicy};

/// The transparent forwarder's usual port.
pub const DEFAULT_TRANSPARENT_PORT: u16 = 15001;

/// Where the ingress forwarder listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    /// AF_VSOCK, any CID (the enclave's own), this port.
    Vsock {
        /// The port ([`enclave_proto::ports::INGRESS`] in an enclave).
        port: u32,
    },
    /// A Unix socket (tests).
    Unix(PathBuf),
}

/// Where the host's egress proxy is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAddr {
    /// AF_VSOCK `cid:port`.
    Vsock {
        /// The parent's CID (3 on Nitro unless the kernel command line says otherwise).
        cid: u32,
        /// The port ([`enclave_proto::ports::egress`] of the enclave's CID, in an enclave).
        port: u32,
    },
    /// A Unix socket (tests).
    Unix(PathBuf),
}

/// Everything [`EnclaveNetwork::start`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnclaveNetworkConfig {
    /// The measured spec's `ingress` list.
    pub ingress: Vec<IngressSpec>,
    /// The measured spec's `egress` section.
    pub egress: EgressSpec,
    /// Where the ingress forwarder listens.
    pub ingress_listen: ListenAddr,
    /// Where the host's egress proxy is.
    pub host: HostAddr,
    /// Where `hosts` and `resolv.conf` are written (`/etc` in an enclave).
    pub etc_dir: PathBuf,
    /// Where the DNS server listens (127.0.0.1:53 in an enclave).
    pub dns_addr: SocketAddr,
    /// The transparent forwarder's port on 127.0.0.1.
    pub transparent_port: u16,
    /// How the transparent redirect is installed (the measured init config's choice, made for
    /// the kernel); needed only in transparent mode.
    pub netfilter: Option<Netfilter>,
}

/// Why the enclave network could not start.
#[derive(Debug, thiserror::Error)]
pub enum EnclaveNetworkError {
    /// The runtime or its thread could not be created.
    #[error("cannot start the network runtime: {0}")]
    Runtime(#[source] io::Error),
    /// A listener could not be bound.
    #[error("cannot listen on {what}: {source}")]
    Listen {
        /// The address and its purpose.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// More exact names than loopback aliases.
    #[error("{0} egress names need loopback aliases, but 127.0.0.2-254 has only 253")]
    TooManyNames(usize),
    /// /etc/hosts or /etc/resolv.conf could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The transparent redirect could not be installed (nf_tables).
    #[error("cannot install the transparent egress redirect: {0}")]
    Netfilter(#[from] NftError),
    /// The transparent redirect could not be installed (iptables).
    #[error("cannot install the transparent egress redirect: {0}")]
    Xtables(#[from] XtError),
    /// Transparent mode without a netfilter backend: the image was built without one.
    #[error("transparent egress needs a netfilter backend, and the configuration names none")]
    NoNetfilter,
    /// The default route through `lo` (which transparent mode needs) could not be added.
    #[error("cannot route outgoing connections to the transparent forwarder: {0}")]
    Route(#[from] route::RouteError),
}

fn listen_err(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> EnclaveNetworkError {
    let what = what.to_string();
    move |source| EnclaveNetworkError::Listen { what, source }
}

/// The running forwarders. Dropping it (or [`EnclaveNetwork::stop`]) stops them; the netfilter
/// table stays (without its forwarder, redirected connections are refused, which is what should
/// happen to them).
#[derive(Debug)]
pub struct EnclaveNetwork {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl EnclaveNetwork {
    /// Binds every listener, installs the redirect (transparent mode), writes /etc/hosts and
    /// /etc/resolv.conf (when there are egress rules), then serves in a background thread, with
    /// the default [`EnclaveLimits`]. Everything that can fail fails here, before anything is
    /// served.
    pub fn start(cfg: EnclaveNetworkConfig) -> Result<EnclaveNetwork, EnclaveNetworkError> {
        Self::start_with_limits(cfg, EnclaveLimits::default())
    }

    /// [`EnclaveNetwork::start`] with other bounds.
    pub fn start_with_limits(
        cfg: EnclaveNetworkConfig,
        limits: EnclaveLimits,
    ) -> Result<EnclaveNetwork, EnclaveNetworkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(EnclaveNetworkError::Runtime)?;
        let guard = rt.enter();
        let pool = BufferPool::default();

        let ingress = bind_ingress(&cfg)?;
        let rules = EgressPolicy::new(&cfg.egress);
        let mut aliases = AliasTable::default();
        let mut named = Vec::new();
        let names = rules.exact_names();
        for name in &names {
            let alias = aliases
                .allocate_permanent(name)
                .ok_or(EnclaveNetworkError::TooManyNames(names.len()))?;
            let ports = rules.ports_for(name);
            let listeners = egress::bind_named(alias, &ports)
                .map_err(|(addr, e)| listen_err(format_args!("{addr} (egress to {name})"))(e))?;
            named.push((name.to_string(), alias, ports, listeners));
        }
        let has_egress = !cfg.egress.allow.is_empty();
        let dns = has_egress
            .then(|| bind_udp(cfg.dns_addr))
            .transpose()
            .map_err(listen_err(format_args!("{}/udp (DNS)", cfg.dns_addr)))?;
        let transparent_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, cfg.transparent_port));
        let transparent = (cfg.egress.mode == EgressMode::Transparent)
            .then(|| egress::bind_tcp(transparent_addr))
            .transpose()
            .map_err(listen_err(format_args!(
                "{transparent_addr} (transparent egress)"
            )))?;
        // After the forwarder is bound, so no redirected connection meets a closed port.
        if transparent.is_some() {
            let backend = cfg.netfilter.ok_or(EnclaveNetworkError::NoNetfilter)?;
            match backend {
                Netfilter::Nftables => nft::install_redirect(cfg.transparent_port)?,
                Netfilter::Xtables => xtables::install_redirect(cfg.transparent_port)?,
            }
            route::default_route_via_lo()?;
            info!(
                "egress: transparent mode, outgoing TCP redirected to {transparent_addr} ({})",
                backend.name()
            );
        }
        if has_egress {
            let entries: Vec<(Ipv4Addr, &str)> =
                named.iter().map(|(n, a, _, _)| (*a, n.as_str())).collect();
            write_etc(&cfg.etc_dir, &entries, cfg.dns_addr)?;
        }

        let ctx = Arc::new(egress::EgressCtx::new(
            cfg.host.clone(),
            pool.clone(),
            rules,
            limits.egress_max_connections,
        ));
        for (name, alias, ports, listeners) in named {
            egress::log_alias(&name, alias, &ports);
            // Exact names keep their forwarders for the enclave's lifetime.
            let _ = egress::spawn_named(&ctx, &name, listeners, None);
        }
        if let Some(socket) = dns {
            let dns_ctx = Arc::new(dns_server::DnsCtx::new(
                ctx.clone(),
                aliases,
                limits.alias_idle,
            ));
            tokio::spawn(dns_server::serve(socket, dns_ctx.clone()));
            tokio::spawn(dns_server::sweep(dns_ctx));
        }
        if let Some(listener) = transparent {
            tokio::spawn(egress::serve_transparent(ctx, listener, transparent_addr));
        }
        if let Some(listener) = ingress {
            let policy = Arc::new(IngressPolicy::new(&cfg.ingress));
            tokio::spawn(ingress::serve(
                listener,
                policy,
                pool,
                limits.ingress_max_connections,
            ));
        }
        drop(guard);

        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("enclave-network".into())
            .spawn(move || {
                // Returns when `stop` is sent or dropped; dropping the runtime then closes every
                // listener and connection.
                rt.block_on(async {
                    let _ = stopped.await;
                });
            })
            .map_err(EnclaveNetworkError::Runtime)?;
        Ok(EnclaveNetwork {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops every forwarder and waits for the runtime thread to end.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                warn!("the enclave network thread panicked");
            }
        }
    }
}

impl Drop for EnclaveNetwork {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The ingress listener; none when the spec lists no ingress port (nothing to serve, and the
/// host publishes nothing).
fn bind_ingress(cfg: &EnclaveNetworkConfig) -> Result<Option<ProxyListener>, EnclaveNetworkError> {
    if cfg.ingress.is_empty() {
        return Ok(None);
    }
    let listener = match &cfg.ingress_listen {
        ListenAddr::Vsock { port } => ProxyListener::vsock(nix::libc::VMADDR_CID_ANY, *port)
            .map_err(listen_err(format_args!("vsock port {port} (ingress)")))?,
        ListenAddr::Unix(path) => ProxyListener::Unix(
            UnixListener::bind(path)
                .map_err(listen_err(format_args!("{} (ingress)", path.display())))?,
        ),
    };
    Ok(Some(listener))
}

/// Writes /etc/hosts (the image's, plus our aliases) and /etc/resolv.conf (our DNS server).
fn write_etc(
    dir: &Path,
    entries: &[(Ipv4Addr, &str)],
    dns: SocketAddr,
) -> Result<(), EnclaveNetworkError> {
    let hosts = dir.join("hosts");
    let existing = match std::fs::read_to_string(&hosts) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(EnclaveNetworkError::Write {
                path: hosts,
                source,
            })
        }
    };
    write_file(dir, "hosts", &rules::render_hosts(&existing, entries))?;
    write_file(dir, "resolv.conf", &rules::render_resolv_conf(dns.ip()))
}

fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let s = std::net::UdpSocket::bind(addr)?;
    s.set_nonblocking(true)?;
    UdpSocket::from_std(s)
}

/// Replaces `dir/name` atomically (a reader never sees half a file), creating `dir` if needed.
/// A symlink there (resolv.conf often is one, to a resolver that is not running) is replaced.
fn write_file(dir: &Path, name: &str, contents: &str) -> Result<(), EnclaveNetworkError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.enclave-proxy"));
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, contents))
        .and_then(|()| std::fs::rename(&tmp, &path));
    result.map_err(|source| EnclaveNetworkError::Write { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_can_live_in_a_static() {
        // enclave-init keeps it in a `OnceLock` for PID 1's lifetime.
        fn send_sync<T: Send + Sync>() {}
        send_sync::<EnclaveNetwork>();
    }

    #[test]
    fn files_replace_symlinks_and_dirs_are_created() {
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        write_file(&etc, "hosts", "a\n").unwrap();
        assert_eq!(std::fs::read_to_string(etc.join("hosts")).unwrap(), "a\n");
        std::os::unix::fs::symlink("../run/missing/resolv.conf", etc.join("resolv.conf")).unwrap();
        write_file(&etc, "resolv.conf", "nameserver 127.0.0.1\n").unwrap();
        let meta = std::fs::symlink_metadata(etc.join("resolv.conf")).unwrap();
        assert!(meta.file_type().is_file());
        assert_eq!(
            std::fs::read_dir(&etc).unwrap().count(),
            2,
            "no temporary file left"
        );
    }
}
