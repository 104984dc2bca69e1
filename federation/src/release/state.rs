//! The release state machine of one CafeDeployment (DESIGN section 5). Pure: a transition is given
//! the time and what the agents reported, and returns the next state; nothing changes in place.
//!
//! Each state carries its own data ([`Stage`]), so that no illegal combination (a stable release
//! with failing pods, a pause without a group) can be represented. What only a running hub needs
//! (how long the group has waited, [`WaitClock`]) is kept out of the durable record.

use super::analysis::{AnalysisRun, Measurement, OutcomeResult, Verdict};
use super::revision::History;
use crate::names::UnitName;
use crate::resources::{OnFailure, PauseMode, Strategy};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};
use std::fmt;

/// The name of a release's state, as operators see it.
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

/// Why a release is in its state: the documented set of `status.reason` values.
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
    /// The group is healthy; its metrics and webhooks are being measured.
    Analyzing,
    /// A metric of the group's analysis failed.
    AnalysisFailed,
    /// The group's analysis was inconclusive too often; a human decides.
    AnalysisInconclusive,
    /// The groups of the pipeline's current stage are done; the next stage's wait for the
    /// pipeline to start it.
    AwaitingStage,
    /// Blue-green: the group's preview is ready (and its analysis passed); `continue` switches it.
    AwaitingSwitch,
    /// Blue-green: traffic moves to the group's new pods.
    Switching,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Why a release is stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StableReason {
    /// Since the deployment was created.
    Created,
    /// The last release went through every group.
    Complete,
    /// The last rollback finished.
    RolledBack,
}

/// Why a group is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressReason {
    /// A new template started the release.
    NewRevision,
    /// The group waits for its units.
    WaitingForUnits,
    /// The group is healthy and waits `autoPauseSeconds` before the next.
    AutoPausing,
    /// An operator retried the failed group.
    Retrying,
    /// The group is healthy and its analysis is under way.
    Analyzing,
    /// Blue-green: the group's units switch traffic to the new pods.
    Switching,
}

/// Why a release is paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// The group is done; `pause: Manual` waits for `continue`.
    AwaitingConfirm,
    /// An operator paused the release mid-group.
    PausedByOperator,
    /// The analysis was inconclusive too often: `continue` accepts the group, `rollback` returns.
    AnalysisInconclusive,
    /// A pipeline drives the release: its stage's groups are done, and the next group belongs to a
    /// later stage of the pipeline, which starts it.
    AwaitingStage,
    /// Blue-green: the group's preview is ready; `continue` switches it.
    AwaitingSwitch,
}

/// Why a release rolls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackReason {
    /// An operator asked for it, or the template returned to the stable revision.
    Requested,
    /// The group's analysis failed with `onFailure: Rollback`.
    AnalysisFailed,
}

/// Why a group failed, with what failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Pods of the release fail, as `unit: pod: reason`.
    PodsFailing {
        /// The failing pods.
        pods: Vec<String>,
    },
    /// The group made no progress within `progressDeadlineSeconds` in these units.
    ProgressDeadlineExceeded {
        /// The units still waiting.
        waiting: Vec<String>,
    },
    /// A metric of the analysis failed (`onFailure: Pause`).
    AnalysisFailed {
        /// The metric, the unit and the value.
        message: String,
    },
}

/// Where a release stands, with what that state needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// Every unit runs the current revision.
    Stable {
        /// The group the last release ended in (0 for a new deployment or after a rollback).
        group: usize,
        /// Why.
        reason: StableReason,
    },
    /// A group is under way.
    Progressing {
        /// The group (0-based).
        group: usize,
        /// When it started (ms since the epoch).
        since_ms: i64,
        /// Since when every active unit has reported it healthy.
        healthy_since_ms: Option<i64>,
        /// Why.
        reason: ProgressReason,
    },
    /// Nothing advances until `continue`.
    Paused {
        /// The group.
        group: usize,
        /// Why.
        reason: PauseReason,
    },
    /// Nothing advances until `retry` or `rollback`.
    Failed {
        /// The group.
        group: usize,
        /// What failed.
        failure: Failure,
    },
    /// Every unit returns to the rollback target at once.
    RollingBack {
        /// When the rollback started (ms since the epoch).
        since_ms: i64,
        /// Why.
        reason: RollbackReason,
    },
}

impl Stage {
    /// The state's name.
    pub fn phase(&self) -> Phase {
        match self {
            Self::Stable { .. } => Phase::Stable,
            Self::Progressing { .. } => Phase::Progressing,
            Self::Paused { .. } => Phase::Paused,
            Self::Failed { .. } => Phase::Failed,
            Self::RollingBack { .. } => Phase::RollingBack,
        }
    }

