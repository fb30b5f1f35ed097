//! Micro-benchmarks of the pure work on keyless's hot paths, in ns/op (criterion).
//!
//! `cargo bench --bench micro` (bench/run runs it and puts the medians in BENCHMARKS.md beside
//! bench/peers/micro.py, which does the same operations the way the reference Python libraries
//! do, on the same inputs from bench/data). Under `cargo test --all-targets` criterion runs each
//! benchmark once, as a test that it still works.

use std::hint::black_box;
use std::time::{Duration, SystemTime};

use criterion::{criterion_group, criterion_main, Criterion};
use keyless::cache::CredentialCache;
use keyless::credentials::AwsCredentials;
use keyless::deliver::aws_files::{write_credentials_profile, IniDocument};
use keyless::exchange::aws_sts::{parse_assume_role, AssumedRole};
use keyless::exchange::google_sts::build_subject_token;
use keyless::refresh::{Clock, RefreshError, RefreshPolicy, Refresher, Upstream};
use keyless::secret::Secret;
use keyless::source::google::IdToken;
use time::OffsetDateTime;

const AUDIENCE: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/bench-pool/providers/bench-provider";

fn data(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/data/");
    std::fs::read_to_string(format!("{path}{name}")).expect("bench/data fixture")
}

/// The same 1,000-profile credentials file bench/peers/micro.py generates.
fn ini_with_profiles(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "[profile-{i:04}]\naws_access_key_id = AKIA{i:016}\naws_secret_access_key = {}{i:04}\nregion = us-east-1\n\n",
                "s".repeat(36)
            )
        })
        .collect()
}

fn session_credentials() -> AwsCredentials {
    AwsCredentials {
        access_key_id: "ASIABENCHNEWKEY00000".into(),
        secret_access_key: Secret::new("n".repeat(40)),
        session_token: Some(Secret::new("t".repeat(600))),
        expiration: Some(OffsetDateTime::now_utc() + time::Duration::hours(1)),
    }
}

fn signing(c: &mut Criterion) {
    let credentials = AwsCredentials {
        access_key_id: "AKIDEXAMPLE".into(),
        secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
        session_token: Some(Secret::new("bench-session-token")),
        expiration: None,
    };
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
    let region: keyless::types::Region = "us-east-1".parse().unwrap();
    c.bench_function("sigv4_subject_token", |b| {
        b.iter(|| build_subject_token(black_box(&credentials), &region, AUDIENCE, at).unwrap())
    });
}

fn parsing(c: &mut Criterion) {
    let xml = data("assume_role_response.xml");
    c.bench_function("sts_xml_parse", |b| {
        b.iter(|| parse_assume_role(black_box(&xml)).unwrap())
    });
    let jwt = data("id_token.jwt").trim().to_string();
    c.bench_function("jwt_claims_decode", |b| {
        b.iter(|| IdToken::parse(Secret::new(black_box(jwt.clone())), "bench").unwrap())
    });
}

fn ini(c: &mut Criterion) {
    let text = ini_with_profiles(1000);
    let creds = session_credentials();
    c.bench_function("ini_rewrite_1000_profiles", |b| {
        b.iter(|| {
            let mut doc = IniDocument::parse(black_box(&text));
            doc.set_entries(
                "profile-0500",
                &[
                    ("aws_access_key_id", Some(creds.access_key_id.as_str())),
                    (
                        "aws_secret_access_key",
                        Some(creds.secret_access_key.expose()),
                    ),
                    (
                        "aws_session_token",
                        creds.session_token.as_ref().map(Secret::expose),
                    ),
                ],
            )
            .unwrap();
            doc.render()
        })
    });
    // The whole `write-profile` on disk: lock, read, edit, write a temp file, fsync, rename.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("credentials");
    std::fs::write(&path, &text).unwrap();
    c.bench_function("ini_write_profile_file_1000_profiles", |b| {
        b.iter(|| write_credentials_profile(&path, "profile-0500", &creds).unwrap())
    });
}

/// An upstream that always answers at once (the engine's own cost, not STS's).
struct Instant(AssumedRole);

