//! Horus for Rust: virtually synchronous process groups.
//!
//! Processes join a named group; every member sees the same sequence of views (who is in the
//! group), and multicasts are delivered reliably at the service level the sender picks (FIFO,
//! causal, total or safe), so that every member that survives a view change has delivered the
//! same messages in the view it leaves.
//!
//! The toolkit is built in layers, each a deterministic state machine that does no IO, so the
//! same code runs between real processes and, seeded and repeatable, in the simulator:
//! - [`core`]: messages, events, the `Layer` trait, stacks built from specs, the simulator and
//!   the history checker;
//! - [`layers`]: the protocol layers (reliability, fragmentation, flow control, stability,
//!   packing, failure suspicion, causal, total and safe ordering);
//! - [`gms`]: membership: view changes that keep virtual synchrony, leaves and joins.
//!
//! [`registry`] knows every layer and preset a stack spec can name; [`processes`] runs a plan
//! as a static group, or as members that change views when it has the membership layer on top
//! (the default stack, the preset `vsync`).
//!
//! ```
//! use horus::core::check::check;
//! use horus::core::sim::{simulate, FaultConfig, LinkModel, SimConfig};
//!
//! // Five members of the default stack over a lossy network; one of them crashes.
//! let plan = horus::processes(horus::registry().plan("vsync").unwrap());
//! let config = SimConfig {
//!     seed: 1,
//!     link: LinkModel { loss: 0.05, ..LinkModel::default() },
//!     faults: FaultConfig { crashes: true, ..FaultConfig::default() },
//!     ..SimConfig::default()
//! };
//! let run = simulate(&*plan, &config).unwrap();
//! assert!(check(&run.history, &run.promises).is_ok());
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
