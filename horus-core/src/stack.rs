//! The [`Stack`]: layers composed in order, with the transport framing below them.
//!
//! The stack is sans-IO, in the manner of quinn-proto: the driver (the runtime or the
//! simulator) feeds it application events ([`Stack::down`]), datagrams ([`Stack::receive`])
//! and due timers ([`Stack::on_timeout`]), always with the current time, and drains what it
//! produced: events for the application ([`Stack::poll_up`]), datagrams to send
//! ([`Stack::poll_transmit`]) and the next deadline ([`Stack::poll_timeout`]).
//!
//! Events emitted by a layer are queued and routed in the order emitted, so no layer is ever
//! re-entered while it handles an event, and a run is deterministic.
//!
//! Below the last layer, the stack frames every message with the transport header: format
//! version and kind, the group's tag, the view id and the sender's rank. A datagram of another
//! group or another view is dropped and counted; a cast comes back to its sender locally, not
//! through the network.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::event::{Down, Up};
use crate::ids::{Endpoint, Rank, View, ViewId};
use crate::layer::{Cx, Layer, Props, Token};
use crate::level::Level;
use crate::message::Message;
use crate::rng::Rng;
use crate::spec::{Args, StackError, StackPlan};
use crate::time::Time;
use crate::view_state::ViewState;

/// The wire format version, in the high nibble of every datagram's first byte.
const WIRE_VERSION: u8 = 1;
const KIND_CAST: u8 = 0;
const KIND_SEND: u8 = 1;
/// A datagram outside every view (membership's discovery and joins).
const KIND_OUTSIDE: u8 = 2;

/// The header of a datagram outside every view: who sends it, to which group.
#[derive(Serialize, Deserialize, Debug)]
struct OutsideHeader {
    /// `WIRE_VERSION << 4 | KIND_OUTSIDE`.
    tag: u8,
    group: u32,
    from: Endpoint,
}

/// Frames `msg` for sending outside every view (a join request, a welcome): the receiver
/// learns the sender's endpoint, since no view gives it a rank.
pub fn frame_outside(group: &crate::ids::GroupName, from: Endpoint, mut msg: Message) -> Message {
    msg.push(&OutsideHeader { tag: WIRE_VERSION << 4 | KIND_OUTSIDE, group: group.tag(), from });
    msg
}

/// If `datagram` is a frame outside every view for the group tagged `group`: its sender and
/// body.
pub fn parse_outside(group: u32, datagram: &Bytes) -> Option<(Endpoint, Message)> {
    if datagram.first().map(|t| *t & 0xf) != Some(KIND_OUTSIDE) {
        return None;
    }
    let mut msg = Message::from_wire(datagram.clone());
    let hdr = msg.pop::<OutsideHeader>().ok()?;
    (hdr.tag >> 4 == WIRE_VERSION && hdr.group == group).then_some((hdr.from, msg))
}

/// The transport header, first on the wire.
#[derive(Serialize, Deserialize, Debug)]
struct WireHeader {
    /// `WIRE_VERSION << 4 | kind`.
    tag: u8,
    group: u32,
    view: ViewId,
    from: Rank,
}

/// The first byte no stack frame begins with (its version nibble is not the wire version),
/// reserved for a driver's own frames, such as the runtime's directory gossip. A stack that
/// is handed such a datagram drops it as of an unknown version (`bad_header`).
pub const RESERVED_FRAME_TAG: u8 = 0xff;

/// If `datagram` is an in-view frame (a cast or a send): the group's tag, the view id and
/// the sender's rank in that view. Lets a driver learn who sent a datagram without building
/// a message; `None` for a frame outside every view and for anything that does not parse.
pub fn peek_sender(datagram: &[u8]) -> Option<(u32, ViewId, Rank)> {
    let (hdr, _) = postcard::take_from_bytes::<WireHeader>(datagram).ok()?;
    (hdr.tag >> 4 == WIRE_VERSION && hdr.tag & 0xf <= KIND_SEND)
        .then_some((hdr.group, hdr.view, hdr.from))
}

