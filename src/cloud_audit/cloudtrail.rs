//! CloudTrail's side: `LookupEvents` for the STS calls that federate into AWS.
//!
//! CloudTrail's Event history keeps 90 days of management events without a trail, including
//! every `AssumeRoleWithWebIdentity` (a web identity becoming a role) and `AssumeRole` (the
//! hops of a chain). `LookupEvents` takes one lookup attribute per call, so each event name is
//! its own paged query; the role filter is applied here, on the record's `roleArn`. The API is
//! JSON 1.1 signed with SigV4 for service `cloudtrail`; it throttles at 2 calls a second per
//! account, so `ThrottlingException` is retried with backoff.

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;

use crate::cloud_audit::report::{Cloud, CloudEvent};
use crate::cloud_audit::TimeWindow;
use crate::credentials::AwsCredentials;
use crate::exchange::retry::{count_attempts, RetryPolicy, TimedOut};
use crate::types::{Region, SpecError, UpstreamUrl};
use crate::wire::{error_chain, truncate};

/// The `X-Amz-Target` of `LookupEvents`.
pub const LOOKUP_EVENTS_TARGET: &str =
    "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents";
/// The STS calls that federate into AWS, one lookup each.
pub const FEDERATION_EVENTS: [&str; 2] = ["AssumeRoleWithWebIdentity", "AssumeRole"];
/// `LookupEvents`' largest page.
const PAGE_SIZE: u32 = 50;
/// A bound on pages per event name, so a misbehaving endpoint that always answers a
/// `NextToken` cannot keep us paging forever (50 000 events).
const MAX_PAGES: usize = 1000;

/// Where CloudTrail is, resolved as the AWS SDKs resolve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CloudTrailEndpoint {
    /// The URL requests are POSTed to (with a trailing `/`).
    pub url: String,
    /// The region for SigV4.
    pub signing_region: String,
}

impl CloudTrailEndpoint {
    /// First match wins: `AWS_ENDPOINT_URL_CLOUDTRAIL`, `AWS_ENDPOINT_URL` (both ignored when
    /// `AWS_IGNORE_CONFIGURED_ENDPOINT_URLS=true`, each named in a warning when used), else
    /// `https://cloudtrail.REGION.amazonaws.com`. An unusable variable is an error naming it.
    pub fn resolve(region: &Region) -> Result<Self, SpecError> {
        let ignore_env = std::env::var("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS")
            .map(|v| v.eq_ignore_ascii_case("true"))
            .unwrap_or(false);
        let configured = if ignore_env {
            None
        } else {
            match UpstreamUrl::from_env("AWS_ENDPOINT_URL_CLOUDTRAIL")? {
                Some(url) => Some(url),
                None => UpstreamUrl::from_env("AWS_ENDPOINT_URL")?,
            }
        };
        Ok(Self::from_parts(configured, region))
    }

    /// The pure part of [`CloudTrailEndpoint::resolve`].
    pub fn from_parts(configured: Option<UpstreamUrl>, region: &Region) -> Self {
        let url = match configured {
            Some(url) => url.as_str().to_string(),
            None => format!("https://cloudtrail.{}.{}", region, region.dns_suffix()),
        };
        Self {
            url: url.trim_end_matches('/').to_string() + "/",
            signing_region: region.to_string(),
        }
    }
}