    /// The reason, from the documented set.
    pub fn reason(&self) -> Reason {
        match self {
            Self::Stable { reason, .. } => match reason {
                StableReason::Created => Reason::Created,
                StableReason::Complete => Reason::Complete,
                StableReason::RolledBack => Reason::RolledBack,
            },
            Self::Progressing { reason, .. } => match reason {
                ProgressReason::NewRevision => Reason::NewRevision,
                ProgressReason::WaitingForUnits => Reason::WaitingForUnits,
                ProgressReason::AutoPausing => Reason::AutoPausing,
                ProgressReason::Retrying => Reason::Retrying,
                ProgressReason::Analyzing => Reason::Analyzing,
                ProgressReason::Switching => Reason::Switching,
            },
            Self::Paused { reason, .. } => match reason {
                PauseReason::AwaitingConfirm => Reason::AwaitingConfirm,
                PauseReason::PausedByOperator => Reason::PausedByOperator,
                PauseReason::AnalysisInconclusive => Reason::AnalysisInconclusive,
                PauseReason::AwaitingStage => Reason::AwaitingStage,
                PauseReason::AwaitingSwitch => Reason::AwaitingSwitch,
            },
            Self::Failed { failure, .. } => match failure {
                Failure::PodsFailing { .. } => Reason::PodsFailing,
                Failure::ProgressDeadlineExceeded { .. } => Reason::ProgressDeadlineExceeded,
                Failure::AnalysisFailed { .. } => Reason::AnalysisFailed,
            },
            Self::RollingBack { reason, .. } => match reason {
                RollbackReason::Requested => Reason::RollingBack,
                RollbackReason::AnalysisFailed => Reason::AnalysisFailed,
            },
        }
    }

    /// The current group (0 while rolling back).
    pub fn group(&self) -> usize {
        match self {
            Self::Stable { group, .. }
            | Self::Progressing { group, .. }
            | Self::Paused { group, .. }
            | Self::Failed { group, .. } => *group,
            Self::RollingBack { .. } => 0,
        }
    }

    /// A group just started at `now_ms`.
    fn progressing(group: usize, now_ms: i64, reason: ProgressReason) -> Self {
        Self::Progressing {
            group,
            since_ms: now_ms,
            healthy_since_ms: None,
            reason,
        }
    }
}

/// How long the current group has waited while every active unit's health was known: the progress
/// deadline counts this, so that an unknown unit only blocks (DESIGN section 5). Kept by the running
/// hub only: a restart starts the count again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitClock {
    /// Waited so far (ms).
    pub waited_ms: i64,
    /// When `waited_ms` was last brought up to date.
    pub last_checked_ms: Option<i64>,
}

impl WaitClock {
    /// The clock of a group that starts at `now_ms`.
    pub fn started(now_ms: i64) -> Self {
        Self {
            waited_ms: 0,
            last_checked_ms: Some(now_ms),
        }
    }

    /// What the clock will say at `now_ms` if health stays known meanwhile.
    pub fn waited_at(&self, now_ms: i64) -> i64 {
        self.waited_ms + self.last_checked_ms.map_or(0, |t| now_ms - t)
    }
}

/// The durable release state of one deployment. Stored in the record's JSON as it always was (a
/// flat `phase`, `reason`, `batch`, ...; see [`StoredRelease`]), and checked on the way in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StoredRelease", into = "StoredRelease")]
pub struct ReleaseState {
    /// The kept templates.
    pub history: History,
    /// The revision every unit ran when the deployment was last stable.
    pub current_revision: String,
    /// The revision units move to (the rollback target while rolling back).
    pub update_revision: String,
    stage: Stage,
    /// A readable account of the last transition.
    message: String,
    /// The analysis of the current group, kept until another group (or revision) starts.
    analysis: Option<AnalysisRun>,
    /// `promote --full`: the remaining groups of this release run without pausing.
    promoted: bool,
    /// Blue-green: the group whose units were told to switch last (the groups before it switched
    /// too); `None` before the release's first switch.
    switched: Option<usize>,
}

/// The record form of [`ReleaseState`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoredRelease {
    history: History,
    current_revision: String,
    update_revision: String,
    phase: Phase,
    reason: Reason,
    batch: usize,
    message: String,
    group_started_ms: i64,
    #[serde(default)]
    healthy_since_ms: Option<i64>,
    /// The failing pods or waiting units of a failed group.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    failing: Vec<String>,
    /// The analysis of the current group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    analysis: Option<AnalysisRun>,
    /// `promote --full` was given for this release.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    promoted: bool,
    /// Blue-green: the last group told to switch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    switched: Option<usize>,
}

impl From<ReleaseState> for StoredRelease {
    fn from(state: ReleaseState) -> Self {
        let (group_started_ms, healthy_since_ms, failing) = match &state.stage {
            Stage::Progressing {
                since_ms,
                healthy_since_ms,
                ..
            } => (*since_ms, *healthy_since_ms, Vec::new()),
            Stage::RollingBack { since_ms, .. } => (*since_ms, None, Vec::new()),
            Stage::Failed { failure, .. } => match failure {
                Failure::PodsFailing { pods } => (0, None, pods.clone()),
                Failure::ProgressDeadlineExceeded { waiting } => (0, None, waiting.clone()),
                Failure::AnalysisFailed { message } => (0, None, vec![message.clone()]),
            },
            Stage::Stable { .. } | Stage::Paused { .. } => (0, None, Vec::new()),
        };
        Self {
            phase: state.stage.phase(),
            reason: state.stage.reason(),
            batch: state.stage.group(),
            history: state.history,
            current_revision: state.current_revision,
            update_revision: state.update_revision,
            message: state.message,
            group_started_ms,
            healthy_since_ms,
            failing,
            analysis: state.analysis,
            promoted: state.promoted,
            switched: state.switched,
        }
    }
}

