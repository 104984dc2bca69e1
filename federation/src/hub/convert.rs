//! Conversions between the hub's domain values and the wire types, at the gRPC boundary.

use crate::release::{
    AnalysisStatusView, BlueGreenUnitView, DeploymentStatusView, MeasurementView, Phase, SliceSpec,
    UnitStatusView,
};
use crate::resources::UpgradeKind;
use cafe_proto::v1 as pb;
use prost::Message as _;

/// The JSON of each revision's template, made once for all the slices of a sync.
#[derive(Debug, Default)]
pub struct TemplateJson(std::collections::HashMap<String, String>);

impl TemplateJson {
    fn of(
        &mut self,
        revision: &str,
        template: &k8s_openapi::api::core::v1::PodTemplateSpec,
    ) -> Result<String, super::HubError> {
        if let Some(json) = self.0.get(revision) {
            return Ok(json.clone());
        }
        let json =
            serde_json::to_string(template).map_err(|e| super::HubError::Encode(e.to_string()))?;
        self.0.insert(revision.to_owned(), json.clone());
        Ok(json)
    }
}

/// Adds the templates (as JSON) to a slice header: the costly part, done only for slices that changed.
pub fn fill_templates(
    wire: &mut pb::Slice,
    slice: &SliceSpec,
    json: &mut TemplateJson,
) -> Result<(), super::HubError> {
    wire.template_json = json.of(&slice.update_revision, &slice.template)?;
    wire.stable_template_json = if slice.stable_revision == slice.update_revision {
        String::new()
    } else {
        json.of(&slice.stable_revision, &slice.stable_template)?
    };
    Ok(())
}

/// The wire form of a slice without its templates (the revision names stand for them), with
/// `generation` left at 0; [`fill_templates`] completes it.
pub fn slice_header(slice: &SliceSpec) -> pb::Slice {
    let template_json = String::new();
    let stable_template_json = String::new();
    pb::Slice {
        id: slice.id.to_string(),
        generation: 0,
        namespace: slice.id.deployment.namespace.to_string(),
        deployment: slice.id.deployment.name.to_string(),
        unit: slice.id.unit.to_string(),
        replicas: slice.replicas,
        partition: slice.partition,
        update_revision: slice.update_revision.clone(),
        template_json,
        stable_revision: slice.stable_revision.clone(),
        stable_template_json,
        selector: slice.selector.clone(),
        max_unavailable: slice.max_unavailable,
        min_ready_seconds: slice.min_ready_seconds,
        paused: slice.paused,
        upgrade: match slice.upgrade {
            UpgradeKind::InPlace => pb::UpgradeStrategy::InPlace,
            UpgradeKind::Recreate => pb::UpgradeStrategy::Recreate,
        } as i32,
        traffic: Some(pb::TrafficPolicy {
            readiness_gate: slice.traffic.readiness_gate.clone(),
            finalizers: slice.traffic.finalizers.clone(),
            drain_seconds: i32::try_from(slice.traffic.drain_seconds).unwrap_or(i32::MAX),
        }),
        node_selector: slice.node_selector.clone(),
        reason: slice.reason.clone(),
        blue_green: slice.blue_green.map(|bg| pb::BlueGreenSlice {
            switched: bg.switched,
            preview: bg.preview,
            scale_down_delay_seconds: i32::try_from(bg.scale_down_delay_seconds)
                .unwrap_or(i32::MAX),
        }),
        analysis: slice
            .analysis
            .as_ref()
            .map(|(reason, message)| pb::AnalysisNotice {
                reason: reason.clone(),
                message: message.clone(),
            }),
    }
}

/// The wire form of a release phase.
pub fn phase_to_proto(phase: Phase) -> pb::Phase {
    match phase {
        Phase::Stable => pb::Phase::Stable,
        Phase::Progressing => pb::Phase::Progressing,
        Phase::Paused => pb::Phase::Paused,
        Phase::Failed => pb::Phase::Failed,
        Phase::RollingBack => pb::Phase::RollingBack,
    }
}

