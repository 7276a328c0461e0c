//! `horus`: the command-line tool of Horus for Rust.

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
    /// Join a group: lines typed are cast, deliveries and views are printed.
    Member(member::MemberArgs),
    /// Ask every member of a group for its view and counters.
    Probe(probe::ProbeArgs),
    /// Check recorded histories against the guarantees of group communication.
    Check(check::CheckArgs),
    /// Run seeded simulations of a stack and check every history they produce.
    Sim(sim::SimArgs),
    /// A member driven by `horus demo` or a test over its stdin and stdout.
    #[command(hide = true)]
    DemoMember(member::ControlArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Member(args) => member::run(args),
        Command::Probe(args) => probe::run(args),
        Command::Check(args) => check::run(args),
        Command::Sim(args) => sim::run(args),
        Command::DemoMember(args) => member::run_controlled(args),
    }
}
