//! The kube cluster side of the link: slices become InPlaceSets (server-side apply), their status
//! becomes slice status, and removed slices are scaled to zero (drained by the controller) before
//! the InPlaceSet is deleted.

use super::{ClusterSide, LinkError, StatusBoard};
use crate::crd::{InPlaceSet, InPlaceSetSpec, LabelSelector, TrafficPolicy, UpgradeStrategy};
use cafe_proto::v1 as pb;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource as _, ResourceExt};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// InPlaceSet annotation: the slice it was written for.
pub const SLICE_ID_ANNOTATION: &str = "cafe.io/slice-id";
/// InPlaceSet annotation: the slice generation it was written for.
pub const SLICE_GENERATION_ANNOTATION: &str = "cafe.io/slice-generation";
/// InPlaceSet annotation: the slice was removed; the set is deleted once its pods are drained.
pub const SLICE_REMOVED_ANNOTATION: &str = "cafe.io/slice-removed";
/// Label on everything the link writes.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "cafe-agent";
/// Labels naming the deployment and unit of a hub-written InPlaceSet.
pub const DEPLOYMENT_LABEL: &str = "cafe.io/deployment";
/// See [`DEPLOYMENT_LABEL`].
pub const UNIT_LABEL: &str = "cafe.io/unit";
/// How often a conflicting write is read and tried again before the link gives up (and reconnects).
const WRITE_ATTEMPTS: usize = 10;
/// The longest label value, which the InPlaceSet name also becomes (on its pods).
const MAX_LABEL_VALUE: usize = 63;

/// The InPlaceSet name of a deployment's slice in a unit: `deployment-unit`, shortened with a hash
/// when longer than a label value may be.
pub fn inplaceset_name(deployment: &str, unit: &str) -> String {
    let name = format!("{deployment}-{unit}");
    if name.len() <= MAX_LABEL_VALUE {
        return name;
    }
    let digest = Sha256::digest(name.as_bytes());
    let hash: String = digest.iter().take(5).map(|b| format!("{b:02x}")).collect();
    let keep = MAX_LABEL_VALUE - hash.len() - 1;
    format!("{}-{hash}", name[..keep].trim_end_matches('-'))
}

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
    /// once drained.
    pub async fn run_status_watch(&self, shutdown: impl std::future::Future<Output = ()> + Send) {
        let api: Api<InPlaceSet> = Api::all(self.client.clone());
        let config = watcher::Config::default().labels(&format!("{MANAGED_BY_LABEL}={MANAGED_BY}"));
        let stream = watcher::watcher(api, config);
        let stream = kube::runtime::WatchStreamExt::default_backoff(stream);
        let stream = kube::runtime::WatchStreamExt::applied_objects(stream);
        tokio::pin!(stream);
        tokio::pin!(shutdown);
        loop {
            let next = tokio::select! {
                () = &mut shutdown => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(set)) => self.observe(&set).await,
                Some(Err(error)) => tracing::warn!(%error, "InPlaceSet watch error; retrying"),
                None => return,
            }
        }
    }

    async fn observe(&self, set: &InPlaceSet) {
        let annotations = set.annotations();
        let Some(id) = annotations.get(SLICE_ID_ANNOTATION) else {
            return;
        };
        if annotations.contains_key(SLICE_REMOVED_ANNOTATION) {
            let drained = set.status.as_ref().is_some_and(|s| s.replicas == 0)
                && set.status.as_ref().map(|s| s.observed_generation) == set.metadata.generation;
            if drained {
                let namespace = set.namespace().unwrap_or_default();
                match self
                    .sets(&namespace)
                    .delete(&set.name_any(), &DeleteParams::default())
                    .await
                {
                    Ok(_) | Err(kube::Error::Api(_)) => {}
                    Err(error) => {
                        tracing::warn!(%error, slice = %id, "cannot delete a drained InPlaceSet")
                    }
                }
            }
            return;
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
    };
    let mut set = InPlaceSet::new(&inplaceset_name(&slice.deployment, &slice.unit), spec);
    set.metadata.namespace = Some(slice.namespace.clone());
    set.metadata.labels = Some(BTreeMap::from([
        (MANAGED_BY_LABEL.to_owned(), MANAGED_BY.to_owned()),
        (DEPLOYMENT_LABEL.to_owned(), slice.deployment.clone()),
        (UNIT_LABEL.to_owned(), slice.unit.clone()),
    ]));
    set.metadata.annotations = Some(BTreeMap::from([
        (SLICE_ID_ANNOTATION.to_owned(), slice.id.clone()),
        (
            SLICE_GENERATION_ANNOTATION.to_owned(),
            slice.generation.to_string(),
        ),
    ]));
    Ok(set)
}

fn split_id(id: &str) -> Option<(&str, &str, &str)> {
    let (deployment, unit) = id.rsplit_once('@')?;
    let (namespace, name) = deployment.split_once('/')?;
    Some((namespace, name, unit))
}

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
        // The link owns the whole spec, so it replaces it (read, then update with the read
        // resourceVersion): nothing the previous slice had can linger, whatever the server's merge
        // rules for nested lists, and spec and slice generation change in one write.
        for _ in 0..WRITE_ATTEMPTS {
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
            let before = existing.as_ref().map_or(0, |set| set.spec.replicas);
            let result = match existing {
                None => api
                    .create(&PostParams::default(), &desired)
                    .await
                    .map(|_| ()),
                Some(mut set) => {
                    set.spec = desired.spec.clone();
                    set.labels_mut().extend(desired.labels().clone());
                    set.annotations_mut().extend(desired.annotations().clone());
                    set.annotations_mut().remove(SLICE_REMOVED_ANNOTATION);
                    set.status = None;
                    api.replace(&name, &PostParams::default(), &set)
                        .await
                        .map(|_| ())
                }
            };
            match result {
                Ok(()) => {
                    tracing::debug!(slice = %slice.id, generation = slice.generation, "slice applied");
                    if before != slice.replicas && !slice.reason.is_empty() {
                        self.announce_move(&desired, before, slice.replicas, &slice.reason)
                            .await;
                    }
                    return Ok(());
                }
                // Changed (the controller wrote its status) or created meanwhile: read again.
                Err(kube::Error::Api(status)) if status.code == 409 => continue,
                Err(error) => {
                    return Err(kube_error(format!("write InPlaceSet for {}", slice.id))(
                        error,
                    ));
                }
            }
        }
        Err(LinkError::BadSlice {
            id: slice.id.clone(),
            reason: format!("still conflicting after {WRITE_ATTEMPTS} attempts"),
        })
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

    #[test]
    fn slice_ids_split() {
        assert_eq!(
            split_id("finance/payments@sh-az1"),
            Some(("finance", "payments", "sh-az1"))
        );
        assert_eq!(split_id("payments@sh-az1"), None);
    }
}
