//! The hub's in-memory model: units, deployments with their releases, the slices they imply, and
//! what the agents reported. Every mutation returns the store writes that make it durable; the
//! store's writer commits them before the new model is published and any agent is told (see
//! [`super::writer`]).
//!
//! The maps are persistent (structurally shared): the writer works on a copy of the published
//! model that costs a few pointer copies, and a copy it throws away (a refused event, a failed
//! commit) leaves the published one as it was.

use super::HubError;
use super::convert::{fill_templates, slice_header};
use super::records::{
    AuditRecord, DeploymentRecord, NEXT_GENERATION_KEY, PipelineRecord, SliceRecord, audit_key,
};
use crate::names::{ClusterName, DeploymentKey, SliceId, UnitName};
use crate::plan::{HoldInput, Plan, hold, plan_deployment_in};
use crate::release::{
    Advance, AnalysisOutcome, AnalysisStatusView, BlueGreenPart, DeploymentStatusView, Measurement,
    MeasurementResult, Observed, ReleaseState, Stage, UnitProgress, UnitStatusView, WaitClock,
    desired_slices, revision_name,
};
use crate::resources::{FieldErrors, LogicalUnit, UnitPhase};
use crate::store::{Table, Write};
use cafe_proto::v1 as pb;
use imbl::{OrdMap, OrdSet};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// A cluster is Unknown when its agent has been silent this long: the protocol's missed heartbeats
/// (3 of 2 s).
pub const CLUSTER_SILENCE_MS: i64 = cafe_proto::protocol::HEARTBEAT_INTERVAL.as_millis() as i64
    * cafe_proto::protocol::MISSED_HEARTBEATS as i64;

/// One desired slice as the hub holds it: what the release reads of it. (Its wire form, made once
/// for the streams, is in [`Core::cluster_slices`].)
#[derive(Debug, Clone)]
pub struct LiveSlice {
    /// The cluster whose agent runs it.
    pub(super) cluster: ClusterName,
    /// Only grows.
    pub(super) generation: u64,
    /// A digest of the content (shared: copies of the model copy it often).
    hash: Arc<str>,
    /// Pods in the unit.
    pub(super) replicas: i32,
    /// Pods that must run the update revision now.
    pub(super) target: i32,
    /// The revision pods move to.
    pub(super) update_revision: Arc<str>,
    /// Blue-green: what the unit was told.
    pub(super) blue_green: Option<BlueGreenPart>,
}

/// What an agent's stream updates on every message, shared with the model so that the stream never
/// waits for the model's lock (held through store commits) just to say it heard from the agent.
#[derive(Debug, Default)]
pub struct Heard {
    /// The last message from the agent (ms since the epoch).
    last_ms: AtomicI64,
    /// The cluster's current session, 0 when none (sessions start at 1).
    session: AtomicU64,
}

impl Heard {
    /// A message arrived at `now_ms`.
    pub fn saw(&self, now_ms: i64) {
        self.last_ms.store(now_ms, Ordering::Relaxed);
    }

    /// The last message from the agent (ms since the epoch), 0 if none.
    pub fn last_ms(&self) -> i64 {
        self.last_ms.load(Ordering::Relaxed)
    }

    /// Whether `session` is still the cluster's current stream.
    pub fn is_current(&self, session: u64) -> bool {
        self.session.load(Ordering::SeqCst) == session
    }
}

/// What the hub knows of one member cluster's agent.
#[derive(Debug, Default, Clone)]
pub struct ClusterLive {
    /// The current stream's session number, when an agent is connected.
    session: Option<u64>,
    /// When the agent was last heard from, and the session, as the streams see them.
    pub(super) heard: Arc<Heard>,
    /// The agent's version.
    pub(super) agent_version: String,
    /// The latest observation of each slice.
    pub(super) reports: OrdMap<SliceId, Observation>,
}

impl ClusterLive {
    /// Connected and heard from recently.
    pub fn connected(&self, now_ms: i64) -> bool {
        self.session.is_some() && now_ms - self.last_seen_ms() <= CLUSTER_SILENCE_MS
    }

    /// The current stream's session number, when an agent is connected.
    pub fn session(&self) -> Option<u64> {
        self.session
    }

    /// Makes `session` the current stream (or none); returns the one it replaces.
    pub fn set_session(&mut self, session: Option<u64>) -> Option<u64> {
        self.heard
            .session
            .store(session.unwrap_or(0), Ordering::SeqCst);
        std::mem::replace(&mut self.session, session)
    }

    /// The last message from the agent (ms since the epoch), 0 if none.
    pub fn last_seen_ms(&self) -> i64 {
        self.heard.last_ms()
    }
}

/// What the hub can say of a member cluster's link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Its agent's stream is open and the agent was heard from recently.
    Connected,
    /// The stream is open but the agent has been silent for [`CLUSTER_SILENCE_MS`].
    Unknown,
    /// No stream.
    Disconnected,
}

