//! The planner's rules, each peer's semantics, and its properties.

use super::*;
use crate::resources::{FailoverScope, RegionOrder, ReplicaCount, UnitReplicas};
use proptest::prelude::*;

fn unit(name: &str, region: &str, weight: u32) -> PlanUnit {
    PlanUnit {
        name: UnitName::new(name).expect("test unit name"),
        region: RegionName::new(region).expect("test region"),
        cluster: ClusterName::new(format!("{name}-c")).expect("test cluster"),
        weight,
        evacuated: false,
    }
}

fn fixed(name: &str, replicas: ReplicaCount) -> UnitReplicas {
    UnitReplicas {
        unit: UnitName::new(name).expect("test unit name"),
        replicas: Some(replicas),
        min: None,
        max: None,
    }
}

fn elastic(name: &str, min: Option<i32>, max: Option<i32>) -> UnitReplicas {
    UnitReplicas {
        unit: UnitName::new(name).expect("test unit name"),
        replicas: None,
        min: min.map(ReplicaCount::Count),
        max: max.map(ReplicaCount::Count),
    }
}

fn current(pairs: &[(&str, i32)]) -> BTreeMap<UnitName, i32> {
    pairs
        .iter()
        .map(|(u, n)| (UnitName::new(*u).expect("test unit name"), *n))
        .collect()
}

fn shares(
    replicas: i32,
    units: &[PlanUnit],
    overrides: &[UnitReplicas],
    scope: FailoverScope,
    now: &BTreeMap<UnitName, i32>,
) -> Result<Vec<i32>, AllocationError> {
    allocate(&AllocationRequest {
        replicas,
        units,
        overrides,
        failover_scope: scope,
        current: now,
    })
    .map(|a| a.units.iter().map(|u| u.replicas).collect())
}

fn simple(replicas: i32, units: &[PlanUnit], overrides: &[UnitReplicas]) -> Vec<i32> {
    shares(
        replicas,
        units,
        overrides,
        FailoverScope::Region,
        &BTreeMap::new(),
    )
    .expect("allocation succeeds")
}

fn four_units() -> Vec<PlanUnit> {
    vec![
        unit("sh-az1", "cn-shanghai", 1),
        unit("sh-az2", "cn-shanghai", 1),
        unit("hz-az1", "cn-hangzhou", 1),
        unit("hz-az2", "cn-hangzhou", 1),
    ]
}

// ---- UnitedDeployment's specific allocator ----

#[test]
fn specific_fixed_and_percent_units_get_exactly_their_value() {
    let units = [
        unit("a", "r", 1),
        unit("b", "r", 1),
        unit("c", "r", 1),
        unit("d", "r", 1),
    ];
    // a: 3, b: 25% of 10 = 2.5 rounded half up = 3, c and d share the remaining 4.
    let overrides = [
        fixed("a", ReplicaCount::Count(3)),
        fixed("b", ReplicaCount::Percent(25)),
    ];
    assert_eq!(simple(10, &units, &overrides), [3, 3, 2, 2]);
}

#[test]
fn specific_remainder_goes_to_units_with_most_current_replicas() {
    let units = [unit("a", "r", 1), unit("b", "r", 1), unit("c", "r", 1)];
    let now = current(&[("a", 5), ("b", 1), ("c", 0)]);
    // 8 over 3: floor 2, remainder 2 -> a (5 current) and b (1 current).
    let got = shares(8, &units, &[], FailoverScope::Region, &now).expect("allocates");
    assert_eq!(got, [3, 3, 2]);
}

#[test]
fn specific_remainder_ties_go_to_the_larger_unit_name() {
    let units = [unit("a", "r", 1), unit("b", "r", 1), unit("c", "r", 1)];
    // No current pods anywhere: the remainder of 1 goes to "c", the largest name.
    assert_eq!(simple(7, &units, &[]), [2, 2, 3]);
}

