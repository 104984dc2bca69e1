//! A CafeDeployment's `status.conditions[]`, as Kubernetes workloads have them: `Available`,
//! `Progressing` and `Paused`, each with `type`, `status`, `reason`, `message` and
//! `lastTransitionTime`.
//!
//! Status, reason and message are computed when the document is read; the time each condition's
//! status last changed is part of the deployment's record (so it survives restarts), noted when
//! the release moves ([`Core::set_release`]) and when the units' readiness crosses the
//! availability line ([`Core::evaluate`]).

use super::core::Core;
use crate::names::DeploymentKey;
use crate::plan::Plan;
use crate::release::{Phase, ReleaseState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The condition types.
pub const AVAILABLE: &str = "Available";
/// See [`AVAILABLE`].
pub const PROGRESSING: &str = "Progressing";
/// See [`AVAILABLE`].
pub const PAUSED: &str = "Paused";

/// When a condition's status last changed, as the record keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// The status since then.
    pub status: bool,
    /// Since when (ms since the epoch).
    pub since_ms: i64,
}

/// One condition as the document shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Available`, `Progressing` or `Paused`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `True` or `False`.
    pub status: &'static str,
    /// A CamelCase reason.
    pub reason: String,
    /// A readable account.
    pub message: String,
    /// When the status last changed (RFC 3339).
    pub last_transition_time: String,
}

/// A condition's current status, reason and message.
struct Current {
    kind: &'static str,
    status: bool,
    reason: String,
    message: String,
}

/// `Progressing` (false only when the release failed) and `Paused`, from the release.
fn of_release(release: &ReleaseState) -> [Current; 2] {
    let phase = release.phase();
    let reason = release.reason().to_string();
    let paused = phase == Phase::Paused;
    [
        Current {
            kind: PROGRESSING,
            status: phase != Phase::Failed,
            reason: reason.clone(),
            message: release.message().to_owned(),
        },
        Current {
            kind: PAUSED,
            status: paused,
            reason: if paused {
                reason
            } else {
                "NotPaused".to_owned()
            },
            message: if paused {
                release.message().to_owned()
            } else {
                String::new()
            },
        },
    ]
}

/// The readiness of one unit the plan places replicas in.
struct UnitReadiness<'a> {
    unit: &'a crate::names::UnitName,
    replicas: i32,
    ready: i32,
}

/// `Available`: every unit not evacuated has at least its replicas minus maxUnavailable ready, by
/// the agents' latest reports.
fn of_units(units: &[UnitReadiness<'_>], max_unavailable: u32) -> Current {
    let short: Vec<String> = units
        .iter()
        .filter(|u| {
            let floor = u.replicas - i32::try_from(max_unavailable).unwrap_or(i32::MAX);
            u.replicas > 0 && u.ready < floor
        })
        .map(|u| format!("{} has {} of {} ready", u.unit, u.ready, u.replicas))
        .collect();
    if short.is_empty() {
        Current {
            kind: AVAILABLE,
            status: true,
            reason: "MinimumReplicasAvailable".to_owned(),
            message: format!(
                "every unit has at least its replicas minus maxUnavailable ({max_unavailable}) ready"
            ),
        }
    } else {
        Current {
            kind: AVAILABLE,
            status: false,
            reason: "MinimumReplicasUnavailable".to_owned(),
            message: short.join("; "),
        }
    }
}

impl Core {
    /// The readiness of the deployment's units in `plan`, evacuated ones left out.
    fn readiness<'a>(&self, key: &DeploymentKey, plan: &'a Plan) -> Vec<UnitReadiness<'a>> {
        plan.units
            .iter()
            .filter(|u| !u.evacuated)
            .map(|unit| UnitReadiness {
                unit: &unit.unit,
                replicas: unit.replicas,
                ready: self.reported_ready(key, &unit.unit, &unit.cluster),
            })
            .collect()
    }

    /// The deployment's conditions now; `None` for an unknown deployment.
    pub fn conditions(&self, key: &DeploymentKey) -> Option<Vec<Condition>> {
        let record = self.deployment(key)?;
        let plan = self.plan(key).and_then(Result::ok);
        let units = plan
            .as_ref()
            .map(|plan| self.readiness(key, plan))
            .unwrap_or_default();
        let max_unavailable = record.deployment.spec.strategy.max_unavailable;
        let [progressing, paused] = of_release(&record.release);
        let created = record
            .deployment
            .metadata
            .creation_timestamp
            .clone()
            .unwrap_or_default();
        Some(
            [of_units(&units, max_unavailable), progressing, paused]
                .into_iter()
                .map(|c| Condition {
                    kind: c.kind,
                    status: if c.status { "True" } else { "False" },
                    last_transition_time: record
                        .condition_times
                        .get(c.kind)
                        .filter(|t| t.status == c.status)
                        .map_or_else(|| created.clone(), |t| super::clock::rfc3339(t.since_ms)),
                    reason: c.reason,
                    message: c.message,
                })
                .collect(),
        )
    }

    /// Notes the transitions of `Progressing` and `Paused` that `next` makes in `times`.
    pub(super) fn note_release_conditions(
        times: &mut BTreeMap<String, Transition>,
        next: &ReleaseState,
        now_ms: i64,
    ) {
        for current in of_release(next) {
            note(times, current.kind, current.status, now_ms);
        }
    }

    /// Notes a change of `Available` from the units' reports; true when it changed (the record
    /// must then be written).
    pub(super) fn note_availability(&mut self, key: &DeploymentKey, plan: &Plan) -> bool {
        let Some(record) = self.deployments.get(key) else {
            return false;
        };
        let available = of_units(
            &self.readiness(key, plan),
            record.deployment.spec.strategy.max_unavailable,
        );
        let known = record.condition_times.get(AVAILABLE).map(|t| t.status);
        if known == Some(available.status) {
            return false;
        }
        let now = self.now_ms;
        let Some(record) = self.record_mut(key) else {
            return false;
        };
        note(
            &mut record.condition_times,
            AVAILABLE,
            available.status,
            now,
        );
        true
    }
}

/// Records that `kind` has `status` since `now_ms`, unless it had it already.
fn note(times: &mut BTreeMap<String, Transition>, kind: &str, status: bool, now_ms: i64) {
    if times.get(kind).is_some_and(|t| t.status == status) {
        return;
    }
    times.insert(
        kind.to_owned(),
        Transition {
            status,
            since_ms: now_ms,
        },
    );
}
