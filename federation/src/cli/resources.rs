//! `cafectl apply`, `delete` and `get`: resources on the hub.

use super::client::{HubArgs, HubClient, deployment_ref, unary};
use super::files::{index, load_resources};
use super::output::{Items, header, or_dash, render, render_wide, table};
use super::{CliError, Output};
use crate::resources::{FieldError, FieldErrors, Resource, Subject};
use cafe_proto::v1 as pb;
use serde::Serialize;
use serde_json::Value;
use std::path::PathBuf;

/// `cafectl apply`.
#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Resource files (multi-document YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Let the hub validate and say what would change, storing nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What `delete` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeleteKind {
    /// A LogicalUnit (admin); refused while deployments use it.
    #[value(alias = "units", alias = "logicalunit")]
    Unit,
    /// A CafeDeployment (operator); its slices are withdrawn from the agents.
    #[value(alias = "deployments", alias = "cafedeployment")]
    Deployment,
    /// A ReleasePipeline (operator) that no longer drives its deployments.
    #[value(alias = "pipelines", alias = "releasepipeline")]
    Pipeline,
}

/// `cafectl delete unit NAME | deployment NAME [-n NS]`.
#[derive(Debug, clap::Args)]
pub struct DeleteArgs {
    /// unit or deployment.
    pub kind: DeleteKind,
    /// The name; a deployment may be given as NAMESPACE/NAME.
    pub name: String,
    /// The deployment's namespace; `default` when not given.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
}

/// What `get` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GetKind {
    /// LogicalUnits.
    #[value(alias = "unit", alias = "logicalunits", alias = "logicalunit")]
    Units,
    /// Member clusters and their connection state.
    #[value(alias = "cluster")]
    Clusters,
    /// CafeDeployments with their release status.
    #[value(
        alias = "deployment",
        alias = "cafedeployments",
        alias = "cafedeployment"
    )]
    Deployments,
    /// The hub replicas of the configuration: role, store and the leader's lease.
    #[value(alias = "hub", alias = "replicas")]
    Hubs,
    /// ReleasePipelines with their stage and gate.
    #[value(
        alias = "pipeline",
        alias = "releasepipelines",
        alias = "releasepipeline"
    )]
    Pipelines,
}

/// `cafectl get units|clusters|deployments [NAME] [-n NS] [-o ...]`.
#[derive(Debug, clap::Args)]
pub struct GetArgs {
    /// units, clusters or deployments.
    pub kind: GetKind,
    /// Only this one (a deployment may be given as NAMESPACE/NAME); JSON and YAML then print the
    /// document itself rather than a list.
    pub name: Option<String>,
    /// Deployments only: this namespace (all namespaces when listing without it; `default` for a
    /// named deployment).
    #[arg(short = 'n', long, conflicts_with = "all_namespaces")]
    pub namespace: Option<String>,
    /// Deployments only: every namespace (what listing without -n does too), as kubectl spells it.
    #[arg(short = 'A', long)]
    pub all_namespaces: bool,
    /// Deployments only: just the releases waiting for a human: paused (for confirmation, by an
    /// operator, on an inconclusive analysis) or failed.
    #[arg(long)]
    pub waiting: bool,
    /// Output format: table, wide, name, json, yaml or jsonpath=TEMPLATE. JSON and YAML lists are
    /// `{"items": [...]}` of documents `apply` takes.
    #[arg(short = 'o', long = "output", default_value_t)]
    pub output: Output,
}

/// `cafectl set image NAME CONTAINER=IMAGE...`.
#[derive(Debug, clap::Args)]
pub struct SetArgs {
    /// What to set.
    #[command(subcommand)]
    pub what: SetCommand,
}

