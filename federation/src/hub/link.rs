//! The hub side of AgentLink (DESIGN section 6): one bidirectional stream per member cluster.
//!
//! The sender keeps, per stream, the generation it last sent of each slice. Whenever the cluster's
//! slices change it sends what differs, so a slow agent gets the latest state of each slice rather
//! than every intermediate one, and the bounded channel gives backpressure.

use super::Hub;
use crate::names::{ClusterName, SliceId};
use crate::tls::{Identity, peer_identity};
use cafe_proto::v1 as pb;
use cafe_proto::v1::agent_message::Kind as AgentKind;
use cafe_proto::v1::hub_message::Kind as HubKind;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// How often the hub sends a heartbeat, and asks the agents to.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// Messages queued per stream before the sender waits for the agent: enough to keep the connection
/// busy, small enough that a slow agent gets fresh state rather than a backlog.
const OUTBOUND_BUFFER: usize = 64;

/// How long an agent has to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// The AgentLink service.
#[derive(Debug, Clone)]
pub struct AgentLinkService {
    hub: Hub,
    /// Without TLS (`--insecure`), the Hello's cluster name is trusted.
    insecure: bool,
}

impl AgentLinkService {
    /// The service over `hub`.
    pub fn new(hub: Hub, insecure: bool) -> Self {
        Self { hub, insecure }
    }
}

type HubStream = Pin<Box<dyn Stream<Item = Result<pb::HubMessage, Status>> + Send>>;

#[tonic::async_trait]
impl pb::agent_link_server::AgentLink for AgentLinkService {
    type SyncStream = HubStream;

