//! AWS → GCP: the real `keyless` binary, with the AWS identity from each place AWS workloads get
//! it (environment, profile with `role_arn`, `--assume-role`, web identity file, container
//! endpoint, IMDSv2), against the lab. The lab's Google STS verifies the SigV4 signature of the
//! subject token with the secret the lab's AWS side issued, applies the provider's attribute
//! condition, and its IAM checks the workloadIdentityUser binding; the token is then used on a
//! stand-in Google API. google-auth, loading `keyless gcp config`'s file, refreshes against it too.

use crate::support;

use std::time::Duration;

use keyless::credentials::AwsCredentials;
use serde_json::Value;
use support::{CommandOutput, LabWorld, UnreadRoots};

const COPYCAT: &str = "copycat@keyless-lab.iam.gserviceaccount.com";
const DEPLOYER: &str = "deployer@keyless-lab.iam.gserviceaccount.com";
const EKS_POD: &str = "eks-pod@keyless-lab.iam.gserviceaccount.com";
const WORKLOAD_ROLE: &str = "arn:aws:iam::123456789012:role/aws-workload";

impl LabWorld {
    /// `keyless gcp ARGS --audience <the lab's AWS provider>` with extra environment.
    async fn gcp(&self, args: &[&str], env: &[(&str, String)]) -> CommandOutput {
        let audience = self.lab.workload_identity_audience();
        // gcp SUBCOMMAND --audience AUD REST...: before any `--`.
        let mut all: Vec<&str> = vec!["gcp", args[0], "--audience", &audience];
        all.extend_from_slice(&args[1..]);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        self.keyless_env(&all, &env).await
    }

