//! The single writer: a thread owning the read-write connection, fed through a bounded queue.
//!
//! Group commit: the thread takes every commit waiting at that moment (several shards commit at
//! once), up to `GROUP_MAX_ROWS`, and writes them in ONE transaction, so they share one WAL
//! append and one fsync. A sequence conflict fails only its caller: the transaction is rolled
//! back and written again without that batch. Any other failure (I/O, disk full, a failed
//! COMMIT) rolls back the whole transaction and fails every caller of the group with
//! `Unavailable`. Nobody is answered before the COMMIT has returned, so `Ok` always means durable.
//!
//! An instance's summary is upserted the first time; afterwards it is updated by the row key the
//! writer remembers (`known_instances`), which costs SQLite far less than an upsert, and its
//! events are appended to the chain head the writer remembers with it, which reads nothing.

use super::chain::{self, Head, Place};
use super::checkpoint::Checkpointer;
use super::encode::{Encoded, InstanceRow, Span};
use super::known_instances::{Known, KnownInstances};
use super::{BACKEND, err};
use crate::common::unavailable;
use crate::{PURGE_CHUNK, RETENTION_CHUNK};
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};
use xcomponent_core::instance::Millis;
use xcomponent_core::message::ENVELOPE_SCHEMA_VERSION;
use xcomponent_core::store::{Error, RECORD_SCHEMA_VERSION, Result};

/// Commits waiting for the writer before callers wait to enqueue.
pub(super) const WRITER_QUEUE: usize = 256;

/// Most rows (events and messages) written by one group commit (a single larger batch is still written whole).
const GROUP_MAX_ROWS: usize = 200_000;

const INSERT_EVENT: &str = "INSERT INTO fsm_events (ikey, seq, id, instance_id, component, machine, event_type, \
    payload, state_before, state_after, status, context, timers, parent_id, parent_machine, entry_point, occurred_at, \
    causation_id, correlation_id, source_component, schema_version, changes, prev) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23)";

/// Upserts a summary and returns the instance's key (no row when an older summary is skipped).
const UPSERT_INSTANCE: &str = "INSERT INTO fsm_instances (instance_id, component, machine, state, status, seq, \
    created_at, updated_at, entry_point, correlation_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
    ON CONFLICT (instance_id) DO UPDATE SET component = excluded.component, machine = excluded.machine, \
    state = excluded.state, status = excluded.status, seq = excluded.seq, updated_at = excluded.updated_at \
    WHERE excluded.seq > fsm_instances.seq RETURNING ikey";

const INSTANCE_KEY: &str = "SELECT ikey FROM fsm_instances WHERE instance_id = ?1";

/// Updates the summary of an instance whose key (`?11`) is known; changes nothing when the key is
/// no longer that instance's or the stored summary is as new. Its parameters are numbered as in
/// `UPSERT_INSTANCE` (`bind_summary`; `?7`, `?9` and `?10` are bound and unused); `?12` is the
/// new head of the instance's chain (`chain`), NULL when the batch appended no event.
const UPDATE_INSTANCE: &str = "UPDATE fsm_instances SET component = ?2, machine = ?3, state = ?4, status = ?5, \
    seq = ?6, updated_at = ?8, last_event = coalesce(?12, last_event) WHERE ikey = ?11 AND instance_id = ?1 AND seq < ?6";

/// `UPDATE_INSTANCE` for a summary whose status is the one stored (changes nothing otherwise):
/// `status` is not among the columns set, so SQLite leaves the index by status untouched.
const UPDATE_INSTANCE_SAME_STATUS: &str = "UPDATE fsm_instances SET component = ?2, machine = ?3, state = ?4, \
    seq = ?6, updated_at = ?8, last_event = coalesce(?12, last_event) \
    WHERE ikey = ?11 AND instance_id = ?1 AND seq < ?6 AND status = ?5";

const UPSERT_SNAPSHOT: &str = "INSERT INTO fsm_snapshots (ikey, instance_id, seq, state, status, record, \
    schema_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (ikey) DO UPDATE SET seq = excluded.seq, \
    state = excluded.state, status = excluded.status, record = excluded.record, \
    schema_version = excluded.schema_version WHERE excluded.seq >= fsm_snapshots.seq";

