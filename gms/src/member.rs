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

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use horus_core::stack::peek_view;
use horus_core::view_state::ViewState;
use horus_core::{
    Down, Endpoint, GroupName, Node, Rng, Stack, StackError, StackPlan, Time, Transmit, Up, View,
};

/// Datagrams held for views not yet installed.
pub const FUTURE: usize = 4096;

/// How long the stack of a view that ended goes on serving retransmissions.
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(500);

/// One member of a group, across its views.
#[derive(Debug)]
pub struct Member {
    plan: StackPlan,
    group: GroupName,
    group_tag: u32,
    endpoint: Endpoint,
    rng: Rng,
    stack: Stack,
    /// The stack of the view that ended, still serving retransmissions until the deadline.
    old: Option<(Stack, Time)>,
    now: Time,
    up: VecDeque<Up>,
    out: VecDeque<Transmit>,
    future: VecDeque<Bytes>,
    exited: bool,
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
        let vs = ViewState::new(group.clone(), endpoint, view)
            .ok_or(StackError::NotMember { endpoint })?;
        let stack = plan.build(vs, rng.fork(), now)?;
        Ok(Member {
            plan,
            group_tag: group.tag(),
            group,
            endpoint,
            rng,
            stack,
            old: None,
            now,
            up: VecDeque::new(),
            out: VecDeque::new(),
            future: VecDeque::new(),
            exited: false,
            views: 1,
            future_dropped: 0,
        })
    }

    /// Moves what the stack produced out, installing a view it names.
    fn pump(&mut self) {
        while let Some(ev) = self.stack.poll_up() {
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
        // What the old stack still had to send goes first.
        while let Some(t) = self.stack.poll_transmit() {
            self.out.push_back(t);
        }
        let Some(vs) = ViewState::new(self.group.clone(), self.endpoint, view.clone()) else {
            self.exited = true;
            self.up.push_back(Up::Exit);
            return;
        };
        match self.plan.build(vs, self.rng.fork(), self.now) {
            Ok(stack) => {
                let old = std::mem::replace(&mut self.stack, stack);
                self.old = Some((old, self.now + LINGER));
            }
            Err(_) => {
                // The plan built for the first view; it cannot fail for a later one.
                self.exited = true;
                self.up.push_back(Up::Exit);
                return;
            }
        }
        self.views += 1;
        self.up.push_back(Up::View(view.clone()));
        // Datagrams that arrived early for this view; later ones stay held.
        let held = std::mem::take(&mut self.future);
        for d in held {
            match peek_view(&d) {
                Some((_, id)) if id == view.id => self.stack.receive(self.now, d),
                Some((_, id)) if id.ltime > view.id.ltime => self.future.push_back(d),
                _ => {}
            }
        }
        self.pump();
    }
}

impl Member {
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
}

impl Node for Member {
    fn endpoint(&self) -> Endpoint {
        self.endpoint
    }

    fn view(&self) -> &Arc<View> {
        &self.stack.view_state().view
    }

    fn down(&mut self, now: Time, ev: Down) {
        if self.exited {
            return;
        }
        self.now = self.now.max(now);
        self.stack.down(now, ev);
        self.pump();
    }

    fn receive(&mut self, now: Time, datagram: Bytes) {
        if self.exited {
            return;
        }
        self.now = self.now.max(now);
        if let Some((tag, id)) = peek_view(&datagram) {
            if tag == self.group_tag && self.old.as_ref().is_some_and(|(o, _)| o.view().id == id) {
                let now = self.now;
                return self.with_old(|old| old.receive(now, datagram));
            }
            if tag == self.group_tag && id.ltime > self.stack.view().id.ltime {
                if self.future.len() >= FUTURE {
                    self.future.pop_front();
                    self.future_dropped += 1;
                }
                self.future.push_back(datagram);
                return;
            }
        }
        self.stack.receive(now, datagram);
        self.pump();
    }

    fn on_timeout(&mut self, now: Time) {
        if self.exited {
            return;
        }
        self.now = self.now.max(now);
        self.with_old(|old| old.on_timeout(now));
        self.stack.on_timeout(now);
        self.pump();
    }

    fn poll_timeout(&self) -> Option<Time> {
        if self.exited {
            return None;
        }
        let old =
            self.old.as_ref().map(|(o, until)| o.poll_timeout().unwrap_or(*until).min(*until));
        match (self.stack.poll_timeout(), old) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn poll_up(&mut self) -> Option<Up> {
        self.up.pop_front()
    }

    fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front().or_else(|| self.stack.poll_transmit())
    }

    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut c = self.stack.counters();
        c.push(("member", "views", self.views));
        c.push(("member", "future_held", self.future.len() as u64));
        c.push(("member", "future_dropped", self.future_dropped));
        c
    }
}
