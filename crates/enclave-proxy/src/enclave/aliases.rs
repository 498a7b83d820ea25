//! The loopback aliases (127.0.0.2-254) allowed names are given in the enclave, and when they
//! are given back.
//!
//! An exact name of the spec holds its alias for the enclave's lifetime: it is in /etc/hosts.
//! A name under a wildcard rule gets one when the enclave's DNS is first asked for it, and gives
//! it back once it has had no open connection and no query for the idle time: a program that
//! resolves many names can hold at most the 253 aliases of the /24 at once, never more memory or
//! listeners, and the names it stopped using make room for new ones. Freed aliases go to the
//! back of the free list, so an alias is reused as late as possible (a program that kept an old
//! answer past its TTL would reach the new name's destination, which the allow-list allows but
//! the program did not mean).
//!
//! Time is passed in (`now`), so the expiry rules are tested without waiting.

use std::collections::{BTreeMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

/// The first and last loopback aliases handed out. 127.0.0.1 is the enclave's own loopback and
/// 127.0.0.255 the /24's broadcast address; everything in 127.0.0.0/24 is excluded from the
/// transparent redirect, so aliases must stay inside it.
const FIRST_ALIAS: u8 = 2;
const LAST_ALIAS: u8 = 254;
/// How many aliases there are.
pub(crate) const ALIASES: usize = (LAST_ALIAS - FIRST_ALIAS + 1) as usize;

/// The connections open on a wildcard name's alias, and when the last one closed.
#[derive(Debug, Default)]
pub(crate) struct AliasUse {
    open: AtomicUsize,
    last_closed: Mutex<Option<Instant>>,
}

impl AliasUse {
    /// Counts a connection until the returned guard is dropped.
    pub(crate) fn open(self: &Arc<Self>) -> OpenConnection {
        self.open.fetch_add(1, Ordering::SeqCst);
        OpenConnection(self.clone())
    }

    fn busy(&self) -> bool {
        self.open.load(Ordering::SeqCst) > 0
    }

    fn last_closed(&self) -> Option<Instant> {
        *self.last_closed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One open connection on an alias; dropping it records when it closed.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<AliasUse>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        // Stamped before the count drops, so an expiry check that sees 0 sees this time too.
        *self.0.last_closed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a name holds its alias.
#[derive(Debug)]
enum Hold {
    /// An exact name of the spec: for the enclave's lifetime.
    Permanent,
    /// A wildcard name: until idle.
    OnDemand {
        last_query: Instant,
        usage: Arc<AliasUse>,
        /// The tasks serving the alias's listeners; they end when aborted, closing them.
        listeners: Vec<JoinHandle<()>>,
    },
}

#[derive(Debug)]
struct Slot {
    alias: Ipv4Addr,
    hold: Hold,
}

/// A wildcard name whose alias was taken back: stop its listeners, then [`AliasTable::free`].
#[derive(Debug)]
pub(crate) struct Expired {
    pub(crate) name: String,
    pub(crate) alias: Ipv4Addr,
    pub(crate) listeners: Vec<JoinHandle<()>>,
}

/// Names and the loopback aliases given to them.
#[derive(Debug)]
pub(crate) struct AliasTable {
    by_name: BTreeMap<String, Slot>,
    /// Aliases nobody holds, in the order they are handed out.
    free: VecDeque<Ipv4Addr>,
}

impl Default for AliasTable {
    fn default() -> Self {
        AliasTable {
            by_name: BTreeMap::new(),
            free: (FIRST_ALIAS..=LAST_ALIAS)
                .map(|n| Ipv4Addr::new(127, 0, 0, n))
                .collect(),
        }
    }
}

impl AliasTable {
    /// Gives `name` the next free alias for good (an exact name at start); `None` when none is
    /// left.
    pub(crate) fn allocate_permanent(&mut self, name: &str) -> Option<Ipv4Addr> {
        let alias = self.free.pop_front()?;
        self.by_name.insert(
            name.to_owned(),
            Slot {
                alias,
                hold: Hold::Permanent,
            },
        );
        Some(alias)
    }

    /// The alias of `name`, if it has one; a query at `now` keeps a wildcard name's alias.
    pub(crate) fn query(&mut self, name: &str, now: Instant) -> Option<Ipv4Addr> {
        let slot = self.by_name.get_mut(name)?;
        if let Hold::OnDemand { last_query, .. } = &mut slot.hold {
            *last_query = now;
        }
        Some(slot.alias)
    }

    /// The alias the next [`AliasTable::allocate_on_demand`] would give; `None` when none is
    /// free.
    pub(crate) fn next_free(&self) -> Option<Ipv4Addr> {
        self.free.front().copied()
    }

    /// Gives wildcard name `name` the next free alias (the one [`AliasTable::next_free`] named,
    /// on which the caller bound the listeners that `listeners` serve), first queried at `now`,
    /// its connections counted by `usage`; `None` when none is free.
    pub(crate) fn allocate_on_demand(
        &mut self,
        name: &str,
        now: Instant,
        usage: Arc<AliasUse>,
        listeners: Vec<JoinHandle<()>>,
    ) -> Option<Ipv4Addr> {
        let alias = self.free.pop_front()?;
        self.by_name.insert(
            name.to_owned(),
            Slot {
                alias,
                hold: Hold::OnDemand {
                    last_query: now,
                    usage,
                    listeners,
                },
            },
        );
        Some(alias)
    }

    /// Takes back, at `now`, every wildcard name's alias that has had no open connection and no
    /// query for `idle` (since the later of its last query and its last connection's close).
    /// The aliases are not free until the caller has stopped their listeners and called
    /// [`AliasTable::free`].
    pub(crate) fn take_idle(&mut self, now: Instant, idle: Duration) -> Vec<Expired> {
        let is_idle = |slot: &Slot| match &slot.hold {
            Hold::Permanent => false,
            Hold::OnDemand {
                last_query, usage, ..
            } => {
                let last_used = usage
                    .last_closed()
                    .map_or(*last_query, |c| c.max(*last_query));
                !usage.busy() && now.saturating_duration_since(last_used) >= idle
            }
        };
        let names: Vec<String> = self
            .by_name
            .iter()
            .filter(|(_, slot)| is_idle(slot))
            .map(|(name, _)| name.clone())
            .collect();
        names
            .into_iter()
            .filter_map(|name| {
                let slot = self.by_name.remove(&name)?;
                let listeners = match slot.hold {
                    Hold::OnDemand { listeners, .. } => listeners,
                    Hold::Permanent => Vec::new(),
                };
                Some(Expired {
                    name,
                    alias: slot.alias,
                    listeners,
                })
            })
            .collect()
    }

    /// Puts `alias` at the back of the free list, to be reused as late as possible.
    pub(crate) fn free(&mut self, alias: Ipv4Addr) {
        if !self.free.contains(&alias) {
            self.free.push_back(alias);
        }
    }

    /// How many names hold an alias for good, and how many for now.
    pub(crate) fn held(&self) -> (usize, usize) {
        let permanent = self
            .by_name
            .values()
            .filter(|s| matches!(s.hold, Hold::Permanent))
            .count();
        (permanent, self.by_name.len() - permanent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(300);

    fn a(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(127, 0, 0, n)
    }

    fn usage() -> Arc<AliasUse> {
        Arc::new(AliasUse::default())
    }

    #[test]
    fn aliases_are_handed_out_in_order_until_exhausted() {
        let t0 = Instant::now();
        let mut t = AliasTable::default();
        assert_eq!(t.allocate_permanent("a.b"), Some(a(2)));
        assert_eq!(t.allocate_permanent("c.d"), Some(a(3)));
        assert_eq!(t.query("a.b", t0), Some(a(2)));
        assert_eq!(t.query("x.y", t0), None);
        for i in 4..=254 {
            let got = t.allocate_on_demand(&format!("n{i}.x"), t0, usage(), Vec::new());
            assert_eq!(got, Some(a(i)));
        }
        assert_eq!(t.held(), (2, ALIASES - 2));
        assert_eq!(t.next_free(), None);
        assert!(t
            .allocate_on_demand("one.more", t0, usage(), Vec::new())
            .is_none());
        assert_eq!(t.allocate_permanent("one.more"), None);
    }

    #[test]
    fn idle_wildcard_aliases_are_taken_back_and_reused_last() {
        let t0 = Instant::now();
        let mut t = AliasTable::default();
        t.allocate_permanent("exact.test").unwrap();
        let first = t
            .allocate_on_demand("a.wild.test", t0, usage(), Vec::new())
            .unwrap();
        let second = t
            .allocate_on_demand("b.wild.test", t0, usage(), Vec::new())
            .unwrap();
        // A query keeps a name: b is asked for again halfway.
        assert_eq!(t.query("b.wild.test", t0 + IDLE / 2), Some(second));
        assert!(t
            .take_idle(t0 + IDLE - Duration::from_secs(1), IDLE)
            .is_empty());
        let expired = t.take_idle(t0 + IDLE, IDLE);
        let names: Vec<_> = expired.iter().map(|e| (e.name.as_str(), e.alias)).collect();
        assert_eq!(names, [("a.wild.test", first)]);
        assert_eq!(t.query("a.wild.test", t0 + IDLE), None);
        t.free(first);
        // The freed alias goes to the back: the never-used ones come first.
        let next = t
            .allocate_on_demand("c.wild.test", t0 + IDLE, usage(), Vec::new())
            .unwrap();
        assert_eq!(next, a(5));
        let expired = t.take_idle(t0 + IDLE / 2 + IDLE, IDLE);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].name, "b.wild.test");
        // Exact names never expire.
        assert!(t
            .take_idle(t0 + 100 * IDLE, IDLE)
            .iter()
            .all(|e| e.name != "exact.test"));
        assert_eq!(t.query("exact.test", t0 + 100 * IDLE), Some(a(2)));
    }

    #[test]
    fn an_alias_with_an_open_connection_is_kept_and_its_close_counts_as_use() {
        let now = Instant::now();
        // Last asked for long ago.
        let Some(long_ago) = now.checked_sub(10 * IDLE) else {
            return; // A monotonic clock this young cannot go back that far.
        };
        let mut t = AliasTable::default();
        let usage = usage();
        let alias = t
            .allocate_on_demand("a.wild.test", long_ago, usage.clone(), Vec::new())
            .unwrap();
        let conn = usage.open();
        let second = usage.open();
        assert!(t.take_idle(now + 10 * IDLE, IDLE).is_empty(), "open");
        drop(conn);
        assert!(
            t.take_idle(now + 10 * IDLE, IDLE).is_empty(),
            "one still open"
        );
        // The close (stamped with the real clock, about `now`) is the last use, not the query.
        drop(second);
        assert!(
            t.take_idle(now + IDLE / 2, IDLE).is_empty(),
            "closed just now"
        );
        let expired = t.take_idle(now + 2 * IDLE, IDLE);
        assert_eq!(expired.len(), 1);
        assert_eq!(expired[0].alias, alias);
    }
}
