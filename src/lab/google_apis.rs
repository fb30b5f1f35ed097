//! Google APIs on one listener: IAM Credentials (`generateIdToken`, `generateAccessToken`), the
//! OAuth2 token endpoint an `authorized_user` ADC file refreshes against, and the JWKS and OpenID
//! discovery document that relying parties (like AWS STS) verify Google tokens with.
//!
//! Impersonation checks what IAM checks: a known, unexpired bearer token with the
//! `cloud-platform` or `iam` scope, whose principal holds Token Creator on the target (and on
//! each delegate in the chain) — or, for a federated token from Google STS ([`super::google_sts`],
//! `POST /v1/token`), Workload Identity User through a `principal://` or `principalSet://`
//! member. Errors have Google's JSON shape and wording. `GET /storage/v1/b` stands in for a
//! Google API that federated and service-account tokens are used against directly.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::cloud_logging;
use super::config::LabServiceAccount;
use super::faults::{self, LabService};
use super::state::{AccessGrant, LabState};
use crate::policy::workload_identity::member_matches;

const SCOPE_CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";
const SCOPE_IAM: &str = "https://www.googleapis.com/auth/iam";

/// The Google APIs routes.
pub(crate) fn router(state: Arc<LabState>) -> Router {
    Router::new()
        .route(
            "/v1/projects/-/serviceAccounts/{action}",
            post(iam_credentials).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                cloud_logging::record_google,
            )),
        )
        .route("/token", post(oauth_token))
        .route(
            "/v1/token",
            post(super::google_sts::token).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                cloud_logging::record_google,
            )),
        )
        .route("/v2/entries:list", post(cloud_logging::entries_list))
        .route("/v1/projects/{action}", post(cloud_logging::project_action))
        .route("/storage/v1/b", get(list_buckets))
        .route("/oauth2/v3/certs", get(jwks))
        .route("/.well-known/openid-configuration", get(discovery))
        .merge(super::issuers::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            inject_faults,
        ))
        .with_state(state)
}

async fn inject_faults(
    State(state): State<Arc<LabState>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path().to_string();
    let service = if path == "/v2/entries:list" || path.ends_with(":getIamPolicy") {
        LabService::CloudLogging
    } else {
        LabService::GoogleApis
    };
    // Google STS and IAM Credentials are the upstreams keyless exchanges against: paced.
    let upstream = path == "/v1/token" || path.starts_with("/v1/projects/-/serviceAccounts/");
    let _in_flight = if upstream {
        let (call, throttled) = super::upstream_load::pace(&state, service).await;
        if let Some(throttled) = throttled {
            return throttled;
        }
        Some(call)
    } else {
        None
    };
    match faults::apply(&state.faults, service, &path).await {
        Some(fault) => fault,
        None => next.run(request).await,
    }
}

