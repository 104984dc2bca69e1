//! `cafe-sim`: runs a simulated Kubernetes member cluster.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

/// A simulated Kubernetes member cluster for tests, benchmarks and the playground.
#[derive(Debug, Parser)]
#[command(name = "cafe-sim", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve one simulated cluster until interrupted.
    Serve(ServeArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Cluster name.
    #[arg(long)]
    name: String,
    /// Port on 127.0.0.1 (0 picks a free one; the kubeconfig names the real one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Number of nodes.
    #[arg(long, default_value_t = cafe_sim::DEFAULT_NODES)]
    nodes: usize,
    /// Zones spread over the nodes, comma separated.
    #[arg(long, value_delimiter = ',')]
    zones: Vec<String>,
    /// Container start delay in milliseconds.
    #[arg(long, default_value_t = cafe_sim::DEFAULT_START_DELAY.as_millis() as u64)]
    start_delay_ms: u64,
    /// A simulated load balancer's pod finalizer (repeatable).
    #[arg(long = "traffic-finalizer")]
    traffic_finalizers: Vec<String>,
    /// Write a kubeconfig for the cluster here.
    #[arg(long)]
    kubeconfig_out: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Serve(args) = Cli::parse().command;
    let mut config = cafe_sim::SimConfig::new(args.name)
        .with_port(args.port)
        .with_nodes(args.nodes)
        .with_zones(args.zones)
        .with_start_delay(Duration::from_millis(args.start_delay_ms));
    config.traffic_finalizers = args.traffic_finalizers;
    cafe_sim::serve(config, args.kubeconfig_out, async {
        // Without a signal handler the process still stops on the signal's default action.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
    .await
    .context("cafe-sim serve failed")
}
