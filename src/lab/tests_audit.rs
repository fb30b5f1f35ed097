//! The clouds' audit records in the lab: CloudTrail records of the STS calls and `LookupEvents`;
//! Cloud Audit Logs of Google STS and IAM Credentials and `entries.list`.

use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use super::tests::{demo_lab, http, xml_text};
use super::*;

const LOOKUP_TARGET: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents";
const DEPLOYER: &str = "deployer@keyless-lab.iam.gserviceaccount.com";
const INTRUDER: &str = "intruder@elsewhere.iam.gserviceaccount.com";

/// AssumeRoleWithWebIdentity over HTTP: (status, x-amzn-RequestId, body).
async fn assume_with_web_identity(lab: &Lab, role: &str, token: &str) -> (u16, String, String) {
    let role_arn = lab.role_arn(role);
    let form = [
        ("Action", "AssumeRoleWithWebIdentity"),
        ("Version", "2011-06-15"),
        ("RoleArn", role_arn.as_str()),
        ("RoleSessionName", "keyless-node-1"),
        ("WebIdentityToken", token),
        ("DurationSeconds", "1800"),
    ];
    let r = http()
        .post(lab.aws_sts_url())
        .header("user-agent", "keyless-test/1.0")
        .form(&form)
        .send()
        .await
        .unwrap();
    let request_id = r.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    (r.status().as_u16(), request_id, r.text().await.unwrap())
}

/// POSTs a JSON 1.1 request to the STS listener, signed by the `aws-sigv4` crate for `service`.
async fn json_post(
    lab: &Lab,
    target: &str,
    body: &Value,
    creds: Option<&crate::credentials::AwsCredentials>,
    service: &str,
) -> (u16, Value) {
    let url = format!("{}/", lab.cloudtrail_url());
    let body = body.to_string();
    let headers = [
        ("content-type", "application/x-amz-json-1.1"),
        ("x-amz-target", target),
    ];
    let mut request = http().post(&url).body(body.clone());
    for (k, v) in headers {
        request = request.header(k, v);
    }
    if let Some(creds) = creds {
        let signed = crate::exchange::aws_sts::sign_request(
            "POST",
            &url,
            &headers,
            body.as_bytes(),
            creds,
            "us-east-1",
            service,
            SystemTime::now(),
        )
        .unwrap();
        for (k, v) in signed {
            request = request.header(k, v.expose().to_string());
        }
    }
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    assert!(r.headers().contains_key("x-amzn-requestid"));
    (status, r.json().await.unwrap())
}

async fn lookup(lab: &Lab, body: Value) -> (u16, Value) {
    let user = lab.aws_user_credentials("ci-user");
    json_post(lab, LOOKUP_TARGET, &body, Some(&user), "cloudtrail").await
}

fn assert_no_secret(lab: &Lab, text: &str) {
    for secret in lab.issued_secrets() {
        assert!(
            !text.contains(secret.expose()),
            "a secret the lab issued is in: {text}"
        );
    }
}

// ---------------------------------------------------------------- CloudTrail records

