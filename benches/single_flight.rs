//! Single flight at expiry: 1,000 callers arrive together just after the held credential
//! expired. The refresh engine must make exactly one upstream call and every caller must get
//! its result; the figure is the latency the callers see.
//!
//! Three runs of the same scene on a 2-worker runtime, each against a counting upstream that
//! takes [`UPSTREAM_LATENCY`] (an STS round trip on a good day):
//! - `engine`: 1,000 tasks call `Refresher::get` directly;
//! - `ecs_http`: 1,000 HTTP/1.1 clients, each on its own connection, ask keyless's ECS-style
//!   endpoint as shipped (its router, listener and server, on loopback; latency includes
//!   connecting);
//! - `ecs_http_backlog_128`: the same behind std's backlog of 128, what `TcpListener::bind`
//!   gives and what keyless's servers used before: a connect storm overflows it, and the
//!   dropped clients retry after a second;
//! - `naive`: the peer, a cache as people write it by hand (check a lock, fetch when expired,
//!   store), which sends every caller that saw the expired value upstream.
//!
//! `cargo bench --bench single_flight -- --json` prints one `SINGLE_FLIGHT_JSON {...}` line
//! (bench/run puts it in BENCHMARKS.md). Without `--bench` (as under `cargo test --all-targets`)
//! it runs a small scene and only checks the one upstream call; it never asserts on times.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyless::credentials::AwsCredentials;
use keyless::exchange::aws_sts::AssumedRole;
use keyless::refresh::{Clock, RefreshError, RefreshPolicy, Refresher, Upstream};
use keyless::secret::Secret;
use time::OffsetDateTime;

/// How long the fake STS takes to answer.
const UPSTREAM_LATENCY: Duration = Duration::from_millis(50);

/// A fake STS that counts its calls. The first answer expires [`FIRST_LIFETIME`] after it is
/// issued (so the scene can start just after that), later ones live an hour.
#[derive(Clone, Default)]
struct CountingSts {
    /// Calls since the scene started (reset after the priming call).
    calls: Arc<AtomicU64>,
    /// Answers ever issued (decides the lifetime; never reset).
    issued: Arc<AtomicU64>,
}

/// The engine treats a credential within 5 s of expiry as expired (its `expiry_margin`).
const FIRST_LIFETIME: Duration = Duration::from_millis(5_300);

impl CountingSts {
    async fn answer(&self) -> (AssumedRole, OffsetDateTime) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let n = self.issued.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(UPSTREAM_LATENCY).await;
        let lifetime = if n == 0 {
            time::Duration::try_from(FIRST_LIFETIME).unwrap()
        } else {
            time::Duration::hours(1)
        };
        let expiration = OffsetDateTime::now_utc() + lifetime;
        let role = AssumedRole {
            credentials: AwsCredentials {
                access_key_id: format!("ASIABENCH{n:011}"),
                secret_access_key: Secret::new("s".repeat(40)),
                session_token: Some(Secret::new("t".repeat(600))),
                expiration: Some(expiration),
            },
            assumed_role_arn: "arn:aws:sts::123456789012:assumed-role/gcp-deploy/bench".into(),
            assumed_role_id: "AROABENCH:bench".into(),
            subject_from_web_identity_token: None,
            audience: None,
            provider: None,
            packed_policy_size: None,
        };
        (role, expiration)
    }
}

impl Upstream for CountingSts {
    type Value = AssumedRole;
    async fn fetch(&self) -> Result<(AssumedRole, OffsetDateTime), RefreshError> {
        Ok(self.answer().await)
    }
}

/// What one scene measured.
struct Scene {
    name: &'static str,
    callers: usize,
    upstream_calls: u64,
    latencies: Vec<Duration>,
    failures: usize,
}

impl Scene {
    fn json(&mut self) -> String {
        self.latencies.sort();
        let pct = |p: f64| {
            let i = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
            self.latencies.get(i).map_or(0.0, |d| d.as_secs_f64() * 1e3)
        };
        format!(
            "\"{}\": {{\"callers\": {}, \"upstream_calls\": {}, \"failures\": {}, \"p50_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}, \"min_ms\": {:.3}}}",
            self.name,
            self.callers,
            self.upstream_calls,
            self.failures,
            pct(0.5),
            pct(0.99),
            pct(1.0),
            self.latencies.first().map_or(0.0, |d| d.as_secs_f64() * 1e3),
        )
    }
}

/// A refresher holding a credential that has just expired (one priming call made).
async fn expired_refresher() -> (Refresher<CountingSts>, CountingSts) {
    let sts = CountingSts::default();
    let refresher = Refresher::new(
        "bench",
        sts.clone(),
        RefreshPolicy::default(),
        Clock::System,
    );
    refresher.get().await.expect("priming call");
    // Past the first credential's usable life (lifetime minus the 5 s margin).
    tokio::time::sleep(FIRST_LIFETIME - Duration::from_secs(5) + Duration::from_millis(50)).await;
    sts.calls.store(0, Ordering::SeqCst);
    (refresher, sts)
}

