//! The real `keyless` binary against the lab: every token source, the trust-policy refusals, the
//! retry and re-mint paths, the cache, and the profile writer. The lab checks what AWS and
//! Google check (JWT signatures, trust conditions, SigV4), so a pass here means the bytes are
//! right, not merely that something answered.

use crate::support;

use std::path::Path;
use std::time::Duration;

use support::{LabWorld, UnreadRoots};

const DEPLOYER: &str = "deployer@keyless-lab.iam.gserviceaccount.com";
const CI_RUNNER: &str = "ci-runner@keyless-lab.iam.gserviceaccount.com";
const INTRUDER: &str = "intruder@elsewhere.iam.gserviceaccount.com";

fn file_source(path: &Path) -> String {
    format!("file:{}", path.display())
}

/// The default path: metadata token → STS → credential_process JSON the SDKs accept.
#[tokio::test(flavor = "multi_thread")]
async fn metadata_token_becomes_credential_process_json() {
    let w = LabWorld::start().await;
    let out = w
        .keyless(&["aws", "credentials", "--role-arn", &w.role("gcp-deploy")])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let doc = out.json();
    assert_eq!(doc["Version"], 1);
    assert!(doc["AccessKeyId"].as_str().unwrap().starts_with("ASIA"));
    assert!(doc["SecretAccessKey"].as_str().unwrap().len() >= 40);
    assert!(doc["SessionToken"].as_str().is_some());
    let exp = doc["Expiration"].as_str().unwrap();
    assert!(
        exp.ends_with('Z') && exp.len() == 20,
        "plain RFC 3339 seconds: {exp}"
    );
    assert_eq!(w.lab.stats().assume_role_with_web_identity_successes, 1);
}

/// `--format json` carries the assumed-role ARN (with the derived session name) and the subject.
#[tokio::test(flavor = "multi_thread")]
async fn json_format_names_the_assumed_role_and_subject() {
    let w = LabWorld::start().await;
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--format",
            "json",
        ])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let doc = out.json();
    let arn = doc["AssumedRoleUser"]["Arn"].as_str().unwrap();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host = host.split('.').next().unwrap();
    assert_eq!(
        arn,
        format!("arn:aws:sts::123456789012:assumed-role/gcp-deploy/deployer@{host}")
    );
    assert_eq!(doc["SubjectFromWebIdentityToken"], "100000000000000000001");
    assert_eq!(doc["Provider"], "accounts.google.com");
}

/// A second run answers from the cache: no new token, no STS call. `--no-cache` goes upstream.
#[tokio::test(flavor = "multi_thread")]
async fn second_call_is_served_from_the_cache() {
    let w = LabWorld::start().await;
    let role = w.role("gcp-deploy");
    let first = w
        .keyless(&["aws", "credentials", "--role-arn", &role])
        .await;
    let second = w
        .keyless(&["aws", "credentials", "--role-arn", &role])
        .await;
    assert_eq!(second.code(), 0, "{}", second.stderr);
    assert_eq!(first.json()["AccessKeyId"], second.json()["AccessKeyId"]);
    let stats = w.lab.stats();
    assert_eq!(
        stats.assume_role_with_web_identity_calls, 1,
        "the cached answer must not call STS"
    );
    assert_eq!(stats.id_tokens_minted, 1);
    let third = w
        .keyless(&["aws", "credentials", "--role-arn", &role, "--no-cache"])
        .await;
    assert_eq!(third.code(), 0, "{}", third.stderr);
    assert_ne!(first.json()["AccessKeyId"], third.json()["AccessKeyId"]);
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 2);
}

/// A cold exchange against the lab's `http://` endpoints never reads the TLS roots (they were
/// nine tenths of its CPU, BENCHMARKS.md "Profile"): an `SSL_CERT_FILE` that tells whether it
/// was opened stays unopened.
#[tokio::test(flavor = "multi_thread")]
async fn an_http_exchange_never_reads_the_tls_roots() {
    let w = LabWorld::start().await;
    let roots = UnreadRoots::new();
    let path = roots.path().to_str().unwrap().to_string();
    let role = w.role("gcp-deploy");
    let args = ["aws", "credentials", "--role-arn", &role, "--no-cache"];
    let out = w.keyless_env(&args, &[("SSL_CERT_FILE", &path)]).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        !roots.was_opened(),
        "the roots were read for http:// endpoints"
    );
}

/// Over HTTPS (`keyless lab --tls-ca-file`), the exchange trusts exactly `SSL_CERT_FILE`: with
/// the lab's CA there it gets the role; with another CA there it is refused at the handshake,
/// although the lab's certificate is valid (nothing else, system store or compiled roots, is
/// trusted instead).
#[tokio::test(flavor = "multi_thread")]
async fn an_https_exchange_trusts_exactly_ssl_cert_file() {
    let mut w = LabWorld::start().await;
    let https = w.lab.serve_https().await.expect("the lab serves HTTPS");
    let dir = tempfile::tempdir().unwrap();
    let lab_ca = dir.path().join("lab-ca.pem");
    std::fs::write(&lab_ca, &https.ca_pem).unwrap();
    let env: Vec<(String, String)> = https.env(&lab_ca);
    let extra: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert!(
        extra.contains(&("AWS_ENDPOINT_URL_STS", https.aws_sts_url.as_str()))
            && https.aws_sts_url.starts_with("https://"),
        "{extra:?}"
    );
    let role = w.role("gcp-deploy");
    let args = ["aws", "credentials", "--role-arn", &role, "--no-cache"];

    let out = w.keyless_env(&args, &extra).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.json()["AccessKeyId"]
        .as_str()
        .unwrap()
        .starts_with("ASIA"));
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 1);

    // Another CA in SSL_CERT_FILE: the lab's certificate is not trusted.
    let other_key = rcgen::KeyPair::generate().unwrap();
    let mut other = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let other_ca = dir.path().join("other-ca.pem");
    std::fs::write(&other_ca, other.self_signed(&other_key).unwrap().pem()).unwrap();
    let other_path = other_ca.to_str().unwrap();
    let mut extra = extra.clone();
    for (k, v) in extra.iter_mut() {
        if *k == "SSL_CERT_FILE" {
            *v = other_path;
        }
    }
    let out = w.keyless_env(&args, &extra).await;
    assert_ne!(out.code(), 0, "an unknown CA was trusted: {}", out.stdout);
    assert!(
        out.stderr.to_lowercase().contains("certificate"),
        "the error should say the certificate was not trusted: {}",
        out.stderr
    );
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 1);
}

/// The cache follows the identity, not the source's name: a token file replaced with another
/// identity's token is exchanged (and refused here), not answered with the first one's
/// credentials; switching back finds the first identity's entry again.
#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_token_file_is_not_served_the_previous_identitys_credentials() {
    let w = LabWorld::start().await;
    let role = w.role("gcp-deploy");
    let path = w.write_token("token.jwt", DEPLOYER, Duration::from_secs(3600));
    let deployer_token = std::fs::read_to_string(&path).unwrap();
    let source = file_source(&path);
    let args = [
        "aws",
        "credentials",
        "--role-arn",
        &role,
        "--token-source",
        &source,
    ];
    let first = w.keyless(&args).await;
    assert_eq!(first.code(), 0, "{first}");

    w.write_token("token.jwt", INTRUDER, Duration::from_secs(3600));
    let intruder = w.keyless(&args).await;
    assert_eq!(
        intruder.code(),
        3,
        "served from the deployer's cache entry: {intruder}"
    );
    assert!(intruder.stdout.is_empty());

    std::fs::write(&path, deployer_token).unwrap();
    let again = w.keyless(&args).await;
    assert_eq!(again.code(), 0, "{again}");
    assert_eq!(first.json()["AccessKeyId"], again.json()["AccessKeyId"]);
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 2);
}

/// Another ADC account is another identity for `impersonate:`: after switching to a user who
/// may not impersonate the service account, the cached credentials are not handed out.
#[tokio::test(flavor = "multi_thread")]
async fn switching_the_adc_account_is_not_served_the_previous_accounts_credentials() {
    let mut config = keyless::lab::LabConfig::demo();
    let mut outsider = config.users[0].clone();
    outsider.email = "outsider@example.com".to_string();
    outsider.refresh_token = "1//lab-refresh-token-outsider".to_string();
    outsider.client_id = "764086051850-outsider.apps.googleusercontent.com".to_string();
    config.users.push(outsider);
    let w = LabWorld::start_with(config).await;
    let adc = w.home.home().join("adc.json");
    let source = format!("impersonate:{CI_RUNNER}");
    let role = w.role("ci-deploy");
    let args = [
        "aws",
        "credentials",
        "--role-arn",
        &role,
        "--token-source",
        &source,
    ];
    let env = [("GOOGLE_APPLICATION_CREDENTIALS", adc.to_str().unwrap())];
    w.lab
        .write_authorized_user_adc(&adc, "dev@example.com")
        .unwrap();
    let dev = w.keyless_env(&args, &env).await;
    assert_eq!(dev.code(), 0, "{dev}");

    w.lab
        .write_authorized_user_adc(&adc, "outsider@example.com")
        .unwrap();
    let outsider = w.keyless_env(&args, &env).await;
    assert_ne!(
        outsider.code(),
        0,
        "served from dev's cache entry: {outsider}"
    );
    assert!(outsider.stderr.contains(CI_RUNNER), "{outsider}");
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 1);
}

