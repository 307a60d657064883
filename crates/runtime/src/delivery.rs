//! Stored messages over a runtime's life: counted as they are applied, dropped as duplicates or
//! dead-lettered; delivered again at start (every message still in the outbox, before new work
//! is taken); replayed or discarded from the dead-letter list; the inbox purged of old entries.
//!
//! An effect of a stored transition is applied exactly once, even across crashes: the message
//! is stored in the same commit as the transition (outbox), the commit that applies it records
//! it (inbox) and removes it from the outbox in the same transaction, and a message delivered
//! again is dropped for every instance its inbox entries name.

use crate::error::RuntimeError;
use crate::handle::RuntimeHandle;
use crate::placement::{Routed, place};
use crate::protocol::Origin;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use xcomponent_core::instance::InstanceId;
use xcomponent_core::message::{DeadLetter, DeadLetterKind, Envelope, MessageBody, MessageId};
use xcomponent_core::store::{CommitBatch, EventStore};

/// Pending messages read per page when delivering again at start.
const REDELIVERY_PAGE: usize = 1_000;

/// How often the inbox is purged of entries older than `RuntimeOptions::inbox_retention`.
pub const INBOX_PURGE_INTERVAL: Duration = Duration::from_secs(60);

/// Counters of stored messages since start (exported by the server's `/metrics`).
#[derive(Debug, Default)]
pub(crate) struct MessageCounters {
    duplicates: AtomicU64,
    dead_letters: AtomicU64,
    redelivered: AtomicU64,
    retried: AtomicU64,
    resent: AtomicU64,
}

impl MessageCounters {
    pub fn duplicates(&self, count: usize) {
        self.duplicates.fetch_add(count as u64, Ordering::Relaxed);
    }
    pub fn dead_letters(&self, count: usize) {
        self.dead_letters.fetch_add(count as u64, Ordering::Relaxed);
    }
    pub fn redelivered(&self, count: usize) {
        self.redelivered.fetch_add(count as u64, Ordering::Relaxed);
    }
    pub fn retried(&self, count: usize) {
        self.retried.fetch_add(count as u64, Ordering::Relaxed);
    }
    pub fn resent(&self, count: usize) {
        self.resent.fetch_add(count as u64, Ordering::Relaxed);
    }
}

/// What happened to stored messages since the runtime started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageCounts {
    /// Deliveries dropped because the target had applied the message already.
    pub duplicates: u64,
    /// Messages put in the dead-letter list.
    pub dead_letters: u64,
    /// Messages delivered again at start (found in the outbox) or replayed.
    pub redelivered: u64,
    /// Deliveries retried after a failed commit.
    pub retried: u64,
    /// Messages to other processes sent again by the outbox sweep because their receipt was
    /// late (or they were never confirmed by the broker): the reconciler's work.
    pub resent: u64,
}

impl RuntimeHandle {
    /// Counters of stored messages since start.
    pub fn message_counts(&self) -> MessageCounts {
        let counters = &self.shared.counters;
        MessageCounts {
            duplicates: counters.duplicates.load(Ordering::Relaxed),
            dead_letters: counters.dead_letters.load(Ordering::Relaxed),
            redelivered: counters.redelivered.load(Ordering::Relaxed),
            retried: counters.retried.load(Ordering::Relaxed),
            resent: counters.resent.load(Ordering::Relaxed),
        }
    }

    fn message_store(&self) -> Result<&Arc<dyn EventStore>, RuntimeError> {
        self.shared
            .store
            .as_ref()
            .ok_or_else(|| RuntimeError::Invalid("messages are stored only with a store".into()))
    }

    /// Delivers every message still in the outbox (stored by a transition, not yet fully
    /// applied), in the order they were produced, and waits until they are applied. Called at
    /// start, before new work is taken. Returns how many were delivered.
    pub(crate) async fn redeliver_pending(&self) -> Result<usize, RuntimeError> {
        self.redeliver_where(|envelope| self.shared.produced_here(envelope)).await
    }

    /// `redeliver_pending`, of the messages `mine` accepts (on a bus: those this runtime
    /// re-sends; at a partition's takeover: those of the partition).
    pub(crate) async fn redeliver_where(
        &self,
        mine: impl Fn(&Envelope) -> bool,
    ) -> Result<usize, RuntimeError> {
        let Some(store) = self.shared.store.clone() else { return Ok(0) };
        let mut after = None;
        let mut total = 0;
        let mut left_for_a_bus = 0;
        loop {
            let page = store
                .pending_messages(after, REDELIVERY_PAGE)
                .await
                .map_err(RuntimeError::Storage)?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let full = page.len() == REDELIVERY_PAGE;
            // A store shared with runtimes on the bus holds their outboxes too: only what this
            // runtime produced is its to deliver.
            let page: Vec<Envelope> = if self.shared.remote.is_some() {
                page.into_iter().filter(|envelope| mine(envelope)).collect()
            } else {
                // Without a bus, a message for a component hosted nowhere here was produced by a
                // distributed deployment on this store (awaiting its receiver's receipt): it
                // stays in the outbox for that deployment, not dead-lettered by this process.
                let (hosted, elsewhere): (Vec<Envelope>, Vec<Envelope>) =
                    page.into_iter().partition(|envelope| {
                        self.shared.registry.index_of(&envelope.component).is_some()
                    });
                left_for_a_bus += elsewhere.len();
                hosted
            };
            total += page.len();
            self.deliver_stored(store.as_ref(), page).await?;
            if !full {
                break;
            }
        }
        if left_for_a_bus > 0 {
            tracing::warn!(
                messages = left_for_a_bus,
                "The outbox holds messages for components this runtime does not host and no bus \
                 is joined: they stay stored for the runtimes that send them over a bus."
            );
        }
        if total > 0 {
            self.shared.counters.redelivered(total);
            tracing::info!(messages = total, "Delivered the messages left in the outbox.");
            self.flush().await?;
        }
        Ok(total)
    }

