//! The plain-HTTP side of the hub: `/metrics` (Prometheus text format) and `/healthz`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::Arc;

async fn metrics(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("cannot encode metrics: {error}"),
        ),
    }
}

/// Whether the process should receive traffic, and why (`/readyz`): `Ok(role)` or `Err(reason)`.
pub type Readiness = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Serves `/metrics`, `/healthz` (the process runs) and `/readyz` (`readiness` holds) on
/// `listener` until `shutdown` resolves.
pub async fn serve_metrics<L>(
    listener: L,
    registry: Arc<Registry>,
    readiness: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let readyz = move || {
        let readiness = Arc::clone(&readiness);
        async move {
            match readiness() {
                Ok(role) => (StatusCode::OK, format!("ok: {role}\n")),
                Err(reason) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n"),
                ),
            }
        }
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(registry);
    if let Err(error) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::error!(%error, "the metrics server failed");
    }
}
