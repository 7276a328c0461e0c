//! `suspect`: heartbeat failure detection.
//!
//! Adds: an up [`Up::Suspect`] naming the members of the view that have been silent for more
//! than `max_idle` sweeps, so that the membership service above can remove them by a view
//! change. It decides nothing itself: suspicion is a hint, and only membership acts on it.
//! Needs below: best-effort multicast. Gives suspicions (`Props::SUSPECT`).
//! Place: low, right under the reliable multicast layer (`...:mnak:suspect:pt2pt:pack`), so
//! that it hears first-hand datagrams only: every datagram that comes up through it counts as
//! hearing from its sender (busy members need no pings), a cast of a failed member that
//! another member retransmits counts for the retransmitter, not for the failed one, and no
//! layer above (flow control) can hold back the traffic that stands for a member's heartbeat.
//!
//! The rule is Ensemble's SUSPECT layer (Hayden, *The Ensemble System*, 1998) on Birman's
//! heartbeat failure detector (Birman, ch. 13, on failure detectors), counted in sweeps rather
//! than in time, so that a member that was itself paused does not suspect everyone at once:
//! - every `every` a member *sweeps*: it counts one more sweep and, if it has cast nothing
//!   since the last sweep, casts an unreliable `Ping` (a lost ping is replaced by the next).
//!   The first sweep is staggered by rank, at `every * rank / n`, so the members do not all
//!   ping at once;
//! - it notes, for every member, the sweep in which it last heard from it (a cast, a ping or
//!   a send); a member last heard more than `max_idle` sweeps ago is *silent*;
//! - at each sweep, if the silent set holds a member it did not hold at the last sweep, the
//!   whole set goes up in one `Suspect`; the same suspicion is not repeated. A silent member
//!   heard again simply leaves the set (the membership service decides what to do with it);
//! - `Down::Fail(ranks)` from above (membership has given up on them in this view): they are
//!   no longer counted nor suspected. The event goes on down.
//!
//! A member never suspects itself.
//!
//! Header: `Pass` (one byte) on casts from above; `Ping` on its own. Sends pass untouched.
//! Parameters: `every` (the sweep period, default 10ms), `max_idle` (sweeps of silence
//! tolerated, default 30: a member is suspected after 300 to 310 ms of silence). Timer: one
//! per sweep.
//! Counters: `pings_sent`, `pings_received`, `suspicions` (members newly suspected, summed over
//! the suspicions), `suspected` (members suspected now), `bad_header`.

use std::time::Duration;

use horus_core::spec::Args;
use horus_core::{
    Cx, Down, Layer, LayerInfo, Message, ParamError, Props, Rank, Token, Up, ViewState,
};
use serde::{Deserialize, Serialize};

pub const INFO: LayerInfo = LayerInfo {
    name: "suspect",
    doc: "heartbeat failure detection: suspects members silent for too many sweeps",
    needs: Props::CAST,
    gives: Props::SUSPECT,
    hides: Props::NONE,
    build,
};

fn build(args: &mut Args<'_>, vs: &ViewState) -> Result<Box<dyn Layer>, ParamError> {
    let every = args.duration("every", Duration::from_millis(10))?;
    if every.is_zero() {
        return Err(args.error("every", "a sweep period must be longer than zero"));
    }
    let max_idle = args.u64("max_idle", 30)?;
    if max_idle == 0 {
        return Err(args.error("max_idle", "must be at least 1 sweep"));
    }
    Ok(Box::new(Suspect::new(vs, every, max_idle)))
}

/// The timer token of a sweep.
const SWEEP: u64 = 0;

/// What this layer writes on the wire.
#[derive(Serialize, Deserialize, Debug, PartialEq, Eq, Clone, Copy)]
enum Header {
    /// A cast from above, passed through.
    Pass,
    /// "I am alive": cast by a member that had nothing else to cast in a sweep.
    Ping,
}

#[derive(Debug, Default)]
struct Stats {
    pings_sent: u64,
    pings_received: u64,
    suspicions: u64,
    bad_header: u64,
}

/// What this member knows of one other member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Peer {
    /// Last heard from in this sweep; `suspected` once it has been silent too long.
    Heard { sweep: u64, suspected: bool },
    /// Given up on by the membership service (`Down::Fail`): neither counted nor suspected.
    Failed,
}

