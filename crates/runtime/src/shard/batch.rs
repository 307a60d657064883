//! The unit of durability: what one shard batch produced (stored events, replies, routed
//! effects, runtime events) and how it ends — committed and released, or rolled back.

use super::ShardWork;
use super::isolate::Segment;
use super::state::Slot;
use crate::error::RuntimeError;
use crate::placement::{Routed, place};
use crate::protocol::Origin;
use crate::protocol::{FanIn, QueryMsg, ShardMsg};
use crate::registry::ComponentIdx;
use crate::shared::Shared;
use crate::stream::RuntimeEvent;
use crate::views::{BatchOutcome, SendOutcome};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use tokio::sync::oneshot;
use xcomponent_core::instance::InstanceId;
use xcomponent_core::message::{DeadLetter, DeadLetterKind, Envelope, MessageBody, MessageId};
use xcomponent_core::store::{CommitBatch, Error as StoreError, EventStore};

/// Longest pause after repeated commit failures (the first pause is `COMMIT_BACKOFF_START`).
pub(crate) const COMMIT_BACKOFF_MAX: std::time::Duration = std::time::Duration::from_secs(5);
const COMMIT_BACKOFF_START: std::time::Duration = std::time::Duration::from_millis(50);

/// Pause before retrying after `failures` consecutive failed commits (doubling, bounded).
fn commit_backoff(failures: u32) -> std::time::Duration {
    COMMIT_BACKOFF_START.saturating_mul(1u32 << failures.min(16)).min(COMMIT_BACKOFF_MAX)
}

/// A reply held until the batch is durable.
#[derive(Debug)]
pub(crate) enum Reply {
    Created(oneshot::Sender<Result<InstanceId, RuntimeError>>, InstanceId),
    Sent(oneshot::Sender<Result<SendOutcome, RuntimeError>>, SendOutcome),
    Many(oneshot::Sender<BatchOutcome>, BatchOutcome),
    FanIn(Arc<FanIn>, usize),
    Done(oneshot::Sender<()>),
    Count(oneshot::Sender<Result<usize, RuntimeError>>, usize),
}

/// Message bookkeeping that is not tied to a transition of the batch that writes it.
#[derive(Debug, Default)]
pub(crate) struct Deferred {
    pub delivered: Vec<MessageId>,
    pub dead_letters: Vec<DeadLetter>,
}

impl Deferred {
    pub fn is_empty(&self) -> bool {
        self.delivered.is_empty() && self.dead_letters.is_empty()
    }
}

/// What the current batch has produced so far.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub commit: CommitBatch,
    /// Each touched instance as it was before the batch (`None`: created in this batch).
    /// Kept only when a store is used (without one nothing can fail).
    pub undo: FxHashMap<InstanceId, Option<Slot>>,
    /// Singleton claims (`true`) and releases (`false`) made in this batch, in order.
    pub singleton_changes: Vec<(ComponentIdx, InstanceId, bool)>,
    pub replies: Vec<Reply>,
    /// Messages the batch's transitions produced when no store is used (with a store they are
    /// in `commit.outbox`), placed on their shards once the batch is settled.
    pub messages: Vec<Envelope>,
    /// Stored fan-outs whose part this shard applied in this batch: once it is stored, the
    /// shard that stored the last part marks the message delivered.
    pub fan_outs: Vec<Origin>,
    /// Outbox removals and dead letters decided after an earlier commit (a fan-out's last part
    /// stored, a message given up after `MAX_DELIVERY_ATTEMPTS`): written with this batch, and
    /// carried to the next one if it is rolled back.
    pub deferred: Deferred,
    pub events: Vec<RuntimeEvent>,
    /// Copies of the routed messages this batch applied; re-queued if the batch is rolled back.
    pub retry: Vec<ShardMsg>,
    /// Queries, answered once the batch is settled.
    pub queries: Vec<QueryMsg>,
    /// Partitions to drop once the batch is settled (after a rollback that may put back
    /// instances of them).
    pub evictions: Vec<crate::protocol::Eviction>,
    /// Where each unit of work (a message, a fired timer) ends in the lists above, so that a
    /// commit refused for its content can be split (`isolate`). Kept only when a store is used.
    pub segments: Vec<Segment>,
    /// The instances each unit touched, in order (ranges given by `segments`).
    pub touched: Vec<InstanceId>,
}

