//! `cafe-agent`'s command line.

use crate::agent::RunOptions;
use crate::link::{HubEndpoint, LinkConfig};
use clap::{Parser, Subcommand, ValueEnum};
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

/// How logs are written (filtered by `RUST_LOG`, default `info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The agent's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the InPlaceSet CustomResourceDefinition as YAML.
    Crd,
    /// Run the InPlaceSet controller against a cluster until interrupted.
    Run {
        /// The member cluster's kubeconfig (default: the in-cluster service account).
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Serve /metrics and /healthz here.
        #[arg(long)]
        metrics_addr: Option<SocketAddr>,
        /// Watch only this namespace (default: all).
        #[arg(long)]
        namespace: Option<String>,
        /// Install or update the InPlaceSet CRD before starting.
        #[arg(long)]
        install_crd: bool,
        /// The hub to take slices from (`https://host:port`), or its replicas' URLs separated by
        /// commas (the agent finds the leader); without it the agent only runs the InPlaceSets
        /// already in the cluster.
        #[arg(long, requires = "cluster")]
        hub: Option<String>,
        /// The member cluster this agent serves (its certificate's identity).
        #[arg(long)]
        cluster: Option<String>,
        /// The agent bundle of `cafe-hub issue-agent` (ca.pem, agent.pem, agent-key.pem).
        #[arg(long, conflicts_with = "insecure")]
        tls_dir: Option<PathBuf>,
        /// Talk plaintext to a hub started with `--insecure` (local tries only).
        #[arg(long)]
        insecure: bool,
    },
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
        Command::Run {
            kubeconfig,
            metrics_addr,
            namespace,
            install_crd,
            hub,
            cluster,
            tls_dir,
            insecure,
        } => {
            init_logging(cli.log_format);
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

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
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
