//! Resources and release commands: apply, delete, and pause / continue / retry / rollback.

use super::*;

impl Hub {
    // ---- resources ----

    /// Validates and stores documents; all or nothing.
    pub fn apply(
        &self,
        resources: Vec<Resource>,
        who: &str,
        dry_run: bool,
    ) -> Result<Vec<Applied>, HubError> {
        self.mutate(|core, now| {
            // Check everything against the units as they will be after this apply.
            let mut units = core.units.clone();
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
                    failures.push(DocumentError { index: i + 1, what: Some(format!("CafeDeployment {}", resource.display_name())), errors });
                }
            }
            for (i, resource) in resources.iter().enumerate() {
                let Resource::Unit(unit) = resource else { continue };
                let Ok(name) = unit.name() else { continue };
                if let Some(old) = core.units.get(&name)
                    && old.spec.cluster != unit.spec.cluster
                    && !core.deployments_using(&name).is_empty()
                {
                    failures.push(DocumentError {
                        index: i + 1,
                        what: Some(format!("LogicalUnit {name}")),
                        errors: FieldErrors(vec![FieldError::new(
                            "spec.cluster",
                            format!("cannot move unit {name} from cluster {} while deployments use it; evacuate it first", old.spec.cluster),
                        )]),
                    });
                }
            }
            // Changed units must not leave a stored deployment that no longer plans (a selector that
            // selects nothing, a region missing from a Sequential order).
            if let Some(first_unit) = resources.iter().position(|r| matches!(r, Resource::Unit(_))) {
                let replaced: Vec<String> = resources
                    .iter()
                    .filter(|r| matches!(r, Resource::Deployment(_)))
                    .map(Resource::display_name)
                    .collect();
                for (key, record) in &core.deployments {
                    if replaced.contains(&key.to_string()) {
                        continue;
                    }
                    if let Err(errors) = crate::plan::plan_deployment(&record.deployment, &units, &record.last_allocation) {
                        failures.push(DocumentError {
                            index: first_unit + 1,
                            what: Some(format!("{} {}", resources[first_unit].kind(), resources[first_unit].display_name())),
                            errors: FieldErrors(vec![FieldError::new(
                                "spec",
                                format!("this change would leave CafeDeployment {key} without a plan: {errors}"),
                            )]),
                        });
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
            for resource in resources {
                match resource {
                    Resource::Unit(unit) => {
                        let (name, action) = apply_unit(core, *unit, now, dry_run, &mut effects)?;
                        results.push(Applied { kind: "LogicalUnit", namespace: String::new(), name: name.to_string(), action });
                        if action != "unchanged" {
                            touched_units.push(name);
                        }
                    }
                    Resource::Deployment(deployment) => {
                        let (key, action) = apply_deployment(core, *deployment, now, dry_run, &mut effects)?;
                        results.push(Applied {
                            kind: "CafeDeployment",
                            namespace: key.namespace.to_string(),
                            name: key.name.to_string(),
                            action,
                        });
                        if action != "unchanged" {
                            touched_deployments.push(key);
                        }
                    }
                }
            }
            if dry_run {
                return Ok((results, Effects::default()));
            }
            for unit in &touched_units {
                touched_deployments.extend(core.deployments_using(unit));
            }
            touched_deployments.sort();
            touched_deployments.dedup();
            for key in &touched_deployments {
                effects.merge(core.sync_slices(key));
            }
            let summary: Vec<String> = results.iter().map(|r| format!("{} {} {}", r.action, r.kind, r.name)).collect();
            core.audit(&mut effects, now, who, &format!("apply {}", summary.join(", ")), "ok");
            Ok((results, effects))
        })
    }

    /// Removes a unit or a deployment. Idempotent: returns false when it did not exist.
    pub fn delete_unit(&self, name: &UnitName, who: &str) -> Result<bool, HubError> {
        self.mutate(|core, now| {
            if !core.units.contains_key(name) {
                return Ok((false, Effects::default()));
            }
            let users = core.deployments_using(name);
            if !users.is_empty() {
                let users: Vec<String> = users.iter().map(ToString::to_string).collect();
                return Err(HubError::FailedPrecondition(format!(
                    "unit {name} is used by {}; remove it from their topology first",
                    users.join(", ")
                )));
            }
            core.units.remove(name);
            let mut effects = Effects::default();
            effects
                .writes
                .push(Write::delete(Table::Units, name.to_string()));
            core.audit(
                &mut effects,
                now,
                who,
                &format!("delete LogicalUnit {name}"),
                "ok",
            );
            Ok((true, effects))
        })
    }

    /// Removes a deployment; its slices are withdrawn from the agents, which drain and remove the pods.
    pub fn delete_deployment(&self, key: &DeploymentKey, who: &str) -> Result<bool, HubError> {
        self.mutate(|core, now| {
            if core.deployments.remove(key).is_none() {
                return Ok((false, Effects::default()));
            }
            let mut effects = core.sync_slices(key);
            effects
                .writes
                .push(Write::delete(Table::Deployments, key.to_string()));
            core.audit(
                &mut effects,
                now,
                who,
                &format!("delete CafeDeployment {key}"),
                "ok",
            );
            Ok((true, effects))
        })
    }

    /// Runs a release command.
    pub fn command(
        &self,
        key: &DeploymentKey,
        command: ReleaseCommand,
        expected_batch: Option<usize>,
        who: &str,
    ) -> Result<CommandOutcome, HubError> {
        self.mutate(|core, now| {
            let record = core
                .deployments
                .get_mut(key)
                .ok_or_else(|| HubError::NotFound(format!("CafeDeployment {key}")))?;
            let outcome = match record.release.command(command, expected_batch, now) {
                Ok(outcome) => outcome,
                Err(error) => {
                    // Refused commands are audited too, in their own commit.
                    let mut effects = Effects::default();
                    core.audit(
                        &mut effects,
                        now,
                        who,
                        &format!("{command} {key}"),
                        &format!("error: {error}"),
                    );
                    let _ = self.inner.store.commit(&effects.writes);
                    return Err(error.into());
                }
            };
            let mut effects = Effects::default();
            if let Some(template) = &outcome.restore_template {
                record.deployment.spec.template = template.clone();
                record.deployment.metadata.generation =
                    Some(record.deployment.metadata.generation.unwrap_or(1) + 1);
            }
            if outcome.changed {
                effects.merge(core.sync_slices(key));
                if let Some(write) = core.record_write(key) {
                    effects.writes.push(write);
                }
            }
            let result = if outcome.changed {
                "ok".to_owned()
            } else {
                format!("no-op: {}", outcome.message)
            };
            core.audit(&mut effects, now, who, &format!("{command} {key}"), &result);
            Ok((outcome, effects))
        })
    }
}

fn apply_unit(
    core: &mut Core,
    mut unit: LogicalUnit,
    now: i64,
    dry_run: bool,
    effects: &mut Effects,
) -> Result<(UnitName, &'static str), HubError> {
    let name = unit.name().map_err(|e| HubError::FailedPrecondition(e.0))?;
    let existing = core.units.get(&name);
    unit.status = existing
        .and_then(|u| u.status.clone())
        .or_else(|| Some(Default::default()));
    let action = match existing {
        None => "created",
        Some(old) if old.spec == unit.spec && old.metadata.labels == unit.metadata.labels => {
            "unchanged"
        }
        Some(_) => "configured",
    };
    let metadata = existing.map(|u| u.metadata.clone());
    unit.metadata = crate::resources::Metadata {
        creation_timestamp: metadata
            .as_ref()
            .and_then(|m| m.creation_timestamp.clone())
            .or_else(|| Some(clock::rfc3339(now))),
        generation: Some(
            metadata.as_ref().and_then(|m| m.generation).unwrap_or(0)
                + i64::from(action != "unchanged"),
        ),
        ..unit.metadata.declared()
    };
    if dry_run || action == "unchanged" {
        return Ok((name, action));
    }
    effects
        .writes
        .push(Write::put(Table::Units, name.to_string(), to_json(&unit)));
    core.units.insert(name.clone(), unit);
    Ok((name, action))
}

fn apply_deployment(
    core: &mut Core,
    mut deployment: CafeDeployment,
    now: i64,
    dry_run: bool,
    effects: &mut Effects,
) -> Result<(DeploymentKey, &'static str), HubError> {
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
        None => "created",
        Some(old)
            if old.deployment.spec == deployment.spec
                && old.deployment.metadata.declared() == declared =>
        {
            "unchanged"
        }
        Some(_) => "configured",
    };
    if dry_run || action == "unchanged" {
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
        Some(record) => {
            let mut release = record.release.clone();
            release.on_template(&deployment.spec.template, now);
            release
        }
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
    let record = DeploymentRecord {
        deployment,
        release,
        rebalancing_since_ms,
        last_allocation,
    };
    effects.writes.push(Write::put(
        Table::Deployments,
        key.to_string(),
        to_json(&record),
    ));
    core.deployments.insert(key.clone(), record);
    Ok((key, action))
}
