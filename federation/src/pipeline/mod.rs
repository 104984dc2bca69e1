//! The ReleasePipeline state machine: several deployments released stage by stage. Pure, in the
//! shape of the release machine ([`crate::release`]): each state carries its own data
//! ([`Progress`]), and a look at the releases ([`PipelineState::drive`]) or an operator's command
//! ([`PipelineState::command`]) returns the next state and what the hub must do to the releases
//! ([`Action`]) as values. Both are level-triggered: asked again with the same releases, they ask
//! for nothing new, so a restarted hub carries on from the stored state.

use crate::release::{Phase, Reason};
use crate::resources::{Gate, PipelineOnFailure, ReleasePipeline};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

#[cfg(test)]
mod tests;

/// Where a pipeline stands, with what that state needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all_fields = "camelCase")]
pub enum Progress {
    /// The releases of `stage` run.
    Running {
        /// The stage (0-based).
        stage: usize,
    },
    /// `stage` is done; its gate waits for `approve`.
    AwaitingApproval {
        /// The stage.
        stage: usize,
    },
    /// An operator paused the pipeline: the stage's releases are paused, and no stage starts.
    Paused {
        /// The stage.
        stage: usize,
    },
    /// A release failed with `onFailure: Stop`: nothing moves until a human decides.
    Failed {
        /// The stage.
        stage: usize,
        /// What failed.
        failure: String,
    },
    /// The pipeline's releases return to their revisions from before it, latest stage first.
    RollingBack {
        /// The stage whose deployments roll back now.
        stage: usize,
        /// The latest stage that had started.
        from_stage: usize,
        /// The failure that caused it; none when an operator asked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<String>,
    },
    /// Every stage is done.
    Succeeded,
    /// Every release is back on its revision from before the pipeline.
    RolledBack {
        /// The failure that caused it; none when an operator asked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failure: Option<String>,
    },
    /// An operator stopped the pipeline: its deployments stay where they stand, and are free.
    Aborted {
        /// The stage it stopped in.
        stage: usize,
    },
}

impl Progress {
    /// The state's name.
    pub fn phase(&self) -> &'static str {
        match self {
            Self::Running { .. } => "Running",
            Self::AwaitingApproval { .. } => "AwaitingApproval",
            Self::Paused { .. } => "Paused",
            Self::Failed { .. } => "Failed",
            Self::RollingBack { .. } => "RollingBack",
            Self::Succeeded => "Succeeded",
            Self::RolledBack { .. } => "RolledBack",
            Self::Aborted { .. } => "Aborted",
        }
    }

    /// The current stage, when the state has one.
    pub fn stage(&self) -> Option<usize> {
        match self {
            Self::Running { stage }
            | Self::AwaitingApproval { stage }
            | Self::Paused { stage }
            | Self::Failed { stage, .. }
            | Self::RollingBack { stage, .. }
            | Self::Aborted { stage } => Some(*stage),
            Self::Succeeded | Self::RolledBack { .. } => None,
        }
    }

    /// Whether the pipeline still drives its deployments: their templates are its to change.
    pub fn drives(&self) -> bool {
        !matches!(
            self,
            Self::Succeeded | Self::RolledBack { .. } | Self::Aborted { .. }
        )
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.phase())
    }
}

/// The durable state of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineState {
    /// Where it stands.
    #[serde(flatten)]
    pub progress: Progress,
    /// Per deployment, the revision it ran when the pipeline was applied: what a rollback returns to.
    pub from: BTreeMap<String, String>,
    /// Per deployment, the revision the pipeline releases.
    pub targets: BTreeMap<String, String>,
    /// The deployments whose release the pipeline has started.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub started: BTreeSet<String>,
    /// A readable account of the last transition.
    #[serde(default)]
    pub message: String,
    /// When the state was entered (ms since the epoch).
    #[serde(default)]
    pub since_ms: i64,
}

