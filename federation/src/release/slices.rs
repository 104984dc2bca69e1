//! The desired slices of one deployment: what each unit's agent must run now.

use super::state::ReleaseState;
use crate::names::{ClusterName, SliceId, UnitName};
use crate::plan::Plan;
use crate::resources::{CafeDeployment, Traffic, UpgradeKind};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One deployment's part in one unit, as the hub wants it.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceSpec {
    /// `namespace/name@unit`.
    pub id: SliceId,
    /// The cluster whose agent runs it.
    pub cluster: ClusterName,
    /// Pods in the unit.
    pub replicas: i32,
    /// Pods that keep the stable revision.
    pub partition: i32,
    /// The revision pods move to.
    pub update_revision: String,
    /// Its template (shared by the deployment's slices).
    pub template: Arc<PodTemplateSpec>,
    /// The revision the partition keeps.
    pub stable_revision: String,
    /// Its template (shared by the deployment's slices).
    pub stable_template: Arc<PodTemplateSpec>,
    /// The deployment's selector.
    pub selector: BTreeMap<String, String>,
    /// Pods updated at once in the unit.
    pub max_unavailable: i32,
    /// Seconds a ready pod waits to count as available.
    pub min_ready_seconds: i32,
    /// Stop updates (keep scaling).
    pub paused: bool,
    /// In place or recreate.
    pub upgrade: UpgradeKind,
    /// The traffic protocol.
    pub traffic: Traffic,
    /// The unit's node selector.
    pub node_selector: BTreeMap<String, String>,
    /// Why replicas move into or out of the unit (failover); empty otherwise.
    pub reason: String,
}

impl SliceSpec {
    /// The identity of the slice's content: equal slices (whatever their id, cluster or generation)
    /// have equal digests. The templates are stood for by their revision names, which are their
    /// hashes. Kept in the store, so that a restarted hub keeps the generation of a slice it decides
    /// the same again.
    pub fn digest(&self) -> String {
        /// Every field the agent acts on, in a fixed order (maps serialise sorted).
        #[derive(serde::Serialize)]
        struct Content<'a> {
            replicas: i32,
            partition: i32,
            update_revision: &'a str,
            stable_revision: &'a str,
            selector: &'a BTreeMap<String, String>,
            max_unavailable: i32,
            min_ready_seconds: i32,
            paused: bool,
            upgrade: UpgradeKind,
            traffic: &'a Traffic,
            node_selector: &'a BTreeMap<String, String>,
            reason: &'a str,
        }
        let content = Content {
            replicas: self.replicas,
            partition: self.partition,
            update_revision: &self.update_revision,
            stable_revision: &self.stable_revision,
            selector: &self.selector,
            max_unavailable: self.max_unavailable,
            min_ready_seconds: self.min_ready_seconds,
            paused: self.paused,
            upgrade: self.upgrade,
            traffic: &self.traffic,
            node_selector: &self.node_selector,
            reason: &self.reason,
        };
        // Plain values and maps with string keys: serialising them cannot fail.
        let bytes = serde_json::to_vec(&content).unwrap_or_default();
        super::hex(&Sha256::digest(&bytes)[..16])
    }
}

/// The slices of `deployment` per unit, from its plan and release state. Units the plan gives no
/// replicas still get a slice (of 0 replicas), so that their pods are drained and removed.
pub fn desired_slices(
    deployment: &CafeDeployment,
    plan: &Plan,
    state: &ReleaseState,
    node_selectors: &BTreeMap<UnitName, BTreeMap<String, String>>,
) -> Vec<SliceSpec> {
    let Ok(key) = deployment.key() else {
        // A stored deployment passed validation, so its key is valid.
        return Vec::new();
    };
    let template_of = |name: &str| {
        let template = state
            .history
            .get(name)
            .map_or_else(|| deployment.spec.template.clone(), |r| r.template.clone());
        Arc::new(template)
    };
    let update_template = template_of(&state.update_revision);
    let settled = state.settled();
    let (stable_revision, stable_template) = if settled {
        (state.update_revision.clone(), Arc::clone(&update_template))
    } else {
        (
            state.current_revision.clone(),
            template_of(&state.current_revision),
        )
    };
    let group = plan.batches.get(state.batch());
    let spec = &deployment.spec;
    plan.units
        .iter()
        .map(|unit| {
            let target = state.target(group.map(|g| g.target_of(&unit.unit)), unit.replicas);
            SliceSpec {
                id: SliceId::new(&key, &unit.unit),
                cluster: unit.cluster.clone(),
                replicas: unit.replicas,
                partition: unit.replicas - target,
                update_revision: state.update_revision.clone(),
                template: Arc::clone(&update_template),
                stable_revision: stable_revision.clone(),
                stable_template: Arc::clone(&stable_template),
                selector: spec.selector.match_labels.clone(),
                max_unavailable: i32::try_from(spec.strategy.max_unavailable).unwrap_or(i32::MAX),
                min_ready_seconds: i32::try_from(spec.strategy.min_ready_seconds)
                    .unwrap_or(i32::MAX),
                paused: state.slices_paused(),
                upgrade: spec.strategy.upgrade,
                traffic: spec.traffic.clone(),
                node_selector: node_selectors.get(&unit.unit).cloned().unwrap_or_default(),
                reason: String::new(),
            }
        })
        .collect()
}
