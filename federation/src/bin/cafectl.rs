//! The operators' CLI.

use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    cafe_federation::cli::run(cafe_federation::cli::Cli::parse())
}
