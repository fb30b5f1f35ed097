//! `keyless::source::aws` finds the credentials an AWS SDK would find, in the SDKs' order:
//! environment, profile (static keys, `role_arn` + `source_profile`), web identity token file,
//! container endpoint, IMDSv2; AssumeRole calls go to moto through `AWS_ENDPOINT_URL_STS` /
//! `AWS_ENDPOINT_URL`, and moto itself confirms (GetCallerIdentity through the aws CLI) that the
//! credentials we return are the identity we claim.
//!
//! **How each case gets a clean environment.** The chain reads the process environment (and
//! `HOME`) at several lazily evaluated moments, on the runtime's threads, and cargo runs tests in
//! parallel threads of one process; mutating the environment there would race (and is `unsafe`
//! in Rust 2024), while a global lock would still leak the developer's own `AWS_*` and `~/.aws`
//! into the cases. So every case runs in a child process: the test binary itself, filtered to
//! the ignored [`child_resolves_and_fetches`] test, started with `env_clear()` plus exactly the
//! variables the case sets (`AwsHome::command`: temp HOME and config files, no inherited AWS_*).
//! The child prints one JSON line with what the library returned; the parent asserts on it. The
//! fake endpoints (container, IMDS) run in the parent, on loopback, for the child to call.

use crate::support;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use keyless::source::aws::{AwsIdentitySource, AwsSourceOptions};
use serde_json::{json, Value};
use support::{expect_success, AwsHome, GoogleIdentity, Moto};

/// moto's default account.
const ACCOUNT: &str = "123456789012";
/// Where nothing listens (the discard port is closed on loopback): a dead endpoint.
const DEAD_ENDPOINT: &str = "http://127.0.0.1:9";
/// The child's own bound on resolve + fetch; a hang fails the case instead of the whole run.
const CHILD_DEADLINE: Duration = Duration::from_secs(60);
/// The name of the child test the parents run.
const CHILD: &str = "child_resolves_and_fetches";

// ---------------------------------------------------------------------------------------------
// The child: resolves and fetches with the options in its environment, prints the outcome.

/// Not a test on its own: the cases below run it in a clean child process (see the module doc).
#[test]
#[ignore = "run by the other tests of this file, each in a clean environment"]
fn child_resolves_and_fetches() {
    let option = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let options = AwsSourceOptions {
        profile: option("CASE_PROFILE_FLAG"),
        region: option("CASE_REGION_FLAG").map(|r| r.parse().expect("a valid --aws-region")),
        assume_role: option("CASE_ASSUME_ROLE_FLAG"),
        assume_role_session_name: option("CASE_SESSION_NAME_FLAG"),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let started = Instant::now();
    let outcome = runtime.block_on(async {
        tokio::time::timeout(CHILD_DEADLINE, async {
            let source = match AwsIdentitySource::resolve(options).await {
                Ok(source) => source,
                Err(err) => return error_json("resolve", &err),
            };
            let resolved_ms = started.elapsed().as_millis();
            match source.fetch_credentials().await {
                Ok(c) => json!({
                    "region": source.region().as_str(),
                    "describe": source.describe(),
                    "debug": format!("{source:?}"),
                    "resolve_ms": resolved_ms,
                    "access_key_id": c.access_key_id,
                    "secret_access_key": c.secret_access_key.expose(),
                    "session_token": c.session_token.as_ref().map(|t| t.expose()),
                    "expiration": c.expiration.map(|e| e.unix_timestamp()),
                }),
                Err(err) => error_json("fetch", &err),
            }
        })
        .await
        .unwrap_or_else(|_| json!({"stage": "timeout", "message": "no answer in time"}))
    });
    let mut outcome = outcome;
    outcome["elapsed_ms"] = json!(started.elapsed().as_millis());
    // On its own line: the harness prints "test NAME ... " before the test's output.
    println!("\nCASE_RESULT {outcome}");
}

fn error_json(stage: &str, err: &keyless::source::aws::AwsSourceError) -> Value {
    let debug = format!("{err:?}");
    let kind: String = debug.chars().take_while(|c| c.is_alphanumeric()).collect();
    json!({"stage": stage, "kind": kind, "message": err.to_string(), "transient": err.is_transient()})
}

// ---------------------------------------------------------------------------------------------
// The parent side: a case is an environment (and flags) for one child run.

/// What one child run returned: credentials and the region, or an error.
#[derive(Debug)]
struct Outcome(Value);

impl Outcome {
    fn ok(&self) -> &Value {
        assert!(
            self.0.get("access_key_id").is_some(),
            "expected credentials, got {:#}",
            self.0
        );
        &self.0
    }

    fn access_key_id(&self) -> &str {
        self.ok()["access_key_id"].as_str().unwrap()
    }

    fn secret(&self) -> &str {
        self.ok()["secret_access_key"].as_str().unwrap()
    }

    /// The error's variant name, its message, and the stage (`resolve` or `fetch`).
    fn error(&self) -> (&str, &str, &str) {
        let kind = self.0["kind"]
            .as_str()
            .unwrap_or_else(|| panic!("expected an error, got {:#}", self.0));
        (
            kind,
            self.0["message"].as_str().unwrap(),
            self.0["stage"].as_str().unwrap(),
        )
    }

    fn elapsed(&self) -> Duration {
        Duration::from_millis(self.0["elapsed_ms"].as_u64().unwrap())
    }

    /// The environment a real AWS client needs to act as these credentials.
    fn as_env(&self) -> Vec<(&'static str, String)> {
        let ok = self.ok();
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID", self.access_key_id().to_string()),
            ("AWS_SECRET_ACCESS_KEY", self.secret().to_string()),
        ];
        if let Some(token) = ok["session_token"].as_str() {
            env.push(("AWS_SESSION_TOKEN", token.to_string()));
        }
        env
    }
}

