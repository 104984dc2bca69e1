//! The federation hub (DESIGN sections 5, 6, 9): the durable model, the release coordinator, the
//! AgentLink server and the operators' API.
//!
//! Every mutation runs under one lock: change the in-memory [`core::Core`], commit the store writes,
//! and only then wake the agents' streams, so nothing is sent that a restart could forget.

pub mod api;
pub mod clock;
pub mod convert;
pub mod core;
pub mod failover;
pub mod link;
pub mod metrics;
pub mod records;
mod resources;
pub mod server;

use self::clock::Clock;
use self::core::{Core, Effects, Heard, to_json};
use self::metrics::HubMetrics;
use self::records::{DeploymentRecord, NEXT_GENERATION_KEY, SliceRecord};
use crate::names::{ClusterName, DeploymentKey, SliceId, UnitName};
use crate::release::{CommandError, CommandOutcome, ReleaseCommand, ReleaseState};
use crate::resources::{
    CafeDeployment, DocumentError, FieldError, FieldErrors, LogicalUnit, Resource,
};
use crate::store::{Store, StoreError, Table, Write};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::watch;

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
}

fn format_documents(errors: &[DocumentError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// What one applied document did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// `LogicalUnit` or `CafeDeployment`.
    pub kind: &'static str,
    /// Empty for units.
    pub namespace: String,
    /// The name.
    pub name: String,
    /// `created`, `configured` or `unchanged`.
    pub action: &'static str,
}

/// The hub: shared by the gRPC services and the coordinator.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    core: Mutex<Core>,
    store: Box<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Per cluster: bumped when its slices change or it must re-check them.
    cluster_wakeups: Mutex<BTreeMap<ClusterName, watch::Sender<u64>>>,
    /// Bumped on every change a status watcher may care about.
    changes: watch::Sender<u64>,
    sessions: std::sync::atomic::AtomicU64,
    metrics: HubMetrics,
    policy: failover::FailoverPolicy,
    /// When this hub process started (ms): clusters never heard from count as silent since then.
    started_ms: i64,
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
        let started_ms = clock.now_ms();
        let (core, effects) = load_core(store.as_ref(), started_ms)?;
        store.commit(&effects.writes)?;
        let (changes, _) = watch::channel(0);
        Ok(Self {
            inner: Arc::new(Inner {
                core: Mutex::new(core),
                store,
                clock,
                cluster_wakeups: Mutex::new(BTreeMap::new()),
                changes,
                sessions: std::sync::atomic::AtomicU64::new(1),
                metrics: HubMetrics::default(),
                policy,
                started_ms,
            }),
        })
    }

    fn core(&self) -> MutexGuard<'_, Core> {
        // Mutations finish their in-memory change before anything that can panic; a poisoned lock
        // still guards consistent maps.
        self.inner
            .core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Now, by the hub's clock.
    pub fn now_ms(&self) -> i64 {
        self.inner.clock.now_ms()
    }

    /// The hub's metrics.
    pub fn metrics(&self) -> &HubMetrics {
        &self.inner.metrics
    }

    /// Runs `mutate` under the lock, commits its writes, then wakes the affected agents. When the
    /// commit fails, the in-memory state is reloaded from the store, so memory never runs ahead of it.
    fn mutate<R>(
        &self,
        mutate: impl FnOnce(&mut Core, i64) -> Result<(R, Effects), HubError>,
    ) -> Result<R, HubError> {
        let now = self.now_ms();
        let (result, clusters) = {
            let mut core = self.core();
            core.now_ms = now;
            let generation_before = core.next_generation;
            let (result, mut effects) = mutate(&mut core, now)?;
            if core.next_generation != generation_before {
                effects.writes.push(core.generation_write());
            }
            if !effects.writes.is_empty() {
                let started = std::time::Instant::now();
                if let Err(error) = self.inner.store.commit(&effects.writes) {
                    tracing::error!(%error, "store commit failed; reloading the hub's state");
                    // Under the same lock, so no other mutation sees (or commits) the lost change.
                    self.reload(&mut core, now);
                    return Err(error.into());
                }
                self.inner.metrics.observe_commit(started.elapsed());
            }
            (result, effects.clusters)
        };
        self.wake(clusters.iter());
        self.inner.changes.send_modify(|v| *v += 1);
        Ok(result)
    }

    /// Rebuilds the model from what the store holds. Agent sessions, reports, tombstones and
    /// restoring units are kept: they are not in the store, and the agents are still there.
    fn reload(&self, core: &mut Core, now: i64) {
        match load_core(self.inner.store.as_ref(), now) {
            Ok((mut fresh, effects)) => {
                fresh.clusters = std::mem::take(&mut core.clusters);
                fresh.restoring = std::mem::take(&mut core.restoring);
                for (cluster, tombs) in std::mem::take(&mut core.tombstones) {
                    fresh.tombstones.entry(cluster).or_default().extend(tombs);
                }
                fresh.next_generation = fresh.next_generation.max(core.next_generation);
                *core = fresh;
                if let Err(error) = self.inner.store.commit(&effects.writes) {
                    tracing::error!(%error, "the store still refuses writes");
                }
            }
            Err(error) => tracing::error!(%error, "cannot reload the hub's state from the store"),
        }
    }

    fn wake<'a>(&self, clusters: impl Iterator<Item = &'a ClusterName>) {
        let wakeups = self
            .inner
            .cluster_wakeups
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for cluster in clusters {
            if let Some(tx) = wakeups.get(cluster) {
                tx.send_modify(|v| *v += 1);
            }
        }
    }

    /// A receiver that changes whenever the cluster's slices change.
    pub fn subscribe_cluster(&self, cluster: &ClusterName) -> watch::Receiver<u64> {
        let mut wakeups = self
            .inner
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
        self.inner.changes.subscribe()
    }

    // ---- agents ----

    /// A new agent stream for `cluster`; returns its session number and what the stream updates
    /// without the model's lock. A previous stream of the same cluster is superseded.
    pub fn connect(&self, cluster: &ClusterName, agent_version: &str) -> (u64, Arc<Heard>) {
        let session = self
            .inner
            .sessions
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let now = self.now_ms();
        let (superseded, heard) = {
            let mut core = self.core();
            let live = core.clusters.entry(cluster.clone()).or_default();
            let superseded = live.set_session(Some(session)).is_some();
            live.heard.saw(now);
            live.agent_version = agent_version.to_owned();
            // Reports of an earlier stream may describe pods that have changed since: only what
            // this stream reports counts.
            live.reports.clear();
            (superseded, Arc::clone(&live.heard))
        };
        if !superseded {
            self.inner.metrics.connected_clusters_delta(1);
        }
        // Wake a superseded stream so that it notices and ends.
        self.wake(std::iter::once(cluster));
        self.inner.changes.send_modify(|v| *v += 1);
        (session, heard)
    }

    /// The agent's stream ended.
    pub fn disconnect(&self, cluster: &ClusterName, session: u64) {
        let mut core = self.core();
        if let Some(live) = core.clusters.get_mut(cluster)
            && live.session() == Some(session)
        {
            live.set_session(None);
            live.reports.clear();
            self.inner.metrics.connected_clusters_delta(-1);
        }
        drop(core);
        self.inner.changes.send_modify(|v| *v += 1);
    }

    /// The cluster's desired slices and tombstones, for its stream.
    pub fn cluster_view(
        &self,
        cluster: &ClusterName,
    ) -> (Vec<Arc<cafe_proto::v1::Slice>>, Vec<(SliceId, u64)>) {
        let core = self.core();
        let slices = core
            .cluster_slices
            .get(cluster)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| core.slices.get(id))
                    .map(|s| Arc::clone(&s.wire))
                    .collect()
            })
            .unwrap_or_default();
        let tombstones = core
            .tombstones
            .get(cluster)
            .map(|t| t.iter().map(|(id, g)| (id.clone(), *g)).collect())
            .unwrap_or_default();
        (slices, tombstones)
    }

    /// An agent acknowledged a slice generation (its stream has already noted that it heard from
    /// the agent). Only a confirmed removal takes the model's lock.
    pub fn ack(&self, cluster: &ClusterName, id: &SliceId, generation: u64, deleted: bool) {
        // A removal the agent confirmed needs no tombstone any more: a later stream's snapshot marker
        // lists the live slices, and the agent removes the rest itself.
        if deleted {
            let mut core = self.core();
            if let Some(tombs) = core.tombstones.get_mut(cluster)
                && tombs.get(id).is_some_and(|g| *g <= generation)
            {
                tombs.remove(id);
            }
        }
        self.inner.metrics.acks_inc();
    }

    /// Agents reported slice statuses: each is recorded when its stream (session) is still its
    /// cluster's current one and the slice is the cluster's (others are refused and logged), then every
    /// deployment they touch moves forward once, all in one mutation and so one store commit.
    pub fn report_many(
        &self,
        reports: Vec<(ClusterName, u64, cafe_proto::v1::SliceStatus)>,
    ) -> Result<(), HubError> {
        self.mutate(|core, now| {
            let mut touched: std::collections::BTreeSet<DeploymentKey> = std::collections::BTreeSet::new();
            for (cluster, session, status) in reports {
                let current = core.clusters.get(&cluster).is_some_and(|live| live.session() == Some(session));
                if !current {
                    continue;
                }
                let id = match status.id.parse::<SliceId>() {
                    Ok(id) => id,
                    Err(error) => {
                        tracing::warn!(%cluster, %error, "refused a slice status");
                        continue;
                    }
                };
                if core.slices.get(&id).is_none_or(|s| s.cluster != cluster) {
                    tracing::warn!(%cluster, slice = %id, "refused a slice status: the slice is not the cluster's");
                    continue;
                }
                let live = core.clusters.entry(cluster).or_default();
                live.reports.insert(id.clone(), status);
                touched.insert(id.deployment);
            }
            let mut effects = Effects::default();
            for key in &touched {
                effects.merge(core.evaluate(key, now));
            }
            Ok(((), effects))
        })
    }

    /// Checks the time-based transitions that are due (minReadySeconds, autoPauseSeconds, progress
    /// deadlines) in one mutation, notes restored failover capacity, and runs automatic failover.
    pub fn tick(&self) -> Result<(), HubError> {
        let now = self.now_ms();
        let due = self.core().due(now);
        if !due.is_empty() {
            self.mutate(|core, now| {
                let mut effects = Effects::default();
                for key in &due {
                    effects.merge(core.evaluate(key, now));
                }
                Ok(((), effects))
            })?;
        }
        {
            let mut core = self.core();
            core.now_ms = now;
            Self::observe_restored(&mut core, &self.inner.metrics);
        }
        self.auto_failover()
    }

    // ---- reads ----

    /// A deployment's status.
    pub fn status(
        &self,
        key: &DeploymentKey,
    ) -> Result<crate::release::DeploymentStatusView, HubError> {
        let now = self.now_ms();
        self.core()
            .status(key, now)
            .ok_or_else(|| HubError::NotFound(format!("CafeDeployment {key}")))
    }

    /// Runs `read` on the state.
    pub fn read<R>(&self, read: impl FnOnce(&Core, i64) -> R) -> R {
        let now = self.now_ms();
        read(&self.core(), now)
    }

    /// The last `limit` audit records, newest first.
    pub fn audit_log(&self, limit: usize) -> Result<Vec<records::AuditRecord>, HubError> {
        self.inner
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
                    if let Err(error) = self.tick() {
                        tracing::error!(%error, "coordinator tick failed");
                    }
                }
            }
        }
    }
}

/// Reads every record and recomputes the slices. The effects hold the writes that bring the store in
/// line (generations of changed slices, removal of slices no longer desired).
fn load_core(store: &dyn Store, now_ms: i64) -> Result<(Core, Effects), HubError> {
    let corrupt = |table: &'static str, key: &str, reason: String| HubError::Corrupt {
        table,
        key: key.to_owned(),
        reason,
    };
    let mut core = Core {
        now_ms,
        ..Core::default()
    };
    for (key, value) in store.load(Table::Units)? {
        let unit: LogicalUnit = parse_record("units", &key, &value)?;
        let name = unit.name().map_err(|e| corrupt("units", &key, e.0))?;
        core.units.insert(name, unit);
    }
    for (key, value) in store.load(Table::Deployments)? {
        let record: DeploymentRecord = parse_record("deployments", &key, &value)?;
        let dkey = record
            .deployment
            .key()
            .map_err(|e| corrupt("deployments", &key, e.0))?;
        core.deployments.insert(dkey, record);
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
        effects.merge(core.sync_slices(key));
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
