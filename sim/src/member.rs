//! A member cluster of either backend, behind one interface: a simulated cluster in-process (`sim`),
//! or a real control plane whose nodes are simulated (`kube`). Tests and the playground pick the
//! backend with [`Backend::from_env`] and start clusters with [`Members`].

use std::path::Path;

use crate::config::SimConfig;
use crate::control_plane::{ControlPlane, KubeCluster};
use crate::error::SimError;
use crate::traffic::TrafficCounts;
use crate::{FaultsUpdate, SimCluster};

/// The environment variable that picks the member-cluster backend of the tests: `sim` (the default)
/// or `kube`.
pub const BACKEND_ENV: &str = "CAFE_CLUSTERS";
/// The namespace the agent runs in, as `deploy/agent/` ships it.
pub const AGENT_NAMESPACE: &str = "cafe-system";
/// The agent's ServiceAccount, as `deploy/agent/` ships it.
pub const AGENT_SERVICE_ACCOUNT: &str = "cafe-agent";

/// How an agent reaches its cluster.
#[derive(Debug, Clone)]
pub struct AgentAccess {
    /// The kubeconfig to run it with.
    pub kubeconfig: String,
    /// Whether it must install the InPlaceSet CRD itself (`cafe-agent run --install-crd`).
    pub install_crd: bool,
}

/// What runs a member cluster's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// cafe-sim's own API server, in this process.
    #[default]
    Sim,
    /// etcd, kube-apiserver, kube-controller-manager and kube-scheduler, with simulated nodes.
    Kube,
}

impl Backend {
    /// The backend named by [`BACKEND_ENV`]; `sim` when it is unset. Panics on another value, so
    /// that a typo does not silently test the wrong thing.
    pub fn from_env() -> Self {
        match std::env::var(BACKEND_ENV) {
            Err(_) => Self::Sim,
            Ok(value) => value
                .parse()
                .unwrap_or_else(|e| panic!("{BACKEND_ENV}: {e}")),
        }
    }

    /// `sim` or `kube`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sim => "sim",
            Self::Kube => "kube",
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sim" => Ok(Self::Sim),
            "kube" => Ok(Self::Kube),
            other => Err(format!("unknown backend {other:?}: expected sim or kube")),
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Starts member clusters of one backend. With `kube`, the clusters share one etcd, which lives as
/// long as any of them.
#[derive(Debug)]
pub struct Members {
    backend: Backend,
    control_plane: Option<ControlPlane>,
}

impl Members {
    /// A factory for `backend`; with `kube` it starts etcd, with its files under `dir`.
    pub async fn new(backend: Backend, dir: &Path) -> Result<Self, SimError> {
        let control_plane = match backend {
            Backend::Sim => None,
            Backend::Kube => Some(ControlPlane::start(dir.join("control-plane")).await?),
        };
        Ok(Self {
            backend,
            control_plane,
        })
    }

    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Starts a cluster.
    pub async fn start(&self, config: SimConfig) -> Result<MemberCluster, SimError> {
        match &self.control_plane {
            None => Ok(MemberCluster::Sim(SimCluster::start(config).await?)),
            Some(plane) => Ok(MemberCluster::Kube(Box::new(
                plane.add_cluster(config).await?,
            ))),
        }
    }
}

/// One member cluster.
#[derive(Debug)]
pub enum MemberCluster {
    /// A simulated cluster.
    Sim(SimCluster),
    /// A real control plane with simulated nodes.
    Kube(Box<KubeCluster>),
}

impl MemberCluster {
    /// The cluster's name.
    pub fn name(&self) -> &str {
        match self {
            Self::Sim(c) => c.name(),
            Self::Kube(c) => c.name(),
        }
    }

    /// Its backend.
    pub fn backend(&self) -> Backend {
        match self {
            Self::Sim(_) => Backend::Sim,
            Self::Kube(_) => Backend::Kube,
        }
    }

