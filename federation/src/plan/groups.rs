//! The release groups (the batch plan) of DESIGN section 4.
//!
//! Per unit with `r` replicas: with `beta`, group 0 takes `min(1, r)`; the rest `R` is split over
//! `batches` groups with cumulative target `floor(k * R / batches)` after group `k`. `Parallel` runs
//! each group in every unit at once; `Sequential` runs all groups in one region, then the next.
//! A group is a cumulative target per unit. Groups in which no unit changes are left out, so an
//! operator never confirms an empty step. Which groups exist is decided on the replicas the units
//! would have with no unit evacuated: a release stores its group as a position in this list, so an
//! evacuation or a failback must not move a later group to an earlier place (a release paused in
//! one region would otherwise skip the next region's first group). A group that only evacuated
//! units changed stays, with nothing to do.

use crate::names::{RegionName, UnitName};
use crate::resources::RegionOrder;
use serde::{Deserialize, Serialize};

/// What the group planner needs to know of one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupUnitInput {
    /// The unit.
    pub unit: UnitName,
    /// Its region.
    pub region: RegionName,
    /// Its allocated replicas.
    pub replicas: i32,
    /// Its replicas if no unit were evacuated: they decide which groups exist.
    pub nominal: i32,
}

/// The release shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupShape {
    /// Group 0 updates one pod per unit.
    pub beta: bool,
    /// Groups after the beta group (at least 1).
    pub batches: u32,
    /// Parallel or Sequential.
    pub region_order: RegionOrder,
    /// The region order for Sequential.
    pub regions: Vec<RegionName>,
    /// While a pipeline drives the deployment: its stages that move it, in order. Empty: one
    /// release over every unit.
    pub blocks: Vec<Block>,
    /// Blue-green: a unit switches whole, in one group. The beta group switches the first unit of
    /// each region; the batches share the rest of each region's units.
    pub blue_green: bool,
}

/// The units one pipeline stage moves: every group of a block comes before the next block's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The stage's name.
    pub stage: String,
    /// Its regions; empty: every unit no earlier block moves. A unit no block names moves with
    /// the last block.
    pub regions: Vec<RegionName>,
}

/// One group: per unit (in input order), the pods updated in it and the cumulative target after it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// 0-based.
    pub index: usize,
    /// The pipeline stage it belongs to, while a pipeline drives the deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Per unit, in input order.
    pub units: Vec<GroupStep>,
}

/// One unit's part in one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupStep {
    /// The unit.
    pub unit: UnitName,
    /// Pods updated in this group.
    pub size: i32,
    /// Pods that run the update revision once the group is done (cumulative).
    pub updated: i32,
    /// `updated` had no unit been evacuated: what an evacuated unit's pods follow while they wait
    /// for the survivors (so that it neither rolls back nor switches back meanwhile).
    #[serde(skip)]
    pub nominal: i32,
}

impl Group {
    /// Whether this group updates pods of `unit`.
    pub fn changes(&self, unit: &UnitName) -> bool {
        self.units.iter().any(|s| &s.unit == unit && s.size > 0)
    }

    /// The cumulative target of `unit` after this group; 0 for a unit not in the plan.
    pub fn target_of(&self, unit: &UnitName) -> i32 {
        self.step_of(unit).map_or(0, |s| s.updated)
    }

    /// [`Group::target_of`] had no unit been evacuated.
    pub fn nominal_target_of(&self, unit: &UnitName) -> i32 {
        self.step_of(unit).map_or(0, |s| s.nominal)
    }

    fn step_of(&self, unit: &UnitName) -> Option<&GroupStep> {
        self.units.iter().find(|s| &s.unit == unit)
    }
}

/// The cumulative targets of one unit over one region's stages.
fn unit_stages(replicas: i32, shape: &GroupShape) -> Vec<i32> {
    let replicas = replicas.max(0);
    let beta = if shape.beta { replicas.min(1) } else { 0 };
    let rest = i64::from(replicas - beta);
    let batches = i64::from(shape.batches.max(1));
    let mut stages = Vec::with_capacity(shape.batches as usize + 1);
    if shape.beta {
        stages.push(beta);
    }
    for k in 1..=batches {
        // floor(k * R / batches) <= R, which fits an i32.
        let cumulative = i32::try_from(k * rest / batches).unwrap_or(i32::MAX);
        stages.push(beta + cumulative);
    }
    stages
}

/// The cumulative targets of the unit at `place` among its region's `peers` units in blue-green:
/// 0 until its group, then all of its replicas.
fn blue_green_stages(replicas: i32, place: usize, peers: usize, shape: &GroupShape) -> Vec<i32> {
    let batches = shape.batches.max(1) as usize;
    let beta = usize::from(shape.beta);
    let switch_at = match (shape.beta, place) {
        (true, 0) => 0,
        _ => {
            let (k, n) = (place - beta, peers.saturating_sub(beta).max(1));
            beta + k * batches / n
        }
    };
    (0..beta + batches)
        .map(|stage| {
            if stage >= switch_at {
                replicas.max(0)
            } else {
                0
            }
        })
        .collect()
}

