//! Starting, driving and stopping one simulated cluster.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::config::SimConfig;
use crate::error::SimError;
use crate::faults::{FaultState, Faults, FaultsUpdate};
use crate::host::LocalHost;
use crate::kubelet::Kubelet;
use crate::state::ClusterState;
use crate::store::Store;
use crate::store::registry::ResourceId;
use crate::traffic::{TrafficCounters, TrafficCounts};
use crate::{api, nodes, server, traffic};

/// Namespaces every cluster starts with.
const INITIAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// A running simulated cluster. Dropping it without [`SimCluster::shutdown`] also stops it (its tasks
/// see the cancellation), but `shutdown` waits for them.
#[derive(Debug)]
pub struct SimCluster {
    state: Arc<ClusterState>,
    tasks: Arc<TaskTracker>,
}

impl SimCluster {
    /// Starts a cluster: binds its port, seeds namespaces and nodes, and starts the API server, the
    /// kubelet and the load balancers.
    pub async fn start(config: SimConfig) -> Result<Self, SimError> {
        config.validate().map_err(SimError::Config)?;
        let (listener, addr) = server::bind_loopback(config.port).await?;
        let store = Store::new(config.watch_history);
        seed(&store, &config)?;
        let state = Arc::new(ClusterState {
            addr,
            store,
            faults: FaultState::new(),
            traffic: TrafficCounters::new(config.behaviours.clone()),
            shutdown: CancellationToken::new(),
            config,
        });
        let tasks = Arc::new(TaskTracker::new());
        let span = tracing::info_span!("cluster", name = %state.config.name);
        tasks.spawn(
            server::serve(
                listener,
                api::router(Arc::clone(&state)),
                state.shutdown.clone(),
                Arc::clone(&tasks),
            )
            .instrument(span.clone()),
        );
        let host = LocalHost(Arc::clone(&state));
        tasks.spawn(Kubelet::new(host.clone()).run().instrument(span.clone()));
        tasks.spawn(traffic::run(host).instrument(span));
        tracing::info!(%addr, "simulated cluster started");
        Ok(Self { state, tasks })
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.state.config.name
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &SimConfig {
        &self.state.config
    }

    /// The API server's address.
    pub fn addr(&self) -> SocketAddr {
        self.state.addr
    }

    /// The API server's base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.state.addr)
    }

    /// A kube-rs configuration for this cluster: plain HTTP, no authentication, namespace `default`.
    pub fn kube_config(&self) -> kube::Config {
        // The URL is built from a socket address, so it always parses.
        let uri = self
            .url()
            .parse::<axum::http::Uri>()
            .unwrap_or_else(|_| unreachable!("a socket address URL always parses"));
        let mut config = kube::Config::new(uri);
        config.default_namespace = "default".into();
        config
    }

    /// A kube-rs client for this cluster.
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        kube::Client::try_from(self.kube_config())
    }

    /// A kubeconfig naming this cluster (cluster, user and context all named after it).
    pub fn kubeconfig_yaml(&self) -> String {
        crate::kubeconfig::kubeconfig_yaml(
            self.name(),
            &self.url(),
            crate::kubeconfig::Access::Anonymous,
        )
    }

    /// Writes [`SimCluster::kubeconfig_yaml`] to `path`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> Result<(), SimError> {
        let path = path.as_ref();
        std::fs::write(path, self.kubeconfig_yaml()).map_err(|source| SimError::WriteKubeconfig {
            path: path.display().to_string(),
            source,
        })
    }

    /// Requests sent by the prober and lost so far.
    pub fn traffic(&self) -> TrafficCounts {
        self.state.traffic.counts()
    }

    /// The faults in effect.
    pub fn faults(&self) -> Faults {
        self.state.faults.get()
    }

    /// Replaces every fault (see [`Faults`]).
    pub fn set_faults(&self, faults: Faults) {
        self.state.faults.set(faults);
    }

    /// Changes the faults named in `update`.
    pub fn update_faults(&self, update: FaultsUpdate) {
        self.state.faults.update(update);
    }

    /// Closes every open watch once.
    pub fn drop_watches(&self) {
        self.update_faults(FaultsUpdate {
            drop_watches: Some(true),
            ..FaultsUpdate::default()
        });
    }

    /// Names of the simulated nodes.
    pub fn node_names(&self) -> Vec<String> {
        (0..self.state.config.nodes)
            .map(|i| nodes::node_name(&self.state.config.name, i))
            .collect()
    }

    /// Makes a node Ready or NotReady (its pods become unready); false when there is no such node.
    pub fn set_node_ready(&self, node: &str, ready: bool) -> bool {
        nodes::set_node_ready(&self.state.store, node, ready)
    }

    /// The number of objects of a built-in or custom resource, e.g. `("", "pods")`.
    pub fn object_count(&self, group: &str, plural: &str) -> usize {
        self.state
            .store
            .snapshot(&ResourceId::new(group, plural))
            .len()
    }

    /// Stops the cluster and waits for its tasks.
    pub async fn shutdown(self) {
        self.state.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        tracing::info!(name = %self.state.config.name, "simulated cluster stopped");
    }

    /// A future that completes when the cluster has been told to shut down.
    pub fn cancelled(&self) -> impl Future<Output = ()> + Send + 'static {
        let token = self.state.shutdown.clone();
        async move { token.cancelled().await }
    }
}

impl Drop for SimCluster {
    fn drop(&mut self) {
        self.state.shutdown.cancel();
    }
}

fn seed(store: &Store, config: &SimConfig) -> Result<(), SimError> {
    let seed_err = |what: String| {
        move |e: crate::status::ApiError| SimError::Seed {
            what,
            message: e.message,
        }
    };
    let ns_type = store
        .resolve("", "v1", "namespaces")
        .ok_or_else(|| SimError::Config("namespaces are not served".into()))?;
    for ns in INITIAL_NAMESPACES {
        store
            .create(&ns_type, "v1", "", json!({"metadata": {"name": ns}}))
            .map_err(seed_err(format!("namespace {ns}")))?;
    }
    let node_type = store
        .resolve("", "v1", "nodes")
        .ok_or_else(|| SimError::Config("nodes are not served".into()))?;
    for node in nodes::node_objects(config) {
        let name = node["metadata"]["name"].as_str().unwrap_or("").to_string();
        store
            .create(&node_type, "v1", "", node)
            .map_err(seed_err(format!("node {name}")))?;
    }
    Ok(())
}
