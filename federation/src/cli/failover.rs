//! `cafectl failover evacuate|failback|status`: the emergency levers (admin), and their state.

use super::client::{HubArgs, unary};
use super::output::{header, or_dash, render, table};
use super::{CliError, Output};
use cafe_proto::v1 as pb;
use clap::{Args, Subcommand};
use serde::Serialize;

/// `cafectl failover`.
#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// What to do.
    #[command(subcommand)]
    pub command: FailoverCommand,
}

/// The failover commands.
#[derive(Debug, Subcommand)]
pub enum FailoverCommand {
    /// Move every deployment's replicas away from a unit or a whole region: survivors scale out
    /// first, the evacuated units scale in once the new pods are ready (at once with --force).
    Evacuate(EvacuateArgs),
    /// Return an evacuated unit to service: it scales out first, then the others scale in.
    Failback(FailbackArgs),
    /// Which units are evacuated, why, since when, and whether their capacity is restored.
    Status(FailoverStatusArgs),
}

/// `cafectl failover evacuate`.
#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["unit", "region"])))]
pub struct EvacuateArgs {
    /// The unit to evacuate.
    #[arg(long)]
    pub unit: Option<String>,
    /// Evacuate every unit of this region.
    #[arg(long)]
    pub region: Option<String>,
    /// The unit's cluster is gone: do not wait for it (its pods are drained if it comes back).
    #[arg(long)]
    pub force: bool,
    /// Why, for the unit's status and the audit log.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `cafectl failover failback`.
#[derive(Debug, Args)]
pub struct FailbackArgs {
    /// The unit to return to service.
    #[arg(long)]
    pub unit: String,
    /// Why, for the unit's status and the audit log.
    #[arg(long, default_value = "")]
    pub reason: String,
}

/// `cafectl failover status`.
#[derive(Debug, Args)]
pub struct FailoverStatusArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", default_value_t)]
    pub output: Output,
}

/// One unit's failover state, as printed.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UnitItem {
    unit: String,
    region: String,
    cluster: String,
    phase: String,
    reason: String,
    since: String,
    capacity_restored: bool,
}

/// The failover state, as printed (and as the console shows it).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct StatusDocument {
    auto_failover: bool,
    /// Per unit.
    items: Vec<UnitItem>,
}

impl From<&pb::FailoverStatusResponse> for StatusDocument {
    fn from(response: &pb::FailoverStatusResponse) -> Self {
        Self {
            auto_failover: response.auto_failover,
            items: response
                .units
                .iter()
                .map(|u| UnitItem {
                    unit: u.unit.clone(),
                    region: u.region.clone(),
                    cluster: u.cluster.clone(),
                    phase: u.phase.clone(),
                    reason: u.reason.clone(),
                    since: u.since.clone(),
                    capacity_restored: u.capacity_restored,
                })
                .collect(),
        }
    }
}

/// Runs a failover command.
pub async fn failover(hub: &HubArgs, args: &FailoverArgs) -> Result<String, CliError> {
    let mut client = hub.connect().await?;
    let result = match &args.command {
        FailoverCommand::Evacuate(evacuate) => {
            let target = match (&evacuate.unit, &evacuate.region) {
                (Some(unit), _) => pb::evacuate_request::Target::Unit(unit.clone()),
                (None, Some(region)) => pb::evacuate_request::Target::Region(region.clone()),
                (None, None) => {
                    return Err(CliError::BadInput(
                        "error: give --unit or --region".to_owned(),
                    ));
                }
            };
            let request = pb::EvacuateRequest {
                target: Some(target),
                force: evacuate.force,
                reason: evacuate.reason.clone(),
            };
            client.client.evacuate(unary(request)).await
        }
        FailoverCommand::Failback(failback) => {
            let request = pb::FailbackRequest {
                unit: failback.unit.clone(),
                reason: failback.reason.clone(),
            };
            client.client.failback(unary(request)).await
        }
        FailoverCommand::Status(status) => {
            let response = client
                .client
                .failover_status(unary(pb::FailoverStatusRequest {}))
                .await
                .map_err(|s| client.error(s))?
                .into_inner();
            return print_status(&response, &status.output);
        }
    };
    let result = result.map_err(|s| client.error(s))?.into_inner();
    let verdict = if result.changed { "done" } else { "unchanged" };
    Ok(format!("failover {verdict}: {}\n", result.message))
}

fn print_status(
    response: &pb::FailoverStatusResponse,
    output: &Output,
) -> Result<String, CliError> {
    let document = StatusDocument::from(response);
    let items = &document.items;
    let as_table = || {
        let mut rows = vec![header(&[
            "UNIT", "REGION", "CLUSTER", "PHASE", "CAPACITY", "SINCE", "REASON",
        ])];
        rows.extend(items.iter().map(|u| {
            vec![
                u.unit.clone(),
                u.region.clone(),
                u.cluster.clone(),
                u.phase.clone(),
                if u.capacity_restored {
                    "restored".to_owned()
                } else {
                    "restoring".to_owned()
                },
                or_dash(&u.since),
                or_dash(&u.reason),
            ]
        }));
        let auto = if response.auto_failover { "on" } else { "off" };
        format!("automatic failover: {auto}\n{}", table(&rows))
    };
    render(&document, output, as_table)
}
