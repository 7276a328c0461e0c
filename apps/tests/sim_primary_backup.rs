//! Primary-backup in the simulator, under every fault, checked by its oracle: no acknowledged
//! update is lost (it is in the final state of every survivor, even when its requester and the
//! primary crashed), none is applied twice, the survivors' states are equal, each view has at
//! most one primary, its first member, and every request of a member that survives is
//! answered.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use horus::core::sim::Application;
use horus::core::Time;
use horus::replica::{Observer, SimReplica, Ticket, Workload};
use horus::{Endpoint, View, ViewId};
use horus_apps::primary_backup::{Journal, PbReplica, PbStats};
use horus_apps::simtest;

type Replica = PbReplica<Journal>;

/// A member's last view and state.
struct Last {
    view: ViewId,
    applied: u64,
    digest: u64,
    journal: Vec<String>,
    stats: PbStats,
}

/// What the oracle gathers from every member.
#[derive(Default)]
struct Oracle {
    asked: BTreeMap<(Endpoint, Ticket), String>,
    /// Acknowledged appends: the entry and the index it was acknowledged with.
    acked: Vec<(String, u64)>,
    answered: BTreeSet<(Endpoint, Ticket)>,
    last: BTreeMap<Endpoint, Last>,
    stopped: BTreeSet<Endpoint>,
    /// The members of every view seen.
    views: BTreeMap<ViewId, Vec<Endpoint>>,
    /// Per view: the members that cast updates in it.
    primaries: BTreeMap<ViewId, BTreeSet<Endpoint>>,
    /// The first entry seen applied twice, and where.
    doubled: Vec<String>,
    bad: u64,
}

#[derive(Clone)]
struct Watch(Rc<RefCell<Oracle>>);

impl Observer<Replica> for Watch {
    fn requested(&mut self, _: Time, me: Endpoint, t: Ticket, entry: &String) {
        self.0.borrow_mut().asked.insert((me, t), entry.clone());
    }
    fn answered(&mut self, _: Time, me: Endpoint, t: Ticket, reply: &Result<u64, String>) {
        let mut o = self.0.borrow_mut();
        assert!(o.answered.insert((me, t)), "{me}'s {t} answered twice");
        match reply {
            Ok(at) => {
                let entry = o.asked[&(me, t)].clone();
                o.acked.push((entry, *at));
            }
            Err(_) => o.bad += 1,
        }
    }
    fn after(&mut self, _: Time, me: Endpoint, view: &View, r: &Replica) {
        let mut o = self.0.borrow_mut();
        o.views.entry(view.id).or_insert_with(|| view.members.clone());
        if let Some(u) = r.last_update() {
            o.primaries.entry(u.view).or_default().insert(u.primary);
        }
        let journal = r.service().entries();
        // Copied only when it changed: a digest changes with every update and every restore.
        let changed = o
            .last
            .get(&me)
            .is_none_or(|l| l.digest != r.digest() || l.journal.len() != journal.len());
        if changed && o.doubled.is_empty() {
            let mut distinct = BTreeSet::new();
            if let Some(twice) = journal.iter().find(|e| !distinct.insert(*e)) {
                o.doubled.push(format!("{me} applied {twice} twice"));
            }
        }
        let last = Last {
            view: view.id,
            applied: r.applied(),
            digest: r.digest(),
            journal: if changed { journal.to_vec() } else { o.last[&me].journal.clone() },
            stats: r.stats(),
        };
        o.last.insert(me, last);
    }
    fn stopped(&mut self, _: Time, me: Endpoint, _: bool, _: &Replica) {
        self.0.borrow_mut().stopped.insert(me);
    }
}

/// Appends entries that name their writer; at most three waiting per member.
fn workload() -> Workload<Replica> {
    let mut n = 0u64;
    Box::new(move |_, r, me| {
        if r.waiting() >= 3 {
            return None;
        }
        n += 1;
        Some(format!("{me}/{n}"))
    })
}

#[test]
fn no_acknowledged_update_is_lost_or_applied_twice_under_every_fault() {
    let plan = simtest::plan("vsync");
    let (mut acked, mut ended, mut takeovers) = (0, 0, 0);
    let (mut resent, mut cast, mut duplicates) = (0, 0, 0);
    let seeds = 0..500;
    for seed in seeds.clone() {
        let oracle = Rc::new(RefCell::new(Oracle::default()));
        let watch = Watch(oracle.clone());
        let mut apps = |me: Endpoint, _: Time| -> Box<dyn Application> {
            Box::new(SimReplica::new(
                me,
                PbReplica::new(Journal::default()),
                workload(),
                watch.clone(),
            ))
        };
        let config = simtest::faulty(seed, 5, 20);
        simtest::run(&plan, &config, &mut apps).unwrap_or_else(|e| panic!("{e}"));
        let o = oracle.borrow();
        for last in o.last.values() {
            let s = last.stats;
            assert_eq!(s.malformed + s.bad_states, 0, "seed {seed}: malformed messages or states");
            (resent, cast, duplicates) =
                (resent + s.resent, cast + s.cast, duplicates + s.duplicates);
        }
        assert_eq!(o.bad, 0, "seed {seed}: malformed messages, states or failed requests");
        assert!(o.doubled.is_empty(), "seed {seed}: {}", o.doubled.join("; "));
        for (view, primaries) in &o.primaries {
            assert!(primaries.len() <= 1, "seed {seed}: view {view} had primaries {primaries:?}");
            let first = o.views.get(view).and_then(|m| m.first());
            assert!(
                first.is_none() || primaries.iter().next() == first,
                "seed {seed}: {primaries:?} cast updates in {view}, whose first member is {first:?}"
            );
        }
        let primaries: BTreeSet<&Endpoint> = o.primaries.values().flatten().collect();
        takeovers += primaries.len().saturating_sub(1);
        acked += o.acked.len();
        // Under the primary-partition policy the group may end with nobody.
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
                (other.applied, other.digest, &other.journal),
                (first.applied, first.digest, &first.journal),
                "seed {seed}: {e}'s state differs from {}'s",
                survivors[0]
            );
        }
        // A requester that lives sends its request again until a primary applies it.
        for (me, t) in o.asked.keys() {
            assert!(
                !survivors.contains(me) || o.answered.contains(&(*me, *t)),
                "seed {seed}: the survivor {me}'s request {t} was never answered"
            );
        }
        for (entry, at) in &o.acked {
            assert_eq!(
                first.journal.get(*at as usize),
                Some(entry),
                "seed {seed}: the acknowledged {entry} (at {at}) is not in the survivors' journal"
            );
        }
    }
    println!(
        "primary-backup: {} seeds, {ended} ended with survivors, {acked} acknowledged appends, \
         {takeovers} primaries beyond the first; {cast} updates cast, {resent} requests \
         re-sent at view changes, {duplicates} duplicates dropped",
        seeds.end - seeds.start
    );
    assert!(acked > 0, "the workload acknowledged nothing");
    assert!(ended > 0, "no run ended with survivors to compare");
    assert!(takeovers > 0, "no primary ever failed over");
}
