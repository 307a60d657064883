//! Background checkpoints: a thread with its own connection copies committed WAL pages into the
//! database file, so the writer thread never pays for a checkpoint (page copies and the fsync of
//! the database file) on the commit path.
//!
//! The writer calls `Checkpointer::committed` after each commit; the thread waits
//! `CHECKPOINT_PAUSE` for more commits, then runs a PASSIVE checkpoint (it never blocks the
//! writer or readers). A checkpoint completed while no commit ran lets the next commit restart
//! the WAL from its beginning. Under a commit stream that never pauses the WAL may keep growing;
//! the writer's own `wal_autocheckpoint` (a larger threshold) then checkpoints in line, as SQLite
//! does by default, which bounds it. The connection uses the writer's `synchronous` level, so the
//! database file is synced before any WAL frame it copied can be overwritten.

use super::{BACKEND, schema};
use crate::Durability;
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;
use xcomponent_core::store::Result;

/// How long the thread waits after a commit before checkpointing, to copy the pages of several
/// commits at once (a page rewritten by each of them is copied once).
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(100);

/// WAL frames (pages) from which the writer catches up after a background checkpoint, so that
/// the WAL restarts: it stays about 16 MiB.
const CATCH_UP_FRAMES: i64 = 4_096;

/// What the writer tells the thread.
#[derive(Debug, Default)]
struct Signal {
    /// Commits happened since the last checkpoint.
    pending: bool,
    /// The store is closing: checkpoint what is pending and stop.
    stop: bool,
    /// The last background checkpoint left a WAL of at least `CATCH_UP_FRAMES` frames: the
    /// writer should catch up.
    catch_up: bool,
}

/// The checkpoint thread and its signal.
#[derive(Debug)]
pub(super) struct Checkpointer {
    signal: Arc<(Mutex<Signal>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Opens a connection to `path` and starts the thread.
    pub fn start(path: &Path, durability: Durability) -> Result<Checkpointer> {
        let conn = schema::open_writer(path, durability)?;
        let signal: Arc<(Mutex<Signal>, Condvar)> = Arc::default();
        let shared = Arc::clone(&signal);
        let thread = std::thread::Builder::new()
            .name("xc-sqlite-ckpt".to_owned())
            .spawn(move || run(&conn, &shared))
            .map_err(|e| crate::common::unavailable(BACKEND, "open (checkpoint thread)", e))?;
        Ok(Checkpointer { signal, thread: Some(thread) })
    }

    /// A commit happened; true when the writer should now `catch_up` (once per background
    /// checkpoint that left a large WAL).
    pub fn committed(&self) -> bool {
        let (lock, wake) = &*self.signal;
        let mut signal = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if !signal.pending {
            signal.pending = true;
            wake.notify_one();
        }
        std::mem::take(&mut signal.catch_up)
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        {
            let (lock, wake) = &*self.signal;
            lock.lock().unwrap_or_else(PoisonError::into_inner).stop = true;
            wake.notify_one();
        }
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(backend = BACKEND, "the checkpoint thread panicked");
        }
    }
}

fn run(conn: &Connection, signal: &(Mutex<Signal>, Condvar)) {
    let (lock, wake) = signal;
    loop {
        let stop = {
            let mut state = lock.lock().unwrap_or_else(PoisonError::into_inner);
            while !state.pending && !state.stop {
                state = wake.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            state.stop
        };
        if !stop {
            std::thread::sleep(CHECKPOINT_PAUSE);
        }
        lock.lock().unwrap_or_else(PoisonError::into_inner).pending = false;
        match passive(conn) {
            Ok(frames) => {
                lock.lock().unwrap_or_else(PoisonError::into_inner).catch_up =
                    frames >= CATCH_UP_FRAMES;
            }
            Err(error) => {
                tracing::warn!(backend = BACKEND, %error, "background checkpoint failed (the writer checkpoints later)");
            }
        }
        if stop {
            return;
        }
    }
}

/// Runs a PASSIVE checkpoint on `conn`; returns the frames in the WAL (0 when it is not in WAL
/// mode).
fn passive(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(1))
        .map(|frames| frames.max(0))
}

/// On the writer's connection, between two commits: copies the frames committed since the last
/// background checkpoint, so that the next commit restarts the WAL. A failure only leaves the
/// WAL to grow until the next attempt.
pub(super) fn catch_up(conn: &Connection) {
    if let Err(error) = passive(conn) {
        tracing::debug!(backend = BACKEND, %error, "writer checkpoint skipped");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The WAL header's first salt: SQLite changes it each time the WAL restarts.
    fn wal_salt(path: &Path) -> [u8; 4] {
        let header = std::fs::read(path.with_extension("db-wal")).expect("WAL file");
        let mut salt = [0; 4];
        salt.copy_from_slice(&header[16..20]);
        salt
    }

    fn insert(conn: &Connection) {
        conn.execute("INSERT INTO t (v) VALUES (randomblob(3000))", []).expect("insert");
    }

    #[test]
    fn catching_up_after_a_background_checkpoint_restarts_the_wal() {
        let dir = std::env::temp_dir().join(format!("xc-ckpt-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("wal.db");
        let writer = schema::open_writer(&path, Durability::None).expect("writer");
        writer.execute_batch("CREATE TABLE t (v BLOB)").expect("table");
        let background = schema::open_writer(&path, Durability::None).expect("checkpointer");
        let reader = schema::open_reader(&path).expect("reader");
        for _ in 0..20 {
            insert(&writer);
        }
        // A read holds its snapshot while the writer commits more, so the background checkpoint
        // cannot copy those frames: as when commits come during a background checkpoint.
        reader.execute_batch("BEGIN").expect("begin read");
        reader.query_row("SELECT count(*) FROM t", [], |_| Ok(())).expect("read");
        for _ in 0..5 {
            insert(&writer);
        }
        let frames = passive(&background).expect("background checkpoint");
        assert!(frames >= 25, "{frames} frames");
        reader.execute_batch("COMMIT").expect("end read");
        let salt = wal_salt(&path);
        insert(&writer);
        assert_eq!(wal_salt(&path), salt, "without catching up, the WAL goes on growing");
        catch_up(&writer);
        insert(&writer);
        assert_ne!(wal_salt(&path), salt, "after catching up, the next commit restarts the WAL");
        drop((writer, background, reader));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
