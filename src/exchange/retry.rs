//! How hard to try before giving up on a failure that may pass (network, throttling, 5xx).
//!
//! Every exchange retries the same way: bounded attempts, exponential backoff with jitter so a
//! fleet does not retry in step, and an overall deadline so an SDK waiting on
//! `credential_process` gets an answer in bounded time.

use std::future::Future;
use std::time::{Duration, Instant};

use backon::BackoffBuilder;

/// Attempts, delays and the overall deadline.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// No new attempt starts after this much time since the first.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            deadline: Duration::from_secs(45),
        }
    }
}

impl RetryPolicy {
    /// The delays before attempts 2, 3, ...: one fewer than the attempts.
    pub fn delays(&self) -> impl Iterator<Item = Duration> {
        backon::ExponentialBuilder::default()
            .with_min_delay(self.first_delay)
            .with_max_delay(self.max_delay)
            .with_jitter()
            .with_max_times(self.max_attempts.saturating_sub(1) as usize)
            .build()
    }

    /// Runs `attempt` until it succeeds, fails with an error `is_transient` rejects, or the
    /// attempts or the deadline run out. Returns the last error and how many attempts were made.
    pub async fn run<T, E, F, Fut>(
        &self,
        mut attempt: F,
        is_transient: impl Fn(&E) -> bool,
    ) -> Result<T, (E, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let started = Instant::now();
        let mut delays = self.delays();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            if !is_transient(&error) {
                return Err((error, attempts));
            }
            match delays.next() {
                Some(delay) if started.elapsed() + delay <= self.deadline => {
                    tracing::warn!(attempt = attempts, ?delay, "transient failure; retrying");
                    tokio::time::sleep(delay).await;
                }
                _ => return Err((error, attempts)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn quick() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 3,
            first_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(2),
            deadline: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn retries_transient_errors_up_to_the_attempt_limit() {
        let calls = Cell::new(0);
        let result: Result<(), _> = quick()
            .run(
                || {
                    calls.set(calls.get() + 1);
                    async { Err::<(), _>("503") }
                },
                |_| true,
            )
            .await;
        assert_eq!(result.unwrap_err(), ("503", 3));
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test]
    async fn stops_at_once_on_a_permanent_error_and_returns_success() {
        let result: Result<(), _> = quick()
            .run(|| async { Err::<(), _>("denied") }, |_| false)
            .await;
        assert_eq!(result.unwrap_err(), ("denied", 1));
        let calls = Cell::new(0);
        let result = quick()
            .run(
                || {
                    calls.set(calls.get() + 1);
                    let n = calls.get();
                    async move {
                        if n < 2 {
                            Err("blip")
                        } else {
                            Ok(n)
                        }
                    }
                },
                |_| true,
            )
            .await;
        assert_eq!(result.unwrap(), 2);
    }
}
