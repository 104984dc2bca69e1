//! The InPlaceSet status, computed from the observed pods and the plan (pure).

use crate::crd::{Condition, InPlaceSetStatus, PodProblem};
use crate::desired::Desired;
use crate::observed::{Gate, ObservedPod};
use crate::plan::{Plan, Progress};
use k8s_openapi::jiff::Timestamp;

/// Condition types.
pub const PROGRESSING: &str = "Progressing";
/// Enough pods available (at least `replicas - maxUnavailable`).
pub const AVAILABLE: &str = "Available";
/// Pods of the update revision fail.
pub const RELEASE_FAILED: &str = "ReleaseFailed";

/// Everything the status is made of.
#[derive(Debug, Clone, Copy)]
pub struct StatusInput<'a> {
    /// What the set asks for.
    pub desired: &'a Desired,
    /// Its pods.
    pub pods: &'a [ObservedPod],
    /// The plan made from them.
    pub plan: &'a Plan,
    /// The set's `metadata.generation`.
    pub generation: i64,
    /// The status written last, for currentRevision and transition times.
    pub previous: Option<&'a InPlaceSetStatus>,
    /// The current time.
    pub now: Timestamp,
}

/// Computes the status.
pub fn compute(input: &StatusInput<'_>) -> InPlaceSetStatus {
    let d = input.desired;
    let active: Vec<&ObservedPod> = input.pods.iter().filter(|p| !p.terminating).collect();
    let count = |f: &dyn Fn(&ObservedPod) -> bool| {
        i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let updated = |p: &ObservedPod| p.revision.as_deref() == Some(d.update.revision.as_str());
    let ready = |p: &ObservedPod| p.ready_since.is_some();
    let available = |p: &ObservedPod| {
        p.ready_since
            .is_some_and(|since| input.now.duration_since(since) >= d.min_ready)
    };
    let replicas = count(&|_| true);
    let available_replicas = count(&available);
    let updated_replicas = count(&updated);
    let in_traffic = |p: &ObservedPod| in_traffic(p, d);
    let serving_replicas = count(&in_traffic);
    let updated_serving_replicas = count(&|p| updated(p) && in_traffic(p));
    let standby = |p: &ObservedPod| p.retired && p.gate != Gate::Open;
    let wanted = i32::try_from(d.replicas).unwrap_or(i32::MAX);
    let settled = input.plan.progress == Progress::Complete
        && if d.blue_green.is_some() {
            // Pods kept as the way back do not make the set unsettled.
            updated_serving_replicas == wanted && serving_replicas == wanted
        } else {
            updated_replicas == replicas && replicas == wanted
        };
    let standby_until = d.blue_green.and_then(|bg| {
        active
            .iter()
            .filter(|p| standby(p))
            .filter_map(|p| p.drain_started)
            .max()
            .and_then(|t| {
                t.saturating_add(bg.scale_down_delay.max(d.traffic.drain))
                    .ok()
            })
            .map(rfc3339_seconds)
    });
    let current_revision = if settled {
        Some(d.update.revision.clone())
    } else {
        input
            .previous
            .and_then(|s| s.current_revision.clone())
            .or_else(|| {
                Some(
                    d.template(crate::desired::RevisionKind::Stable)
                        .revision
                        .clone(),
                )
            })
    };
    let enough =
        i64::from(available_replicas) >= i64::from(d.replicas) - i64::from(d.max_unavailable);
    let (progressing, progress_reason, progress_message) = match input.plan.progress {
        Progress::Complete => (
            true,
            "RolloutComplete",
            "every pod runs its revision and is available".to_string(),
        ),
        Progress::Scaling => (
            true,
            "Scaling",
            format!("{replicas} of {} pods", d.replicas),
        ),
        Progress::Updating => (
            true,
            "Updating",
            format!(
                "{updated_replicas} of {} pods on the update revision",
                d.update_target
            ),
        ),
        Progress::Settling => (
            true,
            "WaitingForAvailability",
            format!("{available_replicas} of {} pods available", d.replicas),
        ),
        Progress::Paused => (false, "Paused", "updates are paused".to_string()),
        Progress::Failed => (
            false,
            "ReleaseFailed",
            "pods of the update revision fail".to_string(),
        ),
    };
    let failures = &input.plan.release_failures;
    let release_failed = match failures.first() {
        Some(first) => (
            true,
            first.reason.as_str(),
            failures
                .iter()
                .map(|f| format!("pod {}: {}: {}", f.pod, f.reason.as_str(), f.message))
                .collect::<Vec<_>>()
                .join("; "),
        ),
        None => (false, "NoFailures", String::new()),
    };
    let previous_conditions = input
        .previous
        .map(|s| s.conditions.as_slice())
        .unwrap_or_default();
    let condition = |type_: &str, ok: bool, reason: &str, message: String| {
        let status = if ok { "True" } else { "False" };
        let since = previous_conditions
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| rfc3339_seconds(input.now));
        Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: Some(since),
        }
    };
    InPlaceSetStatus {
        observed_generation: input.generation,
        replicas,
        ready_replicas: count(&ready),
        available_replicas,
        updated_replicas,
        updated_ready_replicas: count(&|p| updated(p) && ready(p)),
        current_revision,
        update_revision: Some(d.update.revision.clone()),
        conditions: vec![
            condition(PROGRESSING, progressing, progress_reason, progress_message),
            condition(
                AVAILABLE,
                enough,
                if enough {
                    "MinimumPodsAvailable"
                } else {
                    "TooFewPodsAvailable"
                },
                format!("{available_replicas} of {} pods available", d.replicas),
            ),
            condition(
                RELEASE_FAILED,
                release_failed.0,
                release_failed.1,
                release_failed.2,
            ),
        ],
        problems: input
            .plan
            .problems
            .iter()
            .map(|p| PodProblem {
                pod: p.pod.clone(),
                reason: p.reason.as_str().to_string(),
                message: p.message.clone(),
            })
            .collect(),
        serving_replicas,
        updated_serving_replicas,
        preview_ready_replicas: count(&|p| updated(p) && p.containers_ready && !in_traffic(p)),
        standby_replicas: count(&standby),
        standby_until,
    }
}

