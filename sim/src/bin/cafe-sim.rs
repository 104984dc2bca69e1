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
    /// Simulate the nodes (kubelet, load balancers, traffic prober) of a real API server until
    /// interrupted.
    Nodes(NodesArgs),
}

/// The simulated nodes, as both commands take them.
#[derive(Debug, clap::Args)]
struct SimulationArgs {
    /// The cluster's name: nodes are named NAME-node-I.
    #[arg(long)]
    name: String,
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
    /// How the pods of an image answer requests, as IMAGE=errorRatio:0.08,latencyMs:20
    /// (repeatable; `POST /sim/v1/behaviours` changes them later).
    #[arg(long = "behaviour", value_parser = cafe_sim::parse_behaviour)]
    behaviours: Vec<(String, cafe_sim::Behaviour)>,
}

impl SimulationArgs {
    fn config(self) -> cafe_sim::SimConfig {
        let mut config = cafe_sim::SimConfig::new(self.name)
            .with_nodes(self.nodes)
            .with_zones(self.zones)
            .with_start_delay(Duration::from_millis(self.start_delay_ms));
        config.traffic_finalizers = self.traffic_finalizers;
        config.behaviours = self.behaviours.into_iter().collect();
        config
    }
}

#[derive(Debug, clap::Args)]
struct NodesArgs {
    /// The kubeconfig of the API server (it needs to create Nodes and Leases and write pods).
    #[arg(long)]
    kubeconfig: PathBuf,
    #[command(flatten)]
    simulation: SimulationArgs,
    /// Port of the control endpoint (/sim/v1/traffic) on 127.0.0.1; 0 picks a free one.
    #[arg(long, default_value_t = 0)]
    control_port: u16,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the kubeconfig names the real one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[command(flatten)]
    simulation: SimulationArgs,
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
    let args = match Cli::parse().command {
        Command::Serve(args) => args,
        Command::Nodes(args) => return nodes(args).await,
    };
    let config = args.simulation.config().with_port(args.port);
    cafe_sim::serve(config, args.kubeconfig_out, async {
        // Without a signal handler the process still stops on the signal's default action.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    })
    .await
    .context("cafe-sim serve failed")
}

async fn nodes(args: NodesArgs) -> anyhow::Result<()> {
    let kubeconfig = std::fs::read_to_string(&args.kubeconfig)
        .with_context(|| format!("cannot read {}", args.kubeconfig.display()))?;
    let client = cafe_sim::control_plane::client_from(&kubeconfig)
        .await
        .with_context(|| format!("cannot use {}", args.kubeconfig.display()))?;
    let config = args.simulation.config();
    let name = config.name.clone();
    let nodes = cafe_sim::SimNodes::start(
        client,
        config,
        args.control_port,
        std::sync::Arc::new(cafe_sim::NoFaults),
    )
    .await
    .context("cannot start the simulated nodes")?;
    // stdout is the binary's interface here: the line announces the control endpoint's port.
    println!(
        "cafe-sim: nodes of {name} running; control endpoint {}",
        nodes.control_url()
    );
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
    nodes.shutdown().await;
    Ok(())
}
