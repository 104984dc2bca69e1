//! The federation hub (DESIGN sections 5, 6, 9): the durable model, the release coordinator, the
//! AgentLink server and the operators' API.
//!
//! Every change is an [`event::Event`] that one writer ([`writer`]) decides on a copy of the model,
//! commits to the store, and only then publishes: readers and streams see a model the store
//! already holds, and never wait for a commit to read it.

pub mod analysis;
pub mod api;
pub mod clock;
pub mod conditions;
pub mod convert;
pub mod core;
pub mod event;
pub mod failover;
pub mod link;
pub mod metrics;
pub mod notify;
pub mod pipelines;
pub mod records;
pub mod replicated;
mod resources;
pub mod server;
mod writer;

use self::clock::Clock;
use self::core::{Core, Effects, Heard};
use self::event::{Answer, Event, PendingReport};
use self::metrics::HubMetrics;
use self::records::{DeploymentRecord, NEXT_GENERATION_KEY, SliceRecord};
use crate::names::{ClusterName, DeploymentKey, SliceId, UnitName};
use crate::release::{CommandError, CommandOutcome, ReleaseCommand, ReleaseState};
use crate::resources::{
    CafeDeployment, DocumentError, FieldError, FieldErrors, LogicalUnit, Resource,
};
use crate::store::{Store, StoreError, Table, Write};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use tokio::sync::{mpsc, oneshot, watch};

/// How often time-based transitions (minReadySeconds, autoPause, deadlines, silent clusters) are checked.
pub const COORDINATOR_TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// A hub failure.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// The store failed; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored record could not be read.
    #[error("stored {table} record {key:?} is unreadable: {reason}")]
    Corrupt {
        /// The table.
        table: &'static str,
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// A record could not be encoded; nothing changed.
    #[error("cannot encode a record: {0}")]
    Encode(String),
    /// Input documents were refused; nothing changed.
    #[error("{}", format_documents(.0))]
    Invalid(Vec<DocumentError>),
    /// The named resource does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the hub's state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A release command could not be carried out.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// The hub's store writer is gone (the hub is stopping, or it failed).
    #[error("the hub stopped: {0}")]
    Stopped(String),
}

fn format_documents(errors: &[DocumentError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The kind of an applied document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A LogicalUnit.
    LogicalUnit,
    /// A CafeDeployment.
    CafeDeployment,
    /// A ReleasePipeline.
    ReleasePipeline,
}

impl Kind {
    /// The kind's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LogicalUnit => "LogicalUnit",
            Self::CafeDeployment => "CafeDeployment",
            Self::ReleasePipeline => "ReleasePipeline",
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What applying a document did (`kubectl apply`'s words).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// It did not exist.
    Created,
    /// It changed.
    Configured,
    /// It was already so.
    Unchanged,
}

impl Action {
    /// The action's word on the wire and in the output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Configured => "configured",
            Self::Unchanged => "unchanged",
        }
    }
}

impl std::fmt::Display for Action {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one applied document did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The document's kind.
    pub kind: Kind,
    /// Empty for units.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// What applying it did.
    pub action: Action,
}

/// The hub: shared by the gRPC services and the coordinator.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    /// The writer's queue; the writer ends when the last hub handle is gone.
    events: mpsc::Sender<writer::Submission>,
    sessions: std::sync::atomic::AtomicU64,
}

/// What the writer and the readers share.
struct Shared {
    /// The model the store holds: replaced (never changed) by the writer after each commit.
    published: RwLock<Arc<Core>>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Per cluster: bumped when its slices change or it must re-check them.
    cluster_wakeups: Mutex<BTreeMap<ClusterName, watch::Sender<u64>>>,
    /// Bumped on every change a status watcher may care about.
    changes: watch::Sender<u64>,
    metrics: HubMetrics,
    /// What every commit requires: the store still holds this hub's writer token.
    fence: crate::store::Condition,
    /// Why the hub failed (a task of it panicked): `None` while it is sound.
    failure: watch::Sender<Option<String>>,
    /// Where release and failover events go (`--notify-webhook`), once set.
    notifier: std::sync::OnceLock<notify::Notifier>,
}

