//! leader: three hub replicas on three etcd members and a playground's four clusters with their
//! agents (all real processes). The leader is killed with SIGKILL `--runs` times, in the middle of
//! a release's group each time; measured from the kill: until another replica leads, and until
//! every agent is connected to it. The killed replica comes back as a follower before the next run.

use super::Options;
use super::report::{Report, Samples};
use crate::driver::{apply_yaml, awaiting_confirm, command, deployment, poll_until, wait_status};
use crate::playground::{Playground, PlaygroundOptions};
use anyhow::Context as _;
use cafe_federation::tls::Role;
use std::time::{Duration, Instant};

/// How long one step may take.
const STEP: Duration = Duration::from_secs(120);

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let playground =
        Playground::start(PlaygroundOptions::new(dir.path(), &options.hub_binary).with_hubs(3))
            .await?;
    measure(playground, options.runs.max(1)).await
}

async fn measure(mut playground: Playground, runs: usize) -> anyhow::Result<Report> {
    let reference = deployment("finance", "payments");
    let mut client = playground.client(Role::Operator).await?;
    apply_yaml(&mut client, crate::demo::DEMO_YAML).await?;
    wait_status(
        &mut client,
        &reference,
        STEP,
        |_| {},
        crate::driver::settled,
    )
    .await?;
    let mut leader_change = Samples::default();
    let mut reconnect = Samples::default();
    for run in 0..runs {
        // A release under way: group 0 of a new image.
        let mut client = playground.client(Role::Operator).await?;
        let image = format!("payments:2.{run}.0");
        apply_yaml(
            &mut client,
            &crate::demo::DEMO_YAML.replace("payments:1.0.0", &image),
        )
        .await?;
        let leader = playground.leader().await.context("no replica leads")?;
        let killed = Instant::now();
        playground.kill_hub_replica(leader).await?;
        let led = poll_until(killed, STEP, "a new leader", || async {
            playground.leader().await.is_some_and(|l| l != leader)
        })
        .await?;
        let connected = poll_until(killed, STEP, "the agents' reconnection", || {
            playground.all_connected()
        })
        .await?;
        leader_change.push(led);
        reconnect.push(connected);
        playground.spawn_hub(leader)?;
        // Finish the release so that the next run starts from a settled deployment.
        let mut client = playground.client(Role::Operator).await?;
        loop {
            let status = wait_status(
                &mut client,
                &reference,
                STEP,
                |_| {},
                |s| awaiting_confirm(s) || crate::driver::settled(s),
            )
            .await?;
            if crate::driver::settled(&status) {
                break;
            }
            let batch = Some(status.batch);
            client.r#continue(command(&reference, batch)).await?;
            wait_status(
                &mut client,
                &reference,
                STEP,
                |_| {},
                |s| !awaiting_confirm(s),
            )
            .await?;
        }
    }
    let lost = playground.traffic().1;
    playground.shutdown().await;
    Ok(Report::new("leader")
        .with("replicas", 3)
        .with("etcdMembers", 3)
        .with(
            "leaseTtlSeconds",
            cafe_federation::store::etcd::election::DEFAULT_LEASE_TTL.as_secs(),
        )
        .with("runs", runs)
        .with("leaderChangeMedianMs", leader_change.percentile_json(50.0))
        .with("leaderChangeMaxMs", leader_change.percentile_json(100.0))
        .with("agentsConnectedMedianMs", reconnect.percentile_json(50.0))
        .with("agentsConnectedMaxMs", reconnect.percentile_json(100.0))
        .with("requestsLost", lost))
}