/// What `set` changes.
#[derive(Debug, clap::Subcommand)]
pub enum SetCommand {
    /// Set container images of a deployment's template: a new release, as `apply` of the changed
    /// template would start.
    Image {
        /// The deployment: NAME or NAMESPACE/NAME.
        name: String,
        /// `CONTAINER=IMAGE`, one or more.
        #[arg(required = true, value_name = "CONTAINER=IMAGE")]
        images: Vec<String>,
        /// Its namespace; `default` when not given.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Let the hub validate and say what would change, storing nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// A member cluster as `get clusters -o json` prints it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterItem {
    /// The cluster's name.
    pub name: String,
    /// `Connected`, `Unknown` or `Disconnected`.
    pub state: String,
    /// The version its agent reported; empty if never connected.
    pub agent_version: String,
    /// The agent's last message (RFC 3339); empty if never.
    pub last_seen: String,
    /// The units it serves.
    pub units: Vec<String>,
    /// The slices the hub assigns to it.
    pub slices: i32,
}

impl From<pb::ClusterInfo> for ClusterItem {
    fn from(c: pb::ClusterInfo) -> Self {
        Self {
            name: c.name,
            state: c.state,
            agent_version: c.agent_version,
            last_seen: c.last_seen,
            units: c.units,
            slices: c.slices,
        }
    }
}

/// `cafectl apply`: parses every file locally first (bad input sends nothing), then applies all
/// documents in one request, which the hub accepts or refuses as a whole.
pub async fn apply(hub: &HubArgs, args: &ApplyArgs) -> Result<String, CliError> {
    let resources = load_resources(&args.files)?;
    // Refuses a unit defined twice before anything is sent.
    index(resources.clone())?;
    if resources.is_empty() {
        return Err(CliError::BadInput(
            "error: no resources in the files given with -f".to_owned(),
        ));
    }
    let documents = resources
        .iter()
        .map(|(_, resource)| document_json(resource))
        .collect::<Result<Vec<_>, _>>()?;
    let mut client = hub.connect().await?;
    let response = client
        .client
        .apply(unary(pb::ApplyRequest {
            documents_json: documents,
            dry_run: args.dry_run,
        }))
        .await
        .map_err(|status| match status.code() {
            tonic::Code::InvalidArgument => CliError::BadInput(locate_errors(&status, &resources)),
            _ => client.error(status),
        })?
        .into_inner();
    Ok(applied_lines(&response, args.dry_run))
}

/// What `apply` prints: `kind/name action` per document, marked when it was a dry run.
fn applied_lines(response: &pb::ApplyResponse, dry_run: bool) -> String {
    let suffix = if dry_run { " (dry run)" } else { "" };
    response
        .results
        .iter()
        .map(|r| {
            format!(
                "{} {}{suffix}\n",
                resource_name(&r.kind, &r.namespace, &r.name),
                r.action
            )
        })
        .collect()
}

fn document_json(resource: &Resource) -> Result<String, CliError> {
    resource.to_json().map_err(|e| {
        CliError::Failed(format!(
            "cannot encode {} {}: {e}",
            resource.kind(),
            resource.display_name()
        ))
    })
}

/// kubectl's `kind/name`: `logicalunit/sh-az1`, `cafedeployment/finance/payments`.
fn resource_name(kind: &str, namespace: &str, name: &str) -> String {
    let kind = kind.to_lowercase();
    if namespace.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}/{namespace}/{name}")
    }
}

