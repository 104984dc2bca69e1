//! Verbs on resource collections and objects: get, list, create, update, patch, delete.

use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::path::ObjectPath;
use super::{Query, bytes_response, error_response, json_response, not_found, table, watch};
use crate::patch::PatchKind;
use crate::selector::{FieldSelector, LabelSelector, Selector};
use crate::server::ConnectionHandle;
use crate::state::ClusterState;
use crate::status::{ApiError, Reason, success_status};
use crate::store::registry::ResourceType;
use crate::store::{DeleteOptions, Subresource, parse_continue};

/// One request on a resource path.
#[derive(Debug)]
pub(crate) struct Request {
    pub(crate) state: Arc<ClusterState>,
    pub(crate) conn: ConnectionHandle,
    pub(crate) method: Method,
    pub(crate) path: ObjectPath,
    pub(crate) query: Query,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// Serves the request.
pub(crate) async fn handle(req: Request) -> Response {
    match handle_inner(req).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(reason = ?e.reason, message = %e.message, "request failed");
            error_response(&e)
        }
    }
}

async fn handle_inner(req: Request) -> Result<Response, ApiError> {
    let p = &req.path;
    let rt = req
        .state
        .store
        .resolve(&p.group, &p.version, &p.plural)
        .ok_or_else(not_found)?;
    if !rt.namespaced && p.namespace.is_some() {
        return Err(not_found());
    }
    let sub = match p.subresource.as_deref() {
        None => Subresource::Main,
        Some("status") if rt.status_subresource => Subresource::Status,
        Some("finalize") if p.plural == "namespaces" => Subresource::Main,
        Some(_) => return Err(not_found()),
    };
    let ns = p.namespace.clone().unwrap_or_default();
    let wants_table = table::wants_table(&req.headers);
    let store = &req.state.store;
    match (&req.method, p.name.as_deref()) {
        (&Method::GET, Some(name)) if !p.legacy_watch => {
            require_namespace(&rt, p)?;
            let obj = store.get(&rt, &ns, name)?;
            if wants_table {
                return Ok(json_response(
                    StatusCode::OK,
                    &table::table(&rt, &[obj], None),
                ));
            }
            Ok(object_response(StatusCode::OK, &obj))
        }
        (&Method::GET, name) => {
            let mut selector = selector(&req.query)?;
            if let Some(name) = name {
                // `/watch/.../pods/{name}` watches one object.
                selector.fields = FieldSelector::parse(&format!("metadata.name={name}"))?;
            }
            let watching = p.legacy_watch
                || matches!(
                    req.query.get("watch").map(String::as_str),
                    Some("1" | "true")
                );
            let ns_filter = p.namespace.as_deref();
            if watching {
                return watch::respond(watch::WatchRequest {
                    state: Arc::clone(&req.state),
                    conn: req.conn.clone(),
                    rt,
                    version: p.version.clone(),
                    namespace: ns_filter.map(str::to_string),
                    selector,
                    query: req.query.clone(),
                    table: wants_table,
                });
            }
            list(&req, &rt, ns_filter, &selector, wants_table)
        }
        (&Method::POST, None) => {
            if rt.namespaced && p.namespace.is_none() {
                return Err(not_found());
            }
            let body = parse_json(&req.body)?;
            let created = store.create(&rt, &p.version, &ns, body)?;
            Ok(object_response(StatusCode::CREATED, &created))
        }
        (&Method::PUT, Some(name)) => {
            require_namespace(&rt, p)?;
            let body = parse_json(&req.body)?;
            let updated = store.update(&rt, &p.version, &ns, name, body, sub)?;
            Ok(object_response(StatusCode::OK, &updated))
        }
        (&Method::PATCH, Some(name)) => {
            require_namespace(&rt, p)?;
            let ct = req
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let kind = PatchKind::from_content_type(ct).ok_or_else(|| {
                ApiError::new(
                    Reason::UnsupportedMediaType,
                    format!("the body of the request was in an unknown format - {ct}"),
                )
            })?;
            let body = if kind == PatchKind::Apply {
                serde_saphyr::from_slice::<Value>(&req.body)
                    .map_err(|e| ApiError::bad_request(format!("invalid apply body: {e}")))?
            } else if kind == PatchKind::Json {
                serde_json::from_slice::<Value>(&req.body)
                    .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?
            } else {
                parse_json(&req.body)?
            };
            let apply_opts = if kind == PatchKind::Apply {
                let manager = req
                    .query
                    .get("fieldManager")
                    .filter(|m| !m.is_empty())
                    .ok_or_else(|| {
                        ApiError::new(
                            Reason::Invalid,
                            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: \
                             is required for apply patch",
                        )
                    })?;
                let force = req.query.get("force").is_some_and(|f| f == "true");
                Some((manager.as_str(), force))
            } else {
                None
            };
            let patched = store.patch(&rt, &p.version, &ns, name, kind, &body, sub, apply_opts)?;
            Ok(object_response(StatusCode::OK, &patched))
        }
        (&Method::DELETE, Some(name)) => {
            require_namespace(&rt, p)?;
            let opts = delete_options(&req)?;
            let obj = store.delete(&rt, &ns, name, &opts)?;
            Ok(object_response(StatusCode::OK, &obj))
        }
        (&Method::DELETE, None) => {
            let opts = delete_options(&req)?;
            let selector = selector(&req.query)?;
            let page = store.list(&rt, p.namespace.as_deref(), &selector, None, None);
            for item in &page.items {
                let ns = item
                    .pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let name = item
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("");
                // Objects removed meanwhile by a cascade are fine.
                let _ = store.delete(&rt, ns, name, &opts);
            }
            Ok(json_response(
                StatusCode::OK,
                &success_status(&rt.id.group, &rt.id.plural, "", ""),
            ))
        }
        _ => Err(ApiError::new(
            Reason::MethodNotAllowed,
            "the server does not allow this method on the requested resource",
        )),
    }
}

