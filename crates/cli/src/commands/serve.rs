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
use anyhow::{Context as _, Result, bail};
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use xcomponent_core::definition::Definition;
use xcomponent_core::diagnostic::{Diagnostic, Severity};
use xcomponent_core::load::load_component_file;
use xcomponent_core::validate::{ValidateOptions, validate};
use xcomponent_runtime::{BusConfig, ContextSchemaMode, RuntimeBuilder, RuntimeOptions};
use xcomponent_server::{AppState, ConnectionLimits, Cors, Metrics, ServerConfig, TimedStore};
use xcomponent_store::{Durability, StoreOptions};

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

/// When a store commit counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// Flushed to disk before the reply (safe against power loss).
    EachCommit,
    /// Survives a process crash; the last commits may be lost on power loss.
    Relaxed,
    /// No flush (tests and benchmarks).
    None,
}

/// Whether creations are held to their machine's `contextSchema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ContextSchemaArg {
    /// Required fields present, declared types respected.
    Enforced,
    /// Only a description for forms.
    Lenient,
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

    /// Port to listen on (0 picks a free one).
    #[arg(long, short = 'p', env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// Address to listen on (0.0.0.0 for every interface).
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Store URL: memory, sqlite://PATH, postgres://..., redis://... (default: SQLite in --data-dir).
    #[arg(long, env = "DATABASE_URL", value_name = "URL")]
    pub store: Option<String>,

    /// Folder of the default SQLite store (created if missing).
    #[arg(long, default_value = "./xcomponent-data", value_name = "DIR")]
    pub data_dir: PathBuf,

    /// When a store commit counts as done.
    #[arg(long, value_enum, default_value = "each-commit")]
    pub durability: DurabilityArg,

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

    /// Require `Authorization: Bearer TOKEN` on every mutating route.
    #[arg(long, env = "XCOMPONENT_API_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Allow cross-origin calls from ORIGIN (repeatable; `*` for any). Off by default. Pages
    /// from these origins may also open `/ws` and `/socket.io/`.
    #[arg(long, value_name = "ORIGIN")]
    pub cors: Vec<String>,

    /// Accept requests for host NAME (repeatable) when bound to a loopback address, besides
    /// localhost and loopback IPs (others get 403: DNS rebinding protection).
    #[arg(long, value_name = "NAME")]
    pub allow_host: Vec<String>,

    /// Connections served at once (default: 4096, lowered to fit the open-files limit). Past it,
    /// --reserve-connections more answer only /health and the dashboard.
    #[arg(long, env = "XCOMPONENT_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Connections kept for /health and the dashboard once --max-connections are in use.
    #[arg(long, default_value_t = xcomponent_server::DEFAULT_RESERVE_CONNECTIONS, value_name = "N")]
    pub reserve_connections: usize,

    /// Connections from one IP address at once.
    #[arg(long, env = "XCOMPONENT_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = xcomponent_server::DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, value_name = "N")]
    pub max_connections_per_address: usize,

    /// New connections one IP address may open per second (past it: 429, closed at once); 0
    /// for no limit (behind a reverse proxy that opens a connection per request, raise it or
    /// use 0).
    #[arg(long, env = "XCOMPONENT_MAX_NEW_CONNECTIONS_PER_ADDRESS", default_value_t = xcomponent_server::DEFAULT_MAX_NEW_CONNECTIONS_PER_ADDRESS, value_name = "N")]
    pub max_new_connections_per_address: usize,

    /// Longest wait for a complete request head, and idle time after which a keep-alive
    /// connection is closed.
    #[arg(long, default_value_t = xcomponent_server::DEFAULT_HEADER_READ_TIMEOUT.as_millis() as u64, value_name = "MS")]
    pub header_timeout_ms: u64,

    /// A WebSocket client silent this long gets a ping.
    #[arg(long, default_value_t = xcomponent_server::WS_PING_INTERVAL.as_millis() as u64, value_name = "MS")]
    pub ws_ping_ms: u64,

    /// A pinged WebSocket client that sends nothing (not even the pong) this long is closed.
    #[arg(long, default_value_t = xcomponent_server::WS_PONG_TIMEOUT.as_millis() as u64, value_name = "MS")]
    pub ws_pong_timeout_ms: u64,

    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = xcomponent_server::DEFAULT_BODY_LIMIT, value_name = "BYTES")]
    pub body_limit: usize,

    /// Runtime shards (default: one per core).
    #[arg(long, value_name = "N")]
    pub shards: Option<usize>,

    /// Snapshot an instance every N events (and always at final/error).
    #[arg(long, env = "SNAPSHOT_INTERVAL", default_value_t = xcomponent_runtime::DEFAULT_SNAPSHOT_INTERVAL, value_name = "N")]
    pub snapshot_interval: u64,

    /// Group commit: how long a shard waits for more work before committing a batch (0: commit
    /// what is there at once).
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub commit_delay_ms: u64,

    /// Group commit: most messages in one shard batch (one store transaction).
    #[arg(long, default_value_t = xcomponent_runtime::DEFAULT_MAX_BATCH, value_name = "N")]
    pub max_batch: usize,

    /// Largest instance data, in bytes of its JSON: an event whose transition would make it
    /// larger is refused (HTTP 422) and the instance stays as it was.
    #[arg(long, env = "XCOMPONENT_MAX_DATA_BYTES", default_value_t = xcomponent_runtime::DEFAULT_MAX_DATA_BYTES, value_name = "BYTES")]
    pub max_data_bytes: usize,

    /// Largest event payload (and initial data of a creation), in bytes of its JSON: a larger
    /// one is refused (HTTP 413).
    #[arg(long, env = "XCOMPONENT_MAX_PAYLOAD_BYTES", default_value_t = xcomponent_runtime::DEFAULT_MAX_PAYLOAD_BYTES, value_name = "BYTES")]
    pub max_payload_bytes: usize,

    /// Whether creations must satisfy their machine's contextSchema: `enforced` refuses one
    /// that lacks a required field or gives a field another type (HTTP 422; a child or
    /// cross-component creation becomes a dead letter); `lenient` accepts any data, as the
    /// original did.
    #[arg(
        long,
        env = "XCOMPONENT_CONTEXT_SCHEMA",
        value_enum,
        default_value = "enforced",
        value_name = "MODE"
    )]
    pub context_schema: ContextSchemaArg,

    /// Delete the events of instances that finished more than DAYS days ago (checked hourly;
    /// unset: keep everything).
    #[arg(long, env = "XCOMPONENT_RETENTION_DAYS", value_name = "DAYS")]
    pub retention_days: Option<u32>,
}

