//! The resource types a cluster serves: the built-in ones and those added by CustomResourceDefinitions.

use std::collections::BTreeMap;

use serde_json::Value;

/// Identifies a resource type independently of its version: (group, plural).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ResourceId {
    /// API group; empty for core/v1.
    pub(crate) group: String,
    /// Plural resource name, e.g. `pods`.
    pub(crate) plural: String,
}

impl ResourceId {
    /// Builds an id.
    pub(crate) fn new(group: &str, plural: &str) -> Self {
        Self {
            group: group.to_string(),
            plural: plural.to_string(),
        }
    }
}

/// Built-in kinds with behaviour of their own; everything else is generic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    /// No special behaviour.
    Generic,
    /// core/v1 pods: defaulting, immutability, graceful deletion, kubelet.
    Pod,
    /// core/v1 namespaces: phase and content deletion.
    Namespace,
    /// core/v1 services: cluster IP allocation.
    Service,
    /// apiextensions.k8s.io/v1 CRDs: serving new resources.
    Crd,
}

/// How `metadata.generation` is maintained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Generation {
    /// The kind has no generation.
    None,
    /// Bumped when anything but `metadata` and `status` changes.
    Spec,
    /// Bumped when anything but `metadata` changes (custom resources without a status subresource).
    AllButMetadata,
}

/// One served resource type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ResourceType {
    /// Group and plural.
    pub(crate) id: ResourceId,
    /// Served versions, storage version first.
    pub(crate) versions: Vec<String>,
    /// `Kind`.
    pub(crate) kind: String,
    /// Lowercase singular name.
    pub(crate) singular: String,
    /// Whether objects live in namespaces.
    pub(crate) namespaced: bool,
    /// kubectl short names.
    pub(crate) short_names: Vec<String>,
    /// Whether `/status` is a subresource (then main writes ignore `status`).
    pub(crate) status_subresource: bool,
    /// Generation rule.
    pub(crate) generation: Generation,
    /// Special behaviour.
    pub(crate) special: Special,
    /// Whether the kind is a custom resource (no strategic merge patch).
    pub(crate) custom: bool,
    /// Categories (`all` makes `kubectl get all` include it).
    pub(crate) categories: Vec<String>,
}

impl ResourceType {
    /// `group/version` or `version` for core.
    pub(crate) fn api_version(&self, version: &str) -> String {
        if self.id.group.is_empty() {
            version.to_string()
        } else {
            format!("{}/{version}", self.id.group)
        }
    }

    /// The storage (first) version.
    pub(crate) fn storage_version(&self) -> &str {
        self.versions.first().map_or("v1", String::as_str)
    }

    /// Whether `version` is served.
    pub(crate) fn serves(&self, version: &str) -> bool {
        self.versions.iter().any(|v| v == version)
    }
}

#[allow(clippy::too_many_arguments)]
fn builtin(
    group: &str,
    version: &str,
    plural: &str,
    kind: &str,
    namespaced: bool,
    short_names: &[&str],
    status_subresource: bool,
    generation: Generation,
    special: Special,
) -> ResourceType {
    ResourceType {
        id: ResourceId::new(group, plural),
        versions: vec![version.to_string()],
        kind: kind.to_string(),
        singular: kind.to_lowercase(),
        namespaced,
        short_names: short_names.iter().map(|s| s.to_string()).collect(),
        status_subresource,
        generation,
        special,
        custom: false,
        categories: Vec::new(),
    }
}

/// The set of served resource types.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    types: BTreeMap<ResourceId, ResourceType>,
}

impl Registry {
    /// The built-in types.
    pub(crate) fn builtin() -> Self {
        use Generation as G;
        use Special as S;
        let mut pods = builtin(
            "",
            "v1",
            "pods",
            "Pod",
            true,
            &["po"],
            true,
            G::Spec,
            S::Pod,
        );
        pods.categories = vec!["all".into()];
        let mut services = builtin(
            "",
            "v1",
            "services",
            "Service",
            true,
            &["svc"],
            true,
            G::None,
            S::Service,
        );
        services.categories = vec!["all".into()];
        let types = [
            builtin(
                "",
                "v1",
                "namespaces",
                "Namespace",
                false,
                &["ns"],
                true,
                G::None,
                S::Namespace,
            ),
            pods,
            builtin(
                "",
                "v1",
                "nodes",
                "Node",
                false,
                &["no"],
                true,
                G::None,
                S::Generic,
            ),
            builtin(
                "",
                "v1",
                "events",
                "Event",
                true,
                &["ev"],
                false,
                G::None,
                S::Generic,
            ),
            services,
            builtin(
                "",
                "v1",
                "configmaps",
                "ConfigMap",
                true,
                &["cm"],
                false,
                G::None,
                S::Generic,
            ),
            builtin(
                "coordination.k8s.io",
                "v1",
                "leases",
                "Lease",
                true,
                &[],
                false,
                G::None,
                S::Generic,
            ),
            builtin(
                "events.k8s.io",
                "v1",
                "events",
                "Event",
                true,
                &["ev"],
                false,
                G::None,
                S::Generic,
            ),
            builtin(
                "apiextensions.k8s.io",
                "v1",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
                &["crd", "crds"],
                true,
                G::Spec,
                S::Crd,
            ),
        ];
        Self {
            types: types.into_iter().map(|t| (t.id.clone(), t)).collect(),
        }
    }

