//! ReleasePipelines in the hub: applied and checked against the deployments and units, driven
//! after every decision (the pure machine is [`crate::pipeline`]), and commanded by operators.
//! What a pipeline does to a release is what an operator's command would do, audited as the
//! pipeline's.

use super::core::put_json;
use super::event::{Answer, Decision};
use super::records::PipelineRecord;
use super::*;
use crate::pipeline::{
    Action as PipelineAction, PipelineCommand, PipelineState, Progress, ReleaseStanding,
    ReleaseView, Step, open_groups,
};
use crate::plan::Block;
use crate::resources::{PipelineKey, ReleasePipeline};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// What `cafectl pipeline status -o json` shows (the `status` of the pipeline's document).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineStatusView {
    /// Running, AwaitingApproval, Paused, Failed, RollingBack, Succeeded, RolledBack or Aborted.
    pub phase: String,
    /// The current stage's name; empty once the pipeline has ended.
    pub stage: String,
    /// Its position (0-based).
    pub stage_index: Option<usize>,
    /// How many stages.
    pub stages: usize,
    /// The current stage's gate: None or Approval.
    pub gate: String,
    /// Closed while the stage runs, Waiting for approval, Open once passed.
    pub gate_state: String,
    /// What the pipeline waits for, in words.
    pub waiting_for: String,
    /// A readable account of the last transition.
    pub message: String,
    /// One entry per stage release, in stage order.
    pub releases: Vec<PipelineReleaseView>,
}

/// One release of a stage, as the status shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineReleaseView {
    /// The stage.
    pub stage: String,
    /// The deployment.
    pub deployment: String,
    /// The stage's regions (empty: the remaining ones).
    pub regions: Vec<String>,
    /// Pending, Releasing, Done, Failed or RolledBack.
    pub standing: ReleaseStanding,
    /// The release's phase and reason.
    pub phase: String,
    /// Why.
    pub reason: String,
    /// Its current group (0-based) and how many it has.
    pub group: usize,
    /// The deployment's groups.
    pub groups: usize,
    /// The revision the pipeline releases.
    pub revision: String,
    /// The revision from before the pipeline.
    pub from_revision: String,
}

/// The pipeline stage of each group of a plan, in order.
fn group_stages(plan: &crate::plan::Plan) -> Vec<Option<String>> {
    plan.batches.iter().map(|g| g.stage.clone()).collect()
}

/// The deployment `name` of the pipeline `key` (in its namespace).
fn member(key: &PipelineKey, name: &str) -> Option<DeploymentKey> {
    Some(DeploymentKey {
        namespace: key.namespace.clone(),
        name: crate::names::DeploymentName::new(name.to_owned()).ok()?,
    })
}

/// The blocks of `deployment`'s plan: one per stage that releases it.
fn blocks_of(pipeline: &ReleasePipeline, deployment: &str) -> Vec<Block> {
    pipeline
        .deployments()
        .remove(deployment)
        .unwrap_or_default()
        .into_iter()
        .map(|a| Block {
            stage: pipeline.spec.stages[a.stage].name.clone(),
            regions: a.regions,
        })
        .collect()
}

fn document_error(
    index: usize,
    pipeline: &ReleasePipeline,
    errors: Vec<FieldError>,
) -> DocumentError {
    DocumentError {
        index,
        subject: Some(crate::resources::Subject::new(
            crate::resources::RELEASE_PIPELINE_KIND,
            format!("{}/{}", pipeline.namespace(), pipeline.metadata.name),
        )),
        errors: FieldErrors(errors),
    }
}

