//! The simulator: determinism, and faults doing what they say.

use std::time::Duration;

use horus_core::history::Event;
use horus_core::sim::{simulate, Fault, FaultConfig, LinkModel, SimConfig, SimError, Traffic};
use horus_core::{Level, Registry, StackPlan, Time};

fn none() -> StackPlan {
    Registry::new().plan("none").unwrap()
}

fn faulty(seed: u64) -> SimConfig {
    SimConfig {
        nodes: 5,
        seed,
        link: LinkModel { loss: 0.05, dup: 0.02, reorder: 0.1, ..LinkModel::default() },
        faults: FaultConfig {
            partitions: true,
            crashes: true,
            pauses: true,
            oneway: true,
            leaves: true,
            restarts: false,
        },
        trace: true,
        ..SimConfig::default()
    }
}

#[test]
fn same_seed_gives_the_same_history_and_trace() {
    for seed in [0, 1, 42, 4711] {
        let a = simulate(&none(), &faulty(seed)).unwrap();
        let b = simulate(&none(), &faulty(seed)).unwrap();
        assert_eq!(a.history, b.history, "seed {seed}");
        assert_eq!(a.trace, b.trace, "seed {seed}");
        assert_eq!(a.scenario, b.scenario, "seed {seed}");
        assert!(!a.trace.is_empty());
    }
}

#[test]
fn different_seeds_give_different_runs() {
    let a = simulate(&none(), &faulty(1)).unwrap();
    let b = simulate(&none(), &faulty(2)).unwrap();
    assert_ne!(a.history, b.history);
}

#[test]
fn without_faults_best_effort_reaches_everyone() {
    let out = simulate(&none(), &SimConfig { nodes: 4, seed: 3, ..SimConfig::default() }).unwrap();
    assert_eq!(out.stats.casts, 4 * 20);
    assert_eq!(out.stats.deliveries, 4 * out.stats.casts);
    assert_eq!(out.stats.corrupt, 0);
}

#[test]
fn loss_drops_datagrams_at_the_configured_rate() {
    let config = SimConfig {
        link: LinkModel { loss: 0.2, ..LinkModel::default() },
        traffic: Traffic { msgs: 200, ..Traffic::default() },
        ..SimConfig::default()
    };
    let out = simulate(&none(), &config).unwrap();
    let rate = out.stats.dropped_loss as f64 / out.stats.datagrams as f64;
    assert!((0.17..0.23).contains(&rate), "{rate}");
    // Each lost datagram is one delivery fewer.
    assert_eq!(out.stats.deliveries, 5 * out.stats.casts - out.stats.dropped_loss);
}

#[test]
fn a_partition_cuts_traffic_between_its_sides_until_healed() {
    let config = SimConfig {
        nodes: 4,
        script: vec![
            (Time::ZERO, Fault::Partition(vec![vec![0, 1], vec![2, 3]])),
            (Time::from_millis(1000), Fault::Heal),
        ],
        fault_window: Duration::from_secs(2),
        ..SimConfig::default()
    };
    let out = simulate(&none(), &config).unwrap();
    assert!(out.stats.dropped_partition > 0);
    // Nothing cast by n0 before the heal reaches n2.
    let n0 = horus_core::Endpoint::new(0, 0);
    let n2 = horus_core::Endpoint::new(2, 0);
    let cast_at: std::collections::HashMap<_, _> = out.history.procs[&n0]
        .events
        .iter()
        .filter_map(|(t, e)| match e {
            Event::Cast { id, .. } => Some((*id, *t)),
            _ => None,
        })
        .collect();
    for (_, e) in &out.history.procs[&n2].events {
        if let Event::Deliver { id, .. } = e {
            if let Some(t) = cast_at.get(id) {
                assert!(*t >= Time::from_millis(1000), "{id} crossed the partition");
            }
        }
    }
}

#[test]
fn a_crashed_process_records_nothing_after_its_crash() {
    let config = SimConfig {
        script: vec![(Time::from_millis(300), Fault::Crash(2))],
        ..SimConfig::default()
    };
    let out = simulate(&none(), &config).unwrap();
    let p = &out.history.procs[&horus_core::Endpoint::new(2, 0)];
    assert!(matches!(p.events.last(), Some((t, Event::Crash)) if *t == Time::from_millis(300)));
    assert!(out.stats.dropped_dead > 0);
}

#[test]
fn a_paused_process_handles_its_queued_datagrams_when_it_resumes() {
    let pause_end = Time::from_millis(1500);
    let config = SimConfig {
        script: vec![(
            Time::from_millis(500),
            Fault::Pause { node: 1, pause: Duration::from_millis(1000) },
        )],
        ..SimConfig::default()
    };
    let out = simulate(&none(), &config).unwrap();
    let p = &out.history.procs[&horus_core::Endpoint::new(1, 0)];
    let during =
        p.events.iter().filter(|(t, _)| *t > Time::from_millis(500) && *t < pause_end).count();
    assert_eq!(during, 0, "a paused process does nothing");
    let at_resume = p
        .events
        .iter()
        .filter(|(t, e)| *t == pause_end && matches!(e, Event::Deliver { .. }))
        .count();
    assert!(at_resume > 0, "what arrived during the pause is delivered at the resume");
    // Nothing was lost: without loss everyone still gets everything.
    assert_eq!(out.stats.deliveries, 5 * out.stats.casts);
}

