//! Fault injection: latency, error rates, dropped watches and a whole cluster going offline.

use std::sync::Mutex;
use std::time::Duration;

use rand::RngExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::status::{ApiError, Reason};

/// The faults in effect on one cluster's API (`/sim/v1/faults` speaks this shape in camelCase).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    /// Added to every API request before it is answered.
    pub latency_ms: u64,
    /// Share of API requests (0.0..=1.0) answered with an error: half 500 InternalError, half 429
    /// TooManyRequests with `Retry-After`.
    pub error_rate: f64,
    /// An action rather than a state: `true` closes every open watch once (clients reconnect); it reads
    /// back as `false`.
    pub drop_watches: bool,
    /// While `true`, every API request and open watch has its connection closed without an answer;
    /// `/sim/v1/` stays reachable.
    pub offline: bool,
}

/// A change to some faults: absent fields stay as they are (the body of `POST /sim/v1/faults`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultsUpdate {
    /// New latency in milliseconds.
    pub latency_ms: Option<u64>,
    /// New error rate.
    pub error_rate: Option<f64>,
    /// `true` drops every open watch now.
    pub drop_watches: Option<bool>,
    /// New offline state.
    pub offline: Option<bool>,
}

/// What to do with an API request, decided from the faults in effect.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FaultDecision {
    /// Close the connection without answering.
    Drop,
    /// Wait, then answer normally or with the error.
    Proceed {
        /// Added latency.
        delay: Duration,
        /// An injected error, if any.
        error: Option<ApiError>,
    },
}

/// The shared fault state of a cluster.
#[derive(Debug)]
pub(crate) struct FaultState {
    current: Mutex<Faults>,
    drop_epoch: watch::Sender<u64>,
    offline: watch::Sender<bool>,
}

impl FaultState {
    /// No faults.
    pub(crate) fn new() -> Self {
        Self {
            current: Mutex::new(Faults::default()),
            drop_epoch: watch::Sender::new(0),
            offline: watch::Sender::new(false),
        }
    }

    /// The faults in effect.
    pub(crate) fn get(&self) -> Faults {
        self.current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces every fault.
    pub(crate) fn set(&self, faults: Faults) {
        self.update(FaultsUpdate {
            latency_ms: Some(faults.latency_ms),
            error_rate: Some(faults.error_rate),
            drop_watches: Some(faults.drop_watches),
            offline: Some(faults.offline),
        });
    }

    /// Changes the faults named in `update`.
    pub(crate) fn update(&self, update: FaultsUpdate) {
        let offline = {
            let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(l) = update.latency_ms {
                cur.latency_ms = l;
            }
            if let Some(r) = update.error_rate {
                cur.error_rate = if r.is_finite() {
                    r.clamp(0.0, 1.0)
                } else {
                    0.0
                };
            }
            if let Some(o) = update.offline {
                cur.offline = o;
            }
            cur.offline
        };
        self.offline.send_replace(offline);
        if update.drop_watches == Some(true) {
            self.drop_epoch.send_modify(|e| *e += 1);
            tracing::info!("dropping every open watch");
        }
        tracing::info!(faults = ?self.get(), "faults changed");
    }

    /// Decides the fate of one API request.
    pub(crate) fn decide(&self) -> FaultDecision {
        let f = self.get();
        if f.offline {
            return FaultDecision::Drop;
        }
        let mut rng = rand::rng();
        let error = (f.error_rate > 0.0 && rng.random_bool(f.error_rate)).then(|| {
            if rng.random_bool(0.5) {
                ApiError::new(Reason::InternalError, "injected fault: internal error")
            } else {
                ApiError::new(
                    Reason::TooManyRequests,
                    "injected fault: too many requests, please try again later",
                )
            }
        });
        FaultDecision::Proceed {
            delay: Duration::from_millis(f.latency_ms),
            error,
        }
    }

    /// A receiver that changes each time watches are to be dropped.
    pub(crate) fn drop_watches_signal(&self) -> watch::Receiver<u64> {
        self.drop_epoch.subscribe()
    }

    /// A receiver of the offline state.
    pub(crate) fn offline_signal(&self) -> watch::Receiver<bool> {
        self.offline.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_change_only_named_faults() {
        let s = FaultState::new();
        s.update(FaultsUpdate {
            latency_ms: Some(50),
            ..Default::default()
        });
        s.update(FaultsUpdate {
            error_rate: Some(2.0),
            ..Default::default()
        });
        let f = s.get();
        assert_eq!(f.latency_ms, 50);
        assert_eq!(f.error_rate, 1.0);
        assert!(matches!(
            s.decide(),
            FaultDecision::Proceed { error: Some(_), .. }
        ));
        let drops = s.drop_watches_signal();
        s.update(FaultsUpdate {
            drop_watches: Some(true),
            offline: Some(true),
            ..Default::default()
        });
        assert!(drops.has_changed().unwrap());
        assert_eq!(s.decide(), FaultDecision::Drop);
        assert!(!s.get().drop_watches);
        s.set(Faults::default());
        assert_eq!(
            s.decide(),
            FaultDecision::Proceed {
                delay: Duration::ZERO,
                error: None
            }
        );
    }
}