/// What went wrong reading CloudTrail, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CloudTrailError {
    /// CloudTrail refused the caller (no `cloudtrail:LookupEvents`, bad or expired keys).
    #[error("CloudTrail at {endpoint} refused LookupEvents ({code}): {message}\n  \
             hint: the AWS identity keyless found needs cloudtrail:LookupEvents (e.g. the AWSCloudTrail_ReadOnlyAccess policy); \
             `aws sts get-caller-identity` shows which identity that is")]
    Refused {
        endpoint: String,
        code: String,
        message: String,
    },

    /// CloudTrail kept throttling, failing or timing out.
    #[error("CloudTrail at {endpoint} did not answer LookupEvents after {}: {last}\n  \
             hint: LookupEvents allows 2 calls a second per account; try again later, or narrow --since", count_attempts(.attempts))]
    Unavailable {
        endpoint: String,
        last: String,
        attempts: u32,
    },

    /// CloudTrail answered with an error that retrying will not fix.
    #[error(
        "CloudTrail at {endpoint} answered LookupEvents with HTTP {status} ({code}): {message}\n  \
             hint: check that AWS_ENDPOINT_URL_CLOUDTRAIL (or AWS_ENDPOINT_URL) names CloudTrail"
    )]
    Failed {
        endpoint: String,
        status: u16,
        code: String,
        message: String,
    },

    /// The answer was not a LookupEvents answer.
    #[error("CloudTrail at {endpoint} answered something that is not a LookupEvents answer: {detail}\n  \
             hint: check that AWS_ENDPOINT_URL_CLOUDTRAIL (or AWS_ENDPOINT_URL) names CloudTrail")]
    Unreadable { endpoint: String, detail: String },

    /// The request could not be signed.
    #[error("could not sign the LookupEvents request: {0}")]
    Signing(String),

    /// No region anywhere: CloudTrail's Event history is regional.
    #[error("no AWS region to read CloudTrail in: each region keeps its own Event history (calls to the global STS endpoint are in us-east-1)\n  \
             hint: pass --region REGION (or set AWS_REGION)")]
    NoRegion,
}

impl crate::classify::Classify for CloudTrailError {
    fn class(&self) -> crate::classify::Class {
        use crate::classify::Class;
        match self {
            Self::Refused { .. } => Class::Refused,
            Self::Unavailable { .. } => Class::Unavailable,
            Self::Failed { status, .. } if *status >= 500 => Class::Unavailable,
            Self::NoRegion => Class::Usage,
            Self::Failed { .. } | Self::Unreadable { .. } | Self::Signing(_) => Class::Failure,
        }
    }
}

/// What one attempt at one page came to.
enum Attempt {
    /// Throttled, 5xx, network, timeout: worth another try.
    Transient(String),
    Final(CloudTrailError),
}

/// A `LookupEvents` answer (only what is read).
#[derive(Deserialize)]
struct LookupEventsPage {
    #[serde(rename = "Events", default)]
    events: Vec<LookupEvent>,
    #[serde(rename = "NextToken")]
    next_token: Option<String>,
}

#[derive(Deserialize)]
struct LookupEvent {
    /// The whole record, as a JSON string.
    #[serde(rename = "CloudTrailEvent")]
    cloud_trail_event: Option<String>,
}

/// The request body of one page.
fn lookup_body(event_name: &str, window: &TimeWindow, next_token: Option<&str>) -> String {
    let mut body = serde_json::json!({
        "LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": event_name}],
        "StartTime": window.start.unix_timestamp(),
        // Whole seconds, rounded outwards: an event a fraction of a second before now counts.
        "EndTime": window.end.unix_timestamp() + 1,
        "MaxResults": PAGE_SIZE,
    });
    if let Some(token) = next_token {
        body["NextToken"] = Value::String(token.to_string());
    }
    body.to_string()
}

