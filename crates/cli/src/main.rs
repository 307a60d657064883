//! The `xcomponent-ai` binary: parses the command line and dispatches to one module per command.
//! This is the only crate that uses `anyhow` and the only one that names concrete backends.

mod commands;

use clap::Parser;
use std::process::ExitCode;

/// jemalloc instead of the system's allocator. Under load the runtime's threads free what other
/// threads allocated (a request's message, a step's records); glibc then takes the owning
/// arena's lock, and `serve` spent most of its futex calls waiting there. jemalloc's defaults for
/// this binary are set in `.cargo/config.toml` (measurements: `docs/performance.md`).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Business state machines declared in YAML: validate, run, simulate and serve them.
#[derive(Debug, Parser)]
#[command(name = "xcomponent-ai", version, about, long_about = None, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: commands::Command,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match commands::run(cli.command) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
