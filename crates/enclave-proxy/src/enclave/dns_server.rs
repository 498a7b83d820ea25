//! The enclave's resolver (UDP, 127.0.0.1:53): allowed names resolve to their loopback alias,
//! everything else is NXDOMAIN. Names allowed by a wildcard rule get an alias, and forwarders
//! on it, the first time they are asked for; an alias with no connection and no query for the
//! idle time is taken back and its forwarders stop (`aliases.rs`). When every alias is held the
//! answer is REFUSED.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use enclave_spec::valid_host_name;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use super::aliases::{AliasTable, AliasUse, ALIASES};
use super::conn::{suppressed_note, LogLimiter};
use super::dns::{error_response, parse_query, Answer, Query};
use super::egress::{bind_named, log_alias, spawn_named, EgressCtx};

/// The largest query read. Queries are at most a few hundred bytes; a longer datagram is cut
/// here and then fails to parse.
const MAX_QUERY: usize = 1500;

/// What the DNS server needs.
#[derive(Debug)]
pub(crate) struct DnsCtx {
    egress: Arc<EgressCtx>,
    aliases: Mutex<AliasTable>,
    /// How long a wildcard name keeps its alias unused.
    idle: Duration,
    /// Limits the lines a program asking in a loop would cause.
    limit: Mutex<LogLimiter>,
}

impl DnsCtx {
    pub(crate) fn new(egress: Arc<EgressCtx>, aliases: AliasTable, idle: Duration) -> Self {
        DnsCtx {
            egress,
            aliases: Mutex::new(aliases),
            idle,
            limit: Mutex::new(LogLimiter::new(20, Duration::from_secs(60))),
        }
    }

    fn aliases(&self) -> MutexGuard<'_, AliasTable> {
        // A panic elsewhere cannot leave the table half-updated: every change is one call.
        self.aliases.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Calls `log` with the suppressed-lines note, unless the limit is reached.
    fn log(&self, log: impl FnOnce(&str)) {
        let allowed = self.limit.lock().map(|mut l| l.check(Instant::now()));
        if let Ok(Some(dropped)) = allowed {
            log(&suppressed_note(dropped));
        }
    }
}

/// Answers queries on `socket` until the runtime stops.
pub(crate) async fn serve(socket: UdpSocket, ctx: Arc<DnsCtx>) {
    let mut buf = vec![0u8; MAX_QUERY];
    loop {
        let (n, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // UDP errors (an ICMP error from an earlier reply, say) concern one datagram.
                debug!("dns: receive failed: {e}");
                continue;
            }
        };
        let packet = buf.get(..n).unwrap_or_default();
        let reply = match parse_query(packet) {
            Ok(q) => Some(q.response(answer(&ctx, &q).await)),
            Err(e) => {
                debug!("dns: malformed query from {peer}: {e}");
                error_response(packet, &e)
            }
        };
        if let Some(reply) = reply {
            if let Err(e) = socket.send_to(&reply, peer).await {
                debug!("dns: replying to {peer} failed: {e}");
            }
        }
    }
}

/// Takes back idle aliases every quarter of the idle time, so that their listeners close even
/// when nobody asks for a new name. Runs until the runtime stops.
pub(crate) async fn sweep(ctx: Arc<DnsCtx>) {
    let period = (ctx.idle / 4).max(Duration::from_millis(10));
    loop {
        tokio::time::sleep(period).await;
        reclaim_idle(&ctx).await;
    }
}

/// Takes back every idle alias: stops its listeners, waits until they are closed (so the alias
/// can be bound again at once), then frees it.
async fn reclaim_idle(ctx: &DnsCtx) {
    let expired = ctx.aliases().take_idle(Instant::now(), ctx.idle);
    for gone in expired {
        for task in &gone.listeners {
            task.abort();
        }
        for task in gone.listeners {
            // Cancelled: the task, and with it the listener, is gone.
            let _ = task.await;
        }
        ctx.aliases().free(gone.alias);
        info!(
            "egress: {} unused for {:?}, {} freed",
            gone.name, ctx.idle, gone.alias
        );
    }
}

/// The answer for a well-formed query; gives a wildcard name its alias on first sight.
async fn answer(ctx: &DnsCtx, q: &Query) -> Answer {
    // A wildcard matches any labels in front of its domain, but only a host name can be sent
    // to the host (`_service` labels are DNS-legal and would be refused there as malformed).
    let ports = if valid_host_name(&q.name) {
        ctx.egress.rules.ports_for(&q.name)
    } else {
        BTreeSet::new()
    };
    if ports.is_empty() {
        ctx.log(|note| info!("dns: {:?} is not allowed (NXDOMAIN){note}", q.name));
        return Answer::NxDomain;
    }
    let now = Instant::now();
    let known = ctx.aliases().query(&q.name, now);
    let alias = match known {
        Some(a) => a,
        None => {
            if ctx.aliases().next_free().is_none() {
                reclaim_idle(ctx).await;
            }
            match new_alias(ctx, &q.name, &ports, now) {
                Ok(a) => a,
                Err(refusal) => return refusal,
            }
        }
    };
    if q.wants_address() {
        Answer::Address(alias)
    } else {
        Answer::NoData
    }
}

/// Gives `name` the next free alias and starts its forwarders. Without a free alias the answer
/// is REFUSED, when a listener cannot be bound SERVFAIL, each with a warning.
fn new_alias(
    ctx: &DnsCtx,
    name: &str,
    ports: &BTreeSet<u16>,
    now: Instant,
) -> Result<Ipv4Addr, Answer> {
    let mut aliases = ctx.aliases();
    let Some(alias) = aliases.next_free() else {
        let (exact, wildcard) = aliases.held();
        ctx.log(|note| {
            warn!(
                "dns: no loopback alias left for {name}: all {ALIASES} are held ({exact} by exact \
                 names, {wildcard} by wildcard names used within the last {:?}); REFUSED{note}",
                ctx.idle
            )
        });
        return Err(Answer::Refused);
    };
    match bind_named(alias, ports) {
        Ok(listeners) => {
            let usage = Arc::new(AliasUse::default());
            let tasks = spawn_named(&ctx.egress, name, listeners, Some(&usage));
            aliases.allocate_on_demand(name, now, usage, tasks);
            log_alias(name, alias, ports);
            Ok(alias)
        }
        Err((addr, e)) => {
            warn!("dns: cannot listen on {addr} for {name}: {e}; SERVFAIL");
            Err(Answer::ServFail)
        }
    }
}
