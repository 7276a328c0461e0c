//! A replicated key-value map: a copy in every member, writes in the group's total order,
//! reads local. Built on the [replicated state machine](crate::rsm).
//!
//! Every member applies the same writes in the same order, so the copies are equal between
//! writes; a read sees this member's copy (every write this member has applied, its own
//! answered writes included). A joiner gets the map by state transfer as of the view it
//! joins in.
//!
//! **Partitions.** With the default stack (`vsync`, primary partition) only the side with a
//! majority of the last view goes on; the minority writes nothing, so nothing is lost when the
//! network heals and its members rejoin. With the partitionable stack (`evs`) both sides go on
//! and write; when they merge, the members of the side that is merged in take the map of the
//! side that asks to merge (the coordinator with the lower endpoint), as joiners do: the
//! writes the other side made while apart are dropped. An application that must keep both
//! sides' writes merges them itself (keep per-key versions, and write the winners again after
//! the merge).

use std::collections::BTreeMap;

use horus::{Endpoint, Error, Group, GroupHandle};
use serde::{Deserialize, Serialize};

use crate::rsm::{Rsm, RsmReplica, StateMachine};

/// A write to the map.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MapCommand {
    /// Sets `key` to `value`.
    Put { key: String, value: Vec<u8> },
    /// Removes `key`.
    Remove { key: String },
    /// Sets `key` to `new` (removes it, for `None`) if its value is `expect` (`None`: absent).
    CompareAndSwap { key: String, expect: Option<Vec<u8>>, new: Option<Vec<u8>> },
}

/// The map every member holds: keys in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MapMachine {
    entries: BTreeMap<String, Vec<u8>>,
}

impl MapMachine {
    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&Vec<u8>> {
        self.entries.get(key)
    }

    /// Every entry, in key order.
    pub fn entries(&self) -> &BTreeMap<String, Vec<u8>> {
        &self.entries
    }
}

// ANCHOR: machine
impl StateMachine for MapMachine {
    type Command = MapCommand;
    /// The value before the write.
    type Reply = Option<Vec<u8>>;

    fn apply(&mut self, _origin: Endpoint, command: MapCommand) -> Option<Vec<u8>> {
        match command {
            MapCommand::Put { key, value } => self.entries.insert(key, value),
            MapCommand::Remove { key } => self.entries.remove(&key),
            MapCommand::CompareAndSwap { key, expect, new } => {
                let before = self.entries.get(&key).cloned();
                if before == expect {
                    match new {
                        Some(v) => self.entries.insert(key, v),
                        None => self.entries.remove(&key),
                    };
                }
                before
            }
        }
    }

    fn snapshot(&self) -> Vec<u8> {
        postcard::to_allocvec(&self.entries).unwrap_or_default()
    }

    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        self.entries = postcard::from_bytes(state).map_err(|e| format!("not a map: {e}"))?;
        Ok(())
    }
}
// ANCHOR_END: machine

/// A key-value map replicated in every member of a group: see the [module docs](self).
///
/// ```no_run
/// # async fn run() -> Result<(), horus::Error> {
/// use horus_apps::map::ReplicatedMap;
///
/// let group = horus::Group::builder("config").state_transfer(true).join().await?;
/// let map = ReplicatedMap::start(group);
/// map.put("colour", b"blue".to_vec()).await?;
/// assert_eq!(map.get("colour").await?, Some(b"blue".to_vec()));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ReplicatedMap {
    rsm: Rsm<MapMachine>,
}

impl ReplicatedMap {
    /// Runs a map, empty until state transfer fills it, on `group` (built with
    /// `state_transfer(true)`).
    pub fn start(group: Group) -> Self {
        ReplicatedMap { rsm: Rsm::start(group, MapMachine::default()) }
    }

    /// A map on a replica made by hand (to order writes at the `safe` level, say).
    pub fn start_replica(group: Group, replica: RsmReplica<MapMachine>) -> Self {
        ReplicatedMap { rsm: Rsm::start_replica(group, replica) }
    }

    /// Sets `key` to `value` everywhere; returns the value before.
    ///
    /// # Errors
    /// [`Error::Exited`] if this member left the group first.
    pub async fn put(
        &self,
        key: impl Into<String>,
        value: impl Into<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.rsm.execute(MapCommand::Put { key: key.into(), value: value.into() }).await
    }

    /// Removes `key` everywhere; returns the value before.
    ///
    /// # Errors
    /// [`Error::Exited`] if this member left the group first.
    pub async fn remove(&self, key: impl Into<String>) -> Result<Option<Vec<u8>>, Error> {
        self.rsm.execute(MapCommand::Remove { key: key.into() }).await
    }

    /// Sets `key` to `new` if, in the order, its value is `expect`; returns the value
    /// before, so the swap happened if that equals `expect`.
    ///
    /// # Errors
    /// [`Error::Exited`] if this member left the group first.
    pub async fn compare_and_swap(
        &self,
        key: impl Into<String>,
        expect: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.rsm.execute(MapCommand::CompareAndSwap { key: key.into(), expect, new }).await
    }

    /// The value of `key` in this member's copy.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn get(&self, key: impl Into<String>) -> Result<Option<Vec<u8>>, Error> {
        let key = key.into();
        self.rsm.read(move |m| m.get(&key).cloned()).await
    }

    /// This member's copy, whole.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn entries(&self) -> Result<BTreeMap<String, Vec<u8>>, Error> {
        self.rsm.read(|m| m.entries().clone()).await
    }

    /// Writes applied by this copy and their digest: equal at two members that applied the
    /// same writes in the same order.
    ///
    /// # Errors
    /// [`Error::Exited`] if the member has exited.
    pub async fn digest(&self) -> Result<(u64, u64), Error> {
        self.rsm.inspect(|r| (r.applied(), r.digest())).await
    }

    /// The group the map runs on.
    pub fn group(&self) -> &GroupHandle {
        self.rsm.group()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_apply_and_return_the_value_before() {
        let mut m = MapMachine::default();
        let e = Endpoint::new(1, 0);
        let put = |k: &str, v: &str| MapCommand::Put { key: k.into(), value: v.into() };
        assert_eq!(m.apply(e, put("a", "1")), None);
        assert_eq!(m.apply(e, put("a", "2")), Some(b"1".to_vec()));
        let cas = |expect: Option<&str>, new: Option<&str>| MapCommand::CompareAndSwap {
            key: "a".into(),
            expect: expect.map(Into::into),
            new: new.map(Into::into),
        };
        assert_eq!(m.apply(e, cas(Some("1"), Some("x"))), Some(b"2".to_vec()));
        assert_eq!(m.get("a"), Some(&b"2".to_vec()), "no swap on a stale expectation");
        assert_eq!(m.apply(e, cas(Some("2"), None)), Some(b"2".to_vec()));
        assert_eq!(m.get("a"), None);
        assert_eq!(m.apply(e, MapCommand::Remove { key: "b".into() }), None);
    }

    #[test]
    fn a_map_restores_from_its_snapshot_and_refuses_garbage() {
        let mut m = MapMachine::default();
        let e = Endpoint::new(1, 0);
        for i in 0..50 {
            m.apply(e, MapCommand::Put { key: format!("k{i}"), value: vec![i as u8; i] });
        }
        let mut copy = MapMachine::default();
        copy.restore(&m.snapshot()).unwrap();
        assert_eq!(copy, m);
        assert!(copy.restore(&[0xff, 0xff, 0xff]).is_err());
        assert_eq!(copy, m, "a refused state changes nothing");
    }
}
