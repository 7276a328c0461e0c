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
fn lock_demo_hands_a_killed_holders_lock_to_the_next_waiter_and_never_has_two_holders() {
    let out = demo("lock");
    assert!(out.contains("granted it by the view change; p"), "{out}");
    assert!(out.contains("rejoined with the table and took its turn"), "{out}");
    assert!(out.contains("holdings never overlapped; tables equal at"), "{out}");
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
