//! Blue-green releases end to end: a group's units get a full preview of the new revision out of
//! traffic, switch in one step, keep the old pods as the way back, and switch back without a new
//! pod. Requests are counted per revision by the simulated application in every cluster.

mod common;

use cafe_federation::release::DeploymentStatusView;
use cafe_federation::tls::Role;
use cafe_tests::demo::BLUE_GREEN_YAML;
use cafe_tests::driver::{apply_yaml, command, deployment, status, wait_status};
use cafe_tests::playground::Playground;
use common::{ReadyWatcher, STEP, admin, start};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

const NAMESPACE: &str = "finance";
const NAME: &str = "checkout";
/// The units of each group (the first unit of each region, then the second).
const GROUPS: [[&str; 2]; 2] = [["hz-az1", "sh-az1"], ["hz-az2", "sh-az2"]];
/// The unit each cluster runs.
const UNIT_OF: [(&str, &str); 4] = [
    ("sh-dc1", "sh-az1"),
    ("sh-dc2", "sh-az2"),
    ("hz-dc1", "hz-az1"),
    ("hz-dc2", "hz-az2"),
];

fn with_image(image: &str) -> String {
    BLUE_GREEN_YAML.replace("registry.example/checkout:1.0.0", image)
}

fn cluster_of(unit: &str) -> &'static str {
    UNIT_OF
        .iter()
        .find(|(_, u)| *u == unit)
        .map(|(c, _)| *c)
        .expect("a demo unit")
}

/// Requests the application answered in `namespace`, per (unit, revision), from every cluster's
/// simulated application.
async fn requests(playground: &Playground) -> BTreeMap<(String, String), u64> {
    let mut totals = BTreeMap::new();
    for (cluster, entry) in &playground.clusters {
        let unit = UNIT_OF
            .iter()
            .find(|(c, _)| c == cluster)
            .map(|(_, u)| (*u).to_owned())
            .expect("a demo cluster");
        let url = format!("{}/metrics", entry.cluster.control_url());
        let answer = cafe_federation::http_client::get(&url, Duration::from_secs(5))
            .await
            .expect("the application's metrics");
        for line in answer.body.lines() {
            let Some(rest) = line.strip_prefix("cafe_sim_requests_total{") else {
                continue;
            };
            let Some((labels, value)) = rest.split_once("} ") else {
                continue;
            };
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|kv| kv.strip_prefix(&format!("{name}=\"")))
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or_default()
                    .to_owned()
            };
            if label("namespace") != NAMESPACE || !label("inplaceset").starts_with(NAME) {
                continue;
            }
            let value: f64 = value.trim().parse().expect("a counter value");
            *totals.entry((unit.clone(), label("revision"))).or_insert(0) += value as u64;
        }
    }
    totals
}

fn count(totals: &BTreeMap<(String, String), u64>, unit: &str, revision: &str) -> u64 {
    totals
        .get(&(unit.to_owned(), revision.to_owned()))
        .copied()
        .unwrap_or(0)
}

/// One pod of the application.
#[derive(Debug, Clone)]
struct PodState {
    unit: String,
    uid: String,
    revision: String,
    ready: bool,
}

/// Every pod of the application in every cluster, by name.
async fn pods(playground: &Playground) -> BTreeMap<String, PodState> {
    let mut all = BTreeMap::new();
    for (cluster, entry) in &playground.clusters {
        let unit = UNIT_OF
            .iter()
            .find(|(c, _)| c == cluster)
            .map(|(_, u)| (*u).to_owned())
            .expect("a demo cluster");
        let api: Api<Pod> = Api::namespaced(entry.cluster.client().expect("client"), NAMESPACE);
        let list = api
            .list(&ListParams::default().labels("app=checkout"))
            .await
            .expect("list pods");
        for pod in list.items {
            if pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let label = |k: &str| {
                pod.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(k))
                    .cloned()
                    .unwrap_or_default()
            };
            let ready = pod
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            all.insert(
                pod.metadata.name.clone().unwrap_or_default(),
                PodState {
                    unit: unit.clone(),
                    uid: pod.metadata.uid.clone().unwrap_or_default(),
                    revision: label("cafe.io/revision"),
                    ready,
                },
            );
        }
    }
    all
}

