//! [`Member`]: a group member across views, the node a driver runs.
//!
//! It holds the stack of the current view. When the `gms` layer on top names the next view
//! (`Up::View`), the member builds a stack for it, passes the view to the application, and
//! hands the new stack the datagrams that arrived for that view before it was installed (up
//! to [`FUTURE`], the oldest dropped first and counted): members install a view at slightly
//! different times, and the first casts of a view must not be lost to the slowest. What the old
//! stack still had to send is sent first, and the old stack goes on running for [`LINGER`]
//! (datagrams of its view go to it; what it would deliver is dropped, its view being over): a
//! member that installs first must still retransmit what the others lack, the `Install` itself
//! among it.
//!
//! Joining: a member made by [`Member::join`] has no view yet. Every [`JOIN_EVERY`] it
//! multicasts a join request outside every view; the members hand it to their `gms` layer,
//! whose coordinator admits the joiner by a view change, and the coordinator of the new view
//! welcomes each joiner with it. A joiner allowed to found the group and that hears nothing
//! for [`JOIN_ATTEMPTS`] requests forms it alone (a singleton view); any other keeps asking, for
//! under the primary-partition policy a group formed apart from a running one would be a second
//! primary. A welcome that is lost is sent again when the joiner asks again.
//!
//! State transfer ([`Member::with_state_transfer`], off by default; the protocol is in
//! [`state`](crate::state)): the welcome also names the *old members* of the view, those that
//! were in the view before. An old member that installs a view with joiners passes
//! `Up::Snapshot` right after `Up::View`, and keeps the application's `Down::Snapshot` for the
//! joiners. A joiner passes `Up::View`, then holds every later up event (deliveries, later
//! views, snapshots asked of it) while it pulls the state, then passes `Up::State` and what it
//! held, in order. Two events are not held: `Up::Block`, which asks the application only to
//! stop sending, so that a view change (one removing the state's sender, say) is never stuck
//! behind the transfer; and `Up::Exit`, which drops what was held. What is held is not
//! bounded here: it is what the group delivers while the state streams.
//!
//! Point-to-point messages carry one tag byte in front, under the application's: `0` for the
//! application's sends (the byte is popped before `Up::Send` reaches it), `1` for the member's
//! own state transfer messages.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use horus_core::stack::{frame_outside, parse_outside, peek_view};
use horus_core::view_state::ViewState;
use horus_core::{
    Dest, Down, Endpoint, GroupName, Message, Node, Rng, Stack, StackError, StackPlan, Time,
    Transmit, Up, View, ViewId,
};
use serde::{Deserialize, Serialize};

use crate::state::{Answer, Outcome, Pull, PullStats, Snapshots, Wire, TAG_APP, TAG_STATE};

/// Datagrams held for views not yet installed.
pub const FUTURE: usize = 4096;

/// How long the stack of a view that ended goes on serving retransmissions.
pub const LINGER: Duration = Duration::from_millis(500);

/// How often a joiner asks to join.
pub const JOIN_EVERY: Duration = Duration::from_millis(50);

/// Requests a joiner makes before it forms a group of its own.
pub const JOIN_ATTEMPTS: u32 = 10;

/// How long a joiner heard from another, lower joiner leaves the founding to it.
pub const RIVAL_FOR: Duration = Duration::from_secs(2);

/// What travels outside every view.
#[derive(Serialize, Deserialize, Debug)]
enum Outside {
    /// "Let me in."
    Join,
    /// "You are in: this is the view, and these of its members were in the view before it"
    /// (they hold the state, for state transfer). Also the merged view, to the members of the
    /// other view.
    Welcome { view: View, olds: Vec<Endpoint> },
    /// Partitionable: "I coordinate this view of the group."
    Beacon(ViewId),
    /// Partitionable: "Merge your view into mine" (from the lower endpoint of two
    /// coordinators).
    MergeAsk,
    /// Partitionable: "My view has flushed; these members come."
    MergeGrant { view: ViewId, members: Vec<Endpoint> },
}

