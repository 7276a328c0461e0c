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

use std::collections::VecDeque;
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

/// Datagrams held for views not yet installed.
pub const FUTURE: usize = 4096;

/// How long the stack of a view that ended goes on serving retransmissions.
pub const LINGER: Duration = Duration::from_millis(500);

/// How often a joiner asks to join.
pub const JOIN_EVERY: Duration = Duration::from_millis(50);

/// Requests a joiner makes before it forms a group of its own.
pub const JOIN_ATTEMPTS: u32 = 10;

/// What travels outside every view.
#[derive(Serialize, Deserialize, Debug)]
enum Outside {
    /// "Let me in."
    Join,
    /// "You are in: this is the view."
    Welcome(View),
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
        m.views = 1;
        Ok(m)
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
            old: None,
            now,
            up: VecDeque::new(),
            out: VecDeque::new(),
            future: VecDeque::new(),
            exited: false,
            leaving: false,
            views: 0,
            future_dropped: 0,
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
                Up::View(view) => self.install(view),
                Up::Exit => {
                    self.exited = true;
                    self.up.push_back(Up::Exit);
                }
                ev => self.up.push_back(ev),
            }
        }
    }

    fn install(&mut self, view: Arc<View>) {
        let previous = self.stack.as_ref().map(|s| s.view().clone());
        if let Some(stack) = self.stack.as_mut() {
            // What the old stack still had to send goes first.
            while let Some(t) = stack.poll_transmit() {
                self.out.push_back(t);
            }
        }
        let Some(vs) = ViewState::new(self.group.clone(), self.endpoint, view.clone()) else {
            self.exited = true;
            self.up.push_back(Up::Exit);
            return;
        };
        let Ok(stack) = self.plan.build(vs, self.rng.fork(), self.now) else {
            // The plan built for the first view; it cannot fail for a later one.
            self.exited = true;
            self.up.push_back(Up::Exit);
            return;
        };
        if let Some(old) = self.stack.replace(stack) {
            self.old = Some((old, self.now + LINGER));
        }
        self.joining = None;
        self.views += 1;
        self.up.push_back(Up::View(view.clone()));
        if self.leaving {
            // The request may not have been acted on in the view that ended.
            let now = self.now;
            if let Some(s) = self.stack.as_mut() {
                s.down(now, Down::Leave);
            }
        }
        // The coordinator of the new view welcomes those who joined.
        if view.id.coord == self.endpoint {
            for e in
                view.members.iter().filter(|e| previous.as_ref().is_none_or(|p| !p.contains(**e)))
            {
                if *e != self.endpoint {
                    self.send_outside(Dest::Member(*e), &Outside::Welcome((*view).clone()));
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
                let Some(stack) = self.stack.as_mut() else { return };
                let view = stack.view().clone();
                if view.contains(from) {
                    // Its welcome was lost: the coordinator of its view sends it again.
                    if view.id.coord == self.endpoint {
                        self.send_outside(Dest::Member(from), &Outside::Welcome(view.clone()));
                    }
                } else {
                    stack.down(self.now, Down::Join(from));
                    self.pump();
                }
            }
            Ok(Outside::Welcome(view)) => {
                if self.joining.is_some() && view.contains(self.endpoint) {
                    self.install(Arc::new(view));
                }
            }
            Err(_) => {}
        }
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

    /// While joining: ask again, or form the group alone.
    fn on_join_timer(&mut self) {
        let Some((attempts, due)) = self.joining else { return };
        if self.now < due {
            return;
        }
        if self.may_found && attempts >= JOIN_ATTEMPTS {
            let alone = self.alone.clone();
            return self.install(alone);
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
        if matches!(ev, Down::Leave) {
            self.leaving = true;
        }
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
        [self.stack.as_ref().and_then(|s| s.poll_timeout()), old, join].into_iter().flatten().min()
    }

    fn poll_up(&mut self) -> Option<Up> {
        self.up.pop_front()
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front().or_else(|| self.stack.as_mut().and_then(|s| s.poll_transmit()))
    }

    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut c = self.stack.as_ref().map(|s| s.counters()).unwrap_or_default();
        c.push(("member", "views", self.views));
        c.push(("member", "future_held", self.future.len() as u64));
        c.push(("member", "future_dropped", self.future_dropped));
        c
    }
}
