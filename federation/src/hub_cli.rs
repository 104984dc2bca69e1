//! `cafe-hub`'s command line: make certificates, and serve.

use crate::hub::server::{ServeOptions, serve};
use crate::names::ClusterName;
use crate::tls::{InitOptions, Role, init, issue_agent, issue_user};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// The default gRPC address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7443";

/// cafe-hub: the cafe-federation hub.
#[derive(Debug, Parser)]
#[command(name = "cafe-hub", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The hub's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a CA, the hub's certificate, admin/operator/viewer client certificates and cafectl configs.
    Init {
        /// Where to write them.
        #[arg(long)]
        dir: PathBuf,
        /// Names and addresses the hub's certificate is valid for.
        #[arg(long = "host", default_values_t = crate::tls::DEFAULT_HUB_HOSTS.map(String::from))]
        hosts: Vec<String>,
        /// The hub address written into the cafectl configs.
        #[arg(long, default_value = crate::tls::DEFAULT_HUB_URL)]
        hub_url: String,
        /// Replace an existing CA.
        #[arg(long)]
        force: bool,
    },
    /// Issue the certificate bundle of one member cluster's agent.
    IssueAgent {
        /// The member cluster: the agent's identity.
        #[arg(long)]
        cluster: String,
        /// The directory of `cafe-hub init`.
        #[arg(long)]
        dir: PathBuf,
        /// Where to write the bundle (default DIR/agents/CLUSTER).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Issue a client certificate and cafectl config for an operator.
    IssueUser {
        /// The user's name.
        #[arg(long)]
        name: String,
        /// viewer, operator or admin.
        #[arg(long)]
        role: String,
        /// The directory of `cafe-hub init`.
        #[arg(long)]
        dir: PathBuf,
        /// Where to write the bundle (default DIR/users/NAME).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Run the hub.
    Serve {
        /// Where the hub keeps its state (a redb file).
        #[arg(long)]
        data_dir: PathBuf,
        /// The gRPC address for agents and cafectl.
        #[arg(long, default_value = DEFAULT_LISTEN)]
        listen: SocketAddr,
        /// The address of /metrics and /healthz.
        #[arg(long)]
        metrics_listen: Option<SocketAddr>,
        /// The directory of `cafe-hub init`.
        #[arg(long)]
        tls_dir: Option<PathBuf>,
        /// Serve plaintext and trust every caller: for local tries only.
        #[arg(long, conflicts_with = "tls_dir")]
        insecure: bool,
        /// Evacuate units whose cluster stays unreachable (opt-in).
        #[arg(long)]
        auto_failover: bool,
        /// How long a cluster may be silent before automatic failover evacuates its units.
        #[arg(long, default_value_t = crate::hub::failover::DEFAULT_UNREACHABLE.as_secs())]
        unreachable_seconds: u64,
        /// Automatic failover never evacuates more than this share of all units (0 to 1).
        #[arg(long, default_value_t = crate::hub::failover::DEFAULT_MAX_EVACUATED_SHARE, value_parser = parse_share)]
        max_evacuated_share: f64,
    },
}

fn parse_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(share) if (0.0..=1.0).contains(&share) => Ok(share),
        _ => Err(format!("{text:?} is not a share between 0 and 1")),
    }
}

fn parse_role(role: &str) -> Result<Role, String> {
    match role {
        "viewer" => Ok(Role::Viewer),
        "operator" => Ok(Role::Operator),
        "admin" => Ok(Role::Admin),
        other => Err(format!(
            "--role: {other:?} is not viewer, operator or admin"
        )),
    }
}

/// Runs cafe-hub.
pub async fn run(cli: Cli) -> ExitCode {
    let result: Result<(), String> = match cli.command {
        Command::Init {
            dir,
            hosts,
            hub_url,
            force,
        } => {
            let options = InitOptions {
                dir,
                hub_hosts: hosts,
                hub_url,
                force,
            };
            init(&options)
                .map(|report| {
                    println!(
                        "wrote {} files to {}",
                        report.files.len(),
                        report.dir.display()
                    );
                    println!("cafectl config (admin): {}", report.admin_config.display());
                })
                .map_err(|e| e.to_string())
        }
        Command::IssueAgent { cluster, dir, out } => match ClusterName::new(cluster) {
            Ok(cluster) => issue_agent(&dir, &cluster, out.as_deref())
                .map(|bundle| println!("agent bundle for {cluster}: {}", bundle.dir.display()))
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("--cluster: {e}")),
        },
        Command::IssueUser {
            name,
            role,
            dir,
            out,
        } => parse_role(&role).and_then(|role| {
            issue_user(&dir, &name, role, out.as_deref())
                .map(|bundle| println!("user bundle for {name}: {}", bundle.dir.display()))
                .map_err(|e| e.to_string())
        }),
        Command::Serve {
            data_dir,
            listen,
            metrics_listen,
            tls_dir,
            insecure,
            auto_failover,
            unreachable_seconds,
            max_evacuated_share,
        } => {
            let failover = crate::hub::failover::FailoverPolicy {
                auto: auto_failover,
                unreachable: std::time::Duration::from_secs(unreachable_seconds),
                max_evacuated_share,
            };
            let options = ServeOptions {
                data_dir,
                listen,
                metrics_listen,
                tls_dir,
                insecure,
                failover,
            };
            serve(
                options,
                |bound| {
                    // The first line on stdout names the bound address (port 0 picks one); tools wait for it.
                    println!("cafe-hub listening on {}", bound.grpc);
                    if let Some(metrics) = bound.metrics {
                        println!("cafe-hub metrics on http://{metrics}/metrics");
                    }
                },
                shutdown_signal(),
            )
            .await
            .map_err(|e| crate::error_chain(&e))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
