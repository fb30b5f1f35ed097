//! The long-running deliveries of the GCP → AWS direction, as the real binary against the lab:
//! `keyless aws serve` (ECS-style and IMDSv2-style endpoints) and `keyless aws token-file`, used
//! by the real boto3 and aws CLI. The lab caps credential lifetimes at seconds here, so a test of
//! a minute spans several refreshes; the lab's STS verifies every signature and every expiry, so
//! a stale or expired credential would fail the workload, not pass unnoticed.

use crate::support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use keyless::lab::{LabConfig, LabService};
use support::{Background, LabWorld};
use time::OffsetDateTime;

/// Time allowed for the binary to start and print its export lines.
const STARTUP: Duration = Duration::from_secs(30);

fn lab_with_credentials_lasting(cap: Duration, id_token: Duration) -> LabConfig {
    LabConfig {
        credential_lifetime_cap: Some(cap),
        id_token_lifetime: id_token,
        ..LabConfig::demo()
    }
}

/// `keyless aws serve --role-arn gcp-deploy ARGS...` and the variables it exported.
async fn serve(
    w: &LabWorld,
    args: &[&str],
    expect: &[&str],
) -> (Background, HashMap<String, String>) {
    let role = w.role("gcp-deploy");
    let mut all = vec!["-vv", "aws", "serve", "--role-arn", &role];
    all.extend_from_slice(args);
    let mut server = w.spawn_keyless(&all, &[]);
    let vars = server.exports(expect, STARTUP).await;
    (server, vars)
}

