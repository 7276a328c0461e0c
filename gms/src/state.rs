//! State transfer: a joiner is given the application's state as of the view it joined in,
//! streamed in chunks from the members of the view before (DESIGN.md section 2; Birman,
//! *Building Secure and Reliable Network Applications*, ch. 15, state transfer to a joining
//! process). Opt in with [`Member::with_state_transfer`](crate::Member::with_state_transfer).
//!
//! Snapshots. A member of the previous view that installs a view with joiners passes, right
//! after `Up::View`, `Up::Snapshot`: the application answers `Down::Snapshot(state)` as it
//! handles that event, so the state is that of the view boundary (every delivery of the old
//! view, none of the new). Every such *old member* keeps its snapshot ([`Snapshots`]) until
//! each joiner of that view has said `Done` or is no longer in the member's view; by virtual
//! synchrony their snapshots are all equal, so a joiner may take any part from any of them.
//!
//! Pulling. The welcome tells a joiner which members of its first view are old members. The
//! joiner ([`Pull`]) asks for the state by offset, [`CHUNK`] bytes an ask, with at most
//! [`WINDOW`] chunks asked and not yet received (a bound on what the transfer puts in flow
//! control and in the senders' queues, so the members keep delivering while a large state
//! streams), from one old member at a time, its *source*: first the lowest-ranked one. Chunks
//! are taken in order; the state is complete when its last byte is here. Meanwhile the member
//! holds the joiner's up events (see [`Member`](crate::Member)).
//!
//! Failover. The joiner turns to the next old member of its current view (in the welcome's
//! order, cyclically), asking again from the offset it reached, when its source is no longer
//! in its view, when the source answers `Lack` (it keeps no snapshot of that view), or when no
//! chunk came for [`RETRY`]. A new view also asks the window again: what was asked through the
//! old view's stack is lost with it. When no old member is left in its view, the state is lost
//! and the joiner cannot be a member: it stops (`Up::Exit`).
//!
//! Wire. The member's own point-to-point messages go through the current view's stack, behind a
//! one-byte [tag](TAG_STATE) that sets them apart from the application's sends ([`TAG_APP`]);
//! then a [`Wire`] header (postcard), and for a chunk its bytes as the payload, never copied by
//! the sender. An ask beyond the end of a state, a chunk that is not the next one wanted or
//! whose size is wrong, and any header that does not decode, are dropped and counted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use horus_core::{Endpoint, Time, View, ViewId};
use serde::{Deserialize, Serialize};

/// Bytes of state one ask asks for.
pub const CHUNK: u64 = 64 << 10;

/// Chunks a joiner has asked for and not yet received, at most.
pub const WINDOW: u64 = 8;

/// How long a joiner waits for the next chunk before it asks the next old member.
pub const RETRY: Duration = Duration::from_millis(250);

/// Asks an old member holds while its application prepares the snapshot they ask about; more
/// are dropped (the joiner asks again after [`RETRY`]).
pub const HELD_ASKS: usize = 4 * WINDOW as usize;

/// The most memory a joiner reserves ahead for a state; a larger one grows as it arrives.
const RESERVE: u64 = 256 << 20;

/// The tag byte in front of the application's point-to-point sends.
pub const TAG_APP: u8 = 0;

/// The tag byte in front of the member's own point-to-point messages (a [`Wire`] header).
pub const TAG_STATE: u8 = 1;

/// What the member says point to point about state, after [`TAG_STATE`].
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// Joiner to old member: the bytes of your snapshot of `view` from `offset`.
    Ask { view: ViewId, offset: u64 },
    /// Old member to joiner: the snapshot of `view`, `total` bytes long, from `offset`; the
    /// bytes are the payload: `min(CHUNK, total - offset)` of them.
    Chunk { view: ViewId, offset: u64, total: u64 },
    /// Old member to joiner: I keep no snapshot of `view`; ask another.
    Lack { view: ViewId },
    /// Joiner to old members: I have the state of `view`; drop your snapshot for me.
    Done { view: ViewId },
}

/// The old member's answer to an ask.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Send this chunk.
    Chunk { view: ViewId, offset: u64, total: u64, bytes: Bytes },
    /// Say `Lack`.
    Lack { view: ViewId },
    /// Held until the application gives the snapshot.
    Later,
    /// An ask beyond the end of the state, or too many held: dropped.
    Refused,
}

