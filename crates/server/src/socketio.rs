//! Socket.IO at `/socket.io/`, beside our plain WebSocket `/ws`, for the original's clients (its
//! dashboard, `socket.io-client` apps). On connect a client gets `components_list
//! {components}`; then every runtime event under the same names and with the same data as on
//! `/ws` (`state_change`, `instance_created`, `instance_completed`, `instance_disposed`,
//! `event_ignored`, ...), each carrying `componentName`, and a new `components_list` when the
//! registry grew (a cluster view hearing of a new runtime). `state_change` also carries the
//! original's `instance {id, machineName, currentState, context, status}`.
//!
//! Events go to every client, as the original `serve` did. The original APIServer's room
//! messages are answered for its clients: `subscribe_component(name)` and
//! `subscribe_instance({componentName, instanceId})` reply `subscribed`, and
//! `unsubscribe_component` / `unsubscribe_instance` are accepted; they do not narrow the feed
//! (use `/ws` with a filter for that).
//!
//! Bounds: at most `SOCKETIO_MAX_CLIENTS` clients, each with a queue of
//! `SOCKETIO_CLIENT_BUFFER` packets; a client whose queue is full misses messages (counted in
//! `xcomponent_socketio_dropped_total`), the others are not slowed down. On shutdown every
//! client is disconnected.

use crate::state::AppState;
use crate::ws::hub::{components_message, messages_for};
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::extract::{Data, SocketRef};
use socketioxide::layer::SocketIoLayer;
use tokio::sync::broadcast::error::RecvError;

/// Most Socket.IO clients at once; more are disconnected on arrival.
pub const SOCKETIO_MAX_CLIENTS: usize = 1024;

/// Packets queued per client before it misses messages.
pub const SOCKETIO_CLIENT_BUFFER: usize = 1024;

/// The Socket.IO layer, and the task that feeds it runtime events until shutdown.
pub(crate) fn layer(state: &AppState) -> SocketIoLayer {
    let (layer, io) = SocketIo::builder().max_buffer_size(SOCKETIO_CLIENT_BUFFER).build_layer();
    let on_connect = {
        let state = state.clone();
        move |socket: SocketRef| connect(state.clone(), socket)
    };
    io.ns("/", on_connect);
    tokio::spawn(feed(state.clone(), io));
    layer
}

async fn connect(state: AppState, socket: SocketRef) {
    if socket.broadcast().sockets().len() > SOCKETIO_MAX_CLIENTS {
        tracing::warn!(max = SOCKETIO_MAX_CLIENTS, "Socket.IO client refused: too many clients.");
        let _ = socket.disconnect();
        return;
    }
    let components = components_message(&state.runtime().registry());
    let _ = socket.emit(components.kind, &*components.data);
    socket.on("subscribe_component", async |socket: SocketRef, Data(name): Data<String>| {
        let _ = socket.emit("subscribed", &json!({ "componentName": name }));
    });
    socket.on("subscribe_instance", async |socket: SocketRef, Data(target): Data<Value>| {
        let _ = socket.emit("subscribed", &json!({ "instanceId": target.get("instanceId") }));
    });
    socket.on("unsubscribe_component", async || {});
    socket.on("unsubscribe_instance", async || {});
}

/// Emits each runtime event to every client until the stream closes or the server shuts down.
async fn feed(state: AppState, io: SocketIo) {
    let mut events = state.runtime().subscribe();
    let mut shutdown = state.shutdown_signal();
    let dropped = state.metrics().counter("xcomponent_socketio_dropped_total", &[]);
    let mut announced = state.runtime().registry().components().len();
    loop {
        let batch = tokio::select! {
            received = events.recv() => match received {
                Ok(batch) => batch,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "Socket.IO feed fell behind the runtime event stream.");
                    dropped.increment(missed);
                    continue;
                }
                Err(RecvError::Closed) => break,
            },
            // The current value first: the feed may first run after the shutdown began.
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        if io.sockets().is_empty() {
            continue;
        }
        let registry = state.runtime().registry();
        if registry.components().len() > announced {
            // A cluster view appended components: clients get the new list before their events.
            announced = registry.components().len();
            let components = components_message(&registry);
            if io.emit(components.kind, &*components.data).await.is_err() {
                dropped.increment(1);
            }
        }
        for message in batch.iter().flat_map(|event| messages_for(&registry, event)) {
            let data = with_instance(message.kind, &message.data);
            if io.emit(message.kind, &data).await.is_err() {
                dropped.increment(1);
            }
        }
    }
    io.close().await;
}

/// The original's `state_change` carries the instance itself; the other events go as they are.
fn with_instance(kind: &str, data: &Value) -> Value {
    let mut data = data.clone();
    if kind == "state_change"
        && let Value::Object(map) = &mut data
    {
        let instance = json!({
            "id": map.get("instanceId"),
            "machineName": map.get("machineName"),
            "currentState": map.get("newState"),
            "context": map.get("context"),
            "status": map.get("status"),
        });
        map.insert("instance".to_owned(), instance);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_change_carries_the_instance_as_the_original() {
        let data = json!({"instanceId": "i1", "machineName": "Order", "previousState": "A",
            "newState": "B", "context": {"k": 1}, "status": "active", "componentName": "C"});
        let sent = with_instance("state_change", &data);
        assert_eq!(sent["instance"]["id"], "i1");
        assert_eq!(sent["instance"]["currentState"], "B");
        assert_eq!(sent["instance"]["context"]["k"], 1);
        assert_eq!(sent["componentName"], "C");
        assert_eq!(with_instance("instance_created", &data), data);
    }
}
