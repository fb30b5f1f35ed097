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
//! 16 s), and then fewer go again: each throttling episode halves the upstream's cap (16 → 8
//! → 4 → 2 → 1), and every cap's worth of turns that end without a new episode adds one back, up
//! to 16 (additive increase, multiplicative decrease, as TCP does for a congested link). An
//! upstream that throttles by concurrency (`keyless lab --throttle-above 8`) is then kept busy
//! near its limit instead of idle for most of each back-off; one that throttles by rate (real
//! STS) sees fewer calls per second after each episode.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::exchange::throttle;

/// Exchanges in flight to one upstream, at most.
pub const PER_UPSTREAM: usize = 16;

/// One upstream's cap: the semaphore's permits plus those taken back when the cap shrank.
#[derive(Debug)]
struct Gate {
    semaphore: Arc<Semaphore>,
    /// The cap now, 1..=[`PER_UPSTREAM`].
    cap: usize,
    /// Permits to forget as turns end: the cap shrank while they were held.
    debt: usize,
    /// The throttling episodes already answered by halving the cap.
    episodes_seen: u64,
    /// Turns ended without a new episode since the cap last changed.
    calm_turns: usize,
}

impl Gate {
    fn new() -> Self {
        Self {
            semaphore: Arc::new(Semaphore::new(PER_UPSTREAM)),
            cap: PER_UPSTREAM,
            debt: 0,
            episodes_seen: 0,
            calm_turns: 0,
        }
    }

    /// Halves the cap once per throttling episode not yet seen.
    fn observe(&mut self, episodes: u64) {
        while self.episodes_seen < episodes {
            self.episodes_seen += 1;
            let halved = (self.cap / 2).max(1);
            self.debt += self.cap - halved;
            self.cap = halved;
            self.calm_turns = 0;
        }
        let forgotten = self.semaphore.forget_permits(self.debt);
        self.debt -= forgotten;
    }

    /// A turn ended; `calm` when no throttling episode began during it.
    fn turn_ended(&mut self, permit: OwnedSemaphorePermit, calm: bool) {
        if self.debt > 0 {
            self.debt -= 1;
            permit.forget();
        } else {
            drop(permit);
        }
        if calm && self.cap < PER_UPSTREAM {
            self.calm_turns += 1;
            if self.calm_turns >= self.cap {
                self.calm_turns = 0;
                self.cap += 1;
                if self.debt > 0 {
                    self.debt -= 1;
                } else {
                    self.semaphore.add_permits(1);
                }
            }
        }
    }
}

/// One gate per upstream URL, for the life of the process (a handful of URLs).
fn gates() -> &'static Mutex<HashMap<String, Gate>> {
    static GATES: OnceLock<Mutex<HashMap<String, Gate>>> = OnceLock::new();
    GATES.get_or_init(Default::default)
}

fn with_gate<T>(upstream: &str, f: impl FnOnce(&mut Gate) -> T) -> T {
    // Every critical section is a few integer updates: a poisoned lock holds consistent data.
    let mut gates = gates().lock().unwrap_or_else(|e| e.into_inner());
    let gate = match gates.get_mut(upstream) {
        Some(gate) => gate,
        None => gates.entry(upstream.to_string()).or_insert_with(Gate::new),
    };
    f(gate)
}

/// A turn at an upstream; it ends when dropped.
#[derive(Debug)]
pub struct Turn {
    upstream: String,
    /// The upstream's throttling episodes when the turn began.
    episodes: u64,
    permit: Option<OwnedSemaphorePermit>,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let Some(permit) = self.permit.take() else {
            return;
        };
        let episodes = throttle::episodes(&self.upstream);
        with_gate(&self.upstream, |gate| {
            gate.observe(episodes);
            gate.turn_ended(permit, episodes == self.episodes);
        });
    }
}

/// Waits for a turn at `upstream` (the exchange's URL); the turn ends when the [`Turn`] drops.
pub async fn turn(upstream: &str) -> Turn {
    let episodes = throttle::episodes(upstream);
    let semaphore = with_gate(upstream, |gate| {
        gate.observe(episodes);
        gate.semaphore.clone()
    });
    let permit = semaphore
        .acquire_owned()
        .await
        .expect("the semaphores are never closed");
    Turn {
        upstream: upstream.to_string(),
        episodes: throttle::episodes(upstream),
        permit: Some(permit),
    }
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

    /// An upstream that throttles above 8 calls in flight (as `keyless lab --throttle-above 8`):
    /// the first episode halves the cap, the turns that end calm grow it back by one per cap's
    /// worth, and 200 exchanges (each retrying on its turn, as the STS exchange does) finish with
    /// few throttled calls and the cap back at 16 once the queue is calm.
    #[tokio::test(start_paused = true)]
    async fn the_cap_halves_per_throttling_episode_and_grows_back() {
        use crate::exchange::throttle;
        let url = "http://sts.test/aimd";
        let now = Arc::new(AtomicUsize::new(0));
        let calls = Arc::new(AtomicUsize::new(0));
        let throttled = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..200)
            .map(|_| {
                let (now, calls, throttled) = (now.clone(), calls.clone(), throttled.clone());
                tokio::spawn(async move {
                    let _turn = turn(url).await;
                    loop {
                        throttle::wait(url, Duration::from_secs(45)).await;
                        calls.fetch_add(1, Ordering::SeqCst);
                        let in_flight = now.fetch_add(1, Ordering::SeqCst) + 1;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        now.fetch_sub(1, Ordering::SeqCst);
                        if in_flight <= 8 {
                            throttle::answered(url);
                            return;
                        }
                        throttled.fetch_add(1, Ordering::SeqCst);
                        throttle::throttled(url);
                    }
                })
            })
            .collect();
        let started = tokio::time::Instant::now();
        for task in tasks {
            task.await.unwrap();
        }
        let (calls, throttled) = (
            calls.load(Ordering::SeqCst),
            throttled.load(Ordering::SeqCst),
        );
        let elapsed = started.elapsed();
        // Measured here: 224 calls, 24 throttled, 10.9 s. The same scene with a fixed cap of 16
        // throttles 8 of every 16 sent and idles a whole back-off each time: 392 calls, 192
        // throttled, 28 s.
        assert!(throttled <= 40, "{throttled} of {calls} calls throttled");
        assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
        let cap = with_gate(url, |gate| gate.cap);
        assert!(cap >= 4, "the cap grew back after the episodes: {cap}");
    }
}
