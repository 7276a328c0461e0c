//! `horus`: the command-line tool of Horus for Rust.

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
    /// Run seeded simulations of a stack and check every history they produce.
    Sim(sim::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Sim(args) => sim::run(args),
    }
}
