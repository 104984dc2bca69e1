//! Simplified server-side apply.
//!
//! The applied configuration is merged into the live object with strategic-merge rules (lists with a
//! merge key merge item by item, `finalizers` as a set, other lists are replaced). Each `Apply` manager's
//! field set is kept in `metadata.managedFields` in the real `FieldsV1` format (`f:`, `k:`, `v:` keys),
//! one entry per manager and subresource: for a kind with a status subresource, a main-resource apply
//! owns everything but `status` and a `/status` apply owns only `status` (entry `subresource: status`).
//! A field the manager applied before and omits now is removed unless another apply manager owns it; a
//! list item goes as a whole, and an object or list the removal leaves empty goes too unless an apply
//! manager owns it or something in it. Setting a field to a different value than another apply manager
//! owns is a 409 Conflict unless `force=true`, which moves ownership. Writes other than apply (update,
//! patch) do not record ownership.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use crate::patch::{is_set_list, merge_key, strategic_merge};
use crate::status::{ApiError, Reason};

/// One field path in `FieldsV1` notation, e.g. `["f:spec", "f:containers", "k:{\"name\":\"app\"}", "f:image"]`.
type FieldPath = Vec<String>;
/// A manager's owned fields.
type FieldSet = BTreeSet<FieldPath>;

/// The top-level field of a kind's status subresource.
const STATUS: &str = "status";
/// The `subresource` of a managed fields entry recorded by an apply on `/status`.
const STATUS_SUBRESOURCE: &str = "status";

/// Which part of an object an apply addresses, and so which fields it may own (Kubernetes' reset
/// fields: a kind with a status subresource keeps `status` out of main-resource writes and everything
/// but `status` out of `/status` writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ApplyScope {
    /// A kind without a status subresource: the whole object.
    Object,
    /// The main resource of a kind with a status subresource: everything but `status`.
    Main,
    /// The `/status` subresource: `status` only.
    Status,
}

impl ApplyScope {
    /// The `subresource` recorded in this scope's managed fields entries.
    fn subresource(self) -> Option<&'static str> {
        match self {
            Self::Object | Self::Main => None,
            Self::Status => Some(STATUS_SUBRESOURCE),
        }
    }

    /// Whether this scope owns the top-level field `key`.
    fn owns_top_level(self, key: &str) -> bool {
        match self {
            Self::Object => true,
            Self::Main => key != STATUS,
            Self::Status => key == STATUS,
        }
    }
}

/// Who applies, and how.
#[derive(Debug, Clone)]
pub(crate) struct ApplyOptions<'a> {
    /// `fieldManager`.
    pub(crate) manager: &'a str,
    /// `force`.
    pub(crate) force: bool,
    /// The part of the object addressed.
    pub(crate) scope: ApplyScope,
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

/// One managed fields entry of the live object, in stored order.
enum Slot {
    /// The applying manager's entry for this scope, replaced by the new one.
    Own,
    /// Another apply manager's entry, with its fields; rewritten only when `force` took some.
    Applier {
        entry: Value,
        set: FieldSet,
        changed: bool,
    },
    /// A non-apply entry, kept as is.
    Other(Value),
}