/// How often the first member of a view announces it, with partitionable membership.
pub const BEACON_EVERY: Duration = Duration::from_millis(500);

/// Counts of state transfer, both sides.
#[derive(Debug, Default)]
struct StateStats {
    /// Tags and state messages that did not decode, asks out of range, snapshots given
    /// unasked: dropped.
    bad: u64,
    chunks_sent: u64,
    lacks_sent: u64,
    /// Joins whose state could not be had from any old member.
    lost: u64,
    completed: u64,
}

/// One member of a group, across its views.
#[derive(Debug)]
pub struct Member {
    plan: StackPlan,
    group: GroupName,
    group_tag: u32,
    endpoint: Endpoint,
    rng: Rng,
    /// `None` while joining.
    stack: Option<Stack>,
    /// While joining: the view we would form alone; after: unused.
    alone: Arc<View>,
    /// While joining: requests made so far, and when the next is due.
    joining: Option<(u32, Time)>,
    /// Whether a joiner that hears nothing founds the group alone.
    may_found: bool,
    /// While joining: other joiners heard, and when last.
    rivals: BTreeMap<Endpoint, Time>,
    /// Requests a joiner that may found makes before it does.
    join_attempts: u32,
    /// The stack of the view that ended, still serving retransmissions until the deadline.
    old: Option<(Stack, Time)>,
    now: Time,
    up: VecDeque<Up>,
    out: VecDeque<Transmit>,
    future: VecDeque<Bytes>,
    exited: bool,
    /// The application asked to leave: asked again in every view until we are out.
    leaving: bool,
    views: u64,
    future_dropped: u64,
    /// Whether joiners are given the state.
    state_transfer: bool,
    /// The members of the current view that were in the view before (all, in a first view).
    olds: Vec<Endpoint>,
    /// As an old member: snapshots for joiners.
    snapshots: Snapshots,
    /// As a joiner: the state being pulled; while it is, up events are held.
    pull: Option<Pull>,
    /// The counts of the last pull that completed.
    pull_stats: PullStats,
    /// The last state pulled, and its old members: `Done` is said again in the next view, in
    /// case the view ended before it arrived.
    done: Option<(ViewId, Vec<Endpoint>)>,
    held: VecDeque<Up>,
    state: StateStats,
    /// Partitionable membership: views of the group discover each other and merge.
    partitionable: bool,
    /// When the next beacon is due, while first in a view with partitionable membership.
    beacon_due: Time,
}

impl Member {
    /// A member of `view` running `plan`.
    pub fn new(
        plan: StackPlan,
        group: GroupName,
        endpoint: Endpoint,
        view: Arc<View>,
        mut rng: Rng,
        now: Time,
    ) -> Result<Member, StackError> {
        let vs = ViewState::new(group.clone(), endpoint, view.clone())
            .ok_or(StackError::NotMember { endpoint })?;
        let stack = plan.build(vs, rng.fork(), now)?;
        let mut m = Member::empty(plan, group, endpoint, rng, now);
        m.stack = Some(stack);
        m.olds = view.members.clone();
        m.views = 1;
        Ok(m)
    }

    /// Turns state transfer on or off (off by default): with it, joiners are given the
    /// application's state as of the view they join in, before anything of that view is
    /// delivered to them (see the [module documentation](self)).
    pub fn with_state_transfer(mut self, on: bool) -> Self {
        self.state_transfer = on;
        self
    }

    /// How long a joiner that may found the group asks before it founds it alone
    /// ([`JOIN_ATTEMPTS`] × [`JOIN_EVERY`] by default; at least one request).
    pub fn with_discovery(mut self, timeout: Duration) -> Self {
        let every = JOIN_EVERY.as_nanos();
        self.join_attempts = u32::try_from(timeout.as_nanos().div_ceil(every)).unwrap_or(u32::MAX);
        self.join_attempts = self.join_attempts.max(1);
        self
    }

