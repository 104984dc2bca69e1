//! `cafe-agent`'s command line.

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// cafe-agent: the cafe-federation member agent.
#[derive(Debug, Parser)]
#[command(name = "cafe-agent", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The agent's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print the InPlaceSet CustomResourceDefinition as YAML.
    Crd,
}

/// Runs the agent's command line.
pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Crd => match crate::crd::inplaceset_crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: cannot render the CRD: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
