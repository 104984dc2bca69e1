//! Several hub replicas on one etcd store (DESIGN section 9): each follows the store through a
//! watch (a warm copy), one leads, elected on an etcd lease (see [`crate::store::etcd::election`]).
//!
//! - A follower serves `Replica` and health, and answers every AgentLink and Federation call with
//!   UNAVAILABLE and the leader's URL (metadata [`LEADER_METADATA`]); agents and cafectl move there.
//! - On winning the lead, the replica loads the hub from its copy (once the copy holds the
//!   election's revision, so everything the previous leader committed) and serves it, every commit
//!   conditional on the leader key.
//! - On losing it (no lease renewal confirmed in time, the lease gone, another record in the key,
//!   or a commit refused by the fence), it stops at once (its streams end) and the process exits
//!   with an error: it comes back, started again, as a follower. Kubernetes' own controllers do the
//!   same on a lost lease.

use super::server::{
    Bound, Listeners, ReplicaService, ReplicaView, ServeError, ServeOptions, ServerTls,
    grpc_server, lead, now_ms, reflection, serve_grpc, server_tls,
};
use super::{Hub, clock::SystemClock};
use crate::store::etcd::election::{DEFAULT_LEASE_TTL, Leadership};
use crate::store::{EtcdOptions, EtcdStore};
use cafe_proto::v1 as pb;
use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

pub use cafe_proto::protocol::LEADER_METADATA;

/// How a replica uses etcd.
#[derive(Debug, Clone)]
pub struct ReplicaOptions {
    /// The store.
    pub etcd: EtcdOptions,
    /// The leader's lease TTL.
    pub lease_ttl: Duration,
}

impl ReplicaOptions {
    /// The defaults for `etcd`.
    pub fn new(etcd: EtcdOptions) -> Self {
        Self {
            etcd,
            lease_ttl: DEFAULT_LEASE_TTL,
        }
    }
}

/// What this replica knows of the lead, for `GetReplica`, `/readyz` and the followers' answers.
struct Role {
    url: String,
    store: Arc<EtcdStore>,
    /// While this replica leads: when it took the lead, and its lease's renewals.
    leading: Mutex<Option<Arc<Leadership>>>,
}

impl Role {
    fn info(&self) -> pb::ReplicaInfo {
        let leading = self
            .leading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        // A copy that cannot follow the store cannot tell who leads.
        let leader = self
            .store
            .trouble()
            .is_none()
            .then(|| self.store.leader())
            .flatten();
        let mut info = pb::ReplicaInfo {
            url: self.url.clone(),
            role: if leading.is_some() {
                "Leader"
            } else {
                "Follower"
            }
            .to_owned(),
            store: format!("etcd ({})", self.store.endpoints()),
            now_ms: now_ms(),
            ..Default::default()
        };
        if let Some(leader) = &leader {
            info.leader_url = leader.url.clone();
            info.leader_since_ms = leader.since_ms;
        }
        if let Some(leading) = &leading {
            info.lease_renewed_ago_ms =
                i64::try_from(leading.renewed_ago().as_millis()).unwrap_or(i64::MAX);
        }
        if leader.is_none() {
            info.trouble = self.no_leader();
        }
        info
    }

    fn no_leader(&self) -> String {
        match self.store.trouble() {
            Some(trouble) => format!(
                "no hub replica leads, and the etcd store at {} cannot be read: {trouble}",
                self.store.endpoints()
            ),
            None => format!(
                "no hub replica leads the etcd store at {} yet (an election is under way)",
                self.store.endpoints()
            ),
        }
    }

    /// A follower's answer to any call but `Replica`.
    fn refusal(&self) -> tonic::Status {
        match self.store.leader() {
            Some(leader) if self.store.trouble().is_none() => {
                let mut status = tonic::Status::unavailable(format!(
                    "this hub replica ({}) is a follower; the leader is {}",
                    self.url, leader.url
                ));
                if let Ok(value) = leader.url.parse() {
                    status.metadata_mut().insert(LEADER_METADATA, value);
                }
                follower_refusal(status)
            }
            _ => follower_refusal(tonic::Status::unavailable(self.no_leader())),
        }
    }
}

/// Marks `status` as a follower replica's (`cafe-role: follower`): agents ask the replicas again
/// soon after it, rather than back off as from a hub that is down.
fn follower_refusal(mut status: tonic::Status) -> tonic::Status {
    status.metadata_mut().insert(
        cafe_proto::protocol::ROLE_METADATA,
        tonic::metadata::MetadataValue::from_static(cafe_proto::protocol::FOLLOWER_ROLE),
    );
    status
}

/// A service that answers every call with the follower's refusal, in the name of `S`.
struct Refuse<S> {
    role: Arc<Role>,
    _service: PhantomData<fn() -> S>,
}

impl<S> Clone for Refuse<S> {
    fn clone(&self) -> Self {
        Self {
            role: Arc::clone(&self.role),
            _service: PhantomData,
        }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Refuse<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower_service::Service<http::Request<B>> for Refuse<S> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: http::Request<B>) -> Self::Future {
        std::future::ready(Ok(self.role.refusal().into_http()))
    }
}

fn refuse<S>(role: &Arc<Role>) -> Refuse<S> {
    Refuse {
        role: Arc::clone(role),
        _service: PhantomData,
    }
}

/// A term's unique id: the URL, the process and a random part.
fn term_id(url: &str) -> String {
    use std::hash::BuildHasher as _;
    let random = std::collections::hash_map::RandomState::new().hash_one(now_ms());
    format!("{url}#{}-{random:016x}", std::process::id())
}

