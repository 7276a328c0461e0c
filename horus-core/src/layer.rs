//! The [`Layer`] trait, the context a layer works through, and what layers promise each other.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use crate::event::{Down, Up};
use crate::ids::{Endpoint, GroupName, Rank, View};
use crate::rng::Rng;
use crate::stack::{Routed, Timers};
use crate::time::Time;
use crate::view_state::ViewState;

/// A protocol layer: a deterministic state machine for one view.
///
/// The handlers take an event and a context, and act only through the context: events up and
/// down, timer requests, the current time, the view, a seeded random source. No IO, no clock,
/// no thread, no global state: the same layer runs under the real runtime and the simulator.
/// A stack is built anew for every view, so a layer's state never outlives its view.
pub trait Layer: Send + fmt::Debug {
    /// Called once, when the stack for the view is built.
    fn init(&mut self, _cx: &mut Cx<'_>) {}

    /// An event from the layer below.
    fn up(&mut self, ev: Up, cx: &mut Cx<'_>);

    /// An event from the layer above.
    fn down(&mut self, ev: Down, cx: &mut Cx<'_>);

    /// A timer this layer set is due.
    fn timer(&mut self, _token: Token, _cx: &mut Cx<'_>) {}

    /// Reports the layer's counters (`bad_header`, `retrans`, ...) by name.
    fn counters(&self, _report: &mut dyn FnMut(&'static str, u64)) {}

    /// Bytes the application handed down that this layer holds until the network can take
    /// them (flow control's held messages): a driver stops taking the application's events
    /// while a stack's backlog is high, so that back-pressure reaches the application.
    fn backlog(&self) -> u64 {
        0
    }
}

/// The token a layer gives with a timer request, handed back when the timer fires. Layers
/// usually convert their own enum into it.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default)]
pub struct Token(pub u64);

impl From<u64> for Token {
    fn from(t: u64) -> Self {
        Token(t)
    }
}

impl From<()> for Token {
    fn from(_: ()) -> Self {
        Token(0)
    }
}

/// What a layer sees of the world while it handles one event.
pub struct Cx<'a> {
    pub(crate) now: Time,
    pub(crate) vs: &'a ViewState,
    pub(crate) rng: &'a mut Rng,
    /// This layer's position in the stack: 1 is the top layer.
    pub(crate) pos: usize,
    pub(crate) queue: &'a mut VecDeque<Routed>,
    pub(crate) timers: &'a mut Timers,
}

impl<'a> Cx<'a> {
    /// The current time.
    #[inline]
    pub fn now(&self) -> Time {
        self.now
    }

    /// The view this stack runs in.
    #[inline]
    pub fn view(&self) -> &View {
        &self.vs.view
    }

    /// This member's rank in the view.
    #[inline]
    pub fn rank(&self) -> Rank {
        self.vs.rank
    }

    /// This member's endpoint.
    #[inline]
    pub fn endpoint(&self) -> Endpoint {
        self.vs.endpoint
    }

    #[inline]
    pub fn group(&self) -> &GroupName {
        &self.vs.group
    }

    /// The number of members in the view.
    #[inline]
    pub fn nmembers(&self) -> usize {
        self.vs.view.members.len()
    }

    /// The stack's seeded random source.
    #[inline]
    pub fn rng(&mut self) -> &mut Rng {
        self.rng
    }

    /// Passes an event to the layer above (or the application).
    #[inline]
    pub fn up(&mut self, ev: Up) {
        self.queue.push_back(Routed::Up(self.pos - 1, ev));
    }

    /// Passes an event to the layer below (or the network).
    #[inline]
    pub fn down(&mut self, ev: Down) {
        self.queue.push_back(Routed::Down(self.pos + 1, ev));
    }

    /// Asks to be called back with `token` at `at` (at once, on the next turn, if `at` has
    /// passed). Timers die with the stack, so a timer of an old view never fires.
    #[inline]
    pub fn timer_at(&mut self, at: Time, token: impl Into<Token>) {
        self.timers.set(at, self.pos, token.into());
    }

    /// Asks to be called back with `token` after `delay`.
    #[inline]
    pub fn timer_after(&mut self, delay: Duration, token: impl Into<Token>) {
        let at = self.now + delay;
        self.timer_at(at, token);
    }
}

impl fmt::Debug for Cx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cx").field("now", &self.now).field("rank", &self.vs.rank).finish()
    }
}

/// Properties a layer needs from the layers below it, and gives to those above.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Props(u32);

impl Props {
    pub const NONE: Props = Props(0);
    /// Best-effort multicast to the view (the transport gives it).
    pub const CAST: Props = Props(1 << 0);
    /// Best-effort point-to-point (the transport gives it).
    pub const SEND: Props = Props(1 << 1);
    /// Reliable FIFO multicast.
    pub const RELIABLE_CAST: Props = Props(1 << 2);
    /// Reliable FIFO point-to-point.
    pub const RELIABLE_SEND: Props = Props(1 << 3);
    /// Messages of any size (fragmentation).
    pub const LARGE: Props = Props(1 << 4);
    /// Flow control: bounded unacknowledged bytes per receiver.
    pub const FLOW: Props = Props(1 << 5);
    /// Stability events.
    pub const STABLE: Props = Props(1 << 6);
    /// Message packing.
    pub const PACKED: Props = Props(1 << 7);
    /// Causal order.
    pub const CAUSAL: Props = Props(1 << 8);
    /// Total order.
    pub const TOTAL: Props = Props(1 << 9);
    /// Uniform (safe) delivery.
    pub const SAFE: Props = Props(1 << 10);
    /// View changes: membership, flush.
    pub const MEMBERSHIP: Props = Props(1 << 11);
    /// The layers below take part in a view change: they report the casts received (rows) and
    /// drain on a flush.
    pub const FLUSH: Props = Props(1 << 12);
    /// Suspicions of failure.
    pub const SUSPECT: Props = Props(1 << 13);

    /// What the transport under every stack gives.
    pub const TRANSPORT: Props = Props(Props::CAST.0 | Props::SEND.0);

    const NAMES: [(Props, &'static str); 14] = [
        (Props::CAST, "best-effort multicast"),
        (Props::SEND, "best-effort point-to-point"),
        (Props::RELIABLE_CAST, "reliable FIFO multicast"),
        (Props::RELIABLE_SEND, "reliable FIFO point-to-point"),
        (Props::LARGE, "fragmentation of large messages"),
        (Props::FLOW, "flow control"),
        (Props::STABLE, "stability"),
        (Props::PACKED, "message packing"),
        (Props::CAUSAL, "causal order"),
        (Props::TOTAL, "total order"),
        (Props::SAFE, "safe delivery"),
        (Props::MEMBERSHIP, "membership"),
        (Props::FLUSH, "view-change flush"),
        (Props::SUSPECT, "failure suspicion"),
    ];

    pub const fn union(self, other: Props) -> Props {
        Props(self.0 | other.0)
    }

    /// This set without the properties of `other`.
    pub const fn without(self, other: Props) -> Props {
        Props(self.0 & !other.0)
    }

    pub const fn contains(self, other: Props) -> bool {
        self.0 & other.0 == other.0
    }

    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The single properties in this set.
    pub fn iter(self) -> impl Iterator<Item = Props> {
        Props::NAMES.into_iter().map(|(p, _)| p).filter(move |p| self.contains(*p))
    }

    /// A readable name for a single property (or a comma-separated list).
    pub fn describe(self) -> String {
        let names: Vec<&str> =
            Props::NAMES.iter().filter(|(p, _)| self.contains(*p)).map(|(_, n)| *n).collect();
        if names.is_empty() {
            "nothing".into()
        } else {
            names.join(", ")
        }
    }
}

impl std::ops::BitOr for Props {
    type Output = Props;
    fn bitor(self, rhs: Props) -> Props {
        self.union(rhs)
    }
}

impl fmt::Debug for Props {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Props({})", self.describe())
    }
}
