//! The simulated scheduler and kubelet: places pods on nodes, runs their containers, reports status,
//! and finishes graceful deletions.
//!
//! It ticks every [`KUBELET_TICK`] and only looks at pods whose resourceVersion changed or whose next
//! timed transition is due, so thousands of idle pods cost little.

pub(crate) mod runtime;
mod status;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::host::Host;
use crate::nodes::node_is_ready;
use crate::store::meta::{is_deleting, meta_str, name_of, namespace_of, uid_of};
use crate::store::{ObjKey, Subresource};
use crate::time::now_rfc3339;
use runtime::{Container, Timing};
use status::{Placement, PodFacts, build_status};

/// How often the kubelet looks at pods: small, so that rollouts in tests are fast.
pub const KUBELET_TICK: Duration = Duration::from_millis(20);
/// Pod annotation overriding the cluster's container start delay, in milliseconds.
pub const START_DELAY_ANNOTATION: &str = "sim.cafe.io/start-delay-ms";

/// A node as the scheduler sees it.
#[derive(Debug, Clone)]
struct NodeInfo {
    name: String,
    index: usize,
    labels: Map<String, Value>,
    ready: bool,
    ip: String,
}

/// The kubelet's memory of one pod.
#[derive(Debug)]
struct PodRuntime {
    containers: Vec<Container>,
    node: Option<String>,
    host_ip: String,
    pod_ip: String,
    start_time: String,
    timing: Timing,
    last_rv: String,
    next_due: Option<Instant>,
    deletion_due: Option<Instant>,
}

/// The scheduler and kubelet of one cluster.
#[derive(Debug)]
pub(crate) struct Kubelet<H> {
    host: H,
    pods: HashMap<String, PodRuntime>,
    nodes_signature: Vec<(String, bool)>,
    next_ip: u32,
}

impl<H: Host> Kubelet<H> {
    /// A kubelet for a cluster.
    pub(crate) fn new(host: H) -> Self {
        Self {
            host,
            pods: HashMap::new(),
            nodes_signature: Vec::new(),
            next_ip: 0,
        }
    }

    /// Runs until the cluster shuts down.
    pub(crate) async fn run(mut self) {
        let mut tick = tokio::time::interval(KUBELET_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                () = self.host.shutdown().cancelled() => break,
                _ = tick.tick() => self.sync(Instant::now()).await,
            }
        }
    }

    /// One pass over the pods.
    pub(crate) async fn sync(&mut self, now: Instant) {
        let nodes = self.nodes();
        let signature: Vec<(String, bool)> =
            nodes.iter().map(|n| (n.name.clone(), n.ready)).collect();
        let nodes_changed = signature != self.nodes_signature;
        self.nodes_signature = signature;
        let pods = self.host.pods();
        let mut load: HashMap<String, usize> = HashMap::new();
        for p in &pods {
            if let Some(n) = p.pointer("/spec/nodeName").and_then(Value::as_str) {
                *load.entry(n.to_string()).or_default() += 1;
            }
        }
        let mut seen = HashSet::new();
        for pod in &pods {
            let uid = uid_of(pod).to_string();
            seen.insert(uid.clone());
            let rv = meta_str(pod, "resourceVersion").unwrap_or("");
            let idle = self
                .pods
                .get(&uid)
                .is_some_and(|r| r.last_rv == rv && r.next_due.is_none_or(|d| now < d));
            if idle && !nodes_changed {
                continue;
            }
            self.sync_pod(pod, &uid, now, &nodes, &mut load).await;
        }
        self.pods.retain(|uid, _| seen.contains(uid));
    }

    fn nodes(&self) -> Vec<NodeInfo> {
        self.host
            .nodes()
            .iter()
            .enumerate()
            .map(|(index, n)| NodeInfo {
                name: name_of(n).to_string(),
                index,
                labels: n
                    .pointer("/metadata/labels")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
                ready: node_is_ready(n),
                ip: n
                    .pointer("/status/addresses/0/address")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            })
            .collect()
    }

    fn timing_for(&self, pod: &Value) -> Timing {
        let start_delay = pod
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(START_DELAY_ANNOTATION))
            .and_then(Value::as_str)
            .and_then(|ms| ms.parse::<u64>().ok())
            .map_or(self.host.config().start_delay, Duration::from_millis);
        Timing {
            start_delay,
            crash_interval: self.host.config().crash_interval,
        }
    }

    async fn sync_pod(
        &mut self,
        pod: &Arc<Value>,
        uid: &str,
        now: Instant,
        nodes: &[NodeInfo],
        load: &mut HashMap<String, usize>,
    ) {
        let timing = self.timing_for(pod);
        let key = ObjKey::new(namespace_of(pod), name_of(pod));
        let bound = pod
            .pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut bind_to = None;
        let mut unschedulable = String::new();
        let rt = self
            .pods
            .entry(uid.to_string())
            .or_insert_with(|| PodRuntime {
                containers: Vec::new(),
                node: None,
                host_ip: String::new(),
                pod_ip: String::new(),
                start_time: String::new(),
                timing,
                last_rv: String::new(),
                next_due: None,
                deletion_due: None,
            });
        rt.timing = timing;
        if rt.node.is_none() {
            let target = match &bound {
                Some(n) => nodes.iter().find(|node| &node.name == n),
                // Without a scheduler of its own, a kubelet runs only what was bound to it.
                None if is_deleting(pod) || !self.host.schedules() => return,
                None => choose_node(pod, nodes, load).inspect(|n| {
                    bind_to = Some(n.name.clone());
                    *load.entry(n.name.clone()).or_default() += 1;
                }),
            };
            match target {
                Some(node) => {
                    self.next_ip += 1;
                    rt.node = Some(node.name.clone());
                    rt.host_ip = node.ip.clone();
                    rt.pod_ip = format!("10.244.{}.{}", node.index, self.next_ip % 250 + 2);
                    rt.start_time = now_rfc3339();
                }
                None => unschedulable = unschedulable_message(pod, nodes),
            }
        }
        if rt.node.is_some() {
            sync_containers(rt, pod, now);
            for c in &mut rt.containers {
                c.advance(now, rt.timing);
            }
        }
        let node_ready = rt
            .node
            .as_ref()
            .is_some_and(|n| nodes.iter().any(|node| &node.name == n && node.ready));
        let deleting = is_deleting(pod);
        if deleting && rt.node.is_some() {
            let due = *rt.deletion_due.get_or_insert_with(|| {
                tracing::debug!(pod = %key.name, "terminating");
                let grace = pod
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
                    .max(0) as f64;
                now + Duration::from_secs_f64(grace * self.host.config().grace_period_scale)
            });
            let graceful_part_pending = pod
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_some_and(|g| g > 0);
            if now >= due && graceful_part_pending {
                tracing::debug!(pod = %key.name, "grace period over; deleting");
                self.host.finish_pod_deletion(&key, uid).await;
                rt.last_rv.clear();
                return;
            }
        }
        let placement = match &rt.node {
            Some(_) => Placement::Node {
                host_ip: &rt.host_ip,
            },
            None => Placement::Unschedulable(&unschedulable),
        };
        let now_str = now_rfc3339();
        let facts = PodFacts {
            placement,
            node_ready,
            containers: &rt.containers,
            pod_ip: &rt.pod_ip,
            start_time: &rt.start_time,
            deleting,
            now: &now_str,
        };
        let written = self
            .host
            .modify_pod(pod, Subresource::Status, |p| {
                let mut changed = false;
                if let Some(node) = &bind_to {
                    p["spec"]["nodeName"] = Value::String(node.clone());
                    changed = true;
                }
                let status = build_status(p, &facts);
                if p.get("status") != Some(&status) {
                    p["status"] = status;
                    changed = true;
                }
                changed
            })
            .await;
        rt.last_rv = written
            .as_deref()
            .or(Some(pod.as_ref()))
            .and_then(|p| meta_str(p, "resourceVersion"))
            .unwrap_or("")
            .to_string();
        rt.next_due = rt
            .containers
            .iter()
            .filter_map(Container::next_due)
            .chain(rt.deletion_due.filter(|_| deleting))
            .min();
    }
}

