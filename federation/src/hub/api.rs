//! The operators' gRPC API (`Federation`), with roles from client certificates: viewers read,
//! operators also drive releases and deployments, admins also manage units and failover.

use super::failover::EvacuationTarget;
use super::{Hub, HubError};
use crate::names::{DeploymentKey, DeploymentName, Namespace, UnitName};
use crate::release::ReleaseCommand;
use crate::resources::{CafeDeployment, DEFAULT_NAMESPACE, Resource, parse_json_document};
use crate::tls::{Role, authorize};
use cafe_proto::v1 as pb;
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// The Federation service.
#[derive(Debug, Clone)]
pub struct FederationService {
    hub: Hub,
    /// Without TLS (`--insecure`), every caller is an admin named `insecure`.
    insecure: bool,
}

impl FederationService {
    /// The service over `hub`.
    pub fn new(hub: Hub, insecure: bool) -> Self {
        Self { hub, insecure }
    }

    /// The caller's name, when its role allows `needed`.
    fn caller<T>(&self, request: &Request<T>, needed: Role) -> Result<String, Status> {
        if self.insecure {
            return Ok("insecure".to_owned());
        }
        let identity = authorize(request, needed)?;
        Ok(identity.to_string())
    }
}

/// Maps hub errors to gRPC statuses.
impl From<HubError> for Status {
    fn from(error: HubError) -> Self {
        match &error {
            HubError::Invalid(documents) => super::convert::invalid_documents_status(documents),
            HubError::NotFound(_) => Status::not_found(error.to_string()),
            HubError::FailedPrecondition(_) | HubError::Command(_) => {
                Status::failed_precondition(error.to_string())
            }
            // With the causes: "store commit failed" alone does not say that etcd is away.
            HubError::Store(_) | HubError::Corrupt { .. } | HubError::Encode(_) => {
                Status::internal(crate::error_chain(&error))
            }
            HubError::Stopped(_) => Status::unavailable(error.to_string()),
        }
    }
}

fn deployment_key(reference: Option<&pb::DeploymentRef>) -> Result<DeploymentKey, Status> {
    let reference =
        reference.ok_or_else(|| Status::invalid_argument("ref: a deployment name is required"))?;
    let namespace = if reference.namespace.is_empty() {
        DEFAULT_NAMESPACE
    } else {
        &reference.namespace
    };
    Ok(DeploymentKey {
        namespace: Namespace::new(namespace)
            .map_err(|e| Status::invalid_argument(format!("ref.namespace: {e}")))?,
        name: DeploymentName::new(reference.name.clone())
            .map_err(|e| Status::invalid_argument(format!("ref.name: {e}")))?,
    })
}

