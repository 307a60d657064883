//! `GET /health` (real liveness: the store is pinged, its commits checked, the bus and runtime
//! checked, each within a time limit), `GET /ready` (the same, for orchestrators) and
//! `GET /api/runtimes` (this process; in distributed mode every runtime on the bus).

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;
use utoipa::ToSchema;
use xcomponent_core::instance::Millis;
use xcomponent_runtime::{RuntimePeer, StoreHealth};

/// Longest the health check waits for the store.
pub const STORE_PING_TIMEOUT: Duration = Duration::from_secs(2);
/// A commit running longer than this makes the store `degraded` (stalled).
pub const STORE_STALL_THRESHOLD: Duration = Duration::from_secs(2);
/// A failed last commit makes the store `degraded` for this long after it (or until a commit
/// succeeds): with no traffic nothing else would tell that a full disk has been freed.
pub const COMMIT_FAILURE_WINDOW: Duration = Duration::from_secs(10);
/// Longest the health check waits for the shards' counters (a shard in a commit answers after it).
pub const SHARD_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);

/// Health report.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    /// `ok`, `degraded` (store stalled, failing or unreachable; shards not answering) or
    /// `shutting_down`.
    pub status: String,
    /// `monolith` (one process hosts every component) or `distributed` (a dashboard over the
    /// runtimes on a bus).
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
    /// Runtimes connected to this server (for a cluster view: the runtimes heard on the bus).
    pub connected_runtimes: usize,
    /// Hosted components.
    pub components: Vec<String>,
    /// Live instances (for a cluster view: as counted from the runtimes' events).
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
    /// For each component it shares with other replicas (`runtime --replicas`): the partition
    /// count and the partitions it owns.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub partitions: BTreeMap<String, PartitionsInfo>,
}

/// The partitions of a shared component one runtime owns.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PartitionsInfo {
    /// The component's partition count.
    pub count: u32,
    /// The partitions owned.
    pub owned: Vec<u32>,
}

/// `{runtimes}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuntimeList {
    /// Known runtimes.
    pub runtimes: Vec<RuntimeInfo>,
}

/// The runtimes this server knows: just this process for a runtime hosting its components here
/// (one entry hosting every component; `componentName` is the first, for the original's
/// clients), or every runtime on the bus for a cluster view.
pub fn runtimes(state: &AppState) -> Vec<RuntimeInfo> {
    let runtime = state.runtime();
    if runtime.is_cluster_view() {
        return runtime.peers().into_iter().map(peer_info).collect();
    }
    let registry = runtime.registry();
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
        last_seen: runtime.clock().now(),
        started_at: state.started_at(),
        local: true,
        partitions: BTreeMap::new(),
    }]
}

/// A runtime seen over the bus.
fn peer_info(peer: RuntimePeer) -> RuntimeInfo {
    RuntimeInfo {
        runtime_id: peer.runtime_id,
        name: peer.name,
        component_name: peer.components.first().cloned().unwrap_or_default(),
        components: peer.components,
        host: peer.host,
        port: peer.port,
        last_seen: peer.last_seen,
        started_at: peer.first_seen,
        local: false,
        partitions: peer
            .partitions
            .into_iter()
            .map(|(component, owned)| {
                (component, PartitionsInfo { count: owned.count, owned: owned.owned })
            })
            .collect(),
    }
}

/// The mode `/health` reports: the configured one, except that a cluster view left at the
/// default `monolith` is `distributed`.
fn mode(state: &AppState) -> String {
    let configured = &state.config().mode;
    if state.runtime().is_cluster_view() && configured == "monolith" {
        "distributed".to_owned()
    } else {
        configured.clone()
    }
}

/// Liveness and configuration. Never waits on the commit path: the store's commits are read from
/// the runtime's commit health (atomics), the store is pinged with a time limit, and the shards
/// are asked for their counters with a time limit.
#[utoipa::path(get, path = "/health", tag = "Operations",
    responses((status = 200, description = "Healthy", body = Health), (status = 503, description = "Store stalled, failing or unreachable, or shutting down", body = Health)))]
pub(crate) async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let body = assess(&state).await;
    let code = if body.status == "ok" { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (code, Json(body))
}

