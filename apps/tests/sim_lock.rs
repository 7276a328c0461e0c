//! The lock service in the simulator, under every fault (crashes, restarts, partitions,
//! pauses, leaves, loss), checked by its oracle:
//! 1. safety: within any one view, no two members hold the same lock at the same simulated
//!    time (a member holds a lock from the event that grants it until its user releases it,
//!    or it stops; a holding that goes on in the next view counts in each view);
//! 2. agreement: the lock tables of the members that end in one view are equal, and give
//!    each grant (fencing token) of a lock to the same acquire;
//! 3. fairness: the grants of a lock follow the order of its acquires in the total order;
//! 4. liveness: at the end no lock is held by a departed member or by one that released it,
//!    and every acquire of a survivor was granted, unless it waits behind a holder that never
//!    released (its user had no turn left to).

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use horus::core::sim::Application;
use horus::core::Time;
use horus::replica::{Observer, SimReplica, Ticket, Workload};
use horus::{Endpoint, View, ViewId};
use horus_apps::lock::{Entry, LockReplica, LockRequest, LockResponse, LockTable};
use horus_apps::simtest;

/// The locks the workload contends for.
const LOCKS: [&str; 3] = ["a", "b", "c"];

/// A stretch of time in which `member` held `lock`, all in one view.
#[derive(Debug)]
struct Holding {
    member: Endpoint,
    lock: String,
    view: ViewId,
    from: Time,
    to: Time,
}

/// A member as last seen.
struct Last {
    view: ViewId,
    table: LockTable,
    /// The locks it holds, with the id of the acquire.
    held: BTreeMap<String, u64>,
}

#[derive(Default)]
struct Oracle {
    /// Whether grants have one history (not under the partitionable stack, where each side
    /// of a partition grants on its own, with tokens of its own).
    one_history: bool,
    /// Acquires asked, by member and ticket: the lock.
    acquires: BTreeMap<(Endpoint, Ticket), String>,
    answered: BTreeSet<(Endpoint, Ticket)>,
    granted: u64,
    /// Acquires lost in merges.
    lost: u64,
    /// Holdings under way, by member and lock: the view and since when.
    open: BTreeMap<(Endpoint, String), (ViewId, Time)>,
    holdings: Vec<Holding>,
    /// What each member saw granted, by lock and token: the acquire it was.
    tokens: BTreeMap<Endpoint, BTreeMap<(String, u64), Entry>>,
    last: BTreeMap<Endpoint, Last>,
    stopped: BTreeSet<Endpoint>,
    /// Members that stopped holding a lock (its release is then the view change's job).
    died_holding: u64,
    violations: Vec<String>,
    bad: u64,
}

impl Oracle {
    /// Closes `me`'s holdings that `keep` does not keep, at `now`.
    fn close(&mut self, me: Endpoint, now: Time, keep: impl Fn(&str, ViewId) -> bool) {
        let ended: Vec<(String, ViewId, Time)> = self
            .open
            .iter()
            .filter(|((m, lock), (view, _))| *m == me && !keep(lock, *view))
            .map(|((_, lock), (view, from))| (lock.clone(), *view, *from))
            .collect();
        for (lock, view, from) in ended {
            self.open.remove(&(me, lock.clone()));
            self.holdings.push(Holding { member: me, lock, view, from, to: now });
        }
    }
}

#[derive(Clone)]
struct Watch(Rc<RefCell<Oracle>>);

impl Observer<LockReplica> for Watch {
    fn requested(&mut self, _: Time, me: Endpoint, t: Ticket, r: &LockRequest) {
        if let LockRequest::Acquire { name, .. } = r {
            self.0.borrow_mut().acquires.insert((me, t), name.clone());
        }
    }

    fn answered(&mut self, _: Time, me: Endpoint, t: Ticket, r: &LockResponse) {
        let mut o = self.0.borrow_mut();
        match r {
            LockResponse::Granted(_) => o.granted += 1,
            // Under the partitionable stack, the side merged in loses its queued acquires.
            LockResponse::Failed(why) if why.contains("lost in a merge") => o.lost += 1,
            LockResponse::Failed(why) => o.violations.push(format!("{me} {t}: failed: {why}")),
            LockResponse::Busy(_) | LockResponse::Released(_) => {}
        }
        o.answered.insert((me, t));
    }

