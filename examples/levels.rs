//! What a service level promises, shown with the simulator: five members cast at the `fifo`
//! level, and they deliver each other's casts in different orders; at the `total` level, in
//! one order. The checker then judges each run against every guarantee.
//!
//! `cargo run --release --example levels`; the book's "Service levels" walks through it.

use std::collections::BTreeMap;

use horus::core::check::check;
use horus::core::history::{Event, History, MsgId};
use horus::core::sim::{simulate, LinkModel, SimConfig, Traffic};
use horus::Level;

fn main() {
    for level in [Level::Fifo, Level::Total] {
        let (pairs, disagreements, violations) = run(level, 1);
        println!(
            "{level}: {disagreements} of {pairs} pairs of casts delivered in different orders \
             by two members; the checker found {violations} violations"
        );
    }
}

// ANCHOR: simulate
/// Simulates five members of the default stack, each casting 20 messages at `level` over a
/// network that loses, duplicates and reorders datagrams; returns how many pairs of casts two
/// members both delivered, how many of those pairs they delivered in different orders, and
/// the checker's violations.
fn run(level: Level, seed: u64) -> (usize, usize, usize) {
    let plan = horus::processes(horus::registry().plan("vsync").expect("the default stack"));
    let config = SimConfig {
        seed,
        link: LinkModel { loss: 0.05, dup: 0.02, reorder: 0.1, ..LinkModel::default() },
        traffic: Traffic { msgs: 20, levels: vec![level], ..Traffic::default() },
        ..SimConfig::default()
    };
    let run = simulate(&*plan, &config).expect("the simulation runs");
    let report = check(&run.history, &run.promises);
    let (pairs, disagreements) = order_disagreements(&run.history);
    (pairs, disagreements, report.violations.len())
}
// ANCHOR_END: simulate

// ANCHOR: orders
/// Over every two members, and every two casts both delivered: how many such pairs there
/// are, and in how many the two members delivered the casts in different orders.
fn order_disagreements(history: &History) -> (usize, usize) {
    // Each member's position of each cast it delivered.
    let positions: Vec<BTreeMap<MsgId, usize>> = history
        .procs
        .values()
        .map(|p| {
            let delivered = p.events.iter().filter_map(|(_, ev)| match ev {
                Event::Deliver { id, .. } => Some(*id),
                _ => None,
            });
            delivered.enumerate().map(|(i, id)| (id, i)).collect()
        })
        .collect();
    let (mut pairs, mut disagreements) = (0, 0);
    for (i, a) in positions.iter().enumerate() {
        for b in &positions[i + 1..] {
            let both: Vec<MsgId> = a.keys().filter(|m| b.contains_key(*m)).copied().collect();
            for (j, m) in both.iter().enumerate() {
                for n in &both[j + 1..] {
                    pairs += 1;
                    if (a[m] < a[n]) != (b[m] < b[n]) {
                        disagreements += 1;
                    }
                }
            }
        }
    }
    (pairs, disagreements)
}
// ANCHOR_END: orders

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_lets_members_disagree_on_order_and_total_does_not() {
        let fifo: usize = (0..5).map(|seed| run(Level::Fifo, seed).1).sum();
        assert!(fifo > 0, "five runs at fifo and every member delivered in one order");
        for seed in 0..5 {
            let (pairs, disagreements, violations) = run(Level::Total, seed);
            assert!(pairs > 0);
            assert_eq!((disagreements, violations), (0, 0), "seed {seed}");
        }
        for seed in 0..5 {
            assert_eq!(run(Level::Fifo, seed).2, 0, "fifo keeps its own promises, seed {seed}");
        }
    }
}
