//! The upstream's shared back-off: when an upstream throttles, every exchange of the process to
//! it waits together, instead of each profile retrying on its own schedule.
//!
//! A daemon with 1,000 profiles has up to 16 exchanges in flight to one STS
//! (`refresh/in_flight.rs`) and a queue behind them. When STS answers `Throttling` (also
//! `ThrottlingException`, `RequestLimitExceeded`, HTTP 429) or Google STS or IAM Credentials
//! answer 429 `RESOURCE_EXHAUSTED`, the account is over its rate: each exchange retrying after its own
//! 200 ms, and the queue sending the next 16 at once, only keeps it there. So a throttled answer
//! sets one deadline for that upstream URL, and every attempt of the process to it (the retries
//! of the exchanges in flight and the first attempts of those queued) waits until it passes.
//!
//! Numbers: the first back-off is 1 s (STS's token buckets refill per second), doubling with each
//! new throttling episode up to 16 s — well inside the 20 minutes before expiry when refreshes
//! start (and the 30 s of a 60 s lab credential) — plus 0–25 % at random so a fleet of daemons
//! sharing an account does not come back in step. Throttled answers that arrive while the
//! deadline runs (the others that were in flight) do not grow it again. Any answer that is not
//! a throttle resets the growth. Entries exist only for upstreams that throttled (a handful of
//! URLs); one-shot commands pay one map lookup per attempt.
//!
//! The episodes are counted (`episodes`): `refresh/in_flight.rs` halves the upstream's cap of
//! concurrent exchanges on each and grows it back as turns end calm. Against an upstream that
//! throttles above 8 calls in flight, 200 exchanges then make 224 calls with 24 throttled in
//! 10.9 s, where a fixed cap of 16 made 392 calls with 192 throttled in 28 s (the paused-clock
//! scene of `in_flight`'s tests).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// The first back-off after a throttled answer.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest back-off, however many throttling episodes follow one another.
pub const MOST_BACKOFF: Duration = Duration::from_secs(16);
/// Up to this fraction of a back-off is added at random.
const JITTER: f64 = 0.25;

#[derive(Debug)]
struct Backoff {
    /// Attempts wait until then.
    until: Instant,
    /// The next episode's back-off.
    next: Duration,
    /// Throttling episodes so far: `refresh/in_flight.rs` halves the upstream's cap on each.
    episodes: u64,
}

fn backoffs() -> &'static Mutex<HashMap<String, Backoff>> {
    static BACKOFFS: OnceLock<Mutex<HashMap<String, Backoff>>> = OnceLock::new();
    BACKOFFS.get_or_init(Default::default)
}

fn with<T>(f: impl FnOnce(&mut HashMap<String, Backoff>) -> T) -> T {
    // Every critical section is one lookup or insert: a poisoned lock holds consistent data.
    f(&mut backoffs().lock().unwrap_or_else(|e| e.into_inner()))
}

/// How long an attempt to `upstream` must still wait (zero: go ahead).
pub fn wait_time(upstream: &str) -> Duration {
    with(|all| {
        all.get(upstream).map_or(Duration::ZERO, |b| {
            b.until.saturating_duration_since(Instant::now())
        })
    })
}

/// Waits until `upstream`'s back-off has passed (a throttle noted meanwhile extends the wait),
/// or `limit` has.
pub async fn wait(upstream: &str, limit: Duration) {
    let give_up = Instant::now() + limit;
    loop {
        let wait = wait_time(upstream);
        if wait.is_zero() || Instant::now() >= give_up {
            return;
        }
        tracing::debug!(
            upstream,
            ?wait,
            "the upstream throttled; waiting with the others"
        );
        tokio::time::sleep_until((Instant::now() + wait).min(give_up)).await;
    }
}