impl TryFrom<StoredRelease> for ReleaseState {
    type Error = String;

    fn try_from(stored: StoredRelease) -> Result<Self, String> {
        let group = stored.batch;
        let stage = match (stored.phase, stored.reason) {
            (Phase::Stable, reason) => Stage::Stable {
                group,
                reason: match reason {
                    Reason::Created => StableReason::Created,
                    Reason::Complete => StableReason::Complete,
                    Reason::RolledBack => StableReason::RolledBack,
                    other => return Err(illegal(Phase::Stable, other)),
                },
            },
            (Phase::Progressing, reason) => Stage::Progressing {
                group,
                since_ms: stored.group_started_ms,
                healthy_since_ms: stored.healthy_since_ms,
                reason: match reason {
                    Reason::NewRevision => ProgressReason::NewRevision,
                    Reason::WaitingForUnits => ProgressReason::WaitingForUnits,
                    Reason::AutoPausing => ProgressReason::AutoPausing,
                    Reason::Retrying => ProgressReason::Retrying,
                    Reason::Analyzing => ProgressReason::Analyzing,
                    Reason::Switching => ProgressReason::Switching,
                    other => return Err(illegal(Phase::Progressing, other)),
                },
            },
            (Phase::Paused, reason) => Stage::Paused {
                group,
                reason: match reason {
                    Reason::AwaitingConfirm => PauseReason::AwaitingConfirm,
                    Reason::PausedByOperator => PauseReason::PausedByOperator,
                    Reason::AnalysisInconclusive => PauseReason::AnalysisInconclusive,
                    Reason::AwaitingStage => PauseReason::AwaitingStage,
                    Reason::AwaitingSwitch => PauseReason::AwaitingSwitch,
                    other => return Err(illegal(Phase::Paused, other)),
                },
            },
            (Phase::Failed, Reason::PodsFailing) => Stage::Failed {
                group,
                failure: Failure::PodsFailing {
                    pods: stored.failing,
                },
            },
            (Phase::Failed, Reason::ProgressDeadlineExceeded) => Stage::Failed {
                group,
                failure: Failure::ProgressDeadlineExceeded {
                    waiting: stored.failing,
                },
            },
            (Phase::Failed, Reason::AnalysisFailed) => Stage::Failed {
                group,
                failure: Failure::AnalysisFailed {
                    message: stored.failing.join("; "),
                },
            },
            (Phase::RollingBack, Reason::RollingBack) => Stage::RollingBack {
                since_ms: stored.group_started_ms,
                reason: RollbackReason::Requested,
            },
            (Phase::RollingBack, Reason::AnalysisFailed) => Stage::RollingBack {
                since_ms: stored.group_started_ms,
                reason: RollbackReason::AnalysisFailed,
            },
            (phase, reason) => return Err(illegal(phase, reason)),
        };
        Ok(Self {
            history: stored.history,
            current_revision: stored.current_revision,
            update_revision: stored.update_revision,
            stage,
            message: stored.message,
            analysis: stored.analysis,
            promoted: stored.promoted,
            switched: stored.switched,
        })
    }
}

fn illegal(phase: Phase, reason: Reason) -> String {
    format!("a release cannot be {phase} for reason {reason}")
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
    /// Whether the current group updates pods in this unit: its analysis measures it.
    pub changed: bool,
    /// The agent's latest report, when its cluster is connected and the report is fresh (it describes
    /// the slice generation the hub sent last). `None`: unknown health, which is not health.
    pub observed: Option<Observed>,
    /// Blue-green: what the unit was told (`None` for a grouped release).
    pub blue_green: Option<BlueGreenPart>,
}

/// A unit's part in a blue-green group, as its slice says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlueGreenPart {
    /// Its traffic moves (moved) to the update revision.
    pub switched: bool,
    /// Its preview runs.
    pub preview: bool,
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
    /// Pods in traffic.
    pub serving: i32,
    /// Pods of the update revision in traffic.
    pub updated_serving: i32,
    /// Pods of the update revision ready out of traffic (a blue-green preview).
    pub preview_ready: i32,
}

impl Observed {
    /// Every pod in traffic runs the update revision, and `replicas` of them are ready.
    pub fn serves_update(&self, replicas: i32) -> bool {
        self.updated_serving >= replicas
            && self.serving == self.updated_serving
            && self.updated_ready >= replicas
    }
}

impl UnitProgress {
    fn group_done(&self) -> bool {
        self.observed.as_ref().is_some_and(|o| {
            o.problems.is_empty()
                && match self.blue_green {
                    None => o.updated >= self.target && o.updated_ready >= self.target,
                    Some(part) if part.switched => o.serves_update(self.replicas),
                    Some(part) if part.preview => o.preview_ready >= self.replicas,
                    Some(_) => true,
                }
        })
    }