/// Credentials with 15 minutes of life are never served from the cache (boto3 would call us on
/// every API call); each run exchanges again.
#[tokio::test(flavor = "multi_thread")]
async fn short_lived_credentials_are_not_reused() {
    let w = LabWorld::start().await;
    let role = w.role("gcp-deploy");
    for _ in 0..2 {
        let out = w
            .keyless(&[
                "aws",
                "credentials",
                "--role-arn",
                &role,
                "--duration",
                "900",
            ])
            .await;
        assert_eq!(out.code(), 0, "{}", out.stderr);
    }
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 2);
}

/// A token from a file and from a command are both accepted; the file is re-read each time.
#[tokio::test(flavor = "multi_thread")]
async fn file_and_command_sources_work() {
    let w = LabWorld::start().await;
    let token = w.write_token("token.jwt", DEPLOYER, Duration::from_secs(3600));
    let role = w.role("gcp-deploy");
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--no-cache",
            "--role-arn",
            &role,
            "--token-source",
            &file_source(&token),
        ])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let cmd = format!("command:cat {}", token.display());
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--no-cache",
            "--role-arn",
            &role,
            "--token-source",
            &cmd,
        ])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(w.lab.stats().assume_role_with_web_identity_successes, 2);
}

/// An EKS cluster's issuer, registered in the lab account as an IAM OIDC provider.
const EKS_ISSUER: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/LAB0123456789ABCDEF";
const EKS_PROVIDER: &str = "oidc.eks.us-east-1.amazonaws.com/id/LAB0123456789ABCDEF";

/// A lab whose account trusts an EKS cluster's issuer for the role `eks-irsa`, pinned the way
/// AWS documents IRSA: `HOST/PATH:aud` and `HOST/PATH:sub`.
async fn lab_with_an_eks_cluster() -> LabWorld {
    let mut config = keyless::lab::LabConfig::demo();
    config.oidc_providers.push(keyless::lab::LabOidcProvider {
        issuer: EKS_ISSUER.to_string(),
        client_ids: vec!["sts.amazonaws.com".to_string()],
    });
    let trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::{}:oidc-provider/{EKS_PROVIDER}", config.account_id)},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{EKS_PROVIDER}:aud"): "sts.amazonaws.com",
                format!("{EKS_PROVIDER}:sub"): "system:serviceaccount:default:deployer"
            }}
        }]
    });
    config.roles.push(keyless::lab::LabRole {
        name: "eks-irsa".to_string(),
        trust_policy: trust.to_string(),
        max_session_duration: 3600,
    });
    LabWorld::start_with(config).await
}

/// A Kubernetes projected service-account token: `aud` is an array, `iss` the cluster's.
fn projected_token(w: &LabWorld, service_account: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    w.lab.sign_claims(&serde_json::json!({
        "iss": EKS_ISSUER,
        "aud": ["sts.amazonaws.com"],
        "sub": format!("system:serviceaccount:default:{service_account}"),
        "iat": now, "nbf": now, "exp": now + 3600,
        "kubernetes.io": {"namespace": "default", "serviceaccount": {"name": service_account}}
    }))
}

/// An EKS IRSA token (array `aud`, the cluster's issuer) from `file:` is exchanged for the role
/// that trusts the cluster; a refusal names the cluster's condition keys, not Google's.
#[tokio::test(flavor = "multi_thread")]
async fn a_kubernetes_token_with_an_array_audience_assumes_an_irsa_role() {
    let w = lab_with_an_eks_cluster().await;
    let role = w.role("eks-irsa");
    let token = w
        .home
        .write_token("eks.jwt", &projected_token(&w, "deployer"));
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--no-cache",
            "--format",
            "json",
            "--role-arn",
            &role,
            "--token-source",
            &file_source(&token),
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let doc = out.json();
    assert_eq!(
        doc["SubjectFromWebIdentityToken"],
        "system:serviceaccount:default:deployer"
    );
    assert_eq!(doc["Audience"], "sts.amazonaws.com");
    assert_eq!(
        doc["Provider"],
        format!(
            "arn:aws:iam::{}:oidc-provider/{EKS_PROVIDER}",
            w.lab.account_id()
        )
    );

    let stranger = w
        .home
        .write_token("stranger.jwt", &projected_token(&w, "stranger"));
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--no-cache",
            "--role-arn",
            &role,
            "--token-source",
            &format!("command:cat {}", stranger.display()),
        ])
        .await;
    assert_eq!(out.code(), 3, "{out}");
    assert!(out.stderr.contains("aud=[sts.amazonaws.com]"), "{out}");
    assert!(out.stderr.contains(&format!("{EKS_PROVIDER}:sub")), "{out}");
    assert!(!out.stderr.contains("accounts.google.com"), "{out}");
}

/// A Google token whose `aud` is an array is accepted the way AWS accepts it.
#[tokio::test(flavor = "multi_thread")]
async fn a_google_token_with_an_array_audience_is_accepted() {
    let w = LabWorld::start().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let unique_id = "100000000000000000001";
    let token = w.lab.sign_claims(&serde_json::json!({
        "iss": "https://accounts.google.com", "aud": ["sts.amazonaws.com"],
        "azp": unique_id, "sub": unique_id, "iat": now, "exp": now + 3600
    }));
    let path = w.home.write_token("google-array.jwt", &token);
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--no-cache",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--token-source",
            &file_source(&path),
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
}

/// A credential command holds the credentials too: it runs with RLIMIT_CORE 0, which its token
/// command (a child of `sh`, a child of keyless) inherits and reports.
#[tokio::test(flavor = "multi_thread")]
async fn credential_commands_write_no_core_files() {
    let w = LabWorld::start().await;
    let token = w.write_token("token.jwt", DEPLOYER, Duration::from_secs(3600));
    let limits = w.home.home().join("limits");
    let source = format!(
        "command:grep 'Max core file size' /proc/self/limits > {}; cat {}",
        limits.display(),
        token.display()
    );
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--no-cache",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--token-source",
            &source,
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let line = std::fs::read_to_string(&limits).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[4..6], ["0", "0"], "{line}");
}

/// impersonate: with an authorized_user ADC file (a developer laptop): the user's refresh token
/// buys an access token, which buys an ID token for ci-runner, which assumes ci-deploy.
#[tokio::test(flavor = "multi_thread")]
async fn impersonation_with_authorized_user_adc() {
    let w = LabWorld::start().await;
    let adc = w.home.home().join("adc.json");
    w.lab
        .write_authorized_user_adc(&adc, "dev@example.com")
        .unwrap();
    let source = format!("impersonate:{CI_RUNNER}");
    let out = w
        .keyless_env(
            &[
                "aws",
                "credentials",
                "--role-arn",
                &w.role("ci-deploy"),
                "--token-source",
                &source,
                "--format",
                "json",
            ],
            &[("GOOGLE_APPLICATION_CREDENTIALS", adc.to_str().unwrap())],
        )
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.json()["AssumedRoleUser"]["Arn"]
        .as_str()
        .unwrap()
        .contains("assumed-role/ci-deploy/ci-runner@"));
}

/// impersonate: on a VM: the metadata server's access token authorises generateIdToken.
#[tokio::test(flavor = "multi_thread")]
async fn impersonation_from_the_metadata_server() {
    let w = LabWorld::start().await;
    let source = format!("impersonate:{CI_RUNNER}");
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &w.role("ci-deploy"),
            "--token-source",
            &source,
        ])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
}

/// Impersonating an account the caller may not act as fails with IAM's refusal and the fix.
#[tokio::test(flavor = "multi_thread")]
async fn impersonation_without_token_creator_is_refused() {
    let w = LabWorld::start().await;
    let source = format!("impersonate:{INTRUDER}");
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--token-source",
            &source,
        ])
        .await;
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("roles/iam.serviceAccountTokenCreator"),
        "{}",
        out.stderr
    );
}