    /// A process that asks to join the group; if `may_found` and nobody answers, it forms the
    /// group alone.
    pub fn join(
        plan: StackPlan,
        group: GroupName,
        endpoint: Endpoint,
        rng: Rng,
        now: Time,
        may_found: bool,
    ) -> Result<Member, StackError> {
        // Check the plan builds, on the view we may form alone.
        let mut m = Member::empty(plan, group, endpoint, rng, now);
        let vs = ViewState::new(m.group.clone(), endpoint, m.alone.clone())
            .ok_or(StackError::NotMember { endpoint })?;
        m.plan.build(vs, Rng::new(0), now)?;
        m.joining = Some((0, now));
        m.may_found = may_found;
        Ok(m)
    }

    fn empty(plan: StackPlan, group: GroupName, endpoint: Endpoint, rng: Rng, now: Time) -> Self {
        let partitionable = plan.param("gms", "partitionable") == Some("true");
        let alone = Arc::new(View {
            id: ViewId::new(0, endpoint),
            members: vec![endpoint],
            prev: Vec::new(),
        });
        Member {
            plan,
            group_tag: group.tag(),
            group,
            endpoint,
            rng,
            stack: None,
            alone,
            joining: None,
            may_found: false,
            rivals: BTreeMap::new(),
            join_attempts: JOIN_ATTEMPTS,
            old: None,
            now,
            up: VecDeque::new(),
            out: VecDeque::new(),
            future: VecDeque::new(),
            exited: false,
            leaving: false,
            views: 0,
            future_dropped: 0,
            state_transfer: false,
            olds: Vec::new(),
            snapshots: Snapshots::default(),
            pull: None,
            pull_stats: PullStats::default(),
            done: None,
            held: VecDeque::new(),
            state: StateStats::default(),
            partitionable,
            beacon_due: now,
        }
    }

    /// Passes an up event to the application, or holds it while the state is pulled.
    fn emit(&mut self, ev: Up) {
        match ev {
            Up::Exit => {
                self.exited = true;
                self.held.clear();
                self.up.push_back(Up::Exit);
            }
            Up::Block => self.up.push_back(Up::Block),
            ev if self.pull.is_some() => self.held.push_back(ev),
            ev => self.up.push_back(ev),
        }
    }

    /// Sends a state transfer message to `to`, if it is in the current view.
    fn send_state(&mut self, to: Endpoint, wire: &Wire, payload: Bytes) {
        let now = self.now;
        let Some(stack) = self.stack.as_mut() else { return };
        let Some(rank) = stack.view().rank_of(to) else { return };
        let mut msg = Message::new(payload);
        msg.push(wire);
        msg.push(&TAG_STATE);
        stack.down(now, Down::Send(rank, msg));
    }

    /// A point-to-point message from the member at `from`: the application's, or ours.
    fn on_send(&mut self, from: horus_core::Rank, mut msg: Message) {
        let sender = self.stack.as_ref().and_then(|s| s.view().member(from));
        match (msg.pop::<u8>(), sender) {
            (Ok(TAG_APP), _) => self.emit(Up::Send { from, msg }),
            (Ok(TAG_STATE), Some(sender)) => match msg.pop::<Wire>() {
                Ok(wire) => self.on_wire(sender, wire, msg.into_payload()),
                Err(_) => self.state.bad += 1,
            },
            _ => self.state.bad += 1,
        }
    }

    fn on_wire(&mut self, from: Endpoint, wire: Wire, payload: Bytes) {
        match wire {
            Wire::Ask { view, offset } => {
                let answer = self.snapshots.on_ask(from, view, offset);
                self.answer(from, answer);
            }
            Wire::Done { view } => self.snapshots.on_done(from, view),
            Wire::Chunk { view, offset, total } => {
                let mut out = Vec::new();
                let now = self.now;
                let Some(pull) = self.pull.as_mut() else { return };
                let outcome = pull.on_chunk(view, offset, total, &payload, now, &mut out);
                self.pulled(outcome, out);
            }
            Wire::Lack { view } => {
                let mut out = Vec::new();
                let now = self.now;
                let (Some(pull), Some(stack)) = (self.pull.as_mut(), self.stack.as_ref()) else {
                    return;
                };
                let outcome = pull.on_lack(from, view, stack.view(), now, &mut out);
                self.pulled(outcome, out);
            }
        }
    }