    fn fully_updated(&self) -> bool {
        self.observed
            .as_ref()
            .is_some_and(|o| match self.blue_green {
                // Old pods kept as the way back do not count: only what serves does.
                Some(_) => o.serves_update(self.replicas),
                None => {
                    o.updated >= self.replicas
                        && o.updated_ready >= self.replicas
                        && o.replicas == self.replicas
                }
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
    /// `continue`, and run every remaining group without pausing (`promote --full`).
    Promote,
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
            Self::Promote => f.write_str("promote --full"),
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
    /// The state after the command; `None` when the command was a no-op.
    pub next: Option<ReleaseState>,
    /// A readable account.
    pub message: String,
}

impl CommandOutcome {
    /// Whether the command changed the release.
    pub fn changed(&self) -> bool {
        self.next.is_some()
    }

    fn unchanged(message: impl Into<String>) -> Self {
        Self {
            next: None,
            message: message.into(),
        }
    }

    fn to(next: ReleaseState) -> Self {
        Self {
            message: next.message.clone(),
            next: Some(next),
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
    /// `continue` on a group whose analysis failed.
    #[error(
        "group {group}'s analysis failed ({message}): continue is refused; retry measures again, rollback returns to the stable revision"
    )]
    AnalysisFailed {
        /// The group.
        group: usize,
        /// What failed.
        message: String,
    },
}

/// What a look at the units' reports decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Advance {
    /// Nothing to record but the wait clock.
    Unchanged,
    /// The reason or the account changed, not the phase or the group: the slices stay as they are.
    Noted(ReleaseState),
    /// A transition: the slices follow, and the record is written.
    Moved(ReleaseState),
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
            stage: Stage::Stable {
                group: 0,
                reason: StableReason::Created,
            },
            message: String::new(),
            analysis: None,
            promoted: false,
            switched: None,
        }
    }

    /// Where the release stands.
    pub fn stage(&self) -> &Stage {
        &self.stage
    }

    /// The state's name.
    pub fn phase(&self) -> Phase {
        self.stage.phase()
    }

    /// Why.
    pub fn reason(&self) -> Reason {
        self.stage.reason()
    }

    /// The current group (0-based).
    pub fn batch(&self) -> usize {
        self.stage.group()
    }

    /// A readable account of the last transition.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// This state in `stage`, with `message`.
    fn with(&self, stage: Stage, message: impl Into<String>) -> Self {
        Self {
            stage,
            message: message.into(),
            ..self.clone()
        }
    }

    /// The state once the deployment's template is `template`; `None` when that is the revision
    /// the units already move to.
    pub fn on_template(&self, template: &PodTemplateSpec, now_ms: i64) -> Option<Self> {
        let name = super::revision::revision_name(template);
        if name == self.update_revision {
            return None;
        }
        let mut next = self.clone();
        let pinned = [
            self.current_revision.as_str(),
            self.update_revision.as_str(),
        ];
        next.history.record(template, now_ms, &pinned);
        next.update_revision = name.clone();
        next.analysis = None;
        next.promoted = false;
        next.switched = None;
        Some(if name == self.current_revision {
            // The template went back to what the units ran: return there at once.
            next.with(
                Stage::RollingBack {
                    since_ms: now_ms,
                    reason: RollbackReason::Requested,
                },
                format!("template returned to revision {name}"),
            )
        } else {
            next.with(
                Stage::progressing(0, now_ms, ProgressReason::NewRevision),
                format!("releasing revision {name}"),
            )
        })
    }

