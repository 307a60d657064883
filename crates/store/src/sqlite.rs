//! The embedded store: one SQLite file in WAL mode, through sqlx.
//!
//! One writer connection (commits are serialized, each one a `BEGIN IMMEDIATE` transaction with
//! multi-row inserts) and a pool of readers that see consistent snapshots. The schema is
//! embedded (`migrations/sqlite`) and applied at open; `fsm_schema_version` records it.
//! Durability maps to `PRAGMA synchronous` (FULL / NORMAL / OFF).

use crate::common::{
    Cursor, RETENTION_CHUNK, assemble, check_batch, correlated_limit, latest_snapshots, like_pattern, page_limit,
    seq_to_i64, summaries, unavailable,
};
use crate::sql::{EventDocs, RawEvent, json_text};
use crate::{ACQUIRE_TIMEOUT, Durability, StoreOptions, with_retry};
use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{AssertSqlSafe, Connection, Row, SqliteConnection, SqlitePool};
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;
use xcomponent_core::instance::{EventId, InstanceId, Millis};
use xcomponent_core::store::{
    CommitBatch, Error, EventStore, InstanceQuery, InstanceRecord, Page, RECORD_SCHEMA_VERSION, Result, Retention,
    StoredEvent,
};

const BACKEND: &str = "sqlite";

/// One `fsm_events` row (alias `e`) as the JSON of a `StoredEvent` holding what a restore folds
/// (`InstanceRecord::from_creation` / `apply`): the event's own id, type, payload and previous
/// state are left blank, since a fold never reads them and they are never returned. The document
/// columns hold JSON written by this store and are spliced in as they are; text is quoted.
const RESTORE_EVENT_JSON: &str = "'{\"id\":\"00000000-0000-0000-0000-000000000000\",\"eventType\":\"\",\
    \"payload\":{},\"stateBefore\":\"\",\"instanceId\":\"' || e.instance_id || '\",\"seq\":' || e.seq \
    || ',\"component\":' || json_quote(e.component) || ',\"machine\":' || json_quote(e.machine) \
    || ',\"stateAfter\":' || json_quote(e.state_after) || ',\"status\":\"' || e.status \
    || '\",\"context\":' || e.context || ',\"timers\":' || e.timers \
    || CASE WHEN e.parent_id IS NULL THEN '' ELSE ',\"parent\":{\"instanceId\":\"' || e.parent_id \
       || '\",\"machine\":' || json_quote(e.parent_machine) || '}' END \
    || CASE WHEN e.entry_point THEN ',\"entryPoint\":true' ELSE '' END \
    || ',\"timestamp\":' || e.occurred_at || ',\"correlationId\":\"' || e.correlation_id || '\"}'";

/// Embedded schema migrations, applied in order at open.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../migrations/sqlite/0001_init.sql"))];

/// Rows per multi-row `INSERT` (20 binds each for events: well under SQLite's 32,766 limit).
const ROWS_PER_INSERT: usize = 100;

/// Rows the SQLite worker thread may run ahead of the reader (sqlx's default is 50).
const ROW_BUFFER: usize = 1_024;

/// How long a connection waits on a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page cache per connection, in KiB (negative = KiB for `PRAGMA cache_size`).
const CACHE_KIB: &str = "-65536";

/// Event store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    path: PathBuf,
}

fn err(operation: &str) -> impl Fn(sqlx::Error) -> Error + '_ {
    move |e| unavailable(BACKEND, operation, e)
}

