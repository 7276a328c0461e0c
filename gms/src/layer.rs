//! `gms`: the view change, run in the view that ends.
//!
//! Adds: membership. Members suspected of failure are removed by a view change that keeps
//! virtual synchrony: every member that moves from view V to view V' has delivered, in V,
//! exactly the same casts (Birman, ch. 13 and 15, the flush protocol; Ensemble's SYNC, INTRA
//! and VSYNC layers).
//! Needs below: reliable point-to-point (its own messages), stability (the rows it reports),
//! and suspicions (from `suspect`).
//!
//! The coordinator is the lowest-ranked member not failed or suspected. The change:
//! 1. On a suspicion, the coordinator sends `Fail { failed }` to every survivor (others
//!    forward their suspicions to it). A survivor accepts it from the member it takes for the
//!    coordinator, passes `Down::Fail` to the layers below (they stop waiting for the failed)
//!    and asks the application to block (`Up::Block`).
//! 2. Once the application answers `BlockOk`, the member sends `Down::Block` through the stack;
//!    behind the reflected `Up::BlockOk` comes its row (`Up::Received`: the casts of each rank
//!    it has received), which it reports in `FlushOk { failed, row, prepared }`. Its row of a
//!    failed sender no longer grows, since the reliable layers refuse a failed member's new
//!    casts.
//! 3. With a `FlushOk` from every survivor for the same failed set, the coordinator fixes the
//!    cut, the largest row of each rank, names the next view (the survivors in rank order, then
//!    the joiners; ltime one more, itself as coordinator) and sends `Cut { failed, cut, view,
//!    wait }`.
//! 4. A member passes `Down::Cut` and lets the reliable layers fetch what it lacks from the
//!    survivors. If some row fell short of the cut (`wait`), it reports `HaveCut` and waits for
//!    the coordinator's `Go`, sent once every survivor holds the cut: nobody delivers at the
//!    flush what another survivor could still fail to fetch, should the first one crash (the
//!    uniform delivery of safe casts rests on it). Then `Down::Flush`: the reflected `Up::Flush`
//!    drains the ordering layers bottom up, the same way at every survivor, and the member
//!    holds the view *prepared* and reports `Prepared`.
//! 5. With `Prepared` from every survivor, the coordinator sends `Commit`, and each member
//!    names the prepared view up (`Up::View`) and builds a stack for it. No member leaves the
//!    view before every survivor holds the cut: until then they may need each other's
//!    retransmissions, which only the old view's stacks can give.
//!
//! Prepare and commit make one view per ltime under a change of coordinator. A view is
//! committed only once every survivor has prepared it, and every member reports the view it
//! prepared in its `FlushOk`; a coordinator that takes over adopts a prepared view it hears of
//! (only a view of its own that it never committed may be replaced), so a view that members
//! which no longer answer may have installed is the view everybody else installs too
//! (Paxos's rule: a later ballot takes the value an earlier one may have chosen). Without it, a
//! coordinator that failed after some members installed its view would leave a successor to
//! install a second view of the same ltime.
//!
//! A member that leaves (`Down::Leave`) is removed without waiting for a suspicion: it asks
//! the coordinator (`Leave`), which starts a change whose view is without it. The leaver takes
//! part in that change like any survivor (it reports, flushes and prepares, its `FlushOk` says
//! it is leaving, so a coordinator that takes over knows too), and so counts toward the
//! majority: in a group of three, one member leaving and one crashing leave a primary view. A
//! leaving coordinator runs the change itself. The leaver learns it is out from the committed
//! view, which does not hold it.
//!
//! Suspicions: the coordinator acts on its own at once, but on one another member reports only
//! once it suspects the member too, or a majority of the view reports it: a member that cannot
//! hear another over a one-way link must not have it removed alone. A member that suspects the
//! coordinator tells the next in rank, and proposes itself once every lower rank is suspected.
//!
//! A process asking to join (`Down::Join`, from the member's discovery) is admitted by the
//! coordinator in the same way: a change with no failure, whose view lists the joiners last.
//! The first request waits `join_gather` (2 ms) for others, and requests that come while a
//! change runs are taken into its view until the cut is fixed, so processes started together
//! join in one view change.
//!
//! More failures before the change ends (the coordinator's among them) enlarge the failed set:
//! the (new) coordinator sends `Fail` again and everyone reports again, so several failures
//! make one view change. Only a majority of the view goes on (primary partition): a
//! coordinator left with a minority does not install.
//!
//! Partitionable membership (`gms(partitionable=true)`, the preset `evs`; extended virtual
//! synchrony): no majority is needed, so each side of a partition goes on in a view of its
//! own, and views merge when they hear each other. The first members of two views beacon
//! (the member does, outside the views); the lower endpoint asks the other to merge
//! (`Down::MergeAsk`). The asked view runs a change as for a join, and once every survivor
//! has prepared, instead of committing it says `Up::MergeReady` with its members (repeated
//! until answered) and waits up to `merge_wait` (default 1s). The asking view then runs a
//! change (`Down::MergeWith`) whose view holds its survivors, then the other view's members,
//! then joiners, with an ltime past both views and both in `prev`. Its first member welcomes
//! the other view's members with it (`Down::Install`); their coordinator, still waiting,
//! has its survivors install it (`Install`). If the merged view does not come in time, the
//! waiting view commits its own prepared view. Each side flushed its own view first, so
//! virtual synchrony holds in each; the sides' states are reconciled by the member (the
//! merging side's state is given to the other side's members, as to joiners).
//!
//! Every view a coordinator proposes has an ltime past all it proposed before in the view,
//! so two proposals never share an id; `Prepared` and `Commit` name views whole all the same.
//!
//! Headers, on point-to-point sends only (casts pass untouched): `Pass` on the application's
//! sends; `Fail`, `FlushOk`, `Suspicion`, `Missed`, `Leave`, `Cut`, `HaveCut`, `Go`,
//! `Prepared`, `Commit`, `Install`. Parameters: `partitionable` (false), `merge_wait` (1s),
//! `join_gather` (2ms), `round_timeout` (1s: a round still waiting for survivors then
//! suspects them). Timers: one per round, while gathering joins, and while waiting for a
//! merged view.
//! Suspicion and retransmission are the layers' below.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use horus_core::spec::Args;
use horus_core::{
    Cx, Down, Endpoint, Layer, LayerInfo, Message, ParamError, Props, Rank, Seqno, Token, Up, View,
    ViewId, ViewState,
};
use serde::{Deserialize, Serialize};

pub const INFO: LayerInfo = LayerInfo {
    name: "gms",
    doc: "membership: failures removed by virtually synchronous view changes",
    needs: Props::RELIABLE_SEND.union(Props::FLUSH).union(Props::SUSPECT),
    gives: Props::MEMBERSHIP,
    hides: Props::NONE,
    build,
};

fn build(args: &mut Args<'_>, vs: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    let mut gms = Gms::new(vs);
    gms.partitionable = args.bool("partitionable", false)?;
    gms.merge_wait = args.duration("merge_wait", Duration::from_secs(1))?;
    gms.join_gather = args.duration("join_gather", Duration::from_millis(2))?;
    gms.round_timeout = args.duration("round_timeout", Duration::from_secs(1))?;
    Ok(Box::new(gms))
}

