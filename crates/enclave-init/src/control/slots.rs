//! Which connections the control server keeps when more come than it serves.
//!
//! On a Nitro parent every local user can open the enclave's control port, and all of them
//! reach it from the same CID (the parent's), so the number of connections is the only thing an
//! unprivileged user can spend. The rules, applied to each new connection:
//!
//! - a connection that has not proven a key (or, locally, not said hello) is *unauthenticated*;
//!   it is bounded in time anyway (`conn::UNAUTHENTICATED_LIFETIME`, and a read timeout);
//! - one that has been so for longer than [`GRACE`] (an honest client proves its key within
//!   milliseconds) is *evictable*;
//! - a peer CID holding [`MAX_UNAUTHENTICATED_PER_PEER`] unauthenticated connections loses its
//!   oldest evictable one to each new connection it makes; when all [`MAX_CONNECTIONS`] slots
//!   are taken, the oldest evictable one of any peer goes. So idle connections cannot keep an
//!   operator's fresh one out, while a burst of honest clients (all young) is admitted;
//! - when every slot is held by an authenticated or young session, the new one is refused.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use enclave_proto::transport::Connection;

/// Most connections served at once per listener.
pub const MAX_CONNECTIONS: usize = 256;
/// Most unauthenticated connections one peer CID keeps before its oldest evictable ones go.
pub const MAX_UNAUTHENTICATED_PER_PEER: usize = MAX_CONNECTIONS / 2;
/// How long a connection may be unauthenticated before it can be evicted.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(2);

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

/// The policy: which slot (index) to evict for a new connection from `peer` at `now`, and
/// whether the new one is then admitted.
pub(super) fn decide(slots: &[SlotView], peer: Option<u32>, now: Instant) -> (Option<usize>, bool) {
    let oldest = |filter: &dyn Fn(&SlotView) -> bool| {
        slots
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.authenticated && now.duration_since(s.since) >= GRACE && filter(s))
            .min_by_key(|(_, s)| s.since)
            .map(|(i, _)| i)
    };
    let of_peer = slots
        .iter()
        .filter(|s| !s.authenticated && s.peer == peer)
        .count();
    let mut victim = None;
    if of_peer >= MAX_UNAUTHENTICATED_PER_PEER {
        victim = oldest(&|s| s.peer == peer);
    }
    if victim.is_none() && slots.len() >= MAX_CONNECTIONS {
        victim = oldest(&|_| true);
    }
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
        let (victim, admit) = decide(&views, peer, Instant::now());
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

    /// `n` slots of `peer`, the first `aged` of them older than the grace period.
    fn views(n: usize, peer: Option<u32>, authenticated: bool, now: Instant) -> Vec<SlotView> {
        (0..n)
            .map(|i| SlotView {
                peer,
                since: now - GRACE - Duration::from_secs(1000) + Duration::from_millis(i as u64),
                authenticated,
            })
            .collect()
    }

    #[test]
    fn a_flood_of_idle_connections_evicts_its_own_oldest() {
        let now = Instant::now();
        let slots = views(MAX_UNAUTHENTICATED_PER_PEER, Some(3), false, now);
        // One more from the same peer pushes out that peer's oldest.
        assert_eq!(decide(&slots, Some(3), now), (Some(0), true));
        // Another peer is not affected while there is room.
        assert_eq!(decide(&slots, Some(4), now), (None, true));
    }

    #[test]
    fn a_full_house_of_idle_connections_makes_room_for_the_operator() {
        let now = Instant::now();
        let mut slots = views(MAX_UNAUTHENTICATED_PER_PEER, Some(3), false, now);
        slots.extend(views(MAX_CONNECTIONS - slots.len(), Some(4), false, now));
        let (victim, admit) = decide(&slots, Some(5), now);
        assert!(admit);
        assert_eq!(victim, Some(0), "the oldest idle one of all");
    }

    #[test]
    fn young_and_authenticated_sessions_are_never_evicted() {
        let now = Instant::now();
        let mut slots = views(MAX_CONNECTIONS, Some(3), true, now);
        assert_eq!(
            decide(&slots, Some(3), now),
            (None, false),
            "full of operators: refuse"
        );
        // An unauthenticated one still within its grace period (an honest client mid-handshake)
        // is not touched either.
        slots[10].authenticated = false;
        slots[10].since = now;
        assert_eq!(decide(&slots, Some(3), now), (None, false));
        slots[10].since = now - GRACE;
        assert_eq!(decide(&slots, Some(3), now), (Some(10), true));
    }

    #[test]
    fn a_burst_of_honest_clients_is_admitted() {
        let now = Instant::now();
        let young: Vec<SlotView> = (0..MAX_CONNECTIONS - 1)
            .map(|_| SlotView {
                peer: Some(3),
                since: now,
                authenticated: false,
            })
            .collect();
        assert_eq!(decide(&young, Some(3), now), (None, true));
    }
}
