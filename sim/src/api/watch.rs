//! Watches: a chunked stream of newline-separated JSON events.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tracing::Instrument;

use super::{Query, table};
use crate::selector::Selector;
use crate::server::ConnectionHandle;
use crate::state::ClusterState;
use crate::status::ApiError;
use crate::store::meta::namespace_of;
use crate::store::registry::ResourceType;
use crate::store::{EventKind, StoredEvent, WatchStart};

/// A watch without `timeoutSeconds` ends after this long (clients reconnect), like the apiserver's
/// request timeout.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
/// Encoded events buffered per watch before the producer waits for the client.
const WATCH_BUFFER: usize = 256;
/// Annotation marking the bookmark that ends the initial events of a `sendInitialEvents` watch.
const INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";

/// Everything a watch needs.
#[derive(Debug)]
pub(crate) struct WatchRequest {
    pub(crate) state: Arc<ClusterState>,
    pub(crate) conn: ConnectionHandle,
    pub(crate) rt: ResourceType,
    pub(crate) version: String,
    pub(crate) namespace: Option<String>,
    pub(crate) selector: Selector,
    pub(crate) query: Query,
    pub(crate) table: bool,
}

/// Starts a watch and answers with its stream.
pub(crate) fn respond(req: WatchRequest) -> Result<Response, ApiError> {
    let q = &req.query;
    let from = match q.get("resourceVersion").map(String::as_str) {
        None | Some("") => None,
        Some(rv) => Some(
            rv.parse::<u64>()
                .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion \"{rv}\"")))?,
        ),
    };
    let send_initial = q.get("sendInitialEvents").is_some_and(|v| v == "true");
    let bookmarks = q.get("allowWatchBookmarks").is_some_and(|v| v == "true");
    let timeout = q
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(DEFAULT_WATCH_TIMEOUT, Duration::from_secs);
    let ns = req.namespace.as_deref();
    let started = req
        .state
        .store
        .watch(&req.rt, ns, if send_initial { None } else { from });
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::io::Error>>(WATCH_BUFFER);
    let span = tracing::debug_span!("watch", resource = %req.rt.id.plural, ?from);
    let task = Watch {
        tx,
        req,
        bookmarks,
        send_initial,
        timeout,
    };
    tokio::spawn(task.run(started).instrument(span));
    let mut r = Response::new(Body::from_stream(ReceiverStream::new(rx)));
    *r.status_mut() = StatusCode::OK;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

struct Watch {
    tx: mpsc::Sender<Result<Bytes, std::io::Error>>,
    req: WatchRequest,
    bookmarks: bool,
    send_initial: bool,
    timeout: Duration,
}

/// Why a watch stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// The client went away.
    ClientGone,
    /// Timeout, dropped watches, shutdown or an error event: end the stream cleanly.
    Clean,
    /// The cluster went offline: close the connection without finishing the response.
    Abort,
}

