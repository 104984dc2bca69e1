//! The release state machine of one CafeDeployment (DESIGN section 5). Pure: it is given the time and
//! what the agents reported, and returns whether anything changed.

use super::revision::History;
use crate::names::UnitName;
use crate::resources::{PauseMode, Strategy};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Every unit runs the current revision.
    Stable,
    /// Slices carry the current group's partitions; waiting for the units to report it healthy.
    Progressing,
    /// The current group is done and waits for `continue`, or an operator paused mid-group.
    Paused,
    /// Pods fail, or the group stayed unhealthy past the progress deadline; nothing advances.
    Failed,
    /// Every unit returns to the rollback target at once.
    RollingBack,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a release is in its phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reason {
    /// Stable since the deployment was created.
    Created,
    /// The last release went through every group.
    Complete,
    /// A new template started a release.
    NewRevision,
    /// The group waits for units to report its pods updated and ready.
    WaitingForUnits,
    /// The group is done; `pause: Manual` waits for `continue`.
    AwaitingConfirm,
    /// An operator paused the release mid-group.
    PausedByOperator,
    /// The group stayed healthy and waits `autoPauseSeconds` before the next.
    AutoPausing,
    /// Pods of the release crash, cannot pull their image, or cannot be scheduled.
    PodsFailing,
    /// The group made no progress within `progressDeadlineSeconds`.
    ProgressDeadlineExceeded,
    /// An operator retried the failed group.
    Retrying,
    /// Units return to the rollback target.
    RollingBack,
    /// The rollback finished.
    RolledBack,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The durable release state of one deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseState {
    /// The kept templates.
    pub history: History,
    /// The revision every unit ran when the deployment was last stable.
    pub current_revision: String,
    /// The revision units move to (the rollback target while rolling back).
    pub update_revision: String,
    /// Where the release stands.
    pub phase: Phase,
    /// Why.
    pub reason: Reason,
    /// The current group (0-based).
    pub batch: usize,
    /// A readable account of the last transition.
    pub message: String,
    /// When the current group started, for the progress deadline (ms since the epoch).
    pub group_started_ms: i64,
    /// Since when every unit has reported the group healthy (ms since the epoch).
    #[serde(default)]
    pub healthy_since_ms: Option<i64>,
    /// How long the current group has waited while every active unit's health was known: the
    /// progress deadline counts this, so an unknown unit only blocks (DESIGN section 5) and a hub
    /// restart starts the count again. Kept in memory only.
    #[serde(skip)]
    pub waited_ms: i64,
    /// When `waited_ms` was last brought up to date.
    #[serde(skip)]
    pub last_checked_ms: Option<i64>,
}

/// What the hub knows of one unit's part in the release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitProgress {
    /// The unit.
    pub unit: UnitName,
    /// Evacuated units are left out of the release.
    pub evacuated: bool,
    /// The unit's planned replicas.
    pub replicas: i32,
    /// Pods that must run the update revision in the current group.
    pub target: i32,
    /// The agent's latest report, when its cluster is connected and the report is fresh (it describes
    /// the slice generation the hub sent last). `None`: unknown health, which is not health.
    pub observed: Option<Observed>,
}

/// A fresh report of one unit.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// Pods that exist.
    pub replicas: i32,
    /// Ready pods.
    pub ready: i32,
    /// Pods on the update revision.
    pub updated: i32,
    /// Ready pods on the update revision.
    pub updated_ready: i32,
    /// Failing pods, as `pod: reason`.
    pub problems: Vec<String>,
}

impl UnitProgress {
    fn group_done(&self) -> bool {
        self.observed.as_ref().is_some_and(|o| {
            o.problems.is_empty() && o.updated >= self.target && o.updated_ready >= self.target
        })
    }

    fn fully_updated(&self) -> bool {
        self.observed.as_ref().is_some_and(|o| {
            o.updated >= self.replicas
                && o.updated_ready >= self.replicas
                && o.replicas == self.replicas
        })
    }
}

