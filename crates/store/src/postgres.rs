//! The PostgreSQL store, through sqlx (no TLS, no compile-time macros).
//!
//! Tables live in the configured schema (default `public`). A commit is ONE statement (one
//! round trip, atomic by itself): `INSERT … SELECT FROM UNNEST(arrays)` for the events and
//! upserts of summaries and snapshots as data-modifying CTEs, whatever the batch size; the
//! batch's outbox, inbox, delivered ids and dead-letter changes are more CTEs of the same
//! statement (only those the batch has), so they are stored with the events or not at all.
//! Reads that need several statements run in a `REPEATABLE READ READ ONLY` transaction.
//! Durability maps to `synchronous_commit`.

use crate::PURGE_CHUNK;
use crate::common::{
    Cursor, RETENTION_CHUNK, SEARCH_CHUNK, SEARCH_SCAN_BUDGET, assemble, check_batch,
    correlated_limit, corrupt, latest_snapshots, like_pattern, page_limit, seq_to_i64, summaries,
    text_matches, text_prefilter, unavailable,
};
use crate::sql::{
    EventDocs, RawDeadLetter, RawEvent, event_select, json_text, parse_envelope, parse_record,
};
use crate::{ACQUIRE_TIMEOUT, Durability, StoreOptions, with_retry, within_connect_timeout};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, Connection, PgConnection, PgPool, Row};
use std::str::FromStr;
use uuid::Uuid;
use xcomponent_core::instance::{EventId, InstanceId, Millis};
use xcomponent_core::lease::Fence;
use xcomponent_core::message::{
    DeadLetter, ENVELOPE_SCHEMA_VERSION, Envelope, InboxEntry, MessageId,
};
use xcomponent_core::store::{
    CommitBatch, Error, EventStore, InstanceQuery, InstanceRecord, Page, RECORD_SCHEMA_VERSION,
    Result, Retention, StoredEvent,
};

mod lease;

const BACKEND: &str = "postgres";

/// Embedded schema migrations, applied in order at open.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (2, include_str!("../migrations/postgres/0002_messages.sql")),
    (3, include_str!("../migrations/postgres/0003_event_changes.sql")),
    (4, include_str!("../migrations/postgres/0004_leases.sql")),
];

/// Key of the advisory lock that serializes migrations across processes.
const MIGRATION_LOCK: i64 = 0x7863_5f73_746f_7265; // "xc_store"

/// Longest schema name PostgreSQL accepts.
const MAX_SCHEMA_LEN: usize = 63;
/// SQLSTATE class of data exceptions (`22…`: a NUL character, an unsupported Unicode escape in
/// JSON, a value out of range): the batch's content is refused, not the server unavailable.
const DATA_EXCEPTION_CLASS: &str = "22";
/// Longest any statement runs (server side, `statement_timeout`): a stalled commit or read fails
/// cleanly (rolled back, nothing written) instead of holding its caller.
pub const STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Longest a statement waits for a lock (`lock_timeout`), such as a table locked by a migration
/// or by hand: the commit fails and is retried with the back-off.
pub const LOCK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// A whole commit in ONE statement (one round trip, atomic on its own, no BEGIN/COMMIT): the
/// events ($1-$19 and $36, one UNNEST row each), the summaries ($21-$30, upserted only when the seq
/// advances) and the snapshots ($31-$35, upserted only when not older), as data-modifying CTEs.
/// `{W}` marks where a fenced commit adds its guard (see `commit_sql`).
const COMMIT: &str = "WITH events AS (INSERT INTO fsm_events (id, instance_id, seq, component, machine, \
    event_type, payload, state_before, state_after, status, context, timers, parent_id, parent_machine, entry_point, \
    occurred_at, causation_id, correlation_id, source_component, schema_version, changes) \
    SELECT id, instance_id, seq, component, machine, event_type, payload::jsonb, state_before, state_after, status, \
    context::jsonb, timers::jsonb, parent_id, parent_machine, entry_point, occurred_at, causation_id, correlation_id, \
    source_component, $20, changes::jsonb FROM UNNEST($1::uuid[], $2::uuid[], $3::int8[], $4::text[], $5::text[], \
    $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::uuid[], $14::text[], \
    $15::bool[], $16::int8[], $17::uuid[], $18::uuid[], $19::text[], $36::text[]) AS u(id, instance_id, seq, component, \
    machine, event_type, payload, state_before, state_after, status, context, timers, parent_id, parent_machine, \
    entry_point, occurred_at, causation_id, correlation_id, source_component, changes){W}), \
    instances AS (INSERT INTO fsm_instances (instance_id, component, machine, state, status, seq, created_at, \
    updated_at, entry_point, correlation_id) \
    SELECT * FROM UNNEST($21::uuid[], $22::text[], $23::text[], $24::text[], $25::text[], $26::int8[], $27::int8[], \
    $28::int8[], $29::bool[], $30::uuid[]){W} \
    ON CONFLICT (instance_id) DO UPDATE SET component = EXCLUDED.component, machine = EXCLUDED.machine, \
    state = EXCLUDED.state, status = EXCLUDED.status, seq = EXCLUDED.seq, updated_at = EXCLUDED.updated_at \
    WHERE EXCLUDED.seq > fsm_instances.seq), \
    snapshots AS (INSERT INTO fsm_snapshots (instance_id, seq, state, status, record, schema_version) \
    SELECT instance_id, seq, state, status, record::jsonb, $20 \
    FROM UNNEST($31::uuid[], $32::int8[], $33::text[], $34::text[], $35::text[]) AS u(instance_id, seq, state, status, record){W} \
    ON CONFLICT (instance_id) DO UPDATE SET seq = EXCLUDED.seq, state = EXCLUDED.state, status = EXCLUDED.status, \
    record = EXCLUDED.record, schema_version = EXCLUDED.schema_version WHERE EXCLUDED.seq >= fsm_snapshots.seq)";

