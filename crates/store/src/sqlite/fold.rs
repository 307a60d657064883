//! Rebuilding records: latest snapshot + the events after it, ONE row per instance.
//!
//! Every stored event carries the whole state it produced (state, status, data, timers), and
//! `InstanceRecord::apply` replaces those fields and skips events at or below the record's seq;
//! so folding the events after the base is the same as applying the last of them. Each row
//! therefore holds the base (the snapshot, or the creation = the first event when there is no
//! snapshot) and the last event when it is newer than the base. The last event is the one at
//! `fsm_instances.seq`: the writer keeps that column at the highest seq of the instance's events
//! and snapshot, so either that event exists or the snapshot is at least as new as every event. The record is `from_creation(first)` or the snapshot, then `apply(last)`:
//! the same `InstanceRecord` functions as every other backend. The creation's data and timers
//! are not even read when a later event replaces them.

use super::{BACKEND, err};
use crate::common::corrupt;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row, ToSql};
use serde_json::Map;
use uuid::Uuid;
use xcomponent_core::instance::{EventId, InstanceId, ParentRef};
use xcomponent_core::store::{Error, InstanceRecord, Result, StoredEvent};

/// Columns 0..=2: the instance and its snapshot; 3..=14: the first event when there is no
/// snapshot (data and timers only when no later event replaces them); 15..=20: the last event
/// when it is newer than the base.
const SELECT: &str = "p.instance_id, s.seq, s.record, \
    f.seq, f.component, f.machine, f.state_after, f.status, \
    CASE WHEN l.seq IS NULL THEN f.context END, CASE WHEN l.seq IS NULL THEN f.timers END, \
    f.parent_id, f.parent_machine, f.entry_point, f.occurred_at, f.correlation_id, \
    l.seq, l.state_after, l.status, l.context, l.timers, l.occurred_at";

/// The records of the instances `page` selects (columns `ikey`, `instance_id`, `seq` of
/// `fsm_instances`), in its order.
pub(super) fn records(
    conn: &Connection,
    page: &str,
    params: &[&dyn ToSql],
) -> Result<Vec<InstanceRecord>> {
    let sql = format!(
        "WITH p AS ({page}) SELECT {SELECT} FROM p \
         LEFT JOIN fsm_snapshots s ON s.ikey = p.ikey \
         LEFT JOIN fsm_events f ON s.ikey IS NULL \
             AND f.rowid = (SELECT rowid FROM fsm_events WHERE ikey = p.ikey ORDER BY seq LIMIT 1) \
         LEFT JOIN fsm_events l ON p.seq > coalesce(s.seq, f.seq) AND l.ikey = p.ikey AND l.seq = p.seq"
    );
    let mut statement = conn.prepare_cached(&sql).map_err(err("restore"))?;
    let mut rows = statement.query(params).map_err(err("restore"))?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(err("restore"))? {
        out.push(record(row)?);
    }
    Ok(out)
}

fn record(row: &Row<'_>) -> Result<InstanceRecord> {
    let id = InstanceId(uuid(value(row, 0)?)?);
    let mut record = if !is_null(row, 2)? {
        json(row, 2, "snapshot record")?
    } else if !is_null(row, 3)? {
        InstanceRecord::from_creation(&first_event(row, id)?)
    } else {
        return Err(corrupt(
            BACKEND,
            "restore",
            format_args!("instance {id} has neither snapshot nor events"),
        ));
    };
    if !is_null(row, 15)? {
        record.apply(&last_event(row, id)?);
    }
    Ok(record)
}