#[test]
fn specific_sum_above_replicas_is_an_error() {
    let units = [unit("a", "r", 1), unit("b", "r", 1)];
    let overrides = [
        fixed("a", ReplicaCount::Count(6)),
        fixed("b", ReplicaCount::Percent(50)),
    ];
    assert_eq!(
        shares(
            10,
            &units,
            &overrides,
            FailoverScope::Region,
            &BTreeMap::new()
        ),
        Err(AllocationError::SpecifiedExceeds {
            specified: 11,
            replicas: 10
        })
    );
}

#[test]
fn every_unit_specified_and_short_is_an_error() {
    let units = [unit("a", "r", 1), unit("b", "r", 1)];
    let overrides = [
        fixed("a", ReplicaCount::Count(3)),
        fixed("b", ReplicaCount::Count(3)),
    ];
    assert_eq!(
        shares(
            10,
            &units,
            &overrides,
            FailoverScope::Region,
            &BTreeMap::new()
        ),
        Err(AllocationError::SpecifiedShort {
            specified: 6,
            replicas: 10
        })
    );
}

// ---- UnitedDeployment's elastic allocator ----

#[test]
fn elastic_gives_mins_in_order_then_fills_to_max_in_order() {
    let units = [unit("a", "r", 1), unit("b", "r", 1), unit("c", "r", 1)];
    let overrides = [
        elastic("a", Some(2), Some(3)),
        elastic("b", Some(1), Some(4)),
    ];
    assert_eq!(simple(10, &units, &overrides), [3, 4, 3]);
    // Scale-in empties the last units first.
    assert_eq!(simple(4, &units, &overrides), [3, 1, 0]);
    // Not enough for every min: mins are given in topology order.
    assert_eq!(simple(2, &units, &overrides), [2, 0, 0]);
}

#[test]
fn elastic_needs_a_unit_without_max() {
    let units = [unit("a", "r", 1), unit("b", "r", 1)];
    let overrides = [elastic("a", None, Some(3)), elastic("b", None, Some(4))];
    assert_eq!(
        shares(
            5,
            &units,
            &overrides,
            FailoverScope::Region,
            &BTreeMap::new()
        ),
        Err(AllocationError::NoUnboundedUnit)
    );
}

#[test]
fn elastic_percentages_resolve_against_replicas() {
    let units = [unit("a", "r", 1), unit("b", "r", 1)];
    let overrides = [UnitReplicas {
        unit: UnitName::new("a").expect("name"),
        replicas: None,
        min: Some(ReplicaCount::Percent(30)),
        max: Some(ReplicaCount::Percent(50)),
    }];
    assert_eq!(simple(10, &units, &overrides), [5, 5]);
}

// ---- Karmada's static-weight division ----

#[test]
fn unequal_weights_use_webster_highest_averages() {
    let units = [unit("a", "r", 1), unit("b", "r", 2), unit("c", "r", 3)];
    // Seat by seat, highest weight / (2 * seats + 1): c b a c b c c b a c.
    assert_eq!(simple(10, &units, &[]), [2, 3, 5]);
}

#[test]
fn webster_ties_go_to_fewer_replicas_then_the_smaller_name() {
    let units = [unit("a", "r", 1), unit("b", "r", 1), unit("c", "r", 2)];
    assert_eq!(simple(1, &units, &[]), [0, 0, 1]);
    // Seat 2: a and b tie at 1/1 with 0 seats each -> the smaller name, a.
    assert_eq!(simple(2, &units, &[]), [1, 0, 1]);
    assert_eq!(simple(3, &units, &[]), [1, 1, 1]);
}

#[test]
fn webster_divides_only_the_rest_after_fixed_units() {
    let units = [unit("a", "r", 1), unit("b", "r", 1), unit("c", "r", 3)];
    let overrides = [fixed("a", ReplicaCount::Count(2))];
    // 8 left for b (weight 1) and c (weight 3): 2 and 6.
    assert_eq!(simple(10, &units, &overrides), [2, 2, 6]);
}

// ---- evacuation ----

#[test]
fn evacuated_share_moves_within_its_region() {
    let mut units = four_units();
    // Active: 10 over 4 -> floor 2, remainder 2 to the larger names sh-az2, sh-az1.
    assert_eq!(simple(10, &units, &[]), [3, 3, 2, 2]);
    units[0].evacuated = true;
    assert_eq!(simple(10, &units, &[]), [0, 6, 2, 2]);
}

