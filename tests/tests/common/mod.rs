//! What the end-to-end tests share: a playground in a temporary directory, cafectl runs, and pod
//! inspection in the simulated clusters.

#![allow(dead_code)]

use cafe_federation::tls::Role;
use cafe_sim::member::Backend;
use cafe_tests::playground::{Playground, PlaygroundOptions};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;
use std::process::Command;

/// The playground binary, which also runs cafectl (`ctl`).
pub const BINARY: &str = env!("CARGO_BIN_EXE_cafe-playground");

/// A started playground and the directory it lives in (removed when dropped).
pub struct Setup {
    pub playground: Playground,
    pub dir: tempfile::TempDir,
}

pub async fn start() -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = PlaygroundOptions::new(dir.path(), BINARY).with_backend(Backend::from_env());
    let playground = Playground::start(options)
        .await
        .expect("the playground starts");
    Setup { playground, dir }
}

/// Runs cafectl with `role`'s config; returns (exit code, stdout, stderr).
pub fn cafectl(playground: &Playground, role: Role, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BINARY)
        .arg("ctl")
        .arg("--config")
        .arg(playground.cafectl_config(role))
        .args(args)
        .output()
        .expect("cafectl runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs cafectl as an admin and fails the test on a non-zero exit; returns its output.
pub fn admin(playground: &Playground, args: &[&str]) -> String {
    let (code, out, err) = cafectl(playground, Role::Admin, args);
    assert_eq!(code, 0, "cafectl {args:?}: {err}");
    out
}

/// cafectl's JSON output, failing the test on a non-zero exit.
pub fn cafectl_json(playground: &Playground, args: &[&str]) -> serde_json::Value {
    let (code, stdout, stderr) = cafectl(playground, Role::Operator, args);
    assert_eq!(code, 0, "cafectl {args:?} failed: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("cafectl {args:?} printed no JSON ({e}): {stdout}"))
}

/// One pod as the tests look at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodView {
    pub uid: String,
    pub revision: String,
    pub restarts: i32,
}

/// The application's pods in every cluster, by pod name.
pub async fn pods(playground: &Playground, namespace: &str) -> BTreeMap<String, PodView> {
    let mut all = BTreeMap::new();
    for cluster in playground.clusters.values() {
        let client = cluster.cluster.client().expect("client");
        let api: Api<Pod> = Api::namespaced(client, namespace);
        let list = api.list(&ListParams::default()).await.expect("list pods");
        for pod in list.items {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let name = pod.metadata.name.clone().unwrap_or_default();
            let restarts = pod
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
            all.insert(
                name,
                PodView {
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                    revision: pod
                        .metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("cafe.io/revision"))
                        .cloned()
                        .unwrap_or_default(),
                    restarts,
                },
            );
        }
    }
    all
}

/// An independent watcher: counts the application's ready pods over every cluster at every pod event
/// and remembers the lowest total seen since it was armed.
pub struct ReadyWatcher {
    state: std::sync::Arc<std::sync::Mutex<ReadyState>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    clusters: Vec<String>,
}

#[derive(Default)]
struct ReadyState {
    ready: BTreeMap<(String, String), bool>,
    lowest: Option<usize>,
    lowest_per_cluster: BTreeMap<String, usize>,
    armed: bool,
    events: usize,
}

impl ReadyState {
    fn total(&self) -> usize {
        self.ready.values().filter(|r| **r).count()
    }

    fn in_cluster(&self, cluster: &str) -> usize {
        self.ready
            .iter()
            .filter(|((c, _), r)| c == cluster && **r)
            .count()
    }

    /// Notes the totals after an event, once armed.
    fn note(&mut self) {
        if !self.armed {
            return;
        }
        let total = self.total();
        self.lowest = Some(self.lowest.map_or(total, |l| l.min(total)));
        let clusters: Vec<String> = self.lowest_per_cluster.keys().cloned().collect();
        for cluster in clusters {
            let ready = self.in_cluster(&cluster);
            if let Some(lowest) = self.lowest_per_cluster.get_mut(&cluster) {
                *lowest = (*lowest).min(ready);
            }
        }
    }
}

fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

impl ReadyWatcher {
    /// Starts watching `namespace` in every cluster; the lowest total counts once `arm` is called.
    pub fn start(playground: &Playground, namespace: &str) -> Self {
        use futures::StreamExt as _;
        use kube::runtime::WatchStreamExt as _;
        use kube::runtime::watcher::{self, Event};
        let state = std::sync::Arc::new(std::sync::Mutex::new(ReadyState::default()));
        let tasks = playground
            .clusters
            .iter()
            .map(|(name, cluster)| {
                let api: Api<Pod> =
                    Api::namespaced(cluster.cluster.client().expect("client"), namespace);
                let state = std::sync::Arc::clone(&state);
                let cluster = name.clone();
                tokio::spawn(async move {
                    // With a backoff, errors wait: once the playground is gone every retry
                    // would fail at once, and a task that never waits cannot be aborted, so the
                    // test's runtime could never shut down.
                    let stream =
                        watcher::watcher(api, watcher::Config::default()).default_backoff();
                    futures::pin_mut!(stream);
                    while let Some(event) = stream.next().await {
                        let Ok(event) = event else { continue };
                        let mut state = state.lock().expect("state");
                        match event {
                            Event::Apply(pod) | Event::InitApply(pod) => {
                                let key = (
                                    cluster.clone(),
                                    pod.metadata.name.clone().unwrap_or_default(),
                                );
                                state.ready.insert(key, pod_ready(&pod));
                            }
                            Event::Delete(pod) => {
                                state.ready.remove(&(
                                    cluster.clone(),
                                    pod.metadata.name.clone().unwrap_or_default(),
                                ));
                            }
                            Event::Init | Event::InitDone => {}
                        }
                        state.events += 1;
                        state.note();
                    }
                })
            })
            .collect();
        Self {
            state,
            tasks,
            clusters: playground.clusters.keys().cloned().collect(),
        }
    }

