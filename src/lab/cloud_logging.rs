//! Cloud Audit Logs for the lab's Google side, and Cloud Logging `entries.list` to read them.
//!
//! Google records a Google STS token exchange (`sts.googleapis.com`,
//! `google.identity.sts.v1.SecurityTokenService.ExchangeToken`) and IAM Credentials
//! `GenerateAccessToken` / `GenerateIdToken` (`iamcredentials.googleapis.com`) as Data Access
//! audit logs, and only when the project has turned them on for that service — the first thing
//! an audit tool must detect. The lab does the same: entries in `LogEntry` shape with an
//! `AuditLog` `protoPayload` (`authenticationInfo.principalSubject` for a federated caller,
//! `principalEmail` otherwise; `status` with the gRPC code on refusal; never a token), made by a
//! layer around those routes ([`record_google`]) from the request and the answer, when
//! [`AuditLogs::data_access_on`] says so. The project's `auditConfigs` are served as Resource
//! Manager `getIamPolicy` answers them.
//!
//! `POST /v2/entries:list` takes a bearer token the lab issued, `resourceNames`, a filter in
//! the subset of the Logging query language of [`super::logging_filter`], `orderBy` and paging.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::google_apis::{authorize_bearer, google_error};
use super::logging_filter::Filter;
use super::state::{AccessGrant, LabState};

const STS_SERVICE: &str = "sts.googleapis.com";
const IAM_CREDENTIALS_SERVICE: &str = "iamcredentials.googleapis.com";
const EXCHANGE_TOKEN: &str = "google.identity.sts.v1.SecurityTokenService.ExchangeToken";
const AUDIT_LOG_TYPE: &str = "type.googleapis.com/google.cloud.audit.AuditLog";
/// The scopes that may read logs.
const READ_SCOPES: [&str; 4] = [
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/cloud-platform.read-only",
    "https://www.googleapis.com/auth/logging.read",
    "https://www.googleapis.com/auth/logging.admin",
];
/// `entries.list` pages hold at most this many entries.
const MAX_PAGE_SIZE: i64 = 1000;
const DEFAULT_PAGE_SIZE: usize = 50;
const BODY_LIMIT: usize = 4 << 20;

/// The project's audit log entries and its Data Access switch.
#[derive(Debug)]
pub(crate) struct AuditLogs {
    entries: Mutex<Vec<LogEntry>>,
    data_access: Mutex<BTreeSet<String>>,
}

#[derive(Debug, Clone)]
struct LogEntry {
    /// Insertion order: the tie-breaker between entries of the same instant, and the page key.
    seq: u64,
    time: OffsetDateTime,
    entry: Value,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Pushes, clones and set updates only: a poisoned lock still holds consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AuditLogs {
    /// Data Access logs on for `services` (the config's `data_access_logs`).
    pub fn new(services: &[String]) -> Self {
        Self {
            entries: Mutex::new(Vec::new()),
            data_access: Mutex::new(services.iter().cloned().collect()),
        }
    }

    /// Whether the project's Data Access logs are on for `service`.
    pub fn data_access_on(&self, service: &str) -> bool {
        lock(&self.data_access).contains(service)
    }

    /// Turns the project's Data Access logs for `service` on or off.
    pub fn set_data_access(&self, service: &str, on: bool) {
        let mut services = lock(&self.data_access);
        if on {
            services.insert(service.to_string());
        } else {
            services.remove(service);
        }
    }

    /// The services with Data Access logs on.
    pub fn data_access_services(&self) -> Vec<String> {
        lock(&self.data_access).iter().cloned().collect()
    }

    /// Adds an entry; it must carry `timestamp` (RFC 3339). An absent `insertId` is filled in.
    pub fn push(&self, mut entry: Value) -> Result<(), String> {
        let time = entry
            .get("timestamp")
            .and_then(Value::as_str)
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .ok_or("a log entry needs timestamp as RFC 3339 (2026-12-04T23:40:01.123Z)")?;
        entry
            .as_object_mut()
            .ok_or("a log entry is a JSON object")?
            .entry("insertId")
            .or_insert_with(|| Value::String(insert_id()));
        let mut entries = lock(&self.entries);
        let seq = entries.len() as u64;
        entries.push(LogEntry { seq, time, entry });
        Ok(())
    }

    /// Every entry, oldest recorded first.
    pub fn entries(&self) -> Vec<Value> {
        lock(&self.entries)
            .iter()
            .map(|e| e.entry.clone())
            .collect()
    }
}

/// A random `insertId` shaped like Google's (lowercase letters and digits).
fn insert_id() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..12)
        .map(|_| {
            let n = rng.gen_range(0..36u8);
            char::from(if n < 10 { b'0' + n } else { b'a' + n - 10 })
        })
        .collect()
}

