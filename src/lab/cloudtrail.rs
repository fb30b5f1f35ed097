//! CloudTrail for the lab's AWS STS: what AWS records about each federation call, and
//! `LookupEvents` to read it back.
//!
//! An audit tool is only tested if the trail it reads looks like AWS's, so every
//! `AssumeRoleWithWebIdentity`, `AssumeRole` and `GetWebIdentityToken` the lab answers (granted,
//! refused or failed by an injected STS error) becomes one record in CloudTrail's documented
//! shape: `userIdentity` (`WebIdentityUser` with `principalId` = `PROVIDER:AUD:SUB`, or the
//! signing `AssumedRole` / `IAMUser`), `requestParameters`, `responseElements` (the access key
//! id and expiry, never the secret key, session token or web identity token), `errorCode` /
//! `errorMessage` for refusals, and `requestID` = the `x-amzn-RequestId` the lab answered with.
//! Records are made by a layer around the STS route ([`record_sts`]) from the request and the
//! answer, so the STS handlers stay about STS.
//!
//! `LookupEvents` (JSON 1.1, SigV4 for `cloudtrail`) is served on the same listener: one lookup
//! attribute, a time range, newest first, `MaxResults` ≤ 50 and `NextToken` paging, with
//! CloudTrail's exception names. Event history keeps 90 days, as AWS's does without a trail.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::aws_auth::{self, AwsAuthError};
use super::faults::{FaultKind, LabService};
use super::ids;
use super::sigv4::{Authorization, SignedRequest};
use super::state::LabState;
use crate::policy::issuer::IdTokenClaims;

/// `X-Amz-Target` prefix of the CloudTrail JSON API.
pub(crate) const TARGET_PREFIX: &str = "com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.";
/// The STS actions CloudTrail records here (`GetCallerIdentity` is not recorded by AWS either).
const RECORDED_ACTIONS: [&str; 3] = [
    "AssumeRoleWithWebIdentity",
    "AssumeRole",
    "GetWebIdentityToken",
];
/// How long event history keeps management events without a trail.
const RETENTION: time::Duration = time::Duration::days(90);
/// The largest request or answer the recording layer reads (STS bodies are a few KiB).
const BODY_LIMIT: usize = 4 << 20;

/// The recorded events, in the order recorded.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    events: Mutex<Vec<TrailEvent>>,
}

#[derive(Debug, Clone)]
struct TrailEvent {
    /// Insertion order: the tie-breaker between events of the same instant, and the page key.
    seq: u64,
    time: OffsetDateTime,
    record: Value,
}

impl Trail {
    /// Adds a record; it must carry `eventTime` (RFC 3339) and `eventName`. An absent `eventID`
    /// is filled in.
    pub fn push(&self, mut record: Value) -> Result<(), String> {
        let time = record
            .get("eventTime")
            .and_then(Value::as_str)
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .ok_or("a CloudTrail record needs eventTime as RFC 3339 (2026-12-04T23:40:01Z)")?;
        if record.get("eventName").and_then(Value::as_str).is_none() {
            return Err("a CloudTrail record needs eventName".into());
        }
        let object = record
            .as_object_mut()
            .ok_or("a CloudTrail record is a JSON object")?;
        object
            .entry("eventID")
            .or_insert_with(|| Value::String(ids::request_id()));
        let mut events = self.lock();
        let seq = events.len() as u64;
        events.push(TrailEvent { seq, time, record });
        Ok(())
    }

