//! The steps that bring one pod closer to its disposition.

use super::assign::{Disposition, Move};
use super::{Action, DrainPurpose, PlanInput, PodRef, Wake, is_available};
use crate::observed::{Gate, ObservedPod};

/// Appends the pod's next steps and the time it waits for, if any.
pub(super) fn pod_steps(
    input: &PlanInput<'_>,
    pod: &ObservedPod,
    disposition: Disposition,
    actions: &mut Vec<Action>,
    wake: &mut Wake,
) {
    let d = input.desired;
    let at = PodRef::of(pod);
    match disposition {
        Disposition::Keep => {
            if pod.gate != Gate::Open {
                // New, restarted, or a drain that is no longer wanted: back into traffic once the
                // containers are ready on the pod's revision.
                if pod.containers_ready {
                    actions.push(Action::OpenGate { pod: at.clone() });
                    if pod.drain_started.is_some() {
                        actions.push(Action::ClearDrainMark { pod: at });
                    }
                }
            } else if pod.drain_started.is_some() {
                actions.push(Action::ClearDrainMark { pod: at });
            } else if let Some(since) = pod.ready_since
                && !is_available(pod, d, input.now)
                && input.now.duration_since(since) < d.min_ready
            {
                wake.at(since.saturating_add(d.min_ready).unwrap_or(input.now));
            }
        }
        Disposition::Preview => {}
        Disposition::Retire => {
            let Some(started) = pod
                .drain_started
                .filter(|_| pod.gate == Gate::Closed && pod.retired)
            else {
                if pod.gate != Gate::Closed {
                    actions.push(Action::CloseGate { pod: at.clone() });
                }
                actions.push(Action::MarkDrainStarted {
                    pod: at,
                    purpose: DrainPurpose::Retire,
                });
                return;
            };
            let keep = d.blue_green.map_or(d.traffic.drain, |bg| {
                bg.scale_down_delay.max(d.traffic.drain)
            });
            if input.now.duration_since(started) < keep {
                wake.at(started.saturating_add(keep).unwrap_or(input.now));
                return;
            }
            let deregistered = deregistered(pod, d);
            if deregistered {
                actions.push(Action::Delete {
                    pod: at,
                    purpose: DrainPurpose::ScaleIn,
                });
            }
        }
        Disposition::Move(_) | Disposition::Remove => {
            let purpose = match disposition {
                Disposition::Move(_) => DrainPurpose::Update,
                _ => DrainPurpose::ScaleIn,
            };
            let Some(started) = pod.drain_started.filter(|_| pod.gate == Gate::Closed) else {
                // Close the gate first, then stamp the mark: a mark is never older than the closed
                // gate, so the drain never looks longer than it was.
                if pod.gate != Gate::Closed {
                    actions.push(Action::CloseGate { pod: at.clone() });
                }
                actions.push(Action::MarkDrainStarted { pod: at, purpose });
                return;
            };
            let elapsed = input.now.duration_since(started);
            if elapsed < d.traffic.drain {
                wake.at(started.saturating_add(d.traffic.drain).unwrap_or(input.now));
                return;
            }
            let deregistered = deregistered(pod, d);
            if !deregistered {
                // The balancers remove their finalizers; the pod event wakes us.
                return;
            }
            actions.push(match disposition {
                Disposition::Move(Move { to, in_place: true }) => {
                    let template = d.template(to);
                    Action::UpdateInPlace {
                        pod: at,
                        revision: template.revision.clone(),
                        images: template.images.clone(),
                    }
                }
                _ => Action::Delete { pod: at, purpose },
            });
        }
    }
}

/// Every balancer has let go of the pod: none of the set's traffic finalizers is on it.
fn deregistered(pod: &ObservedPod, d: &crate::desired::Desired) -> bool {
    d.traffic
        .finalizers
        .iter()
        .all(|f| !pod.finalizers.contains(f))
}
