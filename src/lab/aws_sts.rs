//! AWS STS, query protocol, as `AWS_ENDPOINT_URL_STS` reaches it.
//!
//! `AssumeRoleWithWebIdentity` checks what AWS checks — parameters with AWS's validation
//! messages, the token (RS256, known kid, signature, issuer: Google or a registered OIDC
//! provider whose client IDs hold one of its audiences, expiry; `aud` a string or an array) and
//! the role's trust policy through [`crate::policy`], with the issuer's condition keys — and `GetCallerIdentity` and `AssumeRole` verify SigV4 with
//! the hand-written verifier in [`super::sigv4`] (through [`super::aws_auth`]); `AssumeRole` then
//! evaluates the role's trust for the caller's ARN as an `AWS` principal. Refusals use AWS's codes, statuses and wording; the
//! trust-policy explanation AWS never gives goes to the log and [`super::Lab::last_denial`].
//!
//! `GetWebIdentityToken` (AWS outbound identity federation) and the outbound issuer's discovery
//! and JWKS live in [`super::aws_outbound`].
//!
//! The listener also carries the lab's admin API (`/_lab/...`), so an out-of-process
//! `keyless lab` can be driven like the in-process one.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::json;
use time::OffsetDateTime;

use super::aws_auth;
use super::aws_outbound;
use super::cloudtrail;
use super::faults::{self, Fault, LabService};
use super::google_keys::TokenRejection;
use super::ids;
use super::sigv4::SignedRequest;
use super::state::{Counters, IssuedAwsCredentials, LabSessionContext, LabState};
use super::sts_xml::{element, error_response, success_response};
use crate::credentials::format_expiration;
use crate::policy::issuer::{self, IdTokenClaims};
use crate::policy::{self, PolicyDocument, Request, RequestPrincipal};

/// The only API version STS speaks.
const STS_VERSION: &str = "2011-06-15";
/// AWS's ceiling for any role's MaxSessionDuration.
const MAX_DURATION: u32 = 43_200;
/// What AWS says, and all it says, when a trust policy refuses.
const NOT_AUTHORIZED: &str = "Not authorized to perform sts:AssumeRoleWithWebIdentity";

/// The STS routes and the admin API.
pub(crate) fn router(state: Arc<LabState>) -> Router {
    Router::new()
        .route(
            "/",
            any(sts).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                cloudtrail::record_sts,
            )),
        )
        .route(
            "/_lab/cloudtrail",
            get(cloudtrail_events).post(seed_cloudtrail_event),
        )
        .route(
            "/_lab/faults",
            get(list_faults).post(queue_faults).delete(clear_faults),
        )
        .route(
            "/_lab/audit-log",
            get(audit_log_entries).post(seed_audit_log_entry),
        )
        .route("/_lab/data-access", axum::routing::post(set_data_access))
        .route("/_lab/stats", get(stats))
        .route(
            "/_lab/stats/reset-in-flight",
            axum::routing::post(reset_most_in_flight),
        )
        .route("/_lab/last-denial", get(last_denial))
        .route(
            "/_lab/outbound-federation",
            axum::routing::post(aws_outbound::enable),
        )
        .route(
            "/.well-known/openid-configuration",
            get(aws_outbound::discovery),
        )
        .route("/.well-known/jwks.json", get(aws_outbound::jwks_document))
        .with_state(state)
}

struct StsError {
    status: u16,
    code: &'static str,
    message: String,
}

impl StsError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn into_response(self, request_id: &str) -> Response {
        tracing::info!(code = self.code, message = %self.message, "lab sts: refused");
        error_response(self.status, self.code, &self.message, request_id)
    }
}