/// One granted exchange leaves one record, in CloudTrail's shape, whose requestID is the
/// answer's `x-amzn-RequestId` and which holds no secret and not the web identity token.
#[tokio::test]
async fn a_web_identity_exchange_leaves_one_record_with_the_answers_request_id() {
    let lab = demo_lab().await;
    let token = lab.mint_id_token(DEPLOYER, "sts.amazonaws.com", Duration::from_secs(600));
    let (status, request_id, body) = assume_with_web_identity(&lab, "gcp-deploy", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        xml_text(&body, "RequestId").as_deref(),
        Some(request_id.as_str())
    );

    let records = lab.cloudtrail_events();
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r["requestID"], request_id.as_str());
    assert_eq!(r["eventVersion"], "1.08");
    assert_eq!(r["eventSource"], "sts.amazonaws.com");
    assert_eq!(r["eventName"], "AssumeRoleWithWebIdentity");
    assert_eq!(r["eventType"], "AwsApiCall");
    assert_eq!(r["managementEvent"], true);
    assert_eq!(r["readOnly"], true);
    assert_eq!(r["sourceIPAddress"], "127.0.0.1");
    assert_eq!(r["userAgent"], "keyless-test/1.0");
    assert_eq!(r["recipientAccountId"], lab.account_id());
    let sub = xml_text(&body, "SubjectFromWebIdentityToken").unwrap();
    let aud = xml_text(&body, "Audience").unwrap();
    let identity = &r["userIdentity"];
    assert_eq!(identity["type"], "WebIdentityUser");
    assert_eq!(identity["identityProvider"], "accounts.google.com");
    assert_eq!(
        identity["principalId"],
        format!("accounts.google.com:{aud}:{sub}")
    );
    assert_eq!(identity["userName"], sub.as_str());
    let params = &r["requestParameters"];
    assert_eq!(params["roleArn"], lab.role_arn("gcp-deploy"));
    assert_eq!(params["roleSessionName"], "keyless-node-1");
    assert_eq!(params["durationSeconds"], 1800);
    let response = &r["responseElements"];
    assert_eq!(
        response["credentials"]["accessKeyId"],
        xml_text(&body, "AccessKeyId").unwrap()
    );
    assert!(response["credentials"].get("sessionToken").is_none());
    assert_eq!(
        response["assumedRoleUser"]["arn"],
        xml_text(&body, "Arn").unwrap()
    );
    assert_eq!(response["subjectFromWebIdentityToken"], sub.as_str());
    assert_eq!(response["provider"], "accounts.google.com");
    assert!(r.get("errorCode").is_none());
    let text = r.to_string();
    assert_no_secret(&lab, &text);
    assert!(!text.contains(&token));
}

/// Refusals are recorded with AWS's errorCode and message, and no responseElements.
#[tokio::test]
async fn refusals_are_recorded_with_their_error_code() {
    let lab = demo_lab().await;
    let token = lab.mint_id_token(INTRUDER, "sts.amazonaws.com", Duration::from_secs(600));
    let (status, request_id, _) = assume_with_web_identity(&lab, "gcp-deploy", &token).await;
    assert_eq!(status, 403);
    let expired = lab.mint_id_token(DEPLOYER, "sts.amazonaws.com", Duration::ZERO);
    let (status, _, _) = assume_with_web_identity(&lab, "gcp-deploy", &expired).await;
    assert_eq!(status, 400);
    lab.faults().sts_error("Throttling", 400, 1);
    let (status, throttled_id, _) = assume_with_web_identity(&lab, "gcp-deploy", &token).await;
    assert_eq!(status, 400);

    let records = lab.cloudtrail_events();
    assert_eq!(records.len(), 3, "{records:#?}");
    let refused = &records[0];
    assert_eq!(refused["requestID"], request_id.as_str());
    assert_eq!(refused["errorCode"], "AccessDenied");
    assert_eq!(
        refused["errorMessage"],
        "Not authorized to perform sts:AssumeRoleWithWebIdentity"
    );
    assert!(refused["responseElements"].is_null());
    // Who the refused caller claimed to be, from the token's claims.
    let principal = refused["userIdentity"]["principalId"].as_str().unwrap();
    assert!(principal.starts_with("accounts.google.com:"), "{principal}");
    assert_eq!(records[1]["errorCode"], "ExpiredTokenException");
    assert_eq!(records[2]["errorCode"], "Throttling");
    assert_eq!(records[2]["requestID"], throttled_id.as_str());
    let text = Value::from(records).to_string();
    assert_no_secret(&lab, &text);
    assert!(!text.contains(&token) && !text.contains(&expired));
}

