//! # cafe-sim: a simulated Kubernetes member cluster
//!
//! `cafe-sim` starts simulated clusters in-process, each a real HTTP server on its own loopback port
//! speaking the subset of the Kubernetes REST API that the cafe agent, kube-rs and kubectl use, with a
//! simulated scheduler and kubelet, simulated load balancers that hold pod finalizers, a prober counting
//! lost requests, and fault injection.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use cafe_sim::{SimCluster, SimConfig};
//! let cluster = SimCluster::start(
//!     SimConfig::new("sh-dc1").with_zones(["sh-az1", "sh-az2"]).with_traffic_finalizer("traffic.cafe.io/lb"),
//! )
//! .await?;
//! let client = cluster.client()?; // a kube::Client
//! cluster.write_kubeconfig("/tmp/sh-dc1.kubeconfig")?;
//! println!("{} lost requests", cluster.traffic().lost);
//! cluster.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! ## What is served
//! Discovery (`/version`, `/api`, `/api/v1`, `/apis`, `/apis/{g}`, `/apis/{g}/{v}`, plain JSON only);
//! core/v1 namespaces, pods (+status), nodes (+status), events, services (+status), configmaps;
//! coordination.k8s.io/v1 leases; events.k8s.io/v1 events; apiextensions.k8s.io/v1
//! CustomResourceDefinitions, whose creation starts serving the custom resource (namespaced or
//! cluster-scoped, with the status subresource when declared). Verbs: get, list (label and field
//! selectors, `limit`/`continue`), watch, create, update, patch, delete, deletecollection. kubectl gets
//! `meta.k8s.io/v1` Tables when it asks for them (lists, gets and watches).
//!
//! The control endpoints `GET /sim/v1/traffic` (`{"sent": N, "lost": M}`), `GET|POST /sim/v1/faults`
//! (see [`Faults`] and [`FaultsUpdate`]) and `POST /sim/v1/nodes/{node}/ready` (`{"ready": false}`) are
//! not subject to faults.
//!
//! ## Semantics kept from Kubernetes
//! One resourceVersion counter per cluster; `metadata.generation` bumped only on spec changes (custom
//! resources with a status subresource: not on status or metadata writes; without one: on anything but
//! metadata); `uid`, `creationTimestamp` set by the server; `generateName` with a random five-character
//! suffix; `Status` error bodies (404, 409 AlreadyExists / Conflict, 410 Expired, 415, 422, 429 with
//! `Retry-After`, 500); pod specs immutable except container images, `activeDeadlineSeconds`,
//! tolerations, `terminationGracePeriodSeconds` and scheduling gates (422 otherwise); writes that change
//! nothing do not bump the resourceVersion; watches replay retained history from a resourceVersion and
//! answer an `ERROR` event with 410 Expired (reason `Expired`) for an older one, send BOOKMARKs when
//! allowed, honour `timeoutSeconds` and `sendInitialEvents`, and send an object leaving a selector as
//! DELETED and one entering it as ADDED; deletion with finalizers sets `deletionTimestamp` and
//! `deletionGracePeriodSeconds`, refuses new finalizers, and removes the object when the last one goes;
//! namespaces terminate after their contents; owner references cascade in the background.
//!
//! ## Simplifications (on purpose)
//! - **No authentication or authorization**, plain HTTP only; the kubeconfig has an empty user (see
//!   the differences above).
//! - **Time**: pod grace periods are multiplied by [`SimConfig::grace_period_scale`] (default 0.01, so
//!   the default 30 s lasts 300 ms); `deletionTimestamp` still shows the unscaled time.
//! - **Versions**: custom resources are stored as sent, without conversion between served versions.
//! - **Server-side apply** (`application/apply-patch+yaml`, `fieldManager` required): the applied
//!   configuration is merged with strategic-merge rules (lists with a known merge key such as
//!   containers by `name`, conditions by `type`, merge by item; `finalizers` as a set; other lists are
//!   replaced). Each apply manager's fields are kept in `metadata.managedFields` (FieldsV1), one entry
//!   per manager and subresource: for a kind with a status subresource, a main-resource apply owns
//!   everything but `status`, an apply on `/status` (which cannot create the object) owns only `status`
//!   and records `subresource: status`. A field a manager applied before and omits now is removed unless
//!   another apply manager owns it; a list item goes whole (its merge key, owned with it, included), and
//!   an object or list the removal leaves empty goes too unless an apply manager owns it or something in
//!   it; since non-apply writes record no ownership, the manager whose fields filled it is taken to
//!   have created it. Applying a different value to a field another apply manager owns is a 409
//!   Conflict unless `force=true`, which takes ownership. No schema validation.
//! - **Strategic merge patch** uses a fixed table of merge keys (containers, env, volumes, ports,
//!   conditions, readinessGates, ownerReferences, ...) rather than OpenAPI schemas; custom resources
//!   answer 415 to it, like Kubernetes.
//! - **No schemas**: `/openapi/v3` serves path stubs only (enough for kubectl to leave validation to the
//!   server); `fieldValidation` is accepted and ignored, and objects are not checked against CRD schemas.
//! - **Updates** do not require `metadata.resourceVersion` (unconditional updates are allowed for every
//!   kind); when present it must match (409 Conflict).
//! - **Deletion**: `propagationPolicy=Foreground` behaves as Background; deleting a CRD drops its custom
//!   resources at once, ignoring their finalizers; `dryRun` is not supported.
//! - **Scheduling** honours `nodeSelector` and node readiness only (no affinity, taints, resources); pods
//!   are spread to the least loaded matching node.
//! - **Kubelet** ([`KUBELET_TICK`]): containers wait in `ContainerCreating` for the start delay
//!   ([`SimConfig::start_delay`], per pod [`START_DELAY_ANNOTATION`] in milliseconds), then run ready (no
//!   probes). An image containing `crashloop` runs for [`SimConfig::crash_interval`], crashes and backs
//!   off (`CrashLoopBackOff`) with a growing `restartCount`, never ready; one containing `badimage`
//!   alternates `ErrImagePull` / `ImagePullBackOff`. An in-place image change restarts that container
//!   (`restartCount` + 1, running but unready for the start delay). A NotReady node makes its pods'
//!   containers unready. A pod being deleted is unready at once and is removed when its scaled grace
//!   period ends (and its finalizers are gone).
//! - **Traffic** (see [`TRAFFIC_TICK`]): each traffic finalizer is a load balancer. It registers a pod
//!   (adds the finalizer) as soon as the pod is Ready (every readiness gate True) and not terminating;
//!   when a registered pod stops qualifying, the balancer notices after
//!   [`SimConfig::lb_reaction_delay`] (endpoint propagation), stops sending to it at once, and removes
//!   its finalizer after [`SimConfig::deregistration_delay`]. The prober sends each registered pod one
//!   request per tick; a request is lost when the pod is gone, terminating, not Running, or its
//!   containers are not ready. The readiness gate alone does not lose requests: a drained pod serves
//!   until the balancer lets go, so a drained pod loses none while a pod deleted or restarted while
//!   registered loses those sent during the reaction delay.
//! - **Faults**: `dropWatches` is an action (closes every open watch once, cleanly; reads back false);
//!   `offline` closes each API request's connection without an answer and aborts open watches;
//!   `errorRate` answers that share of API requests with 500 or 429 (half each); `latencyMs` delays
//!   every API request.
//!
//! ## Real control planes ([`control_plane`], [`SimNodes`], [`member`])
//! The same kubelet and load balancers also run against any API server as a kube-rs controller
//! ([`SimNodes`], `cafe-sim nodes --kubeconfig K`): they register Nodes with zone labels, renew their
//! Leases, run the pods kube-scheduler binds to them, write pod status through `/status` with the
//! copy's resourceVersion, finish graceful deletions with grace 0, and hold the traffic finalizers.
//! [`control_plane::ControlPlane`] starts etcd, kube-apiserver (RBAC and the default admission
//! plugins), kube-controller-manager and kube-scheduler from the binaries `scripts/control-plane.sh`
//! builds, and [`member::Members`] gives tests either backend (`CAFE_CLUSTERS=sim|kube`). Against a
//! real API server only `offline` can be injected (the API server process is stopped with SIGSTOP,
//! so connections hang as to a datacenter cut off); latency, errors and dropped watches would need a
//! proxy in front of it, and `/sim/v1/faults` refuses them naming the field.
//!
//! ## Where cafe-sim and a real API server differ
//! Found by running the same tests on both (`sim/tests/kubelet.rs`, `traffic.rs`, the agent's and
//! the end-to-end tests):
//! - **Authorization.** cafe-sim authorizes everything, so a ClusterRole missing a verb goes unseen:
//!   the shipped role lacked `create` and `delete` on InPlaceSets, which the hub link needs, and every
//!   slice write was refused with 403 on a real cluster. Not simulated (RBAC is the real API
//!   server's job); the agent's tests run on `kube` with the shipped role instead.
//! - **Writes decided on an older copy.** The simulated kubelet read a snapshot, then applied its
//!   decision to the newest copy; when a pod had been deleted in between, the status written was
//!   the newest copy's (terminating) while the kubelet remembered the snapshot's (not terminating),
//!   and it never finished the deletion. cafe-sim's store hides this (it applies a change under its
//!   lock); against a real API server every write now carries the copy it was decided on and a 409
//!   sends the kubelet back to look again.
//! - **ServiceAccount admission.** A real API server refuses a pod until its namespace's `default`
//!   ServiceAccount exists (kube-controller-manager makes it a moment after the namespace), and adds
//!   the projected token volume and default tolerations to every pod; cafe-sim admits pods at once
//!   and defaults nothing. The agent's retries cover the first; it compares images and revisions,
//!   not whole specs, so the second does not disturb it.
//! - **New nodes are tainted** `node.kubernetes.io/not-ready:NoSchedule` by the TaintNodesByCondition
//!   admission plugin until the node lifecycle controller sees them Ready; cafe-sim's nodes are
//!   schedulable at once.
//! - **Unschedulable messages** come from kube-scheduler (with its preemption note); cafe-sim writes
//!   a shorter message of the same form. Only the reason, `Unschedulable`, is relied on.