    fn answer(&mut self, to: Endpoint, answer: Answer) {
        match answer {
            Answer::Chunk { view, offset, total, bytes } => {
                self.state.chunks_sent += 1;
                self.send_state(to, &Wire::Chunk { view, offset, total }, bytes);
            }
            Answer::Lack { view } => {
                self.state.lacks_sent += 1;
                self.send_state(to, &Wire::Lack { view }, Bytes::new());
            }
            Answer::Later => {}
            Answer::Refused => self.state.bad += 1,
        }
    }

    /// Tells the old members of `view` that the state is here, so they drop their snapshots.
    fn say_done(&mut self, view: ViewId, olds: &[Endpoint]) {
        for &old in olds {
            self.send_state(old, &Wire::Done { view }, Bytes::new());
        }
    }

    /// Sends the pull's asks; on completion passes the state and what was held; on loss, stops.
    fn pulled(&mut self, outcome: Outcome, asks: Vec<(Endpoint, Wire)>) {
        for (to, wire) in asks {
            self.send_state(to, &wire, Bytes::new());
        }
        match outcome {
            Outcome::Pulling => {}
            Outcome::Complete(state) => {
                let Some(pull) = self.pull.take() else { return };
                self.state.completed += 1;
                self.up.push_back(Up::State(state));
                self.up.extend(self.held.drain(..));
                self.say_done(pull.view(), pull.olds());
                self.done = Some((pull.view(), pull.olds().to_vec()));
                self.pull_stats = pull.stats;
            }
            Outcome::Lost => {
                // No member that has the state is left: this process cannot be a member.
                self.state.lost += 1;
                self.pull = None;
                self.emit(Up::Exit);
            }
        }
    }

    fn send_outside(&mut self, dest: Dest, what: &Outside) {
        let mut body = Message::control();
        body.push(what);
        let msg = frame_outside(&self.group, self.endpoint, body);
        self.out.push_back(Transmit { dest, msg });
    }

    /// Moves what the stack produced out, installing a view it names.
    fn pump(&mut self) {
        while let Some(ev) = self.stack.as_mut().and_then(|s| s.poll_up()) {
            match ev {
                Up::View(view) => self.install(view, None),
                Up::Send { from, msg } => self.on_send(from, msg),
                Up::MergeReady { to, view, members } => {
                    self.send_outside(Dest::Member(to), &Outside::MergeGrant { view, members });
                }
                ev => self.emit(ev),
            }
        }
    }

