//! Identities: endpoints, ranks, sequence numbers, view ids and views.
//!
//! An [`Endpoint`] names one *incarnation* of a process: a process that crashes and restarts
//! comes back as a new endpoint, so nothing addressed to the old one reaches the new one.
//! A [`ViewId`] is Ensemble's `(ltime, coordinator)` pair: logical times order the views of a
//! group, and the coordinator tells apart two views made concurrently on the two sides of a
//! partition (they may share an ltime, never a coordinator).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// One incarnation of a process: `node` names the process (host and port, or the simulator's
/// node number), `incarnation` counts its restarts.
/// Written as `[node, incarnation]`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(from = "(u64, u32)", into = "(u64, u32)")]
pub struct Endpoint {
    pub node: u64,
    pub incarnation: u32,
}

impl From<(u64, u32)> for Endpoint {
    fn from((node, incarnation): (u64, u32)) -> Self {
        Endpoint { node, incarnation }
    }
}

impl From<Endpoint> for (u64, u32) {
    fn from(e: Endpoint) -> Self {
        (e.node, e.incarnation)
    }
}

impl Endpoint {
    pub const fn new(node: u64, incarnation: u32) -> Self {
        Endpoint { node, incarnation }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}.{}", self.node, self.incarnation)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A member's position in a view: 0 is the coordinator (the oldest member).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Rank(pub u32);

impl Rank {
    /// The rank as an index into per-member tables.
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "r{}", self.0)
    }
}

impl fmt::Debug for Rank {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A per-sender sequence number. Senders number their messages from 0 in each view.
#[derive(
    Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize,
)]
pub struct Seqno(pub u64);

impl Seqno {
    pub const fn next(self) -> Seqno {
        Seqno(self.0 + 1)
    }
}

impl fmt::Display for Seqno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The name of a group. Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupName(Arc<str>);

impl GroupName {
    pub fn new(name: &str) -> Self {
        GroupName(Arc::from(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A 32-bit tag that travels in every datagram so groups can share a multicast address.
    /// FNV-1a: stable across builds and platforms, which a std hasher is not.
    pub fn tag(&self) -> u32 {
        self.0.bytes().fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
    }
}

impl fmt::Display for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for GroupName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// Identifies a view: ordered by logical time, then by coordinator. Two views made
/// concurrently in two partitions differ in their coordinator.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ViewId {
    pub ltime: u64,
    pub coord: Endpoint,
}

impl ViewId {
    pub const fn new(ltime: u64, coord: Endpoint) -> Self {
        ViewId { ltime, coord }
    }
}

impl fmt::Display for ViewId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}@{}", self.ltime, self.coord)
    }
}

impl fmt::Debug for ViewId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A view: its id, the members in rank order (the coordinator first), and the ids of the views
/// it was made from (one for an ordinary change, several for a merge, none for the first).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct View {
    pub id: ViewId,
    pub members: Vec<Endpoint>,
    /// Always written (a compact binary codec cannot skip fields); may be absent in JSON.
    #[serde(default)]
    pub prev: Vec<ViewId>,
}

impl View {
    /// The first view of a group: `members` in rank order, the first of them coordinating.
    ///
    /// # Panics
    /// If `members` is empty: a view always holds at least its coordinator.
    pub fn initial(members: Vec<Endpoint>) -> Self {
        let coord = *members.first().expect("a view has at least one member");
        View { id: ViewId::new(0, coord), members, prev: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn coordinator(&self) -> Endpoint {
        self.members[0]
    }

    /// The rank of `e`, if it is a member.
    pub fn rank_of(&self, e: Endpoint) -> Option<Rank> {
        self.members.iter().position(|m| *m == e).map(|i| Rank(i as u32))
    }

    /// The member at `rank`, if there is one.
    pub fn member(&self, rank: Rank) -> Option<Endpoint> {
        self.members.get(rank.index()).copied()
    }

    pub fn contains(&self, e: Endpoint) -> bool {
        self.members.contains(&e)
    }

    /// The ranks of this view, coordinator first.
    pub fn ranks(&self) -> impl Iterator<Item = Rank> {
        (0..self.members.len() as u32).map(Rank)
    }
}

impl fmt::Display for View {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [", self.id)?;
        for (i, m) in self.members.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{m}")?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrent_views_are_told_apart_by_coordinator() {
        let a = ViewId::new(3, Endpoint::new(1, 0));
        let b = ViewId::new(3, Endpoint::new(2, 0));
        assert_ne!(a, b);
        assert!(a < b && b < ViewId::new(4, Endpoint::new(0, 0)));
    }

    #[test]
    fn restarted_process_is_a_new_endpoint() {
        assert_ne!(Endpoint::new(7, 0), Endpoint::new(7, 1));
    }

    #[test]
    fn rank_of_follows_member_order() {
        let v = View::initial(vec![Endpoint::new(5, 0), Endpoint::new(2, 0)]);
        assert_eq!(v.coordinator(), Endpoint::new(5, 0));
        assert_eq!(v.rank_of(Endpoint::new(2, 0)), Some(Rank(1)));
        assert_eq!(v.member(Rank(2)), None);
    }

    #[test]
    fn a_view_round_trips_through_the_binary_codec() {
        let v = View::initial(vec![Endpoint::new(1, 0), Endpoint::new(2, 3)]);
        let bytes = postcard::to_allocvec(&v).unwrap();
        assert_eq!(postcard::from_bytes::<View>(&bytes).unwrap(), v);
    }

    #[test]
    fn group_tag_is_stable() {
        // FNV-1a of "demo": a value fixed for all builds, since it travels on the wire.
        assert_eq!(GroupName::new("demo").tag(), 0xaefd_3536);
    }
}
