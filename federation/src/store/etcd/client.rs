//! A small etcd v3 client over the protox-compiled subset of etcd's API (`cafe_proto::etcd`): one
//! lazy gRPC channel per member, calls that move to the next member when one does not answer, and
//! a deadline on every call.

use cafe_proto::etcd::etcdserverpb as pb;
use pb::kv_client::KvClient;
use pb::lease_client::LeaseClient;
use pb::watch_client::WatchClient;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// How long one call to one member may take. A member that lost its quorum never answers a
/// linearizable request; the call moves on to the next member.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a call goes on trying the members in turn.
const RETRY_BUDGET: Duration = Duration::from_secs(6);

/// The pause after every member has refused once.
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// The largest reply accepted: a range over every record of a large federation.
const MAX_REPLY_BYTES: usize = 512 * 1024 * 1024;

/// Client TLS for etcd: the CA that signed the members' certificates, and optionally a client
/// certificate (etcd's `--client-cert-auth`).
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    /// The CA certificate file (PEM).
    pub ca: Option<PathBuf>,
    /// The client certificate file (PEM).
    pub cert: Option<PathBuf>,
    /// Its key (PEM).
    pub key: Option<PathBuf>,
}

impl EtcdTls {
    /// Whether any TLS setting was given.
    pub fn is_set(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// Why etcd could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// A setting is wrong.
    #[error("{field}: {reason}")]
    Config {
        /// The flag or setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// No member answered.
    #[error("etcd at {endpoints} did not answer {operation}: {reason}")]
    Unreachable {
        /// What was asked.
        operation: &'static str,
        /// Every member's URL.
        endpoints: String,
        /// The last member's answer.
        reason: String,
        /// Whether no member answered at all (rather than one refusing the request).
        retried: bool,
    },
}

/// The members of one etcd cluster.
#[derive(Clone)]
pub struct EtcdClient {
    urls: Arc<[String]>,
    channels: Arc<[Channel]>,
    /// The member calls go to first: the last one that answered.
    current: Arc<AtomicUsize>,
}

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

fn read(path: &PathBuf, field: &'static str) -> Result<String, EtcdError> {
    std::fs::read_to_string(path).map_err(|e| EtcdError::Config {
        field,
        reason: format!("cannot read {}: {e}", path.display()),
    })
}

/// Whether a failed call may succeed on another member (or later): the member is down, slow or
/// without quorum, rather than refusing the request itself.
fn retryable(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled
    )
}

impl EtcdClient {
    /// A client of `endpoints` (`http://` or, with `tls`, `https://` URLs). Connects lazily.
    pub fn new(endpoints: &[String], tls: &EtcdTls) -> Result<Self, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::Config {
                field: "--etcd-endpoints",
                reason: "at least one URL is required".to_owned(),
            });
        }
        let tls_config = if tls.is_set() {
            let Some(ca) = &tls.ca else {
                return Err(EtcdError::Config {
                    field: "--etcd-ca",
                    reason: "the CA that verifies the etcd members is required with \
                             --etcd-cert and --etcd-key"
                        .to_owned(),
                });
            };
            let mut config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(read(ca, "--etcd-ca")?));
            match (&tls.cert, &tls.key) {
                (Some(cert), Some(key)) => {
                    config = config.identity(Identity::from_pem(
                        read(cert, "--etcd-cert")?,
                        read(key, "--etcd-key")?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(EtcdError::Config {
                        field: "--etcd-cert",
                        reason: "--etcd-cert and --etcd-key go together".to_owned(),
                    });
                }
            }
            Some(config)
        } else {
            None
        };
        let mut channels = Vec::with_capacity(endpoints.len());
        for url in endpoints {
            let bad = |reason: String| EtcdError::Config {
                field: "--etcd-endpoints",
                reason: format!("{url:?}: {reason}"),
            };
            let secure = url.starts_with("https://");
            if !secure && !url.starts_with("http://") {
                return Err(bad("must start with http:// or https://".to_owned()));
            }
            if secure != tls_config.is_some() {
                return Err(bad(if secure {
                    "an https:// member needs --etcd-ca".to_owned()
                } else {
                    "with --etcd-ca, members must be https://".to_owned()
                }));
            }
            let mut endpoint = Endpoint::from_shared(url.clone())
                .map_err(|e| bad(e.to_string()))?
                .connect_timeout(CALL_TIMEOUT)
                .http2_keep_alive_interval(Duration::from_secs(2))
                .keep_alive_timeout(Duration::from_secs(2))
                .keep_alive_while_idle(true);
            if let Some(config) = &tls_config {
                endpoint = endpoint
                    .tls_config(config.clone())
                    .map_err(|e| bad(e.to_string()))?;
            }
            channels.push(endpoint.connect_lazy());
        }
        Ok(Self {
            urls: endpoints.to_vec().into(),
            channels: channels.into(),
            current: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Every member's URL, comma-separated.
    pub fn endpoints(&self) -> String {
        self.urls.join(",")
    }

    fn channel(&self, attempt: usize) -> (usize, Channel) {
        let index = (self.current.load(Ordering::Relaxed) + attempt) % self.channels.len();
        (index, self.channels[index].clone())
    }

    /// Runs `call` against one member after another until one answers (or refuses for a reason
    /// another member would share), each within [`CALL_TIMEOUT`].
    async fn call<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T, EtcdError>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        // Members are tried in turn until one answers or the budget is spent: an etcd leader
        // election (a member lost) takes a second or two, during which every member refuses.
        let started = tokio::time::Instant::now();
        let mut reason = String::new();
        let mut attempt = 0;
        while attempt < self.channels.len() || started.elapsed() < RETRY_BUDGET {
            let (index, channel) = self.channel(attempt);
            attempt += 1;
            match tokio::time::timeout(CALL_TIMEOUT, call(channel)).await {
                Ok(Ok(response)) => {
                    self.current.store(index, Ordering::Relaxed);
                    return Ok(response.into_inner());
                }
                Ok(Err(status)) if !retryable(&status) => {
                    return Err(EtcdError::Unreachable {
                        operation,
                        endpoints: self.endpoints(),
                        reason: format!("{}: {}", self.urls[index], status.message()),
                        retried: false,
                    });
                }
                Ok(Err(status)) => {
                    reason = format!("{}: {}", self.urls[index], status.message());
                }
                Err(_) => {
                    reason = format!("{}: no answer within {CALL_TIMEOUT:?}", self.urls[index]);
                }
            }
            if attempt % self.channels.len() == 0 {
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
        Err(EtcdError::Unreachable {
            operation,
            endpoints: self.endpoints(),
            reason,
            retried: true,
        })
    }

    /// `KV.Txn`.
    pub async fn txn(&self, request: pb::TxnRequest) -> Result<pb::TxnResponse, EtcdError> {
        self.call("a transaction", |channel| {
            let request = request.clone();
            async move { KvClient::new(channel).txn(request).await }
        })
        .await
    }

    /// `KV.Range`.
    pub async fn range(&self, request: pb::RangeRequest) -> Result<pb::RangeResponse, EtcdError> {
        self.call("a range read", |channel| {
            let request = request.clone();
            async move {
                KvClient::new(channel)
                    .max_decoding_message_size(MAX_REPLY_BYTES)
                    .range(request)
                    .await
            }
        })
        .await
    }

    /// `KV.Compact`: drops the history before `revision`. A revision already compacted is no error.
    pub async fn compact(&self, revision: i64) -> Result<(), EtcdError> {
        let result = self
            .call("a compaction", |channel| async move {
                KvClient::new(channel)
                    .compact(pb::CompactionRequest {
                        revision,
                        physical: false,
                    })
                    .await
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(EtcdError::Unreachable { reason, .. }) if reason.contains("compacted") => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// `Lease.LeaseGrant`.
    pub async fn grant(&self, ttl: Duration) -> Result<pb::LeaseGrantResponse, EtcdError> {
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        self.call("a lease grant", |channel| async move {
            LeaseClient::new(channel)
                .lease_grant(pb::LeaseGrantRequest { ttl, id: 0 })
                .await
        })
        .await
    }

    /// `Lease.LeaseRevoke`.
    pub async fn revoke(&self, id: i64) -> Result<(), EtcdError> {
        self.call("a lease revocation", |channel| async move {
            LeaseClient::new(channel)
                .lease_revoke(pb::LeaseRevokeRequest { id })
                .await
        })
        .await
        .map(|_| ())
    }

    /// One keep-alive of lease `id`: its remaining TTL in seconds (0 or less: the lease is gone).
    pub async fn keep_alive(&self, id: i64) -> Result<i64, EtcdError> {
        self.call("a lease keep-alive", |channel| async move {
            let request = tokio_stream::once(pb::LeaseKeepAliveRequest { id });
            let mut replies = LeaseClient::new(channel)
                .lease_keep_alive(request)
                .await?
                .into_inner();
            match replies.message().await? {
                Some(reply) => Ok(tonic::Response::new(reply)),
                None => Err(tonic::Status::unavailable("the keep-alive stream ended")),
            }
        })
        .await
        .map(|reply| reply.ttl)
    }

    /// A watch stream on the member calls go to, with `create` as its first request.
    pub async fn watch(
        &self,
        create: pb::WatchCreateRequest,
    ) -> Result<tonic::Streaming<pb::WatchResponse>, EtcdError> {
        self.call("a watch", |channel| {
            let create = create.clone();
            async move {
                let request = pb::WatchRequest {
                    request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
                };
                // The request stream stays open: etcd cancels a watch whose client stream ends.
                let requests = tokio_stream::once(request).chain(tokio_stream::pending());
                let mut request = tonic::Request::new(requests);
                // etcd's "require leader": the member ends the watch when it has no raft leader,
                // rather than keep a stream that can tell nothing new (a lost quorum).
                request.metadata_mut().insert(
                    "hasleader",
                    tonic::metadata::MetadataValue::from_static("true"),
                );
                WatchClient::new(channel)
                    .max_decoding_message_size(MAX_REPLY_BYTES)
                    .watch(request)
                    .await
            }
        })
        .await
    }
}

use tokio_stream::StreamExt as _;