/// A token from an identity the trust policy does not name is refused at once (one STS call),
/// and the message names the role and the claims AWS compared, but no secret.
#[tokio::test(flavor = "multi_thread")]
async fn untrusted_identity_is_refused_with_the_claims_compared() {
    let w = LabWorld::start().await;
    let token = w.write_token("intruder.jwt", INTRUDER, Duration::from_secs(3600));
    let role = w.role("gcp-deploy");
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &role,
            "--token-source",
            &file_source(&token),
        ])
        .await;
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert!(out.stderr.contains(&role), "{}", out.stderr);
    assert!(out.stderr.contains("AccessDenied"), "{}", out.stderr);
    assert!(
        out.stderr.contains("azp=100000000000000000099"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("accounts.google.com:aud"),
        "{}",
        out.stderr
    );
    let raw = std::fs::read_to_string(&token).unwrap();
    assert!(
        !out.stderr.contains(&raw[raw.len() - 20..]),
        "the token leaked into stderr"
    );
    assert!(out.stdout.is_empty());
    assert_eq!(
        w.lab.stats().assume_role_with_web_identity_calls,
        1,
        "AccessDenied must not be retried"
    );
    // The refusal is in the audit trail: who was refused what, with STS's code and request id.
    let events = w.audit_events();
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.outcome, keyless::audit::Outcome::Refused);
    assert_eq!(event.error_class.as_deref(), Some("AccessDenied"));
    assert_eq!(event.source.kind, "file");
    assert_eq!(event.source.email.as_deref(), Some(INTRUDER));
    assert_eq!(event.target.role_arn.as_deref(), Some(role.as_str()));
    assert_eq!(event.expires_at, None);
    assert_eq!(event.upstream.len(), 1);
    assert_eq!(event.upstream[0].status, Some(403));
    assert_eq!(
        event.upstream[0].request_id.as_ref().map(String::len),
        Some(36)
    );
    assert!(event.error.as_deref().unwrap().contains("AccessDenied"));
    w.assert_audit_trail(&[("file", "aws-sts", "refused")]);
}

/// `--audit-log` refuses a file others may write (a forged line would pass for keyless's own)
/// with exit 2 and the fix, before anything is exchanged.
#[tokio::test(flavor = "multi_thread")]
async fn an_audit_log_others_may_write_is_refused_before_any_exchange() {
    use std::os::unix::fs::PermissionsExt;
    let w = LabWorld::start().await;
    let shared = w.home.home().join("shared-audit.jsonl");
    std::fs::write(&shared, "").unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--audit-log",
            shared.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("writable by others"), "{out}");
    assert!(out.stderr.contains("chmod go-w"), "{out}");
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 0);
}

/// An expired token is re-minted once; a file that keeps serving it fails with a clock hint.
#[tokio::test(flavor = "multi_thread")]
async fn expired_token_is_reminted_once_then_explained() {
    let w = LabWorld::start().await;
    let token = w.write_token("old.jwt", DEPLOYER, Duration::ZERO);
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--token-source",
            &file_source(&token),
        ])
        .await;
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("ExpiredTokenException"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("clock"), "{}", out.stderr);
    assert_eq!(
        w.lab.stats().assume_role_with_web_identity_calls,
        2,
        "exactly one re-mint"
    );
}

/// STS says the token is invalid once: keyless mints a fresh one and succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn invalid_identity_token_triggers_one_remint() {
    let w = LabWorld::start().await;
    w.lab.faults().sts_error("InvalidIdentityToken", 400, 1);
    let out = w
        .keyless(&["aws", "credentials", "--role-arn", &w.role("gcp-deploy")])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let stats = w.lab.stats();
    assert_eq!(
        stats.id_tokens_minted, 2,
        "a fresh token for the second attempt"
    );
    assert_eq!(stats.assume_role_with_web_identity_successes, 1);
}

/// IdP hiccups and throttling are retried with backoff until STS answers.
#[tokio::test(flavor = "multi_thread")]
async fn transient_sts_errors_are_retried() {
    let w = LabWorld::start().await;
    w.lab.faults().sts_error("IDPCommunicationError", 400, 1);
    w.lab.faults().sts_error("Throttling", 400, 1);
    let out = w
        .keyless(&["aws", "credentials", "--role-arn", &w.role("gcp-deploy")])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 3);
    assert_eq!(
        w.lab.stats().id_tokens_minted,
        1,
        "a retry reuses the still-valid token"
    );
}

/// A lasting outage ends after the bounded attempts with exit code 4 (unavailable).
#[tokio::test(flavor = "multi_thread")]
async fn lasting_outage_gives_up_with_unavailable() {
    let w = LabWorld::start().await;
    w.lab.faults().sts_error("ServiceUnavailable", 503, 100);
    let out = w
        .keyless(&["aws", "credentials", "--role-arn", &w.role("gcp-deploy")])
        .await;
    assert_eq!(out.code(), 4, "{}", out.stderr);
    assert!(out.stderr.contains("after 4 attempts"), "{}", out.stderr);
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 4);
}

/// Asking for more than the role's maximum session is a request error, not retried.
#[tokio::test(flavor = "multi_thread")]
async fn duration_above_role_maximum_fails_fast() {
    let w = LabWorld::start().await;
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &w.role("ci-deploy"),
            "--duration",
            "7200",
            "--token-source",
            &format!("impersonate:{CI_RUNNER}"),
        ])
        .await;
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("MaxSessionDuration"), "{}", out.stderr);
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 1);
}

/// `whoami --role-arn` signs GetCallerIdentity with the new credentials and the lab's verifier
/// accepts the signature.
#[tokio::test(flavor = "multi_thread")]
async fn whoami_signs_a_call_the_lab_verifies() {
    let w = LabWorld::start().await;
    let out = w
        .keyless(&["aws", "whoami", "--role-arn", &w.role("gcp-deploy")])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let doc = out.json();
    assert_eq!(doc["Account"], "123456789012");
    assert!(doc["Arn"]
        .as_str()
        .unwrap()
        .contains("assumed-role/gcp-deploy/"));
    assert_eq!(w.lab.stats().get_caller_identity_calls, 1);
}

/// `exec` hands the credentials to the child and passes its exit code through.
#[tokio::test(flavor = "multi_thread")]
async fn exec_passes_credentials_and_exit_code() {
    let w = LabWorld::start().await;
    let role = w.role("gcp-deploy");
    let script = r#"test -n "$AWS_ACCESS_KEY_ID" && test -n "$AWS_SESSION_TOKEN" && test -z "$AWS_PROFILE" && test -n "$AWS_CREDENTIAL_EXPIRATION" && exit 7"#;
    let out = w
        .keyless_env(
            &["aws", "exec", "--role-arn", &role, "--", "sh", "-c", script],
            &[("AWS_PROFILE", "stale")],
        )
        .await;
    assert_eq!(out.code(), 7, "{}", out.stderr);
}

/// `--format env` lines, eval'd by a shell, give the child the credentials.
#[tokio::test(flavor = "multi_thread")]
async fn env_format_evals_in_a_shell() {
    let w = LabWorld::start().await;
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--format",
            "env",
        ])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let check = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{}printf %s \"$AWS_ACCESS_KEY_ID\"", out.stdout))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&check.stdout).starts_with("ASIA"));
    assert!(out.stdout.contains("export AWS_REGION=us-east-1"));
}