/// Bind parameters of `COMMIT` (the message parts are numbered after them).
const COMMIT_PARAMS: usize = 36;

/// Which message parts a batch has: one bit each, so a batch without dead letters (most of
/// them) runs a statement without their CTEs. `commit_sql` builds the statement of each mask.
const PART_OUTBOX: usize = 1;
const PART_INBOX: usize = 2;
const PART_DELIVERED: usize = 4;
const PART_DEAD: usize = 8;
const PART_DEAD_REMOVED: usize = 16;
const PARTS: usize = 32;

/// The commit statement of every combination of message parts, built once: unfenced, then
/// fenced (`CommitBatch::fences` not empty).
static COMMIT_STATEMENTS: std::sync::LazyLock<[[String; PARTS]; 2]> =
    std::sync::LazyLock::new(|| {
        [
            std::array::from_fn(|parts| commit_sql(parts, false)),
            std::array::from_fn(|parts| commit_sql(parts, true)),
        ]
    });

/// The fence of a commit: its leases (`$n` components, `$n+1` partitions, `$n+2` epochs, `$n+3`
/// how many) locked in share mode and compared. The lock makes a concurrent `acquire` (which
/// updates the row) wait for this commit, or this commit see the new epoch (READ COMMITTED
/// re-reads a row updated meanwhile before locking it), so a new owner never loads a partition
/// while a stale owner's commit is still being written.
fn fence_sql(first: usize) -> String {
    let (components, partitions, epochs, count) = (first, first + 1, first + 2, first + 3);
    format!(
        "WITH fence AS (SELECT l.partition FROM fsm_leases l JOIN UNNEST(${components}::text[], \
         ${partitions}::int4[], ${epochs}::int8[]) AS f(component, part, epoch) \
         ON l.component = f.component AND l.partition = f.part AND l.epoch = f.epoch FOR SHARE OF l), \
         held AS (SELECT count(*) = ${count} AS ok FROM fence), "
    )
}

/// `COMMIT` plus one data-modifying CTE per message part in `parts`, parameters numbered from
/// `COMMIT_PARAMS + 1` in the order `PostgresStore::write` binds them. All CTEs see the same
/// snapshot, so the ordering rules of the contract (a message produced and delivered in one
/// batch leaves nothing; a dead letter put and removed in one batch leaves nothing) are written
/// as exclusions: the outbox insert skips delivered ids, the dead-letter upsert removed ids.
///
/// A fenced statement writes nothing unless every fence holds (`{W}`/`and` guards on every
/// data-modifying CTE, which all read the one `held` row) and answers 1 if written, 0 if fenced.
fn commit_sql(parts: usize, fenced: bool) -> String {
    let (guard, and) = if fenced {
        (" WHERE (SELECT ok FROM held)", " AND (SELECT ok FROM held)")
    } else {
        ("", "")
    };
    let mut sql = COMMIT.replace("{W}", guard);
    let mut next = COMMIT_PARAMS;
    let mut param = || {
        next += 1;
        next
    };
    let has = |part: usize| parts & part != 0;
    let (outbox, inbox, delivered, dead, removed) = (
        has(PART_OUTBOX).then(|| (param(), param())),
        has(PART_INBOX).then(|| (param(), param(), param())),
        has(PART_DELIVERED).then(&mut param),
        has(PART_DEAD).then(|| (param(), param(), param(), param(), param(), param())),
        has(PART_DEAD_REMOVED).then(&mut param),
    );
    let version = ENVELOPE_SCHEMA_VERSION;
    if let Some((ids, envelopes)) = outbox {
        let skip = delivered
            .map_or_else(|| guard.to_owned(), |d| format!(" WHERE NOT (id = ANY(${d})){and}"));
        sql.push_str(&format!(
            ", outbox AS (INSERT INTO fsm_outbox (message_id, envelope, schema_version) \
             SELECT id, envelope::jsonb, {version} FROM UNNEST(${ids}::uuid[], ${envelopes}::text[]) \
             AS u(id, envelope){skip} ON CONFLICT (message_id) DO UPDATE SET envelope = EXCLUDED.envelope, \
             schema_version = EXCLUDED.schema_version)"
        ));
    }
    if let Some((messages, instances, at)) = inbox {
        sql.push_str(&format!(
            ", inbox AS (INSERT INTO fsm_inbox (message_id, instance_id, applied_at) \
             SELECT * FROM UNNEST(${messages}::uuid[], ${instances}::uuid[], ${at}::int8[]){guard} \
             ON CONFLICT (message_id, instance_id) DO NOTHING)"
        ));
    }
    if let Some(ids) = delivered {
        sql.push_str(&format!(
            ", delivered AS (DELETE FROM fsm_outbox WHERE message_id = ANY(${ids}::uuid[]){and})"
        ));
    }
    if let Some((ids, envelopes, kinds, reasons, attempts, at)) = dead {
        let skip = removed
            .map_or_else(|| guard.to_owned(), |r| format!(" WHERE NOT (id = ANY(${r})){and}"));
        sql.push_str(&format!(
            ", dead AS (INSERT INTO fsm_dead_letters (message_id, envelope, schema_version, kind, reason, \
             attempts, dead_at) SELECT id, envelope::jsonb, {version}, kind, reason, attempts, dead_at \
             FROM UNNEST(${ids}::uuid[], ${envelopes}::text[], ${kinds}::text[], ${reasons}::text[], \
             ${attempts}::int8[], ${at}::int8[]) AS u(id, envelope, kind, reason, attempts, dead_at){skip} \
             ON CONFLICT (message_id) DO UPDATE SET envelope = EXCLUDED.envelope, \
             schema_version = EXCLUDED.schema_version, kind = EXCLUDED.kind, reason = EXCLUDED.reason, \
             attempts = EXCLUDED.attempts, dead_at = EXCLUDED.dead_at)"
        ));
    }
    if let Some(ids) = removed {
        sql.push_str(&format!(
            ", removed AS (DELETE FROM fsm_dead_letters WHERE message_id = ANY(${ids}::uuid[]){and})"
        ));
    }
    if !fenced {
        sql.push_str(" SELECT 1");
        return sql;
    }
    sql.push_str(" SELECT CASE WHEN (SELECT ok FROM held) THEN 1 ELSE 0 END");
    let fence = fence_sql(param());
    sql.replacen("WITH ", &fence, 1)
}

