//! `xcomponent-ai serve FILE...`: hosts the components in one runtime and serves the REST API,
//! the WebSocket feed, OpenAPI (`/api-docs`), `/health`, `/metrics` and the dashboard on one
//! port. By default the store is an embedded SQLite file in `--data-dir`, so a restart loses
//! nothing; `--store`/`DATABASE_URL` picks another. With the default `--broker memory` every
//! component runs in this process; with a broker URL the runtime joins the bus, and components
//! hosted by other runtimes (`xcomponent-ai runtime`) are reached through it.
//!
//! SIGINT/SIGTERM: stop accepting connections, close WebSockets, let in-flight requests finish
//! (at most `SHUTDOWN_GRACE`), wait for queued transitions to be stored, then stop the runtime.

use super::broker;
use super::options::{self, EngineArgs, HttpArgs, StoreArgs};
use super::startup::ConnectArgs;
use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use xcomponent_cli::offline::load::{LoadError, load_definitions, print_diagnostics};
use xcomponent_core::definition::Definition;
use xcomponent_runtime::{BusConfig, RuntimeBuilder};
use xcomponent_server::{AppState, Metrics, ServerConfig};

/// Longest in-flight requests may take to finish once shutdown has begun.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Arguments of `serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Component files (YAML); each is one component, all run in one runtime. When none is
    /// given, COMPONENT_FILE (comma-separated) names them.
    #[arg(required = true, value_name = "FILE", env = "COMPONENT_FILE", value_delimiter = ',')]
    pub files: Vec<PathBuf>,

    /// Name of this runtime in /api/runtimes (default: "runtime-" and the start time in ms).
    #[arg(long, env = "RUNTIME_NAME", value_name = "NAME")]
    pub runtime_name: Option<String>,

    /// Create one instance of each component's entry machine at start (with empty data) when
    /// the component has none yet. The flag alone means true; a value (here or in
    /// CREATE_DEMO_INSTANCE) may be 1/0, true/false, yes/no or on/off.
    #[arg(long, env = "CREATE_DEMO_INSTANCE", value_name = "BOOL", num_args = 0..=1,
        require_equals = true, default_value = "false", default_missing_value = "true",
        value_parser = parse_flag, action = clap::ArgAction::Set)]
    pub create_demo_instance: bool,

    /// Message bus: memory (one process; the default), redis://, amqp://,
    /// kafka://h1:9092,h2:9092, nats:// (default: BROKER_URL, XCOMPONENT_BROKER_URL or
    /// REDIS_URL, else memory).
    #[arg(long, short = 'b', value_name = "URL")]
    pub broker: Option<String>,

    /// How long a runtime that went silent keeps the messages it took before the broker hands
    /// them to another (Redis claim idle time, NATS ack wait, Kafka session timeout: 6,000 at
    /// least), in milliseconds (default 30,000).
    #[arg(long, env = "XCOMPONENT_REDELIVERY_MS", value_name = "MS")]
    pub redelivery_ms: Option<u64>,

    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub http: HttpArgs,

    #[command(flatten)]
    pub store: StoreArgs,

    #[command(flatten)]
    pub connect: ConnectArgs,

    #[command(flatten)]
    pub engine: EngineArgs,
}

/// A boolean flag or environment variable, with the spellings every setting accepts.
fn parse_flag(value: &str) -> Result<bool, xcomponent_core::flag::Error> {
    xcomponent_core::flag::parse(value)
}

