//! `cafectl`: the operators' CLI. Offline commands (`validate`, `plan --units`) need no hub; the
//! others call the hub's `Federation` gRPC API ([`client`]).
//!
//! Exit codes: 0 on success (a command that changed nothing included), [`EXIT_BAD_INPUT`] for input
//! the user must fix (files, flags, documents the hub refuses as invalid), [`EXIT_FAILED`] for
//! everything else (the hub unreachable, permission denied, a resource not found).

mod client;
mod dashboard;
mod failover;
mod files;
mod output;
mod pipeline;
mod plan;
mod release;
mod resources;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

pub use client::HubArgs;

/// The exit code for input the user must fix (a bad file, a bad flag value).
pub const EXIT_BAD_INPUT: u8 = 2;
/// The exit code for everything else that failed.
pub const EXIT_FAILED: u8 = 1;

/// cafectl: plan, release and fail over applications across clusters with cafe-federation.
#[derive(Debug, Parser)]
#[command(name = "cafectl", version, about)]
pub struct Cli {
    /// Where the hub is and how to reach it.
    #[command(flatten)]
    pub hub: HubArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// cafectl's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check resource files without storing anything.
    Validate(ValidateArgs),
    /// Show how a deployment's replicas are shared over its units and released in groups: offline
    /// with --units, else against the hub's units.
    Plan(PlanArgs),
    /// Create or update LogicalUnits and CafeDeployments from files.
    Apply(resources::ApplyArgs),
    /// Remove a LogicalUnit or a CafeDeployment.
    Delete(resources::DeleteArgs),
    /// List or show units, clusters or deployments.
    Get(resources::GetArgs),
    /// A deployment's release status, per unit; --watch follows it.
    Status(release::StatusArgs),
    /// Stop a release after its current group.
    Pause(release::CommandArgs),
    /// Start the next group of a paused release.
    Continue(release::CommandArgs),
    /// Continue a release; with --full, run every remaining group without pausing.
    Promote(release::PromoteArgs),
    /// Try the current group of a failed release again.
    Retry(release::CommandArgs),
    /// Return every unit to the previous stable revision (or --to-revision).
    Rollback(release::RollbackArgs),
    /// The revisions the hub keeps for a deployment, newest first.
    History(release::HistoryArgs),
    /// The audit log of mutating commands, newest first.
    Audit(release::AuditArgs),
    /// Evacuate a unit or region, fail back, or see the failover state.
    Failover(failover::FailoverArgs),
    /// Release several deployments stage by stage: status, approve, pause, resume, abort,
    /// rollback.
    Pipeline(pipeline::PipelineArgs),
    /// Serve a web console on this machine, acting with this configuration's credentials.
    Dashboard(dashboard::DashboardArgs),
    /// Change a field of a stored deployment: `set image NAME CONTAINER=IMAGE...`.
    Set(resources::SetArgs),
    /// Print a shell completion script: `source <(cafectl completion bash)`.
    Completion(CompletionArgs),
    /// Print cafectl's version and, when a hub is configured, the hub's.
    Version,
}

/// `cafectl completion`.
#[derive(Debug, clap::Args)]
pub struct CompletionArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}

/// How results are printed: `-o table|wide|name|json|yaml|jsonpath=TEMPLATE`, as kubectl spells
/// them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Output {
    /// A readable table.
    #[default]
    Table,
    /// The table with more columns, where a listing has them (the table elsewhere).
    Wide,
    /// `kind/name`, one a line.
    Name,
    /// JSON, as documented in DESIGN.md.
    Json,
    /// YAML.
    Yaml,
    /// A kubectl-style JSONPath template applied to the JSON output.
    JsonPath(output::JsonPathTemplate),
}

impl std::str::FromStr for Output {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Ok(match text {
            "table" => Self::Table,
            "wide" => Self::Wide,
            "name" => Self::Name,
            "json" => Self::Json,
            "yaml" => Self::Yaml,
            _ => match text.split_once('=') {
                Some(("jsonpath", template)) => {
                    Self::JsonPath(output::JsonPathTemplate::parse(template)?)
                }
                _ => {
                    return Err(format!(
                        "{text:?} is not one of table, wide, name, json, yaml, jsonpath=TEMPLATE"
                    ));
                }
            },
        })
    }
}

impl std::fmt::Display for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Table => f.write_str("table"),
            Self::Wide => f.write_str("wide"),
            Self::Name => f.write_str("name"),
            Self::Json => f.write_str("json"),
            Self::Yaml => f.write_str("yaml"),
            Self::JsonPath(template) => write!(f, "jsonpath={}", template.source()),
        }
    }
}

