//! What a runtime does when its lease keeper publishes a new ownership.
//!
//! A partition gained is taken over in this order, before its queue is consumed: its live
//! instances are loaded from the store (latest snapshot + later events, timers re-armed by
//! absolute deadline: an overdue one fires once), then the outbox messages of the partition are
//! delivered again (those its instances produced, and those for its instances that this runtime
//! produced), each knowing from the inbox which instances applied it already; then its queue is
//! consumed. A partition lost has its queue consumer stopped (what it held unacknowledged goes
//! back to the broker, for the new owner) and its instances dropped from memory.

use super::{Ownership, owned_epochs};
use crate::error::RuntimeError;
use crate::handle::RuntimeHandle;
use crate::protocol::{Eviction, ShardMsg};
use crate::remote::{Intake, consume};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use xcomponent_core::bus::partition_queue;
use xcomponent_core::lease::{Partition, partition_of};
use xcomponent_core::message::{Envelope, MessageBody};

type Key = (String, Partition);

/// The consumers of the owned partitions' queues: each told to stop (between two deliveries)
/// when its partition is handed over. Dropped with the takeover task (a runtime aborted as a
/// crash would be), they are aborted with it.
#[derive(Default)]
struct Consumers(BTreeMap<Key, (watch::Sender<bool>, JoinHandle<()>)>);

impl Drop for Consumers {
    fn drop(&mut self) {
        for (_, consumer) in self.0.values() {
            consumer.abort();
        }
    }
}

fn owned_keys(ownership: &Ownership) -> BTreeSet<Key> {
    owned_epochs(ownership).into_keys().collect()
}