/// State for one view; the next view builds a fresh one.
#[derive(Debug)]
pub struct Suspect {
    me: Rank,
    every: Duration,
    /// Sweeps of silence tolerated before we suspect.
    max_idle: u64,
    /// Sweeps done in this view.
    sweep: u64,
    /// We cast something since the last sweep, so no ping is due.
    cast_since_sweep: bool,
    /// By rank.
    peers: Vec<Peer>,
    stats: Stats,
}

impl Suspect {
    fn new(vs: &ViewState, every: Duration, max_idle: u64) -> Self {
        Suspect {
            me: vs.rank,
            every,
            max_idle,
            sweep: 0,
            cast_since_sweep: false,
            peers: vec![Peer::Heard { sweep: 0, suspected: false }; vs.view.len()],
            stats: Stats::default(),
        }
    }

    /// Any message from `from` is a heartbeat. False if `from` is no member of the view.
    fn on_heard(&mut self, from: Rank) -> bool {
        match self.peers.get_mut(from.index()) {
            // Un-suspected silently: membership decides what a late heartbeat means.
            Some(peer @ Peer::Heard { .. }) => {
                *peer = Peer::Heard { sweep: self.sweep, suspected: false };
                true
            }
            Some(Peer::Failed) => true,
            None => false,
        }
    }

    fn on_cast(&mut self, from: Rank, mut msg: Message, cx: &mut Cx<'_>) {
        let Ok(header) = msg.pop::<Header>() else {
            return self.stats.bad_header += 1;
        };
        if !self.on_heard(from) {
            // A sender outside the view.
            return self.stats.bad_header += 1;
        }
        match header {
            Header::Pass => cx.up(Up::Cast { from, msg }),
            Header::Ping => self.stats.pings_received += 1,
        }
    }

    fn on_fail(&mut self, ranks: &[Rank]) {
        for r in ranks {
            if let Some(peer) = self.peers.get_mut(r.index()) {
                *peer = Peer::Failed;
            }
        }
    }

    /// One sweep: ping if we were idle, then suspect whoever has been silent too long.
    fn on_sweep(&mut self, cx: &mut Cx<'_>) {
        self.sweep += 1;
        if !self.cast_since_sweep {
            let mut msg = Message::control().unreliable();
            msg.push(&Header::Ping);
            cx.down(Down::Cast(msg));
            self.stats.pings_sent += 1;
        }
        self.cast_since_sweep = false;

        let mut newly = 0;
        for (r, peer) in self.peers.iter_mut().enumerate() {
            if let Peer::Heard { sweep, suspected } = peer {
                let silent = r != self.me.index() && self.sweep - *sweep > self.max_idle;
                newly += u64::from(silent && !*suspected);
                *suspected = silent;
            }
        }
        if newly > 0 {
            self.stats.suspicions += newly;
            cx.up(Up::Suspect(self.suspected().collect()));
        }
    }

    /// The members suspected now, by rank.
    fn suspected(&self) -> impl Iterator<Item = Rank> + '_ {
        self.peers.iter().enumerate().filter_map(|(r, peer)| match peer {
            Peer::Heard { suspected: true, .. } => Some(Rank(r as u32)),
            _ => None,
        })
    }
}

impl Layer for Suspect {
    fn init(&mut self, cx: &mut Cx<'_>) {
        // Staggered by rank so the members do not all ping at once.
        let n = u32::try_from(cx.nmembers()).unwrap_or(u32::MAX).max(1);
        let first = self.every * cx.rank().0 / n;
        cx.timer_after(first, SWEEP);
    }

    fn up(&mut self, ev: Up, cx: &mut Cx<'_>) {
        match ev {
            Up::Cast { from, msg } => self.on_cast(from, msg, cx),
            Up::Send { from, msg } => {
                // Sends carry no header of ours: a sender outside the view is for the layers
                // above to judge.
                self.on_heard(from);
                cx.up(Up::Send { from, msg });
            }
            ev => cx.up(ev),
        }
    }

    fn down(&mut self, ev: Down, cx: &mut Cx<'_>) {
        match ev {
            Down::Cast(mut msg) => {
                // Piggybacked heartbeat: this cast spares the next sweep its ping.
                self.cast_since_sweep = true;
                msg.push(&Header::Pass);
                cx.down(Down::Cast(msg));
            }
            Down::Fail(ranks) => {
                self.on_fail(&ranks);
                cx.down(Down::Fail(ranks));
            }
            ev => cx.down(ev),
        }
    }

    fn timer(&mut self, _: Token, cx: &mut Cx<'_>) {
        self.on_sweep(cx);
        cx.timer_after(self.every, SWEEP);
    }