    fn after(&mut self, now: Time, me: Endpoint, view: &View, r: &LockReplica) {
        let mut o = self.0.borrow_mut();
        let (malformed, bad_states) = r.malformed();
        o.bad += malformed + bad_states;
        // (1) Holdings, as spans of one view.
        let held = r.held();
        o.close(me, now, |lock, v| v == view.id && held.contains_key(lock));
        for lock in held.keys() {
            o.open.entry((me, lock.clone())).or_insert((view.id, now));
        }
        // (2), (3) The grants this member's table made, and its queues.
        let mut seen = Vec::new();
        for (name, lock) in r.table().locks() {
            if let Some((entry, token)) = lock.holder {
                seen.push(((name.clone(), token), entry));
                if lock.queue.front().is_some_and(|w| w.seq <= entry.seq) {
                    o.violations.push(format!("{me}: {name} granted out of turn: {lock:?}"));
                }
            }
            if lock.queue.iter().zip(lock.queue.iter().skip(1)).any(|(a, b)| a.seq >= b.seq) {
                o.violations.push(format!("{me}: {name}'s queue is out of order: {lock:?}"));
            }
        }
        if !o.one_history {
            seen.clear();
        }
        let tokens = o.tokens.entry(me).or_default();
        let mut clashes = Vec::new();
        for (key, entry) in seen {
            let before = *tokens.entry(key.clone()).or_insert(entry);
            if before != entry {
                clashes.push(format!("{me}: {key:?} given to {before:?}, then to {entry:?}"));
            }
        }
        o.violations.extend(clashes);
        let held = held.iter().map(|(name, h)| (name.clone(), h.id)).collect();
        o.last.insert(me, Last { view: view.id, table: r.table().clone(), held });
    }

    fn stopped(&mut self, now: Time, me: Endpoint, _: bool, r: &LockReplica) {
        let mut o = self.0.borrow_mut();
        o.close(me, now, |_, _| false);
        o.stopped.insert(me);
        if !r.held().is_empty() {
            o.died_holding += 1;
        }
    }
}

/// Each turn: release a lock held, else (sometimes even while waiting for another) acquire
/// one, mostly waiting, sometimes only trying.
fn workload() -> Workload<LockReplica> {
    let mut next_id = 0u64;
    Box::new(move |rng, r: &LockReplica, _| {
        if let Some(name) = r.held().keys().next() {
            return Some(LockRequest::Release { name: name.clone(), id: None });
        }
        if r.waiting(None) && !rng.chance(0.3) {
            return None;
        }
        let name = LOCKS[rng.index(LOCKS.len())];
        if r.waiting(Some(name)) {
            return None;
        }
        next_id += 1;
        Some(LockRequest::Acquire { name: name.into(), id: next_id, wait: !rng.chance(0.15) })
    })
}

/// Totals over the seeds, to show the oracle had something to check.
#[derive(Default, Debug)]
struct Figures {
    seeds: u64,
    with_survivors: u64,
    acquires: usize,
    granted: u64,
    lost_in_merges: u64,
    holdings: usize,
    died_holding: u64,
    left_waiting: usize,
}

