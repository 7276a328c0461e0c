//! Members as separate OS processes (`horus demo-member`) over real UDP on the loopback
//! interface: they form one group, cast at every level, lose a member to SIGKILL, take a
//! restarted one back with its state, survive loss and a partition, and record histories
//! that the checker accepts; `horus demo`, `horus check` and `horus probe` as a user runs them.
//!
//! Each test has its own group name, multicast address and port, so they run in parallel.
//! Every wait is bounded (a hang fails the test), and every process is killed and reaped when
//! its `Member` is dropped, even when a test fails.

use std::collections::BTreeSet;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command as Process, Output, Stdio};
use std::time::{Duration, Instant};

use horus_apps::cluster::{burst, wait_all, Member, Spec, Transport};
use horus_apps::control::Command;
use horus_core::check::{check, Property};
use horus_core::history::{History, Membership, Promises};
use horus_core::{Endpoint, Level};

const HORUS: &str = env!("CARGO_BIN_EXE_horus");

/// How long any one wait may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(30);

fn deadline() -> Instant {
    Instant::now() + PATIENCE
}

/// A UDP port free now on the loopback interface.
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()).expect("a free port").port()
}

/// A fresh directory for one test's histories.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("horus-processes-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    dir
}

/// A run of group `name` over `transport`, recording into `dir`.
fn spec(name: &str, transport: Transport, dir: &Path) -> Spec {
    Spec {
        transport,
        record_dir: Some(dir.to_owned()),
        ..Spec::new(HORUS, format!("{name}-{}", std::process::id()))
    }
}

/// Loopback multicast on an address of this test's own.
fn multicast(last: u8) -> Transport {
    Transport::Multicast(Some(SocketAddr::from(([239, 255, 79, last], free_port()))))
}

fn endpoints(members: &[Member]) -> Vec<Endpoint> {
    members.iter().map(|m| m.endpoint).collect()
}

/// Starts `n` members: the first founds the group, the others join it through the ones
/// before; waits until all are in one view.
fn form(spec: &Spec, n: u64) -> Vec<Member> {
    let mut members: Vec<Member> = Vec::new();
    for node in 1..=n {
        let seeds: Vec<SocketAddr> = members.iter().map(|m| m.addr).collect();
        let m = Member::spawn(spec, node, 0, node == 1, &seeds, deadline()).expect("joins");
        members.push(m);
    }
    until_one_view(&mut members);
    members
}

/// Waits until every member's last view is made of exactly `members`.
fn until_one_view(members: &mut [Member]) {
    let want = endpoints(members);
    wait_all(members, &format!("install the view {want:?}"), deadline(), |s| {
        s.members() == Some(&want)
    })
    .expect("one view of them all");
}

/// Asks each member for its self-check; all must pass, with one counter.
fn self_checks(members: &mut [Member]) -> u64 {
    let mut counters = BTreeSet::new();
    for m in members.iter_mut() {
        let (ok, detail, counter) = m.self_check(deadline()).expect("answers");
        assert!(ok, "{} failed its self-check: {detail}", m.endpoint);
        counters.insert(counter);
    }
    assert_eq!(counters.len(), 1, "the replicated counters differ: {counters:?}");
    counters.into_iter().next().expect("one")
}

/// Every member leaves, the last alone; each process ends with status 0.
fn leave_all(mut members: Vec<Member>) {
    while let Some(mut m) = members.pop() {
        m.leave(deadline()).expect("leaves");
        assert!(
            m.status().is_some_and(|s| s.success()),
            "{} ended with {:?}",
            m.endpoint,
            m.status()
        );
    }
}

/// Reads every history file in `dir` as one history.
fn histories(dir: &Path) -> (History, Promises) {
    let mut history = History::new();
    let mut promises = None;
    for entry in std::fs::read_dir(dir).expect("the directory") {
        let path = entry.expect("an entry").path();
        let file = std::fs::File::open(&path).expect("opens");
        let p = history.extend_jsonl(std::io::BufReader::new(file)).expect("parses");
        promises = p.or(promises);
    }
    (history, promises.expect("the files carry promises"))
}