impl ShardWork {
    /// Commits the batch, then releases replies, effects and events; or rolls it back.
    pub(crate) async fn finish_batch(&mut self, shared: &Shared) {
        let mut batch = std::mem::take(&mut self.batch);
        let queries = std::mem::take(&mut batch.queries);
        let evictions = std::mem::take(&mut batch.evictions);
        let store_failed = self.settle_batch(shared, batch).await;
        for eviction in evictions {
            let dropped = self.evict_partition(
                shared,
                eviction.component,
                eviction.partitions,
                eviction.partition,
            );
            let _ = eviction.reply.send(dropped);
        }
        let now = shared.clock.now();
        for query in queries {
            self.answer(shared, query, now);
        }
        // The batch's copies of the data (stored records, runtime events) are gone: what it
        // touched is idle again.
        self.instances.pack_idle();
        // Queries of this batch are answered before the pause, not after it.
        if store_failed {
            tokio::time::sleep(commit_backoff(self.commit_failures)).await;
        }
    }

    /// Commits the batch and releases it, or rolls it back; true when the store failed (the
    /// caller then pauses). A commit refused for its content is not the store's failure: the
    /// batch's other work is committed on its own (`isolate`), without a pause.
    async fn settle_batch(&mut self, shared: &Shared, mut batch: Batch) -> bool {
        batch.commit.delivered.extend(batch.deferred.delivered.iter().copied());
        batch.commit.dead_letters.extend(batch.deferred.dead_letters.iter().cloned());
        if let Some(store) = &shared.store
            && !batch.commit.is_empty()
            && let Err(error) = self.commit(shared, store, &mut batch.commit).await
        {
            let refused = matches!(error, StoreError::Rejected(_));
            if refused && (batch.segments.len() > 1 || !batch.deferred.is_empty()) {
                tracing::warn!(shard = self.index, events = batch.commit.events.len(), %error, "Commit refused for its content; committing the batch's parts on their own.");
                return self.isolate(shared, store, batch, error).await;
            }
            if let StoreError::Fenced { component, partition, epoch } = &error {
                let (component, partition, epoch) = (component.clone(), *partition, *epoch);
                self.roll_back(shared, batch, error);
                self.fenced(shared, &component, partition, epoch);
                return false;
            }
            tracing::error!(shard = self.index, events = batch.commit.events.len(), %error, "Commit failed; the batch was rolled back.");
            self.roll_back(shared, batch, error);
            if refused {
                return false;
            }
            self.commit_failures = self.commit_failures.saturating_add(1);
            return true;
        }
        self.commit_failures = 0;
        self.release(shared, batch);
        false
    }

    /// One store commit, recorded in the commit health. For components shared with other
    /// runtimes, the commit names the lease epoch of every partition it writes (`fences`).
    pub(super) async fn commit(
        &self,
        shared: &Shared,
        store: &Arc<dyn EventStore>,
        commit: &mut CommitBatch,
    ) -> Result<(), StoreError> {
        if shared.partitions.is_some() {
            let fences: std::collections::BTreeSet<_> = commit
                .events
                .iter()
                .filter_map(|event| shared.fence_of(&event.component, &event.instance_id))
                .collect();
            commit.fences = fences.into_iter().collect();
        }
        shared.commit_health.begin(self.index);
        let result = store.commit(commit).await;
        shared.commit_health.end(self.index, result.as_ref().map(|_| ()));
        result
    }

