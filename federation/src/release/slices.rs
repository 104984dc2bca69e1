//! The desired slices of one deployment: what each unit's agent must run now.

use super::state::{BlueGreenPart, ReleaseState};
use crate::names::{ClusterName, SliceId, UnitName};
use crate::plan::{Group, Plan};
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
    /// How the analysis of a group that changed this unit ended: `(Event reason, message)`.
    pub analysis: Option<(String, String)>,
    /// Blue-green: which template serves and what runs beside it (`None`: grouped, the partition
    /// decides).
    pub blue_green: Option<BlueGreenSlice>,
}

/// A unit's blue-green slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlueGreenSlice {
    /// The update revision serves.
    pub switched: bool,
    /// Before the switch, the update revision's preview runs out of traffic.
    pub preview: bool,
    /// How long old pods stay after the switch.
    pub scale_down_delay_seconds: u32,
}

impl SliceSpec {
    /// The identity of the slice's content: equal slices (whatever their id, cluster or generation)
    /// have equal digests. The templates are stood for by their revision names, which are their
    /// hashes. Kept in the store, so that a restarted hub keeps the generation of a slice it decides
    /// the same again.
    pub fn digest(&self) -> String {
        // Every field named, so that a field added to the slice cannot be left out of its identity.
        let Self {
            id: _,
            cluster: _,
            replicas,
            partition,
            update_revision,
            template: _,
            stable_revision,
            stable_template: _,
            selector,
            max_unavailable,
            min_ready_seconds,
            paused,
            upgrade,
            traffic:
                Traffic {
                    readiness_gate,
                    finalizers,
                    drain_seconds,
                },
            node_selector,
            reason,
            analysis,
            blue_green,
        } = self;
        let mut content = Content(Sha256::new());
        content.number(i64::from(*replicas));
        content.number(i64::from(*partition));
        content.text(update_revision);
        content.text(stable_revision);
        content.map(selector);
        content.number(i64::from(*max_unavailable));
        content.number(i64::from(*min_ready_seconds));
        content.number(i64::from(*paused));
        content.number(match upgrade {
            UpgradeKind::InPlace => 0,
            UpgradeKind::Recreate => 1,
        });
        content.text(readiness_gate);
        content.number(i64::try_from(finalizers.len()).unwrap_or(i64::MAX));
        for finalizer in finalizers {
            content.text(finalizer);
        }
        content.number(i64::from(*drain_seconds));
        content.map(node_selector);
        content.text(reason);
        match analysis {
            None => content.number(0),
            Some((reason, message)) => {
                content.number(1);
                content.text(reason);
                content.text(message);
            }
        }
        match blue_green {
            None => content.number(0),
            Some(BlueGreenSlice {
                switched,
                preview,
                scale_down_delay_seconds,
            }) => {
                content.number(1);
                content.number(i64::from(*switched));
                content.number(i64::from(*preview));
                content.number(i64::from(*scale_down_delay_seconds));
            }
        }
        super::hex(&content.0.finalize()[..16])
    }
}

/// A digest fed field by field, each one framed (texts and maps by their length), so that no two
/// different contents feed the same bytes.
struct Content(Sha256);

impl Content {
    fn number(&mut self, value: i64) {
        self.0.update(value.to_le_bytes());
    }

    fn text(&mut self, value: &str) {
        self.number(i64::try_from(value.len()).unwrap_or(i64::MAX));
        self.0.update(value.as_bytes());
    }

    fn map(&mut self, map: &BTreeMap<String, String>) {
        self.number(i64::try_from(map.len()).unwrap_or(i64::MAX));
        for (key, value) in map {
            self.text(key);
            self.text(value);
        }
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
    // The units the ended analysis measured hear how it ended.
    let analysed = state.analysis().and_then(|run| {
        let outcome = run.outcome.as_ref()?;
        let notice = (
            outcome.result.reason().to_owned(),
            format!("group {}: {}", run.group, outcome.message),
        );
        Some((plan.batches.get(run.group)?, notice))
    });
    let spec = &deployment.spec;
    let blue_green = spec.strategy.blue_green();
    plan.units
        .iter()
        .map(|unit| {
            // An evacuated unit keeps its pods until the survivors run theirs: meanwhile they
            // follow the groups it would have had, so they neither roll back nor switch back.
            let target_in = |g: &Group| {
                if unit.evacuated {
                    g.nominal_target_of(&unit.unit)
                } else {
                    g.target_of(&unit.unit)
                }
            };
            let mut target = state.target(group.map(target_in), unit.replicas);
            let blue_green = blue_green.as_ref().map(|bg| {
                // A unit switches whole in its group: before it (or while the group previews) its
                // target is 0, from it on all of its replicas.
                let part = if settled {
                    BlueGreenPart {
                        switched: true,
                        preview: false,
                    }
                } else {
                    let own_group = plan.batches.iter().position(|g| target_in(g) > 0);
                    let current = state.batch();
                    let switched_through = state.switched_group();
                    match own_group {
                        Some(g) if g < current || switched_through.is_some_and(|s| g <= s) => {
                            BlueGreenPart {
                                switched: true,
                                preview: false,
                            }
                        }
                        Some(g) if g == current => BlueGreenPart {
                            switched: false,
                            preview: true,
                        },
                        _ => BlueGreenPart::default(),
                    }
                };
                target = if part.switched { unit.replicas } else { 0 };
                BlueGreenSlice {
                    switched: part.switched,
                    preview: part.preview,
                    scale_down_delay_seconds: bg.scale_down_delay_seconds,
                }
            });
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
                analysis: analysed
                    .as_ref()
                    .filter(|(group, _)| group.changes(&unit.unit))
                    .map(|(_, notice)| notice.clone()),
                blue_green,
            }
        })
        .collect()
}
