//! A shard: one task that owns a disjoint set of instances and processes their messages in
//! batches. Per batch: take messages (internal first), apply them, fire due timers, then commit
//! every resulting event in one store transaction (group commit). Only after the commit are
//! replies sent, effects routed and runtime events published; if the commit fails, every
//! instance touched by the batch is put back exactly as it was.

pub(crate) mod apply;
mod batch;
mod evict;
mod hook_result;
mod isolate;
mod packed;
pub(crate) mod query;
mod receipt;
mod record;
pub(crate) mod state;

use crate::options::TimerMode;
use crate::protocol::ShardMsg;
use crate::shared::Shared;
use batch::Batch;
use state::Instances;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Longest a shard sleeps before re-checking the clock (bounds drift on a clock that jumps).
const MAX_TIMER_SLEEP: Duration = Duration::from_secs(1);

pub(crate) struct Shard {
    shared: Arc<Shared>,
    external: mpsc::Receiver<ShardMsg>,
    internal: mpsc::UnboundedReceiver<ShardMsg>,
    work: ShardWork,
}

/// Everything a shard mutates while processing (kept apart from `shared` for disjoint borrows).
pub(crate) struct ShardWork {
    pub index: usize,
    pub instances: Instances,
    pub batch: Batch,
    /// Messages this shard routed to itself; processed in the next batch.
    pub local: VecDeque<ShardMsg>,
    /// Whether runtime events are being collected (someone subscribes).
    pub streaming: bool,
    /// Consecutive failed commits (drives the retry pause).
    pub commit_failures: u32,
    /// The shared data of instances whose data is empty.
    pub empty_context: Arc<xcomponent_core::Context>,
}

impl Shard {
    pub fn new(
        index: usize,
        shared: Arc<Shared>,
        external: mpsc::Receiver<ShardMsg>,
        internal: mpsc::UnboundedReceiver<ShardMsg>,
    ) -> Shard {
        Shard {
            shared,
            external,
            internal,
            work: ShardWork {
                index,
                instances: Instances::default(),
                batch: Batch::default(),
                local: VecDeque::new(),
                streaming: false,
                commit_failures: 0,
                empty_context: Arc::default(),
            },
        }
    }

    pub async fn run(mut self) {
        let max_batch = self.shared.options.max_batch.max(1);
        let mut shutdown = self.shared.shutdown.subscribe();
        let mut internal_buf: Vec<ShardMsg> = Vec::with_capacity(max_batch);
        let mut external_buf: Vec<ShardMsg> = Vec::with_capacity(max_batch);
        let mut stopping = *shutdown.borrow();
        loop {
            // Outbox removals and dead letters decided after the last commit are written
            // without waiting for new work.
            if self.work.local.is_empty() && self.work.batch.deferred.is_empty() && !stopping {
                let sleep_for = self.timer_sleep();
                let accept_external = !self.shared.saturated();
                tokio::select! {
                    biased;
                    _ = self.internal.recv_many(&mut internal_buf, max_batch) => {}
                    _ = self.external.recv_many(&mut external_buf, max_batch), if accept_external => {}
                    _ = tokio::time::sleep(sleep_for.unwrap_or(MAX_TIMER_SLEEP)), if sleep_for.is_some() => {}
                    changed = shutdown.changed() => {
                        stopping = changed.is_err() || *shutdown.borrow();
                    }
                }
            }
            self.top_up(&mut internal_buf, &mut external_buf, max_batch);
            if self.shared.store.is_some()
                && !self.shared.options.commit_delay.is_zero()
                && internal_buf.len() + external_buf.len() < max_batch
            {
                self.wait_for_more(&mut external_buf, max_batch).await;
            }
            let idle =
                internal_buf.is_empty() && external_buf.is_empty() && self.work.local.is_empty();
            self.work.streaming = self.shared.stream.receiver_count() > 0;
            let internal_count = internal_buf.len() + self.work.local.len();
            let local: Vec<ShardMsg> = self.work.local.drain(..).collect();
            let durable = self.shared.store.is_some();
            for message in local.into_iter().chain(internal_buf.drain(..)) {
                if durable && let Some(copy) = message.retry_copy() {
                    self.work.batch.retry.push(copy);
                }
                self.work.process(&self.shared, message);
                if durable {
                    self.work.batch.end_unit();
                }
            }
            for message in external_buf.drain(..) {
                self.work.process(&self.shared, message);
                if durable {
                    self.work.batch.end_unit();
                }
            }
            self.work.fire_due_timers(&self.shared, max_batch);
            self.work.finish_batch(&self.shared).await;
            // Only now, after their effects have been routed (and counted), do the processed
            // internal messages stop counting: `in_flight` never drops to 0 while work they
            // caused is about to be routed.
            self.shared.internal_done(internal_count);
            if stopping && idle && self.work.local.is_empty() && self.work.batch.deferred.is_empty()
            {
                break;
            }
        }
    }

    /// How long to sleep for the next timer (realtime mode), `None` when nothing is armed.
    fn timer_sleep(&self) -> Option<Duration> {
        if self.shared.options.timer_mode != TimerMode::Realtime {
            return None;
        }
        let deadline = self.work.instances.next_deadline()?;
        let wait_ms = deadline.saturating_sub(self.shared.clock.now()).max(0);
        Some(Duration::from_millis(u64::try_from(wait_ms).unwrap_or(0)).min(MAX_TIMER_SLEEP))
    }

    /// Takes whatever else is already queued, up to the batch size.
    fn top_up(
        &mut self,
        internal_buf: &mut Vec<ShardMsg>,
        external_buf: &mut Vec<ShardMsg>,
        max_batch: usize,
    ) {
        while internal_buf.len() + external_buf.len() < max_batch {
            match self.internal.try_recv() {
                Ok(message) => internal_buf.push(message),
                Err(_) => break,
            }
        }
        if self.shared.saturated() {
            return;
        }
        while internal_buf.len() + external_buf.len() < max_batch {
            match self.external.try_recv() {
                Ok(message) => external_buf.push(message),
                Err(_) => break,
            }
        }
    }

    /// Group commit with a delay: waits up to `commit_delay` for more external work.
    async fn wait_for_more(&mut self, external_buf: &mut Vec<ShardMsg>, max_batch: usize) {
        let deadline = tokio::time::Instant::now() + self.shared.options.commit_delay;
        while external_buf.len() < max_batch {
            match tokio::time::timeout_at(deadline, self.external.recv()).await {
                Ok(Some(message)) => external_buf.push(message),
                _ => break,
            }
        }
    }
}
