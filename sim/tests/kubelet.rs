//! The simulated scheduler and kubelet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use cafe_sim::{START_DELAY_ANNOTATION, ZONE_LABEL};
use common::*;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn waiting_reason(p: &Pod) -> Option<String> {
    p.status.as_ref()?.container_statuses.as_ref()?[0]
        .state
        .as_ref()?
        .waiting
        .as_ref()?
        .reason
        .clone()
}

fn restarts(p: &Pod) -> i32 {
    p.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map_or(0, |c| c[0].restart_count)
}

#[tokio::test]
async fn pods_are_scheduled_by_zone_and_become_ready_through_their_gates() {
    let (cluster, client) = start_member(fast("kubelet")).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    let mut p = gated_pod("web-0", "nginx:1");
    p.spec.as_mut().unwrap().node_selector =
        Some([(ZONE_LABEL.to_string(), "zone-b".to_string())].into());
    pods.create(&PostParams::default(), &p).await.unwrap();

    let running = wait_pod(&pods, "web-0", "containers ready", |p| {
        condition(p, "ContainersReady").as_deref() == Some("True")
    })
    .await;
    let node = nodes
        .get(running.spec.as_ref().unwrap().node_name.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(node.metadata.labels.unwrap()[ZONE_LABEL], "zone-b");
    let status = running.status.as_ref().unwrap();
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert!(status.pod_ip.is_some() && status.start_time.is_some());
    let cs = &status.container_statuses.as_ref().unwrap()[0];
    assert!(
        cs.ready
            && cs
                .state
                .as_ref()
                .unwrap()
                .running
                .as_ref()
                .unwrap()
                .started_at
                .is_some()
    );
    // The gate is not set yet: not Ready.
    assert_eq!(condition(&running, "Ready").as_deref(), Some("False"));
    assert_eq!(
        running.metadata.generation,
        Some(1),
        "binding does not bump the generation"
    );

    set_gate(&pods, "web-0", true).await;
    wait_pod(&pods, "web-0", "Ready", is_ready).await;
    set_gate(&pods, "web-0", false).await;
    let closed = wait_pod(&pods, "web-0", "unready", |p| !is_ready(p)).await;
    assert_eq!(
        condition(&closed, "ContainersReady").as_deref(),
        Some("True")
    );

    // A pod without gates is Ready with its containers.
    pods.create(&PostParams::default(), &pod("plain", "nginx:1"))
        .await
        .unwrap();
    wait_pod(&pods, "plain", "plain Ready", is_ready).await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn pods_no_node_can_take_stay_pending() {
    let (cluster, client) = start_member(fast("unschedulable")).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut p = pod("lost", "nginx:1");
    p.spec.as_mut().unwrap().node_selector =
        Some([(ZONE_LABEL.to_string(), "nowhere".to_string())].into());
    pods.create(&PostParams::default(), &p).await.unwrap();
    let pending = wait_pod(&pods, "lost", "PodScheduled=False", |p| {
        condition(p, "PodScheduled").as_deref() == Some("False")
    })
    .await;
    let status = pending.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let c = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(c.reason.as_deref(), Some("Unschedulable"));
    assert!(pending.spec.unwrap().node_name.is_none());
    cluster.shutdown().await;
}

#[tokio::test]
async fn in_place_image_change_restarts_the_container() {
    let (cluster, client) = start_member(fast("inplace")).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut p = pod("web", "nginx:1");
    p.metadata.annotations = Some([(START_DELAY_ANNOTATION.to_string(), "400".to_string())].into());
    pods.create(&PostParams::default(), &p).await.unwrap();
    let before = wait_pod(&pods, "web", "Ready", is_ready).await;
    assert_eq!(restarts(&before), 0);
    let uid = before.metadata.uid.clone();
    pods.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(json!({"spec": {"containers": [{"name": "app", "image": "nginx:2"}]}})),
    )
    .await
    .unwrap();
    let restarting = wait_pod(&pods, "web", "restart", |p| restarts(p) == 1).await;
    assert!(
        !is_ready(&restarting),
        "unready until the start delay has passed"
    );
    let cs = &restarting
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0];
    assert_eq!(cs.image, "nginx:2");
    assert!(!cs.ready && cs.state.as_ref().unwrap().running.is_some());
    let after = wait_pod(&pods, "web", "Ready again", is_ready).await;
    assert_eq!(after.metadata.uid, uid, "same pod, updated in place");
    assert_eq!(restarts(&after), 1);
    cluster.shutdown().await;
}

