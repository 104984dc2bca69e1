//! `cafectl dashboard`: a local web console over the hub.
//!
//! Like `kubectl argo rollouts dashboard`, it is a small web server on the operator's machine that
//! calls the hub with the operator's own cafectl credentials: the hub's mTLS and roles decide what
//! the page may do, and the browser holds no certificate. The page is plain HTML, CSS and one
//! JavaScript file, embedded in the binary (no CDN, no front-end build step).
//!
//! The page's JSON API is the JSON cafectl prints (`get -o json`, `status -o json`, `history -o
//! json`, `audit -o json`, `failover status -o json`, `plan -o json`). Live status arrives as
//! server-sent events: one `WatchStatus` stream to the hub per deployment the page shows, for as
//! long as the page is open. Nothing on the page polls.

use super::CliError;
use super::client::{HubArgs, HubClient, deployment_ref, unary};
use super::failover::StatusDocument;
use super::output::Items;
use super::release::{AuditItem, RevisionItem, Verb};
use super::resources::ClusterItem;
use crate::hub::convert::status_from_proto;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cafe_proto::v1 as pb;
use futures::{Stream, StreamExt as _, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tonic::Code;

/// The page, its script and its style: the whole console.
const INDEX_HTML: &str = include_str!("dashboard/index.html");
const APP_JS: &str = include_str!("dashboard/app.js");
const APP_CSS: &str = include_str!("dashboard/app.css");

/// The page may load only what this server serves: no CDN, no inline script, no other origin.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// `cafectl dashboard`.
#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// Where to serve the console. Anyone who can reach this address acts with your cafectl
    /// credentials, so keep it on the loopback interface.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDRESS:PORT")]
    pub listen: SocketAddr,
    /// Another name the console may be reached by (`HOST` or `HOST:PORT`), besides its address and,
    /// on the loopback or every interface, `localhost`: a page served under any other name is
    /// refused, so that a web site cannot reach the console through a name of its own.
    #[arg(long = "allow-host", value_name = "HOST")]
    pub allow_hosts: Vec<String>,
}

/// The console's server state: how to reach the hub, and the connection it keeps.
struct Console {
    hub: HubArgs,
    /// The connection to the leading replica, made on first use and made again after the hub
    /// was unavailable (a restart, or another replica took the lead).
    connection: std::sync::Mutex<Option<HubClient>>,
    /// Cancelled on Ctrl-C: ends the event streams, which would otherwise hold the graceful
    /// shutdown open for as long as a page is.
    stop: CancellationToken,
    /// The `Host` headers the page may be reached by; `None` when listening on every address.
    hosts: Vec<String>,
}

/// A failed API call: an HTTP status and the hub's (or cafectl's) message, as `{"error": ...}`.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// cafectl's error for a call, with the HTTP status of the gRPC code.
    fn of_call(client: &HubClient, status: tonic::Status) -> Self {
        let code = match status.code() {
            Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
            Code::Unauthenticated => StatusCode::UNAUTHORIZED,
            Code::PermissionDenied => StatusCode::FORBIDDEN,
            Code::NotFound => StatusCode::NOT_FOUND,
            Code::FailedPrecondition | Code::Aborted | Code::AlreadyExists => StatusCode::CONFLICT,
            Code::Unavailable | Code::DeadlineExceeded => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_GATEWAY,
        };
        Self::new(code, Self::text(client.error(status)))
    }

    fn text(error: CliError) -> String {
        match error {
            // Bad input arrives as `error: ...` lines, ready for a terminal.
            CliError::BadInput(lines) => lines
                .lines()
                .map(|l| l.strip_prefix("error: ").unwrap_or(l))
                .collect::<Vec<_>>()
                .join("\n"),
            CliError::Failed(message) => message,
        }
    }
}

