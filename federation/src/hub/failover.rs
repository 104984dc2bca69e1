//! Disaster-recovery failover (DESIGN section 8): evacuate a unit or a region, fail back, and evacuate
//! automatically a cluster that has been unreachable too long, within guards.

use super::core::{Core, Effects, put_json};
use super::event::{Answer, Decision};
use super::{Hub, HubError};
use crate::names::{ClusterName, DeploymentKey, RegionName, UnitName};
use crate::resources::{LogicalUnitStatus, UnitPhase};
use crate::store::Table;
use std::collections::BTreeSet;
use std::time::Duration;

/// Whether and when the hub evacuates unreachable clusters on its own.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FailoverPolicy {
    /// Automatic failover is opt-in.
    pub auto: bool,
    /// A cluster silent this long is evacuated (with `--force` semantics).
    pub unreachable: Duration,
    /// Never more than this share of all units evacuated (0..=1).
    pub max_evacuated_share: f64,
}

/// The default silence before an automatic evacuation.
pub const DEFAULT_UNREACHABLE: Duration = Duration::from_secs(30);
/// The default cap on evacuated units.
pub const DEFAULT_MAX_EVACUATED_SHARE: f64 = 0.5;

impl Default for FailoverPolicy {
    fn default() -> Self {
        Self {
            auto: false,
            unreachable: DEFAULT_UNREACHABLE,
            max_evacuated_share: DEFAULT_MAX_EVACUATED_SHARE,
        }
    }
}

/// What to evacuate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EvacuationTarget {
    /// One unit.
    Unit(UnitName),
    /// Every unit of a region.
    Region(RegionName),
    /// Every unit a member cluster serves (automatic failover of a silent cluster).
    Cluster(ClusterName),
}

/// What a failover command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverOutcome {
    /// False when every unit was already in the asked phase.
    pub changed: bool,
    /// A readable account.
    pub message: String,
}

impl FailoverOutcome {
    /// Records the command `what` in the audit log: `ok`, or `no-op: MESSAGE` when nothing changed.
    fn audit(
        &self,
        core: &mut Core,
        effects: &mut Effects,
        who: &str,
        what: &str,
    ) -> Result<(), HubError> {
        let result = if self.changed {
            "ok".to_owned()
        } else {
            format!("no-op: {}", self.message)
        };
        core.audit(effects, who, what, &result)
    }
}

/// One unit's failover state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitFailoverView {
    /// The unit.
    pub unit: UnitName,
    /// Its region.
    pub region: String,
    /// Its cluster.
    pub cluster: String,
    /// Active or Evacuated.
    pub phase: UnitPhase,
    /// Why.
    pub reason: String,
    /// Since when (RFC 3339).
    pub since: String,
    /// Whether every deployment using the unit has its new capacity ready.
    pub capacity_restored: bool,
}

impl Core {
    /// Sets the phase of `units`; re-plans every deployment using them and marks it as moving
    /// replicas. Returns the units that changed.
    fn set_phase(
        &mut self,
        units: &[UnitName],
        phase: UnitPhase,
        force: bool,
        reason: &str,
        effects: &mut Effects,
    ) -> Result<Vec<UnitName>, HubError> {
        let now = self.now_ms;
        let mut changed = Vec::new();
        for name in units {
            let same = self.units.get(name).is_none_or(|unit| {
                let current = unit.status.clone().unwrap_or_default();
                current.phase == phase && (phase == UnitPhase::Active || current.forced || !force)
            });
            if same {
                continue;
            }
            let Some(unit) = self.units_mut().get_mut(name) else {
                continue;
            };
            unit.status = Some(LogicalUnitStatus {
                phase,
                reason: reason.to_owned(),
                since: super::clock::rfc3339(now),
                forced: force && phase == UnitPhase::Evacuated,
            });
            effects
                .writes
                .push(put_json(Table::Units, name.to_string(), &*unit)?);
            let kind = if phase == UnitPhase::Evacuated {
                super::notify::NoticeType::Evacuated
            } else {
                super::notify::NoticeType::FailedBack
            };
            self.notices.push(super::notify::Notice::failover(
                kind,
                name,
                reason,
                super::clock::rfc3339(now),
            ));
            changed.push(name.clone());
        }
        let mut deployments: BTreeSet<DeploymentKey> = BTreeSet::new();
        for name in &changed {
            deployments.extend(self.deployments_using(name));
            self.restoring.insert(name.clone(), now);
        }
        for key in deployments {
            if let Some(record) = self.record_mut(&key) {
                record.rebalancing_since_ms.get_or_insert(now);
            }
            self.write_record(&key, effects)?;
            effects.merge(self.sync_slices(&key)?);
        }
        Ok(changed)
    }

