//! The server over a `RuntimeApi` that is not a `RuntimeHandle`: a small fake standing in for the
//! distributed dashboard's cluster view. It proves that a component appended to the registry
//! after the server started is listed and its events reach `/ws`, that a request handed over
//! without an outcome (`RuntimeError::Accepted`) answers 202, and that a cluster view lists the
//! runtimes it heard of in `/api/runtimes` and `/health`.

mod common;

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use tower::ServiceExt;
use xcomponent_core::clock::{Clock, SystemClock};
use xcomponent_core::instance::{EventId, InstanceId};
use xcomponent_core::message::{DeadLetter, MessageId};
use xcomponent_core::store::EventStore;
use xcomponent_runtime::{
    CreateRequest, DrawId, EventBatch, InstanceFilter, InstanceView, MessageCounts,
    OwnedPartitions, Registry, RuntimeApi, RuntimeError, RuntimeEvent, RuntimePeer, SendOutcome,
    SendRequest, StoreHealth,
};
use xcomponent_server::{AppState, ServerConfig, router};

/// A view whose registry grows on demand, whose requests are all "handed over", and which knows
/// of the peers it is given.
#[derive(Debug)]
struct FakeView {
    registry: Mutex<Arc<Registry>>,
    events: broadcast::Sender<EventBatch>,
    peers: Vec<RuntimePeer>,
    cluster: bool,
    created: InstanceId,
    message: MessageId,
}

impl FakeView {
    fn new(yamls: &[&str], peers: Vec<RuntimePeer>, cluster: bool) -> FakeView {
        let definitions = yamls.iter().map(|yaml| Arc::new(common::definition(yaml))).collect();
        let registry = Registry::new(definitions).expect("registry");
        FakeView {
            registry: Mutex::new(Arc::new(registry)),
            events: broadcast::channel(64).0,
            peers,
            cluster,
            created: InstanceId::draw(),
            message: MessageId::draw(),
        }
    }

    /// Appends a component, as a cluster view does when a runtime announces it.
    fn grow(&self, yaml: &str) -> u16 {
        let mut registry = self.registry.lock().expect("registry lock");
        let mut components = registry.components().to_vec();
        components.push(Arc::new(common::definition(yaml)));
        let index = u16::try_from(components.len() - 1).expect("index");
        *registry = Arc::new(Registry::new(components).expect("registry"));
        index
    }
}

#[async_trait]
impl RuntimeApi for FakeView {
    fn registry(&self) -> Arc<Registry> {
        self.registry.lock().expect("registry lock").clone()
    }
    fn store(&self) -> Option<Arc<dyn EventStore>> {
        None
    }
    fn clock(&self) -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }
    async fn instance(&self, _id: InstanceId) -> Option<InstanceView> {
        None
    }
    async fn instances(&self, _filter: InstanceFilter) -> Vec<InstanceView> {
        Vec::new()
    }
    async fn create(&self, _request: CreateRequest) -> Result<InstanceId, RuntimeError> {
        Err(RuntimeError::Accepted { message_id: self.message, instance_id: Some(self.created) })
    }
    async fn send(&self, _request: SendRequest) -> Result<SendOutcome, RuntimeError> {
        Err(RuntimeError::Accepted { message_id: self.message, instance_id: None })
    }
    fn subscribe(&self) -> broadcast::Receiver<EventBatch> {
        self.events.subscribe()
    }
    fn store_health(&self) -> StoreHealth {
        StoreHealth::default()
    }
    fn message_counts(&self) -> MessageCounts {
        MessageCounts::default()
    }
    async fn dead_letters(
        &self,
        _after: Option<MessageId>,
        _limit: usize,
    ) -> Result<Vec<DeadLetter>, RuntimeError> {
        Ok(Vec::new())
    }
    async fn dead_letter(&self, _id: MessageId) -> Result<Option<DeadLetter>, RuntimeError> {
        Ok(None)
    }
    async fn replay_dead_letter(&self, _id: MessageId) -> Result<bool, RuntimeError> {
        Ok(false)
    }
    async fn discard_dead_letter(&self, _id: MessageId) -> Result<bool, RuntimeError> {
        Ok(false)
    }
    fn peers(&self) -> Vec<RuntimePeer> {
        self.peers.clone()
    }
    fn is_cluster_view(&self) -> bool {
        self.cluster
    }
}

