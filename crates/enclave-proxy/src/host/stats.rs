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

/// The egress proxy's counters: one set per allow-list rule (by its label, as
/// [`crate::allow::EgressPolicy::rule_labels`] names them), and one for requests no rule holds.
#[derive(Debug, Clone, Default)]
pub struct EgressStats {
    /// (label, counters), in the policy's order.
    pub rules: Vec<(String, Arc<RuleStats>)>,
    /// Requests no rule holds (all refused).
    pub unlisted: Arc<RuleStats>,
}

impl EgressStats {
    /// Counters for each of `labels`.
    pub fn new(labels: Vec<String>) -> Self {
        EgressStats {
            rules: labels
                .into_iter()
                .map(|l| (l, Arc::new(RuleStats::default())))
                .collect(),
            unlisted: Arc::default(),
        }
    }

    /// The counters of the rule labelled `label`, or of the unlisted requests.
    pub fn of(&self, label: Option<&str>) -> &RuleStats {
        label
            .and_then(|l| self.rules.iter().find(|(name, _)| name == l))
            .map_or(&*self.unlisted, |(_, s)| &**s)
    }
}

/// The counters of every rule of a [`super::HostProxies`], named: `ingress HOST:PORT->PORT` for
/// each published port, `egress RULE` for each allow-list rule of the egress proxy and `egress
/// unlisted` for the requests none holds.
#[derive(Debug, Clone, Default)]
pub struct ProxyStats {
    /// (rule name, counters), in the order of the configuration.
    pub rules: Vec<(String, Arc<RuleStats>)>,
}
