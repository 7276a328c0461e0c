//! Events: what flows between the layers of a stack.
//!
//! [`Down`] events travel from the application toward the network, [`Up`] events from the
//! network toward the application. A layer handles the events it knows and passes the others on
//! unchanged. Timers are not events: a layer asks for one through its context
//! ([`Cx::timer_at`](crate::Cx::timer_at)) and is called back with the token it chose.

use std::sync::Arc;

use crate::ids::{Rank, Seqno, View};
use crate::message::Message;

/// An event travelling toward the network.
#[derive(Debug)]
pub enum Down {
    /// Multicast to every member of the view, at the level the message carries.
    Cast(Message),
    /// Send to one member.
    Send(Rank, Message),
    /// Leave the group. Without a membership layer the stack answers [`Up::Exit`].
    Leave,
    /// The application has stopped sending, in answer to [`Up::Block`].
    BlockOk,
    /// Ask the membership service to consider these members failed.
    Suspect(Vec<Rank>),
    /// Stability, from the layer that computes it to the layers below it that buffer messages
    /// for retransmission: `stable[r]` casts of rank `r` are held by every member and may be
    /// freed.
    Stable(Vec<Seqno>),
}

/// An event travelling toward the application.
#[derive(Debug)]
pub enum Up {
    /// A multicast delivered, from the member at `from`.
    Cast { from: Rank, msg: Message },
    /// A point-to-point message delivered, from the member at `from`.
    Send { from: Rank, msg: Message },
    /// A new view is installed; the next messages belong to it.
    View(Arc<View>),
    /// These members are suspected to have failed.
    Suspect(Vec<Rank>),
    /// A view change is coming: stop sending and answer [`Down::BlockOk`].
    Block,
    /// Stability: `stable[r]` messages cast by rank `r` in this view are held by every member.
    Stable(Vec<Seqno>),
    /// This member has left the group (or was excluded): nothing more will be delivered.
    Exit,
}

impl Down {
    /// A short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            Down::Cast(_) => "cast",
            Down::Send(..) => "send",
            Down::Leave => "leave",
            Down::BlockOk => "block-ok",
            Down::Suspect(_) => "suspect",
            Down::Stable(_) => "stable",
        }
    }
}

impl Up {
    /// A short name for traces.
    pub fn name(&self) -> &'static str {
        match self {
            Up::Cast { .. } => "deliver-cast",
            Up::Send { .. } => "deliver-send",
            Up::View(_) => "view",
            Up::Suspect(_) => "suspect",
            Up::Block => "block",
            Up::Stable(_) => "stable",
            Up::Exit => "exit",
        }
    }
}