impl From<CliError> for ApiError {
    fn from(error: CliError) -> Self {
        let status = match &error {
            CliError::BadInput(_) => StatusCode::BAD_REQUEST,
            CliError::Failed(_) => StatusCode::BAD_GATEWAY,
        };
        Self::new(status, Self::text(error))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

impl Console {
    /// The hub connection, connecting when there is none.
    async fn client(&self) -> Result<HubClient, ApiError> {
        if let Some(client) = &*self.lock() {
            return Ok(client.clone());
        }
        // Two requests may both connect; the later connection is kept, both work.
        let client = self.hub.connect().await?;
        *self.lock() = Some(client.clone());
        Ok(client)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HubClient>> {
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The error of a failed call; an unavailable hub drops the connection, so that the next
    /// request finds the leader again.
    fn failed(&self, client: &HubClient, status: tonic::Status) -> ApiError {
        if matches!(status.code(), Code::Unavailable) {
            *self.lock() = None;
        }
        ApiError::of_call(client, status)
    }
}

/// A listing as `{"items": [...]}`, each item as cafectl prints it.
fn items<P, T: From<P> + serde::Serialize>(listed: Vec<P>) -> ApiResult {
    let items: Vec<T> = listed.into_iter().map(T::from).collect();
    to_json(&Items { items: &items })
}

/// A command's body, or axum's reason for refusing it as `{"error"}` like every other refusal.
fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(body)| body)
        .map_err(|rejection| ApiError::new(rejection.status(), rejection.body_text()))
}

/// Serializes a value the API returns.
fn to_json<T: serde::Serialize>(value: &T) -> ApiResult {
    serde_json::to_value(value)
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `cafectl dashboard`: serves the console until interrupted.
pub async fn dashboard(hub: &HubArgs, args: &DashboardArgs) -> Result<String, CliError> {
    // Refuse a configuration that cannot work now rather than on the first page load.
    hub.replica_endpoints()?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| {
            CliError::BadInput(format!(
                "error: --listen {}: cannot listen: {e}",
                args.listen
            ))
        })?;
    let local = listener
        .local_addr()
        .map_err(|e| CliError::Failed(format!("the console's address: {e}")))?;
    let hosts = allowed_hosts(local, &args.allow_hosts);
    if local.ip().is_unspecified() {
        eprintln!(
            "warning: the console listens on every address: anyone who reaches it as {} acts \
             with your cafectl credentials",
            hosts.join(", ")
        );
    }
    let console = Arc::new(Console {
        hub: hub.clone(),
        connection: std::sync::Mutex::new(None),
        stop: CancellationToken::new(),
        hosts,
    });
    let stop = console.stop.clone();
    let shown = if local.ip().is_unspecified() {
        format!("http://127.0.0.1:{}/", local.port())
    } else {
        format!("http://{local}/")
    };
    // The line scripts wait for: the console is up at this URL.
    println!("cafectl dashboard: serving the console at {shown} (Ctrl-C stops it)");
    axum::serve(listener, router(console))
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        })
        .await
        .map_err(|e| CliError::Failed(format!("the console's server: {e}")))?;
    Ok(String::new())
}

/// Every route of the console.
fn router(console: Arc<Console>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route("/api/context", get(context))
        .route("/api/deployments", get(deployments))
        .route("/api/watch", get(watch))
        .route("/api/deployments/{namespace}/{name}/plan", get(plan))
        .route("/api/deployments/{namespace}/{name}/history", get(history))
        .route("/api/deployments/{namespace}/{name}/{verb}", post(command))
        .route("/api/pipelines", get(pipelines))
        .route(
            "/api/pipelines/{namespace}/{name}/{verb}",
            post(pipeline_command),
        )
        .route("/api/clusters", get(clusters))
        .route("/api/failover", get(failover_status))
        .route("/api/failover/evacuate", post(evacuate))
        .route("/api/failover/failback", post(failback))
        .route("/api/audit", get(audit))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&console),
            guard,
        ))
        .with_state(console)
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The `Host` headers a console on `local` answers to: its address, the loopback names when it
/// listens there (or everywhere), and `--allow-host` names (on its port unless they name one).
/// Nothing else, so that a web site cannot reach it by a DNS name of its own that resolves to the
/// console's address (DNS rebinding), where the page's origin would be the site's own.
fn allowed_hosts(local: SocketAddr, extra: &[String]) -> Vec<String> {
    let port = local.port();
    let mut hosts = Vec::new();
    if !local.ip().is_unspecified() {
        hosts.push(local.to_string());
    }
    if local.ip().is_loopback() || local.ip().is_unspecified() {
        hosts.extend([
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
        ]);
    }
    for host in extra {
        let named_port = host.rsplit_once(':').is_some_and(|(name, p)| {
            !name.is_empty() && !name.ends_with(':') && p.parse::<u16>().is_ok()
        });
        hosts.push(if named_port {
            host.clone()
        } else {
            format!("{host}:{port}")
        });
    }
    hosts.dedup();
    hosts
}