/// `upstream` answered with a throttle: every attempt to it waits out a back-off (a new one, if
/// none is running).
pub fn throttled(upstream: &str) {
    let now = Instant::now();
    with(|all| {
        let backoff = all.entry(upstream.to_string()).or_insert(Backoff {
            until: now,
            next: FIRST_BACKOFF,
            episodes: 0,
        });
        if backoff.until > now {
            return; // this episode's back-off is already running
        }
        let delay = backoff.next;
        let jitter = delay.mul_f64(rand::thread_rng().gen_range(0.0..JITTER));
        backoff.until = now + delay + jitter;
        backoff.next = (delay * 2).min(MOST_BACKOFF);
        backoff.episodes += 1;
        tracing::warn!(
            upstream,
            backoff_seconds = (delay + jitter).as_secs_f64(),
            "the upstream is throttling; every exchange to it waits"
        );
    });
}

/// How many throttling episodes `upstream` has started (zero for one that never throttled).
pub fn episodes(upstream: &str) -> u64 {
    with(|all| all.get(upstream).map_or(0, |b| b.episodes))
}

/// `upstream` answered without throttling: the next episode starts again from the first
/// back-off (a deadline still running is kept: this answer may predate the throttle).
pub fn answered(upstream: &str) {
    with(|all| {
        if let Some(backoff) = all.get_mut(upstream) {
            backoff.next = FIRST_BACKOFF;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// After a throttle, 1,000 waiting exchanges send nothing until the back-off (1 s, up to
    /// 1.25 s with jitter) has passed; then all go.
    #[tokio::test(start_paused = true)]
    async fn a_thousand_waiters_hold_off_until_the_backoff_passes() {
        let url = "http://sts.test/thousand";
        throttled(url);
        let sent = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let sent = sent.clone();
                tokio::spawn(async move {
                    wait(url, Duration::from_secs(45)).await;
                    sent.fetch_add(1, Ordering::SeqCst);
                    Instant::now()
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(999)).await;
        assert_eq!(
            sent.load(Ordering::SeqCst),
            0,
            "nothing before the back-off"
        );
        for task in tasks {
            let at = task.await.unwrap() - started;
            assert!(
                at >= FIRST_BACKOFF && at <= FIRST_BACKOFF.mul_f64(1.0 + JITTER),
                "{at:?}"
            );
        }
        assert_eq!(sent.load(Ordering::SeqCst), 1000);
    }

    /// One episode grows the back-off once, however many throttled answers it brings; the next
    /// episode doubles it, up to 16 s; an answer resets the growth.
    #[tokio::test(start_paused = true)]
    async fn backoff_grows_per_episode_and_an_answer_resets_it() {
        let url = "http://sts.test/grows";
        let episode = || async {
            for _ in 0..16 {
                throttled(url); // the 16 in flight, all throttled together
            }
            let wait = wait_time(url);
            tokio::time::sleep(wait).await;
            wait
        };
        let first = episode().await;
        assert!(
            first >= FIRST_BACKOFF && first < FIRST_BACKOFF * 2,
            "{first:?}"
        );
        let second = episode().await;
        assert!(
            second >= FIRST_BACKOFF * 2 && second < FIRST_BACKOFF * 3,
            "{second:?}"
        );
        for _ in 0..6 {
            episode().await;
        }
        let most = episode().await;
        assert!(
            most >= MOST_BACKOFF && most <= MOST_BACKOFF.mul_f64(1.0 + JITTER),
            "{most:?}"
        );
        answered(url);
        let again = episode().await;
        assert!(again < FIRST_BACKOFF * 2, "{again:?}");
    }

    /// A waiter gives up at its limit (an exchange's deadline); another upstream never waits.
    #[tokio::test(start_paused = true)]
    async fn waiting_is_bounded_and_per_upstream() {
        throttled("http://sts.test/bounded");
        let started = Instant::now();
        wait("http://sts.test/bounded", Duration::from_millis(300)).await;
        assert_eq!(started.elapsed(), Duration::from_millis(300));
        wait("http://sts.test/other", Duration::from_secs(45)).await;
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }
}