/// The creation as `from_creation` reads it (id, type, payload and previous state are never
/// read: left blank; data and timers blank when a later event replaces them).
fn first_event(row: &Row<'_>, instance_id: InstanceId) -> Result<StoredEvent> {
    let parent = match (opt_uuid(value(row, 10)?)?, opt_text(row, 11)?) {
        (Some(id), Some(machine)) => {
            Some(ParentRef { instance_id: InstanceId(id), machine: machine.to_owned() })
        }
        (None, None) => None,
        _ => {
            return Err(corrupt(
                BACKEND,
                "event row",
                "parent_id and parent_machine must both be set or null",
            ));
        }
    };
    Ok(StoredEvent {
        id: EventId(Uuid::nil()),
        instance_id,
        seq: crate::sql::parse_seq(BACKEND, int(row, 3)?)?,
        component: text(row, 4)?.to_owned(),
        machine: text(row, 5)?.to_owned(),
        event_type: String::new(),
        payload: Map::new(),
        state_before: String::new(),
        state_after: text(row, 6)?.to_owned(),
        status: crate::sql::parse_status(BACKEND, text(row, 7)?)?,
        context: opt_json(row, 8, "context column")?.unwrap_or_default(),
        timers: opt_json(row, 9, "timers column")?.unwrap_or_default(),
        parent,
        entry_point: int(row, 12)? != 0,
        timestamp: int(row, 13)?,
        causation_id: None,
        correlation_id: EventId(uuid(value(row, 14)?)?),
        source_component: None,
    })
}

/// The last event as `apply` reads it (seq, state, status, data, timers, time).
fn last_event(row: &Row<'_>, instance_id: InstanceId) -> Result<StoredEvent> {
    Ok(StoredEvent {
        id: EventId(Uuid::nil()),
        instance_id,
        seq: crate::sql::parse_seq(BACKEND, int(row, 15)?)?,
        component: String::new(),
        machine: String::new(),
        event_type: String::new(),
        payload: Map::new(),
        state_before: String::new(),
        state_after: text(row, 16)?.to_owned(),
        status: crate::sql::parse_status(BACKEND, text(row, 17)?)?,
        context: json(row, 18, "context column")?,
        timers: json(row, 19, "timers column")?,
        parent: None,
        entry_point: false,
        timestamp: int(row, 20)?,
        causation_id: None,
        correlation_id: EventId(Uuid::nil()),
        source_component: None,
    })
}

fn is_null(row: &Row<'_>, i: usize) -> Result<bool> {
    Ok(matches!(value(row, i)?, ValueRef::Null))
}

pub(super) fn get_err(e: rusqlite::Error) -> Error {
    corrupt(BACKEND, "row", e)
}

pub(super) fn value<'r>(row: &'r Row<'_>, i: usize) -> Result<ValueRef<'r>> {
    row.get_ref(i).map_err(get_err)
}

pub(super) fn uuid(value: ValueRef<'_>) -> Result<Uuid> {
    let bytes = value.as_blob().map_err(|e| corrupt(BACKEND, "id column", e))?;
    Uuid::from_slice(bytes).map_err(|e| corrupt(BACKEND, "id column", e))
}

pub(super) fn opt_uuid(value: ValueRef<'_>) -> Result<Option<Uuid>> {
    match value {
        ValueRef::Null => Ok(None),
        other => uuid(other).map(Some),
    }
}

pub(super) fn text<'r>(row: &'r Row<'_>, i: usize) -> Result<&'r str> {
    value(row, i)?.as_str().map_err(|e| corrupt(BACKEND, "text column", e))
}

pub(super) fn opt_text<'r>(row: &'r Row<'_>, i: usize) -> Result<Option<&'r str>> {
    value(row, i)?.as_str_or_null().map_err(|e| corrupt(BACKEND, "text column", e))
}

pub(super) fn int(row: &Row<'_>, i: usize) -> Result<i64> {
    row.get(i).map_err(get_err)
}

fn json<T: serde::de::DeserializeOwned>(row: &Row<'_>, i: usize, what: &str) -> Result<T> {
    serde_json::from_str(text(row, i)?).map_err(|e| corrupt(BACKEND, what, e))
}

fn opt_json<T: serde::de::DeserializeOwned>(
    row: &Row<'_>,
    i: usize,
    what: &str,
) -> Result<Option<T>> {
    opt_text(row, i)?
        .map(|t| serde_json::from_str(t).map_err(|e| corrupt(BACKEND, what, e)))
        .transpose()
}
