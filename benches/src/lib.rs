//! The benchmarks of Horus for Rust.
//!
//! - [`Pair`]: two stacks joined back to back with no network, for the criterion micro
//!   benchmarks of each layer and whole stacks (`benches/stacks.rs`).
//! - [`multi`]: the multi-process benchmark, a group of processes over real UDP measured
//!   beside raw UDP in the same run (`horus-bench`; #8); with `--join`, one member of such a
//!   group spread over hosts.

pub mod error;
mod fleet;
pub mod hist;
mod join;
pub mod multi;
pub mod proto;
mod raw;

pub use error::BenchError;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use horus_core::{
    Dest, Down, Endpoint, GroupName, Level, Message, Rng, Stack, StackPlan, Time, Up, View,
    ViewState,
};

/// Two members of one view, whose datagrams go straight to each other. Time advances by a
/// microsecond a round, so timers (packing, acks, gossip) fire as they would at that pace.
#[derive(Debug)]
pub struct Pair {
    stacks: [Stack; 2],
    now: Time,
    /// Casts delivered at the receiver so far.
    pub delivered: u64,
}

impl Pair {
    /// The two members of `plan`'s stack.
    pub fn new(plan: &StackPlan) -> Pair {
        let members = vec![Endpoint::new(0, 0), Endpoint::new(1, 0)];
        let view = Arc::new(View::initial(members.clone()));
        let g = GroupName::new("bench");
        let mk = |e: Endpoint| {
            let vs = ViewState::new(g.clone(), e, view.clone()).expect("a member");
            plan.build(vs, Rng::new(e.node), Time::ZERO).expect("the plan builds")
        };
        Pair { stacks: [mk(members[0]), mk(members[1])], now: Time::ZERO, delivered: 0 }
    }

    /// Member 0 casts `k` messages carrying `payload` at `level`; then both run until member
    /// 1 has delivered them all. Returns the casts delivered at member 1.
    ///
    /// Time moves a microsecond a round while datagrams flow, and jumps to the next timer when
    /// none does (a safe cast waits for stability gossip).
    pub fn cast_batch(&mut self, payload: &Bytes, k: usize, level: Level) -> u64 {
        let before = self.delivered;
        for _ in 0..k {
            let msg = Message::new(payload.clone()).with_level(level);
            self.stacks[0].down(self.now, Down::Cast(msg));
        }
        let target = before + k as u64;
        // Enough for any stack to finish; a stack that needs more is broken.
        for _ in 0..100_000 {
            let mut moved = false;
            for i in 0..2 {
                self.stacks[i].on_timeout(self.now);
                while let Some(t) = self.stacks[i].poll_transmit() {
                    moved = true;
                    let to = match t.dest {
                        Dest::Cast => 1 - i,
                        Dest::Member(e) => e.node as usize,
                    };
                    let datagram = t.msg.to_bytes();
                    self.stacks[to].receive(self.now, datagram);
                }
            }
            for (i, s) in self.stacks.iter_mut().enumerate() {
                while let Some(ev) = s.poll_up() {
                    if i == 1 && matches!(ev, Up::Cast { .. }) {
                        self.delivered += 1;
                    }
                }
            }
            if moved {
                self.now += Duration::from_micros(1);
            } else if self.delivered >= target {
                break;
            } else {
                let next = self.stacks.iter().filter_map(|s| s.poll_timeout()).min();
                self.now = next.unwrap_or(self.now + Duration::from_micros(1)).max(self.now);
            }
        }
        self.delivered - before
    }
}