/// Asked of the application, not yet given.
#[derive(Debug)]
struct Pending {
    view: ViewId,
    joiners: BTreeSet<Endpoint>,
    asks: Vec<(Endpoint, u64)>,
}

/// A snapshot kept for the joiners that still need it.
#[derive(Debug)]
struct Kept {
    state: Bytes,
    joiners: BTreeSet<Endpoint>,
}

/// An old member's snapshots, by the view whose joiners they are for.
#[derive(Debug, Default)]
pub struct Snapshots {
    /// In the order asked of the application, which answers in that order.
    pending: VecDeque<Pending>,
    kept: BTreeMap<ViewId, Kept>,
}

impl Snapshots {
    /// The application was asked for its state as of `view`, for `joiners`.
    pub fn asked(&mut self, view: ViewId, joiners: BTreeSet<Endpoint>) {
        self.pending.push_back(Pending { view, joiners, asks: Vec::new() });
    }

    /// The application gave `state`, for the oldest snapshot asked. Returns that view and the
    /// asks held for it, to answer now; `None` if no snapshot was asked.
    pub fn given(&mut self, state: Bytes) -> Option<(ViewId, Vec<(Endpoint, u64)>)> {
        let p = self.pending.pop_front()?;
        if !p.joiners.is_empty() {
            self.kept.insert(p.view, Kept { state, joiners: p.joiners });
        }
        Some((p.view, p.asks))
    }

    /// `from` asks for the bytes of the snapshot of `view` from `offset`.
    pub fn on_ask(&mut self, from: Endpoint, view: ViewId, offset: u64) -> Answer {
        if let Some(k) = self.kept.get(&view) {
            let total = k.state.len() as u64;
            // An empty state is asked for at offset 0, and answered with no bytes.
            if offset > total || (offset == total && total > 0) {
                return Answer::Refused;
            }
            let end = total.min(offset + CHUNK);
            let bytes = k.state.slice(offset as usize..end as usize);
            return Answer::Chunk { view, offset, total, bytes };
        }
        match self.pending.iter_mut().find(|p| p.view == view) {
            Some(p) if p.asks.len() < HELD_ASKS => {
                p.asks.push((from, offset));
                Answer::Later
            }
            Some(_) => Answer::Refused,
            None => Answer::Lack { view },
        }
    }

    /// `from` has the state of `view` (it may say so before our application gave ours).
    pub fn on_done(&mut self, from: Endpoint, view: ViewId) {
        for p in self.pending.iter_mut().filter(|p| p.view == view) {
            p.joiners.remove(&from);
        }
        if let Some(k) = self.kept.get_mut(&view) {
            k.joiners.remove(&from);
            if k.joiners.is_empty() {
                self.kept.remove(&view);
            }
        }
    }

    /// A view is installed: joiners no longer in it will not ask; snapshots nobody needs go.
    pub fn on_view(&mut self, view: &View) {
        for p in &mut self.pending {
            p.joiners.retain(|j| view.contains(*j));
        }
        self.kept.retain(|_, k| {
            k.joiners.retain(|j| view.contains(*j));
            !k.joiners.is_empty()
        });
    }

    /// Snapshots kept, and their bytes.
    pub fn kept(&self) -> (usize, u64) {
        (self.kept.len(), self.kept.values().map(|k| k.state.len() as u64).sum())
    }
}

/// What a joiner's pull came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Still pulling.
    Pulling,
    /// The whole state.
    Complete(Bytes),
    /// No old member is left to ask: the state is lost.
    Lost,
}

/// Counts of the joiner's side.
#[derive(Debug, Default, Clone, Copy)]
pub struct PullStats {
    pub chunks: u64,
    /// Chunks that were not the next wanted (a duplicate, or an answer to an ask made of a
    /// former source): dropped.
    pub stale: u64,
    /// Chunks whose size or total disagreed with the state so far: dropped.
    pub bad: u64,
    /// Times the joiner turned to another old member.
    pub failovers: u64,
}

/// A joiner pulling the state of the view it joined in.
#[derive(Debug)]
pub struct Pull {
    me: Endpoint,
    view: ViewId,
    /// The old members, in rank order in `view`.
    olds: Vec<Endpoint>,
    /// Old members that said `Lack`.
    lacking: BTreeSet<Endpoint>,
    source: Option<Endpoint>,
    /// The state so far: its first `state.len()` bytes.
    state: Vec<u8>,
    total: Option<u64>,
    /// The end of what was asked of the source: the window is `state.len()..asked`.
    asked: u64,
    /// When the source is given up if no chunk comes.
    due: Time,
    pub stats: PullStats,
}

