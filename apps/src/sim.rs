//! `horus sim`: seeded simulations, checked.

use std::fmt::Write as _;
use std::io::Write as _;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use horus_core::check::check;
use horus_core::history::Latencies;
use horus_core::sim::{simulate, FaultConfig, LinkModel, SimConfig, Traffic};
use horus_core::spec::{parse_duration, parse_size};
use horus_core::{Level, Processes};

/// Runs seeded simulations of a stack over a faulty network and checks every history.
///
/// Prints, for each failing seed, its violations and the command that replays it, then one
/// summary line. Exits with status 1 if any seed fails.
#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Number of simulated processes.
    #[arg(long, default_value_t = 5)]
    nodes: usize,
    /// The stack: a layer spec, top to bottom, `:`-separated, or a preset name (`none`,
    /// `reliable`, `ordered`, `vsync`). The default is the stack groups run: `vsync`.
    #[arg(long, default_value = "vsync")]
    stack: String,
    /// Seeds to run, as a half-open range `A..B`.
    #[arg(long, default_value = "0..100", value_parser = parse_range, conflicts_with = "seed")]
    seeds: Range<u64>,
    /// Run one seed (with --trace, to see it).
    #[arg(long)]
    seed: Option<u64>,
    /// Probability that a datagram is lost, per link.
    #[arg(long, default_value_t = 0.0, value_parser = parse_prob)]
    loss: f64,
    /// Probability that a datagram is duplicated.
    #[arg(long, default_value_t = 0.0, value_parser = parse_prob)]
    dup: f64,
    /// Probability that a datagram is held back so that later ones overtake it.
    #[arg(long, default_value_t = 0.0, value_parser = parse_prob)]
    reorder: f64,
    /// One-way network latency.
    #[arg(long, default_value = "50us", value_parser = parse_dur)]
    latency: Duration,
    /// Extra random delay per datagram, up to this much.
    #[arg(long, default_value = "50us", value_parser = parse_dur)]
    jitter: Duration,
    /// Partition the network at random and heal it.
    #[arg(long)]
    partitions: bool,
    /// Crash a minority of the processes at random times.
    #[arg(long)]
    crashes: bool,
    /// Crash node N at time T (`N@T`, e.g. `3@700ms`); repeatable.
    #[arg(long = "crash", value_parser = parse_crash)]
    crash_at: Vec<(usize, Duration)>,
    /// Restart crashed node N at time T as a new incarnation that joins (`N@T`); repeatable.
    #[arg(long = "restart", value_parser = parse_crash)]
    restart_at: Vec<(usize, Duration)>,
    /// Pause processes (as a VM or GC pause would), past timeouts.
    #[arg(long)]
    pauses: bool,
    /// Fail one direction of a link for a while.
    #[arg(long)]
    oneway: bool,
    /// Have a process leave the group.
    #[arg(long)]
    leaves: bool,
    /// Crashed processes come back as new incarnations and join (with --crashes).
    #[arg(long)]
    joins: bool,
    /// Start every process outside any view, all at once, asking to join: they must found
    /// one group, not several.
    #[arg(long)]
    founding: bool,
    /// Casts per process.
    #[arg(long, default_value_t = 20)]
    msgs: usize,
    /// Point-to-point sends per process, each to a member drawn at random.
    #[arg(long, default_value_t = 5)]
    sends: usize,
    /// Message sizes, `N` or `MIN..MAX` (drawn log-uniformly), e.g. `1..1M`.
    #[arg(long, default_value = "1..1k", value_parser = parse_sizes)]
    size: (usize, usize),
    /// Size of the application's state given to joiners (beyond its 8-byte digest), e.g. `64M`.
    #[arg(long, default_value = "1k", value_parser = parse_size_arg)]
    state_size: usize,
    /// Joiners are not given the state (with a membership stack, they are by default).
    #[arg(long)]
    no_state_transfer: bool,
    /// Service levels to cast at, comma-separated; default: every level the stack offers.
    #[arg(long, value_delimiter = ',')]
    levels: Vec<Level>,
    /// How long faults go on.
    #[arg(long, default_value = "2s", value_parser = parse_dur)]
    window: Duration,
    /// Quiet time at the end, for the stacks to finish.
    #[arg(long, default_value = "3s", value_parser = parse_dur)]
    settle: Duration,
    /// Print every event of the run in time order (with --seed).
    #[arg(long, requires = "seed")]
    trace: bool,
    /// Write the run's history as JSON lines to this file (with --seed).
    #[arg(long, requires = "seed")]
    record: Option<PathBuf>,
    /// Also report delivery latency by service level, in simulated time.
    #[arg(long)]
    report_latency: bool,
    /// Worker threads.
    #[arg(long, default_value_t = default_jobs())]
    jobs: usize,
    /// Failing seeds reported in full; the rest are counted.
    #[arg(long, default_value_t = 5)]
    max_reports: usize,
}

fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let (a, b) = s.split_once("..").ok_or("expected A..B, e.g. 0..1000")?;
    let a: u64 = a.trim().parse().map_err(|_| format!("`{a}` is not a seed"))?;
    let b: u64 = b.trim().parse().map_err(|_| format!("`{b}` is not a seed"))?;
    if b <= a {
        return Err(format!("the range {a}..{b} is empty"));
    }
    Ok(a..b)
}

fn parse_prob(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        _ => Err(format!("`{s}` is not a probability between 0 and 1")),
    }
}

fn parse_dur(s: &str) -> Result<Duration, String> {
    parse_duration(s).ok_or_else(|| format!("`{s}` is not a duration (e.g. 50us, 20ms, 2s)"))
}

fn parse_crash(s: &str) -> Result<(usize, Duration), String> {
    let (n, t) = s.split_once('@').ok_or("expected NODE@TIME, e.g. 3@700ms")?;
    let n: usize = n.trim().parse().map_err(|_| format!("`{n}` is not a node number"))?;
    Ok((n, parse_dur(t)?))
}

fn parse_size_arg(s: &str) -> Result<usize, String> {
    parse_size(s).ok_or_else(|| format!("`{s}` is not a size (e.g. 0, 64k, 64M)"))
}

fn parse_sizes(s: &str) -> Result<(usize, usize), String> {
    let size =
        |v: &str| parse_size(v).ok_or_else(|| format!("`{v}` is not a size (e.g. 100, 64k, 1M)"));
    let (lo, hi) = match s.split_once("..") {
        Some((a, b)) => (size(a)?, size(b)?),
        None => (size(s)?, size(s)?),
    };
    if lo > hi {
        return Err(format!("size range {s} is empty"));
    }
    Ok((lo, hi))
}

impl SimArgs {
    fn config(&self, seed: u64) -> SimConfig {
        SimConfig {
            nodes: self.nodes,
            seed,
            link: LinkModel {
                loss: self.loss,
                dup: self.dup,
                reorder: self.reorder,
                latency: self.latency,
                jitter: self.jitter,
                ..LinkModel::default()
            },
            faults: FaultConfig {
                partitions: self.partitions,
                crashes: self.crashes,
                restarts: self.joins,
                pauses: self.pauses,
                oneway: self.oneway,
                leaves: self.leaves,
            },
            script: self
                .crash_at
                .iter()
                .map(|&(n, t)| (horus_core::Time::ZERO + t, horus_core::sim::Fault::Crash(n)))
                .chain(self.restart_at.iter().map(|&(n, t)| {
                    (horus_core::Time::ZERO + t, horus_core::sim::Fault::Restart(n))
                }))
                .collect(),
            fault_window: self.window,
            settle: self.settle,
            founding: self.founding,
            traffic: Traffic {
                msgs: self.msgs,
                min_size: self.size.0,
                max_size: self.size.1,
                levels: self.levels.clone(),
                sends: self.sends,
                state_size: self.state_size,
                ..Traffic::default()
            },
            trace: self.trace,
            ..SimConfig::default()
        }
    }

