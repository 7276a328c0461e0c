//! `total`: total order by a sequencer that never relays payloads.
//!
//! Adds: one order of the total-level casts (levels [`Level::Total`] and [`Level::Safe`])
//! agreed by every member ([`Props::TOTAL`]): any two members that deliver total-level casts
//! m and m' deliver them in the same order. Every sender's casts, whatever their level, keep
//! the order in which it cast them (FIFO across levels).
//!
//! Needs below: reliable FIFO multicast ([`Props::RELIABLE_CAST`]). Canonical place:
//! `frag:total:causal:safe:flow:stable:mnak:pt2pt:pack`. With `causal` below, casts reach the
//! sequencer in causal order, so the order it announces is causal too; over bare reliable
//! multicast (`total:reliable`) it is total and FIFO, but not causal.
//!
//! The rule: members multicast their own casts; the sequencer, rank 0 (the coordinator),
//! multicasts only short order announcements, batched. Nobody numbers anything: the layer
//! below is reliable and FIFO per sender, so "the next total-level cast of r" means the same
//! cast at every member.
//! - The sequencer appends `(r, 1)` to its pending announcement for each `Ordered` cast of `r`
//!   it receives (its own too: they come back up by local loopback), merging runs of one rank,
//!   and casts the announcement (a plain reliable cast of rank 0, at level `Fifo`) at the end
//!   of the turn, or when it has `max_batch` entries.
//! - Every member (the sequencer too, on its own announcements coming back) holds, per
//!   sender, the casts it cannot deliver yet, and queues the order entries it has received.
//!   The head of a sender's queue is delivered at once if it is below total level; a
//!   total-level head only when the head of the order queue is `(r, c)` with `c > 0` (then
//!   `c` goes down by one, and the entry goes at 0). A cast below total level whose sender
//!   has nothing held is delivered on arrival. So a held queue always starts with a
//!   total-level cast, and only an order entry can make it move.
//!
//! Header (postcard: a one-byte tag, then the level's one-byte tag or varints):
//! - `Fifo { level }`: a cast below total level, passed through in its sender's FIFO order.
//! - `Ordered { level }`: a total-level cast, delivered when the order reaches it.
//! - `Order(runs)`: the sequencer's announcement, run-length encoded: "deliver next the next
//!   `count` total-level casts of `rank`", then the next pair, and so on. Consumed here, never
//!   passed up.
//! - `Unreliable`: a cast marked unreliable, passed up at once outside every order, with its
//!   mark restored (its level is not kept: it is delivered as `Fifo`).
//!
//! The core does not carry a cast's level on the wire: this layer writes it in its header and
//! restores it going up. Point-to-point sends and every other event pass untouched. An
//! announcement from a rank other than 0, or naming a rank outside the view or a run of
//! zero, and a header whose level does not match its kind, are dropped and counted
//! (`bad_header`).
//!
//! Parameters: `delay` (how long the sequencer may wait for more casts to batch into one
//! announcement; default 0: until the end of the current turn), `max_batch` (runs in one
//! announcement, at least 1; default 1024). Timer: at most one armed, at the sequencer, the
//! announcement's flush (as `pack` flushes).
//!
//! Bounds: the held queues and the order queue are not bounded in length here. What they
//! hold was cast and not yet delivered; `flow` below bounds what a sender may have in flight,
//! and so bounds them. `held` counts what waits now.
//!
//! Counters: `ordered` (total-level casts delivered in the announced order), `announcements`
//! (sent, at the sequencer), `announced_entries` (runs in them), `held` (casts waiting now),
//! `max_held`, `delivered_at_flush` (total-level casts never announced, delivered at the
//! flush), `skipped_at_flush` (announced casts nobody held at the flush), `bad_header`.
//!
//! View change: on `Down::Block` the sequencer casts its pending announcement at once, before
//! passing `Block` on down, and announces nothing after: the last announcement is then among
//! the casts the cut covers. On `Up::Flush` every survivor holds the same casts and the same
//! announcements, and delivers everything held, alike: first the announced order, as far as it
//! goes, passing over the runs whose casts no survivor holds (counted `skipped_at_flush`;
//! only a failed sender's casts, and the casts behind them, can be missing); then the casts
//! never announced (the sequencer failed, or they came after its last announcement), by sender
//! rank, each sender's in the order it cast them (`delivered_at_flush`); then `Flush` goes up.
//! Choosing a new sequencer is the next view's business: rank 0 of the next view.
//!
//! Source: Ensemble's `SEQBB` layer ("broadcast-broadcast": members multicast the data, the
//! sequencer multicasts ordering information; Hayden, *The Ensemble System*, Cornell, 1998,
//! and the Ensemble reference manual); the BB method of Amoeba's sequencer-based group
//! communication (Kaashoek and Tanenbaum, *Group Communication in the Amoeba Distributed
//! Operating System*, ICDCS 1991); sequencer-based ABCAST in Birman, *Building Secure and
//! Reliable Network Applications*, 1996, ch. 13.

use std::collections::VecDeque;
use std::time::Duration;

use horus_core::spec::Args;
use horus_core::{
    Cx, Down, Layer, LayerInfo, Level, Message, ParamError, Props, Rank, Token, Up, ViewState,
};
use serde::{Deserialize, Serialize};

