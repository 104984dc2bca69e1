//! The member agent.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    cafe_member_agent::cli::run(cafe_member_agent::cli::Cli::parse())
}
