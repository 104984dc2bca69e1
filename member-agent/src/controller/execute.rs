//! The executor: applies a plan's actions with kube-rs, records expectations, metrics and Events.
//! It decides nothing: every choice was made by [`crate::plan`].

use super::Context;
use crate::desired::{Desired, RevisionKind};
use crate::error::Error;
use crate::metrics::{ActionKind, UpdateMode};
use crate::names::{DRAIN_STARTED_ANNOTATION, FIELD_MANAGER, RETIRED_ANNOTATION, REVISION_LABEL};
use crate::plan::{Action, DrainPurpose, PodRef};
use crate::podspec::{Owner, build_pod};
use crate::status::rfc3339_seconds;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::api::{DeleteParams, Patch, PostParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;

/// Pods written at the same time within one reconcile: enough for a wide maxUnavailable, few enough
/// not to flood the API server.
const MAX_PARALLEL_POD_WRITES: usize = 16;

/// Applies actions for one set.
pub(super) struct Executor<'a> {
    pub(super) ctx: &'a Context,
    pub(super) pods: Api<Pod>,
    pub(super) owner: &'a Owner,
    pub(super) desired: &'a Desired,
    pub(super) set_ref: &'a ObjectReference,
}

/// What applying a plan came to.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Writes refused because the view was stale (409/404): look again soon.
    pub(super) stale: usize,
    /// Other failures.
    pub(super) errors: Vec<Error>,
    /// Writes that succeeded.
    pub(super) applied: usize,
}

