//! Effects that leave an instance: cross_component create and correlated events, cascading
//! rules, inter_machine children with context mapping, and parent notification (which
//! deadlocked the original).

use crate::{ctx, new_state, start};
use serde_json::json;
use xcomponent_runtime::{Handlers, InstanceFilter};

pub const SHOP: &str = r#"
name: Shop
stateMachines:
  - name: Order
    initialState: Created
    states: [{name: Created}, {name: AwaitingPayment}, {name: Paid}, {name: Cancelled, type: final}]
    transitions:
      - from: Created
        to: AwaitingPayment
        event: SUBMIT
        type: cross_component
        targetComponent: Billing
        targetMachine: Invoice
        contextMapping: {ref: orderRef, total: amount}
      - {from: AwaitingPayment, to: Paid, event: SETTLED}
      - {from: AwaitingPayment, to: Cancelled, event: DECLINED}
"#;

pub const BILLING: &str = r#"
name: Billing
stateMachines:
  - name: Invoice
    initialState: Open
    states: [{name: Open}, {name: Settled, type: final}, {name: Declined, type: final}]
    transitions:
      - from: Open
        to: Settled
        event: PAY
        type: cross_component
        targetComponent: Shop
        targetMachine: Order
        targetEvent: SETTLED
        matchingRules: [{eventProperty: ref, instanceProperty: orderRef}]
      - from: Open
        to: Declined
        event: REFUSE
        type: cross_component
        targetComponent: Shop
        targetMachine: Order
        targetEvent: DECLINED
        matchingRules: [{eventProperty: ref, instanceProperty: orderRef}]
"#;

