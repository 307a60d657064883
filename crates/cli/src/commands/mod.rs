//! One module per subcommand; `run` dispatches. Data goes to stdout, diagnostics to stderr.

mod bench;
mod broker;
mod dashboard;
mod explain;
mod graph;
mod init;
mod load;
mod options;
mod run;
mod runtime;
mod schema;
mod serve;
mod simulate;
mod startup;
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
    /// Serve components over HTTP: REST API, WebSocket, OpenAPI, health, metrics and the dashboard.
    /// (Boxed: its many options would make every variant as large.)
    Serve(Box<serve::ServeArgs>),
    /// Host components in a runtime joined to a message bus (no HTTP server): components in
    /// other runtimes are reached over the bus, dashboards see it come and go.
    Runtime(runtime::RuntimeArgs),
    /// The dashboard, REST API and WebSocket over every runtime on a message bus.
    Dashboard(dashboard::DashboardArgs),
    /// Run components offline: create an instance, send scripted events, print the trace, exit.
    Run(run::RunArgs),
    /// Walk one instance through its machine without side effects and print the path.
    Simulate(simulate::SimulateArgs),
    /// Create a project folder with an example component, a README and an events file.
    Init(init::InitArgs),
    /// Load component files and print their machines with state and transition counts.
    Load(load::LoadArgs),
}

/// Runs one subcommand and returns the process exit code.
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Bench(command) => bench::run(command),
        Command::Validate(args) => validate::run(args),
        Command::Schema(args) => schema::run(args),
        Command::Graph(args) => graph::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Serve(args) => serve::run(*args),
        Command::Runtime(args) => runtime::run(args),
        Command::Dashboard(args) => dashboard::run(args),
        Command::Run(args) => run::run(args),
        Command::Simulate(args) => simulate::run(args),
        Command::Init(args) => init::run(args),
        Command::Load(args) => load::run(args),
    }
}
