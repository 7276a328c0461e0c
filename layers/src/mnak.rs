//! `mnak`: reliable FIFO multicast by negative acknowledgement.
//!
//! Adds: every reliable cast is delivered exactly once, in its sender's order, to every member
//! that stays connected long enough (Ensemble's MNAK; Birman, ch. 13).
//! Needs below: best-effort multicast and point-to-point.
//!
//! Each sender numbers its casts from 0 in the view (`Data(seqno)`). A receiver delivers in
//! seqno order and holds what arrives early. A gap (a seqno past the next expected, or a
//! sender's `Tail` announcing more casts than received) is answered with a `Nak` for the
//! missing range: first to the sender; if the gap persists, to the other members in turn, so a
//! cast still reaches everyone when its sender has crashed but some member got it. Any member
//! that holds a requested cast resends it point-to-point (`Retrans`), marked unreliable (the
//! next nak repairs a lost retransmission).
//!
//! Every member keeps every cast it has delivered, of every sender, until the layer above says
//! it is stable (`Down::Stable`, from `stable`): that is what lets members retransmit on behalf
//! of a failed sender. A sender that has unstable casts and has been idle for a sweep casts its
//! `Tail`, so the loss of the last casts of a burst is noticed.
//!
//! Casts marked unreliable pass with a one-byte `Unreliable` header; point-to-point traffic
//! from above passes with a one-byte `Pass` header.
//!
//! View change: on `Down::Fail(ranks)` (passed on down) the failed members' rows freeze: their
//! first-hand `Data`, `Tail`s, naks and retransmissions are dropped (counted `from_failed`),
//! their casts are delivered no further than we had delivered them, and they are never nakked
//! (the rotation skips them, starting at the next survivor when the origin failed), though
//! retransmissions of their casts by survivors are still taken in and we still answer naks for
//! them. On `Down::Cut(cut)` (passed on down) every sender's highest known seqno becomes at least
//! `cut[r]` and what is missing is nakked at once; a failed sender's casts are then delivered up
//! to `cut[r]` and never beyond, so a survivor that holds one of them past the cut (first-hand,
//! out of order) does not deliver what the others will not (Ensemble's `Fail`).
//!
//! Parameters: `retrans` (sweep period: naks are repeated and tails sent at most this often;
//! default 10ms), `window` (how far past the next expected seqno a cast may arrive and be
//! held; beyond, it is dropped and counted, and recovered by nak later; default 65536).
//! Timer: one sweep every `retrans`.

use std::collections::VecDeque;
use std::time::Duration;

use horus_core::spec::Args;
use horus_core::{
    Cx, Down, Layer, LayerInfo, Message, ParamError, Props, Rank, Seqno, Time, Up, ViewState,
};
use serde::{Deserialize, Serialize};

pub const INFO: LayerInfo = LayerInfo {
    name: "mnak",
    doc: "reliable FIFO multicast by negative acknowledgement",
    needs: Props::CAST.union(Props::SEND),
    gives: Props::RELIABLE_CAST,
    hides: Props::NONE,
    build,
};

fn build(args: &mut Args<'_>, vs: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    let retrans = args.duration("retrans", Duration::from_millis(10))?;
    let window = args.u64("window", 1 << 16)?;
    Ok(Box::new(Mnak::new(vs, retrans, window)))
}

/// The most casts one nak asks for, and one retransmission burst resends.
const MAX_NAK: u64 = 256;

/// What this layer writes on the wire.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
enum Header {
    /// A cast that may be lost, passed through.
    Unreliable,
    /// Cast `seqno` of its sender.
    Data(Seqno),
    /// "I have cast this many casts in this view."
    Tail(Seqno),
    /// Point-to-point traffic from above, passed through.
    Pass,
    /// "Resend `origin`'s casts `lo..hi`."
    Nak { origin: Rank, lo: Seqno, hi: Seqno },
    /// `origin`'s cast `seqno`, resent.
    Retrans { origin: Rank, seqno: Seqno },
}

