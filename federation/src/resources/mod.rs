//! The hub's resources (DESIGN section 3): typed documents, parsed once at the edge, with
//! validation errors that name the field.

mod analysis;
mod deployment;
mod error;
mod manifest;
mod meta;
mod pipeline;
mod quantity;
mod unit;

pub use analysis::{
    Analysis, Condition, DurationText, Metric, MetricScope, OnFailure, PROMETHEUS_TIMEOUT_SECONDS,
    PrometheusMetric, QUERY_VARIABLES, WebhookMetric, expand, parse_duration_ms,
};
pub use deployment::{
    BlueGreenStrategy, CAFE_DEPLOYMENT_KIND, CafeDeployment, CafeDeploymentSpec,
    DEFAULT_DRAIN_SECONDS, DEFAULT_PROGRESS_DEADLINE_SECONDS, DEFAULT_READINESS_GATE,
    FailoverScope, MAX_REPLICAS, PauseMode, RegionOrder, Selector, Strategy, StrategyType,
    Topology, Traffic, UnitReplicas, UnitSelector, UpgradeKind,
};
pub use error::{Collector, FieldError, FieldErrors};
pub use manifest::{DocumentError, Resource, Subject, parse_json_document, parse_yaml_documents};
pub use meta::{API_VERSION, DEFAULT_NAMESPACE, Metadata};
pub use pipeline::{
    Appearance, Gate, PipelineKey, PipelineOnFailure, PipelineSpec, PipelineStage,
    RELEASE_PIPELINE_KIND, ReleasePipeline, StageRelease,
};
pub use quantity::ReplicaCount;
pub use unit::{LOGICAL_UNIT_KIND, LogicalUnit, LogicalUnitSpec, LogicalUnitStatus, UnitPhase};