    async fn sync(
        &self,
        request: Request<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<HubStream>, Status> {
        let certified = if self.insecure {
            None
        } else {
            match peer_identity(&request)? {
                Identity::Agent { cluster } => Some(cluster),
                other => {
                    tracing::warn!(identity = ?other, "refused an AgentLink stream from a non-agent certificate");
                    return Err(Status::permission_denied(
                        "AgentLink takes agent certificates only",
                    ));
                }
            }
        };
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Hello within 10 s"))??;
        let Some(pb::AgentMessage {
            kind: Some(AgentKind::Hello(hello)),
        }) = first
        else {
            return Err(Status::invalid_argument("the first message must be Hello"));
        };
        let cluster = ClusterName::new(hello.cluster.clone())
            .map_err(|e| Status::invalid_argument(format!("Hello.cluster: {e}")))?;
        if let Some(certified) = &certified
            && certified != &cluster
        {
            tracing::warn!(%certified, claimed = %cluster, "refused an agent claiming another cluster");
            return Err(Status::permission_denied(format!(
                "this certificate is for cluster {certified}, not {cluster}"
            )));
        }
        let session = self.hub.connect(&cluster, &hello.agent_version);
        tracing::info!(%cluster, session, agent_version = %hello.agent_version, held = hello.inventory.len(), "agent connected");
        let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
        let inventory: BTreeMap<String, u64> = hello
            .inventory
            .into_iter()
            .map(|e| (e.id, e.generation))
            .collect();
        tokio::spawn(send_loop(
            self.hub.clone(),
            cluster.clone(),
            session,
            inventory,
            tx,
        ));
        tokio::spawn(receive_loop(self.hub.clone(), cluster, session, inbound));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn message(kind: HubKind) -> Result<pb::HubMessage, Status> {
    Ok(pb::HubMessage { kind: Some(kind) })
}

/// Sends the Welcome, the snapshot and then every change, until the stream is superseded or gone.
async fn send_loop(
    hub: Hub,
    cluster: ClusterName,
    session: u64,
    inventory: BTreeMap<String, u64>,
    tx: mpsc::Sender<Result<pb::HubMessage, Status>>,
) {
    let span = tracing::info_span!("agent_stream", %cluster, session);
    let _enter = span.enter();
    drop(_enter);
    let mut wakeup = hub.subscribe_cluster(&cluster);
    wakeup.mark_changed();
    let welcome = pb::Welcome {
        hub_version: env!("CARGO_PKG_VERSION").to_owned(),
        heartbeat_interval_ms: u32::try_from(HEARTBEAT_INTERVAL.as_millis()).unwrap_or(u32::MAX),
        session: session.to_string(),
    };
    if tx.send(message(HubKind::Welcome(welcome))).await.is_err() {
        return;
    }
    // What the agent holds: generations it already applied need not be sent again.
    let mut sent: BTreeMap<SliceId, u64> = inventory
        .into_iter()
        .filter_map(|(id, generation)| id.parse().ok().map(|id| (id, generation)))
        .collect();
    let mut snapshot_done = false;
    let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !hub.session_current(&cluster, session) {
            tracing::info!(%cluster, session, "stream superseded");
            return;
        }
        if wakeup.has_changed().unwrap_or(false) {
            wakeup.mark_unchanged();
            let (slices, tombstones) = hub.cluster_view(&cluster);
            let mut outgoing = Vec::new();
            for slice in &slices {
                let Ok(id) = slice.id.parse::<SliceId>() else {
                    continue;
                };
                if sent.get(&id) != Some(&slice.generation) || !snapshot_done {
                    // During the snapshot every slice is named, so that the agent knows what to keep.
                    sent.insert(id, slice.generation);
                    outgoing.push(HubKind::Upsert(pb::Slice::clone(slice)));
                }
            }
            for (id, generation) in tombstones {
                if sent.get(&id).is_some_and(|g| *g < generation) {
                    sent.insert(id.clone(), generation);
                    outgoing.push(HubKind::Delete(pb::SliceDelete {
                        id: id.to_string(),
                        generation,
                    }));
                }
            }
            let count = slices.len();
            for kind in outgoing {
                if tx.send(message(kind)).await.is_err() {
                    return;
                }
                hub.metrics().sent_inc();
            }
            if !snapshot_done {
                snapshot_done = true;
                let complete = pb::SnapshotComplete {
                    slices: u32::try_from(count).unwrap_or(u32::MAX),
                };
                if tx
                    .send(message(HubKind::SnapshotComplete(complete)))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            continue;
        }
        tokio::select! {
            changed = wakeup.changed() => {
                if changed.is_err() {
                    return;
                }
                wakeup.mark_changed();
            }
            _ = heartbeat.tick() => {
                let beat = pb::Heartbeat { sent_unix_ms: hub.now_ms() };
                if tx.send(message(HubKind::Heartbeat(beat))).await.is_err() {
                    return;
                }
            }
            () = tx.closed() => return,
        }
    }
}

/// Reads the agent's reports until the stream ends.
async fn receive_loop(
    hub: Hub,
    cluster: ClusterName,
    session: u64,
    mut inbound: Streaming<pb::AgentMessage>,
) {
    loop {
        let next = inbound.message().await;
        if !hub.session_current(&cluster, session) {
            break;
        }
        match next {
            Ok(Some(pb::AgentMessage { kind: Some(kind) })) => {
                hub.heard_from(&cluster);
                match kind {
                    AgentKind::Status(status) => {
                        if let Err(error) = hub.report(&cluster, status) {
                            tracing::warn!(%cluster, %error, "refused a slice status");
                        }
                    }
                    AgentKind::Ack(ack) => match ack.id.parse::<SliceId>() {
                        Ok(id) => hub.ack(&cluster, &id, ack.generation),
                        Err(error) => tracing::warn!(%cluster, %error, "malformed ack"),
                    },
                    AgentKind::Heartbeat(_) => {}
                    AgentKind::Hello(_) => tracing::warn!(%cluster, "ignored a second Hello"),
                }
            }
            Ok(Some(pb::AgentMessage { kind: None })) => {}
            Ok(None) => break,
            Err(status) => {
                tracing::info!(%cluster, %status, "agent stream failed");
                break;
            }
        }
    }
    tracing::info!(%cluster, session, "agent disconnected");
    hub.disconnect(&cluster, session);
}