/// What we know of one sender's casts.
#[derive(Debug, Default)]
struct Sender {
    /// The first seqno still kept: everything below is stable and freed.
    base: Seqno,
    /// Casts from `base` on: delivered ones until stable, and early ones until deliverable.
    buf: VecDeque<Option<Message>>,
    /// The next seqno to deliver.
    expected: Seqno,
    /// One past the highest seqno known to exist.
    highest: Seqno,
    /// Naks sent for the current gap, to pick whom to ask next.
    nak_tries: u64,
    /// No nak for this sender before this time.
    nak_after: Time,
    /// Failed in this view: its casts are delivered only below `limit`.
    failed: bool,
    /// For a failed sender: what we had delivered at the failure, then the cut.
    limit: Seqno,
}

impl Sender {
    fn get(&self, s: Seqno) -> Option<&Message> {
        let i = s.0.checked_sub(self.base.0)?;
        self.buf.get(usize::try_from(i).ok()?)?.as_ref()
    }

    /// One past the last seqno we still expect: for a failed sender, no more than its limit.
    fn wanted(&self) -> Seqno {
        if self.failed {
            self.highest.min(self.limit)
        } else {
            self.highest
        }
    }
}

#[derive(Debug, Default)]
struct Stats {
    casts: u64,
    delivered: u64,
    dup: u64,
    naks_sent: u64,
    naks_received: u64,
    retrans_sent: u64,
    retrans_received: u64,
    tails_sent: u64,
    unanswerable: u64,
    out_of_window: u64,
    from_failed: u64,
    bad_header: u64,
}

/// State for one view.
#[derive(Debug)]
pub struct Mnak {
    me: Rank,
    retrans: Duration,
    window: u64,
    /// Our next seqno.
    next: Seqno,
    /// When we last cast reliably.
    last_cast: Time,
    senders: Vec<Sender>,
    /// The cut of the view change, once known.
    cut: Option<Vec<Seqno>>,
    stats: Stats,
}

impl Mnak {
    fn new(vs: &ViewState, retrans: Duration, window: u64) -> Self {
        Mnak {
            me: vs.rank,
            retrans,
            window: window.max(1),
            next: Seqno(0),
            last_cast: Time::ZERO,
            senders: (0..vs.view.len()).map(|_| Sender::default()).collect(),
            cut: None,
            stats: Stats::default(),
        }
    }

    fn is_failed(&self, r: Rank) -> bool {
        self.senders.get(r.index()).is_some_and(|s| s.failed)
    }

    fn buffered(&self) -> u64 {
        self.senders.iter().map(|s| s.buf.iter().filter(|m| m.is_some()).count() as u64).sum()
    }

    /// A cast of `from`, first-hand or resent.
    fn on_data(&mut self, from: Rank, seqno: Seqno, msg: Message, cx: &mut Cx<'_>) {
        let Some(s) = self.senders.get_mut(from.index()) else {
            return self.stats.bad_header += 1;
        };
        if seqno < s.expected {
            return self.stats.dup += 1;
        }
        if seqno.0 - s.expected.0 >= self.window {
            return self.stats.out_of_window += 1;
        }
        let i = (seqno.0 - s.base.0) as usize;
        if i == s.buf.len() {
            s.buf.push_back(Some(msg)); // the usual case: the next one, in order
        } else {
            if s.buf.len() < i {
                s.buf.resize(i + 1, None);
            }
            if s.buf[i].is_some() {
                return self.stats.dup += 1;
            }
            s.buf[i] = Some(msg);
        }
        s.highest = s.highest.max(seqno.next());
        self.deliver(from, cx);
        let s = &mut self.senders[from.index()];
        if s.expected >= s.wanted() {
            s.nak_tries = 0;
        } else {
            self.maybe_nak(from, cx);
        }
    }

    /// Delivers `from`'s casts that are now in order (a failed sender's only below its limit).
    fn deliver(&mut self, from: Rank, cx: &mut Cx<'_>) {
        let s = &mut self.senders[from.index()];
        while let Some(Some(m)) = s.buf.get((s.expected.0 - s.base.0) as usize) {
            if s.failed && s.expected >= s.limit {
                break;
            }
            cx.up(Up::Cast { from, msg: m.clone() });
            s.expected = s.expected.next();
            self.stats.delivered += 1;
        }
    }

    /// The member to ask for `origin`'s casts on the `tries`-th nak: the origin, then every
    /// other member in turn, skipping ourselves and the failed. None if nobody is left to ask.
    fn nak_target(&self, origin: Rank, tries: u64) -> Option<Rank> {
        let n = self.senders.len();
        let eligible = |r: usize| r != self.me.index() && !self.senders[r].failed;
        let count = (0..n).filter(|&r| eligible(r)).count() as u64;
        if count == 0 {
            return None;
        }
        let k = (tries % count) as usize;
        (0..n)
            .map(|i| (origin.index() + i) % n)
            .filter(|&r| eligible(r))
            .nth(k)
            .map(|r| Rank(r as u32))
    }

