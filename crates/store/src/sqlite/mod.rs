//! The embedded store: one SQLite file in WAL mode, driven directly through rusqlite.
//!
//! One writer thread owns the read-write connection and group-commits every batch waiting for
//! it (`writer`); a second thread checkpoints the WAL in the background (`checkpoint`); reads run on a pool of read-only connections (`pool`, `read`), each in one
//! read transaction. Commits are encoded on the caller's task (`encode`) so the writer only binds
//! prepared statements. The schema is embedded (`migrations/sqlite`, version 6) and applied at
//! open (`schema`). Durability maps to `PRAGMA synchronous` (FULL / NORMAL / OFF).

mod chain;
mod checkpoint;
mod encode;
mod fold;
mod known_instances;
mod pool;
mod read;
mod schema;
mod writer;

use crate::common::unavailable;
use crate::{Durability, StoreOptions};
use async_trait::async_trait;
use encode::Encoded;
use pool::Readers;
use std::path::PathBuf;
use std::sync::Mutex;
use tokio::sync::{mpsc, oneshot};
use writer::Job;
use xcomponent_core::instance::{EventId, InstanceId, Millis};
use xcomponent_core::message::{DeadLetter, Envelope, InboxEntry, MessageId};
use xcomponent_core::store::{
    CommitBatch, Error, EventStore, InstanceQuery, InstanceRecord, Page, Result, Retention,
    StoredEvent,
};

const BACKEND: &str = "sqlite";

fn err(operation: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
    move |e| unavailable(BACKEND, operation, e)
}

/// Event store in one SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    jobs: Option<mpsc::Sender<Job>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    readers: Readers,
    path: PathBuf,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Job::Commit(batch, _) => write!(f, "Commit({} rows)", batch.len()),
            Job::Retention(cutoff, _) => write!(f, "Retention({cutoff})"),
            Job::PurgeInbox(before, _) => write!(f, "PurgeInbox({before})"),
        }
    }
}

impl SqliteStore {
    /// Opens (creating the file and its parent directories) and migrates `sqlite://PATH`.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<SqliteStore> {
        let path = url.strip_prefix("sqlite://").filter(|p| !p.is_empty()).ok_or_else(|| {
            Error::Config(format!("invalid SQLite store URL {url:?}: expected sqlite://PATH"))
        })?;
        if path.contains('?') {
            return Err(Error::Config(format!(
                "SQLite store URL {url:?}: parameters are not supported, use StoreOptions"
            )));
        }
        let path = PathBuf::from(path);
        if let Some(parent) =
            path.parent().filter(|p| !p.as_os_str().is_empty()).map(std::path::Path::to_path_buf)
        {
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&parent).map_err(|e| {
                    unavailable(
                        BACKEND,
                        "open",
                        format_args!("cannot create {}: {e}", parent.display()),
                    )
                })
            })
            .await
            .map_err(|e| unavailable(BACKEND, "open", e))??;
        }
        let durability: Durability = options.durability;
        let writer_path = path.clone();
        let conn = crate::with_retry(BACKEND, "open writer", crate::CONNECT_ATTEMPTS, || {
            let path = writer_path.clone();
            async move {
                tokio::task::spawn_blocking(move || schema::open_writer(&path, durability))
                    .await
                    .map_err(|e| unavailable(BACKEND, "open writer", e))?
            }
        })
        .await?;
        // Not retried: a schema newer than this build is a `Config` error, not a busy file.
        let conn = tokio::task::spawn_blocking(move || schema::migrate(&conn).map(|()| conn))
            .await
            .map_err(|e| unavailable(BACKEND, "migrate", e))??;
        let checkpoint_path = path.clone();
        let checkpointer = tokio::task::spawn_blocking(move || {
            checkpoint::Checkpointer::start(&checkpoint_path, durability)
        })
        .await
        .map_err(|e| unavailable(BACKEND, "open (checkpoints)", e))??;
        let (jobs, queue) = mpsc::channel(writer::WRITER_QUEUE);
        let thread = std::thread::Builder::new()
            .name("xc-sqlite-writer".to_owned())
            .spawn(move || writer::run(conn, queue, checkpointer))
            .map_err(|e| unavailable(BACKEND, "open (writer thread)", e))?;
        let readers = Readers::new(path.clone(), options.pool_size.max(1) as usize);
        Ok(SqliteStore { jobs: Some(jobs), writer: Mutex::new(Some(thread)), readers, path })
    }

    /// The database file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Bytes of the database's pages in use (page count less free pages, times the page size),
    /// as a reader sees them: committed pages still in the WAL count, free pages do not. What the
    /// stored data costs on disk, whether or not it has been checkpointed into the file yet.
    pub async fn bytes_in_use(&self) -> Result<u64> {
        self.readers
            .run("bytes_in_use", |conn| {
                let pragma = |name: &str| -> Result<u64> {
                    conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get::<_, i64>(0))
                        .map(|value| u64::try_from(value).unwrap_or(0))
                        .map_err(err("bytes_in_use"))
                };
                let pages = pragma("page_count")?.saturating_sub(pragma("freelist_count")?);
                Ok(pages * pragma("page_size")?)
            })
            .await
    }

    async fn send(&self, job: Job) -> Result<()> {
        let jobs = self.jobs.as_ref().ok_or_else(writer::stopped)?;
        jobs.send(job).await.map_err(|_| writer::stopped())
    }
}