/// A boolean flag or environment variable, with the spellings every setting accepts.
fn parse_flag(value: &str) -> Result<bool, xcomponent_core::flag::Error> {
    xcomponent_core::flag::parse(value)
}

/// How often the retention policy is applied.
const RETENTION_PERIOD: std::time::Duration = std::time::Duration::from_secs(3600);

/// Applies the retention policy now and then every `RETENTION_PERIOD`, until the process ends.
fn spawn_retention(
    store: Arc<dyn xcomponent_core::store::EventStore>,
    clock: Arc<dyn xcomponent_core::Clock>,
    days: u32,
) {
    let keep_finished_ms = i64::from(days) * 24 * 3600 * 1000;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(RETENTION_PERIOD);
        loop {
            ticker.tick().await;
            let retention =
                xcomponent_core::store::Retention { keep_finished_ms: Some(keep_finished_ms) };
            match store.apply_retention(retention, clock.now()).await {
                Ok(0) => {}
                Ok(purged) => {
                    tracing::info!(purged, days, "Retention applied to finished instances.")
                }
                Err(error) => tracing::warn!(%error, "Retention could not be applied; will retry."),
            }
        }
    });
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

/// Loads, validates and compiles every file; prints warnings; fails on any error.
pub(super) fn load(files: &[PathBuf]) -> Result<Vec<Definition>> {
    let mut definitions: Vec<Definition> = Vec::new();
    let mut failed = false;
    for file in files {
        let diagnostics = match load_component_file(file) {
            Ok(loaded) => {
                let diagnostics = validate(&loaded, &ValidateOptions::default());
                if !diagnostics.iter().any(Diagnostic::is_error) {
                    match Definition::compile(loaded.component) {
                        Ok(definition) => {
                            if definitions.iter().any(|other| other.name == definition.name) {
                                bail!(
                                    "component {} is defined twice (again in {})",
                                    definition.name,
                                    file.display()
                                );
                            }
                            definitions.push(definition);
                        }
                        Err(problems) => {
                            failed = true;
                            for problem in problems {
                                eprintln!("{}: error: {problem}", file.display());
                            }
                        }
                    }
                }
                diagnostics
            }
            Err(diagnostics) => diagnostics,
        };
        for diagnostic in &diagnostics {
            failed |= diagnostic.severity == Severity::Error;
            eprintln!("{diagnostic}");
        }
    }
    if failed {
        bail!("the component files have errors; nothing was started");
    }
    Ok(definitions)
}

