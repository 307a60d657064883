//! `xcomponent-ai runtime FILE... --broker URL`: hosts the components of FILE... in one runtime
//! joined to a bus, without an HTTP server. Messages for components hosted by other runtimes
//! travel on the bus (stored in the outbox first, acknowledged after they are applied); the
//! runtime announces itself, heartbeats and publishes its events for dashboards, and runs the
//! commands they send. SIGINT/SIGTERM: finish queued work, store it, say goodbye, stop.

use super::broker;
use super::options::{self, EngineArgs, StoreArgs};
use super::serve::{LogFormat, init_logging, load, signal};
use super::startup::ConnectArgs;
use anyhow::{Context as _, Result, bail};
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use xcomponent_runtime::{BusConfig, LeaseConfig, RuntimeBuilder};
use xcomponent_server::Metrics;

/// Arguments of `runtime`.
#[derive(Debug, Args)]
pub struct RuntimeArgs {
    /// Component files (YAML) hosted by this runtime. When none is given, COMPONENT_FILE
    /// (comma-separated) names them.
    #[arg(required = true, value_name = "FILE", env = "COMPONENT_FILE", value_delimiter = ',')]
    pub files: Vec<PathBuf>,

    /// Message bus: redis://, amqp://, kafka://h1:9092,h2:9092, nats:// (default: BROKER_URL,
    /// XCOMPONENT_BROKER_URL or REDIS_URL).
    #[arg(long, short = 'b', value_name = "URL")]
    pub broker: Option<String>,

    /// Name of this runtime on the bus: its consumer name (keep it stable across restarts) and
    /// what dashboards show (default: "runtime-" and the hosted component names).
    #[arg(long, env = "RUNTIME_NAME", value_name = "NAME")]
    pub name: Option<String>,

    /// How long a runtime that went silent keeps the messages it took before the broker hands
    /// them to another (Redis claim idle time, NATS ack wait, Kafka session timeout: 6,000 at
    /// least), in milliseconds (default 30,000).
    #[arg(long, env = "XCOMPONENT_REDELIVERY_MS", value_name = "MS")]
    pub redelivery_ms: Option<u64>,

    /// How often the runtime tells dashboards it is alive, in milliseconds.
    #[arg(long, default_value_t = xcomponent_runtime::DEFAULT_HEARTBEAT_INTERVAL.as_millis() as u64, value_name = "MS")]
    pub heartbeat_ms: u64,

    /// How long a message sent to another component waits for its receipt (the receiving
    /// runtime stored it) before it is sent again, in milliseconds (doubled at each resend of
    /// the same message, up to 5 minutes).
    #[arg(long, default_value_t = xcomponent_runtime::RELAY_RESEND_AFTER.as_millis() as u64, value_name = "MS")]
    pub resend_ms: u64,

    /// Run as one of several replicas of the hosted components: their instances are split into
    /// partitions shared with the other runtimes started with --replicas on the same store
    /// (PostgreSQL or Redis), each processing the partitions whose lease it holds and taking
    /// over those of a replica that dies.
    #[arg(long, env = "XCOMPONENT_REPLICAS")]
    pub replicas: bool,

    /// With --replicas: partitions of a component whose count is not stored yet (the first
    /// replica fixes it for good).
    #[arg(long, default_value_t = xcomponent_core::lease::DEFAULT_PARTITIONS, value_name = "N", requires = "replicas")]
    pub partitions: u32,

    /// With --replicas: how long a partition's lease lasts without renewal, in milliseconds (a
    /// dead replica's partitions are taken over after it; renewed every third of it).
    #[arg(long, default_value_t = xcomponent_runtime::DEFAULT_LEASE_TTL.as_millis() as u64, value_name = "MS", requires = "replicas")]
    pub lease_ttl_ms: u64,

    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Runs `runtime` until SIGINT/SIGTERM.
pub fn run(args: RuntimeArgs) -> Result<ExitCode> {
    init_logging(args.log_format);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")?;
    tokio.block_on(host(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn host(args: RuntimeArgs) -> Result<()> {
    let Some(broker_url) = broker::broker_url(args.broker.as_deref()) else {
        bail!(
            "runtime needs a broker: give --broker URL or set one of {}",
            broker::BROKER_ENV.join(", ")
        );
    };
    let definitions = load(&args.files)?;
    let names: Vec<String> =
        definitions.iter().map(|definition| definition.name.to_string()).collect();
    let name = args
        .name
        .clone()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| format!("runtime-{}", names.join("-")));
    let bus = broker::open(&broker_url, args.redelivery_ms, args.connect.wait()).await?;
    let url = args.store.url()?;
    let options = args.engine.runtime_options();
    let store = args.store.open(&url, options.shards, &Metrics::new(), args.connect.wait()).await?;
    args.engine.spawn_retention(store.clone());
    let mut config = BusConfig::new(name.clone());
    config.heartbeat_interval = Duration::from_millis(args.heartbeat_ms.max(100));
    config.resend_after = Duration::from_millis(args.resend_ms.max(100));
    let handlers = args.engine.handlers(&definitions)?;
    let mut builder =
        RuntimeBuilder::new().store(store).options(options).bus(bus, config).handlers(handlers);
    if args.replicas {
        builder = builder.replicas(LeaseConfig {
            ttl: Duration::from_millis(args.lease_ttl_ms),
            partitions: args.partitions,
            ..LeaseConfig::new(name.clone())
        });
    }
    for definition in definitions {
        builder = builder.component(definition);
    }
    let signalled = signal();
    let runtime = builder.start().await.context("cannot start the runtime")?;
    {
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "xcomponent-ai runtime {name} hosting {} on {}",
            names.join(", "),
            broker::redacted(&broker_url)
        );
        let _ = writeln!(out, "  store:      {}", options::redact(&url));
        if let Some(ownership) = runtime.handle().ownership() {
            for (component, owned) in ownership {
                let _ = writeln!(
                    out,
                    "  replicas:   {component}: owns {} of {} partitions (lease {} ms)",
                    owned.owned.len(),
                    owned.partitions,
                    args.lease_ttl_ms
                );
            }
        }
        let _ = out.flush();
    }
    tracing::info!(runtime = %name, components = ?names, "runtime started");
    signalled.await;
    tracing::info!("shutting down: finishing queued work");
    if let Err(error) = runtime.handle().flush().await {
        tracing::warn!(%error, "could not wait for queued transitions");
    }
    runtime.shutdown().await;
    tracing::info!("stopped; every transition is stored");
    Ok(())
}
