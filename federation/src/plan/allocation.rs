//! How `spec.replicas` is shared over a deployment's units (DESIGN section 4).
//!
//! Compatible with two peers so that users moving from them get the numbers they know:
//! - fixed / percentage / unspecified units: OpenKruise UnitedDeployment's *specific* allocator;
//! - `min` / `max`: UnitedDeployment's *elastic* allocator;
//! - unequal weights: Karmada's static-weight division (Webster / Sainte-Laguë highest averages).
//!
//! Evacuated units are planned as if active first, then their share moves to survivors.

use crate::names::{ClusterName, RegionName, UnitName};
use crate::resources::{FailoverScope, ReplicaCount, UnitReplicas};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};

/// What the planner needs to know of one unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanUnit {
    /// The unit.
    pub name: UnitName,
    /// Its region.
    pub region: RegionName,
    /// The member cluster serving it.
    pub cluster: ClusterName,
    /// Its weight (at least 1).
    pub weight: u32,
    /// Whether its replicas must run elsewhere.
    pub evacuated: bool,
}

/// The input of [`allocate`].
#[derive(Debug, Clone, Copy)]
pub struct AllocationRequest<'a> {
    /// `spec.replicas`.
    pub replicas: i32,
    /// The deployment's units, in topology order.
    pub units: &'a [PlanUnit],
    /// `spec.topology.unitReplicas`.
    pub overrides: &'a [UnitReplicas],
    /// Where evacuated units' replicas go.
    pub failover_scope: FailoverScope,
    /// Pods each unit runs now; absent units count 0. Only breaks remainder ties.
    pub current: &'a BTreeMap<UnitName, i32>,
}

/// One unit's share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitAllocation {
    /// The unit.
    pub unit: UnitName,
    /// Replicas it runs.
    pub replicas: i32,
    /// Replicas it would run if no unit were evacuated.
    pub nominal: i32,
}

/// The result of [`allocate`]: one entry per unit in topology order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    /// Per unit, in topology order.
    pub units: Vec<UnitAllocation>,
    /// Things an operator should know, e.g. a max exceeded to keep availability.
    pub notes: Vec<String>,
}

/// Why no allocation exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    /// The deployment has no unit.
    #[error("the deployment has no unit")]
    NoUnits,
    /// Fixed replicas add up to more than `spec.replicas`.
    #[error("the units' fixed replicas add up to {specified}, more than spec.replicas {replicas}")]
    SpecifiedExceeds {
        /// The sum of the fixed replicas.
        specified: i32,
        /// `spec.replicas`.
        replicas: i32,
    },
    /// Every unit has fixed replicas and they add up to less than `spec.replicas`.
    #[error(
        "every unit has fixed replicas and they add up to {specified}, less than spec.replicas {replicas}; leave one unit unspecified or fix the sum"
    )]
    SpecifiedShort {
        /// The sum of the fixed replicas.
        specified: i32,
        /// `spec.replicas`.
        replicas: i32,
    },
    /// With min/max, every unit has a max, so some replicas may have nowhere to go.
    #[error("with min/max, at least one unit must have no max")]
    NoUnboundedUnit,
    /// A unit's min is above its max once percentages are resolved.
    #[error("unit {unit:?}: min {min} is more than max {max}")]
    MinAboveMax {
        /// The unit.
        unit: String,
        /// Its min.
        min: i32,
        /// Its max.
        max: i32,
    },
}

/// Shares `replicas` over the units. Deterministic: the same request always gives the same answer.
pub fn allocate(request: &AllocationRequest<'_>) -> Result<Allocation, AllocationError> {
    if request.units.is_empty() {
        return Err(AllocationError::NoUnits);
    }
    let overrides: BTreeMap<&UnitName, &UnitReplicas> =
        request.overrides.iter().map(|o| (&o.unit, o)).collect();
    let elastic = request
        .overrides
        .iter()
        .any(|o| o.min.is_some() || o.max.is_some());
    let limits = if elastic {
        Some(elastic_limits(request, &overrides)?)
    } else {
        None
    };
    let nominal = match &limits {
        Some(limits) => elastic_split(request.replicas, limits),
        None => specific_split(request, &overrides)?,
    };
    let mut allocation = Allocation {
        units: request
            .units
            .iter()
            .zip(&nominal)
            .map(|(unit, &n)| UnitAllocation {
                unit: unit.name.clone(),
                replicas: n,
                nominal: n,
            })
            .collect(),
        notes: Vec::new(),
    };
    evacuate(request, limits.as_deref(), &mut allocation);
    Ok(allocation)
}

