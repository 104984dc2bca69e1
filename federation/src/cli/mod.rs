//! `cafectl`: the operators' CLI. Offline commands (`validate`, `plan --units`) need no hub.

mod files;
mod plan;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::process::ExitCode;

/// The exit code for input the user must fix (a bad file, a bad flag value).
pub const EXIT_BAD_INPUT: u8 = 2;
/// The exit code for everything else that failed.
pub const EXIT_FAILED: u8 = 1;

/// cafectl: plan, release and fail over applications across clusters with cafe-federation.
#[derive(Debug, Parser)]
#[command(name = "cafectl", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// cafectl's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check resource files without storing anything.
    Validate(ValidateArgs),
    /// Show how a deployment's replicas are shared over its units and released in groups.
    Plan(PlanArgs),
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
pub struct PlanArgs {
    /// Files holding the CafeDeployment (and optionally its units).
    #[arg(short = 'f', long = "filename", required = true)]
    pub files: Vec<PathBuf>,
    /// Files holding the LogicalUnits to plan against.
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
    /// The input must be fixed; exit code 2.
    #[error("{0}")]
    BadInput(String),
    /// Something else failed; exit code 1.
    #[error("{0}")]
    Failed(String),
}

/// Runs cafectl with parsed arguments, printing results to stdout and errors to stderr.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Validate(args) => files::validate(&args),
        Command::Plan(args) => plan::plan(&args),
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
