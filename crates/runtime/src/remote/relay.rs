//! The relay: sends stored messages for components hosted elsewhere to their queue, and notes
//! when the broker confirmed each. A message stays in the outbox until its receipt comes back
//! from the runtime that stored it as done (`receipts`); a broker confirm is not enough, as a
//! broker restarted without persistence loses what it had confirmed.
//!
//! A sweep every `RELAY_SWEEP_INTERVAL` reads the outbox and sends again what was never
//! confirmed (broker down, relay queue full: once it is `RELAY_SWEEP_MIN_AGE` old) and what was
//! confirmed but got no receipt within `BusConfig::resend_after` (`RELAY_RESEND_AFTER`, 15 s,
//! by default; the wait doubles at each resend of
//! the same message, up to `RELAY_RESEND_MAX`). A message still without a receipt once it is
//! half the inbox retention old is dead-lettered (`failed`), so no copy can reach a receiver
//! whose inbox forgot it. Resent messages are marked, and the receiver reads its inbox before
//! applying them: copies are dropped, and receipted again.
//!
//! The messages of one relay batch for one queue are handed to the bus together
//! (`Bus::enqueue_many`): a backend that pipelines waits for one confirm round trip per batch
//! rather than one per message. Batches follow each other, so a queue's messages leave in the
//! order they were stored. The relay never waits for receipts: the next batch goes as soon as
//! the previous one is confirmed.