/// An operator's release command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReleaseCommand {
    /// Stop after... now: updates stop mid-group.
    Pause,
    /// Start the next group (or resume the paused one).
    Continue,
    /// Try the failed group again.
    Retry,
    /// Return to the previous stable revision, or to the numbered one.
    Rollback {
        /// A revision number from the history.
        to_revision: Option<i64>,
    },
}

impl fmt::Display for ReleaseCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pause => f.write_str("pause"),
            Self::Continue => f.write_str("continue"),
            Self::Retry => f.write_str("retry"),
            Self::Rollback { to_revision: None } => f.write_str("rollback"),
            Self::Rollback {
                to_revision: Some(n),
            } => write!(f, "rollback --to-revision {n}"),
        }
    }
}

/// What a command did.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandOutcome {
    /// False when the command was a no-op.
    pub changed: bool,
    /// A readable account.
    pub message: String,
    /// For a rollback: the template the deployment's spec returns to (like `kubectl rollout undo`).
    pub restore_template: Option<PodTemplateSpec>,
}

impl CommandOutcome {
    fn unchanged(message: impl Into<String>) -> Self {
        Self {
            changed: false,
            message: message.into(),
            restore_template: None,
        }
    }
    fn changed(message: impl Into<String>) -> Self {
        Self {
            changed: true,
            message: message.into(),
            restore_template: None,
        }
    }
}

/// A command that cannot be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// `--to-revision` names a revision the hub does not keep.
    #[error("revision {0} is not in the deployment's history")]
    UnknownRevision(i64),
    /// A stable deployment with a single revision has nothing to roll back to.
    #[error("there is no earlier revision to roll back to")]
    NothingToRollBack,
}

impl ReleaseState {
    /// The state of a new deployment: stable on its first revision.
    pub fn new(template: &PodTemplateSpec, now_ms: i64) -> Self {
        let mut history = History::default();
        let name = history.record(template, now_ms, &[]);
        Self {
            history,
            current_revision: name.clone(),
            update_revision: name,
            phase: Phase::Stable,
            reason: Reason::Created,
            batch: 0,
            message: String::new(),
            group_started_ms: now_ms,
            healthy_since_ms: None,
            waited_ms: 0,
            last_checked_ms: None,
        }
    }

    fn enter(&mut self, phase: Phase, reason: Reason, message: impl Into<String>) {
        self.phase = phase;
        self.reason = reason;
        self.message = message.into();
    }

    fn start_group(&mut self, batch: usize, now_ms: i64) {
        self.batch = batch;
        self.group_started_ms = now_ms;
        self.healthy_since_ms = None;
        self.waited_ms = 0;
        self.last_checked_ms = Some(now_ms);
    }

    /// The deployment's template changed. Returns true when the release state changed.
    pub fn on_template(&mut self, template: &PodTemplateSpec, now_ms: i64) -> bool {
        let name = super::revision::revision_name(template);
        if name == self.update_revision {
            return false;
        }
        let pinned = [self.current_revision.clone(), self.update_revision.clone()];
        let pinned: Vec<&str> = pinned.iter().map(String::as_str).collect();
        self.history.record(template, now_ms, &pinned);
        self.update_revision = name.clone();
        self.start_group(0, now_ms);
        if name == self.current_revision {
            // The template went back to what the units ran: return there at once.
            self.enter(
                Phase::RollingBack,
                Reason::RollingBack,
                format!("template returned to revision {name}"),
            );
        } else {
            self.enter(
                Phase::Progressing,
                Reason::NewRevision,
                format!("releasing revision {name}"),
            );
        }
        true
    }