/// `2026-12-04T23:40:01.123456789Z`.
fn timestamp(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The layer around Google STS and IAM Credentials: passes the request on, then records an
/// entry when the project's Data Access logs are on for the service. Requests IAM could not
/// authenticate (401) are not recorded, as Google does not.
pub(crate) async fn record_google(
    State(state): State<Arc<LabState>>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_string();
    let Some((service, method)) = audited_method(&path) else {
        return next.run(request).await;
    };
    if !state.audit_logs.data_access_on(service) {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, BODY_LIMIT).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "request too large").into_response();
    };
    let caller_ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "127.0.0.1".to_string(), |c| c.0.ip().to_string());
    let user_agent = header_text(&parts.headers, "user-agent");
    // The bearer, whatever its scopes (IAM answers a missing scope with 403, recorded).
    let caller = bearer(&parts.headers).and_then(|t| state.access_grant(t));
    let time = OffsetDateTime::now_utc();
    let response = next
        .run(Request::from_parts(parts, Body::from(body.clone())))
        .await;
    let status = response.status();
    if status == StatusCode::UNAUTHORIZED || (status == StatusCode::NOT_FOUND && caller.is_none()) {
        return response;
    }
    let (parts, answer_body) = response.into_parts();
    let Ok(answer_body) = axum::body::to_bytes(answer_body, BODY_LIMIT).await else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "answer too large").into_response();
    };
    let answer: Value = serde_json::from_slice(&answer_body).unwrap_or(Value::Null);
    let call = GoogleCall {
        service,
        method,
        path: &path,
        caller_ip,
        user_agent,
        time,
        ok: status.is_success(),
        answer: &answer,
    };
    let entry = if service == STS_SERVICE {
        call.sts_entry(&state, &body)
    } else {
        call.iam_credentials_entry(&state, caller.as_ref(), &body)
    };
    if let Err(e) = state.audit_logs.push(entry) {
        tracing::warn!("lab cloud logging: could not record an entry: {e}");
    }
    Response::from_parts(parts, Body::from(answer_body))
}

/// The audited (service, method) of a path, if any.
fn audited_method(path: &str) -> Option<(&'static str, &'static str)> {
    if path == "/v1/token" {
        return Some((STS_SERVICE, EXCHANGE_TOKEN));
    }
    let action = path.strip_prefix("/v1/projects/-/serviceAccounts/")?;
    if action.ends_with(":generateAccessToken") {
        Some((IAM_CREDENTIALS_SERVICE, "GenerateAccessToken"))
    } else if action.ends_with(":generateIdToken") {
        Some((IAM_CREDENTIALS_SERVICE, "GenerateIdToken"))
    } else {
        None
    }
}

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")?
        .to_str()
        .ok()?
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
}

/// `principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/subject/S`
/// for a federated grant, else `None`.
fn principal_subject(grant: &AccessGrant) -> Option<String> {
    grant
        .federation
        .as_ref()
        .map(|f| format!("principal:{}/subject/{}", f.pool_resource, f.subject))
}

/// A Google error status name as its gRPC code.
fn grpc_code(status: &str) -> i64 {
    match status {
        "INVALID_ARGUMENT" => 3,
        "NOT_FOUND" => 5,
        "PERMISSION_DENIED" => 7,
        "RESOURCE_EXHAUSTED" => 8,
        "FAILED_PRECONDITION" => 9,
        "INTERNAL" => 13,
        "UNAVAILABLE" => 14,
        "UNAUTHENTICATED" => 16,
        _ => 2,
    }
}

/// What the layer keeps of a call while the service answers it.
struct GoogleCall<'a> {
    service: &'static str,
    method: &'static str,
    path: &'a str,
    caller_ip: String,
    user_agent: Option<String>,
    time: OffsetDateTime,
    ok: bool,
    answer: &'a Value,
}

