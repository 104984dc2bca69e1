//! Object metadata helpers: names, uids, generateName, generation.

use rand::RngExt;
use serde_json::{Map, Value};

use super::registry::Generation;

/// Characters the apiserver uses for generateName suffixes (no vowels, no look-alikes).
const SUFFIX_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
/// Length of a generateName suffix.
const SUFFIX_LEN: usize = 5;
/// Longest valid DNS subdomain name.
const MAX_NAME_LEN: usize = 253;

/// `object.metadata`, created when missing (a non-object value is replaced by an object).
pub(crate) fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    let meta = ensure_object(object)
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    ensure_object(meta)
}

/// `v` as a map, replacing a non-object value by an empty object first.
pub(crate) fn ensure_object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = Value::Object(Map::new());
    }
    match v {
        Value::Object(m) => m,
        // Invariant: the value was replaced by an object just above.
        _ => unreachable!("value was just made an object"),
    }
}

/// A string field of `metadata`.
pub(crate) fn meta_str<'a>(object: &'a Value, key: &str) -> Option<&'a str> {
    object.get("metadata")?.get(key)?.as_str()
}

/// `metadata.name`, or "".
pub(crate) fn name_of(object: &Value) -> &str {
    meta_str(object, "name").unwrap_or("")
}

/// `metadata.namespace`, or "".
pub(crate) fn namespace_of(object: &Value) -> &str {
    meta_str(object, "namespace").unwrap_or("")
}

/// `metadata.uid`, or "".
pub(crate) fn uid_of(object: &Value) -> &str {
    meta_str(object, "uid").unwrap_or("")
}

/// Whether `metadata.deletionTimestamp` is set.
pub(crate) fn is_deleting(object: &Value) -> bool {
    meta_str(object, "deletionTimestamp").is_some()
}

/// `metadata.finalizers`.
pub(crate) fn finalizers(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A random RFC 4122 version 4 UUID string.
pub(crate) fn new_uid() -> String {
    let mut b: [u8; 16] = rand::rng().random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `prefix` plus a random suffix, as generateName does.
pub(crate) fn generate_name(prefix: &str) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..SUFFIX_LEN)
        .map(|_| SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// Why `name` is not a valid DNS subdomain, if it is not.
pub(crate) fn invalid_name(name: &str) -> Option<String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let ok_ends = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_alphanumeric());
    if name.is_empty() || name.len() > MAX_NAME_LEN || !ok_chars || !ok_ends {
        Some(format!(
            "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of \
             lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
        ))
    } else {
        None
    }
}

/// Whether the change from `old` to `new` bumps `metadata.generation` under `rule`.
pub(crate) fn generation_changes(rule: Generation, old: &Value, new: &Value) -> bool {
    let strip = |v: &Value, drop_status: bool| -> Value {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("metadata");
            o.remove("apiVersion");
            o.remove("kind");
            if drop_status {
                o.remove("status");
            }
        }
        v
    };
    match rule {
        Generation::None => false,
        Generation::Spec => strip(old, true) != strip(new, true),
        Generation::AllButMetadata => strip(old, false) != strip(new, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_uids() {
        assert!(invalid_name("web-0.a").is_none());
        assert!(invalid_name("Web").is_some());
        assert!(invalid_name("-a").is_some());
        assert!(invalid_name("").is_some());
        let n = generate_name("web-");
        assert_eq!(n.len(), 9);
        assert!(n.starts_with("web-"));
        let u = new_uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }

    #[test]
    fn generation_rules() {
        let old = json!({"metadata": {"labels": {}}, "spec": {"a": 1}, "status": {"x": 1}});
        let status = json!({"metadata": {"labels": {}}, "spec": {"a": 1}, "status": {"x": 2}});
        let meta =
            json!({"metadata": {"labels": {"l": "1"}}, "spec": {"a": 1}, "status": {"x": 1}});
        let spec = json!({"metadata": {}, "spec": {"a": 2}, "status": {"x": 1}});
        assert!(!generation_changes(Generation::Spec, &old, &status));
        assert!(!generation_changes(Generation::Spec, &old, &meta));
        assert!(generation_changes(Generation::Spec, &old, &spec));
        assert!(generation_changes(
            Generation::AllButMetadata,
            &old,
            &status
        ));
        assert!(!generation_changes(Generation::AllButMetadata, &old, &meta));
        assert!(!generation_changes(Generation::None, &old, &spec));
    }
}