/// The part mask of `batch` (see `PART_OUTBOX`).
fn parts_of(batch: &CommitBatch) -> usize {
    [
        (PART_OUTBOX, batch.outbox.is_empty()),
        (PART_INBOX, batch.inbox.is_empty()),
        (PART_DELIVERED, batch.delivered.is_empty()),
        (PART_DEAD, batch.dead_letters.is_empty()),
        (PART_DEAD_REMOVED, batch.dead_letters_removed.is_empty()),
    ]
    .into_iter()
    .filter(|(_, empty)| !empty)
    .fold(0, |mask, (part, _)| mask | part)
}

/// One item per key, the LAST of the batch for each (an upsert of the same row twice in one
/// statement is an error in PostgreSQL; the last write wins, as in the memory store), by key.
fn last_per_key<T, K: Ord + Copy>(items: &[T], key: impl Fn(&T) -> K) -> Vec<&T> {
    let mut by_key = std::collections::BTreeMap::new();
    for item in items {
        by_key.insert(key(item), item);
    }
    by_key.into_values().collect()
}

/// One item per key, the FIRST of the batch for each (an inbox entry keeps its first time).
fn first_per_key<T, K: Ord + Copy>(items: &[T], key: impl Fn(&T) -> K) -> Vec<&T> {
    let mut by_key = std::collections::BTreeMap::new();
    for item in items {
        by_key.entry(key(item)).or_insert(item);
    }
    by_key.into_values().collect()
}

/// The primary key whose violation means a sequence conflict.
const EVENTS_KEY: &str = "fsm_events_pkey";

const FIND_CONFLICT: &str = "SELECT u.instance_id, u.seq FROM UNNEST($1::uuid[], $2::int8[]) WITH ORDINALITY \
    AS u(instance_id, seq, n) JOIN fsm_events e ON e.instance_id = u.instance_id AND e.seq = u.seq ORDER BY u.n LIMIT 1";

const RETENTION: &str = "WITH purged AS (SELECT instance_id FROM fsm_instances WHERE status IN ('completed', 'error') \
    AND updated_at < $1 ORDER BY instance_id LIMIT $2 FOR UPDATE SKIP LOCKED), \
    e AS (DELETE FROM fsm_events WHERE instance_id IN (SELECT instance_id FROM purged)), \
    s AS (DELETE FROM fsm_snapshots WHERE instance_id IN (SELECT instance_id FROM purged)), \
    i AS (DELETE FROM fsm_instances WHERE instance_id IN (SELECT instance_id FROM purged) RETURNING 1) \
    SELECT count(*) FROM i";

/// Deletes one chunk of purgeable inbox entries (old, and their message no longer pending).
const PURGE_INBOX: &str = "DELETE FROM fsm_inbox WHERE (message_id, instance_id) IN \
    (SELECT i.message_id, i.instance_id FROM fsm_inbox i WHERE i.applied_at < $1 \
    AND NOT EXISTS (SELECT 1 FROM fsm_outbox o WHERE o.message_id = i.message_id) LIMIT $2)";

/// Columns of `fsm_dead_letters` read by `decode_dead_letter`.
const DEAD_LETTER_COLUMNS: &str = "envelope::text, schema_version, kind, reason, attempts, dead_at";

const READ_TX: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";

/// Event store in a PostgreSQL schema.
#[derive(Debug)]
pub struct PostgresStore {
    pool: PgPool,
    schema: String,
}

fn err(operation: &str) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| unavailable(BACKEND, operation, e)
}

