//! `flow`: credit-based flow control, by bytes.
//!
//! Adds: `Props::FLOW`. A sender never has more than `window` bytes of reliable casts
//! unacknowledged toward any other member, nor more than `window` bytes of reliable sends
//! unacknowledged toward any one destination. The one exception keeps big messages from
//! deadlocking: a single message larger than the window goes when nothing of its kind (casts;
//! sends to that destination) is in flight at all. A down event that does not fit is held,
//! never dropped.
//! Needs below: `Props::RELIABLE_CAST | Props::RELIABLE_SEND`: the bytes a receiver reports are
//! the bytes delivered to it, in order, so "delivered" is a count that only grows.
//!
//! The rule is credit by cumulative byte counts, as in Ensemble's `Mflow` and `Pt2ptw` layers
//! (Hayden, *The Ensemble System*, 1998) and TCP's advertised window (RFC 793, sec. 3.7):
//! - bytes counted are `msg.len()` as this layer sees it (the headers of the layers above and
//!   the payload), the same on both sides;
//! - a receiver counts, per sender, the reliable cast bytes and the reliable send bytes it has
//!   delivered, and when either has grown by `window / 4` since its last credit to that sender
//!   it sends `Credit { casts, sends }` with both totals. The totals are cumulative, so a lost
//!   credit (credits are unreliable) is repaired by the next one;
//! - the sender keeps, per member, the largest totals it has been credited, and lets a message
//!   go while it fits; on any credit it releases held events in order while they fit;
//! - when events have been held for `retry` with no progress, the sender casts an unreliable
//!   `CreditRequest`, and every receiver answers at once with a `Credit`. It asks again every
//!   `retry` while anything is held. This also settles the last, under-a-quarter part of a
//!   window, which no threshold would credit.
//!
//! Held events wait in one queue, in the order they came: casts, sends and also the other down
//! events (`BlockOk`, `Leave`, ...), so nothing the application did before a held message
//! overtakes it, as virtual synchrony needs of `BlockOk`. The price is head-of-line blocking:
//! a send to a fast member waits behind a cast held for a slow one. The queue is not bounded
//! in length: holding is the back-pressure, and `held_bytes` is how far the application is
//! ahead of the slowest receiver. Unreliable messages take no credit and are never held.
//! Own casts and sends to oneself take no credit: a sender does not limit itself toward itself.
//!
//! View change: on `Down::Fail(ranks)` the failed members no longer limit sending: their
//! credit state is dropped, casts need credit from the survivors only and sends to the failed
//! none (`pt2pt` below drops them), held events that now fit are released, and the failed are
//! neither credited nor answered. `Fail` itself goes down at once, ahead of held events: it
//! says nothing about our own traffic, and holding it behind casts that wait for the failed
//! members' credit would never release them. `Block`, `Cut` and `Flush` wait behind held events
//! like every other down event, so the transport's answers (`BlockOk`, `Flush`) come back up
//! only after our last casts went down.
//!
//! Header (postcard: a one-byte tag, then varints):
//! - `Pass`: an unreliable message, passed without credit.
//! - `Data`: a reliable cast or send, counted against the window.
//! - `Credit { casts, sends }`: to one sender, unreliable: the reliable cast and send bytes
//!   received from it in this view.
//! - `CreditRequest`: cast unreliable by a held sender; answered with a `Credit`.
//!
//! Parameters: `window` (bytes, default `1M`), `retry` (default 20ms). Timer: `retry`, running
//! while anything is held.
//!
//! Counters: `held` (events that waited), `credits_sent`, `credit_requests`, `bad_header`; and
//! the gauges `held_bytes` (bytes waiting now), `cast_in_flight` and `send_in_flight` (the most
//! unacknowledged cast bytes toward any member, and send bytes toward any destination).

use std::collections::VecDeque;
use std::time::Duration;

use horus_core::{
    Args, Cx, Down, Layer, LayerInfo, Message, ParamError, Props, Rank, Time, Token, Up, ViewState,
};
use serde::{Deserialize, Serialize};

pub const INFO: LayerInfo = LayerInfo {
    name: "flow",
    doc: "credit-based flow control: at most `window` bytes unacknowledged per receiver",
    needs: Props::RELIABLE_CAST.union(Props::RELIABLE_SEND),
    gives: Props::FLOW,
    hides: Props::NONE,
    build,
};

/// What this layer writes on the wire.
#[derive(Serialize, Deserialize, Clone, Copy, PartialEq, Eq, Debug)]
enum Header {
    /// An unreliable message, passed without credit.
    Pass,
    /// A reliable message, counted against the window.
    Data,
    /// The reliable cast and send bytes received from the destination, in this view.
    Credit { casts: u64, sends: u64 },
    /// "I am held: tell me what you have."
    CreditRequest,
}

