//! `horus-bench` end to end: real member processes on loopback, small counts.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;

const KEYS: [&str; 14] = [
    "members",
    "senders",
    "size",
    "level",
    "transport",
    "msgs_per_sec",
    "mb_per_sec",
    "lat_p50_us",
    "lat_p99_us",
    "lat_max_us",
    "raw_msgs_per_sec",
    "raw_mb_per_sec",
    "ratio",
    "retransmissions",
];

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_horus-bench")).args(args).output().expect("horus-bench starts")
}

/// Runs two members at `level` over `transport` and checks the JSON line.
fn smoke(level: &str, transport: &str) {
    let out = bench(&[
        "--members",
        "2",
        "--count",
        "2000",
        "--size",
        "200",
        "--level",
        level,
        "--transport",
        transport,
        "--timeout",
        "20s",
        "--json",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{level}/{transport}: {stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stdout}");
    let v: Value = serde_json::from_str(lines[0]).expect("the line is JSON");
    for key in KEYS {
        assert!(v.get(key).is_some(), "{key} missing: {stdout}");
    }
    assert_eq!(v["members"], 2);
    assert_eq!(v["senders"], "all");
    assert_eq!(v["size"], 200);
    assert_eq!((v["level"].as_str(), v["transport"].as_str()), (Some(level), Some(transport)));
    let num = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} is a number: {stdout}"));
    for k in ["msgs_per_sec", "mb_per_sec", "raw_msgs_per_sec", "raw_mb_per_sec", "ratio"] {
        assert!(num(k) > 0.0, "{k} positive: {stdout}");
    }
    assert!((num("mb_per_sec") - num("msgs_per_sec") * 200.0 / 1e6).abs() < 0.01, "{stdout}");
    let ratio = num("msgs_per_sec") / num("raw_msgs_per_sec");
    assert!((num("ratio") - ratio).abs() < 0.01, "{stdout}");
    assert!(num("lat_p50_us") > 0.0, "{stdout}");
    assert!(num("lat_p50_us") <= num("lat_p99_us") && num("lat_p99_us") <= num("lat_max_us"));
    assert!(num("lat_max_us") < 20e6, "latency within the run: {stdout}");
    assert!(v["retransmissions"].as_u64().is_some(), "{stdout}");
}

#[test]
fn fifo_over_multicast_reports_every_figure() {
    smoke("fifo", "multicast");
}

#[test]
fn total_over_multicast_reports_every_figure() {
    smoke("total", "multicast");
}

#[test]
fn fifo_over_unicast_reports_every_figure() {
    smoke("fifo", "unicast");
}

#[test]
fn members_that_never_form_a_group_end_the_run_within_the_timeout() {
    let start = Instant::now();
    let out = bench(&["--members", "2", "--count", "100", "--timeout", "2s", "--fail-join"]);
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(took < Duration::from_secs(6), "ended after {took:?}");
    assert!(out.stdout.is_empty(), "no report");
    assert!(
        stderr.contains("view of all 2 members") || stderr.contains("cannot join"),
        "names what it waited for: {stderr}"
    );
}

#[test]
fn bad_arguments_are_a_usage_error_and_start_nothing() {
    let out = bench(&["--members", "1", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--members 1"));
}
