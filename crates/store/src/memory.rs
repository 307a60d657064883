//! The memory store: the reference implementation of `EventStore`, kept simple on purpose.
//!
//! Everything lives in one `RwLock`ed map ordered by instance id. Records are always rebuilt
//! from the latest snapshot and the events after it, exactly like the durable backends, so the
//! conformance suite exercises the same semantics everywhere. Nothing survives the process.

use crate::common::{
    Cursor, Summary, check_batch, correlated_limit, fold, latest_snapshots, page_limit, summaries,
    text_matches, unavailable,
};
use crate::lease_book::LeaseBook;
use async_trait::async_trait;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;
use uuid::Uuid;
use xcomponent_core::clock::{Clock, SystemClock};
use xcomponent_core::instance::{EventId, InstanceId, Millis, Status};
use xcomponent_core::lease::{Fence, Lease, LeaseStore, LeaseTable, Partition, Renewal};
use xcomponent_core::message::{DeadLetter, Envelope, InboxEntry, MessageId};
use xcomponent_core::store::{
    CommitBatch, Error, EventStore, InstanceQuery, InstanceRecord, Page, Result, Retention,
    StoredEvent,
};

const BACKEND: &str = "memory";

/// Everything stored about one instance.
#[derive(Debug)]
struct Entry {
    /// Events in sequence order.
    events: Events,
    /// Latest snapshot.
    snapshot: Option<InstanceRecord>,
    /// Search summary.
    summary: Summary,
}

impl Entry {
    fn record(&self) -> Option<InstanceRecord> {
        let after = self.snapshot.as_ref().map_or(0, |s| s.seq);
        fold(self.snapshot.clone(), self.events.after(after))
    }
}

/// An instance's events in sequence order. They almost always arrive in order, the next sequence
/// number each time: then the existence check reads the last event only and an insertion is a
/// push, instead of a descent through a tree of large nodes.
#[derive(Debug, Default)]
struct Events(Vec<StoredEvent>);

impl Events {
    /// Where the event with `seq` is (`Ok`) or would go (`Err`).
    fn position(&self, seq: u64) -> std::result::Result<usize, usize> {
        match self.0.last() {
            None => Err(0),
            Some(last) if last.seq < seq => Err(self.0.len()),
            Some(_) => self.0.binary_search_by_key(&seq, |event| event.seq),
        }
    }

    fn get(&self, seq: u64) -> Option<&StoredEvent> {
        self.position(seq).ok().map(|index| &self.0[index])
    }

    /// Inserts in sequence order; an event with the same sequence number is replaced.
    fn insert(&mut self, event: StoredEvent) {
        match self.position(event.seq) {
            Ok(index) => self.0[index] = event,
            Err(index) => self.0.insert(index, event),
        }
    }

    /// The events after sequence number `seq`.
    fn after(&self, seq: u64) -> impl Iterator<Item = &StoredEvent> {
        self.0[self.0.partition_point(|event| event.seq <= seq)..].iter()
    }

    fn iter(&self) -> impl Iterator<Item = &StoredEvent> {
        self.0.iter()
    }
}

/// A correlation's reference to one of its events: (correlation, time, event id, instance, seq),
/// ordered by time within the correlation.
type CorrelationRef = (EventId, Millis, EventId, InstanceId, u64);

#[derive(Debug, Default)]
struct Inner {
    instances: BTreeMap<InstanceId, Entry>,
    /// Every event by correlation, then time: one entry per event, no map or list per correlation.
    correlations: BTreeSet<CorrelationRef>,
    /// Pending messages by id.
    outbox: BTreeMap<MessageId, Envelope>,
    /// Applied messages: (message, instance) → when.
    inbox: BTreeMap<(MessageId, InstanceId), Millis>,
    /// Dead letters by message id.
    dead_letters: BTreeMap<MessageId, DeadLetter>,
    /// Partition counts and leases, checked by commits under the same lock.
    leases: LeaseBook,
}

