//! `stable`: stability detection.
//!
//! Adds: `Stable` events, up and down. `stable[r]` is the number of reliable casts of rank `r`
//! in this view that every member has received; the layers below free their retransmission
//! buffers up to it, and the layers above (safe delivery) learn which casts no failure can
//! take back.
//! Needs below: reliable FIFO multicast, directly (its counts are `mnak`'s seqnos).
//!
//! Each member counts the reliable casts it receives from each sender (its *row*) and gossips
//! the row, with its own idea of what is stable, in an unreliable cast: `after` its row changes
//! (so stability, and safe delivery, follow traffic closely), and every `every` while anything
//! it knows of is unstable or a member's gossip shows that member behind (so a lost gossip is
//! repaired). Gossip is cumulative, so a lost one is repaired by the next. Every member keeps the
//! matrix of rows; column minima are the stable vector (Ensemble's STABLE; Birman, ch. 13.7,
//! "garbage collection").
//!
//! View change: on `Down::Fail(ranks)` (passed on) stability is the column minima over the
//! survivors only, and gossip from the failed is ignored (`from_failed`); from then on our row
//! is gossiped at the end of the turn it changes in, not `after`. On `Up::BlockOk` we first send
//! `Up::Received(row)`, our row, then pass `BlockOk` up, so the membership service learns what
//! this member received in the view. On `Down::Cut` (passed on) we send `Up::Received(row)` at
//! once and again each time the row grows, until the stack is thrown away.
//!
//! Header: `Pass` (one byte) on casts from above; `Gossip { row, stable }` on its own.
//! Point-to-point traffic passes untouched.
//! Parameters: `after` (gossip this soon after the row changes, default 1ms; at most one such
//! gossip per `after`), `every` (the repair period, default 10ms). Timers: the period, and one
//! `after` the row changes.

use std::time::Duration;

use horus_core::spec::Args;
use horus_core::{
    Cx, Down, Layer, LayerInfo, Message, ParamError, Props, Rank, Seqno, Token, Up, ViewState,
};
use serde::{Deserialize, Serialize};

pub const INFO: LayerInfo = LayerInfo {
    name: "stable",
    doc: "stability detection: which casts every member holds",
    needs: Props::RELIABLE_CAST,
    // Its rows are what a view change cuts by.
    gives: Props::STABLE.union(Props::FLUSH),
    hides: Props::NONE,
    build,
};

fn build(args: &mut Args<'_>, vs: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    let every = args.duration("every", Duration::from_millis(10))?;
    let after = args.duration("after", Duration::from_millis(1))?;
    Ok(Box::new(Stable::new(vs, every, after)))
}

/// Timer tokens: the repair period, and a gossip soon after our row changed.
const TICK: u64 = 0;
const SOON: u64 = 1;

/// What this layer writes on the wire.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone)]
enum Header {
    /// A cast from above, passed through.
    Pass,
    /// "I have received `row[r]` casts from each `r`, and I believe `stable` is stable."
    Gossip { row: Vec<Seqno>, stable: Vec<Seqno> },
}

#[derive(Debug, Default)]
struct Stats {
    gossip_sent: u64,
    gossip_received: u64,
    reports: u64,
    from_failed: u64,
    bad_header: u64,
}

/// State for one view.
#[derive(Debug)]
pub struct Stable {
    me: Rank,
    every: Duration,
    after: Duration,
    /// A gossip is due `after` a change of our row.
    soon: bool,
    /// `rows[m][r]`: casts of `r` that `m` has received, as far as we know.
    rows: Vec<Vec<Seqno>>,
    /// The column minima of `rows`, as last announced.
    stable: Vec<Seqno>,
    /// Gossip at the next tick even if all looks stable.
    owe_gossip: bool,
    /// By rank: failed in this view (from `Down::Fail`).
    failed: Vec<bool>,
    /// A cut is pending: report our row each time it grows.
    cut: bool,
    stats: Stats,
}

