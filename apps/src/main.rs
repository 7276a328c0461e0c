//! `horus`: the command-line tool of Horus for Rust.

/// Prints a line on stdout, and goes on if nobody reads it any more (`| head` closed it):
/// the run's outcome is its exit status, and what it started must still be reaped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// [`say!`] without the newline.
macro_rules! say_part {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = write!(out, $($arg)*);
        let _ = out.flush();
    }};
}

mod appdemos;
mod chatcmd;
mod check;
mod demo;
mod member;
mod probe;
mod sim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Horus for Rust: virtually synchronous process groups.
#[derive(Parser, Debug)]
#[command(name = "horus", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a small group of member processes: they join, cast, lose a member and take a
    /// restarted one back with its state.
    Demo(demo::DemoArgs),
    /// Join a chat room: lines typed are said to everyone, the transcript is printed.
    Chat(chatcmd::ChatArgs),
    /// Join a group: lines typed are cast, deliveries and views are printed.
    Member(member::MemberArgs),
    /// Ask every member of a group for its view and counters.
    Probe(probe::ProbeArgs),
    /// Check recorded histories against the guarantees of group communication.
    Check(check::CheckArgs),
    /// Run seeded simulations of a stack and check every history they produce.
    Sim(sim::SimArgs),
    /// Measure a group of member processes on this host (or one member of a group across
    /// hosts, --join), beside raw UDP with the same pattern.
    #[command(long_about = horus_benches::multi::long_about("horus bench"))]
    Bench(horus_benches::multi::BenchArgs),
    /// One member process of `horus bench` (started by the benchmark itself).
    #[command(hide = true)]
    BenchMember(horus_benches::multi::MemberArgs),
    /// A member driven by `horus demo` or a test over its stdin and stdout.
    #[command(hide = true)]
    DemoMember(member::ControlArgs),
    /// A member of an application demo, driven by `horus demo <app>` over stdin and stdout.
    #[command(hide = true)]
    AppMember(horus_apps::appmember::AppMemberArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Chat(args) => chatcmd::run(args),
        Command::Member(args) => member::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Check(args) => check::run(args),
        Command::Sim(args) => sim::run(args),
        Command::DemoMember(args) => member::run_controlled(args),
        Command::AppMember(args) => horus_apps::appmember::run(args),
        Command::Bench(args) => horus_benches::multi::cli(&args, &["bench-member"]),
        Command::BenchMember(args) => match horus_benches::multi::member(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("horus bench member: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