#[test]
fn evacuated_share_moves_everywhere_with_global_scope() {
    let mut units = four_units();
    units[0].evacuated = true;
    let got = shares(10, &units, &[], FailoverScope::Global, &BTreeMap::new()).expect("allocates");
    assert_eq!(got, [0, 4, 3, 3]);
}

#[test]
fn evacuating_a_whole_region_moves_its_replicas_to_other_regions() {
    let mut units = four_units();
    units[0].evacuated = true;
    units[1].evacuated = true;
    let got = simple(10, &units, &[]);
    assert_eq!(got, [0, 0, 5, 5]);
}

#[test]
fn evacuation_honours_max_where_it_can_and_exceeds_it_where_it_must() {
    let mut units = [unit("a", "r", 1), unit("b", "r", 1), unit("c", "r", 1)];
    let overrides = [
        elastic("a", None, None),
        elastic("b", None, Some(4)),
        elastic("c", Some(2), Some(3)),
    ];
    // Active: a takes all but c's min: 8, 0, 2.
    assert_eq!(simple(10, &units, &overrides), [8, 0, 2]);
    units[0].evacuated = true;
    let allocation = allocate(&AllocationRequest {
        replicas: 10,
        units: &units,
        overrides: &overrides,
        failover_scope: FailoverScope::Region,
        current: &BTreeMap::new(),
    })
    .expect("allocates");
    let got: Vec<i32> = allocation.units.iter().map(|u| u.replicas).collect();
    // b fills to 4, c to 3; the 3 left exceed the caps (split evenly, remainder to the larger name).
    assert_eq!(got, [0, 5, 5]);
    assert_eq!(allocation.units[0].nominal, 8);
    assert_eq!(allocation.notes.len(), 1, "{:?}", allocation.notes);
}

#[test]
fn with_no_survivor_the_evacuated_unit_keeps_its_replicas() {
    let mut units = [unit("a", "r", 1)];
    units[0].evacuated = true;
    assert_eq!(simple(3, &units, &[]), [3]);
}

// ---- groups ----

fn group_units(replicas: &[(&str, &str, i32)]) -> Vec<GroupUnitInput> {
    replicas
        .iter()
        .map(|(u, r, n)| GroupUnitInput {
            unit: UnitName::new(*u).expect("name"),
            region: RegionName::new(*r).expect("region"),
            replicas: *n,
            nominal: *n,
        })
        .collect()
}

/// `units` after an evacuation: each unit runs `replicas[i]` instead of its nominal replicas.
fn evacuated(mut units: Vec<GroupUnitInput>, replicas: &[i32]) -> Vec<GroupUnitInput> {
    for (unit, r) in units.iter_mut().zip(replicas) {
        unit.replicas = *r;
    }
    units
}

fn sizes(groups: &[Group]) -> Vec<Vec<i32>> {
    groups
        .iter()
        .map(|g| g.units.iter().map(|s| s.size).collect())
        .collect()
}

fn parallel(beta: bool, batches: u32) -> GroupShape {
    GroupShape {
        beta,
        batches,
        region_order: RegionOrder::Parallel,
        regions: Vec::new(),
        blocks: Vec::new(),
        blue_green: false,
    }
}

fn sequential(beta: bool, batches: u32, regions: &[&str]) -> GroupShape {
    GroupShape {
        region_order: RegionOrder::Sequential,
        regions: regions
            .iter()
            .map(|r| RegionName::new(*r).expect("region"))
            .collect(),
        ..parallel(beta, batches)
    }
}

