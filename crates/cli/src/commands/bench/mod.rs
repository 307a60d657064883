//! `xcomponent-ai bench`: measurements of this build on this machine, printed as a table.

mod memory;

use clap::{Args, Subcommand};
use std::process::ExitCode;

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The in-memory runtime: transitions/s (one core, all cores), bare engine steps/s,
    /// instance creation rate, bytes per idle instance, and a matched broadcast among 1M instances.
    Memory(MemoryArgs),
}

/// Options of `bench memory`.
#[derive(Debug, Args)]
pub struct MemoryArgs {
    /// Live instances receiving events.
    #[arg(long, default_value_t = 100_000)]
    pub instances: usize,
    /// Events sent in each throughput run.
    #[arg(long, default_value_t = 5_000_000)]
    pub events: usize,
    /// Instances created for the memory and broadcast measurements.
    #[arg(long, default_value_t = 1_000_000)]
    pub population: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Runs a bench subcommand.
pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Memory(args) => memory::run(&args),
    }
}