/// The scenario of issue #7: four members, casts at every level, one killed, the survivors
/// go on, a restarted process rejoins with the state, and the histories pass the checker.
fn kill_and_restart(name: &str, transport: Transport, victim: usize) {
    let dir = scratch(name);
    let spec = spec(name, transport, &dir);
    let mut members = form(&spec, 4);
    let levels = Level::ALL.len();
    assert_eq!(burst(&mut members, 2, levels, deadline()).expect("delivered"), 4 * 2 * levels);

    let mut killed = members.remove(victim);
    killed.wait_recorded(deadline()).expect("its history is written");
    killed.kill().expect("killed");
    until_one_view(&mut members);
    for m in &members {
        let last = m.seen.views.last().expect("a view");
        assert_eq!(last.left, [killed.endpoint], "{} was told another member left", m.endpoint);
    }
    burst(&mut members, 2, levels, deadline()).expect("the survivors go on");

    let seeds: Vec<SocketAddr> = members.iter().map(|m| m.addr).collect();
    let restarted =
        Member::spawn(&spec, killed.node, 1, false, &seeds, deadline()).expect("rejoins");
    assert_eq!(restarted.endpoint, Endpoint::new(killed.node, 1));
    members.push(restarted);
    until_one_view(&mut members);
    let joiner = members.last_mut().expect("pushed");
    joiner.wait("be given the state", deadline(), |s| !s.states.is_empty()).expect("a state");
    let (_, joined_in, state) = joiner.seen.states[0];
    assert!(state > 0, "the state counts the casts delivered before the join");
    let old = members.len() - 1;
    wait_all(&mut members[..old], "give the joiner its state", deadline(), |s| {
        s.snapshots.iter().any(|(v, _)| *v == joined_in)
    })
    .expect("the members give the state");
    for m in &members[..old] {
        let given = m.seen.snapshots.iter().find(|(v, _)| *v == joined_in).map(|(_, c)| *c);
        assert_eq!(given, Some(state), "{} gave another state than the joiner got", m.endpoint);
    }
    burst(&mut members, 1, levels, deadline()).expect("all cast, the joiner too");
    let counter = self_checks(&mut members);
    assert_eq!(counter, state + (4 * levels) as u64);
    leave_all(members);

    let (history, promises) = histories(&dir);
    assert_eq!(promises.membership, Membership::Primary);
    assert!(promises.state_transfer);
    assert_eq!(history.procs.len(), 5, "four members and the restarted one");
    assert!(history.procs.values().all(|p| p.ended()), "each history ends in an exit or crash");
    let report = check(&history, &promises);
    assert!(report.is_ok(), "the real run violates:\n{report}");
    // The doctored history must fail: the oracle is not blind.
    let survivor = history.procs.keys().find(|e| e.node != killed.node).copied().expect("one");
    let mut doctored = history.clone();
    let events = &mut doctored.procs.get_mut(&survivor).expect("its history").events;
    let i =
        events.iter().position(|(_, e)| matches!(e, horus_core::history::Event::Deliver { .. }));
    events.remove(i.expect("it delivered"));
    assert!(!check(&doctored, &promises).is_ok(), "a removed delivery went unnoticed");
    std::fs::remove_dir_all(&dir).expect("cleans up");
}

#[test]
fn four_processes_on_multicast_lose_their_coordinator_and_take_a_restart_back() {
    kill_and_restart("multicast", multicast(1), 0);
}

#[test]
fn four_processes_unicast_only_lose_a_member_and_take_a_restart_back() {
    kill_and_restart("unicast", Transport::Unicast, 2);
}

/// 5% loss from the start, then a partition that cuts one member off, then the heal: with
/// partitionable membership (`evs`) each side goes on, and the views merge.
#[test]
fn under_loss_a_partition_splits_the_group_and_the_views_merge_when_it_heals() {
    let dir = scratch("partition");
    let spec = Spec { stack: "evs".into(), loss: 0.05, ..spec("partition", multicast(2), &dir) };
    let mut members = form(&spec, 4);
    let levels = Level::ALL.len();
    burst(&mut members, 2, levels, deadline()).expect("delivered despite loss");

    // Cut p4 off: both sides drop each other's datagrams (a multicast reaches every member
    // whatever the sender's switch says).
    let all = endpoints(&members);
    let (majority, minority) = all.split_at(3);
    for m in &mut members[..3] {
        m.command(&Command::Partition { from: minority.to_vec() }).expect("told");
    }
    members[3].command(&Command::Partition { from: majority.to_vec() }).expect("told");
    let (left, right) = members.split_at_mut(3);
    until_one_view(left);
    until_one_view(right);
    burst(left, 1, levels, deadline()).expect("the majority goes on");
    burst(right, 1, levels, deadline()).expect("the minority goes on too (evs)");

    for m in &mut members {
        m.command(&Command::Heal).expect("told");
    }
    until_one_view(&mut members);
    let merged = members[0].seen.views.last().expect("a view").clone();
    assert_eq!(merged.members, all, "the sides merged back into one view");
    burst(&mut members, 1, levels, deadline()).expect("all cast after the merge");
    self_checks(&mut members);
    leave_all(members);

    let (history, promises) = histories(&dir);
    assert_eq!(promises.membership, Membership::Partitionable);
    let report = check(&history, &promises);
    assert!(report.is_ok(), "the real run violates:\n{report}");
    std::fs::remove_dir_all(&dir).expect("cleans up");
}