/// Merges `applied` into `live` (or into an empty object when creating) and updates managed fields.
pub(crate) fn apply(
    live: Option<&Value>,
    applied: &Value,
    opts: &ApplyOptions<'_>,
) -> Result<Value, ApiError> {
    let mut new_set = FieldSet::new();
    collect_top(applied, opts.scope, &mut new_set);

    let live_value = live.cloned().unwrap_or_else(|| json!({}));
    let entries = live_value
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut old_set = FieldSet::new();
    let mut slots: Vec<Slot> = entries
        .into_iter()
        .map(|entry| {
            if entry.get("operation").and_then(Value::as_str) != Some("Apply") {
                return Slot::Other(entry);
            }
            let mut set = FieldSet::new();
            if let Some(tree) = entry.get("fieldsV1") {
                from_tree(tree, &mut Vec::new(), &mut set);
            }
            let manager = entry.get("manager").and_then(Value::as_str);
            let subresource = entry.get("subresource").and_then(Value::as_str);
            if manager == Some(opts.manager) && subresource == opts.scope.subresource() {
                old_set = set;
                Slot::Own
            } else {
                Slot::Applier {
                    entry,
                    set,
                    changed: false,
                }
            }
        })
        .collect();

    let mut conflicts = Vec::new();
    for slot in &mut slots {
        let Slot::Applier {
            entry,
            set,
            changed,
        } = slot
        else {
            continue;
        };
        let overlapping: Vec<FieldPath> = set
            .iter()
            .filter(|p| new_set.contains(*p))
            .filter(|p| resolve(&live_value, p) != resolve(applied, p))
            .cloned()
            .collect();
        for path in overlapping {
            if opts.force {
                set.remove(&path);
                *changed = true;
            } else {
                let manager = entry.get("manager").and_then(Value::as_str).unwrap_or("");
                conflicts.push((manager.to_string(), path));
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflict_error(&conflicts));
    }

    let mut result = live_value.clone();
    strategic_merge(&mut result, &without_server_metadata(applied));

    let mut owned = new_set.clone();
    for slot in &slots {
        if let Slot::Applier { set, .. } = slot {
            owned.extend(set.iter().cloned());
        }
    }
    remove_stale(&mut result, &old_set, &owned);

    // Ours replaces its old entry in place (once, should the stored list repeat it), or comes last.
    let mut own = Some(entry(opts.manager, &new_set, opts));
    let mut managed: Vec<Value> = slots
        .into_iter()
        .filter_map(|slot| match slot {
            Slot::Own => own.take(),
            Slot::Applier {
                entry,
                changed: false,
                ..
            }
            | Slot::Other(entry) => Some(entry),
            Slot::Applier { set, .. } if set.is_empty() => None,
            Slot::Applier { mut entry, set, .. } => {
                if let Some(o) = entry.as_object_mut() {
                    o.insert("fieldsV1".into(), to_tree(&set));
                }
                Some(entry)
            }
        })
        .collect();
    managed.extend(own);
    if let Some(meta) = result
        .as_object_mut()
        .map(|o| o.entry("metadata").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    {
        meta.insert("managedFields".into(), Value::Array(managed));
    }
    Ok(result)
}

/// Removes the fields of `old` (the manager's previous set) that nobody owns any more (`owned`: the
/// manager's new set and every other apply manager's). A list item goes as a whole with everything in
/// it; so does an object unless something in it is still owned. Then every object, list or list item
/// the removal left empty goes too, up to the first one that is owned or holds anything: the simulator
/// does not know who created it, so the manager whose fields were in it is taken to have.
fn remove_stale(result: &mut Value, old: &FieldSet, owned: &FieldSet) {
    let mut stale: Vec<&FieldPath> = old.iter().filter(|p| !owned.contains(*p)).collect();
    // Outermost first: removing a list item removes the fields in it, including its key, which must not
    // go first or the item could no longer be found.
    stale.sort_by_key(|p| p.len());
    for path in &stale {
        if !owns_below(owned, path) && !is_item_key(path) {
            remove(result, path);
        }
    }
    for path in &stale {
        for end in (1..path.len()).rev() {
            let parent = &path[..end];
            if owned.contains(parent) || owns_below(owned, parent) {
                break;
            }
            match resolve(result, parent) {
                // Already gone with an outer path.
                None => continue,
                Some(Value::Object(m)) if m.is_empty() => remove(result, parent),
                Some(Value::Array(a)) if a.is_empty() => remove(result, parent),
                Some(_) => break,
            }
        }
    }
}

/// Whether `owned` holds a path strictly below `path`.
fn owns_below(owned: &FieldSet, path: &[String]) -> bool {
    // Paths sort lexicographically, so the ones starting with `path` directly follow it.
    owned
        .range::<[String], _>((std::ops::Bound::Excluded(path), std::ops::Bound::Unbounded))
        .next()
        .is_some_and(|p| p.starts_with(path))
}

/// Whether `path` is a key field of the list item it is in (`name` in `k:{"name":"app"}`): it lives and
/// goes with the item, whoever else owns the item.
fn is_item_key(path: &[String]) -> bool {
    let [.., item, field] = path else {
        return false;
    };
    let (Some(field), Some(key)) = (field.strip_prefix("f:"), item.strip_prefix("k:")) else {
        return false;
    };
    serde_json::from_str::<Map<String, Value>>(key).is_ok_and(|id| id.contains_key(field))
}

fn entry(manager: &str, set: &FieldSet, opts: &ApplyOptions<'_>) -> Value {
    let mut entry = json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": opts.api_version,
        "time": opts.now,
        "fieldsType": "FieldsV1",
        "fieldsV1": to_tree(set),
    });
    if let (Some(sub), Some(o)) = (opts.scope.subresource(), entry.as_object_mut()) {
        o.insert("subresource".into(), json!(sub));
    }
    entry
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

/// Collects the fields of an applied configuration that `scope` owns.
fn collect_top(applied: &Value, scope: ApplyScope, out: &mut FieldSet) {
    let Some(m) = applied.as_object() else {
        return;
    };
    for (k, child) in m {
        if k == "apiVersion" || k == "kind" || !scope.owns_top_level(k) {
            continue;
        }
        collect(child, Some(k), &mut vec![format!("f:{k}")], out);
    }
}

/// Collects the fields of `v`, at `prefix`. A list item with a merge key is owned with all its fields,
/// the key included.
fn collect(v: &Value, field: Option<&str>, prefix: &mut FieldPath, out: &mut FieldSet) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                if prefix.len() == 1
                    && prefix[0] == "f:metadata"
                    && SERVER_METADATA.contains(&k.as_str())
                {
                    continue;
                }
                prefix.push(format!("f:{k}"));
                collect(child, Some(k), prefix, out);
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
                    collect(item, None, prefix, out);
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

fn resolve<'a>(v: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, elem| step(cur, elem))
}

