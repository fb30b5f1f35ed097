//! `keyless doctor` against the lab: a trust policy deliberately wrong in each Google condition
//! key is named, with the expected and the actual value; a working federation says so; the AWS →
//! GCP doctor names the failing step.

mod support;

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
