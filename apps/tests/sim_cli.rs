//! `horus sim` as a user runs it.

use std::process::{Command, Output};

fn horus(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_horus")).args(args).output().expect("horus runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The summary line without its wall-clock figures.
fn summary(o: &Output) -> String {
    let text = stdout(o);
    let last = text.lines().last().unwrap_or_default().to_string();
    last.split(' ')
        .filter(|f| !f.starts_with("wall_secs=") && !f.starts_with("sim_deliveries_per_sec="))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn best_effort_stack_is_caught_losing_and_duplicating_under_loss() {
    let o = horus(&[
        "sim", "--stack", "none", "--seeds", "0..50", "--loss", "0.05", "--dup", "0.02", "--jobs",
        "2",
    ]);
    assert_eq!(o.status.code(), Some(1), "violations make the exit status 1");
    let out = stdout(&o);
    assert!(out.contains("fifo: "), "{out}");
    assert!(out.contains("no duplication: "), "{out}");
    assert!(
        out.contains("replay: horus sim --seed 0 --trace --stack none --loss 0.05 --dup 0.02"),
        "{out}"
    );
    assert!(summary(&o).starts_with("seeds=50 failing_seeds=50 "), "{}", summary(&o));
}

#[test]
fn a_clean_network_without_jitter_gives_no_violation_even_best_effort() {
    let o = horus(&["sim", "--stack", "none", "--seeds", "0..50", "--jitter", "0us"]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(
        summary(&o).starts_with("seeds=50 failing_seeds=0 violations=0 casts=5000 delivered=25000")
    );
}

#[test]
fn the_same_seed_prints_the_same_output_twice() {
    let args = [
        "sim",
        "--seed",
        "7",
        "--trace",
        "--stack",
        "none",
        "--loss",
        "0.1",
        "--reorder",
        "0.2",
        "--partitions",
        "--crashes",
        "--pauses",
        "--oneway",
    ];
    let (a, b) = (horus(&args), horus(&args));
    assert_eq!(stdout(&a), stdout(&b));
    assert!(stdout(&a).lines().count() > 100);
    // And a range gives the same reports in the same order, whatever the thread count.
    let range = |jobs| horus(&["sim", "--seeds", "0..40", "--loss", "0.05", "--jobs", jobs]);
    let (one, two) = (range("1"), range("2"));
    let body = |o: &Output| {
        let t = stdout(o);
        let mut lines: Vec<&str> = t.lines().collect();
        lines.pop();
        lines.join("\n")
    };
    assert_eq!(body(&one), body(&two));
    assert_eq!(summary(&one), summary(&two));
}

#[test]
fn a_wrong_stack_spec_is_a_clear_error() {
    let o = horus(&["sim", "--stack", "mnak:nosuch"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown layer"), "{err}");
}

#[test]
fn bad_arguments_are_refused_before_running() {
    for args in [
        &["sim", "--loss", "1.5"][..],
        &["sim", "--seeds", "9..3"],
        &["sim", "--size", "10..5"],
        &["sim", "--levels", "fast"],
    ] {
        let o = horus(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
    }
}

#[test]
fn record_writes_a_history_the_checker_reads_back() {
    let dir = std::env::temp_dir().join(format!("horus-sim-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.jsonl");
    let o = horus(&["sim", "--seed", "3", "--nodes", "3", "--record", path.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stdout(&o));
    let f = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let (history, promises) = horus_core::History::read_jsonl(f).unwrap();
    assert_eq!(history.procs.len(), 3);
    assert!(horus_core::check::check(&history, &promises.unwrap()).is_ok());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_default_stack_survives_crashes_and_partitions() {
    let o = horus(&[
        "sim",
        "--seeds",
        "0..30",
        "--loss",
        "0.05",
        "--crashes",
        "--partitions",
        "--crash",
        "0@300ms",
    ]);
    assert!(o.status.success(), "{}", stdout(&o));
    assert!(summary(&o).starts_with("seeds=30 failing_seeds=0 violations=0 "), "{}", summary(&o));
}
