//! cafe-playground: a hub, simulated member clusters and their agents on one machine.
//!
//! `up` starts them and waits; `demo` runs a narrated release and exits. `hub`, `agent` and `ctl`
//! run cafe-hub, cafe-agent and cafectl, so that one executable serves the playground's processes
//! (and the end-to-end tests, which can only name this package's executables).

use anyhow::Context as _;
use cafe_sim::member::Backend;
use cafe_tests::playground::{PlacedBehaviour, Playground, PlaygroundOptions};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// The hub copies and drops many small values (its model's copies, wire messages): mimalloc's
/// per-thread free lists make that far cheaper than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(name = "cafe-playground", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start a hub, 4 simulated clusters in 2 regions and their agents, and run until interrupted.
    Up {
        /// Where certificates, kubeconfigs, the hub's data and logs go.
        #[arg(long, default_value = "playground")]
        dir: PathBuf,
        /// What runs the member clusters: `sim` (cafe-sim in this process) or `kube` (real
        /// control planes built by scripts/control-plane.sh, with simulated nodes).
        #[arg(long, default_value = "sim")]
        clusters: Backend,
        /// Hub replicas: 1 (on redb) or more (on 3 etcd members, built by
        /// scripts/control-plane.sh; one replica leads).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=7))]
        hubs: u16,
        #[command(flatten)]
        monitoring: Monitoring,
        /// Start a Prometheus server (Debian's `prometheus`) scraping every cluster's simulated
        /// application every second; its URL goes to DIR/prometheus.url.
        #[arg(long)]
        prometheus: bool,
    },
    /// Run a narrated release (groups, pause, continue, completion, a rollback) and exit.
    Demo {
        /// Where the playground's files go (default: a temporary directory).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// What runs the member clusters: `sim` or `kube` (see `up`).
        #[arg(long, default_value = "sim")]
        clusters: Backend,
        /// Hub replicas (see `up`).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=7))]
        hubs: u16,
        #[command(flatten)]
        monitoring: Monitoring,
    },
    /// Run cafe-hub with the given arguments.
    #[command(disable_help_flag = true)]
    Hub {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run cafe-agent with the given arguments.
    #[command(disable_help_flag = true)]
    Agent {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run cafectl with the given arguments.
    #[command(disable_help_flag = true)]
    Ctl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// How the simulated application behaves.
#[derive(Debug, Clone, clap::Args)]
struct Monitoring {
    /// How the pods of an image answer requests, in every cluster or in one:
    /// IMAGE[@CLUSTER]=errorRatio:0.08,latencyMs:20 (repeatable).
    #[arg(long = "behaviour", value_parser = cafe_tests::playground::parse_placed_behaviour)]
    behaviours: Vec<PlacedBehaviour>,
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Hub { args } => {
            let cli = <cafe_federation::hub_cli::Cli as Parser>::parse_from(
                std::iter::once("cafe-hub".to_owned()).chain(args),
            );
            match runtime() {
                Ok(rt) => {
                    cafe_proto::logging::init(cli.log_format);
                    rt.block_on(cafe_federation::hub_cli::run(cli))
                }
                Err(error) => fail(&error),
            }
        }
        Command::Agent { args } => {
            let cli = <cafe_member_agent::cli::Cli as Parser>::parse_from(
                std::iter::once("cafe-agent".to_owned()).chain(args),
            );
            cafe_member_agent::cli::run(cli)
        }
        Command::Ctl { args } => {
            let cli = <cafe_federation::cli::Cli as Parser>::parse_from(
                std::iter::once("cafectl".to_owned()).chain(args),
            );
            match runtime() {
                Ok(rt) => rt.block_on(cafe_federation::cli::run(cli)),
                Err(error) => fail(&error),
            }
        }
        Command::Up {
            dir,
            clusters,
            hubs,
            monitoring,
            prometheus,
        } => match runtime().and_then(|rt| {
            rt.block_on(up(
                dir,
                clusters,
                usize::from(hubs),
                monitoring.behaviours,
                prometheus,
            ))
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&error),
        },
        Command::Demo {
            dir,
            clusters,
            hubs,
            monitoring,
        } => match runtime().and_then(|rt| {
            rt.block_on(demo(
                dir,
                clusters,
                usize::from(hubs),
                monitoring.behaviours,
            ))
        }) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => fail(&error),
        },
    }
}

