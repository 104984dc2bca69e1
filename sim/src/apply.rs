//! Simplified server-side apply.
//!
//! The applied configuration is merged into the live object with strategic-merge rules (lists with a
//! merge key merge item by item, `finalizers` as a set, other lists are replaced). Each `Apply` manager's
//! field set is kept in `metadata.managedFields` in the real `FieldsV1` format (`f:`, `k:`, `v:` keys).
//! A field the manager applied before and omits now is removed unless another apply manager owns it.
//! Setting a field to a different value than another apply manager owns is a 409 Conflict unless
//! `force=true`, which moves ownership. Writes other than apply (update, patch) do not record ownership.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::patch::{is_set_list, merge_key, strategic_merge};
use crate::status::{ApiError, Reason};

/// One field path in `FieldsV1` notation, e.g. `["f:spec", "f:containers", "k:{\"name\":\"app\"}", "f:image"]`.
type FieldPath = Vec<String>;
/// A manager's owned fields.
type FieldSet = BTreeSet<FieldPath>;

/// Who applies, and how.
#[derive(Debug, Clone)]
pub(crate) struct ApplyOptions<'a> {
    /// `fieldManager`.
    pub(crate) manager: &'a str,
    /// `force`.
    pub(crate) force: bool,
    /// The request's apiVersion, recorded in the managed fields entry.
    pub(crate) api_version: &'a str,
    /// The time recorded in the managed fields entry.
    pub(crate) now: &'a str,
}

/// Metadata fields the server owns; never part of a manager's field set.
const SERVER_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Merges `applied` into `live` (or into an empty object when creating) and updates managed fields.
pub(crate) fn apply(
    live: Option<&Value>,
    applied: &Value,
    opts: &ApplyOptions<'_>,
) -> Result<Value, ApiError> {
    let mut new_set = FieldSet::new();
    collect(applied, None, &mut Vec::new(), &mut new_set, true);

    let live_value = live.cloned().unwrap_or_else(|| json!({}));
    let entries = live_value
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut apply_sets: BTreeMap<String, FieldSet> = BTreeMap::new();
    let mut kept_entries = Vec::new();
    for entry in entries {
        let manager = entry.get("manager").and_then(Value::as_str).unwrap_or("");
        let operation = entry.get("operation").and_then(Value::as_str).unwrap_or("");
        if operation == "Apply" {
            let mut set = FieldSet::new();
            if let Some(tree) = entry.get("fieldsV1") {
                from_tree(tree, &mut Vec::new(), &mut set);
            }
            apply_sets.insert(manager.to_string(), set);
        } else {
            kept_entries.push(entry);
        }
    }
    let old_set = apply_sets.remove(opts.manager).unwrap_or_default();

    let mut conflicts = Vec::new();
    for (other, set) in apply_sets.iter_mut() {
        let overlapping: Vec<FieldPath> = set
            .iter()
            .filter(|p| new_set.contains(*p))
            .filter(|p| resolve(&live_value, p) != resolve(applied, p))
            .cloned()
            .collect();
        for path in overlapping {
            if opts.force {
                set.remove(&path);
            } else {
                conflicts.push((other.clone(), path));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflict_error(&conflicts));
    }

    let mut result = live_value.clone();
    strategic_merge(&mut result, &without_server_metadata(applied));

    let others: FieldSet = apply_sets.values().flatten().cloned().collect();
    let mut stale: Vec<&FieldPath> = old_set
        .iter()
        .filter(|p| !new_set.contains(*p) && !others.contains(*p))
        .collect();
    stale.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for path in stale {
        remove(&mut result, path);
    }

    let mut managed = kept_entries;
    for (manager, set) in &apply_sets {
        if !set.is_empty() {
            managed.push(entry(manager, set, opts));
        }
    }
    managed.push(entry(opts.manager, &new_set, opts));
    if let Some(meta) = result
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    {
        meta.insert("managedFields".into(), Value::Array(managed));
    }
    Ok(result)
}

fn entry(manager: &str, set: &FieldSet, opts: &ApplyOptions<'_>) -> Value {
    json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": opts.api_version,
        "time": opts.now,
        "fieldsType": "FieldsV1",
        "fieldsV1": to_tree(set),
    })
}

fn without_server_metadata(applied: &Value) -> Value {
    let mut v = applied.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in SERVER_METADATA {
            if *key != "name" && *key != "namespace" {
                meta.remove(*key);
            }
        }
    }
    v
}

fn conflict_error(conflicts: &[(String, FieldPath)]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(m, p)| {
            json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": dotted(p)})
        })
        .collect();
    let list: Vec<String> = conflicts
        .iter()
        .map(|(m, p)| format!("conflict with \"{m}\": {}", dotted(p)))
        .collect();
    let mut err = ApiError::new(
        Reason::Conflict,
        format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            list.join("\n")
        ),
    );
    err.details = Some(json!({"causes": causes}));
    err
}

fn dotted(path: &FieldPath) -> String {
    path.iter()
        .map(|e| match e.strip_prefix("f:") {
            Some(f) => format!(".{f}"),
            None => format!("[{}]", &e[2..]),
        })
        .collect()
}

