//! Real Kubernetes control planes for the tests and the playground: etcd, kube-apiserver (RBAC and
//! the default admission plugins on), kube-controller-manager and kube-scheduler as processes, built
//! from their Go modules by `scripts/control-plane.sh`, with [`SimNodes`] simulating the nodes.
//!
//! Several clusters share one etcd, each API server under its own `--etcd-prefix`, as kwokctl does:
//! one etcd process instead of one per cluster.

pub mod etcd;
mod manifests;
mod pki;
mod process;

pub use manifests::{APPLY_MANAGER, apply_yaml, parse_documents};
pub use process::free_port;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, PostParams};

use crate::config::SimConfig;
use crate::error::SimError;
use crate::faults::{Faults, FaultsUpdate};
use crate::remote::{FaultInjector, SimNodes};
use crate::traffic::TrafficCounts;
use pki::Authority;
use process::Process;

/// The environment variable naming the directory of the control-plane binaries; without it they are
/// looked up with `scripts/control-plane.sh bin`.
pub const BIN_ENV: &str = "CAFE_CONTROL_PLANE_BIN";
/// The script that builds (and locates) the binaries, in this source tree.
const BUILD_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/control-plane.sh");
/// How long a started component may take to answer.
const READY_DEADLINE: Duration = Duration::from_secs(90);
/// How often a component is asked whether it is ready.
const POLL: Duration = Duration::from_millis(100);
/// The administrator the kubeconfigs authenticate as (in `system:masters`).
pub const ADMIN_USER: &str = "cafe-admin";
/// How long a service-account token handed to an agent is valid.
const AGENT_TOKEN_SECONDS: i64 = 7 * 24 * 3600;
/// The controllers kube-controller-manager runs: garbage collection (owner references), namespace
/// deletion, the `default` ServiceAccount of each namespace (which the ServiceAccount admission
/// plugin needs before it admits a pod), node lifecycle (the not-ready taints) and pod garbage
/// collection. Token secrets, replica sets and the rest are not needed by anything the tests run.
const CONTROLLERS: &str = "garbage-collector-controller,namespace-controller,serviceaccount-controller,node-lifecycle-controller,pod-garbage-collector-controller";

fn io_error(what: String) -> impl FnOnce(std::io::Error) -> SimError {
    move |source| SimError::ControlPlane {
        what,
        source: Some(source),
    }
}

/// `dir` as an absolute path, emptied, with a `logs` directory in it.
fn fresh_dir(dir: &Path) -> Result<PathBuf, SimError> {
    let dir =
        std::path::absolute(dir).map_err(io_error(format!("bad directory {}", dir.display())))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .map_err(io_error(format!("cannot empty {}", dir.display())))?;
    }
    std::fs::create_dir_all(dir.join("logs"))
        .map_err(io_error(format!("cannot create {}", dir.display())))?;
    Ok(dir)
}

