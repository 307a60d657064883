//! The persistence contract: what the runtime writes (events and snapshots, in atomic batches) and
//! what it and the server read back (restore, history, search, correlation chains).
//!
//! Records use names, not indexes, so that a store outlives a change in a YAML file's order.
//! Every stored event carries the state it produced (state, status, armed timers) and what it
//! changed in the instance data (`DataChanges`; a creation carries the whole initial data), so the
//! state of an instance is its latest snapshot (which keeps the whole data) folded with the events
//! after it (`InstanceRecord::apply`). An event costs what it changed, not the size of the data. Backends live in the `xcomponent-store` crate; all of them pass the
//! same conformance suite.

use crate::instance::{EventId, InstanceId, Millis, ParentRef, Status};
use crate::lease::{Fence, LeaseStore};
use crate::message::{DeadLetter, Envelope, InboxEntry, MessageId};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::sync::Arc;

/// Version of the record layout, stored with every event and snapshot.
///
/// 1: every event carries the whole instance data after it (`context`). 2: a transition carries
/// only what it changed (`changes`); a creation still carries the whole initial data. Events of
/// layout 1 are still read: their `context` folds as a full replace.
pub const RECORD_SCHEMA_VERSION: u32 = 2;

/// The event type recorded for an instance's creation.
pub const CREATED_EVENT_TYPE: &str = "INSTANCE_CREATED";

/// A timer as stored: the event of the timed transition leaving `state`, and its absolute deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimerRecord {
    /// Event type of the timeout/auto transition.
    pub event: String,
    /// When it fires (ms since epoch).
    pub deadline: Millis,
}

/// One stored event: an instance's creation or one of its transitions, with what it produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredEvent {
    /// Time-ordered unique id.
    pub id: EventId,
    /// The instance.
    pub instance_id: InstanceId,
    /// Per-instance sequence number, from 1 (the creation) without gaps; unique per instance.
    pub seq: u64,
    /// Component of the instance.
    pub component: Arc<str>,
    /// Machine of the instance.
    pub machine: Arc<str>,
    /// `INSTANCE_CREATED` or the event type that fired the transition.
    pub event_type: Arc<str>,
    /// The event payload (for a creation: the initial data).
    pub payload: Map<String, Value>,
    /// State before (empty for a creation).
    pub state_before: Arc<str>,
    /// State after.
    pub state_after: Arc<str>,
    /// Status after.
    pub status: Status,
    /// The whole instance data after the event: set on a creation (its initial data) and on every
    /// event of record layout 1. `None` on a transition of layout 2, whose data is the previous
    /// data with `changes` applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Map<String, Value>>,
    /// What the event changed in the instance data (top-level keys), applied after `context`.
    #[serde(default, skip_serializing_if = "DataChanges::is_empty")]
    pub changes: DataChanges,
    /// Timers armed after.
    pub timers: Vec<TimerRecord>,
    /// Parent link (set on creation of an inter_machine child).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    /// Created as the entry point (set on creation).
    #[serde(default)]
    pub entry_point: bool,
    /// When it happened (ms since epoch).
    pub timestamp: Millis,
    /// The event or command that directly caused this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<EventId>,
    /// The root of the causal chain (shared across instances and components).
    pub correlation_id: EventId,
    /// Component that sent the event, when it came from another component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_component: Option<Arc<str>>,
}

/// What one event changed in an instance's data, by top-level key: the keys set (added or
/// replaced) with their new values, and the keys removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataChanges {
    /// Keys added or replaced, with their new values.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub set: Map<String, Value>,
    /// Keys removed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

impl DataChanges {
    /// What turns `before` into `after`: the keys of `after` that are new or hold another value,
    /// and the keys of `before` that `after` lacks.
    pub fn between(before: &Map<String, Value>, after: &Map<String, Value>) -> DataChanges {
        let set = after
            .iter()
            .filter(|(key, value)| before.get(key.as_str()) != Some(value))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        let removed =
            before.keys().filter(|key| !after.contains_key(key.as_str())).cloned().collect();
        DataChanges { set, removed }
    }