fn collect(v: &Value, field: Option<&str>, prefix: &mut FieldPath, out: &mut FieldSet, top: bool) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                if top && (k == "apiVersion" || k == "kind") {
                    continue;
                }
                if prefix.len() == 1
                    && prefix[0] == "f:metadata"
                    && SERVER_METADATA.contains(&k.as_str())
                {
                    continue;
                }
                prefix.push(format!("f:{k}"));
                collect(child, Some(k), prefix, out, false);
                prefix.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let field = field.unwrap_or("");
            let key = merge_key(field, items).filter(|k| items.iter().all(|i| i.get(*k).is_some()));
            if let Some(key) = key {
                for item in items {
                    let mut id = Map::new();
                    if let Some(kv) = item.get(key) {
                        id.insert(key.to_string(), kv.clone());
                    }
                    prefix.push(format!("k:{}", Value::Object(id)));
                    out.insert(prefix.clone());
                    collect(item, None, prefix, out, false);
                    prefix.pop();
                }
            } else if is_set_list(field) {
                for item in items {
                    prefix.push(format!("v:{item}"));
                    out.insert(prefix.clone());
                    prefix.pop();
                }
            } else {
                out.insert(prefix.clone());
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

fn to_tree(set: &FieldSet) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for elem in path {
            let child = node.entry(elem.clone()).or_insert_with(|| json!({}));
            node = crate::store::meta::ensure_object(child);
        }
        if path.last().is_some_and(|e| e.starts_with("k:")) {
            node.insert(".".into(), json!({}));
        }
    }
    Value::Object(root)
}

fn from_tree(tree: &Value, prefix: &mut FieldPath, out: &mut FieldSet) {
    let Some(m) = tree.as_object() else {
        return;
    };
    if (m.is_empty() || m.contains_key(".")) && !prefix.is_empty() {
        out.insert(prefix.clone());
    }
    for (k, child) in m {
        if k == "." {
            continue;
        }
        prefix.push(k.clone());
        from_tree(child, prefix, out);
        prefix.pop();
    }
}

fn item_matches(item: &Value, elem: &str) -> bool {
    if let Some(key) = elem.strip_prefix("k:") {
        let Ok(Value::Object(id)) = serde_json::from_str::<Value>(key) else {
            return false;
        };
        id.iter().all(|(k, v)| item.get(k) == Some(v))
    } else if let Some(raw) = elem.strip_prefix("v:") {
        serde_json::from_str::<Value>(raw).is_ok_and(|v| &v == item)
    } else {
        false
    }
}

fn step<'a>(v: &'a Value, elem: &str) -> Option<&'a Value> {
    match elem.strip_prefix("f:") {
        Some(f) => v.get(f),
        None => v.as_array()?.iter().find(|i| item_matches(i, elem)),
    }
}

fn resolve<'a>(v: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, elem| step(cur, elem))
}

fn remove(v: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for elem in parents {
        let next = match elem.strip_prefix("f:") {
            Some(f) => cur.get_mut(f),
            None => cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| item_matches(i, elem))),
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match last.strip_prefix("f:") {
        Some(f) => {
            if let Some(o) = cur.as_object_mut() {
                o.remove(f);
            }
        }
        None => {
            if let Some(a) = cur.as_array_mut() {
                a.retain(|i| !item_matches(i, last));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(manager: &str, force: bool) -> ApplyOptions<'_> {
        ApplyOptions {
            manager,
            force,
            api_version: "v1",
            now: "2024-01-01T00:00:00Z",
        }
    }

    #[test]
    fn apply_merges_and_removes_fields_the_manager_dropped() {
        let first = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1", "b": "2"}}, "data": {"x": "1"}});
        let live = apply(None, &first, &opts("m", false)).unwrap();
        assert_eq!(live["metadata"]["labels"]["b"], "2");
        let second = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "1"}}, "data": {"x": "2"}});
        let live = apply(Some(&live), &second, &opts("m", false)).unwrap();
        assert_eq!(live["metadata"]["labels"], json!({"a": "1"}));
        assert_eq!(live["data"]["x"], "2");
        let managed = live["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(managed.len(), 1);
        assert_eq!(managed[0]["manager"], "m");
        assert!(managed[0]["fieldsV1"]["f:data"]["f:x"].is_object());
    }

    #[test]
    fn conflicting_managers_need_force() {
        let a = json!({"spec": {"replicas": 1, "containers": [{"name": "app", "image": "v1"}]}});
        let live = apply(None, &a, &opts("a", false)).unwrap();
        let b = json!({"spec": {"replicas": 2}});
        let err = apply(Some(&live), &b, &opts("b", false)).unwrap_err();
        assert_eq!(err.reason, Reason::Conflict);
        assert!(
            err.message.contains("conflict with \"a\": .spec.replicas"),
            "{}",
            err.message
        );
        let live = apply(Some(&live), &b, &opts("b", true)).unwrap();
        assert_eq!(live["spec"]["replicas"], 2);
        // "a" lost .spec.replicas: re-applying without it does not remove b's field.
        let a2 = json!({"spec": {"containers": [{"name": "app", "image": "v2"}]}});
        let live = apply(Some(&live), &a2, &opts("a", false)).unwrap();
        assert_eq!(live["spec"]["replicas"], 2);
        assert_eq!(live["spec"]["containers"][0]["image"], "v2");
    }

    #[test]
    fn same_value_is_not_a_conflict_and_items_merge_by_key() {
        let live = json!({"spec": {"containers": [{"name": "app", "image": "v1", "ports": [{"containerPort": 80}]}]}});
        let applied = json!({"spec": {"containers": [{"name": "app", "image": "v2"}]}});
        let live = apply(Some(&live), &applied, &opts("a", false)).unwrap();
        assert_eq!(
            live["spec"]["containers"][0]["ports"][0]["containerPort"],
            80
        );
        assert_eq!(live["spec"]["containers"][0]["image"], "v2");
    }
}
