//! A cluster view learns a component whose announcement it missed (channels are at most once):
//! the runtime's heartbeats name it, and the view asks every runtime to announce again, without
//! waiting for its regular refresh.

use crate::bus::{eventually, memory_bus};
use crate::cross_component::SHOP;
use crate::definition;
use crate::publish_hook::PublishHook;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use xcomponent_core::bus::channels;
use xcomponent_runtime::{BusConfig, ClusterOptions, ClusterView, RuntimeApi, RuntimeBuilder};
use xcomponent_store::MemoryStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_that_missed_an_announcement_learns_the_component_from_heartbeats() {
    let bus = memory_bus();
    // The view refreshes once an hour: only the heartbeats can make it ask in this test.
    let options =
        ClusterOptions { refresh_interval: Duration::from_secs(3600), ..ClusterOptions::default() };
    let clock = Arc::new(xcomponent_core::SystemClock);
    let view = ClusterView::connect(bus.clone(), None, clock, options).await.unwrap();
    // The runtime starts after the view asked everyone, and its own announcement is lost.
    // Its bus loses its first announcement, as a broker drops a channel message nobody was
    // subscribed to yet.
    let lost = Arc::new(AtomicUsize::new(1));
    let losing = lost.clone();
    let lossy = PublishHook::wrap(
        bus,
        Box::new(move |_, channel, _| {
            let lose = channel == channels::ANNOUNCE
                && losing
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok();
            !lose
        }),
    );
    let mut config = BusConfig::new("shop-1");
    config.heartbeat_interval = Duration::from_millis(100);
    let shop = RuntimeBuilder::new()
        .component(definition(SHOP))
        .store(Arc::new(MemoryStore::new()))
        .bus(lossy, config)
        .start()
        .await
        .expect("runtime starts");
    eventually("the view heard the runtime", async || view.peers().len() == 1).await;
    assert_eq!(lost.load(Ordering::SeqCst), 0, "the start announcement was lost");
    eventually("the view knows the component", async || view.registry().index_of("Shop").is_some())
        .await;
    view.stop();
    shop.shutdown().await;
}
