//! `pt2pt`: reliable FIFO point-to-point sends.
//!
//! Adds: `Props::RELIABLE_SEND`. A send from one member to another is delivered to it exactly
//! once, in the order sent, while both stay in the view.
//! Needs below: `Props::SEND`, best-effort point-to-point; datagrams may be lost, duplicated
//! or reordered.
//!
//! The rule is a sliding window with cumulative acks and sender-driven retransmission, as in
//! Ensemble's `Pt2pt` layer (Hayden, *The Ensemble System*, 1998, and the Ensemble reference
//! manual) and TCP (RFC 793, sec. 3.3 and 3.7), per destination:
//! - the sender numbers its reliable sends to each peer from 0 in each view and keeps each one
//!   until the peer's cumulative ack covers it;
//! - at most `window` sends are in flight (sent, unacked) toward one peer; later ones wait in
//!   that peer's backlog, in order, and go as acks open the window. The backlog is not bounded
//!   here: `flow` above bounds what the application can have outstanding;
//! - the receiver delivers in seqno order, keeps early arrivals within the window (one slot per
//!   seqno, so at most `window` per peer), drops later ones and duplicates, and owes an ack.
//!   The ack rides on the next `Data` to that peer, or goes alone after `ack_delay`;
//! - every `retrans`, the sender resends what has been unacked for `retrans` or more, lowest
//!   seqno first, at most `burst` per peer per tick, so a long window does not flood the
//!   network.
//!
//! Casts pass untouched, without a header. Sends marked unreliable, and sends to a rank
//! outside the view (which the transport drops and counts), pass unsequenced. A send to this
//! member itself is looped back by the transport, which does not lose it: it needs no seqno.
//!
//! View change: on `Down::Fail(ranks)` (passed on) the sends kept for or queued toward a
//! failed member are dropped and counted (`dropped_to_failed`), as is every later reliable
//! send to it: nothing is retransmitted to it, and it is owed no ack. Its reliable sends that
//! arrive later, and those it sent early and that wait for a gap, are dropped too
//! (`from_failed`): as `mnak` does for casts, no new word of a failed member is taken. The
//! view may end only once every reliable send to a live member has arrived: the reflected
//! `Up::BlockOk` is held until they are all acked. Unreliable
//! sends pass both ways, as before.
//!
//! Header (postcard: a one-byte tag, then varints):
//! - `Unreliable`: a send marked unreliable; the mark is restored on the way up.
//! - `Local`: a reliable send to this member itself.
//! - `Data { seqno, ack }`: a reliable send, with the cumulative ack of the reverse direction
//!   (the next seqno this member expects from the destination).
//! - `Ack { ack }`: a standalone cumulative ack, itself sent unreliable.
//!
//! Parameters: `window` (sends in flight per peer, default 256, at most 65536), `retrans`
//! (retransmission period and timeout, default 20ms), `ack_delay` (how long an ack may wait
//! for a `Data` to ride on, default 1ms), `burst` (retransmissions per peer per tick, default
//! 64). Timers: `retrans`, running while anything is unacked; `ack`, one `ack_delay` after
//! the first ack owed.
//!
//! Counters: `sent` (first transmissions), `delivered`, `dup`, `retrans`, `acks_sent`,
//! `out_of_window`, `queued` (sends that waited for the window), `dropped_to_failed`,
//! `from_failed`, `bad_header`; and the gauges
//! `unacked` (sends kept for retransmission) and `backlog` (sends waiting for the window).

use std::collections::VecDeque;
use std::time::Duration;

use horus_core::{
    Args, Cx, Down, Layer, LayerInfo, Message, ParamError, Props, Rank, Seqno, Time, Token, Up,
    ViewState,
};
use serde::{Deserialize, Serialize};

pub const INFO: LayerInfo = LayerInfo {
    name: "pt2pt",
    doc: "reliable FIFO point-to-point: seqnos, cumulative acks, retransmission, a window",
    needs: Props::SEND,
    gives: Props::RELIABLE_SEND,
    hides: Props::NONE,
    build,
};

/// The largest window accepted: the receiver keeps one slot per seqno of it, per peer.
const MAX_WINDOW: u64 = 1 << 16;

