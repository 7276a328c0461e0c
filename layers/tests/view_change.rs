//! The layers' part in a view change, on four real `ordered` stacks driven by hand: member 3
//! crashes after some of its casts reached member 0 only, and the three survivors run the
//! membership service's protocol themselves (Fail, Block, the rows, the cut, Flush). They must
//! deliver exactly the same casts in the old view (virtual synchrony), each sender's in order,
//! the total-level ones in one order, and hold nothing at the end.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use horus_core::{
    Dest, Down, Endpoint, GroupName, Level, Message, Rank, Rng, Seqno, Stack, Time, Up, View,
    ViewState,
};

const N: usize = 4;
const CRASHED: usize = 3;
const SURVIVORS: [usize; 3] = [0, 1, 2];

/// What one member's application saw.
#[derive(Default, Debug)]
struct Seen {
    /// Casts delivered: (sender, the sender's cast number, level).
    delivered: Vec<(u32, u32, Level)>,
    /// The latest `Received` row.
    received: Option<Vec<Seqno>>,
    /// The row reported just before `BlockOk`.
    row_at_block: Option<Vec<Seqno>>,
    flushed: bool,
}

struct Group {
    stacks: Vec<Stack>,
    seen: Vec<Seen>,
    /// `link[i][j]`: datagrams from `i` reach `j`.
    link: [[bool; N]; N],
    alive: [bool; N],
    /// By member: casts so far, which numbers the next.
    cast_count: [u32; N],
    now: Time,
}

impl Group {
    fn new() -> Group {
        let plan = horus_layers::registry().plan("ordered").unwrap();
        let e = |n| Endpoint::new(n, 0);
        let view = Arc::new(View::initial((0..N as u64).map(e).collect()));
        let g = GroupName::new("view-change");
        let stacks = (0..N as u64)
            .map(|n| {
                let vs = ViewState::new(g.clone(), e(n), view.clone()).unwrap();
                plan.build(vs, Rng::new(n), Time::ZERO).unwrap()
            })
            .collect();
        Group {
            stacks,
            seen: (0..N).map(|_| Seen::default()).collect(),
            link: [[true; N]; N],
            alive: [true; N],
            cast_count: [0; N],
            now: Time::ZERO,
        }
    }

    fn cast(&mut self, member: usize, level: Level) {
        let k = self.cast_count[member];
        self.cast_count[member] += 1;
        let mut body = (member as u32).to_be_bytes().to_vec();
        body.extend_from_slice(&k.to_be_bytes());
        let msg = Message::new(Bytes::from(body)).with_level(level);
        self.stacks[member].down(self.now, Down::Cast(msg));
        self.collect();
    }

    fn down(&mut self, member: usize, ev: Down) {
        self.stacks[member].down(self.now, ev);
        self.collect();
    }

    fn collect(&mut self) {
        for (i, s) in self.stacks.iter_mut().enumerate() {
            while let Some(ev) = s.poll_up() {
                let seen = &mut self.seen[i];
                assert!(!seen.flushed, "member {i}: {ev:?} after Flush");
                match ev {
                    Up::Cast { from, msg } if !msg.is_unreliable() => {
                        let p = msg.payload();
                        let sender = u32::from_be_bytes(p[..4].try_into().unwrap());
                        let k = u32::from_be_bytes(p[4..8].try_into().unwrap());
                        assert_eq!(sender, from.0);
                        seen.delivered.push((sender, k, msg.level()));
                    }
                    Up::Received(row) => seen.received = Some(row),
                    Up::BlockOk => {
                        let row = seen.received.clone();
                        assert!(row.is_some(), "member {i}: Received comes before BlockOk");
                        seen.row_at_block = row;
                    }
                    Up::Flush => seen.flushed = true,
                    _ => {}
                }
            }
        }
    }

