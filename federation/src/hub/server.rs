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
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

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
    /// The hub failed while serving: its store writer or one of its tasks panicked or ended.
    #[error("the hub failed: {0}")]
    Failed(String),
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

    // Every task of the server stops when this is cancelled: on shutdown, or when one fails.
    let cancel = CancellationToken::new();
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
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        // One span per call, so that what a handler logs names the RPC it serves.
        .trace_fn(|request| tracing::info_span!("rpc", method = %request.uri().path()));
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

    let mut tasks: JoinSet<Result<(), ServeError>> = JoinSet::new();
    {
        let hub = hub.clone();
        let cancel = cancel.clone();
        tasks.spawn(
            async move {
                hub.run_coordinator(cancel.cancelled_owned()).await;
                Ok(())
            }
            .instrument(tracing::info_span!("coordinator")),
        );
    }
    if let Some(listener) = metrics_listener {
        let mut registry = Registry::default();
        hub.metrics().register(&mut registry);
        let cancel = cancel.clone();
        tasks.spawn(async move {
            crate::http::serve_metrics(listener, Arc::new(registry), cancel.cancelled_owned())
                .await;
            Ok(())
        });
    }
    {
        let cancel = cancel.clone();
        tasks.spawn(async move {
            router
                .serve_with_incoming_shutdown(
                    TcpListenerStream::new(listener),
                    cancel.cancelled_owned(),
                )
                .await
                .map_err(ServeError::Transport)
        });
    }
    ready(Bound {
        grpc: grpc_addr,
        metrics: metrics_addr,
    });
    tracing::info!(%grpc_addr, ?metrics_addr, insecure, "cafe-hub serving");
    tokio::pin!(shutdown);
    // The first failure ends the server; a task that ends before shutdown is one.
    let mut result = Ok(());
    let mut stopping = false;
    loop {
        tokio::select! {
            () = &mut shutdown, if !stopping => {
                stopping = true;
                cancel.cancel();
            }
            reason = hub.failed(), if !stopping => {
                stopping = true;
                result = Err(ServeError::Failed(reason));
                cancel.cancel();
            }
            joined = tasks.join_next() => {
                let Some(joined) = joined else { break };
                let outcome = match joined {
                    Ok(Ok(())) if stopping => Ok(()),
                    Ok(Ok(())) => Err(ServeError::Failed("a server task ended early".to_owned())),
                    Ok(Err(error)) => Err(error),
                    Err(error) => Err(ServeError::Failed(format!("a server task failed: {error}"))),
                };
                if let Err(error) = outcome {
                    tracing::error!(%error, "the hub stops");
                    if result.is_ok() {
                        result = Err(error);
                    }
                    stopping = true;
                    cancel.cancel();
                }
            }
        }
    }
    result
}