    /// The type for (group, plural), if served.
    pub(crate) fn get(&self, id: &ResourceId) -> Option<&ResourceType> {
        self.types.get(id)
    }

    /// The type for (group, version, plural), if that version is served.
    pub(crate) fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .get(&ResourceId::new(group, plural))
            .filter(|t| t.serves(version))
    }

    /// All types, sorted by group and plural.
    pub(crate) fn all(&self) -> impl Iterator<Item = &ResourceType> {
        self.types.values()
    }

    /// Adds or replaces a type.
    pub(crate) fn insert(&mut self, t: ResourceType) {
        self.types.insert(t.id.clone(), t);
    }

    /// Removes a type.
    pub(crate) fn remove(&mut self, id: &ResourceId) -> Option<ResourceType> {
        self.types.remove(id)
    }

    /// Groups with their versions, core excluded, in discovery order.
    pub(crate) fn groups(&self) -> BTreeMap<String, Vec<String>> {
        let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for t in self.types.values().filter(|t| !t.id.group.is_empty()) {
            let versions = groups.entry(t.id.group.clone()).or_default();
            for v in &t.versions {
                if !versions.contains(v) {
                    versions.push(v.clone());
                }
            }
        }
        groups
    }
}

/// The resource type a CustomResourceDefinition object describes, or why it cannot be served.
pub(crate) fn crd_resource_type(crd: &Value) -> Result<ResourceType, String> {
    let spec = crd.get("spec").ok_or("spec: Required value")?;
    let group = str_at(spec, &["group"]).ok_or("spec.group: Required value")?;
    let names = spec.get("names").ok_or("spec.names: Required value")?;
    let plural = str_at(names, &["plural"]).ok_or("spec.names.plural: Required value")?;
    let kind = str_at(names, &["kind"]).ok_or("spec.names.kind: Required value")?;
    let expected_name = format!("{plural}.{group}");
    let name = str_at(crd, &["metadata", "name"]).unwrap_or_default();
    if name != expected_name {
        return Err(format!(
            "metadata.name: Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"
        ));
    }
    let scope = str_at(spec, &["scope"]).unwrap_or("Namespaced");
    let namespaced = match scope {
        "Namespaced" => true,
        "Cluster" => false,
        other => {
            return Err(format!(
                "spec.scope: Unsupported value: \"{other}\": supported values: \"Cluster\", \"Namespaced\""
            ));
        }
    };
    let versions = spec
        .get("versions")
        .and_then(Value::as_array)
        .filter(|v| !v.is_empty())
        .ok_or("spec.versions: Required value")?;
    let mut served = Vec::new();
    let mut status_subresource = false;
    for v in versions {
        let vname = str_at(v, &["name"]).ok_or("spec.versions[].name: Required value")?;
        if v.get("served").and_then(Value::as_bool).unwrap_or(false) {
            let storage = v.get("storage").and_then(Value::as_bool).unwrap_or(false);
            if storage {
                served.insert(0, vname.to_string());
            } else {
                served.push(vname.to_string());
            }
        }
        if v.pointer("/subresources/status").is_some() {
            status_subresource = true;
        }
    }
    let strings = |key: &str| -> Vec<String> {
        names
            .get(key)
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    Ok(ResourceType {
        id: ResourceId::new(group, plural),
        versions: served,
        kind: kind.to_string(),
        singular: str_at(names, &["singular"]).map_or_else(|| kind.to_lowercase(), str::to_string),
        namespaced,
        short_names: strings("shortNames"),
        status_subresource,
        generation: if status_subresource {
            Generation::Spec
        } else {
            Generation::AllButMetadata
        },
        special: Special::Generic,
        custom: true,
        categories: strings("categories"),
    })
}

/// The string at a path of object keys.
pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    cur.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crd_becomes_a_resource_type() {
        let crd = json!({
            "metadata": {"name": "widgets.example.io"},
            "spec": {
                "group": "example.io",
                "scope": "Cluster",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false},
                    {"name": "v1", "served": true, "storage": true, "subresources": {"status": {}}}
                ]
            }
        });
        let t = crd_resource_type(&crd).unwrap();
        assert_eq!(t.id, ResourceId::new("example.io", "widgets"));
        assert_eq!(t.versions, vec!["v1", "v1beta1"]);
        assert!(!t.namespaced);
        assert!(t.status_subresource);
        assert_eq!(t.generation, Generation::Spec);
        assert_eq!(t.short_names, vec!["wd"]);
        assert_eq!(t.singular, "widget");
    }

    #[test]
    fn crd_name_must_match_plural_and_group() {
        let crd = json!({
            "metadata": {"name": "wrong"},
            "spec": {"group": "example.io", "names": {"plural": "widgets", "kind": "Widget"},
                     "versions": [{"name": "v1", "served": true, "storage": true}]}
        });
        assert!(
            crd_resource_type(&crd)
                .unwrap_err()
                .contains("metadata.name")
        );
    }
}
