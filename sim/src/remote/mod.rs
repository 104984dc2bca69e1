//! Simulated nodes for a real API server: the same kubelet and load balancers as a simulated cluster
//! runs, as a kube-rs controller against any Kubernetes API server (`cafe-sim nodes`).
//!
//! It registers Nodes with zone labels and renews their Leases in `kube-node-lease`, runs the pods
//! kube-scheduler binds to them (start delay, readiness gates, crash loops, image pull errors,
//! in-place image restarts, graceful deletion finished with grace 0), plays the load balancers that
//! hold the traffic finalizers, and counts lost requests. Its control endpoint serves
//! `/sim/v1/traffic`, `/sim/v1/faults` and `/sim/v1/nodes/{name}/ready` as a simulated cluster's does.

mod host;
mod mirror;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use kube::runtime::watcher;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::SimConfig;
use crate::error::SimError;
use crate::faults::{Faults, FaultsUpdate};
use crate::kubelet::Kubelet;
use crate::nodes::{node_objects, ready_condition};
use crate::time::now_micro;
use crate::traffic::{self, TrafficCounters, TrafficCounts};
use host::RemoteHost;
use mirror::{Keep, Mirror};

/// How often each node's Lease is renewed and its Ready condition refreshed. The node lifecycle
/// controller marks a node unreachable after 50 s without a renewal; 10 s is the kubelet's default.
pub const NODE_HEARTBEAT: Duration = Duration::from_secs(10);
/// A node Lease's duration, as the kubelet sets it.
const NODE_LEASE_SECONDS: i32 = 40;
/// How long the first list of pods and nodes may take before start-up fails.
const SYNC_DEADLINE: Duration = Duration::from_secs(30);
/// The field manager of everything the simulated nodes write by server-side apply.
pub const FIELD_MANAGER: &str = "cafe-sim-nodes";

/// Faults a real control plane can be given. The simulated nodes cannot make a real API server slow
/// or erroneous; whoever runs the API server process can take it offline.
pub trait FaultInjector: Send + Sync + 'static {
    /// The faults in effect.
    fn faults(&self) -> Faults;
    /// Changes the faults named in `update`; refuses those it cannot inject, naming them.
    fn update(&self, update: FaultsUpdate) -> Result<Faults, String>;
}

/// Injects nothing: every fault is refused (an API server run by someone else).
#[derive(Debug, Default)]
pub struct NoFaults;

impl FaultInjector for NoFaults {
    fn faults(&self) -> Faults {
        Faults::default()
    }

    fn update(&self, update: FaultsUpdate) -> Result<Faults, String> {
        if update == FaultsUpdate::default() {
            return Ok(Faults::default());
        }
        Err("faults cannot be injected into this API server".into())
    }
}

/// Running simulated nodes.
pub struct SimNodes {
    host: RemoteHost,
    ready: Arc<Mutex<BTreeMap<String, bool>>>,
    control: SocketAddr,
    tasks: TaskTracker,
}

impl std::fmt::Debug for SimNodes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNodes")
            .field("cluster", &self.host.config.name)
            .field("control", &self.control)
            .finish_non_exhaustive()
    }
}

fn node_resource() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::core::v1::Node>(&())
}

fn lease_resource() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::coordination::v1::Lease>(&())
}

fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> SimError {
    let what = what.into();
    move |source| SimError::Kube { what, source }
}

/// The shared state of the control endpoint.
#[derive(Clone)]
struct Control {
    host: RemoteHost,
    ready: Arc<Mutex<BTreeMap<String, bool>>>,
    faults: Arc<dyn FaultInjector>,
}

