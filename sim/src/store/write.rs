//! Creating, updating and patching objects.

use std::sync::Arc;

use serde_json::{Value, json};

use super::meta::{
    self, finalizers, generation_changes, is_deleting, metadata_mut, name_of, namespace_of,
};
use super::registry::{Generation, ResourceId, ResourceType};
use super::{EventKind, Inner, ObjKey, Store, admission, set_rv};
use crate::apply::{ApplyOptions, ApplyScope, apply};
use crate::patch::{PatchKind, json_patch, merge_patch, strategic_merge};
use crate::status::{ApiError, Reason};
use crate::time::now_rfc3339;

/// Attempts at finding a free generateName suffix before giving up.
const GENERATE_NAME_ATTEMPTS: usize = 8;

/// Which part of an object a write addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Subresource {
    /// The object itself (status changes are ignored when the type has a status subresource).
    Main,
    /// `/status`: only `status` changes.
    Status,
}

/// Metadata fields the server owns; updates cannot change them.
const IMMUTABLE_METADATA: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
    "selfLink",
];

impl Store {
    /// Creates an object in `ns` ("" for cluster-scoped types).
    pub(crate) fn create(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: &str,
        object: Value,
    ) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.lock();
        inner.create(rt, version, ns, object)
    }

    /// Replaces an object (PUT).
    pub(crate) fn update(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: &str,
        name: &str,
        object: Value,
        sub: Subresource,
    ) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.lock();
        inner.update(rt, version, ns, name, object, sub, true)
    }

    /// Patches an object; apply patches create it when missing.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn patch(
        &self,
        rt: &ResourceType,
        version: &str,
        ns: &str,
        name: &str,
        kind: PatchKind,
        body: &Value,
        sub: Subresource,
        apply_opts: Option<(&str, bool)>,
    ) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.lock();
        let current = inner
            .objects_of(&rt.id)
            .get(&ObjKey::new(ns, name))
            .cloned();
        let now = now_rfc3339();
        let api_version = rt.api_version(version);
        let (manager, force) = apply_opts.unwrap_or(("", false));
        let apply_opts = ApplyOptions {
            manager,
            force,
            scope: match (rt.status_subresource, sub) {
                (false, _) => ApplyScope::Object,
                (true, Subresource::Main) => ApplyScope::Main,
                (true, Subresource::Status) => ApplyScope::Status,
            },
            api_version: &api_version,
            now: &now,
        };
        let Some(current) = current else {
            // Apply creates a missing object, but not through `/status`.
            if kind == PatchKind::Apply && sub == Subresource::Main {
                let mut created = apply(None, body, &apply_opts)?;
                let m = metadata_mut(&mut created);
                m.insert("name".into(), json!(name));
                return inner.create(rt, version, ns, created);
            }
            return Err(ApiError::not_found(&rt.id.group, &rt.id.plural, name));
        };
        let mut patched = (*current).clone();
        match kind {
            PatchKind::Merge => merge_patch(&mut patched, body),
            PatchKind::Json => json_patch(&mut patched, body)?,
            PatchKind::Strategic => {
                if rt.custom {
                    return Err(ApiError::new(
                        Reason::UnsupportedMediaType,
                        "the body of the request was in an unknown format - accepted media types include: \
                         application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                    ));
                }
                strategic_merge(&mut patched, body);
            }
            PatchKind::Apply => patched = apply(Some(&current), body, &apply_opts)?,
        }
        // The patched copy keeps the current resourceVersion unless the patch set one, which then acts
        // as a precondition in `update`, as on a real apiserver.
        inner.update(rt, version, ns, name, patched, sub, true)
    }

    /// Changes an object in place on behalf of a simulated controller (kubelet, load balancer): `f`
    /// edits a copy and returns whether anything changed. No resourceVersion precondition; the object
    /// must still have `uid`. Returns the new object, or `None` when it is gone or unchanged.
    pub(crate) fn modify(
        &self,
        id: &ResourceId,
        key: &ObjKey,
        uid: &str,
        sub: Subresource,
        f: impl FnOnce(&mut Value) -> bool,
    ) -> Option<Arc<Value>> {
        let mut inner = self.lock();
        let rt = inner.registry.get(id)?.clone();
        let current = inner.objects_of(id).get(key)?.clone();
        if meta::uid_of(&current) != uid {
            return None;
        }
        let mut copy = (*current).clone();
        if !f(&mut copy) {
            return None;
        }
        let version = rt.storage_version().to_string();
        inner
            .update(&rt, &version, &key.namespace, &key.name, copy, sub, false)
            .ok()
    }
}

