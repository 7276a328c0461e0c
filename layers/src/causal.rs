//! `causal`: causal order of casts by vector timestamps.
//!
//! Adds ([`Props::CAUSAL`]): if a cast m happens before a cast m' (one sender cast m then m',
//! or the sender of m' delivered m before casting m', transitively through casts delivered
//! at a causal level) and m' is at a causal level ([`Level::is_causal`]: `Causal`, `Total`,
//! `Safe`), no member delivers m' before m. Casts at `Fifo` level keep only their sender's
//! order, and every cast, whatever its level, stays behind its sender's earlier casts (FIFO
//! across levels).
//! Needs below: reliable FIFO multicast ([`Props::RELIABLE_CAST`]): each sender's casts
//! arrive once, in the order sent, our own included (looped back by the transport).
//!
//! The rule is Birman's CBCAST (*Building Secure and Reliable Network Applications*, ch.
//! 13.12.5). Each member keeps `delivered[r]`, the casts of rank `r` it has passed up, and
//! `past[r]`, the casts of `r` in its causal past: for each cast it delivered, its sender's
//! cast count up to and including it, and for each cast it delivered at a causal level, that
//! cast's timestamp too. Every reliable cast, at every level, is stamped with `past` when it
//! is cast; its sender's own entry is implicit, the k-th cast (from 0) of `p` having
//! `T[p] = k`. Delivery: each sender's casts wait in a FIFO queue; the head of `p`'s queue is
//! deliverable when it is below `Causal`, or when `delivered[r] >= T[r]` for every `r != p`.
//! Delivering increments `delivered[p]` and, for a causal cast, merges `T` into `past`; after
//! each arrival every deliverable head is delivered, again and again, until none is (one
//! delivery can unblock another sender's head). Our own casts come back up through the same
//! queue, so `delivered[me]` counts them.
//!
//! A `Fifo` cast is delivered out of causal order, ahead of what its sender had delivered, so
//! it brings only itself into our past, not its sender's past: were it to bring that past,
//! our next causal cast would follow casts we may never hold (their sender partitioned away
//! or failed), and we could not deliver our own cast. So `past` never runs ahead of
//! `delivered`, and the timestamp is the sender's delivered vector, as in CBCAST.
//!
//! Timestamp compression (Singhal and Kshemkalyani, *An efficient implementation of vector
//! clocks*, Information Processing Letters 43(1), 1992): a cast carries only the entries, other
//! than its sender's own, that changed since the sender's previous cast in this view.
//! Receivers keep, per sender, the last full timestamp and apply the delta; FIFO delivery
//! below makes this sound, since every receiver sees every cast of a sender, in order.
//!
//! Header (postcard: one-byte tag, then varints):
//! - `Ts { level, delta }` on every reliable cast: its level (which the core does not carry
//!   on the wire), and the changed entries as `(rank, count)` pairs: three bytes when nothing
//!   changed.
//! - `Pass(level)` on an unreliable cast, passed up at once, unordered, with its level and
//!   unreliable mark restored.
//!
//! Point-to-point sends pass untouched, with no header.
//!
//! Parameters: none. Timers: none.
//!
//! Memory: a cast is held only while a cast it causally follows has not arrived. The layer
//! below delivers every cast of the view eventually (`mnak` naks the sender, then every other
//! member: the member whose delivery created the dependency holds the missing cast until it
//! is stable), so the queue holds at most what the group casts while a loss is repaired, a
//! few `retrans` periods of traffic; each held cast keeps its payload and one full timestamp
//! (a count per member). Held casts whose predecessor no live member holds wait until the
//! view ends.
//!
//! View change: on `Up::Flush` every survivor holds the same casts, so a cast still held then
//! follows a cast no survivor holds, which can only be a failed sender's: every held cast is
//! dropped (`dropped_at_flush`), the same ones at every survivor, and `Flush` goes up. (A held
//! cast whose predecessors are all here would have been delivered already.)
//!
//! Counters: `casts` (reliable casts stamped), `delivered` (casts passed up, own included),
//! `held` (casts waiting now), `max_held` (the most ever waiting at once), `delayed` (casts
//! that had to wait), `dropped_at_flush`, `bad_header` (dropped: undecodable, or a timestamp
//! naming a rank outside the view, its own sender, or going backward).

use std::collections::VecDeque;

