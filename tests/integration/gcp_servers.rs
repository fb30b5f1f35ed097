//! `keyless gcp serve`: the real binary serving a GCE-metadata-compatible endpoint for an AWS
//! identity, against the lab. Unmodified Google clients (google-auth, google-cloud-storage)
//! pointed at it with GCE_METADATA_HOST and GCE_METADATA_IP believe they run on Compute Engine;
//! the tokens they get are checked on the lab's storage stand-in, which accepts only tokens the
//! lab's Google STS and IAM Credentials issued and that have not expired.

use crate::support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use keyless::lab::LabConfig;
use serde_json::Value;
use support::{GcsEmulator, LabWorld};

const COPYCAT: &str = "copycat@keyless-lab.iam.gserviceaccount.com";
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const READ_ONLY: &str = "https://www.googleapis.com/auth/devstorage.read_only";
/// How long the server may take to print its address (it only parses flags and binds).
const READY_WITHIN: Duration = Duration::from_secs(30);

fn workload_env(w: &LabWorld) -> Vec<(&'static str, String)> {
    support::lab_world::aws_env(&w.lab.issue_role_credentials(
        "aws-workload",
        "app",
        Duration::from_secs(3600),
    ))
}

/// A running `keyless -vv gcp serve`, killed when dropped (its log printed if the test fails).
struct GceServer {
    child: Child,
    /// `127.0.0.1:PORT`, as announced.
    host: String,
    /// What it printed on stdout once listening.
    announcement: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl GceServer {
    /// Starts `keyless gcp serve --audience <lab provider> ARGS` with the lab's environment
    /// plus `env`, and returns once it has announced its address on stdout.
    async fn start(w: &LabWorld, args: &[&str], env: &[(&str, String)]) -> Self {
        Self::start_for(w, &w.lab.workload_identity_audience(), args, env).await
    }

    /// [`Self::start`] for the provider `audience`.
    async fn start_for(
        w: &LabWorld,
        audience: &str,
        args: &[&str],
        env: &[(&str, String)],
    ) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("keyless.log");
        let mut all = vec!["-vv", "gcp", "serve", "--audience", audience];
        all.extend_from_slice(args);
        let mut cmd = w.home.keyless(&all);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        w.point_at_lab(&mut cmd, &env);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"));
        let lines = if args.contains(&"--metrics-listen") {
            5
        } else {
            4
        };
        tokio::task::spawn_blocking(move || {
            let mut child = cmd.spawn().expect("keyless starts");
            let stdout = child.stdout.take().expect("piped stdout");
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    if tx.send(line.unwrap_or_default()).is_err() {
                        break;
                    }
                }
            });
            let deadline = Instant::now() + READY_WITHIN;
            let mut announcement = String::new();
            for _ in 0..lines {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(left) {
                    Ok(line) => announcement.push_str(&format!("{line}\n")),
                    Err(e) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "keyless gcp serve did not announce itself ({e}); it printed:\n{announcement}\n--- log ---\n{}",
                            std::fs::read_to_string(&log).unwrap_or_default()
                        );
                    }
                }
            }
            let host = announcement
                .lines()
                .find_map(|l| l.strip_prefix("export GCE_METADATA_HOST="))
                .unwrap_or_else(|| panic!("no GCE_METADATA_HOST line in:\n{announcement}"))
                .to_string();
            GceServer {
                child,
                host,
                announcement,
                log,
                _dir: dir,
            }
        })
        .await
        .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.host)
    }

    /// GET `path` with `Metadata-Flavor: Google`: status, `Metadata-Flavor` answered, body.
    async fn get(&self, path: &str) -> (u16, Option<String>, String) {
        self.get_with(path, &[("Metadata-Flavor", "Google")]).await
    }

    async fn get_with(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Option<String>, String) {
        let mut request = reqwest::Client::new().get(self.url(path));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.expect("the endpoint answers");
        let status = response.status().as_u16();
        let flavor = response
            .headers()
            .get("metadata-flavor")
            .map(|v| v.to_str().unwrap().to_string());
        (status, flavor, response.text().await.unwrap())
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (bounded wait).
    fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "keyless did not stop within 10 s of SIGTERM\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for GceServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- keyless gcp serve log ---\n{}", self.log());
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The lab's storage stand-in's answer to `token`: 200 only for a live lab-issued token.
async fn storage_status(w: &LabWorld, token: &str) -> u16 {
    reqwest::Client::new()
        .get(format!(
            "{}/storage/v1/b?project=keyless-lab",
            w.lab.google_apis_url()
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Runs a `tests/python/` script with GCE_METADATA_HOST and GCE_METADATA_IP at `server` and
/// nothing else of the lab's (the client must need nothing but the metadata endpoint).
async fn python_via_metadata(
    w: &LabWorld,
    server: &GceServer,
    script: &str,
    args: &[&str],
) -> support::CommandOutput {
    let mut cmd = w.home.python(script, args);
    cmd.env("GCE_METADATA_HOST", &server.host)
        .env("GCE_METADATA_IP", &server.host);
    tokio::task::spawn_blocking(move || support::process::run(&mut cmd))
        .await
        .unwrap()
}

/// The paths the SDKs read answer as Compute Engine's do; what the real server refuses is
/// refused; every answer says `Metadata-Flavor: Google`.
#[tokio::test(flavor = "multi_thread")]
async fn answers_and_refuses_like_the_metadata_server() {
    let w = LabWorld::start().await;
    let server = GceServer::start(&w, &["--service-account", COPYCAT], &workload_env(&w)).await;
    let port = server.host.rsplit(':').next().unwrap();
    assert_eq!(
        server.announcement,
        format!(
            "# google-auth-python detects GCE by pinging GCE_METADATA_IP, then reads GCE_METADATA_HOST: set both (gcloud reads GCE_METADATA_ROOT).\n\
             export GCE_METADATA_HOST=127.0.0.1:{port}\nexport GCE_METADATA_IP=127.0.0.1:{port}\n\
             export GCE_METADATA_ROOT=127.0.0.1:{port}\n"
        )
    );
    let google = Some("Google".to_string());
    let v1 = "/computeMetadata/v1";
    let sa = format!("{v1}/instance/service-accounts");

    assert_eq!(server.get("/").await.0, 200);
    assert_eq!(server.get("/").await.1, google);
    assert_eq!(
        server.get(&format!("{v1}/project/project-id")).await,
        (200, google.clone(), "keyless-lab".into())
    );
    assert_eq!(
        server
            .get(&format!("{v1}/project/numeric-project-id"))
            .await,
        (200, google.clone(), "424242424242".into())
    );
    assert_eq!(
        server.get(&format!("{v1}/universe/universe-domain")).await,
        (200, google.clone(), "googleapis.com".into())
    );
    assert_eq!(
        server.get(&format!("{sa}/")).await.2,
        format!("default/\n{COPYCAT}/\n")
    );
    assert_eq!(
        server.get(&format!("{sa}/default/")).await.2,
        "aliases\nemail\nidentity\nscopes\ntoken\n"
    );
    let info: Value =
        serde_json::from_str(&server.get(&format!("{sa}/default/?recursive=true")).await.2)
            .unwrap();
    assert_eq!(
        info,
        serde_json::json!({"aliases": ["default"], "email": COPYCAT, "scopes": [CLOUD_PLATFORM]})
    );
    assert_eq!(
        server.get(&format!("{sa}/{COPYCAT}/email")).await.2,
        COPYCAT
    );
    assert_eq!(
        server.get(&format!("{sa}/default/aliases")).await.2,
        "default\n"
    );
    assert_eq!(
        server.get(&format!("{sa}/default/scopes")).await.2,
        format!("{CLOUD_PLATFORM}\n")
    );
    let (status, flavor, _) = server
        .get(&format!("{sa}/other@x.iam.gserviceaccount.com/token"))
        .await;
    assert_eq!((status, flavor), (404, google.clone()));
    assert_eq!(server.get(&format!("{v1}/instance/zone")).await.0, 404);

    // Refusals.
    let (status, flavor, body) = server
        .get_with(&format!("{v1}/project/project-id"), &[])
        .await;
    assert_eq!((status, flavor), (403, google.clone()), "{body}");
    assert!(body.contains("Metadata-Flavor: Google"), "{body}");
    let (status, flavor, body) = server
        .get_with(
            &format!("{sa}/default/token"),
            &[
                ("Metadata-Flavor", "Google"),
                ("X-Forwarded-For", "203.0.113.7"),
            ],
        )
        .await;
    assert_eq!((status, flavor), (403, google.clone()), "{body}");
    assert!(!body.contains("access_token"), "{body}");
    let (status, _, body) = server.get(&format!("{sa}/default/identity")).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("audience"), "{body}");

    // Tokens: the default scopes and a requested set each give a token Google accepts.
    let (status, flavor, body) = server.get(&format!("{sa}/default/token")).await;
    assert_eq!((status, flavor), (200, google.clone()), "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(token["token_type"], "Bearer");
    let expires_in = token["expires_in"].as_i64().unwrap();
    assert!((3000..=3600).contains(&expires_in), "{token}");
    let default_token = token["access_token"].as_str().unwrap().to_string();
    assert_eq!(storage_status(&w, &default_token).await, 200);
    let (status, _, body) = server
        .get(&format!("{sa}/{COPYCAT}/token?scopes={READ_ONLY}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let scoped: Value = serde_json::from_str(&body).unwrap();
    let scoped_token = scoped["access_token"].as_str().unwrap();
    assert_ne!(
        scoped_token, default_token,
        "another scope set, another token"
    );
    assert_eq!(storage_status(&w, scoped_token).await, 200);
    // Asked again, both come from their engines: no new exchange.
    assert_eq!(
        serde_json::from_str::<Value>(&server.get(&format!("{sa}/default/token")).await.2).unwrap()
            ["access_token"],
        default_token.as_str()
    );
    assert_eq!(w.lab.stats().google_sts_exchanges, 2);

    // Identity: an ID token for the audience, minted for the service account.
    let (status, _, jwt) = server
        .get(&format!(
            "{sa}/default/identity?audience=https://run.example.com&format=full"
        ))
        .await;
    assert_eq!(status, 200, "{jwt}");
    let id =
        keyless::source::google::IdToken::parse(keyless::secret::Secret::new(jwt), "test").unwrap();
    assert_eq!(id.claims().aud, "https://run.example.com");
    assert_eq!(id.claims().email.as_deref(), Some(COPYCAT));

    // One debug line per request, never a token.
    let log = server.log();
    assert!(
        log.contains("uri=/computeMetadata/v1/universe/universe-domain"),
        "{log}"
    );
    assert!(!log.contains(&default_token), "a token reached the log");
}

/// A service account the workload may not impersonate: token requests answer 503 with IAM's
/// refusal and the binding to add (google-auth shows the body in its error).
#[tokio::test(flavor = "multi_thread")]
async fn upstream_refusal_is_explained() {
    let w = LabWorld::start().await;
    let deployer = "deployer@keyless-lab.iam.gserviceaccount.com";
    let server = GceServer::start(&w, &["--service-account", deployer], &workload_env(&w)).await;
    let (status, flavor, body) = server
        .get("/computeMetadata/v1/instance/service-accounts/default/token")
        .await;
    assert_eq!((status, flavor.as_deref()), (503, Some("Google")), "{body}");
    assert!(body.contains("roles/iam.workloadIdentityUser"), "{body}");
}

/// Without --service-account: the federated token itself, `default` as the address, and
/// `identity` refused with the fix.
#[tokio::test(flavor = "multi_thread")]
async fn federated_token_without_a_service_account() {
    let w = LabWorld::start().await;
    let server = GceServer::start(&w, &["--project-id", "keyless-lab"], &workload_env(&w)).await;
    let sa = "/computeMetadata/v1/instance/service-accounts";
    assert_eq!(
        server.get(&format!("{sa}/default/email")).await.2,
        "default"
    );
    assert_eq!(server.get(&format!("{sa}/")).await.2, "default/\n");
    assert_eq!(
        server.get("/computeMetadata/v1/project/project-id").await.2,
        "keyless-lab"
    );
    let (status, _, body) = server.get(&format!("{sa}/default/token")).await;
    assert_eq!(status, 200, "{body}");
    let token: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        storage_status(&w, token["access_token"].as_str().unwrap()).await,
        200
    );
    let (status, _, body) = server
        .get(&format!(
            "{sa}/default/identity?audience=https://run.example.com"
        ))
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("--service-account"), "{body}");
}

/// Many simultaneous token requests at cold start share one exchange (single flight, one engine
/// per scope set even when it is created under contention); /metrics reports the engine.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_cold_start_requests_share_one_exchange() {
    let w = LabWorld::start().await;
    let server = GceServer::start(
        &w,
        &[
            "--service-account",
            COPYCAT,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &workload_env(&w),
    )
    .await;
    // With /healthz served, the default token is fetched at start: /healthz is 200 once it is
    // held (and only then), its line saying so.
    let metrics = server
        .announcement
        .lines()
        .find_map(|l| l.strip_prefix("# /healthz and /metrics: "))
        .expect("the metrics address is announced")
        .to_string();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let health = loop {
        let response = reqwest::get(format!("{metrics}/healthz")).await.unwrap();
        let status = response.status();
        let body = response.text().await.unwrap();
        if status == 200 {
            break body;
        }
        assert_eq!(status, 503, "{body}");
        assert!(std::time::Instant::now() < deadline, "never ready: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert!(health.starts_with("gce-metadata token: ok "), "{health}");
    let exchanges_before = w.lab.stats().google_sts_exchanges;
    let path = format!(
        "/computeMetadata/v1/instance/service-accounts/default/token?scopes={READ_ONLY},{CLOUD_PLATFORM}"
    );
    let requests = (0..32).map(|i| {
        // Half name the scopes in the other order: the same set, the same engine.
        let path = if i % 2 == 0 {
            path.clone()
        } else {
            path.replace(
                &format!("{READ_ONLY},{CLOUD_PLATFORM}"),
                &format!("{CLOUD_PLATFORM},{READ_ONLY}"),
            )
        };
        let server = &server;
        async move { server.get(&path).await }
    });
    let answers = futures_join_all(requests).await;
    let tokens: std::collections::BTreeSet<String> = answers
        .iter()
        .map(|(status, _, body)| {
            assert_eq!(*status, 200, "{body}");
            serde_json::from_str::<Value>(body).unwrap()["access_token"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(tokens.len(), 1, "every caller got the one token");
    assert_eq!(w.lab.stats().google_sts_exchanges, exchanges_before + 1);

    let text = reqwest::get(format!("{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("keyless_refreshes_total{profile=\"gce-metadata token scopes="),
        "{text}"
    );
}

/// Polls `futures` together until all are done (the futures crate's `join_all`, which is not a
/// dependency); the requests they make are in flight at the same time.
async fn futures_join_all<F: std::future::Future>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output> {
    let mut pinned: Vec<_> = futures.map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in pinned.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(value) => *output = Some(value),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    outputs.into_iter().map(Option::unwrap).collect()
}

/// SIGTERM stops the server cleanly (exit 0) and takes the ready file away; the ready file
/// holds exactly what was announced.
#[tokio::test(flavor = "multi_thread")]
async fn ready_file_and_clean_shutdown() {
    let w = LabWorld::start().await;
    let ready = w.home.home().join("gce-ready.env");
    let mut server = GceServer::start(
        &w,
        &[
            "--service-account",
            COPYCAT,
            "--ready-file",
            ready.to_str().unwrap(),
        ],
        &workload_env(&w),
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(&ready).unwrap(),
        server.announcement
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = server.terminate();
        (status, server)
    })
    .await
    .unwrap()
    .0;
    assert_eq!(status.code(), Some(0));
    assert!(!ready.exists(), "the ready file outlived the server");
}

/// google-auth's Compute Engine credentials, from google.auth.default() with nothing but
/// GCE_METADATA_HOST/GCE_METADATA_IP, stay valid across several refreshes: the lab caps every
/// token (and AWS session) at 20 s, and a client uses the storage stand-in once a second for
/// 40 s. The AWS identity comes from the container endpoint, which issues fresh sessions.
#[tokio::test(flavor = "multi_thread")]
async fn google_auth_stays_valid_across_refreshes() {
    const CAP: Duration = Duration::from_secs(20);
    let mut config = LabConfig::demo();
    config.credential_lifetime_cap = Some(CAP);
    let w = LabWorld::start_with(config).await;
    let token_file = w
        .home
        .write_token("container-token", &w.lab.container_authorization_token());
    let env = vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
            w.lab.container_credentials_uri("aws-workload"),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
            token_file.display().to_string(),
        ),
    ];
    let server = GceServer::start(&w, &["--service-account", COPYCAT], &env).await;
    let api = format!(
        "{}/storage/v1/b?project=keyless-lab",
        w.lab.google_apis_url()
    );
    let out = python_via_metadata(&w, &server, "gce_metadata_refresh.py", &["40", &api]).await;
    assert_eq!(out.code(), 0, "{out}");
    let doc = out.json();
    eprintln!("google-auth over 40 s: {doc}");
    assert_eq!(
        doc["credentials"], "google.auth.compute_engine.credentials.Credentials",
        "{out}"
    );
    assert_eq!(doc["project_id"], "keyless-lab");
    assert_eq!(doc["email"], COPYCAT);
    let requests = doc["requests"].as_u64().unwrap();
    assert!(requests >= 17, "{doc}");
    assert_eq!(
        doc["statuses"],
        serde_json::json!({"200": requests}),
        "{doc}"
    );
    // 40 s of 20-s tokens refreshed half-way: at least three tokens, never an expired one.
    assert!(doc["distinct_tokens"].as_u64().unwrap() >= 3, "{doc}");
    assert!(doc["min_seconds_left"].as_f64().unwrap() > 0.0, "{doc}");
    assert!(
        doc["max_seconds_left"].as_f64().unwrap() <= CAP.as_secs_f64(),
        "{doc}"
    );
    // The endpoint served every request from its engine: exchanges follow the lifetime, not
    // the request rate.
    let exchanges = w.lab.stats().google_sts_exchanges;
    eprintln!("{exchanges} Google STS exchanges for {requests} requests");
    assert!(
        (3..=10).contains(&exchanges),
        "{exchanges} exchanges for {requests} requests"
    );
}

/// google-cloud-storage, configured with nothing but the metadata variables and an emulator
/// endpoint, creates a bucket, round-trips an object and lists buckets with a token from the
/// endpoint (one the lab's storage accepts); it read universe/universe-domain on the way.
#[tokio::test(flavor = "multi_thread")]
async fn google_cloud_storage_uses_the_endpoint() {
    let w = LabWorld::start().await;
    let server = GceServer::start(&w, &["--service-account", COPYCAT], &workload_env(&w)).await;
    let emulator = tokio::task::spawn_blocking(GcsEmulator::start)
        .await
        .unwrap();
    let out = python_via_metadata(
        &w,
        &server,
        "gcs_client_via_metadata.py",
        &[&emulator.endpoint(), "keyless-lab", "keyless-made-this"],
    )
    .await;
    assert_eq!(out.code(), 0, "{out}");
    let doc = out.json();
    assert_eq!(
        doc["credentials"], "google.auth.compute_engine.credentials.Credentials",
        "{out}"
    );
    assert!(
        doc["buckets"]
            .as_array()
            .unwrap()
            .contains(&Value::from("keyless-made-this")),
        "{doc}"
    );
    assert_eq!(doc["content"], "from keyless");
    assert!(doc["requests"].as_u64().unwrap() >= 4, "{doc}");
    assert_eq!(doc["unauthenticated_requests"], 0, "{doc}");
    let tokens = doc["bearer_tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 1, "{doc}");
    assert_eq!(storage_status(&w, tokens[0].as_str().unwrap()).await, 200);
    let log = server.log();
    assert!(
        log.contains("uri=/computeMetadata/v1/universe/universe-domain"),
        "{log}"
    );
    // The client asked for its own scopes (devstorage), so it got its own engine.
    assert!(log.contains("token?scopes="), "{log}");
}

/// `--scopes devstorage.read_only` is the widest a caller gets: `?scopes=cloud-platform` is
/// refused (it used to be served verbatim), the short and full forms of the configured scope are
/// one engine; cycling ID-token audiences gets 429 once the budget of new engines is spent
/// (known audiences are still served); request values reach the log and error bodies escaped.
#[tokio::test(flavor = "multi_thread")]
async fn callers_cannot_widen_scopes_churn_engines_or_forge_log_lines() {
    let w = LabWorld::start().await;
    let server = GceServer::start(
        &w,
        &[
            "--service-account",
            COPYCAT,
            "--scopes",
            "devstorage.read_only",
        ],
        &workload_env(&w),
    )
    .await;
    let sa = "/computeMetadata/v1/instance/service-accounts/default";
    assert_eq!(
        server.get(&format!("{sa}/scopes")).await.2,
        format!("{READ_ONLY}\n"),
        "the configured scope is shown normalised"
    );
    let (status, _, body) = server.get(&format!("{sa}/token")).await;
    assert_eq!(status, 200, "{body}");
    let default_token: Value = serde_json::from_str(&body).unwrap();
    for wider in [
        "cloud-platform",
        CLOUD_PLATFORM,
        &format!("{READ_ONLY},{CLOUD_PLATFORM}"),
    ] {
        let (status, _, body) = server.get(&format!("{sa}/token?scopes={wider}")).await;
        assert_eq!(status, 403, "{wider}: {body}");
        assert!(body.contains("--scopes"), "{body}");
        assert!(!body.contains("access_token"), "{body}");
    }
    for same in ["devstorage.read_only", READ_ONLY] {
        let (status, _, body) = server.get(&format!("{sa}/token?scopes={same}")).await;
        assert_eq!(status, 200, "{body}");
        let token: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(token["access_token"], default_token["access_token"]);
    }
    let (status, _, body) = server.get(&format!("{sa}/token?scopes=a%01b")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(w.lab.stats().google_sts_exchanges, 1);

    // A forged line in an audience or an account name stays on its own line, escaped.
    let forged = "https://run.example.com%0AFORGED%20level=ERROR";
    let (status, _, body) = server
        .get(&format!("{sa}/identity?audience={forged}"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _, body) = server
        .get("/computeMetadata/v1/instance/service-accounts/x%0AFORGED/token")
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body.lines().count(), 1, "{body}");
    assert!(body.contains("x\\nFORGED"), "{body}");

    // Audiences: the budget is MAX_AUDIENCES new ones (one used above), then 429.
    let max = keyless::deliver::gce_metadata_server::MAX_AUDIENCES;
    for i in 1..max {
        let (status, _, body) = server
            .get(&format!(
                "{sa}/identity?audience=https://run{i}.example.com"
            ))
            .await;
        assert_eq!(status, 200, "audience {i}: {body}");
    }
    let before = w.lab.stats();
    let response = reqwest::Client::new()
        .get(server.url(&format!(
            "{sa}/identity?audience=https://one-too-many.example.com"
        )))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=15).contains(&retry_after), "{retry_after}");
    assert_eq!(
        server
            .get(&format!("{sa}/identity?audience=https://run1.example.com"))
            .await
            .0,
        200,
        "a known audience is still served"
    );
    assert_eq!(
        w.lab.stats(),
        before,
        "no upstream call for the refused or known ones"
    );

    let log = server.log();
    assert!(
        log.contains("audience=https://run.example.com\\nFORGED level=ERROR"),
        "the engine for the forged audience is named, escaped:\n{log}"
    );
    assert!(
        !log.lines().any(|l| l.starts_with("FORGED")),
        "a request value broke a log line:\n{log}"
    );
}

/// The Node.js clients under tests/node (pinned in its package-lock.json, installed by
/// tools/test). `None` means skip: node is not installed and CI is not set. Installed node
/// without the modules is a failure with the fix, as a missing venv is.
fn node_clients() -> Option<PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    let node = std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node {
        assert!(
            std::env::var_os("CI").is_none(),
            "node is not installed and CI is set: the Node.js client tests must run on CI \
             (.ci/run installs nodejs and npm)"
        );
        eprintln!(
            "SKIPPED: node is not installed, so google-auth-library for Node.js was not run \
             (install nodejs and npm, then run tools/test)"
        );
        return None;
    }
    assert!(
        dir.join("node_modules/google-auth-library/package.json")
            .is_file(),
        "{}/node_modules lacks google-auth-library: the Node.js clients are not installed.\n  \
         fix: run `tools/test --setup-only` (it runs `npm ci` in tests/node)",
        dir.display()
    );
    Some(dir)
}

/// google-auth-library for Node.js, with nothing but GCE_METADATA_HOST/GCE_METADATA_IP, takes
/// the endpoint for Compute Engine (gcp-metadata's `GET /computeMetadata/v1/instance`, no
/// trailing slash, used to answer 404) and gets from it a token the lab's storage accepts, the
/// project, the universe domain, the account's address and an ID token; `instance/zone` is
/// answered 404 with what is served.
#[tokio::test(flavor = "multi_thread")]
async fn node_google_auth_library_uses_the_endpoint() {
    let Some(node_dir) = node_clients() else {
        return;
    };
    let w = LabWorld::start().await;
    let server = GceServer::start(&w, &["--service-account", COPYCAT], &workload_env(&w)).await;
    let mut cmd = w.home.command("node");
    cmd.arg(node_dir.join("gce_metadata_client.js"))
        .arg("https://run.example.com")
        .current_dir(&node_dir)
        .env("GCE_METADATA_HOST", &server.host)
        .env("GCE_METADATA_IP", &server.host);
    let out = tokio::task::spawn_blocking(move || support::process::run(&mut cmd))
        .await
        .unwrap();
    assert_eq!(out.code(), 0, "{out}");
    let doc = out.json();
    assert_eq!(doc["available"], true, "{doc}");
    assert_eq!(doc["client"], "Compute", "{doc}");
    assert_eq!(doc["project_id"], "keyless-lab", "{doc}");
    assert_eq!(doc["universe_domain"], "googleapis.com", "{doc}");
    assert_eq!(doc["email"], COPYCAT, "{doc}");
    assert_eq!(doc["zone"]["status"], 404, "{doc}");
    let token = doc["access_token"].as_str().unwrap();
    assert_eq!(storage_status(&w, token).await, 200, "{doc}");
    let id = keyless::source::google::IdToken::parse(
        keyless::secret::Secret::new(doc["id_token"].as_str().unwrap()),
        "test",
    )
    .unwrap();
    assert_eq!(id.claims().aud, "https://run.example.com");
    assert_eq!(id.claims().email.as_deref(), Some(COPYCAT));
    let log = server.log();
    assert!(log.contains("uri=/computeMetadata/v1/instance "), "{log}");
}

/// The directory tree as Compute Engine's server shows it: every directory with and without
/// its trailing slash, `?recursive=true` and `?alt=json|text`, `instance/hostname`, and a 404
/// naming what is served for what is not (zone, id, attributes).
#[tokio::test(flavor = "multi_thread")]
async fn directories_recursive_and_alt_answer_like_the_metadata_server() {
    let w = LabWorld::start().await;
    let server = GceServer::start(&w, &["--service-account", COPYCAT], &workload_env(&w)).await;
    let v1 = "/computeMetadata/v1";
    for (path, listing) in [
        (v1.to_string(), "instance/\nproject/\nuniverse/\n"),
        (format!("{v1}/instance"), "hostname\nservice-accounts/\n"),
        (format!("{v1}/project"), "numeric-project-id\nproject-id\n"),
        (format!("{v1}/universe"), "universe-domain\n"),
    ] {
        for path in [path.clone(), format!("{path}/")] {
            let (status, flavor, body) = server.get(&path).await;
            assert_eq!(
                (status, flavor.as_deref()),
                (200, Some("Google")),
                "{path}: {body}"
            );
            assert_eq!(body, listing, "{path}");
            let (status, _, body) = server.get(&format!("{path}?alt=text")).await;
            assert_eq!((status, body.as_str()), (200, listing), "{path}");
        }
    }
    let tree: Value =
        serde_json::from_str(&server.get(&format!("{v1}/?recursive=true")).await.2).unwrap();
    assert_eq!(tree["project"]["projectId"], "keyless-lab", "{tree}");
    assert_eq!(
        tree["project"]["numericProjectId"], 424242424242u64,
        "{tree}"
    );
    assert_eq!(
        tree["universe"]["universeDomain"], "googleapis.com",
        "{tree}"
    );
    assert_eq!(
        tree["instance"]["serviceAccounts"]["default"]["email"], COPYCAT,
        "{tree}"
    );
    assert!(tree["instance"]["hostname"]
        .as_str()
        .is_some_and(|h| !h.is_empty()));
    let project: Value =
        serde_json::from_str(&server.get(&format!("{v1}/project?alt=json")).await.2).unwrap();
    assert_eq!(project, tree["project"]);
    // Leaves: text, or JSON with ?alt=json; anything else for alt is refused.
    assert_eq!(
        server
            .get(&format!("{v1}/project/project-id?alt=json"))
            .await
            .2,
        "\"keyless-lab\""
    );
    assert_eq!(
        server
            .get(&format!("{v1}/project/numeric-project-id?alt=json"))
            .await
            .2,
        "424242424242"
    );
    assert_eq!(
        server
            .get(&format!(
                "{v1}/instance/service-accounts/default/email?alt=json"
            ))
            .await
            .2,
        format!("\"{COPYCAT}\"")
    );
    assert_eq!(
        server.get(&format!("{v1}/instance/hostname")).await.2,
        tree["instance"]["hostname"].as_str().unwrap()
    );
    assert_eq!(
        server
            .get(&format!("{v1}/project/project-id?alt=xml"))
            .await
            .0,
        400
    );
    // What is not served says so, and what is.
    for path in [
        "instance/zone",
        "instance/id",
        "instance/attributes/",
        "project/attributes/x",
    ] {
        let (status, flavor, body) = server.get(&format!("{v1}/{path}")).await;
        assert_eq!((status, flavor.as_deref()), (404, Some("Google")), "{path}");
        assert!(body.contains("does not serve"), "{path}: {body}");
        assert!(
            body.contains("instance/service-accounts/"),
            "{path}: {body}"
        );
    }
}

/// `gcp serve --token-source file:PATH` (an OIDC token of the lab's CI issuer, for its OIDC
/// provider): google-auth's Compute Engine credentials, with nothing but the metadata
/// variables, get copycat's token through it and a Google API accepts it.
#[tokio::test(flavor = "multi_thread")]
async fn google_auth_uses_the_endpoint_with_a_jwt_source() {
    let w = LabWorld::start().await;
    let provider = w
        .lab
        .provider_audience(keyless::lab::DEMO_POOL, keyless::lab::DEMO_OIDC_PROVIDER);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let jwt = w.lab.sign_claims(&serde_json::json!({
        "iss": keyless::lab::DEMO_OIDC_ISSUER, "aud": provider, "iat": now, "exp": now + 600,
        "sub": "repo:keyless-lab/app:ref:refs/heads/main", "repository_owner": "keyless-lab",
    }));
    let token = w.home.write_token("ci.jwt", &jwt);
    let source = format!("file:{}", token.display());
    let server = GceServer::start_for(
        &w,
        &provider,
        &["--token-source", &source, "--service-account", COPYCAT],
        &[],
    )
    .await;
    let api = format!(
        "{}/storage/v1/b?project=keyless-lab",
        w.lab.google_apis_url()
    );
    let out = python_via_metadata(&w, &server, "gce_metadata_refresh.py", &["1", &api]).await;
    assert_eq!(out.code(), 0, "{out}");
    let doc = out.json();
    assert_eq!(
        doc["credentials"], "google.auth.compute_engine.credentials.Credentials",
        "{out}"
    );
    assert_eq!(doc["email"], COPYCAT);
    let requests = doc["requests"].as_u64().unwrap();
    assert!(requests >= 1, "{doc}");
    assert_eq!(
        doc["statuses"],
        serde_json::json!({"200": requests}),
        "{doc}"
    );
    assert_eq!(w.lab.stats().google_sts_exchanges, 1);

    // The token file now holds another subject: the next request is not served the previous
    // subject's token, it is exchanged anew.
    let path = "/computeMetadata/v1/instance/service-accounts/default/token";
    assert_eq!(server.get(path).await.0, 200);
    assert_eq!(
        w.lab.stats().google_sts_exchanges,
        1,
        "still the same subject"
    );
    let other = w.lab.sign_claims(&serde_json::json!({
        "iss": keyless::lab::DEMO_OIDC_ISSUER, "aud": provider, "iat": now, "exp": now + 600,
        "sub": "repo:keyless-lab/other:ref:refs/heads/main", "repository_owner": "keyless-lab",
    }));
    w.home.write_token("ci.jwt", &other);
    let (status, _, body) = server.get(path).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(w.lab.stats().google_sts_exchanges, 2);
}

/// In a GitHub Actions job, `gcp serve --token-source github` (the demo pool's `github-lab`
/// provider, which verifies the job's token with GitHub's key): google-auth's Compute Engine
/// credentials get copycat's token through it and a Google API accepts it.
#[tokio::test(flavor = "multi_thread")]
async fn google_auth_uses_the_endpoint_in_a_github_job() {
    let w = LabWorld::start().await;
    let provider = w
        .lab
        .provider_audience(keyless::lab::DEMO_POOL, keyless::lab::DEMO_GITHUB_PROVIDER);
    let job: Vec<(String, String)> = w.lab.github_actions_env();
    let job: Vec<(&str, String)> = job.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let server = GceServer::start_for(
        &w,
        &provider,
        &["--token-source", "github", "--service-account", COPYCAT],
        &job,
    )
    .await;
    let api = format!(
        "{}/storage/v1/b?project=keyless-lab",
        w.lab.google_apis_url()
    );
    let out = python_via_metadata(&w, &server, "gce_metadata_refresh.py", &["1", &api]).await;
    assert_eq!(out.code(), 0, "{out}");
    let doc = out.json();
    assert_eq!(doc["email"], COPYCAT, "{out}");
    let requests = doc["requests"].as_u64().unwrap();
    assert!(requests >= 1, "{doc}");
    assert_eq!(
        doc["statuses"],
        serde_json::json!({"200": requests}),
        "{doc}"
    );
    assert_eq!(w.lab.stats().google_sts_exchanges, 1);
    assert_eq!(w.lab.github_tokens_minted(), 1);
}