    /// The API server's URL.
    pub fn url(&self) -> String {
        match self {
            Self::Sim(c) => c.url(),
            Self::Kube(c) => c.url().to_string(),
        }
    }

    /// An administrator's client.
    pub fn client(&self) -> Result<kube::Client, SimError> {
        match self {
            Self::Sim(c) => c.client().map_err(|source| SimError::Kube {
                what: format!("cannot make a client for {}", c.name()),
                source,
            }),
            Self::Kube(c) => Ok(c.client()),
        }
    }

    /// The administrator's kubeconfig.
    pub fn kubeconfig_yaml(&self) -> String {
        match self {
            Self::Sim(c) => c.kubeconfig_yaml(),
            Self::Kube(c) => c.kubeconfig_yaml().to_string(),
        }
    }

    /// The simulation endpoint (`/sim/v1/traffic`, `/sim/v1/faults`, ...).
    pub fn control_url(&self) -> String {
        match self {
            Self::Sim(c) => c.url(),
            Self::Kube(c) => c.control_url(),
        }
    }

    /// Requests sent by the simulated load balancers' prober and lost so far.
    pub fn traffic(&self) -> TrafficCounts {
        match self {
            Self::Sim(c) => c.traffic(),
            Self::Kube(c) => c.traffic(),
        }
    }

    /// Names of the simulated nodes.
    pub fn node_names(&self) -> Vec<String> {
        match self {
            Self::Sim(c) => c.node_names(),
            Self::Kube(c) => c.nodes().node_names(),
        }
    }

    /// Makes a node Ready or NotReady (its pods become unready); false when there is no such node.
    pub async fn set_node_ready(&self, node: &str, ready: bool) -> Result<bool, SimError> {
        match self {
            Self::Sim(c) => Ok(c.set_node_ready(node, ready)),
            Self::Kube(c) => c.nodes().set_node_ready(node, ready).await,
        }
    }

    /// Takes the cluster's API offline (requests hang or fail) or back online.
    pub fn set_offline(&self, offline: bool) -> Result<(), SimError> {
        match self {
            Self::Sim(c) => {
                c.update_faults(FaultsUpdate {
                    offline: Some(offline),
                    ..FaultsUpdate::default()
                });
                Ok(())
            }
            Self::Kube(c) => c.set_offline(offline),
        }
    }

    /// Prepares the cluster for an agent installed as `deploy/` says, and returns the kubeconfig the
    /// agent runs with. On `kube`: `crd` (the InPlaceSet CRD) and `agent_manifests` (namespace,
    /// ServiceAccount and RBAC) are applied as the administrator, and the kubeconfig carries a token
    /// of the agent's ServiceAccount, so that the agent has exactly the shipped permissions. On `sim`,
    /// which authorizes everything, the agent installs the CRD itself and gets the administrator's
    /// kubeconfig.
    pub async fn prepare_agent(
        &self,
        crd: &str,
        agent_manifests: &[&str],
    ) -> Result<AgentAccess, SimError> {
        match self {
            Self::Sim(c) => Ok(AgentAccess {
                kubeconfig: c.kubeconfig_yaml(),
                install_crd: true,
            }),
            Self::Kube(c) => {
                c.apply_yaml(crd).await?;
                for manifest in agent_manifests {
                    c.apply_yaml(manifest).await?;
                }
                let kubeconfig = c
                    .service_account_kubeconfig(AGENT_NAMESPACE, AGENT_SERVICE_ACCOUNT)
                    .await?;
                Ok(AgentAccess {
                    kubeconfig,
                    install_crd: false,
                })
            }
        }
    }

    /// Applies multi-document YAML as the administrator (server-side apply).
    pub async fn apply_yaml(&self, yaml: &str) -> Result<(), SimError> {
        crate::control_plane::apply_yaml(&self.client()?, yaml).await
    }

    /// Stops the cluster.
    pub async fn shutdown(self) {
        match self {
            Self::Sim(c) => c.shutdown().await,
            Self::Kube(c) => c.shutdown().await,
        }
    }
}