impl Shared {
    /// Marks the hub failed; the first reason stays.
    fn fail(&self, reason: &str) {
        tracing::error!(reason, "the hub failed");
        self.failure.send_if_modified(|failure| {
            if failure.is_some() {
                return false;
            }
            *failure = Some(reason.to_owned());
            true
        });
    }

    fn snapshot(&self) -> Arc<Core> {
        Arc::clone(
            &self
                .published
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Makes `core` the model, then carries out the effects that follow a commit.
    fn publish(&self, core: Arc<Core>, effects: &Effects) {
        *self
            .published
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = core;
        if effects.connected_delta != 0 {
            self.metrics
                .connected_clusters_delta(effects.connected_delta);
        }
        for result in &effects.measurements {
            self.metrics.analysis_measured(result.as_str());
        }
        // Every audit record as a structured log line too, for a log pipeline.
        for record in &effects.audited {
            tracing::info!(
                target: "cafe::audit",
                time = %record.time,
                who = %record.who,
                what = %record.what,
                result = %record.result,
                "audit"
            );
        }
        if let Some(notifier) = self.notifier.get() {
            for notice in &effects.notices {
                notifier.send(notice.clone());
            }
        }
        for (_, took_ms) in &effects.restored {
            self.metrics
                .observe_restore(std::time::Duration::from_millis(
                    u64::try_from(*took_ms).unwrap_or(0),
                ));
        }
        self.wake(effects.clusters.iter());
        self.changes.send_modify(|v| *v += 1);
    }

    fn wake<'a>(&self, clusters: impl Iterator<Item = &'a ClusterName>) {
        let wakeups = self
            .cluster_wakeups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for cluster in clusters {
            if let Some(tx) = wakeups.get(cluster) {
                tx.send_modify(|v| *v += 1);
            }
        }
    }
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").finish_non_exhaustive()
    }
}