fn peer(id: &str, components: &[&str], last_seen: i64) -> RuntimePeer {
    RuntimePeer {
        runtime_id: id.to_owned(),
        name: format!("runtime-{id}"),
        components: components.iter().map(|name| (*name).to_owned()).collect(),
        host: "10.0.0.7".to_owned(),
        port: 3001,
        last_seen,
        first_seen: last_seen - 5_000,
        partitions: Default::default(),
    }
}

async fn call(app: &axum::Router, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).expect("method"))
        .uri(path)
        .header("content-type", "application/json");
    let body = body.map_or_else(Body::empty, |body| Body::from(body.to_string()));
    let response = app.clone().oneshot(request.body(body).expect("request")).await.expect("answer");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20).await.expect("body");
    (status.as_u16(), serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn component_names(list: &Value) -> Vec<String> {
    list["components"]
        .as_array()
        .map(|components| {
            components.iter().filter_map(|c| c["name"].as_str().map(str::to_owned)).collect()
        })
        .unwrap_or_default()
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Reads messages until one of `kind` satisfies `matches`.
async fn until(socket: &mut Socket, kind: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let mut seen = Vec::new();
    loop {
        let message = match tokio::time::timeout(common::WAIT, socket.next()).await {
            Ok(Some(Ok(message))) => message,
            other => panic!("no {kind} message ({other:?}); got {seen:?}"),
        };
        let Message::Text(text) = message else { continue };
        let value: Value = serde_json::from_str(text.as_str()).expect("JSON message");
        if value["type"] == kind && matches(&value["data"]) {
            return value;
        }
        seen.push(value);
    }
}

#[tokio::test]
async fn a_component_appended_later_is_listed_and_its_events_reach_the_websocket() {
    let view = Arc::new(FakeView::new(&[common::ORDER], Vec::new(), true));
    let state = AppState::new(view.clone(), ServerConfig::default()).await;
    let app = router(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let mut shutdown = state.shutdown_signal();
    let server = tokio::spawn(xcomponent_server::serve(listener, state.clone(), async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    }));

    let (socket, _) = connect_async(format!("ws://{addr}/ws")).await.expect("websocket connects");
    let mut socket = socket;
    let greeting = until(&mut socket, "components_list", |_| true).await;
    assert_eq!(greeting["data"]["components"].as_array().map(Vec::len), Some(1));

    let index = view.grow(common::PAYMENT);
    let (status, list) = call(&app, "GET", "/api/components", None).await;
    assert_eq!(status, 200);
    assert_eq!(component_names(&list), ["OrderComponent", "PaymentComponent"]);
    let (status, _) = call(&app, "GET", "/api/components/PaymentComponent", None).await;
    assert_eq!(status, 200);

    let instance = InstanceId::draw();
    let event = RuntimeEvent::InstanceCreated {
        component: index,
        instance,
        machine: 0,
        state: 0,
        context: Arc::new(serde_json::Map::new()),
        parent: None,
        event_id: EventId::draw(),
        at: SystemClock.now(),
    };
    view.events.send(Arc::new(vec![event])).expect("the server listens");
    let grown = until(&mut socket, "components_list", |data| {
        data["components"].as_array().map(Vec::len) == Some(2)
    })
    .await;
    assert_eq!(grown["data"]["components"][1]["name"], "PaymentComponent");
    let created = until(&mut socket, "instance_created", |_| true).await;
    assert_eq!(created["data"]["componentName"], "PaymentComponent");
    assert_eq!(created["data"]["instanceId"], instance.to_string());
    let (_, list) = call(&app, "GET", "/api/components", None).await;
    assert_eq!(list["components"][1]["instanceCount"], 1, "the live count follows the event");

    state.begin_shutdown();
    let _ = tokio::time::timeout(common::WAIT, server).await;
}

#[tokio::test]
async fn a_request_handed_over_answers_202_with_its_message_id() {
    let view = Arc::new(FakeView::new(&[common::ORDER], Vec::new(), true));
    let app = router(AppState::new(view.clone(), ServerConfig::default()).await);
    let message = view.message.to_string();
    let created = view.created.to_string();
    let context = json!({"orderId": "o-1", "amount": 10});

    let body = json!({"machineName": "Order", "context": context});
    let (status, reply) =
        call(&app, "POST", "/api/components/OrderComponent/instances", Some(body)).await;
    assert_eq!((status, &reply["status"]), (202, &json!("accepted")), "{reply}");
    assert_eq!(reply["messageId"], message);
    assert_eq!(reply["instanceId"], created);
    let (status, reply) =
        call(&app, "POST", "/api/OrderComponent/Order/instance", Some(json!({"context": context})))
            .await;
    assert_eq!((status, &reply["instanceId"]), (202, &json!(created)), "{reply}");

    let id = InstanceId::draw();
    let event = json!({"type": "VALIDATE", "payload": {}});
    for path in [
        format!("/api/instances/{id}/events"),
        format!("/api/instances/{id}/trigger"),
        format!("/api/components/OrderComponent/instances/{id}/events"),
        format!("/api/OrderComponent/instance/{id}/event"),
        format!("/webhooks/OrderComponent/{id}/VALIDATE"),
    ] {
        let (status, reply) = call(&app, "POST", &path, Some(event.clone())).await;
        assert_eq!(status, 202, "{path}: {reply}");
        assert_eq!(reply, json!({"status": "accepted", "messageId": message}), "{path}");
    }

    let (_, document) = call(&app, "GET", "/api-docs/openapi.json", None).await;
    for (path, method) in [
        ("/api/components/{name}/instances", "post"),
        ("/api/instances/{id}/events", "post"),
        ("/api/components/{name}/instances/{id}/events", "post"),
        ("/api/{component}/{machine}/instance", "post"),
        ("/api/{component}/instance/{id}/event", "post"),
        ("/webhooks/{component}/{instanceId}/{event}", "post"),
        ("/webhooks/{component}/{machine}/by/{property}/{value}/{event}", "post"),
    ] {
        assert!(
            document["paths"][path][method]["responses"]["202"].is_object(),
            "202 documented for {method} {path}"
        );
    }
}

#[tokio::test]
async fn a_cluster_view_lists_the_runtimes_it_heard_of() {
    let now = SystemClock.now();
    let mut replica = peer("b", &["PaymentComponent", "HelpDesk"], now - 1_000);
    let owned = OwnedPartitions { count: 16, owned: vec![0, 3, 7] };
    replica.partitions.insert("PaymentComponent".to_owned(), owned);
    let peers = vec![peer("a", &["OrderComponent"], now), replica];
    let view = Arc::new(FakeView::new(&[common::ORDER], peers, true));
    let app = router(AppState::new(view, ServerConfig::default()).await);

    let (status, list) = call(&app, "GET", "/api/runtimes", None).await;
    assert_eq!(status, 200);
    let runtimes = list["runtimes"].as_array().expect("runtimes");
    assert_eq!(runtimes.len(), 2);
    assert_eq!(runtimes[1]["runtimeId"], "b");
    assert_eq!(runtimes[1]["name"], "runtime-b");
    assert_eq!(runtimes[1]["componentName"], "PaymentComponent");
    assert_eq!(runtimes[1]["components"], json!(["PaymentComponent", "HelpDesk"]));
    assert_eq!(runtimes[1]["host"], "10.0.0.7");
    assert_eq!(runtimes[1]["port"], 3001);
    assert_eq!(runtimes[1]["lastSeen"], now - 1_000);
    assert_eq!(runtimes[1]["startedAt"], now - 6_000);
    assert_eq!(runtimes[1]["local"], false);
    assert_eq!(
        runtimes[1]["partitions"],
        json!({"PaymentComponent": {"count": 16, "owned": [0, 3, 7]}})
    );
    assert!(runtimes[0].get("partitions").is_none(), "a runtime without replicas lists none");

    let (status, health) = call(&app, "GET", "/health", None).await;
    assert_eq!(status, StatusCode::OK.as_u16(), "{health}");
    assert_eq!(health["mode"], "distributed");
    assert_eq!(health["connectedRuntimes"], 2);

    // A plain runtime (not a view) is this process alone, whatever peers it knows.
    let alone = Arc::new(FakeView::new(&[common::ORDER], vec![peer("a", &["X"], now)], false));
    let config = ServerConfig { runtime_name: Some("here".to_owned()), ..ServerConfig::default() };
    let app = router(AppState::new(alone, config).await);
    let (_, list) = call(&app, "GET", "/api/runtimes", None).await;
    assert_eq!(list["runtimes"].as_array().map(Vec::len), Some(1));
    assert_eq!(list["runtimes"][0]["name"], "here");
    assert_eq!(list["runtimes"][0]["local"], true);
}
