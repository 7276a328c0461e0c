//! `safe`: uniform (safe) delivery.
//!
//! Adds: a cast at level `Safe` is delivered only once every member of the view holds it, so
//! that no member, even one that crashes right after delivering it, delivers what the
//! survivors will not (uniform delivery: Hadzilacos and Toueg, *Fault-Tolerant Broadcasts and
//! Related Problems*, 1993; Spread's SAFE service; Birman ch. 13, "safe" or "dynamically
//! uniform" delivery).
//! Needs below: stability (`stable`), with nothing between that merges or splits casts, so
//! that this layer's count of each sender's casts is the seqno stability speaks of.
//!
//! Each reliable cast carries its level (`Data { level }`, restored as the message's level
//! going up). A `Safe` cast is held until the stability vector covers it; the casts its sender
//! sent after it wait behind it, whatever their level, so each sender's order is kept. Casts of
//! other senders pass: the ordering layers above keep the total and causal orders. Unreliable
//! casts pass with `Pass`; point-to-point sends pass untouched.
//!
//! View change: after `Down::Fail`, stability (from `stable`) covers the survivors only, so a
//! safe cast is delivered once every survivor holds it. On `Up::Flush` every survivor holds
//! every cast of the cut, so each held cast is delivered, in its sender's order
//! (`delivered_at_flush`), and then `Flush` goes up.
//!
//! What bounds the queue: a held cast waits only for stability, which the reliable layers
//! below reach once every member has received it; flow control below bounds what a sender has
//! outstanding. No parameters, no timers.

use std::collections::VecDeque;

use horus_core::spec::Args;
use horus_core::{
    Cx, Down, Layer, LayerInfo, Level, Message, ParamError, Props, Rank, Seqno, Up, ViewState,
};
use serde::{Deserialize, Serialize};

pub const INFO: LayerInfo = LayerInfo {
    name: "safe",
    doc: "uniform delivery: safe casts are delivered once every member holds them",
    needs: Props::STABLE,
    gives: Props::SAFE,
    hides: Props::NONE,
    build,
};

fn build(_: &mut Args<'_>, vs: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    Ok(Box::new(Safe::new(vs)))
}

/// What this layer writes on the wire.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
enum Header {
    /// An unreliable cast, passed through.
    Pass,
    /// A reliable cast at `level`.
    Data { level: Level },
}

/// One sender's casts as they pass.
#[derive(Debug, Default)]
struct Sender {
    /// Reliable casts received so far: the next one's seqno.
    received: Seqno,
    /// Held casts, each with its seqno, oldest first; the head is a safe cast not yet stable.
    held: VecDeque<(Seqno, Message)>,
}

#[derive(Debug, Default)]
struct Stats {
    safe_delivered: u64,
    delayed: u64,
    max_held: u64,
    delivered_at_flush: u64,
    bad_header: u64,
}

/// State for one view.
#[derive(Debug)]
pub struct Safe {
    senders: Vec<Sender>,
    stable: Vec<Seqno>,
    stats: Stats,
}

impl Safe {
    fn new(vs: &ViewState) -> Self {
        let n = vs.view.len();
        Safe {
            senders: (0..n).map(|_| Sender::default()).collect(),
            stable: vec![Seqno(0); n],
            stats: Stats::default(),
        }
    }

    fn held(&self) -> u64 {
        self.senders.iter().map(|s| s.held.len() as u64).sum()
    }

    fn on_data(&mut self, from: Rank, msg: Message, cx: &mut Cx<'_>) {
        let Some(s) = self.senders.get_mut(from.index()) else {
            return self.stats.bad_header += 1;
        };
        let seqno = s.received;
        s.received = s.received.next();
        let stable = seqno < self.stable[from.index()];
        if s.held.is_empty() && (msg.level() != Level::Safe || stable) {
            self.stats.safe_delivered += u64::from(msg.level() == Level::Safe);
            return cx.up(Up::Cast { from, msg });
        }
        self.stats.delayed += 1;
        s.held.push_back((seqno, msg));
        self.stats.max_held = self.stats.max_held.max(self.held());
    }

    /// Delivers, sender by sender, every held cast that stability now allows.
    fn on_stable(&mut self, stable: &[Seqno], cx: &mut Cx<'_>) {
        for (r, (s, st)) in self.senders.iter_mut().zip(stable).enumerate() {
            self.stable[r] = self.stable[r].max(*st);
            while let Some((seqno, m)) = s.held.front() {
                if m.level() == Level::Safe && *seqno >= self.stable[r] {
                    break;
                }
                let (_, msg) = s.held.pop_front().expect("a head was seen");
                self.stats.safe_delivered += u64::from(msg.level() == Level::Safe);
                cx.up(Up::Cast { from: Rank(r as u32), msg });
            }
        }
    }
}