/// The store URL: `store` when given, else an SQLite file in `data_dir` (created).
pub(super) fn store_url(store: Option<&str>, data_dir: &Path) -> Result<String> {
    if let Some(url) = store.filter(|url| !url.is_empty()) {
        return Ok(url.to_owned());
    }
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
    let path: &Path = &data_dir.join("xcomponent.db");
    Ok(format!("sqlite://{}", path.display()))
}

/// The store durability a flag names.
pub(super) fn durability(arg: DurabilityArg) -> Durability {
    match arg {
        DurabilityArg::EachCommit => Durability::EachCommit,
        DurabilityArg::Relaxed => Durability::Relaxed,
        DurabilityArg::None => Durability::None,
    }
}

fn cors(origins: &[String]) -> Cors {
    if origins.is_empty() {
        Cors::Off
    } else if origins.iter().any(|origin| origin == "*") {
        Cors::Any
    } else {
        Cors::Origins(origins.to_vec())
    }
}

/// File descriptors kept out of the connection limits: the store, its pool, logs, the listener.
const FD_HEADROOM: usize = 128;

/// The connection bounds: the options, with the normal and reserve pools lowered to fit the
/// open-files limit so that the reserve stays reachable (an `accept` at the limit fails).
fn connection_limits(args: &ServeArgs) -> ConnectionLimits {
    let reserve = args.reserve_connections;
    let wanted = args.max_connections.unwrap_or(xcomponent_server::DEFAULT_MAX_CONNECTIONS).max(1);
    let max_connections = match open_files_limit() {
        Some(limit) => {
            let fits = limit.saturating_sub(FD_HEADROOM + reserve).max(1);
            if fits < wanted {
                tracing::warn!(
                    open_files_limit = limit,
                    max_connections = fits,
                    "the open-files limit (ulimit -n) lowers --max-connections"
                );
            }
            wanted.min(fits)
        }
        None => wanted,
    };
    ConnectionLimits {
        max_connections,
        reserve_connections: reserve,
        max_per_address: args.max_connections_per_address.max(1),
        header_read_timeout: Duration::from_millis(args.header_timeout_ms.max(1)),
        max_new_per_address: args.max_new_connections_per_address,
        new_connection_window: xcomponent_server::NEW_CONNECTION_WINDOW,
    }
}

/// The soft open-files limit of this process (Linux: `/proc/self/limits`; elsewhere unknown).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&limits)
}

