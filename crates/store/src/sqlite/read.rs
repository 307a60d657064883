//! Read queries of the SQLite store, run on a pooled read-only connection inside one read
//! transaction each (a consistent snapshot of the WAL).
//!
//! Records come from `fold::records` (one statement per page of instances); events are decoded
//! whole for `history` and `correlated`. Pending messages, inbox entries and dead letters are
//! read from their tables by message id.

use super::chain;
use super::fold::{int, opt_text, opt_uuid, records, text, uuid, value};
use super::{BACKEND, err};
use crate::common::{
    Cursor, SEARCH_CHUNK, SEARCH_SCAN_BUDGET, correlated_limit, like_pattern, page_limit,
    text_matches, text_prefilter,
};
use crate::sql::{RawDeadLetter, RawEvent, parse_envelope};
use rusqlite::{Connection, Row, ToSql};
use std::collections::BTreeSet;
use xcomponent_core::instance::{EventId, InstanceId, Millis};
use xcomponent_core::message::{DeadLetter, Envelope, InboxEntry, MessageId};
use xcomponent_core::store::{InstanceQuery, InstanceRecord, Page, Result, StoredEvent};

/// Every column of `fsm_events`, in the order `decode_event` reads them.
const EVENT_COLUMNS: &str = "id, instance_id, seq, component, machine, event_type, payload, state_before, \
    state_after, status, context, timers, parent_id, parent_machine, entry_point, occurred_at, causation_id, \
    correlation_id, source_component, changes";

/// The text form of a 16-byte id (`LIKE` is case-insensitive for ASCII).
const ID_TEXT: &str = "(substr(hex(i.instance_id), 1, 8) || '-' || substr(hex(i.instance_id), 9, 4) || '-' || \
    substr(hex(i.instance_id), 13, 4) || '-' || substr(hex(i.instance_id), 17, 4) || '-' || \
    substr(hex(i.instance_id), 21))";

/// A full `fsm_events` row (`EVENT_COLUMNS`).
fn decode_event(row: &Row<'_>) -> Result<StoredEvent> {
    let value = |i: usize| value(row, i);
    RawEvent {
        id: uuid(value(0)?)?,
        instance_id: uuid(value(1)?)?,
        seq: int(row, 2)?,
        component: text(row, 3)?,
        machine: text(row, 4)?,
        event_type: text(row, 5)?,
        payload: text(row, 6)?,
        state_before: text(row, 7)?,
        state_after: text(row, 8)?,
        status: text(row, 9)?,
        context: opt_text(row, 10)?,
        changes: opt_text(row, 19)?,
        timers: text(row, 11)?,
        parent_id: opt_uuid(value(12)?)?,
        parent_machine: opt_text(row, 13)?,
        entry_point: int(row, 14)? != 0,
        occurred_at: int(row, 15)?,
        causation_id: opt_uuid(value(16)?)?,
        correlation_id: uuid(value(17)?)?,
        source_component: opt_text(row, 18)?,
    }
    .decode(BACKEND)
}

/// Live instances after `after`, in id order, at most `limit`.
pub(super) fn load_active(
    conn: &Connection,
    after: Option<InstanceId>,
    limit: usize,
) -> Result<Vec<InstanceRecord>> {
    // Every 16-byte id sorts after the empty blob.
    let after: Vec<u8> = after.map(|a| a.0.as_bytes().to_vec()).unwrap_or_default();
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let tx = conn.unchecked_transaction().map_err(err("load_active"))?;
    let page = "SELECT ikey, instance_id, seq FROM fsm_instances WHERE status = 'active' AND instance_id > ?1 \
                ORDER BY instance_id LIMIT ?2";
    let mut records = records(&tx, page, &[&after, &limit])?;
    tx.commit().map_err(err("load_active"))?;
    if !records.is_sorted_by_key(|r| r.id) {
        records.sort_unstable_by_key(|r| r.id);
    }
    Ok(records)
}

