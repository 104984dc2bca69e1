//! `cafectl pipeline status|approve|pause|resume|abort|rollback NAME`: ReleasePipelines.

use super::client::{HubArgs, HubClient, deployment_ref, unary};
use super::output::{header, or_dash, render, table};
use super::{CliError, Output};
use crate::hub::pipelines::PipelineStatusView;
use cafe_proto::v1 as pb;
use std::fmt::Write as _;

/// `cafectl pipeline`.
#[derive(Debug, clap::Args)]
pub struct PipelineArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: PipelineSubcommand,
}

/// The pipeline commands.
#[derive(Debug, clap::Subcommand)]
pub enum PipelineSubcommand {
    /// The stage, each release's phase and group, the gate, and what the pipeline waits for.
    Status(StatusArgs),
    /// Open the gate of the stage that waits for approval: the next stage starts.
    Approve(CommandArgs),
    /// Pause the current stage's releases; no stage starts until `resume`.
    Pause(CommandArgs),
    /// Resume a paused pipeline, or one that a failure stopped (`onFailure: Stop`).
    Resume(CommandArgs),
    /// Stop driving the deployments: they stay where they stand, and can be released directly.
    Abort(CommandArgs),
    /// Every release back to its revision from before the pipeline, latest stage first.
    Rollback(CommandArgs),
}

/// `cafectl pipeline status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The pipeline: NAME or NAMESPACE/NAME.
    pub name: String,
    /// Its namespace; `default` when not given.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Output format: table, json or yaml (the pipeline's status).
    #[arg(short = 'o', long = "output", default_value_t)]
    pub output: Output,
}

/// A pipeline command's arguments.
#[derive(Debug, clap::Args)]
pub struct CommandArgs {
    /// The pipeline: NAME or NAMESPACE/NAME.
    pub name: String,
    /// Its namespace; `default` when not given.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Act only if the pipeline is at this stage, so that a repeated command is harmless.
    #[arg(long, value_name = "STAGE")]
    pub stage: Option<String>,
    /// Why, for the audit log.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Output format: the message (table), or the status after the command (JSON, YAML).
    #[arg(short = 'o', long = "output", default_value_t)]
    pub output: Output,
}

/// Runs `cafectl pipeline ...`.
pub async fn pipeline(hub: &HubArgs, args: &PipelineArgs) -> Result<String, CliError> {
    let (word, command) = match &args.command {
        PipelineSubcommand::Status(status_args) => return status(hub, status_args).await,
        PipelineSubcommand::Approve(a) => ("approve", a),
        PipelineSubcommand::Pause(a) => ("pause", a),
        PipelineSubcommand::Resume(a) => ("resume", a),
        PipelineSubcommand::Abort(a) => ("abort", a),
        PipelineSubcommand::Rollback(a) => ("rollback", a),
    };
    let verb = verb_from_word(word).unwrap_or(pb::PipelineVerb::Unspecified);
    let reference = pipeline_ref(&command.name, command.namespace.as_deref())?;
    let mut client = hub.connect().await?;
    let result = send(
        &mut client,
        reference.clone(),
        verb,
        command.stage.clone(),
        command.reason.clone(),
    )
    .await
    .map_err(|status| client.error(status))?;
    if command.output == Output::Table {
        return Ok(format!("{}\n", result.message));
    }
    let view = fetch(&mut client, &reference).await?;
    render(&view, &command.output, String::new)
}

/// The command a word names, as in `cafectl pipeline WORD` (and the console's paths).
pub(super) fn verb_from_word(word: &str) -> Option<pb::PipelineVerb> {
    crate::pipeline::PipelineCommand::from_word(word).map(crate::hub::convert::pipeline_verb)
}

/// Sends one pipeline command.
pub(super) async fn send(
    client: &mut HubClient,
    reference: pb::DeploymentRef,
    verb: pb::PipelineVerb,
    expected_stage: Option<String>,
    reason: String,
) -> Result<pb::CommandResult, tonic::Status> {
    client
        .client
        .pipeline_command(unary(pb::PipelineCommandRequest {
            r#ref: Some(reference),
            verb: verb as i32,
            expected_stage,
            reason,
        }))
        .await
        .map(tonic::Response::into_inner)
}

fn pipeline_ref(name: &str, namespace: Option<&str>) -> Result<pb::DeploymentRef, CliError> {
    deployment_ref(name, namespace).map_err(|e| match e {
        CliError::BadInput(m) => CliError::BadInput(m.replacen("deployment", "pipeline", 1)),
        other => other,
    })
}

async fn fetch(
    client: &mut HubClient,
    reference: &pb::DeploymentRef,
) -> Result<PipelineStatusView, CliError> {
    let document = client
        .client
        .get(unary(pb::GetRequest {
            kind: pb::ResourceKind::ReleasePipeline as i32,
            namespace: reference.namespace.clone(),
            name: reference.name.clone(),
        }))
        .await
        .map_err(|status| match status.code() {
            tonic::Code::NotFound => CliError::Failed(format!(
                "ReleasePipeline {}/{} not found",
                reference.namespace, reference.name
            )),
            _ => client.error(status),
        })?
        .into_inner();
    let value: serde_json::Value = serde_json::from_str(&document.json)
        .map_err(|e| CliError::Failed(format!("the hub sent a document that is not JSON: {e}")))?;
    let status = value.get("status").cloned().unwrap_or_default();
    serde_json::from_value(status).map_err(|e| {
        CliError::Failed(format!(
            "the hub sent a pipeline status cafectl cannot read: {e}"
        ))
    })
}

async fn status(hub: &HubArgs, args: &StatusArgs) -> Result<String, CliError> {
    let reference = pipeline_ref(&args.name, args.namespace.as_deref())?;
    let mut client = hub.connect().await?;
    let view = fetch(&mut client, &reference).await?;
    let shown = format!("{}/{}", reference.namespace, reference.name);
    render(&view, &args.output, || status_table(&shown, &view))
}

/// The status as text: a summary, then one row per stage release.
pub fn status_table(name: &str, view: &PipelineStatusView) -> String {
    let mut out = String::new();
    match view.stage_index {
        Some(i) => {
            let _ = writeln!(
                out,
                "Pipeline {name}: {} at stage {} ({}/{})",
                view.phase,
                view.stage,
                i + 1,
                view.stages
            );
            let _ = writeln!(out, "Gate: {} ({})", view.gate, view.gate_state);
        }
        None => {
            let _ = writeln!(out, "Pipeline {name}: {}", view.phase);
        }
    }
    if !view.waiting_for.is_empty() {
        let _ = writeln!(out, "Waiting for: {}", view.waiting_for);
    }
    if !view.message.is_empty() {
        let _ = writeln!(out, "Message: {}", view.message);
    }
    out.push('\n');
    let mut rows = vec![header(&[
        "STAGE",
        "DEPLOYMENT",
        "REGIONS",
        "STANDING",
        "PHASE",
        "REASON",
        "GROUP",
        "REVISION",
    ])];
    for r in &view.releases {
        // A stable release has no current group (as `get deployments` shows it).
        let group = if r.groups == 0 || r.phase == "Stable" {
            "-".to_owned()
        } else {
            format!("{}/{}", r.group + 1, r.groups)
        };
        rows.push(vec![
            r.stage.clone(),
            r.deployment.clone(),
            or_dash(&r.regions.join(",")),
            format!("{:?}", r.standing),
            or_dash(&r.phase),
            or_dash(&r.reason),
            group,
            or_dash(&r.revision),
        ]);
    }
    out.push_str(&table(&rows));
    out
}