impl SqliteStore {
    /// Opens (creating the file and its parent directories) and migrates `sqlite://PATH`.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<SqliteStore> {
        let path = url.strip_prefix("sqlite://").filter(|p| !p.is_empty()).ok_or_else(|| {
            Error::Config(format!("invalid SQLite store URL {url:?}: expected sqlite://PATH"))
        })?;
        if path.contains('?') {
            return Err(Error::Config(format!("SQLite store URL {url:?}: parameters are not supported, use StoreOptions")));
        }
        let path = PathBuf::from(path);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| unavailable(BACKEND, "open", format_args!("cannot create {}: {e}", parent.display())))?;
        }
        let synchronous = match options.durability {
            Durability::EachCommit => SqliteSynchronous::Full,
            Durability::Relaxed => SqliteSynchronous::Normal,
            Durability::None => SqliteSynchronous::Off,
        };
        let base = SqliteConnectOptions::new()
            .filename(&path)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(synchronous)
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", CACHE_KIB)
            .pragma("temp_store", "memory")
            .row_buffer_size(ROW_BUFFER);
        let writer_options = base.clone().create_if_missing(true);
        let writer = with_retry(BACKEND, "open writer", || {
            SqlitePoolOptions::new()
                .max_connections(1)
                .acquire_timeout(ACQUIRE_TIMEOUT)
                .connect_with(writer_options.clone())
        })
        .await?;
        let store_path = path.clone();
        let mut conn = writer.acquire().await.map_err(err("open"))?;
        migrate(&mut conn).await?;
        drop(conn);
        let readers = SqlitePoolOptions::new()
            .max_connections(options.pool_size.max(1))
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(base.read_only(true))
            .await
            .map_err(err("open readers"))?;
        Ok(SqliteStore { writer, readers, path: store_path })
    }

    /// The database file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    async fn insert_events(tx: &mut SqliteConnection, events: &[StoredEvent]) -> std::result::Result<(), sqlx::Error> {
        for chunk in events.chunks(ROWS_PER_INSERT) {
            let sql = values_sql("INSERT INTO fsm_events (", &crate::sql::EVENT_COLUMNS.join(", "), 20, chunk.len(), "");
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for e in chunk {
                let docs = EventDocs::of(BACKEND, e).map_err(|e| sqlx::Error::Encode(e.into()))?;
                query = query
                    .bind(e.id.to_string())
                    .bind(e.instance_id.to_string())
                    .bind(seq_to_i64(e.seq).map_err(|e| sqlx::Error::Encode(e.into()))?)
                    .bind(e.component.as_str())
                    .bind(e.machine.as_str())
                    .bind(e.event_type.as_str())
                    .bind(docs.payload)
                    .bind(e.state_before.as_str())
                    .bind(e.state_after.as_str())
                    .bind(e.status.as_str())
                    .bind(docs.context)
                    .bind(docs.timers)
                    .bind(e.parent.as_ref().map(|p| p.instance_id.to_string()))
                    .bind(e.parent.as_ref().map(|p| p.machine.as_str()))
                    .bind(e.entry_point)
                    .bind(e.timestamp)
                    .bind(e.causation_id.map(|c| c.to_string()))
                    .bind(e.correlation_id.to_string())
                    .bind(e.source_component.as_deref())
                    .bind(RECORD_SCHEMA_VERSION as i64);
            }
            query.execute(&mut *tx).await?;
        }
        Ok(())
    }

    async fn write_summaries_and_snapshots(tx: &mut SqliteConnection, batch: &CommitBatch) -> Result<()> {
        let summaries = summaries(batch);
        for chunk in summaries.chunks(ROWS_PER_INSERT) {
            let cols = "instance_id, component, machine, state, status, seq, created_at, updated_at, entry_point, correlation_id";
            let tail = " ON CONFLICT (instance_id) DO UPDATE SET component = excluded.component, machine = excluded.machine, \
                        state = excluded.state, status = excluded.status, seq = excluded.seq, updated_at = excluded.updated_at \
                        WHERE excluded.seq > fsm_instances.seq";
            let mut query = sqlx::query(AssertSqlSafe(values_sql("INSERT INTO fsm_instances (", cols, 10, chunk.len(), tail)));
            for s in chunk {
                query = query
                    .bind(s.id.to_string())
                    .bind(s.component.as_str())
                    .bind(s.machine.as_str())
                    .bind(s.state.as_str())
                    .bind(s.status.as_str())
                    .bind(seq_to_i64(s.seq)?)
                    .bind(s.created_at)
                    .bind(s.updated_at)
                    .bind(s.entry_point)
                    .bind(s.correlation_id.to_string());
            }
            query.execute(&mut *tx).await.map_err(err("commit (fsm_instances)"))?;
        }
        for chunk in latest_snapshots(batch).chunks(ROWS_PER_INSERT) {
            let cols = "instance_id, seq, state, status, record, schema_version";
            let tail = " ON CONFLICT (instance_id) DO UPDATE SET seq = excluded.seq, state = excluded.state, \
                        status = excluded.status, record = excluded.record, schema_version = excluded.schema_version \
                        WHERE excluded.seq >= fsm_snapshots.seq";
            let mut query = sqlx::query(AssertSqlSafe(values_sql("INSERT INTO fsm_snapshots (", cols, 6, chunk.len(), tail)));
            for s in chunk {
                query = query
                    .bind(s.id.to_string())
                    .bind(seq_to_i64(s.seq)?)
                    .bind(s.state.as_str())
                    .bind(s.status.as_str())
                    .bind(json_text(BACKEND, s)?)
                    .bind(RECORD_SCHEMA_VERSION as i64);
            }
            query.execute(&mut *tx).await.map_err(err("commit (fsm_snapshots)"))?;
        }
        Ok(())
    }

    /// The first event of the batch whose `(instance, seq)` is already stored.
    async fn find_conflict(conn: &mut SqliteConnection, batch: &CommitBatch) -> Result<Error> {
        for e in &batch.events {
            let found = sqlx::query("SELECT 1 FROM fsm_events WHERE instance_id = ?1 AND seq = ?2")
                .bind(e.instance_id.to_string())
                .bind(seq_to_i64(e.seq)?)
                .fetch_optional(&mut *conn)
                .await
                .map_err(err("commit (conflict lookup)"))?;
            if found.is_some() {
                return Ok(Error::Conflict { instance_id: e.instance_id, seq: e.seq });
            }
        }
        Ok(unavailable(BACKEND, "commit", "unique violation on a sequence number that is not stored"))
    }

    /// Records of the instances selected by `filter` (binds `binds`), rebuilt as snapshot + later events.
    ///
    /// SQLite hands rows to sqlx one by one through a channel, which costs far more than the
    /// query itself; so each query returns ONE row: the whole page as a JSON array built by SQLite
    /// from the stored JSON columns, parsed here in one go.
    async fn records(conn: &mut SqliteConnection, ids: &[InstanceId], filter: &str, binds: &[String]) -> Result<Vec<InstanceRecord>> {
        let snapshot_sql = format!(
            "SELECT group_concat(s.record, ',') FROM fsm_instances i \
             JOIN fsm_snapshots s ON s.instance_id = i.instance_id WHERE {filter}"
        );
        let snapshots: Vec<InstanceRecord> = Self::json_page(conn, snapshot_sql, binds, "restore (snapshots)").await?;
        let events_sql = format!(
            "SELECT group_concat({RESTORE_EVENT_JSON}, ',') FROM fsm_instances i \
             LEFT JOIN fsm_snapshots s ON s.instance_id = i.instance_id \
             JOIN fsm_events e ON e.instance_id = i.instance_id AND e.seq > COALESCE(s.seq, 0) WHERE {filter}"
        );
        let mut events: Vec<StoredEvent> = Self::json_page(conn, events_sql, binds, "restore (events)").await?;
        events.sort_unstable_by_key(|e| (e.instance_id, e.seq));
        assemble(BACKEND, ids, snapshots, events)
    }

    /// Runs a one-row query returning comma-separated JSON values and parses them as an array.
    async fn json_page<T: serde::de::DeserializeOwned>(
        conn: &mut SqliteConnection,
        sql: String,
        binds: &[String],
        operation: &str,
    ) -> Result<Vec<T>> {
        let mut query = sqlx::query_scalar::<_, Option<String>>(AssertSqlSafe(sql));
        for bind in binds {
            query = query.bind(bind.as_str());
        }
        let Some(list) = query.fetch_one(&mut *conn).await.map_err(err(operation))? else { return Ok(Vec::new()) };
        let mut text = String::with_capacity(list.len() + 2);
        text.push('[');
        text.push_str(&list);
        text.push(']');
        serde_json::from_str(&text).map_err(|e| crate::common::corrupt(BACKEND, operation, e))
    }

    async fn records_by_id(conn: &mut SqliteConnection, ids: &[InstanceId]) -> Result<Vec<InstanceRecord>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = vec!["?"; ids.len()].join(", ");
        let binds: Vec<String> = ids.iter().map(InstanceId::to_string).collect();
        Self::records(conn, ids, &format!("i.instance_id IN ({placeholders})"), &binds).await
    }

    async fn events(&self, operation: &str, sql: &'static str, key: String, limit: i64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(sql).bind(key).bind(limit).fetch_all(&self.readers).await.map_err(err(operation))?;
        rows.iter().map(decode_event).collect()
    }
}

