//! Logic shared by every backend: batch checks, per-instance summaries, the restore fold,
//! search cursors and filters, page bounds and error helpers.
//!
//! Keeping these here means the four backends agree on what a conflict is, how a record is
//! rebuilt, how a page is cut and what a cursor means; the conformance suite checks they do.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::sync::Arc;
use xcomponent_core::instance::{EventId, InstanceId, Millis, Status};
use xcomponent_core::store::{
    CREATED_EVENT_TYPE, CommitBatch, Error, InstanceQuery, InstanceRecord, MAX_PAGE_SIZE, Result,
    StoredEvent,
};

/// Largest number of events `correlated` returns, whatever the caller asks.
pub const MAX_CORRELATED: usize = 10_000;

/// Number of finished instances purged per retention transaction (a call loops until done).
pub const RETENTION_CHUNK: usize = 1_000;

/// Inbox entries deleted per transaction by `purge_inbox` (a call loops until done).
pub const PURGE_CHUNK: usize = 10_000;

/// An error of backend `backend` during `operation`, meaning the backend failed or is unreachable.
pub(crate) fn unavailable(backend: &str, operation: &str, error: impl Display) -> Error {
    Error::Unavailable(format!("{backend} {operation}: {error}"))
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
/// Stored data of backend `backend` that could not be decoded during `operation`.
pub(crate) fn corrupt(backend: &str, operation: &str, error: impl Display) -> Error {
    Error::Corrupt(format!("{backend} {operation}: {error}"))
}

/// Fails with `Conflict` if the batch itself holds the same `(instance, seq)` twice, or a seq of 0.
pub(crate) fn check_batch(batch: &CommitBatch) -> Result<()> {
    let mut seen = HashSet::with_capacity(batch.events.len());
    for event in &batch.events {
        if event.seq == 0 || !seen.insert((event.instance_id, event.seq)) {
            return Err(Error::Conflict { instance_id: event.instance_id, seq: event.seq });
        }
    }
    Ok(())
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
/// Converts a sequence number to the signed integer SQL and Redis store.
pub(crate) fn seq_to_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| Error::Config(format!("sequence number {seq} is out of range")))
}

/// The searchable summary of an instance after a batch: what `fsm_instances` (SQL) or the
/// `inst` hash (Redis) hold. The full record is always rebuilt from snapshot + events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Summary {
    /// The instance.
    pub id: InstanceId,
    /// Component.
    pub component: Arc<str>,
    /// Machine.
    pub machine: Arc<str>,
    /// Current state.
    pub state: Arc<str>,
    /// Current status.
    pub status: Status,
    /// Last sequence number.
    pub seq: u64,
    /// Creation time (time of the first event seen, if the creation was not in the batch).
    pub created_at: Millis,
    /// Time of the last event.
    pub updated_at: Millis,
    /// Created as the entry point.
    pub entry_point: bool,
    /// Correlation id of the creation.
    pub correlation_id: EventId,
    /// Whether the creation facts come from the creation event or a snapshot.
    #[serde(skip)]
    pub origin_known: bool,
}

impl Summary {
    fn from_event(event: &StoredEvent) -> Summary {
        Summary {
            id: event.instance_id,
            component: event.component.clone(),
            machine: event.machine.clone(),
            state: event.state_after.clone(),
            status: event.status,
            seq: event.seq,
            created_at: event.timestamp,
            updated_at: event.timestamp,
            entry_point: event.entry_point,
            correlation_id: event.correlation_id,
            origin_known: event.seq == 1 || *event.event_type == *CREATED_EVENT_TYPE,
        }
    }

    fn from_record(record: &InstanceRecord) -> Summary {
        Summary {
            id: record.id,
            component: record.component.as_str().into(),
            machine: record.machine.as_str().into(),
            state: record.state.as_str().into(),
            status: record.status,
            seq: record.seq,
            created_at: record.created_at,
            updated_at: record.updated_at,
            entry_point: record.entry_point,
            correlation_id: record.correlation_id,
            origin_known: true,
        }
    }