/// Every `AssumeRoleWithWebIdentity` and `AssumeRole` CloudTrail recorded in `window` (for
/// `role_arn` only, when given), every page of each.
pub async fn fetch_federation_events(
    http: &reqwest::Client,
    endpoint: &CloudTrailEndpoint,
    credentials: &AwsCredentials,
    window: &TimeWindow,
    role_arn: Option<&str>,
    retry: &RetryPolicy,
) -> Result<Vec<CloudEvent>, CloudTrailError> {
    let mut events = Vec::new();
    for event_name in FEDERATION_EVENTS {
        // LookupEvents answers newest first; rows read oldest first.
        let start = events.len();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let body = lookup_body(event_name, window, next_token.as_deref());
            let page = retry
                .run(
                    || fetch_page(http, endpoint, credentials, &body),
                    |a| matches!(a, Attempt::Transient(_)),
                    |t: TimedOut| Attempt::Transient(t.to_string()),
                )
                .await
                .map_err(|(attempt, attempts)| match attempt {
                    Attempt::Final(e) => e,
                    Attempt::Transient(last) => CloudTrailError::Unavailable {
                        endpoint: endpoint.url.clone(),
                        last,
                        attempts,
                    },
                })?;
            for record in page
                .events
                .iter()
                .filter_map(|e| e.cloud_trail_event.as_deref())
            {
                let event = parse_record(record).map_err(|detail| CloudTrailError::Unreadable {
                    endpoint: endpoint.url.clone(),
                    detail: format!("a CloudTrailEvent: {detail}"),
                })?;
                if role_arn.is_none_or(|role| event.role_arn.as_deref() == Some(role)) {
                    events.push(event);
                }
            }
            next_token = page.next_token.filter(|t| !t.is_empty());
            if next_token.is_none() {
                break;
            }
        }
        events[start..].reverse();
    }
    Ok(events)
}

/// One signed `LookupEvents` call.
async fn fetch_page(
    http: &reqwest::Client,
    endpoint: &CloudTrailEndpoint,
    credentials: &AwsCredentials,
    body: &str,
) -> Result<LookupEventsPage, Attempt> {
    let content_type = "application/x-amz-json-1.1";
    let headers = crate::wire::sigv4::sign_request(
        "POST",
        &endpoint.url,
        &[
            ("content-type", content_type),
            ("x-amz-target", LOOKUP_EVENTS_TARGET),
        ],
        body.as_bytes(),
        credentials,
        &endpoint.signing_region,
        "cloudtrail",
        SystemTime::now(),
    )
    .map_err(|e| Attempt::Final(CloudTrailError::Signing(e.to_string())))?;
    let mut request = http
        .post(&endpoint.url)
        .header("content-type", content_type)
        .header("x-amz-target", LOOKUP_EVENTS_TARGET);
    for (name, value) in &headers {
        request = request.header(name.as_str(), value.expose());
    }
    let response = request
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| Attempt::Transient(error_chain(&e)))?;
    let status = response.status().as_u16();
    let error_type = response
        .headers()
        .get("x-amzn-errortype")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text =
        crate::wire::http::read_body(response)
            .await
            .map_err(|e| match e.is_transient() {
                true => Attempt::Transient(e.to_string()),
                false => Attempt::Final(CloudTrailError::Unreadable {
                    endpoint: endpoint.url.clone(),
                    detail: e.to_string(),
                }),
            })?;
    if status == 200 {
        return serde_json::from_str(&text).map_err(|e| {
            Attempt::Final(CloudTrailError::Unreadable {
                endpoint: endpoint.url.clone(),
                detail: format!("{e}: {}", truncate(&text, 200)),
            })
        });
    }
    let (code, message) = parse_fault(&text, error_type.as_deref());
    Err(classify_fault(&endpoint.url, status, code, message))
}

