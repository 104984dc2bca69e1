//! Simulated load balancers and the prober that counts lost requests.
//!
//! Each configured traffic finalizer is one load balancer. It registers a pod (adds its finalizer) when
//! the pod is Ready (which includes every readiness gate) and not being deleted, and from then on the
//! prober sends it one request every [`TRAFFIC_TICK`]. When a registered pod stops qualifying, the
//! balancer notices after the configured reaction delay (endpoint propagation), stops sending to it at
//! once, and removes its finalizer after the deregistration delay.
//!
//! A request is **lost** when it reaches a pod that is gone, terminating, not running, or whose
//! containers are not ready (or whose node is NotReady). The readiness gate itself does not make a pod
//! lose requests: a drained pod keeps serving until the balancer has let go of it, which is the point of
//! draining.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::application::{Application, Behaviour, ServingPod};
use crate::host::Host;
use crate::store::meta::{finalizers, is_deleting, name_of, namespace_of, uid_of};
use crate::store::{ObjKey, Subresource};

/// Interval of the balancers and the prober: every registered pod gets one request per tick
/// (100 requests per second per pod and balancer).
pub const TRAFFIC_TICK: Duration = Duration::from_millis(10);

/// Requests sent by the prober and requests lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrafficCounts {
    /// Requests sent to registered pods.
    pub sent: u64,
    /// Requests that reached a pod that could not serve them.
    pub lost: u64,
}

/// Shared counters, and the application that answers the requests that are not lost.
#[derive(Debug)]
pub(crate) struct TrafficCounters {
    sent: AtomicU64,
    lost: AtomicU64,
    pub(crate) app: Arc<Application>,
}

impl TrafficCounters {
    /// Counters at 0, with images behaving as `behaviours` says.
    pub(crate) fn new(behaviours: std::collections::BTreeMap<String, Behaviour>) -> Self {
        Self {
            sent: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            app: Arc::new(Application::new(behaviours)),
        }
    }

    /// The current figures.
    pub(crate) fn counts(&self) -> TrafficCounts {
        TrafficCounts {
            sent: self.sent.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
        }
    }

    fn record(&self, sent: u64, lost: u64) {
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.lost.fetch_add(lost, Ordering::Relaxed);
    }
}

/// A pod as one balancer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// Receiving traffic; `unhealthy_since` is when the balancer first saw it stop qualifying.
    Registered {
        key: ObjKey,
        unhealthy_since: Option<Instant>,
    },
    /// No longer receiving traffic; the finalizer goes at `remove_at`.
    Draining { key: ObjKey, remove_at: Instant },
}

/// One simulated load balancer.
#[derive(Debug)]
struct Balancer {
    finalizer: String,
    targets: HashMap<String, Target>,
}

/// What the prober and balancers need to know about a pod.
#[derive(Debug)]
struct PodView {
    key: ObjKey,
    object: Arc<Value>,
    qualifies: bool,
    serving: bool,
    deleting: bool,
    finalizers: Vec<String>,
}

impl PodView {
    /// The pod as the application answering its requests sees it.
    fn serving_pod<'a>(&'a self, uid: &'a str) -> ServingPod<'a> {
        let label = |name: &str| {
            self.object
                .pointer(&format!("/metadata/labels/{}", name.replace('/', "~1")))
                .and_then(Value::as_str)
                .unwrap_or_default()
        };
        ServingPod {
            uid,
            namespace: &self.key.namespace,
            name: &self.key.name,
            image: self
                .object
                .pointer("/spec/containers/0/image")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            inplaceset: label("cafe.io/inplaceset"),
            revision: label("cafe.io/revision"),
        }
    }

    fn of(pod: &Arc<Value>) -> Self {
        let condition = |t: &str| {
            pod.pointer("/status/conditions")
                .and_then(Value::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == t))
                .is_some_and(|c| c["status"] == "True")
        };
        let deleting = is_deleting(pod);
        let running = pod.pointer("/status/phase").and_then(Value::as_str) == Some("Running");
        Self {
            key: ObjKey::new(namespace_of(pod), name_of(pod)),
            object: Arc::clone(pod),
            qualifies: condition("Ready") && !deleting,
            serving: running && condition("ContainersReady") && !deleting,
            deleting,
            finalizers: finalizers(pod),
        }
    }
}