impl GoogleCall<'_> {
    /// The `LogEntry` around an `AuditLog` payload.
    fn entry(&self, state: &LabState, payload: Value, resource: Value) -> Value {
        let mut payload = payload;
        payload["@type"] = AUDIT_LOG_TYPE.into();
        payload["serviceName"] = self.service.into();
        payload["methodName"] = self.method.into();
        payload["requestMetadata"] = json!({
            "callerIp": self.caller_ip,
            "callerSuppliedUserAgent": self.user_agent.as_deref().unwrap_or(""),
            "requestAttributes": {"time": timestamp(self.time), "auth": {}},
            "destinationAttributes": {},
        });
        json!({
            "protoPayload": payload,
            "insertId": insert_id(),
            "resource": resource,
            "timestamp": timestamp(self.time),
            "severity": if self.ok { "INFO" } else { "ERROR" },
            "logName": format!(
                "projects/{}/logs/cloudaudit.googleapis.com%2Fdata_access",
                state.config.project_id
            ),
            "receiveTimestamp": timestamp(OffsetDateTime::now_utc()),
        })
    }

    /// `{}` for success, else `{code, message}` from Google's error document.
    fn status(&self, code_of_oauth_error: impl Fn(&str) -> i64) -> Value {
        if self.ok {
            return json!({});
        }
        let error = &self.answer["error"];
        match error {
            Value::Object(e) => json!({
                "code": grpc_code(e.get("status").and_then(Value::as_str).unwrap_or_default()),
                "message": e.get("message").and_then(Value::as_str).unwrap_or_default(),
            }),
            Value::String(oauth) => json!({
                "code": code_of_oauth_error(oauth),
                "message": self.answer["error_description"].as_str().unwrap_or(oauth),
            }),
            _ => json!({"code": 2, "message": "unknown error"}),
        }
    }

    /// A token exchange: the federated principal when Google STS granted (the issued token's
    /// identity), the provider as resource; never the subject token or the issued one.
    fn sts_entry(&self, state: &LabState, body: &[u8]) -> Value {
        let form: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let audience = field("audience").unwrap_or_default();
        let grant = self
            .answer
            .get("access_token")
            .and_then(Value::as_str)
            .and_then(|t| state.access_grant(t));
        let mut authentication = Map::new();
        if let Some(subject) = grant.as_ref().and_then(principal_subject) {
            authentication.insert("principalSubject".into(), subject.into());
        }
        let mut request =
            json!({"@type": "type.googleapis.com/google.identity.sts.v1.ExchangeTokenRequest"});
        for (key, name) in [
            ("audience", "audience"),
            ("grantType", "grant_type"),
            ("requestedTokenType", "requested_token_type"),
            ("subjectTokenType", "subject_token_type"),
            ("scope", "scope"),
        ] {
            if let Some(v) = field(name) {
                request[key] = v.into();
            }
        }
        let mut payload = json!({
            "status": self.status(|e| match e {
                "invalid_grant" => 7,
                "invalid_target" => 5,
                _ => 3,
            }),
            "authenticationInfo": authentication,
            "resourceName": audience
                .trim_start_matches("https:")
                .trim_start_matches("//iam.googleapis.com/"),
            "request": request,
        });
        if self.ok {
            payload["response"] = json!({
                "@type": "type.googleapis.com/google.identity.sts.v1.ExchangeTokenResponse",
                "issued_token_type": self.answer["issued_token_type"],
                "token_type": self.answer["token_type"],
                "expires_in": self.answer["expires_in"],
            });
        }
        let resource = json!({"type": "audited_resource", "labels": {
            "service": self.service, "method": self.method, "project_id": state.config.project_id,
        }});
        self.entry(state, payload, resource)
    }

    /// An impersonation: the caller (federated principal or email), the service account as
    /// resource, the permission IAM checked; never the token minted.
    fn iam_credentials_entry(
        &self,
        state: &LabState,
        caller: Option<&AccessGrant>,
        body: &[u8],
    ) -> Value {
        let email = self
            .path
            .rsplit('/')
            .next()
            .and_then(|a| a.rsplit_once(':'))
            .map(|(email, _)| email)
            .unwrap_or_default();
        let account = state.config.service_account(email);
        let id = account.map_or(email, |a| a.unique_id.as_str());
        let resource_name = format!("projects/-/serviceAccounts/{id}");
        let mut authentication = Map::new();
        if let Some(grant) = caller {
            match principal_subject(grant) {
                Some(subject) => authentication.insert("principalSubject".into(), subject.into()),
                None => {
                    authentication.insert("principalEmail".into(), grant.principal.clone().into())
                }
            };
        }
        let sent: Value = serde_json::from_slice(body).unwrap_or_else(|_| json!({}));
        let (permission, request, response) = if self.method == "GenerateAccessToken" {
            (
                "iam.serviceAccounts.getAccessToken",
                json!({
                    "@type": "type.googleapis.com/google.iam.credentials.v1.GenerateAccessTokenRequest",
                    "name": format!("projects/-/serviceAccounts/{email}"),
                    "scope": sent["scope"], "lifetime": sent["lifetime"], "delegates": sent["delegates"],
                }),
                json!({
                    "@type": "type.googleapis.com/google.iam.credentials.v1.GenerateAccessTokenResponse",
                    "expireTime": self.answer["expireTime"],
                }),
            )
        } else {
            (
                "iam.serviceAccounts.getOpenIdToken",
                json!({
                    "@type": "type.googleapis.com/google.iam.credentials.v1.GenerateIdTokenRequest",
                    "name": format!("projects/-/serviceAccounts/{email}"),
                    "audience": sent["audience"], "includeEmail": sent["includeEmail"],
                    "delegates": sent["delegates"],
                }),
                json!({"@type": "type.googleapis.com/google.iam.credentials.v1.GenerateIdTokenResponse"}),
            )
        };
        let mut payload = json!({
            "status": self.status(|_| 3),
            "authenticationInfo": authentication,
            "authorizationInfo": [{
                "resource": resource_name,
                "permission": permission,
                "granted": self.ok,
                "resourceAttributes": {},
            }],
            "resourceName": resource_name,
            "request": strip_nulls(request),
        });
        if self.ok {
            payload["response"] = strip_nulls(response);
        }
        let resource = json!({"type": "service_account", "labels": {
            "email_id": email,
            "project_id": state.config.project_id,
            "unique_id": account.map(|a| a.unique_id.as_str()).unwrap_or_default(),
        }});
        self.entry(state, payload, resource)
    }
}

