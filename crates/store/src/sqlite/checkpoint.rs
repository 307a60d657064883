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

/// What the writer tells the thread.
#[derive(Debug, Default)]
struct Signal {
    /// Commits happened since the last checkpoint.
    pending: bool,
    /// The store is closing: checkpoint what is pending and stop.
    stop: bool,
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

    /// A commit happened.
    pub fn committed(&self) {
        let (lock, wake) = &*self.signal;
        let mut signal = lock.lock().unwrap_or_else(PoisonError::into_inner);
        if !signal.pending {
            signal.pending = true;
            wake.notify_one();
        }
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
        if let Err(error) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(backend = BACKEND, %error, "background checkpoint failed (the writer checkpoints later)");
        }
        if stop {
            return;
        }
    }
}
