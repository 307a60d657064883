//! Consumers of the hosted components' queues: each delivery is placed on the shards like a
//! stored message, and acknowledged to the broker and receipted to its sender once the commit
//! that applied it (or dropped it as a duplicate, or dead-lettered it) is stored
//! (`Shared::settle_deliveries`). A delivery the broker marks redelivered, or that its sender
//! marks resent, first reads its inbox entries: it may be a copy of one applied already.

use super::monitor;
use super::partitioned;
use super::reply::CommandOutcome;
use super::wire;
use crate::error::RuntimeError;
use crate::placement::{Routed, place, trace_of};
use crate::protocol::{CreateMsg, FanIn, Origin, SendMsg, ShardMsg};
use crate::shared::Shared;
use rustc_hash::FxHashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use xcomponent_core::bus::{Delivery, QueueConsumer, RUNTIME_GROUP, component_queue};
use xcomponent_core::instance::InstanceId;
use xcomponent_core::message::{DeadLetter, DeadLetterKind, Envelope, MessageBody, MessageId};
use xcomponent_core::store::CommitBatch;

/// The first pause after a consumer failed (doubled up to `CONSUMER_BACKOFF_MAX`).
const CONSUMER_BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The longest pause between two attempts to join or read a queue.
const CONSUMER_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// One consumer task per hosted component (for a shared component: the queue where senders
/// that do not know its partitions send, whose messages are forwarded to their partition).
pub(crate) fn consume_hosted_components(shared: &Arc<Shared>) -> Vec<JoinHandle<()>> {
    shared
        .registry
        .components()
        .iter()
        .map(|definition| {
            let queue = component_queue(&definition.name);
            tokio::spawn(consume(shared.clone(), queue, Intake::Component, None))
        })
        .collect()
}

/// Which queue a consumer reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Intake {
    /// A component's queue.
    Component,
    /// The queue of a partition this runtime owns (a shared component).
    Partition,
}

/// Waits until `stop` turns true (forever without one).
async fn stopped(stop: &mut Option<watch::Receiver<bool>>) {
    match stop {
        Some(stop) => {
            let _ = stop.wait_for(|stopped| *stopped).await;
        }
        None => std::future::pending().await,
    }
}

