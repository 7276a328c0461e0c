//! The default stack, `vsync`: members that crash are removed by view changes that keep
//! virtual synchrony, at every service level.

use std::time::Duration;

use horus_core::sim::{Fault, FaultConfig, LinkModel, SimConfig, Traffic};
use horus_core::Time;
use horus_tests::{assert_no_failures, run_seeds, seeds};

fn config() -> SimConfig {
    SimConfig {
        nodes: 5,
        link: LinkModel { loss: 0.05, dup: 0.02, reorder: 0.1, ..LinkModel::default() },
        traffic: Traffic { msgs: 30, sends: 10, max_size: 4 << 10, ..Traffic::default() },
        settle: Duration::from_secs(4),
        ..SimConfig::default()
    }
}

#[test]
fn a_crashed_member_is_removed_and_the_survivors_agree() {
    let plan = horus::processes(horus::registry().plan("vsync").unwrap());
    let config = SimConfig { script: vec![(Time::from_millis(700), Fault::Crash(3))], ..config() };
    let failures = run_seeds(&*plan, &config, 0..seeds(50), |out| {
        // Summed over the four survivors: the first view and the one without node 3.
        let views = out.stats.counters.get(&("member", "views")).copied().unwrap_or(0);
        assert_eq!(views, 4 * 2, "seed {}: each survivor changed view once", out.seed);
    });
    assert_no_failures(&failures, "horus sim --stack vsync --loss 0.05 --dup 0.02 --reorder 0.1 --msgs 30 --sends 10 --size 1..4k --settle 4s");
}

#[test]
fn the_coordinator_and_another_member_crash() {
    let plan = horus::processes(horus::registry().plan("vsync").unwrap());
    let config = SimConfig {
        script: vec![
            (Time::from_millis(600), Fault::Crash(0)),
            (Time::from_millis(900), Fault::Crash(2)),
        ],
        ..config()
    };
    let failures = run_seeds(&*plan, &config, 100..100 + seeds(50), |_| {});
    assert_no_failures(&failures, "horus sim --stack vsync --loss 0.05 --dup 0.02 --reorder 0.1 --msgs 30 --sends 10 --size 1..4k --settle 4s");
}

#[test]
fn random_crashes_of_a_minority() {
    let plan = horus::processes(horus::registry().plan("vsync").unwrap());
    let config =
        SimConfig { faults: FaultConfig { crashes: true, ..FaultConfig::default() }, ..config() };
    let failures = run_seeds(&*plan, &config, 200..200 + seeds(100), |_| {});
    assert_no_failures(
        &failures,
        "horus sim --stack vsync --loss 0.05 --dup 0.02 --reorder 0.1 --msgs 30 --sends 10 --size 1..4k --settle 4s --crashes",
    );
}

#[test]
fn a_partitioned_minority_leaves_and_the_majority_goes_on() {
    let plan = horus::processes(horus::registry().plan("vsync").unwrap());
    let config = SimConfig {
        faults: FaultConfig { crashes: true, partitions: true, ..FaultConfig::default() },
        ..config()
    };
    let failures = run_seeds(&*plan, &config, 400..400 + seeds(100), |_| {});
    assert_no_failures(
        &failures,
        "horus sim --stack vsync --loss 0.05 --dup 0.02 --reorder 0.1 --msgs 30 --sends 10 --size 1..4k --settle 4s --crashes --partitions",
    );
}

#[test]
fn every_fault_at_once_crashes_pauses_partitions_and_one_way_links() {
    let plan = horus::processes(horus::registry().plan("vsync").unwrap());
    let config = SimConfig {
        faults: FaultConfig {
            crashes: true,
            partitions: true,
            pauses: true,
            oneway: true,
            restarts: false,
        },
        ..config()
    };
    let failures = run_seeds(&*plan, &config, 600..600 + seeds(100), |_| {});
    assert_no_failures(
        &failures,
        "horus sim --stack vsync --loss 0.05 --dup 0.02 --reorder 0.1 --msgs 30 --sends 10 --size 1..4k --settle 4s --crashes --partitions --pauses --oneway",
    );
}