    /// Looks at the units' reports and the time. `clock` is the group's wait clock (see
    /// [`WaitClock`]); the one returned replaces it. `groups` is the plan's number of groups, and
    /// `open` how many of them may run now: fewer while a pipeline holds the later ones for its
    /// later stages.
    pub fn advance(
        &self,
        clock: WaitClock,
        strategy: &Strategy,
        (groups, open): (usize, usize),
        units: &[UnitProgress],
        now_ms: i64,
    ) -> (Advance, WaitClock) {
        let active = || units.iter().filter(|u| !u.evacuated);
        match &self.stage {
            Stage::Paused {
                group,
                reason: PauseReason::AwaitingStage,
            } if group + 1 < open.min(groups) => (
                Advance::Moved(self.next_group(*group, now_ms)),
                WaitClock::started(now_ms),
            ),
            Stage::Stable { .. } | Stage::Paused { .. } | Stage::Failed { .. } => {
                (Advance::Unchanged, clock)
            }
            Stage::RollingBack { reason, .. } => {
                if !active().all(UnitProgress::fully_updated) {
                    return (Advance::Unchanged, clock);
                }
                let message = match reason {
                    RollbackReason::Requested => {
                        format!("rolled back to revision {}", self.update_revision)
                    }
                    // Keep why: the status still names the metric, the unit and the value.
                    RollbackReason::AnalysisFailed => format!(
                        "rolled back to revision {} after the analysis failed: {}",
                        self.update_revision,
                        self.analysis
                            .as_ref()
                            .and_then(|r| r.outcome.as_ref())
                            .map_or("", |o| o.message.as_str())
                    ),
                };
                let mut next = self.with(
                    Stage::Stable {
                        group: 0,
                        reason: StableReason::RolledBack,
                    },
                    message,
                );
                next.current_revision = self.update_revision.clone();
                (Advance::Moved(next), clock)
            }
            Stage::Progressing {
                group,
                since_ms,
                healthy_since_ms,
                reason,
            } => {
                let (group, since_ms, reason) = (*group, *since_ms, *reason);
                let known = active().all(|u| u.observed.is_some());
                let elapsed = clock.last_checked_ms.map_or(0, |t| (now_ms - t).max(0));
                let clock = WaitClock {
                    waited_ms: clock.waited_ms + if known { elapsed } else { 0 },
                    last_checked_ms: Some(now_ms),
                };
                let pods: Vec<String> = active()
                    .filter_map(|u| u.observed.as_ref().map(|o| (u, o)))
                    .flat_map(|(u, o)| o.problems.iter().map(move |p| format!("{}: {p}", u.unit)))
                    .collect();
                if !pods.is_empty() {
                    let message = pods.join("; ");
                    let failure = Failure::PodsFailing { pods };
                    let next = self.with(Stage::Failed { group, failure }, message);
                    return (Advance::Moved(next), clock);
                }
                let progressing = |healthy_since_ms, reason| Stage::Progressing {
                    group,
                    since_ms,
                    healthy_since_ms,
                    reason,
                };
                if !active().all(UnitProgress::group_done) {
                    let waiting: Vec<String> = active()
                        .filter(|u| !u.group_done())
                        .map(|u| u.unit.to_string())
                        .collect();
                    let deadline = i64::from(strategy.progress_deadline_seconds) * 1000;
                    if clock.waited_ms < deadline {
                        // A blue-green group waits for its switch, not its preview, once told to switch.
                        let (waits, what) = if self.switched == Some(group) {
                            (ProgressReason::Switching, "'s switch")
                        } else {
                            (ProgressReason::WaitingForUnits, "")
                        };
                        let message =
                            format!("group {group}{what} waits for {}", waiting.join(", "));
                        let next = self.with(progressing(None, waits), message);
                        // A new list of waiting units is news; only a new reason is a transition.
                        return if reason == waits {
                            (Advance::Noted(next), clock)
                        } else {
                            (Advance::Moved(next), clock)
                        };
                    }
                    let message = format!(
                        "group {group} made no progress within {}s in {}",
                        strategy.progress_deadline_seconds,
                        waiting.join(", ")
                    );
                    let failure = Failure::ProgressDeadlineExceeded { waiting };
                    let next = self.with(Stage::Failed { group, failure }, message);
                    return (Advance::Moved(next), clock);
                }
                let since = healthy_since_ms.unwrap_or(now_ms);
                let healthy_for = now_ms - since;
                if healthy_for < i64::from(strategy.min_ready_seconds) * 1000 {
                    let next = self.with(progressing(Some(since), reason), self.message.clone());
                    return (Self::noted_if_changed(self, next), clock);
                }
                let mut confirmed = false;
                let mut passed = None;
                if let Some(analysis) = &strategy.analysis {
                    let measured: Vec<UnitName> = active()
                        .filter(|u| u.changed)
                        .map(|u| u.unit.clone())
                        .collect();
                    let Some(run) = self.analysis.as_ref().filter(|r| r.group == group) else {
                        let mut next = self.with(
                            progressing(Some(since), ProgressReason::Analyzing),
                            format!("group {group} is healthy; analysis started"),
                        );
                        next.analysis = Some(AnalysisRun::new(group, now_ms));
                        return (Advance::Moved(next), clock);
                    };
                    match run.verdict(analysis, &measured) {
                        Verdict::Pending => {
                            let message = format!(
                                "group {group} is healthy; analysis: {} of {} measurements",
                                run.rounds(),
                                analysis.count
                            );
                            let next = self
                                .with(progressing(Some(since), ProgressReason::Analyzing), message);
                            return if reason == ProgressReason::Analyzing {
                                (Self::noted_if_changed(self, next), clock)
                            } else {
                                (Advance::Moved(next), clock)
                            };
                        }
                        Verdict::Failed(why) => {
                            let message = format!("analysis of group {group} failed: {why}");
                            let ended = Some(run.ended(OutcomeResult::Failed, why.clone()));
                            let mut next = match analysis.on_failure {
                                OnFailure::Pause => self.with(
                                    Stage::Failed {
                                        group,
                                        failure: Failure::AnalysisFailed { message: why },
                                    },
                                    message,
                                ),
                                OnFailure::Rollback => {
                                    let mut next = self.with(
                                        Stage::RollingBack {
                                            since_ms: now_ms,
                                            reason: RollbackReason::AnalysisFailed,
                                        },
                                        format!(
                                            "{message}; rolling back to revision {}",
                                            self.current_revision
                                        ),
                                    );
                                    next.update_revision = self.current_revision.clone();
                                    next
                                }
                            };
                            next.analysis = ended;
                            return (Advance::Moved(next), clock);
                        }
                        Verdict::Inconclusive(why) => {
                            let ended = Some(run.ended(OutcomeResult::Inconclusive, why.clone()));
                            let mut next = self.with(
                                Stage::Paused {
                                    group,
                                    reason: PauseReason::AnalysisInconclusive,
                                },
                                format!(
                                    "analysis of group {group} is inconclusive: {why}; continue \
                                     accepts the group, rollback returns"
                                ),
                            );
                            next.analysis = ended;
                            return (Advance::Moved(next), clock);
                        }
                        Verdict::Passed => {
                            confirmed = run.accepted;
                            if run.outcome.as_ref().map(|o| o.result) != Some(OutcomeResult::Passed)
                            {
                                let why = if run.accepted {
                                    "accepted by an operator".to_owned()
                                } else {
                                    format!("{} rounds of measurements passed", run.rounds())
                                };
                                passed = Some(run.ended(OutcomeResult::Passed, why));
                            }
                        }
                    }
                }
                let with_outcome;
                let this: &Self = match passed {
                    Some(run) => {
                        with_outcome = Self {
                            analysis: Some(run),
                            ..self.clone()
                        };
                        &with_outcome
                    }
                    None => self,
                };
                if strategy.blue_green().is_some() {
                    if this.switched != Some(group) {
                        return this.preview_ready(
                            strategy,
                            group,
                            confirmed,
                            (since, healthy_for, reason),
                            now_ms,
                            clock,
                        );
                    }
                    if group + 1 < groups.min(open) {
                        // The pause sits before each switch: the next preview starts at once.
                        return (
                            Advance::Moved(this.next_group(group, now_ms)),
                            WaitClock::started(now_ms),
                        );
                    }
                }
                if group + 1 >= groups {
                    let mut next = this.with(
                        Stage::Stable {
                            group,
                            reason: StableReason::Complete,
                        },
                        format!("revision {} runs in every unit", this.update_revision),
                    );
                    next.current_revision = this.update_revision.clone();
                    return (Advance::Moved(next), clock);
                }
                if group + 1 >= open {
                    // The pipeline's gate, not the deployment's pause, decides when the next
                    // stage's groups start.
                    let next = this.with(
                        Stage::Paused {
                            group,
                            reason: PauseReason::AwaitingStage,
                        },
                        format!(
                            "group {group} is done; group {} waits for the pipeline's next stage",
                            group + 1
                        ),
                    );
                    return (Advance::Moved(next), clock);
                }
                match strategy.pause {
                    // An operator accepted the group already, or promoted the whole release:
                    // the next one starts now.
                    PauseMode::Manual if confirmed || this.promoted => (
                        Advance::Moved(this.next_group(group, now_ms)),
                        WaitClock::started(now_ms),
                    ),
                    PauseMode::Manual => {
                        let message = format!(
                            "group {group} is done; continue to start group {}",
                            group + 1
                        );
                        let next = this.with(
                            Stage::Paused {
                                group,
                                reason: PauseReason::AwaitingConfirm,
                            },
                            message,
                        );
                        (Advance::Moved(next), clock)
                    }
                    PauseMode::Auto => {
                        // A promoted release keeps minReadySeconds, not the pause.
                        let pause = if this.promoted {
                            0
                        } else {
                            strategy.auto_pause_seconds
                        };
                        let wait = i64::from(strategy.min_ready_seconds + pause) * 1000;
                        if healthy_for < wait {
                            let next = this.with(
                                progressing(Some(since), ProgressReason::AutoPausing),
                                format!("group {group} is healthy; next group soon"),
                            );
                            return if reason == ProgressReason::AutoPausing {
                                (Self::noted_if_changed(self, next), clock)
                            } else {
                                (Advance::Moved(next), clock)
                            };
                        }
                        (
                            Advance::Moved(this.next_group(group, now_ms)),
                            WaitClock::started(now_ms),
                        )
                    }
                }
            }
        }
    }

