//! The application demos as real processes: each `horus demo <app>` forms a group, kills a
//! member with SIGKILL midway, restarts it, and must end with its self-check passed and its
//! recorded histories clean.

use std::path::PathBuf;
use std::process::{Command, Output};

const HORUS: &str = env!("CARGO_BIN_EXE_horus");

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("horus-app-demo-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Runs `horus demo <app> --record DIR`; returns its output, asserting it passed.
pub fn demo(app: &str) -> String {
    let record = scratch(app);
    let group = format!("demo-{app}-test-{}", std::process::id());
    let o = Command::new(HORUS)
        .args(["demo", app, "--group", &group, "--record"])
        .arg(&record)
        .output()
        .expect("runs horus");
    let out = text(&o);
    assert!(o.status.success(), "{out}");
    assert!(out.contains("checked: no violations"), "{out}");
    out
}

#[test]
fn map_demo_gives_the_restarted_member_the_map_and_ends_with_equal_copies() {
    let out = demo("map");
    assert!(out.contains("p3.1 holds the map it was given"), "{out}");
    assert!(out.contains("demo map ok: 3 members, p3.0 killed with writes in flight"), "{out}");
}

#[test]
fn primary_backup_demo_loses_no_acknowledged_append_when_the_primary_is_killed() {
    let out = demo("primary-backup");
    assert!(out.contains("p2.0 is the primary now"), "{out}");
    assert!(out.contains("p1.1 holds the journal it was given"), "{out}");
    assert!(out.contains("demo primary-backup ok: 3 members, primary p1.0 killed"), "{out}");
}

#[test]
fn cohort_demo_takes_over_the_requests_of_a_killed_coordinator() {
    let out = demo("cohort");
    assert!(out.contains("taken over from the killed coordinator"), "{out}");
    assert!(out.contains("demo cohort ok: 3 members, p3.0 killed with"), "{out}");
}

#[test]
fn lock_demo_hands_a_killed_holders_lock_to_the_next_waiter_and_never_has_two_holders() {
    let out = demo("lock");
    assert!(out.contains("granted it by the view change; p"), "{out}");
    assert!(out.contains("rejoined with the table and took its turn"), "{out}");
    assert!(out.contains("holdings never overlapped; tables equal at"), "{out}");
}

#[test]
fn rsm_demo_refuses_the_same_transfers_everywhere_and_keeps_the_money() {
    let out = demo("rsm");
    assert!(out.contains("p3.1 holds what it was given"), "{out}");
    assert!(out.contains("3000 in the bank"), "{out}");
}

#[test]
fn an_unknown_demo_says_which_there_are() {
    let o = Command::new(HORUS).args(["demo", "nosuch"]).output().expect("runs horus");
    assert!(!o.status.success());
    assert!(
        text(&o).contains("no demo `nosuch`; there are: counter (the default), map"),
        "{}",
        text(&o)
    );
}

#[test]
fn chat_demo_shows_the_killed_member_failed_and_gives_the_restarted_one_the_transcript() {
    let out = demo("chat");
    assert!(out.contains("the survivors saw \"* carol left (failed)\""), "{out}");
    assert!(out.contains("p3.1 was given the"), "{out}");
    assert!(out.contains("demo chat ok: 3 members, p3.0 (carol) killed midway"), "{out}");
}

/// Two `horus chat` processes, typed at through stdin, see each other's lines.
#[test]
fn two_chat_processes_driven_through_stdin_exchange_lines() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::{Child, Stdio};
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    struct Person {
        child: Child,
        lines: mpsc::Receiver<String>,
        seen: Vec<String>,
    }
    impl Person {
        fn start(name: &str, group: &str) -> Person {
            let mut child = Command::new(HORUS)
                .args(["chat", "--name", name, "--group", group, "--join-timeout", "5s"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("runs horus chat");
            let (tx, lines) = mpsc::channel();
            let out = child.stdout.take().expect("piped");
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        return;
                    }
                }
            });
            Person { child, lines, seen: Vec::new() }
        }
        fn type_line(&mut self, line: &str) {
            let stdin = self.child.stdin.as_mut().expect("piped");
            writeln!(stdin, "{line}").and_then(|()| stdin.flush()).expect("types");
        }
        /// Waits (a few seconds at most) for a printed line containing `text`.
        fn expect(&mut self, text: &str) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !self.seen.iter().any(|l| l.contains(text)) {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.lines.recv_timeout(left) {
                    Ok(l) => self.seen.push(l),
                    Err(_) => panic!("never printed {text:?}; printed:\n{}", self.seen.join("\n")),
                }
            }
        }
    }
    impl Drop for Person {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    let group = format!("chat-test-{}", std::process::id());
    let mut alice = Person::start("alice", &group);
    alice.expect("joined room");
    alice.expect("* alice joined");
    alice.type_line("hello, anyone?");
    alice.expect("alice: hello, anyone?");
    let mut bob = Person::start("bob", &group);
    bob.expect("alice: hello, anyone?"); // the recent transcript, given as bob joined
    bob.expect("* bob joined");
    alice.expect("* bob joined");
    bob.type_line("hi alice");
    alice.expect("bob: hi alice");
    bob.expect("bob: hi alice");
    bob.type_line("/who");
    bob.expect("in the room (2): ");
    let who = bob.seen.iter().find(|l| l.starts_with("in the room")).expect("just seen");
    assert!(who.contains("alice (p") && who.contains("bob (p"), "{who}");
    bob.type_line("/quit");
    bob.expect("you left the room");
    alice.expect("* bob left");
    assert!(!alice.seen.iter().any(|l| l.contains("bob left (failed)")), "{:?}", alice.seen);
    drop(alice.child.stdin.take()); // end of input leaves too
    alice.expect("you left the room");
    for p in [&mut alice, &mut bob] {
        let status = p.child.wait().expect("ends");
        assert!(status.success(), "{status}");
    }
}

#[test]
fn an_app_demo_of_two_members_says_why_it_needs_three() {
    let o = Command::new(HORUS).args(["demo", "map", "--members", "2"]).output().expect("runs");
    assert!(!o.status.success());
    assert!(text(&o).contains("needs at least 3 members"), "{}", text(&o));
}
