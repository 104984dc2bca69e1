//! The desired state of one InPlaceSet, parsed once from its spec (pure).

use crate::crd::{InPlaceSetSpec, UpgradeStrategy};
use crate::revision::{template_revision, template_shape};
use k8s_openapi::jiff::SignedDuration;
use serde_json::Value;
use std::collections::BTreeMap;

/// A spec the controller cannot act on; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// A count below zero.
    #[error("spec.{field}: must not be negative, got {value}")]
    Negative {
        /// The field.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// A template that is not a PodTemplateSpec object with containers.
    #[error("spec.{field}: {problem}")]
    Template {
        /// `template` or `stableTemplate`.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

/// One revision pods can run: its name, shape and template.
#[derive(Debug, Clone, PartialEq)]
pub struct RevisionTemplate {
    /// The revision name (the hub's, or a hash of the template).
    pub revision: String,
    /// The hash of everything but images (see [`crate::revision::template_shape`]).
    pub shape: String,
    /// Container name to image.
    pub images: BTreeMap<String, String>,
    /// The PodTemplateSpec.
    pub template: Value,
}

/// The traffic protocol the set declares, with defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Traffic {
    /// The readiness gate condition type the agent owns.
    pub gate: String,
    /// Finalizers that must be gone before a pod is touched and back before it counts as released.
    pub finalizers: Vec<String>,
    /// The minimum time between the gate going False and the pod being touched.
    pub drain: SignedDuration,
}

/// What an InPlaceSet asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    /// Pods to keep.
    pub replicas: u32,
    /// Pods that must run the update revision: `replicas - partition`, within `0..=replicas`.
    pub update_target: u32,
    /// Pods that may be unavailable at once (at least 1).
    pub max_unavailable: u32,
    /// How long a pod must be ready to count as available.
    pub min_ready: SignedDuration,
    /// Updates stopped (scaling goes on).
    pub paused: bool,
    /// How pods move between revisions.
    pub upgrade: UpgradeStrategy,
    /// The traffic protocol.
    pub traffic: Traffic,
    /// The selector's labels, stamped on every pod.
    pub selector: BTreeMap<String, String>,
    /// The unit's nodeSelector, merged into every pod's.
    pub node_selector: BTreeMap<String, String>,
    /// The revision pods move to.
    pub update: RevisionTemplate,
    /// The revision the `partition` pods keep, when the set names one (`stableTemplate`); without it
    /// partition pods keep whatever revision they run.
    pub stable: Option<RevisionTemplate>,
    /// Blue-green mode, when the set asks for it.
    pub blue_green: Option<BlueGreen>,
}

/// Blue-green mode (see [`crate::crd::BlueGreenPolicy`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlueGreen {
    /// The update revision serves (else the stable one).
    pub switched: bool,
    /// Before the switch, a full set of the update revision runs out of traffic.
    pub preview: bool,
    /// How long drained pods of another revision are kept.
    pub scale_down_delay: SignedDuration,
}

impl BlueGreen {
    /// The template that serves.
    pub fn serving(&self) -> RevisionKind {
        if self.switched {
            RevisionKind::Update
        } else {
            RevisionKind::Stable
        }
    }
}

impl Desired {
    /// Parses a spec.
    pub fn from_spec(spec: &InPlaceSetSpec) -> Result<Self, SpecError> {
        let replicas = non_negative("replicas", spec.replicas)?;
        let partition = non_negative("partition", spec.partition)?;
        let min_ready = non_negative("minReadySeconds", spec.min_ready_seconds)?;
        let traffic = spec.traffic.clone().unwrap_or_default();
        let drain = non_negative("traffic.drainSeconds", traffic.drain_seconds)?;
        let traffic = Traffic {
            gate: traffic.gate().to_string(),
            finalizers: traffic.finalizers.clone(),
            drain: SignedDuration::from_secs(i64::from(drain)),
        };
        let revision_of = |field: &'static str, template: &Value, name: Option<&String>| {
            let images = container_images(field, template)?;
            Ok::<_, SpecError>(RevisionTemplate {
                revision: name
                    .filter(|n| !n.is_empty())
                    .cloned()
                    .unwrap_or_else(|| template_revision(template)),
                shape: template_shape(template, &spec.node_selector, &traffic.gate),
                images,
                template: template.clone(),
            })
        };
        let update = revision_of("template", &spec.template, spec.update_revision.as_ref())?;
        let stable = spec
            .stable_template
            .as_ref()
            .map(|t| revision_of("stableTemplate", t, spec.stable_revision.as_ref()))
            .transpose()?;
        let blue_green = spec
            .blue_green
            .as_ref()
            .map(|bg| {
                let delay = non_negative(
                    "blueGreen.scaleDownDelaySeconds",
                    bg.scale_down_delay_seconds,
                )?;
                Ok::<_, SpecError>(BlueGreen {
                    switched: bg.switched,
                    preview: bg.preview,
                    scale_down_delay: SignedDuration::from_secs(i64::from(delay)),
                })
            })
            .transpose()?;
        Ok(Self {
            replicas,
            update_target: replicas.saturating_sub(partition),
            // maxUnavailable below 1 would stall every update; the CRD documents "at least 1".
            max_unavailable: u32::try_from(spec.max_unavailable.max(1)).unwrap_or(1),
            min_ready: SignedDuration::from_secs(i64::from(min_ready)),
            paused: spec.paused,
            upgrade: spec.upgrade,
            traffic,
            selector: spec.selector.match_labels.clone(),
            node_selector: spec.node_selector.clone(),
            update,
            stable,
            blue_green,
        })
    }

    /// The template of a revision kind.
    pub fn template(&self, kind: RevisionKind) -> &RevisionTemplate {
        match kind {
            RevisionKind::Update => &self.update,
            RevisionKind::Stable => self.stable.as_ref().unwrap_or(&self.update),
        }
    }
}