const ECS_VARS: &[&str] = &[
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// A GET of the ECS endpoint with `Authorization: auth` (none when `None`).
async fn ecs_get(
    client: &reqwest::Client,
    vars: &HashMap<String, String>,
    auth: Option<&str>,
) -> reqwest::Response {
    let mut request = client.get(&vars["AWS_CONTAINER_CREDENTIALS_FULL_URI"]);
    if let Some(auth) = auth {
        request = request.header("Authorization", auth);
    }
    request.send().await.expect("the endpoint answers")
}

fn parse_expiration(doc: &serde_json::Value) -> OffsetDateTime {
    let text = doc["Expiration"].as_str().expect("Expiration");
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// Runs the boto3 workload (`tests/python/boto3_refresh_loop.py`) with `vars` and checks every
/// call succeeded as the role; returns the distinct access keys boto3 used, in order.
async fn boto3_loop(
    w: &LabWorld,
    vars: &HashMap<String, String>,
    calls: u32,
    interval_secs: f64,
    mode: &str,
    imds: bool,
) -> Vec<String> {
    let mut cmd = w.home.python(
        "boto3_refresh_loop.py",
        [
            calls.to_string(),
            interval_secs.to_string(),
            mode.to_string(),
        ],
    );
    if imds {
        cmd.env_remove("AWS_EC2_METADATA_DISABLED");
    }
    cmd.envs(vars);
    let out = w.run(cmd).await;
    assert_eq!(out.code(), 0, "{out}");
    let doc = out.json();
    assert_eq!(doc["errors"], serde_json::json!([]), "{out}");
    let arns = doc["arns"].as_array().unwrap();
    assert_eq!(arns.len(), calls as usize, "{out}");
    for arn in arns {
        let arn = arn.as_str().unwrap();
        assert!(
            arn.starts_with("arn:aws:sts::123456789012:assumed-role/gcp-deploy/"),
            "{arn}"
        );
    }
    let mut keys: Vec<String> = Vec::new();
    for key in doc["access_keys"].as_array().unwrap() {
        let key = key.as_str().unwrap().to_string();
        if keys.last() != Some(&key) {
            keys.push(key);
        }
    }
    keys
}

/// Short credentials are refreshed half-way (9–10 s for 20 s, with jitter): over `elapsed` that is
/// one exchange to start and one per refresh, several in all, and far fewer than boto3's calls.
fn assert_refreshed_per_lifetime_not_per_call(w: &LabWorld, elapsed: Duration) {
    let exchanges = w.lab.stats().assume_role_with_web_identity_calls;
    let most = (elapsed.as_secs_f64() / (REFRESHING_LIFETIME.as_secs_f64() * 0.43)) as u64 + 2;
    assert!(
        (4..=most).contains(&exchanges),
        "{exchanges} exchanges in {elapsed:?}"
    );
}

/// How long the lab's credentials last in the refresh tests: refreshed every 9–10 s, so a
/// 40 s workload sees three refreshes (the engine's own policy is proven in
/// `src/refresh/engine.rs` with a paused clock; these prove real clients follow it).
const REFRESHING_LIFETIME: Duration = Duration::from_secs(20);

/// boto3, configured only by the exported variables, stays authenticated through the ECS-style
/// endpoint across several refreshes of 20-second credentials (~40 s of calls), taking up
/// each new credential as its own refresh logic asks for it.
#[tokio::test(flavor = "multi_thread")]
async fn boto3_through_the_ecs_endpoint_survives_several_refreshes() {
    let w = LabWorld::start_with(lab_with_credentials_lasting(
        REFRESHING_LIFETIME,
        Duration::from_secs(60),
    ))
    .await;
    let (mut server, vars) = serve(&w, &[], ECS_VARS).await;
    let started = std::time::Instant::now();
    let keys = boto3_loop(&w, &vars, 11, 4.0, "shared", false).await;
    assert_refreshed_per_lifetime_not_per_call(&w, started.elapsed());
    assert!(keys.len() >= 3, "boto3 used only {keys:?}");
    assert!(server.is_running(), "{}", server.stderr());
    // One debug line per request, and no secret in any of them.
    let log = server.stderr();
    assert!(log.contains("request"), "{log}");
    assert!(
        !log.contains(&vars["AWS_CONTAINER_AUTHORIZATION_TOKEN"]),
        "{log}"
    );
}

/// The same through the IMDSv2-style endpoint (a new boto3 session per call: see the script
/// for botocore's IMDS expiry extension).
#[tokio::test(flavor = "multi_thread")]
async fn boto3_through_the_imds_endpoint_survives_several_refreshes() {
    let w = LabWorld::start_with(lab_with_credentials_lasting(
        REFRESHING_LIFETIME,
        Duration::from_secs(60),
    ))
    .await;
    let (_server, vars) = serve(&w, &["--imds"], &["AWS_EC2_METADATA_SERVICE_ENDPOINT"]).await;
    assert_eq!(vars.len(), 1, "{vars:?}");
    let started = std::time::Instant::now();
    let keys = boto3_loop(&w, &vars, 11, 4.0, "fresh", true).await;
    assert_refreshed_per_lifetime_not_per_call(&w, started.elapsed());
    assert!(keys.len() >= 3, "boto3 used only {keys:?}");
}

/// The aws CLI assumes the role itself from the kept-fresh token file (the lab's STS verifies
/// the JWT); the file is 0600 and is replaced with a new token as the old one nears expiry.
#[tokio::test(flavor = "multi_thread")]
async fn aws_cli_assumes_the_role_from_the_token_file() {
    let w = LabWorld::start_with(lab_with_credentials_lasting(
        Duration::from_secs(3600),
        Duration::from_secs(30),
    ))
    .await;
    let role = w.role("gcp-deploy");
    let path = w.home.home().join("web-identity-token");
    let path_arg = path.display().to_string();
    let mut keeper = w.spawn_keyless(
        &[
            "aws",
            "token-file",
            "--path",
            &path_arg,
            "--role-arn",
            &role,
        ],
        &[],
    );
    let vars = keeper
        .exports(&["AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"], STARTUP)
        .await;
    assert_eq!(vars["AWS_WEB_IDENTITY_TOKEN_FILE"], path_arg);
    assert_eq!(vars["AWS_ROLE_ARN"], role);
    assert_private(&path);
    let first = std::fs::read_to_string(&path).unwrap();

    let whoami = |vars: HashMap<String, String>| {
        let mut cmd = w.home.aws(["sts", "get-caller-identity"]);
        cmd.envs(vars)
            .env("AWS_ROLE_SESSION_NAME", "token-file-test");
        w.run(cmd)
    };
    let out = whoami(vars.clone()).await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(
        out.json()["Arn"],
        "arn:aws:sts::123456789012:assumed-role/gcp-deploy/token-file-test"
    );

    // 30-second tokens are replaced after ~15 s; wait for that, bounded.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let second = loop {
        let now = std::fs::read_to_string(&path).unwrap();
        if now != first {
            break now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token file was never refreshed\n{}",
            keeper.stderr()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        second.matches('.').count(),
        2,
        "a whole JWT, never a torn one"
    );
    assert_private(&path);
    assert!(w.lab.stats().id_tokens_minted >= 2);
    let out = whoami(vars).await;
    assert_eq!(out.code(), 0, "{out}");
    assert!(w.lab.stats().assume_role_with_web_identity_successes >= 2);
}

fn assert_private(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", path.display());
}

/// 1,000 simultaneous requests while the endpoint holds nothing (the first exchange is held up
/// by the lab for 2 s) make exactly one exchange, and all get the same credential.
#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_simultaneous_requests_make_one_exchange() {
    let w = LabWorld::start().await;
    w.lab
        .faults()
        .delay(LabService::AwsSts, Duration::from_secs(2), 1);
    let (_server, vars) = serve(&w, &[], ECS_VARS).await;
    let client = reqwest::Client::new();
    let token = vars["AWS_CONTAINER_AUTHORIZATION_TOKEN"].clone();
    let requests: Vec<_> = (0..1000)
        .map(|_| {
            let (client, vars, token) = (client.clone(), vars.clone(), token.clone());
            tokio::spawn(async move {
                let response = ecs_get(&client, &vars, Some(&token)).await;
                assert_eq!(response.status(), 200);
                let doc: serde_json::Value = response.json().await.unwrap();
                doc["AccessKeyId"].as_str().unwrap().to_string()
            })
        })
        .collect();
    let mut keys = std::collections::HashSet::new();
    for request in requests {
        keys.insert(request.await.unwrap());
    }
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(
        w.lab.faults().pending().is_empty(),
        "the exchange went through the delay"
    );
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 1);
}

