//! The egress forwarders: one TCP listener per allowed name and port on the name's loopback
//! alias (named mode), and the transparent forwarder that netfilter redirects every other
//! outgoing TCP connection to. Each accepted connection becomes one connection to the host's
//! egress proxy, which checks the request against the same measured allow-list, connects, and
//! answers before any payload flows.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::socket::{getsockopt, sockopt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use super::aliases::AliasUse;
use super::conn::{ask_host, suppressed_note, LogLimiter};
use super::HostAddr;
use crate::allow::EgressPolicy;
use crate::header::Request;
use crate::stream::{relay, BufferPool, ProxyStream};

/// How long to wait before accepting again after `accept` failed (out of descriptors, say), so a
/// persistent failure does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// What the egress forwarders share.
#[derive(Debug)]
pub(crate) struct EgressCtx {
    pub(crate) host: HostAddr,
    pub(crate) pool: BufferPool,
    pub(crate) rules: EgressPolicy,
    /// One per connection forwarded, of every forwarder.
    permits: Arc<Semaphore>,
    max: usize,
    /// Limits the warnings.
    warnings: Mutex<LogLimiter>,
}

impl EgressCtx {
    /// With at most `max` connections forwarded at once.
    pub(crate) fn new(host: HostAddr, pool: BufferPool, rules: EgressPolicy, max: usize) -> Self {
        EgressCtx {
            host,
            pool,
            rules,
            permits: Arc::new(Semaphore::new(max)),
            max,
            warnings: Mutex::new(LogLimiter::new(20, Duration::from_secs(60))),
        }
    }

    /// A slot for a connection to `what`; `None` (logged) when all are taken, and the caller
    /// resets the connection: refused at once, never queued.
    fn slot(&self, what: &dyn std::fmt::Display) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            let max = self.max;
            self.warn(format_args!(
                "{max} connections open, the limit; refused one to {what}"
            ));
        }
        permit
    }

    /// Logs a refused connection, rate-limited.
    fn refused(&self, what: &str, why: &dyn std::fmt::Display) {
        self.warn(format_args!("refused {what}: {why}"));
    }

    /// Logs a warning, rate-limited: a program retrying in a loop, or descriptors running out,
    /// must not flood the console.
    fn warn(&self, line: std::fmt::Arguments<'_>) {
        let allowed = self.warnings.lock().map(|mut l| l.check(Instant::now()));
        if let Ok(Some(dropped)) = allowed {
            warn!("egress: {line}{}", suppressed_note(dropped));
        }
    }
}

/// Binds a listener on `alias` for each port. All or nothing: on an error the ones already
/// bound are closed and the failing address comes back. Must run inside the runtime.
pub(crate) fn bind_named(
    alias: Ipv4Addr,
    ports: &BTreeSet<u16>,
) -> Result<Vec<(u16, TcpListener)>, (SocketAddr, io::Error)> {
    ports
        .iter()
        .map(|&port| {
            let addr = SocketAddr::V4(SocketAddrV4::new(alias, port));
            bind_tcp(addr).map(|l| (port, l)).map_err(|e| (addr, e))
        })
        .collect()
}

/// A non-blocking TCP listener registered with the current runtime.
pub(crate) fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let l = std::net::TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    TcpListener::from_std(l)
}

/// Serves `name` on the listeners from [`bind_named`]; the tasks' handles, for stopping them.
/// With `usage` (a wildcard name's alias), every connection is counted there while it is open.
pub(crate) fn spawn_named(
    ctx: &Arc<EgressCtx>,
    name: &str,
    listeners: Vec<(u16, TcpListener)>,
    usage: Option<&Arc<AliasUse>>,
) -> Vec<JoinHandle<()>> {
    listeners
        .into_iter()
        .map(|(port, listener)| {
            let usage = usage.cloned();
            tokio::spawn(serve_named(
                ctx.clone(),
                name.to_owned(),
                port,
                listener,
                usage,
            ))
        })
        .collect()
}

