//! The host side of the proxies.
//!
//! - Ingress ([`serve_ingress`]): a TCP port on the host; each connection becomes a connection to
//!   the enclave's ingress forwarder ([`EnclaveConnector`]) that asks for one enclave port.
//! - Egress ([`serve_egress`]): the enclave's forwarders connect to the host and name a
//!   destination; the host checks it against the measured allow-list again, resolves it,
//!   connects, answers with a status byte and relays.
//! - [`HostProxies`]: both, for a plain synchronous program (the supervisor): listeners bound
//!   before `start` returns, then everything on one current-thread runtime in one thread.
//!
//! Every connection is a tokio task, and every wait is bounded: the header ([`Limits`]), the
//! connect, and the number of connections a proxy holds at once.

mod accept;
mod connector;
mod egress;
mod handshake;
mod ingress;
mod listen;
mod proxies;
mod stats;

use std::time::Duration;

pub use connector::EnclaveConnector;
pub use egress::{serve_egress, EgressRules};
pub use handshake::{read_request, send_request, ReadRequestError};
pub use ingress::{serve_ingress, IngressTarget};
pub use listen::{listen_tcp, listen_unix, listen_vsock};
pub use proxies::{EgressConfig, EgressListen, HostProxies, HostProxyConfig, Publish};
pub use stats::{EgressStats, ProxyStats, RuleCounts, RuleStats};

/// The bounds every proxy applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections one proxy holds at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// How long a peer has to send its request header, or to answer one.
    pub header_timeout: Duration,
    /// How long connecting may take (resolving a name included).
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            header_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
        }
    }
}
