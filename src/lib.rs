//! Horus for Rust: virtually synchronous process groups.
//!
//! Processes join a named group; every member sees the same sequence of views (who is in the
//! group), and multicasts are delivered reliably at the service level the sender picks (FIFO,
//! causal, total or safe), so that every member that survives a view change has delivered the
//! same messages in the view it leaves.
//!
//! # Five minutes
//! A member joins with [`Group::builder`], casts with [`GroupHandle::cast`] and reads what
//! happens with [`Group::next_event`]:
//!
//! ```no_run
//! use horus::{Event, Group, Level};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), horus::Error> {
//!     // The default stack (`vsync`) over loopback multicast. Start this on one host, then
//!     // again a second later: the first founds the group, the second joins it.
//!     let mut group = Group::builder("chat").join().await?;
//!     println!("I am {}; view {}", group.endpoint(), group.view());
//!     group.cast("hello, everyone", Level::Total).await?;
//!     while let Some(event) = group.next_event().await {
//!         match event {
//!             Event::Message { from, data, .. } => {
//!                 println!("{from}: {}", String::from_utf8_lossy(&data));
//!             }
//!             Event::View(change) => {
//!                 println!("view {}: joined {:?}, left {:?}", change.view, change.joined, change.left);
//!             }
//!             Event::Exit => break,
//!             _ => {}
//!         }
//!     }
//!     Ok(())
//! }
//! ```
//!
//! Every member delivers the casts of one view in the same order at the `total` level, and a
//! member that moves to the next view has delivered exactly what the others that move with it
//! did. [`GroupHandle::send`] reaches one member, [`GroupHandle::call`] asks the whole group
//! and waits for the [`Replies`] it wants, [`GroupBuilder::state_transfer`] gives joiners the
//! application's state, and [`GroupBuilder::record`] writes the member's history so the
//! checker ([`core::check`]) can verify a real run as it verifies a simulated one.
//!
//! # Inside
//! The toolkit is built in layers, each a deterministic state machine that does no IO, so the
//! same code runs between real processes and, seeded and repeatable, in the simulator:
//! - [`core`]: messages, events, the `Layer` trait, stacks built from specs, the simulator and
//!   the history checker;
//! - [`layers`]: the protocol layers (reliability, fragmentation, flow control, stability,
//!   packing, failure suspicion, causal, total and safe ordering);
//! - [`gms`]: membership: view changes that keep virtual synchrony, leaves and joins;
//! - [`runtime`]: the tokio driver that runs a member over UDP.
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

mod builder;
mod error;
mod group;
pub mod probe;
mod pump;
pub mod record;
pub mod replica;
mod rpc;
mod wire;

pub use builder::{
    default_transport, GroupBuilder, DEFAULT_COMMAND_CAPACITY, DEFAULT_EVENT_CAPACITY,
    DEFAULT_JOIN_TIMEOUT, DEFAULT_LEAVE_TIMEOUT, DEFAULT_PORT_BASE, DEFAULT_PORT_SPAN,
    DEFAULT_STACK,
};
pub use bytes::Bytes;
pub use error::Error;
pub use group::{Counters, Event, Group, GroupCounters, GroupHandle, SnapshotRequest, ViewChange};
pub use horus_core::{Endpoint, Level, View, ViewId};
pub use horus_runtime::{FaultConfig, FaultSwitch, MemberCounters, TransportConfig};
pub use rpc::{Call, CallId, Replies};

pub use horus_core as core;
pub use horus_gms as gms;
pub use horus_layers as layers;
pub use horus_runtime as runtime;

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
