//! CafeDeployment: one application spread over logical units.

use super::analysis::Analysis;
use super::error::{Collector, FieldErrors};
use super::meta::Metadata;
use super::quantity::ReplicaCount;
use super::unit::{LogicalUnit, check_labels};
use crate::names::{
    DeploymentKey, InvalidName, RegionName, UnitName, dns1123_label_error, qualified_name_error,
};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// The `kind` of a deployment document.
pub const CAFE_DEPLOYMENT_KIND: &str = "CafeDeployment";

/// The readiness gate condition type when `traffic.readinessGate` is not set.
pub const DEFAULT_READINESS_GATE: &str = "cafe.io/traffic-ready";

/// The largest `spec.replicas` accepted; far above any real application, low enough that planning
/// stays instant.
pub const MAX_REPLICAS: i32 = 100_000;

/// The default progress deadline, as for a Kubernetes Deployment.
pub const DEFAULT_PROGRESS_DEADLINE_SECONDS: u32 = 600;

/// The default wait after a pod's gate goes False before it is touched.
pub const DEFAULT_DRAIN_SECONDS: u32 = 5;

/// A CafeDeployment as declared and as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CafeDeployment {
    /// Always `cafe.io/v1alpha1`.
    pub api_version: String,
    /// Always `CafeDeployment`.
    pub kind: String,
    /// Name and namespace (default `default`).
    pub metadata: Metadata,
    /// What the application is and how it is released.
    pub spec: CafeDeploymentSpec,
    /// Written by the hub; ignored on apply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// The declared application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CafeDeploymentSpec {
    /// Pods over all units.
    pub replicas: i32,
    /// The labels that identify the application's pods.
    pub selector: Selector,
    /// The pods to run.
    pub template: PodTemplateSpec,
    /// Which units the application runs in, and how replicas are shared.
    pub topology: Topology,
    /// How a new template is released.
    #[serde(default)]
    pub strategy: Strategy,
    /// The lossless traffic protocol.
    #[serde(default)]
    pub traffic: Traffic,
}

/// A label selector. Only `matchLabels`: the agent stamps these labels on every pod.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    /// Labels every pod of the application carries.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// Where the application runs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Topology {
    /// The units, in order (the order matters for min/max allocation).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<UnitName>,
    /// Instead of `units`: every unit matching this selector, ordered by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit_selector: Option<UnitSelector>,
    /// Per-unit replica overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unit_replicas: Vec<UnitReplicas>,
    /// Where an evacuated unit's replicas go.
    #[serde(default)]
    pub failover_scope: FailoverScope,
}

/// Selects units by region and labels.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnitSelector {
    /// Units in any of these regions; all regions when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionName>,
    /// Units carrying all of these labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

/// One unit's replica override: a fixed `replicas`, or elastic `min`/`max` (not both kinds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnitReplicas {
    /// The unit.
    pub unit: UnitName,
    /// Exactly this many (or this share of `spec.replicas`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<ReplicaCount>,
    /// At least this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<ReplicaCount>,
    /// At most this many.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<ReplicaCount>,
}

/// Where an evacuated unit's replicas go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum FailoverScope {
    /// To the surviving units of the same region (all survivors when the region has none).
    #[default]
    Region,
    /// To every surviving unit.
    Global,
}

/// How pods move to a new template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum UpgradeKind {
    /// Patch images in place when only images changed; otherwise recreate.
    #[default]
    InPlace,
    /// Always delete and recreate.
    Recreate,
}

/// When the next group starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PauseMode {
    /// Wait for `cafectl continue` after every group.
    #[default]
    Manual,
    /// Go on once the group stayed healthy for `autoPauseSeconds`.
    Auto,
}

/// How groups span regions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RegionOrder {
    /// Each group spans every region.
    #[default]
    Parallel,
    /// All groups in one region, then the next, in `strategy.regions` order.
    Sequential,
}

/// How each unit of a group moves to a new template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum StrategyType {
    /// Pods move in place, `maxUnavailable` at a time, through the traffic protocol.
    #[default]
    Grouped,
    /// A full set of new pods starts beside the old ones out of traffic (the preview); traffic then
    /// moves in one step (the switch), and the old pods stay ready for `scaleDownDelaySeconds`.
    BlueGreen,
}

/// The blue-green part of a strategy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlueGreenStrategy {
    /// How long the old pods stay, out of traffic but ready, after a unit's switch: a rollback
    /// within it switches back without starting a pod.
    #[serde(default = "default_scale_down_delay")]
    pub scale_down_delay_seconds: u32,
}

