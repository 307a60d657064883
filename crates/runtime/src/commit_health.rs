//! How the store's commits are going, per shard, kept in atomics so that a health check reads it
//! without asking a shard: a shard blocked in a commit answers nothing until the commit ends,
//! which is exactly when a health check is needed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use xcomponent_core::store::Error;

/// One shard's commits. Times are milliseconds since `CommitHealth::origin`, plus one (0: none).
#[derive(Debug, Default)]
struct ShardCommits {
    /// Start of the commit in progress.
    started: AtomicU64,
    /// Commits failed in a row (0 after a success).
    failures: AtomicU32,
    /// End of the last failed commit.
    failed_at: AtomicU64,
    /// Why the last commit failed.
    last_error: Mutex<Option<String>>,
}

/// The commit health of every shard.
#[derive(Debug)]
pub(crate) struct CommitHealth {
    origin: Instant,
    shards: Box<[ShardCommits]>,
}

/// What a health check learns about the store's commits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// How long the oldest commit in progress has been running (`None`: none is).
    pub oldest_commit: Option<Duration>,
    /// Commits failed in a row on the worst shard (0: the last commit of every shard succeeded).
    pub consecutive_failures: u32,
    /// Why the last failed commit failed, and how long ago it ended, while some shard's last
    /// commit failed.
    pub last_failure: Option<(String, Duration)>,
}

impl CommitHealth {
    pub fn new(shards: usize) -> CommitHealth {
        CommitHealth {
            origin: Instant::now(),
            shards: (0..shards).map(|_| ShardCommits::default()).collect(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX - 1) + 1
    }

    /// A commit of `shard` starts.
    pub fn begin(&self, shard: usize) {
        self.shards[shard].started.store(self.now(), Ordering::Release);
    }

    /// The commit of `shard` ended with `result`.
    pub fn end(&self, shard: usize, result: Result<(), &Error>) {
        let slot = &self.shards[shard];
        slot.started.store(0, Ordering::Release);
        match result {
            Ok(()) => {
                slot.failures.store(0, Ordering::Release);
            }
            // A content error is the culprit's, not the store's: it says nothing of its health.
            Err(Error::Rejected(_) | Error::Conflict { .. }) => {}
            Err(error) => {
                if let Ok(mut last) = slot.last_error.lock() {
                    *last = Some(error.to_string());
                }
                slot.failed_at.store(self.now(), Ordering::Release);
                slot.failures.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    /// The current picture.
    pub fn report(&self) -> StoreHealth {
        let now = self.now();
        let mut health = StoreHealth::default();
        for slot in &self.shards {
            let started = slot.started.load(Ordering::Acquire);
            if started != 0 {
                let running = Duration::from_millis(now.saturating_sub(started));
                health.oldest_commit =
                    Some(health.oldest_commit.map_or(running, |d| d.max(running)));
            }
            let failures = slot.failures.load(Ordering::Acquire);
            if failures == 0 {
                continue;
            }
            health.consecutive_failures = health.consecutive_failures.max(failures);
            let ago =
                Duration::from_millis(now.saturating_sub(slot.failed_at.load(Ordering::Acquire)));
            let error =
                slot.last_error.lock().ok().and_then(|last| last.clone()).unwrap_or_default();
            if health.last_failure.as_ref().is_none_or(|(_, known)| ago < *known) {
                health.last_failure = Some((error, ago));
            }
        }
        health
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
        health.begin(1);
        health.end(1, Ok(()));
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