impl LinkState {
    /// The state of a cluster whose agent the hub knows as `live` (if at all) at `now_ms`.
    pub fn of(live: Option<&ClusterLive>, now_ms: i64) -> Self {
        match live {
            Some(l) if l.connected(now_ms) => Self::Connected,
            Some(l) if l.session().is_some() => Self::Unknown,
            _ => Self::Disconnected,
        }
    }

    /// The state's name, as `cafectl get clusters` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connected => "Connected",
            Self::Unknown => "Unknown",
            Self::Disconnected => "Disconnected",
        }
    }
}

/// The hub's whole state.
#[derive(Debug, Default, Clone)]
pub struct Core {
    /// Logical units by name (few, and rarely changed: a change copies the map).
    pub(super) units: Arc<BTreeMap<UnitName, LogicalUnit>>,
    /// Deployments with their releases.
    pub(super) deployments: OrdMap<DeploymentKey, Arc<DeploymentRecord>>,
    /// ReleasePipelines with their state.
    pub(super) pipelines: OrdMap<crate::resources::PipelineKey, Arc<PipelineRecord>>,
    /// Desired slices.
    pub(super) slices: OrdMap<SliceId, LiveSlice>,
    /// The units each deployment has slices in.
    pub(super) deployment_slices: OrdMap<DeploymentKey, OrdSet<UnitName>>,
    /// The slices each cluster runs.
    /// The slices each cluster runs, in their wire form (what its stream sends).
    pub(super) cluster_slices: OrdMap<ClusterName, OrdMap<SliceId, Arc<pb::Slice>>>,
    /// Slices removed, with the generation of their removal, per cluster.
    pub(super) tombstones: OrdMap<ClusterName, OrdMap<SliceId, u64>>,
    /// The next slice generation.
    pub(super) next_generation: u64,
    /// Agents.
    pub(super) clusters: OrdMap<ClusterName, ClusterLive>,
    /// The last audit sequence number.
    pub(super) audit_seq: u64,
    /// Records loaded from the store, used once to keep generations across a restart.
    pub(super) stored_slices: BTreeMap<String, SliceRecord>,
    /// The time of the mutation under way (ms since the epoch).
    pub(super) now_ms: i64,
    /// Units evacuated or failed back whose new capacity is not in place yet: since when (ms).
    pub(super) restoring: OrdMap<UnitName, i64>,
    /// How long each deployment's current group has waited (runtime only: not in the records).
    pub(super) release_clocks: OrdMap<DeploymentKey, WaitClock>,
    /// Automatic failover.
    pub(super) policy: super::failover::FailoverPolicy,
    /// When this hub process started (ms): clusters never heard from count as silent since then.
    pub(super) started_ms: i64,
    /// What the decisions of the event being decided announce, in order: the writer moves them
    /// into the event's [`Effects`] (never kept in a published model).
    pub(super) notices: Vec<super::notify::Notice>,
}

/// What one mutation asks for besides its new model: the store writes that make it durable, and
/// what to do once they are.
#[derive(Debug, Default)]
pub struct Effects {
    /// Store writes, committed before anything is sent.
    pub writes: Vec<Write>,
    /// Clusters whose streams to wake.
    pub clusters: BTreeSet<ClusterName>,
    /// Change of the count of connected agents, for the metrics.
    pub connected_delta: i64,
    /// Units whose new capacity became ready, with how long it took (ms), for the metrics.
    pub restored: Vec<(UnitName, i64)>,
    /// Results of analysis measurements recorded, for the metrics.
    pub measurements: Vec<MeasurementResult>,
    /// Release and failover events for the notification webhook, once committed.
    pub notices: Vec<super::notify::Notice>,
    /// Audit records written, logged once committed.
    pub audited: Vec<AuditRecord>,
}

/// Measurements taken for one analysis run, on their way to the model.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The deployment.
    pub key: DeploymentKey,
    /// The update revision they were taken for.
    pub revision: String,
    /// The group.
    pub group: usize,
    /// The run's start (see [`crate::release::AnalysisRun::started_ms`]).
    pub started_ms: i64,
    /// One round: every series measured once.
    pub measurements: Vec<Measurement>,
}

/// The group and outcome of an analysis that `next` ends and `before` had not.
fn analysis_ended(before: &ReleaseState, next: &ReleaseState) -> Option<(usize, AnalysisOutcome)> {
    let outcome = |s: &ReleaseState| {
        s.analysis()
            .and_then(|r| r.outcome.clone().map(|o| (r.group, o)))
    };
    let after = outcome(next)?;
    (outcome(before).as_ref() != Some(&after)).then_some(after)
}

impl Effects {
    /// Adds another mutation's effects.
    pub fn merge(&mut self, other: Effects) {
        self.writes.extend(other.writes);
        self.clusters.extend(other.clusters);
        self.connected_delta += other.connected_delta;
        self.restored.extend(other.restored);
        self.measurements.extend(other.measurements);
        self.notices.extend(other.notices);
        self.audited.extend(other.audited);
    }
}