mod api;
pub mod application;
mod apply;
mod cluster;
mod config;
pub mod control_plane;
mod error;
mod faults;
mod host;
mod kubeconfig;
mod kubelet;
pub mod member;
mod nodes;
mod patch;
mod remote;
mod selector;
mod server;
mod state;
mod status;
mod store;
mod time;
mod traffic;

pub use application::{Behaviour, ImageBehaviour, parse_behaviour};
pub use cluster::SimCluster;
pub use config::{
    DEFAULT_BOOKMARK_INTERVAL, DEFAULT_CRASH_INTERVAL, DEFAULT_DEREGISTRATION_DELAY,
    DEFAULT_GRACE_PERIOD_SCALE, DEFAULT_LB_REACTION_DELAY, DEFAULT_NODES, DEFAULT_START_DELAY,
    DEFAULT_WATCH_HISTORY, SimConfig,
};
pub use error::SimError;
pub use faults::{Faults, FaultsUpdate};
pub use kubelet::runtime::{BAD_IMAGE_MARKER, CRASHLOOP_IMAGE_MARKER};
pub use kubelet::{KUBELET_TICK, START_DELAY_ANNOTATION};
pub use nodes::{HOSTNAME_LABEL, ZONE_LABEL};
pub use remote::{FaultInjector, NODE_HEARTBEAT, NoFaults, SimNodes};
pub use traffic::{TRAFFIC_TICK, TrafficCounts};

/// Runs `cafe-sim serve`: starts one cluster, optionally writes its kubeconfig, prints the URL line
/// `cafe-sim: cluster NAME listening on URL` on stdout (tests wait for it), and runs until `shutdown`
/// completes.
pub async fn serve(
    config: SimConfig,
    kubeconfig_out: Option<std::path::PathBuf>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SimError> {
    let cluster = SimCluster::start(config).await?;
    if let Some(path) = &kubeconfig_out {
        cluster.write_kubeconfig(path)?;
    }
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // stdout is the binary's interface here: the line announces the port that was picked.
        let _ = writeln!(
            out,
            "cafe-sim: cluster {} listening on {}",
            cluster.name(),
            cluster.url()
        );
        let _ = out.flush();
    }
    shutdown.await;
    cluster.shutdown().await;
    Ok(())
}