    /// Installs `view`; a joiner's welcome names its old members.
    fn install(&mut self, view: Arc<View>, welcome_olds: Option<Vec<Endpoint>>) {
        let previous = self.stack.as_ref().map(|s| s.view().clone());
        if let Some(stack) = self.stack.as_mut() {
            // What the old stack still had to send goes first.
            while let Some(t) = stack.poll_transmit() {
                self.out.push_back(t);
            }
        }
        let Some(vs) = ViewState::new(self.group.clone(), self.endpoint, view.clone()) else {
            return self.emit(Up::Exit);
        };
        let Ok(stack) = self.plan.build(vs, self.rng.fork(), self.now) else {
            // The plan built for the first view; it cannot fail for a later one.
            return self.emit(Up::Exit);
        };
        if let Some(old) = self.stack.replace(stack) {
            self.old = Some((old, self.now + LINGER));
        }
        let joined = self.joining.take().is_some();
        // Other joiners matter only while joining.
        self.rivals.clear();
        self.views += 1;
        // A view merged into the view of the coordinator that made it (its first `prev`): the
        // members that come from another view take that view's state, as joiners do, from
        // the members they did not know (the merging side first, joiners last).
        let merged_in = view.prev.len() > 1
            && previous.as_ref().is_some_and(|p| view.prev.first() != Some(&p.id));
        self.olds = match &previous {
            Some(p) if merged_in => {
                view.members.iter().copied().filter(|e| !p.contains(*e)).collect()
            }
            Some(p) => view.members.iter().copied().filter(|e| p.contains(*e)).collect(),
            None => welcome_olds.unwrap_or_else(|| view.members.clone()),
        };
        self.emit(Up::View(view.clone()));
        if self.state_transfer {
            let previous = previous.as_ref().filter(|_| !merged_in);
            self.state_at_install(&view, previous, joined || merged_in);
        }
        if self.leaving {
            // The request may not have been acted on in the view that ended.
            let now = self.now;
            if let Some(s) = self.stack.as_mut() {
                s.down(now, Down::Leave);
            }
        }
        // The first member of the new view welcomes those who joined (not the coordinator
        // that made it, which may have left, or failed and been taken over from).
        if view.members.first() == Some(&self.endpoint) {
            for e in
                view.members.iter().filter(|e| previous.as_ref().is_none_or(|p| !p.contains(**e)))
            {
                if *e != self.endpoint {
                    let welcome =
                        Outside::Welcome { view: (*view).clone(), olds: self.olds.clone() };
                    self.send_outside(Dest::Member(*e), &welcome);
                }
            }
        }
        // Datagrams that arrived early for this view; later ones stay held.
        let held = std::mem::take(&mut self.future);
        for d in held {
            match peek_view(&d) {
                Some((_, id)) if id == view.id => {
                    if let Some(s) = self.stack.as_mut() {
                        s.receive(self.now, d);
                    }
                }
                Some((_, id)) if id.ltime > view.id.ltime => self.future.push_back(d),
                _ => {}
            }
        }
        self.pump();
    }

    /// A datagram outside every view: a join request, or our welcome.
    fn on_outside(&mut self, from: Endpoint, mut body: Message) {
        match body.pop::<Outside>() {
            Ok(Outside::Join) => {
                let Some(stack) = self.stack.as_mut() else {
                    // Another joiner, as we are.
                    if self.joining.is_some() && from != self.endpoint {
                        self.rivals.insert(from, self.now);
                    }
                    return;
                };
                let view = stack.view().clone();
                if view.contains(from) {
                    // Its welcome was lost: the first member of its view sends it again.
                    if view.members.first() == Some(&self.endpoint) {
                        let welcome =
                            Outside::Welcome { view: view.clone(), olds: self.olds.clone() };
                        self.send_outside(Dest::Member(from), &welcome);
                    }
                } else {
                    stack.down(self.now, Down::Join(from));
                    self.pump();
                }
            }
            Ok(Outside::Welcome { view, olds }) => {
                if self.joining.is_some() && view.contains(self.endpoint) {
                    self.install(Arc::new(view), Some(olds));
                } else if let Some(stack) = self.stack.as_mut() {
                    // A merged view, for the view we are in (its coordinator checks it).
                    if view.prev.contains(&stack.view().id) && view.contains(self.endpoint) {
                        stack.down(self.now, Down::Install(view));
                        self.pump();
                    }
                }
            }
            Ok(Outside::Beacon(id)) => {
                // Of two first members of views of the group that hear each other, the lower
                // endpoint asks the other to merge.
                let Some(stack) = self.stack.as_mut() else { return };
                let view = stack.view();
                let first = view.members.first() == Some(&self.endpoint);
                if self.partitionable
                    && first
                    && id != view.id
                    && !view.contains(from)
                    && self.endpoint < from
                {
                    self.send_outside(Dest::Member(from), &Outside::MergeAsk);
                }
            }
            Ok(Outside::MergeAsk) => {
                if let Some(stack) = self.stack.as_mut() {
                    stack.down(self.now, Down::MergeAsk(from));
                    self.pump();
                }
            }
            Ok(Outside::MergeGrant { view, members }) => {
                let Some(stack) = self.stack.as_mut() else { return };
                let current = stack.view().clone();
                if current.prev.contains(&view) && current.members.first() == Some(&self.endpoint) {
                    // Merged already: the granting coordinator missed the merged view.
                    let welcome = Outside::Welcome { view: current, olds: self.olds.clone() };
                    self.send_outside(Dest::Member(from), &welcome);
                } else {
                    stack.down(self.now, Down::MergeWith { view, members });
                    self.pump();
                }
            }
            Err(_) => {}
        }
    }

