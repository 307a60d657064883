//! The single writer: a thread owning the read-write connection, fed through a bounded queue.
//!
//! Group commit: the thread takes every commit waiting at that moment (several shards commit at
//! once), up to `GROUP_MAX_EVENTS`, and writes them in ONE transaction, so they share one WAL
//! append and one fsync. A sequence conflict fails only its caller: the transaction is rolled
//! back and written again without that batch. Any other failure (I/O, disk full, a failed
//! COMMIT) rolls back the whole transaction and fails every caller of the group with
//! `Unavailable`. Nobody is answered before the COMMIT has returned, so `Ok` always means durable.

use super::checkpoint::Checkpointer;
use super::encode::{Encoded, Span};
use super::{BACKEND, err};
use crate::RETENTION_CHUNK;
use crate::common::unavailable;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{CachedStatement, Connection, Transaction, TransactionBehavior};
use tokio::sync::{mpsc, oneshot};
use xcomponent_core::instance::Millis;
use xcomponent_core::store::{Error, RECORD_SCHEMA_VERSION, Result};

/// Commits waiting for the writer before callers wait to enqueue.
pub(super) const WRITER_QUEUE: usize = 256;

/// Most events written by one group commit (a single larger batch is still written whole).
const GROUP_MAX_EVENTS: usize = 200_000;

/// Extended result code of a UNIQUE constraint violation.
const SQLITE_CONSTRAINT_UNIQUE: i32 = 2067;

const INSERT_EVENT: &str = "INSERT INTO fsm_events (ikey, seq, id, instance_id, component, machine, event_type, \
    payload, state_before, state_after, status, context, timers, parent_id, parent_machine, entry_point, occurred_at, \
    causation_id, correlation_id, source_component, schema_version) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21)";

/// Upserts a summary and returns the instance's key (no row when an older summary is skipped).
const UPSERT_INSTANCE: &str = "INSERT INTO fsm_instances (instance_id, component, machine, state, status, seq, \
    created_at, updated_at, entry_point, correlation_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
    ON CONFLICT (instance_id) DO UPDATE SET component = excluded.component, machine = excluded.machine, \
    state = excluded.state, status = excluded.status, seq = excluded.seq, updated_at = excluded.updated_at \
    WHERE excluded.seq > fsm_instances.seq RETURNING ikey";

const INSTANCE_KEY: &str = "SELECT ikey FROM fsm_instances WHERE instance_id = ?1";

const UPSERT_SNAPSHOT: &str = "INSERT INTO fsm_snapshots (ikey, instance_id, seq, state, status, record, \
    schema_version) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (ikey) DO UPDATE SET seq = excluded.seq, \
    state = excluded.state, status = excluded.status, record = excluded.record, \
    schema_version = excluded.schema_version WHERE excluded.seq >= fsm_snapshots.seq";

const UPSERT_PAIR: &str = "INSERT INTO fsm_correlations (correlation_id, ikey, first_seq, last_seq) \
    VALUES (?1, ?2, ?3, ?4) ON CONFLICT (correlation_id, ikey) DO UPDATE SET \
    first_seq = min(first_seq, excluded.first_seq), last_seq = max(last_seq, excluded.last_seq)";

/// What the writer thread does.
pub(super) enum Job {
    /// Write one batch; answered once durable.
    Commit(Encoded, oneshot::Sender<Result<()>>),
    /// Purge finished instances last updated before `cutoff`; answers the number purged.
    Retention(Millis, oneshot::Sender<Result<u64>>),
}

