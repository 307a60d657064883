//! The server's shared state (`AppState`) and settings (`ServerConfig`).
//!
//! `AppState::new` subscribes to the runtime's event stream and starts the one task that feeds
//! the metrics, the live-instance counts and the WebSocket hub (see `stream.rs`). Call
//! `begin_shutdown` to stop that task and close every WebSocket with "going away".

use crate::idempotency::Idempotency;
use crate::listen::ConnectionLimits;
use crate::live::LiveCounts;
use crate::metrics::Metrics;
use crate::ws::hub::Hub;
use crate::ws::{WS_PING_INTERVAL, WS_PONG_TIMEOUT};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;
use xcomponent_core::instance::Millis;
use xcomponent_runtime::RuntimeApi;

/// Default largest accepted request body (bytes).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Cross-origin requests policy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Cors {
    /// No CORS headers (browsers only allow same-origin calls). The default.
    #[default]
    Off,
    /// Any origin (`*`).
    Any,
    /// These origins only (`https://app.example.com`).
    Origins(Vec<String>),
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// When set, every mutating route requires `Authorization: Bearer <token>` (webhooks also
    /// take a signature instead: `webhook_secret`).
    pub token: Option<String>,
    /// When set, a webhook (`/webhooks/...`) needs `X-Xcomponent-Signature`, an HMAC-SHA256 of
    /// its body keyed with this secret, or the API token (`--webhook-secret`).
    pub webhook_secret: Option<String>,
    /// CORS policy.
    pub cors: Cors,
    /// Largest request body accepted (bytes); larger ones get 413.
    pub body_limit: usize,
    /// Deployment mode reported by `/health` (`monolith`; for a cluster view the default is
    /// reported as `distributed`).
    pub mode: String,
    /// Bus URL reported by `/health` and `/api/runtimes` (`memory`).
    pub broker: String,
    /// Host name this server is reachable at (reported by `/api/runtimes`).
    pub host: String,
    /// Port this server listens on (reported by `/api/runtimes`).
    pub port: u16,
    /// Where metrics are recorded (share it with a `TimedStore` to get store latencies).
    pub metrics: Metrics,
    /// Name of this runtime in `/api/runtimes` (`RUNTIME_NAME`; default `runtime-<start ms>`).
    pub runtime_name: Option<String>,
    /// Host names accepted in `Host` besides localhost and loopback addresses, when the server
    /// is bound to a loopback address (`--allow-host`).
    pub allowed_hosts: Vec<String>,
    /// Connection bounds of [`crate::serve`].
    pub connections: ConnectionLimits,
    /// A WebSocket client that sent nothing for this long gets a ping.
    pub ws_ping_interval: Duration,
    /// A WebSocket client that sends nothing (not even a pong) this long after a ping is closed.
    pub ws_pong_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            token: None,
            webhook_secret: None,
            cors: Cors::Off,
            body_limit: DEFAULT_BODY_LIMIT,
            mode: "monolith".to_owned(),
            broker: "memory".to_owned(),
            host: "127.0.0.1".to_owned(),
            runtime_name: None,
            port: 0,
            metrics: Metrics::new(),
            allowed_hosts: Vec::new(),
            connections: ConnectionLimits::default(),
            ws_ping_interval: WS_PING_INTERVAL,
            ws_pong_timeout: WS_PONG_TIMEOUT,
        }
    }
}

/// Everything handlers share (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub runtime: Arc<dyn RuntimeApi>,
    pub config: ServerConfig,
    pub live: Arc<LiveCounts>,
    pub hub: Arc<Hub>,
    pub runtime_id: Uuid,
    pub started_at: Millis,
    pub shutdown: watch::Sender<bool>,
    pub idempotency: Idempotency,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("runtime_id", &self.inner.runtime_id)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the state over a runtime (`Arc::new(handle)` for a runtime in this process, or a
    /// cluster view) and starts the stream task. Must be called inside a Tokio runtime.
    pub async fn new(runtime: Arc<dyn RuntimeApi>, config: ServerConfig) -> AppState {
        let (shutdown, _) = watch::channel(false);
        let receiver = runtime.subscribe();
        let live = Arc::new(LiveCounts::default());
        live.replace(crate::live::scan(runtime.as_ref()).await);
        let hub = Arc::new(Hub::new(config.metrics.clone()));
        let started_at = runtime.clock().now();
        let state = AppState {
            inner: Arc::new(Inner {
                runtime,
                config,
                live,
                hub,
                runtime_id: Uuid::now_v7(),
                started_at,
                shutdown,
                idempotency: Idempotency::default(),
            }),
        };
        tokio::spawn(crate::stream::run(state.clone(), receiver, state.inner.shutdown.subscribe()));
        state
    }

    /// The runtime (in this process, or a view over runtimes in other processes).
    pub fn runtime(&self) -> &Arc<dyn RuntimeApi> {
        &self.inner.runtime
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.config.metrics
    }

    /// This process's runtime id (reported by `/api/runtimes`).
    pub fn runtime_id(&self) -> Uuid {
        self.inner.runtime_id
    }

    /// When the server state was built (ms since epoch).
    pub fn started_at(&self) -> Millis {
        self.inner.started_at
    }

    pub(crate) fn live(&self) -> &Arc<LiveCounts> {
        &self.inner.live
    }

    pub(crate) fn hub(&self) -> &Arc<Hub> {
        &self.inner.hub
    }

    /// The webhooks' memory of idempotency keys.
    pub(crate) fn idempotency(&self) -> &Idempotency {
        &self.inner.idempotency
    }

    /// A receiver that turns `true` when the server starts shutting down.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Stops the stream task and closes every WebSocket ("going away"). Idempotent.
    pub fn begin_shutdown(&self) {
        let _ = self.inner.shutdown.send(true);
    }

    /// Whether `begin_shutdown` was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.inner.shutdown.borrow()
    }

    /// Sets the live-instance and WebSocket gauges from the current counts.
    pub(crate) fn refresh_gauges(&self) {
        let registry = self.runtime().registry();
        let metrics = self.metrics();
        for ((component, machine, state), count) in self.live().snapshot() {
            // A component announced after this registry was read waits for the next refresh.
            let Some(definition) = registry.components().get(usize::from(component)) else {
                continue;
            };
            let machine_def = definition.machine(machine);
            let labels = [
                ("component", definition.name.to_string()),
                ("machine", machine_def.name.to_string()),
                ("state", machine_def.state(state).name.to_string()),
            ];
            metrics.gauge("xcomponent_live_instances", &labels).set(count.max(0) as f64);
        }
        metrics.gauge("xcomponent_ws_clients", &[]).set(self.hub().client_count() as f64);
    }
}
