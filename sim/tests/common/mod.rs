//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::time::{Duration, Instant};

use cafe_sim::member::{Backend, MemberCluster, Members};
use cafe_sim::{SimCluster, SimConfig};
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How often conditions are polled.
pub const POLL: Duration = Duration::from_millis(5);
/// Default deadline for a condition.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// Starts a cluster with fast timings for tests.
pub async fn start(config: SimConfig) -> (SimCluster, kube::Client) {
    let cluster = SimCluster::start(config).await.expect("cluster starts");
    let client = cluster.client().expect("client");
    (cluster, client)
}

/// A cluster of the backend the environment picks ([`cafe_sim::member::Backend::from_env`]),
/// with what it needs kept alive.
pub struct TestCluster {
    pub cluster: MemberCluster,
    _members: Members,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// Requests sent and lost.
    pub fn traffic(&self) -> cafe_sim::TrafficCounts {
        self.cluster.traffic()
    }

    /// The simulation endpoint's address.
    pub fn control_addr(&self) -> std::net::SocketAddr {
        let url = self.cluster.control_url();
        url.trim_start_matches("http://").parse().unwrap()
    }

    /// Stops it.
    pub async fn shutdown(self) {
        self.cluster.shutdown().await;
    }
}

/// Starts a cluster of the backend `CAFE_CLUSTERS` names (`sim` by default): the tests that use
/// this hold for cafe-sim and for a real control plane alike.
pub async fn start_member(config: SimConfig) -> (TestCluster, kube::Client) {
    let dir = tempfile::tempdir().unwrap();
    let members = Members::new(Backend::from_env(), dir.path())
        .await
        .expect("backend starts");
    let cluster = members.start(config).await.expect("cluster starts");
    let client = cluster.client().unwrap();
    (
        TestCluster {
            cluster,
            _members: members,
            _dir: dir,
        },
        client,
    )
}

/// A quick test configuration.
pub fn fast(name: &str) -> SimConfig {
    SimConfig::new(name)
        .with_start_delay(Duration::from_millis(50))
        .with_zones(["zone-a", "zone-b"])
        .with_nodes(4)
}

/// Polls `f` until it yields a value, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// A pod with one container.
pub fn pod(name: &str, image: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }))
    .unwrap()
}

/// A pod with the traffic readiness gate.
pub fn gated_pod(name: &str, image: &str) -> Pod {
    let mut p = pod(name, image);
    p.spec.as_mut().unwrap().readiness_gates = Some(vec![
        serde_json::from_value(json!({"conditionType": GATE})).unwrap(),
    ]);
    p
}

/// The readiness gate condition type used in tests.
pub const GATE: &str = "cafe.io/traffic-ready";

/// The status of a pod condition, if present.
pub fn condition(pod: &Pod, t: &str) -> Option<String> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == t)
        .map(|c| c.status.clone())
}

/// Whether a pod is Ready.
pub fn is_ready(pod: &Pod) -> bool {
    condition(pod, "Ready").as_deref() == Some("True")
}

/// Sets the readiness gate condition through the status subresource (strategic merge by type).
pub async fn set_gate(pods: &Api<Pod>, name: &str, open: bool) {
    let patch = json!({"status": {"conditions": [{"type": GATE, "status": if open { "True" } else { "False" }}]}});
    pods.patch_status(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Strategic(patch),
    )
    .await
    .unwrap();
}

/// Waits until `name` satisfies `f`.
pub async fn wait_pod(pods: &Api<Pod>, name: &str, what: &str, f: impl Fn(&Pod) -> bool) -> Pod {
    eventually(what, DEADLINE, || async {
        pods.get_opt(name).await.ok().flatten().filter(|p| f(p))
    })
    .await
}

/// Waits until `name` is gone.
pub async fn wait_gone(pods: &Api<Pod>, name: &str) {
    eventually(&format!("pod {name} to be gone"), DEADLINE, || async {
        matches!(pods.get_opt(name).await, Ok(None)).then_some(())
    })
    .await
}

/// A raw HTTP/1.1 request (for control endpoints and headers): returns status, head and body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}
