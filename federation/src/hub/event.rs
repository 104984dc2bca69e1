//! The hub's one entry point: an event (an apply, a command, a batch of reports, a tick, a stream
//! that opens or ends) becomes a decision on the model. [`Core::decide`] changes the model it is
//! given and returns the decision's effects as values: the store writes that make it durable, the
//! streams to wake, the metrics to note. It does no I/O, so it is tested without a store or a
//! network; the store's writer ([`super::writer`]) commits the writes and only then publishes the
//! changed model.

use super::core::{Core, Effects, Heard, Measured, Observation};
use super::failover::{EvacuationTarget, FailoverOutcome};
use super::{Applied, HubError};
use crate::names::{ClusterName, DeploymentKey, SliceId, UnitName};
use crate::release::{CommandOutcome, ReleaseCommand};
use crate::resources::Resource;
use std::collections::BTreeSet;
use std::sync::Arc;

/// One slice's observation on its way to the model, with the cluster and the stream (session) it
/// came on.
pub type PendingReport = (ClusterName, u64, SliceId, Observation);

/// Something that happened to the hub. (Clone: the writer keeps a copy of each event of a group, to
/// decide it again alone if the group's commit fails.)
#[derive(Debug, Clone)]
pub enum Event {
    /// Documents to validate and store, all or nothing.
    Apply {
        /// The documents.
        resources: Vec<Resource>,
        /// The caller.
        who: String,
        /// Validate only.
        dry_run: bool,
    },
    /// Remove a unit no deployment uses.
    DeleteUnit {
        /// The unit.
        name: UnitName,
        /// The caller.
        who: String,
    },
    /// Remove a pipeline that no longer drives its deployments.
    DeletePipeline {
        /// The pipeline.
        key: DeploymentKey,
        /// The caller.
        who: String,
    },
    /// An operator's pipeline command.
    PipelineCommand {
        /// The pipeline.
        key: DeploymentKey,
        /// The command.
        command: crate::pipeline::PipelineCommand,
        /// `--stage`: the stage the operator expects the pipeline at.
        expected_stage: Option<String>,
        /// Why, for the audit log.
        reason: String,
        /// The caller.
        who: String,
    },
    /// Remove a deployment; its slices are withdrawn.
    DeleteDeployment {
        /// The deployment.
        key: DeploymentKey,
        /// The caller.
        who: String,
    },
    /// A release command.
    Command {
        /// The deployment.
        key: DeploymentKey,
        /// The command.
        command: ReleaseCommand,
        /// Why, for the audit log.
        reason: String,
        /// When given, the group the release must be at.
        expected_batch: Option<usize>,
        /// The caller.
        who: String,
    },
    /// Evacuate a unit or a region.
    Evacuate {
        /// What.
        target: EvacuationTarget,
        /// Without waiting for the unit's cluster.
        force: bool,
        /// Why.
        reason: String,
        /// The caller.
        who: String,
    },
    /// Return a unit to service.
    Failback {
        /// The unit.
        unit: UnitName,
        /// Why.
        reason: String,
        /// The caller.
        who: String,
    },
    /// Slice statuses from the agents' streams.
    Reports(Vec<PendingReport>),
    /// Time passed: time-based transitions, restored capacity, automatic failover.
    Tick,
    /// An agent's stream opened; it supersedes the cluster's earlier one.
    Connected {
        /// The cluster.
        cluster: ClusterName,
        /// The stream's session number.
        session: u64,
        /// The agent's version.
        agent_version: String,
    },
    /// An agent's stream ended.
    Disconnected {
        /// The cluster.
        cluster: ClusterName,
        /// The stream's session number.
        session: u64,
    },
    /// The analysis runner took a round of measurements.
    Measured(Measured),
    /// An agent confirmed that it removed a slice.
    RemovalAcked {
        /// The cluster.
        cluster: ClusterName,
        /// The slice.
        id: SliceId,
        /// The generation of the removal it applied.
        generation: u64,
    },
}

/// What an event's caller gets back.
#[derive(Debug)]
pub enum Answer {
    /// What each applied document did.
    Applied(Vec<Applied>),
    /// Whether the deleted resource existed.
    Deleted(bool),
    /// What a release command did (boxed: it carries a release state).
    Command(Box<CommandOutcome>),
    /// What a pipeline command did.
    Pipeline(super::pipelines::PipelineOutcome),
    /// What a failover command did.
    Failover(FailoverOutcome),
    /// The stream's view of its cluster (see [`Heard`]).
    Connected(Arc<Heard>),
    /// Nothing to tell.
    Done,
}

/// A decision: the caller's answer and the effects to carry out. An answer can be an error whose
/// effects must still be committed (a refused command is audited).
#[derive(Debug)]
pub struct Decision {
    /// What the caller gets once the effects are committed.
    pub answer: Result<Answer, HubError>,
    /// Writes and wakeups.
    pub effects: Effects,
}

impl Decision {
    /// `answer`, with `effects`.
    pub fn new(answer: Answer, effects: Effects) -> Self {
        Self {
            answer: Ok(answer),
            effects,
        }
    }

    /// `answer`, with nothing to do.
    pub fn answer(answer: Answer) -> Self {
        Self::new(answer, Effects::default())
    }
}