fn parse_record<T: serde::de::DeserializeOwned>(
    table: &'static str,
    key: &str,
    value: &[u8],
) -> Result<T, HubError> {
    serde_json::from_slice(value).map_err(|e| HubError::Corrupt {
        table,
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// A token no other hub process has: the process id, the time, and the random keys of a std
/// hasher (fresh in every process).
fn writer_token(now_ms: i64) -> String {
    use std::hash::BuildHasher as _;
    let random = std::collections::hash_map::RandomState::new().hash_one(now_ms);
    format!("{}-{now_ms}-{random:016x}", std::process::id())
}

/// The answer of an event that answers otherwise: a bug, reported rather than panicked on.
fn unexpected(answer: &Answer) -> HubError {
    HubError::FailedPrecondition(format!("internal error: unexpected answer {answer:?}"))
}

impl Hub {
    /// Loads the hub's state from `store` and recomputes every slice (keeping the generations of
    /// unchanged ones, so agents see nothing new after a restart).
    pub fn load(store: Box<dyn Store>, clock: Arc<dyn Clock>) -> Result<Self, HubError> {
        Self::load_with(store, clock, failover::FailoverPolicy::default())
    }

    /// [`Hub::load`] with an automatic-failover policy.
    pub fn load_with(
        store: Box<dyn Store>,
        clock: Arc<dyn Clock>,
        policy: failover::FailoverPolicy,
    ) -> Result<Self, HubError> {
        Self::load_fenced(store, clock, policy, None)
    }

    /// Loads the hub as the elected writer of a shared store: every commit, the first included, is
    /// conditional on `fence` (the leader key holding this replica's record). Without a fence, the
    /// hub claims the store by writing its own writer token, as a single hub does.
    pub fn load_fenced(
        store: Box<dyn Store>,
        clock: Arc<dyn Clock>,
        policy: failover::FailoverPolicy,
        fence: Option<crate::store::Condition>,
    ) -> Result<Self, HubError> {
        let store: Arc<dyn Store> = Arc::from(store);
        let (core, mut effects) = load_core(store.as_ref(), Core::new(clock.now_ms(), policy))?;
        let fence = match fence {
            Some(fence) => {
                store.commit_if(std::slice::from_ref(&fence), &effects.writes)?;
                fence
            }
            None => {
                let token = writer_token(clock.now_ms());
                effects.writes.push(Write::put(
                    Table::Meta,
                    records::WRITER_KEY,
                    token.clone().into_bytes(),
                ));
                store.commit(&effects.writes)?;
                tracing::info!(writer = %token, "the hub owns the store");
                crate::store::Condition {
                    table: Table::Meta,
                    key: records::WRITER_KEY.to_owned(),
                    value: Some(token.into_bytes()),
                }
            }
        };
        let (changes, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            published: RwLock::new(Arc::new(core)),
            store,
            clock,
            cluster_wakeups: Mutex::new(BTreeMap::new()),
            changes,
            metrics: HubMetrics::default(),
            fence,
            failure: watch::channel(None).0,
            notifier: std::sync::OnceLock::new(),
        });
        let events = writer::start(Arc::clone(&shared))
            .map_err(|e| HubError::Stopped(format!("cannot start the store writer: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                events,
                sessions: std::sync::atomic::AtomicU64::new(1),
            }),
        })
    }

    /// The published model: what the store holds.
    fn snapshot(&self) -> Arc<Core> {
        self.inner.shared.snapshot()
    }

    /// Now, by the hub's clock.
    pub fn now_ms(&self) -> i64 {
        self.inner.shared.clock.now_ms()
    }

    /// The hub's metrics.
    pub fn metrics(&self) -> &HubMetrics {
        &self.inner.shared.metrics
    }

    /// Posts release and failover events to `url` from now on (`--notify-webhook`); a second
    /// call changes nothing.
    pub fn notify_to(&self, url: String) {
        let notifier = notify::Notifier::start(url, self.metrics().clone());
        if self.inner.shared.notifier.set(notifier).is_err() {
            tracing::warn!("the notification webhook is set already");
        }
    }

    /// The state metrics of the published model (`cafe_deployment_info`, ...), computed when
    /// scraped.
    pub fn state_collector(&self) -> metrics::StateCollector {
        let shared = Arc::clone(&self.inner.shared);
        metrics::StateCollector::new(Arc::new(move || (shared.snapshot(), shared.clock.now_ms())))
    }

    /// Resolves when the hub has failed, with why: its store writer or one of its tasks panicked.
    pub async fn failed(&self) -> String {
        let mut failure = self.inner.shared.failure.subscribe();
        match failure.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => "the hub is gone".to_owned(),
        }
    }

    /// Whether the hub has failed or was stopped (see [`Hub::stop`]).
    pub fn is_failed(&self) -> bool {
        self.inner.shared.failure.borrow().is_some()
    }

    /// Stops the hub acting, for `reason` (this replica lost the lead): its streams end, and the
    /// server stops. Nothing is committed any more: the store's fence refuses it anyway.
    pub fn stop(&self, reason: &str) {
        self.inner.shared.fail(reason);
    }

    /// Runs `task` in the background, supervised: a panic fails the hub (see [`Hub::failed`])
    /// rather than ending one stream quietly.
    pub fn spawn(
        &self,
        name: &'static str,
        task: impl std::future::Future<Output = ()> + Send + 'static,
    ) {
        let handle = tokio::spawn(task);
        let shared = Arc::clone(&self.inner.shared);
        tokio::spawn(async move {
            if let Err(error) = handle.await
                && error.is_panic()
            {
                shared.fail(&format!("{name} panicked"));
            }
        });
    }

    /// Hands `event` to the writer and waits for its decision to be committed (or refused).
    async fn submit(&self, event: Event) -> Result<Answer, HubError> {
        let (tx, rx) = oneshot::channel();
        let gone = || HubError::Stopped("the hub's store writer is gone".to_owned());
        self.inner
            .events
            .send((event, tx))
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// A receiver that changes whenever the cluster's slices change.
    pub fn subscribe_cluster(&self, cluster: &ClusterName) -> watch::Receiver<u64> {
        let mut wakeups = self
            .inner
            .shared
            .cluster_wakeups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        wakeups
            .entry(cluster.clone())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// A receiver that changes on every change of state or report.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.inner.shared.changes.subscribe()
    }

    // ---- changes ----

    /// Validates and stores documents; all or nothing.
    pub async fn apply(
        &self,
        resources: Vec<Resource>,
        who: &str,
        dry_run: bool,
    ) -> Result<Vec<Applied>, HubError> {
        let event = Event::Apply {
            resources,
            who: who.to_owned(),
            dry_run,
        };
        match self.submit(event).await? {
            Answer::Applied(applied) => Ok(applied),
            other => Err(unexpected(&other)),
        }
    }

    /// Removes a unit no deployment uses. Idempotent: returns false when it did not exist.
    pub async fn delete_unit(&self, name: &UnitName, who: &str) -> Result<bool, HubError> {
        let event = Event::DeleteUnit {
            name: name.clone(),
            who: who.to_owned(),
        };
        self.deleted(event).await
    }

    /// Removes a deployment; its slices are withdrawn from the agents, which drain and remove the
    /// pods. Idempotent: returns false when it did not exist.
    pub async fn delete_deployment(
        &self,
        key: &DeploymentKey,
        who: &str,
    ) -> Result<bool, HubError> {
        let event = Event::DeleteDeployment {
            key: key.clone(),
            who: who.to_owned(),
        };
        self.deleted(event).await
    }

    /// Removes a pipeline that no longer drives its deployments. Idempotent.
    pub async fn delete_pipeline(&self, key: &DeploymentKey, who: &str) -> Result<bool, HubError> {
        let event = Event::DeletePipeline {
            key: key.clone(),
            who: who.to_owned(),
        };
        self.deleted(event).await
    }

    /// Runs a pipeline command.
    pub async fn pipeline_command(
        &self,
        key: &DeploymentKey,
        command: crate::pipeline::PipelineCommand,
        expected_stage: Option<String>,
        reason: &str,
        who: &str,
    ) -> Result<pipelines::PipelineOutcome, HubError> {
        let event = Event::PipelineCommand {
            key: key.clone(),
            command,
            expected_stage,
            reason: reason.to_owned(),
            who: who.to_owned(),
        };
        match self.submit(event).await? {
            Answer::Pipeline(outcome) => Ok(outcome),
            other => Err(unexpected(&other)),
        }
    }

    async fn deleted(&self, event: Event) -> Result<bool, HubError> {
        match self.submit(event).await? {
            Answer::Deleted(deleted) => Ok(deleted),
            other => Err(unexpected(&other)),
        }
    }

    /// Runs a release command.
    pub async fn command(
        &self,
        key: &DeploymentKey,
        command: ReleaseCommand,
        expected_batch: Option<usize>,
        reason: &str,
        who: &str,
    ) -> Result<CommandOutcome, HubError> {
        let event = Event::Command {
            key: key.clone(),
            command,
            expected_batch,
            reason: reason.to_owned(),
            who: who.to_owned(),
        };
        match self.submit(event).await? {
            Answer::Command(outcome) => Ok(*outcome),
            other => Err(unexpected(&other)),
        }
    }

    /// Evacuates a unit or a region (see [`Core::evacuate`]).
    pub async fn evacuate(
        &self,
        target: &failover::EvacuationTarget,
        force: bool,
        reason: &str,
        who: &str,
    ) -> Result<failover::FailoverOutcome, HubError> {
        let event = Event::Evacuate {
            target: target.clone(),
            force,
            reason: reason.to_owned(),
            who: who.to_owned(),
        };
        self.failover(event).await
    }

    /// Returns an evacuated unit to service: it scales out first, then the others scale in.
    pub async fn failback(
        &self,
        unit: &UnitName,
        reason: &str,
        who: &str,
    ) -> Result<failover::FailoverOutcome, HubError> {
        let event = Event::Failback {
            unit: unit.clone(),
            reason: reason.to_owned(),
            who: who.to_owned(),
        };
        self.failover(event).await
    }

    async fn failover(&self, event: Event) -> Result<failover::FailoverOutcome, HubError> {
        match self.submit(event).await? {
            Answer::Failover(outcome) => Ok(outcome),
            other => Err(unexpected(&other)),
        }
    }

    // ---- agents ----

    /// A new agent stream for `cluster`; returns its session number and what the stream updates
    /// without waiting for the writer. A previous stream of the same cluster is superseded.
    pub async fn connect(
        &self,
        cluster: &ClusterName,
        agent_version: &str,
    ) -> Result<(u64, Arc<Heard>), HubError> {
        let session = self
            .inner
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let event = Event::Connected {
            cluster: cluster.clone(),
            session,
            agent_version: agent_version.to_owned(),
        };
        match self.submit(event).await? {
            Answer::Connected(heard) => Ok((session, heard)),
            other => Err(unexpected(&other)),
        }
    }

    /// The agent's stream ended.
    pub async fn disconnect(&self, cluster: &ClusterName, session: u64) -> Result<(), HubError> {
        let event = Event::Disconnected {
            cluster: cluster.clone(),
            session,
        };
        self.submit(event).await.map(|_| ())
    }

    /// The cluster's desired slices and tombstones, for its stream.
    pub fn cluster_view(
        &self,
        cluster: &ClusterName,
    ) -> (Vec<Arc<cafe_proto::v1::Slice>>, Vec<(SliceId, u64)>) {
        self.snapshot().cluster_view(cluster)
    }

    /// An agent acknowledged a slice generation (its stream has already noted that it heard from
    /// the agent). Only a confirmed removal changes the model, and nobody waits for it.
    pub async fn ack(&self, cluster: &ClusterName, id: &SliceId, generation: u64, deleted: bool) {
        self.inner.shared.metrics.acks_inc();
        if deleted {
            let event = Event::RemovalAcked {
                cluster: cluster.clone(),
                id: id.clone(),
                generation,
            };
            let (tx, _answer) = oneshot::channel();
            if self.inner.events.send((event, tx)).await.is_err() {
                tracing::warn!(%cluster, "the hub's store writer is gone; a removal ack is lost");
            }
        }
    }

    /// Agents reported slice statuses (see [`Core::decide`]): all in one decision, so one commit.
    pub async fn report_many(&self, reports: Vec<PendingReport>) -> Result<(), HubError> {
        self.submit(Event::Reports(reports)).await.map(|_| ())
    }

    /// Records a round of analysis measurements (see [`analysis`]).
    pub async fn measured(&self, measured: core::Measured) -> Result<(), HubError> {
        self.submit(Event::Measured(measured)).await.map(|_| ())
    }

    /// Checks the time-based transitions that are due, notes restored failover capacity, and runs
    /// automatic failover.
    pub async fn tick(&self) -> Result<(), HubError> {
        self.submit(Event::Tick).await.map(|_| ())
    }

    // ---- reads ----

    /// A deployment's status.
    pub fn status(
        &self,
        key: &DeploymentKey,
    ) -> Result<crate::release::DeploymentStatusView, HubError> {
        let now = self.now_ms();
        self.snapshot()
            .status(key, now)
            .ok_or_else(|| HubError::NotFound(format!("CafeDeployment {key}")))
    }

    /// A deployment's status on the wire.
    pub fn status_proto(
        &self,
        key: &DeploymentKey,
    ) -> Result<cafe_proto::v1::DeploymentStatus, HubError> {
        let now = self.now_ms();
        let core = self.snapshot();
        let found = core
            .deployment(key)
            .map(|r| r.release.phase())
            .zip(core.status(key, now));
        let (phase, view) =
            found.ok_or_else(|| HubError::NotFound(format!("CafeDeployment {key}")))?;
        Ok(convert::status_to_proto(phase, &view))
    }

    /// Runs `read` on the published model.
    pub fn read<R>(&self, read: impl FnOnce(&Core, i64) -> R) -> R {
        let now = self.now_ms();
        read(&self.snapshot(), now)
    }

    /// The last `limit` audit records, newest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<records::AuditRecord>, HubError> {
        self.inner
            .shared
            .store
            .load_last(Table::Audit, limit)?
            .into_iter()
            .map(|(key, value)| parse_record("audit", &key, &value))
            .collect()
    }

    /// Runs the coordinator until `shutdown` resolves.
    pub async fn run_coordinator(&self, shutdown: impl std::future::Future<Output = ()>) {
        let mut interval = tokio::time::interval(COORDINATOR_TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = interval.tick() => {
                    let span = tracing::trace_span!("tick");
                    let result = tracing::Instrument::instrument(self.tick(), span).await;
                    if let Err(error) = result {
                        tracing::error!(%error, "coordinator tick failed");
                    }
                }
            }
        }
    }

    /// Changes the published model without an event or a commit: for tests of what the streams do
    /// when a change reaches them late or not at all.
    #[cfg(test)]
    fn tamper(&self, change: impl FnOnce(&mut Core)) {
        let mut published = self
            .inner
            .shared
            .published
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(Arc::make_mut(&mut published));
    }
}

