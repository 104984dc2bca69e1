//! `meta.k8s.io/v1` Tables, which kubectl asks for when it prints `get` output.

use std::sync::Arc;

use axum::http::{HeaderMap, header};
use serde_json::{Value, json};

use crate::store::registry::{ResourceType, Special};
use crate::time::{parse_rfc3339, short_age};

/// Whether the client asked for a Table (`Accept: application/json;as=Table;...`).
pub(crate) fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| {
            a.split(',')
                .next()
                .is_some_and(|first| first.contains("as=Table"))
        })
}

fn column(name: &str, kind: &str, priority: u8) -> Value {
    json!({"name": name, "type": kind, "format": if name == "Name" { "name" } else { "" },
           "description": name, "priority": priority})
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

fn age(obj: &Value) -> String {
    parse_rfc3339(str_at(obj, "/metadata/creationTimestamp"))
        .map(short_age)
        .unwrap_or_else(|| "<unknown>".into())
}

/// A Table of `items`.
pub(crate) fn table(rt: &ResourceType, items: &[Arc<Value>], metadata: Option<Value>) -> Value {
    let columns = match rt.special {
        Special::Pod => vec![
            column("Name", "string", 0),
            column("Ready", "string", 0),
            column("Status", "string", 0),
            column("Restarts", "string", 0),
            column("Age", "string", 0),
            column("IP", "string", 1),
            column("Node", "string", 1),
        ],
        Special::Namespace => vec![
            column("Name", "string", 0),
            column("Status", "string", 0),
            column("Age", "string", 0),
        ],
        _ if rt.id.plural == "nodes" => vec![
            column("Name", "string", 0),
            column("Status", "string", 0),
            column("Age", "string", 0),
        ],
        _ => vec![column("Name", "string", 0), column("Age", "string", 0)],
    };
    let rows: Vec<Value> = items
        .iter()
        .map(|obj| {
            let name = str_at(obj, "/metadata/name");
            let cells = match rt.special {
                Special::Pod => pod_cells(obj),
                Special::Namespace => json!([name, str_at(obj, "/status/phase"), age(obj)]),
                _ if rt.id.plural == "nodes" => {
                    let ready = obj
                        .pointer("/status/conditions")
                        .and_then(Value::as_array)
                        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                        .is_some_and(|c| c["status"] == "True");
                    json!([name, if ready { "Ready" } else { "NotReady" }, age(obj)])
                }
                _ => json!([name, age(obj)]),
            };
            json!({"cells": cells, "object": obj.as_ref()})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata.unwrap_or_else(|| json!({})),
        "columnDefinitions": columns,
        "rows": rows,
    })
}

fn pod_cells(pod: &Value) -> Value {
    let statuses = pod
        .pointer("/status/containerStatuses")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let total = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let ready = statuses.iter().filter(|s| s["ready"] == true).count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|s| s["restartCount"].as_i64())
        .sum();
    let waiting = statuses
        .iter()
        .find_map(|s| s.pointer("/state/waiting/reason").and_then(Value::as_str));
    let status = if pod.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else if let Some(reason) = waiting {
        reason
    } else {
        str_at(pod, "/status/phase")
    };
    json!([
        str_at(pod, "/metadata/name"),
        format!("{ready}/{total}"),
        status,
        restarts.to_string(),
        age(pod),
        str_at(pod, "/status/podIP"),
        str_at(pod, "/spec/nodeName"),
    ])
}
