//! The traffic finalizer protocol and the lost-requests figure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use cafe_sim::{SimConfig, TrafficCounts};
use common::*;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const LB: &str = "traffic.cafe.io/lb";

fn config(name: &str) -> SimConfig {
    fast(name)
        .with_traffic_finalizer(LB)
        .with_lb_reaction_delay(Duration::from_millis(100))
        .with_deregistration_delay(Duration::from_millis(100))
}

fn has_lb(p: &Pod) -> bool {
    p.metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|f| f == LB))
}

/// Creates a gated pod, opens its gate and waits until the balancer registered it and sends to it.
async fn serving_pod(cluster: &TestCluster, pods: &Api<Pod>, name: &str) {
    pods.create(&PostParams::default(), &gated_pod(name, "nginx:1"))
        .await
        .unwrap();
    wait_pod(pods, name, "containers ready", |p| {
        condition(p, "ContainersReady").as_deref() == Some("True")
    })
    .await;
    assert!(
        !has_lb(&pods.get(name).await.unwrap()),
        "not registered before the gate opens"
    );
    set_gate(pods, name, true).await;
    wait_pod(pods, name, "registered", has_lb).await;
    let sent = cluster.traffic().sent;
    eventually("requests to the pod", DEADLINE, || async {
        (cluster.traffic().sent > sent + 5).then_some(())
    })
    .await;
}

/// Closes the gate and waits until the balancer lets go.
async fn drain(pods: &Api<Pod>, name: &str) {
    set_gate(pods, name, false).await;
    wait_pod(pods, name, "deregistered", |p| !has_lb(p)).await;
}

#[tokio::test]
async fn drained_pods_lose_nothing() {
    let (cluster, client) = start_member(config("drained")).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    serving_pod(&cluster, &pods, "web-0").await;

    // Lossless in-place update: drain, change the image, wait for the containers, open the gate.
    drain(&pods, "web-0").await;
    pods.patch(
        "web-0",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}})),
    )
    .await
    .unwrap();
    wait_pod(&pods, "web-0", "restarted and ready", |p| {
        condition(p, "ContainersReady").as_deref() == Some("True")
            && p.status
                .as_ref()
                .unwrap()
                .container_statuses
                .as_ref()
                .unwrap()[0]
                .restart_count
                == 1
    })
    .await;
    set_gate(&pods, "web-0", true).await;
    wait_pod(&pods, "web-0", "registered again", has_lb).await;

    // Lossless deletion: drain first.
    drain(&pods, "web-0").await;
    pods.delete("web-0", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&pods, "web-0").await;
    let TrafficCounts { sent, lost } = cluster.traffic();
    println!("drained: sent {sent}, lost {lost}");
    assert!(sent > 0);
    assert_eq!(lost, 0, "a drained pod loses no request");
    cluster.shutdown().await;
}

#[tokio::test]
async fn undrained_deletion_loses_requests_and_releases_the_finalizer() {
    let (cluster, client) = start_member(config("undrained")).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    serving_pod(&cluster, &pods, "web-0").await;
    assert_eq!(cluster.traffic().lost, 0);
    pods.delete("web-0", &DeleteParams::default())
        .await
        .unwrap();
    // The balancer still sends during its reaction delay: those requests hit a terminating pod.
    eventually("lost requests", DEADLINE, || async {
        (cluster.traffic().lost > 0).then_some(())
    })
    .await;
    // Then it removes its finalizer and the pod goes away.
    wait_gone(&pods, "web-0").await;
    let lost = cluster.traffic().lost;
    // Nothing is sent to a pod that is gone.
    let settled = cluster.traffic();
    tokio::time::sleep(Duration::from_millis(100)).await; // an observation window, not synchronisation
    assert_eq!(cluster.traffic().sent, settled.sent);
    // The control endpoint reports the same figures.
    let (code, _, body) = http(cluster.control_addr(), "GET", "/sim/v1/traffic", "").await;
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["lost"], lost);
    assert_eq!(v["sent"], settled.sent);
    cluster.shutdown().await;
}

#[tokio::test]
async fn undrained_in_place_update_loses_requests() {
    let (cluster, client) = start_member(config("undrained-update")).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    serving_pod(&cluster, &pods, "web-0").await;
    pods.patch(
        "web-0",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}})),
    )
    .await
    .unwrap();
    eventually("lost requests", DEADLINE, || async {
        (cluster.traffic().lost > 0).then_some(())
    })
    .await;
    // The restart is shorter than the balancer's reaction delay: it keeps the pod, which serves again.
    wait_pod(&pods, "web-0", "Ready and registered", |p| {
        has_lb(p) && is_ready(p)
    })
    .await;
    let lost = cluster.traffic().lost;
    let sent = cluster.traffic().sent;
    eventually("more requests served", DEADLINE, || async {
        (cluster.traffic().sent > sent + 5).then_some(())
    })
    .await;
    assert_eq!(cluster.traffic().lost, lost, "a ready pod loses nothing");
    cluster.shutdown().await;
}

/// The value of the `cafe_sim_requests_total` series of `pod` with `code` in a `/metrics` body.
fn requests(metrics: &str, pod: &str, code: &str) -> u64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("cafe_sim_requests_total{"))
        .filter(|l| {
            l.contains(&format!("pod=\"{pod}\"")) && l.contains(&format!("code=\"{code}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn an_image_with_an_error_ratio_answers_500s_without_losing_requests() {
    let (cluster, client) = start_member(config("behaviours")).await;
    let addr = cluster.control_addr();
    // Bad input is refused, naming the field.
    let (status, _, body) = http(
        addr,
        "POST",
        "/sim/v1/behaviours",
        r#"{"image": "nginx:1", "errorRatio": 1.5}"#,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("errorRatio"), "{body}");
    let (status, _, body) = http(
        addr,
        "POST",
        "/sim/v1/behaviours",
        r#"{"image": "nginx:1", "errorRatio": 0.25, "latencyMs": 20}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");

    let pods: Api<Pod> = Api::namespaced(client, "default");
    serving_pod(&cluster, &pods, "web-0").await;
    let metrics = eventually("500s in /metrics", DEADLINE, || async {
        let (_, _, body) = http(addr, "GET", "/metrics", "").await;
        (requests(&body, "web-0", "500") >= 25).then_some(body)
    })
    .await;
    let errors = requests(&metrics, "web-0", "500");
    let ok = requests(&metrics, "web-0", "200");
    // A quarter of the answered requests erred (give or take the request answered while the
    // series were read).
    let n = errors + ok;
    assert!(
        errors * 4 + 8 >= n && errors * 4 <= n + 8,
        "{errors} errors of {n}"
    );
    assert!(
        metrics.contains("cafe_sim_request_duration_seconds_bucket"),
        "the latency histogram is served"
    );
    // Answered with errors, not lost.
    assert_eq!(cluster.traffic().lost, 0);
    // The application's own check fails the revision (the pod has no revision label: "").
    let (status, _, body) = http(
        addr,
        "POST",
        "/sim/v1/check",
        r#"{"namespace": "default", "revision": ""}"#,
    )
    .await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("\"maxErrorRatio\":0.01"), "{body}");
    cluster.shutdown().await;
}
