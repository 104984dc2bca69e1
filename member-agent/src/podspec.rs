//! Pods made from an InPlaceSet's templates (pure).

use crate::desired::{Desired, RevisionKind};
use crate::names::{REVISION_LABEL, SET_LABEL, SHAPE_ANNOTATION};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Map, Value, json};

/// The set a pod belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// The set's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its uid.
    pub uid: String,
}

/// A template that does not make a valid pod.
#[derive(Debug, thiserror::Error)]
#[error("spec.template does not make a valid pod: {source}")]
pub struct PodBuildError {
    #[source]
    source: serde_json::Error,
}

/// The pod to create for a revision: `generateName: {set}-`, the template's labels plus the
/// selector's, `cafe.io/inplaceset` and `cafe.io/revision`, the shape annotation, the unit's
/// nodeSelector, the readiness gate, and the set as controlling owner.
pub fn build_pod(
    owner: &Owner,
    desired: &Desired,
    kind: RevisionKind,
) -> Result<Pod, PodBuildError> {
    let template = desired.template(kind);
    let mut metadata = template
        .template
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut labels = object(metadata.get("labels"));
    for (k, v) in &desired.selector {
        labels.insert(k.clone(), json!(v));
    }
    labels.insert(SET_LABEL.into(), json!(owner.name));
    labels.insert(REVISION_LABEL.into(), json!(template.revision));
    let mut annotations = object(metadata.get("annotations"));
    annotations.insert(SHAPE_ANNOTATION.into(), json!(template.shape));
    for key in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "ownerReferences",
        "finalizers",
    ] {
        metadata.remove(key);
    }
    metadata.insert("generateName".into(), json!(format!("{}-", owner.name)));
    metadata.insert("namespace".into(), json!(owner.namespace));
    metadata.insert("labels".into(), Value::Object(labels));
    metadata.insert("annotations".into(), Value::Object(annotations));
    metadata.insert(
        "ownerReferences".into(),
        json!([{
            "apiVersion": "cafe.io/v1alpha1",
            "kind": "InPlaceSet",
            "name": owner.name,
            "uid": owner.uid,
            "controller": true,
            "blockOwnerDeletion": true,
        }]),
    );
    let mut spec = template
        .template
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut node_selector = object(spec.get("nodeSelector"));
    for (k, v) in &desired.node_selector {
        node_selector.insert(k.clone(), json!(v));
    }
    if !node_selector.is_empty() {
        spec.insert("nodeSelector".into(), Value::Object(node_selector));
    }
    let mut gates: Vec<Value> = spec
        .get("readinessGates")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if !gates
        .iter()
        .any(|g| g["conditionType"] == desired.traffic.gate.as_str())
    {
        gates.push(json!({"conditionType": desired.traffic.gate}));
    }
    spec.insert("readinessGates".into(), Value::Array(gates));
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec});
    serde_json::from_value(pod).map_err(|source| PodBuildError { source })
}

fn object(value: Option<&Value>) -> Map<String, Value> {
    value
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{InPlaceSetSpec, LabelSelector};
    use std::collections::BTreeMap;

    #[test]
    fn pods_carry_labels_selector_gate_and_owner() {
        let d = Desired::from_spec(&InPlaceSetSpec {
            replicas: 1,
            selector: LabelSelector { match_labels: BTreeMap::from([("app".into(), "web".into())]) },
            template: json!({"metadata": {"labels": {"tier": "front"}, "name": "ignored"},
                "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "app", "image": "web:2"}]}}),
            node_selector: BTreeMap::from([("topology.kubernetes.io/zone".into(), "az1".into())]),
            update_revision: Some("r2".into()),
            ..InPlaceSetSpec::default()
        })
        .unwrap();
        let owner = Owner {
            name: "web".into(),
            namespace: "shop".into(),
            uid: "u-1".into(),
        };
        let pod = build_pod(&owner, &d, RevisionKind::Update).unwrap();
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["generateName"], "web-");
        assert!(v["metadata"].get("name").is_none());
        assert_eq!(v["metadata"]["namespace"], "shop");
        assert_eq!(
            v["metadata"]["labels"],
            json!({"app": "web", "tier": "front", "cafe.io/inplaceset": "web", "cafe.io/revision": "r2"})
        );
        assert_eq!(
            v["metadata"]["annotations"]["cafe.io/template-shape"],
            d.update.shape
        );
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "u-1");
        assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            v["spec"]["nodeSelector"],
            json!({"disk": "ssd", "topology.kubernetes.io/zone": "az1"})
        );
        assert_eq!(
            v["spec"]["readinessGates"],
            json!([{"conditionType": "cafe.io/traffic-ready"}])
        );
    }
}
