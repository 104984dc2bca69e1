//! `cafe-hub serve`: the gRPC servers (AgentLink, Federation, health, reflection) over mTLS, the
//! coordinator, and the `/metrics` and health endpoints.

use super::api::FederationService;
use super::clock::SystemClock;
use super::link::AgentLinkService;
use super::{Hub, HubError};
use crate::store::RedbStore;
use cafe_proto::v1 as pb;
use cafe_proto::v1::agent_link_server::AgentLinkServer;
use cafe_proto::v1::federation_server::FederationServer;
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
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
    /// The URL agents and cafectl reach this replica at (default `https://LISTEN`, or `http://`
    /// with `insecure`): what followers send callers to, and what `cafectl get hubs` shows.
    pub advertise_url: Option<String>,
    /// Serve as one of several replicas on etcd, rather than alone on redb.
    pub replicated: Option<super::replicated::ReplicaOptions>,
    /// Where to post release and failover events (`--notify-webhook`), if anywhere.
    pub notify_webhook: Option<String>,
}

impl ServeOptions {
    /// The URL this replica advertises.
    pub fn url(&self, bound: SocketAddr) -> String {
        match &self.advertise_url {
            Some(url) => url.clone(),
            None if self.insecure => format!("http://{bound}"),
            None => format!("https://{bound}"),
        }
    }
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
    /// This replica lost the lead; it stopped acting and exits, to come back as a follower.
    #[error("this replica stopped leading: {0}")]
    LostLead(String),
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
/// `shutdown` resolves; then drains the servers. With [`ServeOptions::replicated`], serves as one
/// replica of several on etcd (see [`super::replicated`]).
pub async fn serve(
    options: ServeOptions,
    ready: impl FnOnce(Bound),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    if options.replicated.is_some() {
        return super::replicated::serve(options, ready, shutdown).await;
    }
    let store = RedbStore::open(&options.data_dir)?;
    let hub = Hub::load_with(Box::new(store), Arc::new(SystemClock), options.failover)?;
    serve_hub(hub, options, ready, shutdown).await
}

/// Serves an already loaded hub alone (the benchmark builds its own).
pub async fn serve_hub(
    hub: Hub,
    options: ServeOptions,
    ready: impl FnOnce(Bound),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listeners = Listeners::bind(&options).await?;
    let url = options.url(listeners.bound.grpc);
    let store = format!("redb ({})", options.data_dir.display());
    let info: ReplicaView = Arc::new(move || pb::ReplicaInfo {
        url: url.clone(),
        role: "Leader".to_owned(),
        store: store.clone(),
        leader_url: url.clone(),
        now_ms: now_ms(),
        ..Default::default()
    });
    ready(listeners.bound);
    let cancel = cancelled_by(shutdown);
    lead(
        hub,
        &listeners,
        &options,
        info,
        cancel,
        std::future::pending(),
    )
    .await
}

/// A token cancelled when `shutdown` resolves.
pub(super) fn cancelled_by(
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> CancellationToken {
    let cancel = CancellationToken::new();
    let token = cancel.clone();
    tokio::spawn(async move {
        shutdown.await;
        token.cancel();
    });
    cancel
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// What `GetReplica` answers, computed when asked.
pub(super) type ReplicaView = Arc<dyn Fn() -> pb::ReplicaInfo + Send + Sync>;

/// A listener several servers take turns on (a follower's, then the leader's), so that the port
/// never closes in between.
#[derive(Clone)]
pub(super) struct SharedListener(Arc<TcpListener>);

impl SharedListener {
    async fn bind(addr: SocketAddr) -> Result<(Self, SocketAddr), ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| ServeError::Bind { addr, source })?;
        Ok((Self(Arc::new(listener)), bound))
    }

    /// The accepted connections, for tonic.
    pub(super) fn incoming(
        &self,
    ) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static
    {
        futures::stream::unfold(Arc::clone(&self.0), |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            Some((accepted, listener))
        })
    }

