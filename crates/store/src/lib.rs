//! xcomponent-store: the event stores of xcomponent-ai behind one `open(url, options)`.
//!
//! | URL | backend | cargo feature |
//! | --- | --- | --- |
//! | `memory` | in-process maps, the reference implementation | always |
//! | `sqlite://PATH` | embedded SQLite file (created with its parent dirs) | `sqlite` (default) |
//! | `postgres://…`, `postgresql://…` | PostgreSQL | `postgres` |
//! | `redis://…` | Redis (single node) | `redis` |
//!
//! Every backend implements [`EventStore`] and passes the same conformance suite
//! (`tests/conformance`). Table and key layouts are in `docs/stores.md`.
//!
//! The runtime only sees an `Arc<dyn EventStore>`, so the backend is chosen by the URL at start:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> xcomponent_store::Result<()> {
//! use xcomponent_store::{Durability, Error, StoreOptions, open};
//!
//! let memory = open("memory", &StoreOptions::default()).await?;
//! assert_eq!(memory.backend(), "memory");
//!
//! // Throw-away data: no need to flush each commit.
//! let options = StoreOptions { durability: Durability::None, ..StoreOptions::default() };
//! let dir = std::env::temp_dir().join(format!("xc-doc-{}", std::process::id()));
//! # #[cfg(feature = "sqlite")] {
//! let sqlite = open(&format!("sqlite://{}/events.db", dir.display()), &options).await?;
//! sqlite.ping().await?;
//! # }
//!
//! // An unknown scheme is a configuration error, reported before anything is opened.
//! assert!(matches!(open("mysql://db", &options).await, Err(Error::Config(_))));
//! # let _ = std::fs::remove_dir_all(dir);
//! # Ok(()) }
//! ```

mod common;
mod lease_book;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "redis")]
mod redis;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;

use std::sync::Arc;
use std::time::Duration;
pub use xcomponent_core::store::{Error, EventStore, Result};

pub use common::{MAX_CORRELATED, PURGE_CHUNK, RETENTION_CHUNK};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::PostgresStore;
#[cfg(feature = "redis")]
pub use redis::RedisStore;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteStore;

/// How many times `open` tries to reach a server backend before giving up, by default
/// (`StoreOptions::connect_attempts`).
pub const CONNECT_ATTEMPTS: u32 = 5;

/// How long one attempt to reach a server backend (PostgreSQL, Redis) may take: a refused
/// connection fails at once, a host that does not answer fails after this.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Pause between two connection attempts (doubled after each failure).
pub const CONNECT_BACKOFF: Duration = Duration::from_millis(200);

/// How long a query waits for a free pooled connection before failing as `Unavailable`.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

/// When a commit counts as done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Durability {
    /// Each commit is flushed to disk before it returns (SQLite `synchronous=FULL`,
    /// PostgreSQL `synchronous_commit=on`; Redis depends on the server's `appendfsync`).
    #[default]
    EachCommit,
    /// Commits survive a process crash but the last ones may be lost on power failure
    /// (SQLite `synchronous=NORMAL`, PostgreSQL `synchronous_commit=off`).
    Relaxed,
    /// No flush at all (SQLite `synchronous=OFF`, PostgreSQL `synchronous_commit=off`): tests,
    /// benchmarks and throw-away runs.
    None,
}

/// Options of `open`; each backend reads the ones that concern it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// When a commit counts as done.
    pub durability: Durability,
    /// Prefix of every Redis key (`<prefix>:ev:<id>`, …). Default `fsm`.
    pub key_prefix: String,
    /// PostgreSQL schema holding the tables (created if missing). Default `public`.
    pub schema: String,
    /// Connections of the read pool (SQLite, PostgreSQL). Default 4.
    pub pool_size: u32,
    /// Attempts to reach a server backend (PostgreSQL, Redis) before `open` fails as
    /// `Error::Unavailable`, each bounded by `CONNECT_TIMEOUT`. Default `CONNECT_ATTEMPTS`; 1 for
    /// a caller that waits for the server itself.
    pub connect_attempts: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            durability: Durability::EachCommit,
            key_prefix: "fsm".to_owned(),
            schema: "public".to_owned(),
            pool_size: 4,
            connect_attempts: CONNECT_ATTEMPTS,
        }
    }
}

