//! Three hub replicas on a three-member etcd cluster, all real processes: the leader killed or
//! cut off in the middle of a group, etcd members lost, and a backup restored.

mod common;

use cafe_federation::tls::Role;
use cafe_sim::member::Backend;
use cafe_tests::driver::{awaiting_confirm, deployment, wait_status};
use cafe_tests::playground::{Playground, PlaygroundOptions};
use common::{STEP, Setup, pods};
use std::time::{Duration, Instant};

/// The replicas' lease TTL in these tests: the default.
const TTL: Duration = cafe_federation::store::etcd::election::DEFAULT_LEASE_TTL;

async fn start_replicated(proxied: Vec<usize>) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut options = PlaygroundOptions::new(dir.path(), common::BINARY)
        .with_backend(Backend::from_env())
        .with_hubs(3);
    options.proxied_hubs = proxied;
    let playground = Playground::start(options)
        .await
        .expect("the playground starts");
    assert_eq!(playground.leader().await, Some(0), "replica 0 leads first");
    // cafectl lists the replicas of its configuration: one leads, the others follow it.
    let (code, stdout, stderr) =
        common::cafectl(&playground, Role::Viewer, &["get", "hubs", "-o", "json"]);
    assert_eq!(code, 0, "{stderr}");
    let hubs: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let items = hubs["items"].as_array().expect("items");
    let roles: Vec<&str> = items.iter().filter_map(|h| h["role"].as_str()).collect();
    assert_eq!(roles, ["Leader", "Follower", "Follower"], "{stdout}");
    for hub in items {
        assert_eq!(hub["leader"], playground.hub_urls[0].as_str());
        assert!(
            hub["store"]
                .as_str()
                .is_some_and(|s| s.starts_with("etcd ("))
        );
        assert!(hub["leaseAgeSeconds"].as_f64().is_some(), "{hub}");
    }
    Setup { playground, dir }
}

