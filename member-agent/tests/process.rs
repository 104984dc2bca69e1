//! `cafe-agent run` as a process: it installs the CRD, serves /metrics and /healthz, and a SIGKILL in
//! the middle of an update followed by a new process converges to exactly `replicas` pods.

mod common;

use cafe_member_agent::revision::template_revision;
use cafe_sim::SimCluster;
use common::*;
use serde_json::json;
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

fn spawn_agent(kubeconfig: &std::path::Path, metrics: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cafe-agent"))
        .args([
            "run",
            "--install-crd",
            "--namespace",
            NS,
            "--metrics-addr",
            metrics,
            "--kubeconfig",
        ])
        .arg(kubeconfig)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("cafe-agent starts")
}

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
    let cluster = SimCluster::start(fast_sim("process"))
        .await
        .expect("cluster");
    let client = cluster.client().expect("client");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig).expect("kubeconfig");
    let metrics = free_addr();
    let mut agent = spawn_agent(&kubeconfig, &metrics);

    // The process installs the CRD; then the set can be created.
    eventually("the CRD installed by the agent", DEADLINE, || async {
        let sets: kube::Api<cafe_member_agent::crd::InPlaceSet> =
            kube::Api::namespaced(client.clone(), NS);
        sets.list(&Default::default()).await.ok()
    })
    .await;
    create_set(&client, "web", spec(6, "web:1", 2)).await;
    let v1 = template_revision(&template("web:1"));
    let before = wait_settled(&client, "web", 6, &v1).await;
    let health = http_get(&metrics, "/healthz")
        .await
        .expect("healthz answers");
    assert!(health.ends_with("ok"), "{health}");
    let text = eventually("metrics", DEADLINE, || http_get(&metrics, "/metrics")).await;
    assert!(
        text.contains("cafe_agent_reconciles_total{result=\"Ok\"}"),
        "{text}"
    );
    assert!(
        text.contains("cafe_agent_pod_actions_total{action=\"Create\"} 6"),
        "{text}"
    );

    let watcher = UnavailabilityWatcher::start(&client, "web", 6).await;
    let v2 = template_revision(&template("web:2"));
    patch_spec(&client, "web", json!({"template": template("web:2")})).await;
    wait_mid_update(&client, "web", &v2).await;
    agent.kill().await.expect("SIGKILL");
    let mut agent = spawn_agent(&kubeconfig, &metrics);
    let after = wait_settled(&client, "web", 6, &v2).await;
    assert_eq!(uids(&after), uids(&before));
    assert_eq!(watcher.max_active(), 6, "no extra pods");
    assert!(watcher.max() <= 2);

    agent.kill().await.expect("stopped");
    cluster.shutdown().await;
}