/// Records that a correlation chain reached an instance within a range of its sequence numbers.
/// The range only bounds where `correlated` looks (it filters each event by its correlation), so
/// the writer stores `last_seq` rounded up to the end of its block of `CORRELATION_SEQ_BLOCK`
/// and the row is rewritten only when a range grows out of what is stored: an instance that
/// stays in one chain costs one write per block of transitions instead of one per commit.
const UPSERT_PAIR: &str = "INSERT INTO fsm_correlations (correlation_id, ikey, first_seq, last_seq) \
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT (correlation_id, ikey) DO UPDATE SET \
    first_seq = min(first_seq, excluded.first_seq), last_seq = max(last_seq, excluded.last_seq) \
    WHERE excluded.first_seq < fsm_correlations.first_seq OR excluded.last_seq > fsm_correlations.last_seq";

/// Sequence numbers per block of a stored correlation range (a power of two): `correlated`
/// reads at most this many events of an instance past a chain's last one.
const CORRELATION_SEQ_BLOCK: i64 = 64;

/// The last sequence number of the block holding `seq`.
fn end_of_block(seq: i64) -> i64 {
    seq | (CORRELATION_SEQ_BLOCK - 1)
}

/// Stores a produced message (an id stored already is replaced, as in every backend).
const UPSERT_OUTBOX: &str = "INSERT INTO fsm_outbox (message_id, envelope, schema_version) VALUES (?1, ?2, ?3) \
    ON CONFLICT (message_id) DO UPDATE SET envelope = excluded.envelope, schema_version = excluded.schema_version";

/// Records an applied message; an entry stored already keeps its first `applied_at`.
const INSERT_INBOX: &str = "INSERT INTO fsm_inbox (message_id, instance_id, applied_at) VALUES (?1, ?2, ?3) \
    ON CONFLICT (message_id, instance_id) DO NOTHING";

const DELETE_OUTBOX: &str = "DELETE FROM fsm_outbox WHERE message_id = ?1";

const UPSERT_DEAD_LETTER: &str = "INSERT INTO fsm_dead_letters (message_id, envelope, schema_version, kind, reason, \
    attempts, dead_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (message_id) DO UPDATE SET \
    envelope = excluded.envelope, schema_version = excluded.schema_version, kind = excluded.kind, \
    reason = excluded.reason, attempts = excluded.attempts, dead_at = excluded.dead_at";

const DELETE_DEAD_LETTER: &str = "DELETE FROM fsm_dead_letters WHERE message_id = ?1";

/// Deletes one chunk of purgeable inbox entries (old, and their message no longer pending).
/// `?3` bounds the key range: message ids are UUID v7, and a message is produced before it is
/// applied, so every entry applied before `?1` has an id below the v7 id of `?1`.
const PURGE_INBOX: &str = "DELETE FROM fsm_inbox WHERE (message_id, instance_id) IN \
    (SELECT i.message_id, i.instance_id FROM fsm_inbox i WHERE i.message_id < ?3 \
    AND i.applied_at < ?1 \
    AND NOT EXISTS (SELECT 1 FROM fsm_outbox o WHERE o.message_id = i.message_id) LIMIT ?2)";

/// What the writer thread does.
pub(super) enum Job {
    /// Write one batch; answered once durable.
    /// (Boxed: the queue holds small jobs whatever the parts of a batch.)
    Commit(Box<Encoded>, oneshot::Sender<Result<()>>),
    /// Purge finished instances last updated before `cutoff`; answers the number purged.
    Retention(Millis, oneshot::Sender<Result<u64>>),
    /// Purge inbox entries applied before the time whose message is no longer pending; answers
    /// the number deleted.
    PurgeInbox(Millis, oneshot::Sender<Result<u64>>),
}