    /// Lists the lab project's buckets with `token` on the storage stand-in: proves the token
    /// is one Google would accept.
    async fn storage_status(&self, token: &str) -> u16 {
        reqwest::Client::new()
            .get(format!(
                "{}/storage/v1/b?project=keyless-lab",
                self.lab.google_apis_url()
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    fn workload_session(&self) -> AwsCredentials {
        self.lab
            .issue_role_credentials("aws-workload", "app", Duration::from_secs(3600))
    }
}

/// Temporary role credentials in the environment → federated token → copycat's access token,
/// which a Google API accepts. JSON names the ARN presented and the federated principal.
#[tokio::test(flavor = "multi_thread")]
async fn env_credentials_become_a_service_account_token() {
    let w = LabWorld::start().await;
    let env = support::lab_world::aws_env(&w.workload_session());
    let out = w
        .gcp(
            &["token", "--service-account", COPYCAT, "--format", "json"],
            &env,
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let doc = out.json();
    assert_eq!(doc["service_account"], COPYCAT);
    assert_eq!(
        doc["aws_identity"],
        "arn:aws:sts::123456789012:assumed-role/aws-workload/app"
    );
    assert_eq!(
        doc["federated_principal"],
        "principal://iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/subject/arn:aws:sts::123456789012:assumed-role/aws-workload/app"
    );
    assert!(doc["expires_in"].as_i64().unwrap() > 3000);
    let token = doc["access_token"].as_str().unwrap();
    assert_eq!(w.storage_status(token).await, 200);
    assert_eq!(w.storage_status("not-a-token").await, 401);
    assert_eq!(w.lab.stats().google_sts_exchanges, 1);
}

/// Without `--service-account`, the federated token itself comes out (format token: one line).
#[tokio::test(flavor = "multi_thread")]
async fn federated_token_alone_for_direct_access() {
    let w = LabWorld::start().await;
    let out = w
        .gcp(
            &["token"],
            &support::lab_world::aws_env(&w.workload_session()),
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let token = out.stdout.trim();
    assert_eq!(out.stdout.lines().count(), 1);
    assert_eq!(w.storage_status(token).await, 200);
}

/// A profile with `role_arn` + `source_profile` (static keys of an IAM user): the chain assumes
/// the role at the lab's STS, and that session federates.
#[tokio::test(flavor = "multi_thread")]
async fn profile_with_role_arn_and_source_profile() {
    let w = LabWorld::start().await;
    let user = w.lab.aws_user_credentials("ci-user");
    w.home.add_static_profile(
        "ci",
        &user.access_key_id,
        user.secret_access_key.expose(),
        "",
    );
    w.home.append_config(&format!(
        "[profile app]\nrole_arn = {WORKLOAD_ROLE}\nsource_profile = ci\nrole_session_name = from-profile\nregion = us-east-1\n"
    ));
    let out = w
        .gcp(
            &[
                "token",
                "--aws-profile",
                "app",
                "--service-account",
                COPYCAT,
                "--format",
                "json",
            ],
            &[],
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(
        out.json()["aws_identity"],
        "arn:aws:sts::123456789012:assumed-role/aws-workload/from-profile"
    );
    assert_eq!(w.lab.stats().assume_role_calls, 1);
}

/// `--assume-role` with an IAM user's keys in the environment.
#[tokio::test(flavor = "multi_thread")]
async fn assume_role_first_then_federate() {
    let w = LabWorld::start().await;
    let env = support::lab_world::aws_env(&w.lab.aws_user_credentials("ci-user"));
    let out = w
        .gcp(
            &[
                "token",
                "--assume-role",
                WORKLOAD_ROLE,
                "--service-account",
                COPYCAT,
            ],
            &env,
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(w.storage_status(out.stdout.trim()).await, 200);
}

/// EKS IRSA: a web identity token file and AWS_ROLE_ARN.
#[tokio::test(flavor = "multi_thread")]
async fn web_identity_token_file() {
    let w = LabWorld::start().await;
    let token = w.home.write_token(
        "irsa.jwt",
        &w.lab
            .mint_id_token(EKS_POD, "sts.amazonaws.com", Duration::from_secs(3600)),
    );
    let env = vec![
        ("AWS_WEB_IDENTITY_TOKEN_FILE", token.display().to_string()),
        ("AWS_ROLE_ARN", WORKLOAD_ROLE.to_string()),
        ("AWS_ROLE_SESSION_NAME", "irsa-pod".to_string()),
    ];
    let out = w
        .gcp(
            &["token", "--service-account", COPYCAT, "--format", "json"],
            &env,
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(
        out.json()["aws_identity"],
        "arn:aws:sts::123456789012:assumed-role/aws-workload/irsa-pod"
    );
}

/// ECS / EKS Pod Identity: the container endpoint, authorised by a token file.
#[tokio::test(flavor = "multi_thread")]
async fn container_credentials_endpoint_with_token_file() {
    let w = LabWorld::start().await;
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
    let out = w.gcp(&["token", "--service-account", COPYCAT], &env).await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(w.storage_status(out.stdout.trim()).await, 200);
    assert!(w.lab.stats().aws_metadata_credentials_served >= 1);
}

/// EC2: IMDSv2 gives both the credentials and the region (no region in the environment).
#[tokio::test(flavor = "multi_thread")]
async fn imdsv2_credentials_and_region() {
    let w = LabWorld::start().await;
    let audience = w.lab.workload_identity_audience();
    let mut cmd = w.home.keyless([
        "gcp",
        "token",
        "--audience",
        &audience,
        "--service-account",
        COPYCAT,
    ]);
    w.point_at_lab(&mut cmd, &[]);
    cmd.env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", w.lab.imds_endpoint());
    let out = w.run(cmd).await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(w.storage_status(out.stdout.trim()).await, 200);
}

/// The AWS SDK's client reaches IMDS (and the lab's Google side) over `http://` without
/// building its TLS connector, which would read the roots: `SSL_CERT_FILE` stays unopened.
#[tokio::test(flavor = "multi_thread")]
async fn imds_over_http_never_reads_the_tls_roots() {
    let w = LabWorld::start().await;
    let roots = UnreadRoots::new();
    let audience = w.lab.workload_identity_audience();
    let mut cmd = w.home.keyless([
        "gcp",
        "token",
        "--audience",
        &audience,
        "--service-account",
        COPYCAT,
    ]);
    w.point_at_lab(&mut cmd, &[]);
    cmd.env_remove("AWS_EC2_METADATA_DISABLED")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", w.lab.imds_endpoint())
        .env("SSL_CERT_FILE", roots.path());
    let out = w.run(cmd).await;
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        !roots.was_opened(),
        "the roots were read for http:// endpoints"
    );
}

/// An identity the provider's attribute condition does not admit (the IAM user itself, not the
/// role): refused, exit 3, and the message names the ARN Google saw and the usual cause.
#[tokio::test(flavor = "multi_thread")]
async fn attribute_condition_refusal_names_the_arn() {
    let w = LabWorld::start().await;
    let env = support::lab_world::aws_env(&w.lab.aws_user_credentials("ci-user"));
    let out = w.gcp(&["token", "--service-account", COPYCAT], &env).await;
    assert_eq!(out.code(), 3, "{out}");
    assert!(out.stderr.contains("unauthorized_client"), "{out}");
    assert!(
        out.stderr
            .contains("arn:aws:iam::123456789012:user/ci-user"),
        "{out}"
    );
    assert!(out.stderr.contains("attribute condition"), "{out}");
    assert!(out.stdout.is_empty());
    assert_eq!(w.lab.stats().google_sts_refusals, 1);
}

/// A service account without the workloadIdentityUser binding: IAM refuses, exit 3, and the
/// hint names the binding.
#[tokio::test(flavor = "multi_thread")]
async fn impersonation_without_binding_is_refused() {
    let w = LabWorld::start().await;
    let out = w
        .gcp(
            &["token", "--service-account", DEPLOYER],
            &support::lab_world::aws_env(&w.workload_session()),
        )
        .await;
    assert_eq!(out.code(), 3, "{out}");
    assert!(
        out.stderr.contains("roles/iam.workloadIdentityUser"),
        "{out}"
    );
}

/// A lifetime above one hour needs the org policy; the hint names it.
#[tokio::test(flavor = "multi_thread")]
async fn long_lifetime_without_org_policy_is_refused() {
    let w = LabWorld::start().await;
    let out = w
        .gcp(
            &["token", "--service-account", COPYCAT, "--lifetime", "7200"],
            &support::lab_world::aws_env(&w.workload_session()),
        )
        .await;
    assert_eq!(out.code(), 3, "{out}");
    assert!(
        out.stderr
            .contains("constraints/iam.allowServiceAccountCredentialLifetimeExtension"),
        "{out}"
    );
}

/// Google STS failing with 503 once is retried.
#[tokio::test(flavor = "multi_thread")]
async fn transient_google_sts_failure_is_retried() {
    let w = LabWorld::start().await;
    w.lab.faults().push(keyless::lab::Fault {
        service: keyless::lab::LabService::GoogleApis,
        kind: keyless::lab::FaultKind::Http {
            status: 503,
            body: "backend unavailable".into(),
        },
        times: 1,
        only: Some("/v1/token".into()),
    });
    let out = w
        .gcp(
            &["token"],
            &support::lab_world::aws_env(&w.workload_session()),
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(w.lab.stats().google_sts_exchanges, 1);
}

/// `id-token`: an ID token for copycat with the requested audience.
#[tokio::test(flavor = "multi_thread")]
async fn id_token_for_the_service_account() {
    let w = LabWorld::start().await;
    let out = w
        .gcp(
            &[
                "id-token",
                "--service-account",
                COPYCAT,
                "--target-audience",
                "https://run.example.com",
            ],
            &support::lab_world::aws_env(&w.workload_session()),
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let token = keyless::source::google::IdToken::parse(
        keyless::secret::Secret::new(out.stdout.trim()),
        "test",
    )
    .unwrap();
    assert_eq!(token.claims().aud, "https://run.example.com");
    assert_eq!(token.claims().email.as_deref(), Some(COPYCAT));
}

/// `exec` puts the token in both variables gcloud and the SDKs read and passes the exit code.
#[tokio::test(flavor = "multi_thread")]
async fn exec_passes_the_token_and_exit_code() {
    let w = LabWorld::start().await;
    let script = r#"test -n "$CLOUDSDK_AUTH_ACCESS_TOKEN" && test "$CLOUDSDK_AUTH_ACCESS_TOKEN" = "$GOOGLE_OAUTH_ACCESS_TOKEN" && exit 5"#;
    let out = w
        .gcp(
            &[
                "exec",
                "--service-account",
                COPYCAT,
                "--",
                "sh",
                "-c",
                script,
            ],
            &support::lab_world::aws_env(&w.workload_session()),
        )
        .await;
    assert_eq!(out.code(), 5, "{out}");
}

/// `subject-token` prints the URL-encoded signed request, bound to the audience.
#[tokio::test(flavor = "multi_thread")]
async fn subject_token_is_bound_to_the_audience() {
    let w = LabWorld::start().await;
    let out = w
        .gcp(
            &["subject-token"],
            &support::lab_world::aws_env(&w.workload_session()),
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let json = percent_encoding::percent_decode_str(out.stdout.trim())
        .decode_utf8()
        .unwrap()
        .into_owned();
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        doc["url"],
        "https://sts.us-east-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
    );
    let target = doc["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["key"] == "x-goog-cloud-target-resource")
        .unwrap();
    assert_eq!(target["value"], w.lab.workload_identity_audience());
}

/// google-auth (PyPI), loading the file `keyless gcp config` writes, refreshes against the lab
/// with the workload's credentials in its environment, and its token works on a Google API.
#[tokio::test(flavor = "multi_thread")]
async fn google_auth_refreshes_with_the_generated_config() {
    let w = LabWorld::start().await;
    let config = w.home.home().join("gcp-credentials.json");
    let google = w.lab.google_apis_url();
    let sts = w.lab.google_sts_url();
    let out = w
        .gcp(
            &[
                "config",
                "--service-account",
                COPYCAT,
                "--token-url",
                &sts,
                "--iamcredentials-url",
                &google,
                "--output",
                config.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(written["credential_source"]["environment_id"], "aws1");
    let mut python = w.home.python(
        "google_auth_refresh.py",
        [
            config.to_str().unwrap(),
            &format!("{google}/storage/v1/b?project=keyless-lab"),
        ],
    );
    for (k, v) in support::lab_world::aws_env(&w.workload_session()) {
        python.env(k, v);
    }
    let out = w.run(python).await;
    assert_eq!(out.code(), 0, "{out}");
    let doc = out.json();
    assert_eq!(doc["status"], 200, "{out}");
    assert_eq!(w.lab.stats().google_sts_exchanges, 1);
}

/// `gcp token -v` says what happened: one `exchanged` line naming the AWS identity (where it
/// came from and its access key id), the service account, the expiry, and `request_id=none`
/// (Google's answers carry none); at `-vv` keyless's own steps, in JSON when asked.
#[tokio::test(flavor = "multi_thread")]
async fn verbose_logs_one_line_per_exchange_naming_identity_and_service_account() {
    let w = LabWorld::start().await;
    let session = w.workload_session();
    let env = support::lab_world::aws_env(&session);
    let out = w
        .gcp(
            &[
                "token",
                "-v",
                "--service-account",
                COPYCAT,
                "--format",
                "json",
            ],
            &env,
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("exchanged"))
        .collect();
    assert_eq!(lines.len(), 1, "one exchange, one line: {out}");
    let line = lines[0];
    for want in [
        "upstream=google-sts+iamcredentials".to_string(),
        format!("access_key_id={}", session.access_key_id),
        format!("role={COPYCAT}"),
        "request_id=none".to_string(),
        "expires_at=20".to_string(),
        "duration_ms=".to_string(),
    ] {
        assert!(line.contains(&want), "{want} missing: {line}");
    }

    let out = w
        .gcp(
            &[
                "token",
                "-vv",
                "--log-format",
                "json",
                "--service-account",
                COPYCAT,
                // The first run's token is cached: this one must exchange to log its steps.
                "--no-cache",
            ],
            &env,
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let events: Vec<Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let messages: Vec<&str> = events
        .iter()
        .filter_map(|e| e["fields"]["message"].as_str())
        .collect();
    for step in [
        "resolved AWS credentials",
        "Google STS: sending the token exchange",
        "IAM Credentials: sending generateAccessToken",
        "exchanged",
        "delivered",
    ] {
        assert!(messages.contains(&step), "{step} missing: {messages:?}");
    }
    let exchanged = events
        .iter()
        .find(|e| e["fields"]["message"] == "exchanged")
        .unwrap();
    assert_eq!(exchanged["level"], "INFO");
    assert_eq!(exchanged["fields"]["role"], COPYCAT);
}

/// The lab's OIDC provider (`oidc-lab`) and a token file holding a CI job's token of its
/// issuer, minted for `aud` by a job of `owner`'s repository.
fn oidc_token_file(
    w: &LabWorld,
    name: &str,
    aud: &str,
    owner: &str,
) -> (String, std::path::PathBuf) {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let jwt = w.lab.sign_claims(&serde_json::json!({
        "iss": keyless::lab::DEMO_OIDC_ISSUER, "aud": aud, "iat": now, "exp": now + 600,
        "sub": format!("repo:{owner}/app:ref:refs/heads/main"),
        "repository": format!("{owner}/app"), "repository_owner": owner,
    }));
    let path = w.home.home().join(name);
    std::fs::write(&path, &jwt).unwrap();
    (jwt, path)
}

impl LabWorld {
    /// `keyless gcp ARGS --audience <the lab's OIDC provider> --token-source SOURCE`.
    async fn gcp_oidc(&self, args: &[&str], source: &str) -> CommandOutput {
        let provider = oidc_provider(self);
        let mut all = vec![
            "gcp",
            args[0],
            "--audience",
            &provider,
            "--token-source",
            source,
        ];
        all.extend_from_slice(&args[1..]);
        self.keyless_env(&all, &[]).await
    }
}

fn oidc_provider(w: &LabWorld) -> String {
    w.lab
        .provider_audience(keyless::lab::DEMO_POOL, keyless::lab::DEMO_OIDC_PROVIDER)
}

/// `--token-source file:PATH` with a token for one of the OIDC provider's default audiences
/// (its name): the federated token, then copycat's (bound to the
/// repository owner's principalSet), which a Google API accepts. `subject-token` prints the
/// JWT itself.
#[tokio::test(flavor = "multi_thread")]
async fn an_oidc_token_file_becomes_a_google_token_with_and_without_impersonation() {
    let w = LabWorld::start().await;
    let provider = oidc_provider(&w);
    // The provider's name with `//` in front: accepted like the https:// one, without a warning.
    let (jwt, path) = oidc_token_file(&w, "ci.jwt", &provider, "keyless-lab");
    let source = format!("file:{}", path.display());
    let out = w.gcp_oidc(&["token", "--format", "json"], &source).await;
    assert_eq!(out.code(), 0, "{out}");
    assert!(!out.stderr.contains("audience is not"), "{out}");
    let doc = out.json();
    assert_eq!(doc["aws_identity"], Value::Null);
    assert_eq!(
        doc["token_identity"],
        format!(
            "iss={} sub=repo:keyless-lab/app:ref:refs/heads/main",
            keyless::lab::DEMO_OIDC_ISSUER
        )
    );
    assert_eq!(
        doc["federated_principal"],
        "principal://iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/subject/repo:keyless-lab/app:ref:refs/heads/main"
    );

    let out = w
        .gcp_oidc(&["token", "--service-account", COPYCAT], &source)
        .await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(w.storage_status(out.stdout.trim()).await, 200);
    assert_eq!(w.lab.stats().google_sts_exchanges, 2);

    let out = w.gcp_oidc(&["subject-token"], &source).await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(out.stdout.trim(), jwt);

    // An ID token for copycat, minted with the federated token of the OIDC identity.
    let out = w
        .gcp_oidc(
            &[
                "id-token",
                "--service-account",
                COPYCAT,
                "--target-audience",
                "https://run.example.com",
            ],
            &source,
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let claims =
        keyless::source::IdToken::parse(keyless::secret::Secret::new(out.stdout.trim()), "test")
            .unwrap();
    assert_eq!(claims.claims().email.as_deref(), Some(COPYCAT));
    assert_eq!(claims.claims().aud, "https://run.example.com");
}

/// What Google STS refuses comes back as exit 3 with the fields to check named: the token's
/// iss/aud/sub, the provider's issuer URI, allowed audiences and condition, and Google's own
/// description of what failed.
#[tokio::test(flavor = "multi_thread")]
async fn oidc_refusals_exit_3_naming_the_field() {
    let w = LabWorld::start().await;
    let provider = oidc_provider(&w);
    let https_name = provider.replacen("//", "https://", 1);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let foreign = w.home.home().join("foreign.jwt");
    std::fs::write(
        &foreign,
        w.lab.sign_claims(&serde_json::json!({
            "iss": "https://evil.example", "aud": https_name, "iat": now, "exp": now + 600,
            "sub": "x", "repository_owner": "keyless-lab",
        })),
    )
    .unwrap();
    let cases = [
        (
            oidc_token_file(&w, "aud.jwt", "sts.amazonaws.com", "keyless-lab").1,
            "audience in ID Token [sts.amazonaws.com]",
            "aud=sts.amazonaws.com",
        ),
        (
            oidc_token_file(&w, "cond.jwt", &https_name, "intruder").1,
            "rejected by the attribute condition",
            "attribute condition must be true",
        ),
        (
            foreign,
            "issuer in ID Token https://evil.example",
            "iss=https://evil.example",
        ),
    ];
    for (path, google_says, we_say) in cases {
        let source = format!("file:{}", path.display());
        let out = w
            .keyless_env(
                &[
                    "gcp",
                    "token",
                    "--audience",
                    &provider,
                    "--token-source",
                    &source,
                ],
                &[],
            )
            .await;
        assert_eq!(out.code(), 3, "{out}");
        for want in [
            google_says,
            we_say,
            "exchanging at Google STS",
            "oidc.issuerUri",
            "allowedAudiences",
        ] {
            assert!(out.stderr.contains(want), "{want} missing: {out}");
        }
        // Only the token minted for another audience is warned about before the refusal.
        assert_eq!(
            out.stderr
                .contains("is not one the provider accepts by default"),
            google_says.starts_with("audience"),
            "{out}"
        );
    }
    // The AWS-only flags say they do not apply; an unknown source lists `aws` with the others.
    let out = w
        .keyless_env(
            &[
                "gcp",
                "token",
                "--audience",
                &provider,
                "--token-source",
                "file:/x",
                "--aws-profile",
                "p",
            ],
            &[],
        )
        .await;
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("apply to --token-source aws"), "{out}");
    let out = w
        .keyless_env(
            &[
                "gcp",
                "token",
                "--audience",
                &provider,
                "--token-source",
                "gcloud",
            ],
            &[],
        )
        .await;
    assert_eq!(out.code(), 2, "{out}");
    assert!(
        out.stderr
            .contains("command:CMD, k8s[:PATH], github, aws-oidc, aws"),
        "{out}"
    );
}

/// google-auth's identity_pool credentials, loading the external_account file `gcp config
/// --token-source file:PATH` writes, read the token file, exchange and impersonate against the
/// lab themselves; a source that is not a file needs --token-file, and says how to keep it fresh.
#[tokio::test(flavor = "multi_thread")]
async fn google_auth_identity_pool_refreshes_with_a_file_source_config() {
    let w = LabWorld::start().await;
    let provider = oidc_provider(&w);
    let https_name = provider.replacen("//", "https://", 1);
    let (_, token) = oidc_token_file(&w, "ci.jwt", &https_name, "keyless-lab");
    let config = w.home.home().join("gcp-oidc.json");
    let google = w.lab.google_apis_url();
    let sts = w.lab.google_sts_url();
    let source = format!("file:{}", token.display());
    let out = w
        .keyless_env(
            &[
                "gcp",
                "config",
                "--audience",
                &provider,
                "--token-source",
                &source,
                "--service-account",
                COPYCAT,
                "--token-url",
                &sts,
                "--iamcredentials-url",
                &google,
                "--output",
                config.to_str().unwrap(),
            ],
            &[],
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    assert_eq!(
        written["subject_token_type"],
        "urn:ietf:params:oauth:token-type:jwt"
    );
    assert_eq!(
        written["credential_source"]["file"],
        token.to_str().unwrap()
    );
    let python = w.home.python(
        "google_auth_refresh.py",
        [
            config.to_str().unwrap(),
            &format!("{google}/storage/v1/b?project=keyless-lab"),
        ],
    );
    let out = w.run(python).await;
    assert_eq!(out.code(), 0, "{out}");
    let doc = out.json();
    assert_eq!(
        doc["credentials"], "google.auth.identity_pool.Credentials",
        "{out}"
    );
    assert_eq!(doc["status"], 200, "{out}");
    assert_eq!(w.lab.stats().google_sts_exchanges, 1);

    let out = w
        .keyless_env(
            &[
                "gcp",
                "config",
                "--audience",
                &provider,
                "--token-source",
                "command:cat /dev/null",
            ],
            &[],
        )
        .await;
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("--token-file"), "{out}");
    assert!(out.stderr.contains("keyless aws token-file --path FILE --token-source command:cat /dev/null --audience https://iam.googleapis.com/projects/424242424242"), "{out}");
}

/// A keyless.toml AWS → GCP profile names the token source (a `file:` path relative to the
/// file) and the service account; `gcp token --config-profile` uses them, and the command line
/// still wins.
#[tokio::test(flavor = "multi_thread")]
async fn a_config_profile_names_the_token_source() {
    let w = LabWorld::start().await;
    let provider = oidc_provider(&w);
    let dir = w.home.home().join("etc");
    std::fs::create_dir_all(&dir).unwrap();
    let (_, token) = oidc_token_file(&w, "etc/ci.jwt", &provider, "keyless-lab");
    let (_, intruder) = oidc_token_file(&w, "intruder.jwt", &provider, "intruder");
    let config = dir.join("keyless.toml");
    std::fs::write(
        &config,
        format!(
            "[profile.ci]\naudience = \"{provider}\"\ntoken_source = \"file:ci.jwt\"\n\
             service_account = \"{COPYCAT}\"\n"
        ),
    )
    .unwrap();
    assert!(token.starts_with(&dir));
    let config = config.display().to_string();
    let out = w
        .keyless_env(
            &[
                "--config",
                &config,
                "--config-profile",
                "ci",
                "gcp",
                "token",
            ],
            &[],
        )
        .await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(w.storage_status(out.stdout.trim()).await, 200);
    let flag = format!("file:{}", intruder.display());
    let out = w
        .keyless_env(
            &[
                "--config",
                &config,
                "--config-profile",
                "ci",
                "gcp",
                "token",
                "--token-source",
                &flag,
            ],
            &[],
        )
        .await;
    assert_eq!(
        out.code(),
        3,
        "the flag's token, refused by the condition: {out}"
    );
}

/// google-auth's identity_pool credentials accept the `url` credential source keyless writes
/// for GitHub Actions (`gcp config --token-source github`): they GET the job's token service
/// with its bearer token, read the JWT from `value`, and exchange it at the lab. The token
/// service here is a stand-in that, like GitHub's, refuses another bearer token and mints for
/// the audience asked.
#[tokio::test(flavor = "multi_thread")]
async fn google_auth_identity_pool_reads_a_url_source() {
    use axum::extract::{Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use keyless::deliver::external_account::{
        external_account_config, ExternalAccountOptions, JwtCredentialSource,
    };

    let w = LabWorld::start().await;
    let provider = oidc_provider(&w);
    type Service = (
        std::sync::Arc<keyless::lab::Lab>,
        std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    );
    async fn token(
        State((lab, asked)): State<Service>,
        headers: HeaderMap,
        Query(query): Query<std::collections::HashMap<String, String>>,
    ) -> Result<axum::Json<Value>, StatusCode> {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer job-token") {
            return Err(StatusCode::UNAUTHORIZED);
        }
        let audience = query.get("audience").cloned().unwrap_or_default();
        asked.lock().unwrap().push(audience.clone());
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let jwt = lab.sign_claims(&serde_json::json!({
            "iss": keyless::lab::DEMO_OIDC_ISSUER, "aud": audience, "iat": now, "exp": now + 300,
            "sub": "repo:keyless-lab/app:ref:refs/heads/main", "repository_owner": "keyless-lab",
        }));
        Ok(axum::Json(serde_json::json!({"count": 1, "value": jwt})))
    }
    let lab = std::sync::Arc::new(
        keyless::lab::Lab::start(keyless::lab::LabConfig::demo())
            .await
            .unwrap(),
    );
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service = format!(
        "http://{}/token?api-version=2.0",
        listener.local_addr().unwrap()
    );
    let app = axum::Router::new()
        .route("/token", axum::routing::get(token))
        .with_state((lab.clone(), asked.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The configuration keyless writes for `--token-source github` in a job with these variables.
    let audience = provider.replacen("//", "https://", 1);
    let encoded: String = url::form_urlencoded::byte_serialize(audience.as_bytes()).collect();
    let config = external_account_config(&ExternalAccountOptions {
        audience: provider.clone(),
        service_account: Some(COPYCAT.into()),
        token_lifetime_seconds: None,
        enable_imdsv2: false,
        token_url: Some(lab.google_sts_url()),
        iamcredentials_url: Some(lab.google_apis_url()),
        jwt_source: Some(JwtCredentialSource::Url {
            url: format!("{service}&audience={encoded}"),
            headers: [(
                "Authorization".to_string(),
                keyless::secret::Secret::new("Bearer job-token"),
            )]
            .into(),
            subject_token_field_name: "value".into(),
        }),
    });
    let path = w.home.home().join("gcp-github.json");
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    let python = w.home.python(
        "google_auth_refresh.py",
        [
            path.to_str().unwrap(),
            &format!("{}/storage/v1/b?project=keyless-lab", lab.google_apis_url()),
        ],
    );
    let out = w.run(python).await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(
        out.json()["credentials"],
        "google.auth.identity_pool.Credentials"
    );
    assert_eq!(out.json()["status"], 200, "{out}");
    assert_eq!(*asked.lock().unwrap(), [audience]);
    assert_eq!(lab.stats().google_sts_exchanges, 1);
}

/// Every source, each with the lab set-up a workload would have and the demo pool's provider
/// that trusts its issuer, becomes copycat's access token through `gcp token`, which a Google
/// API accepts: the lab's Google STS verifies the signed GetCallerIdentity (`aws`) or the JWT
/// with the keys its issuer publishes (the lab's Google key, GitHub's, the cluster's, the AWS
/// outbound issuer's), maps it and applies the provider's condition; IAM checks copycat's
/// binding. The sources run at the same time.
#[tokio::test(flavor = "multi_thread")]
async fn every_source_reaches_google() {
    use keyless::lab::{DEMO_GOOGLE_PROVIDER as GOOGLE_PROVIDER, DEMO_POOL};
    let mut config = keyless::lab::LabConfig::demo();
    config.outbound_federation = true;
    let w = LabWorld::start_with(config).await;
    let provider = |id: &str| w.lab.provider_audience(DEMO_POOL, id);
    let oidc_file = oidc_token_file(&w, "ci.jwt", &oidc_provider(&w), "keyless-lab").1;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let k8s = provider(keyless::lab::DEMO_KUBERNETES_PROVIDER);
    // The pod's projected token for the provider (`audience:` in the projection).
    let projected = w.home.home().join("projected-token");
    std::fs::write(
        &projected,
        w.lab.sign_claims(&serde_json::json!({
            "iss": keyless::lab::DEMO_KUBERNETES_ISSUER,
            "aud": [k8s.replacen("//", "https://", 1)],
            "sub": "system:serviceaccount:default:deployer",
            "iat": now, "nbf": now, "exp": now + 3600,
            "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": "deployer"}},
        })),
    )
    .unwrap();
    let session = support::lab_world::aws_env(&w.workload_session());
    let session: Vec<(String, String)> = session
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let github_sub = "repo:keyless-lab/app:ref:refs/heads/main";
    /// (source, provider, extra flags, environment, the identity keyless reports)
    type Case = (
        String,
        String,
        Vec<&'static str>,
        Vec<(String, String)>,
        String,
    );
    let cases: Vec<Case> = vec![
        (
            "aws".into(),
            w.lab.workload_identity_audience(),
            vec![],
            session.clone(),
            "aws=arn:aws:sts::123456789012:assumed-role/aws-workload/app".into(),
        ),
        (
            "metadata".into(),
            provider(GOOGLE_PROVIDER),
            vec![],
            vec![],
            "iss=https://accounts.google.com sub=100000000000000000001".into(),
        ),
        (
            "impersonate:ci-runner@keyless-lab.iam.gserviceaccount.com".into(),
            provider(GOOGLE_PROVIDER),
            vec![],
            vec![],
            "iss=https://accounts.google.com sub=100000000000000000002".into(),
        ),
        (
            format!("file:{}", oidc_file.display()),
            oidc_provider(&w),
            vec![],
            vec![],
            format!("iss={} sub={github_sub}", keyless::lab::DEMO_OIDC_ISSUER),
        ),
        (
            format!("command:cat {}", oidc_file.display()),
            oidc_provider(&w),
            vec![],
            vec![],
            format!("iss={} sub={github_sub}", keyless::lab::DEMO_OIDC_ISSUER),
        ),
        (
            format!("k8s:{}", projected.display()),
            k8s.clone(),
            vec![],
            vec![],
            format!(
                "iss={} sub=system:serviceaccount:default:deployer",
                keyless::lab::DEMO_KUBERNETES_ISSUER
            ),
        ),
        (
            "github".into(),
            provider(keyless::lab::DEMO_GITHUB_PROVIDER),
            vec![],
            w.lab.github_actions_env(),
            format!("iss={} sub={github_sub}", keyless::lab::DEMO_GITHUB_ISSUER),
        ),
        (
            "aws-oidc".into(),
            provider(keyless::lab::DEMO_AWS_OIDC_PROVIDER),
            // The AWS flags name the identity that asks STS for the token.
            vec!["--aws-region", "us-east-1"],
            session,
            format!(
                "iss={} sub=arn:aws:iam::123456789012:role/aws-workload",
                w.lab.outbound_issuer()
            ),
        ),
    ];
    let runs = cases
        .iter()
        .map(|(source, audience, extra, env, _)| {
            let mut args: Vec<String> = [
                "gcp",
                "token",
                "--audience",
                audience,
                "--token-source",
                source,
                "--service-account",
                COPYCAT,
                "--format",
                "json",
            ]
            .map(String::from)
            .to_vec();
            args.extend(extra.iter().map(|s| s.to_string()));
            (args, env.clone())
        })
        .collect();
    let outputs = w.keyless_all(runs).await;
    assert_eq!(outputs.len(), 8);
    for ((source, _, _, _, identity), out) in cases.iter().zip(&outputs) {
        assert_eq!(out.code(), 0, "{source}: {out}");
        let doc = out.json();
        let reported = match (&doc["aws_identity"], &doc["token_identity"]) {
            (Value::String(arn), Value::Null) => format!("aws={arn}"),
            (Value::Null, Value::String(jwt)) => jwt.clone(),
            other => panic!("{source}: {other:?}"),
        };
        assert_eq!(&reported, identity, "{source}");
        assert_eq!(doc["service_account"], COPYCAT, "{source}");
        let token = doc["access_token"].as_str().unwrap();
        assert_eq!(w.storage_status(token).await, 200, "{source}");
    }
    assert_eq!(w.lab.stats().google_sts_exchanges, 8);
    let kinds: Vec<String> = cases
        .iter()
        .map(|(source, ..)| keyless::audit::source_kind(source))
        .collect();
    let trail: Vec<(&str, &str, &str)> = kinds
        .iter()
        .map(|kind| (kind.as_str(), "google-sts+iamcredentials", "ok"))
        .collect();
    w.assert_audit_trail(&trail);
}

/// The cache entries of this world's `gcp` commands (`$XDG_CACHE_HOME/keyless/gcp/`).
fn gcp_cache_entries(w: &LabWorld) -> Vec<std::path::PathBuf> {
    let dir = w.home.cache_dir().join("keyless").join("gcp");
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    entries.sort();
    entries
}

/// Extra environment of a `gcp` run.
type Env = [(&'static str, String)];

/// A `--format json` document without `expires_in`, which counts down between two runs.
fn without_countdown(mut doc: Value) -> Value {
    doc.as_object_mut().unwrap().remove("expires_in");
    doc
}

/// The second `gcp token` is a cache hit: no new Google STS exchange, no new GetCallerIdentity,
/// no audit event, and the same JSON as the miss (the caller's ARN kept in the entry); the
/// entry is 0600 in a 0700 directory. `--no-cache` exchanges and leaves the entry alone.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_token_is_served_from_the_cache() {
    use std::os::unix::fs::PermissionsExt;
    let w = LabWorld::start().await;
    let env = support::lab_world::aws_env(&w.workload_session());
    let json = ["token", "--service-account", COPYCAT, "--format", "json"];
    let miss = w.gcp(&json, &env).await;
    assert_eq!(miss.code(), 0, "{miss}");
    let stats = w.lab.stats();
    assert_eq!(stats.google_sts_exchanges, 1);
    assert_eq!(w.audit_events().len(), 1);

    let hit = w.gcp(&json, &env).await;
    assert_eq!(hit.code(), 0, "{hit}");
    assert_eq!(
        w.lab.stats().google_sts_exchanges,
        1,
        "a hit is no exchange"
    );
    assert_eq!(
        w.lab.stats().get_caller_identity_calls,
        stats.get_caller_identity_calls,
        "a hit names the caller from the entry"
    );
    assert_eq!(w.audit_events().len(), 1, "a hit is no audit event");
    let (miss, hit) = (miss.json(), hit.json());
    assert!(
        (miss["expires_in"].as_i64().unwrap() - hit["expires_in"].as_i64().unwrap()).abs() <= 5
    );
    assert_eq!(without_countdown(hit.clone()), without_countdown(miss));

    let token = w.gcp(&["token", "--service-account", COPYCAT], &env).await;
    assert_eq!(token.stdout.trim(), hit["access_token"].as_str().unwrap());
    assert_eq!(w.lab.stats().google_sts_exchanges, 1);

    let entries = gcp_cache_entries(&w);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&entries[0]), 0o600);
    assert_eq!(mode(entries[0].parent().unwrap()), 0o700);
    let stored = std::fs::read(&entries[0]).unwrap();

    let bypass = w
        .gcp(&["token", "--service-account", COPYCAT, "--no-cache"], &env)
        .await;
    assert_eq!(bypass.code(), 0, "{bypass}");
    assert_eq!(
        w.lab.stats().google_sts_exchanges,
        2,
        "--no-cache exchanges"
    );
    assert_ne!(bypass.stdout.trim(), token.stdout.trim());
    assert_eq!(
        std::fs::read(&entries[0]).unwrap(),
        stored,
        "--no-cache writes nothing"
    );
    assert_eq!(gcp_cache_entries(&w).len(), 1);
}

/// Another service account, other scopes, the federated token alone, or another AWS identity
/// behind the same flags each get their own entry: a miss, then a hit of their own.
#[tokio::test(flavor = "multi_thread")]
async fn a_different_service_account_scope_or_identity_is_a_miss() {
    let w = LabWorld::start().await;
    let env = support::lab_world::aws_env(&w.workload_session());
    let other_identity = support::lab_world::aws_env(&w.lab.issue_role_credentials(
        "aws-workload",
        "other",
        Duration::from_secs(3600),
    ));
    let scopes = "https://www.googleapis.com/auth/cloud-platform,https://www.googleapis.com/auth/userinfo.email";
    let runs: [(&[&str], &Env); 4] = [
        (&["token", "--service-account", COPYCAT], &env),
        (
            &["token", "--service-account", COPYCAT, "--scopes", scopes],
            &env,
        ),
        (&["token"], &env),
        (&["token", "--service-account", COPYCAT], &other_identity),
    ];
    let mut tokens = Vec::new();
    for (n, (args, env)) in runs.iter().enumerate() {
        let out = w.gcp(args, env).await;
        assert_eq!(out.code(), 0, "{out}");
        assert_eq!(w.lab.stats().google_sts_exchanges, n as u64 + 1, "{args:?}");
        tokens.push(out.stdout);
    }
    for ((args, env), token) in runs.iter().zip(&tokens) {
        let again = w.gcp(args, env).await;
        assert_eq!(&again.stdout, token, "{args:?}");
    }
    assert_eq!(w.lab.stats().google_sts_exchanges, 4);
    assert_eq!(gcp_cache_entries(&w).len(), 4);
}

/// An entry with ten minutes or less left is not served: the next call exchanges and stores
/// the new token, which the call after that is served.
#[tokio::test(flavor = "multi_thread")]
async fn an_entry_near_its_end_is_exchanged_again() {
    let w = LabWorld::start().await;
    let env = support::lab_world::aws_env(&w.workload_session());
    let args = ["token", "--service-account", COPYCAT];
    let first = w.gcp(&args, &env).await;
    assert_eq!(first.code(), 0, "{first}");
    let [entry] = &gcp_cache_entries(&w)[..] else {
        panic!("one entry");
    };
    let mut stored: Value = serde_json::from_slice(&std::fs::read(entry).unwrap()).unwrap();
    let soon = time::OffsetDateTime::now_utc() + time::Duration::minutes(9);
    stored["value"]["token"]["expires_at"] = keyless::credentials::format_expiration(soon).into();
    std::fs::write(entry, serde_json::to_vec(&stored).unwrap()).unwrap();

    let second = w.gcp(&args, &env).await;
    assert_eq!(second.code(), 0, "{second}");
    assert_eq!(w.lab.stats().google_sts_exchanges, 2);
    assert_ne!(second.stdout, first.stdout);
    let third = w.gcp(&args, &env).await;
    assert_eq!(third.stdout, second.stdout);
    assert_eq!(w.lab.stats().google_sts_exchanges, 2);
}

/// `gcp id-token` is cached per target audience; `--no-cache` bypasses.
#[tokio::test(flavor = "multi_thread")]
async fn id_tokens_are_cached_per_target_audience() {
    let w = LabWorld::start().await;
    let env = support::lab_world::aws_env(&w.workload_session());
    let id_token = |audience: &'static str, extra: &'static [&'static str]| {
        let mut args = vec![
            "id-token",
            "--service-account",
            COPYCAT,
            "--target-audience",
            audience,
        ];
        args.extend_from_slice(extra);
        args
    };
    let a = w.gcp(&id_token("https://a.example", &[]), &env).await;
    assert_eq!(a.code(), 0, "{a}");
    let a_again = w.gcp(&id_token("https://a.example", &[]), &env).await;
    assert_eq!(a_again.stdout, a.stdout);
    assert_eq!(w.lab.stats().google_sts_exchanges, 1);
    let b = w.gcp(&id_token("https://b.example", &[]), &env).await;
    assert_eq!(b.code(), 0, "{b}");
    assert_ne!(b.stdout, a.stdout);
    assert_eq!(w.lab.stats().google_sts_exchanges, 2);
    let bypass = w
        .gcp(&id_token("https://a.example", &["--no-cache"]), &env)
        .await;
    assert_eq!(bypass.code(), 0, "{bypass}");
    assert_eq!(w.lab.stats().google_sts_exchanges, 3);
    assert_eq!(w.audit_events().len(), 3);
}

/// A hit stored by a plain run names the AWS caller the first time JSON is asked for (one
/// GetCallerIdentity), and keeps it: later JSON hits ask nothing.
#[tokio::test(flavor = "multi_thread")]
async fn json_after_a_plain_run_names_the_caller_from_then_on() {
    let w = LabWorld::start().await;
    let env = support::lab_world::aws_env(&w.workload_session());
    let plain = w.gcp(&["token", "--service-account", COPYCAT], &env).await;
    assert_eq!(plain.code(), 0, "{plain}");
    let json = ["token", "--service-account", COPYCAT, "--format", "json"];
    let calls = w.lab.stats().get_caller_identity_calls;
    let first = w.gcp(&json, &env).await;
    assert_eq!(first.code(), 0, "{first}");
    let first = first.json();
    assert_eq!(first["access_token"].as_str(), Some(plain.stdout.trim()));
    assert_eq!(
        first["aws_identity"],
        "arn:aws:sts::123456789012:assumed-role/aws-workload/app"
    );
    let asked = w.lab.stats().get_caller_identity_calls;
    assert!(asked > calls);
    let second = w.gcp(&json, &env).await.json();
    assert_eq!(without_countdown(second), without_countdown(first));
    assert_eq!(w.lab.stats().get_caller_identity_calls, asked);
    assert_eq!(w.lab.stats().google_sts_exchanges, 1);
}
