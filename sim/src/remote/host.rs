//! The host of a kubelet that runs against a real API server: pods and nodes come from watches,
//! writes go through the REST API with the object's resourceVersion (a conflict waits for the next
//! tick, as the real kubelet's status manager does).

use std::sync::Arc;

use kube::api::{Api, DeleteParams, DynamicObject, PostParams, Preconditions};
use kube::discovery::ApiResource;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::mirror::Mirror;
use crate::config::SimConfig;
use crate::host::Host;
use crate::store::meta::{name_of, namespace_of};
use crate::store::{ObjKey, Subresource};
use crate::traffic::TrafficCounters;

/// How long one write may take. The kubelet and the balancers write one pod at a time, so a request
/// that never answers must not hold every other pod up.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// What the kubelet and balancers share against one API server.
#[derive(Clone)]
pub(crate) struct RemoteHost {
    pub(crate) client: kube::Client,
    pub(crate) config: Arc<SimConfig>,
    pub(crate) traffic: Arc<TrafficCounters>,
    pub(crate) shutdown: CancellationToken,
    /// Pods bound to this simulation's nodes.
    pub(crate) pods: Mirror,
    /// This simulation's nodes.
    pub(crate) nodes: Mirror,
}

impl std::fmt::Debug for RemoteHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteHost")
            .field("cluster", &self.config.name)
            .finish_non_exhaustive()
    }
}

/// The API resource of pods, for dynamic (schema-free) access: every field the server sends is kept
/// when an object is written back, including those newer than this crate's Kubernetes types.
pub(crate) fn pod_resource() -> ApiResource {
    ApiResource::erase::<k8s_openapi::api::core::v1::Pod>(&())
}

impl RemoteHost {
    fn pods_api(&self, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(self.client.clone(), namespace, &pod_resource())
    }
}

impl Host for RemoteHost {
    fn config(&self) -> &SimConfig {
        &self.config
    }

    fn traffic(&self) -> &TrafficCounters {
        &self.traffic
    }

    fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    fn schedules(&self) -> bool {
        false
    }

    fn pods(&self) -> Vec<Arc<Value>> {
        self.pods.snapshot()
    }

    fn nodes(&self) -> Vec<Arc<Value>> {
        let mut nodes = self.nodes.snapshot();
        // Node indexes (pod IPs) follow the names, as in a simulated cluster.
        nodes.sort_by(|a, b| {
            a["metadata"]["name"]
                .as_str()
                .cmp(&b["metadata"]["name"].as_str())
        });
        nodes
    }

    async fn modify_pod(
        &self,
        pod: &Value,
        sub: Subresource,
        change: impl FnOnce(&mut Value) -> bool + Send,
    ) -> Option<Arc<Value>> {
        // The write carries this copy's resourceVersion: had the pod changed since (a deletion, a
        // controller's write), the API server answers 409 and the next tick decides again.
        let key = ObjKey::new(namespace_of(pod), name_of(pod));
        let key = &key;
        let mut copy = pod.clone();
        if !change(&mut copy) {
            return None;
        }
        copy["apiVersion"] = Value::from("v1");
        copy["kind"] = Value::from("Pod");
        let api = self.pods_api(&key.namespace);
        let params = PostParams::default();
        let object = match serde_json::from_value::<DynamicObject>(copy) {
            Ok(object) => object,
            Err(error) => {
                tracing::warn!(%error, pod = %key.name, "cannot decode a pod");
                return None;
            }
        };
        let write = async {
            match sub {
                Subresource::Status => api.replace_status(&key.name, &params, &object).await,
                Subresource::Main => api.replace(&key.name, &params, &object).await,
            }
        };
        let Ok(written) = tokio::time::timeout(WRITE_TIMEOUT, write).await else {
            tracing::warn!(pod = %key.name, timeout = ?WRITE_TIMEOUT, "a pod write did not answer");
            return None;
        };
        match written {
            Ok(object) => {
                let value = Arc::new(serde_json::to_value(object).ok()?);
                self.pods.put(Arc::clone(&value));
                Some(value)
            }
            // A conflict or a pod gone: the watch brings the news, and the next tick looks again.
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => None,
            Err(error) => {
                tracing::warn!(%error, pod = %key.name, "cannot write a pod");
                None
            }
        }
    }

    async fn finish_pod_deletion(&self, key: &ObjKey, uid: &str) {
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let api = self.pods_api(&key.namespace);
        let delete = api.delete(&key.name, &params);
        let Ok(answer) = tokio::time::timeout(WRITE_TIMEOUT, delete).await else {
            tracing::warn!(pod = %key.name, timeout = ?WRITE_TIMEOUT, "a pod deletion did not answer");
            return;
        };
        match answer {
            Ok(answer) => {
                tracing::debug!(pod = %key.name, gone = answer.is_right(), "deletion finished");
            }
            // Gone already, or replaced by a pod of the same name.
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => {
                tracing::debug!(pod = %key.name, code = status.code, "deletion already finished");
            }
            Err(error) => tracing::warn!(%error, pod = %key.name, "cannot finish a pod's deletion"),
        }
    }
}