fn remove(v: &mut Value, path: &[String]) {
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
            scope: ApplyScope::Object,
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
    fn template(image: Option<&str>) -> Value {
        let mut spec = json!({"replicas": 1});
        if let Some(image) = image {
            spec["stableTemplate"] =
                json!({"spec": {"containers": [{"name": "app", "image": image}]}});
        }
        json!({"apiVersion": "cafe.io/v1", "kind": "Set", "metadata": {"name": "s"}, "spec": spec})
    }

    #[test]
    fn dropping_a_list_item_removes_it_whole_with_the_parents_it_emptied() {
        let live = apply(None, &template(Some("a:1")), &opts("m", true)).unwrap();
        let item = &live["metadata"]["managedFields"][0]["fieldsV1"]["f:spec"]["f:stableTemplate"]
            ["f:spec"]["f:containers"]["k:{\"name\":\"app\"}"];
        // The item, its key and its other fields are all the applier's.
        assert_eq!(item, &json!({".": {}, "f:name": {}, "f:image": {}}));
        let live = apply(Some(&live), &template(None), &opts("m", true)).unwrap();
        assert_eq!(live["spec"], json!({"replicas": 1}));
        let live = apply(Some(&live), &template(Some("b:1")), &opts("m", true)).unwrap();
        assert_eq!(
            live["spec"]["stableTemplate"]["spec"]["containers"],
            json!([{"name": "app", "image": "b:1"}])
        );
    }

    #[test]
    fn what_another_manager_owns_stays_with_its_parents() {
        let live = apply(None, &template(Some("a:1")), &opts("a", false)).unwrap();
        // "b" owns a sibling field in the template and shares the item (same values).
        let b = json!({"spec": {"stableTemplate": {"spec": {"hostname": "h",
            "containers": [{"name": "app", "image": "a:1"}]}}}});
        let live = apply(Some(&live), &b, &opts("b", false)).unwrap();
        let live = apply(Some(&live), &template(None), &opts("a", false)).unwrap();
        assert_eq!(
            live["spec"]["stableTemplate"],
            json!({"spec": {"hostname": "h", "containers": [{"name": "app", "image": "a:1"}]}})
        );
        // Once "b" drops the item, it goes; the template stays for "b"'s hostname.
        let b = json!({"spec": {"stableTemplate": {"spec": {"hostname": "h"}}}});
        let live = apply(Some(&live), &b, &opts("b", false)).unwrap();
        assert_eq!(
            live["spec"]["stableTemplate"],
            json!({"spec": {"hostname": "h"}})
        );
    }

    #[test]
    fn a_kept_item_keeps_its_key_and_unowned_fields_go_with_a_dropped_item() {
        let two = json!({"spec": {"containers": [{"name": "app", "image": "a:1"}, {"name": "side", "image": "s:1"}]}});
        let mut live = apply(None, &two, &opts("m", false)).unwrap();
        // A non-apply write adds a field nobody owns to the item that is dropped next.
        live["spec"]["containers"][1]["args"] = json!(["x"]);
        let one = json!({"spec": {"containers": [{"name": "app"}]}});
        let live = apply(Some(&live), &one, &opts("m", false)).unwrap();
        assert_eq!(live["spec"]["containers"], json!([{"name": "app"}]));
    }

    #[test]
    fn status_scope_owns_only_status_in_an_entry_of_its_own() {
        let scoped = |manager, scope| ApplyOptions {
            scope,
            ..opts(manager, false)
        };
        let body = json!({"spec": {"replicas": 2}, "status": {"ready": 1, "problems": ["p"]}});
        let live = apply(None, &body, &scoped("m", ApplyScope::Main)).unwrap();
        let live = apply(Some(&live), &body, &scoped("m", ApplyScope::Status)).unwrap();
        let managed = live["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(managed.len(), 2);
        assert_eq!(
            managed[0]["fieldsV1"],
            json!({"f:spec": {"f:replicas": {}}})
        );
        assert!(managed[0].get("subresource").is_none());
        assert_eq!(managed[1]["subresource"], "status");
        assert_eq!(
            managed[1]["fieldsV1"],
            json!({"f:status": {"f:ready": {}, "f:problems": {}}})
        );
        // Dropping a status field removes it; the main entry is left alone, time included.
        let later = ApplyOptions {
            now: "2024-01-02T00:00:00Z",
            ..scoped("m", ApplyScope::Status)
        };
        let live = apply(Some(&live), &json!({"status": {"ready": 1}}), &later).unwrap();
        assert_eq!(live["status"], json!({"ready": 1}));
        assert_eq!(live["spec"], json!({"replicas": 2}));
        let managed = live["metadata"]["managedFields"].as_array().unwrap();
        assert_eq!(managed[0]["time"], "2024-01-01T00:00:00Z");
        assert_eq!(managed[1]["time"], "2024-01-02T00:00:00Z");
        assert_eq!(managed[1]["fieldsV1"], json!({"f:status": {"f:ready": {}}}));
    }
}
