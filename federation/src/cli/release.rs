//! `cafectl status`, the release commands (`pause`, `continue`, `retry`, `rollback`), `history`
//! and `audit`.

use super::client::{HubArgs, HubClient, deployment_ref, unary};
use super::output::{Items, header, json_line, or_dash, render, table};
use super::{CliError, Output};
use crate::hub::convert::status_from_proto;
use crate::release::DeploymentStatusView;
use cafe_proto::v1 as pb;
use serde::Serialize;
use std::io::{IsTerminal as _, Write as _};

/// Clears a terminal and moves the cursor home, so that `status --watch` redraws in place.
const CLEAR_SCREEN: &str = "\x1b[2J\x1b[H";

/// `cafectl status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The deployment: NAME or NAMESPACE/NAME.
    pub name: String,
    /// Its namespace; `default` when not given.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Output format; JSON is DESIGN section 5's status document.
    #[arg(short = 'o', long = "output", default_value_t)]
    pub output: Output,
    /// Follow the status: print it again on every change (JSON: one document per line) until
    /// interrupted or the hub ends the stream.
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Wait until the release ends, at most this long (`90s`, `10m`, `1h`), printing each change as
    /// --watch does. Exit 0 when it ends Stable, 1 when it ends Failed or RolledBack or does not
    /// end in time. A release paused for a human keeps it waiting.
    #[arg(long, value_name = "DURATION", value_parser = parse_timeout, conflicts_with = "watch")]
    pub timeout: Option<std::time::Duration>,
}

fn parse_timeout(text: &str) -> Result<std::time::Duration, String> {
    let ms = crate::resources::parse_duration_ms(text)?;
    u64::try_from(ms)
        .ok()
        .filter(|&ms| ms > 0)
        .map(std::time::Duration::from_millis)
        .ok_or_else(|| format!("{text:?}: the timeout must be longer than 0"))
}

/// `cafectl promote`.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// The release command's arguments.
    #[command(flatten)]
    pub command: CommandArgs,
    /// Run every remaining group without pausing between them (the analysis still gates each
    /// one); without it, `promote` is `continue`.
    #[arg(long)]
    pub full: bool,
}

/// `cafectl pause|continue|retry`.
#[derive(Debug, clap::Args)]
pub struct CommandArgs {
    /// The deployment: NAME or NAMESPACE/NAME.
    pub name: String,
    /// Its namespace; `default` when not given.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Act only if the release is at this group (0-based), so that a repeated command is harmless.
    #[arg(long, value_name = "N")]
    pub batch: Option<i32>,
    /// Why, for the audit log.
    #[arg(long, default_value = "")]
    pub reason: String,
    /// Output format: the message (table), or the status after the command (JSON, YAML).
    #[arg(short = 'o', long = "output", default_value_t)]
    pub output: Output,
}

/// `cafectl rollback`.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// The release command's arguments.
    #[command(flatten)]
    pub command: CommandArgs,
    /// The revision number to return to (see `history`); the previous stable one by default.
    #[arg(long, value_name = "N")]
    pub to_revision: Option<i64>,
}

/// `cafectl history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// The deployment: NAME or NAMESPACE/NAME.
    pub name: String,
    /// Its namespace; `default` when not given.
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    /// Output format.
    #[arg(short = 'o', long = "output", default_value_t)]
    pub output: Output,
}

/// `cafectl audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// At most this many entries, newest first (the hub's default, 100, when not given).
    #[arg(long, value_name = "N")]
    pub limit: Option<u32>,
    /// Output format.
    #[arg(short = 'o', long = "output", default_value_t)]
    pub output: Output,
}

/// A release command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// Stop after the current group.
    Pause,
    /// Start the next group.
    Continue,
    /// Try the failed group again.
    Retry,
    /// Return to a stable revision.
    Rollback,
    /// Run the remaining groups without pausing.
    PromoteFull,
}