/// AssumeRole is recorded with the signer (`IAMUser`, its access key); GetCallerIdentity is not.
#[tokio::test]
async fn assume_role_is_recorded_with_its_signer_and_get_caller_identity_is_not() {
    let lab = demo_lab().await;
    let user = lab.aws_user_credentials("ci-user");
    let url = format!("{}/", lab.aws_sts_url());
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let role_arn = lab.role_arn("aws-workload");
    for body in [
        format!(
            "Action=AssumeRole&Version=2011-06-15&RoleArn={role_arn}&RoleSessionName=chain-1&DurationSeconds=900"
        ),
        "Action=GetCallerIdentity&Version=2011-06-15".to_string(),
    ] {
        let signed = crate::exchange::aws_sts::sign_request(
            "POST",
            &url,
            &headers,
            body.as_bytes(),
            &user,
            "us-east-1",
            "sts",
            SystemTime::now(),
        )
        .unwrap();
        let mut request = http()
            .post(&url)
            .header(headers[0].0, headers[0].1)
            .body(body);
        for (k, v) in signed {
            request = request.header(k, v.expose().to_string());
        }
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    }
    let records = lab.cloudtrail_events();
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r["eventName"], "AssumeRole");
    assert_eq!(r["userIdentity"]["type"], "IAMUser");
    assert_eq!(r["userIdentity"]["userName"], "ci-user");
    assert_eq!(
        r["userIdentity"]["accessKeyId"],
        user.access_key_id.as_str()
    );
    assert_eq!(r["requestParameters"]["roleSessionName"], "chain-1");
    assert_eq!(r["resources"][0]["ARN"], role_arn.as_str());
    assert_no_secret(&lab, &r.to_string());
}

// ---------------------------------------------------------------- LookupEvents

fn seeded(name: &str, ago: time::Duration, user: &str) -> Value {
    let at = (time::OffsetDateTime::now_utc() - ago)
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    json!({
        "eventVersion": "1.08",
        "eventTime": at,
        "eventName": name,
        "eventSource": "sts.amazonaws.com",
        "readOnly": true,
        "userIdentity": {"type": "WebIdentityUser", "userName": user,
                         "principalId": format!("accounts.google.com:aud:{user}"),
                         "identityProvider": "accounts.google.com"},
        "resources": [{"type": "AWS::IAM::Role", "ARN": "arn:aws:iam::123456789012:role/old"}],
        "requestID": "seeded",
    })
}

