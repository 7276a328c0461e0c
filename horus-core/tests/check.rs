//! The history checker on handmade histories: clean runs pass, and each property has a history
//! that breaks it and nothing else.

use std::collections::BTreeSet;
use std::time::Duration;

use horus_core::check::{check, Property, Report, MAX_PER_PROPERTY};
use horus_core::history::{Event, History, Liveness, Membership, MsgId, Promises};
use horus_core::{Endpoint, Level, Time, View, ViewId};
use quickcheck::{Arbitrary, Gen, QuickCheck};

fn p(n: u64) -> Endpoint {
    Endpoint::new(n, 0)
}

fn id(sender: Endpoint, seq: u64) -> MsgId {
    MsgId { sender, seq }
}

/// A view at `ltime`, coordinated by the first of `members`, made from `prev`.
fn view(ltime: u64, members: &[Endpoint], prev: &[&View]) -> View {
    View {
        id: ViewId::new(ltime, members[0]),
        members: members.to_vec(),
        prev: prev.iter().map(|v| v.id).collect(),
    }
}

/// Builds a history one event at a time, a millisecond apart.
#[derive(Default)]
struct H {
    history: History,
    now: u64,
}

impl H {
    fn new() -> Self {
        H::default()
    }

    fn record(mut self, who: Endpoint, ev: Event) -> Self {
        self.now += 1_000_000;
        self.history.record(Time(self.now), who, ev);
        self
    }

    fn view(self, who: Endpoint, v: &View) -> Self {
        self.record(who, Event::View { view: v.clone(), digest: None })
    }

    /// `who` installs `v`, its state digest being `digest`.
    fn view_with(self, who: Endpoint, v: &View, digest: u64) -> Self {
        self.record(who, Event::View { view: v.clone(), digest: Some(digest) })
    }

    fn snapshot(self, who: Endpoint, v: &View, digest: u64) -> Self {
        self.record(who, Event::Snapshot { view: v.id, digest })
    }

    fn state(self, who: Endpoint, v: &View, digest: u64) -> Self {
        self.record(who, Event::State { view: v.id, digest })
    }

    /// Every one of `who` installs `v`.
    fn install(mut self, who: &[Endpoint], v: &View) -> Self {
        for &w in who {
            self = self.view(w, v);
        }
        self
    }

    fn cast(self, who: Endpoint, seq: u64, level: Level) -> Self {
        self.record(who, Event::Cast { id: id(who, seq), level })
    }

    fn deliver(self, who: Endpoint, sender: Endpoint, seq: u64, level: Level) -> Self {
        self.record(who, Event::Deliver { id: id(sender, seq), from: sender, level })
    }

    /// Every one of `who` delivers `sender:seq`.
    fn deliver_all(mut self, who: &[Endpoint], sender: Endpoint, seq: u64, level: Level) -> Self {
        for &w in who {
            self = self.deliver(w, sender, seq, level);
        }
        self
    }

    /// `sender` casts `seq` and every one of `who` delivers it.
    fn multicast(self, sender: Endpoint, seq: u64, level: Level, who: &[Endpoint]) -> Self {
        self.cast(sender, seq, level).deliver_all(who, sender, seq, level)
    }

    fn crash(self, who: Endpoint) -> Self {
        self.record(who, Event::Crash)
    }

    fn exit(self, who: Endpoint) -> Self {
        self.record(who, Event::Exit)
    }

    fn now(&self) -> Time {
        Time(self.now)
    }

    fn build(self) -> History {
        self.history
    }
}

fn plain() -> Promises {
    Promises::default()
}

fn promises(membership: Membership, after: Time, bound: Option<Duration>) -> Promises {
    Promises { membership, liveness: Some(Liveness { after, bound }), state_transfer: false }
}

/// Asserts that `property`, and only it, is violated; returns its violations.
fn only(report: &Report, property: Property) -> Vec<horus_core::Violation> {
    assert_eq!(report.properties(), BTreeSet::from([property]), "report:\n{report}");
    report.of(property).cloned().collect()
}

fn assert_ok(report: &Report) {
    assert!(report.is_ok(), "expected no violations, got:\n{report}");
}

// ---- clean runs --------------------------------------------------------------------------

#[test]
fn clean_primary_run_with_a_crash_between_two_views_has_no_violations() {
    let (a, b, c) = (p(0), p(1), p(2));
    let v0 = view(0, &[a, b, c], &[]);
    let v1 = view(1, &[a, b], &[&v0]);
    let all = [a, b, c];
    let h = H::new()
        .install(&all, &v0)
        .multicast(a, 1, Level::Fifo, &all)
        // b casts after delivering a:1, so a:1 happens before b:1.
        .multicast(b, 1, Level::Causal, &all)
        .multicast(c, 1, Level::Total, &all)
        .multicast(a, 2, Level::Safe, &all)
        .crash(c);
    let after = h.now();
    let h = h
        .install(&[a, b], &v1)
        .multicast(a, 3, Level::Total, &[a, b])
        .multicast(b, 2, Level::Safe, &[a, b])
        .multicast(b, 3, Level::Causal, &[b, a]);
    let history = h.build();
    let report =
        check(&history, &promises(Membership::Primary, after, Some(Duration::from_secs(1))));
    assert_ok(&report);
    assert_eq!(report.stats.processes, 3);
    assert_eq!(report.stats.views, 2);
    assert_eq!(report.stats.casts, 7);
    assert_eq!(report.stats.deliveries, 4 * 3 + 3 * 2);
}

