//! `suspect` over the reliable preset, five members: a crash and a long pause are suspected by
//! every other member, and ordinary loss is never taken for a failure. The simulator ignores
//! `Up::Suspect` (it records casts, deliveries and views), so the runs are judged by the
//! layer's counters, summed over the members at the end of the run.

use std::time::Duration;

use horus_core::sim::{simulate, Fault, LinkModel, SimConfig, SimOutcome};
use horus_core::Time;

fn run(config: &SimConfig) -> SimOutcome {
    let plan = horus_layers::registry().plan("suspect:reliable").unwrap();
    simulate(&plan, config).unwrap()
}

fn counter(out: &SimOutcome, name: &'static str) -> u64 {
    out.stats.counters.get(&("suspect", name)).copied().unwrap_or(0)
}

#[test]
fn every_survivor_suspects_a_crashed_member_once() {
    let out = run(&SimConfig {
        nodes: 5,
        script: vec![(Time::from_millis(500), Fault::Crash(3))],
        ..SimConfig::default()
    });
    // The crashed member's counters are gone with it: these are the four survivors'.
    assert_eq!(counter(&out, "suspicions"), 4, "each survivor suspected one member, once");
    assert_eq!(counter(&out, "suspected"), 4, "and still suspects it at the end");
    assert_eq!(counter(&out, "bad_header"), 0);
}

#[test]
fn a_member_paused_for_a_second_is_suspected_by_the_others() {
    let pause = Duration::from_secs(1);
    let out = run(&SimConfig {
        nodes: 5,
        script: vec![(Time::from_millis(500), Fault::Pause { node: 2, pause })],
        ..SimConfig::default()
    });
    let suspicions = counter(&out, "suspicions");
    println!("pause of 1 s: {suspicions} suspicions");
    assert!(suspicions >= 4, "every other member suspected it: {suspicions}");
    // Once it resumed it was heard again, and nobody suspects anyone any more.
    assert_eq!(counter(&out, "suspected"), 0);
}

#[test]
fn ordinary_loss_is_never_taken_for_a_failure() {
    let (mut pings, mut lost) = (0, 0);
    for seed in 0..20 {
        let out = run(&SimConfig {
            nodes: 5,
            seed,
            link: LinkModel { loss: 0.05, ..LinkModel::default() },
            ..SimConfig::default()
        });
        assert_eq!(counter(&out, "suspicions"), 0, "seed {seed}: a false suspicion");
        pings += counter(&out, "pings_sent");
        lost += out.stats.dropped_loss;
    }
    println!("20 seeds at 5% loss: {pings} pings sent, {lost} datagrams lost, no suspicion");
    assert!(lost > 0);
}