    /// Blue-green: the preview of `group` is ready and its analysis passed. The group switches now
    /// (after `autoPauseSeconds` with `pause: Auto`), or once an operator continues.
    fn preview_ready(
        &self,
        strategy: &Strategy,
        group: usize,
        confirmed: bool,
        (since, healthy_for, reason): (i64, i64, ProgressReason),
        now_ms: i64,
        clock: WaitClock,
    ) -> (Advance, WaitClock) {
        let wait = match strategy.pause {
            PauseMode::Manual if !(confirmed || self.promoted) => {
                let next = self.with(
                    Stage::Paused {
                        group,
                        reason: PauseReason::AwaitingSwitch,
                    },
                    format!("the preview of group {group} is ready; continue switches its traffic"),
                );
                return (Advance::Moved(next), clock);
            }
            PauseMode::Auto if !self.promoted => strategy.auto_pause_seconds,
            _ => 0,
        };
        if healthy_for < i64::from(strategy.min_ready_seconds + wait) * 1000 {
            let next = self.with(
                Stage::Progressing {
                    group,
                    since_ms: match self.stage {
                        Stage::Progressing { since_ms, .. } => since_ms,
                        _ => now_ms,
                    },
                    healthy_since_ms: Some(since),
                    reason: ProgressReason::AutoPausing,
                },
                format!("the preview of group {group} is ready; the switch comes soon"),
            );
            return if reason == ProgressReason::AutoPausing {
                (Self::noted_if_changed(self, next), clock)
            } else {
                (Advance::Moved(next), clock)
            };
        }
        (
            Advance::Moved(self.switch(group, now_ms)),
            WaitClock::started(now_ms),
        )
    }