/// A Google API error: `{"error": {"code", "message", "status"}}`.
pub(super) fn google_error(code: u16, status: &str, message: &str) -> Response {
    let http = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (
        http,
        Json(json!({"error": {"code": code, "message": message, "status": status}})),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateIdTokenBody {
    audience: Option<String>,
    #[serde(default)]
    include_email: bool,
}

#[derive(Debug, Deserialize)]
struct GenerateAccessTokenBody {
    #[serde(default)]
    scope: Vec<String>,
    lifetime: Option<String>,
}

/// `POST /v1/projects/-/serviceAccounts/{EMAIL}:generateIdToken|:generateAccessToken`.
async fn iam_credentials(
    State(state): State<Arc<LabState>>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some((email, method)) = action.rsplit_once(':') else {
        return google_error(404, "NOT_FOUND", "Method not found.");
    };
    let permission = match method {
        "generateIdToken" => "iam.serviceAccounts.getOpenIdToken",
        "generateAccessToken" => "iam.serviceAccounts.getAccessToken",
        _ => return google_error(404, "NOT_FOUND", "Method not found."),
    };
    let caller = match authorize_bearer(&state, &headers, &[SCOPE_CLOUD_PLATFORM, SCOPE_IAM]) {
        Ok(grant) => grant,
        Err(response) => return response,
    };
    let parsed: Result<serde_json::Value, _> =
        serde_json::from_slice(if body.is_empty() { b"{}" } else { &body });
    let Ok(value) = parsed else {
        return google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
    };
    let delegates = value.get("delegates").cloned().unwrap_or(json!([]));
    let delegates: Vec<String> = serde_json::from_value(delegates).unwrap_or_default();
    if let Err(response) = check_chain(&state, &caller, &delegates, email, permission) {
        return response;
    }
    let Some(target) = state.config.service_account(email) else {
        return google_error(
            404,
            "NOT_FOUND",
            &format!("Not found; Gaia id not found for email {email}"),
        );
    };
    match method {
        "generateIdToken" => {
            let body: GenerateIdTokenBody = match serde_json::from_value(value) {
                Ok(b) => b,
                Err(e) => {
                    return google_error(
                        400,
                        "INVALID_ARGUMENT",
                        &format!("Invalid JSON payload received. {e}"),
                    )
                }
            };
            let Some(audience) = body.audience.filter(|a| !a.is_empty()) else {
                return google_error(
                    400,
                    "INVALID_ARGUMENT",
                    "Invalid value for audience: must be non-empty.",
                );
            };
            let token = state.mint_id_token(
                target,
                &audience,
                body.include_email,
                state.id_token_lifetime_secs(),
                None,
            );
            Json(json!({"token": token})).into_response()
        }
        _ => {
            let body: GenerateAccessTokenBody = match serde_json::from_value(value) {
                Ok(b) => b,
                Err(e) => {
                    return google_error(
                        400,
                        "INVALID_ARGUMENT",
                        &format!("Invalid JSON payload received. {e}"),
                    )
                }
            };
            if body.scope.is_empty() {
                return google_error(400, "INVALID_ARGUMENT", "Scope required.");
            }
            let lifetime = match parse_lifetime(
                body.lifetime.as_deref(),
                state.config.allow_service_account_lifetime_extension,
            ) {
                Ok(l) => l,
                Err(message) => return google_error(400, "INVALID_ARGUMENT", &message),
            };
            let (token, grant) = state.issue_access_token(&target.email, body.scope, lifetime);
            let expire_time = grant
                .expires_at
                .replace_nanosecond(0)
                .unwrap_or(grant.expires_at)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            Json(json!({"accessToken": token, "expireTime": expire_time})).into_response()
        }
    }
}

/// `"3600s"` → 3600; at most 3600 without the lifetime-extension org policy, as IAM enforces,
/// and at most 43200 (12 hours) with it.
fn parse_lifetime(lifetime: Option<&str>, extension_allowed: bool) -> Result<i64, String> {
    let Some(text) = lifetime else {
        return Ok(3600);
    };
    let secs: i64 = text
        .strip_suffix('s')
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("Invalid value at 'lifetime' (type.googleapis.com/google.protobuf.Duration), Field 'lifetime', Illegal duration format; duration must end with 's': {text}"))?;
    if extension_allowed && (1..=43_200).contains(&secs) {
        return Ok(secs);
    }
    if extension_allowed && secs > 43_200 {
        return Err(format!(
            "The lifetime {text} exceeds the maximum of 43200s (12 hours), even with the organization policy constraints/iam.allowServiceAccountCredentialLifetimeExtension."
        ));
    }
    if !(1..=3600).contains(&secs) {
        return Err(format!(
            "The lifetime {text} exceeds the maximum of 3600s. Lifetimes above 3600s need the organization policy constraints/iam.allowServiceAccountCredentialLifetimeExtension."
        ));
    }
    Ok(secs)
}

/// The caller's grant, from a known, unexpired lab access token with one of `scopes`.
#[allow(clippy::result_large_err)]
pub(super) fn authorize_bearer(
    state: &LabState,
    headers: &HeaderMap,
    scopes: &[&str],
) -> Result<AccessGrant, Response> {
    const UNAUTHENTICATED: &str = "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.";
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| google_error(401, "UNAUTHENTICATED", UNAUTHENTICATED))?;
    let grant = state
        .access_grant(token)
        .filter(|g| g.expires_at > OffsetDateTime::now_utc())
        .ok_or_else(|| google_error(401, "UNAUTHENTICATED", UNAUTHENTICATED))?;
    if !grant.scopes.iter().any(|s| scopes.contains(&s.as_str())) {
        return Err(google_error(
            403,
            "PERMISSION_DENIED",
            "Request had insufficient authentication scopes.",
        ));
    }
    Ok(grant)
}