/// In-process event store.
pub struct MemoryStore {
    inner: RwLock<Inner>,
    /// The store's clock, which times leases (the wall clock unless a test injects one).
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::with_clock(Arc::new(SystemClock))
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// An empty store whose leases are timed by `clock` (tests and simulations move it by hand).
    pub fn with_clock(clock: Arc<dyn Clock>) -> MemoryStore {
        MemoryStore { inner: RwLock::new(Inner::default()), clock }
    }

    fn read(&self, operation: &str) -> Result<RwLockReadGuard<'_, Inner>> {
        self.inner.read().map_err(|_| unavailable(BACKEND, operation, "lock poisoned"))
    }

    fn write(&self, operation: &str) -> Result<RwLockWriteGuard<'_, Inner>> {
        self.inner.write().map_err(|_| unavailable(BACKEND, operation, "lock poisoned"))
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn commit(&self, batch: &CommitBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        check_batch(batch)?;
        // Everything is copied and summarized before the lock is taken: the shards commit
        // concurrently, and the lock is held only to check and insert.
        let summaries = summaries(batch);
        let events = batch.events.clone();
        let snapshots: Vec<InstanceRecord> = latest_snapshots(batch).into_iter().cloned().collect();
        let outbox = batch.outbox.clone();
        let dead_letters = batch.dead_letters.clone();
        let mut inner = self.write("commit")?;
        inner.leases.check(&batch.fences)?;
        for event in &batch.events {
            let exists = inner
                .instances
                .get(&event.instance_id)
                .is_some_and(|e| e.events.position(event.seq).is_ok());
            if exists {
                return Err(Error::Conflict { instance_id: event.instance_id, seq: event.seq });
            }
        }
        for summary in summaries {
            match inner.instances.get_mut(&summary.id) {
                Some(entry) if summary.seq > entry.summary.seq => {
                    let origin = (
                        entry.summary.created_at,
                        entry.summary.entry_point,
                        entry.summary.correlation_id,
                    );
                    entry.summary = summary;
                    (
                        entry.summary.created_at,
                        entry.summary.entry_point,
                        entry.summary.correlation_id,
                    ) = origin;
                }
                Some(_) => {}
                None => {
                    let entry = Entry { events: Events::default(), snapshot: None, summary };
                    inner.instances.insert(entry.summary.id, entry);
                }
            }
        }
        for event in events {
            inner.correlations.insert(correlation_ref(&event));
            if let Some(entry) = inner.instances.get_mut(&event.instance_id) {
                entry.events.insert(event);
            }
        }
        for snapshot in snapshots {
            if let Some(entry) = inner.instances.get_mut(&snapshot.id)
                && entry.snapshot.as_ref().is_none_or(|old| old.seq <= snapshot.seq)
            {
                entry.snapshot = Some(snapshot);
            }
        }
        // Messages: what this batch produced, applied, finished and dead-lettered, in that
        // order (a message produced and finished in one batch leaves nothing pending).
        for message in outbox {
            inner.outbox.insert(message.id, message);
        }
        for entry in &batch.inbox {
            inner.inbox.entry((entry.message_id, entry.instance_id)).or_insert(entry.applied_at);
        }
        for id in &batch.delivered {
            inner.outbox.remove(id);
        }
        for letter in dead_letters {
            inner.dead_letters.insert(letter.message.id, letter);
        }
        for id in &batch.dead_letters_removed {
            inner.dead_letters.remove(id);
        }
        Ok(())
    }

    async fn load_active(
        &self,
        after: Option<InstanceId>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>> {
        let inner = self.read("load_active")?;
        let range = match after {
            Some(after) => inner
                .instances
                .range((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
            None => inner.instances.range(..),
        };
        Ok(range
            .filter(|(_, entry)| entry.summary.status == Status::Active)
            .filter_map(|(_, entry)| entry.record())
            .filter(|record| record.status == Status::Active)
            .take(limit)
            .collect())
    }

    async fn instance(&self, id: InstanceId) -> Result<Option<InstanceRecord>> {
        Ok(self.read("instance")?.instances.get(&id).and_then(Entry::record))
    }

    async fn history(&self, id: InstanceId) -> Result<Vec<StoredEvent>> {
        let inner = self.read("history")?;
        Ok(inner.instances.get(&id).map(|e| e.events.iter().cloned().collect()).unwrap_or_default())
    }

    async fn search(&self, query: &InstanceQuery) -> Result<Page<InstanceRecord>> {
        let limit = page_limit(query.limit);
        let cursor = Cursor::of(query)?;
        let inner = self.read("search")?;
        let mut candidates: Vec<&Entry> = inner
            .instances
            .values()
            .filter(|e| e.summary.matches(query))
            .filter(|e| cursor.is_none_or(|c| c.precedes(e.summary.updated_at, e.summary.id)))
            .collect();
        candidates.sort_by_key(|e| std::cmp::Reverse((e.summary.updated_at, e.summary.id)));
        let mut items = Vec::with_capacity(limit.min(candidates.len()));
        let mut next_cursor = None;
        for entry in candidates {
            let Some(record) = entry.record() else { continue };
            if query.text.as_deref().is_some_and(|text| !text_matches(&record, text)) {
                continue;
            }
            if items.len() == limit {
                next_cursor = items
                    .last()
                    .map(|r: &InstanceRecord| Cursor::after(r.updated_at, r.id).encode());
                break;
            }
            items.push(record);
        }
        Ok(Page { items, next_cursor })
    }

    async fn correlated(&self, correlation_id: EventId, limit: usize) -> Result<Vec<StoredEvent>> {
        let inner = self.read("correlated")?;
        let first = (correlation_id, Millis::MIN, EventId(Uuid::nil()), InstanceId(Uuid::nil()), 0);
        let last =
            (correlation_id, Millis::MAX, EventId(Uuid::max()), InstanceId(Uuid::max()), u64::MAX);
        Ok(inner
            .correlations
            .range(first..=last)
            .filter_map(|(_, _, _, id, seq)| {
                inner.instances.get(id).and_then(|e| e.events.get(*seq)).cloned()
            })
            .take(correlated_limit(limit))
            .collect())
    }

    async fn apply_retention(&self, retention: Retention, now: Millis) -> Result<u64> {
        let Some(keep) = retention.keep_finished_ms else { return Ok(0) };
        let cutoff = now.saturating_sub(keep);
        let mut inner = self.write("apply_retention")?;
        let purged: Vec<InstanceId> = inner
            .instances
            .values()
            .filter(|e| e.summary.status != Status::Active && e.summary.updated_at < cutoff)
            .map(|e| e.summary.id)
            .collect();
        for id in &purged {
            if let Some(entry) = inner.instances.remove(id) {
                for event in entry.events.iter() {
                    inner.correlations.remove(&correlation_ref(event));
                }
            }
        }
        Ok(purged.len() as u64)
    }

    async fn ping(&self) -> Result<()> {
        self.read("ping").map(|_| ())
    }

    async fn pending_messages(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Envelope>> {
        let inner = self.read("pending_messages")?;
        Ok(after_key(&inner.outbox, after).take(page_limit(limit)).cloned().collect())
    }

    async fn inbox_entries(&self, messages: &[MessageId]) -> Result<Vec<InboxEntry>> {
        let inner = self.read("inbox_entries")?;
        let wanted: BTreeSet<MessageId> = messages.iter().copied().collect();
        let mut entries = Vec::new();
        for message_id in wanted {
            let range = (message_id, InstanceId(uuid::Uuid::nil()))
                ..=(message_id, InstanceId(uuid::Uuid::max()));
            entries.extend(inner.inbox.range(range).map(|(&(message_id, instance_id), &at)| {
                InboxEntry { message_id, instance_id, applied_at: at }
            }));
        }
        Ok(entries)
    }

    async fn purge_inbox(&self, before: Millis) -> Result<u64> {
        let mut inner = self.write("purge_inbox")?;
        let Inner { inbox, outbox, .. } = &mut *inner;
        let count = inbox.len();
        inbox.retain(|(message_id, _), at| *at >= before || outbox.contains_key(message_id));
        Ok((count - inbox.len()) as u64)
    }

    async fn dead_letters(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let inner = self.read("dead_letters")?;
        Ok(after_key(&inner.dead_letters, after).take(page_limit(limit)).cloned().collect())
    }

    async fn dead_letter(&self, message: MessageId) -> Result<Option<DeadLetter>> {
        Ok(self.read("dead_letter")?.dead_letters.get(&message).cloned())
    }

    fn leases(&self) -> Option<&dyn LeaseStore> {
        Some(self)
    }
}

/// The values of `map` whose keys come after `after` (all of them when `None`), in key order.
fn after_key<V>(
    map: &BTreeMap<MessageId, V>,
    after: Option<MessageId>,
) -> impl Iterator<Item = &V> {
    let lower = match after {
        Some(after) => std::ops::Bound::Excluded(after),
        None => std::ops::Bound::Unbounded,
    };
    map.range((lower, std::ops::Bound::Unbounded)).map(|(_, value)| value)
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn partitions(&self, component: &str, wanted: u32) -> Result<u32> {
        self.write("partitions")?.leases.partitions(component, wanted)
    }

    async fn lease_table(&self, component: &str) -> Result<LeaseTable> {
        Ok(self.read("lease_table")?.leases.table(component, self.clock.now()))
    }

    async fn join(&self, component: &str, owner: &str, ttl: Duration) -> Result<()> {
        let now = self.clock.now();
        self.write("join")?.leases.join(component, owner, ttl, now)
    }

    async fn acquire(
        &self,
        component: &str,
        partition: Partition,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<Lease>> {
        let now = self.clock.now();
        self.write("acquire")?.leases.acquire(component, partition, owner, ttl, now)
    }

    async fn renew(&self, owner: &str, fences: &[Fence], ttl: Duration) -> Result<Vec<Renewal>> {
        let now = self.clock.now();
        Ok(self.write("renew")?.leases.renew(owner, fences, ttl, now))
    }

    async fn release(&self, fence: &Fence) -> Result<()> {
        self.write("release")?.leases.release(fence);
        Ok(())
    }
}

/// The correlation index's entry for `event`.
fn correlation_ref(event: &StoredEvent) -> CorrelationRef {
    (event.correlation_id, event.timestamp, event.id, event.instance_id, event.seq)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(seq: u64) -> StoredEvent {
        serde_json::from_value(json!({
            "id": Uuid::now_v7(), "instanceId": Uuid::nil(), "seq": seq,
            "component": "C", "machine": "M", "eventType": format!("E{seq}"), "payload": {},
            "stateBefore": "A", "stateAfter": "B", "status": "active", "timers": [],
            "timestamp": 1, "correlationId": Uuid::nil()
        }))
        .expect("a stored event")
    }

    fn seqs(events: &Events) -> Vec<u64> {
        events.iter().map(|event| event.seq).collect()
    }

    #[test]
    fn events_stay_in_sequence_order_whatever_order_they_arrive_in() {
        let mut events = Events::default();
        for seq in [1, 2, 5, 3, 4, 7] {
            events.insert(event(seq));
        }
        assert_eq!(seqs(&events), [1, 2, 3, 4, 5, 7]);
        assert_eq!(events.get(4).map(|event| &*event.event_type), Some("E4"));
        assert!(events.get(6).is_none() && events.get(8).is_none() && events.get(0).is_none());
        assert_eq!(events.after(3).map(|event| event.seq).collect::<Vec<_>>(), [4, 5, 7]);
        assert_eq!(events.after(7).count(), 0);
        assert_eq!(events.after(0).count(), 6);
    }

    #[test]
    fn an_event_with_a_stored_sequence_number_replaces_it() {
        let mut events = Events::default();
        events.insert(event(1));
        events.insert(event(2));
        let mut again = event(1);
        again.event_type = "AGAIN".into();
        events.insert(again);
        assert_eq!(seqs(&events), [1, 2]);
        assert_eq!(events.get(1).map(|event| &*event.event_type), Some("AGAIN"));
        assert_eq!(events.position(1), Ok(0));
        assert_eq!(events.position(3), Err(2));
    }
}
