//! One module per subcommand; `run` dispatches. Data goes to stdout, diagnostics to stderr.

use clap::Subcommand;
use std::process::ExitCode;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {}

/// Runs one subcommand and returns the process exit code.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {}
}
