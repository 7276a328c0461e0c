//! The `reliable` stack in a static group of five, over a faulty network.

use std::time::Duration;

use horus_core::sim::{FaultConfig, SimConfig, Traffic};
use horus_tests::{assert_no_failures, lossy_link, run_seeds, seeds};

fn lossy() -> SimConfig {
    SimConfig {
        nodes: 5,
        link: lossy_link(Duration::from_micros(200)),
        traffic: Traffic {
            msgs: 20,
            sends: 10,
            min_size: 1,
            max_size: 1 << 20,
            ..Traffic::default()
        },
        ..SimConfig::default()
    }
}

#[test]
fn every_member_delivers_every_cast_once_in_order_under_loss_duplication_and_reordering() {
    let plan = horus::registry().plan("reliable").unwrap();
    let failures = run_seeds(&plan, &lossy(), 0..seeds(200), |out| {
        // Liveness is checked too: with a static group and no crash, all five deliver all.
        assert_eq!(out.stats.deliveries, 5 * out.stats.casts, "seed {}", out.seed);
        assert_eq!(out.stats.send_deliveries, out.stats.sends, "seed {}", out.seed);
    });
    assert_no_failures(
        &failures,
        "horus sim --stack reliable --loss 0.05 --dup 0.02 --reorder 0.1 --jitter 200us --size 1..1M --sends 10",
    );
}

#[test]
fn partitions_pauses_and_one_way_failures_heal_without_loss() {
    let plan = horus::registry().plan("reliable").unwrap();
    let config = SimConfig {
        faults: FaultConfig {
            partitions: true,
            pauses: true,
            oneway: true,
            ..FaultConfig::default()
        },
        traffic: Traffic { max_size: 64 << 10, ..lossy().traffic },
        ..lossy()
    };
    let failures = run_seeds(&plan, &config, 1000..1000 + seeds(100), |_| {});
    assert_no_failures(
        &failures,
        "horus sim --stack reliable --loss 0.05 --dup 0.02 --reorder 0.1 --jitter 200us --size 1..64k --sends 10 --partitions --pauses --oneway",
    );
}

#[test]
fn every_buffer_empties_once_the_traffic_stops() {
    let plan = horus::registry().plan("reliable").unwrap();
    run_seeds(&plan, &lossy(), 0..seeds(20), |out| {
        let c = &out.stats.counters;
        let get = |layer, name| {
            c.get(&(layer, name)).copied().unwrap_or_else(|| panic!("no counter {layer}.{name}"))
        };
        // Stability freed every retransmission buffer; acknowledgements emptied pt2pt's;
        // flow holds nothing; stable sees nothing unstable.
        assert_eq!(get("mnak", "buffered"), 0, "seed {}", out.seed);
        assert_eq!(get("pt2pt", "unacked"), 0, "seed {}", out.seed);
        assert_eq!(get("flow", "held_bytes"), 0, "seed {}", out.seed);
        assert_eq!(get("stable", "unstable"), 0, "seed {}", out.seed);
        // The test saw the machinery at work, not an idle network.
        assert!(get("mnak", "retrans_received") > 0, "seed {}", out.seed);
        assert!(get("frag", "fragmented") > 0, "seed {}", out.seed);
        assert!(get("pt2pt", "retrans") > 0, "seed {}", out.seed);
    });
}
