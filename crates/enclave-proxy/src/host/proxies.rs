//! [`HostProxies`]: every proxy of one enclave, for a synchronous caller (the supervisor).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use enclave_spec::EgressSpec;
use tokio::sync::oneshot;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::{
    listen_tcp, listen_unix, listen_vsock, serve_egress, serve_ingress, EgressRules, EgressStats,
    EnclaveConnector, IngressTarget, Limits, ProxyStats, RuleStats,
};
use crate::allow::{EgressPolicy, Resolver};
use crate::error::ProxyError;
use crate::stream::{BufferPool, ProxyListener};

/// Threads of the runtime's blocking pool, which only name resolution uses (getaddrinfo blocks).
/// More lookups than this wait for a thread, inside their connect timeout.
const RESOLVER_THREADS: usize = 8;
/// Idle relay buffers kept for reuse, shared by all proxies of one enclave.
const POOLED_BUFFERS: usize = 64;
/// How long `stop` waits for name lookups still running in the blocking pool.
const STOP_GRACE: Duration = Duration::from_secs(1);

/// One published port: host `host_ip:host_port` → enclave port `enclave_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Publish {
    /// The host address to listen on.
    pub host_ip: IpAddr,
    /// The host port (0: any free port, see [`HostProxies::ingress_addrs`]).
    pub host_port: u16,
    /// The enclave port.
    pub enclave_port: u16,
}

/// Where the egress proxy listens for the enclave's forwarders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EgressListen {
    /// A Unix socket: on the emulated backend, vhost-device-vsock's `<sk>/vsock.sock_9002`.
    Unix(PathBuf),
    /// AF_VSOCK (Nitro).
    Vsock {
        /// The port (`enclave_proto::ports::egress(cid)`).
        port: u32,
        /// The enclave's CID: connections from any other are refused. `None` accepts any.
        expect_cid: Option<u32>,
    },
}

/// The egress proxy of an enclave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressConfig {
    /// Where to listen.
    pub listen: EgressListen,
    /// The measured allow-list (the spec's `egress:`).
    pub policy: EgressSpec,
    /// Name overrides, checked before the system resolver (`--add-host NAME:IP`).
    pub add_hosts: Vec<(String, IpAddr)>,
}

/// Every proxy of one enclave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostProxyConfig {
    /// The published ports.
    pub publish: Vec<Publish>,
    /// The enclave's ingress forwarder, used by every published port.
    pub enclave: EnclaveConnector,
    /// The egress proxy, if the enclave has one.
    pub egress: Option<EgressConfig>,
}

/// Running proxies. Stopped by [`HostProxies::stop`] or when dropped.
#[derive(Debug)]
pub struct HostProxies {
    ingress_addrs: Vec<SocketAddr>,
    unix_socket: Option<PathBuf>,
    stats: ProxyStats,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl HostProxies {
    /// Binds every listener, then serves them all from one background thread, with the default
    /// [`Limits`]. A listener that cannot be bound (address in use, permission) is an error here,
    /// and nothing is left running.
    pub fn start(config: HostProxyConfig) -> Result<HostProxies, ProxyError> {
        Self::start_with_limits(config, Limits::default())
    }

    /// [`HostProxies::start`] with other bounds.
    pub fn start_with_limits(
        config: HostProxyConfig,
        limits: Limits,
    ) -> Result<HostProxies, ProxyError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(RESOLVER_THREADS)
            .thread_name("enclave-proxy")
            .build()
            .map_err(ProxyError::Runtime)?;
        // Listeners register with the runtime's reactor, so they are made inside its context.
        let entered = runtime.enter();
        let mut ingress = Vec::with_capacity(config.publish.len());
        let mut ingress_addrs = Vec::with_capacity(config.publish.len());
        let mut stats = ProxyStats::default();
        for p in &config.publish {
            let asked = SocketAddr::new(p.host_ip, p.host_port);
            let listener = listen_tcp(asked)?;
            let bound = match &listener {
                ProxyListener::Tcp(l) => l.local_addr().ok(),
                _ => None,
            };
            ingress_addrs.push(bound.unwrap_or(asked));
            let counters = Arc::new(RuleStats::default());
            let rule = format!("ingress {}->{}", bound.unwrap_or(asked), p.enclave_port);
            stats.rules.push((rule, counters.clone()));
            ingress.push((listener, p.enclave_port, counters));
        }
        let mut unix_socket = None;
        let egress = match config.egress {
            None => None,
            Some(e) => {
                let (listener, expect_cid) = match &e.listen {
                    EgressListen::Unix(path) => {
                        let l = listen_unix(path)?;
                        unix_socket = Some(path.clone());
                        (l, None)
                    }
                    EgressListen::Vsock { port, expect_cid } => (listen_vsock(*port)?, *expect_cid),
                };
                let rules = EgressRules {
                    policy: EgressPolicy::new(&e.policy),
                    resolver: Resolver::new(e.add_hosts),
                    expect_cid,
                };
                let counters = EgressStats::new(rules.policy.rule_labels());
                for (label, rule) in &counters.rules {
                    stats.rules.push((format!("egress {label}"), rule.clone()));
                }
                stats
                    .rules
                    .push(("egress unlisted".to_owned(), counters.unlisted.clone()));
                Some((listener, rules, counters))
            }
        };
        drop(entered);
        let has_egress = egress.is_some();

        let connector = config.enclave;
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let serve = move || {
            runtime.block_on(async move {
                let pool = BufferPool::new(POOLED_BUFFERS);
                let mut servers = JoinSet::new();
                for (listener, enclave_port, counters) in ingress {
                    let target = IngressTarget {
                        connector: connector.clone(),
                        enclave_port,
                    };
                    let serve = serve_ingress(listener, target, limits, pool.clone(), counters);
                    servers.spawn(serve);
                }
                if let Some((listener, rules, counters)) = egress {
                    servers.spawn(serve_egress(
                        listener,
                        rules,
                        limits,
                        pool.clone(),
                        counters,
                    ));
                }
                // Either a stop request or the handle being dropped ends the proxies.
                let _ = stop_rx.await;
                // Aborts the servers, and with them every connection task.
                servers.shutdown().await;
            });
            runtime.shutdown_timeout(STOP_GRACE);
        };
        let thread = std::thread::Builder::new()
            .name("enclave-proxy".into())
            .spawn(serve)
            .map_err(ProxyError::Runtime)?;
        info!(
            published = ingress_addrs.len(),
            egress = has_egress,
            "proxies started"
        );
        Ok(HostProxies {
            ingress_addrs,
            unix_socket,
            stats,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The listening address of each published port, in the order of
    /// [`HostProxyConfig::publish`] (with the real port where 0 was asked for).
    pub fn ingress_addrs(&self) -> &[SocketAddr] {
        &self.ingress_addrs
    }

    /// The counters of each rule (each published port, then the egress proxy), live.
    pub fn stats(&self) -> ProxyStats {
        self.stats.clone()
    }

    /// Stops every proxy and closes every connection; returns when they are closed.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                warn!("the proxy thread panicked");
            }
        }
        if let Some(path) = self.unix_socket.take() {
            // Ours, bound in `start`: a stale file would only confuse the next start.
            let _ = std::fs::remove_file(path);
        }
    }
}

impl Drop for HostProxies {
    fn drop(&mut self) {
        self.shutdown();
    }
}
