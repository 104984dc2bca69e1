//! The hub's Prometheus metrics.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
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
    notifications: Family<ResultLabel, Counter>,
    api_calls: Family<MethodLabel, Counter>,
    status_watches: Gauge,
}

/// The `method` label of API calls.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

/// Holds one open `WatchStatus` stream in `cafe_hub_status_watches`, until dropped.
#[derive(Debug)]
pub struct WatchGuard(Gauge);

impl Drop for WatchGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
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
            notifications: Family::default(),
            api_calls: Family::default(),
            status_watches: Gauge::default(),
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
        registry.register(
            "notifications",
            "Notifications to the webhook, by result (delivered, failed after its retries, dropped \
             because the queue was full)",
            self.notifications.clone(),
        );
        registry.register(
            "api_calls",
            "Calls of the Federation API, by method (a client that polls shows here)",
            self.api_calls.clone(),
        );
        registry.register(
            "status_watches",
            "Open WatchStatus streams (cafectl status --watch, the console)",
            self.status_watches.clone(),
        );
    }

    /// A Federation call of `method` arrived. Names that are not a method's (anything but ASCII
    /// letters, at most 40) count as `other`, so that no caller can grow the label set.
    pub fn api_call(&self, method: &str) {
        let known = !method.is_empty()
            && method.len() <= 40
            && method.bytes().all(|b| b.is_ascii_alphabetic());
        self.api_calls
            .get_or_create(&MethodLabel {
                method: if known { method } else { "other" }.to_owned(),
            })
            .inc();
    }

    /// A `WatchStatus` stream opened; it counts until the guard is dropped.
    pub fn watch_opened(&self) -> WatchGuard {
        self.status_watches.inc();
        WatchGuard(self.status_watches.clone())
    }

    /// A notification was delivered, failed or dropped.
    pub fn notification(&self, result: &str) {
        self.notifications
            .get_or_create(&ResultLabel {
                result: result.to_owned(),
            })
            .inc();
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

/// `cafe_deployment_info{namespace,name,phase,reason}` (1 per deployment),
/// `cafe_deployment_group{namespace,name}` (the current group, 0-based),
/// `cafe_cluster_connected{cluster}` (1 while its agent's stream is live) and
/// `cafe_build_info{version}`: computed from the published model at each scrape, so they are never
/// out of step with it and cost nothing between scrapes.
pub struct StateCollector {
    model: ModelView,
}

/// The published model and the hub's clock, read at each scrape.
pub type ModelView = Arc<dyn Fn() -> (Arc<super::core::Core>, i64) + Send + Sync>;

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCollector").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentInfo {
    namespace: String,
    name: String,
    phase: String,
    reason: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeploymentLabels {
    namespace: String,
    name: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineInfo {
    namespace: String,
    name: String,
    phase: String,
    stage: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabel {
    cluster: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: String,
}

impl StateCollector {
    /// A collector of the model `model` returns.
    pub fn new(model: ModelView) -> Self {
        Self { model }
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (core, now) = (self.model)();
        let info = Family::<DeploymentInfo, Gauge>::default();
        let group = Family::<DeploymentLabels, Gauge>::default();
        for (key, record) in core.deployments() {
            let release = &record.release;
            info.get_or_create(&DeploymentInfo {
                namespace: key.namespace.to_string(),
                name: key.name.to_string(),
                phase: release.phase().to_string(),
                reason: release.reason().to_string(),
            })
            .set(1);
            group
                .get_or_create(&DeploymentLabels {
                    namespace: key.namespace.to_string(),
                    name: key.name.to_string(),
                })
                .set(i64::try_from(release.batch()).unwrap_or(i64::MAX));
        }
        let pipeline_info = Family::<PipelineInfo, Gauge>::default();
        let pipeline_stage = Family::<DeploymentLabels, Gauge>::default();
        for (key, record) in core.pipelines() {
            let progress = &record.state.progress;
            let stage = progress.stage();
            pipeline_info
                .get_or_create(&PipelineInfo {
                    namespace: key.namespace.to_string(),
                    name: key.name.to_string(),
                    phase: progress.phase().to_owned(),
                    stage: stage
                        .and_then(|s| record.pipeline.spec.stages.get(s))
                        .map(|s| s.name.clone())
                        .unwrap_or_default(),
                })
                .set(1);
            pipeline_stage
                .get_or_create(&DeploymentLabels {
                    namespace: key.namespace.to_string(),
                    name: key.name.to_string(),
                })
                .set(stage.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX)));
        }
        let connected = Family::<ClusterLabel, Gauge>::default();
        for cluster in core.known_clusters() {
            let state = super::core::LinkState::of(core.cluster(&cluster), now);
            connected
                .get_or_create(&ClusterLabel {
                    cluster: cluster.to_string(),
                })
                .set(i64::from(state == super::core::LinkState::Connected));
        }
        let build = Family::<VersionLabel, Gauge>::default();
        build
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION").to_owned(),
            })
            .set(1);
        for (name, help, family) in [
            (
                "cafe_deployment_info",
                "Each deployment's release phase and reason (always 1)",
                &info as &dyn EncodeMetric,
            ),
            (
                "cafe_deployment_group",
                "Each deployment's current release group (0-based)",
                &group,
            ),
            (
                "cafe_pipeline_info",
                "Each ReleasePipeline's phase and current stage (always 1)",
                &pipeline_info,
            ),
            (
                "cafe_pipeline_stage",
                "Each ReleasePipeline's current stage (0-based; -1 once it has ended)",
                &pipeline_stage,
            ),
            (
                "cafe_cluster_connected",
                "1 while the cluster's agent has a live stream to this hub, else 0",
                &connected,
            ),
            ("cafe_build_info", "The hub's version (always 1)", &build),
        ] {
            let metric = encoder.encode_descriptor(name, help, None, family.metric_type())?;
            family.encode(metric)?;
        }
        Ok(())
    }
}