/// Runs the writer until every sender is gone.
pub(super) fn run(conn: Connection, mut jobs: mpsc::Receiver<Job>, checkpointer: Checkpointer) {
    let mut next = None;
    let mut known = KnownInstances::default();
    loop {
        let Some(job) = next.take().or_else(|| jobs.blocking_recv()) else { return };
        match job {
            Job::Retention(cutoff, reply) => {
                let _ = reply.send(retention(&conn, cutoff));
                // Purged rows took their keys with them.
                known.clear();
                checkpointer.committed();
            }
            Job::PurgeInbox(before, reply) => {
                let _ = reply.send(purge_inbox(&conn, before));
                checkpointer.committed();
            }
            Job::Commit(batch, reply) => {
                let mut rows = batch.len();
                let mut group = vec![(batch, reply)];
                while rows < GROUP_MAX_ROWS {
                    match jobs.try_recv() {
                        Ok(Job::Commit(batch, reply)) => {
                            rows += batch.len();
                            group.push((batch, reply));
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if commit_group(&conn, group, &mut known) {
                    checkpointer.committed();
                }
            }
        }
    }
}

/// How writing one batch failed.
enum Failure {
    /// `(instance, seq)` already stored: only this batch fails.
    Conflict(Error),
    /// Anything else: the whole group fails.
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Failure {
        Failure::Sqlite(error)
    }
}

/// Writes the group in one transaction. A sequence conflict rolls the transaction back: the
/// conflicting batch gets `Conflict` and the others are written again without it (conflicts
/// are rare: they mean two writers of one instance). No savepoint per batch: inside a savepoint
/// SQLite journals every page touched and each upsert's statement journal then walks that
/// journal, which made large batches quadratic.
/// Whether a transaction was committed.
fn commit_group(
    conn: &Connection,
    mut group: Vec<(Box<Encoded>, oneshot::Sender<Result<()>>)>,
    known: &mut KnownInstances,
) -> bool {
    loop {
        let attempt = (|| {
            let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
            known.begin(&tx)?;
            for (index, (batch, _)) in group.iter().enumerate() {
                match write(&tx, batch, known) {
                    Ok(()) => {}
                    Err(Failure::Conflict(conflict)) => return Ok(Some((index, conflict))),
                    Err(Failure::Sqlite(error)) => return Err(error),
                }
            }
            tx.commit()?;
            Ok(None)
        })();
        match attempt {
            Ok(None) => {
                known.committed();
                for (_, reply) in group {
                    let _ = reply.send(Ok(()));
                }
                return true;
            }
            Ok(Some((index, conflict))) => {
                // The transaction was rolled back when dropped.
                let (_, reply) = group.remove(index);
                let _ = reply.send(Err(conflict));
                if group.is_empty() {
                    return false;
                }
            }
            Err(error) => {
                // Rolled back when dropped (or by SQLite itself): nothing of the group is stored.
                // (A COMMIT that failed after writing to the WAL may yet show after a restart:
                // what the writer remembers is read again.)
                known.clear();
                tracing::error!(backend = BACKEND, batches = group.len(), %error, "group commit failed");
                let message = error.to_string();
                let refused = refuses_content(&error);
                for (_, reply) in group {
                    let failure = if refused {
                        Error::Rejected(format!("{BACKEND} commit: {message}"))
                    } else {
                        unavailable(BACKEND, "commit", &message)
                    };
                    let _ = reply.send(Err(failure));
                }
                return false;
            }
        }
    }
}

/// Whether SQLite refused a value of the batch (a string or blob over its size limit, a value
/// of the wrong type): the same content would fail again, unlike a busy or full database.
fn refuses_content(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::TooBig | rusqlite::ErrorCode::TypeMismatch)
    )
}

/// Text of the arena, bound as TEXT without a copy or a UTF-8 check.
fn text(batch: &Encoded, span: Span) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(batch.bytes(span)))
}

