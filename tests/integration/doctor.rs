//! `keyless doctor` against the lab: a trust policy deliberately wrong in each Google condition
//! key is named, with the expected and the actual value; a working federation says so; the AWS →
//! GCP doctor names the failing step.

use crate::support;

use keyless::lab::LabConfig;
use support::{CommandOutput, LabWorld};

const ID: &str = "100000000000000000001";

fn trust_policy(aud: &str, oaud: &str, sub: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": "accounts.google.com"},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                "accounts.google.com:aud": aud,
                "accounts.google.com:oaud": oaud,
                "accounts.google.com:sub": sub
            }}
        }]
    })
    .to_string()
}

/// Runs `keyless doctor aws` for gcp-deploy with `policy` both in the lab and given as a file.
async fn doctor_with_policy(policy: String) -> CommandOutput {
    let mut config = LabConfig::demo();
    config
        .roles
        .iter_mut()
        .find(|r| r.name == "gcp-deploy")
        .unwrap()
        .trust_policy = policy.clone();
    let w = LabWorld::start_with(config).await;
    let file = w.home.write_token("trust.json", &policy);
    w.keyless(&[
        "doctor",
        "aws",
        "--role-arn",
        &w.role("gcp-deploy"),
        "--trust-policy",
        file.to_str().unwrap(),
    ])
    .await
}

/// Each condition key set to a wrong value is named with the value expected and the token's.
#[tokio::test(flavor = "multi_thread")]
async fn each_wrong_condition_key_is_named() {
    let cases = [
        (
            trust_policy("sts.amazonaws.com", "sts.amazonaws.com", ID),
            "accounts.google.com:aud",
            "sts.amazonaws.com",
        ),
        (
            trust_policy(ID, "https://example.com", ID),
            "accounts.google.com:oaud",
            "https://example.com",
        ),
        (
            trust_policy(ID, "sts.amazonaws.com", "999"),
            "accounts.google.com:sub",
            "999",
        ),
    ];
    for (policy, key, wrong) in cases {
        let out = doctor_with_policy(policy).await;
        assert_eq!(out.code(), 3, "{out}");
        assert!(
            out.stdout.contains(&format!("expects {key} = \"{wrong}\"")),
            "{key}: {out}"
        );
        assert!(
            out.stdout
                .contains("verdict: the trust policy refuses this token"),
            "{out}"
        );
        assert!(
            out.stdout.contains("AccessDenied"),
            "the real exchange was tried: {out}"
        );
    }
}

/// The policy keyless recommends works, and the doctor says so.
#[tokio::test(flavor = "multi_thread")]
async fn a_working_federation_is_confirmed() {
    let out = doctor_with_policy(trust_policy(ID, "sts.amazonaws.com", ID)).await;
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stdout
            .contains(&format!("accounts.google.com:aud = {ID}")),
        "{out}"
    );
    assert!(out.stdout.contains("✓ allowed by statement #1"), "{out}");
    assert!(
        out.stdout.contains("verdict: the federation works."),
        "{out}"
    );
}

async fn doctor_gcp(w: &LabWorld, sa: &str, env: Vec<(&'static str, String)>) -> CommandOutput {
    let audience = w.lab.workload_identity_audience();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    w.keyless_env(
        &[
            "doctor",
            "gcp",
            "--audience",
            &audience,
            "--service-account",
            sa,
        ],
        &env,
    )
    .await
}

/// AWS → GCP: the refused IAM user is shown with the attributes Google derives and the failing
/// step; the role session works; a service account without the binding fails at step 3.
#[tokio::test(flavor = "multi_thread")]
async fn gcp_doctor_names_the_failing_step() {
    let w = LabWorld::start().await;
    let copycat = "copycat@keyless-lab.iam.gserviceaccount.com";
    let out = doctor_gcp(
        &w,
        copycat,
        support::lab_world::aws_env(&w.lab.aws_user_credentials("ci-user")),
    )
    .await;
    assert_eq!(out.code(), 3, "{out}");
    assert!(
        out.stdout
            .contains("attribute.aws_role = arn:aws:iam::123456789012:user/ci-user"),
        "{out}"
    );
    assert!(out.stdout.contains("verdict: Google STS refuses"), "{out}");

    let session =
        w.lab
            .issue_role_credentials("aws-workload", "doc", std::time::Duration::from_secs(3600));
    let out = doctor_gcp(&w, copycat, support::lab_world::aws_env(&session)).await;
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stdout
            .contains("attribute.aws_role = arn:aws:sts::123456789012:assumed-role/aws-workload"),
        "{out}"
    );
    assert!(
        out.stdout.contains("verdict: the federation works."),
        "{out}"
    );

    let out = doctor_gcp(
        &w,
        "deployer@keyless-lab.iam.gserviceaccount.com",
        support::lab_world::aws_env(&session),
    )
    .await;
    assert_eq!(out.code(), 3, "{out}");
    assert!(out.stdout.contains("3. impersonating"), "{out}");
    assert!(
        out.stdout.contains("roles/iam.workloadIdentityUser"),
        "{out}"
    );
}

