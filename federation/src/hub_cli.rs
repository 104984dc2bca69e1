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
    /// Log format (filtered by `RUST_LOG`, default `info`).
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t,
        env = "CAFE_LOG_FORMAT"
    )]
    pub log_format: cafe_proto::logging::LogFormat,
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
        /// Issue everything from this existing CA certificate (PEM; with --ca-key) instead of a
        /// new one: an intermediate CA of your PKI.
        #[arg(long, requires = "ca_key", value_name = "FILE")]
        ca_cert: Option<PathBuf>,
        /// The existing CA's private key (PEM, PKCS#8).
        #[arg(long, requires = "ca_cert", value_name = "FILE")]
        ca_key: Option<PathBuf>,
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
        /// The store: redb (one hub, a file under --data-dir) or etcd (several replicas, one
        /// elected leader).
        #[command(flatten)]
        store: StoreArgs,
        /// The URL agents and cafectl reach this replica at (default https://LISTEN); followers
        /// send callers to the leader's.
        #[arg(long)]
        advertise_url: Option<String>,
        /// The leader's etcd lease TTL, in seconds (etcd store only).
        #[arg(long, default_value_t = crate::store::etcd::election::DEFAULT_LEASE_TTL.as_secs())]
        lease_ttl_seconds: u64,
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
        /// Post release and failover events to this URL (`http://`), as JSON, with retries; a
        /// slow receiver never slows the hub (see docs/decisions.md for the document).
        #[arg(long, value_name = "URL", value_parser = parse_webhook)]
        notify_webhook: Option<String>,
    },
    /// Write every record of the store to a file (a consistent snapshot; safe while hubs run).
    Backup {
        /// The store to read.
        #[command(flatten)]
        store: StoreArgs,
        /// The backup file.
        #[arg(long)]
        out: PathBuf,
    },
    /// Load a backup into an empty store (no hub may be running on it).
    Restore {
        /// The store to fill.
        #[command(flatten)]
        store: StoreArgs,
        /// The backup file.
        #[arg(long)]
        from: PathBuf,
        /// Replace what the store holds.
        #[arg(long)]
        force: bool,
    },
    /// Copy a redb hub's state into an empty etcd store.
    Migrate {
        /// The redb data directory.
        #[arg(long)]
        from_redb: PathBuf,
        /// The etcd members' client URLs.
        #[arg(long, value_delimiter = ',', required = true)]
        to_etcd: Vec<String>,
        /// The etcd settings other than the endpoints.
        #[command(flatten)]
        etcd: EtcdArgs,
        /// Replace what the etcd store holds.
        #[arg(long)]
        force: bool,
    },
}

/// Which store, and where.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    /// redb or etcd.
    #[arg(long, value_enum, default_value_t = StoreKind::Redb)]
    pub store: StoreKind,
    /// Where a redb store lives (a directory).
    #[arg(long, required_if_eq("store", "redb"))]
    pub data_dir: Option<PathBuf>,
    /// The etcd members' client URLs (comma-separated).
    #[arg(long, value_delimiter = ',', required_if_eq("store", "etcd"))]
    pub etcd_endpoints: Vec<String>,
    /// The etcd settings.
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// The store kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// One hub, one embedded file.
    Redb,
    /// Several hub replicas on an etcd cluster.
    Etcd,
}

/// etcd's settings besides its endpoints.
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdArgs {
    /// The key prefix of every record.
    #[arg(long, default_value = crate::store::etcd::DEFAULT_PREFIX)]
    pub etcd_prefix: String,
    /// The CA certificate that verifies the etcd members (https:// endpoints).
    #[arg(long)]
    pub etcd_ca: Option<PathBuf>,
    /// A client certificate for etcd's --client-cert-auth.
    #[arg(long, requires = "etcd_key")]
    pub etcd_cert: Option<PathBuf>,
    /// Its key.
    #[arg(long, requires = "etcd_cert")]
    pub etcd_key: Option<PathBuf>,
    /// Most operations in one etcd transaction: the members' --max-txn-ops.
    #[arg(long, default_value_t = crate::store::etcd::DEFAULT_MAX_TXN_OPS)]
    pub etcd_max_txn_ops: usize,
}

impl EtcdArgs {
    fn options(&self, endpoints: Vec<String>) -> crate::store::EtcdOptions {
        let mut options = crate::store::EtcdOptions::new(endpoints);
        options.prefix = self.etcd_prefix.clone();
        options.tls = crate::store::etcd::EtcdTls {
            ca: self.etcd_ca.clone(),
            cert: self.etcd_cert.clone(),
            key: self.etcd_key.clone(),
        };
        options.max_txn_ops = self.etcd_max_txn_ops.max(2);
        options
    }
}

impl StoreArgs {
    /// The etcd options, when the store is etcd.
    pub fn etcd_options(&self) -> Option<crate::store::EtcdOptions> {
        (self.store == StoreKind::Etcd).then(|| self.etcd.options(self.etcd_endpoints.clone()))
    }

    /// The redb directory (empty when the store is etcd).
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir.clone().unwrap_or_default()
    }
}

fn parse_webhook(text: &str) -> Result<String, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http"), Some(_)) => Ok(text.to_owned()),
        (Some("https"), _) => Err(format!(
            "{text:?}: https:// is not supported yet; use http:// (a sidecar or a local relay)"
        )),
        _ => Err(format!("{text:?}: expected http://HOST[:PORT]/PATH")),
    }
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
            ca_cert,
            ca_key,
        } => {
            let options = InitOptions {
                dir,
                hub_hosts: hosts,
                hub_url,
                force,
                ca: ca_cert.zip(ca_key),
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
            store,
            advertise_url,
            lease_ttl_seconds,
            listen,
            metrics_listen,
            tls_dir,
            insecure,
            auto_failover,
            unreachable_seconds,
            max_evacuated_share,
            notify_webhook,
        } => {
            let failover = crate::hub::failover::FailoverPolicy {
                auto: auto_failover,
                unreachable: std::time::Duration::from_secs(unreachable_seconds),
                max_evacuated_share,
            };
            let replicated = store.etcd_options().map(|etcd| {
                let mut replica = crate::hub::replicated::ReplicaOptions::new(etcd);
                replica.lease_ttl = std::time::Duration::from_secs(lease_ttl_seconds.max(2));
                replica
            });
            let options = ServeOptions {
                data_dir: store.data_dir(),
                listen,
                metrics_listen,
                tls_dir,
                insecure,
                failover,
                advertise_url,
                replicated,
                notify_webhook,
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
        Command::Backup { store, out } => crate::backup::backup(&store, &out).await,
        Command::Restore { store, from, force } => {
            crate::backup::restore(&store, &from, force).await
        }
        Command::Migrate {
            from_redb,
            to_etcd,
            etcd,
            force,
        } => crate::backup::migrate(&from_redb, etcd.options(to_etcd), force).await,
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