    /// Moves datagrams (a microsecond a round) and fires timers (jumping to the next one when
    /// nothing moves) until `done` or `until`; returns whether `done` came.
    fn run(&mut self, until: Time, done: impl Fn(&Group) -> bool) -> bool {
        for _ in 0..1_000_000 {
            if done(self) {
                return true;
            }
            if self.now >= until {
                return false;
            }
            let mut moved = false;
            for i in (0..N).filter(|&i| self.alive[i]) {
                self.stacks[i].on_timeout(self.now);
                while let Some(t) = self.stacks[i].poll_transmit() {
                    moved = true;
                    let bytes = t.msg.to_bytes();
                    let to: Vec<usize> = match t.dest {
                        Dest::Cast => (0..N).filter(|&j| j != i).collect(),
                        Dest::Member(e) => vec![e.node as usize],
                    };
                    for j in to.into_iter().filter(|&j| self.link[i][j] && self.alive[j]) {
                        self.stacks[j].receive(self.now, bytes.clone());
                    }
                }
            }
            self.collect();
            if moved {
                self.now += Duration::from_micros(1);
            } else {
                let live = (0..N).filter(|&i| self.alive[i]);
                let next = live.filter_map(|i| self.stacks[i].poll_timeout()).min();
                self.now = next.unwrap_or(until).clamp(self.now, until);
            }
        }
        panic!("no end in sight");
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run(until, |_| false);
    }

    fn counter(&self, member: usize, layer: &str, name: &str) -> u64 {
        let all = self.stacks[member].counters();
        all.into_iter().find(|(l, k, _)| *l == layer && *k == name).map_or(0, |(_, _, v)| v)
    }
}

