//! State shared by the handle and every shard: registry, handlers, store, clock, the shards'
//! inboxes, the event stream, and the few cross-shard facts (singleton entry instances, the
//! count of internal messages in flight).

use crate::commit_health::CommitHealth;
use crate::delivery::MessageCounters;
use crate::handlers::Handlers;
use crate::options::RuntimeOptions;
use crate::protocol::ShardMsg;
use crate::registry::{ComponentIdx, Registry};
use crate::stream::EventBatch;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, watch};
use xcomponent_core::clock::Clock;
use xcomponent_core::instance::InstanceId;
use xcomponent_core::store::EventStore;

/// The two inboxes of a shard: external (bounded: callers wait) and internal (effects between
/// shards; bounded by `max_internal_in_flight` through admission control on external work).
#[derive(Debug, Clone)]
pub(crate) struct ShardLink {
    pub external: mpsc::Sender<ShardMsg>,
    pub internal: mpsc::UnboundedSender<ShardMsg>,
}

pub(crate) struct Shared {
    pub registry: Arc<Registry>,
    pub handlers: Handlers,
    pub store: Option<Arc<dyn EventStore>>,
    pub clock: Arc<dyn Clock>,
    pub options: RuntimeOptions,
    pub stream: broadcast::Sender<EventBatch>,
    pub shards: Vec<ShardLink>,
    pub in_flight: AtomicUsize,
    /// Counters of stored messages (duplicates, dead letters, redeliveries, retries).
    pub counters: MessageCounters,
    /// Live instance of each component's singleton entry machine.
    pub singletons: Vec<Mutex<Option<InstanceId>>>,
    /// How each shard's commits are going (read by health checks).
    pub commit_health: CommitHealth,
    /// Set to `true` once, by `Runtime::shutdown`; tasks wait on it with `stopping`.
    pub shutdown: watch::Sender<bool>,
    /// The bus side, when the runtime joined one (components hosted elsewhere).
    pub remote: Option<crate::remote::Remote>,
    /// The webhook dispatcher's queue, when some hook is mapped to a webhook.
    pub webhook_queue: Option<mpsc::Sender<crate::webhook::dispatch::WebhookJob>>,
    /// Partition ownership, when the hosted components are shared with other runtimes.
    pub partitions: Option<crate::partition::Partitions>,
}

impl Shared {
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard owning an instance (the low bits of a v7 UUID are random).
    pub fn shard_of(&self, id: &InstanceId) -> usize {
        (id.0.as_u128() as u64 % self.shards.len() as u64) as usize
    }

    /// Queues an internal message for another shard.
    pub fn send_internal(&self, shard: usize, message: ShardMsg) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        if self.shards[shard].internal.send(message).is_err() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn internal_done(&self, count: usize) {
        if count > 0 {
            self.in_flight.fetch_sub(count, Ordering::Relaxed);
        }
    }

    /// Whether shards should stop taking external work until internal work drains.
    pub fn saturated(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) >= self.options.max_internal_in_flight
    }

    /// Claims the singleton slot of `component` for `id`; returns the holder if taken.
    pub fn claim_singleton(
        &self,
        component: ComponentIdx,
        id: InstanceId,
    ) -> Result<(), InstanceId> {
        let Ok(mut slot) = self.singletons[usize::from(component)].lock() else { return Ok(()) };
        match *slot {
            Some(existing) if existing != id => Err(existing),
            _ => {
                *slot = Some(id);
                Ok(())
            }
        }
    }

    /// Frees the singleton slot if `id` holds it.
    pub fn release_singleton(&self, component: ComponentIdx, id: InstanceId) {
        if let Ok(mut slot) = self.singletons[usize::from(component)].lock()
            && *slot == Some(id)
        {
            *slot = None;
        }
    }

    /// The live singleton of `component`, if any.
    pub fn singleton(&self, component: ComponentIdx) -> Option<InstanceId> {
        self.singletons[usize::from(component)].lock().ok().and_then(|slot| *slot)
    }
}

/// Resolves once `shutdown` holds `true`, at once when it already does (or when its sender is
/// gone). A task that subscribes when it first runs may do so after the value was set: waiting
/// for a change (`changed`) would then wait forever, and its runtime's shutdown with it.
pub(crate) async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}