/// What protects the operator's credentials from other web pages: a known `Host`, and for every
/// change a JSON body (which a cross-site form cannot send) from the console's own origin.
async fn guard(State(console): State<Arc<Console>>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if !console.hosts.iter().any(|h| h.eq_ignore_ascii_case(&host)) {
        return ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "this console answers only to {} (add a name with --allow-host)",
                console.hosts.join(", ")
            ),
        )
        .into_response();
    }
    if request.method() != axum::http::Method::GET
        && let Err(refused) = same_origin_json(headers, &host)
    {
        return refused.into_response();
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn same_origin_json(headers: &HeaderMap, host: &str) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a command must be sent as application/json",
        ));
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != format!("http://{host}")
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!("a command from {origin} is refused: only this console's own page may act"),
        ));
    }
    Ok(())
}

/// The hub the console talks to, and cafectl's version.
async fn context(State(console): State<Arc<Console>>) -> ApiResult {
    let client = console.client().await?;
    Ok(Json(json!({
        "hub": client.url,
        "version": env!("CARGO_PKG_VERSION"),
    })))
}

/// Every deployment in every namespace, as `get deployments -A -o json` prints them.
async fn deployments(State(console): State<Arc<Console>>) -> ApiResult {
    documents(&console, pb::ResourceKind::CafeDeployment).await
}

/// Every ReleasePipeline, as `get pipelines -A -o json` prints them.
async fn pipelines(State(console): State<Arc<Console>>) -> ApiResult {
    documents(&console, pb::ResourceKind::ReleasePipeline).await
}

/// Every document of `kind` over all namespaces, as `{"items": [...]}`.
async fn documents(console: &Console, kind: pb::ResourceKind) -> ApiResult {
    let mut client = console.client().await?;
    let request = unary(pb::ListRequest {
        kind: kind as i32,
        namespace: String::new(),
    });
    let list = match client.client.list(request).await {
        Ok(list) => list.into_inner(),
        Err(status) => return Err(console.failed(&client, status)),
    };
    let items = list
        .items_json
        .iter()
        .map(|j| serde_json::from_str(j))
        .collect::<Result<Vec<Value>, _>>()
        .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("the hub's JSON: {e}")))?;
    to_json(&Items { items: &items })
}

/// `?deployments=NS/NAME,NS/NAME`.
#[derive(Debug, Deserialize)]
struct WatchQuery {
    deployments: String,
}

/// Server-sent events: `status` (`{"key": "NS/NAME", "status": ...}`, the status document of
/// `status -o json`) on every change of each deployment named, from one `WatchStatus` stream
/// each; `problem` (`{"key", "message"}`) when a stream fails or the hub cannot be reached. The
/// answer is 200 whenever the names parse (an EventSource gives up for good on any other), and
/// ends when every stream has ended, or on Ctrl-C; the browser's EventSource then connects again.
async fn watch(
    State(console): State<Arc<Console>>,
    Query(query): Query<WatchQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let references = query
        .deployments
        .split(',')
        .filter(|d| !d.is_empty())
        .map(|d| deployment_ref(d, None))
        .collect::<Result<Vec<_>, _>>()?;
    let watches = references.into_iter().map(|reference| {
        stream::once(watch_one(Arc::clone(&console), reference))
            .flatten()
            .boxed()
    });
    let events = stream::select_all(watches).take_until(console.stop.clone().cancelled_owned());
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

fn problem(key: &str, message: &str) -> Result<Event, Infallible> {
    Ok(Event::default()
        .event("problem")
        .json_data(json!({ "key": key, "message": message }))
        .unwrap_or_default())
}

/// One deployment's `WatchStatus`, as events.
async fn watch_one(
    console: Arc<Console>,
    reference: pb::DeploymentRef,
) -> stream::BoxStream<'static, Result<Event, Infallible>> {
    let key = format!("{}/{}", reference.namespace, reference.name);
    let mut client = match console.client().await {
        Ok(client) => client,
        Err(error) => return stream::once(async move { problem(&key, &error.message) }).boxed(),
    };
    match client.client.watch_status(reference).await {
        Ok(response) => response
            .into_inner()
            .map(move |message| match message {
                Ok(status) => Ok(Event::default()
                    .event("status")
                    .json_data(json!({ "key": key, "status": status_from_proto(&status) }))
                    .unwrap_or_default()),
                Err(status) => problem(&key, &console.failed(&client, status).message),
            })
            .boxed(),
        Err(status) => {
            let message = console.failed(&client, status).message;
            stream::once(async move { problem(&key, &message) }).boxed()
        }
    }
}

