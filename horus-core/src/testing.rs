//! A harness for testing one layer alone: a manual clock, events in, events out.
//!
//! ```
//! use bytes::Bytes;
//! use horus_core::testing::Harness;
//! use horus_core::{Cx, Down, Layer, Message, Up};
//!
//! /// Passes everything through.
//! #[derive(Debug)]
//! struct Nop;
//! impl Layer for Nop {
//!     fn up(&mut self, ev: Up, cx: &mut Cx<'_>) { cx.up(ev) }
//!     fn down(&mut self, ev: Down, cx: &mut Cx<'_>) { cx.down(ev) }
//! }
//!
//! let mut h = Harness::new(3, 0, |_| Box::new(Nop));
//! h.down(Down::Cast(Message::new(Bytes::from_static(b"x"))));
//! assert!(matches!(h.take_downs().as_slice(), [Down::Cast(_)]));
//! ```

use std::collections::VecDeque;
use std::sync::Arc;

use crate::event::{Down, Up};
use crate::ids::{Endpoint, GroupName, Rank, View};
use crate::layer::{Cx, Layer};
use crate::rng::Rng;
use crate::spec::{Args, LayerInfo};
use crate::stack::{Routed, Timers};
use crate::time::Time;
use crate::view_state::ViewState;

/// One layer, driven by hand. Events it passes up or down are collected; timers fire when the
/// clock is advanced past them.
pub struct Harness {
    layer: Box<dyn Layer>,
    vs: ViewState,
    rng: Rng,
    now: Time,
    queue: VecDeque<Routed>,
    timers: Timers,
    ups: Vec<Up>,
    downs: Vec<Down>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness").field("layer", &self.layer).field("now", &self.now).finish()
    }
}

impl Harness {
    /// The layer made by `build` for member `rank` of a view of `n` members (endpoints
    /// `p0.0 .. p{n-1}.0`), initialised at time zero.
    pub fn new(n: usize, rank: u32, build: impl FnOnce(&ViewState) -> Box<dyn Layer>) -> Self {
        let members: Vec<Endpoint> = (0..n as u64).map(|i| Endpoint::new(i, 0)).collect();
        let view = Arc::new(View::initial(members));
        let vs = ViewState {
            group: GroupName::new("test"),
            endpoint: Endpoint::new(u64::from(rank), 0),
            view,
            rank: Rank(rank),
        };
        let layer = build(&vs);
        let mut h = Harness {
            layer,
            vs,
            rng: Rng::new(u64::from(rank)),
            now: Time::ZERO,
            queue: VecDeque::new(),
            timers: Timers::default(),
            ups: Vec::new(),
            downs: Vec::new(),
        };
        h.with_cx(|layer, cx| layer.init(cx));
        h
    }

    /// The layer `info` with the parameters of `spec_params` (as in a spec: `"size=100,delay=1ms"`),
    /// for member `rank` of a view of `n`.
    ///
    /// # Panics
    /// If the parameters are malformed or refused: a test's own mistake.
    pub fn from_info(n: usize, rank: u32, info: &LayerInfo, spec_params: &str) -> Self {
        let params: Vec<(String, String)> = spec_params
            .split(',')
            .filter(|kv| !kv.trim().is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("parameters are key=value");
                (k.trim().to_string(), v.trim().to_string())
            })
            .collect();
        Harness::new(n, rank, |vs| {
            let mut args = Args::new(info.name, &params);
            let layer = (info.build)(&mut args, vs).expect("the parameters are accepted");
            assert_eq!(args.unused(), None, "every parameter is known to {}", info.name);
            layer
        })
    }

    fn with_cx(&mut self, f: impl FnOnce(&mut dyn Layer, &mut Cx<'_>)) {
        let mut cx = Cx {
            now: self.now,
            vs: &self.vs,
            rng: &mut self.rng,
            pos: 1,
            queue: &mut self.queue,
            timers: &mut self.timers,
        };
        f(&mut *self.layer, &mut cx);
        for r in self.queue.drain(..) {
            match r {
                Routed::Up(_, ev) => self.ups.push(ev),
                Routed::Down(_, ev) => self.downs.push(ev),
            }
        }
    }

    /// An event from below.
    pub fn up(&mut self, ev: Up) {
        self.with_cx(|layer, cx| layer.up(ev, cx));
    }

    /// An event from above.
    pub fn down(&mut self, ev: Down) {
        self.with_cx(|layer, cx| layer.down(ev, cx));
    }

    /// Moves the clock to `t`, firing every timer due by then, in order, each at its own time.
    pub fn advance_to(&mut self, t: Time) {
        while let Some(at) = self.next_timer().filter(|at| *at <= t) {
            self.now = self.now.max(at);
            let (_, pos_token) = self.timers.pop().expect("a timer is due");
            self.with_cx(|layer, cx| layer.timer(pos_token, cx));
        }
        self.now = self.now.max(t);
    }

    /// Moves the clock forward by `d`.
    pub fn advance(&mut self, d: std::time::Duration) {
        let t = self.now + d;
        self.advance_to(t);
    }

    pub fn now(&self) -> Time {
        self.now
    }

    /// When the next timer is due.
    pub fn next_timer(&self) -> Option<Time> {
        self.timers.next()
    }

    /// Takes the events the layer passed up so far.
    pub fn take_ups(&mut self) -> Vec<Up> {
        std::mem::take(&mut self.ups)
    }

    /// Takes the events the layer passed down so far.
    pub fn take_downs(&mut self) -> Vec<Down> {
        std::mem::take(&mut self.downs)
    }

    /// The layer's counters.
    pub fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut out = Vec::new();
        self.layer.counters(&mut |k, v| out.push((k, v)));
        out
    }

    /// One counter's value (0 if the layer does not report it).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters().into_iter().find(|(k, _)| *k == name).map_or(0, |(_, v)| v)
    }
}