fn run(stack: &str, seeds: std::ops::Range<u64>, one_history: bool) -> Figures {
    let plan = simtest::plan(stack);
    let mut fig = Figures::default();
    let only: Option<u64> = std::env::var("SEED").ok().and_then(|s| s.parse().ok());
    for seed in seeds.filter(|s| only.is_none_or(|o| o == *s)) {
        let oracle = Rc::new(RefCell::new(Oracle { one_history, ..Oracle::default() }));
        let watch = Watch(oracle.clone());
        let mut apps = |me: Endpoint, _: Time| -> Box<dyn Application> {
            Box::new(SimReplica::new(me, LockReplica::new(), workload(), watch.clone()))
        };
        let config = simtest::faulty(seed, 5, 20);
        simtest::run(&plan, &config, &mut apps).unwrap_or_else(|e| panic!("{e}"));
        let mut o = oracle.borrow_mut();
        let open: Vec<Endpoint> = o.open.keys().map(|(m, _)| *m).collect();
        for m in open {
            o.close(m, Time::MAX, |_, _| false);
        }
        assert_eq!(o.bad, 0, "seed {seed}: malformed commands or states");
        assert!(o.violations.is_empty(), "seed {seed}: {:#?}", o.violations);
        fig.seeds += 1;
        fig.acquires += o.acquires.len();
        fig.granted += o.granted;
        fig.lost_in_merges += o.lost;
        fig.holdings += o.holdings.len();
        fig.died_holding += o.died_holding;

        // (1) No two members hold a lock at once in one view.
        for (i, a) in o.holdings.iter().enumerate() {
            for b in &o.holdings[i + 1..] {
                let overlap = a.from < b.to && b.from < a.to;
                assert!(
                    !(a.lock == b.lock && a.view == b.view && a.member != b.member && overlap),
                    "seed {seed}: two holders of `{}` in view {}: {a:?} and {b:?}",
                    a.lock,
                    a.view
                );
            }
        }

        // Under the primary-partition policy the group may end with nobody.
        let Some(survivors) = simtest::survivors(
            seed,
            o.last.iter().filter(|(e, _)| !o.stopped.contains(e)).map(|(e, l)| (*e, l.view)),
        ) else {
            continue;
        };
        fig.with_survivors += 1;

        // (2) Equal tables, and one history of grants.
        let table = &o.last[&survivors[0]].table;
        for e in &survivors[1..] {
            assert_eq!(
                &o.last[e].table, table,
                "seed {seed}: {e}'s table differs from {}'s",
                survivors[0]
            );
        }
        let mut grants: BTreeMap<(String, u64), Entry> = BTreeMap::new();
        for e in &survivors {
            for (key, entry) in &o.tokens[e] {
                let first = *grants.entry(key.clone()).or_insert(*entry);
                assert_eq!(first, *entry, "seed {seed}: grant {key:?} differs at {e}");
            }
        }
        // (3) Grants in the order of the acquires.
        for name in LOCKS {
            let seqs: Vec<u64> =
                grants.iter().filter(|((n, _), _)| n == name).map(|(_, e)| e.seq).collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "seed {seed}: `{name}` granted out of the order of its acquires: {seqs:?}"
            );
        }

        // (4) Liveness.
        for (name, lock) in table.locks() {
            let Some((holder, _)) = lock.holder else {
                assert!(
                    lock.queue.is_empty(),
                    "seed {seed}: `{name}` is free with waiters: {lock:?}"
                );
                continue;
            };
            assert!(
                survivors.contains(&holder.member),
                "seed {seed}: `{name}` is held by {}, who is gone",
                holder.member
            );
            assert_eq!(
                o.last[&holder.member].held.get(name),
                Some(&holder.id),
                "seed {seed}: `{name}` is still held by {}, who released it",
                holder.member
            );
        }
        for ((member, ticket), name) in &o.acquires {
            if !survivors.contains(member) || o.answered.contains(&(*member, *ticket)) {
                continue;
            }
            let lock = &table.locks()[name];
            assert!(
                lock.queue.iter().any(|w| w.member == *member),
                "seed {seed}: {member}'s acquire {ticket} of `{name}` is neither granted nor queued"
            );
            fig.left_waiting += 1;
        }
    }
    assert!(fig.granted > 0 && fig.died_holding > 0, "the runs checked little: {fig:?}");
    assert!(fig.with_survivors > 0, "no run ended with survivors to compare");
    println!("{stack}: {fig:?}");
    fig
}

#[test]
fn lock_holders_never_overlap_in_a_view_and_grants_are_fair_and_live() {
    run("vsync", 0..600, true);
}

#[test]
fn partitionable_lock_service_keeps_one_holder_per_view_across_merges() {
    run("evs", 5000..5400, false);
}