/// What this layer writes on the wire.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
enum Header {
    /// An application send, passed through.
    Pass,
    /// Coordinator to survivors: these have failed; block, and report.
    Fail { failed: Vec<Rank> },
    /// Member to coordinator: blocked, and this is my row, after `failed` failed; and the view
    /// I have prepared, if a coordinator had me prepare one.
    /// `leaving`: the member asked to leave, and the next view is to be without it.
    FlushOk { failed: Vec<Rank>, row: Vec<Seqno>, prepared: Option<View>, leaving: bool },
    /// Member to coordinator: I suspect these.
    Suspicion(Vec<Rank>),
    /// Member to a coordinator that failed fewer than it did: these failed already (so the
    /// coordinator proposes them too; if they name it, it is out).
    Missed(Vec<Rank>),
    /// Member to coordinator: remove me.
    Leave,
    /// Coordinator to survivors: deliver exactly the casts up to the cut, and prepare `view`.
    /// With `wait`, somebody lacks part of the cut: report `HaveCut` and flush only on `Go`.
    Cut { failed: Vec<Rank>, cut: Vec<Seqno>, view: View, wait: bool },
    /// Member to coordinator: I hold every cast of the cut.
    HaveCut { failed: Vec<Rank> },
    /// Coordinator to survivors: every survivor holds the cut; flush.
    Go { failed: Vec<Rank> },
    /// Member to coordinator: flushed, and `view` prepared. Views are named whole here and in
    /// `Commit`, though every proposal has an id of its own: a member then installs exactly
    /// the view it flushed for, whatever produced the id.
    Prepared { failed: Vec<Rank>, view: View },
    /// Coordinator to survivors: every survivor has prepared the view; install it.
    Commit { failed: Vec<Rank>, view: View },
    /// Coordinator to survivors, after a flush to merge: install the merged view instead.
    Install { failed: Vec<Rank>, view: View },
}

/// The timer of a coordinator waiting for a merged view.
const MERGE_TIMER: u64 = 1;
/// The timer of a coordinator repeating its grant while it waits.
const GRANT_TIMER: u64 = 2;
/// The timer of a coordinator gathering join requests.
const JOIN_TIMER: u64 = 3;
/// The timer of a round, with the round's number above the low byte.
const ROUND_TIMER: u64 = 4;
/// How often a waiting coordinator repeats its grant.
const GRANT_AGAIN: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct Stats {
    round_timeouts: u64,
    merges: u64,
    merges_abandoned: u64,
    view_changes: u64,
    minority_exits: u64,
    bad_header: u64,
    refused: u64,
}

/// State for one view.
#[derive(Debug)]
pub struct Gms {
    me: Rank,
    view: Arc<View>,
    /// Agreed failed, from the coordinator's `Fail`.
    failed: BTreeSet<Rank>,
    /// Suspected here.
    suspected: BTreeSet<Rank>,
    /// Who sent the `Fail` we follow.
    leader: Option<Rank>,
    /// The application has been asked to block.
    block_asked: bool,
    /// The application answered `BlockOk`.
    app_blocked: bool,
    /// Our latest row, from `stable`.
    row: Option<Vec<Seqno>>,
    /// Coordinating: the round under way.
    round: Option<Round>,
    /// Coordinating: a view of ours was committed; this view's change is over.
    committed: bool,
    /// Coordinating: processes asking to join, admitted in the next view.
    joiners: BTreeSet<Endpoint>,
    /// Coordinating: a join request came, and the change waits `join_gather` for others.
    gathering: bool,
    join_gather: Duration,
    /// As member: the cut to reach and the view to prepare with it, from the leader's `Cut`.
    cut: Option<(Vec<Seqno>, View, bool)>,
    /// As member: `HaveCut` sent, `Go` received, the flush asked and answered.
    have_cut: bool,
    go: bool,
    flushing: bool,
    flushed: bool,
    /// As member: the view prepared, flushed for; kept across rounds, reported to every later
    /// leader, installed on `Commit`.
    prepared: Option<View>,
    /// The application asked to leave.
    leaving: bool,
    /// Coordinating: members that asked to leave; the next view is without them.
    leavers: BTreeSet<Rank>,
    /// Suspicions other members reported, by suspected rank: acted on once we suspect the
    /// member too, or a majority of the view reports it (a member that cannot hear another
    /// over a one-way link must not have it removed alone).
    reports: BTreeMap<Rank, BTreeSet<Rank>>,
    done: bool,
    /// Coordinating: the highest ltime of a view proposed here (or adopted).
    proposed_ltime: u64,
    /// Coordinating: rounds started in this view.
    rounds: u64,
    /// How long a round may wait for a survivor before the coordinator suspects it.
    round_timeout: Duration,
    /// Extended virtual synchrony: no majority needed; views of the group merge.
    partitionable: bool,
    /// How long a view that flushed to merge waits for the merged view before it goes on
    /// alone.
    merge_wait: Duration,
    stats: Stats,
}

/// A round's part in a merge of two views.
#[derive(Debug, Clone)]
enum Merge {
    /// The coordinator at `to` asked us to merge: flush, tell it, wait for its view.
    Grant { to: Endpoint },
    /// The view `view` has flushed to merge with ours: its `members` join our next view.
    With { view: ViewId, members: Vec<Endpoint> },
}

/// A coordinator's round: one failed set, its reports, and how far it went.
#[derive(Debug)]
struct Round {
    /// Which round of this view it is, for its timer.
    seq: u64,
    failed: BTreeSet<Rank>,
    rows: BTreeMap<Rank, Vec<Seqno>>,
    /// The view some survivor prepared in an earlier round, which this round must adopt.
    adopt: Option<View>,
    /// The view of the cut, once sent.
    view: Option<View>,
    have_cut: BTreeSet<Rank>,
    go_sent: bool,
    prepared: BTreeSet<Rank>,
    merge: Option<Merge>,
    /// The cut asked for `HaveCut`s.
    wait: bool,
    /// Flushed to merge: waiting for the merged view.
    waiting: bool,
    /// The members granted to the merge.
    grant: Vec<Endpoint>,
}

impl Round {
    fn new(seq: u64, failed: BTreeSet<Rank>) -> Self {
        Round {
            seq,
            failed,
            rows: BTreeMap::new(),
            adopt: None,
            view: None,
            have_cut: BTreeSet::new(),
            go_sent: false,
            prepared: BTreeSet::new(),
            merge: None,
            wait: false,
            waiting: false,
            grant: Vec::new(),
        }
    }

    fn wire(&self) -> Vec<Rank> {
        self.failed.iter().copied().collect()
    }

    /// Whether `set` names this round.
    fn is(&self, set: &[Rank]) -> bool {
        self.failed.len() == set.len() && set.iter().all(|r| self.failed.contains(r))
    }
}

impl Gms {
    fn new(vs: &ViewState) -> Self {
        Gms {
            me: vs.rank,
            view: vs.view.clone(),
            failed: BTreeSet::new(),
            suspected: BTreeSet::new(),
            leader: None,
            block_asked: false,
            app_blocked: false,
            row: None,
            round: None,
            committed: false,
            joiners: BTreeSet::new(),
            gathering: false,
            join_gather: Duration::from_millis(2),
            cut: None,
            have_cut: false,
            go: false,
            flushing: false,
            flushed: false,
            prepared: None,
            leaving: false,
            leavers: BTreeSet::new(),
            reports: BTreeMap::new(),
            done: false,
            proposed_ltime: 0,
            rounds: 0,
            round_timeout: Duration::from_secs(1),
            partitionable: false,
            merge_wait: Duration::from_secs(1),
            stats: Stats::default(),
        }
    }

    fn n(&self) -> usize {
        self.view.len()
    }

    /// The lowest rank neither failed nor suspected here.
    fn coordinator(&self) -> Rank {
        (0..self.n() as u32)
            .map(Rank)
            .find(|r| !self.failed.contains(r) && !self.suspected.contains(r))
            .unwrap_or(self.me)
    }

    fn send(&self, to: Rank, hdr: &Header, cx: &mut Cx<'_>) {
        let mut msg = Message::control();
        msg.push(hdr);
        cx.down(Down::Send(to, msg));
    }

    /// Our own suspicions, from the layer below.
    fn on_suspect(&mut self, ranks: &[Rank], cx: &mut Cx<'_>) {
        let fresh: Vec<Rank> = ranks
            .iter()
            .copied()
            .filter(|r| *r != self.me && r.index() < self.n())
            .filter(|r| !self.failed.contains(r) && !self.suspected.contains(r))
            .collect();
        if fresh.is_empty() || self.done {
            // Nothing new: passing it on again could bounce between two members forever.
            return;
        }
        self.suspected.extend(fresh);
        self.act(cx);
    }