/// The layer as stack specs name it.
///
/// # Examples
///
/// ```
/// use horus_core::{Level, Props};
///
/// let plan = horus_layers::registry().plan("total(delay=1ms):causal:reliable").unwrap();
/// assert!(plan.gives().contains(Props::TOTAL));
/// assert!(plan.levels().contains(&Level::Total));
/// ```
pub const INFO: LayerInfo = LayerInfo {
    name: "total",
    doc: "total order of total-level casts, by a sequencer that announces the order in batches",
    // Causal below: the `Total` level includes causal order, which holds when the sequencer
    // sees casts in causal order.
    needs: Props::RELIABLE_CAST.union(Props::CAUSAL),
    gives: Props::TOTAL,
    // It consumes its announcements, which stability counts.
    hides: Props::STABLE,
    build,
};

/// The sequencer: the coordinator.
const SEQUENCER: Rank = Rank(0);
/// The announcement's flush timer.
const FLUSH: Token = Token(0);

fn build(args: &mut Args<'_>, vs: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    let delay = args.duration("delay", Duration::ZERO)?;
    let max_batch = args.u64("max_batch", 1024)?;
    if max_batch == 0 {
        return Err(args.error("max_batch", "must be at least 1"));
    }
    let max_batch = usize::try_from(max_batch).unwrap_or(usize::MAX);
    Ok(Box::new(Total::new(vs, delay, max_batch)))
}

/// What this layer writes on the wire.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
enum Header {
    /// A cast below total level, in its sender's FIFO order.
    Fifo { level: Level },
    /// A total-level cast, waiting for the order.
    Ordered { level: Level },
    /// "Deliver next the next `count` total-level casts of `rank`", then the next pair, ...
    Order(Vec<(Rank, u32)>),
    /// A cast that may be lost, outside every order.
    Unreliable,
}

#[derive(Debug, Default)]
struct Stats {
    ordered: u64,
    announcements: u64,
    announced_entries: u64,
    max_held: u64,
    delivered_at_flush: u64,
    skipped_at_flush: u64,
    dropped_at_flush: u64,
    safe_waits: u64,
    bad_header: u64,
}

/// State for one view; the next view builds a fresh one.
#[derive(Debug)]
pub struct Total {
    me: Rank,
    delay: Duration,
    max_batch: usize,
    /// By rank: casts received and not deliverable yet, each with its index among its
    /// sender's reliable casts (the numbering `causal` and `stable` use).
    held: Vec<VecDeque<(u64, Message)>>,
    /// By rank: reliable casts received so far (the next one's index).
    received: Vec<u64>,
    /// By rank: every cast with an index below this is finished (passed up, or consumed if
    /// an announcement); `done` holds the finished ones beyond it.
    finished: Vec<u64>,
    done: Vec<std::collections::BTreeSet<u64>>,
    /// Casts in `held`, all senders together.
    nheld: u64,
    /// Order entries received and not used up, oldest first; no count is 0. Each names the
    /// index (among the sequencer's casts) of the announcement it came in.
    order: VecDeque<(Rank, u32, u64)>,
    /// How many of the sequencer's casts every member holds (from `Up::Stable`).
    sequencer_stable: u64,
    /// At the sequencer: the announcement being gathered. Keeps its capacity across flushes.
    pending: Vec<(Rank, u32)>,
    /// Whether the flush timer is set.
    armed: bool,
    /// The view is ending (`Down::Block`): the sequencer announces nothing more.
    blocked: bool,
    stats: Stats,
}

impl Layer for Total {
    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        let (from, mut msg) = match ev {
            Up::Cast { from, msg } => (from, msg),
            Up::Flush => return self.on_flush(cx),
            Up::Stable(stable) => {
                if let Some(&st) = stable.get(SEQUENCER.index()) {
                    self.sequencer_stable = self.sequencer_stable.max(st.0);
                    self.deliver(cx);
                }
                return cx.up(Up::Stable(stable));
            }
            ev => return cx.up(ev),
        };
        if from.index() >= self.held.len() {
            return self.stats.bad_header += 1;
        }
        // Its index among its sender's reliable casts.
        let index = self.received[from.index()];
        if !msg.is_unreliable() {
            self.received[from.index()] += 1;
        }
        match msg.pop::<Header>() {
            Ok(Header::Fifo { level }) if !level.is_total() => {
                msg.set_level(level);
                self.on_fifo(from, index, msg, cx);
            }
            Ok(Header::Ordered { level }) if level.is_total() => {
                msg.set_level(level);
                self.on_ordered(from, index, msg, cx);
            }
            Ok(Header::Order(runs)) => self.on_order(from, runs, index, cx),
            Ok(Header::Unreliable) => {
                msg.set_unreliable(true);
                cx.up(Up::Cast { from, msg });
            }
            // A level that does not match its header's kind, or no header at all.
            _ => self.stats.bad_header += 1,
        }
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        let mut msg = match ev {
            Down::Cast(msg) => msg,
            Down::Block => {
                // Our last announcement goes before the view ends, and with the cut.
                self.flush(cx);
                self.blocked = true;
                return cx.down(Down::Block);
            }
            ev => return cx.down(ev),
        };
        let level = msg.level();
        let hdr = if msg.is_unreliable() {
            Header::Unreliable
        } else if level.is_total() {
            Header::Ordered { level }
        } else {
            Header::Fifo { level }
        };
        msg.push(&hdr);
        cx.down(Down::Cast(msg));
    }

    fn timer(&mut self, token: Token, cx: &mut Cx<'_>) {
        if token == FLUSH {
            self.armed = false;
            self.flush(cx);
        }
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        let s = &self.stats;
        report("ordered", s.ordered);
        report("announcements", s.announcements);
        report("announced_entries", s.announced_entries);
        report("held", self.nheld);
        report("max_held", s.max_held);
        report("delivered_at_flush", s.delivered_at_flush);
        report("skipped_at_flush", s.skipped_at_flush);
        report("dropped_at_flush", s.dropped_at_flush);
        report("safe_waits", s.safe_waits);
        report("bad_header", s.bad_header);
    }
}