const RETRY: Token = Token(0);

/// State for one view; the next view builds a fresh one.
#[derive(Debug)]
pub struct Flow {
    window: u64,
    retry: Duration,
    me: Rank,
    /// Reliable cast bytes sent in this view.
    cast_sent: u64,
    /// By rank.
    members: Vec<Member>,
    /// Down events waiting for credit, in the order they came.
    held: VecDeque<Down>,
    held_bytes: u64,
    /// When the held queue last made progress (or began).
    stalled_since: Time,
    retry_armed: bool,
    /// By rank: failed in this view (from `Down::Fail`).
    failed: Vec<bool>,
    stats: Stats,
}

/// What this member knows of one other, as sender and as receiver.
#[derive(Debug, Default)]
struct Member {
    /// The most cast bytes it has reported receiving from us.
    cast_acked: u64,
    /// Reliable send bytes sent to it, and the most it has reported receiving.
    send_sent: u64,
    send_acked: u64,
    /// Reliable cast and send bytes received from it, and the totals in our last credit.
    cast_received: u64,
    send_received: u64,
    cast_credited: u64,
    send_credited: u64,
}

#[derive(Debug, Default)]
struct Stats {
    held: u64,
    credits_sent: u64,
    credit_requests: u64,
    bad_header: u64,
}

fn build(args: &mut Args<'_>, vs: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    let window = args.size("window", 1 << 20)?;
    let retry = args.duration("retry", Duration::from_millis(20))?;
    let bad = |key: &str, reason: &str| ParamError {
        layer: "flow",
        key: key.into(),
        reason: reason.into(),
    };
    if window == 0 {
        return Err(bad("window", "must be at least one byte"));
    }
    if retry.is_zero() {
        return Err(bad("retry", "must be more than zero"));
    }
    Ok(Box::new(Flow {
        window: window as u64,
        retry,
        me: vs.rank,
        cast_sent: 0,
        members: (0..vs.view.len()).map(|_| Member::default()).collect(),
        held: VecDeque::new(),
        held_bytes: 0,
        stalled_since: Time::ZERO,
        retry_armed: false,
        failed: vec![false; vs.view.len()],
        stats: Stats::default(),
    }))
}

impl Layer for Flow {
    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        let (from, mut msg, cast) = match ev {
            Up::Cast { from, msg } => (from, msg, true),
            Up::Send { from, msg } => (from, msg, false),
            ev => return cx.up(ev),
        };
        if from.index() >= self.members.len() {
            self.stats.bad_header += 1;
            return;
        }
        // The failed are owed no credit and no answer; what they sent still goes up.
        let other = from != self.me && !self.failed[from.index()];
        match msg.pop::<Header>() {
            Ok(Header::Pass) => deliver(from, msg, cast, cx),
            Ok(Header::Data) => {
                if other {
                    self.on_data(from, msg.len() as u64, cast, cx);
                }
                deliver(from, msg, cast, cx);
            }
            Ok(Header::Credit { casts, sends }) if !cast && from != self.me => {
                if other {
                    self.on_credit(from, casts, sends, cx);
                }
            }
            Ok(Header::CreditRequest) if cast => {
                // Our own request, looped back, needs no answer.
                if other {
                    self.send_credit(from, cx);
                }
            }
            // Undecodable, or a credit cast to all, a request sent to one, a credit from
            // ourselves.
            _ => self.stats.bad_header += 1,
        }
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Cast(mut msg) if msg.is_unreliable() => {
                msg.push(&Header::Pass);
                cx.down(Down::Cast(msg));
            }
            Down::Send(to, mut msg) if msg.is_unreliable() => {
                msg.push(&Header::Pass);
                cx.down(Down::Send(to, msg));
            }
            Down::Fail(ranks) => {
                self.on_fail(&ranks);
                cx.down(Down::Fail(ranks));
                self.release(cx);
            }
            // Behind held events, everything waits its turn.
            ev if !self.held.is_empty() || !self.fits(&ev) => self.hold(ev, cx),
            ev => self.emit(ev, cx),
        }
    }

    fn timer(&mut self, token: Token, cx: &mut Cx<'_>) {
        if token == RETRY {
            self.on_retry_timer(cx);
        }
    }

    fn backlog(&self) -> u64 {
        self.held_bytes
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        let s = &self.stats;
        report("held", s.held);
        report("held_bytes", self.held_bytes);
        report("credits_sent", s.credits_sent);
        report("credit_requests", s.credit_requests);
        report("bad_header", s.bad_header);
        let others = self.others();
        let cast_in_flight = others.clone().map(|r| self.cast_in_flight(r)).max();
        let send_in_flight = others.map(|r| self.send_in_flight(r)).max();
        report("cast_in_flight", cast_in_flight.unwrap_or(0));
        report("send_in_flight", send_in_flight.unwrap_or(0));
    }
}