/// `cafectl validate`.
#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Resource files (multi-document YAML or JSON); `-` reads standard input.
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Units to check the deployments' unit references against.
    #[arg(long)]
    pub units: Vec<PathBuf>,
}

/// `cafectl plan`.
#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["files", "name"])))]
pub struct PlanArgs {
    /// A stored deployment to plan (`NAME` or `NAMESPACE/NAME`), instead of files.
    #[arg(conflicts_with_all = ["files", "units"])]
    pub name: Option<String>,
    /// The deployment's namespace (with NAME); `default` when not given.
    #[arg(short = 'n', long, requires = "name")]
    pub namespace: Option<String>,
    /// Files holding the CafeDeployment (and optionally its units).
    #[arg(short = 'f', long = "filename")]
    pub files: Vec<PathBuf>,
    /// Files holding the LogicalUnits to plan against, offline; without them (and without units in
    /// the -f files) the hub plans against its units.
    #[arg(long)]
    pub units: Vec<PathBuf>,
    /// Current pods per unit, for the remainder rule: `unit=N,unit=N`.
    #[arg(long, default_value = "")]
    pub current: String,
    /// Output format.
    #[arg(short = 'o', long = "output", default_value_t)]
    pub output: Output,
}

/// A command's failure, and how the process should exit.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The input must be fixed; exit code 2. The message is printed as is (it carries its own
    /// `error:` prefixes, one line per problem).
    #[error("{0}")]
    BadInput(String),
    /// Something else failed; exit code 1. Printed after `error: `.
    #[error("{0}")]
    Failed(String),
}

/// The completion script of `shell`.
fn completion(shell: clap_complete::Shell) -> String {
    let mut script = Vec::new();
    clap_complete::generate(
        shell,
        &mut <Cli as clap::CommandFactory>::command(),
        "cafectl",
        &mut script,
    );
    String::from_utf8_lossy(&script).into_owned()
}

/// `cafectl version`: the client's version, then the hub's when one is configured. A hub that
/// cannot be reached fails the command after the client's line.
async fn version(hub: &HubArgs) -> Result<String, CliError> {
    let client = format!("Client Version: {}\n", env!("CARGO_PKG_VERSION"));
    if !hub.configured() {
        return Ok(client);
    }
    print!("{client}");
    let connected = hub.connect().await?;
    let info = cafe_proto::v1::replica_client::ReplicaClient::new(connected.channel.clone())
        .get_replica(client::unary(cafe_proto::v1::GetReplicaRequest {}))
        .await
        .map_err(|status| connected.error(status))?
        .into_inner();
    let version = if info.version.is_empty() {
        "unknown (a hub older than 0.1)".to_owned()
    } else {
        info.version
    };
    Ok(format!("Hub Version: {version} ({})\n", connected.url))
}

/// Runs cafectl with parsed arguments, printing results to stdout and errors to stderr.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Validate(args) => files::validate(&args),
        Command::Plan(args) => plan::plan(&cli.hub, &args).await,
        Command::Apply(args) => resources::apply(&cli.hub, &args).await,
        Command::Delete(args) => resources::delete(&cli.hub, &args).await,
        Command::Get(args) => resources::get(&cli.hub, &args).await,
        Command::Status(args) => release::status(&cli.hub, &args).await,
        Command::Pause(args) => release::command(&cli.hub, release::Verb::Pause, &args).await,
        Command::Continue(args) => release::command(&cli.hub, release::Verb::Continue, &args).await,
        Command::Retry(args) => release::command(&cli.hub, release::Verb::Retry, &args).await,
        Command::Rollback(args) => release::rollback(&cli.hub, &args).await,
        Command::History(args) => release::history(&cli.hub, &args).await,
        Command::Audit(args) => release::audit(&cli.hub, &args).await,
        Command::Failover(args) => failover::failover(&cli.hub, &args).await,
        Command::Pipeline(args) => pipeline::pipeline(&cli.hub, &args).await,
        Command::Promote(args) => release::promote(&cli.hub, &args).await,
        Command::Set(args) => resources::set(&cli.hub, &args).await,
        Command::Dashboard(args) => dashboard::dashboard(&cli.hub, &args).await,
        Command::Completion(args) => Ok(completion(args.shell)),
        Command::Version => version(&cli.hub).await,
    };
    match result {
        Ok(output) => {
            print!("{output}");
            ExitCode::SUCCESS
        }
        Err(CliError::BadInput(message)) => {
            eprintln!("{}", message.trim_end());
            ExitCode::from(EXIT_BAD_INPUT)
        }
        Err(CliError::Failed(message)) => {
            eprintln!("error: {}", message.trim_end());
            ExitCode::from(EXIT_FAILED)
        }
    }
}
