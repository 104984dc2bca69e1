//! `cafectl plan`, offline against unit files.

use super::files::load;
use super::{CliError, Output, PlanArgs};
use crate::plan::{Plan, parse_current, plan_deployment, render_table};
use std::fmt::Write as _;

/// Plans every deployment in the files against the given units.
pub fn plan(args: &PlanArgs) -> Result<String, CliError> {
    let current = parse_current(&args.current)
        .map_err(|e| CliError::BadInput(format!("error: --current: {e}")))?;
    let mut all = args.files.clone();
    all.extend(args.units.iter().cloned());
    let loaded = load(&all)?;
    if loaded.deployments.is_empty() {
        return Err(CliError::BadInput(
            "error: no CafeDeployment in the files given with -f".to_owned(),
        ));
    }
    if loaded.units.is_empty() {
        return Err(CliError::BadInput(
            "error: no LogicalUnit given: pass the units with --units FILE".to_owned(),
        ));
    }
    let mut plans = Vec::new();
    let mut report = String::new();
    for (path, deployment) in &loaded.deployments {
        match plan_deployment(deployment, &loaded.units, &current) {
            Ok(plan) => plans.push(plan),
            Err(errors) => {
                for error in errors.0 {
                    let _ = writeln!(
                        report,
                        "error: {}: CafeDeployment {}/{}: {error}",
                        path.display(),
                        deployment.namespace(),
                        deployment.metadata.name
                    );
                }
            }
        }
    }
    if !report.is_empty() {
        return Err(CliError::BadInput(report));
    }
    render(&plans, args.output)
}

fn render(plans: &[Plan], output: Output) -> Result<String, CliError> {
    let failed =
        |e: &dyn std::fmt::Display| CliError::Failed(format!("cannot print the plan: {e}"));
    match (output, plans) {
        (Output::Table, _) => Ok(plans
            .iter()
            .map(render_table)
            .collect::<Vec<_>>()
            .join("\n")),
        (Output::Json, [plan]) => serde_json::to_string_pretty(plan)
            .map(|s| s + "\n")
            .map_err(|e| failed(&e)),
        (Output::Json, _) => serde_json::to_string_pretty(&serde_json::json!({ "items": plans }))
            .map(|s| s + "\n")
            .map_err(|e| failed(&e)),
        (Output::Yaml, [plan]) => serde_yaml::to_string(plan).map_err(|e| failed(&e)),
        (Output::Yaml, _) => {
            serde_yaml::to_string(&serde_json::json!({ "items": plans })).map_err(|e| failed(&e))
        }
    }
}
