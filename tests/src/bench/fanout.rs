//! fanout: apply every deployment (in batches of [`super::APPLY_BATCH`]) and time until the hub has
//! every slice acknowledged; per slice, from the start of its Apply call to its agent receiving it.

use super::report::{Report, Samples, ms};
use super::topology::Placement;
use super::{Options, World, deployment_index, hub_fields};
use anyhow::Context as _;
use tokio::time::Instant;

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut world = World::start(options).await?;
    let slices = options.slices();
    let acks_before = world.hub.acks().await?;
    let receipts_before = world.recorder().count();
    let usage_before = world.hub.usage()?;

    let started = Instant::now();
    let apply_started = world
        .apply_deployments(
            options,
            Placement::Spread,
            super::topology::IMAGE_V1,
            super::APPLY_CONCURRENCY,
        )
        .await?;
    let applied = started.elapsed();
    world.wait_receipts(receipts_before + slices).await?;
    let delivered = started.elapsed();
    world.wait_acks(acks_before + slices as u64).await?;
    let all_acked = started.elapsed();
    let acked = world.hub.acks().await? - acks_before;

    let mut latency = Samples::default();
    for receipt in world.recorder().receipts_since(receipts_before) {
        let index = deployment_index(&receipt.slice.id)
            .with_context(|| format!("unexpected slice {}", receipt.slice.id))?;
        let from = apply_started.get(index).copied().unwrap_or(started);
        latency.push(receipt.at.saturating_duration_since(from));
    }
    let usage_after = world.stop().await?;

    let mut report = Report::new("fanout")
        .with("clusters", options.clusters)
        .with("deployments", options.deployments)
        .with("unitsPerDeployment", options.units_per_deployment)
        .with("slices", slices)
        .with("acked", acked)
        .with("applyMs", ms(applied))
        .with("deliveredMs", ms(delivered))
        .with("allAckedMs", ms(all_acked))
        .with("p50Ms", latency.percentile_json(50.0))
        .with("p99Ms", latency.percentile_json(99.0))
        .with("maxMs", latency.percentile_json(100.0));
    hub_fields(&mut report, usage_before, usage_after, slices);
    Ok(report)
}