    /// Nothing changed.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.removed.is_empty()
    }

    /// Applies the changes to `data`: removals first, then the keys set.
    pub fn apply_to(&self, data: &mut Map<String, Value>) {
        for key in &self.removed {
            data.remove(key);
        }
        for (key, value) in &self.set {
            data.insert(key.clone(), value.clone());
        }
    }
}

impl StoredEvent {
    /// The instance data after this event, given the data before it (ignored when the event
    /// carries the whole data).
    pub fn data_after(&self, before: &Map<String, Value>) -> Map<String, Value> {
        let mut data = self.context.as_ref().unwrap_or(before).clone();
        self.changes.apply_to(&mut data);
        data
    }
}

/// The full state of an instance as stored (a snapshot, or the result of a restore).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRecord {
    /// Identity.
    pub id: InstanceId,
    /// Component.
    pub component: String,
    /// Machine.
    pub machine: String,
    /// Current state.
    pub state: String,
    /// Lifecycle.
    pub status: Status,
    /// Created as the component's entry point.
    #[serde(default)]
    pub entry_point: bool,
    /// Sequence number of the last event folded in.
    pub seq: u64,
    /// Creation time.
    pub created_at: Millis,
    /// Time of the last event.
    pub updated_at: Millis,
    /// Instance data.
    pub context: Map<String, Value>,
    /// Parent link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    /// Armed timers.
    #[serde(default)]
    pub timers: Vec<TimerRecord>,
    /// Correlation id of the creation.
    pub correlation_id: EventId,
}

impl InstanceRecord {
    /// The record produced by an instance's first event (its creation).
    pub fn from_creation(event: &StoredEvent) -> InstanceRecord {
        InstanceRecord {
            id: event.instance_id,
            component: event.component.to_string(),
            machine: event.machine.to_string(),
            state: event.state_after.to_string(),
            status: event.status,
            entry_point: event.entry_point,
            seq: event.seq,
            created_at: event.timestamp,
            updated_at: event.timestamp,
            context: event.data_after(&Map::new()),
            parent: event.parent.clone(),
            timers: event.timers.clone(),
            correlation_id: event.correlation_id,
        }
    }

    /// Folds a later event into the record: its whole data when it carries it (a layout 1 event),
    /// then its changes. Events at or below the record's `seq` are skipped, so replaying an
    /// overlapping range is harmless; events must be folded in seq order.
    pub fn apply(&mut self, event: &StoredEvent) {
        if event.seq <= self.seq {
            return;
        }
        // Reuses the string's buffer: folding an event allocates nothing for its state.
        self.state.clear();
        self.state.push_str(&event.state_after);
        self.status = event.status;
        self.seq = event.seq;
        self.updated_at = event.timestamp;
        if let Some(context) = &event.context {
            self.context.clone_from(context);
        }
        event.changes.apply_to(&mut self.context);
        self.timers.clone_from(&event.timers);
    }
}

/// What one commit writes, all or nothing: events (of many instances) and snapshots, the messages
/// those events produced (the outbox), the messages this batch applied (the inbox) and the
/// dead-letter changes.
///
/// Storing a transition's messages in the same transaction as the transition is what makes an
/// effect survive a crash: after a restart every message still in the outbox is delivered again,
/// and the inbox drops the ones already applied.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitBatch {
    /// Events in the order they happened.
    pub events: Vec<StoredEvent>,
    /// Snapshots taken in this batch (each replaces the instance's previous one).
    pub snapshots: Vec<InstanceRecord>,
    /// Messages produced by this batch's transitions, stored as pending until delivered.
    pub outbox: Vec<Envelope>,
    /// Messages applied by this batch, one entry per instance reached. Inserting an entry that
    /// exists already is a no-op (the store keeps a set).
    pub inbox: Vec<InboxEntry>,
    /// Pending messages now fully applied (or dead-lettered): removed from the outbox. An id
    /// that is not in the outbox is ignored.
    pub delivered: Vec<MessageId>,
    /// Messages put in the dead-letter list (an existing entry with the same message id is
    /// replaced).
    pub dead_letters: Vec<DeadLetter>,
    /// Dead letters removed (replayed or discarded). An id that is not in the list is ignored.
    pub dead_letters_removed: Vec<MessageId>,
    /// The lease epochs these writes rely on (`crate::lease`): checked in the same transaction,
    /// and if one was taken by another epoch the whole batch fails with `Error::Fenced`. Empty
    /// for a runtime that does not share its components.
    pub fences: Vec<Fence>,
}