#[test]
fn a_pipeline_moves_its_stages_regions_in_turn() {
    let units = group_units(&[
        ("sh-az1", "sh", 2),
        ("hz-az1", "hz", 3),
        ("sh-az2", "sh", 2),
    ]);
    let shape = GroupShape {
        blocks: vec![
            Block {
                stage: "hangzhou".to_owned(),
                regions: vec![RegionName::new("hz").expect("region")],
            },
            Block {
                stage: "rest".to_owned(),
                regions: Vec::new(),
            },
        ],
        ..parallel(true, 1)
    };
    let groups = plan_groups(&units, &shape);
    let stages: Vec<&str> = groups.iter().filter_map(|g| g.stage.as_deref()).collect();
    assert_eq!(stages, ["hangzhou", "hangzhou", "rest", "rest"]);
    // Hangzhou first (beta then the rest), Shanghai untouched; then Shanghai with Hangzhou done.
    assert_eq!(
        sizes(&groups),
        [vec![0, 1, 0], vec![0, 2, 0], vec![1, 0, 1], vec![1, 0, 1]]
    );
    let targets: Vec<Vec<i32>> = groups
        .iter()
        .map(|g| g.units.iter().map(|s| s.updated).collect())
        .collect();
    assert_eq!(targets[1], [0, 3, 0]);
    assert_eq!(targets[3], [2, 3, 2]);
    let indices: Vec<usize> = groups.iter().map(|g| g.index).collect();
    assert_eq!(indices, [0, 1, 2, 3]);
}

#[test]
fn seed_example_ten_pods_two_zones_beta_two_batches() {
    let units = group_units(&[("sh-az1", "sh", 5), ("sh-az2", "sh", 5)]);
    let groups = plan_groups(&units, &parallel(true, 2));
    assert_eq!(sizes(&groups), [vec![1, 1], vec![2, 2], vec![2, 2]]);
    let cumulative: Vec<i32> = groups.iter().map(|g| g.units[0].updated).collect();
    assert_eq!(cumulative, [1, 3, 5]);
}

#[test]
fn batches_grow_with_floor_cumulative_targets() {
    let units = group_units(&[("a", "r", 10)]);
    let groups = plan_groups(&units, &parallel(false, 3));
    // floor(10/3)=3, floor(20/3)=6, 10.
    assert_eq!(sizes(&groups), [vec![3], vec![3], vec![4]]);
}

#[test]
fn sequential_runs_every_group_of_a_region_before_the_next() {
    let units = group_units(&[("sh-az1", "sh", 2), ("hz-az1", "hz", 2)]);
    let shape = sequential(true, 1, &["hz", "sh"]);
    let groups = plan_groups(&units, &shape);
    assert_eq!(
        sizes(&groups),
        [vec![0, 1], vec![0, 1], vec![1, 0], vec![1, 0]]
    );
}

#[test]
fn evacuating_a_region_mid_release_moves_no_group_of_the_next_region() {
    let units = group_units(&[
        ("sh-az1", "sh", 5),
        ("sh-az2", "sh", 5),
        ("hz-az1", "hz", 5),
        ("hz-az2", "hz", 5),
    ]);
    let shape = sequential(true, 2, &["sh", "hz"]);
    let before = plan_groups(&units, &shape);
    assert_eq!(before.len(), 6);
    // Shanghai is evacuated while the release is in its groups: Hangzhou runs every pod.
    let after = plan_groups(&evacuated(units, &[0, 0, 10, 10]), &shape);
    // Shanghai's groups stay, with nothing left to do, so a release paused in group 1 still has
    // Hangzhou's beta group (one pod per unit) ahead of it rather than behind.
    assert_eq!(
        sizes(&after),
        [
            vec![0, 0, 0, 0],
            vec![0, 0, 0, 0],
            vec![0, 0, 0, 0],
            vec![0, 0, 1, 1],
            vec![0, 0, 4, 4],
            vec![0, 0, 5, 5],
        ]
    );
}

#[test]
fn a_move_only_an_evacuation_brings_waits_for_the_next_group() {
    let units = group_units(&[("a", "r", 2), ("b", "r", 1)]);
    let shape = parallel(false, 3);
    // a's targets are 0, 1, 2 and b's 0, 0, 1: the first batch would change nothing.
    assert_eq!(
        sizes(&plan_groups(&units, &shape)),
        [vec![1, 0], vec![1, 1]]
    );
    // a evacuated, b runs 3 and its own targets would be 1, 2, 3: the pod of the first batch
    // waits for the group that exists, and there are still two groups.
    let after = plan_groups(&evacuated(units, &[0, 3]), &shape);
    assert_eq!(sizes(&after), [vec![0, 2], vec![0, 1]]);
}

