//! The InPlaceSet controller (DESIGN section 7): a kube-runtime `Controller` over InPlaceSets owning
//! Pods. Each reconcile reads the set and its pods from the reflector caches, plans with
//! [`crate::plan::plan`], applies the plan with a thin executor, and writes the status.

mod backoff;
mod execute;
pub mod expectations;

use crate::clock::{Clock, SystemClock};
use crate::crd::InPlaceSet;
use crate::desired::Desired;
use crate::error::Error;
use crate::metrics::{Metrics, ReconcileResult};
use crate::names::{CONTROLLER_NAME, FIELD_MANAGER, SET_LABEL};
use crate::observed::ObservedPod;
use crate::plan::{PlanInput, Progress, plan};
use crate::podspec::Owner;
use crate::status::{RELEASE_FAILED, StatusInput, compute};
use execute::Executor;
use expectations::Expectations;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::jiff::SignedDuration;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::Instrument;

/// Default time containers may stay unready before the pod is reported failing (NotReady): the
/// Kubernetes default progressDeadlineSeconds.
pub const DEFAULT_UNREADY_DEADLINE: Duration = Duration::from_secs(600);
/// Look at every set at least this often, even without events.
const RESYNC_INTERVAL: Duration = Duration::from_secs(300);
/// Look again this soon after a write was refused because the view was stale, or failed while others
/// succeeded.
const STALE_VIEW_REQUEUE: Duration = Duration::from_millis(50);
/// Look again this soon while the pod cache is still loading.
const CACHE_LOADING_REQUEUE: Duration = Duration::from_millis(100);
/// The first retry after a failed reconcile; doubled per consecutive failure.
const ERROR_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// The longest wait between retries of a failing reconcile.
const ERROR_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// How the controller runs.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Watch only this namespace (`None`: every namespace).
    pub namespace: Option<String>,
    /// Containers unready this long make a pod a problem (and hold a release on its revision).
    pub unready_deadline: Duration,
    /// The reporting instance on Events (e.g. the agent pod's name).
    pub instance: Option<String>,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        Self {
            namespace: None,
            unready_deadline: DEFAULT_UNREADY_DEADLINE,
            instance: None,
        }
    }
}

/// What every reconcile needs.
pub struct Context {
    client: Client,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
    metrics: Metrics,
    recorder: Recorder,
    clock: Arc<dyn Clock>,
    config: ControllerConfig,
    failures: Mutex<HashMap<String, u32>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("config", &self.config)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Publishes an Event on a set; Events are best effort, a failure is only logged.
    async fn publish(&self, event: &Event, set: &ObjectReference) {
        if let Err(error) = self.recorder.publish(event, set).await {
            tracing::debug!(%error, reason = %event.reason, "event not published");
        }
    }

    fn backoff(&self, set_uid: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(set_uid.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let factor = 2u32.saturating_pow(n.saturating_sub(1).min(16));
        ERROR_BACKOFF_BASE
            .saturating_mul(factor)
            .min(ERROR_BACKOFF_MAX)
    }

    fn succeeded(&self, set_uid: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(set_uid);
    }
}

/// Runs the controller until `shutdown` completes (then it finishes the reconciles in flight).
pub async fn run_controller(
    client: Client,
    config: ControllerConfig,
    metrics: Metrics,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) -> Result<(), Error> {
    let (sets, pods_api): (Api<InPlaceSet>, Api<Pod>) = match &config.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let (reader, writer) = reflector::store();
    let expectations = Arc::new(Expectations::default());
    let tap = Arc::clone(&expectations);
    let mut list_started = Instant::now();
    let pod_events = watcher(pods_api, watcher::Config::default().labels(SET_LABEL))
        .backoff(backoff::WatchBackoff::default())
        .reflect(writer)
        .inspect(move |event| {
            if let Ok(event) = event {
                observe(&tap, &mut list_started, event);
            }
        })
        .touched_objects()
        // Errors are retried by the backoff above; passed on, they would also pause the
        // controller's other triggers.
        .filter_map(|pod| {
            futures::future::ready(match pod {
                Ok(pod) => Some(Ok(pod)),
                Err(error) => {
                    tracing::warn!(%error, "pod watch failed; retrying");
                    None
                }
            })
        });
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: CONTROLLER_NAME.into(),
            instance: config.instance.clone(),
        },
    );
    let ctx = Arc::new(Context {
        client,
        pods: reader,
        expectations,
        metrics,
        recorder,
        clock: Arc::new(SystemClock),
        config,
        failures: Mutex::default(),
    });
    tracing::info!(namespace = ?ctx.config.namespace, "InPlaceSet controller starting");
    Controller::new(sets, watcher::Config::default())
        .owns_stream(pod_events)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| async move {
            match result {
                Ok((set, _)) => tracing::trace!(%set, "reconciled"),
                Err(error) => tracing::warn!(%error, "controller"),
            }
        })
        .await;
    tracing::info!("InPlaceSet controller stopped");
    Ok(())
}