/// A JWT source: the doctor shows the token's claims and the google.subject the default mapping
/// derives, then the exchange; a token of another repository owner is refused by the condition.
#[tokio::test(flavor = "multi_thread")]
async fn gcp_doctor_walks_a_jwt_source() {
    let w = LabWorld::start().await;
    let provider = w
        .lab
        .provider_audience(keyless::lab::DEMO_POOL, keyless::lab::DEMO_OIDC_PROVIDER);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (owner, code, verdict) in [
        ("keyless-lab", 0, "verdict: the federation works."),
        ("intruder", 3, "verdict: Google STS refuses this identity"),
    ] {
        let jwt = w.lab.sign_claims(&serde_json::json!({
            "iss": keyless::lab::DEMO_OIDC_ISSUER, "aud": provider, "iat": now, "exp": now + 600,
            "sub": format!("repo:{owner}/app:ref:refs/heads/main"), "repository_owner": owner,
        }));
        let path = w.home.write_token(&format!("{owner}.jwt"), &jwt);
        let source = format!("file:{}", path.display());
        let out = w
            .keyless_env(
                &[
                    "doctor",
                    "gcp",
                    "--audience",
                    &provider,
                    "--token-source",
                    &source,
                    "--service-account",
                    "copycat@keyless-lab.iam.gserviceaccount.com",
                ],
                &[],
            )
            .await;
        assert_eq!(out.code(), code, "{out}");
        assert!(
            out.stdout.contains(&format!(
                "google.subject = repo:{owner}/app:ref:refs/heads/main"
            )),
            "{out}"
        );
        assert!(
            out.stdout.contains(&format!(
                "must name {} as its issuer",
                keyless::lab::DEMO_OIDC_ISSUER
            )),
            "{out}"
        );
        assert!(out.stdout.contains(verdict), "{out}");
        assert!(
            !out.stdout.contains(&jwt),
            "the token itself is never shown"
        );
    }
}

/// Without `--trust-policy`, the doctor reads the role's policy with iam:GetRole (here from
/// moto, through `AWS_ENDPOINT_URL`) and names the condition that does not match the token.
#[test]
fn trust_policy_is_read_with_get_role() {
    let moto = support::Moto::start();
    let identity = support::GoogleIdentity::deployer();
    let mut policy = identity.trust_policy();
    policy["Statement"][0]["Condition"]["StringEquals"]["accounts.google.com:aud"] =
        serde_json::json!("sts.amazonaws.com");
    let created = moto.create(&serde_json::json!({
        "roles": [{"name": "doctored", "trust_policy": policy, "policy": null}],
        "buckets": [],
        "queues": [],
    }));
    let role_arn = created["roles"]["doctored"].as_str().unwrap().to_string();
    let home = support::AwsHome::new(&moto.endpoint());
    let token = home.write_token("id-token", &identity.id_token());
    let out = support::expect_success(
        home.keyless([
            "doctor",
            "aws",
            "--role-arn",
            &role_arn,
            "--token-source",
            &format!("file:{}", token.display()),
        ])
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env(
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
    );
    assert!(out.stdout.contains("read with iam:GetRole"), "{out}");
    assert!(
        out.stdout
            .contains("expects accounts.google.com:aud = \"sts.amazonaws.com\""),
        "{out}"
    );
    // moto does not check trust policies, so the exchange itself succeeds: the doctor says the
    // policy it read would refuse the token.
    assert!(out.stdout.contains("would refuse this token"), "{out}");
}

/// For a Kubernetes token the doctor shows the cluster's IAM OIDC provider as the principal, the
/// cluster's own condition keys with the token's values, what its subjects look like, and which
/// key the trust policy refuses.
#[tokio::test(flavor = "multi_thread")]
async fn a_kubernetes_token_is_diagnosed_with_its_issuers_keys() {
    let w = LabWorld::start().await;
    let token = w.home.home().join("projected-token");
    w.lab
        .write_kubernetes_token(&token, "default", "stranger")
        .unwrap();
    let role = w
        .lab
        .config()
        .role("k8s-deploy")
        .unwrap()
        .trust_policy
        .clone();
    let policy = w.home.write_token("trust.json", &role);
    let out = w
        .keyless(&[
            "doctor",
            "aws",
            "--role-arn",
            &w.role("k8s-deploy"),
            "--token-source",
            &format!("k8s:{}", token.display()),
            "--trust-policy",
            policy.to_str().unwrap(),
        ])
        .await;
    assert_eq!(out.code(), 3, "{out}");
    let provider = "oidc.eks.us-east-1.amazonaws.com/id/KEYLESSLABCLUSTER0001";
    assert!(
        out.stdout.contains(&format!(
            "principal arn:aws:iam::123456789012:oidc-provider/{provider}"
        )),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!(
            "{provider}:sub = system:serviceaccount:default:stranger"
        )),
        "{out}"
    );
    assert!(
        out.stdout.contains("system:serviceaccount:NAMESPACE:NAME"),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!(
            "expects {provider}:sub = \"system:serviceaccount:default:deployer\""
        )),
        "{out}"
    );
    assert!(!out.stdout.contains("accounts.google.com"), "{out}");
}