/// Whether balancers may send the pod requests: behind an open gate and not drained, or still
/// registered (a traffic finalizer is on it).
pub fn in_traffic(pod: &ObservedPod, desired: &Desired) -> bool {
    !pod.terminating
        && ((pod.gate == Gate::Open && pod.drain_started.is_none() && pod.containers_ready)
            || desired
                .traffic
                .finalizers
                .iter()
                .any(|f| pod.finalizers.contains(f)))
}

/// `metav1.Time` format: RFC 3339 in whole seconds.
pub fn rfc3339_seconds(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::InPlaceSetSpec;
    use crate::observed::{Gate, PodFailure, ProblemReason};
    use crate::plan::{PlanInput, plan};
    use k8s_openapi::jiff::SignedDuration;
    use serde_json::json;

    /// Plans, then computes the status, at `secs`.
    fn status_of(
        d: &Desired,
        pods: &[ObservedPod],
        generation: i64,
        previous: Option<&InPlaceSetStatus>,
        secs: i64,
    ) -> InPlaceSetStatus {
        let now = Timestamp::from_second(secs).unwrap();
        let plan = plan(&PlanInput {
            desired: d,
            pods,
            now,
            unready_deadline: SignedDuration::from_secs(60),
        });
        compute(&StatusInput {
            desired: d,
            pods,
            plan: &plan,
            generation,
            previous,
            now,
        })
    }

    fn pod(name: &str, revision: &str, ready: bool) -> ObservedPod {
        ObservedPod {
            name: name.into(),
            uid: name.into(),
            resource_version: "1".into(),
            revision: Some(revision.into()),
            shape: None,
            created: None,
            terminating: false,
            gate: Gate::Open,
            drain_started: None,
            retired: false,
            containers_ready: ready,
            ready_since: ready.then(|| Timestamp::from_second(0).unwrap()),
            unready_since: None,
            finalizers: vec![],
            failure: None,
        }
    }

    #[test]
    fn counts_conditions_and_failures() {
        let d = Desired::from_spec(&InPlaceSetSpec {
            replicas: 3,
            template: json!({"spec": {"containers": [{"name": "app", "image": "web:crashloop"}]}}),
            update_revision: Some("r2".into()),
            stable_revision: Some("r1".into()),
            stable_template: Some(
                json!({"spec": {"containers": [{"name": "app", "image": "web:1"}]}}),
            ),
            ..InPlaceSetSpec::default()
        })
        .unwrap();
        let mut crashing = pod("a", "r2", false);
        crashing.failure = Some(PodFailure {
            reason: ProblemReason::CrashLoopBackOff,
            message: "back-off".into(),
        });
        let pods = vec![crashing, pod("b", "r1", true), pod("c", "r1", true)];
        let s = status_of(&d, &pods, 4, None, 100);
        assert_eq!(
            (
                s.observed_generation,
                s.replicas,
                s.ready_replicas,
                s.available_replicas
            ),
            (4, 3, 2, 2)
        );
        assert_eq!((s.updated_replicas, s.updated_ready_replicas), (1, 0));
        assert_eq!(s.current_revision.as_deref(), Some("r1"));
        assert_eq!(s.update_revision.as_deref(), Some("r2"));
        let failed = s
            .conditions
            .iter()
            .find(|c| c.type_ == RELEASE_FAILED)
            .unwrap();
        assert_eq!(
            (failed.status.as_str(), failed.reason.as_str()),
            ("True", "CrashLoopBackOff")
        );
        assert!(failed.message.contains("pod a"), "{}", failed.message);
        assert_eq!(
            s.problems,
            [PodProblem {
                pod: "a".into(),
                reason: "CrashLoopBackOff".into(),
                message: "back-off".into()
            }]
        );
        let progressing = s
            .conditions
            .iter()
            .find(|c| c.type_ == PROGRESSING)
            .unwrap();
        assert_eq!(progressing.status, "False");
        // Transition times survive an unchanged status.
        let again = status_of(&d, &pods, 4, Some(&s), 200);
        assert_eq!(again, s);
    }

    #[test]
    fn settles_on_the_update_revision() {
        let d = Desired::from_spec(&InPlaceSetSpec {
            replicas: 1,
            template: json!({"spec": {"containers": [{"name": "app", "image": "web:2"}]}}),
            update_revision: Some("r2".into()),
            ..InPlaceSetSpec::default()
        })
        .unwrap();
        let pods = vec![pod("a", "r2", true)];
        let s = status_of(&d, &pods, 1, None, 100);
        assert_eq!(s.current_revision.as_deref(), Some("r2"));
        assert!(
            s.conditions
                .iter()
                .all(|c| c.type_ == RELEASE_FAILED || c.status == "True")
        );
    }
}
