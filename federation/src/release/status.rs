//! The release status as `cafectl status -o json` prints it (DESIGN section 5).

use serde::{Deserialize, Serialize};

/// One deployment's release status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatusView {
    /// The deployment's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Stable, Progressing, Paused, Failed or RollingBack.
    pub phase: String,
    /// A CamelCase reason.
    pub reason: String,
    /// The current group.
    pub batch: i32,
    /// How many groups the release has.
    pub batches: i32,
    /// The revision every unit ran when last stable.
    pub current_revision: String,
    /// The revision units move to.
    pub update_revision: String,
    /// A readable account.
    pub message: String,
    /// Per unit.
    pub units: Vec<UnitStatusView>,
}

/// One unit's part of the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnitStatusView {
    /// The unit.
    pub unit: String,
    /// Its cluster.
    pub cluster: String,
    /// Whether the cluster's agent is connected.
    pub connected: bool,
    /// Planned replicas.
    pub replicas: i32,
    /// Ready pods.
    pub ready: i32,
    /// Pods on the update revision.
    pub updated: i32,
    /// Ready pods on the update revision.
    pub updated_ready: i32,
    /// Pods that must run the update revision in the current group.
    pub target: i32,
    /// Whether the unit is evacuated.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub evacuated: bool,
    /// Failing pods the agent reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}