/// One problem an agent reported of a slice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pod: String,
    reason: String,
    message: String,
}

impl Problem {
    /// A problem of `pod` (empty: of the slice itself, such as a write the cluster refused).
    pub fn new(pod: String, reason: String, message: String) -> Self {
        Self {
            pod,
            reason,
            message,
        }
    }

    /// `pod: reason`; a problem of the slice itself is `reason: message`, so that the cluster's
    /// own words reach the operator.
    pub fn line(&self) -> String {
        match (self.pod.is_empty(), self.message.is_empty()) {
            (true, true) => self.reason.clone(),
            (true, false) => format!("{}: {}", self.reason, self.message),
            (false, _) => format!("{}: {}", self.pod, self.reason),
        }
    }
}

/// What an agent last reported of one slice: the pods its InPlaceSet runs for one generation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observation {
    generation: u64,
    update_revision: String,
    replicas: i32,
    ready: i32,
    updated: i32,
    updated_ready: i32,
    traffic: Traffic,
    problems: Vec<Problem>,
}

/// What an agent reported of the pods in traffic and beside it (blue-green).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Traffic {
    /// Pods in traffic.
    pub serving: i32,
    /// Pods in traffic on the update revision.
    pub updated_serving: i32,
    /// Pods of the update revision ready out of traffic.
    pub preview_ready: i32,
    /// Old pods kept out of traffic as the way back.
    pub standby: i32,
    /// When the last of them goes (RFC 3339); empty without any.
    pub standby_until: String,
}

impl Observation {
    /// What the agent saw of `generation` of the slice, moving to `update_revision`.
    pub fn new(generation: u64, update_revision: String) -> Self {
        Self {
            generation,
            update_revision,
            ..Self::default()
        }
    }

    /// With the pod counts: existing, ready, on the update revision, ready on it.
    pub fn with_pods(
        mut self,
        replicas: i32,
        ready: i32,
        updated: i32,
        updated_ready: i32,
    ) -> Self {
        self.replicas = replicas;
        self.ready = ready;
        self.updated = updated;
        self.updated_ready = updated_ready;
        self
    }

    /// With the pods in traffic and beside it.
    pub fn with_traffic(mut self, traffic: Traffic) -> Self {
        self.traffic = traffic;
        self
    }

    /// The pods in traffic and beside it.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// With the problems.
    pub fn with_problems(mut self, problems: Vec<Problem>) -> Self {
        self.problems = problems;
        self
    }

    /// Whether it describes `generation` moving to `update_revision` (else it is stale).
    pub fn describes(&self, generation: u64, update_revision: &str) -> bool {
        self.generation == generation && self.update_revision == update_revision
    }

    /// Ready pods.
    pub fn ready(&self) -> i32 {
        self.ready
    }

    /// The problems, one line each (see [`Problem::line`]).
    pub fn problem_lines(&self) -> Vec<String> {
        self.problems.iter().map(Problem::line).collect()
    }

    /// What the release needs of it.
    fn observed(&self) -> Observed {
        Observed {
            replicas: self.replicas,
            ready: self.ready,
            updated: self.updated,
            updated_ready: self.updated_ready,
            problems: self.problem_lines(),
            serving: self.traffic.serving,
            updated_serving: self.traffic.updated_serving,
            preview_ready: self.traffic.preview_ready,
        }
    }
}

/// Where a unit stands in a blue-green release, from its slice and its agent's latest report.
fn blue_green_view(
    part: BlueGreenPart,
    replicas: i32,
    observation: Option<&Observation>,
) -> crate::release::BlueGreenUnitView {
    let observed = observation.map(Observation::observed).unwrap_or_default();
    let traffic = observation
        .map(Observation::traffic)
        .cloned()
        .unwrap_or_default();
    let state = if part.switched {
        if observed.serves_update(replicas) {
            "Switched"
        } else {
            "Switching"
        }
    } else if part.preview {
        if traffic.preview_ready >= replicas {
            "PreviewReady"
        } else {
            "Previewing"
        }
    } else {
        "Waiting"
    };
    crate::release::BlueGreenUnitView {
        state: state.to_owned(),
        preview_ready: traffic.preview_ready,
        serving: traffic.serving,
        updated_serving: traffic.updated_serving,
        standby: traffic.standby,
        standby_until: traffic.standby_until,
    }
}

/// JSON of a record. A value that cannot be encoded is an error, never an empty record: loading
/// one would fail later, far from its cause.
fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, HubError> {
    serde_json::to_vec(value).map_err(|e| HubError::Encode(e.to_string()))
}

/// An audit record's `what`: the command, with the operator's reason when one was given.
pub(super) fn with_reason(what: String, reason: &str) -> String {
    if reason.is_empty() {
        what
    } else {
        format!("{what} ({reason})")
    }
}