/// What this layer writes on the wire (on sends only).
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
enum Header {
    /// A send marked unreliable, passed on unsequenced.
    Unreliable,
    /// A reliable send to this member itself.
    Local,
    /// A reliable send, and the cumulative ack of the reverse direction.
    Data { seqno: Seqno, ack: Seqno },
    /// A standalone cumulative ack: every seqno below `ack` has arrived.
    Ack { ack: Seqno },
}

const RETRANS: Token = Token(0);
const ACK: Token = Token(1);

/// State for one view; the next view builds a fresh one.
#[derive(Debug)]
pub struct Pt2pt {
    window: u64,
    retrans: Duration,
    ack_delay: Duration,
    burst: u64,
    /// By rank; our own entry stays unused.
    peers: Vec<Peer>,
    retrans_armed: bool,
    ack_armed: bool,
    /// A view change's `Up::BlockOk`, held until every send to a live member is acked.
    block_ok_held: bool,
    stats: Stats,
}

/// Both directions between this member and one peer.
#[derive(Debug, Default)]
struct Peer {
    /// The seqno the next reliable send to the peer gets.
    next: Seqno,
    /// The peer's cumulative ack: every seqno below it has arrived there.
    acked: Seqno,
    /// Seqnos `acked..next`, in order, kept for retransmission.
    unacked: VecDeque<Unacked>,
    /// Sends waiting for the window, not yet numbered.
    backlog: VecDeque<Message>,
    /// The next seqno to deliver from the peer.
    expected: Seqno,
    /// Slot `i` holds seqno `expected + i` if it came early; never longer than the window.
    early: VecDeque<Option<Message>>,
    /// An ack is owed to the peer and no `Data` has carried it yet.
    ack_owed: bool,
    /// Failed in this view (from `Down::Fail`).
    failed: bool,
}

/// A send kept until it is acked: the message as it came from above, without our header.
#[derive(Debug)]
struct Unacked {
    msg: Message,
    sent_at: Time,
}

#[derive(Debug, Default)]
struct Stats {
    sent: u64,
    delivered: u64,
    dup: u64,
    retrans: u64,
    acks_sent: u64,
    out_of_window: u64,
    queued: u64,
    dropped_to_failed: u64,
    from_failed: u64,
    bad_header: u64,
}

fn build(args: &mut Args<'_>, vs: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    let window = args.u64("window", 256)?;
    let retrans = args.duration("retrans", Duration::from_millis(20))?;
    let ack_delay = args.duration("ack_delay", Duration::from_millis(1))?;
    let burst = args.u64("burst", 64)?;
    let bad = |key: &str, reason: &str| ParamError {
        layer: "pt2pt",
        key: key.into(),
        reason: reason.into(),
    };
    if !(1..=MAX_WINDOW).contains(&window) {
        return Err(bad("window", "must be between 1 and 65536 messages"));
    }
    if retrans.is_zero() {
        return Err(bad("retrans", "must be more than zero"));
    }
    if burst == 0 {
        return Err(bad("burst", "must be at least 1"));
    }
    Ok(Box::new(Pt2pt {
        window,
        retrans,
        ack_delay,
        burst,
        peers: (0..vs.view.len()).map(|_| Peer::default()).collect(),
        retrans_armed: false,
        ack_armed: false,
        block_ok_held: false,
        stats: Stats::default(),
    }))
}

