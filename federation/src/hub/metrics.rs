//! The hub's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::time::Duration;

/// Store commit latency buckets, in seconds: from a page-cache write to a slow disk.
const COMMIT_BUCKETS: [f64; 10] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0,
];

/// Failover restore time buckets, in seconds: from pods starting at once to a slow datacenter.
const RESTORE_BUCKETS: [f64; 10] = [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// Counters and gauges of one hub.
#[derive(Debug, Clone)]
pub struct HubMetrics {
    commits: Histogram,
    acks: Counter,
    connected_clusters: Gauge,
    slices_sent: Counter,
    restores: Histogram,
    measurements: Family<ResultLabel, Counter>,
}

/// The `result` label of analysis measurements.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

impl Default for HubMetrics {
    fn default() -> Self {
        Self {
            commits: Histogram::new(COMMIT_BUCKETS),
            acks: Counter::default(),
            connected_clusters: Gauge::default(),
            slices_sent: Counter::default(),
            restores: Histogram::new(RESTORE_BUCKETS),
            measurements: Family::default(),
        }
    }
}

impl HubMetrics {
    /// Registers every metric under `cafe_hub_`.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("cafe_hub");
        registry.register(
            "store_commit_seconds",
            "Store commit latency",
            self.commits.clone(),
        );
        registry.register(
            "slice_acks",
            "Slice generations acknowledged by agents",
            self.acks.clone(),
        );
        registry.register(
            "connected_clusters",
            "Agents with a live stream",
            self.connected_clusters.clone(),
        );
        registry.register(
            "slices_sent",
            "Slice upserts and deletes sent to agents",
            self.slices_sent.clone(),
        );
        registry.register(
            "failover_capacity_restored_seconds",
            "Time from an evacuation or failback to the new capacity ready in every deployment",
            self.restores.clone(),
        );
        registry.register(
            "analysis_measurements",
            "Analysis measurements recorded, by result (Successful, Failed, Inconclusive, Error)",
            self.measurements.clone(),
        );
    }

    /// An analysis measurement with `result` was recorded.
    pub fn analysis_measured(&self, result: &str) {
        self.measurements
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
    }

    /// A store commit took `elapsed`.
    pub fn observe_commit(&self, elapsed: Duration) {
        self.commits.observe(elapsed.as_secs_f64());
    }

    /// A failover's new capacity became ready after `elapsed`.
    pub fn observe_restore(&self, elapsed: Duration) {
        self.restores.observe(elapsed.as_secs_f64());
    }

    /// An agent acknowledged a slice.
    pub fn acks_inc(&self) {
        self.acks.inc();
    }

    /// A slice message went out.
    pub fn sent_add(&self, changes: usize) {
        self.slices_sent
            .inc_by(u64::try_from(changes).unwrap_or(u64::MAX));
    }

    /// An agent connected (+1) or left (-1).
    pub fn connected_clusters_delta(&self, delta: i64) {
        self.connected_clusters.inc_by(delta);
    }
}