impl SimNodes {
    /// Registers `config.nodes` nodes (named and zoned as a simulated cluster's) through `client`,
    /// and runs their kubelet and the balancers of `config.traffic_finalizers` until
    /// [`SimNodes::shutdown`]. The control endpoint listens on `127.0.0.1:control_port` (0 picks a
    /// port); `faults` decides what `/sim/v1/faults` can do.
    pub async fn start(
        client: kube::Client,
        config: SimConfig,
        control_port: u16,
        faults: Arc<dyn FaultInjector>,
    ) -> Result<Self, SimError> {
        config.validate().map_err(SimError::Config)?;
        let objects = node_objects(&config);
        let names: BTreeSet<String> = objects
            .iter()
            .filter_map(|n| n["metadata"]["name"].as_str().map(str::to_string))
            .collect();
        // The control endpoint's port first: nothing is started yet if it cannot be had.
        let (listener, control) = crate::server::bind_loopback(control_port).await?;
        register_nodes(&client, &objects).await?;
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let span = tracing::info_span!("sim_nodes", cluster = %config.name);
        let node_names = Arc::new(names.clone());
        // Pods bound to these nodes, and the nodes themselves.
        let on_our_node = naming_one_of(&node_names, "/spec/nodeName");
        let ours = naming_one_of(&node_names, "/metadata/name");
        let (pods, pods_task) = Mirror::start(
            Api::all_with(client.clone(), &host::pod_resource()),
            watcher::Config::default(),
            on_our_node,
            shutdown.clone(),
        );
        let (nodes, nodes_task) = Mirror::start(
            Api::all_with(client.clone(), &node_resource()),
            watcher::Config::default(),
            ours,
            shutdown.clone(),
        );
        tasks.spawn(pods_task.instrument(span.clone()));
        tasks.spawn(nodes_task.instrument(span.clone()));
        let synced = async {
            pods.wait_synced().await;
            nodes.wait_synced().await;
        };
        if tokio::time::timeout(SYNC_DEADLINE, synced).await.is_err() {
            shutdown.cancel();
            return Err(SimError::Config(format!(
                "the API server did not list pods and nodes within {SYNC_DEADLINE:?}"
            )));
        }
        let host = RemoteHost {
            client,
            traffic: Arc::new(TrafficCounters::new(config.behaviours.clone())),
            config: Arc::new(config),
            shutdown: shutdown.clone(),
            pods,
            nodes,
        };
        let ready = Arc::new(Mutex::new(
            names.iter().map(|n| (n.clone(), true)).collect(),
        ));
        let router = control_router(Control {
            host: host.clone(),
            ready: Arc::clone(&ready),
            faults,
        });
        let stop = shutdown.clone();
        tasks.spawn(
            async move {
                let serve = axum::serve(listener, router)
                    .with_graceful_shutdown(async move { stop.cancelled().await });
                if let Err(error) = serve.await {
                    tracing::error!(%error, "the control endpoint failed");
                }
            }
            .instrument(span.clone()),
        );
        tasks.spawn(Kubelet::new(host.clone()).run().instrument(span.clone()));
        tasks.spawn(traffic::run(host.clone()).instrument(span.clone()));
        tasks.spawn(heartbeats(host.clone(), Arc::clone(&ready)).instrument(span));
        tracing::info!(cluster = %host.config.name, %control, "simulated nodes started");
        Ok(Self {
            host,
            ready,
            control,
            tasks,
        })
    }

    /// The control endpoint's base URL, e.g. `http://127.0.0.1:41234`.
    pub fn control_url(&self) -> String {
        format!("http://{}", self.control)
    }

    /// Requests sent by the prober and lost so far.
    pub fn traffic(&self) -> TrafficCounts {
        self.host.traffic.counts()
    }

    /// Names of the simulated nodes.
    pub fn node_names(&self) -> Vec<String> {
        self.lock_ready().keys().cloned().collect()
    }

    fn lock_ready(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, bool>> {
        self.ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Makes a node Ready or NotReady (its pods' containers become unready); false when there is no
    /// such node.
    pub async fn set_node_ready(&self, node: &str, ready: bool) -> Result<bool, SimError> {
        set_ready(&self.host, &self.ready, node, ready).await
    }

    /// Stops the kubelet, the balancers and the control endpoint, and waits for them. The nodes stay
    /// registered (a stopped kubelet leaves its Node behind too).
    pub async fn shutdown(self) {
        self.host.shutdown.cancel();
        self.tasks.close();
        self.tasks.wait().await;
    }
}

impl Drop for SimNodes {
    fn drop(&mut self) {
        self.host.shutdown.cancel();
    }
}

/// Keeps the objects whose string at `pointer` is one of `names`.
fn naming_one_of(names: &Arc<BTreeSet<String>>, pointer: &'static str) -> Keep {
    let names = Arc::clone(names);
    Arc::new(move |object: &Value| {
        object
            .pointer(pointer)
            .and_then(Value::as_str)
            .is_some_and(|n| names.contains(n))
    })
}

/// Creates each node (an existing one is taken over) and writes its status.
async fn register_nodes(client: &kube::Client, objects: &[Value]) -> Result<(), SimError> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &node_resource());
    for node in objects {
        let name = node["metadata"]["name"].as_str().unwrap_or_default();
        let mut main = node.clone();
        if let Some(m) = main.as_object_mut() {
            m.remove("status");
        }
        let object: DynamicObject = serde_json::from_value(main)
            .map_err(|e| SimError::Config(format!("node {name}: {e}")))?;
        match api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(kube_error(format!("cannot register node {name}"))(error)),
        }
        let status = json!({"status": node["status"]});
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .map_err(kube_error(format!(
                "cannot write the status of node {name}"
            )))?;
    }
    Ok(())
}

