//! The partitionable policy, `evs` (extended virtual synchrony): each side of a partition goes
//! on in a view of its own, and when the network heals the views merge.

use std::time::Duration;

use horus_core::history::Event;
use horus_core::sim::{Fault, FaultConfig, SimConfig, Traffic};
use horus_core::Time;
use horus_tests::{assert_no_failures, lossy_link, run_seeds, seeds};

fn config() -> SimConfig {
    SimConfig {
        nodes: 5,
        link: lossy_link(Duration::from_micros(50)),
        traffic: Traffic { msgs: 30, sends: 10, max_size: 4 << 10, ..Traffic::default() },
        settle: Duration::from_secs(4),
        ..SimConfig::default()
    }
}

#[test]
fn both_sides_of_a_partition_go_on_and_merge_when_it_heals() {
    let plan = horus::processes(horus::registry().plan("evs").unwrap());
    let config = SimConfig {
        script: vec![
            (Time::from_millis(300), Fault::Partition(vec![vec![0, 1], vec![2, 3, 4]])),
            (Time::from_millis(1200), Fault::Heal),
        ],
        ..config()
    };
    let failures = run_seeds(&*plan, &config, 0..seeds(30), |out| {
        for (e, p) in &out.history.procs {
            let views: Vec<_> = p
                .events
                .iter()
                .filter_map(|(_, ev)| match ev {
                    Event::View { view, .. } => Some(view),
                    _ => None,
                })
                .collect();
            // The minority went on too: a view of its side alone, not an exit.
            let side: &[u64] = if e.node < 2 { &[0, 1] } else { &[2, 3, 4] };
            assert!(
                views.iter().any(|v| v.members.iter().all(|m| side.contains(&m.node))
                    && v.members.len() == side.len()),
                "seed {}: {e} never had a view of its side: {views:?}",
                out.seed
            );
            // And the last view merged both sides, naming two views it was made from.
            let last = views.last().expect("a view");
            assert_eq!(last.members.len(), 5, "seed {}: {e} ended in {last:?}", out.seed);
            assert!(
                views.iter().any(|v| v.prev.len() == 2),
                "seed {}: {e} installed no merged view",
                out.seed
            );
        }
    });
    assert_no_failures(&failures, "horus sim --stack evs --loss 0.05 --dup 0.02 --reorder 0.1 --msgs 30 --sends 10 --size 1..4k --settle 4s");
}

#[test]
fn every_fault_at_once_with_partitions_that_heal() {
    let plan = horus::processes(horus::registry().plan("evs").unwrap());
    let config = SimConfig { faults: FaultConfig::all(), ..config() };
    let failures = run_seeds(&*plan, &config, 1000..1000 + seeds(200), |_| {});
    assert_no_failures(
        &failures,
        "horus sim --stack evs --loss 0.05 --dup 0.02 --reorder 0.1 --msgs 30 --sends 10 --size 1..4k --settle 4s --crashes --joins --leaves --pauses --partitions --oneway",
    );
}