use super::{
    Outgoing, RELAY_RESEND_MAX, RELAY_SWEEP_INTERVAL, RELAY_SWEEP_MIN_AGE, RELAY_TRACKED_MAX,
    Remote, Sent, wire,
};
use crate::partition::PartitionTag;
use crate::shared::{Shared, stopping};
use rustc_hash::{FxHashMap, FxHashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use xcomponent_core::bus::{QueueMessage, component_queue, partition_queue};
use xcomponent_core::lease::{partition_copy_id, partition_of};
use xcomponent_core::message::{DeadLetter, DeadLetterKind, Envelope, MessageBody, MessageId};
use xcomponent_core::store::CommitBatch;

/// Envelopes sent together.
const RELAY_BATCH: usize = 256;

/// Outbox messages read per page by a sweep.
const SWEEP_PAGE: usize = 1_000;

/// Runs until shutdown; on shutdown, tries once to send what is queued.
pub(crate) async fn run_relay(shared: Arc<Shared>, mut queue: mpsc::Receiver<Outgoing>) {
    let Some(remote) = shared.remote.as_ref() else { return };
    if shared.store.is_none() {
        return;
    }
    let mut shutdown = shared.shutdown.subscribe();
    let mut sweep = tokio::time::interval(RELAY_SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(RELAY_BATCH);
    loop {
        tokio::select! {
            () = stopping(&mut shutdown) => {
                while let Ok(outgoing) = queue.try_recv() {
                    batch.push(outgoing);
                }
                send_batch(&shared, remote, &mut batch).await;
                return;
            }
            received = queue.recv_many(&mut batch, RELAY_BATCH) => {
                if received == 0 {
                    return;
                }
                send_batch(&shared, remote, &mut batch).await;
            }
            _ = sweep.tick() => sweep_outbox(&shared, remote).await,
        }
    }
}

/// Sends `batch` and notes what the broker confirmed (it waits for its receipt). The messages
/// for one queue go in one `Bus::enqueue_many`, in their order (there is no order between
/// queues). Stops at the first failure: the rest stays in the outbox for the sweep. Returns
/// whether all were sent.
async fn send_batch(shared: &Shared, remote: &Remote, batch: &mut Vec<Outgoing>) -> bool {
    // Per target queue, in order of first appearance: the ids of the stored messages and the
    // encoded messages (a copy per partition for a delivery by selector to a shared component).
    let mut queues: Vec<(String, Vec<MessageId>, Vec<QueueMessage>)> = Vec::new();
    // Copies of each stored message not yet confirmed by the broker.
    let mut unconfirmed: FxHashMap<MessageId, usize> = FxHashMap::default();
    for Outgoing { envelope, resent } in batch.drain(..) {
        let copies = address(remote, &envelope).await;
        let mut encoded = Vec::with_capacity(copies.len());
        for Copy { queue, id, partition } in copies {
            let copy = match id {
                Some(id) => std::borrow::Cow::Owned(Envelope { id, ..Envelope::clone(&envelope) }),
                None => std::borrow::Cow::Borrowed(&*envelope),
            };
            match wire::encode(&copy, resent, partition) {
                Ok(message) => encoded.push((queue, message)),
                Err(error) => {
                    tracing::error!(message = %envelope.id, %error, "Envelope cannot be encoded; it stays in the outbox.");
                    encoded.clear();
                    break;
                }
            }
        }
        if encoded.is_empty() {
            continue;
        }
        unconfirmed.insert(envelope.id, encoded.len());
        for (queue, message) in encoded {
            match queues.iter_mut().find(|(name, ..)| *name == queue) {
                Some((_, ids, messages)) => {
                    ids.push(envelope.id);
                    messages.push(message);
                }
                None => queues.push((queue, vec![envelope.id], vec![message])),
            }
        }
    }
    // Notes a stored message as sent once the broker confirmed its every copy.
    let mut confirm = |ids: &[MessageId]| {
        let done: Vec<MessageId> = ids
            .iter()
            .filter(|id| {
                unconfirmed.get_mut(*id).is_some_and(|left| {
                    *left = left.saturating_sub(1);
                    *left == 0
                })
            })
            .copied()
            .collect();
        note_sent(shared, remote, &done);
    };
    let mut all_sent = true;
    for (queue, ids, messages) in &queues {
        match remote.bus.enqueue_many(queue, messages).await {
            Ok(()) => confirm(ids),
            Err(failure) => {
                let confirmed = failure.confirmed.min(ids.len());
                confirm(&ids[..confirmed]);
                let error = failure.error;
                let refused = ids.get(confirmed).map(ToString::to_string).unwrap_or_default();
                tracing::warn!(message = %refused, %queue, %error, "Bus refused a message; it and the ones after it stay in the outbox and are sent again by the sweep.");
                all_sent = false;
                break;
            }
        }
    }
    all_sent
}

/// One copy of a stored message on the bus: its queue, its id when it is a partition's copy of
/// a delivery by selector (`partition_copy_id`), and that partition.
struct Copy {
    queue: String,
    id: Option<MessageId>,
    partition: Option<PartitionTag>,
}

/// Where a stored message goes: its component's queue; for a component shared by several
/// runtimes, the queue of its target's partition (an event, a creation: the new instance's
/// partition), or one copy on every partition's queue still without a receipt (a delivery by
/// selector, a broadcast).
async fn address(remote: &Remote, envelope: &Envelope) -> Vec<Copy> {
    let Some(partitions) = remote.directory.partitions(&envelope.component).await else {
        return vec![Copy {
            queue: component_queue(&envelope.component),
            id: None,
            partition: None,
        }];
    };
    match &envelope.body {
        MessageBody::Send { instance_id, .. }
        | MessageBody::Create { instance_id, .. }
        | MessageBody::HookCall { instance_id, .. } => {
            let partition = partition_of(*instance_id, partitions);
            vec![Copy {
                queue: partition_queue(&envelope.component, partition),
                id: None,
                partition: None,
            }]
        }
        MessageBody::Deliver { .. } | MessageBody::Broadcast { .. } => {
            let to_send = match remote.fan_outs.lock() {
                Ok(mut fan_outs) => fan_outs.partitions_to_send(envelope.id, partitions),
                Err(_) => (0..partitions).collect(),
            };
            to_send
                .into_iter()
                .map(|partition| Copy {
                    queue: partition_queue(&envelope.component, partition),
                    id: Some(partition_copy_id(envelope.id, partition)),
                    partition: Some(PartitionTag { partitions, partition }),
                })
                .collect()
        }
    }
}

/// Notes that the broker confirmed `ids` now: the sweep leaves them alone until their receipt
/// is overdue.
fn note_sent(shared: &Shared, remote: &Remote, ids: &[MessageId]) {
    if ids.is_empty() {
        return;
    }
    let now = shared.clock.now();
    let Ok(mut sent) = remote.sent.lock() else { return };
    for id in ids {
        let room = sent.len() < RELAY_TRACKED_MAX;
        match sent.get_mut(id) {
            Some(noted) => {
                noted.at = now;
                noted.times = noted.times.saturating_add(1);
            }
            // Past the bound, the message is not noted: the sweep sends it once more.
            None if room => {
                sent.insert(*id, Sent { at: now, times: 1 });
            }
            None => {}
        }
    }
}

/// How long a message sent `times` times waits for its receipt before it is sent again: the
/// runtime's `BusConfig::resend_after` (`RELAY_RESEND_AFTER` by default), doubled at each resend.
fn resend_wait(first: Duration, times: u32) -> Duration {
    let doublings = times.saturating_sub(1).min(16);
    first.saturating_mul(1 << doublings).min(RELAY_RESEND_MAX.max(first))
}

/// What the sweep does with one outbox message.
enum Due {
    /// Not this sweep's (another runtime's, a local one, too young, or its receipt not due).
    Wait,
    /// Sent again.
    Send,
    /// No receipt for too long: dead-lettered.
    GiveUp,
}

fn due(shared: &Shared, remote: &Remote, envelope: &Envelope, now: i64, give_up: i64) -> Due {
    if !shared.goes_remote(envelope) || !shared.produced_here(envelope) {
        return Due::Wait;
    }
    let min_age = i64::try_from(RELAY_SWEEP_MIN_AGE.as_millis()).unwrap_or(i64::MAX);
    if envelope.created_at > now.saturating_sub(min_age) {
        return Due::Wait;
    }
    if envelope.created_at <= now.saturating_sub(give_up) {
        return Due::GiveUp;
    }
    let noted = remote.sent.lock().ok().and_then(|sent| sent.get(&envelope.id).copied());
    match noted {
        Some(noted) => {
            let wait =
                i64::try_from(resend_wait(remote.config.resend_after, noted.times).as_millis())
                    .unwrap_or(i64::MAX);
            if noted.at <= now.saturating_sub(wait) { Due::Send } else { Due::Wait }
        }
        None => Due::Send,
    }
}

/// Sends again, page by page, every outbox message for a component hosted elsewhere that was
/// never confirmed (and is `RELAY_SWEEP_MIN_AGE` old) or whose receipt is overdue; dead-letters
/// those without a receipt for half the inbox retention. Stops at the first failed send. After
/// a whole pass, forgets the send times of messages no longer in the outbox.
async fn sweep_outbox(shared: &Shared, remote: &Remote) {
    let Some(store) = shared.store.clone() else { return };
    let now = shared.clock.now();
    let give_up =
        i64::try_from((shared.options.inbox_retention / 2).as_millis()).unwrap_or(i64::MAX);
    let mut after = None;
    let mut seen: FxHashSet<MessageId> = FxHashSet::default();
    loop {
        let page = match store.pending_messages(after, SWEEP_PAGE).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "Outbox sweep could not read the outbox.");
                return;
            }
        };
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        let full = page.len() == SWEEP_PAGE;
        let mut batch: Vec<Outgoing> = Vec::new();
        let mut expired = CommitBatch::default();
        for envelope in page {
            seen.insert(envelope.id);
            match due(shared, remote, &envelope, now, give_up) {
                Due::Wait => {}
                Due::Send => batch.push(Outgoing { envelope: Arc::new(envelope), resent: true }),
                Due::GiveUp => {
                    tracing::error!(message = %envelope.id, component = %envelope.component, "No receipt for half the inbox retention: dead-lettered.");
                    expired.delivered.push(envelope.id);
                    expired.dead_letters.push(DeadLetter {
                        reason: format!(
                            "no receipt from component {} within half the inbox retention",
                            envelope.component
                        ),
                        message: envelope,
                        kind: DeadLetterKind::Failed,
                        attempts: 1,
                        dead_at: now,
                    });
                }
            }
        }
        if !expired.delivered.is_empty() {
            if let Err(error) = store.commit(&expired).await {
                tracing::warn!(%error, "Dead letters of unreceipted messages not stored.");
            }
            shared.counters.dead_letters(expired.dead_letters.len());
        }
        if !batch.is_empty() {
            tracing::info!(
                messages = batch.len(),
                "Outbox sweep sends again messages without a receipt."
            );
            shared.counters.resent(batch.len());
            if !send_batch(shared, remote, &mut batch).await {
                return;
            }
        }
        if !full {
            break;
        }
    }
    if let Ok(mut sent) = remote.sent.lock() {
        sent.retain(|id, noted| seen.contains(id) || noted.at >= now);
    }
    if let Ok(mut fan_outs) = remote.fan_outs.lock() {
        fan_outs.retain(|id| seen.contains(id));
    }
}
