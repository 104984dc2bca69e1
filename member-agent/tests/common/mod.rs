//! Helpers shared by the controller's tests, against the member-cluster backend `CAFE_CLUSTERS`
//! names: cafe-sim (`sim`, the default) or a real control plane (`kube`), where the agent runs with
//! its ServiceAccount's token and the RBAC of `deploy/agent/` as shipped.
#![allow(dead_code)]

use cafe_member_agent::crd::{InPlaceSet, InPlaceSetSpec, LabelSelector, TrafficPolicy};
use cafe_member_agent::names::{DRAIN_STARTED_ANNOTATION, REVISION_LABEL, SET_LABEL};
use cafe_member_agent::{ControllerConfig, Metrics, ensure_crd, run_controller};
use cafe_sim::member::{Backend, MemberCluster, Members};
use cafe_sim::{SimCluster, SimConfig};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Api, Client, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// The balancer finalizer the tests declare.
pub const LB: &str = "traffic.cafe.io/lb";
/// The namespace the tests use.
pub const NS: &str = "default";
/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(20);
/// Default deadline for a rollout step.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Fast simulator timings with one balancer.
pub fn fast_sim(name: &str) -> SimConfig {
    SimConfig::new(name)
        .with_zones(["zone-a", "zone-b"])
        .with_nodes(4)
        .with_start_delay(Duration::from_millis(100))
        .with_lb_reaction_delay(Duration::from_millis(50))
        .with_deregistration_delay(Duration::from_millis(50))
        .with_traffic_finalizer(LB)
}

/// The InPlaceSet CRD, as `deploy/` ships it.
pub const CRD_YAML: &str = include_str!("../../../deploy/crds/inplaceset.yaml");
/// The agent's namespace, ServiceAccount and RBAC, as `deploy/` ships them.
pub const AGENT_MANIFESTS: [&str; 2] = [
    include_str!("../../../deploy/agent/namespace.yaml"),
    include_str!("../../../deploy/agent/rbac.yaml"),
];

/// A member cluster with the agent's access prepared.
pub struct Cluster {
    pub member: MemberCluster,
    agent: Client,
    agent_kubeconfig: String,
    _members: Members,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Requests sent and lost by the simulated balancers.
    pub fn traffic(&self) -> cafe_sim::TrafficCounts {
        self.member.traffic()
    }

    /// The client the agent runs with: on `kube`, its ServiceAccount's.
    pub fn agent_client(&self) -> Client {
        self.agent.clone()
    }

    /// The kubeconfig the agent runs with.
    pub fn agent_kubeconfig(&self) -> &str {
        &self.agent_kubeconfig
    }

    /// Stops the cluster.
    pub async fn shutdown(self) {
        self.member.shutdown().await;
    }
}

/// Starts a cluster of the backend `CAFE_CLUSTERS` names and installs the CRD as `deploy/` says.
/// Returns it and an administrator's client (for the tests' own reads and writes).
pub async fn start(config: SimConfig) -> (Cluster, Client) {
    let dir = tempfile::tempdir().expect("tempdir");
    let members = Members::new(Backend::from_env(), dir.path())
        .await
        .expect("backend starts");
    let member = members.start(config).await.expect("cluster starts");
    let admin = member.client().expect("client");
    let access = member
        .prepare_agent(CRD_YAML, &AGENT_MANIFESTS)
        .await
        .expect("agent installed");
    if access.install_crd {
        ensure_crd(admin.clone()).await.expect("CRD installed");
    }
    let agent = cafe_sim::control_plane::client_from(&access.kubeconfig)
        .await
        .expect("the agent's kubeconfig works");
    let cluster = Cluster {
        member,
        agent,
        agent_kubeconfig: access.kubeconfig,
        _members: members,
        _dir: dir,
    };
    (cluster, admin)
}

/// Starts a simulated cluster (for what only cafe-sim can do, such as injected API errors) and
/// installs the CRD.
pub async fn start_sim(config: SimConfig) -> (SimCluster, Client) {
    let cluster = SimCluster::start(config).await.expect("cluster starts");
    let client = cluster.client().expect("client");
    ensure_crd(client.clone()).await.expect("CRD installed");
    (cluster, client)
}