    fn counters(&self, report: &mut dyn FnMut(&'static str, u64)) {
        report("pings_sent", self.stats.pings_sent);
        report("pings_received", self.stats.pings_received);
        report("suspicions", self.stats.suspicions);
        report("suspected", self.suspected().count() as u64);
        report("bad_header", self.stats.bad_header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use horus_core::testing::Harness;
    use horus_core::Time;
    use quickcheck::quickcheck;

    const SWEEP_MS: Duration = Duration::from_millis(10);

    fn suspect(n: usize, rank: u32, params: &str) -> Harness {
        Harness::from_info(n, rank, &INFO, params)
    }

    fn ping_from(h: &mut Harness, from: u32) {
        let mut m = Message::control();
        m.push(&Header::Ping);
        h.up(Up::Cast { from: Rank(from), msg: Message::from_wire(m.to_bytes()).unreliable() });
    }

    fn cast_from(h: &mut Harness, from: u32) {
        let mut m = Message::new(Bytes::from_static(b"data"));
        m.push(&Header::Pass);
        h.up(Up::Cast { from: Rank(from), msg: Message::from_wire(m.to_bytes()) });
    }

    fn send_from(h: &mut Harness, from: u32) {
        let msg = Message::new(Bytes::from_static(b"send"));
        h.up(Up::Send { from: Rank(from), msg });
    }

    /// The `Suspect` events passed up so far, as lists of ranks.
    fn suspicions(h: &mut Harness) -> Vec<Vec<u32>> {
        h.take_ups()
            .into_iter()
            .filter_map(|ev| match ev {
                Up::Suspect(ranks) => Some(ranks.iter().map(|r| r.0).collect()),
                _ => None,
            })
            .collect()
    }

    /// The pings cast down so far; every one of them unreliable.
    fn pings(h: &mut Harness) -> usize {
        let mut n = 0;
        for ev in h.take_downs() {
            if let Down::Cast(m) = ev {
                let unreliable = m.is_unreliable();
                if Message::from_wire(m.to_bytes()).pop::<Header>() == Ok(Header::Ping) {
                    assert!(unreliable, "a lost ping is replaced by the next");
                    n += 1;
                }
            }
        }
        n
    }

    /// Hears from `heard`, then lets one sweep pass; returns what it suspected.
    fn sweep(h: &mut Harness, heard: &[u32]) -> Vec<Vec<u32>> {
        for &r in heard {
            ping_from(h, r);
        }
        h.advance(SWEEP_MS);
        suspicions(h)
    }

    #[test]
    fn a_silent_member_is_suspected_after_max_idle_sweeps() {
        let mut h = suspect(3, 0, "every=10ms,max_idle=5");
        h.advance(Duration::ZERO); // sweep 1: rank 0 sweeps at once
        for _ in 2..=5 {
            assert!(sweep(&mut h, &[2]).is_empty());
        }
        assert_eq!(h.now(), Time::from_millis(40), "sweep 5");
        ping_from(&mut h, 2);
        h.advance(Duration::from_micros(9_999));
        assert!(suspicions(&mut h).is_empty(), "not before sweep 6");
        h.advance(Duration::from_micros(1));
        assert_eq!(suspicions(&mut h), vec![vec![1]], "silent for 6 > max_idle sweeps");
        assert_eq!(h.counter("suspicions"), 1);
        assert_eq!(h.counter("suspected"), 1);
    }

    #[test]
    fn the_defaults_suspect_after_300_ms_of_silence() {
        let mut h = suspect(2, 0, "");
        h.advance_to(Time::from_micros(299_999));
        assert!(suspicions(&mut h).is_empty());
        h.advance_to(Time::from_millis(300));
        assert_eq!(suspicions(&mut h), vec![vec![1]]);
    }

    #[test]
    fn any_traffic_counts_as_a_heartbeat() {
        let mut h = suspect(5, 0, "every=10ms,max_idle=2");
        h.advance(Duration::ZERO);
        h.take_ups();
        for _ in 0..10 {
            cast_from(&mut h, 1);
            ping_from(&mut h, 2);
            send_from(&mut h, 3);
            h.advance(SWEEP_MS);
        }
        let ups = h.take_ups();
        let casts = ups.iter().filter(
            |ev| matches!(ev, Up::Cast { from: Rank(1), msg } if msg.payload() == &b"data"[..]),
        );
        let sends = ups.iter().filter(
            |ev| matches!(ev, Up::Send { from: Rank(3), msg } if msg.payload() == &b"send"[..]),
        );
        assert_eq!((casts.count(), sends.count()), (10, 10), "casts and sends go on up");
        let suspected: Vec<&Vec<Rank>> = ups
            .iter()
            .filter_map(|ev| if let Up::Suspect(r) = ev { Some(r) } else { None })
            .collect();
        assert_eq!(suspected, vec![&vec![Rank(4)]], "only the silent member, once");
        assert_eq!(h.counter("pings_received"), 10);
    }

    #[test]
    fn a_busy_member_sends_no_pings() {
        let mut h = suspect(2, 0, "every=10ms");
        h.advance(Duration::ZERO);
        assert_eq!(pings(&mut h), 1, "idle in sweep 1");
        for _ in 0..5 {
            h.down(Down::Cast(Message::new(Bytes::from_static(b"data"))));
            h.advance(SWEEP_MS);
        }
        let downs = h.take_downs();
        assert_eq!(downs.len(), 5, "the casts and nothing else");
        for ev in downs {
            let Down::Cast(m) = ev else { panic!("a cast") };
            let mut m = Message::from_wire(m.to_bytes());
            assert_eq!(m.pop::<Header>(), Ok(Header::Pass));
            assert_eq!(m.payload(), &b"data"[..]);
        }
        assert_eq!(h.counter("pings_sent"), 1);
    }

    #[test]
    fn an_idle_member_pings_every_sweep() {
        let mut h = suspect(2, 0, "every=10ms");
        h.advance(Duration::from_millis(50));
        assert_eq!(pings(&mut h), 6, "sweeps at 0, 10, .. 50 ms");
        // A send is not a cast: it does not reach every member, so the ping is still due.
        h.down(Down::Send(Rank(1), Message::new(Bytes::from_static(b"send"))));
        h.advance(SWEEP_MS);
        assert_eq!(pings(&mut h), 1);
        assert_eq!(h.counter("pings_sent"), 7);
    }

    #[test]
    fn the_same_suspicion_is_not_repeated_but_a_new_one_names_the_whole_set() {
        let mut h = suspect(4, 0, "every=10ms,max_idle=3");
        h.advance(Duration::ZERO);
        let none: Vec<Vec<u32>> = vec![];
        assert_eq!(sweep(&mut h, &[2, 3]), none);
        assert_eq!(sweep(&mut h, &[2, 3]), none);
        assert_eq!(sweep(&mut h, &[3]), vec![vec![1]], "sweep 4: rank 1 never heard");
        assert_eq!(sweep(&mut h, &[3]), none, "not repeated");
        assert_eq!(sweep(&mut h, &[3]), vec![vec![1, 2]], "sweep 6: rank 2 joins");
        // Rank 1 speaks: it leaves the set without a word, and on falling silent again it
        // is suspected anew, with the whole set.
        assert_eq!(sweep(&mut h, &[1, 3]), none);
        assert_eq!(h.counter("suspected"), 1);
        assert_eq!(sweep(&mut h, &[3]), none);
        assert_eq!(sweep(&mut h, &[3]), none);
        assert_eq!(sweep(&mut h, &[3]), vec![vec![1, 2]]);
        assert_eq!(h.counter("suspicions"), 3);
    }

    #[test]
    fn failed_members_are_no_longer_suspected() {
        let mut h = suspect(5, 0, "every=10ms,max_idle=2");
        h.advance(Duration::ZERO);
        h.down(Down::Fail(vec![Rank(4)]));
        assert!(matches!(h.take_downs().last(), Some(Down::Fail(r)) if r == &[Rank(4)]));
        assert!(sweep(&mut h, &[2, 3]).is_empty());
        assert_eq!(sweep(&mut h, &[2, 3]), vec![vec![1]], "rank 4 failed: not counted");
        h.down(Down::Fail(vec![Rank(1), Rank(99)]));
        assert!(matches!(h.take_downs().last(), Some(Down::Fail(r)) if r.len() == 2));
        assert_eq!(h.counter("suspected"), 0);
        // Traffic from a failed member still goes up, and is no heartbeat.
        cast_from(&mut h, 1);
        assert_eq!(h.take_ups().len(), 1);
        assert!(sweep(&mut h, &[3]).is_empty());
        assert_eq!(sweep(&mut h, &[3]), vec![vec![2]], "not rank 1, nor rank 4");
        assert_eq!(h.counter("suspicions"), 2);
    }

    #[test]
    fn the_first_sweep_is_staggered_by_rank() {
        for rank in 0..4u32 {
            let mut h = suspect(4, rank, "every=10ms");
            let first = Time::from_micros(2_500 * u64::from(rank));
            if rank > 0 {
                h.advance_to(Time::from_nanos(first.as_nanos() - 1));
                assert_eq!(pings(&mut h), 0, "rank {rank}: not before {first}");
            }
            h.advance_to(first);
            assert_eq!(pings(&mut h), 1, "rank {rank}: first sweep at {first}");
            assert_eq!(h.next_timer(), Some(first + SWEEP_MS), "rank {rank}: then every 10ms");
        }
    }

    #[test]
    fn a_member_never_suspects_itself() {
        let mut h = suspect(2, 1, "every=10ms,max_idle=2");
        for _ in 0..10 {
            ping_from(&mut h, 0);
            h.advance(SWEEP_MS);
        }
        assert!(suspicions(&mut h).is_empty());
    }

    #[test]
    fn garbage_is_dropped_and_counted() {
        let mut h = suspect(3, 0, "every=10ms");
        for bytes in [&[][..], &[2][..], &[0xff, 0xff][..]] {
            let msg = Message::from_wire(Bytes::copy_from_slice(bytes));
            h.up(Up::Cast { from: Rank(1), msg });
        }
        ping_from(&mut h, 7); // no member of a view of 3
        assert_eq!(h.counter("bad_header"), 4);
        assert_eq!(h.counter("pings_received"), 0);
        assert!(h.take_ups().is_empty());
    }

    #[test]
    fn zero_period_or_zero_idle_is_refused() {
        let vs =
            ViewState::singleton(horus_core::GroupName::new("g"), horus_core::Endpoint::new(0, 0));
        for bad in ["every", "max_idle"] {
            let params = vec![(bad.to_string(), if bad == "every" { "0ms" } else { "0" }.into())];
            let err = build(&mut Args::new("suspect", &params), &vs).unwrap_err();
            assert_eq!(err.key, bad);
        }
    }

    quickcheck! {
        fn header_codec_round_trips(ping: bool) -> bool {
            let h = if ping { Header::Ping } else { Header::Pass };
            let mut m = Message::control();
            m.push(&h);
            m.len() == 1 && Message::from_wire(m.to_bytes()).pop::<Header>() == Ok(h)
        }

        fn garbage_never_panics(bytes: Vec<u8>, from: u32, send: bool) -> bool {
            let mut h = suspect(3, 0, "every=10ms,max_idle=1");
            let msg = Message::from_wire(Bytes::from(bytes));
            let from = Rank(from % 5);
            h.up(if send { Up::Send { from, msg } } else { Up::Cast { from, msg } });
            h.advance(Duration::from_millis(50));
            true
        }

        /// For any pattern of hearing, sweep by sweep, a member is suspected iff it was last
        /// heard more than `max_idle` sweeps ago; a `Suspect` goes up iff the set gained a
        /// member, and names the whole set.
        fn suspected_iff_last_heard_more_than_max_idle_sweeps_ago(
            me: u8,
            max_idle: u8,
            pattern: Vec<u8>
        ) -> bool {
            const N: usize = 5;
            let me = u32::from(me) % N as u32;
            let max_idle = 1 + u64::from(max_idle % 6);
            let mut h = suspect(N, me, &format!("every=10ms,max_idle={max_idle}"));
            h.advance_to(Time::from_millis(2 * u64::from(me))); // the staggered first sweep
            let (mut sweep, mut last, mut before) = (1u64, [0u64; N], Vec::<u32>::new());
            for (i, heard) in pattern.into_iter().enumerate() {
                for r in (0..N as u32).filter(|r| heard & (1 << r) != 0) {
                    // Every kind of traffic in turn.
                    match (i + r as usize) % 3 {
                        0 => ping_from(&mut h, r),
                        1 => cast_from(&mut h, r),
                        _ => send_from(&mut h, r),
                    }
                    last[r as usize] = sweep;
                }
                h.advance(SWEEP_MS);
                sweep += 1;
                let silent: Vec<u32> = (0..N as u32)
                    .filter(|&r| r != me && sweep - last[r as usize] > max_idle)
                    .collect();
                let grew = silent.iter().any(|r| !before.contains(r));
                let expect = if grew { vec![silent.clone()] } else { vec![] };
                if suspicions(&mut h) != expect || h.counter("suspected") != silent.len() as u64 {
                    return false;
                }
                before = silent;
            }
            true
        }
    }
}
