//! API faults: with 500s/429s on a share of requests and watches dropped over and over, a rollout and
//! a scale-out still converge, within maxUnavailable, without extra pods or lost requests.

mod common;

use cafe_member_agent::revision::template_revision;
use cafe_sim::FaultsUpdate;
use common::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Share of API requests answered with an injected 500 or 429.
const ERROR_RATE: f64 = 0.1;
/// How often every open watch is dropped.
const DROP_WATCHES_EVERY: Duration = Duration::from_millis(250);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_converges_through_errors_and_dropped_watches() {
    let (cluster, client) = start_sim(fast_sim("faults")).await;
    let cluster = Arc::new(cluster);
    let agent = Agent::start(client.clone());
    create_set(&client, "web", spec(8, "web:1", 2)).await;
    let v1 = template_revision(&template("web:1"));
    let before = wait_settled(&client, "web", 8, &v1).await;
    let watcher = UnavailabilityWatcher::start(&client, "web", 8).await;
    let lost_before = cluster.traffic().lost;

    cluster.update_faults(FaultsUpdate {
        error_rate: Some(ERROR_RATE),
        ..FaultsUpdate::default()
    });
    let dropper = {
        let cluster = Arc::clone(&cluster);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(DROP_WATCHES_EVERY);
            loop {
                tick.tick().await;
                cluster.drop_watches();
            }
        })
    };

    let t0 = std::time::Instant::now();
    let v2 = template_revision(&template("web:2"));
    patch_spec(&client, "web", json!({"template": template("web:2")})).await;
    eprintln!("patched after {:?}", t0.elapsed());
    let after = wait_settled(&client, "web", 8, &v2).await;
    eprintln!("updated after {:?}", t0.elapsed());
    assert_eq!(
        uids(&after),
        uids(&before),
        "updated in place despite the faults"
    );
    assert!(
        watcher.max() <= 2,
        "{} unavailable at once, maxUnavailable is 2",
        watcher.max()
    );
    assert_eq!(watcher.max_active(), 8, "no extra pods");
    drop(watcher);

    patch_spec(&client, "web", json!({"replicas": 10})).await;
    wait_settled(&client, "web", 10, &v2).await;
    eprintln!("scaled after {:?}", t0.elapsed());

    dropper.abort();
    cluster.update_faults(FaultsUpdate {
        error_rate: Some(0.0),
        ..FaultsUpdate::default()
    });
    assert_eq!(cluster.traffic().lost, lost_before, "no request lost");
    agent.stop().await;
    if let Ok(cluster) = Arc::try_unwrap(cluster) {
        cluster.shutdown().await;
    }
}
