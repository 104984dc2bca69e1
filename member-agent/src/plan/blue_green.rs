//! The assignment of a blue-green set: a full set of the serving template in traffic, a full
//! preview of the update template out of traffic, and every other pod retired (drained, then kept
//! as the way back until `scaleDownDelaySeconds` have passed) once the serving template alone keeps
//! `replicas - maxUnavailable` pods available.

use super::assign::{Assignment, Disposition};
use super::{PlanInput, is_available};
use crate::desired::{BlueGreen, RevisionKind};
use crate::observed::{Gate, ObservedPod};

/// Decides every pod's fate in blue-green mode.
pub(super) fn assign<'a>(input: &PlanInput<'a>, bg: BlueGreen) -> Assignment<'a> {
    let d = input.desired;
    let replicas = d.replicas as usize;
    let available = |p: &ObservedPod| is_available(p, d, input.now);
    let serving_kind = bg.serving();
    let serving_revision = d.template(serving_kind).revision.as_str();
    let preview_revision = (!bg.switched && bg.preview && d.update.revision != serving_revision)
        .then_some(d.update.revision.as_str());
    let on = |p: &ObservedPod, revision: &str| p.revision.as_deref() == Some(revision);

    let active: Vec<&ObservedPod> = input.pods.iter().filter(|p| !p.terminating).collect();
    let (mut serving, rest): (Vec<&ObservedPod>, Vec<&ObservedPod>) =
        active.into_iter().partition(|p| on(p, serving_revision));
    let (mut preview, others): (Vec<&ObservedPod>, Vec<&ObservedPod>) = rest
        .into_iter()
        .partition(|p| preview_revision.is_some_and(|r| on(p, r)));
    // The best pods stay: available ones, then ready containers, then by name.
    let rank = |p: &&ObservedPod| (!available(p), !p.containers_ready, p.name.clone());
    serving.sort_by_key(rank);
    preview.sort_by_key(rank);
    let mut victims: Vec<&ObservedPod> = Vec::new();
    victims.extend(serving.drain(replicas.min(serving.len())..));
    let wanted_preview = if preview_revision.is_some() {
        replicas
    } else {
        0
    };
    victims.extend(preview.drain(wanted_preview.min(preview.len())..));

    // The serving template alone keeps the floor: pods of other revisions may leave traffic.
    let floor = replicas.saturating_sub(d.max_unavailable as usize);
    let serving_available = serving.iter().filter(|p| available(p)).count();
    let floor_met = serving_available >= floor;

    let mut dispositions = Vec::new();
    let mut movers = 0;
    let mut unavailable_keepers = 0;
    for p in &serving {
        unavailable_keepers += usize::from(!available(p));
        dispositions.push((*p, Disposition::Keep));
    }
    for p in &preview {
        if p.gate == Gate::Open && !p.retired {
            // A pod of the preview revision in traffic (it served before): out, as a retired one.
            movers += 1;
            let leave = if floor_met {
                Disposition::Retire
            } else {
                Disposition::Keep
            };
            dispositions.push((*p, leave));
        } else {
            unavailable_keepers += usize::from(!p.containers_ready);
            dispositions.push((*p, Disposition::Preview));
        }
    }
    for p in others {
        if replicas == 0 {
            // Nothing serves here any more: there is no way back to keep.
            victims.push(p);
        } else if p.retired && p.gate != Gate::Open {
            dispositions.push((p, Disposition::Retire));
        } else if p.gate == Gate::Open {
            movers += 1;
            let leave = if floor_met {
                Disposition::Retire
            } else {
                Disposition::Keep
            };
            dispositions.push((p, leave));
        } else {
            // Never in traffic, or drained for another reason: it goes.
            victims.push(p);
        }
    }
    let victims_total = victims.len();
    // Victims are surplus: they may all go once the serving pods that stay keep the floor, and
    // until then as many available ones stay as the floor lacks (with 0 replicas it lacks none).
    // A pod out of traffic is never kept for it, or its gate would open.
    let mut lacking = floor.saturating_sub(serving_available);
    for v in victims {
        let disposition = if lacking > 0 && available(v) {
            lacking -= 1;
            Disposition::Keep
        } else {
            Disposition::Remove
        };
        dispositions.push((v, disposition));
    }
    let mut creations = vec![serving_kind; replicas - serving.len()];
    creations.extend(std::iter::repeat_n(
        RevisionKind::Update,
        wanted_preview - preview.len(),
    ));
    Assignment {
        dispositions,
        creations,
        movers,
        movers_waiting_for_pause: 0,
        victims: victims_total,
        unavailable_keepers,
    }
}
