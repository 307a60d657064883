//! `checkPaymentMethod` written as YAML rules (`examples/order-payment/payment-rules.yaml`):
//! the same decisions as the Rust handler and the webhook, made by guards and an automatic
//! transition, with the example's own order component.

use crate::{ctx, start};
use serde_json::json;
use std::sync::Arc;
use xcomponent_core::InstanceId;
use xcomponent_core::store::EventStore;
use xcomponent_runtime::{Handlers, InstanceFilter};
use xcomponent_store::MemoryStore;

const ORDER: &str = include_str!("../../../../examples/order-payment/order.yaml");
const PAYMENT_RULES: &str = include_str!("../../../../examples/order-payment/payment-rules.yaml");

/// Creates and submits an order; returns it and its payment.
async fn submitted(
    rt: &crate::TestRuntime,
    order_id: &str,
    amount: f64,
    method: &str,
) -> (InstanceId, InstanceId) {
    let context = ctx(json!({"orderId": order_id, "amount": amount, "paymentMethod": method}));
    let order = rt.handle.create_instance("OrderComponent", "Order", context).await.unwrap();
    rt.handle.send_event(order, "SUBMIT", Default::default()).await.unwrap();
    rt.handle.flush().await.unwrap();
    let filter = InstanceFilter {
        component: Some("PaymentComponent".into()),
        text: Some(order_id.into()),
        limit: 10,
        ..InstanceFilter::default()
    };
    let payment = rt.handle.instances(filter).await;
    assert_eq!(payment.len(), 1, "one payment for {order_id}");
    (order, payment[0].id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_payment_method_as_yaml_rules() {
    let store = Arc::new(MemoryStore::new());
    let rt = start(&[ORDER, PAYMENT_RULES], Handlers::new(), Some(store.clone())).await;
    let stored_state = async |id| store.instance(id).await.unwrap().map(|record| record.state);

    // An accepted method and a small amount: processed, then validated by the automatic check.
    let (order, payment) = submitted(&rt, "ORD-1", 180.0, "visa").await;
    rt.handle.send_event(payment, "PROCESS", Default::default()).await.unwrap();
    rt.advance(0).await;
    assert_eq!(rt.state(payment).await.as_deref(), Some("Validated"));
    rt.handle.send_event(payment, "COMPLETE", Default::default()).await.unwrap();
    rt.handle.flush().await.unwrap();
    assert_eq!(rt.state(order).await.as_deref(), Some("Paid"), "the order heard of it");

    // A large amount goes to a manual review.
    let (_, payment) = submitted(&rt, "ORD-2", 25_000.0, "mastercard").await;
    rt.handle.send_event(payment, "PROCESS", Default::default()).await.unwrap();
    rt.advance(0).await;
    assert_eq!(rt.state(payment).await.as_deref(), Some("Review"));

    // A refused method: PROCESS fails the payment, and the order is cancelled.
    let (order, payment) = submitted(&rt, "ORD-3", 40.0, "cash").await;
    rt.handle.send_event(payment, "PROCESS", Default::default()).await.unwrap();
    rt.handle.flush().await.unwrap();
    assert_eq!(stored_state(payment).await.as_deref(), Some("Failed"));
    assert_eq!(stored_state(order).await.as_deref(), Some("Cancelled"), "the order heard of it");
}
