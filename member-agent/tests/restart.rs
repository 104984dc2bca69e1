//! Restart safety: an agent killed at any moment of an update and started again creates no extra
//! pods and finishes the update.

mod common;

use cafe_member_agent::revision::template_revision;
use common::*;
use serde_json::json;
use std::time::Duration;

/// Kill points, after the update is seen under way: spread over a rollout's drains, updates and
/// creations.
const KILL_AFTER: [Duration; 4] = [
    Duration::from_millis(80),
    Duration::from_millis(230),
    Duration::from_millis(170),
    Duration::from_millis(310),
];

async fn kill_repeatedly_during(
    cluster: &Cluster,
    client: &kube::Client,
    set: &str,
    replicas: usize,
    next: &str,
) {
    let mut agent = Agent::start(cluster.agent_client());
    // The first kill lands once the update is under way; the others at spread-out times after it.
    wait_mid_update(client, set, next).await;
    for delay in KILL_AFTER {
        tokio::time::sleep(delay).await;
        agent.kill().await;
        agent = Agent::start(cluster.agent_client());
    }
    wait_settled(client, set, replicas, next).await;
    agent.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_killed_mid_update_and_restarted_converges_to_exactly_replicas() {
    let (cluster, client) = start(fast_sim("restart")).await;
    let agent = Agent::start(cluster.agent_client());
    create_set(&client, "web", spec(8, "web:1", 2)).await;
    let v1 = template_revision(&template("web:1"));
    let before = wait_settled(&client, "web", 8, &v1).await;
    agent.stop().await;

    // In place: killed four times during the update.
    let watcher = UnavailabilityWatcher::start(&client, "web", 8).await;
    let lost_before = cluster.traffic().lost;
    let v2 = template_revision(&template("web:2"));
    patch_spec(&client, "web", json!({"template": template("web:2")})).await;
    kill_repeatedly_during(&cluster, &client, "web", 8, &v2).await;
    let after = pods(&client, "web").await.expect("pods");
    assert_eq!(
        uids(&after),
        uids(&before),
        "in place, whatever the restarts"
    );

    // Recreate (creations are where a restart could double up): killed four times again.
    let mut changed = template("web:2");
    changed["spec"]["containers"][0]["env"] = json!([{"name": "MODE", "value": "fast"}]);
    let v3 = template_revision(&changed);
    patch_spec(&client, "web", json!({"template": changed})).await;
    kill_repeatedly_during(&cluster, &client, "web", 8, &v3).await;

    assert_eq!(watcher.max_active(), 8, "never more than replicas pods");
    assert!(
        watcher.max() <= 2,
        "{} unavailable at once, maxUnavailable is 2",
        watcher.max()
    );
    assert_eq!(cluster.traffic().lost, lost_before, "no request lost");
    cluster.shutdown().await;
}