    /// The accepted connections after their TLS handshake ([`crate::tls::tls_incoming`]).
    fn tls_incoming(
        &self,
        tls: ServerTls,
        stop: CancellationToken,
    ) -> impl tokio_stream::Stream<
        Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>,
    > + Send
    + 'static {
        crate::tls::tls_incoming(Arc::clone(&self.0), tls, stop)
    }
}

impl axum::serve::Listener for SharedListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(accepted) => return accepted,
                Err(error) => {
                    tracing::warn!(%error, "cannot accept a metrics connection");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// The bound gRPC and metrics listeners.
#[derive(Clone)]
pub(super) struct Listeners {
    pub(super) grpc: SharedListener,
    pub(super) metrics: Option<SharedListener>,
    pub(super) bound: Bound,
}

impl Listeners {
    pub(super) async fn bind(options: &ServeOptions) -> Result<Self, ServeError> {
        let (grpc, grpc_addr) = SharedListener::bind(options.listen).await?;
        let (metrics, metrics_addr) = match options.metrics_listen {
            Some(addr) => {
                let (listener, bound) = SharedListener::bind(addr).await?;
                (Some(listener), Some(bound))
            }
            None => (None, None),
        };
        Ok(Self {
            grpc,
            metrics,
            bound: Bound {
                grpc: grpc_addr,
                metrics: metrics_addr,
            },
        })
    }
}

/// The server TLS of `options`: `None` with `insecure`.
pub(super) fn server_tls(options: &ServeOptions) -> Result<Option<ServerTls>, ServeError> {
    match (&options.tls_dir, options.insecure) {
        (Some(dir), _) => Ok(Some(Arc::new(crate::tls::ReloadingServerTls::load(
            crate::tls::hub_tls_files(dir),
        )?))),
        (None, true) => Ok(None),
        (None, false) => Err(ServeError::NoTls),
    }
}

/// The hub's server TLS, shared by the servers that take turns on the listener.
pub(super) type ServerTls = Arc<crate::tls::ReloadingServerTls>;

/// A gRPC server with the hub's transport settings. TLS is not tonic's: [`serve_grpc`] does the
/// handshakes, so that a rotated certificate serves the next connection.
pub(super) fn grpc_server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        // One span per call, so that what a handler logs names the RPC it serves.
        .trace_fn(|request| tracing::info_span!("rpc", method = %request.uri().path()))
}

/// Counts every call of the wrapped service in `cafe_hub_api_calls_total{method}`, whatever its
/// answer: what a client costs the hub, a console or a script that polls included.
#[derive(Debug, Clone)]
struct CountCalls<S> {
    inner: S,
    metrics: super::metrics::HubMetrics,
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for CountCalls<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower_service::Service<http::Request<B>> for CountCalls<S>
where
    S: tower_service::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().rsplit('/').next().unwrap_or_default();
        self.metrics.api_call(method);
        self.inner.call(request)
    }
}

/// Serves `router` on `listener` until `stop` is cancelled: over TLS with the certificate the
/// files hold when each connection arrives, or plaintext without `tls`.
pub(super) async fn serve_grpc(
    router: tonic::transport::server::Router,
    listener: &SharedListener,
    tls: Option<ServerTls>,
    stop: CancellationToken,
) -> Result<(), ServeError> {
    let served = match tls {
        Some(tls) => {
            router
                .serve_with_incoming_shutdown(
                    listener.tls_incoming(tls, stop.clone()),
                    stop.cancelled_owned(),
                )
                .await
        }
        None => {
            router
                .serve_with_incoming_shutdown(listener.incoming(), stop.cancelled_owned())
                .await
        }
    };
    served.map_err(ServeError::Transport)
}