#[test]
fn clean_partition_and_merge_has_no_violations() {
    let (a, b, c, d) = (p(0), p(1), p(2), p(3));
    let v0 = view(0, &[a, b, c, d], &[]);
    let left = view(1, &[a, b], &[&v0]);
    let right = view(1, &[c, d], &[&v0]);
    let merged = view(2, &[a, b, c, d], &[&left, &right]);
    let all = [a, b, c, d];
    let h = H::new()
        .install(&all, &v0)
        .multicast(a, 1, Level::Total, &all)
        .install(&[a, b], &left)
        .install(&[c, d], &right)
        // Each side goes on in its own view, with its own total order.
        .multicast(a, 2, Level::Total, &[a, b])
        .multicast(c, 1, Level::Total, &[c, d])
        .multicast(d, 1, Level::Safe, &[d, c])
        .install(&all, &merged)
        .multicast(b, 1, Level::Causal, &all)
        .multicast(d, 2, Level::Total, &all);
    let history = h.build();
    let report = check(&history, &promises(Membership::Partitionable, Time::ZERO, None));
    assert_ok(&report);
    // The same run breaks the primary component promise: two views share ltime 1.
    let primary = check(&history, &promises(Membership::Primary, Time::ZERO, None));
    only(&primary, Property::PrimaryComponent);
}

#[test]
fn empty_history_is_ok() {
    assert_ok(&check(&History::new(), &promises(Membership::Primary, Time::ZERO, None)));
}

// ---- one property at a time --------------------------------------------------------------

#[test]
fn view_without_its_installer_breaks_self_inclusion() {
    let v0 = view(0, &[p(0), p(1)], &[]);
    let h = H::new().install(&[p(0), p(1), p(2)], &v0).build();
    let vs = only(&check(&h, &plain()), Property::SelfInclusion);
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0].processes, [p(2)]);
    assert_eq!(vs[0].views, [v0.id]);
}

#[test]
fn view_ids_that_do_not_increase_break_local_monotonicity() {
    let v0 = view(0, &[p(0)], &[]);
    let v1 = view(1, &[p(0)], &[&v0]);
    let h = H::new().view(p(0), &v1).view(p(0), &v0).view(p(0), &v0).build();
    let vs = only(&check(&h, &plain()), Property::LocalMonotonicity);
    assert_eq!(vs.len(), 2, "going back and installing the same id again");
    assert_eq!(vs[0].views, [v1.id, v0.id]);
    assert_eq!(vs[1].views, [v0.id, v0.id]);
}

#[test]
fn delivery_of_a_message_never_cast_breaks_delivery_integrity() {
    let v0 = view(0, &[p(0), p(1)], &[]);
    let h = H::new().install(&[p(0), p(1)], &v0).deliver(p(1), p(0), 7, Level::Fifo).build();
    let vs = only(&check(&h, &plain()), Property::DeliveryIntegrity);
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0].processes[0], p(1));
    assert_eq!(vs[0].messages, [id(p(0), 7)]);
}

#[test]
fn delivery_with_a_wrong_sender_or_level_breaks_delivery_integrity() {
    let (a, b) = (p(0), p(1));
    let v0 = view(0, &[a, b], &[]);
    let h = H::new()
        .install(&[a, b], &v0)
        .cast(a, 1, Level::Total)
        .deliver(a, a, 1, Level::Total)
        .record(b, Event::Deliver { id: id(a, 1), from: b, level: Level::Fifo })
        .build();
    let vs = only(&check(&h, &plain()), Property::DeliveryIntegrity);
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0].messages, [id(a, 1)]);
    assert!(vs[0].detail.contains("as from p1.0"), "{}", vs[0]);
    assert!(vs[0].detail.contains("at level fifo"), "{}", vs[0]);
}

#[test]
fn delivery_before_its_own_cast_breaks_delivery_integrity() {
    let a = p(0);
    let v0 = view(0, &[a], &[]);
    let h = H::new().view(a, &v0).deliver(a, a, 1, Level::Causal).cast(a, 1, Level::Causal).build();
    let vs = only(&check(&h, &plain()), Property::DeliveryIntegrity);
    assert!(vs[0].detail.contains("before it was cast"), "{}", vs[0]);
}

#[test]
fn message_delivered_twice_breaks_no_duplication() {
    let (a, b) = (p(0), p(1));
    let v0 = view(0, &[a, b], &[]);
    let h = H::new()
        .install(&[a, b], &v0)
        .multicast(a, 1, Level::Total, &[a, b])
        .multicast(a, 2, Level::Total, &[a, b])
        .deliver(b, a, 1, Level::Total)
        .build();
    let vs = only(&check(&h, &plain()), Property::NoDuplication);
    assert_eq!(vs.len(), 1);
    assert_eq!((vs[0].processes.clone(), vs[0].messages.clone()), (vec![b], vec![id(a, 1)]));
}

#[test]
fn delivery_outside_the_sending_view_is_reported() {
    let (a, b, c) = (p(0), p(1), p(2));
    let v0 = view(0, &[a, b], &[]);
    let alone = view(0, &[c], &[]);
    let h = H::new()
        .install(&[a, b], &v0)
        .view(c, &alone)
        .multicast(a, 1, Level::Fifo, &[a, b, c])
        .build();
    let vs = only(&check(&h, &plain()), Property::SendingViewDelivery);
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0].processes[0], c);
    assert_eq!(vs[0].messages, [id(a, 1)]);
    assert_eq!(vs[0].views, [v0.id, alone.id]);
}