/// While STS fails, the endpoint keeps serving the cached credential until (just before) its
/// real expiry, then answers 503 naming the cause — never the expired credential — and serves
/// a new one as soon as STS is back.
#[tokio::test(flavor = "multi_thread")]
async fn an_sts_outage_serves_the_cached_credential_until_it_expires() {
    let w = LabWorld::start_with(lab_with_credentials_lasting(
        Duration::from_secs(20),
        Duration::from_secs(3600),
    ))
    .await;
    let (server, vars) = serve(&w, &[], ECS_VARS).await;
    let client = reqwest::Client::new();
    let token = vars["AWS_CONTAINER_AUTHORIZATION_TOKEN"].clone();
    let first: serde_json::Value = ecs_get(&client, &vars, Some(&token))
        .await
        .json()
        .await
        .unwrap();
    let key = first["AccessKeyId"].as_str().unwrap().to_string();
    let expires = parse_expiration(&first);
    w.lab.faults().sts_error("ServiceUnavailable", 503, 10_000);

    // Poll (bounded by the credential's life) until the endpoint gives up on it.
    let deadline = expires + time::Duration::seconds(10);
    let refusal = loop {
        let now = OffsetDateTime::now_utc();
        assert!(now < deadline, "still serving after expiry");
        let response = ecs_get(&client, &vars, Some(&token)).await;
        if response.status() == 503 {
            break (now, response.json::<serde_json::Value>().await.unwrap());
        }
        assert_eq!(response.status(), 200);
        let doc: serde_json::Value = response.json().await.unwrap();
        assert_eq!(
            doc["AccessKeyId"],
            key.as_str(),
            "STS is down: no new credential"
        );
        assert!(
            parse_expiration(&doc) > OffsetDateTime::now_utc(),
            "an expired credential was served: {}",
            doc["Expiration"]
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let (refused_at, body) = refusal;
    // Served to within the engine's 5 s safety margin of the real expiry, not given up early.
    assert!(
        refused_at >= expires - time::Duration::seconds(7),
        "gave up at {refused_at}, the credential lasted until {expires}"
    );
    assert_eq!(body["Code"], "CredentialsUnavailable");
    let message = body["Message"].as_str().unwrap();
    assert!(message.contains("gcp-deploy"), "{message}");
    assert!(
        message.contains("ServiceUnavailable") || message.contains("503"),
        "{message}"
    );
    assert!(w.lab.stats().assume_role_with_web_identity_calls > 1);

    // STS is back: the next request gets a fresh credential.
    w.lab.faults().clear();
    let response = ecs_get(&client, &vars, Some(&token)).await;
    assert_eq!(response.status(), 200, "{}", server.stderr());
    let doc: serde_json::Value = response.json().await.unwrap();
    assert_ne!(doc["AccessKeyId"], key.as_str());
    assert!(parse_expiration(&doc) > OffsetDateTime::now_utc() + time::Duration::seconds(10));
}

/// The ECS endpoint refuses requests without its token (401) or with another (403); the IMDS
/// endpoint refuses GETs without a session (401), bad TTLs (400) and relayed token requests (403).
#[tokio::test(flavor = "multi_thread")]
async fn the_endpoints_refuse_what_ecs_and_imds_refuse() {
    let w = LabWorld::start().await;
    let client = reqwest::Client::new();

    let (_ecs, vars) = serve(&w, &[], ECS_VARS).await;
    assert_eq!(ecs_get(&client, &vars, None).await.status(), 401);
    let wrong = ecs_get(&client, &vars, Some("not-the-token")).await;
    assert_eq!(wrong.status(), 403);
    let body: serde_json::Value = wrong.json().await.unwrap();
    assert_eq!(body["Code"], "AccessDenied");
    let right = ecs_get(
        &client,
        &vars,
        Some(&vars["AWS_CONTAINER_AUTHORIZATION_TOKEN"]),
    )
    .await;
    assert_eq!(right.status(), 200);

    let (_imds, vars) = serve(&w, &["--imds"], &["AWS_EC2_METADATA_SERVICE_ENDPOINT"]).await;
    let base = vars["AWS_EC2_METADATA_SERVICE_ENDPOINT"].trim_end_matches('/');
    let creds = format!("{base}/latest/meta-data/iam/security-credentials/gcp-deploy");
    assert_eq!(client.get(&creds).send().await.unwrap().status(), 401);
    let token_url = format!("{base}/latest/api/token");
    for ttl in ["0", "21601", "x"] {
        let response = client
            .put(&token_url)
            .header("X-aws-ec2-metadata-token-ttl-seconds", ttl)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "ttl {ttl}");
    }
    let relayed = client
        .put(&token_url)
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .header("X-Forwarded-For", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(relayed.status(), 403);
    let session = client
        .put(&token_url)
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc: serde_json::Value = client
        .get(&creds)
        .header("X-aws-ec2-metadata-token", &session)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["Code"], "Success");
    assert!(doc["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
}

/// With --auth-token-file the token lives in a 0600 file (kept across restarts) and the aws CLI,
/// reading it through AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, gets the role.
#[tokio::test(flavor = "multi_thread")]
async fn auth_token_file_is_private_reused_and_works_with_the_aws_cli() {
    let w = LabWorld::start().await;
    let file = w.home.home().join("ecs-auth-token");
    let file_arg = file.display().to_string();
    let expect = [
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    ];
    let (first_server, vars) = serve(&w, &["--auth-token-file", &file_arg], &expect).await;
    assert!(!vars.contains_key("AWS_CONTAINER_AUTHORIZATION_TOKEN"));
    assert_eq!(vars["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"], file_arg);
    assert_private(&file);
    let token = std::fs::read_to_string(&file).unwrap();
    assert!(token.len() >= 32 && !token.contains('\n'));

    let mut cmd = w.home.aws(["sts", "get-caller-identity"]);
    cmd.envs(&vars);
    let out = w.run(cmd).await;
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.json()["Arn"]
        .as_str()
        .unwrap()
        .starts_with("arn:aws:sts::123456789012:assumed-role/gcp-deploy/"));

    // A restart keeps the token the file holds.
    drop(first_server);
    let (_second, _) = serve(&w, &["--auth-token-file", &file_arg], &expect).await;
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
}

/// --metrics-listen serves Prometheus counters per profile and /healthz.
#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_refreshes_per_profile() {
    let w = LabWorld::start().await;
    let (mut server, vars) = serve(&w, &["--metrics-listen", "127.0.0.1:0"], ECS_VARS).await;
    let metrics_line = server.line_after("# metrics: ", STARTUP).await;
    let mut urls = metrics_line.split_whitespace();
    let (metrics_url, health_url) = (urls.next().unwrap(), urls.next().unwrap());
    let client = reqwest::Client::new();
    let token = vars["AWS_CONTAINER_AUTHORIZATION_TOKEN"].clone();
    assert_eq!(ecs_get(&client, &vars, Some(&token)).await.status(), 200);
    let text = client
        .get(metrics_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let profile = w.role("gcp-deploy");
    assert!(
        text.contains(&format!(
            "keyless_refreshes_total{{profile=\"{profile}\"}} 1"
        )),
        "{text}"
    );
    assert!(text.contains("keyless_credential_expiry_seconds"), "{text}");
    let health = client.get(health_url).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.text().await.unwrap().contains("ok"));
}

/// When the upstream refuses, /healthz answers 503 with the profile's state word, and the
/// upstream's error text (which the ECS endpoint gives its caller) is not in it: /healthz may be
/// exposed to a whole cluster network, the text stays in the log.
#[tokio::test(flavor = "multi_thread")]
async fn healthz_reports_state_not_the_upstream_error() {
    let w = LabWorld::start().await;
    let role = w.role("nobody-may-assume-this");
    let mut server = w.spawn_keyless(
        &[
            "aws",
            "serve",
            "--role-arn",
            &role,
            "--metrics-listen",
            "127.0.0.1:0",
        ],
        &[],
    );
    let vars = server.exports(ECS_VARS, STARTUP).await;
    let metrics_line = server.line_after("# metrics: ", STARTUP).await;
    let health_url = metrics_line.split_whitespace().nth(1).unwrap().to_string();
    let client = reqwest::Client::new();
    let token = vars["AWS_CONTAINER_AUTHORIZATION_TOKEN"].clone();
    let refused = ecs_get(&client, &vars, Some(&token)).await;
    assert_ne!(refused.status(), 200);
    let doc: serde_json::Value = refused.json().await.unwrap();
    let message = doc["Message"].as_str().unwrap().to_string();
    assert!(message.len() > 20, "{doc}");
    let health = client.get(&health_url).send().await.unwrap();
    assert_eq!(health.status(), 503);
    let body = health.text().await.unwrap();
    assert!(body.starts_with(&format!("{role}: failing")), "{body}");
    assert!(!body.contains(&message), "{body}");
    for line in message.lines().filter(|l| l.len() > 12) {
        assert!(!body.contains(line.trim()), "{line:?} in {body}");
    }
}

/// --ready-file holds the export lines (0600, written before they are printed) and goes away with
/// a clean SIGTERM shutdown, as for `gcp serve` and `keyless serve`.
#[tokio::test(flavor = "multi_thread")]
async fn ready_file_holds_the_exports_and_is_removed_on_shutdown() {
    let w = LabWorld::start().await;
    let ready = w.home.home().join("ecs-ready.env");
    let (mut server, vars) = serve(&w, &["--ready-file", ready.to_str().unwrap()], ECS_VARS).await;
    let text = std::fs::read_to_string(&ready).unwrap();
    for (key, value) in &vars {
        assert!(text.contains(&format!("export {key}={value}")), "{text}");
    }
    assert_private(&ready);
    let (status, stderr) =
        tokio::task::spawn_blocking(move || server.terminate(Duration::from_secs(10)))
            .await
            .unwrap();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(!ready.exists(), "the ready file outlived the server");
}

/// boto3 (only the exported ECS variables) as the role that trusts a Kubernetes service account,
/// served by `keyless aws serve --token-source k8s:PATH` from the projected token the lab's
/// cluster wrote (its own issuer and key, `aud` an array).
#[tokio::test(flavor = "multi_thread")]
async fn boto3_through_the_ecs_endpoint_with_a_kubernetes_token() {
    let w = LabWorld::start().await;
    let path = w.home.home().join("projected-token");
    w.lab
        .write_kubernetes_token(&path, "default", "deployer")
        .unwrap();
    let role = w.role("k8s-deploy");
    let source = format!("k8s:{}", path.display());
    let mut server = w.spawn_keyless(
        &[
            "aws",
            "serve",
            "--role-arn",
            &role,
            "--token-source",
            &source,
        ],
        &[],
    );
    let vars = server.exports(ECS_VARS, STARTUP).await;
    let mut python = w.home.command(support::venv::bin("python"));
    python.envs(&vars).args([
        "-c",
        "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])",
    ]);
    let out = w.run(python).await;
    assert_eq!(out.code(), 0, "{out}\n{}", server.stderr());
    assert!(
        out.stdout
            .trim()
            .starts_with("arn:aws:sts::123456789012:assumed-role/k8s-deploy/"),
        "{out}"
    );
    assert_eq!(w.lab.stats().assume_role_with_web_identity_successes, 1);
}

/// In a GitHub Actions job, `keyless aws token-file --token-source github` keeps a web identity
/// token file that boto3 (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN) trades at the lab's STS
/// itself; the refresh engine mints a new GitHub token before the old one expires (10-second
/// tokens here), so the file never holds an expired one.
#[tokio::test(flavor = "multi_thread")]
async fn boto3_assumes_the_role_from_a_github_token_file() {
    let mut config = LabConfig::demo();
    config.github_actions.as_mut().unwrap().token_lifetime = Duration::from_secs(10);
    let w = LabWorld::start_with(config).await;
    let role = w.role("github-deploy");
    let path = w.home.home().join("github-token");
    let path_arg = path.display().to_string();
    let job = w.lab.github_actions_env();
    let job: Vec<(&str, &str)> = job.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut keeper = w.spawn_keyless(
        &[
            "aws",
            "token-file",
            "--path",
            &path_arg,
            "--role-arn",
            &role,
            "--token-source",
            "github",
        ],
        &job,
    );
    let vars = keeper
        .exports(&["AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"], STARTUP)
        .await;
    assert_private(&path);
    let boto3 = |vars: HashMap<String, String>| {
        let mut python = w.home.command(support::venv::bin("python"));
        python.envs(vars).args([
            "-c",
            "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])",
        ]);
        w.run(python)
    };
    let out = boto3(vars.clone()).await;
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stdout
            .trim()
            .starts_with("arn:aws:sts::123456789012:assumed-role/github-deploy/"),
        "{out}"
    );
    let first = std::fs::read_to_string(&path).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&path).unwrap() == first {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the GitHub token was never minted again\n{}",
            keeper.stderr()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(w.lab.github_tokens_minted() >= 2);
    let out = boto3(vars).await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(w.lab.stats().assume_role_with_web_identity_successes, 2);
}
