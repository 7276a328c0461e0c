//! The library half of `horus-apps`: what the `horus` command's member processes and their
//! parents share, so that `horus demo` and the multi-process tests drive members one way.
//!
//! - [`control`]: the protocol between a parent and the member processes it starts;
//! - [`cluster`]: the parent's side: start members, command them, wait for their reports;
//! - [`SelfCheck`]: what a member checks of its own deliveries.

pub mod cluster;
pub mod control;
mod selfcheck;

pub use selfcheck::SelfCheck;