impl Stable {
    fn new(vs: &ViewState, every: Duration, after: Duration) -> Self {
        let n = vs.view.len();
        Stable {
            me: vs.rank,
            every,
            after,
            soon: false,
            rows: vec![vec![Seqno(0); n]; n],
            stable: vec![Seqno(0); n],
            owe_gossip: false,
            failed: vec![false; n],
            cut: false,
            stats: Stats::default(),
        }
    }

    fn on_gossip(
        &mut self,
        from: Rank,
        row: Vec<Seqno>,
        their_stable: Vec<Seqno>,
        cx: &mut Cx<'_>,
    ) {
        let n = self.rows.len();
        if from.index() >= n || row.len() != n || their_stable.len() != n {
            return self.stats.bad_header += 1;
        }
        if self.failed[from.index()] {
            return self.stats.from_failed += 1;
        }
        self.stats.gossip_received += 1;
        for (known, new) in self.rows[from.index()].iter_mut().zip(&row) {
            *known = (*known).max(*new);
        }
        self.update(cx);
        // A member that sees less as stable than we do is missing a row we know: ours, at
        // least, so answer it at the next tick.
        if their_stable.iter().zip(&self.stable).any(|(t, s)| t < s) {
            self.owe_gossip = true;
        }
    }

    /// Recomputes the column minima over the survivors; announces them when they grew.
    fn update(&mut self, cx: &mut Cx<'_>) {
        let mut grew = false;
        for r in 0..self.stable.len() {
            let survivors = self.rows.iter().zip(&self.failed).filter(|(_, f)| !**f);
            let min = survivors.map(|(row, _)| row[r]).min().unwrap_or_default();
            if min > self.stable[r] {
                self.stable[r] = min;
                grew = true;
            }
        }
        if grew {
            cx.up(Up::Stable(self.stable.clone()));
            cx.down(Down::Stable(self.stable.clone()));
        }
    }

    /// Gossips if anything is unstable or a member is behind.
    fn gossip(&mut self, cx: &mut Cx<'_>) {
        self.update(cx);
        let mine = &self.rows[self.me.index()];
        let unstable = mine.iter().zip(&self.stable).any(|(m, s)| m > s);
        if unstable || self.owe_gossip {
            let mut msg = Message::control().unreliable();
            msg.push(&Header::Gossip { row: mine.clone(), stable: self.stable.clone() });
            cx.down(Down::Cast(msg));
            self.stats.gossip_sent += 1;
            self.owe_gossip = false;
        }
    }

    /// Our row changed: gossip soon (at the end of the turn during a view change), unless a
    /// gossip is already due; report the row while a cut is pending.
    fn on_row_change(&mut self, cx: &mut Cx<'_>) {
        if !self.soon {
            self.soon = true;
            let after = if self.failed.contains(&true) { Duration::ZERO } else { self.after };
            cx.timer_after(after, SOON);
        }
        if self.cut {
            self.report(cx);
        }
    }

    /// Tells the membership service what we have received.
    fn report(&mut self, cx: &mut Cx<'_>) {
        self.stats.reports += 1;
        cx.up(Up::Received(self.rows[self.me.index()].clone()));
    }

    fn on_fail(&mut self, ranks: &[Rank], cx: &mut Cx<'_>) {
        for r in ranks {
            // We do not fail ourselves: the membership service excludes us instead.
            if let Some(f) = self.failed.get_mut(r.index()).filter(|_| *r != self.me) {
                *f = true;
            }
        }
        self.update(cx);
    }
}

