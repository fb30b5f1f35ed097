//! The refresh engine: one credential kept fresh for however many callers want it.
//!
//! Servers (the ECS-, IMDS- and GCE-style endpoints, the token file) hand out credentials for
//! hours. The engine refreshes ahead of expiry in the background, with jitter so a fleet does
//! not stampede STS; makes exactly one upstream call however many callers arrive while it runs
//! (single-flight); keeps serving the still-valid credential while the upstream fails, retrying
//! with backoff; and never hands out an expired credential — callers get an error instead.
//!
//! When to refresh: when a quarter of the lifetime or 20 minutes remain, whichever comes first,
//! but never later than half-way through a short lifetime (a 60 s lab token is refreshed after
//! ~30 s, not immediately and forever). Twenty minutes matter: boto3 re-fetches on every call
//! once fewer than 15 minutes remain, so what we serve should always have more.
//!
//! Jitter: up to 10 % of that lead is added at random, per refresh, so refreshes only come
//! earlier. A daemon whose 1,000 profiles got their one-hour credentials together (start-up
//! takes ~4 s against a 50 ms STS: the queue of `in_flight`) refreshes them spread over the
//! 2 minutes before the 20-minute mark (~8 a second), not in one burst, and the spread is drawn
//! again at every refresh, so it never collapses; with 60 s lab credentials the spread is 3 s of
//! a 30 s lead. The shared queue and back-off (`in_flight`, `exchange/throttle.rs`) absorb what
//! still coincides.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use rand::Rng;
use time::OffsetDateTime;
use tokio::sync::Mutex;

/// Where a credential comes from: one exchange per call.
pub trait Upstream: Send + Sync + 'static {
    /// What is kept fresh (credentials, a token).
    type Value: Clone + Send + Sync + 'static;

    /// Fetches a new value and its expiry. Errors must not contain secrets.
    fn fetch(
        &self,
    ) -> impl Future<Output = Result<(Self::Value, OffsetDateTime), RefreshError>> + Send;
}

/// An upstream failure as the engine keeps it: the message and whether it may pass.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct RefreshError {
    pub message: String,
    pub transient: bool,
}

impl RefreshError {
    /// Wraps any error (its `Display` must be secret-free, as keyless's errors are).
    pub fn from_error(error: &dyn std::fmt::Display, transient: bool) -> Self {
        Self {
            message: error.to_string(),
            transient,
        }
    }
}

/// Why a caller got no credential.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ServeError {
    /// Nothing valid is cached and the upstream failed.
    #[error("no valid credential for {profile}: {cause}")]
    Unavailable { profile: String, cause: String },
}

/// When to refresh and how to retry.
#[derive(Clone, Debug)]
pub struct RefreshPolicy {
    /// Refresh when this fraction of the lifetime remains...
    pub remaining_fraction: f64,
    /// ...or this much time remains, whichever comes first...
    pub min_remaining: Duration,
    /// ...but never later than this fraction of the lifetime before expiry (short lifetimes).
    pub max_remaining_fraction: f64,
    /// Up to this fraction of the lead time is added at random, so a fleet spreads out.
    pub jitter_fraction: f64,
    /// A credential this close to expiry counts as expired (clock skew, time on the wire).
    pub expiry_margin: Duration,
    /// First and largest delay between background retries after a failure.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            remaining_fraction: 0.25,
            min_remaining: Duration::from_secs(20 * 60),
            max_remaining_fraction: 0.5,
            jitter_fraction: 0.1,
            expiry_margin: Duration::from_secs(5),
            retry_min: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
        }
    }
}

impl RefreshPolicy {
    /// How long before expiry to refresh a credential that lives `lifetime`, without jitter.
    pub fn lead_time(&self, lifetime: Duration) -> Duration {
        let quarter = lifetime.mul_f64(self.remaining_fraction);
        let lead = quarter.max(self.min_remaining);
        lead.min(lifetime.mul_f64(self.max_remaining_fraction))
    }
}

