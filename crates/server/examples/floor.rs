//! The HTTP floor for `tests/bench/run.sh`: a bare axum server with the route shape of
//! `POST /api/instances/{id}/events` that parses the same JSON body and answers a small JSON
//! object, without a runtime behind it. What `serve` does per request beyond this is the cost of
//! the runtime, the store and our middleware.
//!
//! `cargo run --release -p xcomponent-server --example floor -- PORT`

use axum::extract::{Json, Path};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The body `serve` takes for an event.
#[derive(Deserialize)]
struct EventBody {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    payload: Option<Map<String, Value>>,
}

async fn event(Path(id): Path<String>, Json(body): Json<EventBody>) -> Json<Value> {
    let fields = body.payload.map_or(0, |payload| payload.len());
    Json(json!({
        "instanceId": id,
        "event": body.event_type,
        "outcome": "transitioned",
        "newState": "Counting",
        "payloadFields": fields,
    }))
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::args().nth(1).and_then(|port| port.parse().ok()).unwrap_or(3989);
    let app = axum::Router::new()
        .route("/api/instances/{id}/events", post(event))
        .route("/health", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