#[tokio::test]
async fn crashloop_and_bad_images() {
    let (cluster, client) =
        start_member(fast("images").with_start_delay(Duration::from_millis(20))).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut crash = pod("crash", "example/crashloop:1");
    crash.metadata.labels = None;
    pods.create(&PostParams::default(), &crash).await.unwrap();
    pods.create(&PostParams::default(), &pod("bad", "example/badimage:1"))
        .await
        .unwrap();
    wait_pod(&pods, "crash", "CrashLoopBackOff", |p| {
        waiting_reason(p).as_deref() == Some("CrashLoopBackOff")
    })
    .await;
    let looping = wait_pod(&pods, "crash", "growing restartCount", |p| restarts(p) >= 2).await;
    assert!(!is_ready(&looping));
    let err_pull = wait_pod(&pods, "bad", "ErrImagePull", |p| {
        waiting_reason(p).as_deref() == Some("ErrImagePull")
    })
    .await;
    assert_eq!(
        err_pull.status.as_ref().unwrap().phase.as_deref(),
        Some("Pending")
    );
    let backoff = wait_pod(&pods, "bad", "ImagePullBackOff", |p| {
        waiting_reason(p).as_deref() == Some("ImagePullBackOff")
    })
    .await;
    assert_eq!(restarts(&backoff), 0);
    cluster.shutdown().await;
}

#[tokio::test]
async fn node_not_ready_makes_its_pods_unready() {
    let (cluster, client) = start_member(fast("nodes").with_nodes(1)).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    pods.create(&PostParams::default(), &pod("web", "nginx:1"))
        .await
        .unwrap();
    wait_pod(&pods, "web", "Ready", is_ready).await;
    let node = cluster.cluster.node_names()[0].clone();
    assert!(cluster.cluster.set_node_ready(&node, false).await.unwrap());
    wait_pod(&pods, "web", "unready on a NotReady node", |p| !is_ready(p)).await;
    // Through the control endpoint, as another process would.
    let (code, _, _) = http(
        cluster.control_addr(),
        "POST",
        &format!("/sim/v1/nodes/{node}/ready"),
        r#"{"ready": true}"#,
    )
    .await;
    assert_eq!(code, 204);
    wait_pod(&pods, "web", "Ready again", is_ready).await;
    cluster.shutdown().await;
}

#[tokio::test]
async fn graceful_deletion_honours_grace_and_finalizers() {
    let (cluster, client) = start_member(fast("grace")).await;
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut p = pod("web", "nginx:1");
    p.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    pods.create(&PostParams::default(), &p).await.unwrap();
    wait_pod(&pods, "web", "Ready", is_ready).await;
    pods.delete("web", &DeleteParams::default()).await.unwrap();
    let terminating = pods.get("web").await.unwrap();
    assert_eq!(terminating.metadata.deletion_grace_period_seconds, Some(30));
    assert!(terminating.metadata.deletion_timestamp.is_some());
    wait_pod(&pods, "web", "unready while terminating", |p| !is_ready(p)).await;
    // After the (scaled) grace period the kubelet is done; the finalizer still holds the pod.
    let held = wait_pod(&pods, "web", "grace over", |p| {
        p.metadata.deletion_grace_period_seconds == Some(0)
    })
    .await;
    assert!(held.metadata.finalizers.is_some());
    pods.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_gone(&pods, "web").await;
    cluster.shutdown().await;
}