impl Verb {
    /// The verb of the console's path (`/api/deployments/NS/NAME/VERB`): cafectl's command names,
    /// `promote` being `promote --full`.
    pub(super) fn from_path(verb: &str) -> Option<Self> {
        Some(match verb {
            "pause" => Self::Pause,
            "continue" => Self::Continue,
            "retry" => Self::Retry,
            "rollback" => Self::Rollback,
            "promote" => Self::PromoteFull,
            _ => return None,
        })
    }

    /// The release command as sent: `full` for `promote --full`.
    pub(super) fn request(
        self,
        reference: pb::DeploymentRef,
        expected_batch: Option<i32>,
        to_revision: Option<i64>,
        reason: String,
    ) -> tonic::Request<pb::ReleaseCommand> {
        unary(pb::ReleaseCommand {
            r#ref: Some(reference),
            expected_batch,
            to_revision,
            reason,
            full: self == Self::PromoteFull,
        })
    }

    /// Sends the command to the hub.
    pub(super) async fn send(
        self,
        client: &mut HubClient,
        request: tonic::Request<pb::ReleaseCommand>,
    ) -> Result<pb::CommandResult, tonic::Status> {
        let api = &mut client.client;
        let sent = match self {
            Self::Pause => api.pause(request).await,
            Self::Continue | Self::PromoteFull => api.r#continue(request).await,
            Self::Retry => api.retry(request).await,
            Self::Rollback => api.rollback(request).await,
        };
        sent.map(tonic::Response::into_inner)
    }

    /// What a command that changed something did, for its message.
    fn done(self) -> &'static str {
        match self {
            Self::Pause => "paused",
            Self::Continue => "continued",
            Self::Retry => "retried",
            Self::Rollback => "rolling back",
            Self::PromoteFull => "promoted",
        }
    }
}

/// `cafectl status [--watch | --timeout D]`.
pub async fn status(hub: &HubArgs, args: &StatusArgs) -> Result<String, CliError> {
    let reference = deployment_ref(&args.name, args.namespace.as_deref())?;
    let mut client = hub.connect().await?;
    if args.watch || args.timeout.is_some() {
        return watch(&mut client, reference, &args.output, args.timeout).await;
    }
    let status = client
        .client
        .get_status(unary(reference))
        .await
        .map_err(|status| client.error(status))?
        .into_inner();
    let view = status_from_proto(&status);
    render(&view, &args.output, || status_table(&view))
}

/// How a release ended, for `status --timeout`: `None` while it is under way (or paused).
fn ended(view: &DeploymentStatusView) -> Option<Result<String, CliError>> {
    let name = format!("{}/{}", view.namespace, view.name);
    match (view.phase.as_str(), view.reason.as_str()) {
        ("Stable", "RolledBack") => Some(Err(CliError::Failed(format!(
            "{name} was rolled back to revision {}: {}",
            view.current_revision, view.message
        )))),
        ("Stable", _) => Some(Ok(String::new())),
        ("Failed", reason) => Some(Err(CliError::Failed(format!(
            "{name} failed ({reason}) in group {}: {}",
            view.batch, view.message
        )))),
        _ => None,
    }
}