#[test]
fn delivery_of_a_cast_made_before_any_view_is_reported() {
    let (a, b) = (p(0), p(1));
    let v0 = view(0, &[a, b], &[]);
    let h = H::new()
        .cast(a, 1, Level::Fifo)
        .install(&[a, b], &v0)
        .deliver_all(&[a, b], a, 1, Level::Fifo)
        .build();
    let vs = only(&check(&h, &plain()), Property::SendingViewDelivery);
    assert_eq!(vs.len(), 2);
}

#[test]
fn members_moving_together_with_different_deliveries_break_virtual_synchrony() {
    let (a, b, c) = (p(0), p(1), p(2));
    let v0 = view(0, &[a, b, c], &[]);
    let v1 = view(1, &[a, b, c], &[&v0]);
    let h = H::new()
        .install(&[a, b, c], &v0)
        .multicast(a, 1, Level::Fifo, &[a, b])
        .install(&[a, b, c], &v1)
        .build();
    let vs = only(&check(&h, &plain()), Property::VirtualSynchrony);
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0].processes, [c, a, b]);
    assert_eq!(vs[0].messages, [id(a, 1)]);
    assert_eq!(vs[0].views, [v0.id, v1.id]);
}

#[test]
fn sender_that_moves_on_without_its_own_message_breaks_self_delivery() {
    let (a, b) = (p(0), p(1));
    let v0 = view(0, &[a, b], &[]);
    let v1 = view(1, &[a, b], &[&v0]);
    let h = H::new().install(&[a, b], &v0).cast(a, 1, Level::Fifo).install(&[a, b], &v1).build();
    let vs = only(&check(&h, &plain()), Property::SelfDelivery);
    assert_eq!((vs[0].processes.clone(), vs[0].messages.clone()), (vec![a], vec![id(a, 1)]));
}

#[test]
fn live_sender_that_never_delivers_its_own_message_breaks_self_delivery() {
    let a = p(0);
    let v0 = view(0, &[a], &[]);
    let h = H::new().view(a, &v0).cast(a, 1, Level::Fifo).build();
    only(&check(&h, &plain()), Property::SelfDelivery);
    // A sender that crashes in the view owes nothing.
    let h = H::new().view(a, &v0).cast(a, 1, Level::Fifo).crash(a).build();
    assert_ok(&check(&h, &plain()));
}

#[test]
fn fifo_inversion_is_reported_as_fifo_only() {
    let (a, b, c) = (p(0), p(1), p(2));
    let all = [a, b, c];
    let v0 = view(0, &all, &[]);
    let mut h = H::new().install(&all, &v0);
    for seq in 1..=5 {
        h = h.cast(b, seq, Level::Fifo).deliver_all(&[a, b], b, seq, Level::Fifo);
    }
    for seq in [1, 2, 3, 5, 4] {
        h = h.deliver(c, b, seq, Level::Fifo);
    }
    let vs = only(&check(&h.build(), &plain()), Property::Fifo);
    assert_eq!(vs.len(), 1);
    assert_eq!(
        vs[0].to_string(),
        "fifo: p2.0 delivered p1.0:5 before p1.0:4 (both sent in v0@p0.0)"
    );
    assert_eq!(vs[0].messages, [id(b, 4), id(b, 5)]);
}

#[test]
fn fifo_gap_is_reported_even_at_the_causal_level() {
    let (a, b) = (p(0), p(1));
    let v0 = view(0, &[a, b], &[]);
    let h = H::new()
        .install(&[a, b], &v0)
        .multicast(a, 1, Level::Causal, &[a])
        .multicast(a, 2, Level::Causal, &[a, b])
        .crash(b)
        .build();
    let vs = only(&check(&h, &plain()), Property::Fifo);
    assert!(vs[0].detail.contains("but never p0.0:1"), "{}", vs[0]);
}

#[test]
fn causal_violation_is_reported_as_causal_only() {
    let (a, b, c) = (p(0), p(1), p(2));
    let all = [a, b, c];
    let v0 = view(0, &all, &[]);
    let h = H::new()
        .install(&all, &v0)
        .cast(a, 1, Level::Causal)
        .deliver_all(&[a, b], a, 1, Level::Causal)
        // b casts after delivering a:1, so a:1 happens before b:1; c delivers b:1 first.
        .multicast(b, 1, Level::Causal, &[a, b, c])
        .deliver(c, a, 1, Level::Causal)
        .build();
    let vs = only(&check(&h, &plain()), Property::Causal);
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0].processes[0], c);
    assert_eq!(vs[0].messages, [id(a, 1), id(b, 1)]);
    // At the FIFO level the same order is allowed.
    let fifo = H::new()
        .install(&all, &v0)
        .cast(a, 1, Level::Causal)
        .deliver_all(&[a, b], a, 1, Level::Causal)
        .multicast(b, 1, Level::Fifo, &[a, b, c])
        .deliver(c, a, 1, Level::Causal)
        .build();
    assert_ok(&check(&fifo, &plain()));
}

