//! `cafe-agent`'s command line.

use crate::agent::RunOptions;
use crate::link::{HubEndpoint, LinkConfig};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// cafe-agent: the cafe-federation member agent.
#[derive(Debug, Parser)]
#[command(name = "cafe-agent", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "CAFE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

pub use cafe_proto::logging::LogFormat;

/// The agent's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the InPlaceSet CustomResourceDefinition as YAML.
    Crd,
    /// Run the InPlaceSet controller against a cluster until interrupted.
    Run(Box<RunArgs>),
}

/// `cafe-agent run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The member cluster's kubeconfig (default: the in-cluster service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Serve /metrics, /healthz and /readyz here.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
    /// Watch only this namespace (default: all).
    #[arg(long)]
    pub namespace: Option<String>,
    /// Install or update the InPlaceSet CRD before starting.
    #[arg(long)]
    pub install_crd: bool,
    /// The hub to take slices from (`https://host:port`), or its replicas' URLs separated by
    /// commas (the agent finds the leader); without it the agent only runs the InPlaceSets
    /// already in the cluster.
    #[arg(long, env = "CAFE_HUB", requires = "cluster")]
    pub hub: Option<String>,
    /// The member cluster this agent serves (its certificate's identity).
    #[arg(long, env = "CAFE_CLUSTER")]
    pub cluster: Option<String>,
    /// The agent's certificates: the bundle of `cafe-hub issue-agent` (ca.pem, agent.pem,
    /// agent-key.pem) or a kubernetes.io/tls Secret as cert-manager writes it (ca.crt,
    /// tls.crt, tls.key). Read again on every connection, so a renewed one needs no restart.
    #[arg(long, env = "CAFE_TLS_DIR", conflicts_with = "insecure")]
    pub tls_dir: Option<PathBuf>,
    /// Talk plaintext to a hub started with `--insecure` (local tries only).
    #[arg(long)]
    pub insecure: bool,
    /// Run several replicas: only the holder of a coordination.k8s.io Lease runs the
    /// controller and the hub link; the others stand by and take over when it goes.
    #[arg(long)]
    pub leader_elect: bool,
    /// The Lease's namespace (default: $POD_NAMESPACE, else cafe-system).
    #[arg(long, env = "POD_NAMESPACE", default_value = "cafe-system")]
    pub leader_elect_namespace: String,
    /// The Lease's name.
    #[arg(long, default_value = "cafe-agent")]
    pub leader_elect_name: String,
    /// This replica's identity in the Lease (default: $POD_NAME, else $HOSTNAME).
    #[arg(long, env = "POD_NAME")]
    pub leader_elect_identity: Option<String>,
    /// How long a holder that stopped renewing keeps the Lease, in seconds.
    #[arg(long, default_value_t = crate::lease::DEFAULT_LEASE_DURATION.as_secs(), value_parser = clap::value_parser!(u64).range(2..))]
    pub leader_elect_lease_seconds: u64,
}

/// Runs the agent's command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Crd => match crate::crd::inplaceset_crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: cannot render the CRD: {error}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            let RunArgs {
                kubeconfig,
                metrics_addr,
                namespace,
                install_crd,
                hub,
                cluster,
                tls_dir,
                insecure,
                leader_elect,
                leader_elect_namespace,
                leader_elect_name,
                leader_elect_identity,
                leader_elect_lease_seconds,
            } = *args;
            cafe_proto::logging::init(cli.log_format);
            let leader_election = leader_elect.then(|| crate::lease::LeaseConfig {
                namespace: leader_elect_namespace,
                name: leader_elect_name,
                identity: leader_elect_identity
                    .or_else(|| std::env::var("HOSTNAME").ok())
                    .unwrap_or_else(|| format!("cafe-agent-{}", std::process::id())),
                lease_duration: std::time::Duration::from_secs(leader_elect_lease_seconds),
            });
            let link = match (hub, cluster, tls_dir, insecure) {
                (None, _, _, _) => None,
                (Some(url), Some(cluster), _, true) => {
                    Some(LinkConfig::new(cluster, HubEndpoint::Insecure { url }))
                }
                (Some(url), Some(cluster), Some(dir), false) => {
                    Some(LinkConfig::new(cluster, HubEndpoint::Tls { url, dir }))
                }
                (Some(_), _, _, _) => {
                    eprintln!("error: --hub needs --cluster and either --tls-dir or --insecure");
                    return ExitCode::from(2);
                }
            };
            let options = RunOptions {
                kubeconfig,
                metrics_addr,
                namespace,
                install_crd,
                link,
                leader_election,
            };
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("error: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(crate::agent::run(options, shutdown_signal())) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "cafe-agent failed");
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