impl Core {
    /// The pipelines that name the deployment.
    fn pipelines_of(
        &self,
        key: &DeploymentKey,
    ) -> impl Iterator<Item = (&PipelineKey, &PipelineRecord)> + '_ {
        let key = key.clone();
        self.pipelines
            .iter()
            .filter(move |(pkey, p)| {
                pkey.namespace == key.namespace && p.state.targets.contains_key(key.name.as_str())
            })
            .map(|(k, p)| (k, p.as_ref()))
    }

    /// The pipeline whose stages shape the deployment's plan: one that drives it, or one aborted
    /// while its release was under way (its groups keep their meaning until it settles).
    pub(super) fn holding(&self, key: &DeploymentKey) -> Option<(&PipelineKey, &PipelineRecord)> {
        let record = self.deployments.get(key)?;
        self.pipelines_of(key).find(|(_, p)| {
            p.state.progress.drives()
                || (matches!(p.state.progress, Progress::Aborted { .. })
                    && !record.release.settled()
                    && p.state.targets.get(key.name.as_str())
                        == Some(&record.release.update_revision))
        })
    }

    /// The pipeline that drives the deployment: its template is the pipeline's to change.
    pub(super) fn driving(&self, key: &DeploymentKey) -> Option<PipelineKey> {
        self.pipelines_of(key)
            .find(|(_, p)| p.state.progress.drives())
            .map(|(k, _)| k.clone())
    }

    /// The blocks of the deployment's plan while a pipeline holds it.
    pub fn plan_blocks(&self, key: &DeploymentKey) -> Vec<Block> {
        self.holding(key)
            .map(|(_, p)| blocks_of(&p.pipeline, key.name.as_str()))
            .unwrap_or_default()
    }

    /// How many of the deployment's groups may run now: all, unless a pipeline holds later ones
    /// (while it rolls back too, for the releases that have not gone back yet).
    pub(super) fn open_groups(&self, key: &DeploymentKey, plan: &crate::plan::Plan) -> usize {
        let all = plan.batches.len();
        let Some((_, pipeline)) = self.holding(key) else {
            return all;
        };
        let stage = match pipeline.state.progress {
            Progress::RollingBack { from_stage, .. } => Some(from_stage),
            ref progress => progress.stage(),
        };
        stage.map_or(all, |stage| {
            open_groups(&pipeline.pipeline, stage, &group_stages(plan))
        })
    }

    fn release_view(&self, key: &DeploymentKey) -> Option<ReleaseView> {
        let record = self.deployments.get(key)?;
        let plan = self.plan(key).and_then(Result::ok);
        let release = &record.release;
        Some(ReleaseView {
            phase: release.phase(),
            reason: release.reason(),
            group: release.batch(),
            current_revision: release.current_revision.clone(),
            update_revision: release.update_revision.clone(),
            group_stages: plan.as_ref().map(group_stages).unwrap_or_default(),
            message: release.message().to_owned(),
        })
    }

    fn pipeline_views(
        &self,
        key: &PipelineKey,
        record: &PipelineRecord,
    ) -> BTreeMap<String, ReleaseView> {
        record
            .state
            .targets
            .keys()
            .filter_map(|name| Some((name.clone(), self.release_view(&member(key, name)?)?)))
            .collect()
    }

    /// Checks a pipeline against the hub's deployments and units; returns the revision each
    /// deployment runs and the template the pipeline gives it.
    #[allow(clippy::type_complexity)]
    pub(super) fn check_pipeline(
        &self,
        pipeline: &ReleasePipeline,
        index: usize,
        applied: &[Resource],
    ) -> Result<(BTreeMap<String, String>, BTreeMap<String, PodTemplateSpec>), DocumentError> {
        let mut errors = Vec::new();
        let namespace = pipeline.namespace();
        let Ok(pkey) = pipeline.key() else {
            return Err(document_error(
                index,
                pipeline,
                vec![FieldError::new("metadata.name", "is invalid")],
            ));
        };
        if let Some(existing) = self.pipelines.get(&pkey)
            && existing.state.progress.drives()
            && existing.pipeline.spec != pipeline.spec
        {
            errors.push(FieldError::new(
                "spec",
                format!(
                    "pipeline {pkey} is {} at stage {}; its spec cannot change until it ends (abort it first)",
                    existing.state.progress,
                    existing
                        .state
                        .progress
                        .stage()
                        .and_then(|s| existing.pipeline.spec.stages.get(s))
                        .map_or("", |s| s.name.as_str())
                ),
            ));
        }
        let known_regions: BTreeSet<&crate::names::RegionName> =
            self.units.values().map(|u| &u.spec.region).collect();
        for (s, stage) in pipeline.spec.stages.iter().enumerate() {
            for (i, region) in stage.regions.iter().enumerate() {
                if !known_regions.contains(region) {
                    let known: Vec<String> =
                        known_regions.iter().map(ToString::to_string).collect();
                    errors.push(FieldError::new(
                        format!("spec.stages[{s}].regions[{i}]"),
                        format!(
                            "unknown region {region}; the hub's units are in {}",
                            known.join(", ")
                        ),
                    ));
                }
            }
        }
        let mut from = BTreeMap::new();
        let mut templates = BTreeMap::new();
        for (deployment, appearances) in pipeline.deployments() {
            let Some(first) = appearances.first() else {
                continue;
            };
            let path = format!("spec.stages[{}].releases[{}]", first.stage, first.release);
            let Some(dkey) = member(&pkey, &deployment) else {
                continue;
            };
            if applied
                .iter()
                .any(|r| matches!(r, Resource::Deployment(d) if d.key().is_ok_and(|k| k == dkey)))
            {
                errors.push(FieldError::new(
                    format!("{path}.deployment"),
                    format!("CafeDeployment {dkey} is applied in the same request; apply it first, then the pipeline"),
                ));
                continue;
            }
            let Some(record) = self.deployments.get(&dkey) else {
                errors.push(FieldError::new(
                    format!("{path}.deployment"),
                    format!("CafeDeployment {namespace}/{deployment} not found"),
                ));
                continue;
            };
            if let Some(other) = self.driving(&dkey).filter(|other| *other != pkey) {
                errors.push(FieldError::new(
                    format!("{path}.deployment"),
                    format!("CafeDeployment {dkey} is released by pipeline {other} already"),
                ));
                continue;
            }
            let fresh = self
                .pipelines
                .get(&pkey)
                .is_none_or(|p| !p.state.progress.drives());
            if fresh && !matches!(record.release.stage(), crate::release::Stage::Stable { .. }) {
                errors.push(FieldError::new(
                    format!("{path}.deployment"),
                    format!(
                        "CafeDeployment {dkey} is {} ({}): a pipeline starts from stable deployments",
                        record.release.phase(),
                        record.release.reason()
                    ),
                ));
                continue;
            }
            let Some((s, r, release)) = pipeline.target_release(&deployment) else {
                continue;
            };
            let at = format!("spec.stages[{s}].releases[{r}]");
            let mut template = record.deployment.spec.template.clone();
            if let Some(whole) = &release.template {
                template = whole.clone();
            }
            let containers: Vec<String> = template
                .spec
                .as_ref()
                .map(|p| p.containers.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default();
            for (container, image) in &release.images {
                let found = template
                    .spec
                    .as_mut()
                    .and_then(|p| p.containers.iter_mut().find(|c| c.name == *container));
                match found {
                    Some(c) => c.image = Some(image.clone()),
                    None => errors.push(FieldError::new(
                        format!("{at}.images.{container}"),
                        format!(
                            "deployment {deployment} has no container {container} (it has {})",
                            containers.join(", ")
                        ),
                    )),
                }
            }
            // The target must be a template the deployment could be applied with.
            let mut candidate = CafeDeployment::clone(&record.deployment);
            candidate.spec.template = template.clone();
            if let Err(problems) = candidate.validate() {
                for problem in problems.0 {
                    errors.push(FieldError::new(
                        problem
                            .path
                            .replacen("spec.template", &format!("{at}.template"), 1),
                        problem.message,
                    ));
                }
            }
            // Every unit of the deployment must be moved by some stage.
            if let Ok(plan) = crate::plan::plan_deployment(
                &record.deployment,
                &self.units,
                &record.last_allocation,
            ) {
                let regions: BTreeSet<&crate::names::RegionName> =
                    plan.units.iter().map(|u| &u.region).collect();
                for a in &appearances {
                    for (i, region) in a.regions.iter().enumerate() {
                        if known_regions.contains(region) && !regions.contains(region) {
                            errors.push(FieldError::new(
                                format!("spec.stages[{}].regions[{i}]", a.stage),
                                format!("deployment {deployment} has no unit in {region}"),
                            ));
                        }
                    }
                }
                if appearances.iter().all(|a| !a.regions.is_empty()) {
                    let covered: BTreeSet<&crate::names::RegionName> =
                        appearances.iter().flat_map(|a| &a.regions).collect();
                    let left: Vec<String> = regions
                        .iter()
                        .filter(|r| !covered.contains(*r))
                        .map(ToString::to_string)
                        .collect();
                    if !left.is_empty() {
                        let last = appearances.last().unwrap_or(first);
                        errors.push(FieldError::new(
                            format!("spec.stages[{}].releases[{}].deployment", last.stage, last.release),
                            format!("deployment {deployment} has units in {} that no stage releases (add a stage without regions)", left.join(", ")),
                        ));
                    }
                }
            }
            from.insert(deployment.clone(), record.release.update_revision.clone());
            templates.insert(deployment, template);
        }
        if errors.is_empty() {
            Ok((from, templates))
        } else {
            Err(document_error(index, pipeline, errors))
        }
    }

    /// Stores a checked pipeline. A pipeline that has ended and is applied with another spec starts
    /// again; one that runs keeps its state.
    pub(super) fn apply_pipeline(
        &mut self,
        mut pipeline: ReleasePipeline,
        checked: (BTreeMap<String, String>, BTreeMap<String, PodTemplateSpec>),
        dry_run: bool,
        effects: &mut Effects,
    ) -> Result<(PipelineKey, Action), HubError> {
        let now = self.now_ms;
        let key = pipeline
            .key()
            .map_err(|e| HubError::FailedPrecondition(e.0))?;
        pipeline.status = None;
        let declared = crate::resources::Metadata {
            namespace: Some(key.namespace.to_string()),
            ..pipeline.metadata.declared()
        };
        let existing = self.pipelines.get(&key);
        let action = match existing {
            None => Action::Created,
            Some(old)
                if old.pipeline.spec == pipeline.spec
                    && old.pipeline.metadata.declared() == declared =>
            {
                Action::Unchanged
            }
            Some(_) => Action::Configured,
        };
        if dry_run || action == Action::Unchanged {
            return Ok((key, action));
        }
        let restart = existing.is_none_or(|old| old.pipeline.spec != pipeline.spec);
        let old_meta = existing.map(|r| r.pipeline.metadata.clone());
        pipeline.metadata = crate::resources::Metadata {
            creation_timestamp: old_meta
                .as_ref()
                .and_then(|m| m.creation_timestamp.clone())
                .or_else(|| Some(clock::rfc3339(now))),
            generation: Some(
                old_meta.as_ref().and_then(|m| m.generation).unwrap_or(0) + i64::from(restart),
            ),
            uid: old_meta
                .as_ref()
                .and_then(|m| m.uid.clone())
                .or_else(|| Some(format!("{key}@{now}"))),
            ..declared
        };
        let (from, templates) = checked;
        let state = match existing {
            Some(old) if !restart => old.state.clone(),
            _ => {
                let targets = templates
                    .iter()
                    .map(|(d, t)| (d.clone(), crate::release::revision_name(t)))
                    .collect();
                PipelineState::new(from, targets, now)
            }
        };
        if restart {
            let first = pipeline.spec.stages.first().map(|s| s.name.clone());
            self.notices.push(super::notify::Notice::pipeline(
                &key,
                None,
                &state.progress,
                first,
                &state.message,
                clock::rfc3339(now),
            ));
        }
        let record = PipelineRecord {
            pipeline,
            state,
            templates,
        };
        effects
            .writes
            .push(put_json(Table::Pipelines, key.to_string(), &record)?);
        self.pipelines.insert(key.clone(), Arc::new(record));
        Ok((key, action))
    }

    /// Removes a pipeline that no longer drives its deployments.
    pub(super) fn delete_pipeline(
        &mut self,
        key: &PipelineKey,
        who: &str,
    ) -> Result<Decision, HubError> {
        let Some(record) = self.pipelines.get(key) else {
            return Ok(Decision::answer(Answer::Deleted(false)));
        };
        if record.state.progress.drives() {
            return Err(HubError::FailedPrecondition(format!(
                "pipeline {key} is {}; abort it (or wait for it to end) before deleting it",
                record.state.progress
            )));
        }
        // An aborted pipeline's stages still shape the plan of a release it left under way: its
        // group numbers would point elsewhere without them.
        let held: Vec<String> = record
            .state
            .targets
            .keys()
            .filter(|name| {
                member(key, name)
                    .and_then(|d| self.holding(&d).map(|(k, _)| k == key))
                    .unwrap_or(false)
            })
            .cloned()
            .collect();
        if !held.is_empty() {
            return Err(HubError::FailedPrecondition(format!(
                "pipeline {key} left the release of {} under way in its stages; roll it back or release it again before deleting the pipeline",
                held.join(", ")
            )));
        }
        self.pipelines.remove(key);
        let mut effects = Effects::default();
        effects
            .writes
            .push(Write::delete(Table::Pipelines, key.to_string()));
        self.audit(
            &mut effects,
            who,
            &format!("delete ReleasePipeline {key}"),
            "ok",
        )?;
        Ok(Decision::new(Answer::Deleted(true), effects))
    }

    /// Runs an operator's pipeline command; audited whether or not it changed anything.
    pub(super) fn pipeline_command(
        &mut self,
        key: &PipelineKey,
        command: PipelineCommand,
        expected_stage: Option<&str>,
        reason: &str,
        who: &str,
    ) -> Result<Decision, HubError> {
        let record = self
            .pipelines
            .get(key)
            .ok_or_else(|| HubError::NotFound(format!("ReleasePipeline {key}")))?;
        if let Some(stage) = expected_stage
            && record.pipeline.stage_index(stage).is_none()
        {
            let names: Vec<&str> = record
                .pipeline
                .spec
                .stages
                .iter()
                .map(|s| s.name.as_str())
                .collect();
            return Err(HubError::FailedPrecondition(format!(
                "pipeline {key} has no stage {stage} (its stages: {})",
                names.join(", ")
            )));
        }
        let views = self.pipeline_views(key, record);
        let step = record.state.command(
            &record.pipeline,
            command,
            expected_stage,
            &views,
            self.now_ms,
        );
        let what = super::core::with_reason(format!("pipeline {command} {key}"), reason);
        let message = step
            .next
            .as_ref()
            .map_or_else(|| step.message.clone(), |n| n.message.clone());
        let changed = step.changed() || !step.actions.is_empty();
        let mut effects = Effects::default();
        self.carry_out(key, step, &mut effects)?;
        let result = if changed {
            "ok".to_owned()
        } else {
            format!("no-op: {message}")
        };
        self.audit(&mut effects, who, &what, &result)?;
        Ok(Decision::new(
            Answer::Pipeline(PipelineOutcome { changed, message }),
            effects,
        ))
    }

    /// Drives every pipeline that still acts on its deployments, until none moves.
    pub(super) fn drive_pipelines(&mut self) -> Result<Effects, HubError> {
        let mut effects = Effects::default();
        let keys: Vec<PipelineKey> = self
            .pipelines
            .iter()
            .filter(|(_, p)| p.state.progress.drives())
            .map(|(k, _)| k.clone())
            .collect();
        for key in keys {
            // Each move goes at least one stage (or rollback step) on; more than this is a bug.
            let bound = self
                .pipelines
                .get(&key)
                .map_or(0, |p| 3 * p.pipeline.spec.stages.len() + 3);
            for _ in 0..bound {
                let Some(record) = self.pipelines.get(&key) else {
                    break;
                };
                let views = self.pipeline_views(&key, record);
                let step = record.state.drive(&record.pipeline, &views, self.now_ms);
                let moved = step.changed();
                if !moved && step.actions.is_empty() {
                    break;
                }
                self.carry_out(&key, step, &mut effects)?;
                if !moved {
                    break;
                }
            }
        }
        Ok(effects)
    }

    /// Makes a step's state the pipeline's and does its actions to the releases.
    fn carry_out(
        &mut self,
        key: &PipelineKey,
        step: Step,
        effects: &mut Effects,
    ) -> Result<(), HubError> {
        let Step { next, actions, .. } = step;
        if let Some(next) = next {
            self.set_pipeline(key, next, effects)?;
            // Releases holding for a stage move on a new one without waiting for a report.
            let held: Vec<String> = self
                .pipelines
                .get(key)
                .map(|p| p.state.targets.keys().cloned().collect())
                .unwrap_or_default();
            for dkey in held.iter().filter_map(|name| member(key, name)) {
                effects.merge(self.evaluate(&dkey)?);
            }
        }
        let who = format!("pipeline {key}");
        for action in actions {
            let name = match &action {
                PipelineAction::Start { deployment }
                | PipelineAction::Pause { deployment }
                | PipelineAction::Resume { deployment }
                | PipelineAction::Rollback { deployment, .. } => deployment.as_str(),
            };
            let Some(dkey) = member(key, name) else {
                continue;
            };
            match action {
                PipelineAction::Start { deployment } => {
                    let template = self
                        .pipelines
                        .get(key)
                        .and_then(|p| p.templates.get(&deployment).cloned());
                    let Some(record) = self.deployments.get(&dkey) else {
                        continue;
                    };
                    let Some(template) = template else { continue };
                    let mut changed = CafeDeployment::clone(&record.deployment);
                    changed.spec.template = template;
                    let (_, applied) = super::resources::apply_deployment(
                        self,
                        changed,
                        self.now_ms,
                        false,
                        effects,
                    )?;
                    effects.merge(self.sync_slices(&dkey)?);
                    self.audit(
                        effects,
                        &who,
                        &format!("release {dkey}"),
                        &format!("ok: template {applied}"),
                    )?;
                }
                PipelineAction::Pause { .. } => {
                    self.release_command(&dkey, ReleaseCommand::Pause, &who, effects)?;
                }
                PipelineAction::Resume { .. } => {
                    self.release_command(&dkey, ReleaseCommand::Continue, &who, effects)?;
                }
                PipelineAction::Rollback { revision, .. } => {
                    let number = self
                        .deployments
                        .get(&dkey)
                        .and_then(|r| r.release.history.get(&revision).map(|r| r.number));
                    // Never "the previous revision": asked again, it would step further back.
                    let Some(number) = number else {
                        tracing::warn!(deployment = %dkey, %revision, "cannot roll back: the revision from before the pipeline is not in the history any more");
                        continue;
                    };
                    self.release_command(
                        &dkey,
                        ReleaseCommand::Rollback {
                            to_revision: Some(number),
                        },
                        &who,
                        effects,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// A release command on the pipeline's behalf: audited when it changes the release, and
    /// logged (not audited again and again) when it cannot.
    fn release_command(
        &mut self,
        key: &DeploymentKey,
        command: ReleaseCommand,
        who: &str,
        effects: &mut Effects,
    ) -> Result<(), HubError> {
        let Some(record) = self.deployments.get(key) else {
            return Ok(());
        };
        match record.release.command(command, None, self.now_ms) {
            Ok(outcome) => {
                if let Some(next) = outcome.next {
                    self.set_release(key, next);
                    effects.merge(self.sync_slices(key)?);
                    self.write_record(key, effects)?;
                    self.audit(effects, who, &format!("{command} {key}"), "ok")?;
                }
            }
            Err(error) => {
                tracing::warn!(deployment = %key, %command, %error, "the pipeline's command on a release was refused");
            }
        }
        Ok(())
    }

    /// Makes `next` the pipeline's state: durable, audited and announced.
    fn set_pipeline(
        &mut self,
        key: &PipelineKey,
        next: PipelineState,
        effects: &mut Effects,
    ) -> Result<(), HubError> {
        let Some(record) = self.pipelines.get(key) else {
            return Ok(());
        };
        let before = record.state.progress.clone();
        let stage_name = |s: Option<usize>| {
            s.and_then(|s| record.pipeline.spec.stages.get(s))
                .map(|s| s.name.clone())
        };
        let moved = before != next.progress;
        if moved {
            let notice = super::notify::Notice::pipeline(
                key,
                Some(&before),
                &next.progress,
                stage_name(next.progress.stage()),
                &next.message,
                clock::rfc3339(self.now_ms),
            );
            self.notices.push(notice);
        }
        let record = Arc::make_mut(
            self.pipelines
                .get_mut(key)
                .ok_or_else(|| HubError::NotFound(format!("ReleasePipeline {key}")))?,
        );
        record.state = next;
        let write = put_json(Table::Pipelines, key.to_string(), &*record)?;
        let message = record.state.message.clone();
        let now = record.state.progress.to_string();
        effects.writes.push(write);
        tracing::info!(pipeline = %key, from = %before, to = %now, %message, "pipeline transition");
        if moved {
            self.audit(
                effects,
                "hub",
                &format!("pipeline {key}"),
                &format!("{before} -> {now}: {message}"),
            )?;
        }
        Ok(())
    }

    /// The pipeline's status (`cafectl pipeline status`).
    pub fn pipeline_status(&self, key: &PipelineKey) -> Option<PipelineStatusView> {
        let record = self.pipelines.get(key)?;
        let views = self.pipeline_views(key, record);
        let pipeline = &record.pipeline;
        let state = &record.state;
        let stage = state.progress.stage();
        let current = stage.and_then(|s| pipeline.spec.stages.get(s));
        let gate_state = match &state.progress {
            Progress::AwaitingApproval { .. } => "Waiting",
            progress if progress.stage().is_some() => "Closed",
            _ => "",
        };
        let mut releases = Vec::new();
        for (s, st) in pipeline.spec.stages.iter().enumerate() {
            for release in &st.releases {
                let d = release.deployment.as_str();
                let view = views.get(d);
                let standing = match stage {
                    Some(current)
                        if s > current
                            && !matches!(state.progress, Progress::RollingBack { .. }) =>
                    {
                        ReleaseStanding::Pending
                    }
                    _ => state.standing(pipeline, s, d, view),
                };
                let groups = view.map_or(0, |v| v.group_stages.len());
                releases.push(PipelineReleaseView {
                    stage: st.name.clone(),
                    deployment: d.to_owned(),
                    regions: st.regions.iter().map(ToString::to_string).collect(),
                    standing,
                    phase: view.map(|v| v.phase.to_string()).unwrap_or_default(),
                    reason: view.map(|v| v.reason.to_string()).unwrap_or_default(),
                    group: view.map_or(0, |v| v.group),
                    groups,
                    revision: state.targets.get(d).cloned().unwrap_or_default(),
                    from_revision: state.from.get(d).cloned().unwrap_or_default(),
                });
            }
        }
        Some(PipelineStatusView {
            phase: state.progress.phase().to_owned(),
            stage: current.map(|s| s.name.clone()).unwrap_or_default(),
            stage_index: stage,
            stages: pipeline.spec.stages.len(),
            gate: current
                .map_or("None", |s| match s.gate {
                    crate::resources::Gate::None => "None",
                    crate::resources::Gate::Approval => "Approval",
                })
                .to_owned(),
            gate_state: gate_state.to_owned(),
            waiting_for: state.waiting_for(pipeline, &views),
            message: state.message.clone(),
            releases,
        })
    }

    /// Every pipeline, by key.
    pub fn pipelines(&self) -> impl Iterator<Item = (&PipelineKey, &PipelineRecord)> {
        self.pipelines.iter().map(|(k, r)| (k, r.as_ref()))
    }
}

/// What a pipeline command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineOutcome {
    /// Whether it changed the pipeline or its releases.
    pub changed: bool,
    /// A readable account.
    pub message: String,
}