impl PostgresStore {
    /// Connects (up to `StoreOptions::connect_attempts` tries, each within `CONNECT_TIMEOUT`),
    /// creates the schema if needed and migrates.
    ///
    /// A `schema=NAME` parameter in the URL (`postgres://…/db?schema=bench`) overrides
    /// `StoreOptions::schema`, so a URL alone can point a tool at a throw-away schema.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<PostgresStore> {
        let (url, schema_param) = split_schema(url);
        let schema = schema_param.as_deref().unwrap_or(options.schema.as_str());
        let valid = !schema.is_empty()
            && schema.len() <= MAX_SCHEMA_LEN
            && schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !schema.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(Error::Config(format!(
                "invalid PostgreSQL schema name {schema:?} (letters, digits, _)"
            )));
        }
        let synchronous_commit = match options.durability {
            Durability::EachCommit => "on",
            Durability::Relaxed | Durability::None => "off",
        };
        let connect = PgConnectOptions::from_str(&url)
            .map_err(|e| Error::Config(format!("invalid PostgreSQL store URL: {e}")))?
            .application_name("xcomponent-store")
            .options([
                ("search_path", schema),
                ("synchronous_commit", synchronous_commit),
                ("statement_timeout", &format!("{}ms", STATEMENT_TIMEOUT.as_millis())),
                ("lock_timeout", &format!("{}ms", LOCK_TIMEOUT.as_millis())),
            ]);
        // One connection reaches the server and migrates: a refused or silent server fails each
        // attempt within CONNECT_TIMEOUT (the pool would retry it for ACQUIRE_TIMEOUT).
        let mut conn = with_retry(BACKEND, "connect", options.connect_attempts, || async {
            within_connect_timeout(PgConnection::connect_with(&connect)).await
        })
        .await?;
        migrate(&mut conn, schema).await?;
        // Closing is a courtesy to the server; the store is open whether it answers or not.
        if let Err(error) = conn.close().await {
            tracing::debug!(%error, "closing the first PostgreSQL connection");
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.pool_size.max(2))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_lazy_with(connect);
        Ok(PostgresStore { pool, schema: schema.to_owned() })
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// Binds and runs `COMMIT`.
    async fn write(&self, batch: &CommitBatch) -> std::result::Result<(), Failure> {
        let events = &batch.events;
        let docs = events.iter().map(|e| EventDocs::of(BACKEND, e)).collect::<Result<Vec<_>>>()?;
        let seqs = events.iter().map(|e| seq_to_i64(e.seq)).collect::<Result<Vec<_>>>()?;
        let sums = summaries(batch);
        let snapshots = latest_snapshots(batch);
        let parts = parts_of(batch);
        let fenced = !batch.fences.is_empty();
        let query =
            sqlx::query(AssertSqlSafe(COMMIT_STATEMENTS[usize::from(fenced)][parts].as_str()))
                .bind(events.iter().map(|e| e.id.0).collect::<Vec<Uuid>>())
                .bind(events.iter().map(|e| e.instance_id.0).collect::<Vec<Uuid>>())
                .bind(seqs)
                .bind(events.iter().map(|e| &*e.component).collect::<Vec<_>>())
                .bind(events.iter().map(|e| &*e.machine).collect::<Vec<_>>())
                .bind(events.iter().map(|e| &*e.event_type).collect::<Vec<_>>())
                .bind(docs.iter().map(|d| d.payload.as_str()).collect::<Vec<_>>())
                .bind(events.iter().map(|e| &*e.state_before).collect::<Vec<_>>())
                .bind(events.iter().map(|e| &*e.state_after).collect::<Vec<_>>())
                .bind(events.iter().map(|e| e.status.as_str()).collect::<Vec<_>>())
                .bind(docs.iter().map(|d| d.context.as_deref()).collect::<Vec<_>>())
                .bind(docs.iter().map(|d| d.timers.as_str()).collect::<Vec<_>>())
                .bind(
                    events
                        .iter()
                        .map(|e| e.parent.as_ref().map(|p| p.instance_id.0))
                        .collect::<Vec<_>>(),
                )
                .bind(
                    events
                        .iter()
                        .map(|e| e.parent.as_ref().map(|p| p.machine.as_str()))
                        .collect::<Vec<_>>(),
                )
                .bind(events.iter().map(|e| e.entry_point).collect::<Vec<_>>())
                .bind(events.iter().map(|e| e.timestamp).collect::<Vec<_>>())
                .bind(events.iter().map(|e| e.causation_id.map(|c| c.0)).collect::<Vec<_>>())
                .bind(events.iter().map(|e| e.correlation_id.0).collect::<Vec<_>>())
                .bind(events.iter().map(|e| e.source_component.as_deref()).collect::<Vec<_>>())
                .bind(RECORD_SCHEMA_VERSION as i32)
                .bind(sums.iter().map(|s| s.id.0).collect::<Vec<_>>())
                .bind(sums.iter().map(|s| &*s.component).collect::<Vec<_>>())
                .bind(sums.iter().map(|s| &*s.machine).collect::<Vec<_>>())
                .bind(sums.iter().map(|s| &*s.state).collect::<Vec<_>>())
                .bind(sums.iter().map(|s| s.status.as_str()).collect::<Vec<_>>())
                .bind(sums.iter().map(|s| seq_to_i64(s.seq)).collect::<Result<Vec<_>>>()?)
                .bind(sums.iter().map(|s| s.created_at).collect::<Vec<_>>())
                .bind(sums.iter().map(|s| s.updated_at).collect::<Vec<_>>())
                .bind(sums.iter().map(|s| s.entry_point).collect::<Vec<_>>())
                .bind(sums.iter().map(|s| s.correlation_id.0).collect::<Vec<_>>())
                .bind(snapshots.iter().map(|s| s.id.0).collect::<Vec<_>>())
                .bind(snapshots.iter().map(|s| seq_to_i64(s.seq)).collect::<Result<Vec<_>>>()?)
                .bind(snapshots.iter().map(|s| s.state.as_str()).collect::<Vec<_>>())
                .bind(snapshots.iter().map(|s| s.status.as_str()).collect::<Vec<_>>())
                .bind(snapshots.iter().map(|s| json_text(BACKEND, s)).collect::<Result<Vec<_>>>()?)
                .bind(docs.iter().map(|d| d.changes.as_deref()).collect::<Vec<_>>());
        let query = bind_fences(bind_messages(query, batch)?, &batch.fences);
        let written: i32 = query
            .fetch_one(&self.pool)
            .await
            .map_err(Failure::Sql)?
            .try_get(0)
            .map_err(Failure::Sql)?;
        if written == 1 {
            Ok(())
        } else {
            Err(Failure::Store(self.find_fenced(&batch.fences).await?))
        }
    }

    /// Which fence failed a fenced commit that wrote nothing (the first whose lease has another
    /// epoch now; the first fence if they all hold again, which only a lease taken and given
    /// back by the same epoch could do: impossible, as taking always raises the epoch).
    async fn find_fenced(&self, fences: &[Fence]) -> Result<Error> {
        let table = lease::current_epochs(&self.pool, fences).await?;
        let failed = fences
            .iter()
            .find(|fence| {
                table.get(&(fence.component.as_str(), fence.partition)) != Some(&fence.epoch)
            })
            .or(fences.first());
        Ok(failed.map_or_else(
            || unavailable(BACKEND, "commit", "fenced without a fence"),
            |fence| Error::Fenced {
                component: fence.component.clone(),
                partition: fence.partition,
                epoch: fence.epoch,
            },
        ))
    }

    async fn find_conflict(&self, batch: &CommitBatch) -> Result<Error> {
        let row = sqlx::query(FIND_CONFLICT)
            .bind(batch.events.iter().map(|e| e.instance_id.0).collect::<Vec<_>>())
            .bind(batch.events.iter().map(|e| seq_to_i64(e.seq)).collect::<Result<Vec<_>>>()?)
            .fetch_optional(&self.pool)
            .await
            .map_err(err("commit (conflict lookup)"))?;
        match row {
            Some(row) => Ok(Error::Conflict {
                instance_id: InstanceId(row.try_get(0).map_err(err("commit (conflict lookup)"))?),
                seq: crate::sql::parse_seq(
                    BACKEND,
                    row.try_get(1).map_err(err("commit (conflict lookup)"))?,
                )?,
            }),
            None => Ok(unavailable(
                BACKEND,
                "commit",
                "unique violation on a sequence number that is not stored",
            )),
        }
    }

    /// Records of the instances selected by `filter`, rebuilt as snapshot + later events.
    async fn records<'a>(
        tx: &mut PgConnection,
        ids: &[InstanceId],
        filter: &str,
        bind: impl Fn(Query<'a>) -> Query<'a>,
    ) -> Result<Vec<InstanceRecord>> {
        let sql = format!(
            "SELECT s.record::text FROM fsm_instances i JOIN fsm_snapshots s ON s.instance_id = i.instance_id \
             WHERE {filter} ORDER BY i.instance_id"
        );
        let rows = bind(sqlx::query(AssertSqlSafe(sql)))
            .fetch_all(&mut *tx)
            .await
            .map_err(err("restore (snapshots)"))?;
        let mut snapshots = Vec::with_capacity(rows.len());
        for row in &rows {
            snapshots
                .push(parse_record(BACKEND, row.try_get(0).map_err(err("restore (snapshots)"))?)?);
        }
        let sql = format!(
            "SELECT {} FROM fsm_instances i LEFT JOIN fsm_snapshots s ON s.instance_id = i.instance_id \
             JOIN fsm_events e ON e.instance_id = i.instance_id AND e.seq > COALESCE(s.seq, 0) \
             WHERE {filter} ORDER BY i.instance_id, e.seq",
            event_select("e", "::text")
        );
        let rows = bind(sqlx::query(AssertSqlSafe(sql)))
            .fetch_all(&mut *tx)
            .await
            .map_err(err("restore (events)"))?;
        let events = rows.iter().map(decode_event).collect::<Result<Vec<_>>>()?;
        assemble(BACKEND, ids, snapshots, events)
    }

    async fn records_by_id(
        tx: &mut PgConnection,
        ids: &[InstanceId],
    ) -> Result<Vec<InstanceRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let list: Vec<Uuid> = ids.iter().map(|i| i.0).collect();
        Self::records(tx, ids, "i.instance_id = ANY($1)", move |q| q.bind(list.clone())).await
    }

    async fn events(
        &self,
        operation: &str,
        filter: &str,
        key: Uuid,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        let sql = format!(
            "SELECT {} FROM fsm_events e WHERE {filter} LIMIT $2",
            event_select("e", "::text")
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(key)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(err(operation))?;
        rows.iter().map(decode_event).collect()
    }
}