impl Flow {
    /// The ranks of the other members that have not failed.
    fn others(&self) -> impl Iterator<Item = usize> + Clone + '_ {
        let me = self.me.index();
        (0..self.members.len()).filter(move |r| *r != me && !self.failed[*r])
    }

    /// These members failed: they no longer hold back what we send.
    fn on_fail(&mut self, ranks: &[Rank]) {
        for r in ranks {
            if r.index() < self.members.len() && *r != self.me {
                self.failed[r.index()] = true;
                self.members[r.index()] = Member::default();
            }
        }
    }

    fn cast_in_flight(&self, r: usize) -> u64 {
        self.cast_sent - self.members[r].cast_acked
    }

    fn send_in_flight(&self, r: usize) -> u64 {
        let m = &self.members[r];
        m.send_sent - m.send_acked
    }

    /// Whether `ev` may go now, as far as credit goes.
    fn fits(&self, ev: &Down) -> bool {
        match ev {
            Down::Cast(msg) => {
                let len = msg.len() as u64;
                let idle = self.others().all(|r| self.cast_in_flight(r) == 0);
                idle || self.others().all(|r| self.cast_in_flight(r) + len <= self.window)
            }
            Down::Send(to, msg)
                if *to != self.me
                    && to.index() < self.members.len()
                    && !self.failed[to.index()] =>
            {
                let in_flight = self.send_in_flight(to.index());
                in_flight == 0 || in_flight + msg.len() as u64 <= self.window
            }
            // A send to ourselves, or to a rank the transport will refuse; other events.
            _ => true,
        }
    }

    /// Passes `ev` on, taking the credit it uses.
    fn emit(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Cast(mut msg) => {
                self.cast_sent += msg.len() as u64;
                msg.push(&Header::Data);
                cx.down(Down::Cast(msg));
            }
            Down::Send(to, mut msg) => {
                if to != self.me {
                    if let Some(m) = self.members.get_mut(to.index()) {
                        m.send_sent += msg.len() as u64;
                    }
                }
                msg.push(&Header::Data);
                cx.down(Down::Send(to, msg));
            }
            ev => cx.down(ev),
        }
    }

    fn hold(&mut self, ev: Down, cx: &mut Cx<'_>) {
        if self.held.is_empty() {
            self.stalled_since = cx.now();
            if !self.retry_armed {
                self.retry_armed = true;
                cx.timer_after(self.retry, RETRY);
            }
        }
        self.held_bytes += held_len(&ev);
        self.stats.held += 1;
        self.held.push_back(ev);
    }

    /// Passes on held events, in order, while they fit.
    fn release(&mut self, cx: &mut Cx<'_>) {
        let mut progress = false;
        while self.held.front().is_some_and(|ev| self.fits(ev)) {
            let ev = self.held.pop_front().expect("front was checked");
            self.held_bytes -= held_len(&ev);
            self.emit(ev, cx);
            progress = true;
        }
        if progress {
            self.stalled_since = cx.now();
        }
    }

    /// A reliable message from another member: count it, and credit its sender every
    /// quarter window.
    fn on_data(&mut self, from: Rank, len: u64, cast: bool, cx: &mut Cx<'_>) {
        let quarter = self.window / 4;
        let m = &mut self.members[from.index()];
        if cast {
            m.cast_received += len;
        } else {
            m.send_received += len;
        }
        if m.cast_received - m.cast_credited >= quarter
            || m.send_received - m.send_credited >= quarter
        {
            self.send_credit(from, cx);
        }
    }

    /// Tells `to` how many bytes we have received from it.
    fn send_credit(&mut self, to: Rank, cx: &mut Cx<'_>) {
        let m = &mut self.members[to.index()];
        m.cast_credited = m.cast_received;
        m.send_credited = m.send_received;
        let mut msg = Message::control().unreliable();
        msg.push(&Header::Credit { casts: m.cast_received, sends: m.send_received });
        cx.down(Down::Send(to, msg));
        self.stats.credits_sent += 1;
    }

    fn on_credit(&mut self, from: Rank, casts: u64, sends: u64, cx: &mut Cx<'_>) {
        let m = &mut self.members[from.index()];
        // A credit for bytes we never sent is not from a correct peer of this view.
        if casts > self.cast_sent || sends > m.send_sent {
            self.stats.bad_header += 1;
            return;
        }
        m.cast_acked = m.cast_acked.max(casts);
        m.send_acked = m.send_acked.max(sends);
        self.release(cx);
    }

    /// Asks the receivers for credit if the held queue has not moved for `retry`.
    fn on_retry_timer(&mut self, cx: &mut Cx<'_>) {
        self.retry_armed = false;
        if self.held.is_empty() {
            return;
        }
        let now = cx.now();
        let mut next = self.stalled_since + self.retry;
        if now >= next {
            let mut msg = Message::control().unreliable();
            msg.push(&Header::CreditRequest);
            cx.down(Down::Cast(msg));
            self.stats.credit_requests += 1;
            next = now + self.retry;
        }
        self.retry_armed = true;
        cx.timer_at(next, RETRY);
    }
}