#[test]
fn survivors_deliver_the_same_casts_when_a_member_crashes() {
    let mut g = Group::new();
    let level = |i: usize| Level::ALL[i % 4];

    // All four cast at every level, and everyone gets everything.
    for k in 0..12 {
        for m in 0..N {
            g.cast(m, level(k + m));
        }
    }
    let all = 12 * N;
    let deadline = g.now + Duration::from_secs(5);
    assert!(g.run(deadline, |g| g.seen.iter().all(|s| s.delivered.len() == all)));

    // Member 3's next casts reach member 0 only; 1 and 2 go on casting meanwhile.
    g.link[CRASHED][1] = false;
    g.link[CRASHED][2] = false;
    for k in 0..8 {
        g.cast(CRASHED, level(k));
        if k % 2 == 0 {
            g.cast(1, level(k + 1));
            g.cast(2, level(k + 2));
        }
    }
    g.run_for(Duration::from_millis(3));
    // Member 0 delivered 3's first ones (its first safe one is not stable, 1 and 2 lack it,
    // and 3's later casts wait behind it) and casts after them: its casts now follow casts
    // that only it holds.
    assert!(g.seen[0].delivered.contains(&(3, 13, Level::Causal)), "{:?}", g.seen[0].delivered);
    for k in 0..4 {
        g.cast(0, [Level::Causal, Level::Total, Level::Fifo, Level::Safe][k]);
    }
    g.run_for(Duration::from_millis(3));

    // Member 3 crashes.
    g.alive[CRASHED] = false;
    g.run_for(Duration::from_millis(5));
    let stuck = |m: usize| g.counter(m, "causal", "held") + g.counter(m, "total", "held");
    assert!(stuck(1) > 0 && stuck(2) > 0, "1 and 2 wait for casts only 0 holds");

    // The membership service's part, by hand, at each survivor.
    for m in SURVIVORS {
        g.down(m, Down::Fail(vec![Rank(CRASHED as u32)]));
    }
    for m in SURVIVORS {
        g.down(m, Down::Block);
    }
    let deadline = g.now + Duration::from_secs(1);
    assert!(g.run(deadline, |g| SURVIVORS.iter().all(|&m| g.seen[m].row_at_block.is_some())));
    let rows: Vec<Vec<Seqno>> =
        SURVIVORS.iter().map(|&m| g.seen[m].row_at_block.clone().unwrap()).collect();
    let cut: Vec<Seqno> = (0..N).map(|r| rows.iter().map(|row| row[r]).max().unwrap()).collect();
    // Member 0's row counts all of 3's casts; 1 and 2 lack the last eight.
    assert_eq!(cut[CRASHED], rows[0][CRASHED]);
    assert!(rows[1][CRASHED] < cut[CRASHED] && rows[2][CRASHED] < cut[CRASHED], "{rows:?}");

    for m in SURVIVORS {
        g.down(m, Down::Cut(cut.clone()));
    }
    let reached = |g: &Group, m: usize| {
        g.seen[m].received.as_ref().is_some_and(|row| row.iter().zip(&cut).all(|(r, c)| r >= c))
    };
    let deadline = g.now + Duration::from_secs(1);
    assert!(g.run(deadline, |g| SURVIVORS.iter().all(|&m| reached(g, m))));
    for m in SURVIVORS {
        g.down(m, Down::Flush);
    }
    let deadline = g.now + Duration::from_secs(1);
    assert!(g.run(deadline, |g| SURVIVORS.iter().all(|&m| g.seen[m].flushed)));

    // Virtual synchrony: the same casts at every survivor.
    let set = |m: usize| -> BTreeSet<(u32, u32)> {
        g.seen[m].delivered.iter().map(|&(s, k, _)| (s, k)).collect()
    };
    for m in SURVIVORS {
        assert_eq!(g.seen[m].delivered.len(), set(m).len(), "member {m} delivered a cast twice");
        assert_eq!(set(m), set(0), "members {m} and 0 differ");
    }
    // Every cast of the survivors, and every cast of 3's that reached member 0, is among them.
    for s in 0..N {
        for k in 0..g.cast_count[s] {
            assert!(set(0).contains(&(s as u32, k)), "cast {k} of {s} was not delivered");
        }
    }
    // Each sender's order, and one total order.
    let total = |m: usize| -> Vec<(u32, u32)> {
        let d = &g.seen[m].delivered;
        d.iter().filter(|c| c.2.is_total()).map(|&(s, k, _)| (s, k)).collect()
    };
    for m in SURVIVORS {
        for s in 0..N as u32 {
            let ks: Vec<u32> =
                g.seen[m].delivered.iter().filter(|c| c.0 == s).map(|c| c.1).collect();
            assert!(ks.windows(2).all(|w| w[0] < w[1]), "member {m}, sender {s}: {ks:?}");
        }
        assert_eq!(total(m), total(0), "members {m} and 0 disagree on the total order");
    }
    // The crashed member delivered nothing the survivors did not, total-level casts in their
    // order, safe ones included (uniform delivery).
    let at_3: Vec<(u32, u32)> = g.seen[CRASHED].delivered.iter().map(|&(s, k, _)| (s, k)).collect();
    assert!(at_3.iter().all(|c| set(0).contains(c)));
    let total_3 = total(CRASHED);
    let survivors_on_3s: Vec<(u32, u32)> =
        total(0).into_iter().filter(|c| total_3.contains(c)).collect();
    assert_eq!(survivors_on_3s, total_3);

    // Nothing is left held anywhere.
    for m in SURVIVORS {
        for (layer, name) in
            [("total", "held"), ("causal", "held"), ("safe", "held"), ("flow", "held_bytes")]
        {
            assert_eq!(g.counter(m, layer, name), 0, "member {m}: {layer} {name}");
        }
        assert_eq!(g.counter(m, "causal", "dropped_at_flush"), 0, "member {m}");
        assert_eq!(g.counter(m, "frag", "dropped_at_flush"), 0, "member {m}");
    }
    for m in SURVIVORS {
        let c = |l, n| g.counter(m, l, n);
        println!(
            "member {m}: {} delivered; at flush: safe {}, total {} unannounced, {} skipped; \
             mnak from_failed {}, retrans_received {}",
            g.seen[m].delivered.len(),
            c("safe", "delivered_at_flush"),
            c("total", "delivered_at_flush"),
            c("total", "skipped_at_flush"),
            c("mnak", "from_failed"),
            c("mnak", "retrans_received"),
        );
    }
    // 1 and 2 fetched 3's last casts from 0.
    assert!(g.counter(0, "mnak", "retrans_sent") >= 16);
}