    /// Asks for `origin`'s missing casts, unless we asked less than a sweep ago.
    fn maybe_nak(&mut self, origin: Rank, cx: &mut Cx<'_>) {
        let s = &self.senders[origin.index()];
        if s.expected >= s.wanted() || cx.now() < s.nak_after || origin == self.me {
            return;
        }
        // First the sender; then, the gap persisting, every other member in turn: one of them
        // may hold the cast of a sender that failed (Ensemble manual, MNAK). Never a failed
        // member: it will not answer.
        let Some(target) = self.nak_target(origin, s.nak_tries) else { return };
        let s = &mut self.senders[origin.index()];
        // Every hole between what we delivered and the highest seqno expected, up to MAX_NAK
        // casts in all: one nak per hole (packing puts them in one datagram).
        let end = s.wanted().0.min(s.expected.0 + MAX_NAK);
        let mut seqno = s.expected.0;
        while seqno < end {
            if s.get(Seqno(seqno)).is_some() {
                seqno += 1;
                continue;
            }
            let lo = seqno;
            while seqno < end && s.get(Seqno(seqno)).is_none() {
                seqno += 1;
            }
            let mut msg = Message::control().unreliable();
            msg.push(&Header::Nak { origin, lo: Seqno(lo), hi: Seqno(seqno) });
            self.stats.naks_sent += 1;
            cx.down(Down::Send(target, msg));
        }
        s.nak_tries += 1;
        s.nak_after = cx.now() + self.retrans;
    }

    fn on_nak(&mut self, from: Rank, origin: Rank, lo: Seqno, hi: Seqno, cx: &mut Cx<'_>) {
        self.stats.naks_received += 1;
        let Some(s) = self.senders.get(origin.index()) else {
            return self.stats.bad_header += 1;
        };
        let hi = Seqno(hi.0.min(lo.0.saturating_add(MAX_NAK)));
        for seqno in (lo.0..hi.0).map(Seqno) {
            match s.get(seqno) {
                Some(m) => {
                    let mut m = m.clone().unreliable();
                    m.push(&Header::Retrans { origin, seqno });
                    self.stats.retrans_sent += 1;
                    cx.down(Down::Send(from, m));
                }
                None => self.stats.unanswerable += 1,
            }
        }
    }

    fn on_tail(&mut self, from: Rank, count: Seqno, cx: &mut Cx<'_>) {
        let Some(s) = self.senders.get_mut(from.index()) else {
            return self.stats.bad_header += 1;
        };
        s.highest = s.highest.max(count);
        self.maybe_nak(from, cx);
    }

    /// Frees what every member holds.
    fn on_stable(&mut self, stable: &[Seqno]) {
        for (s, &st) in self.senders.iter_mut().zip(stable) {
            // Never free what we have not delivered ourselves.
            let upto = st.min(s.expected);
            while s.base < upto {
                s.buf.pop_front();
                s.base = s.base.next();
            }
        }
    }

    /// These members failed: their rows freeze where they are (Ensemble's `Fail`).
    fn on_fail(&mut self, ranks: &[Rank]) {
        for r in ranks {
            let cut = self.cut.as_ref().and_then(|c| c.get(r.index()).copied());
            if let Some(s) = self.senders.get_mut(r.index()).filter(|_| *r != self.me) {
                if !s.failed {
                    s.failed = true;
                    s.limit = cut.unwrap_or_default().max(s.expected);
                }
            }
        }
    }

    /// The cut: fetch at once every cast up to it; a failed sender's casts up to it, no further.
    fn on_cut(&mut self, cut: &[Seqno], cx: &mut Cx<'_>) {
        if cut.len() != self.senders.len() {
            return self.stats.bad_header += 1;
        }
        self.cut = Some(cut.to_vec());
        for (r, &c) in cut.iter().enumerate() {
            let s = &mut self.senders[r];
            s.highest = s.highest.max(c);
            if s.failed {
                s.limit = c.max(s.expected);
            }
            s.nak_after = cx.now();
            let from = Rank(r as u32);
            self.deliver(from, cx);
            self.maybe_nak(from, cx);
        }
    }

