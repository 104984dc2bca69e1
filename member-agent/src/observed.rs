//! The observed state of one pod, read once from the API object (pure).
//!
//! Everything the planner needs about a pod lives in the pod itself (labels, annotations, conditions,
//! finalizers), never in the agent's memory, so that a restarted agent picks up where it stopped.

use crate::names::{
    DRAIN_STARTED_ANNOTATION, RETIRED_ANNOTATION, REVISION_LABEL, SHAPE_ANNOTATION,
};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;

/// The state of the agent's readiness gate condition on a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// No condition yet: a new pod the agent has not let into traffic.
    Absent,
    /// Open: the pod may receive traffic once its containers are ready.
    Open,
    /// Closed: the pod is (being) taken out of traffic.
    Closed,
}

/// Why a pod is failing, as the status `problems` and the ReleaseFailed condition name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ProblemReason {
    /// A container crashes repeatedly.
    CrashLoopBackOff,
    /// An image cannot be pulled (back-off).
    ImagePullBackOff,
    /// An image cannot be pulled.
    ErrImagePull,
    /// No node can take the pod.
    Unschedulable,
    /// Containers unready for longer than the deadline.
    NotReady,
}

impl ProblemReason {
    /// The CamelCase reason.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CrashLoopBackOff => "CrashLoopBackOff",
            Self::ImagePullBackOff => "ImagePullBackOff",
            Self::ErrImagePull => "ErrImagePull",
            Self::Unschedulable => "Unschedulable",
            Self::NotReady => "NotReady",
        }
    }
}

/// A failure the pod reports by itself (deadline-based ones are decided by the planner).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFailure {
    /// Why.
    pub reason: ProblemReason,
    /// The kubelet's or scheduler's message.
    pub message: String,
}

/// What the controller knows about one of its pods.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedPod {
    /// The pod's name.
    pub name: String,
    /// Its uid.
    pub uid: String,
    /// Its resourceVersion, used as a precondition on writes that depend on what was observed.
    pub resource_version: String,
    /// The `cafe.io/revision` label.
    pub revision: Option<String>,
    /// The `cafe.io/template-shape` annotation.
    pub shape: Option<String>,
    /// When it was created.
    pub created: Option<Timestamp>,
    /// Deletion has begun.
    pub terminating: bool,
    /// The agent's readiness gate.
    pub gate: Gate,
    /// When the agent took it out of traffic (`cafe.io/drain-started`).
    pub drain_started: Option<Timestamp>,
    /// A blue-green switch took it out of traffic and keeps it as the way back (`cafe.io/retired`).
    pub retired: bool,
    /// Every container runs the image its spec names and is ready.
    pub containers_ready: bool,
    /// Since when the pod has been Ready (the Ready condition, gates included), if it is.
    pub ready_since: Option<Timestamp>,
    /// Since when its containers have been unready (ContainersReady False, else creation), if they are.
    pub unready_since: Option<Timestamp>,
    /// Its finalizers.
    pub finalizers: Vec<String>,
    /// A failure it reports.
    pub failure: Option<PodFailure>,
}

impl ObservedPod {
    /// Reads a pod; `gate` is the readiness gate condition type the set uses.
    pub fn from_pod(pod: &Pod, gate: &str) -> Self {
        let meta = &pod.metadata;
        let label = |k: &str| meta.labels.as_ref().and_then(|l| l.get(k)).cloned();
        let annotation = |k: &str| meta.annotations.as_ref().and_then(|a| a.get(k)).cloned();
        let status = pod.status.as_ref();
        let conditions = status
            .and_then(|s| s.conditions.as_deref())
            .unwrap_or_default();
        let condition = |t: &str| conditions.iter().find(|c| c.type_ == t);
        let gate = match condition(gate).map(|c| c.status.as_str()) {
            Some("True") => Gate::Open,
            Some(_) => Gate::Closed,
            None => Gate::Absent,
        };
        let since_if_true = |t: &str| {
            condition(t).filter(|c| c.status == "True").map(|c| {
                c.last_transition_time
                    .as_ref()
                    .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
            })
        };
        let created = meta.creation_timestamp.as_ref().map(|t| t.0);
        let containers_ready = containers_ready(pod);
        let unready_since = if containers_ready {
            None
        } else {
            condition("ContainersReady")
                .filter(|c| c.status != "True")
                .and_then(|c| c.last_transition_time.as_ref().map(|t| t.0))
                .or(created)
                .or(Some(Timestamp::UNIX_EPOCH))
        };
        let unschedulable = condition("PodScheduled")
            .filter(|c| c.status == "False" && c.reason.as_deref() == Some("Unschedulable"))
            .map(|c| PodFailure {
                reason: ProblemReason::Unschedulable,
                message: c.message.clone().unwrap_or_default(),
            });
        Self {
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            revision: label(REVISION_LABEL),
            shape: annotation(SHAPE_ANNOTATION),
            created,
            terminating: meta.deletion_timestamp.is_some(),
            gate,
            drain_started: annotation(DRAIN_STARTED_ANNOTATION).and_then(|t| t.parse().ok()),
            retired: annotation(RETIRED_ANNOTATION).is_some_and(|v| v == "true"),
            containers_ready,
            ready_since: since_if_true("Ready"),
            unready_since,
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            failure: container_failure(pod).or(unschedulable),
        }
    }
}