fn write(
    tx: &Connection,
    batch: &Encoded,
    known: &mut KnownInstances,
) -> std::result::Result<(), Failure> {
    let mut slots = instance_slots(tx, batch, known)?;
    let mut insert = tx.prepare_cached(INSERT_EVENT)?;
    for e in &batch.events {
        let Slot { key, head, .. } = slots[e.instance];
        let place = chain::place(tx, key, head, e.seq)?;
        let prev = match place {
            Place::Append { prev } | Place::Between { prev, .. } => prev,
            Place::Taken => {
                let instance_id = batch.instances[e.instance].id;
                let seq = u64::try_from(e.seq).unwrap_or_default();
                return Err(Failure::Conflict(Error::Conflict { instance_id, seq }));
            }
        };
        let bind = &mut insert;
        bind.raw_bind_parameter(1, key)?;
        bind.raw_bind_parameter(2, e.seq)?;
        bind.raw_bind_parameter(3, e.id)?;
        bind.raw_bind_parameter(4, batch.instances[e.instance].id.0.as_bytes())?;
        bind.raw_bind_parameter(5, text(batch, e.component))?;
        bind.raw_bind_parameter(6, text(batch, e.machine))?;
        bind.raw_bind_parameter(7, text(batch, e.event_type))?;
        bind.raw_bind_parameter(8, text(batch, e.payload))?;
        bind.raw_bind_parameter(9, text(batch, e.state_before))?;
        bind.raw_bind_parameter(10, text(batch, e.state_after))?;
        bind.raw_bind_parameter(11, e.status)?;
        bind.raw_bind_parameter(12, e.context.map(|c| text(batch, c)))?;
        bind.raw_bind_parameter(13, text(batch, e.timers))?;
        bind.raw_bind_parameter(14, e.parent.as_ref().map(|p| p.0))?;
        bind.raw_bind_parameter(15, e.parent.as_ref().map(|p| text(batch, p.1)))?;
        bind.raw_bind_parameter(16, e.entry_point)?;
        bind.raw_bind_parameter(17, e.occurred_at)?;
        bind.raw_bind_parameter(18, e.causation_id)?;
        bind.raw_bind_parameter(19, e.correlation_id)?;
        bind.raw_bind_parameter(20, e.source_component.map(|s| text(batch, s)))?;
        bind.raw_bind_parameter(21, i64::from(RECORD_SCHEMA_VERSION))?;
        bind.raw_bind_parameter(22, e.changes.map(|c| text(batch, c)))?;
        bind.raw_bind_parameter(23, prev)?;
        insert.raw_execute()?;
        let rowid = tx.last_insert_rowid();
        match place {
            Place::Between { next, .. } => chain::relink(tx, next, rowid)?,
            _ => {
                let slot = &mut slots[e.instance];
                slot.head = Head { rowid: Some(rowid), seq: e.seq };
                slot.moved = true;
            }
        }
    }
    write_summaries(tx, batch, &slots)?;
    for (s, slot) in batch.instances.iter().zip(&slots) {
        known.wrote(s.id, slot.key, slot.head);
    }
    let mut upsert = tx.prepare_cached(UPSERT_SNAPSHOT)?;
    for s in &batch.snapshots {
        upsert.raw_bind_parameter(1, slots[s.instance].key)?;
        upsert.raw_bind_parameter(2, batch.instances[s.instance].id.0.as_bytes())?;
        upsert.raw_bind_parameter(3, s.seq)?;
        upsert.raw_bind_parameter(4, text(batch, s.state))?;
        upsert.raw_bind_parameter(5, s.status)?;
        upsert.raw_bind_parameter(6, text(batch, s.record))?;
        upsert.raw_bind_parameter(7, i64::from(RECORD_SCHEMA_VERSION))?;
        upsert.raw_execute()?;
    }
    let mut upsert = tx.prepare_cached(UPSERT_PAIR)?;
    for p in &batch.pairs {
        upsert.execute((
            &p.correlation_id,
            slots[p.instance].key,
            p.first_seq,
            end_of_block(p.last_seq),
        ))?;
    }
    write_messages(tx, batch)?;
    Ok(())
}