/// Serves as a follower until this replica leads, then as the leader until shutdown or until the
/// lead is lost ([`ServeError::LostLead`]).
pub async fn serve(
    options: ServeOptions,
    ready: impl FnOnce(Bound),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Some(replica) = options.replicated.clone() else {
        return Err(ServeError::Failed("no etcd store configured".to_owned()));
    };
    let store = Arc::new(EtcdStore::open(replica.etcd.clone()).await?);
    let listeners = Listeners::bind(&options).await?;
    let url = options.url(listeners.bound.grpc);
    let role = Arc::new(Role {
        url: url.clone(),
        store: Arc::clone(&store),
        leading: Mutex::new(None),
    });
    ready(listeners.bound);
    let cancel = super::server::cancelled_by(shutdown);
    tracing::info!(%url, store = %store.endpoints(), "cafe-hub follows; campaigning for the lead");
    let follower_stop = CancellationToken::new();
    let follower = tokio::spawn(follow(
        listeners.clone(),
        server_tls(&options)?,
        Arc::clone(&role),
        follower_stop.clone(),
    ));
    let id = term_id(&url);
    let leadership = tokio::select! {
        leadership = store.campaign(&id, &url, replica.lease_ttl) => Arc::new(leadership),
        () = cancel.cancelled() => {
            follower_stop.cancel();
            let _ = follower.await;
            return Ok(());
        }
    };
    follower_stop.cancel();
    // A follower holds no long streams (it refuses them): it drains at once. If not, it is
    // stopped: two servers must not take turns accepting on one listener.
    let mut follower = follower;
    if tokio::time::timeout(Duration::from_secs(2), &mut follower)
        .await
        .is_err()
    {
        tracing::warn!("the follower's server did not drain within 2 s; stopping it");
        follower.abort();
    }
    let fence = leadership.fence.clone();
    let loader = Arc::clone(&store);
    let policy = options.failover;
    let started = std::time::Instant::now();
    let hub = tokio::task::spawn_blocking(move || {
        Hub::load_fenced(Box::new(loader), Arc::new(SystemClock), policy, Some(fence))
    })
    .await
    .map_err(|e| ServeError::Failed(format!("loading the hub failed: {e}")))??;
    tracing::info!(took = ?started.elapsed(), "the leader loaded the hub from its copy of the store");
    *role
        .leading
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::clone(&leadership));
    let info: ReplicaView = {
        let role = Arc::clone(&role);
        Arc::new(move || role.info())
    };
    let lost = {
        let leadership = Arc::clone(&leadership);
        async move { leadership.lost().await }
    };
    let compaction = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .compact_every(crate::store::etcd::COMPACTION_PERIOD)
                .await;
        })
    };
    let served = lead(hub, &listeners, &options, info, cancel, lost).await;
    compaction.abort();
    // However else the lead ended (shutdown, a refused commit, a failure), this replica acts no
    // more: its lease goes now, so that a successor need not wait for it to expire. A lost lead
    // has already given its lease up (as far as etcd could be reached) and exits at once.
    if !matches!(served, Err(ServeError::LostLead(_))) {
        leadership.resign().await;
    }
    served
}

/// Serves a follower's answers on `listeners` until `stop` is cancelled.
async fn follow(
    listeners: Listeners,
    tls: Option<ServerTls>,
    role: Arc<Role>,
    stop: CancellationToken,
) {
    use cafe_proto::v1::agent_link_server::AgentLinkServer;
    use cafe_proto::v1::federation_server::FederationServer;
    type AgentLink = AgentLinkServer<super::link::AgentLinkService>;
    type Federation = FederationServer<super::api::FederationService>;
    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter.set_not_serving::<AgentLink>().await;
    health_reporter.set_not_serving::<Federation>().await;
    let info: ReplicaView = {
        let role = Arc::clone(&role);
        Arc::new(move || role.info())
    };
    // The whole server is not serving either: only the leader serves.
    health_reporter
        .set_service_status("", tonic_health::ServingStatus::NotServing)
        .await;
    let router = match reflection() {
        Ok((reflection, reflection_v1alpha)) => grpc_server()
            .add_service(health_service)
            .add_service(reflection)
            .add_service(reflection_v1alpha)
            .add_service(pb::replica_server::ReplicaServer::new(ReplicaService(info)))
            .add_service(refuse::<AgentLink>(&role))
            .add_service(refuse::<Federation>(&role)),
        Err(error) => {
            tracing::error!(%error, "cannot build the follower's server");
            return;
        }
    };
    let metrics = listeners.metrics.clone().map(|listener| {
        let role = Arc::clone(&role);
        let stop = stop.clone();
        tokio::spawn(async move {
            let readiness: crate::http::Readiness = Arc::new(move || {
                let info = role.info();
                if info.leader_url.is_empty() {
                    Err(info.trouble)
                } else {
                    Ok(format!("follower of {}", info.leader_url))
                }
            });
            crate::http::serve_metrics(
                listener,
                Arc::new(prometheus_client::registry::Registry::default()),
                readiness,
                stop.cancelled_owned(),
            )
            .await;
        })
    });
    if let Err(error) = serve_grpc(router, &listeners.grpc, tls, stop.clone()).await {
        tracing::error!(%error, "the follower's server failed");
    }
    if let Some(metrics) = metrics {
        let _ = metrics.await;
    }
}