/// The wire form of a release status in `phase` (the view shows it as text).
pub fn status_to_proto(phase: Phase, view: &DeploymentStatusView) -> pb::DeploymentStatus {
    let phase = phase_to_proto(phase);
    pb::DeploymentStatus {
        namespace: view.namespace.clone(),
        name: view.name.clone(),
        phase: phase as i32,
        reason: view.reason.clone(),
        batch: view.batch,
        batches: view.batches,
        current_revision: view.current_revision.clone(),
        update_revision: view.update_revision.clone(),
        message: view.message.clone(),
        replicas: view.units.iter().map(|u| u.replicas).sum(),
        units: view
            .units
            .iter()
            .map(|u| pb::UnitStatus {
                unit: u.unit.clone(),
                cluster: u.cluster.clone(),
                connected: u.connected,
                replicas: u.replicas,
                ready: u.ready,
                updated: u.updated,
                updated_ready: u.updated_ready,
                target: u.target,
                evacuated: u.evacuated,
                problems: u.problems.clone(),
                blue_green: u.blue_green.as_ref().map(|b| pb::BlueGreenUnitStatus {
                    state: b.state.clone(),
                    preview_ready: b.preview_ready,
                    serving: b.serving,
                    updated_serving: b.updated_serving,
                    standby: b.standby,
                    standby_until: b.standby_until.clone(),
                }),
            })
            .collect(),
        analysis: view.analysis.as_ref().map(|a| pb::AnalysisStatus {
            group: a.group,
            phase: a.phase.clone(),
            message: a.message.clone(),
            measurements: a
                .measurements
                .iter()
                .map(|m| pb::MeasurementStatus {
                    metric: m.metric.clone(),
                    unit: m.unit.clone().unwrap_or_default(),
                    value: m.value,
                    result: m.result.clone(),
                    time: m.time.clone(),
                    message: m.message.clone(),
                })
                .collect(),
        }),
    }
}

/// The domain form of a wire status, for cafectl's JSON output. A phase this cafectl does not know
/// (a newer hub's) shows as `Unknown`; reasons are shown as the hub sent them.
pub fn status_from_proto(status: &pb::DeploymentStatus) -> DeploymentStatusView {
    let phase = match pb::Phase::try_from(status.phase).unwrap_or(pb::Phase::Unspecified) {
        pb::Phase::Stable => "Stable",
        pb::Phase::Progressing => "Progressing",
        pb::Phase::Paused => "Paused",
        pb::Phase::Failed => "Failed",
        pb::Phase::RollingBack => "RollingBack",
        pb::Phase::Unspecified => "Unknown",
    };
    DeploymentStatusView {
        name: status.name.clone(),
        namespace: status.namespace.clone(),
        phase: phase.to_owned(),
        reason: status.reason.clone(),
        batch: status.batch,
        batches: status.batches,
        current_revision: status.current_revision.clone(),
        update_revision: status.update_revision.clone(),
        message: status.message.clone(),
        units: status
            .units
            .iter()
            .map(|u| UnitStatusView {
                unit: u.unit.clone(),
                cluster: u.cluster.clone(),
                connected: u.connected,
                replicas: u.replicas,
                ready: u.ready,
                updated: u.updated,
                updated_ready: u.updated_ready,
                target: u.target,
                evacuated: u.evacuated,
                problems: u.problems.clone(),
                blue_green: u.blue_green.as_ref().map(|b| BlueGreenUnitView {
                    state: b.state.clone(),
                    preview_ready: b.preview_ready,
                    serving: b.serving,
                    updated_serving: b.updated_serving,
                    standby: b.standby,
                    standby_until: b.standby_until.clone(),
                }),
            })
            .collect(),
        analysis: status.analysis.as_ref().map(|a| AnalysisStatusView {
            group: a.group,
            phase: a.phase.clone(),
            message: a.message.clone(),
            measurements: a
                .measurements
                .iter()
                .map(|m| MeasurementView {
                    metric: m.metric.clone(),
                    unit: (!m.unit.is_empty()).then(|| m.unit.clone()),
                    value: m.value,
                    result: m.result.clone(),
                    time: m.time.clone(),
                    message: m.message.clone(),
                })
                .collect(),
        }),
    }
}

/// The type URL of [`pb::ApplyErrors`] in a status's details.
pub const APPLY_ERRORS_TYPE_URL: &str = "type.googleapis.com/cafe.federation.v1.ApplyErrors";