fn unit_name(name: &str, field: &str) -> Result<UnitName, Status> {
    UnitName::new(name).map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Status> {
    serde_json::to_string(value)
        .map_err(|e| Status::internal(format!("cannot encode a document: {e}")))
}

type StatusStream = Pin<Box<dyn Stream<Item = Result<pb::DeploymentStatus, Status>> + Send>>;

impl FederationService {
    async fn command(
        &self,
        request: Request<pb::ReleaseCommand>,
        command: impl FnOnce(&pb::ReleaseCommand) -> ReleaseCommand,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let who = self.caller(&request, Role::Operator)?;
        let body = request.into_inner();
        let key = deployment_key(body.r#ref.as_ref())?;
        let expected = body
            .expected_batch
            .map(|b| {
                usize::try_from(b)
                    .map_err(|_| Status::invalid_argument("expected_batch: must not be negative"))
            })
            .transpose()?;
        let outcome = self
            .hub
            .command(&key, command(&body), expected, &body.reason, &who)
            .await?;
        let status = self.hub.status_proto(&key)?;
        Ok(Response::new(pb::CommandResult {
            changed: outcome.changed(),
            message: outcome.message,
            status: Some(status),
        }))
    }

    fn document(
        &self,
        kind: pb::ResourceKind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<String>, Status> {
        match kind {
            pb::ResourceKind::LogicalUnit => {
                let name = unit_name(name, "name")?;
                self.hub
                    .read(|core, _| core.units().get(&name).map(to_json))
                    .transpose()
            }
            pb::ResourceKind::CafeDeployment => {
                let key = deployment_key(Some(&pb::DeploymentRef {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                }))?;
                self.hub
                    .read(|core, now| deployment_document(core, &key, now))
                    .transpose()
            }
            pb::ResourceKind::ReleasePipeline => {
                let key = deployment_key(Some(&pb::DeploymentRef {
                    namespace: namespace.to_owned(),
                    name: name.to_owned(),
                }))?;
                self.hub
                    .read(|core, _| pipeline_document(core, &key))
                    .transpose()
            }
            pb::ResourceKind::Unspecified => Err(Status::invalid_argument(KINDS)),
        }
    }
}

/// What a request that names no kind is told.
const KINDS: &str = "kind: LogicalUnit, CafeDeployment or ReleasePipeline";

/// A pipeline as a document, with its progress as its `status`.
fn pipeline_document(
    core: &super::core::Core,
    key: &DeploymentKey,
) -> Option<Result<String, Status>> {
    let record = core.pipelines().find(|(k, _)| *k == key)?.1;
    let mut pipeline = record.pipeline.clone();
    let status = core.pipeline_status(key)?;
    pipeline.status = Some(serde_json::to_value(&status).unwrap_or_default());
    Some(to_json(&pipeline))
}

/// A deployment as a document, with the release status as its `status`.
fn deployment_document(
    core: &super::core::Core,
    key: &DeploymentKey,
    now: i64,
) -> Option<Result<String, Status>> {
    let record = core.deployment(key)?;
    let mut deployment = CafeDeployment::clone(&record.deployment);
    let status = core.status(key, now)?;
    deployment.status = Some(serde_json::json!({
        "observedGeneration": deployment.metadata.generation,
        "phase": status.phase,
        "reason": status.reason,
        "batch": status.batch,
        "batches": status.batches,
        "currentRevision": status.current_revision,
        "updateRevision": status.update_revision,
        "message": status.message,
        "units": status.units,
        "conditions": core.conditions(key).unwrap_or_default(),
    }));
    Some(to_json(&deployment))
}

#[tonic::async_trait]
impl pb::federation_server::Federation for FederationService {
    async fn apply(
        &self,
        request: Request<pb::ApplyRequest>,
    ) -> Result<Response<pb::ApplyResponse>, Status> {
        let body = request.get_ref();
        let mut resources = Vec::new();
        let mut failures = Vec::new();
        for (i, document) in body.documents_json.iter().enumerate() {
            match parse_json_document(i + 1, document) {
                Ok(resource) => resources.push(resource),
                Err(error) => failures.push(error),
            }
        }
        if !failures.is_empty() {
            return Err(HubError::Invalid(failures).into());
        }
        let needed = if resources.iter().any(|r| matches!(r, Resource::Unit(_))) {
            Role::Admin
        } else {
            Role::Operator
        };
        let who = self.caller(&request, needed)?;
        let results = self.hub.apply(resources, &who, body.dry_run).await?;
        Ok(Response::new(pb::ApplyResponse {
            results: results
                .into_iter()
                .map(|r| pb::AppliedResource {
                    kind: r.kind.as_str().to_owned(),
                    namespace: r.namespace,
                    name: r.name,
                    action: r.action.as_str().to_owned(),
                })
                .collect(),
        }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::Document>, Status> {
        self.caller(&request, Role::Viewer)?;
        let body = request.into_inner();
        let kind = pb::ResourceKind::try_from(body.kind).unwrap_or(pb::ResourceKind::Unspecified);
        match self.document(kind, &body.namespace, &body.name)? {
            Some(json) => Ok(Response::new(pb::Document { json })),
            None => {
                let namespace = if body.namespace.is_empty() {
                    DEFAULT_NAMESPACE
                } else {
                    &body.namespace
                };
                let what = match kind {
                    pb::ResourceKind::CafeDeployment => {
                        format!("CafeDeployment {namespace}/{}", body.name)
                    }
                    pb::ResourceKind::ReleasePipeline => {
                        format!("ReleasePipeline {namespace}/{}", body.name)
                    }
                    _ => format!("LogicalUnit {}", body.name),
                };
                Err(Status::not_found(format!("{what} not found")))
            }
        }
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::DocumentList>, Status> {
        self.caller(&request, Role::Viewer)?;
        let body = request.into_inner();
        let items =
            match pb::ResourceKind::try_from(body.kind).unwrap_or(pb::ResourceKind::Unspecified) {
                pb::ResourceKind::LogicalUnit => self.hub.read(|core, _| {
                    core.units()
                        .values()
                        .map(to_json)
                        .collect::<Result<Vec<_>, _>>()
                })?,
                pb::ResourceKind::CafeDeployment => self.hub.read(|core, now| {
                    core.deployments()
                        .filter(|(k, _)| {
                            body.namespace.is_empty() || k.namespace.as_str() == body.namespace
                        })
                        .filter_map(|(k, _)| deployment_document(core, k, now))
                        .collect::<Result<Vec<_>, _>>()
                })?,
                pb::ResourceKind::ReleasePipeline => self.hub.read(|core, _| {
                    core.pipelines()
                        .filter(|(k, _)| {
                            body.namespace.is_empty() || k.namespace.as_str() == body.namespace
                        })
                        .filter_map(|(k, _)| pipeline_document(core, k))
                        .collect::<Result<Vec<_>, _>>()
                })?,
                pb::ResourceKind::Unspecified => {
                    return Err(Status::invalid_argument(KINDS));
                }
            };
        Ok(Response::new(pb::DocumentList { items_json: items }))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let kind = pb::ResourceKind::try_from(request.get_ref().kind)
            .unwrap_or(pb::ResourceKind::Unspecified);
        let deleted = match kind {
            pb::ResourceKind::LogicalUnit => {
                let who = self.caller(&request, Role::Admin)?;
                let name = unit_name(&request.get_ref().name, "name")?;
                self.hub.delete_unit(&name, &who).await?
            }
            pb::ResourceKind::CafeDeployment | pb::ResourceKind::ReleasePipeline => {
                let who = self.caller(&request, Role::Operator)?;
                let body = request.get_ref();
                let key = deployment_key(Some(&pb::DeploymentRef {
                    namespace: body.namespace.clone(),
                    name: body.name.clone(),
                }))?;
                if kind == pb::ResourceKind::ReleasePipeline {
                    self.hub.delete_pipeline(&key, &who).await?
                } else {
                    self.hub.delete_deployment(&key, &who).await?
                }
            }
            pb::ResourceKind::Unspecified => {
                return Err(Status::invalid_argument(KINDS));
            }
        };
        Ok(Response::new(pb::DeleteResponse { deleted }))
    }

    async fn plan(
        &self,
        request: Request<pb::PlanRequest>,
    ) -> Result<Response<pb::PlanResponse>, Status> {
        self.caller(&request, Role::Viewer)?;
        let body = request.into_inner();
        let current = body
            .current
            .iter()
            .map(|(unit, n)| Ok((unit_name(unit, "current")?, *n)))
            .collect::<Result<_, Status>>()?;
        let (deployment, stored) = if body.deployment_json.is_empty() {
            let key = deployment_key(body.r#ref.as_ref())?;
            let deployment = self
                .hub
                .read(|core, _| {
                    core.deployment(&key)
                        .map(|r| CafeDeployment::clone(&r.deployment))
                })
                .ok_or_else(|| Status::not_found(format!("CafeDeployment {key} not found")))?;
            (deployment, Some(key))
        } else {
            match parse_json_document(1, &body.deployment_json) {
                Ok(Resource::Deployment(d)) => (*d, None),
                Ok(_) => {
                    return Err(Status::invalid_argument(
                        "deployment_json: a CafeDeployment is expected",
                    ));
                }
                Err(error) => return Err(HubError::Invalid(vec![error]).into()),
            }
        };
        let plan = self
            .hub
            .read(|core, _| {
                // A stored deployment a pipeline drives is planned in its stages' blocks.
                let blocks = stored.map(|k| core.plan_blocks(&k)).unwrap_or_default();
                crate::plan::plan_deployment_in(&deployment, core.units(), &current, blocks)
            })
            .map_err(|errors| Status::invalid_argument(errors.to_string()))?;
        Ok(Response::new(pb::PlanResponse {
            plan_json: to_json(&plan)?,
        }))
    }

    async fn get_status(
        &self,
        request: Request<pb::DeploymentRef>,
    ) -> Result<Response<pb::DeploymentStatus>, Status> {
        self.caller(&request, Role::Viewer)?;
        let key = deployment_key(Some(request.get_ref()))?;
        Ok(Response::new(self.hub.status_proto(&key)?))
    }

    type WatchStatusStream = StatusStream;

    async fn watch_status(
        &self,
        request: Request<pb::DeploymentRef>,
    ) -> Result<Response<StatusStream>, Status> {
        self.caller(&request, Role::Viewer)?;
        let key = deployment_key(Some(request.get_ref()))?;
        let first = self.hub.status_proto(&key)?;
        let hub = self.hub.clone();
        let mut changes = hub.subscribe_changes();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let watcher = hub.clone();
        watcher.spawn("a status watch", async move {
            let _open = hub.metrics().watch_opened();
            let mut last = first.clone();
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
            // Time alone changes connectivity, so look again now and then even without events.
            let mut poll = tokio::time::interval(super::link::HEARTBEAT_INTERVAL);
            loop {
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = poll.tick() => {}
                    () = tx.closed() => return,
                }
                let next = match hub.status_proto(&key) {
                    Ok(status) => status,
                    Err(error) => {
                        let _ = tx.send(Err(error.into())).await;
                        return;
                    }
                };
                if next != last {
                    last = next.clone();
                    if tx.send(Ok(next)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn pause(
        &self,
        request: Request<pb::ReleaseCommand>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.command(request, |_| ReleaseCommand::Pause).await
    }

    async fn r#continue(
        &self,
        request: Request<pb::ReleaseCommand>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.command(request, |body| {
            if body.full {
                ReleaseCommand::Promote
            } else {
                ReleaseCommand::Continue
            }
        })
        .await
    }

    async fn retry(
        &self,
        request: Request<pb::ReleaseCommand>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.command(request, |_| ReleaseCommand::Retry).await
    }

    async fn rollback(
        &self,
        request: Request<pb::ReleaseCommand>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        self.command(request, |body| ReleaseCommand::Rollback {
            to_revision: body.to_revision,
        })
        .await
    }

    async fn history(
        &self,
        request: Request<pb::DeploymentRef>,
    ) -> Result<Response<pb::HistoryResponse>, Status> {
        self.caller(&request, Role::Viewer)?;
        let key = deployment_key(Some(request.get_ref()))?;
        let revisions = self
            .hub
            .read(|core, _| {
                core.deployment(&key).map(|record| {
                    record
                        .release
                        .history
                        .iter()
                        .rev()
                        .map(|r| pb::Revision {
                            number: r.number,
                            name: r.name.clone(),
                            created: super::clock::rfc3339(r.created_ms),
                            template_json: serde_json::to_string(&r.template).unwrap_or_default(),
                            current: r.name == record.release.current_revision,
                        })
                        .collect()
                })
            })
            .ok_or_else(|| Status::not_found(format!("CafeDeployment {key} not found")))?;
        Ok(Response::new(pb::HistoryResponse { revisions }))
    }

    async fn list_clusters(
        &self,
        request: Request<pb::ListClustersRequest>,
    ) -> Result<Response<pb::ClusterList>, Status> {
        self.caller(&request, Role::Viewer)?;
        let clusters = self.hub.read(|core, now| {
            core.known_clusters()
                .into_iter()
                .map(|name| {
                    let live = core.cluster(&name);
                    let state = super::core::LinkState::of(live, now);
                    pb::ClusterInfo {
                        name: name.to_string(),
                        state: state.as_str().to_owned(),
                        agent_version: live.map(|l| l.agent_version.clone()).unwrap_or_default(),
                        last_seen: live
                            .map(|l| l.last_seen_ms())
                            .filter(|ms| *ms > 0)
                            .map(super::clock::rfc3339)
                            .unwrap_or_default(),
                        units: core
                            .units
                            .iter()
                            .filter(|(_, u)| u.spec.cluster == name)
                            .map(|(n, _)| n.to_string())
                            .collect(),
                        slices: i32::try_from(core.cluster_slice_count(&name)).unwrap_or(i32::MAX),
                    }
                })
                .collect()
        });
        Ok(Response::new(pb::ClusterList { clusters }))
    }

    async fn evacuate(
        &self,
        request: Request<pb::EvacuateRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let who = self.caller(&request, Role::Admin)?;
        let body = request.into_inner();
        let target = match body.target {
            Some(pb::evacuate_request::Target::Unit(unit)) => {
                EvacuationTarget::Unit(unit_name(&unit, "unit")?)
            }
            Some(pb::evacuate_request::Target::Region(region)) => EvacuationTarget::Region(
                crate::names::RegionName::new(region)
                    .map_err(|e| Status::invalid_argument(format!("region: {e}")))?,
            ),
            None => return Err(Status::invalid_argument("target: give a unit or a region")),
        };
        let outcome = self
            .hub
            .evacuate(&target, body.force, &body.reason, &who)
            .await?;
        Ok(Response::new(pb::CommandResult {
            changed: outcome.changed,
            message: outcome.message,
            status: None,
        }))
    }

    async fn failback(
        &self,
        request: Request<pb::FailbackRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let who = self.caller(&request, Role::Admin)?;
        let body = request.into_inner();
        let unit = unit_name(&body.unit, "unit")?;
        let outcome = self.hub.failback(&unit, &body.reason, &who).await?;
        Ok(Response::new(pb::CommandResult {
            changed: outcome.changed,
            message: outcome.message,
            status: None,
        }))
    }

    async fn failover_status(
        &self,
        request: Request<pb::FailoverStatusRequest>,
    ) -> Result<Response<pb::FailoverStatusResponse>, Status> {
        self.caller(&request, Role::Viewer)?;
        let (auto_failover, units) = self.hub.failover_status();
        let units = units
            .into_iter()
            .map(|u| pb::UnitFailover {
                unit: u.unit.to_string(),
                region: u.region,
                cluster: u.cluster,
                phase: format!("{:?}", u.phase),
                reason: u.reason,
                since: u.since,
                capacity_restored: u.capacity_restored,
            })
            .collect();
        Ok(Response::new(pb::FailoverStatusResponse {
            auto_failover,
            units,
        }))
    }

    async fn pipeline_command(
        &self,
        request: Request<pb::PipelineCommandRequest>,
    ) -> Result<Response<pb::CommandResult>, Status> {
        let who = self.caller(&request, Role::Operator)?;
        let body = request.into_inner();
        let key = deployment_key(body.r#ref.as_ref())?;
        let command = pb::PipelineVerb::try_from(body.verb)
            .ok()
            .and_then(super::convert::pipeline_command)
            .ok_or_else(|| {
                Status::invalid_argument("verb: approve, pause, resume, abort or rollback")
            })?;
        let outcome = self
            .hub
            .pipeline_command(&key, command, body.expected_stage, &body.reason, &who)
            .await?;
        Ok(Response::new(pb::CommandResult {
            changed: outcome.changed,
            message: outcome.message,
            status: None,
        }))
    }

    async fn audit(
        &self,
        request: Request<pb::AuditRequest>,
    ) -> Result<Response<pb::AuditResponse>, Status> {
        self.caller(&request, Role::Viewer)?;
        let limit = match request.get_ref().limit {
            0 => 100,
            n => n as usize,
        };
        // The store may wait for its copy of etcd to catch up: off the async workers.
        let hub = self.hub.clone();
        let entries = tokio::task::spawn_blocking(move || hub.audit_log(limit))
            .await
            .map_err(|e| Status::internal(format!("the audit read failed: {e}")))??
            .into_iter()
            .map(|r| pb::AuditEntry {
                time: r.time,
                who: r.who,
                what: r.what,
                result: r.result,
            })
            .collect();
        Ok(Response::new(pb::AuditResponse { entries }))
    }
}
