//! The federation hub.

use clap::Parser;
use std::process::ExitCode;

/// The hub copies and drops many small values (its model's copies, wire messages): mimalloc's
/// per-thread free lists make that far cheaper than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    cafe_federation::hub_cli::run(cafe_federation::hub_cli::Cli::parse()).await
}
