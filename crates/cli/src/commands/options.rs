//! Option groups shared by the commands that run things, flattened into their arguments so that
//! one flag means the same everywhere: `StoreArgs` (serve, runtime), `EngineArgs` (serve,
//! runtime: shards, group commit, limits, contextSchema, retention) and `HttpArgs` (serve,
//! dashboard: the listener, its token and every connection bound of issue-12's protections).

use super::startup;
use anyhow::{Context as _, Result};
use clap::{Args, ValueEnum};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use xcomponent_core::definition::Definition;
use xcomponent_core::store::{Error as StoreError, EventStore, Retention};
use xcomponent_runtime::{ContextSchemaMode, Handlers, RuntimeOptions, Webhooks};
use xcomponent_server::{ConnectionLimits, Cors, Metrics, ServerConfig, TimedStore};
use xcomponent_store::{Durability, StoreOptions};

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

/// Where a runtime stores its instances.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Store URL: memory, sqlite://PATH, postgres://..., redis://... (default: SQLite in --data-dir).
    #[arg(long, env = "DATABASE_URL", value_name = "URL")]
    pub store: Option<String>,

    /// Folder of the default SQLite store (created if missing).
    #[arg(long, default_value = "./xcomponent-data", value_name = "DIR")]
    pub data_dir: PathBuf,

    /// When a store commit counts as done.
    #[arg(long, value_enum, default_value = "each-commit")]
    pub durability: DurabilityArg,
}

impl StoreArgs {
    /// The store URL: `--store` when given, else an SQLite file in `--data-dir` (created).
    pub fn url(&self) -> Result<String> {
        if let Some(url) = self.store.as_deref().filter(|url| !url.is_empty()) {
            return Ok(url.to_owned());
        }
        std::fs::create_dir_all(&self.data_dir).with_context(|| {
            format!("cannot create the data directory {}", self.data_dir.display())
        })?;
        let path: &Path = &self.data_dir.join("xcomponent.db");
        Ok(format!("sqlite://{}", path.display()))
    }

    /// Opens the store at `url` with enough connections for `shards` shards to commit at once
    /// plus readers, its calls timed and recorded in `metrics`; a network store is waited for
    /// up to `wait` (`open_store`).
    pub async fn open(
        &self,
        url: &str,
        shards: usize,
        metrics: &Metrics,
        wait: Duration,
    ) -> Result<Arc<dyn EventStore>> {
        let durability = match self.durability {
            DurabilityArg::EachCommit => Durability::EachCommit,
            DurabilityArg::Relaxed => Durability::Relaxed,
            DurabilityArg::None => Durability::None,
        };
        let pool_size =
            u32::try_from(shards + 2).unwrap_or(u32::MAX).max(StoreOptions::default().pool_size);
        // One attempt per open: `open_store` waits for the server itself (--connect-wait).
        let options =
            StoreOptions { durability, pool_size, connect_attempts: 1, ..StoreOptions::default() };
        Ok(TimedStore::wrap(open_store(url, &options, wait).await?, metrics))
    }
}

/// Opens the store at `url`. A PostgreSQL or Redis store that cannot be reached is tried again
/// for up to `wait` (`startup::retry`); an embedded store (SQLite, memory) is opened once, as
/// its failures (a path, a permission, a disk) do not mend by waiting.
pub async fn open_store(
    url: &str,
    options: &StoreOptions,
    wait: Duration,
) -> Result<Arc<dyn EventStore>> {
    let wait = if xcomponent_store::is_server(url) { wait } else { Duration::ZERO };
    let unreachable = |error: &StoreError| matches!(error, StoreError::Unavailable(_));
    startup::retry(&format!("the store {}", redact(url)), wait, unreachable, || {
        xcomponent_store::open(url, options)
    })
    .await
    .with_context(|| format!("cannot open the store {}", redact(url)))
}

/// How a runtime runs its instances.
#[derive(Debug, Args)]
pub struct EngineArgs {
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

    /// Handlers file (YAML or JSON) mapping hook methods to HTTP endpoints (webhooks): url,
    /// timeoutMs, retries, backoffMs, secret (HMAC signature), onError, component; `${NAME}`
    /// is read from the environment. See the README's "Webhook handlers".
    #[arg(long, env = "XCOMPONENT_HANDLERS", value_name = "FILE")]
    pub handlers: Option<PathBuf>,
}

impl EngineArgs {
    /// The handlers `--handlers` gives (none without it), checked against the components: a
    /// method no hook names, or an `onError` event no machine takes, is reported (a file may
    /// serve several runtimes, so it is a warning, not an error).
    pub fn handlers(&self, definitions: &[Definition]) -> Result<Handlers> {
        let Some(path) = &self.handlers else { return Ok(Handlers::new()) };
        let webhooks = Webhooks::load(path)?;
        for (component, method, webhook) in webhooks.iter() {
            let in_scope = |definition: &&Definition| {
                component.is_none_or(|component| *definition.name == *component)
            };
            let named = definitions.iter().filter(in_scope).flat_map(|d| &d.machines).any(|m| {
                m.states.iter().any(|state| {
                    state.on_entry.as_deref() == Some(method)
                        || state.on_exit.as_deref() == Some(method)
                }) || m.transitions.iter().any(|t| t.triggered.as_deref() == Some(method))
            });
            if !named {
                tracing::warn!(file = %path.display(), method, "No hook of the loaded components names this webhook's method.");
            }
            if let Some(event) = &webhook.on_error {
                let taken = definitions
                    .iter()
                    .filter(in_scope)
                    .flat_map(|d| &d.machines)
                    .any(|machine| machine.event_names.iter().any(|name| **name == **event));
                if !taken {
                    tracing::warn!(file = %path.display(), method, event = %event, "No machine takes this onError event; a failed call will be dead-lettered.");
                }
            }
        }
        tracing::info!(file = %path.display(), webhooks = webhooks.len(), "Webhook handlers loaded.");
        Ok(Handlers::new().webhooks(webhooks))
    }

