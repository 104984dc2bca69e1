//! failover: every deployment runs in unit `u0000` and 4 others of its region; evacuate `u0000` and
//! time from the Evacuate call until every deployment's surviving units have received slices that
//! together hold all its replicas (the survivors' new slices), then until the hub has them acked.
//! While the hub answers Evacuate with UNIMPLEMENTED the scenario reports `available: false`.

use super::agents::Receipt;
use super::report::{Report, ms};
use super::topology::{PODS_PER_UNIT, Placement, slice_deployment, slice_unit, unit};
use super::{Options, World, hub_fields};
use cafe_proto::v1 as pb;
use std::collections::BTreeMap;
use tokio::time::Instant;

/// The reason recorded with the evacuation.
const REASON: &str = "cafe-bench failover";

/// The latest replicas each surviving unit holds, per deployment.
#[derive(Debug, Default)]
struct Survivors {
    evacuated: String,
    replicas: BTreeMap<String, BTreeMap<String, (u64, i32)>>,
}

impl Survivors {
    fn observe(&mut self, receipt: &Receipt) {
        let s = &receipt.slice;
        let unit = slice_unit(&s.id);
        if unit == self.evacuated {
            return;
        }
        let slot = self
            .replicas
            .entry(slice_deployment(&s.id).to_owned())
            .or_default()
            .entry(unit.to_owned())
            .or_insert((0, 0));
        if s.generation > slot.0 {
            *slot = (s.generation, s.replicas);
        }
    }

    /// Deployments whose survivors hold all `total` replicas.
    fn complete(&self, total: i32) -> usize {
        self.replicas
            .values()
            .filter(|units| units.values().map(|(_, r)| r).sum::<i32>() >= total)
            .count()
    }
}

/// Runs the scenario.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let mut world = World::start(options).await?;
    world
        .settle_deployments(options, Placement::SharedFirstUnit)
        .await?;
    let evacuated = unit(0);
    let mut survivors = Survivors {
        evacuated: evacuated.clone(),
        ..Survivors::default()
    };
    for receipt in world.recorder().receipts() {
        survivors.observe(&receipt);
    }
    let total = i32::try_from(PODS_PER_UNIT * options.units_per_deployment)?;
    let acks_before = world.hub.acks().await?;
    let receipts_before = world.recorder().count();
    let usage_before = world.hub.usage()?;
    let mut report = Report::new("failover")
        .with("clusters", options.clusters)
        .with("deployments", options.deployments)
        .with("unitsPerDeployment", options.units_per_deployment)
        .with("evacuatedUnit", evacuated.clone())
        .with("slicesOnEvacuatedUnit", options.deployments);

    let started = Instant::now();
    let request = pb::EvacuateRequest {
        target: Some(pb::evacuate_request::Target::Unit(evacuated)),
        force: false,
        reason: REASON.to_owned(),
    };
    match world.client.evacuate(request).await {
        Err(status) if status.code() == tonic::Code::Unimplemented => {
            let usage_after = world.stop().await?;
            report.set("available", false);
            report.set("reason", status.message().to_owned());
            report.set("dispatchMs", serde_json::Value::Null);
            hub_fields(&mut report, usage_before, usage_after, 0);
            return Ok(report);
        }
        Err(status) => return Err(anyhow::anyhow!("Evacuate failed: {status}")),
        Ok(_) => {}
    }
    let deployments = options.deployments;
    world
        .wait_until(receipts_before, |receipt| {
            survivors.observe(receipt);
            survivors.complete(total) >= deployments
        })
        .await?;
    let delivered = started.elapsed();
    let new_slices = world.recorder().count() - receipts_before;
    world.wait_acks(acks_before + new_slices as u64).await?;
    let dispatch = started.elapsed();
    let usage_after = world.stop().await?;
    report.set("available", true);
    report.set("newSlices", new_slices);
    report.set("deliveredMs", ms(delivered));
    report.set("dispatchMs", ms(dispatch));
    hub_fields(&mut report, usage_before, usage_after, new_slices);
    Ok(report)
}
