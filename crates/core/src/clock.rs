//! Time is injected: the engine takes `now` as an argument and the runtime reads it from a `Clock`,
//! so timer tests run on a `ManualClock` exactly and instantly.

use crate::instance::Millis;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A source of the current time in milliseconds since the Unix epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Millis;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_millis() as Millis)
            .unwrap_or(0)
    }
}

/// A clock that only moves when told to (tests, simulation).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Millis) -> Self {
        ManualClock { now: AtomicI64::new(start) }
    }

    /// Moves the clock forward by `delta_ms` and returns the new time.
    pub fn advance(&self, delta_ms: Millis) -> Millis {
        self.now.fetch_add(delta_ms, Ordering::SeqCst) + delta_ms
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: Millis) {
        self.now.store(at, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }
}