/// The revisions whose pods are Ready (in traffic) in `unit`.
fn serving_revisions(pods: &BTreeMap<String, PodState>, unit: &str) -> BTreeSet<String> {
    pods.values()
        .filter(|p| p.unit == unit && p.ready)
        .map(|p| p.revision.clone())
        .collect()
}

fn unit_view<'a>(
    status: &'a DeploymentStatusView,
    unit: &str,
) -> &'a cafe_federation::release::BlueGreenUnitView {
    status
        .units
        .iter()
        .find(|u| u.unit == unit)
        .and_then(|u| u.blue_green.as_ref())
        .unwrap_or_else(|| panic!("{unit} has no blue-green status: {status:?}"))
}

/// The watcher never saw a unit (one per cluster) below replicas - maxUnavailable = 1 serving, and
/// no request was lost; then the playground stops.
async fn no_unit_below_its_floor_and_nothing_lost(setup: common::Setup, watcher: &ReadyWatcher) {
    let lowest = watcher.lowest_per_cluster();
    println!("lowest ready pods per cluster: {lowest:?}");
    for (cluster, ready) in &lowest {
        assert!(
            *ready >= 1,
            "{cluster}: {ready} serving, below replicas - maxUnavailable"
        );
    }
    let (sent, lost) = setup.playground.traffic();
    println!("{sent} requests sent, {lost} lost");
    assert_eq!(lost, 0, "lost requests");
    setup.playground.shutdown().await;
}

fn complete(status: &DeploymentStatusView) -> bool {
    status.phase == "Stable" && status.reason == "Complete"
}

fn awaiting_switch(batch: i32) -> impl Fn(&DeploymentStatusView) -> bool {
    move |s| s.reason == "AwaitingSwitch" && s.batch == batch
}

/// Deploys v1 and returns an operator's client and v1's revision.
async fn deploy(
    playground: &Playground,
) -> (
    cafe_proto::v1::federation_client::FederationClient<tonic::transport::Channel>,
    String,
) {
    let mut client = playground.client(Role::Operator).await.expect("client");
    apply_yaml(&mut client, BLUE_GREEN_YAML)
        .await
        .expect("apply v1");
    let settled = common::wait_settled(&mut client, &deployment(NAMESPACE, NAME))
        .await
        .expect("v1 runs everywhere");
    let all = pods(playground).await;
    assert_eq!(all.len(), 8, "{all:?}");
    (client, settled.current_revision)
}

/// Continues (switches) group 0 and waits until group 1's preview is ready.
async fn switch_group_0(
    client: &mut cafe_proto::v1::federation_client::FederationClient<tonic::transport::Channel>,
) -> DeploymentStatusView {
    let reference = deployment(NAMESPACE, NAME);
    client
        .r#continue(command(&reference, Some(0)))
        .await
        .expect("continue");
    wait_status(client, &reference, STEP, |_| {}, awaiting_switch(1))
        .await
        .expect("group 0 switched, group 1's preview ready")
}

