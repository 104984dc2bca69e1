//! The planner (pure, no I/O): compares what an InPlaceSet asks for ([`Desired`]) with the pods it
//! has ([`ObservedPod`]) and returns the next steps as values ([`Action`]). It is level-triggered: the
//! same input gives the same plan whatever woke the controller, and every step it returns is safe to
//! repeat, so a restarted agent (or one working from a slightly stale cache) converges the same way.
//!
//! One pod moves through the lossless protocol of DESIGN section 7 like this, each arrow one
//! reconcile or more:
//!
//! ```text
//! serving ──CloseGate, MarkDrainStarted──► draining ──(finalizers gone, drainSeconds passed)──►
//!   UpdateInPlace ──► restarting ──(containers ready)──► OpenGate, ClearDrainMark ──► registering
//!   ──(finalizers back, minReadySeconds)──► available
//! draining ──Delete (recreate or scale-in)──► gone; Create ──► starting ──► OpenGate ──► ...
//! ```

mod assign;
mod blue_green;
mod steps;
#[cfg(test)]
mod tests;

use crate::desired::{Desired, RevisionKind};
use crate::observed::{ObservedPod, ProblemReason};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;
use std::time::Duration;

pub use assign::{Disposition, Move};

/// Everything the planner looks at.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    /// What the set asks for.
    pub desired: &'a Desired,
    /// Its pods, terminating ones included.
    pub pods: &'a [ObservedPod],
    /// The current time.
    pub now: Timestamp,
    /// How long containers may stay unready before the pod counts as failing.
    pub unready_deadline: SignedDuration,
}

/// The pod an action is about, as it was observed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PodRef {
    /// Its name.
    pub name: String,
    /// Its uid (a precondition on deletes).
    pub uid: String,
    /// Its resourceVersion when planned (a precondition on updates and deletes).
    pub resource_version: String,
}

impl PodRef {
    fn of(pod: &ObservedPod) -> Self {
        Self {
            name: pod.name.clone(),
            uid: pod.uid.clone(),
            resource_version: pod.resource_version.clone(),
        }
    }
}

/// Why a pod is drained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrainPurpose {
    /// It moves to another revision.
    Update,
    /// It goes away (scale-in).
    ScaleIn,
    /// Blue-green: it leaves traffic and stays as the way back.
    Retire,
}

/// One step. Steps about the same pod are applied in order; different pods are independent.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create a pod of a revision.
    Create {
        /// Which template.
        kind: RevisionKind,
    },
    /// Set the readiness gate condition False: balancers start deregistering the pod.
    CloseGate {
        /// The pod.
        pod: PodRef,
    },
    /// Record when the drain started (the executor stamps the time, after the gate is closed).
    MarkDrainStarted {
        /// The pod.
        pod: PodRef,
        /// Why.
        purpose: DrainPurpose,
    },
    /// The pod is drained and only images differ: patch them and the revision label.
    UpdateInPlace {
        /// The pod.
        pod: PodRef,
        /// The revision it moves to.
        revision: String,
        /// Container name to image.
        images: BTreeMap<String, String>,
    },
    /// The pod is drained: delete it (it is recreated from the right template, or not at all).
    Delete {
        /// The pod.
        pod: PodRef,
        /// Recreate (`Update`) or scale-in.
        purpose: DrainPurpose,
    },
    /// Containers are ready on the pod's revision: set the gate True so balancers register it.
    OpenGate {
        /// The pod.
        pod: PodRef,
    },
    /// The pod is back in traffic: drop the drain mark.
    ClearDrainMark {
        /// The pod.
        pod: PodRef,
    },
}

impl Action {
    /// The pod the action is about (`None` for creations).
    pub fn pod(&self) -> Option<&PodRef> {
        match self {
            Self::Create { .. } => None,
            Self::CloseGate { pod }
            | Self::MarkDrainStarted { pod, .. }
            | Self::UpdateInPlace { pod, .. }
            | Self::Delete { pod, .. }
            | Self::OpenGate { pod }
            | Self::ClearDrainMark { pod } => Some(pod),
        }
    }
}

/// Where the set stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Every pod runs its revision and is available; nothing to do.
    Complete,
    /// Pods are created or removed.
    Scaling,
    /// Pods move to their revision.
    Updating,
    /// Nothing left to move, waiting for pods to become available.
    Settling,
    /// Pods should move but `paused` holds them.
    Paused,
    /// Pods of the update revision fail; no more pods are taken down for it.
    Failed,
}