    /// A member's suspicions: acted on once confirmed.
    fn on_reported(&mut self, from: Rank, ranks: &[Rank], cx: &mut Cx<'_>) {
        let (n, me) = (self.n(), self.me);
        for r in ranks.iter().filter(|r| r.index() < n && **r != me) {
            self.reports.entry(*r).or_default().insert(from);
        }
        if self.coordinator() == self.me {
            self.act(cx);
        }
    }

    /// Ranks failed by a round another member follows.
    fn on_missed(&mut self, ranks: &[Rank], cx: &mut Cx<'_>) {
        if self.done {
            return;
        }
        if ranks.contains(&self.me) {
            // That round removes us: we are out of every view it leads to.
            self.done = true;
            return cx.up(Up::Exit);
        }
        let n = self.n();
        self.suspected.extend(ranks.iter().filter(|r| r.index() < n));
        self.act(cx);
    }

    /// After a suspicion: leave if no majority is reachable; propose if coordinator;
    /// otherwise tell the coordinator.
    fn act(&mut self, cx: &mut Cx<'_>) {
        if self.done {
            return;
        }
        // Suspicions a majority of the view reported count as ours.
        let n = self.n();
        let confirmed: Vec<Rank> = self
            .reports
            .iter()
            .filter(|(r, by)| 2 * by.len() > n && !self.failed.contains(r))
            .map(|(r, _)| *r)
            .collect();
        self.suspected.extend(confirmed);
        // Primary partition: a member that can reach no majority of the view cannot go on in
        // any later view; it leaves (and may rejoin as a new incarnation).
        let reachable = (0..n as u32)
            .map(Rank)
            .filter(|r| !self.failed.contains(r) && !self.suspected.contains(r))
            .count();
        if 2 * reachable <= n && !self.partitionable {
            self.done = true;
            self.stats.minority_exits += 1;
            return cx.up(Up::Exit);
        }
        let coord = self.coordinator();
        if coord == self.me {
            let set: BTreeSet<Rank> = self.failed.union(&self.suspected).copied().collect();
            if set != self.failed {
                self.propose(set, cx);
            }
        } else {
            // Everything suspected here: a coordinator that took over from one we told before
            // learns it too.
            let all = self.suspected.iter().copied().collect();
            self.send(coord, &Header::Suspicion(all), cx);
        }
    }

    /// As coordinator: ask every survivor to block and report, for this failed set.
    fn propose(&mut self, set: BTreeSet<Rank>, cx: &mut Cx<'_>) {
        if self.round.as_ref().is_some_and(|r| r.failed == set) || self.committed {
            return;
        }
        self.rounds += 1;
        let round = Round::new(self.rounds, set);
        let failed = round.wire();
        self.round = Some(round);
        cx.timer_after(self.round_timeout, ROUND_TIMER | (self.rounds << 8));
        let me = self.me;
        // Every other member: survivors block and report; a member in the set that is alive
        // (one leaving, or wrongly suspected) learns it is out and leaves. These go first:
        // once we fail the ranks below, pt2pt no longer sends to them.
        for r in (0..self.n() as u32).map(Rank).filter(|r| *r != me) {
            self.send(r, &Header::Fail { failed: failed.clone() }, cx);
        }
        // Then ourselves, at once: a copy sent through the stack could wait in flow control
        // behind casts held for the very members that failed, and only the failure releases
        // them (and the sends above with them).
        self.on_fail(me, failed, cx);
    }

    fn on_fail(&mut self, from: Rank, failed: Vec<Rank>, cx: &mut Cx<'_>) {
        let set: BTreeSet<Rank> = failed.iter().copied().filter(|r| r.index() < self.n()).collect();
        // From the member that is coordinator given this set, and never shrinking.
        let legitimate = !set.contains(&from) && (0..from.0).all(|r| set.contains(&Rank(r)));
        if legitimate && !self.done && !set.is_superset(&self.failed) && from != self.me {
            // Another coordinator failed fewer than we did: tell it whom it missed, so that it
            // proposes the union and the two rounds do not wait for each other forever.
            let missed: Vec<Rank> = self.failed.difference(&set).copied().collect();
            self.send(from, &Header::Missed(missed), cx);
            return self.stats.refused += 1;
        }
        if !legitimate || !set.is_superset(&self.failed) || self.done {
            return self.stats.refused += 1;
        }
        if set.contains(&self.me) {
            // Excluded: this member's view ends here; it leaves.
            self.done = true;
            return cx.up(Up::Exit);
        }
        let new: Vec<Rank> = set.difference(&self.failed).copied().collect();
        self.failed = set;
        self.suspected.retain(|r| !self.failed.contains(r));
        self.leader = Some(from);
        // A new round: report, fetch and flush again for the larger failed set. What was
        // prepared stays prepared: the new leader learns it from the report.
        self.cut = None;
        self.have_cut = false;
        self.go = false;
        self.flushing = false;
        self.flushed = false;
        if !new.is_empty() {
            cx.down(Down::Fail(new));
        }
        if self.app_blocked {
            // Report again, for the larger failed set.
            cx.down(Down::Block);
        } else if !self.block_asked {
            self.block_asked = true;
            cx.up(Up::Block);
        }
    }

    /// A round still waiting after `round_timeout`: the survivors it waits for are suspected,
    /// and a larger round starts. A member that no longer answers this coordinator (it follows
    /// another, which failed this one, so its layers refuse our messages: two sides of a
    /// healed partition) would otherwise hold the change forever.
    fn on_round_timeout(&mut self, seq: u64, cx: &mut Cx<'_>) {
        let Some(round) = self.round.as_ref().filter(|r| r.seq == seq) else { return };
        if self.done || self.committed || round.waiting {
            return;
        }
        let survivors = self.survivors(&round.failed);
        // Who has answered the step the round is at: the reports, the HaveCuts, or the
        // Prepareds.
        let answered = |r: &Rank| match &round.view {
            None => round.rows.contains_key(r),
            Some(_) if round.wait && !round.go_sent => round.have_cut.contains(r),
            Some(_) => round.prepared.contains(r),
        };
        let silent: Vec<Rank> =
            survivors.iter().copied().filter(|r| *r != self.me && !answered(r)).collect();
        if silent.is_empty() {
            return;
        }
        self.stats.round_timeouts += 1;
        self.suspected.extend(silent);
        self.act(cx);
    }

    /// Whether a merge may start here: partitionable, coordinator, and no change under way.
    fn may_start_merge(&self) -> bool {
        self.partitionable
            && !self.done
            && !self.committed
            && !self.leaving
            && self.round.is_none()
            && self.coordinator() == self.me
    }

    fn survivors(&self, failed: &BTreeSet<Rank>) -> Vec<Rank> {
        (0..self.n() as u32).map(Rank).filter(|r| !failed.contains(r)).collect()
    }

    /// As coordinator: the round named `failed`, if it is the one under way.
    fn round_for(&mut self, failed: &[Rank]) -> Option<&mut Round> {
        self.round.as_mut().filter(|r| r.is(failed))
    }

    /// A member asks to be removed: as coordinator, by a view change without it (a flush in
    /// which it takes part, so it counts toward the majority).
    fn on_leave(&mut self, from: Rank, cx: &mut Cx<'_>) {
        if self.done || from.index() >= self.n() {
            return;
        }
        self.leavers.insert(from);
        let me = self.me;
        let others = (0..self.n() as u32)
            .map(Rank)
            .any(|r| r != me && !self.failed.contains(&r) && !self.suspected.contains(&r));
        if from == me && !others {
            // Alone: nobody to tell.
            self.done = true;
            return cx.up(Up::Exit);
        }
        if self.coordinator() == me && self.round.is_none() && !self.committed {
            let set = self.failed.clone();
            self.propose(set, cx);
        }
    }