/// Applies `image`, waits for group 0's preview, and checks that it took no traffic: every unit of
/// group 0 runs two more pods, out of traffic, and no request reached the new revision.
async fn preview_group_0(
    playground: &Playground,
    client: &mut cafe_proto::v1::federation_client::FederationClient<tonic::transport::Channel>,
    image: &str,
) -> DeploymentStatusView {
    let reference = deployment(NAMESPACE, NAME);
    apply_yaml(client, &with_image(image))
        .await
        .expect("apply the new image");
    let paused = wait_status(client, &reference, STEP, |_| {}, awaiting_switch(0))
        .await
        .expect("group 0's preview is ready");
    let new = paused.update_revision.clone();
    for unit in GROUPS[0] {
        let view = unit_view(&paused, unit);
        assert_eq!(
            (view.state.as_str(), view.preview_ready),
            ("PreviewReady", 2)
        );
    }
    for unit in GROUPS[1] {
        assert_eq!(unit_view(&paused, unit).state, "Waiting");
    }
    let all = pods(playground).await;
    let totals = requests(playground).await;
    for unit in GROUPS.iter().flatten() {
        assert_eq!(
            count(&totals, unit, &new),
            0,
            "{unit}: a preview took traffic"
        );
        let on_new = all
            .values()
            .filter(|p| p.unit == *unit && p.revision == new)
            .count();
        let expected = if GROUPS[0].contains(unit) { 2 } else { 0 };
        assert_eq!(on_new, expected, "{unit}: preview pods");
        assert!(
            !serving_revisions(&all, unit).contains(&new),
            "{unit}: a preview pod is Ready"
        );
    }
    paused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_release_switches_each_group_at_once_and_switches_back_without_a_pod() {
    let mut setup = start().await;
    let reference = deployment(NAMESPACE, NAME);
    let (mut client, v1) = deploy(&setup.playground).await;
    let original: BTreeMap<String, String> = pods(&setup.playground)
        .await
        .into_iter()
        .map(|(name, p)| (name, p.uid))
        .collect();
    let watcher = ReadyWatcher::start(&setup.playground, NAMESPACE);
    watcher.wait_ready(8).await;
    watcher.arm();

    // `cafectl plan` shows the blue-green groups and the peak pods per unit.
    let plan = common::cafectl_json(
        &setup.playground,
        &["plan", "-n", NAMESPACE, NAME, "-o", "json"],
    );
    assert_eq!(plan["strategy"], "BlueGreen", "{plan}");
    for unit in plan["units"].as_array().expect("units") {
        assert_eq!(unit["peak"], 4, "{plan}");
    }

    let paused = preview_group_0(
        &setup.playground,
        &mut client,
        "registry.example/checkout:2.0.0",
    )
    .await;
    let v2 = paused.update_revision.clone();

    // The switch of group 0.
    let next = switch_group_0(&mut client).await;
    let switched = requests(&setup.playground).await;
    // cafectl shows each unit's part: switched with its old pods kept, or its preview ready.
    let (code, text, err) = common::cafectl(
        &setup.playground,
        Role::Viewer,
        &["status", NAME, "-n", NAMESPACE],
    );
    assert_eq!(code, 0, "{err}");
    println!("{text}");
    assert!(
        text.contains("BLUE-GREEN") && text.contains("PreviewReady"),
        "{text}"
    );
    for unit in GROUPS[0] {
        let view = unit_view(&next, unit);
        assert_eq!(view.state, "Switched");
        assert_eq!(view.standby, 2, "{unit}: the old pods stand by");
        assert!(!view.standby_until.is_empty());
        assert!(
            count(&switched, unit, &v2) > 0,
            "{unit}: the new revision serves"
        );
    }
    for unit in GROUPS[1] {
        assert_eq!(
            count(&switched, unit, &v2),
            0,
            "{unit}: traffic before its switch"
        );
    }

    // Group 1 switches; its agent in one cluster is killed in the middle of it.
    let killed = cluster_of(GROUPS[1][0]);
    client
        .r#continue(command(&reference, Some(1)))
        .await
        .expect("continue");
    let deadline = Instant::now() + STEP;
    loop {
        let all = pods(&setup.playground).await;
        if serving_revisions(&all, GROUPS[1][0]).contains(&v2) {
            break;
        }
        assert!(Instant::now() < deadline, "the switch never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let at_kill = status(&mut client, &reference).await.expect("status");
    setup
        .playground
        .kill_agent(killed)
        .await
        .expect("kill -9 the agent");
    assert_eq!(
        (at_kill.reason.as_str(), at_kill.batch),
        ("Switching", 1),
        "the agent was not killed mid-switch"
    );
    setup
        .playground
        .start_agent(killed)
        .expect("the agent restarts");
    let done = wait_status(&mut client, &reference, STEP, |_| {}, complete)
        .await
        .expect("v2 everywhere");
    assert_eq!(done.current_revision, v2);
    let all = pods(&setup.playground).await;
    for unit in GROUPS.iter().flatten() {
        assert_eq!(
            serving_revisions(&all, unit),
            BTreeSet::from([v2.clone()]),
            "{unit}: serving after the switch"
        );
        let view = unit_view(&done, unit);
        assert_eq!((view.state.as_str(), view.standby), ("Switched", 2));
    }
    assert_eq!(all.len(), 16, "8 new pods beside the 8 old ones: {all:?}");
    // No request reached an old pod once its unit's switch was done.
    let before_rollback = requests(&setup.playground).await;
    for unit in GROUPS[0] {
        assert_eq!(
            count(&before_rollback, unit, &v1),
            count(&switched, unit, &v1),
            "{unit}: the old revision served after the switch"
        );
    }

    // The way back, within scaleDownDelaySeconds: every unit at once, and no pod is created.
    let started = Instant::now();
    client
        .rollback(command(&reference, None))
        .await
        .expect("rollback");
    let back = wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| s.phase == "Stable" && s.reason == "RolledBack",
    )
    .await
    .expect("rolled back");
    let took = started.elapsed();
    println!("switch back of 4 units took {} ms", took.as_millis());
    assert_eq!(back.current_revision, v1);
    let all = pods(&setup.playground).await;
    let before: BTreeSet<&String> = original.keys().collect();
    for (name, uid) in &original {
        let pod = all
            .get(name)
            .unwrap_or_else(|| panic!("old pod {name} is gone"));
        assert_eq!(&pod.uid, uid, "{name} was recreated");
    }
    for (name, pod) in &all {
        assert!(
            before.contains(name) || pod.revision == v2,
            "pod {name} was created by the switch back"
        );
    }
    assert_eq!(
        all.len(),
        16,
        "no pod created or removed by the switch back"
    );
    for unit in GROUPS.iter().flatten() {
        assert_eq!(
            serving_revisions(&all, unit),
            BTreeSet::from([v1.clone()]),
            "{unit}: serving after the switch back"
        );
    }
    let rolled_back = requests(&setup.playground).await;
    // Once the switch back is done, the new revision gets no request: watched until every unit's
    // old revision has answered at least 50 more.
    let deadline = Instant::now() + STEP;
    let later = loop {
        let later = requests(&setup.playground).await;
        let served = GROUPS
            .iter()
            .flatten()
            .all(|unit| count(&later, unit, &v1) >= count(&rolled_back, unit, &v1) + 50);
        if served {
            break later;
        }
        assert!(
            Instant::now() < deadline,
            "the old revision serves too little"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for unit in GROUPS.iter().flatten() {
        assert_eq!(
            count(&later, unit, &v2),
            count(&rolled_back, unit, &v2),
            "{unit}: the new revision served after the switch back"
        );
    }

    no_unit_below_its_floor_and_nothing_lost(setup, &watcher).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_preview_fails_its_group_before_traffic_moves_and_a_killed_hub_finishes_the_switch()
 {
    let mut setup = start().await;
    let reference = deployment(NAMESPACE, NAME);
    let (mut client, v1) = deploy(&setup.playground).await;
    let watcher = ReadyWatcher::start(&setup.playground, NAMESPACE);
    watcher.wait_ready(8).await;
    watcher.arm();

    // No node carries this label: the preview cannot be scheduled.
    let nowhere = with_image("registry.example/checkout:2.0.0").replace(
        "    spec:\n      containers:",
        "    spec:\n      nodeSelector: {disk: nvme}\n      containers:",
    );
    apply_yaml(&mut client, &nowhere).await.expect("apply");
    let failed = wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| s.phase == "Failed",
    )
    .await
    .expect("the group fails");
    assert_eq!((failed.reason.as_str(), failed.batch), ("PodsFailing", 0));
    assert!(
        failed.message.contains("Unschedulable"),
        "{}",
        failed.message
    );
    let all = pods(&setup.playground).await;
    let totals = requests(&setup.playground).await;
    for unit in GROUPS.iter().flatten() {
        assert_eq!(
            serving_revisions(&all, unit),
            BTreeSet::from([v1.clone()]),
            "{unit}: traffic moved"
        );
        assert_eq!(count(&totals, unit, &failed.update_revision), 0);
    }
    client
        .rollback(command(&reference, None))
        .await
        .expect("rollback");
    wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| s.phase == "Stable" && s.reason == "RolledBack",
    )
    .await
    .expect("rolled back");
    let deadline = Instant::now() + STEP;
    while pods(&setup.playground).await.len() != 8 {
        assert!(Instant::now() < deadline, "the preview pods stay");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A good release; the hub is killed right after group 0's switch begins.
    let paused = preview_group_0(
        &setup.playground,
        &mut client,
        "registry.example/checkout:3.0.0",
    )
    .await;
    let v3 = paused.update_revision.clone();
    client
        .r#continue(command(&reference, Some(0)))
        .await
        .expect("continue");
    let at_kill = status(&mut client, &reference).await.expect("status");
    assert_eq!(at_kill.reason, "Switching");
    setup.playground.kill_hub().await.expect("kill -9 the hub");
    setup
        .playground
        .start_hub()
        .await
        .expect("the hub restarts");
    let names: Vec<String> = setup.playground.clusters.keys().cloned().collect();
    setup
        .playground
        .wait_connected(&names, true)
        .await
        .expect("agents reconnect");
    let mut client = setup
        .playground
        .client(Role::Operator)
        .await
        .expect("client");
    let next = wait_status(&mut client, &reference, STEP, |_| {}, awaiting_switch(1))
        .await
        .expect("the restarted hub finishes the switch");
    let all = pods(&setup.playground).await;
    for unit in GROUPS[0] {
        assert_eq!(unit_view(&next, unit).state, "Switched");
        assert_eq!(serving_revisions(&all, unit), BTreeSet::from([v3.clone()]));
    }
    for unit in GROUPS[1] {
        assert_eq!(serving_revisions(&all, unit), BTreeSet::from([v1.clone()]));
    }
    client
        .r#continue(command(&reference, Some(1)))
        .await
        .expect("continue");
    wait_status(&mut client, &reference, STEP, |_| {}, complete)
        .await
        .expect("v3 everywhere");
    no_unit_below_its_floor_and_nothing_lost(setup, &watcher).await;
}

/// The pods of `unit` on `revision`: (all of them, the Ready ones).
fn on_revision(pods: &BTreeMap<String, PodState>, unit: &str, revision: &str) -> (usize, usize) {
    let of: Vec<&PodState> = pods
        .values()
        .filter(|p| p.unit == unit && p.revision == revision)
        .collect();
    (of.len(), of.iter().filter(|p| p.ready).count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evacuation_mid_release_moves_a_previewing_unit_and_the_release_goes_on() {
    const EVACUATED: &str = "hz-az1";
    const SURVIVOR: &str = "hz-az2";
    let setup = start().await;
    let pg = &setup.playground;
    let reference = deployment(NAMESPACE, NAME);
    let (mut client, v1) = deploy(pg).await;
    let watcher = ReadyWatcher::start(pg, NAMESPACE);
    watcher.wait_ready(8).await;
    watcher.arm();
    let paused = preview_group_0(pg, &mut client, "registry.example/checkout:2.0.0").await;
    let v2 = paused.update_revision.clone();

    // Group 0 previews in hz-az1 and sh-az1 when hz-az1's datacenter is evacuated: its 2 replicas
    // move to hz-az2 (not yet in the release, so on v1) before its own pods, serving and preview
    // alike, are drained away. The release stays where it was.
    admin(
        pg,
        &[
            "failover",
            "evacuate",
            "--unit",
            EVACUATED,
            "--reason",
            "blue-green test",
        ],
    );
    let moved = wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| {
            let unit = |name: &str| s.units.iter().find(|u| u.unit == name);
            unit(EVACUATED).is_some_and(|u| u.evacuated && u.replicas == 0)
                && unit(SURVIVOR).is_some_and(|u| u.replicas == 4 && u.ready == 4)
        },
    )
    .await
    .expect("hz-az1's replicas serve in hz-az2");
    assert_eq!(
        (moved.phase.as_str(), moved.reason.as_str(), moved.batch),
        ("Paused", "AwaitingSwitch", 0),
        "{moved:?}"
    );
    let deadline = Instant::now() + STEP;
    loop {
        let left: Vec<PodState> = pods(pg)
            .await
            .into_values()
            .filter(|p| p.unit == EVACUATED)
            .collect();
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{EVACUATED} keeps pods: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = pods(pg).await;
    assert_eq!(on_revision(&all, SURVIVOR, &v1), (4, 4), "{all:?}");
    assert_eq!(on_revision(&all, SURVIVOR, &v2), (0, 0), "{all:?}");
    assert_eq!(unit_view(&moved, "sh-az1").state, "PreviewReady");

    // The group goes on with its other unit; the next group previews hz-az2 at its new size.
    let next = switch_group_0(&mut client).await;
    assert_eq!(unit_view(&next, "sh-az1").state, "Switched");
    let survivor = unit_view(&next, SURVIVOR);
    assert_eq!(
        (survivor.state.as_str(), survivor.preview_ready),
        ("PreviewReady", 4)
    );
    let totals = requests(pg).await;
    assert_eq!(count(&totals, SURVIVOR, &v2), 0, "a preview took traffic");
    client
        .r#continue(command(&reference, Some(1)))
        .await
        .expect("continue");
    let done = wait_status(&mut client, &reference, STEP, |_| {}, complete)
        .await
        .expect("v2 everywhere but the evacuated unit");
    assert_eq!(done.current_revision, v2);
    let all = pods(pg).await;
    for unit in ["sh-az1", "sh-az2", SURVIVOR] {
        assert_eq!(
            serving_revisions(&all, unit),
            BTreeSet::from([v2.clone()]),
            "{unit}: serving after the release"
        );
    }
    assert_eq!(on_revision(&all, SURVIVOR, &v2), (4, 4), "{all:?}");
    assert!(!all.values().any(|p| p.unit == EVACUATED), "{all:?}");

    // Fail back: hz-az1 comes back on the released revision, and hz-az2 returns to 2.
    admin(pg, &["failover", "failback", "--unit", EVACUATED]);
    let back = wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| {
            s.units
                .iter()
                .all(|u| !u.evacuated && u.replicas == 2 && u.ready == 2)
        },
    )
    .await
    .expect("the normal allocation");
    assert_eq!(
        (back.phase.as_str(), back.current_revision.as_str()),
        ("Stable", v2.as_str())
    );
    let all = pods(pg).await;
    for unit in GROUPS.iter().flatten() {
        assert_eq!(
            serving_revisions(&all, unit),
            BTreeSet::from([v2.clone()]),
            "{unit}: serving after the failback"
        );
    }

    // Every unit kept serving; hz-dc1 was emptied on purpose, after hz-dc2 had taken its pods.
    let lowest = watcher.lowest_per_cluster();
    println!("lowest ready pods per cluster: {lowest:?}");
    for (cluster, ready) in &lowest {
        if cluster != cluster_of(EVACUATED) {
            assert!(*ready >= 1, "{cluster}: {ready} serving");
        }
    }
    let (sent, lost) = pg.traffic();
    println!("{sent} requests sent, {lost} lost");
    assert_eq!(lost, 0, "lost requests");
    setup.playground.shutdown().await;
}
