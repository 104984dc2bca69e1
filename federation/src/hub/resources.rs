//! Resources and release commands: apply, delete, and pause / continue / retry / rollback, as
//! decisions of the model (see [`super::event`]).

use super::core::put_json;
use super::event::{Answer, Decision};
use super::*;
use crate::resources::Subject;

impl Core {
    /// Validates and stores documents; all or nothing.
    pub(super) fn apply(
        &mut self,
        resources: Vec<Resource>,
        who: &str,
        dry_run: bool,
    ) -> Result<Decision, HubError> {
        let core = self;
        let now = core.now_ms;
        {
            // Check everything against the units as they will be after this apply.
            let mut units = core.units().clone();
            for resource in &resources {
                if let Resource::Unit(unit) = resource
                    && let Ok(name) = unit.name()
                {
                    let mut unit = (**unit).clone();
                    unit.status = units.get(&name).and_then(|u| u.status.clone());
                    units.insert(name, unit);
                }
            }
            let mut failures = Vec::new();
            for (i, resource) in resources.iter().enumerate() {
                if let Resource::Deployment(d) = resource
                    && let Err(errors) = crate::plan::plan_deployment(d, &units, &BTreeMap::new())
                {
                    failures.push(DocumentError {
                        index: i + 1,
                        subject: Some(subject(resource)),
                        errors,
                    });
                }
            }
            for (i, resource) in resources.iter().enumerate() {
                let Resource::Unit(unit) = resource else {
                    continue;
                };
                let Ok(name) = unit.name() else { continue };
                if let Some(old) = core.units.get(&name)
                    && old.spec.cluster != unit.spec.cluster
                    && !core.deployments_using(&name).is_empty()
                {
                    failures.push(DocumentError {
                        index: i + 1,
                        subject: Some(subject(resource)),
                        errors: FieldErrors(vec![FieldError::new(
                            "spec.cluster",
                            format!("cannot move unit {name} from cluster {} while deployments use it; evacuate it first", old.spec.cluster),
                        )]),
                    });
                }
            }
            // Changed units must not leave a stored deployment that no longer plans (a selector that
            // selects nothing, a region missing from a Sequential order).
            if let Some(first_unit) = resources
                .iter()
                .position(|r| matches!(r, Resource::Unit(_)))
            {
                let replaced: Vec<String> = resources
                    .iter()
                    .filter(|r| matches!(r, Resource::Deployment(_)))
                    .map(Resource::display_name)
                    .collect();
                for (key, record) in &core.deployments {
                    if replaced.contains(&key.to_string()) {
                        continue;
                    }
                    if let Err(errors) = crate::plan::plan_deployment(
                        &record.deployment,
                        &units,
                        &record.last_allocation,
                    ) {
                        failures.push(DocumentError {
                            index: first_unit + 1,
                            subject: Some(subject(&resources[first_unit])),
                            errors: FieldErrors(vec![FieldError::new(
                                "spec",
                                format!("this change would leave CafeDeployment {key} without a plan: {errors}"),
                            )]),
                        });
                    }
                }
            }
            // While a pipeline drives a deployment, its template is the pipeline's.
            for (i, resource) in resources.iter().enumerate() {
                let Resource::Deployment(d) = resource else {
                    continue;
                };
                let Ok(key) = d.key() else { continue };
                let Some(pipeline) = core.driving(&key) else {
                    continue;
                };
                let changed = core
                    .deployments
                    .get(&key)
                    .is_some_and(|r| r.deployment.spec.template != d.spec.template);
                if changed {
                    failures.push(DocumentError {
                        index: i + 1,
                        subject: Some(subject(resource)),
                        errors: FieldErrors(vec![FieldError::new(
                            "spec.template",
                            format!(
                                "CafeDeployment {key} is released by pipeline {pipeline}: its template changes through the pipeline (pause, rollback and failover still act; abort the pipeline to release it directly)"
                            ),
                        )]),
                    });
                }
            }
            let mut checked_pipelines = BTreeMap::new();
            for (i, resource) in resources.iter().enumerate() {
                if let Resource::Pipeline(p) = resource {
                    match core.check_pipeline(p, i + 1, &resources) {
                        Ok(checked) => {
                            checked_pipelines.insert(i, checked);
                        }
                        Err(error) => failures.push(error),
                    }
                }
            }
            if !failures.is_empty() {
                return Err(HubError::Invalid(failures));
            }
            let mut results = Vec::new();
            let mut effects = Effects::default();
            let mut touched_units = Vec::new();
            let mut touched_deployments = Vec::new();
            for (i, resource) in resources.into_iter().enumerate() {
                match resource {
                    Resource::Pipeline(pipeline) => {
                        let checked = checked_pipelines.remove(&i).unwrap_or_default();
                        let (key, action) =
                            core.apply_pipeline(*pipeline, checked, dry_run, &mut effects)?;
                        results.push(Applied {
                            kind: Kind::ReleasePipeline,
                            namespace: key.namespace.to_string(),
                            name: key.name.to_string(),
                            action,
                        });
                    }
                    Resource::Unit(unit) => {
                        let (name, action) = apply_unit(core, *unit, now, dry_run, &mut effects)?;
                        results.push(Applied {
                            kind: Kind::LogicalUnit,
                            namespace: String::new(),
                            name: name.to_string(),
                            action,
                        });
                        if action != Action::Unchanged {
                            touched_units.push(name);
                        }
                    }
                    Resource::Deployment(deployment) => {
                        let (key, action) =
                            apply_deployment(core, *deployment, now, dry_run, &mut effects)?;
                        results.push(Applied {
                            kind: Kind::CafeDeployment,
                            namespace: key.namespace.to_string(),
                            name: key.name.to_string(),
                            action,
                        });
                        if action != Action::Unchanged {
                            touched_deployments.push(key);
                        }
                    }
                }
            }
            if dry_run {
                return Ok(Decision::answer(Answer::Applied(results)));
            }
            for unit in &touched_units {
                touched_deployments.extend(core.deployments_using(unit));
            }
            touched_deployments.sort();
            touched_deployments.dedup();
            for key in &touched_deployments {
                effects.merge(core.sync_slices(key)?);
            }
            let summary: Vec<String> = results
                .iter()
                .map(|r| format!("{} {} {}", r.action, r.kind, r.name))
                .collect();
            core.audit(
                &mut effects,
                who,
                &format!("apply {}", summary.join(", ")),
                "ok",
            )?;
            Ok(Decision::new(Answer::Applied(results), effects))
        }
    }

