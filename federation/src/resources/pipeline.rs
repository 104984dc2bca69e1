//! ReleasePipeline: a change that spans several CafeDeployments, released stage by stage.
//!
//! What a pipeline document can be checked for on its own is checked here; what needs the hub's
//! deployments and units (that the deployments exist, that the regions and containers do) is checked
//! by the hub when it is applied.

use super::error::{Collector, FieldErrors};
use super::meta::Metadata;
use crate::names::{DeploymentKey, InvalidName, RegionName, dns1123_label_error};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The `kind` of a pipeline document.
pub const RELEASE_PIPELINE_KIND: &str = "ReleasePipeline";

/// A pipeline's namespace and name (the same form as a deployment's).
pub type PipelineKey = DeploymentKey;

/// A ReleasePipeline as declared and as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReleasePipeline {
    /// Always `cafe.io/v1alpha1`.
    pub api_version: String,
    /// Always `ReleasePipeline`.
    pub kind: String,
    /// Name and namespace (default `default`); the deployments are in the same namespace.
    pub metadata: Metadata,
    /// The stages.
    pub spec: PipelineSpec,
    /// Written by the hub; ignored on apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// The declared pipeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineSpec {
    /// Released in order, one at a time.
    pub stages: Vec<PipelineStage>,
    /// What a failed release does to the pipeline.
    #[serde(default)]
    pub on_failure: PipelineOnFailure,
}

/// One stage: releases that run together.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PipelineStage {
    /// Unique in the pipeline; `--stage` names it.
    pub name: String,
    /// The deployments this stage releases.
    pub releases: Vec<StageRelease>,
    /// Only these regions' units move in this stage; empty: every unit no earlier stage moved.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionName>,
    /// What opens the way to the next stage once this one is done.
    #[serde(default)]
    pub gate: Gate,
}

/// One deployment's release in a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StageRelease {
    /// A CafeDeployment in the pipeline's namespace.
    pub deployment: String,
    /// Container name to image: the deployment's template with these images is the target.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub images: BTreeMap<String, String>,
    /// Instead of `images`: the whole target template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<PodTemplateSpec>,
}

impl StageRelease {
    /// Whether this entry says what the deployment's target is (else it takes the earlier stage's).
    pub fn changes(&self) -> bool {
        !self.images.is_empty() || self.template.is_some()
    }
}

/// What opens the way to the next stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Gate {
    /// The next stage starts as soon as this one is done.
    #[default]
    None,
    /// The next stage waits for `cafectl pipeline approve`.
    Approval,
}

/// What a failed release does to the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PipelineOnFailure {
    /// Every release of the pipeline goes back to its revision from before the pipeline, latest
    /// stage first.
    #[default]
    RollbackAll,
    /// The pipeline stops where it is, for a human to decide.
    Stop,
}

/// Where a deployment appears in a pipeline: the stages that release it, in order, each with the
/// regions it moves (empty: the remaining ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appearance {
    /// The stage's index.
    pub stage: usize,
    /// The release's index in the stage.
    pub release: usize,
    /// The stage's regions.
    pub regions: Vec<RegionName>,
}

impl ReleasePipeline {
    /// Its namespace and name.
    pub fn key(&self) -> Result<PipelineKey, InvalidName> {
        self.metadata.namespaced_key()
    }

    /// The namespace, `default` when none is given.
    pub fn namespace(&self) -> &str {
        self.metadata.namespace_or_default()
    }

    /// The stage named `name`.
    pub fn stage_index(&self, name: &str) -> Option<usize> {
        self.spec.stages.iter().position(|s| s.name == name)
    }

    /// The deployments the pipeline releases, each with its appearances in stage order.
    pub fn deployments(&self) -> BTreeMap<String, Vec<Appearance>> {
        let mut out: BTreeMap<String, Vec<Appearance>> = BTreeMap::new();
        for (s, stage) in self.spec.stages.iter().enumerate() {
            for (r, release) in stage.releases.iter().enumerate() {
                out.entry(release.deployment.clone())
                    .or_default()
                    .push(Appearance {
                        stage: s,
                        release: r,
                        regions: stage.regions.clone(),
                    });
            }
        }
        out
    }

    /// The entry that sets `deployment`'s target (its first appearance).
    pub fn target_release(&self, deployment: &str) -> Option<(usize, usize, &StageRelease)> {
        self.spec.stages.iter().enumerate().find_map(|(s, stage)| {
            stage
                .releases
                .iter()
                .enumerate()
                .find(|(_, r)| r.deployment == deployment)
                .map(|(r, release)| (s, r, release))
        })
    }

