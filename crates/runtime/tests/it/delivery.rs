//! Stored messages: an effect of a stored transition is applied exactly once, even when the
//! process dies between the commit of the source and the commit of the target; messages that
//! cannot be applied are dead-lettered with their reason, and can be replayed or discarded.

use crate::cross_component::{BILLING, SHOP};
use crate::persistence::FlakyStore;
use crate::{ctx, start};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use xcomponent_core::matching::PropertyFilter;
use xcomponent_core::message::{
    DeadLetterKind, Envelope, InboxEntry, MessageBody, MessageId, SelectorSpec,
};
use xcomponent_core::store::{CommitBatch, EventStore};
use xcomponent_core::{InstanceId, Status};
use xcomponent_runtime::{DrawId, Handlers, InstanceFilter};
use xcomponent_store::MemoryStore;

async fn invoices(rt: &crate::TestRuntime) -> Vec<xcomponent_runtime::InstanceView> {
    rt.handle.flush().await.unwrap();
    rt.handle
        .instances(InstanceFilter {
            component: Some("Billing".into()),
            limit: 100,
            ..Default::default()
        })
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_stored_before_a_crash_is_applied_once_after_restart() {
    let store = Arc::new(FlakyStore::new());
    // The target's commits fail: the order's SUBMIT is stored, its invoice is not.
    *store.failing_machine.lock().unwrap() = Some("Invoice".into());
    let rt = start(&[SHOP, BILLING], Handlers::new(), Some(store.clone())).await;
    let order = rt.handle.create_instance("Shop", "Order", ctx(json!({"orderRef": "A1"}))).await;
    let order = order.unwrap();
    rt.handle.send_event(order, "SUBMIT", ctx(json!({"amount": 10}))).await.unwrap();
    let pending = store.pending_messages(None, 10).await.unwrap();
    assert_eq!(pending.len(), 1, "the creation is stored with the SUBMIT");
    assert!(matches!(pending[0].body, MessageBody::Create { .. }), "{pending:?}");
    // Crash: nothing queued is finished.
    rt.runtime.abort().await;
    *store.failing_machine.lock().unwrap() = None;

    let rt = start(&[SHOP, BILLING], Handlers::new(), Some(store.clone())).await;
    let found = invoices(&rt).await;
    assert_eq!(found.len(), 1, "exactly one invoice after the restart: {found:?}");
    assert_eq!(found[0].context.get("ref"), Some(&json!("A1")));
    assert!(store.pending_messages(None, 10).await.unwrap().is_empty(), "outbox drained");
    let counts = rt.handle.message_counts();
    assert_eq!(counts.redelivered, 1);
    // A second restart delivers nothing again.
    rt.runtime.shutdown().await;
    let rt = start(&[SHOP, BILLING], Handlers::new(), Some(store.clone())).await;
    assert_eq!(invoices(&rt).await.len(), 1);
    assert_eq!(rt.handle.message_counts().redelivered, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_applied_before_a_crash_is_dropped_as_a_duplicate() {
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let rt = start(&[SHOP, BILLING], Handlers::new(), Some(store.clone())).await;
    let order = rt.handle.create_instance("Shop", "Order", ctx(json!({"orderRef": "B2"}))).await;
    let order = order.unwrap();
    rt.handle.send_event(order, "SUBMIT", ctx(json!({"amount": 5}))).await.unwrap();
    let invoice = invoices(&rt).await[0].id;
    rt.runtime.shutdown().await;
    // As if a SETTLED fan-out had been applied to the order but the process died before the
    // message left the outbox: the message is pending, its inbox entry says the order has it.
    let selector = SelectorSpec {
        states: None,
        filters: vec![PropertyFilter {
            property: "orderRef".into(),
            operator: Default::default(),
            value: json!("B2"),
        }],
    };
    let message = Envelope {
        id: MessageId::draw(),
        component: "Shop".into(),
        body: MessageBody::Deliver {
            machine: "Order".into(),
            selectors: vec![selector],
            event: "SETTLED".into(),
            payload: Default::default(),
        },
        causation_id: None,
        correlation_id: None,
        depth: 1,
        source_component: Some("Billing".into()),
        source_instance: Some(invoice),
        created_at: crate::T0,
    };
    let batch = CommitBatch {
        outbox: vec![message.clone()],
        inbox: vec![InboxEntry { message_id: message.id, instance_id: order, applied_at: 0 }],
        ..CommitBatch::default()
    };
    store.commit(&batch).await.unwrap();

    let rt = start(&[SHOP, BILLING], Handlers::new(), Some(store.clone())).await;
    rt.handle.flush().await.unwrap();
    assert_eq!(rt.state(order).await.as_deref(), Some("AwaitingPayment"), "not applied twice");
    assert_eq!(rt.handle.message_counts().duplicates, 1);
    assert!(store.pending_messages(None, 10).await.unwrap().is_empty(), "fan-out completed");
}

pub const NOTIFIER: &str = r#"
name: Notifier
stateMachines:
  - name: Job
    initialState: Idle
    states: [{name: Idle}, {name: Sent}, {name: Done, type: final}]
    transitions:
      - {from: Idle, to: Sent, event: GO, triggeredMethod: pingPeer}
      - {from: Idle, to: Sent, event: ARM}
      - {from: Sent, to: Done, event: PING}
"#;

fn pinging(peer: InstanceId) -> Handlers {
    Handlers::new().on("pingPeer", move |call| {
        call.sender.send_to(peer, "PING", Default::default());
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_missing_instance_is_dead_lettered_and_can_be_replayed() {
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let peer = InstanceId::draw();
    let rt = start(&[NOTIFIER], pinging(peer), Some(store.clone())).await;
    let job = rt.handle.create_instance("Notifier", "Job", ctx(json!({}))).await.unwrap();
    rt.handle.send_event(job, "GO", Default::default()).await.unwrap();
    rt.handle.flush().await.unwrap();
    let letters = rt.handle.dead_letters(None, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].kind, DeadLetterKind::Undeliverable);
    assert!(letters[0].reason.contains(&peer.to_string()), "{}", letters[0].reason);
    assert!(store.pending_messages(None, 10).await.unwrap().is_empty(), "never retried");
    assert_eq!(rt.handle.message_counts().dead_letters, 1);

    // The cause fixed (the peer now exists), a replay applies it once.
    let created = rt
        .handle
        .create(xcomponent_runtime::CreateRequest {
            component: "Notifier".into(),
            machine: "Job".into(),
            context: Default::default(),
            id: Some(peer),
            correlation_id: None,
        })
        .await
        .unwrap();
    rt.handle.send_event(created, "ARM", Default::default()).await.unwrap();
    let id = letters[0].message.id;
    assert!(rt.handle.replay_dead_letter(id).await.unwrap());
    rt.handle.flush().await.unwrap();
    assert_eq!(rt.state(peer).await, None, "the peer took PING to Done and finished");
    let history = store.history(peer).await.unwrap();
    assert_eq!(
        history.last().map(|e| (&*e.event_type, e.status)),
        Some(("PING", Status::Completed))
    );
    assert!(rt.handle.dead_letters(None, 10).await.unwrap().is_empty(), "applied, not dead again");
    assert!(!rt.handle.replay_dead_letter(id).await.unwrap(), "gone once replayed");
    assert!(!rt.handle.discard_dead_letter(id).await.unwrap());
    // Discarding removes a letter for good.
    let other = rt.handle.create_instance("Notifier", "Job", ctx(json!({}))).await.unwrap();
    rt.handle.send_event(other, "GO", Default::default()).await.unwrap();
    rt.handle.flush().await.unwrap();
    let letters = rt.handle.dead_letters(None, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "PING to the finished peer: {letters:?}");
    assert!(rt.handle.discard_dead_letter(letters[0].message.id).await.unwrap());
    assert!(rt.handle.dead_letters(None, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_target_rejects_is_dead_lettered_with_the_reason() {
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let target = InstanceId::draw();
    let rt = start(&[NOTIFIER], pinging(target), Some(store.clone())).await;
    let create = |id| xcomponent_runtime::CreateRequest {
        component: "Notifier".into(),
        machine: "Job".into(),
        context: Default::default(),
        id: Some(id),
        correlation_id: None,
    };
    // The target is Idle: PING is not accepted there.
    rt.handle.create(create(target)).await.unwrap();
    let job = rt.handle.create(create(InstanceId::draw())).await.unwrap();
    rt.handle.send_event(job, "GO", Default::default()).await.unwrap();
    rt.handle.flush().await.unwrap();
    let letters = rt.handle.dead_letters(None, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].kind, DeadLetterKind::Rejected);
    assert!(letters[0].reason.contains("PING"), "{}", letters[0].reason);
    assert_eq!(rt.state(target).await.as_deref(), Some("Idle"));
}

#[tokio::test(start_paused = true)]
async fn a_message_failing_past_the_retry_bound_is_dead_lettered_not_lost() {
    let store = Arc::new(FlakyStore::new());
    *store.failing_machine.lock().unwrap() = Some("Invoice".into());
    let rt = start(&[SHOP, BILLING], Handlers::new(), Some(store.clone())).await;
    let order = rt.handle.create_instance("Shop", "Order", ctx(json!({"orderRef": "C3"}))).await;
    rt.handle.send_event(order.unwrap(), "SUBMIT", ctx(json!({"amount": 1}))).await.unwrap();
    // Paused time: every commit back-off passes at once.
    rt.handle.flush().await.unwrap();
    let letters = rt.handle.dead_letters(None, 10).await.unwrap();
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].kind, DeadLetterKind::Failed);
    assert!(letters[0].attempts > 1);
    assert!(store.pending_messages(None, 10).await.unwrap().is_empty());
    assert!(rt.handle.message_counts().retried > 0);
    // Replayed once the store accepts invoices: one invoice.
    *store.failing_machine.lock().unwrap() = None;
    assert!(rt.handle.replay_dead_letter(letters[0].message.id).await.unwrap());
    assert_eq!(invoices(&rt).await.len(), 1);
    assert!(!store.failing.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_for_a_component_hosted_elsewhere_stays_in_the_outbox_without_a_bus() {
    // A store a distributed deployment wrote: the Shop runtime's outbox still holds a creation
    // for Billing (hosted by another runtime) that waits for its receiver's receipt.
    let store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let message = Envelope {
        id: MessageId::draw(),
        component: "Billing".into(),
        body: MessageBody::Create {
            machine: "Invoice".into(),
            instance_id: InstanceId::draw(),
            context: ctx(json!({"ref": "E1"})),
            parent: None,
        },
        causation_id: None,
        correlation_id: None,
        depth: 1,
        source_component: Some("Shop".into()),
        source_instance: None,
        created_at: crate::T0,
    };
    store
        .commit(&CommitBatch { outbox: vec![message.clone()], ..CommitBatch::default() })
        .await
        .unwrap();
    // Started alone on that store (an operator reading it), without a bus and without Billing:
    // the message is neither applied nor dead-lettered; it waits for the deployment it is from.
    let rt = start(&[SHOP], Handlers::new(), Some(store.clone())).await;
    rt.handle.flush().await.unwrap();
    assert_eq!(store.pending_messages(None, 10).await.unwrap(), [message]);
    assert!(store.dead_letters(None, 10).await.unwrap().is_empty());
    assert_eq!(rt.handle.message_counts().redelivered, 0);
}
