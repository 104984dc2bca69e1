//! The agent's Prometheus metrics (prometheus-client), registered in one place.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Reconcile duration buckets: 1 ms doubling to about 16 s.
const RECONCILE_BUCKETS: (f64, f64, u16) = (0.001, 2.0, 15);

/// How a reconcile ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum ReconcileResult {
    /// Planned and applied.
    Ok,
    /// Waited for the cache to show earlier writes.
    Waited,
    /// Failed (retried with backoff).
    Error,
}

/// Labels of `reconciles_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// How it ended.
    pub result: ReconcileResult,
}

/// Kinds of writes to pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum ActionKind {
    /// A pod created.
    Create,
    /// A gate closed.
    CloseGate,
    /// A drain mark written.
    MarkDrain,
    /// Images patched in place.
    UpdateInPlace,
    /// A pod deleted.
    Delete,
    /// A gate opened.
    OpenGate,
    /// A drain mark removed.
    ClearDrainMark,
}

/// Labels of `pod_actions_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct ActionLabels {
    /// The write.
    pub action: ActionKind,
}

/// How a pod moved to a new revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
pub enum UpdateMode {
    /// Images patched in place.
    InPlace,
    /// Deleted and created again.
    Recreate,
}

/// Labels of `pods_updated_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct UpdateLabels {
    /// How.
    pub mode: UpdateMode,
}

/// The controller's metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Reconciles by result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Reconcile durations in seconds.
    pub reconcile_duration: Histogram,
    /// Successful pod writes by kind.
    pub pod_actions: Family<ActionLabels, Counter>,
    /// Pods moved to another revision, by mode.
    pub pods_updated: Family<UpdateLabels, Counter>,
    /// The link to the hub and the leader lease.
    pub link: LinkGauges,
}

/// What the agent's link and its leader election show: gauges the link sets as it goes.
#[derive(Debug, Clone, Default)]
pub struct LinkGauges {
    /// 1 while a stream to the hub is open (after the hub's Welcome), else 0.
    pub hub_connected: Gauge,
    /// The slices the cluster holds for the hub.
    pub slices: Gauge,
    /// 1 while this agent runs the controller and the link: it holds the Lease, or runs without
    /// leader election.
    pub leader: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them (prefix `cafe_agent_`).
    pub fn new(registry: &mut Registry) -> Self {
        let (start, factor, count) = RECONCILE_BUCKETS;
        let metrics = Self {
            reconciles: Family::default(),
            reconcile_duration: Histogram::new(exponential_buckets(start, factor, count)),
            pod_actions: Family::default(),
            pods_updated: Family::default(),
            link: LinkGauges::default(),
        };
        let registry = registry.sub_registry_with_prefix("cafe_agent");
        registry.register(
            "reconciles",
            "InPlaceSet reconciles by result",
            metrics.reconciles.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one InPlaceSet reconcile",
            metrics.reconcile_duration.clone(),
        );
        registry.register(
            "pod_actions",
            "Pod writes made by the controller",
            metrics.pod_actions.clone(),
        );
        registry.register(
            "pods_updated",
            "Pods moved to another revision",
            metrics.pods_updated.clone(),
        );
        registry.register(
            "hub_connected",
            "1 while a stream to the hub is open, else 0",
            metrics.link.hub_connected.clone(),
        );
        registry.register(
            "slices",
            "Slices of the hub the cluster holds",
            metrics.link.slices.clone(),
        );
        registry.register(
            "leader",
            "1 while this agent acts (it holds the Lease, or runs without leader election)",
            metrics.link.leader.clone(),
        );
        metrics
    }

    /// Metrics registered nowhere (for embedding without a metrics endpoint).
    pub fn unregistered() -> Self {
        Self::new(&mut Registry::default())
    }

    pub(crate) fn reconciled(&self, result: ReconcileResult, seconds: f64) {
        self.reconciles
            .get_or_create(&ReconcileLabels { result })
            .inc();
        self.reconcile_duration.observe(seconds);
    }

    pub(crate) fn action(&self, action: ActionKind) {
        self.pod_actions
            .get_or_create(&ActionLabels { action })
            .inc();
    }

    pub(crate) fn updated(&self, mode: UpdateMode) {
        self.pods_updated
            .get_or_create(&UpdateLabels { mode })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_their_prefix() {
        let mut registry = Registry::default();
        let m = Metrics::new(&mut registry);
        m.reconciled(ReconcileResult::Ok, 0.01);
        m.action(ActionKind::UpdateInPlace);
        m.updated(UpdateMode::InPlace);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("cafe_agent_reconciles_total{result=\"Ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cafe_agent_pods_updated_total{mode=\"InPlace\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("cafe_agent_reconcile_duration_seconds_count 1"),
            "{text}"
        );
    }
}
