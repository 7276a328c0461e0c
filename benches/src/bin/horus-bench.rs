//! `horus-bench`: a group of member processes on this host over UDP, beside raw UDP.
//!
//! ```text
//! horus-bench --members 3 --senders all --size 1000 --count 100000 --level total --json
//! ```
//!
//! See [`horus_benches::multi`] for what is measured and how. Exit status: 0 with a report,
//! 1 when the run fails (the error says what it waited for), 2 on a usage error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use horus_benches::multi::{self, BenchArgs, MemberArgs};

/// Measure a process group of Horus for Rust on this host (or one member of a group across
/// hosts, --join), beside raw UDP.
#[derive(Parser, Debug)]
#[command(
    name = "horus-bench",
    version,
    about,
    long_about = multi::long_about("horus-bench"),
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
    #[command(subcommand)]
    member: Option<Hidden>,
}

#[derive(Subcommand, Debug)]
enum Hidden {
    /// One member process of a run (started by the run itself).
    #[command(hide = true)]
    Member(MemberArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Hidden::Member(args)) = cli.member {
        return match multi::member(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("horus-bench member: {e}");
                ExitCode::FAILURE
            }
        };
    }
    multi::cli(&cli.bench, &["member"])
}