impl Executor<'_> {
    /// Applies the actions: the steps of one pod in order, different pods concurrently. A pod's
    /// remaining steps are skipped after one fails.
    pub(super) async fn apply(&self, actions: Vec<Action>) -> Outcome {
        let mut by_pod: BTreeMap<String, Vec<Action>> = BTreeMap::new();
        let mut units: Vec<Vec<Action>> = Vec::new();
        for action in actions {
            match action.pod() {
                Some(pod) => by_pod.entry(pod.name.clone()).or_default().push(action),
                None => units.push(vec![action]),
            }
        }
        units.extend(by_pod.into_values());
        let results: Vec<(usize, Result<(), Error>)> = futures::stream::iter(units)
            .map(|steps| async move {
                let mut applied = 0;
                for step in steps {
                    if let Err(e) = self.apply_one(step).await {
                        return (applied, Err(e));
                    }
                    applied += 1;
                }
                (applied, Ok(()))
            })
            .buffer_unordered(MAX_PARALLEL_POD_WRITES)
            .collect()
            .await;
        let mut outcome = Outcome::default();
        for (applied, result) in results {
            outcome.applied += applied;
            match result {
                Ok(()) => {}
                Err(e) if e.is_stale_view() => {
                    tracing::debug!(error = %e, "stale view; will look again");
                    outcome.stale += 1;
                }
                Err(e) => outcome.errors.push(e),
            }
        }
        outcome
    }

    async fn apply_one(&self, action: Action) -> Result<(), Error> {
        match action {
            Action::Create { kind } => self.create(kind).await,
            Action::CloseGate { pod } => {
                self.set_gate(&pod, false).await?;
                self.ctx.metrics.action(ActionKind::CloseGate);
                Ok(())
            }
            Action::MarkDrainStarted { pod, purpose } => {
                // Stamped now, after the gate closed: the mark is never older than the drain.
                let now = self.ctx.clock.now();
                let retired = (purpose == DrainPurpose::Retire).then_some("true");
                let patch = json!({"metadata": {"annotations": {
                    DRAIN_STARTED_ANNOTATION: now.to_string(),
                    RETIRED_ANNOTATION: retired,
                }}});
                self.patch(&pod, "mark drain start", Patch::Merge(&patch))
                    .await?;
                self.ctx.metrics.action(ActionKind::MarkDrain);
                let why = match purpose {
                    DrainPurpose::Update => "to update it",
                    DrainPurpose::ScaleIn => "to remove it (scale-in)",
                    DrainPurpose::Retire => "and keeps it as the way back (blue-green switch)",
                };
                tracing::info!(pod = %pod.name, ?purpose, "drain started");
                self.event(
                    &pod,
                    "Draining",
                    format!("took pod {} out of traffic {why}", pod.name),
                )
                .await;
                Ok(())
            }
            Action::UpdateInPlace {
                pod,
                revision,
                images,
            } => {
                let containers: Vec<_> = images
                    .iter()
                    .map(|(name, image)| json!({"name": name, "image": image}))
                    .collect();
                let patch = json!({
                    "metadata": {"resourceVersion": pod.resource_version, "labels": {REVISION_LABEL: revision}},
                    "spec": {"containers": containers},
                });
                self.patch(&pod, "update images in place", Patch::Strategic(&patch))
                    .await?;
                self.ctx.metrics.action(ActionKind::UpdateInPlace);
                self.ctx.metrics.updated(UpdateMode::InPlace);
                tracing::info!(pod = %pod.name, %revision, "updated in place");
                self.event(
                    &pod,
                    "UpdatedInPlace",
                    format!("pod {} moves to revision {revision} in place", pod.name),
                )
                .await;
                Ok(())
            }
            Action::Delete { pod, purpose } => {
                self.delete(&pod).await?;
                self.ctx.metrics.action(ActionKind::Delete);
                let (reason, note) = match purpose {
                    DrainPurpose::Update => {
                        self.ctx.metrics.updated(UpdateMode::Recreate);
                        (
                            "Recreating",
                            format!(
                                "deleted drained pod {} to recreate it from the new template",
                                pod.name
                            ),
                        )
                    }
                    DrainPurpose::ScaleIn | DrainPurpose::Retire => {
                        ("ScaledIn", format!("deleted drained pod {}", pod.name))
                    }
                };
                tracing::info!(pod = %pod.name, ?purpose, "deleted");
                self.event(&pod, reason, note).await;
                Ok(())
            }
            Action::OpenGate { pod } => {
                self.set_gate(&pod, true).await?;
                self.ctx.metrics.action(ActionKind::OpenGate);
                tracing::info!(pod = %pod.name, "gate opened");
                Ok(())
            }
            Action::ClearDrainMark { pod } => {
                let patch = json!({"metadata": {"annotations": {
                    DRAIN_STARTED_ANNOTATION: null,
                    RETIRED_ANNOTATION: null,
                }}});
                self.patch(&pod, "clear drain mark", Patch::Merge(&patch))
                    .await?;
                self.ctx.metrics.action(ActionKind::ClearDrainMark);
                Ok(())
            }
        }
    }

    async fn create(&self, kind: RevisionKind) -> Result<(), Error> {
        let pod = build_pod(self.owner, self.desired, kind)?;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_string()),
            ..PostParams::default()
        };
        let created = self
            .pods
            .create(&params, &pod)
            .await
            .map_err(|e| Error::kube("create pod", e))?;
        let name = created.name_any();
        let uid = created.uid().unwrap_or_default();
        let key = ObjectRef::<Pod>::new(&name).within(&self.owner.namespace);
        self.ctx
            .expectations
            .created(&self.owner.uid, &uid, || self.ctx.pods.get(&key).is_some());
        self.ctx.metrics.action(ActionKind::Create);
        let revision = &self.desired.template(kind).revision;
        tracing::info!(pod = %name, %revision, "created");
        let pod_ref = PodRef {
            name: name.clone(),
            uid,
            resource_version: String::new(),
        };
        self.event(
            &pod_ref,
            "Created",
            format!("created pod {name} of revision {revision}"),
        )
        .await;
        Ok(())
    }

    async fn set_gate(&self, pod: &PodRef, open: bool) -> Result<(), Error> {
        let (status, reason, message) = if open {
            ("True", "ContainersReady", "the pod serves traffic")
        } else {
            (
                "False",
                "Draining",
                "the agent takes the pod out of traffic",
            )
        };
        let patch = json!({"status": {"conditions": [{
            "type": self.desired.traffic.gate,
            "status": status,
            "reason": reason,
            "message": message,
            "lastTransitionTime": rfc3339_seconds(self.ctx.clock.now()),
        }]}});
        let ticket = self.ctx.expectations.begin(&self.owner.uid, &pod.uid);
        let result = self
            .pods
            .patch_status(
                &pod.name,
                &super::field_manager(),
                &Patch::Strategic(&patch),
            )
            .await;
        self.settle(
            ticket,
            if open { "open gate" } else { "close gate" },
            result,
        )
    }

    async fn patch(
        &self,
        pod: &PodRef,
        what: &str,
        patch: Patch<&serde_json::Value>,
    ) -> Result<(), Error> {
        let ticket = self.ctx.expectations.begin(&self.owner.uid, &pod.uid);
        let result = self
            .pods
            .patch(&pod.name, &super::field_manager(), &patch)
            .await;
        self.settle(ticket, what, result)
    }

    async fn delete(&self, pod: &PodRef) -> Result<(), Error> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(pod.uid.clone()),
                resource_version: Some(pod.resource_version.clone()),
            }),
            ..DeleteParams::default()
        };
        let ticket = self.ctx.expectations.begin(&self.owner.uid, &pod.uid);
        match self.pods.delete(&pod.name, &params).await {
            Ok(either) => {
                let rv = either.left().and_then(|p| p.resource_version());
                self.ctx.expectations.finish(ticket, rv.as_deref());
                Ok(())
            }
            Err(e) => {
                self.ctx.expectations.cancel(ticket);
                Err(Error::kube("delete pod", e))
            }
        }
    }

    fn settle(
        &self,
        ticket: super::expectations::Ticket,
        what: &str,
        result: Result<Pod, kube::Error>,
    ) -> Result<(), Error> {
        match result {
            Ok(pod) => {
                self.ctx
                    .expectations
                    .finish(ticket, pod.resource_version().as_deref());
                Ok(())
            }
            Err(e) => {
                self.ctx.expectations.cancel(ticket);
                Err(Error::kube(what, e))
            }
        }
    }

    /// Publishes a Normal Event on the set about a pod; Events are best effort.
    async fn event(&self, pod: &PodRef, reason: &str, note: String) {
        let event = Event {
            type_: EventType::Normal,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name.clone()),
                namespace: Some(self.owner.namespace.clone()),
                uid: (!pod.uid.is_empty()).then(|| pod.uid.clone()),
                ..ObjectReference::default()
            }),
        };
        self.ctx.publish(&event, self.set_ref).await;
    }
}