#[test]
fn causality_through_a_chain_of_processes_is_checked() {
    let (a, b, c, d) = (p(0), p(1), p(2), p(3));
    let all = [a, b, c, d];
    let v0 = view(0, &all, &[]);
    let h = H::new()
        .install(&all, &v0)
        .multicast(a, 1, Level::Causal, &[a, b, c])
        .multicast(b, 1, Level::Causal, &[a, b, c])
        // a:1 → b:1 → c:1; d sees c:1 first.
        .multicast(c, 1, Level::Causal, &all)
        .deliver(d, a, 1, Level::Causal)
        .deliver(d, b, 1, Level::Causal)
        .build();
    let vs = only(&check(&h, &plain()), Property::Causal);
    let missed: BTreeSet<MsgId> = vs.iter().map(|v| v.messages[0]).collect();
    assert_eq!(missed, BTreeSet::from([id(a, 1), id(b, 1)]));
    assert!(vs.iter().all(|v| v.processes[0] == d && v.messages[1] == id(c, 1)));
}

#[test]
fn a_fifo_cast_carries_no_causality_from_its_sender() {
    let (a, b, c, d) = (p(0), p(1), p(2), p(3));
    let all = [a, b, c, d];
    let v0 = view(0, &all, &[]);
    // a:1 → (b delivers it) → b:1 fifo → (c delivers it, before a:1) → c:1 causal. d delivers
    // c:1 before a:1: c:1 follows b:1, not a:1, which c never had.
    let h = H::new()
        .install(&all, &v0)
        .cast(a, 1, Level::Causal)
        .deliver_all(&[a, b], a, 1, Level::Causal)
        .multicast(b, 1, Level::Fifo, &all)
        .multicast(c, 1, Level::Causal, &[c, d])
        .deliver_all(&[c, d], a, 1, Level::Causal)
        .deliver(b, c, 1, Level::Causal)
        .deliver(a, c, 1, Level::Causal)
        .build();
    assert_ok(&check(&h, &plain()));
    // Had b:1 been causal, c:1 would follow a:1 through it.
    let h = H::new()
        .install(&all, &v0)
        .cast(a, 1, Level::Causal)
        .deliver_all(&[a, b, c], a, 1, Level::Causal)
        .multicast(b, 1, Level::Causal, &[a, b, c])
        .multicast(c, 1, Level::Causal, &[c, d])
        .deliver(d, a, 1, Level::Causal)
        .deliver(d, b, 1, Level::Causal)
        .deliver_all(&[a, b], c, 1, Level::Causal)
        .build();
    let vs = only(&check(&h, &plain()), Property::Causal);
    assert!(vs.iter().all(|v| v.messages[1] == id(c, 1)), "{vs:?}");
}

#[test]
fn partitionable_sides_are_held_to_one_order_only_within_a_side() {
    let (a, b, c) = (p(0), p(1), p(2));
    let v0 = view(0, &[a, b, c], &[]);
    let left = view(1, &[a], &[&v0]);
    let right = view(1, &[b, c], &[&v0]);
    // a, cut off, ordered x and y one way at its flush; b and c the other way.
    let h = H::new()
        .install(&[a, b, c], &v0)
        .cast(a, 1, Level::Safe)
        .cast(b, 1, Level::Safe)
        .deliver(a, a, 1, Level::Safe)
        .deliver(a, b, 1, Level::Safe)
        .deliver_all(&[b, c], b, 1, Level::Safe)
        .deliver_all(&[b, c], a, 1, Level::Safe)
        .view(a, &left)
        .install(&[b, c], &right)
        .build();
    let evs = Promises { membership: Membership::Partitionable, ..Promises::default() };
    assert_ok(&check(&h, &evs));
    // One side disagreeing within itself is still a violation.
    let h = H::new()
        .install(&[a, b, c], &v0)
        .cast(a, 1, Level::Safe)
        .cast(b, 1, Level::Safe)
        .deliver_all(&[a, b], a, 1, Level::Safe)
        .deliver(c, b, 1, Level::Safe)
        .deliver_all(&[a, b], b, 1, Level::Safe)
        .deliver(c, a, 1, Level::Safe)
        .view(a, &left)
        .install(&[b, c], &right)
        .build();
    let vs = only(&check(&h, &evs), Property::Total);
    assert_eq!(vs[0].processes, [b, c]);
}

#[test]
fn total_order_disagreement_is_reported_as_total_only() {
    let (a, b) = (p(0), p(1));
    let v0 = view(0, &[a, b], &[]);
    let h = H::new()
        .install(&[a, b], &v0)
        .cast(a, 1, Level::Total)
        .cast(b, 1, Level::Total)
        .deliver(a, a, 1, Level::Total)
        .deliver(a, b, 1, Level::Total)
        .deliver(b, b, 1, Level::Total)
        .deliver(b, a, 1, Level::Total)
        .build();
    let vs = only(&check(&h, &plain()), Property::Total);
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0].processes, [a, b]);
    assert_eq!(vs[0].messages, [id(a, 1), id(b, 1)]);
}

/// A crashed or excluded process may have delivered its last view's `Total` casts in an order
/// the survivors never learnt (non-uniform total order); `Safe` casts bind it too.
#[test]
fn a_process_that_crashes_may_differ_on_total_casts_but_not_on_safe_ones() {
    let (a, b, c) = (p(0), p(1), p(2));
    let v0 = view(0, &[a, b, c], &[]);
    let v1 = view(1, &[b, c], &[&v0]);
    let run = |level| {
        H::new()
            .install(&[a, b, c], &v0)
            .cast(b, 1, level)
            .cast(c, 1, level)
            // a, the sequencer, delivers b's cast first, then crashes...
            .deliver(a, b, 1, level)
            .deliver(a, c, 1, level)
            .crash(a)
            // ... and the survivors order them the other way.
            .deliver(b, c, 1, level)
            .deliver(b, b, 1, level)
            .deliver(c, c, 1, level)
            .deliver(c, b, 1, level)
            .install(&[b, c], &v1)
            .build()
    };
    assert_ok(&check(&run(Level::Total), &plain()));
    let vs = only(&check(&run(Level::Safe), &plain()), Property::Total);
    assert!(vs.iter().all(|v| v.processes.contains(&a)), "{vs:?}");
}

