//! release: with every deployment applied and settled, apply a new image to all of them (beta plus 2
//! batches, Auto pause of 0 s) and measure the coordination overhead of every group transition:
//! from the moment the report completing group g leaves its agent to the moment the last unit
//! received its group g+1 slice. Light agents post a ready status when they receive a slice, and the
//! link sends it no sooner than [`super::AGENT_REPORT_DEBOUNCE`] later, so the overhead counted here
//! is `last g+1 receipt - (last g receipt + debounce)`: an upper bound of the hub's share.

use super::agents::Receipt;
use super::report::{Report, Samples, ms};
use super::topology::{IMAGE_V2, Placement, slice_deployment, slice_unit};
use super::{AGENT_REPORT_DEBOUNCE, Options, World, hub_fields};
use std::collections::{BTreeMap, BTreeSet};
use tokio::time::Instant;

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut world = World::start(options).await?;
    world.settle_deployments(options, Placement::Spread).await?;
    let old_revision = world
        .recorder()
        .receipts()
        .last()
        .map(|r| r.slice.update_revision.clone())
        .unwrap_or_default();
    let slices = options.slices();
    let acks_before = world.hub.acks().await?;
    let receipts_before = world.recorder().count();
    let usage_before = world.hub.usage()?;

    let started = Instant::now();
    world
        // One call at a time, as the figures before pipelined applies were measured: the release
        // starts deployment by deployment, over about a second.
        .apply_deployments(options, Placement::Spread, IMAGE_V2, 1)
        .await?;
    // Done when every slice runs the new revision as its stable one (the release is Stable).
    let mut complete = BTreeSet::new();
    world
        .wait_until(receipts_before, |receipt| {
            let s = &receipt.slice;
            if s.update_revision != old_revision && s.stable_revision == s.update_revision {
                complete.insert(s.id.clone());
            }
            complete.len() >= slices
        })
        .await?;
    let completed = started.elapsed();
    let receipts = world.recorder().receipts_since(receipts_before);
    world.wait_acks(acks_before + receipts.len() as u64).await?;
    let all_acked = started.elapsed();
    let usage_after = world.stop().await?;

    let overhead = group_overheads(&receipts, &old_revision);
    let expected = options.deployments * 2;
    let mut report = Report::new("release")
        .with("clusters", options.clusters)
        .with("deployments", options.deployments)
        .with("unitsPerDeployment", options.units_per_deployment)
        .with("slices", slices)
        .with("groupTransitions", overhead.len())
        .with("groupTransitionsExpected", expected)
        .with("agentDebounceMs", ms(AGENT_REPORT_DEBOUNCE))
        .with("overheadP50Ms", overhead.percentile_json(50.0))
        .with("overheadP99Ms", overhead.percentile_json(99.0))
        .with("overheadMaxMs", overhead.percentile_json(100.0))
        .with("completedMs", ms(completed))
        .with("totalMs", ms(all_acked));
    hub_fields(&mut report, usage_before, usage_after, receipts.len());
    Ok(report)
}

/// The overhead of each group transition of each deployment (see the module documentation).
/// Group `g` of a unit is the `g`-th distinct target among its release slices (with 5 pods per unit
/// every group changes every unit's target).
fn group_overheads(receipts: &[Receipt], old_revision: &str) -> Samples {
    // deployment -> unit -> target -> earliest receipt
    let mut by_deployment: BTreeMap<&str, BTreeMap<&str, BTreeMap<i32, Instant>>> = BTreeMap::new();
    for receipt in receipts {
        let s = &receipt.slice;
        if s.update_revision == old_revision || s.stable_revision == s.update_revision {
            continue;
        }
        let at = by_deployment
            .entry(slice_deployment(&s.id))
            .or_default()
            .entry(slice_unit(&s.id))
            .or_default()
            .entry(receipt.target())
            .or_insert(receipt.at);
        *at = (*at).min(receipt.at);
    }
    let mut samples = Samples::default();
    for units in by_deployment.values() {
        // group -> the last unit's receipt time
        let mut last: BTreeMap<usize, Instant> = BTreeMap::new();
        for targets in units.values() {
            for (group, at) in targets.values().enumerate() {
                let slot = last.entry(group).or_insert(*at);
                *slot = (*slot).max(*at);
            }
        }
        for (group, done) in &last {
            if let Some(next) = last.get(&(group + 1)) {
                let sent = *done + AGENT_REPORT_DEBOUNCE;
                samples.push(next.saturating_duration_since(sent));
            }
        }
    }
    samples
}

#[cfg(test)]
mod tests {
    use super::*;
    use cafe_proto::v1 as pb;
    use std::time::Duration;

    fn receipt(at: Instant, unit: &str, partition: i32, stable: &str) -> Receipt {
        Receipt {
            at,
            cluster: "c0".into(),
            slice: pb::Slice {
                id: format!("bench/d0000@{unit}"),
                replicas: 5,
                partition,
                update_revision: "v2".into(),
                stable_revision: stable.into(),
                ..pb::Slice::default()
            },
        }
    }

    #[test]
    fn overhead_runs_from_the_last_report_of_a_group_to_the_last_slice_of_the_next() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let receipts = [
            receipt(at(0), "u0", 4, "v1"),
            receipt(at(10), "u1", 4, "v1"),
            // group 0 completes with u1's report, sent at 10 + 50 ms
            receipt(at(70), "u0", 2, "v1"),
            receipt(at(75), "u1", 2, "v1"),
            receipt(at(200), "u0", 0, "v1"),
            receipt(at(300), "u1", 0, "v1"),
            receipt(at(400), "u0", 0, "v2"),
        ];
        let samples = group_overheads(&receipts, "v1");
        assert_eq!(samples.len(), 2);
        assert_eq!(samples.percentile(0.0), Some(15.0));
        assert_eq!(samples.percentile(100.0), Some(175.0));
    }
}