/// Argo Rollouts' default.
fn default_scale_down_delay() -> u32 {
    30
}

impl Default for BlueGreenStrategy {
    fn default() -> Self {
        Self {
            scale_down_delay_seconds: default_scale_down_delay(),
        }
    }
}

/// How a new template is released.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Strategy {
    /// Grouped (in place) or BlueGreen.
    #[serde(default, rename = "type")]
    pub type_: StrategyType,
    /// BlueGreen: the delay before old pods go.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
    /// In place or recreate.
    #[serde(default)]
    pub upgrade: UpgradeKind,
    /// Group 0 updates one pod in every unit.
    #[serde(default)]
    pub beta: bool,
    /// Groups after the beta group.
    #[serde(default = "default_batches")]
    pub batches: u32,
    /// Manual or Auto.
    #[serde(default)]
    pub pause: PauseMode,
    /// Auto: how long a group stays healthy before the next one.
    #[serde(default)]
    pub auto_pause_seconds: u32,
    /// Per unit, pods updated at the same time.
    #[serde(default = "default_max_unavailable")]
    pub max_unavailable: u32,
    /// A pod counts as available after being ready this long.
    #[serde(default)]
    pub min_ready_seconds: u32,
    /// A group that makes no progress for this long fails the release.
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline_seconds: u32,
    /// Parallel or Sequential.
    #[serde(default)]
    pub region_order: RegionOrder,
    /// The region order for Sequential; must list every region in play.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub regions: Vec<RegionName>,
    /// Metrics and webhooks every group must pass before it counts as done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
}

fn default_batches() -> u32 {
    1
}
fn default_max_unavailable() -> u32 {
    1
}
fn default_progress_deadline() -> u32 {
    DEFAULT_PROGRESS_DEADLINE_SECONDS
}

impl Default for Strategy {
    fn default() -> Self {
        Self {
            type_: StrategyType::default(),
            blue_green: None,
            upgrade: UpgradeKind::default(),
            beta: false,
            batches: default_batches(),
            pause: PauseMode::default(),
            auto_pause_seconds: 0,
            max_unavailable: default_max_unavailable(),
            min_ready_seconds: 0,
            progress_deadline_seconds: default_progress_deadline(),
            region_order: RegionOrder::default(),
            regions: Vec::new(),
            analysis: None,
        }
    }
}

/// The traffic protocol of DESIGN section 7.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Traffic {
    /// The pod condition type the agent owns.
    #[serde(default = "default_readiness_gate")]
    pub readiness_gate: String,
    /// Finalizers that traffic components put on serving pods.
    #[serde(default)]
    pub finalizers: Vec<String>,
    /// The minimum wait after the gate goes False.
    #[serde(default = "default_drain_seconds")]
    pub drain_seconds: u32,
}

fn default_readiness_gate() -> String {
    DEFAULT_READINESS_GATE.to_owned()
}
fn default_drain_seconds() -> u32 {
    DEFAULT_DRAIN_SECONDS
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            readiness_gate: default_readiness_gate(),
            finalizers: Vec::new(),
            drain_seconds: default_drain_seconds(),
        }
    }
}

impl CafeDeployment {
    /// The deployment's namespace and name. Valid once [`CafeDeployment::validate`] passed.
    pub fn key(&self) -> Result<DeploymentKey, InvalidName> {
        self.metadata.namespaced_key()
    }

    /// The namespace, `default` when none is given.
    pub fn namespace(&self) -> &str {
        self.metadata.namespace_or_default()
    }

    /// Checks everything that needs no other resource.
    pub fn validate(&self) -> Result<(), FieldErrors> {
        let mut errors = Collector::default();
        self.metadata
            .check_namespaced(&self.api_version, &mut errors);
        self.spec.validate(&mut errors);
        errors.finish()
    }

