//! `cafe-agent run`: the controller on its own, with its metrics endpoint.

use crate::controller::{ControllerConfig, run_controller};
use crate::error::Error;
use crate::lease::{Elector, Standing};
use crate::link::{KubeClusterSide, LinkConfig, StatusBoard, run_link};
use crate::metrics::Metrics;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::sync::watch;

/// What `cafe-agent run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The member cluster's kubeconfig (`None`: in-cluster configuration, or `$KUBECONFIG`).
    pub kubeconfig: Option<PathBuf>,
    /// Where to serve `/metrics` and `/healthz` (`None`: nowhere).
    pub metrics_addr: Option<SocketAddr>,
    /// Watch only this namespace.
    pub namespace: Option<String>,
    /// Install or update the InPlaceSet CRD first (needs CRD write permission).
    pub install_crd: bool,
    /// The hub link, when the agent takes slices from a hub.
    pub link: Option<LinkConfig>,
    /// Leader election among the agent's replicas (`--leader-elect`): only the Lease's holder runs
    /// the controller and the link.
    pub leader_election: Option<crate::lease::LeaseConfig>,
}

/// A kube client from a kubeconfig file (its current context).
pub async fn client_from_kubeconfig(path: &std::path::Path) -> Result<Client, Error> {
    let kubeconfig = |source| Error::Kubeconfig {
        path: path.display().to_string(),
        source,
    };
    let file = Kubeconfig::read_from(path).map_err(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
        .await
        .map_err(kubeconfig)?;
    Client::try_from(config).map_err(|e| Error::kube("build the client", e))
}

/// Runs the controller (and the metrics endpoint) until `shutdown` completes.
pub async fn run(
    options: RunOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), Error> {
    let client = match &options.kubeconfig {
        Some(path) => client_from_kubeconfig(path).await?,
        None => {
            let config = kube::Config::infer().await.map_err(Error::InferConfig)?;
            Client::try_from(config).map_err(|e| Error::kube("build the client", e))?
        }
    };
    if options.install_crd {
        crate::install::ensure_crd(client.clone()).await?;
    }
    let mut registry = Registry::default();
    let metrics = Metrics::new(&mut registry);
    let registry = Arc::new(registry);
    let (stop, stopped) = watch::channel(false);
    let stop = Arc::new(stop);
    let wait = move || {
        let mut stopped = stopped.clone();
        async move {
            // An error means the sender is gone, which also means stop.
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let signal = {
        let stop = Arc::clone(&stop);
        let stopping = wait();
        async move {
            tokio::select! {
                () = shutdown => {
                    tracing::info!("shutting down");
                    stop.send_replace(true);
                }
                // Stopped from inside (a lost lease).
                () = stopping => {}
            }
        }
    };
    let elector = options
        .leader_election
        .clone()
        .map(|config| Arc::new(Elector::new(client.clone(), config)));
    let readiness = readiness(elector.as_deref());
    let server = async {
        match options.metrics_addr {
            Some(addr) => crate::server::serve(addr, registry, readiness, wait()).await,
            None => Ok(()),
        }
    };
    let config = ControllerConfig {
        namespace: options.namespace.clone(),
        instance: std::env::var("HOSTNAME").ok(),
        ..ControllerConfig::default()
    };
    let act = async {
        let link = async {
            let Some(mut link) = options.link.clone() else {
                return Ok(());
            };
            link.gauges = metrics.link.clone();
            let board = StatusBoard::default();
            let side = Arc::new(KubeClusterSide::new(client.clone(), board.clone()));
            let watch = side.run_status_watch(wait());
            let linked = run_link(link, Arc::clone(&side), board, wait());
            let ((), linked) = tokio::join!(watch, linked);
            linked.map_err(Error::Link)
        };
        metrics.link.leader.set(1);
        let controller = run_controller(client.clone(), config, metrics.clone(), wait());
        let (ran, linked) = tokio::join!(controller, link);
        ran.and(linked)
    };
    let acting = async {
        let Some(elector) = elector else {
            return act.await;
        };
        tokio::select! {
            () = elector.acquire() => {}
            () = wait() => return Ok(()),
        }
        let acted = tokio::select! {
            acted = act => acted,
            why = elector.hold() => {
                // Nothing more may be written: another replica may take over soon. The process
                // exits, and comes back as a candidate.
                tracing::error!(reason = %why, "lost the lease: this agent stops acting");
                Err(Error::LostLease(why))
            }
        };
        if acted.is_ok() {
            elector.release().await;
        }
        stop.send_replace(true);
        acted
    };
    let ((), served, acted) = tokio::join!(signal, server, acting);
    served.and(acted)
}

/// What `/readyz` answers: with leader election, ready while leading or standing by behind a
/// known holder (the Lease can be read); without, ready once serving.
fn readiness(elector: Option<&Elector>) -> crate::server::Readiness {
    let Some(elector) = elector else {
        return Arc::new(|| Ok("ok".to_owned()));
    };
    let standing = elector.standing();
    Arc::new(move || match &*standing.borrow() {
        Standing::Leading => Ok("leading".to_owned()),
        Standing::StandingBy { holder } => Ok(format!(
            "standing by (the lease is held by {})",
            holder.as_deref().unwrap_or("nobody")
        )),
        Standing::Starting => Err("the lease has not been read yet".to_owned()),
        Standing::Unreachable(why) => Err(format!("cannot read the lease: {why}")),
        Standing::Lost(why) => Err(format!("lost the lease: {why}")),
    })
}
