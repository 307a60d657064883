//! Components in different runtimes joined by a bus: a cross-component creation and a correlated
//! reply travel as stored envelopes; a runtime killed while applying deliveries gets them again
//! and applies each exactly once; a broker duplicate is dropped; messages wait in the queue for
//! a runtime that is not started yet, and in the outbox while the bus is down; a broker that
//! loses everything it had confirmed (restarted empty) loses no flow, as messages leave the
//! sender's outbox only on the receiver's receipt. Commands from other systems (create, send,
//! broadcast with filters) are answered on the channel they name.

use crate::cross_component::{BILLING, SHOP};
use crate::{ctx, definition};
use async_trait::async_trait;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use xcomponent_core::bus::{
    Acknowledge, Bus, BusError, BusResult, Delivery, EnqueueFailure, QueueConsumer, QueueMessage,
    Subscription, component_queue,
};
use xcomponent_core::store::EventStore;
use xcomponent_runtime::{
    BusConfig, InstanceFilter, InstanceView, Runtime, RuntimeBuilder, RuntimeOptions,
};
use xcomponent_store::MemoryStore;

/// The longest a test waits for messages to cross the bus.
const CROSSING: Duration = Duration::from_secs(20);

pub(crate) async fn start_hosting(
    yaml: &str,
    store: Arc<dyn EventStore>,
    bus: Arc<dyn Bus>,
    name: &str,
) -> Runtime {
    RuntimeBuilder::new()
        .component(definition(yaml))
        .store(store)
        .options(RuntimeOptions { shards: 2, ..RuntimeOptions::default() })
        .bus(bus, BusConfig::new(name))
        .start()
        .await
        .expect("runtime starts")
}

pub(crate) async fn live(runtime: &Runtime, component: &str) -> Vec<InstanceView> {
    runtime
        .handle()
        .instances(InstanceFilter {
            component: Some(component.into()),
            limit: 10_000,
            ..Default::default()
        })
        .await
}