/// The group tag and view id a datagram is addressed to, if it is one of ours; lets a
/// membership service hold datagrams of a view it has not installed yet.
pub fn peek_view(datagram: &[u8]) -> Option<(u32, ViewId)> {
    if datagram.first().map(|t| *t & 0xf) == Some(KIND_OUTSIDE) {
        return None;
    }
    let (hdr, _) = postcard::take_from_bytes::<WireHeader>(datagram).ok()?;
    (hdr.tag >> 4 == WIRE_VERSION).then_some((hdr.group, hdr.view))
}

/// Where a datagram goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dest {
    /// To every member of the view (IP multicast, or one datagram per member).
    Cast,
    /// To one member.
    Member(Endpoint),
}

/// A datagram for the driver to send: the message's headers then its payload.
#[derive(Debug)]
pub struct Transmit {
    pub dest: Dest,
    pub msg: Message,
}

/// An event on its way to the handler at a position: 0 is the application, 1 the top layer,
/// `n` the bottom layer and `n + 1` the transport.
#[derive(Debug)]
pub(crate) enum Routed {
    Up(usize, Up),
    Down(usize, Down),
}

/// Pending timer requests, earliest first; ties in the order they were set.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Time, u64, usize, Token)>>,
    seq: u64,
}

impl Timers {
    #[inline]
    pub(crate) fn set(&mut self, at: Time, pos: usize, token: Token) {
        self.heap.push(Reverse((at, self.seq, pos, token)));
        self.seq += 1;
    }

    pub(crate) fn next(&self) -> Option<Time> {
        self.heap.peek().map(|Reverse((t, ..))| *t)
    }

    /// Removes the earliest timer: its time and token.
    pub(crate) fn pop(&mut self) -> Option<(Time, Token)> {
        self.heap.pop().map(|Reverse((t, _, _, token))| (t, token))
    }
}

/// What the transport counted: traffic, and datagrams it dropped and why.
#[derive(Clone, Copy, Default, Debug, PartialEq, Eq)]
pub struct WireCounters {
    pub casts_sent: u64,
    pub sends_sent: u64,
    pub received: u64,
    /// Datagrams that did not decode, or of an unknown format version.
    pub bad_header: u64,
    /// Datagrams of another group sharing the address.
    pub other_group: u64,
    /// Datagrams of another view (older, newer or concurrent).
    pub other_view: u64,
    /// Our own casts looped back by the network (we deliver them locally).
    pub from_self: u64,
    /// Datagrams naming a rank outside the view, and sends to one.
    pub bad_rank: u64,
}

/// A stack of layers running in one view.
pub struct Stack {
    vs: ViewState,
    /// The group's tag, computed once.
    group_tag: u32,
    names: Vec<&'static str>,
    layers: Vec<Box<dyn Layer>>,
    queue: VecDeque<Routed>,
    timers: Timers,
    rng: Rng,
    now: Time,
    to_app: VecDeque<Up>,
    to_net: VecDeque<Transmit>,
    wire: WireCounters,
    gives: Props,
    levels: Vec<Level>,
    exited: bool,
}

impl fmt::Debug for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stack")
            .field("endpoint", &self.vs.endpoint)
            .field("view", &self.vs.view.id)
            .field("layers", &self.names)
            .finish()
    }
}

impl Stack {
    pub(crate) fn new(
        plan: &StackPlan,
        vs: ViewState,
        rng: Rng,
        now: Time,
    ) -> Result<Stack, StackError> {
        if vs.view.member(vs.rank) != Some(vs.endpoint) {
            return Err(StackError::NotMember { endpoint: vs.endpoint });
        }
        let mut layers = Vec::with_capacity(plan.layers.len());
        for (info, params) in &plan.layers {
            layers.push((info.build)(&mut Args::new(info.name, params), &vs)?);
        }
        let mut stack = Stack {
            names: plan.layers.iter().map(|(l, _)| l.name).collect(),
            group_tag: vs.group.tag(),
            layers,
            vs,
            queue: VecDeque::new(),
            timers: Timers::default(),
            rng,
            now,
            to_app: VecDeque::new(),
            to_net: VecDeque::new(),
            wire: WireCounters::default(),
            gives: plan.gives(),
            levels: plan.levels(),
            exited: false,
        };
        for pos in 1..=stack.layers.len() {
            stack.with_layer(pos, |l, cx| l.init(cx));
        }
        stack.run();
        Ok(stack)
    }