/// Feeds the pod watch (after the cache applied each event) to the expectations.
fn observe(expectations: &Expectations, list_started: &mut Instant, event: &watcher::Event<Pod>) {
    let uid_rv = |pod: &Pod| {
        (
            pod.uid().unwrap_or_default(),
            pod.resource_version().unwrap_or_default(),
        )
    };
    match event {
        watcher::Event::Apply(pod) => {
            let (uid, rv) = uid_rv(pod);
            expectations.observe(&uid, &rv);
        }
        watcher::Event::Delete(pod) => expectations.observe_deleted(&pod.uid().unwrap_or_default()),
        watcher::Event::Init => *list_started = Instant::now(),
        watcher::Event::InitApply(_) => {}
        watcher::Event::InitDone => expectations.relisted(*list_started),
    }
}

async fn reconcile(set: Arc<InPlaceSet>, ctx: Arc<Context>) -> Result<Action, Error> {
    let span = tracing::info_span!(
        "reconcile",
        set = %set.name_any(),
        namespace = %set.namespace().unwrap_or_default(),
        generation = set.metadata.generation.unwrap_or_default(),
    );
    let started = Instant::now();
    let result = reconcile_set(&set, &ctx).instrument(span).await;
    let outcome = match &result {
        Ok(Step::Planned(_)) => ReconcileResult::Ok,
        Ok(Step::Waited(_)) => ReconcileResult::Waited,
        Err(_) => ReconcileResult::Error,
    };
    ctx.metrics
        .reconciled(outcome, started.elapsed().as_secs_f64());
    if result.is_ok() {
        ctx.succeeded(&set.uid().unwrap_or_default());
    }
    result.map(|step| match step {
        Step::Planned(action) | Step::Waited(action) => action,
    })
}

/// How a reconcile that did not fail ended.
#[derive(Debug)]
enum Step {
    /// Planned and applied; look again then.
    Planned(Action),
    /// Did not plan: the caches are not up to date yet.
    Waited(Action),
}

async fn reconcile_set(set: &InPlaceSet, ctx: &Context) -> Result<Step, Error> {
    if futures::FutureExt::now_or_never(ctx.pods.wait_until_ready()).is_none() {
        return Ok(Step::Waited(Action::requeue(CACHE_LOADING_REQUEUE)));
    }
    if set.metadata.deletion_timestamp.is_some() {
        // The garbage collector removes the pods with their owner.
        return Ok(Step::Waited(Action::await_change()));
    }
    let owner = Owner {
        name: set.name_any(),
        namespace: set.namespace().ok_or(Error::MissingMetadata("namespace"))?,
        uid: set.uid().ok_or(Error::MissingMetadata("uid"))?,
    };
    if ctx.expectations.pending(&owner.uid) {
        tracing::debug!("waiting for the cache to show earlier writes");
        return Ok(Step::Waited(Action::requeue(
            expectations::EXPECTATION_TIMEOUT,
        )));
    }
    let set_ref = set.object_ref(&());
    let desired = match Desired::from_spec(&set.spec) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "invalid spec");
            let event = Event {
                type_: EventType::Warning,
                reason: "InvalidSpec".into(),
                note: Some(e.to_string()),
                action: "Reconcile".into(),
                secondary: None,
            };
            ctx.publish(&event, &set_ref).await;
            return Ok(Step::Planned(Action::await_change()));
        }
    };
    let now = ctx.clock.now();
    let pods: Vec<ObservedPod> = ctx
        .pods
        .state()
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(owner.namespace.as_str()))
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == owner.uid)
        })
        .map(|p| ObservedPod::from_pod(p, &desired.traffic.gate))
        .collect();
    let unready_deadline =
        SignedDuration::try_from(ctx.config.unready_deadline).unwrap_or(SignedDuration::MAX);
    let plan = plan(&PlanInput {
        desired: &desired,
        pods: &pods,
        now,
        unready_deadline,
    });
    tracing::debug!(progress = ?plan.progress, actions = plan.actions.len(), pods = pods.len(), "planned");
    let executor = Executor {
        ctx,
        pods: Api::namespaced(ctx.client.clone(), &owner.namespace),
        owner: &owner,
        desired: &desired,
        set_ref: &set_ref,
    };
    let outcome = executor.apply(plan.actions.clone()).await;

    let status = compute(&StatusInput {
        desired: &desired,
        pods: &pods,
        plan: &plan,
        generation: set.metadata.generation.unwrap_or_default(),
        previous: set.status.as_ref(),
        now,
    });
    let mut outcome = outcome;
    if set.status.as_ref() != Some(&status) {
        match write_status(ctx, &owner, set.status.as_ref(), &status).await {
            Ok(()) => announce(ctx, set, &status, plan.progress, &set_ref).await,
            Err(error) => outcome.errors.push(error),
        }
    }
    let failed = outcome.errors.len();
    if let Some(error) = outcome.errors.into_iter().next() {
        if outcome.applied == 0 {
            return Err(error);
        }
        // Progress was made: retry soon rather than back off (one failed write among many is the
        // common case under API errors, and would otherwise keep the set backing off).
        tracing::warn!(%error, failed, applied = outcome.applied, "some writes failed; retrying");
    }
    let next = if outcome.stale > 0 || failed > 0 {
        STALE_VIEW_REQUEUE
    } else {
        plan.requeue_after
            .unwrap_or(RESYNC_INTERVAL)
            .min(RESYNC_INTERVAL)
    };
    Ok(Step::Planned(Action::requeue(next)))
}

