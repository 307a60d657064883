//! An instance's events as a chain (schema version 6): each `fsm_events` row holds `prev`, the
//! rowid of the same instance's event with the next lower seq (NULL for its lowest), and the
//! instance's `fsm_instances.last_event` holds the rowid of its highest-seq event. Reads walk a
//! chain down from its head, or from an entry of the partial index `fsm_events_block`, which
//! holds every event whose seq is a multiple of 64 (so a read entering a chain near a seq walks
//! at most 63 rows past it). The index's `WHERE seq % 64 = 0` must appear word for word in a
//! query for SQLite to use it, so the statements spell the number out.
//!
//! Why not an index on `(ikey, seq)`: with many busy instances each event lands in a different
//! leaf of such an index, one more page per event in every group commit (and frequent
//! rebalancing of three sibling pages). Appending to a chain writes the event row (at the end of
//! the table) and the instance's row, which the commit rewrites anyway.
//!
//! The writer appends when an event's seq is above the chain's head (the usual case); a seq at
//! or below it is looked for along the chain: found, it is a conflict (`(instance, seq)` is
//! stored already, the contract of every backend); missing, the event is linked in between and
//! its successor's `prev` moved to it.

use rusqlite::{Connection, OptionalExtension};
use xcomponent_core::instance::InstanceId;

/// The rowid and seq of an instance's highest event (NULLs: no event yet), if the key is still
/// that instance's.
const HEAD: &str = "SELECT i.last_event, e.seq FROM fsm_instances i \
    LEFT JOIN fsm_events e ON e.rowid = i.last_event WHERE i.ikey = ?1 AND i.instance_id = ?2";

const LINK: &str = "SELECT seq, prev FROM fsm_events WHERE rowid = ?1";

const RELINK: &str = "UPDATE fsm_events SET prev = ?2 WHERE rowid = ?1";

const SET_HEAD: &str = "UPDATE fsm_instances SET last_event = ?2 WHERE ikey = ?1";

/// The rowid of the lowest block entry of instance `ikey` above `seq` (SQL expressions), as a
/// scalar subquery (NULL when there is none): where a walk down to that seq starts.
pub(super) fn block_above(ikey: &str, seq: &str) -> String {
    format!(
        "(SELECT b.rowid FROM fsm_events b WHERE b.ikey = {ikey} AND b.seq % 64 = 0 AND b.seq > {seq} \
         ORDER BY b.seq LIMIT 1)"
    )
}

/// The rowids of every event of the chains whose heads `heads` selects (a query with one column,
/// no NULL), as a recursive table `walk(r)` to put in front of a statement.
pub(super) fn walk_down(heads: &str) -> String {
    format!(
        "walk(r) AS ({heads} \
         UNION ALL SELECT e.prev FROM walk JOIN fsm_events e ON e.rowid = walk.r WHERE e.prev IS NOT NULL)"
    )
}

/// The head of a chain as the writer sees it inside its transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Head {
    /// Rowid of the highest event (none yet: `None`).
    pub rowid: Option<i64>,
    /// Its seq (0 without events).
    pub seq: i64,
}

/// Where a new event goes in its instance's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// Above the head: `prev` is the head.
    Append { prev: Option<i64> },
    /// Into a gap below the head: between `prev` and `next` (whose `prev` must then move).
    Between { prev: Option<i64>, next: i64 },
    /// The seq is stored already.
    Taken,
}

/// The head of the chain of instance `id`, whose key is `ikey` (`None`: it is not, or no
/// longer).
pub(super) fn head(tx: &Connection, ikey: i64, id: InstanceId) -> rusqlite::Result<Option<Head>> {
    tx.prepare_cached(HEAD)?
        .query_row((ikey, id.0.as_bytes()), |row| {
            Ok(Head { rowid: row.get(0)?, seq: row.get::<_, Option<i64>>(1)?.unwrap_or(0) })
        })
        .optional()
}

/// Where an event of instance `ikey` with `seq` goes, given the chain's `head`.
pub(super) fn place(tx: &Connection, ikey: i64, head: Head, seq: i64) -> rusqlite::Result<Place> {
    if seq > head.seq {
        return Ok(Place::Append { prev: head.rowid });
    }
    let block = tx
        .prepare_cached(&format!("SELECT {}", block_above("?1", "?2")))?
        .query_row((ikey, seq), |row| row.get::<_, Option<i64>>(0))?;
    let mut link = tx.prepare_cached(LINK)?;
    let mut next = None;
    let mut cursor = block.or(head.rowid);
    while let Some(rowid) = cursor {
        let (at, prev): (i64, Option<i64>) =
            link.query_row([rowid], |row| Ok((row.get(0)?, row.get(1)?)))?;
        if at == seq {
            return Ok(Place::Taken);
        }
        if at < seq {
            break;
        }
        next = Some(rowid);
        cursor = prev;
    }
    Ok(match next {
        Some(next) => Place::Between { prev: cursor, next },
        // Not reached: `seq` is at or below the head, so the walk passes the head first.
        None => Place::Append { prev: cursor },
    })
}

/// Points `next` at `rowid`, the event linked in below it.
pub(super) fn relink(tx: &Connection, next: i64, rowid: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(RELINK)?.execute((next, rowid)).map(drop)
}

/// Records the new head of instance `ikey`'s chain.
pub(super) fn set_head(tx: &Connection, ikey: i64, rowid: i64) -> rusqlite::Result<()> {
    tx.prepare_cached(SET_HEAD)?.execute((ikey, rowid)).map(drop)
}
