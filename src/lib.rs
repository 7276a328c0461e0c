//! Horus for Rust: virtually synchronous process groups.
//!
//! Processes join a named group; every member sees the same sequence of views (who is in the
//! group), and multicasts are delivered reliably at the service level the sender picks (FIFO,
//! causal, total or safe), so that every member that survives a view change has delivered the
//! same messages in the view it leaves.
//!
//! The toolkit is built in layers, each a deterministic state machine that does no IO, so the
//! same code runs between real processes and, seeded and repeatable, in the simulator. This
//! crate is the one applications depend on; today it gives the kernel ([`core`]): messages,
//! layers, stacks, the simulator and the history checker.
//!
//! ```
//! use horus::core::sim::{simulate, SimConfig};
//! use horus::core::Registry;
//!
//! // Five simulated processes over best-effort multicast, no faults.
//! let plan = Registry::new().plan("none").unwrap();
//! let run = simulate(&plan, &SimConfig { nodes: 5, seed: 1, ..SimConfig::default() }).unwrap();
//! assert_eq!(run.stats.deliveries, 5 * run.stats.casts);
//! ```

pub use horus_core as core;
pub use horus_gms as gms;
pub use horus_layers as layers;

/// Every layer and preset a stack spec can name.
pub fn registry() -> core::Registry {
    let mut r = layers::registry();
    r.add_layer(gms::INFO);
    r
}

/// The processes that run `plan`: members that change views when it has the membership
/// layer on top, a static group otherwise.
pub fn processes(plan: core::StackPlan) -> Box<dyn core::Processes> {
    if plan.gives().contains(core::Props::MEMBERSHIP) {
        Box::new(gms::GroupPlan::new(plan))
    } else {
        Box::new(plan)
    }
}