/// Opens (and migrates) the store named by `url`.
///
/// Errors: `Error::Config` for an unknown scheme, a backend not compiled in or a bad option;
/// `Error::Unavailable` when the backend cannot be reached in `StoreOptions::connect_attempts`
/// tries.
pub async fn open(url: &str, options: &StoreOptions) -> Result<Arc<dyn EventStore>> {
    match Kind::of(url) {
        Some(Kind::Memory) => Ok(Arc::new(MemoryStore::new())),
        Some(Kind::Sqlite) => open_sqlite(url, options).await,
        Some(Kind::Postgres) => open_postgres(url, options).await,
        Some(Kind::Redis) => open_redis(url, options).await,
        None => Err(Error::Config(format!(
            "unsupported store URL {url:?}: expected memory, sqlite://PATH, postgres://… or redis://…"
        ))),
    }
}

/// The backends a store URL can name, told by its scheme (what comes before the first `:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Memory,
    Sqlite,
    Postgres,
    Redis,
}

impl Kind {
    fn of(url: &str) -> Option<Kind> {
        match url.split_once(':').map_or(url, |(scheme, _)| scheme) {
            "memory" => Some(Kind::Memory),
            "sqlite" => Some(Kind::Sqlite),
            "postgres" | "postgresql" => Some(Kind::Postgres),
            "redis" => Some(Kind::Redis),
            _ => None,
        }
    }
}

/// Whether the store named by `url` is a server reached over the network (PostgreSQL, Redis),
/// which may come up later, rather than embedded in the process (SQLite, memory), whose
/// failures to open (a path, a permission, a disk) do not mend by waiting.
pub fn is_server(url: &str) -> bool {
    matches!(Kind::of(url), Some(Kind::Postgres | Kind::Redis))
}

/// Error for a backend whose cargo feature is off.
#[allow(dead_code)]
fn not_compiled(url: &str, feature: &str) -> Error {
    Error::Config(format!(
        "store URL {url:?} needs the {feature} backend, which this build does not include \
         (enable the `{feature}` feature of xcomponent-store)"
    ))
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str, options: &StoreOptions) -> Result<Arc<dyn EventStore>> {
    Ok(Arc::new(SqliteStore::open(url, options).await?))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(url: &str, _: &StoreOptions) -> Result<Arc<dyn EventStore>> {
    Err(not_compiled(url, "sqlite"))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str, options: &StoreOptions) -> Result<Arc<dyn EventStore>> {
    Ok(Arc::new(PostgresStore::open(url, options).await?))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(url: &str, _: &StoreOptions) -> Result<Arc<dyn EventStore>> {
    Err(not_compiled(url, "postgres"))
}

#[cfg(feature = "redis")]
async fn open_redis(url: &str, options: &StoreOptions) -> Result<Arc<dyn EventStore>> {
    Ok(Arc::new(RedisStore::open(url, options).await?))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(url: &str, _: &StoreOptions) -> Result<Arc<dyn EventStore>> {
    Err(not_compiled(url, "redis"))
}

/// `connecting`, failed as text when it errs or takes longer than `CONNECT_TIMEOUT`.
#[cfg(any(feature = "postgres", feature = "redis"))]
pub(crate) async fn within_connect_timeout<T, E: std::fmt::Display>(
    connecting: impl Future<Output = std::result::Result<T, E>>,
) -> std::result::Result<T, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(connected) => connected.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer within {} s", CONNECT_TIMEOUT.as_secs())),
    }
}

/// Runs `attempt` up to `attempts` times (at least once) with a doubling pause; returns the last
/// error.
#[cfg(any(feature = "sqlite", feature = "postgres", feature = "redis"))]
pub(crate) async fn with_retry<
    T,
    E: std::fmt::Display,
    F: Future<Output = std::result::Result<T, E>>,
>(
    backend: &str,
    what: &str,
    attempts: u32,
    mut attempt: impl FnMut() -> F,
) -> Result<T> {
    let mut pause = CONNECT_BACKOFF;
    let mut tries = 0;
    loop {
        tries += 1;
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(error) if tries >= attempts => {
                return Err(common::unavailable(
                    backend,
                    what,
                    format_args!("{error} (after {tries} attempts)"),
                ));
            }
            Err(error) => {
                tracing::warn!(backend, %error, attempt = tries, "store connection failed, retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_server;

    #[test]
    fn only_postgres_and_redis_urls_name_a_server() {
        for url in ["postgres://h/db", "postgresql://h/db?schema=s", "redis://h:6379"] {
            assert!(is_server(url), "{url}");
        }
        for url in ["sqlite://./data/x.db", "memory", "mysql://h", ""] {
            assert!(!is_server(url), "{url}");
        }
    }
}