/// What the pipeline needs to know of one deployment's release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseView {
    /// The release's phase.
    pub phase: Phase,
    /// Why.
    pub reason: Reason,
    /// The current group (0-based).
    pub group: usize,
    /// The revision every unit ran when last stable.
    pub current_revision: String,
    /// The revision units move to.
    pub update_revision: String,
    /// The pipeline stage of each group of the deployment's plan, in order.
    pub group_stages: Vec<Option<String>>,
    /// The release's account.
    pub message: String,
}

/// What the hub must do to a release.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Make the deployment's template the pipeline's target: its release starts.
    Start {
        /// The deployment.
        deployment: String,
    },
    /// Pause the release (`cafectl pause`).
    Pause {
        /// The deployment.
        deployment: String,
    },
    /// Resume a release paused by [`Action::Pause`] (`cafectl continue`).
    Resume {
        /// The deployment.
        deployment: String,
    },
    /// Return every unit to `revision` at once (`cafectl rollback --to-revision`).
    Rollback {
        /// The deployment.
        deployment: String,
        /// The revision from before the pipeline.
        revision: String,
    },
}

/// What a look at the releases, or a command, decided.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Step {
    /// The next state; `None` when it stays.
    pub next: Option<PipelineState>,
    /// What to do to the releases.
    pub actions: Vec<Action>,
    /// A readable account (of a command that changed nothing, why).
    pub message: String,
}

impl Step {
    /// Whether the step changes the pipeline.
    pub fn changed(&self) -> bool {
        self.next.is_some()
    }

    fn unchanged(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            ..Self::default()
        }
    }
}

/// An operator's pipeline command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineCommand {
    /// Open the gate of the stage that waits for approval.
    Approve,
    /// Pause the stage's releases; no stage starts.
    Pause,
    /// Resume a paused (or stopped) pipeline.
    Resume,
    /// Stop driving the deployments; they stay where they stand.
    Abort,
    /// Every release back to its revision from before the pipeline, latest stage first.
    Rollback,
}

impl PipelineCommand {
    /// Every command with its word, as in `cafectl pipeline WORD`.
    pub const ALL: [(Self, &'static str); 5] = [
        (Self::Approve, "approve"),
        (Self::Pause, "pause"),
        (Self::Resume, "resume"),
        (Self::Abort, "abort"),
        (Self::Rollback, "rollback"),
    ];

    /// The command's word.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(c, _)| *c == self)
            .map_or("", |(_, w)| w)
    }

    /// The command a word names.
    pub fn from_word(word: &str) -> Option<Self> {
        Self::ALL.iter().find(|(_, w)| *w == word).map(|(c, _)| *c)
    }
}

impl fmt::Display for PipelineCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many of a deployment's groups may run while the pipeline is at `stage`: those of the
/// stages up to it (the blocks come in stage order).
pub fn open_groups(
    pipeline: &ReleasePipeline,
    stage: usize,
    group_stages: &[Option<String>],
) -> usize {
    group_stages
        .iter()
        .take_while(|name| {
            name.as_deref()
                .and_then(|n| pipeline.stage_index(n))
                .is_none_or(|s| s <= stage)
        })
        .count()
}

/// How a release stands in its pipeline stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseStanding {
    /// Its stage has not started it yet.
    Pending,
    /// Its groups of the stage run.
    Releasing,
    /// Its groups of the stage are done.
    Done,
    /// It failed, or left the pipeline's target.
    Failed,
    /// It is back on its revision from before the pipeline.
    RolledBack,
}

impl PipelineState {
    /// The state of a pipeline just applied, over deployments that run `from` and go to `targets`.
    pub fn new(
        from: BTreeMap<String, String>,
        targets: BTreeMap<String, String>,
        now_ms: i64,
    ) -> Self {
        Self {
            progress: Progress::Running { stage: 0 },
            from,
            targets,
            started: BTreeSet::new(),
            message: "pipeline applied".to_owned(),
            since_ms: now_ms,
        }
    }

    fn to(&self, progress: Progress, message: impl Into<String>, now_ms: i64) -> Self {
        Self {
            progress,
            message: message.into(),
            since_ms: now_ms,
            ..self.clone()
        }
    }

