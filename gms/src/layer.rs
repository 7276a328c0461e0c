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
//!    it has received), which it reports in `FlushOk { failed, row }`. Its row of a failed
//!    sender no longer grows, since the reliable layers refuse a failed member's new casts.
//! 3. With a `FlushOk` from every survivor for the same failed set, the coordinator fixes the
//!    cut, the largest row of each rank, and sends `Cut { failed, cut }`.
//! 4. A member passes `Down::Cut`, lets the reliable layers fetch what it lacks from the
//!    survivors, then `Down::Flush`: the reflected `Up::Flush` drains the ordering layers bottom
//!    up, the same way at every survivor, and the member reports `Flushed`.
//! 5. With `Flushed` from every survivor, the coordinator names the next view (the survivors in
//!    rank order, ltime one more, itself as coordinator) and sends `Install { view }`; each
//!    member names it up (`Up::View`) and builds a stack for it. No member leaves the view
//!    before every survivor holds the cut: until then they may need each other's
//!    retransmissions, which only the old view's stacks can give.
//!
//! A member that leaves (`Down::Leave`) is removed the same way, without waiting for a
//! suspicion: it tells the coordinator (the next rank, if it is the coordinator) that it is to
//! be suspected, and the change that follows excludes it, which it learns from `Fail` (and
//! answers with `Up::Exit`).
//!
//! A process asking to join (`Down::Join`, from the member's discovery) is admitted by the
//! coordinator in the same way: a change with no failure, whose view lists the joiners last.
//!
//! More failures before the change ends (the coordinator's among them) enlarge the failed set:
//! the (new) coordinator sends `Fail` again and everyone reports again, so several failures
//! make one view change. Only a majority of the view goes on (primary partition): a
//! coordinator left with a minority does not install.
//!
//! Headers, on point-to-point sends only (casts pass untouched): `Pass` on the application's
//! sends; `Fail`, `FlushOk`, `Suspicion`, `Install`. No parameters, no timers: suspicion and
//! retransmission are the layers' below.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use horus_core::spec::Args;
use horus_core::{
    Cx, Down, Endpoint, Layer, LayerInfo, Message, ParamError, Props, Rank, Seqno, Up, View,
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

fn build(_: &mut Args<'_>, vs: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    Ok(Box::new(Gms::new(vs)))
}

/// What this layer writes on the wire.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
enum Header {
    /// An application send, passed through.
    Pass,
    /// Coordinator to survivors: these have failed; block, and report.
    Fail { failed: Vec<Rank> },
    /// Member to coordinator: blocked, and this is my row, after `failed` failed.
    FlushOk { failed: Vec<Rank>, row: Vec<Seqno> },
    /// Member to coordinator: I suspect these.
    Suspicion(Vec<Rank>),
    /// Coordinator to survivors: deliver exactly the casts up to the cut, then flush.
    Cut { failed: Vec<Rank>, cut: Vec<Seqno> },
    /// Member to coordinator: flushed, for this failed set.
    Flushed { failed: Vec<Rank> },
    /// Coordinator to survivors: every survivor has flushed; install this view.
    Install { view: View },
}

#[derive(Debug, Default)]
struct Stats {
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
    /// Coordinating: the failed set proposed, the rows reported for it, whether the cut was
    /// sent, who has flushed, whether the view was sent.
    proposed: Option<BTreeSet<Rank>>,
    oks: BTreeMap<Rank, Vec<Seqno>>,
    cut_sent: bool,
    flushed_by: BTreeSet<Rank>,
    installed: bool,
    /// Coordinating: processes asking to join, admitted in the next view.
    joiners: BTreeSet<Endpoint>,
    /// As member: the cut to reach, whether the flush began and ended.
    cut: Option<Vec<Seqno>>,
    flushing: bool,
    flushed: bool,
    done: bool,
    stats: Stats,
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
            proposed: None,
            oks: BTreeMap::new(),
            cut_sent: false,
            flushed_by: BTreeSet::new(),
            installed: false,
            joiners: BTreeSet::new(),
            cut: None,
            flushing: false,
            flushed: false,
            done: false,
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

    fn on_suspect(&mut self, ranks: &[Rank], cx: &mut Cx<'_>) {
        let new: Vec<Rank> = ranks
            .iter()
            .copied()
            .filter(|r| *r != self.me && r.index() < self.n() && !self.failed.contains(r))
            .collect();
        if new.is_empty() || self.done {
            return;
        }
        self.suspected.extend(new.iter().copied());
        // Primary partition: a member that can reach no majority of the view cannot go on in
        // any later view; it leaves (and may rejoin as a new incarnation).
        let reachable = (0..self.n() as u32)
            .map(Rank)
            .filter(|r| !self.failed.contains(r) && !self.suspected.contains(r))
            .count();
        if 2 * reachable <= self.n() {
            self.done = true;
            self.stats.minority_exits += 1;
            return cx.up(Up::Exit);
        }
        let coord = self.coordinator();
        if coord == self.me {
            let set: BTreeSet<Rank> = self.failed.union(&self.suspected).copied().collect();
            self.propose(set, cx);
        } else {
            self.send(coord, &Header::Suspicion(new), cx);
        }
    }

    /// As coordinator: ask every survivor to block and report, for this failed set.
    fn propose(&mut self, set: BTreeSet<Rank>, cx: &mut Cx<'_>) {
        if self.proposed.as_ref() == Some(&set) || self.installed {
            return;
        }
        self.oks.clear();
        self.cut_sent = false;
        self.flushed_by.clear();
        self.proposed = Some(set.clone());
        let failed: Vec<Rank> = set.iter().copied().collect();
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
            self.send(from, &Header::Suspicion(missed), cx);
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
        // A new round: report, fetch and flush again for the larger failed set.
        self.cut = None;
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

    fn survivors(&self, failed: &BTreeSet<Rank>) -> Vec<Rank> {
        (0..self.n() as u32).map(Rank).filter(|r| !failed.contains(r)).collect()
    }

    fn on_flush_ok(&mut self, from: Rank, failed: Vec<Rank>, row: Vec<Seqno>, cx: &mut Cx<'_>) {
        let set: BTreeSet<Rank> = failed.iter().copied().collect();
        if self.proposed.as_ref() != Some(&set) || row.len() != self.n() || self.cut_sent {
            return;
        }
        self.oks.insert(from, row);
        let survivors = self.survivors(&set);
        // Primary partition: only a majority of the view goes on.
        if !survivors.iter().all(|r| self.oks.contains_key(r)) || 2 * survivors.len() <= self.n() {
            return;
        }
        let mut cut = vec![Seqno(0); self.n()];
        for row in self.oks.values() {
            for (c, s) in cut.iter_mut().zip(row) {
                *c = (*c).max(*s);
            }
        }
        self.cut_sent = true;
        for r in survivors {
            self.send(r, &Header::Cut { failed: failed.clone(), cut: cut.clone() }, cx);
        }
    }

    fn on_cut(&mut self, from: Rank, failed: Vec<Rank>, cut: Vec<Seqno>, cx: &mut Cx<'_>) {
        let current = failed.iter().copied().collect::<BTreeSet<_>>() == self.failed;
        if self.leader != Some(from) || !current || cut.len() != self.n() || self.cut.is_some() {
            return self.stats.refused += 1;
        }
        self.cut = Some(cut.clone());
        cx.down(Down::Cut(cut));
        self.check_cut(cx);
    }

    fn on_flushed(&mut self, from: Rank, failed: Vec<Rank>, cx: &mut Cx<'_>) {
        let set: BTreeSet<Rank> = failed.into_iter().collect();
        if self.proposed.as_ref() != Some(&set) || !self.cut_sent || self.installed {
            return;
        }
        self.flushed_by.insert(from);
        let survivors = self.survivors(&set);
        if !survivors.iter().all(|r| self.flushed_by.contains(r)) {
            return;
        }
        let mut members: Vec<Endpoint> =
            survivors.iter().filter_map(|r| self.view.member(*r)).collect();
        // Joiners come last, the oldest members keeping the lowest ranks.
        members.extend(self.joiners.iter().filter(|e| !self.view.contains(**e)));
        let view = View {
            id: ViewId::new(self.view.id.ltime + 1, cx.endpoint()),
            members,
            prev: vec![self.view.id],
        };
        self.installed = true;
        for r in survivors {
            self.send(r, &Header::Install { view: view.clone() }, cx);
        }
    }

    fn on_install(&mut self, from: Rank, view: View, cx: &mut Cx<'_>) {
        if self.leader != Some(from) || !self.flushed || self.done {
            return self.stats.refused += 1;
        }
        self.done = true;
        self.stats.view_changes += 1;
        cx.up(Up::View(Arc::new(view)));
    }

    /// Flushes once every cast of the cut is here.
    fn check_cut(&mut self, cx: &mut Cx<'_>) {
        let (Some(cut), Some(row)) = (&self.cut, &self.row) else { return };
        if !self.flushing && row.iter().zip(cut).all(|(r, c)| r >= c) {
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
                Ok(Header::FlushOk { failed, row }) => self.on_flush_ok(from, failed, row, cx),
                Ok(Header::Suspicion(ranks)) => self.on_suspect(&ranks, cx),
                Ok(Header::Cut { failed, cut }) => self.on_cut(from, failed, cut, cx),
                Ok(Header::Flushed { failed }) => self.on_flushed(from, failed, cx),
                Ok(Header::Install { view }) => self.on_install(from, view, cx),
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
                    self.send(leader, &Header::FlushOk { failed, row }, cx);
                }
            }
            Up::Flush => {
                if let (Some(leader), true) = (self.leader, self.flushing) {
                    self.flushed = true;
                    let failed = self.failed.iter().copied().collect();
                    self.send(leader, &Header::Flushed { failed }, cx);
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
                // Ask the coordinator, or the next in rank if we are it, to remove us.
                let me = self.me;
                let to = (0..self.n() as u32)
                    .map(Rank)
                    .find(|r| *r != me && !self.failed.contains(r) && !self.suspected.contains(r));
                match to {
                    Some(to) => self.send(to, &Header::Suspicion(vec![me]), cx),
                    None => {
                        // Alone: nobody to tell.
                        self.done = true;
                        cx.up(Up::Exit);
                    }
                }
            }
            Down::Join(joiner) => {
                // The coordinator admits joiners by a view change (a flush with no failure).
                if !self.done
                    && !self.installed
                    && !self.view.contains(joiner)
                    && self.coordinator() == self.me
                {
                    self.joiners.insert(joiner);
                    if self.proposed.is_none() {
                        let set = self.failed.clone();
                        self.propose(set, cx);
                    }
                }
            }
            Down::BlockOk => {
                if self.block_asked && !self.app_blocked {
                    self.app_blocked = true;
                    cx.down(Down::Block);
                }
            }
            ev => cx.down(ev),
        }
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        report("view_changes", self.stats.view_changes);
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
        assert_eq!(sent(&mut h), vec![(Rank(1), Header::Suspicion(vec![Rank(0)]))]);
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
            vec![(Rank(0), Header::FlushOk { failed: vec![Rank(2)], row: seqnos(&[4, 2, 7]) })]
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

    #[test]
    fn the_cut_is_the_largest_row_and_the_view_waits_for_every_survivor_to_flush() {
        let mut h = gms(3, 0);
        h.up(Up::Suspect(vec![Rank(1)]));
        h.take_downs();
        control(&mut h, 0, Header::FlushOk { failed: vec![Rank(1)], row: seqnos(&[3, 5, 1]) });
        assert!(sent(&mut h).is_empty(), "rank 2 has not reported");
        control(&mut h, 2, Header::FlushOk { failed: vec![Rank(1)], row: seqnos(&[2, 6, 4]) });
        let cuts = sent(&mut h);
        assert_eq!(cuts.len(), 2);
        assert_eq!(cuts[0].1, Header::Cut { failed: vec![Rank(1)], cut: seqnos(&[3, 6, 4]) });
        control(&mut h, 0, Header::Flushed { failed: vec![Rank(1)] });
        assert!(sent(&mut h).is_empty(), "rank 2 may still need retransmissions from us");
        control(&mut h, 2, Header::Flushed { failed: vec![Rank(1)] });
        let installs = sent(&mut h);
        assert_eq!(installs.len(), 2);
        let Header::Install { view } = &installs[0].1 else { panic!("{installs:?}") };
        assert_eq!(view.members, vec![Endpoint::new(0, 0), Endpoint::new(2, 0)]);
        assert_eq!(view.id.ltime, 1);
        assert_eq!(view.prev.len(), 1);
    }

    #[test]
    fn a_coordinator_left_with_a_minority_does_not_install() {
        let mut h = gms(4, 0);
        h.up(Up::Suspect(vec![Rank(1), Rank(2)]));
        h.take_downs();
        control(
            &mut h,
            0,
            Header::FlushOk { failed: vec![Rank(1), Rank(2)], row: seqnos(&[0; 4]) },
        );
        control(
            &mut h,
            3,
            Header::FlushOk { failed: vec![Rank(1), Rank(2)], row: seqnos(&[0; 4]) },
        );
        assert!(sent(&mut h).is_empty());
    }

    #[test]
    fn a_member_fetches_the_cut_flushes_reports_and_then_installs() {
        let mut h = gms(3, 1);
        control(&mut h, 0, Header::Fail { failed: vec![Rank(2)] });
        h.down(Down::BlockOk);
        h.up(Up::Received(seqnos(&[1, 1, 0])));
        h.up(Up::BlockOk);
        h.take_downs();
        h.take_ups();
        control(&mut h, 0, Header::Cut { failed: vec![Rank(2)], cut: seqnos(&[2, 1, 1]) });
        let downs = h.take_downs();
        assert!(matches!(downs.as_slice(), [Down::Cut(_)]), "{downs:?}");
        h.up(Up::Received(seqnos(&[2, 1, 0])));
        assert!(h.take_downs().is_empty(), "rank 2's cast is still missing");
        h.up(Up::Received(seqnos(&[2, 1, 1])));
        assert!(matches!(h.take_downs().as_slice(), [Down::Flush]));
        h.up(Up::Flush);
        assert_eq!(sent(&mut h), vec![(Rank(0), Header::Flushed { failed: vec![Rank(2)] })]);
        assert!(h.take_ups().is_empty(), "no view before every survivor has flushed");
        let view = View::initial(vec![Endpoint::new(0, 0), Endpoint::new(1, 0)]);
        control(&mut h, 0, Header::Install { view: view.clone() });
        match h.take_ups().as_slice() {
            [Up::View(v)] => assert_eq!(**v, view),
            other => panic!("{other:?}"),
        }
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
    fn a_leaving_member_asks_the_coordinator_to_remove_it() {
        let mut h = gms(3, 2);
        h.down(Down::Leave);
        assert_eq!(sent(&mut h), vec![(Rank(0), Header::Suspicion(vec![Rank(2)]))]);
        // A leaving coordinator asks the next in rank.
        let mut h = gms(3, 0);
        h.down(Down::Leave);
        assert_eq!(sent(&mut h), vec![(Rank(1), Header::Suspicion(vec![Rank(0)]))]);
        // ... which proposes to remove it, telling it too.
        let mut next = gms(3, 1);
        control(&mut next, 0, Header::Suspicion(vec![Rank(0)]));
        let to: Vec<Rank> = sent(&mut next).into_iter().map(|(r, _)| r).collect();
        assert_eq!(to, vec![Rank(0), Rank(2)]);
    }

    #[test]
    fn a_member_that_failed_more_tells_a_coordinator_whom_it_missed() {
        let mut h = gms(5, 3);
        control(&mut h, 0, Header::Fail { failed: vec![Rank(4)] });
        h.take_downs();
        h.take_ups();
        // Rank 1 leads a round that failed rank 0 only.
        control(&mut h, 1, Header::Fail { failed: vec![Rank(0)] });
        assert_eq!(sent(&mut h), vec![(Rank(1), Header::Suspicion(vec![Rank(4)]))]);
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
