//! Helpers for the simulation suites: run many seeds of a stack and collect every failure.

use std::time::Duration;

use horus_core::check::check;
use horus_core::sim::{simulate, LinkModel, SimConfig, SimOutcome};
use horus_core::Processes;

/// The faulty network the suites run on: 5% loss, 2% duplication, 10% reordering, and up to
/// `jitter` of extra delay per datagram.
pub fn lossy_link(jitter: Duration) -> LinkModel {
    LinkModel { loss: 0.05, dup: 0.02, reorder: 0.1, jitter, ..LinkModel::default() }
}

/// How many seeds a suite runs: `HORUS_SEEDS` if set (to run thousands by hand), else `default`.
pub fn seeds(default: u64) -> u64 {
    std::env::var("HORUS_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Runs `seeds` seeds of `config` over `plan` on every core; returns, per failing seed, the
/// seed and its violations, and calls `each` on every outcome (for extra assertions).
pub fn run_seeds(
    plan: &dyn Processes,
    config: &SimConfig,
    seeds: std::ops::Range<u64>,
    each: impl Fn(&SimOutcome) + Sync,
) -> Vec<(u64, Vec<String>)> {
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for j in 0..jobs {
            let (seeds, failures, each) = (seeds.clone(), &failures, &each);
            s.spawn(move || {
                for seed in seeds.filter(|s| s % jobs == j) {
                    let out = simulate(plan, &SimConfig { seed, ..config.clone() })
                        .expect("the config runs");
                    each(&out);
                    let report = check(&out.history, &out.promises);
                    let mut v: Vec<String> =
                        report.violations.iter().map(|v| v.to_string()).collect();
                    if out.stats.corrupt > 0 {
                        v.push(format!("{} corrupt payloads", out.stats.corrupt));
                    }
                    v.extend(out.stats.send_violations.iter().cloned());
                    if !v.is_empty() {
                        failures.lock().expect("no panic while held").push((seed, v));
                    }
                }
            });
        }
    });
    let mut f = failures.into_inner().expect("no panic while held");
    f.sort();
    f
}

/// Fails with the first failing seeds and how to replay them.
pub fn assert_no_failures(failures: &[(u64, Vec<String>)], replay: &str) {
    if failures.is_empty() {
        return;
    }
    let mut text = format!("{} failing seeds\n", failures.len());
    for (seed, v) in failures.iter().take(5) {
        text += &format!("seed {seed}:\n");
        for line in v.iter().take(5) {
            text += &format!("  {line}\n");
        }
        text += &format!("  replay: {replay} --seed {seed} --trace\n");
    }
    panic!("{text}");
}