impl Layer for Pt2pt {
    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        let (from, mut msg) = match ev {
            Up::Send { from, msg } => (from, msg),
            Up::BlockOk => {
                // The view may end only once every send to a live member has arrived: an
                // ack means the peer delivered it, in this view.
                self.block_ok_held = true;
                return self.release_block_ok(cx);
            }
            ev => return cx.up(ev),
        };
        let peer = from != cx.rank() && from.index() < self.peers.len();
        match msg.pop::<Header>() {
            Ok(Header::Data { .. } | Header::Ack { .. })
                if peer && self.peers[from.index()].failed =>
            {
                self.stats.from_failed += 1;
            }
            Ok(Header::Unreliable) => {
                msg.set_unreliable(true);
                cx.up(Up::Send { from, msg });
            }
            Ok(Header::Local) if from == cx.rank() => cx.up(Up::Send { from, msg }),
            Ok(Header::Data { seqno, ack }) if peer => {
                // A bad ack makes the whole header suspect: drop the data with it.
                if self.on_ack(from, ack, cx) {
                    self.on_data(from, seqno, msg, cx);
                }
                self.release_block_ok(cx);
            }
            Ok(Header::Ack { ack }) if peer => {
                self.on_ack(from, ack, cx);
                self.release_block_ok(cx);
            }
            // Undecodable, or a header that cannot come from this sender (`Local` from a peer,
            // `Data` from ourselves or from outside the view).
            _ => self.stats.bad_header += 1,
        }
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Send(to, mut msg) if msg.is_unreliable() || to.index() >= self.peers.len() => {
                msg.push(&Header::Unreliable);
                cx.down(Down::Send(to, msg));
            }
            Down::Send(to, mut msg) if to == cx.rank() => {
                msg.push(&Header::Local);
                cx.down(Down::Send(to, msg));
            }
            Down::Send(to, _) if self.peers[to.index()].failed => {
                self.stats.dropped_to_failed += 1;
            }
            Down::Send(to, msg) => self.on_send(to, msg, cx),
            Down::Fail(ranks) => {
                self.on_fail(&ranks, cx.rank());
                cx.down(Down::Fail(ranks));
                self.release_block_ok(cx);
            }
            ev => cx.down(ev),
        }
    }

    fn timer(&mut self, token: Token, cx: &mut Cx<'_>) {
        match token {
            RETRANS => self.on_retrans_timer(cx),
            ACK => self.on_ack_timer(cx),
            _ => {}
        }
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        let s = &self.stats;
        report("sent", s.sent);
        report("delivered", s.delivered);
        report("dup", s.dup);
        report("retrans", s.retrans);
        report("acks_sent", s.acks_sent);
        report("out_of_window", s.out_of_window);
        report("queued", s.queued);
        report("dropped_to_failed", s.dropped_to_failed);
        report("from_failed", s.from_failed);
        report("bad_header", s.bad_header);
        let sum = |f: fn(&Peer) -> usize| self.peers.iter().map(f).sum::<usize>() as u64;
        report("unacked", sum(|p| p.unacked.len()));
        report("backlog", sum(|p| p.backlog.len()));
    }
}

impl Pt2pt {
    /// Passes a held `Up::BlockOk` up once nothing is in flight to a live member.
    fn release_block_ok(&mut self, cx: &mut Cx<'_>) {
        let settled =
            self.peers.iter().all(|p| p.failed || (p.unacked.is_empty() && p.backlog.is_empty()));
        if self.block_ok_held && settled {
            self.block_ok_held = false;
            cx.up(Up::BlockOk);
        }
    }

    /// These members failed: drop what we keep for them and what they sent us early.
    fn on_fail(&mut self, ranks: &[Rank], me: Rank) {
        for r in ranks {
            let Some(peer) = self.peers.get_mut(r.index()).filter(|_| *r != me) else {
                continue;
            };
            peer.failed = true;
            self.stats.dropped_to_failed += (peer.unacked.len() + peer.backlog.len()) as u64;
            peer.unacked.clear();
            peer.backlog.clear();
            self.stats.from_failed += peer.early.iter().flatten().count() as u64;
            peer.early.clear();
            peer.ack_owed = false;
        }
    }

    /// A reliable send from above: numbered and sent if the window allows, else queued.
    fn on_send(&mut self, to: Rank, msg: Message, cx: &mut Cx<'_>) {
        let peer = &mut self.peers[to.index()];
        if peer.next.0 - peer.acked.0 >= self.window || !peer.backlog.is_empty() {
            peer.backlog.push_back(msg);
            self.stats.queued += 1;
            return;
        }
        self.transmit(to, msg, cx);
    }

    /// Numbers a send, keeps it for retransmission and sends it.
    fn transmit(&mut self, to: Rank, msg: Message, cx: &mut Cx<'_>) {
        let peer = &mut self.peers[to.index()];
        let seqno = peer.next;
        peer.next = seqno.next();
        peer.unacked.push_back(Unacked { msg: msg.clone(), sent_at: cx.now() });
        send_data(peer, to, seqno, msg, cx);
        self.stats.sent += 1;
        if !self.retrans_armed {
            self.retrans_armed = true;
            cx.timer_after(self.retrans, RETRANS);
        }
    }

