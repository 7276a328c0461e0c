//! A network partition under the two membership policies, shown with the simulator: five
//! members, split into two of them and three of them for 900 ms. With the primary-partition
//! policy (the default stack, `vsync`) the two leave the group and the three go on; with the
//! partitionable stack (`evs`) both sides go on, and their views merge when the network heals.
//! The checker judges both runs.
//!
//! `cargo run --release --example partitions`; the book's "Failures and partitions" walks
//! through it.

use std::time::Duration;

use horus::core::check::check;
use horus::core::history::{Event, History};
use horus::core::sim::{simulate, Fault, SimConfig, Traffic};
use horus::core::Time;
use horus::gms::GroupPlan;

fn main() {
    for stack in ["vsync", "evs"] {
        let (lines, violations) = split_and_heal(stack, 1);
        println!("{stack}:");
        for line in lines {
            println!("  {line}");
        }
        println!("  the checker found {violations} violations");
    }
}

// ANCHOR: simulate
/// Simulates five members of `stack`; the network splits into {n0, n1} and {n2, n3, n4} at
/// 300 ms and heals at 1200 ms. Returns what each member went through, and the checker's
/// violations. The members transfer state: the simulated application's state is a digest of
/// the casts it delivered.
fn split_and_heal(stack: &str, seed: u64) -> (Vec<String>, usize) {
    let plan = horus::registry().plan(stack).expect("a preset");
    let plan = GroupPlan::new(plan).with_state_transfer(true);
    let config = SimConfig {
        seed,
        script: vec![
            (Time::from_millis(300), Fault::Partition(vec![vec![0, 1], vec![2, 3, 4]])),
            (Time::from_millis(1200), Fault::Heal),
        ],
        traffic: Traffic { msgs: 30, ..Traffic::default() },
        settle: Duration::from_secs(3),
        ..SimConfig::default()
    };
    let run = simulate(&plan, &config).expect("the simulation runs");
    let report = check(&run.history, &run.promises);
    (story(&run.history), report.violations.len())
}
// ANCHOR_END: simulate

// ANCHOR: story
/// One line per member: the views it installed (their members' node numbers), the states it
/// was given, and whether it exited.
fn story(history: &History) -> Vec<String> {
    history
        .procs
        .values()
        .map(|p| {
            let steps: Vec<String> = p
                .events
                .iter()
                .filter_map(|(at, ev)| match ev {
                    Event::View { view, .. } => {
                        let nodes: Vec<String> =
                            view.members.iter().map(|m| m.node.to_string()).collect();
                        Some(format!("{at}: {{{}}}", nodes.join(",")))
                    }
                    Event::State { .. } => Some(format!("{at}: given the state")),
                    Event::Exit => Some(format!("{at}: exit")),
                    _ => None,
                })
                .collect();
            format!("{}  {}", p.endpoint, steps.join("  "))
        })
        .collect()
}
// ANCHOR_END: story

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minority_exits_under_vsync_and_both_sides_merge_under_evs() {
        for seed in 0..3 {
            let (lines, violations) = split_and_heal("vsync", seed);
            assert_eq!(violations, 0, "seed {seed}: {lines:#?}");
            // n0 and n1 exit; n2, n3 and n4 end in a view of their own.
            for line in &lines[..2] {
                assert!(line.ends_with("exit"), "seed {seed}: {lines:#?}");
            }
            for line in &lines[2..] {
                assert!(line.ends_with("{2,3,4}"), "seed {seed}: {lines:#?}");
            }

            let (lines, violations) = split_and_heal("evs", seed);
            assert_eq!(violations, 0, "seed {seed}: {lines:#?}");
            for line in &lines {
                assert!(line.contains("{0,1}") || line.contains("{2,3,4}"), "{lines:#?}");
                assert!(line.contains("{0,1,2,3,4}") || line.contains("{2,3,4,0,1}"), "{lines:#?}");
            }
            // One side's members are given the other side's state.
            assert!(lines.iter().any(|l| l.ends_with("given the state")), "{lines:#?}");
        }
    }
}
