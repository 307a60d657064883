//! A small pool of read-only connections; each read runs on tokio's blocking threads.
//!
//! At most `size` reads run at once (a semaphore); a reader waits at most `ACQUIRE_TIMEOUT` for a
//! connection. Connections are opened lazily and returned after each read; one lost to a
//! panicking read is simply reopened next time.

use super::{BACKEND, schema};
use crate::ACQUIRE_TIMEOUT;
use crate::common::unavailable;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use tokio::sync::Semaphore;
use xcomponent_core::store::Result;

/// Read-only connections to one database file.
#[derive(Debug)]
pub(super) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: Semaphore,
}

impl Readers {
    /// A pool of at most `size` connections to `path`.
    pub fn new(path: PathBuf, size: usize) -> Readers {
        Readers { path, idle: Mutex::new(Vec::with_capacity(size)), permits: Semaphore::new(size) }
    }

    /// Runs `read` on a pooled connection, off the async threads.
    pub async fn run<T, F>(&self, operation: &'static str, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let _permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| {
                unavailable(
                    BACKEND,
                    operation,
                    format_args!("no reader free after {ACQUIRE_TIMEOUT:?}"),
                )
            })?
            .map_err(|e| unavailable(BACKEND, operation, e))?;
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let path = self.path.clone();
        let (conn, result) = tokio::task::spawn_blocking(move || {
            let conn = match idle {
                Some(conn) => conn,
                None => match schema::open_reader(&path) {
                    Ok(conn) => conn,
                    Err(error) => return (None, Err(error)),
                },
            };
            let result = read(&conn);
            (Some(conn), result)
        })
        .await
        .map_err(|e| unavailable(BACKEND, operation, e))?;
        if let Some(conn) = conn {
            self.idle.lock().unwrap_or_else(PoisonError::into_inner).push(conn);
        }
        result
    }
}