/// The wire form of refused documents.
pub fn apply_errors_to_proto(errors: &[crate::resources::DocumentError]) -> pb::ApplyErrors {
    pb::ApplyErrors {
        documents: errors
            .iter()
            .map(|document| {
                let (kind, name) = document
                    .subject
                    .as_ref()
                    .map(|s| (s.kind.clone(), s.name.clone()))
                    .unwrap_or_default();
                pb::DocumentErrors {
                    index: u32::try_from(document.index).unwrap_or(u32::MAX),
                    kind,
                    name,
                    violations: document
                        .errors
                        .0
                        .iter()
                        .map(|e| pb::FieldViolation {
                            path: e.path.clone(),
                            message: e.message.clone(),
                        })
                        .collect(),
                }
            })
            .collect(),
    }
}

/// An INVALID_ARGUMENT status for refused documents: the readable message, and the errors typed
/// in its details (see `ApplyErrors` in the proto), with a `google.rpc.BadRequest` for generic
/// clients.
pub fn invalid_documents_status(errors: &[crate::resources::DocumentError]) -> tonic::Status {
    let message = errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n");
    let typed = apply_errors_to_proto(errors);
    let bad_request = tonic_types::pb::BadRequest {
        field_violations: typed
            .documents
            .iter()
            .flat_map(|d| {
                d.violations
                    .iter()
                    .map(move |v| tonic_types::pb::bad_request::FieldViolation {
                        field: format!("documents[{}].{}", d.index.saturating_sub(1), v.path)
                            .trim_end_matches('.')
                            .to_owned(),
                        description: v.message.clone(),
                        ..Default::default()
                    })
            })
            .collect(),
    };
    let any = |type_url: &str, value: Vec<u8>| prost_types::Any {
        type_url: type_url.to_owned(),
        value,
    };
    let details = tonic_types::pb::Status {
        code: tonic::Code::InvalidArgument as i32,
        message: message.clone(),
        details: vec![
            any(APPLY_ERRORS_TYPE_URL, typed.encode_to_vec()),
            any(
                "type.googleapis.com/google.rpc.BadRequest",
                bad_request.encode_to_vec(),
            ),
        ],
    };
    tonic::Status::with_details(
        tonic::Code::InvalidArgument,
        message,
        details.encode_to_vec().into(),
    )
}

/// The typed errors of a refused Apply, when the status carries them.
pub fn apply_errors_from_status(status: &tonic::Status) -> Option<pb::ApplyErrors> {
    let details = tonic_types::pb::Status::decode(status.details()).ok()?;
    details
        .details
        .iter()
        .find(|any| any.type_url == APPLY_ERRORS_TYPE_URL)
        .and_then(|any| pb::ApplyErrors::decode(any.value.as_slice()).ok())
}

/// The domain form of an agent's slice status.
pub fn observation_from_proto(
    status: pb::SliceStatus,
) -> Result<(crate::names::SliceId, super::core::Observation), crate::names::InvalidName> {
    use super::core::{Observation, Problem, Traffic};
    let id = status.id.parse()?;
    let problems = status
        .problems
        .into_iter()
        .map(|p| Problem::new(p.pod, p.reason, p.message))
        .collect();
    let observation = Observation::new(status.observed_generation, status.update_revision)
        .with_pods(
            status.replicas,
            status.ready_replicas,
            status.updated_replicas,
            status.updated_ready_replicas,
        )
        .with_traffic(Traffic {
            serving: status.serving_replicas,
            updated_serving: status.updated_serving_replicas,
            preview_ready: status.preview_ready_replicas,
            standby: status.standby_replicas,
            standby_until: status.standby_until,
        })
        .with_problems(problems);
    Ok((id, observation))
}

/// The wire form of a pipeline command.
pub fn pipeline_verb(command: crate::pipeline::PipelineCommand) -> pb::PipelineVerb {
    use crate::pipeline::PipelineCommand as C;
    match command {
        C::Approve => pb::PipelineVerb::Approve,
        C::Pause => pb::PipelineVerb::Pause,
        C::Resume => pb::PipelineVerb::Resume,
        C::Abort => pb::PipelineVerb::Abort,
        C::Rollback => pb::PipelineVerb::Rollback,
    }
}

/// The pipeline command a wire verb names (`None` for an unset one).
pub fn pipeline_command(verb: pb::PipelineVerb) -> Option<crate::pipeline::PipelineCommand> {
    crate::pipeline::PipelineCommand::ALL
        .iter()
        .map(|(c, _)| *c)
        .find(|c| pipeline_verb(*c) == verb)
}