/// Resolved (min, max) per unit, in topology order; `None` max is unbounded.
fn elastic_limits(
    request: &AllocationRequest<'_>,
    overrides: &BTreeMap<&UnitName, &UnitReplicas>,
) -> Result<Vec<(i32, Option<i32>)>, AllocationError> {
    let resolve = |count: Option<ReplicaCount>| count.map(|c| c.resolve(request.replicas));
    let limits: Vec<(i32, Option<i32>)> = request
        .units
        .iter()
        .map(|unit| {
            let entry = overrides.get(&unit.name);
            let min = entry.and_then(|e| resolve(e.min)).unwrap_or(0);
            let max = entry.and_then(|e| resolve(e.max));
            (min, max)
        })
        .collect();
    if limits.iter().all(|(_, max)| max.is_some()) {
        return Err(AllocationError::NoUnboundedUnit);
    }
    for (unit, &(min, max)) in request.units.iter().zip(&limits) {
        if let Some(max) = max
            && min > max
        {
            return Err(AllocationError::MinAboveMax {
                unit: unit.name.to_string(),
                min,
                max,
            });
        }
    }
    Ok(limits)
}

/// UnitedDeployment's elastic allocator: every unit its min in order, then each filled to its max
/// in order. Scale-in therefore empties the last units first.
fn elastic_split(replicas: i32, limits: &[(i32, Option<i32>)]) -> Vec<i32> {
    let mut left = replicas.max(0);
    let mut shares: Vec<i32> = limits
        .iter()
        .map(|&(min, _)| {
            let share = min.min(left);
            left -= share;
            share
        })
        .collect();
    for (share, &(_, max)) in shares.iter_mut().zip(limits) {
        if left == 0 {
            break;
        }
        let room = max.map_or(left, |max| (max - *share).max(0));
        let add = room.min(left);
        *share += add;
        left -= add;
    }
    shares
}

/// UnitedDeployment's specific allocator, with Karmada's weighted division for the unspecified units
/// when their weights differ.
fn specific_split(
    request: &AllocationRequest<'_>,
    overrides: &BTreeMap<&UnitName, &UnitReplicas>,
) -> Result<Vec<i32>, AllocationError> {
    let fixed: Vec<Option<i32>> = request
        .units
        .iter()
        .map(|unit| {
            overrides
                .get(&unit.name)
                .and_then(|o| o.replicas)
                .map(|r| r.resolve(request.replicas))
        })
        .collect();
    let specified: i32 = fixed.iter().flatten().sum();
    if specified > request.replicas {
        return Err(AllocationError::SpecifiedExceeds {
            specified,
            replicas: request.replicas,
        });
    }
    let free: Vec<usize> = (0..request.units.len())
        .filter(|&i| fixed[i].is_none())
        .collect();
    if free.is_empty() && specified < request.replicas {
        return Err(AllocationError::SpecifiedShort {
            specified,
            replicas: request.replicas,
        });
    }
    let mut shares: Vec<i32> = fixed.iter().map(|f| f.unwrap_or(0)).collect();
    let rest = split(request.replicas - specified, &free, request);
    for (&i, add) in free.iter().zip(rest) {
        shares[i] += add;
    }
    Ok(shares)
}

/// Splits `amount` over the units at `candidates` (indices into `request.units`): evenly with the
/// remainder rule when their weights are equal, by Webster's method when they differ.
fn split(amount: i32, candidates: &[usize], request: &AllocationRequest<'_>) -> Vec<i32> {
    let units: Vec<&PlanUnit> = candidates.iter().map(|&i| &request.units[i]).collect();
    let equal_weights = units.windows(2).all(|w| w[0].weight == w[1].weight);
    if equal_weights {
        split_evenly(amount, &units, request.current)
    } else {
        split_by_weight(amount, &units)
    }
}

/// Each unit gets the floor; the remainder goes one each to the units with the most current replicas,
/// ties to the larger name (UnitedDeployment: this keeps churn low).
fn split_evenly(amount: i32, units: &[&PlanUnit], current: &BTreeMap<UnitName, i32>) -> Vec<i32> {
    if units.is_empty() || amount <= 0 {
        return vec![0; units.len()];
    }
    let count = i32::try_from(units.len()).unwrap_or(i32::MAX);
    let floor = amount / count;
    let remainder = usize::try_from(amount % count).unwrap_or(0);
    let mut order: Vec<usize> = (0..units.len()).collect();
    order.sort_by(|&a, &b| {
        let current_of = |i: usize| current.get(&units[i].name).copied().unwrap_or(0);
        current_of(b)
            .cmp(&current_of(a))
            .then_with(|| units[b].name.cmp(&units[a].name))
    });
    let mut shares = vec![floor; units.len()];
    for &i in order.iter().take(remainder) {
        shares[i] += 1;
    }
    shares
}

