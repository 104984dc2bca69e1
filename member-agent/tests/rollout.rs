//! Rollouts against cafe-sim: partitions, in-place updates, scale-in and recreation, all within
//! maxUnavailable (checked by an independent watcher) and without a lost request.

mod common;

use cafe_member_agent::revision::template_revision;
use common::*;
use k8s_openapi::api::core::v1::Pod;
use serde_json::json;
use std::collections::BTreeMap;

fn count_by_revision(pods: &[Pod]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for p in pods {
        *counts.entry(revision(p)).or_insert(0) += 1;
    }
    counts
}

fn image(pod: &Pod) -> String {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers[0].image.clone())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_10_to_5_to_0_updates_exactly_5_then_10_pods_in_place_losslessly() {
    let (cluster, client) = start(fast_sim("partition")).await;
    let agent = Agent::start(cluster.agent_client());
    let mut s = spec(10, "web:1", 3);
    s.partition = 10;
    s.stable_template = Some(template("web:1"));
    s.update_revision = Some("r1".into());
    s.stable_revision = Some("r1".into());
    create_set(&client, "web", s).await;
    let before = wait_settled(&client, "web", 10, "r1").await;
    let original = uids(&before);

    let watcher = UnavailabilityWatcher::start(&client, "web", 10).await;
    let traffic_before = cluster.traffic();
    patch_spec(
        &client,
        "web",
        json!({"template": template("web:2"), "updateRevision": "r2", "partition": 5}),
    )
    .await;
    let half = wait_status(&client, "web", "5 pods updated and ready", |st| {
        st.updated_ready_replicas == 5
            && st.ready_replicas == 10
            && st.update_revision.as_deref() == Some("r2")
    })
    .await;
    assert_eq!(half.updated_replicas, 5);
    let pods_half = eventually("5 + 5 serving pods", DEADLINE, || async {
        let pods = pods(&client, "web").await?;
        let counts = count_by_revision(&pods);
        (pods.iter().all(is_ready) && counts.get("r2") == Some(&5) && counts.get("r1") == Some(&5))
            .then_some(pods)
    })
    .await;
    assert_eq!(
        uids(&pods_half),
        original,
        "in-place updates keep pod names and uids"
    );
    for p in &pods_half {
        let want = if revision(p) == "r2" {
            "web:2"
        } else {
            "web:1"
        };
        assert_eq!(image(p), want);
    }

    patch_spec(&client, "web", json!({"partition": 0})).await;
    let after = wait_settled(&client, "web", 10, "r2").await;
    assert_eq!(
        uids(&after),
        original,
        "in-place updates keep pod names and uids"
    );
    assert!(after.iter().all(|p| image(p) == "web:2"));
    let status = wait_status(&client, "web", "current revision r2", |st| {
        st.current_revision.as_deref() == Some("r2")
    })
    .await;
    assert_eq!(status.available_replicas, 10);

    let traffic = cluster.traffic();
    eprintln!(
        "partition rollout: traffic {traffic_before:?} -> {traffic:?}, max unavailable {}",
        watcher.max()
    );
    assert!(
        traffic.sent > traffic_before.sent,
        "the prober sent requests"
    );
    assert_eq!(
        traffic.lost - traffic_before.lost,
        0,
        "no request lost during the update"
    );
    assert!(
        watcher.max() <= 3,
        "{} pods unavailable at once, maxUnavailable is 3",
        watcher.max()
    );
    agent.stop().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_and_a_recreating_update_lose_no_requests() {
    let (cluster, client) = start(fast_sim("recreate")).await;
    let agent = Agent::start(cluster.agent_client());
    let mut s = spec(6, "web:1", 1);
    s.traffic.as_mut().expect("traffic").drain_seconds = 1;
    create_set(&client, "web", s).await;
    let v1 = template_revision(&template("web:1"));
    wait_settled(&client, "web", 6, &v1).await;

    // Scale in: drained before deleted.
    let traffic_before = cluster.traffic();
    patch_spec(&client, "web", json!({"replicas": 3})).await;
    let kept = wait_settled(&client, "web", 3, &v1).await;
    let gone_after_scale_in = eventually("deleted pods gone", DEADLINE, || async {
        let all = pods(&client, "web").await?;
        (all.len() == 3).then_some(())
    })
    .await;
    let _: () = gone_after_scale_in;
    assert_eq!(
        cluster.traffic().lost - traffic_before.lost,
        0,
        "no request lost during scale-in"
    );

    // A change beyond images: pods are drained, deleted and created again.
    let watcher = UnavailabilityWatcher::start(&client, "web", 3).await;
    let mut changed = template("web:1");
    changed["spec"]["containers"][0]["env"] = json!([{"name": "MODE", "value": "fast"}]);
    let v2 = template_revision(&changed);
    let traffic_before = cluster.traffic();
    patch_spec(&client, "web", json!({"template": changed})).await;
    let recreated = wait_settled(&client, "web", 3, &v2).await;
    let old = uids(&kept);
    assert!(
        recreated
            .iter()
            .all(|p| !old.values().any(|u| Some(u) == p.metadata.uid.as_ref())),
        "every pod was recreated"
    );
    let traffic = cluster.traffic();
    eprintln!(
        "recreate: traffic {traffic_before:?} -> {traffic:?}, max unavailable {}",
        watcher.max()
    );
    assert!(traffic.sent > traffic_before.sent);
    assert_eq!(
        traffic.lost - traffic_before.lost,
        0,
        "no request lost while recreating pods"
    );
    assert!(
        watcher.max() <= 1,
        "{} pods unavailable at once, maxUnavailable is 1",
        watcher.max()
    );

    // And out again.
    patch_spec(&client, "web", json!({"replicas": 5})).await;
    wait_settled(&client, "web", 5, &v2).await;
    agent.stop().await;
    cluster.shutdown().await;
}