/// A running controller.
pub struct Agent {
    task: JoinHandle<()>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Agent {
    /// Starts the controller in a task.
    pub fn start(client: Client) -> Self {
        init_logs();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let config = ControllerConfig {
            namespace: Some(NS.into()),
            ..ControllerConfig::default()
        };
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = stopped.await;
            };
            run_controller(client, config, Metrics::unregistered(), shutdown)
                .await
                .expect("controller runs");
        });
        Self {
            task,
            stop: Some(stop),
        }
    }

    /// Kills it at whatever await point it is (no graceful shutdown).
    pub async fn kill(mut self) {
        self.stop.take();
        self.task.abort();
        let _ = (&mut self.task).await;
    }

    /// Stops it gracefully.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(DEADLINE, &mut self.task).await;
    }
}

/// Sends the agent's logs to the test output, filtered by `RUST_LOG` (nothing by default).
pub fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_test_writer()
        .try_init();
}

/// A pod template with one container.
pub fn template(image: &str) -> Value {
    json!({
        "metadata": {"labels": {"app": "web"}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "app", "image": image}]}
    })
}

/// A set spec with the balancer finalizer declared.
pub fn spec(replicas: i32, image: &str, max_unavailable: i32) -> InPlaceSetSpec {
    InPlaceSetSpec {
        replicas,
        selector: LabelSelector {
            match_labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
        },
        template: template(image),
        max_unavailable,
        traffic: Some(TrafficPolicy {
            readiness_gate: None,
            finalizers: vec![LB.into()],
            drain_seconds: 0,
        }),
        ..InPlaceSetSpec::default()
    }
}

/// Creates a set.
pub async fn create_set(client: &Client, name: &str, spec: InPlaceSetSpec) -> InPlaceSet {
    let sets: Api<InPlaceSet> = Api::namespaced(client.clone(), NS);
    sets.create(&PostParams::default(), &InPlaceSet::new(name, spec))
        .await
        .expect("set created")
}

/// Merges `patch` into a set's spec, retrying injected faults.
pub async fn patch_spec(client: &Client, name: &str, patch: Value) {
    let sets: Api<InPlaceSet> = Api::namespaced(client.clone(), NS);
    let body = json!({"spec": patch});
    eventually("spec patched", DEADLINE, || async {
        sets.patch(name, &PatchParams::default(), &Patch::Merge(&body))
            .await
            .ok()
    })
    .await;
}

/// Polls `f` until it yields a value, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    eventually_explained(what, timeout, || {
        let attempt = f();
        async move { attempt.await.ok_or_else(String::new) }
    })
    .await
}

/// Polls `f` until it yields a value, or panics after `timeout` naming `what` and the reason the
/// last attempt gave for not being done.
pub async fn eventually_explained<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let why = match f().await {
            Ok(v) => return v,
            Err(why) => why,
        };
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last seen: {why}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until an update to `revision` is under way: some pod is being drained or already runs
/// `revision`, and not every pod is settled on it. A kill after this lands mid-update.
pub async fn wait_mid_update(client: &Client, set: &str, revision_name: &str) {
    eventually("an update under way", DEADLINE, || async {
        let pods = pods(client, set).await?;
        let touched = pods.iter().any(|p| {
            revision(p) == revision_name || p.annotations().contains_key(DRAIN_STARTED_ANNOTATION)
        });
        let settled = pods
            .iter()
            .all(|p| revision(p) == revision_name && is_ready(p));
        (touched && !settled).then_some(())
    })
    .await;
}

/// The set's pods (terminating ones included).
pub async fn pods(client: &Client, set: &str) -> Option<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(client.clone(), NS);
    api.list(&ListParams::default().labels(&format!("{SET_LABEL}={set}")))
        .await
        .ok()
        .map(|l| l.items)
}

/// Whether a pod is Ready and not terminating.
pub fn is_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// A pod's revision label.
pub fn revision(pod: &Pod) -> String {
    pod.labels()
        .get(REVISION_LABEL)
        .cloned()
        .unwrap_or_default()
}

