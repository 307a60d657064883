//! xcomponent-server: the one HTTP server of xcomponent-ai. REST API (the original's paths and
//! JSON shapes, its APIServer's routes as aliases), WebSocket live feed, Socket.IO for the
//! original's clients, OpenAPI document and Swagger UI, health, Prometheus metrics, inbound
//! webhooks (signed with HMAC-SHA256: `webhook_signature`) and the embedded dashboard, all on
//! one port.
//!
//! The server is an axum [`Router`] over a runtime behind `RuntimeApi` (a running runtime's
//! handle, or a cluster view over runtimes in other processes); [`serve`] runs it on a
//! listener within the connection bounds of [`ConnectionLimits`] (not run as a doc test: it
//! binds a port and serves until stopped).
//!
//! ```no_run
//! # async fn demo(runtime: xcomponent_runtime::RuntimeHandle) -> std::io::Result<()> {
//! use xcomponent_server::{serve, AppState, ServerConfig};
//! let state = AppState::new(std::sync::Arc::new(runtime), ServerConfig::default()).await;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! serve(listener, state, std::future::pending()).await
//! # }
//! ```
//!
//! Errors are one type, [`ApiError`] (JSON `{error, code, message, field?}`).

mod auth;
mod dashboard;
mod deadline;
mod dto;
mod error;
mod guard;
mod health;
mod idempotency;
mod integers;
mod listen;
mod live;
mod metrics;
mod openapi;
mod routes;
mod schemas;
mod signature;
mod socketio;
mod state;
mod stream;
mod timed_store;
mod ws;

pub use dashboard::embedded as dashboard_embedded;
pub use deadline::REQUEST_TIMEOUT;
pub use error::{ApiError, ErrorBody};
pub use guard::TOKEN_QUERY_PARAMETER;
pub use idempotency::{
    IDEMPOTENCY_KEY_HEADER, IDEMPOTENCY_KEY_MAX_LEN, IDEMPOTENCY_MAX_KEYS, IDEMPOTENCY_WINDOW,
    IDEMPOTENT_REPLAYED_HEADER,
};
pub use listen::{
    ACCEPT_ERROR_BACKOFF, ConnectionLimits, DEFAULT_HEADER_READ_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_MAX_NEW_CONNECTIONS_PER_ADDRESS,
    DEFAULT_RESERVE_CONNECTIONS, MAX_RATE_TRACKED_ADDRESSES, NEW_CONNECTION_WINDOW, serve,
};
pub use metrics::Metrics;
pub use routes::webhooks::CORRELATION_MAX_LISTED;
pub use signature::{WEBHOOK_SIGNATURE_HEADER, WEBHOOK_SIGNATURE_TOLERANCE, webhook_signature};
pub use socketio::{SOCKETIO_CLIENT_BUFFER, SOCKETIO_MAX_CLIENTS};
pub use state::{AppState, Cors, DEFAULT_BODY_LIMIT, ServerConfig};
pub use timed_store::{STORE_READ_TIMEOUT, TimedStore};
pub use ws::hub::WS_MAX_CLIENTS;
pub use ws::queue::{WS_CLIENT_QUEUE, WS_COALESCE_AFTER};
pub use ws::{WS_MAX_INCOMING, WS_PING_INTERVAL, WS_PONG_TIMEOUT};

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use axum::routing::get;
use tower::ServiceBuilder;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

/// The server: every route, the dashboard, and the middleware (auth, metrics, body limit,
/// tracing, CORS). The only way the server is built.
///
/// Only the middleware that needs the matched route (`around_routes`: metrics by route
/// template) and CORS when it is on are route layers: axum wraps each route in every route
/// layer, and clones each wrapping (a boxed service) for every request. The rest wraps the
/// whole router once.
pub fn router(state: AppState) -> Router {
    let (api, document) = routes::api().split_for_parts();
    let config = state.config();
    let document =
        openapi::finish(document, config.token.is_some(), config.webhook_secret.is_some());
    let mut routes = api
        .merge(openapi::docs(document))
        .route("/", get(dashboard::index))
        .route("/dashboard.html", get(dashboard::index))
        .fallback(dashboard::fallback)
        .method_not_allowed_fallback(dashboard::method_not_allowed)
        .layer(from_fn_with_state(state.clone(), around_routes));
    // CORS is off unless configured: a route layer then costs nothing by default.
    if let Some(cors) = cors_layer(&state.config().cors) {
        routes = routes.layer(cors);
    }
    let routes: Router = routes.with_state(state.clone());
    // Outermost first. Socket.IO answers `/socket.io/` itself and hands every other request
    // on; outside it, the Host, Origin and token checks and the framing headers (`guard.rs`)
    // cover every route.
    let wrapped = ServiceBuilder::new()
        .layer(from_fn_with_state(state.clone(), guard::check))
        .layer(socketio::layer(&state))
        // Its spans and events are at DEBUG: when that level is off for it (the default), the
        // layer would only read the clock and wrap every response body for nothing.
        .option_layer(tracing::enabled!(target: "tower_http::trace", tracing::Level::DEBUG).then(
            || {
                ServiceBuilder::new()
                    .map_response(|response: Response<_>| response.map(Body::new))
                    .layer(TraceLayer::new_for_http())
            },
        ))
        .layer(DefaultBodyLimit::max(state.config().body_limit))
        .service(routes);
    Router::new().fallback_service(wrapped)
}

/// The middleware of every route, in one layer (each `from_fn` layer costs a boxed future and a
/// service clone per request): the HTTP metrics, around the token check (`auth.rs`), around the
/// deadline (`deadline.rs`).
async fn around_routes(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let timer = metrics::HttpTimer::start(&request);
    let response = match auth::refusal(&state, &request) {
        Some(refused) => refused,
        None => deadline::bound(&state, next.run(request)).await,
    };
    timer.finish(state.metrics(), &response);
    response
}

fn cors_layer(cors: &Cors) -> Option<CorsLayer> {
    let origins = match cors {
        Cors::Off => return None,
        Cors::Any => AllowOrigin::any(),
        Cors::Origins(list) => {
            AllowOrigin::list(list.iter().filter_map(|origin| HeaderValue::from_str(origin).ok()))
        }
    };
    Some(
        CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE, Method::OPTIONS])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION]),
    )
}
