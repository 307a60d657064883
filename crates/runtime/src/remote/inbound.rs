//! Consumers of the hosted components' queues: each delivery is placed on the shards like a
//! stored message and acknowledged once the commit that applied it (or dead-lettered it) is
//! stored (`Shared::settle_deliveries`).

use super::wire;
use crate::placement::{Routed, place};
use crate::protocol::Origin;
use crate::shared::Shared;
use rustc_hash::FxHashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use xcomponent_core::bus::{Delivery, QueueConsumer, RUNTIME_GROUP, component_queue};
use xcomponent_core::message::{DeadLetter, DeadLetterKind, Envelope};
use xcomponent_core::store::CommitBatch;

/// The first pause after a consumer failed (doubled up to `CONSUMER_BACKOFF_MAX`).
const CONSUMER_BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The longest pause between two attempts to join or read a queue.
const CONSUMER_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One consumer task per hosted component.
pub(crate) fn consume_hosted_components(shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    shared
        .registry
        .components()
        .iter()
        .map(|definition| {
            let queue = component_queue(&definition.name);
            tokio::spawn(consume(shared.clone(), queue))
        })
        .collect()
}

/// Joins the queue's group and handles deliveries until shutdown, rejoining after failures.
async fn consume(shared: Arc<Shared>, queue: String) {
    let Some(remote) = shared.remote.as_ref() else { return };
    let mut shutdown = shared.shutdown.subscribe();
    let mut pause = CONSUMER_BACKOFF_MIN;
    'join: loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        let joined = tokio::select! {
            joined = remote.bus.consume(&queue, RUNTIME_GROUP, &remote.config.name) => joined,
            _ = shutdown.changed() => return,
        };
        let mut consumer: Box<dyn QueueConsumer> = match joined {
            Ok(consumer) => consumer,
            Err(error) => {
                tracing::warn!(%queue, %error, "Cannot join the queue; retrying.");
                if wait(&mut shutdown, pause).await {
                    return;
                }
                pause = (pause * 2).min(CONSUMER_BACKOFF_MAX);
                continue 'join;
            }
        };
        tracing::info!(%queue, "Consuming the component's queue.");
        loop {
            let next = tokio::select! {
                next = consumer.next() => next,
                _ = shutdown.changed() => return,
            };
            match next {
                Ok(delivery) => {
                    pause = CONSUMER_BACKOFF_MIN;
                    if let Err(error) = handle(&shared, delivery).await {
                        // Left unacknowledged; leaving the group hands it back to the broker,
                        // which delivers it again.
                        tracing::warn!(%queue, %error, "Delivery not applied; rejoining the queue.");
                        drop(consumer);
                        if wait(&mut shutdown, pause).await {
                            return;
                        }
                        pause = (pause * 2).min(CONSUMER_BACKOFF_MAX);
                        continue 'join;
                    }
                }
                Err(error) => {
                    tracing::warn!(%queue, %error, "Queue consumer failed; joining again.");
                    if wait(&mut shutdown, pause).await {
                        return;
                    }
                    pause = (pause * 2).min(CONSUMER_BACKOFF_MAX);
                    continue 'join;
                }
            }
        }
    }
}

/// Sleeps `pause`; true when shutdown came first.
async fn wait(shutdown: &mut tokio::sync::watch::Receiver<bool>, pause: Duration) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(pause) => *shutdown.borrow(),
        _ = shutdown.changed() => true,
    }
}

/// Places one delivery on the shards, its acknowledgement held until the message is stored as
/// done. An error means the store could not be read or written: the delivery is dropped
/// unacknowledged, so the broker delivers it again.
async fn handle(shared: &Shared, delivery: Delivery) -> Result<(), String> {
    let (Some(remote), Some(store)) = (shared.remote.as_ref(), shared.store.as_ref()) else {
        return Err("no bus or store".into());
    };
    let envelope = match wire::decode(&delivery.message.body) {
        Ok(envelope) => envelope,
        Err(reason) => {
            // Not ours to store (no envelope to keep): reported, counted and taken off the queue.
            tracing::error!(message = %delivery.message.id, %reason, "Unreadable message on the bus dropped.");
            shared.counters.dead_letters(1);
            delivery.ack().await.map_err(|error| error.to_string())?;
            return Ok(());
        }
    };
    let id = envelope.id;
    if remote.hold(id, delivery.acknowledge) {
        // Delivered again while the first copy is still being applied here: acknowledged
        // together with it.
        shared.counters.duplicates(1);
        return Ok(());
    }
    let applied = if delivery.redelivered {
        let entries = match store.inbox_entries(&[id]).await {
            Ok(entries) => entries,
            Err(error) => {
                remote.release(id);
                return Err(error.to_string());
            }
        };
        let applied: FxHashSet<_> = entries.into_iter().map(|entry| entry.instance_id).collect();
        (!applied.is_empty()).then(|| Arc::new(applied))
    } else {
        None
    };
    let envelope = Arc::new(envelope);
    let origin = Origin { envelope: envelope.clone(), applied, pending_shards: None, attempts: 0 };
    let mut routed: Routed = Vec::new();
    if let Err(reason) = place(shared, &envelope, Some(origin), &mut routed) {
        tracing::warn!(message = %id, %reason, "Message from the bus cannot be delivered here.");
        let letter = DeadLetter {
            message: Envelope::clone(&envelope),
            kind: DeadLetterKind::Undeliverable,
            reason,
            attempts: 1,
            dead_at: shared.clock.now(),
        };
        let batch = CommitBatch { dead_letters: vec![letter], ..CommitBatch::default() };
        if let Err(error) = store.commit(&batch).await {
            remote.release(id);
            return Err(error.to_string());
        }
        shared.counters.dead_letters(1);
        shared.settle_deliveries(&[id]);
        return Ok(());
    }
    for (shard, message) in routed {
        shared.send_internal(shard, message);
    }
    Ok(())
}
