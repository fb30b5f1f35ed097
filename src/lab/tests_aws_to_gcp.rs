//! In-process tests of the AWS → Google direction: each starts a lab, gets AWS credentials the
//! way a workload would (static keys, AssumeRole, IMDSv2, the container endpoint, IRSA), signs
//! with the `aws-sigv4` crate, and proves one check Google STS, IAM or AWS makes.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::*;

const COPYCAT: &str = "copycat@keyless-lab.iam.gserviceaccount.com";
const CI_RUNNER: &str = "ci-runner@keyless-lab.iam.gserviceaccount.com";
const EKS_POD: &str = "eks-pod@keyless-lab.iam.gserviceaccount.com";
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const STS_URL: &str =
    "https://sts.us-east-1.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";
const STS_HOST: &str = "sts.us-east-1.amazonaws.com";

use super::tests::{demo_lab, http, xml_text};

/// Signs `method url` for STS us-east-1 with the given headers and body; returns all headers to
/// send (the given ones first, then the signer's).
fn sign_sts(
    creds: &crate::credentials::AwsCredentials,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    at: SystemTime,
) -> Vec<(String, String)> {
    // The signer keyless uses, so these tests also check it against the lab's verifier.
    let signed = crate::exchange::aws_sts::sign_request(
        method,
        url,
        headers,
        body,
        creds,
        "us-east-1",
        "sts",
        at,
    )
    .unwrap();
    headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain(signed.into_iter().map(|(k, v)| (k, v.expose().to_string())))
        .collect()
}

