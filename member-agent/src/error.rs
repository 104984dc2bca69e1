//! The controller layer's errors.

use crate::desired::SpecError;
use crate::podspec::PodBuildError;

/// Why a reconcile or the controller failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A Kubernetes API call failed (retried with backoff).
    #[error("{what}: {source}")]
    Kube {
        /// What the agent was doing.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The set's spec cannot be acted on (not retried until it changes).
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The template does not make a pod.
    #[error(transparent)]
    PodBuild(#[from] PodBuildError),
    /// A value could not be serialized.
    #[error("cannot serialize: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The set lacks metadata the API server always sets.
    #[error("the InPlaceSet has no {0}")]
    MissingMetadata(&'static str),
    /// The CRD did not become servable in time.
    #[error("the InPlaceSet CRD was not served within {0:?}")]
    CrdNotServed(std::time::Duration),
    /// The kubeconfig cannot be read.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// Its path.
        path: String,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The hub link failed for good (a bad address or unreadable certificates).
    #[error("hub link: {0}")]
    Link(#[source] crate::link::LinkError),
    /// Neither an in-cluster configuration nor a kubeconfig was found.
    #[error("no cluster configuration: {0}")]
    InferConfig(#[source] kube::config::InferConfigError),
    /// Another replica may lead now: this one stopped acting.
    #[error("lost the leader lease: {0}")]
    LostLease(String),
    /// Serving metrics failed.
    #[error("metrics server on {addr}: {source}")]
    MetricsServer {
        /// The address.
        addr: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Wraps a client error with what the agent was doing.
    pub(crate) fn kube(what: impl Into<String>, source: kube::Error) -> Self {
        Self::Kube {
            what: what.into(),
            source,
        }
    }

    /// A stale precondition (409) or a pod that is gone (404): the view was out of date, which the
    /// next reconcile fixes; not worth a backoff.
    pub(crate) fn is_stale_view(&self) -> bool {
        matches!(self, Self::Kube { source: kube::Error::Api(status), .. } if status.code == 409 || status.code == 404)
    }
}