/// The hub's refusal, one `error:` line per document, naming the file the document came from
/// instead of its position in the request: `error: FILE: Kind name: field: problem`. The errors
/// come typed in the status's details; a status without them (an older hub) is shown as it is.
fn locate_errors(status: &tonic::Status, resources: &[(PathBuf, Resource)]) -> String {
    let Some(typed) = crate::hub::convert::apply_errors_from_status(status) else {
        return status
            .message()
            .lines()
            .map(|line| format!("error: {line}"))
            .collect::<Vec<_>>()
            .join("\n");
    };
    typed
        .documents
        .iter()
        .map(|document| {
            let problems = FieldErrors(
                document
                    .violations
                    .iter()
                    .map(|v| FieldError::new(v.path.clone(), v.message.clone()))
                    .collect(),
            );
            let position = usize::try_from(document.index)
                .ok()
                .and_then(|i| i.checked_sub(1));
            match position.and_then(|i| resources.get(i)) {
                Some((path, resource)) => format!(
                    "error: {}: {} {}: {problems}",
                    path.display(),
                    resource.kind(),
                    resource.display_name()
                ),
                None => {
                    let subject = Subject::new(document.kind.clone(), document.name.clone());
                    let subject = subject.to_string();
                    let subject = if subject.is_empty() {
                        String::new()
                    } else {
                        format!(" ({subject})")
                    };
                    format!("error: document {}{subject}: {problems}", document.index)
                }
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `cafectl delete`.
pub async fn delete(hub: &HubArgs, args: &DeleteArgs) -> Result<String, CliError> {
    let request = match args.kind {
        DeleteKind::Unit => {
            if args.namespace.is_some() {
                return Err(CliError::BadInput(
                    "error: -n: units have no namespace".to_owned(),
                ));
            }
            pb::DeleteRequest {
                kind: pb::ResourceKind::LogicalUnit as i32,
                namespace: String::new(),
                name: args.name.clone(),
            }
        }
        DeleteKind::Deployment | DeleteKind::Pipeline => {
            let reference = deployment_ref(&args.name, args.namespace.as_deref())?;
            let kind = if args.kind == DeleteKind::Pipeline {
                pb::ResourceKind::ReleasePipeline
            } else {
                pb::ResourceKind::CafeDeployment
            };
            pb::DeleteRequest {
                kind: kind as i32,
                namespace: reference.namespace,
                name: reference.name,
            }
        }
    };
    let mut client = hub.connect().await?;
    let name = resource_name(kind_name(request.kind), &request.namespace, &request.name);
    let response = client
        .client
        .delete(unary(request))
        .await
        .map_err(|status| client.error(status))?
        .into_inner();
    Ok(if response.deleted {
        format!("{name} deleted\n")
    } else {
        format!("{name} not found: nothing deleted\n")
    })
}

fn kind_name(kind: i32) -> &'static str {
    match pb::ResourceKind::try_from(kind) {
        Ok(pb::ResourceKind::LogicalUnit) => crate::resources::LOGICAL_UNIT_KIND,
        Ok(pb::ResourceKind::CafeDeployment) => crate::resources::CAFE_DEPLOYMENT_KIND,
        Ok(pb::ResourceKind::ReleasePipeline) => crate::resources::RELEASE_PIPELINE_KIND,
        _ => "resource",
    }
}

/// `cafectl get`.
pub async fn get(hub: &HubArgs, args: &GetArgs) -> Result<String, CliError> {
    let namespaced = matches!(args.kind, GetKind::Deployments | GetKind::Pipelines);
    if args.namespace.is_some() && !namespaced {
        return Err(CliError::BadInput(
            "error: -n: only deployments and pipelines have a namespace".to_owned(),
        ));
    }
    for (given, flag, allowed) in [
        (args.all_namespaces, "-A", namespaced),
        (args.waiting, "--waiting", args.kind == GetKind::Deployments),
    ] {
        if given && !allowed {
            return Err(CliError::BadInput(format!(
                "error: {flag}: only for deployments"
            )));
        }
    }
    if args.all_namespaces && args.name.is_some() {
        return Err(CliError::BadInput(
            "error: -A: lists every namespace; name a deployment as NAMESPACE/NAME instead"
                .to_owned(),
        ));
    }
    if args.kind == GetKind::Hubs {
        return get_hubs(hub, args).await;
    }
    let mut client = hub.connect().await?;
    match args.kind {
        GetKind::Hubs => unreachable_kind(),
        GetKind::Clusters => get_clusters(&mut client, args).await,
        GetKind::Units => {
            let kind = pb::ResourceKind::LogicalUnit;
            let documents = match &args.name {
                Some(name) => vec![get_one(&mut client, kind, "", name).await?],
                None => list(&mut client, kind, "").await?,
            };
            print_documents(&documents, args, unit_table)
        }
        GetKind::Pipelines => {
            let kind = pb::ResourceKind::ReleasePipeline;
            let documents = get_namespaced(&mut client, kind, args).await?;
            print_documents(&documents, args, pipeline_table)
        }
        GetKind::Deployments => {
            let kind = pb::ResourceKind::CafeDeployment;
            let documents = get_namespaced(&mut client, kind, args).await?;
            let documents = if args.waiting {
                documents.into_iter().filter(waits_for_a_human).collect()
            } else {
                documents
            };
            print_documents(&documents, args, deployment_table)
        }
    }
}

/// The named document of a namespaced kind, or every one (of `-n`'s namespace, else of all).
async fn get_namespaced(
    client: &mut HubClient,
    kind: pb::ResourceKind,
    args: &GetArgs,
) -> Result<Vec<Value>, CliError> {
    match &args.name {
        Some(name) => {
            let r = deployment_ref(name, args.namespace.as_deref())?;
            Ok(vec![get_one(client, kind, &r.namespace, &r.name).await?])
        }
        None => {
            let namespace = args.namespace.as_deref().unwrap_or_default();
            list(client, kind, namespace).await
        }
    }
}

async fn get_one(
    client: &mut HubClient,
    kind: pb::ResourceKind,
    namespace: &str,
    name: &str,
) -> Result<Value, CliError> {
    let document = client
        .client
        .get(unary(pb::GetRequest {
            kind: kind as i32,
            namespace: namespace.to_owned(),
            name: name.to_owned(),
        }))
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => CliError::Failed(format!(
                "{} not found",
                resource_name(kind_name(kind as i32), namespace, name)
            )),
            _ => client.error(status),
        })?
        .into_inner();
    parse_document(&document.json)
}

async fn list(
    client: &mut HubClient,
    kind: pb::ResourceKind,
    namespace: &str,
) -> Result<Vec<Value>, CliError> {
    let list = client
        .client
        .list(unary(pb::ListRequest {
            kind: kind as i32,
            namespace: namespace.to_owned(),
        }))
        .await
        .map_err(|status| client.error(status))?
        .into_inner();
    list.items_json.iter().map(|j| parse_document(j)).collect()
}

fn parse_document(json: &str) -> Result<Value, CliError> {
    serde_json::from_str(json)
        .map_err(|e| CliError::Failed(format!("the hub sent a document that is not JSON: {e}")))
}

/// Whether a deployment's release waits for a human (`get deployments --waiting`): paused, or
/// failed. A release holding for its pipeline's next stage waits for the pipeline instead.
fn waits_for_a_human(document: &Value) -> bool {
    matches!(
        text(document, "/status/phase").as_str(),
        "Paused" | "Failed"
    ) && text(document, "/status/reason") != "AwaitingStage"
}

/// One named document prints as itself, a listing as `{"items": [...]}`; `rows(documents, wide)`
/// builds the table.
fn print_documents(
    documents: &[Value],
    args: &GetArgs,
    rows: fn(&[Value], bool) -> Vec<Vec<String>>,
) -> Result<String, CliError> {
    let as_table = |wide| table(&rows(documents, wide));
    match (&args.name, documents) {
        (Some(_), [one]) => render_wide(one, &args.output, as_table),
        _ => render_wide(&Items { items: documents }, &args.output, as_table),
    }
}

/// A string field of a document, empty when absent.
fn text(document: &Value, pointer: &str) -> String {
    match document.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

fn unit_table(documents: &[Value], _wide: bool) -> Vec<Vec<String>> {
    let mut rows = vec![header(&[
        "NAME", "REGION", "ZONE", "CLUSTER", "WEIGHT", "PHASE",
    ])];
    rows.extend(documents.iter().map(|d| {
        let phase = text(d, "/status/phase");
        vec![
            text(d, "/metadata/name"),
            text(d, "/spec/region"),
            text(d, "/spec/zone"),
            text(d, "/spec/cluster"),
            text(d, "/spec/weight"),
            if phase.is_empty() {
                "Active".to_owned()
            } else {
                phase
            },
        ]
    }));
    rows
}

fn deployment_table(documents: &[Value], wide: bool) -> Vec<Vec<String>> {
    let mut columns = vec![
        "NAMESPACE",
        "NAME",
        "REPLICAS",
        "UNITS",
        "PHASE",
        "GROUP",
        "REVISION",
    ];
    if wide {
        columns.extend(["REASON", "STABLE-REVISION", "MESSAGE"]);
    }
    let mut rows = vec![header(&columns)];
    rows.extend(documents.iter().map(|d| {
        let phase = text(d, "/status/phase");
        let group = match (
            d.pointer("/status/batch").and_then(Value::as_i64),
            d.pointer("/status/batches").and_then(Value::as_i64),
        ) {
            (Some(batch), Some(batches)) if phase != "Stable" => {
                format!("{}/{batches}", batch + 1)
            }
            _ => "-".to_owned(),
        };
        let units = d
            .pointer("/status/units")
            .and_then(Value::as_array)
            .map_or_else(String::new, |u| u.len().to_string());
        let mut row = vec![
            text(d, "/metadata/namespace"),
            text(d, "/metadata/name"),
            text(d, "/spec/replicas"),
            or_dash(&units),
            or_dash(&phase),
            group,
            or_dash(&text(d, "/status/updateRevision")),
        ];
        if wide {
            row.extend([
                or_dash(&text(d, "/status/reason")),
                or_dash(&text(d, "/status/currentRevision")),
                or_dash(&text(d, "/status/message")),
            ]);
        }
        row
    }));
    rows
}

fn pipeline_table(documents: &[Value], wide: bool) -> Vec<Vec<String>> {
    let mut columns = vec!["NAMESPACE", "NAME", "PHASE", "STAGE", "GATE", "RELEASES"];
    if wide {
        columns.extend(["WAITING-FOR", "MESSAGE"]);
    }
    let mut rows = vec![header(&columns)];
    rows.extend(documents.iter().map(|d| {
        let stage = match (
            d.pointer("/status/stageIndex").and_then(Value::as_u64),
            d.pointer("/status/stages").and_then(Value::as_u64),
        ) {
            (Some(i), Some(n)) => format!("{} ({}/{n})", text(d, "/status/stage"), i + 1),
            _ => "-".to_owned(),
        };
        let releases = d
            .pointer("/status/releases")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        let mut row = vec![
            text(d, "/metadata/namespace"),
            text(d, "/metadata/name"),
            or_dash(&text(d, "/status/phase")),
            stage,
            format!(
                "{} {}",
                text(d, "/status/gate"),
                text(d, "/status/gateState")
            ),
            releases.to_string(),
        ];
        if wide {
            row.extend([
                or_dash(&text(d, "/status/waitingFor")),
                or_dash(&text(d, "/status/message")),
            ]);
        }
        row
    }));
    rows
}

/// `cafectl set image`: reads the stored deployment, changes the named containers' images and
/// applies it back, which starts a release as `apply` does. An unknown container changes nothing.
pub async fn set(hub: &HubArgs, args: &SetArgs) -> Result<String, CliError> {
    let SetCommand::Image {
        name,
        images,
        namespace,
        dry_run,
    } = &args.what;
    let mut wanted = Vec::with_capacity(images.len());
    for pair in images {
        match pair.split_once('=') {
            Some((container, image)) if !container.is_empty() && !image.is_empty() => {
                wanted.push((container, image));
            }
            _ => {
                return Err(CliError::BadInput(format!(
                    "error: {pair:?}: expected CONTAINER=IMAGE"
                )));
            }
        }
    }
    let reference = deployment_ref(name, namespace.as_deref())?;
    let mut client = hub.connect().await?;
    let kind = pb::ResourceKind::CafeDeployment;
    let mut document = get_one(&mut client, kind, &reference.namespace, &reference.name).await?;
    let shown = resource_name(
        crate::resources::CAFE_DEPLOYMENT_KIND,
        &reference.namespace,
        &reference.name,
    );
    let containers = document
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| CliError::Failed(format!("{shown} has no containers")))?;
    for (container, image) in &wanted {
        let found = containers
            .iter_mut()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(container));
        match found {
            Some(found) => found["image"] = Value::String((*image).to_owned()),
            None => {
                let known: Vec<&str> = containers
                    .iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str))
                    .collect();
                return Err(CliError::BadInput(format!(
                    "error: {shown}: spec.template.spec.containers: no container named {container:?} (it has {})",
                    known.join(", ")
                )));
            }
        }
    }
    // What apply takes: the document without the hub's status.
    if let Some(object) = document.as_object_mut() {
        object.remove("status");
    }
    let json = document.to_string();
    let response = client
        .client
        .apply(unary(pb::ApplyRequest {
            documents_json: vec![json],
            dry_run: *dry_run,
        }))
        .await
        .map_err(|status| client.error(status))?
        .into_inner();
    Ok(applied_lines(&response, *dry_run))
}