async fn serve_named(
    ctx: Arc<EgressCtx>,
    name: String,
    port: u16,
    listener: TcpListener,
    usage: Option<Arc<AliasUse>>,
) {
    loop {
        match listener.accept().await {
            Ok((client, _)) => {
                // Counted before this task yields again: on the current-thread runtime the
                // alias sweep cannot see the connection accepted but not yet counted.
                let open = usage.as_ref().map(AliasUse::open);
                let req = Request::EgressName {
                    name: name.clone(),
                    port,
                };
                start_forward(&ctx, client, req, open);
            }
            Err(e) => {
                ctx.warn(format_args!("accepting for {name}:{port} failed: {e}"));
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Forwards `client` as `req` on a task of its own if a slot is free (holding `guard` as long
/// as the connection is open); resets it otherwise.
fn start_forward(
    ctx: &Arc<EgressCtx>,
    client: TcpStream,
    req: Request,
    guard: impl Send + 'static,
) {
    let Some(slot) = ctx.slot(&req) else {
        ProxyStream::Tcp(client).reset();
        return;
    };
    let ctx = ctx.clone();
    tokio::spawn(async move {
        forward(ctx, client, req).await;
        drop((guard, slot));
    });
}

/// Asks the host for `req` and relays `client` to it; on refusal resets the client, so the
/// program sees "connection reset" rather than a server that closed politely.
async fn forward(ctx: Arc<EgressCtx>, client: TcpStream, req: Request) {
    let _ = client.set_nodelay(true);
    let client = ProxyStream::Tcp(client);
    match ask_host(&ctx.host, &req).await {
        Ok(upstream) => match relay(&client, &upstream, &ctx.pool).await {
            Ok(moved) => debug!(
                "egress: {req} done ({} bytes out, {} in)",
                moved.a_to_b, moved.b_to_a
            ),
            Err(e) => debug!("egress: {req} ended with an error: {e}"),
        },
        Err(e) => {
            ctx.refused(&req.to_string(), &e);
            client.reset();
        }
    }
}

/// Serves the transparent forwarder on `listener` (whose address is `own`).
pub(crate) async fn serve_transparent(ctx: Arc<EgressCtx>, listener: TcpListener, own: SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => match original_destination(&client) {
                Ok(dst) if dst == own => {
                    // A program connected to the forwarder itself: there is nowhere to go.
                    ctx.refused(
                        &format!("connection from {peer} to {own}"),
                        &"that is the forwarder",
                    );
                    ProxyStream::Tcp(client).reset();
                }
                Ok(dst) => match ctx.rules.check_addr(dst.ip(), dst.port()) {
                    Ok(()) => {
                        let req = Request::EgressAddr {
                            addr: dst.ip(),
                            port: dst.port(),
                        };
                        start_forward(&ctx, client, req, ());
                    }
                    Err(refusal) => {
                        ctx.refused(&format!("egress to {dst}"), &refusal);
                        ProxyStream::Tcp(client).reset();
                    }
                },
                Err(e) => {
                    ctx.refused(
                        &format!("connection from {peer}"),
                        &format_args!("no original destination: {e}"),
                    );
                    ProxyStream::Tcp(client).reset();
                }
            },
            Err(e) => {
                ctx.warn(format_args!(
                    "accepting on the transparent forwarder {own} failed: {e}"
                ));
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// Where the program meant to connect before netfilter redirected it (SO_ORIGINAL_DST).
fn original_destination(s: &TcpStream) -> io::Result<SocketAddr> {
    let sin = getsockopt(s, sockopt::OriginalDst)?;
    let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
    Ok(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
}

/// Logs the aliases given at start, one line each, for the console.
pub(crate) fn log_alias(name: &str, alias: Ipv4Addr, ports: &BTreeSet<u16>) {
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    info!("egress: {name} -> {alias} (ports {})", ports.join(", "));
}