    /// Blue-green: this state with `group`'s units told to switch their traffic.
    fn switch(&self, group: usize, now_ms: i64) -> Self {
        let mut next = self.with(
            Stage::progressing(group, now_ms, ProgressReason::Switching),
            format!(
                "group {group} switches traffic to revision {}",
                self.update_revision
            ),
        );
        next.switched = Some(group);
        next
    }

    /// Blue-green: the last group told to switch its traffic.
    pub fn switched_group(&self) -> Option<usize> {
        self.switched
    }

    /// This state with the group after `group` just started. The last group's analysis stays for
    /// the status until this group's begins.
    fn next_group(&self, group: usize, now_ms: i64) -> Self {
        let next = group + 1;
        self.with(
            Stage::progressing(next, now_ms, ProgressReason::WaitingForUnits),
            format!("group {next} started"),
        )
    }

    /// The analysis of the current group, if it has one.
    pub fn analysis(&self) -> Option<&AnalysisRun> {
        self.analysis.as_ref()
    }

    /// The analysis run that waits for measurements now: the current group's, while it is
    /// healthy and being analysed.
    pub fn measuring(&self) -> Option<&AnalysisRun> {
        let Stage::Progressing {
            reason: ProgressReason::Analyzing,
            group,
            ..
        } = self.stage
        else {
            return None;
        };
        self.analysis.as_ref().filter(|r| r.group == group)
    }

    /// The state with `measurements` added to the current run; `None` when the run they were taken
    /// for is not the current one any more (the group moved on, a restart began a new one).
    pub fn with_measurements(
        &self,
        revision: &str,
        group: usize,
        started_ms: i64,
        measurements: Vec<Measurement>,
    ) -> Option<Self> {
        let current = self.measuring().is_some_and(|r| {
            r.group == group && r.started_ms == started_ms && self.update_revision == revision
        });
        if !current {
            return None;
        }
        let mut next = self.clone();
        if let Some(run) = next.analysis.as_mut() {
            run.measurements.extend(measurements);
        }
        Some(next)
    }

    /// `Noted(next)`, or `Unchanged` when `next` is this state.
    fn noted_if_changed(&self, next: Self) -> Advance {
        if next.stage == self.stage && next.message == self.message {
            Advance::Unchanged
        } else {
            Advance::Noted(next)
        }
    }

