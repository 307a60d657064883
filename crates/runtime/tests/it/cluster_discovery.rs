//! A cluster view learns a component whose announcement it missed (channels are at most once):
//! the runtime's heartbeats name it, and the view asks every runtime to announce again, without
//! waiting for its regular refresh.

use crate::bus::{eventually, memory_bus};
use crate::cross_component::SHOP;
use crate::definition;
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use xcomponent_core::bus::{Bus, BusResult, QueueConsumer, QueueMessage, Subscription, channels};
use xcomponent_runtime::{BusConfig, ClusterOptions, ClusterView, RuntimeApi, RuntimeBuilder};
use xcomponent_store::MemoryStore;

/// A runtime's bus that loses its first `lost` announcements, as a broker drops a channel
/// message nobody was subscribed to yet.
#[derive(Debug)]
struct AnnouncementsLost {
    inner: Arc<dyn Bus>,
    lost: AtomicUsize,
}

#[async_trait]
impl Bus for AnnouncementsLost {
    fn backend(&self) -> &'static str {
        "announcements-lost"
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
        let lose = channel == channels::ANNOUNCE
            && self
                .lost
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if lose { Ok(()) } else { self.inner.publish(channel, body).await }
    }
    async fn subscribe(&self, channels: &[&str]) -> BusResult<Box<dyn Subscription>> {
        self.inner.subscribe(channels).await
    }
    async fn ping(&self) -> BusResult<()> {
        self.inner.ping().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_view_that_missed_an_announcement_learns_the_component_from_heartbeats() {
    let bus = memory_bus();
    // The view refreshes once an hour: only the heartbeats can make it ask in this test.
    let options =
        ClusterOptions { refresh_interval: Duration::from_secs(3600), ..ClusterOptions::default() };
    let clock = Arc::new(xcomponent_core::SystemClock);
    let view = ClusterView::connect(bus.clone(), None, clock, options).await.unwrap();
    // The runtime starts after the view asked everyone, and its own announcement is lost.
    let lossy = Arc::new(AnnouncementsLost { inner: bus, lost: AtomicUsize::new(1) });
    let mut config = BusConfig::new("shop-1");
    config.heartbeat_interval = Duration::from_millis(100);
    let shop = RuntimeBuilder::new()
        .component(definition(SHOP))
        .store(Arc::new(MemoryStore::new()))
        .bus(lossy.clone() as Arc<dyn Bus>, config)
        .start()
        .await
        .expect("runtime starts");
    eventually("the view heard the runtime", async || view.peers().len() == 1).await;
    assert_eq!(lossy.lost.load(Ordering::SeqCst), 0, "the start announcement was lost");
    eventually("the view knows the component", async || view.registry().index_of("Shop").is_some())
        .await;
    view.stop();
    shop.shutdown().await;
}
