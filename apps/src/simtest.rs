//! Running an application in the simulator: the configurations its oracle is checked under,
//! and the check of the histories below it. Each app's tests (`apps/tests/sim_*.rs`) build
//! [`SimReplica`](horus::replica::SimReplica)s with a workload and an observer that records
//! what the app's oracle needs, and run them here over many seeds.

use std::time::Duration;

use horus::core::check::check;
use horus::core::sim::{simulate_apps, AppFactory, FaultConfig, LinkModel, SimConfig, SimOutcome};
use horus::gms::GroupPlan;

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
/// (the group's guarantees); `Err` names the seed and the first violations.
pub fn run(
    plan: &GroupPlan,
    config: &SimConfig,
    apps: &mut dyn AppFactory,
) -> Result<SimOutcome, String> {
    let out =
        simulate_apps(plan, config, apps).map_err(|e| format!("seed {}: {e}", config.seed))?;
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