    /// Removes a unit or a deployment. Idempotent: returns false when it did not exist.
    pub(super) fn delete_unit(&mut self, name: &UnitName, who: &str) -> Result<Decision, HubError> {
        let core = self;
        {
            if !core.units().contains_key(name) {
                return Ok(Decision::answer(Answer::Deleted(false)));
            }
            let users = core.deployments_using(name);
            if !users.is_empty() {
                let users: Vec<String> = users.iter().map(ToString::to_string).collect();
                return Err(HubError::FailedPrecondition(format!(
                    "unit {name} is used by {}; remove it from their topology first",
                    users.join(", ")
                )));
            }
            core.units_mut().remove(name);
            let mut effects = Effects::default();
            effects
                .writes
                .push(Write::delete(Table::Units, name.to_string()));
            core.audit(
                &mut effects,
                who,
                &format!("delete LogicalUnit {name}"),
                "ok",
            )?;
            Ok(Decision::new(Answer::Deleted(true), effects))
        }
    }

    /// Removes a deployment; its slices are withdrawn from the agents, which drain and remove the pods.
    pub(super) fn delete_deployment(
        &mut self,
        key: &DeploymentKey,
        who: &str,
    ) -> Result<Decision, HubError> {
        if let Some(pipeline) = self.driving(key) {
            return Err(HubError::FailedPrecondition(format!(
                "CafeDeployment {key} is released by pipeline {pipeline}; abort the pipeline before deleting it"
            )));
        }
        if self.deployments.remove(key).is_none() {
            return Ok(Decision::answer(Answer::Deleted(false)));
        }
        self.release_clocks.remove(key);
        let mut effects = self.sync_slices(key)?;
        effects
            .writes
            .push(Write::delete(Table::Deployments, key.to_string()));
        self.audit(
            &mut effects,
            who,
            &format!("delete CafeDeployment {key}"),
            "ok",
        )?;
        Ok(Decision::new(Answer::Deleted(true), effects))
    }

    /// Runs a release command. A refused command is audited too: its decision carries the error
    /// and the audit record.
    pub(super) fn command(
        &mut self,
        key: &DeploymentKey,
        command: ReleaseCommand,
        expected_batch: Option<usize>,
        reason: &str,
        who: &str,
    ) -> Result<Decision, HubError> {
        let now = self.now_ms;
        let record = self
            .deployments
            .get(key)
            .ok_or_else(|| HubError::NotFound(format!("CafeDeployment {key}")))?;
        let what = super::core::with_reason(format!("{command} {key}"), reason);
        let mut effects = Effects::default();
        let outcome = match record.release.command(command, expected_batch, now) {
            Ok(outcome) => outcome,
            Err(error) => {
                self.audit(&mut effects, who, &what, &format!("error: {error}"))?;
                return Ok(Decision {
                    answer: Err(error.into()),
                    effects,
                });
            }
        };
        if let Some(next) = &outcome.next {
            self.set_release(key, next.clone());
            effects.merge(self.sync_slices(key)?);
            self.write_record(key, &mut effects)?;
        }
        let result = if outcome.changed() {
            "ok".to_owned()
        } else {
            format!("no-op: {}", outcome.message)
        };
        self.audit(&mut effects, who, &what, &result)?;
        Ok(Decision::new(Answer::Command(Box::new(outcome)), effects))
    }
}