/// Bytes a held event stands for.
fn held_len(ev: &Down) -> u64 {
    match ev {
        Down::Cast(msg) | Down::Send(_, msg) => msg.len() as u64,
        _ => 0,
    }
}

fn deliver(from: Rank, msg: Message, cast: bool, cx: &mut Cx<'_>) {
    if cast {
        cx.up(Up::Cast { from, msg });
    } else {
        cx.up(Up::Send { from, msg });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use horus_core::testing::Harness;
    use horus_core::{Dest, Endpoint, GroupName, Registry, Rng, Stack, View};
    use quickcheck::quickcheck;

    use super::*;

    fn harness(n: usize, rank: u32, params: &[(&str, &str)]) -> Harness {
        let spec: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Harness::from_info(n, rank, &INFO, &spec.join(","))
    }

    fn bytes(n: usize) -> Message {
        Message::new(Bytes::from(vec![7u8; n]))
    }

    /// A message as it arrives: our header on the wire before `n` payload bytes.
    fn arriving(header: Header, n: usize) -> Message {
        let mut m = bytes(n);
        m.push(&header);
        Message::from_wire(m.to_bytes())
    }

    /// What went down: (`Some(rank)` for a send, `None` for a cast, our header, bytes left).
    fn went_down(h: &mut Harness) -> Vec<(Option<Rank>, Header, usize)> {
        h.take_downs()
            .into_iter()
            .map(|ev| match ev {
                Down::Cast(mut m) => (None, m.pop::<Header>().unwrap(), m.len()),
                Down::Send(to, mut m) => (Some(to), m.pop::<Header>().unwrap(), m.len()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn credit(h: &mut Harness, from: u32, casts: u64, sends: u64) {
        h.up(Up::Send { from: Rank(from), msg: arriving(Header::Credit { casts, sends }, 0) });
    }

    #[test]
    fn casts_within_the_window_pass_at_once_and_the_rest_are_held() {
        let mut h = harness(3, 0, &[("window", "1000")]);
        for _ in 0..3 {
            h.down(Down::Cast(bytes(400)));
        }
        let want = vec![(None, Header::Data, 400); 2];
        assert_eq!(went_down(&mut h), want);
        assert_eq!((h.counter("held"), h.counter("held_bytes")), (1, 400));
        assert_eq!(h.counter("cast_in_flight"), 800);
    }

    #[test]
    fn credit_from_every_receiver_releases_held_casts_in_order() {
        let mut h = harness(3, 0, &[("window", "1000")]);
        for n in [400, 400, 300, 200, 900] {
            h.down(Down::Cast(bytes(n)));
        }
        assert_eq!(went_down(&mut h).len(), 2);
        // One receiver's credit is not enough: the other still has 800 unacknowledged.
        credit(&mut h, 1, 800, 0);
        assert!(went_down(&mut h).is_empty());
        credit(&mut h, 2, 400, 0);
        let sizes: Vec<usize> = went_down(&mut h).into_iter().map(|d| d.2).collect();
        assert_eq!(sizes, vec![300, 200]);
        assert_eq!(h.counter("held_bytes"), 900);
        credit(&mut h, 2, 1300, 0);
        credit(&mut h, 1, 1300, 0);
        let sizes: Vec<usize> = went_down(&mut h).into_iter().map(|d| d.2).collect();
        assert_eq!(sizes, vec![900]);
        assert_eq!(h.counter("held_bytes"), 0);
    }

    #[test]
    fn sends_are_limited_per_destination() {
        let mut h = harness(3, 0, &[("window", "1000")]);
        h.down(Down::Send(Rank(1), bytes(900)));
        h.down(Down::Send(Rank(2), bytes(900)));
        assert_eq!(went_down(&mut h).len(), 2);
        h.down(Down::Send(Rank(1), bytes(200)));
        assert!(went_down(&mut h).is_empty());
        // Cast credit does not free send credit.
        credit(&mut h, 1, 0, 100);
        assert_eq!(went_down(&mut h), vec![(Some(Rank(1)), Header::Data, 200)]);
        assert_eq!(h.counter("send_in_flight"), 1000);
    }

    #[test]
    fn message_larger_than_the_window_goes_when_nothing_is_in_flight() {
        let mut h = harness(2, 0, &[("window", "1000")]);
        h.down(Down::Cast(bytes(5000)));
        assert_eq!(went_down(&mut h), vec![(None, Header::Data, 5000)]);
        h.down(Down::Cast(bytes(10)));
        h.down(Down::Cast(bytes(5000)));
        assert!(went_down(&mut h).is_empty());
        credit(&mut h, 1, 5000, 0);
        // The small one fits; the big one must wait until it too is acknowledged.
        assert_eq!(went_down(&mut h), vec![(None, Header::Data, 10)]);
        credit(&mut h, 1, 5010, 0);
        assert_eq!(went_down(&mut h), vec![(None, Header::Data, 5000)]);
    }

    #[test]
    fn held_sender_asks_for_credit_every_retry() {
        let mut h = harness(2, 0, &[("window", "1000")]);
        h.down(Down::Cast(bytes(600)));
        h.down(Down::Cast(bytes(600)));
        went_down(&mut h);
        h.advance(Duration::from_millis(19));
        assert!(went_down(&mut h).is_empty());
        h.advance(Duration::from_millis(1));
        let down = h.take_downs();
        match down.as_slice() {
            [Down::Cast(m)] => {
                assert!(m.is_unreliable());
                assert_eq!(m.clone().pop::<Header>(), Ok(Header::CreditRequest));
            }
            other => panic!("{other:?}"),
        }
        h.advance(Duration::from_millis(20));
        assert_eq!(went_down(&mut h), vec![(None, Header::CreditRequest, 0)]);
        assert_eq!(h.counter("credit_requests"), 2);
        // Released: no more requests.
        credit(&mut h, 1, 600, 0);
        assert_eq!(went_down(&mut h).len(), 1);
        h.advance(Duration::from_millis(100));
        assert!(went_down(&mut h).is_empty());
        assert_eq!(h.next_timer(), None);
    }

    #[test]
    fn receiver_credits_every_quarter_window_with_cumulative_totals() {
        let mut h = harness(2, 1, &[("window", "1000")]);
        let mut credits = Vec::new();
        for _ in 0..6 {
            h.up(Up::Cast { from: Rank(0), msg: arriving(Header::Data, 100) });
            credits.extend(went_down(&mut h));
        }
        h.up(Up::Send { from: Rank(0), msg: arriving(Header::Data, 250) });
        credits.extend(went_down(&mut h));
        let c = |casts, sends| (Some(Rank(0)), Header::Credit { casts, sends }, 0);
        assert_eq!(credits, vec![c(300, 0), c(600, 0), c(600, 250)]);
        assert_eq!(h.take_ups().len(), 7);
    }

    #[test]
    fn credit_request_is_answered_at_once() {
        let mut h = harness(2, 1, &[("window", "1000")]);
        h.up(Up::Cast { from: Rank(0), msg: arriving(Header::Data, 100) });
        assert!(went_down(&mut h).is_empty());
        h.up(Up::Cast { from: Rank(0), msg: arriving(Header::CreditRequest, 0) });
        let downs = h.take_downs();
        match downs.as_slice() {
            [Down::Send(Rank(0), m)] => {
                assert!(m.is_unreliable());
                let want = Header::Credit { casts: 100, sends: 0 };
                assert_eq!(m.clone().pop::<Header>(), Ok(want));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(h.take_ups().len(), 1);
    }

    #[test]
    fn unreliable_messages_pass_without_credit() {
        let mut h = harness(2, 0, &[("window", "100")]);
        h.down(Down::Cast(bytes(100)));
        h.down(Down::Cast(bytes(100)));
        h.down(Down::Cast(bytes(50).unreliable()));
        h.down(Down::Send(Rank(1), bytes(500).unreliable()));
        let want = vec![
            (None, Header::Data, 100),
            (None, Header::Pass, 50),
            (Some(Rank(1)), Header::Pass, 500),
        ];
        assert_eq!(went_down(&mut h), want);
        assert_eq!(h.counter("cast_in_flight"), 100);
        h.up(Up::Cast { from: Rank(1), msg: arriving(Header::Pass, 900) });
        assert_eq!(h.take_ups().len(), 1);
        assert!(went_down(&mut h).is_empty());
    }

    #[test]
    fn own_casts_and_sends_to_self_need_no_credit() {
        let mut h = harness(1, 0, &[("window", "100")]);
        for _ in 0..5 {
            h.down(Down::Cast(bytes(100)));
            h.down(Down::Send(Rank(0), bytes(100)));
        }
        assert_eq!(went_down(&mut h).len(), 10);
        // Our casts come back up: delivered, never credited.
        for _ in 0..5 {
            h.up(Up::Cast { from: Rank(0), msg: arriving(Header::Data, 100) });
        }
        assert_eq!(h.take_ups().len(), 5);
        assert!(went_down(&mut h).is_empty());
        assert_eq!(h.counter("held"), 0);
    }

    #[test]
    fn block_ok_waits_behind_held_messages() {
        let mut h = harness(2, 0, &[("window", "100")]);
        h.down(Down::Cast(bytes(100)));
        h.down(Down::Cast(bytes(100)));
        h.down(Down::BlockOk);
        assert_eq!(went_down(&mut h).len(), 1);
        credit(&mut h, 1, 100, 0);
        let downs = h.take_downs();
        assert!(matches!(downs.as_slice(), [Down::Cast(_), Down::BlockOk]));
    }

    #[test]
    fn a_failed_receiver_no_longer_holds_back_casts() {
        let mut h = harness(3, 0, &[("window", "1000")]);
        h.down(Down::Cast(bytes(600)));
        h.down(Down::Cast(bytes(600)));
        h.down(Down::Send(Rank(2), bytes(900)));
        h.down(Down::Send(Rank(2), bytes(200)));
        assert_eq!(went_down(&mut h).len(), 1);
        credit(&mut h, 1, 600, 0);
        assert!(went_down(&mut h).is_empty(), "rank 2 has acknowledged nothing");
        h.down(Down::Fail(vec![Rank(2)]));
        let downs = h.take_downs();
        assert!(matches!(downs.first(), Some(Down::Fail(r)) if r == &[Rank(2)]), "{downs:?}");
        let released: Vec<(Option<Rank>, usize)> = downs[1..]
            .iter()
            .map(|ev| match ev {
                Down::Cast(m) => (None, m.len() - 1),
                Down::Send(to, m) => (Some(*to), m.len() - 1),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(released, vec![(None, 600), (Some(Rank(2)), 900), (Some(Rank(2)), 200)]);
        assert_eq!(h.counter("held_bytes"), 0);
        assert_eq!(h.counter("cast_in_flight"), 600);
        // The failed member is neither credited nor answered.
        for _ in 0..4 {
            h.up(Up::Cast { from: Rank(2), msg: arriving(Header::Data, 300) });
        }
        h.up(Up::Cast { from: Rank(2), msg: arriving(Header::CreditRequest, 0) });
        credit(&mut h, 2, 1200, 0);
        assert!(h.take_downs().is_empty());
        assert_eq!(h.take_ups().len(), 4);
        assert_eq!(h.counter("bad_header"), 0);
    }

    #[test]
    fn block_cut_and_flush_wait_behind_held_casts() {
        let mut h = harness(2, 0, &[("window", "100")]);
        h.down(Down::Cast(bytes(100)));
        h.down(Down::Cast(bytes(100)));
        h.down(Down::Block);
        h.down(Down::Cut(vec![]));
        h.down(Down::Flush);
        assert_eq!(went_down(&mut h).len(), 1);
        credit(&mut h, 1, 100, 0);
        let downs = h.take_downs();
        assert!(
            matches!(downs.as_slice(), [Down::Cast(_), Down::Block, Down::Cut(_), Down::Flush]),
            "{downs:?}"
        );
    }

    #[test]
    fn garbage_header_is_dropped_and_counted() {
        let mut h = harness(2, 0, &[("window", "100")]);
        h.up(Up::Send {
            from: Rank(1),
            msg: Message::from_wire(Bytes::from_static(&[0xff, 0xff])),
        });
        h.up(Up::Cast { from: Rank(1), msg: Message::from_wire(Bytes::new()) });
        // Wrong kind, wrong sender, or credit for bytes never sent.
        let credit_cast = arriving(Header::Credit { casts: 0, sends: 0 }, 0);
        h.up(Up::Cast { from: Rank(1), msg: credit_cast });
        h.up(Up::Send { from: Rank(1), msg: arriving(Header::CreditRequest, 0) });
        h.up(Up::Send { from: Rank(5), msg: arriving(Header::Data, 3) });
        credit(&mut h, 1, 1, 0);
        assert!(h.take_ups().is_empty() && h.take_downs().is_empty());
        assert_eq!(h.counter("bad_header"), 6);
    }

    #[test]
    fn bad_parameters_are_refused() {
        let mut r = Registry::new();
        r.add_layer(INFO).add_layer(RC).add_layer(crate::pt2pt::INFO);
        for spec in ["flow(window=0):rc:pt2pt", "flow(retry=0s):rc:pt2pt"] {
            assert!(r.plan(spec).is_err(), "{spec}");
        }
        assert!(r.plan("flow(window=64k,retry=5ms):rc:pt2pt").is_ok());
        assert!(r.plan("flow:pt2pt").is_err(), "casts are not reliable");
    }

    /// A stand-in for a reliable multicast layer, sound only over the lossless network of
    /// these tests: it passes everything.
    #[derive(Debug)]
    struct Lossless;

    impl Layer for Lossless {
        fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
            cx.up(ev)
        }
        fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
            cx.down(ev)
        }
    }

    const RC: LayerInfo = LayerInfo {
        name: "rc",
        doc: "test stand-in: reliable multicast over a lossless network",
        needs: Props::CAST,
        gives: Props::RELIABLE_CAST,
        hides: Props::NONE,
        build: |_, _| Ok(Box::new(Lossless)),
    };

    fn counter(s: &Stack, name: &str) -> u64 {
        s.counters()
            .into_iter()
            .find(|(l, k, _)| *l == "flow" && *k == name)
            .map_or(0, |(_, _, v)| v)
    }

    /// Three members over a lossless, FIFO network; member 2 takes its datagrams late, one
    /// every few steps. Member 0 casts 100 messages and sends 20 to member 2, all at once.
    #[test]
    fn slow_receiver_holds_the_sender_to_the_window_and_gets_everything_once_in_order() {
        const WINDOW: u64 = 8 * 1024;
        const LEN: usize = 1000;
        const CASTS: u32 = 100;
        const SENDS: u32 = 20;
        let mut registry = Registry::new();
        registry.add_layer(INFO).add_layer(RC).add_layer(crate::pt2pt::INFO);
        let plan = registry.plan("flow(window=8k):rc:pt2pt").unwrap();
        let e = |n| Endpoint::new(n, 0);
        let view = Arc::new(View::initial(vec![e(0), e(1), e(2)]));
        let mut stacks: Vec<Stack> = (0..3)
            .map(|n| {
                let vs = ViewState::new(GroupName::new("g"), e(n), view.clone()).unwrap();
                plan.build(vs, Rng::new(n), Time::ZERO).unwrap()
            })
            .collect();
        let body = |i: u32| {
            let mut b = vec![0u8; LEN];
            b[..4].copy_from_slice(&i.to_be_bytes());
            Message::new(Bytes::from(b))
        };
        for i in 0..CASTS {
            stacks[0].down(Time::ZERO, Down::Cast(body(i)));
            if i % 5 == 0 {
                stacks[0].down(Time::ZERO, Down::Send(Rank(2), body(i / 5)));
            }
        }
        assert!(counter(&stacks[0], "held") > 0);

        let mut inbox: [VecDeque<Bytes>; 3] = Default::default();
        let mut casts_got: [Vec<u32>; 3] = Default::default();
        let mut sends_got: Vec<u32> = Vec::new();
        // How many distinct casts, and sends to member 2, member 0 has put on the wire (they
        // go in order; pt2pt's retransmissions repeat them).
        let (mut casts_out, mut sends_out) = (0u64, 0u64);
        let mut most_in_flight = 0;
        let mut now = Time::ZERO;
        for step in 0..100_000u32 {
            let done = casts_got[1].len() == CASTS as usize
                && casts_got[2].len() == CASTS as usize
                && sends_got.len() == SENDS as usize
                && counter(&stacks[0], "held_bytes") == 0;
            if done {
                break;
            }
            now += Duration::from_millis(1);
            for (i, s) in stacks.iter_mut().enumerate() {
                while let Some(t) = s.poll_transmit() {
                    let bytes = t.msg.to_bytes();
                    // Data carry the message number at the head of the payload, at the end.
                    let number = (bytes.len() >= LEN).then(|| {
                        let at = bytes.len() - LEN;
                        u64::from(u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()))
                    });
                    let counted = |out: u64| match number {
                        Some(n) if i == 0 => out.max(n + 1),
                        _ => out,
                    };
                    match t.dest {
                        Dest::Cast => {
                            casts_out = counted(casts_out);
                            for (j, q) in inbox.iter_mut().enumerate() {
                                if j != i {
                                    q.push_back(bytes.clone());
                                }
                            }
                        }
                        Dest::Member(to) => {
                            if to == e(2) {
                                sends_out = counted(sends_out);
                            }
                            inbox[to.node as usize].push_back(bytes);
                        }
                    }
                }
            }
            for (i, s) in stacks.iter_mut().enumerate() {
                // Member 2 is slow for the first 2000 steps: one datagram every fifth step.
                let take = match (i, step) {
                    (2, 0..2000) if step % 5 == 0 => 1,
                    (2, 0..2000) => 0,
                    _ => usize::MAX,
                };
                for bytes in inbox[i].drain(..take.min(inbox[i].len())) {
                    s.receive(now, bytes);
                }
                if s.poll_timeout().is_some_and(|t| t <= now) {
                    s.on_timeout(now);
                }
                while let Some(ev) = s.poll_up() {
                    let (from, msg, cast) = match ev {
                        Up::Cast { from, msg } => (from, msg, true),
                        Up::Send { from, msg } => (from, msg, false),
                        other => panic!("{other:?}"),
                    };
                    assert_eq!(from, Rank(0));
                    let n = u32::from_be_bytes(msg.payload()[..4].try_into().unwrap());
                    if cast {
                        casts_got[i].push(n);
                    } else {
                        assert_eq!(i, 2);
                        sends_got.push(n);
                    }
                }
            }
            // The bound, as the sender keeps it and as seen from outside: what member 0 has
            // put on the wire toward member 2 and member 2 has not yet delivered.
            let cast_in_flight = counter(&stacks[0], "cast_in_flight");
            let send_in_flight = counter(&stacks[0], "send_in_flight");
            assert!(cast_in_flight <= WINDOW && send_in_flight <= WINDOW);
            let cast_unread = (casts_out - casts_got[2].len() as u64) * LEN as u64;
            let send_unread = (sends_out - sends_got.len() as u64) * LEN as u64;
            assert!(cast_unread <= WINDOW, "step {step}: {cast_unread} cast bytes");
            assert!(send_unread <= WINDOW, "step {step}: {send_unread} send bytes");
            most_in_flight = most_in_flight.max(cast_unread);
        }
        for got in &casts_got {
            assert_eq!(*got, (0..CASTS).collect::<Vec<_>>());
        }
        assert_eq!(sends_got, (0..SENDS).collect::<Vec<_>>());
        assert_eq!(counter(&stacks[0], "held_bytes"), 0);
        // The slow receiver really did fill the window.
        assert!(most_in_flight > WINDOW / 2, "{most_in_flight}");
    }

    fn header_from(tag: u8, casts: u64, sends: u64) -> Header {
        match tag % 4 {
            0 => Header::Pass,
            1 => Header::Data,
            2 => Header::Credit { casts, sends },
            _ => Header::CreditRequest,
        }
    }

    quickcheck! {
        fn header_codec_round_trips(tag: u8, casts: u64, sends: u64, payload: Vec<u8>) -> bool {
            let header = header_from(tag, casts, sends);
            let mut m = Message::new(Bytes::from(payload.clone()));
            m.push(&header);
            let mut got = Message::from_wire(m.to_bytes());
            got.pop::<Header>() == Ok(header) && got.payload()[..] == payload[..]
        }

        fn garbage_never_panics(events: Vec<(bool, u8, Vec<u8>)>) -> bool {
            let mut h = harness(3, 0, &[("window", "100")]);
            h.down(Down::Cast(bytes(80)));
            h.down(Down::Cast(bytes(80)));
            for (cast, from, raw) in events {
                let (from, msg) = (Rank(u32::from(from % 4)), Message::from_wire(Bytes::from(raw)));
                h.up(if cast { Up::Cast { from, msg } } else { Up::Send { from, msg } });
                h.advance(Duration::from_millis(7));
            }
            h.counter("held_bytes") <= 80
        }

        fn credits_of_any_size_never_break_the_bound(credits: Vec<(u8, u64)>) -> bool {
            let mut h = harness(3, 0, &[("window", "100")]);
            let mut ok = true;
            for (i, (from, casts)) in credits.into_iter().enumerate() {
                h.down(Down::Cast(bytes(10 + i % 50)));
                credit(&mut h, u32::from(from % 3), casts % 2000, 0);
                ok &= h.counter("cast_in_flight") <= 100;
            }
            ok
        }
    }
}