fn parse_open_files_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
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
    let url = store_url(args.store.as_deref(), &args.data_dir)?;
    let durability = durability(args.durability);
    let metrics = Metrics::new();
    // Enough connections for every shard to commit at once, plus readers for the API.
    let shards = args.shards.unwrap_or_else(|| RuntimeOptions::default().shards).max(1);
    let pool_size =
        u32::try_from(shards + 2).unwrap_or(u32::MAX).max(StoreOptions::default().pool_size);
    let store = xcomponent_store::open(
        &url,
        &StoreOptions { durability, pool_size, ..StoreOptions::default() },
    )
    .await
    .with_context(|| format!("cannot open the store {url}"))?;
    let store = TimedStore::wrap(store, &metrics);
    let mut options = RuntimeOptions {
        snapshot_interval: args.snapshot_interval.max(1),
        commit_delay: std::time::Duration::from_millis(args.commit_delay_ms),
        max_batch: args.max_batch.max(1),
        max_data_bytes: args.max_data_bytes,
        max_payload_bytes: args.max_payload_bytes,
        context_schema: match args.context_schema {
            ContextSchemaArg::Enforced => ContextSchemaMode::Enforced,
            ContextSchemaArg::Lenient => ContextSchemaMode::Lenient,
        },
        ..RuntimeOptions::default()
    };
    if let Some(shards) = args.shards {
        options.shards = shards.max(1);
    }
    if let Some(days) = args.retention_days {
        spawn_retention(store.clone(), Arc::new(xcomponent_core::SystemClock), days);
    }
    let mut builder = RuntimeBuilder::new().store(store).options(options);
    let names: Vec<String> =
        definitions.iter().map(|definition| definition.name.to_string()).collect();
    if on_bus {
        let bus = broker::open(&broker_url, args.redelivery_ms).await?;
        let name = args
            .runtime_name
            .clone()
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| format!("serve-{}", names.join("-")));
        let mut config = BusConfig::new(name);
        config.host = args.host.clone();
        config.port = args.port;
        builder = builder.bus(bus, config);
    }
    for definition in definitions {
        builder = builder.component(definition);
    }
    let runtime = builder.start().await.context("cannot start the runtime")?;

    let address = format!("{}:{}", args.host, args.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local: SocketAddr = listener.local_addr().context("cannot read the listening address")?;
    let connections = connection_limits(&args);
    let config = ServerConfig {
        token: args.token.filter(|token| !token.is_empty()),
        cors: cors(&args.cors),
        body_limit: args.body_limit,
        broker: broker::redacted(&broker_url),
        host: args.host.clone(),
        port: local.port(),
        metrics,
        runtime_name: args.runtime_name.clone().filter(|name| !name.is_empty()),
        allowed_hosts: args.allow_host.clone(),
        connections,
        ws_ping_interval: Duration::from_millis(args.ws_ping_ms.max(1)),
        ws_pong_timeout: Duration::from_millis(args.ws_pong_timeout_ms.max(1)),
        ..ServerConfig::default()
    };
    tracing::info!(limits = ?config.connections, "connection limits");
    if args.create_demo_instance {
        create_demo_instances(&runtime.handle()).await;
    }
    let state = AppState::new(Arc::new(runtime.handle()), config).await;
    let signalled = signal();
    let base = format!("http://{}:{}", display_host(&args.host), local.port());
    {
        // Not println!: a closed stdout must not stop the server.
        use std::io::Write as _;
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "xcomponent-ai serving {} on {base}", names.join(", "));
        let _ = writeln!(out, "  dashboard:  {base}/dashboard.html");
        let _ = writeln!(out, "  API docs:   {base}/api-docs");
        let _ = writeln!(out, "  store:      {}", redact(&url));
        if on_bus {
            let _ = writeln!(out, "  broker:     {}", broker::redacted(&broker_url));
        }
        let _ = out.flush();
    }
    tracing::info!(address = %local, components = ?names, store = %redact(&url), "listening");

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

/// The URL without its password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact("postgres://user:secret@db:5432/x"), "postgres://user:***@db:5432/x");
        assert_eq!(redact("sqlite://./data/x.db"), "sqlite://./data/x.db");
    }

    #[test]
    fn reads_the_open_files_limit() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             63451                63451                processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_open_files_limit(limits), Some(1024));
        assert_eq!(parse_open_files_limit("Max open files unlimited unlimited files"), None);
    }
}