/// Plans the groups. Deterministic; groups are cumulative, never decrease, and end at each unit's
/// replicas. With blocks, each block's units go through the shape's groups in turn, the units of
/// earlier blocks staying at their replicas and those of later ones at 0.
pub fn plan_groups(units: &[GroupUnitInput], shape: &GroupShape) -> Vec<Group> {
    if shape.blocks.is_empty() {
        return plan_block(units, shape);
    }
    let last = shape.blocks.len() - 1;
    let mut block_of: Vec<usize> = vec![last; units.len()];
    let mut assigned = vec![false; units.len()];
    for (b, block) in shape.blocks.iter().enumerate() {
        for (i, unit) in units.iter().enumerate() {
            if !assigned[i] && (block.regions.is_empty() || block.regions.contains(&unit.region)) {
                block_of[i] = b;
                assigned[i] = true;
            }
        }
    }
    let plain = GroupShape {
        blocks: Vec::new(),
        ..shape.clone()
    };
    let mut groups = Vec::new();
    for (b, block) in shape.blocks.iter().enumerate() {
        let members: Vec<GroupUnitInput> = units
            .iter()
            .zip(&block_of)
            .filter(|(_, of)| **of == b)
            .map(|(u, _)| u.clone())
            .collect();
        for inner in plan_block(&members, &plain) {
            let steps = units
                .iter()
                .zip(&block_of)
                .map(|(unit, &of)| {
                    let done = |replicas: i32| if of < b { replicas.max(0) } else { 0 };
                    inner
                        .units
                        .iter()
                        .find(|s| s.unit == unit.unit)
                        .cloned()
                        .unwrap_or(GroupStep {
                            unit: unit.unit.clone(),
                            size: 0,
                            updated: done(unit.replicas),
                            nominal: done(unit.nominal),
                        })
                })
                .collect();
            groups.push(Group {
                index: groups.len(),
                stage: Some(block.stage.clone()),
                units: steps,
            });
        }
    }
    groups
}

/// The groups of one release over `units`.
fn plan_block(units: &[GroupUnitInput], shape: &GroupShape) -> Vec<Group> {
    let per_region = usize::from(shape.beta) + shape.batches.max(1) as usize;
    let region_slot = |region: &RegionName| -> usize {
        match shape.region_order {
            RegionOrder::Parallel => 0,
            // Validation guarantees every region is listed; an unlisted one would go last.
            RegionOrder::Sequential => shape
                .regions
                .iter()
                .position(|r| r == region)
                .unwrap_or(shape.regions.len()),
        }
    };
    let slots = match shape.region_order {
        RegionOrder::Parallel => 1,
        RegionOrder::Sequential => units
            .iter()
            .map(|u| region_slot(&u.region) + 1)
            .max()
            .unwrap_or(1),
    };
    let stages_of = |u: &GroupUnitInput, replicas: i32| {
        if shape.blue_green {
            let peers = units.iter().filter(|o| o.region == u.region);
            let place = peers.clone().take_while(|o| o.unit != u.unit).count();
            blue_green_stages(replicas, place, peers.count(), shape)
        } else {
            unit_stages(replicas, shape)
        }
    };
    // Per unit: its stages, and those it would have with no unit evacuated.
    let stages: Vec<(Vec<i32>, Vec<i32>)> = units
        .iter()
        .map(|u| (stages_of(u, u.replicas), stages_of(u, u.nominal)))
        .collect();
    // The cumulative targets of every unit after slot `g`: what it runs, and what it would run
    // with no unit evacuated.
    let targets_at = |g: usize| -> (Vec<i32>, Vec<i32>) {
        units
            .iter()
            .zip(&stages)
            .map(|(unit, (actual, nominal))| {
                let target = |stages: &[i32], replicas: i32| match g
                    .checked_sub(region_slot(&unit.region) * per_region)
                {
                    None => 0,
                    Some(stage) => stages.get(stage).copied().unwrap_or(replicas.max(0)),
                };
                (target(actual, unit.replicas), target(nominal, unit.nominal))
            })
            .unzip()
    };
    let last = slots * per_region - 1;
    let steps = |before: &[i32], targets: &[i32], nominal: &[i32]| -> Vec<GroupStep> {
        units
            .iter()
            .zip(targets.iter().zip(before))
            .zip(nominal)
            .map(|((unit, (&updated, &before)), &nominal)| GroupStep {
                unit: unit.unit.clone(),
                size: updated - before,
                updated,
                nominal,
            })
            .collect()
    };
    let mut groups: Vec<Group> = Vec::new();
    let mut previous: Vec<i32> = vec![0; units.len()];
    let mut previous_nominal: Vec<i32> = vec![0; units.len()];
    for g in 0..=last {
        let (targets, nominal) = targets_at(g);
        // A slot exists when it would change a unit with no unit evacuated. Moves that only an
        // evacuation brings wait for the next slot that exists.
        if nominal == previous_nominal {
            continue;
        }
        groups.push(Group {
            index: groups.len(),
            stage: None,
            units: steps(&previous, &targets, &nominal),
        });
        previous = targets;
        previous_nominal = nominal;
    }
    // What is left after the last group that exists goes in it, so that every unit ends at its
    // replicas and no group is added after it (a pipeline's next block would move). Only a block
    // that would move nothing at all gets a group of its own.
    let (end, _) = targets_at(last);
    if end != previous {
        match groups.last_mut() {
            Some(group) => {
                let before: Vec<i32> = group.units.iter().map(|s| s.updated - s.size).collect();
                let nominal: Vec<i32> = group.units.iter().map(|s| s.nominal).collect();
                group.units = steps(&before, &end, &nominal);
            }
            None => groups.push(Group {
                index: 0,
                stage: None,
                units: steps(&previous, &end, &previous_nominal),
            }),
        }
    }
    groups
}
