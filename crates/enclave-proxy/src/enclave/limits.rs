//! The bounds of the enclave side: how many ingress and egress connections it serves at once, and
//! how long a wildcard name keeps its loopback alias unused. They run in PID 1 (enclave-init), so running
//! out of descriptors there would take the control channel and the services' pipes down with the
//! network; these bounds keep the forwarders to a share of what PID 1 has.

use std::time::Duration;

use nix::sys::resource::{getrlimit, Resource};

/// The default ingress cap never goes above this (the host proxy's per-port cap).
const MAX_DEFAULT_INGRESS: usize = 4096;
/// Nor below this, even under a tiny descriptor limit.
const MIN_DEFAULT_INGRESS: usize = 16;
/// Used when the descriptor limit cannot be read: the kernel's default for PID 1 (1024) / 4.
const FALLBACK_INGRESS: usize = 256;
/// Egress gets half of what ingress gets: connections the enclave's own programs open, which
/// a program that leaks them must not turn into PID 1 running out of descriptors.
const EGRESS_SHARE: usize = 2;

/// The bounds [`EnclaveNetwork`](super::EnclaveNetwork) applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnclaveLimits {
    /// Ingress connections served at once. One more is refused at once: it is answered
    /// [`Status::Busy`](crate::header::Status::Busy) without its request being read, closed,
    /// and logged (rate-limited); nothing waits in a queue.
    pub ingress_max_connections: usize,
    /// Egress connections (named, wildcard and transparent together) forwarded at once. One
    /// more is reset at once (the program sees "connection reset"), and logged (rate-limited).
    pub egress_max_connections: usize,
    /// How long a wildcard name keeps its loopback alias with no open connection and no DNS
    /// query; then its listeners close and the alias goes back to the free list. Keep it above
    /// the DNS answers' TTL (60 s), so that no resolver's cached answer outlives its alias.
    pub alias_idle: Duration,
}

impl Default for EnclaveLimits {
    /// Ingress: a quarter of this process's descriptor limit, within 16..=4096. A connection
    /// holds two descriptors (vsock and TCP), so ingress alone never takes more than half of
    /// them; in an enclave, PID 1 has the kernel's default soft limit of 1024, which gives 256.
    /// Egress: half of that (128 in an enclave), a quarter of the descriptors; the last quarter
    /// stays for the control channel and the services' pipes.
    /// Aliases: five minutes, five times the DNS TTL.
    fn default() -> Self {
        let ingress = ingress_cap_for(
            getrlimit(Resource::RLIMIT_NOFILE)
                .ok()
                .map(|(soft, _)| soft),
        );
        EnclaveLimits {
            ingress_max_connections: ingress,
            egress_max_connections: (ingress / EGRESS_SHARE).max(1),
            alias_idle: Duration::from_secs(300),
        }
    }
}

/// The default ingress cap for a soft descriptor limit (`None`: unknown).
fn ingress_cap_for(soft_nofile: Option<u64>) -> usize {
    match soft_nofile {
        Some(soft) => usize::try_from(soft / 4)
            .unwrap_or(usize::MAX)
            .clamp(MIN_DEFAULT_INGRESS, MAX_DEFAULT_INGRESS),
        None => FALLBACK_INGRESS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ingress_cap_is_a_quarter_of_the_descriptor_limit_within_bounds() {
        assert_eq!(ingress_cap_for(Some(1024)), 256);
        assert_eq!(ingress_cap_for(Some(4096)), 1024);
        assert_eq!(ingress_cap_for(Some(20)), MIN_DEFAULT_INGRESS);
        assert_eq!(ingress_cap_for(Some(u64::MAX)), MAX_DEFAULT_INGRESS);
        assert_eq!(ingress_cap_for(None), FALLBACK_INGRESS);
    }
}