fn strip_nulls(mut value: Value) -> Value {
    if let Value::Object(map) = &mut value {
        map.retain(|_, v| !v.is_null());
    }
    value
}

/// The project a `projects/ID` (or number) names, if it is the lab's: its id.
fn lab_project<'a>(state: &'a LabState, name: &str) -> Option<&'a str> {
    let config = &state.config;
    (name == config.project_id || name == config.project_number)
        .then_some(config.project_id.as_str())
}

/// `POST /v2/entries:list`.
pub(crate) async fn entries_list(
    State(state): State<Arc<LabState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refusal) = authorize_bearer(&state, &headers, &READ_SCOPES) {
        return refusal;
    }
    let request: Value = match serde_json::from_slice(if body.is_empty() { b"{}" } else { &body }) {
        Ok(v) => v,
        Err(e) => {
            return google_error(
                400,
                "INVALID_ARGUMENT",
                &format!("Invalid JSON payload received. {e}"),
            )
        }
    };
    match list(&state, &request) {
        Ok(answer) => Json(answer).into_response(),
        Err((code, status, message)) => google_error(code, status, &message),
    }
}

type ListError = (u16, &'static str, String);

fn invalid(message: impl Into<String>) -> ListError {
    (400, "INVALID_ARGUMENT", message.into())
}

fn list(state: &LabState, request: &Value) -> Result<Value, ListError> {
    let names: Vec<&str> = request["resourceNames"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        return Err(invalid(
            "resourceNames: at least one resource name is required, e.g. projects/my-project.",
        ));
    }
    let mut projects = BTreeSet::new();
    for name in &names {
        let Some(id) = name.strip_prefix("projects/").filter(|p| !p.contains('/')) else {
            return Err(invalid(format!("Invalid resource name {name}: expected projects/PROJECT_ID (organizations, folders and billing accounts are not served by the lab).")));
        };
        let project = lab_project(state, id).ok_or_else(|| {
            (
                403,
                "PERMISSION_DENIED",
                format!("Permission 'logging.logEntries.list' denied on resource (or it may not exist): projects/{id}"),
            )
        })?;
        projects.insert(format!("projects/{project}/logs/"));
    }
    let filter_text = request["filter"].as_str().unwrap_or_default();
    let filter = Filter::parse(filter_text).map_err(|e| invalid(e.message))?;
    let descending = match request["orderBy"].as_str().map(|o| o.split_whitespace().collect::<Vec<_>>()) {
        None => false,
        Some(words) => match words.as_slice() {
            ["timestamp"] | ["timestamp", "asc"] => false,
            ["timestamp", "desc"] => true,
            _ => {
                return Err(invalid(format!(
                    "Invalid orderBy {:?}: only \"timestamp asc\" and \"timestamp desc\" are supported.",
                    request["orderBy"].as_str().unwrap_or_default()
                )))
            }
        },
    };
    let page_size = match request["pageSize"].as_i64() {
        None | Some(0) => DEFAULT_PAGE_SIZE,
        Some(n @ 1..=MAX_PAGE_SIZE) => n as usize,
        Some(n) => {
            return Err(invalid(format!(
                "Invalid pageSize {n}: it must be between 1 and {MAX_PAGE_SIZE}."
            )))
        }
    };
    let query = fingerprint(&format!("{names:?}|{filter_text}|{descending}"));
    let after = match request["pageToken"].as_str().filter(|t| !t.is_empty()) {
        None => None,
        Some(token) => Some(parse_token(token, &query).ok_or_else(|| {
            invalid(
                "The page token is invalid or does not match the other arguments of the request.",
            )
        })?),
    };

    let mut matching: Vec<LogEntry> = lock(&state.audit_logs.entries)
        .iter()
        .filter(|e| {
            let log = e.entry["logName"].as_str().unwrap_or_default();
            projects.iter().any(|p| log.starts_with(p.as_str()))
        })
        .filter(|e| filter.matches(&e.entry))
        .cloned()
        .collect();
    matching.sort_by_key(|e| (e.time, e.seq));
    if descending {
        matching.reverse();
    }
    let key = |e: &LogEntry| (e.time.unix_timestamp_nanos(), e.seq);
    let page: Vec<LogEntry> = matching
        .into_iter()
        .filter(|e| {
            after.is_none_or(|last| {
                if descending {
                    key(e) < last
                } else {
                    key(e) > last
                }
            })
        })
        .take(page_size + 1)
        .collect();
    let more = page.len() > page_size;
    let page = &page[..page.len().min(page_size)];
    let mut answer = json!({"entries": page.iter().map(|e| e.entry.clone()).collect::<Vec<_>>()});
    if let (true, Some(last)) = (more, page.last()) {
        let (time, seq) = key(last);
        answer["nextPageToken"] = URL_SAFE_NO_PAD
            .encode(format!("{query}|{time}|{seq}"))
            .into();
    }
    if page.is_empty() {
        // Google leaves empty fields out.
        answer = json!({});
    }
    Ok(answer)
}

fn fingerprint(text: &str) -> String {
    hex::encode(&Sha256::digest(text.as_bytes())[..8])
}

fn parse_token(token: &str, query: &str) -> Option<(i128, u64)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(token).ok()?).ok()?;
    let mut parts = text.split('|');
    let (q, time, seq) = (parts.next()?, parts.next()?, parts.next()?);
    if q != query || parts.next().is_some() {
        return None;
    }
    Some((time.parse().ok()?, seq.parse().ok()?))
}

