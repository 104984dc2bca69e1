//! Simulated nodes.

use serde_json::{Value, json};

use crate::config::SimConfig;
use crate::store::meta::uid_of;
use crate::store::registry::ResourceId;
use crate::store::{ObjKey, Store, Subresource};
use crate::time::now_rfc3339;

/// Label carrying a node's zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
/// Label carrying a node's hostname.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Pods each node accepts.
const PODS_PER_NODE: u32 = 110;

/// The name of node `i` of a cluster.
pub(crate) fn node_name(cluster: &str, i: usize) -> String {
    format!("{cluster}-node-{i}")
}

/// The node objects of a cluster.
pub(crate) fn node_objects(config: &SimConfig) -> Vec<Value> {
    let zones = config.effective_zones();
    (0..config.nodes)
        .map(|i| {
            let name = node_name(&config.name, i);
            let zone = &zones[i % zones.len()];
            json!({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "labels": {
                        HOSTNAME_LABEL: name,
                        ZONE_LABEL: zone,
                        "topology.kubernetes.io/region": config.name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                        "node.kubernetes.io/instance-type": "cafe-sim",
                    },
                },
                "spec": {"podCIDR": format!("10.244.{i}.0/24")},
                "status": {
                    "conditions": [ready_condition(true)],
                    "addresses": [
                        {"type": "InternalIP", "address": format!("10.0.{}.{}", i / 250, i % 250 + 1)},
                        {"type": "Hostname", "address": name},
                    ],
                    "capacity": {"cpu": "8", "memory": "32Gi", "pods": PODS_PER_NODE.to_string()},
                    "allocatable": {"cpu": "8", "memory": "32Gi", "pods": PODS_PER_NODE.to_string()},
                    "nodeInfo": {
                        "kubeletVersion": "v1.33.0-cafe-sim",
                        "containerRuntimeVersion": "cafe-sim://1",
                        "operatingSystem": "linux",
                        "architecture": "amd64",
                        "osImage": "cafe-sim",
                        "kernelVersion": "6.1.0",
                        "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": "",
                    },
                },
            })
        })
        .collect()
}

pub(crate) fn ready_condition(ready: bool) -> Value {
    let now = now_rfc3339();
    json!({
        "type": "Ready",
        "status": if ready { "True" } else { "False" },
        "reason": if ready { "KubeletReady" } else { "KubeletNotReady" },
        "message": if ready { "kubelet is posting ready status" } else { "simulated node failure" },
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    })
}

/// Whether a node object is Ready.
pub(crate) fn node_is_ready(node: &Value) -> bool {
    node.pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .is_some_and(|c| c["status"] == "True")
}

/// Makes a node Ready or NotReady; false when there is no such node.
pub(crate) fn set_node_ready(store: &Store, name: &str, ready: bool) -> bool {
    let id = ResourceId::new("", "nodes");
    let key = ObjKey::new("", name);
    let Some(node) = store
        .snapshot(&id)
        .into_iter()
        .find(|n| n["metadata"]["name"] == name)
    else {
        return false;
    };
    let uid = uid_of(&node).to_string();
    store.modify(&id, &key, &uid, Subresource::Status, |n| {
        if node_is_ready(n) == ready {
            return false;
        }
        n["status"]["conditions"] = json!([ready_condition(ready)]);
        true
    });
    tracing::info!(node = name, ready, "node readiness changed");
    true
}