    /// The shards the runtime will have.
    pub fn shards(&self) -> usize {
        self.shards.unwrap_or_else(|| RuntimeOptions::default().shards).max(1)
    }

    /// The runtime options these flags give.
    pub fn runtime_options(&self) -> RuntimeOptions {
        RuntimeOptions {
            shards: self.shards(),
            snapshot_interval: self.snapshot_interval.max(1),
            commit_delay: Duration::from_millis(self.commit_delay_ms),
            max_batch: self.max_batch.max(1),
            max_data_bytes: self.max_data_bytes,
            max_payload_bytes: self.max_payload_bytes,
            context_schema: match self.context_schema {
                ContextSchemaArg::Enforced => ContextSchemaMode::Enforced,
                ContextSchemaArg::Lenient => ContextSchemaMode::Lenient,
            },
            ..RuntimeOptions::default()
        }
    }

    /// Applies `--retention-days` to `store` now and every `RETENTION_PERIOD`, until the
    /// process ends (nothing when unset).
    pub fn spawn_retention(&self, store: Arc<dyn EventStore>) {
        let Some(days) = self.retention_days else { return };
        let clock = xcomponent_core::SystemClock;
        let keep_finished_ms = i64::from(days) * 24 * 3600 * 1000;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(RETENTION_PERIOD);
            loop {
                ticker.tick().await;
                let retention = Retention { keep_finished_ms: Some(keep_finished_ms) };
                let now = xcomponent_core::Clock::now(&clock);
                match store.apply_retention(retention, now).await {
                    Ok(0) => {}
                    Ok(purged) => {
                        tracing::info!(purged, days, "Retention applied to finished instances.")
                    }
                    Err(error) => {
                        tracing::warn!(%error, "Retention could not be applied; will retry.")
                    }
                }
            }
        });
    }
}

/// How often the retention policy is applied.
const RETENTION_PERIOD: Duration = Duration::from_secs(3600);

/// The HTTP listener and its protections.
#[derive(Debug, Args)]
pub struct HttpArgs {
    /// Port to listen on (0 picks a free one).
    #[arg(long, short = 'p', env = "PORT", default_value_t = 3000)]
    pub port: u16,

    /// Address to listen on (0.0.0.0 for every interface, as in a container).
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    pub host: String,

    /// Require `Authorization: Bearer TOKEN` on every mutating route.
    #[arg(long, env = "XCOMPONENT_API_TOKEN", hide_env_values = true, value_name = "TOKEN")]
    pub token: Option<String>,

    /// Require on every webhook (`/webhooks/...`) the header `X-Xcomponent-Signature:
    /// t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">` keyed with SECRET, or the API
    /// token (docs/webhooks.md).
    #[arg(long, env = "XCOMPONENT_WEBHOOK_SECRET", hide_env_values = true, value_name = "SECRET")]
    pub webhook_secret: Option<String>,

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

    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = xcomponent_server::DEFAULT_BODY_LIMIT, value_name = "BYTES")]
    pub body_limit: usize,
}

impl HttpArgs {
    /// The address to bind.
    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The server configuration these flags give, for a server listening on `port`; the
    /// fields they do not cover are left at their defaults.
    pub fn server_config(&self, port: u16, metrics: Metrics) -> ServerConfig {
        ServerConfig {
            token: self.token.clone().filter(|token| !token.is_empty()),
            webhook_secret: self.webhook_secret.clone().filter(|secret| !secret.is_empty()),
            cors: cors(&self.cors),
            body_limit: self.body_limit,
            host: self.host.clone(),
            port,
            metrics,
            allowed_hosts: self.allow_host.clone(),
            connections: self.connection_limits(),
            ws_ping_interval: Duration::from_millis(self.ws_ping_ms.max(1)),
            ws_pong_timeout: Duration::from_millis(self.ws_pong_timeout_ms.max(1)),
            ..ServerConfig::default()
        }
    }

    /// The connection bounds: the options, with the normal and reserve pools lowered to fit
    /// the open-files limit so that the reserve stays reachable (an `accept` at the limit fails).
    fn connection_limits(&self) -> ConnectionLimits {
        let reserve = self.reserve_connections;
        let wanted =
            self.max_connections.unwrap_or(xcomponent_server::DEFAULT_MAX_CONNECTIONS).max(1);
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
            max_per_address: self.max_connections_per_address.max(1),
            header_read_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
            max_new_per_address: self.max_new_connections_per_address,
            new_connection_window: xcomponent_server::NEW_CONNECTION_WINDOW,
        }
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

/// The soft open-files limit of this process (Linux: `/proc/self/limits`; elsewhere unknown).
fn open_files_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    parse_open_files_limit(&limits)
}

fn parse_open_files_limit(limits: &str) -> Option<usize> {
    let line = limits.lines().find(|line| line.starts_with("Max open files"))?;
    line.trim_start_matches("Max open files").split_whitespace().next()?.parse().ok()
}

/// The URL without its password.
pub fn redact(url: &str) -> String {
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