/// Runs `serve` until SIGINT/SIGTERM.
pub fn run(args: ServeArgs) -> Result<ExitCode> {
    init_logging(args.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")?;
    runtime.block_on(serve(args))?;
    Ok(ExitCode::SUCCESS)
}

pub(super) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Loads, validates and compiles every file (`offline::load`, as `run` and `simulate` do); prints
/// the diagnostics; fails on any error.
pub(super) fn load(files: &[PathBuf]) -> Result<Vec<Definition>> {
    match load_definitions(files) {
        Ok(loaded) => {
            print_diagnostics(&loaded.warnings);
            Ok(loaded.definitions)
        }
        Err(LoadError::Invalid(diagnostics)) => {
            print_diagnostics(&diagnostics);
            bail!("the component files have errors; nothing was started")
        }
        Err(LoadError::Usage(message)) => bail!(message),
    }
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled, so a signal sent right after the "serving" line is not missed.
pub(super) fn signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal as listen};
        let interrupt = listen(SignalKind::interrupt());
        let terminate = listen(SignalKind::terminate());
        async move {
            match (interrupt, terminate) {
                (Ok(mut interrupt), Ok(mut terminate)) => {
                    tokio::select! {
                        _ = interrupt.recv() => {}
                        _ = terminate.recv() => {}
                    }
                }
                (interrupt, terminate) => {
                    if let Err(error) = interrupt.and(terminate) {
                        tracing::warn!(%error, "cannot listen for SIGINT/SIGTERM; only Ctrl-C stops the server");
                    }
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

async fn serve(args: ServeArgs) -> Result<()> {
    let broker_url = broker::broker_url(args.broker.as_deref()).unwrap_or_else(|| "memory".into());
    let on_bus = !broker::is_memory(&broker_url)?;
    let definitions = load(&args.files)?;
    let url = args.store.url()?;
    let metrics = Metrics::new();
    let options = args.engine.runtime_options();
    let store = args.store.open(&url, options.shards, &metrics, args.connect.wait()).await?;
    args.engine.spawn_retention(store.clone());
    let handlers = args.engine.handlers(&definitions)?;
    let mut builder = RuntimeBuilder::new().store(store).options(options).handlers(handlers);
    let names: Vec<String> =
        definitions.iter().map(|definition| definition.name.to_string()).collect();
    if on_bus {
        let bus = broker::open(&broker_url, args.redelivery_ms, args.connect.wait()).await?;
        let name = args
            .runtime_name
            .clone()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| format!("serve-{}", names.join("-")));
        let mut config = BusConfig::new(name);
        config.host = args.http.host.clone();
        config.port = args.http.port;
        builder = builder.bus(bus, config);
    }
    for definition in definitions {
        builder = builder.component(definition);
    }
    let runtime = builder.start().await.context("cannot start the runtime")?;

    let address = args.http.address();
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local: SocketAddr = listener.local_addr().context("cannot read the listening address")?;
    let config = ServerConfig {
        broker: broker::redacted(&broker_url),
        runtime_name: args.runtime_name.clone().filter(|name| !name.is_empty()),
        ..args.http.server_config(local.port(), metrics)
    };
    tracing::info!(limits = ?config.connections, "connection limits");
    if args.create_demo_instance {
        create_demo_instances(&runtime.handle()).await;
    }
    let state = AppState::new(Arc::new(runtime.handle()), config).await;
    let signalled = signal();
    let base = format!("http://{}:{}", display_host(&args.http.host), local.port());
    {
        // Not println!: a closed stdout must not stop the server.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "xcomponent-ai serving {} on {base}", names.join(", "));
        let _ = writeln!(out, "  dashboard:  {base}/dashboard.html");
        let _ = writeln!(out, "  API docs:   {base}/api-docs");
        let _ = writeln!(out, "  store:      {}", options::redact(&url));
        if on_bus {
            let _ = writeln!(out, "  broker:     {}", broker::redacted(&broker_url));
        }
        let _ = out.flush();
    }
    tracing::info!(address = %local, components = ?names, store = %options::redact(&url), "listening");

    let stopping = Arc::new(Notify::new());
    let shutdown = {
        let state = state.clone();
        let stopping = stopping.clone();
        async move {
            signalled.await;
            tracing::info!("shutting down: no new connections; finishing in-flight requests");
            state.begin_shutdown();
            stopping.notify_one();
        }
    };
    let server = xcomponent_server::serve(listener, state.clone(), shutdown);
    tokio::select! {
        result = server => result.context("the HTTP server failed")?,
        () = async { stopping.notified().await; tokio::time::sleep(SHUTDOWN_GRACE).await } => {
            tracing::warn!(grace_seconds = SHUTDOWN_GRACE.as_secs(), "requests still running after the grace period; stopping anyway");
        }
    }
    let handle = runtime.handle();
    if let Err(error) = handle.flush().await {
        tracing::warn!(%error, "could not wait for queued transitions");
    }
    runtime.shutdown().await;
    tracing::info!("stopped; every transition is stored");
    Ok(())
}

/// One instance of each component's entry machine, unless it already has a live one.
async fn create_demo_instances(handle: &xcomponent_runtime::RuntimeHandle) {
    for definition in handle.registry().components() {
        let Some(machine) =
            definition.entry_machine.map(|machine| definition.machine(machine).name.to_string())
        else {
            continue;
        };
        let filter = xcomponent_runtime::InstanceFilter {
            component: Some(definition.name.to_string()),
            machine: Some(machine.clone()),
            limit: 1,
            ..Default::default()
        };
        if !handle.instances(filter).await.is_empty() {
            continue;
        }
        match handle.create_instance(&definition.name, &machine, Default::default()).await {
            Ok(id) => {
                tracing::info!(component = &*definition.name, machine, instance = %id, "Demo instance created.")
            }
            Err(error) => {
                tracing::warn!(component = &*definition.name, %error, "Demo instance not created.")
            }
        }
    }
}

fn display_host(host: &str) -> &str {
    match host {
        "0.0.0.0" | "::" | "[::]" => "localhost",
        other => other,
    }
}
