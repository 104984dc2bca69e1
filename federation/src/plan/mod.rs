//! Planning (DESIGN section 4): pure functions from a deployment and the units to the replicas per
//! unit and the release groups. No I/O.

mod allocation;
mod groups;
mod rebalance;
mod table;

pub use allocation::{
    Allocation, AllocationError, AllocationRequest, PlanUnit, UnitAllocation, allocate,
    parse_current,
};
pub use groups::{Block, Group, GroupShape, GroupStep, GroupUnitInput, plan_groups};
pub use rebalance::{HoldInput, hold};
pub use table::render_table;

use crate::names::{ClusterName, RegionName, UnitName};
use crate::resources::{
    CafeDeployment, FieldError, FieldErrors, LogicalUnit, StrategyType, UnitPhase,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A deployment's plan: the JSON of `cafectl plan -o json` (read back by cafectl from the hub).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The deployment's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `spec.replicas`.
    pub replicas: i32,
    /// Replicas per unit, in topology order.
    pub units: Vec<PlannedUnit>,
    /// The release groups.
    pub batches: Vec<Group>,
    /// Things an operator should know about the allocation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Grouped or BlueGreen.
    #[serde(default)]
    pub strategy: StrategyType,
}

/// One unit's allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedUnit {
    /// The unit.
    pub unit: UnitName,
    /// Its region.
    pub region: RegionName,
    /// The member cluster serving it.
    pub cluster: ClusterName,
    /// Its replicas.
    pub replicas: i32,
    /// Its replicas if no unit were evacuated (the hub keeps these as the next plan's "current").
    #[serde(skip)]
    pub nominal: i32,
    /// Whether the unit is evacuated (its replicas run elsewhere).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evacuated: bool,
    /// The most pods the unit runs during a release: its replicas when pods move in place, twice
    /// as many while a blue-green switch keeps the old pods beside the new ones.
    #[serde(default)]
    pub peak: i32,
}

/// Plans `deployment` over the hub's `units`, with `current` pods per unit for the remainder rule.
/// The deployment must have passed [`CafeDeployment::validate`]; errors name the field.
pub fn plan_deployment(
    deployment: &CafeDeployment,
    units: &BTreeMap<UnitName, LogicalUnit>,
    current: &BTreeMap<UnitName, i32>,
) -> Result<Plan, FieldErrors> {
    plan_deployment_in(deployment, units, current, Vec::new())
}

/// [`plan_deployment`] while a pipeline drives the deployment: its groups come in `blocks`, one
/// per pipeline stage that moves it.
pub fn plan_deployment_in(
    deployment: &CafeDeployment,
    units: &BTreeMap<UnitName, LogicalUnit>,
    current: &BTreeMap<UnitName, i32>,
    blocks: Vec<Block>,
) -> Result<Plan, FieldErrors> {
    let resolved = deployment.resolve_units(units)?;
    let plan_units: Vec<PlanUnit> = resolved
        .iter()
        .map(|(name, unit)| PlanUnit {
            name: (*name).clone(),
            region: unit.spec.region.clone(),
            cluster: unit.spec.cluster.clone(),
            weight: unit.spec.weight,
            evacuated: unit.phase() == UnitPhase::Evacuated,
        })
        .collect();
    let spec = &deployment.spec;
    let allocation = allocate(&AllocationRequest {
        replicas: spec.replicas,
        units: &plan_units,
        overrides: &spec.topology.unit_replicas,
        failover_scope: spec.topology.failover_scope,
        current,
    })
    .map_err(|error| {
        FieldErrors(vec![FieldError::new(
            "spec.topology.unitReplicas",
            error.to_string(),
        )])
    })?;
    let group_input: Vec<GroupUnitInput> = plan_units
        .iter()
        .zip(&allocation.units)
        .map(|(unit, share)| GroupUnitInput {
            unit: unit.name.clone(),
            region: unit.region.clone(),
            replicas: share.replicas,
            nominal: share.nominal,
        })
        .collect();
    let shape = GroupShape {
        beta: spec.strategy.beta,
        batches: spec.strategy.batches,
        region_order: spec.strategy.region_order,
        regions: spec.strategy.regions.clone(),
        blocks,
        blue_green: spec.strategy.blue_green().is_some(),
    };
    Ok(Plan {
        name: deployment.metadata.name.clone(),
        namespace: deployment.namespace().to_owned(),
        replicas: spec.replicas,
        units: plan_units
            .iter()
            .zip(&allocation.units)
            .map(|(unit, share)| PlannedUnit {
                unit: unit.name.clone(),
                region: unit.region.clone(),
                cluster: unit.cluster.clone(),
                replicas: share.replicas,
                nominal: share.nominal,
                evacuated: unit.evacuated,
                peak: match spec.strategy.type_ {
                    StrategyType::Grouped => share.replicas,
                    StrategyType::BlueGreen => share.replicas.saturating_mul(2),
                },
            })
            .collect(),
        batches: plan_groups(&group_input, &shape),
        notes: allocation.notes,
        strategy: spec.strategy.type_,
    })
}

#[cfg(test)]
mod tests;
