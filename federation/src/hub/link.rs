//! The hub side of AgentLink (DESIGN section 6): one bidirectional stream per member cluster.
//!
//! The sender keeps, per stream, the generation it last sent of each slice. Whenever the cluster's
//! slices change it sends what differs, so a slow agent gets the latest state of each slice rather
//! than every intermediate one, and the bounded channel gives backpressure.
//!
//! Slice statuses from every stream go through one queue to one reporter task, which applies all
//! the statuses waiting at once in a single hub mutation: a single store commit (one fsync) carries
//! every release transition they cause. Under a burst of reports (a group finishing in 2,000
//! deployments at once) the commits thus group themselves instead of queueing one fsync per report.

use super::Hub;
use super::core::Heard;
use super::event::PendingReport;
use crate::names::{ClusterName, SliceId};
use crate::tls::{Identity, peer_identity};
use cafe_proto::v1 as pb;
use cafe_proto::v1::agent_message::Kind as AgentKind;
use cafe_proto::v1::hub_message::Kind as HubKind;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// How often the hub sends a heartbeat, and asks the agents to (in `Welcome`).
pub use cafe_proto::protocol::HEARTBEAT_INTERVAL;

/// Every this many heartbeats (10 s), a stream compares the cluster's slices with what it sent,
/// whether or not a change was notified.
const RESYNC_EVERY_BEATS: u32 = 5;

/// Messages queued per stream before the sender waits for the agent: enough to keep the connection
/// busy, small enough that a slow agent gets fresh state rather than a backlog.
const OUTBOUND_BUFFER: usize = 8;

/// How long an agent has to send its Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Statuses waiting for the reporter, from all streams: room for a burst from every cluster; when
/// full, the streams stop reading (backpressure to the agents).
const REPORT_QUEUE: usize = 4096;

/// Most statuses applied in one mutation (one store commit), so that a commit stays short.
const REPORT_BATCH: usize = 1024;

/// The AgentLink service.
#[derive(Debug, Clone)]
pub struct AgentLinkService {
    hub: Hub,
    /// Without TLS (`--insecure`), the Hello's cluster name is trusted.
    insecure: bool,
    /// The reporter's queue, started with the first stream (inside the runtime).
    reports: Arc<OnceLock<mpsc::Sender<PendingReport>>>,
}

impl AgentLinkService {
    /// The service over `hub`.
    pub fn new(hub: Hub, insecure: bool) -> Self {
        Self {
            hub,
            insecure,
            reports: Arc::new(OnceLock::new()),
        }
    }