/// gRPC server reflection over every cafe service, in both versions clients speak: v1, and the
/// v1alpha of grpcio-reflection, older grpcurl and Postman.
pub(super) fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    ServeError,
> {
    let failed = |e: tonic_reflection::server::Error| {
        ServeError::Hub(HubError::FailedPrecondition(format!("reflection: {e}")))
    };
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(cafe_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    Ok((
        builder().build_v1().map_err(failed)?,
        builder().build_v1alpha().map_err(failed)?,
    ))
}

/// The `Replica` service: this replica's role, whatever it is.
#[derive(Clone)]
pub(super) struct ReplicaService(pub(super) ReplicaView);

#[tonic::async_trait]
impl pb::replica_server::Replica for ReplicaService {
    async fn get_replica(
        &self,
        _request: tonic::Request<pb::GetReplicaRequest>,
    ) -> Result<tonic::Response<pb::ReplicaInfo>, tonic::Status> {
        let mut info = (self.0)();
        info.version = env!("CARGO_PKG_VERSION").to_owned();
        Ok(tonic::Response::new(info))
    }
}

/// Serves `hub` as the leader on `listeners` until `cancel` is cancelled (drains, then `Ok`), the
/// hub fails, or `lost` resolves (stops at once: [`ServeError::LostLead`]).
pub(super) async fn lead(
    hub: Hub,
    listeners: &Listeners,
    options: &ServeOptions,
    info: ReplicaView,
    shutdown: CancellationToken,
    lost: impl std::future::Future<Output = String>,
) -> Result<(), ServeError> {
    let tls = server_tls(options)?;
    let insecure = tls.is_none();
    if let Some(url) = &options.notify_webhook {
        hub.notify_to(url.clone());
    }
    // Every task of the server stops when this is cancelled: on shutdown, or when one fails.
    let cancel = CancellationToken::new();
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<FederationServer<FederationService>>()
        .await;
    health_reporter
        .set_serving::<AgentLinkServer<AgentLinkService>>()
        .await;
    let (reflection, reflection_v1alpha) = reflection()?;
    let router = grpc_server()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(pb::replica_server::ReplicaServer::new(ReplicaService(info)))
        .add_service(
            AgentLinkServer::new(AgentLinkService::new(hub.clone(), insecure))
                .max_decoding_message_size(MAX_MESSAGE_BYTES),
        )
        .add_service(CountCalls {
            inner: FederationServer::new(FederationService::new(hub.clone(), insecure))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            metrics: hub.metrics().clone(),
        });

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
    {
        let hub = hub.clone();
        let cancel = cancel.clone();
        tasks.spawn(async move {
            super::analysis::run_analysis(hub, cancel.cancelled_owned()).await;
            Ok(())
        });
    }
    if let Some(listener) = listeners.metrics.clone() {
        let mut registry = Registry::default();
        hub.metrics().register(&mut registry);
        registry.register_collector(Box::new(hub.state_collector()));
        let cancel = cancel.clone();
        tasks.spawn(async move {
            crate::http::serve_metrics(
                listener,
                Arc::new(registry),
                Arc::new(|| Ok("leader".to_owned())),
                cancel.cancelled_owned(),
            )
            .await;
            Ok(())
        });
    }
    {
        let cancel = cancel.clone();
        let listener = listeners.grpc.clone();
        tasks.spawn(async move { serve_grpc(router, &listener, tls, cancel).await });
    }
    let grpc_addr = listeners.bound.grpc;
    tracing::info!(%grpc_addr, metrics_addr = ?listeners.bound.metrics, insecure, "cafe-hub serving");
    tokio::pin!(lost);
    // The first failure ends the server; a task that ends before shutdown is one.
    let mut result = Ok(());
    let mut stopping = false;
    loop {
        tokio::select! {
            () = shutdown.cancelled(), if !stopping => {
                stopping = true;
                cancel.cancel();
            }
            // Armed while draining too: a replica that loses the lead stops at once, whatever.
            reason = &mut lost => {
                // At once, without draining: the streams end now (the hub tells them), and the
                // process goes before anything else can be sent.
                hub.stop(&reason);
                cancel.cancel();
                return Err(ServeError::LostLead(reason));
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
