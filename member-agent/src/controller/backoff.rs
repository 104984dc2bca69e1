//! The pod watch's backoff.
//!
//! kube-runtime's default (client-go's: 0.8 s doubling to 30 s, reset only after two quiet minutes)
//! is kind to a struggling API server shared by many clients. The agent is one client of its own
//! cluster whose progress waits on this watch: every write it makes waits to be seen here. So it
//! retries sooner, still doubling, and forgets failures as soon as an event arrives.

use kube::runtime::utils::Backoff;
use std::time::Duration;

/// The first wait after a watch error.
const FIRST: Duration = Duration::from_millis(100);
/// The longest wait.
const MAX: Duration = Duration::from_secs(10);

/// Doubling from [`FIRST`] to [`MAX`]; reset by any successful event.
#[derive(Debug, Clone)]
pub struct WatchBackoff {
    next: Duration,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let now = self.next;
        self.next = self.next.saturating_mul(2).min(MAX);
        Some(now)
    }
}

impl Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut b = WatchBackoff::default();
        let waits: Vec<Duration> = b.by_ref().take(9).collect();
        assert_eq!(waits[0], FIRST);
        assert_eq!(waits[1], FIRST * 2);
        assert_eq!(waits[8], MAX);
        b.reset();
        assert_eq!(b.next(), Some(FIRST));
    }
}
