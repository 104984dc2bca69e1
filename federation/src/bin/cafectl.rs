//! The operators' CLI.

use clap::Parser;
use std::process::ExitCode;

/// One thread is plenty: cafectl makes a handful of calls, one after the other.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    cafe_federation::cli::run(cafe_federation::cli::Cli::parse()).await
}
