//! Deleting objects: finalizers, graceful pod deletion, owner-reference cascade, namespace and CRD
//! clean-up.

use std::sync::Arc;

use serde_json::{Value, json};

use super::meta::{finalizers, is_deleting, metadata_mut, uid_of};
use super::registry::{ResourceId, ResourceType, Special};
use super::write::grace_done;
use super::{EventKind, Inner, ObjKey, Store, set_rv};
use crate::status::{ApiError, Reason};
use crate::time::rfc3339;

/// A pod's grace period when neither the request nor the pod sets one (Kubernetes' default).
pub(crate) const DEFAULT_POD_GRACE_SECONDS: i64 = 30;

/// `propagationPolicy` of a delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Propagation {
    /// Dependents are deleted after the owner is gone (the default).
    #[default]
    Background,
    /// Treated as background by the simulator (see the crate docs).
    Foreground,
    /// Dependents lose their owner reference and stay.
    Orphan,
}

/// The parts of `DeleteOptions` the simulator honours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct DeleteOptions {
    /// `gracePeriodSeconds`.
    pub(crate) grace_period_seconds: Option<i64>,
    /// `propagationPolicy`.
    pub(crate) propagation: Propagation,
    /// `preconditions.uid`.
    pub(crate) precondition_uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub(crate) precondition_rv: Option<String>,
}

impl DeleteOptions {
    /// Reads a `DeleteOptions` body (and query overrides already merged into it by the caller).
    pub(crate) fn from_json(v: &Value) -> Result<Self, ApiError> {
        let propagation = match v.get("propagationPolicy").and_then(Value::as_str) {
            None | Some("Background") => Propagation::Background,
            Some("Foreground") => Propagation::Foreground,
            Some("Orphan") => Propagation::Orphan,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unknown propagationPolicy \"{other}\""
                )));
            }
        };
        let orphan = v.get("orphanDependents").and_then(Value::as_bool) == Some(true);
        Ok(Self {
            grace_period_seconds: v.get("gracePeriodSeconds").and_then(Value::as_i64),
            propagation: if orphan {
                Propagation::Orphan
            } else {
                propagation
            },
            precondition_uid: v
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_rv: v
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }
}

impl Store {
    /// Deletes an object; returns its state after the call (still present when finalizers or a
    /// grace period hold it).
    pub(crate) fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        self.lock().delete(rt, ns, name, opts)
    }

    /// The kubelet's final deletion of a pod whose grace period is over (grace period 0).
    pub(crate) fn finish_pod_deletion(&self, key: &ObjKey, uid: &str) {
        let mut inner = self.lock();
        let Some(rt) = inner.registry.get(&ResourceId::new("", "pods")).cloned() else {
            return;
        };
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            precondition_uid: Some(uid.to_string()),
            ..DeleteOptions::default()
        };
        // The pod may be gone already or replaced; either way there is nothing left to do.
        let _ = inner.delete(&rt, &key.namespace, &key.name, &opts);
    }
}

