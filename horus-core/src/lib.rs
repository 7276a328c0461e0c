//! The sans-IO kernel of Horus for Rust.

pub mod check;
pub mod history;
pub mod ids;
pub mod level;
pub mod rng;
pub mod time;

pub use check::{Property, Report, Violation};
pub use history::{Event, History, MsgId, Promises};
pub use ids::{Endpoint, GroupName, Rank, Seqno, View, ViewId};
pub use level::Level;
pub use rng::Rng;
pub use time::Time;