/// Binds the message parts of `batch` present in its part mask, in `commit_sql`'s order.
fn bind_messages<'q>(mut query: Query<'q>, batch: &'q CommitBatch) -> Result<Query<'q>> {
    if !batch.outbox.is_empty() {
        let outbox = last_per_key(&batch.outbox, |m| m.id);
        query = query
            .bind(outbox.iter().map(|m| m.id.0).collect::<Vec<Uuid>>())
            .bind(outbox.iter().map(|m| json_text(BACKEND, m)).collect::<Result<Vec<_>>>()?);
    }
    if !batch.inbox.is_empty() {
        let inbox = first_per_key(&batch.inbox, |e| (e.message_id, e.instance_id));
        query = query
            .bind(inbox.iter().map(|e| e.message_id.0).collect::<Vec<Uuid>>())
            .bind(inbox.iter().map(|e| e.instance_id.0).collect::<Vec<Uuid>>())
            .bind(inbox.iter().map(|e| e.applied_at).collect::<Vec<i64>>());
    }
    if !batch.delivered.is_empty() {
        query = query.bind(batch.delivered.iter().map(|m| m.0).collect::<Vec<Uuid>>());
    }
    if !batch.dead_letters.is_empty() {
        let dead = last_per_key(&batch.dead_letters, |d| d.message.id);
        query = query
            .bind(dead.iter().map(|d| d.message.id.0).collect::<Vec<Uuid>>())
            .bind(dead.iter().map(|d| json_text(BACKEND, &d.message)).collect::<Result<Vec<_>>>()?)
            .bind(dead.iter().map(|d| d.kind.as_str()).collect::<Vec<_>>())
            .bind(dead.iter().map(|d| d.reason.as_str()).collect::<Vec<_>>())
            .bind(dead.iter().map(|d| i64::from(d.attempts)).collect::<Vec<_>>())
            .bind(dead.iter().map(|d| d.dead_at).collect::<Vec<_>>());
    }
    if !batch.dead_letters_removed.is_empty() {
        query = query.bind(batch.dead_letters_removed.iter().map(|m| m.0).collect::<Vec<Uuid>>());
    }
    Ok(query)
}

