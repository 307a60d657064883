//! One module per subcommand; `run` dispatches. Data goes to stdout, diagnostics to stderr.

mod bench;
mod explain;
mod graph;
mod schema;
mod validate;

use clap::Subcommand;
use std::process::ExitCode;

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Measure the runtime on this machine (prints a table).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
    /// Check component files and report every problem with file:line:column and a fix hint.
    Validate(validate::ValidateArgs),
    /// Print the JSON Schema of component files.
    Schema(schema::SchemaArgs),
    /// Print each machine of a component as a Mermaid state diagram.
    Graph(graph::GraphArgs),
    /// Explain a diagnostic code printed by `validate` (or list all codes).
    Explain(explain::ExplainArgs),
}

/// Runs one subcommand and returns the process exit code.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Bench(command) => bench::run(command),
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Explain(args) => explain::run(args),
    }
}