/// `write-profile` changes only its section: every other byte of a file full of comments and
/// profiles stays identical; the written keys then sign a call the lab verifies; the file is 0600.
#[tokio::test(flavor = "multi_thread")]
async fn write_profile_preserves_the_rest_of_the_file() {
    let w = LabWorld::start().await;
    let creds = w.home.credentials_file();
    let before = "# managed by hand\n[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s\n\n; the old deploy keys\n[deploy]\nregion = eu-west-1\naws_access_key_id = OLD\n\n[other]  \naws_access_key_id=KEEP\r\n";
    std::fs::write(&creds, before).unwrap();
    let out = w
        .keyless(&[
            "aws",
            "write-profile",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--profile",
            "deploy",
        ])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let after = std::fs::read_to_string(&creds).unwrap();
    assert!(after.starts_with("# managed by hand\n[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s\n\n; the old deploy keys\n[deploy]\nregion = eu-west-1\naws_access_key_id = ASIA"), "{after}");
    assert!(
        after.ends_with("\n[other]  \naws_access_key_id=KEEP\r\n"),
        "{after}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&creds).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let who = w.keyless(&["aws", "whoami", "--profile", "deploy"]).await;
    assert_eq!(who.code(), 0, "{}", who.stderr);
    assert!(who.json()["Arn"]
        .as_str()
        .unwrap()
        .contains("assumed-role/gcp-deploy/"));
}

/// Debug logging shows the flow but never the token, the secret key or the session token.
#[tokio::test(flavor = "multi_thread")]
async fn verbose_logs_never_contain_secrets() {
    let w = LabWorld::start().await;
    let token = w.write_token("t.jwt", DEPLOYER, Duration::from_secs(3600));
    let out = w
        .keyless(&[
            "-vv",
            "aws",
            "credentials",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--token-source",
            &file_source(&token),
        ])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(!out.stderr.is_empty(), "-vv should log something");
    let doc = out.json();
    let jwt = std::fs::read_to_string(&token).unwrap();
    let signature = jwt.rsplit('.').next().unwrap();
    for secret in [
        doc["SecretAccessKey"].as_str().unwrap(),
        doc["SessionToken"].as_str().unwrap(),
        signature,
    ] {
        assert!(
            !out.stderr.contains(secret),
            "a secret reached the log:\n{}",
            out.stderr
        );
    }
}

impl LabWorld {
    fn credential_process_profile(&self, profile: &str, extra: &[&str]) {
        let mut args: Vec<String> = ["aws", "credentials", "--role-arn"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(self.role("gcp-deploy"));
        args.extend(extra.iter().map(|s| s.to_string()));
        self.home.add_credential_process_profile(profile, &args);
    }
}

/// The aws CLI and boto3, configured with nothing but a `credential_process` line, act as the
/// role: the lab verifies the SigV4 signature of each one's GetCallerIdentity. The second
/// client is served from keyless's cache (one exchange for both processes).
#[tokio::test(flavor = "multi_thread")]
async fn aws_cli_and_boto3_act_as_the_role_through_credential_process() {
    let w = LabWorld::start().await;
    w.credential_process_profile("deploy", &[]);
    let cli = w
        .run(
            w.home
                .aws(["sts", "get-caller-identity", "--profile", "deploy"]),
        )
        .await;
    assert_eq!(cli.code(), 0, "{cli}");
    assert!(cli.json()["Arn"]
        .as_str()
        .unwrap()
        .contains(":assumed-role/gcp-deploy/deployer@"));
    let mut python = w.home.command(support::venv::bin("python"));
    python.args([
        "-c",
        "import boto3; print(boto3.Session(profile_name='deploy').client('sts').get_caller_identity()['Arn'])",
    ]);
    let boto = w.run(python).await;
    assert_eq!(boto.code(), 0, "{boto}");
    assert_eq!(boto.stdout.trim(), cli.json()["Arn"].as_str().unwrap());
    let stats = w.lab.stats();
    assert_eq!(stats.get_caller_identity_calls, 2);
    assert_eq!(stats.assume_role_with_web_identity_calls, 1);
}

/// When the trust policy refuses, the aws CLI shows keyless's explanation, free of terminal
/// escape codes, and no credential.
#[tokio::test(flavor = "multi_thread")]
async fn aws_cli_shows_a_clean_refusal_from_credential_process() {
    let w = LabWorld::start().await;
    let token = w.write_token("intruder.jwt", INTRUDER, Duration::from_secs(3600));
    w.credential_process_profile("intruder", &["--token-source", &file_source(&token)]);
    let out = w
        .run(
            w.home
                .aws(["sts", "get-caller-identity", "--profile", "intruder"]),
        )
        .await;
    assert_ne!(out.code(), 0, "{out}");
    assert!(out.stderr.contains("AccessDenied"), "{out}");
    assert!(out.stderr.contains("accounts.google.com:aud"), "{out}");
    assert!(
        !out.stderr.contains('\u{1b}'),
        "escape codes reached the SDK: {out}"
    );
    assert_eq!(w.lab.stats().get_caller_identity_calls, 0);
}

/// A session policy goes to STS as is: a small one is accepted, one over STS's packed size
/// limit is refused at once with STS's code.
#[tokio::test(flavor = "multi_thread")]
async fn session_policies_are_sent_and_oversized_ones_refused() {
    let w = LabWorld::start().await;
    let small = w.home.write_token(
        "small-policy.json",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}"#,
    );
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--no-cache",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--policy",
            small.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let statements: Vec<String> = (0..60)
        .map(|i| format!(r#"{{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bucket-number-{i}/*"}}"#))
        .collect();
    let big = w.home.write_token(
        "big-policy.json",
        &format!(
            r#"{{"Version":"2012-10-17","Statement":[{}]}}"#,
            statements.join(",")
        ),
    );
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--no-cache",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--policy",
            big.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.code(), 1, "{out}");
    assert!(out.stderr.contains("PackedPolicyTooLarge"), "{out}");
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 2);
}

/// The generic `AWS_ENDPOINT_URL` is honoured when no STS-specific one is set, as in the SDKs.
#[tokio::test(flavor = "multi_thread")]
async fn generic_endpoint_url_is_honoured() {
    let w = LabWorld::start().await;
    let mut cmd = w
        .home
        .keyless(["aws", "credentials", "--role-arn", &w.role("gcp-deploy")]);
    w.point_at_lab(&mut cmd, &[]);
    cmd.env_remove("AWS_ENDPOINT_URL_STS")
        .env("AWS_ENDPOINT_URL", w.lab.aws_sts_url());
    let out = tokio::task::spawn_blocking(move || support::process::run(&mut cmd))
        .await
        .unwrap();
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(w.lab.stats().assume_role_with_web_identity_successes, 1);
}

/// `-v` says what happened on success: one `exchanged` line naming the Google identity, the
/// role, the session, the expiry and STS's request id (CloudTrail's `requestID`); a cache hit
/// exchanges nothing and says so at `-vv`, with keyless's own steps.
#[tokio::test(flavor = "multi_thread")]
async fn verbose_logs_one_line_per_exchange_with_role_session_expiry_and_request_id() {
    let w = LabWorld::start().await;
    let role = w.role("gcp-deploy");
    let out = w
        .keyless(&[
            "-v",
            "aws",
            "credentials",
            "--role-arn",
            &role,
            "--session-name",
            "audit-me",
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    let expiration = out.json()["Expiration"].as_str().unwrap().to_string();
    let lines: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("exchanged"))
        .collect();
    assert_eq!(lines.len(), 1, "one exchange, one line: {out}");
    let line = lines[0];
    assert!(line.contains(" INFO "), "{line}");
    for want in [
        "upstream=aws-sts".to_string(),
        "identity=iss=https://accounts.google.com".to_string(),
        format!("email={DEPLOYER}"),
        format!("role={role}"),
        "session=audit-me".to_string(),
        format!("expires_at={expiration}"),
        "duration_ms=".to_string(),
    ] {
        assert!(line.contains(&want), "{want} missing: {line}");
    }
    let request_id = line
        .split(" request_id=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_default();
    assert_eq!(request_id.len(), 36, "the lab's x-amzn-RequestId: {line}");
    // The audit log has the same exchange, with the same request id.
    let events = w.audit_events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].session_name.as_deref(), Some("audit-me"));
    assert_eq!(events[0].upstream.len(), 1);
    assert_eq!(
        events[0].upstream[0].request_id.as_deref(),
        Some(request_id)
    );
    assert_eq!(events[0].source.email.as_deref(), Some(DEPLOYER));
    assert_eq!(events[0].channel.as_deref(), Some("credential-process"));
    // And one line for the hand-over: where the credentials went, whose, until when.
    let delivered = out
        .stderr
        .lines()
        .find(|l| l.contains("delivered"))
        .unwrap_or_else(|| panic!("no delivery line: {out}"));
    for want in [
        "channel=stdout".to_string(),
        "destination=credential-process".to_string(),
        "credential=arn:aws:sts::123456789012:assumed-role/gcp-deploy/audit-me".to_string(),
        format!("expires_at={expiration}"),
    ] {
        assert!(delivered.contains(&want), "{want} missing: {delivered}");
    }

    // The same again is a cache hit: no exchange line at -v, the step named at -vv.
    let out = w
        .keyless(&[
            "-vv",
            "aws",
            "credentials",
            "--role-arn",
            &role,
            "--session-name",
            "audit-me",
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    assert!(!out.stderr.contains("exchanged"), "{out}");
    assert!(out.stderr.contains("cache hit"), "{out}");
    assert_eq!(w.audit_events().len(), 1, "a cache hit is no exchange");
    assert!(out.stderr.contains("delivered"), "{out}");
    let out = w
        .keyless(&[
            "-vv",
            "aws",
            "credentials",
            "--role-arn",
            &role,
            "--no-cache",
        ])
        .await;
    assert_eq!(out.code(), 0, "{out}");
    for step in [
        "token source: fetched an ID token",
        "AWS STS: sending AssumeRoleWithWebIdentity",
        "AWS STS: answered",
        "exchanged",
    ] {
        assert!(out.stderr.contains(step), "{step} missing: {out}");
    }
}

/// With `--log-format json` the final error is a JSON line too, with the exit code and the
/// chain of causes, so a log pipeline never meets a line it cannot parse.
#[tokio::test(flavor = "multi_thread")]
async fn json_log_format_makes_the_final_error_a_json_line() {
    let w = LabWorld::start().await;
    let token = w.write_token("intruder.jwt", INTRUDER, Duration::from_secs(3600));
    let out = w
        .keyless(&[
            "--log-format",
            "json",
            "aws",
            "credentials",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--token-source",
            &file_source(&token),
            "--no-cache",
        ])
        .await;
    assert_eq!(out.code(), 3, "{out}");
    let lines: Vec<serde_json::Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let last = lines.last().expect("an error line");
    assert_eq!(last["level"], "ERROR", "{last}");
    assert_eq!(last["fields"]["exit_code"], 3, "{last}");
    let message = last["fields"]["message"].as_str().unwrap();
    assert!(message.contains("AWS refused"), "{last}");
    let chain = last["fields"]["error_chain"].as_array().unwrap();
    assert!(!chain.is_empty(), "{last}");
}

/// Endpoint overrides carry tokens, so plain `http://` goes only to loopback: `--sts-endpoint
/// http://example.com` (or the same in `AWS_ENDPOINT_URL`) is a usage error naming the flag or
/// variable, and nothing is fetched or sent. An override from the environment that is used is
/// named in one warning per process (`whoami --role-arn` resolves the endpoint twice), and the
/// lab's own loopback URL works.
#[tokio::test(flavor = "multi_thread")]
async fn endpoint_overrides_are_https_or_loopback_and_variables_are_named_once() {
    let w = LabWorld::start().await;
    let role = w.role("gcp-deploy");
    let base = ["aws", "credentials", "--no-cache", "--role-arn", &role];

    let flag = [&base[..], &["--sts-endpoint", "http://example.com"]].concat();
    let out = w.keyless(&flag).await;
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("--sts-endpoint"), "{}", out.stderr);
    assert!(out.stderr.contains("loopback"), "{}", out.stderr);
    for variable in ["AWS_ENDPOINT_URL_STS", "KEYLESS_STS_ENDPOINT"] {
        let out = w
            .keyless_env(&base, &[(variable, "http://example.com:4566")])
            .await;
        assert_eq!(out.code(), 2, "{variable}: {}", out.stderr);
        assert!(
            out.stderr.contains("http://example.com:4566"),
            "{}",
            out.stderr
        );
    }
    let out = w
        .keyless_env(
            &base,
            &[("AWS_ENDPOINT_URL_STS", "http://example.com:4566")],
        )
        .await;
    assert!(
        out.stderr.contains("AWS_ENDPOINT_URL_STS"),
        "{}",
        out.stderr
    );
    let stats = w.lab.stats();
    assert_eq!(stats.id_tokens_minted, 0, "no token was fetched: {stats:?}");

    let sts = w.lab.aws_sts_url();
    let whoami = ["aws", "whoami", "--no-cache", "--role-arn", &role];
    let out = w.keyless(&whoami).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let named = format!("AWS_ENDPOINT_URL_STS={sts}");
    assert_eq!(out.stderr.matches(&named).count(), 1, "{}", out.stderr);

    let explicit = [&whoami[..], &["--sts-endpoint", &sts]].concat();
    let out = w.keyless(&explicit).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        !out.stderr.contains("redirects"),
        "a flag is no surprise: {}",
        out.stderr
    );
}

/// An answer larger than any STS sends (2 MiB here; the cap is 1 MiB) is refused once, with a
/// message naming the cause, instead of being read into memory or retried.
#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_sts_answer_is_a_clear_error() {
    let w = LabWorld::start().await;
    w.lab.faults().push(keyless::lab::Fault {
        service: keyless::lab::LabService::AwsSts,
        kind: keyless::lab::FaultKind::Http {
            status: 200,
            body: "<x>".repeat(700 * 1024),
        },
        times: 4,
        only: None,
    });
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--no-cache",
            "--role-arn",
            &w.role("gcp-deploy"),
        ])
        .await;
    assert_eq!(out.code(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("larger than 1024 KiB"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.len() < 4096,
        "no excerpt of the body: {}",
        out.stderr.len()
    );
    let pending = w.lab.faults().pending();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].times, 3, "not retried");
}

