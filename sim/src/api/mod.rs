//! The Kubernetes REST API subset, as an axum router.

mod control;
mod discovery;
mod openapi;
mod path;
mod resource;
mod table;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tracing::Instrument;

use crate::faults::FaultDecision;
use crate::server::ConnectionHandle;
use crate::state::ClusterState;
use crate::status::{ApiError, RETRY_AFTER_SECONDS, Reason};
use path::ApiPath;

/// The router of one cluster: `/sim/v1/...` control endpoints and the Kubernetes API.
pub(crate) fn router(state: Arc<ClusterState>) -> Router {
    Router::new()
        .route("/sim/v1/traffic", get(control::traffic))
        .route(
            "/sim/v1/faults",
            get(control::get_faults).post(control::post_faults),
        )
        .route("/sim/v1/nodes/{name}/ready", post(control::set_node_ready))
        .merge(crate::application::routes(Arc::clone(&state.traffic.app)))
        .fallback(api_entry)
        .with_state(state)
}

/// Query parameters of a request.
pub(crate) type Query = HashMap<String, String>;

async fn api_entry(
    State(state): State<Arc<ClusterState>>,
    axum::Extension(conn): axum::Extension<ConnectionHandle>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match state.faults.decide() {
        FaultDecision::Drop => {
            conn.close();
            // The connection is gone; this future is dropped with it.
            std::future::pending::<()>().await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        FaultDecision::Proceed { delay, error } => {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if let Some(e) = error {
                return error_response(&e);
            }
        }
    }
    let query: Query = axum::extract::Query::<Query>::try_from_uri(&uri)
        .map(|q| q.0)
        .unwrap_or_default();
    match path::parse(uri.path()) {
        None => error_response(&not_found()),
        Some(ApiPath::Version) => json_response(StatusCode::OK, &discovery::version()),
        Some(ApiPath::CoreVersions) => json_response(
            StatusCode::OK,
            &discovery::core_versions(&state.addr.to_string()),
        ),
        Some(ApiPath::Groups) => {
            json_response(StatusCode::OK, &discovery::groups(&state.store.registry()))
        }
        Some(ApiPath::Group(g)) => result_response(discovery::group(&state.store.registry(), &g)),
        Some(ApiPath::Resources { group, version }) => result_response(discovery::resources(
            &state.store.registry(),
            &group,
            &version,
        )),
        Some(ApiPath::OpenApiV2) => openapi::v2(&headers),
        Some(ApiPath::OpenApiRoot) => {
            json_response(StatusCode::OK, &openapi::root(&state.store.registry()))
        }
        Some(ApiPath::OpenApi { group, version }) => result_response(openapi::group_version(
            &state.store.registry(),
            &group,
            &version,
        )),
        Some(ApiPath::Object(p)) => {
            let span = tracing::debug_span!("request", %method, path = uri.path());
            resource::handle(resource::Request {
                state,
                conn,
                method,
                path: p,
                query,
                headers,
                body,
            })
            .instrument(span)
            .await
        }
    }
}

/// 404 for an unknown path.
pub(crate) fn not_found() -> ApiError {
    ApiError::new(
        Reason::NotFound,
        "the server could not find the requested resource",
    )
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, v: &Value) -> Response {
    bytes_response(status, serde_json::to_vec(v).unwrap_or_default())
}

/// A response with an already serialized JSON body.
pub(crate) fn bytes_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A `Status` error response.
pub(crate) fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.reason.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = json_response(status, &e.to_status());
    if e.reason == Reason::TooManyRequests {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    r
}

fn result_response(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => error_response(&e),
    }
}