/// `INSERT INTO t (cols) VALUES (?, …), … tail` for `rows` rows of `width` columns.
fn values_sql(head: &str, cols: &str, width: usize, rows: usize, tail: &str) -> String {
    let tuple = format!("({})", vec!["?"; width].join(", "));
    format!("{head}{cols}) VALUES {}{tail}", vec![tuple.as_str(); rows].join(", "))
}

fn parse_uuid(text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|e| crate::common::corrupt(BACKEND, "uuid column", format_args!("{text:?}: {e}")))
}

fn decode_event(row: &SqliteRow) -> Result<StoredEvent> {
    let get_err = |e: sqlx::Error| crate::common::corrupt(BACKEND, "event row", e);
    let text = |i: usize| row.try_get::<&str, _>(i).map_err(get_err);
    let opt_text = |i: usize| row.try_get::<Option<&str>, _>(i).map_err(get_err);
    let int = |i: usize| row.try_get::<i64, _>(i).map_err(get_err);
    RawEvent {
        id: parse_uuid(text(0)?)?,
        instance_id: parse_uuid(text(1)?)?,
        seq: int(2)?,
        component: text(3)?,
        machine: text(4)?,
        event_type: text(5)?,
        payload: text(6)?,
        state_before: text(7)?,
        state_after: text(8)?,
        status: text(9)?,
        context: text(10)?,
        timers: text(11)?,
        parent_id: opt_text(12)?.map(parse_uuid).transpose()?,
        parent_machine: opt_text(13)?,
        entry_point: int(14)? != 0,
        occurred_at: int(15)?,
        causation_id: opt_text(16)?.map(parse_uuid).transpose()?,
        correlation_id: parse_uuid(text(17)?)?,
        source_component: opt_text(18)?,
    }
    .decode(BACKEND)
}