impl Pull {
    /// `me` joined `view`, whose old members are `olds`.
    pub fn new(me: Endpoint, view: ViewId, olds: Vec<Endpoint>, now: Time) -> Self {
        Pull {
            me,
            view,
            olds,
            lacking: BTreeSet::new(),
            source: None,
            state: Vec::new(),
            total: None,
            asked: 0,
            due: now + RETRY,
            stats: PullStats::default(),
        }
    }

    /// The view whose state is pulled.
    pub fn view(&self) -> ViewId {
        self.view
    }

    /// The old members of that view.
    pub fn olds(&self) -> &[Endpoint] {
        &self.olds
    }

    /// When [`Pull::on_timer`] is due.
    pub fn due(&self) -> Time {
        self.due
    }

    /// The old member asked now.
    pub fn source(&self) -> Option<Endpoint> {
        self.source
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.state.len() as u64
    }

    /// Starts, or starts again in a new view `current`: asks the window of the source if it is
    /// still in the view, else of the next old member. Asks go to `out`.
    pub fn on_view(
        &mut self,
        current: &View,
        now: Time,
        out: &mut Vec<(Endpoint, Wire)>,
    ) -> Outcome {
        let keep = self.source.filter(|s| self.candidate(*s, current));
        let after = self.source;
        self.source = keep.or_else(|| self.next(current, after));
        if after.is_some() && self.source != after {
            self.stats.failovers += 1;
        }
        self.ask_again(now, out)
    }

    /// No chunk came for [`RETRY`]: asks the next old member.
    pub fn on_timer(
        &mut self,
        current: &View,
        now: Time,
        out: &mut Vec<(Endpoint, Wire)>,
    ) -> Outcome {
        if now < self.due {
            return Outcome::Pulling;
        }
        self.source = self.next(current, self.source);
        self.stats.failovers += 1;
        self.ask_again(now, out)
    }

    /// `from` keeps no snapshot of `view`.
    pub fn on_lack(
        &mut self,
        from: Endpoint,
        view: ViewId,
        current: &View,
        now: Time,
        out: &mut Vec<(Endpoint, Wire)>,
    ) -> Outcome {
        if view != self.view {
            return Outcome::Pulling;
        }
        self.lacking.insert(from);
        if self.source != Some(from) {
            return Outcome::Pulling;
        }
        self.source = self.next(current, Some(from));
        self.stats.failovers += 1;
        self.ask_again(now, out)
    }

    /// A chunk of the snapshot of `view`, `total` bytes long, from `offset`.
    #[allow(clippy::too_many_arguments)]
    pub fn on_chunk(
        &mut self,
        view: ViewId,
        offset: u64,
        total: u64,
        bytes: &[u8],
        now: Time,
        out: &mut Vec<(Endpoint, Wire)>,
    ) -> Outcome {
        let have = self.state.len() as u64;
        if view != self.view || offset != have {
            self.stats.stale += 1;
            return Outcome::Pulling;
        }
        let size_ok = offset <= total && bytes.len() as u64 == CHUNK.min(total - offset);
        if !size_ok || self.total.is_some_and(|t| t != total) {
            self.stats.bad += 1;
            return Outcome::Pulling;
        }
        if self.total.is_none() {
            self.total = Some(total);
            self.state.reserve_exact(total.min(RESERVE) as usize);
        }
        self.stats.chunks += 1;
        self.state.extend_from_slice(bytes);
        self.due = now + RETRY;
        if self.state.len() as u64 == total {
            return Outcome::Complete(Bytes::from(std::mem::take(&mut self.state)));
        }
        self.ask_window(out);
        Outcome::Pulling
    }

    /// Whether `e` may be asked in `current`.
    fn candidate(&self, e: Endpoint, current: &View) -> bool {
        e != self.me && current.contains(e) && !self.lacking.contains(&e)
    }

    /// The first candidate after `after` in the old members' order, cyclically.
    fn next(&self, current: &View, after: Option<Endpoint>) -> Option<Endpoint> {
        let start = after.and_then(|a| self.olds.iter().position(|e| *e == a)).map_or(0, |i| i + 1);
        let n = self.olds.len();
        (0..n).map(|k| self.olds[(start + k) % n]).find(|e| self.candidate(*e, current))
    }

