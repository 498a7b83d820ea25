//! The ingress proxy: host TCP port → the enclave's ingress forwarder → an enclave port.

use std::sync::Arc;

use tracing::{debug, info_span, Instrument};

use super::accept::{accept_loop, limited_warn, LogLimiter};
use super::{EnclaveConnector, Limits, RuleStats};
use crate::stream::{relay, BufferPool, ProxyListener, ProxyStream};

/// Where an ingress proxy's connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressTarget {
    /// The enclave's ingress forwarder.
    pub connector: EnclaveConnector,
    /// The enclave port each connection asks for.
    pub enclave_port: u16,
}

struct Shared {
    target: IngressTarget,
    limits: Limits,
    pool: BufferPool,
    refused: LogLimiter,
    stats: Arc<RuleStats>,
}

/// Serves an ingress proxy on `listener` (a published host port) until dropped: each connection
/// is joined to a new connection to `target`. When the enclave side cannot be reached or refuses,
/// the client's connection is reset and a warning names the reason. Dropping the future closes
/// every connection it holds. Connections and bytes are counted in `stats`.
pub async fn serve_ingress(
    listener: ProxyListener,
    target: IngressTarget,
    limits: Limits,
    pool: BufferPool,
    stats: Arc<RuleStats>,
) {
    let span = info_span!(
        "ingress",
        listen = %super::listen::describe(&listener),
        to = %target.connector,
        enclave_port = target.enclave_port,
    );
    let shared = Arc::new(Shared {
        target,
        limits,
        pool,
        refused: LogLimiter::new(),
        stats,
    });
    accept_loop(listener, limits, None, |client| {
        connection(client, shared.clone())
    })
    .instrument(span)
    .await;
}

async fn connection(client: ProxyStream, shared: Arc<Shared>) {
    let target = &shared.target;
    let enclave = match target
        .connector
        .open(target.enclave_port, &shared.limits)
        .await
    {
        Ok(enclave) => enclave,
        Err(e) => {
            shared.stats.refused();
            limited_warn!(shared.refused, reason = %e, "ingress connection refused");
            client.reset();
            return;
        }
    };
    shared.stats.opened();
    match relay(&client, &enclave, &shared.pool).await {
        Ok(moved) => {
            shared.stats.moved(moved.a_to_b, moved.b_to_a);
            debug!(
                to_enclave = moved.a_to_b,
                from_enclave = moved.b_to_a,
                "ingress connection closed"
            )
        }
        Err(e) => debug!(error = %e, "ingress connection ended with an error"),
    }
}
