//! The durable floor for `tests/bench/run.sh`: the bare server of `floor.rs` plus the least a
//! durable answer needs. Each request appends one record (the instance id, the event, the time;
//! about the size of a stored Counter event) through a single writer thread that takes every
//! record waiting, writes them with one `write` and one `fdatasync`, and only then answers their
//! requests (group commit). No index, no page, no checksum: what any store that flushes before
//! answering pays on this machine, at least. `serve` with a durable store does this and more.
//!
//! `cargo run --release -p xcomponent-server --example durable_floor -- PORT [FILE]`
//! (FILE defaults to `durable-floor-PID.log` in the temporary directory; it is truncated at start
//! and left in place at exit).

use axum::extract::{Json, Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};

/// Records waiting for the writer before requests wait to enqueue.
const WRITER_QUEUE: usize = 1_024;

/// Most records one group writes.
const GROUP_MAX: usize = 4_096;

/// The body `serve` takes for an event.
#[derive(Deserialize)]
struct EventBody {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    payload: Option<Map<String, Value>>,
}

/// One record and who waits for it to be flushed.
type Append = (Vec<u8>, oneshot::Sender<bool>);

async fn event(
    State(writer): State<mpsc::Sender<Append>>,
    Path(id): Path<String>,
    Json(body): Json<EventBody>,
) -> Result<Json<Value>, StatusCode> {
    let fields = body.payload.map_or(0, |payload| payload.len());
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let record = format!(
        "{{\"instanceId\":\"{id}\",\"event\":\"{}\",\"stateBefore\":\"Counting\",\"stateAfter\":\"Counting\",\"at\":{millis}}}\n",
        body.event_type
    );
    let (flushed, answer) = oneshot::channel();
    writer
        .send((record.into_bytes(), flushed))
        .await
        .map_err(|_| StatusCode::SERVICE_UNAVAILABLE)?;
    match answer.await {
        Ok(true) => Ok(Json(json!({
            "instanceId": id,
            "event": body.event_type,
            "outcome": "transitioned",
            "newState": "Counting",
            "payloadFields": fields,
        }))),
        _ => Err(StatusCode::SERVICE_UNAVAILABLE),
    }
}

/// The writer thread: one write and one flush per group of waiting records.
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
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|port| port.parse().ok()).unwrap_or(3988);
    let path = args.next().map_or_else(
        || std::env::temp_dir().join(format!("durable-floor-{}.log", std::process::id())),
        std::path::PathBuf::from,
    );
    let file = std::fs::File::create(&path)?;
    let (writer, records) = mpsc::channel(WRITER_QUEUE);
    std::thread::Builder::new()
        .name("floor-writer".into())
        .spawn(move || write_groups(file, records))?;
    let app = axum::Router::new()
        .route("/api/instances/{id}/events", post(event))
        .route("/health", get(|| async { "ok" }))
        .with_state(writer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    axum::serve(listener, app).await
}