/// Which of the set's two templates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RevisionKind {
    /// `template`, the update revision.
    Update,
    /// `stableTemplate` (or `template` when absent), the stable revision.
    Stable,
}

fn non_negative(field: &'static str, value: i32) -> Result<u32, SpecError> {
    u32::try_from(value).map_err(|_| SpecError::Negative {
        field,
        value: i64::from(value),
    })
}

fn container_images(
    field: &'static str,
    template: &Value,
) -> Result<BTreeMap<String, String>, SpecError> {
    let problem = |problem: String| SpecError::Template { field, problem };
    if !template.is_object() {
        return Err(problem("must be a PodTemplateSpec object".into()));
    }
    let containers = template
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| problem("spec.containers: at least one container is required".into()))?;
    let mut images = BTreeMap::new();
    for (i, c) in containers.iter().enumerate() {
        let name = c
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        let image = c
            .get("image")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty());
        match (name, image) {
            (Some(name), Some(image)) => {
                if images.insert(name.to_string(), image.to_string()).is_some() {
                    return Err(problem(format!(
                        "spec.containers[{i}].name: duplicate name {name:?}"
                    )));
                }
            }
            (None, _) => return Err(problem(format!("spec.containers[{i}].name: required"))),
            (_, None) => return Err(problem(format!("spec.containers[{i}].image: required"))),
        }
    }
    Ok(images)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{LabelSelector, TrafficPolicy};
    use serde_json::json;

    fn spec() -> InPlaceSetSpec {
        InPlaceSetSpec {
            replicas: 4,
            selector: LabelSelector {
                match_labels: BTreeMap::from([("app".into(), "web".into())]),
            },
            template: json!({"spec": {"containers": [{"name": "app", "image": "web:2"}]}}),
            partition: 1,
            max_unavailable: 0,
            ..InPlaceSetSpec::default()
        }
    }

    #[test]
    fn defaults_and_hash_revisions() {
        let d = Desired::from_spec(&spec()).unwrap();
        assert_eq!(d.update_target, 3);
        assert_eq!(d.max_unavailable, 1);
        assert_eq!(d.traffic.gate, crate::crd::DEFAULT_READINESS_GATE);
        assert!(d.traffic.finalizers.is_empty());
        assert_eq!(d.update.revision, template_revision(&spec().template));
        assert_eq!(d.update.images["app"], "web:2");
        assert!(d.stable.is_none());
        assert_eq!(d.template(RevisionKind::Stable).revision, d.update.revision);
    }

    #[test]
    fn named_revisions_and_traffic() {
        let mut s = spec();
        s.update_revision = Some("r2".into());
        s.stable_revision = Some("r1".into());
        s.stable_template =
            Some(json!({"spec": {"containers": [{"name": "app", "image": "web:1"}]}}));
        s.partition = 9;
        s.traffic = Some(TrafficPolicy {
            readiness_gate: Some("x.io/gate".into()),
            finalizers: vec!["lb".into()],
            drain_seconds: 2,
        });
        let d = Desired::from_spec(&s).unwrap();
        assert_eq!(d.update_target, 0);
        assert_eq!(d.update.revision, "r2");
        assert_eq!(d.template(RevisionKind::Stable).revision, "r1");
        assert_eq!(d.update.shape, d.template(RevisionKind::Stable).shape);
        assert_eq!(d.traffic.drain, SignedDuration::from_secs(2));
        assert_eq!(d.traffic.gate, "x.io/gate");
    }

    #[test]
    fn bad_specs_name_the_field() {
        let mut s = spec();
        s.replicas = -1;
        assert_eq!(
            Desired::from_spec(&s).unwrap_err().to_string(),
            "spec.replicas: must not be negative, got -1"
        );
        let mut s = spec();
        s.template = json!({"spec": {"containers": [{"name": "app"}]}});
        assert_eq!(
            Desired::from_spec(&s).unwrap_err().to_string(),
            "spec.template: spec.containers[0].image: required"
        );
        let mut s = spec();
        s.stable_template = Some(json!("nope"));
        assert!(
            Desired::from_spec(&s)
                .unwrap_err()
                .to_string()
                .starts_with("spec.stableTemplate:")
        );
    }
}