/// All parameters, from the query string and (for POST) the form body.
pub(super) fn parameters(uri: &Uri, body: &[u8]) -> Vec<(String, String)> {
    let mut params: Vec<(String, String)> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    if !body.is_empty() {
        params.extend(
            serde_urlencoded::from_bytes::<Vec<(String, String)>>(body).unwrap_or_default(),
        );
    }
    params
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

async fn sts(
    State(state): State<Arc<LabState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if headers.contains_key("x-amz-target") {
        return cloudtrail::json_api(&state, &method, &uri, &headers, &body).await;
    }
    let request_id = ids::request_id();
    let params = parameters(&uri, &body);
    let action = param(&params, "Action").unwrap_or("");
    let version = param(&params, "Version").unwrap_or("");
    match action {
        "AssumeRoleWithWebIdentity" => Counters::bump(&state.counters.assume_calls),
        "GetCallerIdentity" => Counters::bump(&state.counters.caller_identity_calls),
        "AssumeRole" => Counters::bump(&state.counters.assume_role_calls),
        _ => {}
    }
    let (_in_flight, throttled) = super::upstream_load::pace(&state, LabService::AwsSts).await;
    if let Some(throttled) = throttled {
        return throttled;
    }
    if let Some(fault) = faults::apply(&state.faults, LabService::AwsSts, action).await {
        return fault;
    }
    if action.is_empty() {
        return StsError::new(400, "MissingAction", "Missing Action").into_response(&request_id);
    }
    if version != STS_VERSION
        || !matches!(
            action,
            "AssumeRoleWithWebIdentity"
                | "GetCallerIdentity"
                | "AssumeRole"
                | "GetWebIdentityToken"
        )
    {
        return StsError::new(
            400,
            "InvalidAction",
            format!("Could not find operation {action} for version {version}"),
        )
        .into_response(&request_id);
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
        body: &body,
    };
    let result = match action {
        "AssumeRoleWithWebIdentity" => assume_role_with_web_identity(&state, &params, &request_id),
        "AssumeRole" => assume_role(&state, &signed, &params, &request_id),
        "GetWebIdentityToken" => {
            aws_outbound::get_web_identity_token(&state, &signed, &params, &request_id)
                .or_else(|refusal| Ok(refusal.into_response(&request_id)))
        }
        _ => get_caller_identity(&state, &signed, &request_id),
    };
    result.unwrap_or_else(|e| e.into_response(&request_id))
}

/// `DurationSeconds` (default one hour); out-of-range values become validation errors (and 0).
fn parse_duration(params: &[(String, String)], errors: &mut Vec<String>) -> Result<u32, StsError> {
    Ok(match param(params, "DurationSeconds") {
        None => 3600,
        Some(text) => match text.parse::<i64>() {
            Ok(d) if d < 900 => {
                errors.push(constraint(
                    Some(text),
                    "durationSeconds",
                    "Member must have value greater than or equal to 900",
                ));
                0
            }
            Ok(d) if d > i64::from(MAX_DURATION) => {
                errors.push(constraint(
                    Some(text),
                    "durationSeconds",
                    &format!("Member must have value less than or equal to {MAX_DURATION}"),
                ));
                0
            }
            Ok(d) => d as u32,
            Err(_) => {
                return Err(StsError::new(
                    400,
                    "InvalidParameterValue",
                    format!(
                    "Value ({text}) for parameter DurationSeconds is invalid. Must be an integer."
                ),
                ))
            }
        },
    })
}

/// `RoleSessionName`: 2 to 64 characters of `[\w+=,.@-]`.
fn check_session_name(errors: &mut Vec<String>, session_name: Option<&str>) {
    check_length(errors, session_name, "roleSessionName", 2, 64);
    if let Some(name) = session_name {
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
        {
            errors.push(constraint(
                Some(name),
                "roleSessionName",
                "Member must satisfy regular expression pattern: [\\w+=,.@-]*",
            ));
        }
    }
}

/// AWS's aggregated validation message: "N validation error(s) detected: ...; ...".
fn validation_error(errors: &[String]) -> StsError {
    let n = errors.len();
    let noun = if n == 1 { "error" } else { "errors" };
    StsError::new(
        400,
        "ValidationError",
        format!("{n} validation {noun} detected: {}", errors.join("; ")),
    )
}

fn constraint(value: Option<&str>, field: &str, constraint: &str) -> String {
    match value {
        Some(v) => format!("Value '{v}' at '{field}' failed to satisfy constraint: {constraint}"),
        None => format!("Value null at '{field}' failed to satisfy constraint: {constraint}"),
    }
}

fn check_length(
    errors: &mut Vec<String>,
    value: Option<&str>,
    field: &str,
    min: usize,
    max: usize,
) {
    match value {
        None => errors.push(constraint(None, field, "Member must not be null")),
        Some(v) if v.chars().count() < min => errors.push(constraint(
            Some(v),
            field,
            &format!("Member must have length greater than or equal to {min}"),
        )),
        Some(v) if v.chars().count() > max => errors.push(constraint(
            Some(v),
            field,
            &format!("Member must have length less than or equal to {max}"),
        )),
        Some(_) => {}
    }
}

fn assume_role_with_web_identity(
    state: &LabState,
    params: &[(String, String)],
    request_id: &str,
) -> Result<Response, StsError> {
    let role_arn = param(params, "RoleArn");
    let session_name = param(params, "RoleSessionName");
    let token = param(params, "WebIdentityToken");
    let session_policy = param(params, "Policy");
    let policy_arns: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k.starts_with("PolicyArns.member.") && k.ends_with(".arn"))
        .map(|(_, v)| v.as_str())
        .collect();

    let mut errors = Vec::new();
    check_length(&mut errors, role_arn, "roleArn", 20, 2048);
    check_session_name(&mut errors, session_name);
    if token.is_some_and(|t| t.len() > 20_000) {
        errors.push("Value at 'webIdentityToken' failed to satisfy constraint: Member must have length less than or equal to 20000".to_string());
    } else {
        check_length(&mut errors, token, "webIdentityToken", 4, 20_000);
    }
    let duration = parse_duration(params, &mut errors)?;
    if policy_arns.len() > 10 {
        errors.push(format!("Value '[{}]' at 'policyArns' failed to satisfy constraint: Member must have length less than or equal to 10", policy_arns.join(", ")));
    }
    if !errors.is_empty() {
        return Err(validation_error(&errors));
    }
    let (role_arn, session_name, token) = (
        role_arn.unwrap_or_default(),
        session_name.unwrap_or_default(),
        token.unwrap_or_default(),
    );
    if let Some(policy) = session_policy {
        if policy.chars().count() > 2048 {
            let percent = policy.chars().count() * 100 / 2048;
            return Err(StsError::new(400, "PackedPolicyTooLarge", format!("Packed policy consumes {percent}% of allotted space, please use smaller policy for this operation.")));
        }
        if let Err(e) = PolicyDocument::parse(policy) {
            return Err(StsError::new(
                400,
                "MalformedPolicyDocument",
                format!("The policy is not in the valid JSON format. ({e})"),
            ));
        }
    }
    let role_name = parse_role_arn(role_arn)
        .ok_or_else(|| StsError::new(400, "ValidationError", "Request ARN is invalid"))?;

    let now = OffsetDateTime::now_utc();
    if let Some(why) = aws_outbound::outbound_token_refusal(token) {
        state.set_last_denial(why.clone());
        return Err(StsError::new(400, "InvalidIdentityToken", why));
    }
    let registered = |iss: &str| state.config.oidc_provider(iss).is_some();
    // Each issuer's tokens are verified with its own key (its JWKS).
    let key = state.signing_key_for(super::issuers::unverified_issuer(token).as_deref());
    let claims = key.verify_issued_by(token, now.unix_timestamp(), registered).map_err(|rejection| match rejection {
        TokenRejection::Expired { now, exp } => StsError::new(
            400,
            "ExpiredTokenException",
            format!("Token expired: current date/time {now} must be before the expiration date/time {exp}"),
        ),
        TokenRejection::Invalid(message) => StsError::new(400, "InvalidIdentityToken", message),
    })?;
    let decoded: IdTokenClaims = serde_json::from_value(serde_json::Value::Object(claims.clone()))
        .map_err(|e| {
            StsError::new(
                400,
                "InvalidIdentityToken",
                format!("The ID token lacks a claim STS needs: {e}"),
            )
        })?;
    let issuer = decoded.issuer();
    // A provider other than Google's built-in one accepts only its client IDs as audiences.
    let audience = match state.config.oidc_provider(&decoded.iss) {
        Some(provider) => decoded
            .aud
            .values()
            .iter()
            .find(|aud| provider.client_ids.contains(aud))
            .cloned()
            .ok_or_else(|| {
                StsError::new(400, "InvalidIdentityToken", "Incorrect token audience")
            })?,
        None => decoded
            .azp
            .clone()
            .or_else(|| decoded.aud.values().first().cloned())
            .unwrap_or_default(),
    };

    let (account, name) = role_name;
    let role = (account == state.config.account_id)
        .then(|| state.config.role(name))
        .flatten();
    let Some(role) = role else {
        let why = format!(
            "the role {role_arn} does not exist in the lab account {}",
            state.config.account_id
        );
        tracing::warn!(%why, "lab sts: AssumeRoleWithWebIdentity denied");
        state.set_last_denial(why);
        return Err(StsError::new(403, "AccessDenied", NOT_AUTHORIZED));
    };
    let trust = PolicyDocument::parse(&role.trust_policy).map_err(|e| {
        state.set_last_denial(format!(
            "the trust policy of {role_arn} cannot be read: {e}"
        ));
        StsError::new(403, "AccessDenied", NOT_AUTHORIZED)
    })?;
    let context = issuer::condition_context(&claims);
    let provider = issuer.federated_principal(&state.config.account_id);
    let decision = policy::evaluate(
        &trust,
        &Request {
            principal: RequestPrincipal::Federated(provider.clone()),
            action: "sts:AssumeRoleWithWebIdentity",
            context: &context,
        },
    );
    if !decision.is_allowed() {
        let why = decision.explain();
        tracing::warn!(role = %role_arn, %why, "lab sts: AssumeRoleWithWebIdentity denied by the trust policy");
        state.set_last_denial(why);
        return Err(StsError::new(403, "AccessDenied", NOT_AUTHORIZED));
    }
    if duration > role.max_session_duration {
        return Err(StsError::new(
            400,
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        ));
    }

    let (access_key_id, issued) =
        state.issue_role_session(&role.name, session_name, i64::from(duration));
    Counters::bump(&state.counters.assume_successes);
    tracing::info!(role = %role_arn, %access_key_id, "lab sts: issued temporary credentials");

    let mut result = String::new();
    result.push_str(&element(4, "SubjectFromWebIdentityToken", &decoded.sub));
    result.push_str(&element(4, "Audience", &audience));
    result.push_str(&assumed_role_xml(&access_key_id, &issued));
    if let Some(policy) = session_policy {
        result.push_str(&element(
            4,
            "PackedPolicySize",
            &(policy.chars().count() * 100 / 2048).to_string(),
        ));
    }
    result.push_str(&element(4, "Provider", &provider));
    Ok(success_response(
        "AssumeRoleWithWebIdentity",
        &result,
        request_id,
    ))
}

