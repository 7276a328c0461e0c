//! The sans-IO kernel of Horus for Rust.

pub mod check;
pub mod codec;
pub mod event;
pub mod history;
pub mod ids;
pub mod layer;
pub mod level;
pub mod message;
pub mod node;
pub mod rng;
pub mod sim;
pub mod spec;
pub mod stack;
pub mod testing;
pub mod time;
pub mod view_state;

pub use check::{Property, Report, Violation};
pub use event::{Down, Snapshot, Up};
pub use history::{Event, History, MsgId, Promises};
pub use ids::{Endpoint, GroupName, Rank, Seqno, View, ViewId};
pub use layer::{Cx, Layer, Props, Token};
pub use level::Level;
pub use message::{DecodeError, Message};
pub use node::{Node, Processes};
pub use rng::Rng;
pub use spec::{Args, LayerInfo, ParamError, Registry, StackError, StackPlan};
pub use stack::{Dest, Stack, Transmit, WireCounters};
pub use time::Time;
pub use view_state::ViewState;
