//! A cluster view without the runtimes' store reads their stores over the bus: an instance's
//! history and record from the runtime that holds it, searches merged page by page across
//! runtimes, events correlated across components, and dead letters.

use crate::bus::{eventually, memory_bus, start_hosting};
use crate::cross_component::{BILLING, SHOP};
use crate::ctx;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use xcomponent_core::message::{DeadLetter, DeadLetterKind, Envelope, MessageBody, MessageId};
use xcomponent_core::store::{CommitBatch, EventStore, InstanceQuery};
use xcomponent_runtime::{ClusterOptions, ClusterView, RuntimeApi, SendRequest};
use xcomponent_store::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_view_without_a_store_reads_every_runtime_store_over_the_bus() {
    let bus = memory_bus();
    let shop = start_hosting(SHOP, Arc::new(MemoryStore::new()), bus.clone(), "shop-1").await;
    let billing_store = Arc::new(MemoryStore::new());
    let billing = start_hosting(BILLING, billing_store.clone(), bus.clone(), "billing-1").await;
    let options =
        ClusterOptions { reply_timeout: Duration::from_secs(2), ..ClusterOptions::default() };
    let clock = Arc::new(xcomponent_core::SystemClock);
    let view = ClusterView::connect(bus.clone(), None, clock, options).await.unwrap();
    eventually("both runtimes are known", async || view.peers().len() == 2).await;
    let store = view.store().expect("reads go over the bus");
    assert_eq!(store.backend(), "runtimes");

    // Five orders submitted: five invoices created in the Billing runtime.
    let mut orders = Vec::new();
    for n in 0..5 {
        let reference = format!("R{n}");
        let order = shop
            .handle()
            .create_instance("Shop", "Order", ctx(json!({"orderRef": reference})))
            .await
            .unwrap();
        let submit = SendRequest::new(order, "SUBMIT", ctx(json!({"amount": n})));
        shop.handle().send(submit).await.unwrap();
        orders.push(order);
    }
    eventually("the invoices exist", async || {
        crate::bus::live(&billing, "Billing").await.len() == 5
    })
    .await;

    // One instance: its events and record come from the runtime whose store holds it.
    let history = store.history(orders[0]).await.unwrap();
    let kinds: Vec<&str> = history.iter().map(|event| &*event.event_type).collect();
    assert_eq!(kinds, ["INSTANCE_CREATED", "SUBMIT"]);
    let record = store.instance(orders[0]).await.unwrap().expect("the order's record");
    assert_eq!(record.state, "AwaitingPayment");

    // Events correlated across components: the order's and its invoice's.
    let correlated = store.correlated(record.correlation_id, 100).await.unwrap();
    let components: HashSet<&str> = correlated.iter().map(|event| &*event.component).collect();
    assert_eq!(components, HashSet::from(["Shop", "Billing"]), "{correlated:?}");

    // A search paged two at a time finds all ten instances of both runtimes, once each.
    let mut seen = Vec::new();
    let mut query = InstanceQuery { limit: 2, ..InstanceQuery::default() };
    for _ in 0..20 {
        let page = store.search(&query).await.unwrap();
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|record| record.id));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    let distinct: HashSet<_> = seen.iter().collect();
    assert_eq!((seen.len(), distinct.len()), (10, 10), "every instance once: {seen:?}");

    // The dead letters of every runtime (one stored in the Billing runtime's store).
    let message = Envelope {
        id: MessageId(uuid::Uuid::now_v7()),
        component: "Billing".into(),
        body: MessageBody::Send {
            instance_id: orders[0],
            event: "PAY".into(),
            payload: Default::default(),
        },
        causation_id: None,
        correlation_id: None,
        depth: 0,
        source_component: None,
        source_instance: None,
        created_at: 1,
    };
    let letter = DeadLetter {
        message,
        kind: DeadLetterKind::Undeliverable,
        reason: "no such invoice".into(),
        attempts: 1,
        dead_at: 2,
    };
    let batch = CommitBatch { dead_letters: vec![letter.clone()], ..CommitBatch::default() };
    billing_store.commit(&batch).await.unwrap();
    assert_eq!(store.dead_letters(None, 10).await.unwrap(), std::slice::from_ref(&letter));
    assert_eq!(store.dead_letter(letter.message.id).await.unwrap(), Some(letter));

    view.stop();
    shop.shutdown().await;
    billing.shutdown().await;
}