    /// Every record, oldest recorded first.
    pub fn records(&self) -> Vec<Value> {
        self.lock().iter().map(|e| e.record.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<TrailEvent>> {
        // Pushes and clones only: a poisoned lock still holds consistent data.
        self.events.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The layer around the STS route: passes the request on, then records the call if it was one
/// of [`RECORDED_ACTIONS`] and STS answered it (an injected raw HTTP fault, which carries no
/// `x-amzn-RequestId`, is not STS answering).
pub(crate) async fn record_sts(
    State(state): State<Arc<LabState>>,
    request: Request,
    next: Next,
) -> Response {
    if request.headers().contains_key("x-amz-target") {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response();
    };
    let params = super::aws_sts::parameters(&parts.uri, &body);
    let action = param(&params, "Action").unwrap_or_default().to_string();
    if !RECORDED_ACTIONS.contains(&action.as_str()) {
        return next.run(Request::from_parts(parts, Body::from(body))).await;
    }
    let source_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "127.0.0.1".to_string(), |c| c.0.ip().to_string());
    let call = StsCall {
        action,
        params,
        user_agent: header_text(&parts.headers, "user-agent"),
        authorization: header_text(&parts.headers, "authorization"),
        source_ip,
        time: OffsetDateTime::now_utc(),
    };
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let Some(request_id) = response
        .headers()
        .get("x-amzn-requestid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
    else {
        return response;
    };
    let (parts, body) = response.into_parts();
    let Ok(answer) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "answer too large").into_response();
    };
    let record = call.record(
        &state,
        &request_id,
        parts.status.is_success(),
        &String::from_utf8_lossy(&answer),
    );
    if let Err(e) = state.cloudtrail.push(record) {
        tracing::warn!("lab cloudtrail: could not record a call: {e}");
    }
    Response::from_parts(parts, Body::from(answer))
}

/// What the recording layer keeps of a request while STS answers it.
struct StsCall {
    action: String,
    params: Vec<(String, String)>,
    user_agent: Option<String>,
    authorization: Option<String>,
    source_ip: String,
    time: OffsetDateTime,
}

impl StsCall {
    fn param(&self, name: &str) -> Option<&str> {
        param(&self.params, name)
    }

    /// The CloudTrail record of this call and STS's answer to it.
    fn record(&self, state: &LabState, request_id: &str, ok: bool, answer: &str) -> Value {
        let lab_account = state.config.account_id.as_str();
        let signer = self
            .authorization
            .as_deref()
            .and_then(|a| Authorization::parse(a).ok());
        let role_arn = self.param("RoleArn");
        let role_account = role_arn
            .and_then(|arn| arn.split(':').nth(4))
            .filter(|a| a.len() == 12 && a.bytes().all(|b| b.is_ascii_digit()));
        let (user_identity, caller_account) = if self.action == "AssumeRoleWithWebIdentity" {
            (self.web_identity_user(state, answer), None)
        } else {
            signer_identity(state, signer.as_ref())
        };
        let recipient = role_account
            .or(caller_account.as_deref())
            .unwrap_or(lab_account);
        let mut record = json!({
            "eventVersion": "1.08",
            "userIdentity": user_identity,
            "eventTime": cloudtrail_time(self.time),
            "eventSource": "sts.amazonaws.com",
            "eventName": self.action,
            "awsRegion": signer.as_ref().map_or("us-east-1", |s| s.region.as_str()),
            "sourceIPAddress": self.source_ip,
            "userAgent": self.user_agent.as_deref().unwrap_or(""),
            "requestParameters": self.request_parameters(),
            "responseElements": Value::Null,
            "requestID": request_id,
            "eventID": ids::request_id(),
            "readOnly": true,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": recipient,
            "eventCategory": "Management",
        });
        if let Some(arn) = role_arn {
            record["resources"] = json!([{
                "accountId": role_account.unwrap_or(lab_account),
                "type": "AWS::IAM::Role",
                "ARN": arn,
            }]);
        }
        if ok {
            record["responseElements"] = self.response_elements(answer);
        } else {
            record["errorCode"] = xml_text(answer, "Code").unwrap_or_default().into();
            record["errorMessage"] = xml_text(answer, "Message").unwrap_or_default().into();
        }
        record
    }

    /// `WebIdentityUser`: from the answer when STS granted (it names the provider, audience and
    /// subject it matched), else from the token's unverified claims — never the token itself.
    fn web_identity_user(&self, state: &LabState, answer: &str) -> Value {
        let claims = self
            .param("WebIdentityToken")
            .and_then(unverified_claims)
            .and_then(|c| serde_json::from_value::<IdTokenClaims>(c).ok());
        let from_claims = claims.map(|c| {
            let provider = c.issuer().federated_principal(&state.config.account_id);
            let aud = match state.config.oidc_provider(&c.iss) {
                Some(p) => c.aud.values().iter().find(|a| p.client_ids.contains(a)),
                None => c.azp.as_ref(),
            }
            .or(c.aud.values().first())
            .cloned()
            .unwrap_or_default();
            (provider, aud, c.sub)
        });
        let answered = (
            xml_text(answer, "Provider"),
            xml_text(answer, "Audience"),
            xml_text(answer, "SubjectFromWebIdentityToken"),
        );
        let (provider, aud, sub) = match (answered, from_claims) {
            ((Some(p), Some(a), Some(s)), _) => (p, a, s),
            (_, Some(claimed)) => claimed,
            _ => return json!({"type": "WebIdentityUser"}),
        };
        json!({
            "type": "WebIdentityUser",
            "principalId": format!("{provider}:{aud}:{sub}"),
            "userName": sub,
            "identityProvider": provider,
        })
    }

    /// The parameters as CloudTrail writes them (camelCase, numbers as numbers); never the
    /// web identity token.
    fn request_parameters(&self) -> Value {
        let mut out = Map::new();
        let mut text = |key: &str, name: &str| {
            if let Some(v) = self.param(name) {
                out.insert(key.to_string(), v.into());
            }
        };
        text("roleArn", "RoleArn");
        text("roleSessionName", "RoleSessionName");
        text("externalId", "ExternalId");
        text("sourceIdentity", "SourceIdentity");
        text("signingAlgorithm", "SigningAlgorithm");
        text("policy", "Policy");
        if let Some(d) = self.param("DurationSeconds") {
            out.insert(
                "durationSeconds".into(),
                d.parse::<i64>().map_or_else(|_| d.into(), Value::from),
            );
        }
        let audiences = members(&self.params, "Audience.member.", "");
        if !audiences.is_empty() {
            out.insert("audience".into(), audiences.into());
        }
        let keys = members(&self.params, "Tags.member.", ".Key");
        let values = members(&self.params, "Tags.member.", ".Value");
        if !keys.is_empty() {
            let tags: Vec<Value> = keys
                .iter()
                .zip(values.iter().map(Some).chain(std::iter::repeat(None)))
                .map(|(k, v)| json!({"key": k, "value": v.cloned().unwrap_or_default()}))
                .collect();
            out.insert("tags".into(), tags.into());
        }
        let transitive = members(&self.params, "TransitiveTagKeys.member.", "");
        if !transitive.is_empty() {
            out.insert("transitiveTagKeys".into(), transitive.into());
        }
        let policy_arns = members(&self.params, "PolicyArns.member.", ".arn");
        if !policy_arns.is_empty() {
            let arns: Vec<Value> = policy_arns.iter().map(|a| json!({"arn": a})).collect();
            out.insert("policyArns".into(), arns.into());
        }
        Value::Object(out)
    }

    /// What CloudTrail keeps of a granted answer: ids and expiries, no secret.
    fn response_elements(&self, answer: &str) -> Value {
        if self.action == "GetWebIdentityToken" {
            return json!({"expiration": xml_text(answer, "Expiration").map(|e| readable_expiration(&e))});
        }
        let mut out = json!({
            "credentials": {
                "accessKeyId": xml_text(answer, "AccessKeyId"),
                "expiration": xml_text(answer, "Expiration").map(|e| readable_expiration(&e)),
            },
            "assumedRoleUser": {
                "assumedRoleId": xml_text(answer, "AssumedRoleId"),
                "arn": xml_text(answer, "Arn"),
            },
        });
        for (key, tag) in [
            ("subjectFromWebIdentityToken", "SubjectFromWebIdentityToken"),
            ("audience", "Audience"),
            ("provider", "Provider"),
            ("sourceIdentity", "SourceIdentity"),
        ] {
            if let Some(v) = xml_text(answer, tag) {
                out[key] = v.into();
            }
        }
        if let Some(size) = xml_text(answer, "PackedPolicySize").and_then(|s| s.parse::<i64>().ok())
        {
            out["packedPolicySize"] = size.into();
        }
        out
    }
}

/// The signer of a request as CloudTrail's `userIdentity` (`AssumedRole` or `IAMUser`), and its
/// account; an unknown key shows as CloudTrail shows it, by key id only.
fn signer_identity(state: &LabState, signer: Option<&Authorization>) -> (Value, Option<String>) {
    let Some(signer) = signer else {
        return (json!({"type": "Unknown"}), None);
    };
    let akid = signer.access_key_id.as_str();
    let Some(known) = state.aws_credentials(akid) else {
        return (json!({"type": "Unknown", "accessKeyId": akid}), None);
    };
    let account = known.arn.split(':').nth(4).unwrap_or_default().to_string();
    let identity = match known.arn.split_once(":assumed-role/") {
        Some((_, rest)) => {
            let role = rest.split('/').next().unwrap_or(rest);
            let mut context = json!({
                "sessionIssuer": {
                    "type": "Role",
                    "principalId": ids::role_unique_id(&account, role),
                    "arn": format!("arn:aws:iam::{account}:role/{role}"),
                    "accountId": account,
                    "userName": role,
                },
                "attributes": {"mfaAuthenticated": "false"},
            });
            if let Some(source) = &known.session.source_identity {
                context["sourceIdentity"] = source.clone().into();
            }
            json!({
                "type": "AssumedRole",
                "principalId": known.user_id,
                "arn": known.arn,
                "accountId": account,
                "accessKeyId": akid,
                "sessionContext": context,
            })
        }
        None => json!({
            "type": "IAMUser",
            "principalId": known.user_id,
            "arn": known.arn,
            "accountId": account,
            "accessKeyId": akid,
            "userName": known.arn.rsplit('/').next().unwrap_or_default(),
        }),
    };
    (identity, Some(account))
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// The values of `PREFIX<N>SUFFIX` parameters, in N order.
fn members(params: &[(String, String)], prefix: &str, suffix: &str) -> Vec<String> {
    let mut found: Vec<(u32, String)> = params
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix(prefix)?.strip_suffix(suffix)?;
            Some((n.parse().ok()?, v.clone()))
        })
        .collect();
    found.sort_by_key(|(n, _)| *n);
    found.into_iter().map(|(_, v)| v).collect()
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A JWT's claims without checking anything (only to say who a refused caller claimed to be).
fn unverified_claims(token: &str) -> Option<Value> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The text of the first `<tag>` of the lab's own STS XML, unescaped.
fn xml_text(xml: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&format!("</{tag}>"))?;
    quick_xml::escape::unescape(&xml[start..end])
        .ok()
        .map(|t| t.into_owned())
}

/// `2026-12-04T23:40:01Z`: CloudTrail's `eventTime`, to the second.
fn cloudtrail_time(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// CloudTrail writes credential expiries for people: `Dec 5, 2026, 12:40:01 AM`.
fn readable_expiration(iso: &str) -> String {
    let format = time::macros::format_description!(
        "[month repr:short] [day padding:none], [year], [hour repr:12 padding:none]:[minute]:[second] [period]"
    );
    OffsetDateTime::parse(iso, &Rfc3339)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| iso.to_string())
}

/// A CloudTrail JSON-protocol error.
struct TrailError {
    code: &'static str,
    message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> TrailError {
    TrailError {
        code,
        message: message.into(),
    }
}

fn json_answer(status: u16, body: &Value, request_id: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        status,
        [
            (
                header::CONTENT_TYPE,
                "application/x-amz-json-1.1".to_string(),
            ),
            (
                header::HeaderName::from_static("x-amzn-requestid"),
                request_id.to_string(),
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

fn error_answer(status: u16, code: &str, message: &str, request_id: &str) -> Response {
    tracing::info!(code, message, "lab cloudtrail: refused");
    json_answer(
        status,
        &json!({"__type": code, "message": message}),
        request_id,
    )
}

/// The CloudTrail JSON API on the STS listener (requests with `X-Amz-Target`).
pub(crate) async fn json_api(
    state: &LabState,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let request_id = ids::request_id();
    let target = header_text(headers, "x-amz-target").unwrap_or_default();
    let Some(operation) = target.strip_prefix(TARGET_PREFIX) else {
        return error_answer(
            400,
            "UnknownOperationException",
            &format!("The operation {target} is not served by the lab"),
            &request_id,
        );
    };
    match state.faults.take(LabService::Cloudtrail, operation) {
        Some(FaultKind::DelayMs(ms)) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Some(FaultKind::Http { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return (status, body).into_response();
        }
        Some(FaultKind::StsError {
            code,
            status,
            message,
        }) => {
            let message =
                message.unwrap_or_else(|| format!("{code} (injected by the keyless lab)"));
            return error_answer(status, &code, &message, &request_id);
        }
        Some(FaultKind::Throttled {}) => {
            // The JSON protocol's name for it (the query protocol says `Throttling`).
            return error_answer(400, "ThrottlingException", "Rate exceeded", &request_id);
        }
        None => {}
    }
    if operation != "LookupEvents" {
        return error_answer(
            400,
            "UnknownOperationException",
            &format!("The lab serves only LookupEvents, not {operation}"),
            &request_id,
        );
    }
    let signed = SignedRequest {
        method: method.as_str(),
        path: uri.path(),
        query: uri.query().unwrap_or(""),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body,
    };
    let now = OffsetDateTime::now_utc();
    if let Err(e) = aws_auth::authenticate_for(state, &signed, now, "cloudtrail") {
        let (code, message) = json_auth_error(e);
        return error_answer(400, code, &message, &request_id);
    }
    match lookup_events(&state.cloudtrail, body, now) {
        Ok(answer) => json_answer(200, &answer, &request_id),
        Err(e) => error_answer(400, e.code, &e.message, &request_id),
    }
}

/// The JSON protocol's names for the query protocol's authentication errors.
fn json_auth_error(e: AwsAuthError) -> (&'static str, String) {
    let code = match e.code {
        "MissingAuthenticationToken" => "MissingAuthenticationTokenException",
        "IncompleteSignature" => "IncompleteSignatureException",
        "InvalidClientTokenId" => "UnrecognizedClientException",
        "ExpiredToken" => "ExpiredTokenException",
        _ => "InvalidSignatureException",
    };
    (code, e.message)
}

/// The lookup attribute keys CloudTrail accepts.
const ATTRIBUTE_KEYS: [&str; 8] = [
    "EventId",
    "EventName",
    "ReadOnly",
    "Username",
    "ResourceType",
    "ResourceName",
    "EventSource",
    "AccessKeyId",
];

/// `LookupEvents`: validate as CloudTrail does, filter, order newest first, page.
fn lookup_events(trail: &Trail, body: &[u8], now: OffsetDateTime) -> Result<Value, TrailError> {
    let request: Value = if body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(body)
            .map_err(|e| refuse("SerializationException", format!("Invalid JSON body: {e}")))?
    };
    let attributes = match request.get("LookupAttributes") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list.clone(),
        Some(_) => {
            return Err(refuse(
                "SerializationException",
                "LookupAttributes must be a list",
            ))
        }
    };
    if attributes.len() > 1 {
        return Err(refuse(
            "InvalidLookupAttributesException",
            "You can specify only one lookup attribute.",
        ));
    }
    let filter =
        match attributes.first() {
            None => None,
            Some(attribute) => {
                let key = attribute.get("AttributeKey").and_then(Value::as_str);
                let value = attribute.get("AttributeValue").and_then(Value::as_str);
                match (key, value) {
                    (Some(k), Some(v)) if ATTRIBUTE_KEYS.contains(&k) && !v.is_empty() => {
                        Some((k.to_string(), v.to_string()))
                    }
                    (Some(k), _) if !ATTRIBUTE_KEYS.contains(&k) => {
                        return Err(refuse(
                            "InvalidLookupAttributesException",
                            format!(
                                "Invalid AttributeKey {k}; expected one of {}.",
                                ATTRIBUTE_KEYS.join(", ")
                            ),
                        ))
                    }
                    _ => return Err(refuse(
                        "InvalidLookupAttributesException",
                        "A lookup attribute needs an AttributeKey and a non-empty AttributeValue.",
                    )),
                }
            }
        };
    let instant = |name: &str| -> Result<Option<OffsetDateTime>, TrailError> {
        match request.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .and_then(|secs| {
                    OffsetDateTime::from_unix_timestamp_nanos((secs * 1e9) as i128).ok()
                })
                .map(Some)
                .ok_or_else(|| {
                    refuse(
                        "SerializationException",
                        format!("{name} must be a timestamp in epoch seconds"),
                    )
                }),
        }
    };
    let (start, end) = (instant("StartTime")?, instant("EndTime")?);
    if let (Some(s), Some(e)) = (start, end) {
        if s > e {
            return Err(refuse(
                "InvalidTimeRangeException",
                "Start time must not be after end time.",
            ));
        }
    }
    let max = match request.get("MaxResults") {
        None | Some(Value::Null) => 50,
        Some(v) => match v.as_i64() {
            Some(n @ 1..=50) => n as usize,
            _ => {
                return Err(refuse(
                    "InvalidMaxResultsException",
                    "MaxResults must be between 1 and 50.",
                ))
            }
        },
    };
    let query = query_fingerprint(&filter, start, end);
    let after = match request.get("NextToken").and_then(Value::as_str) {
        None => None,
        Some(token) => Some(parse_token(token, &query).ok_or_else(|| {
            refuse(
                "InvalidNextTokenException",
                "The NextToken is invalid or was issued for other lookup parameters.",
            )
        })?),
    };

    let oldest = now - RETENTION;
    let mut matching: Vec<TrailEvent> = trail
        .lock()
        .iter()
        .filter(|e| e.time >= oldest)
        .filter(|e| start.is_none_or(|s| e.time >= s) && end.is_none_or(|t| e.time <= t))
        .filter(|e| {
            filter
                .as_ref()
                .is_none_or(|(k, v)| attribute_matches(&e.record, k, v))
        })
        .cloned()
        .collect();
    matching.sort_by_key(|e| std::cmp::Reverse((e.time, e.seq)));
    let page: Vec<TrailEvent> = matching
        .into_iter()
        .filter(|e| after.is_none_or(|key| (e.time.unix_timestamp_nanos(), e.seq) < key))
        .take(max + 1)
        .collect();
    let more = page.len() > max;
    let page = &page[..page.len().min(max)];
    let mut answer =
        json!({"Events": page.iter().map(|e| lookup_event(&e.record, e.time)).collect::<Vec<_>>()});
    if let (true, Some(last)) = (more, page.last()) {
        answer["NextToken"] = make_token(&query, last.time.unix_timestamp_nanos(), last.seq).into();
    }
    Ok(answer)
}

/// One `Events[]` entry of `LookupEvents`, derived from the record as CloudTrail derives it.
fn lookup_event(record: &Value, time: OffsetDateTime) -> Value {
    let text = |v: &Value| v.as_str().map(str::to_string);
    let mut event = json!({
        "EventId": text(&record["eventID"]),
        "EventName": text(&record["eventName"]),
        "ReadOnly": record["readOnly"].as_bool().unwrap_or(false).to_string(),
        "EventTime": time.unix_timestamp_nanos() as f64 / 1e9,
        "EventSource": text(&record["eventSource"]),
        "Username": username(record),
        "Resources": resources(record),
        "CloudTrailEvent": record.to_string(),
    });
    if let Some(key) = text(&record["userIdentity"]["accessKeyId"]) {
        event["AccessKeyId"] = key.into();
    }
    event
}

/// Event history's user name: the identity's `userName`, a role session's name, else the
/// principal id.
fn username(record: &Value) -> Option<String> {
    let identity = &record["userIdentity"];
    if let Some(name) = identity["userName"].as_str() {
        return Some(name.to_string());
    }
    if identity["type"] == "AssumedRole" {
        return identity["arn"]
            .as_str()
            .and_then(|a| a.rsplit('/').next())
            .map(str::to_string);
    }
    identity["principalId"].as_str().map(str::to_string)
}

/// The resources event history lists: the record's `resources`, the issued access key and the
/// assumed-role session.
fn resources(record: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = record["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| json!({"ResourceType": r["type"], "ResourceName": r["ARN"]}))
        .collect();
    let response = &record["responseElements"];
    if let Some(key) = response["credentials"]["accessKeyId"].as_str() {
        out.push(json!({"ResourceType": "AWS::IAM::AccessKey", "ResourceName": key}));
    }
    if let Some(arn) = response["assumedRoleUser"]["arn"].as_str() {
        out.push(json!({"ResourceType": "AWS::STS::AssumedRole", "ResourceName": arn}));
    }
    out
}

fn attribute_matches(record: &Value, key: &str, value: &str) -> bool {
    let event = lookup_event(record, OffsetDateTime::UNIX_EPOCH);
    match key {
        "ResourceType" | "ResourceName" => event["Resources"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|r| r[key] == value),
        _ => event[key] == value,
    }
}

/// A short digest of the lookup parameters: a `NextToken` is only good for the same lookup.
fn query_fingerprint(
    filter: &Option<(String, String)>,
    start: Option<OffsetDateTime>,
    end: Option<OffsetDateTime>,
) -> String {
    let text = format!(
        "{filter:?}|{:?}|{:?}",
        start.map(|t| t.unix_timestamp_nanos()),
        end.map(|t| t.unix_timestamp_nanos())
    );
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

fn make_token(query: &str, time_nanos: i128, seq: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{query}|{time_nanos}|{seq}"))
}

/// The (time, seq) page key of a token issued for this lookup.
fn parse_token(token: &str, query: &str) -> Option<(i128, u64)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let mut parts = text.split('|');
    let (q, time, seq) = (parts.next()?, parts.next()?, parts.next()?);
    if q != query || parts.next().is_some() {
        return None;
    }
    Some((time.parse().ok()?, seq.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expirations_read_as_cloudtrail_writes_them() {
        assert_eq!(
            readable_expiration("2026-12-05T00:40:01Z"),
            "Dec 5, 2026, 12:40:01 AM"
        );
        assert_eq!(
            readable_expiration("2026-12-04T13:05:09Z"),
            "Dec 4, 2026, 1:05:09 PM"
        );
    }

    #[test]
    fn xml_text_reads_the_first_element_unescaped() {
        let xml = "<A><Arn>arn:a&amp;b</Arn><Arn>second</Arn></A>";
        assert_eq!(xml_text(xml, "Arn").as_deref(), Some("arn:a&b"));
        assert_eq!(xml_text(xml, "Code"), None);
    }

    #[test]
    fn tokens_are_bound_to_their_lookup() {
        let query = query_fingerprint(&None, None, None);
        let other = query_fingerprint(&Some(("EventName".into(), "AssumeRole".into())), None, None);
        let token = make_token(&query, 1_700_000_000_000_000_000, 7);
        assert_eq!(
            parse_token(&token, &query),
            Some((1_700_000_000_000_000_000, 7))
        );
        assert_eq!(parse_token(&token, &other), None);
        assert_eq!(parse_token("not a token", &query), None);
    }
}