/// Binds the fence parameters of a fenced statement (none when `fences` is empty), each fence
/// once (the statement compares the count of leases it found with the count of fences).
fn bind_fences<'q>(query: Query<'q>, fences: &'q [Fence]) -> Query<'q> {
    if fences.is_empty() {
        return query;
    }
    let distinct: Vec<&Fence> =
        fences.iter().collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    query
        .bind(distinct.iter().map(|f| f.component.as_str()).collect::<Vec<_>>())
        .bind(
            distinct
                .iter()
                .map(|f| i32::try_from(f.partition).unwrap_or(i32::MAX))
                .collect::<Vec<_>>(),
        )
        .bind(
            distinct.iter().map(|f| i64::try_from(f.epoch).unwrap_or(i64::MAX)).collect::<Vec<_>>(),
        )
        .bind(i64::try_from(distinct.len()).unwrap_or(i64::MAX))
}

/// The URL without its `schema` query parameter, and that parameter's value.
fn split_schema(url: &str) -> (String, Option<String>) {
    let Some((base, query)) = url.split_once('?') else { return (url.to_owned(), None) };
    let mut schema = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|pair| match pair.strip_prefix("schema=") {
            Some(value) => {
                schema = Some(value.to_owned());
                false
            }
            None => !pair.is_empty(),
        })
        .collect();
    let url = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    (url, schema)
}

type Query<'a> = sqlx::query::Query<'a, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// Why a commit failed.
enum Failure {
    /// The statement failed (maybe a sequence conflict).
    Sql(sqlx::Error),
    /// Anything else, already described.
    Store(Error),
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Store(error)
    }
}

fn decode_event(row: &PgRow) -> Result<StoredEvent> {
    let get_err = |e: sqlx::Error| corrupt(BACKEND, "event row", e);
    let text = |i: usize| row.try_get::<&str, _>(i).map_err(get_err);
    let uuid = |i: usize| row.try_get::<Uuid, _>(i).map_err(get_err);
    RawEvent {
        id: uuid(0)?,
        instance_id: uuid(1)?,
        seq: row.try_get(2).map_err(get_err)?,
        component: text(3)?,
        machine: text(4)?,
        event_type: text(5)?,
        payload: text(6)?,
        state_before: text(7)?,
        state_after: text(8)?,
        status: text(9)?,
        context: row.try_get(10).map_err(get_err)?,
        changes: row.try_get(20).map_err(get_err)?,
        timers: text(11)?,
        parent_id: row.try_get(12).map_err(get_err)?,
        parent_machine: row.try_get(13).map_err(get_err)?,
        entry_point: row.try_get(14).map_err(get_err)?,
        occurred_at: row.try_get(15).map_err(get_err)?,
        causation_id: row.try_get(16).map_err(get_err)?,
        correlation_id: uuid(17)?,
        source_component: row.try_get(18).map_err(get_err)?,
    }
    .decode(BACKEND)
}

