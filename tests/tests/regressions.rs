//! Seeds that once failed, replayed exactly: each configuration is the one `horus sim` builds
//! from the flags in the test's comment.

use std::time::Duration;

use horus_core::check::check;
use horus_core::sim::{simulate, FaultConfig, LinkModel, SimConfig, Traffic};
use horus_tests::lossy_link;

/// `horus sim --stack vsync --loss 0.05 --dup 0.02 --reorder 0.1 --sends 0 --crashes --pauses --msgs 30`
fn crashes_and_pauses(seed: u64) -> SimConfig {
    SimConfig {
        nodes: 5,
        seed,
        link: lossy_link(Duration::from_micros(50)),
        faults: FaultConfig { crashes: true, pauses: true, ..FaultConfig::default() },
        traffic: Traffic { msgs: 30, sends: 0, min_size: 1, max_size: 1024, ..Traffic::default() },
        ..SimConfig::default()
    }
}

fn assert_clean(config: &SimConfig) {
    let plan = horus::processes(horus::registry().plan("vsync").unwrap());
    let out = simulate(&*plan, config).unwrap();
    let report = check(&out.history, &out.promises);
    assert!(report.is_ok(), "seed {}:\n{report}", config.seed);
}

/// The sequencer, paused and excluded, delivered safe casts in the order of an announcement no
/// survivor received (fixed: a safe cast waits for a stable place in the order).
#[test]
fn seed_20_excluded_sequencer_orders_safe_casts_alone() {
    assert_clean(&crashes_and_pauses(20));
}

#[test]
fn seed_32_excluded_sequencer_orders_safe_casts_alone() {
    assert_clean(&crashes_and_pauses(32));
}

/// A coordinator paused mid-change came back to install a view concurrent with its
/// successor's (fixed: a view is installed only once every survivor has flushed, and
/// replaced stacks linger to retransmit).
#[test]
fn seed_47_paused_coordinator_installs_a_concurrent_view() {
    assert_clean(&crashes_and_pauses(47));
}

/// `horus sim --stack vsync --loss 0.2 --dup 0.05 --reorder 0.3 --crashes --joins --leaves
/// --pauses --partitions --oneway --msgs 40 --sends 10`, seed 128: the coordinator, finishing
/// a round that admits a joiner, asks to leave; its successor takes over, and the old
/// coordinator and the joiner install a second view of the same ltime (fixed: a view is
/// prepared by every survivor before it is committed, and a coordinator that takes over adopts
/// a prepared view).
#[test]
fn seed_128_a_leaving_coordinator_installs_a_concurrent_view() {
    let config = SimConfig {
        nodes: 5,
        seed: 128,
        link: LinkModel {
            loss: 0.2,
            dup: 0.05,
            reorder: 0.3,
            latency: Duration::from_micros(50),
            jitter: Duration::from_micros(50),
            ..LinkModel::default()
        },
        faults: FaultConfig::all(),
        traffic: Traffic { msgs: 40, sends: 10, min_size: 1, max_size: 1024, ..Traffic::default() },
        ..SimConfig::default()
    };
    assert_clean(&config);
}

/// `horus sim --nodes 9 --stack vsync --loss 0.05 --dup 0.02 --reorder 0.1 --crashes --joins
/// --leaves --pauses --partitions --oneway`, seed 447: the coordinator committed a view without
/// a member that was leaving, and was cut off; its successor, finding that member among the
/// survivors, did not adopt the view and installed a second one of the same ltime (fixed: a
/// prepared view is adopted whatever it holds).
#[test]
fn seed_447_a_successor_adopts_a_view_without_a_leaver() {
    assert_clean_as_the_cli_runs("vsync", 9, 447);
}

/// `horus sim --stack evs --nodes 7 --loss 0.05 --dup 0.02 --reorder 0.1 --crashes --joins
/// --leaves --pauses --partitions --oneway`, seed 3: a partition split a view change in two
/// rounds, each led by a coordinator the other side had failed; once healed, each side waited
/// forever for a member whose layers refused its messages (fixed: a round that waits past
/// `round_timeout` suspects the survivors it waits for).
#[test]
fn seed_3_evs_two_rounds_of_one_view_wait_for_each_other() {
    assert_clean_as_the_cli_runs("evs", 7, 3);
}

/// The run `horus sim --stack STACK --nodes N --seed S --loss 0.05 --dup 0.02 --reorder 0.1
/// --crashes --joins --leaves --pauses --partitions --oneway` makes (with the CLI's defaults:
/// sends, and state transfer of a 1 KiB state), checked.
fn assert_clean_as_the_cli_runs(stack: &str, nodes: usize, seed: u64) {
    let config = SimConfig {
        nodes,
        seed,
        link: lossy_link(Duration::from_micros(50)),
        faults: FaultConfig::all(),
        traffic: Traffic { sends: 5, state_size: 1 << 10, ..Traffic::default() },
        ..SimConfig::default()
    };
    let plan = horus::gms::GroupPlan::new(horus::registry().plan(stack).unwrap())
        .with_state_transfer(true);
    let out = simulate(&plan, &config).unwrap();
    let report = check(&out.history, &out.promises);
    assert!(report.is_ok(), "seed {}:\n{report}", config.seed);
}