impl Upstream for Instant {
    type Value = AssumedRole;
    async fn fetch(&self) -> Result<(AssumedRole, OffsetDateTime), RefreshError> {
        let exp = self.0.credentials.expiration.unwrap();
        Ok((self.0.clone(), exp))
    }
}

fn assumed_role() -> AssumedRole {
    let mut role = parse_assume_role(&data("assume_role_response.xml")).unwrap();
    role.credentials.expiration = Some(OffsetDateTime::now_utc() + time::Duration::hours(1));
    role
}

/// A current-thread runtime and a refresher that already holds [`assumed_role`].
fn held_refresher() -> (tokio::runtime::Runtime, Refresher<Instant>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let refresher = Refresher::new(
        "bench",
        Instant(assumed_role()),
        RefreshPolicy::default(),
        Clock::System,
    );
    runtime.block_on(refresher.get()).unwrap();
    (runtime, refresher)
}

fn serving(c: &mut Criterion) {
    let (runtime, refresher) = held_refresher();
    c.bench_function("refresher_get_cached", |b| {
        b.iter(|| runtime.block_on(refresher.get()).unwrap())
    });
    let role = assumed_role();
    c.bench_function("ecs_response_body", |b| {
        b.iter(|| {
            serde_json::to_vec(&keyless::deliver::ecs_server::container_credentials_json(
                black_box(&role),
            ))
            .unwrap()
        })
    });
    // credential_process on a cache hit, in process: read, check and parse the entry, render.
    let dir = tempfile::tempdir().unwrap();
    let cache = CredentialCache::at(dir.path().join("aws"));
    let key = ["bench", "key"];
    cache.store(&key, &role).unwrap();
    c.bench_function("credential_process_cache_hit", |b| {
        b.iter(|| {
            let hit: AssumedRole = cache
                .load(&key, OffsetDateTime::now_utc(), |r: &AssumedRole| {
                    r.credentials.expiration
                })
                .unwrap();
            keyless::deliver::credential_process::credential_process_json(&hit.credentials)
                .to_string()
        })
    });
}

/// One request through an endpoint's whole router (its middleware and handler, no socket),
/// with the credential held: the per-request work the ECS- and IMDS-style servers do.
fn handlers(c: &mut Criterion) {
    use keyless::deliver::{ecs_server, imds_server};
    use tower_service::Service as _;
    let (runtime, refresher) = held_refresher();
    let call = |router: &axum::Router, request: axum::http::Request<axum::body::Body>| {
        let mut router = router.clone();
        runtime.block_on(async move {
            let response = router.call(request).await.unwrap();
            assert_eq!(response.status(), 200);
            axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .unwrap()
        })
    };
    let token = "t".repeat(43);
    let ecs = ecs_server::router(refresher.clone(), Secret::new(token.clone()));
    c.bench_function("ecs_handler_credentials", |b| {
        b.iter(|| {
            let request = axum::http::Request::get(ecs_server::CREDENTIALS_PATH)
                .header("authorization", &token)
                .body(axum::body::Body::empty())
                .unwrap();
            call(&ecs, request)
        })
    });
    let role =
        keyless::exchange::aws_sts::RoleArn::parse("arn:aws:iam::123456789012:role/bench").unwrap();
    let identity = imds_server::InstanceIdentity::for_role(&role, None);
    let imds = imds_server::router(refresher, identity);
    let session = call(
        &imds,
        axum::http::Request::put("/latest/api/token")
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .body(axum::body::Body::empty())
            .unwrap(),
    );
    let session = String::from_utf8(session.to_vec()).unwrap();
    c.bench_function("imds_handler_credentials", |b| {
        b.iter(|| {
            let request =
                axum::http::Request::get("/latest/meta-data/iam/security-credentials/bench")
                    .header("x-aws-ec2-metadata-token", &session)
                    .body(axum::body::Body::empty())
                    .unwrap();
            call(&imds, request)
        })
    });
}

criterion_group!(benches, signing, parsing, ini, serving, handlers);
criterion_main!(benches);