fn fail(error: &anyhow::Error) -> ExitCode {
    eprintln!("error: {error:#}");
    ExitCode::FAILURE
}

async fn start(
    dir: PathBuf,
    backend: Backend,
    hubs: usize,
    behaviours: Vec<PlacedBehaviour>,
    prometheus: bool,
) -> anyhow::Result<Playground> {
    if prometheus {
        // Before anything starts: the flag fails at once without the binary.
        cafe_tests::monitoring::prometheus_binary()?;
    }
    let binary = std::env::current_exe().context("cannot find this executable")?;
    let what = match backend {
        Backend::Sim => "4 simulated clusters",
        Backend::Kube => "4 real control planes with simulated nodes",
    };
    let hub = if hubs > 1 {
        format!("3 etcd members, {hubs} hub replicas")
    } else {
        "a hub".to_owned()
    };
    println!(
        "starting {hub}, {what} and their agents in {} ...",
        dir.display()
    );
    let mut options = PlaygroundOptions::new(dir, binary)
        .with_backend(backend)
        .with_hubs(hubs);
    options.behaviours = behaviours;
    options.prometheus = prometheus;
    Playground::start(options).await
}

async fn up(
    dir: PathBuf,
    backend: Backend,
    hubs: usize,
    behaviours: Vec<PlacedBehaviour>,
    prometheus: bool,
) -> anyhow::Result<()> {
    let dir = std::path::absolute(&dir)?;
    let playground = start(dir.clone(), backend, hubs, behaviours, prometheus).await?;
    println!("\nThe playground is up.");
    if let Some(etcd) = &playground.etcd {
        println!("  etcd:         {}", etcd.urls().join(","));
        for url in &playground.hub_urls {
            println!("  hub replica:  {url}");
        }
    } else {
        println!("  hub:          {}", playground.hub_url);
    }
    for (name, cluster) in &playground.clusters {
        println!(
            "  cluster {name}: {} (kubeconfig {})",
            cluster.cluster.url(),
            cluster.kubeconfig.display()
        );
    }
    println!(
        "  clusters:     {} ({} backend)",
        dir.join("clusters.json").display(),
        playground.backend
    );
    if let Some(prometheus) = &playground.prometheus {
        println!("  prometheus:   {} (DIR/prometheus.url)", prometheus.url);
    }
    println!(
        "  check gate:   {} (a webhook for spec.strategy.analysis)",
        playground.check_gate.url
    );
    println!("  logs:         {}", dir.join("logs").display());
    println!("\nTry:");
    println!(
        "  export CAFE_CONFIG={}",
        dir.join("cafectl.yaml").display()
    );
    println!("  cafectl get clusters");
    if hubs > 1 {
        println!("  cafectl get hubs");
    }
    println!("  cafectl apply -f deploy/examples/demo.yaml");
    println!("  cafectl status payments -n finance --watch");
    println!(
        "  kubectl --kubeconfig {} get pods -A",
        dir.join("kubeconfigs/sh-dc1.yaml").display()
    );
    println!("\nPress Ctrl-C to stop.");
    cafe_federation::hub_cli::shutdown_signal().await;
    playground.shutdown().await;
    Ok(())
}

async fn demo(
    dir: Option<PathBuf>,
    backend: Backend,
    hubs: usize,
    behaviours: Vec<PlacedBehaviour>,
) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = match dir {
        Some(dir) => std::path::absolute(dir)?,
        None => temp.path().to_owned(),
    };
    // The demo verifies its releases with Prometheus when it is installed, else with the
    // application's own check endpoint as a webhook.
    let prometheus = cafe_tests::monitoring::prometheus_binary().is_ok();
    let playground = start(dir, backend, hubs, behaviours, prometheus).await?;
    let result = cafe_tests::demo::run(&playground).await;
    playground.shutdown().await;
    result?;
    println!("\nDemo complete.");
    Ok(())
}