/// The error code and message of a JSON 1.1 fault: `__type` (maybe `namespace#Code`) or the
/// `x-amzn-ErrorType` header, and `message` / `Message`.
fn parse_fault(body: &str, header: Option<&str>) -> (String, String) {
    let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
    let code = value
        .get("__type")
        .and_then(Value::as_str)
        .or(header)
        .map(|c| c.rsplit('#').next().unwrap_or(c))
        .map(|c| c.split(':').next().unwrap_or(c).to_string())
        .unwrap_or_else(|| "unknown".into());
    let message = value
        .get("message")
        .or_else(|| value.get("Message"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| truncate(body, 200));
    (code, message)
}

fn classify_fault(endpoint: &str, status: u16, code: String, message: String) -> Attempt {
    let throttled = status == 429
        || matches!(
            code.as_str(),
            "ThrottlingException"
                | "Throttling"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
        );
    if throttled || status >= 500 {
        return Attempt::Transient(format!("HTTP {status} {code}: {message}"));
    }
    let refused = status == 403
        || matches!(
            code.as_str(),
            "AccessDeniedException"
                | "AccessDenied"
                | "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException"
                | "InvalidClientTokenId"
        );
    let endpoint = endpoint.to_string();
    Attempt::Final(if refused {
        CloudTrailError::Refused {
            endpoint,
            code,
            message,
        }
    } else {
        CloudTrailError::Failed {
            endpoint,
            status,
            code,
            message,
        }
    })
}

/// A CloudTrail record (the `CloudTrailEvent` string) as a row: who (the web identity's
/// provider, subject and audience, or the calling principal), which role and session, from
/// where, the request id, and the error code of a refusal.
pub fn parse_record(text: &str) -> Result<CloudEvent, String> {
    let record: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let field = |path: &str| {
        record
            .pointer(path)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let time = field("/eventTime").ok_or("no eventTime")?;
    let time = OffsetDateTime::parse(&time, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("eventTime {time:?}: {e}"))?;
    let mut event = CloudEvent::new(
        Cloud::Aws,
        time,
        &field("/eventSource").unwrap_or_else(|| "sts.amazonaws.com".into()),
        &field("/eventName").ok_or("no eventName")?,
    );
    let identity_type = field("/userIdentity/type").unwrap_or_default();
    if identity_type == "WebIdentityUser" {
        let provider = field("/userIdentity/identityProvider");
        let principal_id = field("/userIdentity/principalId");
        let user_name = field("/userIdentity/userName");
        let subject = field("/responseElements/subjectFromWebIdentityToken").or(user_name.clone());
        let audience = field("/responseElements/audience").or_else(|| {
            audience_from_principal_id(
                principal_id.as_deref()?,
                provider.as_deref()?,
                subject.as_deref()?,
            )
        });
        event.email = user_name.filter(|n| n.contains('@') && Some(n) != subject.as_ref());
        event.identity_provider = provider;
        event.principal = principal_id;
        event.subject = subject;
        event.audience = audience;
    } else {
        event.principal = field("/userIdentity/arn").or_else(|| field("/userIdentity/principalId"));
        event.subject = event.principal.clone();
    }
    event.role_arn = field("/requestParameters/roleArn");
    event.session_name = field("/requestParameters/roleSessionName");
    event.source_ip = field("/sourceIPAddress");
    event.request_id = field("/requestID");
    event.event_id = field("/eventID");
    event.error_code = field("/errorCode");
    event.error_message = field("/errorMessage");
    Ok(event)
}

/// The audience in a web identity's `principalId`, `PROVIDER:AUD:SUB` (for Google
/// `accounts.google.com:AZP:SUB`): what sits between the provider and the subject. The
/// provider may be recorded as an IAM OIDC provider ARN while the id starts with its host.
fn audience_from_principal_id(principal_id: &str, provider: &str, subject: &str) -> Option<String> {
    let host = provider.rsplit("oidc-provider/").next().unwrap_or(provider);
    let rest = principal_id
        .strip_prefix(provider)
        .or_else(|| principal_id.strip_prefix(host))?
        .strip_prefix(':')?;
    let audience = rest.strip_suffix(subject)?.strip_suffix(':')?;
    (!audience.is_empty()).then(|| audience.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/data/audit/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn records(name: &str) -> Vec<CloudEvent> {
        let page: LookupEventsPage = serde_json::from_str(&fixture(name)).unwrap();
        page.events
            .iter()
            .map(|e| parse_record(e.cloud_trail_event.as_deref().unwrap()).unwrap())
            .collect()
    }

    #[test]
    fn a_google_web_identity_names_its_numeric_audience_and_subject() {
        let events = records("cloudtrail-lookup-events.json");
        let google = &events[0];
        assert_eq!(google.action, "AssumeRoleWithWebIdentity");
        assert_eq!(
            google.identity_provider.as_deref(),
            Some("accounts.google.com")
        );
        assert_eq!(google.subject.as_deref(), Some("110000000000000000001"));
        assert_eq!(google.audience.as_deref(), Some("110000000000000000009"));
        assert_eq!(
            google.role_arn.as_deref(),
            Some("arn:aws:iam::123456789012:role/gcp-deploy")
        );
        assert_eq!(google.session_name.as_deref(), Some("keyless-node-1"));
        assert_eq!(
            google.request_id.as_deref(),
            Some("c0ffee00-0000-4000-8000-000000000001")
        );
        assert_eq!(google.source_ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(google.outcome(), "ok");
    }

    #[test]
    fn a_refusal_keeps_its_error_code_and_an_oidc_audience_comes_from_the_principal_id() {
        let events = records("cloudtrail-lookup-events.json");
        let github = &events[1];
        assert_eq!(github.error_code.as_deref(), Some("AccessDenied"));
        assert_eq!(
            github.subject.as_deref(),
            Some("repo:acme/app:ref:refs/heads/main")
        );
        assert_eq!(github.audience.as_deref(), Some("sts.amazonaws.com"));
        let chained = &events[2];
        assert_eq!(chained.action, "AssumeRole");
        assert_eq!(
            chained.principal.as_deref(),
            Some("arn:aws:sts::123456789012:assumed-role/gcp-deploy/keyless-node-1")
        );
        assert_eq!(
            chained.role_arn.as_deref(),
            Some("arn:aws:iam::210987654321:role/partner-readonly")
        );
    }

    #[test]
    fn the_endpoint_is_the_override_or_the_regional_host() {
        let region = Region::parse("eu-west-1").unwrap();
        assert_eq!(
            CloudTrailEndpoint::from_parts(None, &region).url,
            "https://cloudtrail.eu-west-1.amazonaws.com/"
        );
        let lab = UpstreamUrl::parse("http://127.0.0.1:4566/").unwrap();
        let endpoint = CloudTrailEndpoint::from_parts(Some(lab), &region);
        assert_eq!(endpoint.url, "http://127.0.0.1:4566/");
        assert_eq!(endpoint.signing_region, "eu-west-1");
    }

    #[test]
    fn throttling_is_retried_and_access_denied_is_a_refusal() {
        let (code, _) = parse_fault(
            r#"{"__type":"com.amazonaws.cloudtrail.v20131101#ThrottlingException","message":"Rate exceeded"}"#,
            None,
        );
        assert_eq!(code, "ThrottlingException");
        assert!(matches!(
            classify_fault("e", 400, code, String::new()),
            Attempt::Transient(_)
        ));
        let (code, message) =
            parse_fault(r#"{"__type":"AccessDeniedException","Message":"no"}"#, None);
        assert_eq!(message, "no");
        let Attempt::Final(error) = classify_fault("e", 400, code, message) else {
            panic!("a refusal is final")
        };
        use crate::classify::Classify;
        assert_eq!(error.class(), crate::classify::Class::Refused);
        assert!(
            error.to_string().contains("cloudtrail:LookupEvents"),
            "{error}"
        );
    }

    #[test]
    fn the_lookup_asks_for_one_event_name_in_the_window() {
        use time::macros::datetime;
        let window = TimeWindow {
            start: datetime!(2026-12-04 0:00 UTC),
            end: datetime!(2026-12-05 0:00 UTC),
        };
        let body: Value =
            serde_json::from_str(&lookup_body("AssumeRole", &window, Some("t2"))).unwrap();
        assert_eq!(body["LookupAttributes"][0]["AttributeValue"], "AssumeRole");
        assert_eq!(body["StartTime"], 1_796_342_400);
        assert_eq!(body["NextToken"], "t2");
    }
}