impl CommitBatch {
    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.snapshots.is_empty()
            && self.outbox.is_empty()
            && self.inbox.is_empty()
            && self.delivered.is_empty()
            && self.dead_letters.is_empty()
            && self.dead_letters_removed.is_empty()
    }
}

/// Filters for searching instances (live and finished).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceQuery {
    /// Only this component.
    pub component: Option<String>,
    /// Only this machine.
    pub machine: Option<String>,
    /// Only instances currently in this state.
    pub state: Option<String>,
    /// Only this status.
    pub status: Option<Status>,
    /// Substring searched in the id and the instance data.
    pub text: Option<String>,
    /// Updated at or after.
    pub updated_from: Option<Millis>,
    /// Updated at or before.
    pub updated_to: Option<Millis>,
    /// Page size (the store caps it at `MAX_PAGE_SIZE`).
    pub limit: usize,
    /// Opaque cursor from a previous page.
    pub cursor: Option<String>,
}

/// Largest page any store returns.
pub const MAX_PAGE_SIZE: usize = 1000;

/// One page of results.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Cursor for the next page, if there is one.
    pub next_cursor: Option<String>,
}

/// How long finished instances' events are kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retention {
    /// Delete events and snapshots of instances that finished before `now - keep_finished_ms`.
    pub keep_finished_ms: Option<Millis>,
}

/// Errors of a store.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Another writer already stored this (instance, seq): the batch was not written.
    #[error("sequence conflict: instance {instance_id} already has event {seq}")]
    Conflict {
        /// The instance.
        instance_id: InstanceId,
        /// The duplicated sequence number.
        seq: u64,
    },
    /// The backend could not be reached or failed; nothing of the batch was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The backend refused what the batch holds (a value it cannot store, such as a NUL
    /// character in PostgreSQL, or a value over its size limit); nothing of the batch was
    /// written, and the same content would be refused again, so retrying it is useless. The
    /// runtime commits the other work of such a batch on its own (only the culprit fails).
    #[error("the store refused the content: {0}")]
    Rejected(String),
    /// A lease the batch relies on (`CommitBatch::fences`) has another epoch now: another runtime
    /// took the partition. Nothing of the batch was written, and the writer must drop the
    /// partition (retrying with the same epoch would be refused again).
    #[error("fenced: the lease of {component} partition {partition} is no longer at epoch {epoch}")]
    Fenced {
        /// The component.
        component: String,
        /// The partition.
        partition: crate::lease::Partition,
        /// The epoch the writer held.
        epoch: u64,
    },
    /// Stored data could not be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The store URL or options are wrong.
    #[error("invalid store configuration: {0}")]
    Config(String),
}