    /// Checks everything that needs no other resource.
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = Collector::default();
        self.metadata
            .check_namespaced(&self.api_version, &mut errors);
        if self.spec.stages.is_empty() {
            errors.push("spec.stages", "needs at least one stage");
        }
        let mut names = BTreeSet::new();
        for (s, stage) in self.spec.stages.iter().enumerate() {
            let at = format!("spec.stages[{s}]");
            errors.check(format!("{at}.name"), dns1123_label_error(&stage.name));
            if !names.insert(stage.name.as_str()) {
                errors.push(
                    format!("{at}.name"),
                    format!("stage {:?} is named twice", stage.name),
                );
            }
            if stage.releases.is_empty() {
                errors.push(format!("{at}.releases"), "needs at least one release");
            }
            let mut regions = BTreeSet::new();
            for (i, region) in stage.regions.iter().enumerate() {
                if !regions.insert(region) {
                    errors.push(
                        format!("{at}.regions[{i}]"),
                        format!("region {region} is listed twice"),
                    );
                }
            }
            let mut in_stage = BTreeSet::new();
            for (r, release) in stage.releases.iter().enumerate() {
                let path = format!("{at}.releases[{r}]");
                errors.check(
                    format!("{path}.deployment"),
                    dns1123_label_error(&release.deployment),
                );
                if !in_stage.insert(release.deployment.as_str()) {
                    errors.push(
                        format!("{path}.deployment"),
                        format!(
                            "deployment {} is released twice in stage {}",
                            release.deployment, stage.name
                        ),
                    );
                }
                if !release.images.is_empty() && release.template.is_some() {
                    errors.push(
                        format!("{path}.template"),
                        "give images or template, not both",
                    );
                }
                for (container, image) in &release.images {
                    if image.trim().is_empty() {
                        errors.push(
                            format!("{path}.images.{container}"),
                            "the image must not be empty",
                        );
                    }
                }
            }
        }
        self.check_appearances(&mut errors);
        errors.finish()
    }

    /// A deployment may appear in several stages only to move other regions each time: the
    /// stages' regions must not overlap, only the last may name none (the remaining regions), and
    /// only the first may say what the target is.
    fn check_appearances(&self, errors: &mut Collector) {
        for (deployment, appearances) in self.deployments() {
            let mut taken: BTreeMap<&RegionName, usize> = BTreeMap::new();
            for (i, appearance) in appearances.iter().enumerate() {
                let stage = &self.spec.stages[appearance.stage];
                let path = format!(
                    "spec.stages[{}].releases[{}].deployment",
                    appearance.stage, appearance.release
                );
                let Some(first) = appearances.first() else {
                    continue;
                };
                if i == 0 {
                    let release = &stage.releases[appearance.release];
                    if !release.changes() {
                        errors.push(
                            path.replace(".deployment", ".images"),
                            format!(
                                "the first stage that releases {deployment} must give its images or template"
                            ),
                        );
                    }
                } else {
                    let release = &stage.releases[appearance.release];
                    let first_release = &self.spec.stages[first.stage].releases[first.release];
                    if release.changes()
                        && (release.images != first_release.images
                            || release.template != first_release.template)
                    {
                        errors.push(
                            path.replace(".deployment", ".images"),
                            format!(
                                "{deployment} is released to another target in stage {}; a later stage moves more regions to the same target (leave images and template out)",
                                self.spec.stages[first.stage].name
                            ),
                        );
                    }
                    let previous = &appearances[i - 1];
                    if previous.regions.is_empty() {
                        errors.push(
                            path.clone(),
                            format!(
                                "deployment {deployment} is already released in every region by stage {}",
                                self.spec.stages[previous.stage].name
                            ),
                        );
                        continue;
                    }
                }
                for region in &appearance.regions {
                    if let Some(&other) = taken.get(region) {
                        errors.push(
                            path.clone(),
                            format!(
                                "deployment {deployment} is already released in {region} by stage {}",
                                self.spec.stages[other].name
                            ),
                        );
                    } else {
                        taken.insert(region, appearance.stage);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests fail loudly on unexpected errors.
mod tests {
    use super::*;

    fn pipeline(yaml: &str) -> ReleasePipeline {
        serde_saphyr::from_str(yaml).unwrap()
    }

    const HEAD: &str = "apiVersion: cafe.io/v1alpha1\nkind: ReleasePipeline\nmetadata: {name: q4, namespace: finance}\n";

    #[test]
    fn a_deployment_moves_each_region_once_and_to_one_target() {
        let ok = pipeline(&format!(
            "{HEAD}spec:\n  stages:\n  - name: hz\n    regions: [cn-hangzhou]\n    gate: Approval\n    releases:\n    - {{deployment: ledger, images: {{app: l:2}}}}\n  - name: rest\n    releases: [{{deployment: ledger}}]\n"
        ));
        ok.validate().unwrap();
        let appearances = ok.deployments();
        assert_eq!(appearances["ledger"].len(), 2);

        let twice = pipeline(&format!(
            "{HEAD}spec:\n  stages:\n  - name: a\n    releases: [{{deployment: ledger, images: {{app: l:2}}}}]\n  - name: b\n    releases: [{{deployment: ledger}}]\n"
        ));
        let errors = twice.validate().unwrap_err().to_string();
        assert!(
            errors.contains("spec.stages[1].releases[0].deployment")
                && errors.contains("already released in every region by stage a"),
            "{errors}"
        );

        let overlap = pipeline(&format!(
            "{HEAD}spec:\n  stages:\n  - name: a\n    regions: [cn-hangzhou]\n    releases: [{{deployment: ledger, images: {{app: l:2}}}}]\n  - name: b\n    regions: [cn-hangzhou]\n    releases: [{{deployment: ledger}}]\n"
        ));
        let errors = overlap.validate().unwrap_err().to_string();
        assert!(
            errors.contains("spec.stages[1].releases[0].deployment")
                && errors.contains("already released in cn-hangzhou by stage a"),
            "{errors}"
        );

        let other_target = pipeline(&format!(
            "{HEAD}spec:\n  stages:\n  - name: a\n    regions: [cn-hangzhou]\n    releases: [{{deployment: ledger, images: {{app: l:2}}}}]\n  - name: b\n    releases: [{{deployment: ledger, images: {{app: l:3}}}}]\n"
        ));
        let errors = other_target.validate().unwrap_err().to_string();
        assert!(
            errors.contains("spec.stages[1].releases[0].images"),
            "{errors}"
        );

        let no_target = pipeline(&format!(
            "{HEAD}spec:\n  stages:\n  - name: a\n    releases: [{{deployment: ledger}}, {{deployment: ledger, images: {{app: x}}}}]\n"
        ));
        let errors = no_target.validate().unwrap_err().to_string();
        assert!(
            errors.contains("spec.stages[0].releases[0].images")
                && errors.contains("released twice in stage a"),
            "{errors}"
        );
    }
}
