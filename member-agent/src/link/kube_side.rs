//! The kube cluster side of the link: slices become InPlaceSets (server-side apply under one field
//! manager, with `force`), their status becomes slice status, and removed slices are scaled to zero
//! (drained by the controller) before the InPlaceSet is deleted.

use super::{ClusterSide, LinkError, StatusBoard};
use crate::crd::{
    BlueGreenPolicy, InPlaceSet, InPlaceSetSpec, LabelSelector, TrafficPolicy, UpgradeStrategy,
};
use cafe_proto::v1 as pb;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource as _, ResourceExt};
use std::collections::BTreeMap;

/// InPlaceSet annotation: the slice it was written for.
pub const SLICE_ID_ANNOTATION: &str = "cafe.io/slice-id";
/// InPlaceSet annotation: the slice generation it was written for.
pub const SLICE_GENERATION_ANNOTATION: &str = "cafe.io/slice-generation";
/// InPlaceSet annotation: the slice was removed; the set is deleted once its pods are drained.
pub const SLICE_REMOVED_ANNOTATION: &str = "cafe.io/slice-removed";
/// InPlaceSet annotation holding the last analysis outcome the hub sent (`REASON: message`): the
/// agent records each new one as a Kubernetes Event once, across its own restarts.
pub const ANALYSIS_ANNOTATION: &str = "cafe.io/analysis";
/// Label on everything the link writes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "cafe-agent";
/// Labels naming the deployment and unit of a hub-written InPlaceSet.
pub const DEPLOYMENT_LABEL: &str = "cafe.io/deployment";
/// See [`DEPLOYMENT_LABEL`].
pub const UNIT_LABEL: &str = "cafe.io/unit";
/// The field manager of every InPlaceSet the link applies. One manager owns the whole spec, so a
/// field an earlier slice had and the current one omits is removed by the apply itself.
pub const LINK_FIELD_MANAGER: &str = "cafe-agent-link";
/// How often the deletion of a drained InPlaceSet the API server refused is tried again.
const DELETE_RETRY: std::time::Duration = std::time::Duration::from_secs(2);
pub use cafe_proto::protocol::inplaceset_name;

/// The reporting controller of the link's Events.
pub const LINK_EVENT_REPORTER: &str = "cafe.io/agent-link";

/// Writes slices as InPlaceSets in one cluster.
#[derive(Clone)]
pub struct KubeClusterSide {
    client: Client,
    board: StatusBoard,
    recorder: Recorder,
}

impl std::fmt::Debug for KubeClusterSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeClusterSide").finish_non_exhaustive()
    }
}

fn kube_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> LinkError {
    let what = what.into();
    move |source| LinkError::Kube { what, source }
}

fn managed_selector() -> ListParams {
    ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"))
}

