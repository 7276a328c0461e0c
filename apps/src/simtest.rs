//! Running an application in the simulator: the configurations its oracle is checked under,
//! and the check of the histories below it. Each app's tests (`apps/tests/sim_*.rs`) build
//! [`SimReplica`](horus::replica::SimReplica)s with a workload and an observer that records
//! what the app's oracle needs, and run them here over many seeds.

use std::collections::BTreeMap;
use std::time::Duration;

use horus::core::check::check;
use horus::core::sim::{simulate_apps, AppFactory, FaultConfig, LinkModel, SimConfig, SimOutcome};
use horus::gms::GroupPlan;
use horus::{Endpoint, ViewId};

/// The processes of `stack` (a preset or spec with `gms` on top), with state transfer.
pub fn plan(stack: &str) -> GroupPlan {
    let plan = horus::registry().plan(stack).expect("a stack the registry builds");
    GroupPlan::new(plan).with_state_transfer(true)
}

/// A run of `nodes` members with every kind of fault but one-way links: 5% loss, duplicates,
/// reordering, crashes and restarts, partitions, pauses and leaves, drawn from `seed`;
/// `turns` chances for each member's users to make a request.
pub fn faulty(seed: u64, nodes: usize, turns: usize) -> SimConfig {
    let mut config = SimConfig {
        nodes,
        seed,
        link: LinkModel { loss: 0.05, dup: 0.02, reorder: 0.1, ..LinkModel::default() },
        faults: FaultConfig { oneway: false, ..FaultConfig::all() },
        fault_window: Duration::from_secs(2),
        settle: Duration::from_secs(3),
        ..SimConfig::default()
    };
    config.traffic.msgs = turns;
    config
}

/// Runs one seed of `config` with the apps `apps` makes, and checks the histories below them
/// (the group's guarantees); `Err` names the seed and the first violations. With `TRACE` set
/// in the environment, prints the run's trace.
pub fn run(
    plan: &GroupPlan,
    config: &SimConfig,
    apps: &mut dyn AppFactory,
) -> Result<SimOutcome, String> {
    // `TRACE=1` prints the simulator's trace of every run (run one seed to read it).
    let traced;
    let config = if std::env::var_os("TRACE").is_some() {
        traced = SimConfig { trace: true, ..config.clone() };
        &traced
    } else {
        config
    };
    let out =
        simulate_apps(plan, config, apps).map_err(|e| format!("seed {}: {e}", config.seed))?;
    for line in &out.trace {
        println!("{line}");
    }
    let report = check(&out.history, &out.promises);
    if !report.is_ok() {
        return Err(format!("seed {}: the group broke its guarantees: {report}", config.seed));
    }
    if out.stats.corrupt > 0 || !out.stats.send_violations.is_empty() {
        return Err(format!(
            "seed {}: {} corrupt deliveries, sends: {:?}",
            config.seed, out.stats.corrupt, out.stats.send_violations
        ));
    }
    Ok(out)
}

/// The members alive at the end of seed `seed`, from each one's last view: they must all be in
/// one view (this panics, naming the seed, if not). `None` when nobody is left, which the
/// primary-partition policy allows: when a majority of a view is gone at once, the rest stop
/// rather than go on as a minority.
pub fn survivors(
    seed: u64,
    alive: impl IntoIterator<Item = (Endpoint, ViewId)>,
) -> Option<Vec<Endpoint>> {
    let mut by_view: BTreeMap<ViewId, Vec<Endpoint>> = BTreeMap::new();
    for (e, view) in alive {
        by_view.entry(view).or_default().push(e);
    }
    assert!(by_view.len() <= 1, "seed {seed}: the survivors end in several views: {by_view:?}");
    by_view.into_values().next()
}
