//! Errors of the simulator's library surface (starting and driving a cluster).

use std::io;

/// Why a simulated cluster could not be started or driven.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The HTTP listener could not be bound.
    #[error("cannot bind the API server to {addr}")]
    Bind {
        /// The address that was asked for.
        addr: String,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// The configuration is not usable.
    #[error("invalid simulator configuration: {0}")]
    Config(String),
    /// A built-in object could not be created at start-up (a bug in the simulator).
    #[error("cannot seed the cluster with {what}: {message}")]
    Seed {
        /// What was being created.
        what: String,
        /// The API error's message.
        message: String,
    },
    /// The kubeconfig could not be written.
    #[error("cannot write the kubeconfig to {path}")]
    WriteKubeconfig {
        /// The target path.
        path: String,
        /// The underlying I/O error.
        #[source]
        source: io::Error,
    },
    /// A request to a real API server failed (simulated nodes, control-plane set-up).
    #[error("{what}")]
    Kube {
        /// What was being done.
        what: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// A control-plane process could not be prepared or started.
    #[error("{what}")]
    ControlPlane {
        /// What went wrong, with the file or process concerned.
        what: String,
        /// The underlying I/O error, if any.
        #[source]
        source: Option<io::Error>,
    },
}
