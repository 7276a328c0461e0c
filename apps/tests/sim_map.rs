//! The replicated map in the simulator, under every fault, checked by its oracle: the copies
//! of the members that end in one view are equal (same writes, same order, same map), and no
//! answered write is lost.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use horus::core::sim::Application;
use horus::core::Time;
use horus::replica::{Observer, SimReplica, Ticket, Workload};
use horus::{Endpoint, Level, View, ViewId};
use horus_apps::map::{MapCommand, MapMachine};
use horus_apps::rsm::{RsmReplica, RsmRequest, StateMachine};
use horus_apps::simtest;

/// The map, with the log of the values it applied, so the oracle can tell an answered write
/// from a lost one even after it was overwritten.
#[derive(Default)]
struct Logged {
    map: MapMachine,
    log: Vec<Vec<u8>>,
}

impl StateMachine for Logged {
    type Command = MapCommand;
    type Reply = Option<Vec<u8>>;
    fn apply(&mut self, origin: Endpoint, command: MapCommand) -> Self::Reply {
        if let MapCommand::Put { value, .. } = &command {
            self.log.push(value.clone());
        }
        self.map.apply(origin, command)
    }
    fn snapshot(&self) -> Vec<u8> {
        let map = self.map.snapshot();
        let mut s = (map.len() as u64).to_le_bytes().to_vec();
        s.extend_from_slice(&map);
        s.extend_from_slice(&postcard::to_allocvec(&self.log).unwrap());
        s
    }
    fn restore(&mut self, state: &[u8]) -> Result<(), String> {
        let len = u64::from_le_bytes(state.get(..8).ok_or("short")?.try_into().unwrap()) as usize;
        let map = state.get(8..8 + len).ok_or("short")?;
        self.log = postcard::from_bytes(&state[8 + len..]).map_err(|e| e.to_string())?;
        self.map.restore(map)
    }
}

type Replica = RsmReplica<Logged>;

/// A member's last view, commands applied, digest, map and log.
struct Last {
    view: ViewId,
    applied: u64,
    digest: u64,
    map: BTreeMap<String, Vec<u8>>,
    log: Vec<Vec<u8>>,
}

/// What the oracle gathers from every member.
#[derive(Default)]
struct Oracle {
    puts: BTreeMap<(Endpoint, Ticket), Vec<u8>>,
    /// Answered puts, by the member that asked.
    answered: Vec<(Endpoint, Vec<u8>)>,
    /// Each member's last view, commands applied, digest, map and log.
    last: BTreeMap<Endpoint, Last>,
    stopped: BTreeSet<Endpoint>,
    bad: u64,
}

// ANCHOR: observer
#[derive(Clone)]
struct Watch(Rc<RefCell<Oracle>>);

impl Observer<Replica> for Watch {
    fn requested(&mut self, _: Time, me: Endpoint, t: Ticket, r: &RsmRequest<MapCommand>) {
        let RsmRequest::Execute(MapCommand::Put { value, .. }) = r else { return };
        self.0.borrow_mut().puts.insert((me, t), value.clone());
    }
    fn answered(
        &mut self,
        _: Time,
        me: Endpoint,
        t: Ticket,
        reply: &Result<Option<Vec<u8>>, String>,
    ) {
        let mut o = self.0.borrow_mut();
        if reply.is_err() {
            o.bad += 1;
        }
        if let Some(v) = o.puts.get(&(me, t)).cloned() {
            o.answered.push((me, v));
        }
    }
    fn after(&mut self, _: Time, me: Endpoint, view: &View, r: &Replica) {
        let m = r.machine();
        let (malformed, bad_states) = r.malformed();
        let mut o = self.0.borrow_mut();
        o.bad += malformed + bad_states;
        o.last.insert(
            me,
            Last {
                view: view.id,
                applied: r.applied(),
                digest: r.digest(),
                map: m.map.entries().clone(),
                log: m.log.clone(),
            },
        );
    }
    fn stopped(&mut self, _: Time, me: Endpoint, _: bool, _: &Replica) {
        self.0.borrow_mut().stopped.insert(me);
    }
}
// ANCHOR_END: observer