#[test]
fn safe_message_delivered_by_a_crashed_member_must_reach_the_survivors() {
    let (a, b, c) = (p(0), p(1), p(2));
    let v0 = view(0, &[a, b, c], &[]);
    let v1 = view(1, &[b, c], &[&v0]);
    let h = H::new()
        .install(&[a, b, c], &v0)
        .multicast(a, 1, Level::Safe, &[a])
        .crash(a)
        .install(&[b, c], &v1)
        .build();
    let vs = only(&check(&h, &plain()), Property::Uniform);
    assert_eq!(vs.len(), 2);
    assert_eq!(vs[0].processes, [b, a]);
    assert_eq!(vs[1].processes, [c, a]);
    assert!(vs.iter().all(|v| v.messages == [id(a, 1)]));
    // At the total level nothing is owed for a crashed process's delivery.
    let total = H::new()
        .install(&[a, b, c], &v0)
        .multicast(a, 1, Level::Total, &[a])
        .crash(a)
        .install(&[b, c], &v1)
        .build();
    assert_ok(&check(&total, &plain()));
}

#[test]
fn primary_view_without_a_majority_breaks_primary_component() {
    let (a, b, c) = (p(0), p(1), p(2));
    let v0 = view(0, &[a, b, c], &[]);
    let v1 = view(1, &[a], &[&v0]);
    let h = H::new().install(&[a, b, c], &v0).crash(b).crash(c).view(a, &v1).build();
    let primary = Promises { membership: Membership::Primary, ..Promises::default() };
    let vs = only(&check(&h, &primary), Property::PrimaryComponent);
    assert_eq!(vs[0].views, [v0.id, v1.id]);
    assert!(vs[0].detail.contains("keeps 1 of the 3"), "{}", vs[0]);
    assert_ok(&check(&h, &plain()));
}

#[test]
fn a_member_that_left_counts_toward_the_majority_of_the_next_primary_view() {
    let (a, b, c) = (p(0), p(1), p(2));
    let v0 = view(0, &[a, b, c], &[]);
    let v1 = view(1, &[a], &[&v0]);
    let primary = Promises { membership: Membership::Primary, ..Promises::default() };
    // c crashed and b left: a goes on alone, b having taken part in the change.
    let left = H::new()
        .install(&[a, b, c], &v0)
        .crash(c)
        .record(b, Event::Leave)
        .view(a, &v1)
        .record(b, Event::Exit)
        .build();
    assert_ok(&check(&left, &primary));
    // It counts for the view it left only.
    let v1c = view(1, &[a, c], &[&v0]);
    let v2 = view(2, &[a], &[&v1c]);
    let later = H::new()
        .install(&[a, b, c], &v0)
        .record(b, Event::Leave)
        .install(&[a, c], &v1c)
        .record(b, Event::Exit)
        .crash(c)
        .view(a, &v2)
        .build();
    let vs = only(&check(&later, &primary), Property::PrimaryComponent);
    assert_eq!(vs[0].views, [v1c.id, v2.id]);
}

#[test]
fn primary_view_not_made_from_the_one_before_breaks_primary_component() {
    let (a, b, c) = (p(0), p(1), p(2));
    let v0 = view(0, &[a, b, c], &[]);
    let v1 = view(1, &[a, b], &[]);
    let h = H::new().install(&[a, b, c], &v0).crash(c).install(&[a, b], &v1).build();
    let primary = Promises { membership: Membership::Primary, ..Promises::default() };
    let vs = only(&check(&h, &primary), Property::PrimaryComponent);
    assert!(vs[0].detail.contains("does not name v0@p0.0"), "{}", vs[0]);
}

#[test]
fn live_process_missing_a_delivered_message_of_the_last_view_breaks_liveness() {
    let (a, b, c) = (p(0), p(1), p(2));
    let v0 = view(0, &[a, b, c], &[]);
    let h = H::new().install(&[a, b, c], &v0).multicast(a, 1, Level::Fifo, &[a, b]).build();
    let vs = only(&check(&h, &promises(Membership::Static, Time::ZERO, None)), Property::Liveness);
    assert_eq!(vs.len(), 1);
    assert_eq!((vs[0].processes.clone(), vs[0].messages.clone()), (vec![c], vec![id(a, 1)]));
    assert_ok(&check(&h, &plain()));
}

#[test]
fn message_of_a_crashed_sender_that_no_live_process_holds_is_not_owed() {
    let (a, b, c) = (p(0), p(1), p(2));
    let v0 = view(0, &[a, b], &[]);
    let h = H::new().install(&[a, b], &v0).cast(a, 1, Level::Fifo).crash(a).build();
    // Static membership: the last view still holds the crashed process, which is fine.
    assert_ok(&check(&h, &promises(Membership::Static, Time::ZERO, None)));
    // Only the crashed sender itself delivered it: gone with it, owed to nobody.
    let h = H::new()
        .install(&[a, b], &v0)
        .cast(b, 1, Level::Fifo)
        .deliver(b, b, 1, Level::Fifo)
        .crash(b);
    assert_ok(&check(&h.build(), &promises(Membership::Static, Time::ZERO, None)));
    // A live process delivered it: every live process owes it.
    let v1 = view(0, &[a, b, c], &[]);
    let h = H::new()
        .install(&[a, b, c], &v1)
        .cast(b, 1, Level::Fifo)
        .deliver(b, b, 1, Level::Fifo)
        .deliver(c, b, 1, Level::Fifo)
        .crash(b);
    let vs = only(
        &check(&h.build(), &promises(Membership::Static, Time::ZERO, None)),
        Property::Liveness,
    );
    assert_eq!(vs[0].processes, [a]);
}