/// `<AssumedRoleUser>` and `<Credentials>` of an AssumeRole* answer.
pub(crate) fn assumed_role_xml(access_key_id: &str, issued: &IssuedAwsCredentials) -> String {
    let mut xml = String::from("    <AssumedRoleUser>\n");
    xml.push_str(&element(6, "Arn", &issued.arn));
    xml.push_str(&element(6, "AssumedRoleId", &issued.user_id));
    xml.push_str("    </AssumedRoleUser>\n    <Credentials>\n");
    if let Some(token) = &issued.session_token {
        xml.push_str(&element(6, "SessionToken", token.expose()));
    }
    xml.push_str(&element(
        6,
        "SecretAccessKey",
        issued.secret_access_key.expose(),
    ));
    if let Some(expiration) = issued.expiration {
        xml.push_str(&element(6, "Expiration", &format_expiration(expiration)));
    }
    xml.push_str(&element(6, "AccessKeyId", access_key_id));
    xml.push_str("    </Credentials>\n");
    xml
}

/// `AssumeRole`, signed by the caller: the role (in the lab account or another one) must admit
/// the caller's ARN (or its role, or its account) as an `AWS` principal for `sts:AssumeRole`,
/// plus `sts:TagSession` when tags are sent and `sts:SetSourceIdentity` when a source identity
/// is, with the request's condition keys: `sts:ExternalId`, `sts:SourceIdentity`,
/// `sts:RoleSessionName`, `aws:RequestTag/K`, `aws:TagKeys`, `sts:TransitiveTagKeys`, and the
/// caller's `aws:PrincipalTag/K`, `aws:SourceIdentity` and `aws:PrincipalArn`. A session
/// assumed by role chaining lasts at most an hour; it inherits the caller's transitive tags and
/// source identity, as in AWS.
fn assume_role(
    state: &LabState,
    request: &SignedRequest<'_>,
    params: &[(String, String)],
    request_id: &str,
) -> Result<Response, StsError> {
    let now = OffsetDateTime::now_utc();
    let caller = aws_auth::authenticate(state, request, now)
        .map_err(|e| StsError::new(e.status, e.code, e.message))?;
    let role_arn = param(params, "RoleArn");
    let session_name = param(params, "RoleSessionName");
    let session_policy = param(params, "Policy");
    let external_id = param(params, "ExternalId");
    let source_identity = param(params, "SourceIdentity");
    let mut errors = Vec::new();
    check_length(&mut errors, role_arn, "roleArn", 20, 2048);
    check_session_name(&mut errors, session_name);
    let duration = parse_duration(params, &mut errors)?;
    if external_id.is_some() {
        check_length(&mut errors, external_id, "externalId", 2, 1224);
        check_pattern(
            &mut errors,
            external_id,
            "externalId",
            "[\\w+=,.@:\\/-]*",
            "_+=,.@:/-",
        );
    }
    if source_identity.is_some() {
        check_length(&mut errors, source_identity, "sourceIdentity", 2, 64);
        check_pattern(
            &mut errors,
            source_identity,
            "sourceIdentity",
            "[\\w+=,.@-]*",
            "_+=,.@-",
        );
    }
    let tags = session_tags(params, &mut errors);
    let transitive = indexed(params, "TransitiveTagKeys.member.", "");
    if transitive.len() > 50 {
        errors.push(constraint(
            Some(&format!("[{}]", transitive.join(", "))),
            "transitiveTagKeys",
            "Member must have length less than or equal to 50",
        ));
    }
    if !errors.is_empty() {
        return Err(validation_error(&errors));
    }
    let (role_arn, session_name) = (
        role_arn.unwrap_or_default(),
        session_name.unwrap_or_default(),
    );
    if let Some(policy) = session_policy {
        if let Err(e) = PolicyDocument::parse(policy) {
            return Err(StsError::new(
                400,
                "MalformedPolicyDocument",
                format!("The policy is not in the valid JSON format. ({e})"),
            ));
        }
    }
    let same_key = |a: &str, b: &str| a.to_lowercase() == b.to_lowercase();
    for (i, (key, _)) in tags.iter().enumerate() {
        if tags[..i].iter().any(|(k, _)| same_key(k, key)) {
            return Err(StsError::new(
                400,
                "InvalidParameterValue",
                "Duplicate tag keys found. Please note that Tag keys are case insensitive.",
            ));
        }
    }
    if let Some(key) = transitive
        .iter()
        .find(|t| !tags.iter().any(|(k, _)| same_key(k, t)))
    {
        return Err(StsError::new(
            400,
            "InvalidParameterValue",
            format!("The transitive tag key {key} is not one of the session tags of the request."),
        ));
    }
    // Inherited transitive tags cannot be set again; a source identity cannot change.
    let inherited: Vec<(String, String)> = caller
        .session
        .tags
        .iter()
        .filter(|(k, _)| {
            caller
                .session
                .transitive_tag_keys
                .iter()
                .any(|t| same_key(t, k))
        })
        .cloned()
        .collect();
    if let Some((key, _)) = tags
        .iter()
        .find(|(k, _)| inherited.iter().any(|(i, _)| same_key(i, k)))
    {
        return Err(StsError::new(
            400,
            "InvalidParameterValue",
            format!("The session tag {key} conflicts with a transitive tag inherited from the calling session."),
        ));
    }
    if let (Some(set), Some(asked)) = (&caller.session.source_identity, source_identity) {
        if set != asked {
            return Err(StsError::new(
                400,
                "InvalidParameterValue",
                format!("The source identity of the calling session ({set}) cannot be changed."),
            ));
        }
    }
    let denied = || {
        StsError::new(
            403,
            "AccessDenied",
            format!(
                "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                caller.arn
            ),
        )
    };
    let target = parse_role_arn(role_arn);
    let role = target.and_then(|(account, name)| state.config.role_in(account, name));
    let (Some((role_account, _)), Some(role)) = (target, role) else {
        state.set_last_denial(format!(
            "the role {role_arn} does not exist in the lab account {} or its other accounts",
            state.config.account_id
        ));
        return Err(denied());
    };
    let trust = PolicyDocument::parse(&role.trust_policy).map_err(|e| {
        state.set_last_denial(format!(
            "the trust policy of {role_arn} cannot be read: {e}"
        ));
        denied()
    })?;
    let principals = aws_auth::trust_principals(&caller.arn, &caller.account);
    let source_identity = caller
        .session
        .source_identity
        .clone()
        .or(source_identity.map(str::to_string));
    let context = assume_role_context(
        &caller,
        &principals,
        session_name,
        external_id,
        source_identity.as_deref(),
        &tags,
        &transitive,
    );
    let mut actions = vec!["sts:AssumeRole"];
    if !tags.is_empty() || !transitive.is_empty() {
        actions.push("sts:TagSession");
    }
    if param(params, "SourceIdentity").is_some() {
        actions.push("sts:SetSourceIdentity");
    }
    for action in actions {
        let decisions: Vec<policy::Decision> = principals
            .iter()
            .map(|principal| {
                policy::evaluate(
                    &trust,
                    &Request {
                        principal: RequestPrincipal::Aws(principal.clone()),
                        action,
                        context: &context,
                    },
                )
            })
            .collect();
        let explicit_deny = decisions
            .iter()
            .find(|d| matches!(d, policy::Decision::DeniedExplicitly { .. }));
        if explicit_deny.is_some() || !decisions.iter().any(|d| d.is_allowed()) {
            let why = explicit_deny
                .map(|d| d.explain())
                .or_else(|| {
                    // A statement that names the principal but whose conditions failed explains
                    // best (e.g. "expects sts:ExternalId = ..."); else: no principal matched.
                    decisions
                        .iter()
                        .find(|d| matches!(d, policy::Decision::DeniedImplicitly { failures, .. } if !failures.is_empty()))
                        .map(|d| format!("{role_arn}: {action}: {}", d.explain()))
                })
                .unwrap_or_else(|| {
                    format!(
                        "the trust policy of {role_arn} names none of {} as an AWS principal allowed {action}",
                        principals.join(", ")
                    )
                });
            tracing::warn!(role = %role_arn, caller = %caller.arn, %why, "lab sts: AssumeRole denied");
            state.set_last_denial(why);
            return Err(denied());
        }
    }
    // Role chaining (a role session assuming a role) is capped at one hour by AWS.
    if caller.arn.contains(":assumed-role/") && duration > 3600 {
        return Err(StsError::new(
            400,
            "ValidationError",
            "The requested DurationSeconds exceeds the 1 hour session limit for roles assumed by role chaining.",
        ));
    }
    if duration > role.max_session_duration {
        return Err(StsError::new(
            400,
            "ValidationError",
            "The requested DurationSeconds exceeds the MaxSessionDuration set for this role.",
        ));
    }
    let mut session = LabSessionContext {
        tags: inherited,
        transitive_tag_keys: caller
            .session
            .transitive_tag_keys
            .iter()
            .filter(|k| caller.session.tags.iter().any(|(t, _)| same_key(t, k)))
            .cloned()
            .collect(),
        source_identity: source_identity.clone(),
    };
    session.tags.extend(tags.iter().cloned());
    session
        .transitive_tag_keys
        .extend(transitive.iter().cloned());
    let (access_key_id, issued) = state.issue_role_session_in(
        role_account,
        &role.name,
        session_name,
        i64::from(duration),
        session,
    );
    tracing::info!(role = %role_arn, caller = %caller.arn, %access_key_id, "lab sts: AssumeRole issued temporary credentials");
    let mut result = String::new();
    if let Some(identity) = &source_identity {
        result.push_str(&element(4, "SourceIdentity", identity));
    }
    result.push_str(&assumed_role_xml(&access_key_id, &issued));
    if let Some(policy) = session_policy {
        result.push_str(&element(
            4,
            "PackedPolicySize",
            &(policy.chars().count() * 100 / 2048).to_string(),
        ));
    }
    Ok(success_response("AssumeRole", &result, request_id))
}