/// LookupEvents answers newest first, filters by one attribute and a time range, and pages.
#[tokio::test]
async fn lookup_events_filters_and_pages_newest_first() {
    let lab = demo_lab().await;
    let day = time::Duration::days(1);
    lab.record_cloudtrail_event(seeded("AssumeRoleWithWebIdentity", day * 10, "a"))
        .unwrap();
    lab.record_cloudtrail_event(seeded("AssumeRole", day * 5, "b"))
        .unwrap();
    lab.record_cloudtrail_event(seeded("AssumeRoleWithWebIdentity", day * 2, "c"))
        .unwrap();
    // Beyond event history's 90 days: never answered.
    lab.record_cloudtrail_event(seeded("AssumeRoleWithWebIdentity", day * 91, "z"))
        .unwrap();
    let token = lab.mint_id_token(DEPLOYER, "sts.amazonaws.com", Duration::from_secs(600));
    let (status, request_id, _) = assume_with_web_identity(&lab, "gcp-deploy", &token).await;
    assert_eq!(status, 200);

    let (status, all) = lookup(&lab, json!({})).await;
    assert_eq!(status, 200, "{all}");
    let names: Vec<&str> = all["Events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Username"].as_str().unwrap_or("live"))
        .collect();
    assert_eq!(names.len(), 4, "{all:#}");
    assert_eq!(&names[1..], ["c", "b", "a"]);
    let newest = &all["Events"][0];
    let record: Value = serde_json::from_str(newest["CloudTrailEvent"].as_str().unwrap()).unwrap();
    assert_eq!(record["requestID"], request_id.as_str());
    assert_eq!(newest["EventName"], "AssumeRoleWithWebIdentity");
    assert_eq!(newest["ReadOnly"], "true");
    assert!(newest["EventTime"].as_f64().unwrap() > 1.7e9);
    assert!(newest["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["ResourceType"] == "AWS::IAM::Role"
            && r["ResourceName"] == lab.role_arn("gcp-deploy")));

    let by_name = json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "AssumeRole"}]});
    let (_, only) = lookup(&lab, by_name).await;
    assert_eq!(only["Events"].as_array().unwrap().len(), 1, "{only:#}");
    assert_eq!(only["Events"][0]["Username"], "b");
    let by_user =
        json!({"LookupAttributes": [{"AttributeKey": "Username", "AttributeValue": "a"}]});
    assert_eq!(lookup(&lab, by_user).await.1["Events"][0]["Username"], "a");

    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let window = json!({"StartTime": now - 6 * 86_400, "EndTime": now - 86_400});
    let (_, windowed) = lookup(&lab, window).await;
    let users: Vec<&Value> = windowed["Events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["Username"])
        .collect();
    assert_eq!(users, [&json!("c"), &json!("b")]);

    let mut seen = Vec::new();
    let mut page = json!({"MaxResults": 1, "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "AssumeRoleWithWebIdentity"}]});
    loop {
        let (status, answer) = lookup(&lab, page.clone()).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["Events"].as_array().unwrap().len() <= 1);
        seen.extend(
            answer["Events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["EventId"].clone()),
        );
        match answer.get("NextToken") {
            Some(next) => page["NextToken"] = next.clone(),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
}

/// Bad lookups get CloudTrail's exceptions; unsigned or badly signed requests are refused;
/// the fault queue makes it throttle.
#[tokio::test]
async fn lookup_events_refuses_bad_input_unsigned_requests_and_can_throttle() {
    let lab = demo_lab().await;
    let cases = [
        (
            json!({"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": "a"},
                                        {"AttributeKey": "Username", "AttributeValue": "b"}]}),
            "InvalidLookupAttributesException",
        ),
        (
            json!({"LookupAttributes": [{"AttributeKey": "Color", "AttributeValue": "red"}]}),
            "InvalidLookupAttributesException",
        ),
        (
            json!({"StartTime": 1_800_000_000, "EndTime": 1_700_000_000}),
            "InvalidTimeRangeException",
        ),
        (json!({"MaxResults": 0}), "InvalidMaxResultsException"),
        (json!({"MaxResults": 51}), "InvalidMaxResultsException"),
        (json!({"NextToken": "garbage"}), "InvalidNextTokenException"),
    ];
    for (body, expected) in cases {
        let (status, answer) = lookup(&lab, body.clone()).await;
        assert_eq!(status, 400, "{body} → {answer}");
        assert_eq!(answer["__type"], expected, "{body} → {answer}");
        assert!(answer["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    let (status, answer) = json_post(&lab, LOOKUP_TARGET, &json!({}), None, "cloudtrail").await;
    assert_eq!(
        (status, answer["__type"].as_str()),
        (400, Some("MissingAuthenticationTokenException"))
    );
    let mut wrong = lab.aws_user_credentials("ci-user");
    wrong.secret_access_key =
        crate::secret::Secret::new("not-the-secret-key-0000000000000000000000");
    let (status, answer) =
        json_post(&lab, LOOKUP_TARGET, &json!({}), Some(&wrong), "cloudtrail").await;
    assert_eq!(
        (status, answer["__type"].as_str()),
        (400, Some("InvalidSignatureException"))
    );
    let user = lab.aws_user_credentials("ci-user");
    let (_, answer) = json_post(&lab, LOOKUP_TARGET, &json!({}), Some(&user), "sts").await;
    assert_eq!(answer["__type"], "InvalidSignatureException");
    let mut unknown = user.clone();
    unknown.access_key_id = "AKIAUNKNOWNUNKNOWN00".into();
    let (_, answer) = json_post(
        &lab,
        LOOKUP_TARGET,
        &json!({}),
        Some(&unknown),
        "cloudtrail",
    )
    .await;
    assert_eq!(answer["__type"], "UnrecognizedClientException");
    let other = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.CreateTrail";
    let (_, answer) = json_post(&lab, other, &json!({}), Some(&user), "cloudtrail").await;
    assert_eq!(answer["__type"], "UnknownOperationException");

    lab.faults().push(Fault {
        service: LabService::Cloudtrail,
        kind: FaultKind::StsError {
            code: "ThrottlingException".into(),
            status: 400,
            message: Some("Rate exceeded".into()),
        },
        times: 1,
        only: Some("LookupEvents".into()),
    });
    let (status, answer) = lookup(&lab, json!({})).await;
    assert_eq!(
        (status, answer["__type"].as_str()),
        (400, Some("ThrottlingException"))
    );
    assert_eq!(lookup(&lab, json!({})).await.0, 200);
    // LookupEvents itself is not an STS call: nothing recorded.
    assert!(lab.cloudtrail_events().is_empty());
}

/// The admin API seeds and reads records for an out-of-process lab.
#[tokio::test]
async fn the_admin_api_seeds_and_reads_records() {
    let lab = demo_lab().await;
    let url = format!("{}/_lab/cloudtrail", lab.aws_sts_url());
    let r = http()
        .post(&url)
        .json(&seeded("AssumeRole", time::Duration::hours(3), "x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let r = http()
        .post(&url)
        .json(&json!({"eventName": "AssumeRole"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let records: Vec<Value> = http().get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(records.len(), 1);
    assert!(records[0]["eventID"].as_str().is_some());
}

// ---------------------------------------------------------------- Cloud Audit Logs

const COPYCAT: &str = "copycat@keyless-lab.iam.gserviceaccount.com";
const CI_RUNNER: &str = "ci-runner@keyless-lab.iam.gserviceaccount.com";
const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

async fn entries_list(lab: &Lab, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let mut r = http()
        .post(format!("{}/v2/entries:list", lab.logging_url()))
        .json(&body);
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    let r = r.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn get_iam_policy(lab: &Lab, bearer: &str, project: &str) -> (u16, Value) {
    let r = http()
        .post(format!(
            "{}/v1/projects/{project}:getIamPolicy",
            lab.logging_url()
        ))
        .bearer_auth(bearer)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

fn services_with_data_access(policy: &Value) -> Vec<&str> {
    policy["auditConfigs"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["service"].as_str().unwrap())
        .collect()
}

/// A token exchange and the impersonation it enables leave one entry each, naming the
/// federated principal; refusals carry the gRPC status; no token is recorded.
#[tokio::test]
async fn google_sts_and_generate_access_token_leave_entries_with_principal_subject() {
    let lab = demo_lab().await;
    let federated = super::tests_aws_to_gcp::federated_token(&lab).await;
    let (status, answer) =
        super::tests_aws_to_gcp::generate_access_token(&lab, &federated, COPYCAT, "3600s").await;
    assert_eq!(status, 200, "{answer}");
    let (status, _) =
        super::tests_aws_to_gcp::generate_access_token(&lab, &federated, CI_RUNNER, "3600s").await;
    assert_eq!(status, 403);
    let unknown = lab.provider_audience("keyless-pool", "no-such-provider");
    let (status, _) = super::tests_aws_to_gcp::exchange(&lab, &unknown, "x").await;
    assert_eq!(status, 400);

    let entries = lab.audit_log_entries();
    assert_eq!(entries.len(), 4, "{entries:#?}");
    let (sts, impersonation, refused, bad_target) =
        (&entries[0], &entries[1], &entries[2], &entries[3]);
    let pool = format!(
        "principal://iam.googleapis.com/projects/{DEMO_PROJECT_NUMBER}/locations/global/workloadIdentityPools/{DEMO_POOL}/subject/"
    );
    let subject = sts["protoPayload"]["authenticationInfo"]["principalSubject"]
        .as_str()
        .unwrap();
    assert!(subject.starts_with(&pool), "{subject}");
    assert!(subject.contains("aws-workload"), "{subject}");
    assert_eq!(
        sts["logName"],
        "projects/keyless-lab/logs/cloudaudit.googleapis.com%2Fdata_access"
    );
    let p = &sts["protoPayload"];
    assert_eq!(
        p["@type"],
        "type.googleapis.com/google.cloud.audit.AuditLog"
    );
    assert_eq!(p["serviceName"], "sts.googleapis.com");
    assert_eq!(
        p["methodName"],
        "google.identity.sts.v1.SecurityTokenService.ExchangeToken"
    );
    assert_eq!(p["status"], json!({}));
    assert_eq!(p["requestMetadata"]["callerIp"], "127.0.0.1");
    assert!(p["resourceName"]
        .as_str()
        .unwrap()
        .starts_with("projects/424242424242/locations/global/workloadIdentityPools/"));
    assert_eq!(sts["severity"], "INFO");
    assert!(sts["insertId"].as_str().is_some() && sts["timestamp"].as_str().is_some());

    let p = &impersonation["protoPayload"];
    assert_eq!(p["serviceName"], "iamcredentials.googleapis.com");
    assert_eq!(p["methodName"], "GenerateAccessToken");
    assert_eq!(p["authenticationInfo"]["principalSubject"], subject);
    assert_eq!(p["authorizationInfo"][0]["granted"], true);
    assert_eq!(
        p["authorizationInfo"][0]["permission"],
        "iam.serviceAccounts.getAccessToken"
    );
    assert_eq!(impersonation["resource"]["labels"]["email_id"], COPYCAT);
    assert_eq!(p["request"]["lifetime"], "3600s");
    assert!(p["response"]["expireTime"].as_str().is_some());

    let p = &refused["protoPayload"];
    assert_eq!(p["status"]["code"], 7, "{refused:#}");
    assert_eq!(p["authorizationInfo"][0]["granted"], false);
    assert_eq!(refused["severity"], "ERROR");
    let p = &bad_target["protoPayload"];
    assert!(p["status"]["code"].as_i64().unwrap() > 0, "{bad_target:#}");
    assert!(p["authenticationInfo"].get("principalSubject").is_none());

    let text = Value::from(entries).to_string();
    assert_no_secret(&lab, &text);
    assert!(!text.contains(&federated));
}

/// A service account or user caller is named by `principalEmail`; generateIdToken is recorded
/// as GenerateIdToken.
#[tokio::test]
async fn an_email_caller_is_named_by_principal_email() {
    let lab = demo_lab().await;
    let bearer = super::tests::metadata_access_token(&lab, CLOUD_PLATFORM).await;
    let (status, _) = super::tests::generate_id_token(
        &lab,
        Some(&bearer),
        CI_RUNNER,
        json!({"audience": "sts.amazonaws.com", "includeEmail": true}),
    )
    .await;
    assert_eq!(status, 200);
    // No credentials at all: not authenticated, not recorded (as Google does).
    let (status, _) = super::tests::generate_id_token(
        &lab,
        None,
        CI_RUNNER,
        json!({"audience": "sts.amazonaws.com"}),
    )
    .await;
    assert_eq!(status, 401);
    let entries = lab.audit_log_entries();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let p = &entries[0]["protoPayload"];
    assert_eq!(p["methodName"], "GenerateIdToken");
    assert_eq!(p["authenticationInfo"]["principalEmail"], DEPLOYER);
    assert_eq!(p["request"]["audience"], "sts.amazonaws.com");
    assert_eq!(
        p["resourceName"],
        "projects/-/serviceAccounts/100000000000000000002"
    );
    assert_no_secret(&lab, &entries[0].to_string());
}

/// With Data Access logs off for a service its calls leave nothing, and getIamPolicy shows the
/// project's auditConfigs as the switch has them.
#[tokio::test]
async fn data_access_off_leaves_no_entry_and_get_iam_policy_shows_it() {
    let lab = demo_lab().await;
    let reader = super::tests::metadata_access_token(&lab, CLOUD_PLATFORM).await;
    let (status, policy) = get_iam_policy(&lab, &reader, "keyless-lab").await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(
        services_with_data_access(&policy),
        ["iamcredentials.googleapis.com", "sts.googleapis.com"]
    );
    assert_eq!(
        policy["auditConfigs"][0]["auditLogConfigs"],
        json!([{"logType": "DATA_READ"}, {"logType": "ADMIN_READ"}])
    );

    lab.set_data_access_logs("iamcredentials.googleapis.com", false);
    let federated = super::tests_aws_to_gcp::federated_token(&lab).await;
    let (status, _) =
        super::tests_aws_to_gcp::generate_access_token(&lab, &federated, COPYCAT, "3600s").await;
    assert_eq!(status, 200);
    let entries = lab.audit_log_entries();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert_eq!(
        entries[0]["protoPayload"]["serviceName"],
        "sts.googleapis.com"
    );
    let (_, policy) = get_iam_policy(&lab, &reader, DEMO_PROJECT_NUMBER).await;
    assert_eq!(services_with_data_access(&policy), ["sts.googleapis.com"]);

    // Over the admin API, for an out-of-process lab.
    let r = http()
        .post(format!("{}/_lab/data-access", lab.aws_sts_url()))
        .json(&json!({"service": "sts.googleapis.com", "enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    super::tests_aws_to_gcp::federated_token(&lab).await;
    assert_eq!(lab.audit_log_entries().len(), 1);
    let (_, policy) = get_iam_policy(&lab, &reader, "keyless-lab").await;
    assert!(policy.get("auditConfigs").is_none(), "{policy}");
    let (status, denied) = get_iam_policy(&lab, &reader, "someone-else").await;
    assert_eq!(
        (status, denied["error"]["status"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
}

fn seeded_entry(method: &str, ago: time::Duration) -> Value {
    let at = (time::OffsetDateTime::now_utc() - ago)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    json!({
        "logName": "projects/keyless-lab/logs/cloudaudit.googleapis.com%2Fdata_access",
        "timestamp": at,
        "severity": "INFO",
        "protoPayload": {"serviceName": "iamcredentials.googleapis.com", "methodName": method},
    })
}

/// entries.list: bearer auth, project check, filter, order, paging, errors and throttling.
#[tokio::test]
async fn entries_list_filters_orders_pages_and_refuses() {
    let lab = demo_lab().await;
    let hour: time::Duration = time::Duration::hours(1);
    for (i, method) in ["GenerateIdToken", "GenerateAccessToken", "GenerateIdToken"]
        .iter()
        .enumerate()
    {
        lab.record_audit_log_entry(seeded_entry(
            method,
            hour * (10 - i32::try_from(i).unwrap()),
        ))
        .unwrap();
    }
    let mut other = seeded_entry("GenerateIdToken", hour);
    other["logName"] = "projects/elsewhere/logs/cloudaudit.googleapis.com%2Fdata_access".into();
    lab.record_audit_log_entry(other).unwrap();
    let reader = super::tests::metadata_access_token(&lab, CLOUD_PLATFORM).await;
    let project = json!(["projects/keyless-lab"]);

    let (status, all) = entries_list(&lab, Some(&reader), json!({"resourceNames": project})).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["entries"].as_array().unwrap().len(), 3);
    assert!(all.get("nextPageToken").is_none());
    let ids: Vec<Value> = all["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["insertId"].clone())
        .collect();

    let (_, desc) = entries_list(
        &lab,
        Some(&reader),
        json!({"resourceNames": project, "orderBy": "timestamp desc"}),
    )
    .await;
    let reversed: Vec<Value> = desc["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["insertId"].clone())
        .collect();
    assert_eq!(reversed, ids.iter().rev().cloned().collect::<Vec<_>>());

    let filter = r#"protoPayload.serviceName="iamcredentials.googleapis.com" AND protoPayload.methodName="GenerateIdToken""#;
    let (_, filtered) = entries_list(
        &lab,
        Some(&reader),
        json!({"resourceNames": project, "filter": filter}),
    )
    .await;
    assert_eq!(
        filtered["entries"].as_array().unwrap().len(),
        2,
        "{filtered}"
    );
    let since = (time::OffsetDateTime::now_utc() - time::Duration::minutes(9 * 60 + 30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let recent = format!(r#"timestamp>="{since}""#);
    let (_, recent) = entries_list(
        &lab,
        Some(&reader),
        json!({"resourceNames": project, "filter": recent}),
    )
    .await;
    assert_eq!(recent["entries"].as_array().unwrap().len(), 2, "{recent}");

    let mut paged = Vec::new();
    let mut request = json!({"resourceNames": project, "pageSize": 1});
    loop {
        let (status, page) = entries_list(&lab, Some(&reader), request.clone()).await;
        assert_eq!(status, 200, "{page}");
        paged.extend(
            page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["insertId"].clone()),
        );
        match page.get("nextPageToken") {
            Some(token) => request["pageToken"] = token.clone(),
            None => break,
        }
    }
    assert_eq!(paged, ids);

    let (status, e) = entries_list(&lab, None, json!({"resourceNames": project})).await;
    assert_eq!(
        (status, e["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED"))
    );
    let (status, _) =
        entries_list(&lab, Some("ya29.forged"), json!({"resourceNames": project})).await;
    assert_eq!(status, 401);
    let bad = [
        json!({"resourceNames": ["projects/elsewhere"]}),
        json!({}),
        json!({"resourceNames": ["organizations/1"]}),
        json!({"resourceNames": project, "filter": "severity=ERROR)"}),
        json!({"resourceNames": project, "orderBy": "severity"}),
        json!({"resourceNames": project, "pageSize": 1001}),
        json!({"resourceNames": project, "pageToken": "bogus"}),
    ];
    let expected = [
        (403, "PERMISSION_DENIED"),
        (400, "INVALID_ARGUMENT"),
        (400, "INVALID_ARGUMENT"),
        (400, "INVALID_ARGUMENT"),
        (400, "INVALID_ARGUMENT"),
        (400, "INVALID_ARGUMENT"),
        (400, "INVALID_ARGUMENT"),
    ];
    for (body, (code, status_name)) in bad.into_iter().zip(expected) {
        let (status, e) = entries_list(&lab, Some(&reader), body.clone()).await;
        assert_eq!(
            (status, e["error"]["status"].as_str()),
            (code, Some(status_name)),
            "{body} → {e}"
        );
    }
    let (_, e) = entries_list(
        &lab,
        Some(&reader),
        json!({"resourceNames": project, "filter": "severity=ERROR)"}),
    )
    .await;
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("line 1, column 15"),
        "{e}"
    );

    lab.faults().http_error(
        LabService::CloudLogging,
        429,
        r#"{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED"}}"#,
        1,
    );
    let (status, e) = entries_list(&lab, Some(&reader), json!({"resourceNames": project})).await;
    assert_eq!(
        (status, e["error"]["status"].as_str()),
        (429, Some("RESOURCE_EXHAUSTED"))
    );
    assert_eq!(
        entries_list(&lab, Some(&reader), json!({"resourceNames": project}))
            .await
            .0,
        200
    );
}

/// GetWebIdentityToken signed by a role session is recorded with the `AssumedRole` identity and
/// its session issuer, and without the token it minted.
#[tokio::test]
async fn get_web_identity_token_is_recorded_without_the_token() {
    let lab = demo_lab().await;
    lab.enable_outbound_federation();
    let session = lab.issue_role_credentials("aws-workload", "build-7", Duration::from_secs(3600));
    let url = format!("{}/", lab.aws_sts_url());
    let headers = [("content-type", "application/x-www-form-urlencoded")];
    let body = "Action=GetWebIdentityToken&Version=2011-06-15&Audience.member.1=https%3A%2F%2Frp.example&SigningAlgorithm=RS256";
    let signed = crate::exchange::aws_sts::sign_request(
        "POST",
        &url,
        &headers,
        body.as_bytes(),
        &session,
        "us-east-1",
        "sts",
        SystemTime::now(),
    )
    .unwrap();
    let mut request = http()
        .post(&url)
        .header(headers[0].0, headers[0].1)
        .body(body);
    for (k, v) in signed {
        request = request.header(k, v.expose().to_string());
    }
    let r = request.send().await.unwrap();
    let request_id = r.headers()["x-amzn-requestid"]
        .to_str()
        .unwrap()
        .to_string();
    let answer = r.text().await.unwrap();
    assert!(answer.contains("<WebIdentityToken>"), "{answer}");
    let token = xml_text(&answer, "WebIdentityToken").unwrap();

    let records = lab.cloudtrail_events();
    assert_eq!(records.len(), 1, "{records:#?}");
    let r = &records[0];
    assert_eq!(r["eventName"], "GetWebIdentityToken");
    assert_eq!(r["requestID"], request_id.as_str());
    let identity = &r["userIdentity"];
    assert_eq!(identity["type"], "AssumedRole");
    assert_eq!(
        identity["arn"],
        format!(
            "arn:aws:sts::{}:assumed-role/aws-workload/build-7",
            lab.account_id()
        )
    );
    assert_eq!(identity["accessKeyId"], session.access_key_id.as_str());
    assert_eq!(
        identity["sessionContext"]["sessionIssuer"]["arn"],
        lab.role_arn("aws-workload")
    );
    assert_eq!(
        r["requestParameters"]["audience"],
        json!(["https://rp.example"])
    );
    assert!(r["responseElements"]["expiration"].as_str().is_some());
    let text = r.to_string();
    assert!(!text.contains(&token));
    assert_no_secret(&lab, &text);
}
