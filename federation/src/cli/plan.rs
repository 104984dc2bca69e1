//! `cafectl plan`: offline against unit files, or by the hub against its units.

use super::client::{HubArgs, HubClient, deployment_ref, unary};
use super::files::{Loaded, load};
use super::{CliError, Output, PlanArgs};
use crate::names::UnitName;
use crate::plan::{Plan, parse_current, plan_deployment, render_table};
use cafe_proto::v1 as pb;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Plans a stored deployment (`plan NAME`) or every deployment in the files: offline when units
/// are given (`--units`, or in the `-f` files), else by the hub against its units.
pub async fn plan(hub: &HubArgs, args: &PlanArgs) -> Result<String, CliError> {
    let current = parse_current(&args.current)
        .map_err(|e| CliError::BadInput(format!("error: --current: {e}")))?;
    if let Some(name) = &args.name {
        let reference = deployment_ref(name, args.namespace.as_deref())?;
        let mut client = hub.connect().await?;
        let request = pb::PlanRequest {
            deployment_json: String::new(),
            r#ref: Some(reference),
            current: wire_current(&current),
        };
        let plan = ask(&mut client, request)
            .await
            .map_err(|status| client.error(status))?;
        return render(&[plan], &args.output);
    }
    let mut all = args.files.clone();
    all.extend(args.units.iter().cloned());
    let loaded = load(&all)?;
    if loaded.deployments.is_empty() {
        return Err(CliError::BadInput(
            "error: no CafeDeployment in the files given with -f".to_owned(),
        ));
    }
    if loaded.units.is_empty() {
        if !args.units.is_empty() {
            return Err(CliError::BadInput(
                "error: --units: no LogicalUnit in the files given".to_owned(),
            ));
        }
        if !hub.configured() {
            return Err(CliError::BadInput(
                "error: no LogicalUnit given and no hub to plan against: pass the units with \
                 --units FILE, or the hub with --config FILE"
                    .to_owned(),
            ));
        }
        return plan_on_hub(hub, &loaded, &current, &args.output).await;
    }
    let plans = loaded
        .each_deployment(|deployment| plan_deployment(deployment, &loaded.units, &current))?;
    render(&plans, &args.output)
}

/// Asks the hub to plan each deployment of the files against its units.
async fn plan_on_hub(
    hub: &HubArgs,
    loaded: &Loaded,
    current: &BTreeMap<UnitName, i32>,
    output: &Output,
) -> Result<String, CliError> {
    let mut client = hub.connect().await?;
    let mut plans = Vec::new();
    let mut report = String::new();
    for (path, deployment) in &loaded.deployments {
        let what = format!(
            "{}: CafeDeployment {}/{}",
            path.display(),
            deployment.namespace(),
            deployment.metadata.name
        );
        let json = serde_json::to_string(deployment)
            .map_err(|e| CliError::Failed(format!("{what}: cannot encode: {e}")))?;
        let request = pb::PlanRequest {
            deployment_json: json,
            r#ref: None,
            current: wire_current(current),
        };
        match ask(&mut client, request).await {
            Ok(plan) => plans.push(plan),
            // The hub names the field, e.g. an unknown unit; say which file's deployment it is.
            Err(status) if status.code() == tonic::Code::InvalidArgument => {
                for line in status.message().lines() {
                    let _ = writeln!(report, "error: {what}: {line}");
                }
            }
            Err(status) => return Err(client.error(status)),
        }
    }
    if !report.is_empty() {
        return Err(CliError::BadInput(report));
    }
    render(&plans, output)
}

/// One `Plan` call, its answer read back as a [`Plan`].
async fn ask(client: &mut HubClient, request: pb::PlanRequest) -> Result<Plan, tonic::Status> {
    let response = client.client.plan(unary(request)).await?.into_inner();
    serde_json::from_str(&response.plan_json).map_err(|e| {
        tonic::Status::internal(format!("the hub sent a plan cafectl cannot read: {e}"))
    })
}

fn wire_current(current: &BTreeMap<UnitName, i32>) -> BTreeMap<String, i32> {
    current
        .iter()
        .map(|(unit, n)| (unit.to_string(), *n))
        .collect()
}

fn render(plans: &[Plan], output: &Output) -> Result<String, CliError> {
    let as_table = || {
        plans
            .iter()
            .map(render_table)
            .collect::<Vec<_>>()
            .join("\n")
    };
    match plans {
        [plan] => super::output::render(plan, output, as_table),
        _ => super::output::render(&super::output::Items { items: plans }, output, as_table),
    }
}
