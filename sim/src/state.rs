//! The state shared by one cluster's API server and simulated controllers.

use std::net::SocketAddr;

use tokio_util::sync::CancellationToken;

use crate::config::SimConfig;
use crate::faults::FaultState;
use crate::store::Store;
use crate::traffic::TrafficCounters;

/// Everything one cluster's tasks share (the `Context` of the simulator).
#[derive(Debug)]
pub(crate) struct ClusterState {
    /// The configuration it was started with.
    pub(crate) config: SimConfig,
    /// The address the API server listens on.
    pub(crate) addr: SocketAddr,
    /// Objects.
    pub(crate) store: Store,
    /// Injected faults.
    pub(crate) faults: FaultState,
    /// Traffic figures.
    pub(crate) traffic: TrafficCounters,
    /// Cancelled when the cluster shuts down.
    pub(crate) shutdown: CancellationToken,
}