/// What a parsed document is.
fn subject(resource: &Resource) -> Subject {
    Subject::new(resource.kind(), resource.display_name())
}

fn apply_unit(
    core: &mut Core,
    mut unit: LogicalUnit,
    now: i64,
    dry_run: bool,
    effects: &mut Effects,
) -> Result<(UnitName, Action), HubError> {
    let name = unit.name().map_err(|e| HubError::FailedPrecondition(e.0))?;
    let existing = core.units().get(&name);
    unit.status = existing
        .and_then(|u| u.status.clone())
        .or_else(|| Some(Default::default()));
    let action = match existing {
        None => Action::Created,
        Some(old) if old.spec == unit.spec && old.metadata.labels == unit.metadata.labels => {
            Action::Unchanged
        }
        Some(_) => Action::Configured,
    };
    let metadata = existing.map(|u| u.metadata.clone());
    unit.metadata = crate::resources::Metadata {
        creation_timestamp: metadata
            .as_ref()
            .and_then(|m| m.creation_timestamp.clone())
            .or_else(|| Some(clock::rfc3339(now))),
        generation: Some(
            metadata.as_ref().and_then(|m| m.generation).unwrap_or(0)
                + i64::from(action != Action::Unchanged),
        ),
        ..unit.metadata.declared()
    };
    if dry_run || action == Action::Unchanged {
        return Ok((name, action));
    }
    effects
        .writes
        .push(put_json(Table::Units, name.to_string(), &unit)?);
    core.units_mut().insert(name.clone(), unit);
    Ok((name, action))
}

pub(super) fn apply_deployment(
    core: &mut Core,
    mut deployment: CafeDeployment,
    now: i64,
    dry_run: bool,
    effects: &mut Effects,
) -> Result<(DeploymentKey, Action), HubError> {
    let key = deployment
        .key()
        .map_err(|e| HubError::FailedPrecondition(e.0))?;
    deployment.status = None;
    let declared = crate::resources::Metadata {
        namespace: Some(key.namespace.to_string()),
        ..deployment.metadata.declared()
    };
    let existing = core.deployments.get(&key);
    let action = match existing {
        None => Action::Created,
        Some(old)
            if old.deployment.spec == deployment.spec
                && old.deployment.metadata.declared() == declared =>
        {
            Action::Unchanged
        }
        Some(_) => Action::Configured,
    };
    if dry_run || action == Action::Unchanged {
        return Ok((key, action));
    }
    let old_meta = existing.map(|r| r.deployment.metadata.clone());
    let spec_changed = existing.is_none_or(|r| r.deployment.spec != deployment.spec);
    deployment.metadata = crate::resources::Metadata {
        creation_timestamp: old_meta
            .as_ref()
            .and_then(|m| m.creation_timestamp.clone())
            .or_else(|| Some(clock::rfc3339(now))),
        generation: Some(
            old_meta.as_ref().and_then(|m| m.generation).unwrap_or(0) + i64::from(spec_changed),
        ),
        uid: old_meta
            .as_ref()
            .and_then(|m| m.uid.clone())
            .or_else(|| Some(format!("{key}@{now}"))),
        ..declared
    };
    let release = match existing {
        Some(record) => match record.release.on_template(&deployment.spec.template, now) {
            Some(next) => {
                core.release_clocks
                    .insert(key.clone(), crate::release::WaitClock::started(now));
                next
            }
            None => record.release.clone(),
        },
        None => ReleaseState::new(&deployment.spec.template, now),
    };
    let rebalancing_since_ms = core
        .deployments
        .get(&key)
        .and_then(|r| r.rebalancing_since_ms);
    let last_allocation = core
        .deployments
        .get(&key)
        .map(|r| r.last_allocation.clone())
        .unwrap_or_default();
    let mut condition_times = core
        .deployments
        .get(&key)
        .map(|r| r.condition_times.clone())
        .unwrap_or_default();
    Core::note_release_conditions(&mut condition_times, &release, now);
    if let Some(before) = core.deployments.get(&key) {
        let notices =
            super::notify::release_notices(&key, &before.release, &release, &clock::rfc3339(now));
        core.notices.extend(notices);
    }
    let record = DeploymentRecord {
        deployment: Arc::new(deployment),
        release,
        rebalancing_since_ms,
        last_allocation,
        condition_times,
    };
    effects
        .writes
        .push(put_json(Table::Deployments, key.to_string(), &record)?);
    core.deployments.insert(key.clone(), Arc::new(record));
    Ok((key, action))
}
