//! How the store's commits are going, kept in atomics so that a health check reads it
//! without asking a shard: a shard blocked in a commit answers nothing until the commit ends,
//! which is exactly when a health check is needed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use xcomponent_core::store::Error;

/// How the store's commits are going. Times are milliseconds since `origin`, plus one (0: none).
#[derive(Debug)]
pub(crate) struct CommitHealth {
    origin: Instant,
    /// Start of each shard's commit in progress.
    started: Box<[AtomicU64]>,
    /// Commits failed since the last success (of any shard: the store is one).
    failures: AtomicU32,
    /// End of the last failed commit.
    failed_at: AtomicU64,
    /// Why the last commit failed.
    last_error: Mutex<Option<String>>,
}

/// What a health check learns about the store's commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// How long the oldest commit in progress has been running (`None`: none is).
    pub oldest_commit: Option<Duration>,
    /// Commits failed since the last successful one (0: the last commit succeeded).
    pub consecutive_failures: u32,
    /// While the last commit failed: why, and how long ago.
    pub last_failure: Option<(String, Duration)>,
}

impl CommitHealth {
    pub fn new(shards: usize) -> CommitHealth {
        CommitHealth {
            origin: Instant::now(),
            started: (0..shards).map(|_| AtomicU64::new(0)).collect(),
            failures: AtomicU32::new(0),
            failed_at: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// A commit of `shard` starts.
    pub fn begin(&self, shard: usize) {
        self.started[shard].store(self.now(), Ordering::Release);
    }

    /// The commit of `shard` ended with `result`.
    pub fn end(&self, shard: usize, result: Result<(), &Error>) {
        self.started[shard].store(0, Ordering::Release);
        match result {
            Ok(()) => self.failures.store(0, Ordering::Release),
            // A refused content is the culprit's, a conflict another writer's: neither says
            // anything of the store's health.
            Err(Error::Rejected(_) | Error::Conflict { .. }) => {}
            Err(error) => {
                if let Ok(mut last) = self.last_error.lock() {
                    *last = Some(error.to_string());
                }
                self.failed_at.store(self.now(), Ordering::Release);
                self.failures.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// The current picture.
    pub fn report(&self) -> StoreHealth {
        let now = self.now();
        let oldest = self
            .started
            .iter()
            .map(|started| started.load(Ordering::Acquire))
            .filter(|&started| started != 0)
            .min();
        let failures = self.failures.load(Ordering::Acquire);
        let last_failure = (failures > 0).then(|| {
            let ago = now.saturating_sub(self.failed_at.load(Ordering::Acquire));
            let error = self.last_error.lock().ok().and_then(|last| last.clone());
            (error.unwrap_or_default(), Duration::from_millis(ago))
        });
        StoreHealth {
            oldest_commit: oldest.map(|started| Duration::from_millis(now.saturating_sub(started))),
            consecutive_failures: failures,
            last_failure,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_reported_until_the_next_success() {
        let health = CommitHealth::new(2);
        assert_eq!(health.report(), StoreHealth::default());
        health.begin(1);
        assert!(health.report().oldest_commit.is_some());
        health.end(1, Err(&Error::Unavailable("disk full".into())));
        let report = health.report();
        assert_eq!(report.oldest_commit, None);
        assert_eq!(report.consecutive_failures, 1);
        assert!(report.last_failure.is_some_and(|(error, _)| error.contains("disk full")));
        // A success of any shard clears it: the store is one.
        health.begin(0);
        health.end(0, Ok(()));
        assert_eq!(health.report(), StoreHealth::default());
    }

    #[test]
    fn a_refused_content_does_not_count_against_the_store() {
        let health = CommitHealth::new(1);
        health.begin(0);
        health.end(0, Err(&Error::Rejected("NUL".into())));
        assert_eq!(health.report(), StoreHealth::default());
    }
}
