//! A failing release: a crash-looping image yields ReleaseFailed naming the pod and takes no more
//! pods down; a fixed template then finishes the rollout.

mod common;

use cafe_member_agent::revision::template_revision;
use cafe_member_agent::status::RELEASE_FAILED;
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

/// How long the test keeps watching after the failure, to see that no other pod is touched: several
/// crash cycles of cafe-sim (300 ms each by default).
const HOLD: Duration = Duration::from_millis(1500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashloop_image_fails_the_release_naming_the_pod_and_stops_the_update() {
    let (cluster, client) = start(fast_sim("crashloop")).await;
    let agent = Agent::start(cluster.agent_client());
    create_set(&client, "web", spec(4, "web:1", 1)).await;
    let v1 = template_revision(&template("web:1"));
    wait_settled(&client, "web", 4, &v1).await;

    let bad = template("example/crashloop:2");
    let v2 = template_revision(&bad);
    patch_spec(&client, "web", json!({"template": bad})).await;
    let status = wait_status(&client, "web", "ReleaseFailed", |st| {
        st.conditions
            .iter()
            .any(|c| c.type_ == RELEASE_FAILED && c.status == "True")
    })
    .await;
    let failing = pods(&client, "web").await.expect("pods");
    let on_v2: Vec<String> = failing
        .iter()
        .filter(|p| revision(p) == v2)
        .map(|p| p.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(on_v2.len(), 1, "one pod tried the new revision: {on_v2:?}");
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == RELEASE_FAILED)
        .expect("condition");
    assert_eq!(condition.reason, "CrashLoopBackOff");
    assert!(
        condition.message.contains(&on_v2[0]),
        "{}",
        condition.message
    );
    assert!(
        status
            .problems
            .iter()
            .any(|p| p.pod == on_v2[0] && p.reason == "CrashLoopBackOff"),
        "{:?}",
        status.problems
    );

    // The update stops: for several crash cycles no other pod leaves the old revision or traffic.
    let until = Instant::now() + HOLD;
    while Instant::now() < until {
        if let Some(pods) = pods(&client, "web").await {
            let moved = pods.iter().filter(|p| revision(p) == v2).count();
            let serving = pods
                .iter()
                .filter(|p| is_ready(p) && revision(p) == v1)
                .count();
            assert_eq!(moved, 1, "no other pod moved to the failing revision");
            assert_eq!(serving, 3, "the other pods keep serving");
        }
        tokio::time::sleep(POLL).await;
    }

    // A fixed template: the failing pod (unavailable, so free to move) and the rest update.
    let fixed = template("web:3");
    let v3 = template_revision(&fixed);
    let lost_before = cluster.traffic().lost;
    patch_spec(&client, "web", json!({"template": fixed})).await;
    wait_settled(&client, "web", 4, &v3).await;
    let sets: kube::Api<cafe_member_agent::crd::InPlaceSet> =
        kube::Api::namespaced(client.clone(), NS);
    eprintln!("DEBUG {:#?}", sets.get("web").await.unwrap().status);
    wait_status(&client, "web", "ReleaseFailed cleared", |st| {
        st.conditions
            .iter()
            .any(|c| c.type_ == RELEASE_FAILED && c.status == "False")
            && st.problems.is_empty()
    })
    .await;
    assert_eq!(cluster.traffic().lost, lost_before, "no request lost");
    agent.stop().await;
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unschedulable_and_unpullable_pods_are_reported_as_problems() {
    let (cluster, client) = start(fast_sim("problems")).await;
    let agent = Agent::start(cluster.agent_client());
    // No node carries this zone.
    let mut nowhere = spec(2, "web:1", 1);
    nowhere.node_selector = [(
        "topology.kubernetes.io/zone".to_string(),
        "zone-x".to_string(),
    )]
    .into();
    create_set(&client, "nowhere", nowhere).await;
    let status = wait_status(&client, "nowhere", "Unschedulable problems", |st| {
        st.problems.len() == 2 && st.problems.iter().all(|p| p.reason == "Unschedulable")
    })
    .await;
    assert!(
        status.problems[0].message.contains("node(s) didn't match"),
        "{:?}",
        status.problems
    );

    create_set(&client, "web", spec(2, "web:1", 1)).await;
    wait_settled(&client, "web", 2, &template_revision(&template("web:1"))).await;
    patch_spec(
        &client,
        "web",
        json!({"template": template("example/badimage:2")}),
    )
    .await;
    let status = wait_status(&client, "web", "ReleaseFailed on an image pull", |st| {
        st.conditions
            .iter()
            .any(|c| c.type_ == RELEASE_FAILED && c.status == "True" && c.reason.contains("Image"))
    })
    .await;
    assert_eq!(status.problems.len(), 1, "{:?}", status.problems);
    assert_eq!(status.ready_replicas, 1, "the other pod keeps serving");
    agent.stop().await;
    cluster.shutdown().await;
}