#[test]
fn live_processes_in_different_last_views_break_liveness() {
    let (a, b) = (p(0), p(1));
    let left = view(0, &[a], &[]);
    let right = view(0, &[b], &[]);
    let h = H::new().view(a, &left).view(b, &right).build();
    let vs = only(
        &check(&h, &promises(Membership::Partitionable, Time::ZERO, None)),
        Property::Liveness,
    );
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0].processes, [a, b]);
    assert_eq!(vs[0].views, [left.id, right.id]);
}

#[test]
fn last_view_holding_a_crashed_member_breaks_dynamic_liveness() {
    let (a, b, c) = (p(0), p(1), p(2));
    let v0 = view(0, &[a, b, c], &[]);
    let h = H::new().install(&[a, b, c], &v0).crash(c).build();
    let vs = only(&check(&h, &promises(Membership::Primary, Time::ZERO, None)), Property::Liveness);
    assert_eq!(vs[0].processes, [c]);
    assert_ok(&check(&h, &promises(Membership::Static, Time::ZERO, None)));
}

#[test]
fn last_view_installed_after_the_bound_breaks_liveness() {
    let (a, b, c) = (p(0), p(1), p(2));
    let v0 = view(0, &[a, b, c], &[]);
    let v1 = view(1, &[a, b], &[&v0]);
    let h = H::new().install(&[a, b, c], &v0).crash(c);
    let after = h.now();
    let h = h.view(a, &v1).view(b, &v1).build();
    // a installs v1 1 ms after `after`, b 2 ms after.
    let tight = promises(Membership::Primary, after, Some(Duration::from_micros(1500)));
    let vs = only(&check(&h, &tight), Property::Liveness);
    assert_eq!(vs.len(), 1);
    assert_eq!(vs[0].processes, [b]);
    assert_ok(&check(&h, &promises(Membership::Primary, after, Some(Duration::from_millis(2)))));
}

// ---- reports -----------------------------------------------------------------------------

// ---- state transfer ----------------------------------------------------------------------

/// `a` and `b` in v0 deliver a cast; joiner `j` is admitted in v1, and both give their state.
fn joined(j_state: u64) -> (H, [View; 2]) {
    let (a, b, j) = (p(0), p(1), Endpoint::new(2, 1));
    let v0 = view(0, &[a, b], &[]);
    let v1 = view(1, &[a, b, j], &[&v0]);
    let h = H::new()
        .view_with(a, &v0, 0)
        .view_with(b, &v0, 0)
        .multicast(a, 1, Level::Fifo, &[a, b])
        .view_with(a, &v1, 5)
        .snapshot(a, &v1, 5)
        .view_with(b, &v1, 5)
        .snapshot(b, &v1, 5)
        .view_with(j, &v1, 0)
        .state(j, &v1, j_state);
    (h, [v0, v1])
}

fn with_state() -> Promises {
    Promises { state_transfer: true, ..Promises::default() }
}

#[test]
fn a_joiner_given_the_snapshot_before_any_delivery_is_clean() {
    let (a, b, j) = (p(0), p(1), Endpoint::new(2, 1));
    let (h, [_, v1]) = joined(5);
    let v2 = view(2, &[a, b, j], &[&v1]);
    let h = h
        .multicast(j, 1, Level::Fifo, &[a, b, j])
        .view_with(a, &v2, 9)
        .view_with(b, &v2, 9)
        .view_with(j, &v2, 9)
        .build();
    assert_ok(&check(&h, &with_state()));
}

#[test]
fn a_state_unlike_the_snapshot_breaks_state_transfer() {
    let (h, _) = joined(6);
    let v = only(&check(&h.build(), &with_state()), Property::StateTransfer);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].processes, [Endpoint::new(2, 1), p(0)]);
}

#[test]
fn snapshots_of_one_view_that_differ_break_state_transfer() {
    let (a, b) = (p(0), p(1));
    let v0 = view(0, &[a, b], &[]);
    let v1 = view(1, &[a, b, p(2)], &[&v0]);
    let h = H::new()
        .install(&[a, b], &v0)
        .view(a, &v1)
        .snapshot(a, &v1, 1)
        .view(b, &v1)
        .snapshot(b, &v1, 2)
        .build();
    let v = only(&check(&h, &plain()), Property::StateTransfer);
    assert_eq!(v[0].processes, [b, a]);
}

/// `a` and `b` admit joiner `j` in v1, where `a` casts, delivered by all three at once.
fn joiner_delivers_at_once() -> (H, Endpoint, View) {
    let (a, b, j) = (p(0), p(1), Endpoint::new(2, 1));
    let v0 = view(0, &[a, b], &[]);
    let v1 = view(1, &[a, b, j], &[&v0]);
    let h = H::new().install(&[a, b], &v0).install(&[a, b, j], &v1).multicast(
        a,
        1,
        Level::Fifo,
        &[a, b, j],
    );
    (h, j, v1)
}