/// Applies the embedded migrations not yet recorded in `fsm_schema_version`.
async fn migrate(conn: &mut SqliteConnection) -> Result<()> {
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS fsm_schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .execute(&mut *conn)
    .await
    .map_err(err("migrate"))?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(err("migrate"))?;
    let current: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM fsm_schema_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(err("migrate"))?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > latest {
        return Err(Error::Config(format!(
            "SQLite schema version {current} is newer than this build supports ({latest})"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        sqlx::raw_sql(*sql).execute(&mut *tx).await.map_err(err("migrate"))?;
        sqlx::query("INSERT INTO fsm_schema_version (version, applied_at) VALUES (?1, ?2)")
            .bind(version)
            .bind(crate::common::now_millis())
            .execute(&mut *tx)
            .await
            .map_err(err("migrate"))?;
        tracing::info!(backend = BACKEND, version, "applied store migration");
    }
    tx.commit().await.map_err(err("migrate"))
}

#[async_trait]
impl EventStore for SqliteStore {
    fn backend(&self) -> &'static str {
        BACKEND
    }

    async fn commit(&self, batch: &CommitBatch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        check_batch(batch)?;
        let mut conn = self.writer.acquire().await.map_err(err("commit"))?;
        let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(err("commit"))?;
        match Self::insert_events(&mut tx, &batch.events).await {
            Ok(()) => {}
            Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                tx.rollback().await.map_err(err("commit (rollback)"))?;
                return Err(Self::find_conflict(&mut conn, batch).await?);
            }
            Err(sqlx::Error::Encode(e)) => return Err(Error::Config(format!("{BACKEND} commit: {e}"))),
            Err(e) => return Err(unavailable(BACKEND, "commit (fsm_events)", e)),
        }
        Self::write_summaries_and_snapshots(&mut tx, batch).await?;
        tx.commit().await.map_err(err("commit"))
    }

    async fn load_active(&self, after: Option<InstanceId>, limit: usize) -> Result<Vec<InstanceRecord>> {
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let mut tx = self.readers.begin().await.map_err(err("load_active"))?;
        // One row holding the page's ids (rows cross a channel one by one: see `records`).
        let ids: Option<String> = sqlx::query_scalar(
            "SELECT group_concat(instance_id, ',') FROM (SELECT instance_id FROM fsm_instances \
             WHERE status = 'active' AND instance_id > ?1 ORDER BY instance_id LIMIT ?2)",
        )
        .bind(after.as_str())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_one(&mut *tx)
        .await
        .map_err(err("load_active"))?;
        let Some(ids) = ids else { return Ok(Vec::new()) };
        let mut ids = ids.split(',').map(|t| parse_uuid(t).map(InstanceId)).collect::<Result<Vec<_>>>()?;
        ids.sort_unstable();
        let Some(last) = ids.last().map(InstanceId::to_string) else { return Ok(Vec::new()) };
        let filter = "i.status = 'active' AND i.instance_id > ?1 AND i.instance_id <= ?2";
        let records = Self::records(&mut tx, &ids, filter, &[after, last]).await?;
        tx.commit().await.map_err(err("load_active"))?;
        Ok(records)
    }

    async fn instance(&self, id: InstanceId) -> Result<Option<InstanceRecord>> {
        let mut tx = self.readers.begin().await.map_err(err("instance"))?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM fsm_instances WHERE instance_id = ?1")
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(err("instance"))?;
        if exists.is_none() {
            return Ok(None);
        }
        Ok(Self::records_by_id(&mut tx, &[id]).await?.pop())
    }

    async fn history(&self, id: InstanceId) -> Result<Vec<StoredEvent>> {
        const SQL: &str = "SELECT id, instance_id, seq, component, machine, event_type, payload, state_before, \
            state_after, status, context, timers, parent_id, parent_machine, entry_point, occurred_at, causation_id, \
            correlation_id, source_component, schema_version FROM fsm_events WHERE instance_id = ?1 ORDER BY seq LIMIT ?2";
        self.events("history", SQL, id.to_string(), i64::MAX).await
    }

    async fn search(&self, query: &InstanceQuery) -> Result<Page<InstanceRecord>> {
        let limit = page_limit(query.limit);
        let cursor = Cursor::of(query)?;
        let mut sql = String::from("SELECT i.instance_id, i.updated_at FROM fsm_instances i ");
        if query.text.is_some() {
            sql.push_str("LEFT JOIN fsm_events e ON e.instance_id = i.instance_id AND e.seq = i.seq ");
        }
        sql.push_str("WHERE 1 = 1");
        let mut binds: Vec<Bind> = Vec::new();
        let mut filter = |clause: &str, value: Bind| {
            sql.push_str(clause);
            binds.push(value);
        };
        if let Some(v) = &query.component { filter(" AND i.component = ?", Bind::Text(v.clone())); }
        if let Some(v) = &query.machine { filter(" AND i.machine = ?", Bind::Text(v.clone())); }
        if let Some(v) = &query.state { filter(" AND i.state = ?", Bind::Text(v.clone())); }
        if let Some(v) = query.status { filter(" AND i.status = ?", Bind::Text(v.as_str().to_owned())); }
        if let Some(v) = query.updated_from { filter(" AND i.updated_at >= ?", Bind::Int(v)); }
        if let Some(v) = query.updated_to { filter(" AND i.updated_at <= ?", Bind::Int(v)); }
        if let Some(c) = cursor {
            filter(" AND (i.updated_at < ?", Bind::Int(c.updated_at));
            filter(" OR (i.updated_at = ?", Bind::Int(c.updated_at));
            filter(" AND i.instance_id < ?))", Bind::Text(c.id.to_string()));
        }
        if let Some(text) = &query.text {
            let pattern = like_pattern(text);
            filter(" AND (i.instance_id LIKE ? ESCAPE '\\'", Bind::Text(pattern.clone()));
            filter(" OR e.context LIKE ? ESCAPE '\\')", Bind::Text(pattern));
        }
        sql.push_str(" ORDER BY i.updated_at DESC, i.instance_id DESC LIMIT ?");
        binds.push(Bind::Int(limit as i64 + 1));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for bind in binds {
            q = match bind {
                Bind::Text(t) => q.bind(t),
                Bind::Int(i) => q.bind(i),
            };
        }
        let mut tx = self.readers.begin().await.map_err(err("search"))?;
        let rows = q.fetch_all(&mut *tx).await.map_err(err("search"))?;
        let mut hits: Vec<(Millis, InstanceId)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: &str = row.try_get(0).map_err(err("search"))?;
            hits.push((row.try_get(1).map_err(err("search"))?, InstanceId(parse_uuid(id)?)));
        }
        let next_cursor = (hits.len() > limit).then(|| Cursor::after(hits[limit - 1].0, hits[limit - 1].1).encode());
        hits.truncate(limit);
        let ids: Vec<InstanceId> = hits.iter().map(|h| h.1).collect();
        let items = Self::records_by_id(&mut tx, &ids).await?;
        Ok(Page { items, next_cursor })
    }

    async fn correlated(&self, correlation_id: EventId, limit: usize) -> Result<Vec<StoredEvent>> {
        const SQL: &str = "SELECT id, instance_id, seq, component, machine, event_type, payload, state_before, \
            state_after, status, context, timers, parent_id, parent_machine, entry_point, occurred_at, causation_id, \
            correlation_id, source_component, schema_version FROM fsm_events WHERE correlation_id = ?1 \
            ORDER BY occurred_at, id LIMIT ?2";
        self.events("correlated", SQL, correlation_id.to_string(), correlated_limit(limit) as i64).await
    }

    async fn apply_retention(&self, retention: Retention, now: Millis) -> Result<u64> {
        let Some(keep) = retention.keep_finished_ms else { return Ok(0) };
        let cutoff = now.saturating_sub(keep);
        let selection = "(SELECT instance_id FROM fsm_instances WHERE status IN ('completed', 'error') \
                         AND updated_at < ?1 ORDER BY instance_id LIMIT ?2)";
        let mut total = 0;
        loop {
            let mut conn = self.writer.acquire().await.map_err(err("apply_retention"))?;
            let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(err("apply_retention"))?;
            let mut purged = 0;
            for table in ["fsm_events", "fsm_snapshots", "fsm_instances"] {
                let sql = format!("DELETE FROM {table} WHERE instance_id IN {selection}");
                let done = sqlx::query(AssertSqlSafe(sql))
                    .bind(cutoff)
                    .bind(RETENTION_CHUNK as i64)
                    .execute(&mut *tx)
                    .await
                    .map_err(err("apply_retention"))?;
                purged = done.rows_affected();
            }
            tx.commit().await.map_err(err("apply_retention"))?;
            total += purged;
            if purged < RETENTION_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    async fn ping(&self) -> Result<()> {
        let _: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM fsm_schema_version")
            .fetch_one(&self.readers)
            .await
            .map_err(err("ping"))?;
        Ok(())
    }
}

/// A bind value of a dynamically built query.
enum Bind {
    Text(String),
    Int(i64),
}
