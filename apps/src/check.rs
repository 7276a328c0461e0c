//! `horus check`: the history checker over the files a real run (or `horus sim --record`)
//! wrote.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use horus_core::check::check;
use horus_core::history::{History, Promises};

const CHECK_HELP: &str = "\
Exit status: 0 if the histories have every property checked, 1 if any is violated, 2 if a file
cannot be read (the message names the file and the line).

Examples:
  horus demo --record run1 && horus check run1/*
  horus check run1                           every file in the directory
  horus member --group chat --record a.jsonl   (and b.jsonl, ... on the other members)
  horus check a.jsonl b.jsonl c.jsonl
  horus sim --seed 7 --record sim.jsonl && horus check sim.jsonl";

/// Checks recorded histories against the guarantees of group communication.
///
/// Reads one history file per member (or one file holding several), as written by `horus
/// member --record`, `horus demo --record`, the API's `GroupBuilder::record` or `horus sim
/// --record`, and verifies them together: self inclusion, view monotonicity, delivery
/// integrity, no duplication, sending view delivery, virtual synchrony, self delivery, FIFO,
/// causal and total order, uniform delivery, primary component, and state transfer, as the
/// files' headers promise. A member whose history just stops (killed without a `crash` line)
/// is judged as one still running.
#[derive(Args, Debug, Clone)]
#[command(after_long_help = CHECK_HELP)]
pub struct CheckArgs {
    /// History files, or directories of them (every file in a directory is read).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

pub fn run(args: CheckArgs) -> ExitCode {
    let (history, promises, files) = match read(&args.paths) {
        Ok(read) => read,
        Err(e) => {
            eprintln!("horus check: {e}");
            return ExitCode::from(2);
        }
    };
    let report = check(&history, &promises);
    let membership = format!("{:?}", promises.membership).to_lowercase();
    let state = if promises.state_transfer { ", state transfer" } else { "" };
    say!("checked {files} files ({membership} membership{state}):");
    say!("{report}");
    if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        let n = report.violations.len() + report.left_off.values().sum::<usize>();
        say!("{n} violations");
        ExitCode::FAILURE
    }
}

/// Reads every file in `paths` (directories: every file in them, sorted) into one history;
/// the files' headers must agree on what the run promises.
pub(crate) fn read(paths: &[PathBuf]) -> Result<(History, Promises, usize), String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let mut inside: Vec<PathBuf> =
                entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect();
            inside.sort();
            if inside.is_empty() {
                return Err(format!("{}: the directory has no files", p.display()));
            }
            files.extend(inside);
        } else {
            files.push(p.clone());
        }
    }
    let mut history = History::new();
    let mut promises: Option<(Promises, &Path)> = None;
    for f in &files {
        let file = File::open(f).map_err(|e| format!("{}: {e}", f.display()))?;
        let found = history
            .extend_jsonl(BufReader::new(file))
            .map_err(|e| format!("{}: {e}", f.display()))?;
        match (&promises, found) {
            (Some((p, first)), Some(q)) if *p != q => {
                return Err(format!(
                    "{} and {} promise different things ({p:?} and {q:?}): were they recorded \
                     by one run?",
                    first.display(),
                    f.display()
                ));
            }
            (None, Some(q)) => promises = Some((q, f)),
            _ => {}
        }
    }
    let promises = promises.map(|(p, _)| p).unwrap_or_default();
    Ok((history, promises, files.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("horus-check-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const HEADER: &str = "{\"horus_history\":2,\"promises\":{\"membership\":\"primary\"}}\n";
    const VIEW: &str = "{\"at\":1,\"p\":[1,0],\"ev\":\"view\",\"view\":{\"id\":{\"ltime\":0,\"coord\":[1,0]},\"members\":[[1,0]]}}\n";

    #[test]
    fn garbage_names_the_file_and_line() {
        let d = dir("garbage");
        let f = d.join("bad.jsonl");
        std::fs::write(&f, format!("{HEADER}{VIEW}not json\n")).unwrap();
        let err = read(std::slice::from_ref(&f)).unwrap_err();
        assert!(err.contains("bad.jsonl") && err.contains("line 3"), "{err}");
        let err = read(&[d.join("missing.jsonl")]).unwrap_err();
        assert!(err.contains("missing.jsonl"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn files_that_promise_different_things_are_refused() {
        let d = dir("promises");
        let (a, b) = (d.join("a.jsonl"), d.join("b.jsonl"));
        std::fs::write(&a, format!("{HEADER}{VIEW}")).unwrap();
        std::fs::write(&b, "{\"horus_history\":2,\"promises\":{\"membership\":\"static\"}}\n")
            .unwrap();
        let err = read(&[a.clone(), b]).unwrap_err();
        assert!(err.contains("promise different things"), "{err}");
        // A directory reads as its files.
        std::fs::remove_file(d.join("b.jsonl")).unwrap();
        let (h, p, n) = read(std::slice::from_ref(&d)).unwrap();
        assert_eq!((h.len(), n), (1, 1));
        assert_eq!(p.membership, horus_core::history::Membership::Primary);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
