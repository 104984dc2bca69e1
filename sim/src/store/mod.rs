//! The in-memory object store: every object of one cluster, one resourceVersion counter, and a bounded
//! history of watch events.
//!
//! Objects are `serde_json::Value`s behind `Arc`, keyed by resource type, namespace and name. One
//! `std::sync::Mutex` guards everything and is never held across an `.await`; watchers get events through
//! a `tokio::sync::broadcast` channel fed while the lock is held, so no event is lost between a replay
//! from the history and the live stream.

mod admission;
mod delete;
pub(crate) mod meta;
pub(crate) mod registry;
mod write;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;

pub(crate) use delete::DeleteOptions;
pub(crate) use write::Subresource;

use crate::selector::Selector;
use crate::status::ApiError;
use registry::{Registry, ResourceId, ResourceType};

/// Capacity of the broadcast channel feeding watches; a watcher lagging further behind gets 410 Expired.
const WATCH_CHANNEL_CAPACITY: usize = 65_536;

/// The type of a watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventKind {
    /// The object was created.
    Added,
    /// The object changed.
    Modified,
    /// The object was removed.
    Deleted,
}

impl EventKind {
    /// The wire name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history and sent to watchers.
#[derive(Debug)]
pub(crate) struct StoredEvent {
    /// The resourceVersion the change produced.
    pub(crate) rv: u64,
    /// The resource type.
    pub(crate) resource: ResourceId,
    /// What happened.
    pub(crate) kind: EventKind,
    /// The object after the change (for deletions: its last state).
    pub(crate) object: Arc<Value>,
    /// The object before the change, for modifications (selectors need it).
    pub(crate) old: Option<Arc<Value>>,
}

/// Key of an object within its resource type; the namespace is "" for cluster-scoped objects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct ObjKey {
    /// Namespace.
    pub(crate) namespace: String,
    /// Name.
    pub(crate) name: String,
}

impl ObjKey {
    /// Builds a key.
    pub(crate) fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

/// A page of a list.
#[derive(Debug)]
pub(crate) struct ListPage {
    /// The items, sorted by namespace and name.
    pub(crate) items: Vec<Arc<Value>>,
    /// The store's resourceVersion when listed.
    pub(crate) resource_version: u64,
    /// Token for the next page.
    pub(crate) continue_token: Option<String>,
    /// Items left after this page.
    pub(crate) remaining: usize,
}

/// Where a watch starts.
#[derive(Debug)]
pub(crate) enum WatchStart {
    /// The initial state as synthetic ADDED events, then changes.
    Initial(Vec<Arc<Value>>),
    /// Changes after the requested resourceVersion, replayed from the history.
    Replay(Vec<Arc<StoredEvent>>),
}

/// Everything guarded by the store's mutex.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) rv: u64,
    pub(crate) registry: Registry,
    pub(crate) objects: HashMap<ResourceId, BTreeMap<ObjKey, Arc<Value>>>,
    history: VecDeque<Arc<StoredEvent>>,
    history_limit: usize,
    /// Events with a resourceVersion up to this one have been dropped from the history.
    compacted: u64,
    pub(crate) next_cluster_ip: u32,
    events: broadcast::Sender<Arc<StoredEvent>>,
}

/// The object store of one cluster.
#[derive(Debug)]
pub(crate) struct Store {
    inner: Mutex<Inner>,
}

impl Store {
    /// An empty store with the built-in types, keeping `history_limit` watch events.
    pub(crate) fn new(history_limit: usize) -> Self {
        let (events, _) = broadcast::channel(WATCH_CHANNEL_CAPACITY);
        Self {
            inner: Mutex::new(Inner {
                rv: 1,
                registry: Registry::builtin(),
                objects: HashMap::new(),
                history: VecDeque::new(),
                history_limit,
                compacted: 0,
                next_cluster_ip: 1,
                events,
            }),
        }
    }

    /// Locks the store. A poisoned lock (a panic while holding it) is recovered: every write leaves the
    /// maps consistent before it can panic.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of the registry (for discovery).
    pub(crate) fn registry(&self) -> Registry {
        self.lock().registry.clone()
    }

    /// The served type for (group, version, plural).
    pub(crate) fn resolve(&self, group: &str, version: &str, plural: &str) -> Option<ResourceType> {
        self.lock().registry.lookup(group, version, plural).cloned()
    }

