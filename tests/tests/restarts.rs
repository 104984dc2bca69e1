//! Crashes and disconnections during a release: the hub killed with SIGKILL resumes at the same
//! group and updates no pod twice; an agent restart loses nothing; a cluster whose agent is away
//! holds the release until it is back.

mod common;

use cafe_federation::tls::Role;
use cafe_tests::demo::DEMO_YAML;
use cafe_tests::driver::{apply_yaml, awaiting_confirm, command, deployment, settled, wait_status};
use common::{pods, start};
use std::time::Duration;

use common::STEP;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_hub_resumes_at_the_same_group_and_updates_no_pod_twice() {
    let mut setup = start().await;
    let (_, _) = common::deploy_demo(&setup.playground).await;
    let before = pods(&setup.playground, "finance").await;
    // Kill the hub while group 1 is under way.
    common::release_to_group_1(&setup.playground).await;
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
    // The restarted hub resumes at group 1 and updates every pod exactly once, losing nothing.
    common::finish_release(&setup.playground, &before).await;
    setup.playground.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnected_agent_holds_the_release_and_its_restart_loses_nothing() {
    let mut setup = start().await;
    let reference = deployment("finance", "payments");
    let (mut client, _) = common::deploy_demo(&setup.playground).await;

    let away = "hz-dc1".to_owned();
    setup
        .playground
        .kill_agent(&away)
        .await
        .expect("kill the agent");
    setup
        .playground
        .wait_connected(std::slice::from_ref(&away), false)
        .await
        .expect("the hub notices");
    apply_yaml(
        &mut client,
        &DEMO_YAML.replace("payments:1.0.0", "payments:1.1.0"),
    )
    .await
    .expect("apply v2");
    // The three connected units finish group 0, but the group is not done without hz-az1.
    let waiting = wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| {
            s.units
                .iter()
                .filter(|u| u.unit != "hz-az1")
                .all(|u| u.updated_ready == 1 && u.ready == u.replicas)
        },
    )
    .await
    .expect("the connected units do their part");
    assert_eq!(waiting.phase, "Progressing");
    let hz = waiting
        .units
        .iter()
        .find(|u| u.unit == "hz-az1")
        .expect("hz-az1");
    assert!(!hz.connected);
    // It stays held while the agent is away (unknown health is not health).
    let held_until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < held_until {
        let status = cafe_tests::driver::status(&mut client, &reference)
            .await
            .expect("status");
        assert_eq!(
            (status.phase.as_str(), status.batch),
            ("Progressing", 0),
            "advanced without hz-az1"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    setup
        .playground
        .start_agent(&away)
        .expect("the agent restarts");
    let status = wait_status(&mut client, &reference, STEP, |_| {}, awaiting_confirm)
        .await
        .expect("group 0 completes");
    assert_eq!(status.batch, 0);
    // The restarted agent neither lost nor duplicated anything.
    let all = pods(&setup.playground, "finance").await;
    assert_eq!(all.len(), 10, "{all:?}");
    client
        .r#continue(command(&reference, Some(0)))
        .await
        .expect("continue");
    wait_status(&mut client, &reference, STEP, |_| {}, awaiting_confirm)
        .await
        .expect("group 1");
    client
        .r#continue(command(&reference, Some(1)))
        .await
        .expect("continue");
    wait_status(&mut client, &reference, STEP, |_| {}, settled)
        .await
        .expect("done");
    assert_eq!(pods(&setup.playground, "finance").await.len(), 10);
    assert_eq!(setup.playground.traffic().1, 0, "lost requests");
    setup.playground.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_restarted_during_an_evacuation_keeps_the_evacuated_pods_until_survivors_are_ready() {
    let mut setup = start().await;
    let reference = deployment("finance", "payments");
    common::deploy_demo(&setup.playground).await;
    let before = pods(&setup.playground, "finance").await;
    let evacuated_pods = common::unit_pods(&before, "sh-az1");
    assert!(evacuated_pods > 0);

    // The survivor's agent is away, so its new capacity cannot be confirmed ready.
    setup
        .playground
        .kill_agent("sh-dc2")
        .await
        .expect("kill sh-dc2's agent");
    let mut admin = setup.playground.client(Role::Admin).await.expect("admin");
    admin
        .evacuate(cafe_proto::v1::EvacuateRequest {
            target: Some(cafe_proto::v1::evacuate_request::Target::Unit(
                "sh-az1".into(),
            )),
            force: false,
            reason: "test".into(),
        })
        .await
        .expect("evacuate");
    setup.playground.kill_hub().await.expect("kill -9 the hub");
    setup.playground.start_hub().await.expect("restart");
    let others: Vec<String> = ["sh-dc1", "hz-dc1", "hz-dc2"].map(String::from).to_vec();
    setup
        .playground
        .wait_connected(&others, true)
        .await
        .expect("agents reconnect");
    // Give the restarted hub and sh-dc1's agent time to act: the evacuated unit must keep its pods.
    let mut client = setup
        .playground
        .client(Role::Operator)
        .await
        .expect("client");
    let held_until = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < held_until {
        let now = pods(&setup.playground, "finance").await;
        assert_eq!(
            common::unit_pods(&now, "sh-az1"),
            evacuated_pods,
            "the evacuated unit scaled in before the survivors were ready"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The survivor comes back: the move completes and the evacuated unit drains.
    setup
        .playground
        .start_agent("sh-dc2")
        .expect("restart sh-dc2's agent");
    wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        |s| {
            s.units.iter().all(|u| u.connected && u.ready == u.replicas)
                && s.units
                    .iter()
                    .any(|u| u.unit == "sh-az1" && u.evacuated && u.replicas == 0)
        },
    )
    .await
    .expect("the move completes");
    common::wait_unit_empty(&setup.playground, "sh-az1").await;
    assert_eq!(setup.playground.traffic().1, 0, "lost requests");
    setup.playground.shutdown().await;
}
