//! Faults and scenarios: what happens to the network and the processes, when.
//!
//! A scenario is a list of timed [`Fault`]s. It is written by hand for a test, or drawn from
//! the seed by [`FaultConfig::draw`]; either way the run replays exactly.

use std::fmt;
use std::time::Duration;

use crate::rng::Rng;
use crate::time::Time;

/// Something that happens to the network or to a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Split the network: each list is a component; nodes in no list form one more.
    Partition(Vec<Vec<usize>>),
    /// Make the network whole again (partitions and one-way failures).
    Heal,
    /// The link `from → to` carries nothing (`to` still reaches `from`).
    LinkDown {
        from: usize,
        to: usize,
    },
    LinkUp {
        from: usize,
        to: usize,
    },
    /// The process crashes: its state is lost, it handles nothing more.
    Crash(usize),
    /// The node starts again, as a new incarnation.
    Restart(usize),
    /// The process leaves the group (`Down::Leave`), and stops once told it is out.
    Leave(usize),
    /// The process handles nothing for `pause`, then resumes with its timers overdue and the
    /// datagrams that arrived meanwhile queued (as after a VM or GC pause).
    Pause {
        node: usize,
        pause: Duration,
    },
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Partition(cs) => {
                f.write_str("partition")?;
                for c in cs {
                    let names: Vec<String> = c.iter().map(|n| format!("n{n}")).collect();
                    write!(f, " {{{}}}", names.join(" "))?;
                }
                Ok(())
            }
            Fault::Heal => f.write_str("heal"),
            Fault::LinkDown { from, to } => write!(f, "link n{from} -> n{to} down"),
            Fault::LinkUp { from, to } => write!(f, "link n{from} -> n{to} up"),
            Fault::Crash(n) => write!(f, "crash n{n}"),
            Fault::Restart(n) => write!(f, "restart n{n}"),
            Fault::Leave(n) => write!(f, "leave n{n}"),
            Fault::Pause { node, pause } => write!(f, "pause n{node} for {pause:?}"),
        }
    }
}

/// Which kinds of fault a random scenario may contain.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultConfig {
    pub partitions: bool,
    pub crashes: bool,
    /// Crashed nodes come back as new incarnations (needs a membership service to rejoin).
    pub restarts: bool,
    pub pauses: bool,
    /// One-way link failures.
    pub oneway: bool,
    /// A process leaves the group.
    pub leaves: bool,
}

impl FaultConfig {
    /// Every kind of fault at once.
    pub fn all() -> Self {
        FaultConfig {
            partitions: true,
            crashes: true,
            restarts: true,
            pauses: true,
            oneway: true,
            leaves: true,
        }
    }

    pub fn any(&self) -> bool {
        self.partitions || self.crashes || self.pauses || self.oneway || self.leaves
    }

    /// Draws a scenario for `nodes` nodes within `[0, window)`. Every partition, pause and link
    /// failure ends inside the window, at most a minority of the nodes is down at any time,
    /// and the network is whole at `window`.
    pub fn draw(&self, nodes: usize, window: Duration, rng: &mut Rng) -> Vec<(Time, Fault)> {
        let mut out = Vec::new();
        let end = Time::ZERO + window;
        let w = window.as_nanos() as u64;
        let at = |rng: &mut Rng, lo: u64, hi: u64| Time(rng.range(lo, hi.max(lo + 1)));
        if self.partitions && nodes >= 2 {
            for _ in 0..rng.range(1, 3) {
                let start = at(rng, 0, w * 3 / 4);
                let heal = at(rng, start.0 + w / 20, w);
                let mut order: Vec<usize> = (0..nodes).collect();
                rng.shuffle(&mut order);
                let cut = 1 + rng.index(nodes - 1);
                let (a, b) = order.split_at(cut);
                let mut components = vec![a.to_vec(), b.to_vec()];
                if nodes >= 5 && rng.chance(0.3) {
                    // Sometimes three ways.
                    let half = components[1].len() / 2;
                    let c = components[1].split_off(half);
                    components.push(c);
                }
                for c in &mut components {
                    c.sort_unstable();
                }
                out.push((start, Fault::Partition(components)));
                out.push((heal.min(end), Fault::Heal));
            }
        }
        if self.oneway && nodes >= 2 {
            let from = rng.index(nodes);
            let to = (from + 1 + rng.index(nodes - 1)) % nodes;
            let start = at(rng, 0, w * 3 / 4);
            out.push((start, Fault::LinkDown { from, to }));
            out.push((at(rng, start.0 + w / 20, w), Fault::LinkUp { from, to }));
        }
        if self.pauses {
            for _ in 0..rng.range(1, 3) {
                let node = rng.index(nodes);
                let start = at(rng, 0, w * 3 / 4);
                let pause = Duration::from_nanos(rng.range(w / 50, (w - start.0).max(w / 50 + 1)));
                out.push((start, Fault::Pause { node, pause }));
            }
        }
        // At most a minority is ever down or gone, so a majority can always go on.
        let max_down = (nodes - 1) / 2;
        let mut victims: Vec<usize> = (0..nodes).collect();
        if self.crashes || self.leaves {
            rng.shuffle(&mut victims);
        }
        let mut victims = victims.into_iter();
        let mut budget = max_down;
        if self.leaves && budget > 0 {
            budget -= 1;
            if let Some(node) = victims.next() {
                out.push((at(rng, 0, w * 3 / 4), Fault::Leave(node)));
            }
        }
        if self.crashes && budget > 0 {
            for node in victims.take(rng.range(1, budget as u64 + 1) as usize) {
                let crash = at(rng, 0, w * 3 / 4);
                out.push((crash, Fault::Crash(node)));
                if self.restarts && rng.chance(0.7) {
                    out.push((at(rng, crash.0 + w / 20, w), Fault::Restart(node)));
                }
            }
        }
        // Stable order: by time, then as drawn.
        out.sort_by_key(|(t, _)| *t);
        out
    }
}