    /// Units whose deployments all have their new capacity ready leave the restoring set; returns
    /// how long each took, for the metrics.
    pub(super) fn restored_units(&mut self) -> Vec<(UnitName, i64)> {
        let restoring: Vec<(UnitName, i64)> = self
            .restoring
            .iter()
            .map(|(u, t)| (u.clone(), *t))
            .collect();
        let mut done = Vec::new();
        for (unit, since) in restoring {
            if self.capacity_restored(&unit) {
                self.restoring.remove(&unit);
                tracing::info!(%unit, took_ms = self.now_ms - since, "capacity restored after a failover");
                done.push((unit, self.now_ms - since));
            }
        }
        done
    }

    fn capacity_restored(&self, unit: &UnitName) -> bool {
        self.deployments_using(unit).iter().all(|key| {
            self.deployments
                .get(key)
                .is_none_or(|r| r.rebalancing_since_ms.is_none())
        })
    }

    fn resolve_target(&self, target: &EvacuationTarget) -> Result<Vec<UnitName>, HubError> {
        let (units, missing): (Vec<UnitName>, String) = match target {
            EvacuationTarget::Unit(unit) => (
                self.units
                    .contains_key(unit)
                    .then(|| unit.clone())
                    .into_iter()
                    .collect(),
                format!("LogicalUnit {unit}"),
            ),
            EvacuationTarget::Region(region) => (
                self.units_where(|u| &u.spec.region == region),
                format!("a unit in region {region}"),
            ),
            EvacuationTarget::Cluster(cluster) => (
                self.units_where(|u| &u.spec.cluster == cluster),
                format!("a unit of cluster {cluster}"),
            ),
        };
        if units.is_empty() {
            Err(HubError::NotFound(missing))
        } else {
            Ok(units)
        }
    }

    fn units_where(&self, keep: impl Fn(&crate::resources::LogicalUnit) -> bool) -> Vec<UnitName> {
        self.units
            .iter()
            .filter(|(_, u)| keep(u))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Every unit's failover state.
    pub fn failover_view(&self) -> Vec<UnitFailoverView> {
        self.units
            .iter()
            .map(|(name, unit)| {
                let status = unit.status.clone().unwrap_or_default();
                UnitFailoverView {
                    unit: name.clone(),
                    region: unit.spec.region.to_string(),
                    cluster: unit.spec.cluster.to_string(),
                    phase: status.phase,
                    reason: status.reason,
                    since: status.since,
                    capacity_restored: self.capacity_restored(name),
                }
            })
            .collect()
    }
}

impl Core {
    /// Evacuates a unit or a region. Idempotent: units already evacuated stay as they are (a plain
    /// evacuation of a unit evacuated with `--force` does not undo the force).
    pub(super) fn evacuate(
        &mut self,
        target: &EvacuationTarget,
        force: bool,
        reason: &str,
        who: &str,
    ) -> Result<Decision, HubError> {
        let units = self.resolve_target(target)?;
        let mut effects = Effects::default();
        let reason = if reason.is_empty() {
            "evacuated by an operator"
        } else {
            reason
        };
        let changed = self.set_phase(&units, UnitPhase::Evacuated, force, reason, &mut effects)?;
        let names: Vec<String> = units.iter().map(ToString::to_string).collect();
        let message = if changed.is_empty() {
            format!("{} already evacuated", names.join(", "))
        } else {
            let how = if force {
                "without waiting for its cluster"
            } else {
                "after the survivors' new pods are ready"
            };
            format!(
                "evacuating {}: survivors scale out first, the unit scales in {how}",
                names.join(", ")
            )
        };
        let what = format!(
            "failover evacuate {}{} ({reason})",
            names.join(","),
            if force { " --force" } else { "" }
        );
        let outcome = FailoverOutcome {
            changed: !changed.is_empty(),
            message,
        };
        outcome.audit(self, &mut effects, who, &what)?;
        Ok(Decision::new(Answer::Failover(outcome), effects))
    }

