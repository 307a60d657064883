//! The relay: sends stored messages for components hosted elsewhere to their queue, then removes
//! them from the outbox. What it cannot send now stays in the outbox; a sweep every
//! `RELAY_SWEEP_INTERVAL` sends it again. A message may so reach the broker twice (sent, then
//! the process died before its outbox removal was stored): the receiver's inbox drops the copy.
//!
//! The messages of one relay batch for one queue are handed to the bus together
//! (`Bus::enqueue_many`): a backend that pipelines waits for one confirm round trip per batch
//! rather than one per message. Batches follow each other, so a queue's messages leave in the
//! order they were stored. A batch's outbox removal is committed while the next batch is sent
//! (`Removal`: one in flight at a time), never before the broker confirmed its messages.

use super::{RELAY_SWEEP_INTERVAL, RELAY_SWEEP_MIN_AGE, Remote, wire};
use crate::shared::Shared;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use xcomponent_core::bus::{QueueMessage, component_queue};
use xcomponent_core::message::{Envelope, MessageId};
use xcomponent_core::store::{CommitBatch, EventStore};

/// Envelopes sent (and their outbox removals committed) together.
const RELAY_BATCH: usize = 256;

/// Outbox messages read per page by a sweep.
const SWEEP_PAGE: usize = 1_000;

/// Runs until shutdown; on shutdown, tries once to send what is queued.
pub(crate) async fn run_relay(shared: Arc<Shared>, mut queue: mpsc::Receiver<Arc<Envelope>>) {
    let (Some(remote), Some(store)) = (shared.remote.as_ref(), shared.store.clone()) else {
        return;
    };
    let mut shutdown = shared.shutdown.subscribe();
    let mut sweep = tokio::time::interval(RELAY_SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Vec::with_capacity(RELAY_BATCH);
    let mut removal = Removal { store, running: None };
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    while let Ok(envelope) = queue.try_recv() {
                        batch.push(envelope);
                    }
                    send_batch(remote, &mut removal, &mut batch).await;
                    removal.finish().await;
                    return;
                }
            }
            received = queue.recv_many(&mut batch, RELAY_BATCH) => {
                if received == 0 {
                    return;
                }
                send_batch(remote, &mut removal, &mut batch).await;
            }
            _ = sweep.tick() => sweep_outbox(&shared, remote, &mut removal).await,
        }
    }
}

/// The outbox removal of the messages last confirmed, committed while the next batch is sent;
/// at most one is in flight (the next one waits for it).
struct Removal {
    store: Arc<dyn EventStore>,
    running: Option<JoinHandle<()>>,
}

impl Removal {
    /// Commits the removal of `sent` (confirmed by the broker) once the previous one is done.
    async fn start(&mut self, sent: Vec<MessageId>) {
        self.finish().await;
        let store = self.store.clone();
        self.running = Some(tokio::spawn(async move {
            let removal = CommitBatch { delivered: sent, ..CommitBatch::default() };
            if let Err(error) = store.commit(&removal).await {
                // The messages are on the bus; the sweep sends them again and the receiver's
                // inbox drops the copies.
                tracing::warn!(%error, "Outbox removal of sent messages not stored.");
            }
        }));
    }

    /// Waits for the removal in flight, if any.
    async fn finish(&mut self) {
        if let Some(running) = self.running.take()
            && let Err(error) = running.await
        {
            tracing::warn!(%error, "Outbox removal task failed.");
        }
    }
}

/// Sends `batch` and removes what the broker confirmed from the outbox. The messages for one
/// queue go in one `Bus::enqueue_many`, in their order (there is no order between queues).
/// Stops at the first failure: the rest stays in the outbox for the sweep. Returns whether all
/// were sent.
async fn send_batch(
    remote: &Remote,
    removal: &mut Removal,
    batch: &mut Vec<Arc<Envelope>>,
) -> bool {
    // Per target queue, in order of first appearance: the ids and encoded messages.
    let mut queues: Vec<(String, Vec<MessageId>, Vec<QueueMessage>)> = Vec::new();
    for envelope in batch.drain(..) {
        let message = match wire::encode(&envelope) {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(message = %envelope.id, %error, "Envelope cannot be encoded; it stays in the outbox.");
                continue;
            }
        };
        let queue = component_queue(&envelope.component);
        match queues.iter_mut().find(|(name, ..)| *name == queue) {
            Some((_, ids, messages)) => {
                ids.push(envelope.id);
                messages.push(message);
            }
            None => queues.push((queue, vec![envelope.id], vec![message])),
        }
    }
    let mut done: Vec<MessageId> = Vec::new();
    let mut all_sent = true;
    for (queue, ids, messages) in &queues {
        match remote.bus.enqueue_many(queue, messages).await {
            Ok(()) => done.extend_from_slice(ids),
            Err(failure) => {
                let confirmed = failure.confirmed.min(ids.len());
                done.extend_from_slice(&ids[..confirmed]);
                let error = failure.error;
                let refused = ids.get(confirmed).map(ToString::to_string).unwrap_or_default();
                tracing::warn!(message = %refused, %queue, %error, "Bus refused a message; it and the ones after it stay in the outbox and are sent again by the sweep.");
                all_sent = false;
                break;
            }
        }
    }
    if !done.is_empty() {
        removal.start(done).await;
    }
    all_sent
}

/// Sends every outbox message for a component hosted elsewhere that is older than
/// `RELAY_SWEEP_MIN_AGE`, page by page, until a send fails.
async fn sweep_outbox(shared: &Shared, remote: &Remote, removal: &mut Removal) {
    let store = removal.store.clone();
    let min_age = i64::try_from(RELAY_SWEEP_MIN_AGE.as_millis()).unwrap_or(i64::MAX);
    let cutoff = shared.clock.now().saturating_sub(min_age);
    let mut after = None;
    loop {
        let page = match store.pending_messages(after, SWEEP_PAGE).await {
            Ok(page) => page,
            Err(error) => {
                tracing::warn!(%error, "Outbox sweep could not read the outbox.");
                return;
            }
        };
        let Some(last) = page.last() else { return };
        after = Some(last.id);
        let full = page.len() == SWEEP_PAGE;
        let mut batch: Vec<Arc<Envelope>> = page
            .into_iter()
            .filter(|envelope| {
                envelope.created_at <= cutoff
                    && shared.is_remote(&envelope.component)
                    && shared.produced_here(envelope)
            })
            .map(Arc::new)
            .collect();
        if !batch.is_empty() {
            tracing::info!(messages = batch.len(), "Outbox sweep sends messages not sent yet.");
        }
        if !send_batch(remote, removal, &mut batch).await || !full {
            return;
        }
    }
}
