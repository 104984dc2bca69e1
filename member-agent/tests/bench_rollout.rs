//! The rollout efficiency measurement (not a timed assertion): a 100-pod in-place update with
//! maxUnavailable 10 under cafe-sim's default timings, against the ideal of ceil(100/10) waves, each as
//! long as one pod's drain (balancer reaction + deregistration), restart (start delay) and
//! re-registration (one traffic tick). Run with
//! `cargo test -p cafe-member-agent --release --test bench_rollout -- --ignored --nocapture`.

mod common;

use cafe_member_agent::revision::template_revision;
use cafe_sim::{SimConfig, TRAFFIC_TICK};
use common::*;
use serde_json::json;
use std::time::{Duration, Instant};

const PODS: i32 = 100;
const MAX_UNAVAILABLE: i32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it on purpose"]
async fn measure_a_100_pod_in_place_update() {
    let config = SimConfig::new("bench")
        .with_start_delay(Duration::from_millis(200))
        .with_traffic_finalizer(LB);
    let wave =
        config.lb_reaction_delay + config.deregistration_delay + config.start_delay + TRAFFIC_TICK;
    let waves = (PODS + MAX_UNAVAILABLE - 1) / MAX_UNAVAILABLE;
    let ideal = wave * waves as u32;
    let (cluster, client) = start(config).await;
    let agent = Agent::start(cluster.agent_client());
    create_set(&client, "web", spec(PODS, "web:1", MAX_UNAVAILABLE)).await;
    let v1 = template_revision(&template("web:1"));
    wait_settled(&client, "web", PODS as usize, &v1).await;
    let watcher = UnavailabilityWatcher::start(&client, "web", PODS as usize).await;
    let lost_before = cluster.traffic().lost;

    let v2 = template_revision(&template("web:2"));
    let started = Instant::now();
    patch_spec(&client, "web", json!({"template": template("web:2")})).await;
    wait_settled(&client, "web", PODS as usize, &v2).await;
    let measured = started.elapsed();

    let ratio = measured.as_secs_f64() / ideal.as_secs_f64();
    eprintln!(
        "100-pod in-place update: measured {measured:.2?}, ideal {ideal:.2?} ({waves} waves of {wave:?}), \
         measured/ideal = {ratio:.2}, max unavailable {}, lost {}",
        watcher.max(),
        cluster.traffic().lost - lost_before
    );
    assert!(watcher.max() <= MAX_UNAVAILABLE as usize);
    agent.stop().await;
    cluster.shutdown().await;
}