    /// Keeps the current facts of the latest source, and the creation facts of a source that
    /// knows them (a creation event or a snapshot), else of the earliest one.
    fn merge(&mut self, other: Summary) {
        let take_origin = !self.origin_known && (other.origin_known || other.seq < self.seq);
        let origin = if take_origin { &other } else { &*self };
        let (created_at, entry_point, correlation_id, origin_known) =
            (origin.created_at, origin.entry_point, origin.correlation_id, origin.origin_known);
        if other.seq >= self.seq {
            *self = other;
        }
        self.created_at = created_at;
        self.entry_point = entry_point;
        self.correlation_id = correlation_id;
        self.origin_known = origin_known;
    }

    /// Whether the summary passes every filter of `query` except `text` and the cursor.
    pub fn matches(&self, query: &InstanceQuery) -> bool {
        query.component.as_ref().is_none_or(|c| **c == *self.component)
            && query.machine.as_ref().is_none_or(|m| **m == *self.machine)
            && query.state.as_ref().is_none_or(|s| **s == *self.state)
            && query.status.is_none_or(|s| s == self.status)
            && query.updated_from.is_none_or(|t| self.updated_at >= t)
            && query.updated_to.is_none_or(|t| self.updated_at <= t)
    }
}

/// One summary per instance touched by the batch (events and snapshots), sorted by id so that
/// writers lock rows in the same order.
pub(crate) fn summaries(batch: &CommitBatch) -> Vec<Summary> {
    let mut by_id: HashMap<InstanceId, Summary> = HashMap::new();
    let sources = batch.events.iter().map(Summary::from_event);
    for summary in sources.chain(batch.snapshots.iter().map(Summary::from_record)) {
        match by_id.get_mut(&summary.id) {
            Some(existing) => existing.merge(summary),
            None => {
                by_id.insert(summary.id, summary);
            }
        }
    }
    let mut out: Vec<Summary> = by_id.into_values().collect();
    out.sort_by_key(|s| s.id);
    out
}

/// The newest snapshot per instance in the batch, sorted by id.
pub(crate) fn latest_snapshots(batch: &CommitBatch) -> Vec<&InstanceRecord> {
    let mut by_id: HashMap<InstanceId, &InstanceRecord> = HashMap::new();
    for snapshot in &batch.snapshots {
        let slot = by_id.entry(snapshot.id).or_insert(snapshot);
        if snapshot.seq >= slot.seq {
            *slot = snapshot;
        }
    }
    let mut out: Vec<&InstanceRecord> = by_id.into_values().collect();
    out.sort_by_key(|s| s.id);
    out
}

/// Rebuilds a record: the snapshot (if any) folded with the events after it, in seq order.
/// Without a snapshot the first event is the creation. `None` when there is nothing at all.
pub(crate) fn fold<'a>(
    snapshot: Option<InstanceRecord>,
    events: impl IntoIterator<Item = &'a StoredEvent>,
) -> Option<InstanceRecord> {
    let mut record = snapshot;
    for event in events {
        match record.as_mut() {
            Some(record) => record.apply(event),
            None => record = Some(InstanceRecord::from_creation(event)),
        }
    }
    record
}

/// The page size actually used for a search: `limit` capped at `MAX_PAGE_SIZE`; 0 means the cap.
pub(crate) fn page_limit(limit: usize) -> usize {
    if limit == 0 { MAX_PAGE_SIZE } else { limit.min(MAX_PAGE_SIZE) }
}

/// The number of events `correlated` returns: `limit` capped at `MAX_CORRELATED`; 0 means the cap.
pub(crate) fn correlated_limit(limit: usize) -> usize {
    if limit == 0 { MAX_CORRELATED } else { limit.min(MAX_CORRELATED) }
}

/// Position in the search order (most recently updated first, then id descending): results
/// after a cursor are strictly older, or as old with a smaller id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// `updated_at` of the last item returned.
    pub updated_at: Millis,
    /// Id of the last item returned.
    pub id: InstanceId,
}

impl Cursor {
    /// The cursor pointing just after `record`.
    pub fn after(updated_at: Millis, id: InstanceId) -> Cursor {
        Cursor { updated_at, id }
    }

    /// Opaque text form: `<updated_at>_<id>`.
    pub fn encode(self) -> String {
        format!("{}_{}", self.updated_at, self.id)
    }

    /// Parses a cursor issued by `encode`.
    pub fn decode(text: &str) -> Result<Cursor> {
        let invalid = || Error::Config(format!("invalid search cursor {text:?}"));
        let (ts, id) = text.split_once('_').ok_or_else(invalid)?;
        Ok(Cursor {
            updated_at: ts.parse().map_err(|_| invalid())?,
            id: id.parse().map_err(|_| invalid())?,
        })
    }