    /// The command that replays `seed` with a trace.
    fn replay(&self, seed: u64) -> String {
        let d = SimArgs::defaults();
        let mut cmd = format!("horus sim --seed {seed} --trace --stack {}", self.stack);
        let mut opt = |name: &str, v: String, dv: String| {
            if v != dv {
                let _ = write!(cmd, " --{name} {v}");
            }
        };
        opt("nodes", self.nodes.to_string(), d.nodes.to_string());
        opt("loss", self.loss.to_string(), d.loss.to_string());
        opt("dup", self.dup.to_string(), d.dup.to_string());
        opt("reorder", self.reorder.to_string(), d.reorder.to_string());
        opt(
            "latency",
            format!("{}us", self.latency.as_micros()),
            format!("{}us", d.latency.as_micros()),
        );
        opt(
            "jitter",
            format!("{}us", self.jitter.as_micros()),
            format!("{}us", d.jitter.as_micros()),
        );
        opt("msgs", self.msgs.to_string(), d.msgs.to_string());
        opt("state-size", self.state_size.to_string(), d.state_size.to_string());
        opt("sends", self.sends.to_string(), d.sends.to_string());
        opt(
            "size",
            format!("{}..{}", self.size.0, self.size.1),
            format!("{}..{}", d.size.0, d.size.1),
        );
        opt(
            "window",
            format!("{}ms", self.window.as_millis()),
            format!("{}ms", d.window.as_millis()),
        );
        opt(
            "settle",
            format!("{}ms", self.settle.as_millis()),
            format!("{}ms", d.settle.as_millis()),
        );
        for (n, t) in &self.crash_at {
            let _ = write!(cmd, " --crash {n}@{}ms", t.as_millis());
        }
        for (n, t) in &self.restart_at {
            let _ = write!(cmd, " --restart {n}@{}ms", t.as_millis());
        }
        if !self.levels.is_empty() {
            let l: Vec<&str> = self.levels.iter().map(|l| l.as_str()).collect();
            let _ = write!(cmd, " --levels {}", l.join(","));
        }
        for (flag, on) in [
            ("partitions", self.partitions),
            ("crashes", self.crashes),
            ("pauses", self.pauses),
            ("oneway", self.oneway),
            ("leaves", self.leaves),
            ("joins", self.joins),
            ("founding", self.founding),
            ("no-state-transfer", self.no_state_transfer),
        ] {
            if on {
                let _ = write!(cmd, " --{flag}");
            }
        }
        cmd
    }

    fn defaults() -> SimArgs {
        use clap::FromArgMatches;
        let m = <SimArgs as clap::Args>::augment_args(clap::Command::new("sim"))
            .get_matches_from(["sim"]);
        SimArgs::from_arg_matches(&m).expect("the defaults parse")
    }
}

/// The result of one seed, kept only as far as the report needs.
struct SeedResult {
    seed: u64,
    latencies: Latencies,
    casts: u64,
    deliveries: u64,
    violations: Vec<String>,
}

