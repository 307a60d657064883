//! Read your own creation through a cluster view: the owner's answer to a creation and its
//! `instance_created` event travel on different channels, so the answer can come first. `create`
//! returns once the view lists the instance, so whoever created it (an API client of the
//! distributed dashboard, the dashboard page) reads it at once instead of getting 404.

use crate::bus::{eventually, memory_bus};
use crate::cross_component::SHOP;
use crate::{ctx, definition};
use async_trait::async_trait;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use xcomponent_core::bus::{Bus, BusResult, QueueConsumer, QueueMessage, Subscription, channels};
use xcomponent_runtime::{
    BusConfig, ClusterOptions, ClusterView, CreateRequest, RuntimeApi, RuntimeBuilder,
};
use xcomponent_store::MemoryStore;

/// How late the runtime's `instance_created` events reach the bus.
const CREATED_EVENT_DELAY: Duration = Duration::from_millis(300);

/// A runtime's bus whose `instance_created` events are published `CREATED_EVENT_DELAY` late,
/// after the owner's answer to the creation.
#[derive(Debug)]
struct LateCreatedEvents {
    inner: Arc<dyn Bus>,
}

#[async_trait]
impl Bus for LateCreatedEvents {
    fn backend(&self) -> &'static str {
        "late-created-events"
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
        self.inner.consume(queue, group, consumer).await
    }
    async fn publish(&self, channel: &str, body: &[u8]) -> BusResult<()> {
        if channel == channels::INSTANCE_CREATED {
            let (inner, body) = (self.inner.clone(), body.to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(CREATED_EVENT_DELAY).await;
                let _ = inner.publish(channels::INSTANCE_CREATED, &body).await;
            });
            return Ok(());
        }
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
async fn a_creation_the_owner_answered_is_listed_when_create_returns() {
    let bus = memory_bus();
    let late = Arc::new(LateCreatedEvents { inner: bus.clone() });
    let shop = RuntimeBuilder::new()
        .component(definition(SHOP))
        .store(Arc::new(MemoryStore::new()))
        .bus(late as Arc<dyn Bus>, BusConfig::new("shop-1"))
        .start()
        .await
        .expect("runtime starts");
    // No periodic query during the test: only the owner's event can make the view list it.
    let options =
        ClusterOptions { refresh_interval: Duration::from_secs(3600), ..ClusterOptions::default() };
    let view = ClusterView::connect(bus, None, Arc::new(xcomponent_core::SystemClock), options)
        .await
        .unwrap();
    eventually("the view knows the component", async || view.registry().index_of("Shop").is_some())
        .await;
    for n in 0..3 {
        let request = CreateRequest {
            component: "Shop".into(),
            machine: "Order".into(),
            context: ctx(json!({"orderRef": format!("R{n}")})),
            ..CreateRequest::default()
        };
        let order = view.create(request).await.unwrap();
        assert!(shop.handle().instance(order).await.is_some(), "created in the Shop runtime");
        let listed = view.instance(order).await.expect("listed when create returns");
        assert_eq!(&*listed.current_state, "Created");
        assert!(!listed.available_transitions.is_empty(), "its events are offered");
    }
    view.stop();
    shop.shutdown().await;
}
