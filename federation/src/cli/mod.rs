//! `cafectl`: the operators' CLI. Offline commands (`validate`, `plan --units`) need no hub; the
//! others call the hub's `Federation` gRPC API ([`client`]).
//!
//! Exit codes: 0 on success (a command that changed nothing included), [`EXIT_BAD_INPUT`] for input
//! the user must fix (files, flags, documents the hub refuses as invalid), [`EXIT_FAILED`] for
//! everything else (the hub unreachable, permission denied, a resource not found).

mod client;
mod failover;
mod files;
mod output;
mod plan;
mod release;
mod resources;

use clap::{Parser, Subcommand, ValueEnum};
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
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    /// A readable table.
    #[default]
    Table,
    /// JSON, as documented in DESIGN.md.
    Json,
    /// YAML.
    Yaml,
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
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
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
