//! One agent's connection to the hub: dial, Hello, snapshot, changes, reports, reconnect.

use super::{ClusterSide, LinkError, StatusBoard};
use cafe_proto::protocol;
use cafe_proto::v1 as pb;
use cafe_proto::v1::agent_link_client::AgentLinkClient;
use cafe_proto::v1::agent_message::Kind as AgentKind;
use cafe_proto::v1::hub_message::Kind as HubKind;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// How often the agent sends a heartbeat until the hub's `Welcome` says otherwise (the hub marks a
/// cluster Unknown after [`protocol::MISSED_HEARTBEATS`] missed).
pub use cafe_proto::protocol::HEARTBEAT_INTERVAL;
/// Statuses posted within this window go out together, the latest of each slice.
pub const REPORT_DEBOUNCE: Duration = Duration::from_millis(50);
/// The first reconnect delay; doubled up to [`MAX_BACKOFF`], with jitter.
pub const MIN_BACKOFF: Duration = Duration::from_millis(200);
/// The longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How often slices the cluster refused are tried again.
pub const RETRY_FAILED: Duration = Duration::from_secs(2);
/// The problem reason of a slice the cluster refused to take.
pub const SLICE_NOT_APPLIED: &str = "SliceNotApplied";
/// How long a dial may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the handshakes may take, and the hub to answer the stream's opening (it allows 10 s
/// for the Hello), unless [`LinkConfig::open_timeout`] says otherwise.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(15);
/// Slice changes queued for the cluster writer: far more than a hub sends at once (it keeps few
/// messages in flight per stream), so that reading the hub never waits on the cluster.
const OPS_BUFFER: usize = 1024;
/// Agent messages queued before the agent waits for the connection.
const OUTBOUND_BUFFER: usize = 256;

/// Where the hub is and how to prove who we are.
#[derive(Debug, Clone)]
pub enum HubEndpoint {
    /// mTLS with the agent bundle of `cafe-hub issue-agent` (`ca.pem`, `agent.pem`, `agent-key.pem`).
    Tls {
        /// `https://host:port`.
        url: String,
        /// The bundle directory.
        dir: PathBuf,
    },
    /// mTLS with certificates already in memory (the benchmark's many agents share one process).
    TlsPem {
        /// `https://host:port`.
        url: String,
        /// The CA certificate.
        ca_pem: String,
        /// The agent's certificate.
        cert_pem: String,
        /// Its key.
        key_pem: String,
    },
    /// Plaintext, for a hub started with `--insecure`.
    Insecure {
        /// `http://host:port`.
        url: String,
    },
}

/// The link's settings.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// The member cluster this agent serves.
    pub cluster: String,
    /// The hub.
    pub hub: HubEndpoint,
    /// How long connecting (TCP, TLS and HTTP/2 handshakes) and then opening the stream may each
    /// take before the attempt is abandoned and retried.
    pub open_timeout: Duration,
    /// The gauges of the link's state (registered nowhere unless the agent sets its own).
    pub gauges: crate::metrics::LinkGauges,
}

impl LinkConfig {
    /// The settings for `cluster` with the default timeouts.
    pub fn new(cluster: String, hub: HubEndpoint) -> Self {
        Self {
            cluster,
            hub,
            open_timeout: OPEN_TIMEOUT,
            gauges: crate::metrics::LinkGauges::default(),
        }
    }
}

fn read(path: &std::path::Path) -> Result<String, LinkError> {
    std::fs::read_to_string(path).map_err(|source| LinkError::Tls {
        path: path.display().to_string(),
        source,
    })
}