impl Safe {
    /// The view ends, and every survivor holds what we hold: deliver it all, each sender's
    /// casts in order.
    fn on_flush(&mut self, cx: &mut Cx<'_>) {
        for (r, s) in self.senders.iter_mut().enumerate() {
            for (_, msg) in s.held.drain(..) {
                self.stats.delivered_at_flush += 1;
                self.stats.safe_delivered += u64::from(msg.level() == Level::Safe);
                cx.up(Up::Cast { from: Rank(r as u32), msg });
            }
        }
    }
}

impl Layer for Safe {
    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        match ev {
            Up::Cast { from, mut msg } => match msg.pop::<Header>() {
                Ok(Header::Pass) => {
                    msg.set_unreliable(true);
                    cx.up(Up::Cast { from, msg });
                }
                Ok(Header::Data { level }) if !msg.is_unreliable() => {
                    msg.set_level(level);
                    self.on_data(from, msg, cx);
                }
                _ => self.stats.bad_header += 1,
            },
            Up::Stable(stable) => {
                if stable.len() == self.senders.len() {
                    self.on_stable(&stable, cx);
                } else {
                    self.stats.bad_header += 1;
                }
                cx.up(Up::Stable(stable));
            }
            Up::Flush => {
                self.on_flush(cx);
                cx.up(Up::Flush);
            }
            ev => cx.up(ev),
        }
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Cast(mut msg) if msg.is_unreliable() => {
                msg.push(&Header::Pass);
                cx.down(Down::Cast(msg));
            }
            Down::Cast(mut msg) => {
                msg.push(&Header::Data { level: msg.level() });
                cx.down(Down::Cast(msg));
            }
            ev => cx.down(ev),
        }
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        report("safe_delivered", self.stats.safe_delivered);
        report("delayed", self.stats.delayed);
        report("held", self.held());
        report("max_held", self.stats.max_held);
        report("delivered_at_flush", self.stats.delivered_at_flush);
        report("bad_header", self.stats.bad_header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use horus_core::testing::Harness;
    use quickcheck::quickcheck;

    fn safe(n: usize) -> Harness {
        Harness::from_info(n, 0, &INFO, "")
    }

    fn cast(h: &mut Harness, from: u32, level: Level, payload: &'static [u8]) {
        let mut m = Message::new(Bytes::from_static(payload));
        m.push(&Header::Data { level });
        h.up(Up::Cast { from: Rank(from), msg: Message::from_wire(m.to_bytes()) });
    }

    fn delivered(h: &mut Harness) -> Vec<(u32, Level, Bytes)> {
        h.take_ups()
            .into_iter()
            .filter_map(|e| match e {
                Up::Cast { from, msg } => Some((from.0, msg.level(), msg.payload().clone())),
                _ => None,
            })
            .collect()
    }

    fn stable(h: &mut Harness, v: &[u64]) {
        h.up(Up::Stable(v.iter().map(|&s| Seqno(s)).collect()));
    }

    #[test]
    fn a_safe_cast_waits_until_every_member_holds_it() {
        let mut h = safe(3);
        cast(&mut h, 1, Level::Safe, b"s");
        assert!(delivered(&mut h).is_empty());
        stable(&mut h, &[0, 0, 0]);
        assert!(delivered(&mut h).is_empty(), "not yet stable");
        stable(&mut h, &[0, 1, 0]);
        assert_eq!(delivered(&mut h), vec![(1, Level::Safe, Bytes::from_static(b"s"))]);
        assert_eq!(h.counter("safe_delivered"), 1);
    }

    #[test]
    fn later_casts_of_the_same_sender_wait_behind_a_held_safe_cast() {
        let mut h = safe(3);
        cast(&mut h, 1, Level::Safe, b"s");
        cast(&mut h, 1, Level::Fifo, b"f");
        cast(&mut h, 2, Level::Fifo, b"other");
        // Another sender's cast passes; the sender's own later cast waits.
        assert_eq!(delivered(&mut h), vec![(2, Level::Fifo, Bytes::from_static(b"other"))]);
        stable(&mut h, &[0, 1, 0]);
        let got: Vec<Bytes> = delivered(&mut h).into_iter().map(|(_, _, p)| p).collect();
        assert_eq!(got, vec![Bytes::from_static(b"s"), Bytes::from_static(b"f")]);
    }

    #[test]
    fn a_safe_cast_already_stable_when_it_arrives_passes_at_once() {
        let mut h = safe(2);
        stable(&mut h, &[0, 1]);
        h.take_ups();
        cast(&mut h, 1, Level::Safe, b"s");
        assert_eq!(delivered(&mut h).len(), 1);
    }

    #[test]
    fn held_safe_casts_are_delivered_at_flush() {
        let mut h = safe(3);
        cast(&mut h, 2, Level::Safe, b"s2");
        cast(&mut h, 1, Level::Safe, b"s1");
        cast(&mut h, 1, Level::Fifo, b"f1");
        cast(&mut h, 2, Level::Safe, b"t2");
        assert!(delivered(&mut h).is_empty());
        h.up(Up::Flush);
        let ups = h.take_ups();
        assert!(matches!(ups.last(), Some(Up::Flush)), "{ups:?}");
        let got: Vec<(u32, Bytes)> = ups
            .into_iter()
            .filter_map(|e| match e {
                Up::Cast { from, msg } => Some((from.0, msg.payload().clone())),
                _ => None,
            })
            .collect();
        let want: Vec<(u32, Bytes)> = [(1, "s1"), (1, "f1"), (2, "s2"), (2, "t2")]
            .into_iter()
            .map(|(r, p)| (r, Bytes::from_static(p.as_bytes())))
            .collect();
        assert_eq!(got, want);
        assert_eq!((h.counter("held"), h.counter("delivered_at_flush")), (0, 4));
        assert_eq!(h.counter("safe_delivered"), 3);
    }

    #[test]
    fn the_level_travels_in_the_header() {
        let mut h = safe(2);
        h.down(Down::Cast(Message::new(Bytes::from_static(b"x")).with_level(Level::Total)));
        let Down::Cast(m) = h.take_downs().remove(0) else { panic!() };
        h.up(Up::Cast { from: Rank(1), msg: Message::from_wire(m.to_bytes()) });
        assert_eq!(delivered(&mut h)[0].1, Level::Total);
    }

    #[test]
    fn stability_is_passed_up_and_bad_input_counted() {
        let mut h = safe(2);
        stable(&mut h, &[1]);
        assert!(matches!(h.take_ups().as_slice(), [Up::Stable(_)]));
        h.up(Up::Cast { from: Rank(1), msg: Message::from_wire(Bytes::from_static(&[9, 9])) });
        cast(&mut h, 7, Level::Fifo, b"x");
        assert_eq!(h.counter("bad_header"), 3);
    }

    quickcheck! {
        fn header_codec_round_trips(level: u8) -> bool {
            let h = Header::Data { level: Level::ALL[usize::from(level % 4)] };
            let mut m = Message::control();
            m.push(&h);
            Message::from_wire(m.to_bytes()).pop::<Header>().ok() == Some(h)
        }

        fn garbage_never_panics(bytes: Vec<u8>, from: u32) -> bool {
            let mut h = safe(3);
            h.up(Up::Cast { from: Rank(from % 4), msg: Message::from_wire(Bytes::from(bytes)) });
            true
        }

        /// Whatever the levels and however stability advances, each sender's casts come out in
        /// order, and a safe cast never before it is stable.
        fn order_is_kept_and_safe_casts_wait_for_stability(levels: Vec<bool>, steps: Vec<u8>) -> bool {
            let mut h = safe(2);
            let n = levels.len() as u64;
            for &is_safe in &levels {
                cast(&mut h, 1, if is_safe { Level::Safe } else { Level::Fifo }, b"x");
            }
            let mut out = delivered(&mut h).len() as u64;
            let mut st = 0u64;
            let mut ok = true;
            for step in steps {
                st = (st + u64::from(step % 3)).min(n);
                stable(&mut h, &[0, st]);
                out += delivered(&mut h).len() as u64;
                // Delivered = a prefix; its end never passes a safe cast at or beyond `st`.
                let first_unstable_safe = levels.iter().enumerate().position(|(i, s)| *s && i as u64 >= st);
                ok &= first_unstable_safe.is_none_or(|i| out <= i as u64);
            }
            stable(&mut h, &[0, n]);
            out += delivered(&mut h).len() as u64;
            ok && out == n
        }
    }
}
