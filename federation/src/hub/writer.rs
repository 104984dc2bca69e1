//! The one task that owns the store. Every change of the hub's model is an [`Event`] sent here.
//!
//! The writer takes every event waiting (up to [`GROUP_MAX`]), decides each on a copy of the
//! published model, and commits all their writes in one transaction: a group commit, one fsync for
//! many decisions, on its own thread rather than on the async workers. Only after the commit has
//! succeeded does it publish the new model, wake the agents' streams and answer the callers. When
//! the commit fails, the copy is thrown away: memory stays as the store has it, and every caller of
//! the group gets the error. An event the model refuses is thrown away alone.
//!
//! Each commit is a single transaction given all of its writes at once, so that a store with
//! conditional transactions (etcd) can make it one.

use super::core::{Core, Effects};
use super::event::{Answer, Event};
use super::{HubError, Shared};
use crate::store::StoreError;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Most events decided in one group (one commit).
pub const GROUP_MAX: usize = 256;

/// Events waiting for the writer; callers wait for room when it is full.
pub const QUEUE: usize = 4096;

/// An event and where its answer goes.
pub(super) type Submission = (Event, oneshot::Sender<Result<Answer, HubError>>);

/// Starts the writer thread over `shared`. It ends when every sender of the returned queue is gone;
/// a panic fails the hub.
pub(super) fn start(shared: Arc<Shared>) -> std::io::Result<mpsc::Sender<Submission>> {
    let (tx, rx) = mpsc::channel(QUEUE);
    std::thread::Builder::new()
        .name("cafe-hub-writer".to_owned())
        .spawn(move || {
            let guard = PanicGuard(Arc::clone(&shared));
            run(&guard.0, rx);
        })?;
    Ok(tx)
}

/// Fails the hub when the writer panics: without it nothing can change.
struct PanicGuard(Arc<Shared>);

impl Drop for PanicGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.fail("the hub's store writer panicked");
        }
    }
}

fn run(shared: &Shared, mut queue: mpsc::Receiver<Submission>) {
    let mut group = Vec::with_capacity(GROUP_MAX);
    while let Some(first) = queue.blocking_recv() {
        group.push(first);
        while group.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        commit_group(shared, std::mem::take(&mut group));
    }
}

/// Where an event's answer goes.
type Reply = oneshot::Sender<Result<Answer, HubError>>;

/// Decides, commits and publishes one group. When the group's commit fails, its events are decided
/// and committed again one at a time, so that only the events whose own writes the store refuses
/// fail (as each change did alone before group commits), and the others (reports, streams opening
/// and ending) are not lost with them.
fn commit_group(shared: &Shared, group: Vec<Submission>) {
    if group.len() == 1 {
        if let Err((error, replies)) = try_group(shared, group) {
            refuse(&error, replies);
        }
        return;
    }
    let copies: Vec<Event> = group.iter().map(|(event, _)| event.clone()).collect();
    let Err((error, replies)) = try_group(shared, group) else {
        return;
    };
    if shared.failure.borrow().is_some() {
        // The hub stopped (another writer took over, or the store's answer is unknown): nothing
        // more is committed.
        refuse(&error, replies);
        return;
    }
    tracing::warn!(%error, events = copies.len(), "deciding the failed group's events one at a time");
    let mut copies: Vec<Option<Event>> = copies.into_iter().map(Some).collect();
    for (index, reply) in replies {
        let Some(event) = copies.get_mut(index).and_then(Option::take) else {
            continue;
        };
        if let Err((error, replies)) = try_group(shared, vec![(event, reply)]) {
            refuse(&error, replies);
        }
    }
}

/// Answers `replies` with the commit's error.
fn refuse(error: &StoreError, replies: Vec<(usize, Reply)>) {
    for (_, reply) in replies {
        let _ = reply.send(Err(HubError::Store(copy_error(error))));
    }
}

/// Decides the group's events on a copy of the published model and commits their writes in one
/// transaction; publishes and answers on success. A refused event is answered at once. When the
/// commit fails, nothing is published and the replies of the decided events (with their places in
/// the group) come back unanswered.
fn try_group(
    shared: &Shared,
    group: Vec<Submission>,
) -> Result<(), (StoreError, Vec<(usize, Reply)>)> {
    let span = tracing::debug_span!("group commit", events = group.len());
    let _entered = span.enter();
    if let Some(reason) = shared.failure.borrow().clone() {
        // A failed hub (another writer took over, or the store may hold a commit this model
        // lacks) decides and commits nothing more.
        for (_, reply) in group {
            let _ = reply.send(Err(HubError::Stopped(reason.clone())));
        }
        return Ok(());
    }
    let published = shared.snapshot();
    let mut working = Core::clone(&published);
    let mut effects = Effects::default();
    let mut answers = Vec::with_capacity(group.len());
    for (index, (event, reply)) in group.into_iter().enumerate() {
        let checkpoint = working.clone();
        match working.decide(event, shared.clock.now_ms()) {
            Ok(mut decision) => {
                decision.effects.notices.append(&mut working.notices);
                effects.merge(decision.effects);
                answers.push((index, reply, decision.answer));
            }
            Err(error) => {
                working = checkpoint;
                let _ = reply.send(Err(error));
            }
        }
    }
    if working.next_generation != published.next_generation {
        effects.writes.push(working.generation_write());
    }
    if !effects.writes.is_empty() {
        let started = std::time::Instant::now();
        let fence = std::slice::from_ref(&shared.fence);
        if let Err(error) = shared.store.commit_if(fence, &effects.writes) {
            tracing::error!(%error, writes = effects.writes.len(), "store commit failed; the group's decisions are dropped");
            if matches!(
                error,
                StoreError::Conflict { .. } | StoreError::Unavailable { .. }
            ) {
                // Another hub writes the store now, or the store may hold a commit this model
                // lacks: this one must not go on as if it did. (A replica then exits and a leader
                // loads the store again.)
                shared.fail(&error.to_string());
            }
            let replies = answers
                .into_iter()
                .map(|(i, reply, _)| (i, reply))
                .collect();
            return Err((error, replies));
        }
        shared.metrics.observe_commit(started.elapsed());
    }
    shared.publish(Arc::new(working), &effects);
    for (_, reply, answer) in answers {
        let _ = reply.send(answer);
    }
    Ok(())
}

/// A copy of a commit's error for each caller of the group: a conflict stays a conflict, anything
/// else keeps its words.
fn copy_error(error: &StoreError) -> StoreError {
    match error {
        StoreError::Conflict { table, key } => StoreError::Conflict {
            table,
            key: key.clone(),
        },
        StoreError::Unavailable { store, reason } => StoreError::Unavailable {
            store: store.clone(),
            reason: reason.clone(),
        },
        other => StoreError::Io {
            operation: "commit",
            source: crate::error_chain(other).into(),
        },
    }
}
