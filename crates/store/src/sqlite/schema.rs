//! Opening SQLite connections (WAL, durability, caches) and applying the embedded migrations.
//!
//! The writer connection creates the file and migrates it; readers open it read-only. Every
//! connection maps the file into memory. `fsm_schema_version` records each applied version; a
//! database newer than this build is refused.

use super::{BACKEND, err};
use crate::Durability;
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use std::path::Path;
use std::time::Duration;
use xcomponent_core::store::{Error, Result};

/// Embedded schema migrations, applied in order at open.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../migrations/sqlite/0001_init.sql")),
    (2, include_str!("../../migrations/sqlite/0002_compact_keys.sql")),
    (3, include_str!("../../migrations/sqlite/0003_messages.sql")),
    (4, include_str!("../../migrations/sqlite/0004_event_changes.sql")),
    (5, include_str!("../../migrations/sqlite/0005_status_index.sql")),
    (6, include_str!("../../migrations/sqlite/0006_event_chains.sql")),
];

/// How long a connection waits on a lock held by another process before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Page cache of the writer, in KiB. Pages already in the database file are read through the
/// memory map (`MMAP_BYTES`: the kernel's page cache, shared and reclaimable); this cache holds
/// the pages a commit changes and those read back from the WAL before a checkpoint moves them
/// into the file. A cache sized for every live instance's pages (256 MiB) cost about 600 bytes
/// of anonymous memory per live instance, and `bench store` measured the same commits per second
/// without it (1,000 and 200,000 active instances).
const WRITER_CACHE_KIB: i64 = 16_384;

/// Page cache of each reader, in KiB (reads mostly go through the memory map).
const READER_CACHE_KIB: i64 = 65_536;

/// Bytes of the file each connection maps into memory (pages are read without a copy); SQLite's
/// default compile-time cap is just under 2 GiB.
const MMAP_BYTES: i64 = 1 << 31;

/// WAL pages after which the writer checkpoints in line (SQLite's default is 1,000). Only a
/// backstop: the checkpoint thread normally keeps the WAL far smaller.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 65_536;

/// Prepared statements kept per connection.
const STATEMENT_CACHE: usize = 64;

/// Opens the writer connection (creating the file); `migrate` then brings the schema up to date.
pub(super) fn open_writer(path: &Path, durability: Durability) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(err("open writer"))?;
    let synchronous = match durability {
        Durability::EachCommit => "FULL",
        Durability::Relaxed => "NORMAL",
        Durability::None => "OFF",
    };
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err("open writer"))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous}; PRAGMA cache_size = -{WRITER_CACHE_KIB}; \
         PRAGMA mmap_size = {MMAP_BYTES}; PRAGMA temp_store = MEMORY; PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};"
    ))
    .map_err(err("open writer (pragmas)"))?;
    Ok(conn)
}

/// Opens one read-only connection.
pub(super) fn open_reader(path: &Path) -> Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(err("open reader"))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(err("open reader"))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.execute_batch(&format!(
        "PRAGMA cache_size = -{READER_CACHE_KIB}; PRAGMA temp_store = MEMORY; PRAGMA mmap_size = {MMAP_BYTES};"
    ))
    .map_err(err("open reader (pragmas)"))?;
    Ok(conn)
}

/// Applies the embedded migrations not yet recorded in `fsm_schema_version`, in one transaction.
pub(super) fn migrate(conn: &Connection) -> Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS fsm_schema_version (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .map_err(err("migrate"))?;
    // IMMEDIATE: the write lock is taken before the version is read, so two processes opening
    // the same file cannot both migrate it.
    let tx =
        Transaction::new_unchecked(conn, TransactionBehavior::Immediate).map_err(err("migrate"))?;
    let current: i64 = tx
        .query_row("SELECT COALESCE(MAX(version), 0) FROM fsm_schema_version", [], |row| row.get(0))
        .map_err(err("migrate"))?;
    let latest = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > latest {
        return Err(Error::Config(format!(
            "SQLite schema version {current} is newer than this build supports ({latest})"
        )));
    }
    for (version, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        tx.execute_batch(sql).map_err(|e| {
            crate::common::unavailable(BACKEND, &format!("migrate to version {version}"), e)
        })?;
        tx.execute(
            "INSERT INTO fsm_schema_version (version, applied_at) VALUES (?1, ?2)",
            (version, crate::common::now_millis()),
        )
        .map_err(err("migrate"))?;
        tracing::info!(backend = BACKEND, version, "applied store migration");
    }
    tx.commit().map_err(err("migrate"))
}
