//! Disaster-recovery failover on the playground: evacuating a unit keeps the ready replicas (counted
//! by an independent watcher over every cluster) at or above `replicas - maxUnavailable` with no
//! request lost; failback restores the normal allocation; both are idempotent; `--region` evacuates a
//! whole region; automatic failover evacuates an unreachable cluster, within its guards.

mod common;

use cafe_federation::tls::Role;
use cafe_sim::member::Backend;
use cafe_tests::driver::{deployment, wait_status};
use cafe_tests::playground::{Playground, PlaygroundOptions};
use common::{BINARY, ReadyWatcher, admin, cafectl, start};
use std::collections::BTreeMap;
use std::time::Duration;

use common::STEP;
const REPLICAS: usize = 10;
const MAX_UNAVAILABLE: usize = 1;

fn replicas_by_unit(
    status: &cafe_federation::release::DeploymentStatusView,
) -> BTreeMap<String, i32> {
    status
        .units
        .iter()
        .map(|u| (u.unit.clone(), u.replicas))
        .collect()
}

/// Every unit runs exactly its planned replicas, ready (evacuated ones: none).
fn placed(status: &cafe_federation::release::DeploymentStatusView) -> bool {
    status
        .units
        .iter()
        .all(|u| u.ready == u.replicas && (u.connected || u.replicas == 0))
}

/// The notes of the Failover Events in a cluster's `finance` namespace.
async fn failover_events(playground: &Playground, cluster: &str) -> Vec<String> {
    use k8s_openapi::api::events::v1::Event;
    let client = playground.clusters[cluster]
        .cluster
        .client()
        .expect("client");
    let api: kube::Api<Event> = kube::Api::namespaced(client, "finance");
    let events = api.list(&Default::default()).await.expect("list events");
    events
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some("Failover"))
        .filter_map(|e| e.note)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evacuate_and_fail_back_keep_capacity_and_lose_nothing() {
    let setup = start().await;
    let pg = &setup.playground;
    let reference = deployment("finance", "payments");
    let (mut client, status) = common::deploy_demo(pg).await;
    let normal = replicas_by_unit(&status);
    let watcher = ReadyWatcher::start(pg, "finance");
    watcher.wait_ready(REPLICAS).await;
    watcher.arm();

    let out = admin(
        pg,
        &[
            "failover",
            "evacuate",
            "--unit",
            "sh-az1",
            "--reason",
            "datacenter maintenance",
        ],
    );
    assert!(out.contains("failover done"), "{out}");
    let moved = wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| {
            let sh1 = s.units.iter().find(|u| u.unit == "sh-az1").expect("sh-az1");
            sh1.evacuated && sh1.replicas == 0 && placed(s)
        },
    )
    .await
    .expect("sh-az1's replicas run in sh-az2");
    let by_unit = replicas_by_unit(&moved);
    assert_eq!(
        by_unit["sh-az2"],
        normal["sh-az1"] + normal["sh-az2"],
        "Region scope keeps them in cn-shanghai"
    );
    assert_eq!(
        (by_unit["hz-az1"], by_unit["hz-az2"]),
        (normal["hz-az1"], normal["hz-az2"])
    );
    common::wait_unit_empty(pg, "sh-az1").await;
    // Both clusters recorded the move as Kubernetes Events on their InPlaceSets.
    for cluster in ["sh-dc1", "sh-dc2"] {
        let events = failover_events(pg, cluster).await;
        assert!(
            events
                .iter()
                .any(|note| note.contains("unit sh-az1 evacuated: datacenter maintenance")),
            "{cluster}: {events:?}"
        );
    }
    // Idempotent.
    let again = admin(pg, &["failover", "evacuate", "--unit", "sh-az1"]);
    assert!(again.contains("unchanged"), "{again}");
    let failover_status = admin(pg, &["failover", "status", "-o", "json"]);
    let document: serde_json::Value = serde_json::from_str(&failover_status).expect("JSON");
    let sh1 = document["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|u| u["unit"] == "sh-az1")
        .expect("sh-az1")
        .clone();
    assert_eq!(
        (sh1["phase"].as_str(), sh1["capacityRestored"].as_bool()),
        (Some("Evacuated"), Some(true)),
        "{document}"
    );
    assert_eq!(sh1["reason"], "datacenter maintenance");

    let out = admin(pg, &["failover", "failback", "--unit", "sh-az1"]);
    assert!(out.contains("failover done"), "{out}");
    let back = wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| replicas_by_unit(s) == normal && placed(s) && s.units.iter().all(|u| !u.evacuated),
    )
    .await
    .expect("the normal allocation returns");
    assert_eq!(replicas_by_unit(&back), normal);
    let again = admin(pg, &["failover", "failback", "--unit", "sh-az1"]);
    assert!(again.contains("unchanged"), "{again}");

    // A whole region.
    admin(pg, &["failover", "evacuate", "--region", "cn-shanghai"]);
    let moved = wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| {
            s.units
                .iter()
                .filter(|u| u.unit.starts_with("sh-"))
                .all(|u| u.evacuated && u.replicas == 0)
                && placed(s)
        },
    )
    .await
    .expect("cn-hangzhou takes everything");
    let by_unit = replicas_by_unit(&moved);
    assert_eq!(by_unit["hz-az1"] + by_unit["hz-az2"], REPLICAS as i32);
    admin(pg, &["failover", "failback", "--unit", "sh-az1"]);
    admin(pg, &["failover", "failback", "--unit", "sh-az2"]);
    wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| replicas_by_unit(s) == normal && placed(s),
    )
    .await
    .expect("back to normal");

    let (lowest, events) = watcher.lowest();
    assert!(events > 0);
    assert!(
        lowest >= REPLICAS - MAX_UNAVAILABLE,
        "ready pods fell to {lowest}"
    );
    assert_eq!(pg.traffic().1, 0, "lost requests");
    let audit = admin(pg, &["audit", "-o", "json"]);
    assert!(
        audit.contains("failover evacuate sh-az1") && audit.contains("failover failback sh-az1"),
        "{audit}"
    );
    drop(watcher);

    // The figure of the issue: from `evacuate --force` to every replacement pod ready.
    let started = tokio::time::Instant::now();
    admin(pg, &["failover", "evacuate", "--unit", "hz-az1", "--force"]);
    let moved = wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| {
            let hz2 = s.units.iter().find(|u| u.unit == "hz-az2").expect("hz-az2");
            hz2.replicas == normal["hz-az1"] + normal["hz-az2"] && hz2.ready == hz2.replicas
        },
    )
    .await
    .expect("replacements ready");
    let took = started.elapsed();
    let start_delay = cafe_tests::playground::DEFAULT_START_DELAY;
    eprintln!(
        "evacuate --force: {} replacement pods ready in {took:?}, {:.1} times the {start_delay:?} pod start delay",
        normal["hz-az1"],
        took.as_secs_f64() / start_delay.as_secs_f64()
    );
    assert!(
        moved
            .units
            .iter()
            .any(|u| u.unit == "hz-az1" && u.evacuated)
    );
    setup.playground.shutdown().await;
}

