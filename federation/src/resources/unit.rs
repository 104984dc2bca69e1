//! LogicalUnit: a cell (datacenter, zone, rack group) in one member cluster.

use super::error::{Collector, FieldErrors};
use super::meta::{API_VERSION, Metadata};
use crate::names::{
    ClusterName, RegionName, UnitName, dns1123_label_error, label_value_error, qualified_name_error,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `kind` of a logical unit document.
pub const LOGICAL_UNIT_KIND: &str = "LogicalUnit";

/// A logical unit as declared (`cafectl apply -f`) and as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogicalUnit {
    /// Always `cafe.io/v1alpha1`.
    pub api_version: String,
    /// Always `LogicalUnit`.
    pub kind: String,
    /// The unit's name; a DNS-1123 label.
    pub metadata: Metadata,
    /// What the unit is.
    pub spec: LogicalUnitSpec,
    /// Written by the hub; ignored on apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<LogicalUnitStatus>,
}

/// Where a unit is and how much it takes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LogicalUnitSpec {
    /// The region the unit belongs to, e.g. `cn-shanghai`.
    pub region: RegionName,
    /// The datacenter or availability zone, e.g. `sh-dc1`.
    pub zone: String,
    /// The member cluster whose agent serves this unit.
    pub cluster: ClusterName,
    /// When set, the cell is the subset of the cluster's nodes with these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    /// The unit's share when deployments divide replicas by weight. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// Whether a unit takes replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum UnitPhase {
    /// The unit takes its share of every deployment.
    #[default]
    Active,
    /// The unit's replicas run elsewhere (DESIGN section 8).
    Evacuated,
}

/// A unit's state, written by the hub.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogicalUnitStatus {
    /// Active or Evacuated.
    pub phase: UnitPhase,
    /// Why the unit is in this phase.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    /// When the unit entered this phase (RFC 3339).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub since: String,
    /// Evacuated with `--force`: the hub did not wait for the unit's cluster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forced: bool,
}

impl LogicalUnit {
    /// The unit's typed name. Valid once [`LogicalUnit::validate`] passed.
    pub fn name(&self) -> Result<UnitName, crate::names::InvalidName> {
        UnitName::new(self.metadata.name.clone())
    }

    /// Whether the unit was evacuated with `--force`.
    pub fn forced_away(&self) -> bool {
        self.status
            .as_ref()
            .is_some_and(|s| s.phase == UnitPhase::Evacuated && s.forced)
    }

    /// The unit's phase; Active when the hub has written no status.
    pub fn phase(&self) -> UnitPhase {
        self.status.as_ref().map(|s| s.phase).unwrap_or_default()
    }

    /// Checks what serde's types cannot: names, labels, weight.
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = Collector::default();
        if self.api_version != API_VERSION {
            errors.push("apiVersion", format!("must be {API_VERSION:?}"));
        }
        errors.check("metadata.name", dns1123_label_error(&self.metadata.name));
        if self
            .metadata
            .namespace
            .as_deref()
            .is_some_and(|ns| !ns.is_empty())
        {
            errors.push(
                "metadata.namespace",
                "LogicalUnit is cluster-scoped and takes no namespace",
            );
        }
        if self.spec.zone.is_empty() {
            errors.push("spec.zone", "must not be empty");
        }
        if self.spec.weight == 0 {
            errors.push(
                "spec.weight",
                "must be at least 1 (evacuate the unit to take its replicas away)",
            );
        }
        check_labels(&mut errors, "spec.nodeSelector", &self.spec.node_selector);
        check_labels(&mut errors, "metadata.labels", &self.metadata.labels);
        errors.finish()
    }
}

/// Checks label keys and values.
pub(crate) fn check_labels(errors: &mut Collector, path: &str, labels: &BTreeMap<String, String>) {
    for (key, value) in labels {
        errors.check(format!("{path}[{key}]"), qualified_name_error(key));
        errors.check(format!("{path}[{key}]"), label_value_error(value));
    }
}