/// Creates the schema if needed and applies the embedded migrations not yet recorded.
async fn migrate(conn: &mut PgConnection, schema: &str) -> Result<()> {
    use sqlx::Connection;
    let mut tx = conn.begin().await.map_err(err("migrate"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(err("migrate"))?;
    // The schema name was validated (letters, digits, underscores), so quoting it is enough.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "CREATE SCHEMA IF NOT EXISTS \"{schema}\"; \
         CREATE TABLE IF NOT EXISTS fsm_schema_version (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)"
    )))
    .execute(&mut *tx)
    .await
    .map_err(err("migrate"))?;
    let current: i32 =
        sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM fsm_schema_version")
            .fetch_one(&mut *tx)
            .await
            .map_err(err("migrate"))?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    if i64::from(current) > latest {
        return Err(Error::Config(format!(
            "PostgreSQL schema version {current} is newer than this build supports ({latest})"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > i64::from(current)) {
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(err("migrate"))?;
        sqlx::query("INSERT INTO fsm_schema_version (version, applied_at) VALUES ($1, $2)")
            .bind(*version as i32)
            .bind(crate::common::now_millis())
            .execute(&mut *tx)
            .await
            .map_err(err("migrate"))?;
        tracing::info!(backend = BACKEND, schema, version, "applied store migration");
    }
    tx.commit().await.map_err(err("migrate"))
}

#[async_trait]
impl EventStore for PostgresStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn commit(&self, batch: &CommitBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        check_batch(batch)?;
        match self.write(batch).await {
            Ok(()) => Ok(()),
            Err(Failure::Sql(sqlx::Error::Database(db)))
                if db.is_unique_violation() && db.constraint() == Some(EVENTS_KEY) =>
            {
                Err(self.find_conflict(batch).await?)
            }
            Err(Failure::Sql(sqlx::Error::Database(db)))
                if db.code().is_some_and(|code| code.starts_with(DATA_EXCEPTION_CLASS)) =>
            {
                Err(Error::Rejected(format!("{BACKEND} commit: {db}")))
            }
            Err(Failure::Sql(e)) => Err(unavailable(BACKEND, "commit", e)),
            Err(Failure::Store(e)) => Err(e),
        }
    }

    async fn load_active(
        &self,
        after: Option<InstanceId>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>> {
        // Without `after`, start at the nil id inclusively (`>=`), else strictly after it.
        let (start, op) = after.map_or((Uuid::nil(), ">="), |a| (a.0, ">"));
        let mut tx = self.pool.begin_with(READ_TX).await.map_err(err("load_active"))?;
        let sql = format!(
            "SELECT instance_id FROM fsm_instances WHERE status = 'active' AND instance_id {op} $1 \
             ORDER BY instance_id LIMIT $2"
        );
        let ids: Vec<Uuid> = sqlx::query_scalar(AssertSqlSafe(sql))
            .bind(start)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(err("load_active"))?;
        let Some(&last) = ids.last() else { return Ok(Vec::new()) };
        let ids: Vec<InstanceId> = ids.into_iter().map(InstanceId).collect();
        let filter =
            format!("i.status = 'active' AND i.instance_id {op} $1 AND i.instance_id <= $2");
        let records = Self::records(&mut tx, &ids, &filter, |q| q.bind(start).bind(last)).await?;
        tx.commit().await.map_err(err("load_active"))?;
        Ok(records)
    }

    async fn instance(&self, id: InstanceId) -> Result<Option<InstanceRecord>> {
        let mut tx = self.pool.begin_with(READ_TX).await.map_err(err("instance"))?;
        let exists: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM fsm_instances WHERE instance_id = $1")
                .bind(id.0)
                .fetch_optional(&mut *tx)
                .await
                .map_err(err("instance"))?;
        if exists.is_none() {
            return Ok(None);
        }
        let record = Self::records_by_id(&mut tx, &[id]).await?.pop();
        tx.commit().await.map_err(err("instance"))?;
        Ok(record)
    }

    async fn history(&self, id: InstanceId) -> Result<Vec<StoredEvent>> {
        self.events("history", "e.instance_id = $1 ORDER BY e.seq", id.0, i64::MAX).await
    }

    /// Without `text` one statement selects the page. With `text`, candidates (the id matches,
    /// or an event of the instance holds the text: `text_prefilter`) are checked on their
    /// rebuilt records, in rounds of `SEARCH_CHUNK` and at most `SEARCH_SCAN_BUDGET` per call
    /// (then the page comes back short, with a cursor to continue).
    async fn search(&self, query: &InstanceQuery) -> Result<Page<InstanceRecord>> {
        let limit = page_limit(query.limit);
        let mut position = Cursor::of(query)?;
        let fetch = if query.text.is_some() { SEARCH_CHUNK } else { limit + 1 };
        let mut tx = self.pool.begin_with(READ_TX).await.map_err(err("search"))?;
        let mut items: Vec<InstanceRecord> = Vec::new();
        let mut scanned = 0;
        loop {
            let hits = search_candidates(&mut tx, query, position, fetch).await?;
            scanned += hits.len();
            let ids: Vec<InstanceId> = hits.iter().map(|h| h.1).collect();
            let records = Self::records_by_id(&mut tx, &ids).await?;
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
        tx.commit().await.map_err(err("search"))?;
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|r| Cursor::after(r.updated_at, r.id).encode())
        } else {
            // Budget spent before the page filled: resume after the last candidate examined.
            position.map(Cursor::encode)
        };
        Ok(Page { items, next_cursor })
    }

    async fn correlated(&self, correlation_id: EventId, limit: usize) -> Result<Vec<StoredEvent>> {
        let filter = "e.correlation_id = $1 ORDER BY e.occurred_at, e.id";
        self.events("correlated", filter, correlation_id.0, correlated_limit(limit) as i64).await
    }

    async fn apply_retention(&self, retention: Retention, now: Millis) -> Result<u64> {
        let Some(keep) = retention.keep_finished_ms else { return Ok(0) };
        let cutoff = now.saturating_sub(keep);
        let mut total = 0;
        loop {
            let purged: i64 = sqlx::query_scalar(RETENTION)
                .bind(cutoff)
                .bind(RETENTION_CHUNK as i64)
                .fetch_one(&self.pool)
                .await
                .map_err(err("apply_retention"))?;
            let purged = u64::try_from(purged).unwrap_or(0);
            total += purged;
            if purged < RETENTION_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    async fn ping(&self) -> Result<()> {
        let _: i32 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM fsm_schema_version")
            .fetch_one(&self.pool)
            .await
            .map_err(err("ping"))?;
        Ok(())
    }

    async fn pending_messages(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Envelope>> {
        let rows = self
            .message_page(
                "pending_messages",
                "envelope::text, schema_version",
                "fsm_outbox",
                after,
                limit,
            )
            .await?;
        let get_err = |e: sqlx::Error| corrupt(BACKEND, "outbox row", e);
        rows.iter()
            .map(|row| {
                let version: i32 = row.try_get(1).map_err(get_err)?;
                parse_envelope(BACKEND, i64::from(version), row.try_get(0).map_err(get_err)?)
            })
            .collect()
    }

    async fn inbox_entries(&self, messages: &[MessageId]) -> Result<Vec<InboxEntry>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT message_id, instance_id, applied_at FROM fsm_inbox WHERE message_id = ANY($1) \
             ORDER BY message_id, instance_id",
        )
        .bind(messages.iter().map(|m| m.0).collect::<Vec<Uuid>>())
        .fetch_all(&self.pool)
        .await
        .map_err(err("inbox_entries"))?;
        let get_err = |e: sqlx::Error| corrupt(BACKEND, "inbox row", e);
        rows.iter()
            .map(|row| {
                Ok(InboxEntry {
                    message_id: MessageId(row.try_get(0).map_err(get_err)?),
                    instance_id: InstanceId(row.try_get(1).map_err(get_err)?),
                    applied_at: row.try_get(2).map_err(get_err)?,
                })
            })
            .collect()
    }

    async fn purge_inbox(&self, before: Millis) -> Result<u64> {
        let mut total = 0;
        loop {
            let deleted = sqlx::query(PURGE_INBOX)
                .bind(before)
                .bind(PURGE_CHUNK as i64)
                .execute(&self.pool)
                .await
                .map_err(err("purge_inbox"))?
                .rows_affected();
            total += deleted;
            if deleted < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    async fn dead_letters(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        let rows = self
            .message_page("dead_letters", DEAD_LETTER_COLUMNS, "fsm_dead_letters", after, limit)
            .await?;
        rows.iter().map(decode_dead_letter).collect()
    }

    async fn dead_letter(&self, message: MessageId) -> Result<Option<DeadLetter>> {
        let sql =
            format!("SELECT {DEAD_LETTER_COLUMNS} FROM fsm_dead_letters WHERE message_id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(message.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(err("dead_letter"))?;
        row.as_ref().map(decode_dead_letter).transpose()
    }

    fn leases(&self) -> Option<&dyn xcomponent_core::lease::LeaseStore> {
        Some(self)
    }
}

impl PostgresStore {
    /// One page of `columns` of a table keyed by message id, in id order, after `after`
    /// (from the start when `None`), at most `limit` rows (capped by `page_limit`).
    async fn message_page(
        &self,
        operation: &'static str,
        columns: &str,
        table: &str,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<PgRow>> {
        // Without `after`, start at the nil id inclusively (`>=`), else strictly after it.
        let (start, op) = after.map_or((Uuid::nil(), ">="), |a| (a.0, ">"));
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE message_id {op} $1 ORDER BY message_id LIMIT $2"
        );
        sqlx::query(AssertSqlSafe(sql))
            .bind(start)
            .bind(page_limit(limit) as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(err(operation))
    }
}

fn decode_dead_letter(row: &PgRow) -> Result<DeadLetter> {
    let get_err = |e: sqlx::Error| corrupt(BACKEND, "dead letter row", e);
    let version: i32 = row.try_get(1).map_err(get_err)?;
    RawDeadLetter {
        envelope: row.try_get(0).map_err(get_err)?,
        schema_version: i64::from(version),
        kind: row.try_get(2).map_err(get_err)?,
        reason: row.try_get(3).map_err(get_err)?,
        attempts: row.try_get(4).map_err(get_err)?,
        dead_at: row.try_get(5).map_err(get_err)?,
    }
    .decode(BACKEND)
}

/// `(updated_at, id)` of at most `fetch` instances matching the filters of `query` after
/// `cursor`, most recently updated first; with `text`, a superset of the matches.
async fn search_candidates(
    tx: &mut PgConnection,
    query: &InstanceQuery,
    cursor: Option<Cursor>,
    fetch: usize,
) -> Result<Vec<(Millis, InstanceId)>> {
    let mut sql =
        String::from("SELECT i.instance_id, i.updated_at FROM fsm_instances i WHERE TRUE");
    let mut binds: Vec<Bind> = Vec::new();
    let mut filter = |clause: &str, value: Bind| {
        binds.push(value);
        sql.push_str(&clause.replace('#', &format!("${}", binds.len())));
    };
    if let Some(v) = &query.component {
        filter(" AND i.component = #", Bind::Text(v.clone()));
    }
    if let Some(v) = &query.machine {
        filter(" AND i.machine = #", Bind::Text(v.clone()));
    }
    if let Some(v) = &query.state {
        filter(" AND i.state = #", Bind::Text(v.clone()));
    }
    if let Some(v) = query.status {
        filter(" AND i.status = #", Bind::Text(v.as_str().to_owned()));
    }
    if let Some(v) = query.updated_from {
        filter(" AND i.updated_at >= #", Bind::Int(v));
    }
    if let Some(v) = query.updated_to {
        filter(" AND i.updated_at <= #", Bind::Int(v));
    }
    if let Some(c) = cursor {
        filter(" AND (i.updated_at, i.instance_id) < (#", Bind::Int(c.updated_at));
        filter(", #)", Bind::Uuid(c.id.0));
    }
    if let Some(text) = query.text.as_deref().filter(|t| text_prefilter(t)) {
        filter(
            " AND (i.instance_id::text ILIKE # OR EXISTS (SELECT 1 FROM fsm_events e \
             WHERE e.instance_id = i.instance_id AND (e.context::text ILIKE # OR e.changes::text ILIKE #)))",
            Bind::Text(like_pattern(text)),
        );
    }
    binds.push(Bind::Int(i64::try_from(fetch).unwrap_or(i64::MAX)));
    sql.push_str(&format!(
        " ORDER BY i.updated_at DESC, i.instance_id DESC LIMIT ${}",
        binds.len()
    ));
    let mut q = sqlx::query(AssertSqlSafe(sql));
    for bind in binds {
        q = match bind {
            Bind::Text(t) => q.bind(t),
            Bind::Int(i) => q.bind(i),
            Bind::Uuid(u) => q.bind(u),
        };
    }
    let rows = q.fetch_all(&mut *tx).await.map_err(err("search"))?;
    let mut hits = Vec::with_capacity(rows.len());
    for row in &rows {
        hits.push((
            row.try_get(1).map_err(err("search"))?,
            InstanceId(row.try_get(0).map_err(err("search"))?),
        ));
    }
    Ok(hits)
}

/// A bind value of a dynamically built query.
enum Bind {
    Text(String),
    Int(i64),
    Uuid(Uuid),
}
