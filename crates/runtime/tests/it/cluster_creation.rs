//! Read your own creation through a cluster view: the owner's answer to a creation and its
//! `instance_created` event travel on different channels, so the answer can come first. `create`
//! returns once the view lists the instance, so whoever created it (an API client of the
//! distributed dashboard, the dashboard page) reads it at once instead of getting 404.

use crate::bus::{eventually, memory_bus};
use crate::cross_component::SHOP;
use crate::publish_hook::PublishHook;
use crate::{ctx, definition};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use xcomponent_core::bus::channels;
use xcomponent_runtime::{
    BusConfig, ClusterOptions, ClusterView, CreateRequest, RuntimeApi, RuntimeBuilder,
};
use xcomponent_store::MemoryStore;

/// How late the runtime's `instance_created` events reach the bus.
const CREATED_EVENT_DELAY: Duration = Duration::from_millis(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_creation_the_owner_answered_is_listed_when_create_returns() {
    let bus = memory_bus();
    // The runtime's `instance_created` events reach the bus late, after its answers.
    let late = PublishHook::wrap(
        bus.clone(),
        Box::new(|inner, channel, body| {
            if channel != channels::INSTANCE_CREATED {
                return true;
            }
            let (inner, body) = (inner.clone(), body.to_vec());
            tokio::spawn(async move {
                tokio::time::sleep(CREATED_EVENT_DELAY).await;
                let _ = inner.publish(channels::INSTANCE_CREATED, &body).await;
            });
            false
        }),
    );
    let shop = RuntimeBuilder::new()
        .component(definition(SHOP))
        .store(Arc::new(MemoryStore::new()))
        .bus(late, BusConfig::new("shop-1"))
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