    /// The current resourceVersion.
    pub(crate) fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    /// One object.
    pub(crate) fn get(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.lock()
            .objects
            .get(&rt.id)
            .and_then(|m| m.get(&ObjKey::new(ns, name)))
            .cloned()
            .ok_or_else(|| ApiError::not_found(&rt.id.group, &rt.id.plural, name))
    }

    /// A page of objects in `ns` (or every namespace), filtered by `selector`.
    pub(crate) fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        selector: &Selector,
        limit: Option<usize>,
        continue_after: Option<&ObjKey>,
    ) -> ListPage {
        let inner = self.lock();
        let empty = BTreeMap::new();
        let objects = inner.objects.get(&rt.id).unwrap_or(&empty);
        let start = match (continue_after, ns) {
            (Some(after), _) => std::ops::Bound::Excluded(after.clone()),
            (None, Some(ns)) => std::ops::Bound::Included(ObjKey::new(ns, "")),
            (None, None) => std::ops::Bound::Unbounded,
        };
        let mut matching = objects
            .range((start, std::ops::Bound::Unbounded))
            .take_while(|(k, _)| ns.is_none_or(|ns| k.namespace == ns))
            .filter(|(_, v)| selector.matches(v));
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut last_key = None;
        for (k, v) in matching.by_ref() {
            items.push(Arc::clone(v));
            last_key = Some(k);
            if items.len() >= limit {
                break;
            }
        }
        let remaining = matching.count();
        let continue_token = match (remaining, last_key) {
            (r, Some(k)) if r > 0 => Some(format!("{}/{}", k.namespace, k.name)),
            _ => None,
        };
        ListPage {
            items,
            resource_version: inner.rv,
            continue_token,
            remaining,
        }
    }

    /// Every object of a type (for the simulated controllers).
    pub(crate) fn snapshot(&self, id: &ResourceId) -> Vec<Arc<Value>> {
        self.lock()
            .objects
            .get(id)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Starts a watch: the events to send first and a receiver for the rest.
    pub(crate) fn watch(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        from: Option<u64>,
    ) -> Result<(WatchStart, broadcast::Receiver<Arc<StoredEvent>>, u64), ApiError> {
        let inner = self.lock();
        let receiver = inner.events.subscribe();
        let rv = inner.rv;
        let in_scope = |v: &Value| ns.is_none_or(|ns| meta::namespace_of(v) == ns);
        match from {
            None | Some(0) => {
                let objects = inner
                    .objects
                    .get(&rt.id)
                    .map(|m| m.values().filter(|v| in_scope(v)).cloned().collect())
                    .unwrap_or_default();
                Ok((WatchStart::Initial(objects), receiver, rv))
            }
            Some(rv) if rv < inner.compacted => Err(ApiError::expired(rv, inner.compacted + 1)),
            Some(rv) => {
                let replay = inner
                    .history
                    .iter()
                    .filter(|e| e.rv > rv && e.resource == rt.id)
                    .cloned()
                    .collect();
                Ok((WatchStart::Replay(replay), receiver, rv))
            }
        }
    }
}

impl Inner {
    /// The objects map of a type.
    pub(crate) fn objects_of(&mut self, id: &ResourceId) -> &mut BTreeMap<ObjKey, Arc<Value>> {
        self.objects.entry(id.clone()).or_default()
    }

    /// The next resourceVersion.
    pub(crate) fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    /// Records an event in the history and sends it to watchers.
    pub(crate) fn emit(
        &mut self,
        rv: u64,
        resource: &ResourceId,
        kind: EventKind,
        object: Arc<Value>,
        old: Option<Arc<Value>>,
    ) {
        let event = Arc::new(StoredEvent {
            rv,
            resource: resource.clone(),
            kind,
            object,
            old,
        });
        self.history.push_back(Arc::clone(&event));
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.compacted = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.events.send(event);
    }
}

/// Sets `metadata.resourceVersion`.
pub(crate) fn set_rv(object: &mut Value, rv: u64) {
    meta::metadata_mut(object).insert("resourceVersion".into(), Value::String(rv.to_string()));
}

/// Parses a continue token made by [`Store::list`].
pub(crate) fn parse_continue(token: &str) -> Result<ObjKey, ApiError> {
    token
        .split_once('/')
        .map(|(ns, name)| ObjKey::new(ns, name))
        .ok_or_else(|| ApiError::bad_request(format!("invalid continue token \"{token}\"")))
}
