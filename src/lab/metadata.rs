//! The GCE metadata server, as `GCE_METADATA_HOST` reaches it.
//!
//! It enforces what the real one enforces, because keyless and the Google SDKs must cope with it:
//! `Metadata-Flavor: Google` on every `/computeMetadata/` request (the SSRF guard), a 403 for any
//! request carrying `X-Forwarded-For` (a proxy relaying someone else's request), the
//! `Metadata-Flavor: Google` answer header the SDKs use to detect GCE, and a fresh ID token per
//! request.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

use super::faults::{self, LabService};
use super::state::LabState;

/// The instance the lab pretends to be.
const ZONE: &str = "us-central1-a";
const INSTANCE_ID: &str = "4242424242424242421";
const INSTANCE_NAME: &str = "keyless-lab-vm";
const INSTANCE_CREATED: i64 = 1_700_000_000;
/// Scopes of the VM's default service account.
const DEFAULT_SCOPES: [&str; 2] = [
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
];

/// The metadata server's routes (one handler: the real server is a path tree, not a REST API).
pub(crate) fn router(state: Arc<LabState>) -> Router {
    Router::new().fallback(handle).with_state(state)
}

async fn handle(
    State(state): State<Arc<LabState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let mut response = answer(&state, &method, &uri, &headers).await;
    response
        .headers_mut()
        .insert("metadata-flavor", HeaderValue::from_static("Google"));
    response
}

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/text")],
        body.into(),
    )
        .into_response()
}

fn not_found(path: &str) -> Response {
    text(
        StatusCode::NOT_FOUND,
        format!("The requested URL {path} was not found on this server."),
    )
}

async fn answer(state: &LabState, method: &Method, uri: &Uri, headers: &HeaderMap) -> Response {
    let path = uri.path();
    if headers.contains_key("x-forwarded-for") {
        return text(
            StatusCode::FORBIDDEN,
            "Your client does not have permission to get URL from this server. Requests carrying X-Forwarded-For are refused.",
        );
    }
    if path == "/" {
        return text(StatusCode::OK, "computeMetadata/\n");
    }
    let Some(rest) = path.strip_prefix("/computeMetadata/") else {
        return not_found(path);
    };
    if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return text(
            StatusCode::FORBIDDEN,
            format!("Your client does not have permission to get URL /computeMetadata/{rest} from this server. Missing Metadata-Flavor:Google header."),
        );
    }
    if method != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "Only GET is supported.");
    }
    if let Some(fault) = faults::apply(&state.faults, LabService::Metadata, path).await {
        return fault;
    }
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default();
    let Some(v1) = rest.strip_prefix("v1/") else {
        return not_found(path);
    };
    let config = &state.config;
    match v1 {
        "project/project-id" => text(StatusCode::OK, config.project_id.clone()),
        "project/numeric-project-id" => text(StatusCode::OK, config.project_number.clone()),
        "universe/universe-domain" => text(StatusCode::OK, "googleapis.com"),
        "instance/id" => text(StatusCode::OK, INSTANCE_ID),
        "instance/name" => text(StatusCode::OK, INSTANCE_NAME),
        "instance/hostname" => text(
            StatusCode::OK,
            format!("{INSTANCE_NAME}.{ZONE}.c.{}.internal", config.project_id),
        ),
        "instance/zone" => text(
            StatusCode::OK,
            format!("projects/{}/zones/{ZONE}", config.project_number),
        ),
        "instance/service-accounts" | "instance/service-accounts/" => text(
            StatusCode::OK,
            format!("default/\n{}/\n", config.metadata_service_account),
        ),
        other => match other.strip_prefix("instance/service-accounts/") {
            Some(sa_path) => service_account(state, path, sa_path, &query),
            None => not_found(path),
        },
    }
}

fn service_account(
    state: &LabState,
    path: &str,
    sa_path: &str,
    query: &HashMap<String, String>,
) -> Response {
    let (account, leaf) = sa_path.split_once('/').unwrap_or((sa_path, ""));
    let email = &state.config.metadata_service_account;
    if account != "default" && !account.eq_ignore_ascii_case(email) {
        return not_found(path);
    }
    let Some(sa) = state.config.service_account(email) else {
        return not_found(path);
    };
    let recursive = query.get("recursive").is_some_and(|v| v == "true");
    match leaf {
        "" if recursive => {
            Json(json!({"aliases": ["default"], "email": sa.email, "scopes": DEFAULT_SCOPES}))
                .into_response()
        }
        "" => text(StatusCode::OK, "aliases\nemail\nidentity\nscopes\ntoken\n"),
        "email" => text(StatusCode::OK, sa.email.clone()),
        "aliases" => text(StatusCode::OK, "default\n"),
        "scopes" => text(StatusCode::OK, DEFAULT_SCOPES.join("\n") + "\n"),
        "token" => {
            let scopes: Vec<String> = match query.get("scopes") {
                Some(s) if !s.is_empty() => s.split(',').map(|s| s.trim().to_string()).collect(),
                _ => DEFAULT_SCOPES.iter().map(|s| s.to_string()).collect(),
            };
            let (token, grant) = state.issue_access_token(&sa.email, scopes, 3600);
            let expires_in = (grant.expires_at - time::OffsetDateTime::now_utc())
                .whole_seconds()
                .max(0);
            Json(json!({"access_token": token, "expires_in": expires_in, "token_type": "Bearer"}))
                .into_response()
        }
        "identity" => {
            let Some(audience) = query.get("audience").filter(|a| !a.is_empty()) else {
                return text(
                    StatusCode::BAD_REQUEST,
                    "non-empty audience parameter required",
                );
            };
            let full = query.get("format").is_some_and(|f| f == "full");
            let compute_engine = full.then(|| {
                json!({
                    "instance_creation_timestamp": INSTANCE_CREATED,
                    "instance_id": INSTANCE_ID,
                    "instance_name": INSTANCE_NAME,
                    "project_id": state.config.project_id,
                    "project_number": state.config.project_number.parse::<u64>().map(serde_json::Value::from)
                        .unwrap_or_else(|_| serde_json::Value::from(state.config.project_number.clone())),
                    "zone": ZONE,
                })
            });
            let token = state.mint_id_token(
                sa,
                audience,
                true,
                state.id_token_lifetime_secs(),
                compute_engine,
            );
            text(StatusCode::OK, token)
        }
        _ => not_found(path),
    }
}