    fn on_flush_ok(
        &mut self,
        from: Rank,
        failed: Vec<Rank>,
        row: Vec<Seqno>,
        prepared: Option<View>,
        cx: &mut Cx<'_>,
    ) {
        let (n, me, ltime) = (self.n(), cx.endpoint(), self.view.id.ltime);
        let Some(round) = self.round_for(&failed) else { return };
        if row.len() != n || round.view.is_some() {
            return;
        }
        round.rows.insert(from, row);
        // A view a survivor prepared may have been committed by the leader that proposed it,
        // and installed by members that no longer answer here: this round must install that
        // view. Only a view of our own that we never committed may be replaced, by one that
        // leaves out the members failed since.
        if let Some(p) = prepared.filter(|p| p.id.ltime > ltime && p.id.coord != me) {
            if round.adopt.as_ref().is_none_or(|a| (a.id, &a.members) < (p.id, &p.members)) {
                round.adopt = Some(p);
            }
        }
        let set = round.failed.clone();
        let survivors = self.survivors(&set);
        let round = self.round.as_mut().expect("checked above");
        // Primary partition: only a majority of the view goes on.
        let majority = 2 * survivors.len() > n || self.partitionable;
        if !survivors.iter().all(|r| round.rows.contains_key(r)) || !majority {
            return;
        }
        let mut cut = vec![Seqno(0); n];
        for row in round.rows.values() {
            for (c, s) in cut.iter_mut().zip(row) {
                *c = (*c).max(*s);
            }
        }
        let wait = round.rows.values().any(|row| *row != cut);
        // Adopted whatever it holds: a survivor it lacks (one that asked to leave, say) is out
        // of it, as it is wherever it was installed already.
        let adopted = round.adopt.take();
        let view = adopted.unwrap_or_else(|| {
            let mut members: Vec<Endpoint> = survivors
                .iter()
                .filter(|r| !self.leavers.contains(r))
                .filter_map(|r| self.view.member(*r))
                .collect();
            // Past every view we proposed here before: each proposal has an id of its own.
            let (mut ltime, mut prev) = (ltime.max(self.proposed_ltime), vec![self.view.id]);
            if let Some(Merge::With { view, members: theirs }) = &round.merge {
                // A merge: the other view's members come after ours.
                members.extend(theirs.iter().filter(|e| !self.view.contains(**e)));
                ltime = ltime.max(view.ltime);
                prev.push(*view);
            }
            // Joiners come last, the oldest members keeping the lowest ranks.
            let joiners = self.joiners.iter().filter(|e| !self.view.contains(**e));
            members.extend(joiners.filter(|e| !members.contains(e)).collect::<Vec<_>>());
            View { id: ViewId::new(ltime + 1, me), members, prev }
        });
        self.proposed_ltime = self.proposed_ltime.max(view.id.ltime);
        let round = self.round.as_mut().expect("checked above");
        round.view = Some(view.clone());
        round.wait = wait;
        let failed = round.wire();
        for r in survivors {
            let hdr =
                Header::Cut { failed: failed.clone(), cut: cut.clone(), view: view.clone(), wait };
            self.send(r, &hdr, cx);
        }
    }

    fn on_cut(
        &mut self,
        from: Rank,
        failed: Vec<Rank>,
        cut: Vec<Seqno>,
        view: View,
        wait: bool,
        cx: &mut Cx<'_>,
    ) {
        let current = failed.iter().copied().collect::<BTreeSet<_>>() == self.failed;
        if self.leader != Some(from) || !current || cut.len() != self.n() || self.cut.is_some() {
            return self.stats.refused += 1;
        }
        self.cut = Some((cut.clone(), view, wait));
        cx.down(Down::Cut(cut));
        self.check_cut(cx);
    }

    fn on_have_cut(&mut self, from: Rank, failed: Vec<Rank>, cx: &mut Cx<'_>) {
        let Some(round) = self.round_for(&failed) else { return };
        if round.view.is_none() || round.go_sent {
            return;
        }
        let Some(survivors) = self.tally(from, |r| &mut r.have_cut) else { return };
        let round = self.round.as_mut().expect("tallied");
        round.go_sent = true;
        let failed = round.wire();
        for r in survivors {
            self.send(r, &Header::Go { failed: failed.clone() }, cx);
        }
    }

    /// As coordinator: notes `from` in the round's set `pick`; the survivors, once all are in.
    fn tally(
        &mut self,
        from: Rank,
        pick: impl Fn(&mut Round) -> &mut BTreeSet<Rank>,
    ) -> Option<Vec<Rank>> {
        let round = self.round.as_mut()?;
        pick(round).insert(from);
        let set = round.failed.clone();
        let survivors = self.survivors(&set);
        let round = self.round.as_mut()?;
        survivors.iter().all(|r| pick(round).contains(r)).then_some(survivors)
    }

    fn on_go(&mut self, from: Rank, failed: Vec<Rank>, cx: &mut Cx<'_>) {
        let current = failed.iter().copied().collect::<BTreeSet<_>>() == self.failed;
        if self.leader != Some(from) || !current || !self.have_cut {
            return self.stats.refused += 1;
        }
        self.go = true;
        self.check_cut(cx);
    }

    fn on_prepared(&mut self, from: Rank, failed: Vec<Rank>, theirs: View, cx: &mut Cx<'_>) {
        let committed = self.committed;
        let Some(round) = self.round_for(&failed) else { return };
        let Some(view) = round.view.clone().filter(|v| !committed && *v == theirs) else {
            return;
        };
        let Some(survivors) = self.tally(from, |r| &mut r.prepared) else { return };
        let round = self.round.as_mut().expect("tallied");
        if let Some(Merge::Grant { to }) = round.merge {
            if !round.waiting {
                // Flushed to merge: the asking coordinator makes the next view. If it does
                // not within `merge_wait`, we go on with the view prepared.
                round.waiting = true;
                round.grant = survivors
                    .iter()
                    .filter(|r| !self.leavers.contains(r))
                    .filter_map(|r| self.view.member(*r))
                    .collect();
                let members = round.grant.clone();
                cx.up(Up::MergeReady { to, view: self.view.id, members });
                cx.timer_after(self.merge_wait, MERGE_TIMER);
                cx.timer_after(GRANT_AGAIN, GRANT_TIMER);
            }
            return;
        }
        self.commit(survivors, view, cx);
    }

    /// Every survivor has flushed and prepared the view: from here on every later round adopts
    /// it, so it is installed wherever it is installed at all.
    fn commit(&mut self, survivors: Vec<Rank>, view: View, cx: &mut Cx<'_>) {
        let Some(round) = self.round.as_ref() else { return };
        self.committed = true;
        let failed = round.wire();
        for r in survivors {
            self.send(r, &Header::Commit { failed: failed.clone(), view: view.clone() }, cx);
        }
    }

    /// As a coordinator that flushed to merge: the merged view, from the coordinator that made
    /// it. It must follow our view and hold every survivor.
    fn on_merged(&mut self, view: View, cx: &mut Cx<'_>) {
        let Some(round) = self.round.as_ref().filter(|r| r.waiting && !self.committed) else {
            return;
        };
        let survivors = self.survivors(&round.failed);
        let holds_all = survivors
            .iter()
            .filter(|r| !self.leavers.contains(r))
            .all(|r| self.view.member(*r).is_some_and(|e| view.contains(e)));
        if !view.prev.contains(&self.view.id) || !holds_all || view.id.ltime <= self.view.id.ltime {
            return self.stats.refused += 1;
        }
        self.committed = true;
        self.stats.merges += 1;
        let failed = round.wire();
        for r in survivors {
            self.send(r, &Header::Install { failed: failed.clone(), view: view.clone() }, cx);
        }
    }

    /// As a member that flushed: the merged view instead of the prepared one.
    fn on_install(&mut self, from: Rank, view: View, cx: &mut Cx<'_>) {
        if self.leader != Some(from) || !self.flushed || self.done {
            return self.stats.refused += 1;
        }
        self.done = true;
        self.stats.view_changes += 1;
        cx.up(Up::View(Arc::new(view)));
    }

    fn on_commit(&mut self, from: Rank, view: View, cx: &mut Cx<'_>) {
        let prepared = self.prepared.as_ref().filter(|p| **p == view);
        if self.leader != Some(from) || !self.flushed || self.done || prepared.is_none() {
            return self.stats.refused += 1;
        }
        self.done = true;
        self.stats.view_changes += 1;
        cx.up(Up::View(Arc::new(self.prepared.take().expect("checked above"))));
    }