/// The condition keys of an `AssumeRole` request, each with where its value came from.
fn assume_role_context(
    caller: &aws_auth::AwsCaller,
    principals: &[String],
    session_name: &str,
    external_id: Option<&str>,
    source_identity: Option<&str>,
    tags: &[(String, String)],
    transitive: &[String],
) -> policy::ConditionContext {
    let mut context = policy::ConditionContext::new("the request");
    let mut set = |key: &str, values: Vec<String>, source: &str| {
        context.insert(key, values, Some(source));
    };
    if let Some(id) = external_id {
        set("sts:ExternalId", vec![id.to_string()], "ExternalId");
    }
    if let Some(identity) = source_identity {
        set(
            "sts:SourceIdentity",
            vec![identity.to_string()],
            "SourceIdentity",
        );
    }
    if let Some(identity) = &caller.session.source_identity {
        set(
            "aws:SourceIdentity",
            vec![identity.clone()],
            "the calling session",
        );
    }
    set(
        "sts:RoleSessionName",
        vec![session_name.to_string()],
        "RoleSessionName",
    );
    // The caller's role ARN for a session, its own ARN for a user (the second principal).
    let principal_arn = principals
        .get(1)
        .filter(|_| caller.arn.contains(":assumed-role/"));
    set(
        "aws:PrincipalArn",
        vec![principal_arn.cloned().unwrap_or_else(|| caller.arn.clone())],
        "the caller",
    );
    set(
        "aws:PrincipalAccount",
        vec![caller.account.clone()],
        "the caller",
    );
    for (key, value) in &caller.session.tags {
        set(
            &format!("aws:PrincipalTag/{key}"),
            vec![value.clone()],
            "the calling session's tags",
        );
    }
    for (key, value) in tags {
        set(
            &format!("aws:RequestTag/{key}"),
            vec![value.clone()],
            "Tags",
        );
    }
    if !tags.is_empty() {
        set(
            "aws:TagKeys",
            tags.iter().map(|(k, _)| k.clone()).collect(),
            "Tags",
        );
    }
    if !transitive.is_empty() {
        set(
            "sts:TransitiveTagKeys",
            transitive.to_vec(),
            "TransitiveTagKeys",
        );
    }
    context
}