fn horus(args: &[&str]) -> Output {
    Process::new(HORUS).args(args).stdin(Stdio::null()).output().expect("horus runs")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .expect("the directory")
        .map(|e| e.expect("an entry").path().display().to_string())
        .collect();
    files.sort();
    files
}

#[test]
fn demo_records_histories_that_check_clean_and_a_doctored_copy_fails() {
    let dir = scratch("demo");
    let record = dir.join("run");
    let group = format!("demo-test-{}", std::process::id());
    let o = horus(&["demo", "--record", &record.display().to_string(), "--group", &group]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("\ndemo ok: 3 members, p3.0 killed, p3.1 rejoined"), "{}", text(&o));

    let files = files_in(&record);
    assert_eq!(files.len(), 4, "three members and the restarted one: {files:?}");
    let args: Vec<&str> = ["check"].into_iter().chain(files.iter().map(|f| f.as_str())).collect();
    let o = horus(&args);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("no violations (4 processes"), "{}", text(&o));

    // A delivery line removed from a member that lived through the whole run.
    let doctored = dir.join("doctored");
    std::fs::create_dir_all(&doctored).expect("creates");
    for f in &files {
        let name = Path::new(f).file_name().expect("a name");
        let mut lines: Vec<String> =
            std::fs::read_to_string(f).expect("reads").lines().map(String::from).collect();
        if name == "member-1-0.jsonl" {
            let deliveries: Vec<usize> =
                (0..lines.len()).filter(|i| lines[*i].contains("\"ev\":\"deliver\"")).collect();
            lines.remove(deliveries[deliveries.len() / 2]);
        }
        std::fs::write(doctored.join(name), lines.join("\n") + "\n").expect("writes");
    }
    let o = horus(&["check", &doctored.display().to_string()]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = text(&o);
    let named =
        [Property::VirtualSynchrony, Property::Fifo, Property::SelfDelivery, Property::Total]
            .iter()
            .any(|p| out.contains(&format!("{p}: ")));
    assert!(named && out.contains("violations"), "{out}");

    // Unreadable input: status 2, naming the file and the line.
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, "{\"horus_history\":2}\nnot a line\n").expect("writes");
    let o = horus(&["check", &bad.display().to_string()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("bad.jsonl: line 2"), "{}", text(&o));
    std::fs::remove_dir_all(&dir).expect("cleans up");
}

#[test]
fn probe_lists_every_member_without_changing_the_view() {
    let dir = scratch("probe");
    let spec = spec("probe", multicast(3), &dir);
    let mut members = form(&spec, 2);
    burst(&mut members, 1, Level::ALL.len(), deadline()).expect("delivered");
    let views: Vec<usize> = members.iter().map(|m| m.seen.views.len()).collect();

    let o = horus(&["probe", "--group", &spec.group, "--timeout", "1s"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "a header and one line per member:\n{out}");
    for m in &members {
        let row =
            lines.iter().find(|l| l.split_whitespace().nth(1) == Some(&m.endpoint.to_string()));
        let cells: Vec<&str> = row.expect("a row per member").split_whitespace().collect();
        // GROUP MEMBER PID VIEW SIZE CASTS DELIVERED ...
        assert_eq!(cells[2], m.pid.to_string());
        assert_eq!((cells[4], cells[5], cells[6]), ("2", "4", "8"), "{out}");
    }
    // Directly, by the address a member answers at.
    let to = members[1].probe.expect("answers probes").to_string();
    let o = horus(&["probe", "--group", &spec.group, "--to", &to, "--json", "--timeout", "500ms"]);
    assert!(text(&o).contains(&format!("\"endpoint\":[{},0]", members[1].node)), "{}", text(&o));
    // Another group's name: nobody answers, status 1.
    let o = horus(&["probe", "--group", "no-such-group-at-all", "--timeout", "200ms"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));

    // Probes are no members: the views did not change.
    burst(&mut members, 1, Level::ALL.len(), deadline()).expect("delivered");
    let after: Vec<usize> = members.iter().map(|m| m.seen.views.len()).collect();
    assert_eq!(after, views, "a probe caused a view change");
    leave_all(members);
    std::fs::remove_dir_all(&dir).expect("cleans up");
}