    /// Moves the release forward from the units' reports and the time. Returns true on a transition.
    pub fn advance(
        &mut self,
        strategy: &Strategy,
        groups: usize,
        units: &[UnitProgress],
        now_ms: i64,
    ) -> bool {
        let active = || units.iter().filter(|u| !u.evacuated);
        match self.phase {
            Phase::Stable | Phase::Paused | Phase::Failed => false,
            Phase::RollingBack => {
                if !active().all(UnitProgress::fully_updated) {
                    return false;
                }
                self.current_revision = self.update_revision.clone();
                let message = format!("rolled back to revision {}", self.current_revision);
                self.enter(Phase::Stable, Reason::RolledBack, message);
                true
            }
            Phase::Progressing => {
                let known = active().all(|u| u.observed.is_some());
                let elapsed = self.last_checked_ms.map_or(0, |t| (now_ms - t).max(0));
                self.last_checked_ms = Some(now_ms);
                if known {
                    self.waited_ms += elapsed;
                }
                let failing: Vec<String> = active()
                    .filter_map(|u| u.observed.as_ref().map(|o| (u, o)))
                    .flat_map(|(u, o)| o.problems.iter().map(move |p| format!("{}: {p}", u.unit)))
                    .collect();
                if !failing.is_empty() {
                    self.enter(Phase::Failed, Reason::PodsFailing, failing.join("; "));
                    return true;
                }
                if !active().all(UnitProgress::group_done) {
                    self.healthy_since_ms = None;
                    let deadline = i64::from(strategy.progress_deadline_seconds) * 1000;
                    if self.waited_ms < deadline {
                        let changed = self.reason != Reason::WaitingForUnits;
                        let waiting: Vec<String> = active()
                            .filter(|u| !u.group_done())
                            .map(|u| u.unit.to_string())
                            .collect();
                        let message =
                            format!("group {} waits for {}", self.batch, waiting.join(", "));
                        changed_message(self, Reason::WaitingForUnits, message);
                        return changed;
                    }
                    let waiting: Vec<String> = active()
                        .filter(|u| !u.group_done())
                        .map(|u| u.unit.to_string())
                        .collect();
                    let message = format!(
                        "group {} made no progress within {}s in {}",
                        self.batch,
                        strategy.progress_deadline_seconds,
                        waiting.join(", ")
                    );
                    self.enter(Phase::Failed, Reason::ProgressDeadlineExceeded, message);
                    return true;
                }
                let since = *self.healthy_since_ms.get_or_insert(now_ms);
                let healthy_for = now_ms - since;
                if healthy_for < i64::from(strategy.min_ready_seconds) * 1000 {
                    return false;
                }
                if self.batch + 1 >= groups {
                    self.current_revision = self.update_revision.clone();
                    let message = format!("revision {} runs in every unit", self.current_revision);
                    self.enter(Phase::Stable, Reason::Complete, message);
                    return true;
                }
                match strategy.pause {
                    PauseMode::Manual => {
                        let message = format!(
                            "group {} is done; continue to start group {}",
                            self.batch,
                            self.batch + 1
                        );
                        self.enter(Phase::Paused, Reason::AwaitingConfirm, message);
                        true
                    }
                    PauseMode::Auto => {
                        let wait =
                            i64::from(strategy.min_ready_seconds + strategy.auto_pause_seconds)
                                * 1000;
                        if healthy_for < wait {
                            let changed = self.reason != Reason::AutoPausing;
                            changed_message(
                                self,
                                Reason::AutoPausing,
                                format!("group {} is healthy; next group soon", self.batch),
                            );
                            return changed;
                        }
                        let next = self.batch + 1;
                        self.start_group(next, now_ms);
                        self.enter(
                            Phase::Progressing,
                            Reason::WaitingForUnits,
                            format!("group {next} started"),
                        );
                        true
                    }
                }
            }
        }
    }

