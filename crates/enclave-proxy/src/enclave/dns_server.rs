//! The enclave's resolver (UDP, 127.0.0.1:53): allowed names resolve to their loopback alias,
//! everything else is NXDOMAIN. Names allowed by a wildcard rule get an alias, and forwarders
//! on it, the first time they are asked for; the alias is kept for the enclave's lifetime.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use enclave_proto::spec::valid_host_name;
use tokio::net::UdpSocket;
use tracing::{debug, info, warn};

use super::conn::{suppressed_note, LogLimiter};
use super::dns::{error_response, parse_query, Answer, Query};
use super::egress::{bind_named, log_alias, spawn_named, EgressCtx};
use super::rules::AliasTable;

/// The largest query read. Queries are at most a few hundred bytes; a longer datagram is cut
/// here and then fails to parse.
const MAX_QUERY: usize = 1500;

/// What the DNS server needs.
#[derive(Debug)]
pub(crate) struct DnsCtx {
    egress: Arc<EgressCtx>,
    aliases: Mutex<AliasTable>,
    /// Limits the lines a program asking in a loop would cause.
    limit: Mutex<LogLimiter>,
}

impl DnsCtx {
    pub(crate) fn new(egress: Arc<EgressCtx>, aliases: AliasTable) -> Self {
        DnsCtx {
            egress,
            aliases: Mutex::new(aliases),
            limit: Mutex::new(LogLimiter::new(20, Duration::from_secs(60))),
        }
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
            Ok(q) => Some(q.response(answer(&ctx, &q))),
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

/// The answer for a well-formed query; gives a wildcard name its alias on first sight.
fn answer(ctx: &DnsCtx, q: &Query) -> Answer {
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
    let Ok(mut aliases) = ctx.aliases.lock() else {
        return Answer::ServFail;
    };
    let alias = match aliases.get(&q.name) {
        Some(a) => a,
        None => match new_alias(ctx, &mut aliases, &q.name, &ports) {
            Some(a) => a,
            None => return Answer::ServFail,
        },
    };
    if q.wants_address() {
        Answer::Address(alias)
    } else {
        Answer::NoData
    }
}

/// Gives `name` the next free alias and starts its forwarders; `None` (and a warning) when no
/// alias is left or a listener cannot be bound.
fn new_alias(
    ctx: &DnsCtx,
    aliases: &mut AliasTable,
    name: &str,
    ports: &BTreeSet<u16>,
) -> Option<Ipv4Addr> {
    let Some(alias) = aliases.next_free() else {
        ctx.log(|note| warn!("dns: no loopback alias left for {name}; SERVFAIL{note}"));
        return None;
    };
    match bind_named(alias, ports) {
        Ok(listeners) => {
            aliases.insert(name, alias);
            spawn_named(&ctx.egress, name, listeners);
            log_alias(name, alias, ports);
            Some(alias)
        }
        Err((addr, e)) => {
            warn!("dns: cannot listen on {addr} for {name}: {e}; SERVFAIL");
            None
        }
    }
}