pub fn run(args: SimArgs) -> ExitCode {
    let registry = horus::registry();
    let plan = match registry.plan(&args.stack) {
        // A membership stack gives joiners the state unless told not to.
        Ok(p) if p.gives().contains(horus::core::Props::MEMBERSHIP) => {
            Box::new(horus::gms::GroupPlan::new(p).with_state_transfer(!args.no_state_transfer))
                as Box<dyn Processes>
        }
        Ok(p) => horus::processes(p),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let plan = &*plan;
    if let Some(seed) = args.seed {
        return run_one(&args, plan, seed);
    }
    let started = Instant::now();
    let seeds = args.seeds.clone();
    let next = AtomicU64::new(seeds.start);
    let results: Mutex<Vec<SeedResult>> = Mutex::new(Vec::new());
    let error: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..args.jobs.max(1) {
            s.spawn(|| loop {
                let seed = next.fetch_add(1, Ordering::Relaxed);
                if seed >= seeds.end || error.lock().expect("no worker panics").is_some() {
                    break;
                }
                match run_seed(&args, plan, seed) {
                    Ok(r) => results.lock().expect("no worker panics").push(r),
                    Err(e) => *error.lock().expect("no worker panics") = Some(e),
                }
            });
        }
    });
    if let Some(e) = error.into_inner().expect("no worker panics") {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let wall = started.elapsed();
    let mut results = results.into_inner().expect("no worker panics");
    results.sort_by_key(|r| r.seed);
    let mut all_latencies = args.report_latency.then(|| {
        let mut all = Latencies::default();
        for r in &mut results {
            for (level, v) in std::mem::take(&mut r.latencies.samples) {
                all.samples.entry(level).or_default().extend(v);
            }
        }
        all
    });
    let failing: Vec<&SeedResult> = results.iter().filter(|r| !r.violations.is_empty()).collect();
    let mut out = std::io::stdout().lock();
    for r in failing.iter().take(args.max_reports) {
        let _ = writeln!(out, "seed {}: {} violations", r.seed, r.violations.len());
        for v in r.violations.iter().take(10) {
            let _ = writeln!(out, "  {v}");
        }
        if r.violations.len() > 10 {
            let _ = writeln!(out, "  ... and {} more", r.violations.len() - 10);
        }
        let _ = writeln!(out, "  replay: {}", args.replay(r.seed));
    }
    if failing.len() > args.max_reports {
        let rest: Vec<String> =
            failing[args.max_reports..].iter().take(20).map(|r| r.seed.to_string()).collect();
        let more = if failing.len() > args.max_reports + 20 { " ..." } else { "" };
        let _ = writeln!(
            out,
            "{} more failing seeds: {}{more}",
            failing.len() - args.max_reports,
            rest.join(" ")
        );
    }
    if let Some(all) = all_latencies.as_mut() {
        print_latencies(&mut out, all);
    }
    let deliveries: u64 = results.iter().map(|r| r.deliveries).sum();
    let casts: u64 = results.iter().map(|r| r.casts).sum();
    let violations: usize = results.iter().map(|r| r.violations.len()).sum();
    let _ = writeln!(
        out,
        "seeds={} failing_seeds={} violations={violations} casts={casts} delivered={deliveries} wall_secs={:.3} sim_deliveries_per_sec={:.0}",
        results.len(),
        failing.len(),
        wall.as_secs_f64(),
        deliveries as f64 / wall.as_secs_f64().max(1e-9),
    );
    if failing.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn run_seed(args: &SimArgs, plan: &dyn Processes, seed: u64) -> Result<SeedResult, String> {
    let out = simulate(plan, &args.config(seed)).map_err(|e| e.to_string())?;
    let report = check(&out.history, &out.promises);
    let violations = all_violations(&report, &out);

    let mut latencies = Latencies::default();
    if args.report_latency {
        latencies.add(&out.history);
    }
    Ok(SeedResult {
        latencies,
        seed,
        casts: out.stats.casts,
        deliveries: out.stats.deliveries,
        violations,
    })
}

fn print_latencies(out: &mut impl std::io::Write, l: &mut Latencies) {
    for (level, n, p50, p99, max) in l.summary() {
        let us = |ns: u64| ns as f64 / 1000.0;
        let _ = writeln!(
            out,
            "latency {level}: deliveries={n} p50_us={:.1} p99_us={:.1} max_us={:.1}",
            us(p50),
            us(p99),
            us(max)
        );
    }
}

/// The checker's violations, then what the simulator's own oracles found.
fn all_violations(report: &horus_core::Report, out: &horus_core::sim::SimOutcome) -> Vec<String> {
    let mut v: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    if out.stats.corrupt > 0 {
        v.push(format!(
            "integrity: {} delivered payloads were not what was sent",
            out.stats.corrupt
        ));
    }
    v.extend(out.stats.send_violations.iter().cloned());
    v
}

fn run_one(args: &SimArgs, plan: &dyn Processes, seed: u64) -> ExitCode {
    let out = match simulate(plan, &args.config(seed)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut stdout = std::io::stdout().lock();
    if args.trace {
        let _ = writeln!(stdout, "stack: {}  nodes: {}  seed: {seed}", plan.name(), args.nodes);
        for (t, f) in &out.scenario {
            let _ = writeln!(stdout, "scenario {t:>12}  {f}");
        }
        for line in &out.trace {
            let _ = writeln!(stdout, "{line}");
        }
        let _ = writeln!(stdout, "counters (summed over live processes):");
        for ((layer, counter), v) in &out.stats.counters {
            if *v > 0 {
                let _ = writeln!(stdout, "  {layer}.{counter} = {v}");
            }
        }
        let s = &out.stats;
        let _ = writeln!(
            stdout,
            "network: datagrams={} lost={} partitioned={} link_down={} to_dead={} duplicated={} overflow={}",
            s.datagrams, s.dropped_loss, s.dropped_partition, s.dropped_link, s.dropped_dead, s.duplicated, s.dropped_overflow
        );
    }
    if let Some(path) = &args.record {
        let written = std::fs::File::create(path).map(std::io::BufWriter::new).and_then(|mut f| {
            out.history.write_jsonl(Some(&out.promises), &mut f).and_then(|_| f.flush())
        });
        if let Err(e) = written {
            eprintln!("error: writing {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    let report = check(&out.history, &out.promises);
    let violations = all_violations(&report, &out);
    if args.report_latency {
        let mut l = Latencies::default();
        l.add(&out.history);
        print_latencies(&mut stdout, &mut l);
    }
    for v in &violations {
        let _ = writeln!(stdout, "violation: {v}");
    }
    let failed = !violations.is_empty();
    // No wall-clock figure here: a replay prints exactly what the first run printed.
    let _ = writeln!(
        stdout,
        "seeds=1 failing_seeds={} violations={} casts={} delivered={} sends={} sends_delivered={}",
        u8::from(failed),
        violations.len(),
        out.stats.casts,
        out.stats.deliveries,
        out.stats.sends,
        out.stats.send_deliveries,
    );
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