/// `Tags.member.N.Key` / `.Value`, in N order, with AWS's validation of each.
fn session_tags(params: &[(String, String)], errors: &mut Vec<String>) -> Vec<(String, String)> {
    let keys = indexed(params, "Tags.member.", ".Key");
    let values = indexed(params, "Tags.member.", ".Value");
    if keys.len() > 50 {
        errors.push(constraint(
            Some(&format!("[{}]", keys.join(", "))),
            "tags",
            "Member must have length less than or equal to 50",
        ));
    }
    let allowed = |c: char| {
        c.is_alphanumeric() || (c.is_whitespace() && !c.is_control()) || "_.:/=+-@".contains(c)
    };
    for (i, key) in keys.iter().enumerate() {
        let field = format!("tags.{}.member.key", i + 1);
        check_length(errors, Some(key), &field, 1, 128);
        if !key.chars().all(allowed) {
            errors.push(constraint(
                Some(key),
                &field,
                "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]+",
            ));
        }
        let value = values.get(i).map(String::as_str);
        let field = format!("tags.{}.member.value", i + 1);
        check_length(errors, value, &field, 0, 256);
        if value.is_some_and(|v| !v.chars().all(allowed)) {
            errors.push(constraint(
                value,
                &field,
                "Member must satisfy regular expression pattern: [\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*",
            ));
        }
    }
    keys.into_iter()
        .zip(values.into_iter().chain(std::iter::repeat(String::new())))
        .collect()
}