/// Creates, replaces and re-images containers to match the pod spec.
fn sync_containers(rt: &mut PodRuntime, pod: &Value, now: Instant) {
    let spec: Vec<(String, String)> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .map(|c| {
                    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                    (s("name"), s("image"))
                })
                .collect()
        })
        .unwrap_or_default();
    let mut next = Vec::with_capacity(spec.len());
    for (name, image) in spec {
        let existing = rt
            .containers
            .iter()
            .position(|c| c.name == name)
            .map(|i| rt.containers.remove(i));
        let c = match existing {
            Some(mut c) => {
                if c.image != image {
                    tracing::debug!(container = %name, %image, "image changed; restarting container");
                    c.change_image(&image, now, rt.timing);
                }
                c
            }
            None => Container::create(&name, &image, now, rt.timing),
        };
        next.push(c);
    }
    rt.containers = next;
}

/// The ready node with the fewest pods among those matching the pod's nodeSelector.
fn choose_node<'a>(
    pod: &Value,
    nodes: &'a [NodeInfo],
    load: &HashMap<String, usize>,
) -> Option<&'a NodeInfo> {
    nodes
        .iter()
        .filter(|n| n.ready && selector_matches(pod, n))
        .min_by_key(|n| (load.get(&n.name).copied().unwrap_or(0), n.index))
}

fn selector_matches(pod: &Value, node: &NodeInfo) -> bool {
    pod.pointer("/spec/nodeSelector")
        .and_then(Value::as_object)
        .is_none_or(|sel| sel.iter().all(|(k, v)| node.labels.get(k) == Some(v)))
}

fn unschedulable_message(pod: &Value, nodes: &[NodeInfo]) -> String {
    let mismatched = nodes.iter().filter(|n| !selector_matches(pod, n)).count();
    let not_ready = nodes
        .iter()
        .filter(|n| selector_matches(pod, n) && !n.ready)
        .count();
    let mut parts = Vec::new();
    if mismatched > 0 {
        parts.push(format!(
            "{mismatched} node(s) didn't match Pod's node affinity/selector"
        ));
    }
    if not_ready > 0 {
        parts.push(format!(
            "{not_ready} node(s) had untolerated taint {{node.kubernetes.io/not-ready: }}"
        ));
    }
    format!(
        "0/{} nodes are available: {}.",
        nodes.len(),
        parts.join(", ")
    )
}
