//! The simulated container runtime: one state machine per container, driven by time.

use std::time::{Duration, Instant};

use crate::time::now_rfc3339;

/// Image name fragment that makes a container crash after starting, forever.
pub const CRASHLOOP_IMAGE_MARKER: &str = "crashloop";
/// Image name fragment that makes pulling the image fail, forever.
pub const BAD_IMAGE_MARKER: &str = "badimage";
/// Longest back-off between two crash-loop restarts, as a multiple of the crash interval.
const MAX_BACKOFF_FACTOR: u32 = 8;

/// Where a container is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ContainerState {
    /// Being created for the first time (waiting, `ContainerCreating`); ready at `ready_at`.
    Creating {
        /// When it becomes running and ready.
        ready_at: Instant,
    },
    /// Started but not ready yet (after a restart); ready at `ready_at`.
    Starting {
        /// Wall-clock start, for `state.running.startedAt`.
        started_at: String,
        /// When it becomes ready.
        ready_at: Instant,
    },
    /// Running and ready.
    Running {
        /// Wall-clock start.
        started_at: String,
    },
    /// A crash-looping image running until it crashes at `crash_at`.
    CrashRunning {
        /// Wall-clock start.
        started_at: String,
        /// When it crashes.
        crash_at: Instant,
    },
    /// Waiting after a crash (`CrashLoopBackOff`) until `restart_at`.
    CrashBackOff {
        /// When it starts again.
        restart_at: Instant,
    },
    /// The image cannot be pulled: `ErrImagePull` first, then `ImagePullBackOff`, alternating.
    PullFailing {
        /// Whether the current reason is `ImagePullBackOff`.
        backoff: bool,
        /// When the reason flips.
        next_at: Instant,
    },
}

/// One simulated container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Container {
    /// Container name.
    pub(crate) name: String,
    /// Image it runs (or tries to).
    pub(crate) image: String,
    /// Restarts so far.
    pub(crate) restart_count: u32,
    /// Current state.
    pub(crate) state: ContainerState,
    /// Whether it has ever run (for `lastState` and the pod phase).
    pub(crate) ever_started: bool,
}

/// Timing knobs of the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// Time from start to ready.
    pub(crate) start_delay: Duration,
    /// Time a crash-looping container runs, and the base back-off.
    pub(crate) crash_interval: Duration,
}

impl Container {
    /// A container created now.
    pub(crate) fn create(name: &str, image: &str, now: Instant, t: Timing) -> Self {
        let mut c = Self {
            name: name.to_string(),
            image: image.to_string(),
            restart_count: 0,
            state: ContainerState::Creating { ready_at: now },
            ever_started: false,
        };
        c.state = c.first_state(now, t, true);
        c
    }

    fn first_state(&self, now: Instant, t: Timing, creating: bool) -> ContainerState {
        if self.image.contains(BAD_IMAGE_MARKER) {
            ContainerState::PullFailing {
                backoff: false,
                next_at: now + t.crash_interval,
            }
        } else if self.image.contains(CRASHLOOP_IMAGE_MARKER) {
            ContainerState::CrashRunning {
                started_at: now_rfc3339(),
                crash_at: now + t.crash_interval,
            }
        } else if creating {
            ContainerState::Creating {
                ready_at: now + t.start_delay,
            }
        } else {
            ContainerState::Starting {
                started_at: now_rfc3339(),
                ready_at: now + t.start_delay,
            }
        }
    }

    /// The image changed in the pod spec: the kubelet kills the container and starts the new image.
    pub(crate) fn change_image(&mut self, image: &str, now: Instant, t: Timing) {
        self.image = image.to_string();
        if self.ever_started {
            self.restart_count += 1;
        }
        self.state = self.first_state(now, t, !self.ever_started);
    }