/// Whether every container of the spec is ready and runs the image the spec names (right after an
/// in-place image patch the status still shows the old image as ready).
fn containers_ready(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return false;
    };
    let status = pod.status.as_ref();
    if status.and_then(|s| s.phase.as_deref()) != Some("Running") {
        return false;
    }
    let statuses = status
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default();
    !spec.containers.is_empty()
        && spec.containers.iter().all(|c| {
            statuses.iter().any(|s| {
                s.name == c.name
                    && s.ready
                    && c.image
                        .as_deref()
                        .is_some_and(|image| same_image(image, &s.image))
            })
        })
}

/// Compares a spec image with the one a container status reports, which runtimes may normalise
/// (`nginx:1` is reported as `docker.io/library/nginx:1`; no tag means `latest`).
pub fn same_image(spec: &str, status: &str) -> bool {
    fn normalise(image: &str) -> String {
        let trimmed = image
            .strip_prefix("docker.io/library/")
            .or_else(|| image.strip_prefix("index.docker.io/library/"))
            .or_else(|| image.strip_prefix("docker.io/"))
            .unwrap_or(image);
        let last = trimmed.rsplit('/').next().unwrap_or(trimmed);
        if last.contains(':') || last.contains('@') {
            trimmed.to_string()
        } else {
            format!("{trimmed}:latest")
        }
    }
    spec == status || normalise(spec) == normalise(status)
}

fn container_failure(pod: &Pod) -> Option<PodFailure> {
    let status = pod.status.as_ref()?;
    let all = status
        .init_container_statuses
        .iter()
        .chain(status.container_statuses.iter())
        .flatten();
    all.filter_map(|s: &ContainerStatus| {
        let waiting = s.state.as_ref()?.waiting.as_ref()?;
        let reason = match waiting.reason.as_deref()? {
            "CrashLoopBackOff" => ProblemReason::CrashLoopBackOff,
            "ImagePullBackOff" => ProblemReason::ImagePullBackOff,
            "ErrImagePull" => ProblemReason::ErrImagePull,
            _ => return None,
        };
        Some(PodFailure {
            reason,
            message: format!(
                "container {}: {}",
                s.name,
                waiting.message.as_deref().unwrap_or(reason.as_str())
            ),
        })
    })
    .next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(value: serde_json::Value) -> Pod {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn reads_gate_drain_and_readiness() {
        let p = pod(json!({
            "metadata": {"name": "web-abc", "uid": "u1", "resourceVersion": "7",
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "labels": {"cafe.io/revision": "r1"},
                "annotations": {"cafe.io/template-shape": "s", "cafe.io/drain-started": "2024-01-01T00:01:00.250Z"},
                "finalizers": ["lb"]},
            "spec": {"containers": [{"name": "app", "image": "web:1"}]},
            "status": {"phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:30Z"},
                    {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2024-01-01T00:00:30Z"},
                    {"type": "g", "status": "False"}],
                "containerStatuses": [{"name": "app", "image": "docker.io/library/web:1", "imageID": "", "ready": true, "restartCount": 0}]}
        }));
        let o = ObservedPod::from_pod(&p, "g");
        assert_eq!(o.gate, Gate::Closed);
        assert_eq!(o.revision.as_deref(), Some("r1"));
        assert_eq!(
            o.drain_started.unwrap().to_string(),
            "2024-01-01T00:01:00.25Z"
        );
        assert!(o.containers_ready);
        assert!(o.unready_since.is_none());
        assert_eq!(o.ready_since.unwrap().to_string(), "2024-01-01T00:00:30Z");
        assert_eq!(ObservedPod::from_pod(&p, "other").gate, Gate::Absent);
    }

    #[test]
    fn stale_image_status_is_not_ready_and_failures_are_read() {
        let p = pod(json!({
            "metadata": {"name": "web-abc", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"containers": [{"name": "app", "image": "web:2"}]},
            "status": {"phase": "Running",
                "containerStatuses": [{"name": "app", "image": "web:1", "imageID": "", "ready": true, "restartCount": 0,
                    "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}}]}
        }));
        let o = ObservedPod::from_pod(&p, "g");
        assert!(!o.containers_ready);
        assert_eq!(o.unready_since.unwrap().to_string(), "2024-01-01T00:00:00Z");
        let f = o.failure.unwrap();
        assert_eq!(f.reason, ProblemReason::CrashLoopBackOff);
        assert_eq!(f.message, "container app: back-off");
    }

    #[test]
    fn unschedulable_pods_are_failures() {
        let p = pod(json!({
            "metadata": {"name": "web-abc"},
            "spec": {"containers": [{"name": "app", "image": "web:2"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]}
        }));
        let f = ObservedPod::from_pod(&p, "g").failure.unwrap();
        assert_eq!(f.reason, ProblemReason::Unschedulable);
        assert_eq!(f.message, "0/3 nodes");
    }

    #[test]
    fn images_compare_normalised() {
        assert!(same_image("nginx", "docker.io/library/nginx:latest"));
        assert!(same_image("nginx:1.25", "docker.io/library/nginx:1.25"));
        assert!(same_image("example/app:2", "docker.io/example/app:2"));
        assert!(!same_image("nginx:1.25", "nginx:1.26"));
        assert!(same_image("registry:5000/app", "registry:5000/app:latest"));
    }
}