const EKS_ISSUER: &str = "https://oidc.eks.us-east-1.amazonaws.com/id/LAB0123456789ABCDEF";
const EKS_HOST: &str = "oidc.eks.us-east-1.amazonaws.com/id/LAB0123456789ABCDEF";

/// `keyless doctor aws` for a Kubernetes token (from `file:`) against a role trusting `policy`,
/// with the cluster registered as the account's IAM OIDC provider.
async fn doctor_with_a_kubernetes_token(policy: serde_json::Value, sub: &str) -> CommandOutput {
    let mut config = LabConfig::demo();
    config.oidc_providers.push(keyless::lab::LabOidcProvider {
        issuer: EKS_ISSUER.to_string(),
        client_ids: vec!["sts.amazonaws.com".to_string()],
    });
    let policy = policy.to_string().replace("ACCOUNT", &config.account_id);
    config.roles.push(keyless::lab::LabRole {
        name: "payments".to_string(),
        trust_policy: policy.clone(),
        max_session_duration: 3600,
    });
    let w = LabWorld::start_with(config).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let token = w.lab.sign_claims(&serde_json::json!({
        "iss": EKS_ISSUER, "aud": ["sts.amazonaws.com"], "sub": sub, "iat": now, "exp": now + 600
    }));
    let token = w.home.write_token("k8s.jwt", &token);
    let file = w.home.write_token("trust.json", &policy);
    w.keyless(&[
        "doctor",
        "aws",
        "--role-arn",
        &w.role("payments"),
        "--token-source",
        &format!("file:{}", token.display()),
        "--trust-policy",
        file.to_str().unwrap(),
    ])
    .await
}

fn oidc_trust(host: &str, sub: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:aws:iam::ACCOUNT:oidc-provider/{host}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {format!("{host}:aud"): "sts.amazonaws.com", format!("{host}:sub"): sub}}
        }]
    })
}

/// A Kubernetes token of another namespace: the cluster's own `:sub` key is named with both
/// values, the principal is the cluster's IAM OIDC provider, and the hint reads the namespace.
#[tokio::test(flavor = "multi_thread")]
async fn a_kubernetes_subject_of_another_namespace_is_named_with_the_clusters_keys() {
    let out = doctor_with_a_kubernetes_token(
        oidc_trust(EKS_HOST, "system:serviceaccount:payments:app"),
        "system:serviceaccount:default:app",
    )
    .await;
    assert_eq!(out.code(), 3, "{out}");
    assert!(
        out.stdout.contains(&format!(
            "expects {EKS_HOST}:sub = \"system:serviceaccount:payments:app\" but the token gives \"system:serviceaccount:default:app\""
        )),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!("oidc-provider/{EKS_HOST})")),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("hint: a Kubernetes token's sub is system:serviceaccount:NAMESPACE:NAME")
            && out
                .stdout
                .contains("this one is namespace default, service account app"),
        "{out}"
    );
    assert!(!out.stdout.contains("accounts.google.com"), "{out}");

    let working = doctor_with_a_kubernetes_token(
        oidc_trust(EKS_HOST, "system:serviceaccount:payments:app"),
        "system:serviceaccount:payments:app",
    )
    .await;
    assert_eq!(working.code(), 0, "{working}");
    assert!(
        working.stdout.contains("verdict: the federation works."),
        "{working}"
    );
}

/// A trust policy written for another issuer (GitHub) does not apply to a cluster's token:
/// the doctor says which principal the policy trusts and which one the token is.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_for_another_issuer_names_both_principals() {
    let out = doctor_with_a_kubernetes_token(
        oidc_trust(
            "token.actions.githubusercontent.com",
            "repo:my-org/my-repo:ref:refs/heads/main",
        ),
        "system:serviceaccount:payments:app",
    )
    .await;
    assert_eq!(out.code(), 3, "{out}");
    assert!(
        out.stdout
            .contains("oidc-provider/token.actions.githubusercontent.com but this token's issuer")
            && out.stdout.contains("is the principal arn:aws:iam::"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains(&format!("oidc-provider/{EKS_HOST}: trust that principal")),
        "{out}"
    );
}