/// Waits until the set has exactly `replicas` pods, all Ready, registered with the balancer and on
/// `revision`, and its status says so for the current generation. Returns the pods.
pub async fn wait_settled(
    client: &Client,
    set: &str,
    replicas: usize,
    revision_name: &str,
) -> Vec<Pod> {
    let sets: Api<InPlaceSet> = Api::namespaced(client.clone(), NS);
    eventually_explained(
        &format!("{set}: {replicas} ready pods on {revision_name}"),
        DEADLINE,
        || async {
            let s = sets.get(set).await.map_err(|e| e.to_string())?;
            let status = s.status.as_ref();
            let settled = status.is_some_and(|status| {
                status.observed_generation == s.metadata.generation.unwrap_or_default()
                    && status.updated_ready_replicas == replicas as i32
                    && status.replicas == replicas as i32
                    && status.update_revision.as_deref() == Some(revision_name)
            });
            let pods = pods(client, set).await.ok_or("cannot list the pods")?;
            let all_good = pods.len() == replicas
                && pods.iter().all(|p| {
                    is_ready(p)
                        && revision(p) == revision_name
                        && p.finalizers().iter().any(|f| f == LB)
                });
            if settled && all_good {
                Ok(pods)
            } else {
                Err(format!("status {status:?}; pods {}", describe(&pods)))
            }
        },
    )
    .await
}

/// One line per pod: name, revision, readiness, deletion and finalizers (for failure messages).
pub fn describe(pods: &[Pod]) -> String {
    pods.iter()
        .map(|p| {
            format!(
                "{} rev={} ready={} deleting={}/{:?} finalizers={:?} phase={:?}",
                p.name_any(),
                revision(p),
                is_ready(p),
                p.metadata.deletion_timestamp.is_some(),
                p.metadata.deletion_grace_period_seconds,
                p.finalizers(),
                p.status.as_ref().and_then(|s| s.phase.clone()),
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// A set's status, once it satisfies `check`.
pub async fn wait_status(
    client: &Client,
    set: &str,
    what: &str,
    check: impl Fn(&cafe_member_agent::crd::InPlaceSetStatus) -> bool,
) -> cafe_member_agent::crd::InPlaceSetStatus {
    let sets: Api<InPlaceSet> = Api::namespaced(client.clone(), NS);
    eventually(what, DEADLINE, || async {
        let s = sets.get(set).await.ok()?;
        s.status.filter(|st| check(st))
    })
    .await
}

/// An independent watcher recording the largest number of simultaneously unavailable pods:
/// `replicas` minus the pods that are Ready and not terminating, after every pod event.
pub struct UnavailabilityWatcher {
    max: Arc<AtomicUsize>,
    max_active: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl UnavailabilityWatcher {
    /// Starts watching the set's pods against `replicas`.
    pub async fn start(client: &Client, set: &str, replicas: usize) -> Self {
        let api: Api<Pod> = Api::namespaced(client.clone(), NS);
        let (reader, writer) = reflector::store();
        let max = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&max);
        let max_active = Arc::new(AtomicUsize::new(0));
        let seen_active = Arc::clone(&max_active);
        let started = Arc::new(AtomicBool::new(false));
        let listed = Arc::clone(&started);
        let config = watcher::Config::default().labels(&format!("{SET_LABEL}={set}"));
        let stream = watcher(api, config).default_backoff().reflect(writer);
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut ready_once = false;
            while let Some(event) = stream.next().await {
                if matches!(event, Ok(watcher::Event::InitDone)) {
                    ready_once = true;
                    listed.store(true, Ordering::SeqCst);
                }
                if !ready_once {
                    continue;
                }
                let state = reader.state();
                let ready = state.iter().filter(|p| is_ready(p)).count();
                seen.fetch_max(replicas.saturating_sub(ready), Ordering::SeqCst);
                let active = state
                    .iter()
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .count();
                seen_active.fetch_max(active, Ordering::SeqCst);
            }
        });
        let w = Self {
            max,
            max_active,
            task,
        };
        // Wait until the initial list is in.
        eventually("watcher listed the pods", DEADLINE, || async {
            started.load(Ordering::SeqCst).then_some(())
        })
        .await;
        w
    }

    /// The largest number of pods not being deleted seen so far.
    pub fn max_active(&self) -> usize {
        self.max_active.load(Ordering::SeqCst)
    }

    /// The largest number of unavailable pods seen so far.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

impl Drop for UnavailabilityWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Pod names to uids.
pub fn uids(pods: &[Pod]) -> BTreeMap<String, String> {
    pods.iter()
        .map(|p| (p.name_any(), p.uid().unwrap_or_default()))
        .collect()
}
