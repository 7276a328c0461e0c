//! The directory: which address each endpoint is at.
//!
//! In-view datagrams name their sender by rank, not by address, so the driver learns where each
//! endpoint is from what it receives: the source address of an in-view datagram of its current
//! view (rank → endpoint through that view), of an outside frame (which names its sender), and,
//! in unicast-only mode, the entries of the members' gossip. What was seen first-hand always
//! wins over gossip. A new incarnation at an old address replaces the old one.
//!
//! The directory holds at most [`MAX_ENTRIES`]; when full, entries for endpoints outside the
//! current view are forgotten.

use std::net::SocketAddr;

use hashbrown::HashMap;
use horus_core::{Endpoint, View};

/// Entries kept before those outside the current view are forgotten.
pub const MAX_ENTRIES: usize = 4096;

/// Endpoints and their addresses, both ways.
#[derive(Debug, Default)]
pub(crate) struct Directory {
    by_endpoint: HashMap<Endpoint, SocketAddr>,
    by_addr: HashMap<SocketAddr, Endpoint>,
}

impl Directory {
    /// Where `e` is, if known.
    #[inline]
    pub(crate) fn addr(&self, e: Endpoint) -> Option<SocketAddr> {
        self.by_endpoint.get(&e).copied()
    }

    /// Who sends from `addr`, if known.
    #[inline]
    pub(crate) fn endpoint(&self, addr: SocketAddr) -> Option<Endpoint> {
        self.by_addr.get(&addr).copied()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_endpoint.len()
    }

    /// Notes that `e` sends from `addr` (seen first-hand). Returns whether anything changed.
    pub(crate) fn learn(&mut self, e: Endpoint, addr: SocketAddr, view: &View) -> bool {
        if self.by_endpoint.get(&e) == Some(&addr) && self.by_addr.get(&addr) == Some(&e) {
            return false;
        }
        if let Some(old) = self.by_endpoint.insert(e, addr) {
            if self.by_addr.get(&old) == Some(&e) {
                self.by_addr.remove(&old);
            }
        }
        // Another endpoint at this address was an earlier incarnation: it is gone.
        if let Some(prev) = self.by_addr.insert(addr, e) {
            if prev != e {
                self.by_endpoint.remove(&prev);
            }
        }
        if self.by_endpoint.len() > MAX_ENTRIES {
            self.forget_outside(view);
        }
        true
    }

    /// Notes a gossiped entry, unless `e` or `addr` is already known.
    pub(crate) fn learn_gossip(&mut self, e: Endpoint, addr: SocketAddr, view: &View) -> bool {
        if self.by_endpoint.contains_key(&e) || self.by_addr.contains_key(&addr) {
            return false;
        }
        self.learn(e, addr, view)
    }

    /// The entries of the members of `view`, for gossip.
    pub(crate) fn of_view<'a>(
        &'a self,
        view: &'a View,
    ) -> impl Iterator<Item = (Endpoint, SocketAddr)> + 'a {
        view.members.iter().filter_map(|e| self.addr(*e).map(|a| (*e, a)))
    }

    /// Every entry.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (Endpoint, SocketAddr)> + '_ {
        self.by_endpoint.iter().map(|(e, a)| (*e, *a))
    }

    fn forget_outside(&mut self, view: &View) {
        self.by_endpoint.retain(|e, _| view.contains(*e));
        let by_endpoint = &self.by_endpoint;
        self.by_addr.retain(|_, e| by_endpoint.contains_key(e));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn learns_both_ways() {
        let view = View::initial(vec![Endpoint::new(1, 0)]);
        let mut d = Directory::default();
        assert!(d.learn(Endpoint::new(2, 0), addr(9), &view));
        assert!(!d.learn(Endpoint::new(2, 0), addr(9), &view));
        assert_eq!(d.addr(Endpoint::new(2, 0)), Some(addr(9)));
        assert_eq!(d.endpoint(addr(9)), Some(Endpoint::new(2, 0)));
    }

    #[test]
    fn new_incarnation_at_old_address_replaces_the_old() {
        let view = View::initial(vec![Endpoint::new(1, 0)]);
        let mut d = Directory::default();
        d.learn(Endpoint::new(2, 0), addr(9), &view);
        d.learn(Endpoint::new(2, 1), addr(9), &view);
        assert_eq!(d.addr(Endpoint::new(2, 0)), None);
        assert_eq!(d.endpoint(addr(9)), Some(Endpoint::new(2, 1)));
        assert_eq!(d.len(), 1);
    }

    #[test]
    fn first_hand_wins_over_gossip() {
        let view = View::initial(vec![Endpoint::new(1, 0)]);
        let mut d = Directory::default();
        d.learn(Endpoint::new(2, 0), addr(9), &view);
        assert!(!d.learn_gossip(Endpoint::new(2, 0), addr(10), &view));
        assert!(d.learn_gossip(Endpoint::new(3, 0), addr(11), &view));
        assert_eq!(d.addr(Endpoint::new(2, 0)), Some(addr(9)));
    }

    #[test]
    fn full_directory_forgets_those_outside_the_view() {
        let members: Vec<Endpoint> = (0..3).map(|n| Endpoint::new(n, 0)).collect();
        let view = View::initial(members.clone());
        let mut d = Directory::default();
        for (i, e) in members.iter().enumerate() {
            d.learn(*e, addr(i as u16), &view);
        }
        for n in 0..MAX_ENTRIES as u64 {
            d.learn(Endpoint::new(1000 + n, 0), addr(1000 + n as u16), &view);
        }
        assert!(d.len() <= MAX_ENTRIES);
        assert!(members.iter().all(|e| d.addr(*e).is_some()));
        assert!(d.entries().all(|(e, a)| d.endpoint(a) == Some(e)));
    }
}