/// Polls until `check` holds, or fails with `what` after `CROSSING`.
pub(crate) async fn eventually<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    let deadline = Instant::now() + CROSSING;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not reached within {CROSSING:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(crate) fn memory_bus() -> Arc<dyn Bus> {
    Arc::new(xcomponent_bus::MemoryBus::new(&xcomponent_bus::BusOptions::default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_and_its_correlated_reply_cross_the_bus() {
    let bus = memory_bus();
    let shop_store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let billing_store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let shop = start_hosting(SHOP, shop_store.clone(), bus.clone(), "shop-1").await;
    let billing = start_hosting(BILLING, billing_store.clone(), bus.clone(), "billing-1").await;
    let order = shop
        .handle()
        .create_instance("Shop", "Order", ctx(json!({"orderRef": "X1"})))
        .await
        .unwrap();
    shop.handle().send_event(order, "SUBMIT", ctx(json!({"amount": 42}))).await.unwrap();
    eventually("the invoice is created in the other runtime", async || {
        live(&billing, "Billing").await.len() == 1
    })
    .await;
    let invoice = &live(&billing, "Billing").await[0];
    assert_eq!(invoice.context.get("ref"), Some(&json!("X1")));
    assert_eq!(invoice.context.get("total"), Some(&json!(42)));
    billing.handle().send_event(invoice.id, "PAY", Default::default()).await.unwrap();
    eventually("the order is paid", async || {
        shop.handle().instance(order).await.is_some_and(|view| &*view.current_state == "Paid")
    })
    .await;
    // Both outboxes are empty: the sender removed what the broker confirmed.
    eventually("outboxes drained", async || {
        shop_store.pending_messages(None, 10).await.unwrap().is_empty()
            && billing_store.pending_messages(None, 10).await.unwrap().is_empty()
    })
    .await;
    shop.shutdown().await;
    billing.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_killed_while_applying_deliveries_applies_each_exactly_once() {
    const ORDERS: usize = 300;
    let bus = memory_bus();
    let shop_store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let billing_store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let shop = start_hosting(SHOP, shop_store.clone(), bus.clone(), "shop-1").await;
    let mut billing = start_hosting(BILLING, billing_store.clone(), bus.clone(), "billing-1").await;
    let submitter = {
        let handle = shop.handle();
        tokio::spawn(async move {
            for index in 0..ORDERS {
                let context = ctx(json!({"orderRef": format!("R{index}")}));
                let order = handle.create_instance("Shop", "Order", context).await.unwrap();
                handle.send_event(order, "SUBMIT", ctx(json!({"amount": index}))).await.unwrap();
            }
        })
    };
    // Kill the billing runtime five times while invoices arrive, restarting it on its store.
    for round in 1..=5 {
        let seen = ORDERS * round / 6;
        let deadline = Instant::now() + CROSSING;
        while live(&billing, "Billing").await.len() < seen && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        billing.abort().await;
        billing = start_hosting(BILLING, billing_store.clone(), bus.clone(), "billing-1").await;
    }
    submitter.await.unwrap();
    eventually("every order has its invoice", async || {
        live(&billing, "Billing").await.len() >= ORDERS
    })
    .await;
    billing.handle().flush().await.unwrap();
    let invoices = live(&billing, "Billing").await;
    let mut refs: Vec<String> = invoices
        .iter()
        .map(|invoice| invoice.context["ref"].as_str().unwrap().to_owned())
        .collect();
    refs.sort();
    refs.dedup();
    assert_eq!(invoices.len(), ORDERS, "one invoice per order, no duplicate");
    assert_eq!(refs.len(), ORDERS, "every order reached");
    shop.shutdown().await;
    billing.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_broker_delivers_twice_is_applied_once() {
    let bus = memory_bus();
    let billing =
        start_hosting(BILLING, Arc::new(MemoryStore::new()), bus.clone(), "billing-1").await;
    // As the Shop runtime would send it: a creation with its instance id fixed.
    let body = json!({
        "schemaVersion": 1,
        "envelope": {
            "id": "0190a000-0000-7000-8000-000000000001",
            "component": "Billing",
            "body": {"kind": "create", "machine": "Invoice",
                     "instanceId": "0190a000-0000-7000-8000-0000000000aa",
                     "context": {"ref": "D1"}},
            "depth": 1,
            "createdAt": 1
        }
    });
    let message = QueueMessage {
        id: "0190a000-0000-7000-8000-000000000001".into(),
        key: "0190a000-0000-7000-8000-0000000000aa".into(),
        body: serde_json::to_vec(&body).unwrap(),
    };
    bus.enqueue(&component_queue("Billing"), &message).await.unwrap();
    eventually("the invoice exists", async || live(&billing, "Billing").await.len() == 1).await;
    bus.enqueue(&component_queue("Billing"), &message).await.unwrap();
    eventually("the copy is counted as a duplicate", async || {
        billing.handle().message_counts().duplicates == 1
    })
    .await;
    assert_eq!(live(&billing, "Billing").await.len(), 1, "the copy made no second invoice");
    billing.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_wait_in_the_queue_for_a_runtime_not_started_yet() {
    let bus = memory_bus();
    let shop = start_hosting(SHOP, Arc::new(MemoryStore::new()), bus.clone(), "shop-1").await;
    for index in 0..20 {
        let order = shop
            .handle()
            .create_instance("Shop", "Order", ctx(json!({"orderRef": format!("W{index}")})))
            .await
            .unwrap();
        shop.handle().send_event(order, "SUBMIT", Default::default()).await.unwrap();
    }
    let billing =
        start_hosting(BILLING, Arc::new(MemoryStore::new()), bus.clone(), "billing-1").await;
    eventually("all 20 invoices", async || live(&billing, "Billing").await.len() == 20).await;
    shop.shutdown().await;
    billing.shutdown().await;
}

/// A bus whose acknowledgements never reach the broker (as when a process dies between its
/// commit and its ack).
#[derive(Debug)]
struct AckLosingBus {
    inner: Arc<dyn Bus>,
}

struct LostAck;

#[async_trait]
impl Acknowledge for LostAck {
    async fn ack(self: Box<Self>) -> BusResult<()> {
        Ok(())
    }
}

struct AckLosingConsumer {
    inner: Box<dyn QueueConsumer>,
    /// The real acknowledgements, kept unused until the consumer is dropped.
    kept: Vec<Box<dyn Acknowledge>>,
}

#[async_trait]
impl QueueConsumer for AckLosingConsumer {
    async fn next(&mut self) -> BusResult<Delivery> {
        let mut delivery = self.inner.next().await?;
        self.kept.push(std::mem::replace(&mut delivery.acknowledge, Box::new(LostAck)));
        Ok(delivery)
    }
}

#[async_trait]
impl Bus for AckLosingBus {
    fn backend(&self) -> &'static str {
        "ack-losing"
    }
    async fn enqueue(&self, queue: &str, message: &QueueMessage) -> BusResult<()> {
        self.inner.enqueue(queue, message).await
    }
    async fn consume(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BusResult<Box<dyn QueueConsumer>> {
        let inner = self.inner.consume(queue, group, consumer).await?;
        Ok(Box::new(AckLosingConsumer { inner, kept: Vec::new() }))
    }
    async fn publish(&self, channel: &str, body: &[u8]) -> BusResult<()> {
        self.inner.publish(channel, body).await
    }
    async fn subscribe(&self, channels: &[&str]) -> BusResult<Box<dyn Subscription>> {
        self.inner.subscribe(channels).await
    }
    async fn ping(&self) -> BusResult<()> {
        self.inner.ping().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_applied_but_not_acknowledged_before_a_crash_are_dropped_by_the_inbox() {
    const ORDERS: usize = 50;
    let bus = memory_bus();
    let billing_store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let shop = start_hosting(SHOP, Arc::new(MemoryStore::new()), bus.clone(), "shop-1").await;
    let losing: Arc<dyn Bus> = Arc::new(AckLosingBus { inner: bus.clone() });
    let billing = start_hosting(BILLING, billing_store.clone(), losing, "billing-1").await;
    for index in 0..ORDERS {
        let context = ctx(json!({"orderRef": format!("L{index}")}));
        let order = shop.handle().create_instance("Shop", "Order", context).await.unwrap();
        shop.handle().send_event(order, "SUBMIT", Default::default()).await.unwrap();
    }
    eventually("every invoice applied", async || live(&billing, "Billing").await.len() == ORDERS)
        .await;
    billing.handle().flush().await.unwrap();
    // Crash: none of the acknowledgements reached the broker, so every message comes back.
    billing.abort().await;
    let billing = start_hosting(BILLING, billing_store.clone(), bus.clone(), "billing-1").await;
    eventually("every copy dropped as a duplicate", async || {
        billing.handle().message_counts().duplicates == ORDERS as u64
    })
    .await;
    assert_eq!(live(&billing, "Billing").await.len(), ORDERS, "no invoice made twice");
    shop.shutdown().await;
    billing.shutdown().await;
}

/// A bus whose queues refuse messages while `down` is set, counting the messages refused.
#[derive(Debug)]
struct SwitchedBus {
    inner: Arc<dyn Bus>,
    down: AtomicBool,
    refused: AtomicUsize,
}

#[async_trait]
impl Bus for SwitchedBus {
    fn backend(&self) -> &'static str {
        "switched"
    }
    async fn enqueue(&self, queue: &str, message: &QueueMessage) -> BusResult<()> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(BusError::Unavailable("broker down (test)".into()));
        }
        self.inner.enqueue(queue, message).await
    }
    async fn enqueue_many(
        &self,
        queue: &str,
        messages: &[QueueMessage],
    ) -> Result<(), EnqueueFailure> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(messages.len(), Ordering::SeqCst);
            let error = BusError::Unavailable("broker down (test)".into());
            return Err(EnqueueFailure { confirmed: 0, error });
        }
        self.inner.enqueue_many(queue, messages).await
    }
    async fn consume(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BusResult<Box<dyn QueueConsumer>> {
        self.inner.consume(queue, group, consumer).await
    }
    async fn publish(&self, channel: &str, body: &[u8]) -> BusResult<()> {
        self.inner.publish(channel, body).await
    }
    async fn subscribe(&self, channels: &[&str]) -> BusResult<Box<dyn Subscription>> {
        self.inner.subscribe(channels).await
    }
    async fn ping(&self) -> BusResult<()> {
        self.inner.ping().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_stay_in_the_outbox_while_the_bus_is_down_and_leave_when_it_is_back() {
    let memory = memory_bus();
    let switched = Arc::new(SwitchedBus {
        inner: memory.clone(),
        down: AtomicBool::new(true),
        refused: AtomicUsize::new(0),
    });
    let shop_store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let shop = start_hosting(SHOP, shop_store.clone(), switched.clone(), "shop-1").await;
    let billing =
        start_hosting(BILLING, Arc::new(MemoryStore::new()), memory.clone(), "billing-1").await;
    for index in 0..10 {
        let order = shop
            .handle()
            .create_instance("Shop", "Order", ctx(json!({"orderRef": format!("D{index}")})))
            .await
            .unwrap();
        shop.handle().send_event(order, "SUBMIT", Default::default()).await.unwrap();
    }
    // Every message was offered to the bus and refused: from now on only the sweep sends them
    // (waiting for the outbox alone would let the relay's first try meet the bus back up).
    eventually("the relay tried and gave up", async || {
        switched.refused.load(Ordering::SeqCst) >= 10
            && shop_store.pending_messages(None, 100).await.unwrap().len() == 10
    })
    .await;
    assert!(live(&billing, "Billing").await.is_empty());
    switched.down.store(false, Ordering::SeqCst);
    // The sweep (every RELAY_SWEEP_INTERVAL) sends them.
    eventually("all 10 invoices after the bus is back", async || {
        live(&billing, "Billing").await.len() == 10
    })
    .await;
    eventually("outbox drained", async || {
        shop_store.pending_messages(None, 100).await.unwrap().is_empty()
    })
    .await;
    // The sweep's work is counted (`xcomponent_messages_resent_total`).
    assert!(shop.handle().message_counts().resent >= 10, "{:?}", shop.handle().message_counts());
    shop.shutdown().await;
    billing.shutdown().await;
}

/// The next message on a subscription whose channel is `channel`, as JSON.
async fn next_on(subscription: &mut Box<dyn Subscription>, channel: &str) -> serde_json::Value {
    let deadline = Instant::now() + CROSSING;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let published = tokio::time::timeout(left, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("nothing on {channel} within {CROSSING:?}"))
            .expect("subscription");
        if published.channel == channel {
            let value: serde_json::Value = serde_json::from_slice(&published.body).unwrap();
            assert_eq!(value["schemaVersion"], 1, "{value}");
            assert!(value["messageId"].is_string(), "{value}");
            return value;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runtime_announces_itself_publishes_its_events_and_takes_commands() {
    use xcomponent_core::bus::channels;
    let bus = memory_bus();
    let mut watch = bus
        .subscribe(&[
            channels::ANNOUNCE,
            channels::HEARTBEAT,
            channels::SHUTDOWN,
            channels::STATE_CHANGE,
            channels::INSTANCE_CREATED,
            channels::INSTANCE_COMPLETED,
            channels::QUERY_RESPONSE,
            channels::COMMAND_RESPONSE,
        ])
        .await
        .unwrap();
    let mut config = BusConfig::new("shop-1");
    config.heartbeat_interval = Duration::from_millis(200);
    let shop = RuntimeBuilder::new()
        .component(definition(SHOP))
        .store(Arc::new(MemoryStore::new()))
        .bus(bus.clone(), config)
        .start()
        .await
        .unwrap();
    let announce = next_on(&mut watch, channels::ANNOUNCE).await;
    assert_eq!(announce["componentName"], "Shop");
    assert_eq!(announce["runtimeName"], "shop-1");
    assert_eq!(announce["component"]["name"], "Shop", "the whole definition is announced");
    let heartbeat = next_on(&mut watch, channels::HEARTBEAT).await;
    assert_eq!(heartbeat["runtimeId"], announce["runtimeId"]);

    let order = shop
        .handle()
        .create_instance("Shop", "Order", ctx(json!({"orderRef": "M1"})))
        .await
        .unwrap();
    let created = next_on(&mut watch, channels::INSTANCE_CREATED).await;
    assert_eq!(created["eventType"], "instance_created");
    assert_eq!(created["data"]["instanceId"], json!(order));
    assert_eq!(created["data"]["currentState"], "Created");

    // A command with a request id gets the owner's outcome.
    let command = json!({"componentName": "Shop", "instanceId": order, "requestId": "r-1",
                         "event": {"type": "DECLINED", "payload": {}}});
    bus.publish(channels::TRIGGER_EVENT, command.to_string().as_bytes()).await.unwrap();
    let reply = next_on(&mut watch, channels::COMMAND_RESPONSE).await;
    assert_eq!(reply["requestId"], "r-1");
    assert_eq!(reply["outcome"]["status"], "ignored", "DECLINED needs AwaitingPayment: {reply}");
    let command = json!({"instanceId": order, "requestId": "r-2", "event": {"type": "SUBMIT"}});
    bus.publish(channels::TRIGGER_EVENT, command.to_string().as_bytes()).await.unwrap();
    let reply = next_on(&mut watch, channels::COMMAND_RESPONSE).await;
    assert_eq!(reply["outcome"]["status"], "transitioned", "{reply}");
    assert_eq!(reply["outcome"]["newState"], "AwaitingPayment");
    let change = next_on(&mut watch, channels::STATE_CHANGE).await;
    assert_eq!(change["data"]["previousState"], "Created");
    assert_eq!(change["data"]["newState"], "AwaitingPayment");

    // A creation command for a component hosted here.
    let command = json!({"componentName": "Shop", "machineName": "Order", "requestId": "r-3",
                         "context": {"orderRef": "M2"}});
    bus.publish(channels::CREATE_INSTANCE, command.to_string().as_bytes()).await.unwrap();
    let reply = next_on(&mut watch, channels::COMMAND_RESPONSE).await;
    assert_eq!(reply["outcome"]["status"], "created", "{reply}");

    // A late dashboard's query lists the live instances.
    bus.publish(channels::QUERY_INSTANCES, b"{\"type\":\"query_all_instances\"}").await.unwrap();
    let answer = next_on(&mut watch, channels::QUERY_RESPONSE).await;
    assert_eq!(answer["componentName"], "Shop");
    assert_eq!(answer["instances"].as_array().map(Vec::len), Some(2), "{answer}");

    let finished = json!({"instanceId": order, "event": {"type": "DECLINED"}});
    bus.publish(channels::TRIGGER_EVENT, finished.to_string().as_bytes()).await.unwrap();
    let completed = next_on(&mut watch, channels::INSTANCE_COMPLETED).await;
    assert_eq!(completed["data"]["finalState"], "Cancelled");

    shop.shutdown().await;
    let gone = next_on(&mut watch, channels::SHUTDOWN).await;
    assert_eq!(gone["runtimeId"], announce["runtimeId"]);
}

/// A component of its own for the external command API: tickets with a priority.
const DESK: &str = r#"
name: Desk
stateMachines:
  - name: Ticket
    initialState: Open
    states: [{name: Open}, {name: Escalated}, {name: Closed, type: final}]
    transitions:
      - {from: Open, to: Escalated, event: ESCALATE}
      - {from: Escalated, to: Closed, event: CLOSE}
      - {from: Open, to: Closed, event: CLOSE}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_answer_on_their_reply_channel_and_a_broadcast_reaches_the_filtered_instances() {
    use xcomponent_core::bus::channels;
    let bus = memory_bus();
    let mine = "fsm:responses:client-7";
    let mut watch = bus
        .subscribe(&[mine, channels::COMMAND_RESPONSE, channels::STATE_CHANGE, channels::ANNOUNCE])
        .await
        .unwrap();
    let desk = start_hosting(DESK, Arc::new(MemoryStore::new()), bus.clone(), "desk-1").await;
    // The runtime announces itself once it listens to the command channels.
    next_on(&mut watch, channels::ANNOUNCE).await;

    // Creations answered on the client's own channel, not on the shared one.
    let mut tickets = Vec::new();
    for (index, priority) in [1, 5, 9].into_iter().enumerate() {
        let command = json!({"componentName": "Desk", "machineName": "Ticket",
                             "requestId": format!("c-{index}"), "replyTo": mine,
                             "context": {"priority": priority}});
        bus.publish(channels::CREATE_INSTANCE, command.to_string().as_bytes()).await.unwrap();
        let reply = next_on(&mut watch, mine).await;
        assert_eq!(reply["requestId"], format!("c-{index}"));
        assert_eq!(reply["outcome"]["status"], "created", "{reply}");
        tickets.push(reply["outcome"]["instanceId"].clone());
    }

    // A broadcast with a filter: the two urgent tickets escalate.
    let command = json!({"componentName": "Desk", "machineName": "Ticket", "state": "Open",
                         "event": {"type": "ESCALATE"}, "requestId": "b-1", "replyTo": mine,
                         "filters": [{"property": "priority", "operator": ">=", "value": 5}]});
    bus.publish(channels::BROADCAST, command.to_string().as_bytes()).await.unwrap();
    let reply = next_on(&mut watch, mine).await;
    assert_eq!(reply["requestId"], "b-1");
    assert_eq!(reply["outcome"], json!({"status": "broadcast", "count": 2}), "{reply}");
    let mut escalated = Vec::new();
    for _ in 0..2 {
        let change = next_on(&mut watch, channels::STATE_CHANGE).await;
        assert_eq!(change["data"]["newState"], "Escalated", "{change}");
        escalated.push(change["data"]["instanceId"].clone());
    }
    escalated.sort_by_key(ToString::to_string);
    let mut urgent = vec![tickets[1].clone(), tickets[2].clone()];
    urgent.sort_by_key(ToString::to_string);
    assert_eq!(escalated, urgent);

    // Without a requestId, the default channel still answers a command naming no replyTo.
    let command = json!({"componentName": "Desk", "machineName": "Ticket", "requestId": "b-2",
                         "event": {"type": "CLOSE"}, "state": "Nowhere"});
    bus.publish(channels::BROADCAST, command.to_string().as_bytes()).await.unwrap();
    let reply = next_on(&mut watch, channels::COMMAND_RESPONSE).await;
    assert_eq!(reply["requestId"], "b-2");
    assert_eq!(reply["outcome"]["status"], "failed", "{reply}");
    assert!(reply["outcome"]["error"].as_str().unwrap().contains("Nowhere"), "{reply}");
    let command = json!({"componentName": "Desk", "machineName": "Ticket", "replyTo": mine,
                         "event": {"type": "CLOSE"}, "filters": [{"property": "priority"}]});
    bus.publish(channels::BROADCAST, command.to_string().as_bytes()).await.unwrap();
    let reply = next_on(&mut watch, mine).await;
    assert_eq!(reply["requestId"], json!(null), "a replyTo alone asks for an answer");
    assert!(reply["outcome"]["error"].as_str().unwrap().contains("filters"), "{reply}");

    // An invalid replyTo is refused on the shared channel and the command is not run.
    for bad in ["fsm:commands:broadcast", "fsm:responses:a*", "fsm:responses:"] {
        let command = json!({"componentName": "Desk", "machineName": "Ticket", "replyTo": bad,
                             "requestId": "bad", "event": {"type": "CLOSE"}});
        bus.publish(channels::BROADCAST, command.to_string().as_bytes()).await.unwrap();
        let reply = next_on(&mut watch, channels::COMMAND_RESPONSE).await;
        assert_eq!(reply["outcome"]["status"], "failed", "{bad}: {reply}");
        assert!(reply["outcome"]["error"].as_str().unwrap().contains("replyTo"), "{reply}");
    }
    let long = format!("fsm:responses:{}", "x".repeat(channels::MAX_REPLY_CHANNEL_LEN));
    let command = json!({"componentName": "Desk", "instanceId": tickets[0], "replyTo": long,
                         "requestId": "long", "event": {"type": "CLOSE"}});
    bus.publish(channels::TRIGGER_EVENT, command.to_string().as_bytes()).await.unwrap();
    let reply = next_on(&mut watch, channels::COMMAND_RESPONSE).await;
    assert_eq!(reply["requestId"], "long");
    assert_eq!(reply["outcome"]["status"], "failed", "{reply}");

    // Nothing was closed by the refused commands; an event on the client's channel closes one.
    let states: Vec<String> =
        live(&desk, "Desk").await.iter().map(|view| view.current_state.to_string()).collect();
    assert_eq!(states.len(), 3, "{states:?}");
    assert!(!states.iter().any(|state| state == "Closed"), "{states:?}");
    let command = json!({"instanceId": tickets[0], "replyTo": mine, "requestId": "t-1",
                         "event": {"type": "CLOSE"}});
    bus.publish(channels::TRIGGER_EVENT, command.to_string().as_bytes()).await.unwrap();
    let reply = next_on(&mut watch, mine).await;
    assert_eq!(reply["outcome"]["status"], "transitioned", "{reply}");
    assert_eq!(reply["outcome"]["newState"], "Closed");
    desk.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_view_sees_every_runtime_and_routes_commands_to_the_owner() {
    use xcomponent_runtime::{
        ClusterOptions, ClusterView, CreateRequest, RuntimeApi, RuntimeError, SendOutcome,
        SendRequest,
    };
    let bus = memory_bus();
    let shop_store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let shop = start_hosting(SHOP, shop_store.clone(), bus.clone(), "shop-1").await;
    let billing =
        start_hosting(BILLING, Arc::new(MemoryStore::new()), bus.clone(), "billing-1").await;
    let options =
        ClusterOptions { reply_timeout: Duration::from_millis(500), ..ClusterOptions::default() };
    let view =
        ClusterView::connect(bus.clone(), None, Arc::new(xcomponent_core::SystemClock), options)
            .await
            .unwrap();
    eventually("both runtimes and components are known", async || {
        view.peers().len() == 2 && view.registry().components().len() == 2
    })
    .await;
    let names: Vec<String> = view.peers().iter().map(|peer| peer.name.clone()).collect();
    assert_eq!(names, ["billing-1", "shop-1"]);
    let mut events = view.subscribe();

    // A creation routed to the Shop runtime; the owner's answer comes back.
    let request = CreateRequest {
        component: "Shop".into(),
        machine: "Order".into(),
        context: ctx(json!({"orderRef": "V1"})),
        ..CreateRequest::default()
    };
    let order = view.create(request).await.unwrap();
    assert!(shop.handle().instance(order).await.is_some(), "created in the Shop runtime");
    eventually("the view lists the new order", async || view.instance(order).await.is_some()).await;

    // An event: the owner's outcome, the view's state and its event stream follow.
    let outcome =
        view.send(SendRequest::new(order, "SUBMIT", ctx(json!({"amount": 3})))).await.unwrap();
    let SendOutcome::Transitioned { new_state, .. } = outcome else { panic!("{outcome:?}") };
    assert_eq!(&*new_state, "AwaitingPayment");
    eventually("the view follows the state", async || {
        view.instance(order).await.is_some_and(|seen| &*seen.current_state == "AwaitingPayment")
    })
    .await;
    let batch = tokio::time::timeout(CROSSING, events.recv()).await.unwrap().unwrap();
    assert!(
        batch
            .iter()
            .any(|event| event.kind() == "instance_created" || event.kind() == "state_change")
    );

    // An event the order does not take: answered as ignored, not dead-lettered.
    let outcome = view.send(SendRequest::new(order, "PAY", Default::default())).await.unwrap();
    assert!(matches!(outcome, SendOutcome::Ignored { .. }), "{outcome:?}");
    assert!(shop_store.dead_letters(None, 10).await.unwrap().is_empty());
    // Refusals from the owner keep their meaning.
    let unknown = CreateRequest {
        component: "Shop".into(),
        machine: "Nope".into(),
        ..CreateRequest::default()
    };
    assert!(matches!(view.create(unknown).await, Err(RuntimeError::UnknownMachine { .. })));

    // A broadcast runs in the owner, which answers how many instances took it, once stored.
    let decline = async |state: &str| {
        view.broadcast("Shop", "Order", Some(state), "DECLINED", Default::default(), Vec::new())
            .await
    };
    assert_eq!(decline("AwaitingPayment").await.unwrap(), 1, "the one awaiting order");
    assert_eq!(decline("AwaitingPayment").await.unwrap(), 0, "it finished");
    assert!(shop.handle().instance(order).await.is_none(), "the order ended in Cancelled");
    let Err(RuntimeError::Invalid(reason)) = decline("Nowhere").await else {
        panic!("a state the machine lacks is refused by the owner");
    };
    assert!(reason.contains("Nowhere"), "{reason}");

    // Its owner gone, a creation is accepted (stored on the queue) and applied when it is back.
    billing.shutdown().await;
    eventually("the stopped runtime leaves the list", async || view.peers().len() == 1).await;
    let request = CreateRequest {
        component: "Billing".into(),
        machine: "Invoice".into(),
        context: ctx(json!({"ref": "V1"})),
        ..CreateRequest::default()
    };
    let Err(RuntimeError::Accepted { instance_id: Some(invoice), .. }) = view.create(request).await
    else {
        panic!("a creation without an owner answering is accepted");
    };
    let billing =
        start_hosting(BILLING, Arc::new(MemoryStore::new()), bus.clone(), "billing-1").await;
    eventually("the accepted creation is applied by the restarted owner", async || {
        billing.handle().instance(invoice).await.is_some()
    })
    .await;
    view.stop();
    shop.shutdown().await;
    billing.shutdown().await;
}

/// A bus that can be replaced by a fresh, empty one at any moment, as a broker restarted without
/// persistence: every message it had confirmed, queued or delivered unacknowledged is gone.
/// Consumers and subscriptions opened before follow to the new bus by themselves. While `frozen`
/// is set, consumers deliver nothing (what is enqueued waits on the broker, confirmed).
#[derive(Debug)]
struct LosingBus {
    current: std::sync::Mutex<Arc<dyn Bus>>,
    /// Bumped by every `lose_everything`.
    generation: tokio::sync::watch::Sender<u64>,
    frozen: Arc<tokio::sync::watch::Sender<bool>>,
}

impl LosingBus {
    fn new() -> LosingBus {
        LosingBus {
            current: std::sync::Mutex::new(memory_bus()),
            generation: tokio::sync::watch::channel(0).0,
            frozen: Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    fn bus(&self) -> Arc<dyn Bus> {
        self.current.lock().unwrap().clone()
    }

    /// The broker restarts empty.
    fn lose_everything(&self) {
        *self.current.lock().unwrap() = memory_bus();
        self.generation.send_modify(|generation| *generation += 1);
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.send_replace(frozen);
    }
}

/// A consumer of a `LosingBus`: joins the current bus again after each loss.
struct LosingConsumer {
    bus: Arc<LosingBus>,
    queue: String,
    group: String,
    name: String,
    generation: tokio::sync::watch::Receiver<u64>,
    inner: Option<Box<dyn QueueConsumer>>,
}

#[async_trait]
impl QueueConsumer for LosingConsumer {
    async fn next(&mut self) -> BusResult<Delivery> {
        let mut frozen = self.bus.frozen.subscribe();
        loop {
            if self.generation.has_changed().unwrap_or(false) || self.inner.is_none() {
                self.generation.borrow_and_update();
                let bus = self.bus.bus();
                self.inner = Some(bus.consume(&self.queue, &self.group, &self.name).await?);
            }
            if *frozen.borrow_and_update() {
                let _ = frozen.changed().await;
                continue;
            }
            let Some(inner) = self.inner.as_mut() else { continue };
            tokio::select! {
                delivery = inner.next() => return delivery,
                _ = self.generation.changed() => {}
                _ = frozen.changed() => {}
            }
        }
    }
}

/// A subscription to a `LosingBus`: subscribes to the current bus again after each loss.
struct LosingSubscription {
    bus: Arc<LosingBus>,
    channels: Vec<String>,
    generation: tokio::sync::watch::Receiver<u64>,
    inner: Box<dyn Subscription>,
}

#[async_trait]
impl Subscription for LosingSubscription {
    async fn next(&mut self) -> BusResult<xcomponent_core::bus::Published> {
        loop {
            if self.generation.has_changed().unwrap_or(false) {
                self.generation.borrow_and_update();
                let names: Vec<&str> = self.channels.iter().map(String::as_str).collect();
                self.inner = self.bus.bus().subscribe(&names).await?;
            }
            tokio::select! {
                published = self.inner.next() => return published,
                _ = self.generation.changed() => {}
            }
        }
    }
}

/// The `Bus` face of a shared `LosingBus`.
#[derive(Debug, Clone)]
struct Losing(Arc<LosingBus>);

#[async_trait]
impl Bus for Losing {
    fn backend(&self) -> &'static str {
        "losing"
    }
    async fn enqueue(&self, queue: &str, message: &QueueMessage) -> BusResult<()> {
        self.0.bus().enqueue(queue, message).await
    }
    async fn consume(
        &self,
        queue: &str,
        group: &str,
        consumer: &str,
    ) -> BusResult<Box<dyn QueueConsumer>> {
        Ok(Box::new(LosingConsumer {
            bus: self.0.clone(),
            queue: queue.to_owned(),
            group: group.to_owned(),
            name: consumer.to_owned(),
            generation: self.0.generation.subscribe(),
            inner: None,
        }))
    }
    async fn publish(&self, channel: &str, body: &[u8]) -> BusResult<()> {
        self.0.bus().publish(channel, body).await
    }
    async fn subscribe(&self, channels: &[&str]) -> BusResult<Box<dyn Subscription>> {
        let generation = self.0.generation.subscribe();
        let inner = self.0.bus().subscribe(channels).await?;
        let channels = channels.iter().map(|channel| (*channel).to_owned()).collect();
        Ok(Box::new(LosingSubscription { bus: self.0.clone(), channels, generation, inner }))
    }
    async fn ping(&self) -> BusResult<()> {
        self.0.bus().ping().await
    }
}

/// The events of an instance of the order store, by name.
async fn event_names(store: &Arc<MemoryStore>, id: xcomponent_core::InstanceId) -> Vec<String> {
    store.history(id).await.unwrap().into_iter().map(|event| event.event_type.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_loses_what_it_confirmed_loses_no_flow_and_applies_none_twice() {
    const ORDERS: usize = 60;
    let losing = Arc::new(LosingBus::new());
    let bus: Arc<dyn Bus> = Arc::new(Losing(losing.clone()));
    let start = async |yaml: &str, store: Arc<dyn EventStore>, name: &str| {
        let mut config = BusConfig::new(name);
        config.resend_after = Duration::from_secs(1);
        RuntimeBuilder::new()
            .component(definition(yaml))
            .store(store)
            .options(RuntimeOptions { shards: 2, ..RuntimeOptions::default() })
            .bus(bus.clone(), config)
            .start()
            .await
            .expect("runtime starts")
    };
    let shop_store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let billing_store: Arc<MemoryStore> = Arc::new(MemoryStore::new());
    let shop = start(SHOP, shop_store.clone(), "shop-1").await;
    let billing = start(BILLING, billing_store.clone(), "billing-1").await;

    // The first half flows; the second half is enqueued (and confirmed) while the consumers
    // take nothing, then the broker loses it all.
    let mut orders = Vec::new();
    for index in 0..ORDERS {
        if index == ORDERS / 2 {
            eventually("the first half invoiced", async || {
                live(&billing, "Billing").await.len() == ORDERS / 2
            })
            .await;
            losing.freeze(true);
        }
        let context = ctx(json!({"orderRef": format!("E{index}")}));
        let order = shop.handle().create_instance("Shop", "Order", context).await.unwrap();
        shop.handle().send_event(order, "SUBMIT", ctx(json!({"amount": index}))).await.unwrap();
        orders.push(order);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    losing.lose_everything();
    losing.freeze(false);
    eventually("every order has its invoice after the loss", async || {
        live(&billing, "Billing").await.len() == ORDERS
    })
    .await;

    // Every invoice paid; the broker loses everything again while the replies are on their way.
    let invoices = live(&billing, "Billing").await;
    for (index, invoice) in invoices.iter().enumerate() {
        if index == ORDERS / 2 {
            losing.freeze(true);
        }
        billing.handle().send_event(invoice.id, "PAY", Default::default()).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    losing.lose_everything();
    losing.freeze(false);
    eventually("every order paid", async || {
        let mut paid = 0;
        for order in &orders {
            if shop
                .handle()
                .instance(*order)
                .await
                .is_some_and(|view| &*view.current_state == "Paid")
            {
                paid += 1;
            }
        }
        paid == ORDERS
    })
    .await;
    eventually("both outboxes emptied by the receipts", async || {
        shop_store.pending_messages(None, 10).await.unwrap().is_empty()
            && billing_store.pending_messages(None, 10).await.unwrap().is_empty()
    })
    .await;
    shop.handle().flush().await.unwrap();
    billing.handle().flush().await.unwrap();

    // Exactly once: one invoice per order, one SUBMIT and one SETTLED per order, nothing
    // dead-lettered (a second SETTLED would be refused by a paid order).
    let stored = billing_store
        .search(&xcomponent_core::store::InstanceQuery {
            component: Some("Billing".into()),
            limit: 1_000,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(stored.items.len(), ORDERS, "one invoice per order, none twice");
    let mut refs: Vec<String> = stored
        .items
        .iter()
        .map(|record| record.context["ref"].as_str().unwrap().to_owned())
        .collect();
    refs.sort();
    refs.dedup();
    assert_eq!(refs.len(), ORDERS);
    for order in &orders {
        let events = event_names(&shop_store, *order).await;
        let settled = events.iter().filter(|name| *name == "SETTLED").count();
        let submitted = events.iter().filter(|name| *name == "SUBMIT").count();
        assert_eq!((submitted, settled), (1, 1), "order {order}: {events:?}");
    }
    assert!(shop_store.dead_letters(None, 10).await.unwrap().is_empty(), "nothing dead-lettered");
    assert!(billing_store.dead_letters(None, 10).await.unwrap().is_empty());
    shop.shutdown().await;
    billing.shutdown().await;
}
