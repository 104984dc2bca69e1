//! The parts every resource document shares.

use super::error::Collector;
use crate::names::{DeploymentKey, DeploymentName, InvalidName, Namespace, dns1123_label_error};
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
    /// The namespace, `default` when none is given.
    pub fn namespace_or_default(&self) -> &str {
        match self.namespace.as_deref() {
            Some(ns) if !ns.is_empty() => ns,
            _ => DEFAULT_NAMESPACE,
        }
    }

    /// The namespace and name of a namespaced resource.
    pub fn namespaced_key(&self) -> Result<DeploymentKey, InvalidName> {
        Ok(DeploymentKey {
            namespace: Namespace::new(self.namespace_or_default())?,
            name: DeploymentName::new(self.name.clone())?,
        })
    }

    /// Checks what every namespaced document declares: its `apiVersion`, name and namespace.
    pub(super) fn check_namespaced(&self, api_version: &str, errors: &mut Collector) {
        if api_version != API_VERSION {
            errors.push("apiVersion", format!("must be {API_VERSION:?}"));
        }
        errors.check("metadata.name", dns1123_label_error(&self.name));
        if let Some(ns) = self.namespace.as_deref().filter(|ns| !ns.is_empty()) {
            errors.check("metadata.namespace", dns1123_label_error(ns));
        }
    }

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
