//! `horus-bench --join`: three processes on loopback, each one member of the group, as three
//! hosts would run it; small counts.

use std::io::{ErrorKind, Read};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use horus::probe::{Answer, Request, MAX_DATAGRAM, PROBE_GROUP, VERSION};
use serde_json::Value;
use socket2::{Domain, Protocol, Socket, Type};

/// The longest any process of these tests may run before it is killed and the test fails.
const HANG: Duration = Duration::from_secs(90);

/// A `horus-bench --join` process; killed and reaped if dropped before it exits.
struct Member {
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

/// How a member ended.
struct Ended {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn read_all(pipe: Option<impl Read + Send + 'static>) -> Option<JoinHandle<String>> {
    pipe.map(|mut p| {
        thread::spawn(move || {
            let mut s = String::new();
            let _ = p.read_to_string(&mut s);
            s
        })
    })
}

impl Member {
    fn start(args: &[&str]) -> Member {
        let mut child = Command::new(env!("CARGO_BIN_EXE_horus-bench"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("horus-bench starts");
        let (stdout, stderr) = (read_all(child.stdout.take()), read_all(child.stderr.take()));
        Member { child, stdout, stderr }
    }

    /// Waits for the exit until `deadline`; kills the process and fails the test past it.
    fn wait(mut self, deadline: Instant) -> Ended {
        let status = loop {
            match self.child.try_wait().expect("the process can be waited for") {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = self.child.kill();
                    panic!("a member did not exit in time: killed");
                }
                None => thread::sleep(Duration::from_millis(20)),
            }
        };
        let text =
            |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
        Ended {
            code: status.code(),
            stdout: text(self.stdout.take()),
            stderr: text(self.stderr.take()),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// A group name no other test or run uses.
fn unique(test: &str) -> String {
    format!("bench-join-{}-{test}", std::process::id())
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Starts one member per argument list at once and waits for them all.
fn run_all(members: &[Vec<String>]) -> Vec<Ended> {
    let started: Vec<Member> = members.iter().map(|a| Member::start(&strs(a))).collect();
    let deadline = Instant::now() + HANG;
    started.into_iter().map(|m| m.wait(deadline)).collect()
}

/// The arguments in `line`, split at spaces.
fn argv(line: &str) -> Vec<String> {
    line.split_whitespace().map(str::to_owned).collect()
}

/// Asks the members of `group` on this host, as `horus probe` does, until their answers
/// satisfy `ready`; fails the test if they never do.
fn probe_until(group: &str, ready: impl Fn(&[Answer]) -> bool) {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("a socket");
    socket.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).expect("IP_MULTICAST_IF");
    socket.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into()).expect("bound");
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("SO_RCVTIMEO");
    let deadline = Instant::now() + HANG;
    let mut buf = vec![0; MAX_DATAGRAM];
    for nonce in 0.. {
        assert!(Instant::now() < deadline, "the members of {group} never answered as awaited");
        let request = Request { horus_probe: VERSION, group: Some(group.into()), nonce };
        let bytes = serde_json::to_vec(&request).expect("a request serializes");
        socket.send_to(&bytes, PROBE_GROUP).expect("the probe goes out");
        let mut answers = Vec::new();
        loop {
            match socket.recv_from(&mut buf) {
                Ok((n, _)) => match serde_json::from_slice::<Answer>(&buf[..n]) {
                    Ok(a) if a.nonce == nonce => answers.push(a),
                    _ => {}
                },
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => break,
                Err(e) => panic!("probe: {e}"),
            }
        }
        if ready(&answers) {
            return;
        }
    }
}

/// Every member succeeded and printed the same JSON report, whose figures are those of a run
/// of three members; returns it.
fn same_report(ended: &[Ended], name: &str) -> Value {
    for e in ended {
        assert_eq!(e.code, Some(0), "stderr: {}", e.stderr);
        assert!(!e.stderr.contains("did not leave"), "every member left: {}", e.stderr);
    }
    let first = ended[0].stdout.trim();
    assert_eq!(first.lines().count(), 1, "one line: {first}");
    for e in &ended[1..] {
        assert_eq!(e.stdout.trim(), first, "every member prints the same report");
    }
    let v: Value = serde_json::from_str(first).expect("the line is JSON");
    assert_eq!(v["members"], 3);
    assert_eq!(v["join"], name);
    let num = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} is a number: {first}"));
    for k in ["msgs_per_sec", "mb_per_sec", "raw_msgs_per_sec", "ratio", "lat_p50_us"] {
        assert!(num(k) > 0.0, "{k} positive: {first}");
    }
    assert!(num("lat_p50_us") <= num("lat_p99_us") && num("lat_p99_us") <= num("lat_max_us"));
    assert!(num("lat_max_us") < 60e6, "latency within the run: {first}");
    v
}

#[test]
fn three_members_over_multicast_print_the_same_report() {
    let name = unique("fifo-multicast");
    let args = argv(&format!(
        "--join {name} --members 3 --count 2000 --size 200 --level fifo --timeout 30s --json"
    ));
    let ended = run_all(&[args.clone(), args.clone(), args]);
    let v = same_report(&ended, &name);
    assert_eq!((v["level"].as_str(), v["transport"].as_str()), (Some("fifo"), Some("multicast")));
    assert_eq!(v["senders"], "all");
}

#[test]
fn three_members_over_unicast_at_the_total_level_print_the_same_report() {
    let name = unique("total-unicast");
    // Three free ports (the sockets close before the members bind them).
    let sockets: Vec<UdpSocket> =
        (0..3).map(|_| UdpSocket::bind("127.0.0.1:0").expect("a free port")).collect();
    let addrs: Vec<String> =
        sockets.iter().map(|s| s.local_addr().expect("bound").to_string()).collect();
    drop(sockets);
    let seeds = addrs.join(",");
    let members: Vec<Vec<String>> = addrs
        .iter()
        .map(|bind| {
            argv(&format!(
                "--join {name} --members 3 --count 2000 --size 200 --level total --senders one \
                 --transport unicast --bind {bind} --seeds {seeds} --timeout 30s --json"
            ))
        })
        .collect();
    let ended = run_all(&members);
    let v = same_report(&ended, &name);
    assert_eq!((v["level"].as_str(), v["transport"].as_str()), (Some("total"), Some("unicast")));
    assert_eq!(v["senders"], "one");
}

#[test]
fn a_member_started_after_the_others_formed_the_group_joins_it() {
    let name = unique("late");
    let args = argv(&format!("--join {name} --members 3 --count 1000 --timeout 60s --json"));
    let early: Vec<Member> = (0..2).map(|_| Member::start(&strs(&args))).collect();
    // The first two have founded the group together: one view of both.
    probe_until(&name, |a| a.len() == 2 && a.iter().all(|a| a.members.len() == 2));
    let late = Member::start(&strs(&args));
    let deadline = Instant::now() + HANG;
    let ended: Vec<Ended> = early.into_iter().chain([late]).map(|m| m.wait(deadline)).collect();
    let v = same_report(&ended, &name);
    assert_eq!(v["count"], 1000);
}

#[test]
fn a_member_lost_mid_run_ends_the_others_naming_it() {
    let name = unique("lost");
    // Paced for far longer than the test waits: the run is under way when one is killed.
    let args = argv(&format!(
        "--join {name} --members 3 --count 1000000 --rate 2000 --no-baseline --timeout 300s"
    ));
    let mut members: Vec<Member> = (0..3).map(|_| Member::start(&strs(&args))).collect();
    probe_until(&name, |a| {
        a.len() == 3 && a.iter().all(|a| a.members.len() == 3 && a.counters["delivered"] > 100)
    });
    let killed = members.pop().expect("three members");
    drop(killed);
    let start = Instant::now();
    for e in members.into_iter().map(|m| m.wait(start + HANG)) {
        assert_eq!(e.code, Some(1), "{}", e.stderr);
        let says = &e.stderr;
        assert!(says.contains("left the view"), "names the loss: {says}");
        assert!(says.contains("the delivery of every cast"), "and what it waited for: {says}");
    }
    // Suspicion takes a fraction of a second; the bound is the run's 300 s.
    assert!(start.elapsed() < Duration::from_secs(30), "ended after {:?}", start.elapsed());
}

#[test]
fn members_started_with_different_settings_all_end_naming_the_flag() {
    let name = unique("mismatch");
    let with_size = |size: u32| {
        argv(&format!("--join {name} --members 3 --count 1000 --size {size} --timeout 30s --json"))
    };
    let start = Instant::now();
    let ended = run_all(&[with_size(200), with_size(200), with_size(300)]);
    assert!(start.elapsed() < Duration::from_secs(40), "ended after {:?}", start.elapsed());
    for e in &ended {
        assert_eq!(e.code, Some(2), "a usage error: {}", e.stderr);
        assert!(e.stdout.is_empty(), "no report: {}", e.stdout);
        let says = &e.stderr;
        assert!(says.contains("--size differs"), "names the flag: {says}");
        assert!(says.contains("200") && says.contains("300"), "and both values: {says}");
        assert!(says.contains("at member "), "and the member: {says}");
    }
}

#[test]
fn two_members_of_three_end_within_the_timeout_naming_the_view() {
    let name = unique("two-of-three");
    let args = argv(&format!("--join {name} --members 3 --count 100 --timeout 3s --json"));
    let start = Instant::now();
    let ended = run_all(&[args.clone(), args]);
    let took = start.elapsed();
    // The timeout, the leave's bound, and room for a loaded host.
    assert!(took < Duration::from_secs(15), "ended after {took:?}");
    for e in &ended {
        assert_eq!(e.code, Some(1), "{}", e.stderr);
        assert!(e.stdout.is_empty(), "no report: {}", e.stdout);
        let says = &e.stderr;
        assert!(says.contains("a view of 3 members"), "names what it waited for: {says}");
        // Two (or, on a host so loaded that the two did not hear each other within the
        // timeout, each alone): what it had, whichever.
        let had = ["the last had 2", "the last had 1"];
        assert!(had.iter().any(|h| says.contains(h)), "and what it had: {says}");
    }
}

#[test]
fn the_help_says_latency_across_hosts_needs_synchronized_clocks() {
    let out = Command::new(env!("CARGO_BIN_EXE_horus-bench"))
        .arg("--help")
        .output()
        .expect("horus-bench starts");
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--join <NAME>") && help.contains("--seeds"), "{help}");
    assert!(help.contains("clocks' synchronization"), "{help}");
}
