//! Which pods go, which revision each pod should run, and which of them may move now within the
//! unavailability budget.

use super::{PlanInput, is_available};
use crate::crd::UpgradeStrategy;
use crate::desired::RevisionKind;
use crate::observed::ObservedPod;

/// What happens to one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// It stays on its revision: bring it (back) into traffic when it is ready.
    Keep,
    /// It moves to another revision, through a drain.
    Move(Move),
    /// It goes away (scale-in), through a drain.
    Remove,
    /// Blue-green: a pod of the preview revision, kept out of traffic until the switch.
    Preview,
    /// Blue-green: a pod of another revision leaves traffic and stays, ready, as the way back until
    /// `scaleDownDelaySeconds` after its drain started; then it is removed.
    Retire,
}

/// How a pod moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    /// The template it moves to.
    pub to: RevisionKind,
    /// Only images differ: patch them in place; otherwise delete and recreate.
    pub in_place: bool,
}

/// The outcome of the assignment.
#[derive(Debug)]
pub(super) struct Assignment<'a> {
    /// Every pod that is not terminating, with what happens to it, in a deterministic order.
    pub(super) dispositions: Vec<(&'a ObservedPod, Disposition)>,
    /// Pods to create, by template.
    pub(super) creations: Vec<RevisionKind>,
    /// Pods that should run another revision (moving or not).
    pub(super) movers: usize,
    /// Movers held because the set is paused.
    pub(super) movers_waiting_for_pause: usize,
    /// Pods to remove (draining or not).
    pub(super) victims: usize,
    /// Kept pods that are not available yet.
    pub(super) unavailable_keepers: usize,
}

/// Decides every pod's fate. `failed`: pods of the update revision fail, so no pod is taken down to
/// move (in-flight drains are undone) and new pods get the stable template.
pub(super) fn assign<'a>(input: &PlanInput<'a>, failed: bool) -> Assignment<'a> {
    let d = input.desired;
    let replicas = d.replicas as usize;
    let target = d.update_target as usize;
    let available = |p: &ObservedPod| is_available(p, d, input.now);
    let on_update = |p: &ObservedPod| p.revision.as_deref() == Some(d.update.revision.as_str());

    // Scale-in: unready pods first (those already drained first of all), then the stable revision's.
    let mut active: Vec<&ObservedPod> = input.pods.iter().filter(|p| !p.terminating).collect();
    active.sort_by_key(|p| {
        (
            p.ready_since.is_some(),
            p.drain_started.is_none(),
            p.drain_started,
            on_update(p),
            p.name.as_str(),
        )
    });
    let excess = active.len().saturating_sub(replicas);
    let victims: Vec<&ObservedPod> = active.drain(..excess).collect();
    let keepers = active;

    // Revisions: the update revision's pods keep their slots, then new pods take theirs, then the
    // pods that are already moving or unavailable (moving them costs nothing), then by name.
    let (mut updated, others): (Vec<&ObservedPod>, Vec<&ObservedPod>) =
        keepers.iter().copied().partition(|p| on_update(p));
    let mut wanted: Vec<(&ObservedPod, RevisionKind)> = Vec::new();
    if updated.len() > target && d.stable.is_some() {
        // The partition grew: the least settled update pods go back to the stable revision.
        updated.sort_by_key(|p| (!available(p), p.drain_started.is_some(), p.name.as_str()));
        for p in updated.drain(target..) {
            wanted.push((p, RevisionKind::Stable));
        }
    }
    let missing = replicas - keepers.len();
    let new_update = if failed && d.stable.is_some() {
        0
    } else {
        missing.min(target.saturating_sub(updated.len()))
    };
    let mut slots = target.saturating_sub(updated.len() + new_update);
    let mut others = others;
    others.sort_by_key(|p| promote_rank(p, available(p)));
    for p in &updated {
        wanted.push((p, RevisionKind::Update));
    }
    for p in others {
        if slots > 0 {
            slots -= 1;
            wanted.push((p, RevisionKind::Update));
        } else {
            // Without a stable template, partition pods keep what they run (see below).
            wanted.push((p, RevisionKind::Stable));
        }
    }

    // The budget: pods that may become unavailable now. Draining a pod that is already unavailable
    // (or already draining) costs nothing.
    let available_now = input.pods.iter().filter(|p| available(p)).count();
    let mut budget = d.max_unavailable as i64 - (replicas as i64 - available_now as i64);
    let mut spend = |p: &ObservedPod| {
        let cost = i64::from(available(p));
        if budget >= cost {
            budget -= cost;
            true
        } else {
            false
        }
    };

    let mut dispositions = Vec::with_capacity(victims.len() + wanted.len());
    for v in &victims {
        let disposition = if spend(v) {
            Disposition::Remove
        } else {
            Disposition::Keep
        };
        dispositions.push((*v, disposition));
    }
    let mut movers: Vec<(&ObservedPod, RevisionKind)> = Vec::new();
    let mut unavailable_keepers = 0;
    let mut kept = Vec::new();
    for (p, kind) in wanted {
        let target_revision = &d.template(kind).revision;
        let needs_move = match kind {
            RevisionKind::Update => !on_update(p),
            // Without a stable template the stable "revision" is the update one: nothing to move to.
            RevisionKind::Stable => {
                d.stable.is_some() && p.revision.as_deref() != Some(target_revision.as_str())
            }
        };
        if needs_move {
            movers.push((p, kind));
        } else {
            unavailable_keepers += usize::from(!available(p));
            kept.push(p);
        }
    }
    movers.sort_by_key(|(p, _)| promote_rank(p, available(p)));
    let movers_total = movers.len();
    let mut movers_waiting_for_pause = 0;
    for (p, kind) in movers {
        let halted = failed || d.paused;
        movers_waiting_for_pause += usize::from(d.paused && !failed);
        let disposition = if !halted && spend(p) {
            let template = d.template(kind);
            Disposition::Move(Move {
                to: kind,
                in_place: d.upgrade == UpgradeStrategy::InPlace
                    && p.revision.is_some()
                    && p.shape.as_deref() == Some(template.shape.as_str()),
            })
        } else {
            Disposition::Keep
        };
        dispositions.push((p, disposition));
    }
    for p in kept {
        dispositions.push((p, Disposition::Keep));
    }

    let creations = (0..missing)
        .map(|i| {
            if i < new_update {
                RevisionKind::Update
            } else {
                RevisionKind::Stable
            }
        })
        .collect();
    Assignment {
        dispositions,
        creations,
        movers: movers_total,
        movers_waiting_for_pause,
        victims: victims.len(),
        unavailable_keepers,
    }
}

/// Pods already draining first (finish what was started), then unavailable ones, then by name.
fn promote_rank(p: &ObservedPod, available: bool) -> (bool, bool, &str) {
    (p.drain_started.is_none(), available, p.name.as_str())
}