/// Starts `callers` tasks that wait on one barrier and then each run `call`, timing it.
async fn stampede<F, Fut>(callers: usize, call: F) -> (Vec<Duration>, usize)
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(callers));
    let call = Arc::new(call);
    let tasks: Vec<_> = (0..callers)
        .map(|_| {
            let barrier = barrier.clone();
            let call = call.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                let started = Instant::now();
                let ok = call().await;
                (started.elapsed(), ok)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(callers);
    let mut failures = 0;
    for task in tasks {
        let (elapsed, ok) = task.await.expect("caller task");
        latencies.push(elapsed);
        failures += usize::from(!ok);
    }
    (latencies, failures)
}

async fn engine_scene(callers: usize) -> Scene {
    let (refresher, sts) = expired_refresher().await;
    let (latencies, failures) = stampede(callers, move || {
        let refresher = refresher.clone();
        async move { refresher.get().await.is_ok() }
    })
    .await;
    Scene {
        name: "engine",
        callers,
        upstream_calls: sts.calls.load(Ordering::SeqCst),
        latencies,
        failures,
    }
}

async fn ecs_http_scene(callers: usize, name: &'static str, backlog: Option<u32>) -> Scene {
    let (refresher, sts) = expired_refresher().await;
    let token = "bench-token";
    let app = keyless::deliver::ecs_server::router(refresher, Secret::new(token));
    // As shipped (`None`): keyless's own listener and server (`deliver::server::bind` and
    // `serve`: its backlog, connection cap and guards). `Some(n)`: the same router behind a plain
    // listener with a backlog of n.
    use keyless::deliver::server::{self, Access, Endpoint};
    let (addr, server) = match backlog {
        None => {
            let listener = server::bind("127.0.0.1:0", Endpoint::EcsCredentials, &Access::local())
                .await
                .unwrap();
            let addr = listener.local_addr().unwrap();
            let served = server::serve(listener, app, std::future::pending());
            (addr, tokio::spawn(async move { drop(served.await) }))
        }
        Some(n) => {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let listener = socket.listen(n).unwrap();
            let addr = listener.local_addr().unwrap();
            (
                addr,
                tokio::spawn(async move { drop(axum::serve(listener, app).await) }),
            )
        }
    };
    // Each caller opens its own connection, as 1,000 SDK processes would, and speaks plain
    // HTTP/1.1 over it (no client library between the clock and the socket).
    let (latencies, failures) = stampede(callers, move || async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
            return false;
        };
        let request = format!(
            "GET /creds HTTP/1.1\r\nHost: {addr}\r\nAuthorization: {token}\r\nConnection: close\r\n\r\n"
        );
        let mut answer = Vec::new();
        stream.write_all(request.as_bytes()).await.is_ok()
            && stream.read_to_end(&mut answer).await.is_ok()
            && answer.starts_with(b"HTTP/1.1 200")
    })
    .await;
    server.abort();
    Scene {
        name,
        callers,
        upstream_calls: sts.calls.load(Ordering::SeqCst),
        latencies,
        failures,
    }
}

/// The peer: a hand-written cache without single flight.
async fn naive_scene(callers: usize) -> Scene {
    let sts = CountingSts::default();
    let held: Arc<tokio::sync::RwLock<Option<(AssumedRole, OffsetDateTime)>>> =
        Arc::new(tokio::sync::RwLock::new(Some(sts.answer().await)));
    tokio::time::sleep(FIRST_LIFETIME - Duration::from_secs(5) + Duration::from_millis(50)).await;
    sts.calls.store(0, Ordering::SeqCst);
    let margin = time::Duration::seconds(5);
    let upstream = sts.clone();
    let (latencies, failures) = stampede(callers, move || {
        let held = held.clone();
        let sts = upstream.clone();
        async move {
            let now = OffsetDateTime::now_utc();
            if let Some((_, exp)) = &*held.read().await {
                if *exp - margin > now {
                    return true;
                }
            }
            let fresh = sts.answer().await;
            *held.write().await = Some(fresh);
            true
        }
    })
    .await;
    Scene {
        name: "naive",
        callers,
        upstream_calls: sts.calls.load(Ordering::SeqCst),
        latencies,
        failures,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let benching = args.iter().any(|a| a == "--bench");
    let json = args.iter().any(|a| a == "--json");
    let callers = if benching { 1000 } else { 50 };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut scenes = runtime.block_on(async {
        vec![
            engine_scene(callers).await,
            ecs_http_scene(callers, "ecs_http", None).await,
            ecs_http_scene(callers, "ecs_http_backlog_128", Some(128)).await,
            naive_scene(callers).await,
        ]
    });
    for scene in &scenes[..3] {
        assert_eq!(
            scene.upstream_calls, 1,
            "{}: {} callers at expiry made {} upstream calls",
            scene.name, scene.callers, scene.upstream_calls
        );
        assert_eq!(scene.failures, 0, "{}: callers failed", scene.name);
    }
    let body: Vec<String> = scenes.iter_mut().map(Scene::json).collect();
    let line = format!(
        "{{\"upstream_latency_ms\": {}, {}}}",
        UPSTREAM_LATENCY.as_millis(),
        body.join(", ")
    );
    if json {
        println!("SINGLE_FLIGHT_JSON {line}");
    } else {
        println!("single flight: {line}");
    }
}
