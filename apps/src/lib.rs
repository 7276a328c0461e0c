//! The library half of `horus-apps`: the applications built on Horus, and what the `horus`
//! command's member processes and their parents share.
//!
//! Applications, each a [`Replica`](horus::replica::Replica) run on a group with a typed
//! handle, and tested in the simulator by an oracle of its own:
//! - [`rsm`]: a replicated state machine on the total order;
//! - [`map`]: a replicated key-value map, on the state machine;
//! - [`bank`]: accounts and transfers, the state machine of `horus demo rsm`;
//! - [`chat`]: a group chat, one transcript in one order, given to joiners;
//! - [`primary_backup`]: primary-backup replication, the primary's updates cast `safe`;
//! - [`cohort`]: coordinator-cohort, requests shared out by rank and taken over on failure;
//! - [`lock`]: named locks with fair queues, released when their holder fails.
//!
//! The `horus` command's plumbing:
//! - [`appmember`] and [`appdemo`]: the member processes of the application demos, and the
//!   parent's side of them;
//! - [`control`]: the protocol between a parent and the member processes it starts;
//! - [`cluster`]: the parent's side: start members, command them, wait for their reports;
//! - [`SelfCheck`]: what a member checks of its own deliveries;
//! - [`simtest`]: running an application in the simulator under faults.

pub mod appdemo;
pub mod appmember;
pub mod bank;
pub mod chat;
pub mod cluster;
pub mod cohort;
pub mod control;
pub mod lock;
pub mod map;
pub mod primary_backup;
pub mod rsm;
mod selfcheck;
pub mod simtest;

pub use selfcheck::SelfCheck;
