//! Deliveries for a component shared by several runtimes (`crate::partition`): which ones this
//! runtime applies, and how the ones that reached the component's queue (sent by a runtime that
//! does not know the component is shared) are forwarded to their partition's queue.
//!
//! Forwarding an event or a creation re-enqueues the message as it came, on its partition's
//! queue, then acknowledges it: the owner receipts it to its sender, which keeps it in its outbox
//! until then. A delivery by selector is forwarded as one copy per partition
//! (`partition_copy_id`), marked resent so each owner reads its inbox first; once the broker
//! confirmed every copy, the message is acknowledged and receipted to its sender here. A
//! broker that loses confirmed copies then loses them: senders that share the store know the
//! partitions and send the copies themselves, with a receipt per copy.

use super::{receipts, wire};
use crate::partition::PartitionTag;
use crate::shared::Shared;
use std::sync::Arc;
use xcomponent_core::bus::{Delivery, partition_queue};
use xcomponent_core::lease::{Partition, partition_copy_id, partition_of};
use xcomponent_core::message::{Envelope, MessageBody};

/// What to do with a delivery for a shared component.
pub(super) enum Route {
    /// Apply it here.
    Here,
    /// It came through the component's queue and belongs to partitions: forward it.
    Forward,
    /// It is for a partition this runtime no longer owns.
    Elsewhere(Partition),
}

/// Where a delivery for a shared component of `partitions` partitions goes.
pub(super) fn route(
    shared: &Shared,
    envelope: &Envelope,
    tag: Option<PartitionTag>,
    partitions: u32,
    intake: super::inbound::Intake,
) -> Route {
    let from_component_queue = intake == super::inbound::Intake::Component;
    let owned = |partition: Partition| {
        shared
            .partitions
            .as_ref()
            .is_some_and(|state| state.is_ready(&envelope.component, partition))
    };
    if let Some(tag) = tag {
        return if owned(tag.partition) { Route::Here } else { Route::Elsewhere(tag.partition) };
    }
    match &envelope.body {
        MessageBody::Send { instance_id, .. } | MessageBody::Create { instance_id, .. } => {
            let partition = partition_of(*instance_id, partitions);
            if owned(partition) {
                Route::Here
            } else if from_component_queue {
                Route::Forward
            } else {
                Route::Elsewhere(partition)
            }
        }
        MessageBody::Deliver { .. } | MessageBody::Broadcast { .. } => Route::Forward,
        MessageBody::HookCall { .. } => Route::Here,
    }
}

/// Forwards a delivery from the component's queue to its partition queues, then acknowledges it.
/// An error leaves it unacknowledged (the consumer rejoins, the broker delivers it again).
pub(super) async fn forward(
    shared: &Arc<Shared>,
    delivery: Delivery,
    envelope: Envelope,
    reply_to: Option<String>,
    partitions: u32,
) -> Result<(), String> {
    let Some(remote) = shared.remote.as_ref() else { return Err("no bus".into()) };
    match &envelope.body {
        MessageBody::Send { instance_id, .. } | MessageBody::Create { instance_id, .. } => {
            let queue =
                partition_queue(&envelope.component, partition_of(*instance_id, partitions));
            remote.bus.enqueue(&queue, &delivery.message).await.map_err(|e| e.to_string())?;
        }
        _ => {
            for partition in 0..partitions {
                let copy =
                    Envelope { id: partition_copy_id(envelope.id, partition), ..envelope.clone() };
                let tag = PartitionTag { partitions, partition };
                let message = wire::encode(&copy, true, Some(tag)).map_err(|e| e.to_string())?;
                let queue = partition_queue(&envelope.component, partition);
                remote.bus.enqueue(&queue, &message).await.map_err(|e| e.to_string())?;
            }
            if let (Some(sender), None) = (envelope.source_component.as_deref(), &reply_to) {
                receipts::send(remote.bus.as_ref(), sender, &[envelope.id]).await;
            }
        }
    }
    delivery.ack().await.map_err(|error| error.to_string())
}
