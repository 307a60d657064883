//! Webhook handlers against a real HTTP endpoint on 127.0.0.1: a reply's patch and actions are
//! applied as one stored event; timeouts, 500s and a refused signature go through the bounded
//! retries to the error path (history entry, data untouched, `onError`); every attempt carries
//! the same idempotency key, also after a crash; an endpoint that never answers holds up no
//! other instance of its shard; and the latency a webhook hook adds per transition on loopback.

use crate::{ctx, definition};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use xcomponent_core::InstanceId;
use xcomponent_core::store::EventStore;
use xcomponent_runtime::{
    Handlers, Runtime, RuntimeBuilder, RuntimeEvent, RuntimeHandle, RuntimeOptions, TimerMode,
    Webhook, Webhooks,
};
use xcomponent_store::MemoryStore;

const SHOP: &str = r#"
name: Shop
stateMachines:
  - name: Order
    initialState: Created
    states:
      - {name: Created}
      - {name: Checking, onEntry: checkPayment}
      - {name: Paid}
      - {name: Failed}
    transitions:
      - {from: Created, to: Checking, event: SUBMIT}
      - {from: Checking, to: Paid, event: VALIDATE}
      - {from: Checking, to: Failed, event: PAYMENT_CHECK_FAILED}
  - name: Pinger
    initialState: Idle
    states:
      - {name: Idle}
    transitions:
      - {from: Idle, to: Idle, event: PING}
  - name: Receipt
    initialState: Issued
    states:
      - {name: Issued}
"#;

/// The secret the signed endpoint checks against.
const RIGHT_SECRET: &str = "s3cret";

/// One request the endpoint received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    key: String,
    body: Value,
}

/// The test endpoint: what it received, and how many calls to `/crash-once` to leave hanging.
#[derive(Default)]
struct Endpoint {
    received: Mutex<Vec<Received>>,
    flaky_failures: AtomicUsize,
    hang_first: AtomicUsize,
}

impl Endpoint {
    fn calls(&self, path: &str) -> Vec<Received> {
        self.received.lock().unwrap().iter().filter(|call| call.path == path).cloned().collect()
    }
}

