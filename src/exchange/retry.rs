//! How hard to try before giving up on a failure that may pass (network, throttling, 5xx).
//!
//! Every exchange retries the same way: bounded attempts, exponential backoff with jitter so a
//! fleet does not retry in step, a timeout per attempt so a hung upstream costs one attempt and
//! not the whole budget, and an overall deadline that bounds everything (attempts and the waits
//! between them), so an SDK waiting on `credential_process` gets an answer in bounded time.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use backon::BackoffBuilder;

/// Attempts, delays, the per-attempt timeout and the overall deadline.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Everything, attempts and the waits between them, ends within this much time.
    pub deadline: Duration,
    /// One attempt (connect, send, read the whole answer) may take at most this long.
    pub attempt_timeout: Duration,
}

/// The default overall deadline (`--deadline`).
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(45);
/// The default time one attempt may take (`--attempt-timeout`).
pub const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            deadline: DEFAULT_DEADLINE,
            attempt_timeout: DEFAULT_ATTEMPT_TIMEOUT,
        }
    }
}

/// A step that ran out of time: the attempt's own timeout, or what was left of the deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimedOut {
    /// How long it was given.
    pub after: Duration,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer within {:.1} s", self.after.as_secs_f64())
    }
}

/// "1 attempt", "4 attempts": for messages.
pub fn count_attempts(n: &u32) -> String {
    match n {
        1 => "1 attempt".to_string(),
        n => format!("{n} attempts"),
    }
}

/// One run of a policy: when it started, so every attempt and wait shares the deadline.
#[derive(Clone, Debug)]
pub struct Budget {
    started: Instant,
    deadline: Duration,
    attempt_timeout: Duration,
}

impl Budget {
    /// What is left of the deadline.
    pub fn left(&self) -> Duration {
        self.deadline.saturating_sub(self.started.elapsed())
    }

    /// Runs one attempt for at most the attempt timeout, or what is left of the deadline.
    pub async fn attempt<T>(&self, attempt: impl Future<Output = T>) -> Result<T, TimedOut> {
        self.bounded(self.attempt_timeout.min(self.left()), attempt)
            .await
    }

    /// Runs a step that has timeouts of its own (minting a token) for at most what is left of
    /// the deadline.
    pub async fn within_deadline<T>(&self, step: impl Future<Output = T>) -> Result<T, TimedOut> {
        self.bounded(self.left(), step).await
    }

    async fn bounded<T>(
        &self,
        limit: Duration,
        step: impl Future<Output = T>,
    ) -> Result<T, TimedOut> {
        tokio::time::timeout(limit, step)
            .await
            .map_err(|_| TimedOut { after: limit })
    }

    /// Whether waiting `delay` still leaves time for another attempt.
    pub fn allows_wait(&self, delay: Duration) -> bool {
        self.started.elapsed() + delay < self.deadline
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

    /// Starts the clock of one run.
    pub fn budget(&self) -> Budget {
        Budget {
            started: Instant::now(),
            deadline: self.deadline,
            attempt_timeout: self.attempt_timeout,
        }
    }

    /// The same policy with `spent` already taken off the deadline: the next step of a flow
    /// that shares one deadline (Google STS, then IAM Credentials).
    pub fn with_time_spent(&self, spent: Duration) -> Self {
        Self {
            deadline: self.deadline.saturating_sub(spent),
            ..self.clone()
        }
    }

    /// Runs `attempt` until it succeeds, fails with an error `is_transient` rejects, or the
    /// attempts or the deadline run out; an attempt that outlives its timeout (or the deadline)
    /// fails with `timed_out(..)`. Returns the last error and how many attempts were made.
    pub async fn run<T, E, F, Fut>(
        &self,
        mut attempt: F,
        is_transient: impl Fn(&E) -> bool,
        timed_out: impl Fn(TimedOut) -> E,
    ) -> Result<T, (E, u32)>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let budget = self.budget();
        let mut delays = self.delays();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let error = match budget.attempt(attempt()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => e,
                Err(t) => timed_out(t),
            };
            if !is_transient(&error) {
                return Err((error, attempts));
            }
            match delays.next() {
                Some(delay) if budget.allows_wait(delay) => {
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
            attempt_timeout: Duration::from_secs(5),
        }
    }

    fn timed_out(_: TimedOut) -> &'static str {
        "timed out"
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
                timed_out,
            )
            .await;
        assert_eq!(result.unwrap_err(), ("503", 3));
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test]
    async fn stops_at_once_on_a_permanent_error_and_returns_success() {
        let result: Result<(), _> = quick()
            .run(|| async { Err::<(), _>("denied") }, |_| false, timed_out)
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
                timed_out,
            )
            .await;
        assert_eq!(result.unwrap(), 2);
    }

    /// A hung upstream costs one attempt timeout per attempt, and the whole run ends by the
    /// deadline however many attempts were allowed.
    #[tokio::test(start_paused = true)]
    async fn hung_attempts_time_out_and_the_deadline_bounds_the_run() {
        let policy = RetryPolicy {
            max_attempts: 10,
            first_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(100),
            deadline: Duration::from_secs(5),
            attempt_timeout: Duration::from_secs(2),
        };
        let calls = Cell::new(0);
        let started = tokio::time::Instant::now();
        let result: Result<(), _> = policy
            .run(
                || {
                    calls.set(calls.get() + 1);
                    std::future::pending::<Result<(), &'static str>>()
                },
                |_| true,
                timed_out,
            )
            .await;
        let elapsed = started.elapsed();
        assert_eq!(result.unwrap_err().0, "timed out");
        // 2 s + wait + 2 s + wait + what is left (< 1 s): three attempts, all within 5 s.
        assert_eq!(calls.get(), 3);
        assert!(elapsed <= Duration::from_secs(5), "{elapsed:?}");
    }

    #[test]
    fn later_steps_share_what_is_left_of_the_deadline() {
        let policy = RetryPolicy::default().with_time_spent(Duration::from_secs(40));
        assert_eq!(policy.deadline, Duration::from_secs(5));
        let policy = policy.with_time_spent(Duration::from_secs(60));
        assert_eq!(policy.deadline, Duration::ZERO);
    }
}
