//! `cafe-agent run` as a process: it serves /metrics and /healthz, and five SIGKILLs in the middle of
//! an update, each followed by a new process, converge to exactly `replicas` pods, each updated in
//! place once.

mod common;

use cafe_member_agent::revision::template_revision;
use common::*;
use kube::ResourceExt as _;
use serde_json::json;
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

fn spawn_agent(kubeconfig: &std::path::Path, install_crd: bool, metrics: &str) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cafe-agent"));
    command.arg("run");
    if install_crd {
        command.arg("--install-crd");
    }
    command
        .args(["--namespace", NS, "--metrics-addr", metrics, "--kubeconfig"])
        .arg(kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("cafe-agent starts")
}

/// Pods in the set.
const REPLICAS: i32 = 8;
/// SIGKILLs during the update.
const KILLS: usize = 5;

fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

async fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    response.starts_with("HTTP/1.1 200").then_some(response)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agent_process_is_replaced_and_the_update_finishes() {
    let (cluster, client) = start(fast_sim("process")).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, cluster.agent_kubeconfig()).expect("kubeconfig");
    let metrics = free_addr();
    // On sim the process installs the CRD itself; on kube it was applied as deploy/ says.
    let install_crd = cluster.member.backend() == cafe_sim::member::Backend::Sim;
    let mut agent = spawn_agent(&kubeconfig, install_crd, &metrics);

    // Once the CRD is there, the set can be created.
    eventually("the CRD installed", DEADLINE, || async {
        let sets: kube::Api<cafe_member_agent::crd::InPlaceSet> =
            kube::Api::namespaced(client.clone(), NS);
        sets.list(&Default::default()).await.ok()
    })
    .await;
    create_set(&client, "web", spec(REPLICAS, "web:1", 1)).await;
    let v1 = template_revision(&template("web:1"));
    let before = wait_settled(&client, "web", REPLICAS as usize, &v1).await;
    let health = http_get(&metrics, "/healthz")
        .await
        .expect("healthz answers");
    assert!(health.ends_with("ok"), "{health}");
    let ready = http_get(&metrics, "/readyz").await.expect("readyz answers");
    assert!(ready.ends_with("ok"), "{ready}");
    let text = eventually("metrics", DEADLINE, || http_get(&metrics, "/metrics")).await;
    // Without a hub or leader election: it acts, with no stream and no slices.
    for line in [
        "cafe_agent_leader 1",
        "cafe_agent_hub_connected 0",
        "cafe_agent_slices 0",
    ] {
        assert!(text.lines().any(|l| l == line), "no {line:?} in {text}");
    }
    assert!(
        text.contains("cafe_agent_reconciles_total{result=\"Ok\"}"),
        "{text}"
    );
    assert!(
        text.contains("cafe_agent_pod_actions_total{action=\"Create\"} 8"),
        "{text}"
    );

    let watcher = UnavailabilityWatcher::start(&client, "web", REPLICAS as usize).await;
    let v2 = template_revision(&template("web:2"));
    patch_spec(&client, "web", json!({"template": template("web:2")})).await;
    // Each kill lands once one more pod has moved to v2 since the last one, so all of them fall in
    // the middle of the update.
    let mut moved = 0;
    for kill in 0..KILLS {
        moved = eventually(
            &format!("progress before kill {kill}"),
            DEADLINE,
            || async {
                let pods = pods(&client, "web").await?;
                let on_v2 = pods.iter().filter(|p| revision(p) == v2).count();
                (on_v2 > moved && on_v2 < REPLICAS as usize).then_some(on_v2)
            },
        )
        .await;
        agent.kill().await.expect("SIGKILL");
        agent = spawn_agent(&kubeconfig, install_crd, &metrics);
    }
    let after = wait_settled(&client, "web", REPLICAS as usize, &v2).await;
    assert_eq!(
        uids(&after),
        uids(&before),
        "the same pods, updated in place"
    );
    for pod in &after {
        let restarts: i32 = pod
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |c| c.iter().map(|c| c.restart_count).sum());
        assert_eq!(restarts, 1, "{} updated exactly once", pod.name_any());
    }
    assert_eq!(watcher.max_active(), REPLICAS as usize, "no extra pods");
    assert!(watcher.max() <= 1);

    agent.kill().await.expect("stopped");
    cluster.shutdown().await;
}