impl Drop for SqliteStore {
    /// Closes the queue and waits for the writer to finish the commits already taken, so the
    /// file is closed when the store is gone.
    fn drop(&mut self) {
        self.jobs = None;
        let thread = self
            .writer
            .get_mut()
            .map(Option::take)
            .unwrap_or_else(|poisoned| poisoned.into_inner().take());
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!(backend = BACKEND, "the writer thread panicked");
        }
    }
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
        let encoded = Encoded::of(batch)?;
        let (reply, answer) = oneshot::channel();
        self.send(Job::Commit(Box::new(encoded), reply)).await?;
        answer.await.map_err(|_| writer::stopped())?
    }

    async fn load_active(
        &self,
        after: Option<InstanceId>,
        limit: usize,
    ) -> Result<Vec<InstanceRecord>> {
        self.readers.run("load_active", move |conn| read::load_active(conn, after, limit)).await
    }

    async fn instance(&self, id: InstanceId) -> Result<Option<InstanceRecord>> {
        self.readers.run("instance", move |conn| read::instance(conn, id)).await
    }

    async fn history(&self, id: InstanceId) -> Result<Vec<StoredEvent>> {
        self.readers.run("history", move |conn| read::history(conn, id)).await
    }

    async fn search(&self, query: &InstanceQuery) -> Result<Page<InstanceRecord>> {
        let query = query.clone();
        self.readers.run("search", move |conn| read::search(conn, &query)).await
    }

    async fn correlated(&self, correlation_id: EventId, limit: usize) -> Result<Vec<StoredEvent>> {
        self.readers
            .run("correlated", move |conn| read::correlated(conn, correlation_id, limit))
            .await
    }

    async fn apply_retention(&self, retention: Retention, now: Millis) -> Result<u64> {
        let Some(keep) = retention.keep_finished_ms else { return Ok(0) };
        let (reply, answer) = oneshot::channel();
        self.send(Job::Retention(now.saturating_sub(keep), reply)).await?;
        answer.await.map_err(|_| writer::stopped())?
    }

    async fn ping(&self) -> Result<()> {
        self.readers
            .run("ping", |conn| {
                conn.query_row(
                    "SELECT COALESCE(MAX(version), 0) FROM fsm_schema_version",
                    [],
                    |row| row.get::<_, i64>(0),
                )
                .map(drop)
                .map_err(err("ping"))
            })
            .await
    }

    async fn pending_messages(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<Envelope>> {
        self.readers
            .run("pending_messages", move |conn| read::pending_messages(conn, after, limit))
            .await
    }

    async fn inbox_entries(&self, messages: &[MessageId]) -> Result<Vec<InboxEntry>> {
        if messages.is_empty() {
            return Ok(Vec::new());
        }
        let messages = messages.to_vec();
        self.readers.run("inbox_entries", move |conn| read::inbox_entries(conn, &messages)).await
    }

    async fn purge_inbox(&self, before: Millis) -> Result<u64> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::PurgeInbox(before, reply)).await?;
        answer.await.map_err(|_| writer::stopped())?
    }

    async fn dead_letters(
        &self,
        after: Option<MessageId>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>> {
        self.readers.run("dead_letters", move |conn| read::dead_letters(conn, after, limit)).await
    }

    async fn dead_letter(&self, message: MessageId) -> Result<Option<DeadLetter>> {
        self.readers.run("dead_letter", move |conn| read::dead_letter(conn, message)).await
    }
}
