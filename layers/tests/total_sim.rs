//! `total` over the reliable stack in a static group of five, over a faulty network, checked
//! by the history checker; and a stand-in that only claims total order, to show the checker
//! (and so this suite) would notice a stack without it.

mod common;

use horus_core::check::check;
use horus_core::sim::{simulate, LinkModel, SimConfig, SimOutcome, Traffic};
use horus_core::{Level, Property, Props, Registry, Report, StackPlan};

const SEEDS: u64 = 100;

fn config(seed: u64, levels: Vec<Level>) -> SimConfig {
    SimConfig {
        nodes: 5,
        seed,
        link: LinkModel { loss: 0.05, dup: 0.02, reorder: 0.1, ..LinkModel::default() },
        traffic: Traffic { levels, ..Traffic::default() },
        ..SimConfig::default()
    }
}

fn run(plan: &StackPlan, seed: u64, levels: Vec<Level>) -> (Report, SimOutcome) {
    let out = simulate(plan, &config(seed, levels)).expect("the config runs");
    (check(&out.history, &out.promises), out)
}

#[test]
fn every_member_delivers_total_casts_in_one_order_under_loss_duplication_and_reordering() {
    let plan = horus_layers::registry().plan("total:causal:reliable").unwrap();
    let (mut ordered, mut announcements) = (0, 0);
    for seed in 0..SEEDS {
        let (report, out) = run(&plan, seed, vec![Level::Fifo, Level::Total]);
        assert!(report.is_ok(), "seed {seed}\n{report}");
        // A static group without crashes: all five deliver every cast.
        let s = &out.stats;
        assert_eq!(s.deliveries, 5 * s.casts, "seed {seed}");
        let counter = |name| s.counters.get(&("total", name)).copied().unwrap_or_default();
        assert_eq!(counter("held"), 0, "seed {seed}: casts left waiting for their order");
        assert_eq!(counter("bad_header"), 0, "seed {seed}");
        assert!(counter("ordered") > 0 && counter("announcements") > 0, "seed {seed}");
        ordered += counter("ordered");
        announcements += counter("announcements");
    }
    println!("{ordered} total-level deliveries ordered by {announcements} announcements");
}

#[test]
fn without_the_total_layer_members_disagree_on_the_order() {
    let mut registry: Registry = horus_layers::registry();
    registry.add_layer(common::claims("faketotal", Props::TOTAL));
    let plan = registry.plan("faketotal:reliable").unwrap();
    // Every member delivers its own casts at once, by loopback, and the others' when the
    // network brings them: concurrent casts of two senders are seen in two orders.
    let failing: Vec<u64> = (0..SEEDS)
        .filter(|&seed| {
            run(&plan, seed, vec![Level::Total]).0.properties().contains(&Property::Total)
        })
        .collect();
    println!("{} of {SEEDS} seeds had total order violations", failing.len());
    assert!(!failing.is_empty());
}