    /// How `deployment`'s release stands in `stage`.
    pub fn standing(
        &self,
        pipeline: &ReleasePipeline,
        stage: usize,
        deployment: &str,
        view: Option<&ReleaseView>,
    ) -> ReleaseStanding {
        let Some(view) = view else {
            return ReleaseStanding::Failed;
        };
        let (Some(target), Some(from)) = (self.targets.get(deployment), self.from.get(deployment))
        else {
            return ReleaseStanding::Failed;
        };
        if !self.started.contains(deployment) {
            // A stage that has none of the deployment's units to move has nothing to wait for.
            return if open_groups(pipeline, stage, &view.group_stages) == 0 {
                ReleaseStanding::Done
            } else {
                ReleaseStanding::Pending
            };
        }
        if view.phase == Phase::Stable && view.current_revision == *from && from != target {
            return ReleaseStanding::RolledBack;
        }
        if view.phase == Phase::Failed || view.update_revision != *target {
            return ReleaseStanding::Failed;
        }
        let through = open_groups(pipeline, stage, &view.group_stages);
        let done = match view.phase {
            Phase::Stable => view.current_revision == *target,
            // Held after the stage's groups, or already in a later stage's.
            Phase::Paused if view.reason == Reason::AwaitingStage => view.group + 1 >= through,
            _ => view.group >= through,
        };
        if done {
            ReleaseStanding::Done
        } else {
            ReleaseStanding::Releasing
        }
    }

    /// The first failure among the started releases, as `deployment: why`.
    fn failure(&self, views: &BTreeMap<String, ReleaseView>) -> Option<String> {
        self.started.iter().find_map(|deployment| {
            let target = self.targets.get(deployment)?;
            let Some(view) = views.get(deployment) else {
                return Some(format!("{deployment}: the deployment is gone"));
            };
            if view.phase == Phase::Failed {
                return Some(format!("{deployment}: {}: {}", view.reason, view.message));
            }
            (view.update_revision != *target).then(|| {
                format!(
                    "{deployment}: left the pipeline's revision {target} ({} to {}: {})",
                    view.phase, view.update_revision, view.message
                )
            })
        })
    }

    /// The releases of `stage` that run now, to pause.
    fn pauses(
        &self,
        pipeline: &ReleasePipeline,
        stage: usize,
        views: &BTreeMap<String, ReleaseView>,
    ) -> Vec<Action> {
        stage_deployments(pipeline, stage)
            .filter(|d| self.started.contains(*d))
            .filter(|d| views.get(*d).is_some_and(|v| v.phase == Phase::Progressing))
            .map(|d| Action::Pause {
                deployment: d.to_owned(),
            })
            .collect()
    }

    /// The state after a failure at `stage`.
    fn failed(
        &self,
        pipeline: &ReleasePipeline,
        stage: usize,
        failure: String,
        views: &BTreeMap<String, ReleaseView>,
        now_ms: i64,
    ) -> Step {
        match pipeline.spec.on_failure {
            PipelineOnFailure::Stop => Step {
                next: Some(self.to(
                    Progress::Failed {
                        stage,
                        failure: failure.clone(),
                    },
                    format!("stopped: {failure}"),
                    now_ms,
                )),
                actions: self.pauses(pipeline, stage, views),
                message: String::new(),
            },
            PipelineOnFailure::RollbackAll => Step {
                next: Some(self.to(
                    Progress::RollingBack {
                        stage,
                        from_stage: stage,
                        failure: Some(failure.clone()),
                    },
                    format!("rolling back every release, latest stage first: {failure}"),
                    now_ms,
                )),
                actions: Vec::new(),
                message: String::new(),
            },
        }
    }

