//! The WebSocket feed over a real socket: greeting, runtime events, subscription filters,
//! client commands, shutdown.

mod common;

use common::TestServer;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(server: &TestServer, query: &str) -> Socket {
    let (socket, _) =
        connect_async(format!("ws://{}/ws{query}", server.addr)).await.expect("websocket connects");
    socket
}

/// The next JSON text message (skipping pings), or None on close/timeout.
async fn next(socket: &mut Socket) -> Option<Value> {
    loop {
        let message = tokio::time::timeout(common::WAIT, socket.next()).await.ok()??.ok()?;
        match message {
            Message::Text(text) => return serde_json::from_str(text.as_str()).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// Reads messages until one of `kind` satisfies `matches`; returns it and everything before.
async fn until(
    socket: &mut Socket,
    kind: &str,
    matches: impl Fn(&Value) -> bool,
) -> (Value, Vec<Value>) {
    let mut before = Vec::new();
    while let Some(message) = next(socket).await {
        if message["type"] == kind && matches(&message["data"]) {
            return (message, before);
        }
        before.push(message);
    }
    panic!("no {kind} message; got {before:?}");
}

async fn send(socket: &mut Socket, value: Value) {
    socket.send(Message::Text(value.to_string().into())).await.expect("send");
}

#[tokio::test]
async fn greeting_then_live_events() {
    let server = TestServer::standard().await;
    let mut socket = connect(&server, "").await;
    let first = next(&mut socket).await.expect("components_list");
    assert_eq!(first["type"], "components_list");
    assert_eq!(first["data"]["components"].as_array().map(Vec::len), Some(3));
    assert!(first["data"]["components"][0]["stateMachines"].is_array());
    let second = next(&mut socket).await.expect("runtimes_update");
    assert_eq!(second["type"], "runtimes_update");
    assert_eq!(second["data"]["runtimes"].as_array().map(Vec::len), Some(1));

    let body = json!({"machineName": "Order", "context": {"orderId": "W1", "amount": 5}});
    let (status, created) =
        server.http("POST", "/api/components/OrderComponent/instances", Some(&body)).await;
    assert_eq!(status, 201, "{created}");
    let order = created["instanceId"].as_str().expect("id").to_owned();
    let (message, _) =
        until(&mut socket, "instance_created", |data| data["instanceId"] == order.as_str()).await;
    assert_eq!(message["data"]["componentName"], "OrderComponent");
    assert_eq!(message["data"]["currentState"], "Created");
    assert_eq!(message["data"]["context"]["orderId"], "W1");

    server
        .http("POST", &format!("/api/instances/{order}/events"), Some(&json!({"type": "CANCEL"})))
        .await;
    let (change, _) =
        until(&mut socket, "state_change", |data| data["instanceId"] == order.as_str()).await;
    assert_eq!(change["data"]["previousState"], "Created");
    assert_eq!(change["data"]["newState"], "Cancelled");
    assert_eq!(change["data"]["event"], "CANCEL");
    let (completed, _) =
        until(&mut socket, "instance_completed", |data| data["instanceId"] == order.as_str()).await;
    assert_eq!(completed["data"]["finalState"], "Cancelled");
    assert_eq!(completed["data"]["status"], "completed");
    until(&mut socket, "instance_disposed", |data| data["instanceId"] == order.as_str()).await;

    server
        .http(
            "POST",
            &format!("/api/instances/{}/events", uuid::Uuid::now_v7()),
            Some(&json!({"type": "X"})),
        )
        .await;
    server.stop().await;
}

#[tokio::test]
async fn subscription_filters_and_commands() {
    let server = TestServer::standard().await;
    let mut socket = connect(&server, "").await;
    next(&mut socket).await;
    next(&mut socket).await;
    send(&mut socket, json!({"type": "subscribe", "component": "PaymentComponent"})).await;
    let (ack, _) = until(&mut socket, "subscribed", |_| true).await;
    assert_eq!(ack["data"]["component"], "PaymentComponent");

    let body = json!({"machineName": "Order", "context": {"orderId": "W2", "amount": 9}});
    let (_, created) =
        server.http("POST", "/api/components/OrderComponent/instances", Some(&body)).await;
    let order = created["instanceId"].as_str().expect("id").to_owned();
    server
        .http("POST", &format!("/api/instances/{order}/events"), Some(&json!({"type": "SUBMIT"})))
        .await;
    let (payment, before) =
        until(&mut socket, "instance_created", |data| data["componentName"] == "PaymentComponent")
            .await;
    assert_eq!(payment["data"]["context"]["orderId"], "W2");
    assert!(
        before.iter().all(|message| message["data"]["componentName"] != "OrderComponent"),
        "{before:?}"
    );

    // Narrow to one instance: only its messages arrive.
    let payment_id = payment["data"]["instanceId"].as_str().expect("payment id").to_owned();
    send(&mut socket, json!({"type": "subscribe", "instanceId": payment_id})).await;
    until(&mut socket, "subscribed", |_| true).await;
    server
        .http(
            "POST",
            &format!("/api/instances/{payment_id}/events"),
            Some(&json!({"type": "PROCESS"})),
        )
        .await;
    let (change, before) = until(&mut socket, "state_change", |_| true).await;
    assert_eq!(change["data"]["instanceId"], payment_id.as_str());
    assert!(before.is_empty(), "{before:?}");

    send(&mut socket, json!({"type": "ping"})).await;
    until(&mut socket, "pong", |_| true).await;
    send(&mut socket, json!({"type": "dance"})).await;
    let (error, _) = until(&mut socket, "error", |_| true).await;
    assert_eq!(error["data"]["code"], "bad_message");
    socket.send(Message::Text("not json".into())).await.expect("send");
    until(&mut socket, "error", |_| true).await;
    send(&mut socket, json!({"type": "subscribe", "instanceId": "nope"})).await;
    let (error, _) = until(&mut socket, "error", |_| true).await;
    assert_eq!(error["data"]["code"], "invalid_id");
    send(&mut socket, json!({"type": "unsubscribe"})).await;
    let (ack, _) = until(&mut socket, "subscribed", |_| true).await;
    assert_eq!(ack["data"]["component"], Value::Null);
    server.stop().await;
}

#[tokio::test]
async fn url_filter_and_bad_handshakes() {
    let server = TestServer::standard().await;
    let mut socket = connect(&server, "?component=HelpDesk").await;
    next(&mut socket).await;
    next(&mut socket).await;
    let body = json!({"machineName": "Order", "context": {"orderId": "W3"}});
    server.http("POST", "/api/components/OrderComponent/instances", Some(&body)).await;
    let (_, page) = server.http("GET", "/api/components/HelpDesk/instances", None).await;
    let desk = page["items"][0]["id"].as_str().expect("desk").to_owned();
    server
        .http("POST", &format!("/api/instances/{desk}/events"), Some(&json!({"type": "TICKET"})))
        .await;
    let (change, before) = until(&mut socket, "state_change", |_| true).await;
    assert_eq!(change["data"]["componentName"], "HelpDesk");
    assert!(before.is_empty(), "the order's creation is filtered out: {before:?}");

    let (status, body) = server.http("GET", "/ws?instanceId=bad", None).await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = server.http("GET", "/ws", None).await;
    assert_eq!(status, 400, "a plain GET is not a handshake: {body}");
    assert_eq!(body["code"], "not_websocket");
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_clients_with_going_away() {
    let server = TestServer::standard().await;
    let mut socket = connect(&server, "").await;
    next(&mut socket).await;
    next(&mut socket).await;
    server.state.begin_shutdown();
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Close(frame) = message {
                return frame.map(|frame| u16::from(frame.code));
            }
        }
        None
    })
    .await
    .expect("closed in time");
    assert_eq!(close, Some(1001));
    server.stop().await;
}