/// Polls until `done` holds, failing after `limit`; returns how long it took from `since`.
async fn within<F, Fut>(since: Instant, limit: Duration, what: &str, done: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    cafe_tests::driver::poll_until(since, limit, what, done)
        .await
        .unwrap_or_else(|error| panic!("{error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_mid_group_is_replaced_within_the_ttl_and_the_release_resumes() {
    let mut setup = start_replicated(Vec::new()).await;
    let (_, _) = common::deploy_demo(&setup.playground).await;
    // Beside the release, a pipeline waits at its approval gate (issue 16: at the same stage on
    // the next leader).
    let ledger = setup.dir.path().join("ledger.yaml");
    // In a namespace of its own: the release's checks look at every pod of finance.
    let books = |text: &str| text.replace("namespace: finance", "namespace: books");
    std::fs::write(&ledger, books(cafe_tests::demo::LEDGER_YAML)).expect("write");
    let pipeline = setup.dir.path().join("pipeline.yaml");
    std::fs::write(&pipeline, books(cafe_tests::demo::LEDGER_PIPELINE_YAML)).expect("write");
    for file in [&ledger, &pipeline] {
        let file = file.display().to_string();
        let (code, _, err) =
            common::cafectl(&setup.playground, Role::Operator, &["apply", "-f", &file]);
        assert_eq!(code, 0, "{err}");
        if file.ends_with("ledger.yaml") {
            let mut client = setup
                .playground
                .client(Role::Operator)
                .await
                .expect("client");
            wait_status(
                &mut client,
                &deployment("books", "ledger"),
                STEP,
                |_| {},
                cafe_tests::driver::settled,
            )
            .await
            .expect("ledger 1.0.0 everywhere");
        }
    }
    let at_gate = |playground: &Playground| {
        pipeline_at(playground) == Some(("AwaitingApproval".into(), "hangzhou".into()))
    };
    let playground = &setup.playground;
    within(Instant::now(), STEP, "the pipeline's gate", || async {
        at_gate(playground)
    })
    .await;
    let before = pods(&setup.playground, "finance").await;
    common::release_to_group_1(&setup.playground).await;

    let killed_at = Instant::now();
    setup
        .playground
        .kill_hub_replica(0)
        .await
        .expect("kill -9 the leader");
    let playground = &setup.playground;
    let leader_change = within(
        killed_at,
        TTL + Duration::from_secs(1),
        "a new leader",
        || async { playground.leader().await.is_some_and(|l| l != 0) },
    )
    .await;
    let reconnect = within(
        killed_at,
        Duration::from_secs(10),
        "the agents' reconnection",
        || playground.all_connected(),
    )
    .await;
    println!("leader change {leader_change:?}, every agent connected {reconnect:?} after the kill");
    // The next leader loaded the pipeline where the first left it: at the same gate, and its
    // approval finishes it.
    within(
        Instant::now(),
        STEP,
        "the gate on the new leader",
        || async { at_gate(playground) },
    )
    .await;
    let (code, out, err) = common::cafectl(
        playground,
        Role::Operator,
        &[
            "pipeline",
            "approve",
            "books/ledger-q4",
            "--stage",
            "hangzhou",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stage shanghai starts"), "{out}");
    within(Instant::now(), STEP, "the pipeline's success", || async {
        pipeline_at(playground).is_some_and(|(phase, _)| phase == "Succeeded")
    })
    .await;
    // The killed replica comes back as a follower.
    setup.playground.spawn_hub(0).expect("restart replica 0");
    common::finish_release(&setup.playground, &before).await;
    assert_ne!(setup.playground.leader().await, Some(0));
    setup.playground.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_release_survives_one_etcd_member_and_waits_out_a_lost_quorum() {
    let mut setup = start_replicated(Vec::new()).await;
    let reference = deployment("finance", "payments");
    let (_, _) = common::deploy_demo(&setup.playground).await;
    let before = pods(&setup.playground, "finance").await;

    // One member of three gone: the release goes on.
    setup.playground.etcd.as_mut().expect("etcd").kill(0).await;
    common::release_to_group_1(&setup.playground).await;
    let mut client = setup
        .playground
        .client(Role::Operator)
        .await
        .expect("client");
    wait_status(&mut client, &reference, STEP, |_| {}, awaiting_confirm)
        .await
        .expect("group 1 done with one etcd member down");

    // Two gone: no quorum. The hub stops acting; the clusters run on as they are.
    let frozen = pods(&setup.playground, "finance").await;
    let lost_at = Instant::now();
    setup.playground.etcd.as_mut().expect("etcd").kill(1).await;
    let playground = &mut setup.playground;
    loop {
        if playground.leader().await.is_none() {
            break;
        }
        assert!(
            lost_at.elapsed() < TTL * 2,
            "a replica still leads without quorum"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, _, stderr) = common::cafectl(
        playground,
        Role::Operator,
        &["continue", "payments", "-n", "finance"],
    );
    assert_ne!(code, 0, "a command without a store must fail");
    assert!(
        stderr.contains("etcd"),
        "the error names the store: {stderr}"
    );
    assert_eq!(
        pods(playground, "finance").await,
        frozen,
        "the clusters keep running as they were"
    );
    assert_eq!(
        playground.traffic().1,
        0,
        "lost requests while the hub is down"
    );

    // Quorum back: a replica leads again, and the release is where it was.
    let etcd = playground.etcd.as_mut().expect("etcd");
    etcd.restart(0).await.expect("member 0 back");
    etcd.restart(1).await.expect("member 1 back");
    for replica in 0..3 {
        if playground.hub_exited(replica) {
            playground.spawn_hub(replica).expect("restart the replica");
        }
    }
    let back = Instant::now();
    within(back, STEP, "a leader after quorum returns", || async {
        playground.leader().await.is_some()
    })
    .await;
    within(back, STEP, "the agents' reconnection", || {
        playground.all_connected()
    })
    .await;
    common::finish_release(&setup.playground, &before).await;
    setup.playground.shutdown().await;
}

/// Every slice an agent logged it received: (time, hub), in the agents' JSON logs.
fn receipts(playground: &Playground) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for cluster in playground.clusters.keys() {
        let path = playground.dir.join(format!("logs/agent-{cluster}.log"));
        let text = std::fs::read_to_string(&path).expect("agent log");
        for line in text.lines() {
            let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let fields = &entry["fields"];
            if fields["message"] == "slice received" {
                out.push((
                    entry["timestamp"].as_str().unwrap_or_default().to_owned(),
                    fields["hub"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_etcd_stops_before_another_leads() {
    let mut setup = start_replicated(vec![0]).await;
    let (_, _) = common::deploy_demo(&setup.playground).await;
    let before = pods(&setup.playground, "finance").await;
    common::release_to_group_1(&setup.playground).await;

    let cut_at = Instant::now();
    for proxy in &setup.playground.proxies[&0] {
        proxy.set_cut(true);
    }
    let playground = &mut setup.playground;
    let stopped = loop {
        if playground.hub_exited(0) {
            break cut_at.elapsed();
        }
        assert!(
            cut_at.elapsed() < TTL,
            "the cut-off leader still runs after its lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let playground = &setup.playground;
    let led = within(cut_at, TTL * 2, "a new leader", || async {
        playground.leader().await.is_some()
    })
    .await;
    println!("the cut-off leader stopped {stopped:?} after the cut; another led {led:?} after it");
    assert!(
        stopped < led,
        "the old leader stops before the new one leads"
    );
    within(cut_at, STEP, "the agents' reconnection", || {
        playground.all_connected()
    })
    .await;
    common::finish_release(&setup.playground, &before).await;

    // Who sent what, when: the senders' periods never overlap.
    let receipts = receipts(&setup.playground);
    let mut periods: Vec<(String, String, String)> = Vec::new();
    for (time, hub) in &receipts {
        match periods.last_mut() {
            Some((_, end, last)) if last == hub => *end = time.clone(),
            _ => periods.push((time.clone(), time.clone(), hub.clone())),
        }
    }
    let hubs: std::collections::BTreeSet<&String> = periods.iter().map(|p| &p.2).collect();
    assert_eq!(
        periods.len(),
        hubs.len(),
        "a hub sent slices again after another had: {periods:?}"
    );
    assert!(hubs.len() >= 2, "both leaders sent slices: {periods:?}");
    assert_eq!(periods[0].2, setup.playground.hub_urls[0]);
    setup.playground.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_taken_during_a_release_restores_into_an_empty_store_at_the_same_group() {
    let mut setup = start_replicated(Vec::new()).await;
    let reference = deployment("finance", "payments");
    let (mut client, _) = common::deploy_demo(&setup.playground).await;
    let before = pods(&setup.playground, "finance").await;
    common::release_to_group_1(&setup.playground).await;
    wait_status(&mut client, &reference, STEP, |_| {}, awaiting_confirm)
        .await
        .expect("group 1 done");

    let endpoints = setup
        .playground
        .etcd
        .as_ref()
        .expect("etcd")
        .urls()
        .join(",");
    let file = setup.dir.path().join("backup.json");
    let hub = |args: &[&str]| {
        std::process::Command::new(common::BINARY)
            .arg("hub")
            .args(args)
            .output()
            .expect("cafe-hub runs")
    };
    let out = hub(&[
        "backup",
        "--store",
        "etcd",
        "--etcd-endpoints",
        &endpoints,
        "--out",
        file.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "backup: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    setup
        .playground
        .kill_hub()
        .await
        .expect("stop every replica");
    let out = hub(&[
        "restore",
        "--store",
        "etcd",
        "--etcd-endpoints",
        &endpoints,
        "--etcd-prefix",
        "/restored",
        "--from",
        file.to_str().expect("path"),
    ]);
    assert!(
        out.status.success(),
        "restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    setup
        .playground
        .set_hub_args(vec!["--etcd-prefix".to_owned(), "/restored".to_owned()]);
    setup
        .playground
        .start_hub()
        .await
        .expect("the replicas start");
    let playground = &setup.playground;
    within(Instant::now(), STEP, "the agents' reconnection", || {
        playground.all_connected()
    })
    .await;
    let mut client = setup
        .playground
        .client(Role::Operator)
        .await
        .expect("client");
    let status = cafe_tests::driver::status(&mut client, &reference)
        .await
        .expect("status");
    assert_eq!(status.batch, 1, "the restored hub is at the same group");
    assert!(awaiting_confirm(&status), "{status:?}");
    common::finish_release(&setup.playground, &before).await;
    setup.playground.shutdown().await;
}

/// The pipeline's phase and stage, as `pipeline status -o json` shows them through cafectl (which
/// finds the leader among the configured replicas); `None` while no replica answers.
fn pipeline_at(playground: &Playground) -> Option<(String, String)> {
    let (code, stdout, _) = common::cafectl(
        playground,
        Role::Viewer,
        &["pipeline", "status", "books/ledger-q4", "-o", "json"],
    );
    let status: serde_json::Value = serde_json::from_str(&stdout).ok().filter(|_| code == 0)?;
    Some((
        status["phase"].as_str()?.to_owned(),
        status["stage"].as_str()?.to_owned(),
    ))
}
