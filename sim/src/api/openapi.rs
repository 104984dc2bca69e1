//! A minimal OpenAPI v3 tree, enough for kubectl to see that the server validates fields itself.
//!
//! kubectl `create -f` looks for a PATCH operation of the object's kind carrying the `fieldValidation`
//! query parameter; finding one, it leaves validation to the server (which the simulator does not do:
//! no schemas are served or checked).

use serde_json::{Map, Value, json};

use crate::status::ApiError;
use crate::store::registry::Registry;

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The content type of the protobuf OpenAPI v2 document, as the API server labels it (the `@` of the
/// media type kubectl asks for is not valid in a response's Content-Type).
const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2`: a document with no definitions. kubectl before 1.24 fetches it (as protobuf) to
/// validate manifests on the client; with no definition for a kind it leaves the object unchecked,
/// as it does for a custom resource. The empty protobuf message is the empty document.
pub(crate) fn v2(headers: &axum::http::HeaderMap) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    let protobuf = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("protobuf"));
    if !protobuf {
        let document = json!({"swagger": "2.0", "info": {"title": "cafe-sim", "version": "v1"}, "paths": {}, "definitions": {}});
        return super::json_response(StatusCode::OK, &document);
    }
    let mut response = axum::response::Response::new(axum::body::Body::empty());
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(OPENAPI_V2_PROTOBUF),
    );
    response
}

/// `/openapi/v3`.
pub(crate) fn root(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for t in registry.all() {
        for v in &t.versions {
            let p = gv_path(&t.id.group, v);
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}")}),
            );
        }
    }
    json!({"paths": paths})
}

/// `/openapi/v3/api/v1` or `/openapi/v3/apis/{group}/{version}`.
pub(crate) fn group_version(
    registry: &Registry,
    group: &str,
    version: &str,
) -> Result<Value, ApiError> {
    let mut paths = Map::new();
    for t in registry
        .all()
        .filter(|t| t.id.group == group && t.serves(version))
    {
        let prefix = format!("/{}", gv_path(group, version));
        let collection = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.id.plural)
        } else {
            format!("{prefix}/{}", t.id.plural)
        };
        let gvk = json!({"group": group, "version": version, "kind": t.kind});
        let params = json!([
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
            {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        ]);
        let op =
            json!({"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {}});
        paths.insert(collection.clone(), json!({"post": op.clone()}));
        paths.insert(
            format!("{collection}/{{name}}"),
            json!({"get": op.clone(), "put": op.clone(), "patch": op.clone(), "delete": op}),
        );
    }
    if paths.is_empty() {
        return Err(super::not_found());
    }
    Ok(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes (cafe-sim)", "version": format!("v{}.{}", super::discovery::KUBE_MAJOR, super::discovery::KUBE_MINOR)},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
