//! A watch-fed copy of one kind of object on a real API server, as JSON values.
//!
//! kube-runtime's watcher lists and watches (relisting on 410 Gone); each object is converted to JSON
//! once per event, so the kubelet's ticks read a snapshot without touching the network.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt as _;
use kube::api::{Api, DynamicObject};
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::store::meta::{meta_str, uid_of};

/// Which objects a mirror keeps.
pub(crate) type Keep = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// The objects of one kind, by uid.
#[derive(Clone)]
pub(crate) struct Mirror {
    objects: Arc<Mutex<HashMap<String, Arc<Value>>>>,
    synced: watch::Receiver<bool>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror").finish_non_exhaustive()
    }
}

/// A resourceVersion as a number, where the server's are numbers (etcd's are): lets a write's own
/// answer and the watch events agree on which copy is newer.
fn version(object: &Value) -> Option<u64> {
    meta_str(object, "resourceVersion").and_then(|rv| rv.parse().ok())
}

impl Mirror {
    /// Starts mirroring what `api` lists and `config` selects, keeping what `keep` accepts, until
    /// `shutdown`. The task is returned for the caller to supervise.
    pub(crate) fn start(
        api: Api<DynamicObject>,
        config: watcher::Config,
        keep: Keep,
        shutdown: CancellationToken,
    ) -> (Self, impl Future<Output = ()> + Send + 'static) {
        let objects = Arc::new(Mutex::new(HashMap::new()));
        let (synced_tx, synced) = watch::channel(false);
        let mirror = Self {
            objects: Arc::clone(&objects),
            synced,
        };
        let this = mirror.clone();
        let task = async move {
            let stream =
                kube::runtime::WatchStreamExt::default_backoff(watcher::watcher(api, config));
            futures::pin_mut!(stream);
            let mut relist: Option<HashMap<String, Arc<Value>>> = None;
            loop {
                let event = tokio::select! {
                    () = shutdown.cancelled() => return,
                    event = stream.next() => event,
                };
                let event = match event {
                    Some(Ok(event)) => event,
                    Some(Err(error)) => {
                        tracing::debug!(%error, "watch error; the watcher retries");
                        continue;
                    }
                    None => return,
                };
                let to_value = |o: DynamicObject| serde_json::to_value(o).ok().filter(|v| keep(v));
                match event {
                    Event::Init => relist = Some(HashMap::new()),
                    Event::InitApply(object) => {
                        if let (Some(list), Some(v)) = (relist.as_mut(), to_value(object)) {
                            list.insert(uid_of(&v).to_string(), Arc::new(v));
                        }
                    }
                    Event::InitDone => {
                        if let Some(list) = relist.take() {
                            *this.lock() = list;
                        }
                        let _ = synced_tx.send(true);
                    }
                    Event::Apply(object) => {
                        let uid = object.metadata.uid.clone().unwrap_or_default();
                        tracing::trace!(
                            name = ?object.metadata.name,
                            rv = ?object.metadata.resource_version,
                            deleting = object.metadata.deletion_timestamp.is_some(),
                            "watch event"
                        );
                        match to_value(object) {
                            Some(v) => this.record(Arc::new(v), true),
                            None => {
                                this.lock().remove(&uid);
                            }
                        }
                    }
                    Event::Delete(object) => {
                        let uid = object.metadata.uid.clone().unwrap_or_default();
                        this.lock().remove(&uid);
                    }
                }
            }
        };
        (mirror, task)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Value>>> {
        // The map stays consistent even if a holder panicked.
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every object.
    pub(crate) fn snapshot(&self) -> Vec<Arc<Value>> {
        self.lock().values().cloned().collect()
    }

    /// Records a copy the server returned from a write, unless the watch already brought a newer
    /// one or the object's deletion: a write's answer never brings a deleted object back.
    pub(crate) fn put(&self, object: Arc<Value>) {
        self.record(object, false);
    }

    /// Records `object` unless the copy held is newer; an object not held is added only when it
    /// comes from the watch.
    fn record(&self, object: Arc<Value>, from_watch: bool) {
        let uid = uid_of(&object).to_string();
        let mut objects = self.lock();
        let keep_held = match objects.get(&uid) {
            None => !from_watch,
            Some(known) => {
                matches!((version(known), version(&object)), (Some(k), Some(n)) if k > n)
            }
        };
        if !keep_held {
            objects.insert(uid, object);
        }
    }

    /// Waits until the first list has arrived.
    pub(crate) async fn wait_synced(&self) {
        let mut synced = self.synced.clone();
        let _ = synced.wait_for(|s| *s).await;
    }
}
