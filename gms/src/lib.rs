//! Group membership for Horus for Rust: the sequence of views, and view changes that keep
//! virtual synchrony.
//!
//! Two pieces, both sans-IO:
//! - the [`gms`](layer) layer, on top of every per-view stack, runs the view change in that
//!   view: failures are agreed, senders blocked, the cut of casts every survivor delivers is
//!   fixed and fetched, the layers drained, and the next view named;
//! - [`Member`], the node a driver runs: it builds a stack for each view the layer names, and
//!   holds datagrams of a view it has not installed yet.
//!
//! - [`state`], state transfer: a joiner is given the application's state as of the view it
//!   joins in, in chunks, from the members of the view before (opt-in).
//!
//! [`GroupPlan`] makes members for the simulator.

pub mod layer;
pub mod member;
pub mod state;

use std::sync::Arc;

use horus_core::history::Membership;
use horus_core::{
    Endpoint, GroupName, Level, Node, Processes, Rng, StackError, StackPlan, Time, View,
};

pub use layer::INFO;
pub use member::Member;

/// The processes of a group whose stack has the membership layer on top.
#[derive(Debug, Clone)]
pub struct GroupPlan {
    plan: StackPlan,
    state_transfer: bool,
}

impl GroupPlan {
    /// Members running `plan`, whose top layer must be `gms`.
    pub fn new(plan: StackPlan) -> Self {
        GroupPlan { plan, state_transfer: false }
    }

    /// Members that give joiners the application's state (see [`Member::with_state_transfer`]).
    ///
    /// # Examples
    /// ```
    /// use horus_core::check::check;
    /// use horus_core::sim::{simulate, Fault, SimConfig, Traffic};
    /// use horus_core::{Registry, Time};
    /// use horus_gms::GroupPlan;
    ///
    /// let mut registry = horus_layers::registry();
    /// registry.add_layer(horus_gms::INFO);
    /// let plan = GroupPlan::new(registry.plan("vsync").unwrap()).with_state_transfer(true);
    /// // Node 1 crashes and comes back: its new incarnation is given the state.
    /// let config = SimConfig {
    ///     script: vec![
    ///         (Time::from_millis(300), Fault::Crash(1)),
    ///         (Time::from_millis(600), Fault::Restart(1)),
    ///     ],
    ///     traffic: Traffic { state_size: 100_000, ..Traffic::default() },
    ///     ..SimConfig::default()
    /// };
    /// let run = simulate(&plan, &config).unwrap();
    /// assert!(check(&run.history, &run.promises).is_ok());
    /// assert_eq!(run.stats.states, 1);
    /// ```
    pub fn with_state_transfer(mut self, on: bool) -> Self {
        self.state_transfer = on;
        self
    }
}

impl Processes for GroupPlan {
    fn start(
        &self,
        group: &GroupName,
        endpoint: Endpoint,
        view: Arc<View>,
        rng: Rng,
        now: Time,
    ) -> Result<Box<dyn Node>, StackError> {
        let member = Member::new(self.plan.clone(), group.clone(), endpoint, view, rng, now)?;
        Ok(Box::new(member.with_state_transfer(self.state_transfer)))
    }

    fn join(
        &self,
        group: &GroupName,
        endpoint: Endpoint,
        rng: Rng,
        now: Time,
        may_found: bool,
    ) -> Option<Result<Box<dyn Node>, StackError>> {
        // Under the primary-partition policy a restart rejoins the running group and never
        // founds one apart from it; with partitionable membership it may, and merges later.
        let may_found = may_found || self.membership() == Membership::Partitionable;
        let member = Member::join(self.plan.clone(), group.clone(), endpoint, rng, now, may_found);
        Some(member.map(|m| Box::new(m.with_state_transfer(self.state_transfer)) as Box<dyn Node>))
    }

    fn can_join(&self) -> bool {
        true
    }

    fn state_transfer(&self) -> bool {
        self.state_transfer
    }

    fn levels(&self) -> Vec<Level> {
        self.plan.levels()
    }

    fn membership(&self) -> Membership {
        if self.plan.param("gms", "partitionable") == Some("true") {
            Membership::Partitionable
        } else {
            Membership::Primary
        }
    }

    fn name(&self) -> String {
        self.plan.spec()
    }
}
