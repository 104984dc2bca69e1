//! The federation hub.

use clap::Parser;
use std::process::ExitCode;

/// The hub copies and drops many small values (its model's copies, wire messages): mimalloc's
/// per-thread free lists make that far cheaper than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cafe_federation::hub_cli::Cli::parse();
    cafe_proto::logging::init(cli.log_format);
    cafe_federation::hub_cli::run(cli).await
}