/// The values of `PREFIX<N>SUFFIX` parameters, ordered by N.
fn indexed(params: &[(String, String)], prefix: &str, suffix: &str) -> Vec<String> {
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

/// ASCII letters, digits and `extra` only (Java's `\w`), else AWS's pattern message.
fn check_pattern(
    errors: &mut Vec<String>,
    value: Option<&str>,
    field: &str,
    pattern: &str,
    extra: &str,
) {
    if let Some(v) = value {
        if !v
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
        {
            errors.push(constraint(
                Some(v),
                field,
                &format!("Member must satisfy regular expression pattern: {pattern}"),
            ));
        }
    }
}

/// `arn:aws:iam::ACCOUNT:role[/path]/NAME` → (ACCOUNT, NAME).
fn parse_role_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("arn:")?;
    let mut parts = rest.splitn(5, ':');
    let (partition, service, region, account, resource) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if partition.is_empty()
        || service != "iam"
        || !region.is_empty()
        || account.len() != 12
        || !account.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let name = resource.strip_prefix("role/")?.rsplit('/').next()?;
    (!name.is_empty()).then_some((account, name))
}

fn get_caller_identity(
    state: &LabState,
    request: &SignedRequest<'_>,
    request_id: &str,
) -> Result<Response, StsError> {
    let caller = aws_auth::authenticate(state, request, OffsetDateTime::now_utc())
        .map_err(|e| StsError::new(e.status, e.code, e.message))?;
    let mut result = String::new();
    result.push_str(&element(4, "Arn", &caller.arn));
    result.push_str(&element(4, "UserId", &caller.user_id));
    result.push_str(&element(4, "Account", &caller.account));
    Ok(success_response("GetCallerIdentity", &result, request_id))
}