/// Follows the ownership until shutdown; `initial` is what the runtime loaded at start.
pub(crate) async fn run_takeover(
    handle: RuntimeHandle,
    mut ownership: watch::Receiver<Ownership>,
    initial: Ownership,
) {
    let shared = handle.shared.clone();
    let mut shutdown = shared.shutdown.subscribe();
    let mut consumers = Consumers::default();
    let start = |consumers: &mut Consumers, key: Key| {
        let queue = partition_queue(&key.0, key.1);
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(consume(shared.clone(), queue, Intake::Partition, Some(stopped)));
        consumers.0.insert(key, (stop, task));
    };
    for key in owned_keys(&initial) {
        start(&mut consumers, key);
    }
    let mut previous = initial;
    loop {
        if *shutdown.borrow_and_update() {
            // A graceful stop: the consumers finish what they hold and stop on their own.
            consumers.0.clear();
            return;
        }
        let resync = async {
            match &shared.partitions {
                Some(state) => state.resync.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = ownership.changed() => if changed.is_err() { return },
            () = resync => {}
            _ = shutdown.changed() => continue,
        }
        let current = ownership.borrow_and_update().clone();
        let fenced =
            shared.partitions.as_ref().map(|state| state.take_fenced()).unwrap_or_default();
        let (lost, gained) = changes(&previous, &current, &fenced);
        for key in &lost {
            if let Some(state) = &shared.partitions {
                state.set_ready(key.clone(), false);
            }
            if let Some((stop, _)) = consumers.0.remove(key) {
                // Finishes the delivery it is handling, then leaves the queue.
                let _ = stop.send(true);
            }
            let partitions = previous.get(&key.0).map_or(1, |owned| owned.partitions);
            match evict(&handle, key, partitions).await {
                Ok(dropped) => {
                    tracing::info!(
                        component = key.0,
                        partition = key.1,
                        dropped,
                        "Partition handed over."
                    )
                }
                Err(error) => tracing::warn!(%error, "Partition not dropped from memory."),
            }
        }
        if !gained.is_empty() {
            let started = std::time::Instant::now();
            if let Err(error) = take_over(&handle, &current, &gained).await {
                tracing::error!(%error, "Takeover incomplete; the partitions' queues are consumed anyway (their messages read the inbox).");
            }
            tracing::info!(partitions = gained.len(), elapsed = ?started.elapsed(), "Partitions taken over.");
            for key in gained {
                if let Some(state) = &shared.partitions {
                    state.set_ready(key.clone(), true);
                }
                start(&mut consumers, key);
            }
        }
        previous = current;
    }
}

/// The partitions to hand over and to take over between two ownerships: one no longer owned is
/// lost, one newly owned is gained, and one owned under another epoch is both (the lease was
/// lost and taken again between two looks, maybe after another runtime held it: what is in
/// memory may be stale). So is a partition whose commit was `fenced` at an epoch other than the
/// one owned now: the shard dropped its instances and stopped processing it, so it is loaded
/// again. A partition fenced at the epoch owned now was taken by another runtime: the keeper
/// publishes the loss.
fn changes(
    previous: &Ownership,
    current: &Ownership,
    fenced: &BTreeMap<Key, u64>,
) -> (BTreeSet<Key>, BTreeSet<Key>) {
    let (before, after) = (owned_epochs(previous), owned_epochs(current));
    let mut lost: BTreeSet<Key> = before
        .iter()
        .filter(|(key, epoch)| after.get(*key) != Some(*epoch))
        .map(|(key, _)| key.clone())
        .collect();
    let mut gained: BTreeSet<Key> = after
        .iter()
        .filter(|(key, epoch)| before.get(*key) != Some(*epoch))
        .map(|(key, _)| key.clone())
        .collect();
    for (key, refused) in fenced {
        if after.get(key).is_some_and(|epoch| epoch != refused) {
            if before.contains_key(key) {
                lost.insert(key.clone());
            }
            gained.insert(key.clone());
        }
    }
    (lost, gained)
}

/// Loads the gained partitions' instances, delivers their outbox messages again, and creates
/// the entry point of a component whose partition 0 was gained (when it has none).
async fn take_over(
    handle: &RuntimeHandle,
    ownership: &Ownership,
    gained: &BTreeSet<Key>,
) -> Result<(), RuntimeError> {
    let in_gained = |component: &str, instance: &xcomponent_core::instance::InstanceId| {
        ownership.get(component).is_some_and(|owned| {
            gained.contains(&(component.to_owned(), partition_of(*instance, owned.partitions)))
        })
    };
    handle.restore_where(|record| in_gained(&record.component, &record.id)).await?;
    let shared = &handle.shared;
    // Loaded: from now on this runtime processes them (what its shards produce for them is
    // placed here, no longer sent through their queues).
    if let Some(state) = &shared.partitions {
        for key in gained {
            state.set_ready(key.clone(), true);
        }
    }
    handle
        .redeliver_where(|envelope: &Envelope| {
            let source = envelope.source_component.as_deref().unwrap_or(&envelope.component);
            let from_gained = envelope.source_instance.is_some_and(|id| in_gained(source, &id));
            let to_gained = match &envelope.body {
                MessageBody::Send { instance_id, .. } | MessageBody::Create { instance_id, .. } => {
                    in_gained(&envelope.component, instance_id) && shared.produced_here(envelope)
                }
                _ => false,
            };
            from_gained || to_gained
        })
        .await?;
    if gained.iter().any(|(_, partition)| *partition == 0) {
        handle.create_entry_points().await?;
    }
    Ok(())
}

/// Drops a partition's instances from every shard; returns how many.
async fn evict(handle: &RuntimeHandle, key: &Key, partitions: u32) -> Result<usize, RuntimeError> {
    let Some(component) = handle.shared.registry.index_of(&key.0) else { return Ok(0) };
    let mut answers = Vec::new();
    for shard in 0..handle.shared.shard_count() {
        let (reply, answer) = oneshot::channel();
        let eviction = Eviction { component, partitions, partition: key.1, reply };
        handle.to_shard(shard, ShardMsg::Evict(eviction)).await?;
        answers.push(answer);
    }
    let mut dropped = 0;
    for answer in answers {
        dropped += answer.await.map_err(|_| RuntimeError::ShuttingDown)?;
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::ComponentOwnership;

    fn owning(epochs: &[(Partition, u64)]) -> Ownership {
        let owned = epochs.iter().copied().collect();
        Ownership::from([("Payments".to_owned(), ComponentOwnership { partitions: 4, owned })])
    }

    fn keys(partitions: &[Partition]) -> BTreeSet<Key> {
        partitions.iter().map(|partition| ("Payments".to_owned(), *partition)).collect()
    }

    #[test]
    fn a_partition_owned_under_a_new_epoch_is_handed_over_and_taken_over_again() {
        let before = owning(&[(0, 3), (1, 5)]);
        let after = owning(&[(1, 6), (2, 1)]);
        let (lost, gained) = changes(&before, &after, &BTreeMap::new());
        assert_eq!(lost, keys(&[0, 1]));
        assert_eq!(gained, keys(&[1, 2]));
    }

    #[test]
    fn a_partition_fenced_at_an_older_epoch_is_loaded_again_and_one_fenced_at_its_own_is_left_to_the_keeper()
     {
        let owned = owning(&[(0, 7), (1, 2)]);
        let fenced =
            BTreeMap::from([(("Payments".to_owned(), 0), 6), (("Payments".to_owned(), 1), 2)]);
        let (lost, gained) = changes(&owned, &owned, &fenced);
        assert_eq!(lost, keys(&[0]));
        assert_eq!(gained, keys(&[0]));
        // Fenced, then seen as lost by the keeper: handed over once, not taken back.
        let fenced_at_its_own = BTreeMap::from([(("Payments".to_owned(), 1), 2)]);
        let (lost, gained) = changes(&owned, &owning(&[(0, 7)]), &fenced_at_its_own);
        assert_eq!((lost, gained), (keys(&[1]), BTreeSet::new()));
    }
}