/// Renews every node's Lease and refreshes its Ready condition, every [`NODE_HEARTBEAT`].
async fn heartbeats(host: RemoteHost, ready: Arc<Mutex<BTreeMap<String, bool>>>) {
    let leases: Api<DynamicObject> =
        Api::namespaced_with(host.client.clone(), "kube-node-lease", &lease_resource());
    let mut tick = tokio::time::interval(NODE_HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = host.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let nodes: Vec<(String, bool)> = ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .map(|(n, r)| (n.clone(), *r))
            .collect();
        for (node, is_ready) in nodes {
            let lease = json!({
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": node, "namespace": "kube-node-lease"},
                "spec": {
                    "holderIdentity": node,
                    "leaseDurationSeconds": NODE_LEASE_SECONDS,
                    "renewTime": now_micro(),
                },
            });
            let params = PatchParams::apply(FIELD_MANAGER).force();
            if let Err(error) = leases.patch(&node, &params, &Patch::Apply(&lease)).await {
                tracing::warn!(%error, %node, "cannot renew the node's Lease");
            }
            if let Err(error) = write_ready(&host, &node, is_ready).await {
                tracing::warn!(%error, %node, "cannot refresh the node's status");
            }
        }
    }
}

async fn write_ready(host: &RemoteHost, node: &str, ready: bool) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(host.client.clone(), &node_resource());
    let status = json!({"status": {"conditions": [ready_condition(ready)]}});
    api.patch_status(node, &PatchParams::default(), &Patch::Strategic(&status))
        .await
        .map(|_| ())
}

async fn set_ready(
    host: &RemoteHost,
    ready: &Mutex<BTreeMap<String, bool>>,
    node: &str,
    is_ready: bool,
) -> Result<bool, SimError> {
    {
        let mut ready = ready
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match ready.get_mut(node) {
            Some(r) => *r = is_ready,
            None => return Ok(false),
        }
    }
    write_ready(host, node, is_ready)
        .await
        .map_err(kube_error(format!(
            "cannot write the status of node {node}"
        )))?;
    tracing::info!(node, ready = is_ready, "node readiness changed");
    Ok(true)
}

fn control_router(control: Control) -> Router {
    Router::new()
        .route("/sim/v1/traffic", get(get_traffic))
        .route("/sim/v1/faults", get(get_faults).post(post_faults))
        .route("/sim/v1/nodes/{name}/ready", post(post_node_ready))
        .merge(crate::application::routes(Arc::clone(
            &control.host.traffic.app,
        )))
        .with_state(control)
}

async fn get_traffic(State(control): State<Control>) -> Json<TrafficCounts> {
    Json(control.host.traffic.counts())
}

async fn get_faults(State(control): State<Control>) -> Json<Faults> {
    Json(control.faults.faults())
}

async fn post_faults(State(control): State<Control>, Json(update): Json<FaultsUpdate>) -> Response {
    match control.faults.update(update) {
        Ok(faults) => Json(faults).into_response(),
        Err(message) => (StatusCode::BAD_REQUEST, message).into_response(),
    }
}

#[derive(Debug, serde::Deserialize)]
struct NodeReady {
    ready: bool,
}

async fn post_node_ready(
    State(control): State<Control>,
    Path(name): Path<String>,
    Json(body): Json<NodeReady>,
) -> Response {
    match set_ready(&control.host, &control.ready, &name, body.ready).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => (StatusCode::NOT_FOUND, format!("no node {name}")).into_response(),
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}