impl Core {
    /// Decides `event` at `now_ms`, changing the model. An error means the event was refused: the
    /// caller (the writer) throws the changed model away.
    pub fn decide(&mut self, event: Event, now_ms: i64) -> Result<Decision, HubError> {
        self.now_ms = now_ms;
        let mut decision = self.decide_event(event)?;
        // Whatever the event changed, the pipelines look at their releases again: they are
        // level-triggered, so a restarted hub or a missed report changes nothing.
        if !self.pipelines.is_empty() {
            decision.effects.merge(self.drive_pipelines()?);
        }
        Ok(decision)
    }

    fn decide_event(&mut self, event: Event) -> Result<Decision, HubError> {
        match event {
            Event::Apply {
                resources,
                who,
                dry_run,
            } => self.apply(resources, &who, dry_run),
            Event::DeleteUnit { name, who } => self.delete_unit(&name, &who),
            Event::DeleteDeployment { key, who } => self.delete_deployment(&key, &who),
            Event::DeletePipeline { key, who } => self.delete_pipeline(&key, &who),
            Event::PipelineCommand {
                key,
                command,
                expected_stage,
                reason,
                who,
            } => self.pipeline_command(&key, command, expected_stage.as_deref(), &reason, &who),
            Event::Command {
                key,
                command,
                expected_batch,
                reason,
                who,
            } => self.command(&key, command, expected_batch, &reason, &who),
            Event::Evacuate {
                target,
                force,
                reason,
                who,
            } => self.evacuate(&target, force, &reason, &who),
            Event::Failback { unit, reason, who } => self.failback(&unit, &reason, &who),
            Event::Reports(reports) => self.reports(reports),
            Event::Tick => self.tick(),
            Event::Measured(taken) => Ok(Decision::new(Answer::Done, self.measured(taken)?)),
            Event::Connected {
                cluster,
                session,
                agent_version,
            } => Ok(self.connected(cluster, session, agent_version)),
            Event::Disconnected { cluster, session } => Ok(self.disconnected(&cluster, session)),
            Event::RemovalAcked {
                cluster,
                id,
                generation,
            } => {
                // A removal the agent confirmed needs no tombstone any more: a later stream's
                // snapshot marker lists the live slices, and the agent removes the rest itself.
                if let Some(tombs) = self.tombstones.get_mut(&cluster)
                    && tombs.get(&id).is_some_and(|g| *g <= generation)
                {
                    tombs.remove(&id);
                }
                Ok(Decision::answer(Answer::Done))
            }
        }
    }

    /// Records each status whose stream (session) is still its cluster's current one and whose
    /// slice is the cluster's (others are refused and logged), then moves every deployment they
    /// touch forward once.
    fn reports(&mut self, reports: Vec<PendingReport>) -> Result<Decision, HubError> {
        let mut touched: BTreeSet<DeploymentKey> = BTreeSet::new();
        for (cluster, session, id, observation) in reports {
            let current = self
                .clusters
                .get(&cluster)
                .is_some_and(|live| live.session() == Some(session));
            if !current {
                continue;
            }
            if self.slices.get(&id).is_none_or(|s| s.cluster != cluster) {
                tracing::warn!(%cluster, slice = %id, "refused a slice status: the slice is not the cluster's");
                continue;
            }
            if let Some(live) = self.clusters.get_mut(&cluster) {
                live.reports.insert(id.clone(), observation);
            }
            touched.insert(id.deployment);
        }
        let mut effects = Effects::default();
        for key in &touched {
            effects.merge(self.evaluate(key)?);
        }
        Ok(Decision::new(Answer::Done, effects))
    }

    /// The time-based transitions that are due (minReadySeconds, autoPauseSeconds, progress
    /// deadlines), restored failover capacity, and automatic failover.
    fn tick(&mut self) -> Result<Decision, HubError> {
        let mut effects = Effects::default();
        for key in &self.due(self.now_ms) {
            effects.merge(self.evaluate(key)?);
        }
        effects.restored = self.restored_units();
        effects.merge(self.auto_failover()?);
        Ok(Decision::new(Answer::Done, effects))
    }

    fn connected(&mut self, cluster: ClusterName, session: u64, agent_version: String) -> Decision {
        let live = self.clusters.entry(cluster.clone()).or_default();
        let superseded = live.set_session(Some(session)).is_some();
        live.heard.saw(self.now_ms);
        live.agent_version = agent_version;
        // Reports of an earlier stream may describe pods that have changed since: only what this
        // stream reports counts.
        live.reports.clear();
        let heard = Arc::clone(&live.heard);
        let mut effects = Effects::default();
        if !superseded {
            effects.connected_delta = 1;
        }
        // Wake a superseded stream so that it notices and ends.
        effects.clusters.insert(cluster);
        Decision::new(Answer::Connected(heard), effects)
    }

    fn disconnected(&mut self, cluster: &ClusterName, session: u64) -> Decision {
        let mut effects = Effects::default();
        if let Some(live) = self.clusters.get_mut(cluster)
            && live.session() == Some(session)
        {
            live.set_session(None);
            live.reports.clear();
            effects.connected_delta = -1;
        }
        Decision::new(Answer::Done, effects)
    }
}