    /// Checks the deployment against the hub's units: they exist, and Sequential lists their regions.
    /// Returns the deployment's units in topology order.
    pub fn resolve_units<'a>(
        &self,
        units: &'a BTreeMap<UnitName, LogicalUnit>,
    ) -> Result<Vec<(&'a UnitName, &'a LogicalUnit)>, FieldErrors> {
        let mut errors = Collector::default();
        let topology = &self.spec.topology;
        let resolved: Vec<(&UnitName, &LogicalUnit)> = match &topology.unit_selector {
            Some(selector) => {
                let chosen: Vec<(&UnitName, &LogicalUnit)> =
                    units.iter().filter(|(_, u)| selector.matches(u)).collect();
                if chosen.is_empty() {
                    errors.push("spec.topology.unitSelector", "selects no unit");
                }
                chosen
            }
            None => topology
                .units
                .iter()
                .enumerate()
                .filter_map(|(i, name)| {
                    let found = units.get_key_value(name);
                    if found.is_none() {
                        errors.push(
                            format!("spec.topology.units[{i}]"),
                            format!("unknown unit {:?}", name.as_str()),
                        );
                    }
                    found
                })
                .collect(),
        };
        let in_play: BTreeSet<&str> = resolved.iter().map(|(name, _)| name.as_str()).collect();
        for (i, entry) in topology.unit_replicas.iter().enumerate() {
            // Unit references in unitReplicas are checked once the units themselves resolved.
            if !in_play.contains(entry.unit.as_str()) && errors.is_empty() {
                errors.push(
                    format!("spec.topology.unitReplicas[{i}] ({}).unit", entry.unit),
                    format!(
                        "{:?} is not one of the deployment's units",
                        entry.unit.as_str()
                    ),
                );
            }
        }
        if self.spec.strategy.region_order == RegionOrder::Sequential {
            let regions: BTreeSet<&RegionName> =
                resolved.iter().map(|(_, u)| &u.spec.region).collect();
            let listed: BTreeSet<&RegionName> = self.spec.strategy.regions.iter().collect();
            for missing in regions.difference(&listed) {
                errors.push(
                    "spec.strategy.regions",
                    format!(
                        "must list every region of the deployment's units; {:?} is missing",
                        missing.as_str()
                    ),
                );
            }
            for (i, extra) in self.spec.strategy.regions.iter().enumerate() {
                if !regions.contains(extra) {
                    errors.push(
                        format!("spec.strategy.regions[{i}]"),
                        format!(
                            "no unit of the deployment is in region {:?}",
                            extra.as_str()
                        ),
                    );
                }
            }
        }
        errors.finish().map(|()| resolved)
    }
}

impl UnitSelector {
    /// Whether the selector picks `unit`.
    pub fn matches(&self, unit: &LogicalUnit) -> bool {
        (self.regions.is_empty() || self.regions.contains(&unit.spec.region))
            && self
                .match_labels
                .iter()
                .all(|(k, v)| unit.metadata.labels.get(k) == Some(v))
    }
}

impl CafeDeploymentSpec {
    fn validate(&self, errors: &mut Collector) {
        if self.replicas < 0 {
            errors.push(
                "spec.replicas",
                format!("must not be negative, got {}", self.replicas),
            );
        } else if self.replicas > MAX_REPLICAS {
            errors.push("spec.replicas", format!("must be at most {MAX_REPLICAS}"));
        }
        self.validate_selector_and_template(errors);
        self.topology.validate(errors);
        self.strategy.validate(errors);
        self.traffic.validate(errors);
    }

    fn validate_selector_and_template(&self, errors: &mut Collector) {
        let selector = &self.selector.match_labels;
        if selector.is_empty() {
            errors.push("spec.selector.matchLabels", "must not be empty");
        }
        check_labels(errors, "spec.selector.matchLabels", selector);
        let labels = self
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        for (key, value) in selector {
            if labels.get(key) != Some(value) {
                errors.push(
                    "spec.template.metadata.labels",
                    format!("must carry the selector's label {key}={value}"),
                );
            }
        }
        let Some(pod) = &self.template.spec else {
            errors.push("spec.template.spec", "is required");
            return;
        };
        if pod.containers.is_empty() {
            errors.push(
                "spec.template.spec.containers",
                "must have at least one container",
            );
        }
        let mut seen = BTreeSet::new();
        for (i, container) in pod.containers.iter().enumerate() {
            let path = format!("spec.template.spec.containers[{i}]");
            errors.check(format!("{path}.name"), dns1123_label_error(&container.name));
            if !seen.insert(container.name.as_str()) {
                errors.push(
                    format!("{path}.name"),
                    format!("duplicate container {:?}", container.name),
                );
            }
            if container.image.as_deref().unwrap_or_default().is_empty() {
                errors.push(format!("{path}.image"), "is required");
            }
        }
    }
}

