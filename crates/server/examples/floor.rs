//! The HTTP floors for `tests/bench/run.sh`: a bare axum server with the route shape of
//! `POST /api/instances/{id}/events` that parses the same JSON body and answers a small JSON
//! object, without a runtime behind it. What `serve` does per request beyond this is the cost of
//! the runtime, the store and our middleware.
//!
//! With `--durable FILE` it is the durable floor: the least a flushed answer needs. Each request
//! appends one record (the instance id, the event, the time; about the size of a stored Counter
//! event) through a single writer thread that takes every record waiting, writes them with one
//! `write` and one `fdatasync`, and only then answers their requests (group commit). No page, no
//! index, no checksum: what any store that flushes before answering pays on this machine, at
//! least. FILE is truncated at start and left in place at exit.
//!
//! `cargo run --release -p xcomponent-server --example floor -- PORT [--durable FILE]`

use axum::extract::{Json, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Records waiting for the durable floor's writer before requests wait to enqueue.
const WRITER_QUEUE: usize = 1_024;

/// Most records one group of the durable floor writes.
const GROUP_MAX: usize = 4_096;

/// The body `serve` takes for an event.
#[derive(Deserialize)]
struct EventBody {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    payload: Option<Map<String, Value>>,
}

/// One record and who waits for it to be flushed (`true` once it is).
type Append = (Vec<u8>, oneshot::Sender<bool>);

/// The answer both floors give.
fn answer(id: &str, body: EventBody) -> Json<Value> {
    let fields = body.payload.map_or(0, |payload| payload.len());
    Json(json!({
        "instanceId": id,
        "event": body.event_type,
        "outcome": "transitioned",
        "newState": "Counting",
        "payloadFields": fields,
    }))
}

async fn event(Path(id): Path<String>, Json(body): Json<EventBody>) -> Json<Value> {
    answer(&id, body)
}

async fn durable_event(
    State(writer): State<mpsc::Sender<Append>>,
    Path(id): Path<String>,
    Json(body): Json<EventBody>,
) -> Result<Json<Value>, StatusCode> {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let record = format!(
        "{{\"instanceId\":\"{id}\",\"event\":\"{}\",\"stateBefore\":\"Counting\",\"stateAfter\":\"Counting\",\"at\":{millis}}}\n",
        body.event_type
    );
    let (flushed, reply) = oneshot::channel();
    writer
        .send((record.into_bytes(), flushed))
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    match reply.await {
        Ok(true) => Ok(answer(&id, body)),
        _ => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// The durable floor's writer thread: one write and one flush per group of waiting records.
fn write_groups(mut file: std::fs::File, mut records: mpsc::Receiver<Append>) {
    let mut group: Vec<Append> = Vec::with_capacity(GROUP_MAX);
    let mut bytes = Vec::new();
    while let Some(first) = records.blocking_recv() {
        group.push(first);
        while group.len() < GROUP_MAX {
            match records.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        bytes.clear();
        for (record, _) in &group {
            bytes.extend_from_slice(record);
        }
        let flushed = file.write_all(&bytes).and_then(|()| file.sync_data()).is_ok();
        for (_, reply) in group.drain(..) {
            let _ = reply.send(flushed);
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let port: u16 = args.first().and_then(|port| port.parse().ok()).unwrap_or(3989);
    let durable = match args.get(1).map(String::as_str) {
        Some("--durable") => match args.get(2) {
            Some(path) => Some(std::fs::File::create(path)?),
            None => return Err(std::io::Error::other("--durable needs a FILE")),
        },
        Some(other) => return Err(std::io::Error::other(format!("unknown argument {other}"))),
        None => None,
    };
    let routes = axum::Router::new().route("/health", get(|| async { "ok" }));
    let app = match durable {
        None => routes.route("/api/instances/{id}/events", post(event)),
        Some(file) => {
            let (writer, records) = mpsc::channel(WRITER_QUEUE);
            std::thread::Builder::new()
                .name("floor-writer".into())
                .spawn(move || write_groups(file, records))?;
            routes.route("/api/instances/{id}/events", post(durable_event).with_state(writer))
        }
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