// ---- GitHub Actions and Kubernetes sources (the lab runs both issuers with their own keys) ----

/// `keyless ARGS` with the variables of a GitHub Actions job that may request tokens.
async fn keyless_in_a_github_job(w: &LabWorld, args: &[&str]) -> support::CommandOutput {
    let env = w.lab.github_actions_env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    w.keyless_env(args, &env).await
}

/// In a GitHub Actions job, the aws CLI and boto3, configured with nothing but a
/// `credential_process` line using `--token-source github`, act as the role that trusts the
/// repository's main branch (the lab's STS verifies the token with GitHub's own key); the
/// second client is served from the cache, keyed by the job.
#[tokio::test(flavor = "multi_thread")]
async fn a_github_job_acts_as_the_role_through_credential_process() {
    let w = LabWorld::start().await;
    let role = w.role("github-deploy");
    w.home.add_credential_process_profile(
        "ci",
        &[
            "aws",
            "credentials",
            "--role-arn",
            &role,
            "--token-source",
            "github",
        ]
        .map(String::from),
    );
    let in_job = |mut cmd: std::process::Command| {
        cmd.envs(w.lab.github_actions_env());
        w.run(cmd)
    };
    let cli = in_job(
        w.home
            .aws(["sts", "get-caller-identity", "--profile", "ci"]),
    )
    .await;
    assert_eq!(cli.code(), 0, "{cli}");
    let arn = cli.json()["Arn"].as_str().unwrap().to_string();
    assert!(
        arn.starts_with("arn:aws:sts::123456789012:assumed-role/github-deploy/"),
        "{arn}"
    );
    let mut python = w.home.command(support::venv::bin("python"));
    python.args([
        "-c",
        "import boto3; print(boto3.Session(profile_name='ci').client('sts').get_caller_identity()['Arn'])",
    ]);
    let boto = in_job(python).await;
    assert_eq!(boto.code(), 0, "{boto}");
    assert_eq!(boto.stdout.trim(), arn);
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 1);
    assert_eq!(w.lab.github_tokens_minted(), 1);

    // The same profile outside a job that may request tokens: the permission is named.
    let out = w
        .run(
            w.home
                .aws(["sts", "get-caller-identity", "--profile", "ci"]),
        )
        .await;
    assert_ne!(out.code(), 0, "{out}");
    assert!(out.stderr.contains("permissions: id-token: write"), "{out}");
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &role,
            "--token-source",
            "github",
        ])
        .await;
    assert_eq!(out.code(), 2, "a configuration to fix: {out}");
    assert!(out.stderr.contains("permissions: id-token: write"), "{out}");
}

/// A GitHub token that expired before STS saw it (tokens live five minutes) is replaced by a
/// newly minted one, once, and the exchange succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn an_expired_github_token_is_minted_again() {
    let w = LabWorld::start().await;
    w.lab.expire_next_github_tokens(1);
    let role = w.role("github-deploy");
    let out = keyless_in_a_github_job(
        &w,
        &[
            "aws",
            "credentials",
            "--no-cache",
            "--format",
            "json",
            "--role-arn",
            &role,
            "--token-source",
            "github",
        ],
    )
    .await;
    assert_eq!(out.code(), 0, "{out}");
    assert_eq!(
        out.json()["SubjectFromWebIdentityToken"],
        "repo:keyless-lab/app:ref:refs/heads/main"
    );
    assert_eq!(w.lab.github_tokens_minted(), 2);
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 2);
}

/// A job in an environment has `sub` `repo:ORG/REPO:environment:NAME`, which a trust policy
/// pinned to the main branch refuses: the refusal names GitHub's condition keys and subject
/// shapes, not Google's.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_github_token_is_explained_with_githubs_keys() {
    let mut config = keyless::lab::LabConfig::demo();
    config.github_actions.as_mut().unwrap().environment = Some("production".into());
    let w = LabWorld::start_with(config).await;
    let role = w.role("github-deploy");
    let out = keyless_in_a_github_job(
        &w,
        &[
            "aws",
            "credentials",
            "--no-cache",
            "--role-arn",
            &role,
            "--token-source",
            "github",
        ],
    )
    .await;
    assert_eq!(out.code(), 3, "{out}");
    assert!(
        out.stderr
            .contains("sub=repo:keyless-lab/app:environment:production"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("token.actions.githubusercontent.com:sub"),
        "{out}"
    );
    assert!(
        out.stderr.contains("repo:ORG/REPO:environment:NAME"),
        "{out}"
    );
    assert!(!out.stderr.contains("accounts.google.com"), "{out}");
}

