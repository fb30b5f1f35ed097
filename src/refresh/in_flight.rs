//! At most [`PER_UPSTREAM`] exchanges in flight to one upstream, from every profile of the
//! process together.
//!
//! A node agent starts hundreds of profiles at once: with 1,000 ECS-style profiles, 450–575
//! `AssumeRoleWithWebIdentity` calls were in flight together at start-up, the STS emulator
//! answered 500s, and every profile retried — a thundering herd of keyless's own making. The
//! engine's upstreams (what `serve` and the servers keep fresh) take a permit for their
//! upstream's URL before each exchange, so the herd becomes a queue that drains at the
//! upstream's pace.
//!
//! Why 16: an exchange is one or two round trips of 20–100 ms; 16 in flight is ~160–800
//! exchanges a second, far below STS's per-account quota (hundreds per second) and Google STS's,
//! and 1,000 profiles against a 50 ms upstream are all served within about 4 s (`bench/run
//! --only scale`: `/healthz` 200 after 3.8 s, never more than 16 calls in flight). One-shot
//! commands (one exchange per process) take no permit.
//!
//! The cap is half of the upstream's gate; the other half is the shared back-off of
//! `exchange/throttle.rs`: when the upstream throttles, every attempt to it, from the exchanges
//! holding a permit and from those queued behind them, waits for one deadline (1 s, doubling to
//! 16 s), and then at most 16 go again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Exchanges in flight to one upstream, at most.
pub const PER_UPSTREAM: usize = 16;

/// One semaphore per upstream URL, for the life of the process (a handful of URLs).
fn limits() -> &'static Mutex<HashMap<String, Arc<Semaphore>>> {
    static LIMITS: OnceLock<Mutex<HashMap<String, Arc<Semaphore>>>> = OnceLock::new();
    LIMITS.get_or_init(Default::default)
}

/// Waits for a turn at `upstream` (the exchange's URL); the turn ends when the permit drops.
pub async fn turn(upstream: &str) -> OwnedSemaphorePermit {
    let semaphore = limits()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(upstream.to_string())
        .or_insert_with(|| Arc::new(Semaphore::new(PER_UPSTREAM)))
        .clone();
    semaphore
        .acquire_owned()
        .await
        .expect("the semaphores are never closed")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// 200 exchanges to one upstream never have more than 16 in flight, and all complete; another
    /// upstream is not held up by the first one's queue.
    #[tokio::test(start_paused = true)]
    async fn at_most_sixteen_in_flight_per_upstream() {
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let (now, most) = (now.clone(), most.clone());
            tasks.push(tokio::spawn(async move {
                let _turn = turn("http://sts.test/one").await;
                let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(in_flight, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(50)).await;
                now.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        let started = tokio::time::Instant::now();
        let other = tokio::spawn(async { drop(turn("http://sts.test/other").await) });
        other.await.unwrap();
        assert_eq!(
            started.elapsed(),
            Duration::ZERO,
            "another upstream waits for nothing"
        );
        for task in tasks {
            task.await.unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), PER_UPSTREAM);
        // 200 / 16 rounds of 50 ms: the queue drains at the upstream's pace.
        assert_eq!(started.elapsed(), Duration::from_millis(50 * 13));
    }

    /// The gate as a whole: after a throttle, 1,000 queued exchanges send nothing until the
    /// shared back-off has passed, and then still at most 16 at a time.
    #[tokio::test(start_paused = true)]
    async fn after_a_throttle_the_queue_waits_and_the_cap_still_holds() {
        use crate::exchange::throttle;
        let url = "http://sts.test/throttled";
        throttle::throttled(url);
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let started = tokio::time::Instant::now();
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (now, most) = (now.clone(), most.clone());
                tokio::spawn(async move {
                    let _turn = turn(url).await;
                    throttle::wait(url, Duration::from_secs(45)).await;
                    let sent_at = started.elapsed();
                    let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(in_flight, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    now.fetch_sub(1, Ordering::SeqCst);
                    throttle::answered(url);
                    sent_at
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap() >= throttle::FIRST_BACKOFF);
        }
        assert_eq!(most.load(Ordering::SeqCst), PER_UPSTREAM);
    }
}
