//! Leader election on a `coordination.k8s.io/v1` Lease, so that two agent replicas can run for one
//! cluster and only one of them acts: the one holding the Lease runs the controller and the hub
//! link, the other stands by and takes over when the holder stops renewing.
//!
//! The protocol is client-go's, so that `kubectl get lease` reads as for any controller:
//! - The holder writes `holderIdentity` and renews `renewTime` every `lease / 4`.
//! - A candidate takes the Lease when it is free (no holder: released) or when the record has not
//!   changed for `leaseDurationSeconds` by the candidate's own clock. Expiry is judged from when
//!   the candidate saw the record change, not from `renewTime`, so skewed clocks do not matter.
//! - Every write is a replace with the read `resourceVersion`: of two candidates one wins, the
//!   other gets a conflict and stands by.
//! - A holder that cannot renew within `2/3` of the lease stops acting before anyone may take over
//!   (the process exits and its Deployment starts it again as a candidate).
//! - A holder that shuts down releases the Lease, so that the other takes over at once.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The default lease: a killed holder is replaced within about 10 s (the lease and one retry).
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(8);

/// Where the Lease is and who this candidate is.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The Lease's namespace (the agent's own).
    pub namespace: String,
    /// The Lease's name.
    pub name: String,
    /// This candidate's identity (its pod name), written as `holderIdentity`.
    pub identity: String,
    /// How long a holder that stopped renewing keeps the Lease.
    pub lease_duration: Duration,
}

impl LeaseConfig {
    /// How often the holder renews, and a candidate tries.
    fn retry_period(&self) -> Duration {
        self.lease_duration / 4
    }

    /// How long the holder goes on without a confirmed renewal before it stops acting: well before
    /// a candidate may take over.
    fn renew_deadline(&self) -> Duration {
        self.lease_duration * 2 / 3
    }
}

/// Where this candidate stands, for `/readyz` and the metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// Not yet known: the Lease has not been read.
    Starting,
    /// Another candidate holds the Lease (`None`: it is free and this one is about to take it).
    StandingBy {
        /// The holder's identity.
        holder: Option<String>,
    },
    /// The Lease cannot be read or written: the API server is unreachable or refuses.
    Unreachable(String),
    /// This candidate holds the Lease and acts.
    Leading,
    /// This candidate held it and could not renew in time: it stops.
    Lost(String),
}

/// A candidate for one Lease.
pub struct Elector {
    api: Api<Lease>,
    config: LeaseConfig,
    /// The last record seen (its resourceVersion) and when this candidate saw it change.
    observed: Mutex<Option<(String, Instant)>>,
    standing: watch::Sender<Standing>,
}

impl std::fmt::Debug for Elector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Elector")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one attempt to take or renew found.
enum Attempt {
    /// This candidate holds the Lease now.
    Holds,
    /// Another one does.
    Held(Option<String>),
}

impl Elector {
    /// A candidate for the Lease of `config`, through `client`.
    pub fn new(client: kube::Client, config: LeaseConfig) -> Self {
        Self {
            api: Api::namespaced(client, &config.namespace),
            config,
            observed: Mutex::new(None),
            standing: watch::Sender::new(Standing::Starting),
        }
    }

    /// Where this candidate stands, as it changes.
    pub fn standing(&self) -> watch::Receiver<Standing> {
        self.standing.subscribe()
    }

    /// Tries every retry period until this candidate holds the Lease.
    pub async fn acquire(&self) {
        let mut announced = None;
        loop {
            match self.try_hold().await {
                Ok(Attempt::Holds) => {
                    tracing::info!(lease = %self.config.name, identity = %self.config.identity, "took the lease: this agent leads");
                    self.standing.send_replace(Standing::Leading);
                    return;
                }
                Ok(Attempt::Held(holder)) => {
                    if announced.as_ref() != Some(&holder) {
                        tracing::info!(lease = %self.config.name, holder = ?holder, "another agent leads: standing by");
                        announced = Some(holder.clone());
                    }
                    self.standing.send_replace(Standing::StandingBy { holder });
                }
                Err(error) => {
                    tracing::warn!(lease = %self.config.name, %error, "cannot read or take the lease");
                    self.standing
                        .send_replace(Standing::Unreachable(error.to_string()));
                }
            }
            tokio::time::sleep(self.config.retry_period()).await;
        }
    }