/// A failing pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The pod's name.
    pub pod: String,
    /// Its revision.
    pub revision: Option<String>,
    /// Why.
    pub reason: ProblemReason,
    /// The details.
    pub message: String,
}

/// The planner's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Steps to apply now.
    pub actions: Vec<Action>,
    /// Where the set stands.
    pub progress: Progress,
    /// Every failing pod, sorted by name.
    pub problems: Vec<Problem>,
    /// The failing pods of the update revision (they hold the release).
    pub release_failures: Vec<Problem>,
    /// When to look again if no event comes first (a drain or minReadySeconds running out).
    pub requeue_after: Option<Duration>,
}

/// Plans the next steps of one set.
pub fn plan(input: &PlanInput<'_>) -> Plan {
    let d = input.desired;
    let problems = find_problems(input);
    let release_failures: Vec<Problem> = problems
        .iter()
        .filter(|p| p.revision.as_deref() == Some(d.update.revision.as_str()))
        .cloned()
        .collect();
    let failed = !release_failures.is_empty();
    let assignment = match d.blue_green {
        Some(bg) => blue_green::assign(input, bg),
        None => assign::assign(input, failed),
    };
    let mut wake = Wake::default();
    let mut actions = Vec::new();
    for (pod, disposition) in &assignment.dispositions {
        steps::pod_steps(input, pod, *disposition, &mut actions, &mut wake);
    }
    for pod in input
        .pods
        .iter()
        .filter(|p| !p.terminating && p.failure.is_none())
    {
        if let Some(since) = pod.unready_since
            && input.now.duration_since(since) <= input.unready_deadline
        {
            wake.at(since
                .saturating_add(input.unready_deadline)
                .unwrap_or(input.now));
        }
    }
    for kind in &assignment.creations {
        actions.push(Action::Create { kind: *kind });
    }
    let progress = if failed {
        Progress::Failed
    } else if assignment.movers_waiting_for_pause > 0 {
        Progress::Paused
    } else if assignment.movers > 0 {
        Progress::Updating
    } else if assignment.victims > 0 || !assignment.creations.is_empty() {
        Progress::Scaling
    } else if assignment.unavailable_keepers > 0 {
        Progress::Settling
    } else {
        Progress::Complete
    };
    Plan {
        actions,
        progress,
        problems,
        release_failures,
        requeue_after: wake.after(input.now),
    }
}

/// Whether a pod counts as available: serving behind an open gate, ready for minReadySeconds, not
/// being drained, and registered with every declared balancer.
pub fn is_available(pod: &ObservedPod, desired: &Desired, now: Timestamp) -> bool {
    !pod.terminating
        && pod.drain_started.is_none()
        && pod.gate == crate::observed::Gate::Open
        && pod
            .ready_since
            .is_some_and(|since| now.duration_since(since) >= desired.min_ready)
        && desired
            .traffic
            .finalizers
            .iter()
            .all(|f| pod.finalizers.contains(f))
}

/// Every failing pod that is not being deleted: the failures pods report, and containers unready
/// past the deadline.
fn find_problems(input: &PlanInput<'_>) -> Vec<Problem> {
    let mut problems: Vec<Problem> = input
        .pods
        .iter()
        .filter(|p| !p.terminating)
        .filter_map(|p| {
            let (reason, message) = match (&p.failure, p.unready_since) {
                (Some(f), _) => (f.reason, f.message.clone()),
                (None, Some(since)) if input.now.duration_since(since) > input.unready_deadline => {
                    (
                        ProblemReason::NotReady,
                        format!(
                            "containers unready for {}s",
                            input.now.duration_since(since).as_secs()
                        ),
                    )
                }
                _ => return None,
            };
            Some(Problem {
                pod: p.name.clone(),
                revision: p.revision.clone(),
                reason,
                message,
            })
        })
        .collect();
    problems.sort_by(|a, b| a.pod.cmp(&b.pod));
    problems
}

/// The earliest time-driven change the planner waits for.
#[derive(Debug, Default)]
struct Wake(Option<Timestamp>);

impl Wake {
    fn at(&mut self, when: Timestamp) {
        self.0 = Some(self.0.map_or(when, |w| w.min(when)));
    }

    fn after(&self, now: Timestamp) -> Option<Duration> {
        self.0
            .map(|w| Duration::try_from(w.duration_since(now)).unwrap_or(Duration::ZERO))
    }
}