/// Writes the message parts of a batch, in the order the contract gives (outbox, inbox,
/// delivered, dead letters, removals); an empty part prepares no statement.
fn write_messages(tx: &Connection, batch: &Encoded) -> rusqlite::Result<()> {
    if !batch.outbox.is_empty() {
        let mut upsert = tx.prepare_cached(UPSERT_OUTBOX)?;
        for m in &batch.outbox {
            upsert.raw_bind_parameter(1, m.message_id)?;
            upsert.raw_bind_parameter(2, text(batch, m.envelope))?;
            upsert.raw_bind_parameter(3, i64::from(ENVELOPE_SCHEMA_VERSION))?;
            upsert.raw_execute()?;
        }
    }
    if !batch.inbox.is_empty() {
        let mut insert = tx.prepare_cached(INSERT_INBOX)?;
        for e in &batch.inbox {
            insert.execute((e.message_id, e.instance_id, e.applied_at))?;
        }
    }
    if !batch.delivered.is_empty() {
        let mut delete = tx.prepare_cached(DELETE_OUTBOX)?;
        for id in &batch.delivered {
            delete.execute([id])?;
        }
    }
    if !batch.dead_letters.is_empty() {
        let mut upsert = tx.prepare_cached(UPSERT_DEAD_LETTER)?;
        for d in &batch.dead_letters {
            upsert.raw_bind_parameter(1, d.message_id)?;
            upsert.raw_bind_parameter(2, text(batch, d.envelope))?;
            upsert.raw_bind_parameter(3, i64::from(ENVELOPE_SCHEMA_VERSION))?;
            upsert.raw_bind_parameter(4, d.kind)?;
            upsert.raw_bind_parameter(5, text(batch, d.reason))?;
            upsert.raw_bind_parameter(6, d.attempts)?;
            upsert.raw_bind_parameter(7, d.dead_at)?;
            upsert.raw_execute()?;
        }
    }
    if !batch.dead_letters_removed.is_empty() {
        let mut delete = tx.prepare_cached(DELETE_DEAD_LETTER)?;
        for id in &batch.dead_letters_removed {
            delete.execute([id])?;
        }
    }
    Ok(())
}

/// What the writer knows of one instance of a batch while writing it.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// `fsm_instances.ikey`.
    key: i64,
    /// The head of its chain (moved by the batch's appended events).
    head: Head,
    /// Whether the batch appended events (the head must be stored).
    moved: bool,
    /// Whether the summary is written already (by the upsert that drew the key).
    written: bool,
}

/// The key and chain head of every instance of the batch, in the same order: as the writer
/// remembers them (an earlier batch of the transaction included; a stale head is read again,
/// with the check that the key is still the instance's), else read after the summary is
/// upserted.
fn instance_slots(
    tx: &Connection,
    batch: &Encoded,
    known: &mut KnownInstances,
) -> rusqlite::Result<Vec<Slot>> {
    let mut slots = Vec::with_capacity(batch.instances.len());
    for s in &batch.instances {
        let remembered = match known.get(&s.id) {
            Some(Known { key, head: Some(head) }) => Some((key, head)),
            Some(Known { key, head: None }) => chain::head(tx, key, s.id)?.map(|head| (key, head)),
            None => None,
        };
        if let Some((key, head)) = remembered {
            slots.push(Slot { key, head, moved: false, written: false });
            continue;
        }
        let key = upsert_instance(tx, batch, s)?;
        let head = chain::head(tx, key, s.id)?.unwrap_or(Head { rowid: None, seq: 0 });
        slots.push(Slot { key, head, moved: false, written: true });
    }
    Ok(slots)
}

/// Writes the summary of every instance of the batch with its chain's new head, by key; a
/// summary older than the stored one leaves the row as it is but for the head.
fn write_summaries(tx: &Connection, batch: &Encoded, slots: &[Slot]) -> rusqlite::Result<()> {
    let mut same_status = tx.prepare_cached(UPDATE_INSTANCE_SAME_STATUS)?;
    for (s, slot) in batch.instances.iter().zip(slots) {
        let head = if slot.moved { slot.head.rowid } else { None };
        // Most transitions leave the status as it was, and that update leaves the index by
        // status alone; for the one that ends the instance it changes nothing, and the full
        // update applies.
        let updated = !slot.written
            && (update_summary(&mut same_status, batch, s, slot.key, head)?
                || update_summary(
                    &mut tx.prepare_cached(UPDATE_INSTANCE)?,
                    batch,
                    s,
                    slot.key,
                    head,
                )?);
        if !updated && let Some(rowid) = head {
            chain::set_head(tx, slot.key, rowid)?;
        }
    }
    Ok(())
}

