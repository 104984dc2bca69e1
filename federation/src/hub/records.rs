//! What the hub keeps in its store, as JSON records.

use crate::names::UnitName;
use crate::pipeline::PipelineState;
use crate::release::ReleaseState;
use crate::resources::{CafeDeployment, ReleasePipeline};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// A deployment with its release state: one record, so one commit moves both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentRecord {
    /// The deployment as applied, with the hub's metadata (generation, creation time, uid). Shared:
    /// copying the record to change its release leaves the spec where it is.
    pub deployment: Arc<CafeDeployment>,
    /// Its release.
    pub release: ReleaseState,
    /// Set while replicas move between units (evacuation, failback): since when, in ms. Units giving
    /// replicas away keep them until the units taking them run them ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebalancing_since_ms: Option<i64>,
    /// The last allocation as if no unit were evacuated: the "current replicas" of the next plan's
    /// remainder rule. Taken from the plan rather than from running pods, so that replicas moved by an
    /// evacuation do not pull the remainder towards the survivors.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_allocation: BTreeMap<UnitName, i32>,
    /// When each of `status.conditions[]` last changed status (see [`super::conditions`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub condition_times: BTreeMap<String, super::conditions::Transition>,
}

/// A pipeline with its state: one record, so one commit moves both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRecord {
    /// The pipeline as applied, with the hub's metadata.
    pub pipeline: ReleasePipeline,
    /// Where it stands.
    pub state: PipelineState,
    /// Per deployment, the template it releases (the deployment's, with the stage's images).
    pub templates: BTreeMap<String, PodTemplateSpec>,
}

/// The last slice the hub decided for one unit: enough to keep generations across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SliceRecord {
    /// The cluster it belongs to.
    pub cluster: String,
    /// Its generation.
    pub generation: u64,
    /// A digest of its content.
    pub hash: String,
    /// Its replicas, so that a hub restarted in the middle of a failover move still holds the
    /// replicas a unit must keep until the new capacity is ready.
    #[serde(default)]
    pub replicas: Option<i32>,
}

/// One audited command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// RFC 3339.
    pub time: String,
    /// The caller's identity, or `hub` for automatic actions.
    pub who: String,
    /// The command.
    pub what: String,
    /// `ok`, `no-op: ...` or `error: ...`.
    pub result: String,
}

/// The meta-table key of the token of the hub that writes the store. Each hub writes its own when it
/// loads, and conditions every later commit on it: once another hub has loaded the store, the first
/// one's commits fail instead of overwriting the other's.
pub const WRITER_KEY: &str = "writer";

/// The meta-table key of the next slice generation.
pub const NEXT_GENERATION_KEY: &str = "nextGeneration";

/// The audit key of sequence number `seq`: zero-padded so keys sort by number.
pub fn audit_key(seq: u64) -> String {
    format!("{seq:020}")
}