impl KubeClusterSide {
    /// A cluster side over `client`, posting statuses to `board`.
    pub fn new(client: Client, board: StatusBoard) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: LINK_EVENT_REPORTER.into(),
                instance: std::env::var("HOSTNAME").ok(),
            },
        );
        Self {
            client,
            board,
            recorder,
        }
    }

    /// Records a failover move of the set's replicas as a Kubernetes Event (best effort).
    async fn announce_move(&self, set: &InPlaceSet, from: i32, to: i32, reason: &str) {
        let event = Event {
            type_: EventType::Normal,
            reason: "Failover".into(),
            note: Some(format!("replicas {from} -> {to}: {reason}")),
            action: "Scale".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &set.object_ref(&())).await {
            tracing::warn!(%error, set = %set.name_any(), "cannot record a failover Event");
        }
    }

    /// Records how a release analysis ended as a Kubernetes Event on the set (best effort).
    async fn announce_analysis(&self, set: &InPlaceSet, notice: &pb::AnalysisNotice) {
        let event = Event {
            type_: if notice.reason == "AnalysisPassed" {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: notice.reason.clone(),
            note: Some(notice.message.clone()),
            action: "Analyze".into(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &set.object_ref(&())).await {
            tracing::warn!(%error, set = %set.name_any(), "cannot record an analysis Event");
        }
    }

    fn sets(&self, namespace: &str) -> Api<InPlaceSet> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// Creates the namespace when it is missing (labelled as the agent's); never deletes one.
    async fn ensure_namespace(&self, namespace: &str) -> Result<(), LinkError> {
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        if namespaces
            .get_opt(namespace)
            .await
            .map_err(kube_error("read namespace"))?
            .is_some()
        {
            return Ok(());
        }
        let object: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": namespace, "labels": {MANAGED_BY_LABEL: MANAGED_BY}},
        }))
        .map_err(|e| LinkError::BadSlice {
            id: namespace.to_owned(),
            reason: e.to_string(),
        })?;
        match namespaces.create(&PostParams::default(), &object).await {
            Ok(_) => Ok(()),
            // Created meanwhile by someone else: fine.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(error) => Err(kube_error(format!("create namespace {namespace}"))(error)),
        }
    }

    /// Watches the link's InPlaceSets until `shutdown`: posts their status and deletes removed ones
    /// once drained. A deletion the API server refuses is retried every [`DELETE_RETRY`].
    pub async fn run_status_watch(&self, shutdown: impl std::future::Future<Output = ()> + Send) {
        let api: Api<InPlaceSet> = Api::all(self.client.clone());
        let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let stream = watcher::watcher(api, config);
        let stream = kube::runtime::WatchStreamExt::default_backoff(stream);
        let stream = kube::runtime::WatchStreamExt::applied_objects(stream);
        tokio::pin!(stream);
        tokio::pin!(shutdown);
        let mut undeleted: BTreeMap<(String, String), InPlaceSet> = BTreeMap::new();
        let mut retry =
            tokio::time::interval_at(tokio::time::Instant::now() + DELETE_RETRY, DELETE_RETRY);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let next = tokio::select! {
                () = &mut shutdown => return,
                next = stream.next() => next,
                _ = retry.tick(), if !undeleted.is_empty() => {
                    for (key, set) in std::mem::take(&mut undeleted) {
                        if !self.delete_drained(&set).await {
                            undeleted.insert(key, set);
                        }
                    }
                    continue;
                }
            };
            match next {
                Some(Ok(set)) => {
                    let key = (set.namespace().unwrap_or_default(), set.name_any());
                    undeleted.remove(&key);
                    if !self.observe(&set).await {
                        undeleted.insert(key, set);
                    }
                }
                Some(Err(error)) => tracing::warn!(%error, "InPlaceSet watch error; retrying"),
                None => return,
            }
        }
    }

    /// Posts a set's status, or deletes it when it was removed and is drained. False when a deletion
    /// failed and is to be tried again.
    async fn observe(&self, set: &InPlaceSet) -> bool {
        let annotations = set.annotations();
        let Some(id) = annotations.get(SLICE_ID_ANNOTATION) else {
            return true;
        };
        if annotations.contains_key(SLICE_REMOVED_ANNOTATION) {
            let drained = set.status.as_ref().is_some_and(|s| s.replicas == 0)
                && set.status.as_ref().map(|s| s.observed_generation) == set.metadata.generation;
            return !drained || self.delete_drained(set).await;
        }
        let generation = annotations
            .get(SLICE_GENERATION_ANNOTATION)
            .and_then(|g| g.parse::<u64>().ok())
            .unwrap_or(0);
        let status = set.status.clone().unwrap_or_default();
        // The counts describe this slice generation only once the controller saw the set's spec.
        let reconciled = set.metadata.generation == Some(status.observed_generation);
        self.board.post(pb::SliceStatus {
            id: id.clone(),
            observed_generation: if reconciled { generation } else { 0 },
            current_revision: status.current_revision.unwrap_or_default(),
            update_revision: status.update_revision.unwrap_or_default(),
            replicas: status.replicas,
            ready_replicas: status.ready_replicas,
            available_replicas: status.available_replicas,
            updated_replicas: status.updated_replicas,
            updated_ready_replicas: status.updated_ready_replicas,
            serving_replicas: status.serving_replicas,
            updated_serving_replicas: status.updated_serving_replicas,
            preview_ready_replicas: status.preview_ready_replicas,
            standby_replicas: status.standby_replicas,
            standby_until: status.standby_until.unwrap_or_default(),
            problems: status
                .problems
                .into_iter()
                .map(|p| pb::PodProblem {
                    pod: p.pod,
                    reason: p.reason,
                    message: p.message,
                })
                .collect(),
        });
        true
    }

    /// Deletes a drained, removed set. Only 404 means done: any other refusal (a 403 from RBAC, a
    /// 500) is logged and recorded as a Warning Event on the set, and the caller tries again.
    async fn delete_drained(&self, set: &InPlaceSet) -> bool {
        let namespace = set.namespace().unwrap_or_default();
        let slice = set
            .annotations()
            .get(SLICE_ID_ANNOTATION)
            .cloned()
            .unwrap_or_default();
        // Only the copy that was seen drained may go: if the slice came back meanwhile (the link
        // applied it again), the resourceVersion differs, the API server answers 409, and the watch
        // brings the new copy to decide on.
        let params = DeleteParams {
            preconditions: Some(kube::api::Preconditions {
                resource_version: set.metadata.resource_version.clone(),
                uid: set.metadata.uid.clone(),
            }),
            ..DeleteParams::default()
        };
        match self.sets(&namespace).delete(&set.name_any(), &params).await {
            Ok(_) => true,
            Err(kube::Error::Api(status)) if matches!(status.code, 404 | 409) => true,
            Err(error) => {
                tracing::warn!(%error, %slice, retry_in = ?DELETE_RETRY, "cannot delete a drained InPlaceSet");
                let event = Event {
                    type_: EventType::Warning,
                    reason: "DeleteFailed".into(),
                    note: Some(format!(
                        "cannot delete the drained InPlaceSet of removed slice {slice}: {error}"
                    )),
                    action: "Delete".into(),
                    secondary: None,
                };
                if let Err(error) = self.recorder.publish(&event, &set.object_ref(&())).await {
                    tracing::warn!(%error, %slice, "cannot record a DeleteFailed Event");
                }
                false
            }
        }
    }
}

