//! In-process tests: each starts a lab and talks to it over HTTP with reqwest, as keyless and the
//! SDKs do, and proves one check the real services make.

use std::time::{Duration, SystemTime};

use base64::Engine;
use serde_json::{json, Value};

use super::*;

const DEPLOYER: &str = "deployer@keyless-lab.iam.gserviceaccount.com";
const CI_RUNNER: &str = "ci-runner@keyless-lab.iam.gserviceaccount.com";
const INTRUDER: &str = "intruder@elsewhere.iam.gserviceaccount.com";
const AUD: &str = "sts.amazonaws.com";

pub(super) async fn demo_lab() -> Lab {
    Lab::start(LabConfig::demo()).await.expect("lab starts")
}

pub(super) fn http() -> reqwest::Client {
    reqwest::Client::new()
}

/// The text of the first `<tag>` element.
pub(super) fn xml_text(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{tag}>"))? + start;
    Some(body[start..end].to_string())
}

fn jwt_claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).expect("a JWT has three parts");
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

async fn metadata_get(lab: &Lab, path: &str) -> reqwest::Response {
    http()
        .get(format!("http://{}{path}", lab.metadata_host()))
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap()
}

async fn metadata_id_token(lab: &Lab, audience: &str) -> String {
    let r = metadata_get(lab, &format!("/computeMetadata/v1/instance/service-accounts/default/identity?audience={audience}&format=full")).await;
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

async fn assume(lab: &Lab, role: &str, token: &str, extra: &[(&str, &str)]) -> (u16, String) {
    let role_arn = lab.role_arn(role);
    let mut form = vec![
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role_arn.as_str()),
        ("RoleSessionName", "deployer"),
        ("WebIdentityToken", token),
    ];
    for (k, v) in extra {
        form.retain(|(name, _)| name != k);
        form.push((k, v));
    }
    let r = http()
        .post(lab.aws_sts_url())
        .form(&form)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

/// Issued AWS credentials from a successful answer: (akid, secret, session token).
fn credentials(body: &str) -> (String, String, String) {
    (
        xml_text(body, "AccessKeyId").unwrap(),
        xml_text(body, "SecretAccessKey").unwrap(),
        xml_text(body, "SessionToken").unwrap(),
    )
}

async fn caller_identity(
    lab: &Lab,
    akid: &str,
    secret: &str,
    token: Option<&str>,
    at: SystemTime,
) -> (u16, String) {
    let url = format!("{}/", lab.aws_sts_url());
    let headers = [(
        "content-type",
        "application/x-www-form-urlencoded; charset=utf-8",
    )];
    signed_post(
        &url,
        "Action=GetCallerIdentity&Version=2011-06-15",
        &headers,
        (akid, secret, token),
        at,
    )
    .await
}

/// POSTs `body` to `url`, signed for STS by the `aws-sigv4` crate (the signer keyless uses).
async fn signed_post(
    url: &str,
    body: &str,
    headers: &[(&str, &str)],
    creds: (&str, &str, Option<&str>),
    at: SystemTime,
) -> (u16, String) {
    let (akid, secret, token) = creds;
    let credentials = crate::credentials::AwsCredentials {
        access_key_id: akid.to_string(),
        secret_access_key: crate::secret::Secret::new(secret),
        session_token: token.map(crate::secret::Secret::new),
        expiration: None,
    };
    let signed = crate::exchange::aws_sts::sign_request(
        "POST",
        url,
        headers,
        body.as_bytes(),
        &credentials,
        "us-east-1",
        "sts",
        at,
    )
    .unwrap();
    let signed: Vec<(String, String)> = signed
        .into_iter()
        .map(|(k, v)| (k, v.expose().to_string()))
        .collect();
    let instructions = signed.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let mut request = http().post(url).body(body.to_string());
    for (k, v) in headers.iter().copied().chain(instructions) {
        request = request.header(k, v);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

// ---------------------------------------------------------------- AWS STS: AssumeRoleWithWebIdentity

#[tokio::test]
async fn metadata_token_is_accepted_for_gcp_deploy() {
    let lab = demo_lab().await;
    let token = metadata_id_token(&lab, AUD).await;
    let (status, body) = assume(&lab, "gcp-deploy", &token, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.starts_with("<AssumeRoleWithWebIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"), "{body}");
    assert_eq!(
        xml_text(&body, "SubjectFromWebIdentityToken").as_deref(),
        Some("100000000000000000001")
    );
    assert_eq!(
        xml_text(&body, "Audience").as_deref(),
        Some("100000000000000000001"),
        "Audience is the azp"
    );
    assert_eq!(
        xml_text(&body, "Arn").as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/gcp-deploy/deployer")
    );
    let role_id = xml_text(&body, "AssumedRoleId").unwrap();
    assert!(
        role_id.starts_with("AROA") && role_id.ends_with(":deployer"),
        "{role_id}"
    );
    assert_eq!(
        xml_text(&body, "Provider").as_deref(),
        Some("accounts.google.com")
    );
    assert!(xml_text(&body, "RequestId").is_some());
    let (akid, secret, session) = credentials(&body);
    assert!(akid.starts_with("ASIA") && akid.len() == 20, "{akid}");
    assert_eq!(secret.len(), 40);
    assert!(session.len() > 300);
    let expiration = xml_text(&body, "Expiration").unwrap();
    let parsed = time::PrimitiveDateTime::parse(
        &expiration,
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z"),
    )
    .expect("Expiration is YYYY-MM-DDTHH:MM:SSZ")
    .assume_utc();
    let left = (parsed - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!(
        (3590..=3600).contains(&left),
        "default duration is one hour, got {left}s"
    );
    let stats = lab.stats();
    assert_eq!(stats.assume_role_with_web_identity_calls, 1);
    assert_eq!(stats.assume_role_with_web_identity_successes, 1);
    assert_eq!(stats.id_tokens_minted, 1);
    lab.shutdown().await;
}

#[tokio::test]
async fn intruder_is_refused_and_the_explanation_names_the_aud_key() {
    let lab = demo_lab().await;
    let token = lab.mint_id_token(INTRUDER, AUD, Duration::from_secs(3600));
    let (status, body) = assume(&lab, "gcp-deploy", &token, &[]).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(xml_text(&body, "Code").as_deref(), Some("AccessDenied"));
    assert_eq!(
        xml_text(&body, "Message").as_deref(),
        Some("Not authorized to perform sts:AssumeRoleWithWebIdentity")
    );
    assert_eq!(xml_text(&body, "Type").as_deref(), Some("Sender"));
    assert!(
        body.starts_with("<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"),
        "{body}"
    );
    let why = lab.last_denial().expect("the denial is explained");
    assert!(
        why.contains("the trust policy expects accounts.google.com:aud = \"100000000000000000001\" but the token gives \"100000000000000000099\" (accounts.google.com:aud is the token's azp)"),
        "{why}"
    );
    let stats = lab.stats();
    assert_eq!(
        (
            stats.assume_role_with_web_identity_calls,
            stats.assume_role_with_web_identity_successes
        ),
        (1, 0)
    );
    assert_eq!(
        stats.id_tokens_minted, 0,
        "Lab::mint_id_token is not an upstream call"
    );
    // The admin API exposes the same explanation to the out-of-process lab's users.
    let admin: Value = http()
        .get(format!("{}/_lab/last-denial", lab.aws_sts_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(admin["explanation"], json!(why));
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused_on_oaud() {
    let lab = demo_lab().await;
    let token = lab.mint_id_token(
        DEPLOYER,
        "https://example.com/other",
        Duration::from_secs(3600),
    );
    let (status, _) = assume(&lab, "gcp-deploy", &token, &[]).await;
    assert_eq!(status, 403);
    assert!(lab
        .last_denial()
        .unwrap()
        .contains("accounts.google.com:oaud = \"sts.amazonaws.com\""));
}

#[tokio::test]
async fn expired_token_is_refused_with_expired_token_exception() {
    let lab = demo_lab().await;
    let token = lab.mint_id_token(DEPLOYER, AUD, Duration::ZERO);
    let (status, body) = assume(&lab, "gcp-deploy", &token, &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        xml_text(&body, "Code").as_deref(),
        Some("ExpiredTokenException")
    );
    assert!(xml_text(&body, "Message")
        .unwrap()
        .starts_with("Token expired: current date/time"));
}

#[tokio::test]
async fn configured_short_lifetime_tokens_expire() {
    let config = LabConfig {
        id_token_lifetime: Duration::ZERO,
        ..LabConfig::demo()
    };
    let lab = Lab::start(config).await.unwrap();
    let token = metadata_id_token(&lab, AUD).await;
    let claims = jwt_claims(&token);
    assert_eq!(claims["exp"], claims["iat"]);
    let (_, body) = assume(&lab, "gcp-deploy", &token, &[]).await;
    assert_eq!(
        xml_text(&body, "Code").as_deref(),
        Some("ExpiredTokenException")
    );
}

#[tokio::test]
async fn a_token_signed_with_another_key_is_an_invalid_identity_token() {
    let lab = demo_lab().await;
    let genuine = jwt_claims(&lab.mint_id_token(DEPLOYER, AUD, Duration::from_secs(3600)));
    let forged = GoogleSigningKey::generate().sign(&genuine);
    let (status, body) = assume(&lab, "gcp-deploy", &forged, &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        xml_text(&body, "Code").as_deref(),
        Some("InvalidIdentityToken")
    );
    // Tampering with the claims of a genuine token breaks its signature.
    let real = lab.mint_id_token(INTRUDER, AUD, Duration::from_secs(3600));
    let parts: Vec<&str> = real.split('.').collect();
    let mut claims = jwt_claims(&real);
    claims["azp"] = json!("100000000000000000001");
    claims["sub"] = json!("100000000000000000001");
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    let (status, body) = assume(&lab, "gcp-deploy", &tampered, &[]).await;
    assert_eq!(
        (status, xml_text(&body, "Code").as_deref()),
        (400, Some("InvalidIdentityToken"))
    );
    let (_, body) = assume(&lab, "gcp-deploy", "garbage", &[]).await;
    assert_eq!(
        xml_text(&body, "Code").as_deref(),
        Some("InvalidIdentityToken")
    );
}

#[tokio::test]
async fn parameters_are_validated_with_aws_messages() {
    let lab = demo_lab().await;
    let token = lab.mint_id_token(DEPLOYER, AUD, Duration::from_secs(3600));
    let (status, body) = assume(&lab, "gcp-deploy", &token, &[("RoleSessionName", "a")]).await;
    assert_eq!(status, 400);
    assert_eq!(xml_text(&body, "Code").as_deref(), Some("ValidationError"));
    assert_eq!(
        xml_text(&body, "Message").as_deref(),
        Some("1 validation error detected: Value 'a' at 'roleSessionName' failed to satisfy constraint: Member must have length greater than or equal to 2")
    );
    let (_, body) = assume(
        &lab,
        "gcp-deploy",
        &token,
        &[("RoleSessionName", "has space")],
    )
    .await;
    assert!(
        xml_text(&body, "Message")
            .unwrap()
            .contains("Member must satisfy regular expression pattern: [\\w+=,.@-]*"),
        "{body}"
    );
    let (_, body) = assume(&lab, "gcp-deploy", &token, &[("DurationSeconds", "60")]).await;
    assert!(
        xml_text(&body, "Message")
            .unwrap()
            .contains("Value '60' at 'durationSeconds'"),
        "{body}"
    );
    let (status, body) = assume(&lab, "gcp-deploy", &token, &[("DurationSeconds", "43200")]).await;
    assert_eq!(status, 400);
    assert_eq!(
        xml_text(&body, "Message").as_deref(),
        Some("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
    );
    let (status, body) = assume(&lab, "gcp-deploy", &token, &[("DurationSeconds", "14400")]).await;
    assert_eq!(status, 200, "up to the role's maximum is fine: {body}");
    let big = format!("{{\"Version\":\"2012-10-17\",\"Statement\":{{\"Effect\":\"Allow\",\"Action\":\"s3:*\",\"Resource\":\"{}\"}}}}", "x".repeat(2100));
    let (_, body) = assume(&lab, "gcp-deploy", &token, &[("Policy", &big)]).await;
    assert_eq!(
        xml_text(&body, "Code").as_deref(),
        Some("PackedPolicyTooLarge")
    );
    let (_, body) = assume(&lab, "gcp-deploy", &token, &[("Policy", "{not json")]).await;
    assert_eq!(
        xml_text(&body, "Code").as_deref(),
        Some("MalformedPolicyDocument")
    );
    let (status, body) = assume(&lab, "no-such-role", &token, &[]).await;
    assert_eq!(
        (status, xml_text(&body, "Code").as_deref()),
        (403, Some("AccessDenied"))
    );
    assert!(lab.last_denial().unwrap().contains("does not exist"));
    let r = http()
        .post(lab.aws_sts_url())
        .form(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
        ])
        .send()
        .await
        .unwrap();
    let body = r.text().await.unwrap();
    assert!(
        xml_text(&body, "Message")
            .unwrap()
            .starts_with("3 validation errors detected: Value null at 'roleArn'"),
        "{body}"
    );
}

#[tokio::test]
async fn get_with_a_query_string_works_like_a_form_post() {
    let lab = demo_lab().await;
    let token = lab.mint_id_token(DEPLOYER, AUD, Duration::from_secs(3600));
    let r = http()
        .get(lab.aws_sts_url())
        .query(&[
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", &lab.role_arn("gcp-deploy")),
            ("RoleSessionName", "query-string"),
            ("WebIdentityToken", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let r = http()
        .post(lab.aws_sts_url())
        .form(&[("Action", "GetSessionToken"), ("Version", "2011-06-15")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        xml_text(&r.text().await.unwrap(), "Code").as_deref(),
        Some("InvalidAction")
    );
}

// ---------------------------------------------------------------- AWS STS: GetCallerIdentity

#[tokio::test]
async fn get_caller_identity_verifies_sigv4() {
    let lab = demo_lab().await;
    let token = lab.mint_id_token(DEPLOYER, AUD, Duration::from_secs(3600));
    let (_, body) = assume(&lab, "gcp-deploy", &token, &[]).await;
    let (akid, secret, session) = credentials(&body);
    let now = SystemTime::now();

    let (status, body) = caller_identity(&lab, &akid, &secret, Some(&session), now).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        xml_text(&body, "Arn").as_deref(),
        Some("arn:aws:sts::123456789012:assumed-role/gcp-deploy/deployer")
    );
    assert!(xml_text(&body, "UserId").unwrap().ends_with(":deployer"));
    assert_eq!(xml_text(&body, "Account").as_deref(), Some("123456789012"));

    let wrong_secret = "x".repeat(40);
    let (status, body) = caller_identity(&lab, &akid, &wrong_secret, Some(&session), now).await;
    assert_eq!(
        (status, xml_text(&body, "Code").as_deref()),
        (403, Some("SignatureDoesNotMatch")),
        "{body}"
    );

    let (status, body) = caller_identity(
        &lab,
        &akid,
        &secret,
        Some(&session),
        now - Duration::from_secs(20 * 60),
    )
    .await;
    assert_eq!(
        (status, xml_text(&body, "Code").as_deref()),
        (403, Some("SignatureDoesNotMatch"))
    );
    assert!(
        xml_text(&body, "Message")
            .unwrap()
            .starts_with("Signature expired:"),
        "{body}"
    );

    let (status, body) = caller_identity(&lab, &akid, &secret, None, now).await;
    assert_eq!(
        (status, xml_text(&body, "Code").as_deref()),
        (403, Some("InvalidClientTokenId")),
        "session token required"
    );

    let (status, body) =
        caller_identity(&lab, "ASIAUNKNOWNUNKNOWN00", &secret, Some(&session), now).await;
    assert_eq!(
        (status, xml_text(&body, "Code").as_deref()),
        (403, Some("InvalidClientTokenId"))
    );

    let r = http()
        .post(lab.aws_sts_url())
        .form(&[("Action", "GetCallerIdentity"), ("Version", "2011-06-15")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        xml_text(&r.text().await.unwrap(), "Code").as_deref(),
        Some("MissingAuthenticationToken")
    );

    assert_eq!(lab.stats().get_caller_identity_calls, 6);
}

/// The shape of the Google STS subject token: parameters in the query string, an empty body, and
/// `x-goog-cloud-target-resource` signed along (as the Go and Rust Google libraries do).
#[tokio::test]
async fn subject_token_shaped_get_caller_identity_is_accepted() {
    let lab = demo_lab().await;
    let token = lab.mint_id_token(DEPLOYER, AUD, Duration::from_secs(3600));
    let (_, body) = assume(&lab, "gcp-deploy", &token, &[]).await;
    let (akid, secret, session) = credentials(&body);
    let url = format!(
        "{}/?Action=GetCallerIdentity&Version=2011-06-15",
        lab.aws_sts_url()
    );
    let target = [("x-goog-cloud-target-resource", "//iam.googleapis.com/projects/424242424242/locations/global/workloadIdentityPools/p/providers/aws")];
    let (status, body) = signed_post(
        &url,
        "",
        &target,
        (&akid, &secret, Some(&session)),
        SystemTime::now(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(xml_text(&body, "Account").as_deref(), Some("123456789012"));
}

#[tokio::test]
async fn expired_lab_credentials_are_refused() {
    let lab = demo_lab().await;
    lab.state.remember_aws_credentials(
        "ASIAEXPIREDEXPIRED00",
        state::IssuedAwsCredentials {
            secret_access_key: crate::secret::Secret::new("s".repeat(40)),
            session_token: Some(crate::secret::Secret::new("tok")),
            expiration: Some(time::OffsetDateTime::now_utc() - time::Duration::seconds(1)),
            arn: "arn:aws:sts::123456789012:assumed-role/gcp-deploy/x".into(),
            user_id: "AROAX:x".into(),
            session: state::LabSessionContext::default(),
        },
    );
    let (status, body) = caller_identity(
        &lab,
        "ASIAEXPIREDEXPIRED00",
        &"s".repeat(40),
        Some("tok"),
        SystemTime::now(),
    )
    .await;
    assert_eq!(
        (status, xml_text(&body, "Code").as_deref()),
        (403, Some("ExpiredToken")),
        "{body}"
    );
}

// ---------------------------------------------------------------- GCE metadata server

#[tokio::test]
async fn metadata_server_enforces_its_headers() {
    let lab = demo_lab().await;
    let url = format!(
        "http://{}/computeMetadata/v1/project/project-id",
        lab.metadata_host()
    );
    let r = http().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 403, "no Metadata-Flavor header");
    assert_eq!(r.headers()["metadata-flavor"], "Google");
    let r = http()
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .header("X-Forwarded-For", "10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "X-Forwarded-For is refused");
    let r = http()
        .get(format!("http://{}/", lab.metadata_host()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "GET / is open for SDK detection");
    assert_eq!(r.headers()["metadata-flavor"], "Google");
    let r = http()
        .get(&url)
        .header("Metadata-Flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["metadata-flavor"], "Google");
    assert_eq!(r.text().await.unwrap(), "keyless-lab");
    assert_eq!(lab.stats().id_tokens_minted, 0);
}

#[tokio::test]
async fn metadata_server_serves_what_the_sdks_read() {
    let lab = demo_lab().await;
    let get = |p: &'static str| metadata_get(&lab, p);
    assert_eq!(
        get("/computeMetadata/v1/project/numeric-project-id")
            .await
            .text()
            .await
            .unwrap(),
        "424242424242"
    );
    assert_eq!(
        get("/computeMetadata/v1/universe/universe-domain")
            .await
            .text()
            .await
            .unwrap(),
        "googleapis.com"
    );
    assert_eq!(
        get("/computeMetadata/v1/instance/service-accounts/default/email")
            .await
            .text()
            .await
            .unwrap(),
        DEPLOYER
    );
    let sa: Value = get("/computeMetadata/v1/instance/service-accounts/default/?recursive=true")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(sa["email"], DEPLOYER);
    assert_eq!(sa["aliases"], json!(["default"]));
    assert!(sa["scopes"]
        .as_array()
        .unwrap()
        .contains(&json!("https://www.googleapis.com/auth/cloud-platform")));
    let tok: Value = get("/computeMetadata/v1/instance/service-accounts/default/token?scopes=a,b")
        .await
        .json()
        .await
        .unwrap();
    assert!(tok["access_token"].as_str().unwrap().starts_with("ya29."));
    assert_eq!(tok["token_type"], "Bearer");
    assert!(tok["expires_in"].as_u64().unwrap() > 3000);
    assert_eq!(
        get("/computeMetadata/v1/instance/service-accounts/other@x.com/email")
            .await
            .status(),
        404
    );
    assert_eq!(get("/computeMetadata/v1/nope").await.status(), 404);
}

#[tokio::test]
async fn metadata_identity_tokens_are_fresh_and_shaped_like_googles() {
    let lab = demo_lab().await;
    let missing = metadata_get(
        &lab,
        "/computeMetadata/v1/instance/service-accounts/default/identity",
    )
    .await;
    assert_eq!(missing.status(), 400);
    let empty = metadata_get(
        &lab,
        "/computeMetadata/v1/instance/service-accounts/default/identity?audience=",
    )
    .await;
    assert_eq!(empty.status(), 400);

    let full = metadata_id_token(&lab, AUD).await;
    let header: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(full.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(lab.jwks()["keys"][0]["kid"], header["kid"]);
    let c = jwt_claims(&full);
    assert_eq!(c["iss"], "https://accounts.google.com");
    assert_eq!(c["aud"], AUD);
    assert_eq!(c["azp"], "100000000000000000001");
    assert_eq!(c["sub"], "100000000000000000001");
    assert_eq!(c["email"], DEPLOYER);
    assert_eq!(c["email_verified"], true);
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        3600
    );
    let ce = &c["google"]["compute_engine"];
    assert_eq!(ce["project_id"], "keyless-lab");
    assert_eq!(ce["project_number"], 424242424242u64);
    for field in [
        "zone",
        "instance_id",
        "instance_name",
        "instance_creation_timestamp",
    ] {
        assert!(!ce[field].is_null(), "{field}");
    }
    let by_email = metadata_get(&lab, &format!("/computeMetadata/v1/instance/service-accounts/{DEPLOYER}/identity?audience=x&format=standard")).await;
    let standard = by_email.text().await.unwrap();
    assert!(
        jwt_claims(&standard).get("google").is_none(),
        "format=standard has no google block"
    );
    let again = jwt_claims(&metadata_id_token(&lab, AUD).await);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (now - again["iat"].as_i64().unwrap()).abs() <= 1,
        "minted per request, not cached"
    );
    assert_eq!(lab.stats().id_tokens_minted, 3);
}

// ---------------------------------------------------------------- Google APIs

pub(super) async fn metadata_access_token(lab: &Lab, scopes: &str) -> String {
    let tok: Value = metadata_get(
        lab,
        &format!("/computeMetadata/v1/instance/service-accounts/default/token?scopes={scopes}"),
    )
    .await
    .json()
    .await
    .unwrap();
    tok["access_token"].as_str().unwrap().to_string()
}

pub(super) async fn generate_id_token(
    lab: &Lab,
    bearer: Option<&str>,
    email: &str,
    body: Value,
) -> (u16, Value) {
    let mut r = http()
        .post(format!(
            "{}/v1/projects/-/serviceAccounts/{email}:generateIdToken",
            lab.google_apis_url()
        ))
        .json(&body);
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn impersonation_requires_token_creator() {
    let lab = demo_lab().await;
    let bearer =
        metadata_access_token(&lab, "https://www.googleapis.com/auth/cloud-platform").await;

    let (status, body) =
        generate_id_token(&lab, Some(&bearer), CI_RUNNER, json!({"audience": AUD})).await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    let claims = jwt_claims(token);
    assert_eq!(claims["azp"], "100000000000000000002");
    assert!(
        claims.get("email").is_none(),
        "no email claims without includeEmail"
    );
    let (_, body) = generate_id_token(
        &lab,
        Some(&bearer),
        CI_RUNNER,
        json!({"audience": AUD, "includeEmail": true}),
    )
    .await;
    assert_eq!(
        jwt_claims(body["token"].as_str().unwrap())["email"],
        CI_RUNNER
    );

    // ci-runner's token opens ci-deploy but not gcp-deploy.
    assert_eq!(assume(&lab, "ci-deploy", token, &[]).await.0, 200);
    assert_eq!(assume(&lab, "gcp-deploy", token, &[]).await.0, 403);

    let (status, body) =
        generate_id_token(&lab, Some(&bearer), INTRUDER, json!({"audience": AUD})).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(
        body["error"]["message"],
        "Permission 'iam.serviceAccounts.getOpenIdToken' denied on resource (or it may not exist)."
    );
    let (status, body) = generate_id_token(
        &lab,
        Some(&bearer),
        "ghost@keyless-lab.iam.gserviceaccount.com",
        json!({"audience": AUD}),
    )
    .await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (404, Some("NOT_FOUND"))
    );

    let (status, body) = generate_id_token(&lab, None, CI_RUNNER, json!({"audience": AUD})).await;
    assert_eq!(
        (status, body["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (status, _) = generate_id_token(
        &lab,
        Some("ya29.made-up"),
        CI_RUNNER,
        json!({"audience": AUD}),
    )
    .await;
    assert_eq!(status, 401);
    let narrow =
        metadata_access_token(&lab, "https://www.googleapis.com/auth/devstorage.read_only").await;
    let (status, body) =
        generate_id_token(&lab, Some(&narrow), CI_RUNNER, json!({"audience": AUD})).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error"]["message"],
        "Request had insufficient authentication scopes."
    );
    let iam_scope = metadata_access_token(&lab, "https://www.googleapis.com/auth/iam").await;
    assert_eq!(
        generate_id_token(&lab, Some(&iam_scope), CI_RUNNER, json!({"audience": AUD}))
            .await
            .0,
        200
    );
    let (status, _) = generate_id_token(
        &lab,
        Some(&bearer),
        CI_RUNNER,
        json!({"includeEmail": true}),
    )
    .await;
    assert_eq!(status, 400, "audience is required");
}

#[tokio::test]
async fn generate_access_token_and_delegation_chains() {
    let lab = demo_lab().await;
    let bearer =
        metadata_access_token(&lab, "https://www.googleapis.com/auth/cloud-platform").await;
    let url = |email: &str| {
        format!(
            "{}/v1/projects/-/serviceAccounts/{email}:generateAccessToken",
            lab.google_apis_url()
        )
    };
    let r = http()
        .post(url(CI_RUNNER))
        .bearer_auth(&bearer)
        .json(&json!({"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "1800s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let ci_token = body["accessToken"].as_str().unwrap().to_string();
    let expire = time::OffsetDateTime::parse(
        body["expireTime"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let left = (expire - time::OffsetDateTime::now_utc()).whole_seconds();
    assert!((1790..=1800).contains(&left), "{left}");

    // The new token acts as ci-runner, which is no token creator of anyone.
    let (status, body) =
        generate_id_token(&lab, Some(&ci_token), CI_RUNNER, json!({"audience": AUD})).await;
    assert_eq!(status, 403, "{body}");
    let r = http()
        .post(url(CI_RUNNER))
        .bearer_auth(&bearer)
        .json(&json!({"scope": ["x"], "lifetime": "7200s"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "lifetimes above 3600s need the org policy");
    let r = http()
        .post(url(INTRUDER))
        .bearer_auth(&bearer)
        .json(&json!({"scope": ["x"]}))
        .send()
        .await
        .unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"]["message"],
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist)."
    );
    // Delegation: deployer → (via ci-runner) → intruder fails because ci-runner is not intruder's creator.
    let (status, _) = generate_id_token(
        &lab,
        Some(&bearer),
        INTRUDER,
        json!({"audience": AUD, "delegates": [format!("projects/-/serviceAccounts/{CI_RUNNER}")]}),
    )
    .await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn authorized_user_refresh_and_impersonation() {
    let lab = demo_lab().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adc.json");
    lab.write_authorized_user_adc(&path, "dev@example.com")
        .unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let adc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(adc["type"], "authorized_user");
    assert_eq!(adc["token_uri"], format!("{}/token", lab.google_apis_url()));
    assert!(lab
        .write_authorized_user_adc(&path, "nobody@example.com")
        .is_err());

    let form = |refresh: &str| {
        vec![
            ("grant_type", "refresh_token".to_string()),
            ("client_id", adc["client_id"].as_str().unwrap().to_string()),
            (
                "client_secret",
                adc["client_secret"].as_str().unwrap().to_string(),
            ),
            ("refresh_token", refresh.to_string()),
        ]
    };
    let r = http()
        .post(adc["token_uri"].as_str().unwrap())
        .form(&form(adc["refresh_token"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tok: Value = r.json().await.unwrap();
    assert_eq!(tok["token_type"], "Bearer");
    assert!(tok["scope"].as_str().unwrap().contains("cloud-platform"));
    let (status, _) = generate_id_token(
        &lab,
        tok["access_token"].as_str(),
        CI_RUNNER,
        json!({"audience": AUD}),
    )
    .await;
    assert_eq!(
        status, 200,
        "dev@example.com is a token creator of ci-runner"
    );
    let (status, _) = generate_id_token(
        &lab,
        tok["access_token"].as_str(),
        DEPLOYER,
        json!({"audience": AUD}),
    )
    .await;
    assert_eq!(status, 403, "but not of deployer");

    let r = http()
        .post(adc["token_uri"].as_str().unwrap())
        .form(&form("1//stolen"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"], "invalid_grant");
}

#[tokio::test]
async fn jwks_and_discovery_describe_the_signing_key() {
    let lab = demo_lab().await;
    let jwks: Value = http()
        .get(format!("{}/oauth2/v3/certs", lab.google_apis_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks, lab.jwks());
    let key = &jwks["keys"][0];
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
        key["n"].as_str().unwrap(),
        key["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[AUD]);
    validation.set_issuer(&[GOOGLE_ISSUER]);
    let token = lab.mint_id_token(DEPLOYER, AUD, Duration::from_secs(600));
    jsonwebtoken::decode::<Value>(&token, &decoding, &validation)
        .expect("tokens verify against the published JWKS");
    let doc: Value = http()
        .get(format!(
            "{}/.well-known/openid-configuration",
            lab.google_apis_url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], "https://accounts.google.com");
    assert_eq!(
        doc["jwks_uri"],
        format!("{}/oauth2/v3/certs", lab.google_apis_url())
    );
}

// ---------------------------------------------------------------- faults, ports, config

#[tokio::test]
async fn sts_faults_apply_to_the_next_n_requests() {
    let lab = demo_lab().await;
    let token = lab.mint_id_token(DEPLOYER, AUD, Duration::from_secs(3600));
    lab.faults().sts_error("Throttling", 400, 2);
    for _ in 0..2 {
        let (status, body) = assume(&lab, "gcp-deploy", &token, &[]).await;
        assert_eq!(
            (status, xml_text(&body, "Code").as_deref()),
            (400, Some("Throttling"))
        );
    }
    assert_eq!(assume(&lab, "gcp-deploy", &token, &[]).await.0, 200);
    let stats = lab.stats();
    assert_eq!(
        (
            stats.assume_role_with_web_identity_calls,
            stats.assume_role_with_web_identity_successes
        ),
        (3, 1)
    );

    // The same through the admin endpoint, as the out-of-process lab is driven.
    let r = http()
        .post(format!("{}/_lab/faults", lab.aws_sts_url()))
        .json(&json!([
            {"service": "aws_sts", "sts_error": {"code": "IDPCommunicationError", "status": 400}, "only": "AssumeRoleWithWebIdentity"},
            {"service": "aws_sts", "http": {"status": 503, "body": "down"}}
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(lab.faults().pending().len(), 2);
    let (_, body) = assume(&lab, "gcp-deploy", &token, &[]).await;
    assert_eq!(
        xml_text(&body, "Code").as_deref(),
        Some("IDPCommunicationError")
    );
    let (status, body) = assume(&lab, "gcp-deploy", &token, &[]).await;
    assert_eq!((status, body.as_str()), (503, "down"));
    let stats: Value = http()
        .get(format!("{}/_lab/stats", lab.aws_sts_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["assume_role_with_web_identity_calls"], 5);
    let r = http()
        .post(format!("{}/_lab/faults", lab.aws_sts_url()))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn google_faults_and_delays() {
    let lab = demo_lab().await;
    lab.faults().http_error(LabService::Metadata, 503, "", 1);
    assert_eq!(
        metadata_get(&lab, "/computeMetadata/v1/project/project-id")
            .await
            .status(),
        503
    );
    assert_eq!(
        metadata_get(&lab, "/computeMetadata/v1/project/project-id")
            .await
            .status(),
        200
    );
    lab.faults()
        .http_error(LabService::GoogleApis, 500, "{}", 1);
    assert_eq!(
        http()
            .get(format!("{}/oauth2/v3/certs", lab.google_apis_url()))
            .send()
            .await
            .unwrap()
            .status(),
        500
    );
    lab.faults()
        .delay(LabService::Metadata, Duration::from_millis(200), 1);
    let started = std::time::Instant::now();
    assert_eq!(
        metadata_get(&lab, "/computeMetadata/v1/project/project-id")
            .await
            .status(),
        200
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn fixed_ports_env_and_config_validation() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let lab = Lab::start_on(
        LabConfig::demo(),
        LabPorts {
            aws_sts: port,
            ..LabPorts::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(lab.aws_sts_url(), format!("http://127.0.0.1:{port}"));
    let env: std::collections::HashMap<_, _> = lab.env().into_iter().collect();
    assert_eq!(env["GCE_METADATA_HOST"], lab.metadata_host());
    assert_eq!(env["GCE_METADATA_IP"], lab.metadata_host());
    assert_eq!(env["AWS_ENDPOINT_URL_STS"], lab.aws_sts_url());
    assert_eq!(env["AWS_ENDPOINT_URL_CLOUDTRAIL"], lab.aws_sts_url());
    assert_eq!(env["KEYLESS_IAMCREDENTIALS_URL"], lab.google_apis_url());
    assert_eq!(env["AWS_REGION"], "us-east-1");
    let taken = Lab::start_on(
        LabConfig::demo(),
        LabPorts {
            aws_sts: port,
            ..LabPorts::default()
        },
    )
    .await;
    assert!(matches!(taken, Err(LabError::Bind { port: p, .. }) if p == port));
    lab.shutdown().await;
    let again = Lab::start_on(
        LabConfig::demo(),
        LabPorts {
            aws_sts: port,
            ..LabPorts::default()
        },
    )
    .await;
    assert!(again.is_ok(), "shutdown releases the port");

    let bad = LabConfig {
        metadata_service_account: "nobody@x".into(),
        ..LabConfig::demo()
    };
    assert!(matches!(Lab::start(bad).await, Err(LabError::Config(_))));
    let mut bad = LabConfig::demo();
    bad.roles[0].trust_policy = "{".into();
    assert!(matches!(Lab::start(bad).await, Err(LabError::Config(m)) if m.contains("gcp-deploy")));
}

/// By hand: the real `aws` CLI parses the lab's AssumeRoleWithWebIdentity answer, and its SigV4
/// signature on GetCallerIdentity is accepted by the hand-written verifier (a wrong secret is not).
/// `cargo test --lib aws_cli_ -- --ignored` (needs `aws` on PATH).
#[tokio::test]
#[ignore = "needs the aws CLI"]
async fn aws_cli_assumes_the_role_and_gets_caller_identity() {
    async fn aws(lab: &Lab, args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
        tokio::process::Command::new("aws")
            .args(args)
            .args(["--output", "json", "--endpoint-url", &lab.aws_sts_url()])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::temp_dir())
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .envs(env.iter().copied())
            .output()
            .await
            .expect("the aws CLI runs")
    }
    let lab = demo_lab().await;
    let token = metadata_id_token(&lab, AUD).await;
    let role_arn = lab.role_arn("gcp-deploy");
    let out = aws(
        &lab,
        &[
            "sts",
            "assume-role-with-web-identity",
            "--role-arn",
            &role_arn,
            "--role-session-name",
            "deployer",
            "--web-identity-token",
            &token,
        ],
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let assumed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(assumed["Audience"], "100000000000000000001");
    assert_eq!(
        assumed["AssumedRoleUser"]["Arn"],
        "arn:aws:sts::123456789012:assumed-role/gcp-deploy/deployer"
    );
    let c = &assumed["Credentials"];
    let (akid, secret, session) = (
        c["AccessKeyId"].as_str().unwrap(),
        c["SecretAccessKey"].as_str().unwrap(),
        c["SessionToken"].as_str().unwrap(),
    );

    let creds = [
        ("AWS_ACCESS_KEY_ID", akid),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("AWS_SESSION_TOKEN", session),
    ];
    let out = aws(&lab, &["sts", "get-caller-identity"], &creds).await;
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        id["Arn"],
        "arn:aws:sts::123456789012:assumed-role/gcp-deploy/deployer"
    );
    assert_eq!(id["Account"], "123456789012");
    assert_eq!(lab.stats().get_caller_identity_calls, 1);

    let wrong = "x".repeat(40);
    let creds = [
        ("AWS_ACCESS_KEY_ID", akid),
        ("AWS_SECRET_ACCESS_KEY", wrong.as_str()),
        ("AWS_SESSION_TOKEN", session),
    ];
    let out = aws(&lab, &["sts", "get-caller-identity"], &creds).await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("SignatureDoesNotMatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let intruder = lab.mint_id_token(INTRUDER, AUD, Duration::from_secs(3600));
    let out = aws(
        &lab,
        &[
            "sts",
            "assume-role-with-web-identity",
            "--role-arn",
            &role_arn,
            "--role-session-name",
            "x1",
            "--web-identity-token",
            &intruder,
        ],
        &[],
    )
    .await;
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("(AccessDenied)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The lab as a loaded upstream: with `throttle_above = 2`, five STS calls in flight together
/// get three AWS `Throttling` answers (HTTP 400, as STS throttles); the stats report the most
/// in flight and the throttled calls; `credential_lifetime_cap` caps what is issued whatever
/// `DurationSeconds` asked for; a queued `throttled` fault answers Google's way (429,
/// `RESOURCE_EXHAUSTED`). The latency only makes the five overlap; nothing here is timed.
#[tokio::test]
async fn a_slow_upstream_counts_calls_in_flight_and_throttles_above_its_threshold() {
    let config = LabConfig {
        upstream_latency: Duration::from_millis(300),
        throttle_above: Some(2),
        credential_lifetime_cap: Some(Duration::from_secs(60)),
        ..LabConfig::demo()
    };
    let lab = std::sync::Arc::new(Lab::start(config).await.unwrap());
    let token = metadata_id_token(&lab, AUD).await;
    let calls: Vec<_> = (0..5)
        .map(|_| {
            let (lab, token) = (lab.clone(), token.clone());
            tokio::spawn(async move { assume(&lab, "gcp-deploy", &token, &[]).await })
        })
        .collect();
    let mut answers = Vec::new();
    for call in calls {
        answers.push(call.await.unwrap());
    }
    let throttled: Vec<_> = answers
        .iter()
        .filter(|(_, body)| xml_text(body, "Code").as_deref() == Some("Throttling"))
        .collect();
    assert_eq!(throttled.len(), 3, "{answers:?}");
    assert!(throttled.iter().all(|(status, _)| *status == 400));
    let (_, issued) = answers.iter().find(|(status, _)| *status == 200).unwrap();
    let expiration = xml_text(issued, "Expiration").unwrap();
    let expiration =
        time::OffsetDateTime::parse(&expiration, &time::format_description::well_known::Rfc3339)
            .unwrap();
    let left = expiration - time::OffsetDateTime::now_utc();
    assert!(left <= time::Duration::seconds(60), "{left}");
    let stats = lab.stats();
    assert_eq!(stats.most_upstream_calls_in_flight, 5);
    assert_eq!(stats.upstream_calls_in_flight, 0);
    assert_eq!(stats.throttled_calls, 3);

    lab.faults().throttle(LabService::GoogleApis, 1);
    let r = http()
        .post(format!("{}/v1/token", lab.google_apis_url()))
        .form(&[("grant_type", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED");
}