impl Total {
    fn new(vs: &ViewState, delay: Duration, max_batch: usize) -> Self {
        Total {
            me: vs.rank,
            delay,
            max_batch,
            held: (0..vs.view.len()).map(|_| VecDeque::new()).collect(),
            received: vec![0; vs.view.len()],
            finished: vec![0; vs.view.len()],
            done: (0..vs.view.len()).map(|_| Default::default()).collect(),
            nheld: 0,
            order: VecDeque::new(),
            sequencer_stable: 0,
            pending: Vec::new(),
            armed: false,
            blocked: false,
            stats: Stats::default(),
        }
    }

    /// A cast below total level: at once, unless a held cast of its sender is ahead of it
    /// or a cast it causally follows is still held here.
    fn on_fifo(&mut self, from: Rank, index: u64, msg: Message, cx: &mut Cx<'_>) {
        if self.held[from.index()].is_empty() && self.deps_met(from.index(), &msg) {
            self.pass_up(from, index, msg, cx);
        } else {
            self.held[from.index()].push_back((index, msg));
            self.count_held();
        }
    }

    /// A total-level cast: held for the order; the sequencer puts it in the next announcement.
    fn on_ordered(&mut self, from: Rank, index: u64, msg: Message, cx: &mut Cx<'_>) {
        self.held[from.index()].push_back((index, msg));
        self.count_held();
        if self.me == SEQUENCER && !self.blocked {
            self.announce(from, cx);
        }
        self.deliver(cx);
    }

    /// The sequencer's announcement: its runs join the order queue; it is finished here.
    fn on_order(&mut self, from: Rank, runs: Vec<(Rank, u32)>, index: u64, cx: &mut Cx<'_>) {
        let n = self.held.len();
        if from != SEQUENCER || runs.iter().any(|&(r, c)| r.index() >= n || c == 0) {
            return self.stats.bad_header += 1;
        }
        for (rank, count) in runs {
            push_run(&mut self.order, rank, count, index);
        }
        self.finish(from.index(), index);
        self.deliver(cx);
    }

    /// Whether every cast `msg` causally follows (its `deps`, from `causal` below) is finished
    /// here, its own sender's aside (FIFO sees to those).
    fn deps_met(&self, from: usize, msg: &Message) -> bool {
        msg.deps().is_none_or(|d| {
            d.iter().zip(&self.finished).enumerate().all(|(r, (t, f))| r == from || *f >= t.0)
        })
    }

    fn finish(&mut self, r: usize, index: u64) {
        if index == self.finished[r] {
            self.finished[r] += 1;
            while self.done[r].remove(&self.finished[r]) {
                self.finished[r] += 1;
            }
        } else {
            self.done[r].insert(index);
        }
    }

    fn pass_up(&mut self, from: Rank, index: u64, msg: Message, cx: &mut Cx<'_>) {
        self.finish(from.index(), index);
        cx.up(Up::Cast { from, msg });
    }

    /// At the sequencer: `from`'s next total-level cast goes next in the order.
    fn announce(&mut self, from: Rank, cx: &mut Cx<'_>) {
        match self.pending.last_mut() {
            Some((rank, count)) if *rank == from && *count < u32::MAX => *count += 1,
            _ => self.pending.push((from, 1)),
        }
        if !self.armed {
            // End of the turn by default: every cast that arrived in it shares one announcement.
            self.armed = true;
            cx.timer_at(cx.now() + self.delay, FLUSH);
        }
        if self.pending.len() >= self.max_batch {
            self.flush(cx);
        }
    }

    /// At the sequencer: casts the pending announcement, if any.
    fn flush(&mut self, cx: &mut Cx<'_>) {
        if self.pending.is_empty() {
            return;
        }
        self.stats.announcements += 1;
        self.stats.announced_entries += self.pending.len() as u64;
        let hdr = Header::Order(std::mem::take(&mut self.pending));
        let mut msg = Message::control();
        msg.push(&hdr);
        if let Header::Order(mut runs) = hdr {
            runs.clear();
            self.pending = runs;
        }
        cx.down(Down::Cast(msg));
    }

    fn deliver(&mut self, cx: &mut Cx<'_>) {
        self.deliver_upto(false, cx);
    }