/// Whether an IAM member names the bearer of `grant`: an email member (`serviceAccount:`,
/// `user:` or bare, as `token_creators` lists them) for ordinary tokens; `principal://` and
/// `principalSet://` members for federated ones.
fn member_names(member: &str, grant: &AccessGrant) -> bool {
    match &grant.federation {
        Some(f) => member_matches(member, &f.pool_resource, &f.subject, &f.attributes),
        None => {
            let email = member
                .strip_prefix("serviceAccount:")
                .or_else(|| member.strip_prefix("user:"))
                .unwrap_or(member);
            email.eq_ignore_ascii_case(&grant.principal)
        }
    }
}

/// Whether the bearer may impersonate `sa`: Token Creator, or (for federated principals)
/// Workload Identity User on it.
fn may_impersonate(state: &LabState, sa: &LabServiceAccount, grant: &AccessGrant) -> bool {
    sa.token_creators.iter().any(|m| member_names(m, grant))
        || state
            .config
            .workload_identity_users
            .iter()
            .filter(|b| b.service_account.eq_ignore_ascii_case(&sa.email))
            .any(|b| member_names(&b.member, grant))
}

/// A service account's own tokens, as a grant (for the next hop of a delegation chain).
fn service_account_grant(email: &str) -> AccessGrant {
    AccessGrant {
        principal: email.to_string(),
        scopes: Vec::new(),
        expires_at: OffsetDateTime::now_utc(),
        federation: None,
    }
}

/// The caller must be a token creator of the first delegate, each delegate of the next, and the
/// last one of the target (IAM's delegation chain).
#[allow(clippy::result_large_err)]
fn check_chain(
    state: &LabState,
    caller: &AccessGrant,
    delegates: &[String],
    target: &str,
    permission: &str,
) -> Result<(), Response> {
    let delegate_emails: Vec<&str> = delegates
        .iter()
        .map(|d| d.rsplit('/').next().unwrap_or(d))
        .collect();
    let mut holder = caller.clone();
    for next in delegate_emails
        .iter()
        .copied()
        .chain(std::iter::once(target))
    {
        let allowed = state
            .config
            .service_account(next)
            .is_some_and(|sa| may_impersonate(state, sa, &holder));
        if !allowed {
            // IAM does not reveal whether the account exists to callers without permission.
            if state.config.service_account(next).is_none()
                && next == target
                && delegates.is_empty()
            {
                return Err(google_error(
                    404,
                    "NOT_FOUND",
                    &format!("Not found; Gaia id not found for email {next}"),
                ));
            }
            let why = format!(
                "{} holds neither Service Account Token Creator nor Workload Identity User on {next}, so IAM refuses {permission}",
                holder.principal
            );
            tracing::info!(%why, "lab: impersonation refused");
            state.set_last_denial(why);
            return Err(google_error(
                403,
                "PERMISSION_DENIED",
                &format!("Permission '{permission}' denied on resource (or it may not exist)."),
            ));
        }
        holder = service_account_grant(next);
    }
    Ok(())
}