    /// Returns an evacuated unit to service: it scales out first, then the others scale in.
    pub(super) fn failback(
        &mut self,
        unit: &UnitName,
        reason: &str,
        who: &str,
    ) -> Result<Decision, HubError> {
        let units = self.resolve_target(&EvacuationTarget::Unit(unit.clone()))?;
        let mut effects = Effects::default();
        let reason = if reason.is_empty() {
            "failed back by an operator"
        } else {
            reason
        };
        let changed = self.set_phase(&units, UnitPhase::Active, false, reason, &mut effects)?;
        let message = if changed.is_empty() {
            format!("{unit} is already active")
        } else {
            format!("failing back {unit}: it scales out first, then the others scale in")
        };
        let outcome = FailoverOutcome {
            changed: !changed.is_empty(),
            message,
        };
        let what = format!("failover failback {unit} ({reason})");
        outcome.audit(self, &mut effects, who, &what)?;
        Ok(Decision::new(Answer::Failover(outcome), effects))
    }

    /// Automatic failover: evacuates (with `--force` semantics) the units of one cluster that has
    /// been silent longer than the policy allows, unless a guard says no.
    pub(super) fn auto_failover(&mut self) -> Result<Effects, HubError> {
        if !self.policy.auto {
            return Ok(Effects::default());
        }
        let Some((cluster, silent_s)) = decide_auto_failover(self, self.now_ms) else {
            return Ok(Effects::default());
        };
        let reason = format!("cluster {cluster} unreachable for {silent_s}s");
        tracing::warn!(%cluster, silent_s, "automatic failover");
        let decision = self.evacuate(&EvacuationTarget::Cluster(cluster), true, &reason, "hub")?;
        Ok(decision.effects)
    }
}

impl Hub {
    /// Every unit's failover state, and whether automatic failover is on.
    pub fn failover_status(&self) -> (bool, Vec<UnitFailoverView>) {
        self.read(|core, _| (core.policy.auto, core.failover_view()))
    }
}

/// The silent cluster whose units to evacuate automatically now, if any: one cluster at a time (none
/// while an earlier evacuation is still restoring capacity), never beyond the share of all units, and
/// never while the hub sees fewer than half of the clusters (then the hub is the one cut off). All the
/// units of a cluster go at once: one of them could not take the replicas of another anyway.
pub(super) fn decide_auto_failover(core: &Core, now: i64) -> Option<(ClusterName, i64)> {
    let (policy, started_ms) = (&core.policy, core.started_ms);
    if !core.restoring.is_empty() {
        return None;
    }
    let clusters: BTreeSet<&ClusterName> = core.units.values().map(|u| &u.spec.cluster).collect();
    if clusters.is_empty() {
        return None;
    }
    let connected = clusters
        .iter()
        .filter(|c| core.clusters.get(**c).is_some_and(|l| l.connected(now)))
        .count();
    if connected * 2 < clusters.len() {
        return None;
    }
    let evacuated = core
        .units
        .values()
        .filter(|u| u.phase() == UnitPhase::Evacuated)
        .count();
    let threshold = i64::try_from(policy.unreachable.as_millis()).unwrap_or(i64::MAX);
    clusters.into_iter().find_map(|cluster| {
        let live = core.clusters.get(cluster);
        if live.is_some_and(|l| l.connected(now)) {
            return None;
        }
        let active = core
            .units
            .values()
            .filter(|u| &u.spec.cluster == cluster && u.phase() != UnitPhase::Evacuated)
            .count();
        if active == 0 {
            return None;
        }
        let share = (evacuated + active) as f64 / core.units.len() as f64;
        if share > policy.max_evacuated_share {
            return None;
        }
        // A cluster never heard from since the hub started counts from the start.
        let last = live.map_or(started_ms, |l| l.last_seen_ms().max(started_ms));
        let silent = now - last;
        (silent >= threshold).then(|| (cluster.clone(), silent / 1000))
    })
}
