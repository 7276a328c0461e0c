//! The `ordered` stack in a static group of five: every service level, mixed, over a faulty
//! network.

use std::time::Duration;

use horus_core::sim::{FaultConfig, SimConfig, Traffic};
use horus_tests::{assert_no_failures, lossy_link, run_seeds, seeds};

fn lossy() -> SimConfig {
    SimConfig {
        nodes: 5,
        link: lossy_link(Duration::from_micros(200)),
        // Levels: every one the stack offers, drawn at random per cast.
        traffic: Traffic {
            msgs: 30,
            sends: 5,
            min_size: 1,
            max_size: 16 << 10,
            ..Traffic::default()
        },
        ..SimConfig::default()
    }
}

#[test]
fn every_level_keeps_its_promise_under_loss_duplication_and_reordering() {
    let plan = horus::registry().plan("ordered").unwrap();
    let failures = run_seeds(&plan, &lossy(), 0..seeds(200), |out| {
        assert_eq!(out.stats.deliveries, 5 * out.stats.casts, "seed {}", out.seed);
        for (layer, gauge) in
            [("total", "held"), ("causal", "held"), ("safe", "held"), ("mnak", "buffered")]
        {
            let v = out.stats.counters.get(&(layer, gauge)).copied();
            assert_eq!(v, Some(0), "seed {}: {layer}.{gauge} at the end", out.seed);
        }
    });
    assert_no_failures(
        &failures,
        "horus sim --stack ordered --loss 0.05 --dup 0.02 --reorder 0.1 --jitter 200us --msgs 30 --size 1..16k",
    );
}

#[test]
fn every_level_survives_partitions_pauses_and_one_way_failures() {
    let plan = horus::registry().plan("ordered").unwrap();
    let config = SimConfig {
        faults: FaultConfig {
            partitions: true,
            pauses: true,
            oneway: true,
            ..FaultConfig::default()
        },
        ..lossy()
    };
    let failures = run_seeds(&plan, &config, 2000..2000 + seeds(100), |_| {});
    assert_no_failures(
        &failures,
        "horus sim --stack ordered --loss 0.05 --dup 0.02 --reorder 0.1 --jitter 200us --msgs 30 --size 1..16k --partitions --pauses --oneway",
    );
}
