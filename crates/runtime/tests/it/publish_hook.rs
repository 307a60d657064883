//! A bus that hands every channel message to a hook before publishing it: the hook lets it
//! through, drops it, or publishes it later itself. For tests of what a runtime or a cluster view
//! does when monitoring messages (at most once) are lost or late.

use async_trait::async_trait;
use std::sync::Arc;
use xcomponent_core::bus::{Bus, BusResult, QueueConsumer, QueueMessage, Subscription};

/// Decides a publish: `true` lets it through now; `false` means the hook took care of it (the
/// bus it is given publishes for real).
pub type Hook = Box<dyn Fn(&Arc<dyn Bus>, &str, &[u8]) -> bool + Send + Sync>;

/// `inner` with its publishes passed through `hook`; everything else goes straight to `inner`.
pub struct PublishHook {
    inner: Arc<dyn Bus>,
    hook: Hook,
}

impl PublishHook {
    pub fn wrap(inner: Arc<dyn Bus>, hook: Hook) -> Arc<dyn Bus> {
        Arc::new(PublishHook { inner, hook })
    }
}

impl std::fmt::Debug for PublishHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublishHook").field("inner", &self.inner.backend()).finish()
    }
}

#[async_trait]
impl Bus for PublishHook {
    fn backend(&self) -> &'static str {
        "publish-hook"
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
        if (self.hook)(&self.inner, channel, body) {
            self.inner.publish(channel, body).await
        } else {
            Ok(())
        }
    }
    async fn subscribe(&self, channels: &[&str]) -> BusResult<Box<dyn Subscription>> {
        self.inner.subscribe(channels).await
    }
    async fn ping(&self) -> BusResult<()> {
        self.inner.ping().await
    }
}