    /// Ready pods now, as the watcher sees them.
    pub fn ready(&self) -> usize {
        self.state.lock().expect("state").total()
    }

    /// Waits until the watcher sees `ready` pods ready (it has caught up with the clusters).
    pub async fn wait_ready(&self, ready: usize) {
        let deadline = tokio::time::Instant::now() + STEP;
        while self.ready() < ready {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the watcher never saw {ready} pods ready"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// From now on, remember the lowest total, and the lowest in each cluster.
    pub fn arm(&self) {
        let mut state = self.state.lock().expect("state");
        state.armed = true;
        state.lowest = Some(state.total());
        for cluster in &self.clusters {
            let ready = state.in_cluster(cluster);
            state.lowest_per_cluster.insert(cluster.clone(), ready);
        }
    }

    /// The lowest number of ready pods seen in each cluster since `arm`.
    pub fn lowest_per_cluster(&self) -> BTreeMap<String, usize> {
        self.state.lock().expect("state").lowest_per_cluster.clone()
    }

    /// The lowest total since `arm`, and how many pod events were seen.
    pub fn lowest(&self) -> (usize, usize) {
        let state = self.state.lock().expect("state");
        (state.lowest.unwrap_or(0), state.events)
    }
}

impl Drop for ReadyWatcher {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// How long one step of an end-to-end scenario may take.
pub const STEP: std::time::Duration = std::time::Duration::from_secs(120);

/// Applies the demo deployment (10 pods over the 4 units) and waits until it runs everywhere; returns
/// an operator's client and the settled status.
pub async fn deploy_demo(
    playground: &Playground,
) -> (
    cafe_proto::v1::federation_client::FederationClient<tonic::transport::Channel>,
    cafe_federation::release::DeploymentStatusView,
) {
    use cafe_tests::driver::{apply_yaml, deployment};
    let mut client = playground.client(Role::Operator).await.expect("client");
    apply_yaml(&mut client, cafe_tests::demo::DEMO_YAML)
        .await
        .expect("apply");
    let status = wait_settled(&mut client, &deployment("finance", "payments"))
        .await
        .expect("the demo deployment runs everywhere");
    (client, status)
}

/// Waits (one [`STEP`] at most) until the deployment runs its revision everywhere.
pub async fn wait_settled(
    client: &mut cafe_proto::v1::federation_client::FederationClient<tonic::transport::Channel>,
    reference: &cafe_proto::v1::DeploymentRef,
) -> anyhow::Result<cafe_federation::release::DeploymentStatusView> {
    cafe_tests::driver::wait_status(client, reference, STEP, |_| {}, cafe_tests::driver::settled)
        .await
}

/// The application's pods of `unit` (pods are named after their InPlaceSet, `payments-UNIT-...`).
pub fn unit_pods(pods: &BTreeMap<String, PodView>, unit: &str) -> usize {
    pods.keys().filter(|name| name.contains(unit)).count()
}

/// Waits until `unit` has no pod of the application left (drained and removed).
pub async fn wait_unit_empty(playground: &Playground, unit: &str) {
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let left = unit_pods(&pods(playground, "finance").await, unit);
        if left == 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{unit} still has {left} pods"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Starts v2 of the demo and waits until group 1 is under way.
pub async fn release_to_group_1(playground: &Playground) {
    let reference = cafe_tests::driver::deployment("finance", "payments");
    let mut client = playground.client(Role::Operator).await.expect("client");
    cafe_tests::driver::apply_yaml(
        &mut client,
        &cafe_tests::demo::DEMO_YAML.replace("payments:1.0.0", "payments:1.1.0"),
    )
    .await
    .expect("apply v2");
    cafe_tests::driver::wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        cafe_tests::driver::awaiting_confirm,
    )
    .await
    .expect("group 0 done");
    client
        .r#continue(cafe_tests::driver::command(&reference, Some(0)))
        .await
        .expect("continue");
    cafe_tests::driver::wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| s.phase == "Progressing" && s.batch == 1,
    )
    .await
    .expect("group 1");
}

/// Finishes the release from group 1 and checks that every pod was updated exactly once and no
/// request was lost.
pub async fn finish_release(playground: &Playground, before: &BTreeMap<String, PodView>) {
    let reference = cafe_tests::driver::deployment("finance", "payments");
    let mut client = playground.client(Role::Operator).await.expect("client");
    let status = cafe_tests::driver::wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        cafe_tests::driver::awaiting_confirm,
    )
    .await
    .expect("group 1 finishes");
    assert_eq!(status.batch, 1, "the release resumes at group 1");
    client
        .r#continue(cafe_tests::driver::command(&reference, Some(1)))
        .await
        .expect("continue");
    let done = cafe_tests::driver::wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        cafe_tests::driver::settled,
    )
    .await
    .expect("v2 everywhere");
    let after = pods(playground, "finance").await;
    assert_eq!(after.len(), before.len());
    for (name, pod) in &after {
        let old = before
            .get(name)
            .unwrap_or_else(|| panic!("pod {name} is new"));
        assert_eq!(
            pod.restarts,
            old.restarts + 1,
            "{name} must be updated exactly once"
        );
        assert_eq!(pod.revision, done.current_revision);
    }
    assert_eq!(playground.traffic().1, 0, "lost requests");
}
