//! Patch formats: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.
//!
//! Strategic merge patch follows the Kubernetes rules for the lists the simulator's clients touch:
//! lists of objects with a known merge key (containers by `name`, conditions by `type`, ...) merge item by
//! item, `finalizers` merge as a set, and `$patch: delete|replace`, `$deleteFromPrimitiveList/<field>` and
//! `$setElementOrder/<field>` directives are understood (the last one is ignored). Every other list is
//! replaced, as for a list without a patch strategy.

use serde_json::{Map, Value};

use crate::status::ApiError;

/// A patch body with its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchKind {
    /// `application/merge-patch+json`.
    Merge,
    /// `application/json-patch+json`.
    Json,
    /// `application/strategic-merge-patch+json`.
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchKind {
    /// The kind for a Content-Type header, if supported.
    pub(crate) fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/merge-patch+json" => Some(Self::Merge),
            "application/json-patch+json" => Some(Self::Json),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Applies a JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies a JSON patch; a failed `test` or a bad path is a 422.
pub(crate) fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| {
        ApiError::new(
            crate::status::Reason::Invalid,
            format!("the server rejected our request due to an error in our request: {e}"),
        )
    })
}

/// The merge key of a list field, when the list merges item by item.
pub(crate) fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "containerStatuses"
        | "initContainerStatuses" => Some("name"),
        "conditions" => Some("type"),
        "volumeMounts" => Some("mountPath"),
        "readinessGates" => Some("conditionType"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                Some("containerPort")
            } else {
                Some("port")
            }
        }
        _ => None,
    }
}

/// Whether a list of scalars merges as a set.
pub(crate) fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

const DIRECTIVE: &str = "$patch";
const DELETE_FROM_PRIMITIVE: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const RETAIN_KEYS: &str = "$retainKeys";

/// Applies a strategic merge patch.
pub(crate) fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(patch_map) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if patch_map.get(DIRECTIVE).and_then(Value::as_str) == Some("replace") {
        *target = strip_directives(patch);
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    for (key, pv) in patch_map {
        if key == DIRECTIVE || key == RETAIN_KEYS || key.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        let Some(tmap) = target.as_object_mut() else {
            return;
        };
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE) {
            if let (Some(list), Some(remove)) = (
                tmap.get_mut(field).and_then(Value::as_array_mut),
                pv.as_array(),
            ) {
                list.retain(|v| !remove.contains(v));
            }
            continue;
        }
        match pv {
            Value::Null => {
                tmap.remove(key);
            }
            Value::Object(m) if m.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") => {
                tmap.remove(key);
            }
            Value::Object(_) => {
                let child = tmap.entry(key.clone()).or_insert(Value::Null);
                strategic_merge(child, pv);
            }
            Value::Array(items) => {
                let child = tmap.entry(key.clone()).or_insert(Value::Array(Vec::new()));
                merge_list(key, child, items);
            }
            _ => {
                tmap.insert(key.clone(), pv.clone());
            }
        }
    }
}

fn merge_list(field: &str, target: &mut Value, items: &[Value]) {
    if items
        .iter()
        .any(|i| i.get(DIRECTIVE).and_then(Value::as_str) == Some("replace"))
    {
        *target = Value::Array(
            items
                .iter()
                .filter(|i| i.get(DIRECTIVE).is_none())
                .map(strip_directives)
                .collect(),
        );
        return;
    }
    if !target.is_array() {
        *target = Value::Array(Vec::new());
    }
    let Some(list) = target.as_array_mut() else {
        return;
    };
    if is_set_list(field) {
        for item in items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
        return;
    }
    let all_objects = items.iter().all(Value::is_object);
    match merge_key(field, items) {
        Some(key) if all_objects => {
            for item in items {
                let id = item.get(key);
                let pos = id.and_then(|id| list.iter().position(|t| t.get(key) == Some(id)));
                let delete = item.get(DIRECTIVE).and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(p), true) => {
                        list.remove(p);
                    }
                    (None, true) => {}
                    (Some(p), false) => strategic_merge(&mut list[p], item),
                    (None, false) => list.push(strip_directives(item)),
                }
            }
        }
        _ => *list = items.iter().map(strip_directives).collect(),
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    k.as_str() != DIRECTIVE
                        && k.as_str() != RETAIN_KEYS
                        && !k.starts_with(SET_ELEMENT_ORDER)
                        && !k.starts_with(DELETE_FROM_PRIMITIVE)
                })
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strategic_merge_merges_containers_and_conditions_by_key() {
        let mut pod = json!({
            "metadata": {"finalizers": ["a"]},
            "spec": {"containers": [
                {"name": "app", "image": "v1", "ports": [{"containerPort": 80}]},
                {"name": "side", "image": "s1"}
            ]},
            "status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "X", "status": "True"}]}
        });
        strategic_merge(
            &mut pod,
            &json!({
                "metadata": {"finalizers": ["b", "a"]},
                "spec": {"containers": [{"name": "app", "image": "v2"}]},
                "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "X", "$patch": "delete"}]}
            }),
        );
        assert_eq!(pod["spec"]["containers"][0]["image"], "v2");
        assert_eq!(
            pod["spec"]["containers"][0]["ports"][0]["containerPort"],
            80
        );
        assert_eq!(pod["spec"]["containers"][1]["image"], "s1");
        assert_eq!(
            pod["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}])
        );
        assert_eq!(pod["metadata"]["finalizers"], json!(["a", "b"]));
    }

    #[test]
    fn strategic_merge_directives() {
        let mut obj = json!({"metadata": {"finalizers": ["a", "b"], "labels": {"x": "1", "y": "2"}}, "spec": {"args": ["1", "2"]}});
        strategic_merge(
            &mut obj,
            &json!({
                "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"], "$setElementOrder/finalizers": ["b"], "labels": {"x": null}},
                "spec": {"args": ["3"]}
            }),
        );
        assert_eq!(obj["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(obj["metadata"]["labels"], json!({"y": "2"}));
        assert_eq!(obj["spec"]["args"], json!(["3"]));
    }

    #[test]
    fn json_patch_test_op_failure_is_invalid() {
        let mut obj = json!({"spec": {"replicas": 1}});
        let ok = json!([{"op": "test", "path": "/spec/replicas", "value": 1}, {"op": "replace", "path": "/spec/replicas", "value": 2}]);
        json_patch(&mut obj, &ok).unwrap();
        assert_eq!(obj["spec"]["replicas"], 2);
        let bad = json!([{"op": "test", "path": "/spec/replicas", "value": 1}]);
        assert_eq!(
            json_patch(&mut obj, &bad).unwrap_err().reason,
            crate::status::Reason::Invalid
        );
    }
}
