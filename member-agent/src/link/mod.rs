//! The agent side of AgentLink (DESIGN section 6): dial the hub, say Hello with what the cluster
//! holds, apply the snapshot and every later change through a [`ClusterSide`], report slice status
//! (debounced) and heartbeats, and reconnect with jittered backoff. When the hub is away the cluster
//! keeps running its last desired state: nothing is removed until a snapshot says so.

mod board;
mod kube_side;
mod session;

pub use board::StatusBoard;
pub use kube_side::{
    KubeClusterSide, SLICE_GENERATION_ANNOTATION, SLICE_ID_ANNOTATION, inplaceset_name,
};
pub use session::{HubEndpoint, LinkConfig, run_link};

use cafe_proto::v1 as pb;
use std::future::Future;

/// Why the link failed to apply or read something in the cluster.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// A Kubernetes call failed.
    #[error("{what}: {source}")]
    Kube {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// The slice cannot be turned into an InPlaceSet.
    #[error("slice {id}: {reason}")]
    BadSlice {
        /// The slice.
        id: String,
        /// Why.
        reason: String,
    },
    /// TLS material could not be read.
    #[error("TLS file {path}: {source}")]
    Tls {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The hub address is not a URL.
    #[error("hub address {0:?} is not a valid URL")]
    BadEndpoint(String),
}

impl LinkError {
    /// The error as one line for a slice problem the hub shows: an API server's refusal by its own
    /// message and reason (`... is forbidden: User "..." cannot patch ... (Forbidden, 403)`), without
    /// the client's debug dump of the Status.
    pub fn problem_message(&self) -> String {
        match self {
            Self::Kube {
                what,
                source: kube::Error::Api(status),
            } => format!(
                "{what}: {} ({}, {})",
                status.message, status.reason, status.code
            ),
            other => other.to_string(),
        }
    }
}

/// The cluster side of the link: where slices are written and status comes from. The kube
/// implementation ([`KubeClusterSide`]) writes InPlaceSets; the benchmark's light agents use one
/// that reports every slice ready as soon as it is applied.
pub trait ClusterSide: Send + Sync + 'static {
    /// The slices the cluster holds, with the generation applied of each.
    fn inventory(&self) -> impl Future<Output = Result<Vec<(String, u64)>, LinkError>> + Send;

    /// Writes the slice (only called with a generation newer than the one held).
    fn apply(&self, slice: &pb::Slice) -> impl Future<Output = Result<(), LinkError>> + Send;

    /// Removes the slice, draining its pods first.
    fn remove(
        &self,
        id: &str,
        generation: u64,
    ) -> impl Future<Output = Result<(), LinkError>> + Send;
}
