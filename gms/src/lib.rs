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
//! [`GroupPlan`] makes members for the simulator.

pub mod layer;
pub mod member;

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
}

impl GroupPlan {
    /// Members running `plan`, whose top layer must be `gms`.
    pub fn new(plan: StackPlan) -> Self {
        GroupPlan { plan }
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
        Ok(Box::new(Member::new(self.plan.clone(), group.clone(), endpoint, view, rng, now)?))
    }

    fn join(
        &self,
        group: &GroupName,
        endpoint: Endpoint,
        rng: Rng,
        now: Time,
    ) -> Option<Result<Box<dyn Node>, StackError>> {
        // A restart rejoins the running group: it never founds one apart from it.
        let member = Member::join(self.plan.clone(), group.clone(), endpoint, rng, now, false);
        Some(member.map(|m| Box::new(m) as Box<dyn Node>))
    }

    fn can_join(&self) -> bool {
        true
    }

    fn levels(&self) -> Vec<Level> {
        self.plan.levels()
    }

    fn membership(&self) -> Membership {
        Membership::Primary
    }

    fn name(&self) -> String {
        self.plan.spec()
    }
}
