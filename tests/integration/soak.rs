//! The soak: `keyless aws serve` (ECS-style endpoint) and `keyless gcp serve` (GCE metadata
//! endpoint) under steady load from a second process (`tests/python/soak_client.py`) while
//! fault proxies flap their upstreams (AWS STS; Google STS and IAM Credentials) between healthy
//! and failing in every way `support::FaultProxy` knows, with 20-second lab credentials so that
//! refreshes, outages across a refresh and outages past an expiry all happen.
//!
//! Properties: no failed request while a valid credential exists, no expired credential served,
//! memory flat (RSS of each keyless process after warm-up and at the end). The run lasts
//! `KEYLESS_SOAK_SECS` (default 20, for CI; `tools/reliability` runs 300) and prints a
//! `figures: soak ...` line; `KEYLESS_SOAK_SEED` replays a flapping schedule.

use crate::support;

use std::time::{Duration, Instant};

use keyless::lab::LabConfig;
use rand::{Rng, SeedableRng};
use support::{Answer, Delivery, Fault, LabWorld, Served};

/// The lab's credential lifetime: refreshed ~10 s before expiry, served until 5 s before.
const LIFETIME: Duration = Duration::from_secs(20);
/// Requests per second per endpoint.
const RATE: u32 = 150;

fn soak_seconds() -> u64 {
    std::env::var("KEYLESS_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// The ways the upstream fails, as each delivery's upstream would show them.
fn failure(delivery: Delivery, n: usize) -> Fault {
    let throttled = match delivery {
        Delivery::Ecs => Fault::aws_error(400, "Throttling"),
        Delivery::Gce => Fault::google_error(429, "RESOURCE_EXHAUSTED"),
    };
    let idp = match delivery {
        Delivery::Ecs => Fault::aws_error(400, "IDPCommunicationError"),
        Delivery::Gce => Fault::status(500),
    };
    let all = [
        Fault::status(503),
        throttled,
        Fault::Reset,
        Fault::Refuse,
        Fault::Hang,
        Fault::Truncate,
        idp,
        Fault::ok_with("text/html", "<html><body>Sign in to continue</body></html>"),
        Fault::Delay(Duration::from_secs(3)),
    ];
    all[n % all.len()].clone()
}

/// Resident memory of a process, in KiB (`VmRSS` in /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Waits (bounded) until the endpoint has served a first credential.
async fn warm_up(served: &Served) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Answer::Credential { .. } = served.fetch().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} served no credential within 30 s\n{}",
            served.delivery.name(),
            served.server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Flaps both upstreams until `until`: healthy for 2–5 s, then failing — one fault after
/// another, mostly for 1–4 s (ridden out on the cached credential), every third time for a
/// whole credential lifetime (past an expiry). Returns how many outages it caused.
async fn flap(endpoints: [&Served; 2], until: Instant, seed: u64) -> usize {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut outages = 0;
    while Instant::now() < until {
        let healthy = Duration::from_millis(rng.gen_range(2000..5000));
        tokio::time::sleep(healthy.min(until.saturating_duration_since(Instant::now()))).await;
        if Instant::now() >= until {
            break;
        }
        let down = if outages % 3 == 1 {
            LIFETIME
        } else {
            Duration::from_millis(rng.gen_range(1000..4000))
        };
        for served in endpoints {
            served
                .proxy
                .set_steady(failure(served.delivery, outages))
                .await;
        }
        outages += 1;
        tokio::time::sleep(down.min(until.saturating_duration_since(Instant::now()))).await;
        for served in endpoints {
            served.proxy.heal().await;
        }
    }
    outages
}

/// Both endpoints under steady load while their upstreams flap: not one failed request while a
/// valid credential existed, not one expired credential served, memory flat.
#[tokio::test(flavor = "multi_thread")]
async fn endpoints_under_load_while_the_upstream_flaps() {
    let seconds = soak_seconds();
    let seed = std::env::var("KEYLESS_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    let w = LabWorld::start_with(LabConfig {
        credential_lifetime_cap: Some(LIFETIME),
        ..LabConfig::demo()
    })
    .await;
    let timeouts = [("KEYLESS_ATTEMPT_TIMEOUT", "2"), ("KEYLESS_DEADLINE", "4")];
    let ecs = Served::start(&w, Delivery::Ecs, &timeouts).await;
    let gce = Served::start(&w, Delivery::Gce, &timeouts).await;
    warm_up(&ecs).await;
    warm_up(&gce).await;
    let rss_start = [rss_kib(ecs.server.id()), rss_kib(gce.server.id())];

    let client = w.home.python(
        "soak_client.py",
        [
            seconds.to_string(),
            RATE.to_string(),
            ecs.vars["AWS_CONTAINER_CREDENTIALS_FULL_URI"].clone(),
            ecs.vars["AWS_CONTAINER_AUTHORIZATION_TOKEN"].clone(),
            gce.vars["GCE_METADATA_HOST"].clone(),
        ],
    );
    let started = Instant::now();
    let load = tokio::task::spawn_blocking(move || {
        let mut client = client;
        support::process::run(&mut client)
    });
    let outages = flap([&ecs, &gce], started + Duration::from_secs(seconds), seed).await;
    let out = load.await.expect("the load client ran");
    let rss_end = [rss_kib(ecs.server.id()), rss_kib(gce.server.id())];
    assert_eq!(out.code(), 0, "{out}");
    let doc = out.json();
    let upstream = [ecs.proxy.requests(), gce.proxy.requests()];
    let faulted = [ecs.proxy.faulted(), gce.proxy.faulted()];

    for (i, name) in ["ecs", "gce"].into_iter().enumerate() {
        let s = &doc[name];
        println!(
            "figures: soak {name} seconds={} requests={} ok={} failures={} failures_while_valid={} \
             expired_served={} min_seconds_left={} max_latency_ms={} max_latency_ok_ms={} over_1s={} outages={outages} \
             upstream_requests={} upstream_faulted={} rss_start_kib={} rss_end_kib={} seed={seed}",
            doc["seconds"],
            s["requests"],
            s["ok"],
            s["failures"],
            s["failures_while_valid"],
            s["expired_served"],
            s["min_seconds_left"],
            s["max_latency_ms"],
            s["max_latency_ok_ms"],
            s["over_1s"],
            upstream[i],
            faulted[i],
            rss_start[i],
            rss_end[i],
        );
    }
    for (i, (name, served)) in [("ecs", &ecs), ("gce", &gce)].into_iter().enumerate() {
        let s = &doc[name];
        let context = || {
            format!(
                "{name}: {s}\n--- server log ---\n{}",
                served.server.stderr()
            )
        };
        assert!(s["requests"].as_u64() > Some(seconds * 20), "{}", context());
        assert_eq!(s["failures_while_valid"], 0, "{}", context());
        assert_eq!(s["expired_served"], 0, "{}", context());
        assert!(s["ok"].as_u64() > Some(0), "{}", context());
        // Flat: no more than half again, plus what warm allocator caches may add.
        assert!(
            rss_end[i] <= rss_start[i] * 3 / 2 + 16 * 1024,
            "{name}: RSS grew from {} KiB to {} KiB",
            rss_start[i],
            rss_end[i]
        );
    }
    assert!(outages >= 1, "the upstream never failed");
}