    /// State transfer at the install of `view`: an old member asks its application for a
    /// snapshot if `view` has joiners; a joiner starts pulling; a pull under way goes on in it.
    fn state_at_install(&mut self, view: &View, previous: Option<&View>, joined: bool) {
        self.snapshots.on_view(view);
        if let Some((id, olds)) = self.done.take() {
            self.say_done(id, &olds);
        }
        if let Some(p) = previous {
            let joiners: BTreeSet<Endpoint> =
                view.members.iter().copied().filter(|e| !p.contains(*e)).collect();
            if !joiners.is_empty() {
                self.snapshots.asked(view.id, joiners);
                self.emit(Up::Snapshot);
            }
        } else if joined && self.olds.iter().any(|e| *e != self.endpoint) {
            self.pull = Some(Pull::new(self.endpoint, view.id, self.olds.clone(), self.now));
        }
        let now = self.now;
        let (Some(pull), Some(stack)) = (self.pull.as_mut(), self.stack.as_ref()) else {
            return;
        };
        let mut out = Vec::new();
        let outcome = pull.on_view(stack.view(), now, &mut out);
        self.pulled(outcome, out);
    }

    /// While pulling: asks the next old member if the source has been silent too long.
    fn on_pull_timer(&mut self) {
        let now = self.now;
        let (Some(pull), Some(stack)) = (self.pull.as_mut(), self.stack.as_ref()) else {
            return;
        };
        if now < pull.due() {
            return;
        }
        let mut out = Vec::new();
        let outcome = pull.on_timer(stack.view(), now, &mut out);
        self.pulled(outcome, out);
    }

    /// Runs the old stack, if any, dropping what it would deliver; ends it after its deadline.
    fn with_old(&mut self, f: impl FnOnce(&mut Stack)) {
        let Some((old, until)) = self.old.as_mut() else { return };
        if self.now >= *until {
            self.old = None;
            return;
        }
        f(old);
        while old.poll_up().is_some() {}
        while let Some(t) = old.poll_transmit() {
            self.out.push_back(t);
        }
    }

    /// Partitionable, as the first member of a view: announce it, so that other views of the
    /// group that can hear us merge with it.
    fn on_beacon_timer(&mut self) {
        let Some(stack) = self.stack.as_ref() else { return };
        let view = stack.view();
        if !self.partitionable || view.members.first() != Some(&self.endpoint) {
            return;
        }
        if self.now >= self.beacon_due {
            let id = view.id;
            // Spread out, so that coordinators do not all speak at once.
            let jitter = self.rng.range(0, BEACON_EVERY.as_micros() as u64 / 2);
            self.beacon_due = self.now + BEACON_EVERY + Duration::from_micros(jitter);
            self.send_outside(Dest::Cast, &Outside::Beacon(id));
        }
    }