/// The directory holding `kube-apiserver`, `kube-controller-manager`, `kube-scheduler` and `etcd`.
pub fn binaries() -> Result<PathBuf, SimError> {
    if let Some(dir) = std::env::var_os(BIN_ENV) {
        return Ok(PathBuf::from(dir));
    }
    let out = std::process::Command::new("bash")
        .arg(BUILD_SCRIPT)
        .arg("bin")
        .output()
        .map_err(io_error(format!("cannot run {BUILD_SCRIPT}")))?;
    if !out.status.success() {
        return Err(SimError::ControlPlane {
            what: format!(
                "the control plane is not built: run scripts/control-plane.sh build (or set {BIN_ENV}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            source: None,
        });
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// A factory of real member clusters sharing one etcd; files go under its directory.
#[derive(Debug)]
pub struct ControlPlane {
    bin: PathBuf,
    dir: PathBuf,
    authority: Arc<Authority>,
    etcd: Arc<Process>,
    etcd_url: String,
}

impl ControlPlane {
    /// Starts etcd with its data and the clusters' files under `dir`.
    pub async fn start(dir: impl AsRef<Path>) -> Result<Self, SimError> {
        let bin = binaries()?;
        // A control plane starts empty: an earlier run's etcd data would bring its nodes, pods and
        // InPlaceSets back.
        let dir = fresh_dir(dir.as_ref())?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let data = dir.join("etcd");
        let etcd = Process::spawn(
            "etcd",
            &bin.join("etcd"),
            &[
                format!("--data-dir={}", data.display()),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                // Test data: losing it in a power cut does not matter, fsync latency does.
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
            &dir.join("logs/etcd.log"),
        )?;
        let health = format!("127.0.0.1:{client_port}");
        process::wait_until(READY_DEADLINE, POLL, &etcd, || {
            process::http_get_contains(&health, "/health", "\"health\":\"true\"")
        })
        .await?;
        Ok(Self {
            bin,
            dir,
            authority: Arc::new(Authority::generate()?),
            etcd: Arc::new(etcd),
            etcd_url,
        })
    }

    /// Starts a member cluster: its API server, controller manager and scheduler, and simulated
    /// nodes as `config` describes them (name, nodes, zones, timings, balancers).
    pub async fn add_cluster(&self, config: SimConfig) -> Result<KubeCluster, SimError> {
        let name = config.name.clone();
        let files = self.dir.join(&name);
        std::fs::create_dir_all(&files)
            .map_err(io_error(format!("cannot create {}", files.display())))?;
        let write = |file: &str, content: &str| {
            let path = files.join(file);
            std::fs::write(&path, content)
                .map_err(io_error(format!("cannot write {}", path.display())))?;
            Ok::<PathBuf, SimError>(path)
        };
        let serving = self.authority.issue_server(&name)?;
        let ca = write("ca.crt", self.authority.cert_pem())?;
        let cert = write("apiserver.crt", &serving.cert_pem)?;
        let key = write("apiserver.key", &serving.key_pem)?;
        let (sa_key, sa_pub) = pki::service_account_keys()?;
        let sa_key = write("sa.key", &sa_key)?;
        let sa_pub = write("sa.pub", &sa_pub)?;
        let token = pki::token();
        let tokens = write(
            "tokens.csv",
            &format!("{token},{ADMIN_USER},{ADMIN_USER},system:masters\n"),
        )?;
        let port = free_port()?;
        let url = format!("https://127.0.0.1:{port}");
        let log = |component: &str| self.dir.join(format!("logs/{name}-{component}.log"));
        let apiserver = Process::spawn(
            "kube-apiserver",
            &self.bin.join("kube-apiserver"),
            &[
                format!("--etcd-servers={}", self.etcd_url),
                format!("--etcd-prefix=/cafe-sim/{name}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--tls-cert-file={}", cert.display()),
                format!("--tls-private-key-file={}", key.display()),
                format!("--token-auth-file={}", tokens.display()),
                "--authorization-mode=RBAC".into(),
                format!("--service-account-issuer={url}"),
                format!("--service-account-key-file={}", sa_pub.display()),
                format!("--service-account-signing-key-file={}", sa_key.display()),
                "--service-cluster-ip-range=10.0.0.0/24".into(),
                "--allow-privileged=true".into(),
                // A loopback address cannot be the `kubernetes` Service's endpoint.
                "--endpoint-reconciler-type=none".into(),
                "--profiling=false".into(),
            ],
            &log("apiserver"),
        )?;
        let admin_kubeconfig = kubeconfig_yaml(&name, &url, &ca, &token);
        let admin_path = write("admin.kubeconfig", &admin_kubeconfig)?;
        let client = client_from(&admin_kubeconfig).await?;
        process::wait_until(READY_DEADLINE, POLL, &apiserver, || {
            let client = client.clone();
            async move { readyz(&client).await }
        })
        .await?;
        let kubeconfig_flag = format!("--kubeconfig={}", admin_path.display());
        let controller_manager = Process::spawn(
            "kube-controller-manager",
            &self.bin.join("kube-controller-manager"),
            &[
                kubeconfig_flag.clone(),
                "--leader-elect=false".into(),
                format!("--controllers={CONTROLLERS}"),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
            ],
            &log("controller-manager"),
        )?;
        let scheduler = Process::spawn(
            "kube-scheduler",
            &self.bin.join("kube-scheduler"),
            &[
                kubeconfig_flag,
                "--leader-elect=false".into(),
                "--bind-address=127.0.0.1".into(),
                "--secure-port=0".into(),
            ],
            &log("scheduler"),
        )?;
        // Pods are admitted only once their namespace's `default` ServiceAccount exists: the cluster
        // is ready for work when the controller manager has made the first one.
        let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        process::wait_until(READY_DEADLINE, POLL, &controller_manager, || {
            let accounts = accounts.clone();
            async move { matches!(accounts.get_opt("default").await, Ok(Some(_))) }
        })
        .await?;
        let apiserver = Arc::new(apiserver);
        let faults = Arc::new(ProcessFaults {
            apiserver: Arc::clone(&apiserver),
            offline: std::sync::Mutex::new(false),
        });
        let nodes = SimNodes::start(
            client.clone(),
            config.clone(),
            0,
            Arc::clone(&faults) as Arc<dyn FaultInjector>,
        )
        .await?;
        // kube-scheduler places pods only on nodes without the not-ready taint, which the node
        // lifecycle controller lifts once it sees them Ready.
        let names = nodes.node_names();
        let node_api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
        process::wait_until(READY_DEADLINE, POLL, &controller_manager, || {
            let node_api = node_api.clone();
            let names = names.clone();
            async move {
                let Ok(list) = node_api.list(&Default::default()).await else {
                    return false;
                };
                let untainted = |n: &k8s_openapi::api::core::v1::Node| {
                    n.spec
                        .as_ref()
                        .and_then(|s| s.taints.as_ref())
                        .is_none_or(|t| t.iter().all(|t| t.key != "node.kubernetes.io/not-ready"))
                };
                names.iter().all(|name| {
                    list.items
                        .iter()
                        .any(|n| n.metadata.name.as_deref() == Some(name.as_str()) && untainted(n))
                })
            }
        })
        .await?;
        Ok(KubeCluster {
            config,
            url,
            admin_kubeconfig,
            ca,
            client,
            nodes,
            faults,
            components: vec![Arc::new(controller_manager), Arc::new(scheduler), apiserver],
            _etcd: Arc::clone(&self.etcd),
        })
    }
}

/// Whether the API server says it is ready.
async fn readyz(client: &kube::Client) -> bool {
    let Ok(request) = http::Request::get("/readyz").body(Vec::new()) else {
        return false;
    };
    client
        .request_text(request)
        .await
        .is_ok_and(|body| body.trim() == "ok")
}

/// A kubeconfig for `url` with a bearer token, trusting `ca`.
fn kubeconfig_yaml(name: &str, url: &str, ca: &Path, token: &str) -> String {
    crate::kubeconfig::kubeconfig_yaml(name, url, crate::kubeconfig::Access::Token { ca, token })
}

/// A client from a kubeconfig's text.
pub async fn client_from(kubeconfig: &str) -> Result<kube::Client, SimError> {
    let what = || "cannot make a client from a kubeconfig".to_string();
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(kubeconfig).map_err(|e| SimError::ControlPlane {
            what: format!("{}: {e}", what()),
            source: None,
        })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| SimError::ControlPlane {
            what: format!("{}: {e}", what()),
            source: None,
        })?;
    kube::Client::try_from(config).map_err(|source| SimError::Kube {
        what: what(),
        source,
    })
}

/// The faults of a control plane this process runs: `offline` stops the API server process
/// (SIGSTOP) and lets it go on (SIGCONT), so that connections hang as they do to a datacenter that
/// is cut off. Latency, errors and dropped watches would need a proxy in front of the API server.
#[derive(Debug)]
struct ProcessFaults {
    apiserver: Arc<Process>,
    offline: std::sync::Mutex<bool>,
}

impl FaultInjector for ProcessFaults {
    fn faults(&self) -> Faults {
        Faults {
            offline: *self
                .offline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            ..Faults::default()
        }
    }

    fn update(&self, update: FaultsUpdate) -> Result<Faults, String> {
        let unsupported: Vec<&str> = [
            ("latencyMs", update.latency_ms.is_some_and(|l| l > 0)),
            ("errorRate", update.error_rate.is_some_and(|r| r > 0.0)),
            ("dropWatches", update.drop_watches == Some(true)),
        ]
        .into_iter()
        .filter_map(|(name, asked)| asked.then_some(name))
        .collect();
        if !unsupported.is_empty() {
            return Err(format!(
                "{} cannot be injected into a real API server (only offline can)",
                unsupported.join(", ")
            ));
        }
        if let Some(offline) = update.offline {
            let mut current = self
                .offline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if *current != offline {
                self.apiserver
                    .signal(if offline { "STOP" } else { "CONT" })
                    .map_err(|e| e.to_string())?;
                *current = offline;
            }
        }
        Ok(self.faults())
    }
}

/// A running member cluster on a real control plane.
pub struct KubeCluster {
    config: SimConfig,
    url: String,
    admin_kubeconfig: String,
    ca: PathBuf,
    client: kube::Client,
    nodes: SimNodes,
    faults: Arc<ProcessFaults>,
    /// Stopped in this order: the controllers before the API server they talk to.
    components: Vec<Arc<Process>>,
    _etcd: Arc<Process>,
}

impl std::fmt::Debug for KubeCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeCluster")
            .field("name", &self.config.name)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl KubeCluster {
    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The API server's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The administrator's kubeconfig (a `system:masters` token; the CA is a file beside it).
    pub fn kubeconfig_yaml(&self) -> &str {
        &self.admin_kubeconfig
    }

    /// An administrator's client.
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The simulated nodes' control endpoint.
    pub fn control_url(&self) -> String {
        self.nodes.control_url()
    }

    /// Requests sent by the prober and lost so far.
    pub fn traffic(&self) -> TrafficCounts {
        self.nodes.traffic()
    }

    /// The simulated nodes.
    pub fn nodes(&self) -> &SimNodes {
        &self.nodes
    }

    /// Takes the API server offline (stopped, connections hang) or back online.
    pub fn set_offline(&self, offline: bool) -> Result<(), SimError> {
        self.faults
            .update(FaultsUpdate {
                offline: Some(offline),
                ..FaultsUpdate::default()
            })
            .map(|_| ())
            .map_err(|what| SimError::ControlPlane { what, source: None })
    }

    /// A kubeconfig that authenticates as the ServiceAccount `namespace/name`, with a token from the
    /// TokenRequest API (as a pod's projected token would be).
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<String, SimError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(AGENT_TOKEN_SECONDS),
                ..TokenRequestSpec::default()
            },
            ..TokenRequest::default()
        };
        let answer = api
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .map_err(|source| SimError::Kube {
                what: format!("cannot get a token for ServiceAccount {namespace}/{name}"),
                source,
            })?;
        let token = answer.status.map(|s| s.token).unwrap_or_default();
        Ok(kubeconfig_yaml(
            &format!("{}-{name}", self.config.name),
            &self.url,
            &self.ca,
            &token,
        ))
    }

    /// Applies multi-document YAML as the administrator (server-side apply).
    pub async fn apply_yaml(&self, yaml: &str) -> Result<(), SimError> {
        apply_yaml(&self.client, yaml).await
    }

    /// Stops the simulated nodes and the cluster's processes.
    pub async fn shutdown(self) {
        let _ = self.set_offline(false);
        self.nodes.shutdown().await;
        for component in &self.components {
            component.kill().await;
        }
    }
}