/// Updates the summary (and, when `head` is given, the chain's head) of the instance with row
/// key `key`; whether a row was changed.
fn update_summary(
    update: &mut CachedStatement<'_>,
    batch: &Encoded,
    s: &InstanceRow,
    key: i64,
    head: Option<i64>,
) -> rusqlite::Result<bool> {
    bind_summary(update, batch, s)?;
    update.raw_bind_parameter(11, key)?;
    update.raw_bind_parameter(12, head)?;
    Ok(update.raw_execute()? == 1)
}

/// Binds a summary to the parameters `?1` to `?10` of `UPSERT_INSTANCE` or either update.
fn bind_summary(
    statement: &mut CachedStatement<'_>,
    batch: &Encoded,
    s: &InstanceRow,
) -> rusqlite::Result<()> {
    statement.raw_bind_parameter(1, s.id.0.as_bytes())?;
    statement.raw_bind_parameter(2, text(batch, s.component))?;
    statement.raw_bind_parameter(3, text(batch, s.machine))?;
    statement.raw_bind_parameter(4, text(batch, s.state))?;
    statement.raw_bind_parameter(5, s.status)?;
    statement.raw_bind_parameter(6, s.seq)?;
    statement.raw_bind_parameter(7, s.created_at)?;
    statement.raw_bind_parameter(8, s.updated_at)?;
    statement.raw_bind_parameter(9, s.entry_point)?;
    statement.raw_bind_parameter(10, s.correlation_id)
}

/// Upserts one summary and returns the instance's key.
fn upsert_instance(tx: &Connection, batch: &Encoded, s: &InstanceRow) -> rusqlite::Result<i64> {
    let mut upsert: CachedStatement<'_> = tx.prepare_cached(UPSERT_INSTANCE)?;
    bind_summary(&mut upsert, batch, s)?;
    let returned = {
        let mut rows = upsert.raw_query();
        match rows.next()? {
            Some(row) => Some(row.get::<_, i64>(0)?),
            None => None,
        }
    };
    match returned {
        Some(key) => Ok(key),
        // The stored summary is newer: the row exists, only its key is needed.
        None => tx.prepare_cached(INSTANCE_KEY)?.query_row([s.id.0.as_bytes()], |row| row.get(0)),
    }
}

/// Deletes up to `RETENTION_CHUNK` finished instances per transaction until none is left.
fn retention(conn: &Connection, cutoff: Millis) -> Result<u64> {
    const PURGE: &str = "CREATE TEMP TABLE IF NOT EXISTS xc_purge (ikey INTEGER PRIMARY KEY); DELETE FROM xc_purge;";
    let mut total = 0;
    loop {
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(err("apply_retention"))?;
        tx.execute_batch(PURGE).map_err(err("apply_retention"))?;
        let purged = tx
            .execute(
                "INSERT INTO xc_purge SELECT ikey FROM fsm_instances WHERE status IN ('completed', 'error') \
                 AND updated_at < ?1 ORDER BY ikey LIMIT ?2",
                (cutoff, RETENTION_CHUNK as i64),
            )
            .map_err(err("apply_retention"))?;
        // The purged instances' events, found by walking their chains.
        tx.execute_batch(&format!(
            "CREATE TEMP TABLE IF NOT EXISTS xc_purge_events (r INTEGER PRIMARY KEY); DELETE FROM xc_purge_events; \
             WITH RECURSIVE {} INSERT INTO xc_purge_events SELECT r FROM walk; \
             DELETE FROM fsm_correlations WHERE (correlation_id, ikey) IN \
                 (SELECT DISTINCT correlation_id, ikey FROM fsm_events WHERE rowid IN (SELECT r FROM xc_purge_events)); \
             DELETE FROM fsm_events WHERE rowid IN (SELECT r FROM xc_purge_events); \
             DELETE FROM fsm_snapshots WHERE ikey IN (SELECT ikey FROM xc_purge); \
             DELETE FROM fsm_instances WHERE ikey IN (SELECT ikey FROM xc_purge);",
            chain::walk_down(
                "SELECT last_event FROM fsm_instances WHERE ikey IN (SELECT ikey FROM xc_purge) AND last_event IS NOT NULL"
            )
        ))
        .map_err(err("apply_retention"))?;
        tx.commit().map_err(err("apply_retention"))?;
        total += purged as u64;
        if purged < RETENTION_CHUNK {
            return Ok(total);
        }
    }
}