async fn list_faults(State(state): State<Arc<LabState>>) -> Response {
    Json(state.faults.pending()).into_response()
}

/// `POST /_lab/faults` with one fault object or a list of them.
async fn queue_faults(State(state): State<Arc<LabState>>, body: Bytes) -> Response {
    let parsed: Result<Vec<Fault>, _> = serde_json::from_slice::<Vec<Fault>>(&body)
        .or_else(|_| serde_json::from_slice::<Fault>(&body).map(|f| vec![f]));
    match parsed {
        Ok(faults) => {
            let queued = faults.len();
            faults.into_iter().for_each(|f| state.faults.push(f));
            Json(json!({"queued": queued})).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("not a fault: {e}; expected e.g. {{\"service\":\"aws_sts\",\"sts_error\":{{\"code\":\"Throttling\",\"status\":400}},\"times\":2}}")})),
        )
            .into_response(),
    }
}

async fn clear_faults(State(state): State<Arc<LabState>>) -> Response {
    state.faults.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn stats(State(state): State<Arc<LabState>>) -> Response {
    Json(state.counters.snapshot(&state.upstream_load)).into_response()
}

/// `POST /_lab/stats/reset-in-flight`: count the most upstream calls in flight from now on (a
/// benchmark measuring one phase after another).
async fn reset_most_in_flight(State(state): State<Arc<LabState>>) -> Response {
    state.upstream_load.reset_most();
    StatusCode::NO_CONTENT.into_response()
}

/// `GET /_lab/cloudtrail`: every CloudTrail record, oldest first.
async fn cloudtrail_events(State(state): State<Arc<LabState>>) -> Response {
    Json(state.cloudtrail.records()).into_response()
}

/// `POST /_lab/cloudtrail` with one record (events from before the lab started, for tests).
async fn seed_cloudtrail_event(State(state): State<Arc<LabState>>, body: Bytes) -> Response {
    let pushed = serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(|record| state.cloudtrail.push(record));
    match pushed {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    }
}

/// `GET /_lab/audit-log`: the Google project's Cloud Audit Log entries, oldest first.
async fn audit_log_entries(State(state): State<Arc<LabState>>) -> Response {
    Json(state.audit_logs.entries()).into_response()
}

/// `POST /_lab/audit-log` with one log entry (from before the lab started, for tests).
async fn seed_audit_log_entry(State(state): State<Arc<LabState>>, body: Bytes) -> Response {
    let pushed = serde_json::from_slice::<serde_json::Value>(&body)
        .map_err(|e| format!("not JSON: {e}"))
        .and_then(|entry| state.audit_logs.push(entry));
    match pushed {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, Json(json!({"error": e}))).into_response(),
    }
}

