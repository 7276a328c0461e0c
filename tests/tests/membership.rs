//! The default stack, `vsync`: members that crash are removed by view changes that keep
//! virtual synchrony, at every service level.

use std::time::Duration;

use horus_core::sim::{Fault, FaultConfig, LinkModel, SimConfig, Traffic};
use horus_core::Time;
use horus_tests::{assert_no_failures, lossy_link, run_seeds, seeds};

fn config() -> SimConfig {
    SimConfig {
        nodes: 5,
        link: lossy_link(LinkModel::default().jitter),
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
fn every_fault_at_once_crashes_rejoins_leaves_pauses_partitions_and_one_way_links() {
    let plan = horus::processes(horus::registry().plan("vsync").unwrap());
    let config = SimConfig { faults: FaultConfig::all(), ..config() };
    let failures = run_seeds(&*plan, &config, 600..600 + seeds(100), |_| {});
    assert_no_failures(
        &failures,
        "horus sim --stack vsync --loss 0.05 --dup 0.02 --reorder 0.1 --msgs 30 --sends 10 --size 1..4k --settle 4s --crashes --partitions --pauses --oneway --leaves --joins",
    );
}

#[test]
fn a_leaving_member_is_removed_without_waiting_for_suspicion() {
    let plan = horus::processes(horus::registry().plan("vsync").unwrap());
    // Node 2 leaves at 500ms; the suspicion timeout (300ms) would install the next view after
    // 800ms at the earliest. The change itself takes a few round trips, each of which may wait
    // for a retransmission under 5% loss.
    let config = SimConfig { script: vec![(Time::from_millis(500), Fault::Leave(2))], ..config() };
    let failures = run_seeds(&*plan, &config, 800..800 + seeds(20), |out| {
        for (e, p) in &out.history.procs {
            if e.node == 2 {
                continue;
            }
            let second_view = p
                .events
                .iter()
                .filter(|(_, ev)| matches!(ev, horus_core::Event::View { .. }))
                .nth(1);
            let at = second_view.map(|(t, _)| *t).unwrap_or(Time::MAX);
            assert!(
                at < Time::from_millis(750),
                "seed {}: {e} installed the next view at {at}",
                out.seed
            );
        }
    });
    assert_no_failures(&failures, "horus sim --stack vsync --loss 0.05 --dup 0.02 --reorder 0.1");
}

#[test]
fn a_crashed_member_rejoins_as_a_new_incarnation() {
    let plan = horus::processes(horus::registry().plan("vsync").unwrap());
    let config = SimConfig {
        script: vec![
            (Time::from_millis(400), Fault::Crash(1)),
            (Time::from_millis(900), Fault::Restart(1)),
        ],
        ..config()
    };
    let failures = run_seeds(&*plan, &config, 900..900 + seeds(30), |out| {
        // The new incarnation is in the last view of every live process (liveness checks that
        // too); here: it joined, and cast in its views.
        let p1 = &out.history.procs[&horus_core::Endpoint::new(1, 1)];
        assert!(
            p1.events.iter().any(|(_, e)| matches!(e, horus_core::Event::View { .. })),
            "seed {}",
            out.seed
        );
        assert!(
            p1.events.iter().any(|(_, e)| matches!(e, horus_core::Event::Cast { .. })),
            "seed {}",
            out.seed
        );
    });
    assert_no_failures(&failures, "horus sim --stack vsync --loss 0.05 --dup 0.02 --reorder 0.1");
}

#[test]
fn concurrent_first_joiners_found_one_group() {
    let plan = horus::processes(horus::registry().plan("vsync").unwrap());
    let config = SimConfig { founding: true, ..config() };
    let failures = run_seeds(&*plan, &config, 3000..3000 + seeds(100), |out| {
        // One founder: exactly one view made from no other.
        let founded: std::collections::BTreeSet<_> = out
            .history
            .procs
            .values()
            .flat_map(|p| &p.events)
            .filter_map(|(_, ev)| match ev {
                horus_core::Event::View { view, .. } if view.prev.is_empty() => Some(view.id),
                _ => None,
            })
            .collect();
        assert_eq!(founded.len(), 1, "seed {}: founded {founded:?}", out.seed);
    });
    assert_no_failures(&failures, "horus sim --stack vsync --loss 0.05 --dup 0.02 --reorder 0.1 --msgs 30 --sends 10 --size 1..4k --settle 4s --founding");
}