/// Writes the status with a JSON merge patch of the whole status, nulling the fields the previous
/// status had and this one leaves out (an empty `problems` list, a condition message), so nothing
/// stale survives whatever the server's apply bookkeeping does.
async fn write_status(
    ctx: &Context,
    owner: &Owner,
    previous: Option<&crate::crd::InPlaceSetStatus>,
    status: &crate::crd::InPlaceSetStatus,
) -> Result<(), Error> {
    let sets: Api<InPlaceSet> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    let mut body = serde_json::to_value(status).map_err(Error::Serialize)?;
    let old = previous.and_then(|p| serde_json::to_value(p).ok());
    if let (Some(body), Some(serde_json::Value::Object(old))) = (body.as_object_mut(), old) {
        for key in old.keys() {
            body.entry(key.clone()).or_insert(serde_json::Value::Null);
        }
    }
    let patch = serde_json::json!({"status": body});
    sets.patch_status(&owner.name, &field_manager(), &Patch::Merge(&patch))
        .await
        .map_err(|e| Error::kube("write status", e))?;
    Ok(())
}

pub(super) fn field_manager() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    }
}

/// Events for changes of the set's state an operator cares about.
async fn announce(
    ctx: &Context,
    set: &InPlaceSet,
    status: &crate::crd::InPlaceSetStatus,
    progress: Progress,
    set_ref: &ObjectReference,
) {
    let condition = |s: Option<&crate::crd::InPlaceSetStatus>, t: &str| {
        s.and_then(|s| s.conditions.iter().find(|c| c.type_ == t).cloned())
    };
    let before = set.status.as_ref();
    let failed_now = condition(Some(status), RELEASE_FAILED).filter(|c| c.status == "True");
    let failed_before = condition(before, RELEASE_FAILED).is_some_and(|c| c.status == "True");
    if let Some(failed) = failed_now.filter(|_| !failed_before) {
        tracing::warn!(reason = %failed.reason, message = %failed.message, "release failed");
        let event = Event {
            type_: EventType::Warning,
            reason: "ReleaseFailed".into(),
            note: Some(failed.message),
            action: "Update".into(),
            secondary: None,
        };
        ctx.publish(&event, set_ref).await;
    }
    let complete_before = before.is_some_and(|s| {
        s.update_revision == status.update_revision && s.current_revision == status.current_revision
    }) && condition(before, crate::status::PROGRESSING)
        .is_some_and(|c| c.reason == "RolloutComplete");
    if progress == Progress::Complete && !complete_before {
        tracing::info!(revision = ?status.update_revision, replicas = status.replicas, "rollout complete");
        let event = Event {
            type_: EventType::Normal,
            reason: "RolloutComplete".into(),
            note: Some(format!(
                "{} pods run revision {}",
                status.replicas,
                status.update_revision.as_deref().unwrap_or_default()
            )),
            action: "Update".into(),
            secondary: None,
        };
        ctx.publish(&event, set_ref).await;
    }
}

fn error_policy(set: Arc<InPlaceSet>, error: &Error, ctx: Arc<Context>) -> Action {
    let delay = ctx.backoff(&set.uid().unwrap_or_default());
    tracing::warn!(set = %set.name_any(), %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}