fn require_namespace(rt: &ResourceType, p: &ObjectPath) -> Result<(), ApiError> {
    if rt.namespaced && p.namespace.is_none() {
        Err(not_found())
    } else {
        Ok(())
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))?;
    if !v.is_object() {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(v)
}

/// Label and field selectors from the query.
pub(crate) fn selector(query: &Query) -> Result<Selector, ApiError> {
    Ok(Selector {
        labels: query
            .get("labelSelector")
            .map(|s| LabelSelector::parse(s))
            .transpose()?
            .unwrap_or_default(),
        fields: query
            .get("fieldSelector")
            .map(|s| FieldSelector::parse(s))
            .transpose()?
            .unwrap_or_default(),
    })
}

fn delete_options(req: &Request) -> Result<DeleteOptions, ApiError> {
    let mut body = if req.body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json(&req.body)?
    };
    if let Some(g) = req.query.get("gracePeriodSeconds") {
        let g: i64 = g
            .parse()
            .map_err(|_| ApiError::bad_request(format!("invalid gracePeriodSeconds \"{g}\"")))?;
        body["gracePeriodSeconds"] = json!(g);
    }
    if let Some(p) = req.query.get("propagationPolicy") {
        body["propagationPolicy"] = json!(p);
    }
    DeleteOptions::from_json(&body)
}

fn object_response(status: StatusCode, obj: &Value) -> Response {
    bytes_response(status, serde_json::to_vec(obj).unwrap_or_default())
}

fn list(
    req: &Request,
    rt: &ResourceType,
    ns: Option<&str>,
    selector: &Selector,
    wants_table: bool,
) -> Result<Response, ApiError> {
    let limit = req
        .query
        .get("limit")
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request(format!("invalid limit \"{l}\"")))
        })
        .transpose()?;
    let after = req
        .query
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(|c| parse_continue(c))
        .transpose()?;
    let page = req
        .state
        .store
        .list(rt, ns, selector, limit, after.as_ref());
    let mut metadata = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(c) = &page.continue_token {
        metadata["continue"] = json!(c);
        metadata["remainingItemCount"] = json!(page.remaining);
    }
    if wants_table {
        return Ok(json_response(
            StatusCode::OK,
            &table::table(rt, &page.items, Some(metadata)),
        ));
    }
    let head = json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(&req.path.version),
        "metadata": metadata,
    });
    // Serialize the items straight into the body: a list of thousands of pods stays one pass.
    let mut body = serde_json::to_vec(&head).unwrap_or_default();
    body.pop(); // the closing brace, reopened for "items"
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in page.items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        if serde_json::to_writer(&mut body, item.as_ref()).is_err() {
            return Err(ApiError::new(
                Reason::InternalError,
                "cannot serialize an object",
            ));
        }
    }
    body.extend_from_slice(b"]}");
    Ok(bytes_response(StatusCode::OK, body))
}