    /// Renews the Lease every retry period while this candidate holds it; returns why it stopped
    /// holding it: another took it, or no renewal was confirmed within the renew deadline.
    pub async fn hold(&self) -> String {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.config.retry_period()).await;
            let left = self
                .config
                .renew_deadline()
                .saturating_sub(renewed.elapsed());
            let why = match tokio::time::timeout(left, self.try_hold()).await {
                Ok(Ok(Attempt::Holds)) => {
                    renewed = Instant::now();
                    continue;
                }
                Ok(Ok(Attempt::Held(holder))) => {
                    format!(
                        "the lease is held by {}",
                        holder.as_deref().unwrap_or("nobody")
                    )
                }
                Ok(Err(error)) if renewed.elapsed() < self.config.renew_deadline() => {
                    tracing::warn!(lease = %self.config.name, %error, "cannot renew the lease; retrying");
                    continue;
                }
                Ok(Err(error)) => format!("the lease could not be renewed: {error}"),
                Err(_) => format!(
                    "the lease was not renewed within {:?}",
                    self.config.renew_deadline()
                ),
            };
            self.standing.send_replace(Standing::Lost(why.clone()));
            return why;
        }
    }

    /// Gives the Lease up, so that another candidate takes over at once (best effort: on failure
    /// it expires).
    pub async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.config.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if spec.holder_identity.as_deref() != Some(self.config.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(Timestamp::now()));
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.config.name, "released the lease"),
            Err(error) => {
                tracing::warn!(lease = %self.config.name, %error, "cannot release the lease; it expires")
            }
        }
    }

    /// One read and, when this candidate may hold the Lease, one write.
    async fn try_hold(&self) -> Result<Attempt, kube::Error> {
        let now = MicroTime(Timestamp::now());
        let duration = i32::try_from(self.config.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let Some(current) = self.api.get_opt(&self.config.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.config.name.clone()),
                    namespace: Some(self.config.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.config.identity.clone()),
                    lease_duration_seconds: Some(duration),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Holds),
                // Another candidate created it first.
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Held(None)),
                Err(error) => Err(error),
            };
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let mine = holder.as_deref() == Some(self.config.identity.as_str());
        if !mine && holder.is_some() && !self.expired(&current, &spec) {
            return Ok(Attempt::Held(holder));
        }
        let mut next = current;
        next.spec = Some(LeaseSpec {
            holder_identity: Some(self.config.identity.clone()),
            lease_duration_seconds: Some(duration),
            acquire_time: if mine {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!mine)),
            ..spec
        });
        match self
            .api
            .replace(&self.config.name, &PostParams::default(), &next)
            .await
        {
            Ok(written) => {
                // Our own write is a change we saw now.
                self.observe(&written);
                Ok(Attempt::Holds)
            }
            // Someone else wrote it since the read: they renewed or took it.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Held(holder)),
            Err(error) => Err(error),
        }
    }

    /// Whether the holder's record has not changed for its lease duration, by this candidate's
    /// clock.
    fn expired(&self, lease: &Lease, spec: &LeaseSpec) -> bool {
        let since = self.observe(lease);
        let duration = spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map_or(self.config.lease_duration, Duration::from_secs);
        since.elapsed() > duration
    }

    /// Records `lease` as seen now if its resourceVersion is new; returns when it was first seen.
    fn observe(&self, lease: &Lease) -> Instant {
        let version = lease.metadata.resource_version.clone().unwrap_or_default();
        let mut observed = self
            .observed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match observed.as_ref() {
            Some((seen, at)) if *seen == version => *at,
            _ => {
                let now = Instant::now();
                *observed = Some((version, now));
                now
            }
        }
    }
}
