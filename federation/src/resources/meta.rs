//! The parts every resource document shares.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The API group and version of every cafe-federation resource.
pub const API_VERSION: &str = "cafe.io/v1alpha1";

/// The namespace of a CafeDeployment that names none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A resource's metadata. `name` is validated by the resource that holds it; the output-only fields
/// are written by the hub and ignored when a document is applied, so that `get -o yaml` output can be
/// applied again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// The resource's name.
    #[serde(default)]
    pub name: String,
    /// The namespace (CafeDeployment only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Free-form labels; `unitSelector.matchLabels` selects units by them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Output only: bumped by the hub on every spec change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// Output only: when the hub first stored the resource (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// Output only: the hub's version of the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// Output only: the record's unique id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl Metadata {
    /// Drops the output-only fields, leaving what a user declares.
    pub fn declared(&self) -> Self {
        Self {
            generation: None,
            creation_timestamp: None,
            resource_version: None,
            uid: None,
            ..self.clone()
        }
    }
}