/// One child run: `home`'s clean environment, minus `unset`, plus `env`.
fn run_case(home: &AwsHome, unset: &[&str], env: &[(&str, String)]) -> Outcome {
    let mut command = home.command(std::env::current_exe().expect("test binary"));
    // No `--exact`: the test's full name carries the module path of the binary it is in; the
    // name is unique, and `--ignored` runs nothing else.
    command.args([CHILD, "--ignored", "--nocapture", "--test-threads=1"]);
    for name in unset {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    let out = expect_success(&mut command);
    let line = out
        .stdout
        .lines()
        .find_map(|l| l.split_once("CASE_RESULT ").map(|(_, json)| json))
        .unwrap_or_else(|| panic!("the child printed no result:\n{out}"));
    let value: Value = serde_json::from_str(line).expect("child JSON");
    assert_ne!(value["stage"], "timeout", "the child hung:\n{out}");
    Outcome(value)
}

/// The caller moto sees for these credentials: `aws sts get-caller-identity` signed with them.
fn caller_arn(home: &AwsHome, credentials: &Outcome) -> String {
    let mut command = home.aws(["sts", "get-caller-identity"]);
    for (name, value) in credentials.as_env() {
        command.env(name, value);
    }
    let out = expect_success(&mut command);
    out.json()["Arn"].as_str().expect("Arn").to_string()
}

/// An IAM user with an access key in moto: `(user ARN, key id, secret)`.
fn create_user(home: &AwsHome, name: &str) -> (String, String, String) {
    let admin = |args: &[&str]| {
        let mut command = home.aws(args);
        command
            .env("AWS_ACCESS_KEY_ID", "AKIAKEYLESSADMIN0000")
            .env("AWS_SECRET_ACCESS_KEY", "admin-secret");
        expect_success(&mut command).json()
    };
    let user = admin(&["iam", "create-user", "--user-name", name]);
    let key = admin(&["iam", "create-access-key", "--user-name", name]);
    (
        user["User"]["Arn"].as_str().unwrap().into(),
        key["AccessKey"]["AccessKeyId"].as_str().unwrap().into(),
        key["AccessKey"]["SecretAccessKey"].as_str().unwrap().into(),
    )
}

/// Creates roles in moto (any trust policy: moto does not evaluate it); returns their ARNs.
fn create_roles(moto: &Moto, names: &[&str]) -> BTreeMap<String, String> {
    let trust = json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}]
    });
    let roles: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "trust_policy": trust, "policy": null}))
        .collect();
    let created = moto.create(&json!({ "roles": roles }));
    names
        .iter()
        .map(|n| {
            let arn = created["roles"][n].as_str().expect("role ARN").to_string();
            assert_eq!(arn, format!("arn:aws:iam::{ACCOUNT}:role/{n}"));
            (n.to_string(), arn)
        })
        .collect()
}

