//! cafe-bench: the hub's speed and size at 1,000 clusters (see `cafe_tests::bench`).
//!
//! `cafe-bench SCENARIO [--clusters N] [--deployments N] [--units-per-deployment N] [--pods N]
//! [-o json|table]` prints one JSON document per scenario (one per line) or a readable table.

use anyhow::Context as _;
use cafe_tests::bench::{Options, Scenario, render, run};
use clap::{Parser, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// The executable that runs the hub (`EXE hub serve ...`), looked up next to this one.
const HUB_BINARY: &str = "cafe-playground";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Json,
    Table,
}

#[derive(Debug, Parser)]
#[command(name = "cafe-bench", version, about = "Measure the cafe hub at scale")]
struct Cli {
    /// The scenario.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Member clusters (one unit each, regions of 100).
    #[arg(long, default_value_t = 1000)]
    clusters: usize,
    /// CafeDeployments.
    #[arg(long, default_value_t = 2000)]
    deployments: usize,
    /// Units each deployment runs in.
    #[arg(long, default_value_t = 5)]
    units_per_deployment: usize,
    /// Pods of the rollout scenario.
    #[arg(long, default_value_t = 200)]
    pods: usize,
    /// The cafe-playground executable (default: next to this one).
    #[arg(long)]
    hub_binary: Option<PathBuf>,
    /// The hub's store: redb, or etcd (three members on this machine).
    #[arg(long, value_enum, default_value_t)]
    store: cafe_tests::bench::hub_process::BenchStore,
    /// Runs of `leader`.
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
        .and_then(|rt| rt.block_on(bench(cli)))
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn bench(cli: Cli) -> anyhow::Result<()> {
    let hub_binary = match cli.hub_binary {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("this executable has no directory")?
            .join(HUB_BINARY),
    };
    let options = Options {
        clusters: cli.clusters,
        deployments: cli.deployments,
        units_per_deployment: cli.units_per_deployment,
        pods: cli.pods,
        hub_binary,
        store: cli.store,
        runs: cli.runs,
    };
    for scenario in cli.scenario.expand() {
        let report = run(scenario, &options).await?;
        println!("{}", render(&report, cli.output == Output::Json)?);
    }
    Ok(())
}
