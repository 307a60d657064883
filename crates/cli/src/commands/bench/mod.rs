//! `xcomponent-ai bench`: measurements of this build on this machine, printed as a table.

mod memory;
mod store;

use clap::{Args, Subcommand};
use std::process::ExitCode;

/// What to measure.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// The in-memory runtime: transitions/s (batched and per-event, one core and all cores),
    /// bare engine steps/s, instance creation rate, bytes per idle instance and per instance with
    /// a 5-field business context, and a matched broadcast among 1M instances.
    Memory(MemoryArgs),
    /// Durable transitions/s through the runtime on a store, and the time to restore a large
    /// population from it.
    Store(StoreArgs),
}

/// Options of `bench store`.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Store URL: sqlite://PATH, postgres://..., redis://..., memory.
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://./xcomponent-bench/bench.db")]
    pub store: String,
    /// Live instances receiving events.
    #[arg(long, default_value_t = 1_000)]
    pub instances: usize,
    /// Transitions to store.
    #[arg(long, default_value_t = 500_000)]
    pub events: usize,
    /// Instances created, then restored by a fresh runtime (0 skips the restore measurement).
    #[arg(long, default_value_t = 1_000_000)]
    pub restore: usize,
    /// each-commit (fsync per commit), relaxed, or none.
    #[arg(long, default_value = "each-commit")]
    pub durability: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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
    /// Only these rows (used by the footprint rows, each measured in a fresh process).
    #[arg(long, value_enum, hide = true)]
    pub only: Option<memory::Only>,
}

/// Runs a bench subcommand.
pub fn run(command: BenchCommand) -> anyhow::Result<ExitCode> {
    match command {
        BenchCommand::Memory(args) => memory::run(&args),
        BenchCommand::Store(args) => store::run(&args),
    }
}