    /// Carries out an operator's command. `expected_batch`, when given, must be the current group,
    /// else nothing changes. Idempotent: a command whose effect is already in place changes nothing.
    /// A command that starts a group starts its wait clock too (see [`ReleaseState::group_started`]).
    pub fn command(
        &self,
        command: ReleaseCommand,
        expected_batch: Option<usize>,
        now_ms: i64,
    ) -> Result<CommandOutcome, CommandError> {
        let group = self.batch();
        if let Some(expected) = expected_batch
            && expected != group
        {
            return Ok(CommandOutcome::unchanged(format!(
                "the release is at group {group}, not {expected}: nothing done"
            )));
        }
        let phase = self.phase();
        Ok(match (command, &self.stage) {
            (ReleaseCommand::Pause, Stage::Progressing { .. }) => CommandOutcome::to(self.with(
                Stage::Paused {
                    group,
                    reason: PauseReason::PausedByOperator,
                },
                format!("paused in group {group}"),
            )),
            (ReleaseCommand::Pause, _) => {
                CommandOutcome::unchanged(format!("the release is {phase}: nothing to pause"))
            }
            (ReleaseCommand::Continue, Stage::Paused { reason, .. }) => match reason {
                PauseReason::AwaitingConfirm => CommandOutcome::to(self.next_group(group, now_ms)),
                PauseReason::AwaitingSwitch => CommandOutcome::to(self.switch(group, now_ms)),
                PauseReason::PausedByOperator => CommandOutcome::to(self.with(
                    Stage::progressing(group, now_ms, ProgressReason::WaitingForUnits),
                    format!("group {group} resumed"),
                )),
                PauseReason::AwaitingStage => CommandOutcome::unchanged(format!(
                    "group {group} is done; the pipeline's next stage starts group {}",
                    group + 1
                )),
                PauseReason::AnalysisInconclusive => {
                    let mut next = self.with(
                        Stage::progressing(group, now_ms, ProgressReason::WaitingForUnits),
                        format!("group {group} accepted by an operator"),
                    );
                    if let Some(run) = next.analysis.as_mut() {
                        run.accepted = true;
                        run.outcome = None;
                    }
                    CommandOutcome::to(next)
                }
            },
            (
                ReleaseCommand::Continue,
                Stage::Failed {
                    failure: Failure::AnalysisFailed { message },
                    ..
                },
            ) => {
                return Err(CommandError::AnalysisFailed {
                    group,
                    message: message.clone(),
                });
            }
            (ReleaseCommand::Continue, _) => {
                CommandOutcome::unchanged(format!("the release is {phase}: nothing to continue"))
            }
            (ReleaseCommand::Promote, Stage::Progressing { .. }) if self.promoted => {
                CommandOutcome::unchanged(
                    "already promoted: the remaining groups run without pausing".to_owned(),
                )
            }
            (ReleaseCommand::Promote, Stage::Progressing { .. }) => CommandOutcome::to(Self {
                promoted: true,
                message: format!("promoted: group {group} and the rest run without pausing"),
                ..self.clone()
            }),
            (ReleaseCommand::Promote, Stage::Paused { .. }) => {
                let mut outcome = self.command(ReleaseCommand::Continue, None, now_ms)?;
                if let Some(next) = outcome.next.as_mut() {
                    next.promoted = true;
                    next.message = format!("promoted: {}", next.message);
                }
                outcome
            }
            (ReleaseCommand::Promote, _) => {
                return self.command(ReleaseCommand::Continue, None, now_ms);
            }
            (ReleaseCommand::Retry, Stage::Failed { .. }) => {
                // A fresh analysis: the measurements that failed do not count again.
                let mut next = self.with(
                    Stage::progressing(group, now_ms, ProgressReason::Retrying),
                    format!("retrying group {group}"),
                );
                next.analysis = None;
                CommandOutcome::to(next)
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
        &self,
        to_revision: Option<i64>,
        now_ms: i64,
    ) -> Result<CommandOutcome, CommandError> {
        let rolling_back = matches!(self.stage, Stage::RollingBack { .. });
        if to_revision.is_none() && rolling_back {
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
        let name = target.name.clone();
        let settled = rolling_back || matches!(self.stage, Stage::Stable { .. });
        if settled && self.update_revision == name {
            return Ok(CommandOutcome::unchanged(format!(
                "already at revision {name}"
            )));
        }
        let mut next = self.with(
            Stage::RollingBack {
                since_ms: now_ms,
                reason: RollbackReason::Requested,
            },
            format!("rolling back to revision {name}"),
        );
        next.update_revision = name;
        Ok(CommandOutcome::to(next))
    }

    /// While rolling back: the template every unit returns to. The deployment's spec returns to it
    /// too, as `kubectl rollout undo` leaves a Deployment.
    pub fn rollback_target(&self) -> Option<&PodTemplateSpec> {
        match self.stage {
            Stage::RollingBack { .. } => {
                self.history.get(&self.update_revision).map(|r| &r.template)
            }
            _ => None,
        }
    }

    /// Whether `next` starts a new group (or a rollback) compared with this state: its wait clock
    /// then starts again.
    pub fn group_started(&self, next: &Self) -> bool {
        let since = |stage: &Stage| match stage {
            Stage::Progressing {
                group, since_ms, ..
            } => Some((*group, *since_ms)),
            Stage::RollingBack { since_ms, .. } => Some((0, *since_ms)),
            _ => None,
        };
        since(&next.stage).is_some() && since(&next.stage) != since(&self.stage)
    }

    /// Whether time alone may move the release at `now_ms`: a healthy group waiting out
    /// minReadySeconds or autoPauseSeconds, or a group whose progress deadline may have passed.
    pub fn due(&self, clock: Option<&WaitClock>, strategy: &Strategy, now_ms: i64) -> bool {
        let Stage::Progressing {
            healthy_since_ms, ..
        } = &self.stage
        else {
            return false;
        };
        let deadline = i64::from(strategy.progress_deadline_seconds) * 1000;
        let waited = clock.map_or(0, |c| c.waited_at(now_ms));
        healthy_since_ms.is_some() || waited >= deadline
    }

    /// The cumulative target of a unit with `replicas` in the current state, given the group's target.
    pub fn target(&self, group_target: Option<i32>, replicas: i32) -> i32 {
        match self.stage {
            Stage::Stable { .. } | Stage::RollingBack { .. } => replicas,
            Stage::Progressing { .. } | Stage::Paused { .. } | Stage::Failed { .. } => {
                group_target.unwrap_or(replicas).clamp(0, replicas.max(0))
            }
        }
    }

    /// Whether every unit runs (or returns to) one revision: no group partitions.
    pub fn settled(&self) -> bool {
        matches!(self.stage, Stage::Stable { .. } | Stage::RollingBack { .. })
    }

    /// Whether the agents must stop updating pods (they keep scaling).
    pub fn slices_paused(&self) -> bool {
        matches!(
            self.stage,
            Stage::Failed { .. }
                | Stage::Paused {
                    reason: PauseReason::PausedByOperator,
                    ..
                }
        )
    }
}