    /// While joining: ask again, or form the group alone.
    fn on_join_timer(&mut self) {
        let Some((attempts, due)) = self.joining else { return };
        if self.now < due {
            return;
        }
        // Of joiners that hear each other and nobody else, only the lowest endpoint founds;
        // the others' requests then reach it, and they join its group: one group, not several.
        // A lower joiner that founded stops asking, and admitting us may take it a while: it
        // counts as long as `RIVAL_FOR` (one that crashed holds us up that long).
        let heard = RIVAL_FOR;
        let lower = self.rivals.iter().any(|(e, at)| *e < self.endpoint && self.now - *at <= heard);
        if self.may_found && attempts >= self.join_attempts && !lower {
            let alone = self.alone.clone();
            return self.install(alone, None);
        }
        self.joining = Some((attempts + 1, self.now + JOIN_EVERY));
        self.send_outside(Dest::Cast, &Outside::Join);
    }
}

impl Node for Member {
    fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    fn view(&self) -> &Arc<View> {
        match &self.stack {
            Some(s) => &s.view_state().view,
            None => &self.alone,
        }
    }

    fn down(&mut self, now: Time, ev: Down) {
        if self.exited {
            return;
        }
        self.now = self.now.max(now);
        let ev = match ev {
            Down::Leave => {
                self.leaving = true;
                Down::Leave
            }
            Down::Send(to, mut msg) => {
                msg.push(&TAG_APP);
                Down::Send(to, msg)
            }
            Down::Snapshot(state) => {
                match self.snapshots.given(state) {
                    Some((view, asks)) => {
                        for (from, offset) in asks {
                            let answer = self.snapshots.on_ask(from, view, offset);
                            self.answer(from, answer);
                        }
                    }
                    None => self.state.bad += 1,
                }
                return self.pump();
            }
            ev => ev,
        };
        if let Some(stack) = self.stack.as_mut() {
            stack.down(now, ev);
        }
        self.pump();
    }

    fn receive(&mut self, now: Time, datagram: Bytes) {
        if self.exited {
            return;
        }
        self.now = self.now.max(now);
        if let Some((from, body)) = parse_outside(self.group_tag, &datagram) {
            return self.on_outside(from, body);
        }
        if let Some((tag, id)) = peek_view(&datagram) {
            if tag == self.group_tag && self.old.as_ref().is_some_and(|(o, _)| o.view().id == id) {
                let now = self.now;
                return self.with_old(|old| old.receive(now, datagram));
            }
            let current = self.stack.as_ref().map(|s| s.view().id.ltime);
            if tag == self.group_tag && current.is_none_or(|c| id.ltime > c) {
                if self.future.len() >= FUTURE {
                    self.future.pop_front();
                    self.future_dropped += 1;
                }
                self.future.push_back(datagram);
                return;
            }
        }
        if let Some(stack) = self.stack.as_mut() {
            stack.receive(now, datagram);
        }
        self.pump();
    }

    fn on_timeout(&mut self, now: Time) {
        if self.exited {
            return;
        }
        self.now = self.now.max(now);
        self.on_join_timer();
        self.on_beacon_timer();
        self.on_pull_timer();
        self.with_old(|old| old.on_timeout(now));
        if let Some(stack) = self.stack.as_mut() {
            stack.on_timeout(now);
        }
        self.pump();
    }

    fn poll_timeout(&self) -> Option<Time> {
        if self.exited {
            return None;
        }
        let old =
            self.old.as_ref().map(|(o, until)| o.poll_timeout().unwrap_or(*until).min(*until));
        let join = self.joining.map(|(_, due)| due);
        let pull = self.pull.as_ref().map(|p| p.due());
        let beacon = self.stack.as_ref().and_then(|s| {
            let first = s.view().members.first() == Some(&self.endpoint);
            (self.partitionable && first).then_some(self.beacon_due)
        });
        [self.stack.as_ref().and_then(|s| s.poll_timeout()), old, join, pull, beacon]
            .into_iter()
            .flatten()
            .min()
    }

    fn poll_up(&mut self) -> Option<Up> {
        self.up.pop_front()
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front().or_else(|| self.stack.as_mut().and_then(|s| s.poll_transmit()))
    }