    /// Whether an item at `(updated_at, id)` comes after this cursor in the search order.
    pub fn precedes(self, updated_at: Millis, id: InstanceId) -> bool {
        updated_at < self.updated_at || (updated_at == self.updated_at && id < self.id)
    }

    /// The query's cursor, decoded.
    pub fn of(query: &InstanceQuery) -> Result<Option<Cursor>> {
        query.cursor.as_deref().map(Cursor::decode).transpose()
    }
}

/// Case-insensitive (ASCII) substring match of `text` in the id or the JSON of the data;
/// the rule every backend implements.
pub(crate) fn text_matches(record: &InstanceRecord, text: &str) -> bool {
    let needle = text.to_ascii_lowercase();
    if record.id.to_string().contains(&needle) {
        return true;
    }
    serde_json::to_string(&record.context)
        .map(|json| json.to_ascii_lowercase().contains(&needle))
        .unwrap_or(false)
}

/// Whether the SQL stores may select `text` search candidates by the text of single events.
///
/// A text without `,`, `{` or `}` that occurs in the JSON of an instance's data lies inside one
/// top-level entry `"key":value`, which is written identically in the event that last set that
/// key (its `context`, or the `set` of its `changes`); so "an event of the instance holds the
/// text" selects every match (and some instances that no longer match, which the check on the
/// rebuilt record drops). Any other text is checked on the rebuilt records only.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn text_prefilter(text: &str) -> bool {
    !text.contains([',', '{', '}'])
}

/// Search candidates examined per round trip, and at most per `search` call when a `text` is
/// checked on rebuilt records: a page may come back short with a cursor when the filters are
/// very selective.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) const SEARCH_CHUNK: usize = 500;
/// See `SEARCH_CHUNK`.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) const SEARCH_SCAN_BUDGET: usize = 50_000;

/// `%text%` for SQL `LIKE ... ESCAPE '\'`, with the wildcards of `text` escaped, lowercased.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn like_pattern(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('%');
    for c in text.to_ascii_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('%');
    out
}

#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
/// Events after each snapshot, grouped by instance, combined into records in id order.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
/// `ids` gives the order; the events of one instance must be contiguous and in seq order.
pub(crate) fn assemble(
    backend: &str,
    ids: &[InstanceId],
    snapshots: Vec<InstanceRecord>,
    events: Vec<StoredEvent>,
) -> Result<Vec<InstanceRecord>> {
    let mut snapshots: HashMap<InstanceId, InstanceRecord> =
        snapshots.into_iter().map(|s| (s.id, s)).collect();
    let mut grouped: HashMap<InstanceId, (usize, usize)> = HashMap::with_capacity(ids.len());
    let mut start = 0;
    while start < events.len() {
        let id = events[start].instance_id;
        let end = start + events[start..].iter().take_while(|e| e.instance_id == id).count();
        grouped.insert(id, (start, end));
        start = end;
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let (from, to) = grouped.get(id).copied().unwrap_or((0, 0));
        match fold(snapshots.remove(id), &events[from..to]) {
            Some(record) => out.push(record),
            None => {
                return Err(corrupt(
                    backend,
                    "restore",
                    format_args!("instance {id} has neither snapshot nor events"),
                ));
            }
        }
    }
    Ok(out)
}

#[cfg(feature = "redis")]
/// Sort key of the search order, as a fixed-width text (Redis sorted-set member, lexicographic).
pub(crate) fn order_key(updated_at: Millis, id: InstanceId) -> String {
    // Shift into u64 so that negative times sort too, then zero-pad to a fixed width.
    let shifted = (updated_at as i128 - i64::MIN as i128) as u64;
    format!("{shifted:020}|{id}")
}

#[cfg(feature = "redis")]
/// Parses an `order_key` back.
pub(crate) fn parse_order_key(key: &str) -> Option<(Millis, InstanceId)> {
    let (shifted, id) = key.split_once('|')?;
    let shifted: u64 = shifted.parse().ok()?;
    let updated_at = (shifted as i128 + i64::MIN as i128) as i64;
    Some((updated_at, id.parse().ok()?))
}

/// The wall clock in ms since the epoch (only for bookkeeping columns such as `applied_at`).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub(crate) fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
