//! `xcomponent-ai dashboard --broker URL [--store URL] [--port P]`: the REST API, WebSocket and
//! dashboard of `serve`, over every runtime on the bus instead of one in this process. It learns
//! the components from the runtimes' announces, follows their instances through the events they
//! publish (and asks for their live instances at start and every 30 s), routes commands to the
//! runtime that hosts their target (the REST reply carries the owner's outcome, or 202 with the
//! message id when it does not answer in time), and lists the runtimes, dropping one after a
//! missed-heartbeat timeout. With `--store` (the runtimes' shared store) it reads history and
//! dead letters from it.

use super::broker;
use super::options::{self, HttpArgs};
use super::serve::{LogFormat, init_logging, signal};
use super::startup::ConnectArgs;
use anyhow::{Context as _, Result, bail};
use clap::Args;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use xcomponent_runtime::{ClusterOptions, ClusterView, RuntimeApi};
use xcomponent_server::{AppState, Metrics, ServerConfig, TimedStore};
use xcomponent_store::StoreOptions;

/// Arguments of `dashboard`.
#[derive(Debug, Args)]
pub struct DashboardArgs {
    /// Message bus the runtimes are on: redis://, amqp://, kafka://h1:9092,h2:9092, nats://
    /// (default: BROKER_URL, XCOMPONENT_BROKER_URL or REDIS_URL).
    #[arg(long, short = 'b', value_name = "URL")]
    pub broker: Option<String>,

    /// The runtimes' shared store, for history and dead letters: postgres://..., redis://...
    #[arg(long, env = "DATABASE_URL", value_name = "URL")]
    pub store: Option<String>,

    /// How long a command waits for its owner's answer before 202, in milliseconds.
    #[arg(long, default_value_t = xcomponent_runtime::DEFAULT_REPLY_TIMEOUT.as_millis() as u64, value_name = "MS")]
    pub reply_timeout_ms: u64,

    /// A runtime silent this long is dropped from the runtimes list, in milliseconds.
    #[arg(long, default_value_t = xcomponent_runtime::DEFAULT_RUNTIME_TIMEOUT.as_millis() as u64, value_name = "MS")]
    pub runtime_timeout_ms: u64,

    /// How often every runtime is asked for its live instances, in milliseconds.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub refresh_ms: u64,

    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    #[command(flatten)]
    pub http: HttpArgs,

    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// Runs `dashboard` until SIGINT/SIGTERM.
pub fn run(args: DashboardArgs) -> Result<ExitCode> {
    init_logging(args.log_format);
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the Tokio runtime")?;
    tokio.block_on(watch(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn watch(args: DashboardArgs) -> Result<()> {
    let Some(broker_url) = broker::broker_url(args.broker.as_deref()) else {
        bail!(
            "dashboard needs a broker: give --broker URL or set one of {}",
            broker::BROKER_ENV.join(", ")
        );
    };
    if broker::is_memory(&broker_url)? {
        bail!("the memory bus is one process: `serve` is the dashboard of a single process");
    }
    let bus = broker::open(&broker_url, None, args.connect.wait()).await?;
    let metrics = Metrics::new();
    let store = match args.store.as_deref().filter(|url| !url.is_empty()) {
        Some(url) => Some(TimedStore::wrap(
            options::open_store(url, &StoreOptions::default(), args.connect.wait()).await?,
            &metrics,
        )),
        None => None,
    };
    let options = ClusterOptions {
        reply_timeout: Duration::from_millis(args.reply_timeout_ms.max(1)),
        runtime_timeout: Duration::from_millis(args.runtime_timeout_ms.max(1)),
        refresh_interval: Duration::from_millis(args.refresh_ms.max(100)),
    };
    let view = ClusterView::connect(bus, store, Arc::new(xcomponent_core::SystemClock), options)
        .await
        .context("cannot follow the bus")?;
    let address = args.http.address();
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local = listener.local_addr().context("cannot read the listening address")?;
    let config = ServerConfig {
        mode: "distributed".to_owned(),
        broker: broker::redacted(&broker_url),
        runtime_name: Some("dashboard".to_owned()),
        ..args.http.server_config(local.port(), metrics)
    };
    let runtime: Arc<dyn RuntimeApi> = Arc::new(view.clone());
    let state = AppState::new(runtime, config).await;
    let signalled = signal();
    {
        use std::io::Write as _;
        let host = &args.http.host;
        let host = if host == "0.0.0.0" { "localhost" } else { host.as_str() };
        let base = format!("http://{host}:{}", local.port());
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "xcomponent-ai dashboard on {base} over {}",
            broker::redacted(&broker_url)
        );
        let _ = writeln!(out, "  dashboard:  {base}/dashboard.html");
        let _ = out.flush();
    }
    let shutdown = {
        let state = state.clone();
        async move {
            signalled.await;
            state.begin_shutdown();
        }
    };
    xcomponent_server::serve(listener, state, shutdown).await.context("the HTTP server failed")?;
    view.stop();
    Ok(())
}
