//! Builds a pod's `status` from the simulated runtime (pure).

use serde_json::{Map, Value, json};

use super::runtime::{Container, ContainerState};

/// Conditions the kubelet and scheduler own; all others (readiness gates) belong to controllers.
const OWNED_CONDITIONS: &[&str] = &["PodScheduled", "Initialized", "ContainersReady", "Ready"];

/// What the kubelet knows about one pod.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PodFacts<'a> {
    /// The node it runs on, with that node's IP, or why it could not be scheduled.
    pub(crate) placement: Placement<'a>,
    /// Whether that node is Ready.
    pub(crate) node_ready: bool,
    /// Its containers.
    pub(crate) containers: &'a [Container],
    /// Its IP.
    pub(crate) pod_ip: &'a str,
    /// When it was scheduled (`status.startTime`).
    pub(crate) start_time: &'a str,
    /// Whether it is being deleted.
    pub(crate) deleting: bool,
    /// Now, as `metav1.Time`.
    pub(crate) now: &'a str,
}

/// Where the pod is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Placement<'a> {
    /// On a node.
    Node {
        /// The node's IP.
        host_ip: &'a str,
    },
    /// Nowhere, for this reason.
    Unschedulable(&'a str),
}

/// The pod's `status`, keeping conditions owned by others and transition times of unchanged ones.
pub(crate) fn build_status(pod: &Value, f: &PodFacts<'_>) -> Value {
    let existing: Vec<Value> = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let cond = |t: &str, ok: bool, reason: Option<&str>, message: Option<String>| {
        let status = if ok { "True" } else { "False" };
        let since = existing
            .iter()
            .find(|c| c["type"] == t && c["status"] == status)
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(f.now));
        let mut c = json!({"type": t, "status": status, "lastProbeTime": null, "lastTransitionTime": since});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        if let Some(m) = message {
            c["message"] = json!(m);
        }
        c
    };
    let mut conditions = Vec::new();
    let host_ip = match &f.placement {
        Placement::Unschedulable(why) => {
            conditions.push(cond(
                "PodScheduled",
                false,
                Some("Unschedulable"),
                Some(why.to_string()),
            ));
            conditions.extend(others(&existing));
            return json!({"phase": "Pending", "conditions": conditions, "qosClass": "BestEffort"});
        }
        Placement::Node { host_ip } => *host_ip,
    };
    let unready: Vec<&str> = f
        .containers
        .iter()
        .filter(|c| !c.ready() || !f.node_ready || f.deleting)
        .map(|c| c.name.as_str())
        .collect();
    let containers_ready = unready.is_empty();
    let gates: Vec<String> = pod
        .pointer("/spec/readinessGates")
        .and_then(Value::as_array)
        .map(|g| {
            g.iter()
                .filter_map(|g| g.get("conditionType").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let failing_gate = gates.iter().find(|g| {
        !existing
            .iter()
            .any(|c| c["type"] == g.as_str() && c["status"] == "True")
    });
    let unready_message = format!("containers with unready status: [{}]", unready.join(" "));
    conditions.push(cond("PodReadyToStartContainers", true, None, None));
    conditions.push(cond("Initialized", true, None, None));
    conditions.push(match (containers_ready, failing_gate) {
        (false, _) => cond(
            "Ready",
            false,
            Some("ContainersNotReady"),
            Some(unready_message.clone()),
        ),
        (true, Some(g)) => {
            let state = if existing.iter().any(|c| c["type"] == g.as_str()) {
                "is false"
            } else {
                "does not exist"
            };
            cond(
                "Ready",
                false,
                Some("ReadinessGatesNotReady"),
                Some(format!(
                    "corresponding condition of pod readiness gate \"{g}\" {state}."
                )),
            )
        }
        (true, None) => cond("Ready", true, None, None),
    });
    conditions.push(if containers_ready {
        cond("ContainersReady", true, None, None)
    } else {
        cond(
            "ContainersReady",
            false,
            Some("ContainersNotReady"),
            Some(unready_message),
        )
    });
    conditions.push(cond("PodScheduled", true, None, None));
    conditions.extend(others(&existing));
    let started = f.containers.iter().any(|c| c.ever_started || c.running());
    let phase = if started { "Running" } else { "Pending" };
    let statuses: Vec<Value> = f
        .containers
        .iter()
        .map(|c| container_status(c, f.node_ready && !f.deleting))
        .collect();
    json!({
        "phase": phase,
        "conditions": conditions,
        "hostIP": host_ip,
        "hostIPs": [{"ip": host_ip}],
        "podIP": f.pod_ip,
        "podIPs": [{"ip": f.pod_ip}],
        "startTime": f.start_time,
        "containerStatuses": statuses,
        "qosClass": "BestEffort",
    })
}

fn others(existing: &[Value]) -> Vec<Value> {
    existing
        .iter()
        .filter(|c| {
            c.get("type")
                .and_then(Value::as_str)
                .is_none_or(|t| !OWNED_CONDITIONS.contains(&t) && t != "PodReadyToStartContainers")
        })
        .cloned()
        .collect()
}

fn container_status(c: &Container, may_be_ready: bool) -> Value {
    let waiting =
        |reason: &str, message: &str| json!({"waiting": {"reason": reason, "message": message}});
    let running = |since: &str| json!({"running": {"startedAt": since}});
    let state = match &c.state {
        ContainerState::Creating { .. } => waiting("ContainerCreating", ""),
        ContainerState::Starting { started_at, .. }
        | ContainerState::Running { started_at }
        | ContainerState::CrashRunning { started_at, .. } => running(started_at),
        ContainerState::CrashBackOff { .. } => waiting(
            "CrashLoopBackOff",
            &format!(
                "back-off restarting failed container {} (simulated)",
                c.name
            ),
        ),
        ContainerState::PullFailing { backoff, .. } => {
            if *backoff {
                waiting(
                    "ImagePullBackOff",
                    &format!("Back-off pulling image \"{}\"", c.image),
                )
            } else {
                waiting(
                    "ErrImagePull",
                    &format!(
                        "failed to pull image \"{}\": not found (simulated)",
                        c.image
                    ),
                )
            }
        }
    };
    let mut s = Map::new();
    s.insert("name".into(), json!(c.name));
    s.insert("image".into(), json!(c.image));
    s.insert(
        "imageID".into(),
        json!(if c.ever_started {
            format!("cafe-sim://{}", c.image)
        } else {
            String::new()
        }),
    );
    s.insert(
        "containerID".into(),
        json!(if c.running() {
            format!("cafe-sim://{}-{}", c.name, c.restart_count)
        } else {
            String::new()
        }),
    );
    s.insert("ready".into(), json!(c.ready() && may_be_ready));
    s.insert("started".into(), json!(c.running()));
    s.insert("restartCount".into(), json!(c.restart_count));
    s.insert("state".into(), state);
    s.insert(
        "lastState".into(),
        if c.restart_count > 0 {
            json!({"terminated": {"exitCode": if c.image.contains(super::runtime::CRASHLOOP_IMAGE_MARKER) { 1 } else { 0 },
                                  "reason": if c.image.contains(super::runtime::CRASHLOOP_IMAGE_MARKER) { "Error" } else { "Completed" }}})
        } else {
            json!({})
        },
    );
    Value::Object(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubelet::runtime::Timing;
    use std::time::{Duration, Instant};

    const T: Timing = Timing {
        start_delay: Duration::ZERO,
        crash_interval: Duration::from_millis(10),
    };

    fn facts<'a>(containers: &'a [Container]) -> PodFacts<'a> {
        PodFacts {
            placement: Placement::Node {
                host_ip: "10.0.0.1",
            },
            node_ready: true,
            containers,
            pod_ip: "10.244.0.2",
            start_time: "2024-01-01T00:00:00Z",
            deleting: false,
            now: "2024-01-01T00:00:01Z",
        }
    }

    fn condition<'a>(status: &'a Value, t: &str) -> &'a Value {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == t)
            .unwrap()
    }

    #[test]
    fn ready_needs_containers_and_every_gate() {
        let now = Instant::now();
        let mut c = Container::create("app", "nginx:1", now, T);
        c.advance(now, T);
        let containers = [c];
        let gated = json!({"spec": {"readinessGates": [{"conditionType": "cafe.io/traffic-ready"}]},
                            "status": {"conditions": []}});
        let s = build_status(&gated, &facts(&containers));
        assert_eq!(condition(&s, "ContainersReady")["status"], "True");
        assert_eq!(condition(&s, "Ready")["status"], "False");
        assert_eq!(condition(&s, "Ready")["reason"], "ReadinessGatesNotReady");
        let open = json!({"spec": {"readinessGates": [{"conditionType": "cafe.io/traffic-ready"}]},
                          "status": {"conditions": [{"type": "cafe.io/traffic-ready", "status": "True"}]}});
        let s = build_status(&open, &facts(&containers));
        assert_eq!(condition(&s, "Ready")["status"], "True");
        // The gate condition written by a controller is kept.
        assert_eq!(condition(&s, "cafe.io/traffic-ready")["status"], "True");
        let mut f = facts(&containers);
        f.node_ready = false;
        let s = build_status(&open, &f);
        assert_eq!(condition(&s, "Ready")["status"], "False");
        assert_eq!(s["containerStatuses"][0]["ready"], false);
    }

    #[test]
    fn unschedulable_pods_stay_pending() {
        let s = build_status(
            &json!({}),
            &PodFacts {
                placement: Placement::Unschedulable("0/3 nodes are available"),
                ..facts(&[])
            },
        );
        assert_eq!(s["phase"], "Pending");
        assert_eq!(condition(&s, "PodScheduled")["reason"], "Unschedulable");
    }
}
