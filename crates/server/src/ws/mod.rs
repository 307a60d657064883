//! `GET /ws`: the live feed. On connect the client gets `components_list` and `runtimes_update`,
//! then every runtime event as `{type, data}`. It may narrow the feed with
//! `{type:"subscribe", component?, instanceId?}` (or `?component=&instanceId=` on the URL),
//! widen it again with `{type:"unsubscribe"}`, and `{type:"ping"}` gets `{type:"pong"}`.
//!
//! Each client has its own task and bounded queue (`queue.rs`); a client that cannot keep up
//! gets `slow_consumer` and is closed (code 1013), a client whose socket blocks for
//! `WS_SEND_TIMEOUT` is dropped, and on shutdown every client is closed with 1001.
//!
//! Liveness: a client that sent nothing for `ServerConfig::ws_ping_interval` gets a ping; if it
//! then sends nothing (not even the pong) for `ServerConfig::ws_pong_timeout`, it is closed
//! (1001, "ping not answered") and its slot freed. A message larger than `WS_MAX_INCOMING` is
//! answered with a close frame 1009 ("message too big").
//!
//! Who may connect (Origin, Host, the API token as `?token=` or a bearer header) is checked
//! before this handler, in `guard.rs`.

pub mod hub;
pub mod queue;

use crate::error::{ApiError, ApiQuery, parse_instance_id};
use crate::state::AppState;
use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::SinkExt as _;
use hub::{Filter, Hub, WS_MAX_CLIENTS, components_message};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Longest a single send (or one batch of `WS_SEND_BATCH` queued messages) to a client may block
/// before the client is dropped.
pub const WS_SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Most queued messages written to a client before one flush: under load a client costs one
/// write per batch, not one per message.
pub const WS_SEND_BATCH: usize = 64;

/// Shortest time between two writes to one client, unless `WS_SEND_BATCH` messages are waiting:
/// what is published meanwhile goes out in one write. Fan-out costs a system call per client per
/// write, so without it every event cost one per client (beside 128 idle clients a good client
/// kept under a third of its throughput, see `tests/bench/flood.sh`); the feed is at most this
/// much later.
pub const WS_WRITE_INTERVAL: Duration = Duration::from_millis(50);

/// Read buffer of a client's socket. Clients send small commands (`subscribe`, `ping`); the
/// socket is polled for input each time the task wakes to send, and tungstenite zero-fills its
/// read buffer on each poll, so the 128 KiB default cost a 128 KiB memset per message per idle
/// client (13% of the server's time with 128 idle clients). Larger messages still arrive, over
/// several reads, up to `WS_MAX_INCOMING`.
pub const WS_READ_BUFFER: usize = 4 * 1024;

/// Largest message accepted from a client (bytes); a larger one closes the client with 1009.
pub const WS_MAX_INCOMING: usize = 64 * 1024;

/// Default of `ServerConfig::ws_ping_interval`: silence after which a client gets a ping.
pub const WS_PING_INTERVAL: Duration = Duration::from_secs(20);

/// Default of `ServerConfig::ws_pong_timeout`: how long a pinged client has to answer.
pub const WS_PONG_TIMEOUT: Duration = Duration::from_secs(20);

/// Initial subscription filter.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
    /// Only messages about this component.
    pub component: Option<String>,
    /// Only messages about this instance.
    pub instance_id: Option<String>,
    /// The API token, when the server has one (browsers cannot set headers on a WebSocket).
    #[expect(dead_code, reason = "checked in guard.rs before this handler; listed for OpenAPI")]
    pub token: Option<String>,
}

/// Upgrades to a WebSocket.
#[utoipa::path(get, path = "/ws", tag = "Live", params(WsQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; messages are `{type, data}` JSON texts"),
        (status = 400, description = "Bad filter or not a WebSocket handshake", body = crate::error::ErrorBody),
        (status = 401, description = "The server has an API token and it was not given (or wrong)", body = crate::error::ErrorBody),
        (status = 403, description = "Another web page's origin, or a Host that is not this server", body = crate::error::ErrorBody),
        (status = 503, description = "Too many clients or shutting down", body = crate::error::ErrorBody),
    ))]