use horus_core::spec::Args;
use horus_core::{
    Cx, Down, Layer, LayerInfo, Level, Message, ParamError, Props, Rank, Seqno, Up, ViewState,
};
use serde::{Deserialize, Serialize};

/// The layer as stack specs name it.
///
/// # Examples
///
/// ```
/// use horus_core::{Level, Registry};
///
/// let registry = horus_layers::registry();
/// let plan = registry.plan("causal:reliable").unwrap();
/// assert_eq!(plan.levels(), [Level::Fifo, Level::Causal]);
/// // Causal order needs every cast to arrive: the layers below must be reliable.
/// let mut bare = Registry::new();
/// bare.add_layer(horus_layers::causal::INFO);
/// assert!(bare.plan("causal").unwrap_err().to_string().contains("reliable FIFO multicast"));
/// ```
pub const INFO: LayerInfo = LayerInfo {
    name: "causal",
    doc: "causal order of casts by compressed vector timestamps (CBCAST)",
    needs: Props::RELIABLE_CAST,
    gives: Props::CAUSAL,
    hides: Props::NONE,
    build,
};

fn build(_: &mut Args<'_>, vs: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    Ok(Box::new(Causal::new(vs)))
}

/// What this layer writes on the wire.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
enum Header {
    /// A reliable cast at `level`; `delta` holds the entries of its timestamp (its sender's
    /// own aside) that changed since its sender's previous cast.
    Ts { level: Level, delta: Vec<(Rank, Seqno)> },
    /// An unreliable cast at this level, passed through unordered.
    Pass(Level),
}

/// A cast received before it could be delivered.
#[derive(Debug)]
struct Held {
    level: Level,
    /// Its full timestamp, its sender's own entry included.
    ts: Box<[Seqno]>,
    msg: Message,
}

/// What we know of one sender's casts.
#[derive(Debug)]
struct Sender {
    /// The timestamp of its last cast received; its own entry counts its casts received.
    ts: Vec<Seqno>,
    /// Its casts received and not yet delivered, in the order sent.
    queue: VecDeque<Held>,
}

#[derive(Debug, Default)]
struct Stats {
    casts: u64,
    delivered: u64,
    max_held: u64,
    delayed: u64,
    dropped_at_flush: u64,
    bad_header: u64,
}

/// State for one view; the next view builds a fresh one.
#[derive(Debug)]
pub struct Causal {
    me: Rank,
    /// By rank: casts passed up.
    delivered: Vec<Seqno>,
    /// By rank: casts in our causal past, what our next cast is stamped with.
    past: Vec<Seqno>,
    /// The timestamp of our previous cast, which the next one's delta is taken against.
    last_sent: Vec<Seqno>,
    senders: Vec<Sender>,
    /// Casts in all the queues.
    held: u64,
    stats: Stats,
}

impl Layer for Causal {
    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        let (from, mut msg) = match ev {
            Up::Cast { from, msg } => (from, msg),
            Up::Flush => {
                self.on_flush();
                return cx.up(Up::Flush);
            }
            ev => return cx.up(ev),
        };
        match msg.pop::<Header>() {
            Ok(Header::Ts { level, delta }) => self.on_ts(from, level, &delta, msg, cx),
            Ok(Header::Pass(level)) => {
                msg.set_level(level);
                msg.set_unreliable(true);
                cx.up(Up::Cast { from, msg });
            }
            Err(_) => self.stats.bad_header += 1,
        }
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Cast(mut msg) if msg.is_unreliable() => {
                msg.push(&Header::Pass(msg.level()));
                cx.down(Down::Cast(msg));
            }
            Down::Cast(mut msg) => {
                let delta = self.stamp();
                msg.push(&Header::Ts { level: msg.level(), delta });
                self.stats.casts += 1;
                cx.down(Down::Cast(msg));
            }
            ev => cx.down(ev),
        }
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        let s = &self.stats;
        report("casts", s.casts);
        report("delivered", s.delivered);
        report("held", self.held);
        report("max_held", s.max_held);
        report("delayed", s.delayed);
        report("dropped_at_flush", s.dropped_at_flush);
        report("bad_header", s.bad_header);
    }
}

impl Causal {
    fn new(vs: &ViewState) -> Self {
        let n = vs.view.len();
        Causal {
            me: vs.rank,
            delivered: vec![Seqno(0); n],
            past: vec![Seqno(0); n],
            last_sent: vec![Seqno(0); n],
            senders: (0..n)
                .map(|_| Sender { ts: vec![Seqno(0); n], queue: VecDeque::new() })
                .collect(),
            held: 0,
            stats: Stats::default(),
        }
    }

