//! One component shared by several runtimes (`RuntimeBuilder::replicas`): the partitions are
//! split between them, every flow crossing them completes once, and when one runtime dies the
//! other takes its partitions over (instances loaded, outbox and queues taken over). All in one
//! process on a memory store and a memory bus; the process tests do the same with real servers.

use crate::bus::{eventually, memory_bus};
use crate::{ctx, definition};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use xcomponent_core::Status;
use xcomponent_core::bus::Bus;
use xcomponent_core::store::{EventStore, InstanceQuery};
use xcomponent_runtime::{BusConfig, LeaseConfig, Runtime, RuntimeBuilder, RuntimeOptions};
use xcomponent_store::MemoryStore;

const ORDERS: &str = include_str!("fixtures/orders.yaml");

const PAYMENTS: &str = include_str!("fixtures/payments.yaml");

/// Short leases, so that a takeover happens within the test's patience.
const TTL: Duration = Duration::from_millis(900);

async fn orders(store: Arc<dyn EventStore>, bus: Arc<dyn Bus>) -> Runtime {
    RuntimeBuilder::new()
        .component(definition(ORDERS))
        .store(store)
        .options(RuntimeOptions { shards: 2, ..RuntimeOptions::default() })
        .bus(bus, BusConfig::new("orders-1"))
        .start()
        .await
        .expect("order runtime starts")
}

async fn payments(store: Arc<dyn EventStore>, bus: Arc<dyn Bus>, name: &str) -> Runtime {
    RuntimeBuilder::new()
        .component(definition(PAYMENTS))
        .store(store)
        .options(RuntimeOptions { shards: 2, ..RuntimeOptions::default() })
        .bus(bus, BusConfig { resend_after: Duration::from_secs(2), ..BusConfig::new(name) })
        .replicas(LeaseConfig { ttl: TTL, ..LeaseConfig::new(name) })
        .start()
        .await
        .expect("payment runtime starts")
}

fn owned(runtime: &Runtime) -> usize {
    runtime.handle().ownership().and_then(|o| o.get("Payments").map(|c| c.owned.len())).unwrap_or(0)
}

/// Every instance of `component` in the store (live and finished).
pub(crate) async fn stored(
    store: &dyn EventStore,
    component: &str,
) -> Vec<xcomponent_core::store::InstanceRecord> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let query = InstanceQuery {
            component: Some(component.into()),
            limit: 1000,
            cursor: cursor.take(),
            ..InstanceQuery::default()
        };
        let page = store.search(&query).await.unwrap();
        all.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return all,
        }
    }
}

/// Every order reached Paid, and there is exactly one payment per order, confirmed.
pub(crate) async fn assert_each_paid_once(store: &dyn EventStore, count: usize) {
    let orders = stored(store, "Orders").await;
    assert_eq!(orders.len(), count);
    for order in &orders {
        assert_eq!(
            (order.state.as_str(), order.status),
            ("Paid", Status::Completed),
            "{}",
            order.id
        );
        let history = store.history(order.id).await.unwrap();
        let confirmations =
            history.iter().filter(|e| &*e.event_type == "PAYMENT_CONFIRMED").count();
        assert_eq!(confirmations, 1, "order {} confirmed {confirmations} times", order.id);
    }
    let payments = stored(store, "Payments").await;
    let mut refs: Vec<String> =
        payments.iter().map(|p| p.context["orderRef"].as_str().unwrap().to_owned()).collect();
    refs.sort();
    refs.dedup();
    assert_eq!((payments.len(), refs.len()), (count, count), "one payment per order");
    assert!(payments.iter().all(|p| p.state == "Confirmed"));
}

async fn submit(orders: &Runtime, from: usize, to: usize) {
    let handle = orders.handle();
    let mut tasks = Vec::new();
    for index in from..to {
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            let context = ctx(json!({"orderRef": format!("R{index:04}")}));
            let order = handle.create_instance("Orders", "Order", context).await.unwrap();
            handle.send_event(order, "SUBMIT", Default::default()).await.unwrap();
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

async fn all_paid(store: &dyn EventStore, count: usize) -> bool {
    let orders = stored(store, "Orders").await;
    orders.len() == count && orders.iter().all(|order| order.state == "Paid")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_the_partitions_and_every_flow_completes_once() {
    const FLOWS: usize = 100;
    let (store, bus): (Arc<dyn EventStore>, _) = (Arc::new(MemoryStore::new()), memory_bus());
    let order_runtime = orders(store.clone(), bus.clone()).await;
    let a = payments(store.clone(), bus.clone(), "payments-a").await;
    assert_eq!(owned(&a), 16, "alone, a replica owns every partition");
    let b = payments(store.clone(), bus.clone(), "payments-b").await;
    eventually("the partitions are shared 8 / 8", async || owned(&a) == 8 && owned(&b) == 8).await;
    submit(&order_runtime, 0, FLOWS).await;
    eventually("every order is paid", async || all_paid(store.as_ref(), FLOWS).await).await;
    assert_each_paid_once(store.as_ref(), FLOWS).await;
    let handled = |runtime: &Runtime| runtime.handle().message_counts();
    assert!(handled(&a).duplicates + handled(&b).duplicates < FLOWS as u64);
    order_runtime.shutdown().await;
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_killed_mid_flow_is_taken_over_and_no_flow_is_lost_or_doubled() {
    const FLOWS: usize = 200;
    let (store, bus): (Arc<dyn EventStore>, _) = (Arc::new(MemoryStore::new()), memory_bus());
    let order_runtime = orders(store.clone(), bus.clone()).await;
    let a = payments(store.clone(), bus.clone(), "payments-a").await;
    let b = payments(store.clone(), bus.clone(), "payments-b").await;
    eventually("the partitions are shared", async || owned(&a) == 8 && owned(&b) == 8).await;
    let first = tokio::spawn({
        let handle = order_runtime.handle();
        async move {
            for index in 0..FLOWS {
                let context = ctx(json!({"orderRef": format!("K{index:04}")}));
                let order = handle.create_instance("Orders", "Order", context).await.unwrap();
                handle.send_event(order, "SUBMIT", Default::default()).await.unwrap();
                if index % 20 == 0 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // As kill -9 would: nothing more is committed, no lease is released.
    b.abort().await;
    first.await.unwrap();
    eventually("the survivor owns every partition", async || owned(&a) == 16).await;
    eventually("every order is paid", async || all_paid(store.as_ref(), FLOWS).await).await;
    assert_each_paid_once(store.as_ref(), FLOWS).await;
    order_runtime.shutdown().await;
    a.shutdown().await;
}
