//! Counters of the host proxies, one set per rule (a published port, or the egress proxy), for
//! the supervisor's metrics. Plain atomics: a connection task adds to them, a scrape reads them.
//! Bytes are added when a connection closes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The counters of one rule.
#[derive(Debug, Default)]
pub struct RuleStats {
    opened: AtomicU64,
    refused: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// A reading of [`RuleStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCounts {
    /// Connections relayed (both ends connected).
    pub opened: u64,
    /// Connections refused: the enclave or the allow-list said no, or the other end could not
    /// be reached.
    pub refused: u64,
    /// Bytes into the enclave, of closed connections.
    pub bytes_in: u64,
    /// Bytes out of the enclave, of closed connections.
    pub bytes_out: u64,
}

impl RuleStats {
    pub(crate) fn opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn refused(&self) {
        self.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn moved(&self, into_enclave: u64, out_of_enclave: u64) {
        self.bytes_in.fetch_add(into_enclave, Ordering::Relaxed);
        self.bytes_out.fetch_add(out_of_enclave, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn read(&self) -> RuleCounts {
        RuleCounts {
            opened: self.opened.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
        }
    }
}

/// The counters of every rule of a [`super::HostProxies`], named: `ingress HOST:PORT->PORT` for
/// each published port, `egress` for the egress proxy (one set for all its allow-list entries).
#[derive(Debug, Clone, Default)]
pub struct ProxyStats {
    /// (rule name, counters), in the order of the configuration.
    pub rules: Vec<(String, Arc<RuleStats>)>,
}