/// Deletes purgeable inbox entries, `PURGE_CHUNK` per transaction, until none is left.
fn purge_inbox(conn: &Connection, before: Millis) -> Result<u64> {
    let mut total = 0;
    loop {
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(err("purge_inbox"))?;
        let deleted = tx
            .prepare_cached(PURGE_INBOX)
            .and_then(|mut purge| purge.execute((before, PURGE_CHUNK as i64, v7_bound(before))))
            .map_err(err("purge_inbox"))?;
        tx.commit().map_err(err("purge_inbox"))?;
        total += deleted as u64;
        if deleted < PURGE_CHUNK {
            return Ok(total);
        }
    }
}

/// The smallest UUID v7 of the millisecond `at` (as the 16 key bytes): every id drawn earlier
/// sorts below it.
fn v7_bound(at: Millis) -> Vec<u8> {
    let millis = u64::try_from(at).unwrap_or(0) & 0xFFFF_FFFF_FFFF;
    let mut bytes = vec![0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes
}

/// A writer whose thread is gone.
pub(super) fn stopped() -> Error {
    unavailable(BACKEND, "commit", "the writer thread has stopped")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Durability;
    use xcomponent_core::instance::{EventId, InstanceId, Status};
    use xcomponent_core::store::{CREATED_EVENT_TYPE, CommitBatch, DataChanges, StoredEvent};

    fn event(id: InstanceId, seq: u64, state: &str) -> StoredEvent {
        StoredEvent {
            id: EventId(uuid::Uuid::now_v7()),
            instance_id: id,
            seq,
            component: "C".into(),
            machine: "M".into(),
            event_type: if seq == 1 { CREATED_EVENT_TYPE.into() } else { "GO".into() },
            payload: serde_json::Map::new(),
            state_before: "".into(),
            state_after: state.into(),
            status: Status::Active,
            context: (seq == 1).then(serde_json::Map::new),
            changes: DataChanges::default(),
            timers: Vec::new(),
            parent: None,
            entry_point: false,
            timestamp: 1_000 + seq as i64,
            causation_id: None,
            correlation_id: EventId(uuid::Uuid::now_v7()),
            source_component: None,
        }
    }

    /// A migrated writer connection on a new file in a directory of its own, removed on drop.
    struct Scratch {
        conn: Connection,
        dir: std::path::PathBuf,
    }

    impl Scratch {
        fn new() -> Scratch {
            let dir = std::env::temp_dir().join(format!("xc-writer-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&dir).expect("temp dir");
            let conn = super::super::schema::open_writer(&dir.join("w.db"), Durability::None)
                .expect("writer");
            super::super::schema::migrate(&conn).expect("migrated");
            Scratch { conn, dir }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    /// Commits one event as the writer thread does (a group of one); what the writer then
    /// knows of its instance (its key, and its chain's head).
    fn write_one(conn: &Connection, known: &mut KnownInstances, e: StoredEvent) -> (i64, Head) {
        let id = e.instance_id;
        let batch = CommitBatch { events: vec![e], ..CommitBatch::default() };
        let encoded = Box::new(Encoded::of(&batch).expect("encoded"));
        let (reply, mut answer) = oneshot::channel();
        assert!(commit_group(conn, vec![(encoded, reply)], known), "committed");
        assert!(matches!(answer.try_recv(), Ok(Ok(()))), "answered Ok");
        match known.get(&id) {
            Some(Known { key, head: Some(head) }) => (key, head),
            other => panic!("known once committed, found {other:?}"),
        }
    }

    /// The seqs of an instance's chain, from its head down.
    fn chain_seqs(conn: &Connection, key: i64) -> Vec<i64> {
        let walk =
            chain::walk_down(&format!("SELECT last_event FROM fsm_instances WHERE ikey = {key}"));
        let mut seqs = conn
            .prepare(&format!(
                "WITH RECURSIVE {walk} SELECT e.seq FROM walk JOIN fsm_events e ON e.rowid = walk.r"
            ))
            .expect("walk");
        seqs.query_map([], |row| row.get(0)).expect("seqs").map(|seq| seq.expect("seq")).collect()
    }

    #[test]
    fn the_writer_remembers_each_instance_key_and_chain_head() {
        let scratch = Scratch::new();
        let conn = &scratch.conn;
        let mut known = KnownInstances::default();
        let id = InstanceId(uuid::Uuid::now_v7());
        let created = write_one(conn, &mut known, event(id, 1, "S1"));
        assert_eq!(created.1.seq, 1);
        let moved = write_one(conn, &mut known, event(id, 2, "S2"));
        assert_eq!(moved.0, created.0, "updated by the key drawn at creation");
        let stored: (String, i64, i64) = conn
            .query_row(
                "SELECT state, seq, last_event FROM fsm_instances WHERE ikey = ?1",
                [moved.0],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .expect("summary");
        assert_eq!(stored, ("S2".to_owned(), 2, moved.1.rowid.expect("a head")));
        assert_eq!(moved.1.seq, 2);
        assert_eq!(chain_seqs(conn, moved.0), [2, 1]);
    }

    #[test]
    fn a_commit_by_another_connection_makes_the_writer_read_the_head_again() {
        let scratch = Scratch::new();
        let ours = &scratch.conn;
        let theirs = super::super::schema::open_writer(&scratch.dir.join("w.db"), Durability::None)
            .expect("second writer");
        let (mut known, mut known_by_them) = (KnownInstances::default(), KnownInstances::default());
        let id = InstanceId(uuid::Uuid::now_v7());
        write_one(ours, &mut known, event(id, 1, "S1"));
        let before = write_one(ours, &mut known, event(id, 2, "S2"));
        // Another process appends seq 3: the head we remember is no longer the chain's.
        let appended = write_one(&theirs, &mut known_by_them, event(id, 3, "S3"));
        assert_eq!(appended.0, before.0);
        let after = write_one(ours, &mut known, event(id, 4, "S4"));
        assert_eq!(chain_seqs(ours, after.0), [4, 3, 2, 1], "seq 4 is linked to seq 3");
    }

    #[test]
    fn a_correlation_range_is_stored_by_block_and_rewritten_only_when_it_grows() {
        let scratch = Scratch::new();
        let conn = &scratch.conn;
        let mut known = KnownInstances::default();
        let id = InstanceId(uuid::Uuid::now_v7());
        let chain = EventId(uuid::Uuid::now_v7());
        let in_chain = |seq| StoredEvent { correlation_id: chain, ..event(id, seq, "S") };
        let key = write_one(conn, &mut known, in_chain(1)).0;
        let range = |conn: &Connection| -> (i64, i64) {
            conn.query_row(
                "SELECT first_seq, last_seq FROM fsm_correlations WHERE ikey = ?1",
                [key],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .expect("range")
        };
        assert_eq!(range(conn), (1, CORRELATION_SEQ_BLOCK - 1), "the creation's block");
        for seq in 2..CORRELATION_SEQ_BLOCK as u64 {
            let before = conn.total_changes();
            write_one(conn, &mut known, in_chain(seq));
            // The event and the summary (with the chain's head); the range already covers the seq.
            assert_eq!(conn.total_changes() - before, 2, "seq {seq}: the range is not rewritten");
        }
        let before = conn.total_changes();
        write_one(conn, &mut known, in_chain(CORRELATION_SEQ_BLOCK as u64));
        assert_eq!(conn.total_changes() - before, 3, "the range grows into the next block");
        assert_eq!(range(conn), (1, 2 * CORRELATION_SEQ_BLOCK - 1));
    }
}
