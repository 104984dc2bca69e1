//! The HTTP/1.1 accept loop. Each connection can be closed from inside a handler without an answer,
//! which is how an offline cluster looks to its clients.

use std::sync::Arc;

use axum::{Extension, Router};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// Binds `127.0.0.1:port` (0 picks a free port) and tells the address it got.
pub(crate) async fn bind_loopback(
    port: u16,
) -> Result<(TcpListener, std::net::SocketAddr), crate::SimError> {
    let addr = format!("127.0.0.1:{port}");
    let bind_error = |source| crate::SimError::Bind {
        addr: addr.clone(),
        source,
    };
    let listener = TcpListener::bind(&addr).await.map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    Ok((listener, local))
}

/// Lets a handler close the connection its request came on.
#[derive(Debug, Clone)]
pub(crate) struct ConnectionHandle(CancellationToken);

impl ConnectionHandle {
    /// Closes the connection without writing anything more.
    pub(crate) fn close(&self) {
        self.0.cancel();
    }
}

/// Accepts connections until `shutdown`, serving each with `router`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
    tracker: Arc<TaskTracker>,
) {
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        let kill = shutdown.child_token();
        let service = TowerToHyperService::new(
            router
                .clone()
                .layer(Extension(ConnectionHandle(kill.clone()))),
        );
        let span = tracing::debug_span!("connection", %peer);
        tracker.spawn(
            async move {
                let mut builder = hyper::server::conn::http1::Builder::new();
                builder.timer(TokioTimer::new());
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::select! {
                    biased;
                    // Dropping the connection future closes the socket with nothing more written.
                    () = kill.cancelled() => tracing::debug!("connection closed by the simulator"),
                    result = conn => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                    }
                }
            }
            .instrument(span),
        );
    }
}