    /// Looks at the releases. `views` holds every deployment of the pipeline the hub has.
    pub fn drive(
        &self,
        pipeline: &ReleasePipeline,
        views: &BTreeMap<String, ReleaseView>,
        now_ms: i64,
    ) -> Step {
        match &self.progress {
            Progress::Running { stage } => {
                let stage = *stage;
                if let Some(failure) = self.failure(views) {
                    return self.failed(pipeline, stage, failure, views, now_ms);
                }
                // A deployment starts with the first stage that has groups of it: started earlier,
                // its first group would belong to a later stage.
                let starting: Vec<String> = stage_deployments(pipeline, stage)
                    .filter(|d| !self.started.contains(*d))
                    .filter(|d| {
                        views
                            .get(*d)
                            .is_some_and(|v| open_groups(pipeline, stage, &v.group_stages) > 0)
                    })
                    .map(str::to_owned)
                    .collect();
                if !starting.is_empty() {
                    let mut next = self.to(
                        self.progress.clone(),
                        format!(
                            "stage {} started: {}",
                            pipeline.spec.stages[stage].name,
                            starting.join(", ")
                        ),
                        now_ms,
                    );
                    next.started.extend(starting.iter().cloned());
                    return Step {
                        next: Some(next),
                        actions: starting
                            .into_iter()
                            .map(|deployment| Action::Start { deployment })
                            .collect(),
                        message: String::new(),
                    };
                }
                let done = stage_deployments(pipeline, stage).all(|d| {
                    self.standing(pipeline, stage, d, views.get(d)) == ReleaseStanding::Done
                });
                if !done {
                    return Step::default();
                }
                let name = &pipeline.spec.stages[stage].name;
                let next = match pipeline.spec.stages[stage].gate {
                    Gate::Approval => self.to(
                        Progress::AwaitingApproval { stage },
                        format!("stage {name} is done; approve to go on"),
                        now_ms,
                    ),
                    Gate::None => self.after(pipeline, stage, now_ms),
                };
                Step {
                    next: Some(next),
                    ..Step::default()
                }
            }
            Progress::AwaitingApproval { stage } => match self.failure(views) {
                Some(failure) => self.failed(pipeline, *stage, failure, views, now_ms),
                None => Step::default(),
            },
            // Nothing of the stage may run while it is paused or stopped.
            Progress::Paused { stage } | Progress::Failed { stage, .. } => Step {
                actions: self.pauses(pipeline, *stage, views),
                ..Step::default()
            },
            Progress::RollingBack {
                stage,
                from_stage,
                failure,
            } => self.roll_back(
                pipeline,
                *stage,
                *from_stage,
                failure.clone(),
                views,
                now_ms,
            ),
            // An aborted pipeline's deployments are free: it does nothing to them any more.
            Progress::Succeeded | Progress::RolledBack { .. } | Progress::Aborted { .. } => {
                Step::default()
            }
        }
    }

    /// The state once `stage` is done and its gate open: the next stage runs, or the pipeline
    /// succeeded.
    fn after(&self, pipeline: &ReleasePipeline, stage: usize, now_ms: i64) -> Self {
        let name = &pipeline.spec.stages[stage].name;
        match pipeline.spec.stages.get(stage + 1) {
            Some(next) => self.to(
                Progress::Running { stage: stage + 1 },
                format!("stage {name} is done; stage {} starts", next.name),
                now_ms,
            ),
            None => self.to(
                Progress::Succeeded,
                format!("stage {name} is done; every stage is done"),
                now_ms,
            ),
        }
    }

