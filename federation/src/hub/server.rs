//! `cafe-hub serve`: the gRPC servers (AgentLink, Federation, health, reflection) over mTLS, the
//! coordinator, and the `/metrics` and health endpoints.

use super::api::FederationService;
use super::clock::SystemClock;
use super::link::AgentLinkService;
use super::{Hub, HubError};
use crate::store::RedbStore;
use cafe_proto::v1::agent_link_server::AgentLinkServer;
use cafe_proto::v1::federation_server::FederationServer;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// Largest gRPC message accepted: a bulk apply of many deployments.
use cafe_proto::protocol::MAX_MESSAGE_BYTES;

/// How the hub serves.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Where the redb store lives.
    pub data_dir: PathBuf,
    /// The gRPC address (AgentLink and Federation).
    pub listen: SocketAddr,
    /// The `/metrics` and `/healthz` address; none when `None`.
    pub metrics_listen: Option<SocketAddr>,
    /// The directory of `cafe-hub init` (CA and hub certificate); `None` only with `insecure`.
    pub tls_dir: Option<PathBuf>,
    /// Serve plaintext gRPC and trust callers: for local tries only.
    pub insecure: bool,
    /// Automatic failover.
    pub failover: super::failover::FailoverPolicy,
}

/// A serve failure.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The hub's state could not be loaded.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// TLS material is missing or bad.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("the gRPC server failed")]
    Transport(#[source] tonic::transport::Error),
    /// Neither TLS nor `--insecure` was given.
    #[error("give --tls-dir (from `cafe-hub init`) or, for local tries only, --insecure")]
    NoTls,
}

/// The bound addresses of a running hub.
#[derive(Debug, Clone, Copy)]
pub struct Bound {
    /// gRPC.
    pub grpc: SocketAddr,
    /// Metrics, when served.
    pub metrics: Option<SocketAddr>,
}

/// Opens the store, binds the listeners, calls `ready` with the bound addresses, and serves until
/// `shutdown` resolves; then drains the servers.
pub async fn serve(
    options: ServeOptions,
    ready: impl FnOnce(Bound),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store = RedbStore::open(&options.data_dir)?;
    let hub = Hub::load_with(Box::new(store), Arc::new(SystemClock), options.failover)?;
    serve_hub(hub, options, ready, shutdown).await
}

/// Serves an already loaded hub (the benchmark builds its own).
pub async fn serve_hub(
    hub: Hub,
    options: ServeOptions,
    ready: impl FnOnce(Bound),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let tls = match (&options.tls_dir, options.insecure) {
        (Some(dir), _) => Some(crate::tls::server_tls_config(dir)?),
        (None, true) => None,
        (None, false) => return Err(ServeError::NoTls),
    };
    let insecure = tls.is_none();
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|source| ServeError::Bind {
            addr: options.listen,
            source,
        })?;
    let grpc_addr = listener.local_addr().map_err(|source| ServeError::Bind {
        addr: options.listen,
        source,
    })?;
    let metrics_listener = match options.metrics_listen {
        Some(addr) => Some(
            TcpListener::bind(addr)
                .await
                .map_err(|source| ServeError::Bind { addr, source })?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().and_then(|l| l.local_addr().ok());

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<FederationServer<FederationService>>()
        .await;
    health_reporter
        .set_serving::<AgentLinkServer<AgentLinkService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cafe_proto::FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServeError::Hub(HubError::FailedPrecondition(format!("reflection: {e}"))))?;

    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)));
    if let Some(tls) = tls {
        builder = builder.tls_config(tls).map_err(ServeError::Transport)?;
    }
    let router = builder
        .add_service(health_service)
        .add_service(reflection)
        .add_service(
            AgentLinkServer::new(AgentLinkService::new(hub.clone(), insecure))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(
            FederationServer::new(FederationService::new(hub.clone(), insecure))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        );

    let coordinator = {
        let hub = hub.clone();
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move { hub.run_coordinator(stop).await })
    };
    let metrics_task = metrics_listener.map(|listener| {
        let mut registry = Registry::default();
        hub.metrics().register(&mut registry);
        tokio::spawn(crate::http::serve_metrics(
            listener,
            Arc::new(registry),
            stopped(stop_rx.clone()),
        ))
    });
    ready(Bound {
        grpc: grpc_addr,
        metrics: metrics_addr,
    });
    tracing::info!(%grpc_addr, ?metrics_addr, insecure, "cafe-hub serving");
    let served = router
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), stopped(stop_rx))
        .await
        .map_err(ServeError::Transport);
    let _ = coordinator.await;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    served
}