    /// Places stored messages on their shards, each knowing which instances applied it already.
    async fn deliver_stored(
        &self,
        store: &dyn EventStore,
        messages: Vec<Envelope>,
    ) -> Result<(), RuntimeError> {
        let ids: Vec<MessageId> = messages.iter().map(|message| message.id).collect();
        let entries = store.inbox_entries(&ids).await.map_err(RuntimeError::Storage)?;
        let mut applied: FxHashMap<MessageId, FxHashSet<InstanceId>> = FxHashMap::default();
        for entry in entries {
            applied.entry(entry.message_id).or_default().insert(entry.instance_id);
        }
        let mut undeliverable = CommitBatch::default();
        let mut routed: Routed = Vec::new();
        for envelope in messages {
            let origin = Origin {
                applied: applied.remove(&envelope.id).map(Arc::new),
                envelope: Arc::new(envelope),
                pending_shards: None,
                attempts: 0,
                partition: None,
            };
            let envelope = origin.envelope.clone();
            if let MessageBody::HookCall { .. } = envelope.body {
                self.shared.dispatch_hook_call(envelope, Some(origin));
                continue;
            }
            if let Some(remote) = &self.shared.remote
                && self.shared.goes_remote(&envelope)
            {
                // It may have reached its receiver before (no receipt came back yet).
                remote.resend(envelope);
                continue;
            }
            if let Err(reason) = place(&self.shared, &envelope, Some(origin), &mut routed) {
                tracing::warn!(message = %envelope.id, %reason, "Stored message cannot be delivered.");
                undeliverable.delivered.push(envelope.id);
                undeliverable.dead_letters.push(DeadLetter {
                    message: Envelope::clone(&envelope),
                    kind: DeadLetterKind::Undeliverable,
                    reason,
                    attempts: 1,
                    dead_at: self.shared.clock.now(),
                });
            }
        }
        if !undeliverable.is_empty() {
            store.commit(&undeliverable).await.map_err(RuntimeError::Storage)?;
            self.shared.counters.dead_letters(undeliverable.dead_letters.len());
        }
        for (shard, message) in routed {
            self.shared.send_internal(shard, message);
        }
        Ok(())
    }

    /// The dead-letter list, ordered by message id, in pages of at most `limit`.
    pub async fn dead_letters(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, RuntimeError> {
        self.message_store()?.dead_letters(after, limit).await.map_err(RuntimeError::Storage)
    }

    /// One dead letter.
    pub async fn dead_letter(&self, id: MessageId) -> Result<Option<DeadLetter>, RuntimeError> {
        self.message_store()?.dead_letter(id).await.map_err(RuntimeError::Storage)
    }

    /// Delivers a dead letter again: it goes back to the outbox (in the same transaction that
    /// removes it from the list) and is applied like any stored message, skipping instances
    /// that applied it already. Returns `false` when there is no such dead letter.
    pub async fn replay_dead_letter(&self, id: MessageId) -> Result<bool, RuntimeError> {
        let store = self.message_store()?.clone();
        let Some(letter) = store.dead_letter(id).await.map_err(RuntimeError::Storage)? else {
            return Ok(false);
        };
        let batch = CommitBatch {
            outbox: vec![letter.message.clone()],
            dead_letters_removed: vec![id],
            ..CommitBatch::default()
        };
        store.commit(&batch).await.map_err(RuntimeError::Storage)?;
        self.shared.counters.redelivered(1);
        self.deliver_stored(store.as_ref(), vec![letter.message]).await?;
        Ok(true)
    }

    /// Removes a dead letter for good. Returns `false` when there is no such dead letter.
    pub async fn discard_dead_letter(&self, id: MessageId) -> Result<bool, RuntimeError> {
        let store = self.message_store()?;
        if store.dead_letter(id).await.map_err(RuntimeError::Storage)?.is_none() {
            return Ok(false);
        }
        let batch = CommitBatch { dead_letters_removed: vec![id], ..CommitBatch::default() };
        store.commit(&batch).await.map_err(RuntimeError::Storage)?;
        Ok(true)
    }

    /// Deletes inbox entries older than the inbox retention (never those of a message still in
    /// the outbox). Run every `INBOX_PURGE_INTERVAL` by the runtime.
    pub(crate) async fn purge_inbox(&self) -> Result<u64, RuntimeError> {
        let Some(store) = &self.shared.store else { return Ok(0) };
        let retention =
            i64::try_from(self.shared.options.inbox_retention.as_millis()).unwrap_or(i64::MAX);
        let before = self.shared.clock.now().saturating_sub(retention);
        store.purge_inbox(before).await.map_err(RuntimeError::Storage)
    }
}