/// `POST /_lab/data-access` with `{"service": "sts.googleapis.com", "enabled": false}`.
async fn set_data_access(State(state): State<Arc<LabState>>, body: Bytes) -> Response {
    #[derive(serde::Deserialize)]
    struct Switch {
        service: String,
        enabled: bool,
    }
    match serde_json::from_slice::<Switch>(&body) {
        Ok(s) => {
            state.audit_logs.set_data_access(&s.service, s.enabled);
            Json(json!({"data_access": state.audit_logs.data_access_services()})).into_response()
        }
        Err(e) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("{e}; expected {{\"service\":\"sts.googleapis.com\",\"enabled\":false}}")})),
        )
            .into_response(),
    }
}

async fn last_denial(State(state): State<Arc<LabState>>) -> Response {
    Json(json!({"explanation": state.last_denial()})).into_response()
}

#[cfg(test)]
mod tests {
    use super::parse_role_arn;

    #[test]
    fn role_arns() {
        assert_eq!(
            parse_role_arn("arn:aws:iam::123456789012:role/gcp-deploy"),
            Some(("123456789012", "gcp-deploy"))
        );
        assert_eq!(
            parse_role_arn("arn:aws:iam::123456789012:role/team/a/ci"),
            Some(("123456789012", "ci"))
        );
        assert_eq!(parse_role_arn("arn:aws:iam::123456789012:user/bob"), None);
        assert_eq!(parse_role_arn("arn:aws:iam::12345:role/x"), None);
        assert_eq!(parse_role_arn("gcp-deploy"), None);
    }
}