#[test]
fn a_joiner_delivering_before_its_state_breaks_state_transfer() {
    let (h, j, v1) = joiner_delivers_at_once();
    let h = h.state(j, &v1, 0).build();
    // Delivered before its state: reported whether or not the run promised state transfer.
    let v = only(&check(&h, &plain()), Property::StateTransfer);
    assert_eq!(v.len(), 1);
    // With the promise, the first delivery is reported too.
    let v = only(&check(&h, &with_state()), Property::StateTransfer);
    assert_eq!(v.len(), 2);
}

#[test]
fn a_joiner_that_never_installs_a_state_breaks_the_promise_only() {
    let (h, j, _) = joiner_delivers_at_once();
    let h = h.build();
    assert_ok(&check(&h, &plain()));
    let v = only(&check(&h, &with_state()), Property::StateTransfer);
    assert_eq!(v[0].processes, [j]);
    assert_eq!(v[0].messages, [id(p(0), 1)]);
}

#[test]
fn a_snapshot_taken_after_delivering_in_the_view_breaks_state_transfer() {
    let (a, b) = (p(0), p(1));
    let v0 = view(0, &[a, b], &[]);
    let v1 = view(1, &[a, b, p(2)], &[&v0]);
    let h = H::new()
        .install(&[a, b], &v0)
        .install(&[a, b], &v1)
        .multicast(a, 1, Level::Fifo, &[a, b])
        .snapshot(a, &v1, 3)
        .build();
    let v = only(&check(&h, &plain()), Property::StateTransfer);
    assert_eq!(v[0].processes, [a]);
}

#[test]
fn a_snapshot_or_state_of_another_view_breaks_state_transfer() {
    let (a, b) = (p(0), p(1));
    let v0 = view(0, &[a, b], &[]);
    let v1 = view(1, &[a, b], &[&v0]);
    let h = H::new().install(&[a, b], &v0).snapshot(a, &v1, 0).state(b, &v1, 0).build();
    let v = only(&check(&h, &plain()), Property::StateTransfer);
    assert_eq!(v.len(), 2);
}

#[test]
fn a_state_installed_twice_breaks_state_transfer() {
    let (h, [_, v1]) = joined(5);
    let h = h.state(Endpoint::new(2, 1), &v1, 5).build();
    let v = only(&check(&h, &with_state()), Property::StateTransfer);
    assert_eq!(v.len(), 1);
}

#[test]
fn members_moving_together_with_different_digests_break_state_transfer() {
    // The joiner was given the right state but counted a cast twice, say.
    let (a, b, j) = (p(0), p(1), Endpoint::new(2, 1));
    let (h, [_, v1]) = joined(5);
    let v2 = view(2, &[a, b, j], &[&v1]);
    let h = h.view_with(a, &v2, 5).view_with(b, &v2, 5).view_with(j, &v2, 7).build();
    let v = only(&check(&h, &with_state()), Property::StateTransfer);
    assert_eq!(v[0].processes, [j, a]);
}

#[test]
fn a_snapshot_unlike_its_takers_digest_at_the_view_breaks_state_transfer() {
    let (a, b) = (p(0), p(1));
    let v0 = view(0, &[a, b], &[]);
    let v1 = view(1, &[a, b, p(2)], &[&v0]);
    let h = H::new().install(&[a, b], &v0).view_with(a, &v1, 4).snapshot(a, &v1, 5).build();
    let v = only(&check(&h, &plain()), Property::StateTransfer);
    assert_eq!(v[0].processes, [a]);
}

#[test]
fn violations_beyond_the_cap_are_counted_not_listed() {
    let (a, b) = (p(0), p(1));
    let v0 = view(0, &[a, b], &[]);
    let mut h = H::new().install(&[a, b], &v0);
    for seq in 1..=(MAX_PER_PROPERTY as u64 + 10) {
        h = h.deliver(b, a, seq, Level::Fifo);
    }
    let report = check(&h.build(), &plain());
    assert_eq!(report.of(Property::DeliveryIntegrity).count(), MAX_PER_PROPERTY);
    assert_eq!(report.left_off.get(&Property::DeliveryIntegrity), Some(&10));
    assert!(!report.is_ok());
    assert!(report.to_string().ends_with("delivery integrity: ... and 10 more\n"), "{report}");
}

#[test]
fn violations_are_listed_in_property_order() {
    let (a, b) = (p(0), p(1));
    let v0 = view(0, &[a, b], &[]);
    // A cycle (each delivers the other's message before casting its own) is found late, by
    // the replay, yet listed with the other integrity findings.
    let h = H::new()
        .install(&[a, b], &v0)
        .view(b, &view(0, &[a], &[]))
        .deliver(a, b, 1, Level::Fifo)
        .cast(a, 1, Level::Fifo)
        .deliver(b, a, 1, Level::Fifo)
        .cast(b, 1, Level::Fifo)
        .deliver(a, a, 1, Level::Fifo)
        .deliver(b, b, 1, Level::Fifo)
        .deliver(b, a, 9, Level::Fifo)
        .build();
    let report = check(&h, &plain());
    let order: Vec<Property> = report.violations.iter().map(|v| v.property).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    assert!(report.properties().contains(&Property::DeliveryIntegrity));
}

// ---- any history -------------------------------------------------------------------------