/// `POST /v1/projects/{PROJECT}:getIamPolicy` (Resource Manager): the project's policy, with
/// the `auditConfigs` the Data Access switch describes.
pub(crate) async fn project_action(
    State(state): State<Arc<LabState>>,
    Path(action): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some((project, "getIamPolicy")) = action.rsplit_once(':') else {
        return google_error(404, "NOT_FOUND", "Method not found.");
    };
    if let Err(refusal) = authorize_bearer(&state, &headers, &READ_SCOPES) {
        return refusal;
    }
    if lab_project(&state, project).is_none() {
        return google_error(
            403,
            "PERMISSION_DENIED",
            "The caller does not have permission",
        );
    }
    let configs: Vec<Value> = state
        .audit_logs
        .data_access_services()
        .into_iter()
        .map(|service| {
            json!({"service": service, "auditLogConfigs": [{"logType": "DATA_READ"}, {"logType": "ADMIN_READ"}]})
        })
        .collect();
    let etag = base64::engine::general_purpose::STANDARD
        .encode(&Sha256::digest(format!("{configs:?}").as_bytes())[..8]);
    let mut policy = json!({"version": 1, "etag": etag});
    if !configs.is_empty() {
        policy["auditConfigs"] = configs.into();
    }
    Json(policy).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audited_methods() {
        assert_eq!(
            audited_method("/v1/token"),
            Some((STS_SERVICE, EXCHANGE_TOKEN))
        );
        assert_eq!(
            audited_method(
                "/v1/projects/-/serviceAccounts/a@b.iam.gserviceaccount.com:generateIdToken"
            ),
            Some((IAM_CREDENTIALS_SERVICE, "GenerateIdToken"))
        );
        assert_eq!(audited_method("/token"), None);
        assert_eq!(
            audited_method("/v1/projects/-/serviceAccounts/a:signBlob"),
            None
        );
    }
}