/// The deployment's allocation and group plan, as `plan NAME -o json` prints it.
async fn plan(
    State(console): State<Arc<Console>>,
    Path((namespace, name)): Path<(String, String)>,
) -> ApiResult {
    let mut client = console.client().await?;
    let request = unary(pb::PlanRequest {
        deployment_json: String::new(),
        r#ref: Some(pb::DeploymentRef { namespace, name }),
        current: Default::default(),
    });
    match client.client.plan(request).await {
        Ok(response) => serde_json::from_str(&response.into_inner().plan_json)
            .map(Json)
            .map_err(|e| ApiError::new(StatusCode::BAD_GATEWAY, format!("the hub's plan: {e}"))),
        Err(status) => Err(console.failed(&client, status)),
    }
}

/// The kept revisions, as `history -o json` prints them.
async fn history(
    State(console): State<Arc<Console>>,
    Path((namespace, name)): Path<(String, String)>,
) -> ApiResult {
    let mut client = console.client().await?;
    match client
        .client
        .history(unary(pb::DeploymentRef { namespace, name }))
        .await
    {
        Ok(response) => items::<_, RevisionItem>(response.into_inner().revisions),
        Err(status) => Err(console.failed(&client, status)),
    }
}

/// A release command's body: the group it expects (as `--batch`), why, and for a rollback the
/// revision.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CommandBody {
    #[serde(default)]
    batch: Option<i32>,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    to_revision: Option<i64>,
}

/// `continue`, `pause`, `retry`, `rollback` or `promote` (`promote --full`): the hub's result,
/// `{"changed", "message", "status"}`.
async fn command(
    State(console): State<Arc<Console>>,
    Path((namespace, name, verb)): Path<(String, String, String)>,
    body: Result<Json<CommandBody>, JsonRejection>,
) -> ApiResult {
    let body = json_body(body)?;
    let Some(verb) = Verb::from_path(&verb) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{verb:?} is not one of continue, pause, retry, rollback, promote"),
        ));
    };
    let mut client = console.client().await?;
    let reference = pb::DeploymentRef { namespace, name };
    let request = verb.request(reference, body.batch, body.to_revision, body.reason);
    match verb.send(&mut client, request).await {
        Ok(result) => command_result(result),
        Err(status) => Err(console.failed(&client, status)),
    }
}

/// A pipeline command's body: `--stage` and `--reason`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineBody {
    #[serde(default)]
    stage: Option<String>,
    #[serde(default)]
    reason: String,
}

/// `POST /api/pipelines/NS/NAME/approve|pause|resume|abort|rollback`, as `cafectl pipeline`.
async fn pipeline_command(
    State(console): State<Arc<Console>>,
    Path((namespace, name, verb)): Path<(String, String, String)>,
    body: Result<Json<PipelineBody>, JsonRejection>,
) -> ApiResult {
    let body = json_body(body)?;
    let Some(verb) = super::pipeline::verb_from_word(&verb) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("{verb:?} is not one of approve, pause, resume, abort, rollback"),
        ));
    };
    let mut client = console.client().await?;
    let reference = pb::DeploymentRef { namespace, name };
    match super::pipeline::send(&mut client, reference, verb, body.stage, body.reason).await {
        Ok(result) => command_result(result),
        Err(status) => Err(console.failed(&client, status)),
    }
}

fn command_result(result: pb::CommandResult) -> ApiResult {
    Ok(Json(json!({
        "changed": result.changed,
        "message": result.message,
        "status": result.status.as_ref().map(status_from_proto),
    })))
}

/// The member clusters, as `get clusters -o json` prints them.
async fn clusters(State(console): State<Arc<Console>>) -> ApiResult {
    let mut client = console.client().await?;
    match client
        .client
        .list_clusters(unary(pb::ListClustersRequest {}))
        .await
    {
        Ok(response) => items::<_, ClusterItem>(response.into_inner().clusters),
        Err(status) => Err(console.failed(&client, status)),
    }
}