/// Result of store operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An append-only event store with snapshots and audit queries.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Short backend name (`memory`, `sqlite`, `postgres`, `redis`).
    fn backend(&self) -> &'static str;

    /// Writes the batch atomically and durably (per the store's durability setting).
    /// A duplicate `(instance_id, seq)` fails the whole batch with `Error::Conflict`.
    async fn commit(&self, batch: &CommitBatch) -> Result<()>;

    /// The live (active) instances, rebuilt as latest snapshot + later events, in pages of at
    /// most `limit`, ordered by id, starting after `after`.
    async fn load_active(
        &self,
        after: Option<crate::InstanceId>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>>;

    /// The current record of one instance (live or finished).
    async fn instance(&self, id: crate::InstanceId) -> Result<Option<InstanceRecord>>;

    /// All events of one instance, by sequence number.
    async fn history(&self, id: crate::InstanceId) -> Result<Vec<StoredEvent>>;

    /// Instances matching the query, most recently updated first.
    async fn search(&self, query: &InstanceQuery) -> Result<Page<InstanceRecord>>;

    /// Every event sharing `correlation_id`, in time order (bounded by `limit`).
    async fn correlated(&self, correlation_id: EventId, limit: usize) -> Result<Vec<StoredEvent>>;

    /// Deletes what the retention policy allows; returns the number of instances purged.
    async fn apply_retention(&self, retention: Retention, now: Millis) -> Result<u64>;

    /// Checks that the backend answers.
    async fn ping(&self) -> Result<()>;

    /// Messages still in the outbox (stored, not yet fully applied), ordered by message id (the
    /// order they were produced in), in pages of at most `limit` starting after `after`.
    async fn pending_messages(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Envelope>>;

    /// The inbox entries of the given messages (which instances already applied them).
    async fn inbox_entries(&self, messages: &[MessageId]) -> Result<Vec<InboxEntry>>;

    /// Deletes inbox entries applied before `before` whose message is no longer in the outbox;
    /// returns how many were deleted. Message ids are UUID v7 drawn when the message is produced,
    /// which is before it is applied, so a backend may find old entries by key range.
    async fn purge_inbox(&self, before: Millis) -> Result<u64>;

    /// The dead-letter list, ordered by message id, in pages of at most `limit` (capped at
    /// `MAX_PAGE_SIZE`) starting after `after`.
    async fn dead_letters(&self, after: Option<MessageId>, limit: usize)
    -> Result<Vec<DeadLetter>>;

    /// One dead letter.
    async fn dead_letter(&self, message: MessageId) -> Result<Option<DeadLetter>>;

    /// The store's leases, when several runtimes can share it (PostgreSQL, Redis, and the memory
    /// store within one process); `None` for a store of one host (SQLite).
    fn leases(&self) -> Option<&dyn LeaseStore> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn data(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            other => panic!("not an object: {other}"),
        }
    }

    fn creation(context: Value) -> StoredEvent {
        serde_json::from_value(json!({
            "id": "0190c2a0-0000-7000-8000-000000000001",
            "instanceId": "0190c2a0-0000-7000-8000-000000000002",
            "seq": 1, "component": "C", "machine": "M", "eventType": CREATED_EVENT_TYPE,
            "payload": {}, "stateBefore": "", "stateAfter": "A", "status": "active",
            "context": context, "timers": [], "timestamp": 10,
            "correlationId": "0190c2a0-0000-7000-8000-000000000001"
        }))
        .expect("a creation event")
    }

    #[test]
    fn changes_between_two_maps_rebuild_the_second() {
        let before = data(json!({"keep": 1, "replace": "old", "drop": [1, 2]}));
        let after = data(json!({"keep": 1, "replace": "new", "add": {"x": true}}));
        let changes = DataChanges::between(&before, &after);
        assert_eq!(changes.set, data(json!({"replace": "new", "add": {"x": true}})));
        assert_eq!(changes.removed, vec!["drop".to_owned()]);
        let mut folded = before.clone();
        changes.apply_to(&mut folded);
        assert_eq!(folded, after);
        assert!(DataChanges::between(&after, &after).is_empty());
    }

    #[test]
    fn a_layout_1_event_replaces_the_data_and_a_layout_2_event_changes_it() {
        let mut record = InstanceRecord::from_creation(&creation(json!({"a": 1, "b": 2})));
        let mut layout_1 = creation(json!({"c": 3}));
        layout_1.seq = 2;
        layout_1.event_type = "GO".into();
        record.apply(&layout_1);
        assert_eq!(record.context, data(json!({"c": 3})), "the whole context replaces the data");

        let mut layout_2: StoredEvent = serde_json::from_value(json!({
            "id": "0190c2a0-0000-7000-8000-000000000003",
            "instanceId": "0190c2a0-0000-7000-8000-000000000002",
            "seq": 3, "component": "C", "machine": "M", "eventType": "GO",
            "payload": {}, "stateBefore": "A", "stateAfter": "B", "status": "active",
            "changes": {"set": {"d": 4}, "removed": ["c"]}, "timers": [], "timestamp": 11,
            "correlationId": "0190c2a0-0000-7000-8000-000000000001"
        }))
        .expect("a layout 2 event");
        assert_eq!(layout_2.context, None);
        record.apply(&layout_2);
        assert_eq!(record.context, data(json!({"d": 4})));
        assert_eq!((record.seq, record.state.as_str()), (3, "B"));

        layout_2.changes = DataChanges::default();
        let encoded = serde_json::to_value(&layout_2).expect("encodable");
        assert!(encoded.get("context").is_none() && encoded.get("changes").is_none());
    }
}
