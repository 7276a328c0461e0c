//! Coordinator-cohort in the simulator, under every fault, checked by its oracle: every
//! request of a member that survives is answered exactly once, with its worker's result; a
//! result is the same wherever it is seen and no member sees one twice; the work is spread over
//! the members; and coordinators that fail have their requests taken over.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use horus::core::sim::Application;
use horus::core::Time;
use horus::replica::{Observer, SimReplica, Ticket, Workload};
use horus::{Endpoint, View, ViewId};
use horus_apps::cohort::{CohortReplica, CohortRequest, CohortResponse, CohortStats, Done, Worker};
use horus_apps::simtest;

/// Squares a number; the result names who handled it, so the oracle can tell two handlings
/// of one request apart.
struct Handled(Endpoint);

impl Worker for Handled {
    type Request = u64;
    type Reply = (u64, Endpoint);
    fn handle(&mut self, _: Endpoint, x: u64) -> (u64, Endpoint) {
        (x.wrapping_mul(x), self.0)
    }
}

type Replica = CohortReplica<Handled>;

/// A result: the square, and who took it.
type Answer = Done<(u64, Endpoint)>;

/// A member's last view, results digest, counters.
struct Last {
    view: ViewId,
    digest: (u64, u64),
    stats: CohortStats,
}

#[derive(Default)]
struct Oracle {
    asked: BTreeMap<(Endpoint, Ticket), u64>,
    /// Answers, per request.
    answers: BTreeMap<(Endpoint, Ticket), Vec<Answer>>,
    /// Per (requester, id): every result seen, by whom.
    seen: BTreeMap<(Endpoint, u64), BTreeMap<Endpoint, Answer>>,
    last: BTreeMap<Endpoint, Last>,
    stopped: BTreeSet<Endpoint>,
    errors: u64,
}

#[derive(Clone)]
struct Watch(Rc<RefCell<Oracle>>);

impl Observer<Replica> for Watch {
    fn requested(&mut self, _: Time, me: Endpoint, t: Ticket, r: &CohortRequest<u64>) {
        if let CohortRequest::Submit(x) = r {
            self.0.borrow_mut().asked.insert((me, t), *x);
        }
    }
    fn answered(&mut self, _: Time, me: Endpoint, t: Ticket, r: &CohortResponse<(u64, Endpoint)>) {
        let mut o = self.0.borrow_mut();
        match r {
            Ok(Some(done)) => o.answers.entry((me, t)).or_default().push(done.clone()),
            Ok(None) => {} // a step
            Err(_) => o.errors += 1,
        }
    }
    fn after(&mut self, _: Time, me: Endpoint, view: &View, r: &Replica) {
        let mut o = self.0.borrow_mut();
        if let Some(res) = r.last_result() {
            let seen = o.seen.entry((res.requester, res.id)).or_default();
            seen.entry(me).or_insert_with(|| res.done.clone());
        }
        o.last.insert(me, Last { view: view.id, digest: r.digest(), stats: r.stats() });
    }
    fn stopped(&mut self, _: Time, me: Endpoint, _: bool, _: &Replica) {
        self.0.borrow_mut().stopped.insert(me);
    }
}

/// Submits numbers (at most four waiting per member); three turns in ten, and when four
/// wait, steps instead (a paced member handles a request on a step).
fn workload() -> Workload<Replica> {
    let mut n = 0u64;
    Box::new(move |rng, r, me| {
        if r.waiting() >= 4 || rng.chance(0.3) {
            return Some(CohortRequest::Step);
        }
        n += 1;
        Some(CohortRequest::Submit(me.node * 1000 + n))
    })
}

