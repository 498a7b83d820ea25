//! Which connections the control server keeps when more come than it serves.
//!
//! On a Nitro parent every local user can open the enclave's control port, and all of them
//! reach it from the same CID (the parent's), so the number of connections is the only thing an
//! unprivileged user can spend. The rules, applied to each new connection:
//!
//! - a connection that has not proven a key (or, locally, not said hello) is *unauthenticated*;
//!   it is bounded in time anyway (`conn::UNAUTHENTICATED_LIFETIME`, and a read timeout);
//! - at most [`MAX_UNAUTHENTICATED_PER_PEER`] unauthenticated connections per peer CID and
//!   [`MAX_UNAUTHENTICATED`] in all: over either, the *oldest* unauthenticated one (of that
//!   peer, else of all) is closed to make room, so a flood of idle connections cannot keep an
//!   operator's fresh one out;
//! - at most [`MAX_CONNECTIONS`] in all; when every slot is held by an authenticated session the
//!   new connection is refused.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use enclave_proto::transport::Connection;

/// Most connections served at once per listener.
pub const MAX_CONNECTIONS: usize = 256;
/// Most connections at once that have not proven a key.
pub const MAX_UNAUTHENTICATED: usize = 64;
/// Most such connections from one peer CID.
pub const MAX_UNAUTHENTICATED_PER_PEER: usize = 16;

struct Slot {
    id: u64,
    peer: Option<u32>,
    since: Instant,
    authenticated: Arc<AtomicBool>,
    sock: Connection,
}

/// The connections of one listener.
#[derive(Default)]
pub(super) struct Slots {
    slots: Mutex<Vec<Slot>>,
    next: AtomicU64,
}

/// A connection admitted: its slot id (to release) and the flag its session sets.
pub(super) struct Admitted {
    pub id: u64,
    pub authenticated: Arc<AtomicBool>,
}

/// What a slot looks like to the policy.
#[derive(Debug, Clone, Copy)]
pub(super) struct SlotView {
    pub peer: Option<u32>,
    pub since: Instant,
    pub authenticated: bool,
}

/// The policy: which slot (index) to evict for a new connection from `peer`, and whether the
/// new one is then admitted.
pub(super) fn decide(slots: &[SlotView], peer: Option<u32>) -> (Option<usize>, bool) {
    let oldest = |filter: &dyn Fn(&SlotView) -> bool| {
        slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.authenticated && filter(s))
            .min_by_key(|(_, s)| s.since)
            .map(|(i, _)| i)
    };
    let of_peer = slots
        .iter()
        .filter(|s| !s.authenticated && s.peer == peer)
        .count();
    let unauthenticated = slots.iter().filter(|s| !s.authenticated).count();
    let victim = if of_peer >= MAX_UNAUTHENTICATED_PER_PEER {
        oldest(&|s| s.peer == peer)
    } else if unauthenticated >= MAX_UNAUTHENTICATED || slots.len() >= MAX_CONNECTIONS {
        oldest(&|_| true)
    } else {
        None
    };
    let remaining = slots.len() - usize::from(victim.is_some());
    (victim, remaining < MAX_CONNECTIONS)
}

impl Slots {
    /// Admits a new connection from `peer`, closing an old unauthenticated one if the rules say
    /// so; `None`: refused (every slot held by an authenticated session).
    pub(super) fn admit(&self, peer: Option<u32>, sock: &Connection) -> Option<Admitted> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let views: Vec<SlotView> = slots
            .iter()
            .map(|s| SlotView {
                peer: s.peer,
                since: s.since,
                authenticated: s.authenticated.load(Ordering::Relaxed),
            })
            .collect();
        let (victim, admit) = decide(&views, peer);
        if let Some(i) = victim {
            let evicted = slots.swap_remove(i);
            // Its threads see the end of stream and clean up; it releases an id no longer here.
            let _ = evicted.sock.shutdown(std::net::Shutdown::Both);
        }
        if !admit {
            return None;
        }
        let sock = sock.try_clone().ok()?;
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let authenticated = Arc::new(AtomicBool::new(false));
        slots.push(Slot {
            id,
            peer,
            since: Instant::now(),
            authenticated: authenticated.clone(),
            sock,
        });
        Some(Admitted { id, authenticated })
    }

    /// The connection ended.
    pub(super) fn release(&self, id: u64) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.retain(|s| s.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn views(n: usize, peer: Option<u32>, authenticated: bool, t0: Instant) -> Vec<SlotView> {
        (0..n)
            .map(|i| SlotView {
                peer,
                since: t0 + Duration::from_millis(i as u64),
                authenticated,
            })
            .collect()
    }

    #[test]
    fn a_flood_of_idle_connections_evicts_its_own_oldest() {
        let t0 = Instant::now();
        let slots = views(MAX_UNAUTHENTICATED_PER_PEER, Some(3), false, t0);
        // The 17th from the same peer pushes out that peer's oldest.
        assert_eq!(decide(&slots, Some(3)), (Some(0), true));
        // Another peer is not affected while the global bound holds.
        assert_eq!(decide(&slots, Some(4)), (None, true));
    }

    #[test]
    fn authenticated_sessions_are_never_evicted() {
        let t0 = Instant::now();
        let mut slots = views(MAX_CONNECTIONS, Some(3), true, t0);
        assert_eq!(decide(&slots, Some(3)), (None, false), "full of operators: refuse");
        slots[10].authenticated = false;
        assert_eq!(decide(&slots, Some(3)), (Some(10), true));
    }

    #[test]
    fn the_global_unauthenticated_bound_evicts_the_oldest_of_all() {
        let t0 = Instant::now();
        let mut slots = Vec::new();
        for peer in 0..8u32 {
            let mut v = views(MAX_UNAUTHENTICATED / 8, Some(peer), false, t0);
            for s in &mut v {
                s.since += Duration::from_secs(u64::from(8 - peer));
            }
            slots.extend(v);
        }
        // Peer 7's are the oldest.
        let (victim, admit) = decide(&slots, Some(100));
        assert!(admit);
        assert_eq!(slots[victim.unwrap()].peer, Some(7));
    }
}
