//! Expectations: writes the agent made that its pod cache has not shown yet.
//!
//! The planner works from the reflector's cache, which lags the agent's own writes by a watch event.
//! Planning from a cache that does not show a pod just created would create it again; one that does
//! not show a drain just started could start another and exceed maxUnavailable. So every write is
//! recorded here, and a set is planned only once the cache has shown all of its writes (or they
//! expired, see [`EXPECTATION_TIMEOUT`]).
//!
//! A write is shown when the watch delivers the resourceVersion the write returned. Events that pass
//! while the write is in flight are remembered, since the answer may come after its own event. A
//! relist replaces the cache wholesale, which shows every write that finished before it started.
//! Nothing here survives a restart, and nothing needs to: a new agent starts from a fresh list.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a write may stay unseen before the set is planned anyway (a lost event, or a write that
/// changed nothing and so produced none).
pub const EXPECTATION_TIMEOUT: Duration = Duration::from_secs(5);

/// What the cache must show for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    /// A write is in flight; the versions seen meanwhile are kept.
    InFlight { seen: Vec<Seen> },
    /// This resourceVersion.
    Version(String),
    /// The pod's removal.
    Gone,
    /// Any event of this (new) pod.
    Created,
}

/// An event seen for a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Version(String),
    Deleted,
}

#[derive(Debug)]
struct Entry {
    set: String,
    expected: Expected,
    since: Instant,
}

/// The expectations of every set, keyed by pod uid.
#[derive(Debug, Default)]
pub struct Expectations {
    entries: Mutex<HashMap<String, Entry>>,
}

/// A write in flight.
#[derive(Debug)]
#[must_use = "finish or cancel the ticket"]
pub struct Ticket {
    pod: String,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        // A panic while holding this lock leaves a map that is still consistent.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that a write to pod `pod_uid` of set `set_uid` is about to be sent.
    pub fn begin(&self, set_uid: &str, pod_uid: &str) -> Ticket {
        self.lock().insert(
            pod_uid.to_string(),
            Entry {
                set: set_uid.to_string(),
                expected: Expected::InFlight { seen: Vec::new() },
                since: Instant::now(),
            },
        );
        Ticket {
            pod: pod_uid.to_string(),
        }
    }

    /// The write returned this resourceVersion (`None`: the pod is gone).
    pub fn finish(&self, ticket: Ticket, resource_version: Option<&str>) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(&ticket.pod) else {
            return;
        };
        let Expected::InFlight { seen } = &entry.expected else {
            return;
        };
        let shown = match resource_version {
            Some(rv) => seen
                .iter()
                .any(|s| matches!(s, Seen::Version(v) if v == rv)),
            None => seen.contains(&Seen::Deleted),
        } || seen.contains(&Seen::Deleted);
        if shown {
            entries.remove(&ticket.pod);
        } else {
            entry.expected =
                resource_version.map_or(Expected::Gone, |rv| Expected::Version(rv.to_string()));
            entry.since = Instant::now();
        }
    }

    /// The write failed: expect nothing.
    pub fn cancel(&self, ticket: Ticket) {
        self.lock().remove(&ticket.pod);
    }

    /// A pod was created; `in_cache` tells whether the cache already holds it. Checked under the
    /// lock the watch tap takes, so an event cannot slip between the check and the record.
    pub fn created(&self, set_uid: &str, pod_uid: &str, in_cache: impl FnOnce() -> bool) {
        let mut entries = self.lock();
        if !in_cache() {
            entries.insert(
                pod_uid.to_string(),
                Entry {
                    set: set_uid.to_string(),
                    expected: Expected::Created,
                    since: Instant::now(),
                },
            );
        }
    }

    /// The cache now shows this version of a pod (called after the reflector applied the event).
    pub fn observe(&self, pod_uid: &str, resource_version: &str) {
        self.record(pod_uid, Seen::Version(resource_version.to_string()));
    }

    /// The cache no longer holds this pod.
    pub fn observe_deleted(&self, pod_uid: &str) {
        self.record(pod_uid, Seen::Deleted);
    }

    fn record(&self, pod_uid: &str, seen_now: Seen) {
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(pod_uid) else {
            return;
        };
        let done = match (&mut entry.expected, &seen_now) {
            (Expected::InFlight { seen }, _) => {
                seen.push(seen_now);
                false
            }
            (_, Seen::Deleted) | (Expected::Created, _) => true,
            (Expected::Version(want), Seen::Version(got)) => want == got,
            (Expected::Gone, Seen::Version(_)) => false,
        };
        if done {
            entries.remove(pod_uid);
        }
    }

    /// The cache was rebuilt from a list that started at `list_started`: every write finished before
    /// then is in it.
    pub fn relisted(&self, list_started: Instant) {
        self.lock().retain(|_, e| {
            matches!(e.expected, Expected::InFlight { .. }) || e.since >= list_started
        });
    }

    /// Whether the set has writes its cache does not show yet. Expired ones are dropped.
    pub fn pending(&self, set_uid: &str) -> bool {
        let mut entries = self.lock();
        let now = Instant::now();
        entries.retain(|pod, e| {
            let keep = now.duration_since(e.since) < EXPECTATION_TIMEOUT;
            if !keep {
                tracing::warn!(pod_uid = %pod, expected = ?e.expected, "a write was not seen in time; planning anyway");
            }
            keep
        });
        entries.values().any(|e| e.set == set_uid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_is_pending_until_its_version_is_seen() {
        let e = Expectations::default();
        let t = e.begin("s", "p");
        assert!(e.pending("s"));
        e.observe("p", "5"); // someone else's write, while ours is in flight
        e.finish(t, Some("6"));
        assert!(e.pending("s"));
        assert!(!e.pending("other"));
        e.observe("p", "6");
        assert!(!e.pending("s"));
    }

    #[test]
    fn an_event_before_the_answer_counts() {
        let e = Expectations::default();
        let t = e.begin("s", "p");
        e.observe("p", "6");
        e.observe("p", "7");
        e.finish(t, Some("6"));
        assert!(!e.pending("s"));
    }

    #[test]
    fn creations_deletions_cancels_and_relists() {
        let e = Expectations::default();
        e.created("s", "new", || true);
        assert!(!e.pending("s"));
        e.created("s", "new", || false);
        assert!(e.pending("s"));
        e.observe("new", "1");
        assert!(!e.pending("s"));

        let t = e.begin("s", "p");
        e.finish(t, None);
        assert!(e.pending("s"));
        e.observe("p", "9");
        assert!(e.pending("s"));
        e.observe_deleted("p");
        assert!(!e.pending("s"));

        let t = e.begin("s", "p");
        e.cancel(t);
        assert!(!e.pending("s"));

        let t = e.begin("s", "p");
        e.finish(t, Some("3"));
        e.relisted(Instant::now());
        assert!(!e.pending("s"));
    }
}
