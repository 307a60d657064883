//! The unit of durability: what one shard batch produced (stored events, replies, routed
//! effects, runtime events) and how it ends — committed and released, or rolled back.

use super::ShardWork;
use super::state::Slot;
use crate::error::RuntimeError;
use crate::protocol::{FanIn, QueryMsg, ShardMsg};
use crate::registry::ComponentIdx;
use crate::router::Routed;
use crate::shared::Shared;
use crate::stream::RuntimeEvent;
use crate::views::{BatchOutcome, SendOutcome};
use rustc_hash::FxHashMap;
use std::sync::Arc;
use tokio::sync::oneshot;
use xcomponent_core::instance::InstanceId;
use xcomponent_core::store::CommitBatch;

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
    pub outbox: Routed,
    pub events: Vec<RuntimeEvent>,
    /// Copies of the routed messages this batch applied; re-queued if the batch is rolled back.
    pub retry: Vec<ShardMsg>,
    /// Queries, answered once the batch is settled.
    pub queries: Vec<QueryMsg>,
}

impl ShardWork {
    /// Commits the batch, then releases replies, effects and events; or rolls it back.
    pub(crate) async fn finish_batch(&mut self, shared: &Shared) {
        let mut batch = std::mem::take(&mut self.batch);
        let queries = std::mem::take(&mut batch.queries);
        self.settle_batch(shared, batch).await;
        let now = shared.clock.now();
        for query in queries {
            self.answer(shared, query, now);
        }
    }

    async fn settle_batch(&mut self, shared: &Shared, mut batch: Batch) {
        if let Some(store) = &shared.store
            && !batch.commit.is_empty()
            && let Err(error) = store.commit(&batch.commit).await
        {
            tracing::error!(shard = self.index, events = batch.commit.events.len(), %error, "Commit failed; the batch was rolled back.");
            self.roll_back(shared, batch, error.to_string());
            self.commit_failures = self.commit_failures.saturating_add(1);
            tokio::time::sleep(commit_backoff(self.commit_failures)).await;
            return;
        }
        self.commit_failures = 0;
        for (shard, message) in batch.outbox.drain(..) {
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
    fn roll_back(&mut self, shared: &Shared, mut batch: Batch, error: String) {
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
        let failure = RuntimeError::Storage(error.clone());
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
        // Effects of already stored transitions must not be lost: apply them again later.
        for message in batch.retry.drain(..) {
            shared.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.local.push_back(message);
        }
        let events = batch.commit.events.len();
        let _ = shared.stream.send(Arc::new(vec![RuntimeEvent::CommitFailed { error, events }]));
    }
}