/// The store write of a record.
pub fn put_json<T: serde::Serialize>(
    table: Table,
    key: impl Into<String>,
    value: &T,
) -> Result<Write, HubError> {
    Ok(Write::put(table, key, to_json(value)?))
}

impl Core {
    /// An empty model.
    pub fn new(now_ms: i64, policy: super::failover::FailoverPolicy) -> Self {
        Self {
            now_ms,
            started_ms: now_ms,
            policy,
            ..Self::default()
        }
    }

    /// The logical units.
    pub fn units(&self) -> &BTreeMap<UnitName, LogicalUnit> {
        &self.units
    }

    /// The units, to change (copied first when the published model still shares them).
    pub(super) fn units_mut(&mut self) -> &mut BTreeMap<UnitName, LogicalUnit> {
        Arc::make_mut(&mut self.units)
    }

    /// A deployment with its release.
    pub fn deployment(&self, key: &DeploymentKey) -> Option<&DeploymentRecord> {
        self.deployments.get(key).map(AsRef::as_ref)
    }

    /// Every cluster the hub knows: of a unit, or with an agent that connected.
    pub fn known_clusters(&self) -> BTreeSet<ClusterName> {
        let mut names: BTreeSet<ClusterName> = self.cluster_names().cloned().collect();
        names.extend(self.units.values().map(|u| u.spec.cluster.clone()));
        names
    }

    /// Every deployment, by key.
    pub fn deployments(&self) -> impl Iterator<Item = (&DeploymentKey, &DeploymentRecord)> {
        self.deployments.iter().map(|(k, r)| (k, r.as_ref()))
    }

    /// A deployment's record, to change (copied first when the published model still shares it).
    pub(super) fn record_mut(&mut self, key: &DeploymentKey) -> Option<&mut DeploymentRecord> {
        self.deployments.get_mut(key).map(Arc::make_mut)
    }

    /// What the hub knows of a cluster's agent.
    pub fn cluster(&self, name: &ClusterName) -> Option<&ClusterLive> {
        self.clusters.get(name)
    }

    /// Every cluster an agent has connected from since the hub started.
    pub fn cluster_names(&self) -> impl Iterator<Item = &ClusterName> {
        self.clusters.keys()
    }

    /// How many slices the cluster runs.
    pub fn cluster_slice_count(&self, cluster: &ClusterName) -> usize {
        self.cluster_slices.get(cluster).map_or(0, OrdMap::len)
    }

    /// Allocates the next slice generation. (The counter reaches the store through
    /// [`Core::generation_write`], once per commit.)
    fn allocate_generation(&mut self) -> u64 {
        self.next_generation = self.next_generation.max(1);
        let generation = self.next_generation;
        self.next_generation += 1;
        generation
    }

    /// The store write of the generation counter.
    pub fn generation_write(&self) -> Write {
        Write::put(
            Table::Meta,
            NEXT_GENERATION_KEY,
            self.next_generation.to_string().into_bytes(),
        )
    }

    /// Records an audit entry in the same commit.
    pub fn audit(
        &mut self,
        effects: &mut Effects,
        who: &str,
        what: &str,
        result: &str,
    ) -> Result<(), HubError> {
        let record = AuditRecord {
            time: super::clock::rfc3339(self.now_ms),
            who: who.to_owned(),
            what: what.to_owned(),
            result: result.to_owned(),
        };
        let write = put_json(Table::Audit, audit_key(self.audit_seq + 1), &record)?;
        self.audit_seq += 1;
        effects.writes.push(write);
        effects.audited.push(record);
        Ok(())
    }

    /// Adds the store write of the deployment's record to `effects`.
    pub(super) fn write_record(
        &self,
        key: &DeploymentKey,
        effects: &mut Effects,
    ) -> Result<(), HubError> {
        if let Some(record) = self.deployments.get(key) {
            let write = put_json(Table::Deployments, key.to_string(), record.as_ref())?;
            effects.writes.push(write);
        }
        Ok(())
    }

    /// The deployment's plan against the current units.
    pub fn plan(&self, key: &DeploymentKey) -> Option<Result<Plan, FieldErrors>> {
        let record = self.deployments.get(key)?;
        Some(plan_deployment_in(
            &record.deployment,
            &self.units,
            &record.last_allocation,
            self.plan_blocks(key),
        ))
    }

    /// Recomputes the deployment's slices; changed ones get a new generation.
    pub fn sync_slices(&mut self, key: &DeploymentKey) -> Result<Effects, HubError> {
        let plan = self.plan(key);
        self.sync_planned(key, plan)
    }