    /// Delivers what may go, until nothing can: heads below total level whose causal
    /// predecessors are finished, and total-level heads in the announced order (Birman, ch. 13:
    /// deliver in the sequencer's order), once their predecessors are finished too. A `Safe`
    /// cast also waits until every member holds the announcement that placed it, unless
    /// `flushing`: its place in the order must be as uniform as its delivery, or a member
    /// excluded right after could have delivered it in an order the survivors never learn.
    fn deliver_upto(&mut self, flushing: bool, cx: &mut Cx<'_>) {
        loop {
            let mut progress = false;
            for r in 0..self.held.len() {
                while let Some((_, front)) = self.held[r].front() {
                    if front.level().is_total() || !self.deps_met(r, front) {
                        break;
                    }
                    let (index, msg) = self.held[r].pop_front().expect("the front was just seen");
                    self.nheld -= 1;
                    self.pass_up(Rank(r as u32), index, msg, cx);
                    progress = true;
                }
            }
            while let Some(&(rank, _, announced)) = self.order.front() {
                let r = rank.index();
                let Some((_, front)) = self.held[r].front() else { break };
                let unplaced =
                    front.level().is_safe() && !flushing && announced >= self.sequencer_stable;
                if !front.level().is_total() || !self.deps_met(r, front) || unplaced {
                    self.stats.safe_waits += u64::from(unplaced);
                    break;
                }
                let (index, msg) = self.held[r].pop_front().expect("the front was just seen");
                if let Some((_, count, _)) = self.order.front_mut() {
                    *count -= 1;
                    if *count == 0 {
                        self.order.pop_front();
                    }
                }
                self.nheld -= 1;
                self.stats.ordered += 1;
                self.pass_up(rank, index, msg, cx);
                progress = true;
            }
            if !progress {
                return;
            }
        }
    }

