//! What the simulated kubelet and load balancers need from the cluster they run in.
//!
//! The same kubelet and balancers run in two places: inside a simulated cluster, where they read and
//! write its store directly ([`LocalHost`]), and against any API server, where they read pods and nodes
//! from watches and write through the REST API ([`crate::remote`]). A host hides that difference.

use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::state::ClusterState;
use crate::store::meta::{meta_str, name_of, namespace_of, uid_of};
use crate::store::registry::ResourceId;
use crate::store::{ObjKey, Subresource};
use crate::traffic::TrafficCounters;

/// The cluster a kubelet and its balancers run against.
pub(crate) trait Host: Send + Sync + 'static {
    /// The simulation's settings (timings, balancers).
    fn config(&self) -> &SimConfig;
    /// Where the prober counts requests.
    fn traffic(&self) -> &TrafficCounters;
    /// Cancelled when the simulation stops.
    fn shutdown(&self) -> &CancellationToken;
    /// Whether the kubelet binds pods to nodes itself. A real control plane has kube-scheduler for
    /// that, and the kubelet then only runs pods bound to its own nodes.
    fn schedules(&self) -> bool;
    /// The pods the kubelet and balancers look after, as the API serves them.
    fn pods(&self) -> Vec<Arc<Value>>;
    /// The simulated nodes.
    fn nodes(&self) -> Vec<Arc<Value>>;
    /// Applies `change` to `pod`, the copy the caller decided on, and writes it (the main resource
    /// or its status) when `change` says it changed something, on the condition that the pod has not
    /// changed since that copy (a real API server's resourceVersion check). Returns the object as
    /// written, or `None` when nothing was written (no change, gone, replaced or a conflict: the
    /// caller looks again at its next tick, with the newer copy).
    fn modify_pod(
        &self,
        pod: &Value,
        sub: Subresource,
        change: impl FnOnce(&mut Value) -> bool + Send,
    ) -> impl Future<Output = Option<Arc<Value>>> + Send;
    /// Finishes a graceful pod deletion, as the kubelet does once the containers stopped: deletes
    /// with grace period 0, on the condition that the uid is still `uid`.
    fn finish_pod_deletion(&self, key: &ObjKey, uid: &str) -> impl Future<Output = ()> + Send;
}

/// The host of a kubelet inside a simulated cluster: its own store.
#[derive(Debug, Clone)]
pub(crate) struct LocalHost(pub(crate) Arc<ClusterState>);

impl Host for LocalHost {
    fn config(&self) -> &SimConfig {
        &self.0.config
    }

    fn traffic(&self) -> &TrafficCounters {
        &self.0.traffic
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.0.shutdown
    }

    fn schedules(&self) -> bool {
        true
    }

    fn pods(&self) -> Vec<Arc<Value>> {
        self.0.store.snapshot(&ResourceId::new("", "pods"))
    }

    fn nodes(&self) -> Vec<Arc<Value>> {
        self.0.store.snapshot(&ResourceId::new("", "nodes"))
    }

    async fn modify_pod(
        &self,
        pod: &Value,
        sub: Subresource,
        change: impl FnOnce(&mut Value) -> bool + Send,
    ) -> Option<Arc<Value>> {
        // As a real API server would with the copy's resourceVersion: a pod changed since the copy
        // was read is not written, and the caller decides again on the newer one.
        let key = ObjKey::new(namespace_of(pod), name_of(pod));
        let version = meta_str(pod, "resourceVersion").map(str::to_owned);
        self.0.store.modify(
            &ResourceId::new("", "pods"),
            &key,
            uid_of(pod),
            sub,
            |current| meta_str(current, "resourceVersion") == version.as_deref() && change(current),
        )
    }

    async fn finish_pod_deletion(&self, key: &ObjKey, uid: &str) {
        self.0.store.finish_pod_deletion(key, uid);
    }
}