/// Runs the balancers and the prober until the cluster shuts down.
pub(crate) async fn run<H: Host>(host: H) {
    let mut balancers: Vec<Balancer> = host
        .config()
        .traffic_finalizers
        .iter()
        .map(|f| Balancer {
            finalizer: f.clone(),
            targets: HashMap::new(),
        })
        .collect();
    if balancers.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(TRAFFIC_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = host.shutdown().cancelled() => break,
            _ = tick.tick() => {
                let now = Instant::now();
                let pods: HashMap<String, PodView> = host
                    .pods()
                    .iter()
                    .map(|p| (uid_of(p).to_string(), PodView::of(p)))
                    .collect();
                for b in &mut balancers {
                    b.probe(host.traffic(), &pods);
                    b.reconcile(&host, &pods, now).await;
                }
            }
        }
    }
}

impl Balancer {
    /// Sends one request to each registered pod.
    fn probe(&self, traffic: &TrafficCounters, pods: &HashMap<String, PodView>) {
        let mut sent = 0;
        let mut lost = 0;
        for (uid, t) in &self.targets {
            if let Target::Registered { key, .. } = t {
                sent += 1;
                match pods.get(uid).filter(|p| p.serving) {
                    Some(pod) => traffic.app.answer(&pod.serving_pod(uid)),
                    None => {
                        lost += 1;
                        tracing::debug!(balancer = %self.finalizer, pod = %key.name, "request lost");
                    }
                }
            }
        }
        traffic.record(sent, lost);
    }

    /// Registers, deregisters and releases pods.
    async fn reconcile<H: Host>(
        &mut self,
        host: &H,
        pods: &HashMap<String, PodView>,
        now: Instant,
    ) {
        let reaction = host.config().lb_reaction_delay;
        let dereg = host.config().deregistration_delay;
        // Pods that are gone: forget them once the balancer has noticed.
        self.targets.retain(|uid, t| {
            pods.contains_key(uid)
                || match t {
                    Target::Registered {
                        unhealthy_since, ..
                    } => {
                        let since = *unhealthy_since.get_or_insert(now);
                        now.duration_since(since) < reaction
                    }
                    Target::Draining { .. } => false,
                }
        });
        for (uid, pod) in pods {
            let has_finalizer = pod.finalizers.contains(&self.finalizer);
            let next = match self.targets.get_mut(uid) {
                None if pod.qualifies => {
                    if has_finalizer || self.set_finalizer(host, pod, true).await {
                        tracing::debug!(balancer = %self.finalizer, pod = %pod.key.name, "registered");
                        Some(Target::Registered {
                            key: pod.key.clone(),
                            unhealthy_since: None,
                        })
                    } else {
                        None
                    }
                }
                // A pod carrying our finalizer we do not know: adopt it as draining.
                None if has_finalizer => Some(Target::Draining {
                    key: pod.key.clone(),
                    remove_at: now + dereg,
                }),
                None => None,
                Some(Target::Registered {
                    unhealthy_since,
                    key,
                }) => {
                    if pod.qualifies {
                        *unhealthy_since = None;
                        None
                    } else {
                        let since = *unhealthy_since.get_or_insert(now);
                        (now.duration_since(since) >= reaction).then(|| {
                            tracing::debug!(balancer = %self.finalizer, pod = %key.name, deleting = pod.deleting, "deregistering");
                            Target::Draining {
                                key: key.clone(),
                                remove_at: now + dereg,
                            }
                        })
                    }
                }
                Some(Target::Draining { remove_at, key }) if now >= *remove_at => {
                    let key = key.clone();
                    if has_finalizer && !self.set_finalizer(host, pod, false).await {
                        // Changed meanwhile (a conflict): the deregistration is done, only the
                        // finalizer's removal is tried again at the next tick.
                        continue;
                    }
                    tracing::debug!(balancer = %self.finalizer, pod = %key.name, "deregistered");
                    self.targets.remove(uid);
                    None
                }
                Some(Target::Draining { .. }) => None,
            };
            if let Some(t) = next {
                self.targets.insert(uid.clone(), t);
            }
        }
    }

    /// Adds or removes this balancer's finalizer; returns whether the pod now has it as asked.
    async fn set_finalizer<H: Host>(&self, host: &H, pod: &PodView, present: bool) -> bool {
        let f = self.finalizer.clone();
        let result = host
            .modify_pod(&pod.object, Subresource::Main, |p| {
                let list = finalizers(p);
                if list.contains(&f) == present || (present && is_deleting(p)) {
                    return false;
                }
                let next: Vec<String> = if present {
                    list.into_iter().chain([f.clone()]).collect()
                } else {
                    list.into_iter().filter(|x| x != &f).collect()
                };
                p["metadata"]["finalizers"] = serde_json::json!(next);
                true
            })
            .await;
        result.is_some_and(|p| finalizers(&p).contains(&self.finalizer) == present)
    }
}