/// Runs `seeds`, with members that handle their requests at once (`eager`) or one per step.
fn run(seeds: std::ops::Range<u64>, eager: bool) {
    let plan = simtest::plan("vsync");
    let (mut requests, mut ended, mut takeovers, mut takeover_seeds) = (0, 0, 0, 0);
    let mut load_by_rank: BTreeMap<u64, u64> = BTreeMap::new();
    let count = seeds.end - seeds.start;
    for seed in seeds {
        let oracle = Rc::new(RefCell::new(Oracle::default()));
        let watch = Watch(oracle.clone());
        let mut apps = |me: Endpoint, _: Time| -> Box<dyn Application> {
            let replica = match eager {
                true => CohortReplica::new(Handled(me)),
                false => CohortReplica::paced(Handled(me)),
            };
            Box::new(SimReplica::new(me, replica, workload(), watch.clone()))
        };
        let config = simtest::faulty(seed, 5, 30);
        simtest::run(&plan, &config, &mut apps).unwrap_or_else(|e| panic!("{e}"));
        let o = oracle.borrow();
        assert_eq!(o.errors, 0, "seed {seed}: requests answered with an error");
        requests += o.asked.len();
        let mut seed_takeovers = 0;
        for (e, last) in &o.last {
            let s = last.stats;
            assert_eq!(s.duplicates, 0, "seed {seed}: {e} saw a result twice");
            assert_eq!(s.malformed + s.bad_states, 0, "seed {seed}: {e}: malformed messages");
            seed_takeovers += s.takeovers;
            *load_by_rank.entry(e.node).or_default() += s.handled;
        }
        takeovers += seed_takeovers;
        takeover_seeds += u64::from(seed_takeovers > 0);
        // One result per request: whoever saw it saw the same, the requester's answer too.
        for ((requester, id), by) in &o.seen {
            let mut results = by.values();
            let first = results.next().expect("seen by someone");
            assert!(
                results.all(|d| d == first),
                "seed {seed}: {requester}'s request {id} has several results: {by:?}"
            );
        }
        for ((me, t), answers) in &o.answers {
            assert_eq!(answers.len(), 1, "seed {seed}: {me}'s {t} answered {answers:?}");
            let x = o.asked[&(*me, *t)];
            assert_eq!(answers[0].reply.0, x.wrapping_mul(x), "seed {seed}: {me}'s {t} wrong");
        }
        // The members alive at the end, in one view; each of them has every request answered.
        let Some(survivors) = simtest::survivors(
            seed,
            o.last.iter().filter(|(e, _)| !o.stopped.contains(e)).map(|(e, l)| (*e, l.view)),
        ) else {
            continue;
        };
        ended += 1;
        // Paced members handle only on their turns, and the turns end before the run: a
        // request may wait in a queue at the end.
        for (me, t) in o.asked.keys() {
            assert!(
                !eager || !survivors.contains(me) || o.answers.contains_key(&(*me, *t)),
                "seed {seed}: the survivor {me}'s request {t} ({}) was never answered",
                o.asked[&(*me, *t)]
            );
        }
        let first = &o.last[&survivors[0]];
        for e in &survivors[1..] {
            assert_eq!(
                o.last[e].digest, first.digest,
                "seed {seed}: {e} saw other results than {}",
                survivors[0]
            );
        }
    }
    let handled: u64 = load_by_rank.values().sum();
    println!(
        "cohort ({}): {count} seeds, {ended} ended with survivors, {requests} requests, \
         {takeovers} taken over in {takeover_seeds} seeds; handled by node: {load_by_rank:?}",
        if eager { "eager" } else { "paced" }
    );
    assert!(requests > 0 && ended > 0, "nothing to check");
    assert!(takeovers > 0, "no coordinator's failure led to a takeover");
    // Spread: every node handled at least a tenth of the requests.
    for (node, n) in &load_by_rank {
        assert!(n * 10 >= handled, "node {node} handled only {n} of {handled}: {load_by_rank:?}");
    }
}

#[test]
fn eager_cohorts_answer_every_request_once_under_every_fault() {
    run(0..200, true);
}

#[test]
fn paced_cohorts_take_over_the_queues_of_failed_coordinators() {
    run(1000..1200, false);
}
