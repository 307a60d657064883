//! Waiting at start for a server that is not up yet. A runtime, a dashboard or `serve` started
//! beside its broker or database (one compose file, a machine that reboots) tries the
//! connection again with a growing pause instead of exiting at the first refusal, for up to
//! `--connect-wait` seconds. Only failures a later attempt may mend are retried (the backend
//! reports the server unreachable or unavailable, or it did not answer in time); what a backend
//! reports as configuration (a URL that does not parse, a RabbitMQ login refused) fails at once.

use clap::Args;
use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// How long a command waits at start for its broker and its network store, by default.
pub const DEFAULT_CONNECT_WAIT_SECS: u64 = 60;

/// The pause after the first failed attempt; each later pause doubles, up to `PAUSE_MAX`.
const PAUSE_START: Duration = Duration::from_millis(250);

/// The longest pause between two attempts.
const PAUSE_MAX: Duration = Duration::from_secs(5);

/// `--connect-wait`, shared by `serve`, `runtime` and `dashboard`.
#[derive(Debug, Clone, Copy, Args)]
pub struct ConnectArgs {
    /// How long to keep trying to reach the broker and a network store (PostgreSQL, Redis) at
    /// start, in seconds, before giving up (0: one attempt). A wrong URL fails at once.
    #[arg(long, env = "XCOMPONENT_CONNECT_WAIT", default_value_t = DEFAULT_CONNECT_WAIT_SECS, value_name = "SECONDS")]
    pub connect_wait: u64,
}

impl ConnectArgs {
    /// The wait as a duration.
    pub fn wait(self) -> Duration {
        Duration::from_secs(self.connect_wait)
    }
}

/// Runs `attempt` until it succeeds, fails with an error `retryable` refuses, or `wait` has
/// passed since the first attempt (the last error is returned then). Each failure that will be
/// retried is logged with the pause before the next attempt.
pub async fn retry<T, E, F>(
    what: &str,
    wait: Duration,
    retryable: impl Fn(&E) -> bool,
    mut attempt: impl FnMut() -> F,
) -> Result<T, E>
where
    E: std::fmt::Display,
    F: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + wait;
    let mut pause = PAUSE_START;
    let mut attempts: u32 = 1;
    loop {
        match attempt().await {
            Ok(value) => {
                if attempts > 1 {
                    tracing::info!(what, attempts, "reached");
                }
                return Ok(value);
            }
            Err(error) => {
                let now = Instant::now();
                if !retryable(&error) || now >= deadline {
                    return Err(error);
                }
                let next = pause.min(deadline - now);
                tracing::warn!(
                    what,
                    attempts,
                    %error,
                    retry_in_ms = next.as_millis() as u64,
                    left_s = (deadline - now).as_secs(),
                    "not reachable yet; trying again (--connect-wait)"
                );
                tokio::time::sleep(next).await;
                pause = pause.saturating_mul(2).min(PAUSE_MAX);
                attempts = attempts.saturating_add(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Debug, PartialEq)]
    enum Failure {
        Down,
        WrongUrl,
    }

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{self:?}")
        }
    }

    fn down(failure: &Failure) -> bool {
        *failure == Failure::Down
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_that_comes_up_is_reached_after_growing_pauses() {
        let started = Instant::now();
        let tries = Cell::new(0);
        let result = retry("broker", Duration::from_secs(60), down, || {
            tries.set(tries.get() + 1);
            let n = tries.get();
            async move { if n < 5 { Err(Failure::Down) } else { Ok(n) } }
        })
        .await;
        assert_eq!(result, Ok(5));
        // Pauses of 250, 500, 1000 and 2000 ms before the fifth attempt.
        assert_eq!(started.elapsed(), Duration::from_millis(3_750));
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_stop_growing_and_the_last_error_is_returned_at_the_deadline() {
        let started = Instant::now();
        let tries = Cell::new(0u32);
        let result: Result<(), Failure> = retry("store", Duration::from_secs(20), down, || {
            tries.set(tries.get() + 1);
            async { Err(Failure::Down) }
        })
        .await;
        assert_eq!(result, Err(Failure::Down));
        assert_eq!(started.elapsed(), Duration::from_secs(20), "gave up at the deadline");
        // 0.25 + 0.5 + 1 + 2 + 4 = 7.75 s, then pauses of 5 s: 12.75, 17.75, and the last one cut
        // to the deadline (20 s): nine attempts.
        assert_eq!(tries.get(), 9);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wrong_url_and_a_zero_wait_make_one_attempt() {
        let tries = Cell::new(0);
        let result: Result<(), Failure> = retry("broker", Duration::from_secs(60), down, || {
            tries.set(tries.get() + 1);
            async { Err(Failure::WrongUrl) }
        })
        .await;
        assert_eq!((result, tries.get()), (Err(Failure::WrongUrl), 1));
        tries.set(0);
        let result: Result<(), Failure> = retry("broker", Duration::ZERO, down, || {
            tries.set(tries.get() + 1);
            async { Err(Failure::Down) }
        })
        .await;
        assert_eq!((result, tries.get()), (Err(Failure::Down), 1));
    }
}