impl Layer for Stable {
    fn init(&mut self, cx: &mut Cx<'_>) {
        cx.timer_after(self.every, TICK);
    }

    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        let (from, mut msg) = match ev {
            Up::Cast { from, msg } => (from, msg),
            Up::BlockOk => {
                // What we received in this view, behind everything we sent in it.
                self.report(cx);
                return cx.up(Up::BlockOk);
            }
            ev => return cx.up(ev),
        };
        match msg.pop::<Header>() {
            Ok(Header::Pass) => {
                let counted = !msg.is_unreliable();
                if counted {
                    match self.rows[self.me.index()].get_mut(from.index()) {
                        Some(count) => *count = count.next(),
                        None => return self.stats.bad_header += 1,
                    }
                }
                cx.up(Up::Cast { from, msg });
                if counted {
                    self.on_row_change(cx);
                }
            }
            Ok(Header::Gossip { row, stable }) => self.on_gossip(from, row, stable, cx),
            Err(_) => self.stats.bad_header += 1,
        }
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Cast(mut msg) => {
                msg.push(&Header::Pass);
                cx.down(Down::Cast(msg));
            }
            Down::Fail(ranks) => {
                self.on_fail(&ranks, cx);
                cx.down(Down::Fail(ranks));
            }
            Down::Cut(cut) => {
                self.cut = true;
                self.report(cx);
                cx.down(Down::Cut(cut));
            }
            ev => cx.down(ev),
        }
    }

    fn timer(&mut self, token: Token, cx: &mut Cx<'_>) {
        if token == Token(SOON) {
            self.soon = false;
            self.gossip(cx);
        } else {
            self.gossip(cx);
            cx.timer_after(self.every, TICK);
        }
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        report("gossip_sent", self.stats.gossip_sent);
        report("gossip_received", self.stats.gossip_received);
        report("reports", self.stats.reports);
        report("from_failed", self.stats.from_failed);
        report("bad_header", self.stats.bad_header);
        let unstable: u64 =
            self.rows[self.me.index()].iter().zip(&self.stable).map(|(m, s)| m.0 - s.0).sum();
        report("unstable", unstable);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use horus_core::testing::Harness;
    use quickcheck::quickcheck;

    fn stable(n: usize, rank: u32) -> Harness {
        // The repair loop alone: the gossip after a row change never comes within these tests.
        Harness::new(n, rank, |vs| {
            Box::new(Stable::new(vs, Duration::from_millis(10), Duration::from_secs(3600)))
        })
    }

    fn cast_from(h: &mut Harness, from: u32) {
        let mut m = Message::control();
        m.push(&Header::Pass);
        h.up(Up::Cast { from: Rank(from), msg: Message::from_wire(m.to_bytes()) });
    }

    fn gossip(h: &mut Harness, from: u32, row: &[u64], stable: &[u64]) {
        let mut m = Message::control();
        m.push(&Header::Gossip {
            row: row.iter().map(|&s| Seqno(s)).collect(),
            stable: stable.iter().map(|&s| Seqno(s)).collect(),
        });
        h.up(Up::Cast { from: Rank(from), msg: Message::from_wire(m.to_bytes()).unreliable() });
    }

    fn sent_gossip(h: &mut Harness) -> Vec<Header> {
        h.take_downs()
            .into_iter()
            .filter_map(|ev| match ev {
                Down::Cast(mut m) => {
                    assert!(m.is_unreliable());
                    Some(m.pop::<Header>().unwrap())
                }
                _ => None,
            })
            .collect()
    }

    fn stable_events(h: &mut Harness) -> (Vec<Vec<Seqno>>, Vec<Vec<Seqno>>) {
        let ups = h
            .take_ups()
            .into_iter()
            .filter_map(|e| if let Up::Stable(v) = e { Some(v) } else { None })
            .collect();
        let downs = h
            .take_downs()
            .into_iter()
            .filter_map(|e| if let Down::Stable(v) = e { Some(v) } else { None })
            .collect();
        (ups, downs)
    }

    #[test]
    fn a_cast_is_stable_once_every_member_reports_it() {
        let mut h = stable(3, 0);
        cast_from(&mut h, 1);
        cast_from(&mut h, 1);
        gossip(&mut h, 1, &[0, 2, 0], &[0, 0, 0]);
        assert_eq!(stable_events(&mut h), (vec![], vec![]), "rank 2 has not reported");
        gossip(&mut h, 2, &[0, 1, 0], &[0, 0, 0]);
        let s = vec![Seqno(0), Seqno(1), Seqno(0)];
        assert_eq!(stable_events(&mut h), (vec![s.clone()], vec![s]));
    }

    #[test]
    fn gossip_goes_out_while_something_is_unstable_and_stops_after() {
        let mut h = stable(2, 0);
        h.advance(Duration::from_millis(10));
        assert!(sent_gossip(&mut h).is_empty(), "nothing received, nothing to say");
        cast_from(&mut h, 0);
        h.advance(Duration::from_millis(10));
        assert_eq!(
            sent_gossip(&mut h),
            vec![Header::Gossip {
                row: vec![Seqno(1), Seqno(0)],
                stable: vec![Seqno(0), Seqno(0)]
            }]
        );
        // Lost? It is sent again.
        h.advance(Duration::from_millis(10));
        assert_eq!(sent_gossip(&mut h).len(), 1);
        gossip(&mut h, 1, &[1, 0], &[0, 0]);
        h.take_ups();
        // Rank 1 is behind us on stability: we answer it once, then fall silent.
        h.advance(Duration::from_millis(10));
        assert_eq!(sent_gossip(&mut h).len(), 1);
        h.advance(Duration::from_millis(30));
        assert!(sent_gossip(&mut h).is_empty());
    }

    #[test]
    fn a_change_of_our_row_is_gossiped_after_a_short_delay_once() {
        let mut h = Harness::from_info(2, 0, &INFO, "after=1ms,every=10ms");
        cast_from(&mut h, 1);
        cast_from(&mut h, 1);
        h.advance(Duration::from_micros(999));
        assert!(sent_gossip(&mut h).is_empty());
        h.advance(Duration::from_micros(1));
        assert_eq!(
            sent_gossip(&mut h),
            vec![Header::Gossip {
                row: vec![Seqno(0), Seqno(2)],
                stable: vec![Seqno(0), Seqno(0)]
            }]
        );
    }

    #[test]
    fn stale_gossip_never_lowers_what_is_known() {
        let mut h = stable(2, 0);
        cast_from(&mut h, 1);
        gossip(&mut h, 1, &[0, 1], &[0, 0]);
        assert_eq!(stable_events(&mut h).0, vec![vec![Seqno(0), Seqno(1)]]);
        gossip(&mut h, 1, &[0, 0], &[0, 0]);
        h.advance(Duration::from_millis(10));
        assert_eq!(stable_events(&mut h).0, Vec::<Vec<Seqno>>::new());
    }

    #[test]
    fn malformed_gossip_is_dropped_and_counted() {
        let mut h = stable(3, 0);
        gossip(&mut h, 1, &[1, 2], &[0, 0, 0]);
        gossip(&mut h, 7, &[1, 2, 3], &[0, 0, 0]);
        assert_eq!(h.counter("bad_header"), 2);
        assert_eq!(h.counter("gossip_received"), 0);
    }

    #[test]
    fn unreliable_casts_are_not_counted() {
        let mut h = stable(2, 0);
        let mut m = Message::control();
        m.push(&Header::Pass);
        h.up(Up::Cast { from: Rank(1), msg: Message::from_wire(m.to_bytes()).unreliable() });
        assert_eq!(h.counter("unstable"), 0);
        assert_eq!(h.take_ups().len(), 1);
    }

    fn seqnos(v: &[u64]) -> Vec<Seqno> {
        v.iter().map(|&s| Seqno(s)).collect()
    }

    #[test]
    fn stability_ignores_failed_members() {
        let mut h = stable(3, 0);
        cast_from(&mut h, 1);
        gossip(&mut h, 1, &[0, 1, 0], &[0, 0, 0]);
        assert_eq!(stable_events(&mut h), (vec![], vec![]), "rank 2 has not reported");
        h.down(Down::Fail(vec![Rank(2)]));
        let downs = h.take_downs();
        let s = seqnos(&[0, 1, 0]);
        let [Down::Stable(st), Down::Fail(f)] = downs.as_slice() else { panic!("{downs:?}") };
        assert_eq!((st, f.as_slice()), (&s, &[Rank(2)][..]));
        assert_eq!(stable_events(&mut h).0, vec![s]);
        // Whatever the failed member still says is not taken.
        gossip(&mut h, 2, &[0, 0, 0], &[0, 0, 0]);
        assert_eq!(h.counter("from_failed"), 1);
        cast_from(&mut h, 1);
        gossip(&mut h, 1, &[0, 2, 0], &[0, 1, 0]);
        assert_eq!(stable_events(&mut h).0, vec![seqnos(&[0, 2, 0])]);
    }

    #[test]
    fn received_is_reported_before_block_ok() {
        let mut h = stable(3, 1);
        cast_from(&mut h, 0);
        cast_from(&mut h, 0);
        cast_from(&mut h, 2);
        h.take_ups();
        h.up(Up::BlockOk);
        let ups = h.take_ups();
        let [Up::Received(row), Up::BlockOk] = ups.as_slice() else { panic!("{ups:?}") };
        assert_eq!(*row, seqnos(&[2, 0, 1]));
    }

    #[test]
    fn after_a_cut_the_row_is_reported_at_once_and_each_time_it_grows() {
        let mut h = stable(2, 0);
        cast_from(&mut h, 1);
        cast_from(&mut h, 1);
        h.take_ups();
        h.down(Down::Cut(seqnos(&[0, 3])));
        assert!(matches!(h.take_downs().as_slice(), [Down::Cut(c)] if *c == seqnos(&[0, 3])));
        assert!(matches!(h.take_ups().as_slice(), [Up::Received(r)] if *r == seqnos(&[0, 2])));
        cast_from(&mut h, 1);
        let ups = h.take_ups();
        assert!(
            matches!(ups.as_slice(), [Up::Cast { .. }, Up::Received(r)] if *r == seqnos(&[0, 3])),
            "{ups:?}"
        );
        assert_eq!(h.counter("reports"), 2);
    }

    #[test]
    fn after_a_failure_a_row_change_is_gossiped_at_the_end_of_the_turn() {
        // `after` is an hour here: only the view change makes the gossip prompt.
        let mut h = stable(3, 0);
        h.down(Down::Fail(vec![Rank(2)]));
        h.take_downs();
        cast_from(&mut h, 1);
        h.advance(Duration::ZERO);
        assert_eq!(
            sent_gossip(&mut h),
            vec![Header::Gossip { row: seqnos(&[0, 1, 0]), stable: seqnos(&[0, 0, 0]) }]
        );
    }

    quickcheck! {
        fn header_codec_round_trips(row: Vec<u64>, st: Vec<u64>) -> bool {
            let h = Header::Gossip { row: row.into_iter().map(Seqno).collect(), stable: st.into_iter().map(Seqno).collect() };
            let mut m = Message::control();
            m.push(&h);
            Message::from_wire(m.to_bytes()).pop::<Header>().ok() == Some(h)
        }

        /// Stability is the minimum of what members reported, whatever order gossip comes in.
        fn stable_is_the_column_minimum(reports: Vec<(u8, u8, u8)>) -> bool {
            let mut h = stable(3, 0);
            let mut rows = [[0u64; 3]; 3];
            for _ in 0..40 {
                cast_from(&mut h, 2);
            }
            rows[0][2] = 40;
            for (m, a, b) in reports {
                let m = 1 + (m % 2) as usize;
                let row = [u64::from(a % 41), u64::from(b % 41), u64::from(a % 41)];
                for (k, v) in row.iter().enumerate() {
                    rows[m][k] = rows[m][k].max(*v);
                }
                gossip(&mut h, m as u32, &row, &[0, 0, 0]);
            }
            let expect: Vec<Seqno> = (0..3).map(|c| Seqno((0..3).map(|m| rows[m][c]).min().unwrap())).collect();
            let last = stable_events(&mut h).0.pop().unwrap_or(vec![Seqno(0); 3]);
            last == expect
        }

        fn garbage_never_panics(bytes: Vec<u8>, from: u32) -> bool {
            let mut h = stable(3, 0);
            h.up(Up::Cast { from: Rank(from % 4), msg: Message::from_wire(bytes::Bytes::from(bytes)) });
            true
        }
    }
}