    /// Carries out an operator's command. `expected_batch`, when given, must be the current group,
    /// else nothing changes. Idempotent: a command whose effect is already in place changes nothing.
    pub fn command(
        &mut self,
        command: ReleaseCommand,
        expected_batch: Option<usize>,
        now_ms: i64,
    ) -> Result<CommandOutcome, CommandError> {
        if let Some(expected) = expected_batch
            && expected != self.batch
        {
            return Ok(CommandOutcome::unchanged(format!(
                "the release is at group {}, not {expected}: nothing done",
                self.batch
            )));
        }
        let phase = self.phase;
        Ok(match (command, phase) {
            (ReleaseCommand::Pause, Phase::Progressing) => {
                self.enter(
                    Phase::Paused,
                    Reason::PausedByOperator,
                    format!("paused in group {}", self.batch),
                );
                CommandOutcome::changed(self.message.clone())
            }
            (ReleaseCommand::Pause, _) => {
                CommandOutcome::unchanged(format!("the release is {phase}: nothing to pause"))
            }
            (ReleaseCommand::Continue, Phase::Paused) => {
                let next = if self.reason == Reason::AwaitingConfirm {
                    self.batch + 1
                } else {
                    self.batch
                };
                self.start_group(next, now_ms);
                self.enter(
                    Phase::Progressing,
                    Reason::WaitingForUnits,
                    format!("group {next} started"),
                );
                CommandOutcome::changed(self.message.clone())
            }
            (ReleaseCommand::Continue, _) => {
                CommandOutcome::unchanged(format!("the release is {phase}: nothing to continue"))
            }
            (ReleaseCommand::Retry, Phase::Failed) => {
                self.start_group(self.batch, now_ms);
                self.enter(
                    Phase::Progressing,
                    Reason::Retrying,
                    format!("retrying group {}", self.batch),
                );
                CommandOutcome::changed(self.message.clone())
            }
            (ReleaseCommand::Retry, _) => {
                CommandOutcome::unchanged(format!("the release is {phase}: nothing to retry"))
            }
            (ReleaseCommand::Rollback { to_revision }, _) => {
                return self.rollback(to_revision, now_ms);
            }
        })
    }

    fn rollback(
        &mut self,
        to_revision: Option<i64>,
        now_ms: i64,
    ) -> Result<CommandOutcome, CommandError> {
        if to_revision.is_none() && self.phase == Phase::RollingBack {
            return Ok(CommandOutcome::unchanged(format!(
                "already rolling back to revision {}",
                self.update_revision
            )));
        }
        let target = match to_revision {
            Some(number) => self
                .history
                .by_number(number)
                .ok_or(CommandError::UnknownRevision(number))?,
            None if self.update_revision != self.current_revision => self
                .history
                .get(&self.current_revision)
                .ok_or(CommandError::NothingToRollBack)?,
            None => self
                .history
                .before(&self.current_revision)
                .ok_or(CommandError::NothingToRollBack)?,
        };
        let (name, template) = (target.name.clone(), target.template.clone());
        let settled = self.phase == Phase::Stable || self.phase == Phase::RollingBack;
        if settled && self.update_revision == name {
            return Ok(CommandOutcome::unchanged(format!(
                "already at revision {name}"
            )));
        }
        self.update_revision = name.clone();
        self.start_group(0, now_ms);
        self.enter(
            Phase::RollingBack,
            Reason::RollingBack,
            format!("rolling back to revision {name}"),
        );
        Ok(CommandOutcome {
            changed: true,
            message: self.message.clone(),
            restore_template: Some(template),
        })
    }

    /// The cumulative target of a unit with `replicas` in the current phase, given the group's target.
    pub fn target(&self, group_target: Option<i32>, replicas: i32) -> i32 {
        match self.phase {
            Phase::Stable | Phase::RollingBack => replicas,
            Phase::Progressing | Phase::Paused | Phase::Failed => {
                group_target.unwrap_or(replicas).clamp(0, replicas.max(0))
            }
        }
    }

    /// Whether the agents must stop updating pods (they keep scaling).
    pub fn slices_paused(&self) -> bool {
        self.phase == Phase::Failed
            || (self.phase == Phase::Paused && self.reason == Reason::PausedByOperator)
    }
}

/// Updates the reason and message of a phase that does not change.
fn changed_message(state: &mut ReleaseState, reason: Reason, message: String) {
    state.reason = reason;
    state.message = message;
}