/// What the engine holds now. The value is shared: a caller gets a reference count, not a copy
/// of the secrets, while the lock is held.
#[derive(Debug)]
struct Entry<V> {
    value: Arc<V>,
    expires_at: OffsetDateTime,
    refresh_at: OffsetDateTime,
}

impl<V> Clone for Entry<V> {
    fn clone(&self) -> Self {
        Self {
            value: self.value.clone(),
            expires_at: self.expires_at,
            refresh_at: self.refresh_at,
        }
    }
}

/// Counters for `/metrics` and `/healthz`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RefreshStatus {
    pub refreshes: u64,
    pub failures: u64,
    /// Seconds the last upstream call took.
    pub last_latency_seconds: Option<f64>,
    /// Seconds until the held credential expires (negative: expired); `None`: nothing held.
    pub seconds_until_expiry: Option<f64>,
    /// The last upstream error, if the last attempt failed.
    pub last_error: Option<String>,
}

/// Wall-clock time for the engine: the system clock, or one driven by tokio's clock (tests
/// pause and advance it, so every timing path runs deterministically and instantly).
#[derive(Clone, Copy, Debug)]
pub enum Clock {
    System,
    Tokio {
        wall_start: OffsetDateTime,
        instant_start: tokio::time::Instant,
    },
}

impl Clock {
    /// A clock that follows tokio's (possibly paused) time, starting at the current wall time.
    pub fn tokio() -> Self {
        Self::Tokio {
            wall_start: OffsetDateTime::now_utc(),
            instant_start: tokio::time::Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> OffsetDateTime {
        match self {
            Self::System => OffsetDateTime::now_utc(),
            Self::Tokio {
                wall_start,
                instant_start,
            } => *wall_start + instant_start.elapsed(),
        }
    }
}

struct Inner<U: Upstream> {
    name: String,
    upstream: U,
    policy: RefreshPolicy,
    clock: Clock,
    current: StdMutex<Option<Entry<U::Value>>>,
    /// Held while an upstream call runs: the single flight.
    flight: Mutex<()>,
    /// Bumped after every upstream call, so callers that waited for a flight use its result.
    generation: AtomicU64,
    last_error: StdMutex<Option<RefreshError>>,
    /// When the last upstream call failed with an error that will not pass by itself.
    last_permanent_failure: StdMutex<Option<tokio::time::Instant>>,
    background_running: AtomicBool,
    refreshes: AtomicU64,
    failures: AtomicU64,
    last_latency_micros: AtomicU64,
    /// Counts successful upstream calls, for [`Refresher::subscribe`].
    refreshed: tokio::sync::watch::Sender<u64>,
}

/// One credential kept fresh; cheap to clone (all clones share the credential).
pub struct Refresher<U: Upstream> {
    inner: Arc<Inner<U>>,
}

impl<U: Upstream> Clone for Refresher<U> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<U: Upstream> Refresher<U> {
    /// A refresher named `name` (in messages and metrics), fetching from `upstream`.
    pub fn new(name: impl Into<String>, upstream: U, policy: RefreshPolicy, clock: Clock) -> Self {
        Self {
            inner: Arc::new(Inner {
                name: name.into(),
                upstream,
                policy,
                clock,
                current: StdMutex::new(None),
                flight: Mutex::new(()),
                generation: AtomicU64::new(0),
                last_error: StdMutex::new(None),
                last_permanent_failure: StdMutex::new(None),
                background_running: AtomicBool::new(false),
                refreshes: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                last_latency_micros: AtomicU64::new(u64::MAX),
                refreshed: tokio::sync::watch::Sender::new(0),
            }),
        }
    }

    /// The profile's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// A valid credential and its expiry: the held one while it is valid (starting a background
    /// refresh once it is due), else the result of the one upstream call in flight.
    pub async fn get(&self) -> Result<(U::Value, OffsetDateTime), ServeError> {
        let (value, expires_at) = self.get_shared().await?;
        Ok(((*value).clone(), expires_at))
    }

    /// [`get`](Self::get) without the copy: the held value itself, shared. Servers answering
    /// many requests a second use it (and [`Arc::ptr_eq`] tells them the value has not changed).
    pub async fn get_shared(&self) -> Result<(Arc<U::Value>, OffsetDateTime), ServeError> {
        let now = self.inner.clock.now();
        if let Some(entry) = self.usable(now) {
            if now >= entry.refresh_at {
                self.refresh_in_background();
            }
            return Ok((entry.value, entry.expires_at));
        }
        // Boxed: the upstream call's state machine (an STS or Google exchange, kilobytes) would
        // otherwise be part of every caller's future, which the servers move into a box of
        // their own on every request (perf: 4% of `gcp serve`'s CPU under wrk was that memcpy).
        Box::pin(self.get_shared_slow()).await
    }

    /// [`get_shared`](Self::get_shared) without a usable credential: wait for the flight.
    async fn get_shared_slow(&self) -> Result<(Arc<U::Value>, OffsetDateTime), ServeError> {
        let generation = self.inner.generation.load(Ordering::Acquire);
        let _flight = self.inner.flight.lock().await;
        let now = self.inner.clock.now();
        if let Some(entry) = self.usable(now) {
            return Ok((entry.value, entry.expires_at));
        }
        if self.inner.generation.load(Ordering::Acquire) != generation {
            // A call finished while we waited and left nothing usable: share its failure
            // instead of sending one more request to a failing upstream.
            return Err(self.unavailable());
        }
        if self.failed_permanently_within(self.inner.policy.retry_min) {
            // A refusal or an unreadable answer comes back at once, so callers arriving one
            // after another would each send a request: for a moment, answer with its error.
            return Err(self.unavailable());
        }
        match self.fetch_locked().await {
            Ok(entry) => Ok((entry.value, entry.expires_at)),
            Err(_) => Err(self.unavailable()),
        }
    }

    /// Starts a task that keeps the credential fresh without waiting for callers (servers and
    /// the token file use it so the first request after a quiet hour is fast).
    pub fn spawn_keeper(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move { this.keep_fresh().await })
    }

    /// A receiver that changes after every successful upstream call: for deliveries that must
    /// push each new value somewhere (the web-identity token file) instead of being asked for it.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.refreshed.subscribe()
    }

