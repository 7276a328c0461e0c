//! Events: what flows between the layers of a stack.
//!
//! [`Down`] events travel from the application toward the network, [`Up`] events from the
//! network toward the application. A layer handles the events it knows and passes the others on
//! unchanged. Timers are not events: a layer asks for one through its context
//! ([`Cx::timer_at`](crate::Cx::timer_at)) and is called back with the token it chose.

use std::sync::Arc;

use bytes::Bytes;

use crate::ids::{Endpoint, Rank, Seqno, View, ViewId};
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
    /// These members have failed in this view (from the membership service). Layers stop
    /// waiting for them: no acknowledgement, credit or stability is expected from them, and no
    /// new cast of theirs is accepted, though their casts that other members hold are still
    /// retransmitted among the survivors (Ensemble's `Fail`).
    Fail(Vec<Rank>),
    /// The view is ending: each layer finishes the reliable traffic it owes (the sequencer its
    /// last order announcement) and sends no new reliable cast. The transport answers with
    /// [`Up::BlockOk`], which reaches each layer after everything it sent before (Ensemble's
    /// `Block`).
    Block,
    /// The cut of the view change: `cut[r]` casts of rank `r` are to be delivered in this view,
    /// no more, no fewer. Reliable layers fetch what is missing up to it.
    Cut(Vec<Seqno>),
    /// Every cast of the cut is here: the transport answers with [`Up::Flush`], which drains
    /// the layers bottom up.
    Flush,
    /// A process outside the view asks to join (from the membership service's discovery).
    Join(Endpoint),
    /// The application's state, in answer to [`Up::Snapshot`]: given while the application
    /// handles that event, so it is the state as of the view boundary. The membership service
    /// keeps it for the joiners of that view, who pull it in chunks.
    Snapshot(Bytes),
    /// Partitionable membership: the coordinator of another view of the group, at this
    /// endpoint, asks to merge with ours (from discovery). Our view flushes and answers with
    /// [`Up::MergeReady`].
    MergeAsk(Endpoint),
    /// Partitionable membership: another view, flushed, waits to merge with ours; its members
    /// join our next view.
    MergeWith { view: ViewId, members: Vec<Endpoint> },
    /// Partitionable membership: the merged view, from the coordinator that made it, for a
    /// view that flushed to merge.
    Install(View),
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
    /// The answer to [`Down::Block`], travelling up behind everything the layers sent before it.
    BlockOk,
    /// How many casts of each rank this member has received (from `stable`), on the way to the
    /// membership service: sent up just before [`Up::BlockOk`], and whenever it grows while a
    /// [`Down::Cut`] is pending.
    Received(Vec<Seqno>),
    /// The answer to [`Down::Flush`]. Each layer that holds casts delivers or drops them, the
    /// same way at every survivor, before passing it up: the last event of the view.
    Flush,
    /// At a member of the previous view, right after [`Up::View`] of a view with joiners
    /// (state transfer on): "give the state as of now". The application answers
    /// [`Down::Snapshot`] while it handles this event: it has delivered every message of the
    /// old view and none of the new one, so the state it gives is the state at the boundary.
    Snapshot,
    /// At a joiner (state transfer on), right after the [`Up::View`] of the view it joined in
    /// and before anything delivered in it: the state to install, as the old members had it
    /// at that view's boundary.
    State(Bytes),
    /// Partitionable membership: our view has flushed to merge, as the coordinator at `to`
    /// asked; tell it our view and the members that come.
    MergeReady { to: Endpoint, view: ViewId, members: Vec<Endpoint> },
}

/// An application whose state a group replicates and transfers to joiners: what it gives in
/// [`Down::Snapshot`] when asked by [`Up::Snapshot`], and installs from [`Up::State`].
///
/// `install(snapshot())` must give back an equal state; the snapshot is opaque to the
/// toolkit, which cuts it in chunks and streams it to the joiners.
///
/// # Examples
/// ```
/// use bytes::Bytes;
/// use horus_core::Snapshot;
///
/// /// A replicated counter.
/// struct Counter(u64);
///
/// impl Snapshot for Counter {
///     fn snapshot(&self) -> Bytes {
///         Bytes::copy_from_slice(&self.0.to_le_bytes())
///     }
///     fn install(&mut self, state: Bytes) {
///         // A state that is not ours leaves the counter as it was.
///         if let Ok(b) = <[u8; 8]>::try_from(&state[..]) {
///             self.0 = u64::from_le_bytes(b);
///         }
///     }
/// }
///
/// let (a, mut b) = (Counter(42), Counter(0));
/// b.install(a.snapshot());
/// assert_eq!(b.0, 42);
/// ```
pub trait Snapshot {
    /// The state as of now.
    fn snapshot(&self) -> Bytes;
    /// Replaces the state with one given by [`Snapshot::snapshot`], at another member.
    fn install(&mut self, state: Bytes);
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
            Down::Fail(_) => "fail",
            Down::Block => "block",
            Down::Cut(_) => "cut",
            Down::Flush => "flush",
            Down::Join(_) => "join",
            Down::Snapshot(_) => "snapshot",
            Down::MergeAsk(_) => "merge-ask",
            Down::MergeWith { .. } => "merge-with",
            Down::Install(_) => "install",
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
            Up::BlockOk => "block-ok",
            Up::Received(_) => "received",
            Up::Flush => "flush",
            Up::Snapshot => "snapshot",
            Up::State(_) => "state",
            Up::MergeReady { .. } => "merge-ready",
        }
    }
}