    /// The reporter's queue; starts the reporter the first time. It ends when the service is gone.
    fn reports(&self) -> mpsc::Sender<PendingReport> {
        self.reports
            .get_or_init(|| {
                let (tx, rx) = mpsc::channel(REPORT_QUEUE);
                self.hub
                    .spawn("the report loop", report_loop(self.hub.clone(), rx));
                tx
            })
            .clone()
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
        let (tx, rx) = mpsc::channel(OUTBOUND_BUFFER);
        let batches = hello.accepts_batches;
        let inventory: BTreeMap<String, u64> = hello
            .inventory
            .into_iter()
            .map(|e| (e.id, e.generation))
            .collect();
        let (hub, reports) = (self.hub.clone(), self.reports());
        // The session is opened in a task of its own: were the handler dropped while the writer
        // decides the connection (the agent gave up waiting), the session would exist with nobody
        // to serve or close it.
        self.hub.spawn("an agent stream", async move {
            let (session, heard) = match hub.connect(&cluster, &hello.agent_version).await {
                Ok(opened) => opened,
                Err(error) => {
                    let _ = tx.send(Err(error.into())).await;
                    return;
                }
            };
            tracing::info!(%cluster, session, agent_version = %hello.agent_version, held = inventory.len(), "agent connected");
            let span = tracing::info_span!("agent stream", %cluster, session);
            hub.spawn(
                "an agent stream's sender",
                tracing::Instrument::instrument(
                    send_loop(
                        hub.clone(),
                        cluster.clone(),
                        (session, Arc::clone(&heard)),
                        (inventory, batches),
                        tx,
                    ),
                    span.clone(),
                ),
            );
            hub.spawn(
                "an agent stream's receiver",
                tracing::Instrument::instrument(
                    receive_loop(hub.clone(), cluster, (session, heard), inbound, reports),
                    span,
                ),
            );
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

fn message(kind: HubKind) -> Result<pb::HubMessage, Status> {
    Ok(pb::HubMessage { kind: Some(kind) })
}

/// The messages that carry `changes`: batches of them to an agent that reads `SliceBatch`, one
/// message each otherwise.
fn change_messages(changes: Vec<HubKind>, batches: bool) -> Vec<HubKind> {
    if !batches {
        return changes;
    }
    let size = |kind: &HubKind| match kind {
        HubKind::Upsert(slice) => prost::Message::encoded_len(slice),
        HubKind::Delete(delete) => prost::Message::encoded_len(delete),
        _ => 0,
    };
    cafe_proto::protocol::batches(changes, size)
        .into_iter()
        .map(|batch| {
            let mut message = pb::SliceBatch::default();
            for kind in batch {
                match kind {
                    HubKind::Upsert(slice) => message.upserts.push(slice),
                    HubKind::Delete(delete) => message.deletes.push(delete),
                    _ => {}
                }
            }
            HubKind::Batch(message)
        })
        .collect()
}

/// Sends the Welcome, the snapshot and then every change, until the stream is superseded or gone.
/// `batches`: the agent reads `SliceBatch`.
async fn send_loop(
    hub: Hub,
    cluster: ClusterName,
    (session, heard): (u64, Arc<Heard>),
    (inventory, batches): (BTreeMap<String, u64>, bool),
    tx: mpsc::Sender<Result<pb::HubMessage, Status>>,
) {
    let mut wakeup = hub.subscribe_cluster(&cluster);
    wakeup.mark_changed();
    let welcome = pb::Welcome {
        hub_version: env!("CARGO_PKG_VERSION").to_owned(),
        heartbeat_interval_ms: u32::try_from(HEARTBEAT_INTERVAL.as_millis()).unwrap_or(u32::MAX),
        session: session.to_string(),
        accepts_batches: true,
    };
    if tx.send(message(HubKind::Welcome(welcome))).await.is_err() {
        return;
    }
    // What the agent holds: generations it already applied need not be sent again. Keyed by the
    // wire id, so that a wakeup compares generations without parsing every id of the cluster.
    let mut sent: BTreeMap<String, u64> = inventory;
    let mut snapshot_done = false;
    // Set when the heartbeat, not a change notification, started this comparison. What it finds is
    // a change whose notification is still in flight or, were there such a bug, one that was lost;
    // it is logged either way.
    let mut resync = false;
    // From 1, so that the first comparison is not right after the snapshot.
    let mut beats: u32 = 1;
    let mut heartbeat = tokio::time::interval(HEARTBEAT_INTERVAL);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !heard.is_current(session) {
            tracing::info!(%cluster, session, "stream superseded");
            return;
        }
        if hub.is_failed() {
            // A hub that stopped acting (it failed, or lost the lead) sends nothing more.
            return;
        }
        if wakeup.has_changed().unwrap_or(false) {
            wakeup.mark_unchanged();
            let (slices, tombstones) = hub.cluster_view(&cluster);
            let mut outgoing = Vec::new();
            for slice in &slices {
                // A generation the agent already holds (from its Hello, or sent before) goes out
                // again only if it changed; the snapshot marker names every slice anyway.
                if sent.get(&slice.id) != Some(&slice.generation) {
                    sent.insert(slice.id.clone(), slice.generation);
                    outgoing.push(HubKind::Upsert(pb::Slice::clone(slice)));
                }
            }
            for (id, generation) in tombstones {
                let id = id.to_string();
                if sent.get(&id).is_some_and(|g| *g < generation) {
                    sent.insert(id.clone(), generation);
                    outgoing.push(HubKind::Delete(pb::SliceDelete { id, generation }));
                }
            }
            if std::mem::take(&mut resync) && !outgoing.is_empty() {
                tracing::debug!(%cluster, session, changes = outgoing.len(), "the periodic resync found slice changes to send (notified meanwhile, or a lost notification)");
            }
            let changes = outgoing.len();
            for kind in change_messages(outgoing, batches) {
                if tx.send(message(kind)).await.is_err() {
                    return;
                }
            }
            hub.metrics().sent_add(changes);
            if !snapshot_done {
                snapshot_done = true;
                let complete = pb::SnapshotComplete {
                    slices: u32::try_from(slices.len()).unwrap_or(u32::MAX),
                    slice_ids: slices.iter().map(|s| s.id.clone()).collect(),
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
                // Level-triggered as well as notified: compare the cluster's slices with what was
                // sent every few heartbeats, so that no missed notification can strand a change.
                let due = beats.is_multiple_of(RESYNC_EVERY_BEATS);
                beats = beats.wrapping_add(1);
                if due && !wakeup.has_changed().unwrap_or(false) {
                    resync = true;
                    wakeup.mark_changed();
                }
            }
            () = tx.closed() => return,
            _ = hub.failed() => return,
        }
    }
}

/// Reads the agent's reports until the stream ends.
async fn receive_loop(
    hub: Hub,
    cluster: ClusterName,
    (session, heard): (u64, Arc<Heard>),
    mut inbound: Streaming<pb::AgentMessage>,
    reports: mpsc::Sender<PendingReport>,
) {
    loop {
        let next = inbound.message().await;
        // Neither check takes the model's lock, which store commits hold: acks and heartbeats are
        // read on while a burst of reports is being recorded.
        if !heard.is_current(session) {
            break;
        }
        match next {
            Ok(Some(pb::AgentMessage { kind: Some(kind) })) => {
                heard.saw(hub.now_ms());
                match kind {
                    AgentKind::Status(status) => {
                        if !report(&reports, &cluster, session, vec![status]).await {
                            break;
                        }
                    }
                    AgentKind::Statuses(batch) => {
                        if !report(&reports, &cluster, session, batch.statuses).await {
                            break;
                        }
                    }
                    AgentKind::Ack(ack) => acked(&hub, &cluster, ack).await,
                    AgentKind::Acks(batch) => {
                        for ack in batch.acks {
                            acked(&hub, &cluster, ack).await;
                        }
                    }
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
    if let Err(error) = hub.disconnect(&cluster, session).await {
        tracing::warn!(%cluster, session, %error, "cannot record the disconnection");
    }
}

/// Queues statuses for the reporter; false when it is gone.
async fn report(
    reports: &mpsc::Sender<PendingReport>,
    cluster: &ClusterName,
    session: u64,
    statuses: Vec<pb::SliceStatus>,
) -> bool {
    for status in statuses {
        let (id, observation) = match super::convert::observation_from_proto(status) {
            Ok(observed) => observed,
            Err(error) => {
                tracing::warn!(%cluster, %error, "refused a slice status");
                continue;
            }
        };
        if reports
            .send((cluster.clone(), session, id, observation))
            .await
            .is_err()
        {
            tracing::warn!(%cluster, "the hub's reporter is gone");
            return false;
        }
    }
    true
}

/// Notes an agent's ack.
async fn acked(hub: &Hub, cluster: &ClusterName, ack: pb::SliceAck) {
    match ack.id.parse::<SliceId>() {
        Ok(id) => hub.ack(cluster, &id, ack.generation, ack.deleted).await,
        Err(error) => tracing::warn!(%cluster, %error, "malformed ack"),
    }
}

/// Applies queued statuses, all that are waiting (up to [`REPORT_BATCH`]) at a time, as one event.
async fn report_loop(hub: Hub, mut queue: mpsc::Receiver<PendingReport>) {
    let mut batch = Vec::with_capacity(REPORT_BATCH);
    while queue.recv_many(&mut batch, REPORT_BATCH).await > 0 {
        let reports = std::mem::take(&mut batch);
        let count = reports.len();
        if let Err(error) = hub.report_many(reports).await {
            tracing::error!(%error, count, "cannot record slice statuses");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::clock::SystemClock;
    use crate::resources::parse_yaml_documents;
    use crate::store::MemoryStore;

    const UNITS: &str = include_str!("../../../deploy/examples/units.yaml");
    const PAYMENTS: &str = include_str!("../../../deploy/examples/payments.yaml");

    /// The next slice upsert on the stream, skipping everything else; fails after `deadline`.
    async fn next_upsert(
        rx: &mut mpsc::Receiver<Result<pb::HubMessage, Status>>,
        deadline: Duration,
    ) -> pb::Slice {
        let wait = async {
            loop {
                let message = rx
                    .recv()
                    .await
                    .expect("the stream is open")
                    .expect("no error");
                if let Some(HubKind::Upsert(slice)) = message.kind {
                    return slice;
                }
            }
        };
        tokio::time::timeout(deadline, wait)
            .await
            .expect("an upsert within the deadline")
    }

    #[tokio::test(start_paused = true)]
    async fn a_change_without_notification_still_reaches_the_agent_at_the_periodic_resync() {
        let hub =
            Hub::load(Box::new(MemoryStore::default()), Arc::new(SystemClock)).expect("loads");
        let documents = parse_yaml_documents(&format!("{UNITS}\n---\n{PAYMENTS}")).expect("valid");
        hub.apply(documents, "test", false).await.expect("apply");
        let cluster = ClusterName::new("sh-dc1").expect("name");
        let stream = hub.connect(&cluster, "test").await.expect("connects");
        let (tx, mut rx) = mpsc::channel(OUTBOUND_BUFFER);
        tokio::spawn(send_loop(
            hub.clone(),
            cluster.clone(),
            stream,
            (BTreeMap::new(), false),
            tx,
        ));
        let first = next_upsert(&mut rx, Duration::from_secs(10)).await;

        // A slice changes in the model and nobody wakes the stream: the defence in depth against
        // a missed notification is the comparison every few heartbeats.
        let id: SliceId = first.id.parse().expect("slice id");
        hub.tamper(|core| {
            let sent = core
                .cluster_slices
                .get_mut(&cluster)
                .and_then(|slices| slices.get_mut(&id))
                .expect("the slice");
            let mut wire = pb::Slice::clone(sent);
            wire.generation += 100;
            *sent = Arc::new(wire);
        });
        let changed = tokio::time::Instant::now();
        let resent = loop {
            let slice = next_upsert(&mut rx, HEARTBEAT_INTERVAL * (RESYNC_EVERY_BEATS + 1)).await;
            if slice.id == first.id {
                break slice;
            }
        };
        assert_eq!(resent.generation, first.generation + 100);
        // Time is paused and moves only when every task waits: the change went out with the
        // periodic comparison, not earlier.
        let waited = changed.elapsed();
        assert!(
            waited >= HEARTBEAT_INTERVAL * (RESYNC_EVERY_BEATS - 1),
            "resent after {waited:?}"
        );
    }

    #[test]
    fn changes_go_in_batches_only_to_agents_that_read_them() {
        let upsert = |id: &str| {
            HubKind::Upsert(pb::Slice {
                id: id.to_owned(),
                ..pb::Slice::default()
            })
        };
        let delete = HubKind::Delete(pb::SliceDelete {
            id: "ns/d@u9".to_owned(),
            generation: 9,
        });
        let changes = || vec![upsert("ns/d@u1"), upsert("ns/d@u2"), delete.clone()];
        let singles = change_messages(changes(), false);
        assert_eq!(singles, changes());
        let batched = change_messages(changes(), true);
        let [HubKind::Batch(batch)] = batched.as_slice() else {
            panic!("one batch: {batched:?}");
        };
        let ids: Vec<&str> = batch.upserts.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["ns/d@u1", "ns/d@u2"]);
        assert_eq!(batch.deletes.len(), 1);
        // More changes than a batch holds make several batches, none over the bound.
        let many: Vec<HubKind> = (0..600).map(|i| upsert(&format!("ns/d@u{i}"))).collect();
        let batched = change_messages(many, true);
        assert_eq!(batched.len(), 3);
        for message in &batched {
            let HubKind::Batch(batch) = message else {
                panic!("{message:?}");
            };
            assert!(batch.upserts.len() <= cafe_proto::protocol::BATCH_MAX_ITEMS);
        }
    }
}