    /// After a successful commit: places the produced messages, publishes the runtime events and
    /// sends the replies.
    pub(super) fn release(&mut self, shared: &Shared, mut batch: Batch) {
        shared.counters.dead_letters(batch.commit.dead_letters.len());
        shared.settle_deliveries(&batch.commit.delivered);
        // A fan-out is delivered once every shard stored its part.
        for origin in batch.fan_outs.drain(..) {
            let last = origin.pending_shards.as_ref().is_some_and(|pending| {
                pending.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1
            });
            if last {
                self.batch.deferred.delivered.push(origin.id());
            }
        }
        // The produced messages, stored in the outbox when a store is used.
        let durable = shared.store.is_some();
        let produced = if durable {
            std::mem::take(&mut batch.commit.outbox)
        } else {
            std::mem::take(&mut batch.messages)
        };
        let mut routed: Routed = Vec::new();
        for envelope in produced {
            let envelope = Arc::new(envelope);
            let origin = durable.then(|| Origin {
                envelope: envelope.clone(),
                applied: None,
                pending_shards: None,
                attempts: 0,
                partition: None,
            });
            if let MessageBody::HookCall { .. } = envelope.body {
                shared.dispatch_hook_call(envelope, origin);
                continue;
            }
            if let Some(remote) = &shared.remote
                && shared.goes_remote(&envelope)
            {
                remote.send(envelope);
                continue;
            }
            if let Err(reason) = place(shared, &envelope, origin, &mut routed) {
                self.undeliverable(shared, Arc::unwrap_or_clone(envelope), reason);
            }
        }
        for (shard, message) in routed {
            if shard == self.index {
                // Counted like internal messages, so `flush` waits for them too.
                shared.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.local.push_back(message);
            } else {
                shared.send_internal(shard, message);
            }
        }
        // Events first: whoever gets a reply can count on the stream already carrying its events.
        if !batch.events.is_empty() {
            let _ = shared.stream.send(Arc::new(std::mem::take(&mut batch.events)));
        }
        for reply in batch.replies.drain(..) {
            match reply {
                Reply::Created(sender, id) => {
                    let _ = sender.send(Ok(id));
                }
                Reply::Sent(sender, outcome) => {
                    let _ = sender.send(Ok(outcome));
                }
                Reply::Many(sender, outcome) => {
                    let _ = sender.send(outcome);
                }
                Reply::FanIn(fan_in, count) => fan_in.report(Ok(count)),
                Reply::Done(sender) => {
                    let _ = sender.send(());
                }
                Reply::Count(sender, count) => {
                    let _ = sender.send(Ok(count));
                }
            }
        }
    }