    /// An event from the application.
    pub fn down(&mut self, now: Time, ev: Down) {
        if self.exited {
            return;
        }
        self.advance(now);
        self.queue.push_back(Routed::Down(1, ev));
        self.run();
    }

    /// A datagram from the network.
    pub fn receive(&mut self, now: Time, datagram: Bytes) {
        if self.exited {
            return;
        }
        self.advance(now);
        self.wire.received += 1;
        let mut msg = Message::from_wire(datagram);
        let hdr = match msg.pop::<WireHeader>() {
            Ok(h) if h.tag >> 4 == WIRE_VERSION && (h.tag & 0xf) <= KIND_SEND => h,
            _ => return self.wire.bad_header += 1,
        };
        if hdr.group != self.group_tag {
            return self.wire.other_group += 1;
        }
        if hdr.view != self.vs.view.id {
            return self.wire.other_view += 1;
        }
        if hdr.from.index() >= self.vs.view.len() {
            return self.wire.bad_rank += 1;
        }
        if hdr.from == self.vs.rank {
            return self.wire.from_self += 1;
        }
        let ev = match hdr.tag & 0xf {
            KIND_CAST => Up::Cast { from: hdr.from, msg },
            _ => Up::Send { from: hdr.from, msg },
        };
        self.queue.push_back(Routed::Up(self.layers.len(), ev));
        self.run();
    }

    /// The earliest time a timer is due, if any.
    pub fn poll_timeout(&self) -> Option<Time> {
        if self.exited {
            return None;
        }
        self.timers.next()
    }

    /// Fires the timers due at `now`. Timers set while doing so fire on a later call, even if
    /// already due, so a layer that re-arms at `now` cannot spin the stack.
    pub fn on_timeout(&mut self, now: Time) {
        if self.exited {
            return;
        }
        self.advance(now);
        let limit = self.timers.seq;
        while let Some(Reverse((at, seq, pos, token))) = self.timers.heap.peek().copied() {
            if at > self.now || seq >= limit {
                break;
            }
            self.timers.heap.pop();
            self.with_layer(pos, |l, cx| l.timer(token, cx));
            self.run();
        }
    }

    /// The next event for the application.
    pub fn poll_up(&mut self) -> Option<Up> {
        self.to_app.pop_front()
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.to_net.pop_front()
    }

    pub fn view(&self) -> &View {
        &self.vs.view
    }

    pub fn view_state(&self) -> &ViewState {
        &self.vs
    }

    pub fn rank(&self) -> Rank {
        self.vs.rank
    }

    pub fn endpoint(&self) -> Endpoint {
        self.vs.endpoint
    }

    /// The layers, top to bottom.
    pub fn layer_names(&self) -> &[&'static str] {
        &self.names
    }

    /// What the stack gives its application.
    pub fn gives(&self) -> Props {
        self.gives
    }

    /// The service levels this stack offers (empty for a best-effort stack).
    pub fn levels(&self) -> &[Level] {
        &self.levels
    }

    /// Whether the stack has left the group: it handles nothing more.
    pub fn has_exited(&self) -> bool {
        self.exited
    }

    pub fn wire_counters(&self) -> WireCounters {
        self.wire
    }

    /// Bytes the application handed down that the layers hold, waiting for the network.
    pub fn backlog(&self) -> u64 {
        self.layers.iter().map(|l| l.backlog()).sum()
    }