/// `GET /storage/v1/b?project=P`: a tiny stand-in for a Google API that takes any valid token
/// (a service account's or a federated one) and lists the buckets of P its bearer may view.
async fn list_buckets(
    State(state): State<Arc<LabState>>,
    headers: HeaderMap,
    Query(query): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let grant = match authorize_bearer(
        &state,
        &headers,
        &[
            SCOPE_CLOUD_PLATFORM,
            "https://www.googleapis.com/auth/cloud-platform.read-only",
            "https://www.googleapis.com/auth/devstorage.read_only",
            "https://www.googleapis.com/auth/devstorage.full_control",
            "https://www.googleapis.com/auth/devstorage.read_write",
        ],
    ) {
        Ok(grant) => grant,
        Err(response) => return response,
    };
    let Some(project) = query.get("project").filter(|p| !p.is_empty()) else {
        return google_error(400, "INVALID_ARGUMENT", "Required parameter: project");
    };
    let config = &state.config;
    let in_project: Vec<_> = config
        .buckets
        .iter()
        .filter(|b| {
            &b.project_id == project
                || (b.project_id == config.project_id && *project == config.project_number)
        })
        .collect();
    let visible: Vec<_> = in_project
        .iter()
        .filter(|b| b.viewers.iter().any(|m| member_names(m, &grant)))
        .collect();
    if visible.is_empty() {
        let why = format!(
            "{} does not have storage.buckets.list access to the Google Cloud project {project}",
            grant.principal
        );
        state.set_last_denial(why.clone());
        return google_error(
            403,
            "PERMISSION_DENIED",
            &format!("{why}. Permission 'storage.buckets.list' denied on resource (or it may not exist)."),
        );
    }
    let items: Vec<_> = visible
        .iter()
        .map(|b| {
            json!({
                "kind": "storage#bucket",
                "id": b.name,
                "name": b.name,
                "projectNumber": config.project_number,
                "location": "US",
                "storageClass": "STANDARD",
            })
        })
        .collect();
    Json(json!({"kind": "storage#buckets", "items": items})).into_response()
}

#[derive(Debug, Deserialize)]
struct RefreshForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

/// `POST /token` with `grant_type=refresh_token`: what an `authorized_user` ADC file refreshes.
async fn oauth_token(
    State(state): State<Arc<LabState>>,
    Form(form): Form<RefreshForm>,
) -> Response {
    let oauth_error = |error: &str, description: &str| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": error, "error_description": description})),
        )
            .into_response()
    };
    if form.grant_type.as_deref() != Some("refresh_token") {
        return oauth_error(
            "unsupported_grant_type",
            "Invalid grant_type: only refresh_token is supported by the lab.",
        );
    }
    let user = state
        .config
        .users
        .iter()
        .find(|u| Some(&u.client_id) == form.client_id.as_ref());
    let Some(user) = user.filter(|u| Some(&u.client_secret) == form.client_secret.as_ref()) else {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"error": "invalid_client", "error_description": "The OAuth client was not found."})),
        )
            .into_response();
    };
    if Some(&user.refresh_token) != form.refresh_token.as_ref() {
        return oauth_error("invalid_grant", "Bad Request");
    }
    let scopes = vec![
        SCOPE_CLOUD_PLATFORM.to_string(),
        "https://www.googleapis.com/auth/userinfo.email".to_string(),
        "openid".to_string(),
    ];
    let scope = scopes.join(" ");
    let (token, grant) = state.issue_access_token(&user.email, scopes, 3600);
    let expires_in = (grant.expires_at - time::OffsetDateTime::now_utc())
        .whole_seconds()
        .max(0);
    Json(json!({"access_token": token, "expires_in": expires_in, "scope": scope, "token_type": "Bearer"}))
        .into_response()
}

/// `GET /oauth2/v3/certs`.
async fn jwks(State(state): State<Arc<LabState>>) -> Response {
    Json(json!({"keys": [state.key.jwk()]})).into_response()
}

/// `GET /.well-known/openid-configuration`.
async fn discovery(State(state): State<Arc<LabState>>) -> Response {
    let base = state.google_apis_url();
    Json(json!({
        "issuer": super::google_keys::GOOGLE_ISSUER,
        "authorization_endpoint": format!("{base}/o/oauth2/v2/auth"),
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/oauth2/v3/certs"),
        "response_types_supported": ["code", "token", "id_token", "code token", "code id_token", "token id_token", "code token id_token", "none"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile"],
        "claims_supported": ["aud", "email", "email_verified", "exp", "iat", "iss", "sub", "azp"],
    }))
    .into_response()
}