/// `k8s:PATH` reads the projected token for every exchange: a token rotated for the same
/// service account keeps the cached credentials (the cache follows `iss`/`sub`, not the file),
/// while one naming another service account is a new identity, exchanged afresh, and refused
/// by the role with the cluster's condition keys.
#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_kubernetes_token_is_read_again_and_the_cache_follows_its_identity() {
    let w = LabWorld::start().await;
    let role = w.role("k8s-deploy");
    let path = w.home.home().join("projected-token");
    let source = format!("k8s:{}", path.display());
    let args = [
        "aws",
        "credentials",
        "--format",
        "json",
        "--role-arn",
        &role,
        "--token-source",
        &source,
    ];
    w.lab
        .write_kubernetes_token(&path, "default", "deployer")
        .unwrap();
    let first = w.keyless(&args).await;
    assert_eq!(first.code(), 0, "{first}");
    assert_eq!(
        first.json()["SubjectFromWebIdentityToken"],
        "system:serviceaccount:default:deployer"
    );
    assert_eq!(first.json()["Audience"], "sts.amazonaws.com");

    // The kubelet rotates the file: same service account, new token, same cache entry.
    w.lab
        .write_kubernetes_token(&path, "default", "deployer")
        .unwrap();
    let again = w.keyless(&args).await;
    assert_eq!(again.code(), 0, "{again}");
    assert_eq!(again.json()["AccessKeyId"], first.json()["AccessKeyId"]);
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 1);

    // The file now names another service account: not the cached credentials, a new exchange
    // with the new token, refused on the cluster's sub key.
    w.lab
        .write_kubernetes_token(&path, "default", "stranger")
        .unwrap();
    let other = w.keyless(&args).await;
    assert_eq!(other.code(), 3, "{other}");
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 2);
    assert!(
        other
            .stderr
            .contains("sub=system:serviceaccount:default:stranger"),
        "{other}"
    );
    assert!(
        other
            .stderr
            .contains("oidc.eks.us-east-1.amazonaws.com/id/KEYLESSLABCLUSTER0001:sub"),
        "{other}"
    );
    assert!(
        other
            .stderr
            .contains("system:serviceaccount:NAMESPACE:NAME"),
        "{other}"
    );
}
// ---------------------------------------------------------------------------------------------
// aws-oidc: AWS outbound identity federation (STS GetWebIdentityToken).

/// The environment that gives keyless an `aws-workload` role session (the SDKs' first source)
/// lasting `lifetime`.
fn role_session_env(w: &LabWorld, lifetime: Duration) -> Vec<(&'static str, String)> {
    support::lab_world::aws_env(
        &w.lab
            .issue_role_credentials("aws-workload", "app", lifetime),
    )
}

fn borrowed<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'a str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Until the account enables outbound federation, STS refuses and keyless says how to enable
/// it (exit 3: refused by the cloud); nothing is asked of AssumeRoleWithWebIdentity.
#[tokio::test(flavor = "multi_thread")]
async fn aws_oidc_on_a_disabled_account_explains_the_enable_call() {
    let w = LabWorld::start().await;
    let env = role_session_env(&w, Duration::from_secs(3600));
    let out = w
        .keyless_env(
            &[
                "aws",
                "credentials",
                "--no-cache",
                "--role-arn",
                &w.role("gcp-deploy"),
                "--token-source",
                "aws-oidc",
            ],
            &borrowed(&env),
        )
        .await;
    assert_eq!(out.code(), 3, "{out}");
    assert!(
        out.stderr
            .contains("outbound identity federation is disabled")
            && out
                .stderr
                .contains("aws iam enable-outbound-web-identity-federation"),
        "{out}"
    );
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 0);
}

/// Once enabled, `aws token-file --token-source aws-oidc` keeps a token that a relying party
/// verifies with the issuer's published keys: `sub` the role (not the session), the audience
/// asked for, AWS's claims, five minutes of life; discovery names the issuer and the JWKS.
#[tokio::test(flavor = "multi_thread")]
async fn aws_oidc_tokens_carry_awss_claims_and_verify_with_the_issuers_jwks() {
    let w = LabWorld::start().await;
    let issuer = w.lab.enable_outbound_federation();
    assert!(issuer.ends_with(".tokens.sts.global.api.aws"), "{issuer}");
    let env = role_session_env(&w, Duration::from_secs(3600));
    let path = w.home.home().join("outbound.jwt");
    let path_arg = path.display().to_string();
    let audience = "https://relying-party.example/api";
    let mut keeper = w.spawn_keyless(
        &[
            "aws",
            "token-file",
            "--path",
            &path_arg,
            "--audience",
            audience,
            "--token-source",
            "aws-oidc",
        ],
        &borrowed(&env),
    );
    keeper
        .exports(&["AWS_WEB_IDENTITY_TOKEN_FILE"], Duration::from_secs(30))
        .await;
    let token = std::fs::read_to_string(&path).unwrap();
    keeper.terminate(Duration::from_secs(10));

    let claims = w.lab.verify_outbound_token(&token).expect("verifies");
    assert_eq!(claims["iss"], issuer.as_str());
    assert_eq!(claims["sub"], w.role("aws-workload"));
    assert_eq!(claims["aud"], audience);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 300);
    let aws = &claims["https://sts.amazonaws.com/"];
    assert_eq!(aws["aws_account"], w.lab.account_id());
    assert_eq!(aws["source_region"], "us-east-1");
    // Google's key does not verify it: the issuer signs with its own.
    assert!(w.lab.jwks()["keys"][0]["kid"] != w.lab.outbound_jwks()["keys"][0]["kid"]);

    let http = reqwest::Client::new();
    let discovery: serde_json::Value = http
        .get(format!(
            "{}/.well-known/openid-configuration",
            w.lab.aws_sts_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], issuer.as_str());
    let jwks: serde_json::Value = http
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks, w.lab.outbound_jwks());
}

/// A session with two minutes left (container credentials, whose expiry the SDKs' chain
/// knows) gets a token that ends with it: STS refuses one that would outlive the session
/// (SessionDurationEscalationException). Environment keys carry no expiry, so with less than
/// STS's one-minute minimum left the refusal is explained.
#[tokio::test(flavor = "multi_thread")]
async fn aws_oidc_tokens_never_outlive_the_signing_session() {
    let mut config = keyless::lab::LabConfig::demo();
    config.credential_lifetime_cap = Some(Duration::from_secs(120));
    config.outbound_federation = true;
    let w = LabWorld::start_with(config).await;
    let path = w.home.home().join("short.jwt");
    let path_arg = path.display().to_string();
    let uri = w.lab.container_credentials_uri("aws-workload");
    let authorization = w.lab.container_authorization_token();
    let mut keeper = w.spawn_keyless(
        &[
            "aws",
            "token-file",
            "--path",
            &path_arg,
            "--token-source",
            "aws-oidc",
        ],
        &[
            ("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", &authorization),
        ],
    );
    keeper
        .exports(&["AWS_WEB_IDENTITY_TOKEN_FILE"], Duration::from_secs(30))
        .await;
    let token = std::fs::read_to_string(&path).unwrap();
    keeper.terminate(Duration::from_secs(10));
    let claims = w.lab.verify_outbound_token(&token).expect("verifies");
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((60..=120).contains(&lifetime), "{lifetime}");
    assert_eq!(claims["sub"], w.role("aws-workload"));

    let env = role_session_env(&w, Duration::from_secs(30));
    let out = w
        .keyless_env(
            &[
                "aws",
                "credentials",
                "--no-cache",
                "--role-arn",
                &w.role("gcp-deploy"),
                "--token-source",
                "aws-oidc",
            ],
            &borrowed(&env),
        )
        .await;
    assert_eq!(out.code(), 3, "{out}");
    assert!(
        out.stderr.contains("it would outlive the calling session"),
        "{out}"
    );
}

/// AWS documents that GetWebIdentityToken's tokens cannot be used with
/// AssumeRoleWithWebIdentity, even where an IAM OIDC provider names the issuer: the lab's STS
/// refuses them, and keyless says what to do instead.
#[tokio::test(flavor = "multi_thread")]
async fn aws_sts_refuses_aws_oidc_tokens_as_aws_documents() {
    let mut config = keyless::lab::LabConfig::demo();
    config.outbound_federation = true;
    let w = LabWorld::start_with(config).await;
    let provider = w
        .lab
        .outbound_issuer()
        .trim_start_matches("https://")
        .to_string();
    let env = role_session_env(&w, Duration::from_secs(3600));
    let out = w
        .keyless_env(
            &[
                "aws",
                "credentials",
                "--no-cache",
                "--role-arn",
                &w.role("gcp-deploy"),
                "--token-source",
                "aws-oidc",
            ],
            &borrowed(&env),
        )
        .await;
    assert_eq!(out.code(), 3, "{out}");
    assert!(
        out.stderr.contains("InvalidIdentityToken")
            && out
                .stderr
                .contains("cannot be used with AssumeRoleWithWebIdentity")
            && out.stderr.contains("sts:AssumeRole instead"),
        "{out}"
    );
    assert!(out.stderr.contains(&provider), "{out}");
}