fn parse_template(id: &str, field: &str, json: &str) -> Result<serde_json::Value, LinkError> {
    serde_json::from_str(json).map_err(|e| LinkError::BadSlice {
        id: id.to_owned(),
        reason: format!("{field}: {e}"),
    })
}

/// The InPlaceSet a slice becomes.
pub fn slice_to_inplaceset(slice: &pb::Slice) -> Result<InPlaceSet, LinkError> {
    let template = parse_template(&slice.id, "template_json", &slice.template_json)?;
    let stable_template = if slice.stable_template_json.is_empty() {
        None
    } else {
        Some(parse_template(
            &slice.id,
            "stable_template_json",
            &slice.stable_template_json,
        )?)
    };
    let traffic = slice.traffic.clone().unwrap_or_default();
    let spec = InPlaceSetSpec {
        replicas: slice.replicas,
        selector: LabelSelector {
            match_labels: slice.selector.clone(),
        },
        template,
        stable_template,
        partition: slice.partition,
        max_unavailable: slice.max_unavailable.max(1),
        min_ready_seconds: slice.min_ready_seconds,
        upgrade: match pb::UpgradeStrategy::try_from(slice.upgrade)
            .unwrap_or(pb::UpgradeStrategy::InPlace)
        {
            pb::UpgradeStrategy::Recreate => UpgradeStrategy::Recreate,
            pb::UpgradeStrategy::InPlace | pb::UpgradeStrategy::Unspecified => {
                UpgradeStrategy::InPlace
            }
        },
        paused: slice.paused,
        traffic: Some(TrafficPolicy {
            readiness_gate: (!traffic.readiness_gate.is_empty()).then_some(traffic.readiness_gate),
            finalizers: traffic.finalizers,
            drain_seconds: traffic.drain_seconds,
        }),
        node_selector: slice.node_selector.clone(),
        update_revision: Some(slice.update_revision.clone()),
        stable_revision: (!slice.stable_revision.is_empty()).then(|| slice.stable_revision.clone()),
        blue_green: slice.blue_green.as_ref().map(|bg| BlueGreenPolicy {
            switched: bg.switched,
            preview: bg.preview,
            scale_down_delay_seconds: bg.scale_down_delay_seconds.max(0),
        }),
    };
    let mut set = InPlaceSet::new(&inplaceset_name(&slice.deployment, &slice.unit), spec);
    set.metadata.namespace = Some(slice.namespace.clone());
    set.metadata.labels = Some(BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (DEPLOYMENT_LABEL.to_owned(), slice.deployment.clone()),
        (UNIT_LABEL.to_owned(), slice.unit.clone()),
    ]));
    let mut annotations = BTreeMap::from([
        (SLICE_ID_ANNOTATION.to_owned(), slice.id.clone()),
        (
            SLICE_GENERATION_ANNOTATION.to_owned(),
            slice.generation.to_string(),
        ),
    ]);
    if let Some(notice) = &slice.analysis {
        annotations.insert(
            ANALYSIS_ANNOTATION.to_owned(),
            format!("{}: {}", notice.reason, notice.message),
        );
    }
    set.metadata.annotations = Some(annotations);
    Ok(set)
}

use cafe_proto::protocol::split_slice_id as split_id;

