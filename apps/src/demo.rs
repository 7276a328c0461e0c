//! `horus demo`: a small group of real OS processes forms, casts at every level, loses a
//! member to SIGKILL, takes a restarted one back with state transfer, checks itself and
//! leaves; every step is told as it happens.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use horus::{Endpoint, Level};
use horus_apps::cluster::{burst, wait_all, Member, Seen, Spec, Transport};
use horus_apps::control::Command;
use horus_core::check::check;

const DEMO_HELP: &str = "\
Each member is a separate OS process (`horus demo-member`) on this host; they talk over UDP on
the loopback interface, by IP multicast or, with --unicast, unicast only. The application is a
replicated counter of the casts delivered, given to joiners by state transfer. The demo exits
with status 0 when every step happened and every check passed, 1 otherwise (every wait is
bounded, so a failure ends it within seconds).

Examples:
  horus demo
  horus demo --members 5 --unicast
  horus demo --record run1 && horus check run1/*";

/// Starts a small group of member processes and shows virtual synchrony at work.
///
/// The members join one group, cast at every service level (fifo, causal, total, safe) and
/// send to each other; then one is killed with SIGKILL and the survivors install a view
/// without it; a restarted process rejoins as a new incarnation and is given the group's state;
/// every member checks what it delivered, and all leave.
#[derive(Args, Debug, Clone)]
#[command(after_long_help = DEMO_HELP)]
pub struct DemoArgs {
    /// An application to show instead: `rsm` (a replicated state machine: a bank), `map` (a
    /// replicated key-value map), `lock` (a lock
    /// service), `chat` (a group chat), `primary-backup` (a journal kept by a primary and its
    /// backups), `cohort` (requests shared out, taken over).
    #[arg(value_name = "APP")]
    app: Option<String>,
    /// How many member processes (at least 2).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(2..=16))]
    members: u64,
    /// Record each member's history to DIR/member-<node>-<incarnation>.jsonl, and check them.
    #[arg(long, value_name = "DIR")]
    record: Option<PathBuf>,
    /// The group's name [default: demo-<pid>, so that demos running at once stay apart].
    #[arg(long)]
    group: Option<String>,
    /// No IP multicast: the members cast to each other by unicast.
    #[arg(long)]
    unicast: bool,
}

/// How long any one step may take.
const STEP: Duration = Duration::from_secs(15);

pub fn run(args: DemoArgs) -> ExitCode {
    let outcome = match args.app.as_deref() {
        None | Some("counter") => demo(&args),
        Some(app) => app_demo(app, &args),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say!("demo FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `horus demo <app>`: one of the application demos.
fn app_demo(app: &str, args: &DemoArgs) -> Result<(), String> {
    if args.unicast {
        return Err("--unicast applies to the counter demo only".into());
    }
    if args.members < 3 {
        // Killing one of two leaves a minority, which the primary-partition policy stops.
        return Err(format!(
            "the {app} demo needs at least 3 members (--members {}): it kills one midway, and \
             the survivors must be a majority to go on",
            args.members
        ));
    }
    let group = args.group.clone().unwrap_or_else(|| format!("demo-{app}-{}", std::process::id()));
    let mut demo = crate::appdemos::Demo::new(app, group.clone(), args.record.clone())?;
    let n = args.members;
    say!(
        "horus demo {app}: {n} member processes in group `{group}`, over IP multicast on loopback"
    );
    let line = match app {
        "map" => crate::appdemos::map::run(&mut demo, n)?,
        "rsm" => crate::appdemos::rsm::run(&mut demo, n)?,
        "lock" => crate::appdemos::lock::run(&mut demo, n)?,
        "chat" => crate::appdemos::chat::run(&mut demo, n)?,
        "primary-backup" => crate::appdemos::primary_backup::run(&mut demo, n)?,
        "cohort" => crate::appdemos::cohort::run(&mut demo, n)?,
        other => {
            return Err(format!(
                "no demo `{other}`; there are: counter (the default), {}",
                horus_apps::appmember::APPS.join(", ")
            ))
        }
    };
    say!("\n{line}");
    Ok(())
}

fn step() -> Instant {
    Instant::now() + STEP
}

fn demo(args: &DemoArgs) -> Result<(), String> {
    let bin = std::env::current_exe().map_err(|e| format!("cannot find the horus binary: {e}"))?;
    let group = args.group.clone().unwrap_or_else(|| format!("demo-{}", std::process::id()));
    if let Some(dir) = &args.record {
        prepare(dir)?;
    }
    let spec = Spec {
        transport: if args.unicast { Transport::Unicast } else { Transport::Multicast(None) },
        record_dir: args.record.clone(),
        ..Spec::new(bin, group.clone())
    };
    let how = match horus::default_transport(&group).group() {
        Some(addr) if !args.unicast => format!("IP multicast to {addr} on the loopback interface"),
        _ => "unicast only, on the loopback interface".to_owned(),
    };
    let n = args.members;
    say!("horus demo: {n} member processes in group `{group}`, over {how}");
    let levels = Level::ALL.len();
    let e = |m: &Member| m.endpoint;

    say!("\n1. The group forms: the first member founds it, the others join.");
    let mut members: Vec<Member> = Vec::new();
    for node in 1..=n {
        let seeds: Vec<_> = members.iter().map(|m| m.addr).collect();
        let m = Member::spawn(&spec, node, 0, node == 1, &seeds, step()).map_err(err)?;
        members.push(m);
        let want: Vec<Endpoint> = members.iter().map(e).collect();
        wait_all(&mut members, "install the view with the newcomer", step(), |s| {
            s.members() == Some(&want)
        })
        .map_err(err)?;
        let m = members.last().expect("just pushed");
        let v = members[0].seen.views.last().expect("a view");
        let did = if node == 1 { "founded the group" } else { "joined" };
        say!(
            "   {:<5} (pid {:>7}) {did:<18} view {} = {}",
            m.endpoint.to_string(),
            m.pid,
            v.view,
            list(&v.members)
        );
    }

    say!("\n2. Every member casts one message at each level (fifo, causal, total, safe)");
    say!("   and sends one to the next member.");
    let all: Vec<Endpoint> = members.iter().map(e).collect();
    for (i, m) in members.iter_mut().enumerate() {
        m.command(&Command::Burst { per_level: 1 }).map_err(err)?;
        let to = all[(i + 1) % all.len()];
        m.command(&Command::Send { to, text: format!("hello {to}, from {}", m.endpoint) })
            .map_err(err)?;
    }
    let want = n as usize * levels;
    wait_all(&mut members, "deliver every cast and its send", step(), |s| {
        s.casts_delivered() >= want && s.delivered.iter().any(|d| d.level.is_none())
    })
    .map_err(err)?;
    say!("   each delivered the {want} casts; the total-level ones in one order everywhere:");
    say!("   {}", same_order(&members, Level::Total)?);
    for m in &members {
        if let Some(d) = m.seen.delivered.iter().find(|d| d.level.is_none()) {
            say!("   {} got a send: \"{}\"", m.endpoint, d.text);
        }
    }

    let mut victim = members.pop().expect("at least two members");
    say!("\n3. {} (pid {}) is killed with SIGKILL.", victim.endpoint, victim.pid);
    victim.wait_recorded(step()).map_err(err)?;
    let killed_at = Instant::now();
    victim.kill().map_err(err)?;
    let gone = victim.endpoint;
    let survivors: Vec<Endpoint> = members.iter().map(e).collect();
    wait_all(&mut members, "install a view without the killed member", step(), |s| {
        s.members() == Some(&survivors)
    })
    .map_err(err)?;
    let v = members[0].seen.views.last().expect("a view").clone();
    say!(
        "   the survivors installed view {} = {} (left {}) {:.1}s after the kill",
        v.view,
        list(&v.members),
        list(&v.left),
        killed_at.elapsed().as_secs_f64()
    );
    if v.left != [gone] {
        return Err(format!("the view change removed {} rather than {gone}", list(&v.left)));
    }
    let more = burst(&mut members, 1, levels, step()).map_err(err)?;
    say!("   they go on: each delivered the survivors' {more} new casts");

    say!("\n4. Node {} restarts as a new incarnation and rejoins; state transfer gives it the counter.", victim.node);
    let seeds: Vec<_> = members.iter().map(|m| m.addr).collect();
    let joiner = Member::spawn(&spec, victim.node, gone.incarnation + 1, false, &seeds, step())
        .map_err(err)?;
    members.push(joiner);
    drop(victim);
    let all: Vec<Endpoint> = members.iter().map(e).collect();
    wait_all(&mut members, "install the view with the restarted member", step(), |s| {
        s.members() == Some(&all)
    })
    .map_err(err)?;
    let joiner = members.last_mut().expect("just pushed");
    joiner.wait("be given the state", step(), |s| !s.states.is_empty()).map_err(err)?;
    let (me, joined_in, state) = joiner.seen.states[0];
    let v = joiner.seen.views.last().expect("a view").clone();
    say!(
        "   {me} (pid {}) joined: view {} = {} (joined {})",
        joiner.pid,
        v.view,
        list(&v.members),
        list(&v.joined)
    );
    let old = members.len() - 1;
    wait_all(&mut members[..old], "give the joiner its state", step(), |s| {
        s.snapshots.iter().any(|(v, _)| *v == joined_in)
    })
    .map_err(err)?;
    let given: Vec<String> = members[..old]
        .iter()
        .map(|m| {
            let c = m.seen.snapshots.iter().find(|(v, _)| *v == joined_in).map(|(_, c)| *c);
            match c {
                Some(c) if c == state => Ok(format!("{} gave {c}", m.endpoint)),
                Some(c) => Err(format!("{} gave {c}, not {state}", m.endpoint)),
                None => Err(format!("{} gave no state for {joined_in}", m.endpoint)),
            }
        })
        .collect::<Result<_, _>>()?;
    say!(
        "   it was given the counter {state} for {joined_in}, equal to the others' ({})",
        given.join(", ")
    );
    let more = burst(&mut members, 1, levels, step()).map_err(err)?;
    say!("   all cast again: each delivered the {more} new casts, the newcomer too");

    say!("\n5. Every member checks what it delivered.");
    let mut counters = Vec::new();
    for m in &mut members {
        let (ok, detail, counter) = m.self_check(step()).map_err(err)?;
        say!(
            "   {}: self-check {}: {detail}; counter {counter}",
            m.endpoint,
            if ok { "ok" } else { "FAILED" }
        );
        if !ok {
            return Err(format!("{}'s self-check failed", m.endpoint));
        }
        counters.push(counter);
    }
    if counters.windows(2).any(|w| w[0] != w[1]) {
        return Err(format!("the replicated counters differ: {counters:?}"));
    }
    let counter = counters[0];
    say!("   the replicated counter is {counter} at every member");

    say_part!("\n6. The members leave:");
    while let Some(mut m) = members.pop() {
        m.leave(step()).map_err(err)?;
        say_part!(" {}", m.endpoint);
    }
    say!(" (each in a view change, the last alone)");

    let mut checked = String::new();
    if let Some(dir) = &args.record {
        say!(
            "\n7. The recorded histories are checked (as `horus check {}/*` does):",
            dir.display()
        );
        let (history, promises, files) = crate::check::read(std::slice::from_ref(dir))?;
        let report = check(&history, &promises);
        say!("   {files} files: {}", report.to_string().trim_end().replace('\n', "\n   "));
        if !report.is_ok() {
            return Err("the recorded histories violate the guarantees".into());
        }
        let _ = write!(checked, "; histories in {} checked: no violations", dir.display());
    }
    say!(
        "\ndemo ok: {n} members, {gone} killed, {me} rejoined with the state; counter {counter} everywhere; \
         every self-check passed{checked}"
    );
    Ok(())
}

/// Makes `dir`, and removes the member histories an earlier demo left in it (they would be
/// checked with this run's).
pub(crate) fn prepare(dir: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("member-") && name.ends_with(".jsonl") {
            std::fs::remove_file(entry.path())
                .map_err(|e| format!("cannot remove the old {}: {e}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// The casts at `level` each member delivered, checked to be in one order at all of them.
fn same_order(members: &[Member], level: Level) -> Result<String, String> {
    let order = |s: &Seen| -> Vec<String> {
        s.delivered.iter().filter(|d| d.level == Some(level)).map(|d| d.text.clone()).collect()
    };
    let first = order(&members[0].seen);
    for m in &members[1..] {
        let other = order(&m.seen);
        if other != first {
            return Err(format!(
                "{} and {} delivered the {level} casts in different orders: {} / {}",
                members[0].endpoint,
                m.endpoint,
                first.join(" "),
                other.join(" ")
            ));
        }
    }
    Ok(first.join("  "))
}

fn list(endpoints: &[Endpoint]) -> String {
    if endpoints.is_empty() {
        return "-".into();
    }
    endpoints.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(" ")
}

fn err(e: horus_apps::cluster::ClusterError) -> String {
    e.to_string()
}
