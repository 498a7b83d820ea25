//! The egress proxy: the enclave's forwarders connect here and name a destination; the host
//! checks it against the measured allow-list, resolves, connects, answers and relays.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpStream;
use tracing::{debug, info_span, Instrument};

use super::accept::{accept_loop, limited_warn, LogLimiter};
use super::{read_request, EgressStats, Limits, ReadRequestError};
use crate::allow::{EgressPolicy, Refusal, Resolver};
use crate::header::{Request, Status};
use crate::stream::{relay, BufferPool, ProxyListener, ProxyStream};

/// What an egress proxy allows, and how it resolves names.
#[derive(Debug, Clone)]
pub struct EgressRules {
    /// The measured allow-list.
    pub policy: EgressPolicy,
    /// Name resolution, with `--add-host` style overrides.
    pub resolver: Resolver,
    /// On AF_VSOCK, the only peer CID accepted (the enclave's); `None` accepts any.
    pub expect_cid: Option<u32>,
}

struct Shared {
    rules: EgressRules,
    limits: Limits,
    pool: BufferPool,
    /// Policy refusals (the enclave asked for something the allow-list does not have).
    refused: LogLimiter,
    /// Broken or missing headers.
    bad_header: LogLimiter,
    /// Allowed destinations that did not answer.
    unreachable: LogLimiter,
    stats: EgressStats,
}

/// Why a request was not connected: the answer to send and what to log.
enum Failure {
    Refused(Refusal),
    /// A valid header for the other direction: nothing on the host serves enclave ports.
    Misdirected,
    Unreachable(String),
}

/// Serves the egress proxy on `listener` until dropped. Every request is checked against
/// `rules` (name, then each resolved address); a refused one gets its status byte, is closed, and
/// is logged with the reason. Dropping the future closes every connection it holds.
pub async fn serve_egress(
    listener: ProxyListener,
    rules: EgressRules,
    limits: Limits,
    pool: BufferPool,
    stats: EgressStats,
) {
    let span = info_span!("egress", listen = %super::listen::describe(&listener));
    let expect_cid = rules.expect_cid;
    let shared = Arc::new(Shared {
        rules,
        limits,
        pool,
        refused: LogLimiter::new(),
        bad_header: LogLimiter::new(),
        unreachable: LogLimiter::new(),
        stats,
    });
    accept_loop(listener, limits, expect_cid, |peer| {
        connection(peer, shared.clone())
    })
    .instrument(span)
    .await;
}

async fn connection(peer: ProxyStream, shared: Arc<Shared>) {
    let limits = &shared.limits;
    let (request, early) =
        match tokio::time::timeout(limits.header_timeout, read_request(&peer)).await {
            Ok(Ok(read)) => read,
            Ok(Err(ReadRequestError::Header(e))) => {
                limited_warn!(shared.bad_header, error = %e, "malformed egress request refused");
                // Best effort: the peer may be gone.
                let _ = peer.write_all(&[Status::for_error(&e) as u8]).await;
                return;
            }
            Ok(Err(e)) => {
                limited_warn!(shared.bad_header, error = %e, "egress connection closed");
                return;
            }
            Err(_) => {
                limited_warn!(
                    shared.bad_header,
                    timeout_s = limits.header_timeout.as_secs_f32(),
                    "no egress request header in time; connection closed"
                );
                return;
            }
        };
    // The allow-list rule the request falls under, for its counters.
    let policy = &shared.rules.policy;
    let stats = shared.stats.of(match &request {
        Request::EgressName { name, port } => policy.name_rule(name, *port),
        Request::EgressAddr { addr, port } => policy.addr_rule(*addr, *port),
        _ => None,
    });
    let connected = tokio::time::timeout(limits.connect_timeout, connect(&request, &shared)).await;
    let upstream = match connected {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(failure)) => {
            stats.refused();
            let status = match &failure {
                Failure::Refused(refusal) => {
                    limited_warn!(shared.refused, request = %request, reason = %refusal, "egress refused");
                    refusal.status()
                }
                Failure::Misdirected => {
                    limited_warn!(
                        shared.refused,
                        request = %request,
                        reason = "an ingress request sent to the egress proxy",
                        "egress refused"
                    );
                    Status::NotAllowed
                }
                Failure::Unreachable(reason) => {
                    limited_warn!(shared.unreachable, request = %request, reason = %reason, "egress connect failed");
                    Status::ConnectFailed
                }
            };
            let _ = peer.write_all(&[status as u8]).await;
            return;
        }
        Err(_) => {
            stats.refused();
            limited_warn!(
                shared.unreachable,
                request = %request,
                timeout_s = limits.connect_timeout.as_secs_f32(),
                "egress connect timed out"
            );
            let _ = peer.write_all(&[Status::ConnectFailed as u8]).await;
            return;
        }
    };
    debug!(request = %request, "egress connected");
    let upstream = ProxyStream::Tcp(upstream);
    let started = async {
        peer.write_all(&[Status::Connected as u8]).await?;
        // Bytes the enclave sent right behind its header belong to the destination.
        upstream.write_all(&early).await
    };
    if let Err(e) = started.await {
        debug!(request = %request, error = %e, "egress connection lost before the relay");
        return;
    }
    stats.opened();
    match relay(&peer, &upstream, &shared.pool).await {
        Ok(moved) => {
            let sent = moved.a_to_b + early.len() as u64;
            stats.moved(moved.b_to_a, sent);
            debug!(
                request = %request,
                sent,
                received = moved.b_to_a,
                "egress connection closed"
            )
        }
        Err(e) => debug!(request = %request, error = %e, "egress connection ended with an error"),
    }
}

/// Checks, resolves and connects; the caller bounds the wait.
async fn connect(request: &Request, shared: &Shared) -> Result<TcpStream, Failure> {
    let policy = &shared.rules.policy;
    let (addrs, port) = match request {
        Request::EgressName { name, port } => {
            policy.check_name(name, *port).map_err(Failure::Refused)?;
            let resolved = shared
                .rules
                .resolver
                .resolve(name)
                .await
                .map_err(Failure::Refused)?;
            let allowed = policy
                .filter_resolved(name, *port, &resolved)
                .map_err(Failure::Refused)?;
            (allowed, *port)
        }
        Request::EgressAddr { addr, port } => {
            policy.check_addr(*addr, *port).map_err(Failure::Refused)?;
            (vec![addr.to_canonical()], *port)
        }
        Request::Ingress { .. } => return Err(Failure::Misdirected),
    };
    connect_first(&addrs, port)
        .await
        .map_err(Failure::Unreachable)
}

/// Connects to the first of `addrs` that answers, in order.
async fn connect_first(addrs: &[IpAddr], port: u16) -> Result<TcpStream, String> {
    let mut last = String::from("no address to try");
    for &ip in addrs {
        let addr = SocketAddr::new(ip, port);
        match TcpStream::connect(addr).await {
            Ok(s) => {
                // The relay forwards what it reads at once; Nagle would only add latency.
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(last)
}