    fn backlog(&self) -> u64 {
        let old = self.old.as_ref().map_or(0, |(o, _)| o.backlog());
        self.stack.as_ref().map_or(0, |s| s.backlog()) + old
    }

    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut c = self.stack.as_ref().map(|s| s.counters()).unwrap_or_default();
        c.push(("member", "views", self.views));
        c.push(("member", "future_held", self.future.len() as u64));
        c.push(("member", "future_dropped", self.future_dropped));
        let pull = self.pull.as_ref().map_or(self.pull_stats, |p| p.stats);
        let (kept, kept_bytes) = self.snapshots.kept();
        for (k, v) in [
            ("state_bad", self.state.bad),
            ("state_chunks_sent", self.state.chunks_sent),
            ("state_lacks_sent", self.state.lacks_sent),
            ("state_lost", self.state.lost),
            ("state_completed", self.state.completed),
            ("state_pulling", u64::from(self.pull.is_some())),
            ("state_held", self.held.len() as u64),
            ("state_chunks_received", pull.chunks),
            ("state_stale", pull.stale),
            ("state_bad_chunks", pull.bad),
            ("state_failovers", pull.failovers),
            ("snapshots_kept", kept as u64),
            ("snapshot_bytes_kept", kept_bytes),
        ] {
            c.push(("member", k, v));
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn joiner(node: u64, discovery: Option<Duration>) -> Member {
        let registry = {
            let mut r = horus_layers::registry();
            r.add_layer(crate::INFO);
            r
        };
        let plan = registry.plan("vsync").expect("the default stack builds");
        let m = Member::join(
            plan,
            GroupName::new("g"),
            Endpoint::new(node, 0),
            Rng::new(1),
            Time::ZERO,
            true,
        )
        .expect("a joiner");
        match discovery {
            Some(d) => m.with_discovery(d),
            None => m,
        }
    }

    /// Runs the member's timers up to `until`; the time it installed its first view, if it did.
    fn run(m: &mut Member, until: Time, heard: impl Fn(Time) -> Option<Bytes>) -> Option<Time> {
        let mut now = Time::ZERO;
        while now <= until {
            if let Some(d) = heard(now) {
                m.receive(now, d);
            }
            m.on_timeout(now);
            while m.poll_transmit().is_some() {}
            while let Some(ev) = m.poll_up() {
                if matches!(ev, Up::View(_)) {
                    return Some(now);
                }
            }
            now += Duration::from_millis(10);
        }
        None
    }

    #[test]
    fn a_joiner_alone_founds_after_the_discovery_timeout() {
        let mut m = joiner(5, None);
        let at = run(&mut m, Time::from_millis(1000), |_| None).expect("founded");
        assert!(at >= Time::from_millis(500) && at < Time::from_millis(600), "{at}");
        let mut quick = joiner(5, Some(Duration::from_millis(120)));
        let at = run(&mut quick, Time::from_millis(1000), |_| None).expect("founded");
        assert!(at < Time::from_millis(200), "{at}");
    }

    #[test]
    fn a_joiner_that_hears_a_lower_joiner_leaves_the_founding_to_it() {
        let lower = {
            let mut body = Message::control();
            body.push(&Outside::Join);
            frame_outside(&GroupName::new("g"), Endpoint::new(2, 0), body).to_bytes()
        };
        let mut m = joiner(5, None);
        // The lower joiner asks until 600ms, then goes quiet (it founded, or crashed).
        let heard = |now: Time| (now <= Time::from_millis(600)).then(|| lower.clone());
        let at = run(&mut m, Time::from_millis(4000), heard).expect("founded in the end");
        assert!(at >= Time::from_millis(580) + RIVAL_FOR, "{at}");
        // A higher joiner does not hold it back.
        let higher = {
            let mut body = Message::control();
            body.push(&Outside::Join);
            frame_outside(&GroupName::new("g"), Endpoint::new(9, 0), body).to_bytes()
        };
        let mut m = joiner(5, None);
        let at = run(&mut m, Time::from_millis(1000), |_| Some(higher.clone())).expect("founded");
        assert!(at < Time::from_millis(600), "{at}");
    }
}