/// The failover state, as `failover status -o json` prints it.
async fn failover_status(State(console): State<Arc<Console>>) -> ApiResult {
    let mut client = console.client().await?;
    match client
        .client
        .failover_status(unary(pb::FailoverStatusRequest {}))
        .await
    {
        Ok(response) => to_json(&StatusDocument::from(&response.into_inner())),
        Err(status) => Err(console.failed(&client, status)),
    }
}

/// An evacuation, as `failover evacuate` takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvacuateBody {
    #[serde(default)]
    unit: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    force: bool,
    #[serde(default)]
    reason: String,
}

async fn evacuate(
    State(console): State<Arc<Console>>,
    body: Result<Json<EvacuateBody>, JsonRejection>,
) -> ApiResult {
    let body = json_body(body)?;
    let target = match (body.unit, body.region) {
        (Some(unit), None) => pb::evacuate_request::Target::Unit(unit),
        (None, Some(region)) => pb::evacuate_request::Target::Region(region),
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "give exactly one of unit and region",
            ));
        }
    };
    let mut client = console.client().await?;
    let request = unary(pb::EvacuateRequest {
        target: Some(target),
        force: body.force,
        reason: body.reason,
    });
    match client.client.evacuate(request).await {
        Ok(result) => command_result(result.into_inner()),
        Err(status) => Err(console.failed(&client, status)),
    }
}

/// A failback, as `failover failback` takes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FailbackBody {
    unit: String,
    #[serde(default)]
    reason: String,
}

async fn failback(
    State(console): State<Arc<Console>>,
    body: Result<Json<FailbackBody>, JsonRejection>,
) -> ApiResult {
    let body = json_body(body)?;
    let mut client = console.client().await?;
    let request = unary(pb::FailbackRequest {
        unit: body.unit,
        reason: body.reason,
    });
    match client.client.failback(request).await {
        Ok(result) => command_result(result.into_inner()),
        Err(status) => Err(console.failed(&client, status)),
    }
}

/// `?limit=N`.
#[derive(Debug, Deserialize)]
struct AuditQuery {
    #[serde(default)]
    limit: u32,
}

/// The audit log, newest first, as `audit -o json` prints it.
async fn audit(State(console): State<Arc<Console>>, Query(query): Query<AuditQuery>) -> ApiResult {
    let mut client = console.client().await?;
    match client
        .client
        .audit(unary(pb::AuditRequest { limit: query.limit }))
        .await
    {
        Ok(response) => items::<_, AuditItem>(response.into_inner().entries),
        Err(status) => Err(console.failed(&client, status)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loopback_console_answers_to_loopback_names_only() {
        let hosts = allowed_hosts("127.0.0.1:8080".parse().unwrap(), &[]);
        assert!(hosts.contains(&"localhost:8080".to_owned()));
        assert!(hosts.contains(&"127.0.0.1:8080".to_owned()));
        assert!(!hosts.iter().any(|h| h.contains("example")));
        // Every interface: still only the names given, on the console's port unless they say.
        let extra = ["ops.bank.example".to_owned(), "10.0.0.5:80".to_owned()];
        let hosts = allowed_hosts("0.0.0.0:8080".parse().unwrap(), &extra);
        assert!(hosts.contains(&"ops.bank.example:8080".to_owned()));
        assert!(hosts.contains(&"10.0.0.5:80".to_owned()));
        assert!(hosts.contains(&"localhost:8080".to_owned()));
        assert!(!hosts.iter().any(|h| h.starts_with("0.0.0.0")), "{hosts:?}");
    }

    #[test]
    fn commands_need_json_from_the_consoles_own_origin() {
        let mut headers = HeaderMap::new();
        let host = "127.0.0.1:8080";
        // A cross-site form posts form data: refused.
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        assert_eq!(
            same_origin_json(&headers, host).unwrap_err().status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        assert!(same_origin_json(&headers, host).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8080"),
        );
        assert!(same_origin_json(&headers, host).is_ok());
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        let refused = same_origin_json(&headers, host).unwrap_err();
        assert_eq!(refused.status, StatusCode::FORBIDDEN);
        assert!(
            refused.message.contains("https://evil.example"),
            "{}",
            refused.message
        );
    }
}