async fn start_with_auto_failover(dir: &std::path::Path) -> Playground {
    let mut options = PlaygroundOptions::new(dir, BINARY).with_backend(Backend::from_env());
    options.hub_args = [
        "--auto-failover",
        "--unreachable-seconds",
        "2",
        "--max-evacuated-share",
        "0.5",
    ]
    .map(String::from)
    .to_vec();
    Playground::start(options)
        .await
        .expect("the playground starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_cluster_is_evacuated_automatically() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pg = start_with_auto_failover(dir.path()).await;
    let reference = deployment("finance", "payments");
    let (mut client, status) = common::deploy_demo(&pg).await;
    let normal = replicas_by_unit(&status);

    let went_down = tokio::time::Instant::now();
    pg.take_offline("hz-dc1").await.expect("take hz-dc1 down");
    let moved = wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| {
            let hz1 = s.units.iter().find(|u| u.unit == "hz-az1").expect("hz-az1");
            hz1.evacuated
                && s.units
                    .iter()
                    .filter(|u| u.unit != "hz-az1")
                    .all(|u| u.connected && u.ready == u.replicas)
        },
    )
    .await
    .expect("hz-az1 evacuated and its replicas running elsewhere");
    let took = went_down.elapsed();
    assert_eq!(
        replicas_by_unit(&moved)["hz-az2"],
        normal["hz-az1"] + normal["hz-az2"]
    );
    let ready: i32 = moved
        .units
        .iter()
        .filter(|u| u.unit != "hz-az1")
        .map(|u| u.ready)
        .sum();
    assert_eq!(ready, REPLICAS as i32);
    eprintln!("automatic failover: cluster down to replacement pods ready in {took:?}");
    let (_, audit, _) = cafectl(&pg, Role::Viewer, &["audit", "-o", "json"]);
    assert!(
        audit.contains("\"who\":\"hub\"") || audit.contains("\"who\": \"hub\""),
        "{audit}"
    );
    assert!(audit.contains("unreachable"), "{audit}");

    // When the cluster returns, its pods for the evacuated slice are drained and removed.
    pg.bring_online("hz-dc1").expect("bring hz-dc1 back");
    common::wait_unit_empty(&pg, "hz-az1").await;
    pg.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_of_four_clusters_offline_evacuates_none() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut pg = start_with_auto_failover(dir.path()).await;
    common::deploy_demo(&pg).await;
    for cluster in ["sh-dc1", "sh-dc2", "hz-dc1"] {
        pg.take_offline(cluster).await.expect("offline");
    }
    // Well past the 2 s threshold: the hub sees 1 of 4 clusters, so it is the one cut off.
    let watch_until = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < watch_until {
        let (code, out, err) = cafectl(&pg, Role::Viewer, &["failover", "status", "-o", "json"]);
        assert_eq!(code, 0, "{err}");
        assert!(!out.contains("Evacuated"), "a unit was evacuated: {out}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    pg.shutdown().await;
}