/// Runs the writer until every sender is gone.
pub(super) fn run(conn: Connection, mut jobs: mpsc::Receiver<Job>, checkpointer: Checkpointer) {
    let mut next = None;
    loop {
        let Some(job) = next.take().or_else(|| jobs.blocking_recv()) else { return };
        match job {
            Job::Retention(cutoff, reply) => {
                let _ = reply.send(retention(&conn, cutoff));
                checkpointer.committed();
            }
            Job::Commit(batch, reply) => {
                let mut events = batch.len();
                let mut group = vec![(batch, reply)];
                while events < GROUP_MAX_EVENTS {
                    match jobs.try_recv() {
                        Ok(Job::Commit(batch, reply)) => {
                            events += batch.len();
                            group.push((batch, reply));
                        }
                        Ok(other) => {
                            next = Some(other);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if commit_group(&conn, group) {
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
fn commit_group(conn: &Connection, mut group: Vec<(Encoded, oneshot::Sender<Result<()>>)>) -> bool {
    loop {
        let attempt = (|| {
            let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
            for (index, (batch, _)) in group.iter().enumerate() {
                match write(&tx, batch) {
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
                tracing::error!(backend = BACKEND, batches = group.len(), %error, "group commit failed");
                let message = error.to_string();
                for (_, reply) in group {
                    let _ = reply.send(Err(unavailable(BACKEND, "commit", &message)));
                }
                return false;
            }
        }
    }
}

/// Text of the arena, bound as TEXT without a copy or a UTF-8 check.
fn text(batch: &Encoded, span: Span) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(batch.bytes(span)))
}

fn write(tx: &Connection, batch: &Encoded) -> std::result::Result<(), Failure> {
    let keys = instance_keys(tx, batch)?;
    let mut insert = tx.prepare_cached(INSERT_EVENT)?;
    for e in &batch.events {
        let bind = &mut insert;
        bind.raw_bind_parameter(1, keys[e.instance])?;
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
        bind.raw_bind_parameter(12, text(batch, e.context))?;
        bind.raw_bind_parameter(13, text(batch, e.timers))?;
        bind.raw_bind_parameter(14, e.parent.as_ref().map(|p| p.0))?;
        bind.raw_bind_parameter(15, e.parent.as_ref().map(|p| text(batch, p.1)))?;
        bind.raw_bind_parameter(16, e.entry_point)?;
        bind.raw_bind_parameter(17, e.occurred_at)?;
        bind.raw_bind_parameter(18, e.causation_id)?;
        bind.raw_bind_parameter(19, e.correlation_id)?;
        bind.raw_bind_parameter(20, e.source_component.map(|s| text(batch, s)))?;
        bind.raw_bind_parameter(21, i64::from(RECORD_SCHEMA_VERSION))?;
        match insert.raw_execute() {
            Ok(_) => {}
            Err(error)
                if error
                    .sqlite_error()
                    .is_some_and(|e| e.extended_code == SQLITE_CONSTRAINT_UNIQUE) =>
            {
                let instance_id = batch.instances[e.instance].id;
                let seq = u64::try_from(e.seq).unwrap_or_default();
                return Err(Failure::Conflict(Error::Conflict { instance_id, seq }));
            }
            Err(error) => return Err(error.into()),
        }
    }
    let mut upsert = tx.prepare_cached(UPSERT_SNAPSHOT)?;
    for s in &batch.snapshots {
        upsert.raw_bind_parameter(1, keys[s.instance])?;
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
        upsert.execute((&p.correlation_id, keys[p.instance], p.first_seq, p.last_seq))?;
    }
    Ok(())
}

/// Upserts the summary of every instance of the batch and returns their keys, in the same order.
fn instance_keys(tx: &Connection, batch: &Encoded) -> rusqlite::Result<Vec<i64>> {
    let mut upsert: CachedStatement<'_> = tx.prepare_cached(UPSERT_INSTANCE)?;
    let mut lookup = tx.prepare_cached(INSTANCE_KEY)?;
    let mut keys = Vec::with_capacity(batch.instances.len());
    for s in &batch.instances {
        upsert.raw_bind_parameter(1, s.id.0.as_bytes())?;
        upsert.raw_bind_parameter(2, text(batch, s.component))?;
        upsert.raw_bind_parameter(3, text(batch, s.machine))?;
        upsert.raw_bind_parameter(4, text(batch, s.state))?;
        upsert.raw_bind_parameter(5, s.status)?;
        upsert.raw_bind_parameter(6, s.seq)?;
        upsert.raw_bind_parameter(7, s.created_at)?;
        upsert.raw_bind_parameter(8, s.updated_at)?;
        upsert.raw_bind_parameter(9, s.entry_point)?;
        upsert.raw_bind_parameter(10, s.correlation_id)?;
        let returned = {
            let mut rows = upsert.raw_query();
            match rows.next()? {
                Some(row) => Some(row.get::<_, i64>(0)?),
                None => None,
            }
        };
        let key = match returned {
            Some(key) => key,
            // The stored summary is newer: the row exists, only its key is needed.
            None => lookup.query_row([s.id.0.as_bytes()], |row| row.get(0))?,
        };
        keys.push(key);
    }
    Ok(keys)
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
        tx.execute_batch(
            "DELETE FROM fsm_correlations WHERE (correlation_id, ikey) IN \
                 (SELECT DISTINCT correlation_id, ikey FROM fsm_events WHERE ikey IN (SELECT ikey FROM xc_purge)); \
             DELETE FROM fsm_events WHERE ikey IN (SELECT ikey FROM xc_purge); \
             DELETE FROM fsm_snapshots WHERE ikey IN (SELECT ikey FROM xc_purge); \
             DELETE FROM fsm_instances WHERE ikey IN (SELECT ikey FROM xc_purge);",
        )
        .map_err(err("apply_retention"))?;
        tx.commit().map_err(err("apply_retention"))?;
        total += purged as u64;
        if purged < RETENTION_CHUNK {
            return Ok(total);
        }
    }
}

/// A writer whose thread is gone.
pub(super) fn stopped() -> Error {
    unavailable(BACKEND, "commit", "the writer thread has stopped")
}