    /// The view ends: what is still held follows a cast of a failed sender no survivor holds.
    fn on_flush(&mut self) {
        for s in &mut self.senders {
            self.stats.dropped_at_flush += s.queue.len() as u64;
            s.queue.clear();
        }
        self.held = 0;
    }

    /// The delta for our next cast: the entries of `past`, ours aside, changed since our
    /// previous cast (Singhal and Kshemkalyani's compression).
    fn stamp(&mut self) -> Vec<(Rank, Seqno)> {
        let me = self.me.index();
        let mut delta = Vec::new();
        for (r, (now, sent)) in self.past.iter().zip(self.last_sent.iter_mut()).enumerate() {
            if r != me && now != sent {
                delta.push((Rank(r as u32), *now));
                *sent = *now;
            }
        }
        delta
    }

    /// A reliable cast of `from`: rebuild its timestamp, then deliver it, or hold it.
    fn on_ts(
        &mut self,
        from: Rank,
        level: Level,
        delta: &[(Rank, Seqno)],
        mut msg: Message,
        cx: &mut Cx<'_>,
    ) {
        let n = self.senders.len();
        let Some(s) = self.senders.get_mut(from.index()) else {
            return self.stats.bad_header += 1;
        };
        // Check the whole delta before applying any of it: a bad one changes nothing.
        let bad = |&(r, c): &(Rank, Seqno)| r == from || r.index() >= n || c < s.ts[r.index()];
        if delta.iter().any(bad) {
            return self.stats.bad_header += 1;
        }
        for &(r, c) in delta {
            s.ts[r.index()] = c;
        }
        msg.set_level(level);
        let p = from.index();
        if s.queue.is_empty() && ready(&self.delivered, p, level, &s.ts) {
            // The usual case: nothing to wait for, and no copy of the timestamp.
            let ts = std::mem::take(&mut s.ts);
            self.deliver(from, &ts, msg, cx);
            let s = &mut self.senders[p];
            s.ts = ts;
            s.ts[p] = s.ts[p].next();
            self.deliver_ready(cx);
        } else {
            // Behind a cast it follows, or behind its sender's held casts (FIFO across levels).
            s.queue.push_back(Held { level, ts: s.ts.clone().into_boxed_slice(), msg });
            s.ts[p] = s.ts[p].next();
            self.held += 1;
            self.stats.delayed += 1;
            self.stats.max_held = self.stats.max_held.max(self.held);
        }
    }

    /// Delivers every deliverable head, until a pass over the senders delivers nothing.
    fn deliver_ready(&mut self, cx: &mut Cx<'_>) {
        let mut progress = self.held > 0;
        while progress {
            progress = false;
            for p in 0..self.senders.len() {
                while let Some(h) = self.senders[p].queue.front() {
                    if !ready(&self.delivered, p, h.level, &h.ts) {
                        break;
                    }
                    let h = self.senders[p].queue.pop_front().expect("the head was just seen");
                    self.held -= 1;
                    self.deliver(Rank(p as u32), &h.ts, h.msg, cx);
                    progress = true;
                }
            }
        }
    }

    /// Passes up `from`'s cast stamped `ts`, and takes it into our causal past.
    fn deliver(&mut self, from: Rank, ts: &[Seqno], mut msg: Message, cx: &mut Cx<'_>) {
        let p = from.index();
        if msg.level().is_causal() {
            // For the layers above that hold casts (total): what must come out before it.
            msg.set_deps(Some(std::sync::Arc::new(ts.to_vec())));
        }
        debug_assert_eq!(ts[p], self.delivered[p], "FIFO below: casts arrive in order");
        self.delivered[p] = self.delivered[p].next();
        if msg.level().is_causal() {
            // Delivered in causal order: what its sender had delivered is ours too. A cast of
            // a lower level came out of causal order and brings only itself: taking its
            // sender's past would make our next cast wait for casts we may never hold (our own
            // included, which we could then not deliver).
            for (past, t) in self.past.iter_mut().zip(ts) {
                *past = (*past).max(*t);
            }
        }
        self.past[p] = self.past[p].max(self.delivered[p]);
        self.stats.delivered += 1;
        cx.up(Up::Cast { from, msg });
    }
}

