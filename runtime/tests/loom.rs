//! loom models of what a member's handle and driver share: the counters the driver publishes
//! and the handle reads, and the fault switch the handle sets and the driver follows.
//!
//! Run with:
//! `RUSTFLAGS="--cfg loom" cargo test -p horus-runtime --release --test loom`
//! (without `--cfg loom` this file is empty).

#![cfg(loom)]

use horus_core::Endpoint;
use horus_runtime::{CounterValues, Counters, FaultConfig, FaultSwitch};
use loom::sync::Arc;
use loom::thread;

/// The setting published as version `v`: every field tells `v`, so a torn one shows.
fn setting(v: u64) -> FaultConfig {
    FaultConfig { loss: v as f64 / 4.0, partitioned: vec![Endpoint::new(v, 0)], seed: v }
}

fn is_setting_of(c: &FaultConfig, v: u64) -> bool {
    if v == 0 {
        return *c == FaultConfig::none();
    }
    *c == setting(v)
}

#[test]
fn published_counters_are_never_lost_nor_seen_going_back() {
    loom::model(|| {
        let counters = Arc::new(Counters::new());
        let driver = {
            let counters = counters.clone();
            thread::spawn(move || {
                let batch = CounterValues {
                    datagrams_sent: 1,
                    bytes_sent: 100,
                    ..CounterValues::default()
                };
                counters.add(&batch);
                counters.add(&batch);
            })
        };
        let first = counters.snapshot();
        let second = counters.snapshot();
        assert!(first.datagrams_sent <= second.datagrams_sent);
        assert!(first.bytes_sent <= second.bytes_sent);
        assert!(second.datagrams_sent <= 2 && second.bytes_sent <= 200);
        driver.join().unwrap();
        let last = counters.snapshot();
        assert_eq!((last.datagrams_sent, last.bytes_sent), (2, 200));
    });
}

#[test]
fn the_driver_sees_whole_settings_in_order() {
    loom::model(|| {
        let switch = FaultSwitch::new(FaultConfig::none());
        let handle = {
            let switch = switch.clone();
            thread::spawn(move || {
                switch.set(setting(1));
                switch.set(setting(2));
            })
        };
        // The driver's refresh: a version load, then the setting only if it moved.
        let mut seen = 0;
        for _ in 0..2 {
            if switch.version() != seen {
                let (version, config) = switch.get_versioned();
                assert!(version >= seen, "the setting went back from {seen} to {version}");
                assert!(is_setting_of(&config, version), "version {version} with {config:?}");
                seen = version;
            }
        }
        handle.join().unwrap();
        assert_eq!(switch.version(), 2);
        let (version, config) = switch.get_versioned();
        assert!(version == 2 && is_setting_of(&config, 2));
    });
}

#[test]
fn concurrent_changes_apply_one_after_the_other() {
    loom::model(|| {
        let switch = FaultSwitch::new(FaultConfig { loss: 0.5, ..FaultConfig::none() });
        let e = Endpoint::new(9, 0);
        let partitioner = {
            let switch = switch.clone();
            thread::spawn(move || switch.partition([e]))
        };
        let healer = {
            let switch = switch.clone();
            thread::spawn(move || switch.heal())
        };
        partitioner.join().unwrap();
        healer.join().unwrap();
        let (version, config) = switch.get_versioned();
        assert_eq!(version, 2);
        // Healed last: nothing; partitioned last: the partition alone (the loss was healed).
        let healed_last = config == FaultConfig::none();
        let partitioned_last = config.loss == 0.0 && config.partitioned == vec![e];
        assert!(healed_last || partitioned_last, "{config:?}");
    });
}