async fn get_clusters(client: &mut HubClient, args: &GetArgs) -> Result<String, CliError> {
    let clusters = client
        .client
        .list_clusters(unary(pb::ListClustersRequest {}))
        .await
        .map_err(|status| client.error(status))?
        .into_inner()
        .clusters;
    let mut items: Vec<ClusterItem> = clusters.into_iter().map(ClusterItem::from).collect();
    if let Some(name) = &args.name {
        items.retain(|c| &c.name == name);
        let [one] = items.as_slice() else {
            return Err(CliError::Failed(format!("cluster {name} not found")));
        };
        return render(one, &args.output, || cluster_table(&items));
    }
    render(&Items { items: &items }, &args.output, || {
        cluster_table(&items)
    })
}

fn unreachable_kind() -> Result<String, CliError> {
    Err(CliError::Failed("internal error: get hubs".to_owned()))
}

/// One hub replica, as `get hubs` shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HubItem {
    /// The URL of the configuration.
    pub url: String,
    /// `Leader`, `Follower` or `Unreachable`.
    pub role: String,
    /// The replica's store.
    pub store: String,
    /// The leader's URL, as this replica knows it.
    pub leader: String,
    /// How long the leader has held its lease, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_age_seconds: Option<f64>,
    /// On the leader: how long ago its last lease renewal was confirmed, in seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_renewed_seconds_ago: Option<f64>,
    /// Why the replica cannot be reached, or has no leader.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub message: String,
}