impl Watch {
    async fn run(
        mut self,
        started: Result<(WatchStart, broadcast::Receiver<Arc<StoredEvent>>, u64), ApiError>,
    ) {
        let end = match started {
            Err(e) => self.send_line(&error_event(&e)).await,
            Ok((start, rx, rv)) => self.stream(start, rx, rv).await,
        };
        match end {
            End::Abort => {
                // An error item makes hyper abort the response instead of finishing it; closing the
                // connection makes sure nothing more is written.
                let cut =
                    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, "cluster offline");
                let _ = self.tx.send(Err(cut)).await;
                self.req.conn.close();
            }
            End::Clean | End::ClientGone => {}
        }
        tracing::debug!(?end, "watch ended");
    }

    async fn stream(
        &mut self,
        start: WatchStart,
        mut rx: broadcast::Receiver<Arc<StoredEvent>>,
        mut last_rv: u64,
    ) -> End {
        let state = Arc::clone(&self.req.state);
        let mut drops = state.faults.drop_watches_signal();
        let mut offline = state.faults.offline_signal();
        match start {
            WatchStart::Initial(objects) => {
                for obj in &objects {
                    if !self.req.selector.matches(obj) {
                        continue;
                    }
                    let end = self.send_object(EventKind::Added, obj).await;
                    if end != End::Clean {
                        return end;
                    }
                }
                if self.send_initial {
                    let end = self.send_bookmark(last_rv, true).await;
                    if end != End::Clean {
                        return end;
                    }
                }
            }
            WatchStart::Replay(events) => {
                for e in events {
                    let end = self.send_event(&e).await;
                    if end != End::Clean {
                        return end;
                    }
                }
            }
        }
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let mut bookmark_tick = tokio::time::interval(state.config.bookmark_interval);
        bookmark_tick.tick().await;
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => return End::Clean,
                () = &mut deadline => return End::Clean,
                () = self.tx.closed() => return End::ClientGone,
                _ = drops.changed() => return End::Clean,
                went_offline = async { offline.wait_for(|o| *o).await.is_ok() } => {
                    if went_offline {
                        return End::Abort;
                    }
                    // The fault state is gone with the cluster: end cleanly.
                    return End::Clean;
                }
                _ = bookmark_tick.tick(), if self.bookmarks => {
                    let end = self.send_bookmark(last_rv, false).await;
                    if end != End::Clean {
                        return end;
                    }
                }
                received = rx.recv() => match received {
                    Ok(event) => {
                        last_rv = event.rv;
                        let end = self.send_event(&event).await;
                        if end != End::Clean {
                            return end;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let e = ApiError::expired(last_rv, state.store.resource_version());
                        self.send_line(&error_event(&e)).await;
                        return End::Clean;
                    }
                    Err(broadcast::error::RecvError::Closed) => return End::Clean,
                },
            }
        }
    }

    /// Sends a stored event if it concerns this watch, translated through the selector.
    async fn send_event(&mut self, e: &StoredEvent) -> End {
        if e.resource != self.req.rt.id {
            return End::Clean;
        }
        if let Some(ns) = &self.req.namespace
            && namespace_of(&e.object) != ns
        {
            return End::Clean;
        }
        let sel = &self.req.selector;
        let now = sel.matches(&e.object);
        let kind = match e.kind {
            EventKind::Modified => {
                let before = e.old.as_ref().is_none_or(|o| sel.matches(o));
                match (before, now) {
                    (true, true) => Some(EventKind::Modified),
                    (false, true) => Some(EventKind::Added),
                    (true, false) => Some(EventKind::Deleted),
                    (false, false) => None,
                }
            }
            k => now.then_some(k),
        };
        match kind {
            Some(k) => self.send_object(k, &e.object).await,
            None => End::Clean,
        }
    }

    async fn send_object(&mut self, kind: EventKind, obj: &Arc<Value>) -> End {
        let mut line = format!("{{\"type\":\"{}\",\"object\":", kind.as_str()).into_bytes();
        let written = if self.req.table {
            serde_json::to_writer(
                &mut line,
                &table::table(&self.req.rt, std::slice::from_ref(obj), None),
            )
        } else {
            serde_json::to_writer(&mut line, obj.as_ref())
        };
        if written.is_err() {
            return End::Clean;
        }
        line.extend_from_slice(b"}\n");
        self.send_bytes(line).await
    }

    async fn send_bookmark(&mut self, rv: u64, initial_end: bool) -> End {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_end {
            metadata["annotations"] = json!({INITIAL_EVENTS_END: "true"});
        }
        let event = json!({
            "type": "BOOKMARK",
            "object": {
                "kind": self.req.rt.kind,
                "apiVersion": self.req.rt.api_version(&self.req.version),
                "metadata": metadata,
            },
        });
        self.send_line(&event).await
    }

    async fn send_line(&mut self, v: &Value) -> End {
        let mut line = serde_json::to_vec(v).unwrap_or_default();
        line.push(b'\n');
        self.send_bytes(line).await
    }

    async fn send_bytes(&mut self, line: Vec<u8>) -> End {
        match self.tx.send(Ok(Bytes::from(line))).await {
            Ok(()) => End::Clean,
            Err(_) => End::ClientGone,
        }
    }
}

fn error_event(e: &ApiError) -> Value {
    json!({"type": "ERROR", "object": e.to_status()})
}
