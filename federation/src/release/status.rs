//! The release status as `cafectl status -o json` prints it (DESIGN section 5).

use serde::{Deserialize, Serialize};

/// One deployment's release status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    /// The analysis of the current group (or of the last one analysed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<AnalysisStatusView>,
}

/// The analysis of one group, as `cafectl status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisStatusView {
    /// The group analysed.
    pub group: i32,
    /// Running, Passed, Failed or Inconclusive.
    pub phase: String,
    /// How it ended.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Oldest first.
    pub measurements: Vec<MeasurementView>,
}

/// One measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MeasurementView {
    /// The metric.
    pub metric: String,
    /// The unit; absent for `scope: Deployment`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// The value; absent when there was none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    /// Successful, Failed, Inconclusive or Error.
    pub result: String,
    /// RFC 3339.
    pub time: String,
    /// Why, for results other than Successful.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

impl AnalysisStatusView {
    /// The view of `run`.
    pub fn of(run: &super::AnalysisRun, rfc3339: impl Fn(i64) -> String) -> Self {
        Self {
            group: i32::try_from(run.group).unwrap_or(i32::MAX),
            phase: run
                .outcome
                .as_ref()
                .map_or("Running", |o| match o.result {
                    super::OutcomeResult::Passed => "Passed",
                    super::OutcomeResult::Failed => "Failed",
                    super::OutcomeResult::Inconclusive => "Inconclusive",
                })
                .to_owned(),
            message: run
                .outcome
                .as_ref()
                .map(|o| o.message.clone())
                .unwrap_or_default(),
            measurements: run
                .measurements
                .iter()
                .map(|m| MeasurementView {
                    metric: m.metric.clone(),
                    unit: m.unit.as_ref().map(ToString::to_string),
                    value: m.value,
                    result: m.result.to_string(),
                    time: rfc3339(m.time_ms),
                    message: m.message.clone(),
                })
                .collect(),
        }
    }
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
    /// Blue-green releases only: where the unit stands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenUnitView>,
}

/// One unit's part in a blue-green release.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlueGreenUnitView {
    /// Waiting (its group has not started), Previewing, PreviewReady, Switching or Switched.
    pub state: String,
    /// Pods of the new revision ready out of traffic.
    pub preview_ready: i32,
    /// Pods in traffic.
    pub serving: i32,
    /// Pods in traffic on the update revision.
    pub updated_serving: i32,
    /// Old pods kept out of traffic as the way back.
    pub standby: i32,
    /// When the last of them goes (RFC 3339); empty without any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub standby_until: String,
}