/// How the subject token carries `x-goog-cloud-target-resource`.
#[derive(Clone, Copy, PartialEq)]
enum Target<'a> {
    /// Signed, as keyless and the Go/Rust libraries do.
    Signed(&'a str),
    /// Added after signing, as google-auth-python does.
    Unsigned(&'a str),
}

/// The URL-encoded serialized signed GetCallerIdentity that Google STS takes as subject token.
fn subject_token(
    creds: &crate::credentials::AwsCredentials,
    target: Target<'_>,
    at: SystemTime,
) -> String {
    let mut signed_headers = vec![("host", STS_HOST)];
    if let Target::Signed(audience) = target {
        signed_headers.push(("x-goog-cloud-target-resource", audience));
    }
    let mut headers = sign_sts(creds, "POST", STS_URL, &signed_headers, b"", at);
    if let Target::Unsigned(audience) = target {
        headers.push(("x-goog-cloud-target-resource".into(), audience.into()));
    }
    let headers: Vec<Value> = headers
        .into_iter()
        .map(|(k, v)| json!({"key": k, "value": v}))
        .collect();
    let doc = json!({"url": STS_URL, "method": "POST", "headers": headers});
    percent_encoding::utf8_percent_encode(&doc.to_string(), percent_encoding::NON_ALPHANUMERIC)
        .to_string()
}

/// Posts a token exchange; returns (status, JSON answer).
pub(super) async fn exchange(lab: &Lab, audience: &str, subject_token: &str) -> (u16, Value) {
    let r = http()
        .post(lab.google_sts_url())
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", audience),
            ("scope", CLOUD_PLATFORM),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token", subject_token),
            (
                "subject_token_type",
                "urn:ietf:params:aws:token-type:aws4_request",
            ),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn workload_credentials(lab: &Lab) -> crate::credentials::AwsCredentials {
    lab.issue_role_credentials("aws-workload", "build-42", Duration::from_secs(3600))
}

/// A federated access token for an `aws-workload` session.
pub(super) async fn federated_token(lab: &Lab) -> String {
    let aud = lab.workload_identity_audience();
    let token = subject_token(
        &workload_credentials(lab),
        Target::Signed(&aud),
        SystemTime::now(),
    );
    let (status, answer) = exchange(lab, &aud, &token).await;
    assert_eq!(status, 200, "{answer}");
    answer["access_token"].as_str().unwrap().to_string()
}

pub(super) async fn generate_access_token(
    lab: &Lab,
    bearer: &str,
    email: &str,
    lifetime: &str,
) -> (u16, Value) {
    let r = http()
        .post(format!(
            "{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
            lab.google_apis_url()
        ))
        .bearer_auth(bearer)
        .json(&json!({"scope": [CLOUD_PLATFORM], "lifetime": lifetime}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn list_buckets(lab: &Lab, bearer: &str) -> (u16, Value) {
    let r = http()
        .get(format!(
            "{}/storage/v1/b?project=keyless-lab",
            lab.google_apis_url()
        ))
        .bearer_auth(bearer)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn caller_identity(lab: &Lab, creds: &crate::credentials::AwsCredentials) -> (u16, String) {
    let url = format!("{}/", lab.aws_sts_url());
    let body = "Action=GetCallerIdentity&Version=2011-06-15";
    let headers = sign_sts(
        creds,
        "POST",
        &url,
        &[("content-type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
        SystemTime::now(),
    );
    let mut request = http().post(url).body(body);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

// ---------------------------------------------------------------- Google STS

#[tokio::test]
async fn a_signed_subject_token_of_the_workload_role_gets_a_federated_token() {
    let lab = demo_lab().await;
    let aud = lab.workload_identity_audience();
    assert_eq!(aud, "//iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/providers/aws-lab");
    assert_eq!(
        lab.google_sts_url(),
        format!("{}/v1/token", lab.google_apis_url())
    );
    let token = subject_token(
        &workload_credentials(&lab),
        Target::Signed(&aud),
        SystemTime::now(),
    );
    let (status, answer) = exchange(&lab, &aud, &token).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 3600);
    let access = answer["access_token"].as_str().unwrap();
    let grant = lab
        .state
        .access_grant(access)
        .expect("the lab remembers it");
    assert_eq!(
        grant.principal,
        "principal://iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/keyless-pool/subject/arn:aws:sts::123456789012:assumed-role/aws-workload/build-42"
    );
    let federation = grant.federation.unwrap();
    assert_eq!(
        federation.attributes["aws_role"],
        "arn:aws:sts::123456789012:assumed-role/aws-workload"
    );
    assert_eq!(federation.attributes["aws_account"], "123456789012");
    let stats = lab.stats();
    assert_eq!(
        (stats.google_sts_exchanges, stats.google_sts_refusals),
        (1, 0)
    );

    // The federated token is a bearer token for Google APIs directly (principalSet viewer).
    let (status, buckets) = list_buckets(&lab, access).await;
    assert_eq!(status, 200, "{buckets}");
    assert_eq!(buckets["items"][0]["name"], "keyless-lab-artifacts");
}

#[tokio::test]
async fn an_unsigned_target_header_is_accepted_as_google_auth_python_sends_it() {
    let lab = demo_lab().await;
    let aud = lab.workload_identity_audience();
    let creds = workload_credentials(&lab);
    let token = subject_token(&creds, Target::Unsigned(&aud), SystemTime::now());
    let (status, answer) = exchange(&lab, &aud, &token).await;
    assert_eq!(status, 200, "{answer}");
    // Either form of the audience, with or without `https:`, binds the token.
    let https = format!("https:{aud}");
    let token = subject_token(&creds, Target::Signed(&https), SystemTime::now());
    assert_eq!(exchange(&lab, &aud, &token).await.0, 200);
}

#[tokio::test]
async fn a_token_bound_to_another_audience_is_refused() {
    let lab = demo_lab().await;
    let aud = lab.workload_identity_audience();
    let other = aud.replace("providers/aws-lab", "providers/other");
    for target in [Target::Signed(&other), Target::Unsigned(&other)] {
        let token = subject_token(&workload_credentials(&lab), target, SystemTime::now());
        let (status, answer) = exchange(&lab, &aud, &token).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_grant"))
        );
        assert!(
            answer["error_description"]
                .as_str()
                .unwrap()
                .contains("x-goog-cloud-target-resource"),
            "{answer}"
        );
    }
    assert!(lab.last_denial().unwrap().contains("cannot be replayed"));
    assert_eq!(lab.stats().google_sts_refusals, 2);
}

#[tokio::test]
async fn a_tampered_signature_expired_or_unknown_credentials_are_refused() {
    let lab = demo_lab().await;
    let aud = lab.workload_identity_audience();
    let creds = workload_credentials(&lab);
    let token = subject_token(&creds, Target::Signed(&aud), SystemTime::now());
    // Flip one hex digit of the signature (inside the URL-encoded JSON).
    let at = token.find("Signature%3D").unwrap() + "Signature%3D".len();
    let mut tampered = token.clone().into_bytes();
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    let (status, answer) = exchange(&lab, &aud, &String::from_utf8(tampered).unwrap()).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let description = answer["error_description"].as_str().unwrap();
    assert!(
        description.contains("SignatureDoesNotMatch"),
        "{description}"
    );

    // A secret the lab never issued (a forger who knows only the key id).
    let mut forged = creds.clone();
    forged.secret_access_key = crate::secret::Secret::new("f".repeat(40));
    let token = subject_token(&forged, Target::Signed(&aud), SystemTime::now());
    let (_, answer) = exchange(&lab, &aud, &token).await;
    assert!(answer["error_description"]
        .as_str()
        .unwrap()
        .contains("SignatureDoesNotMatch"));

    let mut unknown = creds.clone();
    unknown.access_key_id = "ASIAUNKNOWNUNKNOWN00".into();
    let token = subject_token(&unknown, Target::Signed(&aud), SystemTime::now());
    let (_, answer) = exchange(&lab, &aud, &token).await;
    assert!(answer["error_description"]
        .as_str()
        .unwrap()
        .contains("InvalidClientTokenId"));

    let expired = lab.issue_role_credentials("aws-workload", "old", Duration::ZERO);
    let token = subject_token(&expired, Target::Signed(&aud), SystemTime::now());
    let (_, answer) = exchange(&lab, &aud, &token).await;
    assert!(answer["error_description"]
        .as_str()
        .unwrap()
        .contains("ExpiredToken"));

    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    let token = subject_token(&creds, Target::Signed(&aud), an_hour_ago);
    let (_, answer) = exchange(&lab, &aud, &token).await;
    assert!(
        answer["error_description"]
            .as_str()
            .unwrap()
            .contains("Signature expired"),
        "{answer}"
    );
    assert_eq!(lab.stats().google_sts_exchanges, 0);
}

#[tokio::test]
async fn an_unknown_pool_is_an_invalid_target_and_malformed_requests_are_invalid_requests() {
    let lab = demo_lab().await;
    let aud = lab.workload_identity_audience();
    let creds = workload_credentials(&lab);
    for bad in [
        aud.replace("keyless-pool", "nope"),
        aud.replace("424242424242", "111111111111"),
        "sts.amazonaws.com".to_string(),
    ] {
        let token = subject_token(&creds, Target::Signed(&bad), SystemTime::now());
        let (status, answer) = exchange(&lab, &bad, &token).await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_target")),
            "{bad}"
        );
    }
    let (status, answer) = exchange(&lab, &aud, "not%20json").await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let r = http()
        .post(lab.google_sts_url())
        .form(&[(
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        )])
        .send()
        .await
        .unwrap();
    let answer: Value = r.json().await.unwrap();
    assert_eq!(answer["error"], "invalid_request");
    assert!(answer["error_description"]
        .as_str()
        .unwrap()
        .contains("audience"));
}

#[tokio::test]
async fn ci_user_static_keys_are_verified_but_refused_by_the_attribute_condition() {
    let lab = demo_lab().await;
    let aud = lab.workload_identity_audience();
    let ci_user = lab.aws_user_credentials("ci-user");
    assert!(ci_user.access_key_id.starts_with("AKIA"));
    assert!(ci_user.session_token.is_none() && ci_user.expiration.is_none());
    // AWS knows the user.
    let (status, body) = caller_identity(&lab, &ci_user).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        xml_text(&body, "Arn").as_deref(),
        Some("arn:aws:iam::123456789012:user/ci-user")
    );
    assert!(xml_text(&body, "UserId").unwrap().starts_with("AIDA"));
    // Google verifies the signature, then the condition refuses the user's ARN.
    let token = subject_token(&ci_user, Target::Signed(&aud), SystemTime::now());
    let (status, answer) = exchange(&lab, &aud, &token).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"], "unauthorized_client");
    assert_eq!(
        answer["error_description"],
        "The given credential is rejected by the attribute condition."
    );
    let why = lab.last_denial().unwrap();
    assert!(
        why.contains("attribute.aws_role = \"arn:aws:iam::123456789012:user/ci-user\""),
        "{why}"
    );
    assert_eq!(lab.stats().google_sts_refusals, 1);
}

#[tokio::test]
async fn another_accounts_caller_and_unsupported_conditions_are_refused() {
    let mut config = LabConfig::demo();
    config.workload_identity_pools[0].providers[0].aws_account_id = "999999999999".into();
    let lab = Lab::start(config).await.unwrap();
    let aud = lab.workload_identity_audience();
    let token = subject_token(
        &workload_credentials(&lab),
        Target::Signed(&aud),
        SystemTime::now(),
    );
    let (_, answer) = exchange(&lab, &aud, &token).await;
    assert_eq!(answer["error"], "invalid_grant");
    assert!(lab
        .last_denial()
        .unwrap()
        .contains("accepts only account 999999999999"));

    let mut config = LabConfig::demo();
    config.workload_identity_pools[0].providers[0].attribute_condition =
        Some("size(attribute.aws_role) > 0".into());
    let err = Lab::start(config).await.unwrap_err().to_string();
    assert!(
        err.contains("keyless-pool/aws-lab") && err.contains("size()"),
        "{err}"
    );
}

// ---------------------------------------------------------------- IAM Credentials, federated

#[tokio::test]
async fn a_federated_token_impersonates_only_service_accounts_that_bind_it() {
    let lab = demo_lab().await;
    let federated = federated_token(&lab).await;
    let (status, answer) = generate_access_token(&lab, &federated, COPYCAT, "3600s").await;
    assert_eq!(status, 200, "{answer}");
    let sa_token = answer["accessToken"].as_str().unwrap();
    assert_eq!(lab.state.access_grant(sa_token).unwrap().principal, COPYCAT);
    let (status, _) = list_buckets(&lab, sa_token).await;
    assert_eq!(status, 200);

    let (status, answer) = generate_access_token(&lab, &federated, CI_RUNNER, "3600s").await;
    assert_eq!(status, 403);
    assert_eq!(answer["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(
        answer["error"]["message"],
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."
    );
    assert!(lab
        .last_denial()
        .unwrap()
        .contains("Workload Identity User"));

    let r = http()
        .post(format!(
            "{}/v1/projects/-/serviceAccounts/{COPYCAT}:generateIdToken",
            lab.google_apis_url()
        ))
        .bearer_auth(&federated)
        .json(&json!({"audience": "https://example.com", "includeEmail": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let (status, answer) = generate_access_token(&lab, &federated, COPYCAT, "7200s").await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("constraints/iam.allowServiceAccountCredentialLifetimeExtension"),
        "{answer}"
    );
}

#[tokio::test]
async fn the_lifetime_extension_org_policy_allows_up_to_twelve_hours() {
    let config = LabConfig {
        allow_service_account_lifetime_extension: true,
        ..LabConfig::demo()
    };
    let lab = Lab::start(config).await.unwrap();
    let federated = federated_token(&lab).await;
    let (status, answer) = generate_access_token(&lab, &federated, COPYCAT, "7200s").await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) = generate_access_token(&lab, &federated, COPYCAT, "43201s").await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn a_principal_set_for_another_role_does_not_see_the_bucket() {
    let mut config = LabConfig::demo();
    config.workload_identity_pools[0].providers[0].attribute_condition = None;
    let lab = Lab::start(config).await.unwrap();
    let aud = lab.workload_identity_audience();
    let other = lab.issue_role_credentials("gcp-deploy", "x", Duration::from_secs(900));
    let token = subject_token(&other, Target::Signed(&aud), SystemTime::now());
    let (status, answer) = exchange(&lab, &aud, &token).await;
    assert_eq!(status, 200, "{answer}");
    let access = answer["access_token"].as_str().unwrap();
    let (status, answer) = list_buckets(&lab, access).await;
    assert_eq!(status, 403, "{answer}");
    let (status, _) = generate_access_token(&lab, access, COPYCAT, "3600s").await;
    assert_eq!(status, 403);
}

// ---------------------------------------------------------------- AWS: AssumeRole

async fn assume_role(
    lab: &Lab,
    creds: Option<&crate::credentials::AwsCredentials>,
    role: &str,
    extra: &[(&str, &str)],
) -> (u16, String) {
    let url = format!("{}/", lab.aws_sts_url());
    let role_arn = lab.role_arn(role);
    let mut form = vec![
        ("Action", "AssumeRole"),
        ("Version", "2011-06-15"),
        ("RoleArn", role_arn.as_str()),
        ("RoleSessionName", "from-ci"),
    ];
    form.extend_from_slice(extra);
    let body = serde_urlencoded::to_string(&form).unwrap();
    let mut request = http().post(&url).body(body.clone());
    let content_type = [("content-type", "application/x-www-form-urlencoded")];
    let headers = match creds {
        Some(c) => sign_sts(
            c,
            "POST",
            &url,
            &content_type,
            body.as_bytes(),
            SystemTime::now(),
        ),
        None => vec![(content_type[0].0.into(), content_type[0].1.into())],
    };
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test]
async fn assume_role_signed_by_ci_user_gets_the_workload_role() {
    let lab = demo_lab().await;
    let ci_user = lab.aws_user_credentials("ci-user");
    let (status, body) = assume_role(
        &lab,
        Some(&ci_user),
        "aws-workload",
        &[("DurationSeconds", "7200")],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body
        .starts_with("<AssumeRoleResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"));
    assert_eq!(
        xml_text(&body, "Arn").as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/aws-workload/from-ci")
    );
    let session = crate::credentials::AwsCredentials {
        access_key_id: xml_text(&body, "AccessKeyId").unwrap(),
        secret_access_key: crate::secret::Secret::new(xml_text(&body, "SecretAccessKey").unwrap()),
        session_token: Some(crate::secret::Secret::new(
            xml_text(&body, "SessionToken").unwrap(),
        )),
        expiration: None,
    };
    // The session is a full AWS identity: STS knows it, and Google STS admits it.
    let (status, body) = caller_identity(&lab, &session).await;
    assert_eq!(status, 200, "{body}");
    let aud = lab.workload_identity_audience();
    let token = subject_token(&session, Target::Signed(&aud), SystemTime::now());
    assert_eq!(exchange(&lab, &aud, &token).await.0, 200);
    // Role chaining is capped at one hour.
    let (status, body) = assume_role(
        &lab,
        Some(&session),
        "aws-workload",
        &[("DurationSeconds", "7200")],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("role chaining"));
    assert_eq!(lab.stats().assume_role_calls, 2);
}

#[tokio::test]
async fn assume_role_unsigned_forged_or_untrusted_is_refused() {
    let lab = demo_lab().await;
    let (status, body) = assume_role(&lab, None, "aws-workload", &[]).await;
    assert_eq!(
        (status, xml_text(&body, "Code").as_deref()),
        (403, Some("MissingAuthenticationToken"))
    );
    let mut forged = lab.aws_user_credentials("ci-user");
    forged.secret_access_key = crate::secret::Secret::new("x".repeat(40));
    let (status, body) = assume_role(&lab, Some(&forged), "aws-workload", &[]).await;
    assert_eq!(
        (status, xml_text(&body, "Code").as_deref()),
        (403, Some("SignatureDoesNotMatch"))
    );
    // gcp-deploy trusts only Google tokens.
    let ci_user = lab.aws_user_credentials("ci-user");
    let (status, body) = assume_role(&lab, Some(&ci_user), "gcp-deploy", &[]).await;
    assert_eq!(
        (status, xml_text(&body, "Code").as_deref()),
        (403, Some("AccessDenied"))
    );
    assert_eq!(
        xml_text(&body, "Message").as_deref(),
        Some("User: arn:aws:iam::123456789012:user/ci-user is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::123456789012:role/gcp-deploy")
    );
    assert!(lab.last_denial().unwrap().contains("names none of"));
}

#[tokio::test]
async fn an_eks_pod_token_assumes_the_workload_role_with_web_identity() {
    let lab = demo_lab().await;
    let token = lab.mint_id_token(EKS_POD, "sts.amazonaws.com", Duration::from_secs(3600));
    let role_arn = lab.role_arn("aws-workload");
    let r = http()
        .post(lab.aws_sts_url())
        .form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role_arn.as_str()),
            ("RoleSessionName", "eks-pod"),
            ("WebIdentityToken", token.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    assert_eq!(
        xml_text(&body, "Arn").as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/aws-workload/eks-pod")
    );
}

// ---------------------------------------------------------------- IMDSv2 and containers

#[tokio::test]
async fn imdsv2_hands_out_the_instance_role_only_with_a_session_token() {
    let lab = demo_lab().await;
    let base = lab.imds_endpoint();
    let creds_path = format!("{base}/latest/meta-data/iam/security-credentials/");
    assert_eq!(http().get(&creds_path).send().await.unwrap().status(), 401);
    for bad_ttl in ["0", "21601", "x"] {
        let r = http()
            .put(format!("{base}/latest/api/token"))
            .header("X-aws-ec2-metadata-token-ttl-seconds", bad_ttl)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad_ttl}");
    }
    let r = http()
        .put(format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        .header("X-Forwarded-For", "10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = http()
        .put(format!("{base}/latest/api/token"))
        .header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.text().await.unwrap();
    let get = |path: String| {
        let token = token.clone();
        async move {
            let r = http()
                .get(path)
                .header("X-aws-ec2-metadata-token", token)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(
        get(creds_path.clone()).await,
        (200, "aws-workload".to_string())
    );
    let (status, body) = get(format!("{creds_path}aws-workload")).await;
    assert_eq!(status, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (doc["Code"].as_str(), doc["Type"].as_str()),
        (Some("Success"), Some("AWS-HMAC"))
    );
    let creds = crate::credentials::AwsCredentials {
        access_key_id: doc["AccessKeyId"].as_str().unwrap().into(),
        secret_access_key: crate::secret::Secret::new(doc["SecretAccessKey"].as_str().unwrap()),
        session_token: Some(crate::secret::Secret::new(doc["Token"].as_str().unwrap())),
        expiration: None,
    };
    assert!(doc["Expiration"].as_str().unwrap().ends_with('Z'));
    // The same session until close to expiry, as the real IMDS.
    let (_, again) = get(format!("{creds_path}aws-workload")).await;
    assert_eq!(
        serde_json::from_str::<Value>(&again).unwrap()["AccessKeyId"],
        doc["AccessKeyId"]
    );
    let (status, body) = caller_identity(&lab, &creds).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        xml_text(&body, "Arn").as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/aws-workload/i-0123456789abcdef0")
    );
    assert_eq!(get(format!("{creds_path}other")).await.0, 404);
    assert_eq!(
        get(format!("{base}/latest/meta-data/placement/region")).await,
        (200, "us-east-1".to_string())
    );
    assert_eq!(
        get(format!(
            "{base}/latest/meta-data/placement/availability-zone"
        ))
        .await,
        (200, "us-east-1a".to_string())
    );
    let (_, doc) = get(format!("{base}/latest/dynamic/instance-identity/document")).await;
    let doc: Value = serde_json::from_str(&doc).unwrap();
    assert_eq!(
        (doc["accountId"].as_str(), doc["region"].as_str()),
        (Some("123456789012"), Some("us-east-1"))
    );
    let (_, info) = get(format!("{base}/latest/meta-data/iam/info")).await;
    let info: Value = serde_json::from_str(&info).unwrap();
    assert_eq!(
        info["InstanceProfileArn"],
        "arn:aws:iam::123456789012:instance-profile/aws-workload"
    );
    let r = http()
        .get(format!("{base}/latest/meta-data/placement/region"))
        .header("X-aws-ec2-metadata-token", "forged")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(lab.stats().aws_metadata_credentials_served, 2);
}

#[tokio::test]
async fn the_container_endpoint_requires_its_authorization_token() {
    let lab = demo_lab().await;
    let uri = lab.container_credentials_uri("aws-workload");
    assert_eq!(http().get(&uri).send().await.unwrap().status(), 401);
    let r = http()
        .get(&uri)
        .header("Authorization", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let token = lab.container_authorization_token();
    let r = http()
        .get(&uri)
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(
        doc["RoleArn"],
        "arn:aws:iam::123456789012:role/aws-workload"
    );
    assert_eq!(doc["AccountId"], "123456789012");
    let creds = crate::credentials::AwsCredentials {
        access_key_id: doc["AccessKeyId"].as_str().unwrap().into(),
        secret_access_key: crate::secret::Secret::new(doc["SecretAccessKey"].as_str().unwrap()),
        session_token: Some(crate::secret::Secret::new(doc["Token"].as_str().unwrap())),
        expiration: None,
    };
    let aud = lab.workload_identity_audience();
    let subject = subject_token(&creds, Target::Signed(&aud), SystemTime::now());
    assert_eq!(exchange(&lab, &aud, &subject).await.0, 200);
    // A role whose trust does not admit ECS / EKS Pod Identity is not handed out.
    let r = http()
        .get(lab.container_credentials_uri("gcp-deploy"))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(lab
        .last_denial()
        .unwrap()
        .contains("ecs-tasks.amazonaws.com"));
    let r = http()
        .get(lab.container_credentials_uri("nope"))
        .header("Authorization", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn secrets_stay_out_of_debug() {
    let lab = demo_lab().await;
    let user = lab.config().iam_user("ci-user").unwrap();
    let debug = format!("{:?}", lab.config());
    assert!(!debug.contains(&user.secret_access_key), "{debug}");
    let creds = lab.aws_user_credentials("ci-user");
    assert!(!format!("{creds:?}").contains(&user.secret_access_key));
}

// ---------------------------------------------------------------- real SDKs, by hand

/// By hand: boto3 / the aws CLI (from `.venv/bin`) find credentials in the lab's IMDSv2 and
/// container endpoints with nothing else configured, and the lab's STS verifies their signatures.
/// `cargo test --lib real_aws_cli_ -- --ignored` (needs `.venv/bin/aws`).
#[tokio::test]
#[ignore = "needs the aws CLI in .venv/bin"]
async fn real_aws_cli_uses_imds_and_the_container_endpoint() {
    let aws = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/aws");
    let lab = demo_lab().await;
    let home = tempfile::tempdir().unwrap();
    let run = |extra: Vec<(String, String)>| {
        let aws = aws.clone();
        let home = home.path().to_path_buf();
        let sts = lab.aws_sts_url();
        async move {
            tokio::process::Command::new(&aws)
                .args(["sts", "get-caller-identity", "--output", "json"])
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("HOME", &home)
                .env("AWS_CONFIG_FILE", home.join("config"))
                .env("AWS_SHARED_CREDENTIALS_FILE", home.join("credentials"))
                .env("AWS_ENDPOINT_URL_STS", sts)
                .env("AWS_DEFAULT_REGION", "us-east-1")
                .envs(extra)
                .output()
                .await
                .expect("the aws CLI runs")
        }
    };
    let out = run(vec![(
        "AWS_EC2_METADATA_SERVICE_ENDPOINT".into(),
        lab.imds_endpoint(),
    )])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        id["Arn"],
        "arn:aws:sts::123456789012:assumed-role/aws-workload/i-0123456789abcdef0"
    );
    let out = run(vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
            lab.container_credentials_uri("aws-workload"),
        ),
        (
            "AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
            lab.container_authorization_token(),
        ),
        // Make sure IMDS is not what answered.
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        id["Arn"],
        "arn:aws:sts::123456789012:assumed-role/aws-workload/keyless-lab-task"
    );
    // A wrong container token: the CLI finds no credentials.
    let out = run(vec![
        (
            "AWS_CONTAINER_CREDENTIALS_FULL_URI".into(),
            lab.container_credentials_uri("aws-workload"),
        ),
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN".into(), "wrong".into()),
        ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
    ])
    .await;
    assert!(!out.status.success());
    eprintln!("wrong token: {}", String::from_utf8_lossy(&out.stderr));
    // A profile with role_arn + source_profile: AssumeRole signed with ci-user's static keys.
    let user = lab.aws_user_credentials("ci-user");
    std::fs::write(
        home.path().join("credentials"),
        format!(
            "[ci]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            user.access_key_id,
            user.secret_access_key.expose()
        ),
    )
    .unwrap();
    std::fs::write(
        home.path().join("config"),
        format!(
            "[profile workload]\nrole_arn = {}\nsource_profile = ci\nrole_session_name = from-profile\n",
            lab.role_arn("aws-workload")
        ),
    )
    .unwrap();
    let out = run(vec![("AWS_PROFILE".into(), "workload".into())]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        id["Arn"],
        "arn:aws:sts::123456789012:assumed-role/aws-workload/from-profile"
    );
    std::fs::remove_file(home.path().join("config")).unwrap();
    std::fs::remove_file(home.path().join("credentials")).unwrap();
    // boto3 through IMDS, the Python way.
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    let out = tokio::process::Command::new(python)
        .args([
            "-c",
            "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])",
        ])
        .env_clear()
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", home.path().join("config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            home.path().join("credentials"),
        )
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", lab.imds_endpoint())
        .env("AWS_ENDPOINT_URL_STS", lab.aws_sts_url())
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "arn:aws:sts::123456789012:assumed-role/aws-workload/i-0123456789abcdef0"
    );
}

/// Posts a token exchange with an OIDC token; returns (status, JSON answer).
async fn exchange_jwt(lab: &Lab, audience: &str, jwt: &str, token_type: &str) -> (u16, Value) {
    let r = http()
        .post(lab.google_sts_url())
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", audience),
            ("scope", CLOUD_PLATFORM),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("subject_token", jwt),
            ("subject_token_type", token_type),
        ])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// Claims of a CI job of the demo OIDC issuer, minted for `aud`.
fn ci_claims(aud: Value, owner: &str) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    json!({
        "iss": DEMO_OIDC_ISSUER, "aud": aud, "iat": now, "exp": now + 300,
        "sub": format!("repo:{owner}/app:ref:refs/heads/main"),
        "repository": format!("{owner}/app"), "repository_owner": owner,
    })
}

#[tokio::test]
async fn an_oidc_token_for_the_provider_gets_a_federated_token_that_impersonates_its_binding() {
    let lab = demo_lab().await;
    let provider = lab.provider_audience(DEMO_POOL, DEMO_OIDC_PROVIDER);
    let https_name = provider.replacen("//", "https://", 1);
    // Both default audiences, as a string or in an array, and both subject token types.
    for (aud, token_type) in [
        (json!(https_name), JWT_TYPE),
        (
            json!(["other", provider.clone()]),
            "urn:ietf:params:oauth:token-type:id_token",
        ),
    ] {
        let jwt = lab.sign_claims(&ci_claims(aud, "keyless-lab"));
        let (status, answer) = exchange_jwt(&lab, &provider, &jwt, token_type).await;
        assert_eq!(status, 200, "{answer}");
        let federated = answer["access_token"].as_str().unwrap();
        // The binding names attribute.repository_owner, which the mapping made.
        let (status, answer) = generate_access_token(&lab, federated, COPYCAT, "600s").await;
        assert_eq!(status, 200, "{answer}");
        let (status, _) = generate_access_token(&lab, federated, CI_RUNNER, "600s").await;
        assert_eq!(status, 403);
    }
    // An AWS subject token type at an OIDC provider, and a JWT at the AWS provider: refused.
    let jwt = lab.sign_claims(&ci_claims(json!(https_name), "keyless-lab"));
    let (status, answer) = exchange_jwt(
        &lab,
        &provider,
        &jwt,
        "urn:ietf:params:aws:token-type:aws4_request",
    )
    .await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, answer) =
        exchange_jwt(&lab, &lab.workload_identity_audience(), &jwt, JWT_TYPE).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn oidc_tokens_are_refused_for_what_google_checks_naming_it() {
    let lab = demo_lab().await;
    let provider = lab.provider_audience(DEMO_POOL, DEMO_OIDC_PROVIDER);
    let https_name = provider.replacen("//", "https://", 1);
    let good = ci_claims(json!(https_name), "keyless-lab");
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good.clone();
        f(&mut c);
        c
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "wrong audience",
            lab.sign_claims(&with(&|c| c["aud"] = json!("sts.amazonaws.com"))),
            "invalid_grant",
            "audience in ID Token [sts.amazonaws.com]",
        ),
        (
            "unknown issuer",
            lab.sign_claims(&with(&|c| c["iss"] = json!("https://evil.example"))),
            "invalid_grant",
            "issuer in ID Token https://evil.example does not match",
        ),
        (
            "expired",
            lab.sign_claims(&with(&|c| {
                c["iat"] = json!(now - 600);
                c["exp"] = json!(now - 1);
            })),
            "invalid_grant",
            "expired",
        ),
        (
            "no iat",
            lab.sign_claims(&with(&|c| {
                c.as_object_mut().unwrap().remove("iat");
            })),
            "invalid_grant",
            "iat and exp",
        ),
        (
            "condition false",
            lab.sign_claims(&ci_claims(json!(https_name), "intruder")),
            "unauthorized_client",
            "rejected by the attribute condition",
        ),
        (
            "subject too long",
            lab.sign_claims(&with(&|c| c["sub"] = json!("s".repeat(128)))),
            "invalid_request",
            "exceeds the 127 bytes limit",
        ),
        (
            "foreign key",
            crate::lab::GoogleSigningKey::generate().sign(&good),
            "invalid_grant",
            "",
        ),
        (
            "not a JWT",
            "not-a-jwt".to_string(),
            "invalid_grant",
            "Unable to parse",
        ),
    ];
    for (what, jwt, error, says) in cases {
        let (status, answer) = exchange_jwt(&lab, &provider, &jwt, JWT_TYPE).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(answer["error"], error, "{what}: {answer}");
        let description = answer["error_description"].as_str().unwrap();
        assert!(description.contains(says), "{what}: {description}");
    }
    // The lab says what Google does not: which values made the condition false.
    let jwt = lab.sign_claims(&ci_claims(json!(https_name), "intruder"));
    exchange_jwt(&lab, &provider, &jwt, JWT_TYPE).await;
    let denial = lab.last_denial().unwrap();
    assert!(
        denial.contains("assertion.repository_owner = \"intruder\""),
        "{denial}"
    );
}

#[tokio::test]
async fn inline_jwks_allowed_audiences_and_nested_claims_are_honoured() {
    let foreign = crate::lab::GoogleSigningKey::generate();
    let mut config = LabConfig::demo();
    config.workload_identity_pools[0]
        .oidc_providers
        .push(LabPoolOidcProvider {
            provider_id: "aws-outbound".into(),
            issuer_uri: "https://abc.tokens.sts.global.api.aws".into(),
            allowed_audiences: vec!["gcp-federation".into()],
            jwks_json: Some(json!({"keys": [foreign.jwk()]}).to_string()),
            attribute_mapping: vec![
                ("google.subject".into(), "assertion.sub".into()),
                (
                    "attribute.aws_account".into(),
                    "assertion['https://sts.amazonaws.com/'].aws_account".into(),
                ),
            ],
            attribute_condition: Some("attribute.aws_account == '123456789012'".into()),
        });
    let lab = Lab::start(config).await.unwrap();
    let provider = lab.provider_audience(DEMO_POOL, "aws-outbound");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = |aud: &str, account: &str| {
        json!({
            "iss": "https://abc.tokens.sts.global.api.aws", "aud": aud, "iat": now, "exp": now + 300,
            "sub": "arn:aws:iam::123456789012:role/app",
            "https://sts.amazonaws.com/": {"aws_account": account},
        })
    };
    let ok = foreign.sign(&claims("gcp-federation", "123456789012"));
    let (status, answer) = exchange_jwt(&lab, &provider, &ok, JWT_TYPE).await;
    assert_eq!(status, 200, "{answer}");
    // With allowedAudiences set, the provider's own name is no longer accepted.
    let own_name = foreign.sign(&claims(&provider, "123456789012"));
    let (status, answer) = exchange_jwt(&lab, &provider, &own_name, JWT_TYPE).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let other_account = foreign.sign(&claims("gcp-federation", "999999999999"));
    let (status, answer) = exchange_jwt(&lab, &provider, &other_account, JWT_TYPE).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    // The lab's own key is not this provider's.
    let lab_signed = lab.sign_claims(&claims("gcp-federation", "123456789012"));
    let (status, answer) = exchange_jwt(&lab, &provider, &lab_signed, JWT_TYPE).await;
    assert_eq!(
        (status, answer["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

/// The demo pool's GitHub and Kubernetes providers verify the tokens of the lab's GitHub
/// Actions and cluster issuers with each issuer's own key (what their discovery documents
/// publish), map them and apply their conditions; the same claims signed with the lab's Google
/// key are refused, as a token of another key would be.
#[tokio::test]
async fn github_and_kubernetes_tokens_verify_with_their_issuers_keys_at_the_pool() {
    let lab = demo_lab().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let github = lab.provider_audience(DEMO_POOL, DEMO_GITHUB_PROVIDER);
    let kubernetes = lab.provider_audience(DEMO_POOL, DEMO_KUBERNETES_PROVIDER);
    let github_claims = |owner: &str| {
        json!({
            "iss": DEMO_GITHUB_ISSUER, "aud": github.replacen("//", "https://", 1),
            "iat": now, "exp": now + 300,
            "sub": format!("repo:{owner}/app:ref:refs/heads/main"),
            "repository": format!("{owner}/app"), "repository_owner": owner,
        })
    };
    let kubernetes_claims = |namespace: &str| {
        json!({
            "iss": DEMO_KUBERNETES_ISSUER, "aud": [kubernetes.clone()],
            "iat": now, "exp": now + 300,
            "sub": format!("system:serviceaccount:{namespace}:deployer"),
            "kubernetes.io": {"namespace": namespace, "serviceaccount": {"name": "deployer"}},
        })
    };
    for (provider, claims) in [
        (&github, github_claims("keyless-lab")),
        (&kubernetes, kubernetes_claims("default")),
    ] {
        let jwt = lab.sign_claims(&claims);
        let (status, answer) = exchange_jwt(&lab, provider, &jwt, JWT_TYPE).await;
        assert_eq!(status, 200, "{answer}");
        // The federated token impersonates copycat through the provider's binding.
        let federated = answer["access_token"].as_str().unwrap();
        let (status, answer) = generate_access_token(&lab, federated, COPYCAT, "3600s").await;
        assert_eq!(status, 200, "{answer}");

        let forged = lab.state.key.sign(&claims);
        let (status, answer) = exchange_jwt(&lab, provider, &forged, JWT_TYPE).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"], "invalid_grant", "{answer}");
    }
    for (provider, claims) in [
        (&github, github_claims("intruder")),
        (&kubernetes, kubernetes_claims("kube-system")),
    ] {
        let (status, answer) =
            exchange_jwt(&lab, provider, &lab.sign_claims(&claims), JWT_TYPE).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"], "unauthorized_client", "{answer}");
    }
}