pub(crate) async fn upgrade(
    State(state): State<AppState>,
    ApiQuery(query): ApiQuery<WsQuery>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let filter = Filter {
        component: query.component,
        instance: query.instance_id.as_deref().map(parse_instance_id).transpose()?,
    };
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::new(StatusCode::BAD_REQUEST, "not_websocket", rejection.to_string())
    })?;
    if state.is_shutting_down() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        ));
    }
    if state.hub().client_count() >= WS_MAX_CLIENTS {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_clients",
            format!("at most {WS_MAX_CLIENTS} WebSocket clients"),
        ));
    }
    Ok(upgrade
        .max_message_size(WS_MAX_INCOMING)
        .read_buffer_size(WS_READ_BUFFER)
        .on_upgrade(move |socket| serve_client(state, socket, filter)))
}

/// Unregisters the client however its task ends.
struct Registration {
    hub: Arc<Hub>,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(self.id);
    }
}

async fn send(socket: &mut WebSocket, text: Utf8Bytes) -> bool {
    matches!(
        tokio::time::timeout(WS_SEND_TIMEOUT, socket.send(Message::Text(text))).await,
        Ok(Ok(()))
    )
}

/// Waits until `due`, or until `WS_SEND_BATCH` messages are waiting (a fast feed is written in
/// full batches at once, never left to overflow the queue).
async fn gather(client: &hub::Client, due: tokio::time::Instant) {
    while client.queue.len() < WS_SEND_BATCH && tokio::time::Instant::now() < due {
        tokio::select! {
            () = client.queue.wait() => {}
            () = tokio::time::sleep_until(due) => return,
        }
    }
}

/// Writes up to `WS_SEND_BATCH` queued messages, then flushes once; how many were written (0:
/// the queue is empty), or `None` if the client is gone or blocked past `WS_SEND_TIMEOUT`.
async fn send_queued(socket: &mut WebSocket, client: &hub::Client) -> Option<usize> {
    let batch = async {
        let mut written = 0;
        while written < WS_SEND_BATCH
            && let Some(message) = client.queue.pop()
        {
            socket.feed(Message::Text(message.text)).await?;
            written += 1;
        }
        if written > 0 {
            socket.flush().await?;
        }
        Ok::<_, axum::Error>(written)
    };
    tokio::time::timeout(WS_SEND_TIMEOUT, batch).await.ok()?.ok()
}

async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let frame = CloseFrame { code, reason: Utf8Bytes::from_static(reason) };
    let _ = tokio::time::timeout(WS_SEND_TIMEOUT, socket.send(Message::Close(Some(frame)))).await;
}

fn text(kind: &'static str, data: Value) -> Utf8Bytes {
    Utf8Bytes::from(json!({ "type": kind, "data": data }).to_string())
}

