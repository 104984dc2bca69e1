//! `/sim/v1/...`: the simulator's own control endpoints, reachable even while the cluster is offline.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::faults::{Faults, FaultsUpdate};
use crate::nodes::set_node_ready as set_ready;
use crate::state::ClusterState;
use crate::traffic::TrafficCounts;

/// `GET /sim/v1/traffic`.
pub(crate) async fn traffic(State(state): State<Arc<ClusterState>>) -> Json<TrafficCounts> {
    Json(state.traffic.counts())
}

/// `GET /sim/v1/faults`.
pub(crate) async fn get_faults(State(state): State<Arc<ClusterState>>) -> Json<Faults> {
    Json(state.faults.get())
}

/// `POST /sim/v1/faults`: changes the faults named in the body and answers with the new state.
pub(crate) async fn post_faults(
    State(state): State<Arc<ClusterState>>,
    Json(update): Json<FaultsUpdate>,
) -> Json<Faults> {
    state.faults.update(update);
    Json(state.faults.get())
}

/// Body of `POST /sim/v1/nodes/{name}/ready`.
#[derive(Debug, Deserialize)]
pub(crate) struct NodeReady {
    ready: bool,
}

/// `POST /sim/v1/nodes/{name}/ready` with `{"ready": false}` makes a node NotReady.
pub(crate) async fn set_node_ready(
    State(state): State<Arc<ClusterState>>,
    Path(name): Path<String>,
    Json(body): Json<NodeReady>,
) -> Response {
    if set_ready(&state.store, &name, body.ready) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        (StatusCode::NOT_FOUND, format!("no node {name}")).into_response()
    }
}