    /// A cumulative ack from `from`: frees what it covers and opens the window. Returns false
    /// (and counts a bad header) if it acks seqnos never sent.
    fn on_ack(&mut self, from: Rank, ack: Seqno, cx: &mut Cx<'_>) -> bool {
        let peer = &mut self.peers[from.index()];
        if ack > peer.next {
            self.stats.bad_header += 1;
            return false;
        }
        if ack <= peer.acked {
            return true;
        }
        let freed = (ack.0 - peer.acked.0) as usize;
        peer.unacked.drain(..freed);
        peer.acked = ack;
        while self.peers[from.index()].next.0 - self.peers[from.index()].acked.0 < self.window {
            let Some(msg) = self.peers[from.index()].backlog.pop_front() else {
                break;
            };
            self.transmit(from, msg, cx);
        }
        true
    }

    /// A `Data` from `from`: delivered if next in order, kept if early, dropped otherwise.
    fn on_data(&mut self, from: Rank, seqno: Seqno, msg: Message, cx: &mut Cx<'_>) {
        let peer = &mut self.peers[from.index()];
        // Whatever it was, the sender may not know what we have: a duplicate usually means
        // our ack was lost.
        peer.ack_owed = true;
        if !self.ack_armed {
            self.ack_armed = true;
            cx.timer_after(self.ack_delay, ACK);
        }
        if seqno < peer.expected {
            self.stats.dup += 1;
            return;
        }
        let slot = seqno.0 - peer.expected.0;
        if slot >= self.window {
            self.stats.out_of_window += 1;
            return;
        }
        let slot = slot as usize;
        if peer.early.len() <= slot {
            peer.early.resize_with(slot + 1, || None);
        }
        if peer.early[slot].is_some() {
            self.stats.dup += 1;
            return;
        }
        peer.early[slot] = Some(msg);
        while let Some(front) = peer.early.front_mut() {
            let Some(msg) = front.take() else { break };
            peer.early.pop_front();
            peer.expected = peer.expected.next();
            self.stats.delivered += 1;
            cx.up(Up::Send { from, msg });
        }
    }

    /// Resends, lowest seqno first, what has waited `retrans` for an ack, up to `burst` per peer.
    fn on_retrans_timer(&mut self, cx: &mut Cx<'_>) {
        self.retrans_armed = false;
        let now = cx.now();
        let mut pending = false;
        for (rank, peer) in self.peers.iter_mut().enumerate() {
            let to = Rank(rank as u32);
            let mut budget = self.burst;
            let mut seqno = peer.acked;
            for i in 0..peer.unacked.len() {
                if budget == 0 {
                    break;
                }
                let u = &mut peer.unacked[i];
                if now - u.sent_at >= self.retrans {
                    u.sent_at = now;
                    let msg = u.msg.clone();
                    send_data(peer, to, seqno, msg, cx);
                    self.stats.retrans += 1;
                    budget -= 1;
                }
                seqno = seqno.next();
            }
            pending |= !peer.unacked.is_empty();
        }
        if pending {
            self.retrans_armed = true;
            cx.timer_after(self.retrans, RETRANS);
        }
    }

    /// Sends the acks no `Data` has carried since they were owed.
    fn on_ack_timer(&mut self, cx: &mut Cx<'_>) {
        self.ack_armed = false;
        for (rank, peer) in self.peers.iter_mut().enumerate() {
            if !peer.ack_owed {
                continue;
            }
            peer.ack_owed = false;
            let mut msg = Message::control().unreliable();
            msg.push(&Header::Ack { ack: peer.expected });
            cx.down(Down::Send(Rank(rank as u32), msg));
            self.stats.acks_sent += 1;
        }
    }
}

