//! The latest status of each slice, waiting to be sent: a newer status replaces an unsent older one,
//! so a burst of changes becomes one report (the debounce of DESIGN section 6).

use cafe_proto::v1 as pb;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Slice statuses not yet sent, and everything last reported (to resend after a reconnect).
#[derive(Debug, Clone, Default)]
pub struct StatusBoard {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct State {
    latest: BTreeMap<String, pb::SliceStatus>,
    dirty: BTreeMap<String, ()>,
}

impl StatusBoard {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The maps stay consistent even if a holder panicked.
        self.inner
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a slice's status; sent on the next flush if it differs from the last one.
    pub fn post(&self, status: pb::SliceStatus) {
        let mut state = self.state();
        if state.latest.get(&status.id) == Some(&status) {
            return;
        }
        state.dirty.insert(status.id.clone(), ());
        state.latest.insert(status.id.clone(), status);
        drop(state);
        self.inner.notify.notify_one();
    }

    /// Forgets a removed slice.
    pub fn forget(&self, id: &str) {
        let mut state = self.state();
        state.latest.remove(id);
        state.dirty.remove(id);
    }

    /// Marks every known status to be sent again (after a reconnect).
    pub fn mark_all(&self) {
        let mut state = self.state();
        let ids: Vec<String> = state.latest.keys().cloned().collect();
        for id in ids {
            state.dirty.insert(id, ());
        }
        drop(state);
        self.inner.notify.notify_one();
    }

    /// Takes the statuses to send.
    pub fn take(&self) -> Vec<pb::SliceStatus> {
        let mut state = self.state();
        let dirty = std::mem::take(&mut state.dirty);
        dirty
            .keys()
            .filter_map(|id| state.latest.get(id).cloned())
            .collect()
    }

    /// Resolves when something was posted since the last `take`.
    pub async fn changed(&self) {
        self.inner.notify.notified().await;
    }
}