async fn invoice_for(rt: &crate::TestRuntime, order_ref: &str) -> xcomponent_core::InstanceId {
    rt.handle.flush().await.unwrap();
    let invoices = rt
        .handle
        .instances(InstanceFilter {
            component: Some("Billing".into()),
            limit: 100,
            ..Default::default()
        })
        .await;
    invoices
        .into_iter()
        .find(|view| view.context.get("ref") == Some(&json!(order_ref)))
        .expect("invoice created")
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_component_create_and_correlated_reply_success_and_failure() {
    let rt = start(&[SHOP, BILLING], Handlers::new(), None).await;
    let good = rt
        .handle
        .create_instance(
            "Shop",
            "Order",
            ctx(json!({"orderRef": "O1", "amount": 10, "secret": "x"})),
        )
        .await
        .unwrap();
    let bad = rt
        .handle
        .create_instance("Shop", "Order", ctx(json!({"orderRef": "O2", "amount": 20})))
        .await
        .unwrap();
    rt.handle.send_event(good, "SUBMIT", Default::default()).await.unwrap();
    rt.handle.send_event(bad, "SUBMIT", Default::default()).await.unwrap();
    let good_invoice = invoice_for(&rt, "O1").await;
    let invoice = rt.handle.instance(good_invoice).await.unwrap();
    assert_eq!(
        *invoice.context,
        ctx(json!({"ref": "O1", "total": 10})),
        "only mapped keys, renamed"
    );
    let bad_invoice = invoice_for(&rt, "O2").await;
    assert_eq!(
        new_state(&rt.handle.send_event(good_invoice, "PAY", Default::default()).await.unwrap()),
        "Settled"
    );
    assert_eq!(
        new_state(&rt.handle.send_event(bad_invoice, "REFUSE", Default::default()).await.unwrap()),
        "Declined"
    );
    rt.handle.flush().await.unwrap();
    assert_eq!(rt.state(good).await.as_deref(), Some("Paid"), "only the matching order is settled");
    assert_eq!(rt.state(bad).await, None, "the declined order reached Cancelled (final)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_orders_each_get_their_own_invoice() {
    let rt = start(&[SHOP, BILLING], Handlers::new(), None).await;
    let mut orders = Vec::new();
    for n in 0..20 {
        let id = rt
            .handle
            .create_instance(
                "Shop",
                "Order",
                ctx(json!({"orderRef": format!("R{n}"), "amount": n})),
            )
            .await
            .unwrap();
        rt.handle.send_event(id, "SUBMIT", Default::default()).await.unwrap();
        orders.push(id);
    }
    rt.handle.flush().await.unwrap();
    for (n, order) in orders.iter().enumerate() {
        let invoice = invoice_for(&rt, &format!("R{n}")).await;
        assert_eq!(
            rt.handle.instance(invoice).await.unwrap().context.get("total"),
            Some(&json!(n))
        );
        rt.handle.send_event(invoice, "PAY", Default::default()).await.unwrap();
        rt.handle.flush().await.unwrap();
        assert_eq!(rt.state(*order).await.as_deref(), Some("Paid"));
    }
}

const WAREHOUSE: &str = r#"
name: Warehouse
stateMachines:
  - name: Order
    initialState: Draft
    states:
      - {name: Draft}
      - name: Confirmed
        cascadingRules:
          - targetMachine: Shipment
            targetState: Idle
            event: START_SHIPMENT
            matchingRules: [{eventProperty: orderId, instanceProperty: orderId}]
            payload: {orderId: "{{Id}}", city: "{{Address.City}}", label: "order-{{Id}}"}
    transitions:
      - {from: Draft, to: Confirmed, event: CONFIRM}
  - name: Shipment
    initialState: Idle
    states: [{name: Idle}, {name: Preparing}]
    transitions:
      - {from: Idle, to: Preparing, event: START_SHIPMENT}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cascading_rule_reaches_the_matching_instance_with_a_typed_payload() {
    let rt = start(&[WAREHOUSE], Handlers::new(), None).await;
    let order = rt
        .handle
        .create_instance("Warehouse", "Order", ctx(json!({"Id": 42, "Address": {"City": "Lyon"}})))
        .await
        .unwrap();
    let mine = rt
        .handle
        .create_instance("Warehouse", "Shipment", ctx(json!({"orderId": 42})))
        .await
        .unwrap();
    let other = rt
        .handle
        .create_instance("Warehouse", "Shipment", ctx(json!({"orderId": 43})))
        .await
        .unwrap();
    rt.handle.send_event(order, "CONFIRM", Default::default()).await.unwrap();
    rt.handle.flush().await.unwrap();
    let shipment = rt.handle.instance(mine).await.unwrap();
    assert_eq!(&*shipment.current_state, "Preparing");
    assert_eq!(shipment.context.get("orderId"), Some(&json!(42)), "number stays a number");
    assert_eq!(shipment.context.get("city"), Some(&json!("Lyon")));
    assert_eq!(shipment.context.get("label"), Some(&json!("order-42")));
    assert_eq!(rt.state(other).await.as_deref(), Some("Idle"));
}

const COORDINATOR: &str = r#"
name: Team
stateMachines:
  - name: Coordinator
    initialState: Working
    states: [{name: Working}]
    transitions:
      - from: Working
        to: Working
        event: CREATE_WORKER
        type: inter_machine
        targetMachine: Worker
        contextMapping: {taskId: task, paymentAmount: amount}
      - {from: Working, to: Working, event: CHILD_STATE_CHANGED, type: triggerable, triggeredMethod: count}
  - name: Worker
    initialState: Created
    parentLink: {enabled: true, onStateChange: CHILD_STATE_CHANGED}
    states: [{name: Created}, {name: Processing}, {name: Done, type: final}]
    transitions:
      - {from: Created, to: Processing, event: START}
      - {from: Processing, to: Done, event: COMPLETE}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inter_machine_child_and_parent_link_without_deadlock() {
    let handlers = Handlers::new().on("count", |call| {
        let seen = call.context.get("notifications").and_then(|n| n.as_u64()).unwrap_or(0);
        call.context.insert("notifications".into(), json!(seen + 1));
        call.context.insert(
            "lastChildState".into(),
            call.event.payload.get("newState").cloned().unwrap_or_default(),
        );
        Ok(())
    });
    let rt = start(&[COORDINATOR], handlers, None).await;
    let parent =
        rt.handle.create_instance("Team", "Coordinator", Default::default()).await.unwrap();
    rt.handle
        .send_event(parent, "CREATE_WORKER", ctx(json!({"task": "T1", "amount": 5, "other": 1})))
        .await
        .unwrap();
    rt.handle.flush().await.unwrap();
    let workers = rt
        .handle
        .instances(InstanceFilter {
            machine: Some("Worker".into()),
            limit: 10,
            ..Default::default()
        })
        .await;
    assert_eq!(workers.len(), 1);
    let worker = &workers[0];
    assert_eq!(*worker.context, ctx(json!({"taskId": "T1", "paymentAmount": 5})));
    assert_eq!(worker.parent.as_ref().map(|p| p.instance_id), Some(parent));
    rt.handle.send_event(worker.id, "START", Default::default()).await.unwrap();
    rt.handle.send_event(worker.id, "COMPLETE", Default::default()).await.unwrap();
    rt.handle.flush().await.unwrap();
    let coordinator = rt.handle.instance(parent).await.unwrap();
    assert_eq!(coordinator.context.get("notifications"), Some(&json!(2)));
    assert_eq!(coordinator.context.get("lastChildState"), Some(&json!("Done")));
    // The runtime is still responsive (the original deadlocked here).
    rt.handle.send_event(parent, "CREATE_WORKER", ctx(json!({"task": "T2"}))).await.unwrap();
}