impl ClusterSide for KubeClusterSide {
    async fn inventory(&self) -> Result<Vec<(String, u64)>, LinkError> {
        let api: Api<InPlaceSet> = Api::all(self.client.clone());
        let sets = api
            .list(&managed_selector())
            .await
            .map_err(kube_error("list InPlaceSets"))?;
        Ok(sets
            .items
            .iter()
            .filter(|s| !s.annotations().contains_key(SLICE_REMOVED_ANNOTATION))
            .filter_map(|s| {
                let id = s.annotations().get(SLICE_ID_ANNOTATION)?.clone();
                let generation = s
                    .annotations()
                    .get(SLICE_GENERATION_ANNOTATION)?
                    .parse()
                    .ok()?;
                Some((id, generation))
            })
            .collect())
    }

    async fn apply(&self, slice: &pb::Slice) -> Result<(), LinkError> {
        let desired = slice_to_inplaceset(slice)?;
        self.ensure_namespace(&slice.namespace).await?;
        let api = self.sets(&slice.namespace);
        let name = desired.name_any();
        let existing = api
            .get_opt(&name)
            .await
            .map_err(kube_error(format!("read InPlaceSet for {}", slice.id)))?;
        if let Some(owner) = existing
            .as_ref()
            .and_then(|set| set.annotations().get(SLICE_ID_ANNOTATION))
            && owner != &slice.id
        {
            // Two slices whose names meet (deployment "a-b" in unit "c", deployment "a" in unit
            // "b-c"): never take over another slice's set.
            return Err(LinkError::BadSlice {
                id: slice.id.clone(),
                reason: format!("InPlaceSet {name} already belongs to slice {owner}"),
            });
        }
        if existing
            .as_ref()
            .is_some_and(|set| set.annotations().contains_key(SLICE_REMOVED_ANNOTATION))
        {
            // The removal mark was written by a merge patch, so the apply below would not take it
            // away: a slice that comes back clears it first.
            let unmark =
                serde_json::json!({"metadata": {"annotations": {SLICE_REMOVED_ANNOTATION: null}}});
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&unmark))
                .await
                .map_err(kube_error(format!(
                    "clear the removal mark of {}",
                    slice.id
                )))?;
        }
        let before = existing.as_ref().map_or(0, |set| set.spec.replicas);
        // Server-side apply, forced: the link is the only writer of the spec, so it takes every field
        // back from whoever changed it by hand, and the fields it no longer applies are removed.
        let params = PatchParams::apply(LINK_FIELD_MANAGER).force();
        api.patch(&name, &params, &Patch::Apply(&desired))
            .await
            .map_err(kube_error(format!("write InPlaceSet for {}", slice.id)))?;
        tracing::debug!(slice = %slice.id, generation = slice.generation, "slice applied");
        if before != slice.replicas && !slice.reason.is_empty() {
            self.announce_move(&desired, before, slice.replicas, &slice.reason)
                .await;
        }
        let announced = existing
            .as_ref()
            .and_then(|set| set.annotations().get(ANALYSIS_ANNOTATION));
        if let Some(notice) = &slice.analysis
            && announced != desired.annotations().get(ANALYSIS_ANNOTATION)
        {
            self.announce_analysis(&desired, notice).await;
        }
        Ok(())
    }

    async fn remove(&self, id: &str, generation: u64) -> Result<(), LinkError> {
        let Some((namespace, deployment, unit)) = split_id(id) else {
            return Err(LinkError::BadSlice {
                id: id.to_owned(),
                reason: "not namespace/name@unit".to_owned(),
            });
        };
        let name = inplaceset_name(deployment, unit);
        // Scale to zero first: the controller drains every pod through the traffic protocol, then
        // the status watch deletes the set.
        let patch = serde_json::json!({
            "metadata": {"annotations": {
                SLICE_REMOVED_ANNOTATION: generation.to_string(),
                SLICE_GENERATION_ANNOTATION: generation.to_string(),
            }},
            "spec": {"replicas": 0},
        });
        match self
            .sets(namespace)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => Err(kube_error(format!("scale down InPlaceSet for {id}"))(error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_names_are_shortened_to_a_label_value() {
        assert_eq!(inplaceset_name("payments", "sh-az1"), "payments-sh-az1");
        let long = inplaceset_name(&"d".repeat(63), &"u".repeat(63));
        assert!(long.len() <= 63, "{long}");
        assert_ne!(long, inplaceset_name(&"d".repeat(63), &"v".repeat(63)));
    }
}