    /// Advances time-driven transitions up to `now`; returns whether anything changed.
    pub(crate) fn advance(&mut self, now: Instant, t: Timing) -> bool {
        let mut changed = false;
        loop {
            let next = match &self.state {
                ContainerState::Creating { ready_at } if now >= *ready_at => {
                    Some(ContainerState::Running {
                        started_at: now_rfc3339(),
                    })
                }
                ContainerState::Starting {
                    started_at,
                    ready_at,
                } if now >= *ready_at => Some(ContainerState::Running {
                    started_at: started_at.clone(),
                }),
                ContainerState::CrashRunning { crash_at, .. } if now >= *crash_at => {
                    self.restart_count += 1;
                    let factor = self.restart_count.clamp(1, MAX_BACKOFF_FACTOR);
                    Some(ContainerState::CrashBackOff {
                        restart_at: *crash_at + t.crash_interval * factor,
                    })
                }
                ContainerState::CrashBackOff { restart_at } if now >= *restart_at => {
                    Some(ContainerState::CrashRunning {
                        started_at: now_rfc3339(),
                        crash_at: *restart_at + t.crash_interval,
                    })
                }
                ContainerState::PullFailing { backoff, next_at } if now >= *next_at => {
                    Some(ContainerState::PullFailing {
                        backoff: !backoff,
                        next_at: *next_at + t.crash_interval,
                    })
                }
                _ => None,
            };
            match next {
                Some(s) => {
                    if matches!(
                        s,
                        ContainerState::Running { .. } | ContainerState::CrashRunning { .. }
                    ) {
                        self.ever_started = true;
                    }
                    self.state = s;
                    changed = true;
                }
                None => return changed,
            }
        }
    }

    /// When the next time-driven transition happens.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        match &self.state {
            ContainerState::Creating { ready_at } | ContainerState::Starting { ready_at, .. } => {
                Some(*ready_at)
            }
            ContainerState::CrashRunning { crash_at, .. } => Some(*crash_at),
            ContainerState::CrashBackOff { restart_at } => Some(*restart_at),
            ContainerState::PullFailing { next_at, .. } => Some(*next_at),
            ContainerState::Running { .. } => None,
        }
    }

    /// Whether the container is ready.
    pub(crate) fn ready(&self) -> bool {
        matches!(self.state, ContainerState::Running { .. })
    }

    /// Whether a process is running (ready or not).
    pub(crate) fn running(&self) -> bool {
        matches!(
            self.state,
            ContainerState::Running { .. }
                | ContainerState::Starting { .. }
                | ContainerState::CrashRunning { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        start_delay: Duration::from_millis(100),
        crash_interval: Duration::from_millis(50),
    };

    #[test]
    fn normal_container_becomes_ready_after_the_start_delay() {
        let t0 = Instant::now();
        let mut c = Container::create("app", "nginx:1", t0, T);
        assert!(!c.ready() && !c.running());
        assert_eq!(c.next_due(), Some(t0 + T.start_delay));
        assert!(!c.advance(t0 + Duration::from_millis(99), T));
        assert!(c.advance(t0 + T.start_delay, T));
        assert!(c.ready());
        // In-place image change: restart, running but unready for the start delay.
        let t1 = t0 + Duration::from_secs(1);
        c.change_image("nginx:2", t1, T);
        assert_eq!(c.restart_count, 1);
        assert!(c.running() && !c.ready());
        c.advance(t1 + T.start_delay, T);
        assert!(c.ready());
    }

    #[test]
    fn crashloop_restarts_keep_growing() {
        let t0 = Instant::now();
        let mut c = Container::create("app", "example/crashloop:1", t0, T);
        c.advance(t0 + Duration::from_secs(2), T);
        assert!(c.restart_count >= 3, "{}", c.restart_count);
        assert!(!c.ready());
    }

    #[test]
    fn bad_image_alternates_pull_errors_without_restarts() {
        let t0 = Instant::now();
        let mut c = Container::create("app", "example/badimage:1", t0, T);
        assert_eq!(
            c.state,
            ContainerState::PullFailing {
                backoff: false,
                next_at: t0 + T.crash_interval
            }
        );
        c.advance(t0 + T.crash_interval, T);
        assert!(matches!(
            c.state,
            ContainerState::PullFailing { backoff: true, .. }
        ));
        assert_eq!(c.restart_count, 0);
        assert!(!c.ever_started);
    }
}