    /// Once every cast of the cut is here: tells the leader, if it asked, and flushes once
    /// allowed.
    fn check_cut(&mut self, cx: &mut Cx<'_>) {
        let (Some((cut, _, wait)), Some(row), Some(leader)) = (&self.cut, &self.row, self.leader)
        else {
            return;
        };
        if self.flushing || !row.iter().zip(cut).all(|(r, c)| r >= c) {
            return;
        }
        if *wait && !self.have_cut {
            // Nobody delivers at the flush before every survivor holds the cut: a member that
            // delivered a safe cast and then failed could otherwise leave the others unable to
            // fetch it.
            self.have_cut = true;
            let failed = self.failed.iter().copied().collect();
            self.send(leader, &Header::HaveCut { failed }, cx);
        }
        if !*wait || self.go {
            self.flushing = true;
            cx.down(Down::Flush);
        }
    }
}

impl Layer for Gms {
    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        match ev {
            Up::Send { from, mut msg } => match msg.pop::<Header>() {
                Ok(Header::Pass) => cx.up(Up::Send { from, msg }),
                _ if from.index() >= self.n() => self.stats.bad_header += 1,
                Ok(Header::Fail { failed }) => self.on_fail(from, failed, cx),
                Ok(Header::FlushOk { failed, row, prepared, leaving }) => {
                    if leaving {
                        self.leavers.insert(from);
                    }
                    self.on_flush_ok(from, failed, row, prepared, cx)
                }
                Ok(Header::Suspicion(ranks)) => self.on_reported(from, &ranks, cx),
                Ok(Header::Missed(ranks)) => self.on_missed(&ranks, cx),
                Ok(Header::Leave) => self.on_leave(from, cx),
                Ok(Header::Cut { failed, cut, view, wait }) => {
                    self.on_cut(from, failed, cut, view, wait, cx)
                }
                Ok(Header::HaveCut { failed }) => self.on_have_cut(from, failed, cx),
                Ok(Header::Go { failed }) => self.on_go(from, failed, cx),
                Ok(Header::Prepared { failed, view }) => self.on_prepared(from, failed, view, cx),
                Ok(Header::Commit { failed: _, view }) => self.on_commit(from, view, cx),
                Ok(Header::Install { failed: _, view }) => self.on_install(from, view, cx),
                Err(_) => self.stats.bad_header += 1,
            },
            Up::Suspect(ranks) => {
                self.on_suspect(&ranks, cx);
                if !self.done {
                    cx.up(Up::Suspect(ranks));
                }
            }
            Up::Received(row) => {
                self.row = Some(row);
                self.check_cut(cx);
            }
            Up::BlockOk => {
                if let (Some(leader), Some(row)) = (self.leader, self.row.clone()) {
                    let failed = self.failed.iter().copied().collect();
                    let (prepared, leaving) = (self.prepared.clone(), self.leaving);
                    self.send(leader, &Header::FlushOk { failed, row, prepared, leaving }, cx);
                }
            }
            Up::Flush => {
                // Flushing implies a cut, which names the view to prepare.
                let view = self.cut.as_ref().map(|(_, view, _)| view.clone());
                if let (Some(leader), true, Some(view)) = (self.leader, self.flushing, view) {
                    self.flushed = true;
                    self.prepared = Some(view.clone());
                    let failed = self.failed.iter().copied().collect();
                    self.send(leader, &Header::Prepared { failed, view }, cx);
                }
            }
            ev => cx.up(ev),
        }
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Send(to, mut msg) => {
                msg.push(&Header::Pass);
                cx.down(Down::Send(to, msg));
            }
            Down::Leave if !self.done => {
                self.leaving = true;
                let me = self.me;
                match self.coordinator() {
                    c if c != me => self.send(c, &Header::Leave, cx),
                    _ => self.on_leave(me, cx),
                }
            }
            Down::Join(joiner) => {
                // The coordinator admits joiners by a view change (a flush with no failure).
                if !self.done
                    && !self.committed
                    && !self.view.contains(joiner)
                    && self.coordinator() == self.me
                {
                    // The first request waits `join_gather` for others that come with it, so
                    // that processes started together join in one view change.
                    if self.joiners.insert(joiner) && self.round.is_none() && !self.gathering {
                        self.gathering = true;
                        cx.timer_after(self.join_gather, JOIN_TIMER);
                    }
                }
            }
            Down::MergeAsk(from) => {
                // Another view's coordinator asks to merge: flush, then tell it.
                if self.may_start_merge() && from != cx.endpoint() && !self.view.contains(from) {
                    let set = self.failed.clone();
                    self.propose(set, cx);
                    if let Some(round) = self.round.as_mut() {
                        round.merge = Some(Merge::Grant { to: from });
                    }
                }
            }
            Down::MergeWith { view, members } => {
                // The other view has flushed: a change whose view takes its members in.
                if self.may_start_merge() && view != self.view.id {
                    let set = self.failed.clone();
                    self.propose(set, cx);
                    if let Some(round) = self.round.as_mut() {
                        round.merge = Some(Merge::With { view, members });
                    }
                }
            }
            Down::Install(view) => self.on_merged(view, cx),
            Down::BlockOk => {
                if self.block_asked && !self.app_blocked {
                    self.app_blocked = true;
                    cx.down(Down::Block);
                }
            }
            ev => cx.down(ev),
        }
    }

    fn timer(&mut self, token: Token, cx: &mut Cx<'_>) {
        if token.0 & 0xff == ROUND_TIMER {
            return self.on_round_timeout(token.0 >> 8, cx);
        }
        if token == Token(JOIN_TIMER) {
            self.gathering = false;
            if self.round.is_none()
                && !self.done
                && !self.committed
                && self.coordinator() == self.me
            {
                let set = self.failed.clone();
                self.propose(set, cx);
            }
            return;
        }
        let Some(round) = self.round.as_ref().filter(|r| r.waiting && !self.committed) else {
            return;
        };
        if token == Token(GRANT_TIMER) {
            // The grant travels outside the views, unacknowledged: say it again until the
            // merged view comes or we stop waiting.
            if let Some(Merge::Grant { to }) = round.merge {
                let members = round.grant.clone();
                cx.up(Up::MergeReady { to, view: self.view.id, members });
                cx.timer_after(GRANT_AGAIN, GRANT_TIMER);
            }
            return;
        }
        // No merged view came: go on with the view prepared.
        let (Some(view), failed) = (round.view.clone(), round.failed.clone()) else {
            return;
        };
        self.stats.merges_abandoned += 1;
        let survivors = self.survivors(&failed);
        self.commit(survivors, view, cx);
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        report("view_changes", self.stats.view_changes);
        report("merges", self.stats.merges);
        report("round_timeouts", self.stats.round_timeouts);
        report("merges_abandoned", self.stats.merges_abandoned);
        report("minority_exits", self.stats.minority_exits);
        report("failed", self.failed.len() as u64);
        report("refused", self.stats.refused);
        report("bad_header", self.stats.bad_header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use horus_core::testing::Harness;
    use horus_core::Endpoint;

    fn gms(n: usize, rank: u32) -> Harness {
        Harness::from_info(n, rank, &INFO, "")
    }

    fn control(h: &mut Harness, from: u32, hdr: Header) {
        let mut m = Message::control();
        m.push(&hdr);
        h.up(Up::Send { from: Rank(from), msg: Message::from_wire(m.to_bytes()) });
    }

    fn sent(h: &mut Harness) -> Vec<(Rank, Header)> {
        h.take_downs()
            .into_iter()
            .filter_map(|e| match e {
                Down::Send(to, mut m) => Some((to, m.pop::<Header>().unwrap())),
                _ => None,
            })
            .collect()
    }

    fn seqnos(v: &[u64]) -> Vec<Seqno> {
        v.iter().map(|&s| Seqno(s)).collect()
    }

    #[test]
    fn the_coordinator_answers_a_suspicion_with_fail_to_every_survivor() {
        let mut h = gms(4, 0);
        h.up(Up::Suspect(vec![Rank(2)]));
        let to: Vec<Rank> = sent(&mut h)
            .into_iter()
            .map(|(r, hdr)| {
                assert_eq!(hdr, Header::Fail { failed: vec![Rank(2)] });
                r
            })
            .collect();
        // Every member but the coordinator, which applies the failure to itself at once.
        assert_eq!(to, vec![Rank(1), Rank(2), Rank(3)]);
    }

    #[test]
    fn other_members_forward_suspicions_to_the_coordinator() {
        let mut h = gms(7, 2);
        h.up(Up::Suspect(vec![Rank(3)]));
        assert_eq!(sent(&mut h), vec![(Rank(0), Header::Suspicion(vec![Rank(3)]))]);
        // Suspecting the coordinator makes the next rank the coordinator... not us yet.
        h.up(Up::Suspect(vec![Rank(0)]));
        // Everything we suspect, so that it learns of rank 3 too.
        assert_eq!(sent(&mut h), vec![(Rank(1), Header::Suspicion(vec![Rank(0), Rank(3)]))]);
        // A suspicion we already reported is not sent again.
        h.up(Up::Suspect(vec![Rank(3)]));
        assert!(sent(&mut h).is_empty());
        // ... and us, once rank 1 is suspected too: we propose for all three.
        h.up(Up::Suspect(vec![Rank(1)]));
        let fails: Vec<Header> = sent(&mut h).into_iter().map(|(_, hdr)| hdr).collect();
        assert_eq!(fails, vec![Header::Fail { failed: vec![Rank(0), Rank(1), Rank(3)] }; 6]);
    }

    #[test]
    fn a_member_fails_the_ranks_blocks_and_reports_its_row() {
        let mut h = gms(3, 1);
        control(&mut h, 0, Header::Fail { failed: vec![Rank(2)] });
        let downs: Vec<&str> = h.take_downs().iter().map(|e| e.name()).collect();
        assert_eq!(downs, vec!["fail"]);
        assert!(matches!(h.take_ups().as_slice(), [Up::Block]));
        h.down(Down::BlockOk);
        assert!(matches!(h.take_downs().as_slice(), [Down::Block]));
        h.up(Up::Received(seqnos(&[4, 2, 7])));
        h.up(Up::BlockOk);
        assert_eq!(
            sent(&mut h),
            vec![(
                Rank(0),
                Header::FlushOk {
                    failed: vec![Rank(2)],
                    row: seqnos(&[4, 2, 7]),
                    prepared: None,
                    leaving: false
                }
            )]
        );
    }

    #[test]
    fn a_fail_from_a_member_that_is_not_coordinator_is_refused() {
        let mut h = gms(3, 2);
        control(&mut h, 1, Header::Fail { failed: vec![Rank(2)] });
        assert!(h.take_ups().is_empty());
        assert_eq!(h.counter("refused"), 1);
        // Rank 1 may lead once rank 0 is in the failed set.
        control(&mut h, 1, Header::Fail { failed: vec![Rank(0)] });
        assert!(matches!(h.take_ups().as_slice(), [Up::Block]));
    }

    fn ok(failed: &[u32], row: &[u64]) -> Header {
        let failed = failed.iter().map(|&r| Rank(r)).collect();
        Header::FlushOk { failed, row: seqnos(row), prepared: None, leaving: false }
    }

    fn ep(n: u64) -> Endpoint {
        Endpoint::new(n, 0)
    }

    #[test]
    fn the_cut_is_the_largest_row_and_the_view_is_committed_once_every_survivor_prepared() {
        let mut h = gms(3, 0);
        h.up(Up::Suspect(vec![Rank(1)]));
        h.take_downs();
        control(&mut h, 0, ok(&[1], &[3, 5, 1]));
        assert!(sent(&mut h).is_empty(), "rank 2 has not reported");
        control(&mut h, 2, ok(&[1], &[2, 6, 4]));
        let cuts = sent(&mut h);
        assert_eq!(cuts.len(), 2);
        let Header::Cut { failed, cut, view, wait } = &cuts[0].1 else { panic!("{cuts:?}") };
        assert_eq!(
            (failed.as_slice(), cut.clone(), *wait),
            ([Rank(1)].as_slice(), seqnos(&[3, 6, 4]), true)
        );
        assert_eq!(view.members, vec![ep(0), ep(2)]);
        assert_eq!(view.id.ltime, 1);
        assert_eq!(view.prev.len(), 1);
        // Both lack part of the cut: nobody flushes before both hold it.
        control(&mut h, 0, Header::HaveCut { failed: vec![Rank(1)] });
        assert!(sent(&mut h).is_empty());
        control(&mut h, 2, Header::HaveCut { failed: vec![Rank(1)] });
        let gos: Vec<Header> = sent(&mut h).into_iter().map(|(_, hdr)| hdr).collect();
        assert_eq!(gos, vec![Header::Go { failed: vec![Rank(1)] }; 2]);
        control(&mut h, 0, Header::Prepared { failed: vec![Rank(1)], view: view.clone() });
        assert!(sent(&mut h).is_empty(), "rank 2 may still need retransmissions from us");
        control(&mut h, 2, Header::Prepared { failed: vec![Rank(1)], view: view.clone() });
        let commits: Vec<Header> = sent(&mut h).into_iter().map(|(_, hdr)| hdr).collect();
        assert_eq!(commits, vec![Header::Commit { failed: vec![Rank(1)], view: view.clone() }; 2]);
    }

    #[test]
    fn with_equal_rows_the_cut_needs_no_go() {
        let mut h = gms(3, 0);
        h.up(Up::Suspect(vec![Rank(1)]));
        h.take_downs();
        control(&mut h, 0, ok(&[1], &[3, 5, 1]));
        control(&mut h, 2, ok(&[1], &[3, 5, 1]));
        let cuts = sent(&mut h);
        assert!(matches!(cuts[0].1, Header::Cut { wait: false, .. }), "{cuts:?}");
    }

    #[test]
    fn a_coordinator_left_with_a_minority_does_not_install() {
        let mut h = gms(4, 0);
        h.up(Up::Suspect(vec![Rank(1), Rank(2)]));
        h.take_downs();
        control(&mut h, 0, ok(&[1, 2], &[0; 4]));
        control(&mut h, 3, ok(&[1, 2], &[0; 4]));
        assert!(sent(&mut h).is_empty());
    }

    #[test]
    fn a_member_fetches_the_cut_waits_for_go_flushes_prepares_and_installs_on_commit() {
        let mut h = gms(3, 1);
        control(&mut h, 0, Header::Fail { failed: vec![Rank(2)] });
        h.down(Down::BlockOk);
        h.up(Up::Received(seqnos(&[1, 1, 0])));
        h.up(Up::BlockOk);
        h.take_downs();
        h.take_ups();
        let view = View {
            id: ViewId::new(1, ep(0)),
            members: vec![ep(0), ep(1)],
            prev: vec![ViewId::new(0, ep(0))],
        };
        let cut = Header::Cut {
            failed: vec![Rank(2)],
            cut: seqnos(&[2, 1, 1]),
            view: view.clone(),
            wait: true,
        };
        control(&mut h, 0, cut);
        let downs = h.take_downs();
        assert!(matches!(downs.as_slice(), [Down::Cut(_)]), "{downs:?}");
        h.up(Up::Received(seqnos(&[2, 1, 0])));
        assert!(h.take_downs().is_empty(), "rank 2's cast is still missing");
        h.up(Up::Received(seqnos(&[2, 1, 1])));
        assert_eq!(sent(&mut h), vec![(Rank(0), Header::HaveCut { failed: vec![Rank(2)] })]);
        control(&mut h, 0, Header::Go { failed: vec![Rank(2)] });
        assert!(matches!(h.take_downs().as_slice(), [Down::Flush]));
        h.up(Up::Flush);
        let prepared = Header::Prepared { failed: vec![Rank(2)], view: view.clone() };
        assert_eq!(sent(&mut h), vec![(Rank(0), prepared)]);
        assert!(h.take_ups().is_empty(), "no view before every survivor has prepared");
        // A commit of another view is refused.
        let other = View { id: ViewId::new(1, ep(1)), ..view.clone() };
        control(&mut h, 0, Header::Commit { failed: vec![Rank(2)], view: other });
        // So is one of the same id but other members: a proposal it replaced.
        let same_id = View { members: vec![ep(1)], ..view.clone() };
        control(&mut h, 0, Header::Commit { failed: vec![Rank(2)], view: same_id });
        assert!(h.take_ups().is_empty());
        assert!(h.take_ups().is_empty());
        control(&mut h, 0, Header::Commit { failed: vec![Rank(2)], view: view.clone() });
        match h.take_ups().as_slice() {
            [Up::View(v)] => assert_eq!(**v, view),
            other => panic!("{other:?}"),
        }
    }

    fn ranks(v: &[u32]) -> Vec<Rank> {
        v.iter().map(|&r| Rank(r)).collect()
    }

    #[test]
    fn a_coordinator_that_takes_over_adopts_a_view_its_predecessor_had_prepared() {
        // Rank 0 removed rank 4, had ranks 1 to 3 prepare {0, 1, 2, 3}, and crashed.
        let mut h = gms(5, 1);
        let theirs = View {
            id: ViewId::new(1, ep(0)),
            members: vec![ep(0), ep(1), ep(2), ep(3)],
            prev: vec![ViewId::new(0, ep(0))],
        };
        control(&mut h, 0, Header::Fail { failed: ranks(&[4]) });
        h.down(Down::BlockOk);
        h.up(Up::Received(seqnos(&[0; 5])));
        h.up(Up::BlockOk);
        let view = theirs.clone();
        control(
            &mut h,
            0,
            Header::Cut { failed: ranks(&[4]), cut: seqnos(&[0; 5]), view, wait: false },
        );
        h.up(Up::Flush);
        h.take_downs();
        // Rank 0 is suspected: rank 1 leads, and reports the prepared view to itself.
        h.up(Up::Suspect(vec![Rank(0)]));
        h.take_downs();
        h.up(Up::BlockOk);
        let reports = sent(&mut h);
        let Some((_, own @ Header::FlushOk { prepared: Some(p), .. })) = reports.last() else {
            panic!("{reports:?}")
        };
        assert_eq!(*p, theirs);
        control(&mut h, 1, own.clone());
        control(&mut h, 2, own.clone());
        // Rank 3 never got the cut: it prepared nothing, and the view is adopted all the same.
        control(&mut h, 3, ok(&[0, 4], &[0; 5]));
        let cuts = sent(&mut h);
        let Some((_, Header::Cut { view, .. })) = cuts.first() else { panic!("{cuts:?}") };
        assert_eq!(*view, theirs, "the view the crashed coordinator may have committed");
    }

    #[test]
    fn a_coordinator_replaces_a_view_of_its_own_it_never_committed() {
        let mut h = gms(5, 0);
        h.up(Up::Suspect(vec![Rank(4)]));
        h.take_downs();
        for r in [0, 1, 2, 3] {
            control(&mut h, r, ok(&[4], &[0; 5]));
        }
        let cuts = sent(&mut h);
        let Header::Cut { view: mine, .. } = cuts[0].1.clone() else { panic!("{cuts:?}") };
        // Rank 3 fails before preparing: a new round, whose reports carry our own view.
        h.up(Up::Suspect(vec![Rank(3)]));
        h.take_downs();
        let prepared = Some(mine.clone());
        for r in [0, 1, 2] {
            let failed = ranks(&[3, 4]);
            let hdr = Header::FlushOk {
                failed,
                row: seqnos(&[0; 5]),
                prepared: prepared.clone(),
                leaving: false,
            };
            control(&mut h, r, hdr);
        }
        let cuts = sent(&mut h);
        let Some((_, Header::Cut { view, .. })) = cuts.first() else { panic!("{cuts:?}") };
        assert_eq!(view.members, vec![ep(0), ep(1), ep(2)]);
    }

    fn evs(n: usize, rank: u32) -> Harness {
        Harness::from_info(n, rank, &INFO, "partitionable=true,merge_wait=1s")
    }

    /// Runs a change with no failure at the coordinator `h` of `n` members, all reporting
    /// equal rows; returns the view of its cut.
    fn flush_all(h: &mut Harness, n: u32) -> View {
        h.take_downs();
        for r in 0..n {
            control(h, r, ok(&[], &vec![0; n as usize]));
        }
        let cuts = sent(h);
        let Some((_, Header::Cut { view, .. })) = cuts.first() else { panic!("{cuts:?}") };
        for r in 0..n {
            control(h, r, Header::Prepared { failed: vec![], view: view.clone() });
        }
        view.clone()
    }

    #[test]
    fn a_view_asked_to_merge_flushes_grants_and_installs_the_merged_view() {
        let mut b = evs(2, 0);
        let asker = Endpoint::new(7, 0);
        b.down(Down::MergeAsk(asker));
        let own = flush_all(&mut b, 2);
        // Flushed: the grant goes to the asker, with our members; no commit yet.
        let ups = b.take_ups();
        let grant = ups.iter().find_map(|u| match u {
            Up::MergeReady { to, members, .. } => Some((*to, members.clone())),
            _ => None,
        });
        assert_eq!(grant, Some((asker, vec![ep(0), ep(1)])));
        assert!(sent(&mut b).is_empty());
        // The merged view comes: every survivor is told to install it.
        let merged = View {
            id: ViewId::new(3, asker),
            members: vec![asker, ep(0), ep(1)],
            prev: vec![ViewId::new(2, asker), own.prev[0]],
        };
        b.down(Down::Install(merged.clone()));
        let installs: Vec<Header> = sent(&mut b).into_iter().map(|(_, hdr)| hdr).collect();
        assert_eq!(installs, vec![Header::Install { failed: vec![], view: merged }; 2]);
        assert_eq!(b.counter("merges"), 1);
    }

    #[test]
    fn a_view_whose_merge_never_comes_goes_on_alone() {
        let mut b = evs(2, 0);
        b.down(Down::MergeAsk(Endpoint::new(7, 0)));
        let own = flush_all(&mut b, 2);
        b.advance(Duration::from_millis(1100));
        let commits: Vec<Header> = sent(&mut b)
            .into_iter()
            .map(|(_, hdr)| hdr)
            .filter(|h| matches!(h, Header::Commit { .. }))
            .collect();
        assert_eq!(commits, vec![Header::Commit { failed: vec![], view: own }; 2]);
        assert_eq!(b.counter("merges_abandoned"), 1);
    }

    #[test]
    fn the_asking_view_takes_the_granted_members_in() {
        let mut a = evs(2, 0);
        let other = ViewId::new(5, Endpoint::new(9, 0));
        let theirs = vec![Endpoint::new(9, 0), Endpoint::new(8, 0)];
        a.down(Down::MergeWith { view: other, members: theirs.clone() });
        let merged = flush_all(&mut a, 2);
        assert_eq!(merged.members, vec![ep(0), ep(1), theirs[0], theirs[1]]);
        assert_eq!(merged.id.ltime, 6, "past both views");
        assert_eq!(merged.prev[1], other);
        // Without partitionable membership nobody merges.
        let mut primary = gms(2, 0);
        primary.down(Down::MergeAsk(Endpoint::new(7, 0)));
        assert!(sent(&mut primary).is_empty());
    }

    #[test]
    fn join_requests_that_come_together_make_one_view_change() {
        let mut c = gms(2, 0);
        c.down(Down::Join(Endpoint::new(8, 0)));
        assert!(sent(&mut c).is_empty(), "the first request waits for others");
        c.advance(Duration::from_millis(1));
        c.down(Down::Join(Endpoint::new(9, 0)));
        c.advance(Duration::from_millis(2));
        let view = flush_all(&mut c, 2);
        assert_eq!(view.members, vec![ep(0), ep(1), Endpoint::new(8, 0), Endpoint::new(9, 0)]);
    }

    #[test]
    fn a_survivor_that_never_reports_is_suspected_when_the_round_times_out() {
        let mut c = evs(4, 0);
        c.up(Up::Suspect(vec![Rank(3)]));
        c.take_downs();
        // Rank 2 follows another coordinator and never answers us.
        control(&mut c, 0, ok(&[3], &[0; 4]));
        control(&mut c, 1, ok(&[3], &[0; 4]));
        assert!(sent(&mut c).is_empty());
        c.advance(Duration::from_millis(1100));
        let fails: Vec<Header> = sent(&mut c)
            .into_iter()
            .map(|(_, hdr)| hdr)
            .filter(|h| matches!(h, Header::Fail { .. }))
            .collect();
        assert_eq!(fails, vec![Header::Fail { failed: vec![Rank(2), Rank(3)] }; 3]);
        assert_eq!(c.counter("round_timeouts"), 1);
    }

    #[test]
    fn a_round_that_completes_in_time_suspects_nobody() {
        let mut c = gms(3, 0);
        c.up(Up::Suspect(vec![Rank(2)]));
        c.take_downs();
        control(&mut c, 0, ok(&[2], &[0; 3]));
        control(&mut c, 1, ok(&[2], &[0; 3]));
        let cuts = sent(&mut c);
        let Some((_, Header::Cut { view, .. })) = cuts.first() else { panic!("{cuts:?}") };
        for r in [0, 1] {
            control(&mut c, r, Header::Prepared { failed: vec![Rank(2)], view: view.clone() });
        }
        c.advance(Duration::from_millis(1100));
        assert_eq!(c.counter("round_timeouts"), 0);
    }

    #[test]
    fn a_failure_during_the_change_starts_a_new_round() {
        let mut h = gms(5, 1);
        control(&mut h, 0, Header::Fail { failed: vec![Rank(3)] });
        h.down(Down::BlockOk);
        h.up(Up::Received(seqnos(&[1, 1, 1, 0, 1])));
        h.up(Up::BlockOk);
        h.take_downs();
        // The coordinator fails too; rank 1 is now the coordinator and proposes both.
        h.up(Up::Suspect(vec![Rank(0)]));
        let fails: Vec<Header> = sent(&mut h).into_iter().map(|(_, hdr)| hdr).collect();
        assert_eq!(fails, vec![Header::Fail { failed: vec![Rank(0), Rank(3)] }; 4]);
    }

    #[test]
    fn a_member_that_can_reach_no_majority_leaves() {
        let mut h = gms(4, 1);
        h.up(Up::Suspect(vec![Rank(0), Rank(3)]));
        assert!(matches!(h.take_ups().as_slice(), [Up::Exit]));
        assert_eq!(h.counter("minority_exits"), 1);
    }

    #[test]
    fn a_leaving_member_takes_part_in_the_change_that_removes_it() {
        let mut h = gms(3, 2);
        h.down(Down::Leave);
        assert_eq!(sent(&mut h), vec![(Rank(0), Header::Leave)]);
        // The coordinator starts a change, in which the leaver reports as usual...
        let mut c = gms(3, 0);
        control(&mut c, 2, Header::Leave);
        let to: Vec<Rank> = sent(&mut c).into_iter().map(|(r, _)| r).collect();
        assert_eq!(to, vec![Rank(1), Rank(2)]);
        for r in [0, 1] {
            control(&mut c, r, ok(&[], &[0; 3]));
        }
        let leaving =
            Header::FlushOk { failed: vec![], row: seqnos(&[0; 3]), prepared: None, leaving: true };
        control(&mut c, 2, leaving);
        // ... and the view is without it.
        let cuts = sent(&mut c);
        let Some((_, Header::Cut { view, .. })) = cuts.first() else { panic!("{cuts:?}") };
        assert_eq!(view.members, vec![ep(0), ep(1)]);
    }

    #[test]
    fn a_leaver_counts_toward_the_majority() {
        // Of three, rank 1 crashed and rank 2 leaves: ranks 0 and 2 are a majority.
        let mut c = gms(3, 0);
        control(&mut c, 2, Header::Leave);
        c.up(Up::Suspect(vec![Rank(1)]));
        c.take_downs();
        control(&mut c, 0, ok(&[1], &[0; 3]));
        let leaving = Header::FlushOk {
            failed: vec![Rank(1)],
            row: seqnos(&[0; 3]),
            prepared: None,
            leaving: true,
        };
        control(&mut c, 2, leaving);
        let cuts = sent(&mut c);
        let Some((_, Header::Cut { view, .. })) = cuts.first() else { panic!("{cuts:?}") };
        assert_eq!(view.members, vec![ep(0)]);
    }

    #[test]
    fn a_leaving_coordinator_runs_the_change_that_removes_it() {
        let mut c = gms(3, 0);
        c.down(Down::Leave);
        let fails: Vec<Header> = sent(&mut c).into_iter().map(|(_, hdr)| hdr).collect();
        assert_eq!(fails, vec![Header::Fail { failed: vec![] }; 2]);
        // Alone, a member just leaves.
        let mut alone = gms(1, 0);
        alone.down(Down::Leave);
        assert!(matches!(alone.take_ups().as_slice(), [Up::Exit]));
    }

    #[test]
    fn the_coordinator_acts_on_a_reported_suspicion_once_confirmed() {
        let mut c = gms(5, 0);
        // Rank 3 alone cannot hear rank 4 (a one-way link): nothing happens.
        control(&mut c, 3, Header::Suspicion(vec![Rank(4)]));
        assert!(sent(&mut c).is_empty());
        // Once we suspect rank 4 too, we propose.
        c.up(Up::Suspect(vec![Rank(4)]));
        assert_eq!(sent(&mut c).len(), 4);
        // Or once a majority of the view reports it.
        let mut c = gms(5, 0);
        for r in [1, 2, 3] {
            assert!(sent(&mut c).is_empty());
            control(&mut c, r, Header::Suspicion(vec![Rank(4)]));
        }
        let fails: Vec<Header> = sent(&mut c).into_iter().map(|(_, hdr)| hdr).collect();
        assert_eq!(fails, vec![Header::Fail { failed: vec![Rank(4)] }; 4]);
    }

    #[test]
    fn a_member_that_failed_more_tells_a_coordinator_whom_it_missed() {
        let mut h = gms(5, 3);
        control(&mut h, 0, Header::Fail { failed: vec![Rank(4)] });
        h.take_downs();
        h.take_ups();
        // Rank 1 leads a round that failed rank 0 only.
        control(&mut h, 1, Header::Fail { failed: vec![Rank(0)] });
        assert_eq!(sent(&mut h), vec![(Rank(1), Header::Missed(vec![Rank(4)]))]);
        // Rank 1 proposes the union at once; told that it was failed itself, it leaves.
        let mut one = gms(5, 1);
        one.up(Up::Suspect(vec![Rank(0)]));
        one.take_downs();
        control(&mut one, 3, Header::Missed(vec![Rank(4)]));
        let fails: Vec<Header> = sent(&mut one).into_iter().map(|(_, hdr)| hdr).collect();
        assert_eq!(fails, vec![Header::Fail { failed: vec![Rank(0), Rank(4)] }; 4]);
        one.take_ups();
        control(&mut one, 3, Header::Missed(vec![Rank(1)]));
        assert!(matches!(one.take_ups().as_slice(), [Up::Exit]));
    }

    #[test]
    fn an_excluded_member_exits() {
        let mut h = gms(3, 2);
        control(&mut h, 0, Header::Fail { failed: vec![Rank(2)] });
        assert!(matches!(h.take_ups().as_slice(), [Up::Exit]));
    }

    #[test]
    fn application_sends_pass_with_one_byte_and_garbage_is_counted() {
        let mut h = gms(2, 0);
        h.down(Down::Send(Rank(1), Message::new(Bytes::from_static(b"x"))));
        let Down::Send(_, m) = h.take_downs().remove(0) else { panic!() };
        assert_eq!(m.len(), 2);
        h.up(Up::Send { from: Rank(1), msg: Message::from_wire(m.to_bytes()) });
        assert!(matches!(h.take_ups().as_slice(), [Up::Send { .. }]));
        h.up(Up::Send { from: Rank(1), msg: Message::from_wire(Bytes::from_static(&[0xff])) });
        control(&mut h, 7, Header::Suspicion(vec![Rank(0)]));
        assert_eq!(h.counter("bad_header"), 2);
    }
}