    /// Puts every touched instance back as it was and fails the batch's replies.
    pub(super) fn roll_back(
        &mut self,
        shared: &Shared,
        mut batch: Batch,
        error: xcomponent_core::store::Error,
    ) {
        for (id, before) in batch.undo.drain() {
            if let Some(current) = self.instances.by_id(&id) {
                let paths =
                    shared.registry.indexed_paths(current.component, current.instance.machine);
                self.instances.remove(&id, paths);
            }
            if let Some(slot) = before {
                let paths = shared.registry.indexed_paths(slot.component, slot.instance.machine);
                self.instances.insert(slot, paths);
            }
        }
        for (component, id, claimed) in batch.singleton_changes.drain(..).rev() {
            if claimed {
                shared.release_singleton(component, id);
            } else {
                let _ = shared.claim_singleton(component, id);
            }
        }
        let fenced = match &error {
            StoreError::Fenced { component, partition, .. } => {
                Some((component.clone(), *partition))
            }
            _ => None,
        };
        let failure = RuntimeError::Storage(error);
        let error = failure.to_string();
        for reply in batch.replies.drain(..) {
            match reply {
                Reply::Created(sender, _) => {
                    let _ = sender.send(Err(failure.clone()));
                }
                Reply::Sent(sender, _) => {
                    let _ = sender.send(Err(failure.clone()));
                }
                Reply::Many(sender, outcome) => {
                    let _ = sender.send(BatchOutcome {
                        transitioned: 0,
                        ignored: outcome.ignored,
                        failed: outcome.failed + outcome.transitioned,
                    });
                }
                Reply::FanIn(fan_in, _) => fan_in.report(Err(failure.clone())),
                Reply::Done(sender) => {
                    let _ = sender.send(());
                }
                Reply::Count(sender, _) => {
                    let _ = sender.send(Err(failure.clone()));
                }
            }
        }
        // Fenced: the partition is another runtime's now. What this batch applied to it from the
        // bus is handed back to the broker (unacknowledged; its queue's consumer is stopped when
        // the keeper sees the lease lost, which returns it to the queue for the new owner); what
        // this runtime stored stays in the outbox, where the new owner or the sweep finds it.
        // The batch's work for other partitions is retried here like after any failed commit.
        if let Some((component, partition)) = &fenced {
            let (elsewhere, here): (Vec<ShardMsg>, Vec<ShardMsg>) =
                batch.retry.drain(..).partition(|message| {
                    self.targets_partition(shared, message, component, *partition)
                });
            for message in elsewhere {
                if let (Some(origin), Some(remote)) = (message.origin(), &shared.remote) {
                    remote.release(origin.id());
                }
            }
            // The others did not fail: applied again, the attempt not counted.
            for mut message in here {
                message.forgive_attempt();
                shared.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.local.push_back(message);
            }
        }
        // Effects of already stored transitions must not be lost: apply them again later, up
        // to `MAX_DELIVERY_ATTEMPTS`; then the message is dead-lettered (it stays stored).
        for message in batch.retry.drain(..) {
            if let Some(origin) = message.origin()
                && origin.attempts >= MAX_DELIVERY_ATTEMPTS
            {
                let reason = format!("gave up after {} attempts: {error}", origin.attempts);
                let letter =
                    dead_letter(origin, DeadLetterKind::Failed, reason, shared.clock.now());
                self.batch.deferred.delivered.push(origin.id());
                self.batch.deferred.dead_letters.push(letter);
                continue;
            }
            shared.counters.retried(1);
            shared.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.local.push_back(message);
        }
        // Bookkeeping decided before this batch is not lost with it.
        self.batch.deferred.delivered.append(&mut batch.deferred.delivered);
        self.batch.deferred.dead_letters.append(&mut batch.deferred.dead_letters);
        let events = batch.commit.events.len();
        let _ = shared.stream.send(Arc::new(vec![RuntimeEvent::CommitFailed { error, events }]));
    }
}

/// Failed attempts after which a stored message is dead-lettered instead of retried (each
/// attempt waits out the commit back-off, so this is at least a few seconds of failures).
pub(crate) const MAX_DELIVERY_ATTEMPTS: u32 = 8;

/// The dead letter of a stored message.
pub(crate) fn dead_letter(
    origin: &Origin,
    kind: DeadLetterKind,
    reason: String,
    now: xcomponent_core::instance::Millis,
) -> DeadLetter {
    DeadLetter {
        message: Envelope::clone(&origin.envelope),
        kind,
        reason,
        attempts: origin.attempts + 1,
        dead_at: now,
    }
}

impl ShardWork {
    /// A produced message that cannot be placed here (its component or machine is unknown):
    /// dead-lettered and removed from the outbox with the next batch, or only reported without
    /// a store.
    fn undeliverable(&mut self, shared: &Shared, envelope: Envelope, reason: String) {
        tracing::warn!(message = %envelope.id, component = %envelope.component, %reason, "Message cannot be delivered.");
        if self.streaming
            && let Some(source) = envelope.source_instance
        {
            let source_component =
                envelope.source_component.as_deref().unwrap_or(&envelope.component);
            self.batch.events.push(RuntimeEvent::EffectFailed {
                component: shared.registry.index_of(source_component).unwrap_or(0),
                instance: source,
                error: reason.clone(),
            });
        }
        if shared.store.is_some() {
            self.batch.deferred.delivered.push(envelope.id);
            self.batch.deferred.dead_letters.push(DeadLetter {
                message: envelope,
                kind: DeadLetterKind::Undeliverable,
                reason,
                attempts: 1,
                dead_at: shared.clock.now(),
            });
        }
    }
}