/// Sends `msg` as `seqno` to `to`, with the ack we owe it riding along.
fn send_data(peer: &mut Peer, to: Rank, seqno: Seqno, mut msg: Message, cx: &mut Cx<'_>) {
    msg.push(&Header::Data { seqno, ack: peer.expected });
    peer.ack_owed = false;
    cx.down(Down::Send(to, msg));
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use horus_core::testing::Harness;
    use horus_core::{Endpoint, GroupName, Registry, Rng, Stack, View};
    use quickcheck::{quickcheck, TestResult};

    use super::*;

    fn harness(n: usize, rank: u32, params: &[(&str, &str)]) -> Harness {
        let spec: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Harness::from_info(n, rank, &INFO, &spec.join(","))
    }

    fn msg(body: &'static str) -> Message {
        Message::new(Bytes::from_static(body.as_bytes()))
    }

    /// A send as it arrives from `from`: our header on the wire before `body`.
    fn arriving(from: u32, header: Header, body: &'static str) -> Up {
        let mut m = msg(body);
        m.push(&header);
        Up::Send { from: Rank(from), msg: Message::from_wire(m.to_bytes()) }
    }

    fn data(from: u32, seqno: u64, ack: u64, body: &'static str) -> Up {
        let header = Header::Data { seqno: Seqno(seqno), ack: Seqno(ack) };
        arriving(from, header, body)
    }

    /// The sends passed down, as (destination, our header, what is left).
    fn sent(h: &mut Harness) -> Vec<(Rank, Header, Bytes)> {
        h.take_downs()
            .into_iter()
            .map(|ev| match ev {
                Down::Send(to, mut m) => {
                    let hdr = m.pop::<Header>().expect("our header");
                    (to, hdr, m.to_bytes())
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    /// The payloads delivered up, in order.
    fn delivered(h: &mut Harness) -> Vec<Bytes> {
        h.take_ups()
            .into_iter()
            .map(|ev| match ev {
                Up::Send { msg, .. } => msg.to_bytes(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn d(seqno: u64, ack: u64) -> Header {
        Header::Data { seqno: Seqno(seqno), ack: Seqno(ack) }
    }

    #[test]
    fn lost_send_is_retransmitted_after_retrans_timeout() {
        let mut h = harness(2, 0, &[]);
        h.down(Down::Send(Rank(1), msg("a")));
        assert_eq!(sent(&mut h), vec![(Rank(1), d(0, 0), Bytes::from("a"))]);
        h.advance(Duration::from_millis(19));
        assert!(sent(&mut h).is_empty());
        h.advance(Duration::from_millis(1));
        assert_eq!(sent(&mut h), vec![(Rank(1), d(0, 0), Bytes::from("a"))]);
        assert_eq!(h.counter("retrans"), 1);
        // Acked: nothing more is resent, and the timer stops.
        h.up(arriving(1, Header::Ack { ack: Seqno(1) }, ""));
        h.advance(Duration::from_millis(100));
        assert!(sent(&mut h).is_empty());
        assert_eq!(h.counter("unacked"), 0);
        assert_eq!(h.next_timer(), None);
    }

    #[test]
    fn retransmissions_are_capped_per_tick() {
        let mut h = harness(2, 0, &[("burst", "3")]);
        for _ in 0..10 {
            h.down(Down::Send(Rank(1), msg("x")));
        }
        assert_eq!(sent(&mut h).len(), 10);
        h.advance(Duration::from_millis(20));
        let again: Vec<Header> = sent(&mut h).into_iter().map(|(_, h, _)| h).collect();
        assert_eq!(again, vec![d(0, 0), d(1, 0), d(2, 0)]);
        h.advance(Duration::from_millis(20));
        let again: Vec<Header> = sent(&mut h).into_iter().map(|(_, h, _)| h).collect();
        // All ten are due again; the lowest seqnos go first, as the receiver needs them first.
        assert_eq!(again, vec![d(0, 0), d(1, 0), d(2, 0)]);
        assert_eq!(h.counter("retrans"), 6);
    }

    #[test]
    fn duplicate_send_is_delivered_once() {
        let mut h = harness(2, 1, &[]);
        h.up(data(0, 0, 0, "a"));
        h.up(data(0, 0, 0, "a"));
        assert_eq!(delivered(&mut h), vec![Bytes::from("a")]);
        assert_eq!(h.counter("dup"), 1);
        assert_eq!(h.counter("delivered"), 1);
    }

    #[test]
    fn duplicate_of_an_early_send_is_kept_once() {
        let mut h = harness(2, 1, &[]);
        h.up(data(0, 1, 0, "b"));
        h.up(data(0, 1, 0, "b"));
        h.up(data(0, 0, 0, "a"));
        assert_eq!(delivered(&mut h), vec![Bytes::from("a"), Bytes::from("b")]);
        assert_eq!(h.counter("dup"), 1);
    }

    #[test]
    fn out_of_order_sends_are_delivered_in_order() {
        let mut h = harness(2, 1, &[]);
        h.up(data(0, 2, 0, "c"));
        h.up(data(0, 1, 0, "b"));
        assert!(delivered(&mut h).is_empty());
        h.up(data(0, 0, 0, "a"));
        assert_eq!(delivered(&mut h), vec![Bytes::from("a"), Bytes::from("b"), Bytes::from("c")]);
    }

    #[test]
    fn send_beyond_the_receive_window_is_dropped_and_counted() {
        let mut h = harness(2, 1, &[("window", "4")]);
        h.up(data(0, 4, 0, "e"));
        h.up(data(0, 3, 0, "d"));
        assert_eq!(h.counter("out_of_window"), 1);
        for (s, b) in [(0, "a"), (1, "b"), (2, "c")] {
            h.up(data(0, s, 0, b));
        }
        assert_eq!(delivered(&mut h).len(), 4);
    }

    #[test]
    fn ack_is_piggybacked_on_reverse_data() {
        let mut h = harness(2, 0, &[]);
        h.up(data(1, 0, 0, "from 1"));
        h.down(Down::Send(Rank(1), msg("reply")));
        assert_eq!(sent(&mut h), vec![(Rank(1), d(0, 1), Bytes::from("reply"))]);
        h.advance(Duration::from_millis(5));
        assert!(sent(&mut h).is_empty());
        assert_eq!(h.counter("acks_sent"), 0);
    }

    #[test]
    fn ack_goes_alone_after_ack_delay_when_no_data_carries_it() {
        let mut h = harness(3, 0, &[]);
        h.up(data(1, 0, 0, "a"));
        h.up(data(1, 1, 0, "b"));
        h.up(data(2, 0, 0, "c"));
        assert!(sent(&mut h).is_empty());
        h.advance(Duration::from_millis(1));
        let acks = h.take_downs();
        assert_eq!(acks.len(), 2);
        for ev in acks {
            let Down::Send(to, mut m) = ev else { panic!("{ev:?}") };
            assert!(m.is_unreliable());
            let want = if to == Rank(1) { 2 } else { 1 };
            assert_eq!(m.pop::<Header>(), Ok(Header::Ack { ack: Seqno(want) }));
        }
        assert_eq!(h.counter("acks_sent"), 2);
    }

    #[test]
    fn window_holds_sends_beyond_it_until_acked() {
        let mut h = harness(2, 0, &[("window", "2")]);
        for b in ["a", "b", "c"] {
            h.down(Down::Send(Rank(1), msg(b)));
        }
        assert_eq!(sent(&mut h).len(), 2);
        assert_eq!((h.counter("queued"), h.counter("backlog")), (1, 1));
        h.up(arriving(1, Header::Ack { ack: Seqno(1) }, ""));
        assert_eq!(sent(&mut h), vec![(Rank(1), d(2, 0), Bytes::from("c"))]);
        assert_eq!((h.counter("backlog"), h.counter("unacked")), (0, 2));
    }

    #[test]
    fn sends_to_a_failed_member_are_dropped() {
        let mut h = harness(3, 0, &[("window", "2")]);
        for b in ["a", "b", "c"] {
            h.down(Down::Send(Rank(2), msg(b)));
        }
        h.down(Down::Send(Rank(1), msg("x")));
        h.up(data(2, 1, 0, "early"));
        assert_eq!(sent(&mut h).len(), 3);
        h.down(Down::Fail(vec![Rank(2)]));
        assert!(matches!(h.take_downs().as_slice(), [Down::Fail(r)] if r == &[Rank(2)]));
        assert_eq!((h.counter("dropped_to_failed"), h.counter("from_failed")), (3, 1));
        assert_eq!((h.counter("unacked"), h.counter("backlog")), (1, 0));
        // Later sends to it are dropped too, unreliable ones aside.
        h.down(Down::Send(Rank(2), msg("d")));
        h.down(Down::Send(Rank(2), msg("u").unreliable()));
        assert_eq!(sent(&mut h), vec![(Rank(2), Header::Unreliable, Bytes::from("u"))]);
        assert_eq!(h.counter("dropped_to_failed"), 4);
        // Its sends are not taken, nor acked; only rank 1 is retransmitted to.
        h.up(data(2, 0, 0, "late"));
        assert!(h.take_ups().is_empty());
        h.advance(Duration::from_millis(20));
        assert_eq!(sent(&mut h), vec![(Rank(1), d(0, 0), Bytes::from("x"))]);
        assert_eq!(h.counter("acks_sent"), 0);
    }

    #[test]
    fn garbage_header_is_dropped_and_counted() {
        let mut h = harness(2, 0, &[]);
        let garbage = Message::from_wire(Bytes::from_static(&[0xff, 0xff, 0xff]));
        h.up(Up::Send { from: Rank(1), msg: garbage });
        // Headers that cannot come from their sender.
        h.up(arriving(1, Header::Local, "x"));
        h.up(data(0, 0, 0, "from myself"));
        h.up(data(7, 0, 0, "from outside the view"));
        // An ack of seqnos never sent.
        h.up(arriving(1, Header::Ack { ack: Seqno(3) }, ""));
        assert!(h.take_ups().is_empty());
        assert_eq!(h.counter("bad_header"), 5);
    }

    #[test]
    fn unreliable_send_passes_unsequenced_and_comes_up_unreliable() {
        let mut h = harness(2, 0, &[]);
        h.down(Down::Send(Rank(1), msg("u").unreliable()));
        assert_eq!(sent(&mut h), vec![(Rank(1), Header::Unreliable, Bytes::from("u"))]);
        assert_eq!(h.next_timer(), None);
        h.up(arriving(1, Header::Unreliable, "v"));
        match h.take_ups().as_slice() {
            [Up::Send { from, msg }] => {
                assert_eq!(*from, Rank(1));
                assert!(msg.is_unreliable());
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn send_to_self_is_local_and_casts_pass_untouched() {
        let mut h = harness(2, 0, &[]);
        h.down(Down::Send(Rank(0), msg("me")));
        assert_eq!(sent(&mut h), vec![(Rank(0), Header::Local, Bytes::from("me"))]);
        h.up(arriving(0, Header::Local, "me"));
        assert_eq!(delivered(&mut h), vec![Bytes::from("me")]);
        h.down(Down::Cast(msg("all")));
        match h.take_downs().as_slice() {
            [Down::Cast(m)] => assert_eq!(m.to_bytes(), Bytes::from("all")),
            other => panic!("{other:?}"),
        }
        h.up(Up::Cast { from: Rank(1), msg: msg("all") });
        assert_eq!(h.take_ups().len(), 1);
        assert_eq!(h.next_timer(), None);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let registry = {
            let mut r = Registry::new();
            r.add_layer(INFO);
            r
        };
        for spec in ["pt2pt(window=0)", "pt2pt(retrans=0ms)", "pt2pt(burst=0)"] {
            assert!(registry.plan(spec).is_err(), "{spec}");
        }
        assert!(registry.plan("pt2pt(window=8,ack_delay=0ms)").is_ok());
    }

    /// Two stacks over a channel that drops 20%, duplicates 5% and reorders whole batches.
    #[test]
    fn every_send_arrives_once_in_order_over_a_lossy_channel() {
        const N: u32 = 1000;
        let mut registry = Registry::new();
        registry.add_layer(INFO);
        let plan = registry.plan("pt2pt").unwrap();
        let e = |n| Endpoint::new(n, 0);
        let view = Arc::new(View::initial(vec![e(0), e(1)]));
        let mut stacks: Vec<Stack> = (0..2)
            .map(|n| {
                let vs = ViewState::new(GroupName::new("g"), e(n), view.clone()).unwrap();
                plan.build(vs, Rng::new(n), Time::ZERO).unwrap()
            })
            .collect();
        let mut net = Rng::new(4711);
        let mut now = Time::ZERO;
        let mut next_send = [0u32; 2];
        let mut got: [Vec<u32>; 2] = [Vec::new(), Vec::new()];
        let mut rounds = 0;
        while got.iter().any(|g| g.len() < N as usize)
            || stacks.iter().any(|s| !s.counters().contains(&("pt2pt", "unacked", 0)))
        {
            rounds += 1;
            assert!(rounds < 100_000, "no progress: got {:?}", got.map(|g| g.len()));
            now += Duration::from_micros(500);
            // Each side sends a few to the other while it has some left.
            for (i, s) in stacks.iter_mut().enumerate() {
                for _ in 0..7 {
                    if next_send[i] < N {
                        let body = Bytes::copy_from_slice(&next_send[i].to_be_bytes());
                        let to = Rank(1 - i as u32);
                        s.down(now, Down::Send(to, Message::new(body)));
                        next_send[i] += 1;
                    }
                }
            }
            // The channel: each side's datagrams of this round, lost, doubled and shuffled.
            for i in 0..2 {
                let mut batch = Vec::new();
                while let Some(t) = stacks[i].poll_transmit() {
                    if net.chance(0.2) {
                        continue;
                    }
                    let bytes = t.msg.to_bytes();
                    if net.chance(0.05) {
                        batch.push(bytes.clone());
                    }
                    batch.push(bytes);
                }
                net.shuffle(&mut batch);
                for bytes in batch {
                    stacks[1 - i].receive(now, bytes);
                }
            }
            for (i, s) in stacks.iter_mut().enumerate() {
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.on_timeout(now);
                }
                while let Some(ev) = s.poll_up() {
                    match ev {
                        Up::Send { from, msg } => {
                            assert_eq!(from, Rank(1 - i as u32));
                            let b: [u8; 4] = msg.payload()[..].try_into().unwrap();
                            got[i].push(u32::from_be_bytes(b));
                        }
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
        for g in &got {
            assert_eq!(*g, (0..N).collect::<Vec<_>>());
        }
        let total = |name: &str| -> u64 {
            let c = stacks.iter().flat_map(|s| s.counters());
            c.filter(|(l, k, _)| *l == "pt2pt" && *k == name).map(|(_, _, v)| v).sum()
        };
        assert_eq!((total("backlog"), total("bad_header")), (0, 0));
        // The channel really did lose and duplicate.
        assert!(total("retrans") > 0 && total("dup") > 0);
    }

    fn header_from(tag: u8, a: u64, b: u64) -> Header {
        match tag % 4 {
            0 => Header::Unreliable,
            1 => Header::Local,
            2 => Header::Data { seqno: Seqno(a), ack: Seqno(b) },
            _ => Header::Ack { ack: Seqno(a) },
        }
    }

    quickcheck! {
        fn header_codec_round_trips(tag: u8, a: u64, b: u64, payload: Vec<u8>) -> bool {
            let header = header_from(tag, a, b);
            let mut m = Message::new(Bytes::from(payload.clone()));
            m.push(&header);
            let mut got = Message::from_wire(m.to_bytes());
            got.pop::<Header>() == Ok(header) && got.payload()[..] == payload[..]
        }

        fn garbage_sends_never_panic(from: u8, datagrams: Vec<Vec<u8>>) -> TestResult {
            let mut h = harness(3, 0, &[("window", "8")]);
            for bytes in datagrams {
                h.up(Up::Send { from: Rank(u32::from(from % 4)), msg: Message::from_wire(Bytes::from(bytes)) });
                h.advance(Duration::from_millis(7));
            }
            let _ = h.take_ups();
            let _ = h.take_downs();
            TestResult::passed()
        }

        fn well_formed_headers_with_any_numbers_never_panic(hs: Vec<(u8, u8, u64, u64)>) -> bool {
            let mut h = harness(3, 0, &[("window", "8")]);
            h.down(Down::Send(Rank(1), msg("x")));
            for (from, tag, a, b) in hs {
                // Small numbers often, so some land in the window.
                let header = header_from(tag, a % 16, b % 16);
                h.up(arriving(u32::from(from % 4), header, "y"));
                h.advance(Duration::from_millis(3));
            }
            let _ = h.take_downs();
            // Whatever came, each of the two peers delivered at most its 16 seqnos, once.
            h.counter("delivered") <= 2 * 16
        }
    }

    #[test]
    fn block_ok_waits_until_every_send_to_a_live_member_is_acked() {
        let mut h = Harness::from_info(3, 0, &INFO, "");
        h.down(Down::Send(Rank(1), Message::new(bytes::Bytes::from_static(b"x"))));
        h.down(Down::Send(Rank(2), Message::new(bytes::Bytes::from_static(b"y"))));
        h.take_downs();
        h.up(Up::BlockOk);
        assert!(h.take_ups().is_empty(), "two sends are in flight");
        let mut ack = Message::control();
        ack.push(&Header::Ack { ack: Seqno(1) });
        h.up(Up::Send { from: Rank(1), msg: Message::from_wire(ack.to_bytes()) });
        assert!(h.take_ups().is_empty(), "rank 2 has not acked");
        // Rank 2 fails: nothing is owed to it any more.
        h.down(Down::Fail(vec![Rank(2)]));
        assert!(matches!(h.take_ups().as_slice(), [Up::BlockOk]));
    }
}