/// The partner account's role in the demo lab, which trusts `gcp-deploy` sessions that send
/// the partner's external ID.
fn partner_role() -> String {
    format!(
        "arn:aws:iam::{}:role/{}",
        keyless::lab::DEMO_PARTNER_ACCOUNT_ID,
        keyless::lab::DEMO_PARTNER_ROLE
    )
}

/// The cross-account pattern: the web identity lands in account A's `gcp-deploy`, whose session
/// assumes account B's role with the external ID B requires. Every channel gets B's session
/// (credential_process JSON, whoami); a cached A session is not handed out for the chain.
#[tokio::test(flavor = "multi_thread")]
async fn a_chain_role_in_another_account_is_assumed_with_its_external_id() {
    let w = LabWorld::start().await;
    let entry = w.role("gcp-deploy");
    let plain = w
        .keyless(&["aws", "credentials", "--role-arn", &entry])
        .await;
    assert_eq!(plain.code(), 0, "{}", plain.stderr);
    let partner = partner_role();
    let chained = [
        "--role-arn",
        &entry,
        "--chain-role",
        &partner,
        "--external-id",
        keyless::lab::DEMO_PARTNER_EXTERNAL_ID,
    ];
    let mut args = vec!["aws", "credentials", "--format", "json"];
    args.extend(chained);
    let out = w.keyless(&args).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let arn = out.json()["AssumedRoleUser"]["Arn"]
        .as_str()
        .unwrap()
        .to_string();
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let host = host.split('.').next().unwrap().to_string();
    assert_eq!(
        arn,
        format!("arn:aws:sts::210987654321:assumed-role/partner-readonly/deployer@{host}"),
        "the chained session keeps the first session's name"
    );
    assert_ne!(
        out.json()["Credentials"]["AccessKeyId"],
        plain.json()["AccessKeyId"]
    );
    assert_eq!(w.lab.stats().assume_role_calls, 1);
    // The chain's own cache entry answers the next run.
    let again = w.keyless(&args).await;
    assert_eq!(again.code(), 0, "{}", again.stderr);
    assert_eq!(w.lab.stats().assume_role_calls, 1, "served from the cache");
    let mut whoami = vec!["aws", "whoami", "--no-cache"];
    whoami.extend(chained);
    let who = w.keyless(&whoami).await;
    assert_eq!(who.code(), 0, "{}", who.stderr);
    assert_eq!(who.json()["Account"], "210987654321");
    assert!(who.json()["Arn"]
        .as_str()
        .unwrap()
        .contains(":assumed-role/partner-readonly/"));
    // Three exchanges (the plain one, the chain, whoami's chain; the cache hit is none), each
    // one event whose calls are CloudTrail's records, request id for request id.
    w.assert_audit_trail(&[
        ("metadata", "aws-sts", "ok"),
        ("metadata", "aws-sts", "ok"),
        ("metadata", "aws-sts", "ok"),
    ]);
    let chained = &w.audit_events()[1];
    assert_eq!(chained.target.chain, vec![partner.clone()]);
    let actions: Vec<&str> = chained.upstream.iter().map(|c| c.action.as_str()).collect();
    assert_eq!(actions, ["AssumeRoleWithWebIdentity", "AssumeRole"]);
    assert_eq!(w.audit_events()[2].channel.as_deref(), Some("whoami"));
}

/// Without the external ID the partner's trust policy refuses at once (exit 3, one call), and
/// the message names the role, the caller and the condition to satisfy.
#[tokio::test(flavor = "multi_thread")]
async fn a_chain_role_without_its_external_id_is_refused_naming_the_condition() {
    let w = LabWorld::start().await;
    let partner = partner_role();
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--chain-role",
            &partner,
        ])
        .await;
    assert_eq!(out.code(), 3, "{}", out.stderr);
    for expected in [
        partner.as_str(),
        "AccessDenied",
        "assumed-role/gcp-deploy/",
        "no sts:ExternalId (no --external-id)",
        "--external-id",
    ] {
        assert!(out.stderr.contains(expected), "{expected}: {}", out.stderr);
    }
    assert!(out.stdout.is_empty());
    assert_eq!(
        w.lab.stats().assume_role_calls,
        1,
        "a refusal is not retried"
    );
    let why = w.lab.last_denial().unwrap_or_default();
    assert!(why.contains("sts:ExternalId"), "{why}");
    // A wrong one is refused the same way.
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--chain-role",
            &partner,
            "--external-id",
            "someone-elses-id",
        ])
        .await;
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert!(out.stderr.contains("sts:ExternalId set"), "{}", out.stderr);
    assert!(!out.stderr.contains("someone-elses-id"), "{}", out.stderr);
    // Both refusals are in the trail with AssumeRole's code, as CloudTrail has them.
    w.assert_audit_trail(&[
        ("metadata", "aws-sts", "refused"),
        ("metadata", "aws-sts", "refused"),
    ]);
    let events = w.audit_events();
    assert!(events
        .iter()
        .all(|e| e.error_class.as_deref() == Some("AccessDenied")));
    let refused = w
        .lab
        .cloudtrail_events()
        .into_iter()
        .filter(|r| r["eventName"] == "AssumeRole")
        .filter(|r| r["errorCode"] == "AccessDenied")
        .count();
    assert_eq!(refused, 2);
}

/// AWS caps chained sessions at one hour: a longer --duration with --chain-role is a usage
/// error that says so, before any call.
#[tokio::test(flavor = "multi_thread")]
async fn a_chain_with_a_duration_above_one_hour_is_a_usage_error() {
    let w = LabWorld::start().await;
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--chain-role",
            &partner_role(),
            "--duration",
            "2h",
        ])
        .await;
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("1 hour session limit for roles assumed by role chaining"),
        "{}",
        out.stderr
    );
    assert_eq!(w.lab.stats().assume_role_with_web_identity_calls, 0);
    let out = w
        .keyless(&[
            "aws",
            "credentials",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--external-id",
            "x-partner",
        ])
        .await;
    assert_eq!(out.code(), 2, "{}", out.stderr);
    assert!(out.stderr.contains("no --chain-role"), "{}", out.stderr);
}

/// Two hops: the first sets the session tag `team` (transitive) and a source identity; the
/// second role's trust requires both (`aws:PrincipalTag/team`, `sts:SourceIdentity`). keyless
/// sends them on the first hop only and the lab carries them along the chain as AWS does (a
/// transitive tag sent again, or a changed source identity, would be refused).
#[tokio::test(flavor = "multi_thread")]
async fn transitive_tags_and_the_source_identity_reach_the_last_role() {
    let mut config = keyless::lab::LabConfig::demo();
    let audit_trust = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"AWS": partner_role()},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {
                "aws:PrincipalTag/team": "payments",
                "sts:SourceIdentity": "alice"
            }}
        }]
    });
    config.other_accounts[0].roles.push(keyless::lab::LabRole {
        name: "partner-audit".into(),
        trust_policy: audit_trust.to_string(),
        max_session_duration: 3600,
    });
    let w = LabWorld::start_with(config).await;
    let audit = format!(
        "arn:aws:iam::{}:role/partner-audit",
        keyless::lab::DEMO_PARTNER_ACCOUNT_ID
    );
    let entry = w.role("gcp-deploy");
    let partner = partner_role();
    let base = [
        "aws",
        "credentials",
        "--no-cache",
        "--format",
        "json",
        "--role-arn",
        &entry,
        "--chain-role",
        &partner,
        "--chain-role",
        &audit,
        "--external-id",
        keyless::lab::DEMO_PARTNER_EXTERNAL_ID,
        "--tag",
        "cost-center=42",
        "--tag",
        "team=payments",
        "--transitive-tag-key",
        "team",
    ];
    let mut args = base.to_vec();
    args.extend(["--source-identity", "alice"]);
    let out = w.keyless(&args).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(out.json()["AssumedRoleUser"]["Arn"]
        .as_str()
        .unwrap()
        .contains("210987654321:assumed-role/partner-audit/"));
    assert_eq!(w.lab.stats().assume_role_calls, 2);
    // Without the source identity the audit role refuses, and says which condition failed.
    let out = w.keyless(&base).await;
    assert_eq!(out.code(), 3, "{}", out.stderr);
    assert!(out.stderr.contains("partner-audit"), "{}", out.stderr);
    let why = w.lab.last_denial().unwrap_or_default();
    assert!(why.contains("sts:SourceIdentity"), "{why}");
}