    /// The deployments that roll back at `stage`: their latest stage up to `from_stage` is it.
    fn rolling_back_at<'a>(
        &'a self,
        pipeline: &'a ReleasePipeline,
        stage: usize,
        from_stage: usize,
    ) -> impl Iterator<Item = &'a str> + 'a {
        stage_deployments(pipeline, stage).filter(move |d| {
            self.started.contains(*d)
                && !(stage + 1..=from_stage)
                    .any(|later| stage_deployments(pipeline, later).any(|o| o == *d))
        })
    }

    fn roll_back(
        &self,
        pipeline: &ReleasePipeline,
        stage: usize,
        from_stage: usize,
        failure: Option<String>,
        views: &BTreeMap<String, ReleaseView>,
        now_ms: i64,
    ) -> Step {
        let mut actions = Vec::new();
        let mut waiting = Vec::new();
        for deployment in self.rolling_back_at(pipeline, stage, from_stage) {
            let (Some(from), Some(view)) = (self.from.get(deployment), views.get(deployment))
            else {
                continue;
            };
            let back = view.phase == Phase::Stable && view.current_revision == *from;
            if back {
                continue;
            }
            waiting.push(deployment.to_owned());
            if view.update_revision != *from || view.phase != Phase::RollingBack {
                actions.push(Action::Rollback {
                    deployment: deployment.to_owned(),
                    revision: from.clone(),
                });
            }
        }
        if !waiting.is_empty() {
            return Step {
                actions,
                ..Step::default()
            };
        }
        let name = &pipeline.spec.stages[stage].name;
        let next = match stage.checked_sub(1) {
            Some(earlier) => self.to(
                Progress::RollingBack {
                    stage: earlier,
                    from_stage,
                    failure,
                },
                format!(
                    "stage {name} rolled back; stage {} rolls back",
                    pipeline.spec.stages[earlier].name
                ),
                now_ms,
            ),
            None => self.to(
                Progress::RolledBack {
                    failure: failure.clone(),
                },
                match &failure {
                    Some(f) => format!("every release rolled back after: {f}"),
                    None => "every release rolled back".to_owned(),
                },
                now_ms,
            ),
        };
        Step {
            next: Some(next),
            ..Step::default()
        }
    }

    /// Carries out an operator's command. `expected_stage`, when given, must be the current stage's
    /// name, else nothing changes. Idempotent: a command whose effect is in place changes nothing.
    pub fn command(
        &self,
        pipeline: &ReleasePipeline,
        command: PipelineCommand,
        expected_stage: Option<&str>,
        views: &BTreeMap<String, ReleaseView>,
        now_ms: i64,
    ) -> Step {
        let stage_name = |s: usize| pipeline.spec.stages.get(s).map_or("", |s| s.name.as_str());
        let phase = self.progress.phase();
        if let Some(expected) = expected_stage {
            let current = self.progress.stage().map(stage_name);
            if current != Some(expected) {
                return Step::unchanged(match current {
                    Some(current) => {
                        format!("the pipeline is at stage {current}, not {expected}: nothing done")
                    }
                    None => format!("the pipeline is {phase}: nothing done"),
                });
            }
        }
        let at = |s: usize| format!("{phase} at stage {}", stage_name(s));
        match (command, &self.progress) {
            (PipelineCommand::Approve, Progress::AwaitingApproval { stage }) => {
                let next = self.after(pipeline, *stage, now_ms);
                Step {
                    message: next.message.clone(),
                    next: Some(next),
                    actions: Vec::new(),
                }
            }
            (PipelineCommand::Approve, progress) => Step::unchanged(match progress.stage() {
                Some(s) => format!("the pipeline is {}: nothing to approve", at(s)),
                None => format!("the pipeline is {phase}: nothing to approve"),
            }),
            (
                PipelineCommand::Pause,
                Progress::Running { stage } | Progress::AwaitingApproval { stage },
            ) => {
                let next = self.to(
                    Progress::Paused { stage: *stage },
                    format!("paused at stage {}", stage_name(*stage)),
                    now_ms,
                );
                Step {
                    message: next.message.clone(),
                    actions: self.pauses(pipeline, *stage, views),
                    next: Some(next),
                }
            }
            (PipelineCommand::Pause, _) => {
                Step::unchanged(format!("the pipeline is {phase}: nothing to pause"))
            }
            (
                PipelineCommand::Resume,
                Progress::Paused { stage } | Progress::Failed { stage, .. },
            ) => {
                let next = self.to(
                    Progress::Running { stage: *stage },
                    format!("resumed at stage {}", stage_name(*stage)),
                    now_ms,
                );
                let actions = stage_deployments(pipeline, *stage)
                    .filter(|d| self.started.contains(*d))
                    .filter(|d| {
                        views.get(*d).is_some_and(|v| {
                            v.phase == Phase::Paused && v.reason == Reason::PausedByOperator
                        })
                    })
                    .map(|d| Action::Resume {
                        deployment: d.to_owned(),
                    })
                    .collect();
                Step {
                    message: next.message.clone(),
                    next: Some(next),
                    actions,
                }
            }
            (PipelineCommand::Resume, _) => {
                Step::unchanged(format!("the pipeline is {phase}: nothing to resume"))
            }
            (PipelineCommand::Abort, progress) if progress.drives() => {
                let stage = progress.stage().unwrap_or(0);
                let next = self.to(
                    Progress::Aborted { stage },
                    format!(
                        "aborted at stage {}: its deployments stay where they stand",
                        stage_name(stage)
                    ),
                    now_ms,
                );
                Step {
                    message: next.message.clone(),
                    actions: self.pauses(pipeline, stage, views),
                    next: Some(next),
                }
            }
            (PipelineCommand::Abort, _) => {
                Step::unchanged(format!("the pipeline is {phase}: nothing to abort"))
            }
            (PipelineCommand::Rollback, Progress::RollingBack { .. }) => {
                Step::unchanged("the pipeline is rolling back already")
            }
            (PipelineCommand::Rollback, Progress::RolledBack { .. }) => {
                Step::unchanged("the pipeline is rolled back already")
            }
            (PipelineCommand::Rollback, progress) => {
                if !progress.drives()
                    && let Some((deployment, view)) = self.moved_on(views)
                {
                    return Step::unchanged(format!(
                        "{deployment} moves to revision {} now, not the pipeline's {}: roll it back by itself",
                        view.update_revision,
                        self.targets.get(deployment).map_or("", String::as_str)
                    ));
                }
                let top = progress
                    .stage()
                    .unwrap_or(pipeline.spec.stages.len().saturating_sub(1));
                let next = self.to(
                    Progress::RollingBack {
                        stage: top,
                        from_stage: top,
                        failure: None,
                    },
                    "rolling back every release, latest stage first",
                    now_ms,
                );
                Step {
                    message: next.message.clone(),
                    next: Some(next),
                    actions: Vec::new(),
                }
            }
        }
    }

    /// A started deployment released past the pipeline since it ended (its target is not the
    /// pipeline's any more).
    fn moved_on<'a>(
        &'a self,
        views: &'a BTreeMap<String, ReleaseView>,
    ) -> Option<(&'a String, &'a ReleaseView)> {
        self.started.iter().find_map(|d| {
            let view = views.get(d)?;
            let ours = [self.targets.get(d), self.from.get(d)];
            (!ours.contains(&Some(&view.update_revision))).then_some((d, view))
        })
    }

    /// What the pipeline waits for now, in words.
    pub fn waiting_for(
        &self,
        pipeline: &ReleasePipeline,
        views: &BTreeMap<String, ReleaseView>,
    ) -> String {
        let name = |s: usize| pipeline.spec.stages.get(s).map_or("", |s| s.name.as_str());
        let key = format!("{}/{}", pipeline.namespace(), pipeline.metadata.name);
        match &self.progress {
            Progress::Running { stage } => {
                let waiting: Vec<&str> = stage_deployments(pipeline, *stage)
                    .filter(|d| {
                        self.standing(pipeline, *stage, d, views.get(*d)) != ReleaseStanding::Done
                    })
                    .collect();
                format!("{} to finish stage {}", waiting.join(", "), name(*stage))
            }
            Progress::AwaitingApproval { stage } => format!(
                "approval: cafectl pipeline approve {} -n {} --stage {}",
                pipeline.metadata.name,
                pipeline.namespace(),
                name(*stage)
            ),
            Progress::Paused { .. } => format!("cafectl pipeline resume {key}"),
            Progress::Failed { .. } => {
                "a human: retry the failed release then resume, or roll the pipeline back"
                    .to_owned()
            }
            Progress::RollingBack {
                stage, from_stage, ..
            } => {
                let waiting: Vec<&str> = self
                    .rolling_back_at(pipeline, *stage, *from_stage)
                    .collect();
                format!("{} to roll back", waiting.join(", "))
            }
            Progress::Succeeded | Progress::RolledBack { .. } | Progress::Aborted { .. } => {
                String::new()
            }
        }
    }
}

/// The deployments `stage` releases, in order.
pub fn stage_deployments(pipeline: &ReleasePipeline, stage: usize) -> impl Iterator<Item = &str> {
    pipeline
        .spec
        .stages
        .get(stage)
        .into_iter()
        .flat_map(|s| s.releases.iter().map(|r| r.deployment.as_str()))
}