impl Inner {
    pub(crate) fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Arc<Value>, ApiError> {
        let key = ObjKey::new(if rt.namespaced { ns } else { "" }, name);
        let old = self
            .objects_of(&rt.id)
            .get(&key)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.id.group, &rt.id.plural, name))?;
        let precondition_failed = opts
            .precondition_uid
            .as_deref()
            .is_some_and(|u| u != uid_of(&old))
            || opts.precondition_rv.as_deref().is_some_and(|rv| {
                Some(rv)
                    != old
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
            });
        if precondition_failed {
            return Err(ApiError::new(
                Reason::Conflict,
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": Precondition failed",
                    rt.id.plural
                ),
            ));
        }
        if opts.propagation == Propagation::Orphan {
            self.orphan_dependents(uid_of(&old));
        }
        let now = std::time::SystemTime::now();
        let grace = match rt.special {
            Special::Pod => pod_grace(&old, opts),
            _ => 0,
        };
        if rt.special == Special::Namespace {
            return Ok(self.delete_namespace(rt, &key, old, now));
        }
        if is_deleting(&old) {
            let current = old
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if grace >= current {
                return Ok(old);
            }
        }
        let mut new = (*old).clone();
        let m = metadata_mut(&mut new);
        m.insert(
            "deletionTimestamp".into(),
            json!(rfc3339(
                now + std::time::Duration::from_secs(grace.max(0) as u64)
            )),
        );
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        if grace > 0 || !finalizers(&old).is_empty() {
            return Ok(self.commit(rt, key, old, new));
        }
        let rv = self.next_rv();
        set_rv(&mut new, rv);
        let new = Arc::new(new);
        self.remove(rt, &key, rv, &new);
        Ok(new)
    }

    /// Stores a modified object with a new resourceVersion and tells watchers; removes it instead when
    /// its deletion is complete.
    pub(crate) fn commit(
        &mut self,
        rt: &ResourceType,
        key: ObjKey,
        old: Arc<Value>,
        mut new: Value,
    ) -> Arc<Value> {
        let rv = self.next_rv();
        set_rv(&mut new, rv);
        let new = Arc::new(new);
        if is_deleting(&new) && finalizers(&new).is_empty() && grace_done(&new) {
            self.remove(rt, &key, rv, &new);
        } else {
            self.objects_of(&rt.id).insert(key, Arc::clone(&new));
            self.emit(rv, &rt.id, EventKind::Modified, Arc::clone(&new), Some(old));
        }
        new
    }

    /// Removes an object for good, then deletes its dependents and finishes what waited for it.
    pub(crate) fn remove(&mut self, rt: &ResourceType, key: &ObjKey, rv: u64, last: &Arc<Value>) {
        if self.objects_of(&rt.id).remove(key).is_none() {
            return;
        }
        self.emit(rv, &rt.id, EventKind::Deleted, Arc::clone(last), None);
        self.delete_dependents(uid_of(last));
        if rt.special == Special::Crd {
            self.remove_crd_resources(last);
        }
        if rt.namespaced {
            self.finish_namespace(&key.namespace);
        }
    }

    /// Deletes (background cascade) every object owned by `uid`.
    fn delete_dependents(&mut self, uid: &str) {
        if uid.is_empty() {
            return;
        }
        for (rt, key) in self.dependents_of(uid) {
            // A dependent may have been removed by an earlier cascade step; that is fine.
            let _ = self.delete(&rt, &key.namespace, &key.name, &DeleteOptions::default());
        }
    }

    /// Removes the owner reference to `uid` from every dependent.
    fn orphan_dependents(&mut self, uid: &str) {
        for (rt, key) in self.dependents_of(uid) {
            let Some(old) = self.objects_of(&rt.id).get(&key).cloned() else {
                continue;
            };
            let mut new = (*old).clone();
            if let Some(refs) = new
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
            }
            self.commit(&rt, key, old, new);
        }
    }

    fn dependents_of(&self, uid: &str) -> Vec<(ResourceType, ObjKey)> {
        let mut out = Vec::new();
        for (id, objects) in &self.objects {
            let Some(rt) = self.registry.get(id) else {
                continue;
            };
            for (key, obj) in objects {
                let owned = obj
                    .pointer("/metadata/ownerReferences")
                    .and_then(Value::as_array)
                    .is_some_and(|refs| {
                        refs.iter()
                            .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                    });
                if owned {
                    out.push((rt.clone(), key.clone()));
                }
            }
        }
        out
    }

    fn delete_namespace(
        &mut self,
        rt: &ResourceType,
        key: &ObjKey,
        old: Arc<Value>,
        now: std::time::SystemTime,
    ) -> Arc<Value> {
        let ns = key.name.clone();
        let current = if is_deleting(&old) {
            old
        } else {
            let mut new = (*old).clone();
            let m = metadata_mut(&mut new);
            m.insert("deletionTimestamp".into(), json!(rfc3339(now)));
            m.insert("deletionGracePeriodSeconds".into(), json!(0));
            new["status"] = json!({"phase": "Terminating"});
            // The namespace stays until it is empty, like the `kubernetes` finalizer in its spec.
            let rv = self.next_rv();
            set_rv(&mut new, rv);
            let new = Arc::new(new);
            self.objects_of(&rt.id)
                .insert(key.clone(), Arc::clone(&new));
            self.emit(rv, &rt.id, EventKind::Modified, Arc::clone(&new), Some(old));
            new
        };
        let contents: Vec<(ResourceType, ObjKey)> = self
            .registry
            .all()
            .filter(|t| t.namespaced)
            .cloned()
            .collect::<Vec<_>>()
            .into_iter()
            .flat_map(|t| {
                let keys: Vec<ObjKey> = self
                    .objects
                    .get(&t.id)
                    .map(|m| m.keys().filter(|k| k.namespace == ns).cloned().collect())
                    .unwrap_or_default();
                keys.into_iter().map(move |k| (t.clone(), k))
            })
            .collect();
        for (t, k) in contents {
            // Objects may disappear through cascades while we go; that is fine.
            let _ = self.delete(&t, &k.namespace, &k.name, &DeleteOptions::default());
        }
        self.finish_namespace(&ns);
        self.objects_of(&rt.id).get(key).cloned().unwrap_or(current)
    }

    /// Removes a terminating namespace once nothing is left in it.
    fn finish_namespace(&mut self, ns: &str) {
        let ns_id = ResourceId::new("", "namespaces");
        let key = ObjKey::new("", ns);
        let Some(nsobj) = self.objects_of(&ns_id).get(&key).cloned() else {
            return;
        };
        if !is_deleting(&nsobj) {
            return;
        }
        let empty = self.objects.iter().all(|(id, objects)| {
            id == &ns_id
                || objects
                    .range(ObjKey::new(ns, "")..)
                    .next()
                    .is_none_or(|(k, _)| k.namespace != ns)
        });
        if !empty {
            return;
        }
        let Some(rt) = self.registry.get(&ns_id).cloned() else {
            return;
        };
        let mut last = (*nsobj).clone();
        let rv = self.next_rv();
        set_rv(&mut last, rv);
        self.remove(&rt, &key, rv, &Arc::new(last));
    }

    /// Drops every custom resource of a deleted CRD and stops serving its type.
    fn remove_crd_resources(&mut self, crd: &Value) {
        let Ok(t) = crate::store::registry::crd_resource_type(crd) else {
            return;
        };
        let objects = self.objects.remove(&t.id).unwrap_or_default();
        for (_, obj) in objects {
            let rv = self.next_rv();
            let mut last = (*obj).clone();
            set_rv(&mut last, rv);
            self.emit(rv, &t.id, EventKind::Deleted, Arc::new(last), None);
        }
        self.registry.remove(&t.id);
    }
}

/// The grace period a pod deletion gets.
fn pod_grace(pod: &Value, opts: &DeleteOptions) -> i64 {
    let scheduled = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_some();
    let finished = matches!(
        pod.pointer("/status/phase").and_then(Value::as_str),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || finished {
        return 0;
    }
    opts.grace_period_seconds
        .or_else(|| {
            pod.pointer("/spec/terminationGracePeriodSeconds")
                .and_then(Value::as_i64)
        })
        .unwrap_or(DEFAULT_POD_GRACE_SECONDS)
        .max(0)
}
