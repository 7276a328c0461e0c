//! [`Node`]: one group member as a driver sees it, and [`Processes`]: how a simulation makes
//! them.
//!
//! A [`Stack`] is a node for one fixed view. A membership service wraps stacks in a node that
//! builds a new stack for every view it installs; drivers (the simulator, the runtime) deal
//! only with this trait, in the same sans-IO shape as the stack: events and datagrams in with
//! the time, events, datagrams and a deadline out.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;

use crate::event::{Down, Up};
use crate::history::Membership;
use crate::ids::{Endpoint, GroupName, View};
use crate::level::Level;
use crate::rng::Rng;
use crate::spec::{StackError, StackPlan};
use crate::stack::{Stack, Transmit};
use crate::time::Time;
use crate::view_state::ViewState;

/// One group member, driven by a runtime or the simulator.
pub trait Node: fmt::Debug + Send {
    /// This member's endpoint.
    fn endpoint(&self) -> Endpoint;
    /// The view it is in.
    fn view(&self) -> &Arc<View>;
    /// An event from the application.
    fn down(&mut self, now: Time, ev: Down);
    /// A datagram from the network.
    fn receive(&mut self, now: Time, datagram: Bytes);
    /// Fires what is due at `now`.
    fn on_timeout(&mut self, now: Time);
    /// The next deadline.
    fn poll_timeout(&self) -> Option<Time>;
    /// The next event for the application.
    fn poll_up(&mut self) -> Option<Up>;
    /// The next datagram to send.
    fn poll_transmit(&mut self) -> Option<Transmit>;
    /// Every counter, as `(layer, counter, value)`.
    fn counters(&self) -> Vec<(&'static str, &'static str, u64)>;
    /// Bytes the application handed down that the node holds, waiting for the network; a
    /// driver takes no more of the application's events while it is high.
    fn backlog(&self) -> u64 {
        0
    }
}

impl Node for Stack {
    fn endpoint(&self) -> Endpoint {
        Stack::endpoint(self)
    }
    fn view(&self) -> &Arc<View> {
        &self.view_state().view
    }
    fn down(&mut self, now: Time, ev: Down) {
        Stack::down(self, now, ev)
    }
    fn receive(&mut self, now: Time, datagram: Bytes) {
        Stack::receive(self, now, datagram)
    }
    fn on_timeout(&mut self, now: Time) {
        Stack::on_timeout(self, now)
    }
    fn poll_timeout(&self) -> Option<Time> {
        Stack::poll_timeout(self)
    }
    fn poll_up(&mut self) -> Option<Up> {
        Stack::poll_up(self)
    }
    fn poll_transmit(&mut self) -> Option<Transmit> {
        Stack::poll_transmit(self)
    }
    fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        Stack::counters(self)
    }
    fn backlog(&self) -> u64 {
        Stack::backlog(self)
    }
}

/// What a simulation runs: how to start its processes, and what they promise.
pub trait Processes: Sync {
    /// The process `endpoint` of `group`, starting at `now` as a member of `view`.
    fn start(
        &self,
        group: &GroupName,
        endpoint: Endpoint,
        view: Arc<View>,
        rng: Rng,
        now: Time,
    ) -> Result<Box<dyn Node>, StackError>;
    /// A process `endpoint` that is in no view and asks to join `group`: a restart, as a new
    /// incarnation, or with `may_found`, a first process that forms the group if it finds
    /// none. `None` if these processes cannot join: a static group.
    fn join(
        &self,
        _group: &GroupName,
        _endpoint: Endpoint,
        _rng: Rng,
        _now: Time,
        _may_found: bool,
    ) -> Option<Result<Box<dyn Node>, StackError>> {
        None
    }

    /// Whether a process of these can join a running group.
    fn can_join(&self) -> bool {
        false
    }

    /// Whether a joiner is given the application's state (the simulated application then
    /// answers [`Up::Snapshot`] and the run promises state transfer).
    fn state_transfer(&self) -> bool {
        false
    }

    /// The service levels the processes offer (empty: best effort only).
    fn levels(&self) -> Vec<Level>;
    /// How membership behaves: what the checker holds the run to.
    fn membership(&self) -> Membership;
    /// A name for reports: the stack's spec.
    fn name(&self) -> String;
}

/// A plain stack is a static group: one view for the whole run.
impl Processes for StackPlan {
    fn start(
        &self,
        group: &GroupName,
        endpoint: Endpoint,
        view: Arc<View>,
        rng: Rng,
        now: Time,
    ) -> Result<Box<dyn Node>, StackError> {
        let vs = ViewState::new(group.clone(), endpoint, view)
            .ok_or(StackError::NotMember { endpoint })?;
        Ok(Box::new(self.build(vs, rng, now)?))
    }
    fn levels(&self) -> Vec<Level> {
        StackPlan::levels(self)
    }
    fn membership(&self) -> Membership {
        Membership::Static
    }
    fn name(&self) -> String {
        self.spec()
    }
}
