//! The InPlaceSet custom resource (DESIGN section 3): the agent's per-unit workload.
//!
//! An InPlaceSet keeps `replicas` pods; `replicas - partition` of them run `template` (the update
//! revision), the rest `stableTemplate` (the stable revision). Pods move between templates in place
//! where only images differ, always through the lossless traffic protocol.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The readiness gate condition type used when an InPlaceSet declares none.
pub const DEFAULT_READINESS_GATE: &str = "cafe.io/traffic-ready";

/// The desired state of an InPlaceSet.
#[derive(CustomResource, Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "cafe.io",
    version = "v1alpha1",
    kind = "InPlaceSet",
    namespaced,
    status = "InPlaceSetStatus",
    shortname = "ips",
    category = "cafe",
    printcolumn = r#"{"name":"Desired","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Updated","type":"integer","jsonPath":".status.updatedReplicas"}"#,
    printcolumn = r#"{"name":"Partition","type":"integer","jsonPath":".spec.partition"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".spec.updateRevision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct InPlaceSetSpec {
    /// Pods to keep.
    pub replicas: i32,
    /// Labels that identify the set's pods; stamped on every pod it creates.
    pub selector: LabelSelector,
    /// The PodTemplateSpec pods move to (the update revision).
    #[schemars(schema_with = "preserve_unknown_object")]
    pub template: serde_json::Value,
    /// The PodTemplateSpec the `partition` pods keep (the stable revision); `template` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown_object")]
    pub stable_template: Option<serde_json::Value>,
    /// How many pods keep the stable revision. `replicas - partition` run the update revision.
    #[serde(default)]
    pub partition: i32,
    /// Pods updated (and so unavailable) at the same time; at least 1.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: i32,
    /// A ready pod counts as available after this long.
    #[serde(default)]
    pub min_ready_seconds: i32,
    /// How pods move to a new template.
    #[serde(default)]
    pub upgrade: UpgradeStrategy,
    /// Stops updates (scaling goes on).
    #[serde(default)]
    pub paused: bool,
    /// The lossless traffic protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<TrafficPolicy>,
    /// Merged into every pod's nodeSelector (the unit's cell).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The name of the update revision; a hash of `template` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// The name of the stable revision; a hash of `stableTemplate` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_revision: Option<String>,
    /// Blue-green mode: whole sets of pods of the two templates side by side, and traffic moved from
    /// one to the other in one step. `partition` is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenPolicy>,
}

/// Blue-green mode. `replicas` pods of the serving template take traffic. Before the switch
/// (`switched: false`) the stable template serves, and `preview` runs `replicas` pods of `template`
/// beside them with their gate closed. At the switch (`switched: true`) the template's pods open
/// their gates first; pods of any other revision are then drained, once the template's pods alone
/// keep `replicas - maxUnavailable` available, and kept (out of traffic, ready) for
/// `scaleDownDelaySeconds` as the way back, then removed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenPolicy {
    /// `template`'s pods serve (else `stableTemplate`'s).
    #[serde(default)]
    pub switched: bool,
    /// Before the switch: run `replicas` pods of `template` out of traffic.
    #[serde(default)]
    pub preview: bool,
    /// How long drained pods of another revision are kept ready for a switch back.
    #[serde(default)]
    pub scale_down_delay_seconds: i32,
}

fn default_max_unavailable() -> i32 {
    1
}

/// A label selector (`matchLabels` only).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels every pod carries.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// How pods move to a new template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
pub enum UpgradeStrategy {
    /// Patch the images in place when only images differ; otherwise delete and recreate.
    #[default]
    InPlace,
    /// Always delete and recreate.
    Recreate,
}

/// The traffic protocol: the gate the agent owns and the finalizers traffic components own.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficPolicy {
    /// The pod condition type used as readiness gate; `cafe.io/traffic-ready` when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_gate: Option<String>,
    /// Finalizers traffic components put on serving pods; every one must be gone before a pod is
    /// touched and back before it counts as released.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub finalizers: Vec<String>,
    /// The minimum wait after the gate goes False before a pod is touched.
    #[serde(default)]
    pub drain_seconds: i32,
}

/// The observed state of an InPlaceSet.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InPlaceSetStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default)]
    pub observed_generation: i64,
    /// Pods that exist and are not being deleted.
    #[serde(default)]
    pub replicas: i32,
    /// Pods that are Ready.
    #[serde(default)]
    pub ready_replicas: i32,
    /// Pods Ready for at least minReadySeconds.
    #[serde(default)]
    pub available_replicas: i32,
    /// Pods on the update revision.
    #[serde(default)]
    pub updated_replicas: i32,
    /// Pods on the update revision that are Ready.
    #[serde(default)]
    pub updated_ready_replicas: i32,
    /// The revision every pod ran when the set last settled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_revision: Option<String>,
    /// The revision pods move to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_revision: Option<String>,
    /// Progressing, Available, ReleaseFailed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Pods that are failing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<PodProblem>,
    /// Pods in traffic: behind an open gate and not drained, or still held by a traffic finalizer.
    #[serde(default)]
    pub serving_replicas: i32,
    /// Pods of the update revision in traffic.
    #[serde(default)]
    pub updated_serving_replicas: i32,
    /// Blue-green: pods of the update revision whose containers are ready, out of traffic.
    #[serde(default)]
    pub preview_ready_replicas: i32,
    /// Blue-green: drained pods of another revision kept for a switch back.
    #[serde(default)]
    pub standby_replicas: i32,
    /// Blue-green: when the last of them is removed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby_until: Option<String>,
}

/// A status condition, as Kubernetes writes them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Progressing, Available or ReleaseFailed.
    #[serde(rename = "type")]
    pub type_: String,
    /// True, False or Unknown.
    pub status: String,
    /// A CamelCase reason.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// A readable message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
}

/// Why one pod is not healthy.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodProblem {
    /// The pod's name.
    pub pod: String,
    /// CrashLoopBackOff, ImagePullBackOff, ErrImagePull, Unschedulable or NotReady.
    pub reason: String,
    /// A readable message.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// A schema that accepts any object: pod templates are validated by the API server when pods are
/// created, and embedding the whole PodTemplateSpec schema would make the CRD very large.
fn preserve_unknown_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// The InPlaceSet CustomResourceDefinition.
pub fn inplaceset_crd() -> CustomResourceDefinition {
    InPlaceSet::crd()
}

/// The CRD as YAML, as `cafe-agent crd` prints it and `deploy/crds/inplaceset.yaml` holds it.
pub fn inplaceset_crd_yaml() -> Result<String, serde_saphyr::ser_error::Error> {
    serde_saphyr::to_string(&inplaceset_crd())
}

impl TrafficPolicy {
    /// The readiness gate condition type.
    pub fn gate(&self) -> &str {
        match self.readiness_gate.as_deref() {
            Some(gate) if !gate.is_empty() => gate,
            _ => DEFAULT_READINESS_GATE,
        }
    }
}