    /// Counters and the state of the held credential.
    pub fn status(&self) -> RefreshStatus {
        let now = self.inner.clock.now();
        let latency = self.inner.last_latency_micros.load(Ordering::Relaxed);
        RefreshStatus {
            refreshes: self.inner.refreshes.load(Ordering::Relaxed),
            failures: self.inner.failures.load(Ordering::Relaxed),
            last_latency_seconds: (latency != u64::MAX).then(|| latency as f64 / 1e6),
            seconds_until_expiry: self
                .current()
                .map(|e| (e.expires_at - now).as_seconds_f64()),
            last_error: self
                .inner
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .as_ref()
                .map(|e| e.message.clone()),
        }
    }

    fn current(&self) -> Option<Entry<U::Value>> {
        self.inner
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn usable(&self, now: OffsetDateTime) -> Option<Entry<U::Value>> {
        self.current()
            .filter(|e| e.expires_at - self.inner.policy.expiry_margin > now)
    }

    fn failed_permanently_within(&self, window: Duration) -> bool {
        self.inner
            .last_permanent_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some_and(|at| at.elapsed() < window)
    }

    fn unavailable(&self) -> ServeError {
        let cause = self
            .inner
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|e| e.message.clone())
            .unwrap_or_else(|| "the upstream has not answered yet".into());
        ServeError::Unavailable {
            profile: self.inner.name.clone(),
            cause,
        }
    }