/// The records of `ids` (those that exist), in the order of `ids`.
fn records_by_id(conn: &Connection, ids: &[InstanceId]) -> Result<Vec<InstanceRecord>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let placeholders = vec!["?"; ids.len()].join(", ");
    let page = format!(
        "SELECT ikey, instance_id, seq FROM fsm_instances WHERE instance_id IN ({placeholders})"
    );
    let binds: Vec<&[u8; 16]> = ids.iter().map(|id| id.0.as_bytes()).collect();
    let params: Vec<&dyn ToSql> = binds.iter().map(|b| b as &dyn ToSql).collect();
    let mut records = records(conn, &page, &params)?;
    records.sort_by_key(|r| ids.iter().position(|id| *id == r.id));
    Ok(records)
}

/// One instance's current record.
pub(super) fn instance(conn: &Connection, id: InstanceId) -> Result<Option<InstanceRecord>> {
    let tx = conn.unchecked_transaction().map_err(err("instance"))?;
    let record = records_by_id(&tx, &[id])?.pop();
    tx.commit().map_err(err("instance"))?;
    Ok(record)
}

/// Every event of one instance, by seq.
pub(super) fn history(conn: &Connection, id: InstanceId) -> Result<Vec<StoredEvent>> {
    let sql = format!(
        "WITH RECURSIVE {} SELECT {EVENT_COLUMNS} FROM walk JOIN fsm_events e ON e.rowid = walk.r ORDER BY e.seq",
        chain::walk_down(
            "SELECT last_event FROM fsm_instances WHERE instance_id = ?1 AND last_event IS NOT NULL"
        )
    );
    let mut statement = conn.prepare_cached(&sql).map_err(err("history"))?;
    let mut rows = statement.query([id.0.as_bytes()]).map_err(err("history"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err("history"))? {
        out.push(decode_event(row)?);
    }
    Ok(out)
}

/// Events of a correlation chain, by time then event id: only the seq ranges that
/// `fsm_correlations` records for the chain are read.
pub(super) fn correlated(
    conn: &Connection,
    correlation_id: EventId,
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    let columns =
        EVENT_COLUMNS.split(", ").map(|c| format!("e.{c}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "WITH RECURSIVE walk(r, low) AS ( \
             SELECT coalesce({}, i.last_event), c.first_seq \
             FROM fsm_correlations c JOIN fsm_instances i ON i.ikey = c.ikey WHERE c.correlation_id = ?1 \
             UNION ALL SELECT e.prev, walk.low FROM walk JOIN fsm_events e ON e.rowid = walk.r \
             WHERE e.seq > walk.low AND e.prev IS NOT NULL) \
         SELECT {columns} FROM walk JOIN fsm_events e ON e.rowid = walk.r WHERE e.correlation_id = ?1 \
         ORDER BY e.occurred_at, e.id LIMIT ?2",
        chain::block_above("c.ikey", "c.last_seq")
    );
    let limit = correlated_limit(limit) as i64;
    let mut statement = conn.prepare_cached(&sql).map_err(err("correlated"))?;
    let mut rows =
        statement.query((correlation_id.0.as_bytes(), limit)).map_err(err("correlated"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err("correlated"))? {
        out.push(decode_event(row)?);
    }
    Ok(out)
}

/// A bind value of a dynamically built query.
enum Bind {
    Text(String),
    Int(i64),
    Blob([u8; 16]),
}

impl Bind {
    fn as_sql(&self) -> &dyn ToSql {
        match self {
            Bind::Text(t) => t,
            Bind::Int(i) => i,
            Bind::Blob(b) => b,
        }
    }
}

/// Instances matching `query`, most recently updated first.
///
/// Without `text` one statement selects the page. With `text`, the current data is no longer in
/// any single row (an event stores what it changed), so the statement selects candidates (the
/// id matches, or an event of the instance holds the text: `text_prefilter`) and the rebuilt
/// records are checked with `text_matches`, in rounds of `SEARCH_CHUNK` candidates and at most
/// `SEARCH_SCAN_BUDGET` per call (then the page comes back short, with a cursor to continue).
pub(super) fn search(conn: &Connection, query: &InstanceQuery) -> Result<Page<InstanceRecord>> {
    let limit = page_limit(query.limit);
    let mut position = Cursor::of(query)?;
    let tx = conn.unchecked_transaction().map_err(err("search"))?;
    let mut items: Vec<InstanceRecord> = Vec::new();
    let mut scanned = 0;
    let fetch = if query.text.is_some() { SEARCH_CHUNK } else { limit + 1 };
    loop {
        let hits = search_candidates(&tx, query, position, fetch)?;
        scanned += hits.len();
        let ids: Vec<InstanceId> = hits.iter().map(|h| h.1).collect();
        let records = records_by_id(&tx, &ids)?;
        items.extend(
            records
                .into_iter()
                .filter(|r| query.text.as_deref().is_none_or(|t| text_matches(r, t)))
                .take(limit + 1 - items.len()),
        );
        position = hits.last().map(|h| Cursor::after(h.0, h.1));
        if query.text.is_none() || hits.len() < fetch {
            position = None;
            break;
        }
        if items.len() > limit || scanned >= SEARCH_SCAN_BUDGET {
            break;
        }
    }
    tx.commit().map_err(err("search"))?;
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|r| Cursor::after(r.updated_at, r.id).encode())
    } else {
        // Budget spent before the page filled: resume after the last candidate examined.
        position.map(Cursor::encode)
    };
    Ok(Page { items, next_cursor })
}

/// `(updated_at, id)` of at most `fetch` instances matching the filters of `query` after
/// `cursor`, most recently updated first; with `text`, a superset of the matches.
fn search_candidates(
    conn: &Connection,
    query: &InstanceQuery,
    cursor: Option<Cursor>,
    fetch: usize,
) -> Result<Vec<(Millis, InstanceId)>> {
    let mut sql =
        String::from("SELECT i.instance_id, i.updated_at FROM fsm_instances i WHERE 1 = 1");
    let mut binds: Vec<Bind> = Vec::new();
    let mut filter = |clause: &str, value: Bind| {
        sql.push_str(clause);
        binds.push(value);
    };
    if let Some(v) = &query.component {
        filter(" AND i.component = ?", Bind::Text(v.clone()));
    }
    if let Some(v) = &query.machine {
        filter(" AND i.machine = ?", Bind::Text(v.clone()));
    }
    if let Some(v) = &query.state {
        filter(" AND i.state = ?", Bind::Text(v.clone()));
    }
    if let Some(v) = query.status {
        filter(" AND i.status = ?", Bind::Text(v.as_str().to_owned()));
    }
    if let Some(v) = query.updated_from {
        filter(" AND i.updated_at >= ?", Bind::Int(v));
    }
    if let Some(v) = query.updated_to {
        filter(" AND i.updated_at <= ?", Bind::Int(v));
    }
    if let Some(c) = cursor {
        filter(" AND (i.updated_at < ?", Bind::Int(c.updated_at));
        filter(" OR (i.updated_at = ?", Bind::Int(c.updated_at));
        filter(" AND i.instance_id < ?))", Bind::Blob(*c.id.0.as_bytes()));
    }
    if let Some(text) = query.text.as_deref().filter(|t| text_prefilter(t)) {
        let pattern = like_pattern(text);
        filter(&format!(" AND ({ID_TEXT} LIKE ? ESCAPE '\\'"), Bind::Text(pattern.clone()));
        filter(
            &format!(
                " OR EXISTS (WITH RECURSIVE {} \
                 SELECT 1 FROM walk JOIN fsm_events e ON e.rowid = walk.r WHERE (e.context LIKE ? ESCAPE '\\'",
                chain::walk_down("SELECT i.last_event WHERE i.last_event IS NOT NULL")
            ),
            Bind::Text(pattern.clone()),
        );
        filter(" OR e.changes LIKE ? ESCAPE '\\')))", Bind::Text(pattern));
    }
    sql.push_str(" ORDER BY i.updated_at DESC, i.instance_id DESC LIMIT ?");
    binds.push(Bind::Int(i64::try_from(fetch).unwrap_or(i64::MAX)));
    let params: Vec<&dyn ToSql> = binds.iter().map(Bind::as_sql).collect();
    let mut statement = conn.prepare(&sql).map_err(err("search"))?;
    let mut rows = statement.query(params.as_slice()).map_err(err("search"))?;
    let mut hits = Vec::new();
    while let Some(row) = rows.next().map_err(err("search"))? {
        hits.push((int(row, 1)?, InstanceId(uuid(value(row, 0)?)?)));
    }
    Ok(hits)
}

/// Pending messages after `after` (all when `None`), in id order, at most `page_limit(limit)`.
pub(super) fn pending_messages(
    conn: &Connection,
    after: Option<MessageId>,
    limit: usize,
) -> Result<Vec<Envelope>> {
    const SQL: &str = "SELECT envelope, schema_version FROM fsm_outbox WHERE message_id > ?1 \
        ORDER BY message_id LIMIT ?2";
    // Every 16-byte id sorts after the empty blob.
    let after: Vec<u8> = after.map(|a| a.0.as_bytes().to_vec()).unwrap_or_default();
    let mut statement = conn.prepare_cached(SQL).map_err(err("pending_messages"))?;
    let mut rows =
        statement.query((after, page_limit(limit) as i64)).map_err(err("pending_messages"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err("pending_messages"))? {
        out.push(parse_envelope(BACKEND, int(row, 1)?, text(row, 0)?)?);
    }
    Ok(out)
}

/// The inbox entries of `messages`, ordered by message then instance (each message once).
pub(super) fn inbox_entries(conn: &Connection, messages: &[MessageId]) -> Result<Vec<InboxEntry>> {
    const SQL: &str = "SELECT instance_id, applied_at FROM fsm_inbox WHERE message_id = ?1 \
        ORDER BY instance_id";
    let wanted: BTreeSet<MessageId> = messages.iter().copied().collect();
    let tx = conn.unchecked_transaction().map_err(err("inbox_entries"))?;
    let mut out = Vec::new();
    {
        let mut statement = tx.prepare_cached(SQL).map_err(err("inbox_entries"))?;
        for message_id in wanted {
            let mut rows =
                statement.query([message_id.0.as_bytes()]).map_err(err("inbox_entries"))?;
            while let Some(row) = rows.next().map_err(err("inbox_entries"))? {
                out.push(InboxEntry {
                    message_id,
                    instance_id: InstanceId(uuid(value(row, 0)?)?),
                    applied_at: int(row, 1)?,
                });
            }
        }
    }
    tx.commit().map_err(err("inbox_entries"))?;
    Ok(out)
}

/// Columns of `fsm_dead_letters` read by `decode_dead_letter`.
const DEAD_LETTER_COLUMNS: &str = "envelope, schema_version, kind, reason, attempts, dead_at";

fn decode_dead_letter(row: &Row<'_>) -> Result<DeadLetter> {
    RawDeadLetter {
        envelope: text(row, 0)?,
        schema_version: int(row, 1)?,
        kind: text(row, 2)?,
        reason: text(row, 3)?,
        attempts: int(row, 4)?,
        dead_at: int(row, 5)?,
    }
    .decode(BACKEND)
}

/// Dead letters after `after` (all when `None`), in id order, at most `page_limit(limit)`.
pub(super) fn dead_letters(
    conn: &Connection,
    after: Option<MessageId>,
    limit: usize,
) -> Result<Vec<DeadLetter>> {
    let sql = format!(
        "SELECT {DEAD_LETTER_COLUMNS} FROM fsm_dead_letters WHERE message_id > ?1 \
         ORDER BY message_id LIMIT ?2"
    );
    let after: Vec<u8> = after.map(|a| a.0.as_bytes().to_vec()).unwrap_or_default();
    let mut statement = conn.prepare_cached(&sql).map_err(err("dead_letters"))?;
    let mut rows =
        statement.query((after, page_limit(limit) as i64)).map_err(err("dead_letters"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err("dead_letters"))? {
        out.push(decode_dead_letter(row)?);
    }
    Ok(out)
}

/// One dead letter.
pub(super) fn dead_letter(conn: &Connection, message: MessageId) -> Result<Option<DeadLetter>> {
    let sql = format!("SELECT {DEAD_LETTER_COLUMNS} FROM fsm_dead_letters WHERE message_id = ?1");
    let mut statement = conn.prepare_cached(&sql).map_err(err("dead_letter"))?;
    let mut rows = statement.query([message.0.as_bytes()]).map_err(err("dead_letter"))?;
    match rows.next().map_err(err("dead_letter"))? {
        Some(row) => Ok(Some(decode_dead_letter(row)?)),
        None => Ok(None),
    }
}
