//! End-to-end receipts. A runtime that stored a message from the bus as done (applied,
//! dropped as a duplicate, or dead-lettered) says so to the runtimes hosting the message's
//! sending component, on that component's receipt channel (`receipt_channel`), after the commit:
//! one bus message per commit and sending component, listing the message ids. The sender removes
//! the receipted messages from its outbox; until then the relay's sweep sends them again (every
//! `RELAY_RESEND_AFTER`, doubling), so a broker that loses messages it had confirmed loses no
//! flow.
//!
//! Receipts are channel messages, at most once: a lost receipt costs one more copy of the
//! message, which the receiver's inbox drops (and receipts again). A durable queue would add a
//! broker confirm and an acknowledgement per receipt for nothing the resend does not already
//! give.

use super::{RELAY_TRACKED_MAX, wire};
use crate::shared::Shared;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use xcomponent_core::bus::{Bus, BusResult, Published, Subscription, receipt_channel};
use xcomponent_core::message::MessageId;
use xcomponent_core::store::{CommitBatch, EventStore};

/// The first pause after the receipt subscription failed (doubled up to `RECEIPTS_BACKOFF_MAX`).
const RECEIPTS_BACKOFF_MIN: Duration = Duration::from_millis(200);
/// The longest pause between two attempts to subscribe to the receipt channels.
const RECEIPTS_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Receipted ids waiting for the outbox removal in flight; past it a receipt is dropped (its
/// message is sent again later and receipted again).
const RECEIPTS_PENDING_MAX: usize = RELAY_TRACKED_MAX;

/// What the receipt listener woke up for.
enum Event {
    Receipt(BusResult<Published>),
    Removed,
    Shutdown,
}

/// Sends the receipt of `received` (stored as done here) to the runtimes hosting `sender`.
/// At most once: a failure is logged, and the sender's sweep sends the messages again.
pub(super) async fn send(bus: &dyn Bus, sender: &str, received: &[MessageId]) {
    let body = match wire::encode_receipt(received) {
        Ok(body) => body,
        Err(error) => {
            tracing::error!(%error, "Receipt cannot be encoded.");
            return;
        }
    };
    if let Err(error) = bus.publish(&receipt_channel(sender), &body).await {
        tracing::debug!(%sender, %error, "Receipt not sent; its messages will be sent again and receipted as duplicates.");
    }
}

/// Runs until shutdown: listens to the receipt channels of the hosted components and removes
/// the receipted messages from the outbox (one removal commit in flight; receipts arriving
/// meanwhile are removed together by the next one).
pub(crate) async fn run_receipts(shared: Arc<Shared>) {
    let (Some(remote), Some(store)) = (shared.remote.as_ref(), shared.store.clone()) else {
        return;
    };
    let channels: Vec<String> = shared
        .registry
        .components()
        .iter()
        .map(|definition| receipt_channel(&definition.name))
        .collect();
    let names: Vec<&str> = channels.iter().map(String::as_str).collect();
    let mut shutdown = shared.shutdown.subscribe();
    let mut pause = RECEIPTS_BACKOFF_MIN;
    let mut removal: Option<JoinHandle<()>> = None;
    let mut pending: Vec<MessageId> = Vec::new();
    'subscribe: loop {
        if *shutdown.borrow_and_update() {
            break;
        }
        let subscribed = tokio::select! {
            subscribed = remote.bus.subscribe(&names) => subscribed,
            _ = shutdown.changed() => break,
        };
        let mut subscription: Box<dyn Subscription> = match subscribed {
            Ok(subscription) => subscription,
            Err(error) => {
                tracing::warn!(%error, "Cannot subscribe to the receipt channels; retrying.");
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => break,
                }
                pause = (pause * 2).min(RECEIPTS_BACKOFF_MAX);
                continue 'subscribe;
            }
        };
        pause = RECEIPTS_BACKOFF_MIN;
        loop {
            let event = {
                let removed = async {
                    match removal.as_mut() {
                        Some(running) => {
                            let _ = running.await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    next = subscription.next() => Event::Receipt(next),
                    () = removed => Event::Removed,
                    _ = shutdown.changed() => Event::Shutdown,
                }
            };
            match event {
                Event::Shutdown => break 'subscribe,
                Event::Removed => removal = None,
                Event::Receipt(Ok(published)) => match wire::decode_receipt(&published.body) {
                    Ok(ids) => {
                        // A partition's copy of a delivery by selector finishes its message
                        // with the last copy's receipt.
                        let ids = match remote.fan_outs.lock() {
                            Ok(mut fan_outs) => fan_outs.receipted(ids),
                            Err(_) => ids,
                        };
                        forget_sent(&shared, &ids);
                        if pending.len() + ids.len() <= RECEIPTS_PENDING_MAX {
                            pending.extend(ids);
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(channel = %published.channel, %reason, "Unreadable receipt dropped.");
                    }
                },
                Event::Receipt(Err(error)) => {
                    tracing::warn!(%error, "Receipt subscription failed; subscribing again.");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.changed() => break 'subscribe,
                    }
                    pause = (pause * 2).min(RECEIPTS_BACKOFF_MAX);
                    continue 'subscribe;
                }
            }
            if removal.is_none() && !pending.is_empty() {
                removal = Some(remove(store.clone(), std::mem::take(&mut pending)));
            }
        }
    }
    if let Some(running) = removal {
        let _ = running.await;
    }
    if !pending.is_empty() {
        let _ = remove(store, pending).await;
    }
}

/// The relay need not remember when these were sent any more.
fn forget_sent(shared: &Shared, ids: &[MessageId]) {
    let Some(remote) = shared.remote.as_ref() else { return };
    if let Ok(mut sent) = remote.sent.lock() {
        for id in ids {
            sent.remove(id);
        }
    }
}

/// Commits the outbox removal of receipted messages.
fn remove(store: Arc<dyn EventStore>, received: Vec<MessageId>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let removal = CommitBatch { delivered: received, ..CommitBatch::default() };
        if let Err(error) = store.commit(&removal).await {
            // They stay in the outbox: sent again by the sweep, receipted again.
            tracing::warn!(%error, "Outbox removal of receipted messages not stored.");
        }
    })
}