    /// Asks the whole window again, from the offset reached.
    fn ask_again(&mut self, now: Time, out: &mut Vec<(Endpoint, Wire)>) -> Outcome {
        if self.source.is_none() {
            return Outcome::Lost;
        }
        self.due = now + RETRY;
        self.asked = self.state.len() as u64;
        self.ask_window(out);
        Outcome::Pulling
    }

    /// Asks the source for chunks until the window is full or the state all asked for.
    fn ask_window(&mut self, out: &mut Vec<(Endpoint, Wire)>) {
        let Some(source) = self.source else { return };
        let have = self.state.len() as u64;
        self.asked = self.asked.max(have);
        match self.total {
            // Until the first chunk says how long the state is, one ask.
            None if self.asked == have => {
                out.push((source, Wire::Ask { view: self.view, offset: have }));
                self.asked = have + CHUNK;
            }
            None => {}
            Some(total) => {
                let end = total.min(have + WINDOW * CHUNK);
                while self.asked < end {
                    out.push((source, Wire::Ask { view: self.view, offset: self.asked }));
                    self.asked += CHUNK;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(n: u64) -> Endpoint {
        Endpoint::new(n, 0)
    }

    fn joiner() -> Endpoint {
        Endpoint::new(9, 1)
    }

    fn view(members: &[Endpoint]) -> View {
        View { id: ViewId::new(4, members[0]), members: members.to_vec(), prev: Vec::new() }
    }

    fn state(len: usize) -> Bytes {
        Bytes::from((0..len).map(|i| (i % 253) as u8).collect::<Vec<u8>>())
    }

    /// Old members keeping `st` for `v`'s joiner.
    fn kept(v: &View, st: &Bytes) -> Snapshots {
        let mut s = Snapshots::default();
        s.asked(v.id, BTreeSet::from([joiner()]));
        assert_eq!(s.given(st.clone()), Some((v.id, vec![])));
        s
    }

    /// Runs the pull against `olds` (by endpoint) until it completes or is lost; `drop_after`
    /// silences a member after answering that many asks.
    fn run(
        pull: &mut Pull,
        olds: &mut BTreeMap<Endpoint, Snapshots>,
        v: &View,
        first: Vec<(Endpoint, Wire)>,
        mut now: Time,
        drop_after: Option<(Endpoint, usize)>,
    ) -> Outcome {
        let mut asks: VecDeque<(Endpoint, Wire)> = first.into();
        let mut answered: BTreeMap<Endpoint, usize> = BTreeMap::new();
        for _ in 0..100_000 {
            let Some((to, w)) = asks.pop_front() else {
                // Nothing in flight: the timer fires.
                now = pull.due();
                let mut out = Vec::new();
                match pull.on_timer(v, now, &mut out) {
                    Outcome::Pulling => asks.extend(out),
                    other => return other,
                }
                continue;
            };
            let Wire::Ask { view, offset } = w else { panic!("{w:?}") };
            let n = answered.entry(to).or_default();
            if drop_after.is_some_and(|(who, k)| who == to && *n >= k) {
                continue;
            }
            *n += 1;
            let mut out = Vec::new();
            let got = match olds.get_mut(&to).expect("asks go to old members").on_ask(
                joiner(),
                view,
                offset,
            ) {
                Answer::Chunk { view, offset, total, bytes } => {
                    pull.on_chunk(view, offset, total, &bytes, now, &mut out)
                }
                Answer::Lack { view } => pull.on_lack(to, view, v, now, &mut out),
                other => panic!("{other:?}"),
            };
            match got {
                Outcome::Pulling => asks.extend(out),
                other => return other,
            }
        }
        panic!("the pull never ended");
    }

    #[test]
    fn a_joiner_pulls_states_from_empty_to_several_chunks_from_the_lowest_old_member() {
        let v = view(&[e(0), e(1), joiner()]);
        for len in [0, 1, CHUNK as usize - 1, CHUNK as usize, 10 * CHUNK as usize + 7] {
            let st = state(len);
            let mut olds = BTreeMap::from([(e(0), kept(&v, &st)), (e(1), kept(&v, &st))]);
            let mut pull = Pull::new(joiner(), v.id, vec![e(0), e(1)], Time::ZERO);
            let mut out = Vec::new();
            assert_eq!(pull.on_view(&v, Time::ZERO, &mut out), Outcome::Pulling);
            assert_eq!(out, vec![(e(0), Wire::Ask { view: v.id, offset: 0 })]);
            let got = run(&mut pull, &mut olds, &v, out, Time::ZERO, None);
            assert_eq!(got, Outcome::Complete(st), "len {len}");
            assert_eq!(pull.stats.failovers, 0);
        }
    }

    #[test]
    fn asks_stay_within_the_window() {
        let v = view(&[e(0), joiner()]);
        let st = state(100 * CHUNK as usize);
        let mut old = kept(&v, &st);
        let mut pull = Pull::new(joiner(), v.id, vec![e(0)], Time::ZERO);
        let mut out = Vec::new();
        pull.on_view(&v, Time::ZERO, &mut out);
        let Answer::Chunk { view, offset, total, bytes } = old.on_ask(joiner(), v.id, 0) else {
            panic!()
        };
        out.clear();
        pull.on_chunk(view, offset, total, &bytes, Time::ZERO, &mut out);
        let offsets: Vec<u64> = out
            .iter()
            .map(|(_, w)| match w {
                Wire::Ask { offset, .. } => *offset / CHUNK,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(offsets, (1..=WINDOW).collect::<Vec<_>>());
    }

    #[test]
    fn the_joiner_resumes_from_the_next_old_member_when_its_source_goes_silent() {
        let v = view(&[e(0), e(1), e(2), joiner()]);
        let st = state(30 * CHUNK as usize + 5);
        let mut olds: BTreeMap<Endpoint, Snapshots> =
            [e(0), e(1), e(2)].into_iter().map(|o| (o, kept(&v, &st))).collect();
        let mut pull = Pull::new(joiner(), v.id, vec![e(0), e(1), e(2)], Time::ZERO);
        let mut out = Vec::new();
        pull.on_view(&v, Time::ZERO, &mut out);
        // e(0) answers 12 asks, then crashes silently.
        let got = run(&mut pull, &mut olds, &v, out, Time::ZERO, Some((e(0), 12)));
        assert_eq!(got, Outcome::Complete(st));
        assert_eq!(pull.stats.failovers, 1);
        assert!(pull.stats.chunks >= 30);
    }

    #[test]
    fn a_view_without_the_source_turns_to_the_next_and_without_any_old_member_the_state_is_lost() {
        let v = view(&[e(0), e(1), joiner()]);
        let mut pull = Pull::new(joiner(), v.id, vec![e(0), e(1)], Time::ZERO);
        let mut out = Vec::new();
        pull.on_view(&v, Time::ZERO, &mut out);
        let v2 = View { id: ViewId::new(5, e(1)), members: vec![e(1), joiner()], prev: vec![v.id] };
        out.clear();
        assert_eq!(pull.on_view(&v2, Time::ZERO, &mut out), Outcome::Pulling);
        assert_eq!(out, vec![(e(1), Wire::Ask { view: v.id, offset: 0 })]);
        assert_eq!(pull.stats.failovers, 1);
        let v3 = View { id: ViewId::new(6, joiner()), members: vec![joiner()], prev: vec![v2.id] };
        assert_eq!(pull.on_view(&v3, Time::ZERO, &mut out), Outcome::Lost);
    }

    #[test]
    fn a_member_without_the_snapshot_says_lack_and_the_joiner_asks_another() {
        let v = view(&[e(0), e(1), joiner()]);
        let st = state(3);
        let mut olds = BTreeMap::from([(e(0), Snapshots::default()), (e(1), kept(&v, &st))]);
        let mut pull = Pull::new(joiner(), v.id, vec![e(0), e(1)], Time::ZERO);
        let mut out = Vec::new();
        pull.on_view(&v, Time::ZERO, &mut out);
        assert_eq!(run(&mut pull, &mut olds, &v, out, Time::ZERO, None), Outcome::Complete(st));
        // Nobody has it: lost, not a loop.
        let mut olds = BTreeMap::from([(e(0), Snapshots::default())]);
        let mut pull = Pull::new(joiner(), v.id, vec![e(0)], Time::ZERO);
        let mut out = Vec::new();
        pull.on_view(&v, Time::ZERO, &mut out);
        assert_eq!(run(&mut pull, &mut olds, &v, out, Time::ZERO, None), Outcome::Lost);
    }

    #[test]
    fn asks_wait_for_the_snapshot_and_are_answered_when_it_is_given() {
        let v = view(&[e(0), joiner()]);
        let mut s = Snapshots::default();
        s.asked(v.id, BTreeSet::from([joiner()]));
        assert_eq!(s.on_ask(joiner(), v.id, 0), Answer::Later);
        for _ in 1..HELD_ASKS {
            s.on_ask(joiner(), v.id, 0);
        }
        assert_eq!(s.on_ask(joiner(), v.id, 0), Answer::Refused, "held asks are bounded");
        let (id, asks) = s.given(state(10)).unwrap();
        assert_eq!((id, asks.len()), (v.id, HELD_ASKS));
        assert!(matches!(s.on_ask(joiner(), v.id, 0), Answer::Chunk { total: 10, .. }));
        assert_eq!(s.given(state(1)), None, "a snapshot nobody asked for");
    }

    #[test]
    fn out_of_range_asks_are_refused_and_garbage_chunks_dropped() {
        let v = view(&[e(0), joiner()]);
        let st = state(CHUNK as usize + 10);
        let mut s = kept(&v, &st);
        assert_eq!(s.on_ask(joiner(), v.id, st.len() as u64), Answer::Refused);
        assert_eq!(s.on_ask(joiner(), v.id, u64::MAX), Answer::Refused);
        assert_eq!(
            s.on_ask(joiner(), ViewId::new(99, e(3)), 0),
            Answer::Lack { view: ViewId::new(99, e(3)) }
        );
        let mut empty = kept(&v, &Bytes::new());
        assert!(matches!(empty.on_ask(joiner(), v.id, 0), Answer::Chunk { total: 0, .. }));
        assert_eq!(empty.on_ask(joiner(), v.id, 1), Answer::Refused);

        let mut pull = Pull::new(joiner(), v.id, vec![e(0)], Time::ZERO);
        let mut out = Vec::new();
        pull.on_view(&v, Time::ZERO, &mut out);
        // Wrong offset, wrong view, wrong size, offset past the total, absurd total.
        let t = st.len() as u64;
        assert_eq!(
            pull.on_chunk(v.id, CHUNK, t, &st[..10], Time::ZERO, &mut out),
            Outcome::Pulling
        );
        assert_eq!(
            pull.on_chunk(ViewId::new(1, e(1)), 0, t, &st[..10], Time::ZERO, &mut out),
            Outcome::Pulling
        );
        assert_eq!(pull.on_chunk(v.id, 0, t, &st[..10], Time::ZERO, &mut out), Outcome::Pulling);
        assert_eq!(
            pull.on_chunk(v.id, 0, u64::MAX, &st[..10], Time::ZERO, &mut out),
            Outcome::Pulling
        );
        assert_eq!((pull.stats.stale, pull.stats.bad, pull.received()), (2, 2, 0));
        // The real first chunk, then one claiming another total.
        pull.on_chunk(v.id, 0, t, &st[..CHUNK as usize], Time::ZERO, &mut out);
        assert_eq!(
            pull.on_chunk(v.id, CHUNK, t + 1, &st[CHUNK as usize..], Time::ZERO, &mut out),
            Outcome::Pulling
        );
        assert_eq!(pull.stats.bad, 3);
        assert_eq!(
            pull.on_chunk(v.id, CHUNK, t, &st[CHUNK as usize..], Time::ZERO, &mut out),
            Outcome::Complete(st)
        );
    }

    #[test]
    fn a_snapshot_is_dropped_once_its_joiners_are_done_or_gone() {
        let (j1, j2) = (Endpoint::new(7, 1), Endpoint::new(8, 1));
        let v = view(&[e(0), j1, j2]);
        let mut s = Snapshots::default();
        s.asked(v.id, BTreeSet::from([j1, j2]));
        s.given(state(100));
        s.on_done(j1, v.id);
        assert_eq!(s.kept(), (1, 100));
        // j2 leaves the group.
        s.on_view(&View { id: ViewId::new(5, e(0)), members: vec![e(0), j1], prev: vec![v.id] });
        assert_eq!(s.kept(), (0, 0));
        // A joiner done before the snapshot was given: it is not kept.
        s.asked(v.id, BTreeSet::from([j1]));
        s.on_done(j1, v.id);
        assert!(s.given(state(5)).is_some());
        assert_eq!(s.kept(), (0, 0));
        // A snapshot given after its joiners left is not kept.
        s.asked(v.id, BTreeSet::from([j1]));
        s.on_view(&view(&[e(0)]));
        assert!(s.given(state(5)).is_some());
        assert_eq!(s.kept(), (0, 0));
    }
}