/// A chained hop is retried like the first exchange (throttling, 5xx), without redoing the web
/// identity step; a lasting outage of AssumeRole ends with exit 4 after the bounded attempts.
#[tokio::test(flavor = "multi_thread")]
async fn a_throttled_chain_hop_is_retried_and_an_outage_is_unavailable() {
    let w = LabWorld::start().await;
    let assume_role_fault = |code: &str, status: u16, times: u32| keyless::lab::Fault {
        service: keyless::lab::LabService::AwsSts,
        kind: keyless::lab::FaultKind::StsError {
            code: code.to_string(),
            status,
            message: None,
        },
        times,
        only: Some("AssumeRole".to_string()),
    };
    w.lab.faults().push(assume_role_fault("Throttling", 400, 1));
    w.lab
        .faults()
        .push(assume_role_fault("ServiceUnavailable", 503, 1));
    let partner = partner_role();
    let args = [
        "aws",
        "credentials",
        "--no-cache",
        "--role-arn",
        &w.role("gcp-deploy"),
        "--chain-role",
        &partner,
        "--external-id",
        keyless::lab::DEMO_PARTNER_EXTERNAL_ID,
    ];
    let out = w.keyless(&args).await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    let stats = w.lab.stats();
    assert_eq!(stats.assume_role_calls, 3, "{stats:?}");
    assert_eq!(stats.assume_role_with_web_identity_calls, 1, "{stats:?}");
    w.lab
        .faults()
        .push(assume_role_fault("ServiceUnavailable", 503, 100));
    let out = w.keyless(&args).await;
    assert_eq!(out.code(), 4, "{}", out.stderr);
    assert!(out.stderr.contains("after 4 attempts"), "{}", out.stderr);
}

/// With `-vv`, a chain logs each hop but no secret of any session the lab issued (the first
/// role's included, which only keyless saw) and not the external ID.
#[tokio::test(flavor = "multi_thread")]
async fn a_chain_logs_no_secret_of_any_hop() {
    let w = LabWorld::start().await;
    let out = w
        .keyless(&[
            "-vv",
            "aws",
            "credentials",
            "--no-cache",
            "--role-arn",
            &w.role("gcp-deploy"),
            "--chain-role",
            &partner_role(),
            "--external-id",
            keyless::lab::DEMO_PARTNER_EXTERNAL_ID,
        ])
        .await;
    assert_eq!(out.code(), 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("AssumeRole"),
        "-vv logs the hop:\n{}",
        out.stderr
    );
    let issued = w.lab.issued_secrets();
    assert!(issued.len() >= 4, "two sessions' secrets were issued");
    for secret in issued {
        assert!(
            !out.stderr.contains(secret.expose()),
            "a secret reached the log:\n{}",
            out.stderr
        );
    }
    assert!(!out.stderr.contains(keyless::lab::DEMO_PARTNER_EXTERNAL_ID));
}

// ---- The matrix: every source against AWS STS ----

/// What a source must get from the lab's AssumeRoleWithWebIdentity.
enum AwsOutcome {
    /// The role, the token's subject and the provider STS names for its issuer.
    Assumes {
        role: &'static str,
        subject: &'static str,
        provider: &'static str,
    },
    /// Exit 3 with these words in the explanation.
    Refused(&'static [&'static str]),
}

/// Every JWT source, each with the lab set-up a workload would have (the metadata server, a
/// token file, a projected Kubernetes token, a GitHub job's variables, an AWS role session),
/// reaches the role that trusts its issuer through `aws credentials`; the lab's STS verifies
/// each with its issuer's own key and evaluates the role's conditions on its claims. aws-oidc
/// is refused as AWS documents. The sources run at the same time: they share nothing.
#[tokio::test(flavor = "multi_thread")]
async fn every_jwt_source_reaches_aws() {
    let mut config = keyless::lab::LabConfig::demo();
    config.outbound_federation = true;
    let w = LabWorld::start_with(config).await;
    let google_token = w.write_token("deployer.jwt", DEPLOYER, Duration::from_secs(600));
    let projected = w.home.home().join("projected-token");
    w.lab
        .write_kubernetes_token(&projected, "default", "deployer")
        .unwrap();
    let owned = |env: Vec<(&str, String)>| -> Vec<(String, String)> {
        env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    };
    let google = "accounts.google.com";
    /// (source, environment, outcome)
    type Case = (String, Vec<(String, String)>, AwsOutcome);
    let cases: Vec<Case> = vec![
        (
            "metadata".into(),
            vec![],
            AwsOutcome::Assumes {
                role: "gcp-deploy",
                subject: "100000000000000000001",
                provider: google,
            },
        ),
        (
            format!("impersonate:{CI_RUNNER}"),
            vec![],
            AwsOutcome::Assumes {
                role: "ci-deploy",
                subject: "100000000000000000002",
                provider: google,
            },
        ),
        (
            file_source(&google_token),
            vec![],
            AwsOutcome::Assumes {
                role: "gcp-deploy",
                subject: "100000000000000000001",
                provider: google,
            },
        ),
        (
            format!("command:cat {}", google_token.display()),
            vec![],
            AwsOutcome::Assumes {
                role: "gcp-deploy",
                subject: "100000000000000000001",
                provider: google,
            },
        ),
        (
            format!("k8s:{}", projected.display()),
            vec![],
            AwsOutcome::Assumes {
                role: "k8s-deploy",
                subject: "system:serviceaccount:default:deployer",
                provider: "oidc.eks.us-east-1.amazonaws.com/id/KEYLESSLABCLUSTER0001",
            },
        ),
        (
            "github".into(),
            w.lab.github_actions_env(),
            AwsOutcome::Assumes {
                role: "github-deploy",
                subject: "repo:keyless-lab/app:ref:refs/heads/main",
                provider: "token.actions.githubusercontent.com",
            },
        ),
        (
            "aws-oidc".into(),
            owned(role_session_env(&w, Duration::from_secs(3600))),
            AwsOutcome::Refused(&[
                "InvalidIdentityToken",
                "cannot be used with AssumeRoleWithWebIdentity",
                "sts:AssumeRole instead",
            ]),
        ),
    ];
    let role_of = |outcome: &AwsOutcome| match outcome {
        AwsOutcome::Assumes { role, .. } => w.role(role),
        AwsOutcome::Refused(_) => w.role("gcp-deploy"),
    };
    let runs = cases
        .iter()
        .map(|(source, env, outcome)| {
            let args = [
                "aws",
                "credentials",
                "--no-cache",
                "--format",
                "json",
                "--role-arn",
                &role_of(outcome),
                "--token-source",
                source,
            ];
            (args.map(String::from).to_vec(), env.clone())
        })
        .collect();
    let outputs = w.keyless_all(runs).await;
    assert_eq!(outputs.len(), 7);
    for ((source, _, outcome), out) in cases.iter().zip(&outputs) {
        match outcome {
            AwsOutcome::Assumes {
                role,
                subject,
                provider,
            } => {
                assert_eq!(out.code(), 0, "{source}: {out}");
                let doc = out.json();
                let arn = doc["AssumedRoleUser"]["Arn"].as_str().unwrap();
                assert!(
                    arn.starts_with(&format!("arn:aws:sts::123456789012:assumed-role/{role}/")),
                    "{source}: {arn}"
                );
                assert_eq!(doc["SubjectFromWebIdentityToken"], *subject, "{source}");
                assert!(
                    doc["Provider"].as_str().unwrap().ends_with(provider),
                    "{source}: {doc}"
                );
                assert!(
                    doc["Credentials"]["SecretAccessKey"]
                        .as_str()
                        .is_some_and(|s| !s.is_empty()),
                    "{source}"
                );
            }
            AwsOutcome::Refused(words) => {
                assert_eq!(out.code(), 3, "{source}: {out}");
                for word in *words {
                    assert!(out.stderr.contains(word), "{source}: {word} missing: {out}");
                }
            }
        }
    }
    // One upstream mint per source that asks for its token, no more: the GitHub job's once.
    assert_eq!(w.lab.github_tokens_minted(), 1);
    // One audit event per exchange, the refusal included, and no secret in any.
    let trail: Vec<(&str, &str, &str)> = [
        "metadata",
        "impersonate",
        "file",
        "command",
        "k8s",
        "github",
    ]
    .iter()
    .map(|kind| (*kind, "aws-sts", "ok"))
    .chain([("aws-oidc", "aws-sts", "refused")])
    .collect();
    w.assert_audit_trail(&trail);
}