#[test]
fn a_one_way_link_failure_drops_one_direction_only() {
    let config = SimConfig {
        nodes: 2,
        script: vec![(Time::ZERO, Fault::LinkDown { from: 0, to: 1 })],
        ..SimConfig::default()
    };
    let out = simulate(&none(), &config).unwrap();
    assert_eq!(out.stats.dropped_link, 20);
    // n1 got nothing from n0, n0 got all of n1's.
    assert_eq!(out.stats.deliveries, 20 + 20 + 20);
}

#[test]
fn levels_the_stack_lacks_are_refused() {
    let config = SimConfig {
        traffic: Traffic { levels: vec![Level::Total], ..Traffic::default() },
        ..SimConfig::default()
    };
    let err = simulate(&none(), &config).unwrap_err();
    assert!(matches!(err, SimError::LevelNotOffered { level: Level::Total, .. }));
    assert!(err.to_string().contains("best effort only"), "{err}");
}

#[test]
fn restarts_without_membership_are_refused() {
    let config = SimConfig {
        faults: FaultConfig { crashes: true, restarts: true, ..FaultConfig::default() },
        ..SimConfig::default()
    };
    assert!(matches!(simulate(&none(), &config), Err(SimError::RestartsNeedMembership(_))));
}

#[test]
fn drawn_scenarios_keep_a_majority_up_and_end_whole() {
    let cfg = FaultConfig {
        partitions: true,
        crashes: true,
        pauses: true,
        oneway: true,
        leaves: true,
        restarts: false,
    };
    for seed in 0..200 {
        let mut rng = horus_core::Rng::new(seed);
        let window = Duration::from_secs(2);
        let s = cfg.draw(7, window, &mut rng);
        let gone = s.iter().filter(|(_, f)| matches!(f, Fault::Crash(_) | Fault::Leave(_))).count();
        assert!(gone <= 3, "seed {seed}: {gone} crashes and leaves of 7");
        for (t, f) in &s {
            assert!(*t <= Time::ZERO + window, "seed {seed}: {f} at {t}");
            if let Fault::Pause { pause, .. } = f {
                assert!(*t + *pause <= Time::ZERO + window, "seed {seed}: pause past the window");
            }
        }
    }
}

#[test]
fn the_checker_finds_what_best_effort_multicast_really_does_under_loss() {
    use horus_core::check::{check, Property};
    let mut found = std::collections::BTreeSet::new();
    for seed in 0..20 {
        let config = SimConfig {
            seed,
            link: LinkModel { loss: 0.05, dup: 0.02, reorder: 0.1, ..LinkModel::default() },
            ..SimConfig::default()
        };
        let out = simulate(&none(), &config).unwrap();
        found.extend(check(&out.history, &out.promises).properties());
    }
    // Lost datagrams leave gaps (FIFO) and undelivered messages (liveness); duplicated ones are
    // delivered twice. Nothing else is wrong with a static best-effort group.
    let expected = [Property::NoDuplication, Property::Fifo, Property::Liveness];
    assert_eq!(found, expected.into_iter().collect());
}

#[test]
fn on_a_clean_network_best_effort_passes_the_checker() {
    let config = SimConfig {
        link: LinkModel { jitter: Duration::ZERO, ..LinkModel::default() },
        ..SimConfig::default()
    };
    for seed in 0..20 {
        let out = simulate(&none(), &SimConfig { seed, ..config.clone() }).unwrap();
        let report = horus_core::check::check(&out.history, &out.promises);
        assert!(report.is_ok(), "seed {seed}: {report}");
    }
}

#[test]
fn point_to_point_streams_are_checked_for_order_and_completeness() {
    let sends = Traffic { sends: 30, ..Traffic::default() };
    let clean = SimConfig {
        link: LinkModel { jitter: Duration::ZERO, ..LinkModel::default() },
        traffic: sends.clone(),
        ..SimConfig::default()
    };
    let out = simulate(&none(), &clean).unwrap();
    assert_eq!(out.stats.sends, 5 * 30);
    assert_eq!(out.stats.send_deliveries, out.stats.sends);
    assert!(out.stats.send_violations.is_empty(), "{:?}", out.stats.send_violations);
    // Best effort loses and reorders: the oracle sees gaps and missing tails.
    let lossy = SimConfig {
        link: LinkModel { loss: 0.2, reorder: 0.3, ..LinkModel::default() },
        traffic: sends,
        ..SimConfig::default()
    };
    let out = simulate(&none(), &lossy).unwrap();
    let v = &out.stats.send_violations;
    assert!(v.iter().any(|s| s.contains("skipping")), "{v:?}");
    assert!(v.iter().any(|s| s.contains("never delivered sends")), "{v:?}");
}