fn signature_valid(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(header) = headers.get("x-xcomponent-signature").and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some((t, v1)) = header.strip_prefix("t=").and_then(|rest| rest.split_once(",v1=")) else {
        return false;
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(RIGHT_SECRET.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes()) == v1
}

async fn endpoint(
    State(state): State<Arc<Endpoint>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state.received.lock().unwrap().push(Received { path: path.clone(), key, body: request });
    let approve = json!({
        "context": {"checked": true, "by": "webhook"},
        "actions": [{"type": "sendToSelf", "event": "VALIDATE"},
                    {"type": "createInstance", "machine": "Receipt", "context": {"n": 1}}]
    });
    match path.as_str() {
        "/ok" => axum::Json(approve).into_response(),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            axum::Json(approve).into_response()
        }
        "/fail" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "/flaky" => {
            if state.flaky_failures.fetch_sub(1, Ordering::SeqCst) > 0 {
                StatusCode::SERVICE_UNAVAILABLE.into_response()
            } else {
                axum::Json(approve).into_response()
            }
        }
        "/signed" => {
            if signature_valid(&headers, &body) {
                axum::Json(approve).into_response()
            } else {
                (StatusCode::UNAUTHORIZED, "bad signature").into_response()
            }
        }
        "/never" => std::future::pending().await,
        "/crash-once" => {
            if state.hang_first.fetch_sub(1, Ordering::SeqCst) > 0 {
                std::future::pending::<()>().await;
            }
            axum::Json(approve).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Serves the endpoint on 127.0.0.1 (an ephemeral port) until the test ends.
async fn serve() -> (SocketAddr, Arc<Endpoint>) {
    let state = Arc::new(Endpoint::default());
    let app = axum::Router::new().fallback(endpoint).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, state)
}

fn hook(addr: SocketAddr, path: &str) -> Webhook {
    Webhook {
        timeout: Duration::from_millis(300),
        retries: 2,
        backoff: Duration::from_millis(20),
        on_error: Some("PAYMENT_CHECK_FAILED".into()),
        ..Webhook::new(format!("http://{addr}{path}"))
    }
}

async fn start(webhook: Webhook, store: Arc<dyn EventStore>, shards: usize) -> Runtime {
    let options = RuntimeOptions { shards, timer_mode: TimerMode::Manual, ..Default::default() };
    RuntimeBuilder::new()
        .component(definition(SHOP))
        .handlers(Handlers::new().webhooks(Webhooks::new().on("checkPayment", webhook)))
        .store(store)
        .options(options)
        .start()
        .await
        .expect("runtime starts")
}

/// Waits (at most 10 s) until the instance is in `state` or has left the live set in it.
async fn wait_for_state(
    handle: &RuntimeHandle,
    store: &Arc<dyn EventStore>,
    id: InstanceId,
    state: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let current = match handle.instance(id).await {
            Some(view) => Some(view.current_state.to_string()),
            None => store.instance(id).await.unwrap().map(|record| record.state),
        };
        if current.as_deref() == Some(state) {
            return;
        }
        assert!(Instant::now() < deadline, "instance {id} still in {current:?}, expected {state}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn submit(handle: &RuntimeHandle, context: Value) -> InstanceId {
    let id = handle.create_instance("Shop", "Order", ctx(context)).await.unwrap();
    handle.send_event(id, "SUBMIT", Default::default()).await.unwrap();
    id
}

/// The event types of an instance's history, in order.
async fn history_types(store: &Arc<dyn EventStore>, id: InstanceId) -> Vec<String> {
    store.history(id).await.unwrap().into_iter().map(|event| event.event_type.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_patches_the_data_and_its_actions_are_delivered_once_stored() {
    let (addr, endpoint) = serve().await;
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let runtime = start(hook(addr, "/ok"), store.clone(), 2).await;
    let handle = runtime.handle();
    let id = submit(&handle, json!({"amount": 42})).await;
    wait_for_state(&handle, &store, id, "Paid").await;

    let calls = endpoint.calls("/ok");
    assert_eq!(calls.len(), 1, "{calls:?}");
    let body = &calls[0].body;
    assert_eq!(body["method"], "checkPayment");
    assert_eq!(body["hook"], "onEntry");
    assert_eq!(body["component"], "Shop");
    assert_eq!(body["machine"], "Order");
    assert_eq!(body["instanceId"], id.to_string());
    assert_eq!(body["state"], "Checking");
    assert_eq!(body["event"], "SUBMIT");
    assert_eq!(body["context"], json!({"amount": 42}));
    assert_eq!(body["messageId"].as_str(), Some(calls[0].key.as_str()), "key = message id");

    let view = handle.instance(id).await.expect("Paid is not final");
    assert_eq!(view.context.get("checked"), Some(&json!(true)));
    assert_eq!(view.context.get("amount"), Some(&json!(42)));
    assert_eq!(
        history_types(&store, id).await,
        ["INSTANCE_CREATED", "SUBMIT", "hook:checkPayment", "VALIDATE"]
    );
    let history = store.history(id).await.unwrap();
    let reply = &history[2];
    assert_eq!(&*reply.state_before, "Checking");
    assert_eq!(&*reply.state_after, "Checking");
    assert_eq!(reply.payload.get("ok"), Some(&json!(true)));
    assert_eq!(reply.changes.set.get("checked"), Some(&json!(true)));
    // The createInstance action made a Receipt; the call left the outbox.
    handle.flush().await.unwrap();
    let receipts = handle
        .instances(xcomponent_runtime::InstanceFilter {
            machine: Some("Receipt".into()),
            limit: 100,
            ..Default::default()
        })
        .await;
    assert_eq!(receipts.len(), 1);
    assert!(store.pending_messages(None, 10).await.unwrap().is_empty());
    runtime.shutdown().await;
}

/// The error path: the failure is recorded, the data untouched, `onError` delivered.
async fn assert_error_path(
    store: &Arc<dyn EventStore>,
    handle: &RuntimeHandle,
    id: InstanceId,
    error: &str,
) {
    wait_for_state(handle, store, id, "Failed").await;
    let history = store.history(id).await.unwrap();
    let types: Vec<&str> = history.iter().map(|event| &*event.event_type).collect();
    assert_eq!(types, ["INSTANCE_CREATED", "SUBMIT", "hook:checkPayment", "PAYMENT_CHECK_FAILED"]);
    let failure = &history[2];
    assert_eq!(failure.payload.get("ok"), Some(&json!(false)));
    let recorded = failure.payload.get("error").and_then(Value::as_str).unwrap_or_default();
    assert!(recorded.contains(error), "recorded error {recorded:?} should contain {error:?}");
    assert!(failure.changes.set.is_empty() && failure.changes.removed.is_empty(), "data untouched");
    assert_eq!(history[3].payload.get("method"), Some(&json!("checkPayment")));
    assert!(store.pending_messages(None, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_endpoint_times_out_on_every_attempt_then_the_error_path_runs() {
    let (addr, endpoint) = serve().await;
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let runtime = start(hook(addr, "/slow"), store.clone(), 2).await;
    let handle = runtime.handle();
    let started = Instant::now();
    let id = submit(&handle, json!({"amount": 1})).await;
    assert_error_path(&store, &handle, id, "timed out after 300 ms (gave up after 3 attempts)")
        .await;
    assert!(started.elapsed() >= Duration::from_millis(900), "three 300 ms attempts");
    let calls = endpoint.calls("/slow");
    assert_eq!(calls.len(), 3, "first attempt and two retries");
    assert!(calls.iter().all(|call| call.key == calls[0].key), "one idempotency key: {calls:?}");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_endpoint_is_retried_with_the_same_key_then_the_error_path_runs() {
    let (addr, endpoint) = serve().await;
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let runtime = start(hook(addr, "/fail"), store.clone(), 2).await;
    let handle = runtime.handle();
    let id = submit(&handle, json!({"amount": 1})).await;
    assert_error_path(&store, &handle, id, "HTTP 500 (gave up after 3 attempts)").await;
    let calls = endpoint.calls("/fail");
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|call| call.key == calls[0].key), "{calls:?}");
    let view = handle.instance(id).await.expect("Failed is not final");
    assert_eq!(view.context.get("amount"), Some(&json!(1)));
    assert_eq!(view.context.get("checked"), None, "no patch from a failed call");
    // What the data gained came from the onError event's payload (merged by its transition).
    assert_eq!(view.context.get("method"), Some(&json!("checkPayment")));
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_delivery_keeps_its_key_and_its_reply_is_applied_once() {
    let (addr, endpoint) = serve().await;
    endpoint.flaky_failures.store(2, Ordering::SeqCst);
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let runtime = start(hook(addr, "/flaky"), store.clone(), 2).await;
    let handle = runtime.handle();
    let id = submit(&handle, json!({})).await;
    wait_for_state(&handle, &store, id, "Paid").await;
    let calls = endpoint.calls("/flaky");
    assert_eq!(calls.len(), 3, "two 503s, then the reply");
    assert!(calls.iter().all(|call| call.key == calls[0].key), "{calls:?}");
    handle.flush().await.unwrap();
    let types = history_types(&store, id).await;
    assert_eq!(types.iter().filter(|t| *t == "hook:checkPayment").count(), 1, "{types:?}");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_made_with_the_wrong_secret_is_refused_and_not_retried() {
    let (addr, endpoint) = serve().await;
    // The right secret: accepted.
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let signed = Webhook { secret: Some(RIGHT_SECRET.into()), ..hook(addr, "/signed") };
    let runtime = start(signed, store.clone(), 2).await;
    let handle = runtime.handle();
    let good = submit(&handle, json!({})).await;
    wait_for_state(&handle, &store, good, "Paid").await;
    runtime.shutdown().await;
    // A wrong one: the receiver answers 401, a failure that is not retried.
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let wrong = Webhook { secret: Some("wrong".into()), ..hook(addr, "/signed") };
    let runtime = start(wrong, store.clone(), 2).await;
    let handle = runtime.handle();
    let bad = submit(&handle, json!({})).await;
    assert_error_path(&store, &handle, bad, "endpoint answered HTTP 401").await;
    assert_eq!(endpoint.calls("/signed").len(), 2, "one accepted call, one refused, no retry");
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_never_answers_does_not_stall_other_instances_of_its_shard() {
    let (addr, endpoint) = serve().await;
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    // One shard: the hung call and the pings share it.
    let never = Webhook { timeout: Duration::from_secs(30), retries: 0, ..hook(addr, "/never") };
    let runtime = start(never, store.clone(), 1).await;
    let handle = runtime.handle();
    let pinger = handle.create_instance("Shop", "Pinger", Default::default()).await.unwrap();
    let pings = 2_000;
    let ping_all = || async {
        let started = Instant::now();
        for _ in 0..pings {
            handle.send_event(pinger, "PING", Default::default()).await.unwrap();
        }
        started.elapsed()
    };
    let baseline = ping_all().await;
    let mut hung = Vec::new();
    for _ in 0..8 {
        hung.push(submit(&handle, json!({})).await);
    }
    // Wait until the endpoint holds every call.
    let deadline = Instant::now() + Duration::from_secs(5);
    while endpoint.calls("/never").len() < hung.len() {
        assert!(Instant::now() < deadline, "calls not made");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = ping_all().await;
    let rate = |took: Duration| f64::from(pings) / took.as_secs_f64();
    println!(
        "{pings} PINGs to an instance of the same shard: {:.0} transitions/s with no call pending, {:.0} transitions/s while {} webhook calls hang",
        rate(baseline),
        rate(elapsed),
        hung.len(),
    );
    assert!(elapsed < Duration::from_secs(10), "pings took {elapsed:?}");
    assert_eq!(store.history(pinger).await.unwrap().len(), 1 + 2 * pings as usize);
    for id in hung {
        assert_eq!(handle.instance(id).await.unwrap().current_state.as_ref(), "Checking");
    }
    runtime.abort().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_interrupted_by_a_crash_is_made_again_with_its_key_and_applied_once() {
    crash_between_call_and_reply(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_interrupted_by_a_crash_is_made_again_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("xc-webhook-{}", uuid::Uuid::now_v7()));
    let url = format!("sqlite://{}/hooks.db", dir.display());
    let options = xcomponent_store::StoreOptions::default();
    crash_between_call_and_reply(xcomponent_store::open(&url, &options).await.unwrap()).await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Kills the runtime while the endpoint holds a call, restarts it on the same store: the call
/// is made again with its key and its reply applied once; a further restart restores the patch.
async fn crash_between_call_and_reply(store: Arc<dyn EventStore>) {
    let (addr, endpoint) = serve().await;
    endpoint.hang_first.store(1, Ordering::SeqCst);
    let runtime = start(hook(addr, "/crash-once"), store.clone(), 2).await;
    let handle = runtime.handle();
    let id = submit(&handle, json!({"amount": 7})).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while endpoint.calls("/crash-once").is_empty() {
        assert!(Instant::now() < deadline, "call not made");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Crash while the endpoint holds the call: the call is still in the outbox.
    runtime.abort().await;
    assert_eq!(store.pending_messages(None, 10).await.unwrap().len(), 1);

    let runtime = start(hook(addr, "/crash-once"), store.clone(), 2).await;
    let handle = runtime.handle();
    wait_for_state(&handle, &store, id, "Paid").await;
    let calls = endpoint.calls("/crash-once");
    assert_eq!(calls.len(), 2, "made again after the restart");
    assert_eq!(calls[0].key, calls[1].key, "with the same idempotency key");
    handle.flush().await.unwrap();
    let types = history_types(&store, id).await;
    assert_eq!(types, ["INSTANCE_CREATED", "SUBMIT", "hook:checkPayment", "VALIDATE"]);
    assert!(store.pending_messages(None, 10).await.unwrap().is_empty());
    runtime.abort().await;

    // Restored from its history, the instance keeps what the reply patched; nothing is called.
    let runtime = start(hook(addr, "/crash-once"), store.clone(), 2).await;
    let view = runtime.handle().instance(id).await.expect("restored");
    assert_eq!(view.current_state.as_ref(), "Paid");
    assert_eq!(view.context.get("checked"), Some(&json!(true)));
    assert_eq!(endpoint.calls("/crash-once").len(), 2);
    runtime.shutdown().await;
}

/// Time from SUBMIT until the instance is Paid, one order at a time, with `handlers`.
async fn submit_to_paid(handle: &RuntimeHandle, orders: usize) -> Duration {
    let mut events = handle.subscribe();
    let paid = handle.registry().definition(0).machine(0).state_index("Paid").unwrap();
    let started = Instant::now();
    for _ in 0..orders {
        let id = handle.create_instance("Shop", "Order", Default::default()).await.unwrap();
        handle.send_event(id, "SUBMIT", Default::default()).await.unwrap();
        'wait: loop {
            let batch = events.recv().await.unwrap();
            for event in batch.iter() {
                if let RuntimeEvent::StateChanged { instance, to, .. } = event
                    && *instance == id
                    && *to == paid
                {
                    break 'wait;
                }
            }
        }
    }
    started.elapsed() / u32::try_from(orders).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_added_by_a_webhook_hook_on_loopback() {
    let orders = 300;
    let (addr, _endpoint) = serve().await;
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let runtime = start(hook(addr, "/ok"), store, 2).await;
    let webhook = submit_to_paid(&runtime.handle(), orders).await;
    runtime.shutdown().await;

    let rust = Handlers::new().on("checkPayment", |call| {
        call.context.insert("checked".into(), json!(true));
        call.sender.send_to_self("VALIDATE", Default::default());
        call.sender.create_instance("Receipt", ctx(json!({"n": 1})));
        Ok(())
    });
    let options = RuntimeOptions { shards: 2, timer_mode: TimerMode::Manual, ..Default::default() };
    let runtime = RuntimeBuilder::new()
        .component(definition(SHOP))
        .handlers(rust)
        .store(Arc::new(MemoryStore::new()))
        .options(options)
        .start()
        .await
        .unwrap();
    let closure = submit_to_paid(&runtime.handle(), orders).await;
    runtime.shutdown().await;
    println!(
        "SUBMIT→Paid per order ({orders} orders, one at a time, memory store): webhook {:.0} µs, Rust closure {:.0} µs, added by the webhook {:.0} µs",
        webhook.as_secs_f64() * 1e6,
        closure.as_secs_f64() * 1e6,
        (webhook.as_secs_f64() - closure.as_secs_f64()) * 1e6,
    );
    assert!(webhook > Duration::ZERO && closure > Duration::ZERO);
}