impl Topology {
    fn validate(&self, errors: &mut Collector) {
        match (&self.unit_selector, self.units.is_empty()) {
            (Some(_), false) => errors.push(
                "spec.topology.units",
                "give either units or unitSelector, not both",
            ),
            (None, true) => errors.push("spec.topology.units", "must name at least one unit"),
            _ => {}
        }
        let mut seen = BTreeSet::new();
        for (i, unit) in self.units.iter().enumerate() {
            if !seen.insert(unit) {
                errors.push(
                    format!("spec.topology.units[{i}]"),
                    format!("duplicate unit {:?}", unit.as_str()),
                );
            }
        }
        if let Some(selector) = &self.unit_selector {
            check_labels(
                errors,
                "spec.topology.unitSelector.matchLabels",
                &selector.match_labels,
            );
        }
        let mut seen = BTreeSet::new();
        let (mut fixed, mut elastic) = (false, false);
        for (i, entry) in self.unit_replicas.iter().enumerate() {
            // The entry's unit is named as well as its index: lists are read by name.
            let path = format!("spec.topology.unitReplicas[{i}] ({})", entry.unit);
            if !seen.insert(&entry.unit) {
                errors.push(
                    format!("{path}.unit"),
                    format!("duplicate entry for unit {:?}", entry.unit.as_str()),
                );
            }
            for (field, value) in [
                ("replicas", entry.replicas),
                ("min", entry.min),
                ("max", entry.max),
            ] {
                if let Some(value) = value {
                    errors.check(format!("{path}.{field}"), value.range_error());
                }
            }
            let is_elastic = entry.min.is_some() || entry.max.is_some();
            if entry.replicas.is_some() && is_elastic {
                errors.push(path.clone(), "give either replicas or min/max, not both");
            }
            if entry.replicas.is_none() && !is_elastic {
                errors.push(path.clone(), "give replicas, min or max");
            }
            fixed |= entry.replicas.is_some() && !is_elastic;
            elastic |= is_elastic && entry.replicas.is_none();
            if let (Some(ReplicaCount::Count(min)), Some(ReplicaCount::Count(max))) =
                (entry.min, entry.max)
                && min > max
            {
                errors.push(
                    format!("{path}.min"),
                    format!("{min} is more than max {max}"),
                );
            }
        }
        if fixed && elastic {
            errors.push(
                "spec.topology.unitReplicas",
                "fixed replicas and min/max cannot be mixed in one deployment",
            );
        }
    }
}

impl Strategy {
    /// The blue-green settings, when the strategy is BlueGreen (defaults if not given).
    pub fn blue_green(&self) -> Option<BlueGreenStrategy> {
        (self.type_ == StrategyType::BlueGreen).then(|| self.blue_green.clone().unwrap_or_default())
    }

    fn validate(&self, errors: &mut Collector) {
        if self.blue_green.is_some() && self.type_ != StrategyType::BlueGreen {
            errors.push(
                "spec.strategy.blueGreen",
                "only applies with type: BlueGreen",
            );
        }
        if self.batches == 0 {
            errors.push("spec.strategy.batches", "must be at least 1");
        }
        if self.max_unavailable == 0 {
            errors.push("spec.strategy.maxUnavailable", "must be at least 1");
        }
        if self.progress_deadline_seconds <= self.min_ready_seconds {
            errors.push(
                "spec.strategy.progressDeadlineSeconds",
                format!(
                    "must be greater than minReadySeconds ({})",
                    self.min_ready_seconds
                ),
            );
        }
        if self.auto_pause_seconds > 0 && self.pause != PauseMode::Auto {
            errors.push(
                "spec.strategy.autoPauseSeconds",
                "only applies with pause: Auto",
            );
        }
        match self.region_order {
            RegionOrder::Sequential if self.regions.is_empty() => errors.push(
                "spec.strategy.regions",
                "regionOrder Sequential needs the order of every region in play",
            ),
            RegionOrder::Parallel if !self.regions.is_empty() => errors.push(
                "spec.strategy.regions",
                "only applies with regionOrder: Sequential",
            ),
            _ => {}
        }
        if let Some(analysis) = &self.analysis {
            analysis.validate(errors);
        }
        let mut seen = BTreeSet::new();
        for (i, region) in self.regions.iter().enumerate() {
            if !seen.insert(region) {
                errors.push(
                    format!("spec.strategy.regions[{i}]"),
                    format!("duplicate region {:?}", region.as_str()),
                );
            }
        }
    }
}

impl Traffic {
    fn validate(&self, errors: &mut Collector) {
        errors.check(
            "spec.traffic.readinessGate",
            qualified_name_error(&self.readiness_gate),
        );
        let mut seen = BTreeSet::new();
        for (i, finalizer) in self.finalizers.iter().enumerate() {
            let path = format!("spec.traffic.finalizers[{i}]");
            errors.check(path.clone(), qualified_name_error(finalizer));
            if !seen.insert(finalizer) {
                errors.push(path, format!("duplicate finalizer {finalizer:?}"));
            }
        }
    }
}
