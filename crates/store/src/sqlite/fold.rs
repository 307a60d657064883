//! Rebuilding records: latest snapshot + the events after it, two statements per page of
//! instances (run in the caller's read transaction, so both see the same data). The events are
//! found by walking each instance's chain down from its head to the snapshot (`chain`).
//!
//! A stored transition carries what it changed in the instance data (record layout 2) or, when
//! it was written before schema version 4, the whole data (layout 1); either way the record is
//! the snapshot (or `from_creation` of the first event when there is none) folded with every
//! later event in seq order by `InstanceRecord::apply`, the same functions as every other
//! backend. Snapshots bound how many events that is (`snapshot_interval`). Only the columns the
//! fold reads are selected.

use super::{BACKEND, err};
use crate::common::{assemble, corrupt};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, Row, ToSql};
use serde_json::Map;
use uuid::Uuid;
use xcomponent_core::instance::{EventId, InstanceId, ParentRef};
use xcomponent_core::store::{Error, InstanceRecord, Result, StoredEvent};

/// The event columns `from_creation` and `apply` read, in the order `fold_event` decodes them.
const EVENT: &str = "walk.instance_id, e.seq, e.component, e.machine, e.state_after, e.status, e.context, \
    e.changes, e.timers, e.parent_id, e.parent_machine, e.entry_point, e.occurred_at, e.correlation_id";

/// The records of the instances `page` selects (columns `ikey`, `instance_id`, `seq` of
/// `fsm_instances`), in its order.
pub(super) fn records(
    conn: &Connection,
    page: &str,
    params: &[&dyn ToSql],
) -> Result<Vec<InstanceRecord>> {
    let sql = format!(
        "WITH p AS ({page}) SELECT p.instance_id, s.record FROM p \
         LEFT JOIN fsm_snapshots s ON s.ikey = p.ikey"
    );
    let mut ids = Vec::new();
    let mut snapshots = Vec::new();
    {
        let mut statement = conn.prepare_cached(&sql).map_err(err("restore"))?;
        let mut rows = statement.query(params).map_err(err("restore"))?;
        while let Some(row) = rows.next().map_err(err("restore"))? {
            ids.push(InstanceId(uuid(value(row, 0)?)?));
            if let Some(record) = opt_json::<InstanceRecord>(row, 1, "snapshot record")? {
                snapshots.push(record);
            }
        }
    }
    let sql = format!(
        "WITH RECURSIVE p AS ({page}), \
         walk(ikey, instance_id, r, after) AS ( \
             SELECT p.ikey, p.instance_id, i.last_event, coalesce(s.seq, 0) FROM p JOIN fsm_instances i ON i.ikey = p.ikey \
             LEFT JOIN fsm_snapshots s ON s.ikey = p.ikey WHERE i.last_event IS NOT NULL \
             UNION ALL SELECT walk.ikey, walk.instance_id, e.prev, walk.after FROM walk JOIN fsm_events e ON e.rowid = walk.r \
             WHERE e.seq > walk.after + 1 AND e.prev IS NOT NULL) \
         SELECT {EVENT} FROM walk JOIN fsm_events e ON e.rowid = walk.r \
         WHERE e.seq > walk.after ORDER BY e.ikey, e.seq"
    );
    let mut events = Vec::new();
    {
        let mut statement = conn.prepare_cached(&sql).map_err(err("restore (events)"))?;
        let mut rows = statement.query(params).map_err(err("restore (events)"))?;
        while let Some(row) = rows.next().map_err(err("restore (events)"))? {
            events.push(fold_event(row)?);
        }
    }
    assemble(BACKEND, &ids, snapshots, events)
}

/// An event as `from_creation` and `apply` read it (id, type, payload, previous state and the
/// causal links are never read: left blank).
fn fold_event(row: &Row<'_>) -> Result<StoredEvent> {
    let parent = match (opt_uuid(value(row, 9)?)?, opt_text(row, 10)?) {
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
        instance_id: InstanceId(uuid(value(row, 0)?)?),
        seq: crate::sql::parse_seq(BACKEND, int(row, 1)?)?,
        component: text(row, 2)?.into(),
        machine: text(row, 3)?.into(),
        event_type: "".into(),
        payload: Map::new(),
        state_before: "".into(),
        state_after: text(row, 4)?.into(),
        status: crate::sql::parse_status(BACKEND, text(row, 5)?)?,
        context: opt_json(row, 6, "context column")?,
        changes: opt_json(row, 7, "changes column")?.unwrap_or_default(),
        timers: json(row, 8, "timers column")?,
        parent,
        entry_point: int(row, 11)? != 0,
        timestamp: int(row, 12)?,
        causation_id: None,
        correlation_id: EventId(uuid(value(row, 13)?)?),
        source_component: None,
    })
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