    /// Every counter of every layer, as `(layer, counter, value)`, top to bottom, then the
    /// transport's.
    pub fn counters(&self) -> Vec<(&'static str, &'static str, u64)> {
        let mut out = Vec::new();
        for (name, layer) in self.names.iter().zip(&self.layers) {
            layer.counters(&mut |k, v| out.push((*name, k, v)));
        }
        let w = self.wire;
        for (k, v) in [
            ("casts_sent", w.casts_sent),
            ("sends_sent", w.sends_sent),
            ("received", w.received),
            ("bad_header", w.bad_header),
            ("other_group", w.other_group),
            ("other_view", w.other_view),
            ("from_self", w.from_self),
            ("bad_rank", w.bad_rank),
        ] {
            out.push(("transport", k, v));
        }
        out
    }

    fn advance(&mut self, now: Time) {
        // Time never runs backward for the layers, whatever the driver's clock does.
        self.now = self.now.max(now);
    }

    /// Hands the layer at `pos` its context and runs `f` on it.
    fn with_layer(&mut self, pos: usize, f: impl FnOnce(&mut dyn Layer, &mut Cx<'_>)) {
        let mut cx = Cx {
            now: self.now,
            vs: &self.vs,
            rng: &mut self.rng,
            pos,
            queue: &mut self.queue,
            timers: &mut self.timers,
        };
        f(&mut *self.layers[pos - 1], &mut cx);
    }

    /// Routes queued events until none is left.
    fn run(&mut self) {
        let n = self.layers.len();
        while let Some(routed) = self.queue.pop_front() {
            match routed {
                Routed::Up(0, ev) => self.to_app.push_back(ev),
                Routed::Down(pos, ev) if pos > n => self.on_transport(ev),
                Routed::Up(pos, ev) => self.with_layer(pos, |l, cx| l.up(ev, cx)),
                Routed::Down(pos, ev) => self.with_layer(pos, |l, cx| l.down(ev, cx)),
            }
        }
    }

    /// A down event leaving the bottom layer.
    fn on_transport(&mut self, ev: Down) {
        let bottom = self.layers.len();
        let me = self.vs.rank;
        match ev {
            Down::Cast(msg) => {
                self.wire.casts_sent += 1;
                let mut wire = msg.clone();
                wire.push(&self.header(KIND_CAST));
                self.to_net.push_back(Transmit { dest: Dest::Cast, msg: wire });
                // Our own cast comes back to us here, not through the network.
                self.queue.push_back(Routed::Up(bottom, Up::Cast { from: me, msg }));
            }
            Down::Send(to, msg) if to == me => {
                self.queue.push_back(Routed::Up(bottom, Up::Send { from: me, msg }));
            }
            Down::Send(to, mut msg) => match self.vs.view.member(to) {
                Some(dest) => {
                    self.wire.sends_sent += 1;
                    msg.push(&self.header(KIND_SEND));
                    self.to_net.push_back(Transmit { dest: Dest::Member(dest), msg });
                }
                None => self.wire.bad_rank += 1,
            },
            Down::Leave => {
                // No membership layer took it: leaving is just stopping.
                self.queue.push_back(Routed::Up(bottom, Up::Exit));
                self.exited = true;
            }
            // The two round trips of a view change come back up behind all that went before.
            Down::Block => self.queue.push_back(Routed::Up(bottom, Up::BlockOk)),
            Down::Flush => self.queue.push_back(Routed::Up(bottom, Up::Flush)),
            // Nobody below to block, suspect, fail or free buffers for.
            Down::BlockOk
            | Down::Suspect(_)
            | Down::Stable(_)
            | Down::Fail(_)
            | Down::Cut(_)
            | Down::Join(_)
            // No membership service took the state: there is no joiner to give it to.
            | Down::Snapshot(_)
            | Down::MergeAsk(_)
            | Down::MergeWith { .. }
            | Down::Install(_) => {}
        }
    }

    fn header(&self, kind: u8) -> WireHeader {
        WireHeader {
            tag: WIRE_VERSION << 4 | kind,
            group: self.group_tag,
            view: self.vs.view.id,
            from: self.vs.rank,
        }
    }
}