/// Reads every record and recomputes the slices. The effects hold the writes that bring the store in
/// line (generations of changed slices, removal of slices no longer desired).
fn load_core(store: &dyn Store, mut core: Core) -> Result<(Core, Effects), HubError> {
    let corrupt = |table: &'static str, key: &str, reason: String| HubError::Corrupt {
        table,
        key: key.to_owned(),
        reason,
    };
    for (key, value) in store.load(Table::Units)? {
        let unit: LogicalUnit = parse_record("units", &key, &value)?;
        let name = unit.name().map_err(|e| corrupt("units", &key, e.0))?;
        core.units_mut().insert(name, unit);
    }
    for (key, value) in store.load(Table::Deployments)? {
        let record: DeploymentRecord = parse_record("deployments", &key, &value)?;
        let dkey = record
            .deployment
            .key()
            .map_err(|e| corrupt("deployments", &key, e.0))?;
        core.deployments.insert(dkey, Arc::new(record));
    }
    for (key, value) in store.load(Table::Pipelines)? {
        let record: records::PipelineRecord = parse_record("pipelines", &key, &value)?;
        let pkey = record
            .pipeline
            .key()
            .map_err(|e| corrupt("pipelines", &key, e.0))?;
        core.pipelines.insert(pkey, Arc::new(record));
    }
    for (key, value) in store.load(Table::Slices)? {
        let record: SliceRecord = parse_record("slices", &key, &value)?;
        core.next_generation = core.next_generation.max(record.generation + 1);
        core.stored_slices.insert(key, record);
    }
    for (key, value) in store.load(Table::Meta)? {
        if key == NEXT_GENERATION_KEY {
            let text = String::from_utf8_lossy(&value).to_string();
            let stored: u64 = text
                .parse()
                .map_err(|_| corrupt("meta", &key, format!("{text:?} is not a number")))?;
            core.next_generation = core.next_generation.max(stored);
        }
    }
    // The sequence goes on after the highest numbered record, whatever else the table holds: the
    // last key in order is not always the highest number (an unpadded or foreign key sorts
    // elsewhere), and a key that is no number must not restart the sequence over older records.
    core.audit_seq = store
        .load(Table::Audit)?
        .iter()
        .filter_map(|(key, _)| key.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let mut effects = Effects::default();
    let keys: Vec<DeploymentKey> = core.deployments.keys().cloned().collect();
    for key in &keys {
        effects.merge(core.sync_slices(key)?);
    }
    // Slices stored but no longer desired: their agents must remove them.
    for (id, record) in std::mem::take(&mut core.stored_slices) {
        if let (Ok(id), Ok(cluster)) = (
            id.parse::<SliceId>(),
            ClusterName::new(record.cluster.clone()),
        ) {
            core.next_generation = core.next_generation.max(record.generation + 2);
            core.tombstones
                .entry(cluster)
                .or_default()
                .insert(id.clone(), record.generation + 1);
            effects
                .writes
                .push(Write::delete(Table::Slices, id.to_string()));
        }
    }
    effects.writes.push(core.generation_write());
    Ok((core, effects))
}

#[cfg(test)]
mod tests;
