//! The order/payment flow over real HTTP, both components in one server: an order's SUBMIT
//! creates a payment; completing the payment pays the order, rejecting it cancels the order.
//! Also: a restart on the same SQLite file keeps every instance and state.

mod common;

use common::{TempDir, TestServer, eventually};
use serde_json::{Value, json};
use std::sync::Arc;
use xcomponent_core::store::EventStore;
use xcomponent_server::{ServerConfig, TimedStore};
use xcomponent_store::StoreOptions;

async fn create_order(server: &TestServer, order_id: &str) -> String {
    let body = json!({"machineName": "Order", "context": {"orderId": order_id, "amount": 120.5, "customerId": "C-9", "paymentMethod": "visa"}});
    let (status, reply) =
        server.http("POST", "/api/components/OrderComponent/instances", Some(&body)).await;
    assert_eq!(status, 201, "{reply}");
    reply["instanceId"].as_str().expect("instanceId").to_owned()
}

async fn send(server: &TestServer, id: &str, event: &str) -> Value {
    let (status, reply) = server
        .http("POST", &format!("/api/instances/{id}/events"), Some(&json!({"type": event})))
        .await;
    assert_eq!(status, 200, "{event}: {reply}");
    assert_eq!(reply["outcome"], "transitioned", "{event}: {reply}");
    reply
}

/// The live payment created for `order_id`.
async fn payment_of(server: &TestServer, order_id: &str) -> Value {
    eventually(|| async {
        let (_, page) = server
            .http("GET", &format!("/api/instances?component=PaymentComponent&q={order_id}"), None)
            .await;
        page["items"].as_array().and_then(|items| items.first().cloned())
    })
    .await
    .expect("a payment appears")
}

async fn state_of(server: &TestServer, id: &str) -> Value {
    let (status, body) = server.http("GET", &format!("/api/instances/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["instance"].clone()
}

async fn wait_for_state(server: &TestServer, id: &str, state: &str) -> Value {
    eventually(|| async {
        let instance = state_of(server, id).await;
        (instance["currentState"] == state).then_some(instance)
    })
    .await
    .unwrap_or_else(|| panic!("instance {id} never reached {state}"))
}

async fn standard_sqlite(dir: &TempDir) -> TestServer {
    let config = ServerConfig::default();
    let url = format!("sqlite://{}", dir.path().join("xcomponent.db").display());
    let store = xcomponent_store::open(&url, &StoreOptions::default()).await.expect("sqlite store");
    let store: Arc<dyn EventStore> = TimedStore::wrap(store, &config.metrics);
    TestServer::start(&[common::ORDER, common::PAYMENT, common::DESK], Some(store), config).await
}

#[tokio::test]
async fn paid_order() {
    let dir = TempDir::new("paid");
    let server = standard_sqlite(&dir).await;
    let order = create_order(&server, "ORD-OK").await;
    let reply = send(&server, &order, "SUBMIT").await;
    assert_eq!(reply["newState"], "PendingPayment");
    let payment = payment_of(&server, "ORD-OK").await;
    assert_eq!(payment["currentState"], "Pending");
    assert_eq!(
        payment["context"],
        json!({"orderId": "ORD-OK", "amount": 120.5, "paymentMethod": "visa"}),
        "contextMapping keeps three keys"
    );
    let payment = payment["id"].as_str().expect("payment id").to_owned();
    send(&server, &payment, "PROCESS").await;
    send(&server, &payment, "VALIDATE").await;
    let done = send(&server, &payment, "COMPLETE").await;
    assert_eq!(done["status"], "completed");
    let paid = wait_for_state(&server, &order, "Paid").await;
    assert_eq!(paid["status"], "active");
    assert_eq!(state_of(&server, &payment).await["status"], "completed");

    // The audit trail links both instances.
    let (_, chain) = server.http("GET", &format!("/api/history/correlated/{order}"), None).await;
    let types: Vec<&str> = chain["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|event| event["eventType"].as_str())
        .collect();
    for expected in ["SUBMIT", "PROCESS", "COMPLETE", "PAYMENT_CONFIRMED"] {
        assert!(types.contains(&expected), "{expected} in {types:?}");
    }
    let (_, metrics) = server.http("GET", "/metrics", None).await;
    let metrics = metrics.as_str().unwrap_or_default();
    assert!(
        metrics.contains("xcomponent_store_commit_duration_seconds_bucket{backend=\"sqlite\""),
        "{metrics}"
    );
    assert!(metrics.contains("xcomponent_bus_lag_seconds"), "{metrics}");
    server.stop().await;
}

#[tokio::test]
async fn cancelled_order_when_payment_is_rejected() {
    let dir = TempDir::new("rejected");
    let server = standard_sqlite(&dir).await;
    let order = create_order(&server, "ORD-KO").await;
    send(&server, &order, "SUBMIT").await;
    let payment =
        payment_of(&server, "ORD-KO").await["id"].as_str().expect("payment id").to_owned();
    send(&server, &payment, "PROCESS").await;
    let rejected = send(&server, &payment, "REJECT").await;
    assert_eq!(rejected["newState"], "Failed");
    let cancelled = wait_for_state(&server, &order, "Cancelled").await;
    assert_eq!(cancelled["status"], "completed");
    assert_eq!(cancelled["live"], false);
    let (status, reply) = server
        .http("POST", &format!("/api/instances/{order}/events"), Some(&json!({"type": "SHIP"})))
        .await;
    assert_eq!(status, 409, "{reply}");
    server.stop().await;
}

#[tokio::test]
async fn restart_keeps_instances_and_states() {
    let dir = TempDir::new("restart");
    let server = standard_sqlite(&dir).await;
    let waiting = create_order(&server, "R-1").await;
    let submitted = create_order(&server, "R-2").await;
    send(&server, &submitted, "SUBMIT").await;
    let payment = payment_of(&server, "R-2").await["id"].as_str().expect("payment").to_owned();
    send(&server, &payment, "PROCESS").await;
    let cancelled = create_order(&server, "R-3").await;
    send(&server, &cancelled, "CANCEL").await;
    let (_, before) = server.http("GET", "/api/instances?limit=1000", None).await;
    server.stop().await;

    let server = standard_sqlite(&dir).await;
    let (_, after) = server.http("GET", "/api/instances?limit=1000", None).await;
    let summary = |page: &Value| -> Vec<(String, String, Value)> {
        page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                (
                    item["id"].as_str().unwrap_or_default().to_owned(),
                    item["currentState"].as_str().unwrap_or_default().to_owned(),
                    item["context"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(summary(&after), summary(&before));
    assert_eq!(state_of(&server, &waiting).await["currentState"], "Created");
    assert_eq!(state_of(&server, &submitted).await["currentState"], "PendingPayment");
    assert_eq!(state_of(&server, &payment).await["currentState"], "Processing");
    let finished = state_of(&server, &cancelled).await;
    assert_eq!(
        (finished["currentState"].as_str(), finished["live"].as_bool()),
        (Some("Cancelled"), Some(false))
    );
    let (_, desks) = server.http("GET", "/api/components/HelpDesk/instances", None).await;
    assert_eq!(
        desks["items"].as_array().map(Vec::len),
        Some(1),
        "the singleton is restored, not created twice"
    );

    // The restored instances keep working: the payment completes and pays its order.
    send(&server, &payment, "VALIDATE").await;
    send(&server, &payment, "COMPLETE").await;
    wait_for_state(&server, &submitted, "Paid").await;
    server.stop().await;
}