/// Prints every status the hub streams until the stream ends or the user interrupts; with
/// `until`, only until the release ends or that time has passed.
async fn watch(
    client: &mut HubClient,
    reference: pb::DeploymentRef,
    output: &Output,
    until: Option<std::time::Duration>,
) -> Result<String, CliError> {
    let deadline = until.map(|d| tokio::time::Instant::now() + d);
    let mut stream = client
        .client
        .watch_status(reference.clone())
        .await
        .map_err(|status| client.error(status))?
        .into_inner();
    let redraw = *output == Output::Table && std::io::stdout().is_terminal();
    let mut first = true;
    let mut last: Option<DeploymentStatusView> = None;
    loop {
        let timed_out = async {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let next = tokio::select! {
            next = stream.message() => next,
            _ = tokio::signal::ctrl_c() => return Ok(String::new()),
            () = timed_out => {
                let state = last.as_ref().map_or_else(String::new, |v| {
                    let reason = if v.reason.is_empty() { String::new() } else { format!(" ({})", v.reason) };
                    format!(": it is {}{reason} in group {}", v.phase, v.batch)
                });
                return Err(CliError::Failed(format!(
                    "{}/{} did not end within {}{state}",
                    reference.namespace,
                    reference.name,
                    until.map_or_else(String::new, |d| format!("{d:?}"))
                )));
            }
        };
        let Some(status) = next.map_err(|status| client.error(status))? else {
            return match until {
                Some(_) => Err(CliError::Failed(
                    "the hub ended the status stream before the release ended".to_owned(),
                )),
                None => Ok(String::new()),
            };
        };
        let view = status_from_proto(&status);
        let text = match output {
            Output::Json => json_line(&view)?,
            Output::Yaml => format!("---\n{}", render(&view, output, String::new)?),
            Output::Table if redraw => format!("{CLEAR_SCREEN}{}", status_table(&view)),
            Output::Table | Output::Wide if first => status_table(&view),
            Output::Table | Output::Wide => format!("\n{}", status_table(&view)),
            other => render(&view, other, String::new)?,
        };
        first = false;
        let mut stdout = std::io::stdout().lock();
        if stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
            .is_err()
        {
            // The reader went away (`| head`): nothing left to do.
            return Ok(String::new());
        }
        drop(stdout);
        if until.is_some()
            && let Some(end) = ended(&view)
        {
            return end;
        }
        last = Some(view);
    }
}

/// The status as a header line, the message, and one row per unit.
pub fn status_table(view: &DeploymentStatusView) -> String {
    let reason = if view.reason.is_empty() {
        String::new()
    } else {
        format!(" ({})", view.reason)
    };
    let revisions = if view.current_revision == view.update_revision {
        format!("revision {}", or_dash(&view.current_revision))
    } else {
        format!(
            "revision {} -> {}",
            or_dash(&view.current_revision),
            or_dash(&view.update_revision)
        )
    };
    // A group only means something while a release is under way.
    let group = if view.phase == "Stable" {
        String::new()
    } else {
        format!(", group {}/{}", view.batch + 1, view.batches)
    };
    let mut out = format!(
        "{}/{}: {}{reason}{group}, {revisions}\n",
        view.namespace, view.name, view.phase
    );
    if !view.message.is_empty() {
        out.push_str(&format!("  {}\n", view.message));
    }
    let mut rows = vec![header(&[
        "UNIT",
        "CLUSTER",
        "CONNECTED",
        "REPLICAS",
        "READY",
        "UPDATED",
        "UPDATED-READY",
        "TARGET",
    ])];
    rows.extend(view.units.iter().map(|u| {
        vec![
            u.unit.clone(),
            u.cluster.clone(),
            if u.connected { "yes" } else { "no" }.to_owned(),
            if u.evacuated {
                format!("{} (evacuated)", u.replicas)
            } else {
                u.replicas.to_string()
            },
            u.ready.to_string(),
            u.updated.to_string(),
            u.updated_ready.to_string(),
            u.target.to_string(),
        ]
    }));
    out.push_str(&table(&rows));
    // A blue-green release: where each unit's switch stands and how long its old pods stay.
    if view.units.iter().any(|u| u.blue_green.is_some()) {
        let mut rows = vec![header(&[
            "UNIT",
            "BLUE-GREEN",
            "PREVIEW-READY",
            "SERVING",
            "SERVING-UPDATED",
            "OLD-KEPT",
            "OLD-KEPT-UNTIL",
        ])];
        rows.extend(view.units.iter().filter_map(|u| {
            let bg = u.blue_green.as_ref()?;
            Some(vec![
                u.unit.clone(),
                bg.state.clone(),
                bg.preview_ready.to_string(),
                bg.serving.to_string(),
                bg.updated_serving.to_string(),
                bg.standby.to_string(),
                bg.standby_until.clone(),
            ])
        }));
        out.push_str(&table(&rows));
    }
    for unit in &view.units {
        for problem in &unit.problems {
            out.push_str(&format!("{}: {problem}\n", unit.unit));
        }
    }
    if let Some(analysis) = &view.analysis {
        out.push_str(&analysis_text(analysis));
    }
    out
}

/// The analysis part of `cafectl status`: how it stands, then every measurement.
fn analysis_text(analysis: &crate::release::AnalysisStatusView) -> String {
    // Groups are shown 1-based, as in the status line.
    let mut out = format!(
        "analysis of group {}: {}",
        analysis.group + 1,
        analysis.phase
    );
    if !analysis.message.is_empty() {
        out.push_str(&format!(" ({})", analysis.message));
    }
    out.push('\n');
    if analysis.measurements.is_empty() {
        return out;
    }
    let mut rows = vec![header(&[
        "METRIC", "UNIT", "VALUE", "RESULT", "TIME", "MESSAGE",
    ])];
    rows.extend(analysis.measurements.iter().map(|m| {
        vec![
            m.metric.clone(),
            m.unit.clone().unwrap_or_else(|| "-".to_owned()),
            m.value.map_or_else(|| "-".to_owned(), |v| v.to_string()),
            m.result.clone(),
            m.time.clone(),
            m.message.clone(),
        ]
    }));
    out.push_str(&table(&rows));
    out
}

/// `cafectl pause|continue|retry`.
pub async fn command(hub: &HubArgs, verb: Verb, args: &CommandArgs) -> Result<String, CliError> {
    send(hub, verb, args, None).await
}

/// `cafectl promote [--full]`.
pub async fn promote(hub: &HubArgs, args: &PromoteArgs) -> Result<String, CliError> {
    let verb = if args.full {
        Verb::PromoteFull
    } else {
        Verb::Continue
    };
    send(hub, verb, &args.command, None).await
}

/// `cafectl rollback`.
pub async fn rollback(hub: &HubArgs, args: &RollbackArgs) -> Result<String, CliError> {
    send(hub, Verb::Rollback, &args.command, args.to_revision).await
}

async fn send(
    hub: &HubArgs,
    verb: Verb,
    args: &CommandArgs,
    to_revision: Option<i64>,
) -> Result<String, CliError> {
    let reference = deployment_ref(&args.name, args.namespace.as_deref())?;
    let shown = format!("{}/{}", reference.namespace, reference.name);
    let request = verb.request(reference, args.batch, to_revision, args.reason.clone());
    let mut client = hub.connect().await?;
    let result = verb
        .send(&mut client, request)
        .await
        .map_err(|status| client.error(status))?;
    let message = if result.changed {
        format!("cafedeployment/{shown} {}: {}", verb.done(), result.message)
    } else {
        format!("cafedeployment/{shown} unchanged: {}", result.message)
    };
    match (&args.output, &result.status) {
        (Output::Table | Output::Wide, _) | (_, None) => Ok(message + "\n"),
        (output, Some(status)) => {
            // The status goes to stdout for scripts; the account of what happened to stderr.
            eprintln!("{message}");
            render(&status_from_proto(status), output, String::new)
        }
    }
}

/// A kept revision as `history -o json` prints it (and the console shows it).
#[derive(Debug, Serialize)]
pub(super) struct RevisionItem {
    number: i64,
    name: String,
    created: String,
    current: bool,
    template: serde_json::Value,
}

impl From<pb::Revision> for RevisionItem {
    fn from(r: pb::Revision) -> Self {
        Self {
            template: serde_json::from_str(&r.template_json).unwrap_or(serde_json::Value::Null),
            number: r.number,
            name: r.name,
            created: r.created,
            current: r.current,
        }
    }
}

/// `cafectl history`.
pub async fn history(hub: &HubArgs, args: &HistoryArgs) -> Result<String, CliError> {
    let reference = deployment_ref(&args.name, args.namespace.as_deref())?;
    let mut client = hub.connect().await?;
    let revisions = client
        .client
        .history(unary(reference))
        .await
        .map_err(|status| client.error(status))?
        .into_inner()
        .revisions;
    let items: Vec<RevisionItem> = revisions.into_iter().map(RevisionItem::from).collect();
    let as_table = || {
        let mut rows = vec![header(&["REVISION", "NAME", "CREATED", "CURRENT"])];
        rows.extend(items.iter().map(|r| {
            vec![
                r.number.to_string(),
                r.name.clone(),
                r.created.clone(),
                if r.current { "*" } else { "" }.to_owned(),
            ]
        }));
        table(&rows)
    };
    render(&Items { items: &items }, &args.output, as_table)
}

/// An audit entry as `audit -o json` prints it (and the console shows it).
#[derive(Debug, Serialize)]
pub(super) struct AuditItem {
    time: String,
    who: String,
    what: String,
    result: String,
}

impl From<pb::AuditEntry> for AuditItem {
    fn from(e: pb::AuditEntry) -> Self {
        Self {
            time: e.time,
            who: e.who,
            what: e.what,
            result: e.result,
        }
    }
}

/// `cafectl audit`.
pub async fn audit(hub: &HubArgs, args: &AuditArgs) -> Result<String, CliError> {
    let mut client = hub.connect().await?;
    let entries = client
        .client
        .audit(unary(pb::AuditRequest {
            limit: args.limit.unwrap_or(0),
        }))
        .await
        .map_err(|status| client.error(status))?
        .into_inner()
        .entries;
    let items: Vec<AuditItem> = entries.into_iter().map(AuditItem::from).collect();
    let as_table = || {
        let mut rows = vec![header(&["TIME", "WHO", "WHAT", "RESULT"])];
        rows.extend(items.iter().map(|e| {
            vec![
                e.time.clone(),
                e.who.clone(),
                e.what.clone(),
                e.result.clone(),
            ]
        }));
        table(&rows)
    };
    render(&Items { items: &items }, &args.output, as_table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::UnitStatusView;

    #[test]
    fn the_status_table_has_a_header_line_and_a_row_per_unit() {
        let view = DeploymentStatusView {
            name: "payments".into(),
            namespace: "finance".into(),
            phase: "Paused".into(),
            reason: "AwaitingConfirm".into(),
            batch: 0,
            batches: 3,
            current_revision: "6f1c9a".into(),
            update_revision: "a83b07".into(),
            message: "group 0 done".into(),
            units: vec![UnitStatusView {
                unit: "sh-az1".into(),
                cluster: "sh-dc1".into(),
                connected: true,
                replicas: 5,
                ready: 5,
                updated: 1,
                updated_ready: 1,
                target: 1,
                evacuated: false,
                problems: vec!["pod x: ImagePullBackOff".into()],
                blue_green: None,
            }],
            analysis: Some(crate::release::AnalysisStatusView {
                group: 0,
                phase: "Failed".into(),
                message: "metric error-ratio in unit sh-az1: value 0.08".into(),
                measurements: vec![crate::release::MeasurementView {
                    metric: "error-ratio".into(),
                    unit: Some("sh-az1".into()),
                    value: Some(0.08),
                    result: "Failed".into(),
                    time: "2026-12-02T06:00:00Z".into(),
                    message: String::new(),
                }],
            }),
        };
        let text = status_table(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "finance/payments: Paused (AwaitingConfirm), group 1/3, revision 6f1c9a -> a83b07"
        );
        assert_eq!(lines[1], "  group 0 done");
        assert!(
            lines[2].starts_with("UNIT    CLUSTER  CONNECTED  REPLICAS"),
            "{text}"
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["sh-az1", "sh-dc1", "yes", "5", "5", "1", "1", "1"]
        );
        assert_eq!(lines[4], "sh-az1: pod x: ImagePullBackOff");
        assert_eq!(
            lines[5],
            "analysis of group 1: Failed (metric error-ratio in unit sh-az1: value 0.08)"
        );
        assert!(lines[6].starts_with("METRIC"), "{text}");
        assert_eq!(
            lines[7].split_whitespace().collect::<Vec<_>>(),
            [
                "error-ratio",
                "sh-az1",
                "0.08",
                "Failed",
                "2026-12-02T06:00:00Z"
            ]
        );
    }
}