    fn on_sweep(&mut self, cx: &mut Cx<'_>) {
        for r in 0..self.senders.len() {
            self.maybe_nak(Rank(r as u32), cx);
        }
        // Idle with unstable casts: say how many we cast, in case the last ones were lost.
        let mine = &self.senders[self.me.index()];
        if self.next > mine.base && cx.now() >= self.last_cast + self.retrans {
            let mut msg = Message::control().unreliable();
            msg.push(&Header::Tail(self.next));
            self.stats.tails_sent += 1;
            cx.down(Down::Cast(msg));
        }
        cx.timer_after(self.retrans, ());
    }
}

impl Layer for Mnak {
    fn init(&mut self, cx: &mut Cx<'_>) {
        cx.timer_after(self.retrans, ());
    }

    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        match ev {
            Up::Cast { from, mut msg } => match msg.pop::<Header>() {
                // A failed member's own word is no longer taken; its casts that survivors
                // hold come as retransmissions.
                Ok(Header::Data(_) | Header::Tail(_)) if self.is_failed(from) => {
                    self.stats.from_failed += 1;
                }
                Ok(Header::Data(seqno)) => self.on_data(from, seqno, msg, cx),
                Ok(Header::Unreliable) => {
                    msg.set_unreliable(true);
                    cx.up(Up::Cast { from, msg });
                }
                Ok(Header::Tail(count)) => self.on_tail(from, count, cx),
                _ => self.stats.bad_header += 1,
            },
            Up::Send { from, mut msg } => match msg.pop::<Header>() {
                Ok(Header::Pass) => cx.up(Up::Send { from, msg }),
                Ok(Header::Nak { .. } | Header::Retrans { .. }) if self.is_failed(from) => {
                    self.stats.from_failed += 1;
                }
                Ok(Header::Nak { origin, lo, hi }) => self.on_nak(from, origin, lo, hi, cx),
                Ok(Header::Retrans { origin, seqno }) => {
                    self.stats.retrans_received += 1;
                    msg.set_unreliable(false);
                    self.on_data(origin, seqno, msg, cx);
                }
                _ => self.stats.bad_header += 1,
            },
            ev => cx.up(ev),
        }
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Cast(mut msg) if msg.is_unreliable() => {
                msg.push(&Header::Unreliable);
                cx.down(Down::Cast(msg));
            }
            Down::Cast(mut msg) => {
                msg.push(&Header::Data(self.next));
                self.next = self.next.next();
                self.last_cast = cx.now();
                self.stats.casts += 1;
                cx.down(Down::Cast(msg));
            }
            Down::Send(to, mut msg) => {
                msg.push(&Header::Pass);
                cx.down(Down::Send(to, msg));
            }
            Down::Stable(stable) => {
                self.on_stable(&stable);
                cx.down(Down::Stable(stable));
            }
            Down::Fail(ranks) => {
                self.on_fail(&ranks);
                cx.down(Down::Fail(ranks));
            }
            Down::Cut(cut) => {
                self.on_cut(&cut, cx);
                cx.down(Down::Cut(cut));
            }
            ev => cx.down(ev),
        }
    }

    fn timer(&mut self, _: horus_core::Token, cx: &mut Cx<'_>) {
        self.on_sweep(cx);
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        let s = &self.stats;
        report("casts", s.casts);
        report("delivered", s.delivered);
        report("dup", s.dup);
        report("naks_sent", s.naks_sent);
        report("naks_received", s.naks_received);
        report("retrans_sent", s.retrans_sent);
        report("retrans_received", s.retrans_received);
        report("tails_sent", s.tails_sent);
        report("unanswerable", s.unanswerable);
        report("out_of_window", s.out_of_window);
        report("from_failed", s.from_failed);
        report("bad_header", s.bad_header);
        report("buffered", self.buffered());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use horus_core::testing::Harness;
    use quickcheck::quickcheck;

    fn mnak(n: usize, rank: u32) -> Harness {
        Harness::new(n, rank, |vs| Box::new(Mnak::new(vs, Duration::from_millis(10), 1 << 16)))
    }

    /// Sender `rank`'s cast `seqno` as it arrives from the network.
    fn data(seqno: u64, payload: &'static [u8]) -> Message {
        let mut m = Message::new(Bytes::from_static(payload));
        m.push(&Header::Data(Seqno(seqno)));
        Message::from_wire(m.to_bytes())
    }

    fn delivered(h: &mut Harness) -> Vec<(Rank, Bytes)> {
        h.take_ups()
            .into_iter()
            .filter_map(|ev| match ev {
                Up::Cast { from, msg } if !msg.is_unreliable() => {
                    Some((from, msg.payload().clone()))
                }
                _ => None,
            })
            .collect()
    }

    fn naks(h: &mut Harness) -> Vec<(Rank, Header)> {
        h.take_downs()
            .into_iter()
            .filter_map(|ev| match ev {
                Down::Send(to, mut msg) => Some((to, msg.pop::<Header>().unwrap())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn casts_are_numbered_from_zero_in_order() {
        let mut h = mnak(3, 0);
        for _ in 0..3 {
            h.down(Down::Cast(Message::control()));
        }
        let seqnos: Vec<Header> = h
            .take_downs()
            .into_iter()
            .map(|ev| match ev {
                Down::Cast(mut m) => m.pop::<Header>().unwrap(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            seqnos,
            vec![Header::Data(Seqno(0)), Header::Data(Seqno(1)), Header::Data(Seqno(2))]
        );
    }

    #[test]
    fn out_of_order_casts_are_delivered_in_order() {
        let mut h = mnak(3, 0);
        h.up(Up::Cast { from: Rank(1), msg: data(1, b"b") });
        assert!(delivered(&mut h).is_empty());
        h.up(Up::Cast { from: Rank(1), msg: data(0, b"a") });
        let got: Vec<Bytes> = delivered(&mut h).into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
    }

    #[test]
    fn duplicate_cast_is_delivered_once() {
        let mut h = mnak(3, 0);
        h.up(Up::Cast { from: Rank(1), msg: data(0, b"a") });
        h.up(Up::Cast { from: Rank(1), msg: data(0, b"a") });
        h.up(Up::Cast { from: Rank(1), msg: data(2, b"c") });
        h.up(Up::Cast { from: Rank(1), msg: data(2, b"c") });
        assert_eq!(delivered(&mut h).len(), 1);
        assert_eq!(h.counter("dup"), 2);
    }

    #[test]
    fn a_gap_is_nakked_to_the_sender_at_once() {
        let mut h = mnak(3, 0);
        h.up(Up::Cast { from: Rank(2), msg: data(3, b"d") });
        assert_eq!(
            naks(&mut h),
            vec![(Rank(2), Header::Nak { origin: Rank(2), lo: Seqno(0), hi: Seqno(3) })]
        );
    }

    #[test]
    fn every_hole_is_nakked_and_nothing_held_is_asked_for() {
        let mut h = mnak(3, 0);
        for s in [1, 2, 5, 7] {
            h.up(Up::Cast { from: Rank(2), msg: data(s, b"x") });
        }
        h.take_downs();
        h.advance(Duration::from_millis(10));
        let holes: Vec<(u64, u64)> = naks(&mut h)
            .into_iter()
            .map(|(_, hdr)| match hdr {
                Header::Nak { lo, hi, .. } => (lo.0, hi.0),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(holes, vec![(0, 1), (3, 5), (6, 7)]);
    }

    #[test]
    fn nak_is_resent_after_retrans_timeout_to_the_next_member() {
        // Birman ch. 13: a receiver keeps asking until the gap closes; asking the other members
        // covers a sender that failed after some of them got the cast.
        let mut h = mnak(3, 1);
        h.up(Up::Cast { from: Rank(0), msg: data(1, b"b") });
        assert_eq!(naks(&mut h)[0].0, Rank(0));
        h.advance(Duration::from_millis(5));
        assert!(naks(&mut h).is_empty(), "no repeat before a sweep");
        h.advance(Duration::from_millis(10));
        // Rank 1 is us: the second nak goes to rank 2.
        assert_eq!(
            naks(&mut h),
            vec![(Rank(2), Header::Nak { origin: Rank(0), lo: Seqno(0), hi: Seqno(1) })]
        );
    }

    #[test]
    fn a_nak_is_answered_from_the_buffer_of_delivered_casts() {
        let mut h = mnak(3, 0);
        h.up(Up::Cast { from: Rank(1), msg: data(0, b"a") });
        h.up(Up::Cast { from: Rank(1), msg: data(1, b"b") });
        let mut nak = Message::control();
        nak.push(&Header::Nak { origin: Rank(1), lo: Seqno(0), hi: Seqno(3) });
        h.take_downs();
        h.up(Up::Send { from: Rank(2), msg: Message::from_wire(nak.to_bytes()) });
        let resent: Vec<(Rank, Header, Bytes)> = h
            .take_downs()
            .into_iter()
            .map(|ev| match ev {
                Down::Send(to, mut m) => {
                    assert!(m.is_unreliable());
                    let hdr = m.pop::<Header>().unwrap();
                    (to, hdr, Message::from_wire(m.to_bytes()).payload().clone())
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            resent,
            vec![
                (
                    Rank(2),
                    Header::Retrans { origin: Rank(1), seqno: Seqno(0) },
                    Bytes::from_static(b"a")
                ),
                (
                    Rank(2),
                    Header::Retrans { origin: Rank(1), seqno: Seqno(1) },
                    Bytes::from_static(b"b")
                ),
            ]
        );
        assert_eq!(h.counter("unanswerable"), 1);
    }

    #[test]
    fn a_retransmission_fills_the_gap() {
        let mut h = mnak(3, 0);
        h.up(Up::Cast { from: Rank(1), msg: data(1, b"b") });
        let mut m = Message::new(Bytes::from_static(b"a"));
        m.push(&Header::Retrans { origin: Rank(1), seqno: Seqno(0) });
        h.up(Up::Send { from: Rank(2), msg: Message::from_wire(m.to_bytes()) });
        assert_eq!(delivered(&mut h).len(), 2);
        assert_eq!(h.counter("retrans_received"), 1);
    }

    #[test]
    fn an_idle_sender_with_unstable_casts_announces_its_tail() {
        let mut h = mnak(2, 0);
        h.down(Down::Cast(Message::control()));
        h.take_downs();
        h.advance(Duration::from_millis(10));
        let tails: Vec<Header> = h
            .take_downs()
            .into_iter()
            .filter_map(|ev| match ev {
                Down::Cast(mut m) if m.is_unreliable() => Some(m.pop::<Header>().unwrap()),
                _ => None,
            })
            .collect();
        assert_eq!(tails, vec![Header::Tail(Seqno(1))]);
        // Once our cast is stable (it came back to us and everyone holds it), silence.
        let mut own = Message::control();
        own.push(&Header::Data(Seqno(0)));
        h.up(Up::Cast { from: Rank(0), msg: Message::from_wire(own.to_bytes()) });
        h.down(Down::Stable(vec![Seqno(1), Seqno(0)]));
        h.take_downs();
        h.advance(Duration::from_millis(50));
        assert!(h.take_downs().iter().all(|ev| !matches!(ev, Down::Cast(_))));
    }

    #[test]
    fn a_tail_past_what_we_have_is_nakked() {
        let mut h = mnak(2, 0);
        let mut t = Message::control();
        t.push(&Header::Tail(Seqno(2)));
        h.up(Up::Cast { from: Rank(1), msg: Message::from_wire(t.to_bytes()) });
        assert_eq!(
            naks(&mut h),
            vec![(Rank(1), Header::Nak { origin: Rank(1), lo: Seqno(0), hi: Seqno(2) })]
        );
    }

    #[test]
    fn stability_frees_the_retransmission_buffer() {
        let mut h = mnak(2, 0);
        for i in 0..4 {
            h.up(Up::Cast { from: Rank(1), msg: data(i, b"x") });
        }
        assert_eq!(h.counter("buffered"), 4);
        h.down(Down::Stable(vec![Seqno(0), Seqno(3)]));
        assert_eq!(h.counter("buffered"), 1);
        // Stability never frees what we have not delivered.
        h.up(Up::Cast { from: Rank(1), msg: data(6, b"x") });
        h.down(Down::Stable(vec![Seqno(0), Seqno(9)]));
        assert_eq!(h.counter("buffered"), 1);
    }

    #[test]
    fn casts_far_past_the_window_are_dropped_and_counted() {
        let mut h = Harness::new(2, 0, |vs| Box::new(Mnak::new(vs, Duration::from_millis(10), 8)));
        h.up(Up::Cast { from: Rank(1), msg: data(8, b"x") });
        assert_eq!(h.counter("out_of_window"), 1);
        assert_eq!(h.counter("buffered"), 0);
    }

    #[test]
    fn unreliable_casts_pass_unnumbered_both_ways() {
        let mut h = mnak(2, 0);
        h.down(Down::Cast(Message::control().unreliable()));
        let Down::Cast(m) = h.take_downs().remove(0) else { panic!() };
        let mut m = Message::from_wire(m.to_bytes());
        assert_eq!(m.clone().pop::<Header>().unwrap(), Header::Unreliable);
        h.up(Up::Cast { from: Rank(1), msg: m.clone() });
        assert!(matches!(h.take_ups().as_slice(), [Up::Cast { msg, .. }] if msg.is_unreliable()));
        m.pop::<Header>().unwrap();
        assert_eq!(h.counter("casts"), 0);
    }

    #[test]
    fn garbage_and_naks_for_unknown_senders_are_counted_not_fatal() {
        let mut h = mnak(2, 0);
        h.up(Up::Cast {
            from: Rank(1),
            msg: Message::from_wire(Bytes::from_static(&[0xff, 0xff])),
        });
        let mut nak = Message::control();
        nak.push(&Header::Nak { origin: Rank(9), lo: Seqno(0), hi: Seqno(u64::MAX) });
        h.up(Up::Send { from: Rank(1), msg: Message::from_wire(nak.to_bytes()) });
        assert_eq!(h.counter("bad_header"), 2);
    }

    /// `origin`'s cast `seqno`, resent by a member, as it arrives.
    fn retrans(origin: u32, seqno: u64, payload: &'static [u8]) -> Message {
        let mut m = Message::new(Bytes::from_static(payload));
        m.push(&Header::Retrans { origin: Rank(origin), seqno: Seqno(seqno) });
        Message::from_wire(m.to_bytes())
    }

    fn seqnos(v: &[u64]) -> Vec<Seqno> {
        v.iter().map(|&s| Seqno(s)).collect()
    }

    #[test]
    fn a_failed_sender_s_new_casts_are_dropped_but_its_retransmitted_casts_accepted() {
        let mut h = mnak(3, 0);
        h.up(Up::Cast { from: Rank(2), msg: data(0, b"a") });
        h.down(Down::Fail(vec![Rank(2)]));
        assert!(matches!(h.take_downs().as_slice(), [Down::Fail(r)] if r == &[Rank(2)]));
        // First-hand, after the failure: not taken.
        h.up(Up::Cast { from: Rank(2), msg: data(1, b"b") });
        let mut t = Message::control();
        t.push(&Header::Tail(Seqno(5)));
        h.up(Up::Cast { from: Rank(2), msg: Message::from_wire(t.to_bytes()) });
        assert_eq!(h.counter("from_failed"), 2);
        assert_eq!(h.counter("buffered"), 1);
        assert!(naks(&mut h).is_empty(), "its tail raised no expectation");
        // From a survivor: kept, and delivered up to the cut once it comes.
        h.up(Up::Send { from: Rank(1), msg: retrans(2, 1, b"b") });
        assert_eq!(h.counter("buffered"), 2);
        assert_eq!(delivered(&mut h).len(), 1, "the failed sender's row froze at the failure");
        h.down(Down::Cut(seqnos(&[0, 0, 2])));
        let got: Vec<Bytes> = delivered(&mut h).into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, vec![Bytes::from_static(b"b")]);
    }

    #[test]
    fn naks_skip_failed_members() {
        // Rank 0 failed; we are rank 1: its casts are asked of 2, then 3, then 2 again.
        let mut h = mnak(4, 1);
        h.down(Down::Fail(vec![Rank(0)]));
        h.down(Down::Cut(seqnos(&[2, 0, 0, 0])));
        let nak = Header::Nak { origin: Rank(0), lo: Seqno(0), hi: Seqno(2) };
        assert_eq!(naks(&mut h), vec![(Rank(2), nak.clone())]);
        h.advance(Duration::from_millis(10));
        assert_eq!(naks(&mut h), vec![(Rank(3), nak.clone())]);
        h.advance(Duration::from_millis(10));
        assert_eq!(naks(&mut h), vec![(Rank(2), nak)]);
        // A survivor's gap is asked of it first, then of the others, never of rank 0.
        h.up(Up::Cast { from: Rank(3), msg: data(1, b"x") });
        h.advance(Duration::from_millis(10));
        h.advance(Duration::from_millis(10));
        let targets: Vec<Rank> = naks(&mut h)
            .into_iter()
            .filter(|(_, hdr)| matches!(hdr, Header::Nak { origin: Rank(3), .. }))
            .map(|(to, _)| to)
            .collect();
        assert_eq!(targets, vec![Rank(3), Rank(2), Rank(3)]);
        // And a nak from the failed member is not answered.
        let mut nak = Message::control();
        nak.push(&Header::Nak { origin: Rank(3), lo: Seqno(0), hi: Seqno(1) });
        h.up(Up::Send { from: Rank(0), msg: Message::from_wire(nak.to_bytes()) });
        assert!(naks(&mut h).is_empty());
    }

    #[test]
    fn a_cut_past_what_we_hold_is_nakked_at_once() {
        let mut h = mnak(3, 0);
        h.up(Up::Cast { from: Rank(1), msg: data(0, b"a") });
        // Rank 2's gap is nakked to rank 2 at once; within the sweep a repeat would wait, the
        // cut's does not (and goes to the next member in turn).
        h.up(Up::Cast { from: Rank(2), msg: data(1, b"b") });
        assert_eq!(naks(&mut h).len(), 1);
        h.down(Down::Cut(seqnos(&[0, 3, 2])));
        let downs = naks(&mut h);
        assert_eq!(
            downs,
            vec![
                (Rank(1), Header::Nak { origin: Rank(1), lo: Seqno(1), hi: Seqno(3) }),
                (Rank(1), Header::Nak { origin: Rank(2), lo: Seqno(0), hi: Seqno(1) }),
            ]
        );
    }

    #[test]
    fn a_failed_sender_s_casts_past_the_cut_are_neither_delivered_nor_asked_for() {
        let mut h = mnak(3, 0);
        h.up(Up::Cast { from: Rank(2), msg: data(0, b"a") });
        h.up(Up::Cast { from: Rank(2), msg: data(3, b"d") });
        h.down(Down::Fail(vec![Rank(2)]));
        h.up(Up::Send { from: Rank(1), msg: retrans(2, 1, b"b") });
        h.up(Up::Send { from: Rank(1), msg: retrans(2, 2, b"c") });
        assert_eq!(delivered(&mut h).len(), 1, "nothing past the failure before the cut");
        h.take_downs();
        // Another survivor delivered only up to "b": the cut stops there.
        h.down(Down::Cut(seqnos(&[0, 0, 2])));
        let got: Vec<Bytes> = delivered(&mut h).into_iter().map(|(_, p)| p).collect();
        assert_eq!(got, vec![Bytes::from_static(b"b")]);
        h.advance(Duration::from_millis(50));
        assert!(naks(&mut h).is_empty());
    }

    quickcheck! {
        fn header_codec_round_trips(origin: u32, lo: u64, hi: u64) -> bool {
            [Header::Unreliable, Header::Data(Seqno(lo)), Header::Tail(Seqno(hi)), Header::Pass,
             Header::Nak { origin: Rank(origin), lo: Seqno(lo), hi: Seqno(hi) },
             Header::Retrans { origin: Rank(origin), seqno: Seqno(lo) }]
            .into_iter()
            .all(|h| {
                let mut m = Message::control();
                m.push(&h);
                Message::from_wire(m.to_bytes()).pop::<Header>().ok() == Some(h)
            })
        }

        /// Whatever the loss and order of arrival, each cast is delivered once, in order.
        fn any_arrival_order_delivers_each_cast_once_in_order(order: Vec<u8>) -> bool {
            let mut h = mnak(2, 0);
            let n = 20u64;
            for x in order {
                h.up(Up::Cast { from: Rank(1), msg: data(u64::from(x) % n, b"x") });
            }
            for s in 0..n {
                h.up(Up::Cast { from: Rank(1), msg: data(s, b"x") });
            }
            delivered(&mut h).len() as u64 == n && h.counter("buffered") == n
        }

        fn garbage_never_panics(bytes: Vec<u8>, from: u32) -> bool {
            let mut h = mnak(3, 0);
            h.up(Up::Cast { from: Rank(from % 4), msg: Message::from_wire(Bytes::from(bytes.clone())) });
            h.up(Up::Send { from: Rank(from % 3), msg: Message::from_wire(Bytes::from(bytes)) });
            true
        }
    }
}