    /// One upstream call; the caller holds the flight lock.
    async fn fetch_locked(&self) -> Result<Entry<U::Value>, RefreshError> {
        let started = tokio::time::Instant::now();
        let result = self.inner.upstream.fetch().await.and_then(|(value, expires_at)| {
            // Never hold (and so never serve) what is already expired by our clock: a broken
            // upstream or a clock far off. Counted as a failure, so the keeper backs off
            // instead of asking again at once, forever.
            let now = self.inner.clock.now();
            if expires_at - self.inner.policy.expiry_margin <= now {
                return Err(RefreshError {
                    message: format!(
                        "the upstream answered with a credential that expires at {expires_at}, \
                         already past (or within {} s) by this machine's clock ({now})\n  \
                         hint: check this machine's clock (timedatectl; chrony or ntpd keep it right)",
                        self.inner.policy.expiry_margin.as_secs()
                    ),
                    transient: false,
                });
            }
            Ok((value, expires_at))
        });
        self.inner.last_latency_micros.store(
            started.elapsed().as_micros().min(u64::MAX as u128 - 1) as u64,
            Ordering::Relaxed,
        );
        let outcome = match result {
            Ok((value, expires_at)) => {
                let entry = self.entry(value, expires_at);
                *self.inner.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(entry.clone());
                *self
                    .inner
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
                *self
                    .inner
                    .last_permanent_failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = None;
                self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
                self.inner.refreshed.send_modify(|n| *n += 1);
                tracing::info!(
                    profile = %self.inner.name,
                    expires_at = %crate::credentials::format_expiration(expires_at),
                    next_refresh = %crate::credentials::format_expiration(entry.refresh_at),
                    "refreshed"
                );
                Ok(entry)
            }
            Err(error) => {
                self.inner.failures.fetch_add(1, Ordering::Relaxed);
                *self
                    .inner
                    .last_permanent_failure
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) =
                    (!error.transient).then(tokio::time::Instant::now);
                tracing::warn!(profile = %self.inner.name, error = %error.message, "refresh failed");
                *self
                    .inner
                    .last_error
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()) = Some(error.clone());
                Err(error)
            }
        };
        self.inner.generation.fetch_add(1, Ordering::AcqRel);
        outcome
    }

    fn entry(&self, value: U::Value, expires_at: OffsetDateTime) -> Entry<U::Value> {
        let now = self.inner.clock.now();
        let lifetime = (expires_at - now).max(time::Duration::ZERO);
        let lifetime = Duration::try_from(lifetime).unwrap_or_default();
        let policy = &self.inner.policy;
        let lead = policy.lead_time(lifetime);
        let jitter = lead.mul_f64(rand::thread_rng().gen_range(0.0..=policy.jitter_fraction));
        // Jitter makes the refresh earlier, never later than the policy's lead time.
        let lead = (lead + jitter).min(lifetime);
        Entry {
            value: Arc::new(value),
            expires_at,
            refresh_at: expires_at - lead,
        }
    }

    /// Refreshes once in the background if no background refresh is running.
    fn refresh_in_background(&self) {
        if self.inner.background_running.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            this.refresh_due().await;
            this.inner
                .background_running
                .store(false, Ordering::Release);
        });
    }

    /// Refreshes if due, retrying with backoff while the held credential is still usable.
    async fn refresh_due(&self) {
        let mut delay = self.inner.policy.retry_min;
        loop {
            {
                let _flight = self.inner.flight.lock().await;
                let now = self.inner.clock.now();
                match self.current() {
                    Some(e) if now < e.refresh_at => return,
                    _ => {}
                }
                if self.fetch_locked().await.is_ok() {
                    return;
                }
            }
            // Failed: keep serving what we have while it lasts; try again later.
            let now = self.inner.clock.now();
            let Some(entry) = self.usable(now) else {
                return;
            };
            let left = Duration::try_from(entry.expires_at - now).unwrap_or_default();
            tokio::time::sleep(delay.min(left)).await;
            delay = (delay * 2).min(self.inner.policy.retry_max);
        }
    }

    async fn keep_fresh(&self) {
        let mut delay = self.inner.policy.retry_min;
        loop {
            let now = self.inner.clock.now();
            let wait = match self.current() {
                Some(entry) if now < entry.refresh_at => {
                    Duration::try_from(entry.refresh_at - now).unwrap_or_default()
                }
                _ => {
                    let ok = {
                        let _flight = self.inner.flight.lock().await;
                        let now = self.inner.clock.now();
                        match self.current() {
                            Some(e) if now < e.refresh_at => true,
                            _ => self.fetch_locked().await.is_ok(),
                        }
                    };
                    if ok {
                        delay = self.inner.policy.retry_min;
                        continue;
                    }
                    let wait = delay;
                    delay = (delay * 2).min(self.inner.policy.retry_max);
                    wait
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// An upstream whose answers the test controls: lifetime, failure, and a delay.
    #[derive(Clone)]
    struct Fake {
        clock: Clock,
        calls: Arc<AtomicU64>,
        failing: Arc<AtomicBool>,
        lifetime: Duration,
        delay: Duration,
    }

    impl Fake {
        fn new(clock: Clock, lifetime: Duration) -> Self {
            Self {
                clock,
                calls: Arc::new(AtomicU64::new(0)),
                failing: Arc::new(AtomicBool::new(false)),
                lifetime,
                delay: Duration::from_millis(50),
            }
        }
        fn calls(&self) -> u64 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl Upstream for Fake {
        type Value = u64;
        async fn fetch(&self) -> Result<(u64, OffsetDateTime), RefreshError> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.delay).await;
            if self.failing.load(Ordering::SeqCst) {
                return Err(RefreshError {
                    message: "STS is down".into(),
                    transient: true,
                });
            }
            Ok((n, self.clock.now() + self.lifetime))
        }
    }

    fn no_jitter() -> RefreshPolicy {
        RefreshPolicy {
            jitter_fraction: 0.0,
            ..RefreshPolicy::default()
        }
    }

    #[test]
    fn lead_time_follows_the_policy() {
        let p = RefreshPolicy::default();
        // One hour: 20 minutes (earlier than the quarter, 15).
        assert_eq!(
            p.lead_time(Duration::from_secs(3600)),
            Duration::from_secs(1200)
        );
        // Twelve hours: the quarter, 3 hours.
        assert_eq!(
            p.lead_time(Duration::from_secs(43200)),
            Duration::from_secs(10800)
        );
        // Sixty seconds: half-way, not immediately.
        assert_eq!(
            p.lead_time(Duration::from_secs(60)),
            Duration::from_secs(30)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn thousand_callers_at_expiry_cause_one_exchange() {
        let clock = Clock::tokio();
        let fake = Fake::new(clock, Duration::from_secs(3600));
        let refresher = Refresher::new("p", fake.clone(), no_jitter(), clock);
        let callers: Vec<_> = (0..1000)
            .map(|_| {
                let r = refresher.clone();
                tokio::spawn(async move { r.get().await.unwrap().0 })
            })
            .collect();
        for c in callers {
            assert_eq!(c.await.unwrap(), 1);
        }
        assert_eq!(fake.calls(), 1);
        // Past expiry: again exactly one exchange for a thousand callers.
        tokio::time::advance(Duration::from_secs(3601)).await;
        let callers: Vec<_> = (0..1000)
            .map(|_| {
                let r = refresher.clone();
                tokio::spawn(async move { r.get().await.unwrap().0 })
            })
            .collect();
        for c in callers {
            assert_eq!(c.await.unwrap(), 2);
        }
        assert_eq!(fake.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn due_credentials_are_served_while_refreshed_in_the_background() {
        let clock = Clock::tokio();
        let fake = Fake::new(clock, Duration::from_secs(3600));
        let refresher = Refresher::new("p", fake.clone(), no_jitter(), clock);
        assert_eq!(refresher.get().await.unwrap().0, 1);
        tokio::time::advance(Duration::from_secs(2500)).await; // 18 min left: due
        assert_eq!(
            refresher.get().await.unwrap().0,
            1,
            "served at once, not after the refresh"
        );
        tokio::time::sleep(Duration::from_secs(1)).await; // let the background refresh run
        assert_eq!(fake.calls(), 2);
        let (value, expires_at) = refresher.get().await.unwrap();
        assert_eq!(value, 2);
        assert!(expires_at - clock.now() > time::Duration::minutes(59));
    }

    #[tokio::test(start_paused = true)]
    async fn outage_serves_the_valid_credential_then_fails_then_recovers() {
        let clock = Clock::tokio();
        let fake = Fake::new(clock, Duration::from_secs(3600));
        let refresher = Refresher::new("p", fake.clone(), no_jitter(), clock);
        let _keeper = refresher.spawn_keeper();
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(refresher.get().await.unwrap().0, 1);
        fake.failing.store(true, Ordering::SeqCst);
        // Through the refresh window while STS is down: still the valid credential.
        tokio::time::sleep(Duration::from_secs(3000)).await;
        let (value, expires_at) = refresher.get().await.unwrap();
        assert_eq!(value, 1);
        assert!(expires_at > clock.now());
        assert!(refresher.status().failures > 0);
        // Past its real expiry: an error naming the cause, never the expired credential.
        tokio::time::sleep(Duration::from_secs(700)).await;
        let error = refresher.get().await.unwrap_err().to_string();
        assert!(error.contains("STS is down"), "{error}");
        // The upstream comes back: the next caller (or the keeper) gets a fresh one.
        fake.failing.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(61)).await;
        let (value, expires_at) = refresher.get().await.unwrap();
        assert!(value > 1);
        assert!(expires_at - clock.now() > time::Duration::minutes(58));
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_callers_share_a_failure_instead_of_retrying_each() {
        let clock = Clock::tokio();
        let fake = Fake::new(clock, Duration::from_secs(3600));
        fake.failing.store(true, Ordering::SeqCst);
        let refresher = Refresher::new("p", fake.clone(), no_jitter(), clock);
        let callers: Vec<_> = (0..100)
            .map(|_| {
                let r = refresher.clone();
                tokio::spawn(async move { r.get().await.is_err() })
            })
            .collect();
        for c in callers {
            assert!(c.await.unwrap());
        }
        assert_eq!(fake.calls(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn short_lifetimes_refresh_half_way_and_keep_going() {
        let clock = Clock::tokio();
        let fake = Fake::new(clock, Duration::from_secs(60));
        let refresher = Refresher::new("p", fake.clone(), no_jitter(), clock);
        let _keeper = refresher.spawn_keeper();
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_secs(10)).await;
            let (_, expires_at) = refresher.get().await.unwrap();
            assert!(expires_at - clock.now() >= time::Duration::seconds(20));
        }
        // 100 s with 60 s tokens refreshed every ~30 s: about four calls, not one per second.
        assert!((3..=5).contains(&fake.calls()), "{}", fake.calls());
    }

    #[tokio::test(start_paused = true)]
    async fn subscribers_hear_of_every_refresh_and_not_of_failures() {
        let clock = Clock::tokio();
        let fake = Fake::new(clock, Duration::from_secs(60));
        let refresher = Refresher::new("p", fake.clone(), no_jitter(), clock);
        let mut refreshed = refresher.subscribe();
        let _keeper = refresher.spawn_keeper();
        refreshed.changed().await.unwrap();
        assert_eq!(refresher.get().await.unwrap().0, 1);
        let first = clock.now();
        // Due half-way (30 s): the keeper refreshes and the subscriber hears of it.
        refreshed.changed().await.unwrap();
        assert_eq!(refresher.get().await.unwrap().0, 2);
        assert!(clock.now() - first >= time::Duration::seconds(29));
        fake.failing.store(true, Ordering::SeqCst);
        let quiet = tokio::time::timeout(Duration::from_secs(120), refreshed.changed()).await;
        assert!(quiet.is_err(), "a failed refresh must not notify");
    }

    #[tokio::test(start_paused = true)]
    async fn jitter_only_makes_refreshes_earlier() {
        let clock = Clock::tokio();
        let fake = Fake::new(clock, Duration::from_secs(3600));
        let refresher = Refresher::new("p", fake, RefreshPolicy::default(), clock);
        refresher.get().await.unwrap();
        let entry = refresher.current().unwrap();
        let lead = entry.expires_at - entry.refresh_at;
        assert!(
            lead >= time::Duration::minutes(20) && lead <= time::Duration::minutes(22),
            "{lead}"
        );
    }

    /// 1,000 profiles whose credentials arrive together do not come due together: their
    /// refreshes spread over the jitter's 2 minutes (10 % of a 20-minute lead), a few a second.
    #[tokio::test(start_paused = true)]
    async fn a_thousand_profiles_started_together_refresh_spread_out() {
        let clock = Clock::tokio();
        let mut due = Vec::new();
        for _ in 0..1000 {
            let mut fake = Fake::new(clock, Duration::from_secs(3600));
            fake.delay = Duration::ZERO; // every credential arrives at the same instant
            let refresher = Refresher::new("p", fake, RefreshPolicy::default(), clock);
            refresher.get().await.unwrap();
            due.push(refresher.current().unwrap().refresh_at);
        }
        let first = *due.iter().min().unwrap();
        let last = *due.iter().max().unwrap();
        assert!(
            last - first >= time::Duration::seconds(100),
            "{}",
            last - first
        );
        let mut per_second = std::collections::HashMap::<i64, usize>::new();
        for at in &due {
            *per_second.entry((*at - first).whole_seconds()).or_default() += 1;
        }
        let busiest = per_second.values().max().unwrap();
        assert!(*busiest <= 40, "{busiest} refreshes due in one second");
    }

    /// An upstream whose answers are already expired by our clock (a broken upstream, a clock
    /// far off) is a failure: nothing expired is served, and the keeper backs off instead of
    /// asking again at once, forever.
    #[tokio::test(start_paused = true)]
    async fn credentials_expired_on_arrival_are_refused_and_backed_off() {
        let clock = Clock::tokio();
        let mut fake = Fake::new(clock, Duration::from_secs(2));
        fake.delay = Duration::ZERO;
        let refresher = Refresher::new("p", fake.clone(), no_jitter(), clock);
        let error = refresher.get().await.unwrap_err().to_string();
        assert!(error.contains("already past"), "{error}");
        let _keeper = refresher.spawn_keeper();
        tokio::time::sleep(Duration::from_secs(60)).await;
        // Backing off 1, 2, 4, ... s: a handful of calls in a minute, not thousands.
        assert!((2..=10).contains(&fake.calls()), "{}", fake.calls());
        assert!(refresher.get().await.is_err());
    }

    /// A refusal comes back at once: callers arriving one after another share it for a moment
    /// (`retry_min`) instead of each sending a request upstream; after that, the next caller
    /// tries again.
    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_shared_for_a_moment_instead_of_asked_again_per_caller() {
        #[derive(Clone)]
        struct Refusing(Arc<AtomicU64>);
        impl Upstream for Refusing {
            type Value = u64;
            async fn fetch(&self) -> Result<(u64, OffsetDateTime), RefreshError> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Err(RefreshError {
                    message: "AccessDenied".into(),
                    transient: false,
                })
            }
        }
        let calls = Arc::new(AtomicU64::new(0));
        let refresher = Refresher::new("p", Refusing(calls.clone()), no_jitter(), Clock::tokio());
        for _ in 0..50 {
            let error = refresher.get().await.unwrap_err().to_string();
            assert!(error.contains("AccessDenied"), "{error}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1, "50 callers in 0.5 s");
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(refresher.get().await.is_err());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }
}
