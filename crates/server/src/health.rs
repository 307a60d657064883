//! `GET /health` (real liveness: the store is pinged, the bus and runtime are checked) and
//! `GET /api/runtimes` (this process; in distributed mode every runtime on the bus).

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use std::time::Duration;
use utoipa::ToSchema;
use xcomponent_core::instance::Millis;

/// Longest the health check waits for the store.
pub const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Health report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`, `degraded` (store unreachable) or `shutting_down`.
    pub status: String,
    /// `monolith` (one process hosts every component).
    pub mode: String,
    /// The store answers (history and audit trail available).
    pub database: bool,
    /// Store backend (`sqlite`, `postgres`, `redis`, `memory`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_type: Option<String>,
    /// Data survives a restart.
    pub persistent: bool,
    /// Bus URL scheme (`memory`).
    pub broker: String,
    /// The bus is connected.
    pub broker_connected: bool,
    /// Runtimes connected to this server.
    pub connected_runtimes: usize,
    /// Hosted components.
    pub components: Vec<String>,
    /// Live instances.
    pub instances: usize,
    /// Seconds since start.
    pub uptime_seconds: i64,
    /// Server version.
    pub version: String,
    /// Why the status is not `ok`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One runtime.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeInfo {
    /// Runtime id (one per process start).
    pub runtime_id: String,
    /// Runtime name (`RUNTIME_NAME`, or `runtime-<start ms>`).
    pub name: String,
    /// The first hosted component (the original's runtimes hosted one each).
    pub component_name: String,
    /// Every component of this runtime.
    pub components: Vec<String>,
    /// Host.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Last heartbeat (ms since epoch; now for this process).
    pub last_seen: Millis,
    /// Start time (ms since epoch).
    pub started_at: Millis,
    /// Whether this is the answering process.
    pub local: bool,
}

/// `{runtimes}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuntimeList {
    /// Known runtimes.
    pub runtimes: Vec<RuntimeInfo>,
}

/// The runtimes this server knows: just this process with the in-memory bus (one entry hosting
/// every component; `componentName` is the first, for the original's clients).
pub fn runtimes(state: &AppState) -> Vec<RuntimeInfo> {
    let registry = state.runtime().registry();
    let names: Vec<String> =
        registry.components().iter().map(|definition| definition.name.to_string()).collect();
    vec![RuntimeInfo {
        runtime_id: state.runtime_id().to_string(),
        name: state
            .config()
            .runtime_name
            .clone()
            .unwrap_or_else(|| format!("runtime-{}", state.started_at())),
        component_name: names.first().cloned().unwrap_or_default(),
        components: names,
        host: state.config().host.clone(),
        port: state.config().port,
        last_seen: state.runtime().clock().now(),
        started_at: state.started_at(),
        local: true,
    }]
}

/// Liveness and configuration.
#[utoipa::path(get, path = "/health", tag = "Operations",
    responses((status = 200, description = "Healthy", body = Health), (status = 503, description = "Store unreachable or shutting down", body = Health)))]
pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let runtime = state.runtime();
    let (database, database_type, persistent, mut error) = match runtime.store() {
        Some(store) => {
            let backend = store.backend();
            let ping = match tokio::time::timeout(STORE_PING_TIMEOUT, store.ping()).await {
                Ok(Ok(())) => None,
                Ok(Err(error)) => Some(format!("store: {error}")),
                Err(_) => {
                    Some(format!("store: no answer within {} s", STORE_PING_TIMEOUT.as_secs()))
                }
            };
            (ping.is_none(), Some(backend.to_owned()), backend != "memory", ping)
        }
        None => (false, None, false, None),
    };
    let stats = runtime.stats().await;
    if stats.is_empty() && error.is_none() {
        error = Some("runtime: no shard answers".to_owned());
    }
    let shutting_down = state.is_shutting_down();
    let status = if shutting_down {
        "shutting_down"
    } else if error.is_some() {
        "degraded"
    } else {
        "ok"
    };
    let code = if status == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = Health {
        status: status.to_owned(),
        mode: state.config().mode.clone(),
        database,
        database_type,
        persistent,
        broker: state.config().broker.clone(),
        broker_connected: !stats.is_empty(),
        connected_runtimes: usize::from(!stats.is_empty()),
        components: runtime
            .registry()
            .components()
            .iter()
            .map(|definition| definition.name.to_string())
            .collect(),
        instances: stats.iter().map(|shard| shard.instances).sum(),
        uptime_seconds: (runtime.clock().now() - state.started_at()).max(0) / 1000,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        error,
    };
    (code, Json(body))
}

/// The runtimes.
#[utoipa::path(get, path = "/api/runtimes", tag = "Operations", responses((status = 200, body = RuntimeList)))]
pub(crate) async fn list_runtimes(State(state): State<AppState>) -> Json<RuntimeList> {
    Json(RuntimeList { runtimes: runtimes(&state) })
}