#[allow(clippy::cast_precision_loss)] // Ages in ms, far below 2^52.
fn seconds(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// `cafectl get hubs`: asks every configured replica who it is.
async fn get_hubs(hub: &HubArgs, args: &GetArgs) -> Result<String, CliError> {
    let mut items = Vec::new();
    for (url, endpoint) in hub.replica_endpoints()? {
        let mut item = HubItem {
            url: url.clone(),
            role: "Unreachable".to_owned(),
            store: String::new(),
            leader: String::new(),
            lease_age_seconds: None,
            lease_renewed_seconds_ago: None,
            message: String::new(),
        };
        match endpoint.connect().await {
            Err(e) => item.message = crate::error_chain(&e),
            Ok(channel) => {
                let mut client = pb::replica_client::ReplicaClient::new(channel);
                match client.get_replica(unary(pb::GetReplicaRequest {})).await {
                    Err(status) => item.message = status.message().to_owned(),
                    Ok(reply) => {
                        let info = reply.into_inner();
                        item.role = info.role;
                        item.store = info.store;
                        item.leader = info.leader_url;
                        item.message = info.trouble;
                        if info.leader_since_ms > 0 {
                            item.lease_age_seconds =
                                Some(seconds(info.now_ms - info.leader_since_ms));
                        }
                        if item.role == "Leader" {
                            item.lease_renewed_seconds_ago =
                                Some(seconds(info.lease_renewed_ago_ms));
                        }
                    }
                }
            }
        }
        items.push(item);
    }
    render(&Items { items: &items }, &args.output, || hub_table(&items))
}

fn hub_table(items: &[HubItem]) -> String {
    let mut rows = vec![header(&[
        "URL",
        "ROLE",
        "STORE",
        "LEADER",
        "LEASE-AGE",
        "RENEWED",
    ])];
    let age = |s: Option<f64>| s.map_or_else(|| "-".to_owned(), |s| format!("{s:.1}s"));
    rows.extend(items.iter().map(|h| {
        vec![
            h.url.clone(),
            h.role.clone(),
            or_dash(&h.store),
            or_dash(&h.leader),
            age(h.lease_age_seconds),
            age(h.lease_renewed_seconds_ago),
        ]
    }));
    let mut out = table(&rows);
    for h in items.iter().filter(|h| !h.message.is_empty()) {
        out.push_str(&format!("{}: {}\n", h.url, h.message));
    }
    out
}

fn cluster_table(items: &[ClusterItem]) -> String {
    let mut rows = vec![header(&[
        "NAME",
        "STATE",
        "AGENT",
        "LAST-SEEN",
        "UNITS",
        "SLICES",
    ])];
    rows.extend(items.iter().map(|c| {
        vec![
            c.name.clone(),
            c.state.clone(),
            or_dash(&c.agent_version),
            or_dash(&c.last_seen),
            or_dash(&c.units.join(",")),
            c.slices.to_string(),
        ]
    }));
    table(&rows)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests fail loudly on unexpected errors.
mod tests {
    use super::*;
    use crate::resources::parse_yaml_documents;

    #[test]
    fn hub_errors_name_the_file_of_the_document() {
        let units = parse_yaml_documents(
            "apiVersion: cafe.io/v1alpha1\nkind: LogicalUnit\nmetadata: {name: a}\n\
             spec: {region: r, zone: z, cluster: c}\n",
        )
        .unwrap();
        let resources: Vec<_> = units
            .into_iter()
            .map(|r| (PathBuf::from("u.yaml"), r))
            .collect();
        // What the hub sends: typed errors in the details, whatever the message says.
        let refused = [
            crate::resources::DocumentError {
                index: 1,
                subject: Some(crate::resources::Subject::new("LogicalUnit", "a")),
                errors: FieldErrors(vec![
                    FieldError::new("spec.cluster", "cannot move"),
                    FieldError::new("spec.zone", "is required"),
                ]),
            },
            crate::resources::DocumentError {
                index: 7,
                subject: None,
                errors: FieldErrors(vec![FieldError::new("", "not valid JSON")]),
            },
        ];
        let status = crate::hub::convert::invalid_documents_status(&refused);
        assert_eq!(
            locate_errors(&status, &resources),
            "error: u.yaml: LogicalUnit a: spec.cluster: cannot move; spec.zone: is required\n\
             error: document 7: not valid JSON"
        );
        // A hub that sends only text is shown as it is.
        let plain = tonic::Status::invalid_argument("document 1 (LogicalUnit a): bad\nmore");
        assert_eq!(
            locate_errors(&plain, &resources),
            "error: document 1 (LogicalUnit a): bad\nerror: more"
        );
    }

    #[test]
    fn names_read_like_kubectl() {
        assert_eq!(resource_name("LogicalUnit", "", "a"), "logicalunit/a");
        assert_eq!(
            resource_name("CafeDeployment", "finance", "payments"),
            "cafedeployment/finance/payments"
        );
    }
}