async fn serve_client(state: AppState, mut socket: WebSocket, filter: Filter) {
    let hub = state.hub().clone();
    let Some((id, client)) = hub.register(filter) else {
        close(&mut socket, close_code::AGAIN, "too many clients").await;
        return;
    };
    let _registration = Registration { hub, id };
    let mut shutdown = state.shutdown_signal();
    let ping_interval = state.config().ws_ping_interval;
    let pong_timeout = state.config().ws_pong_timeout;
    let greeting = [
        components_message(&state.runtime().registry()).text,
        text("runtimes_update", json!({ "runtimes": crate::health::runtimes(&state) })),
    ];
    for message in greeting {
        if !send(&mut socket, message).await {
            return;
        }
    }
    // When the client was last heard from, and when it was pinged since (if it was).
    let mut heard = tokio::time::Instant::now();
    let mut pinged: Option<tokio::time::Instant> = None;
    let mut written_at: Option<tokio::time::Instant> = None;
    loop {
        if !client.queue.is_empty() {
            if let Some(at) = written_at {
                gather(&client, at + WS_WRITE_INTERVAL).await;
            }
            written_at = Some(tokio::time::Instant::now());
            loop {
                match send_queued(&mut socket, &client).await {
                    None => return,
                    Some(0) => break,
                    Some(_) => {}
                }
            }
        }
        if client.queue.is_slow() {
            let data = json!({ "reason": "client_too_slow", "message": "this connection could not keep up and is closed; reconnect and reload" });
            let _ = send(&mut socket, text("slow_consumer", data)).await;
            close(&mut socket, close_code::AGAIN, "slow consumer").await;
            return;
        }
        if *shutdown.borrow() {
            close(&mut socket, close_code::AWAY, "server shutting down").await;
            return;
        }
        let deadline = match pinged {
            Some(at) => at + pong_timeout,
            None => heard + ping_interval,
        };
        tokio::select! {
            () = client.queue.wait() => {}
            _ = shutdown.changed() => {}
            () = tokio::time::sleep_until(deadline) => {
                if pinged.is_some() {
                    close(&mut socket, close_code::AWAY, "ping not answered").await;
                    return;
                }
                let ping = Message::Ping(axum::body::Bytes::from_static(b"xc"));
                if !matches!(tokio::time::timeout(WS_SEND_TIMEOUT, socket.send(ping)).await, Ok(Ok(()))) {
                    return;
                }
                pinged = Some(tokio::time::Instant::now());
            }
            incoming = socket.recv() => {
                heard = tokio::time::Instant::now();
                pinged = None;
                match incoming {
                    Some(Ok(Message::Text(body))) => {
                        if let Some(reply) = command(&client, body.as_str())
                            && !send(&mut socket, reply).await
                        {
                            return;
                        }
                    }
                    Some(Err(error)) => {
                        if too_big(error) {
                            close(&mut socket, close_code::SIZE, "message too big").await;
                        }
                        return;
                    }
                    Some(Ok(Message::Close(_))) | None => return,
                    Some(Ok(_)) => {}
                }
            }
        }
    }
}

/// Whether a receive error is a message over `WS_MAX_INCOMING`.
fn too_big(error: axum::Error) -> bool {
    matches!(
        error.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(
            tungstenite::error::CapacityError::MessageTooLong { .. }
        ))
    )
}

/// Handles a message from the client; returns the reply.
fn command(client: &hub::Client, body: &str) -> Option<Utf8Bytes> {
    let Ok(message) = serde_json::from_str::<Value>(body) else {
        return Some(text(
            "error",
            json!({ "code": "bad_message", "message": "messages must be JSON objects with a type" }),
        ));
    };
    match message.get("type").and_then(Value::as_str) {
        Some("subscribe") => {
            let component = message
                .get("component")
                .and_then(Value::as_str)
                .filter(|name| !name.is_empty())
                .map(str::to_owned);
            let instance =
                match message.get("instanceId").and_then(Value::as_str).filter(|id| !id.is_empty())
                {
                    Some(id) => match parse_instance_id(id) {
                        Ok(id) => Some(id),
                        Err(error) => {
                            return Some(text(
                                "error",
                                json!({ "code": error.code, "message": error.message }),
                            ));
                        }
                    },
                    None => None,
                };
            client.set_filter(Filter { component: component.clone(), instance });
            Some(text("subscribed", json!({ "component": component, "instanceId": instance })))
        }
        Some("unsubscribe") => {
            client.set_filter(Filter::default());
            Some(text("subscribed", json!({ "component": null, "instanceId": null })))
        }
        Some("ping") => Some(text("pong", json!({}))),
        _ => Some(text(
            "error",
            json!({ "code": "bad_message", "message": "unknown message type; use subscribe, unsubscribe or ping" }),
        )),
    }
}