#[test]
fn groups_where_nothing_changes_are_left_out() {
    let units = group_units(&[("a", "r", 1), ("b", "r", 0)]);
    let groups = plan_groups(&units, &parallel(true, 3));
    // beta takes the only pod; the three batches would change nothing.
    assert_eq!(sizes(&groups), [vec![1, 0]]);
    assert!(plan_groups(&group_units(&[("a", "r", 0)]), &parallel(true, 2)).is_empty());
}

// ---- properties ----

fn arb_case() -> impl Strategy<
    Value = (
        i32,
        Vec<PlanUnit>,
        Vec<UnitReplicas>,
        BTreeMap<UnitName, i32>,
    ),
> {
    (
        0i32..200,
        1usize..6,
        any::<bool>(),
        prop::collection::vec((1u32..4, 0i32..50, any::<bool>()), 6),
    )
        .prop_flat_map(|(replicas, n, use_weights, per_unit)| {
            let units: Vec<PlanUnit> = (0..n)
                .map(|i| {
                    let (w, _, evac) = per_unit[i];
                    let mut u = unit(
                        &format!("u{i}"),
                        if i % 2 == 0 { "r1" } else { "r2" },
                        if use_weights { w } else { 1 },
                    );
                    u.evacuated = evac && i > 0;
                    u
                })
                .collect();
            let now: BTreeMap<UnitName, i32> = units
                .iter()
                .zip(&per_unit)
                .map(|(u, (_, c, _))| (u.name.clone(), *c))
                .collect();
            let limits =
                prop::collection::vec((prop::option::of(0i32..40), prop::option::of(0i32..60)), n);
            (
                Just(replicas),
                Just(units),
                limits,
                Just(now),
                any::<bool>(),
            )
        })
        .prop_map(|(replicas, units, limits, now, with_limits)| {
            let overrides: Vec<UnitReplicas> = if with_limits {
                units
                    .iter()
                    .zip(limits)
                    .enumerate()
                    .map(|(i, (u, (min, max)))| {
                        // The last unit has no max, so the allocation is always possible.
                        let max = if i + 1 == units.len() {
                            None
                        } else {
                            max.map(|m| m.max(min.unwrap_or(0)))
                        };
                        elastic(u.name.as_str(), min, max)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            (replicas, units, overrides, now)
        })
}

proptest! {
    #[test]
    fn allocation_sums_to_replicas_and_respects_limits((replicas, units, overrides, now) in arb_case()) {
        let request = AllocationRequest { replicas, units: &units, overrides: &overrides, failover_scope: FailoverScope::Region, current: &now };
        let allocation = allocate(&request).expect("the last unit is unbounded");
        let total: i32 = allocation.units.iter().map(|u| u.replicas).sum();
        prop_assert_eq!(total, replicas);
        let nominal_total: i32 = allocation.units.iter().map(|u| u.nominal).sum();
        prop_assert_eq!(nominal_total, replicas);
        let min_sum: i32 = overrides.iter().filter_map(|o| o.min).map(|m| m.resolve(replicas)).sum();
        for (u, share) in units.iter().zip(&allocation.units) {
            prop_assert!(share.replicas >= 0);
            if u.evacuated && units.iter().any(|x| !x.evacuated) {
                prop_assert_eq!(share.replicas, 0);
            }
            if let Some(o) = overrides.iter().find(|o| o.unit == u.name) {
                if let Some(min) = o.min && min_sum <= replicas {
                    prop_assert!(share.nominal >= min.resolve(replicas));
                }
                if let Some(max) = o.max {
                    prop_assert!(share.nominal <= max.resolve(replicas));
                    if allocation.notes.is_empty() {
                        prop_assert!(share.replicas <= max.resolve(replicas));
                    }
                }
            }
        }
        // Deterministic: the same input gives the same output.
        prop_assert_eq!(allocate(&request).expect("allocates"), allocation);
    }

    #[test]
    fn an_evacuation_moves_no_group_to_another_place(
        units in prop::collection::vec((0i32..30, 0i32..60), 1..5),
        beta in any::<bool>(),
        batches in 1u32..6,
        sequential in any::<bool>(),
        blue_green in any::<bool>(),
        pipeline in any::<bool>(),
    ) {
        let nominal: Vec<GroupUnitInput> = units.iter().enumerate().map(|(i, (n, _))| GroupUnitInput {
            unit: UnitName::new(format!("u{i}")).expect("name"),
            region: RegionName::new(if i % 2 == 0 { "r1" } else { "r2" }).expect("region"),
            replicas: *n,
            nominal: *n,
        }).collect();
        let replicas: Vec<i32> = units.iter().map(|(_, r)| *r).collect();
        let shape = GroupShape {
            beta,
            batches,
            region_order: if sequential { RegionOrder::Sequential } else { RegionOrder::Parallel },
            regions: vec![RegionName::new("r2").expect("region"), RegionName::new("r1").expect("region")],
            // A pipeline releases r1 first, then the rest.
            blocks: if pipeline {
                vec![
                    Block { stage: "first".to_owned(), regions: vec![RegionName::new("r1").expect("region")] },
                    Block { stage: "rest".to_owned(), regions: Vec::new() },
                ]
            } else {
                Vec::new()
            },
            blue_green,
        };
        let before = plan_groups(&nominal, &shape);
        let after = plan_groups(&evacuated(nominal, &replicas), &shape);
        // Every group keeps its place and its stage. Only a block that would move nothing
        // without the evacuation may get a group of its own.
        if units.iter().all(|(n, _)| *n > 0) {
            prop_assert_eq!(after.len(), before.len());
            for (b, a) in before.iter().zip(&after) {
                prop_assert_eq!(&b.stage, &a.stage);
            }
        }
        prop_assert!(after.len() <= before.len() + shape.blocks.len().max(1));
        let mut previous = vec![0; replicas.len()];
        for (g, group) in after.iter().enumerate() {
            prop_assert_eq!(group.index, g);
            for (i, step) in group.units.iter().enumerate() {
                prop_assert!(step.size >= 0);
                prop_assert_eq!(step.updated, previous[i] + step.size);
                previous[i] = step.updated;
            }
        }
        prop_assert_eq!(&previous, &replicas);
    }

    #[test]
    fn groups_are_cumulative_and_end_at_every_units_replicas(
        replicas in prop::collection::vec(0i32..60, 1..5),
        beta in any::<bool>(),
        batches in 1u32..6,
        sequential in any::<bool>(),
    ) {
        let input: Vec<GroupUnitInput> = replicas.iter().enumerate().map(|(i, r)| GroupUnitInput {
            unit: UnitName::new(format!("u{i}")).expect("name"),
            region: RegionName::new(if i % 2 == 0 { "r1" } else { "r2" }).expect("region"),
            replicas: *r,
            nominal: *r,
        }).collect();
        let shape = GroupShape {
            beta,
            batches,
            region_order: if sequential { RegionOrder::Sequential } else { RegionOrder::Parallel },
            regions: vec![RegionName::new("r2").expect("region"), RegionName::new("r1").expect("region")],
            blocks: Vec::new(),
            blue_green: false,
        };
        let groups = plan_groups(&input, &shape);
        let mut previous = vec![0; input.len()];
        for (g, group) in groups.iter().enumerate() {
            prop_assert_eq!(group.index, g);
            prop_assert!(group.units.iter().any(|s| s.size > 0), "empty group {}", g);
            for (i, step) in group.units.iter().enumerate() {
                prop_assert!(step.size >= 0);
                prop_assert_eq!(step.updated, previous[i] + step.size);
                prop_assert!(step.updated <= replicas[i]);
                previous[i] = step.updated;
            }
        }
        prop_assert_eq!(&previous, &replicas);
        if beta && !sequential && let Some(first) = groups.first() {
            for (i, step) in first.units.iter().enumerate() {
                prop_assert!(step.updated <= 1 || replicas[i] == 0);
            }
        }
        prop_assert_eq!(plan_groups(&input, &shape), groups);
    }
}