// ANCHOR: workload
/// Puts (mostly), removes and compare-and-swaps on eight keys; values name their writer.
fn workload() -> Workload<Replica> {
    let mut n = 0u64;
    Box::new(move |rng, _, me| {
        n += 1;
        let key = format!("k{}", rng.index(8));
        let command = match rng.index(10) {
            0 => MapCommand::Remove { key },
            1 => MapCommand::CompareAndSwap { key, expect: None, new: Some(b"fresh".to_vec()) },
            _ => MapCommand::Put { key, value: format!("{me}/{n}").into_bytes() },
        };
        Some(RsmRequest::Execute(command))
    })
}
// ANCHOR_END: workload

/// Which answered writes must be in the survivors' map at the end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// Every one (the `safe` level).
    All,
    /// Those of writers that live to the end (the `total` level).
    Survivors,
    /// None need be: with `evs`, the writes a side made apart are dropped when it is merged.
    None,
}

/// Runs `seeds` of `stack` with the map ordered at `level`, checking `kept`.
fn run(stack: &str, level: Level, seeds: std::ops::Range<u64>, kept_rule: Kept) {
    let plan = simtest::plan(stack);
    let (mut requests, mut ended) = (0, 0);
    for seed in seeds {
        // ANCHOR: run
        let oracle = Rc::new(RefCell::new(Oracle::default()));
        let watch = Watch(oracle.clone());
        let mut apps = |me: Endpoint, _: Time| -> Box<dyn Application> {
            let replica = RsmReplica::with_level(Logged::default(), level);
            Box::new(SimReplica::new(me, replica, workload(), watch.clone()))
        };
        let config = simtest::faulty(seed, 5, 20);
        simtest::run(&plan, &config, &mut apps).unwrap_or_else(|e| panic!("{e}"));
        // ANCHOR_END: run
        let o = oracle.borrow();
        assert_eq!(o.bad, 0, "seed {seed}: malformed commands or states");
        requests += o.puts.len();
        // The members alive at the end, by the view they are in.
        // Under the primary-partition policy the group may end with nobody: when a majority
        // of a view is gone at once, the rest stop rather than go on as a minority.
        let Some(survivors) = simtest::survivors(
            seed,
            o.last.iter().filter(|(e, _)| !o.stopped.contains(e)).map(|(e, l)| (*e, l.view)),
        ) else {
            continue;
        };
        ended += 1;
        let first = &o.last[&survivors[0]];
        for e in &survivors[1..] {
            let other = &o.last[e];
            assert_eq!(
                (other.applied, other.digest),
                (first.applied, first.digest),
                "seed {seed}: {e} applied other writes than {}",
                survivors[0]
            );
            assert_eq!(
                other.map, first.map,
                "seed {seed}: {e}'s map differs from {}'s",
                survivors[0]
            );
        }
        let kept: BTreeSet<&Vec<u8>> = first.log.iter().collect();
        for (writer, value) in &o.answered {
            let must = match kept_rule {
                Kept::All => true,
                Kept::Survivors => !o.stopped.contains(writer),
                Kept::None => false,
            };
            assert!(
                !must || kept.contains(value),
                "seed {seed}: {writer}'s answered write {} was lost",
                String::from_utf8_lossy(value)
            );
        }
    }
    assert!(requests > 0, "the workload made no request");
    assert!(ended > 0, "no run ended with survivors to compare");
}

#[test]
fn total_order_map_replicas_agree_under_every_fault() {
    run("vsync", Level::Total, 0..150, Kept::Survivors);
}

#[test]
fn safe_order_map_keeps_every_answered_write() {
    run("vsync", Level::Safe, 1000..1150, Kept::All);
}

/// With the partitionable stack both sides of a partition write; after the merge every
/// member holds the map of the side that asked to merge, so the copies are equal again.
#[test]
fn partitionable_map_replicas_agree_after_merges() {
    run("evs", Level::Total, 2000..2150, Kept::None);
}