/// Whether a cast of `p` at `level` stamped `ts`, at the head of `p`'s queue, may be
/// delivered: it is below `Causal`, or every cast it follows of every other sender has been
/// (Birman, ch. 13.12.5).
fn ready(delivered: &[Seqno], p: usize, level: Level, ts: &[Seqno]) -> bool {
    !level.is_causal() || delivered.iter().zip(ts).enumerate().all(|(r, (d, t))| r == p || d >= t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use horus_core::testing::Harness;
    use quickcheck::quickcheck;

    fn causal(n: usize, rank: u32) -> Harness {
        Harness::from_info(n, rank, &INFO, "")
    }

    /// A reliable cast as it arrives from the network: level and mark not carried.
    fn ts(level: Level, delta: &[(u32, u64)], payload: &'static [u8]) -> Message {
        let mut m = Message::new(Bytes::from_static(payload));
        let delta = delta.iter().map(|&(r, c)| (Rank(r), Seqno(c))).collect();
        m.push(&Header::Ts { level, delta });
        Message::from_wire(m.to_bytes())
    }

    fn arrive(h: &mut Harness, from: u32, msg: Message) {
        h.up(Up::Cast { from: Rank(from), msg });
    }

    /// Payloads of the casts passed up, with their level.
    fn delivered(h: &mut Harness) -> Vec<(Bytes, Level)> {
        h.take_ups()
            .into_iter()
            .map(|ev| match ev {
                Up::Cast { msg, .. } => (msg.payload().clone(), msg.level()),
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn payloads(h: &mut Harness) -> Vec<Bytes> {
        delivered(h).into_iter().map(|(p, _)| p).collect()
    }

    fn b(s: &'static [u8]) -> Bytes {
        Bytes::from_static(s)
    }

    /// Casts from above at `level`; returns the header it went down with.
    fn cast(h: &mut Harness, level: Level) -> Header {
        h.down(Down::Cast(Message::control().with_level(level)));
        match h.take_downs().as_mut_slice() {
            [Down::Cast(m)] => m.pop::<Header>().expect("our own header decodes"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_cast_waits_for_the_cast_it_causally_follows() {
        // p1 delivered p0's first cast, then cast "b": rank 2 gets "b" first (Birman 13.12.5).
        let mut h = causal(3, 2);
        arrive(&mut h, 1, ts(Level::Causal, &[(0, 1)], b"b"));
        assert!(payloads(&mut h).is_empty());
        assert_eq!((h.counter("held"), h.counter("delayed")), (1, 1));
        arrive(&mut h, 0, ts(Level::Causal, &[], b"a"));
        assert_eq!(payloads(&mut h), [b(b"a"), b(b"b")]);
        assert_eq!((h.counter("held"), h.counter("max_held")), (0, 1));
        assert_eq!(h.counter("delivered"), 2);
    }

    #[test]
    fn fifo_level_casts_are_not_held_for_other_senders() {
        let mut h = causal(3, 2);
        arrive(&mut h, 1, ts(Level::Fifo, &[(0, 1)], b"b"));
        assert_eq!(payloads(&mut h), [b(b"b")]);
        assert_eq!(h.counter("delayed"), 0);
    }

    #[test]
    fn a_fifo_delivery_brings_only_itself_into_our_past() {
        // Rank 1's FIFO cast follows rank 0's first cast, which we never got: our next cast
        // follows rank 1's cast, not rank 0's (else we could not deliver our own cast).
        let mut h = causal(3, 2);
        arrive(&mut h, 1, ts(Level::Fifo, &[(0, 1)], b"f"));
        assert_eq!(payloads(&mut h), [b(b"f")]);
        assert_eq!(
            cast(&mut h, Level::Causal),
            Header::Ts { level: Level::Causal, delta: vec![(Rank(1), Seqno(1))] }
        );
        // A causal delivery brings its sender's past along.
        arrive(&mut h, 0, ts(Level::Causal, &[], b"a"));
        arrive(&mut h, 1, ts(Level::Causal, &[(0, 1)], b"c"));
        assert_eq!(payloads(&mut h), [b(b"a"), b(b"c")]);
        assert_eq!(
            cast(&mut h, Level::Causal),
            Header::Ts {
                level: Level::Causal,
                delta: vec![(Rank(0), Seqno(1)), (Rank(1), Seqno(2))]
            }
        );
    }

    #[test]
    fn a_fifo_cast_waits_behind_its_senders_held_causal_cast() {
        let mut h = causal(3, 2);
        arrive(&mut h, 1, ts(Level::Causal, &[(0, 1)], b"b"));
        arrive(&mut h, 1, ts(Level::Fifo, &[], b"c"));
        assert!(payloads(&mut h).is_empty(), "FIFO across levels");
        assert_eq!(h.counter("held"), 2);
        arrive(&mut h, 0, ts(Level::Fifo, &[], b"a"));
        assert_eq!(payloads(&mut h), [b(b"a"), b(b"b"), b(b"c")]);
    }

    #[test]
    fn a_delivery_can_unblock_a_chain_of_senders() {
        // c (p2) follows b (p1), which follows a (p0); they arrive in reverse.
        let mut h = causal(4, 3);
        arrive(&mut h, 2, ts(Level::Causal, &[(0, 1), (1, 1)], b"c"));
        arrive(&mut h, 1, ts(Level::Causal, &[(0, 1)], b"b"));
        assert!(payloads(&mut h).is_empty());
        arrive(&mut h, 0, ts(Level::Causal, &[], b"a"));
        assert_eq!(payloads(&mut h), [b(b"a"), b(b"b"), b(b"c")]);
    }

    #[test]
    fn timestamps_carry_only_changed_entries() {
        // Singhal and Kshemkalyani: only what changed since our previous cast.
        let mut h = causal(3, 0);
        assert_eq!(cast(&mut h, Level::Causal), Header::Ts { level: Level::Causal, delta: vec![] });
        // Our own cast comes back and is delivered: our own entry is implicit, never sent.
        arrive(&mut h, 0, ts(Level::Causal, &[], b"own"));
        assert_eq!(cast(&mut h, Level::Causal), Header::Ts { level: Level::Causal, delta: vec![] });
        arrive(&mut h, 1, ts(Level::Fifo, &[], b"x"));
        assert_eq!(payloads(&mut h).len(), 2);
        assert_eq!(
            cast(&mut h, Level::Fifo),
            Header::Ts { level: Level::Fifo, delta: vec![(Rank(1), Seqno(1))] }
        );
        assert_eq!(cast(&mut h, Level::Causal), Header::Ts { level: Level::Causal, delta: vec![] });
        assert_eq!(h.counter("casts"), 4);
    }

    #[test]
    fn the_level_travels_in_the_header() {
        let mut h = causal(2, 0);
        for level in Level::ALL {
            h.down(Down::Cast(Message::new(b(b"m")).with_level(level)));
            let Down::Cast(m) = h.take_downs().remove(0) else { panic!() };
            let wire = Message::from_wire(m.to_bytes());
            assert_eq!(wire.level(), Level::Fifo, "the wire does not carry the mark");
            arrive(&mut h, 0, wire);
            assert_eq!(delivered(&mut h), [(b(b"m"), level)]);
        }
    }

    #[test]
    fn unreliable_casts_pass_at_once() {
        // Sent unstamped...
        let mut sender = causal(3, 1);
        let gossip = Message::new(b(b"gossip")).with_level(Level::Total).unreliable();
        sender.down(Down::Cast(gossip));
        let Down::Cast(sent) = sender.take_downs().remove(0) else { panic!() };
        assert_eq!(sender.counter("casts"), 0);
        // ...and passed up at once, even past a held cast of its sender, level and mark kept.
        let mut h = causal(3, 2);
        arrive(&mut h, 1, ts(Level::Causal, &[(0, 1)], b"held"));
        arrive(&mut h, 1, Message::from_wire(sent.to_bytes()));
        let ups = h.take_ups();
        let [Up::Cast { msg, .. }] = ups.as_slice() else { panic!("{ups:?}") };
        assert!(msg.is_unreliable());
        assert_eq!((msg.payload(), msg.level()), (&b(b"gossip"), Level::Total));
        assert_eq!(h.counter("held"), 1);
    }

    #[test]
    fn point_to_point_sends_pass_untouched() {
        let mut h = causal(2, 0);
        h.down(Down::Send(Rank(1), Message::new(b(b"s"))));
        let Down::Send(_, m) = h.take_downs().remove(0) else { panic!() };
        assert!(m.headers().is_empty());
        h.up(Up::Send { from: Rank(1), msg: Message::from_wire(b(b"s")) });
        assert!(matches!(h.take_ups().as_slice(), [Up::Send { msg, .. }] if msg.payload() == "s"));
    }

    #[test]
    fn casts_still_held_at_flush_are_dropped() {
        // p1's "b" follows p0's first cast, which no survivor holds; "c" waits behind "b".
        let mut h = causal(4, 3);
        arrive(&mut h, 1, ts(Level::Causal, &[(0, 1)], b"b"));
        arrive(&mut h, 1, ts(Level::Fifo, &[], b"c"));
        arrive(&mut h, 2, ts(Level::Causal, &[], b"ok"));
        assert_eq!(payloads(&mut h), [b(b"ok")]);
        h.up(Up::Flush);
        assert!(matches!(h.take_ups().as_slice(), [Up::Flush]));
        assert_eq!((h.counter("held"), h.counter("dropped_at_flush")), (0, 2));
    }

    #[test]
    fn garbage_is_dropped_and_counted() {
        let mut h = causal(3, 2);
        arrive(&mut h, 1, Message::from_wire(b(&[0xff, 0xff])));
        arrive(&mut h, 1, ts(Level::Causal, &[(7, 1)], b"rank outside the view"));
        arrive(&mut h, 1, ts(Level::Causal, &[(1, 1)], b"names its own sender"));
        arrive(&mut h, 9, ts(Level::Causal, &[], b"sender outside the view"));
        arrive(&mut h, 1, ts(Level::Fifo, &[(0, 2)], b"ok"));
        arrive(&mut h, 1, ts(Level::Fifo, &[(0, 1)], b"going backward"));
        assert_eq!(payloads(&mut h), [b(b"ok")]);
        assert_eq!(h.counter("bad_header"), 5);
    }

    /// Three senders (ranks 0..3) and a receiver (rank 3), each a real `causal` layer. The
    /// senders cast at random levels and receive each other's casts in a random order (FIFO
    /// per sender); the happens-before relation is computed from what they really delivered.
    /// Then every member's delivery order is checked against it.
    fn model(ops: &[u8], arrival: &[u8]) -> Result<(), String> {
        const SENDERS: usize = 3;
        let mut members: Vec<Harness> = (0..=SENDERS as u32).map(|r| causal(4, r)).collect();
        // By sender: its casts on the wire, their level, and the happens-before stamp.
        let mut wire: Vec<Vec<Bytes>> = vec![Vec::new(); SENDERS];
        let mut casts: Vec<Vec<(Level, Vec<u64>)>> = vec![Vec::new(); SENDERS];
        let mut clocks = vec![vec![0u64; SENDERS]; SENDERS + 1];
        // By member: its deliveries, as (sender, index).
        let mut order: Vec<Vec<(usize, usize)>> = vec![Vec::new(); SENDERS + 1];
        // By member, by sender: casts received.
        let mut got = vec![vec![0usize; SENDERS]; SENDERS + 1];

        fn take(
            h: &mut Harness,
            clock: &mut [u64],
            casts: &[Vec<(Level, Vec<u64>)>],
        ) -> Vec<(usize, usize)> {
            let mut out = Vec::new();
            for ev in h.take_ups() {
                let Up::Cast { from, msg } = ev else { continue };
                let p = msg.payload();
                let (s, k) = (usize::from(p[0]), usize::from(u16::from_le_bytes([p[1], p[2]])));
                assert_eq!(s, from.index());
                // Only a causal delivery brings its sender's past along.
                if casts[s][k].0.is_causal() {
                    for (c, t) in clock.iter_mut().zip(&casts[s][k].1) {
                        *c = (*c).max(*t);
                    }
                }
                clock[s] = clock[s].max(k as u64 + 1);
                out.push((s, k));
            }
            out
        }

        /// Member `m` receives the next cast of sender `s`.
        fn deliver(
            members: &mut [Harness],
            wire: &[Vec<Bytes>],
            got: &mut [Vec<usize>],
            m: usize,
            s: usize,
        ) {
            let bytes = wire[s][got[m][s]].clone();
            got[m][s] += 1;
            members[m].up(Up::Cast { from: Rank(s as u32), msg: Message::from_wire(bytes) });
        }

        for &op in ops {
            let s = usize::from(op) % SENDERS;
            match (op / 3) % 3 {
                0 => {
                    let level = if op / 9 % 2 == 0 { Level::Fifo } else { Level::Causal };
                    let k = casts[s].len();
                    casts[s].push((level, clocks[s].clone()));
                    clocks[s][s] += 1;
                    let payload = [s as u8, k as u8, (k >> 8) as u8];
                    let msg = Message::new(Bytes::copy_from_slice(&payload)).with_level(level);
                    members[s].down(Down::Cast(msg));
                    let Down::Cast(m) = members[s].take_downs().remove(0) else { panic!() };
                    wire[s].push(m.to_bytes());
                    deliver(&mut members, &wire, &mut got, s, s); // local loopback
                }
                _ => {
                    let r = (s + 1 + usize::from(op / 9 % 2)) % SENDERS;
                    if got[s][r] < wire[r].len() {
                        deliver(&mut members, &wire, &mut got, s, r);
                    }
                }
            }
            let d = take(&mut members[s], &mut clocks[s], &casts);
            order[s].extend(d);
        }
        // The receiver gets everything, in an order that is FIFO per sender only.
        let mut arrival = arrival.iter().cycle();
        loop {
            let left: Vec<usize> =
                (0..SENDERS).filter(|&r| got[SENDERS][r] < wire[r].len()).collect();
            if left.is_empty() {
                break;
            }
            let pick = arrival.next().map_or(0, |&a| usize::from(a)) % left.len();
            deliver(&mut members, &wire, &mut got, SENDERS, left[pick]);
        }
        let d = take(&mut members[SENDERS], &mut clocks[SENDERS], &casts);
        order[SENDERS].extend(d);

        let total: usize = casts.iter().map(Vec::len).sum();
        if order[SENDERS].len() != total {
            return Err(format!("receiver delivered {} of {total}", order[SENDERS].len()));
        }
        for (m, seq) in order.iter().enumerate() {
            let mut done = [0usize; SENDERS];
            for &(s, k) in seq {
                if k != done[s] {
                    return Err(format!("member {m} delivered {s}/{k} after {} of {s}'s", done[s]));
                }
                let (level, stamp) = &casts[s][k];
                for r in (0..SENDERS).filter(|&r| r != s && level.is_causal()) {
                    if (done[r] as u64) < stamp[r] {
                        return Err(format!(
                            "member {m} delivered {s}/{k} before {r}/{}",
                            stamp[r] - 1
                        ));
                    }
                }
                done[s] += 1;
            }
        }
        Ok(())
    }

    #[test]
    fn a_cast_that_follows_another_only_through_a_fifo_cast_is_not_held_for_it() {
        // An op is `sender + 3 * kind + 9 * sub`: kind 0 casts (sub 1: causal), else receives
        // from sender + 1 + sub. 0 casts (causal), 1 receives it, 1 casts (fifo), 2 receives
        // 1's, 2 casts (causal); the receiver gets 2's, then 1's, then 0's: 2's cast follows
        // 1's, not 0's.
        let ops = [9, 1 + 3 + 9, 1, 2 + 3 + 9, 2 + 9];
        assert_eq!(model(&ops, &[2, 1, 0]), Ok(()));
    }

    quickcheck! {
        fn header_codec_round_trips(level: u8, delta: Vec<(u32, u64)>, pass: bool) -> bool {
            let level = Level::ALL[usize::from(level) % 4];
            let h = if pass {
                Header::Pass(level)
            } else {
                Header::Ts { level, delta: delta.into_iter().map(|(r, c)| (Rank(r), Seqno(c))).collect() }
            };
            let mut m = Message::control();
            m.push(&h);
            Message::from_wire(m.to_bytes()).pop::<Header>().ok() == Some(h)
        }

        fn garbage_never_panics(msgs: Vec<(u8, Vec<u8>)>) -> bool {
            let mut h = causal(3, 0);
            for (from, bytes) in msgs {
                let msg = Message::from_wire(Bytes::from(bytes));
                h.up(Up::Cast { from: Rank(u32::from(from % 4)), msg });
            }
            true
        }

        /// Any history of three senders, delivered to a fourth member in any order that keeps
        /// each sender's order, is delivered completely and in causal order, at every member.
        fn every_member_delivers_in_causal_order(ops: Vec<u8>, arrival: Vec<u8>) -> bool {
            match model(&ops, &arrival) {
                Ok(()) => true,
                Err(e) => {
                    eprintln!("{e}");
                    false
                }
            }
        }
    }
}