/// A small history of random events, sensible or not, and random promises.
#[derive(Clone, Debug)]
struct AnyHistory(History, Promises);

impl Arbitrary for AnyHistory {
    fn arbitrary(g: &mut Gen) -> Self {
        let endpoints: Vec<Endpoint> = (0..4).map(p).collect();
        let pick = |g: &mut Gen| *g.choose(&endpoints).expect("non-empty");
        let level = |g: &mut Gen| *g.choose(&Level::ALL).expect("non-empty");
        let views: Vec<View> = (0..4u64)
            .map(|ltime| {
                let members: Vec<Endpoint> =
                    endpoints.iter().copied().filter(|_| bool::arbitrary(g)).collect();
                let coord = pick(g);
                let mut prev = Vec::new();
                for l in 0..ltime {
                    if bool::arbitrary(g) {
                        prev.push(ViewId::new(l, pick(g)));
                    }
                }
                View { id: ViewId::new(ltime % 3, coord), members, prev }
            })
            .collect();
        let mut history = History::new();
        let n = usize::arbitrary(g) % 60;
        for _ in 0..n {
            let who = pick(g);
            let seq = u64::from(u8::arbitrary(g) % 5);
            let ev = match u8::arbitrary(g) % 10 {
                0 | 1 => Event::View {
                    view: g.choose(&views).expect("non-empty").clone(),
                    digest: bool::arbitrary(g).then(|| u64::from(u8::arbitrary(g) % 3)),
                },
                2..=4 => Event::Cast {
                    id: id(if bool::arbitrary(g) { who } else { pick(g) }, seq),
                    level: level(g),
                },
                5..=8 => {
                    let sender = pick(g);
                    let from = if bool::arbitrary(g) { sender } else { pick(g) };
                    Event::Deliver { id: id(sender, seq), from, level: level(g) }
                }
                _ => {
                    let view = g.choose(&views).expect("non-empty").id;
                    let digest = u64::from(u8::arbitrary(g) % 3);
                    match u8::arbitrary(g) % 4 {
                        0 => Event::Crash,
                        1 => Event::Exit,
                        2 => Event::Snapshot { view, digest },
                        _ => Event::State { view, digest },
                    }
                }
            };
            history.record(Time(u64::from(u16::arbitrary(g))), who, ev);
        }
        let membership = *g
            .choose(&[Membership::Static, Membership::Primary, Membership::Partitionable])
            .expect("non-empty");
        let liveness = bool::arbitrary(g).then(|| Liveness {
            after: Time(u64::from(u16::arbitrary(g))),
            bound: bool::arbitrary(g).then(|| Duration::from_nanos(u64::from(u16::arbitrary(g)))),
        });
        AnyHistory(history, Promises { membership, liveness, state_transfer: bool::arbitrary(g) })
    }
}

#[test]
fn any_history_is_checked_without_panicking() {
    fn prop(h: AnyHistory) -> bool {
        let report = check(&h.0, &h.1);
        Property::ALL.iter().all(|&p| report.of(p).count() <= MAX_PER_PROPERTY)
    }
    QuickCheck::new().tests(2000).quickcheck(prop as fn(AnyHistory) -> bool);
}

#[test]
fn checking_the_same_history_twice_gives_the_same_report() {
    fn prop(h: AnyHistory) -> bool {
        check(&h.0, &h.1) == check(&h.0.clone(), &h.1)
    }
    QuickCheck::new().tests(500).quickcheck(prop as fn(AnyHistory) -> bool);
}

#[test]
fn history_with_nonsense_events_is_checked_without_panicking() {
    let (a, b) = (p(0), p(1));
    let empty = View { id: ViewId::new(5, b), members: vec![], prev: vec![] };
    let h = H::new()
        .crash(a)
        .view(a, &empty)
        .record(a, Event::Cast { id: id(b, 1), level: Level::Safe })
        .deliver(b, b, 1, Level::Safe)
        .exit(b)
        .deliver(b, a, 0, Level::Total)
        .cast(a, 1, Level::Safe)
        .cast(a, 1, Level::Fifo)
        .build();
    let report = check(&h, &promises(Membership::Primary, Time::MAX, Some(Duration::MAX)));
    assert!(!report.is_ok());
    assert_eq!(report, check(&h, &promises(Membership::Primary, Time::MAX, Some(Duration::MAX))));
}

// ---- size --------------------------------------------------------------------------------

#[test]
fn nine_processes_with_twenty_thousand_deliveries_check_clean() {
    let members: Vec<Endpoint> = (0..9).map(p).collect();
    let v0 = view(0, &members, &[]);
    let mut history = History::new();
    let mut now = 0;
    let mut tick = || {
        now += 1;
        Time(now)
    };
    for &m in &members {
        history.record(tick(), m, Event::View { view: v0.clone(), digest: None });
    }
    let mut seqs = [0u64; 9];
    for step in 0..2250 {
        // Each process delivers in one order, the order of casting: consistent with every
        // level.
        let s = (step * 7 + step / 9) % 9;
        seqs[s] += 1;
        let msg = id(members[s], seqs[s]);
        let level = Level::ALL[step % 4];
        history.record(tick(), members[s], Event::Cast { id: msg, level });
        for &m in &members {
            history.record(tick(), m, Event::Deliver { id: msg, from: members[s], level });
        }
    }
    let report = check(&history, &promises(Membership::Primary, Time::ZERO, None));
    assert_ok(&report);
    assert_eq!(report.stats.deliveries, 2250 * 9);
}