    /// The view's last event: every survivor holds the same casts and announcements now, and
    /// delivers all it holds the same way.
    fn on_flush(&mut self, cx: &mut Cx<'_>) {
        // The announced order as far as it goes. A run whose next cast is not here names a
        // cast no survivor holds, and so do the later ones of its sender (FIFO below).
        loop {
            self.deliver_upto(true, cx);
            match self.order.pop_front() {
                Some((_, count, _)) => self.stats.skipped_at_flush += u64::from(count),
                None => break,
            }
        }
        // Never announced: by sender rank, each sender in its order, every cast once what it
        // causally follows is out; repeated until nothing moves.
        loop {
            let mut progress = false;
            for r in 0..self.held.len() {
                while let Some((_, front)) = self.held[r].front() {
                    if !self.deps_met(r, front) {
                        break;
                    }
                    let (index, msg) = self.held[r].pop_front().expect("the front was just seen");
                    self.nheld -= 1;
                    self.stats.delivered_at_flush += u64::from(msg.level().is_total());
                    self.pass_up(Rank(r as u32), index, msg, cx);
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
        // What still waits follows a cast no survivor holds: the same at every survivor.
        for q in &mut self.held {
            self.stats.dropped_at_flush += q.len() as u64;
            self.nheld -= q.len() as u64;
            q.clear();
        }
        cx.up(Up::Flush);
    }

    fn count_held(&mut self) {
        self.nheld += 1;
        self.stats.max_held = self.stats.max_held.max(self.nheld);
    }
}

/// Appends a run to `order`, merging it with the last run when the rank is the same.
fn push_run(order: &mut VecDeque<(Rank, u32, u64)>, rank: Rank, count: u32, announced: u64) {
    if let Some((last, c, a)) = order.back_mut() {
        if *last == rank && *a == announced {
            if let Some(sum) = c.checked_add(count) {
                *c = sum;
                return;
            }
        }
    }
    order.push_back((rank, count, announced));
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use horus_core::testing::Harness;
    use horus_core::Seqno;
    use quickcheck::quickcheck;

    /// A member of three for which every cast is already stable, so safe casts wait for
    /// nothing but their order (the tests of stability's part come apart).
    fn member(rank: u32) -> Harness {
        let mut h = Harness::from_info(3, rank, &INFO, "");
        h.up(Up::Stable(vec![Seqno(u64::MAX); 3]));
        h.take_ups();
        h
    }

    /// The casts passed up, other events dropped.
    fn casts(h: &mut Harness) -> Vec<(u32, Bytes)> {
        h.take_ups()
            .into_iter()
            .filter_map(|e| match e {
                Up::Cast { from, msg } => Some((from.0, msg.payload().clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_safe_cast_waits_until_its_place_in_the_order_is_stable() {
        let mut h = Harness::from_info(3, 1, &INFO, "");
        cast(&mut h, 2, &Header::Ordered { level: Level::Safe }, b"s");
        cast(&mut h, 2, &Header::Ordered { level: Level::Total }, b"t");
        // The sequencer's first cast, index 0, places both.
        cast(&mut h, 0, &order(&[(2, 2)]), b"");
        assert!(casts(&mut h).is_empty(), "the announcement is not stable yet");
        h.up(Up::Stable(vec![Seqno(0), Seqno(0), Seqno(2)]));
        assert!(casts(&mut h).is_empty(), "no member but us may hold it");
        h.up(Up::Stable(vec![Seqno(1), Seqno(0), Seqno(2)]));
        assert_eq!(got(&[(2, b"s"), (2, b"t")]), casts(&mut h));
    }

    #[test]
    fn at_flush_a_safe_cast_goes_in_the_announced_order_stable_or_not() {
        let mut h = Harness::from_info(3, 1, &INFO, "");
        cast(&mut h, 2, &Header::Ordered { level: Level::Safe }, b"s");
        cast(&mut h, 1, &Header::Ordered { level: Level::Safe }, b"r");
        cast(&mut h, 0, &order(&[(2, 1), (1, 1)]), b"");
        h.up(Up::Flush);
        assert_eq!(got(&[(2, b"s"), (1, b"r")]), casts(&mut h));
    }

    #[test]
    fn a_cast_waits_here_for_the_casts_it_causally_follows() {
        let mut h = member(1);
        // Rank 2's total cast, not yet ordered.
        cast(&mut h, 2, &Header::Ordered { level: Level::Total }, b"t");
        // Rank 0's causal cast that follows it (causal below marked it so).
        let mut c = wire(&Header::Fifo { level: Level::Causal }, b"c");
        c.set_deps(Some(std::sync::Arc::new(vec![Seqno(0), Seqno(0), Seqno(1)])));
        h.up(Up::Cast { from: Rank(0), msg: c });
        assert!(casts(&mut h).is_empty(), "t is still held here");
        // The order for t (the sequencer's second cast: index 1).
        cast(&mut h, 0, &order(&[(2, 1)]), b"");
        assert_eq!(got(&[(2, b"t"), (0, b"c")]), casts(&mut h));
    }

    /// A message as it arrives from below, with `hdr` on it.
    fn wire(hdr: &Header, payload: &[u8]) -> Message {
        let mut m = Message::new(Bytes::copy_from_slice(payload));
        m.push(hdr);
        Message::from_wire(m.to_bytes())
    }

    fn cast(h: &mut Harness, from: u32, hdr: &Header, payload: &[u8]) {
        h.up(Up::Cast { from: Rank(from), msg: wire(hdr, payload) });
    }

    const TOTAL: Header = Header::Ordered { level: Level::Total };
    const FIFO: Header = Header::Fifo { level: Level::Fifo };

    fn order(runs: &[(u32, u32)]) -> Header {
        Header::Order(runs.iter().map(|&(r, c)| (Rank(r), c)).collect())
    }

    /// What `h` delivered: sender and payload.
    fn delivered(h: &mut Harness) -> Vec<(u32, Bytes)> {
        h.take_ups()
            .into_iter()
            .map(|ev| match ev {
                Up::Cast { from, msg } => (from.0, msg.payload().clone()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn got(list: &[(u32, &'static [u8])]) -> Vec<(u32, Bytes)> {
        list.iter().map(|&(r, p)| (r, Bytes::from_static(p))).collect()
    }

    /// What `h` cast (announcements, or casts from above), as messages off the wire.
    fn sent(h: &mut Harness) -> Vec<Message> {
        h.take_downs()
            .into_iter()
            .map(|ev| match ev {
                Down::Cast(m) => Message::from_wire(m.to_bytes()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn runs(msg: &Message) -> Vec<(u32, u32)> {
        match msg.clone().pop::<Header>() {
            Ok(Header::Order(runs)) => runs.into_iter().map(|(r, c)| (r.0, c)).collect(),
            other => panic!("not an announcement: {other:?}"),
        }
    }

    #[test]
    fn total_casts_wait_for_their_order() {
        let mut h = member(1);
        cast(&mut h, 2, &TOTAL, b"a");
        cast(&mut h, 1, &TOTAL, b"b");
        assert!(delivered(&mut h).is_empty(), "no order yet");
        assert_eq!(h.counter("held"), 2);
        cast(&mut h, 0, &order(&[(1, 1)]), b"");
        assert_eq!(delivered(&mut h), got(&[(1, b"b")]));
        cast(&mut h, 0, &order(&[(2, 1)]), b"");
        assert_eq!(delivered(&mut h), got(&[(2, b"a")]));
        assert_eq!((h.counter("ordered"), h.counter("held")), (2, 0));
        // An order that comes before its cast waits for it.
        cast(&mut h, 0, &order(&[(0, 2)]), b"");
        cast(&mut h, 0, &TOTAL, b"c");
        cast(&mut h, 0, &TOTAL, b"d");
        assert_eq!(delivered(&mut h), got(&[(0, b"c"), (0, b"d")]));
    }

    #[test]
    fn the_sequencer_announces_in_arrival_order_once_per_turn() {
        let mut seq = member(0);
        for (from, p) in [(1, b"a"), (1, b"b"), (2, b"c"), (0, b"d"), (0, b"e")] {
            cast(&mut seq, from, &TOTAL, p);
        }
        assert!(seq.take_downs().is_empty(), "nothing is announced before the turn ends");
        assert_eq!(seq.next_timer(), Some(seq.now()));
        seq.advance(Duration::ZERO);
        let announced = sent(&mut seq);
        assert_eq!(announced.len(), 1);
        assert_eq!(runs(&announced[0]), [(1, 2), (2, 1), (0, 2)]);
        assert_eq!((seq.counter("announcements"), seq.counter("announced_entries")), (1, 3));
        // The sequencer orders by its own announcement, as it comes back by loopback.
        assert!(delivered(&mut seq).is_empty());
        seq.up(Up::Cast { from: SEQUENCER, msg: announced[0].clone() });
        assert_eq!(
            delivered(&mut seq),
            got(&[(1, b"a"), (1, b"b"), (2, b"c"), (0, b"d"), (0, b"e")])
        );
        // A cast of a later turn goes in a later announcement.
        cast(&mut seq, 2, &TOTAL, b"f");
        seq.advance(Duration::ZERO);
        let announced = sent(&mut seq);
        assert_eq!(announced.iter().map(runs).collect::<Vec<_>>(), [vec![(2, 1)]]);
    }

    #[test]
    fn a_full_announcement_goes_at_once_and_a_delayed_one_waits() {
        let mut seq = Harness::from_info(3, 0, &INFO, "max_batch=2,delay=5ms");
        cast(&mut seq, 1, &TOTAL, b"a");
        cast(&mut seq, 1, &TOTAL, b"b");
        assert!(seq.take_downs().is_empty(), "one run so far");
        cast(&mut seq, 2, &TOTAL, b"c");
        let announced = sent(&mut seq);
        assert_eq!(announced.iter().map(runs).collect::<Vec<_>>(), [vec![(1, 2), (2, 1)]]);
        cast(&mut seq, 0, &TOTAL, b"d");
        seq.advance(Duration::from_micros(4999));
        assert!(seq.take_downs().is_empty(), "within the delay");
        seq.advance(Duration::from_micros(1));
        let announced = sent(&mut seq);
        assert_eq!(announced.iter().map(runs).collect::<Vec<_>>(), [vec![(0, 1)]]);
    }

    #[test]
    fn fifo_casts_pass_at_once_unless_behind_a_held_total_cast_of_their_sender() {
        let mut h = member(1);
        cast(&mut h, 2, &FIFO, b"f1");
        assert_eq!(delivered(&mut h), got(&[(2, b"f1")]));
        cast(&mut h, 2, &TOTAL, b"t1");
        cast(&mut h, 2, &FIFO, b"f2");
        cast(&mut h, 2, &Header::Fifo { level: Level::Causal }, b"f3");
        assert!(delivered(&mut h).is_empty(), "behind t1, FIFO across levels");
        cast(&mut h, 0, &FIFO, b"g");
        assert_eq!(delivered(&mut h), got(&[(0, b"g")]), "another sender is not held");
        assert_eq!((h.counter("held"), h.counter("max_held")), (3, 3));
        cast(&mut h, 0, &order(&[(2, 1)]), b"");
        assert_eq!(delivered(&mut h), got(&[(2, b"t1"), (2, b"f2"), (2, b"f3")]));
        assert_eq!((h.counter("held"), h.counter("ordered")), (0, 1));
    }

    #[test]
    fn the_order_from_another_rank_is_refused() {
        let mut h = member(2);
        cast(&mut h, 1, &TOTAL, b"a");
        cast(&mut h, 1, &order(&[(1, 1)]), b"");
        cast(&mut h, 0, &order(&[(1, 1), (3, 1)]), b""); // rank 3 is outside the view
        cast(&mut h, 0, &order(&[(1, 0)]), b"");
        assert!(delivered(&mut h).is_empty());
        assert_eq!(h.counter("bad_header"), 3);
        cast(&mut h, 0, &order(&[(1, 1)]), b"");
        assert_eq!(delivered(&mut h), got(&[(1, b"a")]));
    }

    #[test]
    fn the_level_travels_in_the_header() {
        let (mut sender, mut seq) = (member(1), member(0));
        for level in Level::ALL {
            sender.down(Down::Cast(Message::new(Bytes::from_static(b"x")).with_level(level)));
        }
        sender.down(Down::Cast(Message::control().unreliable()));
        let wires: Vec<Message> = sent(&mut sender);
        let hdrs: Vec<Header> = wires.iter().map(|m| m.clone().pop().unwrap()).collect();
        assert_eq!(
            hdrs,
            [
                Header::Fifo { level: Level::Fifo },
                Header::Fifo { level: Level::Causal },
                Header::Ordered { level: Level::Total },
                Header::Ordered { level: Level::Safe },
                Header::Unreliable,
            ]
        );
        for msg in wires {
            seq.up(Up::Cast { from: Rank(1), msg });
        }
        seq.advance(Duration::ZERO);
        for msg in sent(&mut seq) {
            seq.up(Up::Cast { from: SEQUENCER, msg });
        }
        let marks: Vec<(Level, bool)> = seq
            .take_ups()
            .into_iter()
            .map(|ev| match ev {
                Up::Cast { msg, .. } => (msg.level(), msg.is_unreliable()),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            marks,
            [
                (Level::Fifo, false),
                (Level::Causal, false),
                // The unreliable cast is not held behind the total ones.
                (Level::Fifo, true),
                (Level::Total, false),
                (Level::Safe, false),
            ]
        );
    }

    #[test]
    fn sends_and_other_events_pass_untouched() {
        let mut h = member(1);
        h.down(Down::Send(Rank(2), Message::new(Bytes::from_static(b"p"))));
        h.down(Down::Leave);
        let downs = h.take_downs();
        assert!(matches!(&downs[..], [Down::Send(Rank(2), m), Down::Leave] if m.len() == 1));
        h.up(Up::Send { from: Rank(0), msg: Message::new(Bytes::from_static(b"q")) });
        h.up(Up::Block);
        assert!(matches!(&h.take_ups()[..], [Up::Send { msg, .. }, Up::Block] if msg.len() == 1));
    }

    #[test]
    fn the_sequencer_announces_what_it_has_on_block_and_nothing_after() {
        let mut seq = Harness::from_info(3, 0, &INFO, "delay=5ms");
        cast(&mut seq, 1, &TOTAL, b"a");
        cast(&mut seq, 2, &TOTAL, b"b");
        assert!(seq.take_downs().is_empty(), "within the delay");
        seq.down(Down::Block);
        let downs = seq.take_downs();
        match downs.as_slice() {
            [Down::Cast(m), Down::Block] => {
                assert_eq!(runs(&Message::from_wire(m.to_bytes())), [(1, 1), (2, 1)]);
            }
            other => panic!("{other:?}"),
        }
        cast(&mut seq, 1, &TOTAL, b"c");
        seq.advance(Duration::from_millis(50));
        assert!(seq.take_downs().is_empty(), "blocked: nothing more is announced");
        assert_eq!(seq.counter("announcements"), 1);
    }

    #[test]
    fn held_casts_at_flush_are_delivered_in_rank_order() {
        let mut h = member(1);
        cast(&mut h, 2, &TOTAL, b"t2");
        cast(&mut h, 2, &FIFO, b"f2");
        cast(&mut h, 1, &TOTAL, b"t1");
        cast(&mut h, 0, &TOTAL, b"t0");
        cast(&mut h, 0, &Header::Ordered { level: Level::Safe }, b"s0");
        cast(&mut h, 0, &FIFO, b"f0");
        assert!(delivered(&mut h).is_empty(), "nobody announced them");
        h.up(Up::Flush);
        let ups = h.take_ups();
        assert!(matches!(ups.last(), Some(Up::Flush)), "{ups:?}");
        let out: Vec<(u32, Bytes)> = ups
            .into_iter()
            .filter_map(|ev| match ev {
                Up::Cast { from, msg } => Some((from.0, msg.payload().clone())),
                _ => None,
            })
            .collect();
        assert_eq!(
            out,
            got(&[(0, b"t0"), (0, b"s0"), (0, b"f0"), (1, b"t1"), (2, b"t2"), (2, b"f2")])
        );
        assert_eq!((h.counter("held"), h.counter("delivered_at_flush")), (0, 4));
    }

    #[test]
    fn at_flush_the_announced_order_goes_on_past_casts_nobody_holds() {
        // The sequencer ordered a cast of rank 2 that no survivor holds, then one of rank 1
        // and one of rank 0: those two keep the announced order, not the rank order.
        let mut h = member(1);
        cast(&mut h, 0, &order(&[(2, 2), (1, 1), (0, 1)]), b"");
        cast(&mut h, 0, &TOTAL, b"y");
        cast(&mut h, 1, &TOTAL, b"x");
        cast(&mut h, 1, &TOTAL, b"z");
        assert!(delivered(&mut h).is_empty());
        h.up(Up::Flush);
        let ups = h.take_ups();
        let out: Vec<(u32, Bytes)> = ups
            .iter()
            .filter_map(|ev| match ev {
                Up::Cast { from, msg } => Some((from.0, msg.payload().clone())),
                _ => None,
            })
            .collect();
        assert_eq!(out, got(&[(1, b"x"), (0, b"y"), (1, b"z")]));
        assert!(matches!(ups.last(), Some(Up::Flush)));
        assert_eq!((h.counter("skipped_at_flush"), h.counter("delivered_at_flush")), (2, 1));
    }

    #[test]
    fn garbage_is_dropped_and_counted() {
        let mut h = member(0);
        let bad: [(u32, &[u8]); 6] = [
            (1, &[9]),       // no such header
            (1, &[0, 7]),    // no such level
            (1, &[0, 2]),    // `Fifo` at total level
            (1, &[1, 0]),    // `Ordered` at FIFO level
            (1, &[2, 0x80]), // truncated announcement
            (7, &[0, 0]),    // a sender outside the view
        ];
        for (from, raw) in bad {
            h.up(Up::Cast { from: Rank(from), msg: Message::from_wire(Bytes::from_static(raw)) });
        }
        cast(&mut h, 7, &TOTAL, b"x");
        assert!(h.take_ups().is_empty());
        assert_eq!(h.counter("bad_header"), 7);
        h.advance(Duration::ZERO);
        assert!(h.take_downs().is_empty(), "nothing was announced");
    }

    /// Casts `(level, payload)` of three senders, as the layers of those senders put them on
    /// the wire.
    fn encode(casts: &[Vec<(Level, u32)>]) -> Vec<Vec<Message>> {
        casts
            .iter()
            .enumerate()
            .map(|(s, list)| {
                let mut h = member(s as u32);
                for &(level, id) in list {
                    let payload = Bytes::copy_from_slice(&id.to_le_bytes());
                    h.down(Down::Cast(Message::new(payload).with_level(level)));
                }
                sent(&mut h)
            })
            .collect()
    }

    /// Which stream each arrival comes from: every stream in its own order, interleaved as
    /// `choices` say (round-robin once they run out).
    fn interleave(lens: &[usize], choices: &[u8]) -> Vec<usize> {
        let mut left = lens.to_vec();
        let mut out = Vec::new();
        let mut i = 0;
        while left.iter().any(|&l| l > 0) {
            let open: Vec<usize> = (0..left.len()).filter(|&s| left[s] > 0).collect();
            let s = open[usize::from(choices.get(i).copied().unwrap_or(i as u8)) % open.len()];
            left[s] -= 1;
            out.push(s);
            i += 1;
        }
        out
    }

    /// What a member delivered: per cast, its sender, id and level.
    fn deliveries(h: &mut Harness) -> Vec<(u32, u32, Level)> {
        h.take_ups()
            .into_iter()
            .map(|ev| match ev {
                Up::Cast { from, msg } => {
                    let id = u32::from_le_bytes(msg.payload()[..4].try_into().unwrap());
                    (from.0, id, msg.level())
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    quickcheck! {
        fn header_codec_round_trips(kind: u8, level: u8, runs: Vec<(u32, u32)>) -> bool {
            let level = Level::ALL[usize::from(level % 4)];
            let h = match kind % 4 {
                0 => Header::Fifo { level },
                1 => Header::Ordered { level },
                2 => Header::Order(runs.into_iter().map(|(r, c)| (Rank(r), c)).collect()),
                _ => Header::Unreliable,
            };
            wire(&h, b"payload").pop::<Header>().ok() == Some(h)
        }

        fn garbage_never_panics(datagrams: Vec<(u32, Vec<u8>)>, rank: u32) -> bool {
            let mut h = member(rank % 3);
            for (from, bytes) in datagrams {
                let msg = Message::from_wire(Bytes::from(bytes));
                h.up(Up::Cast { from: Rank(from % 5), msg });
                h.advance(Duration::ZERO);
            }
            true
        }

        /// Three members receive the same casts of three senders, each in its own
        /// interleaving (FIFO per sender, as the layer below gives), and the sequencer's
        /// announcements, at any point: all deliver the total-level casts in one order, and
        /// every sender's casts in FIFO order.
        fn every_member_delivers_one_total_order_and_each_sender_in_fifo_order(
            casts: Vec<(u8, u8)>,
            choices: (Vec<u8>, Vec<u8>, Vec<u8>)
        ) -> bool {
            let mut by_sender: Vec<Vec<(Level, u32)>> = vec![Vec::new(); 3];
            for (i, (s, level)) in casts.iter().enumerate() {
                by_sender[usize::from(s % 3)].push((Level::ALL[usize::from(level % 4)], i as u32));
            }
            let streams = encode(&by_sender);
            let lens: Vec<usize> = streams.iter().map(Vec::len).collect();
            let mut members: Vec<Harness> = (0..3).map(member).collect();

            // The sequencer: its arrivals, with a turn ending wherever the choice's high bit
            // says; its announcements come back to it at once.
            let mut announced = Vec::new();
            let mut next = [0; 3];
            let order0 = interleave(&lens, &choices.0);
            for (k, &s) in order0.iter().enumerate() {
                let msg = streams[s][next[s]].clone();
                next[s] += 1;
                members[0].up(Up::Cast { from: Rank(s as u32), msg });
                if choices.0.get(k).is_some_and(|c| c & 0x80 != 0) || k + 1 == order0.len() {
                    members[0].advance(Duration::ZERO);
                    for a in sent(&mut members[0]) {
                        members[0].up(Up::Cast { from: SEQUENCER, msg: a.clone() });
                        announced.push(a);
                    }
                }
            }

            // The others: the three senders' casts and the announcements, interleaved.
            for (m, ch) in [(1, &choices.1), (2, &choices.2)] {
                let mut all = streams.clone();
                all.push(announced.clone());
                let lens: Vec<usize> = all.iter().map(Vec::len).collect();
                let mut next = [0; 4];
                for s in interleave(&lens, ch) {
                    let msg = all[s][next[s]].clone();
                    next[s] += 1;
                    let from = if s == 3 { SEQUENCER } else { Rank(s as u32) };
                    members[m].up(Up::Cast { from, msg });
                }
            }

            let got: Vec<Vec<(u32, u32, Level)>> = members.iter_mut().map(deliveries).collect();
            let total_order = |d: &[(u32, u32, Level)]| -> Vec<u32> {
                d.iter().filter(|c| c.2.is_total()).map(|c| c.1).collect()
            };
            let fifo = |d: &[(u32, u32, Level)]| {
                (0..3u32).all(|s| {
                    let mine: Vec<(Level, u32)> =
                        d.iter().filter(|c| c.0 == s).map(|c| (c.2, c.1)).collect();
                    mine == by_sender[s as usize]
                })
            };
            got.iter().all(|d| total_order(d) == total_order(&got[0]) && fifo(d))
                && members.iter().all(|h| h.counter("held") == 0)
        }
    }
}