impl Inner {
    pub(crate) fn create(
        &mut self,
        rt: &ResourceType,
        version: &str,
        ns: &str,
        mut object: Value,
    ) -> Result<Arc<Value>, ApiError> {
        if !object.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let body_ns = namespace_of(&object).to_string();
        if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if rt.namespaced {
            self.check_namespace_accepts(ns)?;
        }
        let name = match (
            meta::meta_str(&object, "name").filter(|n| !n.is_empty()),
            meta::meta_str(&object, "generateName").filter(|n| !n.is_empty()),
        ) {
            (Some(n), _) => n.to_string(),
            (None, Some(prefix)) => {
                let prefix = prefix.to_string();
                let objects = self.objects_of(&rt.id);
                (0..GENERATE_NAME_ATTEMPTS)
                    .map(|_| meta::generate_name(&prefix))
                    .find(|n| !objects.contains_key(&ObjKey::new(ns, n)))
                    .ok_or_else(|| {
                        ApiError::new(
                            Reason::AlreadyExists,
                            format!("could not generate a unique name for prefix \"{prefix}\""),
                        )
                    })?
            }
            (None, None) => {
                return Err(ApiError::invalid(
                    &rt.kind,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        };
        if let Some(why) = meta::invalid_name(&name) {
            return Err(ApiError::invalid(&rt.kind, &name, why));
        }
        let key = ObjKey::new(if rt.namespaced { ns } else { "" }, &name);
        if self.objects_of(&rt.id).contains_key(&key) {
            return Err(ApiError::already_exists(&rt.id.group, &rt.id.plural, &name));
        }
        {
            let o = meta::ensure_object(&mut object);
            o.insert("apiVersion".into(), json!(rt.api_version(version)));
            o.insert("kind".into(), json!(rt.kind));
            if rt.status_subresource && rt.custom {
                o.remove("status");
            }
        }
        let m = metadata_mut(&mut object);
        m.insert("name".into(), json!(name));
        if rt.namespaced {
            m.insert("namespace".into(), json!(ns));
        } else {
            m.remove("namespace");
        }
        for key in IMMUTABLE_METADATA {
            m.remove(*key);
        }
        m.insert("uid".into(), json!(meta::new_uid()));
        m.insert("creationTimestamp".into(), json!(now_rfc3339()));
        if rt.generation != Generation::None {
            m.insert("generation".into(), json!(1));
        }
        admission::on_create(self, rt, &mut object)?;
        let rv = self.next_rv();
        set_rv(&mut object, rv);
        let object = Arc::new(object);
        self.objects_of(&rt.id).insert(key, Arc::clone(&object));
        self.emit(rv, &rt.id, EventKind::Added, Arc::clone(&object), None);
        admission::after_create(self, rt, &object);
        Ok(object)
    }

    /// Replaces an object. `client` is false for the simulator's own writes (no validation of
    /// immutable pod fields is skipped; only the status-subresource rules differ in that controllers
    /// may write both).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn update(
        &mut self,
        rt: &ResourceType,
        version: &str,
        ns: &str,
        name: &str,
        mut new: Value,
        sub: Subresource,
        client: bool,
    ) -> Result<Arc<Value>, ApiError> {
        if !new.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let key = ObjKey::new(if rt.namespaced { ns } else { "" }, name);
        let old = self
            .objects_of(&rt.id)
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.id.group, &rt.id.plural, name))?;
        let body_name = name_of(&new);
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        if let Some(rv) = meta::meta_str(&new, "resourceVersion").filter(|rv| !rv.is_empty())
            && Some(rv) != meta::meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(&rt.id.group, &rt.id.plural, name));
        }
        // Keep the parts this write may not change.
        if rt.status_subresource && client {
            match sub {
                Subresource::Main => copy_field(&old, &mut new, "status"),
                Subresource::Status => {
                    // Only `status` changes, and `managedFields` when the write sets them (a
                    // server-side apply records its ownership there), as on a real apiserver.
                    let status = new.get("status").cloned();
                    let managed = new.pointer("/metadata/managedFields").cloned();
                    new = (*old).clone();
                    let o = meta::ensure_object(&mut new);
                    match status {
                        Some(s) => o.insert("status".into(), s),
                        None => o.remove("status"),
                    };
                    if let Some(managed) = managed {
                        metadata_mut(&mut new).insert("managedFields".into(), managed);
                    }
                }
            }
        }
        {
            let o = meta::ensure_object(&mut new);
            o.insert("apiVersion".into(), json!(rt.api_version(version)));
            o.insert("kind".into(), json!(rt.kind));
        }
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let m = metadata_mut(&mut new);
        m.insert("name".into(), json!(name));
        if rt.namespaced {
            m.insert("namespace".into(), json!(ns));
        }
        for field in IMMUTABLE_METADATA {
            match old_meta.get(*field) {
                Some(v) => m.insert((*field).to_string(), v.clone()),
                None => m.remove(*field),
            };
        }
        if is_deleting(&old) {
            let before = finalizers(&old);
            if finalizers(&new).iter().any(|f| !before.contains(f)) {
                return Err(ApiError::invalid(
                    &rt.kind,
                    name,
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted",
                ));
            }
        }
        if client && sub == Subresource::Main {
            admission::on_update(rt, &old, &mut new)?;
        }
        if generation_changes(
            rt.generation,
            &without_binding(rt, &old),
            &without_binding(rt, &new),
        ) {
            let g = old_meta
                .get("generation")
                .and_then(Value::as_i64)
                .unwrap_or(1)
                + 1;
            metadata_mut(&mut new).insert("generation".into(), json!(g));
        }
        // A write that changes nothing is not a change: no new resourceVersion, no event.
        let old_rv = meta::meta_str(&old, "resourceVersion").map(str::to_string);
        if let Some(rv) = &old_rv {
            metadata_mut(&mut new).insert("resourceVersion".into(), json!(rv));
        }
        if new == *old {
            return Ok(old);
        }
        let rv = self.next_rv();
        set_rv(&mut new, rv);
        let new = Arc::new(new);
        if is_deleting(&new) && finalizers(&new).is_empty() && grace_done(&new) {
            self.remove(rt, &key, rv, &new);
            return Ok(new);
        }
        self.objects_of(&rt.id).insert(key, Arc::clone(&new));
        self.emit(rv, &rt.id, EventKind::Modified, Arc::clone(&new), Some(old));
        admission::after_update(self, rt, &new);
        Ok(new)
    }

    /// Whether a namespace exists and is not terminating.
    fn check_namespace_accepts(&mut self, ns: &str) -> Result<(), ApiError> {
        let id = ResourceId::new("", "namespaces");
        match self.objects_of(&id).get(&ObjKey::new("", ns)) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if is_deleting(n) => Err(ApiError::new(
                Reason::Forbidden,
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )),
            Some(_) => Ok(()),
        }
    }
}

/// Whether the graceful part of a deletion is over (`deletionGracePeriodSeconds` 0 or absent).
pub(crate) fn grace_done(object: &Value) -> bool {
    object
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        <= 0
}

/// A pod without `spec.nodeName`: binding a pod to a node does not change its generation.
fn without_binding(rt: &ResourceType, obj: &Value) -> Value {
    let mut v = obj.clone();
    if rt.special == super::registry::Special::Pod
        && let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut)
    {
        spec.remove("nodeName");
    }
    v
}

fn copy_field(from: &Value, to: &mut Value, field: &str) {
    let o = meta::ensure_object(to);
    match from.get(field) {
        Some(v) => o.insert(field.to_string(), v.clone()),
        None => o.remove(field),
    };
}