impl HubEndpoint {
    /// The hub replicas' URLs: `url` holds one, or several separated by commas.
    pub fn urls(&self) -> Vec<String> {
        let url = match self {
            Self::Tls { url, .. } | Self::TlsPem { url, .. } | Self::Insecure { url } => url,
        };
        url.split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// The endpoint of the replica at `url`, with this endpoint's credentials.
    fn endpoint_for(&self, url: &str) -> Result<Endpoint, LinkError> {
        let (_, tls) = match self {
            Self::Tls { url, dir } => {
                // Read on every connection: a rotated certificate is used by the next one.
                let [ca, cert, key] =
                    cafe_proto::protocol::tls_dir_files(dir, "agent.pem", "agent-key.pem");
                (url, Some((read(&ca)?, read(&cert)?, read(&key)?)))
            }
            Self::TlsPem {
                url,
                ca_pem,
                cert_pem,
                key_pem,
            } => (
                url,
                Some((ca_pem.clone(), cert_pem.clone(), key_pem.clone())),
            ),
            Self::Insecure { url } => (url, None),
        };
        let url = url.to_owned();
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|_| LinkError::BadEndpoint(url.clone()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20));
        if let Some((ca, cert, key)) = tls {
            let config = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .identity(Identity::from_pem(cert, key));
            endpoint = endpoint
                .tls_config(config)
                .map_err(|_| LinkError::BadEndpoint(url.clone()))?;
        }
        Ok(endpoint)
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("cannot reach the hub: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("the hub refused the stream: {0}")]
    Refused(#[from] tonic::Status),
    #[error("the hub closed the stream")]
    Closed,
    #[error("the hub fell silent")]
    Silent,
    #[error("{0} took longer than {1:?}")]
    Slow(&'static str, Duration),
    #[error(transparent)]
    Cluster(#[from] LinkError),
    #[error("shutting down")]
    Shutdown,
}

/// Runs the link until `shutdown` resolves, reconnecting as needed.
pub async fn run_link<S: ClusterSide>(
    config: LinkConfig,
    side: Arc<S>,
    board: StatusBoard,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), LinkError> {
    let urls = config.hub.urls();
    // Every URL is checked before the first dial: a bad one is a configuration error.
    let endpoints = urls
        .iter()
        .map(|url| config.hub.endpoint_for(url))
        .collect::<Result<Vec<_>, _>>()?;
    if endpoints.is_empty() {
        return Err(LinkError::BadEndpoint("no hub URL".to_owned()));
    }
    tokio::pin!(shutdown);
    let mut backoff = MIN_BACKOFF;
    let mut next = 0;
    let mut redirect: Option<String> = None;
    loop {
        let redirected = redirect.is_some();
        let (url, endpoint) = match redirect.take() {
            Some(url) => match urls.iter().position(|u| *u == url) {
                Some(index) => (url, endpoints[index].clone()),
                None => match config.hub.endpoint_for(&url) {
                    Ok(endpoint) => (url, endpoint),
                    Err(_) => (urls[next].clone(), endpoints[next].clone()),
                },
            },
            None => (urls[next].clone(), endpoints[next].clone()),
        };
        let session = run_session(
            &config,
            &url,
            &endpoint,
            side.as_ref(),
            &board,
            &mut backoff,
        );
        let ended = tokio::select! {
            () = &mut shutdown => SessionEnd::Shutdown,
            ended = session => ended,
        };
        config.gauges.hub_connected.set(0);
        if let SessionEnd::Shutdown = ended {
            return Ok(());
        }
        // A follower replica answers UNAVAILABLE, naming the leader when it knows one: go there
        // at once. Without a leader yet (an election is under way), ask the replicas again soon,
        // without backing off further: the new leader must find its agents quickly.
        let (delay, grow) = match &ended {
            SessionEnd::Refused(status) if is_follower(status) => {
                match status
                    .metadata()
                    .get(protocol::LEADER_METADATA)
                    .and_then(|v| v.to_str().ok())
                {
                    Some(leader) if leader != url => {
                        tracing::info!(cluster = %config.cluster, from = %url, leader, "the hub replica is a follower; moving to the leader");
                        redirect = Some(leader.to_owned());
                        // At once, unless this was a redirect already: no chain of them spins.
                        let delay = if redirected {
                            jittered(FOLLOWER_RETRY)
                        } else {
                            Duration::ZERO
                        };
                        (delay, false)
                    }
                    _ => {
                        next = (next + 1) % urls.len();
                        (jittered(FOLLOWER_RETRY), false)
                    }
                }
            }
            // The leader a follower named is gone (its lease has not expired yet): an election
            // is near, ask the replicas again soon.
            _ if redirected => (jittered(FOLLOWER_RETRY), false),
            _ => {
                next = (next + 1) % urls.len();
                // The next replica at once; the whole list again only after a backoff.
                if next == 0 {
                    (jittered(backoff), true)
                } else {
                    (Duration::ZERO, false)
                }
            }
        };
        if !delay.is_zero() || !matches!(ended, SessionEnd::Refused(_)) {
            tracing::warn!(cluster = %config.cluster, hub = %url, reason = %ended, retry_in = ?delay, "hub link down; the cluster keeps its last state");
        }
        if grow {
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        if !delay.is_zero() {
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// Whether the hub answered as a follower replica (UNAVAILABLE marked `cafe-role: follower`): an
/// election is near or done, so the replicas are asked again soon rather than after a backoff.
fn is_follower(status: &tonic::Status) -> bool {
    status.code() == tonic::Code::Unavailable
        && status
            .metadata()
            .get(protocol::ROLE_METADATA)
            .is_some_and(|v| v.to_str().ok() == Some(protocol::FOLLOWER_ROLE))
}

/// How soon a replica list with no leader yet is asked again.
const FOLLOWER_RETRY: Duration = Duration::from_millis(500);

/// Between half and all of `base`, so that many agents do not reconnect in step.
fn jittered(base: Duration) -> Duration {
    let factor = 0.5 + rand::random::<f64>() * 0.5;
    base.mul_f64(factor)
}

fn agent_message(kind: AgentKind) -> pb::AgentMessage {
    pb::AgentMessage { kind: Some(kind) }
}

async fn run_session<S: ClusterSide>(
    config: &LinkConfig,
    url: &str,
    endpoint: &Endpoint,
    side: &S,
    board: &StatusBoard,
    backoff: &mut Duration,
) -> SessionEnd {
    // The endpoint's connect timeout covers the TCP connection only, not the TLS and HTTP/2
    // handshakes that follow it.
    let limit = config.open_timeout;
    let channel: Channel = match tokio::time::timeout(limit, endpoint.connect()).await {
        Ok(Ok(channel)) => channel,
        Ok(Err(error)) => return SessionEnd::Connect(error),
        Err(_) => return SessionEnd::Slow("connecting to the hub", limit),
    };
    let inventory = match side.inventory().await {
        Ok(inventory) => inventory,
        Err(error) => return SessionEnd::Cluster(error),
    };
    let applied: BTreeMap<String, u64> = inventory.iter().cloned().collect();
    let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
    let hello = pb::Hello {
        cluster: config.cluster.clone(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        inventory: inventory
            .into_iter()
            .map(|(id, generation)| pb::InventoryEntry { id, generation })
            .collect(),
        accepts_batches: true,
    };
    if tx
        .send(agent_message(AgentKind::Hello(hello)))
        .await
        .is_err()
    {
        return SessionEnd::Closed;
    }
    let mut client = AgentLinkClient::new(channel)
        .max_decoding_message_size(protocol::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(protocol::MAX_MESSAGE_BYTES);
    let inbound = match tokio::time::timeout(limit, client.sync(ReceiverStream::new(rx))).await {
        Ok(Ok(response)) => response.into_inner(),
        Ok(Err(status)) => return SessionEnd::Refused(status),
        Err(_) => return SessionEnd::Slow("opening the stream", limit),
    };
    tracing::info!(cluster = %config.cluster, hub = %url, "connected to the hub");
    config.gauges.hub_connected.set(1);
    // Everything known is reported again: the hub may have restarted and forgotten.
    board.mark_all();
    // Cluster writes run beside the conversation with the hub, so that a slow API server never
    // delays heartbeats and reports (the hub would take the cluster for gone).
    let (ops_tx, ops_rx) = mpsc::channel(OPS_BUFFER);
    // Set from the hub's Welcome, which comes before any slice: the hub reads batches.
    let hub_batches = AtomicBool::new(false);
    let outbound = Outbound {
        tx: &tx,
        batches: &hub_batches,
    };
    tokio::select! {
        end = talk(url, inbound, ops_tx, outbound, board, backoff) => end,
        end = apply_ops(side, ops_rx, applied, board, outbound, &config.gauges.slices) => end,
    }
}

/// The stream to the hub, and whether the hub reads batches (`Welcome.accepts_batches`).
#[derive(Clone, Copy)]
struct Outbound<'a> {
    tx: &'a mpsc::Sender<pb::AgentMessage>,
    batches: &'a AtomicBool,
}

impl Outbound<'_> {
    async fn send(&self, kind: AgentKind) -> Result<(), SessionEnd> {
        self.tx
            .send(agent_message(kind))
            .await
            .map_err(|_| SessionEnd::Closed)
    }

    /// Sends `items`: in batches (`wrap`) to a hub that reads them, one message each (`one`)
    /// otherwise.
    async fn send_all<T: prost::Message>(
        &self,
        items: Vec<T>,
        one: impl Fn(T) -> AgentKind,
        wrap: impl Fn(Vec<T>) -> AgentKind,
    ) -> Result<(), SessionEnd> {
        if !self.batches.load(Ordering::Relaxed) {
            for item in items {
                self.send(one(item)).await?;
            }
            return Ok(());
        }
        for batch in protocol::batches(items, prost::Message::encoded_len) {
            self.send(wrap(batch)).await?;
        }
        Ok(())
    }
}

/// A change for the cluster, in the order the hub sent it.
enum Op {
    Upsert(Box<pb::Slice>),
    Delete(pb::SliceDelete),
    /// A `SliceBatch`, kept whole: one place in the queue, so that queueing it never holds up the
    /// heartbeats for more than one change.
    Batch(pb::SliceBatch),
    SnapshotComplete(pb::SnapshotComplete),
}

/// Reads the hub's messages (passing slice changes to the applier), and sends heartbeats and the
/// debounced slice statuses.
async fn talk(
    hub: &str,
    mut inbound: tonic::Streaming<pb::HubMessage>,
    ops: mpsc::Sender<Op>,
    outbound: Outbound<'_>,
    board: &StatusBoard,
    backoff: &mut Duration,
) -> SessionEnd {
    let beats = |every: Duration| {
        let mut beat = tokio::time::interval(every);
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        beat
    };
    let mut every = HEARTBEAT_INTERVAL;
    let mut heartbeat = beats(every);
    let mut last_heard = tokio::time::Instant::now();
    let mut flush_at: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            message = inbound.message() => {
                let message = match message {
                    Ok(Some(message)) => message,
                    Ok(None) => return SessionEnd::Closed,
                    Err(status) => return SessionEnd::Refused(status),
                };
                last_heard = tokio::time::Instant::now();
                let op = match message.kind {
                    Some(HubKind::Welcome(welcome)) => {
                        *backoff = MIN_BACKOFF;
                        outbound.batches.store(welcome.accepts_batches, Ordering::Relaxed);
                        // The hub says how often both sides beat; its silence is judged by the same.
                        let announced = protocol::announced_heartbeat(welcome.heartbeat_interval_ms);
                        if announced != every {
                            tracing::info!(heartbeat = ?announced, "heartbeat interval set by the hub");
                            every = announced;
                            heartbeat = beats(every);
                        }
                        continue;
                    }
                    Some(HubKind::Heartbeat(_)) | None => continue,
                    Some(HubKind::Upsert(slice)) => {
                        tracing::info!(hub, slice = %slice.id, generation = slice.generation, "slice received");
                        Op::Upsert(Box::new(slice))
                    }
                    Some(HubKind::Delete(delete)) => {
                        tracing::info!(hub, slice = %delete.id, generation = delete.generation, "slice removal received");
                        Op::Delete(delete)
                    }
                    Some(HubKind::Batch(batch)) => {
                        for slice in &batch.upserts {
                            tracing::info!(hub, slice = %slice.id, generation = slice.generation, "slice received");
                        }
                        for delete in &batch.deletes {
                            tracing::info!(hub, slice = %delete.id, generation = delete.generation, "slice removal received");
                        }
                        Op::Batch(batch)
                    }
                    Some(HubKind::SnapshotComplete(complete)) => Op::SnapshotComplete(complete),
                };
                if ops.send(op).await.is_err() {
                    return SessionEnd::Closed;
                }
            }
            () = board.changed(), if flush_at.is_none() => {
                // Let a burst settle (reading on meanwhile), then send the latest of each.
                flush_at = Some(tokio::time::Instant::now() + REPORT_DEBOUNCE);
            }
            () = tokio::time::sleep_until(flush_at.unwrap_or_else(tokio::time::Instant::now)), if flush_at.is_some() => {
                flush_at = None;
                let statuses = board.take();
                let sent = outbound
                    .send_all(statuses, AgentKind::Status, |statuses| {
                        AgentKind::Statuses(pb::StatusBatch { statuses })
                    })
                    .await;
                if let Err(end) = sent {
                    return end;
                }
            }
            _ = heartbeat.tick() => {
                if last_heard.elapsed() > every * protocol::HUB_SILENT_HEARTBEATS {
                    return SessionEnd::Silent;
                }
                let beat = pb::Heartbeat { sent_unix_ms: unix_ms() };
                if let Err(end) = outbound.send(AgentKind::Heartbeat(beat)).await {
                    return end;
                }
            }
        }
    }
}

/// Writes the hub's changes to the cluster in order: newest generation only, nothing removed
/// before the snapshot marker, refused slices retried.
async fn apply_ops<S: ClusterSide>(
    side: &S,
    mut ops: mpsc::Receiver<Op>,
    applied: BTreeMap<String, u64>,
    board: &StatusBoard,
    outbound: Outbound<'_>,
    slices: &prometheus_client::metrics::gauge::Gauge,
) -> SessionEnd {
    slices.set(i64::try_from(applied.len()).unwrap_or(i64::MAX));
    let mut applier = Applier {
        side,
        board,
        outbound,
        slices,
        applied,
        failed: BTreeMap::new(),
        failed_removes: BTreeMap::new(),
        acks: Vec::new(),
    };
    let mut snapshot: Option<BTreeSet<String>> = Some(BTreeSet::new());
    let mut retry =
        tokio::time::interval_at(tokio::time::Instant::now() + RETRY_FAILED, RETRY_FAILED);
    retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let op = tokio::select! {
            op = ops.recv() => match op {
                Some(op) => op,
                None => return SessionEnd::Closed,
            },
            _ = retry.tick() => {
                // Slices the cluster refused are tried again; the others went on meanwhile.
                if let Err(end) = applier.retry_failed().await {
                    return end;
                }
                if let Err(end) = applier.flush_acks().await {
                    return end;
                }
                continue;
            }
        };
        let result = match op {
            Op::Upsert(slice) => applier.upsert(*slice, &mut snapshot).await,
            Op::Delete(delete) => applier.delete(&delete.id, delete.generation).await,
            Op::Batch(batch) => applier.batch(batch, &mut snapshot).await,
            Op::SnapshotComplete(complete) => {
                // Only now may slices the hub no longer has be removed. The marker lists every
                // slice, including those not re-sent because this agent already held them.
                let mut seen = snapshot.take().unwrap_or_default();
                seen.extend(complete.slice_ids);
                applier.remove_all_but(&seen).await
            }
        };
        if let Err(end) = result {
            return end;
        }
        // Acks go out together once the hub's burst is written (or a batch is full).
        if (ops.is_empty() || applier.acks.len() >= protocol::BATCH_MAX_ITEMS)
            && let Err(end) = applier.flush_acks().await
        {
            return end;
        }
    }
}

/// Applies one session's slice changes to the cluster and acknowledges them, remembering what the
/// cluster refused for a later retry.
struct Applier<'a, S> {
    side: &'a S,
    board: &'a StatusBoard,
    outbound: Outbound<'a>,
    /// The count of `applied`, for the metrics.
    slices: &'a prometheus_client::metrics::gauge::Gauge,
    /// The generation applied of each slice the cluster holds.
    applied: BTreeMap<String, u64>,
    /// Slices the cluster refused, to try again.
    failed: BTreeMap<String, pb::Slice>,
    /// Removals the cluster refused, to try again.
    failed_removes: BTreeMap<String, u64>,
    /// Acks not sent yet, in the order the changes were written.
    acks: Vec<pb::SliceAck>,
}

impl<S: ClusterSide> Applier<'_, S> {
    fn count_slices(&self) {
        self.slices
            .set(i64::try_from(self.applied.len()).unwrap_or(i64::MAX));
    }

    /// Whether `generation` of `id` is already applied (or older than what is).
    fn holds(&self, id: &str, generation: u64) -> bool {
        self.applied.get(id).is_some_and(|g| *g >= generation)
    }

    /// A slice from the hub: applied unless this generation is already held. Until the snapshot
    /// marker, `snapshot` collects the slices the hub sent.
    async fn upsert(
        &mut self,
        slice: pb::Slice,
        snapshot: &mut Option<BTreeSet<String>>,
    ) -> Result<(), SessionEnd> {
        if let Some(seen) = snapshot.as_mut() {
            seen.insert(slice.id.clone());
        }
        if self.holds(&slice.id, slice.generation) {
            return Ok(());
        }
        self.failed.remove(&slice.id);
        self.apply(slice).await
    }

    /// A batch from the hub: its upserts, then its deletes, each as if it had come alone.
    async fn batch(
        &mut self,
        batch: pb::SliceBatch,
        snapshot: &mut Option<BTreeSet<String>>,
    ) -> Result<(), SessionEnd> {
        for slice in batch.upserts {
            self.upsert(slice, snapshot).await?;
        }
        for delete in batch.deletes {
            self.delete(&delete.id, delete.generation).await?;
        }
        Ok(())
    }

    /// A removal from the hub: done unless this generation is already held.
    async fn delete(&mut self, id: &str, generation: u64) -> Result<(), SessionEnd> {
        if self.holds(id, generation) {
            return Ok(());
        }
        self.failed.remove(id);
        self.remove(id, generation).await
    }

    /// Removes every held slice that `keep` does not list (after a snapshot).
    async fn remove_all_but(&mut self, keep: &BTreeSet<String>) -> Result<(), SessionEnd> {
        let stale: Vec<(String, u64)> = self
            .applied
            .iter()
            .filter(|(id, _)| !keep.contains(*id))
            .map(|(id, g)| (id.clone(), *g))
            .collect();
        for (id, generation) in stale {
            tracing::info!(slice = %id, "removing a slice the hub no longer has");
            self.remove(&id, generation + 1).await?;
        }
        Ok(())
    }

    /// Tries the refused slices and removals again.
    async fn retry_failed(&mut self) -> Result<(), SessionEnd> {
        for slice in std::mem::take(&mut self.failed).into_values() {
            self.apply(slice).await?;
        }
        for (id, generation) in std::mem::take(&mut self.failed_removes) {
            self.remove(&id, generation).await?;
        }
        Ok(())
    }

    /// Notes that `generation` of `id` is written; [`Applier::flush_acks`] tells the hub.
    fn ack(&mut self, id: &str, generation: u64, deleted: bool) {
        self.acks.push(pb::SliceAck {
            id: id.to_owned(),
            generation,
            deleted,
        });
    }

    /// Sends the acks noted so far.
    async fn flush_acks(&mut self) -> Result<(), SessionEnd> {
        let acks = std::mem::take(&mut self.acks);
        self.outbound
            .send_all(acks, AgentKind::Ack, |acks| {
                AgentKind::Acks(pb::AckBatch { acks })
            })
            .await
    }

    /// Applies a slice and acknowledges it. When the cluster refuses it, the slice is kept for a
    /// later retry and reported with a problem (so that the hub fails the release with the reason)
    /// instead of ending the session: one bad slice must not hold up the others.
    async fn apply(&mut self, slice: pb::Slice) -> Result<(), SessionEnd> {
        match self.side.apply(&slice).await {
            Ok(()) => {
                self.applied.insert(slice.id.clone(), slice.generation);
                self.count_slices();
                self.ack(&slice.id, slice.generation, false);
                Ok(())
            }
            Err(error) => {
                tracing::warn!(slice = %slice.id, %error, retry_in = ?RETRY_FAILED, "the cluster refused a slice");
                self.board.post(pb::SliceStatus {
                    id: slice.id.clone(),
                    observed_generation: slice.generation,
                    update_revision: slice.update_revision.clone(),
                    problems: vec![pb::PodProblem {
                        pod: String::new(),
                        reason: SLICE_NOT_APPLIED.to_owned(),
                        message: error.problem_message(),
                    }],
                    ..pb::SliceStatus::default()
                });
                self.failed.insert(slice.id.clone(), slice);
                Ok(())
            }
        }
    }

    /// Removes a slice and acknowledges it; a refused removal is retried later.
    async fn remove(&mut self, id: &str, generation: u64) -> Result<(), SessionEnd> {
        match self.side.remove(id, generation).await {
            Ok(()) => {
                self.applied.remove(id);
                self.count_slices();
                self.board.forget(id);
                self.ack(id, generation, true);
                Ok(())
            }
            Err(error) => {
                tracing::warn!(slice = %id, %error, retry_in = ?RETRY_FAILED, "cannot remove a slice");
                self.failed_removes.insert(id.to_owned(), generation);
                Ok(())
            }
        }
    }
}

fn unix_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cluster that holds nothing and takes everything.
    struct EmptyCluster;

    impl ClusterSide for EmptyCluster {
        async fn inventory(&self) -> Result<Vec<(String, u64)>, LinkError> {
            Ok(Vec::new())
        }
        async fn apply(&self, _slice: &pb::Slice) -> Result<(), LinkError> {
            Ok(())
        }
        async fn remove(&self, _id: &str, _generation: u64) -> Result<(), LinkError> {
            Ok(())
        }
    }

    /// Runs a link over an empty cluster until the returned sender is used (or dropped).
    fn spawn_link(
        config: LinkConfig,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<(), LinkError>>,
    ) {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let link = tokio::spawn(run_link(
            config,
            Arc::new(EmptyCluster),
            StatusBoard::default(),
            async move {
                let _ = stopped.await;
            },
        ));
        (stop, link)
    }

    /// Runs a link with a 200 ms opening limit against a listener that accepts connections and never
    /// says a word (a hung hub behind a load balancer); passes once the agent dials a second time.
    async fn dials_again_after_silence(listener: tokio::net::TcpListener, hub: HubEndpoint) {
        let mut config = LinkConfig::new("c1".to_owned(), hub);
        config.open_timeout = Duration::from_millis(200);
        let (stop, link) = spawn_link(config);
        let mut held = Vec::new();
        let second_dial = async {
            while held.len() < 2 {
                let (socket, _) = listener.accept().await.expect("accept");
                held.push(socket);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), second_dial)
            .await
            .expect("the agent gave up on the silent hub and dialled again");
        let _ = stop.send(());
        link.await
            .expect("the link task")
            .expect("the link ends cleanly");
    }

    async fn silent_listener() -> (tokio::net::TcpListener, std::net::SocketAddr) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        (listener, address)
    }

    #[tokio::test]
    async fn a_stream_the_hub_never_opens_is_left_and_dialled_again() {
        // In plaintext the HTTP/2 connection is up without a word from the server: what hangs is
        // the stream's opening.
        let (listener, address) = silent_listener().await;
        let url = format!("http://{address}");
        dials_again_after_silence(listener, HubEndpoint::Insecure { url }).await;
    }

    #[tokio::test]
    async fn a_tls_handshake_the_hub_never_answers_is_left_and_dialled_again() {
        let (listener, address) = silent_listener().await;
        let agent = rcgen::generate_simple_self_signed(vec!["c1".to_owned()]).expect("certificate");
        let hub = HubEndpoint::TlsPem {
            url: format!("https://{address}"),
            ca_pem: agent.cert.pem(),
            cert_pem: agent.cert.pem(),
            key_pem: agent.signing_key.serialize_pem(),
        };
        dials_again_after_silence(listener, hub).await;
    }

    /// A hub that welcomes every agent with `interval` and counts the heartbeats it gets.
    struct BeatCountingHub {
        interval: Duration,
        beats: Arc<std::sync::atomic::AtomicUsize>,
    }

    #[tonic::async_trait]
    impl pb::agent_link_server::AgentLink for BeatCountingHub {
        type SyncStream = ReceiverStream<Result<pb::HubMessage, tonic::Status>>;

        async fn sync(
            &self,
            request: tonic::Request<tonic::Streaming<pb::AgentMessage>>,
        ) -> Result<tonic::Response<Self::SyncStream>, tonic::Status> {
            let mut inbound = request.into_inner();
            let (tx, rx) = mpsc::channel(8);
            let welcome = pb::Welcome {
                heartbeat_interval_ms: u32::try_from(self.interval.as_millis()).unwrap_or(0),
                ..pb::Welcome::default()
            };
            let message = pb::HubMessage {
                kind: Some(HubKind::Welcome(welcome)),
            };
            tx.send(Ok(message)).await.expect("the stream is open");
            let beats = Arc::clone(&self.beats);
            let every = self.interval;
            tokio::spawn(async move {
                // The hub beats too, so that the agent never takes it for silent.
                let mut beat = tokio::time::interval(every);
                loop {
                    tokio::select! {
                        message = inbound.message() => match message {
                            Ok(Some(message)) => {
                                if matches!(message.kind, Some(AgentKind::Heartbeat(_))) {
                                    beats.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                }
                            }
                            _ => return,
                        },
                        _ = beat.tick() => {
                            let message = pb::HubMessage {
                                kind: Some(HubKind::Heartbeat(pb::Heartbeat::default())),
                            };
                            if tx.send(Ok(message)).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        }
    }

    #[tokio::test]
    async fn the_agent_beats_at_the_interval_the_hub_announces() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let beats = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let hub = BeatCountingHub {
            interval: Duration::from_millis(100),
            beats: Arc::clone(&beats),
        };
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::agent_link_server::AgentLinkServer::new(hub))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let url = format!("http://{address}");
        let config = LinkConfig::new("c1".to_owned(), HubEndpoint::Insecure { url });
        let (stop, link) = spawn_link(config);
        // At the default 2 s, a second could bring one beat; at the announced 100 ms it brings ten.
        let started = tokio::time::Instant::now();
        while beats.load(std::sync::atomic::Ordering::SeqCst) < 6 {
            assert!(
                started.elapsed() < HEARTBEAT_INTERVAL,
                "{} heartbeats within {:?}: the announced interval is not followed",
                beats.load(std::sync::atomic::Ordering::SeqCst),
                started.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = stop.send(());
        link.await
            .expect("the link task")
            .expect("the link ends cleanly");
        server.abort();
    }

    /// A hub that welcomes the agent with `accepts_batches`, sends `script`, and passes on every
    /// message the agent sends.
    struct ScriptedHub {
        accepts_batches: bool,
        script: Vec<pb::HubMessage>,
        heard: mpsc::Sender<pb::AgentMessage>,
    }

    #[tonic::async_trait]
    impl pb::agent_link_server::AgentLink for ScriptedHub {
        type SyncStream = ReceiverStream<Result<pb::HubMessage, tonic::Status>>;

        async fn sync(
            &self,
            request: tonic::Request<tonic::Streaming<pb::AgentMessage>>,
        ) -> Result<tonic::Response<Self::SyncStream>, tonic::Status> {
            let mut inbound = request.into_inner();
            let welcome = pb::Welcome {
                accepts_batches: self.accepts_batches,
                ..pb::Welcome::default()
            };
            let mut messages = vec![pb::HubMessage {
                kind: Some(HubKind::Welcome(welcome)),
            }];
            messages.extend(self.script.iter().cloned());
            let (tx, rx) = mpsc::channel(messages.len());
            for message in messages {
                tx.send(Ok(message)).await.expect("the stream is open");
            }
            let heard = self.heard.clone();
            tokio::spawn(async move {
                // `tx` lives as long as the agent's stream, so that the hub's side stays open.
                let _open = tx;
                while let Ok(Some(message)) = inbound.message().await {
                    if heard.send(message).await.is_err() {
                        return;
                    }
                }
            });
            Ok(tonic::Response::new(ReceiverStream::new(rx)))
        }
    }

    /// The agent's messages after its Hello, with a hub that sends one batch of three slices,
    /// until it has acknowledged all three.
    async fn acks_of_a_batch(accepts_batches: bool) -> (pb::Hello, Vec<pb::AgentMessage>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let slice = |unit: &str| pb::Slice {
            id: protocol::slice_id("ns", "d", unit),
            generation: 1,
            ..pb::Slice::default()
        };
        let batch = pb::SliceBatch {
            upserts: vec![slice("u1"), slice("u2"), slice("u3")],
            deletes: Vec::new(),
        };
        let (heard_tx, mut heard) = mpsc::channel(64);
        let hub = ScriptedHub {
            accepts_batches,
            script: vec![pb::HubMessage {
                kind: Some(HubKind::Batch(batch)),
            }],
            heard: heard_tx,
        };
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(pb::agent_link_server::AgentLinkServer::new(hub))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let url = format!("http://{address}");
        let (stop, link) = spawn_link(LinkConfig::new(
            "c1".to_owned(),
            HubEndpoint::Insecure { url },
        ));
        let listen = async {
            let mut hello = None;
            let mut messages = Vec::new();
            let mut acked = 0;
            while acked < 3 {
                let message = heard.recv().await.expect("the agent's stream is open");
                match message.kind {
                    Some(AgentKind::Hello(h)) => hello = Some(h),
                    Some(AgentKind::Heartbeat(_)) => {}
                    Some(AgentKind::Ack(_)) => {
                        acked += 1;
                        messages.push(message);
                    }
                    Some(AgentKind::Acks(ref batch)) => {
                        acked += batch.acks.len();
                        messages.push(message);
                    }
                    _ => messages.push(message),
                }
            }
            (hello.expect("a Hello first"), messages)
        };
        let heard = tokio::time::timeout(Duration::from_secs(10), listen)
            .await
            .expect("the agent acknowledged the batch in time");
        let _ = stop.send(());
        link.await
            .expect("the link task")
            .expect("the link ends cleanly");
        server.abort();
        heard
    }

    #[tokio::test]
    async fn a_batch_from_the_hub_is_acknowledged_in_one_message_to_a_hub_that_reads_batches() {
        let (hello, messages) = acks_of_a_batch(true).await;
        assert!(hello.accepts_batches, "the agent says it reads batches");
        let [
            pb::AgentMessage {
                kind: Some(AgentKind::Acks(batch)),
            },
        ] = messages.as_slice()
        else {
            panic!("one AckBatch: {messages:?}");
        };
        let ids: Vec<&str> = batch.acks.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(
            ids,
            ["ns/d@u1", "ns/d@u2", "ns/d@u3"],
            "in the order applied"
        );
    }

    #[tokio::test]
    async fn an_older_hub_gets_one_ack_per_slice() {
        let (_, messages) = acks_of_a_batch(false).await;
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(
            messages
                .iter()
                .all(|m| matches!(m.kind, Some(AgentKind::Ack(_)))),
            "{messages:?}"
        );
    }
}
