//! Revision names and template shapes: stable hashes of pod templates.

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Hex characters kept from a SHA-256 digest: 40 bits, plenty to tell a set's revisions apart and
/// short enough for a label value.
const HASH_HEX_LEN: usize = 10;

/// The revision name of a template written without one: a hash of its canonical JSON.
pub fn template_revision(template: &Value) -> String {
    short_hash(&canonical_json(template))
}

/// The hash of everything that makes a pod but its container images: the template with every
/// container's and init container's image blanked, the unit's nodeSelector and the readiness gate.
/// Pods whose shapes are equal differ only in images and may move between them in place.
pub fn template_shape(
    template: &Value,
    node_selector: &BTreeMap<String, String>,
    gate: &str,
) -> String {
    let mut blanked = template.clone();
    for list in ["containers", "initContainers"] {
        if let Some(containers) = blanked
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        {
            for container in containers {
                if let Some(image) = container.get_mut("image") {
                    *image = Value::Null;
                }
            }
        }
    }
    let whole = serde_json::json!({
        "template": blanked,
        "nodeSelector": node_selector,
        "gate": gate,
    });
    short_hash(&canonical_json(&whole))
}

fn short_hash(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    let mut hex = String::with_capacity(HASH_HEX_LEN);
    for byte in digest.iter() {
        if hex.len() >= HASH_HEX_LEN {
            break;
        }
        hex.push_str(&format!("{byte:02x}"));
    }
    hex.truncate(HASH_HEX_LEN);
    hex
}

/// JSON with object keys sorted at every level, whatever map order serde_json was built with.
fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn revision_ignores_key_order_and_changes_with_content() {
        let a = json!({"spec": {"containers": [{"name": "app", "image": "web:1"}]}, "metadata": {"labels": {"a": "1", "b": "2"}}});
        let b = json!({"metadata": {"labels": {"b": "2", "a": "1"}}, "spec": {"containers": [{"image": "web:1", "name": "app"}]}});
        assert_eq!(template_revision(&a), template_revision(&b));
        assert_eq!(template_revision(&a).len(), HASH_HEX_LEN);
        let c = json!({"spec": {"containers": [{"name": "app", "image": "web:2"}]}, "metadata": {"labels": {"a": "1", "b": "2"}}});
        assert_ne!(template_revision(&a), template_revision(&c));
    }

    #[test]
    fn shape_ignores_images_only() {
        let none = BTreeMap::new();
        let v1 = json!({"spec": {"containers": [{"name": "app", "image": "web:1"}]}});
        let v2 = json!({"spec": {"containers": [{"name": "app", "image": "web:2"}]}});
        let env = json!({"spec": {"containers": [{"name": "app", "image": "web:2", "env": [{"name": "X", "value": "1"}]}]}});
        assert_eq!(
            template_shape(&v1, &none, "g"),
            template_shape(&v2, &none, "g")
        );
        assert_ne!(
            template_shape(&v1, &none, "g"),
            template_shape(&env, &none, "g")
        );
        assert_ne!(
            template_shape(&v1, &none, "g"),
            template_shape(&v1, &none, "h")
        );
        let zone = BTreeMap::from([("zone".to_string(), "a".to_string())]);
        assert_ne!(
            template_shape(&v1, &none, "g"),
            template_shape(&v1, &zone, "g")
        );
    }
}
