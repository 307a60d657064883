//! The relay: sends stored messages for components hosted elsewhere to their queue, then removes
//! them from the outbox. What it cannot send now stays in the outbox; a sweep every
//! `RELAY_SWEEP_INTERVAL` sends it again. A message may so reach the broker twice (sent, then
//! the process died before its outbox removal was stored): the receiver's inbox drops the copy.

use super::{RELAY_SWEEP_INTERVAL, RELAY_SWEEP_MIN_AGE, Remote, wire};
use crate::shared::Shared;
use std::sync::Arc;
use tokio::sync::mpsc;
use xcomponent_core::bus::component_queue;
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
    loop {
        tokio::select! {
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    while let Ok(envelope) = queue.try_recv() {
                        batch.push(envelope);
                    }
                    send_batch(remote, store.as_ref(), &mut batch).await;
                    return;
                }
            }
            received = queue.recv_many(&mut batch, RELAY_BATCH) => {
                if received == 0 {
                    return;
                }
                send_batch(remote, store.as_ref(), &mut batch).await;
            }
            _ = sweep.tick() => sweep_outbox(&shared, remote, store.as_ref()).await,
        }
    }
}

/// Sends `batch` in order and removes what the broker confirmed from the outbox. Stops at the
/// first failure: the rest stays in the outbox for the sweep. Returns whether all were sent.
async fn send_batch(
    remote: &Remote,
    store: &dyn EventStore,
    batch: &mut Vec<Arc<Envelope>>,
) -> bool {
    let mut done: Vec<MessageId> = Vec::with_capacity(batch.len());
    let mut all_sent = true;
    for envelope in batch.drain(..) {
        let message = match wire::encode(&envelope) {
            Ok(message) => message,
            Err(error) => {
                tracing::error!(message = %envelope.id, %error, "Envelope cannot be encoded; it stays in the outbox.");
                continue;
            }
        };
        match remote.bus.enqueue(&component_queue(&envelope.component), &message).await {
            Ok(()) => done.push(envelope.id),
            Err(error) => {
                tracing::warn!(message = %envelope.id, component = %envelope.component, %error, "Bus refused a message; it stays in the outbox and is sent again by the sweep.");
                all_sent = false;
                break;
            }
        }
    }
    batch.clear();
    if !done.is_empty() {
        let removal = CommitBatch { delivered: done, ..CommitBatch::default() };
        if let Err(error) = store.commit(&removal).await {
            // The messages are on the bus; the sweep sends them again and the receiver's inbox
            // drops the copies.
            tracing::warn!(%error, "Outbox removal of sent messages not stored.");
        }
    }
    all_sent
}

/// Sends every outbox message for a component hosted elsewhere that is older than
/// `RELAY_SWEEP_MIN_AGE`, page by page, until a send fails.
async fn sweep_outbox(shared: &Shared, remote: &Remote, store: &dyn EventStore) {
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
        if !send_batch(remote, store, &mut batch).await || !full {
            return;
        }
    }
}
