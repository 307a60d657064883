//! `TimedStore`: an `EventStore` decorator that records commit latency and outcomes in the
//! server's metrics (`xcomponent_store_commit_duration_seconds`, `xcomponent_store_commits_total`)
//! and bounds every read by `STORE_READ_TIMEOUT` (a stalled read fails with `Unavailable`
//! instead of holding its caller). Commits are not cut short here: a commit abandoned by its
//! caller may still be written, which would make the runtime's rollback wrong; each backend
//! bounds its own commits (PostgreSQL's `statement_timeout`, SQLite's busy timeout, Redis's
//! response timeout), and the server answers callers within `REQUEST_TIMEOUT` regardless.
//! Wrap the store with it before building the runtime, with the same `Metrics` as the server.

use crate::metrics::Metrics;
use async_trait::async_trait;
use metrics::{Counter, Histogram};
use std::sync::Arc;
use std::time::{Duration, Instant};
use xcomponent_core::instance::{EventId, InstanceId, Millis};
use xcomponent_core::message::{DeadLetter, Envelope, InboxEntry, MessageId};
use xcomponent_core::store::{
    CommitBatch, Error, EventStore, InstanceQuery, InstanceRecord, Page, Result, Retention,
    StoredEvent,
};

/// Longest any read of the store (everything but a commit) may take before it fails.
pub const STORE_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// `call`, failed with `Unavailable` when it takes longer than `STORE_READ_TIMEOUT`.
async fn bounded<T>(call: impl Future<Output = Result<T>>) -> Result<T> {
    match tokio::time::timeout(STORE_READ_TIMEOUT, call).await {
        Ok(result) => result,
        Err(_) => {
            Err(Error::Unavailable(format!("no answer within {} s", STORE_READ_TIMEOUT.as_secs())))
        }
    }
}

/// A store that times its commits.
pub struct TimedStore {
    inner: Arc<dyn EventStore>,
    latency: Histogram,
    ok: Counter,
    failed: Counter,
    events: Counter,
}

impl std::fmt::Debug for TimedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimedStore").field("backend", &self.inner.backend()).finish_non_exhaustive()
    }
}

impl TimedStore {
    /// Wraps `inner`, recording into `metrics`.
    pub fn new(inner: Arc<dyn EventStore>, metrics: &Metrics) -> TimedStore {
        let backend = inner.backend().to_owned();
        TimedStore {
            latency: metrics.histogram(
                "xcomponent_store_commit_duration_seconds",
                &[("backend", backend.clone())],
            ),
            ok: metrics.counter(
                "xcomponent_store_commits_total",
                &[("backend", backend.clone()), ("result", "ok".to_owned())],
            ),
            failed: metrics.counter(
                "xcomponent_store_commits_total",
                &[("backend", backend.clone()), ("result", "error".to_owned())],
            ),
            events: metrics
                .counter("xcomponent_store_committed_events_total", &[("backend", backend)]),
            inner,
        }
    }

    /// Wraps `inner` and returns it ready for `RuntimeBuilder::store`.
    pub fn wrap(inner: Arc<dyn EventStore>, metrics: &Metrics) -> Arc<dyn EventStore> {
        Arc::new(TimedStore::new(inner, metrics))
    }
}

#[async_trait]
impl EventStore for TimedStore {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn commit(&self, batch: &CommitBatch) -> Result<()> {
        let started = Instant::now();
        let result = self.inner.commit(batch).await;
        self.latency.record(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => {
                self.ok.increment(1);
                self.events.increment(batch.events.len() as u64);
            }
            Err(_) => self.failed.increment(1),
        }
        result
    }

    async fn load_active(
        &self,
        after: Option<InstanceId>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>> {
        bounded(self.inner.load_active(after, limit)).await
    }

    async fn instance(&self, id: InstanceId) -> Result<Option<InstanceRecord>> {
        bounded(self.inner.instance(id)).await
    }

    async fn history(&self, id: InstanceId) -> Result<Vec<StoredEvent>> {
        bounded(self.inner.history(id)).await
    }

    async fn search(&self, query: &InstanceQuery) -> Result<Page<InstanceRecord>> {
        bounded(self.inner.search(query)).await
    }

    async fn correlated(&self, correlation_id: EventId, limit: usize) -> Result<Vec<StoredEvent>> {
        bounded(self.inner.correlated(correlation_id, limit)).await
    }

    async fn apply_retention(&self, retention: Retention, now: Millis) -> Result<u64> {
        bounded(self.inner.apply_retention(retention, now)).await
    }

    async fn ping(&self) -> Result<()> {
        bounded(self.inner.ping()).await
    }

    async fn pending_messages(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Envelope>> {
        bounded(self.inner.pending_messages(after, limit)).await
    }

    async fn inbox_entries(&self, messages: &[MessageId]) -> Result<Vec<InboxEntry>> {
        bounded(self.inner.inbox_entries(messages)).await
    }

    async fn purge_inbox(&self, before: Millis) -> Result<u64> {
        bounded(self.inner.purge_inbox(before)).await
    }

    async fn dead_letters(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        bounded(self.inner.dead_letters(after, limit)).await
    }

    async fn dead_letter(&self, message: MessageId) -> Result<Option<DeadLetter>> {
        bounded(self.inner.dead_letter(message)).await
    }

    fn leases(&self) -> Option<&dyn xcomponent_core::lease::LeaseStore> {
        self.inner.leases()
    }
}
