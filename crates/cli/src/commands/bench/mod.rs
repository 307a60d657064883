//! `xcomponent-ai bench`: measurements of this build on this machine, printed as a table.

mod bus;
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
    /// The cross-component round trip between two runtimes joined by a broker: latency
    /// p50/p99 and flows/s of an order that creates a payment in the other runtime and gets its
    /// reply back, with C flows in flight.
    Bus(BusArgs),
}

/// Options of `bench bus`.
#[derive(Debug, Args)]
pub struct BusArgs {
    /// Broker URL: redis://..., amqp://..., nats://..., kafka://..., or memory (one in-process
    /// bus shared by both runtimes).
    #[arg(long, env = "BROKER_URL")]
    pub broker: String,
    /// Store URL of each runtime: memory, postgres://..., redis://..., sqlite://PATH. Each
    /// runtime has its own: schema `xcbench_orders` / `xcbench_payments` (PostgreSQL), key prefix
    /// `xcbench-orders` / `xcbench-payments` (Redis), file `PATH.orders` / `PATH.payments`. A
    /// `schema=NAME` in a PostgreSQL URL becomes `NAME_orders` / `NAME_payments`.
    #[arg(long, default_value = "memory")]
    pub store: String,
    /// Kafka: `BusOptions::kafka_fetch_wait` in milliseconds (default 10), the longest a fetch
    /// waits for records; some Kafka-compatible brokers (tansu) hold a fetch that long even when
    /// a record arrives, which adds up to it to every hop.
    #[arg(long)]
    pub kafka_fetch_wait_ms: Option<u64>,
    /// Flows measured at each concurrency level.
    #[arg(long, default_value_t = 2_000)]
    pub flows: usize,
    /// Payment runtimes run as replicas of their component (`runtime --replicas`), each with its
    /// own broker connection, sharing one store with the order runtime (schema or prefix of the
    /// payments); 0 (the default) runs one plain runtime on a store of its own.
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub payment_replicas: usize,
    /// Flows in flight; a comma-separated list measures each level in turn.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 32])]
    pub concurrency: Vec<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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
        BenchCommand::Bus(args) => bus::run(&args),
    }
}