    /// [`Core::sync_slices`] with the deployment's plan against the current units, made already.
    fn sync_planned(
        &mut self,
        key: &DeploymentKey,
        plan: Option<Result<Plan, FieldErrors>>,
    ) -> Result<Effects, HubError> {
        let mut effects = Effects::default();
        let mut plan = match plan {
            Some(Ok(plan)) => plan,
            Some(Err(errors)) => {
                tracing::warn!(deployment = %key, %errors, "cannot plan; slices kept as they are");
                return Ok(effects);
            }
            None => Plan {
                name: String::new(),
                namespace: String::new(),
                replicas: 0,
                units: Vec::new(),
                batches: Vec::new(),
                notes: Vec::new(),
                strategy: crate::resources::StrategyType::default(),
            },
        };
        self.remember_allocation(key, &plan, &mut effects)?;
        // A move that ends in this sync still explains its last step (the evacuated unit's scale-in).
        let moving = self
            .deployments
            .get(key)
            .is_some_and(|r| r.rebalancing_since_ms.is_some());
        self.hold_for_move(key, &mut plan, &mut effects)?;
        let desired = match self.deployments.get(key) {
            Some(record) => {
                let selectors: BTreeMap<UnitName, BTreeMap<String, String>> = plan
                    .units
                    .iter()
                    .filter_map(|u| {
                        self.units
                            .get(&u.unit)
                            .map(|unit| (u.unit.clone(), unit.spec.node_selector.clone()))
                    })
                    .collect();
                let mut slices =
                    desired_slices(&record.deployment, &plan, &record.release, &selectors);
                if moving {
                    self.explain_move(&plan, &mut slices);
                }
                slices
            }
            None => Vec::new(),
        };
        let mut keep = BTreeSet::new();
        let mut json = super::convert::TemplateJson::default();
        for spec in desired {
            keep.insert(spec.id.unit.clone());
            self.upsert_slice(key, spec, &mut json, &mut effects)?;
        }
        let gone: Vec<UnitName> = self
            .deployment_slices
            .get(key)
            .map(|units| {
                units
                    .iter()
                    .filter(|u| !keep.contains(*u))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for unit in gone {
            let id = SliceId::new(key, &unit);
            if let Some(cluster) = self.slices.get(&id).map(|s| s.cluster.clone()) {
                self.remove_slice(&id, &cluster, &mut effects);
            }
            if let Some(units) = self.deployment_slices.get_mut(key) {
                units.remove(&unit);
            }
        }
        if self
            .deployment_slices
            .get(key)
            .is_some_and(OrdSet::is_empty)
        {
            self.deployment_slices.remove(key);
        }
        Ok(effects)
    }

    /// Makes `spec` the unit's slice: nothing happens when it is what the hub holds already, else it
    /// gets a generation (the stored one after a restart, when the content is the same) and every
    /// index learns of it.
    fn upsert_slice(
        &mut self,
        key: &DeploymentKey,
        spec: crate::release::SliceSpec,
        json: &mut super::convert::TemplateJson,
        effects: &mut Effects,
    ) -> Result<(), HubError> {
        let hash: Arc<str> = Arc::from(spec.digest());
        let id = spec.id.clone();
        let unchanged = self
            .slices
            .get(&id)
            .is_some_and(|s| s.hash == hash && s.cluster == spec.cluster);
        if unchanged {
            return Ok(());
        }
        let id_text = id.to_string();
        // After a restart, an unchanged slice keeps its generation, and its record needs no rewrite.
        let (generation, stored_as_is) = match self.stored_slices.remove(&id_text) {
            Some(stored) if *stored.hash == *hash && stored.cluster == spec.cluster.as_str() => {
                (stored.generation, stored.replicas == Some(spec.replicas))
            }
            _ => (self.allocate_generation(), false),
        };
        // The wire form is made only for a slice that changed, once, for the streams.
        let mut wire = slice_header(&spec);
        wire.generation = generation;
        fill_templates(&mut wire, &spec, json)?;
        if let Some(previous) = self.slices.get(&id)
            && previous.cluster != spec.cluster
        {
            // The unit moved to another cluster: the old one drops its copy.
            let old = previous.cluster.clone();
            self.remove_slice(&id, &old, effects);
        }
        if !stored_as_is {
            effects.writes.push(put_json(
                Table::Slices,
                id_text,
                &SliceRecord {
                    cluster: spec.cluster.to_string(),
                    generation,
                    hash: hash.to_string(),
                    replicas: Some(spec.replicas),
                },
            )?);
        }
        effects.clusters.insert(spec.cluster.clone());
        let wire = Arc::new(wire);
        self.cluster_slices
            .entry(spec.cluster.clone())
            .or_default()
            .insert(id.clone(), wire);
        if let Some(tombs) = self.tombstones.get_mut(&spec.cluster) {
            tombs.remove(&id);
        }
        self.deployment_slices
            .entry(key.clone())
            .or_default()
            .insert(id.unit.clone());
        self.slices.insert(
            id,
            LiveSlice {
                cluster: spec.cluster,
                generation,
                hash,
                replicas: spec.replicas,
                target: spec.replicas - spec.partition,
                update_revision: Arc::from(spec.update_revision),
                blue_green: spec.blue_green.map(|bg| BlueGreenPart {
                    switched: bg.switched,
                    preview: bg.preview,
                }),
            },
        );
        Ok(())
    }

    fn remove_slice(&mut self, id: &SliceId, cluster: &ClusterName, effects: &mut Effects) {
        self.slices.remove(id);
        if let Some(ids) = self.cluster_slices.get_mut(cluster) {
            ids.remove(id);
        }
        let generation = self.allocate_generation();
        self.tombstones
            .entry(cluster.clone())
            .or_default()
            .insert(id.clone(), generation);
        if let Some(live) = self.clusters.get_mut(cluster) {
            live.reports.remove(id);
        }
        effects
            .writes
            .push(Write::delete(Table::Slices, id.to_string()));
        effects.clusters.insert(cluster.clone());
    }

    /// The cluster's desired slices and tombstones, for its stream.
    pub fn cluster_view(
        &self,
        cluster: &ClusterName,
    ) -> (Vec<Arc<pb::Slice>>, Vec<(SliceId, u64)>) {
        let slices = self
            .cluster_slices
            .get(cluster)
            .map(|slices| slices.values().cloned().collect())
            .unwrap_or_default();
        let tombstones = self
            .tombstones
            .get(cluster)
            .map(|t| t.iter().map(|(id, g)| (id.clone(), *g)).collect())
            .unwrap_or_default();
        (slices, tombstones)
    }

    /// The slice's latest report, when its agent is connected and the report describes the slice's
    /// current generation and update revision.
    pub fn fresh_report(&self, id: &SliceId) -> Option<&Observation> {
        let slice = self.slices.get(id)?;
        let live = self.clusters.get(&slice.cluster)?;
        if !live.connected(self.now_ms) {
            return None;
        }
        let report = live.reports.get(id)?;
        report
            .describes(slice.generation, &slice.update_revision)
            .then_some(report)
    }

    /// Says in each slice why replicas move while a failover is under way.
    /// Only the slices whose replicas the move changes carry the reason: the others stay as they
    /// are (and keep their generation).
    fn explain_move(&self, plan: &Plan, slices: &mut [crate::release::SliceSpec]) {
        let changed: Vec<String> = slices
            .iter()
            .filter(|s| self.restoring.contains_key(&s.id.unit))
            .filter_map(|s| self.units.get(&s.id.unit).map(|u| (&s.id.unit, u)))
            .map(|(name, unit)| {
                let status = unit.status.clone().unwrap_or_default();
                format!(
                    "unit {name} {}: {}",
                    if unit.phase() == UnitPhase::Evacuated {
                        "evacuated"
                    } else {
                        "failed back"
                    },
                    status.reason
                )
            })
            .collect();
        let reason = if changed.is_empty() {
            "failover: replicas move between units".to_owned()
        } else {
            changed.join("; ")
        };
        for (slice, unit) in slices.iter_mut().zip(&plan.units) {
            if self.restoring.contains_key(&unit.unit) || unit.replicas != unit.nominal {
                slice.reason.clone_from(&reason);
            }
        }
    }

    /// Keeps the plan's nominal allocation as the next plan's current replicas.
    fn remember_allocation(
        &mut self,
        key: &DeploymentKey,
        plan: &Plan,
        effects: &mut Effects,
    ) -> Result<(), HubError> {
        let allocation: BTreeMap<UnitName, i32> = plan
            .units
            .iter()
            .map(|u| (u.unit.clone(), u.nominal))
            .collect();
        let same = self
            .deployments
            .get(key)
            .is_none_or(|r| r.last_allocation == allocation);
        if same {
            return Ok(());
        }
        if let Some(record) = self.record_mut(key) {
            record.last_allocation = allocation;
        }
        self.write_record(key, effects)
    }

    /// During a move, the replicas each unit's slice keeps (make before break); ends the move once
    /// the new capacity is ready.
    fn hold_for_move(
        &mut self,
        key: &DeploymentKey,
        plan: &mut Plan,
        effects: &mut Effects,
    ) -> Result<(), HubError> {
        let Some(since) = self
            .deployments
            .get(key)
            .and_then(|r| r.rebalancing_since_ms)
        else {
            return Ok(());
        };
        let inputs: Vec<HoldInput> = plan
            .units
            .iter()
            .map(|u| {
                let id = SliceId::new(key, &u.unit);
                HoldInput {
                    planned: u.replicas,
                    sent: self.slices.get(&id).map(|s| s.replicas).or_else(|| {
                        // Right after a restart only the stored record knows what was sent.
                        self.stored_slices
                            .get(&id.to_string())
                            .and_then(|r| r.replicas)
                    }),
                    ready: self.fresh_report(&id).map(Observation::ready),
                    forced_away: self
                        .units
                        .get(&u.unit)
                        .is_some_and(LogicalUnit::forced_away),
                }
            })
            .collect();
        let (replicas, capacity_ready) = hold(&inputs);
        if capacity_ready {
            if let Some(record) = self.record_mut(key) {
                record.rebalancing_since_ms = None;
            }
            self.write_record(key, effects)?;
            tracing::info!(deployment = %key, took_ms = self.now_ms - since, "new capacity ready; move complete");
            return Ok(());
        }
        for (unit, replicas) in plan.units.iter_mut().zip(replicas) {
            unit.replicas = replicas;
        }
        Ok(())
    }

    /// The ready pods of the deployment in `unit` by its agent's latest report, fresh or not (0
    /// without one).
    pub(super) fn reported_ready(
        &self,
        key: &DeploymentKey,
        unit: &UnitName,
        cluster: &ClusterName,
    ) -> i32 {
        let id = SliceId::new(key, unit);
        self.clusters
            .get(cluster)
            .and_then(|live| live.reports.get(&id))
            .map_or(0, |report| report.observed().ready)
    }

    /// The pods of the slice that must run the update revision now (0 without a slice).
    fn slice_target(&self, id: &SliceId) -> i32 {
        self.slices.get(id).map_or(0, |s| s.target)
    }

    /// What the release needs to know of each unit.
    fn progress(&self, key: &DeploymentKey, plan: &Plan) -> Vec<UnitProgress> {
        let group = self
            .deployments
            .get(key)
            .and_then(|r| plan.batches.get(r.release.batch()));
        plan.units
            .iter()
            .map(|unit| {
                let id = SliceId::new(key, &unit.unit);
                let observed = self.fresh_report(&id).map(Observation::observed);
                UnitProgress {
                    unit: unit.unit.clone(),
                    evacuated: unit.evacuated,
                    replicas: unit.replicas,
                    target: self.slice_target(&id),
                    changed: group.is_some_and(|g| g.changes(&unit.unit)),
                    observed,
                    blue_green: self.slices.get(&id).and_then(|s| s.blue_green),
                }
            })
            .collect()
    }

    /// Makes `next` the deployment's release; a group it starts starts its wait clock.
    pub(super) fn set_release(&mut self, key: &DeploymentKey, next: ReleaseState) {
        let now = self.now_ms;
        let Some(record) = self.record_mut(key) else {
            return;
        };
        let started = record.release.group_started(&next);
        let notices = super::notify::release_notices(
            key,
            &record.release,
            &next,
            &super::clock::rfc3339(now),
        );
        // A rollback that starts (an operator's, an analysis', or to another revision) writes its
        // target back into the spec with a new generation, so that spec and running revision agree.
        let newly = !matches!(record.release.stage(), Stage::RollingBack { .. })
            || record.release.update_revision != next.update_revision;
        let restore = next
            .rollback_target()
            .filter(|t| {
                newly && revision_name(t) != revision_name(&record.deployment.spec.template)
            })
            .cloned();
        Core::note_release_conditions(&mut record.condition_times, &next, now);
        record.release = next;
        if let Some(template) = restore {
            let deployment = Arc::make_mut(&mut record.deployment);
            deployment.spec.template = template;
            deployment.metadata.generation = Some(deployment.metadata.generation.unwrap_or(1) + 1);
        }
        if started {
            self.release_clocks
                .insert(key.clone(), WaitClock::started(now));
        }
        self.notices.extend(notices);
    }

    /// Moves the deployment's release forward from reports and time, and notes whether it is
    /// available.
    pub fn evaluate(&mut self, key: &DeploymentKey) -> Result<Effects, HubError> {
        let Some(Ok(plan)) = self.plan(key) else {
            return Ok(Effects::default());
        };
        let availability_changed = self.note_availability(key, &plan);
        let mut effects = self.evaluate_release(key, plan)?;
        if availability_changed {
            self.write_record(key, &mut effects)?;
        }
        Ok(effects)
    }

    fn evaluate_release(&mut self, key: &DeploymentKey, plan: Plan) -> Result<Effects, HubError> {
        let progress = self.progress(key, &plan);
        let Some(record) = self.deployments.get(key) else {
            return Ok(Effects::default());
        };
        let clock = self.release_clocks.get(key).copied().unwrap_or_default();
        let open = self.open_groups(key, &plan);
        let (advance, clock) = record.release.advance(
            clock,
            &record.deployment.spec.strategy,
            (plan.batches.len(), open),
            &progress,
            self.now_ms,
        );
        let moving = record.rebalancing_since_ms.is_some();
        let before = (record.release.phase(), record.release.batch());
        self.release_clocks.insert(key.clone(), clock);
        let next = match advance {
            Advance::Unchanged => None,
            Advance::Noted(next) => {
                self.set_release(key, next);
                None
            }
            Advance::Moved(next) => Some(next),
        };
        let Some(next) = next else {
            // The plan is still the deployment's: only its release changed.
            return if moving {
                self.sync_planned(key, Some(Ok(plan)))
            } else {
                Ok(Effects::default())
            };
        };
        tracing::info!(
            deployment = %key,
            from = %before.0,
            to = %next.phase(),
            batch = next.batch(),
            reason = %next.reason(),
            "release transition"
        );
        let Some(record) = self.deployments.get(key) else {
            return Ok(Effects::default());
        };
        let ended = analysis_ended(&record.release, &next);
        self.set_release(key, next);
        let mut effects = self.sync_planned(key, Some(Ok(plan)))?;
        self.write_record(key, &mut effects)?;
        if let Some((group, outcome)) = ended {
            tracing::info!(deployment = %key, group, result = outcome.result.reason(), message = %outcome.message, "analysis ended");
            self.audit(
                &mut effects,
                "hub",
                &format!("analysis {key} group {group}"),
                &format!("{}: {}", outcome.result.reason(), outcome.message),
            )?;
        }
        Ok(effects)
    }

    /// Adds measurements to the deployment's current analysis run and moves the release on them.
    /// Measurements of a run that is not current any more (the group moved on, another hub began
    /// a new run) are dropped.
    pub(super) fn measured(&mut self, taken: Measured) -> Result<Effects, HubError> {
        let Measured {
            key,
            revision,
            group,
            started_ms,
            measurements,
        } = taken;
        let mut effects = Effects::default();
        let Some(record) = self.deployments.get(&key) else {
            return Ok(effects);
        };
        let results: Vec<MeasurementResult> = measurements.iter().map(|m| m.result).collect();
        let Some(next) =
            record
                .release
                .with_measurements(&revision, group, started_ms, measurements)
        else {
            tracing::debug!(deployment = %key, group, "measurements of an analysis run that is over dropped");
            return Ok(effects);
        };
        self.set_release(&key, next);
        effects.measurements = results;
        effects.merge(self.evaluate(&key)?);
        // The measurements are durable whether or not they moved the release (a transition has
        // written the record already).
        let record_key = key.to_string();
        let written = effects
            .writes
            .iter()
            .any(|w| w.table == Table::Deployments && w.key == record_key);
        if !written {
            self.write_record(&key, &mut effects)?;
        }
        Ok(effects)
    }

    /// Deployments whose release may move with time alone now: a healthy group waiting out
    /// minReadySeconds or autoPauseSeconds, or a group whose progress deadline may have passed.
    /// Everything else moves on reports.
    pub fn due(&self, now_ms: i64) -> Vec<DeploymentKey> {
        self.deployments
            .iter()
            .filter(|(key, r)| {
                r.release.due(
                    self.release_clocks.get(*key),
                    &r.deployment.spec.strategy,
                    now_ms,
                )
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// The release status of a deployment (DESIGN section 5).
    pub fn status(&self, key: &DeploymentKey, now_ms: i64) -> Option<DeploymentStatusView> {
        let record = self.deployments.get(key)?;
        let plan = self.plan(key).and_then(Result::ok);
        let release: &ReleaseState = &record.release;
        let units = plan
            .as_ref()
            .map(|plan| {
                plan.units
                    .iter()
                    .map(|unit| {
                        let id = SliceId::new(key, &unit.unit);
                        let live = self.clusters.get(&unit.cluster);
                        let connected = live.is_some_and(|l| l.connected(now_ms));
                        let observation = live.and_then(|l| l.reports.get(&id));
                        let report = observation.map(Observation::observed).unwrap_or_default();
                        let blue_green = self
                            .slices
                            .get(&id)
                            .and_then(|s| s.blue_green)
                            .map(|part| blue_green_view(part, unit.replicas, observation));
                        UnitStatusView {
                            unit: unit.unit.to_string(),
                            cluster: unit.cluster.to_string(),
                            connected,
                            replicas: unit.replicas,
                            ready: report.ready,
                            updated: report.updated,
                            updated_ready: report.updated_ready,
                            target: self.slice_target(&id),
                            evacuated: unit.evacuated,
                            problems: report.problems,
                            blue_green,
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let batches = plan.as_ref().map_or(0, |p| p.batches.len());
        Some(DeploymentStatusView {
            name: key.name.to_string(),
            namespace: key.namespace.to_string(),
            phase: release.phase().to_string(),
            reason: release.reason().to_string(),
            batch: i32::try_from(release.batch()).unwrap_or(i32::MAX),
            batches: i32::try_from(batches).unwrap_or(i32::MAX),
            current_revision: release.current_revision.clone(),
            update_revision: release.update_revision.clone(),
            message: release.message().to_owned(),
            units,
            analysis: release
                .analysis()
                .map(|run| AnalysisStatusView::of(run, super::clock::rfc3339)),
        })
    }

    /// Deployments that use `unit` (by name in their topology, or by selector).
    pub fn deployments_using(&self, unit: &UnitName) -> Vec<DeploymentKey> {
        self.deployments
            .iter()
            .filter(|(key, record)| {
                self.deployment_slices
                    .get(*key)
                    .is_some_and(|units| units.contains(unit))
                    || record.deployment.spec.topology.units.contains(unit)
                    || record
                        .deployment
                        .spec
                        .topology
                        .unit_selector
                        .as_ref()
                        .is_some_and(|s| self.units.get(unit).is_some_and(|u| s.matches(u)))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }
}