fn assumed_role_arn(role: &str, session: &str) -> String {
    format!("arn:aws:sts::{ACCOUNT}:assumed-role/{role}/{session}")
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn borrowed(pairs: &[(String, String)]) -> Vec<(&str, String)> {
    pairs.iter().map(|(k, v)| (k.as_str(), v.clone())).collect()
}

// ---------------------------------------------------------------------------------------------
// Fake container and instance-metadata endpoints, on loopback, in the parent.

/// An HTTP server on a loopback port, on its own runtime, for the lifetime of the value.
struct FakeEndpoint {
    addr: SocketAddr,
    _runtime: tokio::runtime::Runtime,
}

impl FakeEndpoint {
    fn start(app: Router) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().unwrap();
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve");
        });
        Self {
            addr,
            _runtime: runtime,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

fn expiration_in_an_hour() -> (String, i64) {
    let at = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let text = keyless::credentials::format_expiration(at);
    let parsed =
        time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339).unwrap();
    (text, parsed.unix_timestamp())
}

/// The ECS / EKS Pod Identity credentials endpoint: answers only to the right `Authorization`.
struct ContainerState {
    token: String,
    expiration: String,
    refused: AtomicUsize,
}

fn container_endpoint(token: &str) -> (FakeEndpoint, Arc<ContainerState>, i64) {
    let (expiration, expires_at) = expiration_in_an_hour();
    let state = Arc::new(ContainerState {
        token: token.into(),
        expiration,
        refused: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/v1/credentials", get(container_credentials))
        .with_state(state.clone());
    (FakeEndpoint::start(app), state, expires_at)
}

async fn container_credentials(
    State(state): State<Arc<ContainerState>>,
    headers: HeaderMap,
) -> Response {
    if headers.get("authorization").map(|v| v.as_bytes()) != Some(state.token.as_bytes()) {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::UNAUTHORIZED, "bad authorization token").into_response();
    }
    Json(json!({
        "AccessKeyId": "ASIACONTAINER0000001",
        "SecretAccessKey": "container-secret",
        "Token": "container-session-token",
        "Expiration": state.expiration,
        "AccountId": ACCOUNT,
    }))
    .into_response()
}

/// IMDSv2: a session token from `PUT /latest/api/token` (TTL header required), then every GET
/// must carry it; IMDSv1-style requests are refused and counted.
struct ImdsState {
    expiration: String,
    tokens_issued: AtomicUsize,
    refused: AtomicUsize,
}

const IMDS_TOKEN: &str = "imds-session-token";
const IMDS_ROLE: &str = "keyless-instance-role";
const IMDS_REGION: &str = "eu-west-3";

fn imds_endpoint() -> (FakeEndpoint, Arc<ImdsState>, i64) {
    let (expiration, expires_at) = expiration_in_an_hour();
    let state = Arc::new(ImdsState {
        expiration,
        tokens_issued: AtomicUsize::new(0),
        refused: AtomicUsize::new(0),
    });
    let app = Router::new()
        .route("/latest/api/token", put(imds_token))
        .route("/latest/meta-data/{*path}", get(imds_metadata))
        .with_state(state.clone());
    (FakeEndpoint::start(app), state, expires_at)
}

async fn imds_token(State(state): State<Arc<ImdsState>>, headers: HeaderMap) -> Response {
    let ttl = headers
        .get("x-aws-ec2-metadata-token-ttl-seconds")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    match ttl {
        Some(ttl) if (1..=21600).contains(&ttl) => {
            state.tokens_issued.fetch_add(1, Ordering::SeqCst);
            (
                [("x-aws-ec2-metadata-token-ttl-seconds", ttl.to_string())],
                IMDS_TOKEN,
            )
                .into_response()
        }
        _ => (StatusCode::BAD_REQUEST, "missing or invalid TTL").into_response(),
    }
}

async fn imds_metadata(
    State(state): State<Arc<ImdsState>>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    if headers
        .get("x-aws-ec2-metadata-token")
        .map(|v| v.as_bytes())
        != Some(IMDS_TOKEN.as_bytes())
    {
        state.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match path.as_str() {
        "placement/region" => IMDS_REGION.into_response(),
        "iam/security-credentials/" | "iam/security-credentials" => IMDS_ROLE.into_response(),
        p if p == format!("iam/security-credentials/{IMDS_ROLE}") => Json(json!({
            "Code": "Success",
            "LastUpdated": "2026-01-01T00:00:00Z",
            "Type": "AWS-HMAC",
            "AccessKeyId": "ASIAINSTANCE00000001",
            "SecretAccessKey": "instance-secret",
            "Token": "instance-session-token",
            "Expiration": state.expiration,
        }))
        .into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.

/// Keys in the environment are returned as they are, and moto knows them as the IAM user.
#[test]
fn environment_keys_are_the_identity() {
    let moto = Moto::start();
    let home = AwsHome::new(&moto.endpoint());
    let (user_arn, key_id, secret) = create_user(&home, "ci-env");
    let out = run_case(
        &home,
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", key_id.clone()),
            ("AWS_SECRET_ACCESS_KEY", secret.clone()),
        ],
    );
    assert_eq!(out.access_key_id(), key_id);
    assert_eq!(out.secret(), secret);
    assert!(out.ok()["session_token"].is_null(), "{:#}", out.0);
    assert!(
        out.ok()["expiration"].is_null(),
        "long-lived keys do not expire"
    );
    assert_eq!(out.ok()["region"], "us-east-1", "AWS_DEFAULT_REGION");
    assert_eq!(caller_arn(&home, &out), user_arn);
}

/// `--aws-profile` selects a profile with static keys, and its `region`; `AWS_PROFILE` does
/// the same when the flag is absent, and the flag wins over it; a `credential_process` profile
/// runs its command.
#[test]
fn a_profile_with_static_keys_by_flag_or_aws_profile() {
    let moto = Moto::start();
    let home = AwsHome::new(&moto.endpoint());
    let (user_arn, key_id, secret) = create_user(&home, "ci-profile");
    home.add_static_profile("static", &key_id, &secret, "");
    home.add_static_profile("other", "AKIAOTHER00000000000", "other-secret", "");
    home.append_config("[profile regional]\nregion = ap-south-2\n");
    std::fs::OpenOptions::new()
        .append(true)
        .open(home.credentials_file())
        .and_then(|mut f| {
            use std::io::Write;
            writeln!(
                f,
                "[regional]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}"
            )
        })
        .expect("credentials file");

    let by_flag = run_case(
        &home,
        &[],
        &[
            ("CASE_PROFILE_FLAG", "static".into()),
            ("AWS_PROFILE", "other".into()),
        ],
    );
    assert_eq!(
        by_flag.access_key_id(),
        key_id,
        "the flag beats AWS_PROFILE"
    );
    assert_eq!(caller_arn(&home, &by_flag), user_arn);
    assert!(
        by_flag.ok()["describe"]
            .as_str()
            .unwrap()
            .contains("profile=static"),
        "{:#}",
        by_flag.0
    );

    let by_env = run_case(&home, &[], &[("AWS_PROFILE", "other".into())]);
    assert_eq!(by_env.access_key_id(), "AKIAOTHER00000000000");

    // A credential_process profile: the SDK runs the command and parses its JSON.
    let (expiration, expires_at) = expiration_in_an_hour();
    let script = home.write_token(
        "credential-process.sh",
        &format!(
            "printf '%s' '{}'\n",
            json!({
                "Version": 1,
                "AccessKeyId": "ASIAPROCESS000000001",
                "SecretAccessKey": "process-secret",
                "SessionToken": "process-session-token",
                "Expiration": expiration,
            })
        ),
    );
    home.append_config(&format!(
        "[profile process]\ncredential_process = sh {}\n",
        script.display()
    ));
    let process = run_case(&home, &[], &[("CASE_PROFILE_FLAG", "process".into())]);
    assert_eq!(process.access_key_id(), "ASIAPROCESS000000001");
    assert_eq!(process.secret(), "process-secret");
    assert_eq!(process.ok()["session_token"], "process-session-token");
    assert_eq!(process.ok()["expiration"], expires_at);

    // With no region in the environment, the profile's `region` is used.
    let regional = run_case(
        &home,
        &["AWS_DEFAULT_REGION"],
        &[("CASE_PROFILE_FLAG", "regional".into())],
    );
    assert_eq!(regional.ok()["region"], "ap-south-2");
    assert_eq!(regional.access_key_id(), key_id);
}

/// A `role_arn` + `source_profile` profile: aws-config's own STS client assumes the role at
/// moto, reached through `AWS_ENDPOINT_URL_STS` alone (no `AWS_ENDPOINT_URL`).
#[test]
fn a_role_arn_profile_assumes_the_role_through_aws_endpoint_url_sts() {
    let moto = Moto::start();
    let home = AwsHome::new(&moto.endpoint());
    let roles = create_roles(&moto, &["keyless-chained"]);
    let (_, key_id, secret) = create_user(&home, "ci-source");
    home.add_static_profile("source", &key_id, &secret, "");
    home.append_config(&format!(
        "[profile chained]\nrole_arn = {}\nsource_profile = source\nrole_session_name = chained-session\nregion = us-east-1\n",
        roles["keyless-chained"]
    ));

    let out = run_case(
        &home,
        &["AWS_ENDPOINT_URL"],
        &[
            ("CASE_PROFILE_FLAG", "chained".into()),
            ("AWS_ENDPOINT_URL_STS", moto.endpoint()),
        ],
    );
    assert!(out.access_key_id().starts_with("ASIA"), "{:#}", out.0);
    assert!(out.ok()["session_token"].is_string(), "{:#}", out.0);
    assert!(
        out.ok()["expiration"].is_i64(),
        "the expiry is carried over"
    );
    assert_eq!(
        caller_arn(&home, &out),
        assumed_role_arn("keyless-chained", "chained-session")
    );
}

/// EKS IRSA: `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN` + `AWS_ROLE_SESSION_NAME` become
/// an AssumeRoleWithWebIdentity at moto (through `AWS_ENDPOINT_URL`).
#[test]
fn the_web_identity_token_file_assumes_the_role() {
    let moto = Moto::start();
    let home = AwsHome::new(&moto.endpoint());
    let roles = create_roles(&moto, &["keyless-irsa"]);
    let token_file = home.write_token("irsa-token", &GoogleIdentity::deployer().id_token());

    let out = run_case(
        &home,
        &[],
        &[
            (
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                token_file.display().to_string(),
            ),
            ("AWS_ROLE_ARN", roles["keyless-irsa"].clone()),
            ("AWS_ROLE_SESSION_NAME", "irsa-session".into()),
        ],
    );
    assert!(out.ok()["expiration"].is_i64(), "{:#}", out.0);
    assert_eq!(
        caller_arn(&home, &out),
        assumed_role_arn("keyless-irsa", "irsa-session")
    );
}

/// `--assume-role`: the base identity (env keys) assumes the role at moto, via
/// `AWS_ENDPOINT_URL_STS`, with our session name; the default session name is `keyless`.
#[test]
fn assume_role_goes_from_the_base_identity_to_the_role() {
    let moto = Moto::start();
    let home = AwsHome::new(&moto.endpoint());
    let roles = create_roles(&moto, &["keyless-target"]);
    let (_, key_id, secret) = create_user(&home, "ci-base");
    let base = [
        ("AWS_ACCESS_KEY_ID", key_id.clone()),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_ENDPOINT_URL_STS", moto.endpoint()),
        ("CASE_ASSUME_ROLE_FLAG", roles["keyless-target"].clone()),
    ];

    let mut named = base.to_vec();
    named.push(("CASE_SESSION_NAME_FLAG", "assumed-by-test".into()));
    let out = run_case(&home, &["AWS_ENDPOINT_URL"], &named);
    assert_ne!(
        out.access_key_id(),
        key_id,
        "the role's keys, not the base's"
    );
    assert!(out.ok()["expiration"].is_i64(), "{:#}", out.0);
    assert_eq!(
        caller_arn(&home, &out),
        assumed_role_arn("keyless-target", "assumed-by-test")
    );
    assert!(
        out.ok()["describe"].as_str().unwrap().ends_with(&format!(
            "assume-role={} session=assumed-by-test",
            roles["keyless-target"]
        )),
        "{:#}",
        out.0
    );

    let default_session = run_case(&home, &["AWS_ENDPOINT_URL"], &base);
    assert_eq!(
        caller_arn(&home, &default_session),
        assumed_role_arn("keyless-target", "keyless")
    );
}

/// With every source configured at once, the chain takes them in the SDKs' order; removing
/// the winner each time shows the next: env, profile, web identity, container, IMDS. The
/// container endpoint gets the token from `AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`; IMDS is
/// spoken as v2 only, and gives the region too (one session token for region + credentials).
#[test]
fn the_chain_takes_sources_in_the_sdk_order() {
    let moto = Moto::start();
    let home = AwsHome::new(&moto.endpoint());
    let roles = create_roles(&moto, &["keyless-precedence"]);
    let (container, container_state, container_expiry) = container_endpoint("Bearer pod-token");
    let (imds, imds_state, imds_expiry) = imds_endpoint();
    let auth_file = home.write_token("container-auth", "Bearer pod-token");
    let web_token = home.write_token("web-token", &GoogleIdentity::deployer().id_token());
    home.add_static_profile("default", "AKIAPROFILE000000000", "profile-secret", "");

    let env_keys = env(&[
        ("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00000"),
        ("AWS_SECRET_ACCESS_KEY", "env-secret"),
    ]);
    let web_identity = vec![
        (
            "AWS_WEB_IDENTITY_TOKEN_FILE".to_string(),
            web_token.display().to_string(),
        ),
        (
            "AWS_ROLE_ARN".to_string(),
            roles["keyless-precedence"].clone(),
        ),
        ("AWS_ROLE_SESSION_NAME".to_string(), "web".to_string()),
    ];
    let container_env = vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".to_string(),
            container.url("/v1/credentials"),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE".to_string(),
            auth_file.display().to_string(),
        ),
    ];
    let imds_env = env(&[("AWS_EC2_METADATA_SERVICE_ENDPOINT", &imds.url(""))]);

    let with = |parts: &[&Vec<(String, String)>]| -> Vec<(String, String)> {
        parts.iter().flat_map(|p| p.iter().cloned()).collect()
    };
    let all = with(&[&env_keys, &web_identity, &container_env, &imds_env]);
    let imds_on = ["AWS_EC2_METADATA_DISABLED"];

    let out = run_case(&home, &imds_on, &borrowed(&all));
    assert_eq!(out.access_key_id(), "AKIAENVIRONMENT00000", "env first");

    let no_env = with(&[&web_identity, &container_env, &imds_env]);
    let out = run_case(&home, &imds_on, &borrowed(&no_env));
    assert_eq!(
        out.access_key_id(),
        "AKIAPROFILE000000000",
        "then the profile"
    );

    // No profile files at all from here on.
    let no_files = [
        "AWS_EC2_METADATA_DISABLED",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
    ];
    std::fs::remove_file(home.credentials_file()).unwrap();
    std::fs::remove_file(home.config_file()).unwrap();
    let out = run_case(&home, &no_files, &borrowed(&no_env));
    assert_eq!(
        caller_arn(&home, &out),
        assumed_role_arn("keyless-precedence", "web"),
        "then the web identity token file"
    );

    let container_and_imds = with(&[&container_env, &imds_env]);
    let out = run_case(&home, &no_files, &borrowed(&container_and_imds));
    assert_eq!(
        out.access_key_id(),
        "ASIACONTAINER0000001",
        "then the container"
    );
    assert_eq!(out.secret(), "container-secret");
    assert_eq!(out.ok()["session_token"], "container-session-token");
    assert_eq!(out.ok()["expiration"], container_expiry);
    assert_eq!(container_state.refused.load(Ordering::SeqCst), 0);

    // Last, IMDS; with no region anywhere else, the region comes from IMDS too.
    let mut no_region = no_files.to_vec();
    no_region.push("AWS_DEFAULT_REGION");
    let out = run_case(&home, &no_region, &borrowed(&imds_env));
    assert_eq!(out.access_key_id(), "ASIAINSTANCE00000001", "then IMDS");
    assert_eq!(out.secret(), "instance-secret");
    assert_eq!(out.ok()["session_token"], "instance-session-token");
    assert_eq!(out.ok()["expiration"], imds_expiry);
    assert_eq!(out.ok()["region"], IMDS_REGION);
    assert_eq!(
        imds_state.refused.load(Ordering::SeqCst),
        0,
        "every metadata GET carried the IMDSv2 token"
    );
    assert_eq!(
        imds_state.tokens_issued.load(Ordering::SeqCst),
        1,
        "region and credentials share one IMDS session token"
    );
}

/// A container endpoint that refuses our token is a failure of that source, which stops the
/// chain (IMDS behind it is not asked), as in the SDKs; the error names the source and the fix.
#[test]
fn a_refused_container_token_is_a_container_error() {
    let home = AwsHome::new(DEAD_ENDPOINT);
    let (container, state, _) = container_endpoint("Bearer right");
    let auth_file = home.write_token("container-auth", "Bearer wrong");
    let out = run_case(
        &home,
        &[],
        &[
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                container.url("/v1/credentials"),
            ),
            (
                "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
                auth_file.display().to_string(),
            ),
        ],
    );
    let (kind, message, stage) = out.error();
    eprintln!("{message}");
    assert_eq!((kind, stage), ("Provider", "fetch"), "{message}");
    assert!(
        message.contains("container credentials endpoint"),
        "{message}"
    );
    assert!(
        message.contains("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
        "{message}"
    );
    assert!(
        !message.contains("Bearer wrong"),
        "the token leaked: {message}"
    );
    assert!(state.refused.load(Ordering::SeqCst) >= 1);
}

/// Nothing configured, IMDS disabled or dead: `NoCredentials` lists every source with the fix,
/// and comes quickly (the bound guards against a retry storm against a dead IMDS).
#[test]
fn no_credentials_anywhere_lists_what_was_tried_quickly() {
    let home = AwsHome::new(DEAD_ENDPOINT);
    for imds in [
        vec![("AWS_EC2_METADATA_DISABLED", "true".to_string())],
        vec![(
            "AWS_EC2_METADATA_SERVICE_ENDPOINT",
            DEAD_ENDPOINT.to_string(),
        )],
    ] {
        let out = run_case(&home, &["AWS_EC2_METADATA_DISABLED"], &imds);
        let (kind, message, stage) = out.error();
        assert_eq!((kind, stage), ("NoCredentials", "fetch"), "{message}");
        for source in [
            "environment variables",
            "shared config profile \"default\"",
            "web identity token file",
            "container credentials endpoint",
            "EC2 instance metadata",
            "AWS_ACCESS_KEY_ID",
            "--aws-profile",
        ] {
            assert!(message.contains(source), "{source} missing:\n{message}");
        }
        let config_file = home.config_file().display().to_string();
        assert!(
            message.contains(&format!(
                "no profile \"default\" with credentials in {config_file}"
            )),
            "the profile reason names the file looked at:\n{message}"
        );
        assert!(!out.0["transient"].as_bool().unwrap(), "{message}");
        assert!(
            out.elapsed() < Duration::from_secs(5),
            "took {:?} with {imds:?}:\n{message}",
            out.elapsed()
        );
    }
}

/// No region in flags, environment, profile or (disabled) IMDS: `NoRegion` at resolve, naming
/// the flag; an explicit `--aws-region` needs nothing else.
#[test]
fn a_missing_region_is_an_error_that_names_the_flag() {
    let home = AwsHome::new(DEAD_ENDPOINT);
    let keys = [
        ("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00000".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "env-secret".to_string()),
    ];
    let out = run_case(&home, &["AWS_DEFAULT_REGION"], &keys);
    let (kind, message, stage) = out.error();
    assert_eq!((kind, stage), ("NoRegion", "resolve"), "{message}");
    assert!(message.contains("--aws-region"), "{message}");

    let mut with_flag = keys.to_vec();
    with_flag.push(("CASE_REGION_FLAG", "sa-east-1".into()));
    let out = run_case(&home, &["AWS_DEFAULT_REGION"], &with_flag);
    assert_eq!(out.ok()["region"], "sa-east-1");
    assert!(
        !out.ok()["debug"].as_str().unwrap().contains("env-secret"),
        "{:#}",
        out.0
    );
}

/// A region from the environment becomes part of the STS host the subject token is signed for,
/// so one that is not a host label (here one that would move the host elsewhere) is refused at
/// resolve, naming where regions come from.
#[test]
fn a_region_that_is_not_a_host_label_is_refused() {
    let home = AwsHome::new(DEAD_ENDPOINT);
    let case = [
        ("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT00000".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "env-secret".to_string()),
        ("AWS_REGION", "x.evil.example/#".to_string()),
    ];
    let out = run_case(&home, &["AWS_DEFAULT_REGION"], &case);
    let (kind, message, stage) = out.error();
    assert_eq!((kind, stage), ("InvalidRegion", "resolve"), "{message}");
    assert!(
        message.contains("\"x.evil.example/#\" is not an AWS region"),
        "{message}"
    );
    assert!(message.contains("AWS_REGION"), "{message}");
}

/// With moto enforcing IAM, a base identity without `sts:AssumeRole` is refused: the error is
/// `AssumeRoleFailed`, names the role and the base source, says what to grant, and is final.
#[test]
fn a_refused_assume_role_says_what_to_grant() {
    let moto = Moto::start();
    let home = AwsHome::new(&moto.endpoint());
    let roles = create_roles(&moto, &["keyless-forbidden"]);
    let (_, key_id, secret) = create_user(&home, "ci-powerless");
    moto.reset_auth(0);
    let out = run_case(
        &home,
        &[],
        &[
            ("AWS_ACCESS_KEY_ID", key_id),
            ("AWS_SECRET_ACCESS_KEY", secret.clone()),
            ("CASE_ASSUME_ROLE_FLAG", roles["keyless-forbidden"].clone()),
        ],
    );
    let (kind, message, stage) = out.error();
    eprintln!("{message}");
    assert_eq!((kind, stage), ("AssumeRoleFailed", "fetch"), "{message}");
    assert!(message.contains(&roles["keyless-forbidden"]), "{message}");
    assert!(message.contains("environment variables"), "{message}");
    assert!(message.contains("sts:AssumeRole"), "{message}");
    assert!(!message.contains(&secret), "the secret leaked: {message}");
    assert!(!out.0["transient"].as_bool().unwrap(), "{message}");
}