/// Joins the queue's group and handles deliveries until shutdown or `stop` (a partition handed
/// over), rejoining after failures. It stops only between deliveries, never while one is being
/// handled: a delivery whose acknowledgement was taken is always placed or handed back.
pub(crate) async fn consume(
    shared: Arc<Shared>,
    queue: String,
    intake: Intake,
    mut stop: Option<watch::Receiver<bool>>,
) {
    let Some(remote) = shared.remote.as_ref() else { return };
    let mut shutdown = shared.shutdown.subscribe();
    let mut pause = CONSUMER_BACKOFF_MIN;
    'join: loop {
        if *shutdown.borrow_and_update() {
            return;
        }
        // A partition's queue is read by its lease holder alone: no group arbitration needed.
        let join = async {
            match intake {
                Intake::Component => {
                    remote.bus.consume(&queue, RUNTIME_GROUP, &remote.config.name).await
                }
                Intake::Partition => {
                    remote.bus.consume_exclusive(&queue, RUNTIME_GROUP, &remote.config.name).await
                }
            }
        };
        let joined = tokio::select! {
            joined = join => joined,
            _ = shutdown.changed() => return,
            () = stopped(&mut stop) => return,
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
                () = stopped(&mut stop) => return,
            };
            match next {
                Ok(delivery) => {
                    pause = CONSUMER_BACKOFF_MIN;
                    if let Err(error) = handle(&shared, delivery, intake).await {
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
async fn handle(shared: &Arc<Shared>, delivery: Delivery, intake: Intake) -> Result<(), String> {
    let (Some(remote), Some(store)) = (shared.remote.as_ref(), shared.store.as_ref()) else {
        return Err("no bus or store".into());
    };
    let (envelope, reply_to, resent, partition) = match wire::decode(&delivery.message.body) {
        Ok(received) => (received.envelope, received.reply_to, received.resent, received.partition),
        Err(reason) => {
            // Not ours to store (no envelope to keep): reported, counted and taken off the queue.
            tracing::error!(message = %delivery.message.id, %reason, "Unreadable message on the bus dropped.");
            shared.counters.dead_letters(1);
            delivery.ack().await.map_err(|error| error.to_string())?;
            return Ok(());
        }
    };
    if let Some(partitions) = shared.shared_partitions(&envelope.component) {
        match partitioned::route(shared, &envelope, partition, partitions, intake) {
            partitioned::Route::Here => {}
            partitioned::Route::Forward => {
                return partitioned::forward(shared, delivery, envelope, reply_to, partitions)
                    .await;
            }
            partitioned::Route::Elsewhere(partition) => {
                // Its partition moved (this consumer is about to be stopped): left
                // unacknowledged, the broker delivers it to the new owner.
                return Err(format!(
                    "partition {partition} of {} is no longer owned here",
                    envelope.component
                ));
            }
        }
    }
    let id = envelope.id;
    let sender = envelope.source_component.as_deref().filter(|_| reply_to.is_none());
    if remote.hold(id, delivery.acknowledge, sender) {
        // Delivered again while the first copy is still being applied here: acknowledged
        // together with it.
        shared.counters.duplicates(1);
        return Ok(());
    }
    // A shared component's partition may have changed owner since the message was sent: a copy
    // of it may have been applied by the previous owner, or here from the outbox at takeover.
    let shared_component = shared.shared_partitions(&envelope.component).is_some();
    let applied = if delivery.redelivered || resent || shared_component {
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
    let origin = Origin {
        envelope: envelope.clone(),
        applied,
        pending_shards: None,
        attempts: 0,
        partition,
    };
    if let Some(reply_to) = reply_to
        && answer_command(shared, &envelope, origin.clone(), reply_to)
    {
        return Ok(());
    }
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

/// A creation, a send or a broadcast whose sender waits for the outcome (a dashboard's command): placed on
/// its shard with a reply, answered on `reply_to` once the outcome is stored. A command that is
/// ignored or refused is answered and acknowledged, not dead-lettered (its sender hears why); one
/// that failed for an infrastructure reason is answered as failed and acknowledged too (it was
/// not applied, and its sender was told). Returns false for other messages (placed as usual).
fn answer_command(
    shared: &Arc<Shared>,
    envelope: &Arc<Envelope>,
    origin: Origin,
    reply_to: String,
) -> bool {
    let Some(remote) = shared.remote.as_ref() else { return false };
    let trace = trace_of(envelope);
    let id = envelope.id;
    let bus = remote.bus.clone();
    let runtime_id = remote.runtime_id.clone();
    let answer = move |outcome: CommandOutcome| {
        let bus = bus.clone();
        let runtime_id = runtime_id.clone();
        let reply_to = reply_to.clone();
        async move {
            let fields =
                serde_json::json!({"requestId": id, "runtimeId": runtime_id, "outcome": outcome});
            monitor::publish(bus.as_ref(), &reply_to, fields).await;
        }
    };
    match &envelope.body {
        MessageBody::Create { machine, instance_id, context, parent } => {
            let resolved = shared.registry.resolve(&envelope.component, machine);
            let (component, machine) = match resolved {
                Ok(resolved) => resolved,
                Err(error) => {
                    remote.ack_now(id);
                    tokio::spawn(answer(CommandOutcome::failed(&error, Some(*instance_id))));
                    return true;
                }
            };
            let (reply, outcome) = oneshot::channel();
            let message = CreateMsg {
                component,
                machine,
                id: *instance_id,
                context: context.clone(),
                parent: parent.clone(),
                entry_point: false,
                trace,
                reply: Some(reply),
                origin: Some(origin),
            };
            shared.send_internal(shared.shard_of(instance_id), ShardMsg::Create(message));
            let settled = settle(shared.clone(), id, Some(*instance_id), outcome, |created| {
                CommandOutcome::Created { instance_id: created }
            });
            tokio::spawn(async move { answer(settled.await).await });
            true
        }
        MessageBody::Send { instance_id, event, payload } => {
            let (reply, outcome) = oneshot::channel();
            let message = SendMsg {
                target: *instance_id,
                event: event.as_str().into(),
                payload: payload.clone(),
                trace,
                reply: Some(reply),
                origin: Some(origin),
            };
            shared.send_internal(shared.shard_of(instance_id), ShardMsg::Send(message));
            let settled = settle(shared.clone(), id, Some(*instance_id), outcome, |result| {
                CommandOutcome::Sent { result }
            });
            tokio::spawn(async move { answer(settled.await).await });
            true
        }
        MessageBody::Broadcast { .. } => {
            let mut routed: Routed = Vec::new();
            if let Err(reason) = place(shared, envelope, Some(origin), &mut routed) {
                remote.ack_now(id);
                tokio::spawn(answer(CommandOutcome::failed(&RuntimeError::Invalid(reason), None)));
                return true;
            }
            let (reply, outcome) = oneshot::channel();
            let fan_in = FanIn::new(routed.len(), reply);
            for (shard, mut message) in routed {
                if let ShardMsg::Deliver(deliver) = &mut message {
                    deliver.reply = Some(fan_in.clone());
                }
                shared.send_internal(shard, message);
            }
            let settled = settle(shared.clone(), id, None, outcome, |count| {
                CommandOutcome::Broadcast { count }
            });
            tokio::spawn(async move { answer(settled.await).await });
            true
        }
        // A hook call is made by the runtime that stored it, never sent over a bus.
        MessageBody::Deliver { .. } | MessageBody::HookCall { .. } => false,
    }
}

/// The outcome of a command placed with a reply: `done` of what the shard answered, or the
/// failure. A failed command is acknowledged at once: it was not applied, and its sender is told.
async fn settle<T>(
    shared: Arc<Shared>,
    id: MessageId,
    instance: Option<InstanceId>,
    answered: oneshot::Receiver<Result<T, RuntimeError>>,
    done: impl FnOnce(T) -> CommandOutcome,
) -> CommandOutcome {
    match answered.await {
        Ok(Ok(value)) => done(value),
        Ok(Err(error)) => {
            if let Some(remote) = &shared.remote {
                remote.ack_now(id);
            }
            CommandOutcome::failed(&error, instance)
        }
        Err(_) => CommandOutcome::failed(&RuntimeError::ShuttingDown, instance),
    }
}