/// Readiness for orchestrators and load balancers.
#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Whether this process should get traffic now.
    pub ready: bool,
    /// Why not, when it should not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Readiness: 200 when requests can be served now, 503 with the reason while the store is
/// stalled, failing or unreachable, or the server is shutting down (the same checks and bounds
/// as `/health`, a smaller body).
#[utoipa::path(get, path = "/ready", tag = "Operations",
    responses((status = 200, description = "Ready", body = Readiness), (status = 503, description = "Not ready", body = Readiness)))]
pub(crate) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let health = assess(&state).await;
    if health.status == "ok" {
        return (StatusCode::OK, Json(Readiness { ready: true, reason: None }));
    }
    let reason = health.error.unwrap_or(health.status);
    (StatusCode::SERVICE_UNAVAILABLE, Json(Readiness { ready: false, reason: Some(reason) }))
}

/// Why the store is not healthy, from the runtime's commit health: a commit running longer than
/// `STORE_STALL_THRESHOLD`, or a last commit that failed within `COMMIT_FAILURE_WINDOW`.
pub(crate) fn commit_problem(health: &StoreHealth) -> Option<String> {
    if let Some(running) = health.oldest_commit
        && running >= STORE_STALL_THRESHOLD
    {
        return Some(format!(
            "store: a commit has been waiting for {:.1} s (stalled)",
            running.as_secs_f64()
        ));
    }
    match &health.last_failure {
        Some((error, ago)) if *ago <= COMMIT_FAILURE_WINDOW => Some(format!(
            "store: {} commit(s) failed in a row, the last {:.1} s ago: {error}",
            health.consecutive_failures,
            ago.as_secs_f64()
        )),
        _ => None,
    }
}

/// The health report.
async fn assess(state: &AppState) -> Health {
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
            let problem = ping.or_else(|| commit_problem(&runtime.store_health()));
            (problem.is_none(), Some(backend.to_owned()), backend != "memory", problem)
        }
        None => (false, None, false, None),
    };
    // (bus connected, connected runtimes, live instances)
    let (connected, connected_runtimes, instances) = if runtime.is_cluster_view() {
        // No shards here: the runtimes are the ones heard on the bus, the instances those
        // counted from their events.
        let peers = runtime.peers().len();
        let live = state.live().snapshot().iter().map(|(_, count)| (*count).max(0) as usize).sum();
        (peers > 0, peers, live)
    } else {
        let stats = match tokio::time::timeout(SHARD_ANSWER_TIMEOUT, runtime.stats()).await {
            Ok(stats) => Some(stats),
            Err(_) => {
                error.get_or_insert_with(|| {
                    format!(
                        "runtime: the shards did not answer within {} ms (busy in a commit)",
                        SHARD_ANSWER_TIMEOUT.as_millis()
                    )
                });
                None
            }
        };
        let answering = stats.as_ref().is_some_and(|stats| !stats.is_empty());
        if stats.as_ref().is_some_and(Vec::is_empty) && error.is_none() {
            error = Some("runtime: no shard answers".to_owned());
        }
        let instances = stats.iter().flatten().map(|shard| shard.instances).sum();
        (answering, usize::from(answering), instances)
    };
    let shutting_down = state.is_shutting_down();
    let status = if shutting_down {
        "shutting_down"
    } else if error.is_some() {
        "degraded"
    } else {
        "ok"
    };
    Health {
        status: status.to_owned(),
        mode: mode(state),
        database,
        database_type,
        persistent,
        broker: state.config().broker.clone(),
        broker_connected: connected,
        connected_runtimes,
        components: runtime
            .registry()
            .components()
            .iter()
            .map(|definition| definition.name.to_string())
            .collect(),
        instances,
        uptime_seconds: (runtime.clock().now() - state.started_at()).max(0) / 1000,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        error,
    }
}

/// The runtimes.
#[utoipa::path(get, path = "/api/runtimes", tag = "Operations", responses((status = 200, body = RuntimeList)))]
pub(crate) async fn list_runtimes(State(state): State<AppState>) -> Json<RuntimeList> {
    Json(RuntimeList { runtimes: runtimes(&state) })
}