/// Karmada's static-weight division: Webster / Sainte-Laguë highest averages, seat by seat. A seat goes
/// to the highest `weight / (2 * seats + 1)`; a tie to the unit with fewer seats, then the smaller name.
fn split_by_weight(amount: i32, units: &[&PlanUnit]) -> Vec<i32> {
    #[derive(PartialEq, Eq)]
    struct Claim<'a> {
        weight: u64,
        seats: u64,
        name: &'a UnitName,
        index: usize,
    }
    impl Ord for Claim<'_> {
        fn cmp(&self, other: &Self) -> Ordering {
            // weight / (2s + 1) compared exactly by cross-multiplication.
            let mine = u128::from(self.weight) * u128::from(2 * other.seats + 1);
            let theirs = u128::from(other.weight) * u128::from(2 * self.seats + 1);
            mine.cmp(&theirs)
                .then_with(|| Reverse(self.seats).cmp(&Reverse(other.seats)))
                .then_with(|| Reverse(self.name).cmp(&Reverse(other.name)))
        }
    }
    impl PartialOrd for Claim<'_> {
        fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
            Some(self.cmp(other))
        }
    }
    let mut shares = vec![0; units.len()];
    let mut heap: BinaryHeap<Claim<'_>> = units
        .iter()
        .enumerate()
        .map(|(index, unit)| Claim {
            weight: u64::from(unit.weight),
            seats: 0,
            name: &unit.name,
            index,
        })
        .collect();
    for _ in 0..amount.max(0) {
        let Some(mut claim) = heap.pop() else { break };
        shares[claim.index] += 1;
        claim.seats += 1;
        heap.push(claim);
    }
    shares
}

/// Moves each evacuated unit's share to the survivors its failover scope allows. Shares bound for the
/// same survivors move together, so two evacuated units do not both round in the same unit's favour.
fn evacuate(
    request: &AllocationRequest<'_>,
    limits: Option<&[(i32, Option<i32>)]>,
    allocation: &mut Allocation,
) {
    let units = request.units;
    let active: Vec<usize> = (0..units.len()).filter(|&i| !units[i].evacuated).collect();
    let mut moves: BTreeMap<Vec<usize>, (i32, Vec<usize>)> = BTreeMap::new();
    for from in (0..units.len()).filter(|&i| units[i].evacuated) {
        let share = allocation.units[from].replicas;
        if share == 0 {
            continue;
        }
        let same_region: Vec<usize> = active
            .iter()
            .copied()
            .filter(|&i| units[i].region == units[from].region)
            .collect();
        let survivors = match request.failover_scope {
            FailoverScope::Region if !same_region.is_empty() => same_region,
            _ => active.clone(),
        };
        if survivors.is_empty() {
            allocation.notes.push(format!(
                "unit {} is evacuated but no unit survives to take its {share} replicas; they stay",
                units[from].name
            ));
            continue;
        }
        allocation.units[from].replicas = 0;
        let entry = moves.entry(survivors).or_default();
        entry.0 += share;
        entry.1.push(from);
    }
    for (survivors, (share, from)) in moves {
        let exceeded = place(request, limits, allocation, &survivors, share);
        if exceeded > 0 {
            let from: Vec<String> = from.iter().map(|&i| units[i].name.to_string()).collect();
            allocation.notes.push(format!(
                "the survivors of {} exceed their max by {exceeded} replicas to keep availability",
                from.join(", ")
            ));
        }
    }
}

/// Adds `share` replicas to `survivors`, honouring their max where it can and exceeding it where it
/// must (availability beats caps). Returns how many replicas went beyond a max.
fn place(
    request: &AllocationRequest<'_>,
    limits: Option<&[(i32, Option<i32>)]>,
    allocation: &mut Allocation,
    survivors: &[usize],
    share: i32,
) -> i32 {
    let max_of = |i: usize| limits.and_then(|l| l[i].1);
    let mut left = share;
    let mut open: Vec<usize> = survivors.to_vec();
    // Units that would pass their max are filled to it and left out of the next round.
    while left > 0 && !open.is_empty() {
        let adds = split(left, &open, request);
        let mut overflow = 0;
        let mut full = Vec::new();
        for (&i, add) in open.iter().zip(adds) {
            let have = allocation.units[i].replicas;
            let room = max_of(i).map_or(add, |max| (max - have).clamp(0, add));
            allocation.units[i].replicas += room;
            overflow += add - room;
            if max_of(i).is_some_and(|max| have + room >= max) {
                full.push(i);
            }
        }
        left = overflow;
        open.retain(|i| !full.contains(i));
    }
    if left > 0 {
        let adds = split(left, survivors, request);
        for (&i, add) in survivors.iter().zip(adds) {
            allocation.units[i].replicas += add;
        }
    }
    left
}

/// The number of current pods per unit, parsed from `unit=N,unit=N`.
pub fn parse_current(text: &str) -> Result<BTreeMap<UnitName, i32>, String> {
    let mut current = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (unit, count) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not unit=N"))?;
        let unit = UnitName::new(unit.trim()).map_err(|e| format!("{unit:?}: {e}"))?;
        let count: i32 = count
            .trim()
            .parse()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| format!("{pair:?}: the count must be a whole number >= 0"))?;
        current.insert(unit, count);
    }
    Ok(current)
}
